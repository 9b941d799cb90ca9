"""The chart as users run it: `helm install` of the image built from
deploy/Dockerfile, on a real node (containerd, runc, kubelet) beside the kwok
GPU nodes. The daemon runs in two real pods with in-cluster config, probes,
a projected token, the policies ConfigMap read through the API and leader
election; the tests drive it the way a user would (values, ConfigMap edits,
deleting a pod, helm upgrade and uninstall) and check what a user sees:
replicas on the workload, Events, the Lease, `kubectl logs` and `exec`.

The tests in this module share one release and run in order; each states the
time it measured on stdout (pytest -s shows them)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import cluster as local_cluster
import node as real_node
import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from scaler.decide.annotations import LAST_REPLICAS, PAUSED_BY
from tests.helpers import eventually, gpu_deployment

# The first test also waits for the node, and on a fresh machine for the image
# build (about 3 minutes).
pytestmark = [pytest.mark.real_node, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "scaler"
RELEASE = "scaler"
# Documented: on SIGTERM (a deleted pod gets it) the leader hands the Lease
# back and the standby takes it at its next try (retry period 2 s), unless the
# leader's replacement, just started, tries first; killed
# without warning, only after the lease duration (15 s). The bound sits
# between the two, so a Lease that was not handed back fails the test.
FAILOVER_BOUND_SECONDS = 8
FAILOVER_ROUNDS = 5
# The daemon reads the ConfigMap through the API every reload interval (1 s
# here) and acts at once on a change; the bound leaves room for a busy machine.
POLICY_EDIT_BOUND_SECONDS = 30
# The log lines a failed count is explained with.
STORY = {"start", "decision", "writing", "leadership changed", "policies reloaded", "human override"}


def _host_state() -> dict:
    """What the node must not change on the host, as seen from the host."""
    listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    return {
        "sysctls": {key: Path("/proc/sys", key).read_text() for key in real_node.KUBELET_SYSCTLS},
        "links": subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout.count("\n"),
        "addresses": sorted(line.split()[3] for line in subprocess.run(
            ["ip", "-o", "addr"], capture_output=True, text=True, check=True).stdout.splitlines()),
        "listeners": sorted({line.split()[3] for line in listening.splitlines()
                             if not line.split()[3].startswith(("127.0.0.1:", "[::1]:"))}),
        "netns": sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else [],
    }


HOST_BEFORE: dict = {}


@pytest.fixture(scope="module")
def node(cluster):
    """The real node on the session's cluster, added once; the cluster's
    teardown (deploy/local/down) removes it with everything it made."""
    if not cluster.node:
        HOST_BEFORE.update(_host_state())
        local_cluster.add_real_node(cluster)
    else:  # a cluster kept from an earlier session: the image of today's sources
        local_cluster.refresh_image(cluster)
    return cluster.node


@pytest.fixture(scope="module")
def binaries() -> Path:
    return local_cluster.binaries()


def _run(binaries: Path, cluster, tool: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(binaries / tool), "--kubeconfig", str(cluster.kubeconfig), *args],
                          capture_output=True, check=False, text=True, timeout=timeout)


def _policies(namespace: str, mode: str) -> str:
    """One policy: a window all day long, `down` (pause now) or `up` (resume now)."""
    return textwrap.dedent(f"""\
        policies:
          - name: nights
            targets:
              namespaces: [{namespace}]
              selector: tier=gpu
            schedule:
              timezone: UTC
              windows:
                - name: all-day
                  mode: {mode}
                  when: "daily 00:00-24:00"
        """)


class Release:
    """One helm release of the chart in its own namespace, acting on the GPU
    workloads of another namespace."""

    def __init__(self, *, binaries: Path, cluster, kube, node: dict, tmp: Path) -> None:
        self.binaries, self.cluster, self.kube, self.node, self.tmp = binaries, cluster, kube, node, tmp
        suffix = uuid.uuid4().hex[:6]
        self.namespace = f"scaler-{suffix}"
        self.workloads = f"gpu-{suffix}"
        repository, tag = node["image"].rsplit(":", 1)
        self.values = tmp / "values.yaml"
        self.values.write_text(yaml.safe_dump({
            "dryRun": False,
            "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
            "prometheus": {"url": node["prometheus_url"]},
            "evaluationIntervalSeconds": 2,
            "extraEnv": [{"name": "SCALER_POLICY_RELOAD_INTERVAL_SECONDS", "value": "1"},
                         {"name": "SCALER_WAKE_CHECK_INTERVAL_SECONDS", "value": "1"}],
            "nodeSelector": {real_node.LABEL: "true"},
            "tolerations": [{"key": real_node.LABEL, "operator": "Exists", "effect": "NoSchedule"}],
            "policies": {"nights.yaml": _policies(self.workloads, "down")},
        }))

    def helm(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return _run(self.binaries, self.cluster, "helm", *args, timeout=timeout)

    def kubectl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return _run(self.binaries, self.cluster, "kubectl", *args, timeout=timeout)

    def pods(self) -> list[client.V1Pod]:
        return [p for p in client.CoreV1Api(self.kube).list_namespaced_pod(
            self.namespace, label_selector=f"app.kubernetes.io/name=scaler,app.kubernetes.io/instance={RELEASE}").items
            if p.metadata.deletion_timestamp is None]

    def lease(self) -> client.V1Lease | None:
        try:
            return client.CoordinationV1Api(self.kube).read_namespaced_lease(RELEASE, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def holder(self) -> str | None:
        lease = self.lease()
        return lease.spec.holder_identity if lease else None

    def set_policies(self, mode: str) -> None:
        client.CoreV1Api(self.kube).patch_namespaced_config_map(
            f"{RELEASE}-policies", self.namespace, {"data": {"nights.yaml": _policies(self.workloads, mode)}})

    @contextlib.contextmanager
    def explained(self):
        """A failed check inside also shows what each pod said about leading and acting."""
        try:
            yield
        except (AssertionError, pytest.fail.Exception) as error:  # too many, or too few in time
            told = []
            for pod in self.pods():
                lines = [line for line in self.logs(pod.metadata.name)
                         if line.get("event") in STORY or "lease" in str(line.get("event"))]
                told.append(f"{pod.metadata.name}:\n" + "\n".join(f"  {json.dumps(line)}" for line in lines))
            lease = self.lease()
            raise AssertionError(f"{error}\nLease: {lease.spec if lease else None}\n" + "\n".join(told)) from error

    @contextlib.contextmanager
    def followed(self, pod: str):
        """A failed check inside also shows how `pod` stopped: its log is
        followed from here, since a deleted pod's log goes with it."""
        with tempfile.TemporaryFile("w+") as said:
            follower = subprocess.Popen(
                [str(self.binaries / "kubectl"), "--kubeconfig", str(self.cluster.kubeconfig), "logs", "-f",
                 "--tail", "5", "-n", self.namespace, pod], stdout=said, stderr=subprocess.STDOUT, text=True)
            try:
                yield
            except (AssertionError, pytest.fail.Exception) as error:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    follower.wait(timeout=10)  # ends with the container
                said.seek(0)
                raise AssertionError(f"{error}\n{pod}, followed until it ended:\n{said.read()}") from error
            finally:
                follower.kill()
                follower.wait()

    def logs(self, pod: str) -> list[dict]:
        result = self.kubectl("logs", "-n", self.namespace, pod)
        assert result.returncode == 0, result.stderr
        lines = []
        for line in result.stdout.splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass
        return lines


