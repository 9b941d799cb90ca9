"""The CLI cannot hurt, and says what is wrong: against the real local cluster,
through `python -m scaler` as a user runs it. Each test asserts the exit
code, the printed lines and what is (or is not) on the objects."""

from __future__ import annotations

import json
import socket
import textwrap
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from kubernetes import client

from scaler.decide.annotations import EXCLUDE, HOLD_UNTIL, LAST_REPLICAS
from tests.helpers import gpu_deployment, run_scaler


def _replicas(kube, namespace, name) -> int:
    return client.AppsV1Api(kube).read_namespaced_deployment(name, namespace).spec.replicas


def _annotations(kube, namespace, name) -> dict:
    return client.AppsV1Api(kube).read_namespaced_deployment(name, namespace).metadata.annotations or {}


def _create(kube, namespace, name, *, replicas=2, gpus=1, labels=None, annotations=None):
    body = gpu_deployment(name, replicas=replicas, gpus=gpus, labels=labels)
    body.metadata.annotations = annotations
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, body)


def _line(text: str, *pieces: str) -> str:
    """The one line holding every piece."""
    found = [line for line in text.splitlines() if all(piece in line for piece in pieces)]
    assert len(found) == 1, (pieces, text)
    return found[0]


def test_bulk_commands_refuse_an_unscoped_selection_unless_all(kube, namespace, cluster):
    _create(kube, namespace, "a")
    _create(kube, namespace, "b", replicas=1)
    for verb in ("pause", "resume"):
        refused = run_scaler(verb, "-n", namespace, kubeconfig=cluster.kubeconfig)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.strip() == (
            f"error: refusing to {verb} every workload in namespace {namespace}: name them (NAME...), select them "
            f"(-l SELECTOR), or pass --all; --dry-run shows what --all would {verb}")
    refused = run_scaler("pause", "-A", kubeconfig=cluster.kubeconfig)
    assert refused.returncode == 2 and "refusing to pause every workload in every namespace" in refused.stderr
    assert (_replicas(kube, namespace, "a"), _replicas(kube, namespace, "b")) == (2, 1)

    dry = run_scaler("pause", "-n", namespace, "--dry-run", kubeconfig=cluster.kubeconfig)
    assert dry.returncode == 0, dry.stderr
    assert "would-change" in _line(dry.stdout, " a ", "2 -> 0")
    assert "would-change" in _line(dry.stdout, " b ", "1 -> 0")
    assert "dry run: 2 would change, 0 unchanged, 0 skipped, 0 failed; 3 GPUs freed" in dry.stdout
    assert (_replicas(kube, namespace, "a"), _replicas(kube, namespace, "b")) == (2, 1)

    done = run_scaler("pause", "-n", namespace, "--all", kubeconfig=cluster.kubeconfig)
    assert done.returncode == 0, done.stderr
    assert "2 changed, 0 unchanged, 0 skipped, 0 failed; 3 GPUs freed" in done.stdout
    assert (_replicas(kube, namespace, "a"), _replicas(kube, namespace, "b")) == (0, 0)


def test_excluded_namespaces_and_the_exclude_annotation_are_skipped_rows_never_touched(kube, namespace, cluster):
    _create(kube, namespace, "chat", labels={"ns": namespace})
    _create(kube, namespace, "keep", labels={"ns": namespace}, annotations={EXCLUDE: "true"})
    result = run_scaler("pause", "-n", namespace, "--all", kubeconfig=cluster.kubeconfig)
    assert result.returncode == 0, result.stderr
    assert "skipped" in _line(result.stdout, " keep ", 'excluded: annotated scaler.io/exclude: "true"; never touched')
    assert "changed" in _line(result.stdout, " chat ", "2 -> 0")
    ours = {k: v for k, v in _annotations(kube, namespace, "keep").items() if k.startswith("scaler.io/")}
    assert (_replicas(kube, namespace, "keep"), ours) == (2, {EXCLUDE: "true"})

    by_name = run_scaler("pause", "keep", "-n", namespace, kubeconfig=cluster.kubeconfig)
    assert by_name.returncode == 0 and "excluded" in _line(by_name.stdout, " keep ")
    assert _replicas(kube, namespace, "keep") == 2

    # Every namespace, with this one excluded as kube-system is: every row of it skipped, nothing touched.
    everywhere = run_scaler("resume", "-A", "-l", f"ns={namespace}", "--excluded-namespaces",
                            f"kube-system,{namespace}", kubeconfig=cluster.kubeconfig)
    assert everywhere.returncode == 0, everywhere.stderr
    assert f"excluded: namespace {namespace} is never touched" in _line(everywhere.stdout, " chat ")
    assert _replicas(kube, namespace, "chat") == 0  # still paused: not resumed


