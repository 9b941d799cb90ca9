"""One workload as read from the API server, seen through its kind
(cluster/kinds/), and the pause record scaler left on it. Everything else
(guarded patches, Events) is the same for every kind and lives in `writes`
and `pausing`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from scaler.cluster.kinds import WorkloadKind
from scaler.decide.annotations import (
    LAST_REPLICAS,
    MANUAL_PAUSE,
    PAUSE_REASON,
    PAUSED_AT,
    PAUSED_BY,
)
from scaler.decide.fields import MAX_REPLICAS
from scaler.decide.times import parse_time

DEFAULT_GPU_RESOURCES: tuple[str, ...] = ("nvidia.com/gpu",)


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
            # A count no API server takes (past int32) would fail every resume: none recorded.
            last_replicas=last if last and 0 < last <= MAX_REPLICAS else None,
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
        return self.kind.gpus_per_replica(self.obj, self.gpu_resources)

    @property
    def finished(self) -> bool:
        """Done for good (a completed Job): no evaluation reads it, no write is sent to it."""
        return self.kind.finished(self.obj)

    @property
    def size_writer(self) -> str | None:
        """Who last set its size (managedFields, as its kind reads them)."""
        return self.kind.size_writer(self.obj)

    def gpus(self, replicas: int | None = None) -> int:
        return self.gpus_per_replica() * (self.replicas if replicas is None else replicas)


def pods_ready_since(pods: list[dict]) -> datetime | None:
    """When the last of `pods` became Ready (their Ready condition), if every
    one still running (neither being deleted nor finished, as an evicted pod
    is) is Ready; None otherwise."""
    times = []
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp") or \
                (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        ready = next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"),
                     None)
        if ready is None or ready.get("status") != "True":
            return None
        since = parse_time(ready.get("lastTransitionTime"))
        if since is not None:
            times.append(since)
    return max(times) if times else None
