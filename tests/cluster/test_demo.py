"""The demo's short scenario, start to finish, on the test session's cluster;
its summary must match what the cluster recorded."""

from __future__ import annotations

import json
import subprocess

from kubernetes import client

from tests.conftest import ROOT


def test_short_demo_runs_and_its_summary_matches_the_cluster(cluster, kube, tmp_path):
    summary_path = tmp_path / "summary.json"
    result = subprocess.run([str(ROOT / "deploy/demo/run"), "--short", "--keep", "--state-dir", str(cluster.state_dir),
                             "--summary-json", str(summary_path)],
                            capture_output=True, check=False, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    namespace = summary["namespace"]
    try:
        events = [e for e in client.CoreV1Api(kube).list_namespaced_event(namespace).items
                  if e.source and e.source.component == "scaler"]
        recorded: dict[str, int] = {}
        for event in events:
            recorded[event.reason] = recorded.get(event.reason, 0) + 1
        assert summary["actions"] == recorded
        assert summary["actions"].get("ScaledToZero", 0) == len(summary["pauses_observed"])
        # The story the README tells: the window closes and chat is paused, a
        # queue wakes it, and idle workers are paused.
        chat = [e for e in events if e.involved_object.name == "chat"]
        acted = [e.reason for e in sorted(chat, key=lambda e: e.metadata.creation_timestamp)
                 if e.reason in ("ScaledToZero", "Resumed", "ScaledUp")]  # not the nodes' NodesReused/Released
        assert acted[:2] == ["ScaledToZero", "Resumed"]
        assert any("outside every keep-up window" in e.message for e in chat)
        assert any("queue" in e.message for e in chat if e.reason == "Resumed")
        assert any(e.involved_object.name == "embed-workers" and "idle" in e.message for e in events)
        assert summary["gpu_hours_saved"] > 0
        assert "GPU-hours saved:" in result.stdout and "t+" in result.stdout
        # Cold starts are part of the story: measured, never flapping, and the
        # pre-warmed summarizer Ready when its window opens.
        assert summary["flaps"] == 0 and "flaps:           0" in result.stdout
        assert {name for name, _ in summary["cold_starts"]} >= {"chat", "summarize"}
        assert all(float(seconds) >= 3 for _, seconds in summary["cold_starts"])
        warm = summary["prewarm"]
        assert warm["all_ready_t"] is not None and abs(warm["all_ready_t"] - warm["window_opens_t"]) <= 5, warm
        assert any(e.reason == "Resumed" and "pre-warm" in e.message for e in events
                   if e.involved_object.name == "summarize")
    finally:
        client.CoreV1Api(kube).delete_namespace(namespace)