def test_pause_all_namespaces_never_touches_kube_system(kube, namespace, cluster):
    name = f"dns-{namespace[-5:]}"  # a coredns stand-in, unique to this test
    _create(kube, "kube-system", name, labels={"ns": namespace})
    _create(kube, namespace, "chat", labels={"ns": namespace})
    try:
        result = run_scaler("pause", "-A", "-l", f"ns={namespace}", kubeconfig=cluster.kubeconfig)
        assert result.returncode == 0, result.stderr
        row = _line(result.stdout, f" {name} ")
        assert "skipped" in row and "excluded: namespace kube-system is never touched" in row
        assert "1 changed, 0 unchanged, 1 skipped, 0 failed" in result.stdout
        assert (_replicas(kube, "kube-system", name), _replicas(kube, namespace, "chat")) == (2, 0)
    finally:
        client.AppsV1Api(kube).delete_namespaced_deployment(name, "kube-system")


@pytest.fixture
def closed_port():
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


def _hostile_cases(namespace, tmp_path, closed_port):
    unreadable = tmp_path / "a-directory"  # unreadable as a file, even for root
    unreadable.mkdir()
    empty, garbage, listy = tmp_path / "empty", tmp_path / "garbage", tmp_path / "listy"
    empty.write_text("")
    garbage.write_text("clusters: [unclosed\n")
    listy.write_text("- a\n- b\n")
    no_context = _kubeconfig(tmp_path / "no-context", **{"current-context": None})
    down = _kubeconfig(tmp_path / "down", server=f"https://127.0.0.1:{closed_port}")
    n = ("-n", namespace)
    K = "--kubeconfig"
    return [
        # (arguments, exit code, a piece of the one `error:` line)
        (("pause", "-l", "app=(", *n), 2, "invalid label selector 'app=(': '(' is not a valid label value at column 5"),
        (("pause", "-l", "app in (a", *n), 2, "expected ',' or ')' in a set of values at the end"),
        (("resume", "-l", "=x", *n), 2, "expected a label key but found '=' at column 1"),
        (("status", "-l", "a b", *n), 2, "after 'a' but found 'b' at column 3"),
        (("pause", "x", "--kind", "Pod", *n), 2, "unknown kind 'Pod': expected one of Deployment, StatefulSet, "
                                                 "InferenceService"),
        (("status", "--kind", "widgets.example.com", *n), 2, "needs its version"),
        (("pause", "pod/x", *n), 2, "unknown kind 'pod': expected one of Deployment"),
        (("pause", "deploy/x", "y", *n), 2, "give every NAME as TYPE/NAME (deploy/llm), or none of them and --kind"),
        (("resume", "deploy/x", "--kind", "sts", *n), 2, "--kind and TYPE/NAME both give the kind"),
        (("pause", "deploy/", *n), 2, "'deploy/': expected TYPE/NAME, e.g. deploy/llm"),
        (("pause", "x", "-n", "no-such-namespace"), 1, "namespace 'no-such-namespace' not found"),
        (("status", "-n", "no-such-namespace"), 1, "namespace 'no-such-namespace' not found"),
        (("resume", "x", "-n", "no-such-namespace", "--for", "1h"), 1, "namespace 'no-such-namespace' not found"),
        (("pause", "x", *n, K, str(tmp_path / "missing")), 1, f"kubeconfig {tmp_path / 'missing'} does not exist"),
        (("status", K, str(unreadable)), 1, f"kubeconfig {unreadable} is unreadable: Is a directory"),
        (("status", K, str(empty)), 1, f"kubeconfig {empty} is empty"),
        (("status", K, str(garbage)), 1, f"kubeconfig {garbage} is not valid YAML at line 2"),
        (("status", K, str(listy)), 1, f"kubeconfig {listy} is not a kubeconfig"),
        (("status", K, no_context), 1, "has no current context: pass --context (one of: x)"),
        (("status", K, down, "--context", "nope"), 1, "context 'nope' is not defined in kubeconfig"),
        (("status", K, down), 1, f"cannot reach the API server at https://127.0.0.1:{closed_port}: "),
        (("pause", "x", *n, K, down), 1, f"cannot reach the API server at https://127.0.0.1:{closed_port}: "),
        (("pause", *n), 2, "refusing to pause every workload"),
        (("resume", "-A"), 2, "refusing to resume every workload in every namespace"),
        (("resume", "x", *n, "--for", "soon"), 2, "--for 'soon' is not a duration"),
        (("resume", "x", *n, "--for", "0s"), 2, "--for '0s' must be longer than 0"),
        (("resume", "x", *n, "--until", "yesterday"), 2, "--until 'yesterday' is not a time"),
        (("resume", "x", *n, "--until", "2001-01-01T00:00:00Z"), 2, "is in the past"),
        (("resume", "x", *n, "--until", "25:00"), 2, "--until '25:00' is not a time"),
        (("pause", "x", *n, "--concurrency", "0"), 1, "invalid setting --concurrency / SCALER_CONCURRENCY"),
        (("status", *n, "--api-qps", "fast"), 1, "invalid setting --api-qps / SCALER_API_QPS"),
        # argparse's own usage errors: exit 2 and its `error:` line
        (("pause", "x", *n, "-o", "xml"), 2, "argument -o/--output: invalid choice: 'xml'"),
        (("plan", "-o", "csv"), 2, "argument -o/--output: invalid choice: 'csv'"),
        (("pause", "x", "-n", namespace, "-A"), 2, "not allowed with argument"),
        (("resume", "x", *n, "--for", "1h", "--until", "18:00"), 2, "not allowed with argument"),
        (("resume", "x", *n, "--min-replicas", "0"), 2, "'0' must be 1 or more"),
        (("resume", "x", *n, "--timeout", "-1"), 2, "'-1' must be more than 0"),
        (("pause", "x", *n, "--for", "1h"), 2, "unrecognized arguments: --for 1h"),
        (("status", "x", *n), 2, "unrecognized arguments: x"),
        (("frobnicate",), 2, "invalid choice: 'frobnicate'"),
        (("plan", "--policies", str(tmp_path / "missing.yaml")), 1, "error: the policies are invalid"),
    ]


