"""`scaler validate` on hostile and unusual YAML: every case ends in exit 1
and a `file:line` message, never a traceback, a hang or a memory blow-up.
Merge keys (`<<: *defaults`) are accepted. On the branch point (575e6f6)
each of the hostile cases raised (ReaderError, RecursionError) or ran for
minutes, and merge keys were rejected."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaler.cli.main import main
from scaler.decide.loading import load_policies

#: An alias bomb like the issue's 462-byte one: nine levels of nine aliases (9**9 "lol"s).
ALIAS_BOMB = "\n".join(
    [f"{name}: &{name} [" + ",".join(["lol"] * 9) + "]" if name == "a" else
     f"{name}: &{name} [" + ",".join([f"*{chr(ord(name) - 1)}"] * 9) + "]"
     for name in "abcdefghi"] + ["policies: [*i]", ""])


def validate(capsys, path: Path) -> tuple[int, list[str], str]:
    code = main(["validate", str(path)])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def write_bytes(tmp_path: Path, data: bytes, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("data", "line", "fragment"), [
    pytest.param(b"policies:\n  - name: a\x00\n", 2, "control character U+0000", id="nul"),
    pytest.param(b"policies:\n\n  - name: \x1b[31ma\n", 3, "control character U+001B", id="escape"),
    pytest.param(b"policies:\r\r  - name: a\x01\n", 3, "control character U+0001", id="line-counted-as-yaml-does"),
    pytest.param(b"policies: &p [*p]\n", 1, "recursive alias", id="recursive-alias-list"),
    pytest.param(b"x: &m {a: *m}\npolicies: []\n", 1, "recursive alias", id="recursive-alias-mapping"),
    pytest.param(b"policies: " + b"[" * 5000 + b"]" * 5000 + b"\n", 1, "nest more than 64 deep",
                 id="lists-5000-deep"),
    # libyaml refuses these itself, before any event, at 1,000 levels or more (PyYAML >= 6.0.3)
    pytest.param(b"policies: " + b"{a: " * 1001 + b"1" + b"}" * 1001 + b"\n", 1, "nest more than 64 deep",
                 id="mappings-1001-deep"),
    pytest.param(b"x: 1\npolicies: [" + b"[" * 3000 + b"\n", 2, "nest more than 64 deep",
                 id="lists-3000-deep-unclosed"),
    pytest.param(b"policies:\n" + b"".join(b"  " * depth + b"- \n" for depth in range(1, 200)), None,
                 "nest more than 64 deep", id="block-lists-deep"),
    pytest.param(ALIAS_BOMB.encode(), 6, "more than 100000 values", id="alias-bomb"),
    pytest.param(b"policies:\n  - name: \xff\xfe\n", 2, "not UTF-8", id="not-utf8"),
    pytest.param(b"# " + b"x" * (1024 * 1024) + b"\n", None, "larger than 1048576 bytes", id="too-large"),
    pytest.param(b"policies: [\n", 2, "invalid YAML", id="unclosed-list"),
    pytest.param(b"policies:\n  - !!python/object:os.system {}\n", 2, "invalid YAML", id="python-tag"),
    pytest.param(b"? [a, b]\n: c\n", 1, "invalid YAML", id="unhashable-key"),
])
def test_hostile_file_is_a_clean_error(tmp_path, capsys, data, line, fragment):
    path = write_bytes(tmp_path, data)
    code, out, err = validate(capsys, path)
    assert code == 1
    assert "Traceback" not in err
    where = f"{path}:{line}: " if line is not None else f"{path}"
    assert any(text.startswith(where) and fragment in text for text in out), out


def test_the_alias_bomb_is_the_size_the_issue_reports():
    assert len(ALIAS_BOMB.encode()) < 470


MERGED = """\
x-defaults: &defaults
  targets: {namespaces: [llm]}
  idle: &idle {query: "sum by (namespace, workload) (up)", threshold: 1, duration: 10m}
  min_replicas: 2
policies:
  - <<: *defaults
    name: chat
  - <<: *defaults
    name: embed
    min_replicas: 3
    idle:
      <<: *idle
      threshold: 5
      duratoin: 1m
"""


def test_merge_keys_share_settings_and_explicit_keys_win(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(MERGED.replace("      duratoin: 1m\n", ""))
    chat, embed = load_policies([path])
    assert (chat.min_replicas, chat.idle.threshold, chat.targets.namespaces) == (2, 1, ("llm",))
    assert (embed.min_replicas, embed.idle.threshold, embed.idle.duration_seconds) == (3, 5, 600)


def test_a_mistake_next_to_a_merge_key_is_reported_on_its_own_line(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text(MERGED)
    code, out, _ = validate(capsys, path)
    assert code == 1
    assert out[0].startswith(f"{path}:14: idle.duratoin: unknown key 'duratoin'; did you mean 'duration'?")


def test_a_mistake_inside_merged_defaults_points_at_the_defaults(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text(MERGED.replace("min_replicas: 2", "min_replicas: two").replace("      duratoin: 1m\n", ""))
    code, out, _ = validate(capsys, path)
    assert code == 1
    assert out[0].startswith(f"{path}:4: min_replicas: "), out
