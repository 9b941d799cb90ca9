"""The decision: what one policy wants for one workload at one instant.

Pure: no I/O, no clock. `decide` takes everything it needs as arguments and
returns a frozen `Decision` whose `reason` answers "why did it do that?" and
whose `reason_code` is short enough for a metric label. The precedence of the
rules is the table in docs/policies.md; tests/test_decisions.py is that table.

A signal value is `float | None`; None (and NaN, ±Inf) means unknown, and an
unknown signal never leads to a scale-down. Only a schedule (a keep-down
window, or `outside: down`) may scale down while metrics are unavailable,
because it does not depend on them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, StrEnum

from scaler.decide.annotations import EXCLUDE, OVERRIDE_UNTIL
from scaler.decide.policies import OnUnknown, Policy
from scaler.decide.windows import ScheduleState

#: Namespaces never managed, whatever the policies say; the daemon adds its own.
DEFAULT_EXCLUDED_NAMESPACES: frozenset[str] = frozenset({"kube-system"})
#: `paused_by` of a pause a policy made: "policy/<name>".
POLICY_PAUSE_PREFIX = "policy/"
MANUAL = "manual"

_NO_WINDOWS = ScheduleState()


class Action(str, Enum):
    PAUSE = "pause"  # scale to 0 and record the current size
    RESUME = "resume"  # from 0 back up; clears the pause record
    SCALE_UP = "scale_up"  # running, more replicas
    HOLD = "hold"  # change nothing
    CONFLICT = "conflict"  # two policies of equal priority match; change nothing
    SKIP = "skip"  # no policy matches; not managed


class Code(StrEnum):
    """The machine-readable reason, one per row of the precedence table."""

    NO_POLICY = "no-policy"
    CONFLICT = "conflict"
    MANUAL_PAUSE = "manual-pause"
    KEEP_DOWN_WINDOW = "keep-down-window"
    QUEUE_WAKE = "queue-wake"
    QUEUE_SCALE_UP = "queue-scale-up"
    KEEP_UP_WINDOW = "keep-up-window"
    OUTSIDE_DOWN = "outside-down"
    WINDOW_ENDED = "keep-down-window-ended"
    HUMAN_OVERRIDE = "human-override"
    METRICS_UNKNOWN = "metrics-unknown"
    AT_ZERO = "at-zero"
    BUSY = "busy"
    STARTUP_GRACE = "startup-grace"
    SCALE_DOWN_DELAY = "scale-down-delay"
    IDLE_TIMEOUT = "idle-timeout"
    NO_RULE = "no-rule"


@dataclass(frozen=True)
class WorkloadState:
    """What the decision needs to know about one workload, read from the
    cluster once per tick."""

    kind: str
    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    replicas: int = 0
    #: The size recorded by a pause (never 0), or None.
    last_replicas: int | None = None
    #: "policy/<name>" or "manual" from the pause record, or None.
    paused_by: str | None = None
    #: The durable manual-pause annotation is set.
    manual_pause: bool = False
    #: When the newest pod became Ready.
    ready_since: datetime | None = None
    #: When the workload was last scaled up or resumed.
    last_scaled_up_at: datetime | None = None
    #: The reason code of the rule that paused it (scaler.io/pause-cause), if recorded.
    pause_cause: str | None = None

    @property
    def paused_by_policy(self) -> bool:
        """True if scaler's own policy paused it (so scaler may resume it)."""
        return self.paused_by is not None and self.paused_by.startswith((POLICY_PAUSE_PREFIX, "policy:"))

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Signals:
    """One value per signal for one workload; None = unknown (no series,
    NaN, Inf, a query error or timeout). `idle` is the signal's maximum over
    the policy's idle duration."""

    idle: float | None = None
    queue: float | None = None


@dataclass(frozen=True)
class Decision:
    action: Action
    #: The target replica count; the current count for hold/conflict/skip.
    replicas: int
    reason: str
    reason_code: Code
    #: The policy that decided, if one did.
    policy: str | None = None

    @property
    def changes(self) -> bool:
        return self.action in (Action.PAUSE, Action.RESUME, Action.SCALE_UP)


