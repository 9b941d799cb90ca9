"""Warm-ups measured from the pods: what the tracker records when the pods
and the object's status disagree (pods being deleted that a StatefulSet
still counts Ready, an evicted pod left behind). What a user sees: the start
records, the warm-up history `prewarm: auto` reads, the `Ready` Event."""

from __future__ import annotations

from datetime import timedelta

from scaler.cluster.kinds import STATEFULSET
from scaler.decide.annotations import READY_AT, STARTED_AT, WARM_UPS
from scaler.decide.decisions import Action
from tests.helpers import eventually
from tests.unit.test_reconciling import IDLE, T0, World, _status, _wait_cached, policies

SELECTOR = {"matchLabels": {"app": "chat"}}
#: Idle for a minute, a short grace and scale-down delay, max_startup left at its 30m.
LOADING = policies("""
policies:
  - name: idle
    targets: {namespaces: [llm]}
    idle: {query: 'sum by (namespace, workload) (requests_running)', threshold: 0.5, duration: 1m}
    startup_grace: 10s
    scale_down_delay: 30s
""")


def _pod(fake, name: str, *, ready: bool, since: str | None = None, phase: str = "Running",
         deleting: str | None = None) -> None:
    condition = {"type": "Ready", "status": "True" if ready else "False", **({"lastTransitionTime": since} if since
                                                                             else {})}
    meta = {"name": name, "labels": {"app": "chat"}, **({"deletionTimestamp": deleting} if deleting else {})}
    fake.create("pods", {"metadata": meta, "status": {"phase": phase, "conditions": [condition]}}, namespace="llm")


def _statefulset(w, *, ready: int, replicas: int = 2) -> None:
    w.fake.set_status("statefulsets.apps", "llm", "chat", {"replicas": replicas, "readyReplicas": ready})

    def cached():
        [workload] = w.view.workloads([STATEFULSET])
        return workload.ready_replicas == ready or None
    eventually(cached, timeout_seconds=5, interval_seconds=0.01)


def test_a_statefulset_resumed_while_its_paused_pods_drain_is_not_ready_until_its_new_pods_are(fake, prometheus):
    """Resumed 2 s after its pause: its two old pods are still terminating,
    and still Ready, so the StatefulSet's status counts 2 of 2 Ready while
    the new pods load. That is no Ready: the start goes on (no `Ready 3s`
    Event, no 3 s warm-up for `prewarm: auto`, no idle pause once a Ready
    so recorded was past its grace) until the new pods are Ready, the
    warm-up measured to them."""
    fake.auto_ready = False
    w = World(fake, prometheus)
    try:
        fake.create("statefulsets.apps", {"metadata": {"name": "chat", "labels": {"app": "chat"}, "annotations": {
            STARTED_AT: "2026-12-07T12:00:00Z", WARM_UPS: "40"}}, "spec": {"replicas": 2, "selector": SELECTOR}},
            namespace="llm")
        for i in range(2):
            _pod(fake, f"chat-{i}-old", ready=True, since="2026-12-07T11:00:00Z", deleting="2026-12-07T11:59:58Z")
            _pod(fake, f"chat-{i}", ready=False)
        _statefulset(w, ready=2)
        prometheus.answer("requests_running", {("llm", "chat"): 0})  # idle throughout
        for seconds in (3, 60, 130):
            w.tracker.track_starts(LOADING, now=T0 + timedelta(seconds=seconds), term=1)
        annotations = w.fake.get("statefulsets.apps", "llm", "chat")["metadata"]["annotations"]
        assert READY_AT not in annotations and annotations[WARM_UPS] == "40"
        # Past the grace and the idle minute of a Ready at 3 s: still no pause while the new pods load.
        [evaluation] = w.evaluator.evaluate(LOADING, now=T0 + timedelta(seconds=130))
        assert evaluation.decision.action is Action.HOLD, evaluation.decision.reason
        for i in range(2):
            fake.delete("pods", "llm", f"chat-{i}-old")
            fake.delete("pods", "llm", f"chat-{i}")
            _pod(fake, f"chat-{i}", ready=True, since="2026-12-07T12:02:15Z")
        w.tracker.track_starts(LOADING, now=T0 + timedelta(seconds=140), term=1)
        annotations = w.fake.get("statefulsets.apps", "llm", "chat")["metadata"]["annotations"]
        assert (annotations[READY_AT], annotations[WARM_UPS]) == ("2026-12-07T12:02:15Z", "40,135")
        assert w.sink.flush(timeout_seconds=5) == 0
        assert [e["message"].split(":")[0] for e in fake.events("llm", "chat", reason="Ready")] == [
            "Ready 135s after its start"]
    finally:
        w.stop()


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
