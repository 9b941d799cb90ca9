"""Time windows: when a policy keeps workloads up or down.

A window is either a pair of cron expressions, `start` and `end`, in one IANA
time zone (`cron`), or the compact `when` form such as `Mon-Fri 08:00-20:00`
(`compact`: wall-clock spans of the week, read as a person reads them). A
cron window is active at `now` iff its most recent start at or before `now`
is later than its most recent end at or before `now`: start inclusive, end
exclusive. A compact window is active while `now` is inside one of its
spans. All instants are compared in UTC, so daylight saving time moves a
window's wall-clock edges, never its meaning (see `wallclock`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Protocol
from zoneinfo import ZoneInfo

from scaler.decide.compact import WeeklySpans
from scaler.decide.cron import LocalCron, cron_trigger, standard_day_of_week
from scaler.decide.wallclock import LAST_INSTANT, UTC, WindowError, utc, zone

__all__ = ["UTC", "Mode", "Outside", "Schedule", "ScheduleState", "Window", "WindowError", "cron_trigger",
           "next_edge", "standard_day_of_week", "zone"]

_ONE_MICROSECOND = timedelta(microseconds=1)
_CACHE_SIZE = 64


class Mode(str, Enum):
    UP = "up"
    DOWN = "down"


class Outside(str, Enum):
    """What applies when no window is active."""

    SIGNALS = "signals"
    DOWN = "down"


class _Edges(Protocol):
    def active_at(self, now: datetime) -> bool: ...

    def next_edge(self, after: datetime) -> datetime | None: ...


class CronPair:
    """A window between a start and an end cron expression."""

    __slots__ = ("end", "start")

    def __init__(self, start: str, end: str, tz: ZoneInfo) -> None:
        self.start, self.end = LocalCron(start, tz), LocalCron(end, tz)
        if str(self.start.trigger) == str(self.end.trigger):
            raise WindowError(f"start '{start}' and end '{end}' fire at the same times, "
                              "so the window is never open")

    def active_at(self, now: datetime) -> bool:
        """Start inclusive, end exclusive; a start and end firing at the same
        instant leave the window closed."""
        started = self.start.last_at_or_before(now)
        if started is None:
            return False
        ended = self.end.next_at_or_after(started)
        return ended is None or ended > now

    def next_edge(self, after: datetime) -> datetime | None:
        """The first start or end strictly after `after`."""
        if after >= LAST_INSTANT:
            return None
        after = after + _ONE_MICROSECOND
        fires = [fire for fire in (self.start.next_at_or_after(after), self.end.next_at_or_after(after))
                 if fire is not None]
        return min(fires) if fires else None


@dataclass(frozen=True, eq=False)
class Window:
    """One compiled window: `start` and `end` cron, or `when`.
    `description` is what a reason shows, e.g.
    "'business-hours' (Mon-Fri 08:00-20:00 Europe/Berlin)"."""

    name: str
    mode: Mode
    start: str | None
    end: str | None
    tz: ZoneInfo
    when: str | None = None
    _edges: _Edges = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.when is not None:
            edges: _Edges = WeeklySpans.parse(self.when, self.tz)
        elif self.start is None or self.end is None:
            raise WindowError("a window needs start and end (cron), or when")
        else:
            edges = CronPair(self.start, self.end, self.tz)
        object.__setattr__(self, "_edges", edges)

    @classmethod
    def from_when(cls, when: str, *, name: str, mode: Mode, tz: ZoneInfo) -> Window:
        return cls(name=name, mode=mode, start=None, end=None, tz=tz, when=when)

    @property
    def hours(self) -> str:
        text = self.when if self.when is not None else f"start '{self.start}', end '{self.end}'"
        return f"{text} {self.tz.key}"

    @property
    def description(self) -> str:
        return f"'{self.name}' ({self.hours})"

    def active_at(self, now: datetime) -> bool:
        return self._edges.active_at(utc(now))

    def next_edge(self, after: datetime) -> datetime | None:
        """The first instant strictly after `after` (UTC) at which the window
        opens or closes (for a cron window: its start or end fires); None if
        it never will."""
        return self._edges.next_edge(utc(after))


@dataclass(frozen=True)
class ScheduleState:
    """Which windows hold at one instant. A keep-down window beats a keep-up
    window; `outside_down` is true when no window is active and the
    schedule keeps workloads down outside its windows."""

    keep_down: Window | None = None
    keep_up: Window | None = None
    outside_down: bool = False


@dataclass(frozen=True, eq=False)
class Schedule:
    """A policy's windows in one time zone. `state_at(now)` is computed once
    per instant and remembered (every workload of a tick asks with the same
    `now`)."""

    windows: tuple[Window, ...]
    tz: ZoneInfo
    outside: Outside = Outside.SIGNALS
    _states: dict = field(default_factory=dict, init=False, repr=False)

    def state_at(self, now: datetime) -> ScheduleState:
        state = self._states.get(now)
        if state is None:
            state = self._compute(now)
            if len(self._states) >= _CACHE_SIZE:
                self._states.clear()
            self._states[now] = state
        return state

    def _compute(self, now: datetime) -> ScheduleState:
        keep_down = keep_up = None
        for window in self.windows:
            if window.mode is Mode.DOWN and keep_down is None and window.active_at(now):
                keep_down = window
            elif window.mode is Mode.UP and keep_up is None and window.active_at(now):
                keep_up = window
        outside_down = self.outside is Outside.DOWN and keep_down is None and keep_up is None
        return ScheduleState(keep_down=keep_down, keep_up=keep_up, outside_down=outside_down)

    @property
    def up_windows(self) -> tuple[Window, ...]:
        return tuple(window for window in self.windows if window.mode is Mode.UP)


def next_edge(schedule: Schedule, after: datetime) -> datetime | None:
    """The next instant strictly after `after` at which any window of
    `schedule` starts or ends (UTC), or None if none ever will. The daemon
    runs an extra tick there; the regular ticks do not depend on it."""
    edges = [edge for window in schedule.windows if (edge := window.next_edge(after)) is not None]
    return min(edges) if edges else None
