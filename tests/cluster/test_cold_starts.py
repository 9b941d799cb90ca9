"""Cold starts on the real cluster: pods that take tens of seconds to become
Ready (kwok holds them Running but not Ready for their model-load-time), and
a queue that wakes them and goes away while they load. What only the real
cluster shows: the Deployment's status and the pods' Ready transition as the
controller-manager and kwok report them, the warm-up measured from that
transition. The rules over time (grace, pulsing queues, a daemon or a leader
lost mid-load, pre-warm edges) are tests/unit/test_cold_starts.py's and
test_edges.py's; the demo shows a pre-warmed model Ready as its window opens."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime

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
from scaler.decide.times import parse_time
from tests.cluster.test_daemon import _push, _replicas, _write
from tests.helpers import (
    FAST,
    events,
    eventually,
    gpu_deployment,
    wait_events,
)

#: The model's load time: long enough to tell a measured warm-up from the daemon's polling.
LOAD_SECONDS = 20


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


def test_a_queue_wake_is_never_paused_while_the_model_loads(kube, namespace, cluster, tmp_path, daemons):
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, _paused("chat", policy="chat", last=2, load_seconds=LOAD_SECONDS))
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
    assert LOAD_SECONDS - 2 <= warm_up <= LOAD_SECONDS + 20, annotations[WARM_UPS]
    assert parse_time(annotations[READY_AT]) > parse_time(annotations[STARTED_AT])
    eventually(lambda: daemon.metric("scaler_wake_to_ready_seconds_count", policy="chat", phase="all") == 1,
               timeout_seconds=15)
    assert daemon.stop() == 0
