"""The one place writes are applied (cluster/pausing.py), against the fake API
server: the guarded patch and its retries, the fence before every attempt,
and the Event named after the action it records."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from scaler.cluster.actions import ActionRecord
from scaler.cluster.eventing import EventSink
from scaler.cluster.kinds import DEPLOYMENT
from scaler.cluster.kube import Fenced, Invalid, KubeError, NotFound
from scaler.cluster.pausing import Pauser, Retry
from scaler.cluster.workloads import Workload
from scaler.cluster.writes import Outcome
from scaler.decide.annotations import (
    LAST_ACTION,
    LAST_REPLICAS,
    MANUAL_PAUSE,
    OVERRIDE_UNTIL,
    PAUSED_AT,
    PAUSED_BY,
)
from scaler.decide.decisions import MANUAL
from tests.helpers import eventually

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
FAST = Retry(attempts=8, base_seconds=0.001, max_seconds=0.01)


def deployment(fake, name="chat", replicas=2, annotations=None):
    if not fake.items("namespaces", None) or not any(n["metadata"]["name"] == "llm"
                                                      for n in fake.items("namespaces")):
        fake.create("namespaces", {"metadata": {"name": "llm"}})
    meta = {"name": name, **({"annotations": annotations} if annotations is not None else {})}
    return Workload(DEPLOYMENT, fake.create("deployments.apps", {"metadata": meta, "spec": {"replicas": replicas}},
                                            namespace="llm"))


def pauser(fake, **kwargs):
    return Pauser(fake.client(), retry=FAST, clock=lambda: NOW, **kwargs)


def test_a_pause_is_one_patch_with_the_count_the_zero_and_the_action(fake):
    workload = deployment(fake, annotations={"team": "a"})
    result = pauser(fake).pause(workload, by="policy/p", reason="idle")
    obj = fake.get("deployments.apps", "llm", "chat")
    assert (result.outcome, obj["spec"]["replicas"]) == (Outcome.CHANGED, 0)
    annotations = obj["metadata"]["annotations"]
    assert (annotations[LAST_REPLICAS], annotations[PAUSED_BY], annotations["team"]) == ("2", "policy/p", "a")
    assert fake.count("PATCH") == 1
    record = ActionRecord.read(annotations)
    assert record is not None and record.reason == "ScaledToZero"
    [event] = fake.events("llm", "chat")
    assert (event["metadata"]["name"], event["reason"]) == (f"chat.{record.id}", "ScaledToZero")
    assert "from 2 replicas" in event["message"]


def test_an_unrelated_writer_costs_no_retry(fake):
    workload = deployment(fake, annotations={"team": "a"})
    fake.before("PATCH", "/deployments/chat$",
                lambda request: fake.patch("deployments.apps", "llm", "chat", {"metadata": {"labels": {"x": "y"}}}))
    pauser(fake).pause(workload, by="policy/p", reason="idle")
    assert fake.count("PATCH") == 1 and fake.get("deployments.apps", "llm", "chat")["spec"]["replicas"] == 0


def test_a_racing_resize_is_read_again_and_its_count_recorded(fake):
    workload = deployment(fake, annotations={})
    raced = threading.Event()

    def resize(request):
        if not raced.is_set():
            raced.set()
            fake.patch("deployments.apps", "llm", "chat", {"spec": {"replicas": 5}})
    fake.before("PATCH", "/deployments/chat$", resize)
    result = pauser(fake).pause(workload, by="policy/p", reason="idle")
    obj = fake.get("deployments.apps", "llm", "chat")
    # The first guarded patch was refused (422), the object read again, the pause worked out again.
    assert (obj["spec"]["replicas"], obj["metadata"]["annotations"][LAST_REPLICAS]) == (0, "5")
    assert result.replicas_before == 5 and fake.count("PATCH") == 2 and fake.count("GET", "/deployments/chat") == 1


def test_a_value_the_server_refuses_is_not_retried_forever(fake):
    workload = deployment(fake)
    # A scale-up to a size the server refuses: re-read, same operations, refused again: an error.
    with pytest.raises(Invalid):
        pauser(fake).scale_up(workload, replicas=-3 + 10**12, by="policy/p", reason="q")
    assert fake.count("PATCH") <= 2


def test_a_vanished_object_is_not_found(fake):
    workload = deployment(fake)
    fake.delete("deployments.apps", "llm", "chat")
    with pytest.raises(NotFound):
        pauser(fake).pause(workload, by="policy/p", reason="idle")


def test_a_fence_that_says_no_sends_nothing(fake):
    workload = deployment(fake)

    def fence(current):
        raise Fenced("not the leader")
    with pytest.raises(Fenced):
        pauser(fake).pause(workload, by="policy/p", reason="idle", fence=fence)
    assert fake.count("PATCH") == 0 and fake.get("deployments.apps", "llm", "chat")["spec"]["replicas"] == 2


def test_the_fence_is_asked_again_before_a_retry(fake):
    """A leader that lost the Lease while its write was being retried sends no retry."""
    workload = deployment(fake, annotations={})
    fake.before("PATCH", "/deployments/chat$",
                lambda request: fake.patch("deployments.apps", "llm", "chat", {"spec": {"replicas": 3}}))
    asked = []

    def fence(current):
        asked.append(current.replicas)
        if len(asked) > 1:
            raise Fenced("lost the Lease")
    with pytest.raises(Fenced):
        pauser(fake).pause(workload, by="policy/p", reason="idle", fence=fence)
    assert asked == [2, 3]  # asked with the object as read each time
    assert fake.count("PATCH") == 1


def test_the_fence_is_asked_again_after_throttling(fake):
    workload = deployment(fake)
    fake.fail(method="PATCH", path="/deployments/chat$", status=429, retry_after=0, times=1)
    asked = []

    def fence(current):
        asked.append(1)
        if len(asked) > 1:
            raise Fenced("the window ended while the write waited")
    with pytest.raises(Fenced):
        pauser(fake).pause(workload, by="policy/p", reason="idle", fence=fence)
    assert len(asked) == 2 and fake.count("PATCH") == 1
    assert fake.get("deployments.apps", "llm", "chat")["spec"]["replicas"] == 2


def test_throttling_is_waited_out_as_asked(fake):
    workload = deployment(fake)
    fake.fail(method="PATCH", path="/deployments/chat$", status=429, retry_after=0, times=2)
    assert pauser(fake).pause(workload, by="policy/p", reason="idle").outcome is Outcome.CHANGED
    assert fake.count("PATCH") == 3


@pytest.mark.parametrize("status", [500, 503])
def test_a_server_error_is_a_typed_failure_and_nothing_changes(fake, status):
    workload = deployment(fake)
    fake.fail(method="PATCH", status=status, times=None)
    with pytest.raises(KubeError) as caught:
        pauser(fake).pause(workload, by="policy/p", reason="idle")
    assert caught.value.status == status
    assert fake.get("deployments.apps", "llm", "chat")["spec"]["replicas"] == 2


def test_an_event_posted_twice_exists_once(fake):
    """The daemon that acted and the next one recovering its Event race: one Event."""
    workload = deployment(fake)
    pauser(fake).pause(workload, by="policy/p", reason="idle")
    [event] = fake.events("llm", "chat")
    sink = EventSink(fake.client())
    sink.post(event | {"metadata": {k: v for k, v in event["metadata"].items()
                                    if k in ("name", "namespace", "labels")}})
    assert sink.flush(timeout_seconds=5) == 0
    assert sink.counts["already"] == 1 and len(fake.events("llm", "chat")) == 1


@pytest.mark.parametrize("fault", [{"status": 429, "retry_after": 0, "times": 7},  # 6: one post's own retries
                                   {"status": 503, "times": 2}, {"reset": True, "times": 2}],
                         ids=["throttled-past-its-retries", "server-error", "connection-dropped"])
def test_an_event_refused_for_a_while_is_posted_later_once(fake, fault):
    """An API server throttling hard (429 past every Retry-After), failing or
    away when the Event goes out: the write has landed, so its Event is
    tried again a little later, not dropped (a storm at a throttled window
    end lost 12 of 1,000 this way)."""
    workload = deployment(fake)
    fake.fail(method="POST", path="/events", **fault)
    sink = EventSink(fake.client(), retry_seconds=0.05)
    pauser(fake, events=sink).pause(workload, by="policy/p", reason="idle")
    assert sink.flush(timeout_seconds=5) == 0
    [event] = fake.events("llm", "chat")
    assert event["reason"] == "ScaledToZero" and sink.counts["posted"] == 1 and sink.counts["failed"] == 0


def test_an_event_refused_for_good_is_dropped_with_a_warning(fake):
    workload = deployment(fake)
    fake.fail(method="POST", path="/events", status=403, times=None)
    sink = EventSink(fake.client(), retry_seconds=0.05)
    pauser(fake, events=sink).pause(workload, by="policy/p", reason="idle")
    assert sink.flush(timeout_seconds=5) == 0
    assert sink.counts["failed"] == 1 and fake.count("POST", "/events") == 1


def test_an_event_that_breaks_its_poster_does_not_stall_the_ones_behind_it(fake):
    """Events queue behind a few posters: one that fails in an unforeseen
    way is counted failed and the posters go on (a worker lost to it would
    leave every later Event queued for good)."""
    fake.create("namespaces", {"metadata": {"name": "llm"}})
    sink = EventSink(fake.client(), workers=1)
    sink.post({"reason": "ScaledToZero"})  # no metadata: a KeyError in the poster
    for i in range(3):
        sink.post(_event(i))
    assert sink.flush(timeout_seconds=5) == 0
    assert sink.counts["failed"] == 1 and len(fake.items("events", "llm")) == 3


def test_a_sink_that_no_longer_holds_the_lease_posts_nothing(fake):
    workload = deployment(fake)

    def fence():
        raise Fenced("standby")
    sink = EventSink(fake.client(), fence=fence)
    pauser(fake, events=sink).pause(workload, by="policy/p", reason="idle")
    assert sink.flush(timeout_seconds=5) == 0 and sink.counts["fenced"] == 1
    assert fake.events("llm", "chat") == []
    # ... and the record is on the object for the next leader.
    assert ActionRecord.read(fake.get("deployments.apps", "llm", "chat")["metadata"]["annotations"])


def test_events_are_posted_as_each_write_lands(fake):
    """Not held until a batch ends: a kill mid-batch loses none already written."""
    workloads = [deployment(fake, name=f"w{i}") for i in range(5)]
    sink = EventSink(fake.client())
    p = pauser(fake, events=sink)
    gate = threading.Event()
    fake.before("PATCH", "/deployments/w4$", lambda request: gate.wait(5))
    done = threading.Thread(target=lambda: [p.pause(w, by="policy/p", reason="idle") for w in workloads])
    done.start()
    try:
        # While the last write is held, the Events of the four before it are there.
        eventually(lambda: len([e for e in fake.items("events", "llm")]) == 4 or None, timeout_seconds=5)
    finally:
        gate.set()
        done.join(5)
    assert sink.flush(timeout_seconds=5) == 0 and len(fake.items("events", "llm")) == 5


def test_a_retried_write_carries_one_action_id(fake):
    workload = deployment(fake, annotations={})
    raced = threading.Event()

    def resize(request):
        if not raced.is_set():
            raced.set()
            fake.patch("deployments.apps", "llm", "chat", {"spec": {"replicas": 4}})
    fake.before("PATCH", "/deployments/chat$", resize)
    pauser(fake).pause(workload, by="policy/p", reason="idle")
    sent = [r.body for r in fake.requests if r.method == "PATCH"]
    ids = {op["value"] for body in sent for op in body if op["path"].endswith("last-action") and op["op"] == "add"}
    assert len(sent) == 2 and len({ActionRecord.read({LAST_ACTION: v}).id for v in ids}) == 1


def _posts_at_once(fake, *, seconds: float = 0.05, seen=lambda: None) -> list[int]:
    """[the most Event POSTs the fake API server had at once]; each takes
    `seconds` there, and `seen()` is called as it arrives."""
    peak, now, lock = [0], [0], threading.Lock()

    def hold(request):
        seen()
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        threading.Event().wait(seconds)
        with lock:
            now[0] -= 1
    fake.before("POST", "/events$", hold)
    return peak


@pytest.mark.parametrize(("writing", "most"), [(1, 1), (0, 4)])
def test_events_yield_to_writes_in_flight(fake, writing, most):
    """While a batch writes, one Event at a time: the writes keep the API server."""
    fake.create("namespaces", {"metadata": {"name": "llm"}})
    peak = _posts_at_once(fake, seconds=0.2)
    quiet = threading.Event()
    if not writing:
        quiet.set()
    sink = EventSink(fake.client(), workers=4, quiet=quiet)
    sink.hold_seconds = 0  # no waiting for the writes to end: what is measured is the lane
    for i in range(8):
        sink.post({"metadata": {"name": f"e{i}", "namespace": "llm"}, "involvedObject": {
            "kind": "Deployment", "name": "chat", "namespace": "llm"}, "reason": "ScaledToZero"})
    assert sink.flush(timeout_seconds=8) == 0
    assert peak[0] == most and len(fake.items("events", "llm")) == 8


class _Quiet(threading.Event):
    """No write in flight when set; counts the Events waiting on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    def wait(self, timeout=None):
        self.waits += 1
        return super().wait(timeout)


