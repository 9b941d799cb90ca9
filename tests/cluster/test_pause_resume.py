"""Pause and resume with memory, on the real local cluster, through the CLI a
user runs (`python -m scaler ...`). Each test asserts what a user sees:
replicas on the object, our annotations, the Event, the row, the exit code."""

from __future__ import annotations

import json
import threading
import time

import yaml
from kubernetes import client

from scaler.cluster.batches import Selection, run_batch, select
from scaler.cluster.kube import Kube
from scaler.cluster.pausing import Pauser
from scaler.cluster.workloads import DEPLOYMENT
from scaler.cluster.writes import Outcome
from scaler.decide.annotations import (
    KEDA_PAUSED_REPLICAS,
    KSERVE_STOP,
    LAST_REPLICAS,
    MANUAL_PAUSE,
    PAUSED_BY,
    PREFIX,
    START_TIMES,
)
from scaler.decide.decisions import MANUAL
from tests.helpers import (
    apply_crd,
    eventually,
    gpu_deployment,
    ready_pods,
    run_scaler,
    simple_crd,
)


def _ours(annotations: dict | None) -> dict:
    """scaler's pause state: its annotations but the start times a resume records."""
    return {k: v for k, v in (annotations or {}).items() if k.startswith(PREFIX) and k not in START_TIMES}


def _deployment(kube, namespace, name) -> client.V1Deployment:
    return client.AppsV1Api(kube).read_namespaced_deployment(name, namespace)


def _rows(process) -> dict[str, dict]:
    assert process.stdout, process.stderr
    return {row["name"]: row for row in json.loads(process.stdout)["results"]}


def _events(kube, namespace, name) -> list[client.CoreV1Event]:
    return client.CoreV1Api(kube).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}").items


def _statefulset(name: str, replicas: int, labels: dict) -> client.V1StatefulSet:
    template = gpu_deployment(name, replicas=replicas, gpus=0, labels=labels).spec.template
    return client.V1StatefulSet(
        metadata=client.V1ObjectMeta(name=name, labels={"app": name, **labels}),
        spec=client.V1StatefulSetSpec(replicas=replicas, service_name=name, template=template,
                                      selector=client.V1LabelSelector(match_labels={"app": name})))


def test_batch_of_50_deployments_and_statefulsets_round_trips_exactly(kube, namespace, cluster):
    apps = client.AppsV1Api(kube)
    original = {}
    for i in range(50):
        name = f"svc-{i:02d}"
        original[name] = i % 7 + 1
        apps.create_namespaced_deployment(namespace, gpu_deployment(name, replicas=original[name], gpus=0,
                                                                     labels={"batch": "yes"}))
    for i, replicas in enumerate((2, 3, 4)):
        name = f"shard-{i}"
        original[name] = replicas
        apps.create_namespaced_stateful_set(namespace, _statefulset(name, replicas, {"batch": "yes"}))
    apps.create_namespaced_deployment(namespace, gpu_deployment("bystander", replicas=2, gpus=0))

    def replicas_now() -> dict[str, int]:
        found = {d.metadata.name: d for d in apps.list_namespaced_deployment(namespace).items}
        found |= {s.metadata.name: s for s in apps.list_namespaced_stateful_set(namespace).items}
        return {name: (obj.spec.replicas, _ours(obj.metadata.annotations)) for name, obj in found.items()}

    select_all = ["-n", namespace, "-l", "batch=yes", "--kind", "Deployment", "--kind", "StatefulSet", "-o", "json"]
    paused = run_scaler("pause", *select_all, kubeconfig=cluster.kubeconfig)
    assert paused.returncode == 0, paused.stderr
    rows = _rows(paused)
    assert {name: row["result"] for name, row in rows.items()} == {name: "changed" for name in original}
    state = replicas_now()
    for name, count in original.items():
        replicas, ours = state[name]
        assert replicas == 0, name
        assert ours[LAST_REPLICAS] == str(count), name
        assert ours[PAUSED_BY] == MANUAL and ours[MANUAL_PAUSE] == "true"
    assert state["bystander"] == (2, {})

    again = run_scaler("pause", *select_all, kubeconfig=cluster.kubeconfig)
    assert again.returncode == 0, again.stderr
    assert {row["result"] for row in _rows(again).values()} == {"unchanged"}
    assert replicas_now() == state

    resumed = run_scaler("resume", *select_all, kubeconfig=cluster.kubeconfig)
    assert resumed.returncode == 0, resumed.stderr
    assert {row["result"] for row in _rows(resumed).values()} == {"changed"}
    assert replicas_now() == {**{name: (count, {}) for name, count in original.items()}, "bystander": (2, {})}

    reasons = [e.reason for e in _events(kube, namespace, "svc-03")]
    assert reasons.count("ScaledToZero") == 1 and reasons.count("Resumed") == 1
    message = next(e.message for e in _events(kube, namespace, "svc-03") if e.reason == "ScaledToZero")
    assert "from 4 replicas" in message


