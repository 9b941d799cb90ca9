"""Cold starts in simulated time: the daemon's passes (a wake check every
second, a full reconcile every two) run at instants the test gives, against
the fake API server, whose pods become Ready a model-load time after a
wake. A queue that pulses or drains while the model loads, a daemon
restarted or a standby taking over mid-load: what a user sees is the
replicas, the Events, the start records and the decision's reason.

Moved from the cluster tier, where each scenario waited for real: 150 s of
pulsing queue, 30-40 s loads. The cluster keeps what kwok shows (pods held
Running but not Ready for their load time, the warm-up measured from the
pods' Ready transition: tests/cluster/test_cold_starts.py)."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from scaler.decide.annotations import (
    LAST_REPLICAS,
    PAUSE_CAUSE,
    PAUSED_AT,
    PAUSED_BY,
    READY_AT,
    STARTED_AT,
    WARM_UPS,
)
from scaler.decide.decisions import Code
from scaler.decide.times import parse_time, rfc3339
from tests.fakes.bodies import deployment, namespace
from tests.unit.running import Passes, policies

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
DEPLOYMENTS = "deployments.apps"


def queue_policy(extra: str = "") -> str:
    return textwrap.dedent("""
        policies:
          - name: chat
            targets: {namespaces: [llm], selector: app=chat}
            idle: {query: 'vllm:num_requests_running{namespace="llm"}', threshold: 0.5, duration: 6s}
            wake: {query: 'gateway_pending_requests{namespace="llm"}', target_per_replica: 4}
            min_replicas: 1
            max_replicas: 2
        """) + textwrap.indent(textwrap.dedent(extra), " " * 4)


class Model:
    """llm/chat, paused at zero by scaler, whose pods take `load_seconds` from
    a wake to Ready (the pods' Ready condition says when, as kubelet's would)."""

    def __init__(self, fake, *, last: int, load_seconds: float) -> None:
        self.fake, self.load_seconds = fake, load_seconds
        fake.auto_ready = False
        namespace(fake, "llm")
        fake.create(DEPLOYMENTS, deployment("chat", replicas=0, annotations={
            LAST_REPLICAS: str(last), PAUSED_BY: "policy/chat", PAUSED_AT: "2026-01-01T00:00:00Z",
            PAUSE_CAUSE: "idle-timeout"}), namespace="llm")
        self.woken_at: datetime | None = None
        self.ready_at: datetime | None = None

    def obj(self) -> dict:
        return self.fake.get(DEPLOYMENTS, "llm", "chat")

    def replicas(self) -> int:
        return self.obj()["spec"]["replicas"]

    def annotations(self) -> dict:
        return self.obj()["metadata"].get("annotations") or {}

    def follow(self, now: datetime) -> None:
        """What the cluster does by `now`: pods start on a wake, go Ready after the load, go on a pause."""
        replicas = self.replicas()
        if replicas == 0:
            if self.woken_at is not None:
                self.fake.set_status(DEPLOYMENTS, "llm", "chat", {"replicas": 0, "readyReplicas": 0})
                for pod in self.fake.items("pods", "llm"):
                    self.fake.delete("pods", "llm", pod["metadata"]["name"])
            self.woken_at = None  # ready_at stays: when the last start became Ready
            return
        if self.woken_at is None:
            self.woken_at, self.ready_at = now, None
            self.fake.set_status(DEPLOYMENTS, "llm", "chat", {"replicas": replicas, "readyReplicas": 0})
        elif self.ready_at is None and now >= self.woken_at + timedelta(seconds=self.load_seconds):
            self.ready_at = self.woken_at + timedelta(seconds=self.load_seconds)
            for i in range(replicas):
                self.fake.create("pods", {"metadata": {"name": f"chat-{i}", "labels": {"app": "chat"}}, "status": {
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": rfc3339(self.ready_at)}]}},
                    namespace="llm")
            self.fake.set_status(DEPLOYMENTS, "llm", "chat", {"replicas": replicas, "readyReplicas": replicas})


def run(daemons: list[Passes], model: Model, *, seconds: int, start: int = 0, queue=None, prometheus=None,
        stop_when=lambda t: False, reasons: list | None = None) -> int:
    """Every simulated second from `start` to `seconds`: each daemon runs a
    wake check, and on even seconds a full reconcile, and the cluster follows
    what they wrote. Returns the second it stopped at; `reasons` collects
    every decision's (reason code, reason)."""
    for t in range(start, seconds):
        now = T0 + timedelta(seconds=t)
        if queue is not None:
            prometheus.answer("gateway_pending_requests", {("llm", "chat"): queue(t)})
        model.follow(now)
        for daemon in daemons:
            daemon.seen("chat")
            evaluations = daemon.step(now, full=t % 2 == 0)
            if reasons is not None:
                reasons += [(e.decision.reason_code, e.decision.reason) for e in evaluations]
        model.follow(now)
        if stop_when(t):
            return t
    return seconds


@pytest.fixture
def daemons(fake, prometheus):
    made: list[Passes] = []

    def make(text: str, **kwargs) -> Passes:
        made.append(Passes(fake, prometheus.url, policies(text), now=T0, **kwargs))
        return made[-1]
    yield make
    for daemon in made:
        daemon.stop()


def _events(fake, reason: str) -> list[dict]:
    return fake.events("llm", "chat", reason)


