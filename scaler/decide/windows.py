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

from scaler.decide.calendars import Calendar, Occasion
from scaler.decide.compact import WeeklySpans
from scaler.decide.cron import LocalCron, cron_trigger, standard_day_of_week
from scaler.decide.wallclock import LAST_INSTANT, UTC, WindowError, utc, zone

__all__ = ["UTC", "Check", "Mode", "Outside", "Schedule", "ScheduleState", "Window", "WindowError", "cron_trigger",
           "next_edge", "standard_day_of_week", "zone"]

_ONE_MICROSECOND = timedelta(microseconds=1)
_CACHE_SIZE = 64
#: How many edges of its parts a window with calendars looks at for its next edge.
_MAX_STEPS = 2000
#: Starts in a row that an end at the same instant keeps closed, at most, before a
#: cron window is said never to open (refused at load; a bound on the search after).
_MAX_COINCIDENT_STARTS = 4096
#: Where the load-time check looks for a start that opens the window.
_CHECKED_FROM = datetime(2000, 1, 1, tzinfo=UTC)


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

    def next_change(self, after: datetime) -> datetime | None: ...


class CronPair:
    """A window between a start and an end cron expression."""

    __slots__ = ("end", "start")

    def __init__(self, start: str, end: str, tz: ZoneInfo) -> None:
        self.start, self.end = LocalCron(start, tz), LocalCron(end, tz)
        if str(self.start.trigger) == str(self.end.trigger) or self._opening(_CHECKED_FROM) is None:
            raise WindowError(f"start '{start}' and end '{end}' fire at the same times (every start falls on "
                              "an end), so the window is never open")

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

    def next_change(self, after: datetime) -> datetime | None:
        """The first instant strictly after `after` at which `active_at`
        changes: open, the first end; closed, the first start with no end
        at the same instant."""
        if after >= LAST_INSTANT:
            return None
        moment = after + _ONE_MICROSECOND
        if self.active_at(after):
            return self.end.next_at_or_after(moment)
        return self._opening(moment)

    def _opening(self, moment: datetime) -> datetime | None:
        """The first start at or after `moment` that no end at the same
        instant keeps closed; None if there is none. Starts at the wall times
        of ends are skipped a month at a time (a start every minute against
        an end every minute but on the 31st opens on the 31st); a start and
        an end at two wall times placed at one instant (a skipped hour) are
        skipped one by one, at most _MAX_COINCIDENT_STARTS of them."""
        for _ in range(_MAX_COINCIDENT_STARTS):
            start = self.start.next_not_of(self.end, moment)
            if start is None or self.end.next_at_or_after(start) != start:
                return start
            moment = start + _ONE_MICROSECOND
        return None


class _Always:
    """The time part of a window given only calendars: always."""

    def active_at(self, now: datetime) -> bool:
        return True

    def next_edge(self, after: datetime) -> datetime | None:
        return None

    def next_change(self, after: datetime) -> datetime | None:
        return None


@dataclass(frozen=True, slots=True)
class Check:
    """A window at one instant: active or not, and the calendar day (or
    event) that decided it, if one did: `why` is 'today: Epiphany (DE-BY)'
    for a window open by its time but closed by an `except` calendar, or
    open only because an `on` calendar holds; 'now: Offsite (offsites)' for
    a timed event; '' when no calendar had a say."""

    active: bool
    why: str = ""


_INACTIVE, _ACTIVE = Check(False), Check(True)


def _because(occasions: tuple[Occasion, ...]) -> str:
    when = "today" if any(occasion.whole_day for occasion in occasions) else "now"
    return f"{when}: {'; '.join(dict.fromkeys(occasion.name for occasion in occasions))}"


