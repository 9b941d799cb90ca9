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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import MAXYEAR, MINYEAR, UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events

from scaler.decide.calendars import SPAN_MARGIN, Span
from scaler.decide.wallclock import place_within

#: An iCalendar text larger than this is refused (as a policy file is).
MAX_ICAL_BYTES = 1024 * 1024
#: The first and last days asked of the library (years 1 and 9999 less a month).
_EARLIEST, _LATEST = date(MINYEAR, 2, 1), date(MAXYEAR, 11, 30)

#: (start, end, summary): an occurrence as the library gives it; dates for all-day events.
_Occurrence = tuple[date | datetime, date | datetime, str]


class IcalError(ValueError):
    """The text is not a usable iCalendar file; the message says why."""


def _event_name(event: Any) -> str:
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
    starts = [_check_event(event) for event in calendar.walk("VEVENT")]
    for start in starts:
        first = start if isinstance(start, date) and not isinstance(start, datetime) else start.date()
        try:
            recurring_ical_events.of(calendar).between(first, first + timedelta(days=400))
        except Exception as error:  # noqa: BLE001 - dateutil's and the library's errors have many types
            raise IcalError(f"{what}: cannot expand its events: {str(error).splitlines()[0][:200]}") from None
        break  # one expansion covers every event's rules
    return calendar


class IcalSource:
    """The events of one iCalendar file."""

    __slots__ = ("_calendar", "_years", "label")

    def __init__(self, calendar: icalendar.Calendar, *, label: str) -> None:
        self._calendar, self.label = calendar, label
        self._years: dict[int, list[_Occurrence]] = {}

    def _occurrences(self, year: int) -> list[_Occurrence]:
        """Every occurrence overlapping the year, with a margin for zones."""
        found = self._years.get(year)
        if found is None:
            # The library reaches a little beyond the range it is given: keep a month from the ends of time.
            first = max(date(year, 1, 1), _EARLIEST + SPAN_MARGIN) - SPAN_MARGIN
            last = min(date(year, 12, 31), _LATEST - SPAN_MARGIN) + SPAN_MARGIN
            found = []
            try:
                occurrences = recurring_ical_events.of(self._calendar).between(first, last) if first < last else []
            except OverflowError:
                occurrences = []
            for event in occurrences:
                if str(event.get("STATUS", "")).upper() == "CANCELLED":
                    continue
                found.append((event.start, event.end, str(event.get("SUMMARY", "")).strip()))
            self._years[year] = found
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
