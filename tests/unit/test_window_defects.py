"""Window, cron and zone defects found by probes (issue 20), each pinned by a
test that failed before its fix:

1. day-of-week ranges `7-7`, `sun-sun`, `7-7/2`, `7-7/3` meant every day;
2. a sparse cron start (`* 4-13 * 12 *` asked about June) cost 1-2.5 s per
   state: the fire times were walked one by one back to December;
3. a window whose start and end both fall on a day the zone skipped
   (Pacific/Apia, 2011-12-30) opened at the jump and stayed open a year;
4. names that are not IANA zones (`localtime`, `posixrules`, `Factory`,
   `right/...`, `posix/...`) were accepted;
5. instants at the ends of the calendar (9999-12-31, 0001-01-01) raised
   OverflowError in the window engine.
"""

from __future__ import annotations

import functools
import textwrap
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from scaler.cli.main import main
from scaler.decide.cron import LocalCron, WallCron, cron_trigger
from scaler.decide.decisions import Signals, WorkloadState
from scaler.decide.policies import Policy
from scaler.decide.precedence import decide
from scaler.decide.wallclock import earliest, place, shown
from scaler.decide.windows import Mode, Schedule, Window, WindowError, next_edge, zone
from tests import oracle
from tests.unit.test_oracle import ZONES, compare

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def z(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def cron_window(start: str, end: str, tz_name: str) -> Window:
    return Window(name="w", mode=Mode.UP, start=start, end=end, tz=zone(tz_name))


# ---------------------------------------------------------------- 1. day-of-week ranges


@pytest.mark.parametrize("field", ["7-7", "sun-sun", "7-7/2", "7-7/3", "0-0", "SUN-SUN"])
def test_a_range_of_sunday_alone_is_sunday(field):
    """Opens on Sundays only: on the branch point every one of these opened
    every day."""
    window = cron_window(f"0 8 * * {field}", "0 20 * * *", "Europe/Berlin")
    opened = []
    moment = z("2026-06-01 00:00")  # a Monday
    while (moment := window.next_edge(moment)) < z("2026-06-15 00:00"):
        if window.active_at(moment):
            opened.append(moment.astimezone(zone("Europe/Berlin")).strftime("%a %H:%M"))
    assert opened == ["Sun 08:00", "Sun 08:00"]


@pytest.mark.parametrize(("field", "days"), [
    pytest.param("5-7", "Fri Sat Sun", id="numeric-to-seven"),
    pytest.param("fri-sun", "Fri Sat Sun", id="names-to-sunday"),
    pytest.param("sun-tue", "Mon Tue Sun", id="from-sunday"),
    pytest.param("6-7/2", "Sat", id="stepped-to-seven"),
])
def test_other_ranges_keep_their_meaning(field, days):
    trigger = cron_trigger(f"0 8 * * {field}")
    seen, moment = set(), z("2026-06-01 00:00")
    for _ in range(7):
        moment = trigger.get_next_fire_time(None, moment) + timedelta(seconds=1)
        seen.add(moment.strftime("%a"))
    assert sorted(seen, key="Mon Tue Wed Thu Fri Sat Sun".split().index) == days.split()


def test_validate_reads_a_sunday_range_as_sunday(tmp_path, capsys):
    """What `validate` accepts is what the daemon does: `plan` at a Monday
    08:30 of a `7-7` keep-up window says the window is not active."""
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent("""\
        policies:
          - name: sundays
            schedule:
              timezone: UTC
              windows: [{name: sundays, mode: up, start: "0 8 * * 7-7", end: "0 20 * * *"}]
              outside: down
        """))
    assert main(["validate", str(path)]) == 0
    policy = Policy.model_validate({"name": "sundays", "schedule": {
        "timezone": "UTC", "windows": [{"name": "sundays", "mode": "up", "start": "0 8 * * 7-7",
                                        "end": "0 20 * * *"}], "outside": "down"}})
    monday = decide(policy=policy, workload=WorkloadState(kind="Deployment", namespace="llm", name="chat", replicas=2,
                                                     ready_replicas=2),
                    signals=Signals(), now=z("2026-06-01 08:30"))
    sunday = decide(policy=policy, workload=WorkloadState(kind="Deployment", namespace="llm", name="chat", replicas=2,
                                                     ready_replicas=2),
                    signals=Signals(), now=z("2026-06-07 08:30"))
    assert monday.reason_code == "outside-down"
    assert sunday.reason_code == "keep-up-window"


