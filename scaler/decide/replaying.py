"""Replaying a policy over history: what the daemon would have done to one
workload, step by step, and what that would have cost and saved. Pure.

Each step is one evaluation: the same `decide()` the daemon runs, on the
signals Prometheus held for that instant, then the cluster's answer to it: a
pause frees the replicas at once, a resume or scale-up holds its GPUs at
once and is Ready `warm_up_seconds` later (so the start-up rules, grace and
delay, play out as they would). Unknown signals are unknown here too: the
rows that would hold on them hold, and the steps are counted.

The replay starts from the workload as it was at the start of the period
where history says (`Subject.start_replicas`, from kube-state-metrics), else
running at its size today (`Subject.size`), with no start or human record:
history says nothing reliable about what a person did, so a replay shows the
policy alone. A state lasts until the next step, and the last one until the
period's end (`Steps.until`), so GPU-hours are those of [start, end].

Fast path. At 1,000 workloads over a week at one-minute steps a replay makes
ten million evaluations; nearly all repeat the one before. A decision is
reused while nothing it reads changed: the same state, the same windows (and
pre-warm window), signals on the same side of every threshold the rows
compare them with, and a last decision from a row that reads no clock
(`precedence.TIMELESS`, derived from what each row declares).
Rows that do read the clock (a start-up grace, a delay, an override's end)
only ever stop applying as time passes, so a row below them that answered
before answers the same now. `replay(reuse=False)` decides at every step;
the tests hold the two to the same actions.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from itertools import pairwise

from scaler.decide.annotations import WARM_UPS_KEPT
from scaler.decide.decisions import POLICY_PAUSE_PREFIX, Action, Code, Decision, Signals, WorkloadState
from scaler.decide.facts import prewarm_lead
from scaler.decide.policies import Policy
from scaler.decide.precedence import TIMELESS, decide
from scaler.decide.step_signals import StepSignal
from scaler.decide.windows import next_edge

#: The window in force, per run of steps, for the timeline.
NO_WINDOW, KEEP_UP, KEEP_DOWN, OUTSIDE_DOWN = "none", "keep-up", "keep-down", "outside-down"

UP, DOWN = (Action.RESUME, Action.SCALE_UP), (Action.PAUSE,)

#: A signal's points as Prometheus sends them: [[unix seconds, "value"], ...], oldest first.
Points = Sequence[Sequence]


@dataclass(frozen=True)
class Steps:
    """The instants of a replay: start, start + step, ... (count of them),
    in whole seconds, as a range query answers them; and the period's end,
    which the last step's state lasts until."""

    start: datetime
    step_seconds: int
    count: int
    #: the period's end, from the last step to one step after it; None: one step after it
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.until is not None and not self.at(self.count - 1) <= self.until <= self.at(self.count):
            raise ValueError(f"the period ends at {self.until}, not within its last step")

    def at(self, index: int) -> datetime:
        return self.start + timedelta(seconds=index * self.step_seconds)

    @property
    def end(self) -> datetime:
        """The period's end: `until`, else one step after the last."""
        return self.until if self.until is not None else self.at(self.count)

    @property
    def seconds(self) -> float:
        """The period's length."""
        return (self.end - self.start).total_seconds()

    def lasting(self, first: int, following: int) -> float:
        """Seconds from step `first` until step `following` (`count`: the period's end)."""
        return (min(self.at(following), self.end) - self.at(first)).total_seconds()

    def index_at_or_after(self, moment: datetime) -> int:
        """The first step at or after `moment`."""
        return max(0, math.ceil((moment - self.start).total_seconds() / self.step_seconds))


@dataclass(frozen=True)
class Subject:
    """One workload to replay and how it behaves."""

    state: WorkloadState
    policy: Policy
    #: replicas while up: at the start if history says more than 0, else its replicas now, else the size a
    #: pause recorded, else min_replicas
    size: int
    gpus_per_replica: int
    #: seconds from a start to all Ready
    warm_up_seconds: float
    #: "measured" (its recorded warm-ups), "declared" (--warm-up) or "none" (0 s assumed)
    warm_up_source: str = "none"
    #: replicas at the start of the period (all Ready); None: `size`, as no history says
    start_replicas: int | None = None
    #: at 0 at the start, as paused by its policy (resumed by its rules), or by someone else (only a queue wakes it)
    start_paused_by_policy: bool = False

    @property
    def lead(self) -> float | None:
        """Its pre-warm lead throughout the replay: its warm-up is one it
        recorded (or the only one), so the slowest, which `prewarm: auto`
        uses, stays the same."""
        return prewarm_lead(self.policy, (*self.state.warm_ups, self.warm_up_seconds))


@dataclass(frozen=True)
class Act:
    """An action the replay took."""

    index: int
    at: datetime
    action: Action
    before: int
    after: int
    code: Code
    reason: str


@dataclass
class Wait:
    """Demand at zero: the queue asked while no replica was Ready."""

    since: datetime
    #: when a replica was Ready (None: still waiting when the period ended)
    served: datetime | None = None
    seconds: float = 0.0


