"""iCalendar (RFC 5545) calendars: events parsed by `icalendar`, their
recurrences (RRULE, RDATE, EXDATE, and RECURRENCE-ID exceptions that move or
change one occurrence) expanded by `recurring-ical-events`. Pure: the text
is read by whoever loads the policies (a file, or a ConfigMap key through
the API).

An all-day event (DTSTART;VALUE=DATE) names whole local days, DTEND
exclusive, in the zone of the policy that uses it. A timed event is its own
span: a time with a TZID is placed in that zone by the one wall-clock rule
(`wallclock.place`), a UTC time is itself, and a floating time (no zone) is
read in the policy's zone. Cancelled events count for nothing.

Expanding recurrences is bounded, as reading YAML is (`reading`): a rule
may be valid RFC 5545 and still hang the library or eat the memory
(INTERVAL=0 never ends; FREQ=MINUTELY is half a million instants a year; a
rule that matches almost never, such as BYMONTH=2;BYMONTHDAY=30, is scanned
day by day to year 9999). So each event may occur at most
MAX_EVENT_OCCURRENCES times in the span expanded (a year; at load, the
year from its start), and the expansion of a calendar's span may take
at most MAX_EXPANSION_STEPS steps; past either, the calendar is refused
with a message naming the event.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import MAXYEAR, MINYEAR, UTC, date, datetime, timedelta
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events

from scaler.decide.calendars import SPAN_MARGIN, Span
from scaler.decide.wallclock import place_within

#: An iCalendar text larger than this is refused (as a policy file is).
MAX_ICAL_BYTES = 1024 * 1024
#: The most occurrences of one event in one span expanded (a year): a few a
#: day; an event repeating hourly, by the minute or second is refused.
MAX_EVENT_OCCURRENCES = 2000
#: The most work that expanding the events of one calendar for one span may
#: take, in Python calls and returns counted as they happen: 1.5-3 s and
#: about 12 MB on a 2-core machine, enough for some 6,000 occurrences of
#: ordinary rules (a daily event since 1900 takes a quarter of it).
MAX_EXPANSION_STEPS = 5_000_000
#: How far from its start an event is expanded at load, to check its rules: a year.
_CHECKED_SPAN = timedelta(days=366)
#: The first and last days asked of the library (years 1 and 9999 less a month).
_EARLIEST, _LATEST = date(MINYEAR, 2, 1), date(MAXYEAR, 11, 30)

#: (start, end, summary): an occurrence as the library gives it; dates for all-day events.
_Occurrence = tuple[date | datetime, date | datetime, str]


class IcalError(ValueError):
    """The text is not a usable iCalendar file; the message says why."""


def _event_name(event: Any) -> str:
    if event is None:
        return "an event"
    summary = str(event.get("SUMMARY", "")).strip()
    uid = str(event.get("UID", "")).strip()
    return f"event {summary!r}" + (f" (UID {uid})" if uid else "") if summary else f"event with UID {uid or '?'}"


def _check_event(event: Any) -> date | datetime:
    """The event's DTSTART, or IcalError naming what is wrong with it."""
    for key in ("DTSTART", "DTEND", "RECURRENCE-ID"):
        value = event.get(key)
        if value is None:
            if key == "DTSTART":
                raise IcalError(f"{_event_name(event)} has no DTSTART")
            continue
        try:
            moment = value.dt
        except Exception as error:  # noqa: BLE001 - icalendar's errors for a broken value have many types
            raise IcalError(f"{_event_name(event)}: {key} {str(error).split(': ', 1)[-1]}") from None
        zone_name = value.params.get("TZID") if hasattr(value, "params") else None
        if zone_name and isinstance(moment, datetime) and moment.tzinfo is None:
            raise IcalError(f"{_event_name(event)}: {key} has TZID {zone_name!r}, which is neither a known time "
                            "zone nor defined by a VTIMEZONE in the file")
    rules = event.get("RRULE")
    for rule in rules if isinstance(rules, list) else [rules]:
        for interval in rule.get("INTERVAL", ()) if isinstance(rule, Mapping) else ():
            if not isinstance(interval, int) or interval < 1:
                raise IcalError(f"{_event_name(event)}: RRULE INTERVAL={interval}: the interval must be a positive "
                                "whole number (RFC 5545)")
    start: date | datetime = event["DTSTART"].dt
    return start


