"""Cold starts on the real cluster: pods that take tens of seconds to become
Ready (kwok holds them Running but not Ready for their model-load-time), a
queue that wakes them and goes away while they load, a daemon killed or a
leader lost mid-load, and a window that must find its model already loaded."""

from __future__ import annotations

import json
import textwrap
import time
from datetime import UTC, datetime, timedelta

from kubernetes import client

from scaler.decide.annotations import (
    LAST_REPLICAS,
    PAUSE_CAUSE,
    PAUSED_AT,
    PAUSED_BY,
    READY_AT,
    STARTED_AT,
    WARM_UPS,
)
from scaler.decide.times import human_duration, parse_time
from tests.cluster.test_daemon import _push, _replicas, _write
from tests.helpers import (
    FAST,
    elected_pair,
    events,
    eventually,
    gpu_deployment,
    run_scaler,
    wait_events,
)


def _paused(name: str, *, policy: str, last: int, load_seconds: float, cause: str = "idle-timeout", labels=None):
    body = gpu_deployment(name, replicas=0, gpus=1, load_seconds=load_seconds, labels=labels)
    body.metadata.annotations = {LAST_REPLICAS: str(last), PAUSED_BY: f"policy/{policy}",
                                 PAUSED_AT: "2026-01-01T00:00:00Z", PAUSE_CAUSE: cause}
    return body


def _queue_policy(namespace: str, *, extra: str = "") -> str:
    return f"""
        policies:
          - name: chat
            targets: {{namespaces: [{namespace}], selector: app=chat}}
            idle:
              query: 'vllm:num_requests_running{{namespace="{namespace}"}}'
              threshold: 0.5
              duration: 6s
            wake:
              query: 'gateway_pending_requests{{namespace="{namespace}"}}'
              target_per_replica: 4
            min_replicas: 1
            max_replicas: 2
        """ + textwrap.indent(textwrap.dedent(extra), " " * 12)


def _deployment(kube, namespace, name):
    return client.AppsV1Api(kube).read_namespaced_deployment(name, namespace)


def _all_ready(kube, namespace, name) -> bool:
    d = _deployment(kube, namespace, name)
    return d.spec.replicas > 0 and (d.status.ready_replicas or 0) >= d.spec.replicas


def _event_time(event) -> datetime:
    return event.last_timestamp or event.event_time or event.metadata.creation_timestamp


def test_a_queue_wake_is_never_paused_while_the_model_loads(kube, namespace, cluster, tmp_path, daemons):
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, _paused("chat", policy="chat", last=2, load_seconds=40))
    _push(cluster, namespace, "vllm:num_requests_running", 0)  # no traffic at all: idle the whole time
    _push(cluster, namespace, "gateway_pending_requests", 3)
    policies = _write(tmp_path / "policies.yaml", _queue_policy(namespace, extra="""
        startup_grace: 10s
        scale_down_delay: 0s
        """))
    daemon = daemons(policies, *FAST)
    daemon.wait_ready()
    eventually(lambda: _replicas(kube, namespace, "chat") == 2, timeout_seconds=30, interval_seconds=0.2)
    woke = datetime.now(UTC)
    eventually(lambda: (_deployment(kube, namespace, "chat").status.replicas or 0) == 2, timeout_seconds=30)
    _push(cluster, namespace, "gateway_pending_requests", 0)  # the queue is served elsewhere, mid-load
    loading = daemon.wait_log("decision", lambda line: line.get("workload") == "chat"
                              and line.get("reason_code") == "starting", timeout_seconds=30)
    assert "of 2 replicas Ready, loading for" in loading[0]["reason"]
    eventually(lambda: _all_ready(kube, namespace, "chat"), timeout_seconds=90, interval_seconds=0.2)
    ready = datetime.now(UTC)
    assert _replicas(kube, namespace, "chat") == 2 and not events(kube, namespace, "chat", "ScaledToZero")
    # Ready and its grace over, and idle since Ready for the whole 6 s: now it may go.
    eventually(lambda: _replicas(kube, namespace, "chat") == 0, timeout_seconds=90, interval_seconds=0.2)
    paused = datetime.now(UTC)
    # The grace counts from when the pods became Ready (their lastTransitionTime,
    # recorded as scaler.io/ready-at), which this test sees a poll later.
    recorded_ready = parse_time(_deployment(kube, namespace, "chat").metadata.annotations[READY_AT])
    after_ready = (paused - recorded_ready).total_seconds()
    print(f"\nwoke, loaded {(ready - woke).total_seconds():.1f}s, paused {after_ready:.1f}s after all Ready "
          "(grace 10s + idle 6s since Ready)")
    assert recorded_ready <= ready and after_ready >= 10
    ready_events = wait_events(kube, namespace, "chat", "Ready")
    assert "s after its start: all 2 replicas Ready" in ready_events[0].message
    annotations = _deployment(kube, namespace, "chat").metadata.annotations
    warm_up = float(annotations[WARM_UPS].split(",")[-1])
    assert 38 <= warm_up <= 60, annotations[WARM_UPS]
    assert parse_time(annotations[READY_AT]) > parse_time(annotations[STARTED_AT])
    eventually(lambda: daemon.metric("scaler_wake_to_ready_seconds_count", policy="chat", phase="all") == 1,
               timeout_seconds=15)
    assert daemon.stop() == 0
    # `scaler status` shows the warm-up: about what the next resume will take.
    status = run_scaler("status", "-n", namespace, "-o", "json", kubeconfig=cluster.kubeconfig)
    row = next(r for r in json.loads(status.stdout)["workloads"] if r["name"] == "chat")
    assert row["state"] == "paused" and row["warmUps"][-1] == warm_up
    table = run_scaler("status", "-n", namespace, kubeconfig=cluster.kubeconfig).stdout
    assert "WARM-UP" in table and f"{warm_up:.0f}s" in table


