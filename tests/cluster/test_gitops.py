"""No fights with GitOps: the daemon (`scaler run`) against the real cluster,
with Argo CD's self-heal played by a server-side apply of spec.replicas as
field manager `argocd-controller`."""

from __future__ import annotations

import textwrap

from kubernetes import client

from scaler.decide.annotations import (
    BACKOFF_UNTIL,
    REVERTED_BY,
    REVERTS,
)
from tests.cluster.test_daemon import _push
from tests.helpers import FAST, eventually, gpu_deployment, wait_events


def _idle_policy(tmp_path, namespace: str):
    path = tmp_path / "policies.yaml"
    path.write_text(textwrap.dedent(f"""
        policies:
          - name: chat-idle
            targets: {{namespaces: [{namespace}], selector: app=chat}}
            idle: {{query: 'vllm:num_requests_running{{namespace="{namespace}"}}', threshold: 0.5, duration: 6s}}
            startup_grace: 0s
            scale_down_delay: 0s
        """))
    return path


def _deployment(kube, namespace, name="chat") -> client.V1Deployment:
    return client.AppsV1Api(kube).read_namespaced_deployment(name, namespace)


def _self_heal(kube, namespace: str, *, replicas: int = 2) -> None:
    """Argo CD's self-heal: a server-side apply of Git's replicas, forced, as argocd-controller."""
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "chat", "namespace": namespace},
            "spec": {"replicas": replicas}}
    client.AppsV1Api(kube).patch_namespaced_deployment("chat", namespace, body, field_manager="argocd-controller",
                                                       force=True, _content_type="application/apply-patch+yaml")


def test_a_revert_by_a_real_server_side_apply_is_told_from_a_person_and_backed_off(
        kube, namespace, cluster, tmp_path, daemons):
    """What the real API server adds: the managedFields entry a server-side
    apply by argocd-controller leaves on spec.replicas, which is how scaler
    tells a GitOps revert from a person's edit. One revert: recorded on the
    object, reported once, and no pause while the back-off lasts. (The
    back-off's growth over many reverts, its report once per streak and a
    restart keeping it are tests/unit/test_hands_off.py's, in simulated time.)"""
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, gpu_deployment("chat", replicas=2, gpus=1))
    _push(cluster, namespace, "vllm:num_requests_running", 0)
    daemon = daemons(_idle_policy(tmp_path, namespace), *FAST, "--gitops-backoff-seconds", "600")
    daemon.wait_ready()
    eventually(lambda: _deployment(kube, namespace).spec.replicas == 0, timeout_seconds=60)
    _self_heal(kube, namespace)
    reverted = eventually(lambda: (a := _deployment(kube, namespace).metadata.annotations or {}).get(REVERTED_BY)
                          and a, timeout_seconds=30)
    assert reverted[REVERTED_BY] == "argocd-controller" and reverted[REVERTS] == "1" and BACKOFF_UNTIL in reverted
    reported = wait_events(kube, namespace, "chat", "PauseReverted")
    assert len(reported) == 1 and reported[0].type == "Warning"
    assert "pause reverted by argocd-controller" in reported[0].message
    assert daemon.wait_log("pause reverted")[0]["reverted_by"] == "argocd-controller"
    daemon.let_time_pass(reconciles=2)  # idle all along, but backed off: no pause
    assert _deployment(kube, namespace).spec.replicas == 2
    assert daemon.metric("scaler_pause_reverts_total", manager="argocd-controller") == 1
    assert daemon.stop() == 0
