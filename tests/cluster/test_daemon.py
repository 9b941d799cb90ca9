"""The daemon (`scaler run`) as a subprocess against the real local cluster
and the real Prometheus; the tests push metrics to the Pushgateway."""

from __future__ import annotations

import statistics
import textwrap
import time
import urllib.request

from kubernetes import client

from scaler.decide.annotations import LAST_REPLICAS, PAUSED_BY
from tests.helpers import (
    FAST,
    elected_pair,
    events,
    eventually,
    gpu_deployment,
    lease_holder,
    pause_state,
    push_metric,
    wait_events,
)


def _write(path, text: str):
    path.write_text(textwrap.dedent(text))
    return path


def _replicas(kube, namespace, name) -> int:
    return client.AppsV1Api(kube).read_namespaced_deployment(name, namespace).spec.replicas


def _annotations(kube, namespace, name) -> dict:
    return client.AppsV1Api(kube).read_namespaced_deployment(name, namespace).metadata.annotations or {}


def _keep_down_policy(namespace: str, *, name: str = "nights", mode: str = "down", start=None, end=None,
                      selector="tier=gpu") -> str:
    """A window of `mode` from start to end (cron, UTC); by default all day,
    as two half-day windows that meet at 00:00 and 12:00."""
    spans = [(start, end)] if start is not None else [("0 0 * * *", "0 12 * * *"), ("0 12 * * *", "0 0 * * *")]
    windows = "".join(f'\n                - {{name: {name}-{index}, mode: {mode}, start: "{a}", end: "{b}"}}'
                      for index, (a, b) in enumerate(spans))
    return f"""
        policies:
          - name: {name}
            targets:
              namespaces: [{namespace}]
              selector: {selector}
            schedule:
              timezone: UTC
              windows:{windows}
        """


def _signal_policy(namespace: str, *, idle_seconds: int = 6) -> str:
    return f"""
        policies:
          - name: chat-idle
            targets:
              namespaces: [{namespace}]
              selector: app=chat
            idle:
              query: 'vllm:num_requests_running{{namespace="{namespace}"}}'
              threshold: 0.5
              duration: {idle_seconds}s
            wake:
              query: 'gateway_pending_requests{{namespace="{namespace}"}}'
              target_per_replica: 4
              activation_threshold: 0
            min_replicas: 1
            max_replicas: 8
            startup_grace: 0s
            scale_down_delay: 0s
        """


def _push(cluster, namespace, name, value, workload="chat"):
    push_metric(cluster.pushgateway_url, job="test", name=name, value=value,
                labels={"namespace": namespace, "workload": workload},
                grouping={"namespace": namespace, "workload": workload, "metric": name.replace(":", "_")})


