"""Acting on evaluations (run/acting.py) and tracking starts (run/tracking.py) in process: the fake API server,
a fake Prometheus, scaler's own watch caches. What a user sees: replicas,
annotations, Events, and how many PATCHes went out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scaler.cluster.actions import ActionRecord
from scaler.cluster.eventing import EventSink
from scaler.cluster.informers import NotSynced
from scaler.cluster.kinds import DEPLOYMENT
from scaler.cluster.kube import Fenced
from scaler.cluster.pausing import Pauser, Retry
from scaler.cluster.views import WatchingView
from scaler.decide.annotations import LAST_REPLICAS, PAUSE_CAUSE, READY_AT, STARTED_AT, WARM_UPS
from scaler.decide.decisions import Action, Code
from scaler.decide.loading import check_texts
from scaler.run.acting import Actor
from scaler.run.evaluating import Evaluator
from scaler.run.tracking import Tracker
from scaler.signals.prometheus import Prometheus
from tests.helpers import eventually

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)  # a Monday
FAST = Retry(attempts=8, base_seconds=0.001, max_seconds=0.01)


def policies(text: str):
    found, problems = check_texts([("p.yaml", text)])
    assert not problems, problems
    return found


NIGHT = policies("""
policies:
  - name: nights
    targets: {namespaces: [llm]}
    schedule:
      timezone: UTC
      windows: [{name: night, mode: down, when: "Mon 11:00-12:30"}]
""")
IDLE = policies("""
policies:
  - name: idle
    targets: {namespaces: [llm]}
    idle: {query: 'sum by (namespace, workload) (requests_running)', threshold: 0.5, duration: 1m}
    max_startup: 60s
    scale_down_delay: 30s