def test_a_replica_change_after_our_read_is_caught_and_the_fresh_count_recorded(kube, namespace, cluster):
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, gpu_deployment("chat", replicas=2, gpus=0))
    ours = Kube.from_environment(kubeconfig=str(cluster.kubeconfig))
    workloads, _ = select(ours, Selection(kinds=[DEPLOYMENT], namespace=namespace))
    apps.patch_namespaced_deployment_scale("chat", namespace, {"spec": {"replicas": 7}})  # after our read
    result = Pauser(ours).pause(workloads[0], by=MANUAL, reason="test")
    assert result.outcome is Outcome.CHANGED and result.replicas_before == 7
    assert ours.requests["patch"] == 2  # the stale guard failed once, then the fresh write landed
    deployment = _deployment(kube, namespace, "chat")
    assert deployment.spec.replicas == 0 and deployment.metadata.annotations[LAST_REPLICAS] == "7"


def test_human_scale_while_paused_wins_and_is_reported(kube, namespace, cluster):
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, gpu_deployment("chat", replicas=5, gpus=1))
    assert run_scaler("pause", "chat", "-n", namespace, kubeconfig=cluster.kubeconfig).returncode == 0
    apps.patch_namespaced_deployment_scale("chat", namespace, {"spec": {"replicas": 3}})

    resumed = run_scaler("resume", "chat", "-n", namespace, kubeconfig=cluster.kubeconfig)
    assert resumed.returncode == 0, resumed.stderr
    assert "someone set replicas to 3 while it was paused (recorded 5); left 3" in resumed.stdout
    deployment = _deployment(kube, namespace, "chat")
    assert deployment.spec.replicas == 3
    assert _ours(deployment.metadata.annotations) == {}
    assert "ResumeSkipped" in [e.reason for e in _events(kube, namespace, "chat")]


def test_pause_table_shows_gpus_freed_and_dry_run_writes_nothing(kube, namespace, cluster):
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, gpu_deployment("big", replicas=2, gpus=4))
    apps.create_namespaced_deployment(namespace, gpu_deployment("small", replicas=1, gpus=1))

    dry = run_scaler("pause", "-n", namespace, "--dry-run", kubeconfig=cluster.kubeconfig)
    assert dry.returncode == 0, dry.stderr
    assert "dry run: 2 would change, 0 unchanged, 0 skipped, 0 failed; 9 GPUs freed" in dry.stdout
    assert _deployment(kube, namespace, "big").spec.replicas == 2

    real = run_scaler("pause", "-n", namespace, "--all", kubeconfig=cluster.kubeconfig)
    assert real.returncode == 0, real.stderr
    big_row = next(line for line in real.stdout.splitlines() if " big " in f" {line} ")
    assert "changed" in big_row and "2 -> 0" in big_row and " 8 " in f" {big_row} "
    assert "2 changed, 0 unchanged, 0 skipped, 0 failed; 9 GPUs freed" in real.stdout

    status = run_scaler("status", "-n", namespace, "-o", "json", kubeconfig=cluster.kubeconfig)
    assert status.returncode == 0, status.stderr
    paused = {row["name"]: row for row in json.loads(status.stdout)["paused"]}
    assert paused["big"]["resumeTo"] == 2 and paused["big"]["gpus"] == 8
    assert paused["big"]["pausedBy"] == MANUAL
    assert json.loads(status.stdout)["gpusPaused"] == 9


