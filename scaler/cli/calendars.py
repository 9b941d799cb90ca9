"""`scaler validate --explain CALENDAR [--year Y] [--timezone ZONE]`: the days
and timed events a calendar yields in a year, so a person can check it before
it acts. Days are listed as dates (they are whole local days in the zone of
each policy that uses them); timed events in ZONE: by default the zone of
the first policy that uses the calendar, else UTC."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from scaler.decide.icalendars import IcalError
from scaler.decide.loading import PolicySet
from scaler.decide.windows import WindowError, zone


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--explain", metavar="CALENDAR",
                        help="list the days and events the calendar CALENDAR yields (see --year)")
    parser.add_argument("--year", type=int, metavar="Y", help="the year --explain lists (default: this year)")
    parser.add_argument("--timezone", metavar="ZONE",
                        help="IANA zone --explain shows timed events in (default: that of the first policy "
                             "using the calendar, else UTC)")


def _zone_of(policies: PolicySet, name: str) -> str:
    for policy in policies:
        schedule = policy.schedule
        if schedule is not None and any(name in (*window.on, *window.except_) for window in schedule.windows):
            return schedule.timezone
    return "UTC"


def explain(policies: PolicySet, args: argparse.Namespace) -> int:
    """Print the calendar's year; 1 if there is no such calendar (or no
    such year, or zone), 0 otherwise."""
    name = args.explain
    calendar = policies.calendars.get(name)
    if calendar is None:
        known = ", ".join(sorted(policies.calendars)) or "none"
        print(f"error: no usable calendar {name!r} in these files (calendars: {known})", file=sys.stderr)
        return 1
    year = args.year if args.year is not None else datetime.now(UTC).year
    if not 1 <= year <= 9999:
        print(f"error: --year {year}: a year from 1 to 9999", file=sys.stderr)
        return 1
    try:
        tz = zone(args.timezone or _zone_of(policies, name))
    except WindowError as error:
        print(f"error: --timezone: {error}", file=sys.stderr)
        return 1
    where = policies.calendar_sources.get(name, "?")
    print(f"calendar {name!r} ({where}) in {year}, timed events in {tz.key}:")
    if name in policies.unread:
        print("  (its iCalendar file is in a ConfigMap: read through the API by the daemon and `scaler plan`, "
              "not by validate)")
    try:
        shown = calendar.year(year, tz)
    except IcalError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    rows = [(day, 0, f"{f'{day:%Y-%m-%d %a}':<33}{'; '.join(names)}") for day, names in shown.days.items()]
    for start, end, text in shown.spans:
        opens, closes = start.astimezone(tz), end.astimezone(tz)
        if year not in (opens.year, closes.year):
            continue
        until = f"{closes:%H:%M}" if closes.date() == opens.date() else f"{closes:%m-%d %H:%M}"
        rows.append((opens.date(), 1, f"{opens:%Y-%m-%d %a} {opens:%H:%M}-{until:<12}{text}"))
    for _, _, line in sorted(rows):
        print(line)
    days, events = len(shown.days), len(rows) - len(shown.days)
    print(f"{days} day{'s' if days != 1 else ''}, {events} timed event{'s' if events != 1 else ''}")
    return 0
