"""Pause and resume with memory: the one place a `writes.Write` is applied.

Each write is one JSON patch whose `test` operations guard what it must not
overwrite (writes.json_patch). A failed guard (422) or a 409 means someone
changed the replica count or scaler's record in between: the object is
re-read and the write worked out again from what is there now. After the
patch lands come the KEDA hand-over and the Event; their failures are
warnings, never a reason to undo the replica change. Given an EventSink,
Events are posted in the background, off the write's critical path.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import structlog

from scaler.cluster import writes
from scaler.cluster.kube import Conflict, Invalid, Kube, KubeError, NotFound
from scaler.cluster.workloads import Workload
from scaler.cluster.writes import EVENTS, SCALED_OBJECTS, Outcome, Result, Write
from scaler.decide.decisions import MANUAL
from scaler.decide.times import utc_now

log = structlog.get_logger("scaler")


class EventSink:
    """Posts Events from a few background threads, so a batch of writes never
    waits for its Events; while a batch is `holding`, its Events wait until
    the batch is written, so the writes have the API server to themselves.
    `flush` waits for every Event still queued (shutdown)."""

    def __init__(self, kube: Kube, *, workers: int = 4) -> None:
        self.kube = kube
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="event")
        self._pending = 0
        self._holds = 0
        self._held: list[dict] = []
        self._idle = threading.Condition()

    @contextmanager
    def holding(self) -> Iterator[None]:
        with self._idle:
            self._holds += 1
        try:
            yield
        finally:
            with self._idle:
                self._holds -= 1
                released, self._held = (self._held, []) if self._holds == 0 else ([], self._held)
            for body in released:
                self._pool.submit(self._post, body)

    def post(self, body: dict) -> None:
        with self._idle:
            self._pending += 1
            if self._holds:
                self._held.append(body)
                return
        self._pool.submit(self._post, body)

    def _post(self, body: dict) -> None:
        try:
            self.kube.create(EVENTS, body["metadata"]["namespace"], body)
        except KubeError as error:
            involved = body["involvedObject"]
            log.warning("event not recorded", namespace=involved["namespace"], workload=involved["name"],
                        kind=involved["kind"], event_reason=body["reason"], error=str(error))
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def flush(self, *, timeout_seconds: float) -> int:
        """Wait until every queued Event is posted; the number still pending."""
        deadline = time.monotonic() + timeout_seconds
        with self._idle:
            while self._pending and (left := deadline - time.monotonic()) > 0:
                self._idle.wait(left)
            return self._pending


@dataclass(frozen=True)
class Retry:
    """Bounded exponential backoff with jitter for 409s."""

    attempts: int = 8
    base_seconds: float = 0.02
    max_seconds: float = 1.0

    def sleep(self, attempt: int) -> None:
        delay = min(self.max_seconds, self.base_seconds * 2**attempt)
        time.sleep(delay * (0.5 + random.random()))


class Pauser:
    """Pause and resume single workloads; safe to share between threads."""

    def __init__(self, kube: Kube, *, retry: Retry = Retry(), component: str = "scaler",
                 clock: Callable[[], datetime] = utc_now, events: EventSink | None = None) -> None:
        self.kube = kube
        self.retry = retry
        self.events = events
        self.component = component
        self.instance = socket.gethostname()
        self.clock = clock
        self.keda_cache_seconds = 5.0
        self._keda_cache: dict[str, tuple[float, list[dict]]] = {}
        self._keda_lock = threading.Lock()

    def read(self, workload: Workload) -> Workload:
        obj = self.kube.get(workload.kind.resource, workload.namespace, workload.name)
        return Workload(workload.kind, obj, workload.gpu_resources)

    def pause(self, workload: Workload, *, by: str, reason: str, cause: str | None = None,
              dry_run: bool = False) -> Result:
        """See `writes.pause`."""
        return self.apply(workload, lambda current: writes.pause(current, by=by, reason=reason, cause=cause,
                                                                  now=self.clock()), dry_run=dry_run)

    def resume(self, workload: Workload, *, by: str = MANUAL, reason: str = "manual resume",
               fallback_replicas: int = 1, replicas: int | None = None, override_until: datetime | None = None,
               hold: dict[str, str] | None = None, dry_run: bool = False) -> Result:
        """See `writes.resume`."""
        return self.apply(workload, lambda current: writes.resume(
            current, by=by, reason=reason, fallback_replicas=fallback_replicas, wanted=replicas,
            override_until=override_until, hold=hold, now=self.clock()), dry_run=dry_run)

    def reverted(self, workload: Workload, *, manager: str, record: dict[str, str], first: bool,
                 dry_run: bool = False) -> Result:
        """See `writes.reverted`."""
        return self.apply(workload, lambda current: writes.reverted(current, manager=manager, record=record,
                                                                     first=first), dry_run=dry_run)

    def scale_up(self, workload: Workload, *, replicas: int, by: str, reason: str, dry_run: bool = False) -> Result:
        """See `writes.scale_up`."""
        return self.apply(workload, lambda current: writes.scale_up(current, replicas=replicas, by=by,
                                                                     reason=reason, now=self.clock()),
                          dry_run=dry_run)

    def apply(self, workload: Workload, write_for: Callable[[Workload], Write], *, dry_run: bool) -> Result:
        """Work out the write from the object as last read, send it guarded,
        and when a guard fails re-read and work it out again (bounded)."""
        current, refused = workload, None  # refused: (the operations, the 422 they got)
        for attempt in range(self.retry.attempts):
            write = write_for(current)
            result = Result.of(current, write)
            if write.patch is None:
                return result
            if dry_run:
                result.outcome = Outcome.WOULD_CHANGE
                return result
            operations = writes.json_patch(write.patch, current)
            if refused is not None and refused[0] == operations:
                # Re-read, nothing we test has changed, and it was refused: not a
                # race but a value the API server does not accept.
                raise refused[1]
            try:
                written = self.kube.patch(current.kind.resource, current.namespace, current.name, operations)
            except (Conflict, Invalid) as error:
                refused = (operations, error) if isinstance(error, Invalid) else None
                self.retry.sleep(attempt)
                current = self.read(current)
                continue
            result.written = written
            self._follow_up(Workload(current.kind, written, current.gpu_resources), write, result)
            return result
        raise Conflict(verb="patch", resource=f"{workload.kind.resource.qualified}/{workload.name} "
                       f"in namespace {workload.namespace}", status=409,
                       detail=f"still conflicting after {self.retry.attempts} attempts")

    def _follow_up(self, workload: Workload, write: Write, result: Result) -> None:
        """After the write: tell KEDA, record an Event."""
        try:
            for name, patch in writes.keda_hand_over(self._scaled_objects_for(workload), paused=write.after == 0):
                self.kube.patch(SCALED_OBJECTS, workload.namespace, name, patch)
        except KubeError as error:
            result.warnings.append(f"KEDA ScaledObject not updated: {error}")
        if write.event:
            reason, kind = write.event
            if self.events is not None:
                self.events.post(self._event_body(workload, reason=reason, message=write.message, type_=kind))
                return
            try:
                self.event(workload, reason=reason, message=write.message, type_=kind)
            except KubeError as error:
                result.warnings.append(f"Event not recorded: {error}")

    def _scaled_objects_for(self, workload: Workload) -> list[dict]:
        """ScaledObjects aimed at this workload, from one LIST per namespace
        per few seconds (a batch of a thousand must not list a thousand times)."""
        if not writes.keda_may_target(workload):
            return []  # no LIST for kinds a ScaledObject never targets here
        now = time.monotonic()
        with self._keda_lock:
            cached = self._keda_cache.get(workload.namespace)
            if cached is None or now - cached[0] > self.keda_cache_seconds:
                try:
                    items, _ = self.kube.list(SCALED_OBJECTS, workload.namespace)
                except NotFound:  # KEDA's CRD is not installed
                    items = []
                cached = self._keda_cache[workload.namespace] = (now, items)
        return writes.scaled_objects_for(workload, cached[1])

    def _event_body(self, workload: Workload, *, reason: str, message: str, type_: str) -> dict:
        return writes.event(workload, reason=reason, message=message, type_=type_, now=self.clock(),
                            component=self.component, instance=self.instance)

    def event(self, workload: Workload, *, reason: str, message: str, type_: str = "Normal") -> None:
        self.kube.create(EVENTS, workload.namespace,
                         self._event_body(workload, reason=reason, message=message, type_=type_))
