"""List+watch caches: one LIST at start, then a WATCH stream keeps each cache
current, so a reconcile reads memory instead of listing the cluster every
tick. A 410 Gone (our resourceVersion was compacted away) means re-list."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable

import orjson
import structlog

from scaler.cluster.kinds.base import drop_managed_fields
from scaler.cluster.kube import Expired, Kube, KubeError, NotFound, Resource, error_for

log = structlog.get_logger("scaler.cluster.informers")

Key = tuple[str, str]  # (namespace, name)


class NotSynced(KubeError):
    """A cache that has not listed its resource yet: there is nothing true to
    decide from (an empty cache is not an empty cluster)."""

    def _message(self) -> str:
        return f"{self.resource} not listed yet: the API server has not answered ({self.detail})"


class Informer:
    """Keeps every object of one resource (optionally in one namespace) in memory."""

    #: Retries after a failed list or watch back off up to this: a server that
    #: comes back is seen within seconds.
    MAX_BACKOFF_SECONDS = 4.0

    def __init__(self, kube: Kube, resource: Resource, *, namespace: str | None = None,
                 watch_timeout_seconds: int = 300, on_synced: Callable[[], None] | None = None,
                 slim: Callable[[dict], dict] = drop_managed_fields,
                 on_deleted: Callable[[dict], None] | None = None) -> None:
        """`slim`: what of each object to keep (a workload kind keeps who set its
        size); `on_deleted(obj)`: told of each deletion the watch reports, as it comes."""
        self.slim = slim
        self.on_deleted = on_deleted
        self.kube = kube
        self.resource = resource
        self.namespace = namespace
        self.watch_timeout_seconds = watch_timeout_seconds
        self._objects: dict[Key, dict] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.synced = threading.Event()
        self.missing = False  # the API server does not serve this resource (CRD not installed)
        self._thread: threading.Thread | None = None
        self._response = None
        self.on_synced = on_synced
        self.last_error: str | None = None

    def start(self) -> Informer:
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.resource.plural}", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, timeout_seconds: float = 5) -> None:
        self.request_stop()
        self.join(timeout_seconds)

    def request_stop(self) -> None:
        """Stop watching. The watch thread is blocked reading its stream; a
        close() would wait for that read (the buffered reader's lock) for up
        to the watch timeout, so shut the socket down under it instead."""
        self._stop.set()
        response = self._response
        sock = getattr(getattr(response, "connection", None), "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def join(self, timeout_seconds: float) -> None:
        if self._thread is not None:
            self._thread.join(max(0.0, timeout_seconds))

    def items(self) -> list[dict]:
        with self._lock:
            return list(self._objects.values())

    def get(self, namespace: str, name: str) -> dict | None:
        with self._lock:
            return self._objects.get((namespace, name))

    def update(self, obj: dict) -> None:
        """Take in an object we just wrote, so the next read sees our write
        even before its watch event arrives (never an older version)."""
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        with self._lock:
            current = self._objects.get(key)
            if current is None or _newer(obj, current):
                self._objects[key] = obj

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                version = self._list()
                backoff = 0.5
                while not self._stop.is_set():
                    version = self._watch(version)
            except Expired:
                log.info("watch expired; re-listing", resource=self.resource.qualified)
                continue
            except KubeError as error:
                if isinstance(error, NotFound):
                    self.missing = True
                    self._synced_now()
                    self._stop.wait(30)
                    continue
                self.last_error = str(error)
                log.warning("list/watch failed; retrying", resource=self.resource.qualified, error=str(error),
                            retry_in_seconds=round(backoff, 2))
            except Exception as error:  # noqa: BLE001 - a broken stream must not kill the cache
                if self._stop.is_set():
                    return
                self.last_error = f"{type(error).__name__}: {error}"
                log.warning("watch stream broke; retrying", resource=self.resource.qualified,
                            error=self.last_error, retry_in_seconds=round(backoff, 2))
            self._stop.wait(backoff * (0.75 + random.random() / 2))
            backoff = min(backoff * 2, self.MAX_BACKOFF_SECONDS)

    def _list(self) -> str:
        items, version = self.kube.list(self.resource, self.namespace)
        fresh = {(o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in map(self.slim, items)}
        with self._lock:
            self._objects = fresh
        self.missing = False
        self._synced_now()
        return version

    def _synced_now(self) -> None:
        """Listed: the first time, or again after the API server failed us."""
        again = not self.synced.is_set() or self.last_error is not None
        self.last_error = None
        self.synced.set()
        if again and self.on_synced is not None:
            self.on_synced()

    def items_synced(self) -> list[dict]:
        """Every object, or NotSynced before the first list."""
        if not self.synced.is_set():
            raise NotSynced(verb="list", resource=self.resource.qualified, status=None,
                            detail=self.last_error or "no answer yet")
        return self.items()

    def _watch(self, version: str) -> str:
        api = self.kube.api_client
        method, url, headers, _, _ = api.param_serialize(
            method="GET", resource_path=self.resource.path(self.namespace),
            query_params=[("watch", "true"), ("resourceVersion", version), ("allowWatchBookmarks", "true"),
                          ("timeoutSeconds", str(self.watch_timeout_seconds))],
            header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
        self.kube.count("watch")
        response = api.call_api(method, url, header_params=headers,
                                _request_timeout=(10, self.watch_timeout_seconds + 30))
        if response.status != 200:
            raise error_for(response.status)(verb="watch", resource=self.resource.qualified, status=response.status)
        raw = response.response
        self._response = raw
        buffer = b""
        try:
            for chunk in raw.stream(64 * 1024, decode_content=True):
                if self._stop.is_set():
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        version = self._apply(orjson.loads(line), version)
        finally:
            raw.release_conn()
            self._response = None
        return version

    def _apply(self, event: dict, version: str) -> str:
        kind, obj = event.get("type"), self.slim(event.get("object") or {})
        if kind == "ERROR":
            raise error_for(obj.get("code"))(verb="watch", resource=self.resource.qualified, status=obj.get("code"),
                                             detail=obj.get("reason", ""))
        meta = obj.get("metadata", {})
        new_version = meta.get("resourceVersion") or version
        if kind == "BOOKMARK":
            return new_version
        key = (meta.get("namespace", ""), meta.get("name", ""))
        with self._lock:
            if kind == "DELETED":
                self._objects.pop(key, None)
                if self.on_deleted is not None:
                    self.on_deleted(obj)
            else:
                current = self._objects.get(key)
                if current is None or not _newer(current, obj):
                    self._objects[key] = obj
        return new_version


def _newer(a: dict, b: dict) -> bool:
    """resourceVersions are opaque strings, but etcd's are integers; compare
    them as such when they are, else trust the arrival order."""
    try:
        return int(a["metadata"]["resourceVersion"]) > int(b["metadata"]["resourceVersion"])
    except (KeyError, ValueError):
        return False


def newer(a, b) -> bool:
    """Workload `a` is a later version of the object than workload `b`."""
    return _newer(a.obj, b.obj)


def wait_synced(informers: list[Informer], *, timeout_seconds: float = 60) -> bool:
    deadline = time.monotonic() + timeout_seconds
    for informer in informers:
        if not informer.synced.wait(max(0.0, deadline - time.monotonic())):
            return False
    return True
