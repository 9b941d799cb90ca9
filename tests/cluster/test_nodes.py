"""Following pauses to their nodes on a real Karpenter (KWOK provider): a
cluster of its own, started like `deploy/local/up --karpenter`, and `scaler
run` processes pausing GPU Deployments whose pods made Karpenter launch a
node. What is checked is what users see: the record on the workload through
`scaler status -o json`, the Events, the metrics; and that kills and
failovers neither stop the following nor repeat an Event.

Each test starts with no Karpenter node (the previous test's is waited out),
so its pods land on a node of its own. Timings are printed (-s).
"""

from __future__ import annotations

import json
import textwrap
import time
from datetime import UTC, datetime, timedelta

import karpenter
import pytest
from kubernetes import client

from scaler.decide.annotations import NODE_WAIT, NODES, PAUSED_AT, STARTED_AT, WARM_UPS
from tests.cluster import test_karpenter
from tests.cluster.test_karpenter import NODE_GONE_SECONDS
from tests.helpers import (
    FAST,
    DaemonProcess,
    election,
    events,
    eventually,
    gpu_deployment,
    lease_holder,
    ready_pods,
    run_scaler,
)

pytestmark = pytest.mark.cluster
#: test_karpenter.py's fixtures on this module's own cluster: its client, a namespace per test (no NodeClaim left).
kube, namespace = test_karpenter.kube, test_karpenter.namespace

DND = "karpenter.sh/do-not-disrupt"
#: Karpenter leaves a node it has just launched alone this long (2 x --batch-max-duration).
NOMINATED_SECONDS = 20
#: The daemons follow every second, so a state change shows within about a second.
FOLLOW = ("--node-follow-interval-seconds", "1")


@pytest.fixture
def daemons(karpenter_cluster, tmp_path):
    started: list[DaemonProcess] = []

    def start(policies, *args: str, name: str | None = None) -> DaemonProcess:
        log = tmp_path / f"{name or f'daemon-{len(started)}'}.log"
        daemon = DaemonProcess(karpenter_cluster, policies, log, *FAST, *FOLLOW, *args).start()
        started.append(daemon)
        return daemon
    yield start
    for daemon in started:
        daemon.kill()


def keep_down(tmp_path, namespace: str, selector: str = "pause=yes"):
    """A keep-down window all day (two half-day windows meeting at 00:00 and 12:00)."""
    path = tmp_path / "policies.yaml"
    path.write_text(textwrap.dedent(f"""
        policies:
          - name: nights
            targets: {{namespaces: [{namespace}], selector: "{selector}"}}
            schedule:
              timezone: UTC
              windows:
                - {{name: am, mode: down, start: "0 0 * * *", end: "0 12 * * *"}}
                - {{name: pm, mode: down, start: "0 12 * * *", end: "0 0 * * *"}}
        """))
    return path


def on_karpenter(name: str, *, gpus: int, labels: dict | None = None, annotations: dict | None = None,
                 load_seconds: float | None = None):
    deployment = gpu_deployment(name, replicas=1, gpus=gpus, labels=labels, load_seconds=load_seconds)
    spec = deployment.spec.template.spec
    spec.node_selector = {karpenter.LABEL: "true"}
    spec.tolerations = [client.V1Toleration(key=karpenter.LABEL, operator="Equal", value="true",
                                            effect="NoSchedule")]
    if annotations:
        deployment.spec.template.metadata.annotations = {
            **(deployment.spec.template.metadata.annotations or {}), **annotations}
    return deployment


def create(kube, namespace: str, deployment) -> str:
    """Create it and wait for its pod Ready; the node it runs on."""
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, deployment)
    name = deployment.metadata.name
    return eventually(lambda: ready_pods(kube, namespace, name), timeout_seconds=90)[0].spec.node_name


def label(kube, namespace: str, name: str, value: str | None) -> None:
    client.AppsV1Api(kube).patch_namespaced_deployment(name, namespace, {"metadata": {"labels": {"pause": value}}})


def node_exists(kube, name: str) -> bool:
    try:
        client.CoreV1Api(kube).read_node(name)
    except client.ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def status(karpenter_cluster, namespace: str) -> dict[str, dict]:
    done = run_scaler("status", "-n", namespace, "-o", "json", kubeconfig=karpenter_cluster.kubeconfig)
    assert done.returncode == 0, done.stderr
    return {row["name"]: row for row in json.loads(done.stdout)["workloads"]}


def node_of(karpenter_cluster, namespace: str, name: str) -> dict | None:
    row = status(karpenter_cluster, namespace).get(name)
    return row["nodes"][0] if row and row["nodes"] else None


def annotations(kube, namespace: str, name: str) -> dict:
    return client.AppsV1Api(kube).read_namespaced_deployment(name, namespace).metadata.annotations or {}


