"""The suspend kinds and Kubeflow's Notebook on the real local cluster: what
only a real API server shows. A real batch/v1 Job, whose pods the
controller-manager runs on the kwok GPU nodes and deletes while it is
suspended; JobSet, RayCluster, RayJob and Notebook served from the minimal
CRDs in tests/fixtures/crds/ (no operator runs: the tests set their status
as one would). The guarded patch on `spec.suspend` (and on the stop
annotation) as the real server takes it, managedFields naming who set the
switch back, a completed Job, a keep-down window's edges by the daemon, and
an idle Notebook stopped and started again through Prometheus."""

from __future__ import annotations

import json
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from kubernetes import client

from scaler.cluster.batches import Selection, select
from scaler.cluster.kinds import JOB
from scaler.cluster.kube import Kube
from scaler.cluster.pausing import Pauser
from scaler.cluster.writes import Outcome
from scaler.decide.annotations import (
    LAST_ACTION,
    LAST_REPLICAS,
    PAUSED_BY,
    PREFIX,
    READY_AT,
    START_TIMES,
    STARTED_AT,
)
from scaler.decide.decisions import MANUAL
from tests.helpers import FAST, apply_crd, eventually, push_metric, run_scaler, wait_events

CRDS = Path(__file__).parents[1] / "fixtures" / "crds"
STOPPED = "kubeflow-resource-stopped"
#: plural -> (group, version) of the custom resources served from our CRDs
CUSTOM = {"jobsets": ("jobset.x-k8s.io", "v1alpha2"), "rayclusters": ("ray.io", "v1"), "rayjobs": ("ray.io", "v1"),
          "notebooks": ("kubeflow.org", "v1")}


def _ours(annotations: dict | None) -> dict:
    """scaler's pause state: its annotations but the start times a resume
    records and the record of the last action (its Event's)."""
    return {k: v for k, v in (annotations or {}).items()
            if k.startswith(PREFIX) and k not in (*START_TIMES, LAST_ACTION)}


def _pod(gpus: int = 1) -> dict:
    return {"metadata": {"labels": {"role": "trainer"}},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "trainer", "image": "trainer:fake",
                 "resources": {"limits": {"nvidia.com/gpu": str(gpus)}, "requests": {"nvidia.com/gpu": str(gpus)}}}]}}


def _job(name: str, *, parallelism: int = 2, completions: int = 8) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": {"kind": "job"}},
            "spec": {"parallelism": parallelism, "completions": completions, "template": _pod()}}


class Cluster:
    """Reads and writes on the real API server, by plural."""

    def __init__(self, kube, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace
        self.batch, self.core = client.BatchV1Api(kube), client.CoreV1Api(kube)
        self.custom = client.CustomObjectsApi(kube)

    def install(self, *plurals: str) -> None:
        for plural in plurals:
            apply_crd(self.kube, yaml.safe_load((CRDS / f"{plural}.yaml").read_text()))

    def create(self, plural: str, body: dict) -> dict:
        if plural == "jobs":
            return self.batch.create_namespaced_job(self.namespace, body).to_dict()
        group, version = CUSTOM[plural]
        return self.custom.create_namespaced_custom_object(group, version, self.namespace, plural, body)

    def get(self, plural: str, name: str) -> dict:
        if plural == "jobs":
            return self.kube.sanitize_for_serialization(self.batch.read_namespaced_job(name, self.namespace))
        group, version = CUSTOM[plural]
        return self.custom.get_namespaced_custom_object(group, version, self.namespace, plural, name)

    def set_status(self, plural: str, name: str, status: dict) -> None:
        group, version = CUSTOM[plural]
        self.custom.patch_namespaced_custom_object_status(group, version, self.namespace, plural, name,
                                                          {"status": status})

    def trainer_pods(self, job: str) -> list[client.V1Pod]:
        return [pod for pod in self.core.list_namespaced_pod(self.namespace, label_selector=f"job-name={job}").items
                if pod.metadata.deletion_timestamp is None]

    def ready_trainers(self, job: str) -> int:
        return sum(1 for pod in self.trainer_pods(job) if pod.status.phase == "Running"
                   and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []))


def _scalers(kube, namespace: str, name: str, reason: str) -> list[str]:
    """The messages of scaler's Events of this reason on `name`, once there is
    one. The Job controller posts `Suspended` and `Resumed` Events of its own
    on a Job; scaler's are those its component reports."""
    return eventually(lambda: [e.message for e in wait_events(kube, namespace, name, reason)
                               if e.reporting_component == "scaler"], timeout_seconds=30)


def _scaler(cluster, *args: str):
    process = run_scaler(*args, kubeconfig=cluster.kubeconfig)
    return process.returncode, process.stdout, process.stderr