def test_hostile_arguments_exit_with_one_error_line_naming_the_cause(namespace, cluster, tmp_path, closed_port):
    cases = _hostile_cases(namespace, tmp_path, closed_port)
    assert len(cases) >= 30
    for arguments, code, cause in cases:
        result = run_scaler(*arguments, kubeconfig=cluster.kubeconfig, timeout_seconds=60)
        where = f"scaler {' '.join(arguments)}:\n{result.stderr}"
        assert result.returncode == code, where
        assert "Traceback" not in result.stderr + result.stdout, where
        errors = [line for line in result.stderr.splitlines() if "error: " in line]
        assert len(errors) == 1 and cause in errors[0], where


def test_output_forms_for_pause_resume_status_and_plan(kube, namespace, cluster, tmp_path):
    _create(kube, namespace, "chat", labels={"tier": "gpu"})
    select = ("chat", "-n", namespace)
    named = run_scaler("pause", *select, "-o", "name", kubeconfig=cluster.kubeconfig)
    assert (named.returncode, named.stdout) == (0, "deployment.apps/chat\n"), named.stderr
    again = run_scaler("pause", *select, "-o", "yaml", kubeconfig=cluster.kubeconfig)
    document = yaml.safe_load(again.stdout)
    assert document["results"][0]["result"] == "unchanged" and document["summary"]["unchanged"] == 1
    status = run_scaler("status", "-n", namespace, "-o", "wide", kubeconfig=cluster.kubeconfig)
    assert status.returncode == 0, status.stderr
    header = status.stdout.splitlines()[0].split()
    assert header[:4] == ["NAMESPACE", "KIND", "NAME", "STATE"] and "BACKOFF" in header and "HOLD" in header
    assert yaml.safe_load(run_scaler("status", "-n", namespace, "-o", "yaml",
                                     kubeconfig=cluster.kubeconfig).stdout)["paused"][0]["resumeTo"] == 2
    assert run_scaler("status", "-n", namespace, "-o", "name", kubeconfig=cluster.kubeconfig).stdout == \
        "deployment.apps/chat\n"
    resumed = run_scaler("resume", *select, "-o", "wide", kubeconfig=cluster.kubeconfig)
    assert "WARNINGS" in resumed.stdout.splitlines()[0] and "0 -> 2" in _line(resumed.stdout, " chat ")

    policies = tmp_path / "policies.yaml"
    policies.write_text(textwrap.dedent(f"""
        policies:
          - name: all-day
            targets: {{namespaces: [{namespace}], selector: tier=gpu}}
            schedule:
              timezone: UTC
              windows:
                - {{name: a, mode: down, start: "0 0 * * *", end: "0 12 * * *"}}
                - {{name: b, mode: down, start: "0 12 * * *", end: "0 0 * * *"}}
        """))
    plan = ("plan", "--policies", str(policies), "--prometheus-url", cluster.prometheus_url)
    pending = run_scaler(*plan, "-o", "name", kubeconfig=cluster.kubeconfig)
    assert (pending.returncode, pending.stdout) == (3, "deployment.apps/chat\n"), pending.stderr
    wide = run_scaler(*plan, "-o", "wide", kubeconfig=cluster.kubeconfig)
    assert wide.returncode == 3 and "keep-down-window" in _line(wide.stdout, " chat ")
    as_yaml = yaml.safe_load(run_scaler(*plan, "-o", "yaml", kubeconfig=cluster.kubeconfig).stdout)
    assert as_yaml["pending"] == 1 and as_yaml["evaluations"][0]["action"] == "pause"


