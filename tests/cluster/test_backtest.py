"""`scaler backtest` and `scaler plan --at` against the real cluster and the
real Prometheus.

Fidelity: the daemon runs a scripted scenario (busy, idle, a queue wake, a
keep-down window and its end); then the backtest replays the same period
from what Prometheus kept. Its actions must be the daemon's Events, one for
one, each within one evaluation interval, and its GPU-hours those of the
pods that actually ran (sampled from the API server) within 5%. Queries
are POSTed, and a workload's size at the start is read from
kube-state-metrics' series (pushed here: the local cluster runs no
kube-state-metrics)."""

from __future__ import annotations

import json
import math
import threading
import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from kubernetes import client

from scaler.decide.times import rfc3339
from tests.cluster.test_daemon import _push, _replicas, _write
from tests.helpers import events, eventually, gpu_deployment, instant_query, push_metric, run_scaler

INTERVAL = 3  # the daemon's evaluation interval, and the backtest's step
LOAD_SECONDS = 8
IDLE_SECONDS = 10


def _policy(namespace: str, window_start: datetime) -> str:
    end = window_start + timedelta(minutes=1)
    return f"""
        policies:
          - name: chat
            targets:
              namespaces: [{namespace}]
              selector: app=chat
            schedule:
              timezone: UTC
              windows:
                - {{name: maintenance, mode: down, start: "{window_start:%M %H} * * *", end: "{end:%M %H} * * *"}}
            idle:
              query: 'vllm:num_requests_running{{namespace="{namespace}"}}'
              threshold: 0.5
              duration: {IDLE_SECONDS}s
            wake:
              query: 'gateway_pending_requests{{namespace="{namespace}"}}'
              target_per_replica: 4
            min_replicas: 1
            max_replicas: 4
            startup_grace: 0s
            scale_down_delay: 0s
        """


class PodSampler(threading.Thread):
    """GPU-seconds of the pods that ran: Running, not being deleted, sampled
    from the API server every 0.25 s (each sample counts until the next)."""

    def __init__(self, kube, namespace: str) -> None:
        super().__init__(daemon=True)
        self.core, self.namespace = client.CoreV1Api(kube), namespace
        self.stop, self.samples = threading.Event(), []

    def run(self) -> None:
        while not self.stop.wait(0.25):
            pods = self.core.list_namespaced_pod(self.namespace, label_selector="app=chat").items
            running = sum(1 for pod in pods
                          if pod.status.phase == "Running" and pod.metadata.deletion_timestamp is None)
            self.samples.append((time.time(), running))

    def gpu_seconds(self, start: float, end: float) -> float:
        total = 0.0
        for (at, running), (following, _) in pairwise(self.samples):
            total += running * max(0.0, min(following, end) - max(at, start))
        return total


def _aligned_now() -> datetime:
    """Now, rounded down to a multiple of the step (so are window edges: minutes)."""
    now = math.floor(time.time() / INTERVAL) * INTERVAL
    return datetime.fromtimestamp(now, UTC)


def _scenario(kube, namespace, cluster, window_start: datetime) -> None:
    """Busy, then idle (pause), then a queue (wake), then the window (pause, resume)."""
    time.sleep(40)  # busy: the scenario's own pace, not a wait for an outcome
    _push(cluster, namespace, "vllm:num_requests_running", 0)
    eventually(lambda: _replicas(kube, namespace, "chat") == 0, timeout_seconds=60, interval_seconds=0.2)
    time.sleep(15)  # paused for a while
    _push(cluster, namespace, "gateway_pending_requests", 3)
    eventually(lambda: _replicas(kube, namespace, "chat") == 2, timeout_seconds=30, interval_seconds=0.2)
    _push(cluster, namespace, "vllm:num_requests_running", 5)
    eventually(lambda: client.AppsV1Api(kube).read_namespaced_deployment("chat", namespace).status.ready_replicas
               == 2, timeout_seconds=60)
    _push(cluster, namespace, "gateway_pending_requests", 0)
    ahead = (window_start - datetime.now(UTC)).total_seconds()
    assert ahead > 5, "the wake ran into the window"
    # The window opens up to 210 s after the start, so the wait is counted from now to its edge.
    eventually(lambda: _replicas(kube, namespace, "chat") == 0, timeout_seconds=ahead + 60, interval_seconds=0.2)
    eventually(lambda: _replicas(kube, namespace, "chat") == 2, timeout_seconds=90, interval_seconds=0.2)
    time.sleep(30)  # running again, busy, to the end of the period