# ---------------------------------------------------------------- 2. sparse cron expressions


SPARSE_STARTS = ["* 4-13 * 12 *", "*/7 * 29 2 *", "59 23 31 * *", "0 0 1 1 *", "* * * 12 sun", "30 2 * 3,10 0",
                 "0 12 13 * *", "*/5 0-1 * jan,jul *", "0 0 29 2 *"]


def test_a_sparse_window_state_is_cheap():
    """`* 4-13 * 12 *` asked about June: the last start is six months back.
    The fire times are found by day, not one by one (this took 1-2.5 s)."""
    window = cron_window("* 4-13 * 12 *", "0 14 * 12 *", "Europe/Berlin")
    assert window.active_at(z("2026-06-15 12:00")) is False
    assert window.active_at(z("2026-12-15 05:00")) is True
    assert window.next_edge(z("2026-06-15 12:00")) == z("2026-12-01 03:00")  # 04:00 CET


@st.composite
def wall_moments(draw) -> datetime:
    return datetime(draw(st.integers(1996, 2036)), 1, 1) + timedelta(
        minutes=draw(st.integers(0, 366 * 1440)), seconds=draw(st.sampled_from([0, 0, 1, 59])))


@PROPERTY
@given(expression=st.one_of(st.sampled_from(SPARSE_STARTS), st.builds(
    "{} {} {} {} {}".format, st.sampled_from(["0", "*", "*/15", "59", "5-10"]),
    st.sampled_from(["*", "0", "23", "8-17", "*/6"]), st.sampled_from(["*", "1", "31", "29", "15-16", "*/10"]),
    st.sampled_from(["*", "2", "12", "4,6,9,11", "feb-mar"]), st.just("*"))), moment=wall_moments())
def test_wall_fire_times_agree_with_a_naive_search(expression, moment):
    """The day-by-day search against the oracle's cron matcher walked day by
    day, then minute by minute within a matching day."""
    try:
        wall = WallCron(cron_trigger(expression))
    except WindowError:
        assume(False)
        raise
    cron = oracle.Cron.parse(expression)
    assert wall.next_at_or_after(moment) == oracle.next_wall_fire(cron, moment)
    assert wall.last_at_or_before(moment) == oracle.last_wall_fire(cron, moment)


@functools.cache
def _transitions(tz_name: str, year: int) -> list[datetime]:
    return oracle.transitions(zone(tz_name), year)


@st.composite
def near_changes(draw) -> tuple[str, datetime]:
    """A zone and an instant within a day of one of its changes of clocks."""
    tz_name = draw(st.sampled_from([*ZONES, "Pacific/Apia", "America/Havana", "Antarctica/Troll"]))
    year = draw(st.integers(1996, 2036))
    changes = _transitions(tz_name, year) or [datetime(year, 6, 1, tzinfo=UTC)]
    change = draw(st.sampled_from(changes))
    return tz_name, change + timedelta(seconds=draw(st.integers(-86400, 86400)) // draw(st.sampled_from([1, 60])))


@PROPERTY
@given(near=near_changes(), shift=st.integers(-26 * 60, 26 * 60))
def test_shown_and_earliest_bound_the_placed_wall_times(near, shift):
    """`shown(t)` is the last wall time placed at or before t, `earliest(t)`
    the first placed at or after it, by the one placing rule."""
    tz_name, instant = near
    tz = zone(tz_name)
    wall_time = (instant.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0) + timedelta(minutes=shift))
    placed = place(wall_time, tz)
    assert (placed <= instant) == (wall_time <= shown(instant, tz))
    assert (placed >= instant) == (wall_time >= earliest(instant, tz))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.sampled_from(SPARSE_STARTS), tz_name=st.sampled_from(ZONES), data=st.data(), seed=st.integers(0, 99))