@dataclass(frozen=True)
class Conflict:
    """Several policies match one workload with the same, highest priority."""

    policies: tuple[str, ...]
    priority: int

    def __str__(self) -> str:
        names = " and ".join(repr(name) for name in self.policies)
        return f"policies {names} all match with priority {self.priority}"


def is_excluded(workload: WorkloadState, *,
                excluded_namespaces: Iterable[str] = DEFAULT_EXCLUDED_NAMESPACES) -> bool:
    """Never managed: a namespace on the global exclusion list (kube-system and
    the daemon's own), or the annotation scaler.io/exclude: "true"."""
    return workload.namespace in excluded_namespaces or workload.annotations.get(EXCLUDE) == "true"


def select_policy(policies: Iterable[Policy], workload: WorkloadState, *,
                  namespace_labels: Mapping[str, str]) -> Policy | Conflict | None:
    """The highest-priority policy matching the workload; a Conflict if
    several share that priority; None if none matches."""
    best: Policy | None = None
    tied: list[str] = []
    kind, namespace, labels = workload.kind, workload.namespace, workload.labels
    for policy in policies:
        if best is not None and policy.priority < best.priority:
            continue  # cannot win: skip the matching
        if not policy.targets.matches(kind=kind, namespace=namespace, labels=labels,
                                      namespace_labels=namespace_labels):
            continue
        if best is None or policy.priority > best.priority:
            best, tied = policy, []
        else:
            tied.append(policy.name)
    if best is not None and tied:
        return Conflict((best.name, *tied), best.priority)
    return best


def decide(*, policy: Policy | Conflict | None, workload: WorkloadState, signals: Signals,
           now: datetime) -> Decision:
    """What `policy` wants for `workload` at `now` (tz-aware), given `signals`.

    Precedence, first match wins: manual pause > keep-down window > wake or
    scale-up by queue > keep-up window > `outside: down` > unknown signals
    > idle timeout > hold."""
    current = workload.replicas
    if policy is None:
        return Decision(Action.SKIP, current, "no policy matches this workload", Code.NO_POLICY)
    if isinstance(policy, Conflict):
        return Decision(Action.CONFLICT, current, f"{policy}; left alone until one has a higher priority",
                        Code.CONFLICT)
    return _Deciding(policy, workload, signals, now).decide()


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 time as Kubernetes and scaler write them; None if absent,
    unreadable or without a zone."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _known(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _seconds_between(earlier: datetime, later: datetime) -> float:
    """Real elapsed seconds. Not `later - earlier`: Python subtracts two
    datetimes sharing a tzinfo by wall clock, which is off by the DST shift."""
    return later.timestamp() - earlier.timestamp()