def test_a_pulsing_queue_makes_no_flaps_with_the_defaults(fake, prometheus, daemons):
    """The queue pulses (3 for 8 s, 0 for 12 s) while a 40 s model loads, for
    two and a half minutes, with the default startup_grace and
    scale_down_delay: one wake, no pause (before: 3 cycles a minute)."""
    model = Model(fake, last=1, load_seconds=40)
    prometheus.answer("vllm:num_requests_running", {("llm", "chat"): 0})  # no traffic served: idle throughout
    daemon = daemons(queue_policy())
    run([daemon], model, seconds=150, queue=lambda t: 3 if t % 20 < 8 else 0, prometheus=prometheus)
    assert daemon.sink.flush(timeout_seconds=5) == 0
    assert (len(_events(fake, "Resumed")), len(_events(fake, "ScaledToZero"))) == (1, 0)
    assert model.replicas() == 1 and model.ready_at is not None


def test_a_queue_wake_is_never_paused_while_the_model_loads(fake, prometheus, daemons, scaler):
    model = Model(fake, last=2, load_seconds=40)
    prometheus.answer("vllm:num_requests_running", {("llm", "chat"): 0})  # no traffic at all: idle throughout
    daemon = daemons(queue_policy("startup_grace: 10s\nscale_down_delay: 0s\n"))
    woke = run([daemon], model, seconds=5, queue=lambda t: 3, prometheus=prometheus,
               stop_when=lambda t: model.replicas() == 2)
    assert model.replicas() == 2 and STARTED_AT in model.annotations()
    # The queue is served elsewhere, mid-load.
    reasons: list = []
    paused_at = run([daemon], model, start=woke + 1, seconds=120, queue=lambda t: 0, prometheus=prometheus,
                    stop_when=lambda t: model.replicas() == 0, reasons=reasons)
    assert model.ready_at is not None, "paused before it was Ready"
    loading = [reason for code, reason in reasons if code is Code.STARTING]
    assert loading and "of 2 replicas Ready, loading for" in loading[0], reasons[:3]
    # Ready and its grace over, and idle since Ready for the whole 6 s: only then may it go.
    assert (T0 + timedelta(seconds=paused_at) - model.ready_at).total_seconds() >= 10
    annotations = model.annotations()
    assert parse_time(annotations[READY_AT]) == model.ready_at  # the pods' transition, not when scaler looked
    assert annotations[WARM_UPS].split(",")[-1] == "40"
    assert daemon.sink.flush(timeout_seconds=5) == 0
    assert "40s after its start: all 2 replicas Ready" in _events(fake, "Ready")[0]["message"]
    # `scaler status` shows the warm-up: about what the next resume will take.
    status = scaler("status", "-n", "llm")
    assert "WARM-UP" in status.out and " 40s " in f" {status.out} "


@pytest.mark.parametrize("successor", ["restarted", "standby"])
def test_a_daemon_lost_mid_load_its_successor_keeps_protecting(fake, prometheus, daemons, scaler, successor):
    """SIGKILL mid-load (nothing in memory survives: a new daemon), or a
    leader lost mid-load (its standby, which watched all along, takes over):
    the start recorded on the object protects the model until Ready and its
    grace."""
    model = Model(fake, last=1, load_seconds=30)
    prometheus.answer("vllm:num_requests_running", {("llm", "chat"): 0})
    text = queue_policy("startup_grace: 8s\nscale_down_delay: 0s\n")
    first = daemons(text)
    standby = daemons(text, leading=False) if successor == "standby" else None
    woke = run([first, *filter(None, [standby])], model, seconds=5, queue=lambda t: 3, prometheus=prometheus,
               stop_when=lambda t: model.replicas() == 1)
    run([first, *filter(None, [standby])], model, start=woke + 1, seconds=woke + 4, queue=lambda t: 0,
        prometheus=prometheus)
    first.stop()  # gone mid-load
    assert model.ready_at is None, "loaded before the loss; the test proves nothing"
    status = scaler("status", "-n", "llm")
    assert "loading: 0 of 1 Ready, " in status.out and " since its start" in status.out
    successor_daemon = standby or daemons(text)
    successor_daemon.leading = True
    holds = successor_daemon.step(T0 + timedelta(seconds=woke + 4), full=True)
    assert [e.decision.reason_code for e in holds] == [Code.STARTING]
    paused_at = run([successor_daemon], model, start=woke + 5, seconds=120, stop_when=lambda t: model.replicas() == 0)
    assert model.ready_at is not None, "paused while loading"
    assert (T0 + timedelta(seconds=paused_at) - model.ready_at).total_seconds() >= 8, "paused inside the grace"


def test_a_pass_older_than_the_start_it_sees_end_records_one_ready(fake, prometheus, daemons):
    """A full reconcile begun at T0 takes a few seconds over its writes;
    meanwhile a wake check resumes chat at T0+2, and its pods are Ready at
    once. When the slow pass, still at T0, reaches chat, the start it ends
    is the one begun at T0+2: its Ready is recorded no earlier than that
    start, so the start is closed and no second Ready follows."""
    daemon = daemons(queue_policy())
    model = Model(fake, last=2, load_seconds=0)
    prometheus.answer("gateway_pending_requests", {("llm", "chat"): 5})
    daemon.seen("chat")
    daemon.step(T0 + timedelta(seconds=2), full=False)  # the wake check resumes
    assert model.replicas() == 2
    model.follow(T0 + timedelta(seconds=2))
    model.follow(T0 + timedelta(seconds=2))  # Ready at once
    daemon.seen("chat")
    daemon.tracker.track_starts(daemon.policies, now=T0)  # the slow pass, begun before the resume
    daemon.sink.flush(timeout_seconds=5)
    daemon.seen("chat")
    for t in (3, 4, 6):
        daemon.tracker.track_starts(daemon.policies, now=T0 + timedelta(seconds=t))
        daemon.seen("chat")
    daemon.sink.flush(timeout_seconds=5)
    assert len(_events(fake, "Ready")) == 1
    annotations = model.annotations()
    assert parse_time(annotations[READY_AT]) >= parse_time(annotations[STARTED_AT])
    assert annotations[WARM_UPS] == "0"
