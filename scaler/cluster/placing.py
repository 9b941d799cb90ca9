"""Where a workload's pods run, read for its pause, and the nodes they run on.

A pause records the nodes its pods ran on (cluster/nodes.py) in its own
patch, so the pods are read before it: one LIST per namespace, kept a few
seconds (as the KEDA ScaledObjects are in pausing.py), so a window edge that
pauses a thousand workloads lists each namespace about once, never once per
workload. The daemon also keeps every Node in a watch cache (slimmed to what
following reads); a pause takes each node's facts from it without a request,
and the node follower (run/following.py) reads nodes there.

Reading never stops a pause: pods that cannot be read (no RBAC, an error)
mean no record, and the pause goes on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime

import structlog

from scaler.cluster.informers import Informer
from scaler.cluster.kube import Kube, KubeError, Resource
from scaler.cluster.nodes import NodeFacts, gpus_by_node, record_at_pause
from scaler.cluster.views import PODS
from scaler.cluster.workloads import Workload
from scaler.decide.selectors import Selector, SelectorError
from scaler.decide.times import parse_time, utc_now

log = structlog.get_logger("scaler")
NODES = Resource("", "v1", "nodes", namespaced=False)
#: How long a watched deletion is remembered (the follower asks within a pass interval).
GONE_KEPT_SECONDS = 3600.0


def slim_node(node: dict) -> dict:
    """What following reads of a Node: its names, labels, annotations, owner
    (a NodeClaim), deletion, provider ID, taints and allocatable resources."""
    meta, spec = node.get("metadata") or {}, node.get("spec") or {}
    return {
        "metadata": {key: meta[key] for key in ("name", "uid", "resourceVersion", "creationTimestamp",
                                                "deletionTimestamp", "labels", "annotations", "ownerReferences")
                     if key in meta},
        "spec": {key: spec[key] for key in ("providerID", "taints", "unschedulable") if key in spec},
        "status": {"allocatable": (node.get("status") or {}).get("allocatable") or {},
                   "conditions": [c for c in (node.get("status") or {}).get("conditions") or []
                                  if c.get("type") == "Ready"]},
    }


def slim_pod(pod: dict) -> dict:
    """What a pause reads of a pod: its labels, node, GPUs and phase."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    containers = [{"resources": c.get("resources") or {}} for c in spec.get("containers") or []]
    init = [{"resources": c.get("resources") or {}} for c in spec.get("initContainers") or []]
    return {"metadata": {"name": meta.get("name"), "labels": meta.get("labels") or {}},
            "spec": {"nodeName": spec.get("nodeName"), "containers": containers, "initContainers": init},
            "status": {"phase": (pod.get("status") or {}).get("phase")}}


