"""Workload kinds behind one small protocol, registered by name.

A kind knows where its replica count lives, how to write a new one as part of a
merge patch, how many of its replicas are ready and where its pod template is
(for counting GPUs). Everything else (the pause record, guarded patches,
Events) is the same for every kind and lives in `pausing`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from scaler.cluster.kube import Resource
from scaler.decide.annotations import (
    KSERVE_STOP,
    LAST_REPLICAS,
    MANUAL_PAUSE,
    PAUSE_REASON,
    PAUSED_AT,
    PAUSED_BY,
)
from scaler.decide.kinds import KindName, parse_kind
from scaler.decide.times import parse_time

DEFAULT_GPU_RESOURCES: tuple[str, ...] = ("nvidia.com/gpu",)


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

    def replicas(self, obj: dict) -> int: ...

    def ready_replicas(self, obj: dict) -> int: ...

    def scale_patch(self, obj: dict, replicas: int) -> dict:
        """The part of a merge patch that sets the replica count."""
        ...

    def pod_specs(self, obj: dict) -> list[dict]:
        """The pod specs one replica runs (for counting GPUs)."""
        ...

    def pod_selector(self, obj: dict) -> str | None:
        """The label selector of its pods, when its readiness is theirs."""
        ...

    def ready_condition_since(self, obj: dict) -> datetime | None:
        """When it became Ready, when the object itself says so."""
        ...


def _dig(obj: dict, path: tuple[str, ...]) -> Any:
    found: Any = obj
    for key in path:
        if not isinstance(found, dict):
            return None
        found = found.get(key)
    return found


def _nest(path: tuple[str, ...], value) -> dict:
    patch = value
    for key in reversed(path):
        patch = {key: patch}
    return patch


@dataclass(frozen=True)
class ScaledKind:
    """A kind whose size is an integer field: Deployment, StatefulSet, or any
    custom resource with a /scale subresource (its specReplicasPath)."""

    name: str
    resource: Resource
    replicas_path: tuple[str, ...] = ("spec", "replicas")
    ready_path: tuple[str, ...] = ("status", "readyReplicas")
    template_path: tuple[str, ...] = ("spec", "template", "spec")
    default_replicas: int = 1
    sizable: bool = True
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", parse_kind(self.name).key)

    def replicas(self, obj: dict) -> int:
        value = _dig(obj, self.replicas_path)
        return self.default_replicas if value is None else int(value)

    def ready_replicas(self, obj: dict) -> int:
        return int(_dig(obj, self.ready_path) or 0)

    def scale_patch(self, obj: dict, replicas: int) -> dict:
        return _nest(self.replicas_path, replicas)

    def pod_specs(self, obj: dict) -> list[dict]:
        spec = _dig(obj, self.template_path)
        return [spec] if isinstance(spec, dict) else []

    def pod_selector(self, obj: dict) -> str | None:
        """Its pods' label selector (spec.selector), as a LIST takes it."""
        return label_selector(_dig(obj, ("spec", "selector")))

    def ready_condition_since(self, obj: dict) -> datetime | None:
        return None  # readiness is its pods'


@dataclass(frozen=True)
class StopAnnotationKind:
    """KServe InferenceService: stopped through the serving.kserve.io/stop
    annotation, which removes its pods but keeps min/max replicas as they are,
    so 'replicas' is 0 while stopped and the predictor's minReplicas (default
    1) while running."""

    name: str = "InferenceService"
    key: str = "InferenceService"
    resource: Resource = Resource("serving.kserve.io", "v1beta1", "inferenceservices")
    #: KServe sizes a running service (min/maxReplicas); scaler only stops and starts it.
    sizable: bool = False

    def replicas(self, obj: dict) -> int:
        if (_dig(obj, ("metadata", "annotations")) or {}).get(KSERVE_STOP) == "true":
            return 0
        value = _dig(obj, ("spec", "predictor", "minReplicas"))
        return 1 if value is None else max(int(value), 1)

    def ready_replicas(self, obj: dict) -> int:
        for condition in _dig(obj, ("status", "conditions")) or []:
            if condition.get("type") == "Ready" and condition.get("status") == "True":
                return self.replicas(obj)
        return 0

    def pod_selector(self, obj: dict) -> str | None:
        return None  # its Ready condition says when it became Ready

    def ready_condition_since(self, obj: dict) -> datetime | None:
        for condition in _dig(obj, ("status", "conditions")) or []:
            if condition.get("type") == "Ready" and condition.get("status") == "True":
                return parse_time(condition.get("lastTransitionTime"))
        return None

    def scale_patch(self, obj: dict, replicas: int) -> dict:
        # null deletes the key in a merge patch: a running service has no stop annotation.
        return {"metadata": {"annotations": {KSERVE_STOP: "true" if replicas == 0 else None}}}

    def pod_specs(self, obj: dict) -> list[dict]:
        predictor = _dig(obj, ("spec", "predictor")) or {}
        containers = [c for c in predictor.get("containers") or [] if isinstance(c, dict)]
        for framework_key, value in predictor.items():
            # spec.predictor.model (or a named framework) is a container spec.
            if framework_key not in ("containers", "minReplicas", "maxReplicas") and isinstance(value, dict) \
                    and "resources" in value:
                containers.append(value)
        return [{"containers": containers}] if containers else []


