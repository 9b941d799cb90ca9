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

from datetime import MINYEAR, UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

_ONE_SECOND = timedelta(seconds=1)
_ONE_MICROSECOND = timedelta(microseconds=1)


class WindowError(ValueError):
    """A cron expression, `when` text or time zone is not valid; the message
    is written for the person who wrote the policy."""


#: Names a zone database holds that are not IANA time zones: `localtime` is
#: whatever the host is set to, `posixrules` a template, `Factory` a
#: placeholder; `posix/...` and `right/...` are copies of the zones, the
#: `right/` ones counting leap seconds (their changes of clocks land 27 s late).
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@cache
def iana_zones() -> frozenset[str]:
    """The IANA time zone names (`zoneinfo.available_timezones()`, without
    the pseudo-zones)."""
    return frozenset(name for name in available_timezones()
                     if name not in _NOT_ZONES and not name.startswith(("posix/", "right/")))


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`, or WindowError (names that mean something
    else on each host, or count leap seconds, are refused)."""
    if not isinstance(name, str) or name not in iana_zones():
        text = str(name)
        if text in _NOT_ZONES or text.startswith(("posix/", "right/")):
            raise WindowError(f"{text!r} is not an IANA time zone but an entry of the host's zone files "
                              "(use an IANA name such as Europe/Berlin or UTC)")
        raise WindowError(f"unknown time zone {text!r} (use an IANA name such as Europe/Berlin or UTC)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # listed, but the host's copy is unreadable
        raise WindowError(f"time zone {name!r} cannot be read on this host") from None


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


FIRST_INSTANT = datetime.min.replace(tzinfo=UTC)
LAST_INSTANT = datetime.max.replace(tzinfo=UTC)


def place_within(naive: datetime, tz: ZoneInfo) -> datetime | None:
    """`place`, for wall times near the ends of the calendar too: one that
    would happen before year 1 (UTC) happens at the first instant there is;
    one after year 9999, never (None)."""
    try:
        return place(naive, tz)
    except OverflowError:
        return FIRST_INSTANT if naive.year == MINYEAR else None


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


def shown(instant: datetime, tz: ZoneInfo) -> datetime:
    """The latest wall-clock time the clock in `tz` has shown by `instant`
    (naive): the wall time at `instant`, except in the hour repeated after
    the clocks fall back, where the clock showed later times before (the
    first pass) and `shown` is just before the end of that hour. Wall times
    up to `shown` are exactly those placed at or before `instant`."""
    local = instant.astimezone(tz)
    naive = local.replace(tzinfo=None, fold=0)
    if local.fold == 0:
        return naive
    return _fold_end(instant, naive, tz) - _ONE_MICROSECOND


def earliest(instant: datetime, tz: ZoneInfo) -> datetime:
    """The earliest wall-clock time (naive) placed at or after `instant`:
    the wall time at `instant`, except in the repeated hour (the end of it:
    earlier wall times happened on the first pass) and at the very moment
    the clocks jump forward (the start of the skipped time: it happens now)."""
    local = instant.astimezone(tz)
    naive = local.replace(tzinfo=None, fold=0)
    if local.fold == 1:
        return _fold_end(instant, naive, tz)
    before = (instant - _ONE_MICROSECOND).astimezone(tz).utcoffset()
    now = local.utcoffset()
    assert before is not None and now is not None  # a ZoneInfo always has an offset
    if before < now:
        return naive - (now - before)  # the jump is now: the skipped wall times happen at this instant
    return naive


def _fold_end(instant: datetime, naive: datetime, tz: ZoneInfo) -> datetime:
    """The wall time at which the repeated hour around `instant` (second
    pass, wall time `naive`) ends: where the first pass was cut off."""
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)  # the same wall time, first pass
    first_offset = first.astimezone(tz).utcoffset()
    low, high = first, instant.astimezone(UTC)  # the jump back is after `low`, at or before `high`
    while high - low > _ONE_SECOND:
        middle = low + (high - low) / 2
        if middle.astimezone(tz).utcoffset() == first_offset:
            low = middle
        else:
            high = middle
    jump = high.replace(microsecond=0)  # transitions fall on whole seconds
    if jump <= low:
        jump = high
    assert first_offset is not None
    return (jump + first_offset).replace(tzinfo=None)


def utc(moment: datetime) -> datetime:
    """`moment` in UTC; ValueError if it is naive."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r} has no time zone; pass an aware datetime")
    return moment.astimezone(UTC)
