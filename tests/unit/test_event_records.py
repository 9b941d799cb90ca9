"""Every action keeps its Event across a kill -9, and an Event's message reads
whole: what `scaler.io/last-action` and the Event posted from it say
(cluster/actions.py, cluster/eventing.py), against the fake API server."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from scaler.cluster.eventing import EventSink
from scaler.cluster.kinds import DEPLOYMENT
from scaler.cluster.kube import Fenced
from scaler.cluster.pausing import Pauser, Retry
from scaler.cluster.workloads import Workload

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
FAST = Retry(attempts=8, base_seconds=0.001, max_seconds=0.01)
DEPLOYMENTS = "deployments.apps"


def _deployment(fake, name: str = "chat", replicas: int = 2) -> Workload:
    fake.create("namespaces", {"metadata": {"name": "llm"}})
    return Workload(DEPLOYMENT, fake.create(DEPLOYMENTS, {"metadata": {"name": name}, "spec": {"replicas": replicas}},
                                            namespace="llm"))


def _read(fake, name: str = "chat") -> Workload:
    return Workload(DEPLOYMENT, fake.get(DEPLOYMENTS, "llm", name))


def test_an_event_held_behind_a_batch_is_not_lost_when_a_later_write_replaces_its_record(fake):
    """A batch is writing (Events wait for it), a pause lands and its Event is
    queued; a wake check resumes the same workload a moment later, replacing
    the record the pause's Event was owed by; then kill -9. The next daemon
    finds only the resume's record: the pause must already have its Event."""
    workload = _deployment(fake)
    writing = threading.Event()  # never set: some other write is always in flight
    sink = EventSink(fake.client(), quiet=writing)
    pauser = Pauser(fake.client(), retry=FAST, clock=lambda: NOW, events=sink)
    pauser.pause(workload, by="policy/p", reason="idle")
    pauser.resume(_read(fake), by="policy/p", reason="queue 3 > 0", replicas=2)

    def killed() -> None:
        raise Fenced("killed")
    sink.fence = killed  # kill -9: nothing queued goes out any more
    sink.flush(timeout_seconds=2, retrying=False)
    successor = Pauser(fake.client(), retry=FAST, clock=lambda: NOW)
    successor.post_owed([_read(fake)], namespaces=["llm"], now=NOW, ttl_seconds=3600, note="posted by the next daemon")
    assert sorted(event["reason"] for event in fake.events("llm", "chat")) == ["Resumed", "ScaledToZero"]
