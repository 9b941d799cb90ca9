"""An independent, deliberately naive evaluator of window schedules, minute by
minute. It shares no code with scaler/decide: it parses the compact `when`
form and 5-field cron itself, and walks real time one UTC minute at a time.

The whole meaning of a window, as docs/policies.md states it, in one rule:

    An edge written as wall-clock time W happens at the first moment the
    clock on the wall has shown W or later.

So the walk keeps `shown`, the latest wall-clock minute the clock has shown so
far; wall times skipped by a spring-forward jump happen at the jump, and wall
times repeated after a fall-back happen only the first time. Then:

* a compact window (`Mon-Fri 08:00-20:00`, `Sat,Sun 00:00-24:00`,
  `Fri 18:00-Mon 07:00`) is a set of wall-clock intervals, one per listed
  day, read as a person reads them; it is active while some interval has
  started (start <= shown) and not ended (end > shown);
* a cron window is active while its most recent start is later than its most
  recent end (start inclusive, end exclusive; both at once: closed).

Slow on purpose: a few thousand Python steps per simulated day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

MINUTE = timedelta(minutes=1)
# Python's weekday(): Monday = 0 ... Sunday = 6.
WEEKDAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6,
            "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5,
            "sunday": 6}
MONTHS = {name: number for number, name in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)}
CRON_DAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}


# ---------------------------------------------------------------- compact form


def _clock(text: str) -> int:
    """'08:30' -> minutes after midnight; '24:00' -> 1440."""
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def _day_list(text: str) -> set[int]:
    if text.strip().lower() == "daily":
        return set(range(7))
    days = set()
    for item in text.replace(" ", "").lower().split(","):
        if "-" in item:
            first, last = (WEEKDAYS[name] for name in item.split("-"))
            day = first
            days.add(day)
            while day != last:
                day = (day + 1) % 7
                days.add(day)
        else:
            days.add(WEEKDAYS[item])
    return days


@dataclass(frozen=True)
class Compact:
    """A compact window as intervals of wall-clock time."""

    days: frozenset[int]
    start: int  # minutes after midnight
    end: int  # minutes after midnight, 1440 for 24:00
    end_day: int | None  # the 'Fri 18:00-Mon 07:00' form

    @classmethod
    def parse(cls, text: str) -> Compact:
        head, _, tail = text.strip().rpartition("-")
        days_text, _, start_text = head.strip().rpartition(" ")
        end_day = None
        if " " in tail.strip():
            end_day_text, end_text = tail.split()
            end_day = WEEKDAYS[end_day_text.lower()]
        else:
            end_text = tail.strip()
        return cls(frozenset(_day_list(days_text)), _clock(start_text), _clock(end_text), end_day)

    def intervals(self, first: date, last: date) -> list[tuple[datetime, datetime]]:
        """Wall-clock (naive) intervals of the days first..last."""
        found = []
        day = first
        while day <= last:
            if day.weekday() in self.days:
                opens = datetime.combine(day, datetime.min.time()) + timedelta(minutes=self.start)
                if self.end_day is None:
                    length = self.end - self.start if self.end > self.start else self.end + 1440 - self.start
                    closes = opens + timedelta(minutes=length)
                else:
                    ahead = (self.end_day - day.weekday()) % 7
                    closes = datetime.combine(day + timedelta(days=ahead), datetime.min.time()) \
                        + timedelta(minutes=self.end)
                    if closes <= opens:
                        closes += timedelta(days=7)
                found.append((opens, closes))
            day += timedelta(days=1)
        return found


# ---------------------------------------------------------------- cron


def _cron_value(text: str, names: dict[str, int]) -> int:
    return names[text.lower()] if text.lower() in names else int(text)


def _cron_field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> set[int]:
    names = names or {}
    values = set()
    for item in text.split(","):
        base, _, step = item.partition("/")
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first, last = (_cron_value(part, names) for part in base.split("-"))
            if names is CRON_DAYS and base.split("-")[1].lower() == "sun" and first > 0:
                last = 7  # docs: Sunday ending a range after another day is 7 ('fri-sun')
        else:
            first = _cron_value(base, names)
            last = high if step else first
        values.update(range(first, last + 1, int(step) if step else 1))
    return values


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # cron numbering, 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    @classmethod
    def parse(cls, text: str) -> Cron:
        minute, hour, day, month, weekday = text.split()
        weekdays = {value % 7 for value in _cron_field(weekday, 0, 7, CRON_DAYS)}
        return cls(frozenset(_cron_field(minute, 0, 59)), frozenset(_cron_field(hour, 0, 23)),
                   frozenset(_cron_field(day, 1, 31)), frozenset(_cron_field(month, 1, 12, MONTHS)),
                   frozenset(weekdays), day != "*", weekday != "*")

    def matches(self, wall: datetime) -> bool:
        if wall.minute not in self.minutes or wall.hour not in self.hours:
            return False
        return self.matches_day(wall)

    def matches_day(self, wall: datetime | date) -> bool:
        if wall.month not in self.months:
            return False
        day_ok = wall.day in self.days
        weekday_ok = (wall.weekday() + 1) % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return day_ok or weekday_ok  # standard cron: either
        return day_ok and weekday_ok


def next_wall_fire(cron: Cron, wall: datetime) -> datetime | None:
    """The first wall-clock minute at or after `wall` the cron fires at:
    day by day (five years at most), then minute by minute in a day it
    fires on."""
    day = wall.date()
    for _ in range(5 * 366):
        if cron.matches_day(day):
            for minute in range(1440):
                moment = datetime.combine(day, datetime.min.time()) + timedelta(minutes=minute)
                if moment >= wall and cron.matches(moment):
                    return moment
        day += timedelta(days=1)
    return None


def last_wall_fire(cron: Cron, wall: datetime) -> datetime | None:
    """The last wall-clock minute at or before `wall` the cron fires at."""
    day = wall.date()
    for _ in range(5 * 366):
        if cron.matches_day(day):
            for minute in reversed(range(1440)):
                moment = datetime.combine(day, datetime.min.time()) + timedelta(minutes=minute)
                if moment <= wall and cron.matches(moment):
                    return moment
        day -= timedelta(days=1)
    return None


# ---------------------------------------------------------------- the walk


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def _floor_minute(wall: datetime) -> datetime:
    return wall.replace(second=0, microsecond=0)


def walk(spec: dict, tz: ZoneInfo, first: datetime, last: datetime) -> dict[datetime, bool | None]:
    """Whether the window `spec` ({'when': ...} or {'start': ..., 'end': ...})
    is active at every UTC minute from `first` to `last` (aware, whole
    minutes); None where the walk cannot know (no edge seen yet). A compact
    window's intervals are known from the calendar, so its walk starts a day
    early (to know what the clock has shown); a cron window's walk starts
    eight days early to see its edges."""
    moment = first - timedelta(days=1 if "when" in spec else 8)
    shown = _floor_minute(_wall(moment - MINUTE, tz))
    states: dict[datetime, bool | None] = {}
    if "when" in spec:
        compact = Compact.parse(spec["when"])
        intervals = [(opens, closes) for opens, closes in
                     compact.intervals(shown.date() - timedelta(days=8), _wall(last, tz).date() + timedelta(days=1))
                     if closes > shown]
    else:
        start, end = Cron.parse(spec["start"]), Cron.parse(spec["end"])
        last_start = last_end = None
    while moment <= last:
        now_shown = max(shown, _floor_minute(_wall(moment, tz)))
        if "when" in spec:
            state = any(opens <= now_shown < closes for opens, closes in intervals)
        else:
            arrived = shown + MINUTE
            while arrived <= now_shown:  # every wall minute the clock reached just now
                if start.matches(arrived):
                    last_start = moment
                if end.matches(arrived):
                    last_end = moment
                arrived += MINUTE
            if last_start is not None:
                state = last_end is None or last_start > last_end
            else:
                state = False if last_end is not None else None
        shown = now_shown
        if moment >= first:
            states[moment] = state
        moment += MINUTE
    return states


def changes(states: dict[datetime, bool | None]) -> list[datetime]:
    """The minutes at which the known state differs from the minute before."""
    moments = sorted(states)
    return [moment for before, moment in pairwise(moments)
            if states[before] is not None and states[moment] is not None and states[before] != states[moment]]


def transitions(tz: ZoneInfo, year: int) -> list[datetime]:
    """UTC instants (to the minute) in `year` at which the zone's offset
    changes, found by walking hours and then minutes."""
    found = []
    moment = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    offset = moment.astimezone(tz).utcoffset()
    while moment < end:
        following = moment + timedelta(hours=1)
        if following.astimezone(tz).utcoffset() != offset:
            minute = moment
            while minute.astimezone(tz).utcoffset() == offset:
                minute += MINUTE
            found.append(minute)
            offset = following.astimezone(tz).utcoffset()
        moment = following
    return found


# ---------------------------------------------------------------- calendars
#
# From docs/policies.md ("Calendars"): a calendar's days (a holiday, a date,
# an all-day event) are whole local days in the policy's zone, from the
# moment the clock has shown that day's midnight to the moment it has shown
# the next one's; so at any instant the day is the date of the latest wall
# time the clock has shown. A timed event is its own span, start included,
# end excluded, its wall times (in its own zone, or the policy's if floating)
# happening at the first moment that zone's clock has shown them. A window
# with calendars is active when its time part is (or always, without one),
# and with `on` the instant is on a day or in an event of one of them, and
# with `except` on none of theirs.


@dataclass
class Calendar:
    """A calendar as the oracle knows it: dates, and timed events as
    (start wall time, end wall time, zone or None for floating)."""

    days: set[date]
    events: list[tuple[datetime, datetime, ZoneInfo | None]]


def happens(wall: datetime, tz: ZoneInfo) -> datetime:
    """The first UTC minute at which the clock in `tz` has shown `wall` (a
    whole minute) or later: walked minute by minute."""
    moment = (wall - timedelta(hours=15)).replace(tzinfo=UTC)  # no zone is more than 14 hours ahead of UTC
    shown = _floor_minute(_wall(moment, tz))
    while shown < wall:
        moment += MINUTE
        shown = max(shown, _floor_minute(_wall(moment, tz)))
    return moment


def shown_days(tz: ZoneInfo, first: datetime, last: datetime) -> dict[datetime, date]:
    """The local day at every UTC minute from `first` to `last`: the date of
    the latest wall-clock minute shown so far."""
    moment = first - timedelta(days=2)
    shown = _floor_minute(_wall(moment, tz))
    days = {}
    while moment <= last:
        shown = max(shown, _floor_minute(_wall(moment, tz)))
        if moment >= first:
            days[moment] = shown.date()
        moment += MINUTE
    return days


def member(calendar: Calendar, days: dict[datetime, date], tz: ZoneInfo) -> dict[datetime, bool]:
    """Whether each minute of `days` is on a day or in an event of `calendar`."""
    spans = [(happens(start, zone or tz), happens(end, zone or tz)) for start, end, zone in calendar.events]
    return {moment: day in calendar.days or any(opens <= moment < closes for opens, closes in spans)
            for moment, day in days.items()}


def walk_with_calendars(spec: dict, tz: ZoneInfo, first: datetime, last: datetime,
                        calendars: dict[str, Calendar]) -> dict[datetime, bool | None]:
    """`walk`, for a window that may also have `on` and `except` (calendar
    names) and no time part."""
    days = shown_days(tz, first, last)
    if "when" in spec or "start" in spec:
        base = walk({key: spec[key] for key in ("when", "start", "end") if key in spec}, tz, first, last)
    else:
        base = dict.fromkeys(days, True)
    on = [member(calendars[name], days, tz) for name in spec.get("on", ())]
    off = [member(calendars[name], days, tz) for name in spec.get("except", ())]
    states: dict[datetime, bool | None] = {}
    for moment, state in base.items():
        allowed = (not on or any(m[moment] for m in on)) and not any(m[moment] for m in off)
        states[moment] = (state and allowed) if state is not None else (False if not allowed else None)
    return states
