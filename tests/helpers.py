"""Builders for the workloads tests create on the real cluster."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

import pytest
from kubernetes import client

#: The local cluster's kwok makes a pod Ready this long after it runs (a model loading).
MODEL_LOAD_TIME = "local.scaler.io/model-load-time"

#: The daemon's intervals in tests: a reconcile every 2 s, wake checks and
#: policy reloads every second.
FAST = ("--evaluation-interval-seconds", "2", "--wake-check-interval-seconds", "1",
        "--policy-reload-interval-seconds", "1")


def gpu_deployment(name: str, *, replicas: int, gpus: int = 1, labels: dict | None = None,
                   load_seconds: float | None = None) -> client.V1Deployment:
    pod_labels = {"app": name, **(labels or {})}
    pod_annotations = {MODEL_LOAD_TIME: f"{load_seconds:g}s"} if load_seconds else None
    resources = client.V1ResourceRequirements(
        requests={"nvidia.com/gpu": str(gpus)}, limits={"nvidia.com/gpu": str(gpus)}
    ) if gpus else None
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=pod_labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels={"app": name}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=pod_labels, annotations=pod_annotations),
                spec=client.V1PodSpec(containers=[client.V1Container(
                    name="server", image="vllm/vllm-openai:fake", resources=resources)]),
            ),
        ),
    )


def events(kube, namespace: str, name: str, reason: str) -> list[client.CoreV1Event]:
    """The Events of this reason on the object `name`."""
    return [e for e in client.CoreV1Api(kube).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}").items if e.reason == reason]


def wait_events(kube, namespace: str, name: str, reason: str, *, timeout_seconds: float = 30) -> list:
    """The Events of this reason, once there is one. The daemon posts its
    Events in the background after the write lands, so a test sees the
    write first."""
    return eventually(lambda: events(kube, namespace, name, reason), timeout_seconds=timeout_seconds)


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


def run_scaler(*args: str, kubeconfig, timeout_seconds: float = 300, env: dict | None = None):
    """Run the real CLI as a user would; return the CompletedProcess."""
    import os
    import subprocess
    import sys

    full_env = {**os.environ, "KUBECONFIG": str(kubeconfig), "COLUMNS": "250", **(env or {})}
    return subprocess.run([sys.executable, "-m", "scaler", *args], capture_output=True, check=False, text=True,
                          timeout=timeout_seconds, env=full_env)


def apply_crd(kube, manifest: dict) -> None:
    """Create a CustomResourceDefinition (or keep the existing one) and wait until it is served."""
    from kubernetes.client.rest import ApiException

    api = client.ApiextensionsV1Api(kube)
    try:
        api.create_custom_resource_definition(manifest)
    except ApiException as error:
        if error.status != 409:
            raise

    def established():
        crd = api.read_custom_resource_definition(manifest["metadata"]["name"])
        return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])
    eventually(established, timeout_seconds=30)


def simple_crd(*, group: str, kind: str, plural: str, version: str, scale: bool = False) -> dict:
    """A CRD of our own with an open schema: enough to test the writes
    scaler makes to KServe, KEDA or a custom scalable resource."""
    subresources: dict = {"status": {}}
    if scale:
        subresources["scale"] = {"specReplicasPath": ".spec.replicas",
                                 "statusReplicasPath": ".status.replicas"}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "versions": [{"name": version, "served": True, "storage": True, "subresources": subresources,
                          "schema": {"openAPIV3Schema": {"type": "object",
                                                         "x-kubernetes-preserve-unknown-fields": True}}}],
        },
    }


class DaemonProcess:
    """`scaler run` as a subprocess, the way it runs in a pod: its log as JSON
    lines in a file, its /metrics and /readyz on a free loopback port."""

    def __init__(self, cluster, policies, log_path, *args: str, env: dict | None = None) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.cluster = cluster
        self.log_path = log_path
        self.args = ["run", "--policies", str(policies), "--prometheus-url", cluster.prometheus_url,
                     "--bind-address", "127.0.0.1", "--port", str(self.port), "--log-format", "json",
                     "--prometheus-timeout-seconds", "2", *args]
        self.env = env or {}
        self.process = None

    def start(self) -> DaemonProcess:
        import os
        import subprocess
        import sys

        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig), "PYTHONUNBUFFERED": "1", **self.env}
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "scaler", *self.args], stdout=self._log,
                                        stderr=subprocess.STDOUT, env=env)
        return self

    def get(self, path: str) -> tuple[int, str]:
        import urllib.error

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=3) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def wait_ready(self, timeout_seconds: float = 60) -> None:
        def ready():
            assert self.process.poll() is None, f"daemon exited {self.process.returncode}:\n{self.log_text()}"
            return self.get("/readyz")[0] == 200
        eventually(ready, timeout_seconds=timeout_seconds, interval_seconds=0.3)

    def metric(self, name: str, **labels: str) -> float | None:
        """The value of one series on /metrics, or None if it is absent."""
        from prometheus_client.parser import text_string_to_metric_families

        _, text = self.get("/metrics")
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return sample.value
        return None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def logs(self, event: str | None = None) -> list[dict]:
        lines = []
        for line in self.log_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if event is None or record.get("event") == event:
                lines.append(record)
        return lines

    def wait_log(self, event: str, where=lambda line: True, *, timeout_seconds: float = 30) -> list[dict]:
        """The lines of `event` that satisfy `where`, once there is at least
        one: a line is written after the write it reports, so a test that
        has seen the write waits for the line instead of assuming it."""
        return eventually(lambda: [line for line in self.logs(event) if where(line)],
                          timeout_seconds=timeout_seconds)

    def reconciles(self) -> float:
        return self.metric("scaler_reconcile_duration_seconds_count", kind="full") or 0

    def let_time_pass(self, seconds: float = 0, *, reconciles: int = 2, timeout_seconds: float = 60) -> None:
        """For a test that asserts something did NOT happen: let `seconds`
        pass (what the assertion is about, e.g. longer than an idle duration),
        then wait until the daemon has finished `reconciles` more full
        reconciles, so the absence is the daemon's decision, not a slow tick."""
        time.sleep(seconds)
        done = self.reconciles()
        eventually(lambda: self.reconciles() >= done + reconciles, timeout_seconds=timeout_seconds)

    def stop(self, signum=None, timeout_seconds: float = 30) -> int:
        import signal as signals

        if self.process.poll() is None:
            self.process.send_signal(signum or signals.SIGTERM)
        code = self.process.wait(timeout=timeout_seconds)
        self._log.close()
        return code

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process:
            self._log.close()