def test_idle_pauses_and_queue_wakes_with_measured_latency(kube, namespace, cluster, tmp_path, daemons):
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, gpu_deployment("chat", replicas=2, gpus=1))
    _push(cluster, namespace, "vllm:num_requests_running", 0)
    _push(cluster, namespace, "gateway_pending_requests", 0)
    policies = _write(tmp_path / "policies.yaml", _signal_policy(namespace))
    daemon = daemons(policies, *FAST)
    daemon.wait_ready()

    eventually(lambda: _replicas(kube, namespace, "chat") == 0, timeout_seconds=60)
    annotations = _annotations(kube, namespace, "chat")
    assert annotations[LAST_REPLICAS] == "2" and annotations[PAUSED_BY] == "policy/chat-idle"
    paused_line = daemon.wait_log("decision", lambda line: line.get("action") == "pause")[0]
    assert paused_line["reason_code"] == "idle-timeout" and paused_line["replicas_before"] == 2
    assert "from 2 replicas" in wait_events(kube, namespace, "chat", "ScaledToZero")[0].message
    # Paused, its pods' series vanish with them: that is not an unknown signal (no alert).
    group = (f"{cluster.pushgateway_url}/metrics/job/test/namespace/{namespace}/workload/chat"
             "/metric/vllm_num_requests_running")
    urllib.request.urlopen(urllib.request.Request(group, method="DELETE"), timeout=5)
    daemon.let_time_pass(2)  # scraped away, and two reconciles after
    eventually(lambda: daemon.metric("scaler_signal_unknown_workloads", policy="chat-idle", signal="idle") == 0,
               timeout_seconds=15)

    _push(cluster, namespace, "vllm:num_requests_running", 0)
    latencies = []
    for round_ in range(3):
        if round_:
            # Let it go idle again: nothing waiting, nothing running.
            _push(cluster, namespace, "gateway_pending_requests", 0)
            eventually(lambda: _replicas(kube, namespace, "chat") == 0, timeout_seconds=60)
        pushed = time.monotonic()
        _push(cluster, namespace, "gateway_pending_requests", 10)
        eventually(lambda: _replicas(kube, namespace, "chat") > 0, timeout_seconds=30, interval_seconds=0.05)
        latencies.append(time.monotonic() - pushed)
        # ceil(10 waiting / 4 per replica) = 3 > the recorded 2: the queue wins, within max 8.
        assert _replicas(kube, namespace, "chat") == 3
        assert pause_state(_annotations(kube, namespace, "chat")) == {}
    print(f"\nwake latency (push -> replicas > 0) over {len(latencies)} wakes: "
          f"p50 {statistics.median(latencies):.2f}s, max {max(latencies):.2f}s")
    assert daemon.stop() == 0


def test_sigkill_mid_batch_loses_no_count(kube, namespace, cluster, tmp_path, daemons):
    apps = client.AppsV1Api(kube)
    counts = {f"w-{i:02d}": i % 6 + 1 for i in range(40)}
    for name, count in counts.items():
        apps.create_namespaced_deployment(namespace, gpu_deployment(name, replicas=count, gpus=0,
                                                                    labels={"tier": "gpu"}))
    policies = _write(tmp_path / "policies.yaml", _keep_down_policy(namespace))
    first = daemons(policies, *FAST, "--concurrency", "1", name="first")

    def paused() -> int:
        return sum(1 for d in apps.list_namespaced_deployment(namespace).items if d.spec.replicas == 0)
    eventually(lambda: paused() >= 3, timeout_seconds=60, interval_seconds=0.05)
    first.process.kill()
    first.process.wait()
    stopped_at = paused()
    assert stopped_at < len(counts), "the batch finished before the kill; the test proves nothing"
    for d in apps.list_namespaced_deployment(namespace).items:  # untouched, or paused with its count
        if d.spec.replicas == 0:
            assert d.metadata.annotations[LAST_REPLICAS] == str(counts[d.metadata.name])
        else:
            assert d.spec.replicas == counts[d.metadata.name] and not pause_state(d.metadata.annotations or {})

    second = daemons(policies, *FAST, name="second")
    eventually(lambda: paused() == len(counts), timeout_seconds=60)
    for d in apps.list_namespaced_deployment(namespace).items:
        assert d.metadata.annotations[LAST_REPLICAS] == str(counts[d.metadata.name])
    # Later the window turns into a keep-up window (hot reload): everything comes back exactly.
    _write(policies, _keep_down_policy(namespace, mode="up"))
    eventually(lambda: {d.metadata.name: d.spec.replicas for d in apps.list_namespaced_deployment(namespace).items}
               == counts, timeout_seconds=60)
    assert second.stop() == 0


