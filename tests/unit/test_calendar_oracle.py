"""Windows with calendars against the oracle (tests/oracle.py, "calendars"):
a naive evaluator written from docs/policies.md that walks real time minute
by minute, reads the local day off the latest wall time the clock has shown,
expands the iCalendar events it generated itself (weekly recurrences with an
exception, all-day events, timed events in their own zones or floating) and
places every wall time by walking that zone's clock. Hypothesis draws the
calendars (holidays, dates, iCalendar), the window (compact, cron or no time;
on, except or both), the zone (with changes of clocks at midnight: Havana,
Santiago) and the year; the engine reads the same calendars through the
loader, as the daemon does."""

from __future__ import annotations

import os
import random
import textwrap
from datetime import UTC, date, datetime, timedelta

import holidays
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from scaler.decide.loading import check_texts
from scaler.decide.windows import zone
from tests import oracle
from tests.unit.test_oracle import ZONES, beginnings, compact_forms, cron_forms

SPAN = timedelta(days=2)
EXAMPLES = settings(max_examples=int(os.environ.get("SCALER_CALENDAR_ORACLE_EXAMPLES", "25")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large])
EVENT_ZONES = [None, "UTC", "Europe/Berlin", "America/New_York", "America/Havana", "Asia/Kolkata"]
COUNTRIES = [("DE", "BY"), ("DE", "BE"), ("US", None), ("CL", None), ("CU", None)]


def stamp(moment: datetime, zone_name: str | None, key: str) -> str:
    if zone_name is None:
        return f"{key}:{moment:%Y%m%dT%H%M%S}"
    if zone_name == "UTC":
        return f"{key}:{moment:%Y%m%dT%H%M%SZ}"
    return f"{key};TZID={zone_name}:{moment:%Y%m%dT%H%M%S}"


@st.composite
def events(draw, near: date) -> tuple[list[str], oracle.Calendar]:
    """VEVENTs and what the oracle makes of them, around `near`."""
    lines: list[str] = []
    known = oracle.Calendar(set(), [])
    for index in range(draw(st.integers(0, 3))):
        day = near + timedelta(days=draw(st.integers(-2, 4)))
        kind = draw(st.sampled_from(["all-day", "timed", "weekly"]))
        lines += ["BEGIN:VEVENT", f"UID:e{index}@test", "DTSTAMP:20200101T000000Z", f"SUMMARY:event {index}"]
        if kind == "all-day":
            length = draw(st.integers(1, 3))
            lines += [f"DTSTART;VALUE=DATE:{day:%Y%m%d}", f"DTEND;VALUE=DATE:{day + timedelta(days=length):%Y%m%d}"]
            known.days.update(day + timedelta(days=offset) for offset in range(length))
        else:
            zone_name = draw(st.sampled_from(EVENT_ZONES))
            start = datetime.combine(day, datetime.min.time()) + timedelta(
                minutes=draw(st.sampled_from([0, 30, 60, 90, 120, 150, 1380, 1410])) if draw(st.booleans())
                else draw(st.integers(0, 1439)))
            end = start + timedelta(minutes=draw(st.sampled_from([30, 60, 180, 600, 1440, 2000])))
            lines += [stamp(start, zone_name, "DTSTART"), stamp(end, zone_name, "DTEND")]
            tz = zone(zone_name) if zone_name else None
            weeks = [0]
            if kind == "weekly":
                count = draw(st.integers(2, 3))
                skipped = draw(st.integers(0, count - 1))
                lines += [f"RRULE:FREQ=WEEKLY;COUNT={count}",
                          stamp(start + timedelta(weeks=skipped), zone_name, "EXDATE")]
                weeks = [week for week in range(count) if week != skipped]
                start, end = start - timedelta(weeks=1), end - timedelta(weeks=1)  # the week before too
                weeks = [week + 1 for week in weeks]
            known.events.extend((start + timedelta(weeks=week), end + timedelta(weeks=week), tz) for week in weeks)
        lines.append("END:VEVENT")
    return lines, known


@st.composite
def calendars(draw, near: date) -> tuple[dict, dict[str, str], dict[str, oracle.Calendar]]:
    """(the calendars: mapping of a policy file, iCalendar texts by file
    name, the oracle's calendars)."""
    specs: dict = {}
    texts: dict[str, str] = {}
    known: dict[str, oracle.Calendar] = {}
    for name in ("a", "b"):
        spec: dict = {}
        calendar = oracle.Calendar(set(), [])
        if draw(st.integers(0, 3)) == 0:
            country, subdivision = draw(st.sampled_from(COUNTRIES))
            spec["holidays"] = {"country": country, **({"subdivision": subdivision} if subdivision else {})}
            calendar.days.update(holidays.country_holidays(country, subdiv=subdivision,
                                                           years=range(near.year - 1, near.year + 2)))
        if draw(st.booleans()):
            first = near + timedelta(days=draw(st.integers(-2, 4)))
            last = first + timedelta(days=draw(st.integers(0, 2)))
            spec["dates"] = [f"{first}..{last}" if last > first else str(first)]
            calendar.days.update(first + timedelta(days=offset) for offset in range((last - first).days + 1))
        if draw(st.booleans()) or not spec:
            lines, found = draw(events(near))
            texts[f"{name}.ics"] = "\r\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN", *lines,
                                                "END:VCALENDAR"]) + "\r\n"
            spec["ical"] = {"file": f"{name}.ics"}
            calendar.days |= found.days
            calendar.events += found.events
        specs[name], known[name] = spec, calendar
    return specs, texts, known


