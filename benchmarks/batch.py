"""Batch pause and resume of 1,000 Deployments on the local cluster: wall
time and API requests each way (target: <= 10 s each way on 2 cores).

With --writers N, the same batch runs twice more while N other writers keep
patching an unrelated annotation on the same objects (another controller at
work): it must finish within 2x its time without them, with exact counts.

It runs the same code `scaler pause -l ...` and `scaler resume -l ...` run
(select, then run_batch with Pauser), in this process so requests can be
counted, and then the CLI itself once each way for the end-to-end time.

    python benchmarks/batch.py [--deployments 1000] [--concurrency N] [--writers 4]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid
from functools import partial

from common import (
    ROOT,
    create_deployments,
    create_namespace,
    deployment,
    local_cluster,
    start_cluster,
)

from scaler.cluster.batches import Selection, run_batch, select
from scaler.cluster.kinds import DEPLOYMENT
from scaler.cluster.kube import Kube
from scaler.cluster.pausing import Pauser
from scaler.cluster.writes import Outcome
from scaler.decide.decisions import MANUAL
from scaler.run.settings import ClusterSettings

#: Writes in flight unless told: what `scaler run` and the CLI's batches use (SCALER_CONCURRENCY).
DEFAULT_CONCURRENCY: int = ClusterSettings.model_fields["concurrency"].default


def timed_batch(kube: Kube, namespace: str, operation: str, concurrency: int) -> tuple[float, dict[str, int], int]:
    before = kube.request_counts()
    started = time.perf_counter()
    workloads, _ = select(kube, Selection(kinds=[DEPLOYMENT], namespace=namespace, label_selector="bench=batch"))
    pauser = Pauser(kube)
    if operation == "pause":
        results = run_batch(workloads, lambda w: pauser.pause(w, by=MANUAL, reason="benchmark"),
                            concurrency=concurrency)
    else:
        results = run_batch(workloads, lambda w: pauser.manual_resume(w, reason="benchmark"), concurrency=concurrency)
    elapsed = time.perf_counter() - started
    after = kube.request_counts()
    requests = {verb: after.get(verb, 0) - before.get(verb, 0) for verb in after
                if after.get(verb, 0) != before.get(verb, 0)}
    changed = sum(1 for r in results if r.outcome is Outcome.CHANGED)
    return elapsed, requests, changed


def with_writers(kube: Kube, namespace: str, writers: int, run):
    """run() while `writers` threads patch an unrelated annotation on every
    object, round and round; what run() returns, and the writers' PATCHes."""
    items, _ = kube.list(DEPLOYMENT.resource, namespace, label_selector="bench=batch")
    names = [item["metadata"]["name"] for item in items]
    stop, done = threading.Event(), []

    def write(offset: int) -> None:
        count = 0
        while not stop.is_set():
            name = names[(offset + count) % len(names)]
            kube.patch(DEPLOYMENT.resource, namespace, name,
                       {"metadata": {"annotations": {"example.com/touched": str(count)}}})
            count += 1
        done.append(count)

    threads = [threading.Thread(target=write, args=(i * len(names) // writers,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    try:
        return run(), done
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def check_counts(kube: Kube, namespace: str, paused: bool) -> None:
    items, _ = kube.list(DEPLOYMENT.resource, namespace, label_selector="bench=batch")
    for item in items:
        expected = int(item["metadata"]["name"][2:]) % 7 + 1
        replicas, annotations = item["spec"]["replicas"], item["metadata"].get("annotations") or {}
        if paused:
            assert replicas == 0 and annotations["scaler.io/last-replicas"] == str(expected), item["metadata"]
        else:
            assert replicas == expected and "scaler.io/last-replicas" not in annotations, item["metadata"]


def settle(kube: Kube, namespace: str, timeout_seconds: float = 120) -> None:
    """Wait until the Deployment controller has seen every object: measuring
    while it still writes their status would time our 409 retries against a
    burst of creations, not steady state (that case has its own test)."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        items, _ = kube.list(DEPLOYMENT.resource, namespace)
        if all((d.get("status") or {}).get("observedGeneration") == d["metadata"]["generation"] for d in items):
            return
        time.sleep(1)
    raise SystemExit("Deployments did not settle in time")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deployments", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                        help="writes in flight (default: SCALER_CONCURRENCY's, %(default)s)")
    parser.add_argument("--writers", type=int, default=0, help="other writers racing the batch (0: none)")
    args = parser.parse_args()

    cluster, owned = start_cluster("bench-batch")
    try:
        kube = Kube.from_environment(kubeconfig=str(cluster.kubeconfig), pool_size=args.concurrency + 4)
        namespace = f"bench-batch-{uuid.uuid4().hex[:6]}"
        create_namespace(kube, namespace)
        t = time.perf_counter()
        create_deployments(kube, namespace, [deployment(f"d-{i:04d}", replicas=i % 7 + 1, labels={"bench": "batch"})
                                             for i in range(args.deployments)])
        print(f"created {args.deployments} Deployments in {time.perf_counter() - t:.1f}s")
        settle(kube, namespace)

        for operation in ("pause", "resume"):
            elapsed, requests, changed = timed_batch(kube, namespace, operation, args.concurrency)
            total = sum(requests.values())
            print(f"{operation:6s} {changed} changed in {elapsed:.2f}s ({changed / elapsed:.0f}/s), "
                  f"{total} API requests ({', '.join(f'{v} {k}' for k, v in sorted(requests.items()))})")

        if args.writers:
            writer_kube = Kube.from_environment(kubeconfig=str(cluster.kubeconfig), pool_size=args.writers + 2)
            for operation in ("pause", "resume"):
                (elapsed, requests, changed), writes = with_writers(
                    writer_kube, namespace, args.writers,
                    partial(timed_batch, kube, namespace, operation, args.concurrency))
                check_counts(kube, namespace, paused=operation == "pause")
                print(f"{operation:6s} with {args.writers} writers: {changed} changed in {elapsed:.2f}s, "
                      f"{requests.get('patch', 0)} PATCHes for {changed} objects, {sum(writes)} PATCHes by the "
                      "writers meanwhile; counts exact")

        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
        for operation in ("pause", "resume"):
            started = time.perf_counter()
            result = subprocess.run([sys.executable, "-m", "scaler", operation, "-n", namespace, "-l", "bench=batch",
                                     "--kind", "Deployment", "-o", "json", "--concurrency", str(args.concurrency)],
                                    capture_output=True, check=False, text=True, env=env, cwd=ROOT)
            elapsed = time.perf_counter() - started
            if result.returncode != 0:
                print(result.stderr, file=sys.stderr)
                return 1
            print(f"CLI scaler {operation} -l bench=batch: {elapsed:.2f}s end to end (process start included)")
        kube.request("delete", "DELETE", f"/api/v1/namespaces/{namespace}", resource_text=namespace)
    finally:
        if owned:
            local_cluster.down(cluster.state_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
