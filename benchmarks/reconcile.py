"""The daemon's reconcile at 100, 1,000 and 10,000 workloads on the local
cluster with the real Prometheus, and wake latency.

For each size: a fresh process builds the daemon's parts (watch caches,
Prometheus client, evaluator and actor) against a namespace of that many Deployments
and 20 policies with an idle and a wake signal each, then times reconciles.
It prints wall time, CPU time, peak RSS, PromQL queries and API requests per
tick. Targets on 2 cores: 10k reconcile <= 2 s, RSS <= 250 MB, queries flat.

Then `scaler run` as a subprocess wakes a paused Deployment when a queue
appears at the Pushgateway, 20 times: wake latency p50/p95 (1 s scrape).

    python benchmarks/reconcile.py [--sizes 100,1000,10000] [--wakes 20]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
import uuid
from pathlib import Path

from common import (
    ROOT,
    create_deployments,
    create_namespace,
    deployment,
    local_cluster,
    start_cluster,
)

POLICIES = 20


def policy_file(namespace: str) -> str:
    """20 policies, each targeting one team's workloads, each with an idle and
    a wake signal: 40 queries a tick whatever the number of workloads."""
    docs = []
    for team in range(POLICIES):
        docs.append(textwrap.dedent(f"""\
          - name: team-{team}
            targets:
              namespaces: [{namespace}]
              selector: team=t{team}
            schedule:
              timezone: Europe/Berlin
              windows: [{{name: office, mode: up, when: "Mon-Fri 08:00-20:00"}}]
            idle:
              query: 'vllm:num_requests_running{{namespace="{namespace}", team="t{team}"}}'
              threshold: 0.5
              duration: 30m
            wake:
              query: 'gateway_pending_requests{{namespace="{namespace}", team="t{team}"}}'
              target_per_replica: 8
            max_replicas: 8
        """))
    return "policies:\n" + "".join(textwrap.indent(doc, "  ") for doc in docs)


def child(args) -> int:
    """One size, measured in a process of its own (peak RSS is per process)."""
    from scaler.cluster.kube import Kube
    from scaler.cluster.pausing import Pauser
    from scaler.cluster.views import WatchingView
    from scaler.decide.loading import load_policies
    from scaler.decide.times import utc_now
    from scaler.run.acting import Actor
    from scaler.run.evaluating import Evaluator, kinds_of
    from scaler.signals.prometheus import Prometheus

    policies = load_policies([args.policies])
    kube = Kube.from_environment(kubeconfig=args.kubeconfig)
    prometheus = Prometheus(args.prometheus_url)
    view = WatchingView(kube, namespaces=[args.namespace])
    started = time.perf_counter()
    assert view.wait_synced(kinds_of(policies), timeout_seconds=300)
    sync_seconds = time.perf_counter() - started
    evaluator = Evaluator(prometheus=prometheus, view=view, excluded_namespaces={"kube-system"})
    actor = Actor(evaluator=evaluator, pauser=Pauser(kube), dry_run=False)
    walls, cpus, queries, requests, evaluated = [], [], [], [], 0
    for _ in range(args.ticks):
        before_queries, before_requests = prometheus.queries, kube.request_counts()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        now = utc_now()
        evaluations = evaluator.evaluate(policies, now=now)
        actor.act(evaluations, now=now)
        walls.append(time.perf_counter() - wall0)
        cpus.append(time.process_time() - cpu0)
        queries.append(prometheus.queries - before_queries)
        after = kube.request_counts()
        requests.append(sum(after.get(v, 0) - before_requests.get(v, 0) for v in after if v != "watch"))
        evaluated = len(evaluations)
    view.stop()
    print(json.dumps({
        "workloads": evaluated, "sync_seconds": round(sync_seconds, 2),
        "reconcile_p50_seconds": round(statistics.median(walls), 3), "reconcile_max_seconds": round(max(walls), 3),
        "cpu_p50_seconds": round(statistics.median(cpus), 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "queries_per_tick": statistics.median(queries), "api_requests_per_tick": statistics.median(requests),
    }))
    return 0


def push(pushgateway: str, name: str, value: float, labels: dict[str, str]) -> None:
    path = "/metrics/job/bench" + "".join(f"/{k}/{v}" for k, v in labels.items())
    body = f"# TYPE {name} gauge\n{name}{{{','.join(f'{k}={json.dumps(v)}' for k, v in labels.items())}}} {value}\n"
    urllib.request.urlopen(urllib.request.Request(pushgateway + path, data=body.encode(), method="PUT"), timeout=5)


def wake_latency(cluster, kube, samples: int) -> list[float]:
    """scaler run with a wake-only policy; pause by policy, push a queue, time
    until the Deployment has replicas again."""
    from scaler.cluster.kinds import DEPLOYMENT
    from scaler.cluster.pausing import Pauser
    from scaler.cluster.workloads import Workload

    namespace = f"bench-wake-{uuid.uuid4().hex[:6]}"
    create_namespace(kube, namespace)
    create_deployments(kube, namespace, [deployment("chat", replicas=2, labels={"app": "chat"})])
    policies = Path(tempfile.mkdtemp()) / "wake.yaml"
    policies.write_text(textwrap.dedent(f"""\
        policies:
          - name: wake-bench
            targets: {{namespaces: [{namespace}], selector: app=chat}}
            wake:
              query: 'gateway_pending_requests{{namespace="{namespace}"}}'
              target_per_replica: 4
            max_replicas: 4
        """))
    labels = {"namespace": namespace, "workload": "chat"}
    push(cluster.pushgateway_url, "gateway_pending_requests", 0, labels)
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    daemon = subprocess.Popen([sys.executable, "-m", "scaler", "run", "--policies", str(policies),
                               "--prometheus-url", cluster.prometheus_url, "--port", "0",
                               "--bind-address", "127.0.0.1", "--wake-check-interval-seconds", "1",
                               "--log-format", "json"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pauser = Pauser(kube)
    latencies = []
    try:
        time.sleep(3)
        for _ in range(samples):
            push(cluster.pushgateway_url, "gateway_pending_requests", 0, labels)
            time.sleep(2.5)  # Prometheus has scraped the empty queue
            current = Workload(DEPLOYMENT, kube.get(DEPLOYMENT.resource, namespace, "chat"))
            pauser.pause(current, by="policy/wake-bench", reason="benchmark", cause="idle-timeout")
            time.sleep(1.5)
            pushed = time.perf_counter()
            push(cluster.pushgateway_url, "gateway_pending_requests", 6, labels)
            while kube.get(DEPLOYMENT.resource, namespace, "chat")["spec"]["replicas"] == 0:
                if time.perf_counter() - pushed > 30:
                    raise SystemExit("no wake within 30 s")
                time.sleep(0.05)
            latencies.append(time.perf_counter() - pushed)
    finally:
        daemon.terminate()
        daemon.wait(30)
        kube.request("delete", "DELETE", f"/api/v1/namespaces/{namespace}", resource_text=namespace)
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--ticks", type=int, default=5)
    parser.add_argument("--wakes", type=int, default=20)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--namespace", help=argparse.SUPPRESS)
    parser.add_argument("--policies", help=argparse.SUPPRESS)
    parser.add_argument("--kubeconfig", help=argparse.SUPPRESS)
    parser.add_argument("--prometheus-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    from scaler.cluster.kube import Kube

    cluster, owned = start_cluster("bench-reconcile")
    kube = Kube.from_environment(kubeconfig=str(cluster.kubeconfig), pool_size=20)
    namespaces = []
    try:
        print(f"{'workloads':>9} {'reconcile p50':>13} {'cpu p50':>8} {'peak RSS':>9} {'queries/tick':>12} "
              f"{'API req/tick':>12} {'cache sync':>10}")
        for size in (int(s) for s in args.sizes.split(",")):
            namespace = f"bench-rec-{size}-{uuid.uuid4().hex[:4]}"
            namespaces.append(namespace)
            create_namespace(kube, namespace)
            create_deployments(kube, namespace, [
                deployment(f"w-{i:05d}", replicas=1, labels={"team": f"t{i % POLICIES}", "app": f"svc-{i % 8}"})
                for i in range(size)])
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
                handle.write(policy_file(namespace))
            result = subprocess.run([sys.executable, __file__, "--child", "--namespace", namespace,
                                     "--policies", handle.name, "--kubeconfig", str(cluster.kubeconfig),
                                     "--prometheus-url", cluster.prometheus_url, "--ticks", str(args.ticks)],
                                    capture_output=True, check=False, text=True, cwd=ROOT)
            if result.returncode != 0:
                print(result.stderr, file=sys.stderr)
                return 1
            row = json.loads(result.stdout.strip().splitlines()[-1])
            print(f"{row['workloads']:>9} {row['reconcile_p50_seconds']:>12.3f}s {row['cpu_p50_seconds']:>7.3f}s "
                  f"{row['peak_rss_mb']:>7.1f}MB {row['queries_per_tick']:>12} {row['api_requests_per_tick']:>12} "
                  f"{row['sync_seconds']:>9.2f}s")
        if args.wakes:
            latencies = sorted(wake_latency(cluster, kube, args.wakes))
            p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
            print(f"wake latency over {len(latencies)} wakes (queue pushed -> replicas > 0, 1 s scrape, 1 s wake "
                  f"check): p50 {statistics.median(latencies):.2f}s, p95 {p95:.2f}s, max {latencies[-1]:.2f}s")
    finally:
        for namespace in namespaces:
            kube.request("delete", "DELETE", f"/api/v1/namespaces/{namespace}", resource_text=namespace)
        if owned:
            local_cluster.down(cluster.state_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
