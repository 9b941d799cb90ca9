"""Following pauses to their nodes in process (cluster/placing.py,
run/following.py, `scaler status`) against the fake API server: what a user
sees is the record on the workload, its Events, the metrics and the status
line; and what it costs, in requests.

The fake runs no controllers: pods are created and deleted here, as the
ReplicaSet controller and Karpenter would."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from scaler.cli.main import main
from scaler.cluster.actions import ActionRecord
from scaler.cluster.eventing import EventSink
from scaler.cluster.kinds import DEPLOYMENT, JOB
from scaler.cluster.pausing import Pauser, Retry
from scaler.cluster.placing import Placement
from scaler.cluster.views import WatchingView
from scaler.cluster.writes import Outcome
from scaler.decide.annotations import LAST_ACTION, NODES
from scaler.decide.loading import check_texts
from scaler.run.acting import Actor
from scaler.run.evaluating import Evaluator
from scaler.run.following import Follower
from scaler.run.observability import Metrics
from scaler.run.settings import Settings
from scaler.signals.prometheus import Prometheus
from tests.helpers import eventually

#: Where no Prometheus answers: refused at once, never the default 127.0.0.1:9090, where
#: something else may listen and hold a price query until its timeout.
NO_PROMETHEUS = "http://127.0.0.1:1"

FIXTURES = Path(__file__).parents[1] / "fixtures" / "nodes"
T0 = datetime(2026, 12, 5, 3, 25, 34, tzinfo=UTC)
FAST = Retry(attempts=8, base_seconds=0.001, max_seconds=0.01)
DND = "karpenter.sh/do-not-disrupt"
NIGHTS = """
policies:
  - name: nights
    targets: {namespaces: [rec]}
    schedule:
      timezone: UTC
      windows: [{name: night, mode: down, when: "Mon-Sun 00:00-24:00"}]
