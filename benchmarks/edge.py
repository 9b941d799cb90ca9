"""A keep-down window opening over 1,000 and 3,000 Deployments: time from the
window edge until every one is written, with `scaler run` as users run it,
against the machine's write ceiling measured in the same run.

For each size: a fresh namespace of N Deployments (created with spec.paused,
so the controller makes no pods and the 2 cores measure scaler, the API
server and etcd), a policy whose keep-down window opens at the next whole
minute, and the daemon started before it with the default 30 s interval, so
periodic reconciles overlap the edge's batch as they do for users. Read from
the daemon's own JSON log and /metrics: edge -> last write, edge -> last
Event, PATCHes, GETs (a refused guard costs one) and Event POSTs per object,
LISTs in all (the namespace's pods, for the nodes each pause records, and its
KEDA ScaledObjects: each once per 5 s),
the daemon's CPU seconds and peak RSS, and lines on stderr that are not JSON.
Then the objects are set back and a minimal client (benchmarks/common.py:
stdlib http.client, 16 keep-alive connections, nothing but the PATCHes)
sends the same guarded JSON patches (built by scaler's own patch code: the
same tests, annotations and action record): scaler's write rate is printed
as a fraction of that ceiling, with where the machine's CPU went in each
(benchmarks/cputrace.py): milliseconds per write of the daemon (the edge)
or the minimal client (the ceiling), of the API server, and the cores left
idle. Targets: >= 0.9 of the ceiling; 1.0 PATCH per
changed object and no GET (no write refused by scaler's own guards); no
non-JSON line.

With --split-cores the cluster's processes (API server, etcd, the
controllers, kwok, Prometheus) are pinned to the first core and the writer
(the daemon, then the minimal client) to the second, as where the daemon
runs on a node of its own: its CPU no longer comes out of the API server's.
Both phases are pinned alike; the cluster is unpinned afterwards.

    python benchmarks/edge.py [--sizes 1000,3000] [--concurrency N] [--interval 30] [--split-cores]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import (
    ROOT,
    create_deployments,
    create_namespace,
    deployment,
    local_cluster,
    minimal_client_patches,
    start_cluster,
)
from cputrace import CpuTrace, cpu_seconds, pid_of

from scaler.cluster import writes
from scaler.cluster.actions import ActionRecord
from scaler.cluster.kinds import DEPLOYMENT
from scaler.cluster.kube import Kube, NotFound, Resource
from scaler.cluster.workloads import Workload
from scaler.decide.times import rfc3339
from scaler.run.settings import ClusterSettings

#: Writes in flight unless told: what `scaler run` and the CLI's batches use (SCALER_CONCURRENCY).
DEFAULT_CONCURRENCY: int = ClusterSettings.model_fields["concurrency"].default


def policy(namespace: str, opens: datetime) -> str:
    closes = opens + timedelta(minutes=30)
    return textwrap.dedent(f"""\
        policies:
          - name: bench-nights
            targets: {{namespaces: [{namespace}], selector: bench=edge}}
            schedule:
              timezone: UTC
              windows:
                - {{name: night, mode: down, start: "{opens.minute} {opens.hour} * * *",
                   end: "{closes.minute} {closes.hour} * * *"}}
        """)


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("scaler_kube_requests_total{"):
            verb = line.split('verb="', 1)[1].split('"', 1)[0]
            values[verb] = float(line.rsplit(" ", 1)[1])
    return values


def proc_stats(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system) and peak RSS in MiB of a live process."""
    hwm = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmHWM"))
    return cpu_seconds(pid), int(hwm.split()[1]) // 1024


def cpu_per_write(spent: dict[str, float], writes: int, phase: str) -> dict[str, float]:
    """CPU milliseconds per write of the daemon (the edge) or the minimal
    client (the ceiling) and of the API server, and the cores left idle."""
    who = "daemon" if phase == "edge" else "client"
    return {f"{phase}_{who}_cpu_ms_per_write": round(1000 * spent[who] / writes, 2),
            f"{phase}_apiserver_cpu_ms_per_write": round(1000 * spent["apiserver"] / writes, 2),
            f"{phase}_idle_cores": round(spent["idle"] / spent["seconds"], 2)}


def start_daemon(cluster, work: Path, port: int, stderr, *, concurrency: int, interval: float):
    """`scaler run` as users run it, its log (JSON lines) to `stderr`."""
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "scaler", "run", "--policies", str(work / "policies.yaml"),
         "--prometheus-url", cluster.prometheus_url, "--bind-address", "127.0.0.1", "--port", str(port),
         "--log-format", "json", "--evaluation-interval-seconds", f"{interval:g}", "--concurrency", str(concurrency)],
        stdout=subprocess.DEVNULL, stderr=stderr, env=env, cwd=ROOT)


