"""Wall-clock time in an IANA zone, placed on the real time line.

Windows are written in wall-clock time; decisions compare real instants. One
rule connects the two, for cron and compact windows alike: a wall-clock time
W happens at the first moment the clock on the wall has shown W or later.

* A wall time inside a spring-forward gap (02:30 in Europe/Berlin on the last
  Sunday of March) happens when the clocks jump, at 03:00 CEST.
* A wall time inside the repeated fall-back hour happens once, at its first
  occurrence.

Placement never reorders wall times, so walking them forward in wall-clock
order walks them forward in real time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_ONE_SECOND = timedelta(seconds=1)


class WindowError(ValueError):
    """A cron expression, `when` text or time zone is not valid; the message
    is written for the person who wrote the policy."""


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`, or WindowError."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):  # "Pacific" is a directory: OSError
        raise WindowError(f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin or UTC)") \
            from None


def wall(instant: datetime, tz: ZoneInfo) -> datetime:
    """The naive wall-clock time in `tz` at `instant`."""
    return instant.astimezone(tz).replace(tzinfo=None)


def place(naive: datetime, tz: ZoneInfo) -> datetime:
    """The instant (UTC) at which wall-clock time `naive` happens in `tz`."""
    naive = naive.replace(tzinfo=None, fold=0)
    instant = naive.replace(tzinfo=tz).astimezone(UTC)  # fold=0: the first occurrence
    if instant.astimezone(tz).replace(tzinfo=None) == naive:
        return instant
    return _gap_end(naive, tz)


def _gap_end(naive: datetime, tz: ZoneInfo) -> datetime:
    """The instant the clocks jump over the nonexistent wall time `naive`."""
    before = naive.replace(tzinfo=tz, fold=0).utcoffset()
    after = naive.replace(tzinfo=tz, fold=1).utcoffset()
    assert before is not None and after is not None  # a ZoneInfo always has an offset
    low = (naive - after).replace(tzinfo=UTC)  # still before the jump
    high = (naive - before).replace(tzinfo=UTC)  # already after it
    while high - low > _ONE_SECOND:
        middle = low + (high - low) / 2
        if middle.astimezone(tz).utcoffset() == after:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def utc(moment: datetime) -> datetime:
    """`moment` in UTC; ValueError if it is naive."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r} has no time zone; pass an aware datetime")
    return moment.astimezone(UTC)
