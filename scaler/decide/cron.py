"""The cron dialect of window edges, parsed by APScheduler's CronTrigger.

Two differences from standard crontab are handled here so users can write
standard cron:

* APScheduler numbers days of the week 0=Monday; standard cron 0 (and 7) =
  Sunday. Numeric day-of-week values, ranges and steps are rewritten to day
  names before APScheduler sees them, so `0 8 * * 1-5` means Monday-Friday.
* Standard cron fires when *either* a restricted day-of-month or a restricted
  day-of-week matches; APScheduler requires both. Restricting both is
  therefore rejected rather than silently meaning something else.
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_left, bisect_right
from datetime import MAXYEAR, MINYEAR, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import BaseField, CronTrigger
from apscheduler.triggers.cron.expressions import AllExpression, RangeExpression

from scaler.decide.wallclock import UTC, WindowError, earliest, place_within, shown

#: Standard cron numbering: 0 (and 7) = Sunday.
DAY_NAMES: tuple[str, ...] = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
CRON_FIELDS: tuple[str, ...] = ("minute", "hour", "day", "month", "day_of_week")
_FIELD_WORDS = {"minute": "minute", "hour": "hour", "day": "day of month", "month": "month",
                "day_of_week": "day of week"}
DAY_MINUTES = 24 * 60


def _day_number(token: str, *, expression: str) -> tuple[int, bool]:
    """(number, is Sunday written as a name or 0) for one day-of-week token:
    0-7 with 0 and 7 Sunday, or a name."""
    if token.isdigit():
        number = int(token)
        if number > 7:
            raise _cron_error(expression, f"day of week {token!r}: must be 0-7 (0 and 7 are Sunday) "
                                          "or a day name")
        return number, number == 0
    name = token.lower()[:3]
    if len(token) != 3 or name not in DAY_NAMES:
        raise _cron_error(expression, f"day of week {token!r}: must be 0-7 (0 and 7 are Sunday) "
                                      "or a day name (sun, mon, ...)")
    number = DAY_NAMES.index(name)
    return number, number == 0


def _day_range(base: str, *, stepped: bool, expression: str) -> tuple[int, int]:
    """(first, last) of one day-of-week range or value, on cron's 0-7 scale:
    `7-7` is Sunday alone, `5-7` Friday to Sunday; a range ending on Sunday
    written 0 or `sun` after another day ends on 7 (`fri-sun`)."""
    if base == "*":
        return 0, 6
    if "-" not in base:
        first, _ = _day_number(base, expression=expression)
        return first, 7 if stepped else first  # '1/2' is '1-7/2', as in cronie
    first_text, _, last_text = base.partition("-")
    first, _ = _day_number(first_text, expression=expression)
    last, sunday = _day_number(last_text, expression=expression)
    if sunday and first > 0 and not last_text.isdigit():
        last = 7
    if first > last:
        raise _cron_error(expression, f"day of week {base!r}: the range runs backwards")
    return first, last


def standard_day_of_week(text: str, *, expression: str = "") -> str:
    """Rewrite a standard cron day-of-week field (0/7 = Sunday, names, ranges,
    steps) to the day names APScheduler reads the same way."""
    expression = expression or text
    days: set[int] = set()
    for part in text.split(","):
        base, slash, step_text = part.partition("/")
        if slash and (not step_text.isdigit() or int(step_text) == 0):
            raise _cron_error(expression, f"day of week {part!r}: the step must be a positive number")
        first, last = _day_range(base, stepped=bool(slash), expression=expression)
        days.update(day % 7 for day in range(first, last + 1, int(step_text) if step_text else 1))
    if days == set(range(7)):
        return "*"
    return ",".join(DAY_NAMES[day] for day in sorted(days))


def _cron_error(expression: str, detail: str) -> WindowError:
    return WindowError(f'"{expression}" is not a valid cron expression ({detail})')


def _aps_detail(error: Exception) -> str:
    text = str(error)
    if unknown := re.match(r'Unrecognized expression "(.*)" for field', text):
        return f"{unknown.group(1)!r}: not a number, a range, a step or a list of them"
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
    both = fields[2] != "*" and fields[4] != "*"  # as cron reads it: '0-7' restricts, only '*' does not
    for name, value in zip(CRON_FIELDS[:4], fields[:4], strict=True):  # each field's own mistake first
        try:
            CronTrigger(**{name: value}, timezone=UTC)
        except ValueError as error:
            raise _cron_error(expression, f"{_FIELD_WORDS[name]} {_aps_detail(error)}") from None
    fields[4] = standard_day_of_week(fields[4], expression=expression)
    if both:
        raise _cron_error(expression, "restricting both day of month and day of week means 'either' in "
                                      "standard cron but 'both' in APScheduler; use two windows")
    try:
        trigger = CronTrigger.from_crontab(" ".join(fields), timezone=UTC)
    except ValueError as error:
        raise _cron_error(expression, _field_detail(fields, error)) from None
    if trigger.get_next_fire_time(None, datetime(2000, 1, 1, tzinfo=UTC)) is None:
        raise _cron_error(expression, "it never fires")
    return trigger


def _field_detail(fields: list[str], error: ValueError) -> str:
    """Name the field APScheduler rejected, by trying each field alone."""
    for name, value in zip(CRON_FIELDS, fields, strict=True):  # 5 fields: checked by the caller
        try:
            CronTrigger(**{name: value}, timezone=UTC)
        except ValueError as field_error:
            return f"{_FIELD_WORDS[name]} {_aps_detail(field_error)}"
    return _aps_detail(error)


def _matches(field: BaseField, moment: datetime) -> bool:
    value = field.get_next_value(moment)
    return value is not None and value == field.get_value(moment)


_PLAIN = (AllExpression, RangeExpression)
#: Months in 400 years, after which the Gregorian calendar, and so every cron set, repeats.
_CYCLE_MONTHS = 400 * 12 + 1
_MONDAY = date(2024, 1, 1)


class WallCron:
    """The fire times of a valid cron expression on a wall clock (naive
    datetimes), found a day at a time: the minutes of a day are a sorted
    list, the days of a month are worked out once per month. No walk fire
    by fire, so `* 4-13 * 12 *` asked about June costs what `0 8 * * *`
    does. Years 1 to 9999; None beyond them."""

    __slots__ = ("_day", "_day_of_week", "_days", "_fixed_days", "_months", "_times", "_weekdays")

    def __init__(self, trigger: CronTrigger) -> None:
        fields = {field.name: field for field in trigger.fields}
        minutes = [m for m in range(60) if _matches(fields["minute"], datetime(2000, 1, 1, 0, m))]
        hours = [h for h in range(24) if _matches(fields["hour"], datetime(2000, 1, 1, h))]
        self._times = tuple(hour * 60 + minute for hour in hours for minute in minutes)
        self._months = frozenset(m for m in range(1, 13) if _matches(fields["month"], datetime(2000, m, 1)))
        self._day, self._day_of_week = fields["day"], fields["day_of_week"]
        self._weekdays = frozenset(
            day for day in range(7) if _matches(self._day_of_week, datetime.combine(_MONDAY, time()) + timedelta(day)))
        plain = all(type(expression) in _PLAIN for expression in self._day.expressions)
        self._fixed_days = frozenset(d for d in range(1, 32) if _matches(self._day, datetime(2000, 1, d))) \
            if plain else None
        self._days: dict[tuple[int, int], tuple[int, ...]] = {}

    def _month_days(self, year: int, month: int) -> tuple[int, ...]:
        """The days of `month` on which it fires, sorted."""
        days = self._days.get((year, month))
        if days is None:
            if month not in self._months:
                days = ()
            else:
                first_weekday, length = calendar.monthrange(year, month)
                days = tuple(day for day in range(1, length + 1)
                             if (first_weekday + day - 1) % 7 in self._weekdays
                             and (day in self._fixed_days if self._fixed_days is not None
                                  else _matches(self._day, datetime(year, month, day))))
            if len(self._days) >= 256:
                self._days.clear()
            self._days[(year, month)] = days
        return days

    def next_at_or_after(self, wall: datetime) -> datetime | None:
        """The first fire time at or after wall time `wall`."""
        minute = wall.hour * 60 + wall.minute + (1 if (wall.second, wall.microsecond) != (0, 0) else 0)
        year, month, day = wall.year, wall.month, wall.day
        while True:
            days = self._month_days(year, month)
            index = bisect_left(days, day)
            if index < len(days) and days[index] == day:
                at = bisect_left(self._times, minute)
                if at < len(self._times):
                    return _fire(year, month, day, self._times[at])
                index += 1
            if index < len(days):
                return _fire(year, month, days[index], self._times[0])
            year, month = (year, month + 1) if month < 12 else (year + 1, 1)
            if year > MAXYEAR:
                return None
            day, minute = 1, 0

    def next_not_of(self, other: WallCron, wall: datetime) -> datetime | None:
        """The first fire at or after wall time `wall` that is not also a fire
        of `other`, found a month at a time; None if there is none within
        400 years (the Gregorian calendar repeats then: none ever)."""
        covered = set(other._times)
        extra = [minute for minute in self._times if minute not in covered]
        for _ in range(_CYCLE_MONTHS):
            fire = self.next_at_or_after(wall)
            if fire is None:
                return None
            year, month, minute = fire.year, fire.month, fire.hour * 60 + fire.minute
            others = set(other._month_days(year, month))
            for day in self._month_days(year, month):
                if day < fire.day:
                    continue
                if day not in others:
                    return fire if day == fire.day else _fire(year, month, day, self._times[0])
                at = bisect_left(extra, minute if day == fire.day else 0)
                if at < len(extra):
                    return _fire(year, month, day, extra[at])
            year, month = (year, month + 1) if month < 12 else (year + 1, 1)
            if year > MAXYEAR:
                return None
            wall = datetime(year, month, 1)
        return None

    def last_at_or_before(self, wall: datetime) -> datetime | None:
        """The last fire time at or before wall time `wall`."""
        minute = wall.hour * 60 + wall.minute
        year, month, day = wall.year, wall.month, wall.day
        while True:
            days = self._month_days(year, month)
            index = bisect_right(days, day) - 1
            if index >= 0 and days[index] == day:
                at = bisect_right(self._times, minute) - 1
                if at >= 0:
                    return _fire(year, month, day, self._times[at])
                index -= 1
            if index >= 0:
                return _fire(year, month, days[index], self._times[-1])
            year, month = (year, month - 1) if month > 1 else (year - 1, 12)
            if year < MINYEAR:
                return None
            day, minute = 31, DAY_MINUTES


def _fire(year: int, month: int, day: int, minute: int) -> datetime:
    return datetime(year, month, day, minute // 60, minute % 60)


class LocalCron:
    """A cron expression on the wall clock of a time zone, answering in UTC.

    Fire times are wall-clock times (`WallCron`), placed on the real time
    line by `wallclock.place`: a fire written as W happens at the first
    moment the clock has shown W or later. (APScheduler 3.x computing fire
    times in the zone itself gets some wrong around DST: a weekly
    `0 0 * * mon` in Europe/Berlin skips the Monday after the spring-forward
    Sunday.) Placing never reorders wall times, so the first fire at or
    after an instant is the first wall fire at or after the earliest wall
    time placed there (`wallclock.earliest`), and the last fire at or before
    it the last wall fire the clock has shown (`wallclock.shown`): even
    across a whole skipped day (Pacific/Apia, 2011-12-30), whose times all
    happen at the jump. A fire that cannot be placed (before year 1 or after
    9999 in UTC) is none; one before year 1 happens at the first instant.
    """

    __slots__ = ("expression", "trigger", "tz", "wall")

    def __init__(self, expression: str, tz: ZoneInfo) -> None:
        self.expression = expression
        self.tz = tz
        self.trigger = cron_trigger(expression)
        self.wall = WallCron(self.trigger)

    def _instant(self, fire: datetime | None) -> datetime | None:
        return place_within(fire, self.tz) if fire is not None else None

    def next_at_or_after(self, moment: datetime) -> datetime | None:
        """The first fire time at or after `moment` (UTC)."""
        try:
            start = earliest(moment, self.tz)
        except OverflowError:  # the wall clock is before year 1, or after 9999
            if moment.year > MINYEAR:
                return None
            start = datetime.min
        return self._instant(self.wall.next_at_or_after(start))

    def next_not_of(self, other: LocalCron, moment: datetime) -> datetime | None:
        """The first fire at or after `moment` (UTC) whose wall time is not a
        fire of `other` (both in this zone). It may still happen at the
        instant one of other's does: two wall times in a skipped hour do."""
        try:
            start = earliest(moment, self.tz)
        except OverflowError:
            if moment.year > MINYEAR:
                return None
            start = datetime.min
        return self._instant(self.wall.next_not_of(other.wall, start))

    def last_at_or_before(self, moment: datetime) -> datetime | None:
        """The most recent fire time at or before `moment` (UTC)."""
        try:
            end = shown(moment, self.tz)
        except OverflowError:  # the wall clock is before year 1, or after 9999
            if moment.year == MINYEAR:
                return None
            end = datetime.max
        return self._instant(self.wall.last_at_or_before(end))