def parse(text: str, *, what: str) -> icalendar.Calendar:
    """The calendar in `text`, checked: it parses, every event has a start,
    its times and zones are readable and its recurrence rules expand.
    `what` names it in messages ('offsites.ics')."""
    if len(text.encode("utf-8")) > MAX_ICAL_BYTES:
        raise IcalError(f"{what} is larger than {MAX_ICAL_BYTES} bytes, the limit for an iCalendar file")
    try:
        calendar = icalendar.Calendar.from_ical(text)
    except Exception as error:  # noqa: BLE001 - a parser's errors: ValueError, IndexError, ...
        raise IcalError(f"{what} is not an iCalendar file: {str(error).splitlines()[0][:200]}") from None
    if calendar.name != "VCALENDAR":
        raise IcalError(f"{what} is not an iCalendar file: it holds a {calendar.name}, not a VCALENDAR")
    starts: dict[str, date] = {}
    for event in calendar.walk("VEVENT"):
        start = _check_event(event)
        day = start.date() if isinstance(start, datetime) else start
        uid = _uid(event)
        starts[uid] = min(day, starts.get(uid, day))

    def checked(uid: str) -> tuple[date, date]:
        first = min(starts.get(uid, _EARLIEST), _LATEST - _CHECKED_SPAN)
        return first, first + _CHECKED_SPAN

    expand(calendar, checked, what=what)
    return calendar


def _span(first: date, last: date) -> tuple[date, date]:
    """`first` to `last`, kept a month from the ends of time (the library
    reaches a little beyond the range it is given)."""
    return (max(first, _EARLIEST + SPAN_MARGIN) - SPAN_MARGIN,
            min(last, _LATEST - SPAN_MARGIN) + SPAN_MARGIN)


def _uid(event: Any) -> str:
    """The event's UID as the library groups events by it."""
    return str(event.get("UID", str(id(event))))


class _OutOfSteps(BaseException):
    """The expansion used up its steps. A BaseException, so that no
    `except Exception` in a library on the way swallows it."""


class _Steps:
    """Counts every call and return in this thread while it is active
    (`sys.setprofile`) and stops the work past `limit` steps. dateutil can
    scan for centuries without yielding anything (a rule that never
    matches), so counting occurrences alone cannot bound it."""

    def __init__(self, limit: int) -> None:
        self.left = limit
        self._previous: Any = None

    def _count(self, frame: FrameType, event: str, arg: Any) -> None:
        self.left -= 1
        if self.left < 0:
            raise _OutOfSteps

    def __enter__(self) -> _Steps:
        self._previous = sys.getprofile()
        sys.setprofile(self._count)
        return self

    def __exit__(self, *failure: object) -> None:
        sys.setprofile(self._previous)


def _rules(event: Any) -> str:
    rules = event.get("RRULE")
    texts = [rule.to_ical().decode() for rule in (rules if isinstance(rules, list) else [rules]) if rule is not None]
    return "; ".join(f"RRULE:{text}" for text in texts) or "RDATE"


