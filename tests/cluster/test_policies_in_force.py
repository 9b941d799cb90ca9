"""Issue 12 on the real cluster: policies mean what they say, and one bad
policy stops nothing else. Each test names the bug it reproduces; each
failed on the branch point (575e6f6)."""

from __future__ import annotations

import json
import textwrap

from kubernetes import client

from scaler.decide.annotations import LAST_REPLICAS, PAUSED_BY
from tests.helpers import (
    FAST,
    apply_crd,
    events,
    eventually,
    gpu_deployment,
    pause_state,
    push_metric,
    run_scaler,
    simple_crd,
    wait_events,
)


def _write(path, text: str):
    path.write_text(textwrap.dedent(text))
    return path


def _deployment(kube, namespace, name) -> client.V1Deployment:
    return client.AppsV1Api(kube).read_namespaced_deployment(name, namespace)




def _push(cluster, namespace, name, value, workload="chat"):
    push_metric(cluster.pushgateway_url, job="test", name=name, value=value,
                labels={"namespace": namespace, "workload": workload},
                grouping={"namespace": namespace, "workload": workload, "metric": name.replace(":", "_")})


def _plan(cluster, policies, *args):
    return run_scaler("plan", "--policies", str(policies), "--prometheus-url", cluster.prometheus_url, *args,
                      kubeconfig=cluster.kubeconfig)


def test_a_queue_wakes_a_zero_scaler_did_not_pause_and_later_pauses_work(kube, namespace, cluster, tmp_path,
                                                                         daemons):
    """Rule 3a: at zero, no pause record, a queue of 10. Before: plan said
    'resume 0 -> 3' forever and nothing was written."""
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, gpu_deployment("chat", replicas=0, gpus=1))
    _push(cluster, namespace, "vllm:num_requests_running", 0)
    _push(cluster, namespace, "gateway_pending_requests", 10)
    policies = _write(tmp_path / "policies.yaml", f"""
        policies:
          - name: chat-queue
            targets: {{namespaces: [{namespace}]}}
            idle:
              query: 'vllm:num_requests_running{{namespace="{namespace}"}}'
              threshold: 0.5
              duration: 6s
            wake:
              query: 'gateway_pending_requests{{namespace="{namespace}"}}'
              target_per_replica: 4
            max_replicas: 8
            startup_grace: 0s      # no cold-start protection: the re-pause below comes at once
            scale_down_delay: 0s
        """)
    daemon = daemons(policies, *FAST)
    eventually(lambda: _deployment(kube, namespace, "chat").spec.replicas == 3, timeout_seconds=60)
    assert pause_state(_deployment(kube, namespace, "chat").metadata.annotations) == {}  # nothing to restore
    assert "woken to 3 replicas" in wait_events(kube, namespace, "chat", "Resumed")[0].message
    assert events(kube, namespace, "chat", "ScaledToZero") == []
    # Running like any other workload: idle pauses it with its size recorded, and the queue brings that back.
    _push(cluster, namespace, "gateway_pending_requests", 0)
    eventually(lambda: _deployment(kube, namespace, "chat").spec.replicas == 0, timeout_seconds=60)
    annotations = _deployment(kube, namespace, "chat").metadata.annotations
    assert annotations[LAST_REPLICAS] == "3" and annotations[PAUSED_BY] == "policy/chat-queue"
    _push(cluster, namespace, "gateway_pending_requests", 1)
    eventually(lambda: _deployment(kube, namespace, "chat").spec.replicas == 3, timeout_seconds=30)
    # One per wake, not one per tick. The line follows the write it reports: wait for it.
    def resumes() -> list[dict]:
        return [line for line in daemon.logs("decision") if line.get("action") == "resume"]

    eventually(lambda: len(resumes()) >= 2, timeout_seconds=30)
    assert len(resumes()) == 2, resumes()
    assert daemon.stop() == 0


def _sized_crd(group: str) -> dict:
    """A CRD whose /scale maps replicas to .spec.size (as many operators do)."""
    crd = simple_crd(group=group, kind="SizedServer", plural="sizedservers", version="v1", scale=True)
    crd["spec"]["versions"][0]["subresources"]["scale"] = {"specReplicasPath": ".spec.size",
                                                           "statusReplicasPath": ".status.size"}
    return crd


def test_a_custom_resource_is_paused_and_resumed_through_its_declared_scale_path(kube, namespace, cluster):
    """Before: spec.replicas: 0 was written and spec.size left at 2."""
    group = "sized.scaler.test"
    apply_crd(kube, _sized_crd(group))
    objects = client.CustomObjectsApi(kube)
    objects.create_namespaced_custom_object(group, "v1", namespace, "sizedservers", {
        "apiVersion": f"{group}/v1", "kind": "SizedServer", "metadata": {"name": "big"}, "spec": {"size": 2}})
    kind = f"sizedservers.{group}/v1"

    paused = run_scaler("pause", "big", "-n", namespace, "--kind", kind, kubeconfig=cluster.kubeconfig)
    assert paused.returncode == 0, paused.stderr
    obj = objects.get_namespaced_custom_object(group, "v1", namespace, "sizedservers", "big")
    assert obj["spec"] == {"size": 0}  # the declared path, and no guessed spec.replicas
    assert obj["metadata"]["annotations"][LAST_REPLICAS] == "2"
    scale = objects.get_namespaced_custom_object_scale(group, "v1", namespace, "sizedservers", "big")
    assert scale["spec"].get("replicas", 0) == 0  # what the API server's /scale reports agrees (0 is omitted)

    resumed = run_scaler("resume", "big", "-n", namespace, "--kind", kind, kubeconfig=cluster.kubeconfig)
    assert resumed.returncode == 0, resumed.stderr
    obj = objects.get_namespaced_custom_object(group, "v1", namespace, "sizedservers", "big")
    assert obj["spec"] == {"size": 2}
    assert pause_state(obj["metadata"].get("annotations")) == {}


