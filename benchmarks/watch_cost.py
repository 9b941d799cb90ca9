"""What one JSON watch of Deployments costs the edge benchmark's ceiling.

The ceiling of benchmarks/edge.py is a minimal client that only sends
PATCHes. scaler also keeps a watch of Deployments open (its cache: promise 5
reads the cluster from list+watch caches), and the API server serves it two
events per write (scaler's own change and the controller's status update).
This runs that ceiling over N Deployments in rounds, alternately bare and
with one JSON watch of every Deployment open in this process (parsed with
orjson, as scaler's informer does), and prints per round: the client's
writes/s, the API server's CPU ms per write, this process's (the client's,
and the watch's when open) and the idle cores.

    python benchmarks/watch_cost.py [--deployments 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
from contextlib import suppress

import orjson
import urllib3
from common import create_deployments, create_namespace, deployment, start_cluster
from cputrace import CpuTrace, pid_of
from edge import ceiling, delete_namespace

from scaler.cluster.kinds import DEPLOYMENT
from scaler.cluster.kube import Kube


def watch(cluster, version: str, stop: threading.Event, seen: list[int], opened: list) -> None:
    """Every Deployment's changes from `version` on, until `stop` (the
    response, put in `opened`, shut by the caller), counted in `seen[0]`."""
    pki = cluster.state_dir / "pki"
    http = urllib3.PoolManager(ca_certs=str(pki / "ca.crt"), cert_file=str(pki / "admin.crt"),
                               key_file=str(pki / "admin.key"))
    answer = http.request("GET", f"{cluster.apiserver_url}/apis/apps/v1/deployments?watch=true&resourceVersion="
                          f"{version}&allowWatchBookmarks=true&timeoutSeconds=600", preload_content=False)
    opened.append(answer)
    if answer.status != 200:
        raise SystemExit(f"the watch was refused: {answer.status} {answer.read()[:300]!r}")
    buffer = b""
    try:
        for chunk in answer.stream(64 * 1024):
            if stop.is_set():
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    orjson.loads(line)
                    seen[0] += 1
    except (urllib3.exceptions.HTTPError, OSError, ValueError):
        return  # shut by the caller


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deployments", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cluster, _ = start_cluster("edge")
    kube = Kube.from_environment(kubeconfig=str(cluster.kubeconfig))
    namespace = f"bench-watch-{random.getrandbits(20):05x}"
    create_namespace(kube, namespace)
    bodies = [deployment(f"d-{i:05d}", replicas=i % 3 + 1, labels={"bench": "edge"}) for i in range(args.deployments)]
    for body in bodies:
        body["metadata"]["annotations"] = {"team.example.com/owner": "bench"}
    create_deployments(kube, namespace, bodies)
    trace = CpuTrace({"apiserver": pid_of("kube-apiserver", str(cluster.state_dir)) or 0, "client": os.getpid()})
    try:
        for _ in range(args.rounds):
            for watching in (False, True):
                items, version = kube.list(DEPLOYMENT.resource, namespace)
                stop, seen = threading.Event(), [0]
                opened: list[urllib3.BaseHTTPResponse] = []
                watcher = threading.Thread(target=watch, args=(cluster, version, stop, seen, opened), daemon=True)
                if watching:
                    watcher.start()
                seconds = ceiling(cluster, kube, namespace, items, "bench")
                end = time.time()
                stop.set()
                for answer in opened:
                    with suppress(RuntimeError, OSError):  # the watcher let go of it first
                        answer.shutdown()
                spent = trace.span(end - seconds, end)
                print(json.dumps({
                    "deployments": args.deployments, "watch_open": watching,
                    "writes_per_second": round(args.deployments / seconds),
                    "apiserver_cpu_ms_per_write": round(1000 * spent["apiserver"] / args.deployments, 2),
                    "client_cpu_ms_per_write": round(1000 * spent["client"] / args.deployments, 2),
                    "idle_cores": round(spent["idle"] / spent["seconds"], 2),
                    "watch_events": seen[0]}), flush=True)
    finally:
        trace.stop()
        delete_namespace(kube, namespace)


if __name__ == "__main__":
    main()