""")


class World:
    def __init__(self, fake, prometheus, *, clock=None, term=lambda: 1):
        self.fake = fake
        self.now = T0  # the wall clock the fence reads when a write goes out (unless `clock` is given)
        clock = clock or (lambda: self.now)
        fake.create("namespaces", {"metadata": {"name": "llm"}})
        self.kube = fake.client()
        self.view = WatchingView(self.kube)
        self.sink = EventSink(self.kube)
        self.pauser = Pauser(self.kube, retry=FAST, clock=lambda: T0, events=self.sink)
        self.term = term
        self.evaluator = Evaluator(prometheus=Prometheus(prometheus.url, timeout_seconds=2), view=self.view,
                                   excluded_namespaces=())
        self.actor = Actor(evaluator=self.evaluator, pauser=self.pauser, dry_run=False,
                           may_act=lambda policy, term: term == self.term(), clock=clock)
        self.tracker = Tracker(evaluator=self.evaluator, actor=self.actor)

    def deployment(self, name="chat", replicas=2, annotations=None, selector=None):
        spec = {"replicas": replicas, **({"selector": selector} if selector else {})}
        meta = {"name": name, "labels": {"app": name}, **({"annotations": annotations} if annotations else {})}
        return self.fake.create("deployments.apps", {"metadata": meta, "spec": spec}, namespace="llm")

    def get(self, name="chat"):
        return self.fake.get("deployments.apps", "llm", name)

    def patches(self):
        return self.fake.count("PATCH", "/deployments/")

    def stop(self):
        self.view.stop(timeout_seconds=2)


@pytest.fixture
def world(fake, prometheus):
    worlds = []

    def make(**kwargs):
        worlds.append(World(fake, prometheus, **kwargs))
        return worlds[-1]
    yield make
    for w in worlds:
        w.stop()


def test_a_keep_down_window_pauses_and_records_the_count(world):
    w = world()
    w.deployment()
    evaluations = w.evaluator.evaluate(NIGHT, now=T0)
    [result] = w.actor.act(evaluations, now=T0, term=1)
    assert result.replicas_after == 0
    obj = w.get()
    assert (obj["spec"]["replicas"], obj["metadata"]["annotations"][LAST_REPLICAS]) == (0, "2")
    assert obj["metadata"]["annotations"][PAUSE_CAUSE] == str(Code.KEEP_DOWN_WINDOW)
    assert w.sink.flush(timeout_seconds=5) == 0 and [e["reason"] for e in w.fake.events("llm")] == ["ScaledToZero"]


def test_a_write_decided_in_an_earlier_term_is_dropped(world):
    term = [1]
    w = world(term=lambda: term[0])
    w.deployment()
    evaluations = w.evaluator.evaluate(NIGHT, now=T0)
    term[0] = 2  # lost the Lease and won it again meanwhile: another leader may have acted
    assert w.actor.act(evaluations, now=T0, term=1) == []
    assert w.patches() == 0 and w.get()["spec"]["replicas"] == 2


def test_a_window_that_ended_while_the_write_was_throttled_drops_it(world):
    """Decided in the window; the API server throttles; when the write may go
    out at last, the window is over: nothing is sent, no pause lands late."""
    late = T0 + timedelta(minutes=31)  # the window ended at 12:30
    times = iter([T0])
    w = world(clock=lambda: next(times, late))
    w.deployment()
    w.fake.fail(method="PATCH", path="/deployments/chat$", status=429, retry_after=0, times=1)
    evaluations = w.evaluator.evaluate(NIGHT, now=T0)
    [result] = w.actor.act(evaluations, now=T0, term=1)
    assert result.reason.startswith("not sent: no longer wanted")
    assert w.get()["spec"]["replicas"] == 2
    assert w.patches() == 1  # the throttled one; none after the window ended


def test_a_pass_that_read_before_another_wrote_sends_nothing_again(world):
    """A reconcile that began while an edge batch was writing decides from the
    cache as it was; it must not re-send what the batch already wrote."""
    w = world()
    for i in range(5):
        w.deployment(name=f"w{i}")
    stale = w.evaluator.evaluate(NIGHT, now=T0)
    edge = w.evaluator.evaluate(NIGHT, now=T0)
    assert len(w.actor.act(edge, now=T0, term=1)) == 5
    assert w.patches() == 5
    w.actor.act(stale, now=T0, term=1)
    assert w.patches() == 5, "a write re-sent from a stale read"
    assert w.fake.count("GET", "/deployments/") == 0


def test_owed_events_are_posted_once_by_the_next_daemon(world):
    w = world()
    w.deployment()

    def standby():
        raise Fenced("killed before it posted")
    w.sink.fence = standby  # the daemon that acted never posts its Event (as if killed)
    w.actor.act(w.evaluator.evaluate(NIGHT, now=T0), now=T0, term=1)
    assert w.sink.flush(timeout_seconds=5) == 0 and w.fake.events("llm") == []
    w.sink.fence = None  # the next daemon
    later = T0 + timedelta(minutes=5)
    assert w.actor.post_owed_events(NIGHT, now=later, ttl_seconds=3600) == 1
    assert w.sink.flush(timeout_seconds=5) == 0
    [event] = w.fake.events("llm", "chat")
    record = ActionRecord.read(w.get()["metadata"]["annotations"])
    assert event["reason"] == "ScaledToZero" and event["metadata"]["name"] == f"chat.{record.id}"
    assert "posted by the next daemon" in event["message"] and event["firstTimestamp"] == record.at
    # A daemon after that one finds nothing owed; nor does one after the Event TTL.
    assert w.actor.post_owed_events(NIGHT, now=later, ttl_seconds=3600) == 0
    assert w.actor.post_owed_events(NIGHT, now=T0 + timedelta(hours=2), ttl_seconds=3600) == 0
    assert len(w.fake.events("llm", "chat")) == 1


@pytest.mark.parametrize("behind", [timedelta(seconds=20), timedelta(hours=1)], ids=["skewed-standby", "stepped-back"])
def test_an_owed_event_recorded_by_a_clock_ahead_of_the_next_daemons_is_posted(world, behind):
    """The daemon that paused was killed before its Event; the next one's wall
    clock reads earlier than the record (a standby's clock behind the old
    leader's, or the clock stepped back an hour by NTP): the Event is still
    owed, and posted once."""
    w = world()
    w.deployment()

    def killed():
        raise Fenced("killed before it posted")
    w.sink.fence = killed
    w.actor.act(w.evaluator.evaluate(NIGHT, now=T0), now=T0, term=1)
    assert w.sink.flush(timeout_seconds=5) == 0 and w.fake.events("llm") == []
    w.sink.fence = None  # the next daemon
    assert w.actor.post_owed_events(NIGHT, now=T0 - behind, ttl_seconds=3600) == 1
    assert w.sink.flush(timeout_seconds=5) == 0
    assert w.actor.post_owed_events(NIGHT, now=T0 - behind, ttl_seconds=3600) == 0
    [event] = w.fake.events("llm", "chat")
    assert event["reason"] == "ScaledToZero"


def test_an_unsynced_cache_is_not_an_empty_cluster(fake, prometheus):
    fake.fail(method="GET", path="/deployments", reset=True, times=None)
    w = World(fake, prometheus)
    try:
        w.view.SYNC_WAIT_SECONDS = 0.2
        with pytest.raises(NotSynced):
            w.evaluator.evaluate(NIGHT, now=T0)
        assert not w.view.synced()
    finally:
        w.stop()


def _status(w, name, *, ready, replicas=1):
    w.fake.set_status("deployments.apps", "llm", name, {"replicas": replicas, "readyReplicas": ready})


def _scaled_by_someone(w, replicas, *, ready):
    """An HPA (or a person) sets the size; the Deployment's status follows."""
    w.fake.patch("deployments.apps", "llm", "chat", {"spec": {"replicas": replicas}}, manager="kube-controller-manager")
    _status(w, "chat", ready=ready, replicas=replicas)
    _wait_cached(w, ready, replicas=replicas)


def _track(w, seconds, *, ready, replicas=1):
    _status(w, "chat", ready=ready, replicas=replicas)
    _wait_cached(w, ready, replicas=replicas)
    w.tracker.track_starts(IDLE, now=T0 + timedelta(seconds=seconds), term=1)


def test_a_crash_loop_is_one_start_and_is_let_go_at_max_startup(fake, prometheus):
    """Ready a few seconds in every thirty: the start stays open from its
    beginning, its crash cycles never enter the warm-up history, and once
    max_startup has passed an idle model is paused."""
    fake.auto_ready = False
    w = World(fake, prometheus)
    try:
        w.deployment(replicas=1, annotations={WARM_UPS: "40,41"})
        prometheus.answer("requests_running", {("llm", "chat"): 0})
        cycle = [(0, 0), (25, 1), (30, 0), (55, 1), (60, 0), (85, 1), (90, 0)]
        for seconds, ready in cycle:
            _status(w, "chat", ready=ready)
            _wait_cached(w, ready)
            w.tracker.track_starts(IDLE, now=T0 + timedelta(seconds=seconds), term=1)
        annotations = w.get()["metadata"]["annotations"]
        assert annotations[STARTED_AT] == "2026-12-07T12:00:00Z", "a relapse must not begin a new start"
        assert READY_AT not in annotations and annotations[WARM_UPS] == "40,41"
        now = w.now = T0 + timedelta(seconds=95)
        [evaluation] = w.evaluator.evaluate(IDLE, now=now)
        assert (evaluation.decision.action, evaluation.decision.reason_code) == (Action.PAUSE, Code.IDLE_TIMEOUT)
        w.actor.act([evaluation], now=now, term=1)
        obj = w.get()
        assert obj["spec"]["replicas"] == 0 and obj["metadata"]["annotations"][WARM_UPS] == "40,41"
    finally:
        w.stop()


def test_a_readiness_that_flaps_for_a_second_a_minute_is_let_go_past_max_startup(fake, prometheus):
    """NotReady one second in every minute (Ready 59 s: shorter than the
    startup grace and the idle window): each Ready ends a start that began
    before max_startup, so it earns no grace and its idle window does not
    count from it; an idle model is paused, not held for good."""
    fake.auto_ready = False
    w = World(fake, prometheus)
    try:
        w.deployment(replicas=1, annotations={WARM_UPS: "40"})
        prometheus.answer("requests_running", {("llm", "chat"): 0})
        for minute in range(4):
            for seconds, ready in [(60 * minute, 0), (60 * minute + 1, 1)]:
                _track(w, seconds, ready=ready)
        assert w.get()["metadata"]["annotations"][STARTED_AT] == "2026-12-07T12:00:00Z", "one start, relapsing"
        now = w.now = T0 + timedelta(seconds=230)  # Ready for 49 s, 3m50s after its start
        [evaluation] = w.evaluator.evaluate(IDLE, now=now)
        assert (evaluation.decision.action, evaluation.decision.reason_code) == (Action.PAUSE, Code.IDLE_TIMEOUT), \
            evaluation.decision.reason
        w.actor.act([evaluation], now=now, term=1)
        assert w.get()["spec"]["replicas"] == 0
    finally:
        w.stop()


def test_a_model_paused_while_briefly_ready_in_a_crash_loop_keeps_its_history(fake, prometheus):
    fake.auto_ready = False
    w = World(fake, prometheus)
    try:
        w.deployment(replicas=1, annotations={WARM_UPS: "40"})
        for seconds, ready in [(0, 0), (25, 1)]:
            _status(w, "chat", ready=ready)
            _wait_cached(w, ready)
            w.tracker.track_starts(IDLE, now=T0 + timedelta(seconds=seconds), term=1)
        assert w.get()["metadata"]["annotations"][WARM_UPS] == "40,25"  # looked like a warm-up
        _status(w, "chat", ready=0)  # relapses; paused before the relapse is recorded
        _wait_cached(w, 0)
        workload = w.view.latest(w.evaluator.view.workloads(
            [DEPLOYMENT])[0])
        Pauser(w.kube, retry=FAST, clock=lambda: T0 + timedelta(seconds=30)).pause(
            workload, by="policy/idle", reason="idle")
        assert w.get()["metadata"]["annotations"][WARM_UPS] == "40"
    finally:
        w.stop()


def test_a_scale_up_soon_after_ready_is_a_new_start_not_a_relapse(fake, prometheus):
    """Ready at 20 s; 5 s later an HPA scales it 1 -> 2 and the new replica
    loads 45 s: that is a new start, protected while it loads (not let go at
    max_startup, 60 s, counted from the first start), with its own warm-up
    (45 s, not 70 s from the first start)."""
    fake.auto_ready = False
    w = World(fake, prometheus)
    try:
        w.deployment(replicas=1)
        prometheus.answer("requests_running", {("llm", "chat"): 0})
        for seconds, ready in [(0, 0), (20, 1)]:
            _track(w, seconds, ready=ready)
        _scaled_by_someone(w, 2, ready=1)
        w.tracker.track_starts(IDLE, now=T0 + timedelta(seconds=25), term=1)
        annotations = w.get()["metadata"]["annotations"]
        assert (annotations[STARTED_AT], annotations.get(WARM_UPS)) == ("2026-12-07T12:00:25Z", "20")
        assert READY_AT not in annotations
        now = w.now = T0 + timedelta(seconds=70)  # past max_startup from the first start, not from the scale-up
        [evaluation] = w.evaluator.evaluate(IDLE, now=now)
        assert (evaluation.decision.action, evaluation.decision.reason_code) == (Action.HOLD, Code.STARTING)
        assert "1 of 2 replicas Ready, loading for 45s" in evaluation.decision.reason
        _track(w, 70, ready=2, replicas=2)
        assert w.get()["metadata"]["annotations"][WARM_UPS] == "20,45"
        assert w.sink.flush(timeout_seconds=5) == 0
        assert sorted(e["message"].split(":")[0] for e in w.fake.events("llm", "chat", reason="Ready")) == [
            "Ready 20s after its start", "Ready 45s after its start"]
    finally:
        w.stop()


def test_a_scale_down_soon_after_ready_records_nothing_and_a_crash_after_it_is_a_relapse(fake, prometheus):
    fake.auto_ready = False
    w = World(fake, prometheus)
    try:
        w.deployment(replicas=2, annotations={WARM_UPS: "40"})
        for seconds, ready in [(0, 0), (20, 2)]:
            _track(w, seconds, ready=ready, replicas=2)
        recorded, patches = w.get()["metadata"]["annotations"], w.patches()
        assert recorded[WARM_UPS] == "40,20"
        _scaled_by_someone(w, 1, ready=1)
        w.tracker.track_starts(IDLE, now=T0 + timedelta(seconds=25), term=1)
        assert (w.get()["metadata"]["annotations"], w.patches()) == (recorded, patches)
        _track(w, 30, ready=0)  # the replica left falls over 10 s after Ready: the same start
        annotations = w.get()["metadata"]["annotations"]
        assert (annotations[STARTED_AT], annotations[WARM_UPS]) == ("2026-12-07T12:00:00Z", "40")
        assert READY_AT not in annotations
    finally:
        w.stop()


def test_a_warm_up_ends_when_the_pods_became_ready_not_when_scaler_looked(fake, prometheus):
    """A failover: the new leader sees all Ready 16 s after it happened."""
    fake.auto_ready = False
    w = World(fake, prometheus)
    try:
        w.deployment(replicas=1, annotations={STARTED_AT: "2026-12-07T12:00:00Z"},
                     selector={"matchLabels": {"app": "chat"}})
        ready = "2026-12-07T12:00:40Z"
        fake.create("pods", {"metadata": {"name": "chat-1", "labels": {"app": "chat"}},
                             "status": {"conditions": [{"type": "Ready", "status": "True",
                                                        "lastTransitionTime": ready}]}}, namespace="llm")
        fake.create("pods", {"metadata": {"name": "other", "labels": {"app": "other"}},
                             "status": {"conditions": [{"type": "Ready", "status": "False"}]}}, namespace="llm")
        _status(w, "chat", ready=1)
        _wait_cached(w, 1)
        w.tracker.track_starts(IDLE, now=T0 + timedelta(seconds=56), term=1)
        annotations = w.get()["metadata"]["annotations"]
        assert (annotations[READY_AT], annotations[WARM_UPS]) == (ready, "40")
        assert w.sink.flush(timeout_seconds=5) == 0
        [event] = w.fake.events("llm", "chat", reason="Ready")
        assert event["message"].startswith("Ready 40s after its start")
    finally:
        w.stop()


def _wait_cached(w, ready, *, replicas=None):
    def cached():
        [workload] = w.view.workloads([DEPLOYMENT])
        return (workload.ready_replicas == ready and replicas in (None, workload.replicas)) or None
    eventually(cached, timeout_seconds=5, interval_seconds=0.01)


def test_a_custom_resource_whose_size_cannot_be_read_stops_no_other_decision(fake, prometheus):
    """One object whose CRD does not type its size holds 'abc' there: it is left out (and said), and
    the daemon's pass decides for and pauses the others of its kind as ever."""
    from tests.helpers import simple_crd
    from tests.unit.running import Passes, policies

    fake.create("customresourcedefinitions.apiextensions.k8s.io", simple_crd(
        group="serving.example.com", kind="VLLMServer", plural="vllmservers", version="v1alpha1", scale=True))
    fake.create("namespaces", {"metadata": {"name": "llm"}})
    servers = "vllmservers.serving.example.com"
    fake.create(servers, {"metadata": {"name": "odd"}, "spec": {"replicas": "abc"}}, namespace="llm")
    fake.create(servers, {"metadata": {"name": "good"}, "spec": {"replicas": 4}}, namespace="llm")
    text = ("policies:\n  - name: nights\n    targets: {namespaces: [llm], kinds: ['vllmservers.serving.example.com/"
            "v1alpha1']}\n    schedule:\n      timezone: UTC\n      windows:\n"
            '        - {name: a, mode: down, start: "0 0 * * *", end: "0 12 * * *"}\n'
            '        - {name: b, mode: down, start: "0 12 * * *", end: "0 0 * * *"}\n')
    now = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
    daemon = Passes(fake, prometheus.url, policies(text), now=now)
    try:
        decided = eventually(lambda: [e for e in daemon.step(now) if e.workload.name == "good"] or None,
                             timeout_seconds=5)
    finally:
        daemon.stop()
    assert [e.decision.action for e in decided] == [Action.PAUSE]
    assert fake.get(servers, "llm", "good")["spec"]["replicas"] == 0
    assert fake.get(servers, "llm", "odd")["spec"]["replicas"] == "abc"
