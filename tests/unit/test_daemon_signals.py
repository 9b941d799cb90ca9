"""The daemon in process (tests/unit/running.py) acting on signals from a
fake Prometheus: a hung or a stopped Prometheus is unknown, never idle, and
the daemon stays ready; a dry run decides and writes nothing; a queue wakes
a zero scaler did not pause; a failing policy is reported and skipped.
Moved from the cluster tier: what a real Prometheus answers (NaN, a stale
series, a hole) stays there (tests/cluster/test_daemon.py, test_idle_gaps.py)."""

from __future__ import annotations

import json
import socket
import textwrap
import threading

import pytest

from scaler.decide.annotations import LAST_REPLICAS, PAUSED_BY
from tests.fakes.bodies import deployment, namespace
from tests.fakes.prometheus import FakePrometheus
from tests.helpers import pause_state, simple_crd
from tests.unit.running import Running, save, settings, wait_until

DEPLOYMENTS = "deployments.apps"
IDLE = "vllm:num_requests_running"
QUEUE = "gateway_pending_requests"


def signal_policy(*, selector: str = "app=chat", extra: str = "") -> str:
    return textwrap.dedent(f"""
        policies:
          - name: chat-idle
            targets: {{namespaces: [llm], selector: {selector}}}
            idle: {{query: '{IDLE}{{namespace="llm"}}', threshold: 0.5, duration: 1s}}
            wake: {{query: '{QUEUE}{{namespace="llm"}}', target_per_replica: 4}}
            min_replicas: 1
            max_replicas: 8
            startup_grace: 0s
            scale_down_delay: 0s
        """) + textwrap.indent(textwrap.dedent(extra), " " * 4)


class Signals:
    """What the fake Prometheus answers for the idle and the queue signal of
    llm/chat; `hang()` makes every query wait (until `answer()` again)."""

    def __init__(self, prometheus: FakePrometheus) -> None:
        self.prometheus = prometheus
        self.idle, self.queue = {"chat": 0.0}, {"chat": 0.0}
        self.hung = threading.Event()
        self.hung.set()
        prometheus.instant = self._instant

    def _instant(self, query) -> list:
        self.hung.wait(5)
        values = self.idle if IDLE in query.promql else self.queue if QUEUE in query.promql else {}
        at = float(query.form.get("time") or 0)
        return [{"metric": {"namespace": "llm", "workload": name}, "value": [at, str(value)]}
                for name, value in values.items()]

    def hang(self) -> None:
        self.hung.clear()

    def answer(self) -> None:
        self.hung.set()


@pytest.fixture
def signals(prometheus):
    found = Signals(prometheus)
    yield found
    found.answer()


def _start(fake, prometheus_url, tmp_path, text: str, **overrides) -> Running:
    (tmp_path / "policies.yaml").write_text(text)
    return Running.start(settings(fake, prometheus_url, tmp_path, **overrides))


def _replicas(fake, name: str = "chat") -> int:
    return fake.get(DEPLOYMENTS, "llm", name)["spec"]["replicas"]


def _chat(fake, replicas: int = 2, **kwargs) -> None:
    namespace(fake, "llm")
    fake.create(DEPLOYMENTS, deployment("chat", replicas=replicas, **kwargs), namespace="llm")


