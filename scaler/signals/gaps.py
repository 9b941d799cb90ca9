"""Where an idle signal was not seen: the holes that leave a workload's idle
window unknown, named for the reason a person reads.

The idle query (`queries.idle_query`) leaves out a workload whose signal was
not seen through its window; it cannot say where the hole was. When some
running workloads of a policy come back unknown, one range query per policy
(`queries.seen_query`, the same per-workload expression the coverage guard
counts) over the window, at the subquery's own steps, shows each one's
missing stretches. Pure: reads the answer of that range query.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from scaler.signals.history import History, read_matrix
from scaler.signals.queries import SignalQuery, resolution_seconds
from scaler.signals.results import WorkloadKey

NO_DATA, NAN, MINUS_INF, PLUS_INF = "no data", "NaN", "-Inf", "+Inf"
#: Holes named in a reason; more are counted, not listed.
LISTED = 3


@dataclass(frozen=True)
class Gap:
    """Steps in a row without a usable sample."""

    #: the first step without one (unix seconds)
    start: int
    #: the first step seen again; None: not seen again by the window's last step
    end: int | None
    #: NO_DATA (no sample within the lookback), NAN, MINUS_INF or PLUS_INF
    what: str


@dataclass(frozen=True)
class IdleSteps:
    """The instants the idle query's subquery reads for one evaluation, in
    whole unix seconds on its step grid: from the last step at or before the
    window's start (the start guard reads it) to the last at or before the
    evaluated instant."""

    first: int
    last: int
    step: int

    @classmethod
    def at(cls, instant: datetime, duration_seconds: float) -> IdleSteps:
        step = resolution_seconds(duration_seconds)
        now = instant.timestamp()
        # Prometheus puts subquery steps on multiples of the step since the epoch.
        return cls(first=math.floor((now - math.ceil(duration_seconds)) / step) * step,
                   last=math.floor(now / step) * step, step=step)

    @property
    def start(self) -> datetime:
        return datetime.fromtimestamp(self.first, UTC)

    @property
    def end(self) -> datetime:
        return datetime.fromtimestamp(self.last, UTC)


def _unseen(text: object) -> str | None:
    """Why a step's sample is unusable, or None if it is seen: a finite
    value, as the idle query's guards count it (`queries.seen`)."""
    if text is None:
        return NO_DATA
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return NAN
    if math.isnan(value):
        return NAN
    return None if math.isfinite(value) else (PLUS_INF if value > 0 else MINUS_INF)


def _by_step(points: Sequence) -> dict[int, object]:
    """{unix milliseconds: value text}; a malformed point is left out (its step is unseen)."""
    found: dict[int, object] = {}
    for point in points:
        try:
            timestamp, text = point
            found[round(float(timestamp) * 1000)] = text
        except (TypeError, ValueError):
            continue
    return found


def find_gaps(points: Sequence, steps: IdleSteps) -> list[Gap]:
    """The stretches of `steps` where `points` ([unix seconds, "value"], as a
    range query sends them) have no usable sample, oldest first."""
    by_step = _by_step(points)
    gaps: list[Gap] = []
    start, what = 0, None
    for moment in range(steps.first, steps.last + steps.step, steps.step):
        unseen = _unseen(by_step.get(moment * 1000))
        if unseen == what:
            continue
        if what is not None:
            gaps.append(Gap(start, moment, what))
        start, what = moment, unseen
    if what is not None:
        gaps.append(Gap(start, None, what))
    return gaps


def _clock(moment: int, *, with_date: bool) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")


def describe(gaps: Sequence[Gap]) -> str:
    """'no data from 2026-05-04 10:02:00 to 10:03:00 UTC', and the others
    (at most LISTED), for the reason."""
    parts = []
    for gap in gaps[:LISTED]:
        if gap.end is None:
            parts.append(f"{gap.what} since {_clock(gap.start, with_date=True)} UTC")
            continue
        same_day = gap.start // 86400 == gap.end // 86400
        parts.append(f"{gap.what} from {_clock(gap.start, with_date=True)} to "
                     f"{_clock(gap.end, with_date=not same_day)} UTC")
    if len(gaps) > LISTED:
        parts.append(f"{len(gaps) - LISTED} more gap{'s' if len(gaps) - LISTED > 1 else ''}")
    return ", ".join(parts)


def explain(result: list, query: SignalQuery, keys: Iterable[WorkloadKey], steps: IdleSteps) -> dict[WorkloadKey, str]:
    """Why each workload of `keys` is unknown, from the range query's
    `data.result` over `steps`: its gaps; 'no series' if it has no points;
    'no data after <the last step>' if every step has one (it went between
    the last step and the instant evaluated, which the idle query reads)."""
    history = History()
    read_matrix(history, result, query, fresh=set())
    why = {}
    for key in keys:
        points = history.points.get(key)
        if not points:
            why[key] = "no series"
            continue
        gaps = find_gaps(points, steps)
        why[key] = describe(gaps) if gaps else f"{NO_DATA} after {_clock(steps.last, with_date=True)} UTC"
    return why
