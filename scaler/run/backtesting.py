"""`scaler backtest`: the policies replayed over a past period, on the
workloads as they are now and the signals Prometheus kept.

Reads only: it lists the workloads once (today's labels decide which policy
manages each, as in `plan`), asks Prometheus once per kind how big each
workload was at the start (kube-state-metrics), sends one range query per
policy signal (in chunks for long periods), and replays each workload with
the same decisions the daemon makes (`decide.replaying`). Nothing is written
anywhere.
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from scaler.cluster.discovery import KindResolver
from scaler.cluster.views import ListingView
from scaler.cluster.workloads import Workload
from scaler.decide.decisions import POLICY_PAUSE_PREFIX, WorkloadState
from scaler.decide.fields import MAX_REPLICAS
from scaler.decide.policies import Policy
from scaler.decide.replaying import Replay, Steps, Subject, WindowRun, replay, window_runs
from scaler.decide.selectors import Selector
from scaler.run.evaluating import Evaluator, queries_of
from scaler.run.isolating import isolated
from scaler.run.settings import PlanSettings
from scaler.run.sources import check_configured_policies
from scaler.signals.history import History, fetch
from scaler.signals.prometheus import Prometheus
from scaler.signals.queries import SIGNALS, WAKE, SignalQuery

#: Policies whose signals are fetched (and held) at once.
POLICIES_AHEAD = 2

#: kube-state-metrics' series of a kind's desired replicas, and its label naming the object.
START_SIZES = {"Deployment": ("kube_deployment_spec_replicas", "deployment"),
               "StatefulSet": ("kube_statefulset_replicas", "statefulset")}


@dataclass
class Backtest:
    """A replay of every selected workload over one period."""

    steps: Steps
    replays: list[Replay] = field(default_factory=list)
    #: one line per signal chunk that failed: its steps are unknown
    signal_errors: list[str] = field(default_factory=list)
    #: policies that could not be replayed, each {"policy", "source", "error"}
    failures: list[dict] = field(default_factory=list)
    #: range queries sent
    requests: int = 0
    #: (policy, lead) -> its window runs, for the timeline
    windows: dict[tuple[str, float | None], list[WindowRun]] = field(default_factory=dict)
    #: (namespace, name) -> {"idle": points, "wake": points} (None: no series), kept with keep_points
    points: dict[tuple[str, str], dict[str, list | None]] = field(default_factory=dict)
    #: what the replay could not read and did without (today's sizes for want of the start's)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Scope:
    """Which managed workloads to replay: -n and -l."""

    namespace: str | None = None
    selector: Selector | None = None

    def takes(self, state: WorkloadState) -> bool:
        return ((self.namespace is None or state.namespace == self.namespace)
                and (self.selector is None or self.selector.matches(state.labels)))


def warm_up_of(state: WorkloadState, declared: float | None) -> tuple[float, str]:
    """Seconds from a start to all Ready: the median of its recorded
    warm-ups, else the declared one, else 0."""
    if state.warm_ups:
        return float(statistics.median(state.warm_ups)), "measured"
    if declared is not None:
        return declared, "declared"
    return 0.0, "none"


def subject_of(workload: Workload, state: WorkloadState, policy: Policy, declared: float | None,
               started: int | None = None) -> Subject:
    """`started`: its replicas at the start, as history has them (None: no
    history). At 0, it starts paused by its policy if it carries its record
    today (the policy is acting on it), else as someone else's zero."""
    record = workload.record
    today = workload.replicas or (record.last_replicas if record and record.last_replicas else policy.min_replicas)
    seconds, source = warm_up_of(state, declared)
    return Subject(state, policy, size=started or today, gpus_per_replica=workload.gpus_per_replica(),
                   warm_up_seconds=seconds, warm_up_source=source, start_replicas=started,
                   start_paused_by_policy=started == 0 and record is not None
                   and record.paused_by == POLICY_PAUSE_PREFIX + policy.name)


def start_sizes(prometheus: Prometheus, kinds: set[str], at: datetime, result: Backtest,
                ) -> dict[tuple[str, str, str], int]:
    """(kind, namespace, name) -> replicas at `at`, as kube-state-metrics
    recorded them: one instant query per kind it has a series for."""
    sizes = {}
    for kind in sorted(kinds & START_SIZES.keys()):
        metric, label = START_SIZES[kind]
        vector = prometheus.vector(SignalQuery(f"max by (namespace, {label}) ({metric})", "namespace", label), at=at)
        result.requests += 1
        if vector.error is not None:
            result.warnings.append(f"{kind} sizes at the start unknown, today's used: {vector.error}")
        for (namespace, name), value in vector.values.items():
            if value is not None and value.is_integer() and 0 <= value <= MAX_REPLICAS:
                sizes[(kind, namespace, name)] = int(value)
    return sizes


Progress = Callable[[str, int], None]


def _fetch_policy(prometheus: Prometheus, policy: Policy, steps: Steps, progress: Progress,
                  ) -> dict[str, History]:
    """Every signal of one policy over the period: one range query per chunk."""
    histories = {}
    for signal, query in queries_of(policy):
        histories[signal] = fetch(query, prometheus.matrix, start=steps.start, step_seconds=steps.step_seconds,
                                  steps=steps.count)
        progress("signals", 1)
    return histories