"""
NODEPOOL_CRD = {
    "metadata": {"name": "nodepools.karpenter.sh"},
    "spec": {"group": "karpenter.sh", "scope": "Cluster",
             "names": {"kind": "NodePool", "plural": "nodepools", "singular": "nodepool", "listKind": "NodePoolList"},
             "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}}}]}}


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class World:
    """A namespace with GPU Deployments, their pods on nodes, a Pauser that
    records nodes, and a follower; `term` says who leads."""

    def __init__(self, fake, *, warn_after_seconds: float = 1800, karpenter: bool = True) -> None:
        self.fake = fake
        self.term = 1
        fake.create("namespaces", {"metadata": {"name": "rec"}})
        if karpenter:
            fake.create("customresourcedefinitions.apiextensions.k8s.io", NODEPOOL_CRD)
            fake.create("nodepools.karpenter.sh", {"metadata": {"name": "gpu"}, "spec": {"disruption": {
                "consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": "5s",
                "budgets": [{"nodes": "100%"}]}}})
        self.kube = fake.client()
        self.view = WatchingView(self.kube)
        self.placement = Placement(self.kube)
        self.pauser = Pauser(self.kube, retry=FAST, clock=lambda: T0, placement=self.placement)
        self.metrics = Metrics()
        self.followers: list[Follower] = []
        self.follower = self.make_follower(warn_after_seconds=warn_after_seconds)

    def make_follower(self, *, warn_after_seconds: float = 1800, placement: Placement | None = None) -> Follower:
        settings = Settings(node_held_warning_seconds=warn_after_seconds, node_follow_interval_seconds=15,
                            prometheus_url=NO_PROMETHEUS)
        placement = placement or self.placement
        follower = Follower(self.kube, settings, placement=placement, pauser=self.pauser, view=self.view,
                            kinds=lambda: [DEPLOYMENT, JOB], may_act=lambda term: term == self.term,
                            metrics=self.metrics)
        follower.start()
        eventually(placement.nodes_listed, timeout_seconds=5)
        self.followers.append(follower)
        return follower

    def node(self, name: str, *, gpus: int = 8, karpenter: bool = True, labels=None, annotations=None) -> None:
        meta = {"name": name, "annotations": annotations or {}, "labels": {
            "node.kubernetes.io/instance-type": f"gpu-{gpus}x", "topology.kubernetes.io/zone": "local-a",
            **({"karpenter.sh/nodepool": "gpu", "karpenter.sh/capacity-type": "on-demand"} if karpenter else {}),
            **(labels or {})}}
        self.fake.create("nodes", {"metadata": meta, "spec": {},
                                   "status": {"allocatable": {"nvidia.com/gpu": str(gpus), "cpu": "64"}}})
        eventually(lambda: self.placement.node(name) is not None, timeout_seconds=5)

    def deployment(self, name: str, *, node: str | None = None, replicas: int = 1, gpus: int = 4) -> None:
        template = {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
            {"name": "server", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]}}
        self.fake.create("deployments.apps", {"metadata": {"name": name}, "spec": {
            "replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": template}}, namespace="rec")
        for index in range(replicas if node else 0):
            self.pod(f"{name}-5d8f9-{index}", app=name, node=node, gpus=gpus)

    def pod(self, name: str, *, app: str, node: str, gpus: int = 0, annotations=None, created: datetime = T0
            - timedelta(minutes=5), owner: str = "ReplicaSet") -> None:
        self.fake.create("pods", {"metadata": {
            "name": name, "labels": {"app": app, "pod-template-hash": "5d8f9"}, "annotations": annotations or {},
            "creationTimestamp": stamp(created),
            "ownerReferences": [{"kind": owner, "name": f"{app}-5d8f9" if owner == "ReplicaSet" else app,
                                 "controller": True}]},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"limits": {
                "nvidia.com/gpu": str(gpus)}}}]}, "status": {"phase": "Running", "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp(created)}]}},
            namespace="rec")

    def workload(self, name: str, kind=DEPLOYMENT):
        return eventually(lambda: next((w for w in self.view.workloads([kind]) if w.name == name), None),
                          timeout_seconds=5)

    def pause(self, name: str, kind=DEPLOYMENT):
        workload = self.workload(name, kind)
        result = self.pauser.pause(workload, by="policy/nights", reason="keep-down window", cause="keep-down-window")
        self.view.took(result, workload)  # as the reconciler does: the next pass reads the write
        return result

    def gone(self, *pods: str, node: str | None = None) -> None:
        """The controllers' part: the pods go, then (Karpenter) the node."""
        for pod in pods:
            self.fake.delete("pods", "rec", pod)
        if node:
            self.fake.delete("nodes", "", node)
            eventually(lambda: self.placement.node(node) is None, timeout_seconds=5)

    def follow(self, seconds: float):
        results = self.follower.follow(now=T0 + timedelta(seconds=seconds), term=1)
        for result in results:  # the watch cache has our write before the next pass reads
            assert result.outcome is not Outcome.FAILED, result.reason
        return results

    def record(self, name: str, resource: str = "deployments.apps") -> dict:
        return json.loads(self.fake.get(resource, "rec", name)["metadata"]["annotations"][NODES])

    def events(self, name: str, reason: str | None = None) -> list[dict]:
        return self.fake.events("rec", name, reason)

    def gauge(self, blocker: str) -> float:
        return self.metrics.gpus_freed_not_released.labels(blocker)._value.get()

    def stop(self) -> None:
        for follower in self.followers:
            follower.stop(timeout_seconds=2)
        self.view.stop(timeout_seconds=2)


@pytest.fixture
def world(fake):
    made = []

    def make(**kwargs) -> World:
        made.append(World(fake, **kwargs))
        return made[-1]
    yield make
    for w in made:
        w.stop()


