"""The processes a local cluster runs and their record: starting one with its
log in `logs/`, waiting until it answers, stopping exactly what was started.

`components.json` in the state directory names every process with its pid,
port and command line, so `down` (in another process, later) stops those and
nothing else. Standard library only, like everything in deploy/local.
"""

from __future__ import annotations

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
CACHE_DIR = Path(os.environ.get("SCALER_CACHE_DIR", Path.home() / ".cache" / "scaler"))
DEFAULT_STATE_DIR = CACHE_DIR / "cluster"
# Stop consumers before what they depend on, etcd last; anything not named
# here (Karpenter, the real node's processes) goes first.
STOP_ORDER = ("prometheus", "pushgateway", "kwok", "scheduler", "controller-manager", "apiserver", "etcd")
READY_PATHS = {"prometheus": "/-/ready", "pushgateway": "/-/ready"}


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
        return [name for name, pid in self.pids.items() if pid_alive(pid)]


def pid_alive(pid: int) -> bool:
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log(message: str) -> None:
    print(f"cluster: {message}", file=sys.stderr, flush=True)


def binaries() -> Path:
    """Build (or find in the cache) the Go binaries; return their directory."""
    result = subprocess.run(
        [str(HERE / "build")], stdout=subprocess.PIPE, text=True, check=False
    )
    if result.returncode != 0:
        raise ClusterError(f"deploy/local/build failed with exit code {result.returncode}")
    return Path(result.stdout.strip().splitlines()[-1])


def find_program(program: str, *candidates: str) -> str:
    for name in (program, *candidates):
        path = shutil.which(name)
        if path:
            return path
    raise ClusterError(
        f"{program} not found on PATH; install it with: apt-get install -y {program}"
    )


def start(cluster: Cluster, name: str, argv: list[str]) -> None:
    """Start argv in its own session, output to logs/<name>.log, and record it."""
    log_file = open(cluster.state_dir / "logs" / f"{name}.log", "ab")
    process = subprocess.Popen(
        argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, cwd=cluster.state_dir,
    )
    log_file.close()
    cluster.pids[name] = process.pid
    cluster.commands[name] = argv
    cluster.save()


def tail(cluster: Cluster, name: str, lines: int = 30) -> str:
    path = cluster.state_dir / "logs" / f"{name}.log"
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text)


def wait_ready(cluster: Cluster, name: str, url: str, *, timeout_seconds: float = 60,
               context: ssl.SSLContext | None = None) -> None:
    """Poll url until it answers 200; on timeout or exit, fail with the log tail."""
    deadline = time.monotonic() + timeout_seconds
    last_error = "no answer"
    while time.monotonic() < deadline:
        if not pid_alive(cluster.pids[name]):
            raise ClusterError(
                f"{name} exited during start-up; last lines of "
                f"{cluster.state_dir / 'logs' / (name + '.log')}:\n{tail(cluster, name)}"
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
        f"{cluster.state_dir / 'logs' / (name + '.log')}:\n{tail(cluster, name)}"
    )


def admin_context(cluster: Cluster) -> ssl.SSLContext:
    pki = cluster.state_dir / "pki"
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return context


def kubectl(bin_dir: Path, cluster: Cluster, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(bin_dir / "kubectl"), "--kubeconfig", str(cluster.kubeconfig), *args],
        input=stdin, capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def stop_processes(cluster: Cluster, *, grace_seconds: float = 10) -> None:
    """SIGTERM each recorded process group in STOP_ORDER; SIGKILL what is left
    after grace_seconds."""
    names = sorted(cluster.pids, key=lambda n: STOP_ORDER.index(n) if n in STOP_ORDER else -1)
    for name in names:
        pid = cluster.pids[name]
        if not pid_alive(pid):
            continue
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + grace_seconds
        while pid_alive(pid) and time.monotonic() < deadline:
            reap(pid)
            time.sleep(0.1)
        if pid_alive(pid):
            log(f"{name} (pid {pid}) ignored SIGTERM; killing it")
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        reap(pid)


def reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_component(cluster: Cluster, name: str) -> None:
    """Stop one component (fault tests); restart_component brings it back."""
    stop_processes(Cluster(cluster.state_dir, ports=cluster.ports, pids={name: cluster.pids[name]}))


def restart_component(cluster: Cluster, name: str) -> None:
    """Start one stopped component again with its own command line and port,
    and wait until it is ready. For Prometheus and the Pushgateway."""
    stop_component(cluster, name)
    start(cluster, name, cluster.commands[name])
    wait_ready(cluster, name, f"http://127.0.0.1:{cluster.ports[name]}{READY_PATHS[name]}")