def test_a_hung_prometheus_is_unknown_never_idle_and_the_daemon_stays_ready(fake, prometheus, signals, log,
                                                                             tmp_path):
    _chat(fake)
    signals.idle["chat"] = 5  # busy
    with _start(fake, prometheus.url, tmp_path, signal_policy()) as daemon:
        daemon.let_reconciles_pass(1)
        signals.hang()
        signals.idle["chat"] = 0  # idle, but nobody can see it
        wait_until(lambda: (daemon.metric("scaler_query_errors_total", policy="chat-idle", signal="idle") or 0) >= 2)
        daemon.let_reconciles_pass(2)
        assert _replicas(fake) == 2
        assert daemon.readyz()[0] == 200
        assert daemon.metric("scaler_signal_unknown_workloads", policy="chat-idle", signal="idle") == 1
        failures = log.wait("signal unknown: query failed", lambda line: line.get("signal") == "idle")
        assert "timed out" in failures[0]["error"] and "max_over_time" in failures[0]["query"]
        holds = log.wait("decision", lambda line: line.get("reason_code") == "metrics-unknown")
        assert "never scale down on missing data" in holds[0]["reason"]
        signals.answer()  # Prometheus answers again: the idle workload is paused as usual
        wait_until(lambda: _replicas(fake) == 0)
    assert daemon.code == [0]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_stopped_prometheus_is_unknown_then_back_to_business_as_usual(fake, log, tmp_path):
    """Connection refused, not a hang: unknown, held, the daemon up and ready;
    started again on its address: paused as usual."""
    _chat(fake)
    port = _closed_port()
    url = f"http://127.0.0.1:{port}"
    with _start(fake, url, tmp_path, signal_policy()) as daemon:
        wait_until(lambda: (daemon.metric("scaler_query_errors_total", policy="chat-idle", signal="idle") or 0) >= 2)
        daemon.let_reconciles_pass(2)
        assert _replicas(fake) == 2 and daemon.readyz()[0] == 200
        failures = log.wait("signal unknown: query failed", lambda line: line.get("signal") == "idle")
        assert "unreachable" in failures[-1]["error"] and url in failures[-1]["error"]
        back = FakePrometheus().serve(port=port)
        try:
            back.answer(IDLE, {("llm", "chat"): 0})
            back.answer(QUEUE, {("llm", "chat"): 0})
            wait_until(lambda: _replicas(fake) == 0)
        finally:
            back.stop()
    assert daemon.code == [0]


def test_a_dry_run_decides_logs_and_exports_but_writes_nothing(fake, prometheus, log, tmp_path):
    namespace(fake, "llm")
    fake.create(DEPLOYMENTS, deployment("llm", replicas=3, gpus=2, labels={"tier": "gpu"}), namespace="llm")
    policy = textwrap.dedent("""
        policies:
          - name: nights
            targets: {namespaces: [llm], selector: tier=gpu}
            schedule:
              timezone: UTC
              windows: [{name: all-day, mode: down, when: "daily 00:00-24:00"}]
        """)
    with _start(fake, prometheus.url, tmp_path, policy, dry_run=True) as daemon:
        would = log.wait("decision", lambda line: line.get("result") == "would-change")
        assert would[0]["dry_run"] is True and would[0]["action"] == "pause" and would[0]["gpus"] == 6
        assert daemon.metric("scaler_actions_total", action="pause", result="dry_run") >= 1
        daemon.let_reconciles_pass(2)
    assert _replicas(fake, "llm") == 3
    assert pause_state(fake.get(DEPLOYMENTS, "llm", "llm")["metadata"].get("annotations")) == {}
    assert fake.count("PATCH") == 0 and fake.events("llm") == []


def test_a_queue_wakes_a_zero_scaler_did_not_pause_and_later_pauses_work(fake, prometheus, signals, log, tmp_path):
    """Rule 3a: at zero, no pause record, a queue of 10. Before: plan said
    'resume 0 -> 3' forever and nothing was written."""
    _chat(fake, replicas=0)
    signals.queue["chat"] = 10
    with _start(fake, prometheus.url, tmp_path, signal_policy(selector="app=chat")) as daemon:
        wait_until(lambda: _replicas(fake) == 3)
        assert pause_state(fake.get(DEPLOYMENTS, "llm", "chat")["metadata"].get("annotations")) == {}
        resumed = wait_until(lambda: fake.events("llm", "chat", "Resumed"))
        assert "woken to 3 replicas" in resumed[0]["message"]
        assert fake.events("llm", "chat", "ScaledToZero") == []
        # Running like any other workload: idle pauses it with its size recorded, and the queue brings that back.
        signals.queue["chat"] = 0
        wait_until(lambda: _replicas(fake) == 0)
        annotations = fake.get(DEPLOYMENTS, "llm", "chat")["metadata"]["annotations"]
        assert annotations[LAST_REPLICAS] == "3" and annotations[PAUSED_BY] == "policy/chat-idle"
        signals.queue["chat"] = 1
        wait_until(lambda: _replicas(fake) == 3)
        # One per wake, not one per tick. The line follows the write it reports: wait for it.
        wait_until(lambda: len(log.lines("decision", lambda line: line.get("action") == "resume")) >= 2)
        daemon.let_reconciles_pass(2)
    assert len(log.lines("decision", lambda line: line.get("action") == "resume")) == 2


