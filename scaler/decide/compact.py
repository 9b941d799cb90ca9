"""The compact window form, `Mon-Fri 08:00-20:00`, read as a person reads it.

A compact window is a set of wall-clock spans in the week, one per listed
day: `Sat,Sun 00:00-24:00` is all of Saturday and all of Sunday, one span
from Saturday 00:00 to Monday 00:00; `daily 00:00-24:00` is always open;
`Mon-Fri 22:00-06:00` is five nights, each ending the next morning;
`Fri 18:00-Mon 07:00` is one span over the weekend. Spans that touch or
overlap are one span, so a window never closes and reopens at the same
instant (compiling to a start and an end cron, as scaler once did, closed
`Sat,Sun 00:00-24:00` at Sunday 00:00 because Saturday's end and Sunday's
start fired together).

Each span's edges are placed on the real time line by `wallclock.place`, the
same rule as cron edges, so daylight saving time moves edges, never meaning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import MINYEAR, datetime, time, timedelta
from zoneinfo import ZoneInfo

from scaler.decide.wallclock import LAST_INSTANT, WindowError, place_within, utc, wall

#: Python's numbering: Monday = 0.
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DAY_MINUTES = 24 * 60
WEEK_MINUTES = 7 * DAY_MINUTES

_WHEN = re.compile(
    r"^(?P<days>[A-Za-z][A-Za-z ,\-]*?)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*"
    r"(?:(?P<end_day>[A-Za-z]+)\s+)?(?P<end>\d{1,2}:\d{2})$"
)
_WHEN_HELP = ("expected '<days> HH:MM-HH:MM' (days: daily, Mon-Fri, Sat,Sun; an end before the start "
              "ends the next day; 24:00 is the end of the day) or '<day> HH:MM-<day> HH:MM' "
              "(e.g. 'Fri 18:00-Mon 07:00')")


def _day(token: str, text: str) -> int:
    name = token.lower()
    if name in _DAYS:
        return _DAYS.index(name)
    if name in _FULL_DAYS:
        return _FULL_DAYS.index(name)
    raise WindowError(f"{text!r}: unknown day {token!r} (use Mon, Tue, Wed, Thu, Fri, Sat, Sun or daily)")


def _days(text: str, when: str) -> list[int]:
    compact = text.replace(" ", "")
    if compact.lower() == "daily":
        return list(range(7))
    days: set[int] = set()
    for part in compact.split(","):
        if "-" in part:
            first_text, _, last_text = part.partition("-")
            first, last = _day(first_text, when), _day(last_text, when)
            days.update((first + offset) % 7 for offset in range((last - first) % 7 + 1))  # Fri-Mon wraps
        else:
            days.add(_day(part, when))
    return sorted(days)


def _minutes(text: str, when: str, *, allow_24: bool) -> int:
    hour_text, _, minute_text = text.partition(":")
    hour, minute = int(hour_text), int(minute_text)
    if allow_24 and (hour, minute) == (24, 0):
        return DAY_MINUTES
    if hour > 23 or minute > 59:
        raise WindowError(f"{when!r}: {text} is not a time of day (00:00-23:59, or 24:00 for an end)")
    return hour * 60 + minute


def week_spans(when: str) -> list[tuple[int, int]]:
    """The spans `when` names, as (start, end) minutes after Monday 00:00,
    unmerged; an end may run past the end of the week."""
    match = _WHEN.match(when.strip())
    if match is None:
        raise WindowError(f"{when!r}: {_WHEN_HELP}")
    start = _minutes(match["start"], when, allow_24=False)
    end = _minutes(match["end"], when, allow_24=True)
    days = _days(match["days"], when)
    if match["end_day"] is not None:
        if len(days) != 1:
            raise WindowError(f"{when!r}: a window ending on another day starts on one day, "
                              "e.g. 'Fri 18:00-Mon 07:00'")
        opens = days[0] * DAY_MINUTES + start
        closes = _day(match["end_day"], when) * DAY_MINUTES + end
        if closes % WEEK_MINUTES == opens:
            raise WindowError(f"{when!r}: the window starts and ends at the same time")
        return [(opens, closes if closes > opens else closes + WEEK_MINUTES)]
    if end == start:
        raise WindowError(f"{when!r}: the window starts and ends at the same time")
    length = end - start if end > start else end + DAY_MINUTES - start  # an earlier end is the next day's
    return [(day * DAY_MINUTES + start, day * DAY_MINUTES + start + length) for day in days]


def merge(spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...] | None:
    """Spans on the weekly circle joined where they touch or overlap, as
    (start, end) with 0 <= start < WEEK_MINUTES; None if they cover the
    whole week. Minute by minute: a week has only 10,080 of them."""
    covered = [False] * WEEK_MINUTES
    for start, end in spans:
        for minute in range(start, end):
            covered[minute % WEEK_MINUTES] = True
    if all(covered):
        return None
    first_gap = covered.index(False)
    merged: list[tuple[int, int]] = []
    minute = first_gap
    while minute < first_gap + WEEK_MINUTES:
        if covered[minute % WEEK_MINUTES]:
            start = minute
            while covered[minute % WEEK_MINUTES]:
                minute += 1
            merged.append((start % WEEK_MINUTES, start % WEEK_MINUTES + minute - start))
        else:
            minute += 1
    return tuple(sorted(merged))


@dataclass(frozen=True)
class WeeklySpans:
    """A compact window compiled: merged spans of the week, or always open
    (`spans is None`)."""

    spans: tuple[tuple[int, int], ...] | None
    tz: ZoneInfo
    #: Monday (local) -> that week's intervals: placing them costs 30 DST
    #: look-ups, and a replay asks about the same week thousands of times.
    _weeks: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def parse(cls, when: str, tz: ZoneInfo) -> WeeklySpans:
        return cls(merge(week_spans(when)), tz)

    def _intervals(self, moment: datetime) -> list[tuple[datetime, datetime]]:
        """The real (start, end) instants of the spans of the weeks around
        `moment`, without empty ones (a span inside a DST gap), joined where
        they touch."""
        try:
            local = wall(moment, self.tz)
        except OverflowError:  # the wall clock is before year 1 or after 9999: the nearest week there is
            local = datetime.min if moment.year == MINYEAR else datetime.max
        monday = datetime.combine(local.date() - timedelta(days=local.weekday()), time())
        joined = self._weeks.get(monday)
        if joined is None:
            if len(self._weeks) >= 16:
                self._weeks.clear()
            joined = self._weeks[monday] = self._place(monday)
        return joined

    def _place(self, monday: datetime) -> list[tuple[datetime, datetime]]:
        placed = []
        for week in (-2, -1, 0, 1, 2):
            for start, end in self.spans or ():
                try:
                    base = monday + timedelta(weeks=week)
                    opens = place_within(base + timedelta(minutes=start), self.tz)
                    closes = place_within(base + timedelta(minutes=end), self.tz) or LAST_INSTANT
                except OverflowError:  # a week before year 1 or after 9999: none
                    continue
                if opens is not None and opens < closes:
                    placed.append((opens, closes))
        placed.sort()
        joined: list[tuple[datetime, datetime]] = []
        for opens, closes in placed:
            if joined and opens <= joined[-1][1]:
                joined[-1] = (joined[-1][0], max(joined[-1][1], closes))
            else:
                joined.append((opens, closes))
        return joined

    def active_at(self, now: datetime) -> bool:
        if self.spans is None:
            return True
        now = utc(now)
        return any(opens <= now < closes for opens, closes in self._intervals(now))

    def next_change(self, after: datetime) -> datetime | None:
        return self.next_edge(after)

    def next_edge(self, after: datetime) -> datetime | None:
        """The first instant strictly after `after` at which the window opens
        or closes; None for a window that is always open."""
        if self.spans is None:
            return None
        after = utc(after)
        edges = [edge for interval in self._intervals(after) for edge in interval if after < edge < LAST_INSTANT]
        return min(edges) if edges else None
