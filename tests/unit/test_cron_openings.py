"""A cron window whose ends fire at most of its starts' times is open at the
others: it is accepted, and it opens there (docs/policies.md: only a window
whose start and end fire at the same times is an error). Before, the first
opening was searched start by start, 4096 of them, so a start every minute
against an end every minute but on the 31st was refused as never open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scaler.decide.wallclock import zone
from scaler.decide.windows import Mode, Window, WindowError


@pytest.mark.parametrize(("start", "end", "closed", "opens"), [
    pytest.param("* * * * *", "* * 1-30 * *", datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 31, tzinfo=UTC),
                 id="every-minute-but-the-31st"),
    pytest.param("0 * * * *", "0 * * 1-11 *", datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC),
                 id="hourly-in-december"),
    pytest.param("0 0 * * *", "0 0 * 1,3-12 *", datetime(2026, 3, 1, tzinfo=UTC), datetime(2027, 2, 1, tzinfo=UTC),
                 id="february-only"),
])
def test_a_window_open_only_where_its_end_does_not_fire_is_accepted_and_opens_there(start, end, closed, opens):
    window = Window(name="w", mode=Mode.UP, start=start, end=end, tz=UTC)
    assert not window.active_at(closed)
    assert window._edges.next_change(closed) == opens
    assert window.active_at(opens) and not window.active_at(opens - timedelta(seconds=1))
    assert window.active_at(datetime(opens.year, opens.month, opens.day, 12, tzinfo=UTC))


def test_a_start_in_a_skipped_day_meets_its_end_at_the_jump_and_opens_the_year_after():
    """Pacific/Apia skipped 2011-12-30: its starts all happen at the jump,
    with the end at 2011-12-31 00:00, and keep the window closed that year."""
    window = Window(name="w", mode=Mode.UP, start="0 12 30 12 *", end="0 0 31 12 *", tz=zone("Pacific/Apia"))
    opening = window._edges.next_change(datetime(2011, 12, 1, tzinfo=UTC))
    assert opening == datetime(2012, 12, 29, 22, tzinfo=UTC)  # 12:00 on 2012-12-30 at UTC+14 (DST)


@pytest.mark.parametrize(("start", "end"), [("0 0 29 2 *", "* * * * *"), ("42 8-17 * * *", "*/7 * * * *")])
def test_a_window_whose_every_start_is_an_end_is_still_refused(start, end):
    with pytest.raises(WindowError, match="never open"):
        Window(name="w", mode=Mode.UP, start=start, end=end, tz=UTC)
