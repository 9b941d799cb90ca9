"""One evaluation of every policy against the cluster and Prometheus: a
decision per managed workload, for one instant. Shared by the daemon,
`scaler plan` and `scaler backtest`. It only reads: what the decisions call
for is written by the daemon's actor (run/acting.py), and what is followed
from pass to pass (metrics, failing policies, starts) by its tracker
(run/tracking.py).

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

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from time import monotonic
from typing import Any

import structlog

from scaler.cluster.discovery import KindError
from scaler.cluster.kinds import WorkloadKind, resolve_kind
from scaler.cluster.kube import KubeError
from scaler.cluster.starts import warm_ups
from scaler.cluster.views import ClusterView
from scaler.cluster.workloads import Workload
from scaler.decide.annotations import PAUSE_CAUSE, READY_AT, STARTED_AT
from scaler.decide.decisions import (
    Action,
    Code,
    Decision,
    Signals,
    WorkloadState,
    is_excluded,
    select_policy,
)
from scaler.decide.facts import next_prewarm
from scaler.decide.loading import PolicySet
from scaler.decide.policies import Policy
from scaler.decide.precedence import SCHEDULE_CODES, decide
from scaler.decide.reverts import DEFAULT_GITOPS_MANAGERS, is_gitops
from scaler.decide.times import parse_time, utc_now
from scaler.decide.wake_health import absent_reading
from scaler.decide.windows import next_edge
from scaler.run.isolating import isolated
from scaler.run.wake_watch import WakeWatch
from scaler.signals.gaps import IdleSteps, explain
from scaler.signals.prometheus import Prometheus
from scaler.signals.queries import IDLE, SIGNALS, SignalQuery, seen_query
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
    """(the signal's name, its query) for each signal of `policy`
    (`SIGNALS`): one query per policy signal, answered for all its workloads
    at once. `wake_only`: only the signals the wake checks ask."""
    return [(signal.name, query) for signal in SIGNALS if signal.on_wake_checks or not wake_only
            if (query := signal.of(policy)) is not None]


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


class Evaluations(list[Evaluation]):
    """One evaluation's decisions, and what it read on the way: the tracker
    counts the queries and the unknown signals, and reports the policies
    that failed."""

    def __init__(self, evaluations: Iterable[Evaluation] = (), *, full: bool = False) -> None:
        super().__init__(evaluations)
        #: A full evaluation (every policy, with its signals) speaks for every policy it checked.
        self.full = full
        #: The policies checked, and those of them that failed at run time (why): skipped, the others go on.
        self.checked: list[Policy] = []
        self.failures: dict[str, str] = {}
        #: Each query sent, as (policy, signal, failed); one line per failed query, for `scaler plan`.
        self.queries: list[tuple[str, str, bool]] = []
        self.signal_errors: list[str] = []
        #: (policy, signal) -> workloads whose signal was unknown.
        self.unknown: dict[tuple[str, str], int] = {}
        #: Schedule-only: resumes left to a pass with the wake signal (`Evaluator.evaluate`).
        self.deferred = 0


class Evaluator:
    """Decides for every workload the policies target, at the instant it is
    given. Reads the policies, the cluster view and Prometheus; writes nothing
    and keeps nothing from one evaluation to the next."""

    def __init__(self, *, prometheus: Prometheus, view: ClusterView, excluded_namespaces: Iterable[str],
                 signal_deadline_seconds: float | None = None, query_workers: int = 8,
                 resolve: Callable[[str], WorkloadKind] = resolve_kind,
                 gitops_managers: Iterable[str] = DEFAULT_GITOPS_MANAGERS, signals_at: datetime | None = None,
                 ) -> None:
        """`gitops_managers`: the managedFields managers that are GitOps
        controllers (their setting a size back is a revert, not a person's edit).
        `signals_at`: read the signals as of this instant instead of now
        (`scaler plan --at` a past time)."""
        self.prometheus = prometheus
        self.view = view
        self.excluded_namespaces = frozenset(excluded_namespaces)
        self.signal_deadline_seconds = signal_deadline_seconds or prometheus.timeout_seconds
        self._queries = ThreadPoolExecutor(query_workers, thread_name_prefix="query")
        self.resolve = resolve
        self.gitops_managers = tuple(gitops_managers)
        self.signals_at = signals_at
        #: Workloads at zero their wake signal cannot wake, found in each full evaluation.
        self.wakes = WakeWatch(prometheus=prometheus, submit=self._queries.submit)
        #: The names of every policy evaluated since it started: a pause by one of them that no policy
        #: targets any more is resumed (`precedence.unmanaged`), another installation's is not.
        self.policies_held: set[str] = set()

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
            size_field=workload.kind.size_field, sizable=workload.kind.sizable,
            started_replicas=workload.kind.resumed_replicas(workload.obj, 1))

    def managed_by(self, policies: PolicySet, workload: Workload) -> Policy | None:
        """The one policy managing `workload`, or None (excluded, unmatched, conflict)."""
        state = self.state_of(workload)
        if is_excluded(state, excluded_namespaces=self.excluded_namespaces):
            return None
        chosen = select_policy(policies, state, namespace_labels=self.view.namespace_labels(state.namespace))
        return chosen if isinstance(chosen, Policy) else None

    def next_edge(self, policies: PolicySet, now: datetime) -> datetime | None:
        """The first instant strictly after `now` at which a window of any
        policy opens or closes, or a pre-warm lead reaches one; None if none."""
        # A policy whose calendar cannot be worked out (an iCalendar year over its bounds) has no edge here;
        # its decisions report it, and the regular ticks do not depend on edges.
        edges = [edge for policy in policies if policy.schedule is not None
                 if (edge := isolated({}, policy, partial(next_edge, policy.schedule.compiled, now))) is not None]
        return min(edges + self.prewarm_edges(policies, now), default=None)

    def prewarm_edges(self, policies: PolicySet, now: datetime) -> list[datetime]:
        """When a pre-warm lead reaches a keep-up window, for each lead in use
        (one per policy, or each workload's own measured warm-up for 'auto')."""
        prewarming = [policy for policy in policies if policy.prewarm is not None and policy.schedule]
        leads: dict[tuple[str, tuple[float, ...]], Policy] = {
            (policy.name, ()): policy for policy in prewarming if policy.prewarm != "auto"}
        auto = [policy for policy in prewarming if policy.prewarm == "auto"]
        if auto:
            for workload in self.view.workloads(kinds_of(auto, self.resolve, {})):
                policy = self.managed_by(policies, workload)
                if policy is not None and policy.prewarm == "auto" and (measured := warm_ups(workload.annotations)):
                    leads.setdefault((policy.name, (round(max(measured)),)), policy)
        upcoming = (isolated({}, policy, partial(next_prewarm, policy, warm, now))
                    for (_, warm), policy in leads.items())
        return [when for found in upcoming if found is not None and (when := found[0]) > now]

    def match(self, policies: PolicySet, candidates: list[Policy], *, now: datetime, wake_only: bool,
              errors: dict[str, str]) -> tuple[list[Matched], list[Evaluation]]:
        """(workload, state, policy) for each managed workload; and the conflicts, and the workloads a
        policy paused that none targets any more (`precedence.unmanaged`: resumed, not stranded)."""
        matched: list[Matched] = []
        conflicts: list[Evaluation] = []
        for workload in self.view.workloads(kinds_of(candidates, self.resolve, errors)):
            if wake_only and workload.replicas != 0:
                continue
            state = self.state_of(workload)
            if is_excluded(state, excluded_namespaces=self.excluded_namespaces):
                continue
            namespace_labels = self.view.namespace_labels(state.namespace)
            chosen = select_policy(policies, state, namespace_labels=namespace_labels)
            if chosen is None:
                orphan = None if wake_only else decide(policy=None, workload=state, signals=Signals(), now=now)
                if orphan is not None and self._orphaned(orphan, state, policies, namespace_labels):
                    conflicts.append(Evaluation(workload, state, None, orphan))
                continue
            if not isinstance(chosen, Policy):
                conflicts.append(Evaluation(workload, state, None,
                                            decide(policy=chosen, workload=state, signals=Signals(), now=now)))
            elif (not wake_only or chosen.wake is not None) and chosen.name not in errors:
                matched.append((workload, state, chosen))
        return matched, conflicts

    def _orphaned(self, decision: Decision, state: WorkloadState, policies: PolicySet,
                  namespace_labels: Mapping[str, str]) -> bool:
        """`precedence.unmanaged` resumes it (a policy paused it, none targets it now), and it is this
        daemon's to resume: paused by a policy it has held (another installation's are not its own),
        where some policy still reaches (its namespace's labels read, not a failed read)."""
        return (decision.action is Action.RESUME and decision.policy in self.policies_held
                and self.view.labels_read(state.namespace)
                and any(p.targets.compiled.covers(state.kind, state.namespace, namespace_labels) for p in policies))

    # Signals

    def _fetch(self, policies: list[Policy], *, wake_only: bool, errors: dict[str, str],
               deadline: float, read: Evaluations) -> dict[tuple[str, str], Vector]:
        """Every policy signal at once; what has not answered by the deadline
        (`time.monotonic()`) is unknown."""
        queries = {policy.name: isolated(errors, policy, partial(queries_of, policy, wake_only=wake_only))
                   for policy in policies}
        ask = partial(self.prometheus.vector, at=self.signals_at) if self.signals_at else self.prometheus.vector
        sent = {(policy.name, signal): (policy, query, self._queries.submit(ask, query))
                for policy in policies for signal, query in queries[policy.name] or ()}
        wait([future for _, _, future in sent.values()], timeout=max(0.0, deadline - monotonic()))
        vectors: dict[tuple[str, str], Vector] = {}
        for (name, signal), (policy, query, future) in sent.items():
            if not future.done():
                vector = Vector(error=f"Prometheus at {self.prometheus.url} timed out: no answer within the "
                                      f"evaluation's {self.signal_deadline_seconds:g}s deadline")
            elif future.exception() is not None:
                vector = Vector(error=f"query failed: {type(future.exception()).__name__}: {future.exception()}")
            else:
                vector = future.result()
            self._note(policy, signal, query, vector, read)
            vectors[(name, signal)] = vector
        return vectors

    @staticmethod
    def _note(policy: Policy, signal: str, query: SignalQuery, vector: Vector, read: Evaluations) -> None:
        """Record a query and say what was wrong with its answer, if anything."""
        read.queries.append((policy.name, signal, vector.error is not None))
        if vector.error is not None:
            read.signal_errors.append(f"policy {policy.name}, {signal} signal: {vector.error}")
            log.warning("signal unknown: query failed", policy=policy.name, signal=signal, error=vector.error,
                        query=query.promql)
        elif vector.unusable or vector.unmatched:
            log.warning("signal series unusable", policy=policy.name, signal=signal, query=query.promql,
                        not_a_number=vector.unusable, without_workload_labels=vector.unmatched)

    # Evaluating

    def evaluate(self, policies: PolicySet, *, now: datetime, wake_only: bool = False, with_signals: bool = True,
                 read_at: datetime | None = None, deadline_seconds: float | None = None) -> Evaluations:
        """Decide for every workload a policy targets, at `now`. `wake_only`
        is the fast path: only paused workloads of policies with a wake signal.
        `with_signals=False` decides with every signal unknown and keeps only
        what a schedule decides alone (SCHEDULE_CODES), but for the resumes
        of policies with a wake signal (counted in `deferred`): a queue may
        wake them bigger, for its own reason, so they wait for the signal.
        `deadline_seconds`: the signals' deadline, if not the evaluator's. `read_at`: the instant
        the signals are read at, when not `signals_at` (the pass's clock, if
        `now` is later: `scaler plan --at` a future instant reads them as of now)."""
        self.policies_held.update(policy.name for policy in policies)
        candidates = [p for p in policies if p.wake is not None] if wake_only else list(policies)
        if not candidates:
            return Evaluations()
        errors: dict[str, str] = {}
        matched, conflicts = self.match(policies, candidates, now=now, wake_only=wake_only, errors=errors)
        if not with_signals:
            schedule = [Evaluation(w, s, p, d) for w, s, p in matched
                        if (d := isolated(errors, p, partial(decide, policy=p, workload=s, signals=Signals(),
                                                                      now=now))) is not None]
            acting = [e for e in schedule if e.decision.changes and e.decision.reason_code in SCHEDULE_CODES]
            # A resume of a policy with a wake signal is the signal's too: its queue may want
            # more replicas, and another reason (queue-wake), than the window alone says.
            kept = Evaluations(e for e in acting
                               if e.decision.action is not Action.RESUME or e.policy is None or e.policy.wake is None)
            kept.deferred = len(acting) - len(kept)
            return kept
        read = Evaluations(full=not wake_only)  # only a full evaluation speaks for every policy
        used = {policy.name: policy for _, _, policy in matched}  # only policies that matched something
        deadline = monotonic() + (deadline_seconds or self.signal_deadline_seconds)
        vectors = self._fetch(list(used.values()), wake_only=wake_only, errors=errors, deadline=deadline, read=read)
        evaluations = self._decide_all(matched, vectors, errors, now=now, read=read)
        evaluations = self._explain(evaluations, vectors, errors, now=now, deadline=deadline, read_at=read_at)
        if not wake_only:
            evaluations = self.wakes.check(evaluations, vectors, now=now, deadline=deadline,
                                           at=self.signals_at or read_at or min(now, utc_now()))
        read += conflicts + evaluations
        read.checked, read.failures = candidates, errors
        return read

    def _explain(self, evaluations: list[Evaluation], vectors: dict[tuple[str, str], Vector],
                 errors: dict[str, str], *, now: datetime, deadline: float,
                 read_at: datetime | None) -> list[Evaluation]:
        """Say where the hole was for each running workload held because the
        idle query answered without it, or with an unusable value (a +Inf at
        the one step tolerated is the window's maximum): one range query per
        policy with such workloads (`signals.gaps`), under the evaluation's
        deadline, then the decision again with the why. A query that fails or
        is late leaves the reason without it. Workloads a row above decided
        for (a window, a start) cost no query."""
        unseen: dict[str, tuple[Policy, list[int]]] = {}
        for index, evaluation in enumerate(evaluations):
            workload, policy = evaluation.workload, evaluation.policy
            vector = vectors.get((policy.name, IDLE.name)) if policy is not None else None
            if (policy is not None and vector is not None and vector.error is None and workload.replicas > 0
                    and evaluation.decision.reason_code is Code.METRICS_UNKNOWN
                    and vector.values.get((workload.namespace, workload.name)) is None):
                unseen.setdefault(policy.name, (policy, []))[1].append(index)
        if not unseen:
            return evaluations
        # The instant the idle query was read at: `plan --at` a past instant's, else the pass's clock.
        at = self.signals_at or read_at or now
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
                signals = replace(e.signals, why={IDLE.name: why[(e.workload.namespace, e.workload.name)]})
                decision = isolated(errors, policy, partial(decide, policy=policy, workload=e.state, signals=signals,
                                                                    now=now))
                if decision is not None:
                    explained[i] = Evaluation(e.workload, e.state, policy, decision, signals)
        return explained

    @staticmethod
    def _decide_all(matched: list[Matched], vectors: dict[tuple[str, str], Vector], errors: dict[str, str],
                    *, now: datetime, read: Evaluations) -> list[Evaluation]:
        evaluations: list[Evaluation] = []
        unknown = read.unknown
        for workload, state, policy in matched:
            if policy.name in errors:
                continue
            key = (workload.namespace, workload.name)
            values: dict[str, Any] = {}  # a value per signal, by its name: a field of Signals
            for signal in SIGNALS:
                vector = vectors.get((policy.name, signal.name))
                value = vector.get(key) if vector is not None else None
                if vector is not None and signal.name == "wake" and policy.wake is not None:  # `absent: zero`
                    value = absent_reading(value, present=key in vector.values, answered=vector.error is None,
                                           replicas=workload.replicas, wake=policy.wake)
                values[signal.name] = value
                # At zero a workload's pods, and so its idle series, are gone: that is
                # not an unknown signal (decide() ignores it too), or every paused
                # workload would keep the metrics-unknown alert firing.
                if vector is not None and value is None and (workload.replicas > 0 or signal.unknown_at_zero):
                    unknown[(policy.name, signal.name)] = unknown.get((policy.name, signal.name), 0) + 1
            signals = Signals(**values)
            decision = isolated(errors, policy, partial(decide, policy=policy, workload=state, signals=signals,
                                                                now=now))
            if decision is not None:
                evaluations.append(Evaluation(workload, state, policy, decision, signals))
        return evaluations
