"""Windows: the cron dialect, the compact `when` form, start-inclusive /
end-exclusive edges, and what daylight saving time does to them. Times are
written in UTC (`Z`) where the real instant matters and in local time where
the wall clock matters."""

from datetime import UTC, datetime, timedelta

import pytest

from scaler.decide.compact import WeeklySpans, week_spans
from scaler.decide.windows import (
    Mode,
    Outside,
    Schedule,
    Window,
    WindowError,
    cron_trigger,
    next_edge,
    standard_day_of_week,
    zone,
)

BERLIN = zone("Europe/Berlin")
NEW_YORK = zone("America/New_York")
AUCKLAND = zone("Pacific/Auckland")


def z(text: str) -> datetime:
    """An instant in UTC: z('2024-10-27 05:00')."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def local(text: str, tz) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz)


def when(text: str, tz=BERLIN, mode=Mode.UP) -> Window:
    return Window.from_when(text, name=text, mode=mode, tz=tz)


def open_span(window: Window, after: datetime) -> tuple[datetime, datetime]:
    """The next (start, end) of `window` after `after`, as UTC instants."""
    start = window.next_edge(after)
    while not window.active_at(start):
        start = window.next_edge(start)
    end = window.next_edge(start)
    assert not window.active_at(end)
    return start, end


# ---------------------------------------------------------------- cron dialect


def test_numeric_weekdays_are_standard_cron_not_apscheduler():
    """APScheduler alone would read 1-5 as Tue-Sat (0=Monday); we mean Mon-Fri."""
    trigger = cron_trigger("0 8 * * 1-5")
    fires = []
    moment = z("2024-06-01 00:00")  # a Saturday
    for _ in range(5):
        moment = trigger.get_next_fire_time(None, moment)
        fires.append(moment.strftime("%a"))
        moment += timedelta(seconds=1)
    assert fires == ["Mon", "Tue", "Wed", "Thu", "Fri"]


@pytest.mark.parametrize(("field", "names"), [
    pytest.param("1-5", "mon,tue,wed,thu,fri", id="weekdays"),
    pytest.param("0", "sun", id="zero-is-sunday"),
    pytest.param("7", "sun", id="seven-is-sunday"),
    pytest.param("5-7", "sun,fri,sat", id="range-ending-on-seven"),
    pytest.param("0,6", "sun,sat", id="list"),
    pytest.param("*/2", "sun,tue,thu,sat", id="step-from-sunday"),
    pytest.param("1-5/2", "mon,wed,fri", id="range-step"),
    pytest.param("mon-fri", "mon,tue,wed,thu,fri", id="names-pass"),
    pytest.param("fri-sun", "sun,fri,sat", id="names-range-to-sunday"),
    pytest.param("*", "*", id="any"),
    pytest.param("0-6", "*", id="all-days-is-any"),
])
def test_day_of_week_translation(field, names):
    assert standard_day_of_week(field) == names


@pytest.mark.parametrize(("expression", "fragment"), [
    pytest.param("0 25 * * *", "hour '25': the last value (25) is higher than the maximum value (23)", id="hour"),
    pytest.param("61 8 * * *", "minute '61'", id="minute"),
    pytest.param("0 8 * 13 *", "month '13'", id="month"),
    pytest.param("0 8 * * 8", "day of week '8': must be 0-7", id="day-of-week"),
    pytest.param("0 8 * * 5-1", "runs backwards", id="backwards-range"),
    pytest.param("0 8 * *", "expected 5 fields", id="four-fields"),
    pytest.param("@daily", "expected 5 fields", id="macro"),
    pytest.param("0 8 1 * 1", "either", id="day-of-month-and-week"),
    pytest.param("0 8 31 2 *", "never fires", id="never-fires"),
    pytest.param("0 8 1 * 0-7", "either", id="day-of-month-and-a-whole-week"),
    # A wrong field is named before the day rule (it was 'restricting both ...' whenever both were set).
    pytest.param("a b c d e", "(minute 'a': not a number, a range, a step or a list of them)", id="garbage"),
    pytest.param("0 8 x 1 mon", "(day of month 'x': not a number", id="bad-day-of-month-beside-a-day"),
    pytest.param("0 25 1 * 1", "(hour '25'", id="bad-hour-with-both-days"),
    pytest.param("0 8 1 * funday", "(day of week 'funday'", id="bad-day-of-week-with-a-day-of-month"),
])
def test_bad_cron_is_explained(expression, fragment):
    with pytest.raises(WindowError) as raised:
        cron_trigger(expression)
    assert str(raised.value).startswith(f'"{expression}" is not a valid cron expression (')
    assert fragment in str(raised.value)


def test_unknown_time_zone():
    with pytest.raises(WindowError, match="unknown time zone 'Europe/Atlantis'"):
        zone("Europe/Atlantis")


def test_start_equal_to_end_is_rejected_even_when_spelled_differently():
    with pytest.raises(WindowError, match="never open"):
        Window(name="w", mode=Mode.UP, start="0 8 * * 1-5", end="0 8 * * mon-fri", tz=UTC)


# ---------------------------------------------------------------- compact form


DAY = 24 * 60
WEEK = 7 * DAY


def at(day: int, hour: int, minute: int = 0) -> int:
    """Minutes after Monday 00:00 (day 0 = Monday)."""
    return day * DAY + hour * 60 + minute


@pytest.mark.parametrize(("text", "spans"), [
    pytest.param("Mon-Fri 08:00-20:00", [(at(day, 8), at(day, 20)) for day in range(5)], id="business-hours"),
    pytest.param("Mon-Fri 22:00-06:00", [(at(day, 22), at(day + 1, 6)) for day in range(5)],
                 id="across-midnight-ends-next-day"),
    pytest.param("Sat,Sun 00:00-24:00", [(at(5, 0), at(7, 0))], id="whole-days-are-one-span"),
    pytest.param("Mon-Fri 00:00-24:00", [(at(0, 0), at(5, 0))], id="whole-weekdays-are-one-span"),
    pytest.param("daily 09:15-17:30", [(at(day, 9, 15), at(day, 17, 30)) for day in range(7)], id="daily"),
    pytest.param("Fri 18:00-Mon 07:00", [(at(4, 18), at(7, 7))], id="weekend"),
    pytest.param("Sun 18:00-Sun 24:00", [(at(6, 18), at(7, 0))], id="to-the-end-of-sunday"),
    pytest.param("Fri-Mon 10:00-11:00", [(at(day, 10), at(day, 11)) for day in (0, 4, 5, 6)],
                 id="range-over-weekend"),
    pytest.param("sat, sunday 10:00-11:00", [(at(5, 10), at(5, 11)), (at(6, 10), at(6, 11))],
                 id="case-and-full-names"),
])
def test_compact_spans(text, spans):
    assert WeeklySpans.parse(text, UTC).spans == tuple(spans)


def test_every_day_all_day_is_always_open():
    window = when("daily 00:00-24:00")
    assert WeeklySpans.parse("daily 00:00-24:00", UTC).spans is None
    assert window.active_at(z("2024-03-31 01:30")) and window.active_at(z("2024-10-27 01:30"))
    assert window.next_edge(z("2024-06-03 12:00")) is None


def test_spans_are_written_before_they_are_merged():
    assert week_spans("Sat,Sun 00:00-24:00") == [(at(5, 0), at(6, 0)), (at(6, 0), at(7, 0))]


@pytest.mark.parametrize(("text", "fragment"), [
    pytest.param("daily 08:00-08:00", "starts and ends at the same time", id="empty-window"),
    pytest.param("Mon-Fri 8-20", "expected '<days> HH:MM-HH:MM'", id="no-minutes"),
    pytest.param("Mon-Funday 01:00-02:00", "unknown day 'Funday'", id="bad-day"),
    pytest.param("Mon 25:00-26:00", "25:00 is not a time of day", id="bad-time"),
    pytest.param("Mon-Fri 18:00-Mon 07:00", "starts on one day", id="cross-day-from-range"),
])
def test_bad_when(text, fragment):
    with pytest.raises(WindowError) as raised:
        WeeklySpans.parse(text, UTC)
    assert fragment in str(raised.value)


# ---------------------------------------------------------------- active_at


@pytest.mark.parametrize(("moment", "active"), [
    pytest.param("2024-06-03 07:59:59", False, id="before-start"),
    pytest.param("2024-06-03 08:00:00", True, id="start-inclusive"),
    pytest.param("2024-06-03 19:59:59", True, id="last-second"),
    pytest.param("2024-06-03 20:00:00", False, id="end-exclusive"),
    pytest.param("2024-06-08 12:00:00", False, id="saturday"),
])
def test_business_hours_edges(moment, active):
    assert when("Mon-Fri 08:00-20:00").active_at(local(moment, BERLIN)) is active


@pytest.mark.parametrize(("moment", "active"), [
    pytest.param("2024-06-03 01:00", False, id="monday-early-sunday-night-not-included"),
    pytest.param("2024-06-03 22:00", True, id="monday-night-start"),
    pytest.param("2024-06-04 05:59", True, id="tuesday-morning"),
    pytest.param("2024-06-04 06:00", False, id="tuesday-end-exclusive"),
    pytest.param("2024-06-07 23:30", True, id="friday-night"),
    pytest.param("2024-06-08 05:59", True, id="saturday-morning-after-friday"),
    pytest.param("2024-06-08 22:30", False, id="saturday-night"),
    pytest.param("2024-06-09 23:00", False, id="sunday-night"),
])
def test_across_midnight(moment, active):
    assert when("Mon-Fri 22:00-06:00").active_at(local(moment, BERLIN)) is active


@pytest.mark.parametrize(("moment", "active"), [
    pytest.param("2024-06-07 17:59", False, id="friday-before"),
    pytest.param("2024-06-07 18:00", True, id="friday-start"),
    pytest.param("2024-06-08 12:00", True, id="saturday"),
    pytest.param("2024-06-09 23:59", True, id="sunday-night"),
    pytest.param("2024-06-10 06:59", True, id="monday-early"),
    pytest.param("2024-06-10 07:00", False, id="monday-end"),
    pytest.param("2024-06-12 12:00", False, id="midweek"),
])
def test_weekend_window(moment, active):
    assert when("Fri 18:00-Mon 07:00").active_at(local(moment, BERLIN)) is active


@pytest.mark.parametrize(("start", "end", "moment", "active"), [
    pytest.param("0 0 1 1 *", "0 0 1 7 *", "2024-06-30 12:00", True, id="half-year-window-late-in-it"),
    pytest.param("0 0 1 1 *", "0 0 1 7 *", "2024-07-01 00:00", False, id="half-year-window-ended"),
    pytest.param("0 0 29 2 *", "0 0 1 3 *", "2024-02-29 12:00", True, id="leap-day"),
    pytest.param("0 0 29 2 *", "0 0 1 3 *", "2025-02-28 12:00", False, id="leap-day-not-in-2025"),
    pytest.param("*/10 * * * *", "5-59/10 * * * *", "2024-06-03 10:04", True, id="every-ten-minutes"),
    pytest.param("*/10 * * * *", "5-59/10 * * * *", "2024-06-03 10:05", False, id="every-ten-minutes-closed"),
    pytest.param("0 8 * * *", "0 8 * * 1", "2024-06-03 09:00", False, id="same-instant-start-and-end-stay-closed"),
    pytest.param("0 8 * * *", "0 8 * * 1", "2024-06-04 09:00", True, id="start-without-end-stays-open"),
])
def test_cron_windows(start, end, moment, active):
    window = Window(name="w", mode=Mode.UP, start=start, end=end, tz=UTC)
    assert window.active_at(z(moment)) is active


def test_now_must_be_aware():
    with pytest.raises(ValueError, match="no time zone"):
        when("daily 08:00-20:00").active_at(datetime(2024, 6, 3, 9))


def test_same_instant_in_any_zone_gives_the_same_answer():
    window = when("Mon-Fri 08:00-20:00")
    instant = z("2024-06-03 06:30")  # 08:30 in Berlin
    assert window.active_at(instant)
    assert window.active_at(instant.astimezone(NEW_YORK))
    assert window.active_at(instant.astimezone(AUCKLAND))


# ---------------------------------------------------------------- daylight saving time


@pytest.mark.parametrize(("tz", "evening", "hours"), [
    pytest.param(BERLIN, "2024-10-26 12:00", 9, id="berlin-fall-back-night-is-9-hours"),
    pytest.param(BERLIN, "2024-03-30 12:00", 7, id="berlin-spring-forward-night-is-7-hours"),
    pytest.param(NEW_YORK, "2024-11-02 12:00", 9, id="new-york-fall-back-night-is-9-hours"),
    pytest.param(NEW_YORK, "2024-03-09 12:00", 7, id="new-york-spring-forward-night-is-7-hours"),
    pytest.param(AUCKLAND, "2024-04-06 12:00", 9, id="auckland-april-fall-back-night-is-9-hours"),
    pytest.param(AUCKLAND, "2024-09-28 12:00", 7, id="auckland-september-spring-forward-night-is-7-hours"),
    pytest.param(BERLIN, "2024-07-06 12:00", 8, id="berlin-summer-night-is-8-hours"),
])
def test_night_window_across_dst_change(tz, evening, hours):
    window = when("daily 22:00-06:00", tz=tz)
    start, end = open_span(window, local(evening, tz))
    assert start.astimezone(tz).strftime("%H:%M") == "22:00"
    assert end.astimezone(tz).strftime("%H:%M") == "06:00"
    assert end - start == timedelta(hours=hours)


def test_window_over_the_spring_forward_gap_is_one_real_hour():
    # Europe/Berlin, 31 March 2024: 02:00 CET jumps to 03:00 CEST.
    start, end = open_span(when("daily 01:00-03:00"), local("2024-03-31 00:00", BERLIN))
    assert (start, end) == (z("2024-03-31 00:00"), z("2024-03-31 01:00"))


def test_start_in_the_spring_forward_gap_opens_when_the_clocks_jump():
    """02:30 does not exist on 31 March 2024 in Berlin (02:00 CET jumps to
    03:00 CEST); as in cron, the start fires at the jump, so the window
    opens at 03:00 that day."""
    window = when("daily 02:30-05:00")
    assert not window.active_at(z("2024-03-31 00:59"))  # 01:59 CET
    assert window.active_at(z("2024-03-31 01:00"))  # 03:00 CEST
    assert window.active_at(local("2024-03-31 04:59", BERLIN))
    assert not window.active_at(local("2024-03-31 05:00", BERLIN))
    assert window.active_at(local("2024-04-01 02:30", BERLIN))
    assert window.next_edge(z("2024-03-30 12:00")) == z("2024-03-31 01:00")


def test_a_repeated_fall_back_time_fires_once():
    # Europe/Berlin, 27 October 2024: 02:30 happens at 00:30Z (CEST) and 01:30Z (CET).
    window = when("daily 02:30-02:45")
    assert window.active_at(z("2024-10-27 00:30")) and not window.active_at(z("2024-10-27 00:45"))
    assert not window.active_at(z("2024-10-27 01:35"))
    assert window.next_edge(z("2024-10-27 00:45")) == z("2024-10-28 01:30")


def test_weekly_midnight_after_spring_forward_is_not_skipped():
    """APScheduler 3.x, asked in Europe/Berlin for the next `0 0 * * mon`
    during the week before a spring-forward Sunday, answers the Monday after
    the next one; windows evaluate on the wall clock and do not."""
    window = when("Mon 00:00-Mon 23:59")
    assert window.next_edge(z("2020-03-24 00:00")) == z("2020-03-29 22:00")  # Mon 30 March 00:00 CEST
    assert window.active_at(local("2020-03-30 12:00", BERLIN))


def test_end_in_the_repeated_fall_back_hour_closes_at_its_first_occurrence():
    # Europe/Berlin, 27 October 2024: 03:00 CEST falls back to 02:00 CET;
    # 02:30 happens at 00:30Z and again at 01:30Z.
    window = when("daily 01:30-02:30")
    assert window.active_at(z("2024-10-27 00:15"))  # 02:15 CEST
    assert not window.active_at(z("2024-10-27 00:30"))  # 02:30 CEST
    assert not window.active_at(z("2024-10-27 01:15"))  # 02:15 CET, the hour again
    assert not window.active_at(z("2024-10-27 01:45"))


def test_business_hours_follow_local_time_across_the_year():
    window = when("Mon-Fri 08:00-20:00", tz=AUCKLAND)
    # 8:00 NZST (+12) in July is 20:00Z the day before; 8:00 NZDT (+13) in January is 19:00Z.
    assert window.active_at(z("2024-07-07 20:00")) and not window.active_at(z("2024-07-07 19:59"))
    assert window.active_at(z("2024-01-14 19:00")) and not window.active_at(z("2024-01-14 18:59"))


# ---------------------------------------------------------------- schedules and edges


def test_next_edge_is_strictly_after():
    schedule = Schedule(windows=(when("Mon-Fri 08:00-20:00"),), tz=BERLIN)
    friday_close = local("2024-06-07 20:00", BERLIN)
    assert next_edge(schedule, friday_close - timedelta(seconds=1)) == friday_close.astimezone(UTC)
    assert next_edge(schedule, friday_close) == local("2024-06-10 08:00", BERLIN).astimezone(UTC)


def test_next_edge_is_the_earliest_of_all_windows():
    schedule = Schedule(windows=(when("Mon-Fri 08:00-20:00"), when("Sat 10:00-12:00", mode=Mode.DOWN)),
                        tz=BERLIN)
    assert next_edge(schedule, local("2024-06-07 21:00", BERLIN)) == z("2024-06-08 08:00")


@pytest.mark.parametrize(("moment", "down", "up", "outside_down"), [
    pytest.param("2024-06-03 09:00", None, "Mon-Fri 08:00-20:00", False, id="in-up-window"),
    pytest.param("2024-06-03 21:00", None, None, True, id="outside-every-window"),
    pytest.param("2024-06-07 12:30", "Fri 12:00-13:00", "Mon-Fri 08:00-20:00", False, id="down-and-up-both-listed"),
])
def test_schedule_state(moment, down, up, outside_down):
    schedule = Schedule(windows=(when("Mon-Fri 08:00-20:00"), when("Fri 12:00-13:00", mode=Mode.DOWN)),
                        tz=BERLIN, outside=Outside.DOWN)
    state = schedule.state_at(local(moment, BERLIN))
    assert (state.keep_down.name if state.keep_down else None) == down
    assert (state.keep_up.name if state.keep_up else None) == up
    assert state.outside_down is outside_down
    assert schedule.state_at(local(moment, BERLIN)) == state  # remembered per instant, same answer