@dataclass
class Replay:
    """One workload's replay."""

    subject: Subject
    steps: Steps
    acts: list[Act] = field(default_factory=list)
    #: (first step, replicas, Ready) each time either changed
    changes: list[tuple[int, int, int]] = field(default_factory=list)
    waits: list[Wait] = field(default_factory=list)
    #: steps whose decision held because a signal it needed was unknown
    unknown_steps: int = 0
    gpu_seconds: float = 0.0
    #: decide() calls made (the other steps reused the decision before)
    evaluations: int = 0

    @property
    def gpu_hours(self) -> float:
        return self.gpu_seconds / 3600

    @property
    def gpu_hours_always_up(self) -> float:
        s = self.subject
        return s.size * s.gpus_per_replica * self.steps.seconds / 3600

    @property
    def gpu_hours_saved(self) -> float:
        return self.gpu_hours_always_up - self.gpu_hours

    def count(self, *actions: Action) -> int:
        return sum(1 for act in self.acts if act.action in actions)

    def flaps(self, within_seconds: float) -> int:
        """Direction changes within `within_seconds`: a pause undone by a wake,
        or a wake undone by a pause, that soon."""
        moves = [act for act in self.acts if act.action in UP + DOWN]
        return sum(1 for a, b in pairwise(moves)
                   if (a.action in DOWN) != (b.action in DOWN)
                   and (b.at - a.at).total_seconds() < within_seconds)

    def spans(self) -> list[tuple[int, int, int, int]]:
        """(first step, step after the last, replicas, Ready) of each stretch
        where neither changed."""
        bounds = [*self.changes, (self.steps.count, 0, 0)]
        return [(first, following, replicas, ready)
                for (first, replicas, ready), (following, _, _) in pairwise(bounds)]

    def replicas_at(self) -> list[tuple[int, int]]:
        """(replicas, Ready) at every step, for the timeline."""
        out = []
        for first, following, replicas, ready in self.spans():
            out.extend([(replicas, ready)] * (following - first))
        return out


@dataclass(frozen=True)
class WindowRun:
    """From step `first` on (until the next run): what the windows say."""

    first: int
    key: int
    window: str


def window_runs(policy: Policy, steps: Steps, lead: float | None) -> list[WindowRun]:
    """The steps at which what the windows say (with the keep-up window
    `lead` ahead, for pre-warm) can change, found from the schedule's edges;
    equal keys mean the window rows answer alike."""
    schedule = policy.schedule
    if schedule is None:
        return [WindowRun(0, 0, NO_WINDOW)]
    compiled, ahead = schedule.compiled, timedelta(seconds=lead or 0)
    firsts, edge, last = {0}, next_edge(compiled, steps.start), steps.end + ahead
    while edge is not None and edge <= last:
        firsts.update(steps.index_at_or_after(moment) for moment in (edge, edge - ahead))
        edge = next_edge(compiled, edge)
    runs: list[WindowRun] = []
    seen: dict[tuple, int] = {}
    for first in sorted(index for index in firsts if index < steps.count):
        now = steps.at(first)
        state = compiled.state_at(now)
        later = compiled.state_at(now + ahead).keep_up if lead else None
        key = seen.setdefault((id(state.keep_down), id(state.keep_up), state.outside_down, id(later), state.off,
                               state.keep_down_why, state.keep_up_why), len(seen))
        window = (KEEP_DOWN if state.keep_down is not None else KEEP_UP if state.keep_up is not None
                  else OUTSIDE_DOWN if state.outside_down else NO_WINDOW)
        if not runs or runs[-1].key != key:
            runs.append(WindowRun(first, key, window))
    return runs


def _idle_class(policy: Policy, value: float | None):
    return None if value is None or policy.idle is None else value >= policy.idle.threshold


def _wake_class(policy: Policy, value: float | None):
    wake = policy.wake
    if value is None or wake is None:
        return None
    cap = policy.max_replicas if policy.max_replicas is not None else policy.min_replicas
    ratio = value / wake.target_per_replica
    return value > 0, value > wake.activation_threshold, min(math.ceil(ratio) if ratio < cap else cap, cap)


