"""Following a pause to the nodes that held its GPUs: the record scaler keeps
on the workload (`scaler.io/nodes`), a node's facts as its object gives them,
and the sentences people read (status, Events).

The record is written in the pause's own patch (the nodes its pods ran on,
and the GPUs they held on each) and kept current by the daemon's follower
(run/following.py): each node's state (held, released, reused), what holds
it, when it was released and how long after the pause. A restart or a
failover reads it back and goes on following. Its format is documented in
docs/nodes.md; keys this version does not know are kept as read, so a later
version can add its own.

Pure: parses and builds values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from scaler.cluster.kinds.base import gpus_in_pod_spec
from scaler.decide.times import human_duration, parse_time, rfc3339

VERSION = 1
HELD, RELEASED, REUSED = "held", "released", "reused"
STATES = (HELD, RELEASED, REUSED)
#: Nodes kept per workload, blockers per node, characters per blocker: the
#: record stays far below the API server's 256 KiB for all annotations.
MAX_NODES = 64
MAX_BLOCKERS = 6
MAX_TEXT = 240

#: The labels a node's facts come from, first found wins.
INSTANCE_TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")
ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
NODEPOOL_LABEL = "karpenter.sh/nodepool"
#: The node's hourly price, as Karpenter's KWOK provider and eks-node-viewer label it (docs/savings.md).
PRICE_LABEL = "eks-node-viewer/instance-price"
CAPACITY_TYPE_LABEL = "karpenter.sh/capacity-type"
#: Other clouds' ways of saying spot or on-demand: label -> {value: capacity type}.
CAPACITY_TYPE_LABELS = {
    CAPACITY_TYPE_LABEL: None,  # the value as it is: on-demand, spot, reserved
    "eks.amazonaws.com/capacityType": {"ON_DEMAND": "on-demand", "SPOT": "spot"},
    "cloud.google.com/gke-spot": {"true": "spot"},
    "cloud.google.com/gke-provisioning": {"spot": "spot", "standard": "on-demand"},
    "kubernetes.azure.com/scalesetpriority": {"spot": "spot", "regular": "on-demand"},
}


def _first(labels: Mapping[str, str], keys: Iterable[str]) -> str | None:
    return next((labels[key] for key in keys if labels.get(key)), None)


def capacity_type(labels: Mapping[str, str]) -> str | None:
    for key, values in CAPACITY_TYPE_LABELS.items():
        value = labels.get(key)
        if value:
            return value if values is None else values.get(value)
    return None


@dataclass(frozen=True)
class NodeFacts:
    """What the bill knows a node by: its GPUs (allocatable: the KWOK
    provider's and some clouds' `capacity` is not the instance's), instance
    type, zone, capacity type and node pool."""

    gpus: int
    instance_type: str | None
    zone: str | None
    capacity_type: str | None
    node_pool: str | None
    #: Its hourly price from PRICE_LABEL (None: not labelled).
    price: float | None = None

    @classmethod
    def of(cls, node: Mapping, gpu_resources: tuple[str, ...]) -> NodeFacts:
        labels = (node.get("metadata") or {}).get("labels") or {}
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        gpus = gpus_in_pod_spec({"containers": [{"resources": {"requests": allocatable}}]}, gpu_resources)
        return cls(gpus, _first(labels, INSTANCE_TYPE_LABELS), _first(labels, ZONE_LABELS), capacity_type(labels),
                   labels.get(NODEPOOL_LABEL), _price(labels.get(PRICE_LABEL)))


def _price(value: Any) -> float | None:
    try:
        price = float(value)
    except (TypeError, ValueError):
        return None
    return price if math.isfinite(price) and price >= 0 else None


@dataclass(frozen=True)
class Blocker:
    """What keeps a node: its kind (blockers.KINDS) and the words for people."""

    kind: str
    text: str


@dataclass(frozen=True)
class Assessment:
    """Where a node is now, as one pass of the follower saw it (blockers.assess)."""

    state: str
    blockers: tuple[Blocker, ...] = ()
    facts: NodeFacts | None = None
    released_at: datetime | None = None
    reused_by: str | None = None
    #: The Node's uid as seen (a node of the same name with another uid is another machine).
    uid: str | None = None


@dataclass(frozen=True)
class NodeRecord:
    """One node a paused workload's pods ran on, as the record keeps it."""

    name: str
    #: The GPUs this workload's pods held on the node when it was paused.
    freed_gpus: int = 0
    facts: NodeFacts | None = None
    state: str = HELD
    #: False until the follower has looked at the node once.
    checked: bool = False
    blockers: tuple[str, ...] = ()
    #: The kind of the first blocker (blockers.KINDS): what the gauge counts it under.
    blocked_by: str | None = None
    released_at: str | None = None
    released_after_seconds: float | None = None
    reused_by: str | None = None
    #: When the held-node Warning was recorded (once per node and pause).
    warned_at: str | None = None
    extra: dict = field(default_factory=dict, compare=False)
    #: The Node's uid at the pause (or the follower's first look); None in
    #: records written before it was kept: the name alone then says it is there.
    uid: str | None = None

    @property
    def done(self) -> bool:
        """Released or reused: nothing more to follow."""
        return self.state in (RELEASED, REUSED)

    def as_json(self) -> dict:
        facts = self.facts
        data: dict[str, Any] = {
            **self.extra, "name": self.name, "freedGpus": self.freed_gpus,
            "gpus": facts.gpus if facts else None, "instanceType": facts.instance_type if facts else None,
            "zone": facts.zone if facts else None, "capacityType": facts.capacity_type if facts else None,
            "nodePool": facts.node_pool if facts else None, "instancePrice": facts.price if facts else None,
            "state": self.state, "checked": self.checked, "blockers": list(self.blockers),
            "blockedBy": self.blocked_by, "releasedAt": self.released_at,
            "releasedAfterSeconds": self.released_after_seconds, "reusedBy": self.reused_by,
            "warnedAt": self.warned_at, **({"uid": self.uid} if self.uid else {}),
        }
        return data

    @classmethod
    def from_json(cls, data: Mapping) -> NodeRecord | None:
        name = data.get("name")
        if not isinstance(name, str) or not name:
            return None
        known = {"name", "freedGpus", "gpus", "instanceType", "zone", "capacityType", "nodePool", "instancePrice",
                 "state", "checked", "blockers", "blockedBy", "releasedAt", "releasedAfterSeconds", "reusedBy",
                 "warnedAt", "uid"}
        gpus = _int(data.get("gpus"))
        facts = None if gpus is None else NodeFacts(gpus, _text(data.get("instanceType")), _text(data.get("zone")),
                                                    _text(data.get("capacityType")), _text(data.get("nodePool")),
                                                    _price(data.get("instancePrice")))
        state = str(data["state"]) if data.get("state") in STATES else HELD
        blockers: list = data["blockers"] if isinstance(data.get("blockers"), list) else []
        after = data.get("releasedAfterSeconds")
        return cls(name, _int(data.get("freedGpus")) or 0, facts, state, data.get("checked") is True,
                   tuple(str(b) for b in blockers), _text(data.get("blockedBy")), _text(data.get("releasedAt")),
                   float(after) if isinstance(after, int | float) else None, _text(data.get("reusedBy")),
                   _text(data.get("warnedAt")), {k: v for k, v in data.items() if k not in known},
                   _text(data.get("uid")))


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class NodesRecord:
    """What `scaler.io/nodes` holds: when the pause happened and its nodes."""

    paused_at: str
    nodes: tuple[NodeRecord, ...]
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def done(self) -> bool:
        return all(node.done for node in self.nodes)

    def paused_at_datetime(self) -> datetime | None:
        return parse_time(self.paused_at)

    def annotation(self) -> str:
        """The annotation's value: compact JSON in printable ASCII without <, >
        or & (the characters a JSON-patch `test` cannot match on the real API
        server: writes.testable), so every later write can guard it."""
        text = json.dumps({**self.extra, "v": VERSION, "pausedAt": self.paused_at,
                           "nodes": [node.as_json() for node in self.nodes]}, separators=(",", ":"))
        return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")

    @classmethod
    def read(cls, annotations: Mapping[str, str], key: str) -> NodesRecord | None:
        """The record on an object, or None (absent, or unreadable)."""
        try:
            data = json.loads(annotations.get(key) or "")
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("pausedAt"), str):
            return None
        nodes = [node for item in data.get("nodes") or [] if isinstance(item, dict)
                 and (node := NodeRecord.from_json(item)) is not None]
        return cls(data["pausedAt"], tuple(nodes), {k: v for k, v in data.items() if k not in ("v", "pausedAt",
                                                                                                 "nodes")})

    def with_node(self, node: NodeRecord) -> NodesRecord:
        return replace(self, nodes=tuple(node if old.name == node.name else old for old in self.nodes))


