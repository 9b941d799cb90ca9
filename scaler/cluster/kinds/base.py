"""What every workload kind is, and the behaviour all of them share.

A kind is one object that owns everything about it: how to read and write
its size (an integer field, a stop annotation, a suspend switch), which
field that is (`size_field`, so the watch cache keeps exactly the
managedFields that say who set it last, and a GitOps revert is told from a
person's edit for every kind alike), whether a KEDA ScaledObject may target
it, how many GPUs one replica holds, and when it is Ready. The cache, the
writer, the reconciler, the CLI and `status` ask the kind; none of them
knows a field path of its own.

Pure: reads and builds dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from scaler.cluster.kube import Resource
from scaler.decide.reverts import replicas_writer
from scaler.decide.times import parse_time


class WorkloadKind(Protocol):
    # Read-only properties: the kinds are frozen dataclasses, and no caller sets these.
    @property
    def name(self) -> str: ...

    @property
    def key(self) -> str:
        """The identity every spelling of the kind shares (kinds.KindName.key): what policies match."""
        ...

    @property
    def resource(self) -> Resource: ...

    @property
    def sizable(self) -> bool:
        """Whether scaler may set a running workload's size (queue scale-up)."""
        ...

    @property
    def size_field(self) -> tuple[str, ...]:
        """The field a pause and a resume write (its size, or its stop or suspend switch)."""
        ...

    @property
    def keda_targetable(self) -> bool:
        """Whether a KEDA ScaledObject may target it (scaler hands it over on pause and resume)."""
        ...

    def replicas(self, obj: dict) -> int: ...

    def ready_replicas(self, obj: dict) -> int: ...

    def resumed_replicas(self, obj: dict, replicas: int) -> int:
        """The size it runs at once a resume or a wake asks for `replicas` (> 0):
        that, for a kind scaler sizes; for one it only starts (not `sizable`),
        the size its own controller gives it (a Job: 1; an InferenceService:
        its minReplicas)."""
        ...

    def scale_patch(self, obj: dict, replicas: int, *, now: datetime) -> dict:
        """The part of a merge patch that sets the replica count (0: paused);
        `now`, the write's instant, for a stop switch that records when."""
        ...

    def pod_specs(self, obj: dict) -> list[dict]:
        """The pod specs one replica runs (for counting GPUs)."""
        ...

    def gpus_per_replica(self, obj: dict, resources: tuple[str, ...]) -> int: ...

    def pod_selector(self, obj: dict) -> str | None:
        """The label selector of its pods, when its readiness is theirs."""
        ...

    def ready_condition_since(self, obj: dict) -> datetime | None:
        """When it became Ready, when the object itself says so."""
        ...

    def finished(self, obj: dict) -> bool:
        """Done for good (a Job that completed or failed): nothing to pause or
        resume. The views leave it out of every evaluation, and a write to it
        is not sent (pausing.Pauser.apply)."""
        ...

    def slim(self, obj: dict) -> dict:
        """`obj` as the watch cache keeps it (managedFields cut to the size's owners)."""
        ...

    def size_writer(self, obj: Mapping) -> str | None:
        """Who last set the size, from managedFields (a GitOps controller, a person, scaler)."""
        ...


class KindBehaviour:
    """What every kind does alike, from its `size_field` and `pod_specs`."""

    size_field: tuple[str, ...]

    def pod_specs(self, obj: dict) -> list[dict]:
        raise NotImplementedError

    def gpus_per_replica(self, obj: dict, resources: tuple[str, ...]) -> int:
        return sum(gpus_in_pod_spec(spec, resources) for spec in self.pod_specs(obj))

    def finished(self, obj: dict) -> bool:
        return False

    def slim(self, obj: dict) -> dict:
        """managedFields is often most of an object, and at ten thousand
        workloads most of the daemon's memory. Only who wrote the size is
        read: keep the entries owning `size_field`, reduced to that field."""
        meta = obj.get("metadata", {})
        entries = meta.pop("managedFields", None) or []
        owned = owned_fields(self.size_field)
        kept = [{"manager": entry.get("manager"), "operation": entry.get("operation"), "time": entry.get("time"),
                 "fieldsV1": owned}
                for entry in entries if _owns(entry.get("fieldsV1") or {}, self.size_field)]
        if kept:
            meta["managedFields"] = kept
        return obj

    def size_writer(self, obj: Mapping) -> str | None:
        return replicas_writer(obj, self.size_field)


