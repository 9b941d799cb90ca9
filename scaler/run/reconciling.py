"""One evaluation of every policy against the cluster and Prometheus, and the
writes it calls for. Shared by the daemon (`scaler run`) and `scaler plan`.

Level-triggered: each evaluation derives the desired state afresh from the
policies, the workloads as they are, and the signals as they are, so a missed
tick or a restart heals on the next one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from scaler.decide.annotations import PAUSE_CAUSE
from scaler.decide.decisions import (
    POLICY_PAUSE_PREFIX,
    Action,
    Code,
    Decision,
    Signals,
    WorkloadState,
    is_excluded,
    select_policy,
)
from scaler.decide.precedence import decide
from scaler.decide.times import parse_time
from scaler.cluster.informers import Informer
from scaler.cluster.kube import Conflict, Kube, KubeError, NotFound, Resource
from scaler.cluster.pausing import Pauser
from scaler.cluster.writes import Outcome, Result
from scaler.decide.policies import Policy
from scaler.decide.loading import PolicySet
from scaler.signals.prometheus import Prometheus
from scaler.signals.queries import idle_query, queue_query
from scaler.signals.results import Vector
from scaler.decide.windows import next_edge
from scaler.cluster.discovery import KindError
from scaler.cluster.workloads import DEFAULT_GPU_RESOURCES, Workload, WorkloadKind, resolve_kind
from scaler.run.isolating import isolated, report_failures

log = structlog.get_logger("scaler")
NAMESPACES = Resource("", "v1", "namespaces", namespaced=False)


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


class ClusterView:
    """The workloads and namespace labels an evaluation reads."""

    def workloads(self, kinds: Sequence[WorkloadKind]) -> list[Workload]:
        raise NotImplementedError

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        raise NotImplementedError

    def took(self, result: Result, workload: Workload) -> None:
        """Our own write landed: remember it before the watch says so."""


class ListingView(ClusterView):
    """LIST once per kind: for `scaler plan`, which evaluates one time."""

    def __init__(self, kube: Kube, *, namespaces: Sequence[str] = (), gpu_resources=DEFAULT_GPU_RESOURCES) -> None:
        self.kube = kube
        self.namespaces = list(namespaces)
        self.gpu_resources = tuple(gpu_resources)
        self._namespace_labels: dict[str, dict[str, str]] | None = None

    def workloads(self, kinds: Sequence[WorkloadKind]) -> list[Workload]:
        found = []
        for kind in kinds:
            for namespace in self.namespaces or [None]:
                try:
                    items, _ = self.kube.list(kind.resource, namespace)
                except NotFound:  # the kind's CRD is not installed: nothing of it to manage
                    continue
                found.extend(Workload(kind, obj, self.gpu_resources) for obj in items)
        return found

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        if self._namespace_labels is None:
            if self.namespaces:
                self._namespace_labels = {}
                for name in self.namespaces:
                    obj = self.kube.get(NAMESPACES, None, name)
                    self._namespace_labels[name] = obj["metadata"].get("labels") or {}
            else:
                items, _ = self.kube.list(NAMESPACES)
                self._namespace_labels = {o["metadata"]["name"]: o["metadata"].get("labels") or {} for o in items}
        return self._namespace_labels.get(namespace, {})


class WatchingView(ClusterView):
    """list+watch caches per kind (and namespace), started on first use."""

    def __init__(self, kube: Kube, *, namespaces: Sequence[str] = (), gpu_resources=DEFAULT_GPU_RESOURCES) -> None:
        self.kube = kube
        self.namespaces = list(namespaces)
        self.gpu_resources = tuple(gpu_resources)
        self._informers: dict[tuple[str, str | None], Informer] = {}
        self._lock = threading.Lock()
        self._namespace_informers: list[Informer] = []
        self._labels: dict[str, tuple[float, dict[str, str]]] = {}

    def _informers_for(self, kind: WorkloadKind) -> list[Informer]:
        created = []
        with self._lock:
            for namespace in self.namespaces or [None]:
                key = (kind.resource.path(), namespace)
                if key not in self._informers:
                    self._informers[key] = Informer(self.kube, kind.resource, namespace=namespace).start()
                created.append(self._informers[key])
        return created

    def start_namespaces(self) -> None:
        """Namespace labels for namespace selectors: watched cluster-wide,
        unless the daemon is restricted to a list of namespaces."""
        if not self.namespaces:
            self._namespace_informers.append(Informer(self.kube, NAMESPACES).start())

    def wait_synced(self, kinds: Sequence[WorkloadKind], *, timeout_seconds: float) -> bool:
        informers = [i for kind in kinds for i in self._informers_for(kind)] + self._namespace_informers
        return all(i.synced.wait(timeout_seconds) for i in informers)

    def workloads(self, kinds: Sequence[WorkloadKind]) -> list[Workload]:
        found = []
        for kind in kinds:
            for informer in self._informers_for(kind):
                found.extend(Workload(kind, obj, self.gpu_resources) for obj in informer.items())
        return found

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        for informer in self._namespace_informers:
            obj = informer.get("", namespace)
            if obj is not None:
                return obj["metadata"].get("labels") or {}
        if not self.namespaces:
            return {}
        # Restricted to a list: no cluster-wide watch (nor the RBAC for one);
        # GET each listed namespace, at most once a minute.
        cached = self._labels.get(namespace)
        if cached is None or time.monotonic() - cached[0] > 60:
            try:
                obj = self.kube.get(NAMESPACES, None, namespace)
                cached = (time.monotonic(), obj["metadata"].get("labels") or {})
            except KubeError as error:
                if namespace not in self._labels:  # once per namespace, not every minute
                    log.warning("namespace labels unreadable: namespace_selector will not match it",
                                namespace=namespace, error=str(error))
                cached = (time.monotonic(), {})
            self._labels[namespace] = cached
        return cached[1]

    def took(self, result: Result, workload: Workload) -> None:
        if result.written is None:
            return
        for informer in self._informers_for(workload.kind):
            if informer.namespace in (None, workload.namespace):
                informer.update(result.written)

    def stop(self, *, timeout_seconds: float = 5) -> None:
        """Stop every cache at once, then wait for them within one deadline."""
        informers = [*self._informers.values(), *self._namespace_informers]
        for informer in informers:
            informer.request_stop()
        deadline = time.monotonic() + timeout_seconds
        for informer in informers:
            informer.join(deadline - time.monotonic())


@dataclass
class Evaluation:
    """One workload's decision in one evaluation."""

    workload: Workload
    state: WorkloadState
    policy: Policy | None
    decision: Decision

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


