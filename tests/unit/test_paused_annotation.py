"""`scaler.io/paused: "true"` set by hand on a running workload a policy
manages pauses it, as KServe's stop annotation stops a service: the count
recorded, a manual pause that only a manual resume wakes. The daemon's
passes in process (tests/unit/running.py)."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta

from scaler.decide.annotations import LAST_REPLICAS, MANUAL_PAUSE, PAUSED_BY
from tests.fakes.bodies import deployment, namespace
from tests.unit.running import Passes, policies

DEPLOYMENTS = "deployments.apps"
OFFICE = textwrap.dedent("""
    policies:
      - name: office
        targets: {namespaces: [llm], selector: app=chat}
        schedule:
          timezone: UTC
          windows: [{name: day, mode: up, start: "0 0 * * *", end: "0 23 * * *"}]
    """)
START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def test_the_paused_annotation_set_by_hand_pauses_and_nothing_but_a_person_wakes_it(fake, prometheus):
    namespace(fake, "llm")
    fake.create(DEPLOYMENTS, deployment("chat", replicas=3), namespace="llm")
    daemon = Passes(fake, prometheus.url, policies(OFFICE), now=START)
    try:
        daemon.seen("chat")
        daemon.step(START)
        assert fake.get(DEPLOYMENTS, "llm", "chat")["spec"]["replicas"] == 3
        fake.patch(DEPLOYMENTS, "llm", "chat", {"metadata": {"annotations": {MANUAL_PAUSE: "true"}}})
        for minutes in (1, 2, 60):  # inside the keep-up window all along
            daemon.seen("chat")
            daemon.step(START + timedelta(minutes=minutes))
        obj = fake.get(DEPLOYMENTS, "llm", "chat")
        assert daemon.sink.flush(timeout_seconds=5) == 0  # the Events, posted in the background
    finally:
        daemon.stop()
    annotations = obj["metadata"]["annotations"]
    assert (obj["spec"]["replicas"], annotations[LAST_REPLICAS], annotations[PAUSED_BY]) == (0, "3", "manual")
    [event] = fake.events("llm", "chat", "ScaledToZero")
    assert "paused by hand (scaler.io/paused=true set on it): pausing 3 replicas" in event["message"]
    assert fake.events("llm", "chat", "Resumed") == []


def test_a_workload_paused_at_zero_and_scaled_up_by_hand_is_left_as_the_person_set_it(fake, prometheus, scaler):
    """Parked at 0, made a manual pause by `scaler pause` (nothing to record), then scaled to 3 by
    hand: a person's resize, held, not paused again as if the annotation had just been set."""
    namespace(fake, "llm")
    fake.create(DEPLOYMENTS, deployment("chat", replicas=0), namespace="llm")
    assert scaler("pause", "chat", "-n", "llm").code == 0
    fake.patch(DEPLOYMENTS, "llm", "chat", {"spec": {"replicas": 3}})
    daemon = Passes(fake, prometheus.url, policies(OFFICE), now=START)
    try:
        daemon.seen("chat")
        [decision] = [e.decision for e in daemon.step(START) if e.workload.name == "chat"]
    finally:
        daemon.stop()
    assert fake.get(DEPLOYMENTS, "llm", "chat")["spec"]["replicas"] == 3
    assert "but someone set replicas to 3 since (paused at 0): leaving 3" in decision.reason
