"""Instants and durations as the command line takes them (`plan --at`,
`backtest --from/--to/--step`): an RFC 3339 time with its zone, `now`, or
a time relative to now (`-7d`, `now-90m`, `+2h`). A time without a zone is
refused rather than guessed: 09:00 in which city?"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from scaler.decide.fields import parse_duration

_RELATIVE = re.compile(r"^(?:now)?\s*([+-])\s*(\S+)$")


class InstantError(ValueError):
    """An instant or a duration the command line cannot read."""


def duration(text: str, *, flag: str) -> float:
    """Seconds of a duration such as 90s, 5m, 1h30m."""
    try:
        return parse_duration(text)
    except ValueError as error:
        raise InstantError(f"{flag}: {_message(error)}") from None


def _message(error: Exception) -> str:
    errors = getattr(error, "errors", None)
    return errors()[0]["msg"] if callable(errors) else str(error)


def instant(text: str, *, now: datetime, flag: str) -> datetime:
    """`text` as an aware instant; `now` is what `now` and relative times count from."""
    text = text.strip()
    if text == "now":
        return now
    relative = _RELATIVE.match(text)
    if relative:
        sign, amount = relative.groups()
        seconds = duration(amount, flag=flag)
        return now + timedelta(seconds=seconds if sign == "+" else -seconds)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InstantError(f"{flag}: {text!r} is not a time (write e.g. 2026-11-20T09:00:00Z, "
                           "2026-11-20T09:00+01:00, now, -7d or now-90m)") from None
    if moment.tzinfo is None:
        raise InstantError(f"{flag}: {text!r} has no time zone; add Z for UTC or an offset such as +01:00")
    return moment
