"""A real Karpenter (KWOK provider) on the local cluster, started like
`deploy/local/up --karpenter`: it launches a priced GPU node for a pod that
fits on no node, and takes the node away when the pod goes, unless a
do-not-disrupt pod holds it. What Karpenter says while it holds a node is
recorded here for the daemon to read later (see docs/karpenter.md).

Each test starts with no Karpenter node (the previous test's node is waited
out), so its pods land on a node it made. Timings are printed (-s).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import cluster as local_cluster
import karpenter
import pytest
from kubernetes import client, config

from tests.conftest import ROOT
from tests.helpers import eventually, gpu_deployment, ready_pods

pytestmark = pytest.mark.cluster

INSTANCE_TYPES = {t.name: t for t in karpenter.INSTANCE_TYPES}
DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
NODE_GONE_SECONDS = 180  # consolidateAfter + Karpenter's 10 s polling + 15 s validation + drain, with room
HOLD_SECONDS = 60  # a released node of the held test's shape goes in about 30 s


@pytest.fixture(scope="module")
def kube(karpenter_cluster):
    return config.new_client_from_config(config_file=str(karpenter_cluster.kubeconfig))


@pytest.fixture
def namespace(kube, request):
    core = client.CoreV1Api(kube)
    name = f"k-{request.node.name[5:40].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    eventually(lambda: core.read_namespaced_service_account("default", name), timeout_seconds=30)
    eventually(lambda: nodeclaims(kube) == [], timeout_seconds=NODE_GONE_SECONDS)
    yield name
    core.delete_namespace(name, propagation_policy="Background")


def on_karpenter(deployment: client.V1Deployment, annotations: dict | None = None) -> client.V1Deployment:
    """The Deployment's pods select and tolerate the Karpenter NodePool's nodes."""
    spec = deployment.spec.template.spec
    spec.node_selector = {karpenter.LABEL: "true"}
    spec.tolerations = [client.V1Toleration(key=karpenter.LABEL, operator="Equal", value="true",
                                            effect="NoSchedule")]
    if annotations:
        deployment.spec.template.metadata.annotations = annotations
    return deployment


def nodeclaims(kube) -> list[dict]:
    return client.CustomObjectsApi(kube).list_cluster_custom_object("karpenter.sh", "v1", "nodeclaims")["items"]


def nodeclaim_of(kube, node_name: str) -> dict | None:
    """The NodeClaim a Node was launched for. Its status.nodeName may lag the
    Node's readiness; the provider ID is there from launch (the KWOK provider
    names it after the Node)."""
    return next((c for c in nodeclaims(kube)
                 if c.get("status", {}).get("providerID") == f"kwok://{node_name}"), None)


def node_exists(kube, name: str) -> bool:
    try:
        client.CoreV1Api(kube).read_node(name)
    except client.ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def node_events(kube, name: str, reason: str) -> list[client.CoreV1Event]:
    """Events on a Node (cluster-scoped objects' Events live in default)."""
    return client.CoreV1Api(kube).list_namespaced_event(
        "default", field_selector=f"involvedObject.kind=Node,involvedObject.name={name},reason={reason}").items


def scale(kube, namespace: str, name: str, replicas: int) -> None:
    client.AppsV1Api(kube).patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": replicas}})


def ready_on_new_node(kube, namespace: str, app: str) -> client.V1Pod:
    return eventually(lambda: ready_pods(kube, namespace, app), timeout_seconds=90)[0]


def test_pods_that_do_not_ask_for_karpenter_stay_on_the_fixed_nodes(kube, namespace):
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, gpu_deployment("plain", replicas=1))
    pod = ready_on_new_node(kube, namespace, "plain")
    assert pod.spec.node_name.startswith("gpu-node-")

    # More GPUs than a fixed node has, and no toleration: Karpenter says why
    # it will not launch a node, and launches none.
    apps.create_namespaced_deployment(namespace, gpu_deployment("too-big", replicas=1, gpus=9))
    pending = eventually(lambda: client.CoreV1Api(kube).list_namespaced_pod(
        namespace, label_selector="app=too-big").items, timeout_seconds=30)[0]

    def karpenter_refused():
        return [e for e in client.CoreV1Api(kube).list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={pending.metadata.name}").items
            if e.source.component == "karpenter" and e.reason == "FailedScheduling"]
    refused = eventually(karpenter_refused, timeout_seconds=60)
    print(f"\nkarpenter on a pod that does not tolerate its nodes: {refused[0].reason}: {refused[0].message}")
    assert karpenter.LABEL in refused[0].message
    assert nodeclaims(kube) == []


