"""Hands off what someone else set, in simulated time (tests/unit/running.py's
Passes: the daemon's reconciles at instants the test gives, against the fake
API server). A GitOps controller that reverts every pause gets one report
and a back-off that doubles with the real defaults (5 min, 10 min, 20 min
... over three simulated hours), kept on the object across a restart; a
person who resizes a paused workload wins until the policy's next window
edge. Moved from the cluster tier, which ran the back-off 60-fold faster for
170 s of real time; it keeps one revert by a real server-side apply
(tests/cluster/test_gitops.py)."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from scaler.decide.annotations import BACKOFF_UNTIL, LAST_REPLICAS, OVERRIDE_UNTIL, REVERTED_BY, REVERTS
from scaler.decide.times import parse_time, rfc3339
from tests.fakes.bodies import deployment, namespace
from tests.fakes.prometheus import FakePrometheus
from tests.unit.running import Passes, policies

DEPLOYMENTS = "deployments.apps"
IDLE = textwrap.dedent("""
    policies:
      - name: chat-idle
        targets: {namespaces: [llm], selector: app=chat}
        idle: {query: 'vllm:num_requests_running{namespace="llm"}', threshold: 0.5, duration: 6s}
        startup_grace: 0s
        scale_down_delay: 0s
    """)
#: The default evaluation interval; Argo CD's self-heal puts spec.replicas back within seconds.
RECONCILE_SECONDS, SELF_HEAL_SECONDS = 30, 10
HOURS = 3


@pytest.fixture
def prometheus():
    server = FakePrometheus().serve()
    server.answer("vllm:num_requests_running", {("llm", "chat"): 0})  # idle throughout
    yield server
    server.stop()


def _chat(fake) -> dict:
    return fake.get(DEPLOYMENTS, "llm", "chat")


def _self_heal(fake) -> bool:
    """Argo CD with self-heal: server-side apply of spec.replicas from Git, if it differs."""
    if _chat(fake)["spec"]["replicas"] == 2:
        return False
    fake.apply(DEPLOYMENTS, "llm", "chat", {"apiVersion": "apps/v1", "kind": "Deployment",
                                            "metadata": {"name": "chat"}, "spec": {"replicas": 2}},
               manager="argocd-controller")
    return True


def test_a_gitops_controller_reverting_pauses_gets_one_report_and_a_growing_back_off(fake, prometheus, log,
                                                                                       scaler):
    namespace(fake, "llm")
    fake.create(DEPLOYMENTS, deployment("chat", replicas=2), namespace="llm")
    start = datetime.now(UTC).replace(microsecond=0)  # `scaler status` below reads the back-off against now
    daemon = Passes(fake, prometheus.url, policies(IDLE), now=start)
    pauses, reverts = [], []
    try:
        for t in range(0, HOURS * 3600, SELF_HEAL_SECONDS):
            now = start + timedelta(seconds=t)
            _self_heal(fake)
            if t % RECONCILE_SECONDS == 0:
                daemon.seen("chat")
                before = int((_chat(fake)["metadata"].get("annotations") or {}).get(REVERTS, "0"))
                daemon.step(now)
                after = _chat(fake)
                if after["spec"]["replicas"] == 0:
                    pauses.append(t)
                if int(after["metadata"]["annotations"].get(REVERTS, "0")) > before:
                    reverts.append(t)
    finally:
        daemon.stop()
    gaps = [b - a for a, b in pairwise(pauses)]
    per_hour = [sum(1 for t in pauses + reverts if 3600 * h <= t < 3600 * (h + 1)) for h in range(HOURS)]
    # Bounded: 5 + 10 + 20 + 40 + 80 min of back-off fit in three hours, so at most 6 pauses (and their
    # reverts); without the back-off (a pause every reconcile after a revert) it would be hundreds.
    assert 3 <= len(pauses) <= 7 and len(reverts) >= len(pauses) - 1, (pauses, reverts)
    # Growing: each gap between pauses is longer than the one before (the back-off doubles).
    assert all(later > earlier for earlier, later in pairwise(gaps)), gaps
    assert per_hour[0] > per_hour[-1], per_hour

    # Reported once: one Event, one warning line; the rest are quiet info lines; the metric counts all.
    assert daemon.sink.flush(timeout_seconds=5) == 0
    reported = fake.events("llm", "chat", "PauseReverted")
    assert len(reported) == 1 and reported[0]["type"] == "Warning"
    assert "pause reverted by argocd-controller" in reported[0]["message"]
    assert "add ignoreDifferences for /spec/replicas" in reported[0]["message"]
    assert [line["level"] for line in log.lines("pause reverted")].count("warning") == 1
    assert len(log.lines("pause reverted")) == len(reverts)
    assert daemon.metric("scaler_pause_reverts_total", manager="argocd-controller") == len(reverts)

    # On the object (a restart keeps the back-off), and in status.
    annotations = _chat(fake)["metadata"]["annotations"]
    assert annotations[REVERTED_BY] == "argocd-controller" and int(annotations[REVERTS]) == len(reverts)
    until = parse_time(annotations[BACKOFF_UNTIL])
    status = scaler("status", "-n", "llm")
    assert status.code == 0, status.err
    assert (f"reverted by argocd-controller ({len(reverts)} times in a row); add ignoreDifferences for "
            "/spec/replicas") in status.out, status.out

    # A restart keeps the back-off: with Argo stopped, a new daemon pauses it (idle) only once
    # backoff-until has passed, not at once.
    end = start + timedelta(hours=HOURS)
    assert until > end, "the back-off ended before the restart; the test proves nothing"
    restarted = Passes(fake, prometheus.url, policies(IDLE), now=end)
    try:
        t = end
        while _chat(fake)["spec"]["replicas"] and t < until + timedelta(minutes=5):
            restarted.seen("chat")
            restarted.step(t)
            t += timedelta(seconds=RECONCILE_SECONDS)
    finally:
        restarted.stop()
    paused_at = t - timedelta(seconds=RECONCILE_SECONDS)
    assert _chat(fake)["spec"]["replicas"] == 0
    assert until <= paused_at < until + timedelta(seconds=RECONCILE_SECONDS), (paused_at, until)
    document = json.loads(scaler("status", "-n", "llm", "-o", "json").out)
    assert document["paused"][0]["notes"] == [f"this pause holds, after {len(reverts)} revert(s) by argocd-controller"]


NIGHTS = textwrap.dedent("""
    policies:
      - name: nights
        targets: {namespaces: [llm], selector: app=chat}
        schedule:
          timezone: UTC
          windows:
            - {name: morning, mode: down, start: "0 0 * * *", end: "0 12 * * *"}
            - {name: afternoon, mode: down, start: "0 12 * * *", end: "0 0 * * *"}
    """)


def test_a_person_resizing_a_paused_workload_wins_until_the_window_edge(fake, prometheus, log):
    namespace(fake, "llm")
    fake.create(DEPLOYMENTS, deployment("chat", replicas=5), namespace="llm")
    start = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    daemon = Passes(fake, prometheus.url, policies(NIGHTS), now=start)
    try:
        daemon.step(start)
        assert _chat(fake)["spec"]["replicas"] == 0
        fake.patch(DEPLOYMENTS, "llm", "chat", {"spec": {"replicas": 3}}, manager="kubectl")
        for minutes in (1, 2, 30, 119):  # the keep-down window goes on until 12:00
            daemon.seen("chat")
            daemon.step(start + timedelta(minutes=minutes))
            annotations = _chat(fake)["metadata"]["annotations"]
            assert _chat(fake)["spec"]["replicas"] == 3 and LAST_REPLICAS not in annotations
            assert annotations[OVERRIDE_UNTIL] == rfc3339(datetime(2026, 12, 7, 12, 0, tzinfo=UTC))
        assert daemon.sink.flush(timeout_seconds=5) == 0
        [skipped] = fake.events("llm", "chat", "ResumeSkipped")
        assert "someone set replicas to 3 while policy/nights had it paused (recorded 5)" in skipped["message"]
        assert log.lines("decision", lambda line: line.get("reason_code") == "human-override")
        # The edge: the next window is the policy's again, and it pauses the person's size.
        daemon.seen("chat")
        daemon.step(datetime(2026, 12, 7, 12, 0, 30, tzinfo=UTC))
        obj = _chat(fake)
        assert obj["spec"]["replicas"] == 0 and obj["metadata"]["annotations"][LAST_REPLICAS] == "3"
    finally:
        daemon.stop()
