"""The local GPU cluster: etcd, kube-apiserver, controller-manager, scheduler,
kwok with fake GPU nodes, Prometheus and a Pushgateway, all on 127.0.0.1;
optionally one real node (containerd, runc, kubelet: node.py) with the scaler
image built from deploy/Dockerfile loaded into it.

Standard library only, so it runs on a fresh machine before anything is
installed. `up` and `down` beside this file are its command-line entry points,
and the test fixtures call the same functions, so tests and the demo share one
path.

State lives in one directory (default ~/.cache/scaler/cluster): certificates,
kubeconfig, each component's data and log, and `components.json` naming every
process started with its pid and port. `down` stops exactly those processes and
removes the directory.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import node as real_node  # noqa: E402

CACHE_DIR = Path(os.environ.get("SCALER_CACHE_DIR", Path.home() / ".cache" / "scaler"))
DEFAULT_STATE_DIR = CACHE_DIR / "cluster"
SERVICE_CIDR = "10.96.0.0/16"
GPU_RESOURCE = "nvidia.com/gpu"


class ClusterError(RuntimeError):
    pass


@dataclass
class Cluster:
    state_dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)
    # The real node, when there is one: image, in-cluster URLs, cgroup root.
    node: dict = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['prometheus']}"

    @property
    def pushgateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['pushgateway']}"

    def exports(self) -> str:
        lines = {
            "KUBECONFIG": self.kubeconfig,
            "SCALER_PROMETHEUS_URL": self.prometheus_url,
            "SCALER_PUSHGATEWAY_URL": self.pushgateway_url,
            "SCALER_CLUSTER_STATE_DIR": self.state_dir,
        }
        if self.node:
            lines["SCALER_IMAGE"] = self.node["image"]
            lines["SCALER_NODE_PROMETHEUS_URL"] = self.node["prometheus_url"]
        return "".join(f"export {k}={shlex.quote(str(v))}\n" for k, v in lines.items())

    def save(self) -> None:
        record = {"ports": self.ports, "pids": self.pids, "commands": self.commands, "node": self.node}
        (self.state_dir / "components.json").write_text(json.dumps(record, indent=2))

    @classmethod
    def load(cls, state_dir: Path) -> Cluster | None:
        try:
            record = json.loads((state_dir / "components.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return cls(state_dir=state_dir, ports=record["ports"], pids=record["pids"],
                   commands=record.get("commands", {}), node=record.get("node", {}))

    def alive(self) -> list[str]:
        return [name for name, pid in self.pids.items() if _pid_alive(pid)]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is not running.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log(message: str) -> None:
    print(f"cluster: {message}", file=sys.stderr, flush=True)


def binaries() -> Path:
    """Build (or find in the cache) the Go binaries; return their directory."""
    result = subprocess.run(
        [str(HERE / "build")], stdout=subprocess.PIPE, text=True, check=False
    )
    if result.returncode != 0:
        raise ClusterError(f"deploy/local/build failed with exit code {result.returncode}")
    return Path(result.stdout.strip().splitlines()[-1])


def _find(program: str, *candidates: str) -> str:
    for name in (program, *candidates):
        path = shutil.which(name)
        if path:
            return path
    raise ClusterError(
        f"{program} not found on PATH; install it with: apt-get install -y {program}"
    )


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_certificates(pki: Path) -> None:
    """A CA, the API server's serving certificate, an admin client certificate
    (group system:masters) and the service-account signing key pair."""
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("genrsa", "-out", "ca.key", "2048", cwd=pki)
    _openssl("req", "-x509", "-new", "-key", "ca.key", "-days", "30", "-subj",
             "/CN=scaler-local-ca", "-out", "ca.crt", cwd=pki)
    (pki / "server.ext").write_text(
        # In-cluster clients dial the kubernetes Service (the first address of
        # the service CIDR) by IP and by name.
        f"subjectAltName=IP:127.0.0.1,IP:{real_node.SERVICE_IP},DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n"
        "extendedKeyUsage=serverAuth\n"
    )
    (pki / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subject, ext in (
        ("apiserver", "/CN=kube-apiserver", "server.ext"),
        ("admin", "/O=system:masters/CN=scaler-admin", "client.ext"),
    ):
        _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=pki)
        _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=pki)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "30", "-extfile", ext, "-out", f"{name}.crt", cwd=pki)
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def _write_kubeconfig(cluster: Cluster) -> None:
    pki = cluster.state_dir / "pki"
    cluster.kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "scaler-local", "cluster": {
                    "server": cluster.apiserver_url,
                    "certificate-authority": str(pki / "ca.crt")}}],
                "users": [{"name": "scaler-admin", "user": {
                    "client-certificate": str(pki / "admin.crt"),
                    "client-key": str(pki / "admin.key")}}],
                "contexts": [{"name": "scaler-local", "context": {
                    "cluster": "scaler-local", "user": "scaler-admin"}}],
                "current-context": "scaler-local",
            },
            indent=2,
        )
    )


def _start(cluster: Cluster, name: str, argv: list[str]) -> None:
    log = open(cluster.state_dir / "logs" / f"{name}.log", "ab")
    process = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, cwd=cluster.state_dir,
    )
    log.close()
    cluster.pids[name] = process.pid
    cluster.commands[name] = argv
    cluster.save()


def _tail(cluster: Cluster, name: str, lines: int = 30) -> str:
    path = cluster.state_dir / "logs" / f"{name}.log"
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text)


def _wait(cluster: Cluster, name: str, url: str, *, timeout_seconds: float = 60,
          context: ssl.SSLContext | None = None) -> None:
    """Poll url until it answers 200; on timeout or exit, fail with the log tail."""
    deadline = time.monotonic() + timeout_seconds
    last_error = "no answer"
    while time.monotonic() < deadline:
        if not _pid_alive(cluster.pids[name]):
            raise ClusterError(
                f"{name} exited during start-up; last lines of "
                f"{cluster.state_dir / 'logs' / (name + '.log')}:\n{_tail(cluster, name)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as answer:
                if answer.status == 200:
                    return
                last_error = f"HTTP {answer.status}"
        except (urllib.error.URLError, OSError) as error:
            last_error = str(error)
        time.sleep(0.3)
    raise ClusterError(
        f"{name} not ready at {url} after {timeout_seconds:.0f}s ({last_error}); last lines of "
        f"{cluster.state_dir / 'logs' / (name + '.log')}:\n{_tail(cluster, name)}"
    )


def _admin_context(cluster: Cluster) -> ssl.SSLContext:
    pki = cluster.state_dir / "pki"
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return context


def _kubectl(bin_dir: Path, cluster: Cluster, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(bin_dir / "kubectl"), "--kubeconfig", str(cluster.kubeconfig), *args],
        input=stdin, capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


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
       with_real_node: bool = False) -> Cluster:
    """Start the cluster, or return the one already running in state_dir
    (adding the real node to it if asked and missing)."""
    state_dir = state_dir.resolve()
    existing = Cluster.load(state_dir)
    if existing is not None:
        running = existing.alive()
        if running and len(running) == len(existing.pids):
            _log(f"already running in {state_dir}")
            if with_real_node and not existing.node:
                add_real_node(existing)
            elif with_real_node:
                refresh_image(existing)
            return existing
        _log(f"found a partial cluster in {state_dir} ({', '.join(running) or 'nothing'} running); restarting it")
        down(state_dir)

    bin_dir = binaries()
    prometheus = _find("prometheus")
    pushgateway = _find("prometheus-pushgateway", "pushgateway")

    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "logs").mkdir(exist_ok=True)
    cluster = Cluster(state_dir=state_dir)
    for name in ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler",
                 "kwok", "prometheus", "pushgateway"):
        cluster.ports[name] = _free_port()
    cluster.save()
    pki = state_dir / "pki"
    try:
        _make_certificates(pki)
        _write_kubeconfig(cluster)

        _start(cluster, "etcd", [
            str(bin_dir / "etcd"), "--name", "local", "--data-dir", str(state_dir / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{cluster.ports['etcd']}",
            "--advertise-client-urls", f"http://127.0.0.1:{cluster.ports['etcd']}",
            "--listen-peer-urls", f"http://127.0.0.1:{cluster.ports['etcd-peer']}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{cluster.ports['etcd-peer']}",
            "--initial-cluster", f"local=http://127.0.0.1:{cluster.ports['etcd-peer']}",
            "--unsafe-no-fsync", "--quota-backend-bytes", str(4 * 1024**3),
            "--log-level", "warn",
        ])
        _wait(cluster, "etcd", f"http://127.0.0.1:{cluster.ports['etcd']}/health")

        _start(cluster, "apiserver", [
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
        _wait(cluster, "apiserver", f"{cluster.apiserver_url}/readyz",
              context=_admin_context(cluster), timeout_seconds=120)

        _start(cluster, "controller-manager", [
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
        _start(cluster, "scheduler", [
            str(bin_dir / "kube-scheduler"),
            "--kubeconfig", str(cluster.kubeconfig),
            "--authentication-kubeconfig", str(cluster.kubeconfig),
            "--authorization-kubeconfig", str(cluster.kubeconfig),
            "--bind-address", "127.0.0.1", "--secure-port", str(cluster.ports["scheduler"]),
            "--leader-elect=false",
            "--kube-api-qps", "500", "--kube-api-burst", "1000",
        ])
        _start(cluster, "kwok", [
            str(bin_dir / "kwok"),
            "--kubeconfig", str(cluster.kubeconfig),
            "--manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake",
            "--server-address", f"127.0.0.1:{cluster.ports['kwok']}",
            "--node-ip", "10.244.0.1", "--cidr", "10.244.0.0/16",
            "--node-lease-duration-seconds", "40",
            "--config", str(HERE / "kwok-stages.yaml"),
        ])
        _start(cluster, "pushgateway", [
            pushgateway, f"--web.listen-address=127.0.0.1:{cluster.ports['pushgateway']}",
        ])
        _start(cluster, "prometheus", [
            prometheus, f"--config.file={_prometheus_config(cluster)}",
            f"--web.listen-address=127.0.0.1:{cluster.ports['prometheus']}",
            f"--storage.tsdb.path={state_dir / 'prometheus'}",
            "--storage.tsdb.retention.time=1d", "--web.enable-lifecycle",
            "--query.lookback-delta=15s",
        ])
        secure = ssl.create_default_context()
        secure.check_hostname = False
        secure.verify_mode = ssl.CERT_NONE
        for name in ("controller-manager", "scheduler"):
            _wait(cluster, name, f"https://127.0.0.1:{cluster.ports[name]}/healthz", context=secure)
        _wait(cluster, "kwok", f"http://127.0.0.1:{cluster.ports['kwok']}/healthz")
        _wait(cluster, "pushgateway", f"{cluster.pushgateway_url}/-/ready")
        _wait(cluster, "prometheus", f"{cluster.prometheus_url}/-/ready")

        nodes_list = {"apiVersion": "v1", "kind": "List", "items": [
            gpu_node_manifest(f"gpu-node-{i}", gpus_per_node) for i in range(nodes)]}
        _kubectl(bin_dir, cluster, "apply", "-f", "-", stdin=json.dumps(nodes_list))
        _kubectl(bin_dir, cluster, "wait", "--for=condition=Ready", "node", "--all", "--timeout=60s")
        _wait_untainted(bin_dir, cluster)
        # The default ServiceAccount appears asynchronously; later tests need it.
        _kubectl(bin_dir, cluster, "wait", "--for=create", "serviceaccount/default",
                 "-n", "default", "--timeout=60s")
    except BaseException:
        _log(f"start failed; stopping what was started (logs kept in {state_dir / 'logs'})")
        _stop_processes(cluster)
        raise
    (state_dir / "bin").unlink(missing_ok=True)
    (state_dir / "bin").symlink_to(bin_dir)
    if with_real_node:
        add_real_node(cluster)
    return cluster


def _wait_untainted(bin_dir: Path, cluster: Cluster, *, timeout_seconds: float = 60) -> None:
    """Nodes are born with the not-ready taint; the node-lifecycle controller
    lifts it once kwok reports them Ready. Pods schedule only after that."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        nodes = json.loads(_kubectl(bin_dir, cluster, "get", "nodes", "-o", "json"))["items"]
        tainted = [n["metadata"]["name"] for n in nodes if n["spec"].get("taints")]
        if not tainted:
            return
        if time.monotonic() > deadline:
            raise ClusterError(f"nodes still tainted after {timeout_seconds:.0f}s: {', '.join(tainted)}; "
                               f"see {cluster.state_dir / 'logs' / 'controller-manager.log'}")
        time.sleep(0.3)