def _event(i: int) -> dict:
    return {"metadata": {"name": f"e{i}", "namespace": "llm"}, "involvedObject": {
        "kind": "Deployment", "name": "chat", "namespace": "llm"}, "reason": "ScaledToZero"}


def test_events_wait_for_the_batchs_writes_to_end_then_go_at_full_pace(fake):
    """Off the critical path: while the writes last, no Event reaches the
    API server; once they end, all of them, four at a time."""
    fake.create("namespaces", {"metadata": {"name": "llm"}})
    quiet, sent_while_writing = _Quiet(), []
    peak = _posts_at_once(fake, seen=lambda: sent_while_writing.append(not quiet.is_set()))
    sink = EventSink(fake.client(), workers=4, quiet=quiet)
    sink.hold_seconds = 60
    for i in range(8):
        sink.post(_event(i))
    eventually(lambda: quiet.waits >= 4)  # every worker holds an Event back
    assert sent_while_writing == []
    quiet.set()  # the batch's last write is done
    assert sink.flush(timeout_seconds=8) == 0
    assert len(fake.items("events", "llm")) == 8 and not any(sent_while_writing) and peak[0] > 1


def test_an_event_held_past_hold_seconds_goes_out_one_at_a_time_and_a_flush_waits_for_nothing(fake):
    """A batch longer than the hold does not starve its Events; shutdown does not wait for the hold."""
    fake.create("namespaces", {"metadata": {"name": "llm"}})
    quiet, peak = _Quiet(), _posts_at_once(fake)
    sink = EventSink(fake.client(), workers=4, quiet=quiet)  # writes never end: it is never set
    sink.hold_seconds = 0.3
    for i in range(4):
        sink.post(_event(i))
    eventually(lambda: len(fake.items("events", "llm")) == 4, timeout_seconds=8)
    assert peak[0] == 1
    sink.hold_seconds = 3600
    for i in range(4, 8):
        sink.post(_event(i))
    assert sink.flush(timeout_seconds=8) == 0 and len(fake.items("events", "llm")) == 8


