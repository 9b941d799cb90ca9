"""Acting on an evaluation: the writes it calls for, applied concurrently,
each guarded; and the Events a previous daemon owed. The evaluator decides
(run/evaluating.py), the actor writes; the daemon composes them.

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
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import ClassVar, TypeVar

import structlog

from scaler.cluster.actions import OWED_NOTE
from scaler.cluster.informers import newer
from scaler.cluster.kube import Fenced, KubeError, NotFound
from scaler.cluster.pausing import Pauser
from scaler.cluster.workloads import Workload
from scaler.cluster.writes import Outcome, Result
from scaler.decide.decisions import MANUAL, POLICY_PAUSE_PREFIX, Action, Code
from scaler.decide.loading import PolicySet
from scaler.decide.policies import Policy
from scaler.decide.precedence import decide
from scaler.decide.reverts import HandsOff, advice, revert_record, reverts_of
from scaler.decide.times import utc_now
from scaler.decide.windows import next_edge
from scaler.run.evaluating import Evaluation, Evaluator, kinds_of
from scaler.run.isolating import isolated
from scaler.run.observability import ACTION_RESULTS

log = structlog.get_logger("scaler")
T = TypeVar("T")
R = TypeVar("R")



class Actor:
    """Turns decisions into guarded writes: fenced before every attempt, one
    write per workload at a time, hands-off and revert records for the holds
    that write, the owed Events of a previous daemon."""

    def __init__(self, *, evaluator: Evaluator, pauser: Pauser, dry_run: bool, metrics=None,
                 may_act: Callable[[Policy | None, int], bool] = lambda policy, term: True, concurrency: int = 32,
                 hands_off: HandsOff = HandsOff(), clock: Callable[[], datetime] = utc_now) -> None:
        """`may_act(policy, term)`: whether a write decided in leadership
        term `term` by `policy` (None: bookkeeping) may go out now.
        `evaluator`: how the fence reads an object as the decision did (its
        state, who set its size) and where the cluster view is. `clock`:
        the instant the fence re-decides at, when the write goes out."""
        self.evaluator = evaluator
        self.view = evaluator.view
        self.metrics = metrics
        self.pauser = pauser
        self.dry_run = dry_run
        self.may_act = may_act
        self.hands_off = hands_off
        self.clock = clock
        self._writers = ThreadPoolExecutor(concurrency, thread_name_prefix="write")
        self._in_flight: set[tuple[str, str, str]] = set()
        self._in_flight_lock = threading.Lock()
        self._in_flight_changed = threading.Condition(self._in_flight_lock)
        #: Set while no write is in flight (Events wait for it: cluster/eventing.EventSink).
        self.quiet = threading.Event()
        self.quiet.set()
        #: Set when a write's answer was lost (no answer, a 5xx): it may have landed, its Event owed.
        self.unsure = threading.Event()
        #: The workloads whose last write's answer was lost: the next write to
        #: one starts from a GET, not the cache, which may not have seen it land.
        self._unsure_keys: set[tuple[str, str, str]] = set()
        self._last_logged: dict[tuple[str, str, str], tuple[str, str]] = {}

    def act(self, evaluations: Sequence[Evaluation], *, now: datetime, term: int = 0,
            counted: Collection[tuple[str, str, str]] = ()) -> list[Result]:
        """Count and log every decision; write the changes, concurrently.
        `term`: the leadership term the evaluations were made in. `counted`:
        workloads whose decision this pass already counted (a reconcile's
        schedule-only writes): one decision per workload per pass."""
        if not self.dry_run and self.pauser.owes_hand_overs and self.may_act(None, term):  # before its writes
            self._mend_hand_overs([evaluation.workload for evaluation in evaluations])
        todo = []
        for evaluation in evaluations:
            if evaluation.workload.key not in counted:
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

    @contextmanager
    def claimed(self, key: tuple[str, str, str]) -> Iterator[bool]:
        """Whether this pass may write the workload `key` now: not while
        another pass (a reconcile, an edge, a wake check) writes it."""
        with self._in_flight_lock:
            free = key not in self._in_flight
            if free:
                self._in_flight.add(key)
                self.quiet.clear()
        if not free:
            yield False
            return
        try:
            yield True
        finally:
            with self._in_flight_lock:
                self._in_flight.discard(key)
                self._in_flight_changed.notify_all()
                if not self._in_flight:
                    self.quiet.set()

    def written(self, key: tuple[str, str, str], *, timeout_seconds: float) -> bool:
        """Wait until no pass is writing the workload `key` (at most `timeout_seconds`): a push
        decides from what that write left, not from the object as it was before it."""
        deadline = time.monotonic() + timeout_seconds
        with self._in_flight_changed:
            while key in self._in_flight:
                if (left := deadline - time.monotonic()) <= 0:
                    return False
                self._in_flight_changed.wait(left)
        return True

    def each(self, write: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        """`write` of each item, on the actor's writers (`concurrency` at once, across every pass)."""
        return self._writers.map(write, items)

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
            again = decide(policy=evaluation.policy, workload=self.evaluator.state_of(current),
                           signals=evaluation.signals, now=self.clock())
            was = evaluation.decision
            if (again.action, again.replicas, again.reason_code) != (was.action, was.replicas, was.reason_code):
                raise Fenced(f"no longer wanted: now {again.action.value} ({again.reason_code}): {again.reason}")
        return check

    def _write(self, evaluation: Evaluation, *, now: datetime, term: int, refused: threading.Event) -> Result | None:
        if not self.dry_run and not self.may_act(evaluation.policy, term):
            refused.set()
            return None
        with self.claimed(evaluation.workload.key) as mine:
            if not mine:
                return None  # another pass is writing it; the next evaluation sees the outcome
            # Start from the object as the cache has it now (a write that just
            # landed, by us or anyone): never from what this pass read earlier.
            fresh = self._unsure_read(evaluation.workload) or self.view.latest(evaluation.workload)
            if fresh is not None and newer(fresh, evaluation.workload):
                evaluation = replace(evaluation, workload=fresh)
            return self._apply(evaluation, now=now, term=term)

    def _unsure_read(self, workload: Workload) -> Workload | None:
        """The object read from the API server if our last write to it may
        have landed unseen (its answer was lost), taken into the cache; else
        None: the cache will do."""
        with self._in_flight_lock:
            if workload.key not in self._unsure_keys:
                return None
            self._unsure_keys.discard(workload.key)
        try:
            fresh = self.pauser.read(workload)
        except KubeError:
            return None  # the write's own guards still hold; its retries read again
        self.view.saw(fresh)  # and the next pass decides from it too, even if the watch is behind
        return fresh

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
        result = self._sent(workload, lambda: self._change(evaluation, fence))
        self.view.took(result, workload)
        if self.metrics:  # the decision line's `result`, spelled as the metric spells it
            self.metrics.actions.labels(decision.action.value, ACTION_RESULTS[result.outcome]).inc()
        fields["result"] = result.outcome.value
        for warning in result.warnings:  # the write landed; what follows it did not (all of it)
            log.warning("write incomplete", warning=warning, **fields)
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
            with self._in_flight_lock:
                self._unsure_keys.add(workload.key)
        return Result(workload.kind.name, workload.namespace, workload.name, Outcome.FAILED, str(error))

    def _change(self, evaluation: Evaluation, fence: Callable[[Workload], None]) -> Result:
        """A pause, a resume (to the size decided) or a scale-up."""
        workload, decision = evaluation.workload, evaluation.decision
        by, reason = POLICY_PAUSE_PREFIX + str(decision.policy), decision.reason
        if decision.reason_code is Code.MANUAL_PAUSE:  # the annotation a person set: their pause, not the policy's
            by = MANUAL
        if decision.action is Action.PAUSE:
            return self.pauser.pause(workload, by=by, reason=reason, cause=str(decision.reason_code),
                                     dry_run=self.dry_run, fence=fence)
        if decision.action is Action.RESUME:
            return self.pauser.resume(workload, by=by, reason=reason, replicas=decision.replicas,
                                      dry_run=self.dry_run, fence=fence)
        return self.pauser.scale_up(workload, replicas=decision.replicas, by=by, reason=reason,
                                    dry_run=self.dry_run, fence=fence)

    def _sent(self, workload: Workload, send: Callable[[], Result]) -> Result:
        """`send()`'s result; a write fenced off, gone or refused is a result
        too (skipped, skipped, failed: a conflict that outlasted the retries
        is a failure)."""
        def row(outcome: Outcome, why: str) -> Result:
            return Result(workload.kind.name, workload.namespace, workload.name, outcome, why)
        try:
            return send()
        except Fenced as why:
            return row(Outcome.SKIPPED, f"not sent: {why}")
        except NotFound as error:
            return row(Outcome.SKIPPED, str(error))
        except KubeError as error:
            return self._failed(workload, error)

    def _hands_off(self, evaluation: Evaluation, fields: dict, *, now: datetime,
                   fence: Callable[[Workload], None]) -> Result:
        """A person set the size of a workload we had paused: drop our record
        (the person wins) and keep our hands off until the policy's next
        window edge, or `hands_off.person_seconds` without one."""
        workload, policy = evaluation.workload, evaluation.policy
        until = now + timedelta(seconds=self.hands_off.person_seconds)
        if policy is not None and policy.schedule is not None:
            edge: datetime | None = isolated({}, policy, partial(next_edge, policy.schedule.compiled, now))
            until = edge or until
        result = self._sent(workload, lambda: self.pauser.hands_off(
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
        result = self._sent(workload, lambda: self.pauser.reverted(
            workload, reason=evaluation.decision.reason, record=record, first=reverts == 1, dry_run=self.dry_run,
            fence=fence))
        self.view.took(result, workload)
        if self.metrics and (result.written is not None or (self.dry_run and result.outcome is Outcome.SKIPPED)):
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

    def post_owed_events(self, policies: PolicySet, *, now: datetime, ttl_seconds: float,
                         namespaces: Sequence[str] = ()) -> int:
        """Post the Events owed for actions recorded on the objects (by a
        daemon killed or deposed before it posted them): one LIST of scaler's
        Events per scope, then only what is missing."""
        if self.dry_run or self.pauser.events is None:
            return 0
        workloads = self.view.workloads(kinds_of(policies, self.evaluator.resolve, {}))
        self._mend_hand_overs(workloads, every_pause=True)  # and the KEDA hand-overs it may have left unmade
        return self.pauser.post_owed(workloads, namespaces=[*namespaces] or [None], now=now, ttl_seconds=ttl_seconds,
                                     note=OWED_NOTE)

    def _mend_hand_overs(self, workloads: Sequence[Workload], *, every_pause: bool = False) -> None:
        for problem in self.pauser.mend_hand_overs(workloads, every_pause=every_pause):
            log.warning("KEDA hand-over not made; the next pass tries again", problem=problem)
