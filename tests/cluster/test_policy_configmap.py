"""Policies read from a ConfigMap through the API (`--policy-configmap`), as
the chart runs the daemon: an edit reaches every replica, a broken edit or a
deleted ConfigMap keeps the last good set, and a new leader never acts on a
version older than the one the last leader acted on (the double action the
real-node failover test caught: a standby whose kubelet-mounted copy still
said keep-down paused what the leader had just resumed)."""

from __future__ import annotations

import textwrap

from kubernetes import client

from tests.cluster.test_daemon import _keep_down_policy, _replicas
from tests.helpers import (
    FAST,
    election,
    events,
    eventually,
    gpu_deployment,
    lease_holder,
    run_scaler,
)


def _set(kube, namespace: str, **texts: str) -> None:
    """The ConfigMap `policies` holding these keys (created, or replaced)."""
    core = client.CoreV1Api(kube)
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="policies"),
                              data={key.replace("_", "-") + ".yaml": textwrap.dedent(text)
                                    for key, text in texts.items()})
    try:
        core.replace_namespaced_config_map("policies", namespace, body)
    except client.ApiException as error:
        if error.status != 404:
            raise
        core.create_namespaced_config_map(namespace, body)


def _count(kube, namespace: str, name: str, reason: str) -> int:
    return sum(e.count or 1 for e in events(kube, namespace, name, reason))


def test_a_new_leader_reads_the_configmap_before_it_acts(kube, namespace, tmp_path, daemons):
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, gpu_deployment("llm", replicas=3, gpus=1, labels={"tier": "gpu"}))
    _set(kube, namespace, nights=_keep_down_policy(namespace))
    source = ("--policy-configmap", f"{namespace}/policies", *election(namespace))
    one = daemons(tmp_path / "not-read.yaml", *FAST, *source, "--identity", "one", name="one")
    eventually(lambda: lease_holder(kube, namespace) == "one", timeout_seconds=30)
    eventually(lambda: _replicas(kube, namespace, "llm") == 0, timeout_seconds=30)
    # The standby reads the ConfigMap at its start and then not for ten
    # minutes: at the takeover it holds the keep-down version.
    two = daemons(tmp_path / "not-read.yaml", *FAST, *source, "--identity", "two",
                  "--policy-reload-interval-seconds", "600", name="two")
    two.wait_ready()

    # keep-up for llm, and a second policy the old version does not have.
    _set(kube, namespace, nights=_keep_down_policy(namespace, mode="up"),
         batch=_keep_down_policy(namespace, name="batch", selector="app=batch"))
    eventually(lambda: _replicas(kube, namespace, "llm") == 3, timeout_seconds=30)
    eventually(lambda: _count(kube, namespace, "llm", "Resumed") == 1, timeout_seconds=30)
    one.process.kill()

    eventually(lambda: lease_holder(kube, namespace) == "two", timeout_seconds=30)
    apps.create_namespaced_deployment(namespace, gpu_deployment("batch", replicas=2, gpus=1,
                                                                labels={"app": "batch"}))
    # Only the new version pauses batch: once it has, two acts on that version.
    eventually(lambda: _replicas(kube, namespace, "batch") == 0, timeout_seconds=30)
    two.wait_log("policies reloaded", lambda line: "batch" in line["names"])
    eventually(lambda: _count(kube, namespace, "batch", "ScaledToZero") == 1, timeout_seconds=30)
    two.let_time_pass(reconciles=2)
    assert _replicas(kube, namespace, "llm") == 3
    assert _count(kube, namespace, "llm", "ScaledToZero") == 1, "the new leader undid the last one's resume"
    assert [line["workload"] for line in two.logs("writing")] == ["batch"]
    assert two.stop() == 0


def test_a_broken_edit_or_a_deleted_configmap_keeps_the_last_good_policies(kube, namespace, tmp_path, daemons):
    apps = client.AppsV1Api(kube)
    _set(kube, namespace, nights=_keep_down_policy(namespace))
    daemon = daemons(tmp_path / "not-read.yaml", *FAST, "--policy-configmap", f"{namespace}/policies")
    daemon.wait_ready()
    assert daemon.logs("starting")[0]["source"] == f"ConfigMap {namespace}/policies"

    _set(kube, namespace, nights="policies:\n  - name: nights\n    targets: {namespaces: [x]}\n    idle: 3\n")
    rejected = daemon.wait_log("policy file rejected; the last good policies stay in force")
    assert rejected[0]["problem"].startswith(f"ConfigMap {namespace}/policies, nights.yaml:"), rejected[0]
    eventually(lambda: daemon.metric("scaler_policy_files_valid") == 0, timeout_seconds=30)
    apps.create_namespaced_deployment(namespace, gpu_deployment("late", replicas=2, gpus=0, labels={"tier": "gpu"}))
    eventually(lambda: _replicas(kube, namespace, "late") == 0, timeout_seconds=30)  # the last good set acts

    client.CoreV1Api(kube).delete_namespaced_config_map("policies", namespace)
    unread = daemon.wait_log("cannot read the policies; the last good ones stay in force, and a new leader waits "
                             "for them")
    assert "not found" in unread[0]["error"] and "configmaps/policies" in unread[0]["error"], unread[0]
    apps.create_namespaced_deployment(namespace, gpu_deployment("later", replicas=1, gpus=0,
                                                                labels={"tier": "gpu"}))
    eventually(lambda: _replicas(kube, namespace, "later") == 0, timeout_seconds=30)
    assert daemon.get("/readyz")[0] == 200
    assert daemon.stop() == 0


def test_a_missing_configmap_at_start_exits_1_naming_it(cluster, namespace):
    result = run_scaler("run", "--policy-configmap", f"{namespace}/nope", "--prometheus-url",
                        cluster.prometheus_url, "--port", "0", kubeconfig=cluster.kubeconfig, timeout_seconds=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (f"error: cannot read the policies from ConfigMap {namespace}/nope: configmaps/nope in namespace "
            f"{namespace} not found") in result.stderr
