"""Calendars in schedules (issue 23): holidays, dates, iCalendar files and
unions, used by windows with `on:` and `except:`; what a decision says;
every mistake one file:line; `validate --explain`; each year computed once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from scaler.cli.main import main
from scaler.decide.calendars import Calendar, DateRange, DateSource
from scaler.decide.decisions import Signals, WorkloadState
from scaler.decide.loading import check_policies, check_texts
from scaler.decide.precedence import decide
from scaler.decide.windows import next_edge, zone

BERLIN = zone("Europe/Berlin")

OFFICE = """\
calendars:
  holidays: {{holidays: {{country: DE, subdivision: {subdivision}}}}}
  shutdown: {{dates: ["2026-12-24..2027-01-01"]}}
policies:
  - name: office
    targets: {{namespaces: [llm]}}
    schedule:
      timezone: Europe/Berlin
      windows:
        - {{name: office, mode: up, when: "Mon-Fri 08:00-20:00", except: [holidays, shutdown]}}
      outside: down
"""

#: A weekly offsite (Mondays 09:00-17:00 Berlin time, six weeks) with one
#: week cancelled (EXDATE) and one moved to the Tuesday (RECURRENCE-ID), and
#: an all-day summit over two days.
OFFSITES_ICS = """\
BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:offsite@test
DTSTAMP:20260101T000000Z
SUMMARY:Team offsite
DTSTART;TZID=Europe/Berlin:20260105T090000
DTEND;TZID=Europe/Berlin:20260105T170000
RRULE:FREQ=WEEKLY;COUNT=6
EXDATE;TZID=Europe/Berlin:20260119T090000
END:VEVENT
BEGIN:VEVENT
UID:offsite@test
DTSTAMP:20260101T000000Z
SUMMARY:Team offsite (moved)
RECURRENCE-ID;TZID=Europe/Berlin:20260126T090000
DTSTART;TZID=Europe/Berlin:20260127T100000
DTEND;TZID=Europe/Berlin:20260127T120000
END:VEVENT
BEGIN:VEVENT
UID:summit@test
DTSTAMP:20260101T000000Z
SUMMARY:Company summit
DTSTART;VALUE=DATE:20260302
DTEND;VALUE=DATE:20260304
END:VEVENT
END:VCALENDAR
"""

OFFSITE_POLICY = """\
calendars:
  team-offsites: {ical: {file: offsites.ics}}
policies:
  - name: eval
    schedule:
      timezone: Europe/Berlin
      windows:
        - {name: offsite, mode: down, on: [team-offsites]}
        - {name: office, mode: up, when: "Mon-Fri 08:00-20:00"}
