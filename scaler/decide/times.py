"""Time as scaler reads, writes and says it: one definition of each.

`utc_now` is the one place the wall clock is read; everything below it takes
the instant as an argument."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache


def utc_now() -> datetime:
    return datetime.now(UTC)


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 time as Kubernetes and scaler write them; None if absent,
    unreadable or without a zone."""
    if not text:
        return None
    return _parse_time(text)


@lru_cache(maxsize=1 << 16)
def _parse_time(text: str) -> datetime | None:
    """Cached: every pass reads the same annotations of every workload again."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def rfc3339(moment: datetime, *, round_up: bool = False) -> str:
    """UTC, whole seconds, as annotations and Events carry it: cut down, or
    with `round_up` the next whole second, for a moment a wait counts from
    (a grace counted from a cut-down Ready would end up to 1 s early).
    Four-digit years, 0001 to 9999 (strftime's %Y writes year 1 as "1")."""
    if round_up and moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    moment = moment.astimezone(UTC)
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%SZ}"


def later(moment: datetime, seconds: float) -> datetime | None:
    """`moment` plus `seconds`, or None past the end of the calendar (year 9999)."""
    try:
        return moment + timedelta(seconds=seconds)
    except OverflowError:
        return None


def seconds_between(earlier: datetime, later: datetime) -> float:
    """Real elapsed seconds. Not `later - earlier`: Python subtracts two
    datetimes sharing a tzinfo by wall clock, which is off by the DST shift."""
    return later.timestamp() - earlier.timestamp()


def human_duration(seconds: float) -> str:
    """90 -> '1m30s', 5400 -> '1h30m', 0.5 -> '0.5s'."""
    if seconds < 60:
        return f"{round(seconds, 1):g}s"
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    return "".join(f"{amount}{unit}" for amount, unit in parts if amount)