def test_a_pause_records_its_nodes_and_their_facts_with_one_pod_list_for_the_namespace(world):
    w = world()
    w.node("gpu-a1")
    w.node("gpu-a2", gpus=4)
    for index in range(12):
        w.deployment(f"m{index}", node="gpu-a1" if index % 2 else "gpu-a2", replicas=2, gpus=1)
    listed, patched = w.fake.count("GET", "/namespaces/rec/pods"), w.fake.count("PATCH", "/deployments/")
    results = [w.pause(f"m{index}") for index in range(12)]
    assert {r.outcome for r in results} == {Outcome.CHANGED}
    assert w.fake.count("PATCH", "/deployments/") - patched == 12  # one PATCH per object, as before
    assert w.fake.count("GET", "/namespaces/rec/pods") - listed == 1  # the namespace's pods, once
    record = w.record("m1")
    assert record["pausedAt"] == stamp(T0)
    [node] = record["nodes"]
    assert (node["name"], node["freedGpus"], node["gpus"], node["instanceType"], node["zone"], node["capacityType"],
            node["nodePool"], node["state"], node["checked"]) == (
        "gpu-a1", 2, 8, "gpu-8x", "local-a", "on-demand", "gpu", "held", False)
    assert w.record("m0")["nodes"][0]["name"] == "gpu-a2"


def test_pods_that_came_after_the_namespace_was_listed_are_listed_again(world):
    w = world()
    w.node("gpu-a1")
    w.deployment("first", node="gpu-a1")
    w.pause("first")
    w.deployment("later", node="gpu-a1", gpus=2)  # its pods are not in the list the first pause made
    w.placement.refresh_seconds = 0.0  # (the list is younger than the default second)
    listed = w.fake.count("GET", "/namespaces/rec/pods")
    w.pause("later")
    assert w.record("later")["nodes"][0]["freedGpus"] == 2
    assert w.fake.count("GET", "/namespaces/rec/pods") == listed + 1


def test_a_workload_holding_no_gpus_or_with_unreadable_pods_is_paused_without_a_record(world):
    w = world()
    w.node("gpu-a1")
    w.deployment("cpu", node="gpu-a1", gpus=0)
    w.deployment("gpu", node="gpu-a1")
    assert w.pause("cpu").outcome is Outcome.CHANGED
    assert NODES not in w.fake.get("deployments.apps", "rec", "cpu")["metadata"]["annotations"]
    w.fake.deny("list", "pods")
    assert w.pause("gpu").outcome is Outcome.CHANGED
    annotations = w.fake.get("deployments.apps", "rec", "gpu")["metadata"]["annotations"]
    assert NODES not in annotations and annotations["scaler.io/last-replicas"] == "1"


def test_a_released_node_ends_following_with_one_event_and_status_says_so(world, tmp_path, capsys):
    w = world()
    w.node("gpu-a1")
    w.deployment("llm", node="gpu-a1", replicas=2)
    w.pause("llm")
    w.follow(5)
    [held] = w.record("llm")["nodes"]
    assert (held["state"], held["blockers"], held["blockedBy"]) == ("held", ["2 of its own pods still terminating"],
                                                                   "waiting")
    assert w.gauge("waiting") == 8
    w.gone("llm-5d8f9-0", "llm-5d8f9-1")
    w.follow(15)
    assert w.record("llm")["nodes"][0]["blockers"] == [
        "nothing found blocking it; waiting for Karpenter to consolidate it (NodePool gpu, consolidateAfter 5s)"]
    w.gone(node="gpu-a1")
    w.follow(23)
    [released] = w.record("llm")["nodes"]
    assert (released["state"], released["releasedAt"], released["releasedAfterSeconds"], released["blockers"]) == (
        "released", stamp(T0 + timedelta(seconds=23)), 23.0, [])
    [event] = w.events("llm", "NodesReleased")
    assert event["message"] == "GPU node gpu-a1 released 23 s after the pause; 8 GPUs off the bill"
    assert event["type"] == "Normal" and w.gauge("waiting") == 0
    assert b"scaler_node_release_seconds_count 1.0" in generate_latest(w.metrics.registry)
    w.follow(60)  # nothing left to follow: no write, no second Event
    assert len(w.events("llm", "NodesReleased")) == 1

    kubeconfig = w.fake.kubeconfig(tmp_path / "kubeconfig")
    assert main(["status", "--kubeconfig", str(kubeconfig), "-n", "rec"]) == 0
    assert "released 23s after pause" in capsys.readouterr().out
    assert main(["status", "--kubeconfig", str(kubeconfig), "-n", "rec", "-o", "json"]) == 0
    [row] = json.loads(capsys.readouterr().out)["workloads"]
    assert [(n["name"], n["state"], n["releasedAfterSeconds"], n["blockers"], n["gpus"]) for n in row["nodes"]] == [
        ("gpu-a1", "released", 23.0, [], 8)]