def _backtest(cluster, policies, namespace, start: datetime, end: datetime, *extra: str):
    return run_scaler("backtest", "--policies", str(policies), "--from", rfc3339(start), "--to", rfc3339(end),
                      "--step", f"{INTERVAL}s", "-n", namespace, *extra, kubeconfig=cluster.kubeconfig,
                      env={"SCALER_PROMETHEUS_URL": cluster.prometheus_url})


def test_the_backtest_replays_what_the_daemon_did(kube, namespace, cluster, tmp_path, daemons):
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, gpu_deployment("chat", replicas=2, gpus=1,
                                                                load_seconds=LOAD_SECONDS))
    _push(cluster, namespace, "vllm:num_requests_running", 5)
    _push(cluster, namespace, "gateway_pending_requests", 0)
    eventually(lambda: apps.read_namespaced_deployment("chat", namespace).status.ready_replicas == 2,
               timeout_seconds=60)
    start = _aligned_now()
    window_start = (start + timedelta(seconds=150)).replace(second=0) + timedelta(minutes=1)
    policies = _write(tmp_path / "policies.yaml", _policy(namespace, window_start))
    sampler = PodSampler(kube, namespace)
    sampler.start()
    daemon = daemons(policies, "--evaluation-interval-seconds", str(INTERVAL), "--wake-check-interval-seconds",
                     "1", "--policy-reload-interval-seconds", "1")
    daemon.wait_ready()
    try:
        _scenario(kube, namespace, cluster, window_start)
    finally:
        end = _aligned_now()
        assert daemon.stop() == 0
        sampler.stop.set()
        sampler.join(10)
    actions = sorted([(e.first_timestamp.timestamp(), "pause") for e in events(kube, namespace, "chat", "ScaledToZero")]
                    + [(e.first_timestamp.timestamp(), "resume") for e in events(kube, namespace, "chat", "Resumed")])
    chart = tmp_path / "timeline.html"
    result = _backtest(cluster, policies, namespace, start, end, "-o", "json", "--chart", str(chart))
    assert result.returncode == 0, result.stdout + result.stderr
    row = json.loads(result.stdout)["workloads"][0]
    replayed = [(datetime.fromisoformat(a["at"].replace("Z", "+00:00")).timestamp(), a["action"])
                for a in row["actions"]]
    print(f"\ndaemon Events: {[(round(t - start.timestamp(), 1), what) for t, what in actions]}\n"
          f"backtest:      {[(round(t - start.timestamp(), 1), what) for t, what in replayed]}")
    assert [what for _, what in replayed] == [what for _, what in actions] == ["pause", "resume", "pause", "resume"]
    for (event_at, what), (replayed_at, _) in zip(actions, replayed, strict=True):
        # One evaluation interval, plus the second an Event's timestamp is cut to.
        assert abs(replayed_at - event_at) <= INTERVAL + 1, (what, replayed_at - event_at)
    assert row["warmUpSource"] == "measured" and LOAD_SECONDS <= row["warmUpSeconds"] <= LOAD_SECONDS + 10
    assert row["demandWhilePaused"] == 1 and row["waitSecondsWorst"] == row["warmUpSeconds"]

    ran = sampler.gpu_seconds(start.timestamp(), end.timestamp()) / 3600
    print(f"GPU-hours: pods ran {ran:.4f}, backtest {row['gpuHours']:.4f}, always up {row['gpuHoursAlwaysUp']:.4f}")
    assert abs(row["gpuHours"] - ran) <= 0.05 * ran
    assert 0 < row["gpuHoursSaved"] < row["gpuHoursAlwaysUp"]
    assert chart.stat().st_size > 0 and "namespace/chat".replace("namespace", namespace) in chart.read_text()


