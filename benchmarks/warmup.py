"""Cold starts measured: wake-to-Ready percentiles with simulated model loads.

N paused GPU Deployments on the local cluster get model load times drawn
from a seeded log-normal spread (median --median-load seconds); the real
daemon wakes them all through a queue. For each we read scaler's own
measurement (the warm-up it records on the object, start to all Ready) and
an independent one (this script polling the Deployment from the moment the
daemon's write landed), and print both as p50/p90/max, with the error of
scaler's figure against the observed one.

    python benchmarks/warmup.py [--workloads 20] [--median-load 20]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
import uuid
from pathlib import Path

from common import ROOT, create_namespace, local_cluster, start_cluster

from scaler.cluster.kinds import DEPLOYMENT
from scaler.cluster.kube import Kube
from scaler.decide.annotations import WARM_UPS


def body(name: str, load_seconds: float) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"bench": "warmup"}, "annotations": {
            "scaler.io/last-replicas": "1", "scaler.io/paused-by": "policy/bench-warmup",
            "scaler.io/paused-at": "2026-01-01T00:00:00Z", "scaler.io/pause-cause": "idle-timeout"}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}, "annotations": {
                "local.scaler.io/model-load-time": f"{load_seconds:.1f}s"}},
            "spec": {"containers": [{"name": "m", "image": "vllm/vllm-openai:fake",
                                     "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}},
    }


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
    return f"p50 {statistics.median(ordered):5.1f}s  p90 {p90:5.1f}s  max {ordered[-1]:5.1f}s"


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", type=int, default=20)
    parser.add_argument("--median-load", type=float, default=20.0)
    return parser.parse_args()


def set_up(cluster, kube: Kube, namespace: str, loads: list[float]) -> tuple[list[str], Path]:
    """The paused Deployments, their policy and a queue of 1 for each: (their names, the work directory)."""
    create_namespace(kube, namespace)
    names = [f"m-{i:02d}" for i in range(len(loads))]
    for name, load in zip(names, loads, strict=True):
        kube.create(DEPLOYMENT.resource, namespace, body(name, load))
    work = Path(tempfile.mkdtemp(prefix="scaler-warmup-"))
    (work / "policies.yaml").write_text(textwrap.dedent(f"""\
        policies:
          - name: bench-warmup
            targets: {{namespaces: [{namespace}], selector: bench=warmup}}
            wake: {{query: 'bench_queue{{namespace="{namespace}"}}', target_per_replica: 4}}
        """))
    queue = "# TYPE bench_queue gauge\n" + "".join(
        f'bench_queue{{namespace="{namespace}",workload="{name}"}} 1\n' for name in names)
    urllib.request.urlopen(urllib.request.Request(f"{cluster.pushgateway_url}/metrics/job/bench-{namespace}",
                                                  data=queue.encode(), method="PUT"), timeout=5)
    return names, work


def observe(kube: Kube, namespace: str, names: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    """Poll the Deployments: when each was woken and when all its replicas were Ready (monotonic seconds)."""
    woke: dict[str, float] = {}
    ready: dict[str, float] = {}
    deadline = time.monotonic() + 300
    while len(ready) < len(names) and time.monotonic() < deadline:
        items, _ = kube.list(DEPLOYMENT.resource, namespace)
        now = time.monotonic()
        for item in items:
            name, spec, status = item["metadata"]["name"], item["spec"], item.get("status") or {}
            if spec["replicas"] > 0:
                woke.setdefault(name, now)
                if (status.get("readyReplicas") or 0) >= spec["replicas"]:
                    ready.setdefault(name, now)
        time.sleep(0.2)
    return woke, ready


def recorded_warm_ups(kube: Kube, namespace: str, expected: int) -> dict[str, float]:
    """The warm-up scaler recorded on each object, once `expected` have one (or 30 s have passed)."""
    recorded: dict[str, float] = {}
    deadline = time.monotonic() + 30
    while len(recorded) < expected and time.monotonic() < deadline:
        items, _ = kube.list(DEPLOYMENT.resource, namespace)
        recorded = {i["metadata"]["name"]: float(i["metadata"]["annotations"][WARM_UPS].split(",")[-1])
                    for i in items if WARM_UPS in (i["metadata"].get("annotations") or {})}
        time.sleep(0.5)
    return recorded


def main() -> None:
    args = arguments()
    cluster, own = start_cluster("bench-warmup")
    rng = random.Random(7)
    loads = [min(max(rng.lognormvariate(math.log(args.median_load), 0.4), 2), 120) for _ in range(args.workloads)]
    namespace = f"bench-warmup-{uuid.uuid4().hex[:5]}"
    kube = Kube.from_environment(kubeconfig=str(cluster.kubeconfig))
    names, work = set_up(cluster, kube, namespace, loads)
    log = open(work / "daemon.log", "wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "scaler", "run", "--policies", str(work / "policies.yaml"),
         "--prometheus-url", cluster.prometheus_url, "--bind-address", "127.0.0.1", "--port", "0",
         "--log-format", "json", "--wake-check-interval-seconds", "1"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}, cwd=ROOT)
    try:
        woke, ready = observe(kube, namespace, names)
        recorded = recorded_warm_ups(kube, namespace, len(ready))
    finally:
        daemon.terminate()
        daemon.wait(30)
        log.close()
        kube.request("delete", "DELETE", f"/api/v1/namespaces/{namespace}", resource_text=namespace)
        if own:
            local_cluster.down(cluster.state_dir)
    observed = [ready[name] - woke[name] for name in ready]
    errors = [recorded[name] - (ready[name] - woke[name]) for name in recorded if name in ready]
    print(f"{len(names)} models, load times {percentiles(loads)} (simulated)")
    print(f"observed wake -> all Ready  {percentiles(observed)}")
    print(f"recorded by scaler          {percentiles(list(recorded.values()))}")
    print(f"scaler minus observed       median {statistics.median(errors):+.1f}s, "
          f"worst {max(errors, key=abs):+.1f}s (poll 0.2 s, wake check 1 s)")
    print(json.dumps({"workloads": len(names), "recorded": len(recorded), "ready": len(ready)}))


if __name__ == "__main__":
    main()