def test_a_do_not_disrupt_pod_holds_the_node_warns_once_and_the_gauge_counts_it(world, tmp_path, capsys):
    w = world(warn_after_seconds=60)
    w.node("gpu-a1", gpus=4)
    w.deployment("llm", node="gpu-a1", gpus=3)
    w.pod("held-5d8f9-x", app="held", node="gpu-a1", gpus=1, annotations={DND: "true"})
    w.pause("llm")
    w.gone("llm-5d8f9-0")
    w.follow(10)
    text = f"pod rec/held-5d8f9-x (Deployment held, not a DaemonSet) has {DND}"
    assert w.record("llm")["nodes"][0]["blockers"] == [text]
    assert (w.gauge("do-not-disrupt"), w.gauge("waiting")) == (3, 0)
    kubeconfig = w.fake.kubeconfig(tmp_path / "kubeconfig")
    assert main(["status", "--kubeconfig", str(kubeconfig), "-n", "rec"]) == 0
    assert f"held: {text}" in capsys.readouterr().out
    assert w.events("llm", "NodesHeld") == []

    w.follow(61)
    [warning] = w.events("llm", "NodesHeld")
    assert warning["type"] == "Warning"
    assert warning["message"] == (f"GPU node gpu-a1 still held 1m1s after the pause (3 GPUs freed, not off the "
                                  f"bill): {text}")
    w.follow(200)
    assert len(w.events("llm", "NodesHeld")) == 1

    # The annotation goes: the pod no longer holds it, then Karpenter replaces the node.
    w.fake.patch("pods", "rec", "held-5d8f9-x", {"metadata": {"annotations": {DND: None}}})
    w.follow(210)
    assert w.record("llm")["nodes"][0]["blockers"] == ["pod rec/held-5d8f9-x (Deployment held, not a DaemonSet)"]
    assert (w.gauge("pod"), w.gauge("do-not-disrupt")) == (3, 0)
    w.gone("held-5d8f9-x", node="gpu-a1")
    w.follow(240)
    assert w.record("llm")["nodes"][0]["state"] == "released" and w.gauge("pod") == 0
    assert len(w.events("llm", "NodesReleased")) == 1


def test_two_paused_workloads_on_one_node_each_see_the_other_until_both_are_paused(world):
    w = world()
    w.node("gpu-a1")
    w.deployment("a", node="gpu-a1")
    w.deployment("b", node="gpu-a1")
    w.pause("a")
    w.gone("a-5d8f9-0")
    w.follow(10)
    assert w.record("a")["nodes"][0]["blockers"] == ["pod rec/b-5d8f9-0 (Deployment b, not a DaemonSet)"]
    w.pause("b")
    w.gone("b-5d8f9-0")
    w.follow(20)
    assert {name: w.record(name)["nodes"][0]["blockedBy"] for name in "ab"} == {"a": "waiting", "b": "waiting"}
    w.gone(node="gpu-a1")
    w.follow(40)
    assert {name: w.record(name)["nodes"][0]["releasedAfterSeconds"] for name in "ab"} == {"a": 40.0, "b": 40.0}
    assert [len(w.events(name, "NodesReleased")) for name in "ab"] == [1, 1]


