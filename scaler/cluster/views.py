"""What an evaluation reads from the cluster: the workloads of some kinds and
the labels of their namespaces, either listed once (`plan`) or kept current
by list+watch caches (the daemon). A workload its kind says has finished (a
completed Job) is not among them: nothing decides, tracks or counts it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import structlog

from scaler.cluster.informers import Informer
from scaler.cluster.kinds import WorkloadKind
from scaler.cluster.kinds.base import UnreadableSize
from scaler.cluster.kube import Kube, KubeError, NotFound, Resource
from scaler.cluster.workloads import DEFAULT_GPU_RESOURCES, Workload, pods_ready_since
from scaler.cluster.writes import Result

log = structlog.get_logger("scaler")
NAMESPACES = Resource("", "v1", "namespaces", namespaced=False)
PODS = Resource("", "v1", "pods")


def live(kind: WorkloadKind, objects: Iterable[dict], gpu_resources: tuple[str, ...]) -> list[Workload]:
    """`objects` as workloads, less those finished for good, and those whose size cannot be read (said)."""
    found = []
    for obj in objects:
        try:
            workload = Workload(kind, obj, gpu_resources)
        except UnreadableSize as error:
            meta = obj.get("metadata") or {}
            log.warning("workload left out: its size cannot be read", kind=kind.name,
                        namespace=meta.get("namespace", ""), workload=meta.get("name", ""), error=str(error))
            continue
        if not workload.finished:
            found.append(workload)
    return found


class ClusterView:
    """The workloads and namespace labels an evaluation reads."""

    def workloads(self, kinds: Sequence[WorkloadKind]) -> list[Workload]:
        raise NotImplementedError

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        raise NotImplementedError

    def labels_read(self, namespace: str) -> bool:
        """Whether `namespace_labels` gives what the namespace has, not {} for a read that failed."""
        return True

    kube: Kube

    def latest(self, workload: Workload) -> Workload | None:
        """The object as the view knows it now, if it keeps it current."""
        return None

    def ready_since(self, workload: Workload) -> datetime | None:
        """When every replica of `workload` became Ready, as the object (an
        InferenceService's Ready condition) or its pods (one LIST) say; raises
        NotAllReady when its pods say fewer are Ready than its status counts."""
        since = workload.kind.ready_condition_since(workload.obj)
        selector = workload.kind.pod_selector(workload.obj)
        if since is None and selector:
            pods, _ = self.kube.list(PODS, workload.namespace, label_selector=selector)
            since = pods_ready_since(pods, replicas=workload.replicas)
        return since

    def took(self, result: Result, workload: Workload) -> None:
        """Our own write landed: remember it before the watch says so."""
        if result.written is not None:
            self.saw(Workload(workload.kind, result.written, workload.gpu_resources))

    def saw(self, workload: Workload) -> None:
        """`workload` as just read from the API server: remember it before
        the watch says so (a view that keeps no cache ignores it)."""


class ListingView(ClusterView):
    """LIST once per kind: for `scaler plan`, which evaluates one time."""

    def __init__(self, kube: Kube, *, namespaces: Sequence[str] = (), gpu_resources=DEFAULT_GPU_RESOURCES) -> None:
        self.kube = kube
        self.namespaces = list(namespaces)
        self.gpu_resources = tuple(gpu_resources)
        self._namespace_labels: dict[str, dict[str, str]] | None = None

    def workloads(self, kinds: Sequence[WorkloadKind]) -> list[Workload]:
        found: list[Workload] = []
        scopes: list[str | None] = [*self.namespaces] or [None]  # None: all namespaces
        for kind in kinds:
            for namespace in scopes:
                try:
                    items, _ = self.kube.list(kind.resource, namespace)
                except NotFound:  # the kind's CRD is not installed: nothing of it to manage
                    continue
                found.extend(live(kind, items, self.gpu_resources))
        return found

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        if self._namespace_labels is None:
            if self.namespaces:
                self._namespace_labels = {}
                for name in self.namespaces:
                    obj = self.kube.get(NAMESPACES, None, name)
                    self._namespace_labels[name] = obj["metadata"].get("labels") or {}
            else:
                items, _ = self.kube.list(NAMESPACES)
                self._namespace_labels = {o["metadata"]["name"]: o["metadata"].get("labels") or {} for o in items}
        return self._namespace_labels.get(namespace, {})


class WatchingView(ClusterView):
    """list+watch caches per kind (and namespace), started on first use."""

    #: How long a read waits for caches still listing before it gives up.
    SYNC_WAIT_SECONDS = 2.0

    def __init__(self, kube: Kube, *, namespaces: Sequence[str] = (), gpu_resources=DEFAULT_GPU_RESOURCES,
                 on_synced: Callable[[], None] | None = None) -> None:
        """`on_synced`: called when a cache has listed, first or again after
        the API server failed it (the daemon reconciles at once then)."""
        self.kube = kube
        self.namespaces = list(namespaces)
        self.gpu_resources = tuple(gpu_resources)
        self.on_synced = on_synced
        self._informers: dict[tuple[str, str | None], Informer] = {}
        self._lock = threading.Lock()
        self._namespace_informers: list[Informer] = []
        self._labels: dict[str, tuple[float, dict[str, str], bool]] = {}  # when, labels, read

    def _informers_for(self, kind: WorkloadKind) -> list[Informer]:
        created = []
        scopes: list[str | None] = [*self.namespaces] or [None]  # None: all namespaces
        with self._lock:
            for namespace in scopes:
                key = (kind.resource.path(), namespace)
                if key not in self._informers:
                    self._informers[key] = Informer(self.kube, kind.resource, namespace=namespace,
                                                    on_synced=self.on_synced, slim=kind.slim).start()
                created.append(self._informers[key])
        return created

    def start_namespaces(self) -> None:
        """Namespace labels for namespace selectors: watched cluster-wide,
        unless the daemon is restricted to a list of namespaces."""
        if not self.namespaces:
            self._namespace_informers.append(Informer(self.kube, NAMESPACES, on_synced=self.on_synced).start())

    def wait_synced(self, kinds: Sequence[WorkloadKind], *, timeout_seconds: float) -> bool:
        informers = [i for kind in kinds for i in self._informers_for(kind)] + self._namespace_informers
        return all(i.synced.wait(timeout_seconds) for i in informers)

    def synced(self) -> bool:
        """Every cache started so far has listed its resource, and none is
        failing to list or watch it now (the API server away: the caches no
        longer follow it until a list succeeds again)."""
        with self._lock:
            informers = [*self._informers.values(), *self._namespace_informers]
        return all(informer.synced.is_set() and informer.last_error is None for informer in informers)

    def workloads(self, kinds: Sequence[WorkloadKind]) -> list[Workload]:
        """Every object of `kinds`; NotSynced (a KubeError) while a cache has
        not listed yet: deciding from an empty cache is deciding blind."""
        found: list[Workload] = []
        deadline = time.monotonic() + self.SYNC_WAIT_SECONDS  # a cache just started (a reloaded policy's kind)
        for kind in kinds:
            for informer in self._informers_for(kind):
                informer.synced.wait(max(deadline - time.monotonic(), 0))
                found.extend(live(kind, informer.items_synced(), self.gpu_resources))
        return found

    def latest(self, workload: Workload) -> Workload | None:
        for informer in self._informers_for(workload.kind):
            if informer.namespace in (None, workload.namespace):
                obj = informer.get(workload.namespace, workload.name)
                return None if obj is None else Workload(workload.kind, obj, self.gpu_resources)
        return None

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        for informer in self._namespace_informers:
            obj = informer.get("", namespace)
            if obj is not None:
                return obj["metadata"].get("labels") or {}
        if not self.namespaces:
            return {}
        # Restricted to a list: no cluster-wide watch (nor the RBAC for one);
        # GET each listed namespace, at most once a minute.
        cached = self._labels.get(namespace)
        if cached is None or time.monotonic() - cached[0] > 60:
            try:
                obj = self.kube.get(NAMESPACES, None, namespace)
                cached = (time.monotonic(), obj["metadata"].get("labels") or {}, True)
            except KubeError as error:
                if namespace not in self._labels:  # once per namespace, not every minute
                    log.warning("namespace labels unreadable: namespace_selector will not match it",
                                namespace=namespace, error=str(error))
                cached = (time.monotonic(), {}, False)
            self._labels[namespace] = cached
        return cached[1]

    def labels_read(self, namespace: str) -> bool:
        if self._namespace_informers:
            return any(informer.get("", namespace) is not None for informer in self._namespace_informers)
        cached = self._labels.get(namespace)
        return not self.namespaces or (cached is not None and cached[2])

    def saw(self, workload: Workload) -> None:
        for informer in self._informers_for(workload.kind):
            if informer.namespace in (None, workload.namespace):
                informer.update(workload.obj)

    def stop(self, *, timeout_seconds: float = 5) -> None:
        """Stop every cache at once, then wait for them within one deadline."""
        informers = [*self._informers.values(), *self._namespace_informers]
        for informer in informers:
            informer.request_stop()
        deadline = time.monotonic() + timeout_seconds
        for informer in informers:
            informer.join(deadline - time.monotonic())