def owned_fields(path: tuple[str, ...]) -> dict:
    """The fieldsV1 set that owns exactly `path`."""
    node: dict = {}
    for part in reversed(path):
        node = {f"f:{part}": node}
    return node


def _owns(fields: Mapping, path: tuple[str, ...]) -> bool:
    node: Any = fields
    for part in path:
        node = node.get(f"f:{part}") if isinstance(node, Mapping) else None
        if node is None:
            return False
    return True


def drop_managed_fields(obj: dict) -> dict:
    """What a cache of anything but workloads keeps: no managedFields at all."""
    obj.get("metadata", {}).pop("managedFields", None)
    return obj


class UnreadableSize(ValueError):
    """An object whose size field holds no whole number of replicas (a custom resource whose CRD
    does not type it): it is left out, named, never a failure of every other object."""


def whole_replicas(value: Any, path: tuple[str, ...]) -> int:
    """`value` of the size field `path` as a count of replicas, or UnreadableSize."""
    try:
        count = int(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else -1
    except ValueError:
        count = -1
    if count < 0:
        raise UnreadableSize(f"{'.'.join(path)} is {value!r}, not a whole number of replicas")
    return count


def dig(obj: Any, path: tuple[str, ...]) -> Any:
    found: Any = obj
    for key in path:
        if not isinstance(found, dict):
            return None
        found = found.get(key)
    return found


def nest(path: tuple[str, ...], value: Any) -> dict:
    patch = value
    for key in reversed(path):
        patch = {key: patch}
    return patch


def label_selector(selector: Any) -> str | None:
    """A LabelSelector (matchLabels, matchExpressions) as a selector string;
    None when it selects nothing we can name."""
    if not isinstance(selector, dict):
        return None
    parts = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        if operator in ("In", "NotIn"):
            parts.append(f"{key} {operator.lower()} ({','.join(values)})")
        elif operator == "Exists":
            parts.append(str(key))
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) or None


def condition(obj: dict, condition_type: str) -> dict | None:
    """The object's condition of this type, if it has one."""
    for found in dig(obj, ("status", "conditions")) or []:
        if isinstance(found, dict) and found.get("type") == condition_type:
            return found
    return None


def true_since(obj: dict, condition_type: str) -> datetime | None:
    """When `condition_type` became True, if it is True and says when."""
    found = condition(obj, condition_type)
    if found is None or found.get("status") != "True":
        return None
    return parse_time(found.get("lastTransitionTime"))


def is_true(obj: dict, condition_type: str) -> bool:
    found = condition(obj, condition_type)
    return found is not None and found.get("status") == "True"


def _quantity(value: Any) -> int:
    try:
        return int(float(str(value)))
    except ValueError:
        return 0


def gpus_in_pod_spec(spec: dict, resources: tuple[str, ...]) -> int:
    """Extended resources one pod holds: its containers' sum, or its largest
    init container if that is more (the scheduler's effective request)."""

    def held(container: dict) -> int:
        res = container.get("resources") or {}
        amounts = {**(res.get("requests") or {}), **(res.get("limits") or {})}
        return sum(_quantity(amounts[name]) for name in resources if name in amounts)

    running = sum(held(c) for c in spec.get("containers") or [])
    init = max((held(c) for c in spec.get("initContainers") or []), default=0)
    return max(running, init)