def test_gpus_taken_by_another_workload_after_the_pause_are_reused(world):
    w = world()
    w.node("gpu-a1")
    w.deployment("llm", node="gpu-a1")
    w.pause("llm")
    w.gone("llm-5d8f9-0")
    w.pod("batch-5d8f9-q", app="batch", node="gpu-a1", gpus=8, created=T0 + timedelta(seconds=3))
    w.follow(10)
    [node] = w.record("llm")["nodes"]
    assert (node["state"], node["reusedBy"]) == ("reused", "rec/batch-5d8f9-q")
    [event] = w.events("llm", "NodesReused")
    assert event["message"] == "GPUs on node gpu-a1 taken by pod rec/batch-5d8f9-q"


def test_a_pod_that_takes_no_freed_gpu_is_no_reuse_and_the_node_stays_held(world):
    """On an 8-GPU node: `other`'s 1-GPU pod, there before the pause, is
    replaced after it (a rollout), and a 1-GPU pod lands in the GPUs nobody
    used before the pause. The 4 freed GPUs are still idle: held, counted in
    the gauge, no NodesReused. Only a pod beyond them takes the freed GPUs."""
    w = world()
    w.node("gpu-a1")
    w.deployment("llm", node="gpu-a1")
    w.pod("other-5d8f9-a", app="other", node="gpu-a1", gpus=1)
    w.pause("llm")
    w.gone("llm-5d8f9-0", "other-5d8f9-a")
    w.pod("other-5d8f9-b", app="other", node="gpu-a1", gpus=1, created=T0 + timedelta(seconds=20))
    w.pod("tiny-5d8f9-q", app="tiny", node="gpu-a1", gpus=3, created=T0 + timedelta(seconds=30))
    w.follow(40)
    [node] = w.record("llm")["nodes"]
    assert (node["state"], node["blockedBy"], node["reusedBy"]) == ("held", "pod", None)
    assert w.events("llm", "NodesReused") == [] and w.gauge("pod") == 4
    w.pod("batch-5d8f9-q", app="batch", node="gpu-a1", gpus=1, created=T0 + timedelta(seconds=50))
    w.follow(60)
    [node] = w.record("llm")["nodes"]
    assert (node["state"], node["reusedBy"]) == ("reused", "rec/batch-5d8f9-q")
    assert [e["message"] for e in w.events("llm", "NodesReused")] == [
        "GPUs on node gpu-a1 taken by pod rec/batch-5d8f9-q"]
    assert w.gauge("pod") == 0


def test_a_node_replaced_by_one_of_the_same_name_is_released(world):
    """EKS names nodes by their private IP: the node goes and a new machine
    gets its address (same name, new uid) between two passes. The pause
    recorded the uid: the node it held is gone."""
    w = world()
    w.node("gpu-a1")
    w.deployment("llm", node="gpu-a1")
    w.pause("llm")
    old_uid = w.fake.get("nodes", "", "gpu-a1")["metadata"]["uid"]
    assert w.record("llm")["nodes"][0]["uid"] == old_uid
    w.follow(5)
    w.gone("llm-5d8f9-0", node="gpu-a1")
    w.node("gpu-a1")
    w.follow(60)
    [node] = w.record("llm")["nodes"]
    assert (node["state"], node["releasedAfterSeconds"], node["uid"]) == ("released", 60.0, old_uid)
    assert [e["message"] for e in w.events("llm", "NodesReleased")] == [
        "GPU node gpu-a1 released 60 s after the pause; 8 GPUs off the bill"]


def test_a_record_without_uids_follows_the_node_by_name_as_before(world):
    """Records written before uids were kept: the name alone says the node is there."""
    w = world()
    w.node("gpu-a1")
    w.deployment("llm", node="gpu-a1")
    w.pause("llm")
    w.follow(5)
    record = w.record("llm")
    del record["nodes"][0]["uid"]
    w.fake.patch("deployments.apps", "rec", "llm", {"metadata": {"annotations": {NODES: json.dumps(record)}}})
    eventually(lambda: "uid" not in w.workload("llm").annotations[NODES], timeout_seconds=5)
    w.gone("llm-5d8f9-0", node="gpu-a1")
    w.node("gpu-a1")
    w.follow(60)
    [node] = w.record("llm")["nodes"]
    assert (node["state"], node["blockedBy"], "uid" in node) == ("held", "waiting", False)


