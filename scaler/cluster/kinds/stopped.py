"""Kinds paused by an annotation that stops them, their size left as it is:
KServe's InferenceService (serving.kserve.io/stop) and Kubeflow's Notebook
(kubeflow-resource-stopped)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from scaler.cluster.kinds.base import KindBehaviour, dig, is_true, true_since
from scaler.cluster.kube import Resource
from scaler.decide.annotations import KSERVE_STOP
from scaler.decide.kinds import KindName
from scaler.decide.times import rfc3339

#: Kubeflow's stop switch: while it is there (whatever its value; Kubeflow
#: writes the time it was set), the notebook controller keeps the
#: Notebook's StatefulSet at 0.
KUBEFLOW_STOPPED = "kubeflow-resource-stopped"


@dataclass(frozen=True)
class InferenceServiceKind(KindBehaviour):
    """Stopping removes its pods but keeps min/max replicas as they are, so
    'replicas' is 0 while stopped and the predictor's minReplicas (default 1)
    while running. Who set the size is who last wrote the stop annotation
    (a GitOps tool that applies `serving.kserve.io/stop: "false"` from Git)."""

    name: str = "InferenceService"
    key: str = "InferenceService"
    resource: Resource = Resource("serving.kserve.io", "v1beta1", "inferenceservices")
    size_field: tuple[str, ...] = ("metadata", "annotations", KSERVE_STOP)
    #: KServe sizes a running service (min/maxReplicas); scaler only stops and starts it.
    sizable: bool = False
    keda_targetable: bool = False

    def replicas(self, obj: dict) -> int:
        if (dig(obj, ("metadata", "annotations")) or {}).get(KSERVE_STOP) == "true":
            return 0
        return self.resumed_replicas(obj, 1)

    def resumed_replicas(self, obj: dict, replicas: int) -> int:
        value = dig(obj, ("spec", "predictor", "minReplicas"))
        return 1 if value is None else max(int(value), 1)

    def ready_replicas(self, obj: dict) -> int:
        return self.replicas(obj) if is_true(obj, "Ready") else 0

    def pod_selector(self, obj: dict) -> str | None:
        return None  # its Ready condition says when it became Ready

    def ready_condition_since(self, obj: dict) -> datetime | None:
        return true_since(obj, "Ready")

    def scale_patch(self, obj: dict, replicas: int, *, now: datetime) -> dict:
        # null deletes the key in a merge patch: a running service has no stop annotation.
        return {"metadata": {"annotations": {KSERVE_STOP: "true" if replicas == 0 else None}}}

    def pod_specs(self, obj: dict) -> list[dict]:
        predictor = dig(obj, ("spec", "predictor")) or {}
        containers = [c for c in predictor.get("containers") or [] if isinstance(c, dict)]
        for framework_key, value in predictor.items():
            # spec.predictor.model (or a named framework) is a container spec.
            if framework_key not in ("containers", "minReplicas", "maxReplicas") and isinstance(value, dict) \
                    and "resources" in value:
                containers.append(value)
        return [{"containers": containers}] if containers else []


@dataclass(frozen=True)
class NotebookKind(KindBehaviour):
    """Kubeflow's Notebook (kubeflow.org/v1): one server, so 'replicas' is 1
    running and 0 while `kubeflow-resource-stopped` is set, as Kubeflow's own
    culler and web apps stop it. A pause sets the annotation to the time
    (Kubeflow's convention), a resume removes it. Ready when its
    `status.readyReplicas` is 1 or more, since its Ready condition (the
    controller copies the pod's). Who set the size is who last wrote the
    annotation (the web app's Start button, a GitOps tool)."""

    name: str
    resource: Resource
    key: str
    size_field: tuple[str, ...] = ("metadata", "annotations", KUBEFLOW_STOPPED)
    #: Kubeflow runs one server per Notebook; scaler only stops and starts it.
    sizable: bool = False
    keda_targetable: bool = False

    @classmethod
    def named(cls, name: KindName) -> NotebookKind:
        return cls(name.name, Resource(name.group, name.version, name.plural), name.key)

    def replicas(self, obj: dict) -> int:
        return 0 if KUBEFLOW_STOPPED in (dig(obj, ("metadata", "annotations")) or {}) else 1

    def resumed_replicas(self, obj: dict, replicas: int) -> int:
        return 1

    def ready_replicas(self, obj: dict) -> int:
        ready = dig(obj, ("status", "readyReplicas"))
        return 1 if self.replicas(obj) and isinstance(ready, int) and ready >= 1 else 0

    def pod_selector(self, obj: dict) -> str | None:
        return None  # its Ready condition says when it became Ready

    def ready_condition_since(self, obj: dict) -> datetime | None:
        return true_since(obj, "Ready")

    def scale_patch(self, obj: dict, replicas: int, *, now: datetime) -> dict:
        # null deletes the key in a merge patch: a running notebook has no stop annotation.
        return {"metadata": {"annotations": {KUBEFLOW_STOPPED: rfc3339(now) if replicas == 0 else None}}}

    def pod_specs(self, obj: dict) -> list[dict]:
        spec = dig(obj, ("spec", "template", "spec"))
        return [spec] if isinstance(spec, dict) else []