class Reconciler:
    """Evaluate, then act on what changed. `may_act` is asked before every
    write (leadership can be lost half-way through a batch)."""

    def __init__(self, *, prometheus: Prometheus, view: ClusterView, pauser: Pauser,
                 excluded_namespaces: Iterable[str], dry_run: bool, metrics=None,
                 may_act: Callable[[], bool] = lambda: True,
                 resolve: Callable[[str], WorkloadKind] = resolve_kind) -> None:
        self.prometheus = prometheus
        self.view = view
        self.pauser = pauser
        self.excluded_namespaces = frozenset(excluded_namespaces)
        self.dry_run = dry_run
        self.metrics = metrics
        self.may_act = may_act
        self.lock = threading.Lock()  # one evaluate+act at a time (full tick, edge, wake check)
        self._scaled_up_at: dict[tuple[str, str, str], datetime] = {}
        self._ready_seen: dict[tuple[str, str, str], datetime] = {}
        self._last_logged: dict[tuple[str, str, str], tuple[str, str]] = {}
        #: Query errors of the last evaluation (for `scaler plan` to show).
        self.signal_errors: list[str] = []
        self.resolve = resolve
        #: Policies that failed at run time in the last evaluation, and why: skipped, the others go on.
        self.policy_errors: dict[str, str] = {}

    # Reading the world

    def state_of(self, workload: Workload, now: datetime) -> WorkloadState:
        key = workload.key
        record = workload.record
        ready_since = None
        for condition in (workload.obj.get("status") or {}).get("conditions") or []:
            if condition.get("type") in ("Available", "Ready") and condition.get("status") == "True":
                ready_since = parse_time(condition.get("lastTransitionTime"))
        if workload.ready_replicas > 0:
            self._ready_seen.setdefault(key, now)
            seen = self._ready_seen[key]
            ready_since = max(ready_since, seen) if ready_since else seen
        else:
            self._ready_seen.pop(key, None)
        return WorkloadState(
            kind=workload.kind.key, namespace=workload.namespace, name=workload.name,
            labels=workload.labels, annotations=workload.annotations, replicas=workload.replicas,
            last_replicas=record.last_replicas if record else None,
            paused_by=record.paused_by if record else None, manual_pause=workload.manual_pause,
            ready_since=ready_since, last_scaled_up_at=self._scaled_up_at.get(key),
            pause_cause=workload.annotations.get(PAUSE_CAUSE))

    def _signals(self, policy: Policy, *, wake_only: bool) -> tuple[Vector | None, Vector | None]:
        idle = queue = None
        if policy.idle is not None and not wake_only:
            idle = self._query(policy, "idle", idle_query(
                policy.idle.query, duration_seconds=policy.idle.duration_seconds,
                namespace_label=policy.idle.namespace_label, workload_label=policy.idle.workload_label))
        if policy.wake is not None:
            queue = self._query(policy, "queue", queue_query(
                policy.wake.query, namespace_label=policy.wake.namespace_label,
                workload_label=policy.wake.workload_label))
        return idle, queue

    def _query(self, policy: Policy, signal: str, query) -> Vector:
        vector = self.prometheus.vector(query)
        if self.metrics:
            self.metrics.queries.labels(policy.name, signal).inc()
        if vector.error is not None:
            self.signal_errors.append(f"policy {policy.name}, {signal} signal: {vector.error}")
            if self.metrics:
                self.metrics.query_errors.labels(policy.name, signal).inc()
            log.warning("signal unknown: query failed", policy=policy.name, signal=signal, error=vector.error,
                        query=query.promql)
        return vector

    # Evaluating

    def evaluate(self, policies: PolicySet, *, now: datetime, wake_only: bool = False) -> list[Evaluation]:
        """Decide for every workload a policy targets. `wake_only` is the fast
        path: only paused workloads of policies with a wake signal."""
        self.signal_errors = []
        errors: dict[str, str] = {}
        candidates = [p for p in policies if p.wake is not None] if wake_only else list(policies)
        if not candidates:
            return []
        matched: list[tuple[Workload, WorkloadState, Policy]] = []
        conflicts: list[Evaluation] = []
        for workload in self.view.workloads(kinds_of(candidates, self.resolve, errors)):
            if wake_only and workload.replicas != 0:
                continue
            state = self.state_of(workload, now)
            if is_excluded(state, excluded_namespaces=self.excluded_namespaces):
                continue
            chosen = select_policy(policies, state, namespace_labels=self.view.namespace_labels(state.namespace))
            if chosen is None:
                continue
            if not isinstance(chosen, Policy):
                conflicts.append(Evaluation(workload, state, None,
                                            decide(policy=chosen, workload=state, signals=Signals(), now=now)))
                continue
            if wake_only and chosen.wake is None:
                continue
            matched.append((workload, state, chosen))
        # One query per policy signal, only for policies that matched something.
        signals: dict[str, tuple[Vector | None, Vector | None]] = {}
        for _, _, policy in matched:
            if policy.name not in signals and policy.name not in errors:
                signals[policy.name] = isolated(errors, policy, lambda: self._signals(policy, wake_only=wake_only))
        evaluations = conflicts
        unknown: dict[tuple[str, str], int] = {}
        for workload, state, policy in matched:
            if policy.name in errors:
                continue
            idle_vector, queue_vector = signals[policy.name]
            key = (workload.namespace, workload.name)
            idle = idle_vector.get(key) if idle_vector is not None else None
            queue = queue_vector.get(key) if queue_vector is not None else None
            # At zero a workload's pods, and so its idle series, are gone: that is
            # not an unknown signal (decide() ignores it too), or every paused
            # workload would keep the metrics-unknown alert firing.
            if idle_vector is not None and idle is None and workload.replicas > 0:
                unknown[(policy.name, "idle")] = unknown.get((policy.name, "idle"), 0) + 1
            if queue_vector is not None and queue is None:
                unknown[(policy.name, "queue")] = unknown.get((policy.name, "queue"), 0) + 1
            decision = isolated(errors, policy, lambda: decide(policy=policy, workload=state,
                                                               signals=Signals(idle=idle, queue=queue), now=now))
            if decision is not None:
                evaluations.append(Evaluation(workload, state, policy, decision))
        self.policy_errors = report_failures(errors, previous=self.policy_errors, checked=candidates,
                                             policies=policies, metrics=self.metrics)
        if self.metrics and not wake_only:
            for policy in policies:
                for signal in ("idle", "queue"):
                    self.metrics.unknown.labels(policy.name, signal).set(unknown.get((policy.name, signal), 0))
        return evaluations

    # Acting

    def act(self, evaluations: Sequence[Evaluation], *, now: datetime) -> list[Result]:
        results = []
        for evaluation in evaluations:
            decision = evaluation.decision
            self._account(evaluation)
            if decision.reason_code is Code.HUMAN_OVERRIDE and evaluation.workload.record is not None:
                if self.dry_run or self.may_act():
                    results.append(self._clear_override(evaluation, now=now))
                continue
            if not decision.changes:
                continue
            if not self.dry_run and not self.may_act():
                log.info("not acting: not the leader", workload=evaluation.workload.ref)
                break
            result = self._apply(evaluation, now=now)
            results.append(result)
        return results

    def _apply(self, evaluation: Evaluation, *, now: datetime) -> Result:
        workload, decision = evaluation.workload, evaluation.decision
        by = POLICY_PAUSE_PREFIX + str(decision.policy)
        try:
            if decision.action is Action.PAUSE:
                result = self.pauser.pause(workload, by=by, reason=decision.reason,
                                           cause=str(decision.reason_code), dry_run=self.dry_run)
            elif decision.action is Action.RESUME:
                fallback = evaluation.policy.min_replicas if evaluation.policy else 1
                wanted = decision.replicas if decision.replicas != (workload.record.last_replicas
                                                                     if workload.record else None) else None
                result = self.pauser.resume(workload, by=by, reason=decision.reason, fallback_replicas=fallback,
                                            replicas=wanted, dry_run=self.dry_run)
            else:
                result = self.pauser.scale_up(workload, replicas=decision.replicas, by=by, reason=decision.reason,
                                              dry_run=self.dry_run)
        except NotFound as error:
            result = Result(workload.kind.name, workload.namespace, workload.name, Outcome.SKIPPED, str(error))
            label = "gone"
        except KubeError as error:
            result = Result(workload.kind.name, workload.namespace, workload.name, Outcome.FAILED, str(error))
            label = "conflict" if isinstance(error, Conflict) else "failed"
        else:
            label = {Outcome.CHANGED: "success", Outcome.WOULD_CHANGE: "dry_run", Outcome.FAILED: "failed",
                     Outcome.SKIPPED: "skipped", Outcome.UNCHANGED: "skipped"}[result.outcome]
        self.view.took(result, workload)
        if result.outcome is Outcome.CHANGED and decision.action in (Action.RESUME, Action.SCALE_UP):
            self._scaled_up_at[workload.key] = now
        if self.metrics:
            self.metrics.actions.labels(decision.action.value, label).inc()
        fields = dict(namespace=workload.namespace, workload=workload.name, kind=workload.kind.name,
                      policy=decision.policy, action=decision.action.value, reason=decision.reason,
                      reason_code=str(decision.reason_code), replicas_before=workload.replicas,
                      replicas_after=decision.replicas, gpus=evaluation.gpus, dry_run=self.dry_run,
                      result=result.outcome.value)
        if result.outcome is Outcome.FAILED:
            log.error("decision", error=result.reason, **fields)
        else:
            log.info("decision", **({"note": result.reason} if result.outcome is not Outcome.CHANGED
                                    and not self.dry_run else {}), **fields)
        return result

    def _clear_override(self, evaluation: Evaluation, *, now: datetime) -> Result:
        """Someone resized a workload we had paused: drop our record (the
        human wins) and stay hands-off until the policy's next window edge."""
        workload, policy = evaluation.workload, evaluation.policy
        until = None
        if policy is not None and policy.schedule is not None:
            until = next_edge(policy.schedule.compiled, now)
        try:
            result = self.pauser.resume(workload, by=POLICY_PAUSE_PREFIX + str(evaluation.decision.policy),
                                        reason="human override", override_until=until, dry_run=self.dry_run)
        except KubeError as error:
            result = Result(workload.kind.name, workload.namespace, workload.name, Outcome.FAILED, str(error))
        self.view.took(result, workload)
        log.info("human override", namespace=workload.namespace, workload=workload.name, kind=workload.kind.name,
                 policy=evaluation.decision.policy, reason=result.reason, result=result.outcome.value,
                 dry_run=self.dry_run)
        return result

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

    def paused_totals(self, policies: PolicySet) -> tuple[dict[str, int], int]:
        """Paused workloads by who paused them, and the GPUs they would hold."""
        by: dict[str, int] = {}
        gpus = 0
        for workload in self.view.workloads(kinds_of(policies, self.resolve, {}) or []):
            record = workload.record
            if workload.replicas != 0 or (record is None and not workload.manual_pause):
                continue
            who = "manual" if workload.manual_pause else ("policy" if record and record.paused_by else "unknown")
            by[who] = by.get(who, 0) + 1
            gpus += workload.gpus((record.last_replicas if record else None) or 0)
        return by, gpus
