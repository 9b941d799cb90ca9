"""The push wake on the real API server (docs/wake.md): real TokenReviews of
real ServiceAccount tokens, real SubjectAccessReviews against RBAC, and the
chart's RBAC for the daemon. What the unit tier cannot show: that the API
server answers as the fake does, that the chart grants what the reviews need,
and how long a wake takes with its round trips: the p95 of 100 wakes, each
from the request sent to the answer (a TokenReview when the token is new, a
SubjectAccessReview per workload, the PATCH), is printed (a number for
docs/wake.md and docs/benchmarks.md, never a timed assertion: the suite
runs on busy machines)."""

from __future__ import annotations

import json
import statistics
import textwrap
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import cluster as local_cluster
import pytest
from kubernetes import client

from tests.cluster.test_deploy import Install, _denials
from tests.helpers import FAST, elected_pair, eventually, gpu_deployment


def _policy(namespace: str) -> str:
    return textwrap.dedent(f"""
        policies:
          - name: chat
            targets: {{namespaces: [{namespace}]}}
            wake: {{query: 'sum by (namespace, workload) (push_wake_test_pending)', target_per_replica: 8}}
            min_replicas: 1
        """)


@pytest.fixture(scope="module")
def binaries():
    return local_cluster.binaries()


@pytest.fixture
def install(binaries, cluster, kube, namespace, tmp_path):
    installed = Install(binaries=binaries, cluster=cluster, kube=kube, namespace=namespace, tmp_path=tmp_path)
    yield installed
    installed.remove()


@pytest.fixture
def workloads(kube):
    """A namespace for workloads and the gateways that wake them."""
    core = client.CoreV1Api(kube)
    name = f"pw-{time.monotonic_ns() % 10**8}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    eventually(lambda: core.read_namespaced_service_account("default", name), timeout_seconds=30)
    yield name
    core.delete_namespace(name, propagation_policy="Background")


def service_account_token(kube, namespace: str, name: str, *, may_wake: bool) -> str:
    """A token minted for scaler, of a ServiceAccount allowed (or not) to patch deployments/scale."""
    core, rbac = client.CoreV1Api(kube), client.RbacAuthorizationV1Api(kube)
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name=name)))
    if may_wake:
        rbac.create_namespaced_role(namespace, client.V1Role(
            metadata=client.V1ObjectMeta(name=name),
            rules=[client.V1PolicyRule(api_groups=["apps"], resources=["deployments/scale"], verbs=["patch"])]))
        rbac.create_namespaced_role_binding(namespace, client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name=name),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=name),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=name, namespace=namespace)]))
    return core.create_namespaced_service_account_token(name, namespace, client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=["scaler"], expiration_seconds=3600))).status.token


def wake(daemon, body: dict, token: str | None) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{daemon.port}/wake", data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def at_zero(kube, namespace: str, *names: str) -> None:
    apps = client.AppsV1Api(kube)
    for name in names:
        apps.create_namespaced_deployment(namespace, gpu_deployment(name, replicas=0, gpus=0))


def replicas(kube, namespace: str, name: str) -> int:
    return client.AppsV1Api(kube).read_namespaced_deployment(name, namespace).spec.replicas


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20, method="inclusive")[-1]