def test_a_paused_deployments_karpenter_node_is_released_and_status_says_when(
        kube, namespace, karpenter_cluster, tmp_path, daemons):
    node = create(kube, namespace, on_karpenter("llm", gpus=3, labels={"pause": "yes"}))
    # A node up a while, as users' are: Karpenter does not disrupt one in its
    # first 20 s (nominated), which would add that to what is measured.
    time.sleep(NOMINATED_SECONDS)
    daemon = daemons(keep_down(tmp_path, namespace))
    daemon.wait_ready()
    paused_at = datetime.fromisoformat(eventually(lambda: annotations(kube, namespace, "llm").get(PAUSED_AT),
                                                  timeout_seconds=30))
    eventually(lambda: not node_exists(kube, node), timeout_seconds=NODE_GONE_SECONDS, interval_seconds=0.5)
    gone = datetime.now(UTC)
    measured = (gone - paused_at).total_seconds()

    released = eventually(lambda: (n := node_of(karpenter_cluster, namespace, "llm")) and n["state"] == "released"
                          and n, timeout_seconds=30)
    print(f"\nnodes: {released['instanceType']} node gone {measured:.1f}s after the pause (seen by polling every "
          f"0.5 s); the record says {released['releasedAfterSeconds']}s")
    assert (released["name"], released["gpus"], released["freedGpus"], released["instanceType"],
            released["capacityType"], released["nodePool"]) == (node, 4, 3, "gpu-4x", "on-demand", "gpu")
    assert released["zone"] in karpenter.ZONES and released["blockers"] == []
    # The whole-second pause time and the 0.5 s poll are the only slack.
    assert abs(released["releasedAfterSeconds"] - measured) <= 2.5
    [event] = eventually(lambda: events(kube, namespace, "llm", "NodesReleased"), timeout_seconds=30)
    assert event.message == (f"GPU node {node} released {released['releasedAfterSeconds']:.0f} s after the pause; "
                             "4 GPUs off the bill")
    assert daemon.metric("scaler_node_release_seconds_count") == 1
    assert daemon.metric("scaler_gpus_freed_not_released", blocker="waiting") == 0
    table = run_scaler("status", "-n", namespace, kubeconfig=karpenter_cluster.kubeconfig).stdout
    assert f"released {released['releasedAfterSeconds']:.0f}s after pause" in table


def test_a_do_not_disrupt_pod_holds_the_node_warns_once_and_the_node_goes_with_the_annotation(
        kube, namespace, karpenter_cluster, tmp_path, daemons):
    node = create(kube, namespace, on_karpenter("llm", gpus=3, labels={"pause": "yes"}))
    assert create(kube, namespace, on_karpenter("held", gpus=1, annotations={DND: "true"})) == node
    held_pod = ready_pods(kube, namespace, "held")[0].metadata.name
    daemon = daemons(keep_down(tmp_path, namespace), "--node-held-warning-seconds", "20")
    daemon.wait_ready()

    blocker = f"pod {namespace}/{held_pod} (Deployment held, not a DaemonSet) has {DND}"
    held = eventually(lambda: (n := node_of(karpenter_cluster, namespace, "llm")) and blocker in n["blockers"]
                      and n, timeout_seconds=60)
    assert (held["state"], held["blockedBy"]) == ("held", "do-not-disrupt")
    assert eventually(lambda: daemon.metric("scaler_gpus_freed_not_released", blocker="do-not-disrupt") == 3,
                      timeout_seconds=15)
    table = run_scaler("status", "-n", namespace, kubeconfig=karpenter_cluster.kubeconfig).stdout
    assert f"held: {blocker}" in table
    [warning] = eventually(lambda: events(kube, namespace, "llm", "NodesHeld"), timeout_seconds=60)
    assert warning.type == "Warning"
    assert warning.message.startswith(f"GPU node {node} still held ")
    assert f"(3 GPUs freed, not off the bill): {blocker}" in warning.message

    removed = time.monotonic()
    client.CoreV1Api(kube).patch_namespaced_pod(held_pod, namespace, {"metadata": {"annotations": {DND: None}}})
    released = eventually(lambda: (n := node_of(karpenter_cluster, namespace, "llm")) and n["state"] == "released"
                          and n, timeout_seconds=NODE_GONE_SECONDS, interval_seconds=1)
    print(f"\nnodes: held node released {time.monotonic() - removed:.1f}s after the annotation went; "
          f"{released['releasedAfterSeconds']}s after the pause")
    assert not node_exists(kube, node)
    assert eventually(lambda: daemon.metric("scaler_gpus_freed_not_released", blocker="do-not-disrupt") == 0,
                      timeout_seconds=15)
    eventually(lambda: events(kube, namespace, "llm", "NodesReleased"), timeout_seconds=30)
    daemon.let_time_pass(3)
    assert len(events(kube, namespace, "llm", "NodesHeld")) == 1
    assert len(events(kube, namespace, "llm", "NodesReleased")) == 1