def test_a_pod_that_fits_no_node_gets_a_priced_karpenter_node_that_kwok_runs(kube, namespace):
    created = time.monotonic()
    client.AppsV1Api(kube).create_namespaced_deployment(
        namespace, on_karpenter(gpu_deployment("llm", replicas=1, gpus=3)))
    pod = ready_on_new_node(kube, namespace, "llm")
    took = time.monotonic() - created

    node = client.CoreV1Api(kube).read_node(pod.spec.node_name)
    labels = node.metadata.labels
    # The cheapest type with 3 GPUs, in its cheapest zone, from our file.
    expected = INSTANCE_TYPES["gpu-4x"]
    price = min(expected.hourly_prices)
    assert labels["node.kubernetes.io/instance-type"] == expected.name
    assert labels["topology.kubernetes.io/zone"] == karpenter.ZONES[expected.hourly_prices.index(price)]
    assert float(labels[karpenter.PRICE_LABEL]) == price
    assert labels["karpenter.sh/nodepool"] == karpenter.NODEPOOL
    assert labels[karpenter.LABEL] == "true"
    assert node.status.allocatable["nvidia.com/gpu"] == str(expected.gpus)
    assert node.metadata.annotations["kwok.x-k8s.io/node"] == "fake"
    assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True"
    assert [t.key for t in node.spec.taints] == [karpenter.LABEL]

    claim = nodeclaim_of(kube, node.metadata.name)
    assert claim is not None
    assert {c["type"]: c["status"] for c in claim["status"]["conditions"]}["Ready"] == "True"
    print(f"\nkarpenter: pod Ready on a new {expected.name} node ({labels['topology.kubernetes.io/zone']}, "
          f"${price:.2f}/h) {took:.1f}s after the Deployment was created; node capacity "
          f"{node.status.capacity}, allocatable GPUs {node.status.allocatable['nvidia.com/gpu']}")


def test_scaling_to_zero_consolidates_the_empty_node_away(kube, namespace):
    client.AppsV1Api(kube).create_namespaced_deployment(
        namespace, on_karpenter(gpu_deployment("llm", replicas=1)))
    node_name = ready_on_new_node(kube, namespace, "llm").spec.node_name
    claim_name = nodeclaim_of(kube, node_name)["metadata"]["name"]

    paused = time.monotonic()
    scale(kube, namespace, "llm", 0)
    eventually(lambda: not node_exists(kube, node_name) and nodeclaim_of(kube, node_name) is None,
               timeout_seconds=NODE_GONE_SECONDS, interval_seconds=0.5)
    took = time.monotonic() - paused
    assert claim_name not in [c["metadata"]["name"] for c in nodeclaims(kube)]
    terminating = eventually(lambda: node_events(kube, node_name, "DisruptionTerminating"), timeout_seconds=10)
    print(f"\nkarpenter: node gone {took:.1f}s after the Deployment was scaled to 0 "
          f"(consolidateAfter {karpenter.CONSOLIDATE_AFTER}); Event: {terminating[0].message}")
    assert terminating[0].message == "Disrupting Node: Empty"