def test_pause_and_resume_by_hand_on_the_real_api_server(kube, namespace, cluster):
    """Each kind's switch, written in the guarded patch the real server
    checks, for a Job with its pods on the kwok nodes and each custom kind;
    a RayJob created without `suspend` (the guard tests a missing field)."""
    real = Cluster(kube, namespace)
    real.install("jobsets", "rayclusters", "rayjobs", "notebooks")
    real.create("jobs", _job("train"))
    real.create("jobsets", {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": {"name": "train"},
                            "spec": {"suspend": False, "replicatedJobs": [
                                {"name": "workers", "replicas": 2,
                                 "template": {"spec": {"parallelism": 2, "template": _pod()}}}]}})
    ray = {"headGroupSpec": {"template": _pod()}, "workerGroupSpecs": [
        {"groupName": "gpu", "replicas": 3, "numOfHosts": 1, "template": _pod(2)}]}
    real.create("rayclusters", {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "train"},
                                "spec": {"suspend": False, **ray}})
    real.create("rayjobs", {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "train"},
                            "spec": {"entrypoint": "python train.py", "rayClusterSpec": ray}})
    real.create("notebooks", {"apiVersion": "kubeflow.org/v1", "kind": "Notebook", "metadata": {"name": "train"},
                              "spec": {"template": _pod()}})
    eventually(lambda: real.ready_trainers("train") == 2, timeout_seconds=60)
    gpus = {"jobs": 2, "jobsets": 4, "rayclusters": 7, "rayjobs": 7, "notebooks": 1}
    spellings = {"jobs": "job/train", "jobsets": "jobset/train", "rayclusters": "raycluster/train",
                 "rayjobs": "rayjobs.ray.io/v1/train", "notebooks": "notebook/train"}

    code, out, err = _scaler(cluster, "pause", *spellings.values(), "-n", namespace, "-o", "json")
    assert code == 0, err
    rows = {row["kind"]: row for row in json.loads(out)["results"]}
    assert {kind: (row["result"], row["replicasBefore"], row["replicasAfter"], row["gpus"])
            for kind, row in rows.items()} == {
        "Job": ("changed", 1, 0, 2), "JobSet": ("changed", 1, 0, 4), "RayCluster": ("changed", 1, 0, 7),
        "RayJob": ("changed", 1, 0, 7), "Notebook": ("changed", 1, 0, 1)}
    assert sum(gpus.values()) == sum(row["gpus"] for row in rows.values())
    for plural in ("jobs", "jobsets", "rayclusters", "rayjobs"):
        obj = real.get(plural, "train")
        assert obj["spec"]["suspend"] is True, plural
        assert (obj["metadata"]["annotations"][LAST_REPLICAS], obj["metadata"]["annotations"][PAUSED_BY]) == \
            ("1", MANUAL), plural
    assert STOPPED in real.get("notebooks", "train")["metadata"]["annotations"]
    # The Job controller stops a suspended Job's pods: its GPUs are free.
    eventually(lambda: real.trainer_pods("train") == [], timeout_seconds=60)
    eventually(lambda: len(_scalers(kube, namespace, "train", "ScaledToZero")) == 5)  # the five named train

    code, out, _ = _scaler(cluster, "pause", *spellings.values(), "-n", namespace, "-o", "name")
    assert code == 0 and out == ""  # nothing changed a second time
    code, out, _ = _scaler(cluster, "resume", *spellings.values(), "-n", namespace, "-o", "name")
    assert code == 0
    assert sorted(out.split()) == sorted(["job.batch/train", "jobset.jobset.x-k8s.io/train",
                                          "raycluster.ray.io/train", "rayjob.ray.io/train",
                                          "notebook.kubeflow.org/train"])
    for plural in ("jobs", "jobsets", "rayclusters", "rayjobs"):
        obj = real.get(plural, "train")
        assert obj["spec"]["suspend"] is False and _ours(obj["metadata"]["annotations"]) == {}, plural
    assert STOPPED not in real.get("notebooks", "train")["metadata"]["annotations"]
    eventually(lambda: real.ready_trainers("train") == 2, timeout_seconds=60)  # its pods run again

    code, _, err = _scaler(cluster, "pause", "job/nope", "-n", namespace)
    assert code == 1 and f"not found: no Job named 'nope' in namespace {namespace}" in err


