"""`scaler run`: the long-running daemon, composing the evaluator (decides, reads only), the actor
(writes) and the tracker (follows, pass to pass).

Jobs on one APScheduler (each with max_instances=1, coalesce and a real misfire grace), each
independent of the others (no job waits for another):
- reconcile: every evaluation interval, everything, level-triggered: first what the schedules decide
  alone (written at once), then everything with the signals, fetched under one deadline;
- edge: one date job for the next window edge of any policy, schedules only, no query (but a resume left to a
  wake signal asks it during the lead: unknown if late): it decides `EDGE_LEAD` ahead, as of the edge, and
  writes as the edge passes, even with Prometheus hung (the next reconcile would heal a missed edge);
- wake: every wake-check interval, only paused workloads of policies with a wake signal, one query per such policy;
- follow: the nodes paused workloads ran on, held or gone (run/following.py);
- reload: re-reads the policies (files, or a ConfigMap through the API) when they change; a bad set is
  reported and the last good one stays in force. A new leader acts only once it has read them in its own
  term, so a standby that held an old version cannot undo what the last leader did.

Shutdown (SIGTERM, SIGINT): no new write starts, the writes in flight finish, queued Events are posted (one
refused is left owed, for the next leader), and only then is the Lease released, so a standby never acts on a
workload this replica is still writing.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
from collections.abc import Callable, Hashable
from datetime import UTC, datetime, timedelta
from http.server import ThreadingHTTPServer

import structlog
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from scaler.cluster.discovery import KindResolver
from scaler.cluster.eventing import EventSink
from scaler.cluster.kube import Fenced, Kube, KubeError
from scaler.cluster.pausing import Pauser
from scaler.cluster.placing import Placement
from scaler.cluster.views import WatchingView
from scaler.decide.loading import PolicySet
from scaler.decide.policies import Policy
from scaler.decide.times import utc_now
from scaler.run.acting import Actor
from scaler.run.evaluating import Evaluator, kinds_of
from scaler.run.following import Follower
from scaler.run.leading import Leadership
from scaler.run.observability import Health, Metrics, serve
from scaler.run.settings import Settings
from scaler.run.sources import PolicySource
from scaler.run.tracking import Tracker
from scaler.run.waking import push_wake_routes

log = structlog.get_logger("scaler")

#: How long before a window edge its job decides (1,000 workloads: about 0.1 s on 2 busy cores).
EDGE_LEAD = timedelta(seconds=2)
#: A wall clock off the monotonic one by more than this between two looks (0.2 s apart) has stepped.
CLOCK_STEP_SECONDS = 5.0


class Daemon:
    def __init__(self, settings: Settings, policies: PolicySet, *, source: PolicySource, version: Hashable,
                 kube: Kube | None = None) -> None:
        """`policies` are what `source` held at `version`."""
        self.settings = settings
        self.policies = policies
        self.metrics = Metrics()
        self.health = Health(policies_loaded=True, details={"policyFilesValid": True, "failingPolicies": {}})
        self.kube = kube or settings.kube()
        self.source, self._version = source, version
        #: The leadership term in which the policies were last read: only that term may act.
        self._checked_term = -1
        #: The term in which the Events a previous daemon owed were posted (every acting job waits for it).
        self._events_checked_term, self._owed_lock = -1, threading.Lock()
        self._edge_at: datetime | None = None  # the edge the edge job is scheduled for
        self._unread: str | None = None  # why the source could not be read, while it cannot
        self.metrics.count_requests(self.kube.request_counts)
        # Audit logs (and a test's fake API server) tell the replicas apart.
        self.kube.api_client.user_agent = f"scaler/{settings.identity}"
        self.prometheus = settings.prometheus()
        self.view = WatchingView(self.kube, namespaces=settings.namespaces, gpu_resources=settings.gpu_resources,
                                 on_synced=self._synced)
        self.leadership = Leadership(
            self.kube, enabled=settings.leader_election, name=settings.lease_name,
            namespace=settings.effective_lease_namespace, identity=settings.identity,
            lease_duration_seconds=settings.lease_duration_seconds,
            renew_deadline_seconds=settings.lease_renew_deadline_seconds,
            retry_period_seconds=settings.lease_retry_period_seconds, on_change=self._leadership_changed)
        self.stopping = threading.Event()
        self.events = EventSink(self.kube, fence=self._holds_lease)
        self.evaluator = Evaluator(
            prometheus=self.prometheus, view=self.view, excluded_namespaces=settings.all_excluded_namespaces,
            signal_deadline_seconds=settings.signal_deadline_seconds, resolve=KindResolver(self.kube),
            gitops_managers=settings.gitops_managers)
        self.placement = Placement(self.kube)
        pauser = Pauser(self.kube, events=self.events, fence=self._holds_lease, term=lambda: self.leadership.term,
                        placement=self.placement, event_ttl_seconds=settings.event_ttl_seconds)
        self.actor = Actor(evaluator=self.evaluator, pauser=pauser, dry_run=settings.dry_run, metrics=self.metrics,
                           may_act=self._may_act, concurrency=settings.concurrency, hands_off=settings.hands_off())
        self.tracker = Tracker(evaluator=self.evaluator, actor=self.actor, metrics=self.metrics)
        self.events.quiet = self.actor.quiet
        self.follower = Follower(self.kube, settings, placement=self.placement, pauser=pauser, view=self.view,
                                 kinds=lambda: kinds_of(self.policies, self.evaluator.resolve, {}),
                                 may_act=lambda term: self._may_act(None, term), term=lambda: self.leadership.term,
                                 metrics=self.metrics, claimed=self.actor.claimed, first=self.post_owed_events)
        self.scheduler = BackgroundScheduler(timezone=UTC, job_defaults={
            "max_instances": 1, "coalesce": True, "misfire_grace_time": 30})
        self.scheduler.add_listener(self.metrics.job_event,
                                    EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        self._running = 0  # jobs running now: shutdown waits for them
        self._running_changed = threading.Condition()
        self.wall_clock: Callable[[], float] = time.time  # what APScheduler reads, to notice it step
        self.server: ThreadingHTTPServer | None = None
        self.posts = push_wake_routes(self)  # {} unless the push wake is on

    # Start and stop

    def run(self, *, handle_signals: bool = True) -> int:
        """Serve until SIGTERM/SIGINT (or `stopping` is set: tests run the
        daemon in a thread, where no signal handler can be installed)."""
        s = self.settings
        server = self.server = serve(self.metrics, self.health, address=s.bind_address, port=s.port, posts=self.posts)
        port = server.server_address[1]
        log.info("starting", policies=len(self.policies), source=str(self.source), files=list(self.policies.files),
                 port=port, dry_run=s.dry_run, leader_election=s.leader_election, prometheus=s.prometheus_url,
                 evaluation_interval_seconds=s.evaluation_interval_seconds)
        self.metrics.policy_files_valid.set(1)  # it would not have started otherwise
        self._publish_policies()
        self.view.start_namespaces()
        self.health.synced = self.view.synced
        synced = self.view.wait_synced(kinds_of(self.policies, self.evaluator.resolve, {}), timeout_seconds=60)
        if not synced:
            log.warning("caches not synced after 60s; not ready until they are (the API server may be "
                        "unreachable); retrying every few seconds")
        self.health.api_reachable = synced  # a reconcile that succeeds sets it too
        self.leadership.start()
        if not s.leader_election:  # it leads from the start, with the policies just read
            self._checked_term = self.leadership.term
        self.scheduler.start()
        self.scheduler.add_job(self._job(self._reconcile), IntervalTrigger(seconds=s.evaluation_interval_seconds),
                               id="reconcile", next_run_time=datetime.now(UTC))
        self.scheduler.add_job(self._job(self._wake), IntervalTrigger(seconds=s.wake_check_interval_seconds),
                               id="wake")
        # At once too: a leader elected before the scheduler ran reads the policies in its term.
        self.scheduler.add_job(self._job(self._reload), IntervalTrigger(seconds=s.policy_reload_interval_seconds),
                               id="reload", next_run_time=datetime.now(UTC))
        self.follower.schedule(self.scheduler, self._job)
        if handle_signals:  # the process's own daemon, not one in a test's thread
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: self.stopping.set())
            gc.collect()  # the synced caches out of the collector's way: a 3,000-object edge paused 0.74 s, now 0.25
            gc.freeze()
            gc.set_threshold(10_000, 20, 10)  # few young collections, fewer full ones: docs/benchmarks.md
        # In slices: a signal delivered to a worker thread runs its Python
        # handler only when the main thread next wakes.
        clocks = self.wall_clock(), time.monotonic()
        while not self.stopping.wait(0.2):
            clocks = self._clock_stepped(*clocks)
        return self.shutdown()

    def _clock_stepped(self, wall: float, monotonic: float) -> tuple[float, float]:
        """APScheduler times its runs on the wall clock: stepped back an hour
        (NTP, a VM restored), it would run no reconcile, wake check or reload
        for an hour. A step (the wall clock against the monotonic one since
        the last look) runs the interval jobs now, and on from there."""
        now_wall, now_monotonic = self.wall_clock(), time.monotonic()
        step = (now_wall - wall) - (now_monotonic - monotonic)
        if abs(step) > CLOCK_STEP_SECONDS and self.scheduler.running:
            log.warning("wall clock stepped; the scheduled jobs run now", step_seconds=round(step, 1))
            for job in self.scheduler.get_jobs():
                if isinstance(job.trigger, IntervalTrigger):
                    job.modify(next_run_time=datetime.fromtimestamp(now_wall, UTC))
        return now_wall, now_monotonic

    def shutdown(self, *, deadline_seconds: float = 25) -> int:
        log.info("stopping: finishing the writes in flight, then releasing the lease")
        # A pod has 30 s between SIGTERM and SIGKILL. If a request hangs past
        # our deadline, say what was still running and exit non-zero ourselves.
        watchdog = threading.Timer(deadline_seconds, self._forced_exit)
        watchdog.daemon = True
        watchdog.start()
        deadline = time.monotonic() + deadline_seconds - 2
        self.stopping.set()  # may_act says no from here: no new write starts
        # Not wait=True: APScheduler would hold its job-store lock while a
        # running job schedules the next edge, which needs it (a deadlock).
        self.scheduler.shutdown(wait=False)
        # The writes in flight, not the jobs: a job still reading (Prometheus
        # slow or hung) can no longer write, its every attempt fenced by
        # `stopping`, and must not hold the hand-over back.
        self.actor.quiet.wait(max(deadline - time.monotonic(), 0))
        # Refused Events are not retried: their records are on the objects, for the next leader.
        unsent = self.events.flush(timeout_seconds=max(deadline - time.monotonic(), 0.1), retrying=False)
        if unsent:
            log.warning("events not posted before shutdown", events=unsent)
        self.leadership.release()  # only now: a standby must not act on what we were writing
        with self._running_changed:  # then the jobs end, fenced, before the process does
            while self._running and (left := deadline - time.monotonic()) > 0:
                self._running_changed.wait(left)
        self.view.stop(timeout_seconds=max(min(deadline - time.monotonic(), 5), 0.1))
        self.follower.stop(timeout_seconds=max(min(deadline - time.monotonic(), 2), 0.1))
        if self.server is not None:
            self.server.shutdown()
        watchdog.cancel()
        log.info("stopped")
        return 0

    def _forced_exit(self) -> None:
        running = [thread.name for thread in threading.enumerate() if thread is not threading.current_thread()]
        log.error("shutdown did not finish in time; exiting", threads=running)
        os._exit(1)

    def _job(self, job: Callable[[], None]) -> Callable[[], None]:
        """`job`, counted while it runs, so shutdown can wait for it."""
        def run() -> None:
            with self._running_changed:
                if self.stopping.is_set():
                    return
                self._running += 1
            try:
                job()
            finally:
                with self._running_changed:
                    self._running -= 1
                    self._running_changed.notify_all()
        return run

    def _may_act(self, policy: Policy | None, term: int) -> bool:
        """Leading now (a renewal younger than the renew deadline), not
        stopping, in the term the write was decided in, with the policies read
        in this term; and `policy`, which made the decision, still in force as
        it was: a pass that began before a reload (or before this term) does
        not act on a policy the reload changed or removed. Asked right before
        every request of a write goes out, retries included."""
        leadership = self.leadership
        if self.stopping.is_set() or not leadership.is_leading() or term != leadership.term \
                or self._checked_term != leadership.term:
            return False
        return policy is None or self.policies.in_force(policy)

    def _holds_lease(self) -> None:
        """The fence of Events and the writes that follow one (the KEDA
        hand-over): only the Lease holder sends them. Not stopping: shutdown
        flushes the Events of its last writes before it hands the Lease back."""
        if not self.leadership.holds():
            raise Fenced("this replica does not hold the Lease (any more)")

    def _synced(self) -> None:
        """A cache listed again after the API server failed it: reconcile now,
        not at the next interval."""
        if self.scheduler.running and not self.stopping.is_set():
            try:
                self.scheduler.modify_job("reconcile", next_run_time=datetime.now(UTC))
            except JobLookupError:
                pass  # not added yet: it runs at once when it is

    def _leadership_changed(self, leading: bool) -> None:
        self.metrics.leader.set(1 if leading else 0)
        if leading and self.scheduler.running:
            # A new leader reads the policies now, then acts (the reload starts the reconcile).
            self.scheduler.modify_job("reload", next_run_time=datetime.now(UTC))

    # Jobs

    def _reconcile(self) -> None:
        started = time.monotonic()
        now = utc_now()
        policies = self.policies
        term = self.leadership.term
        try:
            self.post_owed_events(term)
            # What the windows decide alone, written before any signal is asked for.
            self.actor.act(first := self.evaluator.evaluate(policies, now=now, with_signals=False), now=now, term=term)
            evaluations = self.evaluator.evaluate(policies, now=now)
            self.tracker.observe(evaluations, policies)
            self.health.details["failingPolicies"] = dict(self.tracker.policy_errors)
            self.actor.act(evaluations, now=now, term=term, counted={e.workload.key for e in first})
            self.tracker.track_starts(policies, now=now, term=term)
        except KubeError as error:
            self.health.api_reachable = False
            log.error("reconcile failed", error=str(error))
            return
        finally:
            self.metrics.reconcile_seconds.labels("full").observe(time.monotonic() - started)
        self.health.api_reachable = True
        self.health.reconciled = True
        self.metrics.last_success.set(time.time())
        by, gpus = self.tracker.paused_totals(policies)
        for who in ("manual", "policy", "unknown"):
            self.metrics.paused.labels(who).set(by.get(who, 0))
        self.metrics.gpus_paused.set(gpus)
        self._schedule_edge(now)

    def post_owed_events(self, term: int) -> None:
        """Once per term, when it may act, before anything of the term writes (a write rewrites the record an
        owed Event is found by: the reconcile, the edge, the wake check, a follow pass, a push wake): the
        Events its predecessor (killed, or deposed) owed for the actions recorded on the objects. Event
        names make a repeat impossible; a failed check is retried by the next job."""
        with self._owed_lock:  # again after a write whose answer was lost: it may have landed
            again = self.actor.unsure.is_set() or self.events.owed.is_set()
            if (self._events_checked_term == term and not again) or not self._may_act(None, term):
                return
            self.actor.unsure.clear()
            self.events.owed.clear()
            try:
                posted = self.actor.post_owed_events(self.policies, now=utc_now(), namespaces=self.settings.namespaces,
                                                     ttl_seconds=self.settings.event_ttl_seconds)
            except KubeError as error:
                log.warning("owed Events not checked; the next pass retries", error=str(error))
                self.events.owed.set()
                self.actor.pauser.unlooked = True  # meanwhile a write posts the Event of a record it replaces
                return
            self._events_checked_term = term
            self.actor.pauser.unlooked = False
        if posted:
            log.info("posting the Events a previous daemon owed", events=posted)

    def _edge(self, at: datetime) -> None:
        """The window edge `at`: decided ahead of it, as of `at` (so the first write goes out as it
        passes, not after a pass over every workload), written from `at` on, never before."""
        started, term = time.monotonic(), self.leadership.term
        now = max(utc_now(), at)
        try:
            self.post_owed_events(term)
            evaluations = self.evaluator.evaluate(self.policies, now=now, with_signals=False)
            if evaluations.deferred:  # resumes a wake signal decides: asked during the lead, unknown if late
                self.tracker.observe(wakes := self.evaluator.evaluate(
                    self.policies, now=now, wake_only=True, deadline_seconds=EDGE_LEAD.total_seconds() / 2),
                    self.policies)
                evaluations += wakes
            while (ahead := (at - utc_now()).total_seconds()) > 0:
                if ahead > 2 * EDGE_LEAD.total_seconds():  # the wall clock stepped back: the edge is far again
                    self._edge_at = None  # scheduled again by the next reconcile
                    return
                started += ahead  # waiting is not the job's time
                if self.stopping.wait(ahead):
                    return
            self.actor.act(evaluations, now=now, term=term)
        except KubeError as error:
            log.error("window edge failed; the next reconcile retries", error=str(error))
        finally:
            self.metrics.reconcile_seconds.labels("edge").observe(time.monotonic() - started)
        self._schedule_edge(now)

    def _wake(self) -> None:
        started = time.monotonic()
        now = utc_now()
        term = self.leadership.term
        self.post_owed_events(term)
        evaluations = self.evaluator.evaluate(self.policies, now=now, wake_only=True)
        self.tracker.observe(evaluations, self.policies)
        self.actor.act(evaluations, now=now, term=term)
        self.tracker.track_starts(self.policies, now=now, term=term)  # cold starts measured to a wake check
        self.metrics.reconcile_seconds.labels("wake").observe(time.monotonic() - started)

    def _schedule_edge(self, now: datetime) -> None:
        """The edge job, `EDGE_LEAD` before the next edge: not again for an edge already scheduled
        (a reconcile during the lead would replace the job waiting for it, and be skipped)."""
        edge = self.evaluator.next_edge(self.policies, now)
        if edge is None or edge == self._edge_at or self.stopping.is_set():
            return
        self._edge_at = edge
        self.scheduler.add_job(self._job(lambda: self._edge(edge)), DateTrigger(run_date=edge - EDGE_LEAD),
                               id="edge", replace_existing=True, misfire_grace_time=None)

    def _reload(self) -> None:
        """Read the policies; a term won while reading (its own reload was
        skipped, this one still running) reads them again in that term, or
        the new leader would not act until the next interval."""
        while True:
            term = self.leadership.term
            self._reload_in(term)
            if self.leadership.term == term or self.stopping.is_set():
                return

    def _reload_in(self, term: int) -> None:
        try:
            version = self.source.version()
        except KubeError as error:
            if str(error) != self._unread:  # once per cause, not every interval
                log.error("cannot read the policies; the last good ones stay in force, and a new leader waits "
                          "for them", source=str(self.source), error=str(error))
            self._unread = str(error)
            return
        if self._unread is not None:
            log.info("policies readable again", source=str(self.source))
            self._unread = None
        changed = version != self._version
        self._version = version
        if changed:
            self._apply(*self.source.check())
        if changed or self._checked_term != term:
            self._checked_term = term
            self.scheduler.modify_job("reconcile", next_run_time=datetime.now(UTC))

    def _apply(self, policies: PolicySet, problems: list) -> None:
        """Put a newly read policy set in force, or report why it is not."""
        if problems:
            self.metrics.reload_errors.inc()
            self.metrics.policy_files_valid.set(0)
            self.health.details.update(policyFilesValid=False, policyProblems=[str(p) for p in problems[:20]])
            for problem in problems:
                log.error("policy file rejected; the last good policies stay in force", problem=str(problem),
                          file=problem.file, line=problem.line, field=problem.field)
            return
        self.policies = policies
        self.metrics.policy_files_valid.set(1)
        self.health.details.update(policyFilesValid=True, policyProblems=[])
        self._publish_policies()
        log.info("policies reloaded", policies=len(policies), names=[p.name for p in policies],
                 source=str(self.source))

    def _publish_policies(self) -> None:
        self.metrics.policies.set(len(self.policies))
        self.metrics.publish_policies({policy.name for policy in self.policies})
