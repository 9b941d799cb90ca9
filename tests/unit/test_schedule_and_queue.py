"""A schedule and a queue on one policy, in process (tests/unit/running.py):
the daemon's first pass writes what the windows decide alone, before any
query, but a resume of a policy with a wake signal waits for that signal. A
keep-up window opening while a queue waits wakes the workload once, to the
queue's size, for the reason `scaler plan` gives; and a reconcile counts one
decision per workload."""

from __future__ import annotations

import json
import textwrap
import threading
from datetime import UTC, datetime, timedelta

import pytest

from scaler.decide.annotations import LAST_REPLICAS, PAUSE_CAUSE, PAUSED_AT, PAUSED_BY
from tests.fakes.bodies import all_day, deployment, namespace
from tests.fakes.prometheus import FakePrometheus
from tests.unit.running import Running, settings, wait_until

DEPLOYMENTS = "deployments.apps"
QUEUE = "sum by (namespace, workload) (gateway_pending_requests)"
PAUSED = {LAST_REPLICAS: "1", PAUSED_BY: "policy/chat", PAUSED_AT: "2026-01-01T00:00:00Z",
          PAUSE_CAUSE: "idle-timeout"}


def _policy(windows: str, extra: str = "") -> str:
    return textwrap.dedent(f"""
        policies:
          - name: chat
            targets: {{namespaces: [llm], selector: app=chat}}
            schedule: {{timezone: UTC, windows: [{windows}]}}
            wake: {{query: '{QUEUE}', target_per_replica: 8}}
            max_replicas: 5
        """) + extra


def test_a_keep_up_window_with_a_queue_waiting_wakes_once_for_the_reason_plan_gives(fake, prometheus, log, scaler,
                                                                                  tmp_path):
    namespace(fake, "llm")
    fake.create(DEPLOYMENTS, deployment("chat", replicas=0, gpus=1, annotations=PAUSED), namespace="llm")
    prometheus.answer("gateway_pending_requests", {("llm", "chat"): 40})
    file = tmp_path / "policies.yaml"
    file.write_text(_policy('{name: day-0, mode: up, start: "0 0 * * *", end: "0 12 * * *"}, '
                            '{name: day-1, mode: up, start: "0 12 * * *", end: "0 0 * * *"}'))
    [planned] = json.loads(scaler("plan", "--policies", file, "--prometheus-url", prometheus.url,
                                  "-o", "json").out)["evaluations"]
    assert (planned["reasonCode"], planned["desired"]) == ("queue-wake", 5)
    with Running.start(settings(fake, prometheus.url, tmp_path, policies=file, wake_check_interval_seconds=600,
                                evaluation_interval_seconds=600)) as daemon:
        wait_until(lambda: daemon.reconciles() >= 1)
        counted = {code: daemon.metric("scaler_decisions_total", action="resume", reason=code)
                   for code in ("queue-wake", "keep-up-window")}
    writes = log.lines("decision", where=lambda line: line.get("result") is not None)
    assert [(w["reason_code"], w["reason"], w["replicas_after"]) for w in writes] == \
        [(planned["reasonCode"], planned["reason"], planned["desired"])]
    assert fake.get(DEPLOYMENTS, "llm", "chat")["spec"]["replicas"] == 5
    wait_until(lambda: fake.events("llm", "chat", "Resumed"))
    [resumed] = fake.events("llm", "chat", "Resumed")
    assert planned["reason"] in resumed["message"]
    assert fake.events("llm", "chat", "ScaledUp") == []
    assert counted == {"queue-wake": 1.0, "keep-up-window": None}


@pytest.mark.parametrize("hung", [False, True], ids=["answering", "prometheus-hung"])
def test_a_keep_up_edge_of_a_policy_with_a_wake_signal_resumes_at_the_edge(fake, tmp_path, hung):
    """With no queue waiting, the window alone decides: the edge job asks the
    wake signal during its lead (the wake check is 5 minutes away) and resumes
    to the recorded count as the edge passes; with Prometheus hung the signal
    is unknown by then, and the window's resume is no later."""
    release = threading.Event()
    server = FakePrometheus(instant=lambda query: (release.wait(10) and []) if hung else [])
    server.serve()
    namespace(fake, "llm")
    fake.create(DEPLOYMENTS, deployment("chat", replicas=0, annotations={**PAUSED, LAST_REPLICAS: "3"}),
                namespace="llm")
    now = datetime.now(UTC)
    opens = (now + timedelta(seconds=4, minutes=1)).replace(second=0, microsecond=0)
    lead = int((opens - now).total_seconds() - 3)
    closes = opens + timedelta(minutes=30)
    (tmp_path / "policies.yaml").write_text(_policy(
        f'{{name: day, mode: up, start: "{opens:%M %H} * * *", end: "{closes:%M %H} * * *"}}',
        f"    prewarm: {lead}s\n"))
    edge = opens - timedelta(seconds=lead)
    try:
        with Running.start(settings(fake, server.url, tmp_path, evaluation_interval_seconds=300,
                                    wake_check_interval_seconds=300, prometheus_timeout_seconds=1)) as daemon:
            assert datetime.now(UTC) < edge, "started after the edge; the test proves nothing"
            wait_until(lambda: fake.get(DEPLOYMENTS, "llm", "chat")["spec"]["replicas"] == 3, timeout_seconds=10)
            late = (datetime.now(UTC) - edge).total_seconds()
            assert daemon.reconciles() == 1  # the one at the start, long before the edge
            wait_until(lambda: fake.events("llm", "chat", "Resumed"))
            [resumed] = fake.events("llm", "chat", "Resumed")
            assert ": pre-warm: keep-up window 'day'" in resumed["message"]
    finally:
        release.set()
        server.stop()
    assert late < 1.0, f"resumed {late:.2f}s after the edge"


def test_a_reconcile_counts_one_decision_per_workload(fake, prometheus, tmp_path):
    """The first pass pauses (the window alone); the second, with the signals,
    sees it paused: the pause is the reconcile's decision, counted once."""
    namespace(fake, "llm")
    fake.create(DEPLOYMENTS, deployment("chat", replicas=2, labels={"tier": "gpu"}), namespace="llm")
    (tmp_path / "policies.yaml").write_text(all_day())
    with Running.start(settings(fake, prometheus.url, tmp_path, evaluation_interval_seconds=600,
                                wake_check_interval_seconds=600)) as daemon:
        wait_until(lambda: daemon.reconciles() >= 1)
        counted = {action: daemon.metric("scaler_decisions_total", action=action, reason="keep-down-window")
                   for action in ("pause", "hold")}
    assert fake.get(DEPLOYMENTS, "llm", "chat")["spec"]["replicas"] == 0
    assert counted == {"pause": 1.0, "hold": None}
