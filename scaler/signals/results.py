"""Reading a Prometheus instant-query answer: a value per workload, or None;
and the error a query that got no answer raises.

Pure, so every odd answer is tested on canned JSON. Unknown is not zero: a
NaN or ±Inf value, or a value that is not a number, makes that workload's
signal None, and a workload missing from the answer is None too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from scaler.signals.queries import SignalQuery

WorkloadKey = tuple[str, str]  # (namespace, workload name)


class QueryError(Exception):
    """A query that got no usable answer; the message is for the person
    reading. `status` is the HTTP status Prometheus answered (None: no
    answer, or an unreadable one) and `error_type` its `errorType`
    (bad_data, execution, timeout, ...): code reads these, never the text."""

    def __init__(self, message: str, *, status: int | None = None, error_type: str | None = None) -> None:
        super().__init__(message)
        self.status, self.error_type = status, error_type

    @property
    def too_big(self) -> bool:
        """Prometheus could not execute the query (422, errorType execution).
        Over a long range its sample limit ("too many samples") is the usual
        cause, and a shorter range fits under it."""
        return self.status == 422


@dataclass
class Vector:
    """A query's answer: a value per workload, or the reason there is none."""

    values: dict[WorkloadKey, float | None] = field(default_factory=dict)
    error: str | None = None
    unusable: int = 0  # series whose value was NaN, ±Inf or not a number
    unmatched: int = 0  # series without the namespace or workload label

    def get(self, key: WorkloadKey) -> float | None:
        if self.error is not None:
            return None
        return self.values.get(key)


def _value(series: dict) -> float:
    try:
        return float(series["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return math.nan


def parse_vector(result: list, query: SignalQuery) -> Vector:
    """The `data.result` list of an instant query, per workload.

    A series without both labels matches no workload and is counted as
    unmatched. Two series for one workload (the query did not aggregate by
    its labels) give the larger value, which never makes a workload look
    more idle than one of them says; an unusable one among them makes it
    unknown."""
    vector = Vector()
    for series in result if isinstance(result, list) else []:
        labels = series.get("metric") if isinstance(series, dict) else None
        labels = labels if isinstance(labels, dict) else {}
        namespace, workload = labels.get(query.namespace_label), labels.get(query.workload_label)
        if not namespace or not workload:
            vector.unmatched += 1
            continue
        key = (namespace, workload)
        value = _value(series)
        if not math.isfinite(value):
            vector.unusable += 1
            vector.values[key] = None
        elif key not in vector.values:
            vector.values[key] = value
        elif (known := vector.values[key]) is not None:
            vector.values[key] = max(known, value)
    return vector
