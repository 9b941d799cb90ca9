"""Builders for the workloads tests create on the real cluster."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

import pytest
from kubernetes import client


def gpu_deployment(name: str, *, replicas: int, gpus: int = 1, labels: dict | None = None) -> client.V1Deployment:
    pod_labels = {"app": name, **(labels or {})}
    resources = client.V1ResourceRequirements(
        requests={"nvidia.com/gpu": str(gpus)}, limits={"nvidia.com/gpu": str(gpus)}
    ) if gpus else None
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=pod_labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels={"app": name}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=pod_labels),
                spec=client.V1PodSpec(containers=[client.V1Container(
                    name="server", image="vllm/vllm-openai:fake", resources=resources)]),
            ),
        ),
    )


def ready_pods(kube, namespace: str, app: str) -> list[client.V1Pod]:
    pods = client.CoreV1Api(kube).list_namespaced_pod(namespace, label_selector=f"app={app}").items
    return [
        pod for pod in pods
        if pod.metadata.deletion_timestamp is None
        and pod.status.phase == "Running"
        and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
    ]


def push_metric(pushgateway_url: str, *, job: str, name: str, value: float,
                labels: dict[str, str] | None = None, grouping: dict[str, str] | None = None) -> None:
    """PUT one gauge sample to the Pushgateway under job (and grouping labels)."""
    path = "/metrics/job/" + urllib.parse.quote(job, safe="")
    for key, val in (grouping or {}).items():
        path += f"/{key}/{urllib.parse.quote(val, safe='')}"
    label_text = ",".join(f'{k}="{v}"' for k, v in (labels or {}).items())
    body = f"# TYPE {name} gauge\n{name}{{{label_text}}} {value}\n".encode()
    request = urllib.request.Request(pushgateway_url + path, data=body, method="PUT")
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status in (200, 202), answer.status


def instant_query(prometheus_url: str, promql: str) -> list[dict]:
    url = prometheus_url + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as answer:
        payload = json.load(answer)
    assert payload["status"] == "success", payload
    return payload["data"]["result"]


def eventually(check, *, timeout_seconds: float = 30, interval_seconds: float = 0.2):
    """Call check until it returns a truthy value without raising; return it.
    On timeout, re-raise the last error or fail with the last value."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            value = check()
            if value:
                return value
            error = None
        except Exception as caught:  # noqa: BLE001 - re-raised below on timeout
            error = caught
            value = None
        if time.monotonic() > deadline:
            if error is not None:
                raise error
            pytest.fail(f"condition not met within {timeout_seconds}s (last value: {value!r})")
        time.sleep(interval_seconds)