def _stop_processes(cluster: Cluster, *, grace_seconds: float = 10) -> None:
    # Stop consumers before what they depend on, etcd last.
    order = ["prometheus", "pushgateway", "kwok", "scheduler", "controller-manager", "apiserver", "etcd"]
    names = sorted(cluster.pids, key=lambda n: order.index(n) if n in order else -1)
    for name in names:
        pid = cluster.pids[name]
        if not _pid_alive(pid):
            continue
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + grace_seconds
        while _pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if _pid_alive(pid):
            _log(f"{name} (pid {pid}) ignored SIGTERM; killing it")
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _reap(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


READY_PATHS = {"prometheus": "/-/ready", "pushgateway": "/-/ready"}


def stop_component(cluster: Cluster, name: str) -> None:
    """Stop one component (fault tests); restart_component brings it back."""
    _stop_processes(Cluster(cluster.state_dir, ports=cluster.ports, pids={name: cluster.pids[name]}))


def restart_component(cluster: Cluster, name: str) -> None:
    """Start one stopped component again with its own command line and port,
    and wait until it is ready. For Prometheus and the Pushgateway."""
    stop_component(cluster, name)
    _start(cluster, name, cluster.commands[name])
    _wait(cluster, name, f"http://127.0.0.1:{cluster.ports[name]}{READY_PATHS[name]}")


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
    pki = cluster.state_dir / "pki"
    for sub in ("containerd", "cni", "cni-ipam", "kubelet", "pod-logs", "relay", "sysctl", "private"):
        (node_dir / sub).mkdir(parents=True, exist_ok=True)
    for key, value in real_node.KUBELET_SYSCTLS.items():
        (node_dir / "sysctl" / key.replace("/", ".")).write_text(value + "\n")
    cgroup_root = real_node.cgroup_name(cluster.state_dir)
    kubelet_port = _free_port()
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
    pause = real_node.pause_archive(bin_dir / "pause", node_dir / "pause.tar")
    try:
        real_node.make_cgroup_root(cgroup_root)
        _start(cluster, "node-namespaces", ["unshare", "--net", "--mount", "--propagation", "private",
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

        relay = node_dir / "relay"
        # Into the node: the API server at the kubernetes Service address,
        # Prometheus and the Pushgateway at the node's address.
        for name, listen, port in (
                ("apiserver", f"{real_node.SERVICE_IP}:443", cluster.ports["apiserver"]),
                ("prometheus", f"{real_node.NODE_IP}:{real_node.PROMETHEUS_PORT}", cluster.ports["prometheus"]),
                ("pushgateway", f"{real_node.NODE_IP}:{real_node.PUSHGATEWAY_PORT}", cluster.ports["pushgateway"])):
            sock = relay / f"{name}.sock"
            _start(cluster, f"node-relay-{name}-host", [
                "socat", f"UNIX-LISTEN:{sock},fork,mode=600,unlink-early", f"TCP:127.0.0.1:{port}"])
            address, listen_port = listen.split(":")
            _start(cluster, f"node-relay-{name}", [
                *enter, "socat", f"TCP-LISTEN:{listen_port},bind={address},fork,reuseaddr",
                f"UNIX-CONNECT:{sock}"])
        # Out of the node: the kubelet's port, for the API server (logs, exec).
        sock = relay / "kubelet.sock"
        _start(cluster, "node-relay-kubelet", [
            *enter, "socat", f"UNIX-LISTEN:{sock},fork,mode=600,unlink-early", f"TCP:127.0.0.1:{kubelet_port}"])
        _start(cluster, "node-relay-kubelet-host", [
            "socat", f"TCP-LISTEN:{kubelet_port},bind=127.0.0.1,fork,reuseaddr", f"UNIX-CONNECT:{sock}"])

        _start(cluster, "containerd", [*enter, "containerd", "--config", str(node_dir / "containerd.toml")])
        deadline = time.monotonic() + 30
        while True:
            if not _pid_alive(cluster.pids["containerd"]):
                raise ClusterError(f"containerd exited during start-up:\n{_tail(cluster, 'containerd')}")
            try:
                _ctr(cluster, "version")
                break
            except ClusterError:
                if time.monotonic() > deadline:
                    raise ClusterError(f"containerd not answering after 30s:\n{_tail(cluster, 'containerd')}")
                time.sleep(0.2)
        for loaded in (pause, archive):
            _ctr(cluster, "images", "import", str(loaded))

        _start(cluster, "kubelet", [
            *enter, str(bin_dir / "kubelet"),
            "--config", str(node_dir / "kubelet.json"),
            "--kubeconfig", str(node_dir / "kubelet.kubeconfig"),
            "--hostname-override", real_node.NODE_NAME, "--node-ip", real_node.NODE_IP,
            "--root-dir", str(node_dir / "kubelet"), "--cert-dir", str(node_dir / "kubelet" / "pki"),
            "--node-labels", f"{real_node.LABEL}=true",
        ])
        _wait_node_ready(cluster, bin_dir, timeout_seconds=timeout_seconds)
    except BaseException:
        _log(f"real node start failed; removing it (logs kept in {cluster.state_dir / 'logs'})")
        stop_real_node(cluster, keep_logs=True)
        raise
    _log(f"real node {real_node.NODE_NAME} ready in {time.monotonic() - started:.1f}s with {image}")


def refresh_image(cluster: Cluster) -> str:
    """Build the image if the sources changed since the node loaded it, load
    the new one into the node, and return its reference."""
    archive, image = build_image()
    if image != cluster.node["image"]:
        _ctr(cluster, "images", "import", str(archive))
        cluster.node["image"] = image
        cluster.save()
        _log(f"loaded {image} into the real node")
    return image


def _wait_node_ready(cluster: Cluster, bin_dir: Path, *, timeout_seconds: float) -> None:
    """Ready, and none of the not-ready/uninitialized taints left (ours stays)."""
    deadline = time.monotonic() + timeout_seconds
    state = "not registered"
    while time.monotonic() < deadline:
        if not _pid_alive(cluster.pids["kubelet"]):
            raise ClusterError(f"the kubelet exited during start-up:\n{_tail(cluster, 'kubelet')}")
        try:
            node = json.loads(_kubectl(bin_dir, cluster, "get", "node", real_node.NODE_NAME, "-o", "json"))
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
                       f"{_tail(cluster, 'kubelet')}")


def stop_real_node(cluster: Cluster, *, keep_logs: bool = False) -> None:
    """Stop everything the real node runs (kubelet, containerd, its shims and
    every container, the relays), remove its cgroups and its namespaces. The
    node directory goes with the state directory."""
    holder = cluster.pids.get("node-namespaces")
    if not cluster.node and holder is None:
        return
    mount_ns = real_node.namespace_of(holder, "mnt") if holder and _pid_alive(holder) else None
    cgroup_root = cluster.node.get("cgroup_root") or real_node.cgroup_name(cluster.state_dir)
    for name in ("kubelet", "containerd"):
        if name in cluster.pids and _pid_alive(cluster.pids[name]):
            real_node.kill(cluster.pids[name])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        inside = set(real_node.processes_in(mount_ns, "mnt")) if mount_ns else set()
        inside.discard(holder)
        inside |= real_node.cgroup_pids(cgroup_root)
        inside = {pid for pid in inside if _pid_alive(pid)}
        if not inside:
            break
        for pid in inside:
            real_node.kill(pid)
        for name, pid in cluster.pids.items():
            _reap(pid)
        time.sleep(0.1)
    node_pids = {name: pid for name, pid in cluster.pids.items()
                 if name.startswith("node-") or name in ("kubelet", "containerd")}
    _stop_processes(Cluster(cluster.state_dir, ports=cluster.ports, pids=node_pids))
    left = real_node.remove_cgroup_root(cgroup_root)
    if left:
        _log(f"could not remove cgroups: {', '.join(left)}")
    for name in node_pids:
        cluster.pids.pop(name, None)
    cluster.ports.pop("kubelet", None)
    cluster.node = {}
    if cluster.state_dir.exists():
        cluster.save()
        shutil.rmtree(cluster.state_dir / "node", ignore_errors=True)


def down(state_dir: Path = DEFAULT_STATE_DIR) -> None:
    state_dir = state_dir.resolve()
    cluster = Cluster.load(state_dir)
    if cluster is not None:
        stop_real_node(cluster)
        _stop_processes(cluster)
    if state_dir.exists():
        shutil.rmtree(state_dir)


def main_up(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/local/up", description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", type=Path,
                        default=Path(os.environ.get("SCALER_CLUSTER_STATE_DIR", DEFAULT_STATE_DIR)))
    parser.add_argument("--nodes", type=int, default=int(os.environ.get("SCALER_GPU_NODES", 4)))
    parser.add_argument("--gpus-per-node", type=int, default=int(os.environ.get("SCALER_GPUS_PER_NODE", 8)))
    parser.add_argument("--real-node", action="store_true",
                        default=os.environ.get("SCALER_REAL_NODE", "") not in ("", "0", "false"),
                        help="also start one real node (containerd, runc, kubelet) with the scaler image "
                             "built from deploy/Dockerfile loaded into it (SCALER_REAL_NODE=1)")
    args = parser.parse_args(argv)
    try:
        cluster = up(args.state_dir, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                     with_real_node=args.real_node)
    except (ClusterError, subprocess.CalledProcessError) as error:
        print(f"deploy/local/up: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(cluster.exports())
    return 0


def main_down(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/local/down", description="Stop the local cluster and remove its state.")
    parser.add_argument("--state-dir", type=Path,
                        default=Path(os.environ.get("SCALER_CLUSTER_STATE_DIR", DEFAULT_STATE_DIR)))
    args = parser.parse_args(argv)
    down(args.state_dir)
    return 0