def test_plan_at_a_past_instant_reads_the_signals_as_they_were(kube, namespace, cluster, tmp_path):
    """A queue that has since drained: plan now holds, plan --at then wakes."""
    body = gpu_deployment("chat", replicas=0, gpus=1)
    body.metadata.annotations = {"scaler.io/last-replicas": "2", "scaler.io/paused-by": "policy/chat",
                                 "scaler.io/paused-at": "2026-01-01T00:00:00Z"}
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, body)
    window_start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=3)
    policies = _write(tmp_path / "policies.yaml", _policy(namespace, window_start))
    _push(cluster, namespace, "gateway_pending_requests", 3)
    plan = lambda *extra: run_scaler("plan", "--policies", str(policies), "-o", "json", *extra,  # noqa: E731
                                     kubeconfig=cluster.kubeconfig,
                                     env={"SCALER_PROMETHEUS_URL": cluster.prometheus_url})
    eventually(lambda: plan().returncode == 3, timeout_seconds=30)  # Prometheus has scraped the queue
    seen = datetime.now(UTC)  # Prometheus had the queue by then, and it is still 3 at this instant
    _push(cluster, namespace, "gateway_pending_requests", 0)
    eventually(lambda: plan().returncode == 0, timeout_seconds=30)
    then = plan("--at", seen.isoformat())
    assert then.returncode == 3, then.stdout + then.stderr
    document = json.loads(then.stdout)
    assert document["evaluations"][0]["action"] == "resume" and "queue 3 > activation" in \
        document["evaluations"][0]["reason"]


def test_a_backtest_starts_a_workload_at_its_size_in_kube_state_metrics(kube, namespace, cluster, tmp_path):
    """Today it runs 1 replica; kube-state-metrics' series says 3 at the start."""
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, gpu_deployment("chat", replicas=1, gpus=2))
    push_metric(cluster.pushgateway_url, job="kube-state-metrics", name="kube_deployment_spec_replicas", value=3,
                labels={"namespace": namespace, "deployment": "chat"},
                grouping={"namespace": namespace, "deployment": "chat"})
    eventually(lambda: instant_query(cluster.prometheus_url,
                                     f'kube_deployment_spec_replicas{{namespace="{namespace}"}}'),
               timeout_seconds=60)
    # Prometheus has had a sample since before this (the next whole second: --from is cut to one)
    start = (datetime.now(UTC) + timedelta(seconds=1)).replace(microsecond=0)
    eventually(lambda: datetime.now(UTC) >= start + timedelta(seconds=2), timeout_seconds=10, interval_seconds=0.2)
    policies = _write(tmp_path / "policies.yaml", f"""
        policies:
          - name: chat
            targets: {{namespaces: [{namespace}], selector: app=chat}}
            schedule:
              timezone: UTC
              windows: [{{name: always, mode: up, when: "daily 00:00-24:00"}}]
        """)
    result = run_scaler("backtest", "--policies", str(policies), "--from", rfc3339(start), "--to", "now", "--step",
                        "1s", "-n", namespace, "-o", "json", kubeconfig=cluster.kubeconfig,
                        env={"SCALER_PROMETHEUS_URL": cluster.prometheus_url})
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    row = document["workloads"][0]
    assert (row["startReplicas"], row["startSizeFrom"]) == (3, "kube-state-metrics"), result.stdout + result.stderr
    seconds = (datetime.fromisoformat(document["to"].replace("Z", "+00:00")) - start).total_seconds()
    assert row["gpuHours"] == row["gpuHoursAlwaysUp"] == round(3 * 2 * seconds / 3600, 3)
    assert document["prometheusRequests"] == 1 and document["warnings"] == []