def test_the_guard_and_managed_fields_of_spec_suspend_on_the_real_server(kube, namespace, cluster):
    real = Cluster(kube, namespace)
    real.create("jobs", _job("train"))
    ours = Kube.from_environment(kubeconfig=str(cluster.kubeconfig))
    [workload], _ = select(ours, Selection(kinds=[JOB], namespace=namespace))
    # A person suspends it after our read: the guard on /spec/suspend fails (422), we read again.
    real.batch.patch_namespaced_job("train", namespace, {"spec": {"suspend": True}})
    result = Pauser(ours).pause(workload, by=MANUAL, reason="test")
    assert (result.outcome, result.reason) == (Outcome.CHANGED, "already at 0 replicas; now paused manually until "
                                                                "a manual resume")
    assert LAST_REPLICAS not in real.get("jobs", "train")["metadata"]["annotations"]  # never records 0

    code, _, err = _scaler(cluster, "resume", "job/train", "-n", namespace)
    assert code == 0, err
    code, _, err = _scaler(cluster, "pause", "job/train", "-n", namespace)
    assert code == 0, err
    # A GitOps tool applies suspend: false from Git: managedFields on the real server name it.
    body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "train"}, "spec": {"suspend": False}}
    real.batch.patch_namespaced_job("train", namespace, body, field_manager="argocd-controller", force=True,
                                    _content_type="application/apply-patch+yaml")
    code, out, err = _scaler(cluster, "status", "-n", namespace, "--kind", "Job", "-o", "json")
    assert code == 0, err
    [row] = json.loads(out)["workloads"]
    assert (row["state"], row["changedBy"]) == ("running", "argocd-controller")
    assert "set to 1 by argocd-controller after the pause (record left)" in row["notes"]


def test_a_completed_job_is_left_alone(kube, namespace, cluster, tmp_path, daemons):
    real = Cluster(kube, namespace)
    real.create("jobs", _job("done", parallelism=1, completions=1))
    real.create("jobs", _job("train"))
    [pod] = eventually(lambda: real.trainer_pods("done"), timeout_seconds=60)
    # Its container exits 0, as a kubelet would report it (kwok never ends a pod).
    finished = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    real.core.patch_namespaced_pod_status(pod.metadata.name, namespace, {"status": {
        "phase": "Succeeded", "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}],
        "containerStatuses": [{"name": "trainer", "image": "trainer:fake", "imageID": "", "ready": False,
                               "restartCount": 0, "state": {"terminated": {
                                   "exitCode": 0, "reason": "Completed", "startedAt": finished,
                                   "finishedAt": finished}}}]}})
    eventually(lambda: any(c["type"] == "Complete" and c["status"] == "True"
                           for c in real.get("jobs", "done")["status"].get("conditions") or []), timeout_seconds=60)

    code, out, err = _scaler(cluster, "pause", "job/done", "-n", namespace)
    assert code == 0, err
    assert "skipped" in out and "finished: this Job has run to its end (completed or failed)" in out
    policies = tmp_path / "policies.yaml"
    policies.write_text(textwrap.dedent(f"""
        policies:
          - name: nights
            targets: {{namespaces: [{namespace}], kinds: [Job]}}
            schedule:
              timezone: UTC
              windows:
                - {{name: a, mode: down, start: "0 0 * * *", end: "0 12 * * *"}}
                - {{name: b, mode: down, start: "0 12 * * *", end: "0 0 * * *"}}
        """))
    daemon = daemons(policies, *FAST)
    daemon.wait_ready()
    eventually(lambda: real.get("jobs", "train")["spec"]["suspend"] is True, timeout_seconds=60)
    daemon.let_time_pass()
    done = real.get("jobs", "done")
    assert done["spec"]["suspend"] is False and _ours(done["metadata"].get("annotations")) == {}
    assert not [line for line in daemon.logs("decision") if line.get("workload") == "done"]
    assert daemon.stop() == 0


