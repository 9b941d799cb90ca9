"""Pause and resume with memory, on the real local cluster, through the CLI a
user runs (`python -m scaler ...`): what only the real API server and its
controllers show (both built-in kinds written as it takes them, the HPA
controller standing aside, RBAC refusing one object of a batch). The CLI's
own logic (rows, summaries, kubectl's names, the other kinds, --wait) is
tests/unit/test_manual_cli.py's. Each test asserts what a user sees:
replicas on the object, our annotations, the Event, the row, the exit code."""

from __future__ import annotations

import json
import time

import yaml
from kubernetes import client

from scaler.decide.annotations import (
    LAST_ACTION,
    LAST_REPLICAS,
    MANUAL_PAUSE,
    PAUSED_BY,
)
from scaler.decide.decisions import MANUAL
from tests.helpers import (
    eventually,
    gpu_deployment,
    pause_state,
    ready_pods,
    run_scaler,
)


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


def test_a_deployment_and_a_statefulset_round_trip_on_the_real_server(kube, namespace, cluster):
    """The writes, guard and Event of a pause and a resume as the real API
    server takes them, for both built-in kinds (the batch, the rows and the
    summary are tests/unit/test_manual_cli.py's)."""
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, gpu_deployment("svc", replicas=4, gpus=0, labels={"batch": "yes"}))
    apps.create_namespaced_stateful_set(namespace, _statefulset("shard", 3, {"batch": "yes"}))
    original = {"svc": 4, "shard": 3}

    def state() -> dict[str, tuple]:
        found = {d.metadata.name: d for d in apps.list_namespaced_deployment(namespace).items}
        found |= {s.metadata.name: s for s in apps.list_namespaced_stateful_set(namespace).items}
        return {name: (obj.spec.replicas, pause_state(obj.metadata.annotations)) for name, obj in found.items()}

    select_all = ["-n", namespace, "-l", "batch=yes", "--kind", "Deployment", "--kind", "StatefulSet", "-o", "json"]
    paused = run_scaler("pause", *select_all, kubeconfig=cluster.kubeconfig)
    assert paused.returncode == 0, paused.stderr
    assert {name: row["result"] for name, row in _rows(paused).items()} == dict.fromkeys(original, "changed")
    for name, (replicas, ours) in state().items():
        assert (replicas, ours[LAST_REPLICAS], ours[PAUSED_BY], ours[MANUAL_PAUSE]) == (
            0, str(original[name]), MANUAL, "true"), name

    resumed = run_scaler("resume", *select_all, kubeconfig=cluster.kubeconfig)
    assert resumed.returncode == 0, resumed.stderr
    assert state() == {name: (count, {}) for name, count in original.items()}
    for name, count in original.items():
        reasons = [e.reason for e in _events(kube, namespace, name)]
        assert reasons.count("ScaledToZero") == 1 and reasons.count("Resumed") == 1, (name, reasons)
        message = next(e.message for e in _events(kube, namespace, name) if e.reason == "ScaledToZero")
        assert f"from {count} replicas" in message


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
    # May create Events, not list them: the owed ones go unchecked, said once, and the pause goes on.
    assert "note: the Events an earlier run may owe were not checked: forbidden: cannot list events" \
        in result.stderr
    assert [_deployment(kube, namespace, n).spec.replicas for n in ("a", "b", "c")] == [0, 0, 2]


def test_a_pause_killed_mid_batch_leaves_its_events_to_the_next_run(kube, namespace, cluster):
    """kill -9 of `scaler pause` in the middle of a batch: the writes that
    landed carry their records, and the Events it had not posted yet are
    posted by the next run, once each: one Event per paused object."""
    import os
    import signal
    import subprocess
    import sys

    apps, size = client.AppsV1Api(kube), 200
    for i in range(size):
        body = gpu_deployment(f"d-{i:03d}", replicas=2, gpus=0, labels={"batch": "kill"})
        body.spec.paused = True  # no pods: the batch, not the scheduler, is what is measured
        apps.create_namespaced_deployment(namespace, body)

    def at_zero() -> int:
        items = apps.list_namespaced_deployment(namespace).items
        return sum(1 for item in items if item.spec.replicas == 0)
    run = subprocess.Popen([sys.executable, "-m", "scaler", "pause", "--all", "-n", namespace],
                           env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    eventually(lambda: at_zero() >= size // 4, timeout_seconds=60, interval_seconds=0.02)
    run.send_signal(signal.SIGKILL)
    run.wait(10)
    killed_at = at_zero()
    assert killed_at < size, "the batch ended before the kill; the test proves nothing"

    again = run_scaler("pause", "--all", "-n", namespace, kubeconfig=cluster.kubeconfig)
    assert again.returncode == 0, again.stderr
    print(f"killed with {killed_at} of {size} paused; the next run: {again.stderr.strip() or 'nothing owed'}")
    items = apps.list_namespaced_deployment(namespace).items
    assert all(item.spec.replicas == 0 for item in items)
    events = client.CoreV1Api(kube).list_namespaced_event(namespace,
                                                          label_selector="app.kubernetes.io/managed-by=scaler").items
    names = sorted(event.metadata.name for event in events)
    expected = sorted(f"{item.metadata.name}.{json.loads(item.metadata.annotations[LAST_ACTION])['id']}"
                      for item in items)
    assert names == expected  # one each: none missing, none twice
