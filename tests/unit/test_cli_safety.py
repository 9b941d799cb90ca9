"""The CLI cannot hurt, and says what is wrong: in process against the fake
API server (moved from the cluster tier, where each case cost a Python
start). Each test asserts the exit code, the printed lines and what is (or
is not) on the objects."""

from __future__ import annotations

import json
import socket
import textwrap
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from scaler.decide.annotations import EXCLUDE, HOLD_UNTIL, LAST_REPLICAS
from tests.fakes.bodies import deployment, namespace

DEPLOYMENTS = "deployments.apps"


def _create(fake, name, *, ns="llm", replicas=2, gpus=1, labels=None, annotations=None):
    namespace(fake, ns)
    fake.create(DEPLOYMENTS, deployment(name, replicas=replicas, gpus=gpus, labels=labels, annotations=annotations),
                namespace=ns)


def _replicas(fake, name, ns="llm") -> int:
    return fake.get(DEPLOYMENTS, ns, name)["spec"]["replicas"]


def _annotations(fake, name, ns="llm") -> dict:
    return fake.get(DEPLOYMENTS, ns, name)["metadata"].get("annotations") or {}


def _line(text: str, *pieces: str) -> str:
    """The one line holding every piece."""
    found = [line for line in text.splitlines() if all(piece in f" {line} " for piece in pieces)]
    assert len(found) == 1, (pieces, text)
    return found[0]


ALL_DAY = """
    policies:
      - name: all-day
        targets: {namespaces: [llm], selector: tier=gpu}
        schedule:
          timezone: UTC
          windows:
            - {name: a, mode: down, start: "0 0 * * *", end: "0 12 * * *"}
            - {name: b, mode: down, start: "0 12 * * *", end: "0 0 * * *"}
    """


def test_bulk_commands_refuse_an_unscoped_selection_unless_all(fake, scaler):
    _create(fake, "a")
    _create(fake, "b", replicas=1)
    for verb in ("pause", "resume"):
        refused = scaler(verb, "-n", "llm")
        assert refused.code == 2, refused.err
        assert refused.err.strip() == (
            f"error: refusing to {verb} every workload in namespace llm: name them (NAME...), select them "
            f"(-l SELECTOR), or pass --all; --dry-run shows what --all would {verb}")
    refused = scaler("pause", "-A")
    assert refused.code == 2 and "refusing to pause every workload in every namespace" in refused.err
    assert (_replicas(fake, "a"), _replicas(fake, "b")) == (2, 1) and fake.count("PATCH") == 0

    dry = scaler("pause", "-n", "llm", "--dry-run")
    assert dry.code == 0, dry.err
    assert "would-change" in _line(dry.out, " a ", "2 -> 0")
    assert "would-change" in _line(dry.out, " b ", "1 -> 0")
    assert "dry run: 2 would change, 0 unchanged, 0 skipped, 0 failed; 3 GPUs freed" in dry.out
    assert (_replicas(fake, "a"), _replicas(fake, "b")) == (2, 1)

    done = scaler("pause", "-n", "llm", "--all")
    assert done.code == 0, done.err
    assert "2 changed, 0 unchanged, 0 skipped, 0 failed; 3 GPUs freed" in done.out
    assert (_replicas(fake, "a"), _replicas(fake, "b")) == (0, 0)


def test_excluded_namespaces_and_the_exclude_annotation_are_skipped_rows_never_touched(fake, scaler):
    _create(fake, "chat", labels={"ns": "llm"})
    _create(fake, "keep", labels={"ns": "llm"}, annotations={EXCLUDE: "true"})
    result = scaler("pause", "-n", "llm", "--all")
    assert result.code == 0, result.err
    assert "skipped" in _line(result.out, " keep ", 'excluded: annotated scaler.io/exclude: "true"; never touched')
    assert "changed" in _line(result.out, " chat ", "2 -> 0")
    ours = {k: v for k, v in _annotations(fake, "keep").items() if k.startswith("scaler.io/")}
    assert (_replicas(fake, "keep"), ours) == (2, {EXCLUDE: "true"})

    by_name = scaler("pause", "keep", "-n", "llm")
    assert by_name.code == 0 and "excluded" in _line(by_name.out, " keep ")
    assert _replicas(fake, "keep") == 2

    # Every namespace, with this one excluded as kube-system is: every row of it skipped, nothing touched.
    everywhere = scaler("resume", "-A", "-l", "ns=llm", "--excluded-namespaces", "kube-system,llm")
    assert everywhere.code == 0, everywhere.err
    assert "excluded: namespace llm is never touched" in _line(everywhere.out, " chat ")
    assert _replicas(fake, "chat") == 0  # still paused: not resumed


