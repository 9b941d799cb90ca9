"""Bodies of the objects unit tests create on the fake API server: what
tests/helpers.gpu_deployment builds for the real cluster, as plain dicts."""

from __future__ import annotations

import copy
import textwrap


def deployment(name: str, *, replicas: int, gpus: int = 1, labels: dict | None = None,
               annotations: dict | None = None) -> dict:
    """A Deployment of `replicas` pods with `gpus` GPUs each, labelled app=NAME (and `labels`)."""
    pod_labels = {"app": name, **(labels or {})}
    resources = {"limits": {"nvidia.com/gpu": str(gpus)}, "requests": {"nvidia.com/gpu": str(gpus)}} if gpus else {}
    return {"metadata": {"name": name, "labels": pod_labels, **({"annotations": annotations} if annotations else {})},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": pod_labels},
                                  "spec": {"containers": [{"name": "server", "image": "vllm/vllm-openai:fake",
                                                           "resources": resources}]}}}}


def statefulset(name: str, *, replicas: int, gpus: int = 0, labels: dict | None = None,
                annotations: dict | None = None) -> dict:
    body = copy.deepcopy(deployment(name, replicas=replicas, gpus=gpus, labels=labels, annotations=annotations))
    body["spec"]["serviceName"] = name
    return body


def namespace(fake, name: str) -> None:
    """The namespace `name` on the fake, unless it is there already."""
    if not any(n["metadata"]["name"] == name for n in fake.items("namespaces")):
        fake.create("namespaces", {"metadata": {"name": name}})


def all_day(name: str = "nights", *, mode: str = "down", selector: str = "tier=gpu") -> str:
    """A policy file: a window of `mode` all day long (two half days), in namespace llm."""
    return textwrap.dedent(f"""
        policies:
          - name: {name}
            targets: {{namespaces: [llm], selector: {selector}}}
            schedule:
              timezone: UTC
              windows:
                - {{name: {name}-0, mode: {mode}, start: "0 0 * * *", end: "0 12 * * *"}}
                - {{name: {name}-1, mode: {mode}, start: "0 12 * * *", end: "0 0 * * *"}}
        """)
