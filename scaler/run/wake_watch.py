"""Which workloads at zero cannot be woken, and why (decide/wake_health.py):
found in each full evaluation, said in the decision's reason (the log line,
`scaler plan`), counted in `scaler_wake_blocked{reason}`.

For the workloads whose wake signal has no series, one more query per policy
(`last_seen_query`, under the evaluation's deadline) asks Prometheus when the
series was last seen, so the answer survives a restart and `plan` says the
same as the daemon. How long a query has failed, or a value has been NaN, is
known only from this process's own evaluations.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import replace
from datetime import datetime
from functools import partial
from time import monotonic

import structlog
from prometheus_client import Gauge

from scaler.decide.policies import Policy
from scaler.decide.precedence import decide
from scaler.decide.wake_health import Blocked, WakeHealth, health
from scaler.signals.prometheus import Prometheus
from scaler.signals.queries import last_seen_query
from scaler.signals.results import Vector

log = structlog.get_logger("scaler")

#: How far back the last-seen query looks, at least (and the step it looks at).
LOOK_BACK_SECONDS, LOOK_STEP_SECONDS = 6 * 3600, 60


def look_back_seconds(policy: Policy) -> int:
    assert policy.wake is not None
    return int(max(LOOK_BACK_SECONDS, 2 * policy.wake.blocked_after_seconds))


class WakeWatch:
    """Finds, in an evaluation, the workloads at zero their wake signal cannot wake."""

    def __init__(self, *, prometheus: Prometheus, submit: Callable[..., Future], registry=None) -> None:
        self.prometheus, self.submit = prometheus, submit
        #: (policy, reason, namespace, name) -> when this process first saw it so: the one thing kept from one
        #: evaluation to the next, for how long a query has failed or a value been NaN (Prometheus keeps no record).
        self._since: dict[tuple[str, Blocked, str, str], datetime] = {}
        #: The last full evaluation's findings, by (namespace, name).
        self.found: dict[tuple[str, str], WakeHealth] = {}
        self._blocked: set[tuple[str, Blocked, str, str]] = set()
        self.gauge: Gauge | None = None
        if registry is not None:
            self.export(registry)

    def export(self, registry) -> None:
        """Count the blocked in `registry`'s scaler_wake_blocked (the daemon's; plan keeps none)."""
        self.gauge = Gauge("scaler_wake_blocked", "Workloads at zero their wake signal cannot wake (no series, "
                           "NaN or a failing query for longer than the signal's blocked_after), by reason.",
                           ["reason"], registry=registry)
        for reason in Blocked:
            self.gauge.labels(reason.value).set(0)

    def check(self, evaluations: list, vectors: dict[tuple[str, str], Vector], *, now: datetime, at: datetime,
              deadline: float) -> list:
        """`evaluations` with the why of each workload at zero whose wake
        signal is unknown (decided again with it); counts the blocked ones."""
        unknown = [(i, e, _reason(e, vectors)) for i, e in enumerate(evaluations)
                   if e.policy is not None and e.policy.wake is not None and e.workload.replicas == 0
                   and e.signals.wake is None and (e.policy.name, "wake") in vectors]
        last_seen = self._last_seen([e for _, e, reason in unknown if reason is Blocked.NO_SERIES], at, deadline)
        found: dict[tuple[str, str], WakeHealth] = {}
        explained = list(evaluations)
        seen_now = set()
        for i, e, reason in unknown:
            policy, workload = e.policy, e.workload
            key = (policy.name, reason, workload.namespace, workload.name)
            seen_now.add(key)
            since = self._since.setdefault(key, now)
            looked = look_back_seconds(policy)
            for_seconds: float | None = max(0.0, (now - since).total_seconds())
            if reason is Blocked.NO_SERIES and policy.name in last_seen:
                seen = last_seen[policy.name].get((workload.namespace, workload.name))
                for_seconds = None if seen is None else max(0.0, at.timestamp() - seen)
            error = vectors[(policy.name, "wake")].error if reason is Blocked.QUERY_FAILING else None
            finding = health(reason, wake=policy.wake, namespace=workload.namespace, name=workload.name,
                             for_seconds=for_seconds, looked_seconds=looked, error=error)
            found[(workload.namespace, workload.name)] = finding
            signals = replace(e.signals, why={**(e.signals.why or {}), "wake": finding.sentence})
            explained[i] = type(e)(e.workload, e.state, policy,
                                   decide(policy=policy, workload=e.state, signals=signals, now=now), signals)
            if finding.blocked and key not in self._blocked:  # once, when it starts
                log.warning("cannot wake", policy=policy.name, namespace=workload.namespace,
                            workload=workload.name, reason=reason.value, why=finding.sentence)
        self._since = {key: since for key, since in self._since.items() if key in seen_now}
        self._blocked = {key for key in seen_now if found[(key[2], key[3])].blocked}
        self.found = found
        if self.gauge is not None:
            for reason in Blocked:
                self.gauge.labels(reason.value).set(sum(1 for f in found.values() if f.blocked and f.reason is reason))
        return explained

    def _last_seen(self, evaluations: list, at: datetime, deadline: float) -> dict[str, dict[tuple[str, str], float]]:
        """Per policy: when each workload's wake series was last seen (a Unix time)."""
        policies = {e.policy.name: e.policy for e in evaluations}
        sent = {}
        for name, policy in policies.items():
            wake = policy.wake
            query = last_seen_query(wake.query, namespace_label=wake.namespace_label,
                                    workload_label=wake.workload_label, window_seconds=look_back_seconds(policy),
                                    step_seconds=LOOK_STEP_SECONDS)
            sent[name] = (query, self.submit(partial(self.prometheus.vector, at=at), query))
        wait([future for _, future in sent.values()], timeout=max(0.0, deadline - monotonic()))
        answers = {}
        for name, (query, future) in sent.items():
            vector = future.result() if future.done() and future.exception() is None else None
            if vector is None or vector.error is not None:
                log.warning("wake signal absent: could not find since when", policy=name, query=query.promql,
                            error=vector.error if vector is not None else "no answer within the deadline")
                continue
            answers[name] = {key: value for key, value in vector.values.items()
                             if value is not None and math.isfinite(value)}
        return answers


def _reason(evaluation, vectors: dict[tuple[str, str], Vector]) -> Blocked:
    vector = vectors.get((evaluation.policy.name, "wake"))
    if vector is None or vector.error is not None:
        return Blocked.QUERY_FAILING
    key = (evaluation.workload.namespace, evaluation.workload.name)
    return Blocked.UNUSABLE if key in vector.values else Blocked.NO_SERIES
