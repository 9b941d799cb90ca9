"""The local GPU cluster: etcd, kube-apiserver, controller-manager, scheduler,
kwok with fake GPU nodes, Prometheus and a Pushgateway, all on 127.0.0.1;
optionally one real node (containerd, runc, kubelet: node.py, node_lifecycle.py)
with the scaler image built from deploy/Dockerfile loaded into it, and
optionally a real Karpenter with its KWOK provider (karpenter.py).

Standard library only, so it runs on a fresh machine before anything is
installed. `up` and `down` beside this file are its command-line entry points,
and the test fixtures call the same functions, so tests and the demo share one
path.

State lives in one directory (default ~/.cache/scaler/cluster): certificates,
kubeconfig, each component's data and log, and `components.json` naming every
process started with its pid and port (components.py). `down` stops exactly
those processes and removes the directory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import node as real_node  # noqa: E402  (cluster.real_node: the node's names, for the demo)
from components import (  # noqa: E402
    CACHE_DIR,
    DEFAULT_STATE_DIR,
    Cluster,
    ClusterError,
    admin_context,
    binaries,
    find_program,
    free_port,
    kubectl,
    log,
    restart_component,
    start,
    stop_component,
    stop_processes,
    wait_ready,
)
from components import pid_alive as _pid_alive  # noqa: E402
from credentials import make_certificates, write_kubeconfig  # noqa: E402
from karpenter import add_karpenter  # noqa: E402
from node_lifecycle import add_real_node, build_image, refresh_image, stop_real_node  # noqa: E402

# What other code (tests, benchmarks, the demo, up and down) uses from here.
__all__ = [
    "CACHE_DIR", "DEFAULT_STATE_DIR", "Cluster", "ClusterError", "_pid_alive", "add_real_node", "binaries",
    "build_image", "down", "gpu_node_manifest", "main_down", "main_up", "real_node", "refresh_image",
    "restart_component", "stop_component", "stop_real_node", "up",
]

SERVICE_CIDR = "10.96.0.0/16"
GPU_RESOURCE = "nvidia.com/gpu"
PORTS = ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok", "prometheus", "pushgateway")


def gpu_node_manifest(name: str, gpus: int) -> dict:
    capacity = {"cpu": "64", "memory": "512Gi", "pods": "110", GPU_RESOURCE: str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": "FAKE-H100-80GB",
            },
        },
        "spec": {},
        "status": {"allocatable": capacity, "capacity": capacity},
    }


def _prometheus_config(cluster: Cluster) -> Path:
    config = cluster.state_dir / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: pushgateway\n"
        "    honor_labels: true\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{cluster.ports['pushgateway']}']\n"
        "  - job_name: scaler\n"
        "    file_sd_configs:\n"
        f"      - files: ['{cluster.state_dir / 'scrape-targets.json'}']\n"
        "        refresh_interval: 1s\n"
    )
    (cluster.state_dir / "scrape-targets.json").write_text("[]\n")
    return config


def up(state_dir: Path = DEFAULT_STATE_DIR, *, nodes: int = 4, gpus_per_node: int = 8,
       with_real_node: bool = False, karpenter: bool = False) -> Cluster:
    """Start the cluster, or return the one already running in state_dir
    (adding the real node or Karpenter to it if asked and missing)."""
    state_dir = state_dir.resolve()
    existing = _running(state_dir)
    if existing is not None:
        if with_real_node and not existing.node:
            add_real_node(existing)
        elif with_real_node:
            refresh_image(existing)
        if karpenter and "karpenter" not in existing.pids:
            add_karpenter(existing, binaries())
        return existing

    bin_dir = binaries()
    prometheus = find_program("prometheus")
    pushgateway = find_program("prometheus-pushgateway", "pushgateway")
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "logs").mkdir(exist_ok=True)
    cluster = Cluster(state_dir=state_dir)
    for name in PORTS:
        cluster.ports[name] = free_port()
    cluster.save()
    try:
        make_certificates(state_dir / "pki")
        write_kubeconfig(cluster)
        _start_etcd_and_apiserver(cluster, bin_dir)
        _start_controllers(cluster, bin_dir)
        _start_monitoring(cluster, prometheus=prometheus, pushgateway=pushgateway)
        _wait_started(cluster)
        _add_gpu_nodes(cluster, bin_dir, nodes=nodes, gpus_per_node=gpus_per_node)
    except BaseException:
        log(f"start failed; stopping what was started (logs kept in {state_dir / 'logs'})")
        stop_processes(cluster)
        raise
    (state_dir / "bin").unlink(missing_ok=True)
    (state_dir / "bin").symlink_to(bin_dir)
    if with_real_node:
        add_real_node(cluster)
    if karpenter:
        add_karpenter(cluster, bin_dir)
    return cluster


def _running(state_dir: Path) -> Cluster | None:
    """The cluster recorded in state_dir if all of it runs; a partial one is
    stopped and removed."""
    existing = Cluster.load(state_dir)
    if existing is None:
        return None
    running = existing.alive()
    if running and len(running) == len(existing.pids):
        log(f"already running in {state_dir}")
        return existing
    log(f"found a partial cluster in {state_dir} ({', '.join(running) or 'nothing'} running); restarting it")
    down(state_dir)
    return None


def _start_etcd_and_apiserver(cluster: Cluster, bin_dir: Path) -> None:
    state_dir, pki = cluster.state_dir, cluster.state_dir / "pki"
    start(cluster, "etcd", [
        str(bin_dir / "etcd"), "--name", "local", "--data-dir", str(state_dir / "etcd"),
        "--listen-client-urls", f"http://127.0.0.1:{cluster.ports['etcd']}",
        "--advertise-client-urls", f"http://127.0.0.1:{cluster.ports['etcd']}",
        "--listen-peer-urls", f"http://127.0.0.1:{cluster.ports['etcd-peer']}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{cluster.ports['etcd-peer']}",
        "--initial-cluster", f"local=http://127.0.0.1:{cluster.ports['etcd-peer']}",
        "--unsafe-no-fsync", "--quota-backend-bytes", str(4 * 1024**3),
        "--log-level", "warn",
    ])
    wait_ready(cluster, "etcd", f"http://127.0.0.1:{cluster.ports['etcd']}/health")

    start(cluster, "apiserver", [
        str(bin_dir / "kube-apiserver"),
        "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
        "--secure-port", str(cluster.ports["apiserver"]),
        "--etcd-servers", f"http://127.0.0.1:{cluster.ports['etcd']}",
        "--tls-cert-file", str(pki / "apiserver.crt"),
        "--tls-private-key-file", str(pki / "apiserver.key"),
        "--client-ca-file", str(pki / "ca.crt"),
        # Node: what a kubelet (group system:nodes) may do, for the real node.
        "--authorization-mode", "Node,RBAC",
        "--kubelet-client-certificate", str(pki / "admin.crt"),
        "--kubelet-client-key", str(pki / "admin.key"),
        "--kubelet-preferred-address-types", "Hostname,InternalIP",
        "--service-account-issuer", "https://kubernetes.default.svc",
        "--service-account-key-file", str(pki / "sa.pub"),
        "--service-account-signing-key-file", str(pki / "sa.key"),
        "--api-audiences", "https://kubernetes.default.svc",
        "--service-cluster-ip-range", SERVICE_CIDR,
        "--endpoint-reconciler-type", "none",
        "--allow-privileged",
        "--max-requests-inflight", "2000", "--max-mutating-requests-inflight", "1000",
        "--enable-priority-and-fairness=false",
        "--profiling=false",
    ])
    wait_ready(cluster, "apiserver", f"{cluster.apiserver_url}/readyz",
               context=admin_context(cluster), timeout_seconds=120)


def _start_controllers(cluster: Cluster, bin_dir: Path) -> None:
    """The controller-manager, the scheduler and kwok; _wait_started waits for them."""
    pki = cluster.state_dir / "pki"
    start(cluster, "controller-manager", [
        str(bin_dir / "kube-controller-manager"),
        "--kubeconfig", str(cluster.kubeconfig),
        "--authentication-kubeconfig", str(cluster.kubeconfig),
        "--authorization-kubeconfig", str(cluster.kubeconfig),
        "--bind-address", "127.0.0.1", "--secure-port", str(cluster.ports["controller-manager"]),
        "--leader-elect=false",
        "--service-account-private-key-file", str(pki / "sa.key"),
        "--root-ca-file", str(pki / "ca.crt"),
        "--use-service-account-credentials=false",
        "--controllers", "*,-nodeipam,-cloud-node-lifecycle,-route,-service,-persistentvolume-binder,-attachdetach",
        "--horizontal-pod-autoscaler-sync-period", "5s",
        "--kube-api-qps", "500", "--kube-api-burst", "1000",
        "--concurrent-deployment-syncs", "20", "--concurrent-replicaset-syncs", "20",
        "--concurrent-statefulset-syncs", "20", "--concurrent-gc-syncs", "40",
    ])
    start(cluster, "scheduler", [
        str(bin_dir / "kube-scheduler"),
        "--kubeconfig", str(cluster.kubeconfig),
        "--authentication-kubeconfig", str(cluster.kubeconfig),
        "--authorization-kubeconfig", str(cluster.kubeconfig),
        "--bind-address", "127.0.0.1", "--secure-port", str(cluster.ports["scheduler"]),
        "--leader-elect=false",
        "--kube-api-qps", "500", "--kube-api-burst", "1000",
    ])
    start(cluster, "kwok", [
        str(bin_dir / "kwok"),
        "--kubeconfig", str(cluster.kubeconfig),
        "--manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake",
        "--server-address", f"127.0.0.1:{cluster.ports['kwok']}",
        "--node-ip", "10.244.0.1", "--cidr", "10.244.0.0/16",
        "--node-lease-duration-seconds", "40",
        "--config", str(HERE / "kwok-stages.yaml"),
    ])


def _start_monitoring(cluster: Cluster, *, prometheus: str, pushgateway: str) -> None:
    start(cluster, "pushgateway", [
        pushgateway, f"--web.listen-address=127.0.0.1:{cluster.ports['pushgateway']}",
    ])
    start(cluster, "prometheus", [
        prometheus, f"--config.file={_prometheus_config(cluster)}",
        f"--web.listen-address=127.0.0.1:{cluster.ports['prometheus']}",
        f"--storage.tsdb.path={cluster.state_dir / 'prometheus'}",
        "--storage.tsdb.retention.time=1d", "--web.enable-lifecycle",
        "--query.lookback-delta=15s",
    ])


def _wait_started(cluster: Cluster) -> None:
    secure = ssl.create_default_context()
    secure.check_hostname = False
    secure.verify_mode = ssl.CERT_NONE
    for name in ("controller-manager", "scheduler"):
        wait_ready(cluster, name, f"https://127.0.0.1:{cluster.ports[name]}/healthz", context=secure)
    wait_ready(cluster, "kwok", f"http://127.0.0.1:{cluster.ports['kwok']}/healthz")
    wait_ready(cluster, "pushgateway", f"{cluster.pushgateway_url}/-/ready")
    wait_ready(cluster, "prometheus", f"{cluster.prometheus_url}/-/ready")


def _add_gpu_nodes(cluster: Cluster, bin_dir: Path, *, nodes: int, gpus_per_node: int) -> None:
    """The fixed kwok GPU nodes, Ready and untainted, and the default ServiceAccount."""
    nodes_list = {"apiVersion": "v1", "kind": "List", "items": [
        gpu_node_manifest(f"gpu-node-{i}", gpus_per_node) for i in range(nodes)]}
    kubectl(bin_dir, cluster, "apply", "-f", "-", stdin=json.dumps(nodes_list))
    kubectl(bin_dir, cluster, "wait", "--for=condition=Ready", "node", "--all", "--timeout=60s")
    _wait_untainted(bin_dir, cluster)
    # The default ServiceAccount appears asynchronously; later tests need it.
    kubectl(bin_dir, cluster, "wait", "--for=create", "serviceaccount/default",
            "-n", "default", "--timeout=60s")


def _wait_untainted(bin_dir: Path, cluster: Cluster, *, timeout_seconds: float = 60) -> None:
    """Nodes are born with the not-ready taint; the node-lifecycle controller
    lifts it once kwok reports them Ready. Pods schedule only after that."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        nodes = json.loads(kubectl(bin_dir, cluster, "get", "nodes", "-o", "json"))["items"]
        tainted = [n["metadata"]["name"] for n in nodes if n["spec"].get("taints")]
        if not tainted:
            return
        if time.monotonic() > deadline:
            raise ClusterError(f"nodes still tainted after {timeout_seconds:.0f}s: {', '.join(tainted)}; "
                               f"see {cluster.state_dir / 'logs' / 'controller-manager.log'}")
        time.sleep(0.3)


