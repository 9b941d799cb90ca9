"""The scaler demo: a few fake GPU inference services on the local cluster,
simulated traffic, the real daemon, and what it did, told as it happens.

Time is compressed: windows are a minute apart, "idle" means 20 seconds and
models load in 3-20 seconds (kwok holds each pod Running but not Ready that
long), so the scenario takes about four minutes. The policies are the examples in
policies/ with those durations shortened (see policies_for in scenario.py).

Everything in the summary is measured on the cluster while the scenario runs:
actions are the Events scaler recorded; GPUs are the nvidia.com/gpu requests
of the pods that were Running, sampled every second.

With --in-cluster the daemon runs as users run it: the Helm chart installed
with the image built from deploy/Dockerfile, two pods with leader election on
the cluster's real node (deploy/local/up --real-node). The first run builds
the image (about 2.5 minutes); later runs take the cached one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "local"))
sys.path.insert(0, str(ROOT))

import cluster as local_cluster  # noqa: E402
from scenario import (  # noqa: E402 - beside this file
    PREWARM_OPENS_AFTER_EDGE,
    SCALE_DOWN_DELAY,
    Service,
    deployment_body,
    flaps,
    policies_for,
    services,
)

from scaler.cluster.kinds import DEPLOYMENT  # noqa: E402
from scaler.cluster.kube import Kube, Resource  # noqa: E402
from scaler.cluster.workloads import Workload  # noqa: E402
from scaler.decide.policies import parse_duration  # noqa: E402

PODS = Resource("", "v1", "pods")
EVENTS = Resource("", "v1", "events")
NAMESPACES = Resource("", "v1", "namespaces", namespaced=False)


def push(pushgateway: str, namespace: str, service: Service) -> None:
    labels = f'namespace="{namespace}",workload="{service.name}"'
    body = (f"# TYPE gateway_pending_requests gauge\ngateway_pending_requests{{{labels}}} {service.pending:.2f}\n"
            f"# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{{{labels}}} {service.running:.2f}\n")
    url = f"{pushgateway}/metrics/job/demo/namespace/{namespace}/workload/{service.name}"
    urllib.request.urlopen(urllib.request.Request(url, data=body.encode(), method="PUT"), timeout=5)


@dataclass
class History:
    """What the cluster did, sampled every second."""

    gpu_seconds_used: float = 0.0
    gpu_seconds_baseline: float = 0.0
    seconds: float = 0.0
    samples: list[tuple[float, dict[str, int]]] = field(default_factory=list)  # (t, GPUs held per service)
    events: list[dict] = field(default_factory=list)
    freed: list[tuple[str, int]] = field(default_factory=list)  # (service, GPUs) at each drop to zero
    all_ready_at: dict[str, float] = field(default_factory=dict)  # t each service had every replica Ready


class Demo:
    def __init__(self, cluster, *, namespace: str, out=sys.stdout) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.kube = Kube.from_environment(kubeconfig=str(cluster.kubeconfig))
        self.services = services()
        self.history = History()
        self.out = out
        self.edge: datetime | None = None
        self.stop = threading.Event()
        self.seen_events: set[str] = set()
        self.replicas_seen: dict[str, int] = {}  # each service's replicas at the last sample

    def say(self, text: str) -> None:
        clock = ""
        if self.edge is not None:
            t = (datetime.now(UTC) - self.edge).total_seconds()
            clock = f"[t{'+' if t >= 0 else '-'}{abs(t):5.1f}s] "
        print(f"{clock}{text}", file=self.out, flush=True)

    def t(self) -> float:
        return (datetime.now(UTC) - self.edge).total_seconds()

    # Setting up

    def setup(self, *, lead_seconds: float) -> Path:
        self.kube.create(NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace",
                                             "metadata": {"name": self.namespace}})
        for service in self.services:
            self.kube.create(DEPLOYMENT.resource, self.namespace, deployment_body(service))
        self.say(f"namespace {self.namespace}: " + ", ".join(
            f"{s.name} ({s.replicas} x {s.gpus_per_replica} GPU)" for s in self.services))
        deadline = time.monotonic() + 120
        while not all(self.ready(s) == (0 if s.paused_by else s.replicas) for s in self.services):
            if time.monotonic() > deadline:
                raise SystemExit("demo: the services did not become Ready within 120 s")
            time.sleep(0.5)
        held = sum(s.replicas * s.gpus_per_replica for s in self.services if not s.paused_by)
        self.say(f"all pods Running on the fake GPU nodes: {held} GPUs in use")
        # Cron windows have minute edges: the business-hours window ends at the
        # first minute boundary at least lead_seconds away, which leaves the
        # idle clocks a full window of data before anything happens.
        now = datetime.now(UTC)
        edge = (now + timedelta(seconds=lead_seconds + 59)).replace(second=0, microsecond=0)
        self.edge = edge
        directory = Path(tempfile.mkdtemp(prefix="scaler-demo-"))
        (directory / "demo.yaml").write_text(policies_for(
            self.namespace, window_start=edge - timedelta(hours=1), window_end=edge,
            mornings=edge + PREWARM_OPENS_AFTER_EDGE))
        return directory

    def ready(self, service: Service) -> int:
        obj = self.kube.get(DEPLOYMENT.resource, self.namespace, service.name)
        return int((obj.get("status") or {}).get("readyReplicas") or 0)

    # The traffic simulator and the samplers, once a second

    def simulate(self) -> None:
        previous = self.replicas_seen
        last = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            dt, last = now - last, now
            t = self.t()
            pods, _ = self.kube.list(PODS, self.namespace)
            held = {s.name: 0 for s in self.services}  # GPUs of Running pods, loading or not
            serving = {s.name: 0 for s in self.services}  # Ready pods: only they serve
            for pod in pods:
                status, meta = pod.get("status") or {}, pod["metadata"]
                if status.get("phase") != "Running" or meta.get("deletionTimestamp"):
                    continue
                app = (meta.get("labels") or {}).get("app")
                if app in held:
                    held[app] += sum(int((c.get("resources") or {}).get("requests", {}).get("nvidia.com/gpu", 0))
                                     for c in pod["spec"]["containers"])
                    serving[app] += any(c.get("type") == "Ready" and c.get("status") == "True"
                                        for c in status.get("conditions") or [])
            for service in self.services:
                ready = serving[service.name]
                replicas_now = self.kube.get(DEPLOYMENT.resource, self.namespace, service.name)["spec"]["replicas"]
                if ready and ready >= replicas_now and service.name not in self.history.all_ready_at:
                    self.history.all_ready_at[service.name] = round(t, 1)
                service.pending += service.arrival_rate(t) * dt
                capacity = ready * service.per_replica_per_second * dt
                served = min(service.pending, capacity)
                service.pending -= served
                service.running = served / dt if dt > 0 and ready else 0.0
                push(self.cluster.pushgateway_url, self.namespace, service)
                replicas = replicas_now
                if previous.get(service.name, replicas) > 0 and replicas == 0:
                    workload = Workload(DEPLOYMENT, self.kube.get(DEPLOYMENT.resource, self.namespace, service.name))
                    self.history.freed.append((service.name, workload.gpus(previous[service.name])))
                previous[service.name] = replicas
            if t >= 0:
                # Without scaler every service would run at its full size all along.
                baseline = sum(s.replicas * s.gpus_per_replica for s in self.services)
                self.history.gpu_seconds_used += sum(held.values()) * dt
                self.history.gpu_seconds_baseline += baseline * dt
                self.history.seconds += dt
                self.history.samples.append((round(t, 1), held))
            self.narrate_events()
            self.stop.wait(max(0.0, 1.0 - (time.monotonic() - now)))

    def final_sample(self) -> None:
        """Once the daemon has stopped: a pause in the scenario's last second
        is counted too (the sampler looks once a second)."""
        for service in self.services:
            obj = self.kube.get(DEPLOYMENT.resource, self.namespace, service.name)
            before, now = self.replicas_seen.get(service.name, 0), obj["spec"]["replicas"]
            if before > 0 and now == 0:
                self.history.freed.append((service.name, Workload(DEPLOYMENT, obj).gpus(before)))
            self.replicas_seen[service.name] = now

    def narrate_events(self) -> None:
        items, _ = self.kube.list(EVENTS, self.namespace)
        fresh = [e for e in items if (e.get("source") or {}).get("component") == "scaler"
                 and e["metadata"]["uid"] not in self.seen_events]
        for event in sorted(fresh, key=lambda e: e["metadata"]["creationTimestamp"]):
            self.seen_events.add(event["metadata"]["uid"])
            self.history.events.append({"reason": event["reason"], "workload": event["involvedObject"]["name"],
                                        "message": event["message"],
                                        "time": event.get("lastTimestamp") or event["metadata"]["creationTimestamp"]})
            self.say(f"{event['involvedObject']['name']}: {event['reason']}: {event['message']}")

    def phases(self, until: float) -> None:
        """Say what the traffic does, when it does it."""
        notes = [(-5, "code-assist traffic stops (it will count as idle after 20 s)"),
                 (0, "business hours end: chat goes down once its requests finish (outside: down)"),
                 (10, "a backlog of 240 embedding jobs lands in the queue"),
                 (30, "late chat requests arrive at the gateway while chat is at zero (its model loads in 15 s)"),
                 (40, "summarize's window opens at t=60 and its model loads in 20 s: scaler pre-warms it now"),
                 (45, "chat requests stop"),
                 (60, "summarize's morning window opens: its requests start"),
                 (70, "code-assist traffic is back"),
                 (85, "code-assist traffic stops again")]
        for at, note in notes:
            if at >= until:
                break
            while self.t() < at and not self.stop.is_set():
                time.sleep(0.2)
            self.say(f"traffic: {note}")
        while self.t() < until and not self.stop.is_set():
            time.sleep(0.5)

    # The summary: numbers from the cluster, not from the script

    def summary(self) -> dict:
        h = self.history
        by_reason: dict[str, int] = {}
        for event in h.events:
            by_reason[event["reason"]] = by_reason.get(event["reason"], 0) + 1
        saved = h.gpu_seconds_baseline - h.gpu_seconds_used
        prewarmed = h.all_ready_at.get("summarize")
        return {
            "cold_starts": [(e["workload"], e["message"].split("s after", 1)[0].removeprefix("Ready "))
                            for e in h.events if e["reason"] == "Ready"],
            "flaps": flaps(h.events, within_seconds=parse_duration(SCALE_DOWN_DELAY)),
            "prewarm": {"service": "summarize", "window_opens_t": PREWARM_OPENS_AFTER_EDGE.total_seconds(),
                        "all_ready_t": prewarmed},
            "namespace": self.namespace,
            "scenario_seconds": round(h.seconds, 1),
            "actions": by_reason,
            "gpus_freed": sum(g for _, g in h.freed),
            "pauses_observed": [name for name, _ in h.freed],
            "gpu_hours_used": round(h.gpu_seconds_used / 3600, 4),
            "gpu_hours_baseline": round(h.gpu_seconds_baseline / 3600, 4),
            "gpu_hours_saved": round(saved / 3600, 4),
            "saved_percent": round(100 * saved / h.gpu_seconds_baseline, 1) if h.gpu_seconds_baseline else 0.0,
        }


class InCluster:
    """The daemon installed with the chart, on the cluster's real node."""

    def __init__(self, cluster, *, namespace: str) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.bin_dir = local_cluster.binaries()

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin_dir / tool), "--kubeconfig", str(self.cluster.kubeconfig), *args],
                              capture_output=True, check=False, text=True, timeout=300)

    def install(self, policy_file: Path) -> None:
        node = self.cluster.node
        repository, tag = node["image"].rsplit(":", 1)
        result = self._run(
            "helm", "install", "scaler", str(ROOT / "deploy" / "helm" / "scaler"), "-n", self.namespace,
            "--create-namespace", "--wait", "--timeout", "180s",
            "--set", "dryRun=false", "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
            "--set", "image.pullPolicy=Never", "--set", f"prometheus.url={node['prometheus_url']}",
            "--set", "evaluationIntervalSeconds=5",
            "--set", "extraEnv[0].name=SCALER_WAKE_CHECK_INTERVAL_SECONDS", "--set-string", "extraEnv[0].value=1",
            "--set-string", f"nodeSelector.{local_cluster.real_node.LABEL.replace('.', chr(92) + '.')}=true",
            "--set", f"tolerations[0].key={local_cluster.real_node.LABEL}",
            "--set", "tolerations[0].operator=Exists", "--set", "tolerations[0].effect=NoSchedule",
            "--set-file", f"policies.demo\\.yaml={policy_file}")
        if result.returncode != 0:
            raise SystemExit(f"demo: helm install failed:\n{result.stderr}")

    def uninstall(self, log_path: Path) -> None:
        # Stop acting when the scenario ends, as the local daemon does on
        # SIGTERM: scale to zero first (helm's hook does too, but only after
        # its Job's pod has started), so the summary counts no late action.
        logs = self._run("kubectl", "logs", "-n", self.namespace, "-l", "app.kubernetes.io/name=scaler",
                         "--prefix", "--tail=-1")
        log_path.write_text(logs.stdout)
        self._run("kubectl", "scale", "-n", self.namespace, "deployment/scaler", "--replicas=0")
        self._run("kubectl", "wait", "-n", self.namespace, "--for=delete", "pod",
                  "-l", "app.kubernetes.io/name=scaler", "--timeout=60s")
        self._run("helm", "uninstall", "scaler", "-n", self.namespace, "--wait", "--timeout", "120s")
        self._run("kubectl", "delete", "namespace", self.namespace, "--wait=false")


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="deploy/demo/run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", type=Path, default=Path(os.environ.get(
        "SCALER_CLUSTER_STATE_DIR", local_cluster.DEFAULT_STATE_DIR)),
        help="cluster state directory (a running cluster there is reused and left running)")
    parser.add_argument("--keep", action="store_true", help="leave the cluster and the demo namespace running")
    parser.add_argument("--summary-json", type=Path, help="also write the summary here")
    parser.add_argument("--short", action="store_true",
                        help="the short scenario (CI): window close, batch backlog, chat woken and paused again")
    parser.add_argument("--in-cluster", action="store_true",
                        help="run the daemon in the cluster: helm install of the chart with the image built "
                             "from deploy/Dockerfile, on a real node")
    return parser.parse_args(argv)


