"""One evaluation of every policy against the cluster and Prometheus: a
decision per managed workload. Shared by the daemon and `scaler plan`.

Level-triggered: each evaluation derives the desired state afresh from the
policies, the workloads as they are, and the signals as they are, so a missed
tick or a restart heals on the next one.

Signals are fetched concurrently, one query per policy signal, under one
deadline per evaluation: a late answer is unknown for that evaluation (and
unknown never scales down). A schedule evaluation fetches none at all, so a
window edge never waits for Prometheus. When running workloads of a policy
are held because the idle query left them unknown, one range query for that
policy, under the same deadline, finds where their signal was not seen
(`signals.gaps`), for the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from time import monotonic

import structlog

from scaler.cluster.discovery import KindError
from scaler.cluster.kinds import WorkloadKind, resolve_kind
from scaler.cluster.kube import KubeError
from scaler.cluster.starts import warm_ups
from scaler.cluster.views import ClusterView
from scaler.cluster.workloads import Workload
from scaler.decide.annotations import PAUSE_CAUSE, READY_AT, STARTED_AT
from scaler.decide.decisions import (
    Code,
    Decision,
    Signals,
    WorkloadState,
    is_excluded,
    select_policy,
)
from scaler.decide.loading import PolicySet
from scaler.decide.policies import Policy
from scaler.decide.precedence import SCHEDULE_CODES, decide
from scaler.decide.reverts import DEFAULT_GITOPS_MANAGERS, is_gitops
from scaler.decide.times import parse_time, utc_now
from scaler.decide.wake_health import absent_reading
from scaler.run.isolating import isolated, report_failures
from scaler.run.wake_watch import WakeWatch
from scaler.signals.gaps import IdleSteps, explain
from scaler.signals.prometheus import Prometheus
from scaler.signals.queries import SignalQuery, idle_query, queue_query, seen_query
from scaler.signals.results import Vector

log = structlog.get_logger("scaler")


def kinds_of(policies: Iterable[Policy], resolve: Callable[[str], WorkloadKind] = resolve_kind,
             errors: dict[str, str] | None = None) -> list[WorkloadKind]:
    """Each kind the policies target, once, however each policy spelled it.
    A kind that cannot be resolved (a CRD without /scale) is left out and
    recorded in `errors` against each policy naming it."""
    kinds: dict[str, WorkloadKind] = {}
    for policy in policies:
        for name in policy.targets.kinds:
            try:
                kind = resolve(name)
            except (KindError, KubeError) as error:
                if errors is not None:
                    errors.setdefault(policy.name, str(error))
                continue
            kinds.setdefault(kind.key, kind)
    return list(kinds.values())


def queries_of(policy: Policy, *, wake_only: bool = False) -> list[tuple[str, SignalQuery]]:
    """("idle" | "queue", the query) for each signal of `policy`: one query
    per policy signal, answered for all its workloads at once."""
    queries = []
    if policy.idle is not None and not wake_only:
        queries.append(("idle", idle_query(
            policy.idle.query, duration_seconds=policy.idle.duration_seconds,
            namespace_label=policy.idle.namespace_label, workload_label=policy.idle.workload_label)))
    if policy.wake is not None:
        queries.append(("queue", queue_query(
            policy.wake.query, namespace_label=policy.wake.namespace_label,
            workload_label=policy.wake.workload_label)))
    return queries


@dataclass
class Evaluation:
    """One workload's decision in one evaluation."""

    workload: Workload
    state: WorkloadState
    policy: Policy | None
    decision: Decision
    #: What the decision read (a write re-decides with them when it goes out).
    signals: Signals = field(default_factory=Signals)

    @property
    def gpus(self) -> int:
        """GPUs the decision frees (pause) or claims (resume, scale-up)."""
        before, after = self.workload.replicas, self.decision.replicas
        return self.workload.gpus_per_replica() * abs(after - before) if self.decision.changes else 0

    def as_dict(self) -> dict:
        d = self.decision
        return {"kind": self.workload.kind.name, "namespace": self.workload.namespace,
                "name": self.workload.name, "policy": d.policy, "action": d.action.value,
                "reasonCode": str(d.reason_code), "reason": d.reason,
                "replicas": self.workload.replicas, "desired": d.replicas, "gpus": self.gpus}


Matched = tuple[Workload, WorkloadState, Policy]


