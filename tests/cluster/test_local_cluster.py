"""Acceptance for the local GPU cluster: real kube-apiserver, etcd,
controller-manager, scheduler and kwok nodes, plus Prometheus and a Pushgateway."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid

import cluster as local_cluster
import pytest
from kubernetes import client

from tests.conftest import ROOT
from tests.helpers import (
    eventually,
    gpu_deployment,
    instant_query,
    push_metric,
    ready_pods,
)


def _scale(kube, namespace: str, name: str, replicas: int) -> None:
    client.AppsV1Api(kube).patch_namespaced_deployment_scale(
        name, namespace, {"spec": {"replicas": replicas}})


def _pods(kube, namespace: str, app: str) -> list[client.V1Pod]:
    return client.CoreV1Api(kube).list_namespaced_pod(namespace, label_selector=f"app={app}").items


def test_gpu_deployment_pods_run_on_fake_gpu_nodes_and_free_their_gpus(kube, namespace, cluster):
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, gpu_deployment("llm", replicas=3))

    pods = eventually(lambda: len(ready_pods(kube, namespace, "llm")) == 3 and ready_pods(kube, namespace, "llm"),
                      timeout_seconds=60)
    nodes = {node.metadata.name: node for node in client.CoreV1Api(kube).list_node().items}
    for pod in pods:
        assert pod.spec.node_name in nodes
        assert nodes[pod.spec.node_name].status.allocatable["nvidia.com/gpu"] == "8"

    _scale(kube, namespace, "llm", 0)
    eventually(lambda: _pods(kube, namespace, "llm") == [], timeout_seconds=60)

    # Every GPU in the cluster is free again: a Deployment asking for all of
    # them gets every pod Ready, and one more GPU than exists stays Pending.
    total_gpus = sum(int(node.status.allocatable.get("nvidia.com/gpu", "0")) for node in nodes.values())
    apps.create_namespaced_deployment(namespace, gpu_deployment("filler", replicas=total_gpus + 1))
    eventually(lambda: len(ready_pods(kube, namespace, "filler")) == total_gpus, timeout_seconds=120)

    def one_pending_for_gpus():
        pending = [p for p in _pods(kube, namespace, "filler") if p.status.phase == "Pending"]
        return len(pending) == 1 and any(
            "nvidia.com/gpu" in (c.message or "") for c in pending[0].status.conditions or [])
    eventually(one_pending_for_gpus, timeout_seconds=30)

    _scale(kube, namespace, "filler", 0)
    eventually(lambda: _pods(kube, namespace, "filler") == [], timeout_seconds=120)
    _scale(kube, namespace, "llm", 2)
    eventually(lambda: len(ready_pods(kube, namespace, "llm")) == 2, timeout_seconds=60)


def test_hpa_controller_processes_an_hpa(kube, namespace):
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, gpu_deployment("served", replicas=1))
    autoscaling = client.AutoscalingV2Api(kube)
    autoscaling.create_namespaced_horizontal_pod_autoscaler(namespace, client.V2HorizontalPodAutoscaler(
        metadata=client.V1ObjectMeta(name="served"),
        spec=client.V2HorizontalPodAutoscalerSpec(
            scale_target_ref=client.V2CrossVersionObjectReference(
                api_version="apps/v1", kind="Deployment", name="served"),
            min_replicas=1, max_replicas=4,
            metrics=[client.V2MetricSpec(type="Resource", resource=client.V2ResourceMetricSource(
                name="cpu", target=client.V2MetricTarget(type="Utilization", average_utilization=50)))],
        ),
    ))

    def conditions():
        hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler("served", namespace)
        return {c.type: c for c in hpa.status.conditions or []}
    seen = eventually(lambda: "AbleToScale" in conditions() and conditions(), timeout_seconds=60)
    # There is no metrics server here, so the controller reports it cannot get
    # CPU metrics: proof that it read the HPA and its target.
    assert seen["AbleToScale"].status == "True"
    assert "ScalingActive" in seen


def test_pushed_value_comes_back_from_prometheus(cluster):
    value = 42.5
    series = f"scaler_selftest_{uuid.uuid4().hex[:8]}"
    push_metric(cluster.pushgateway_url, job="selftest", name=series, value=value,
                labels={"namespace": "llm", "workload": "chat"})
    result = eventually(lambda: instant_query(cluster.prometheus_url, series), timeout_seconds=10)
    assert float(result[0]["value"][1]) == value
    assert result[0]["metric"]["workload"] == "chat"


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.cluster
def test_up_twice_is_one_cluster_and_down_leaves_nothing(tmp_path):
    state_dir = tmp_path / "second"
    up = [sys.executable, str(ROOT / "deploy/local/up"), "--state-dir", str(state_dir), "--nodes", "1"]
    first = subprocess.run(up, capture_output=True, check=False, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert f"export KUBECONFIG={state_dir.resolve() / 'kubeconfig'}" in first.stdout
    started = local_cluster.Cluster.load(state_dir.resolve())
    assert sorted(started.alive()) == sorted(started.pids)

    second = subprocess.run(up, capture_output=True, check=False, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert "already running" in second.stderr
    assert second.stdout == first.stdout
    assert local_cluster.Cluster.load(state_dir.resolve()).pids == started.pids

    down = subprocess.run([sys.executable, str(ROOT / "deploy/local/down"), "--state-dir", str(state_dir)],
                          capture_output=True, check=False, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert not state_dir.exists()
    assert [name for name, pid in started.pids.items() if local_cluster._pid_alive(pid)] == []
    assert [name for name, port in started.ports.items() if _listening(port)] == []