PODS = Resource("", "v1", "pods")
DEPLOYMENT = ScaledKind("Deployment", Resource("apps", "v1", "deployments"))
STATEFULSET = ScaledKind("StatefulSet", Resource("apps", "v1", "statefulsets"))
INFERENCESERVICE = StopAnnotationKind()

KINDS: dict[str, WorkloadKind] = {kind.name: kind for kind in (DEPLOYMENT, STATEFULSET, INFERENCESERVICE)}


def resolve_kind(kind: str | KindName) -> WorkloadKind:
    """The registered kind for any spelling kinds.parse_kind accepts (it
    raises UnknownKind); a custom resource is scaled through its spec.replicas."""
    name = parse_kind(kind) if isinstance(kind, str) else kind
    if name.builtin:
        return KINDS[name.name]
    return ScaledKind(name.name, Resource(name.group, name.version, name.plural), key=name.key)


@dataclass(frozen=True)
class PauseRecord:
    """What a pause wrote on the object: the count to restore and its story."""

    last_replicas: int | None
    paused_at: str | None
    paused_by: str | None
    reason: str | None

    @classmethod
    def from_annotations(cls, annotations: dict[str, str]) -> PauseRecord | None:
        if not any(key in annotations for key in (LAST_REPLICAS, PAUSED_AT, PAUSED_BY)):
            return None
        try:
            last = int(annotations[LAST_REPLICAS])
        except (KeyError, ValueError):
            last = None
        return cls(
            last_replicas=last if last and last > 0 else None,
            paused_at=annotations.get(PAUSED_AT),
            paused_by=annotations.get(PAUSED_BY),
            reason=annotations.get(PAUSE_REASON),
        )

    def paused_at_datetime(self) -> datetime | None:
        return parse_time(self.paused_at)


@dataclass(frozen=True)
class Workload:
    """One object of a registered kind, as read from the API server (never
    changed in place: a write's answer is a new Workload). What every pass
    reads many times is read from the object once, here."""

    kind: WorkloadKind
    obj: dict = field(repr=False)
    gpu_resources: tuple[str, ...] = DEFAULT_GPU_RESOURCES
    namespace: str = field(init=False, repr=False)
    name: str = field(init=False, repr=False)
    annotations: dict[str, str] = field(init=False, repr=False)
    replicas: int = field(init=False, repr=False)
    ready_replicas: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        meta = self.obj["metadata"]
        set_ = object.__setattr__
        set_(self, "namespace", meta.get("namespace", ""))
        set_(self, "name", meta["name"])
        set_(self, "annotations", meta.get("annotations") or {})
        set_(self, "replicas", self.kind.replicas(self.obj))
        set_(self, "ready_replicas", self.kind.ready_replicas(self.obj))

    @property
    def resource_version(self) -> str:
        return self.obj["metadata"].get("resourceVersion", "")

    @property
    def labels(self) -> dict[str, str]:
        return self.obj["metadata"].get("labels") or {}

    @property
    def record(self) -> PauseRecord | None:
        return PauseRecord.from_annotations(self.annotations)

    @property
    def manual_pause(self) -> bool:
        return self.annotations.get(MANUAL_PAUSE) == "true"

    @property
    def ref(self) -> str:
        return f"{self.kind.name}/{self.namespace}/{self.name}"

    @property
    def key(self) -> tuple[str, str, str]:
        """(kind identity, namespace, name): one object, however its kind was spelled."""
        return (self.kind.key, self.namespace, self.name)

    def gpus_per_replica(self) -> int:
        return sum(gpus_in_pod_spec(spec, self.gpu_resources) for spec in self.kind.pod_specs(self.obj))

    def gpus(self, replicas: int | None = None) -> int:
        return self.gpus_per_replica() * (self.replicas if replicas is None else replicas)


def label_selector(selector) -> str | None:
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


def pods_ready_since(pods: list[dict]) -> datetime | None:
    """When the last of `pods` became Ready (their Ready condition), if every
    one still running is Ready; None otherwise."""
    times = []
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        ready = next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"),
                     None)
        if ready is None or ready.get("status") != "True":
            return None
        since = parse_time(ready.get("lastTransitionTime"))
        if since is not None:
            times.append(since)
    return max(times) if times else None


def _quantity(value) -> int:
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
