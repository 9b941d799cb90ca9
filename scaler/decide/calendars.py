"""Calendars: named sets of days (and timed spans) that a window is active
only on, or except on. Pure: the iCalendar text arrives already read.

A calendar is the union of its sources: a country's public holidays (the
`holidays` package), explicit dates and ranges, and iCalendar events
(`icalendars`). A source yields, per year, whole *days* (a holiday, a date,
an all-day event) and timed *spans* (a timed event, in its own time zone).

A day is the whole local day in the zone of the policy that asks: from the
moment its midnight happens to the moment the next midnight does, placed
by the one wall-clock rule (`wallclock.place`), so a midnight skipped by a
change of clocks (America/Havana, America/Santiago) starts the day when the
clocks jump. A span is its own instants.

Each year of a calendar is worked out once, on first use, and kept with the
calendar, which lives as long as the policy set that defined it (until the
next reload).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import MAXYEAR, MINYEAR, UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

import holidays as holiday_tables

from scaler.decide.wallclock import place_within, shown

#: How many years ahead a next boundary is looked for; a calendar with
#: nothing in them has none (the daemon's regular ticks do not depend on it).
HORIZON_YEARS = 10
#: How far beyond a year, each way, a source's spans of that year reach (a
#: zone moves an event's day by up to a day).
SPAN_MARGIN = timedelta(days=2)
#: How long before its 1 January (UTC) a year's edges may lie that no year
#: before it has too: its spans' margin, and its local midnight (UTC+14 at most).
_YEAR_REACH = SPAN_MARGIN + timedelta(days=1)
_ONE_DAY = timedelta(days=1)

#: (start, end, name): a timed span, UTC instants, end exclusive.
Span = tuple[datetime, datetime, str]


@dataclass(frozen=True, slots=True)
class Occasion:
    """Why a moment is on a calendar: 'Heilige Drei Könige (DE-BY)'; a
    whole day, or a timed event."""

    name: str
    whole_day: bool


class Source(Protocol):
    """One source of a calendar."""

    label: str

    def days(self, year: int) -> Mapping[date, str]:
        """The days of `year` it names, each with its name ('' if none)."""
        ...

    def spans(self, year: int, tz: ZoneInfo) -> Sequence[Span]:
        """Its timed spans overlapping the local `year` in `tz` (or more)."""
        ...


class HolidaySource:
    """A country's (or subdivision's) holidays, from the `holidays` package."""

    __slots__ = ("categories", "country", "label", "language", "subdivision")

    def __init__(self, country: str, *, subdivision: str | None = None, categories: tuple[str, ...] | None = None,
                 language: str | None = None) -> None:
        self.country, self.subdivision, self.categories = country, subdivision, categories
        self.language = language or holiday_tables.country_holidays(country).default_language
        self.label = f"{country}-{subdivision}" if subdivision else country

    def days(self, year: int) -> Mapping[date, str]:
        try:
            table = holiday_tables.country_holidays(self.country, subdiv=self.subdivision, years=year,
                                                    language=self.language, categories=self.categories)
            return dict(table.items())
        except (ValueError, OverflowError, ArithmeticError):  # a year the tables cannot compute (year 1, 9999)
            return {}

    def spans(self, year: int, tz: ZoneInfo) -> Sequence[Span]:
        return ()


@dataclass(frozen=True)
class DateRange:
    first: date
    last: date
    name: str = ""


class DateSource:
    """Explicit dates and ranges (both ends included)."""

    __slots__ = ("label", "ranges")

    def __init__(self, ranges: Sequence[DateRange], *, label: str) -> None:
        self.ranges, self.label = tuple(ranges), label

    def days(self, year: int) -> Mapping[date, str]:
        found: dict[date, str] = {}
        for entry in self.ranges:
            if entry.first.year > year or entry.last.year < year:
                continue
            day = max(entry.first, date(year, 1, 1))
            last = min(entry.last, date(year, 12, 31))
            while True:
                found.setdefault(day, entry.name)
                if day >= last:
                    break
                day += _ONE_DAY
        return found

    def spans(self, year: int, tz: ZoneInfo) -> Sequence[Span]:
        return ()


def occasion_name(name: str, label: str) -> str:
    return f"{name} ({label})" if name and name != label else label


@dataclass(frozen=True)
class Year:
    """One year of a calendar in one zone."""

    days: Mapping[date, tuple[str, ...]]
    spans: tuple[Span, ...]
    #: the spans' starts, for bisecting
    starts: tuple[datetime, ...]
    #: every instant at which something starts or ends, sorted
    edges: tuple[datetime, ...]
    #: the longest span, to bound the look back for spans holding a moment
    longest: timedelta


class Calendar:
    """A named calendar: the union of its sources."""

    def __init__(self, name: str, sources: Sequence[Source], *, description: str = "") -> None:
        self.name, self.sources, self.description = name, tuple(sources), description
        self._days: dict[int, dict[date, tuple[str, ...]]] = {}
        self._years: dict[tuple[int, str], Year] = {}

    def __repr__(self) -> str:
        return f"Calendar({self.name!r})"

    def days(self, year: int) -> Mapping[date, tuple[str, ...]]:
        """The whole days of `year` and their names, labelled: computed once."""
        found = self._days.get(year)
        if found is None:
            merged: dict[date, list[str]] = {}
            for source in self.sources:
                for day, name in source.days(year).items():
                    names = merged.setdefault(day, [])
                    text = occasion_name(name, source.label)
                    if text not in names:
                        names.append(text)
            found = self._days[year] = {day: tuple(names) for day, names in sorted(merged.items())}
        return found

    def year(self, year: int, tz: ZoneInfo) -> Year:
        """`year` in `tz`: its days, spans and edges, computed once."""
        key = (year, tz.key)
        found = self._years.get(key)
        if found is None:
            found = self._years[key] = self._compute(year, tz)
        return found

    def _compute(self, year: int, tz: ZoneInfo) -> Year:
        days = self.days(year)
        spans = sorted({(start, end, occasion_name(name, source.label))
                        for source in self.sources for start, end, name in source.spans(year, tz) if start < end})
        edges: set[datetime] = set()
        for day in days:
            edges.update(edge for edge in _day_bounds(day, tz) if edge is not None)
        for start, end, _ in spans:
            edges.update((start, end))
        longest = max((end - start for start, end, _ in spans), default=timedelta(0))
        return Year(days, tuple(spans), tuple(start for start, _, _ in spans), tuple(sorted(edges)), longest)

    def occasions_at(self, moment: datetime, tz: ZoneInfo) -> tuple[Occasion, ...]:
        """What the calendar holds at `moment` (UTC) in `tz`: the local day's
        names, then the timed spans holding it; () if nothing."""
        try:
            day = shown(moment, tz).date()
        except OverflowError:  # the wall clock is before year 1 or after 9999 there
            return ()
        year = self.year(day.year, tz)
        found = [Occasion(name, True) for name in year.days.get(day, ())]
        if year.spans:
            index = bisect_right(year.starts, moment)
            while index > 0:
                index -= 1
                start, end, name = year.spans[index]
                if start < moment - year.longest:
                    break
                if start <= moment < end:
                    found.append(Occasion(name, False))
        return tuple(found)

    def next_boundary(self, moment: datetime, tz: ZoneInfo) -> datetime | None:
        """The first instant after `moment` at which a day or span of the
        calendar starts or ends (in `tz`); None within HORIZON_YEARS."""
        try:
            first = shown(moment, tz).year
        except OverflowError:
            first = MINYEAR if moment.year == MINYEAR else MAXYEAR + 1
        found: datetime | None = None
        for year in range(max(first, MINYEAR), min(first + HORIZON_YEARS, MAXYEAR) + 1):
            if found is not None and found < datetime(year, 1, 1, tzinfo=UTC) - _YEAR_REACH:
                break  # no edge of this year or a later one comes first
            edges = self.year(year, tz).edges
            index = bisect_right(edges, moment)
            if index < len(edges) and (found is None or edges[index] < found):
                found = edges[index]  # a year's events reach into the next: its first day may come first
        return found


def _day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime | None, datetime | None]:
    """When local `day` starts and ends in `tz` (None past year 9999)."""
    opens = place_within(datetime.combine(day, time()), tz)
    try:
        closes = place_within(datetime.combine(day + _ONE_DAY, time()), tz)
    except OverflowError:
        closes = None
    return opens, closes

