"""The node follower: a daemon job that follows every pause to the nodes
that held its GPUs, until each is released (gone) or reused, and says what
holds the others (cluster/blockers.py).

Its requests grow with the nodes followed, not with the workloads: the
nodes come from a watch cache (cluster/placing.py); per pass, for each
followed node still there one pod LIST (fieldSelector spec.nodeName) and,
for a Karpenter node, one Event LIST (fieldSelector on the node); for a node
that went, one Event LIST to date its going; PodDisruptionBudgets once per
namespace of the pods found; NodePools once (while Karpenter's CRDs exist);
cluster-autoscaler's status ConfigMap once. It reads only: it never evicts
or deletes. What it learns goes on each workload's record through the
Pauser, fenced like every write (only the Lease holder, in its term), with
its Event recorded in the same patch (exactly once across kills and
failovers). A standby does nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime

import structlog
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.interval import IntervalTrigger

from scaler.cluster import autoscalers, releases
from scaler.cluster.actions import EVENTS
from scaler.cluster.blockers import Sight, Surroundings, assess, freed_not_released, ignored
from scaler.cluster.kinds import WorkloadKind
from scaler.cluster.kube import Denied, Fenced, Kube, KubeError, NotFound, Resource
from scaler.cluster.nodes import HELD, NodeRecord, NodesRecord
from scaler.cluster.pausing import Pauser
from scaler.cluster.placing import NODES, Placement
from scaler.cluster.views import PODS, ClusterView
from scaler.cluster.workloads import Workload
from scaler.cluster.writes import Outcome, Result
from scaler.decide.annotations import NODES as NODES_ANNOTATION
from scaler.decide.selectors import Selector, SelectorError
from scaler.decide.times import utc_now
from scaler.run.saving import Pricer, SavingsCollector, sharing
from scaler.run.settings import Settings

log = structlog.get_logger("scaler")
NODEPOOLS = Resource("karpenter.sh", "v1", "nodepools", namespaced=False)
PDBS = Resource("policy", "v1", "poddisruptionbudgets")
CONFIGMAPS = Resource("", "v1", "configmaps")
#: Events that say a node went (the node controller's, after the Node is
#: deleted; Karpenter's, as it removes its finalizer): a node that went while
#: no follower looked (a failover) is dated by them.
GONE_REASONS = ("RemovingNode", "Finalized", "DeletingNode")


@dataclass(frozen=True)
class Followed:
    workload: Workload
    record: NodesRecord


class Follower:
    """Follows the paused workloads' nodes, one pass at a time (`follow`)."""

    def __init__(self, kube: Kube, settings: Settings, *, placement: Placement, pauser: Pauser, view: ClusterView,
                 kinds: Callable[[], Sequence[WorkloadKind]], may_act: Callable[[int], bool],
                 term: Callable[[], int] = lambda: 0, metrics=None,
                 claimed: Callable[[tuple[str, str, str]], AbstractContextManager[bool]] = lambda _: nullcontext(True),
                 first: Callable[[int], None] = lambda term: None) -> None:
        """`may_act(term)`: whether this replica may still write for leadership
        term `term`; `term()`: the term now. `claimed(key)`: whether this pass
        may write the workload now (the actor's: one write per workload at a
        time, and shutdown waits for it before handing the Lease back).
        `first(term)`: what a pass does before it writes (the daemon posts the
        Events its predecessor owed: a node record's Event would replace the
        record an owed one is found by)."""
        self.kube = kube
        self.settings = settings
        self.placement = placement
        self.pauser = pauser
        self.view = view
        self.kinds = kinds
        self.may_act = may_act
        self.term = term
        self.claimed = claimed
        self.first = first
        self.warn_after_seconds = settings.node_held_warning_seconds
        self.autoscaler_status = settings.cluster_autoscaler_status.partition("/")[::2]
        self.excluded = settings.all_excluded_namespaces
        self.metrics = metrics
        #: When each followed node was last seen present, by this process.
        self._seen: dict[str, datetime] = {}
        self._unreadable: str | None = None  # why nodes cannot be followed, once said
        self.enabled = bool(settings.node_follow_interval_seconds) and not settings.dry_run
        #: A released node's price and credited GPUs go on its record (run/saving.py).
        self.pricer = Pricer(settings.prometheus(), settings.prices())
        if metrics is not None:
            metrics.registry.register(SavingsCollector(view=view, kinds=kinds, leading=lambda: may_act(term()),
                                                       prices=self.pricer.prices))

    def schedule(self, scheduler: BaseScheduler, job: Callable[[Callable[[], None]], Callable[[], None]]) -> None:
        """Start following on `scheduler`, every node-follow interval, as
        `job(run)` (the daemon counts running jobs so shutdown waits for them)."""
        if not self.enabled:
            return
        self.start()
        if self.enabled:
            scheduler.add_job(job(self._pass), IntervalTrigger(seconds=self.settings.node_follow_interval_seconds),
                              id="follow")

    def _pass(self) -> None:
        term = self.term()
        self.first(term)
        self.follow(now=utc_now(), term=term)

    def stop(self, *, timeout_seconds: float = 5) -> None:
        self.placement.stop(timeout_seconds=timeout_seconds)

    def start(self) -> None:
        """Watch the nodes, unless this replica may not read them (then say
        so once: following is off, everything else goes on)."""
        try:
            self.kube.request("list", "GET", NODES.path(), resource_text="nodes", query={"limit": 1})
        except Denied as error:
            self.enabled = False
            log.error("cannot read nodes: paused workloads are not followed to their nodes (grant nodes list "
                      "and watch: docs/nodes.md)", error=str(error))
            return
        except KubeError:
            pass  # not reachable yet: the watch cache retries
        self.placement.watch_nodes()

    def follow(self, *, now: datetime, term: int) -> list[Result]:
        """One pass: every paused workload whose nodes are not all released or
        reused, its nodes assessed and its record brought up to date."""
        if not self.enabled or not self.may_act(term):
            self._publish([])
            return []
        followed = self._followed()
        if not followed or not self.placement.nodes_listed():
            self._publish([f.record for f in followed])
            return []
        try:
            sights = self._sights(followed, now=now)
            around = self._surroundings(sights)
        except KubeError as error:
            if str(error) != self._unreadable:
                log.error("nodes of paused workloads not followed in this pass", error=str(error))
            self._unreadable = str(error)
            return []
        self._unreadable = None
        results, records = [], []
        on_release = self.pricer.on_release(sharing(item.record for item in followed))
        for item in followed:
            result, record = self._advance(item, sights, around, now=now, term=term, on_release=on_release)
            results += [result] if result is not None else []
            records.append(record)
        self._publish(records)
        return results

    def _followed(self) -> list[Followed]:
        found = []
        for workload in self.view.workloads(self.kinds()):
            record = NodesRecord.read(workload.annotations, NODES_ANNOTATION)
            if workload.replicas == 0 and record is not None and not record.done \
                    and workload.namespace not in self.excluded:
                found.append(Followed(workload, record))
        return found

    def _sights(self, followed: list[Followed], *, now: datetime) -> dict[str, Sight]:
        uids: dict[str, set[str]] = {}  # the uids recorded for each name: another one there now is a new machine
        for node_record in (node for item in followed for node in item.record.nodes if not node.done):
            uids.setdefault(node_record.name, set()).update([node_record.uid] if node_record.uid else [])
        sights = {}
        for name in sorted(uids):
            node = self.placement.node(name)
            if node is None:
                sights[name] = Sight(None, gone_at=self._gone_at(name, now=now))
                self._seen.pop(name, None)
                continue
            uid = (node.get("metadata") or {}).get("uid")
            replaced_at = self._gone_at(name, now=now) if uid and uids[name] - {uid} else None
            self._seen[name] = now
            pods, _ = self.kube.list(PODS, None, field_selector=f"spec.nodeName={name}")
            events = self._node_events(name) if autoscalers.karpenter_managed(node) else []
            sights[name] = Sight(node, pods, events, gone_at=replaced_at)
        for name in [name for name in self._seen if name not in sights]:
            del self._seen[name]  # not followed any more
        return sights

    def _node_events(self, name: str) -> list[dict]:
        selector = f"involvedObject.kind=Node,involvedObject.name={name}"
        return self.kube.list(EVENTS, "default", field_selector=selector)[0]

    def _gone_at(self, name: str, *, now: datetime) -> datetime:
        """When the node went: when the watch reported its deletion; else (it
        went while another replica led, or before this one watched) the
        latest Event saying so after it was last seen here; else now."""
        watched = self.placement.gone_at(name)
        if watched is not None:
            return watched
        seen = self._seen.get(name)
        try:
            events = [e for e in self._node_events(name) if e.get("reason") in GONE_REASONS]
        except KubeError:
            return now
        times = [when for e in events if (when := autoscalers.event_time(e)) is not None
                 and when <= now and (seen is None or when > seen)]
        return max(times, default=now)

    def _surroundings(self, sights: Mapping[str, Sight]) -> Surroundings:
        present = [sight for sight in sights.values() if sight.node is not None]
        if not present:
            return Surroundings()
        namespaces = {pod["metadata"].get("namespace", "") for sight in present for pod in sight.pods
                      if not ignored(pod)}
        pdbs = {namespace: self.kube.list(PDBS, namespace)[0] for namespace in sorted(namespaces)}
        try:
            pools: dict | None = {p["metadata"]["name"]: p for p in self.kube.list(NODEPOOLS)[0]}
        except NotFound:
            pools = None  # no Karpenter CRDs
        status = None
        if any(not autoscalers.karpenter_managed(sight.node) for sight in present if sight.node is not None):
            namespace, name = self.autoscaler_status
            try:
                status = autoscalers.read_autoscaler_status(self.kube.get(CONFIGMAPS, namespace, name))
            except (NotFound, Denied):
                pass  # no cluster-autoscaler there (or not ours to read)
        return Surroundings(pools, status, pdbs)

    def _advance(self, item: Followed, sights: Mapping[str, Sight], around: Surroundings, *, now: datetime,
                 term: int, on_release: Callable[[NodeRecord], NodeRecord]) -> tuple[Result | None, NodesRecord]:
        workload, record = item.workload, item.record
        ours = _ours(workload)
        paused_at = record.paused_at_datetime() or now
        assessments = {node.name: assess(sights[node.name], ours=ours, paused_at=paused_at, freed_gpus=node.freed_gpus,
                                         around=around, gpu_resources=workload.gpu_resources, now=now, uid=node.uid)
                       for node in record.nodes if not node.done and node.name in sights}
        steps: list[releases.Step] = []

        def write_for(current: Workload):
            write, step = releases.follow(current, assessments, paused_at=record.paused_at, now=now,
                                          warn_after_seconds=self.warn_after_seconds, on_release=on_release)
            steps[:] = [step] if step is not None else []
            return write

        def fence(current: Workload) -> None:
            if not self.may_act(term):
                raise Fenced("not the leader any more, or stopping")

        try:
            with self.claimed(workload.key) as mine:
                if not mine:
                    return None, record  # another pass writes it now; the next follow sees the outcome
                result = self.pauser.apply(workload, write_for, dry_run=False, fence=fence)
        except (Fenced, KubeError) as error:
            log.info("node record not written", namespace=workload.namespace, workload=workload.name,
                     error=str(error))
            return None, record
        self.view.took(result, workload)
        step = steps[0] if steps else None
        if step is None:
            return result, record
        if result.outcome is Outcome.CHANGED:
            self._report(workload, step)
        return result, step.record

    def _report(self, workload: Workload, step: releases.Step) -> None:
        for node in step.released:
            if self.metrics is not None and node.released_after_seconds is not None:
                self.metrics.node_release_seconds.observe(node.released_after_seconds)
            log.info("node released", namespace=workload.namespace, workload=workload.name, kind=workload.kind.name,
                     node=node.name, seconds_after_pause=node.released_after_seconds,
                     gpus=node.facts.gpus if node.facts else None)
        if step.event is not None and step.event[1] == "Warning":
            log.warning("nodes held", namespace=workload.namespace, workload=workload.name, kind=workload.kind.name,
                        reason=step.event[2])

    def _publish(self, records: Sequence[NodesRecord]) -> None:
        if self.metrics is None:
            return
        totals = freed_not_released((node.blocked_by, node.freed_gpus) for record in records
                                    for node in record.nodes if node.state == HELD and node.checked)
        for kind, gpus in totals.items():
            self.metrics.gpus_freed_not_released.labels(kind).set(gpus)


def _ours(workload: Workload) -> Callable[[Mapping], bool]:
    """Whether a pod is one of `workload`'s own (its namespace, its kind's pod selector)."""
    try:
        selector = Selector.parse(workload.kind.pod_selector(workload.obj) or "")
    except SelectorError:
        return lambda pod: False
    if not selector:
        return lambda pod: False
    return lambda pod: ((pod.get("metadata") or {}).get("namespace") == workload.namespace
                        and selector.matches((pod.get("metadata") or {}).get("labels") or {}))