def _replicas(kube, namespace: str, name: str) -> int:
    return client.AppsV1Api(kube).read_namespaced_deployment(name, namespace).spec.replicas


def _object_events(kube, namespace: str, name: str) -> list:
    events = client.CoreV1Api(kube).list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    return sorted(events.items, key=lambda e: e.event_time or e.last_timestamp or e.metadata.creation_timestamp)


def _history(events: list) -> str:
    """Every Event on the object, with who posted it: what a failure needs to be read."""
    def poster(e) -> str | None:
        return e.reporting_instance or (e.source and (e.source.host or e.source.component))
    return "\n".join(f"  {e.event_time or e.last_timestamp} {e.reason} x{e.count or 1} by {poster(e)}: {e.message}"
                     for e in events)


def _recorded(kube, namespace: str, name: str, reason: str, count: int) -> None:
    """The Event follows the write that it reports: wait (bounded) for the
    count to reach exactly this, and fail if it is ever more."""
    def exactly():
        events = _object_events(kube, namespace, name)
        seen = sum(e.count or 1 for e in events if e.reason == reason)
        assert seen <= count, f"{reason} on {name} recorded {seen} times, expected {count}; its Events:\n" + \
            _history(events)
        return seen == count
    eventually(exactly, timeout_seconds=10)


