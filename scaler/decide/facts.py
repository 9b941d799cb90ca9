"""What the precedence rows read: the facts of one decision, worked out once
and only as far as a row asks, and the pre-warm arithmetic the daemon's
edge scheduling and `plan` share with the pre-warm row. Pure."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeGuard

from scaler.decide.decisions import Action, Code, Decision, Signals, WorkloadState
from scaler.decide.policies import Policy, WakeSignal
from scaler.decide.times import human_duration, later, seconds_between
from scaler.decide.windows import ScheduleState, next_edge

_NO_WINDOWS = ScheduleState()


_MAX_INT32 = 2**31 - 1


def known(value: float | None) -> TypeGuard[float]:
    return value is not None and math.isfinite(value)


def beside(value: float, other: float) -> str:
    """`value` for a reason that compares it with `other` (a value with its
    threshold, or a threshold with its value): as `:g` prints it, or in full
    where that would print both alike and is not `value` exactly ("max 5,
    below threshold 5" for 4.9999999 explains nothing; "max 1234568, not
    below threshold 1.23457e+06" reads as the opposite)."""
    text = f"{value:g}"
    if value == other or text != f"{other:g}" or float(text) == value:
        return text
    return repr(float(value)).removesuffix(".0")


@dataclass(frozen=True, slots=True)
class Demand:
    """What a known queue asks for."""

    queue: float
    #: ceil(queue / target_per_replica)
    needed: int
    #: the most the policy allows: max_replicas, else min_replicas
    cap: int
    wake: WakeSignal
    capped_by_max: bool

    @property
    def wanted(self) -> int:
        return min(self.needed, self.cap)

    @property
    def active(self) -> str | None:
        """'queue 3 > activation threshold 0' while it wants the workload up, else None."""
        if self.queue > self.wake.activation_threshold:
            threshold = self.wake.activation_threshold
            return f"queue {beside(self.queue, threshold)} > activation threshold {beside(threshold, self.queue)}"
        return None

    @property
    def sizing(self) -> str:
        """How `wanted` was worked out, for the reason."""
        text = f"ceil({self.queue:g}/{self.wake.target_per_replica:g}) = {self.needed}"
        if self.needed > self.cap:
            what = "max_replicas" if self.capped_by_max else "min_replicas (no max_replicas)"
            text += f", capped at {what} {self.cap}"
        return text


_UNSET: Any = object()


class Facts:
    """Everything the rows read, for one decision; what only some rows need
    is worked out on first use (plain slots: this runs 10,000 times a tick)."""

    __slots__ = ("_demand", "_lead", "_windows", "current", "now", "policy", "signals", "workload")

    def __init__(self, policy: Policy, workload: WorkloadState, signals: Signals, now: datetime) -> None:
        self.policy, self.workload, self.signals, self.now = policy, workload, signals, now
        self.current = workload.replicas
        self._windows = self._demand = self._lead = _UNSET

    @property
    def windows(self) -> ScheduleState:
        if self._windows is _UNSET:
            schedule = self.policy.schedule
            self._windows = schedule.compiled.state_at(self.now) if schedule is not None else _NO_WINDOWS
        return self._windows

    @property
    def demand(self) -> Demand | None:
        if self._demand is _UNSET:
            wake, queue, policy = self.policy.wake, self.signals.wake, self.policy
            if wake is None or queue is None or not math.isfinite(queue):
                self._demand = None
            else:
                cap = policy.max_replicas if policy.max_replicas is not None else policy.min_replicas
                ratio = queue / wake.target_per_replica  # may be inf for a huge queue: never ceil() that
                needed = math.ceil(ratio) if ratio < _MAX_INT32 else _MAX_INT32
                self._demand = Demand(queue, needed, cap, wake, policy.max_replicas is not None)
        return self._demand

    @property
    def demanded(self) -> str | None:
        return self.demand.active if self.demand is not None else None

    @property
    def prewarm_lead(self) -> float | None:
        if self._lead is _UNSET:
            self._lead = prewarm_lead(self.policy, self.workload.warm_ups)
        return self._lead

    def decision(self, action: Action, replicas: int, reason: str, code: Code) -> Decision:
        return Decision(action, replicas, reason, code, self.policy.name)

    def hold(self, reason: str, code: Code) -> Decision:
        return Decision(Action.HOLD, self.current, reason, code, self.policy.name)

    def resume(self, reason: Callable[[int, str], str], code: Code, *, at_least: int = 0) -> Decision:
        """Back to the recorded size (or min_replicas), and at least
        `at_least` (a queue's demand) for a kind scaler may size; `reason(target,
        where the size came from)`."""
        last = self.workload.last_replicas
        if last is not None and last > 0:
            base, source = last, f"{last} recorded at pause"
        else:
            base = self.policy.min_replicas
            source = f"min_replicas {base}, {self.workload.unrestorable or 'nothing recorded'}"
        target = max(base, at_least) if self.workload.sizable else self.workload.started_replicas
        if target != base and not self.workload.sizable:
            source = "started, not sized: it runs at the size its own controller gives it"
        return self.decision(Action.RESUME, target, reason(target, source), code)

    def keep_up(self, window: str, code: Code, *, running: str) -> Decision:
        """A keep-up window, open or about to: resume what scaler paused, hold the rest."""
        if self.current == 0 and self.workload.paused_by_policy:
            return self.resume(lambda target, source: f"{window}: resuming to {target} ({source})", code)
        if self.current == 0:
            return self.hold(f"{window}, but scaler did not pause this workload: staying at 0", code)
        return self.hold(f"{window}: {running}", code)

    def gave_up_loading(self) -> str | None:
        """'not all Ready 31m after its start, past max_startup 30m', when the
        `starting` protection ran out (a crash loop, a broken model): a pause
        then says why a loading workload was not protected."""
        workload, policy = self.workload, self.policy
        if self.current == 0 or workload.ready_replicas >= self.current or workload.started_at is None:
            return None
        since = max(seconds_between(workload.started_at, self.now), 0)
        if since < policy.max_startup_seconds:
            return None
        return (f"{workload.ready_replicas} of {self.current} replicas Ready {human_duration(since)} after its start, "
                f"past max_startup {human_duration(policy.max_startup_seconds)}")

    def waiting(self, would: str) -> Decision | None:
        """Hold during the scale-down delay, saying how long is left."""
        policy, workload, now = self.policy, self.workload, self.now
        delay = policy.scale_down_delay_seconds
        if delay > 0 and workload.started_at is not None:
            since = max(seconds_between(workload.started_at, now), 0)
            if since < delay:
                return self.hold(f"{would}, but it was scaled up {human_duration(since)} ago: "
                                 f"scale_down_delay {human_duration(delay)} leaves {human_duration(delay - since)}",
                                 Code.SCALE_DOWN_DELAY)
        return None

    def unknown_signals(self) -> list[str]:
        """The signals ("idle", "wake") this decision depends on that are
        unknown. The idle signal only matters for a running workload: at zero
        its pods, and so often its series, are gone, and that is no reason to
        hold or resume."""
        unknown = []
        if self.policy.idle is not None and self.current > 0 and not known(self.signals.idle):
            unknown.append("idle")
        if self.policy.wake is not None and not known(self.signals.wake):
            unknown.append("wake")
        return unknown


def prewarm_lead(policy: Policy, warm_ups: tuple[float, ...]) -> float | None:
    """How far ahead of a keep-up window to resume: the policy's duration, or
    for 'auto' the slowest of the recent warm-ups (capped at prewarm_max);
    None without pre-warm or before a first warm-up was measured."""
    if policy.prewarm is None or policy.schedule is None:
        return None
    if policy.prewarm != "auto":
        return float(policy.prewarm)
    return min(max(warm_ups), policy.prewarm_max_seconds) if warm_ups else None


def next_prewarm(policy: Policy, warm_ups: tuple[float, ...], now: datetime) -> tuple[datetime, float] | None:
    """(when, lead) of the next pre-warm: a keep-up window opening at
    when + lead, seen from now; None without one in the schedule's horizon."""
    lead = prewarm_lead(policy, warm_ups)
    if lead is None:
        return None
    assert policy.schedule is not None
    schedule, ahead = policy.schedule.compiled, timedelta(seconds=lead)
    edge = later(now, lead)
    if edge is None:
        return None
    for _ in range(8):  # a few edges: the next opening of a keep-up window
        following = next_edge(schedule, edge)
        if following is None:
            return None
        edge = following
        if schedule.state_at(edge).keep_up is not None:
            return edge - ahead, lead
    return None