def test_a_failing_policy_is_reported_and_skipped_the_others_act(kube, namespace, cluster, tmp_path, daemons):
    """One bad policy stopped all. Here one targets a custom resource whose
    CRD has no /scale: it is reported (log, metric, /readyz, plan row) and
    skipped, and the other policy pauses its Deployment."""
    group = "noscale.scaler.test"
    apply_crd(kube, simple_crd(group=group, kind="Plain", plural="plains", version="v1", scale=False))
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, gpu_deployment("chat", replicas=2, gpus=1))
    sized = "sized.scaler.test"
    apply_crd(kube, _sized_crd(sized))
    objects = client.CustomObjectsApi(kube)
    objects.create_namespaced_custom_object(sized, "v1", namespace, "sizedservers", {
        "apiVersion": f"{sized}/v1", "kind": "SizedServer", "metadata": {"name": "big"}, "spec": {"size": 3}})
    directory = tmp_path / "policies"
    directory.mkdir()
    _write(directory / "a-plain.yaml", f"""
        policies:
          - name: plain-nights
            targets: {{namespaces: [{namespace}], kinds: [plains.{group}/v1]}}
            schedule:
              timezone: UTC
              windows: [{{mode: down, when: "daily 00:00-24:00"}}]
        """)
    _write(directory / "b-chat.yaml", f"""
        policies:
          - name: chat-nights
            targets: {{namespaces: [{namespace}], kinds: [Deployment, sizedservers.{sized}/v1]}}
            schedule:
              timezone: UTC
              windows: [{{mode: down, when: "daily 00:00-24:00"}}]
        """)
    daemon = daemons(directory, *FAST)
    eventually(lambda: _deployment(kube, namespace, "chat").spec.replicas == 0, timeout_seconds=60)
    # The daemon, too, sizes a custom resource where its CRD's /scale says.
    eventually(lambda: objects.get_namespaced_custom_object(sized, "v1", namespace, "sizedservers", "big")["spec"]
               == {"size": 0}, timeout_seconds=30)
    big = objects.get_namespaced_custom_object(sized, "v1", namespace, "sizedservers", "big")
    assert big["metadata"]["annotations"][LAST_REPLICAS] == "3"
    eventually(lambda: daemon.metric("scaler_policy_failing", policy="plain-nights") == 1, timeout_seconds=30)
    assert daemon.metric("scaler_policy_failing", policy="chat-nights") == 0
    # readiness takes the pass's failures once the pass is over, after the metric
    failing = eventually(lambda: json.loads(daemon.get("/readyz")[1])["failingPolicies"], timeout_seconds=30)
    assert set(failing) == {"plain-nights"} and "no scale subresource" in failing["plain-nights"], failing
    lines = eventually(lambda: daemon.logs("policy failed at run time; skipped, the other policies go on"),
                       timeout_seconds=30)
    assert len(lines) == 1 and lines[0]["source"].endswith("a-plain.yaml:3"), lines

    planned = _plan(cluster, directory, "--all")
    assert planned.returncode == 1, planned.stdout + planned.stderr
    row = next(line for line in planned.stdout.splitlines() if "plain-nights" in line)
    assert "failed" in row and "a-plain.yaml:3" in row, planned.stdout
    assert f"plains.{group}/v1: the CRD plains.{group} has no scale subresource" in " ".join(planned.stdout.split())

    # A hot reload with a file that would break the run time is refused, and readiness says so.
    _write(directory / "c-label.yaml", """
        policies:
          - name: bad-label
            idle: {query: up, threshold: 1, duration: 5m, workload_label: my-label}
        """)
    eventually(lambda: daemon.metric("scaler_policy_files_valid") == 0, timeout_seconds=30)
    ready = eventually(lambda: (body := json.loads(daemon.get("/readyz")[1]))["policyFilesValid"] is False and body,
                       timeout_seconds=30)
    assert any("c-label.yaml:4: idle.workload_label: 'my-label'" in problem for problem in ready["policyProblems"])
    (directory / "c-label.yaml").unlink()
    eventually(lambda: json.loads(daemon.get("/readyz")[1])["policyFilesValid"] is True, timeout_seconds=30)
    assert daemon.stop() == 0


def test_plan_json_is_pure_json_when_a_query_fails(kube, namespace, cluster, tmp_path):
    """Before: the failed query's log line came first on stdout."""
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, gpu_deployment("chat", replicas=2, gpus=1))
    policies = _write(tmp_path / "policies.yaml", f"""
        policies:
          - name: broken-query
            targets: {{namespaces: [{namespace}]}}
            idle: {{query: 'sum(rate(', threshold: 1, duration: 5m}}
        """)
    planned = _plan(cluster, policies, "-o", "json", "--all")
    assert planned.returncode == 4, planned.stderr  # unknown: a signal could not be evaluated (README's table)
    answer = json.loads(planned.stdout)
    assert answer["signalErrors"] and answer["evaluations"][0]["reasonCode"] == "metrics-unknown"
    assert "signal unknown: query failed" in planned.stderr
