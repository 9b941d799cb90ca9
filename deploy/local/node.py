"""One real node for the local cluster: containerd + runc + the kubelet,
beside the kwok GPU nodes, so the chart runs as real pods.

Standard library only, like cluster.py. Everything the node makes lives in
`<state dir>/node` and in namespaces of its own:

- one network namespace and one private mount namespace, held open by a
  `sleep` started under `unshare`; containerd, the kubelet and the node-side
  relays enter both with `nsenter` (not `ip netns exec`: its per-command mount
  namespace would hide the kubelet's volume mounts from runc). Nothing is
  added to /run/netns and no mount is visible on the host.
- inside the mount namespace, node directories are bound over /run, /var/lib
  and /var/log (CNI cache, runc state, pod log links), and the machine-wide
  sysctl files the kubelet writes at start (/proc/sys/vm/overcommit_memory,
  kernel/panic, ...) are covered by files holding the values it wants, so the
  host's settings stay as they are.
- the network namespace has no route out. Its loopback carries the node's
  address (10.250.0.1) and the kubernetes Service address (10.96.0.1); pods
  sit on a bridge behind it (10.85.0.0/24, no masquerading). Relays (socat
  over 0600 unix sockets in the node directory) join it to the host's
  127.0.0.1: the API server, Prometheus and the Pushgateway are reachable
  from pods, and the kubelet's port is reachable from the API server (logs,
  exec) at localhost, which is why the node is called `localhost`.
- pod cgroups go under a cgroup root named after the state directory, in
  every hierarchy, removed by `stop`.

The node is tainted `scaler.io/real-node=true:NoSchedule`, so only pods that
ask for it (the chart in the tests) land there.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

NODE_NAME = "localhost"
NODE_IP = "10.250.0.1"
SERVICE_IP = "10.96.0.1"  # first address of the service CIDR: the kubernetes Service
POD_SUBNET = "10.85.0.0/24"
TAINT = "scaler.io/real-node=true:NoSchedule"
LABEL = "scaler.io/real-node"
PAUSE_IMAGE = "scaler.local/pause:local"
PROMETHEUS_PORT = 9090  # on NODE_IP, relayed to the host's Prometheus
PUSHGATEWAY_PORT = 9091
CGROUP_ROOT = Path("/sys/fs/cgroup")

# The kubelet's kernel tunables (pkg/kubelet/cm setupKernelTunables) with the
# values it wants; with these in place it finds nothing to change.
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
# Host directories whose content the node must not write to or see.
PRIVATE_DIRS = ("/run", "/var/lib", "/var/log")

REQUIRED_PROGRAMS = {
    "containerd": "containerd", "runc": "runc", "ctr": "containerd", "socat": "socat",
    "nsenter": "util-linux", "unshare": "util-linux", "ip": "iproute2",
}
CNI_DIRS = ("/usr/lib/cni", "/opt/cni/bin")


class NodeError(RuntimeError):
    pass


def missing_programs() -> list[str]:
    """Debian packages to install before a real node can start."""
    missing = {package for program, package in REQUIRED_PROGRAMS.items() if not shutil.which(program)}
    if not any((Path(d) / "bridge").exists() for d in CNI_DIRS):
        missing.add("containernetworking-plugins")
    return sorted(missing)


def _cni_bin_dir() -> str:
    return next(d for d in CNI_DIRS if (Path(d) / "bridge").exists())


def cgroup_name(state_dir: Path) -> str:
    return "scaler-node-" + hashlib.sha256(str(state_dir).encode()).hexdigest()[:10]


def _hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy (v1 controllers, the named systemd one
    and the unified v2 tree alike)."""
    found = []
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            _, where, kind, *_ = line.split()
            if kind in ("cgroup", "cgroup2") and where.startswith(str(CGROUP_ROOT)):
                found.append(Path(where))
    return found


def make_cgroup_root(name: str) -> None:
    for hierarchy in _hierarchies():
        path = hierarchy / name
        path.mkdir(exist_ok=True)
        if (hierarchy / "cpuset.cpus").exists():  # a new v1 cpuset starts empty
            for knob in ("cpuset.cpus", "cpuset.mems"):
                if not (path / knob).read_text().strip():
                    (path / knob).write_text((hierarchy / knob).read_text())


def cgroup_pids(name: str) -> set[int]:
    pids: set[int] = set()
    for hierarchy in _hierarchies():
        root = hierarchy / name
        if not root.exists():
            continue
        for procs in root.rglob("cgroup.procs"):
            try:
                pids.update(int(p) for p in procs.read_text().split())
            except OSError:
                pass
    return pids