def test_plan_with_prometheus_down_exits_unknown(kube, namespace, cluster, tmp_path, closed_port):
    _create(kube, namespace, "chat")
    policies = tmp_path / "policies.yaml"
    policies.write_text(textwrap.dedent(f"""
        policies:
          - name: idle
            targets: {{namespaces: [{namespace}], selector: app=chat}}
            idle: {{query: 'vllm:num_requests_running', threshold: 1, duration: 5m}}
        """))
    result = run_scaler("plan", "--policies", str(policies), "--prometheus-url", f"http://127.0.0.1:{closed_port}",
                        "--all", kubeconfig=cluster.kubeconfig)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "metrics-unknown" not in result.stdout  # the table says it in words
    assert "metrics unavailable: idle signal unknown: holding at 2" in _line(result.stdout, " chat ")
    assert "unknown: 1 signal(s) could not be evaluated; what depends on them is held (exit 4)" in result.stderr


def test_status_shows_what_is_true_on_the_cluster(kube, namespace, cluster):
    _create(kube, namespace, "chat", replicas=2, gpus=1)
    _create(kube, namespace, "idle", replicas=3, gpus=2)
    assert run_scaler("pause", "chat", "idle", "-n", namespace, kubeconfig=cluster.kubeconfig).returncode == 0
    # A person scales one back up with kubectl, leaving our record on a running workload.
    client.AppsV1Api(kube).patch_namespaced_deployment_scale("chat", namespace, {"spec": {"replicas": 2}},
                                                             field_manager="kubectl")
    status = run_scaler("status", "-n", namespace, kubeconfig=cluster.kubeconfig)
    assert status.returncode == 0, status.stderr
    chat = _line(status.stdout, " chat ")
    assert " running " in chat and "set to 2 by kubectl after the pause (record left)" in chat
    assert " paused " in _line(status.stdout, " idle ")
    assert "1 paused; 6 GPUs paused; 1 running with scaler state" in status.stdout
    rows = {row["name"]: row for row in json.loads(run_scaler(
        "status", "-n", namespace, "-o", "json", kubeconfig=cluster.kubeconfig).stdout)["workloads"]}
    assert (rows["chat"]["replicas"], rows["chat"]["recorded"], rows["chat"]["changedBy"]) == (2, 2, "kubectl")
    assert (rows["idle"]["pausedBy"], rows["idle"]["resumeTo"], rows["idle"]["gpus"]) == ("manual", 3, 6)


def test_resume_for_and_until_hold_it_up_on_the_object(kube, namespace, cluster):
    _create(kube, namespace, "chat", replicas=2)
    _create(kube, namespace, "woken", replicas=1)
    assert run_scaler("pause", "chat", "-n", namespace, kubeconfig=cluster.kubeconfig).returncode == 0
    before = datetime.now(UTC).replace(microsecond=0)
    woke = run_scaler("resume", "chat", "-n", namespace, "--for", "2h", kubeconfig=cluster.kubeconfig)
    assert woke.returncode == 0, woke.stderr
    assert "resumed to 2 replicas" in _line(woke.stdout, " chat ") and "held up until" in woke.stdout
    annotations = _annotations(kube, namespace, "chat")
    until = datetime.fromisoformat(annotations[HOLD_UNTIL].replace("Z", "+00:00"))
    assert timedelta(hours=2) <= until - before <= timedelta(hours=2, seconds=30)
    assert LAST_REPLICAS not in annotations and _replicas(kube, namespace, "chat") == 2

    held = run_scaler("resume", "woken", "-n", namespace, "--until", "next-window", kubeconfig=cluster.kubeconfig)
    assert held.returncode == 0, held.stderr
    assert "not paused (running at 1 replicas); held up until next-window" in _line(held.stdout, " woken ")
    assert _annotations(kube, namespace, "woken")[HOLD_UNTIL] == "next-window"

    status = run_scaler("status", "-n", namespace, kubeconfig=cluster.kubeconfig)
    assert f"held up until {until:%Y-%m-%d %H:%M} UTC" in _line(status.stdout, " chat ")
    assert "held up until the policy's next window edge" in _line(status.stdout, " woken ")
    assert "0 paused; 0 GPUs paused; 2 running with scaler state" in status.stdout
