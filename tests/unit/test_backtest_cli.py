"""`scaler backtest` in process, against the fake API server and a fake
Prometheus: GPU-hours over exactly the period asked for, and each workload's
size at the start taken from kube-state-metrics where Prometheus has it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from scaler.cli.main import main
from tests.fakes.prometheus import Query
from tests.unit.test_cli_mistakes import deployment

FROM = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)  # a Monday, inside business hours
UP = """\
policies:
  - name: chat
    targets: {namespaces: [llm]}
    schedule:
      timezone: UTC
      windows: [{name: business-hours, mode: up, when: "Mon-Fri 08:00-20:00"}]
"""
#: Keep-up from 09:30: whatever it paused before is woken then, and `outside: down` pauses before.
LATE = UP.replace("08:00-20:00", "09:30-20:00") + "      outside: down\n"


def statefulset(name: str, *, replicas: int, gpus: int = 1) -> dict:
    body = deployment(name, replicas=replicas, gpus=gpus)
    body["spec"]["serviceName"] = name
    return body


@pytest.fixture
def backtest(fake, prometheus, tmp_path, capsys):
    """Runs `scaler backtest ARGUMENTS -o OUTPUT` on the policies given: (exit
    code, the document (json) or the text printed, stderr)."""
    fake.create("namespaces", {"metadata": {"name": "llm"}})
    kubeconfig = fake.kubeconfig(tmp_path / "kubeconfig")

    def run(policies: str, *arguments: str, output: str = "json") -> tuple[int, Any, str]:
        path = tmp_path / "policies.yaml"
        path.write_text(policies)
        code = main(["backtest", "--policies", str(path), "--kubeconfig", str(kubeconfig), "--prometheus-url",
                     prometheus.url, "-o", output, *arguments])
        out, err = capsys.readouterr()
        return code, json.loads(out) if output == "json" and out.strip() else out, err
    return run


def rows(document: dict) -> dict[str, dict]:
    return {row["name"]: row for row in document["workloads"]}


@pytest.mark.parametrize(("to", "step", "hours"), [
    pytest.param("2026-11-16T09:10:00Z", "1h", 4 * 10 / 60, id="ten-minutes-at-one-hour-steps"),
    pytest.param("2026-11-16T09:10:00Z", "7m", 4 * 10 / 60, id="the-last-step-is-cut-at-the-end"),
    pytest.param("2026-11-16T09:10:00Z", "1m", 4 * 10 / 60, id="the-last-step-starts-at-the-end"),
    pytest.param("2026-11-16T09:10:30Z", "1m", 4 * 10.5 / 60, id="half-a-minute-after-the-last-step"),
])
def test_gpu_hours_are_those_of_the_period_not_of_whole_steps(fake, backtest, to, step, hours):
    """4 GPUs up for 10 minutes are 0.667 GPU-hours whatever the step (was 4.0 at 1h)."""
    fake.create("deployments.apps", deployment("chat", replicas=1, gpus=4), namespace="llm")
    code, document, err = backtest(UP, "--from", "2026-11-16T09:00:00Z", "--to", to, "--step", step)
    assert code == 0, err
    row = rows(document)["chat"]
    assert (row["gpuHours"], row["gpuHoursAlwaysUp"], row["gpuHoursSaved"]) == (round(hours, 3), round(hours, 3), 0)
    assert document["to"] == to and document["total"]["gpuHoursAlwaysUp"] == round(hours, 3)


def test_a_pause_in_the_last_step_counts_until_then(fake, backtest):
    """Paused at 09:00 (outside: down), woken at 09:30 by the window, to 09:45 at 1h steps: 2 GPUs for 15 min."""
    fake.create("deployments.apps", deployment("chat", replicas=2, gpus=1,
                                               annotations={"scaler.io/last-replicas": "2"}), namespace="llm")
    code, document, err = backtest(LATE, "--from", "2026-11-16T08:00:00Z", "--to", "2026-11-16T09:45:00Z",
                                   "--step", "30m")
    assert code == 0, err
    row = rows(document)["chat"]
    assert [(a["at"], a["action"]) for a in row["actions"]] == [("2026-11-16T08:00:00Z", "pause"),
                                                                ("2026-11-16T09:30:00Z", "resume")]
    assert row["gpuHours"] == round(2 * 15 / 60, 3) and row["gpuHoursAlwaysUp"] == round(2 * 105 / 60, 3)


def test_the_size_at_the_start_comes_from_kube_state_metrics(fake, prometheus, backtest):
    fake.create("deployments.apps", deployment("chat", replicas=1, gpus=2), namespace="llm")
    fake.create("deployments.apps", deployment("code", replicas=1, gpus=2), namespace="llm")  # no series
    fake.create("statefulsets.apps", statefulset("db", replicas=1, gpus=1), namespace="llm")
    series = {"kube_deployment_spec_replicas": ("deployment", {("llm", "chat"): 3, ("other", "chat"): 9}),
              "kube_statefulset_replicas": ("statefulset", {("llm", "db"): 2})}

    def instant(query: Query) -> list:
        for metric, (label, sizes) in series.items():
            if metric in query.promql:
                return [{"metric": {"namespace": namespace, label: name}, "value": [float(query.form["time"]),
                                                                                     str(value)]}
                        for (namespace, name), value in sizes.items()]
        return []
    prometheus.instant = instant
    code, document, err = backtest(UP, "--from", "2026-11-16T09:00:00Z", "--to", "2026-11-16T10:00:00Z")
    assert code == 0, err
    found = {name: (row["startReplicas"], row["startSizeFrom"], row["gpuHours"])
             for name, row in rows(document).items()}
    assert found == {"chat": (3, "kube-state-metrics", 6.0), "code": (1, "today (no history)", 2.0),
                     "db": (2, "kube-state-metrics", 2.0)}
    asked = [(q.path, q.promql, q.form.get("time")) for q in prometheus.requests]
    assert asked == [  # one query per kind, at the start: not one per workload
        ("/api/v1/query", "max by (namespace, deployment) (kube_deployment_spec_replicas)", f"{FROM.timestamp():.3f}"),
        ("/api/v1/query", "max by (namespace, statefulset) (kube_statefulset_replicas)", f"{FROM.timestamp():.3f}")]
    assert document["prometheusRequests"] == 2 and document["warnings"] == []


def test_the_table_says_where_each_start_size_came_from(fake, prometheus, backtest):
    fake.create("deployments.apps", deployment("chat", replicas=1, gpus=2), namespace="llm")
    fake.create("deployments.apps", deployment("code", replicas=1, gpus=2), namespace="llm")
    prometheus.instant = lambda query: [{"metric": {"namespace": "llm", "deployment": "chat"},
                                         "value": [0, "3"]}]
    code, out, err = backtest(UP, "--from", "2026-11-16T09:00:00Z", "--to", "2026-11-16T10:00:00Z",
                              output="table")
    assert code == 0, err
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("llm ")}
    assert " 3 history " in lines["chat"] and " 1 today " in lines["code"]
    assert "start size: from kube-state-metrics for 1, today's (no history) for 1 workload(s)" in out


@pytest.mark.parametrize(("annotations", "actions", "hours"), [
    pytest.param({"scaler.io/last-replicas": "2", "scaler.io/paused-by": "policy/chat"},
                 [("2026-11-16T09:30:00Z", "resume", 0, 2)], 2 * 0.5, id="its-policy-paused-it-and-wakes-it"),
    pytest.param({}, [], 0.0, id="someone-elses-zero-stays"),
])
def test_at_zero_at_the_start(fake, prometheus, backtest, annotations, actions, hours):
    """kube-state-metrics says 0 at the start. Paused by its policy (its record
    says so today): the window wakes it. Otherwise the daemon leaves a zero it
    did not make alone, and so does the replay."""
    fake.create("deployments.apps", deployment("chat", replicas=2, gpus=1, annotations=annotations),
                namespace="llm")
    prometheus.instant = lambda query: [{"metric": {"namespace": "llm", "deployment": "chat"}, "value": [0, "0"]}]
    code, document, err = backtest(LATE, "--from", "2026-11-16T09:00:00Z", "--to", "2026-11-16T10:00:00Z")
    assert code == 0, err
    row = rows(document)["chat"]
    assert [(a["at"], a["action"], a["from"], a["to"]) for a in row["actions"]] == actions
    assert (row["startReplicas"], row["gpuHours"], row["gpuHoursAlwaysUp"]) == (0, hours, 2.0)


def test_without_kube_state_metrics_answering_today_s_size_is_used_and_said(fake, prometheus, backtest):
    fake.create("deployments.apps", deployment("chat", replicas=1, gpus=2), namespace="llm")

    def broken(query: Query) -> list:
        raise RuntimeError("query processing would load too many samples into memory")
    prometheus.instant = broken
    code, document, err = backtest(UP, "--from", "2026-11-16T09:00:00Z", "--to", "2026-11-16T10:00:00Z")
    assert code == 0, err  # the replay is complete; its start is today's, and it says so
    assert rows(document)["chat"]["startSizeFrom"] == "today (no history)"
    assert document["warnings"] == [f"Deployment sizes at the start unknown, today's used: Prometheus at "
                                    f"{prometheus.url} answered an error: HTTP 422 execution: query processing "
                                    "would load too many samples into memory"]
    assert f"warning: {document['warnings'][0]}" in err


#: A queue holder that exports nothing while nobody waits (`absent: zero`);
#: `on_unknown: resume` wakes a paused workload whose queue is unknown.
ABSENT_ZERO = """\
policies:
  - name: chat
    targets: {namespaces: [llm]}
    idle: {query: 'requests_running', threshold: 0.5, duration: 10m}
    wake: {query: 'pending_requests', absent: zero, target_per_replica: 1}
    on_unknown: resume