def test_two_paused_workloads_on_one_node_see_each_other_and_the_node_goes_when_both_are_paused(
        kube, namespace, karpenter_cluster, tmp_path, daemons):
    node = create(kube, namespace, on_karpenter("a", gpus=2, labels={"pause": "yes"}))
    assert create(kube, namespace, on_karpenter("b", gpus=2)) == node
    b_pod = ready_pods(kube, namespace, "b")[0].metadata.name
    daemons(keep_down(tmp_path, namespace)).wait_ready()
    a_held = eventually(lambda: (n := node_of(karpenter_cluster, namespace, "a")) and n["checked"] and n,
                        timeout_seconds=60)
    assert f"pod {namespace}/{b_pod} (Deployment b, not a DaemonSet)" in a_held["blockers"]

    # a back by hand (out of the policy), b paused: now b sees a.
    label(kube, namespace, "a", None)
    done = run_scaler("resume", "-n", namespace, "a", "--wait", kubeconfig=karpenter_cluster.kubeconfig)
    assert done.returncode == 0, done.stderr
    a_pod = eventually(lambda: ready_pods(kube, namespace, "a"), timeout_seconds=60)[0]
    assert a_pod.spec.node_name == node
    label(kube, namespace, "b", "yes")
    b_held = eventually(lambda: (n := node_of(karpenter_cluster, namespace, "b")) and n["checked"] and n,
                        timeout_seconds=60)
    assert f"pod {namespace}/{a_pod.metadata.name} (Deployment a, not a DaemonSet)" in b_held["blockers"]
    assert node_exists(kube, node)

    # Both paused: the node goes, and both records say so.
    label(kube, namespace, "a", "yes")
    eventually(lambda: not node_exists(kube, node), timeout_seconds=NODE_GONE_SECONDS, interval_seconds=0.5)
    rows = eventually(lambda: (rows := status(karpenter_cluster, namespace)) and all(
        rows[name]["nodes"] and rows[name]["nodes"][0]["state"] == "released" for name in "ab") and rows,
        timeout_seconds=30)
    print(f"\nnodes: shared node released {rows['a']['nodes'][0]['releasedAfterSeconds']}s after a's second "
          f"pause, {rows['b']['nodes'][0]['releasedAfterSeconds']}s after b's")
    for name in "ab":
        eventually(lambda name=name: events(kube, namespace, name, "NodesReleased"), timeout_seconds=30)


def test_following_goes_on_through_kills_and_failovers_and_no_event_is_repeated(
        kube, namespace, karpenter_cluster, tmp_path, daemons):
    node = create(kube, namespace, on_karpenter("llm", gpus=3, labels={"pause": "yes"}))
    assert create(kube, namespace, on_karpenter("held", gpus=1, annotations={DND: "true"})) == node
    held_pod = ready_pods(kube, namespace, "held")[0].metadata.name
    policies = keep_down(tmp_path, namespace)
    flags = (*election(namespace), "--node-held-warning-seconds", "25")
    started = [daemons(policies, *flags, "--identity", name, name=name) for name in ("one", "two")]
    for daemon in started:
        daemon.wait_ready()
    by_name = {"one": started[0], "two": started[1]}

    def holder(*, other_than: str | None = None) -> str:
        """The replica holding the Lease, once it is a live one (and not `other_than`)."""
        return eventually(lambda: (name := lease_holder(kube, namespace)) in by_name and name != other_than
                          and by_name[name].process.poll() is None and name, timeout_seconds=60)

    # Paused and followed; then the leader is killed before the Warning is due.
    eventually(lambda: (n := node_of(karpenter_cluster, namespace, "llm")) and n["checked"], timeout_seconds=60)
    first = holder()
    by_name[first].process.kill()
    by_name["three"] = daemons(policies, *flags, "--identity", "three", name="three")
    by_name["three"].wait_ready()
    second = holder(other_than=first)

    # The successor warns, once; then it is killed too.
    eventually(lambda: events(kube, namespace, "llm", "NodesHeld"), timeout_seconds=90)
    by_name[second].process.kill()
    last = by_name[holder(other_than=second)]

    # The third releases it, once.
    client.CoreV1Api(kube).patch_namespaced_pod(held_pod, namespace, {"metadata": {"annotations": {DND: None}}})
    released = eventually(lambda: (n := node_of(karpenter_cluster, namespace, "llm")) and n["state"] == "released"
                          and n, timeout_seconds=NODE_GONE_SECONDS, interval_seconds=1)
    eventually(lambda: events(kube, namespace, "llm", "NodesReleased"), timeout_seconds=30)
    last.let_time_pass(3)
    print(f"\nnodes: released {released['releasedAfterSeconds']}s after the pause, through two kills")
    assert len(events(kube, namespace, "llm", "NodesHeld")) == 1
    assert len(events(kube, namespace, "llm", "NodesReleased")) == 1
    assert json.loads(annotations(kube, namespace, "llm")[NODES])["nodes"][0]["warnedAt"]