def test_the_cost_of_a_pass_grows_with_the_nodes_not_the_workloads(world):
    w = world()
    w.node("gpu-a1")
    w.node("gpu-a2")
    for index in range(10):
        w.deployment(f"m{index}", node=f"gpu-a{index % 2 + 1}", gpus=1)
    for index in range(10):
        w.pause(f"m{index}")
    w.follow(5)  # the first pass writes every record (checked)
    before = list(w.fake.requests)
    assert len(w.follow(10)) == 10
    sent = [r for r in w.fake.requests if r not in before]
    by_kind = {}
    for request in sent:
        by_kind[(request.method, request.path)] = by_kind.get((request.method, request.path), 0) + 1
    assert by_kind == {("GET", "/api/v1/pods"): 2, ("GET", "/api/v1/namespaces/default/events"): 2,
                       ("GET", "/apis/policy/v1/namespaces/rec/poddisruptionbudgets"): 1,
                       ("GET", "/apis/karpenter.sh/v1/nodepools"): 1}


def test_a_standby_reads_nothing_and_writes_nothing(world):
    w = world()
    w.node("gpu-a1")
    w.deployment("llm", node="gpu-a1")
    w.pause("llm")
    w.term = 2  # another replica leads now
    before = len(w.fake.requests)
    assert w.follow(10) == []
    assert len(w.fake.requests) == before
    assert w.record("llm")["nodes"][0]["checked"] is False and w.gauge("waiting") == 0


def test_a_new_leader_goes_on_following_dates_a_node_that_went_meanwhile_and_repeats_no_event(world):
    w = world()
    w.node("gpu-a1")
    w.deployment("llm", node="gpu-a1")
    w.pause("llm")
    w.follow(5)
    # The leader dies; the node goes while nobody looks; the node controller says so at +31 s.
    w.gone("llm-5d8f9-0", node="gpu-a1")
    w.fake.create("events", {"metadata": {"name": "gpu-a1.removing", "namespace": "default"},
                             "involvedObject": {"kind": "Node", "name": "gpu-a1"}, "reason": "RemovingNode",
                             "message": "Node gpu-a1 event: Removing Node gpu-a1 from Controller",
                             "lastTimestamp": stamp(T0 + timedelta(seconds=31))})
    successor = w.make_follower(placement=Placement(w.kube))  # a new process: it watched no deletion
    successor.follow(now=T0 + timedelta(seconds=95), term=1)
    assert w.record("llm")["nodes"][0]["releasedAfterSeconds"] == 31.0
    successor.follow(now=T0 + timedelta(seconds=110), term=1)
    w.follow(120)
    assert len(w.events("llm", "NodesReleased")) == 1


def test_a_node_whose_deletion_was_watched_is_dated_by_the_watch(world):
    """Not by the pass that noticed it: a pass interval (15 s) later."""
    w = world()
    w.node("gpu-a1")
    w.deployment("llm", node="gpu-a1")
    w.pause("llm")
    before = datetime.now(UTC).replace(microsecond=0)
    w.gone("llm-5d8f9-0", node="gpu-a1")
    after = datetime.now(UTC)
    w.follower.follow(now=after + timedelta(minutes=5), term=1)
    released = datetime.fromisoformat(w.record("llm")["nodes"][0]["releasedAt"])
    assert before <= released <= after