def record_at_pause(gpus_by_node: Mapping[str, int], *, facts: Mapping[str, NodeFacts], now: datetime,
                    uids: Mapping[str, str] | None = None) -> NodesRecord:
    """The record a pause writes: the nodes its pods ran on and the GPUs they
    held on each (the most GPUs first, at most MAX_NODES), with each node's
    facts and uid when they are known already."""
    names = sorted(gpus_by_node, key=lambda name: (-gpus_by_node[name], name))
    return NodesRecord(rfc3339(now), tuple(NodeRecord(name, gpus_by_node[name], facts.get(name),
                                                      uid=(uids or {}).get(name)) for name in names[:MAX_NODES]))


def gpus_by_node(pods: Iterable[Mapping], resources: tuple[str, ...]) -> dict[str, int]:
    """Node name -> the GPUs `pods` hold there (pods that run or wait to)."""
    found: dict[str, int] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if not node or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        found[node] = found.get(node, 0) + gpus_in_pod_spec(pod.get("spec") or {}, resources)
    return {node: gpus for node, gpus in found.items() if gpus > 0}


# What people read.

def summary(record: NodesRecord) -> str:
    """One cell of `scaler status`: `released 23s after pause`, `held: ...`."""
    nodes = record.nodes
    if not nodes:
        return "-"
    parts = []
    released = [n for n in nodes if n.state == RELEASED]
    if released:
        seconds = [n.released_after_seconds for n in released if n.released_after_seconds is not None]
        after = f" {_span(seconds)} after pause" if seconds else ""
        parts.append(f"released{after}" if len(nodes) == 1 else f"{len(released)} released{after}")
    reused = [n for n in nodes if n.state == REUSED]
    if reused:
        parts.append(f"reused by {reused[0].reused_by}" if len(nodes) == 1 else f"{len(reused)} reused")
    held = [n for n in nodes if n.state == HELD]
    if held:
        first = held[0]
        why = "; ".join(first.blockers) if first.checked else "not checked yet"
        where = "" if len(nodes) == 1 else f"{len(held)} held ({first.name}"
        parts.append(f"held: {why}" if not where else f"{where}: {why})")
    return ", ".join(parts)


