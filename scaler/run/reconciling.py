"""Acting on an evaluation: the writes it calls for, applied concurrently.

A bounded number of writes is in flight at once (the `concurrency` setting),
across every pass that runs (the full reconcile, a window edge, a wake
check); a workload another pass is writing is left to it. `may_act` is asked
before every write, with the policy that decided it, so a lost lease, a
shutdown or a reload that changed that policy stops new writes at once while
the ones in flight finish. Each write logs its intent before the
PATCH and its outcome after, so even a kill between the two leaves a trace.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from typing import ClassVar

import structlog

from scaler.cluster import actions, writes
from scaler.cluster.informers import newer
from scaler.cluster.kinds import WorkloadKind, resolve_kind
from scaler.cluster.kube import Conflict, Fenced, KubeError, NotFound
from scaler.cluster.pausing import Pauser
from scaler.cluster.starts import open_start, relapsed
from scaler.cluster.views import ClusterView
from scaler.cluster.workloads import Workload
from scaler.cluster.writes import Outcome, Result, Write
from scaler.decide.decisions import POLICY_PAUSE_PREFIX, Action, Code
from scaler.decide.loading import PolicySet
from scaler.decide.policies import Policy
from scaler.decide.precedence import decide
from scaler.decide.reverts import HandsOff, advice, revert_record, reverts_of
from scaler.decide.times import utc_now
from scaler.decide.windows import next_edge
from scaler.run.evaluating import Evaluation, Evaluator, kinds_of
from scaler.signals.prometheus import Prometheus

log = structlog.get_logger("scaler")


def bookkeeping(workload: Workload, *, now: datetime):
    """The write that records where `workload` is in a start, if one is due
    (see cluster/starts.py: a relapse reopens the start it belongs to)."""
    if workload.replicas == 0:
        return None
    loading = workload.ready_replicas < workload.replicas
    start = open_start(workload)
    if loading and start is None:
        return writes.reopen_start if relapsed(workload, now=now) else writes.record_start
    if not loading and start is not None:
        return writes.record_ready
    return None


def _unchanged(current: Workload, *, now: datetime, ready_at: datetime | None = None) -> Write:
    return Write(None, Outcome.UNCHANGED, current.replicas, current.replicas, 0, "nothing to record")


_LABELS = {Outcome.CHANGED: "success", Outcome.WOULD_CHANGE: "dry_run", Outcome.FAILED: "failed",
           Outcome.SKIPPED: "skipped", Outcome.UNCHANGED: "skipped"}


class Reconciler(Evaluator):
    """Evaluate, then act on what changed."""

    def __init__(self, *, prometheus: Prometheus, view: ClusterView, pauser: Pauser,
                 excluded_namespaces: Iterable[str], dry_run: bool, metrics=None,
                 may_act: Callable[[Policy | None, int], bool] = lambda policy, term: True, concurrency: int = 16,
                 signal_deadline_seconds: float | None = None,
                 resolve: Callable[[str], WorkloadKind] = resolve_kind, hands_off: HandsOff = HandsOff(),
                 clock: Callable[[], datetime] = utc_now) -> None:
        """`may_act(policy, term)`: whether a write decided in leadership
        term `term` by `policy` (None: bookkeeping) may go out now."""
        super().__init__(prometheus=prometheus, view=view, excluded_namespaces=excluded_namespaces,
                         metrics=metrics, signal_deadline_seconds=signal_deadline_seconds, resolve=resolve,
                         gitops_managers=hands_off.gitops_managers)
        self.pauser = pauser
        self.dry_run = dry_run
        self.may_act = may_act
        self.hands_off = hands_off
        self.clock = clock
        self._writers = ThreadPoolExecutor(concurrency, thread_name_prefix="write")
        self._in_flight: set[tuple[str, str, str]] = set()
        self._in_flight_lock = threading.Lock()
        #: Set when a write's answer was lost (no answer, a 5xx): it may have landed, its Event owed.
        self.unsure = threading.Event()
        self._last_logged: dict[tuple[str, str, str], tuple[str, str]] = {}
        #: When a replica of a start was first seen Ready, by (workload, start).
        self._first_ready: dict[tuple[tuple[str, str, str], datetime], datetime] = {}

    def act(self, evaluations: Sequence[Evaluation], *, now: datetime, term: int = 0) -> list[Result]:
        """Count and log every decision; write the changes, concurrently.
        `term`: the leadership term the evaluations were made in."""
        todo = []
        for evaluation in evaluations:
            self._account(evaluation)
            if evaluation.decision.writes:
                todo.append(evaluation)
        if not todo:
            return []
        refused = threading.Event()
        results = self._writers.map(lambda evaluation: self._write(evaluation, now=now, term=term,
                                                                   refused=refused), todo)
        done = [result for result in results if result is not None]
        if refused.is_set():
            log.info("not acting: not the leader, stopping, or its policies not read in this term or changed since",
                     left=len(todo) - len(done))
        return done

    def writing(self) -> int:
        """Writes in flight now (the Event sink yields to them)."""
        with self._in_flight_lock:
            return len(self._in_flight)

    def fence(self, evaluation: Evaluation, term: int) -> Callable[[Workload], None]:
        """What every attempt of `evaluation`'s write is asked right before it
        goes out: may this term still act for its policy, and does the policy
        still decide the same (action, size, reason) for the object as now
        read, at this moment? A window that ended while the write waited
        behind throttling, or an object someone (or our own last write)
        changed meanwhile, drops the write; the next pass decides afresh."""
        def check(current: Workload) -> None:
            if not self.dry_run and not self.may_act(evaluation.policy, term):
                raise Fenced("not the leader any more, stopping, or its policy changed")
            if evaluation.policy is None:
                return
            again = decide(policy=evaluation.policy, workload=self.state_of(current), signals=evaluation.signals,
                           now=self.clock())
            was = evaluation.decision
            if (again.action, again.replicas, again.reason_code) != (was.action, was.replicas, was.reason_code):
                raise Fenced(f"no longer wanted: now {again.action.value} ({again.reason_code}): {again.reason}")
        return check

    def _write(self, evaluation: Evaluation, *, now: datetime, term: int, refused: threading.Event) -> Result | None:
        if not self.dry_run and not self.may_act(evaluation.policy, term):
            refused.set()
            return None
        key = evaluation.workload.key
        with self._in_flight_lock:
            if key in self._in_flight:
                return None  # another pass is writing it; the next evaluation sees the outcome
            self._in_flight.add(key)
        try:
            # Start from the object as the cache has it now (a write that just
            # landed, by us or anyone): never from what this pass read earlier.
            fresh = self.view.latest(evaluation.workload)
            if fresh is not None and newer(fresh, evaluation.workload):
                evaluation = replace(evaluation, workload=fresh)
            return self._apply(evaluation, now=now, term=term)
        finally:
            with self._in_flight_lock:
                self._in_flight.discard(key)

    def _apply(self, evaluation: Evaluation, *, now: datetime, term: int) -> Result:
        """Send the write the decision calls for, fenced before every attempt:
        a `writing` line before it, the outcome after, with the decision's
        reason and code. A hold that writes has a write of its own (`HOLD_WRITES`)."""
        workload, decision = evaluation.workload, evaluation.decision
        fence = self.fence(evaluation, term)
        fields = dict(namespace=workload.namespace, workload=workload.name, kind=workload.kind.name,
                      policy=decision.policy, action=decision.action.value, reason=decision.reason,
                      reason_code=str(decision.reason_code), replicas_before=workload.replicas,
                      replicas_after=decision.replicas, gpus=evaluation.gpus, dry_run=self.dry_run)
        if not self.dry_run:
            log.info("writing", **fields)
        if not decision.changes:
            return self.HOLD_WRITES[decision.reason_code](self, evaluation, fields, now=now, fence=fence)
        result, label = self._sent(workload, lambda: self._change(evaluation, fence))
        self.view.took(result, workload)
        if self.metrics:
            self.metrics.actions.labels(decision.action.value, label).inc()
        fields["result"] = result.outcome.value
        if result.outcome is Outcome.FAILED:
            log.error("decision", error=result.reason, **fields)
        else:
            log.info("decision", **({"note": result.reason} if result.outcome is not Outcome.CHANGED
                                    and not self.dry_run else {}), **fields)
        return result

    def _failed(self, workload: Workload, error: KubeError) -> Result:
        """A write that failed; without an answer (or with a 5xx) it may still
        have landed, with its action record: `unsure` asks for owed Events again."""
        if error.status is None or error.status >= 500:
            self.unsure.set()
        return Result(workload.kind.name, workload.namespace, workload.name, Outcome.FAILED, str(error))

    def _change(self, evaluation: Evaluation, fence: Callable[[Workload], None]) -> Result:
        """A pause, a resume (to the size decided) or a scale-up."""
        workload, decision = evaluation.workload, evaluation.decision
        by, reason = POLICY_PAUSE_PREFIX + str(decision.policy), decision.reason
        if decision.action is Action.PAUSE:
            return self.pauser.pause(workload, by=by, reason=reason, cause=str(decision.reason_code),
                                     dry_run=self.dry_run, fence=fence)
        if decision.action is Action.RESUME:
            return self.pauser.resume(workload, by=by, reason=reason, replicas=decision.replicas,
                                      dry_run=self.dry_run, fence=fence)
        return self.pauser.scale_up(workload, replicas=decision.replicas, by=by, reason=reason,
                                    dry_run=self.dry_run, fence=fence)

    def _sent(self, workload: Workload, send: Callable[[], Result]) -> tuple[Result, str]:
        """`send()`'s result, and its label in scaler_actions_total; a write
        fenced off, gone or refused is a result too."""
        def row(outcome: Outcome, why: str) -> Result:
            return Result(workload.kind.name, workload.namespace, workload.name, outcome, why)
        try:
            result = send()
        except Fenced as why:
            return row(Outcome.SKIPPED, f"not sent: {why}"), "dropped"
        except NotFound as error:
            return row(Outcome.SKIPPED, str(error)), "gone"
        except KubeError as error:
            return self._failed(workload, error), "conflict" if isinstance(error, Conflict) else "failed"
        return result, _LABELS[result.outcome]

    def _hands_off(self, evaluation: Evaluation, fields: dict, *, now: datetime,
                   fence: Callable[[Workload], None]) -> Result:
        """A person set the size of a workload we had paused: drop our record
        (the person wins) and keep our hands off until the policy's next
        window edge, or `hands_off.person_seconds` without one."""
        workload, policy = evaluation.workload, evaluation.policy
        until = now + timedelta(seconds=self.hands_off.person_seconds)
        if policy is not None and policy.schedule is not None:
            until = next_edge(policy.schedule.compiled, now) or until
        result, _ = self._sent(workload, lambda: self.pauser.hands_off(
            workload, by=POLICY_PAUSE_PREFIX + str(evaluation.decision.policy), reason=evaluation.decision.reason,
            until=until, dry_run=self.dry_run, fence=fence))
        self.view.took(result, workload)
        log.info("human override", **fields, result=result.outcome.value, note=result.reason,
                 changed_by=workload.size_writer, override_until=until.isoformat())
        return result

    def _revert(self, evaluation: Evaluation, fields: dict, *, now: datetime,
                fence: Callable[[Workload], None]) -> Result:
        """A GitOps controller set the size back after our pause: record it on
        the object (restarts keep the back-off), report the first in a row
        (a Warning Event and line), count each, back off."""
        workload, h = evaluation.workload, self.hands_off
        manager = workload.size_writer or "a GitOps controller"
        reverts = reverts_of(workload.annotations) + 1
        record, until = revert_record(manager=manager, reverts=reverts, now=now, base_seconds=h.backoff_seconds,
                                      max_seconds=h.backoff_max_seconds)
        result, _ = self._sent(workload, lambda: self.pauser.reverted(
            workload, reason=evaluation.decision.reason, record=record, first=reverts == 1, dry_run=self.dry_run,
            fence=fence))
        self.view.took(result, workload)
        if self.metrics and (result.written is not None or result.outcome is Outcome.WOULD_CHANGE):
            self.metrics.pause_reverts.labels(manager).inc()  # recorded (or would be): not dropped, not failed
        report = log.warning if reverts == 1 else log.info
        report("pause reverted", **fields, result=result.outcome.value, note=result.reason, reverted_by=manager,
               reverts=reverts, backoff_until=until.isoformat(), advice=advice(workload.kind.size_field))
        return result

    #: The write of each hold that writes (`precedence.WRITES_WHILE_HOLDING`), by its reason code.
    HOLD_WRITES: ClassVar[Mapping[Code, Callable[..., Result]]] = {Code.HUMAN_OVERRIDE: _hands_off,
                                                                   Code.GITOPS_REVERT: _revert}

    def _account(self, evaluation: Evaluation) -> None:
        """Count every decision; log a hold only when it differs from the last
        one for that workload (a line per workload per tick is noise)."""
        decision = evaluation.decision
        if self.metrics:
            self.metrics.decisions.labels(decision.action.value, str(decision.reason_code)).inc()
        if decision.changes:
            return
        w = evaluation.workload
        key = w.key
        summary = (decision.action.value, str(decision.reason_code))
        if self._last_logged.get(key) != summary:
            self._last_logged[key] = summary
            log.info("decision", namespace=w.namespace, workload=w.name, kind=w.kind.name, policy=decision.policy,
                     action=decision.action.value, reason=decision.reason, reason_code=str(decision.reason_code),
                     replicas_before=w.replicas, replicas_after=decision.replicas, dry_run=self.dry_run)

    # Starts and warm-ups

    def track_starts(self, policies: PolicySet, *, now: datetime, term: int = 0) -> list[Result]:
        """Record on each managed object what the `starting` rule reads: a
        start someone else made (a pod not Ready, no open start recorded),
        a relapse soon after Ready (the same start goes on), and the moment
        all replicas became Ready (with the warm-up, a `Ready` Event and
        scaler_wake_to_ready_seconds). Writes only on those changes."""
        if self.dry_run:
            return []
        todo = []
        for workload in self.view.workloads(kinds_of(policies, self.resolve, {})):
            start = open_start(workload)
            if workload.replicas > 0 and start is not None and workload.ready_replicas > 0:
                self._first_ready.setdefault((workload.key, start), now)
            if bookkeeping(workload, now=now) is not None and (policy := self.managed_by(policies, workload)):
                todo.append((workload, policy.name))
        if not todo:
            return []
        results = self._writers.map(lambda item: self._track(*item, now=now, term=term), todo)
        return [result for result in results if result is not None]

    def _track(self, workload: Workload, policy: str, *, now: datetime, term: int) -> Result | None:
        def fence(current: Workload) -> None:
            if not self.may_act(None, term):
                raise Fenced("not the leader any more, or stopping")

        if not self.may_act(None, term):
            return None
        with self._in_flight_lock:
            if workload.key in self._in_flight:
                return None
            self._in_flight.add(workload.key)
        try:
            fresh = self.view.latest(workload)
            workload = fresh if fresh is not None and newer(fresh, workload) else workload
            due = bookkeeping(workload, now=now)
            ready_at = self._ready_since(workload) if due is writes.record_ready else None
            nodes_at = self._nodes_ready_since(workload) if due is writes.record_ready else None

            def write_for(current: Workload) -> writes.Write:
                write = bookkeeping(current, now=now) or _unchanged
                if write is writes.record_ready:
                    return writes.record_ready(current, now=now, ready_at=ready_at, node_ready_at=nodes_at)
                return write(current, now=now, ready_at=ready_at)
            result = self.pauser.apply(workload, write_for, dry_run=False, fence=fence)
        except Fenced:
            return None
        except KubeError as error:
            log.warning("start not recorded", namespace=workload.namespace, workload=workload.name, error=str(error))
            return None
        finally:
            with self._in_flight_lock:
                self._in_flight.discard(workload.key)
        self.view.took(result, workload)
        if result.outcome is Outcome.UNCHANGED:
            return result
        start = open_start(workload)
        if due is writes.record_ready and start is not None:
            self._observe_warm_up(workload, policy, start, now)
        what = {writes.record_start: "start", writes.record_ready: "ready", writes.reopen_start: "relapse"}
        log.info(what.get(due, "start"), namespace=workload.namespace, workload=workload.name,
                 kind=workload.kind.name, policy=policy, note=result.reason)
        return result

    def post_owed_events(self, policies: PolicySet, *, now: datetime, ttl_seconds: float,
                         namespaces: Sequence[str] = ()) -> int:
        """Post the Events owed for actions recorded on the objects (by a
        daemon killed or deposed before it posted them): one LIST of scaler's
        Events per scope, then only what is missing."""
        events = self.pauser.events
        if self.dry_run or events is None:
            return 0
        posted: set[tuple[str, str]] = set()
        scopes: list[str | None] = [*namespaces] or [None]  # None: every namespace
        for namespace in scopes:
            items, _ = self.pauser.kube.list(actions.EVENTS, namespace, label_selector="=".join(actions.MANAGED_BY))
            posted |= {(item["metadata"].get("namespace", ""), item["metadata"]["name"]) for item in items}
        workloads = self.view.workloads(kinds_of(policies, self.resolve, {}))
        owed = actions.owed(workloads, posted, now=now, ttl_seconds=ttl_seconds)
        for workload, record in owed:
            events.post(actions.event(workload, record, component=self.pauser.component,
                                      instance=self.pauser.instance,
                                      note="posted by the next daemon: the one that acted stopped before it could"))
        return len(owed)

    def _ready_since(self, workload: Workload) -> datetime | None:
        """When every replica became Ready, from the pods' Ready condition (one
        LIST, at the end of a start only), so a warm-up that ended while no
        daemon was looking (a failover) is measured to when it really ended."""
        try:
            return self.view.ready_since(workload)
        except KubeError as error:
            log.info("pods unreadable; the warm-up is measured to now", namespace=workload.namespace,
                     workload=workload.name, error=str(error))
            return None

    def _nodes_ready_since(self, workload: Workload) -> datetime | None:
        """When the new nodes this start waited for were Ready (docs/savings.md)."""
        started, placement = open_start(workload), self.pauser.placement
        return placement.nodes_ready_since(workload, started=started) if started and placement else None

    def _observe_warm_up(self, workload: Workload, policy: str, start: datetime, now: datetime) -> None:
        first = self._first_ready.pop((workload.key, start), now)
        if self.metrics:
            self.metrics.wake_to_ready.labels(policy, "first").observe(max(first.timestamp() - start.timestamp(), 0))
            self.metrics.wake_to_ready.labels(policy, "all").observe(max(now.timestamp() - start.timestamp(), 0))

    def paused_totals(self, policies: PolicySet) -> tuple[dict[str, int], int]:
        """Paused workloads by who paused them, and the GPUs they would hold."""
        by: dict[str, int] = {}
        gpus = 0
        for workload in self.view.workloads(kinds_of(policies, self.resolve, {})):
            record = workload.record
            if workload.replicas != 0 or (record is None and not workload.manual_pause):
                continue
            who = "manual" if workload.manual_pause else ("policy" if record and record.paused_by else "unknown")
            by[who] = by.get(who, 0) + 1
            gpus += workload.gpus((record.last_replicas if record else None) or 0)
        return by, gpus