def test_a_failing_policy_is_reported_and_skipped_the_others_act(fake, prometheus, scaler, log, tmp_path):
    """One policy targets a custom resource whose CRD has no /scale: it is
    reported (log, metric, /readyz, plan row) and skipped, and the other
    policy pauses its Deployment and a custom resource through its CRD's
    declared scale path; a hot reload that would break the run time is
    refused, and readiness says so."""
    crds = "customresourcedefinitions.apiextensions.k8s.io"
    fake.create(crds, simple_crd(group="noscale.scaler.test", kind="Plain", plural="plains", version="v1"))
    sized = simple_crd(group="sized.scaler.test", kind="SizedServer", plural="sizedservers", version="v1", scale=True)
    sized["spec"]["versions"][0]["subresources"]["scale"] = {"specReplicasPath": ".spec.size",
                                                             "statusReplicasPath": ".status.size"}
    fake.create(crds, sized)
    _chat(fake)
    fake.create("sizedservers.sized.scaler.test", {"metadata": {"name": "big"}, "spec": {"size": 3}}, namespace="llm")
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "a-plain.yaml").write_text(textwrap.dedent("""
        policies:
          - name: plain-nights
            targets: {namespaces: [llm], kinds: [plains.noscale.scaler.test/v1]}
            schedule:
              timezone: UTC
              windows: [{mode: down, when: "daily 00:00-24:00"}]
        """))
    (directory / "b-chat.yaml").write_text(textwrap.dedent("""
        policies:
          - name: chat-nights
            targets: {namespaces: [llm], kinds: [Deployment, sizedservers.sized.scaler.test/v1]}
            schedule:
              timezone: UTC
              windows: [{mode: down, when: "daily 00:00-24:00"}]
        """))
    with Running.start(settings(fake, prometheus.url, tmp_path, policies=directory)) as daemon:
        wait_until(lambda: _replicas(fake) == 0)
        big = wait_until(lambda: (obj := fake.get("sizedservers.sized.scaler.test", "llm", "big"))["spec"]
                         == {"size": 0} and obj)
        assert big["metadata"]["annotations"][LAST_REPLICAS] == "3"
        wait_until(lambda: daemon.metric("scaler_policy_failing", policy="plain-nights") == 1)
        assert daemon.metric("scaler_policy_failing", policy="chat-nights") == 0
        failing = wait_until(lambda: daemon.readyz()[1]["failingPolicies"])
        assert set(failing) == {"plain-nights"} and "no scale subresource" in failing["plain-nights"], failing
        lines = log.wait("policy failed at run time; skipped, the other policies go on")
        daemon.let_reconciles_pass(1)
        assert len(log.lines("policy failed at run time; skipped, the other policies go on")) == 1
        assert lines[0]["source"].endswith("a-plain.yaml:3"), lines

        save(directory / "c-label.yaml", textwrap.dedent("""
            policies:
              - name: bad-label
                idle: {query: up, threshold: 1, duration: 5m, workload_label: my-label}
            """))
        wait_until(lambda: daemon.metric("scaler_policy_files_valid") == 0)
        ready = wait_until(lambda: (body := daemon.readyz()[1])["policyFilesValid"] is False and body)
        assert any("c-label.yaml:4: idle.workload_label: 'my-label'" in p for p in ready["policyProblems"]), ready
        (directory / "c-label.yaml").unlink()
        wait_until(lambda: daemon.readyz()[1]["policyFilesValid"] is True)

    planned = scaler("plan", "--policies", directory, "--prometheus-url", prometheus.url, "--all")
    assert planned.code == 1, planned.out + planned.err
    row = next(line for line in planned.out.splitlines() if "plain-nights" in line)
    assert "failed" in row and "a-plain.yaml:3" in row, planned.out
    assert "plains.noscale.scaler.test/v1: the CRD plains.noscale.scaler.test has no scale subresource" in \
        " ".join(planned.out.split())
    assert json.loads(scaler("plan", "--policies", directory, "--prometheus-url", prometheus.url, "-o", "json",
                             "--all").out)["policyErrors"]
