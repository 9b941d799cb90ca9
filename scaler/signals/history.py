"""A signal's past: one range query per policy signal for a whole period,
read into each workload's points.

The replay asks Prometheus the very PromQL the daemon sends, evaluated at
every step of the period (`query_range`), so each step reads what the daemon
would have read at that instant. Prometheus refuses more than 11,000 points
per series in one answer; longer periods are split into chunks of at most
`MAX_POINTS` steps, so requests grow with periods and policies, never with
steps or workloads.

Points stay as Prometheus sent them ([unix seconds, "value"], oldest first):
reading ten million of them into floats would cost more than the replay,
which parses a value only when it changes. Unknown stays unknown: a step
without a point (a gap, or a chunk that failed, reported in
`History.errors`), NaN or ±Inf is unknown to the replay.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from scaler.signals.queries import SignalQuery
from scaler.signals.results import QueryError, WorkloadKey

#: Steps per request: Prometheus refuses (end - start) / step > 11,000, so
#: a week at one minute (10,081 steps) is one request.
MAX_POINTS = 11_000


@dataclass
class History:
    """One signal over a period: each workload's points."""

    points: dict[WorkloadKey, list] = field(default_factory=dict)
    #: one line per chunk that failed, naming its time range
    errors: list[str] = field(default_factory=list)
    #: steps no answer covers (their chunk failed): unknown for every workload
    failed_steps: int = 0
    #: those steps, as [first, last] step indexes of each chunk that failed
    failed: list[tuple[int, int]] = field(default_factory=list)
    unmatched: int = 0  # series without the namespace or workload label
    requests: int = 0


def chunks(steps: int, max_points: int = MAX_POINTS) -> list[tuple[int, int]]:
    """[first, last] step indexes of each request, inclusive, covering 0..steps-1."""
    return [(first, min(first + max_points, steps) - 1) for first in range(0, steps, max_points)]


def _larger(value: str, other: str) -> str:
    """Two series' values for one workload at one step: the larger; an
    unusable one makes the step unknown (as for instant answers)."""
    try:
        a, b = float(value), float(other)
    except (TypeError, ValueError):
        return "NaN"
    return "NaN" if not (math.isfinite(a) and math.isfinite(b)) else value if a >= b else other


def _well_formed(points: list) -> list:
    return [point for point in points if isinstance(point, list) and len(point) == 2
            and isinstance(point[0], (int, float)) and not isinstance(point[0], bool)]


def merge(points: list, more: list) -> list:
    """Two series for one workload, point by point (the query did not
    aggregate by its labels)."""
    by_time = {point[0]: point[1] for point in _well_formed(points)}
    for timestamp, value in _well_formed(more):
        by_time[timestamp] = _larger(by_time[timestamp], value) if timestamp in by_time else value
    return [[timestamp, by_time[timestamp]] for timestamp in sorted(by_time)]


def read_matrix(history: History, result: list, query: SignalQuery, *, fresh: set) -> None:
    """Add one `query_range` answer (one chunk) to `history`. `fresh` holds
    the workloads this chunk has already given points to."""
    for series in result if isinstance(result, list) else []:
        labels = series.get("metric") if isinstance(series, dict) else None
        labels = labels if isinstance(labels, dict) else {}
        namespace, workload = labels.get(query.namespace_label), labels.get(query.workload_label)
        values = series.get("values") if isinstance(series, dict) else None
        if not namespace or not workload:
            history.unmatched += 1
            continue
        key = (namespace, workload)
        points = values if isinstance(values, list) else []  # a malformed point is unknown to the replay
        known = history.points.get(key)
        if known is None:
            history.points[key] = points
        elif key in fresh:
            history.points[key] = merge(known, points)
        else:
            known.extend(points)  # the next chunk: later steps
        fresh.add(key)


RangeQuery = Callable[[SignalQuery, datetime, datetime, float], list]


SPLITS = 4  # a chunk Prometheus could not execute is halved at most this many times


def _minute(moment: datetime) -> str:
    return f"{moment.year:04d}-{moment:%m-%d %H:%M}"  # strftime's %Y writes year 1 as "1"


def fetch(query: SignalQuery, ask: RangeQuery, *, start: datetime, step_seconds: int, steps: int) -> History:
    """The signal at start, start+step, ... (steps of them), one request per chunk.

    `ask(query, first instant, last instant, step)` returns the answer's
    `data.result` or raises; a failed chunk is recorded, the others are kept.
    A chunk Prometheus could not execute (`QueryError.too_big`: its sample
    limit) is halved and asked again."""
    history = History()
    for first, last in chunks(steps):
        _fetch_chunk(history, query, ask, start, step_seconds, first, last, SPLITS)
    return history


def _fetch_chunk(history: History, query: SignalQuery, ask: RangeQuery, start: datetime, step_seconds: int,
                 first: int, last: int, splits: int) -> None:
    begin = start + timedelta(seconds=first * step_seconds)
    end = start + timedelta(seconds=last * step_seconds)
    history.requests += 1
    try:
        result = ask(query, begin, end, step_seconds)
    except Exception as error:  # noqa: BLE001 - reported per chunk; unknown, never zero
        if splits > 0 and last > first and isinstance(error, QueryError) and error.too_big:
            middle = (first + last) // 2
            _fetch_chunk(history, query, ask, start, step_seconds, first, middle, splits - 1)
            _fetch_chunk(history, query, ask, start, step_seconds, middle + 1, last, splits - 1)
            return
        history.errors.append(f"{_minute(begin)} to {_minute(end)} UTC: {error}")
        history.failed_steps += last - first + 1
        history.failed.append((first, last))
        return
    read_matrix(history, result, query, fresh=set())