def test_missing_name_fails_the_row_and_the_exit_code(namespace, cluster):
    result = run_scaler("pause", "nope", "-n", namespace, kubeconfig=cluster.kubeconfig)
    assert result.returncode == 1
    assert f"failed: Deployment/StatefulSet/{namespace}/nope: not found" in result.stderr


def test_kubectl_type_name_form_selects_each_name_in_its_own_kind(kube, namespace, cluster):
    """`kubectl get -o name` output pasted as is: deployment.apps/db pauses the
    Deployment db only, never the StatefulSet of the same name."""
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, gpu_deployment("db", replicas=2, gpus=1))
    apps.create_namespaced_deployment(namespace, gpu_deployment("chat", replicas=3, gpus=1))
    apps.create_namespaced_stateful_set(namespace, _statefulset("db", 2, {}))
    apps.create_namespaced_stateful_set(namespace, _statefulset("cache", 1, {}))

    paused = run_scaler("pause", "deployment.apps/db", "deploy/chat", "sts/cache", "deployments/chat", "-n",
                        namespace, "-o", "json", kubeconfig=cluster.kubeconfig)
    assert paused.returncode == 0, paused.stderr
    results = json.loads(paused.stdout)["results"]
    assert len(results) == 3, results  # chat, named twice in two spellings, is one object and one row
    rows = {(row["kind"], row["name"]): row["result"] for row in results}
    assert rows == {("Deployment", "db"): "changed", ("Deployment", "chat"): "changed",
                    ("StatefulSet", "cache"): "changed"}
    assert apps.read_namespaced_deployment("db", namespace).spec.replicas == 0
    assert apps.read_namespaced_stateful_set("db", namespace).spec.replicas == 2
    assert apps.read_namespaced_stateful_set("cache", namespace).spec.replicas == 0

    resumed = run_scaler("resume", "statefulsets.apps/v1/cache", "deploy/db", "-n", namespace,
                         kubeconfig=cluster.kubeconfig)
    assert resumed.returncode == 0, resumed.stderr
    assert apps.read_namespaced_stateful_set("cache", namespace).spec.replicas == 1
    assert apps.read_namespaced_deployment("db", namespace).spec.replicas == 2
    assert apps.read_namespaced_deployment("chat", namespace).spec.replicas == 0  # not named

    missing = run_scaler("pause", "sts/chat", "-n", namespace, kubeconfig=cluster.kubeconfig)
    assert missing.returncode == 1
    assert f"failed: StatefulSet/{namespace}/chat: not found" in missing.stderr


def test_unknown_kind_is_a_clear_error(namespace, cluster):
    result = run_scaler("pause", "-n", namespace, "--kind", "Pod", kubeconfig=cluster.kubeconfig)
    assert result.returncode == 2  # a usage error (README's exit codes)
    assert "unknown kind 'Pod': expected one of Deployment, StatefulSet, InferenceService" in result.stderr


def test_unrelated_writers_cause_no_conflict_and_counts_stay_exact(kube, namespace, cluster):
    apps = client.AppsV1Api(kube)
    original = {f"w-{i}": i % 5 + 1 for i in range(20)}
    for name, count in original.items():
        apps.create_namespaced_deployment(namespace, gpu_deployment(name, replicas=count, gpus=0))
    stop = threading.Event()

    def meddle():
        # Another controller touching the same objects: every write bumps the
        # resourceVersion, but neither the replica count nor scaler's record.
        n = 0
        while not stop.is_set() and n < 2000:
            for name in original:
                apps.patch_namespaced_deployment(name, namespace, {"metadata": {"labels": {"touched": str(n)}}})
                n += 1

    # Steady state: the Deployment controller has written its revision annotation
    # (an object with no annotations at all is guarded as a whole map).
    eventually(lambda: all((_deployment(kube, namespace, name).metadata.annotations or {}).get(
        "deployment.kubernetes.io/revision") for name in original), timeout_seconds=30)
    meddler = threading.Thread(target=meddle, daemon=True)
    meddler.start()
    try:
        ours = Kube.from_environment(kubeconfig=str(cluster.kubeconfig))
        workloads, _ = select(ours, Selection(kinds=[DEPLOYMENT], namespace=namespace))
        # Let the meddler move every resourceVersion past the ones we listed.
        eventually(lambda: all(_deployment(kube, namespace, name).metadata.labels.get("touched")
                               for name in original), timeout_seconds=30)
        pauser = Pauser(ours)
        results = run_batch(workloads, lambda w: pauser.pause(w, by=MANUAL, reason="test"), concurrency=8)
    finally:
        stop.set()
        meddler.join()
    assert {r.outcome for r in results} == {Outcome.CHANGED}
    assert ours.requests["patch"] == len(original)  # one write per object: no retries
    for name, count in original.items():
        deployment = _deployment(kube, namespace, name)
        assert deployment.spec.replicas == 0
        assert deployment.metadata.annotations[LAST_REPLICAS] == str(count)
    workloads, _ = select(ours, Selection(kinds=[DEPLOYMENT], namespace=namespace))
    resumed = run_batch(workloads, pauser.resume, concurrency=8)
    assert {r.outcome for r in resumed} == {Outcome.CHANGED}
    assert {name: _deployment(kube, namespace, name).spec.replicas for name in original} == original