def down(state_dir: Path = DEFAULT_STATE_DIR) -> None:
    state_dir = state_dir.resolve()
    cluster = Cluster.load(state_dir)
    if cluster is not None:
        stop_real_node(cluster)
        stop_processes(cluster)
    if state_dir.exists():
        shutil.rmtree(state_dir)


def main_up(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/local/up", description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", type=Path,
                        default=Path(os.environ.get("SCALER_CLUSTER_STATE_DIR", DEFAULT_STATE_DIR)))
    parser.add_argument("--nodes", type=int, default=int(os.environ.get("SCALER_GPU_NODES", "4")))
    parser.add_argument("--gpus-per-node", type=int, default=int(os.environ.get("SCALER_GPUS_PER_NODE", "8")))
    parser.add_argument("--real-node", action="store_true",
                        default=os.environ.get("SCALER_REAL_NODE", "") not in ("", "0", "false"),
                        help="also start one real node (containerd, runc, kubelet) with the scaler image "
                             "built from deploy/Dockerfile loaded into it (SCALER_REAL_NODE=1)")
    parser.add_argument("--karpenter", action="store_true",
                        default=os.environ.get("SCALER_KARPENTER", "") not in ("", "0", "false"),
                        help="also start Karpenter with its KWOK provider and a GPU NodePool whose nodes "
                             "take only pods that select and tolerate scaler.io/karpenter=true "
                             "(SCALER_KARPENTER=1)")
    args = parser.parse_args(argv)
    try:
        cluster = up(args.state_dir, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                     with_real_node=args.real_node, karpenter=args.karpenter)
    except (ClusterError, subprocess.CalledProcessError) as error:
        print(f"deploy/local/up: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(cluster.exports())
    return 0


def main_down(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/local/down",
                                     description="Stop the local cluster and remove its state.")
    parser.add_argument("--state-dir", type=Path,
                        default=Path(os.environ.get("SCALER_CLUSTER_STATE_DIR", DEFAULT_STATE_DIR)))
    args = parser.parse_args(argv)
    down(args.state_dir)
    return 0
