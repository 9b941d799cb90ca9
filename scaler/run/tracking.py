"""What the daemon follows from one pass to the next: the metrics of what
each evaluation read (queries, unknown signals) and the policies failing
at run time; each start, from the first replica Ready to all of them
(recorded on the object, with the warm-up measured); the paused totals.

The evaluator decides for one instant and forgets; the actor writes; the
tracker remembers. Its own writes (start records) go out through the actor,
so they are fenced and never race a write of the same workload.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from scaler.cluster import writes
from scaler.cluster.informers import newer
from scaler.cluster.kube import Fenced, KubeError
from scaler.cluster.starts import open_start, relapsed
from scaler.cluster.workloads import NotAllReady, Workload
from scaler.cluster.writes import Outcome, Result, Write
from scaler.decide.loading import PolicySet
from scaler.run.acting import Actor
from scaler.run.evaluating import Evaluations, Evaluator, kinds_of
from scaler.run.isolating import report_failures
from scaler.signals.queries import SIGNALS

log = structlog.get_logger("scaler")


def bookkeeping(workload: Workload, *, now: datetime):
    """The write that records where `workload` is in a start, if one is due
    (see cluster/starts.py: a relapse reopens the start it belongs to; a
    scale-up since Ready is a new start)."""
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


class Tracker:
    """Follows the workloads and the evaluations over time."""

    def __init__(self, *, evaluator: Evaluator, actor: Actor, metrics=None) -> None:
        self.evaluator = evaluator
        self.actor = actor
        self.view = evaluator.view
        self.metrics = metrics
        if metrics:  # the evaluator's findings of workloads that cannot wake: scaler_wake_blocked
            evaluator.wakes.export(metrics.registry)
        #: Policies failing at run time as the last full evaluation found them, and why.
        self.policy_errors: dict[str, str] = {}
        #: When a replica of a start was first seen Ready, by (workload, start).
        self._first_ready: dict[tuple[tuple[str, str, str], datetime], datetime] = {}

    # Evaluations

    def observe(self, evaluations: Evaluations, policies: PolicySet) -> None:
        """Count an evaluation's queries; after a full one (it alone speaks
        for every policy: no flapping between passes), set the unknown-signal
        gauges and report the policies that started or stopped failing."""
        if self.metrics:
            for name, signal_name, failed in evaluations.queries:
                self.metrics.queries.labels(name, signal_name).inc()
                if failed:
                    self.metrics.query_errors.labels(name, signal_name).inc()
        if not evaluations.full:
            return
        if self.metrics:
            for policy in policies:
                for signal in SIGNALS:
                    key = (policy.name, signal.name)
                    self.metrics.unknown.labels(*key).set(evaluations.unknown.get(key, 0))
        self.policy_errors = report_failures(evaluations.failures, previous=self.policy_errors,
                                             checked=evaluations.checked, policies=policies, metrics=self.metrics)

    # Starts and warm-ups

    def track_starts(self, policies: PolicySet, *, now: datetime, term: int = 0) -> list[Result]:
        """Record on each managed object what the `starting` rule reads: a
        start someone else made (a pod not Ready, no open start recorded;
        a scale-up soon after Ready too), a relapse soon after Ready at no
        more replicas (the same start goes on), and the moment
        all replicas became Ready (with the warm-up, a `Ready` Event and
        scaler_wake_to_ready_seconds). Writes only on those changes."""
        if self.actor.dry_run:
            return []
        todo = []
        for workload in self.view.workloads(kinds_of(policies, self.evaluator.resolve, {})):
            start = open_start(workload)
            if workload.replicas > 0 and start is not None and workload.ready_replicas > 0:
                self._first_ready.setdefault((workload.key, start), now)
            if bookkeeping(workload, now=now) is not None and (
                    policy := self.evaluator.managed_by(policies, workload)):
                todo.append((workload, policy.name))
        if not todo:
            return []
        results = self.actor.each(lambda item: self._track(*item, now=now, term=term), todo)
        return [result for result in results if result is not None]

    def _track(self, workload: Workload, policy: str, *, now: datetime, term: int) -> Result | None:
        may_act = self.actor.may_act

        def fence(current: Workload) -> None:
            if not may_act(None, term):
                raise Fenced("not the leader any more, or stopping")

        if not may_act(None, term):
            return None
        with self.actor.claimed(workload.key) as mine:
            if not mine:
                return None
            try:
                fresh = self.view.latest(workload)
                workload = fresh if fresh is not None and newer(fresh, workload) else workload
                due = bookkeeping(workload, now=now)
                ready_at = self._ready_since(workload) if due is writes.record_ready else None
                nodes_at = self._nodes_ready_since(workload) if due is writes.record_ready else None

                def write_for(current: Workload) -> Write:
                    write = bookkeeping(current, now=now) or _unchanged
                    if write is writes.record_ready:  # with the part of the warm-up that was the node's
                        return writes.record_ready(current, now=now, ready_at=ready_at, node_ready_at=nodes_at)
                    return write(current, now=now, ready_at=ready_at)
                result = self.actor.pauser.apply(workload, write_for, dry_run=False, fence=fence)
            except Fenced:
                return None
            except NotAllReady as error:  # its status runs ahead of its pods: the start goes on
                log.debug("not all Ready yet", namespace=workload.namespace, workload=workload.name, why=str(error))
                return None
            except KubeError as error:
                log.warning("start not recorded", namespace=workload.namespace, workload=workload.name,
                            error=str(error))
                return None
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

    def _ready_since(self, workload: Workload) -> datetime | None:
        """When every replica became Ready, from the pods' Ready condition (one
        LIST, at the end of a start only), so a warm-up that ended while no
        daemon was looking (a failover) is measured to when it really ended.
        Raises NotAllReady when the pods say the start has not ended: a
        StatefulSet resumed while its paused pods drain counts them Ready."""
        try:
            return self.view.ready_since(workload)
        except KubeError as error:
            log.info("pods unreadable; the warm-up is measured to now", namespace=workload.namespace,
                     workload=workload.name, error=str(error))
            return None

    def _nodes_ready_since(self, workload: Workload) -> datetime | None:
        """When the new nodes this start waited for were Ready (docs/savings.md)."""
        started, placement = open_start(workload), self.actor.pauser.placement
        return placement.nodes_ready_since(workload, started=started) if started and placement else None

    def _observe_warm_up(self, workload: Workload, policy: str, start: datetime, now: datetime) -> None:
        first = self._first_ready.pop((workload.key, start), now)
        if self.metrics:
            self.metrics.wake_to_ready.labels(policy, "first").observe(max(first.timestamp() - start.timestamp(), 0))
            self.metrics.wake_to_ready.labels(policy, "all").observe(max(now.timestamp() - start.timestamp(), 0))

    # Totals

    def paused_totals(self, policies: PolicySet) -> tuple[dict[str, int], int]:
        """Paused workloads by who paused them, and the GPUs they would hold."""
        by: dict[str, int] = {}
        gpus = 0
        for workload in self.view.workloads(kinds_of(policies, self.evaluator.resolve, {})):
            record = workload.record
            if workload.replicas != 0 or (record is None and not workload.manual_pause):
                continue
            who = "manual" if workload.manual_pause else ("policy" if record and record.paused_by else "unknown")
            by[who] = by.get(who, 0) + 1
            gpus += workload.gpus((record.last_replicas if record else None) or 0)
        return by, gpus