def test_hpa_stands_aside_while_paused_and_takes_over_after_resume(kube, namespace, cluster):
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, gpu_deployment("served", replicas=2, gpus=1))
    autoscaling = client.AutoscalingV2Api(kube)
    autoscaling.create_namespaced_horizontal_pod_autoscaler(namespace, client.V2HorizontalPodAutoscaler(
        metadata=client.V1ObjectMeta(name="served"),
        spec=client.V2HorizontalPodAutoscalerSpec(
            scale_target_ref=client.V2CrossVersionObjectReference(api_version="apps/v1", kind="Deployment",
                                                                  name="served"),
            min_replicas=1, max_replicas=4,
            metrics=[client.V2MetricSpec(type="Resource", resource=client.V2ResourceMetricSource(
                name="cpu", target=client.V2MetricTarget(type="Utilization", average_utilization=50)))])))

    def scaling_active():
        hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler("served", namespace)
        return next((c for c in hpa.status.conditions or [] if c.type == "ScalingActive"), None)

    eventually(scaling_active, timeout_seconds=60)
    assert run_scaler("pause", "served", "-n", namespace, kubeconfig=cluster.kubeconfig).returncode == 0
    disabled = eventually(lambda: (c := scaling_active()) and c.reason == "ScalingDisabled" and c,
                          timeout_seconds=60)
    assert disabled.status == "False"
    time.sleep(6)  # more than one HPA sync period (5 s here): it must not scale a zero target back up
    assert _deployment(kube, namespace, "served").spec.replicas == 0

    assert run_scaler("resume", "served", "-n", namespace, kubeconfig=cluster.kubeconfig).returncode == 0
    assert _deployment(kube, namespace, "served").spec.replicas == 2
    eventually(lambda: (c := scaling_active()) and c.reason != "ScalingDisabled", timeout_seconds=60)
    eventually(lambda: len(ready_pods(kube, namespace, "served")) == 2, timeout_seconds=60)


def test_keda_scaled_object_is_paused_with_its_own_annotation_and_handed_back(kube, namespace, cluster):
    apply_crd(kube, simple_crd(group="keda.sh", kind="ScaledObject", plural="scaledobjects", version="v1alpha1"))
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, gpu_deployment("worker", replicas=3, gpus=1))
    custom = client.CustomObjectsApi(kube)
    custom.create_namespaced_custom_object("keda.sh", "v1alpha1", namespace, "scaledobjects", {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "worker"},
        "spec": {"scaleTargetRef": {"name": "worker"}, "minReplicaCount": 0, "maxReplicaCount": 8}})

    def scaled_object_annotations():
        return custom.get_namespaced_custom_object("keda.sh", "v1alpha1", namespace, "scaledobjects",
                                                   "worker")["metadata"].get("annotations") or {}

    assert run_scaler("pause", "worker", "-n", namespace, kubeconfig=cluster.kubeconfig).returncode == 0
    assert _deployment(kube, namespace, "worker").spec.replicas == 0
    assert _deployment(kube, namespace, "worker").metadata.annotations[LAST_REPLICAS] == "3"
    assert scaled_object_annotations().get(KEDA_PAUSED_REPLICAS) == "0"

    assert run_scaler("resume", "worker", "-n", namespace, kubeconfig=cluster.kubeconfig).returncode == 0
    assert _deployment(kube, namespace, "worker").spec.replicas == 3
    assert KEDA_PAUSED_REPLICAS not in scaled_object_annotations()


