"""Who set the replicas back, and how long scaler then keeps its hands off.

A pause can be undone by a person (`kubectl scale`, an edit) or by a GitOps
controller re-applying the replica count from Git (Argo CD self-heal, Flux).
A person gets today's hands-off period; a controller is not a person: scaler
reports it once and backs off with growing intervals, instead of pausing it
again every minute and fighting it forever. And a person may wake a workload
for a while (`scaler resume --for 2h`): the hold, read here.

Pure: no I/O, no clock; the instant is an argument.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic_core import PydanticCustomError

from scaler.decide.annotations import (
    BACKOFF_UNTIL,
    HOLD_FROM,
    HOLD_UNTIL,
    REVERTED_BY,
    REVERTS,
)
from scaler.decide.fields import MAX_DURATION_SECONDS
from scaler.decide.times import parse_time, rfc3339, seconds_between
from scaler.decide.wallclock import place, wall

#: managedFields managers of GitOps controllers: Argo CD's server-side apply,
#: Flux's kustomize-controller and helm-controller.
DEFAULT_GITOPS_MANAGERS: tuple[str, ...] = ("argocd-controller", "kustomize-controller", "helm-controller")
#: A person's edit with no window edge to wait for: hands off this long.
DEFAULT_HANDS_OFF_SECONDS = 3600.0
#: The first back-off after a GitOps revert; each further revert doubles it, up to the cap.
DEFAULT_BACKOFF_SECONDS = 300.0
DEFAULT_BACKOFF_MAX_SECONDS = 86400.0
#: `--until next-window` on a policy with no schedule (no window edge): hold this long.
NEXT_WINDOW = "next-window"


def advice(size_field: tuple[str, ...] = ("spec", "replicas")) -> str:
    """What to tell the GitOps tool to leave alone: the size's field, as a JSON pointer."""
    pointer = "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in size_field)
    return f"add ignoreDifferences for {pointer}"


@dataclass(frozen=True)
class HandsOff:
    """How long scaler keeps its hands off after someone set the replicas back."""

    gitops_managers: tuple[str, ...] = DEFAULT_GITOPS_MANAGERS
    backoff_seconds: float = DEFAULT_BACKOFF_SECONDS
    backoff_max_seconds: float = DEFAULT_BACKOFF_MAX_SECONDS
    #: a person's edit on a policy without a schedule
    person_seconds: float = DEFAULT_HANDS_OFF_SECONDS


def is_gitops(manager: str | None, managers: Iterable[str] = DEFAULT_GITOPS_MANAGERS) -> bool:
    """A manager name from managedFields is a GitOps controller's (prefix
    match: Argo CD versions append nothing, some forks append a suffix)."""
    return manager is not None and any(manager == m or manager.startswith(m + "-") for m in managers)


def backoff_seconds(reverts: int, *, base_seconds: float = DEFAULT_BACKOFF_SECONDS,
                    max_seconds: float = DEFAULT_BACKOFF_MAX_SECONDS) -> float:
    """How long scaler waits after the `reverts`-th revert in a row: base,
    2 x base, 4 x base ... capped."""
    return min(base_seconds * 2 ** max(reverts - 1, 0), max_seconds)


def reverts_of(annotations: Mapping[str, str]) -> int:
    try:
        return max(int(annotations.get(REVERTS, "0")), 0)
    except ValueError:
        return 0


def backoff_until(annotations: Mapping[str, str]) -> datetime | None:
    return parse_time(annotations.get(BACKOFF_UNTIL))


def reverted_by(annotations: Mapping[str, str]) -> str | None:
    return annotations.get(REVERTED_BY) or None


def revert_record(*, manager: str, reverts: int, now: datetime, base_seconds: float = DEFAULT_BACKOFF_SECONDS,
                  max_seconds: float = DEFAULT_BACKOFF_MAX_SECONDS) -> tuple[dict[str, str], datetime]:
    """The annotations a revert leaves on the workload, and the end of its back-off."""
    until = now + timedelta(seconds=backoff_seconds(reverts, base_seconds=base_seconds, max_seconds=max_seconds))
    return {REVERTED_BY: manager, REVERTS: str(reverts), BACKOFF_UNTIL: rfc3339(until)}, until