def test_pause_all_namespaces_never_touches_kube_system(fake, scaler):
    _create(fake, "coredns", ns="kube-system", labels={"ns": "llm"})
    _create(fake, "chat", labels={"ns": "llm"})
    result = scaler("pause", "-A", "-l", "ns=llm")
    assert result.code == 0, result.err
    row = _line(result.out, " coredns ")
    assert "skipped" in row and "excluded: namespace kube-system is never touched" in row
    assert "1 changed, 0 unchanged, 1 skipped, 0 failed" in result.out
    assert (_replicas(fake, "coredns", "kube-system"), _replicas(fake, "chat")) == (2, 0)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _kubeconfig(path, **fields) -> str:
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "x",
              "clusters": [{"name": "x", "cluster": {"server": fields.pop("server", "https://127.0.0.1:9"),
                                                     "insecure-skip-tls-verify": True}}],
              "users": [{"name": "x", "user": {"token": "t"}}],
              "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}]}
    config.update(fields)
    path.write_text(yaml.safe_dump({k: v for k, v in config.items() if v is not None}))
    return str(path)


def _files(tmp_path, port: int) -> dict[str, str]:
    """The files the hostile cases name ({unreadable} ...), made in tmp_path; {down} points at `port`."""
    unreadable = tmp_path / "a-directory"  # unreadable as a file, even for root
    unreadable.mkdir()
    for name, text in (("empty", ""), ("garbage", "clusters: [unclosed\n"), ("listy", "- a\n- b\n")):
        (tmp_path / name).write_text(text)
    return {"missing": str(tmp_path / "missing"), "unreadable": str(unreadable), "empty": str(tmp_path / "empty"),
            "garbage": str(tmp_path / "garbage"), "listy": str(tmp_path / "listy"),
            "no-context": _kubeconfig(tmp_path / "no-context", **{"current-context": None}),
            "down": _kubeconfig(tmp_path / "down", server=f"https://127.0.0.1:{port}"),
            "missing_yaml": str(tmp_path / "missing.yaml"), "port": str(port)}