def test_a_keep_down_window_suspends_a_gpu_job_at_its_edge_and_unsuspends_it_at_the_end(
        kube, namespace, cluster, tmp_path, daemons):
    real = Cluster(kube, namespace)
    real.create("jobs", _job("train"))
    eventually(lambda: real.ready_trainers("train") == 2, timeout_seconds=60)
    before = real.get("jobs", "train")
    now = datetime.now(UTC)
    if now.second > 45:  # leave the daemon time to start before the edge
        time.sleep(61 - now.second)
        now = datetime.now(UTC)
    opens = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
    closes = opens + timedelta(minutes=1)
    policies = tmp_path / "policies.yaml"
    policies.write_text(textwrap.dedent(f"""
        policies:
          - name: training-off
            targets: {{namespaces: [{namespace}], kinds: [Job]}}
            schedule:
              timezone: UTC
              windows:
                - name: demo
                  mode: down
                  start: "{opens.minute} {opens.hour} * * *"
                  end: "{closes.minute} {closes.hour} * * *"
        """))
    # A long interval: only the exact-time edge job can act on time.
    daemon = daemons(policies, "--evaluation-interval-seconds", "300")
    daemon.wait_ready()

    eventually(lambda: real.get("jobs", "train")["spec"]["suspend"] is True, timeout_seconds=90,
               interval_seconds=0.1)
    suspended_after = (datetime.now(UTC) - opens).total_seconds()
    annotations = real.get("jobs", "train")["metadata"]["annotations"]
    assert (annotations[LAST_REPLICAS], annotations[PAUSED_BY]) == ("1", "policy/training-off")
    [message] = _scalers(kube, namespace, "train", "ScaledToZero")
    assert "scaled to zero from 1 replicas by policy/training-off" in message and "2 GPUs freed" in message
    eventually(lambda: real.trainer_pods("train") == [], timeout_seconds=60)  # the GPUs are free

    eventually(lambda: real.get("jobs", "train")["spec"]["suspend"] is False, timeout_seconds=90,
               interval_seconds=0.1)
    resumed_after = (datetime.now(UTC) - closes).total_seconds()
    print(f"\nwindow edge -> suspended {suspended_after:.2f}s, edge -> unsuspended {resumed_after:.2f}s")
    after = real.get("jobs", "train")
    assert _ours(after["metadata"]["annotations"]) == {}
    assert after["metadata"]["annotations"][STARTED_AT]
    for field in ("parallelism", "completions", "template", "backoffLimit"):
        assert after["spec"][field] == before["spec"][field], field  # restored exactly: only the switch moved
    [message] = _scalers(kube, namespace, "train", "Resumed")
    assert "resumed to 1 replicas (recorded by policy/training-off)" in message
    eventually(lambda: real.ready_trainers("train") == 2, timeout_seconds=60)  # training goes on
    assert suspended_after < 5 and resumed_after < 5
    assert daemon.stop() == 0


def _push(cluster, namespace: str, name: str, value: float) -> None:
    push_metric(cluster.pushgateway_url, job="test", name=name, value=value,
                labels={"namespace": namespace, "workload": "lab"},
                grouping={"namespace": namespace, "workload": "lab", "metric": name})


def test_an_idle_notebook_is_stopped_and_started_again_by_a_waiting_session(kube, namespace, cluster, tmp_path,
                                                                           daemons):
    real = Cluster(kube, namespace)
    real.install("notebooks")
    real.create("notebooks", {"apiVersion": "kubeflow.org/v1", "kind": "Notebook", "metadata": {"name": "lab"},
                              "spec": {"template": _pod()}})

    def server(up: bool) -> None:  # what the notebook controller reports of its one server
        since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        real.set_status("notebooks", "lab", {"readyReplicas": 1 if up else 0, "conditions": [
            {"type": "Ready", "status": "True" if up else "False", "lastTransitionTime": since}]})
    server(True)
    _push(cluster, namespace, "notebook_gpu_busy", 0)
    _push(cluster, namespace, "notebook_sessions_waiting", 0)
    policies = tmp_path / "policies.yaml"
    policies.write_text(textwrap.dedent(f"""
        policies:
          - name: notebooks
            targets: {{namespaces: [{namespace}], kinds: [Notebook]}}
            idle: {{query: 'notebook_gpu_busy{{namespace="{namespace}"}}', threshold: 0.5, duration: 6s}}
            wake:
              query: 'notebook_sessions_waiting{{namespace="{namespace}"}}'
              target_per_replica: 1
              activation_threshold: 0
            startup_grace: 0s
            scale_down_delay: 2m
        """))
    daemon = daemons(policies, *FAST)
    daemon.wait_ready()

    eventually(lambda: STOPPED in real.get("notebooks", "lab")["metadata"]["annotations"], timeout_seconds=60)
    annotations = real.get("notebooks", "lab")["metadata"]["annotations"]
    assert (annotations[LAST_REPLICAS], annotations[PAUSED_BY]) == ("1", "policy/notebooks")
    assert datetime.fromisoformat(annotations[STOPPED]) <= datetime.now(UTC)  # Kubeflow's convention: a time
    assert daemon.wait_log("decision", lambda line: line.get("action") == "pause")[0]["reason_code"] == \
        "idle-timeout"
    server(False)

    _push(cluster, namespace, "notebook_sessions_waiting", 1)  # someone opens it
    eventually(lambda: STOPPED not in real.get("notebooks", "lab")["metadata"]["annotations"], timeout_seconds=60)
    assert _ours(real.get("notebooks", "lab")["metadata"]["annotations"]) == {}
    [message] = _scalers(kube, namespace, "lab", "Resumed")
    assert "resumed to 1 replicas" in message
    server(True)
    # Its start ends when the server is Ready: recorded on the object, with a Ready Event.
    eventually(lambda: READY_AT in real.get("notebooks", "lab")["metadata"]["annotations"], timeout_seconds=60)
    assert _scalers(kube, namespace, "lab", "Ready")
    assert daemon.stop() == 0