def start_daemon(demo: Demo, policies: Path, log_path: Path, *, in_cluster: bool) -> InCluster | subprocess.Popen:
    """The real daemon on the demo's policies: installed with the chart, or `scaler run` here."""
    cluster = demo.cluster
    if in_cluster:
        daemon = InCluster(cluster, namespace=f"{demo.namespace}-scaler")
        daemon.install(policies / "demo.yaml")
        demo.say(f"helm install: scaler in namespace {daemon.namespace}, 2 pods Ready on the real node "
                 f"(dry run off, evaluation every 5 s, wake check every 1 s)")
        return daemon
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "scaler", "run", "--policies", str(policies),
             "--prometheus-url", cluster.prometheus_url, "--bind-address", "127.0.0.1", "--port", "0",
             "--evaluation-interval-seconds", "5", "--wake-check-interval-seconds", "1",
             "--log-format", "json"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    demo.say("scaler run started (dry run off, evaluation every 5 s, wake check every 1 s)")
    return process


def play(demo: Demo, *, until: float, lead: float, in_cluster: bool) -> dict:
    """Set up, run the daemon and the traffic until `until`, stop the daemon
    first (no action after the sampler's last look); the summary."""
    daemon = simulator = None
    log_path = demo.cluster.state_dir / "logs" / f"scaler-demo-{demo.namespace}.log"
    try:
        policies = demo.setup(lead_seconds=lead)
        demo.say(f"policies: {policies / 'demo.yaml'} (the examples in policies/, durations shortened)")
        demo.say(f"business hours end at {demo.edge:%H:%M:%S} UTC; scaler's log: {log_path}")
        daemon = start_daemon(demo, policies, log_path, in_cluster=in_cluster)
        simulator = threading.Thread(target=demo.simulate, daemon=True)
        simulator.start()
        demo.phases(until)
    finally:
        if isinstance(daemon, InCluster):
            daemon.uninstall(log_path)
        elif daemon is not None:
            daemon.terminate()
            daemon.wait(30)
        demo.stop.set()
    if simulator is not None:
        simulator.join(timeout=30)
    demo.final_sample()
    demo.narrate_events()
    return demo.summary()


