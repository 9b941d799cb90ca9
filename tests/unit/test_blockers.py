"""Where a paused workload's node is, and what holds it: `blockers.assess`
table-tested on canned objects. The Karpenter shapes were recorded on the
local cluster (tests/fixtures/nodes/karpenter-held.json: a 3-GPU Deployment
paused on a gpu-4x beside a do-not-disrupt pod with a PDB and a DaemonSet
pod); cluster-autoscaler's are written from its API types
(clusterstate/api/types.go) and the text its releases before 1.30 printed."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scaler.cluster import autoscalers
from scaler.cluster.blockers import (
    KARPENTER_WORD_SECONDS,
    KINDS,
    Sight,
    Surroundings,
    assess,
    freed_not_released,
    owner_text,
)
from scaler.cluster.nodes import HELD, RELEASED, REUSED, NodeFacts

FIXTURES = Path(__file__).parents[1] / "fixtures" / "nodes"
RECORDED = json.loads((FIXTURES / "karpenter-held.json").read_text())
NODE = RECORDED["node"]
NAME = NODE["metadata"]["name"]
HELD_POD = next(p for p in RECORDED["pods"] if p["metadata"]["name"].startswith("held-"))
DAEMONSET_POD = next(p for p in RECORDED["pods"] if p["metadata"]["name"].startswith("dcgm-"))
POOLS = {"gpu": RECORDED["nodepool"]}
PAUSED = datetime(2026, 12, 5, 3, 25, 34, tzinfo=UTC)
NOW = datetime(2026, 12, 5, 3, 27, 47, tzinfo=UTC)
GPUS = ("nvidia.com/gpu",)


def ours(pod) -> bool:
    return pod["metadata"].get("labels", {}).get("app") == "llm" and pod["metadata"].get("namespace") == "rec"


def pod(name: str, *, namespace: str = "rec", app: str | None = None, gpus: int = 0, created: datetime = PAUSED
        - timedelta(hours=1), owner: tuple[str, str] | None = ("ReplicaSet", "other-5d8f9"), annotations=None,
        volumes=None, deleting: bool = False, template_hash: str | None = "5d8f9") -> dict:
    meta = {"name": name, "namespace": namespace, "labels": {"app": app or name.split("-")[0]},
            "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"), "annotations": annotations or {}}
    if template_hash:
        meta["labels"]["pod-template-hash"] = template_hash
    if owner:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    if deleting:
        meta["deletionTimestamp"] = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    resources = {"requests": {"nvidia.com/gpu": str(gpus)}} if gpus else {}
    return {"metadata": meta, "spec": {"nodeName": NAME, "containers": [{"resources": resources}],
                                       **({"volumes": volumes} if volumes else {})},
            "status": {"phase": "Running", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": meta["creationTimestamp"]}]}}


def plain_node(name: str = "gpu-node-1", **labels: str) -> dict:
    return {"metadata": {"name": name, "labels": {"node.kubernetes.io/instance-type": "p5.48xlarge", **labels}},
            "spec": {}, "status": {"allocatable": {"nvidia.com/gpu": "8"}}}


def with_annotations(node: dict, **annotations: str) -> dict:
    node = copy.deepcopy(node)
    node["metadata"].setdefault("annotations", {}).update(annotations)
    return node


def pool(**disruption) -> dict:
    found = copy.deepcopy(RECORDED["nodepool"])
    found["spec"]["disruption"].update(disruption)
    return {"gpu": found}


# cluster-autoscaler's status ConfigMap's `status`: the YAML of 1.30 and later, the text of earlier releases.
CA_YAML = {"data": {"status": (FIXTURES / "cluster-autoscaler-status.yaml").read_text()}}
CA_TEXT = {"data": {"status": (FIXTURES / "cluster-autoscaler-status.txt").read_text()}}
CA = autoscalers.read_autoscaler_status(CA_YAML)


KARPENTER = Surroundings(nodepools=POOLS)
DND = "karpenter.sh/do-not-disrupt"
WAITS = [("waiting", "nothing found blocking it; waiting for Karpenter to consolidate it (NodePool gpu, "
                     "consolidateAfter 5s)")]


def run(sight: Sight, around: Surroundings = KARPENTER, *, now=NOW, freed_gpus: int = 3):
    """As recorded: the 3-GPU workload paused on a 4-GPU node."""
    return assess(sight, ours=ours, paused_at=PAUSED, freed_gpus=freed_gpus, around=around, gpu_resources=GPUS,
                  now=now)


def texts(assessment) -> list[tuple[str, str]]:
    return [(b.kind, b.text) for b in assessment.blockers]


def test_the_recorded_held_node_names_the_pod_its_annotation_its_pdb_and_karpenters_word():
    found = run(Sight(NODE, RECORDED["pods"], RECORDED["events"]),
                Surroundings(nodepools=POOLS, pdbs={"rec": RECORDED["pdbs"]}))
    held = HELD_POD["metadata"]["name"]
    assert found.state == HELD
    assert texts(found) == [
        ("do-not-disrupt", f"pod rec/{held} (Deployment held, not a DaemonSet) has karpenter.sh/do-not-disrupt"),
        ("pdb", f"PodDisruptionBudget rec/held allows no eviction of pod rec/{held} (1 healthy, 1 needed)"),
        ("karpenter", f'Karpenter: Pod has "karpenter.sh/do-not-disrupt" annotation (Pod=rec/{held})'),
    ]
    # The DaemonSet pod (no do-not-disrupt) keeps no node: it is not named. The facts are the bill's.
    assert "dcgm" not in json.dumps(texts(found))
    assert found.facts == NodeFacts(4, "gpu-4x", "local-a", "on-demand", "gpu", 15.2)


def test_karpenters_word_from_before_the_pause_or_long_ago_is_not_taken_as_current():
    nominated = [e for e in RECORDED["events"] if "nominated" in e["message"]]
    assert texts(run(Sight(NODE, [HELD_POD], nominated))) == [
        ("do-not-disrupt", texts(run(Sight(NODE, [HELD_POD])))[0][1])]
    said = datetime(2026, 12, 5, 3, 27, 25, tzinfo=UTC)  # the recorded do-not-disrupt word
    later = said + timedelta(seconds=KARPENTER_WORD_SECONDS + 5)
    assert [kind for kind, _ in texts(run(Sight(NODE, [HELD_POD], RECORDED["events"]), now=later))] == [
        "do-not-disrupt"]


@pytest.mark.parametrize(("sight", "around", "state", "expected"), [
    pytest.param(Sight(None, gone_at=PAUSED + timedelta(seconds=31)), Surroundings(), RELEASED, [],
                 id="gone-released"),
    pytest.param(Sight(NODE, [DAEMONSET_POD]), Surroundings(nodepools=POOLS), HELD,
                 [("waiting", "nothing found blocking it; waiting for Karpenter to consolidate it (NodePool gpu, "
                              "consolidateAfter 5s)")], id="empty-karpenter-node-waits"),
    pytest.param(Sight(NODE, [pod("llm-1", app="llm", gpus=3, deleting=True), DAEMONSET_POD]),
                 Surroundings(nodepools=POOLS), HELD,
                 [("waiting", "1 of its own pods still terminating")], id="own-pod-terminating"),
    pytest.param(Sight({**NODE, "spec": {**NODE["spec"], "taints": [{"key": "karpenter.sh/disrupted"}]}},
                       [HELD_POD]), Surroundings(nodepools=POOLS), HELD,
                 [("waiting", "Karpenter is removing it"),
                  ("do-not-disrupt", f"pod rec/{HELD_POD['metadata']['name']} (Deployment held, not a DaemonSet) "
                                     "has karpenter.sh/do-not-disrupt")], id="being-removed-first"),
    pytest.param(Sight(NODE, [pod("other-abc", gpus=1)]), Surroundings(nodepools=POOLS), HELD,
                 [("pod", "pod rec/other-abc (Deployment other, not a DaemonSet)")], id="another-workloads-pod"),
    pytest.param(Sight(NODE, [pod("mirror", owner=("Node", NAME)), pod("static", owner=None, annotations={
        "kubernetes.io/config.mirror": "x"}), pod("done", gpus=1, deleting=True)]), Surroundings(nodepools=POOLS),
                 HELD, [("waiting", "nothing found blocking it; waiting for Karpenter to consolidate it (NodePool gpu, "
                                    "consolidateAfter 5s)")], id="mirror-and-deleted-pods-ignored"),
    pytest.param(Sight(NODE, [pod("db-0", owner=("StatefulSet", "db"), template_hash=None,
                                  annotations={autoscalers.SAFE_TO_EVICT: "false"})]), Surroundings(nodepools=POOLS),
                 HELD, [("pod", "pod rec/db-0 (StatefulSet db, not a DaemonSet)")],
                 id="safe-to-evict-is-cluster-autoscalers-not-karpenters"),
    pytest.param(Sight(with_annotations(NODE, **{"karpenter.sh/do-not-disrupt": "true"}), []),
                 Surroundings(nodepools=POOLS), HELD,
                 [("do-not-disrupt", "the node has karpenter.sh/do-not-disrupt")], id="node-do-not-disrupt"),
    pytest.param(Sight(NODE, []), Surroundings(nodepools=pool(budgets=[{"nodes": "0"}])), HELD,
                 [("nodepool", "NodePool gpu has a disruption budget of nodes: 0")], id="budget-zero"),
    pytest.param(Sight(NODE, []), Surroundings(nodepools=pool(budgets=[{"nodes": "0", "schedule": "0 9 * * 1-5",
                                                                         "duration": "8h"}])), HELD,
                 WAITS, id="budget-zero-scheduled-on-weekdays-on-a-saturday"),
    pytest.param(Sight(NODE, []), Surroundings(nodepools=pool(budgets=[{"nodes": "0", "reasons": ["Drifted"]}])),
                 HELD, [("waiting", "nothing found blocking it; waiting for Karpenter to consolidate it (NodePool "
                                    "gpu, consolidateAfter 5s)")], id="budget-zero-for-drift-only"),
    pytest.param(Sight(NODE, []), Surroundings(nodepools=pool(consolidateAfter="Never")), HELD,
                 [("nodepool", "NodePool gpu has consolidateAfter: Never (Karpenter never consolidates its nodes)")],
                 id="consolidate-never"),
    pytest.param(Sight(NODE, [pod("other-abc")]), Surroundings(nodepools=pool(consolidationPolicy="WhenEmpty")),
                 HELD, [("pod", "pod rec/other-abc (Deployment other, not a DaemonSet)"),
                        ("nodepool", "NodePool gpu consolidates only empty nodes (consolidationPolicy: WhenEmpty)")],
                 id="when-empty-with-a-pod"),
], )
def test_karpenter_nodes(sight, around, state, expected):
    found = run(sight, around)
    assert (found.state, texts(found)) == (state, expected)


@pytest.mark.parametrize(("schedule", "duration", "now", "expected"), [
    # NOW is Saturday 2026-12-05 03:27:47 UTC; Karpenter reads schedules in UTC.
    pytest.param("0 9 * * mon-fri", "8h", NOW, None, id="weekdays-on-a-saturday"),
    pytest.param("0 9 * * mon-fri", "8h", datetime(2026, 12, 7, 9, 0, tzinfo=UTC),
                 "during '0 9 * * mon-fri' for 8h (until 2026-12-07T17:00:00Z)", id="from-the-minute-it-fires"),
    pytest.param("0 9 * * mon-fri", "8h", datetime(2026, 12, 7, 16, 59, 59, tzinfo=UTC),
                 "during '0 9 * * mon-fri' for 8h (until 2026-12-07T17:00:00Z)", id="to-just-before-its-end"),
    pytest.param("0 9 * * mon-fri", "8h", datetime(2026, 12, 7, 17, 0, tzinfo=UTC), None, id="ended"),
    pytest.param("0 22 * * *", "10h", NOW, "during '0 22 * * *' for 10h (until 2026-12-05T08:00:00Z)",
                 id="fired-yesterday-still-running"),
    pytest.param("@daily", "4h", NOW, "during '@daily' for 4h (until 2026-12-05T04:00:00Z)", id="descriptor"),
    pytest.param("0 9 5 * mon", "8h", datetime(2026, 12, 5, 10, 0, tzinfo=UTC),
                 "during '0 9 5 * mon' for 8h (until 2026-12-05T17:00:00Z)", id="day-of-month-or-of-week-fires"),
    pytest.param("0 9 5 * mon", "8h", datetime(2026, 12, 6, 10, 0, tzinfo=UTC), None, id="neither-day"),
    pytest.param("0 9 * * mon", "8h", datetime(2026, 12, 5, 10, 0, tzinfo=UTC), None, id="not-on-its-day"),
    pytest.param("every day at 9", "8h", NOW, "during 'every day at 9' for 8h", id="unreadable-here-may-hold"),
    pytest.param("0 9 * * *", None, NOW, "during '0 9 * * *' for ?", id="no-duration-may-hold"),
])
def test_a_scheduled_zero_budget_holds_only_while_its_schedule_runs(schedule, duration, now, expected):
    budget = {"nodes": "0", "schedule": schedule, **({"duration": duration} if duration else {})}
    found = run(Sight(NODE, []), Surroundings(nodepools=pool(budgets=[budget, {"nodes": "100%"}])), now=now)
    assert texts(found) == ([("nodepool", f"NodePool gpu has a disruption budget of nodes: 0 {expected}")]
                            if expected else WAITS)


def started(found: dict, at: datetime) -> dict:
    found = copy.deepcopy(found)
    found["status"]["startTime"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return found




def test_a_daemonset_or_static_pods_do_not_disrupt_holds_a_karpenter_node_and_is_named_as_such():
    """Karpenter v1 honours do-not-disrupt on a DaemonSet or mirror pod too
    (statenode.go), though it waits for such pods for nothing else."""
    dcgm = pod("dcgm-exporter-x1", namespace="monitoring", owner=("DaemonSet", "dcgm-exporter"), template_hash=None,
               annotations={DND: "true"})
    static = pod("probe-node1", owner=("Node", NAME), template_hash=None, annotations={DND: "true"})
    assert texts(run(Sight(NODE, [dcgm, static]))) == [
        ("do-not-disrupt", "pod monitoring/dcgm-exporter-x1 (DaemonSet dcgm-exporter) has karpenter.sh/do-not-disrupt"),
        ("do-not-disrupt", "pod rec/probe-node1 (static pod) has karpenter.sh/do-not-disrupt")]
    # Without the annotation, or being deleted, it holds nothing; nor on a node Karpenter does not manage.
    assert texts(run(Sight(NODE, [DAEMONSET_POD]))) == WAITS
    gone = pod("dcgm-exporter-x1", owner=("DaemonSet", "dcgm-exporter"), annotations={DND: "true"}, deleting=True)
    assert texts(run(Sight(NODE, [gone]))) == WAITS
    assert [kind for kind, _ in texts(run(Sight(plain_node(), [dcgm]), Surroundings()))] == ["no-autoscaler"]


@pytest.mark.parametrize(("value", "age", "expected"), [
    ("true", timedelta(days=9), "has karpenter.sh/do-not-disrupt"),
    ("3h", timedelta(hours=1), 'has karpenter.sh/do-not-disrupt: "3h" (until 2026-12-05T05:27:47Z)'),
    ("1h30m", timedelta(hours=2), None),  # ran past it: Karpenter disrupts it again
    ("false", timedelta(0), None),
    ("soon", timedelta(0), None),  # not a duration: Karpenter ignores it
    ("-5m", timedelta(0), None),
])
def test_do_not_disrupt_holds_while_its_duration_runs_from_the_pods_start(value, age, expected):
    other = started(pod("other-abc", annotations={DND: value}), NOW - age)
    found = run(Sight(NODE, [other]))
    described = "pod rec/other-abc (Deployment other, not a DaemonSet)"
    assert texts(found)[0] == (("do-not-disrupt", f"{described} {expected}") if expected else ("pod", described))


def test_a_gone_node_is_released_when_it_went_never_later_than_now():
    assert run(Sight(None, gone_at=PAUSED + timedelta(seconds=31))).released_at == PAUSED + timedelta(seconds=31)
    assert run(Sight(None)).released_at == NOW
    assert run(Sight(None, gone_at=NOW + timedelta(hours=1))).released_at == NOW


def test_a_gpu_pod_scheduled_after_the_pause_reuses_the_node():
    taker = pod("batch-x", gpus=2, created=PAUSED + timedelta(seconds=5))
    found = run(Sight(NODE, [HELD_POD, taker]))
    assert (found.state, found.reused_by, found.facts.gpus) == (REUSED, "rec/batch-x", 4)
    # Without GPUs it is only another pod on the node.
    small = pod("logger-x", created=PAUSED + timedelta(seconds=5))
    assert run(Sight(NODE, [small])).state == HELD
    # Created before the pause, bound after it (it was pending for the GPUs): reused.
    waiting = pod("queued-x", gpus=1, created=PAUSED - timedelta(minutes=3))
    waiting["status"]["conditions"][0]["lastTransitionTime"] = "2026-12-05T03:25:40Z"
    assert run(Sight(NODE, [HELD_POD, waiting])).reused_by == "rec/queued-x"
    del waiting["status"]["conditions"]
    assert run(Sight(NODE, [HELD_POD, waiting])).state == HELD  # no condition: its creation decides


AFTER = PAUSED + timedelta(seconds=5)


@pytest.mark.parametrize(("node_gpus", "freed", "pods", "taker"), [
    pytest.param(8, 8, [pod("tiny-x", gpus=1, created=AFTER)], "rec/tiny-x", id="one-of-the-freed-gpus"),
    pytest.param(8, 2, [pod("tiny-x", gpus=1, created=AFTER)], None, id="fits-in-gpus-idle-before-the-pause"),
    pytest.param(8, 2, [pod("a-x", gpus=6), pod("tiny-x", gpus=1, created=AFTER)], "rec/tiny-x",
                 id="no-gpu-idle-before-the-pause"),
    pytest.param(8, 4, [pod("other-b", gpus=4, created=AFTER)], None, id="its-owner-replaced-a-pod-there-before"),
    pytest.param(8, 4, [pod("other-b", gpus=4, created=AFTER), pod("other-c", gpus=1, created=AFTER
                                                                   + timedelta(seconds=1))], "rec/other-c",
                 id="the-pod-that-tips-it-over"),
    pytest.param(8, 4, [pod("other-a", gpus=4), pod("other-b", gpus=4, created=AFTER, deleting=True),
                        pod("other-c", gpus=1, created=AFTER)], "rec/other-c", id="a-pod-being-deleted-holds-none"),
    pytest.param(8, 6, [pod("dcgm-x", gpus=2, owner=("DaemonSet", "dcgm"), created=AFTER),
                        pod("tiny-x", gpus=1, created=AFTER + timedelta(seconds=1))], "rec/tiny-x",
                 id="a-daemonset-holds-gpus-but-takes-none"),
    pytest.param(0, 4, [pod("other-a", gpus=1), pod("tiny-x", gpus=1, created=AFTER)], "rec/tiny-x",
                 id="node-gpus-unknown-any-gpu-pod-after-the-pause"),
])
def test_reuse_is_gpus_the_pause_freed_taken_by_pods_bound_after_it(node_gpus, freed, pods, taker):
    node = plain_node()
    node["status"]["allocatable"]["nvidia.com/gpu"] = str(node_gpus)
    found = run(Sight(node, pods), Surroundings(), freed_gpus=freed)
    assert (found.state, found.reused_by) == ((REUSED, taker) if taker else (HELD, None))


GROUP_NODE = plain_node(**{"cloud.google.com/gke-nodepool": "gpu-a100"})


@pytest.mark.parametrize(("sight", "around", "expected"), [
    pytest.param(Sight(GROUP_NODE, []), Surroundings(autoscaler=CA), [
        ("node-group-minimum", "cluster-autoscaler node group gpu-a100 is at its minimum size (2)")],
        id="group-at-minimum"),
    pytest.param(Sight(GROUP_NODE, []), Surroundings(autoscaler=autoscalers.read_autoscaler_status(CA_TEXT)), [
        ("node-group-minimum", "cluster-autoscaler node group https://www.googleapis.com/compute/v1/projects/p/zones/"
                               "z/instanceGroups/gpu-a100 is at its minimum size (1)")],
        id="group-at-minimum-text-status"),
    pytest.param(Sight(plain_node(), []), Surroundings(autoscaler=CA), [
        ("waiting", "nothing found blocking it; waiting for cluster-autoscaler to remove it (after "
                    "--scale-down-unneeded-time, 10m by default)")], id="ca-waiting"),
    pytest.param(Sight(with_annotations(plain_node(), **{autoscalers.SCALE_DOWN_DISABLED: "true"}), []),
                 Surroundings(autoscaler=CA),
                 [("scale-down-disabled", f"the node has {autoscalers.SCALE_DOWN_DISABLED}")],
                 id="scale-down-disabled"),
    pytest.param(Sight(plain_node(), [pod("db-0", owner=("StatefulSet", "db"), template_hash=None,
                                          annotations={autoscalers.SAFE_TO_EVICT: "false"})]),
                 Surroundings(autoscaler=CA),
                 [("safe-to-evict", f'pod rec/db-0 (StatefulSet db, not a DaemonSet) has {autoscalers.SAFE_TO_EVICT}: '
                                    '"false"')], id="safe-to-evict-false"),
    pytest.param(Sight(plain_node(), [pod("other-abc", annotations={DND: "true"})]), Surroundings(autoscaler=CA),
                 [("pod", "pod rec/other-abc (Deployment other, not a DaemonSet)")],
                 id="do-not-disrupt-is-karpenters-not-cluster-autoscalers"),
    pytest.param(Sight(plain_node(), [pod("cache-1", volumes=[{"name": "scratch", "emptyDir": {}}])]),
                 Surroundings(autoscaler=CA),
                 [("pod", "pod rec/cache-1 (Deployment other, not a DaemonSet): local storage (emptyDir or hostPath), "
                          "which cluster-autoscaler does not evict by default")], id="local-storage"),
    pytest.param(Sight(plain_node(), [pod("cache-1", volumes=[{"name": "scratch", "emptyDir": {}}],
                                          annotations={autoscalers.SAFE_TO_EVICT: "true"})]),
                 Surroundings(autoscaler=CA),
                 [("pod", "pod rec/cache-1 (Deployment other, not a DaemonSet)")], id="local-storage-safe-to-evict"),
    pytest.param(Sight(plain_node(), [pod("bare", owner=None)]), Surroundings(autoscaler=CA),
                 [("pod", "pod rec/bare (no controller, not a DaemonSet): not managed by a controller, which "
                          "cluster-autoscaler does not evict")], id="no-controller"),
    pytest.param(Sight(plain_node(), [pod("coredns-1", namespace="kube-system")]), Surroundings(autoscaler=CA),
                 [("pod", "pod kube-system/coredns-1 (Deployment other, not a DaemonSet): a kube-system pod without a "
                          "PodDisruptionBudget, which cluster-autoscaler does not evict by default")],
                 id="kube-system-without-pdb"),
    pytest.param(Sight(plain_node(), []), Surroundings(), [
        ("no-autoscaler", "no node autoscaler manages it, so nothing removes it")], id="no-autoscaler"),
    pytest.param(Sight(plain_node(), []), Surroundings(nodepools=POOLS), [
        ("no-autoscaler", "no node autoscaler manages it (Karpenter runs, but no NodeClaim owns it), so nothing "
                          "removes it")], id="karpenter-runs-but-not-for-this-node"),
])
def test_cluster_autoscaler_and_unmanaged_nodes(sight, around, expected):
    assert texts(run(sight, around)) == expected


@pytest.mark.parametrize(("pdb", "blocks"), [
    pytest.param({"spec": {"selector": {"matchLabels": {"app": "other"}}}, "status": {"disruptionsAllowed": 0}},
                 True, id="matching-none-allowed"),
    pytest.param({"spec": {"selector": {"matchLabels": {"app": "other"}}}, "status": {"disruptionsAllowed": 1}},
                 False, id="one-allowed"),
    pytest.param({"spec": {"selector": {}}, "status": {}}, True, id="empty-selector-selects-every-pod"),
    pytest.param({"spec": {"selector": None}, "status": {}}, False, id="null-selector-selects-none"),
    pytest.param({"spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["x"]}]}},
                  "status": {}}, False, id="not-matching"),
])
def test_a_pdb_blocks_only_when_it_selects_the_pod_and_allows_no_eviction(pdb, blocks):
    pdb = {"metadata": {"name": "guard", "namespace": "rec"}, **pdb}
    found = run(Sight(NODE, [pod("other-abc")]), Surroundings(nodepools=POOLS, pdbs={"rec": [pdb]}))
    assert ("pdb" in [kind for kind, _ in texts(found)]) is blocks


def test_owners_are_named_as_people_know_them():
    assert owner_text(HELD_POD) == "Deployment held"
    assert owner_text(DAEMONSET_POD) == "DaemonSet dcgm-exporter"
    assert owner_text(pod("x", owner=("ReplicaSet", "hand-made"), template_hash=None)) == "ReplicaSet hand-made"
    assert owner_text(pod("x", owner=None)) == "no controller"


def test_the_status_configmap_in_both_formats_and_garbage():
    assert [(g.name, g.min_size, g.max_size, g.target) for g in CA.groups] == [
        ("gpu-a100", 2, 10, 2), ("cpu", 1, 5, 3)]
    text = autoscalers.read_autoscaler_status(CA_TEXT)
    assert [(g.name.rsplit("/", 1)[-1], g.min_size, g.max_size, g.target, g.at_minimum) for g in text.groups] == [
        ("gpu-a100", 1, 5, 1, True), ("cpu-pool", 0, 5, 2, False)]
    for broken in ({}, {"data": {"status": "autoscalerStatus: [unclosed"}}, {"data": {"status": "nodeGroups: 3"}}):
        assert autoscalers.read_autoscaler_status(broken).groups == ()


def test_the_gauge_counts_each_held_nodes_gpus_once_under_its_first_blocker():
    totals = freed_not_released([("do-not-disrupt", 3), ("pod", 2), ("do-not-disrupt", 1), (None, 4)])
    assert set(totals) == set(KINDS)
    assert (totals["do-not-disrupt"], totals["pod"], totals["waiting"], sum(totals.values())) == (4, 2, 4, 10)