def _timed(check, *, timeout_seconds: float) -> float:
    started = time.monotonic()
    eventually(check, timeout_seconds=timeout_seconds, interval_seconds=0.2)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def release(node, binaries, cluster, kube, tmp_path_factory):
    installed = Release(binaries=binaries, cluster=cluster, kube=kube, node=node,
                        tmp=tmp_path_factory.mktemp("release"))
    core = client.CoreV1Api(kube)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=installed.workloads)))
    eventually(lambda: core.read_namespaced_service_account("default", installed.workloads), timeout_seconds=30)
    yield installed
    installed.helm("uninstall", RELEASE, "-n", installed.namespace, "--wait", "--timeout", "120s")
    for name in (installed.namespace, installed.workloads):
        try:
            core.delete_namespace(name, propagation_policy="Background")
        except ApiException as error:
            if error.status != 404:
                raise


def test_helm_install_wait_runs_two_ready_pods_that_pause_a_gpu_workload(release, kube):
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(release.workloads, gpu_deployment("llm", replicas=3, gpus=1,
                                                                        labels={"tier": "gpu"}))
    started = time.monotonic()
    result = release.helm("install", RELEASE, str(CHART), "-n", release.namespace, "--create-namespace",
                          "-f", str(release.values), "--wait", "--timeout", "180s")
    installed_seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    # --wait returned: both pods passed their real readiness probe (/readyz).
    deployment = apps.read_namespaced_deployment(RELEASE, release.namespace)
    assert deployment.status.ready_replicas == 2
    pods = release.pods()
    assert len(pods) == 2 and all(p.spec.node_name == real_node.NODE_NAME for p in pods)
    assert all(p.status.container_statuses[0].ready and p.status.container_statuses[0].restart_count == 0
               for p in pods)

    # In-cluster config, the projected token and RBAC at work: the leader
    # (one of the two pods) pauses the kwok GPU workload, once.
    paused_seconds = _timed(lambda: _replicas(kube, release.workloads, "llm") == 0, timeout_seconds=60)
    annotations = apps.read_namespaced_deployment("llm", release.workloads).metadata.annotations
    assert annotations[LAST_REPLICAS] == "3" and annotations[PAUSED_BY] == "policy/nights"
    assert release.holder() in {p.metadata.name for p in pods}
    _recorded(kube, release.workloads, "llm", "ScaledToZero", 1)
    print(f"\nhelm install --wait: {installed_seconds:.1f}s; paused {paused_seconds:.1f}s later")


def test_kubectl_logs_show_json_decision_lines(release):
    leader = release.holder()
    # kubectl logs reads the container's log file, which may lag the daemon a little.
    paused = eventually(lambda: [line for line in release.logs(leader) if line.get("event") == "decision"
                                 and line.get("workload") == "llm" and line.get("action") == "pause"],
                        timeout_seconds=30)
    assert len(paused) == 1, paused
    assert paused[0]["namespace"] == release.workloads and paused[0]["dry_run"] is False
    assert paused[0]["result"] == "changed" and paused[0]["replicas_before"] == 3