def print_summary(summary: dict) -> None:
    print("\nSummary (measured on the cluster: scaler's Events, and running pods' GPU requests sampled each second)")
    actions = ", ".join(f"{count} {reason}" for reason, count in sorted(summary["actions"].items())) or "none"
    print(f"  actions taken:   {sum(summary['actions'].values())} ({actions})")
    print(f"  GPUs freed:      {summary['gpus_freed']} by {len(summary['pauses_observed'])} pauses "
          f"({', '.join(summary['pauses_observed']) or 'none'})")
    print(f"  GPU-hours:       {summary['gpu_hours_used']:.4f} used of {summary['gpu_hours_baseline']:.4f} had "
          f"every service kept at its starting size over {summary['scenario_seconds']:.0f} s")
    print(f"  GPU-hours saved: {summary['gpu_hours_saved']:.4f} ({summary['saved_percent']:.1f}%)")
    starts = ", ".join(f"{name} {seconds}s" for name, seconds in summary["cold_starts"]) or "none"
    print(f"  cold starts:     {starts} (resume or scale-up to all Ready, from scaler's Ready Events)")
    warm = summary["prewarm"]
    if warm["all_ready_t"] is not None:
        print(f"  pre-warm:        summarize all Ready at t{warm['all_ready_t']:+.1f}s; its window opened at "
              f"t+{warm['window_opens_t']:.0f}s")
    print(f"  flaps:           {summary['flaps']} (a ScaledToZero within {SCALE_DOWN_DELAY} of a Resumed)")
    if summary["scenario_seconds"]:
        hourly = summary["gpu_hours_saved"] * 3600 / summary["scenario_seconds"]
        print(f"                   at this rate, {hourly:.2f} GPU-hours saved per hour of wall time")


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    until, lead = (70, 45) if args.short else (110, 60)
    already_running = local_cluster.Cluster.load(args.state_dir.resolve()) is not None
    print("Starting the local GPU cluster (etcd, kube-apiserver, controller-manager, scheduler, kwok GPU nodes, "
          "Prometheus, Pushgateway)...", flush=True)
    if args.in_cluster:
        print("...and one real node (containerd, kubelet) with the image built from deploy/Dockerfile...", flush=True)
    cluster = local_cluster.up(args.state_dir, with_real_node=args.in_cluster)
    namespace = f"scaler-demo-{int(time.time()) % 100000}"
    demo = Demo(cluster, namespace=namespace)
    summary = play(demo, until=until, lead=lead, in_cluster=args.in_cluster)
    print_summary(summary)
    if args.summary_json:
        args.summary_json.write_text(json.dumps(summary, indent=2))
    if args.keep:
        print(f"\nLeft running: namespace {namespace}. Stop everything with: deploy/local/down"
              + (f" --state-dir {cluster.state_dir}" if cluster.state_dir != local_cluster.DEFAULT_STATE_DIR else ""))
    else:
        demo.kube.request("delete", "DELETE", f"/api/v1/namespaces/{namespace}", resource_text=namespace)
        if not already_running:
            local_cluster.down(cluster.state_dir)
            print("\nStopped the local cluster (run with --keep to explore it afterwards).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