def test_inference_service_stop_annotation_round_trip(kube, namespace, cluster):
    apply_crd(kube, simple_crd(group="serving.kserve.io", kind="InferenceService", plural="inferenceservices",
                               version="v1beta1"))
    custom = client.CustomObjectsApi(kube)
    custom.create_namespaced_custom_object("serving.kserve.io", "v1beta1", namespace, "inferenceservices", {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "llama"},
        "spec": {"predictor": {"minReplicas": 2, "model": {
            "modelFormat": {"name": "huggingface"},
            "resources": {"limits": {"nvidia.com/gpu": "2"}}}}}})

    def isvc():
        return custom.get_namespaced_custom_object("serving.kserve.io", "v1beta1", namespace,
                                                   "inferenceservices", "llama")

    paused = run_scaler("pause", "llama", "-n", namespace, "--kind", "InferenceService", "-o", "json",
                        kubeconfig=cluster.kubeconfig)
    assert paused.returncode == 0, paused.stderr
    row = _rows(paused)["llama"]
    assert (row["result"], row["replicasBefore"], row["replicasAfter"], row["gpus"]) == ("changed", 2, 0, 4)
    annotations = isvc()["metadata"]["annotations"]
    assert annotations[KSERVE_STOP] == "true" and annotations[LAST_REPLICAS] == "2"

    resumed = run_scaler("resume", "llama", "-n", namespace, "--kind", "isvc", "-o", "json",
                         kubeconfig=cluster.kubeconfig)
    assert resumed.returncode == 0, resumed.stderr
    assert _rows(resumed)["llama"]["replicasAfter"] == 2
    assert KSERVE_STOP not in (isvc()["metadata"].get("annotations") or {})
    assert _ours(isvc()["metadata"].get("annotations")) == {}
    assert isvc()["spec"]["predictor"]["minReplicas"] == 2


def test_custom_resource_with_scale_subresource(kube, namespace, cluster):
    apply_crd(kube, simple_crd(group="serving.example.com", kind="VLLMServer", plural="vllmservers",
                               version="v1alpha1", scale=True))
    custom = client.CustomObjectsApi(kube)
    custom.create_namespaced_custom_object("serving.example.com", "v1alpha1", namespace, "vllmservers", {
        "apiVersion": "serving.example.com/v1alpha1", "kind": "VLLMServer", "metadata": {"name": "mixtral"},
        "spec": {"replicas": 6}})
    kind = "vllmservers.serving.example.com/v1alpha1"

    def server():
        return custom.get_namespaced_custom_object("serving.example.com", "v1alpha1", namespace,
                                                   "vllmservers", "mixtral")

    assert run_scaler("pause", "mixtral", "-n", namespace, "--kind", kind,
                      kubeconfig=cluster.kubeconfig).returncode == 0
    assert server()["spec"]["replicas"] == 0
    assert server()["metadata"]["annotations"][LAST_REPLICAS] == "6"
    assert run_scaler("resume", "mixtral", "-n", namespace, "--kind", kind,
                      kubeconfig=cluster.kubeconfig).returncode == 0
    assert server()["spec"]["replicas"] == 6


def _restricted_kubeconfig(kube, cluster, namespace, tmp_path, *, patchable: list[str]) -> str:
    """A ServiceAccount allowed to read deployments and create Events, but to
    patch only the named deployments; its TokenRequest token in a kubeconfig."""
    core, rbac = client.CoreV1Api(kube), client.RbacAuthorizationV1Api(kube)
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name="limited")))
    rbac.create_namespaced_role(namespace, client.V1Role(metadata=client.V1ObjectMeta(name="limited"), rules=[
        client.V1PolicyRule(api_groups=["apps"], resources=["deployments", "statefulsets"],
                            verbs=["get", "list"]),
        client.V1PolicyRule(api_groups=["apps"], resources=["deployments"], verbs=["patch"],
                            resource_names=patchable),
        client.V1PolicyRule(api_groups=[""], resources=["events"], verbs=["create"]),
    ]))
    rbac.create_namespaced_role_binding(namespace, client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="limited"),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="limited"),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name="limited", namespace=namespace)]))
    token = core.create_namespaced_service_account_token("limited", namespace, client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=["https://kubernetes.default.svc"], expiration_seconds=3600)
    )).status.token
    path = tmp_path / "limited.kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "limited",
        "clusters": [{"name": "local", "cluster": {"server": cluster.apiserver_url,
                                                    "certificate-authority": str(cluster.state_dir / "pki/ca.crt")}}],
        "users": [{"name": "limited", "user": {"token": token}}],
        "contexts": [{"name": "limited", "context": {"cluster": "local", "user": "limited",
                                                      "namespace": namespace}}],
    }))
    return str(path)


