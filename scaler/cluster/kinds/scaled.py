"""Kinds whose size is an integer field: Deployment, StatefulSet, and any
custom resource with a /scale subresource (its specReplicasPath, read from
its CRD by cluster/discovery.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from scaler.cluster.kinds.base import KindBehaviour, dig, label_selector, nest, whole_replicas
from scaler.cluster.kube import Resource
from scaler.decide.kinds import KindName, parse_kind


@dataclass(frozen=True)
class ScaledKind(KindBehaviour):
    name: str
    resource: Resource
    size_field: tuple[str, ...] = ("spec", "replicas")
    ready_path: tuple[str, ...] = ("status", "readyReplicas")
    template_path: tuple[str, ...] = ("spec", "template", "spec")
    default_replicas: int = 1
    sizable: bool = True
    #: KEDA's ScaledObjects target Deployments and StatefulSets (and custom resources, but
    #: scaler hands over only the built-in apps kinds it knows KEDA scales).
    keda_targetable: bool = False
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", parse_kind(self.name).key)

    def replicas(self, obj: dict) -> int:
        value = dig(obj, self.size_field)
        return self.default_replicas if value is None else whole_replicas(value, self.size_field)

    def ready_replicas(self, obj: dict) -> int:
        return int(dig(obj, self.ready_path) or 0)

    def resumed_replicas(self, obj: dict, replicas: int) -> int:
        return replicas

    def scale_patch(self, obj: dict, replicas: int, *, now: datetime) -> dict:
        return nest(self.size_field, replicas)

    def pod_specs(self, obj: dict) -> list[dict]:
        spec = dig(obj, self.template_path)
        return [spec] if isinstance(spec, dict) else []

    def pod_selector(self, obj: dict) -> str | None:
        """Its pods' label selector (spec.selector), as a LIST takes it."""
        return label_selector(dig(obj, ("spec", "selector")))

    def ready_condition_since(self, obj: dict) -> datetime | None:
        return None  # readiness is its pods'


def apps_kind(name: KindName) -> ScaledKind:
    return ScaledKind(name.name, Resource(name.group, name.version, name.plural), keda_targetable=True)


def custom_kind(name: KindName, *, size_field: tuple[str, ...] = ("spec", "replicas"),
                ready_path: tuple[str, ...] = ("status", "readyReplicas")) -> ScaledKind:
    """A custom resource scaled where its /scale subresource says."""
    return ScaledKind(name.name, Resource(name.group, name.version, name.plural), size_field=size_field,
                      ready_path=ready_path, key=name.key)