def a_day(path, namespace: str, opens: datetime, *, prewarm: bool) -> None:
    """Down outside one up window from `opens` (whole minutes, UTC), 30
    minutes long; no grace after a start, so a pause follows a resume at once."""
    closes = opens + timedelta(minutes=30)
    path.write_text(textwrap.dedent(f"""
        policies:
          - name: day
            targets: {{namespaces: [{namespace}], selector: pause=yes}}
            schedule:
              timezone: UTC
              outside: down
              windows: [{{name: day, mode: up, start: "{opens:%M %H} * * *", end: "{closes:%M %H} * * *"}}]
            startup_grace: 0s
            scale_down_delay: 0s
            {"prewarm: auto" if prewarm else ""}
        """))


def test_a_resume_that_waits_for_a_new_node_counts_it_and_prewarm_auto_opens_the_window_ready(
        kube, namespace, karpenter_cluster, tmp_path, daemons):
    """The warm-up of a resume that needs a new node includes the node's
    provisioning; `prewarm: auto` then leads by node + model load, so the
    window opens with the model Ready, on a node made for it."""
    load = 6
    path = tmp_path / "policies.yaml"
    later = (datetime.now(UTC) + timedelta(hours=2)).replace(second=0, microsecond=0)
    first = create(kube, namespace, on_karpenter("llm", gpus=2, labels={"pause": "yes"}, load_seconds=load))
    a_day(path, namespace, later, prewarm=False)
    daemon = daemons(path)
    daemon.wait_ready()
    eventually(lambda: not node_exists(kube, first), timeout_seconds=NODE_GONE_SECONDS, interval_seconds=0.5)

    # The window opens: the resume waits for Karpenter's node, then the model's load.
    a_day(path, namespace, (datetime.now(UTC) - timedelta(minutes=1)).replace(second=0, microsecond=0),
          prewarm=False)
    measured = eventually(lambda: (a := annotations(kube, namespace, "llm")).get(WARM_UPS) and a,
                          timeout_seconds=120)
    warm_up, node_wait = float(measured[WARM_UPS]), float(measured[NODE_WAIT])
    second = ready_pods(kube, namespace, "llm")[0].spec.node_name
    print(f"\nprewarm: a resume onto a new node warmed up in {warm_up:.0f}s (node {node_wait:.0f}s + model "
          f"{warm_up - node_wait:.0f}s)")
    # NODE_WAIT is written only when the pods waited for a node made after the start (kwok's are Ready at once).
    assert second != first and 0 <= node_wait < warm_up and warm_up - node_wait >= load - 1
    [ready] = eventually(lambda: events(kube, namespace, "llm", "Ready"), timeout_seconds=30)
    assert f"(node Ready after {node_wait:.0f}s, model {warm_up - node_wait:.0f}s more)" in ready.message

    # Paused again until a window far off, its node released; then the window
    # comes near: the pre-warm must bring a new node and the model in time.
    a_day(path, namespace, later, prewarm=True)
    eventually(lambda: not node_exists(kube, second), timeout_seconds=NODE_GONE_SECONDS, interval_seconds=0.5)
    opens = (datetime.now(UTC) + timedelta(seconds=warm_up + 15, minutes=1)).replace(second=0, microsecond=0)
    a_day(path, namespace, opens, prewarm=True)
    started = datetime.fromisoformat(eventually(
        lambda: (at := annotations(kube, namespace, "llm").get(STARTED_AT)) != measured[STARTED_AT] and at,
        timeout_seconds=(opens - datetime.now(UTC)).total_seconds() + 30))
    eventually(lambda: ready_pods(kube, namespace, "llm"), timeout_seconds=NODE_GONE_SECONDS)
    ready_after = (datetime.now(UTC) - opens).total_seconds()
    third = ready_pods(kube, namespace, "llm")[0].spec.node_name
    print(f"prewarm: resumed {(opens - started).total_seconds():.0f}s before the window opened, Ready "
          f"{abs(ready_after):.1f}s {'after' if ready_after > 0 else 'before'} it, on a new node")
    assert third not in (first, second)
    assert abs((opens - started).total_seconds() - round(warm_up)) <= 2  # the lead is the measured warm-up
    assert ready_after <= 5
