"""The demo's scenario: the fake inference services and their traffic, the
policies fitted to its compressed time, the Deployments it creates, and what
counts as a flap. Pure: deploy/demo/demo.py runs it on the cluster."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass
class Service:
    """One fake inference service and the traffic it gets."""

    name: str
    replicas: int
    gpus_per_replica: int
    per_replica_per_second: float  # requests (or jobs) one replica finishes a second
    arrivals: list[tuple[float, float, float]]  # (from t, to t, arrivals per second), t relative to the edge
    load_seconds: float = 0.0  # model loading: Running this long before Ready
    paused_by: str | None = None  # created paused by this policy
    pending: float = 0.0
    running: float = 0.0

    def arrival_rate(self, t: float) -> float:
        return sum(rate for start, end, rate in self.arrivals if start <= t < end)


def services() -> list[Service]:
    return [
        # Office chat: busy until the business-hours window closes at t=0,
        # then a late burst of requests at t=30..45.
        Service("chat", replicas=2, gpus_per_replica=2, per_replica_per_second=3,
                arrivals=[(-999, 0, 4.0), (30, 45, 3.0)], load_seconds=15),
        # A code assistant: quiet from t=-5, busy again at t=70..85.
        Service("code-assist", replicas=1, gpus_per_replica=4, per_replica_per_second=4,
                arrivals=[(-999, -5, 2.0), (70, 85, 2.5)], load_seconds=10),
        # Embedding batch workers: a backlog of jobs lands at t=10.
        Service("embed-workers", replicas=1, gpus_per_replica=1, per_replica_per_second=6,
                arrivals=[(10, 12, 120.0)], load_seconds=3),
        # A summarizer kept down outside its morning window, which opens at
        # t=60; pre-warmed so its 20 s model load is done when it opens.
        Service("summarize", replicas=2, gpus_per_replica=1, per_replica_per_second=2,
                arrivals=[(60, 999, 1.0)], load_seconds=20, paused_by="summarize-mornings"),
    ]


#: The demo's compressed protection after a wake (the defaults are 1m and 5m).
STARTUP_GRACE, SCALE_DOWN_DELAY = "5s", "20s"
PREWARM_OPENS_AFTER_EDGE = timedelta(minutes=1)


def policies_for(namespace: str, *, window_start: datetime, window_end: datetime, mornings: datetime) -> str:
    """policies/business-hours.yaml, vllm-idle.yaml and batch-workers.yaml,
    with the namespace, the window and the durations fitted to the demo."""
    def cron(moment: datetime) -> str:
        return f"{moment.minute} {moment.hour} * * *"
    pending = f'gateway_pending_requests{{namespace="{namespace}"}}'
    running = f'vllm:num_requests_running{{namespace="{namespace}"}}'
    return textwrap.dedent(f"""\
        policies:
          - name: chat-business-hours
            description: Up during business hours; outside them down, once no request waits or runs.
            targets: {{namespaces: [{namespace}], selector: app=chat}}
            schedule:
              timezone: UTC
              windows:
                - {{name: business-hours, mode: up, start: "{cron(window_start)}", end: "{cron(window_end)}"}}
              outside: down
            idle: {{query: '{running}', threshold: 0.5, duration: 10s}}
            wake: {{query: '{pending}', target_per_replica: 8}}
            max_replicas: 4
            startup_grace: {STARTUP_GRACE}
            scale_down_delay: {SCALE_DOWN_DELAY}
          - name: code-assist-idle
            description: Paused after 20 s without a running request; woken by the gateway queue.
            targets: {{namespaces: [{namespace}], selector: app=code-assist}}
            idle: {{query: '{running}', threshold: 0.5, duration: 20s}}
            wake: {{query: '{pending}', target_per_replica: 8}}
            max_replicas: 2
            startup_grace: {STARTUP_GRACE}
            scale_down_delay: {SCALE_DOWN_DELAY}
          - name: embed-queue
            description: Workers sized by the job queue, zero when it has been empty for 15 s.
            targets: {{namespaces: [{namespace}], selector: app=embed-workers}}
            idle: {{query: '{pending} + {running}', threshold: 1, duration: 15s}}
            wake: {{query: '{pending}', target_per_replica: 50}}
            max_replicas: 3
            startup_grace: {STARTUP_GRACE}
            scale_down_delay: {SCALE_DOWN_DELAY}
          - name: summarize-mornings
            description: Kept down outside its window, pre-warmed so the model is loaded when it opens.
            targets: {{namespaces: [{namespace}], selector: app=summarize}}
            schedule:
              timezone: UTC
              windows:
                - {{name: mornings, mode: up, start: "{cron(mornings)}", end: "{cron(mornings + timedelta(hours=1))}"}}
              outside: down
            prewarm: 20s
        """)


def deployment_body(service: Service) -> dict:
    gpus = str(service.gpus_per_replica)
    annotations = {}
    if service.paused_by:  # as scaler leaves a workload it paused
        annotations = {"scaler.io/last-replicas": str(service.replicas), "scaler.io/paused-by":
                       f"policy/{service.paused_by}", "scaler.io/pause-cause": "outside-down",
                       "scaler.io/paused-at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": service.name, "labels": {"app": service.name}, "annotations": annotations},
        "spec": {
            "replicas": 0 if service.paused_by else service.replicas,
            "selector": {"matchLabels": {"app": service.name}},
            "template": {"metadata": {"labels": {"app": service.name},
                                      "annotations": {"local.scaler.io/model-load-time": f"{service.load_seconds:g}s"}},
                         "spec": {"containers": [{
                "name": "vllm", "image": "vllm/vllm-openai:demo",
                "resources": {"limits": {"nvidia.com/gpu": gpus}, "requests": {"nvidia.com/gpu": gpus}}}]}},
        },
    }


def flaps(events: list[dict], *, within_seconds: float) -> int:
    """A flap: a ScaledToZero of a workload less than `within_seconds` (the
    protection after a wake) after its Resumed."""
    resumed: dict[str, datetime] = {}
    count = 0
    for event in sorted(events, key=lambda e: e["time"]):
        at = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
        if event["reason"] == "Resumed":
            resumed[event["workload"]] = at
        elif event["reason"] == "ScaledToZero" and event["workload"] in resumed:
            count += (at - resumed.pop(event["workload"])).total_seconds() < within_seconds
    return count
