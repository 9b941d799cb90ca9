"""What the cluster benchmarks share: a cluster to run against, and many
Deployments created fast."""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "deploy" / "local"))

import cluster as local_cluster  # noqa: E402


def start_cluster(name: str):
    """A running local cluster: the one named by SCALER_CLUSTER_STATE_DIR if
    set (left running), else a fresh one in ~/.cache/scaler/<name> that the
    caller stops with local_cluster.down(cluster.state_dir)."""
    state_dir = os.environ.get("SCALER_CLUSTER_STATE_DIR")
    if state_dir:
        return local_cluster.up(Path(state_dir)), False
    return local_cluster.up(local_cluster.CACHE_DIR / name), True


def deployment(name: str, *, replicas: int, labels: dict[str, str]) -> dict:
    """A Deployment created paused (spec.paused): the controller-manager then
    makes no ReplicaSets or pods for it, so a benchmark of a thousand objects
    measures scaler's API traffic, not a 2-core machine scheduling pods."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas, "paused": True,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{
                "name": "server", "image": "vllm/vllm-openai:fake",
                "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}},
        },
    }


def create_namespace(kube, namespace: str, labels: dict[str, str] | None = None) -> None:
    from scaler.cluster.kube import Resource

    kube.create(Resource("", "v1", "namespaces", namespaced=False), None,
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": labels or {}}})


def create_deployments(kube, namespace: str, bodies: list[dict], *, concurrency: int = 16) -> None:
    from scaler.cluster.workloads import DEPLOYMENT

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda body: kube.create(DEPLOYMENT.resource, namespace, body), bodies))


def minimal_client_patches(cluster, namespace: str, bodies: dict[str, list[dict]], *,
                           connections: int = 16) -> float:
    """The machine's write ceiling: the JSON patches in `bodies` (name ->
    operations) sent by a minimal stdlib client, one keep-alive TLS connection
    per thread, nothing else done per write. Seconds for all of them."""
    import http.client
    import json
    import ssl
    import threading
    import time

    pki = cluster.state_dir / "pki"
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    port = int(cluster.apiserver_url.rsplit(":", 1)[1])
    names = list(bodies)
    lock = threading.Lock()
    failures: list[str] = []

    def worker() -> None:
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context)
        while True:
            with lock:
                if not names:
                    break
                name = names.pop()
            connection.request("PATCH", f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
                               body=json.dumps(bodies[name]),
                               headers={"Content-Type": "application/json-patch+json", "Accept": "application/json"})
            answer = connection.getresponse()
            text = answer.read()
            if answer.status != 200:
                failures.append(f"{name}: {answer.status} {text[:200]!r}")
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"the minimal client's patches failed: {failures[:5]}")
    return time.perf_counter() - started
