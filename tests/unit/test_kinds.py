"""Each kind in a table (cluster/kinds/): its size read and written, who set
it last (from the raw object and from what the watch cache keeps: the two
must agree, or the daemon and `scaler status` disagree about a GitOps
revert), its GPUs, and whether KEDA may target it."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from scaler.cluster.kinds import DEPLOYMENT, INFERENCESERVICE, STATEFULSET
from scaler.cluster.kinds.scaled import custom_kind
from scaler.decide.kinds import parse_kind

NOW = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
GPU = {"containers": [{"name": "m", "resources": {"limits": {"nvidia.com/gpu": "2"}}}]}
VLLM = custom_kind(parse_kind("vllmservers.serving.example.com/v1"), size_field=("spec", "size"))


def managed(*entries):
    return [{"manager": m, "operation": op, "time": t, "fieldsV1": fields} for m, op, t, fields in entries]


def deployment(replicas, size_fields):
    return {"metadata": {"name": "chat", "namespace": "llm", "managedFields": managed(
        ("helm", "Update", "2026-01-01T00:00:00Z", {"f:metadata": {"f:labels": {"f:app": {}}}}),
        ("argocd-controller", "Apply", "2026-01-01T00:00:02Z", size_fields),
        ("scaler", "Update", "2026-01-01T00:00:01Z", size_fields))},
        "spec": {"replicas": replicas, "template": {"spec": GPU}}, "status": {"readyReplicas": replicas}}


def vllm(size):
    obj = deployment(size, {"f:spec": {"f:size": {}}})
    obj["spec"] = {"size": size, "template": {"spec": GPU}}
    return obj


def isvc(stopped):
    obj = deployment(0, {"f:metadata": {"f:annotations": {"f:serving.kserve.io/stop": {}}}})
    obj["metadata"]["annotations"] = {"serving.kserve.io/stop": "true"} if stopped else {}
    obj["spec"] = {"predictor": {"minReplicas": 2, "model": {"resources": GPU["containers"][0]["resources"]}}}
    obj["status"] = {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:09Z"}]}
    return obj


REPLICAS = {"f:spec": {"f:replicas": {}}}
CASES = [
    # kind, object running at 3 (or its size), the pause patch, the resume-to-3 patch, GPUs per replica, KEDA
    pytest.param(DEPLOYMENT, deployment(3, REPLICAS), {"spec": {"replicas": 0}}, {"spec": {"replicas": 3}}, 2, True,
                 id="Deployment"),
    pytest.param(STATEFULSET, deployment(3, REPLICAS), {"spec": {"replicas": 0}}, {"spec": {"replicas": 3}}, 2,
                 True, id="StatefulSet"),
    pytest.param(VLLM, vllm(3), {"spec": {"size": 0}}, {"spec": {"size": 3}}, 2, False, id="custom-spec-size"),
    pytest.param(INFERENCESERVICE, isvc(False), {"metadata": {"annotations": {"serving.kserve.io/stop": "true"}}},
                 {"metadata": {"annotations": {"serving.kserve.io/stop": None}}}, 2, False, id="InferenceService"),
]


@pytest.mark.parametrize(("kind", "obj", "pause", "resume", "gpus", "keda"), CASES)
def test_a_kind_in_a_table(kind, obj, pause, resume, gpus, keda):
    running = 2 if kind is INFERENCESERVICE else 3  # a running InferenceService is its minReplicas
    assert kind.replicas(obj) == running and kind.ready_replicas(obj) == running
    assert kind.scale_patch(obj, 0, now=NOW) == pause and kind.scale_patch(obj, 3, now=NOW) == resume
    assert kind.gpus_per_replica(obj, ("nvidia.com/gpu",)) == gpus
    assert kind.keda_targetable is keda
    # Someone else's write after scaler's: theirs, on the raw object and in the cache alike.
    slim = kind.slim(copy.deepcopy(obj))
    assert kind.size_writer(obj) == kind.size_writer(slim) == "argocd-controller"
    assert [entry["manager"] for entry in slim["metadata"]["managedFields"]] == ["argocd-controller", "scaler"]


def test_the_cache_keeps_the_owners_of_a_custom_size_not_of_spec_replicas():
    """The defect issue 21 found: the cache kept only owners of spec.replicas, so a
    GitOps revert of a `.spec.size` resource looked like a person's edit."""
    obj = vllm(3)
    assert DEPLOYMENT.size_writer(DEPLOYMENT.slim(copy.deepcopy(obj))) is None  # the old, kind-blind cache
    assert VLLM.size_writer(VLLM.slim(copy.deepcopy(obj))) == "argocd-controller"


def test_a_stopped_inference_service_is_at_zero_and_not_ready():
    obj = isvc(True)
    assert (INFERENCESERVICE.replicas(obj), INFERENCESERVICE.ready_replicas(obj)) == (0, 0)