@pytest.mark.parametrize("reason", ["queue 3 > activation threshold 0", "café & croissants", "a < b"])
def test_free_text_in_the_record_never_blocks_the_next_write(fake, reason):
    """The API server cannot `test` a string with <, > or & or non-ASCII (it
    compares encodings); a record holding one must not make every later
    guarded write fail (found on the cluster: the Ready after a queue wake)."""
    workload = deployment(fake)
    p = pauser(fake)
    p.pause(workload, by="policy/p", reason=reason)
    paused = Workload(DEPLOYMENT, fake.get("deployments.apps", "llm", "chat"))
    assert p.resume(paused, by="policy/p", reason=reason, replicas=2).outcome is Outcome.CHANGED
    assert fake.get("deployments.apps", "llm", "chat")["spec"]["replicas"] == 2
    assert fake.count("PATCH") == 2


def _once_before_the_patch(fake, change) -> None:
    """`change` made by another writer once, between scaler's read and its PATCH."""
    done = threading.Event()

    def hook(request):
        if not done.is_set():
            done.set()
            change()
    fake.before("PATCH", "/deployments/chat$", hook)


POLICY_PAUSE = {LAST_REPLICAS: "4", PAUSED_AT: "2026-12-05T01:00:00Z", PAUSED_BY: "policy/nights"}