def test_sparse_windows_agree_with_the_oracle(start, tz_name, data, seed):
    """Where the oracle can know (it has seen an edge), around the months
    the sparse start fires in."""
    month = next(m for m in range(1, 13) if oracle.Cron.parse(start).months & {m})
    year = data.draw(st.integers(1996, 2036))
    first = datetime(year, month, 1, tzinfo=UTC) + timedelta(minutes=data.draw(st.integers(-3 * 1440, 20 * 1440)))
    compare({"start": start, "end": "0 * * * *"}, tz_name, first, seed)


# ---------------------------------------------------------------- 3. a skipped day


def test_a_window_on_a_skipped_day_never_opens():
    """Samoa skipped 2011-12-30: both edges happen at the jump, together, so
    the window stays closed (it opened there and stayed open a year)."""
    window = cron_window("0 8 30 12 *", "0 20 30 12 *", "Pacific/Apia")
    jump = z("2011-12-30 10:00")  # 2011-12-29 24:00 -10 became 2011-12-31 00:00 +14
    for moment in (jump - timedelta(seconds=1), jump, jump + timedelta(hours=1), z("2012-06-01 00:00")):
        assert window.active_at(moment) is False, moment
    assert window.active_at(z("2012-12-30 08:00") - timedelta(hours=13)) is True  # 2012-12-30 08:00 +13
    compare({"start": "0 8 30 12 *", "end": "0 20 30 12 *"}, "Pacific/Apia", z("2011-12-29 00:00"), seed=1)


def test_a_compact_window_on_a_skipped_day_never_opens():
    window = Window.from_when("Fri 08:00-20:00", name="w", mode=Mode.UP, tz=zone("Pacific/Apia"))
    assert window.active_at(z("2011-12-30 10:00")) is False
    compare({"when": "Fri 08:00-20:00"}, "Pacific/Apia", z("2011-12-28 00:00"), seed=2)


# ---------------------------------------------------------------- 4. IANA zones only


