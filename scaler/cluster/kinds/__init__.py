"""The registry of workload kinds: one object per kind, built once. A kind's
names (spellings, group, version, plural) are the decide layer's grammar
(decide/kinds.py); everything it does is its object here. Adding a kind is
one object in one of this package's modules and its line below (see
docs/development.md)."""

from __future__ import annotations

from scaler.cluster.kinds.base import WorkloadKind
from scaler.cluster.kinds.scaled import ScaledKind, apps_kind, custom_kind
from scaler.cluster.kinds.stopped import InferenceServiceKind, NotebookKind
from scaler.cluster.kinds.suspended import JobKind, JobSetKind, RayClusterKind, RayJobKind
from scaler.decide.kinds import KindName, builtin_kind, parse_kind

DEPLOYMENT = apps_kind(builtin_kind("Deployment"))
STATEFULSET = apps_kind(builtin_kind("StatefulSet"))
INFERENCESERVICE = InferenceServiceKind()
JOB = JobKind.named(builtin_kind("Job"))
JOBSET = JobSetKind.named(builtin_kind("JobSet"))
RAYCLUSTER = RayClusterKind.named(builtin_kind("RayCluster"))
RAYJOB = RayJobKind.named(builtin_kind("RayJob"))
NOTEBOOK = NotebookKind.named(builtin_kind("Notebook"))

KINDS: dict[str, WorkloadKind] = {kind.name: kind for kind in (DEPLOYMENT, STATEFULSET, INFERENCESERVICE, JOB, JOBSET,
                                                               RAYCLUSTER, RAYJOB, NOTEBOOK)}


def resolve_kind(kind: str | KindName) -> WorkloadKind:
    """The registered kind for any spelling kinds.parse_kind accepts (it
    raises UnknownKind); a custom resource is scaled through its
    spec.replicas (cluster/discovery.py reads its /scale from the CRD)."""
    name = parse_kind(kind) if isinstance(kind, str) else kind
    if name.builtin:
        return KINDS[name.name]
    return custom_kind(name)


__all__ = ["DEPLOYMENT", "INFERENCESERVICE", "JOB", "JOBSET", "KINDS", "NOTEBOOK", "RAYCLUSTER", "RAYJOB",
           "STATEFULSET", "InferenceServiceKind", "ScaledKind", "WorkloadKind", "resolve_kind"]