class Evaluator:
    """Decides for every workload the policies target."""

    def __init__(self, *, prometheus: Prometheus, view: ClusterView, excluded_namespaces: Iterable[str],
                 metrics=None, signal_deadline_seconds: float | None = None, query_workers: int = 8,
                 resolve: Callable[[str], WorkloadKind] = resolve_kind,
                 gitops_managers: Iterable[str] = DEFAULT_GITOPS_MANAGERS) -> None:
        """`gitops_managers`: the managedFields managers that are GitOps
        controllers (their setting a size back is a revert, not a person's edit)."""
        self.prometheus = prometheus
        self.view = view
        self.excluded_namespaces = frozenset(excluded_namespaces)
        self.metrics = metrics
        self.signal_deadline_seconds = signal_deadline_seconds or prometheus.timeout_seconds
        self._queries = ThreadPoolExecutor(query_workers, thread_name_prefix="query")
        self.resolve = resolve
        self.gitops_managers = tuple(gitops_managers)
        #: Read the signals as of this instant instead of now (`scaler plan --at` a past time).
        self.signals_at: datetime | None = None
        #: Query errors of the last evaluation (for `scaler plan` to show).
        self.signal_errors: list[str] = []
        #: Policies that failed at run time in the last full evaluation, and why: skipped, the others go on.
        self.policy_errors: dict[str, str] = {}
        #: Workloads at zero their wake signal cannot wake (each full evaluation).
        self.wakes = WakeWatch(prometheus=prometheus, submit=self._queries.submit,
                               registry=metrics.registry if metrics else None)

    # Reading the world

    def state_of(self, workload: Workload) -> WorkloadState:
        """What a decision needs, read from the object alone (its annotations
        carry the times a start needs, so restarts and failovers keep them),
        and who set its size: every decision (the evaluation's, the fence's
        before each write) reads the object through here, so all of them
        tell a GitOps revert from a person's edit alike. Who set the size is
        read only where it matters (running, with a pause record on it): at
        ten thousand workloads a tick, walking managedFields is not free."""
        record, annotations = workload.record, workload.annotations
        writer = workload.size_writer if record is not None and workload.replicas > 0 else None
        return WorkloadState(
            kind=workload.kind.key, namespace=workload.namespace, name=workload.name,
            labels=workload.labels, annotations=annotations, replicas=workload.replicas,
            ready_replicas=workload.ready_replicas, last_replicas=record.last_replicas if record else None,
            paused_by=record.paused_by if record else None, manual_pause=workload.manual_pause,
            pause_cause=annotations.get(PAUSE_CAUSE), started_at=parse_time(annotations.get(STARTED_AT)),
            ready_at=parse_time(annotations.get(READY_AT)), warm_ups=tuple(warm_ups(annotations)),
            size_writer=writer, size_writer_gitops=is_gitops(writer, self.gitops_managers),
            size_field=workload.kind.size_field)

    def managed_by(self, policies: PolicySet, workload: Workload) -> Policy | None:
        """The one policy managing `workload`, or None (excluded, unmatched, conflict)."""
        state = self.state_of(workload)
        if is_excluded(state, excluded_namespaces=self.excluded_namespaces):
            return None
        chosen = select_policy(policies, state, namespace_labels=self.view.namespace_labels(state.namespace))
        return chosen if isinstance(chosen, Policy) else None

    def match(self, policies: PolicySet, candidates: list[Policy], *, now: datetime, wake_only: bool,
              errors: dict[str, str]) -> tuple[list[Matched], list[Evaluation]]:
        """(workload, state, policy) for each managed workload, and the conflicts."""
        matched: list[Matched] = []
        conflicts: list[Evaluation] = []
        for workload in self.view.workloads(kinds_of(candidates, self.resolve, errors)):
            if wake_only and workload.replicas != 0:
                continue
            state = self.state_of(workload)
            if is_excluded(state, excluded_namespaces=self.excluded_namespaces):
                continue
            chosen = select_policy(policies, state, namespace_labels=self.view.namespace_labels(state.namespace))
            if chosen is None:
                continue
            if not isinstance(chosen, Policy):
                conflicts.append(Evaluation(workload, state, None,
                                            decide(policy=chosen, workload=state, signals=Signals(), now=now)))
            elif (not wake_only or chosen.wake is not None) and chosen.name not in errors:
                matched.append((workload, state, chosen))
        return matched, conflicts

    # Signals

    def _fetch(self, policies: list[Policy], *, wake_only: bool, errors: dict[str, str],
               deadline: float) -> dict[tuple[str, str], Vector]:
        """Every policy signal at once; what has not answered by the deadline
        (`time.monotonic()`) is unknown."""
        queries = {policy.name: isolated(errors, policy, partial(queries_of, policy, wake_only=wake_only))
                   for policy in policies}
        ask = partial(self.prometheus.vector, at=self.signals_at) if self.signals_at else self.prometheus.vector
        sent = {(policy.name, signal): (policy, query, self._queries.submit(ask, query))
                for policy in policies for signal, query in queries[policy.name] or ()}
        wait([future for _, _, future in sent.values()], timeout=max(0.0, deadline - monotonic()))
        vectors: dict[tuple[str, str], Vector] = {}
        signal_errors: list[str] = []  # not `errors`: that one holds the policies' own failures
        for (name, signal), (policy, query, future) in sent.items():
            if not future.done():
                vector = Vector(error=f"Prometheus at {self.prometheus.url} timed out: no answer within the "
                                      f"evaluation's {self.signal_deadline_seconds:g}s deadline")
            elif future.exception() is not None:
                vector = Vector(error=f"query failed: {type(future.exception()).__name__}: {future.exception()}")
            else:
                vector = future.result()
            self._note(policy, signal, query, vector, signal_errors)
            vectors[(name, signal)] = vector
        self.signal_errors = signal_errors
        return vectors

    def _note(self, policy: Policy, signal: str, query: SignalQuery, vector: Vector, errors: list[str]) -> None:
        """Count a query and say what was wrong with its answer, if anything."""
        if self.metrics:
            self.metrics.queries.labels(policy.name, signal).inc()
        if vector.error is not None:
            errors.append(f"policy {policy.name}, {signal} signal: {vector.error}")
            if self.metrics:
                self.metrics.query_errors.labels(policy.name, signal).inc()
            log.warning("signal unknown: query failed", policy=policy.name, signal=signal, error=vector.error,
                        query=query.promql)
        elif vector.unusable or vector.unmatched:
            log.warning("signal series unusable", policy=policy.name, signal=signal, query=query.promql,
                        not_a_number=vector.unusable, without_workload_labels=vector.unmatched)

    # Evaluating

    def evaluate(self, policies: PolicySet, *, now: datetime, wake_only: bool = False,
                 with_signals: bool = True) -> list[Evaluation]:
        """Decide for every workload a policy targets. `wake_only` is the fast
        path: only paused workloads of policies with a wake signal.
        `with_signals=False` decides with every signal unknown and keeps only
        what a schedule decides alone (SCHEDULE_CODES)."""
        candidates = [p for p in policies if p.wake is not None] if wake_only else list(policies)
        if not candidates:
            return []
        errors: dict[str, str] = {}
        matched, conflicts = self.match(policies, candidates, now=now, wake_only=wake_only, errors=errors)
        if not with_signals:
            schedule = [Evaluation(w, s, p, d) for w, s, p in matched
                        if (d := isolated(errors, p, partial(decide, policy=p, workload=s, signals=Signals(),
                                                                      now=now))) is not None]
            return [e for e in schedule if e.decision.changes and e.decision.reason_code in SCHEDULE_CODES]
        used = {policy.name: policy for _, _, policy in matched}  # only policies that matched something
        deadline = monotonic() + self.signal_deadline_seconds
        vectors = self._fetch(list(used.values()), wake_only=wake_only, errors=errors, deadline=deadline)
        evaluations = self._decide_all(matched, vectors, errors, now=now, wake_only=wake_only, policies=policies)
        evaluations = self._explain(evaluations, vectors, errors, now=now, deadline=deadline)
        if not wake_only:
            evaluations = self.wakes.check(evaluations, vectors, now=now, at=self.signals_at or min(now, utc_now()),
                                           deadline=deadline)
        if not wake_only:  # only a full evaluation speaks for every policy: no flapping between passes
            self.policy_errors = report_failures(errors, previous=self.policy_errors, checked=candidates,
                                                 policies=policies, metrics=self.metrics)
        return conflicts + evaluations

    def _explain(self, evaluations: list[Evaluation], vectors: dict[tuple[str, str], Vector],
                 errors: dict[str, str], *, now: datetime, deadline: float) -> list[Evaluation]:
        """Say where the hole was for each running workload held because the
        idle query answered without it: one range query per policy with such
        workloads (`signals.gaps`), under the evaluation's deadline, then the
        decision again with the why. A query that fails or is late leaves the
        reason without it. Workloads a row above decided for (a window, a
        start) cost no query."""
        unseen: dict[str, tuple[Policy, list[int]]] = {}
        for index, evaluation in enumerate(evaluations):
            workload, policy = evaluation.workload, evaluation.policy
            vector = vectors.get((policy.name, "idle")) if policy is not None else None
            if (policy is not None and vector is not None and vector.error is None and workload.replicas > 0
                    and evaluation.decision.reason_code is Code.METRICS_UNKNOWN
                    and (workload.namespace, workload.name) not in vector.values):
                unseen.setdefault(policy.name, (policy, []))[1].append(index)
        if not unseen:
            return evaluations
        # The instant the idle query was read at: `plan --at` a past instant's, else now (and never
        # later than the clock: `plan --at` a future instant reads the signals as of now).
        at = self.signals_at or min(now, utc_now())
        sent = {}
        for name, (policy, indexes) in unseen.items():
            assert policy.idle is not None
            steps = IdleSteps.at(at, policy.idle.duration_seconds)
            query = seen_query(policy.idle.query, namespace_label=policy.idle.namespace_label,
                               workload_label=policy.idle.workload_label)
            sent[name] = (policy, indexes, query, steps,
                          self._queries.submit(self.prometheus.matrix, query, steps.start, steps.end, steps.step))
        wait([future for *_, future in sent.values()], timeout=max(0.0, deadline - monotonic()))
        explained = list(evaluations)
        for name, (policy, indexes, query, steps, future) in sent.items():
            if not future.done() or future.exception() is not None:
                log.warning("idle signal unknown: could not find where", policy=name, query=query.promql,
                            error=str(future.exception()) if future.done() else "late for the evaluation's deadline")
                continue
            why = explain(future.result(), query, {(evaluations[i].workload.namespace, evaluations[i].workload.name)
                                                   for i in indexes}, steps)
            for i in indexes:
                e = evaluations[i]
                signals = replace(e.signals, why={"idle": why[(e.workload.namespace, e.workload.name)]})
                decision = isolated(errors, policy, partial(decide, policy=policy, workload=e.state, signals=signals,
                                                                    now=now))
                if decision is not None:
                    explained[i] = Evaluation(e.workload, e.state, policy, decision, signals)
        return explained

    def _decide_all(self, matched: list[Matched], vectors: dict[tuple[str, str], Vector], errors: dict[str, str],
                    *, now: datetime, wake_only: bool, policies: PolicySet) -> list[Evaluation]:
        evaluations: list[Evaluation] = []
        unknown: dict[tuple[str, str], int] = {}
        for workload, state, policy in matched:
            if policy.name in errors:
                continue
            key = (workload.namespace, workload.name)
            idle_vector, queue_vector = vectors.get((policy.name, "idle")), vectors.get((policy.name, "queue"))
            idle = idle_vector.get(key) if idle_vector is not None else None
            queue = queue_vector.get(key) if queue_vector is not None else None
            if queue_vector is not None and policy.wake is not None:  # `absent: zero`, for a workload at zero
                queue = absent_reading(queue, present=key in queue_vector.values, answered=queue_vector.error is None,
                                       replicas=workload.replicas, wake=policy.wake)
            # At zero a workload's pods, and so its idle series, are gone: that is
            # not an unknown signal (decide() ignores it too), or every paused
            # workload would keep the metrics-unknown alert firing.
            if idle_vector is not None and idle is None and workload.replicas > 0:
                unknown[(policy.name, "idle")] = unknown.get((policy.name, "idle"), 0) + 1
            if queue_vector is not None and queue is None:
                unknown[(policy.name, "queue")] = unknown.get((policy.name, "queue"), 0) + 1
            signals = Signals(idle=idle, queue=queue)
            decision = isolated(errors, policy, partial(decide, policy=policy, workload=state, signals=signals,
                                                                now=now))
            if decision is not None:
                evaluations.append(Evaluation(workload, state, policy, decision, signals))
        if self.metrics and not wake_only:
            for policy in policies:
                for signal in ("idle", "queue"):
                    self.metrics.unknown.labels(policy.name, signal).set(unknown.get((policy.name, signal), 0))
        return evaluations