def test_a_do_not_disrupt_pod_holds_its_node_until_the_annotation_goes(kube, namespace):
    apps = client.AppsV1Api(kube)
    # A 3-GPU model on a 4-GPU node, and beside it a 1-GPU pod that must not
    # be disrupted.
    apps.create_namespaced_deployment(namespace, on_karpenter(gpu_deployment("llm", replicas=1, gpus=3)))
    node_name = ready_on_new_node(kube, namespace, "llm").spec.node_name
    apps.create_namespaced_deployment(namespace, on_karpenter(
        gpu_deployment("held", replicas=1), annotations={DO_NOT_DISRUPT: "true"}))
    held = ready_on_new_node(kube, namespace, "held")
    assert held.spec.node_name == node_name

    # Paused: a gpu-1x would do for what is left, so Karpenter would replace
    # the node, but the pod holds it and Karpenter says so on the node.
    paused = time.monotonic()
    scale(kube, namespace, "llm", 0)

    def blocked_by_the_pod():
        return [e for e in node_events(kube, node_name, "DisruptionBlocked") if DO_NOT_DISRUPT in e.message]
    blocked = eventually(blocked_by_the_pod, timeout_seconds=200, interval_seconds=1)
    said_after = time.monotonic() - paused
    assert blocked[0].message == (f'Pod has "{DO_NOT_DISRUPT}" annotation '
                                  f"(Pod={namespace}/{held.metadata.name})")

    # The Event can come before the node is even eligible. Once it is
    # (Consolidatable), the node must outlast HOLD_SECONDS, longer than
    # Karpenter takes to replace it once released (asserted below).
    def consolidatable_since():
        conditions = nodeclaim_of(kube, node_name)["status"]["conditions"]
        return next((datetime.fromisoformat(c["lastTransitionTime"]) for c in conditions
                     if c["type"] == "Consolidatable" and c["status"] == "True"), None)
    hold_until = eventually(consolidatable_since, timeout_seconds=60) + timedelta(seconds=HOLD_SECONDS)
    while datetime.now(UTC) < hold_until:
        assert node_exists(kube, node_name), "the held node went away"
        time.sleep(0.5)
    held_for = time.monotonic() - paused
    claim = nodeclaim_of(kube, node_name)
    conditions = {c["type"]: c["status"] for c in claim["status"]["conditions"]}
    said = [f"{e.reason}: {e.message}" for e in client.CoreV1Api(kube).list_namespaced_event(
        "default", field_selector=f"involvedObject.name={node_name}").items if e.source.component == "karpenter"]
    print(f"\nkarpenter: held node still there {held_for:.1f}s after the pause; Event {blocked[0].reason} "
          f"{said_after:.1f}s after it: {blocked[0].message}; NodeClaim conditions {conditions}; "
          f"Karpenter's Events on the node: {said}")
    assert conditions["Consolidatable"] == "True"

    released = time.monotonic()
    client.CoreV1Api(kube).patch_namespaced_pod(
        held.metadata.name, namespace, {"metadata": {"annotations": {DO_NOT_DISRUPT: None}}})
    eventually(lambda: not node_exists(kube, node_name), timeout_seconds=NODE_GONE_SECONDS, interval_seconds=0.5)
    took = time.monotonic() - released
    assert took < HOLD_SECONDS
    moved = ready_on_new_node(kube, namespace, "held")
    cheaper = client.CoreV1Api(kube).read_node(moved.spec.node_name).metadata.labels
    candidate = node_events(kube, node_name, "ConsolidationCandidate")
    terminating = node_events(kube, node_name, "DisruptionTerminating")
    print(f"karpenter: node replaced by a {cheaper['node.kubernetes.io/instance-type']} {took:.1f}s after the "
          f"annotation was removed; Events: {[e.message for e in candidate + terminating]}")
    assert cheaper["node.kubernetes.io/instance-type"] == "gpu-1x"
    assert [e.message for e in terminating] == ["Disrupting Node: Underutilized"]
    savings = min(INSTANCE_TYPES["gpu-4x"].hourly_prices) - min(INSTANCE_TYPES["gpu-1x"].hourly_prices)
    assert any(f"(savings: ${savings:.2f})" in e.message for e in candidate)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_up_with_karpenter_twice_is_one_cluster_and_down_leaves_nothing(tmp_path):
    state_dir = tmp_path / "twice"
    up = [sys.executable, str(ROOT / "deploy/local/up"), "--state-dir", str(state_dir), "--nodes", "1"]
    first = subprocess.run([*up, "--karpenter"], check=False, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    started = local_cluster.Cluster.load(state_dir.resolve())
    assert "karpenter" in started.pids
    assert sorted(started.alive()) == sorted(started.pids)
    assert _listening(started.ports["karpenter-health"]) and _listening(started.ports["karpenter-metrics"])

    # SCALER_KARPENTER=1 asks the same as --karpenter: nothing new starts.
    second = subprocess.run(up, check=False, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "SCALER_KARPENTER": "1"})
    assert second.returncode == 0, second.stderr
    assert "already running" in second.stderr
    assert second.stdout == first.stdout
    assert local_cluster.Cluster.load(state_dir.resolve()).pids == started.pids

    down = subprocess.run([sys.executable, str(ROOT / "deploy/local/down"), "--state-dir", str(state_dir)],
                          check=False, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert not state_dir.exists()
    assert [name for name, pid in started.pids.items() if local_cluster._pid_alive(pid)] == []
    assert [name for name, port in started.ports.items() if _listening(port)] == []