def _streamed(prometheus: Prometheus, policies: list[Policy], steps: Steps, result: Backtest, progress: Progress):
    """(policy, its histories), in order, with the next policies' signals
    fetched meanwhile. Only POLICIES_AHEAD policies' points are held at once:
    a week of one-minute points for 1,000 workloads is 20 million of them."""
    with ThreadPoolExecutor(POLICIES_AHEAD, thread_name_prefix="range-query") as pool:
        pending = [pool.submit(_fetch_policy, prometheus, policy, steps, progress)
                   for policy in policies[:POLICIES_AHEAD]]
        for position, policy in enumerate(policies):
            histories = pending.pop(0).result()
            if position + POLICIES_AHEAD < len(policies):
                pending.append(pool.submit(_fetch_policy, prometheus, policies[position + POLICIES_AHEAD], steps,
                                           progress))
            for signal, history in sorted(histories.items()):
                result.requests += history.requests
                result.signal_errors += [f"policy {policy.name}, {signal} signal, {error}" for error in history.errors]
            yield policy, histories


def backtest(settings: PlanSettings, *, steps: Steps, now: datetime, scope: Scope = Scope(),
             declared_warm_up: float | None = None, keep_points: bool = False,
             progress: Progress = lambda what, done: None,
             on_plan: Callable[[int, int], None] = lambda signals, workloads: None) -> Backtest:
    """Replay the policies over `steps` for every managed workload in `scope`.

    `on_plan(signals, workloads)` is told the work ahead once it is known;
    `progress("signals" | "workloads", n)` as it is done."""
    policies, problems = check_configured_policies(settings)
    if problems:
        raise ValueError("\n".join(str(p) for p in problems))
    kube = settings.kube()
    view = ListingView(kube, namespaces=settings.namespaces, gpu_resources=settings.gpu_resources)
    prometheus = settings.prometheus()
    evaluator = Evaluator(prometheus=prometheus, view=view, excluded_namespaces=settings.all_excluded_namespaces,
                          resolve=KindResolver(kube))
    errors: dict[str, str] = {}
    matched, _ = evaluator.match(policies, list(policies), now=now, wake_only=False, errors=errors)
    matched = [(w, s, p) for w, s, p in matched if scope.takes(s)]
    result = Backtest(steps)
    result.failures = [{"policy": name, "source": policies.sources.get(name), "error": error}
                       for name, error in sorted(errors.items())]
    used = list({policy.name: policy for _, _, policy in matched}.values())
    on_plan(sum(len(queries_of(policy)) for policy in used), len(matched))
    sizes = start_sizes(prometheus, {workload.kind.key for workload, _, _ in matched}, steps.start, result)
    by_policy: dict[str, list] = {}
    for workload, state, policy in matched:
        by_policy.setdefault(policy.name, []).append((workload, state, policy, sizes.get(workload.key)))
    failed: dict[str, str] = {}
    collecting = gc.isenabled()
    gc.disable()  # millions of small point lists: the collector would walk them again and again
    try:
        for policy, histories in _streamed(prometheus, used, steps, result, progress):
            _replay_policy(result, by_policy[policy.name], histories, failed, declared_warm_up, keep_points, progress)
    finally:
        if collecting:
            gc.enable()
    result.replays.sort(key=lambda r: (r.subject.state.namespace, r.subject.state.name, r.subject.state.kind))
    result.failures += [{"policy": name, "source": policies.sources.get(name), "error": error}
                        for name, error in sorted(failed.items())]
    return result


def _replay_policy(result: Backtest, matched: list, histories: dict[str, History], failed: dict[str, str],
                   declared_warm_up: float | None, keep_points: bool, progress: Progress) -> None:
    for workload, state, policy, started in matched:
        if policy.name not in failed:
            key = (state.namespace, state.name)
            points = {signal.name: history.points.get(key) if (history := histories.get(signal.name)) else None
                      for signal in SIGNALS}
            wake = histories.get(WAKE.name)
            # subject_of() stays inside isolated(), as before: whatever it raises fails only this policy.
            isolated(failed, policy, partial(_replay_one, result, workload, state, policy, declared_warm_up, points,
                                             started, wake.failed if wake else []))
            if keep_points:
                result.points[key] = points
        progress("workloads", 1)


def _replay_one(result: Backtest, workload: Workload, state: WorkloadState, policy: Policy,
                declared_warm_up: float | None, points: dict, started: int | None,
                wake_unanswered: list[tuple[int, int]]) -> None:
    subject = subject_of(workload, state, policy, declared_warm_up, started)
    lead = subject.lead
    windows = result.windows.get((subject.policy.name, lead))
    if windows is None:
        windows = result.windows[(subject.policy.name, lead)] = window_runs(subject.policy, result.steps, lead)
    result.replays.append(replay(subject, result.steps, windows=windows, wake_unanswered=wake_unanswered, **points))