def test_sigkill_storm_leaves_exactly_one_event_per_action(kube, namespace, cluster, tmp_path, daemons):
    """kill -9 at random moments of a pause batch and of the resume batch
    after it, a new daemon started each time: every Deployment ends with
    exactly one ScaledToZero and one Resumed Event (none missing: the next
    daemon posts what a killed one owed; none twice: Events are named after
    the action recorded on the object)."""
    import random

    apps = client.AppsV1Api(kube)
    counts = {f"e-{i:02d}": i % 2 + 1 for i in range(40)}
    for name, count in counts.items():
        apps.create_namespaced_deployment(namespace, gpu_deployment(name, replicas=count, gpus=0,
                                                                    labels={"tier": "gpu"}))
    policies = _write(tmp_path / "policies.yaml", _keep_down_policy(namespace))
    chance = random.Random(7)

    def at_zero() -> int:
        return sum(1 for d in apps.list_namespaced_deployment(namespace).items if d.spec.replicas == 0)

    def storm(done, total: int, tag: str) -> None:
        for round_ in range(3):
            # One write at a time, ten requests a second: the batch outlasts the three kills however
            # fast the machine writes (a free daemon wrote all 40 before the last kill on a busy one).
            daemon = daemons(policies, *FAST, "--concurrency", "1", "--api-qps", "10", "--api-burst", "1",
                             name=f"{tag}{round_}")
            goal = min(done() + chance.randint(2, 8), total - 1)
            eventually(lambda goal=goal: done() >= goal, timeout_seconds=60, interval_seconds=0.02)
            daemon.process.kill()
            daemon.process.wait()
        assert done() < total, "the batch finished before the last kill; the storm proves nothing"

    storm(at_zero, len(counts), "pause")
    last = daemons(policies, *FAST, name="pause-last")
    eventually(lambda: at_zero() == len(counts), timeout_seconds=60)
    assert last.stop() == 0
    _write(policies, _keep_down_policy(namespace, mode="up"))  # read by the next daemon at its start
    storm(lambda: len(counts) - at_zero(), len(counts), "resume")
    last = daemons(policies, *FAST, name="resume-last")
    eventually(lambda: at_zero() == 0, timeout_seconds=60)
    assert last.stop() == 0

    found: dict = {}
    late = 0
    for event in client.CoreV1Api(kube).list_namespaced_event(namespace).items:
        if event.reason in ("ScaledToZero", "Resumed"):
            key = (event.involved_object.name, event.reason)
            found[key] = found.get(key, 0) + 1
            late += "posted by the next daemon" in event.message
    print(f"\nsix kill -9 over {len(counts)} pauses and resumes: {late} Events posted by the next daemon")
    assert found == {(name, reason): 1 for name in counts for reason in ("ScaledToZero", "Resumed")}
    assert {d.metadata.name: d.spec.replicas for d in apps.list_namespaced_deployment(namespace).items} == counts


def test_two_daemons_one_leader_and_failover_within_the_lease(kube, namespace, cluster, tmp_path, daemons):
    apps = client.AppsV1Api(kube)
    policies = _write(tmp_path / "policies.yaml", _keep_down_policy(namespace))
    leading, standby = elected_pair(daemons, kube, policies, namespace, *FAST)

    def leader() -> str | None:
        return lease_holder(kube, namespace)
    eventually(lambda: leading.metric("scaler_leader") == 1, timeout_seconds=15)
    assert standby.metric("scaler_leader") == 0

    for i in range(5):
        apps.create_namespaced_deployment(namespace, gpu_deployment(f"d{i}", replicas=i + 1, gpus=0,
                                                                    labels={"tier": "gpu"}))
    eventually(lambda: all(_replicas(kube, namespace, f"d{i}") == 0 for i in range(5)), timeout_seconds=30)
    assert [line["workload"] for line in standby.logs("decision") if line.get("result") == "changed"] == []
    # Events follow their writes in the background: the kill below must not race them.
    eventually(lambda: all(events(kube, namespace, f"d{i}", "ScaledToZero") for i in range(5)), timeout_seconds=30)

    leading.process.kill()
    killed = time.monotonic()
    apps.create_namespaced_deployment(namespace, gpu_deployment("after", replicas=2, gpus=0, labels={"tier": "gpu"}))
    eventually(lambda: _replicas(kube, namespace, "after") == 0, timeout_seconds=30, interval_seconds=0.1)
    took = time.monotonic() - killed
    print(f"\nfailover: standby paused a new workload {took:.1f}s after the leader was killed (lease 6s)")
    assert took < 6 + 2 + 2  # lease duration + one retry + one evaluation interval
    for i in range(5):  # nothing applied twice
        assert len(events(kube, namespace, f"d{i}", "ScaledToZero")) == 1
    assert standby.stop() == 0
    assert leader() is None  # SIGTERM released the lease