def remove_cgroup_root(name: str, *, timeout_seconds: float = 20) -> list[str]:
    """rmdir the tree bottom up in every hierarchy; return what is left."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        left = []
        for hierarchy in _hierarchies():
            root = hierarchy / name
            if not root.exists():
                continue
            for path in [*sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)), root]:
                try:
                    path.rmdir()
                except FileNotFoundError:
                    pass
                except OSError:
                    left.append(str(path))
        if not left or time.monotonic() > deadline:
            return left
        for pid in cgroup_pids(name):
            kill(pid)
        time.sleep(0.2)


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def namespace_of(pid: int, kind: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def processes_in(namespace: str, kind: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and namespace_of(int(entry), kind) == namespace:
            found.append(int(entry))
    return found


def pause_archive(pause_binary: Path, out: Path) -> Path:
    """The pod sandbox image as a docker archive: one layer holding /pause."""
    layer_bytes = io.BytesIO()
    with tarfile.open(fileobj=layer_bytes, mode="w") as layer:
        binary = pause_binary.resolve()  # bin/current holds symlinks
        info = layer.gettarinfo(str(binary), arcname="pause")
        info.mode = 0o755
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        with open(binary, "rb") as data:
            layer.addfile(info, data)
    layer_data = layer_bytes.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_data).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [PAUSE_IMAGE],
                            "Layers": ["layer/layer.tar"]}]).encode()
    with tarfile.open(out, "w") as archive:
        for name, data in ((config_name, config), ("layer/layer.tar", layer_data), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out


def containerd_config(node: Path) -> str:
    return f"""version = 2
root = "{node}/containerd/root"
state = "{node}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{node}/containerd/containerd.sock"

[ttrpc]
  address = "{node}/containerd/containerd.sock.ttrpc"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # Root here lacks CAP_SYS_RESOURCE: it may not lower a score below its own.
  restrict_oom_score_adj = true
  # Pod network namespaces under the state directory, not /run/netns.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{shutil.which('runc')}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{_cni_bin_dir()}"
    conf_dir = "{node}/cni"
    max_conf_num = 1

[plugins."io.containerd.internal.v1.opt"]
  path = "{node}/containerd/opt"
"""


def cni_config(node: Path) -> str:
    return json.dumps({
        "cniVersion": "0.4.0", "name": "scaler-node",
        "plugins": [{
            "type": "bridge", "bridge": "pods0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_SUBNET}]],
                     "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(node / "cni-ipam")},
        }],
    }, indent=2)


def kubelet_config(node: Path, *, port: int, ca: Path, cgroup_root: str) -> str:
    return json.dumps({
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": "127.0.0.1", "port": port, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": 0,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": str(ca)}},
        # Only the API server reaches this port (through a relay from the
        # host's 127.0.0.1), with a client certificate from the cluster's CA.
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": f"unix://{node}/containerd/containerd.sock",
        "cgroupDriver": "cgroupfs", "cgroupRoot": f"/{cgroup_root}",
        "failCgroupV1": False,  # this machine kind runs hybrid cgroup v1
        "oomScoreAdj": 0,  # see restrict_oom_score_adj
        "failSwapOn": False,
        "podLogsDir": str(node / "pod-logs"),
        "resolvConf": "",
        "clusterDomain": "cluster.local",
        "maxPods": 30,
        # Pod volumes (ConfigMaps) are refreshed on each pod sync; upstream's
        # default is 1 m, here 10 s so that a policy edit arrives quickly.
        "syncFrequency": "10s",
        "nodeStatusReportFrequency": "10s",
        "serializeImagePulls": False,
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "rotateCertificates": False, "serverTLSBootstrap": False,
        "registerWithTaints": [{"key": TAINT.split("=")[0], "value": "true", "effect": "NoSchedule"}],
        "shutdownGracePeriod": "0s",
        "logging": {"format": "text"},
    }, indent=2)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def node_credentials(pki: Path) -> None:
    """The kubelet's client certificate: user system:node:localhost in group
    system:nodes, which the Node authorizer serves."""
    if (pki / "node.crt").exists():
        return
    _openssl("genrsa", "-out", "node.key", "2048", cwd=pki)
    _openssl("req", "-new", "-key", "node.key", "-subj", f"/O=system:nodes/CN=system:node:{NODE_NAME}",
             "-out", "node.csr", cwd=pki)
    _openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "30", "-extfile", "client.ext", "-out", "node.crt", cwd=pki)


def kubelet_kubeconfig(pki: Path) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": f"https://{SERVICE_IP}:443",
                                                   "certificate-authority": str(pki / "ca.crt")}}],
        "users": [{"name": "node", "user": {"client-certificate": str(pki / "node.crt"),
                                            "client-key": str(pki / "node.key")}}],
        "contexts": [{"name": "node", "context": {"cluster": "local", "user": "node"}}],
        "current-context": "node",
    }, indent=2)


def namespace_setup_script(node: Path) -> str:
    """Run inside the node's namespaces once, before anything else."""
    lines = [
        "set -e",
        "ip link set lo up",
        f"ip addr add {NODE_IP}/32 dev lo",
        f"ip addr add {SERVICE_IP}/32 dev lo",
    ]
    for target in PRIVATE_DIRS:
        source = node / "private" / target.strip("/").replace("/", "-")
        lines.append(f"mkdir -p {source} && mount --bind {source} {target}")
    for key in KUBELET_SYSCTLS:
        lines.append(f"mount --bind {node / 'sysctl' / key.replace('/', '.')} /proc/sys/{key}")
    return "\n".join(lines) + "\n"


def nsenter(holder_pid: int) -> list[str]:
    return ["nsenter", f"--target={holder_pid}", "--net", "--mount", "--"]
