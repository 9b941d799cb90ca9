"""Time windows: when a policy keeps workloads up or down.

A window is a pair of cron expressions, `start` and `end`, in one IANA time
zone, or the compact `when` form (`Mon-Fri 08:00-20:00`) compiled into such a
pair. It is active at `now` iff its most recent start at or before `now` is
later than its most recent end at or before `now`: start inclusive, end
exclusive. All instants are compared in UTC, so daylight saving time moves a
window's wall-clock edges, never its meaning.

Cron is parsed only by APScheduler's `CronTrigger`. Two differences from
standard crontab are handled here so users can write standard cron:

* APScheduler numbers days of the week 0=Monday; standard cron 0 (and 7) =
  Sunday. Numeric day-of-week values, ranges and steps are rewritten to day
  names before APScheduler sees them, so `0 8 * * 1-5` means Monday-Friday.
* Standard cron fires when *either* a restricted day-of-month or a restricted
  day-of-week matches; APScheduler requires both. Restricting both is
  therefore rejected rather than silently meaning something else.

Around DST changes, fire times follow cron (see LocalCron):

* A fire time inside the spring-forward gap (02:30 in Europe/Berlin on the
  last Sunday of March) happens when the gap ends, at 03:00 CEST. A window
  starting then still opens that day.
* A fire time inside the repeated fall-back hour happens once, at its first
  occurrence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

UTC = timezone.utc
#: Standard cron numbering: 0 (and 7) = Sunday.
DAY_NAMES: tuple[str, ...] = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
CRON_FIELDS: tuple[str, ...] = ("minute", "hour", "day", "month", "day_of_week")
_FIELD_WORDS = {"minute": "minute", "hour": "hour", "day": "day of month", "month": "month",
                "day_of_week": "day of week"}
#: How far back to look for a trigger's most recent fire time, nearest first.
#: The first span holding a fire is walked forward fire by fire; the last
#: covers a leap day (29 Feb) four years back.
_LOOKBACKS = tuple(timedelta(days=days) for days in (1 / 720, 1 / 24, 1, 8, 32, 370, 1462))
_ONE_SECOND = timedelta(seconds=1)
_ONE_MICROSECOND = timedelta(microseconds=1)
#: More than any DST shift (the largest, Antarctica/Troll, is 2 hours).
_DST_MARGIN = timedelta(hours=3)
_CACHE_SIZE = 64


class WindowError(ValueError):
    """A cron expression, `when` text or time zone is not valid; the message
    is written for the person who wrote the policy."""


class Mode(str, Enum):
    UP = "up"
    DOWN = "down"


class Outside(str, Enum):
    """What applies when no window is active."""

    SIGNALS = "signals"
    DOWN = "down"


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`, or WindowError."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise WindowError(f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin or UTC)") \
            from None


def _day_number(token: str, *, expression: str, range_end: bool = False) -> int:
    if token.isdigit():
        number = int(token)
        if number > 7:
            raise _cron_error(expression, f"day of week {token!r}: must be 0-7 (0 and 7 are Sunday) "
                                          "or a day name")
        return 7 if number == 7 and range_end else number % 7
    name = token.lower()[:3]
    if len(token) != 3 or name not in DAY_NAMES:
        raise _cron_error(expression, f"day of week {token!r}: must be 0-7 (0 and 7 are Sunday) "
                                      "or a day name (sun, mon, ...)")
    number = DAY_NAMES.index(name)
    return 7 if number == 0 and range_end else number


def standard_day_of_week(text: str, *, expression: str = "") -> str:
    """Rewrite a standard cron day-of-week field (0/7 = Sunday, names, ranges,
    steps) to the day names APScheduler reads the same way."""
    expression = expression or text
    days: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        if step_text and not step_text.isdigit() or step_text == "0":
            raise _cron_error(expression, f"day of week {part!r}: the step must be a positive number")
        step = int(step_text) if step_text else 1
        if base == "*":
            first, last = 0, 6
        elif "-" in base:
            first_text, _, last_text = base.partition("-")
            first = _day_number(first_text, expression=expression)
            last = _day_number(last_text, expression=expression, range_end=True)
            if first > last:
                raise _cron_error(expression, f"day of week {part!r}: the range runs backwards")
        else:
            first = _day_number(base, expression=expression)
            last = 7 if step_text else first  # '1/2' is '1-7/2', as in cronie
        days.update(day % 7 for day in range(first, last + 1, step))
    if days == set(range(7)):
        return "*"
    return ",".join(DAY_NAMES[day] for day in sorted(days))


def _cron_error(expression: str, detail: str) -> WindowError:
    return WindowError(f'"{expression}" is not a valid cron expression ({detail})')


def _aps_detail(error: Exception) -> str:
    text = str(error)
    match = re.match(r"Error validating expression '(.*)': (.*)$", text)
    return f"{match.group(1)!r}: {match.group(2)}" if match else text


def cron_trigger(expression: str) -> CronTrigger:
    """APScheduler's CronTrigger for a standard 5-field cron expression, on a
    wall clock without DST (UTC; see LocalCron for time zones). WindowError
    phrased from what APScheduler says is wrong."""
    fields = expression.split()
    if len(fields) != 5:
        raise _cron_error(expression, f"expected 5 fields (minute hour day-of-month month day-of-week), "
                                      f"got {len(fields)}")
    if fields[2] != "*" and fields[4] != "*":
        raise _cron_error(expression, "restricting both day of month and day of week means 'either' in "
                                      "standard cron but 'both' in APScheduler; use two windows")
    fields[4] = standard_day_of_week(fields[4], expression=expression)
    try:
        trigger = CronTrigger.from_crontab(" ".join(fields), timezone=UTC)
    except ValueError as error:
        raise _cron_error(expression, _field_detail(fields, error)) from None
    if trigger.get_next_fire_time(None, datetime(2000, 1, 1, tzinfo=UTC)) is None:
        raise _cron_error(expression, "it never fires")
    return trigger


def _field_detail(fields: list[str], error: ValueError) -> str:
    """Name the field APScheduler rejected, by trying each field alone."""
    for name, value in zip(CRON_FIELDS, fields):
        try:
            CronTrigger(**{name: value}, timezone=UTC)
        except ValueError as field_error:
            return f"{_FIELD_WORDS[name]} {_aps_detail(field_error)}"
    return _aps_detail(error)


_WHEN = re.compile(
    r"^(?P<days>[A-Za-z][A-Za-z ,\-]*?)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*"
    r"(?:(?P<end_day>[A-Za-z]+)\s+)?(?P<end>\d{1,2}:\d{2})$"
)
_WHEN_HELP = ("expected '<days> HH:MM-HH:MM' (days: daily, Mon-Fri, Sat,Sun; an end before the start "
              "ends the next day) or '<day> HH:MM-<day> HH:MM' (e.g. 'Fri 18:00-Mon 07:00')")


_FULL_DAY_NAMES = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")


def _when_day(token: str, text: str) -> int:
    name = token.lower()
    if name in DAY_NAMES:
        return DAY_NAMES.index(name)
    if name in _FULL_DAY_NAMES:
        return _FULL_DAY_NAMES.index(name)
    raise WindowError(f"{text!r}: unknown day {token!r} (use Mon, Tue, Wed, Thu, Fri, Sat, Sun or daily)")


def _when_days(text: str, when: str) -> set[int]:
    compact = text.replace(" ", "")
    if compact.lower() == "daily":
        return set(range(7))
    days: set[int] = set()
    for part in compact.split(","):
        if "-" in part:
            first_text, _, last_text = part.partition("-")
            first, last = _when_day(first_text, when), _when_day(last_text, when)
            span = (last - first) % 7  # Fri-Mon wraps over the weekend
            days.update((first + offset) % 7 for offset in range(span + 1))
        else:
            days.add(_when_day(part, when))
    return days


def _when_time(text: str, when: str, *, allow_24: bool) -> tuple[int, int]:
    hour_text, _, minute_text = text.partition(":")
    hour, minute = int(hour_text), int(minute_text)
    if allow_24 and (hour, minute) == (24, 0):
        return 24, 0
    if hour > 23 or minute > 59:
        raise WindowError(f"{when!r}: {text} is not a time of day (00:00-23:59)")
    return hour, minute


def _cron_days(days: set[int]) -> str:
    return "*" if len(days) == 7 else ",".join(DAY_NAMES[day] for day in sorted(days))


def compile_when(when: str) -> tuple[str, str]:
    """The (start, end) cron pair of a compact window such as
    'Mon-Fri 08:00-20:00', 'Mon-Fri 22:00-06:00' (each night until the next
    morning), 'daily 00:00-24:00' or 'Fri 18:00-Mon 07:00'."""
    match = _WHEN.match(when.strip())
    if match is None:
        raise WindowError(f"{when!r}: {_WHEN_HELP}")
    start_hour, start_minute = _when_time(match["start"], when, allow_24=False)
    end_hour, end_minute = _when_time(match["end"], when, allow_24=True)
    days = _when_days(match["days"], when)
    if match["end_day"] is not None:
        if len(days) != 1:
            raise WindowError(f"{when!r}: a window ending on another day starts on one day, "
                              "e.g. 'Fri 18:00-Mon 07:00'")
        end_days = {_when_day(match["end_day"], when)}
        if end_hour == 24:
            end_hour, end_days = 0, {(day + 1) % 7 for day in end_days}
        if end_days == days and (end_hour, end_minute) == (start_hour, start_minute):
            raise WindowError(f"{when!r}: the window starts and ends at the same time")
    else:
        if (end_hour, end_minute) == (start_hour, start_minute):
            raise WindowError(f"{when!r}: the window starts and ends at the same time")
        if (end_hour, end_minute) < (start_hour, start_minute) or end_hour == 24:
            end_days = {(day + 1) % 7 for day in days}  # ends the next morning
            end_hour %= 24
        else:
            end_days = days
    start = f"{start_minute} {start_hour} * * {_cron_days(days)}"
    end = f"{end_minute} {end_hour} * * {_cron_days(end_days)}"
    return start, end


class LocalCron:
    """A cron expression on the wall clock of a time zone, answering in UTC.

    APScheduler 3.x computes fire times in the zone itself and gets some
    wrong around DST (a weekly `0 0 * * mon` in Europe/Berlin skips the
    Monday after the spring-forward Sunday). So the trigger runs on a clock
    without DST, the local wall time, and each wall-clock fire time is then
    placed on the real time line:

    * a wall time that does not exist (inside the spring-forward gap) fires
      when the gap ends, as cron does (02:30 -> 03:00 CEST);
    * a wall time that happens twice (the fall-back hour) fires once, at its
      first occurrence, as cron does.

    That placement never reorders fire times, so walking them forward in
    wall-clock order walks them forward in real time.
    """

    __slots__ = ("expression", "tz", "trigger")

    def __init__(self, expression: str, tz: ZoneInfo) -> None:
        self.expression = expression
        self.tz = tz
        self.trigger = cron_trigger(expression)

    def _wall(self, instant: datetime) -> datetime:
        return instant.astimezone(self.tz).replace(tzinfo=UTC, fold=0)

    def _instant(self, wall: datetime) -> datetime:
        naive = wall.replace(tzinfo=None)
        instant = naive.replace(tzinfo=self.tz).astimezone(UTC)  # fold=0: the first occurrence
        if instant.astimezone(self.tz).replace(tzinfo=None) == naive:
            return instant
        return self._gap_end(naive)

    def _gap_end(self, naive: datetime) -> datetime:
        """The instant the clocks jump over the nonexistent wall time `naive`."""
        before = naive.replace(tzinfo=self.tz, fold=0).utcoffset()
        after = naive.replace(tzinfo=self.tz, fold=1).utcoffset()
        low = (naive - after).replace(tzinfo=UTC)  # still before the jump
        high = (naive - before).replace(tzinfo=UTC)  # already after it
        while high - low > _ONE_SECOND:
            middle = low + (high - low) / 2
            if middle.astimezone(self.tz).utcoffset() == after:
                high = middle
            else:
                low = middle
        return high.replace(microsecond=0)

    def next_at_or_after(self, moment: datetime) -> datetime | None:
        """The first fire time at or after `moment` (UTC)."""
        start = self._wall(moment)
        if (moment - _DST_MARGIN).astimezone(self.tz).utcoffset() != moment.astimezone(self.tz).utcoffset():
            start -= _DST_MARGIN  # a fire inside a gap just before `moment` happens at the gap's end
        fire = self.trigger.get_next_fire_time(None, start)
        while fire is not None:
            instant = self._instant(fire)
            if instant >= moment:
                return instant
            fire = self.trigger.get_next_fire_time(None, fire + _ONE_SECOND)
        return None

    def last_at_or_before(self, moment: datetime) -> datetime | None:
        """The most recent fire time at or before `moment` (UTC), found by
        walking fire times forward from the nearest lookback holding one
        (APScheduler has no previous fire time)."""
        for lookback in _LOOKBACKS:
            fire = self.trigger.get_next_fire_time(None, self._wall(moment - lookback))
            if fire is None:
                continue
            instant = self._instant(fire)
            if instant > moment:
                continue
            while True:
                fire = self.trigger.get_next_fire_time(None, fire + _ONE_SECOND)
                following = self._instant(fire) if fire is not None else None
                if following is None or following > moment:
                    return instant
                instant = following
        return None


@dataclass(frozen=True, eq=False)
class Window:
    """One compiled window. `description` is what a reason shows, e.g.
    "'business-hours' (Mon-Fri 08:00-20:00 Europe/Berlin)"."""

    name: str
    mode: Mode
    start: str
    end: str
    tz: ZoneInfo
    when: str | None = None
    _start: LocalCron = field(init=False, repr=False)
    _end: LocalCron = field(init=False, repr=False)

    def __post_init__(self) -> None:
        start, end = LocalCron(self.start, self.tz), LocalCron(self.end, self.tz)
        if str(start.trigger) == str(end.trigger):
            raise WindowError(f"start '{self.start}' and end '{self.end}' fire at the same times, "
                              "so the window is never open")
        object.__setattr__(self, "_start", start)
        object.__setattr__(self, "_end", end)

    @classmethod
    def from_when(cls, when: str, *, name: str, mode: Mode, tz: ZoneInfo) -> Window:
        start, end = compile_when(when)
        return cls(name=name, mode=mode, start=start, end=end, tz=tz, when=when)

    @property
    def hours(self) -> str:
        text = self.when if self.when is not None else f"start '{self.start}', end '{self.end}'"
        return f"{text} {self.tz.key}"

    @property
    def description(self) -> str:
        return f"'{self.name}' ({self.hours})"

    def active_at(self, now: datetime) -> bool:
        """Start inclusive, end exclusive; a start and end firing at the same
        instant leave the window closed."""
        now = _utc(now)
        started = self._start.last_at_or_before(now)
        if started is None:
            return False
        ended = self._end.next_at_or_after(started)
        return ended is None or ended > now

    def next_edge(self, after: datetime) -> datetime | None:
        """The first start or end strictly after `after` (UTC)."""
        after = _utc(after) + _ONE_MICROSECOND
        fires = [fire for fire in (self._start.next_at_or_after(after), self._end.next_at_or_after(after))
                 if fire is not None]
        return min(fires) if fires else None


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


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r} has no time zone; pass an aware datetime")
    return moment.astimezone(UTC)