def _span(seconds: list[float]) -> str:
    low, high = min(seconds), max(seconds)
    return f"{low:.0f}s" if round(low) == round(high) else f"{low:.0f}-{high:.0f}s"


def released_message(record: NodesRecord) -> str:
    """The Event when following ends: `GPU node gpu-a1 released 23 s after
    the pause; 8 GPUs off the bill`."""
    released = [n for n in record.nodes if n.state == RELEASED]
    parts = []
    if released:
        names = ", ".join(n.name for n in released)
        seconds = [n.released_after_seconds for n in released if n.released_after_seconds is not None]
        after = f" {_span(seconds).replace('s', ' s')} after the pause" if seconds else ""
        gpus = [n.facts.gpus for n in released if n.facts is not None]
        bill = (f"; {sum(gpus)} GPUs off the bill" if len(gpus) == len(released)
                else "; the node's GPUs were not seen before it went")
        parts.append(f"GPU node{'s' if len(released) > 1 else ''} {names} released{after}{bill}")
    for node in record.nodes:
        if node.state == REUSED:
            parts.append(f"GPUs on node {node.name} taken by pod {node.reused_by}")
    return "; ".join(parts)


def held_message(nodes: Iterable[NodeRecord], *, paused_at: datetime, now: datetime) -> str:
    """The Warning when nodes are still held long after the pause, naming what holds them."""
    texts = []
    for node in nodes:
        why = "; ".join(node.blockers) or "nothing found blocking it"
        texts.append(f"GPU node {node.name} still held {human_duration(max((now - paused_at).total_seconds(), 0))} "
                     f"after the pause ({node.freed_gpus} GPUs freed, not off the bill): {why}")
    return "; ".join(texts)