def hold_until(annotations: Mapping[str, str], *, next_edge_after=None) -> datetime | None:
    """The end of a person's `resume --for/--until` hold, or None. A
    "next-window" hold ends at `next_edge_after(start)` (the policy's next
    window edge), or DEFAULT_HANDS_OFF_SECONDS after its start when the policy
    has no schedule."""
    text = annotations.get(HOLD_UNTIL)
    if not text:
        return None
    if text != NEXT_WINDOW:
        return parse_time(text)
    start = parse_time(annotations.get(HOLD_FROM))
    if start is None:
        return None
    edge = next_edge_after(start) if next_edge_after is not None else None
    return edge or start + timedelta(seconds=DEFAULT_HANDS_OFF_SECONDS)


def replicas_writer(obj: Mapping, replicas_path: tuple[str, ...] = ("spec", "replicas")) -> str | None:
    """The manager that last wrote the replica count, from metadata.managedFields:
    of the entries that own the field, someone else's before scaler's (a
    shared field names the other writer), then the newest."""
    fields = tuple(f"f:{part}" for part in replicas_path)
    owners = []
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        node = entry.get("fieldsV1") or {}
        for key in fields:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            owners.append((entry.get("manager") != "scaler", entry.get("time") or "", entry.get("manager")))
    return max(owners)[2] if owners else None


class HoldError(ValueError):
    """`--for` / `--until` text that names no time; the message says what would."""


def hold_annotations(*, for_text: str | None = None, until_text: str | None = None,
                     now: datetime) -> dict[str, str]:
    """The annotations of `scaler resume --for 2h` or `--until next-window |
    RFC 3339 | HH:MM`. HH:MM is the next such wall-clock time in `now`'s
    zone (pass `now` in the local IANA zone), placed by the windows' rule: a
    time the clocks skip happens when they jump, a repeated one at its first
    occurrence. A hold is at most a year (MAX_DURATION_SECONDS), either way."""
    from scaler.decide.policies import parse_duration

    start = {HOLD_FROM: rfc3339(now)}
    if for_text is not None:
        try:
            seconds = parse_duration(for_text)
        except PydanticCustomError as error:  # not a duration, or longer than a year: its message says which
            raise HoldError(f"--for {error.message()}") from None
        if seconds <= 0:
            raise HoldError(f"--for {for_text!r} must be longer than 0")
        return {HOLD_UNTIL: rfc3339(now + timedelta(seconds=seconds)), **start}
    text = (until_text or "").strip()
    if text == NEXT_WINDOW:
        return {HOLD_UNTIL: NEXT_WINDOW, **start}
    clock = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", text)
    if clock:
        return {HOLD_UNTIL: rfc3339(_next_wall_time(now, hour=int(clock[1]), minute=int(clock[2]))), **start}
    parsed = parse_time(text)
    if parsed is None:
        raise HoldError(f"--until {text!r} is not a time: write next-window, HH:MM (local time) or RFC 3339 "
                        "with a zone (2026-05-01T18:00:00Z)")
    if parsed <= now:
        raise HoldError(f"--until {text!r} is in the past")
    if seconds_between(now, parsed) > MAX_DURATION_SECONDS:
        raise HoldError(f"--until {text!r} is more than a year ahead ({MAX_DURATION_SECONDS:.0f}s), the longest "
                        "hold scaler accepts")
    return {HOLD_UNTIL: rfc3339(parsed), **start}


def _next_wall_time(now: datetime, *, hour: int, minute: int) -> datetime:
    """The first instant after `now` at which `now`'s zone shows hour:minute
    (or has jumped past it), today or tomorrow. A fixed offset (no IANA
    zone) has no gaps: the wall time is simply there."""
    zone = now.tzinfo
    if isinstance(zone, ZoneInfo):
        today = wall(now, zone).replace(hour=hour, minute=minute, second=0, microsecond=0)
        until = place(today, zone)
        return until if until > now else place(today + timedelta(days=1), zone)
    until = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return until if until > now else until + timedelta(days=1)