def test_an_event_owed_by_a_follower_that_died_is_posted_once_by_the_next_leader(world):
    """The release landed; its Event did not (the process was killed, here: the
    POST failed). The next leader posts it, named after the recorded action."""
    w = world()
    w.node("gpu-a1")
    w.deployment("llm", node="gpu-a1")
    w.pause("llm")
    w.gone("llm-5d8f9-0", node="gpu-a1")
    w.fake.fail(method="POST", path="/events$", status=500, times=1)
    w.follow(30)
    assert w.events("llm", "NodesReleased") == []
    action = ActionRecord.read(w.fake.get("deployments.apps", "rec", "llm")["metadata"]["annotations"])
    assert action.reason == "NodesReleased"
    policies, problems = check_texts([("p.yaml", NIGHTS)])
    assert not problems
    evaluator = Evaluator(prometheus=Prometheus("http://127.0.0.1:9", timeout_seconds=1), view=w.view,
                          excluded_namespaces=())
    actor = Actor(evaluator=evaluator, pauser=Pauser(w.kube, events=EventSink(w.kube)), dry_run=False)
    for _ in range(2):
        actor.post_owed_events(policies, now=T0 + timedelta(seconds=40), ttl_seconds=3600)
        actor.pauser.events.flush(timeout_seconds=5)
    [event] = w.events("llm", "NodesReleased")
    assert event["metadata"]["name"] == f"llm.{action.id}"
    assert event["message"].startswith("GPU node gpu-a1 released 30 s after the pause")
    assert LAST_ACTION in w.fake.get("deployments.apps", "rec", "llm")["metadata"]["annotations"]


def test_nodes_not_listed_yet_release_nothing(world):
    w = world()
    w.node("gpu-a1")
    w.deployment("llm", node="gpu-a1")
    w.pause("llm")
    w.placement.nodes.synced.clear()  # as before the cache's first LIST: an empty cache is not an empty cluster
    assert w.follow(10) == []
    assert w.record("llm")["nodes"][0]["state"] == "held"


def test_without_rbac_on_nodes_following_is_off_and_said_once(world, fake, caplog):
    w = world()
    fake.deny("list", "nodes")
    follower = Follower(w.kube, Settings(prometheus_url=NO_PROMETHEUS), placement=Placement(w.kube),
                        pauser=w.pauser, view=w.view, kinds=lambda: [DEPLOYMENT], may_act=lambda term: True)
    follower.start()
    assert follower.enabled is False
    assert follower.follow(now=T0, term=1) == []
    said = [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("level") == "error"]
    assert [line["event"].split(":")[0] for line in said] == ["cannot read nodes"]
    assert said[0]["error"] == "forbidden: cannot list nodes"
    assert not w.fake.count("GET", "/api/v1/pods")


def test_cluster_autoscaler_nodes_are_read_with_its_status_configmap(world):
    w = world(karpenter=False)
    w.node("gke-gpu-1", karpenter=False, labels={"cloud.google.com/gke-nodepool": "gpu-a100"})
    w.node("plain-1", karpenter=False)
    w.deployment("llm", node="gke-gpu-1")
    w.deployment("other", node="plain-1")
    w.pause("llm")
    w.pause("other")
    w.gone("llm-5d8f9-0", "other-5d8f9-0")
    w.follow(10)  # no status ConfigMap: no node autoscaler is seen
    assert w.record("other")["nodes"][0]["blockers"] == ["no node autoscaler manages it, so nothing removes it"]
    w.fake.create("configmaps", {"metadata": {"name": "cluster-autoscaler-status"}, "data": {
        "status": (FIXTURES / "cluster-autoscaler-status.yaml").read_text()}}, namespace="kube-system")
    w.follow(20)
    assert w.record("llm")["nodes"][0]["blockers"] == [
        "cluster-autoscaler node group gpu-a100 is at its minimum size (2)"]
    assert w.record("other")["nodes"][0]["blockedBy"] == "waiting"
    assert w.gauge("node-group-minimum") == 4 and w.gauge("no-autoscaler") == 0