def test_a_pulsing_queue_makes_no_flaps_with_the_defaults(kube, namespace, cluster, tmp_path, daemons):
    """The queue pulses (3 for 8 s, 0 for 12 s) while a 40 s model loads, for
    two and a half minutes, with the default startup_grace and
    scale_down_delay: one wake, no pause (before: 3 cycles a minute)."""
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, _paused("chat", policy="chat", last=1, load_seconds=40))
    _push(cluster, namespace, "vllm:num_requests_running", 0)
    policies = _write(tmp_path / "policies.yaml", _queue_policy(namespace))
    daemon = daemons(policies, *FAST)
    daemon.wait_ready()
    started = datetime.now(UTC)
    while (elapsed := (datetime.now(UTC) - started).total_seconds()) < 150:
        _push(cluster, namespace, "gateway_pending_requests", 3 if elapsed % 20 < 8 else 0)
        time.sleep(0.5)  # the traffic's own pace, not a wait for an outcome
    resumed = events(kube, namespace, "chat", "Resumed")
    paused = events(kube, namespace, "chat", "ScaledToZero")
    print(f"\npulsing queue for 150s: {len(resumed)} Resumed, {len(paused)} ScaledToZero")
    assert len(resumed) == 1 and paused == []
    assert _all_ready(kube, namespace, "chat")
    assert daemon.stop() == 0


def _wake_mid_load(kube, namespace, cluster, *, load_seconds: float):
    _push(cluster, namespace, "vllm:num_requests_running", 0)
    _push(cluster, namespace, "gateway_pending_requests", 3)
    eventually(lambda: _replicas(kube, namespace, "chat") == 1, timeout_seconds=30, interval_seconds=0.2)
    _push(cluster, namespace, "gateway_pending_requests", 0)
    eventually(lambda: STARTED_AT in (_deployment(kube, namespace, "chat").metadata.annotations or {}),
               timeout_seconds=10)


def _protected_until_ready_and_grace(kube, namespace, *, grace_seconds: float) -> float:
    """Wait for all Ready, then for the pause; seconds from all Ready to the pause.

    Ready happened after the last read that saw it loading was asked, so the
    seconds are counted from that ask: a lower bound on the real wait that no
    polling lag or busy machine can shrink."""
    not_ready_asked = time.monotonic()

    def ready() -> bool:
        nonlocal not_ready_asked
        asked = time.monotonic()
        if _all_ready(kube, namespace, "chat"):
            return True
        not_ready_asked = asked
        return False

    eventually(ready, timeout_seconds=120, interval_seconds=0.2)
    assert not events(kube, namespace, "chat", "ScaledToZero"), "paused while loading"
    eventually(lambda: _replicas(kube, namespace, "chat") == 0, timeout_seconds=120, interval_seconds=0.2)
    after = time.monotonic() - not_ready_asked
    assert after >= grace_seconds, f"paused {after:.1f}s after Ready, inside the {grace_seconds}s grace"
    return after