@pytest.mark.parametrize("name", ["localtime", "posixrules", "Factory", "right/Europe/Berlin", "posix/Europe/Berlin"])
def test_only_iana_zones_are_accepted(tmp_path, capsys, name):
    path = tmp_path / "p.yaml"
    path.write_text(f"policies:\n  - name: p\n    schedule:\n      timezone: {name}\n"
                    "      windows: [{mode: up, when: daily 08:00-20:00}]\n")
    assert main(["validate", str(path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{path}:4: schedule.timezone: {name!r} is not an IANA time zone but an entry of the host's zone files "
        "(use an IANA name such as Europe/Berlin or UTC)"]


@pytest.mark.parametrize("name", ["UTC", "Europe/Berlin", "US/Eastern", "Etc/GMT+12", "EST5EDT"])
def test_iana_names_including_backward_links_are_accepted(name):
    assert zone(name).key == name


# ---------------------------------------------------------------- 5. the ends of the calendar


EXTREMES = [datetime.min.replace(tzinfo=UTC), z("0001-01-01 13:00"), z("9999-12-31 00:00"), z("9999-12-31 23:59:59"),
            datetime.max.replace(tzinfo=UTC)]
EDGE_ZONES = ["UTC", "Europe/Berlin", "America/Los_Angeles", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Etc/GMT+12",
              "Asia/Tokyo"]


@settings(max_examples=120, deadline=None)
@given(spec=st.sampled_from([{"when": "Mon-Fri 08:00-20:00"}, {"when": "daily 00:00-24:00"},
                             {"when": "Fri 18:00-Mon 07:00"}, {"start": "0 8 * * *", "end": "0 20 * * *"},
                             {"start": "* 4-13 * 12 *", "end": "0 14 * 12 *"},
                             {"start": "0 0 1 1 *", "end": "0 1 1 1 *"}]),
       tz_name=st.sampled_from(EDGE_ZONES), moment=st.sampled_from(EXTREMES))
def test_the_ends_of_the_calendar_raise_nothing(spec, tz_name, moment):
    window = Window(name="w", mode=Mode.UP, start=spec.get("start"), end=spec.get("end"), when=spec.get("when"),
                    tz=zone(tz_name))
    window.active_at(moment)
    edge = window.next_edge(moment)
    assert edge is None or edge > moment


def test_the_state_at_the_last_second_and_no_edge_beyond():
    """9999-12-31 is a Friday: 15:59 in Los Angeles is inside office hours;
    the window's end (20:00 there) would be in year 10000: no edge."""
    for spec in ({"when": "Mon-Fri 08:00-20:00"}, {"start": "0 8 * * *", "end": "0 20 * * *"}):
        window = Window(name="w", mode=Mode.UP, tz=zone("America/Los_Angeles"), start=spec.get("start"),
                        end=spec.get("end"), when=spec.get("when"))
        assert window.active_at(z("9999-12-31 23:59:59")) is True
        assert window.next_edge(z("9999-12-31 23:59:59")) is None
        berlin = Window(name="w", mode=Mode.UP, tz=zone("Europe/Berlin"), start=spec.get("start"),
                        end=spec.get("end"), when=spec.get("when"))
        assert berlin.active_at(z("9999-12-31 23:59:59")) is False  # 00:59 on 1 January 10000 there
        assert berlin.next_edge(z("0001-01-01 00:00")) == z("0001-01-01 07:06:32")  # 08:00 local mean time


@pytest.mark.parametrize("moment", [z("9999-12-31 23:59:59"), datetime.max.replace(tzinfo=UTC),
                                    datetime.min.replace(tzinfo=UTC)])
def test_a_decision_at_the_ends_of_the_calendar(moment):
    """What `plan --at 9999-12-31T23:59:59Z` evaluates: a policy with a
    keep-up window and a pre-warm decides, it does not fail."""
    policy = Policy.model_validate({"name": "chat", "prewarm": "15m", "schedule": {
        "timezone": "America/Los_Angeles", "outside": "down",
        "windows": [{"name": "office", "mode": "up", "when": "Mon-Fri 08:00-20:00"},
                    {"name": "nightly", "mode": "down", "start": "0 22 * * *", "end": "0 6 * * *"}]}})
    workload = WorkloadState(kind="Deployment", namespace="llm", name="chat", replicas=0)
    decision = decide(policy=policy, workload=workload, signals=Signals(), now=moment)
    assert decision.reason
    assert next_edge(policy.schedule.compiled, moment) is None or next_edge(policy.schedule.compiled, moment) > moment


def test_a_schedule_state_at_the_first_instant():
    schedule = Schedule(windows=(cron_window("0 8 * * *", "0 20 * * *", "Asia/Tokyo"),), tz=zone("Asia/Tokyo"))
    # 0001-01-01 00:00 UTC is 09:18 local mean time in Tokyo: the 08:00 start was before year 1 in UTC.
    assert schedule.state_at(datetime.min.replace(tzinfo=UTC)).keep_up is not None


def test_local_cron_beyond_the_calendar_is_none():
    cron = LocalCron("0 20 31 12 *", zone("America/Los_Angeles"))
    assert cron.next_at_or_after(z("9999-12-31 12:00")) is None
    assert cron.last_at_or_before(datetime.min.replace(tzinfo=UTC)) is None
