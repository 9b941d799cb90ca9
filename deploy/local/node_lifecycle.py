"""Starting and stopping the one real node of `deploy/local/up --real-node`
(containerd, runc, the kubelet) with the scaler image loaded into it. What
the node is made of (configs, namespaces, cgroups) is in node.py; this module
runs it as components of the cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import node as real_node
from components import (
    HERE,
    Cluster,
    ClusterError,
    binaries,
    free_port,
    kubectl,
    log,
    pid_alive,
    reap,
    start,
    stop_processes,
    tail,
)

NODE_DIRS = ("containerd", "cni", "cni-ipam", "kubelet", "pod-logs", "relay", "sysctl", "private")


def build_image() -> tuple[Path, str]:
    """deploy/local/image: the scaler image archive (built or cached) and its reference."""
    result = subprocess.run([str(HERE / "image")], stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise ClusterError(f"deploy/local/image failed with exit code {result.returncode}")
    archive, reference = result.stdout.strip().splitlines()[-2:]
    return Path(archive), reference


def _ctr(cluster: Cluster, *args: str) -> str:
    sock = cluster.state_dir / "node" / "containerd" / "containerd.sock"
    result = subprocess.run(["ctr", "--address", str(sock), "--namespace", "k8s.io", *args],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ClusterError(f"ctr {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def add_real_node(cluster: Cluster, *, timeout_seconds: float = 180) -> None:
    """Start the real node (see node.py) and load the scaler image into it."""
    missing = real_node.missing_programs()
    if missing:
        raise ClusterError(f"the real node needs: {' '.join(missing)}; run deploy/local/install --real-node")
    node_dir = cluster.state_dir / "node"
    for private in real_node.PRIVATE_DIRS:
        if str(node_dir).startswith(private + "/"):
            raise ClusterError(f"the state directory must not be under {private}: the node hides it")
    started = time.monotonic()
    bin_dir = binaries()
    archive, image = build_image()
    pause = _write_node_files(cluster, bin_dir, image)
    try:
        real_node.make_cgroup_root(cluster.node["cgroup_root"])
        enter = _enter_namespaces(cluster, node_dir)
        _start_relays(cluster, enter, node_dir / "relay")
        _start_containerd(cluster, enter, node_dir)
        for loaded in (pause, archive):
            _ctr(cluster, "images", "import", str(loaded))
        start(cluster, "kubelet", [
            *enter, str(bin_dir / "kubelet"),
            "--config", str(node_dir / "kubelet.json"),
            "--kubeconfig", str(node_dir / "kubelet.kubeconfig"),
            "--hostname-override", real_node.NODE_NAME, "--node-ip", real_node.NODE_IP,
            "--root-dir", str(node_dir / "kubelet"), "--cert-dir", str(node_dir / "kubelet" / "pki"),
            "--node-labels", f"{real_node.LABEL}=true",
        ])
        _wait_node_ready(cluster, bin_dir, timeout_seconds=timeout_seconds)
    except BaseException:
        log(f"real node start failed; removing it (logs kept in {cluster.state_dir / 'logs'})")
        stop_real_node(cluster, keep_logs=True)
        raise
    log(f"real node {real_node.NODE_NAME} ready in {time.monotonic() - started:.1f}s with {image}")


def _write_node_files(cluster: Cluster, bin_dir: Path, image: str) -> Path:
    """Record the node in the cluster and write its configs and credentials;
    return the pause image archive."""
    node_dir = cluster.state_dir / "node"
    pki = cluster.state_dir / "pki"
    for sub in NODE_DIRS:
        (node_dir / sub).mkdir(parents=True, exist_ok=True)
    for key, value in real_node.KUBELET_SYSCTLS.items():
        (node_dir / "sysctl" / key.replace("/", ".")).write_text(value + "\n")
    cgroup_root = real_node.cgroup_name(cluster.state_dir)
    kubelet_port = free_port()
    cluster.ports["kubelet"] = kubelet_port
    cluster.node = {
        "image": image, "cgroup_root": cgroup_root, "name": real_node.NODE_NAME,
        "prometheus_url": f"http://{real_node.NODE_IP}:{real_node.PROMETHEUS_PORT}",
        "pushgateway_url": f"http://{real_node.NODE_IP}:{real_node.PUSHGATEWAY_PORT}",
    }
    cluster.save()
    (node_dir / "containerd.toml").write_text(real_node.containerd_config(node_dir))
    (node_dir / "cni" / "10-pods.conflist").write_text(real_node.cni_config(node_dir))
    real_node.node_credentials(pki)
    (node_dir / "kubelet.kubeconfig").write_text(real_node.kubelet_kubeconfig(pki))
    (node_dir / "kubelet.json").write_text(
        real_node.kubelet_config(node_dir, port=kubelet_port, ca=pki / "ca.crt", cgroup_root=cgroup_root))
    return real_node.pause_archive(bin_dir / "pause", node_dir / "pause.tar")


def _enter_namespaces(cluster: Cluster, node_dir: Path) -> list[str]:
    """Start the holder of the node's network and mount namespaces, set them
    up, and return the nsenter prefix that runs a command inside both."""
    start(cluster, "node-namespaces", ["unshare", "--net", "--mount", "--propagation", "private",
                                       "sleep", "infinity"])
    holder = cluster.pids["node-namespaces"]
    own = real_node.namespace_of(os.getpid(), "net")
    deadline = time.monotonic() + 10
    while real_node.namespace_of(holder, "net") in (own, None):
        if time.monotonic() > deadline:
            raise ClusterError("the node's namespaces did not appear")
        time.sleep(0.05)
    enter = real_node.nsenter(holder)
    setup = subprocess.run([*enter, "sh", "-c", real_node.namespace_setup_script(node_dir)],
                           capture_output=True, text=True, check=False)
    if setup.returncode != 0:
        raise ClusterError(f"setting up the node's namespaces failed: {setup.stderr.strip()}")
    return enter


def _start_relays(cluster: Cluster, enter: list[str], relay: Path) -> None:
    # Into the node: the API server at the kubernetes Service address,
    # Prometheus and the Pushgateway at the node's address.
    for name, listen, port in (
            ("apiserver", f"{real_node.SERVICE_IP}:443", cluster.ports["apiserver"]),
            ("prometheus", f"{real_node.NODE_IP}:{real_node.PROMETHEUS_PORT}", cluster.ports["prometheus"]),
            ("pushgateway", f"{real_node.NODE_IP}:{real_node.PUSHGATEWAY_PORT}", cluster.ports["pushgateway"])):
        sock = relay / f"{name}.sock"
        start(cluster, f"node-relay-{name}-host", [
            "socat", f"UNIX-LISTEN:{sock},fork,mode=600,unlink-early", f"TCP:127.0.0.1:{port}"])
        address, listen_port = listen.split(":")
        start(cluster, f"node-relay-{name}", [
            *enter, "socat", f"TCP-LISTEN:{listen_port},bind={address},fork,reuseaddr",
            f"UNIX-CONNECT:{sock}"])
    # Out of the node: the kubelet's port, for the API server (logs, exec).
    kubelet_port = cluster.ports["kubelet"]
    sock = relay / "kubelet.sock"
    start(cluster, "node-relay-kubelet", [
        *enter, "socat", f"UNIX-LISTEN:{sock},fork,mode=600,unlink-early", f"TCP:127.0.0.1:{kubelet_port}"])
    start(cluster, "node-relay-kubelet-host", [
        "socat", f"TCP-LISTEN:{kubelet_port},bind=127.0.0.1,fork,reuseaddr", f"UNIX-CONNECT:{sock}"])


def _start_containerd(cluster: Cluster, enter: list[str], node_dir: Path) -> None:
    start(cluster, "containerd", [*enter, "containerd", "--config", str(node_dir / "containerd.toml")])
    deadline = time.monotonic() + 30
    while True:
        if not pid_alive(cluster.pids["containerd"]):
            raise ClusterError(f"containerd exited during start-up:\n{tail(cluster, 'containerd')}")
        try:
            _ctr(cluster, "version")
            return
        except ClusterError:
            if time.monotonic() > deadline:
                raise ClusterError(f"containerd not answering after 30s:\n{tail(cluster, 'containerd')}") from None
            time.sleep(0.2)


def refresh_image(cluster: Cluster) -> str:
    """Build the image if the sources changed since the node loaded it, load
    the new one into the node, and return its reference."""
    archive, image = build_image()
    if image != cluster.node["image"]:
        _ctr(cluster, "images", "import", str(archive))
        cluster.node["image"] = image
        cluster.save()
        log(f"loaded {image} into the real node")
    return image


def _wait_node_ready(cluster: Cluster, bin_dir: Path, *, timeout_seconds: float) -> None:
    """Ready, and none of the not-ready/uninitialized taints left (ours stays)."""
    deadline = time.monotonic() + timeout_seconds
    state = "not registered"
    while time.monotonic() < deadline:
        if not pid_alive(cluster.pids["kubelet"]):
            raise ClusterError(f"the kubelet exited during start-up:\n{tail(cluster, 'kubelet')}")
        try:
            node = json.loads(kubectl(bin_dir, cluster, "get", "node", real_node.NODE_NAME, "-o", "json"))
        except ClusterError:
            time.sleep(0.5)
            continue
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))
        taints = [t["key"] for t in node["spec"].get("taints", []) if t["key"] != real_node.LABEL]
        if ready and not taints:
            return
        state = f"ready={ready}, taints={taints}"
        time.sleep(0.5)
    raise ClusterError(f"real node not ready after {timeout_seconds:.0f}s ({state}); kubelet log:\n"
                       f"{tail(cluster, 'kubelet')}")


def stop_real_node(cluster: Cluster, *, keep_logs: bool = False) -> None:
    """Stop everything the real node runs (kubelet, containerd, its shims and
    every container, the relays), remove its cgroups and its namespaces. The
    node directory goes with the state directory."""
    holder = cluster.pids.get("node-namespaces")
    if not cluster.node and holder is None:
        return
    mount_ns = real_node.namespace_of(holder, "mnt") if holder and pid_alive(holder) else None
    cgroup_root = cluster.node.get("cgroup_root") or real_node.cgroup_name(cluster.state_dir)
    for name in ("kubelet", "containerd"):
        if name in cluster.pids and pid_alive(cluster.pids[name]):
            real_node.kill(cluster.pids[name])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        inside = set(real_node.processes_in(mount_ns, "mnt")) if mount_ns else set()
        inside.discard(holder)
        inside |= real_node.cgroup_pids(cgroup_root)
        inside = {pid for pid in inside if pid_alive(pid)}
        if not inside:
            break
        for pid in inside:
            real_node.kill(pid)
        for pid in cluster.pids.values():
            reap(pid)
        time.sleep(0.1)
    node_pids = {name: pid for name, pid in cluster.pids.items()
                 if name.startswith("node-") or name in ("kubelet", "containerd")}
    stop_processes(Cluster(cluster.state_dir, ports=cluster.ports, pids=node_pids))
    left = real_node.remove_cgroup_root(cgroup_root)
    if left:
        log(f"could not remove cgroups: {', '.join(left)}")
    for name in node_pids:
        cluster.pids.pop(name, None)
    cluster.ports.pop("kubelet", None)
    cluster.node = {}
    if cluster.state_dir.exists():
        cluster.save()
        shutil.rmtree(cluster.state_dir / "node", ignore_errors=True)
