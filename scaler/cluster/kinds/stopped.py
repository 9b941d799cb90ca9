"""Kinds paused by an annotation that stops them, their size left as it is:
KServe's InferenceService (serving.kserve.io/stop)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from scaler.cluster.kinds.base import KindBehaviour, dig, is_true, true_since
from scaler.cluster.kube import Resource
from scaler.decide.annotations import KSERVE_STOP


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
