"""Wake latency end to end, pull against push: from a request's arrival at
the holder (simulated) to the PATCH that wakes its workload, on the local
cluster's API server (docs/benchmarks.md, "Wake latency, pull and push").

Pull: the holder's queue metric is scraped every S seconds (1, 15, 30), at a
random phase; Prometheus (a loopback stand-in answering the daemon's query
as the real one would after those scrapes) sees a request at the first
scrape after it arrived, and the daemon's wake check (every 1 s here, as in
reconcile.py's measurement) wakes the workload. Push: the holder POSTs
/wake at the arrival (shared-secret mode; the token mode's auth round trips
are measured by tests/cluster/test_push_wake.py). The PATCH is seen on a
watch of the Deployments: its time is when the API server told us.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from common import ROOT, create_deployments, create_namespace, deployment, start_cluster

sys.path.insert(0, str(ROOT))

from tests.fakes.prometheus import FakePrometheus, Query

SECRET = "benchmark-secret-long-enough"


class Holder:
    """Requests arriving for workloads, and the queue Prometheus has scraped of them."""

    def __init__(self, namespace: str, names: list[str], *, scrape_seconds: float) -> None:
        self.namespace, self.names, self.scrape_seconds = namespace, names, scrape_seconds
        self.phase = random.uniform(0, scrape_seconds)
        self.arrived: dict[str, float] = {}  # workload -> wall time of its request's arrival
        self.lock = threading.Lock()

    def scraped(self, at: float) -> float:
        """The last scrape at or before `at` (wall time)."""
        return self.phase + ((at - self.phase) // self.scrape_seconds) * self.scrape_seconds

    def answer(self, query: Query) -> list:
        now = float(query.form.get("time") or time.time())
        last = self.scraped(now)
        with self.lock:
            arrived = dict(self.arrived)
        return [{"metric": {"namespace": self.namespace, "workload": name},
                 "value": [now, "1" if name in arrived and arrived[name] <= last else "0"]}
                for name in self.names]


def watch_wakes(kube, namespace: str, woken: dict[str, float], stop: threading.Event) -> threading.Thread:
    """Record when each Deployment was first seen with replicas > 0 (a watch event)."""
    from kubernetes import client, watch

    def run() -> None:
        apps = client.AppsV1Api(kube)
        while not stop.is_set():
            for event in watch.Watch().stream(apps.list_namespaced_deployment, namespace, timeout_seconds=2):
                spec = event["object"].spec
                if spec.replicas and event["object"].metadata.name not in woken:
                    woken[event["object"].metadata.name] = time.time()
                if stop.is_set():
                    return
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def start_daemon(cluster, namespace: str, prometheus_url: str, port: int) -> subprocess.Popen:
    directory = Path(tempfile.mkdtemp())
    (directory / "secret").write_text(SECRET)
    (directory / "policies.yaml").write_text(textwrap.dedent(f"""\
        policies:
          - name: wake-bench
            targets: {{namespaces: [{namespace}]}}
            wake: {{query: 'holder_pending_requests', target_per_replica: 4}}
        """))
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    return subprocess.Popen([sys.executable, "-m", "scaler", "run", "--policies", str(directory / "policies.yaml"),
                             "--prometheus-url", prometheus_url, "--port", str(port), "--bind-address", "127.0.0.1",
                             "--wake-check-interval-seconds", "1", "--evaluation-interval-seconds", "30",
                             "--push-wake", "--push-wake-auth", "secret", "--push-wake-secret-file",
                             str(directory / "secret"), "--log-format", "json"],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def push(port: int, namespace: str, name: str) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/wake", method="POST",
                                     data=json.dumps({"namespace": namespace, "name": name}).encode(),
                                     headers={"Authorization": f"Bearer {SECRET}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert json.loads(answer.read())["result"] == "woken"


def ready(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the daemon did not become ready in 60 s")


def run(cluster, kube, api, *, scrape_seconds: float | None, wakes: int) -> list[float]:
    """One daemon, `wakes` workloads at zero, each woken once: the seconds from arrival to PATCH."""
    namespace = f"bench-wake-{uuid.uuid4().hex[:6]}"
    create_namespace(api, namespace)
    names = [f"w-{i:03d}" for i in range(wakes)]
    create_deployments(api, namespace, [deployment(name, replicas=0, labels={"app": name}) for name in names])
    holder = Holder(namespace, names, scrape_seconds=scrape_seconds or 1.0)
    prometheus = FakePrometheus(instant=holder.answer).serve()
    port = 20000 + random.randrange(20000)
    daemon = start_daemon(cluster, namespace, prometheus.url, port)
    woken: dict[str, float] = {}
    stop = threading.Event()
    try:
        ready(port)
        watch_wakes(kube, namespace, woken, stop)
        time.sleep(2)
        spread = 10 if scrape_seconds is None else 2 * scrape_seconds
        for name, at in sorted(((n, time.time() + random.uniform(0, spread)) for n in names), key=lambda x: x[1]):
            time.sleep(max(0.0, at - time.time()))
            with holder.lock:
                holder.arrived[name] = time.time()
            if scrape_seconds is None:
                threading.Thread(target=push, args=(port, namespace, name), daemon=True).start()
        deadline = time.monotonic() + (scrape_seconds or 1) + 30
        while len(woken) < wakes and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        daemon.terminate()
        daemon.wait(30)
        prometheus.stop()
        api.request("delete", "DELETE", f"/api/v1/namespaces/{namespace}", resource_text=namespace)
    if len(woken) < wakes:
        raise SystemExit(f"only {len(woken)} of {wakes} woken")
    return [woken[name] - holder.arrived[name] for name in names]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wakes", type=int, default=20, help="workloads woken per path (default 20)")
    parser.add_argument("--scrapes", default="1,15,30", help="scrape intervals of the pull path, seconds")
    args = parser.parse_args()

    from kubernetes import config

    from scaler.cluster.kube import Kube

    cluster, owned = start_cluster("bench-wake")
    api = Kube.from_environment(kubeconfig=str(cluster.kubeconfig), pool_size=20)
    kube = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    print(f"{'path':<22} {'wakes':>5} {'p50':>8} {'p95':>8} {'max':>8}")
    try:
        paths = [(f"pull, {s} s scrape", float(s)) for s in args.scrapes.split(",")] + [("push (POST /wake)", None)]
        for label, scrape in paths:
            seconds = run(cluster, kube, api, scrape_seconds=scrape, wakes=args.wakes)
            p95 = statistics.quantiles(seconds, n=20, method="inclusive")[-1]
            print(f"{label:<22} {len(seconds):>5} {statistics.median(seconds):>7.2f}s {p95:>7.2f}s "
                  f"{max(seconds):>7.2f}s", flush=True)
    finally:
        if owned:
            import cluster as local_cluster

            local_cluster.down(cluster.state_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