def test_the_chart_s_identity_wakes_with_a_valid_token_and_refuses_the_rest(
        install, kube, workloads, daemons, tmp_path):
    """As deployed: the chart's RBAC with the push wake on, the daemon as its
    ServiceAccount. 100 wakes with a gateway's token, each of a workload at
    zero; then the refusals, each writing nothing."""
    install.apply(install.render("--set", "pushWake.enabled=true"))
    kubeconfig = install.kubeconfig()
    install.set_policies(_policy(workloads))
    names = [f"m{i:03d}" for i in range(100)]
    at_zero(kube, workloads, *names, "untouched")
    at_zero(kube, install.namespace, "own")  # the daemon's own namespace: excluded
    gateway = service_account_token(kube, workloads, "gateway", may_wake=True)
    nobody = service_account_token(kube, workloads, "nobody", may_wake=False)
    env = install.daemon_env("--set", "dryRun=false", "--set", "pushWake.enabled=true")
    assert env["SCALER_PUSH_WAKE"] == "true" and env["SCALER_PUSH_WAKE_AUDIENCES"] == "scaler"
    daemon = daemons(tmp_path / "not-read.yaml", *FAST, env={**env, "KUBECONFIG": str(kubeconfig)})
    daemon.wait_ready()
    eventually(lambda: wake(daemon, {"namespace": workloads, "name": "nope"}, gateway)[0] != 503,
               timeout_seconds=30)  # it leads, with the policies read in its term

    seconds = []
    for name in names:
        started = time.monotonic()
        status, answer = wake(daemon, {"namespace": workloads, "name": name}, gateway)
        seconds.append(time.monotonic() - started)
        assert (status, answer["result"]) == (200, "woken"), answer
    print(f"\npush wake, 100 workloads at zero, chart identity, each request to its answer (the PATCH landed): "
          f"p50 {statistics.median(seconds) * 1000:.0f} ms, p95 {p95(seconds) * 1000:.0f} ms, "
          f"max {max(seconds) * 1000:.0f} ms")
    assert all(replicas(kube, workloads, name) == 1 for name in names)

    refused = [
        (None, {"namespace": workloads, "name": "untouched"}, 401),
        ("not-a-token", {"namespace": workloads, "name": "untouched"}, 401),
        (nobody, {"namespace": workloads, "name": "untouched"}, 403),
        (gateway, {"namespace": install.namespace, "name": "own"}, 403),
        (gateway, {"namespace": "kube-system", "name": "coredns"}, 403),
    ]
    before = {(ns, n): client.AppsV1Api(kube).read_namespaced_deployment(n, ns).metadata.resource_version
              for ns, n in ((workloads, "untouched"), (install.namespace, "own"))}
    for token, body, status in refused:
        got, answer = wake(daemon, body, token)
        assert got == status, answer
    after = {(ns, n): client.AppsV1Api(kube).read_namespaced_deployment(n, ns).metadata.resource_version
             for ns, n in before}
    assert after == before
    assert daemon.metric("scaler_push_wakes_total", result="woken") == 100
    assert daemon.metric("scaler_push_wakes_total", result="unauthenticated") == 2
    assert daemon.metric("scaler_push_wakes_total", result="forbidden") == 1
    assert daemon.metric("scaler_push_wakes_total", result="not-managed") == 2
    assert daemon.stop() == 0
    # The callers refused are logged; the daemon itself is refused nothing.
    denied = [line for line in _denials(daemon) if '"event": "push wake refused"' not in line]
    assert denied == [], "the chart's RBAC must cover the TokenReviews and SubjectAccessReviews"


def test_a_thousand_concurrent_requests_for_one_workload_make_one_write(kube, workloads, daemons, tmp_path):
    policies = tmp_path / "policies.yaml"
    policies.write_text(_policy(workloads))
    at_zero(kube, workloads, "chat")
    gateway = service_account_token(kube, workloads, "gateway", may_wake=True)
    daemon = daemons(policies, *FAST, "--push-wake")
    daemon.wait_ready()
    with ThreadPoolExecutor(1000) as pool:
        answers = list(pool.map(lambda _: wake(daemon, {"namespace": workloads, "name": "chat"}, gateway),
                                range(1000)))
    results: dict[str, int] = {}
    for status, answer in answers:
        assert status == 200, answer
        results[answer["result"]] = results.get(answer["result"], 0) + 1
    print(f"\n1000 concurrent requests for one workload: {results}")
    assert set(results) <= {"woken", "already-up"} and results.get("woken", 0) >= 1
    writes = daemon.logs("writing")
    assert [(w["workload"], w["action"]) for w in writes] == [("chat", "resume")]
    assert sum(daemon.metric("scaler_actions_total", action="resume", result=r) or 0
               for r in ("success", "failed", "conflict", "gone", "skipped")) == 1
    assert replicas(kube, workloads, "chat") == 1


def test_a_standby_never_writes_and_names_the_leader(kube, workloads, daemons, tmp_path):
    """Out of the cluster there is no leader pod to forward to: the standby
    answers 503 naming the holder of the Lease, and writes nothing."""
    policies = tmp_path / "policies.yaml"
    policies.write_text(_policy(workloads))
    at_zero(kube, workloads, "chat")
    gateway = service_account_token(kube, workloads, "gateway", may_wake=True)
    leader, standby = elected_pair(daemons, kube, policies, workloads, *FAST, "--push-wake")
    for _ in range(20):
        status, answer = wake(standby, {"namespace": workloads, "name": "chat"}, gateway)
        assert (status, answer["result"]) == (503, "not-leader"), answer
    assert answer["leader"] in ("one", "two") and answer["leader"] != standby.args[-1]
    assert replicas(kube, workloads, "chat") == 0 and standby.logs("writing") == []
    status, answer = wake(leader, {"namespace": workloads, "name": "chat"}, gateway)
    assert (status, answer["result"]) == (200, "woken"), answer
    assert standby.logs("writing") == [] and len(leader.logs("writing")) == 1
