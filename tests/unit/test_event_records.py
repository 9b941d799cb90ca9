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


#: A reason of whole words and numbers, longer than an Event's message may be.
LONG = " ".join(f"window-{i} opens at 12:{i % 60:02d} for 1234{i} s" for i in range(60))


def _whole_words(message: str, source: str) -> None:
    """`message` is `source` cut after a whole word, and says it was cut."""
    assert len(message) <= 1024 and message.endswith("…"), message[-40:]
    kept = message[:-1]
    assert source.startswith(kept) and source[len(kept)] in " ,;:", kept[-40:]


def test_a_reason_too_long_for_an_event_is_cut_after_a_whole_word(fake, scaler):
    """`scaler pause --reason` with 2,000 characters: the record and the Event keep
    1,024, ending on a whole word and "…", not in the middle of a number."""
    _deployment(fake)
    ran = scaler("pause", "chat", "-n", "llm", "--reason", LONG)
    assert ran.code == 0, ran.err
    [event] = fake.events("llm", "chat")
    _whole_words(event["message"], f"scaled to zero from 2 replicas by manual: {LONG}; 2 GPUs freed")


def test_an_owed_event_of_a_long_message_keeps_its_note_whole(fake):
    """Posted by the next daemon, the Event still says so, however long the action's message."""
    workload = _deployment(fake)

    def killed() -> None:
        raise Fenced("killed")
    sink = EventSink(fake.client(), fence=killed)
    Pauser(fake.client(), retry=FAST, clock=lambda: NOW, events=sink).pause(workload, by="policy/p", reason=LONG)
    sink.flush(timeout_seconds=2, retrying=False)
    note = "posted by the next daemon: the one that acted stopped before it could"
    successor = Pauser(fake.client(), retry=FAST, clock=lambda: NOW)
    assert successor.post_owed([_read(fake)], namespaces=["llm"], now=NOW, ttl_seconds=3600, note=note) == 1
    [event] = fake.events("llm", "chat")
    assert event["message"].endswith(f"… ({note})") and len(event["message"]) <= 1024
    _whole_words(event["message"][:-len(f" ({note})")], f"scaled to zero from 2 replicas by policy/p: {LONG}")
