"""No fights with GitOps, and people's edits and holds honoured: the daemon
(`scaler run`) against the real cluster, with a thread playing Argo CD's
self-heal (server-side apply of spec.replicas as field manager
`argocd-controller` every 3 s)."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from datetime import datetime
from itertools import pairwise

from kubernetes import client

from scaler.decide.annotations import (
    BACKOFF_UNTIL,
    REVERTED_BY,
    REVERTS,
)
from tests.cluster.test_daemon import _push
from tests.helpers import FAST, events, eventually, gpu_deployment, run_scaler

#: Compressed back-off: 5 s, 10 s, 20 s, 40 s, 80 s ... instead of 5 min, 10 min, 20 min ... The
#: code path is the same (the base is a setting); only the unit of time shrinks 60-fold.
BACKOFF = ("--gitops-backoff-seconds", "5")
RUN_SECONDS = 170


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


class SelfHeal(threading.Thread):
    """Argo CD with self-heal: re-applies replicas from Git every few seconds."""

    def __init__(self, kube, namespace: str, *, replicas: int = 2, every_seconds: float = 3) -> None:
        super().__init__(daemon=True)
        self.apps = client.AppsV1Api(kube)
        self.namespace, self.replicas, self.every_seconds = namespace, replicas, every_seconds
        self.stop = threading.Event()
        self.applies = 0

    def run(self) -> None:
        body = {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "chat", "namespace": self.namespace}, "spec": {"replicas": self.replicas}}
        while not self.stop.wait(self.every_seconds):
            self.apps.patch_namespaced_deployment("chat", self.namespace, body, field_manager="argocd-controller",
                                                  force=True, _content_type="application/apply-patch+yaml")
            self.applies += 1


def _writes(daemon) -> list[tuple[float, str]]:
    """(seconds since epoch, what) of every write the daemon made to the workload."""
    found = []
    for line in daemon.logs():
        what = None
        if line.get("event") == "decision" and line.get("action") == "pause" and line.get("result") == "changed":
            what = "pause"
        elif line.get("event") == "pause reverted" and line.get("result") == "skipped":
            what = "revert"
        if what:
            found.append((datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp(), what))
    return found


def test_a_gitops_controller_reverting_pauses_gets_one_report_and_a_growing_back_off(
        kube, namespace, cluster, tmp_path, daemons):
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, gpu_deployment("chat", replicas=2, gpus=1))
    _push(cluster, namespace, "vllm:num_requests_running", 0)
    argo = SelfHeal(kube, namespace)
    argo.start()
    daemon = daemons(_idle_policy(tmp_path, namespace), *FAST, *BACKOFF)
    try:
        daemon.wait_ready()
        started = time.time()
        eventually(lambda: _deployment(kube, namespace).metadata.annotations.get(REVERTED_BY), timeout_seconds=60)
        time.sleep(max(0.0, RUN_SECONDS - (time.time() - started)))  # the run itself is what is measured
    finally:
        argo.stop.set()
        argo.join(10)
    # A revert argo made just before it stopped is seen by a later reconcile:
    # let two pass, then read the writes once the log and the metric agree.
    daemon.let_time_pass()
    eventually(lambda: daemon.metric("scaler_pause_reverts_total", manager="argocd-controller")
               == sum(1 for _, what in _writes(daemon) if what == "revert"), timeout_seconds=15)
    writes = _writes(daemon)
    pauses = [t for t, what in writes if what == "pause"]
    reverts = [t for t, what in writes if what == "revert"]
    gaps = [round(b - a, 1) for a, b in pairwise(pauses)]
    per_minute = [sum(1 for t, _ in writes if started + 60 * m <= t < started + 60 * (m + 1))
                  for m in range(RUN_SECONDS // 60 + 1)]
    print(f"argo applies {argo.applies}; pauses {len(pauses)}, reverts {len(reverts)}; gaps between pauses {gaps}; "
          f"scaler writes per minute {per_minute}")
    # Bounded: 5+10+20+40+80 s of back-off fit in the run, so at most 6 pauses (and their reverts);
    # without the back-off (a pause each idle duration, 6 s) it would be dozens.
    assert 3 <= len(pauses) <= 7 and len(reverts) >= len(pauses) - 1
    # Decreasing: each gap between pauses is longer than the one before (the back-off doubles).
    assert all(later > earlier for earlier, later in pairwise(gaps)), gaps
    assert per_minute[0] > per_minute[-1]

    # Reported once: one Event, one warning line; the rest are quiet info lines; the metric counts all.
    reported = events(kube, namespace, "chat", "PauseReverted")
    assert len(reported) == 1 and reported[0].type == "Warning"
    assert "pause reverted by argocd-controller" in reported[0].message
    assert "add ignoreDifferences for /spec/replicas" in reported[0].message
    lines = daemon.logs("pause reverted")
    assert [line["level"] for line in lines].count("warning") == 1
    assert daemon.metric("scaler_pause_reverts_total", manager="argocd-controller") == len(reverts)

    # On the object (a restart keeps the back-off), and in status.
    annotations = _deployment(kube, namespace).metadata.annotations
    assert annotations[REVERTED_BY] == "argocd-controller" and int(annotations[REVERTS]) == len(reverts)
    assert BACKOFF_UNTIL in annotations
    # With Argo stopped the daemon may, rightly, pause again once the back-off is over (a busy
    # machine makes these checks slow enough): status then shows the held pause instead.
    status = run_scaler("status", "-n", namespace, kubeconfig=cluster.kubeconfig)
    assert status.returncode == 0, status.stderr
    assert (f"reverted by argocd-controller ({len(reverts)} times in a row); add ignoreDifferences for "
            "/spec/replicas") in status.stdout or \
        f"this pause holds, after {len(reverts)} revert(s) by argocd-controller" in status.stdout, status.stdout

    # A restart keeps the back-off: with Argo stopped, the new daemon pauses it (idle) only once
    # backoff-until has passed, not at once.
    assert daemon.stop() == 0
    until = datetime.fromisoformat(annotations[BACKOFF_UNTIL].replace("Z", "+00:00")).timestamp()
    if _deployment(kube, namespace).spec.replicas == 0:
        # The first daemon paused it again before it stopped: it kept the back-off itself.
        last_pause = [t for t, what in _writes(daemon) if what == "pause"][-1]
        assert last_pause >= until - 1, (last_pause, until)
        return
    restarted = daemons(_idle_policy(tmp_path, namespace), *FAST, *BACKOFF, name="restarted")
    restarted.wait_ready()
    eventually(lambda: _deployment(kube, namespace).spec.replicas == 0, timeout_seconds=180)
    assert time.time() >= until
    # The decision line follows the write it reports: wait for it, do not assume it is there yet.
    paused_at = eventually(lambda: _writes(restarted), timeout_seconds=30)[0][0]
    assert paused_at >= until - 1, (paused_at, until)  # whole seconds on the annotation
    status = json.loads(run_scaler("status", "-n", namespace, "-o", "json", kubeconfig=cluster.kubeconfig).stdout)
    assert status["paused"][0]["notes"] == [f"this pause holds, after {len(reverts)} revert(s) by argocd-controller"]
