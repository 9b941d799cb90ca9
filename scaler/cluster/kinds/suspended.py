"""Kinds paused by their suspend switch, `spec.suspend: true`, the rest of
their spec left as it is: the batch/v1 Job, JobSet (jobset.x-k8s.io), and
Ray's RayCluster and RayJob (ray.io). Their own controllers stop the pods
while suspended and start them again when it is false.

Such a workload is one unit: 'replicas' is 1 while it runs and 0 while it
is suspended, as an InferenceService is 1 or 0 by its stop annotation. A
pause records last-replicas 1 and writes `suspend: true` in the same
guarded patch; a resume writes `suspend: false`. Its GPUs per 'replica' are
every pod it runs at once. A Job or a JobSet that completed or failed, and a
RayJob whose deployment is Complete or Failed, has finished: scaler leaves
it alone (see base.WorkloadKind.finished).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scaler.cluster.kinds.base import KindBehaviour, dig, is_true, label_selector, nest
from scaler.cluster.kube import Resource
from scaler.decide.kinds import KindName


def _count(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


@dataclass(frozen=True)
class SuspendedKind(KindBehaviour):
    """What the suspend kinds share; each says how many pods it runs at once,
    when it is Ready, and when it has finished."""

    name: str
    resource: Resource
    key: str
    size_field: tuple[str, ...] = ("spec", "suspend")
    #: Its own controller sizes it; scaler only suspends and resumes it.
    sizable: bool = False
    keda_targetable: bool = False

    @classmethod
    def named(cls, name: KindName) -> SuspendedKind:
        return cls(name.name, Resource(name.group, name.version, name.plural), name.key)

    def replicas(self, obj: dict) -> int:
        return 0 if dig(obj, self.size_field) is True else 1

    def resumed_replicas(self, obj: dict, replicas: int) -> int:
        return 1

    def ready_replicas(self, obj: dict) -> int:
        return 1 if self.replicas(obj) and self.running(obj) else 0

    def running(self, obj: dict) -> bool:
        """Every pod it runs at once is up (its status says so)."""
        raise NotImplementedError

    def scale_patch(self, obj: dict, replicas: int, *, now: datetime) -> dict:
        return nest(self.size_field, replicas == 0)

    def pod_selector(self, obj: dict) -> str | None:
        return None  # its status says when it is Ready, not when it became so

    def ready_condition_since(self, obj: dict) -> datetime | None:
        return None


def job_pods(job_spec: Any) -> list[dict]:
    """The pod specs a JobSpec runs at once: its template, `parallelism`
    times (default 1), never more than `completions`."""
    if not isinstance(job_spec, dict):
        return []
    template = dig(job_spec, ("template", "spec"))
    if not isinstance(template, dict):
        return []
    at_once = _count(job_spec.get("parallelism"), 1)
    if "completions" in job_spec and job_spec["completions"] is not None:
        at_once = min(at_once, _count(job_spec["completions"], at_once))
    return [template] * at_once


@dataclass(frozen=True)
class JobKind(SuspendedKind):
    """batch/v1 Job. Ready when its ready pods (`status.ready`, else
    `status.active`) reach the pods it should run now: `parallelism`, never
    more than the completions still to go. Finished at its Complete or
    Failed condition."""

    def pod_specs(self, obj: dict) -> list[dict]:
        return job_pods(obj.get("spec"))

    def running(self, obj: dict) -> bool:
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        wanted = _count(spec.get("parallelism"), 1)
        if spec.get("completions") is not None:
            wanted = min(wanted, _count(spec["completions"], wanted) - _count(status.get("succeeded"), 0))
        up = status.get("ready") if status.get("ready") is not None else status.get("active")
        return _count(up, 0) >= max(wanted, 1)

    def finished(self, obj: dict) -> bool:
        return is_true(obj, "Complete") or is_true(obj, "Failed")

    def pod_selector(self, obj: dict) -> str | None:
        """Its pods (the selector the API server gave it): their Ready times end a start."""
        return label_selector(dig(obj, ("spec", "selector")))


@dataclass(frozen=True)
class JobSetKind(SuspendedKind):
    """jobset.x-k8s.io JobSet: `replicas` Jobs (default 1) of each of its
    replicatedJobs. Ready when, for every replicatedJob, its ready and
    succeeded child Jobs (status.replicatedJobsStatus) reach its replicas.
    Finished at its Completed or Failed condition (or a terminalState)."""

    def pod_specs(self, obj: dict) -> list[dict]:
        pods = []
        for replicated in dig(obj, ("spec", "replicatedJobs")) or []:
            if isinstance(replicated, dict):
                pods += job_pods(dig(replicated, ("template", "spec"))) * _count(replicated.get("replicas"), 1)
        return pods

    def running(self, obj: dict) -> bool:
        replicated = [r for r in dig(obj, ("spec", "replicatedJobs")) or [] if isinstance(r, dict)]
        statuses = {s.get("name"): s for s in dig(obj, ("status", "replicatedJobsStatus")) or []
                    if isinstance(s, dict)}
        return bool(replicated) and all(
            _count(statuses.get(r.get("name"), {}).get("ready"), 0)
            + _count(statuses.get(r.get("name"), {}).get("succeeded"), 0) >= _count(r.get("replicas"), 1)
            for r in replicated)

    def finished(self, obj: dict) -> bool:
        return is_true(obj, "Completed") or is_true(obj, "Failed") or bool(dig(obj, ("status", "terminalState")))


def ray_pods(cluster_spec: Any) -> list[dict]:
    """The pod specs a RayClusterSpec runs: its head, and each worker group's
    `replicas` (else `minReplicas`, default 0) times `numOfHosts` (default 1)."""
    if not isinstance(cluster_spec, dict):
        return []
    head = dig(cluster_spec, ("headGroupSpec", "template", "spec"))
    pods = [head] if isinstance(head, dict) else []
    for group in cluster_spec.get("workerGroupSpecs") or []:
        template = dig(group, ("template", "spec"))
        if isinstance(template, dict):
            replicas = group.get("replicas") if group.get("replicas") is not None else group.get("minReplicas")
            pods += [template] * (_count(replicas, 0) * _count(group.get("numOfHosts"), 1))
    return pods


@dataclass(frozen=True)
class RayClusterKind(SuspendedKind):
    """ray.io RayCluster: a head and worker groups. Ready when its
    `status.state` is "ready". Never finishes."""

    def pod_specs(self, obj: dict) -> list[dict]:
        return ray_pods(obj.get("spec"))

    def running(self, obj: dict) -> bool:
        return dig(obj, ("status", "state")) == "ready"


@dataclass(frozen=True)
class RayJobKind(SuspendedKind):
    """ray.io RayJob: the RayCluster it creates from `rayClusterSpec` (one
    it selects instead, with clusterSelector, is not its own: no GPUs).
    Ready while its `status.jobDeploymentStatus` is Running; finished when
    that is Complete or Failed."""

    def pod_specs(self, obj: dict) -> list[dict]:
        return ray_pods(dig(obj, ("spec", "rayClusterSpec")))

    def running(self, obj: dict) -> bool:
        return dig(obj, ("status", "jobDeploymentStatus")) == "Running"

    def finished(self, obj: dict) -> bool:
        return dig(obj, ("status", "jobDeploymentStatus")) in ("Complete", "Failed")