class Placement:
    """Pods by namespace (a short-lived cache) and nodes (a watch cache, once
    `watch_nodes` has started it); safe to share between threads."""

    def __init__(self, kube: Kube, *, cache_seconds: float = 5.0, refresh_seconds: float = 1.0) -> None:
        """`refresh_seconds`: a workload with Ready replicas but none of its
        pods in a list older than this lists its namespace again (its pods
        came after the list), at most once per this long."""
        self.kube = kube
        self.cache_seconds = cache_seconds
        self.refresh_seconds = refresh_seconds
        self._pods: dict[str, tuple[float, list[dict]]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.nodes: Informer | None = None
        self._gone: dict[str, datetime] = {}  # node name -> when its deletion was watched

    def watch_nodes(self, *, on_synced: Callable[[], None] | None = None) -> Informer:
        if self.nodes is None:
            self.nodes = Informer(self.kube, NODES, slim=slim_node, on_synced=on_synced,
                                  on_deleted=self._deleted).start()
        return self.nodes

    def _deleted(self, node: dict) -> None:
        now = utc_now()
        with self._lock:
            for name in [name for name, at in self._gone.items() if (now - at).total_seconds() > GONE_KEPT_SECONDS]:
                del self._gone[name]
            self._gone[(node.get("metadata") or {}).get("name", "")] = now

    def gone_at(self, name: str) -> datetime | None:
        """When this process watched the node's deletion (None: it did not)."""
        with self._lock:
            return self._gone.get(name)

    def stop(self, *, timeout_seconds: float = 5) -> None:
        if self.nodes is not None:
            self.nodes.stop(timeout_seconds=timeout_seconds)

    def node(self, name: str) -> dict | None:
        """The Node from the watch cache (None: gone, or no cache)."""
        return self.nodes.get("", name) if self.nodes is not None else None

    def nodes_listed(self) -> bool:
        """The watch cache has listed the nodes: a node missing from it is gone."""
        return self.nodes is not None and self.nodes.synced.is_set() and not self.nodes.missing

    def pods(self, namespace: str, *, older_than_seconds: float | None = None) -> list[dict]:
        """The namespace's pods, listed at most once per `cache_seconds` (or,
        with `older_than_seconds`, again if the list is older than that)."""
        fresh_seconds = self.cache_seconds if older_than_seconds is None else older_than_seconds
        with self._lock:
            lock = self._locks.setdefault(namespace, threading.Lock())
            now = time.monotonic()
            for stale in [ns for ns, (at, _) in self._pods.items() if now - at > self.cache_seconds]:
                del self._pods[stale]  # a batch's namespaces are not kept past it
        with lock:  # one LIST per namespace at a time; the others wait for it
            cached = self._pods.get(namespace)
            if cached is None or time.monotonic() - cached[0] > fresh_seconds:
                items, _ = self.kube.list(PODS, namespace)
                cached = (time.monotonic(), [slim_pod(pod) for pod in items])
                with self._lock:
                    self._pods[namespace] = cached
        return cached[1]

    def nodes_ready_since(self, workload: Workload, *, started: datetime) -> datetime | None:
        """When the last node created since `started` that `workload`'s pods
        run on became Ready (its Ready condition, else its creation): what a
        start waited for nodes. None: none was new, or nodes are not watched."""
        selector_text = workload.kind.pod_selector(workload.obj)
        if self.nodes is None or not selector_text:
            return None
        try:
            selector = Selector.parse(selector_text)
            pods = self.pods(workload.namespace, older_than_seconds=self.refresh_seconds)
        except (SelectorError, KubeError):
            return None
        times = []
        for name in {p["spec"]["nodeName"] for p in pods if p["spec"].get("nodeName")
                     and selector.matches(p["metadata"]["labels"])}:
            node = self.node(name) or {}
            created = parse_time((node.get("metadata") or {}).get("creationTimestamp"))
            if created is None or created < started:
                continue
            ready = next((c for c in (node.get("status") or {}).get("conditions") or []
                          if c.get("status") == "True"), None)
            times.append(parse_time((ready or {}).get("lastTransitionTime")) or created)
        return max(times, default=None)

    def record(self, workload: Workload, *, now: datetime) -> str | None:
        """The `scaler.io/nodes` value for pausing `workload` now: the nodes
        its pods run on and the GPUs they hold on each, or None (it holds no
        GPUs, its kind names no pod selector, or its pods cannot be read)."""
        selector_text = workload.kind.pod_selector(workload.obj)
        if not selector_text or workload.gpus_per_replica() == 0:
            return None
        try:
            selector = Selector.parse(selector_text)
            ours = [pod for pod in self.pods(workload.namespace) if selector.matches(pod["metadata"]["labels"])]
            if not ours and workload.ready_replicas:  # its pods came after the list
                ours = [pod for pod in self.pods(workload.namespace, older_than_seconds=self.refresh_seconds)
                        if selector.matches(pod["metadata"]["labels"])]
        except (SelectorError, KubeError) as error:
            log.info("pods unreadable: the pause records no nodes", namespace=workload.namespace,
                     workload=workload.name, error=str(error))
            return None
        held = gpus_by_node(ours, workload.gpu_resources)
        if not held:
            return None
        nodes = {name: node for name in held if (node := self.node(name)) is not None}
        facts = {name: NodeFacts.of(node, workload.gpu_resources) for name, node in nodes.items()}
        uids = {name: uid for name, node in nodes.items() if (uid := (node.get("metadata") or {}).get("uid"))}
        return record_at_pause(held, facts=facts, now=now, uids=uids).annotation()
