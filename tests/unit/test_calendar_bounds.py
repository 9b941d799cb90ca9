"""An iCalendar rule is read within bounds, like a hostile YAML file: valid
or not, a recurrence rule that would hang the library (INTERVAL=0), fill the
memory (FREQ=MINUTELY, half a million instants a year) or scan to year 9999
for a match is refused as one `file:line: field: message` naming the event,
and the other policies load. The unit tier's per-test timeout is what fails
on a hang."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scaler.cli.main import main
from scaler.cluster.views import WatchingView
from scaler.decide import icalendars
from scaler.decide.loading import check_policies, check_texts
from scaler.run.evaluating import Evaluator
from scaler.signals.prometheus import Prometheus

ICS = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:b@test\r\nSUMMARY:Standup\r\n"
       "DTSTART;TZID=Europe/Berlin:{start}T090000\r\nDURATION:PT15M\r\nRRULE:{rule}\r\nEND:VEVENT\r\n"
       "END:VCALENDAR\r\n")

POLICIES = """\
calendars:
  standups: {ical: {file: standups.ics}}
policies:
  - name: office
    targets: {namespaces: [llm]}
    schedule:
      timezone: Europe/Berlin
      windows: [{name: office, mode: up, when: "Mon-Fri 08:00-20:00", except: [standups]}]
  - name: good
    schedule:
      timezone: UTC
      windows: [{mode: up, when: "Mon-Fri 08:00-20:00"}]
"""

EVENT = "calendars.standups.ical: "
STEPS = ": it repeats too often (at most 2000 times a year), matches almost never (BYMONTH=2;BYMONTHDAY=30) or " \
        "starts centuries earlier"


def write(tmp_path, rule: str, start: str = "20260601"):
    (tmp_path / "standups.ics").write_text(ICS.format(rule=rule, start=start))
    path = tmp_path / "p.yaml"
    path.write_text(POLICIES)
    return path


@pytest.mark.parametrize(("rule", "expected"), [
    pytest.param("FREQ=DAILY;INTERVAL=0", "event 'Standup' (UID b@test): RRULE INTERVAL=0: the interval must be a "
                 "positive whole number (RFC 5545)", id="interval-zero"),
    pytest.param("FREQ=WEEKLY;INTERVAL=-2", "event 'Standup' (UID b@test): RRULE INTERVAL=-2: the interval must be a "
                 "positive whole number (RFC 5545)", id="interval-negative"),
    pytest.param("FREQ=MINUTELY", "standups.ics: event 'Standup' (UID b@test): working out its occurrences from "
                 "2026-05-30 to 2027-06-04 takes more than 5000000 steps (RRULE:FREQ=MINUTELY)" + STEPS,
                 id="minutely-without-end"),
    pytest.param("FREQ=HOURLY", "standups.ics: event 'Standup' (UID b@test) occurs more than 2000 times from "
                 "2026-05-30 to 2027-06-04 (RRULE:FREQ=HOURLY): an event may occur at most 2000 times a year (a few a "
                 "day)", id="hourly-without-end"),
    pytest.param("FREQ=HOURLY;UNTIL=99991231T000000Z", "standups.ics: event 'Standup' (UID b@test) occurs more than "
                 "2000 times", id="hourly-until-far-future"),
    pytest.param("FREQ=SECONDLY;BYSETPOS=2", "standups.ics: event 'Standup' (UID b@test): working out its "
                 "occurrences from 2026-05-30 to 2027-06-04 takes more than 5000000 steps", id="setpos-never-there"),
    pytest.param("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", "standups.ics: event 'Standup' (UID b@test): working out its "
                 "occurrences from 2026-05-30 to 2027-06-04 takes more than 5000000 steps", id="never-matches"),
    pytest.param("FREQ=YEARLY;BYSETPOS=400", "standups.ics: cannot expand its events: ", id="setpos-out-of-range"),
])
def test_a_hostile_rule_is_one_line_naming_the_event(tmp_path, capsys, rule, expected):
    path = write(tmp_path, rule)
    assert main(["validate", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{path}:2: {EVENT}{expected}"), lines
    assert [policy.name for policy in check_policies([path])[0]] == ["good"]


@pytest.mark.parametrize("rule", [
    pytest.param("FREQ=DAILY;COUNT=999999999", id="huge-count"),
    pytest.param("FREQ=DAILY;UNTIL=99991231T000000Z", id="until-far-future"),
    pytest.param("FREQ=HOURLY;BYHOUR=9,13,17", id="three-a-day"),
    pytest.param("FREQ=MINUTELY;BYHOUR=9;BYMINUTE=0", id="minutely-once-a-day"),
])
def test_a_long_but_ordinary_rule_is_read(tmp_path, capsys, rule):
    path = write(tmp_path, rule)
    assert main(["validate", str(path), "--explain", "standups", "--year", "2027"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("2027-01-01 Fri 09:00-09:15") and out[-1].endswith("timed events"), out[:3]


def test_a_year_too_costly_to_expand_is_an_error_not_a_hang(tmp_path, capsys):
    """A daily event since year 500 passes the check at load (its first 400
    days), but 2026 is over half a million days later: that year is refused
    when asked, with the same message (the daemon reports the policy as
    failing, and it holds)."""
    path = write(tmp_path, "FREQ=DAILY", start="05000601")
    assert main(["validate", str(path), "--explain", "standups", "--year", "2026"]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "error: standups.ics: event 'Standup' (UID b@test): working out its occurrences from 2025-12-30 to "
        "2027-01-02 takes more than 5000000 steps (RRULE:FREQ=DAILY)" + STEPS]


def test_a_calendar_year_over_its_bounds_costs_its_policy_its_edges_only(fake, prometheus, monkeypatch):
    """The daemon's next window edge is still found for the other policies
    when one policy's calendar fails at run time (before: the IcalError
    escaped, and no edge job was scheduled for anyone)."""
    text = POLICIES.replace("mode: up, when: \"Mon-Fri 08:00-20:00\"}]\n  - name: good",
                            "mode: up, when: \"Mon-Fri 08:00-20:00\"}]\n  - name: good\n    targets: {namespaces: [x]}")
    found, problems = check_texts([("p.yaml", text)], read_ical=lambda spec, origin: ICS.format(
        rule="FREQ=DAILY", start="19000601"))
    assert problems == []
    monkeypatch.setattr(icalendars, "MAX_EXPANSION_STEPS", 500_000)  # 2026 is 46,000 days after 1900
    view = WatchingView(fake.client())
    try:
        evaluator = Evaluator(prometheus=Prometheus(prometheus.url, timeout_seconds=2), view=view,
                              excluded_namespaces=())
        assert evaluator.next_edge(found, datetime(2026, 12, 7, 12, 0, tzinfo=UTC)) == datetime(
            2026, 12, 7, 20, 0, tzinfo=UTC)
    finally:
        view.stop(timeout_seconds=2)
