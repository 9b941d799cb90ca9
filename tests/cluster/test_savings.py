"""Savings as the bill sees them, on a real Karpenter (KWOK provider): a
scripted period of pauses compressed to minutes, the daemon scraped by the
cluster's Prometheus, and `scaler savings` compared with what the cluster
actually did: the GPU-hours of the nodes Karpenter removed after the pauses
(timed by polling the Nodes) and the prices on those nodes' labels.

Timings and both sides of each comparison are printed (-s).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from kubernetes import client

from scaler.cluster.nodes import PRICE_LABEL
from scaler.decide.annotations import PAUSED_AT, STARTED_AT
from tests.cluster import test_nodes
from tests.cluster.test_nodes import (
    NODE_GONE_SECONDS,
    NOMINATED_SECONDS,
    annotations,
    create,
    keep_down,
    label,
    node_exists,
    on_karpenter,
)
from tests.helpers import eventually, run_scaler

pytestmark = pytest.mark.cluster
#: The fixtures of test_nodes.py on this module's own cluster with Karpenter (conftest.py): namespaces, daemons.
kube, namespace, daemons = test_nodes.kube, test_nodes.namespace, test_nodes.daemons

#: How long the period runs on after the last node went: the realized part measured.
AFTER_RELEASE_SECONDS = 150


def scraped(cluster, port: int) -> None:
    """The cluster's Prometheus scrapes the daemon (its file_sd targets, every second)."""
    (cluster.state_dir / "scrape-targets.json").write_text(json.dumps(
        [{"targets": [f"127.0.0.1:{port}"], "labels": {"instance": f"scaler-{port}"}}]))


def test_savings_match_the_gpu_hours_and_prices_of_the_nodes_the_cluster_released(
        kube, namespace, karpenter_cluster, tmp_path, daemons):
    sizes = {"big": 4, "small": 1}  # a gpu-4x node and a gpu-1x node: Karpenter's cheapest fits
    nodes = {}
    for name, gpus in sizes.items():
        nodes[name] = create(kube, namespace, on_karpenter(name, gpus=gpus, labels={"pause": "yes"}))
    assert len(set(nodes.values())) == 2
    core = client.CoreV1Api(kube)
    facts = {}
    for name, node in nodes.items():
        obj = core.read_node(node)
        facts[name] = (int(obj.status.allocatable["nvidia.com/gpu"]), float(obj.metadata.labels[PRICE_LABEL]))
    time.sleep(NOMINATED_SECONDS)  # Karpenter leaves a node it just launched alone this long

    period_from = datetime.now(UTC).replace(microsecond=0)
    daemon = daemons(keep_down(tmp_path, namespace))
    scraped(karpenter_cluster, daemon.port)
    daemon.wait_ready()
    for name in sizes:
        eventually(lambda name=name: annotations(kube, namespace, name).get(PAUSED_AT), timeout_seconds=30)
    gone: dict[str, datetime] = {}

    def all_gone() -> bool:
        for name, node in nodes.items():
            if name not in gone and not node_exists(kube, node):
                gone[name] = datetime.now(UTC)
        return len(gone) == len(nodes)
    eventually(all_gone, timeout_seconds=NODE_GONE_SECONDS, interval_seconds=0.5)
    # small is resumed by hand a minute later (taken out of the policy first): its realized part ends there
    time.sleep(60)
    label(kube, namespace, "small", None)
    resumed = run_scaler("resume", "small", "-n", namespace, kubeconfig=karpenter_cluster.kubeconfig)
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    ends = {"small": datetime.fromisoformat(annotations(kube, namespace, "small")[STARTED_AT])}
    time.sleep(AFTER_RELEASE_SECONDS - 60)
    period_to = datetime.now(UTC).replace(microsecond=0)
    time.sleep(5)  # the last scrapes before --to are in Prometheus

    done = run_scaler("savings", "--prometheus-url", karpenter_cluster.prometheus_url, "-n", namespace,
                      "--from", period_from.isoformat(), "--to", period_to.isoformat(), "-o", "json",
                      kubeconfig=karpenter_cluster.kubeconfig)
    assert done.returncode == 0, done.stderr
    rows = {row["workload"]: row for row in json.loads(done.stdout)["rows"]}
    for name in sizes:
        gpus, price = facts[name]
        hours = max((ends.get(name, period_to) - gone[name]).total_seconds(), 0) / 3600
        realized, money = rows[name]["gpuHours"]["realized"], (rows[name]["money"] or {}).get("realized")
        print(f"\nsavings: {name}: node gone {gone[name]:%H:%M:%S}, until {ends.get(name, period_to):%H:%M:%S} "
              f"the cluster released {gpus * hours:.4f} GPU-h "
              f"({price * hours:.4f} at {price}/h); scaler savings says {realized} GPU-h ({money})")
        assert realized == pytest.approx(gpus * hours, rel=0.05)
        assert money == pytest.approx(price * hours, rel=0.05)
        assert rows[name]["gpuHours"]["nominal"] >= realized
    table = run_scaler("savings", "--prometheus-url", karpenter_cluster.prometheus_url, "-n", namespace,
                       "--from", period_from.isoformat(), "--to", period_to.isoformat(),
                       kubeconfig=karpenter_cluster.kubeconfig)
    assert table.returncode == 0 and "TOTAL" in table.stdout, table.stderr
