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

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from scaler.decide.wallclock import UTC, WindowError, place

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
#: More than any DST shift (the largest, Antarctica/Troll, is 2 hours).
_DST_MARGIN = timedelta(hours=3)


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
        if (step_text and not step_text.isdigit()) or step_text == "0":
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
    for name, value in zip(CRON_FIELDS, fields, strict=True):  # 5 fields: checked by the caller
        try:
            CronTrigger(**{name: value}, timezone=UTC)
        except ValueError as field_error:
            return f"{_FIELD_WORDS[name]} {_aps_detail(field_error)}"
    return _aps_detail(error)


class LocalCron:
    """A cron expression on the wall clock of a time zone, answering in UTC.

    APScheduler 3.x computes fire times in the zone itself and gets some
    wrong around DST (a weekly `0 0 * * mon` in Europe/Berlin skips the
    Monday after the spring-forward Sunday). So the trigger runs on a clock
    without DST, the local wall time, and each wall-clock fire time is then
    placed on the real time line by `wallclock.place`.
    """

    __slots__ = ("expression", "trigger", "tz")

    def __init__(self, expression: str, tz: ZoneInfo) -> None:
        self.expression = expression
        self.tz = tz
        self.trigger = cron_trigger(expression)

    def _wall(self, instant: datetime) -> datetime:
        return instant.astimezone(self.tz).replace(tzinfo=UTC, fold=0)

    def _instant(self, wall_time: datetime) -> datetime:
        return place(wall_time, self.tz)

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