def human_duration(seconds: float) -> str:
    """90 -> '1m30s', 5400 -> '1h30m', 0.5 -> '0.5s'."""
    if seconds < 60:
        return f"{round(seconds, 1):g}s"
    whole = int(round(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    return "".join(f"{amount}{unit}" for amount, unit in parts if amount)


class _Deciding:
    """One decision, spelled out rule by rule (kept out of `decide` so each
    rule reads on its own)."""

    __slots__ = ("policy", "workload", "signals", "now", "current")

    def __init__(self, policy: Policy, workload: WorkloadState, signals: Signals, now: datetime) -> None:
        self.policy = policy
        self.workload = workload
        self.signals = signals
        self.now = now
        self.current = workload.replicas

    def _decision(self, action: Action, replicas: int, reason: str, code: Code) -> Decision:
        return Decision(action, replicas, reason, code, self.policy.name)

    def _hold(self, reason: str, code: Code) -> Decision:
        return Decision(Action.HOLD, self.current, reason, code, self.policy.name)

    def _resume_size(self) -> tuple[int, str]:
        last = self.workload.last_replicas
        if last is not None and last > 0:
            return last, f"{last} recorded at pause"
        return self.policy.min_replicas, f"min_replicas {self.policy.min_replicas}, nothing recorded"

    def decide(self) -> Decision:
        policy, workload, current = self.policy, self.workload, self.current
        if workload.manual_pause:
            return self._hold("paused by hand (scaler.io/paused=true); only a manual resume wakes it",
                              Code.MANUAL_PAUSE)
        if current > 0 and workload.last_replicas is not None and workload.paused_by_policy:
            return self._hold(f"someone set replicas to {current} while {workload.paused_by} had it paused "
                              f"(recorded {workload.last_replicas}): leaving {current}", Code.HUMAN_OVERRIDE)
        until = parse_time(workload.annotations.get(OVERRIDE_UNTIL))
        if until is not None and self.now < until:
            return self._hold(f"resized by hand while paused: left alone until {until:%Y-%m-%d %H:%M %Z} "
                              f"({OVERRIDE_UNTIL})", Code.HUMAN_OVERRIDE)
        state = policy.schedule.compiled.state_at(self.now) if policy.schedule is not None else _NO_WINDOWS

        if state.keep_down is not None:
            window = f"keep-down window {state.keep_down.description} is active"
            if current > 0:
                return self._decision(Action.PAUSE, 0, f"{window}: pausing {current} replicas",
                                      Code.KEEP_DOWN_WINDOW)
            return self._hold(f"{window}: staying at 0", Code.KEEP_DOWN_WINDOW)

        demand: str | None = None  # "queue 3 > activation threshold 0" while the queue wants the workload up
        wake = policy.wake
        if wake is not None and _known(self.signals.queue):
            queue = self.signals.queue
            assert queue is not None
            needed = math.ceil(queue / wake.target_per_replica)
            cap = policy.max_replicas if policy.max_replicas is not None else policy.min_replicas
            cap_text = "max_replicas" if policy.max_replicas is not None else "min_replicas (no max_replicas)"
            wanted = min(needed, cap)
            sizing = f"ceil({queue:g}/{wake.target_per_replica:g}) = {needed}" + \
                     (f", capped at {cap_text} {cap}" if needed > cap else "")
            if queue > wake.activation_threshold:
                demand = f"queue {queue:g} > activation threshold {wake.activation_threshold:g}"
            if current == 0 and demand is not None:
                base, base_text = self._resume_size()
                target = max(base, wanted)
                return self._decision(Action.RESUME, target, f"{demand}: waking to {target} ({sizing}; {base_text})",
                                      Code.QUEUE_WAKE)
            if current > 0 and wanted > current:
                return self._decision(Action.SCALE_UP, wanted,
                                      f"queue {queue:g} needs more replicas: {current} -> {wanted} ({sizing})",
                                      Code.QUEUE_SCALE_UP)

        if state.keep_up is not None:
            window = f"keep-up window {state.keep_up.description} is active"
            if current == 0 and workload.paused_by_policy:
                target, target_text = self._resume_size()
                return self._decision(Action.RESUME, target, f"{window}: resuming to {target} ({target_text})",
                                      Code.KEEP_UP_WINDOW)
            if current == 0:
                return self._hold(f"{window}, but scaler did not pause this workload: staying at 0",
                                  Code.KEEP_UP_WINDOW)
            return self._hold(f"{window}: no idle scale-down", Code.KEEP_UP_WINDOW)

        if state.outside_down:
            assert policy.schedule is not None
            hours = "; ".join(window.description for window in policy.schedule.compiled.up_windows) or "none"
            outside = f"outside every keep-up window ({hours}) with outside: down"
            if current == 0:
                return self._hold(f"{outside}: staying at 0", Code.OUTSIDE_DOWN)
            if demand is not None:
                return self._hold(f"{outside}, but {demand}: staying up", Code.BUSY)
            idle, value = policy.idle, self.signals.idle
            if idle is not None and _known(value) and value >= idle.threshold:
                # Serving requests is being busy, even when none wait in a queue.
                return self._hold(f"{outside}, but busy: idle signal max {value:g} over the last "
                                  f"{human_duration(idle.duration_seconds)}, not below threshold "
                                  f"{idle.threshold:g}: staying up", Code.BUSY)
            waiting = self._waiting(f"{outside}: would pause")
            if waiting is not None:
                return waiting
            return self._decision(Action.PAUSE, 0, f"{outside}: pausing {current} replicas", Code.OUTSIDE_DOWN)

        if (current == 0 and workload.pause_cause == Code.KEEP_DOWN_WINDOW
                and workload.paused_by == POLICY_PAUSE_PREFIX + policy.name):
            target, target_text = self._resume_size()
            return self._decision(Action.RESUME, target, f"the keep-down window that paused it has ended: "
                                  f"resuming to {target} ({target_text})", Code.WINDOW_ENDED)

        unknown = self._unknown_signals()
        if unknown:
            what = f"metrics unavailable: {' and '.join(unknown)} unknown"
            if policy.on_unknown is OnUnknown.RESUME and current == 0 and workload.paused_by_policy:
                target, target_text = self._resume_size()
                return self._decision(Action.RESUME, target,
                                      f"{what}; on_unknown: resume wakes what scaler paused: resuming to "
                                      f"{target} ({target_text})", Code.METRICS_UNKNOWN)
            return self._hold(f"{what}: holding at {current} (never scale down on missing data)",
                              Code.METRICS_UNKNOWN)

        if current == 0:
            if workload.paused_by_policy:
                waiting_for = "waiting for the queue" if wake is not None else "no wake rule"
                return self._hold(f"paused by {workload.paused_by}; {waiting_for}: staying at 0", Code.AT_ZERO)
            return self._hold("at 0 replicas and not paused by scaler: left as it is", Code.AT_ZERO)

        if demand is not None:
            return self._hold(f"busy: {demand}", Code.BUSY)

        idle = policy.idle
        if idle is not None:
            value = self.signals.idle
            assert value is not None
            over = f"max {value:g} over the last {human_duration(idle.duration_seconds)}"
            if value >= idle.threshold:
                return self._hold(f"busy: idle signal {over}, not below threshold {idle.threshold:g}", Code.BUSY)
            idle_text = f"idle: signal {over}, below threshold {idle.threshold:g}"
            waiting = self._waiting(f"{idle_text}; would pause")
            if waiting is not None:
                return waiting
            return self._decision(Action.PAUSE, 0, f"{idle_text}: pausing {current} replicas", Code.IDLE_TIMEOUT)

        return self._hold("no rule applies (no window active, no idle rule, no queue demand)", Code.NO_RULE)

    def _unknown_signals(self) -> list[str]:
        """The signals this decision depends on that are unknown. The idle
        signal only matters for a running workload: at zero its pods, and so
        often its series, are gone, and that is no reason to hold or resume."""
        unknown = []
        if self.policy.idle is not None and self.current > 0 and not _known(self.signals.idle):
            unknown.append("idle signal")
        if self.policy.wake is not None and not _known(self.signals.queue):
            unknown.append("queue signal")
        return unknown

    def _waiting(self, would: str) -> Decision | None:
        """Hold during startup grace or the scale-down delay, saying how long is left."""
        policy, workload, now = self.policy, self.workload, self.now
        grace = policy.startup_grace_seconds
        if grace > 0 and workload.ready_since is not None:
            ready_for = _seconds_between(workload.ready_since, now)
            if ready_for < grace:
                return self._hold(f"{would}, but the newest pod has been Ready for only "
                                  f"{human_duration(max(ready_for, 0))}: startup grace "
                                  f"{human_duration(grace)} leaves {human_duration(grace - max(ready_for, 0))}",
                                  Code.STARTUP_GRACE)
        delay = policy.scale_down_delay_seconds
        if delay > 0 and workload.last_scaled_up_at is not None:
            since = _seconds_between(workload.last_scaled_up_at, now)
            if since < delay:
                return self._hold(f"{would}, but it was scaled up {human_duration(max(since, 0))} ago: "
                                  f"scale_down_delay {human_duration(delay)} leaves "
                                  f"{human_duration(delay - max(since, 0))}", Code.SCALE_DOWN_DELAY)
        return None