def test_forbidden_row_fails_naming_the_verb_and_the_rest_succeed(kube, namespace, cluster, tmp_path):
    apps = client.AppsV1Api(kube)
    for name in ("a", "b", "c"):
        apps.create_namespaced_deployment(namespace, gpu_deployment(name, replicas=2, gpus=0))
    kubeconfig = _restricted_kubeconfig(kube, cluster, namespace, tmp_path, patchable=["a", "b"])

    result = run_scaler("pause", "a", "b", "c", "--kind", "Deployment", kubeconfig=kubeconfig)
    assert result.returncode == 1
    assert f"failed: Deployment/{namespace}/c: forbidden: cannot patch deployments.apps/c in namespace {namespace}" \
        in result.stderr
    assert "2 changed, 0 unchanged, 0 skipped, 1 failed" in result.stdout
    assert [_deployment(kube, namespace, n).spec.replicas for n in ("a", "b", "c")] == [0, 0, 2]


def test_resume_wait_reports_time_to_ready(kube, namespace, cluster):
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, gpu_deployment("warm", replicas=2, gpus=1))
    eventually(lambda: len(ready_pods(kube, namespace, "warm")) == 2, timeout_seconds=60)
    assert run_scaler("pause", "warm", "-n", namespace, kubeconfig=cluster.kubeconfig).returncode == 0
    eventually(lambda: not ready_pods(kube, namespace, "warm"), timeout_seconds=60)

    result = run_scaler("resume", "warm", "-n", namespace, "--wait", "--timeout", "60", "-o", "json",
                        kubeconfig=cluster.kubeconfig)
    assert result.returncode == 0, result.stderr
    row = _rows(result)["warm"]
    assert row["result"] == "changed" and row["secondsToReady"] is not None and row["secondsToReady"] < 60
    assert len(ready_pods(kube, namespace, "warm")) == 2


def test_resume_leaves_alone_what_scaler_did_not_pause(kube, namespace, cluster):
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, gpu_deployment("parked", replicas=0, gpus=1))
    apps.create_namespaced_deployment(namespace, gpu_deployment("mine", replicas=2, gpus=1))
    assert run_scaler("pause", "mine", "-n", namespace, kubeconfig=cluster.kubeconfig).returncode == 0

    result = run_scaler("resume", "-n", namespace, "--all", "-o", "json", kubeconfig=cluster.kubeconfig)
    assert result.returncode == 0, result.stderr
    rows = _rows(result)
    assert rows["parked"]["result"] == "unchanged"
    assert "scaler did not pause it" in rows["parked"]["reason"]
    assert rows["mine"]["result"] == "changed"
    assert _deployment(kube, namespace, "parked").spec.replicas == 0
    assert _deployment(kube, namespace, "mine").spec.replicas == 2


def test_manual_pause_of_a_workload_already_at_zero_resumes_to_the_minimum(kube, namespace, cluster):
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, gpu_deployment("cold", replicas=0, gpus=1))
    paused = run_scaler("pause", "cold", "-n", namespace, kubeconfig=cluster.kubeconfig)
    assert paused.returncode == 0 and "now paused manually" in paused.stdout
    resumed = run_scaler("resume", "cold", "-n", namespace, "--min-replicas", "2", kubeconfig=cluster.kubeconfig)
    assert resumed.returncode == 0
    assert "no recorded count, used the minimum 2" in resumed.stdout
    assert _deployment(kube, namespace, "cold").spec.replicas == 2
    assert _ours(_deployment(kube, namespace, "cold").metadata.annotations) == {}