N = ("-n", "llm")
K = "--kubeconfig"
#: (arguments, exit code, a piece of the one `error:` line); {name} is one of _files, {port} a closed port.
HOSTILE = [
    (("pause", "-l", "app=(", *N), 2, "invalid label selector 'app=(': '(' is not a valid label value at column 5"),
    (("pause", "-l", "app in (a", *N), 2, "expected ',' or ')' in a set of values at the end"),
    (("resume", "-l", "=x", *N), 2, "expected a label key but found '=' at column 1"),
    (("status", "-l", "a b", *N), 2, "after 'a' but found 'b' at column 3"),
    (("pause", "x", "--kind", "Pod", *N), 2, "unknown kind 'Pod': expected one of Deployment, StatefulSet, "
                                             "InferenceService"),
    (("status", "--kind", "widgets.example.com", *N), 2, "needs its version"),
    (("pause", "pod/x", *N), 2, "unknown kind 'pod': expected one of Deployment"),
    (("pause", "deploy/x", "y", *N), 2, "give every NAME as TYPE/NAME (deploy/llm), or none of them and --kind"),
    (("resume", "deploy/x", "--kind", "sts", *N), 2, "--kind and TYPE/NAME both give the kind"),
    (("pause", "deploy/", *N), 2, "'deploy/': expected TYPE/NAME, e.g. deploy/llm"),
    (("pause", "x", "-n", "no-such-namespace"), 1, "namespace 'no-such-namespace' not found"),
    (("status", "-n", "no-such-namespace"), 1, "namespace 'no-such-namespace' not found"),
    (("resume", "x", "-n", "no-such-namespace", "--for", "1h"), 1, "namespace 'no-such-namespace' not found"),
    (("pause", "x", *N, K, "{missing}"), 1, "kubeconfig {missing} does not exist"),
    (("status", K, "{unreadable}"), 1, "kubeconfig {unreadable} is unreadable: Is a directory"),
    (("status", K, "{empty}"), 1, "kubeconfig {empty} is empty"),
    (("status", K, "{garbage}"), 1, "kubeconfig {garbage} is not valid YAML at line 2"),
    (("status", K, "{listy}"), 1, "kubeconfig {listy} is not a kubeconfig"),
    (("status", K, "{no-context}"), 1, "has no current context: pass --context (one of: x)"),
    (("status", K, "{down}", "--context", "nope"), 1, "context 'nope' is not defined in kubeconfig"),
    (("status", K, "{down}"), 1, "cannot reach the API server at https://127.0.0.1:{port}: "),
    (("pause", "x", *N, K, "{down}"), 1, "cannot reach the API server at https://127.0.0.1:{port}: "),
    (("pause", *N), 2, "refusing to pause every workload"),
    (("resume", "-A"), 2, "refusing to resume every workload in every namespace"),
    (("pause", "x", "-A"), 2, "pause: a workload cannot be named across all namespaces (-A)"),
    (("resume", "x", "-A", "--dry-run"), 2, "resume: a workload cannot be named across all namespaces (-A)"),
    (("pause", "x", *N, "--all"), 2, "pause: NAME and --all cannot be given together"),
    (("pause", "x", *N, "-l", "app=x"), 2, "pause: NAME and -l cannot be given together"),
    (("resume", *N, "-l", "app=x", "--all"), 2, "resume: -l and --all cannot be given together"),
    (("resume", "x", *N, "--for", "soon"), 2, "--for 'soon' is not a duration"),
    (("resume", "x", *N, "--for", "0s"), 2, "--for '0s' must be longer than 0"),
    (("resume", "x", *N, "--until", "yesterday"), 2, "--until 'yesterday' is not a time"),
    (("resume", "x", *N, "--until", "2001-01-01T00:00:00Z"), 2, "is in the past"),
    (("resume", "x", *N, "--until", "25:00"), 2, "--until '25:00' is not a time"),
    (("pause", "x", *N, "--concurrency", "0"), 1, "invalid setting --concurrency / SCALER_CONCURRENCY"),
    (("status", *N, "--api-qps", "fast"), 1, "invalid setting --api-qps / SCALER_API_QPS"),
    # argparse's own usage errors: exit 2 and its `error:` line
    (("pause", "x", *N, "-o", "xml"), 2, "argument -o/--output: invalid choice: 'xml'"),
    (("plan", "-o", "csv"), 2, "argument -o/--output: invalid choice: 'csv'"),
    (("pause", "x", "-n", "llm", "-A"), 2, "not allowed with argument"),
    (("resume", "x", *N, "--for", "1h", "--until", "18:00"), 2, "not allowed with argument"),
    (("resume", "x", *N, "--min-replicas", "0"), 2, "'0' must be 1 or more"),
    (("resume", "x", *N, "--timeout", "-1"), 2, "'-1' must be more than 0"),
    (("pause", "x", *N, "--for", "1h"), 2, "unrecognized arguments: --for 1h"),
    (("status", "x", *N), 2, "unrecognized arguments: x"),
    (("frobnicate",), 2, "invalid choice: 'frobnicate'"),
    (("plan", "--policies", "{missing_yaml}"), 1, "error: the policies are invalid"),
]


@pytest.mark.parametrize(("arguments", "code", "cause"), [pytest.param(*case, id=" ".join(case[0])[:60])
                                                          for case in HOSTILE])
def test_hostile_arguments_exit_with_one_error_line_naming_the_cause(fake, scaler, tmp_path, arguments, code, cause):
    namespace(fake, "llm")
    names = _files(tmp_path, _closed_port())
    filled = [argument.format(**names) if "{" in argument else argument for argument in arguments]
    result = scaler(*filled)
    where = f"scaler {' '.join(filled)}:\n{result.err}"
    assert result.code == code, where
    assert "Traceback" not in result.err + result.out, where
    errors = [line for line in result.err.splitlines() if "error: " in line]
    assert len(errors) == 1 and cause.format(**names) in errors[0], where


def test_the_hostile_table_covers_every_command_a_user_types():
    assert len(HOSTILE) >= 30
    assert {arguments[0] for arguments, _, _ in HOSTILE} >= {"pause", "resume", "status", "plan"}


