"""The daemon in process (run/daemon.py) against the fake API server: who may
write and when, readiness, and recovering from an API server that was away.
Elections over real time are the cluster tier's (tests/cluster); here the
Lease's state is set directly, so a lapse happens exactly when a test says."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from scaler.cluster.kinds import DEPLOYMENT
from scaler.decide.loading import check_policies
from scaler.run.daemon import Daemon
from scaler.run.settings import Settings
from scaler.run.sources import FilePolicies
from tests.fakes.bodies import all_day, deployment, namespace
from tests.helpers import eventually
from tests.unit.running import Running as Started
from tests.unit.running import settings

NIGHT = """
policies:
  - name: always-down
    targets: {namespaces: [llm]}
    schedule:
      timezone: UTC
      windows: [{name: all-week, mode: down, when: "Mon-Sun 00:00-24:00"}]
"""


def make_daemon(fake, prometheus, tmp_path, *, name="a", leader_election=False, text=NIGHT):
    (tmp_path / "policies.yaml").write_text(text)
    settings = Settings(kubeconfig=str(fake.kubeconfig(tmp_path / "kubeconfig")), prometheus_url=prometheus.url,
                        policies=[tmp_path / "policies.yaml"], identity=name, port=0, bind_address="127.0.0.1",
                        leader_election=leader_election, evaluation_interval_seconds=30,
                        wake_check_interval_seconds=30, policy_reload_interval_seconds=30, log_format="console")
    source = FilePolicies(settings.policies)
    policies, problems = check_policies(settings.policies)
    assert not problems
    return Daemon(settings, policies, source=source, version=source.version())


def deployments(fake, *names, replicas=2):
    fake.create("namespaces", {"metadata": {"name": "llm"}})
    for name in names:
        fake.create("deployments.apps", {"metadata": {"name": name}, "spec": {"replicas": replicas}},
                    namespace="llm")


class Running:
    """A daemon's run() in a thread, stopped (as SIGTERM does) at the end."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.code: list[int] = []
        self.thread = threading.Thread(target=lambda: self.code.append(daemon.run(handle_signals=False)),
                                       daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        eventually(lambda: self.daemon.server, timeout_seconds=5, interval_seconds=0.01)
        return self

    def readyz(self) -> tuple[int, dict]:
        url = f"http://127.0.0.1:{self.daemon.server.server_address[1]}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def __exit__(self, *exc) -> None:
        self.daemon.stopping.set()
        self.thread.join(8)
        assert self.code == [0], "the daemon did not stop cleanly"


def test_the_daemon_pauses_what_a_window_keeps_down_and_posts_the_events(fake, prometheus, tmp_path):
    deployments(fake, "a", "b")
    with Running(make_daemon(fake, prometheus, tmp_path)) as running:
        eventually(lambda: all(fake.get("deployments.apps", "llm", n)["spec"]["replicas"] == 0 for n in "ab")
                   or None, timeout_seconds=5, interval_seconds=0.02)
        eventually(lambda: len(fake.events("llm", reason="ScaledToZero")) == 2 or None, timeout_seconds=5)
        status, body = running.readyz()
        assert status == 200 and body["cachesSynced"] is True
    assert fake.count("PATCH", "/deployments/") == 2


def test_not_ready_while_the_api_server_is_away_and_acting_within_seconds_of_its_return(fake, prometheus,
                                                                                         tmp_path):
    deployments(fake, "a")
    away = fake.fail(reset=True, times=None)  # every request: the connection is dropped
    with Running(make_daemon(fake, prometheus, tmp_path)) as running:
        # Away until the daemon has been refused a few times (lists and retries).
        eventually(lambda: sum(r.status == -1 for r in list(fake.requests)) >= 4 or None, timeout_seconds=8)
        status, body = running.readyz()
        assert status == 503 and body["cachesSynced"] is False and body["ready"] is False
        assert fake.get("deployments.apps", "llm", "a")["spec"]["replicas"] == 2
        back = time.monotonic()
        away.times = 0  # the server is back
        eventually(lambda: fake.get("deployments.apps", "llm", "a")["spec"]["replicas"] == 0 or None,
                   timeout_seconds=8, interval_seconds=0.02)
        first_write = time.monotonic() - back
        eventually(lambda: running.readyz()[0] == 200 or None, timeout_seconds=5)
    assert first_write < 5, f"first write {first_write:.1f}s after the API server came back"


def test_not_ready_while_the_api_server_goes_away_after_it_was_ready(fake, prometheus, tmp_path):
    """Ready, then the API server goes away: the watches break and every list
    fails. /readyz says so (the caches no longer follow the cluster) instead
    of answering 200 from caches that stopped, and is ready again once the
    server is back."""
    deployments(fake, "a")
    with Running(make_daemon(fake, prometheus, tmp_path)) as running:
        eventually(lambda: running.readyz()[0] == 200 or None, timeout_seconds=5)
        away = fake.fail(reset=True, times=None)
        fake.cut_watches()
        _, body = eventually(lambda: (answer := running.readyz())[0] == 503 and answer, timeout_seconds=5)
        assert body["cachesSynced"] is False and body["ready"] is False
        away.times = 0  # the server is back
        eventually(lambda: running.readyz()[0] == 200 or None, timeout_seconds=8)


def test_a_write_in_flight_when_the_lease_lapses_sends_no_retry(fake, prometheus, tmp_path):
    """A leader that stops renewing (frozen past its lease, in real life) while
    its write retries a failed guard: the retry is fenced, nothing more goes out."""
    deployments(fake, "a")
    daemon = make_daemon(fake, prometheus, tmp_path, leader_election=True)
    leadership = daemon.leadership
    leadership._set(True)  # as the election does on winning
    leadership.renewed(time.monotonic())
    daemon._checked_term = leadership.term

    def race_then_lapse(request):
        # Someone else writes a guarded annotation (the guard will fail), and the lease lapses.
        fake.patch("deployments.apps", "llm", "a", {"metadata": {"annotations": {"scaler.io/override-until":
                                                                                 "2000-01-01T00:00:00Z"}}})
        leadership._last_renewal = time.monotonic() - 3600
    fake.before("PATCH", "/deployments/a$", race_then_lapse)
    try:
        daemon._reconcile()
    finally:
        daemon.view.stop(timeout_seconds=2)
    assert fake.count("PATCH", "/deployments/") == 1, "a retry went out after the lease lapsed"
    assert fake.get("deployments.apps", "llm", "a")["spec"]["replicas"] == 2
    assert fake.events("llm") == []


def test_a_standby_writes_nothing(fake, prometheus, tmp_path):
    deployments(fake, "a")
    daemon = make_daemon(fake, prometheus, tmp_path, leader_election=True)
    try:
        daemon._reconcile()  # never elected
    finally:
        daemon.view.stop(timeout_seconds=2)
    assert fake.count("PATCH") == 0 and fake.count("POST", "/events") == 0


def test_a_new_term_posts_what_the_last_one_owed(fake, prometheus, tmp_path):
    """Killed after its writes landed, before their Events: the next leader posts them, once."""
    deployments(fake, "a", "b")
    first = make_daemon(fake, prometheus, tmp_path, name="first")
    first.events.fence = _never  # killed: its Events never go out
    first._checked_term = first.leadership.term
    try:
        first._reconcile()
        assert first.events.flush(timeout_seconds=5) == 0 and fake.events("llm") == []
    finally:
        first.view.stop(timeout_seconds=2)
    second = make_daemon(fake, prometheus, tmp_path, name="second")
    second._checked_term = second.leadership.term
    try:
        second._reconcile()
        second._reconcile()  # once per term, not per reconcile
        assert second.events.flush(timeout_seconds=5) == 0
    finally:
        second.view.stop(timeout_seconds=2)
    events = fake.events("llm", reason="ScaledToZero")
    assert sorted(e["involvedObject"]["name"] for e in events) == ["a", "b"]
    assert all("posted by the next daemon" in e["message"] for e in events)


@pytest.mark.parametrize("look_fails", [False, True], ids=["looked", "look-failed"])
def test_a_new_term_posts_what_the_last_one_owed_before_it_acts_on_the_same_objects(fake, prometheus, tmp_path,
                                                                                      look_fails):
    """Deposed (or killed) right after its pauses landed, before their Events;
    the keep-down window has ended when the next leader takes over, so it
    resumes them at once: the pauses' Events are still posted (a resume
    rewrites scaler.io/last-action, so they are owed only until then). Also
    when the next leader's look for owed Events fails (the API server busy,
    as during a failover): its resumes replace the pauses' records all the
    same, so each write posts the Event of the record it replaces first."""
    deployments(fake, "a", "b")
    first = make_daemon(fake, prometheus, tmp_path, name="first")
    first.events.fence = _never
    first._checked_term = first.leadership.term
    try:
        first._reconcile()
        assert first.events.flush(timeout_seconds=5) == 0 and fake.events("llm") == []
    finally:
        first.view.stop(timeout_seconds=2)
    # The same policy, its keep-down window now 12 hours away.
    opens = datetime.now(UTC) + timedelta(hours=12)
    closes = opens + timedelta(minutes=1)
    ended = NIGHT.replace('when: "Mon-Sun 00:00-24:00"', f'start: "{opens.minute} {opens.hour} * * *", '
                                                         f'end: "{closes.minute} {closes.hour} * * *"')
    second = make_daemon(fake, prometheus, tmp_path, name="second", text=ended)
    second._checked_term = second.leadership.term
    if look_fails:
        fake.fail(method="GET", path="/events$", status=503, times=1)
    try:
        second._reconcile()
        assert second.events.flush(timeout_seconds=5) == 0
    finally:
        second.view.stop(timeout_seconds=2)
    assert all(fake.get("deployments.apps", "llm", n)["spec"]["replicas"] == 2 for n in "ab")
    assert sorted(e["involvedObject"]["name"] for e in fake.events("llm", reason="Resumed")) == ["a", "b"]
    paused = fake.events("llm", reason="ScaledToZero")
    assert sorted(e["involvedObject"]["name"] for e in paused) == ["a", "b"]
    assert all("posted by the next daemon" in e["message"] for e in paused)


def test_a_pause_whose_answer_is_lost_still_gets_its_event_in_the_same_term(fake, prometheus, tmp_path):
    """The connection drops after the API server applied the pause: the
    daemon cannot tell it landed (the write is logged failed), but the
    object carries the action's record, so the next pass of the same term
    looks for owed Events again and posts it."""
    deployments(fake, "a")
    fake.fail(method="PATCH", path="/deployments/a$", reset=True, after=True)
    daemon = make_daemon(fake, prometheus, tmp_path)
    daemon._checked_term = daemon.leadership.term

    def posted():
        daemon._reconcile()
        daemon.events.flush(timeout_seconds=2)
        return fake.events("llm", reason="ScaledToZero")
    try:
        daemon._reconcile()
        assert fake.get("deployments.apps", "llm", "a")["spec"]["replicas"] == 0
        [event] = eventually(posted, timeout_seconds=5)
    finally:
        daemon.view.stop(timeout_seconds=2)
    assert event["involvedObject"]["name"] == "a" and fake.count("PATCH", "/deployments/") == 1



def test_after_a_lost_answer_the_next_write_reads_the_object_not_a_cache_that_missed_it(fake, prometheus, tmp_path):
    """The pause landed but its answer was lost, and the watch has not shown
    it yet (here: the caches stopped before it). The write that follows
    starts from a GET, and the cache takes what it read: no second PATCH for
    the guard to refuse, in this pass or the next, and the count on the
    object is the first pause's."""
    deployments(fake, "a", replicas=3)
    fake.fail(method="PATCH", path="/deployments/a$", reset=True, after=True)
    daemon = make_daemon(fake, prometheus, tmp_path)
    daemon._checked_term = daemon.leadership.term
    try:
        daemon.view.workloads([DEPLOYMENT])  # the cache synced: the Deployment as created
        daemon.view.stop(timeout_seconds=2)
        daemon._reconcile()
        daemon._reconcile()
    finally:
        daemon.view.stop(timeout_seconds=2)
    a = fake.get("deployments.apps", "llm", "a")
    assert a["spec"]["replicas"] == 0 and a["metadata"]["annotations"]["scaler.io/last-replicas"] == "3"
    assert fake.count("PATCH", "/deployments/") == 1

def _never():
    from scaler.cluster.kube import Fenced

    raise Fenced("killed")


IDLE = """
policies:
  - name: idle
    targets: {namespaces: [llm]}
    idle: {query: 'vllm:num_requests_running', threshold: 0.5, duration: 10m}
"""


def _holder(fake) -> str | None:
    try:
        return fake.get("leases.coordination.k8s.io", "default", "scaler")["spec"].get("holderIdentity")
    except Exception:  # noqa: BLE001 - no Lease yet
        return None


def test_a_job_stuck_on_prometheus_does_not_hold_the_lease_back_at_shutdown(fake, tmp_path):
    """SIGTERM while a reconcile waits on a hung Prometheus: the Lease is
    handed back at once (a standby takes over now, not when the query gives
    up), and the stuck job, ending later, writes nothing."""
    from tests.fakes.prometheus import FakePrometheus

    release = threading.Event()
    hung = FakePrometheus(instant=lambda query: release.wait(20) and []).serve()
    deployments(fake, "a")
    daemon = make_daemon(fake, hung, tmp_path, leader_election=True, text=IDLE)
    try:
        with Running(daemon):
            eventually(lambda: _holder(fake) == "a", timeout_seconds=8)
            eventually(lambda: hung.requests, timeout_seconds=8)  # the reconcile waits on Prometheus
            daemon.stopping.set()  # what SIGTERM does
            eventually(lambda: _holder(fake) == "", timeout_seconds=5)
            assert daemon._running >= 1, "the Lease went back only once the stuck job had ended"
            release.set()
    finally:
        release.set()
        hung.stop()
    assert fake.count("PATCH", "/deployments/") == 0


def test_events_refused_past_their_retries_are_posted_once_when_the_api_server_takes_them_again(
        fake, prometheus, tmp_path):
    """The API server refuses every Event (500) for longer than the sink
    retries (about a minute in production), while it takes the writes: the
    actions are recorded on the objects, so once Events go in again the same
    term posts each, once."""
    deployments(fake, "a", "b")
    refused = fake.fail(method="POST", path="/events$", status=500, times=None)
    daemon = make_daemon(fake, prometheus, tmp_path)
    daemon._checked_term = daemon.leadership.term
    daemon.events.retry_seconds = 0.01
    try:
        daemon._reconcile()
        assert all(fake.get("deployments.apps", "llm", n)["spec"]["replicas"] == 0 for n in "ab")
        assert daemon.events.flush(timeout_seconds=5) == 0 and daemon.events.counts["failed"] == 2
        refused.times = 0  # Events go in again
        for _ in range(3):
            daemon._reconcile()
            assert daemon.events.flush(timeout_seconds=5) == 0
    finally:
        daemon.view.stop(timeout_seconds=2)
    events = fake.events("llm", reason="ScaledToZero")
    assert sorted(e["involvedObject"]["name"] for e in events) == ["a", "b"]
    assert fake.count("PATCH", "/deployments/") == 2


def test_an_edge_found_far_ahead_after_its_lead_began_is_left_to_the_next_reconcile(fake, prometheus, tmp_path):
    """The wall clock stepped back while the edge job waited out its lead:
    the edge is an hour away again. The job lets go at once (it does not sit
    on the edge job for the hour) and the next reconcile schedules it anew."""
    deployments(fake, "a")
    daemon = make_daemon(fake, prometheus, tmp_path)
    daemon._checked_term = daemon.leadership.term
    at = datetime.now(UTC) + timedelta(hours=1)
    daemon._edge_at = at
    try:
        started = time.monotonic()
        daemon._edge(at)
        assert time.monotonic() - started < 2
    finally:
        daemon.view.stop(timeout_seconds=2)
    assert daemon._edge_at is None and fake.count("PATCH") == 0


def test_sigterm_while_events_are_refused_hands_over_at_once_and_the_next_daemon_posts_them(
        fake, prometheus, tmp_path):
    """SIGTERM in the middle of a batch while the API server refuses Events
    (503): the writes in flight finish, no new one starts, and the daemon
    exits at once rather than retrying Events until its deadline (23 s, the
    Lease held all along: longer than a kill -9 failover). Their records are
    on the objects: the next daemon posts each Event, once."""
    (tmp_path / "policies.yaml").write_text(all_day())
    namespace(fake, "llm")
    counts = {f"w{i}": i % 3 + 1 for i in range(20)}
    for name, count in counts.items():
        fake.create("deployments.apps", deployment(name, replicas=count, gpus=0, labels={"tier": "gpu"}),
                    namespace="llm")

    def paused() -> int:
        return sum(1 for d in fake.items("deployments.apps", "llm") if d["spec"]["replicas"] == 0)
    slow = fake.fail(method="PATCH", path="/deployments/", delay_seconds=0.3, times=None)
    refused = fake.fail(method="POST", path="/events$", status=503, times=None)
    first = Started.start(settings(fake, prometheus.url, tmp_path, name="first", concurrency=2))
    eventually(lambda: paused() >= 4 or None, timeout_seconds=10, interval_seconds=0.02)
    assert first.stop(timeout_seconds=8) == 0
    assert paused() < len(counts) and fake.events("llm") == []
    slow.times = refused.times = 0
    with Started.start(settings(fake, prometheus.url, tmp_path, name="second")) as second:
        eventually(lambda: paused() == len(counts) or None, timeout_seconds=10)
        eventually(lambda: len(fake.events("llm")) == len(counts) or None, timeout_seconds=10)
        second.let_reconciles_pass(2)
    assert sorted(e["involvedObject"]["name"] for e in fake.events("llm", reason="ScaledToZero")) == sorted(counts)
    for d in fake.items("deployments.apps", "llm"):
        assert d["metadata"]["annotations"]["scaler.io/last-replicas"] == str(counts[d["metadata"]["name"]])