def expand(calendar: icalendar.Calendar, span: Callable[[str], tuple[date, date]], *,
           what: str) -> list[_Occurrence]:
    """The occurrences of each event (series of one UID) in its `span`
    (first and last day), bounded: IcalError naming the event past
    MAX_EVENT_OCCURRENCES of it, or past MAX_EXPANSION_STEPS in all."""
    found: list[_Occurrence] = []
    events: dict[str, Any] = {}
    for component in calendar.walk("VEVENT"):
        events.setdefault(_uid(component), component)
    series: Any = None
    first = last = _EARLIEST
    try:
        with _Steps(MAX_EXPANSION_STEPS):
            # The library's own loop (CalendarQuery.between), one event (UID) at a time, so a message can name it.
            for series in recurring_ical_events.of(calendar).series:
                first, last = _span(*span(str(series.uid)))
                count = 0
                for occurrence in series.between(first, last) if first < last else ():
                    count += 1
                    if count > MAX_EVENT_OCCURRENCES:
                        event = events.get(str(series.uid))
                        raise IcalError(f"{what}: {_event_name(event)} occurs more than {MAX_EVENT_OCCURRENCES} "
                                        f"times from {first} to {last} ({_rules(event)}): an event may occur at most "
                                        f"{MAX_EVENT_OCCURRENCES} times a year (a few a day)")
                    component = occurrence.as_component(False)
                    if str(component.get("STATUS", "")).upper() != "CANCELLED":
                        found.append((component.start, component.end, str(component.get("SUMMARY", "")).strip()))
    except _OutOfSteps:
        event = events.get(str(series.uid)) if series is not None else None
        raise IcalError(f"{what}: {_event_name(event)}: working out its occurrences from {first} to {last} takes "
                        f"more than {MAX_EXPANSION_STEPS} steps ({_rules(event)}): it repeats too often (at most "
                        f"{MAX_EVENT_OCCURRENCES} times a year), matches almost never (BYMONTH=2;BYMONTHDAY=30) or "
                        "starts centuries earlier") from None
    except OverflowError:
        return []  # the library ran into year 1 or 9999
    except IcalError:
        raise
    except Exception as error:  # noqa: BLE001 - dateutil's and the library's errors have many types
        raise IcalError(f"{what}: cannot expand its events: {str(error).splitlines()[0][:200]}") from None
    return found


class IcalSource:
    """The events of one iCalendar file. A year it cannot expand within the
    bounds raises IcalError, each time it is asked (the policy using it is
    then reported as failing, and holds)."""

    __slots__ = ("_calendar", "_years", "label", "what")

    def __init__(self, calendar: icalendar.Calendar, *, label: str, what: str = "") -> None:
        self._calendar, self.label, self.what = calendar, label, what or label
        self._years: dict[int, list[_Occurrence] | str] = {}

    def _occurrences(self, year: int) -> list[_Occurrence]:
        """Every occurrence overlapping the year, with a margin for zones."""
        found = self._years.get(year)
        if found is None:
            try:
                found = expand(self._calendar, lambda uid: (date(year, 1, 1), date(year, 12, 31)), what=self.what)
            except IcalError as error:
                found = str(error)
            self._years[year] = found
        if isinstance(found, str):
            raise IcalError(found)
        return found

    def days(self, year: int) -> Mapping[date, str]:
        found: dict[date, str] = {}
        for start, end, name in self._occurrences(year):
            if isinstance(start, datetime):
                continue
            stop = end if not isinstance(end, datetime) and end > start else start + timedelta(days=1)
            day = max(start, date(year, 1, 1))
            while day < stop and day.year == year:
                found.setdefault(day, name)
                if day == date.max:
                    break
                day += timedelta(days=1)
        return found

    def spans(self, year: int, tz: ZoneInfo) -> Sequence[Span]:
        found = []
        for start, end, name in self._occurrences(year):
            if not isinstance(start, datetime):
                continue
            opens, closes = _instant(start, tz), _instant(end if isinstance(end, datetime) else start, tz)
            if opens is not None and closes is not None and opens < closes:
                found.append((opens, closes, name))
        return found


def _instant(moment: datetime, tz: ZoneInfo) -> datetime | None:
    """An event time on the real time line: in its own zone by the
    wall-clock rule, or in `tz` if it is floating."""
    zone = moment.tzinfo
    if zone is None:
        return place_within(moment, tz)
    if isinstance(zone, ZoneInfo):
        return place_within(moment.replace(tzinfo=None), zone)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return None
