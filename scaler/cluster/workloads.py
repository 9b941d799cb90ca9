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
from scaler.decide.decisions import recorded_count
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
        return cls(
            # Not a count a resume can restore (a hand edit; past int32): none recorded, and
            # the resume that uses a minimum instead says why (decisions.unrestorable).
            last_replicas=recorded_count(annotations.get(LAST_REPLICAS)),
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


class NotAllReady(Exception):
    """The pods say fewer replicas are Ready than the object's status counts:
    a StatefulSet counts its terminating pods while they are still Ready (a
    resume while the paused pods drain), a status not caught up yet."""


def pods_ready_since(pods: list[dict], *, replicas: int) -> datetime | None:
    """When `replicas` of `pods` were all Ready: the latest Ready transition
    of those still running (neither finished, as an evicted pod is, nor being
    deleted); None when none runs or none says when (nothing to tell).
    Raises NotAllReady when pods run but fewer than `replicas` are Ready."""
    running, times = 0, []
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp") or \
                (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        running += 1
        ready = next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"),
                     None)
        if ready is None or ready.get("status") != "True":
            continue
        times.append(parse_time(ready.get("lastTransitionTime")))
    if running and len(times) < replicas:
        raise NotAllReady(f"{len(times)} of {replicas} replicas' pods Ready")
    known = [time for time in times if time is not None]
    return max(known) if known else None
