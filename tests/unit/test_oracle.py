"""The window engine against an executable oracle (tests/oracle.py): a naive
minute-by-minute evaluator that shares no code with scaler/decide/windows.py.
Hypothesis draws windows (compact and cron), zones and years, with half the
examples placed around a change of clocks; every minute where the two could
disagree (each change of state and its neighbours, plus random minutes) is
compared, and so is next_edge, which the daemon uses to run a tick exactly at
a window's edge."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from scaler.decide.windows import Mode, Window, WindowError, zone
from tests import oracle

ZONES = ["UTC", "Europe/Berlin", "Europe/London", "America/New_York", "America/Santiago", "America/Havana",
         "America/St_Johns", "Pacific/Auckland", "Pacific/Chatham", "Australia/Lord_Howe", "Asia/Tehran",
         "Asia/Kolkata", "Africa/Casablanca", "Asia/Gaza"]
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
SPAN = timedelta(days=4)
ORACLE = settings(max_examples=int(__import__("os").environ.get("SCALER_ORACLE_EXAMPLES", "150")), deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
#: SCALER_ORACLE_EXAMPLES over all zones, shared out between the pairs (at least 25 each).
ORACLE_PER_PAIR = settings(ORACLE, max_examples=max(25, ORACLE.max_examples // 7))

# Hours near midnight and near the usual change of clocks come up more often.
HOURS = st.one_of(st.sampled_from([0, 1, 2, 3, 22, 23]), st.integers(0, 23))
MINUTES = st.one_of(st.sampled_from([0, 30, 59]), st.integers(0, 59))


def clock(hour: int, minute: int) -> str:
    return f"{hour:02d}:{minute:02d}"


@st.composite
def day_lists(draw) -> str:
    kind = draw(st.sampled_from(["daily", "one", "range", "list"]))
    if kind == "daily":
        return "daily"
    if kind == "one":
        return draw(st.sampled_from(DAYS))
    if kind == "range":
        return f"{draw(st.sampled_from(DAYS))}-{draw(st.sampled_from(DAYS))}"
    items = draw(st.lists(st.one_of(st.sampled_from(DAYS), st.builds("{}-{}".format, st.sampled_from(DAYS),
                                                                      st.sampled_from(DAYS))),
                          min_size=2, max_size=4))
    return ",".join(items)


@st.composite
def compact_forms(draw) -> str:
    start = clock(draw(HOURS), draw(MINUTES))
    if draw(st.integers(0, 4)) == 0:  # 'Fri 18:00-Mon 07:00'
        end = draw(st.one_of(st.just("24:00"), st.builds(clock, HOURS, MINUTES)))
        return f"{draw(st.sampled_from(DAYS))} {start}-{draw(st.sampled_from(DAYS))} {end}"
    whole_days = draw(st.integers(0, 3)) == 0
    if whole_days:
        start = "00:00"
    end = "24:00" if whole_days or draw(st.integers(0, 5)) == 0 else clock(draw(HOURS), draw(MINUTES))
    return f"{draw(day_lists())} {start}-{end}"


def cron_minutes(draw) -> str:
    return draw(st.one_of(st.builds(str, st.integers(0, 59)), st.sampled_from(["0", "30", "*/15", "*/20",
                                                                                 "5-59/30", "0,45"])))


def cron_hours(draw) -> str:
    return draw(st.one_of(st.builds(str, HOURS), st.sampled_from(["*", "8-17", "22", "1-3", "*/6", "0,12"])))


@st.composite
def cron_forms(draw) -> str:
    minute, hour = cron_minutes(draw), cron_hours(draw)
    restrict = draw(st.sampled_from(["none", "weekday", "day", "month"]))
    day = month = weekday = "*"
    if restrict == "weekday":
        weekday = draw(st.sampled_from(["1-5", "0", "7", "6,0", "sat,sun", "mon-fri", "5-7", "*/2", "1/3",
                                        "fri", "0-6", "7-7", "sun-sun", "7-7/2", "fri-sun", "sun-tue"]))
    elif restrict == "day":
        day = draw(st.sampled_from(["1", "15", "28-31", "30", "31", "1-7", "*/2", "29"]))
    elif restrict == "month":
        month = draw(st.sampled_from(["*", "1-6", "2", "3,10", "oct-dec", "*/3"]))
        day = draw(st.sampled_from(["*", "1", "25-31"]))
    return f"{minute} {hour} {day} {month} {weekday}"


@st.composite
def windows(draw) -> dict:
    if draw(st.integers(0, 2)) > 0:
        return {"when": draw(compact_forms())}
    return {"start": draw(cron_forms()), "end": draw(cron_forms())}


@st.composite
def beginnings(draw, tz_name: str) -> datetime:
    """A whole UTC minute to begin comparing at: random, or in the days
    before a change of the zone's clocks."""
    year = draw(st.integers(1995, 2037))
    tz = zone(tz_name)
    changes = oracle.transitions(tz, year) if draw(st.booleans()) else []
    if changes:
        anchor = draw(st.sampled_from(changes)) - timedelta(minutes=draw(st.integers(0, 7 * 1440)))
    else:
        anchor = datetime(year, 1, 1, tzinfo=UTC) + timedelta(minutes=draw(st.integers(0, 365 * 1440)))
    return anchor.replace(second=0, microsecond=0)