def test_status_wide_and_yaml_give_every_node_its_state_seconds_and_blockers(world, tmp_path, capsys):
    """`-o wide` adds each node's detail; `-o yaml` carries the same `nodes`
    list as `-o json`: name, state, releasedAfterSeconds, blockers."""
    w = world()
    for node in ("gpu-a1", "gpu-a2"):
        w.node(node, gpus=4)
    w.deployment("llm", node="gpu-a1", gpus=4)
    w.pod("llm-5d8f9-9", app="llm", node="gpu-a2", gpus=4)
    w.pod("held-5d8f9-x", app="held", node="gpu-a2", gpus=0, annotations={DND: "true"})
    w.pause("llm")
    w.gone("llm-5d8f9-0", "llm-5d8f9-9", node="gpu-a1")
    w.follow(31)
    kubeconfig = str(w.fake.kubeconfig(tmp_path / "kubeconfig"))
    assert main(["status", "--kubeconfig", kubeconfig, "-n", "rec", "-o", "yaml"]) == 0
    [row] = yaml.safe_load(capsys.readouterr().out)["workloads"]
    held = f"pod rec/held-5d8f9-x (Deployment held, not a DaemonSet) has {DND}"
    assert [(n["name"], n["state"], n["releasedAfterSeconds"], n["blockers"]) for n in row["nodes"]] == [
        ("gpu-a1", "released", 31.0, []), ("gpu-a2", "held", None, [held])]
    assert row["nodesSummary"] == f"1 released 31s after pause, 1 held (gpu-a2: {held})"
    assert main(["status", "--kubeconfig", kubeconfig, "-n", "rec", "-o", "wide"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "NODE DETAIL" in out and "gpu-a1" in out and "gpu-a2" in out


def test_a_suspended_job_is_followed_to_its_nodes_like_a_deployment(world):
    """A Job names its pods (spec.selector, set by the API server): its
    suspend records their nodes, and the node's going ends it with the Event."""
    w = world()
    w.node("gpu-a1", gpus=8)
    template = {"metadata": {"labels": {"job-name": "train"}}, "spec": {"restartPolicy": "Never", "containers": [
        {"name": "trainer", "resources": {"limits": {"nvidia.com/gpu": "4"}}}]}}
    w.fake.create("jobs.batch", {"metadata": {"name": "train"}, "spec": {
        "parallelism": 2, "completions": 8, "suspend": False, "selector": {"matchLabels": {"job-name": "train"}},
        "template": template}}, namespace="rec")
    w.fake.set_status("jobs.batch", "rec", "train", {"active": 2, "ready": 2})
    for index in range(2):
        w.pod(f"train-{index}", app="train", node="gpu-a1", gpus=4, owner="Job")
        w.fake.patch("pods", "rec", f"train-{index}", {"metadata": {"labels": {"job-name": "train"}}})
    w.pause("train", JOB)
    assert w.fake.get("jobs.batch", "rec", "train")["spec"]["suspend"] is True
    [held] = w.record("train", "jobs.batch")["nodes"]
    assert (held["name"], held["freedGpus"], held["state"]) == ("gpu-a1", 8, "held")
    w.gone("train-0", "train-1", node="gpu-a1")
    w.follow(40)
    assert w.record("train", "jobs.batch")["nodes"][0]["releasedAfterSeconds"] == 40.0
    [event] = w.events("train", "NodesReleased")
    assert event["message"] == "GPU node gpu-a1 released 40 s after the pause; 8 GPUs off the bill"


def test_a_workload_another_pass_is_writing_is_left_to_it_until_the_next_follow(world):
    """The follower claims a workload as the actor's passes do: one write per
    workload at a time (and shutdown waits for it before handing the Lease back)."""
    from contextlib import contextmanager

    w = world()
    w.node("gpu-a1")
    w.deployment("llm", node="gpu-a1", replicas=2)
    w.pause("llm")
    busy: set[tuple[str, str, str]] = set()
    asked: list[tuple[str, str, str]] = []

    @contextmanager
    def claimed(key):
        asked.append(key)
        yield key not in busy
    w.follower.claimed = claimed
    busy.add((DEPLOYMENT.key, "rec", "llm"))
    assert w.record("llm")["nodes"][0]["checked"] is False  # as the pause wrote it
    before = w.fake.count("PATCH", "/deployments/llm")
    assert w.follow(5) == []
    assert w.fake.count("PATCH", "/deployments/llm") == before and asked == [(DEPLOYMENT.key, "rec", "llm")]
    busy.clear()
    w.follow(6)
    assert w.record("llm")["nodes"][0]["checked"] is True