def test_pod_runs_as_non_root_on_a_read_only_root_filesystem(release):
    pod = release.pods()[0].metadata.name
    identity = release.kubectl("exec", "-n", release.namespace, pod, "--", "id")
    assert identity.returncode == 0, identity.stderr
    assert identity.stdout.startswith("uid=10001(scaler) gid=10001(scaler) "), identity.stdout
    write = release.kubectl("exec", "-n", release.namespace, pod, "--", "touch", "/opt/scaler/written")
    assert write.returncode != 0 and "Read-only file system" in write.stderr, (write.stdout, write.stderr)
    scratch = release.kubectl("exec", "-n", release.namespace, pod, "--", "touch", "/tmp/written")
    assert scratch.returncode == 0, scratch.stderr  # the one writable place: an emptyDir


def test_a_policy_edit_in_the_configmap_reaches_the_pods_and_is_applied(release, kube):
    release.set_policies("up")
    seconds = _timed(lambda: _replicas(kube, release.workloads, "llm") == 3, timeout_seconds=POLICY_EDIT_BOUND_SECONDS)
    _recorded(kube, release.workloads, "llm", "Resumed", 1)
    # Read through the API, not from the kubelet's copy, which lags by its sync period.
    source = f"ConfigMap {release.namespace}/{RELEASE}-policies"
    eventually(lambda: [line for line in release.logs(release.holder())
                        if line.get("event") == "policies reloaded" and line.get("source") == source],
               timeout_seconds=30)
    print(f"\nConfigMap edit -> workload resumed: {seconds:.1f}s (bound {POLICY_EDIT_BOUND_SECONDS}s)")


def _two_ready(release) -> bool:
    pods = release.pods()
    return len(pods) == 2 and all(p.status.container_statuses and p.status.container_statuses[0].ready
                                  for p in pods)


def test_deleting_the_leader_pod_hands_the_lease_over_with_no_double_action(release, kube):
    apps = client.AppsV1Api(kube)
    took = []
    for _ in range(FAILOVER_ROUNDS):  # a race in the hand-back shows in about one deletion in ten
        eventually(lambda: _two_ready(release), timeout_seconds=60)
        leader = release.holder()
        started = time.monotonic()
        with release.followed(leader), release.explained():
            result = release.kubectl("delete", "pod", "-n", release.namespace, leader, "--wait=false")
            assert result.returncode == 0, result.stderr
            # The standby, or the leader's replacement if it starts first: either is a live pod.
            eventually(lambda leader=leader: release.holder() in {p.metadata.name for p in release.pods()} - {leader},
                       timeout_seconds=FAILOVER_BOUND_SECONDS + 10, interval_seconds=0.1)
        took.append(time.monotonic() - started)
    assert max(took) <= FAILOVER_BOUND_SECONDS, took
    # The pod now leading acts: the policy turns keep-down, the
    # workload pauses once, and a new one too.
    release.set_policies("down")
    eventually(lambda: _replicas(kube, release.workloads, "llm") == 0, timeout_seconds=POLICY_EDIT_BOUND_SECONDS)
    apps.create_namespaced_deployment(release.workloads, gpu_deployment("fresh", replicas=2, gpus=1,
                                                                        labels={"tier": "gpu"}))
    eventually(lambda: _replicas(kube, release.workloads, "fresh") == 0, timeout_seconds=30)
    eventually(lambda: _two_ready(release), timeout_seconds=60)
    with release.explained():
        _recorded(kube, release.workloads, "llm", "ScaledToZero", 2)  # the first pause, and this one
        _recorded(kube, release.workloads, "llm", "Resumed", 1)
        _recorded(kube, release.workloads, "fresh", "ScaledToZero", 1)
    print(f"\nleader pod deleted -> another pod holds the Lease: {', '.join(f'{t:.1f}s' for t in took)} "
          f"(bound {FAILOVER_BOUND_SECONDS}s)")