@dataclass(frozen=True, eq=False)
class Window:
    """One compiled window: `start` and `end` cron, or `when`, or neither
    (always, as far as time goes); active only on the days of the `on`
    calendars (if any) and never on those of the `unless` calendars.
    `description` is what a reason shows, e.g.
    "'business-hours' (Mon-Fri 08:00-20:00 Europe/Berlin, except on holidays)"."""

    name: str
    mode: Mode
    start: str | None
    end: str | None
    tz: ZoneInfo
    when: str | None = None
    on: tuple[Calendar, ...] = ()
    unless: tuple[Calendar, ...] = ()
    _edges: _Edges = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.when is not None:
            edges: _Edges = WeeklySpans.parse(self.when, self.tz)
        elif self.start is not None and self.end is not None:
            edges = CronPair(self.start, self.end, self.tz)
        elif self.start is None and self.end is None and (self.on or self.unless):
            edges = _Always()
        else:
            raise WindowError("a window needs start and end (cron), when, or calendars")
        object.__setattr__(self, "_edges", edges)

    @classmethod
    def from_when(cls, when: str, *, name: str, mode: Mode, tz: ZoneInfo) -> Window:
        return cls(name=name, mode=mode, start=None, end=None, tz=tz, when=when)

    @property
    def timed(self) -> bool:
        """Whether it has a time part (when, or start and end)."""
        return not isinstance(self._edges, _Always)

    @property
    def hours(self) -> str:
        if self.when is not None:
            text = f"{self.when} {self.tz.key}"
        elif self.start is not None:
            text = f"start '{self.start}', end '{self.end}' {self.tz.key}"
        else:
            text = self.tz.key
        if self.on:
            text += f", only on {', '.join(calendar.name for calendar in self.on)}"
        if self.unless:
            text += f", except on {', '.join(calendar.name for calendar in self.unless)}"
        return text

    @property
    def description(self) -> str:
        return f"'{self.name}' ({self.hours})"

    def check(self, now: datetime) -> Check:
        now = utc(now)
        if not self._edges.active_at(now):
            return _INACTIVE
        on: tuple[Occasion, ...] = ()
        if self.on:
            on = tuple(occasion for calendar in self.on for occasion in calendar.occasions_at(now, self.tz))
            if not on:
                return _INACTIVE
        off = tuple(occasion for calendar in self.unless for occasion in calendar.occasions_at(now, self.tz))
        if off:
            return Check(False, _because(off))
        return Check(True, _because(on)) if on else _ACTIVE

    def active_at(self, now: datetime) -> bool:
        if not self.on and not self.unless:
            return self._edges.active_at(utc(now))
        return self.check(now).active

    def next_edge(self, after: datetime) -> datetime | None:
        """The first instant strictly after `after` (UTC) at which the window
        opens or closes (for a cron window: its start or end fires), or, for
        a window with calendars, at which it opens, closes or changes the
        day it names; None if it never will. With calendars it walks the
        edges of the parts that can change it (at most _MAX_STEPS of them,
        then it answers the last, where nothing changes: an edge tick too
        many, never one too few)."""
        after = utc(after)
        if not self.on and not self.unless:
            return self._edges.next_edge(after)
        current, moment = self.check(after), after
        for _ in range(_MAX_STEPS):
            found = [edge for edge in self._parts_changing(moment) if edge is not None]
            if not found:
                return None
            moment = min(found)
            if self.check(moment) != current:
                return moment
        return moment

    def _parts_changing(self, moment: datetime) -> list[datetime | None]:
        """The next edges of the parts that can change `check()` after
        `moment`: while the time part is closed, only its own; while no `on`
        calendar holds, only theirs; else every part's."""
        if not self._edges.active_at(moment):
            return [self._edges.next_change(moment)]
        if self.on and not any(calendar.occasions_at(moment, self.tz) for calendar in self.on):
            return [calendar.next_boundary(moment, self.tz) for calendar in self.on]
        return [self._edges.next_change(moment),
                *(calendar.next_boundary(moment, self.tz) for calendar in (*self.on, *self.unless))]


@dataclass(frozen=True)
class ScheduleState:
    """Which windows hold at one instant. A keep-down window beats a keep-up
    window; `outside_down` is true when no window is active and the
    schedule keeps workloads down outside its windows. `keep_down_why` and
    `keep_up_why` name the calendar day that opened the window, if one did;
    `off` says which windows a calendar kept closed ("keep-up window
    'office' is off today: Heilige Drei Könige (DE-BY)")."""

    keep_down: Window | None = None
    keep_up: Window | None = None
    outside_down: bool = False
    keep_down_why: str = ""
    keep_up_why: str = ""
    off: tuple[str, ...] = ()


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
        found: dict[Mode, tuple[Window, Check]] = {}
        off: list[str] = []
        for window in self.windows:
            if window.mode in found:
                continue
            check = window.check(now)
            if check.active:
                found[window.mode] = (window, check)
            elif check.why:
                off.append(f"keep-{window.mode.value} window '{window.name}' is off {check.why}")
        down, up = found.get(Mode.DOWN), found.get(Mode.UP)
        outside_down = self.outside is Outside.DOWN and down is None and up is None
        return ScheduleState(keep_down=down[0] if down else None, keep_up=up[0] if up else None,
                             outside_down=outside_down, keep_down_why=down[1].why if down else "",
                             keep_up_why=up[1].why if up else "", off=tuple(off))

    @property
    def up_windows(self) -> tuple[Window, ...]:
        return tuple(window for window in self.windows if window.mode is Mode.UP)


def next_edge(schedule: Schedule, after: datetime) -> datetime | None:
    """The next instant strictly after `after` at which any window of
    `schedule` starts or ends (UTC), or None if none ever will. The daemon
    runs an extra tick there; the regular ticks do not depend on it."""
    edges = [edge for window in schedule.windows if (edge := window.next_edge(after)) is not None]
    return min(edges) if edges else None
