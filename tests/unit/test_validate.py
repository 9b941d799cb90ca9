"""`scaler validate` and `scaler schema`, as a user sees them: the exit code
and the lines printed. Every class of mistake is reported as file:line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scaler.cli.main import COMMANDS, main
from scaler.decide.reading import read_documents

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
policies:
  - name: good
    idle:
      query: up
      threshold: 1
      duration: 5m
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def validate(capsys, *paths) -> tuple[int, list[str]]:
    code = main(["validate", *map(str, paths)])
    return code, capsys.readouterr().out.splitlines()


def test_valid_files_print_one_summary_line(capsys):
    code, lines = validate(capsys, ROOT / "policies")
    assert code == 0
    assert lines == ["7 policies, 4 calendars in 6 files OK"]


def test_singular_summary(tmp_path, capsys):
    code, lines = validate(capsys, write(tmp_path, "one.yaml", GOOD))
    assert (code, lines) == (0, ["1 policy in 1 file OK"])


# Each case: the file's text, and the line printed for its one problem
# ({file} is the file's path).
CASES = [
    pytest.param("""\
        policies:
          - name: x
            idle: {query: up, threshold: 1
            duration: 5m
        """, "{file}:4: invalid YAML: while parsing a flow mapping, did not find expected ',' or '}}'",
        id="yaml-syntax"),
    pytest.param("", "{file}:1: empty file: expected a mapping: 'policies:' with a list of policies, or one policy",
                 id="empty-file"),
    pytest.param("# only a comment\n", "{file}:1: empty file: expected a mapping: 'policies:' with a list of "
                 "policies, or one policy", id="comment-only-file"),
    pytest.param("- name: x\n", "{file}:1: expected a mapping: 'policies:' with a list of policies, or one policy",
                 id="bare-list"),
    pytest.param("policies: []\n", "{file}:1: policies: the list of policies is empty", id="empty-policies-list"),
    pytest.param(GOOD + "    idel:\n      query: up\n",
                 "{file}:7: idel: unknown key 'idel'; did you mean 'idle'? (allowed: name, priority, description, "
                 "targets, schedule, idle, wake, min_replicas, max_replicas, scale_down_delay, startup_grace, "
                 "max_startup, prewarm, prewarm_max, on_unknown)", id="unknown-key"),
    pytest.param(GOOD + "    targets:\n      namespace: [llm]\n",
                 "{file}:8: targets.namespace: unknown key 'namespace'; did you mean 'namespaces'? (allowed: "
                 "namespaces, namespace_selector, selector, kinds, exclude_namespaces)", id="unknown-nested-key"),
    pytest.param(GOOD + "    targets:\n      kinds:\n        - Deployment\n        - Pod\n",
                 "{file}:10: targets.kinds[1]: unknown kind 'Pod': expected one of Deployment, StatefulSet, "
                 "InferenceService, Job, JobSet, RayCluster, RayJob, Notebook (or kubectl's names for them: deploy, "
                 "isvc, sts, deployments.apps/v1 …), "
                 "or a custom resource with a /scale subresource written "
                 "<plural>.<group>/<version> (e.g. vllmservers.serving.example.com/v1alpha1)", id="unknown-kind"),
    pytest.param(GOOD + "    schedule:\n      timezone: Europe/Berlim\n      windows:\n"
                        "        - {mode: up, when: Mon-Fri 08:00-20:00}\n",
                 "{file}:8: schedule.timezone: unknown time zone 'Europe/Berlim' (use an IANA name such as "
                 "Europe/Berlin or UTC)", id="unknown-time-zone"),
    pytest.param(GOOD + textwrap.indent(textwrap.dedent("""\
        schedule:
          timezone: UTC
          windows:
            - mode: up
              when: Mon-Fri 08:00-20:00
            - mode: down
              start: "0 25 * * *"
              end: "0 6 * * *"
        """), "    "), '{file}:13: schedule.windows[1].start: "0 25 * * *" is not a valid cron expression '
             "(hour '25': the last value (25) is higher than the maximum value (23))", id="bad-cron"),
    pytest.param(GOOD + textwrap.indent(textwrap.dedent("""\
        schedule:
          timezone: UTC
          windows:
            - mode: down
              start: "0 8 * * *"
              end: "0 8 * * 1"
              when: daily 08:00-09:00
        """), "    "), "{file}:13: schedule.windows[0].when: give either start and end, or when, not both",
        id="both-cron-and-when"),
    pytest.param(GOOD + "    schedule:\n      timezone: UTC\n      windows:\n        - mode: up\n"
                        "          start: '0 8 * * *'\n",
                 "{file}:10: schedule.windows[0]: missing end: a window needs start and end (cron), when "
                 "(e.g. 'Mon-Fri 08:00-20:00'), or calendars (on: [...])", id="window-without-end"),
    pytest.param(GOOD + "    schedule:\n      timezone: UTC\n      windows: []\n",
                 "{file}:9: schedule.windows: windows is empty; give at least one window or leave schedule out",
                 id="empty-windows"),
    pytest.param(GOOD + "    schedule:\n      timezone: UTC\n      windows:\n        - mode: up\n"
                        "          start: '0 8 * * 1-5'\n          end: '0 8 * * mon-fri'\n",
                 "{file}:10: schedule.windows[0]: start '0 8 * * 1-5' and end '0 8 * * mon-fri' fire at the "
                 "same times (every start falls on an end), so the window is never open", id="start-equals-end"),
    pytest.param(GOOD + "    schedule:\n      timezone: UTC\n      windows:\n        - mode: up\n"
                        "          when: daily 08:00-08:00\n",
                 "{file}:11: schedule.windows[0].when: 'daily 08:00-08:00': the window starts and ends at the "
                 "same time", id="when-start-equals-end"),
    pytest.param(GOOD + "    schedule:\n      timezone: UTC\n      windows:\n        - mode: sideways\n"
                        "          when: daily 08:00-09:00\n",
                 "{file}:10: schedule.windows[0].mode: Input should be 'up' or 'down'", id="bad-mode"),
    pytest.param(GOOD.replace("5m", "-5m"),
                 "{file}:6: idle.duration: '-5m' is negative; a duration is 0 or more (e.g. 90s, 30m, 1h30m)",
                 id="negative-duration"),
    pytest.param(GOOD.replace("5m", "five minutes"),
                 "{file}:6: idle.duration: 'five minutes' is not a duration (write e.g. 90s, 30m, 1h30m, 2d)",
                 id="unparsable-duration"),
    pytest.param(GOOD.replace("5m", "0s"), "{file}:6: idle.duration: must be longer than 0 (e.g. 90s, 30m, 1h30m)",
                 id="zero-duration"),
    pytest.param(GOOD + "    startup_grace: soon\n",
                 "{file}:7: startup_grace: 'soon' is not a duration (write e.g. 90s, 30m, 1h30m, 2d)",
                 id="unparsable-grace"),
    pytest.param(GOOD + "    min_replicas: 4\n    max_replicas: 2\n",
                 "{file}:8: max_replicas: max_replicas (2) is below min_replicas (4)", id="min-above-max"),
    pytest.param(GOOD + "    min_replicas: 0\n", "{file}:7: min_replicas: Input should be greater than or equal to 1",
                 id="min-replicas-zero"),
    pytest.param(GOOD.replace("query: up", "query: '  '"), "{file}:4: idle.query: the PromQL query is empty",
                 id="empty-promql"),
    pytest.param(GOOD.replace("    idle:\n      query: up", "    idle:\n      threshold: 2\n      query: up")
                 .replace("      threshold: 1\n", ""), None, id="keys-in-any-order-are-fine"),
    pytest.param(GOOD + "    targets:\n      selector: 'app in (chat'\n",
                 "{file}:8: targets.selector: invalid label selector 'app in (chat': expected ',' or ')' in a set "
                 "of values at the end", id="bad-selector"),
    pytest.param(GOOD + "    targets:\n      namespaces: [llm]\n      namespace_selector: team=a\n",
                 "{file}:9: targets.namespace_selector: give either namespaces or namespace_selector, not both",
                 id="namespaces-and-namespace-selector"),
    pytest.param(GOOD + "    wake: {query: q, target_per_replica: 0}\n",
                 "{file}:7: wake.target_per_replica: Input should be greater than or equal to 0.001",
                 id="zero-target-per-replica"),
    pytest.param(GOOD + "    on_unknown: panic\n", "{file}:7: on_unknown: Input should be 'hold' or 'resume'",
                 id="bad-on-unknown"),
    pytest.param("policies:\n  - name: lonely\n", "{file}:2: the policy has no rule: give at least one of schedule, "
                 "idle or wake", id="policy-without-rule"),
    pytest.param("policies:\n  - idle: {query: up, threshold: 1, duration: 5m}\n", "{file}:2: name: required",
                 id="missing-name"),
    pytest.param(GOOD.replace("name: good", "name: Good_Policy"),
                 "{file}:2: name: 'Good_Policy' is not a policy name: use 1-63 lowercase letters, digits, '-' and "
                 "'.', starting and ending with a letter or digit", id="bad-name"),
    pytest.param(GOOD + "    priority: 1\n    priority: 2\n",
                 "{file}:8: priority: duplicate key: YAML would silently keep only the last one", id="duplicate-key"),
    pytest.param(GOOD + "  - name: good\n    wake: {query: q, target_per_replica: 1}\n",
                 "{file}:7: name: duplicate policy name 'good' (first defined at {file}:2)",
                 id="duplicate-name-in-one-file"),
    pytest.param(GOOD.replace("  - name", "  - &p\n    name") + "  - *p\n",
                 "{file}:8: name: duplicate policy name 'good' (first defined at {file}:3)",
                 id="duplicate-name-by-an-alias-is-at-the-alias"),
    pytest.param("x-base: &b\n  name: good\n  idle: {query: up, threshold: 1, duration: 5m}\nx-more: [*b, *b]\n"
                 "policies:\n  - <<: *b\n  - {<<: *b, min_replicas: 2}\n",
                 "{file}:7: name: duplicate policy name 'good' (first defined at {file}:2)",
                 id="duplicate-name-by-a-merge-key-is-at-its-item"),
    pytest.param(GOOD + "extra: 1\n", "{file}:7: extra: unknown key 'extra' next to 'policies' (allowed: "
                                       "policies, calendars, and keys starting with 'x-' to hold anchors for "
                                       "merge keys)",
                 id="unknown-top-level-key"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_each_mistake_is_one_line_with_file_and_line(tmp_path, capsys, text, expected):
    path = write(tmp_path, "policy.yaml", text)
    code, lines = validate(capsys, path)
    if expected is None:
        assert (code, lines) == (0, ["1 policy in 1 file OK"])
        return
    assert code == 1
    assert lines == [expected.format(file=path)]


def test_duplicate_names_across_files_name_both_places(tmp_path, capsys):
    first = write(tmp_path, "a.yaml", GOOD)
    second = write(tmp_path, "b.yaml", "# the same name again\n" + GOOD)
    code, lines = validate(capsys, tmp_path)
    assert code == 1
    assert lines == [f"{second}:3: name: duplicate policy name 'good' (first defined at {first}:2)"]


def test_missing_path(tmp_path, capsys):
    code, lines = validate(capsys, tmp_path / "nope.yaml")
    assert (code, lines) == (1, [f"{tmp_path / 'nope.yaml'}: no such file or directory"])


def test_a_broken_link_in_a_directory_is_a_problem_not_a_file_skipped(tmp_path, capsys):
    """Its policies would vanish unsaid (and the daemon would resume what they
    paused as no longer targeted); a problem keeps the last good set in force."""
    write(tmp_path, "a.yaml", GOOD)
    (tmp_path / "b.yaml").symlink_to(tmp_path / "gone.yaml")
    code, lines = validate(capsys, tmp_path)
    assert (code, lines[:1]) == (1, [f"{tmp_path / 'b.yaml'}: a symbolic link to {tmp_path / 'gone.yaml'}, "
                                      "which does not exist"])


@pytest.mark.parametrize(("path", "cause"), [
    pytest.param("/dev/null", "/dev/null: not a regular file (a device, a socket or a pipe)", id="device"),
    pytest.param("", "'': an empty path: name a policy file or directory", id="empty"),
])
def test_a_path_that_is_no_policy_file_says_what_it_is(capsys, path, cause):
    code, lines = validate(capsys, path)
    assert (code, lines[:1]) == (1, [cause])


def test_directory_without_policy_files(tmp_path, capsys):
    write(tmp_path, "README.md", "# not a policy")
    code, lines = validate(capsys, tmp_path)
    assert (code, lines) == (1, [f"{tmp_path}: no .yaml or .yml files in this directory"])


def test_every_problem_in_every_file_is_reported(tmp_path, capsys):
    first = write(tmp_path, "a.yaml", """\
        policies:
          - name: one
            targets: {kinds: [Pod]}
            idle: {query: "", threshold: 1, duration: soon}
          - name: two
            schedule:
              timezone: Nowhere/City
              windows: [{mode: up, when: "Mon-Fri 08:00-20:00"}]
        """)
    second = write(tmp_path, "b.yaml", "policies:\n  - name: three\n    wake: {query: q, target_per_replica: -1}\n")
    code, lines = validate(capsys, tmp_path, tmp_path / "missing")
    assert code == 1
    assert [line.split(": ")[0:2] for line in lines] == [
        [f"{tmp_path / 'missing'}", "no such file or directory"],
        [f"{first}:3", "targets.kinds[0]"],
        [f"{first}:4", "idle.query"],
        [f"{first}:4", "idle.duration"],
        [f"{first}:7", "schedule.timezone"],
        [f"{second}:3", "wake.target_per_replica"],
    ]


def test_problem_count_goes_to_stderr(tmp_path, capsys):
    main(["validate", str(tmp_path / "nope")])
    assert capsys.readouterr().err.strip() == "1 problem"


# ---------------------------------------------------------------- schema


def test_schema_is_json_that_accepts_the_examples_and_rejects_mistakes(capsys):
    jsonschema = pytest.importorskip("jsonschema")
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted((ROOT / "policies").glob("*.yaml")):
        # Read as scaler and editors (YAML 1.2) read them: a bare `on:` key is the word, not true.
        for document in read_documents(path.read_text(), str(path), []):
            assert not list(validator.iter_errors(document.data)), path
    bad = {"policies": [{"name": "x", "idle": {"query": "up", "threshold": 1, "duration": "5m"}, "idel": {}}]}
    assert list(validator.iter_errors(bad))
    assert list(validator.iter_errors({"name": "x", "min_replicas": "many"}))


# ---------------------------------------------------------------- the command itself


def test_commands_registry():
    names = [command.name for command in COMMANDS]
    assert names[:2] == ["validate", "schema"] and len(set(names)) == len(names)
    assert all(command.help and callable(command.add_arguments) and callable(command.run) for command in COMMANDS)


def test_no_subcommand_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "validate" in capsys.readouterr().err


def test_python_dash_m_scaler_validate():
    result = subprocess.run([sys.executable, "-m", "scaler", "validate", "policies"], cwd=ROOT,
                            capture_output=True, check=False, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, "7 policies, 4 calendars in 6 files OK\n")
