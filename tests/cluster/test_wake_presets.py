"""A wake preset end to end on the local cluster (docs/policies.md, "Wake
presets", "Can it be woken?"): a series shaped like KEDA's HTTP add-on
interceptor's, scraped by the real Prometheus (through the Pushgateway),
wakes the workload it names; and `scaler plan` on the real Prometheus says a
workload without a series cannot be woken, its last-seen query evaluated
there. What the unit tier cannot show: the real PromQL engine reading the
preset's labels from a scraped series, with the scrape's own labels on it."""

from __future__ import annotations

import textwrap
import time
import urllib.request

from kubernetes import client

from tests.helpers import FAST, eventually, gpu_deployment, push_metric, run_scaler


def _policy(namespace: str) -> str:
    return textwrap.dedent(f"""
        policies:
          - name: routes
            targets: {{namespaces: [{namespace}]}}
            wake: {{preset: keda-http-add-on, absent: unknown, blocked_after: 1s}}
        """)


def _replicas(kube, namespace: str, name: str) -> int:
    return client.AppsV1Api(kube).read_namespaced_deployment(name, namespace).spec.replicas


def test_a_keda_interceptor_series_wakes_its_route_s_workload(kube, namespace, cluster, tmp_path, daemons):
    apps = client.AppsV1Api(kube)
    for name in ("chat", "silent"):
        apps.create_namespaced_deployment(namespace, gpu_deployment(name, replicas=0, gpus=1))
    policies = tmp_path / "policies.yaml"
    policies.write_text(_policy(namespace))
    group = f"{cluster.pushgateway_url}/metrics/job/keda-interceptor/route_namespace/{namespace}/route_name/chat"
    try:
        # As the interceptor exports it: in keda's namespace, labelled with the route's.
        push_metric(cluster.pushgateway_url, job="keda-interceptor", name="interceptor_request_concurrency",
                    value=0, labels={"route_name": "chat", "route_namespace": namespace},
                    grouping={"route_namespace": namespace, "route_name": "chat"})
        def plan() -> str | None:  # once Prometheus has scraped chat's series
            out = run_scaler("plan", "--policies", str(policies), "--prometheus-url", cluster.prometheus_url,
                             kubeconfig=cluster.kubeconfig).stdout
            return out if "/silent" in out and f"{namespace}/chat" not in out else None
        planned = eventually(plan, timeout_seconds=60)
        assert (f"warning: {namespace}/silent (policy routes): cannot wake: no series for "
                f"interceptor_request_concurrency{{route_namespace={namespace},route_name=silent}} "
                "for more than 6 h") in planned
        assert f"{namespace}/chat" not in planned  # its series is there, at 0: it can be woken

        daemon = daemons(policies, *FAST)
        daemon.wait_ready()
        started = time.monotonic()
        push_metric(cluster.pushgateway_url, job="keda-interceptor", name="interceptor_request_concurrency",
                    value=2, labels={"route_name": "chat", "route_namespace": namespace},
                    grouping={"route_namespace": namespace, "route_name": "chat"})
        eventually(lambda: _replicas(kube, namespace, "chat") == 1 or None, timeout_seconds=60)
        print(f"\nkeda-http-add-on preset: the pushed series to the wake: {time.monotonic() - started:.1f} s")
        assert _replicas(kube, namespace, "silent") == 0
        [woken] = [line for line in daemon.logs("decision") if line.get("action") == "resume"]
        assert woken["workload"] == "chat" and woken["reason"].startswith("queue 2 > activation threshold 0")
        assert eventually(lambda: daemon.metric("scaler_wake_blocked", reason="no-series"), timeout_seconds=30) == 1
    finally:
        urllib.request.urlopen(urllib.request.Request(group, method="DELETE"), timeout=5)