def test_helm_upgrade_rolls_over_with_no_double_action(release, kube):
    apps = client.AppsV1Api(kube)
    before = {p.metadata.name for p in release.pods()}
    started = time.monotonic()
    result = release.helm("upgrade", RELEASE, str(CHART), "-n", release.namespace, "-f", str(release.values),
                          "--set", "podAnnotations.rollout=two", "--wait", "--timeout", "180s")
    assert result.returncode == 0, result.stderr
    rolled = time.monotonic() - started
    eventually(lambda: {p.metadata.name for p in release.pods()}.isdisjoint(before) and len(release.pods()) == 2,
               timeout_seconds=60)
    eventually(lambda: release.holder() in {p.metadata.name for p in release.pods()}, timeout_seconds=30)
    # The new pods act too, and nothing already done is done again.
    apps.create_namespaced_deployment(release.workloads, gpu_deployment("after-upgrade", replicas=1, gpus=1,
                                                                        labels={"tier": "gpu"}))
    eventually(lambda: _replicas(kube, release.workloads, "after-upgrade") == 0, timeout_seconds=30)
    with release.explained():
        _recorded(kube, release.workloads, "llm", "ScaledToZero", 2)
        _recorded(kube, release.workloads, "fresh", "ScaledToZero", 1)
        _recorded(kube, release.workloads, "after-upgrade", "ScaledToZero", 1)
    print(f"\nhelm upgrade --wait: {rolled:.1f}s")


def test_helm_uninstall_leaves_no_lease_and_nothing_of_the_release(release, kube):
    assert release.lease() is not None
    started = time.monotonic()
    result = release.helm("uninstall", RELEASE, "-n", release.namespace, "--wait", "--timeout", "120s")
    assert result.returncode == 0, result.stderr
    print(f"\nhelm uninstall --wait: {time.monotonic() - started:.1f}s")
    assert release.lease() is None
    selector = f"app.kubernetes.io/instance={RELEASE}"
    left = release.kubectl("get", "all,configmaps,serviceaccounts,roles,rolebindings,leases,jobs",
                           "-n", release.namespace, "-l", selector, "-o", "name")
    assert left.returncode == 0 and left.stdout.strip() == "", left.stdout
    cluster_wide = release.kubectl("get", "clusterroles,clusterrolebindings", "-o", "name",
                                   "-l", f"{selector},app.kubernetes.io/name=scaler")
    assert cluster_wide.stdout.strip() == "", cluster_wide.stdout
    # No pod of the release is left running, the hook's included.
    eventually(lambda: client.CoreV1Api(kube).list_namespaced_pod(release.namespace).items == [],
               timeout_seconds=60)


def test_the_node_changes_nothing_on_the_host_and_stopping_it_removes_all_it_made(node, cluster):
    if not HOST_BEFORE:
        pytest.skip("the node was already running when the session started (SCALER_TEST_STATE_DIR)")
    node_dir = cluster.state_dir / "node"
    cgroup = node["cgroup_root"]
    holder = cluster.pids["node-namespaces"]
    # While it runs: the kubelet's sysctls, the host's interfaces, addresses
    # and /run/netns are as they were, nothing new listens beyond loopback, and
    # none of the node's mounts (pod volumes, overlays, netns) is on the host.
    assert _host_state() == HOST_BEFORE
    assert os.readlink(f"/proc/{holder}/ns/net") != os.readlink("/proc/self/ns/net")
    assert str(node_dir) not in Path("/proc/self/mounts").read_text()
    inside, outside = Path(f"/proc/{holder}/mounts").read_text(), Path("/proc/self/mounts").read_text()
    for covered in ("/proc/sys/vm/overcommit_memory", "/run", "/var/lib"):  # in the node's namespace only
        assert f" {covered} " in inside and f" {covered} " not in outside
    assert list(Path("/sys/fs/cgroup/memory", cgroup).rglob("cgroup.procs"))

    local_cluster.stop_real_node(cluster)

    assert _host_state() == HOST_BEFORE
    assert not node_dir.exists()
    assert not any(Path(h, cgroup).exists() for h in Path("/sys/fs/cgroup").iterdir())
    assert not local_cluster._pid_alive(holder)
    leftovers = subprocess.run(["pgrep", "-f", str(node_dir)], capture_output=True, check=False, text=True).stdout
    assert leftovers == ""
