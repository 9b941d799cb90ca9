"""Where a paused workload's node is now, and what keeps it: the one function
`assess`, table-tested on canned objects (tests/unit/test_blockers.py).

A node is **released** once it is gone (no Node object); **reused** when
pods of other workloads bound there after the pause took GPUs the pause
freed (more GPUs in use than the node had beside them: the GPUs work for
someone else); else **held**, with what holds it in words, most
specific first:

- `do-not-disrupt`: `karpenter.sh/do-not-disrupt` on a pod (even a DaemonSet's,
  on a Karpenter node; not on a cluster-autoscaler node) or the node;
- `scale-down-disabled`: `cluster-autoscaler.kubernetes.io/scale-down-disabled` on the node;
- `safe-to-evict`: `cluster-autoscaler.kubernetes.io/safe-to-evict: "false"` on a pod
  (not on a Karpenter node);
- `pdb`: a PodDisruptionBudget that allows no eviction of a pod on it;
- `pod`: another workload's pod still on it (DaemonSet and mirror pods do
  not keep a node: both autoscalers ignore them);
- `nodepool`: its Karpenter NodePool's budget, consolidateAfter or policy;
- `node-group-minimum`: its cluster-autoscaler node group is at its minimum;
- `karpenter`: only Karpenter's own Event says why (DisruptionBlocked, Unconsolidatable);
- `no-autoscaler`: no node autoscaler manages it, so nothing will remove it;
- `waiting`: nothing found blocking it; the autoscaler has not removed it yet.

Pure: reads dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from scaler.cluster import autoscalers as a
from scaler.cluster.kinds.base import gpus_in_pod_spec, label_selector
from scaler.cluster.nodes import HELD, MAX_BLOCKERS, MAX_TEXT, RELEASED, REUSED, Assessment, Blocker, NodeFacts
from scaler.decide.selectors import Selector, SelectorError
from scaler.decide.times import parse_time

#: How long Karpenter's DisruptionBlocked word is taken as current (it is
#: deduplicated per node for two minutes, then said again: docs/karpenter.md).
KARPENTER_WORD_SECONDS = 300.0
KINDS = ("do-not-disrupt", "scale-down-disabled", "safe-to-evict", "pdb", "pod", "nodepool", "node-group-minimum",
         "karpenter", "no-autoscaler", "waiting")


@dataclass(frozen=True)
class Surroundings:
    """What the follower reads once per pass, for every node."""

    #: NodePools by name; None: Karpenter's CRDs are not installed.
    nodepools: Mapping[str, Mapping] | None = None
    #: cluster-autoscaler's status; None: it has none (not installed, or elsewhere).
    autoscaler: a.AutoscalerStatus | None = None
    #: PodDisruptionBudgets by namespace (of the namespaces of the pods read).
    pdbs: Mapping[str, list[dict]] = field(default_factory=dict)


@dataclass(frozen=True)
class Sight:
    """One node as read in a pass: its object (None: gone), the pods bound to
    it, and the Events about it; `gone_at`, for a gone node, the best known
    time it went (for a node of the same name as one recorded with another
    uid, the time that one went)."""

    node: Mapping | None
    pods: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    gone_at: datetime | None = None


def _meta(obj: Mapping) -> Mapping:
    return obj.get("metadata") or {}


def pod_name(pod: Mapping) -> str:
    return f"{_meta(pod).get('namespace', '')}/{_meta(pod).get('name', '')}"


def _controller(pod: Mapping) -> Mapping | None:
    refs = _meta(pod).get("ownerReferences") or []
    return next((ref for ref in refs if ref.get("controller")), refs[0] if refs else None)


def owner_text(pod: Mapping) -> str:
    """`Deployment chat`, `StatefulSet db`, `DaemonSet dcgm-exporter`, `no controller`."""
    ref = _controller(pod)
    if ref is None:
        return "no controller"
    kind, name = ref.get("kind", "?"), ref.get("name", "?")
    template = (_meta(pod).get("labels") or {}).get("pod-template-hash")
    if kind == "ReplicaSet" and template and name.endswith("-" + template):
        return f"Deployment {name[:-len(template) - 1]}"
    return f"{kind} {name}"


def scheduled_at(pod: Mapping) -> datetime | None:
    """When the pod was bound to its node: its PodScheduled condition, else
    its start, else its creation (a pod pending since before the pause that
    lands on the freed GPUs after it reuses them)."""
    for found in (pod.get("status") or {}).get("conditions") or []:
        if found.get("type") == "PodScheduled" and found.get("status") == "True":
            when = parse_time(found.get("lastTransitionTime"))
            if when is not None:
                return when
    return parse_time((pod.get("status") or {}).get("startTime")) or parse_time(_meta(pod).get("creationTimestamp"))


def _daemon_or_static(pod: Mapping) -> bool:
    ref = _controller(pod)
    return (ref is not None and ref.get("kind") in ("DaemonSet", "Node")) or \
        "kubernetes.io/config.mirror" in (_meta(pod).get("annotations") or {})


def _inactive(pod: Mapping) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") or bool(
        _meta(pod).get("deletionTimestamp"))


def ignored(pod: Mapping) -> bool:
    """Pods no autoscaler waits for: DaemonSet pods, mirror (static) pods,
    finished pods, and pods already being deleted (but see `_daemon_holds`)."""
    return _daemon_or_static(pod) or _inactive(pod)


def described(pod: Mapping) -> str:
    """`pod ml/x (Deployment x, not a DaemonSet)`, `pod mon/dcgm-1 (DaemonSet dcgm)`."""
    ref = _controller(pod)
    if _daemon_or_static(pod):
        kind = "DaemonSet " + str(ref.get("name", "?")) if ref and ref.get("kind") == "DaemonSet" else "static pod"
        return f"pod {pod_name(pod)} ({kind})"
    return f"pod {pod_name(pod)} ({owner_text(pod)}, not a DaemonSet)"


def _daemon_holds(pods: Iterable[Mapping], *, now: datetime) -> list[Blocker]:
    """Karpenter v1 lets a running DaemonSet or static pod hold its node with
    `karpenter.sh/do-not-disrupt` (statenode.go: "we will allow Mirror Pods
    and DaemonSets to block disruption using this annotation"), though it
    waits for such pods for nothing else."""
    return [Blocker("do-not-disrupt", f"{described(pod)} {held}") for pod in pods
            if _daemon_or_static(pod) and not _inactive(pod) and (held := a.do_not_disrupt(pod, now=now))]


def _matches(pdb: Mapping, pod: Mapping) -> bool:
    selector = (pdb.get("spec") or {}).get("selector")
    if not isinstance(selector, dict):
        return False  # policy/v1: a null selector selects no pod, an empty one every pod
    try:
        return Selector.parse(label_selector(selector) or "").matches(_meta(pod).get("labels") or {})
    except SelectorError:
        return False


def _pod_blockers(pod: Mapping, around: Surroundings, *, karpenter: bool, ca_seen: bool,
                  now: datetime) -> list[Blocker]:
    """What one pod that is not the workload's own does to its node. Each
    autoscaler's pod annotation counts on its own nodes only: Karpenter
    reads no `safe-to-evict`, cluster-autoscaler no `do-not-disrupt` (on a
    node neither manages, both are named)."""
    name, annotations, text = pod_name(pod), _meta(pod).get("annotations") or {}, described(pod)
    found = []
    if not ca_seen and (held := a.do_not_disrupt(pod, now=now)):
        found.append(Blocker("do-not-disrupt", f"{text} {held}"))
    elif not karpenter and annotations.get(a.SAFE_TO_EVICT) == "false":
        found.append(Blocker("safe-to-evict", f'{text} has {a.SAFE_TO_EVICT}: "false"'))
    else:
        why = _ca_refuses(pod, around) if ca_seen and annotations.get(a.SAFE_TO_EVICT) != "true" else None
        found.append(Blocker("pod", f"{text}{f': {why}' if why else ''}"))
    namespace = _meta(pod).get("namespace", "")
    for pdb in around.pdbs.get(namespace, []):
        status = pdb.get("status") or {}
        if _matches(pdb, pod) and not status.get("disruptionsAllowed"):
            found.append(Blocker("pdb", f"PodDisruptionBudget {namespace}/{_meta(pdb).get('name')} allows no "
                                        f"eviction of pod {name} ({status.get('currentHealthy', '?')} healthy, "
                                        f"{status.get('desiredHealthy', '?')} needed)"))
    return found


def _ca_refuses(pod: Mapping, around: Surroundings) -> str | None:
    """cluster-autoscaler's default refusals to evict (its --skip-nodes-with-* flags)."""
    if _controller(pod) is None:
        return "not managed by a controller, which cluster-autoscaler does not evict"
    volumes = (pod.get("spec") or {}).get("volumes") or []
    if any("emptyDir" in v or "hostPath" in v for v in volumes):
        return "local storage (emptyDir or hostPath), which cluster-autoscaler does not evict by default"
    namespace = _meta(pod).get("namespace", "")
    if namespace == "kube-system" and not any(_matches(pdb, pod) for pdb in around.pdbs.get(namespace, [])):
        return "a kube-system pod without a PodDisruptionBudget, which cluster-autoscaler does not evict by default"
    return None


def _node_blockers(node: Mapping, sight: Sight, around: Surroundings, *, empty: bool, since: datetime,
                   now: datetime) -> list[Blocker]:
    annotations = _meta(node).get("annotations") or {}
    found = []
    if annotations.get(a.DO_NOT_DISRUPT) == "true":
        found.append(Blocker("do-not-disrupt", f"the node has {a.DO_NOT_DISRUPT}"))
    if annotations.get(a.SCALE_DOWN_DISABLED) == "true":
        found.append(Blocker("scale-down-disabled", f"the node has {a.SCALE_DOWN_DISABLED}"))
    if a.karpenter_managed(node):
        pool_name = (_meta(node).get("labels") or {}).get(a.NODEPOOL_LABEL)
        pool = (around.nodepools or {}).get(pool_name or "")
        found += [Blocker("nodepool", text) for text in (a.nodepool_holds(pool, empty=empty, now=now) if pool else [])]
        said = a.karpenter_says(sight.events, since=since)
        if said:
            found.append(Blocker("karpenter", f"Karpenter: {said}"))
    elif around.autoscaler is not None:
        group = around.autoscaler.group_of(node)
        if group is not None and group.at_minimum:
            found.append(Blocker("node-group-minimum", f"cluster-autoscaler node group {group.name} is at its "
                                                       f"minimum size ({group.min_size})"))
    else:
        karpenter = " (Karpenter runs, but no NodeClaim owns it)" if around.nodepools is not None else ""
        found.append(Blocker("no-autoscaler", f"no node autoscaler manages it{karpenter}, so nothing removes it"))
    return found


def _waiting(node: Mapping, own_pods: int, around: Surroundings) -> Blocker:
    removal = a.being_removed(node)
    if removal:
        return Blocker("waiting", removal)
    if own_pods:
        return Blocker("waiting", f"{own_pods} of its own pods still terminating")
    if a.karpenter_managed(node):
        pool_name = (_meta(node).get("labels") or {}).get(a.NODEPOOL_LABEL) or "?"
        pool = (around.nodepools or {}).get(pool_name) or {}
        after = ((pool.get("spec") or {}).get("disruption") or {}).get("consolidateAfter")
        return Blocker("waiting", f"nothing found blocking it; waiting for Karpenter to consolidate it (NodePool "
                                  f"{pool_name}{f', consolidateAfter {after}' if after else ''})")
    return Blocker("waiting", "nothing found blocking it; waiting for cluster-autoscaler to remove it "
                              "(after --scale-down-unneeded-time, 10m by default)")


def _taker(pods: Iterable[Mapping], *, paused_at: datetime, spare_gpus: int,
           gpu_resources: tuple[str, ...]) -> str | None:
    """The pod that took GPUs the pause freed, if one did: other pods on the
    node hold more GPUs than it had beside the freed ones (`spare_gpus`: the
    node's GPUs less those freed), counting the pods bound after the pause
    last, in the order they were bound; the one that tips it over is the
    taker. So a pod that fits in GPUs that were idle before the pause, or
    replaces a pod that held GPUs there before it (a rollout, an eviction),
    takes nothing. A DaemonSet or static pod holds GPUs but is no taker."""
    held = [(scheduled_at(pod), gpus, pod) for pod in pods
            if (gpus := gpus_in_pod_spec(pod.get("spec") or {}, gpu_resources))]
    in_use = sum(gpus for when, gpus, _ in held if when is None or when <= paused_at)
    for _, gpus, pod in sorted(((when, gpus, pod) for when, gpus, pod in held if when is not None and when > paused_at),
                               key=lambda item: item[0]):
        in_use += gpus
        if in_use > spare_gpus and not _daemon_or_static(pod):
            return pod_name(pod)
    return None


def assess(sight: Sight, *, ours: Callable[[Mapping], bool], paused_at: datetime, freed_gpus: int,
           around: Surroundings, gpu_resources: tuple[str, ...], now: datetime, uid: str | None = None) -> Assessment:
    """Where one node of a paused workload is: released, reused or held (and
    by what). `freed_gpus`: the GPUs the workload's pods held there at the
    pause; `uid`: the node's uid then, if known (a node of the same name with
    another uid is a new machine: the recorded one is gone)."""
    node = sight.node
    found_uid = _meta(node).get("uid") if node is not None else None
    if node is None or (uid and found_uid and found_uid != uid):
        return Assessment(RELEASED, released_at=min(sight.gone_at or now, now))
    facts = NodeFacts.of(node, gpu_resources)
    own = [pod for pod in sight.pods if ours(pod) and (pod.get("status") or {}).get("phase") not in
           ("Succeeded", "Failed")]
    others = [pod for pod in sight.pods if not ours(pod) and not ignored(pod)]
    taker = _taker([pod for pod in sight.pods if not ours(pod) and not _inactive(pod)], paused_at=paused_at,
                   spare_gpus=facts.gpus - freed_gpus if facts.gpus >= freed_gpus else 0,
                   gpu_resources=gpu_resources)
    if taker is not None:
        return Assessment(REUSED, facts=facts, reused_by=taker, uid=found_uid)
    karpenter = a.karpenter_managed(node)
    ca_seen = around.autoscaler is not None and not karpenter
    found = [b for pod in others for b in _pod_blockers(pod, around, karpenter=karpenter, ca_seen=ca_seen, now=now)]
    if karpenter:
        found += _daemon_holds((pod for pod in sight.pods if not ours(pod)), now=now)
    # Karpenter says it again every two minutes or so while the hold lasts:
    # an older word is stale (the hold may have ended).
    said_since = max(paused_at, now - timedelta(seconds=KARPENTER_WORD_SECONDS))
    found += _node_blockers(node, sight, around, empty=not others, since=said_since, now=now)
    found.sort(key=lambda blocker: KINDS.index(blocker.kind))
    if not found or a.being_removed(node):
        found.insert(0, _waiting(node, len(own), around))
    return Assessment(HELD, tuple(Blocker(b.kind, b.text[:MAX_TEXT]) for b in found[:MAX_BLOCKERS]), facts,
                      uid=found_uid)


def freed_not_released(records: Iterable[tuple[str | None, int]]) -> dict[str, int]:
    """GPUs by blocker kind, from (blocked_by, freed GPUs) of held nodes: the gauge's values."""
    totals = dict.fromkeys(KINDS, 0)
    for kind, gpus in records:
        totals[kind if kind in totals else "waiting"] += gpus
    return totals
