"""The KEDA hand-over: a ScaledObject aimed at a workload scaler pauses would
scale it back up, so it is paused at 0 with KEDA's own annotation while
scaler holds the workload, and handed back on resume. A paused-replicas value
someone had set before (their own KEDA pause) is kept beside it and put back.

Pure: `pausing.Pauser` lists the ScaledObjects and sends these patches."""

from __future__ import annotations

from scaler.cluster.kube import Resource
from scaler.cluster.workloads import Workload
from scaler.decide.annotations import KEDA_BEFORE, KEDA_PAUSED_REPLICAS

SCALED_OBJECTS = Resource("keda.sh", "v1alpha1", "scaledobjects")
PAUSED = "0"


def scaled_objects_for(workload: Workload, scaled_objects: list[dict]) -> list[dict]:
    """The KEDA ScaledObjects (from a namespace's list) aimed at `workload`."""
    if not workload.kind.keda_targetable:
        return []
    targets = []
    for item in scaled_objects:
        ref = (item.get("spec") or {}).get("scaleTargetRef") or {}
        if ref.get("name") == workload.name and ref.get("kind", "Deployment") == workload.kind.name:
            targets.append(item)
    return targets


def keda_hand_over(targets: list[dict], *, paused: bool) -> list[tuple[str, dict]]:
    """(name, merge patch) per ScaledObject to change: to pause, paused-replicas
    0 and what it held before (`KEDA_BEFORE`); to hand back, that value again
    (or none). A 0 with no `KEDA_BEFORE` beside it is left as it is to pause
    and removed on hand back, as an older scaler that set it did (so a
    person's own 0 is not kept: docs/gitops.md). Any other value is theirs."""
    writes = []
    for scaled_object in targets:
        annotations = scaled_object["metadata"].get("annotations") or {}
        value, before = annotations.get(KEDA_PAUSED_REPLICAS), annotations.get(KEDA_BEFORE)
        if paused and value != PAUSED:
            change = {KEDA_PAUSED_REPLICAS: PAUSED, KEDA_BEFORE: value or ""}
        elif not paused and before is not None:  # and a value set since scaler's 0 stays
            change = {KEDA_BEFORE: None, **({KEDA_PAUSED_REPLICAS: before or None} if value == PAUSED else {})}
        elif not paused and value == PAUSED:
            change = {KEDA_PAUSED_REPLICAS: None}
        else:
            continue
        writes.append((scaled_object["metadata"]["name"], {"metadata": {"annotations": change}}))
    return writes