class _Run:
    """The cluster's side of a replay: the state each action leaves."""

    def __init__(self, subject: Subject, result: Replay) -> None:
        self.subject, self.result = subject, result
        replicas = subject.size if subject.start_replicas is None else subject.start_replicas
        paused = replicas == 0 and subject.start_paused_by_policy
        self.state = replace(subject.state, replicas=replicas, ready_replicas=replicas,
                             last_replicas=subject.size if paused else None,
                             paused_by=POLICY_PAUSE_PREFIX + subject.policy.name if paused else None,
                             manual_pause=False, pause_cause=None, started_at=None, ready_at=None)
        self.ready_due: datetime | None = None
        self.due_index = -1
        self.wait: Wait | None = None

    def act(self, index: int, now: datetime, decision: Decision) -> None:
        state, before = self.state, self.state.replicas
        self.result.acts.append(Act(index, now, decision.action, before, decision.replicas, decision.reason_code,
                                    decision.reason))
        if decision.action is Action.PAUSE:
            self.state = replace(state, replicas=0, ready_replicas=0, last_replicas=before,
                                 paused_by=POLICY_PAUSE_PREFIX + self.subject.policy.name,
                                 pause_cause=str(decision.reason_code))
            self.ready_due, self.due_index = None, -1
            return
        if decision.action is Action.RESUME:
            state = replace(state, last_replicas=None, paused_by=None, pause_cause=None)
        self.state = replace(state, replicas=decision.replicas, started_at=now, ready_at=None)
        self.ready_due = now + timedelta(seconds=self.subject.warm_up_seconds)
        self.due_index = self.result.steps.index_at_or_after(self.ready_due)

    def settle(self, index: int) -> None:
        """Replicas whose warm-up is over by step `index` are Ready."""
        due = self.ready_due
        if due is None or index < self.due_index:
            return
        state = self.state
        warm_ups = (*state.warm_ups, self.subject.warm_up_seconds)[-WARM_UPS_KEPT:]
        ready_at = due.replace(microsecond=0) + timedelta(seconds=1) if due.microsecond else due  # as stamped
        self.state = replace(state, ready_replicas=state.replicas, ready_at=ready_at, warm_ups=warm_ups)
        self.ready_due, self.due_index = None, -1
        if self.wait is not None and state.replicas > 0:
            self.wait.served, self.wait.seconds = due, (due - self.wait.since).total_seconds()
            self.wait = None

    def demand(self, now: datetime, queue: float) -> None:
        """Queue > 0 while no replica is Ready: a wait starts."""
        if queue > 0:
            self.wait = Wait(now)
            self.result.waits.append(self.wait)


def replay(subject: Subject, steps: Steps, *, windows: list[WindowRun], idle: Points | None = None,
           wake: Points | None = None, wake_unanswered: Sequence[tuple[int, int]] = (),
           reuse: bool = True) -> Replay:
    """What `subject.policy` would have done to `subject` at each of `steps`,
    given each signal's points (a step without one is unknown, but a wake
    signal's at zero with `absent: zero` where its answer came: `step_signals`)
    and its `window_runs`. `wake_unanswered`: [first, last] steps whose wake
    answer failed. `reuse=False` decides at every step (the fast path's oracle)."""
    result, policy = Replay(subject, steps), subject.policy
    run, idle_signal, wake_signal = _Run(subject, result), StepSignal(idle, steps), StepSignal(wake, steps,
                                                                                             wake_unanswered)
    keys = {window.first: window.key for window in windows}
    # Where anything a reused decision read can change: a signal's text, the windows.
    events = sorted({*idle_signal.changes, *wake_signal.changes, *keys, steps.count})
    decision: Decision | None = None
    key = last_key = windows[0].key
    state = last_classes = classes = None
    shown, index = (-1, -1), 0
    while index < steps.count:
        key = keys.get(index, key)
        run.settle(index)
        idle_signal.read(index)
        wake_signal.read(index)
        queue = wake_signal.wake_value(policy, replicas=run.state.replicas)
        classes = (_idle_class(policy, idle_signal.value), _wake_class(policy, queue))
        if queue and run.wait is None and run.state.ready_replicas == 0:
            run.demand(steps.at(index), queue)
        if (not reuse or decision is None or decision.reason_code not in TIMELESS or run.state is not state
                or classes != last_classes or key != last_key):
            decision = decide(policy=policy, workload=run.state,
                              signals=Signals(idle_signal.value, queue), now=steps.at(index))
            result.evaluations += 1
        state, last_classes, last_key = run.state, classes, key
        following = index + 1
        if decision.changes:
            run.act(index, steps.at(index), decision)
            run.settle(index)  # no warm-up: Ready at once
            decision = None
        elif reuse and decision.reason_code in TIMELESS:  # the same until the next event: skip to it
            following = events[bisect_right(events, index)]
            if run.due_index >= 0:
                following = min(following, max(run.due_index, index + 1))
        if decision is not None and decision.reason_code is Code.METRICS_UNKNOWN:
            result.unknown_steps += following - index
        if (run.state.replicas, run.state.ready_replicas) != shown:
            shown = (run.state.replicas, run.state.ready_replicas)
            result.changes.append((index, *shown))
        index = following
    _account(result)
    if run.wait is not None:
        run.wait.seconds = (steps.end - run.wait.since).total_seconds()
    return result


def _account(result: Replay) -> None:
    """GPU-seconds held: replicas hold their GPUs from the step they are asked
    for until the next change, the last ones until the period's end."""
    gpus, steps = result.subject.gpus_per_replica, result.steps
    result.gpu_seconds = sum(replicas * gpus * steps.lasting(first, following)
                             for first, following, replicas, _ in result.spans())