"""


@pytest.mark.parametrize(("wake_answers", "actions", "unknown"), [
    pytest.param(True, [], 0, id="no-series-is-no-demand"),
    pytest.param(False, [("2026-11-16T09:00:00Z", "resume", "metrics-unknown")], 60, id="a-failed-answer-is-unknown"),
])
def test_a_wake_signal_absent_at_zero_reads_as_the_daemon_reads_it(fake, prometheus, backtest, scaler, tmp_path,
                                                                   wake_answers, actions, unknown):
    """Paused by its policy, and no queue series for it all hour: the daemon
    (and `plan`) read `absent: zero` as no demand and leave it at zero. The
    replay read every such step as unknown, so `on_unknown: resume` woke it at
    the first step (and every step at zero counted as unknown). Only a step
    whose answer failed is unknown."""
    fake.create("deployments.apps", deployment("chat", replicas=0, annotations={
        "scaler.io/last-replicas": "2", "scaler.io/paused-by": "policy/chat",
        "scaler.io/paused-at": "2026-11-16T08:00:00Z"}), namespace="llm")
    prometheus.instant = lambda query: [{"metric": {"namespace": "llm", "deployment": "chat"}, "value": [0, "0"]}] \
        if "kube_deployment_spec_replicas" in query.promql else []

    def answered(query: Query) -> list:
        if "pending_requests" in query.promql and not wake_answers:
            raise RuntimeError("query processing would load too many samples into memory")
        return []
    prometheus.range = answered
    code, document, err = backtest(ABSENT_ZERO, "--from", "2026-11-16T09:00:00Z", "--to", "2026-11-16T10:00:00Z",
                                   "--step", "1m")
    assert code == (0 if wake_answers else 4), err
    row = rows(document)["chat"]
    assert [(a["at"], a["action"], a["reasonCode"]) for a in row["actions"]] == actions
    assert row["unknownSteps"] == unknown
    planned = scaler("plan", "--policies", tmp_path / "policies.yaml", "--prometheus-url", prometheus.url,
                     "-o", "json", "--all")
    [evaluation] = json.loads(planned.out)["evaluations"]
    assert (evaluation["action"], evaluation["reasonCode"]) == ("hold", "at-zero")  # no series: no demand