def engine_window(spec: dict, tz_name: str) -> Window:
    tz = zone(tz_name)
    try:
        if "when" in spec:
            return Window.from_when(spec["when"], name="w", mode=Mode.UP, tz=tz)
        return Window(name="w", mode=Mode.UP, start=spec["start"], end=spec["end"], tz=tz)
    except WindowError:
        assume(False)
        raise


def compare(spec: dict, tz_name: str, first: datetime, seed: int) -> None:
    window = engine_window(spec, tz_name)
    tz = zone(tz_name)
    states = oracle.walk(spec, tz, first, first + SPAN)
    moments = sorted(states)
    changes = oracle.changes(states)
    picks = random.Random(seed)
    checked = {moment + delta for moment in changes for delta in (-oracle.MINUTE, timedelta(0))}
    checked |= {picks.choice(moments) for _ in range(25)}
    for moment in sorted(checked):
        if moment in states and states[moment] is not None:
            assert window.active_at(moment) == states[moment], \
                f"{spec} in {tz_name} at {moment:%Y-%m-%d %H:%M}Z ({moment.astimezone(tz):%a %H:%M %Z}): " \
                f"oracle says {'active' if states[moment] else 'inactive'}"
    # next_edge: the first change after `after` is never missed; for a compact
    # window every edge it returns is a real change.
    for after in sorted({picks.choice(moments) for _ in range(6)} | {moment - oracle.MINUTE for moment in changes[:4]}):
        if states.get(after) is None:
            continue
        edge = window.next_edge(after)
        change = next((moment for moment in changes if moment > after), None)
        if change is not None:
            assert edge is not None and edge <= change, \
                f"{spec} in {tz_name}: next_edge({after:%Y-%m-%d %H:%M}Z) = {edge}, but it changes at {change}"
        if edge is not None and "when" in spec and edge <= moments[-1]:
            assert edge == change, f"{spec} in {tz_name}: next_edge({after:%Y-%m-%d %H:%M}Z) = {edge}, " \
                                   f"the state changes first at {change}"


#: The zones two by two: a test each, so every one stays well inside the unit tier's 10 s.
ZONE_PAIRS = [ZONES[i:i + 2] for i in range(0, len(ZONES), 2)]


@pytest.mark.parametrize("zones", ZONE_PAIRS, ids="+".join)
def test_engine_agrees_with_the_oracle(zones):
    @ORACLE_PER_PAIR
    @given(data=st.data(), tz_name=st.sampled_from(zones), spec=windows(), seed=st.integers(0, 2**32))
    def agrees(data, tz_name, spec, seed):
        compare(spec, tz_name, data.draw(beginnings(tz_name)), seed)
    agrees()


@pytest.mark.parametrize(("when", "tz_name", "first"), [
    pytest.param("Sat,Sun 00:00-24:00", "Europe/Berlin", "2024-06-07 20:00", id="weekend-whole-days"),
    pytest.param("Mon-Fri 00:00-24:00", "UTC", "2024-06-02 12:00", id="weekdays-whole-days"),
    pytest.param("daily 00:00-24:00", "Asia/Kolkata", "2024-06-02 12:00", id="always"),
    pytest.param("Sat,Sun 00:00-24:00", "America/Havana", "2024-03-08 12:00", id="midnight-skipped-by-dst"),
    pytest.param("Fri 22:00-Mon 24:00", "Pacific/Auckland", "2024-09-26 00:00", id="cross-day-into-spring"),
])
def test_reported_cases_agree_with_the_oracle(when, tz_name, first):
    """The cases an independent test found wrong: whole days in a row were
    cut at the first midnight, and an always-open day list was rejected."""
    compare({"when": when}, tz_name, datetime.fromisoformat(first).replace(tzinfo=UTC), seed=1)


def test_oracle_reads_whole_days_as_a_person_does():
    """The oracle itself, on the weekend: Saturday and Sunday, all day."""
    tz = zone("Europe/Berlin")
    first = datetime(2024, 6, 7, 21, 0, tzinfo=UTC)  # Fri 23:00 CEST
    states = oracle.walk({"when": "Sat,Sun 00:00-24:00"}, tz, first, first + timedelta(days=3))
    assert oracle.changes(states) == [datetime(2024, 6, 7, 22, 0, tzinfo=UTC), datetime(2024, 6, 9, 22, 0, tzinfo=UTC)]