def test_a_daemon_killed_mid_load_keeps_protecting_after_restart(kube, namespace, cluster, tmp_path, daemons):
    client.AppsV1Api(kube).create_namespaced_deployment(
        namespace, _paused("chat", policy="chat", last=1, load_seconds=30))
    policies = _write(tmp_path / "policies.yaml", _queue_policy(namespace, extra="""
        startup_grace: 8s
        scale_down_delay: 0s
        """))
    first = daemons(policies, *FAST, name="first")
    first.wait_ready()
    _wake_mid_load(kube, namespace, cluster, load_seconds=30)
    first.process.kill()  # SIGKILL mid-load: nothing in memory survives
    first.process.wait()
    assert not _all_ready(kube, namespace, "chat"), "loaded before the kill; the test proves nothing"
    status = run_scaler("status", "-n", namespace, kubeconfig=cluster.kubeconfig)
    assert "loading: 0 of 1 Ready, " in status.stdout and " since its start" in status.stdout
    second = daemons(policies, *FAST, name="second")
    second.wait_ready()
    second.wait_log("decision", lambda line: line.get("reason_code") == "starting", timeout_seconds=30)
    after = _protected_until_ready_and_grace(kube, namespace, grace_seconds=8)
    print(f"\nrestarted mid-load: paused {after:.1f}s after all Ready (grace 8s)")
    assert second.stop() == 0


def test_a_leader_lost_mid_load_the_standby_keeps_protecting(kube, namespace, cluster, tmp_path, daemons):
    client.AppsV1Api(kube).create_namespaced_deployment(
        namespace, _paused("chat", policy="chat", last=1, load_seconds=30))
    policies = _write(tmp_path / "policies.yaml", _queue_policy(namespace, extra="""
        startup_grace: 8s
        scale_down_delay: 0s
        """))
    leading, standby = elected_pair(daemons, kube, policies, namespace, *FAST)
    _wake_mid_load(kube, namespace, cluster, load_seconds=30)
    leading.process.kill()
    leading.process.wait()
    eventually(lambda: standby.metric("scaler_leader") == 1, timeout_seconds=30)
    assert not _all_ready(kube, namespace, "chat"), "loaded before the failover; the test proves nothing"
    after = _protected_until_ready_and_grace(kube, namespace, grace_seconds=8)
    print(f"\nfailover mid-load: paused {after:.1f}s after all Ready (grace 8s)")
    assert standby.stop() == 0


def test_prewarm_has_the_model_ready_when_the_window_opens(kube, namespace, cluster, tmp_path, daemons):
    load = 60
    apps = client.AppsV1Api(kube)
    for name, labels in (("warm", {"tier": "warm"}), ("cold", {"tier": "cold"})):
        apps.create_namespaced_deployment(namespace, _paused(name, policy=name, last=2, load_seconds=load,
                                                             cause="outside-down", labels=labels))
    opens = (datetime.now(UTC) + timedelta(seconds=load + 25)).replace(second=0, microsecond=0) \
        + timedelta(minutes=1)
    closes = opens + timedelta(minutes=30)
    window = f'{{name: day, mode: up, start: "{opens.minute} {opens.hour} * * *", ' \
             f'end: "{closes.minute} {closes.hour} * * *"}}'
    policies = _write(tmp_path / "policies.yaml", f"""
        policies:
          - name: warm
            targets: {{namespaces: [{namespace}], selector: tier=warm}}
            schedule: {{timezone: UTC, outside: down, windows: [{window}]}}
            prewarm: {load}s
          - name: cold
            targets: {{namespaces: [{namespace}], selector: tier=cold}}
            schedule: {{timezone: UTC, outside: down, windows: [{window}]}}
        """)
    daemon = daemons(policies, "--evaluation-interval-seconds", "300", "--wake-check-interval-seconds", "1")
    daemon.wait_ready()
    assert _replicas(kube, namespace, "warm") == 0 and _replicas(kube, namespace, "cold") == 0
    eventually(lambda: _all_ready(kube, namespace, "warm"), timeout_seconds=240, interval_seconds=0.1)
    warm_offset = (datetime.now(UTC) - opens).total_seconds()
    eventually(lambda: _all_ready(kube, namespace, "cold"), timeout_seconds=240, interval_seconds=0.1)
    cold_offset = (datetime.now(UTC) - opens).total_seconds()
    print(f"\nwindow opens at T, warm-up {load}s: pre-warmed all Ready at T{warm_offset:+.1f}s, "
          f"without pre-warm at T{cold_offset:+.1f}s")
    assert abs(warm_offset) <= 2
    assert cold_offset >= load - 5
    prewarmed = daemon.wait_log("decision", lambda line: line.get("reason_code") == "prewarm")
    assert f"opens within {human_duration(load)} (prewarm): resuming to 2" in prewarmed[0]["reason"]
    assert daemon.stop() == 0
