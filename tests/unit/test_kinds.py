"""Each kind in a table (cluster/kinds/): its size read and written, who set
it last (from the raw object and from what the watch cache keeps: the two
must agree, or the daemon and `scaler status` disagree about a GitOps
revert), its GPUs, and whether KEDA may target it. Then what each kind has
of its own: when it is Ready, when it has finished, how its GPUs add up."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from scaler.cluster import writes
from scaler.cluster.kinds import (
    DEPLOYMENT,
    INFERENCESERVICE,
    JOB,
    JOBSET,
    NOTEBOOK,
    RAYCLUSTER,
    RAYJOB,
    STATEFULSET,
)
from scaler.cluster.kinds.scaled import custom_kind
from scaler.cluster.workloads import Workload
from scaler.decide.annotations import LAST_REPLICAS
from scaler.decide.kinds import parse_kind

NOW = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
GPU = {"containers": [{"name": "m", "resources": {"limits": {"nvidia.com/gpu": "2"}}}]}
CPU = {"containers": [{"name": "m", "resources": {"limits": {"cpu": "4"}}}]}
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


def suspendable(spec, status):
    obj = deployment(0, {"f:spec": {"f:suspend": {}}})
    obj["spec"], obj["status"] = {"suspend": False, **spec}, status
    return obj


def job(**status):
    return suspendable({"parallelism": 2, "completions": 4, "template": {"spec": GPU},
                        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}},
                       status or {"active": 2, "ready": 2, "succeeded": 1})


def jobset(**status):
    workers = {"name": "workers", "replicas": 2, "template": {"spec": {"parallelism": 2, "template": {"spec": GPU}}}}
    driver = {"name": "driver", "template": {"spec": {"template": {"spec": CPU}}}}
    return suspendable({"replicatedJobs": [workers, driver]},
                       status or {"replicatedJobsStatus": [{"name": "workers", "ready": 2},
                                                           {"name": "driver", "ready": 0, "succeeded": 1}]})


RAY_CLUSTER_SPEC = {"headGroupSpec": {"template": {"spec": CPU}}, "workerGroupSpecs": [
    {"groupName": "gpu", "replicas": 3, "minReplicas": 1, "numOfHosts": 2, "template": {"spec": GPU}},
    {"groupName": "spare", "minReplicas": 1, "template": {"spec": GPU}}]}


def raycluster(**status):
    return suspendable(copy.deepcopy(RAY_CLUSTER_SPEC), status or {"state": "ready"})


def rayjob(**status):
    return suspendable({"entrypoint": "python train.py", "rayClusterSpec": copy.deepcopy(RAY_CLUSTER_SPEC)},
                       status or {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})


def notebook(stopped=None):
    obj = deployment(0, {"f:metadata": {"f:annotations": {"f:kubeflow-resource-stopped": {}}}})
    obj["metadata"]["annotations"] = {} if stopped is None else {"kubeflow-resource-stopped": stopped}
    obj["spec"] = {"template": {"spec": GPU}}
    obj["status"] = {"readyReplicas": 1, "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:09Z"}]}
    return obj


STOPPED = "kubeflow-resource-stopped"
REPLICAS = {"f:spec": {"f:replicas": {}}}
SUSPEND, RESUME = {"spec": {"suspend": True}}, {"spec": {"suspend": False}}
CASES = [
    # kind, object running (at 3 if it has a size), its size, the pause patch, the resume-to-3 patch,
    # GPUs per replica, KEDA
    pytest.param(DEPLOYMENT, deployment(3, REPLICAS), 3, {"spec": {"replicas": 0}}, {"spec": {"replicas": 3}}, 2,
                 True, id="Deployment"),
    pytest.param(STATEFULSET, deployment(3, REPLICAS), 3, {"spec": {"replicas": 0}}, {"spec": {"replicas": 3}}, 2,
                 True, id="StatefulSet"),
    pytest.param(VLLM, vllm(3), 3, {"spec": {"size": 0}}, {"spec": {"size": 3}}, 2, False, id="custom-spec-size"),
    # a running InferenceService is its minReplicas
    pytest.param(INFERENCESERVICE, isvc(False), 2, {"metadata": {"annotations": {"serving.kserve.io/stop": "true"}}},
                 {"metadata": {"annotations": {"serving.kserve.io/stop": None}}}, 2, False, id="InferenceService"),
    # a running suspend kind is one unit: its GPUs are every pod it runs at once
    pytest.param(JOB, job(), 1, SUSPEND, RESUME, 2 * 2, False, id="Job"),
    pytest.param(JOBSET, jobset(), 1, SUSPEND, RESUME, 2 * 2 * 2, False, id="JobSet"),
    pytest.param(RAYCLUSTER, raycluster(), 1, SUSPEND, RESUME, 3 * 2 * 2 + 1 * 2, False, id="RayCluster"),
    pytest.param(RAYJOB, rayjob(), 1, SUSPEND, RESUME, 3 * 2 * 2 + 1 * 2, False, id="RayJob"),
    # a notebook is one server; its stop annotation records when (Kubeflow's convention)
    pytest.param(NOTEBOOK, notebook(), 1, {"metadata": {"annotations": {STOPPED: "2026-01-01T09:00:00Z"}}},
                 {"metadata": {"annotations": {STOPPED: None}}}, 2, False, id="Notebook"),
]


@pytest.mark.parametrize(("kind", "obj", "running", "pause", "resume", "gpus", "keda"), CASES)
def test_a_kind_in_a_table(kind, obj, running, pause, resume, gpus, keda):
    assert kind.replicas(obj) == running and kind.ready_replicas(obj) == running
    assert kind.scale_patch(obj, 0, now=NOW) == pause and kind.scale_patch(obj, 3, now=NOW) == resume
    assert kind.gpus_per_replica(obj, ("nvidia.com/gpu",)) == gpus
    assert kind.keda_targetable is keda
    assert not kind.finished(obj)
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


SUSPEND_KINDS = [pytest.param(kind, make, id=kind.name)
                 for kind, make in ((JOB, job), (JOBSET, jobset), (RAYCLUSTER, raycluster), (RAYJOB, rayjob))]


@pytest.mark.parametrize(("kind", "make"), SUSPEND_KINDS)
def test_a_suspended_workload_is_at_zero_and_not_ready_and_still_counts_its_gpus(kind, make):
    obj = make()
    obj["spec"]["suspend"] = True
    assert (kind.replicas(obj), kind.ready_replicas(obj)) == (0, 0)
    assert kind.gpus_per_replica(obj, ("nvidia.com/gpu",)) > 0  # what a resume claims
    del obj["spec"]["suspend"]  # never suspended: running
    assert kind.replicas(obj) == 1


@pytest.mark.parametrize(("kind", "obj", "ready"), [
    pytest.param(JOB, job(active=2), True, id="job-active-when-ready-is-not-reported"),
    pytest.param(JOB, job(active=2, ready=1), False, id="job-one-of-two-ready"),
    pytest.param(JOB, job(ready=1, succeeded=3), True, id="job-one-completion-to-go-one-ready"),
    pytest.param(JOB, job(ready=0, active=0), False, id="job-no-pods-yet"),
    pytest.param(JOBSET, jobset(replicatedJobsStatus=[{"name": "workers", "ready": 1}]), False,
                 id="jobset-a-replicated-job-short"),
    pytest.param(JOBSET, jobset(replicatedJobsStatus=[{"name": "workers", "ready": 2}]), False,
                 id="jobset-a-replicated-job-not-reported"),
    pytest.param(JOBSET, jobset(replicatedJobsStatus=[{"name": "workers", "ready": 1, "succeeded": 1},
                                                     {"name": "driver", "ready": 1}]), True,
                 id="jobset-succeeded-jobs-count"),
    pytest.param(RAYCLUSTER, raycluster(state="unhealthy"), False, id="raycluster-not-ready"),
    pytest.param(RAYJOB, rayjob(jobDeploymentStatus="Initializing"), False, id="rayjob-initializing"),
])
def test_readiness(kind, obj, ready):
    assert kind.ready_replicas(obj) == (1 if ready else 0)


def condition(kind, status="True"):
    return {"conditions": [{"type": kind, "status": status, "lastTransitionTime": "2026-01-01T00:00:09Z"}]}


@pytest.mark.parametrize(("kind", "obj", "finished"), [
    pytest.param(JOB, job(**condition("Complete")), True, id="job-complete"),
    pytest.param(JOB, job(**condition("Failed")), True, id="job-failed"),
    pytest.param(JOB, job(**condition("Suspended")), False, id="job-suspended"),
    pytest.param(JOB, job(**condition("Complete", "False")), False, id="job-not-complete"),
    pytest.param(JOBSET, jobset(**condition("Completed")), True, id="jobset-completed"),
    pytest.param(JOBSET, jobset(terminalState="Failed"), True, id="jobset-terminal-state"),
    pytest.param(JOBSET, jobset(**condition("Suspended")), False, id="jobset-suspended"),
    pytest.param(RAYJOB, rayjob(jobDeploymentStatus="Complete"), True, id="rayjob-complete"),
    pytest.param(RAYJOB, rayjob(jobDeploymentStatus="Failed"), True, id="rayjob-failed"),
    pytest.param(RAYJOB, rayjob(jobDeploymentStatus="Suspended"), False, id="rayjob-suspended"),
    pytest.param(RAYCLUSTER, raycluster(state="failed"), False, id="raycluster-never-finishes"),
])
def test_finished(kind, obj, finished):
    assert kind.finished(obj) is finished


@pytest.mark.parametrize(("kind", "spec", "gpus"), [
    pytest.param(JOB, {"template": {"spec": GPU}}, 2, id="job-parallelism-defaults-to-1"),
    pytest.param(JOB, {"parallelism": 4, "completions": 3, "template": {"spec": GPU}}, 3 * 2,
                 id="job-never-more-pods-than-completions"),
    pytest.param(JOB, {"parallelism": 0, "template": {"spec": GPU}}, 0, id="job-parallelism-0"),
    pytest.param(JOBSET, {"replicatedJobs": [{"name": "w", "template": {"spec": {"template": {"spec": GPU}}}}]}, 2,
                 id="jobset-replicas-default-to-1"),
    pytest.param(RAYCLUSTER, {"headGroupSpec": {"template": {"spec": GPU}},
                              "workerGroupSpecs": [{"groupName": "w", "template": {"spec": GPU}}]}, 2,
                 id="raycluster-head-only-when-workers-are-0"),
    pytest.param(RAYJOB, {"clusterSelector": {"ray.io/cluster": "shared"}}, 0, id="rayjob-on-someone-elses-cluster"),
])
def test_gpus_are_every_pod_it_runs_at_once(kind, spec, gpus):
    assert kind.gpus_per_replica({"spec": spec}, ("nvidia.com/gpu",)) == gpus


@pytest.mark.parametrize(("kind", "make"), SUSPEND_KINDS)
def test_a_pause_suspends_and_records_one_a_resume_unsuspends_in_guarded_patches(kind, make):
    running = Workload(kind, make())
    gpus = running.gpus_per_replica()
    pause = writes.pause(running, by="policy/nights", reason="night", cause="keep-down-window", now=NOW)
    assert pause.patch["spec"] == {"suspend": True} and pause.patch["metadata"]["annotations"][LAST_REPLICAS] == "1"
    assert pause.message == f"scaled to zero from 1 replicas by policy/nights: night; {gpus} GPUs freed"
    operations = writes.json_patch(pause.patch, running)
    assert {"op": "test", "path": "/spec/suspend", "value": False} in operations
    assert {"op": "add", "path": "/spec/suspend", "value": True} in operations
    paused = copy.deepcopy(running.obj)
    paused["spec"]["suspend"], paused["metadata"]["annotations"] = True, {
        key: value for key, value in pause.patch["metadata"]["annotations"].items() if value is not None}
    resume = writes.resume(Workload(kind, paused), by="policy/nights", reason="day", replicas=1, now=NOW)
    assert resume.patch["spec"] == {"suspend": False} and resume.patch["metadata"]["annotations"][LAST_REPLICAS] is None
    assert (resume.before, resume.after, resume.gpus) == (0, 1, gpus)


@pytest.mark.parametrize("value", ["2026-01-01T08:00:00Z", "odh-notebook-controller-lock", ""])
def test_a_notebook_is_stopped_whatever_its_stop_annotation_holds(value):
    """Kubeflow's controller reads only whether the annotation is there."""
    obj = notebook(value)
    obj["status"] = {"readyReplicas": 0}
    assert (NOTEBOOK.replicas(obj), NOTEBOOK.ready_replicas(obj)) == (0, 0)
    assert NOTEBOOK.gpus_per_replica(obj, ("nvidia.com/gpu",)) == 2  # what a resume claims


def test_a_notebook_is_ready_at_one_ready_replica_since_its_ready_condition():
    obj = notebook()
    assert NOTEBOOK.ready_condition_since(obj) == datetime(2026, 1, 1, 0, 0, 9, tzinfo=UTC)
    obj["status"] = {"readyReplicas": 0}
    assert NOTEBOOK.ready_replicas(obj) == 0 and not NOTEBOOK.finished(obj)