def test_a_hands_off_write_does_not_drop_the_record_of_a_workload_set_back_to_zero_since(fake):
    """The daemon read it running (a person's `kubectl scale` after a policy's pause) and drops the record
    for a human override; the person scaled it back to 0 before the write went out. The write is worked
    out again: at 0 there is nothing to hand off, and the recorded 4 stays for the policy's resume."""
    workload = deployment(fake, replicas=0, annotations=POLICY_PAUSE)
    fake.patch("deployments.apps", "llm", "chat", {"spec": {"replicas": 2}})
    workload = pauser(fake).read(workload)
    _once_before_the_patch(fake, lambda: fake.patch("deployments.apps", "llm", "chat", {"spec": {"replicas": 0}}))
    pauser(fake).hands_off(workload, by="scaler", reason="someone set replicas to 2", until=NOW)
    obj = fake.get("deployments.apps", "llm", "chat")
    assert (obj["spec"]["replicas"], obj["metadata"]["annotations"].get(LAST_REPLICAS)) == (0, "4")
    assert OVERRIDE_UNTIL not in obj["metadata"]["annotations"]


def test_a_manual_resume_of_one_set_back_to_zero_since_it_was_read_restores_the_record(fake):
    """`scaler resume` read it running (resized by hand after its pause): it would clear the record and
    leave it. Scaled back to 0 before the write: the resume is worked out again, to the recorded 4."""
    workload = deployment(fake, replicas=0, annotations={**POLICY_PAUSE, PAUSED_BY: "manual", MANUAL_PAUSE: "true"})
    fake.patch("deployments.apps", "llm", "chat", {"spec": {"replicas": 2}})
    workload = pauser(fake).read(workload)
    _once_before_the_patch(fake, lambda: fake.patch("deployments.apps", "llm", "chat", {"spec": {"replicas": 0}}))
    result = pauser(fake).manual_resume(workload)
    obj = fake.get("deployments.apps", "llm", "chat")
    assert (result.outcome, obj["spec"]["replicas"]) == (Outcome.CHANGED, 4)
    assert "recorded" in result.reason and LAST_REPLICAS not in obj["metadata"]["annotations"]


def test_a_manual_pause_of_one_at_zero_scaled_up_since_it_was_read_records_the_new_size(fake):
    """`scaler pause` read it at 0 (a policy's pause) and only marks it durable; someone scaled it to 3
    before the write. Marked anyway, it would run at 3 while `status` and the row said paused. Worked out
    again: paused, 3 recorded."""
    workload = deployment(fake, replicas=0, annotations=POLICY_PAUSE)
    _once_before_the_patch(fake, lambda: fake.patch("deployments.apps", "llm", "chat", {"spec": {"replicas": 3}}))
    result = pauser(fake).pause(workload, by=MANUAL, reason="by hand")
    obj = fake.get("deployments.apps", "llm", "chat")
    annotations = obj["metadata"]["annotations"]
    assert (result.outcome, obj["spec"]["replicas"]) == (Outcome.CHANGED, 0)
    assert (annotations[LAST_REPLICAS], annotations[MANUAL_PAUSE]) == ("3", "true")