def test_output_forms_for_pause_resume_status_and_plan(fake, scaler, tmp_path, prometheus):
    _create(fake, "chat", labels={"tier": "gpu"})
    select = ("chat", "-n", "llm")
    named = scaler("pause", *select, "-o", "name")
    assert (named.code, named.out) == (0, "deployment.apps/chat\n"), named.err
    document = yaml.safe_load(scaler("pause", *select, "-o", "yaml").out)
    assert document["results"][0]["result"] == "unchanged" and document["summary"]["unchanged"] == 1
    status = scaler("status", "-n", "llm", "-o", "wide")
    assert status.code == 0, status.err
    header = status.out.splitlines()[0].split()
    assert header[:4] == ["NAMESPACE", "KIND", "NAME", "STATE"] and "BACKOFF" in header and "HOLD" in header
    assert yaml.safe_load(scaler("status", "-n", "llm", "-o", "yaml").out)["paused"][0]["resumeTo"] == 2
    assert scaler("status", "-n", "llm", "-o", "name").out == "deployment.apps/chat\n"
    resumed = scaler("resume", *select, "-o", "wide")
    assert "WARNINGS" in resumed.out.splitlines()[0] and "0 -> 2" in _line(resumed.out, " chat ")

    policies = tmp_path / "policies.yaml"
    policies.write_text(textwrap.dedent(ALL_DAY))
    plan = ("plan", "--policies", policies, "--prometheus-url", prometheus.url)
    pending = scaler(*plan, "-o", "name")
    assert (pending.code, pending.out) == (3, "deployment.apps/chat\n"), pending.err
    wide = scaler(*plan, "-o", "wide")
    assert wide.code == 3 and "keep-down-window" in _line(wide.out, " chat ")
    as_yaml = yaml.safe_load(scaler(*plan, "-o", "yaml").out)
    assert as_yaml["pending"] == 1 and as_yaml["evaluations"][0]["action"] == "pause"


def test_plan_with_prometheus_down_exits_unknown(fake, scaler, tmp_path):
    _create(fake, "chat")
    policies = tmp_path / "policies.yaml"
    policies.write_text(textwrap.dedent("""
        policies:
          - name: idle
            targets: {namespaces: [llm], selector: app=chat}
            idle: {query: 'vllm:num_requests_running', threshold: 1, duration: 5m}
        """))
    result = scaler("plan", "--policies", policies, "--prometheus-url", f"http://127.0.0.1:{_closed_port()}", "--all")
    assert result.code == 4, result.out + result.err
    assert "metrics-unknown" not in result.out  # the table says it in words
    assert "metrics unavailable: idle signal unknown: holding at 2" in _line(result.out, " chat ")
    assert "unknown: 1 signal(s) could not be evaluated; what depends on them is held (exit 4)" in result.err


def test_status_shows_what_is_true_on_the_cluster(fake, scaler):
    _create(fake, "chat", replicas=2, gpus=1)
    _create(fake, "idle", replicas=3, gpus=2)
    assert scaler("pause", "chat", "idle", "-n", "llm").code == 0
    # A person scales one back up with kubectl, leaving our record on a running workload.
    fake.patch(DEPLOYMENTS, "llm", "chat", {"spec": {"replicas": 2}}, manager="kubectl")
    status = scaler("status", "-n", "llm")
    assert status.code == 0, status.err
    chat = _line(status.out, " chat ")
    assert " running " in chat and "set to 2 by kubectl after the pause (record left)" in chat
    assert " paused " in _line(status.out, " idle ")
    assert "1 paused; 6 GPUs paused; 1 running with scaler state" in status.out
    rows = {row["name"]: row for row in json.loads(scaler("status", "-n", "llm", "-o", "json").out)["workloads"]}
    assert (rows["chat"]["replicas"], rows["chat"]["recorded"], rows["chat"]["changedBy"]) == (2, 2, "kubectl")
    assert (rows["idle"]["pausedBy"], rows["idle"]["resumeTo"], rows["idle"]["gpus"]) == ("manual", 3, 6)


def test_resume_for_and_until_hold_it_up_on_the_object(fake, scaler):
    _create(fake, "chat", replicas=2)
    _create(fake, "woken", replicas=1)
    assert scaler("pause", "chat", "-n", "llm").code == 0
    before = datetime.now(UTC).replace(microsecond=0)
    woke = scaler("resume", "chat", "-n", "llm", "--for", "2h")
    assert woke.code == 0, woke.err
    assert "resumed to 2 replicas" in _line(woke.out, " chat ") and "held up until" in woke.out
    annotations = _annotations(fake, "chat")
    until = datetime.fromisoformat(annotations[HOLD_UNTIL].replace("Z", "+00:00"))
    assert timedelta(hours=2) <= until - before <= timedelta(hours=2, seconds=30)
    assert LAST_REPLICAS not in annotations and _replicas(fake, "chat") == 2

    held = scaler("resume", "woken", "-n", "llm", "--until", "next-window")
    assert held.code == 0, held.err
    assert "not paused (running at 1 replicas); held up until next-window" in _line(held.out, " woken ")
    assert _annotations(fake, "woken")[HOLD_UNTIL] == "next-window"

    status = scaler("status", "-n", "llm")
    assert f"held up until {until:%Y-%m-%d %H:%M} UTC" in _line(status.out, " chat ")
    assert "held up until the policy's next window edge" in _line(status.out, " woken ")
    assert "0 paused; 0 GPUs paused; 2 running with scaler state" in status.out