"""


def berlin(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN)


def running(replicas: int = 2) -> WorkloadState:
    return WorkloadState(kind="Deployment", namespace="llm", name="chat", replicas=replicas, ready_replicas=replicas)


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def one_policy(text: str, **files: str):
    found, problems = check_texts([("p.yaml", text)], read_ical=lambda spec, origin: files[spec.file])
    assert problems == []
    return found.policies[0]


# ---------------------------------------------------------------- holidays and dates in decisions


def test_epiphany_in_bavaria_keeps_office_hours_closed_and_says_so():
    policy = one_policy(OFFICE.format(subdivision="BY"))
    decision = decide(policy=policy, workload=running(), signals=Signals(), now=berlin("2027-01-06 10:00"))
    assert decision.action.value == "pause"
    assert decision.reason.startswith("keep-up window 'office' is off today: Heilige Drei Könige (DE-BY); "
                                      "outside every keep-up window")
    the_day_after = decide(policy=policy, workload=running(), signals=Signals(), now=berlin("2027-01-07 10:00"))
    assert the_day_after.action.value == "hold" and the_day_after.reason_code == "keep-up-window"


def test_berlin_works_on_epiphany():
    policy = one_policy(OFFICE.format(subdivision="BE"))
    decision = decide(policy=policy, workload=running(), signals=Signals(), now=berlin("2027-01-06 10:00"))
    assert (decision.action.value, decision.reason_code) == ("hold", "keep-up-window")
    assert "off today" not in decision.reason


def test_a_shutdown_range_closes_every_day_in_it():
    policy = one_policy(OFFICE.format(subdivision="BE"))
    for day in ("2026-12-24", "2026-12-28", "2026-12-31", "2027-01-01"):
        decision = decide(policy=policy, workload=running(), signals=Signals(), now=berlin(f"{day} 10:00"))
        assert decision.action.value == "pause", day
        assert "is off today: " in decision.reason and "shutdown" in decision.reason
    assert decide(policy=policy, workload=running(), signals=Signals(),
                  now=berlin("2027-01-04 10:00")).reason_code == "keep-up-window"


def test_edges_fall_on_the_calendar_day_boundaries():
    """On Epiphany the window does not open at 08:00; it opens on the 7th."""
    schedule = one_policy(OFFICE.format(subdivision="BY")).schedule.compiled
    edges, moment = [], berlin("2027-01-05 19:00")
    for _ in range(4):
        moment = next_edge(schedule, moment)
        edges.append(moment.astimezone(BERLIN).strftime("%d %H:%M"))
    # 20:00 closes; 08:00 on the 6th: still closed, but the day it names changes; 20:00; the 7th opens.
    assert edges == ["05 20:00", "06 08:00", "06 20:00", "07 08:00"]
    assert not schedule.state_at(berlin("2027-01-06 08:00")).keep_up
    assert schedule.state_at(berlin("2027-01-07 08:00")).keep_up


def test_a_calendar_day_is_the_local_day_across_a_change_of_clocks():
    """2026-03-29 in Berlin is 23 hours long: 2026-03-28T23:00Z to 2026-03-29T22:00Z."""
    policy = one_policy('calendars:\n  day: {dates: ["2026-03-29"]}\npolicies:\n  - name: p\n    schedule:\n'
                        '      timezone: Europe/Berlin\n      windows: [{name: d, mode: down, on: [day]}]\n')
    window = policy.schedule.compiled.windows[0]
    start, end = datetime(2026, 3, 28, 23, tzinfo=UTC), datetime(2026, 3, 29, 22, tzinfo=UTC)
    assert window.next_edge(start - timedelta(hours=5)) == start
    assert window.next_edge(start) == end
    assert window.active_at(end - timedelta(microseconds=1)) and not window.active_at(end)


def test_the_next_edge_is_a_new_year_s_day_before_an_event_of_that_morning():
    """A year's events reach a little into the next one; the next edge is
    still the next year's first day when it comes first (found by the
    calendar oracle: 00:01 was given for the 00:00 of New Year's Day)."""
    ics = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:e0@test\r\n"
           "DTSTAMP:20200101T000000Z\r\nDTSTART:19950101T000100\r\nDTEND:19950101T003100\r\n"
           "END:VEVENT\r\nEND:VCALENDAR\r\n")
    policy = one_policy('calendars:\n  a: {holidays: {country: DE, subdivision: BY}, ical: {file: a.ics}}\n'
                        'policies:\n  - name: p\n    schedule:\n      timezone: America/New_York\n'
                        '      windows: [{name: w, mode: up, on: [a]}]\n', **{"a.ics": ics})
    window = policy.schedule.compiled.windows[0]
    midnight = datetime(1995, 1, 1, 5, tzinfo=UTC)  # 00:00 in New York: Neujahr opens the window
    assert not window.active_at(midnight - timedelta(microseconds=1)) and window.active_at(midnight)
    assert window.next_edge(midnight - timedelta(minutes=1)) == midnight
    assert window.next_edge(datetime(1994, 12, 28, tzinfo=UTC)) == midnight  # after Stephanstag (26th)


# ---------------------------------------------------------------- iCalendar