def election(namespace: str, *, lease_seconds: int = 6) -> tuple[str, ...]:
    """Flags for daemons electing a leader on a Lease in `namespace`, with a
    short lease so a failover fits in a test."""
    return ("--leader-election", "--lease-name", f"scaler-{namespace}", "--lease-namespace", namespace,
            "--lease-duration-seconds", str(lease_seconds), "--lease-renew-deadline-seconds",
            str(lease_seconds - 2), "--lease-retry-period-seconds", "1")


def lease_holder(kube, namespace: str) -> str | None:
    lease = client.CoordinationV1Api(kube).read_namespaced_lease(f"scaler-{namespace}", namespace)
    return lease.spec.holder_identity or None


def elected_pair(daemons, kube, policies, namespace: str, *args: str):
    """Two daemons electing a leader on one Lease in `namespace`: (leader,
    standby), once one of them holds it."""
    flags = election(namespace)
    one = daemons(policies, *args, *flags, "--identity", "one", name="one")
    two = daemons(policies, *args, *flags, "--identity", "two", name="two")
    one.wait_ready()
    two.wait_ready()
    holder = eventually(lambda: lease_holder(kube, namespace), timeout_seconds=30)
    return (one, two) if holder == "one" else (two, one)


def pause_state(annotations: dict | None) -> dict:
    """scaler's pause state on an object: its annotations but what a resume
    leaves (the start times and the last action's record)."""
    from scaler.decide.annotations import KEPT_AFTER_RESUME, PREFIX

    return {k: v for k, v in (annotations or {}).items() if k.startswith(PREFIX) and k not in KEPT_AFTER_RESUME}
