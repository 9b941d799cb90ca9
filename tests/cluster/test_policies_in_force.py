"""Issue 12 on the real cluster: a custom resource is sized where its CRD's
/scale says, and the real API server's /scale agrees. (Rule 3a, a failing
policy skipped and `plan -o json` with a failed query are
tests/unit/test_daemon_signals.py's and test_plan_cli.py's.) The test names
the bug it reproduces; it failed on the branch point (575e6f6)."""

from __future__ import annotations

import textwrap

from kubernetes import client

from scaler.decide.annotations import LAST_REPLICAS
from tests.helpers import (
    apply_crd,
    pause_state,
    run_scaler,
    simple_crd,
)


def _write(path, text: str):
    path.write_text(textwrap.dedent(text))
    return path


def _deployment(kube, namespace, name) -> client.V1Deployment:
    return client.AppsV1Api(kube).read_namespaced_deployment(name, namespace)


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