def test_nan_and_vanished_series_are_unknown_never_idle(kube, namespace, cluster, tmp_path, daemons):
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, gpu_deployment("chat", replicas=2, gpus=1))
    _push(cluster, namespace, "vllm:num_requests_running", float("nan"))
    _push(cluster, namespace, "gateway_pending_requests", 0)
    policies = _write(tmp_path / "policies.yaml", _signal_policy(namespace))
    daemon = daemons(policies, *FAST)
    daemon.wait_ready()
    eventually(lambda: daemon.metric("scaler_signal_unknown_workloads", policy="chat-idle", signal="idle") == 1,
               timeout_seconds=30)
    daemon.let_time_pass(8)  # longer than the idle duration
    assert _replicas(kube, namespace, "chat") == 2

    # The series goes away altogether (the exporter died): still unknown, still up.
    group = (f"{cluster.pushgateway_url}/metrics/job/test/namespace/{namespace}"
             "/workload/chat/metric/vllm_num_requests_running")
    urllib.request.urlopen(urllib.request.Request(group, method="DELETE"), timeout=5)
    daemon.let_time_pass(8)
    assert _replicas(kube, namespace, "chat") == 2
    holds = daemon.wait_log("decision", lambda line: line.get("reason_code") == "metrics-unknown")
    assert "never scale down on missing data" in holds[0]["reason"]
    assert daemon.metric("scaler_signal_unknown_workloads", policy="chat-idle", signal="idle") == 1
    assert daemon.stop() == 0


def test_sigterm_hands_the_lease_over_at_once_every_time(kube, namespace, cluster, tmp_path, daemons):
    """A storm of graceful stops: each time the leader gets SIGTERM the other
    daemon holds the Lease within a retry period or two, never after the lease
    duration. (A renewal racing the hand-back used to take the Lease back for
    the exiting process, about one stop in ten with a 1 s retry period.)"""
    policies = _write(tmp_path / "policies.yaml", _keep_down_policy(namespace))
    lease_name = f"scaler-{namespace}"
    election = ("--leader-election", "--lease-name", lease_name, "--lease-namespace", namespace,
                "--lease-duration-seconds", "15", "--lease-renew-deadline-seconds", "10",
                "--lease-retry-period-seconds", "1")

    def holder() -> str | None:
        lease = client.CoordinationV1Api(kube).read_namespaced_lease(lease_name, namespace)
        return lease.spec.holder_identity or None

    running = {}
    for name in ("d0", "d1"):
        running[name] = daemons(policies, *FAST, *election, "--identity", name, name=name)
    for daemon in running.values():
        daemon.wait_ready()
    took = []
    for round_ in range(2, 12):
        leader = eventually(holder, timeout_seconds=30)
        other = next(name for name in running if name != leader)
        stopped = time.monotonic()
        assert running.pop(leader).stop() == 0
        eventually(lambda other=other: holder() == other, timeout_seconds=20, interval_seconds=0.05)
        took.append(time.monotonic() - stopped)
        name = f"d{round_}"
        running[name] = daemons(policies, *FAST, *election, "--identity", name, name=name)
        running[name].wait_ready()
    print(f"\nSIGTERM hand-over: max {max(took):.2f}s, median {statistics.median(took):.2f}s over {len(took)} stops")
    assert max(took) < 4, took  # retry period 1 s; an unreleased Lease takes 15 s
