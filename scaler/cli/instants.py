"""Instants and durations as the command line takes them (`plan --at`,
`backtest --from/--to/--step`): an RFC 3339 time with its zone, `now`, or
a time relative to now (`-7d`, `now-90m`, `+2h`). A time without a zone is
refused rather than guessed: 09:00 in which city?

Times are read and printed with four-digit years, 0001 to 9999, Python's
range. An instant the policies' windows cannot be worked out at (an edge
past the year 9999, a week before the year 1) is refused naming its
argument (`check_computable`), not reported as a failed policy."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from scaler.decide.decisions import POLICY_PAUSE_PREFIX, Signals, WorkloadState
from scaler.decide.facts import next_prewarm
from scaler.decide.fields import parse_duration
from scaler.decide.policies import Policy
from scaler.decide.precedence import decide
from scaler.decide.times import rfc3339

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
    """`text` as an instant in UTC; `now` is what `now` and relative times count from."""
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
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is in the year 0 in UTC
        raise InstantError(f"{flag}: {text!r} is outside 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z") from None


def _probes(policy: Policy) -> list[WorkloadState]:
    """Workloads on which `decide` reads every clock-dependent part of a
    policy's windows: running (windows now, pre-warm ahead), paused by it
    (keep-up resumes), and resized by hand while paused (the next edge)."""
    running = WorkloadState(kind="Deployment", namespace="-", name="-", replicas=1, ready_replicas=1,
                            warm_ups=(policy.prewarm_max_seconds,))  # `prewarm: auto` looks as far ahead as it may
    paused = replace(running, replicas=0, ready_replicas=0, last_replicas=1,
                     paused_by=POLICY_PAUSE_PREFIX + policy.name)
    return [running, paused, replace(paused, replicas=1, ready_replicas=1)]


def check_computable(policies: Iterable[Policy], moment: datetime, *, flag: str) -> None:
    """InstantError naming `flag` if a policy's windows cannot be worked out
    at `moment`: their date arithmetic leaves the years 1 to 9999."""
    for policy in policies:
        try:
            for state in _probes(policy):
                decide(policy=policy, workload=state, signals=Signals(), now=moment)
            next_prewarm(policy, (policy.prewarm_max_seconds,), moment)
        except OverflowError:
            raise InstantError(f"{flag} {rfc3339(moment)}: policy {policy.name}'s windows cannot be worked out "
                               "this close to the ends of the calendar (0001-01-01 and 9999-12-31)") from None
