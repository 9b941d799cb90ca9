"""What one pass of the node follower changes in a paused workload's record
(`scaler.io/nodes`): each node's state and blockers as just assessed, the
time a node went and how long after the pause, the one Warning for nodes
held past a threshold, and the Event when the last node is released. All of
it one `Write`, so `pausing.Pauser` applies it guarded like any other (a
workload resumed meanwhile fails the guard, is re-read, and the write is
worked out again: to nothing) and its Event is the action recorded in the
same patch: posted exactly once across kills and failovers.

Pure: builds values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from scaler.cluster.nodes import (
    HELD,
    RELEASED,
    REUSED,
    Assessment,
    NodeRecord,
    NodesRecord,
    held_message,
    released_message,
)
from scaler.cluster.workloads import Workload
from scaler.cluster.writes import Outcome, Write
from scaler.decide.annotations import NODES
from scaler.decide.times import rfc3339

#: The Events: following ended with a node released (or its GPUs reused),
#: and nodes still held long after the pause.
RELEASED_REASON, REUSED_REASON, HELD_REASON = "NodesReleased", "NodesReused", "NodesHeld"


@dataclass(frozen=True)
class Step:
    record: NodesRecord
    #: Nodes released in this pass (scaler_node_release_seconds observes each).
    released: tuple[NodeRecord, ...] = ()
    #: (reason, type, message) of the Event this pass calls for.
    event: tuple[str, str, str] | None = None


def _seen(node: NodeRecord, seen: Assessment, *, paused_at: datetime | None, now: datetime) -> NodeRecord:
    facts = node.facts or seen.facts
    if seen.state == RELEASED:
        at = min(seen.released_at or now, now)
        after = round(max((at - paused_at).total_seconds(), 0.0), 1) if paused_at else None
        return replace(node, facts=facts, state=RELEASED, checked=True, blockers=(), blocked_by=None,
                       released_at=rfc3339(at), released_after_seconds=after)
    # A pause that saw no node (`scaler pause`: no Node cache) learns its uid at the first look.
    uid = node.uid or (seen.uid if not node.checked else None)
    if seen.state == REUSED:
        return replace(node, facts=facts, state=REUSED, checked=True, blockers=(), blocked_by=None,
                       reused_by=seen.reused_by, uid=uid)
    return replace(node, facts=facts, checked=True, blockers=tuple(b.text for b in seen.blockers),
                   blocked_by=seen.blockers[0].kind if seen.blockers else None, uid=uid)


def advance(record: NodesRecord, assessments: Mapping[str, Assessment], *, now: datetime,
            warn_after_seconds: float, on_release: Callable[[NodeRecord], NodeRecord] | None = None) -> Step:
    """The record after this pass, the nodes it released, and its Event: when
    the last node is done (released or reused), the release; else, for
    nodes held `warn_after_seconds` after the pause and not warned of yet,
    one Warning naming what holds them. `on_release` adds to a node as it is
    released what the record keeps from then on (its price: run/saving.py)."""
    paused_at = record.paused_at_datetime()
    nodes, released = [], []
    for node in record.nodes:
        seen = assessments.get(node.name)
        if node.done or seen is None:
            nodes.append(node)
            continue
        nodes.append(_seen(node, seen, paused_at=paused_at, now=now))
        if nodes[-1].state == RELEASED:
            nodes[-1] = on_release(nodes[-1]) if on_release is not None else nodes[-1]
            released.append(nodes[-1])
    after = replace(record, nodes=tuple(nodes))
    if after.done and not record.done:
        reason = RELEASED_REASON if any(n.state == RELEASED for n in after.nodes) else REUSED_REASON
        return Step(after, tuple(released), (reason, "Normal", released_message(after)))
    due = [n for n in after.nodes if n.state == HELD and n.checked and n.warned_at is None
           and paused_at is not None and (now - paused_at).total_seconds() >= warn_after_seconds]
    if not due:
        return Step(after, tuple(released))
    warned = {n.name for n in due}
    after = replace(after, nodes=tuple(replace(n, warned_at=rfc3339(now)) if n.name in warned else n
                                       for n in after.nodes))
    assert paused_at is not None
    return Step(after, tuple(released), (HELD_REASON, "Warning", held_message(due, paused_at=paused_at, now=now)))


def follow(current: Workload, assessments: Mapping[str, Assessment], *, paused_at: str, now: datetime,
           warn_after_seconds: float, on_release: Callable[[NodeRecord], NodeRecord] | None = None,
           ) -> tuple[Write, Step | None]:
    """The write one pass makes on `current` (as last read): nothing unless
    it is still paused with the record that was followed and the record
    changes. The Step says what changed."""
    record = NodesRecord.read(current.annotations, NODES)
    if current.replicas != 0 or record is None or record.paused_at != paused_at:
        return Write(None, Outcome.UNCHANGED, current.replicas, current.replicas, 0,
                     "not paused as followed any more"), None
    step = advance(record, assessments, now=now, warn_after_seconds=warn_after_seconds, on_release=on_release)
    if step.record == record:
        return Write(None, Outcome.UNCHANGED, 0, 0, 0, "nodes unchanged"), step
    reason, type_, message = step.event or (None, None, "nodes followed")
    return Write({"metadata": {"annotations": {NODES: step.record.annotation()}}}, Outcome.CHANGED, 0, 0, 0,
                 message, event=(reason, type_) if reason and type_ else None), step
