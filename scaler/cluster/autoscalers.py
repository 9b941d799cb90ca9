"""What the node autoscalers say about a node, read from their own objects:
Karpenter (its NodePools' disruption settings and budgets, its
DisruptionBlocked and Unconsolidatable Events) and cluster-autoscaler (its
annotations and its status ConfigMap, in the YAML document of 1.30 and later
or the text of earlier versions). Neither publishes "why is this node still
here" as one field: Karpenter says it in an Event (deduplicated per node for
two minutes: docs/karpenter.md), cluster-autoscaler in its logs and metrics,
so what can be read from objects is read here and the rest is named as
"waiting".

Pure: reads dicts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import yaml

from scaler.decide.cron import LocalCron
from scaler.decide.times import parse_time
from scaler.decide.wallclock import WindowError

DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
NODEPOOL_LABEL = "karpenter.sh/nodepool"
KARPENTER_DISRUPTED_TAINT = "karpenter.sh/disrupted"
KARPENTER_REASONS = ("DisruptionBlocked", "Unconsolidatable")
SCALE_DOWN_DISABLED = "cluster-autoscaler.kubernetes.io/scale-down-disabled"
SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"
CA_DELETING_TAINT = "ToBeDeletedByClusterAutoscaler"
#: Where cluster-autoscaler writes its status, by default (--status-config-map-name, in its namespace).
CA_STATUS = "kube-system/cluster-autoscaler-status"


def karpenter_managed(node: Mapping) -> bool:
    """Launched by Karpenter: its NodePool label, or owned by a NodeClaim."""
    meta = node.get("metadata") or {}
    return bool((meta.get("labels") or {}).get(NODEPOOL_LABEL)) or any(
        ref.get("kind") == "NodeClaim" for ref in meta.get("ownerReferences") or [])


def being_removed(node: Mapping) -> str | None:
    """Who is removing the node, if someone visibly is."""
    taints = {taint.get("key") for taint in (node.get("spec") or {}).get("taints") or []}
    if KARPENTER_DISRUPTED_TAINT in taints:
        return "Karpenter is removing it"
    if CA_DELETING_TAINT in taints:
        return "cluster-autoscaler is removing it"
    if (node.get("metadata") or {}).get("deletionTimestamp"):
        return "it is being deleted"
    return None


_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GO_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(text: str) -> float | None:
    """Seconds of a Go duration (`90s`, `1h30m`, `1.5h`), as Karpenter
    parses it; None if it is not one or not positive."""
    parts = _GO_DURATION.findall(text)
    if not text or "".join(number + unit for number, unit in parts) != text:
        return None
    seconds = sum(float(number) * _GO_UNIT_SECONDS[unit] for number, unit in parts)
    return seconds if seconds > 0 else None


def do_not_disrupt(pod: Mapping, *, now: datetime) -> str | None:
    """How a pod's `karpenter.sh/do-not-disrupt` holds its node now, in
    words, or None. Karpenter v1 takes `"true"`, or a duration (`"5m"`) that
    holds while the pod is younger than it (from its start; no start: it
    holds); any other value holds nothing (Karpenter ignores it too)."""
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(DO_NOT_DISRUPT)
    if value == "true":
        return f"has {DO_NOT_DISRUPT}"
    seconds = go_duration(value) if isinstance(value, str) else None
    if seconds is None:
        return None
    started = parse_time((pod.get("status") or {}).get("startTime"))
    if started is None:
        return f'has {DO_NOT_DISRUPT}: "{value}"'
    until = started + timedelta(seconds=seconds)
    return f'has {DO_NOT_DISRUPT}: "{value}" (until {until:%Y-%m-%dT%H:%M:%SZ})' if now < until else None


def event_time(event: Mapping) -> datetime | None:
    """When an Event last happened: its series, lastTimestamp, eventTime or creation."""
    for value in ((event.get("series") or {}).get("lastObservedTime"), event.get("lastTimestamp"),
                  event.get("eventTime"), event.get("firstTimestamp"),
                  (event.get("metadata") or {}).get("creationTimestamp")):
        when = parse_time(value) if isinstance(value, str) else None
        if when is not None:
            return when
    return None


def karpenter_says(events: Iterable[Mapping], *, since: datetime) -> str | None:
    """Karpenter's latest word on why it does not disrupt the node
    (DisruptionBlocked, Unconsolidatable), said at or after `since`."""
    latest: tuple[datetime, str] | None = None
    for event in events:
        when = event_time(event)
        if event.get("reason") not in KARPENTER_REASONS or when is None or when < since:
            continue
        if latest is None or when >= latest[0]:
            latest = (when, str(event.get("message") or event.get("reason")))
    return None if latest is None else latest[1]


def _zero(value: object) -> bool:
    text = str(value).strip()
    return text in ("0", "0%")


#: robfig/cron's descriptors, which Karpenter's budget schedules accept, as standard cron.
_CRON_DESCRIPTORS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                     "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}


def budget_active(budget: Mapping, *, now: datetime) -> tuple[bool, datetime | None]:
    """Whether a NodePool disruption budget applies now, as Karpenter's
    Budget.IsActive has it: always without a schedule; with one (cron, in
    UTC) and a duration, from each time the schedule fires for that long.
    (True, its end) while a scheduled one runs; (True, None) when it always
    applies or its schedule cannot be read here (then it may apply)."""
    schedule, duration = budget.get("schedule"), budget.get("duration")
    if not schedule:
        return True, None
    seconds = go_duration(duration) if isinstance(duration, str) else None
    fields = _CRON_DESCRIPTORS.get(str(schedule).strip(), str(schedule)).replace("?", "*").split()
    # Day of month and day of week both restricted: either one fires (standard cron, robfig/cron).
    either = [fields] if len(fields) != 5 or "*" in (fields[2], fields[4]) else \
        [[*fields[:4], "*"], [*fields[:2], "*", fields[3], fields[4]]]
    try:
        crons = [LocalCron(" ".join(parts), ZoneInfo("UTC")) for parts in either]
    except WindowError:
        return True, None
    if seconds is None:
        return True, None
    fired = max((at for cron in crons if (at := cron.last_at_or_before(now)) is not None), default=None)
    if fired is None or fired + timedelta(seconds=seconds) <= now:
        return False, None
    return True, fired + timedelta(seconds=seconds)


def nodepool_holds(pool: Mapping, *, empty: bool, now: datetime) -> list[str]:
    """What in a NodePool keeps Karpenter from removing its node: a budget
    of zero nodes (always, or while its schedule runs), consolidation
    switched off (consolidateAfter: Never), or a policy that only
    consolidates empty nodes while this one is not empty."""
    name = (pool.get("metadata") or {}).get("name", "?")
    disruption = (pool.get("spec") or {}).get("disruption") or {}
    found = []
    if str(disruption.get("consolidateAfter")) == "Never":
        found.append(f"NodePool {name} has consolidateAfter: Never (Karpenter never consolidates its nodes)")
    if disruption.get("consolidationPolicy") == "WhenEmpty" and not empty:
        found.append(f"NodePool {name} consolidates only empty nodes (consolidationPolicy: WhenEmpty)")
    for budget in disruption.get("budgets") or []:
        reasons = budget.get("reasons")
        if not _zero(budget.get("nodes", "10%")) or (reasons and not {"Empty", "Underutilized"} & set(reasons)):
            continue
        active, until = budget_active(budget, now=now)
        if not active:
            continue
        when = (f" during '{budget['schedule']}' for {budget.get('duration', '?')}" if budget.get("schedule")
                else "") + (f" (until {until:%Y-%m-%dT%H:%M:%SZ})" if until else "")
        found.append(f"NodePool {name} has a disruption budget of nodes: {budget.get('nodes')}{when}")
    return found


@dataclass(frozen=True)
class NodeGroup:
    """One cluster-autoscaler node group, as its status ConfigMap gives it."""

    name: str
    min_size: int | None
    max_size: int | None
    target: int | None

    @property
    def at_minimum(self) -> bool:
        return self.min_size is not None and self.target is not None and self.target <= self.min_size


@dataclass(frozen=True)
class AutoscalerStatus:
    """cluster-autoscaler's status ConfigMap: it runs, and its node groups."""

    groups: tuple[NodeGroup, ...]

    def group_of(self, node: Mapping) -> NodeGroup | None:
        """The node group a node belongs to: the group whose name is one of
        the node's label values (the clouds' node group labels carry it), or
        ends with "/" and one (a group named by URL)."""
        values = {v for v in ((node.get("metadata") or {}).get("labels") or {}).values() if len(v) > 2}
        return next((g for g in self.groups if g.name in values or g.name.rsplit("/", 1)[-1] in values), None)


