"""A real Karpenter (v1, its KWOK cloud provider) on the local cluster, for
`deploy/local/up --karpenter`: it launches fake GPU nodes for pods that ask
for them and consolidates them away when they empty, with prices, so tests
can see what pausing a workload saves.

- Instance types: INSTANCE_TYPES, written to `karpenter-instance-types.json`
  in the state directory in the KWOK provider's format (its
  INSTANCE_TYPES_FILE_PATH): on-demand offerings in two zones, each with an
  hourly price. Karpenter picks the cheapest type and offering that fits.
- One KWOKNodeClass and one NodePool (NODEPOOL) whose nodes carry the label
  and the NoSchedule taint `scaler.io/karpenter=true`. Only pods that select
  and tolerate it land there (or make Karpenter launch a node); the fixed
  kwok GPU nodes and the pods of the other tests are left alone.
- Disruption: WhenEmptyOrUnderutilized after CONSOLIDATE_AFTER, every node
  at once, so a test sees an emptied node go in tens of seconds.
- The provider creates each Node itself (no kubelet) with the annotation
  `kwok.x-k8s.io/node=fake`, which is the cluster's kwok selector: kwok makes
  them Ready and runs their pods like the fixed nodes.
- The controller runs as one more component (logs/karpenter.log), with the
  admin kubeconfig, leader election off, metrics and health on 127.0.0.1
  (see deploy/local/build), and stops with the others.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from components import Cluster, ClusterError, free_port, kubectl, log, start, stop_processes, tail, wait_ready

LABEL = "scaler.io/karpenter"
NODEPOOL = "gpu"
NODECLASS = "default"
ZONES = ("local-a", "local-b")
CONSOLIDATE_AFTER = "5s"
GPU_RESOURCE = "nvidia.com/gpu"
PRICE_LABEL = "eks-node-viewer/instance-price"  # set by the KWOK provider: the offering's price
CRDS = ("nodepools.karpenter.sh", "nodeclaims.karpenter.sh", "nodeoverlays.karpenter.sh",
        "kwoknodeclasses.karpenter.kwok.sh", "capacitybuffers.autoscaling.x-k8s.io")


@dataclass(frozen=True)
class InstanceType:
    name: str
    gpus: int
    cpus: int
    memory_gib: int
    hourly_prices: tuple[float, ...]  # on-demand, one per zone in ZONES

    def offerings(self) -> list[dict]:
        return [{
            "Price": price,
            "Available": True,
            "Requirements": [
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]},
            ],
        } for zone, price in zip(ZONES, self.hourly_prices, strict=True)]

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "offerings": self.offerings(),
            "architecture": "amd64",
            "operatingSystems": ["linux"],
            "resources": {"cpu": str(self.cpus), "memory": f"{self.memory_gib}Gi", "pods": "110",
                          GPU_RESOURCE: str(self.gpus)},
        }


# About what an hour of an H100 costs, and bigger boxes a little cheaper per GPU.
INSTANCE_TYPES = (
    InstanceType("gpu-1x", gpus=1, cpus=16, memory_gib=128, hourly_prices=(4.00, 4.20)),
    InstanceType("gpu-4x", gpus=4, cpus=64, memory_gib=512, hourly_prices=(15.20, 15.60)),
    InstanceType("gpu-8x", gpus=8, cpus=128, memory_gib=1024, hourly_prices=(29.60, 30.40)),
)


def manifests() -> list[dict]:
    """The KWOKNodeClass and the GPU NodePool."""
    node_class = {"apiVersion": "karpenter.kwok.sh/v1alpha1", "kind": "KWOKNodeClass",
                  "metadata": {"name": NODECLASS}, "spec": {}}
    node_pool = {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": NODEPOOL},
        "spec": {
            "template": {
                "metadata": {"labels": {LABEL: "true", "nvidia.com/gpu.present": "true"}},
                "spec": {
                    "nodeClassRef": {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": NODECLASS},
                    "requirements": [
                        {"key": "node.kubernetes.io/instance-type", "operator": "In",
                         "values": [t.name for t in INSTANCE_TYPES]},
                        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
                    ],
                    "taints": [{"key": LABEL, "value": "true", "effect": "NoSchedule"}],
                    "expireAfter": "Never",
                },
            },
            "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized",
                           "consolidateAfter": CONSOLIDATE_AFTER, "budgets": [{"nodes": "100%"}]},
        },
    }
    return [node_class, node_pool]


def add_karpenter(cluster: Cluster, bin_dir: Path, *, timeout_seconds: float = 120) -> None:
    """Install the CRDs, start the controller, create the NodeClass and the
    NodePool, and wait until Karpenter reports the NodePool Ready."""
    started = time.monotonic()
    crds = (bin_dir / "karpenter-crds").resolve()  # kubectl does not follow a link to a directory
    kubectl(bin_dir, cluster, "apply", "--server-side", "-f", str(crds))
    kubectl(bin_dir, cluster, "wait", "--for=condition=Established", "--timeout=60s",
            *(f"crd/{name}" for name in CRDS))
    instance_types = cluster.state_dir / "karpenter-instance-types.json"
    instance_types.write_text(json.dumps([t.as_json() for t in INSTANCE_TYPES], indent=2))
    cluster.ports["karpenter-metrics"] = free_port()
    cluster.ports["karpenter-health"] = free_port()
    try:
        # env: the operator takes its kubeconfig only from KUBECONFIG.
        start(cluster, "karpenter", [
            "env", f"KUBECONFIG={cluster.kubeconfig}", str(bin_dir / "karpenter"),
            "--disable-leader-election",
            "--metrics-port", str(cluster.ports["karpenter-metrics"]),
            "--health-probe-port", str(cluster.ports["karpenter-health"]),
            "--instance-types-file-path", str(instance_types),
        ])
        wait_ready(cluster, "karpenter", f"http://127.0.0.1:{cluster.ports['karpenter-health']}/readyz",
                   timeout_seconds=timeout_seconds)
        kubectl(bin_dir, cluster, "apply", "-f", "-",
                stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests()}))
        _wait_nodepool_ready(cluster, bin_dir, timeout_seconds=timeout_seconds)
    except BaseException:
        log(f"karpenter start failed; stopping it (log kept in {cluster.state_dir / 'logs' / 'karpenter.log'})")
        stop_karpenter(cluster)
        raise
    log(f"karpenter ready in {time.monotonic() - started:.1f}s (NodePool {NODEPOOL})")


def _wait_nodepool_ready(cluster: Cluster, bin_dir: Path, *, timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    conditions: dict = {}
    while time.monotonic() < deadline:
        pool = json.loads(kubectl(bin_dir, cluster, "get", "nodepool", NODEPOOL, "-o", "json"))
        conditions = {c["type"]: c for c in pool.get("status", {}).get("conditions", [])}
        if conditions.get("Ready", {}).get("status") == "True":
            return
        time.sleep(0.5)
    state = {t: f"{c['status']} ({c.get('reason', '')}: {c.get('message', '')})" for t, c in conditions.items()}
    raise ClusterError(f"NodePool {NODEPOOL} not Ready after {timeout_seconds:.0f}s: {state or 'no conditions'}; "
                       f"karpenter log:\n{tail(cluster, 'karpenter')}")


def stop_karpenter(cluster: Cluster) -> None:
    """Stop the controller. The nodes it made stay as objects; down removes them with etcd."""
    if "karpenter" in cluster.pids:
        stop_processes(Cluster(cluster.state_dir, ports=cluster.ports, pids={"karpenter": cluster.pids["karpenter"]}))
    cluster.pids.pop("karpenter", None)
    cluster.commands.pop("karpenter", None)
    for name in ("karpenter-metrics", "karpenter-health"):
        cluster.ports.pop(name, None)
    if cluster.state_dir.exists():
        cluster.save()