@st.composite
def calendar_windows(draw) -> dict:
    time = draw(st.sampled_from(["when", "cron", "none"]))
    spec: dict = {}
    if time == "when":
        spec["when"] = draw(compact_forms())
    elif time == "cron":
        spec["start"], spec["end"] = draw(cron_forms()), draw(cron_forms())
    uses = draw(st.sampled_from(["on", "except", "both"] if time != "none" else ["on", "both"]))
    if uses in ("on", "both"):
        spec["on"] = draw(st.sampled_from([["a"], ["b"], ["a", "b"]]))
    if uses in ("except", "both"):
        spec["except"] = ["b"] if spec.get("on") == ["a"] else ["a"]
    return spec


def engine_window(spec: dict, specs: dict, texts: dict[str, str], tz_name: str):
    body = {"calendars": specs, "policies": [{"name": "p", "schedule": {
        "timezone": tz_name, "windows": [{"name": "w", "mode": "up", **spec}]}}]}
    found, problems = check_texts([("p.yaml", yaml.safe_dump(body))],
                                  read_ical=lambda ical, origin: texts[ical.file])
    assume(not problems)  # a cron pair that never opens, say
    return found.policies[0].schedule.compiled.windows[0]


@EXAMPLES
@given(data=st.data(), tz_name=st.sampled_from(ZONES), seed=st.integers(0, 2**32))
def test_windows_with_calendars_agree_with_the_oracle(data, tz_name, seed):
    first = data.draw(beginnings(tz_name))
    near = first.astimezone(zone(tz_name)).date()
    specs, texts, known = data.draw(calendars(near))
    spec = data.draw(calendar_windows())
    window = engine_window(spec, specs, texts, tz_name)
    tz = zone(tz_name)
    states = oracle.walk_with_calendars(spec, tz, first, first + SPAN, known)
    moments = sorted(states)
    changes = oracle.changes(states)
    picks = random.Random(seed)
    checked = {moment + delta for moment in changes for delta in (-oracle.MINUTE, timedelta(0))}
    checked |= {picks.choice(moments) for _ in range(25)}
    for moment in sorted(checked):
        if states.get(moment) is not None:
            assert window.active_at(moment) == states[moment], \
                f"{spec} {specs} in {tz_name} at {moment:%Y-%m-%d %H:%M}Z ({moment.astimezone(tz):%a %d %H:%M %Z}): " \
                f"oracle says {'active' if states[moment] else 'inactive'}"
    for after in sorted({picks.choice(moments) for _ in range(4)} | {moment - oracle.MINUTE for moment in changes[:4]}):
        if states.get(after) is None:
            continue
        edge = window.next_edge(after)
        change = next((moment for moment in changes if moment > after), None)
        if change is not None:
            assert edge is not None and edge <= change, \
                f"{spec} in {tz_name}: next_edge({after:%Y-%m-%d %H:%M}Z) = {edge}, but it changes at {change}"


def test_a_day_starts_when_its_midnight_happens_in_havana():
    """Cuba springs forward at midnight: 2024-03-10 starts at 01:00 CDT, and
    a calendar day ends at the jump too (oracle and engine alike)."""
    text = textwrap.dedent("""\
        calendars:
          day: {dates: ["2024-03-10"]}
        policies:
          - name: p
            schedule:
              timezone: America/Havana
              windows: [{name: w, mode: down, on: [day]}]
        """)
    found, problems = check_texts([("p.yaml", text)])
    assert not problems
    window = found.policies[0].schedule.compiled.windows[0]
    opens = datetime(2024, 3, 10, 5, 0, tzinfo=UTC)  # 2024-03-09 24:00 CST = 2024-03-10 01:00 CDT
    assert not window.active_at(opens - timedelta(seconds=1)) and window.active_at(opens)
    assert window.next_edge(opens - timedelta(hours=3)) == opens
    closes = datetime(2024, 3, 11, 4, 0, tzinfo=UTC)  # 2024-03-11 00:00 CDT
    assert window.active_at(closes - timedelta(seconds=1)) and not window.active_at(closes)
    assert window.next_edge(opens) == closes
    first = opens - timedelta(hours=6)
    states = oracle.walk_with_calendars({"on": ["day"]}, zone("America/Havana"), first, first + timedelta(days=2),
                                        {"day": oracle.Calendar({date(2024, 3, 10)}, [])})
    assert oracle.changes(states) == [opens, closes]
