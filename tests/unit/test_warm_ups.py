"""Warm-ups measured from the pods: what the tracker records when the pods
and the object's status disagree (an evicted pod left behind). What a user sees: the start
records, the warm-up history `prewarm: auto` reads, the `Ready` Event."""

from __future__ import annotations

from datetime import timedelta

from scaler.decide.annotations import READY_AT, STARTED_AT, WARM_UPS
from tests.unit.test_reconciling import IDLE, T0, World, _status, _wait_cached

SELECTOR = {"matchLabels": {"app": "chat"}}


def _pod(fake, name: str, *, ready: bool, since: str | None = None, phase: str = "Running",
         deleting: str | None = None) -> None:
    condition = {"type": "Ready", "status": "True" if ready else "False", **({"lastTransitionTime": since} if since
                                                                             else {})}
    meta = {"name": name, "labels": {"app": "chat"}, **({"deletionTimestamp": deleting} if deleting else {})}
    fake.create("pods", {"metadata": meta, "status": {"phase": phase, "conditions": [condition]}}, namespace="llm")


def test_an_evicted_pod_left_behind_does_not_move_the_warm_up_to_when_scaler_looked(fake, prometheus):
    """A failover: the new leader sees all Ready 16 s after it happened; an
    earlier pod of the workload, evicted (phase Failed, never Ready again),
    is still listed, as Kubernetes keeps evicted pods. The warm-up is the
    running pod's: 40 s, not 56 s."""
    fake.auto_ready = False
    w = World(fake, prometheus)
    try:
        w.deployment(replicas=1, annotations={STARTED_AT: "2026-12-07T12:00:00Z"}, selector=SELECTOR)
        _pod(fake, "chat-1", ready=True, since="2026-12-07T12:00:40Z")
        _pod(fake, "chat-evicted", ready=False, phase="Failed")
        _status(w, "chat", ready=1)
        _wait_cached(w, 1)
        w.tracker.track_starts(IDLE, now=T0 + timedelta(seconds=56), term=1)
        annotations = w.get()["metadata"]["annotations"]
        assert (annotations[READY_AT], annotations[WARM_UPS]) == ("2026-12-07T12:00:40Z", "40")
    finally:
        w.stop()