def _number(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


_LEGACY_SIZES = re.compile(r"cloudProviderTarget=(\d+)\s*\(minSize=(\d+),\s*maxSize=(\d+)\)")


def read_autoscaler_status(configmap: Mapping) -> AutoscalerStatus:
    """The status ConfigMap's `status` key: cluster-autoscaler 1.30 and later
    write a YAML document (nodeGroups[].health.{cloudProviderTarget, minSize,
    maxSize}); earlier versions a text block ("Name: ... Health: Healthy (...
    cloudProviderTarget=1 (minSize=1, maxSize=5))"). Anything else: a
    status with no groups (cluster-autoscaler runs; its groups are unknown)."""
    text = str((configmap.get("data") or {}).get("status") or "")
    try:
        document = yaml.safe_load(text) if "autoscalerStatus:" in text else None
    except yaml.YAMLError:
        document = None
    if isinstance(document, dict):
        groups = []
        for item in document.get("nodeGroups") or []:
            if isinstance(item, dict) and item.get("name"):
                health: dict = item["health"] if isinstance(item.get("health"), dict) else {}
                groups.append(NodeGroup(str(item["name"]), _number(health.get("minSize")),
                                        _number(health.get("maxSize")), _number(health.get("cloudProviderTarget"))))
        return AutoscalerStatus(tuple(groups))
    groups, name = [], None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("Name:"):
            name = stripped.removeprefix("Name:").strip()
        elif stripped.startswith("Health:") and name:
            sizes = _LEGACY_SIZES.search(stripped)
            target, low, high = (int(v) for v in sizes.groups()) if sizes else (None, None, None)
            groups.append(NodeGroup(name, low, high, target))
            name = None
    return AutoscalerStatus(tuple(groups))
