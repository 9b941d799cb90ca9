"""A start's bookkeeping on the object: when it began, when every replica
was Ready, and its warm-up; what the `starting` rule and `prewarm: auto`
read, so restarts and failovers keep them.

A crash loop is one start, not many. A workload that goes NotReady again
less than RELAPSE_SECONDS after it was all Ready has relapsed: its start is
reopened (the Ready time removed, `max_startup` still counting from when it
began) and the warm-up that Ready recorded is taken back out of the history,
so a model that is Ready five seconds in every thirty is let go at
`max_startup` and its crash cycles never become its warm-up. More replicas
wanted than when it was Ready (READY_REPLICAS, written with the Ready time)
is no relapse but a new start: someone scaled it up (an HPA, a person), and
the new replicas load under its protection and have their own warm-up; a
Ready record without that count (written before it was kept) is read as
before. Warm-ups are measured to when the replicas really became Ready (the
pods' Ready condition), not to when scaler noticed.

Pure: reads annotations; the writes that record a start are in `writes`.
"""

from __future__ import annotations

from datetime import datetime

from scaler.cluster.workloads import Workload
from scaler.decide.annotations import READY_AT, READY_REPLICAS, STARTED_AT, WARM_UPS
from scaler.decide.times import parse_time, rfc3339

#: NotReady again this soon after all Ready: the same start (a crash loop,
#: or a replica that fell over while warming), not a new one. Kubernetes'
#: longest CrashLoopBackOff delay is five minutes.
RELAPSE_SECONDS = 300.0
#: A recorded warm-up matches a start's Ready within this (they are written in whole seconds).
_MATCH_SECONDS = 1.5


def warm_ups(annotations: dict) -> list[float]:
    """The recorded warm-ups, seconds, oldest first (unreadable entries dropped)."""
    values = []
    for text in (annotations.get(WARM_UPS) or "").split(","):
        try:
            value = float(text)
        except ValueError:
            continue
        if value == value and 0 <= value < 86400:  # not NaN, under a day
            values.append(value)
    return values


def open_start(workload: Workload) -> datetime | None:
    """The start recorded on `workload` that has not yet ended in all Ready."""
    started = parse_time(workload.annotations.get(STARTED_AT))
    ready = parse_time(workload.annotations.get(READY_AT))
    return started if started is not None and (ready is None or ready < started) else None


def ready_record(workload: Workload, ready: datetime) -> dict:
    """The annotations that end a start: all `workload.replicas` Ready at `ready`."""
    return {READY_AT: rfc3339(ready, round_up=True), READY_REPLICAS: str(workload.replicas)}


def _replicas_at_ready(annotations: dict) -> int | None:
    """How many replicas were wanted when the start ended (None: not recorded, or unreadable)."""
    try:
        count = int(annotations.get(READY_REPLICAS) or "")
    except ValueError:
        return None
    return count if count > 0 else None


def relapsed(workload: Workload, *, now: datetime) -> bool:
    """Running, not all Ready, all Ready less than RELAPSE_SECONDS ago, and no
    more replicas wanted than then (more: scaled up, a new start)."""
    if workload.replicas == 0 or workload.ready_replicas >= workload.replicas or open_start(workload):
        return False
    at_ready = _replicas_at_ready(workload.annotations)
    if at_ready is not None and workload.replicas > at_ready:
        return False
    ready = parse_time(workload.annotations.get(READY_AT))
    return ready is not None and 0 <= (now - ready).total_seconds() < RELAPSE_SECONDS


def relapse_cleanup(workload: Workload) -> dict:
    """The annotations that undo a relapsed start's Ready: no Ready time, and
    its warm-up out of the history (the last entry, if it is this start's)."""
    annotations = workload.annotations
    started, ready = parse_time(annotations.get(STARTED_AT)), parse_time(annotations.get(READY_AT))
    values: dict = {READY_AT: None, **({READY_REPLICAS: None} if READY_REPLICAS in annotations else {})}
    history = warm_ups(annotations)
    if started is not None and ready is not None and history \
            and abs(history[-1] - (ready - started).total_seconds()) <= _MATCH_SECONDS:
        history = history[:-1]
        values[WARM_UPS] = ",".join(f"{value:.0f}" for value in history) or None
    return values