def test_the_windows_follow_an_icalendar_file(tmp_path, capsys):
    """Weekly offsites with one cancelled and one moved, and an all-day summit:
    validated from files, followed by the windows, explained."""
    write(tmp_path, "offsites.ics", OFFSITES_ICS)
    path = write(tmp_path, "eval.yaml", OFFSITE_POLICY)
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out == "1 policy, 1 calendar in 1 file OK\n"
    policies, problems = check_policies([path])
    assert problems == []
    policy = policies.policies[0]

    def said(moment: str) -> tuple[str, str]:
        decision = decide(policy=policy, workload=running(), signals=Signals(), now=berlin(moment))
        return decision.action.value, decision.reason

    assert said("2026-01-12 10:00") == ("pause", "keep-down window 'offsite' (Europe/Berlin, only on team-offsites) "
                                                 "is active (now: Team offsite (team-offsites)): pausing 2 replicas")
    assert said("2026-01-12 17:00")[0] == "hold"  # the event ends at 17:00
    assert said("2026-01-19 10:00")[0] == "hold"  # cancelled (EXDATE): office hours
    assert said("2026-01-26 10:00")[0] == "hold"  # moved to the Tuesday
    assert said("2026-01-27 09:30")[0] == "hold"
    assert said("2026-01-27 10:30")[1].endswith("(now: Team offsite (moved) (team-offsites)): pausing 2 replicas")
    assert said("2026-03-03 23:30") == ("pause", "keep-down window 'offsite' (Europe/Berlin, only on "
                                                 "team-offsites) is active (today: Company summit (team-offsites)): "
                                                 "pausing 2 replicas")
    assert said("2026-03-04 00:00")[0] == "hold"  # DTEND is exclusive
    assert said("2026-02-16 10:00")[0] == "hold"  # COUNT=6 ended on 2026-02-09

    assert main(["validate", str(path), "--explain", "team-offsites", "--year", "2026"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"calendar 'team-offsites' ({path}:2) in 2026, timed events in Europe/Berlin:",
        "2026-01-05 Mon 09:00-17:00       Team offsite (team-offsites)",
        "2026-01-12 Mon 09:00-17:00       Team offsite (team-offsites)",
        "2026-01-27 Tue 10:00-12:00       Team offsite (moved) (team-offsites)",
        "2026-02-02 Mon 09:00-17:00       Team offsite (team-offsites)",
        "2026-02-09 Mon 09:00-17:00       Team offsite (team-offsites)",
        "2026-03-02 Mon                   Company summit (team-offsites)",
        "2026-03-03 Tue                   Company summit (team-offsites)",
        "2 days, 5 timed events"]


def test_a_timed_event_keeps_its_own_time_zone():
    ics = OFFSITES_ICS.replace("TZID=Europe/Berlin:20260105T090000", "TZID=America/New_York:20260105T090000") \
        .replace("TZID=Europe/Berlin:20260105T170000", "TZID=America/New_York:20260105T170000")
    policy = one_policy(OFFSITE_POLICY, **{"offsites.ics": ics})
    window = policy.schedule.compiled.windows[0]
    assert not window.active_at(berlin("2026-01-05 14:59"))  # 08:59 in New York
    assert window.active_at(berlin("2026-01-05 15:00"))
    assert window.active_at(berlin("2026-01-05 22:59")) and not window.active_at(berlin("2026-01-05 23:00"))


def test_explain_lists_a_country_s_holidays(tmp_path, capsys):
    path = write(tmp_path, "office.yaml", OFFICE.format(subdivision="BY"))
    assert main(["validate", str(path), "--explain", "holidays", "--year", "2027"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"calendar 'holidays' ({path}:2) in 2027, timed events in Europe/Berlin:"
    assert "2027-01-06 Wed                   Heilige Drei Könige (DE-BY)" in lines
    assert lines[-1] == "12 days, 0 timed events"
    assert main(["validate", str(path), "--explain", "nope"]) == 1
    assert "no usable calendar 'nope' in these files (calendars: holidays, shutdown)" in capsys.readouterr().err


def test_a_configmap_calendar_is_not_read_by_validate(tmp_path, capsys):
    path = write(tmp_path, "eval.yaml", OFFSITE_POLICY.replace("{file: offsites.ics}",
                                                               "{configmap: calendars, key: offsites.ics}"))
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "1 policy, 1 calendar in 1 file OK",
        "calendar 'team-offsites': its iCalendar file is in a ConfigMap, read through the API by the daemon and "
        "`scaler plan`, not here"]


# ---------------------------------------------------------------- mistakes, one line each


GOOD = """\
policies:
  - name: good
    schedule:
      timezone: UTC
      windows: [{mode: up, when: "Mon-Fri 08:00-20:00"}]
"""


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("calendars:\n  h: {holidays: {country: XX}}\n",
                 "{file}:2: calendars.h.holidays.country: unknown country 'XX': the holidays package has no such "
                 "country code (ISO 3166-1 alpha-2, e.g. DE)", id="unknown-country"),
    pytest.param("calendars:\n  h:\n    holidays: {country: DE, subdivision: XY}\n",
                 "{file}:3: calendars.h.holidays.subdivision: unknown subdivision 'XY' of DE (known: BB, BE, BW, BY, "
                 "HB, HE, HH, MV, NI, NW, RP, SH, SL, SN, ST, TH, Augsburg)", id="unknown-subdivision"),
    pytest.param("calendars:\n  h: {holidays: {country: US, categories: [bogus]}}\n",
                 "{file}:2: calendars.h.holidays.categories: US has no holiday category 'bogus' (it has: "
                 "government, half_day, public, unofficial)", id="unknown-category"),
    pytest.param("calendars:\n  s:\n    dates:\n      - 2027-01-01..2026-12-24\n",
                 "{file}:4: calendars.s.dates[0].date: the range '2027-01-01..2026-12-24' ends before it starts",
                 id="range-ends-before-it-starts"),
    pytest.param("calendars:\n  s: {dates: [2026-02-30]}\n",
                 "{file}:2: calendars.s.dates[0].date: '2026-02-30' is not a date (day is out of range for month): "
                 "write a date (2026-12-24) or a range, both ends included (2026-12-24..2027-01-01)",
                 id="no-such-date"),
    pytest.param("calendars:\n  o: {ical: {file: broken.ics}}\n",
                 "{file}:2: calendars.o.ical: broken.ics is not an iCalendar file: Content line could not be parsed "
                 "into parts: 'this is not iCalendar': Invalid content line", id="broken-ical"),
    pytest.param("calendars:\n  o: {ical: {file: missing.ics}}\n",
                 "{file}:2: calendars.o.ical: cannot read {dir}/missing.ics: No such file or directory",
                 id="missing-ical"),
    pytest.param("calendars:\n  o: {ical: {file: bad-time.ics}}\n",
                 "{file}:2: calendars.o.ical: event 'x' (UID u): DTSTART Expected time, got: 2026XX",
                 id="ical-with-a-bad-time"),
    pytest.param("calendars:\n  o: {ical: {file: bad-zone.ics}}\n",
                 "{file}:2: calendars.o.ical: event 'x' (UID u): DTSTART has TZID 'Mars/Olympus', which is neither a "
                 "known time zone nor defined by a VTIMEZONE in the file", id="ical-with-an-unknown-zone"),
    pytest.param("calendars:\n  o: {ical: {file: bad-rule.ics}}\n",
                 "{file}:2: calendars.o.ical: bad-rule.ics: cannot expand its events: ", id="ical-with-a-bad-rule"),
    pytest.param("calendars:\n  e: {description: nothing}\n",
                 "{file}:2: calendars.e: the calendar is empty: give holidays, ical, dates or union", id="empty"),
    pytest.param("calendars:\n  u: {union: [u2]}\n  u2: {union: [u]}\n",
                 "{file}:3: calendars.u2.union[0]: calendar 'u' includes itself (u -> u2 -> u)", id="union-cycle"),
    pytest.param("calendars:\n  u: {union: [nope]}\n",
                 "{file}:2: calendars.u.union[0]: unknown calendar 'nope' (calendars: u)", id="union-unknown"),
    pytest.param("calendars:\n  Bad_Name: {dates: [2026-01-01]}\n",
                 "{file}:2: calendars.Bad_Name: 'Bad_Name' is not a calendar name: use 1-63 lowercase letters, "
                 "digits, '-' and '.', starting and ending with a letter or digit", id="bad-name"),
    pytest.param("calendars:\n  h: {holidays: {country: DE, region: BY}}\n",
                 "{file}:2: calendars.h.holidays.region: unknown key 'region' (allowed: country, subdivision, "
                 "categories, language)", id="unknown-key"),
    pytest.param("calendars:\n  o: {ical: {file: a.ics, configmap: c}}\n",
                 "{file}:2: calendars.o.ical: give file, or configmap and key", id="ical-two-places"),
])
def test_each_calendar_mistake_is_one_line_and_the_other_policies_load(tmp_path, capsys, text, expected):
    write(tmp_path, "broken.ics", "this is not iCalendar\n")
    write(tmp_path, "bad-time.ics", "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:u\nSUMMARY:x\nDTSTART:2026XX\nEND:VEVENT\n"
                                    "END:VCALENDAR\n")
    write(tmp_path, "bad-zone.ics", "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:u\nSUMMARY:x\n"
                                    "DTSTART;TZID=Mars/Olympus:20260101T090000\nEND:VEVENT\nEND:VCALENDAR\n")
    write(tmp_path, "bad-rule.ics", "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:u\nSUMMARY:x\nDTSTART:20260101T090000Z\n"
                                    "RRULE:FREQ=SOMETIMES\nEND:VEVENT\nEND:VCALENDAR\n")
    path = write(tmp_path, "cal.yaml", text + GOOD)
    assert main(["validate", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected.format(file=path, dir=tmp_path)), lines
    policies, _ = check_policies([path])
    assert [policy.name for policy in policies] == ["good"]


def test_a_reference_to_a_calendar_nobody_defined(tmp_path, capsys):
    text = OFFICE.format(subdivision="BY").replace("except: [holidays, shutdown]", "except: [holidays, shutdwon]")
    path = write(tmp_path, "p.yaml", text + GOOD[10:])
    assert main(["validate", str(path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{path}:10: schedule.windows[0].except[1]: unknown calendar 'shutdwon' (calendars: holidays, shutdown)"]
    assert [policy.name for policy in check_policies([path])[0]] == ["good"]


def test_a_policy_using_a_broken_calendar_is_left_out_with_one_line(tmp_path, capsys):
    """The problem is said once, where the calendar is defined."""
    path = write(tmp_path, "p.yaml", OFFICE.format(subdivision="XX") + GOOD[10:])
    assert main(["validate", str(path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{path}:2: calendars.holidays.holidays.subdivision: unknown subdivision 'XX' of DE (known: BB, BE, BW, BY, "
        "HB, HE, HH, MV, NI, NW, RP, SH, SL, SN, ST, TH, Augsburg)"]
    assert [policy.name for policy in check_policies([path])[0]] == ["good"]


def test_calendars_are_shared_across_files_and_defined_once(tmp_path, capsys):
    write(tmp_path, "a-calendars.yaml", "calendars:\n  shutdown: {dates: [2026-12-24..2027-01-01]}\n")
    write(tmp_path, "b-office.yaml", "policies:\n  - name: office\n    schedule:\n      timezone: UTC\n"
                                     "      windows: [{mode: up, when: daily 08:00-20:00, except: [shutdown]}]\n")
    assert main(["validate", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "1 policy, 1 calendar in 2 files OK\n"
    write(tmp_path, "c-again.yaml", "calendars:\n  other: {dates: [2026-01-01]}\n  shutdown: {dates: [2026-01-02]}\n")
    assert main(["validate", str(tmp_path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{tmp_path}/c-again.yaml:3: calendars.shutdown: calendar 'shutdown' is defined twice (first defined at "
        f"{tmp_path}/a-calendars.yaml:2)"]


def test_a_window_needs_time_or_calendars(tmp_path, capsys):
    path = write(tmp_path, "p.yaml", "policies:\n  - name: p\n    schedule:\n      timezone: UTC\n"
                                     "      windows: [{mode: up, except: []}]\n")
    assert main(["validate", str(path)]) == 1
    assert "missing start: a window needs start and end (cron), when (e.g. 'Mon-Fri 08:00-20:00'), or calendars" \
        in capsys.readouterr().out


# ---------------------------------------------------------------- cached per year


class Counting:
    """A source that counts the years asked of it."""

    label = "counted"

    def __init__(self) -> None:
        self.asked: list[int] = []

    def days(self, year: int):
        self.asked.append(year)
        return {date(year, 5, 1): "May Day"}

    def spans(self, year, tz):
        return ()


def test_each_year_of_a_calendar_is_computed_once():
    source = Counting()
    calendar = Calendar("c", [source, DateSource([DateRange(date(2026, 5, 2), date(2026, 5, 2))], label="c")])
    moment = datetime(2026, 4, 1, tzinfo=UTC)
    for _ in range(3000):
        calendar.occasions_at(moment, BERLIN)
        calendar.occasions_at(moment, zone("UTC"))
        calendar.next_boundary(moment, BERLIN)
        moment += timedelta(hours=1)  # into 2026-08
    assert source.asked == [2026, 2027]  # 2027 for the next boundary after May
    assert calendar.occasions_at(datetime(2026, 5, 1, 12, tzinfo=UTC), BERLIN)[0].name == "May Day (counted)"


def test_a_date_that_does_not_exist_is_text_not_a_traceback(tmp_path, capsys):
    """YAML 1.1 reads 2026-02-30 as a date and PyYAML raised ValueError out
    of validate; dates are text now, for the field that reads them to check."""
    path = write(tmp_path, "p.yaml", GOOD.replace("  - name: good\n", "  - name: good\n    description: 2026-02-30\n"))
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out == "1 policy in 1 file OK\n"


@pytest.mark.parametrize("moment", [datetime.min.replace(tzinfo=UTC), datetime(1, 1, 3, tzinfo=UTC),
                                    datetime(9999, 12, 31, 12, tzinfo=UTC), datetime.max.replace(tzinfo=UTC)])
def test_calendars_at_the_ends_of_the_calendar(moment):
    """Holidays, dates and an iCalendar file (the examples in policies/) at
    years 1 and 9999 decide and find their next edge (or none): the
    iCalendar library overflowed there."""
    policies, problems = check_policies([Path(__file__).resolve().parents[2] / "policies"])
    assert problems == []
    for policy in policies:
        if policy.schedule is not None:
            assert decide(policy=policy, workload=running(), signals=Signals(), now=moment).reason
            edge = next_edge(policy.schedule.compiled, moment)
            assert edge is None or edge > moment
