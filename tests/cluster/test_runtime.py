"""The daemon's runtime under faults, on the real cluster and Prometheus: a
hung Prometheus across window edges, and SIGTERM at random moments of big
batches. Each asserts what a user sees: replicas, records, the Lease, the
exit code and the log."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from datetime import UTC, datetime, timedelta

from kubernetes import client

from scaler.decide.annotations import LAST_REPLICAS, PAUSE_CAUSE, PAUSED_AT, PAUSED_BY
from tests.cluster.test_daemon import _push, _replicas, _write
from tests.helpers import eventually, gpu_deployment, pause_state

FAST = ("--evaluation-interval-seconds", "3", "--wake-check-interval-seconds", "1",
        "--policy-reload-interval-seconds", "1")


def _next_edge(*, at_least_seconds: float) -> datetime:
    """The next whole minute at least `at_least_seconds` away."""
    edge = (datetime.now(UTC) + timedelta(minutes=1)).replace(second=0, microsecond=0)
    while (edge - datetime.now(UTC)).total_seconds() < at_least_seconds:
        edge += timedelta(minutes=1)
    return edge


def _cron(moment: datetime) -> str:
    return f"{moment.minute} {moment.hour} * * *"


def test_a_hung_prometheus_delays_no_window_edge_and_idle_holds(kube, namespace, cluster, tmp_path, daemons):
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, gpu_deployment("down-me", replicas=2, gpus=0,
                                                                labels={"tier": "down"}))
    paused = gpu_deployment("up-me", replicas=0, gpus=0, labels={"tier": "up"})
    paused.metadata.annotations = {LAST_REPLICAS: "3", PAUSED_BY: "policy/mornings", PAUSED_AT: "2026-01-01T00:00:00Z",
                                   PAUSE_CAUSE: "idle-timeout"}
    apps.create_namespaced_deployment(namespace, paused)
    apps.create_namespaced_deployment(namespace, gpu_deployment("chat", replicas=2, gpus=0))
    _push(cluster, namespace, "vllm:num_requests_running", 0)  # idle, but not yet for the whole duration
    _push(cluster, namespace, "gateway_pending_requests", 0, workload="up-me")
    edge = _next_edge(at_least_seconds=20)
    end = edge + timedelta(minutes=5)
    # Both schedule policies also use signals: their windows must not wait for them.
    policies = _write(tmp_path / "policies.yaml", f"""
        policies:
          - name: nights
            targets: {{namespaces: [{namespace}], selector: tier=down}}
            schedule:
              timezone: UTC
              windows: [{{name: night, mode: down, start: "{_cron(edge)}", end: "{_cron(end)}"}}]
            idle: {{query: 'vllm:num_requests_running{{namespace="{namespace}"}}', threshold: 0.5, duration: 60s}}
          - name: mornings
            targets: {{namespaces: [{namespace}], selector: tier=up}}
            schedule:
              timezone: UTC
              windows: [{{name: morning, mode: up, start: "{_cron(edge)}", end: "{_cron(end)}"}}]
            wake: {{query: 'gateway_pending_requests{{namespace="{namespace}"}}', target_per_replica: 4}}
          - name: chat-idle
            targets: {{namespaces: [{namespace}], selector: app=chat}}
            # Longer than the test lasts: before Prometheus hangs the window is incomplete
            # (unknown), and after it every answer is missing (unknown). Never idle.
            idle: {{query: 'vllm:num_requests_running{{namespace="{namespace}"}}', threshold: 0.5, duration: 10m}}
            startup_grace: 0s
        """)
    daemon = daemons(policies, *FAST)
    daemon.wait_ready()
    daemon.let_time_pass(reconciles=1)  # one reconcile with Prometheus answering
    eventually(lambda: datetime.now(UTC) >= edge - timedelta(seconds=8), timeout_seconds=90,
               interval_seconds=0.2)
    os.kill(cluster.pids["prometheus"], signal.SIGSTOP)  # every query hangs from here
    try:
        eventually(lambda: _replicas(kube, namespace, "down-me") == 0, timeout_seconds=60, interval_seconds=0.05)
        paused_after = (datetime.now(UTC) - edge).total_seconds()
        eventually(lambda: _replicas(kube, namespace, "up-me") == 3, timeout_seconds=60, interval_seconds=0.05)
        resumed_after = (datetime.now(UTC) - edge).total_seconds()
        print(f"\nPrometheus hung: keep-down edge -> paused {paused_after:.2f}s, "
              f"keep-up edge -> resumed {resumed_after:.2f}s")
        assert paused_after < 2.0 and resumed_after < 2.0
        # The idle signal is unknown while Prometheus hangs: never a pause on it.
        daemon.let_time_pass(reconciles=2)
        assert _replicas(kube, namespace, "chat") == 2
        holds = daemon.wait_log("decision", lambda line: line.get("workload") == "chat"
                                and line.get("reason_code") == "metrics-unknown")
        assert "never scale down on missing data" in holds[0]["reason"]
    finally:
        os.kill(cluster.pids["prometheus"], signal.SIGCONT)
    assert daemon.stop() == 0


def _keep_window(namespace: str, mode: str) -> str:
    """A window of `mode` that is always active (two half-days)."""
    return f"""
        policies:
          - name: batch
            targets: {{namespaces: [{namespace}], selector: tier=batch}}
            schedule:
              timezone: UTC
              windows:
                - {{name: a, mode: {mode}, start: "0 0 * * *", end: "0 12 * * *"}}
                - {{name: b, mode: {mode}, start: "0 12 * * *", end: "0 0 * * *"}}
        """


def test_sigterm_at_random_moments_exits_clean_and_loses_no_write(kube, namespace, cluster, tmp_path, daemons):
    """20 trials, alternately a batch of pauses and a batch of resumes, each
    stopped by SIGTERM at a random moment after its first write."""
    apps = client.AppsV1Api(kube)
    counts = {f"b-{i:02d}": i % 4 + 1 for i in range(60)}
    for name, count in counts.items():
        apps.create_namespaced_deployment(namespace, gpu_deployment(name, replicas=count, gpus=0,
                                                                    labels={"tier": "batch"}))
    lease = f"scaler-{namespace}"
    election = ("--leader-election", "--lease-name", lease, "--lease-namespace", namespace,
                "--lease-duration-seconds", "15", "--lease-renew-deadline-seconds", "10",
                "--lease-retry-period-seconds", "1")
    rng = random.Random(20261122)
    exits = []
    for trial in range(20):
        mode = "down" if trial % 2 == 0 else "up"
        policies = _write(tmp_path / f"policies-{trial}.yaml", _keep_window(namespace, mode))
        daemon = daemons(policies, *FAST, *election, "--concurrency", "4", "--api-qps", "100", "--api-burst", "10",
                         name=f"trial-{trial}")
        daemon.wait_log("writing", timeout_seconds=60)
        time.sleep(rng.uniform(0, 0.4))  # the random moment of the SIGTERM within the batch
        started = time.monotonic()
        code = daemon.stop(signal.SIGTERM, timeout_seconds=30)
        exits.append((code, time.monotonic() - started))
        lines = daemon.log_text().splitlines()
        assert lines and all(line.startswith("{") for line in lines), [line for line in lines
                                                                       if not line.startswith("{")][:3]
        records = [json.loads(line) for line in lines]
        intents = {r["workload"] for r in records if r.get("event") == "writing"}
        outcomes = {r["workload"] for r in records if r.get("event") == "decision" and "result" in r}
        assert intents <= outcomes, f"trial {trial}: writes with no outcome line: {sorted(intents - outcomes)}"
        holder = client.CoordinationV1Api(kube).read_namespaced_lease(lease, namespace).spec.holder_identity
        assert not holder, f"trial {trial}: the Lease is still held by {holder}"
        for d in apps.list_namespaced_deployment(namespace).items:  # never a zero without its count
            ours = pause_state(d.metadata.annotations)
            if d.spec.replicas == 0:
                assert ours[LAST_REPLICAS] == str(counts[d.metadata.name]), (trial, d.metadata.name)
            else:
                assert d.spec.replicas == counts[d.metadata.name] and LAST_REPLICAS not in ours
    print(f"\nSIGTERM in 20 batches: exit codes {sorted({c for c, _ in exits})}, "
          f"slowest exit {max(s for _, s in exits):.2f}s")
    assert [code for code, _ in exits] == [0] * 20
    assert max(seconds for _, seconds in exits) < 5