def populate(kube: Kube, size: int) -> str:
    """A fresh namespace of `size` Deployments; its name."""
    namespace = f"bench-edge-{size}-{uuid.uuid4().hex[:5]}"
    create_namespace(kube, namespace)
    bodies = [deployment(f"d-{i:05d}", replicas=i % 3 + 1, labels={"bench": "edge"}) for i in range(size)]
    for body in bodies:  # an annotation of someone else's, as real objects have: the map exists before and after
        body["metadata"]["annotations"] = {"team.example.com/owner": "bench"}
    create_deployments(kube, namespace, bodies)
    return namespace


def run_size(cluster, kube: Kube, namespace: str, size: int, concurrency: int, interval: float,
             connections: tuple[int, ...] = (16,)) -> dict:
    opens = (datetime.now(UTC) + timedelta(seconds=40)).replace(second=0, microsecond=0) \
        + timedelta(minutes=1)
    work = Path(tempfile.mkdtemp(prefix="scaler-edge-"))
    (work / "policies.yaml").write_text(policy(namespace, opens))
    port = free_port()
    stderr = open(work / "daemon.log", "wb")
    daemon = start_daemon(cluster, work, port, stderr, concurrency=concurrency, interval=interval)
    trace = CpuTrace({"daemon": daemon.pid, "client": os.getpid(),
                      "apiserver": pid_of("kube-apiserver", str(cluster.state_dir)) or 0})
    try:
        wait_for(lambda: ready(port), 120)
        before, cpu_before = scrape(port), proc_stats(daemon.pid)[0]
        wait_for(lambda: datetime.now(UTC) >= opens, 120)
        written = Written(work / "daemon.log")
        wait_for(lambda: written() >= size, 300)
        events_before_flush = time.monotonic()
        wait_for(lambda: scrape(port).get("create", 0) - before.get("create", 0) >= size, 120)
        events_seconds = time.monotonic() - events_before_flush
        after = scrape(port)
        cpu_after, peak_rss = proc_stats(daemon.pid)
    finally:
        daemon.terminate()
        code = daemon.wait(30)
        stderr.close()
        trace.pids.pop("daemon")
    lines = (work / "daemon.log").read_text().splitlines()
    changed = [json.loads(line) for line in lines if '"result": "changed"' in line]
    last = max(datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")) for r in changed)
    items, _ = kube.list(Resource("apps", "v1", "deployments"), namespace)
    all_at_zero = all(item["spec"]["replicas"] == 0 for item in items)
    scaler_seconds = (last - opens).total_seconds()
    reason = next(r["reason"] for r in changed)
    ceiling_seconds = ceiling(cluster, kube, namespace, items, reason, connections=connections[0])
    ceiling_end = time.time()
    trace.stop()
    others = other_ceilings(cluster, kube, namespace, reason, size, scaler_seconds, connections[1:])
    return {
        "size": size, "edge_to_all_written_seconds": round(scaler_seconds, 2),
        "scaler_writes_per_second": round(size / scaler_seconds),
        "ceiling_writes_per_second": round(size / ceiling_seconds),
        "fraction_of_ceiling": round(ceiling_seconds / scaler_seconds, 2),
        "patches_per_object": round((after.get("patch", 0) - before.get("patch", 0)) / size, 3),
        "gets_per_object": round((after.get("get", 0) - before.get("get", 0)) / size, 3),
        # Pods (a pause records its nodes) and KEDA ScaledObjects, each listed once per namespace per 5 s.
        "lists": after.get("list", 0) - before.get("list", 0),
        "event_posts_per_object": round((after.get("create", 0) - before.get("create", 0)) / size, 3),
        "events_done_after_writes_seconds": round(events_seconds, 2),
        "cpu_seconds": round(cpu_after - cpu_before, 1), "peak_rss_mib": peak_rss,
        "all_at_zero": all_at_zero,
        **cpu_per_write(trace.span(opens.timestamp(), last.timestamp()), size, "edge"),
        **cpu_per_write(trace.span(ceiling_end - ceiling_seconds, ceiling_end), size, "ceiling"),
        "non_json_lines": sum(1 for line in lines if not line.startswith("{")), "exit_code": code, **others,
    }


def other_ceilings(cluster, kube: Kube, namespace: str, reason: str, size: int, scaler_seconds: float,
                   connections: tuple[int, ...]) -> dict:
    """The ceiling again with each other number of connections, each from the objects as the last left them."""
    found = {}
    for n in connections:
        items, _ = kube.list(Resource("apps", "v1", "deployments"), namespace)
        seconds = ceiling(cluster, kube, namespace, items, reason, connections=n)
        found[f"ceiling_{n}_connections_writes_per_second"] = round(size / seconds)
        found[f"fraction_of_ceiling_{n}_connections"] = round(seconds / scaler_seconds, 2)
    return found


def ceiling(cluster, kube: Kube, namespace: str, items: list[dict], reason: str, *, connections: int = 16) -> float:
    """Set every object back as it was before the pause (not timed), then time
    the minimal client sending the guarded pauses scaler sends, built by
    scaler's own patch code from each object as it was (same operations,
    same annotations, an action record of the same size)."""
    resets, pauses = {}, {}
    now = datetime.now(UTC)
    for item in items:
        name, annotations = item["metadata"]["name"], item["metadata"].get("annotations") or {}
        replicas = int(annotations.get("scaler.io/last-replicas", 1))
        ours = [key for key in annotations if key.startswith("scaler.io/")]
        resets[name] = [{"op": "remove", "path": "/metadata/annotations/" + key.replace("/", "~1")}
                        for key in ours] + [{"op": "replace", "path": "/spec/replicas", "value": replicas}]
        before = {**item, "metadata": {**item["metadata"], "annotations": {
            key: value for key, value in annotations.items() if key not in ours}},
            "spec": {**item["spec"], "replicas": replicas}}
        workload = Workload(DEPLOYMENT, before)
        write = writes.pause(workload, by="policy/bench-nights", reason=reason, cause="keep-down-window", now=now)
        record = ActionRecord(f"{random.getrandbits(64):016x}", *write.event, write.message[:1024], rfc3339(now))
        pauses[name] = writes.json_patch(writes.merge(write.patch, record.annotation()), workload)
    minimal_client_patches(cluster, namespace, resets, connections=connections)
    return minimal_client_patches(cluster, namespace, pauses, connections=connections)


def delete_namespace(kube: Kube, namespace: str) -> None:
    """Deleted, and gone before the next size: its paused objects would
    otherwise be another daemon's work (the Events their records say are owed)."""
    kube.request("delete", "DELETE", f"/api/v1/namespaces/{namespace}", resource_text=namespace)

    def gone() -> bool:
        try:
            kube.request("get", "GET", f"/api/v1/namespaces/{namespace}", resource_text=namespace)
        except NotFound:
            return True
        return False
    wait_for(gone, 300)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


class Written:
    """The writes the daemon's log says landed, read from where the last
    call stopped: polling must not cost the daemon the CPU it is measured on."""

    def __init__(self, log: Path) -> None:
        self.log, self.offset, self.count, self.rest = log, 0, 0, b""

    def __call__(self) -> int:
        with open(self.log, "rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        self.offset += len(chunk)
        *lines, self.rest = (self.rest + chunk).split(b"\n")
        self.count += sum(1 for line in lines if b'"result": "changed"' in line)
        return self.count


def wait_for(condition, timeout_seconds: float) -> None:
    """Polled every 0.2 s: what is measured comes from the daemon's own
    timestamps, not from when this loop noticed."""
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout_seconds}s")
        time.sleep(0.2)


def pin(pids: list[int], cpus: set[int]) -> None:
    """Every thread of `pids` onto `cpus` (threads they start later inherit it)."""
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                os.sched_setaffinity(int(task.name), cpus)
            except OSError:
                pass  # a thread that has just ended


def cluster_pids(cluster) -> list[int]:
    """The processes started for the cluster: their command lines name its state directory."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(cluster.state_dir).encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            pass
    return pids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,3000")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                        help="writes in flight (default: SCALER_CONCURRENCY's, %(default)s)")
    parser.add_argument("--ceiling-connections", default="16",
                        help="the minimal client's connections; the first is the ceiling the fraction is of, "
                             "each other is measured after it and printed with its own fraction")
    parser.add_argument("--interval", type=float, default=30, help="the daemon's evaluation interval")
    parser.add_argument("--split-cores", action="store_true",
                        help="the cluster on the first core, the daemon and the minimal client on the second")
    args = parser.parse_args()
    cluster, own = start_cluster("bench-edge")
    everything = os.sched_getaffinity(0)
    try:
        if args.split_cores:
            first, second = sorted(everything)[:2]
            pin(cluster_pids(cluster), {first})
            pin([os.getpid()], {second})  # the daemon it starts and the client's threads inherit it
        kube = Kube.from_environment(kubeconfig=str(cluster.kubeconfig), pool_size=32)
        connections = tuple(int(n) for n in args.ceiling_connections.split(","))
        for size in (int(s) for s in args.sizes.split(",")):
            namespace = populate(kube, size)
            try:
                print(json.dumps(run_size(cluster, kube, namespace, size, args.concurrency, args.interval,
                                          connections)), flush=True)
            finally:  # gone before the next size, even after a failure: its objects would load the next
                delete_namespace(kube, namespace)
    finally:
        if args.split_cores:
            pin(cluster_pids(cluster), everything)
        if own:
            local_cluster.down(cluster.state_dir)


if __name__ == "__main__":
    main()
