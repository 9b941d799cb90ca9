"""Pause and resume with memory: one guarded patch per change, an Event for
every action, and the human's edit winning over our record.

Pause writes the replica count it is about to erase and the zero in the same
merge patch, guarded by the resourceVersion it read, so either both land or
neither does. A 409 means someone wrote in between: re-read and decide again.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Callable

from scaler.decide.annotations import (
    KEDA_PAUSED_REPLICAS,
    LAST_REPLICAS,
    MANUAL_PAUSE,
    OVERRIDE_UNTIL,
    PAUSE_CAUSE,
    PAUSE_REASON,
    PAUSE_STATE,
    PAUSED_AT,
    PAUSED_BY,
)
from scaler.cluster.kube import Conflict, Kube, KubeError, NotFound, Resource
from scaler.cluster.workloads import Workload

EVENTS = Resource("", "v1", "events")
SCALED_OBJECTS = Resource("keda.sh", "v1alpha1", "scaledobjects")
MANUAL = "manual"


class Outcome(str, Enum):
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    FAILED = "failed"
    WOULD_CHANGE = "would-change"  # dry run


@dataclass
class Result:
    """One row of a batch: what happened to one object and why."""

    kind: str
    namespace: str
    name: str
    outcome: Outcome
    reason: str
    replicas_before: int | None = None
    replicas_after: int | None = None
    gpus: int = 0  # freed by a pause, claimed by a resume
    seconds_to_ready: float | None = None
    warnings: list[str] = field(default_factory=list)
    #: The object as the API server returned it after our write (caches take it in).
    written: dict | None = field(default=None, repr=False)

    def as_dict(self) -> dict:
        return {
            "kind": self.kind, "namespace": self.namespace, "name": self.name,
            "result": self.outcome.value, "reason": self.reason,
            "replicasBefore": self.replicas_before, "replicasAfter": self.replicas_after,
            "gpus": self.gpus, "secondsToReady": self.seconds_to_ready, "warnings": self.warnings,
        }


@dataclass(frozen=True)
class Retry:
    """Bounded exponential backoff with jitter for 409s."""

    attempts: int = 8
    base_seconds: float = 0.02
    max_seconds: float = 1.0

    def sleep(self, attempt: int) -> None:
        delay = min(self.max_seconds, self.base_seconds * 2**attempt)
        time.sleep(delay * (0.5 + random.random()))


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _merge(*patches: dict) -> dict:
    out: dict = {}
    for patch in patches:
        for key, value in patch.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = _merge(out[key], value)
            else:
                out[key] = value
    return out


class Pauser:
    """Pause and resume single workloads; safe to share between threads."""

    def __init__(self, kube: Kube, *, retry: Retry = Retry(), component: str = "scaler",
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.kube = kube
        self.retry = retry
        self.component = component
        self.instance = socket.gethostname()
        self.clock = clock
        self.keda_cache_seconds = 5.0
        self._keda_cache: dict[str, tuple[float, list[dict]]] = {}
        self._keda_lock = threading.Lock()

    # Reading

    def read(self, workload: Workload) -> Workload:
        obj = self.kube.get(workload.kind.resource, workload.namespace, workload.name)
        return Workload(workload.kind, obj, workload.gpu_resources)

    # Pause

    def pause(self, workload: Workload, *, by: str, reason: str, cause: str | None = None,
              dry_run: bool = False) -> Result:
        """Scale to 0 and record the count. `by` is "manual" or "policy/<name>";
        `cause` the rule's reason code. A manual pause also sets the durable
        paused annotation."""
        manual = by == MANUAL
        return self._guarded(workload, lambda current: self._plan_pause(current, by=by, reason=reason,
                                                                        manual=manual, cause=cause),
                             dry_run=dry_run)

    def _plan_pause(self, current: Workload, *, by: str, reason: str, manual: bool, cause: str | None):
        replicas = current.replicas
        record = current.record
        if replicas == 0:
            if manual and not current.manual_pause:
                # Already at zero (by a policy, or by hand): make it durable.
                patch = {"metadata": {"annotations": {MANUAL_PAUSE: "true", PAUSED_BY: MANUAL,
                                                      PAUSE_REASON: reason}}}
                if record is None:
                    patch["metadata"]["annotations"][PAUSED_AT] = _rfc3339(self.clock())
                was = f"paused by {record.paused_by}" if record and record.paused_by else "at 0 replicas"
                return _Plan(patch, Outcome.CHANGED, 0, 0, 0,
                             f"already {was}; now paused manually until a manual resume",
                             event=("PausedManually", "Normal"))
            who = "manually" if current.manual_pause else (
                f"by {record.paused_by}" if record and record.paused_by else "(at 0 replicas)")
            return _Plan(None, Outcome.UNCHANGED, 0, 0, 0, f"already paused {who}")
        annotations = {
            LAST_REPLICAS: str(replicas),
            PAUSED_AT: _rfc3339(self.clock()),
            PAUSED_BY: by,
            PAUSE_REASON: reason,
            PAUSE_CAUSE: MANUAL if manual else cause,
            OVERRIDE_UNTIL: None,  # a new pause ends an earlier hands-off period
        }
        if manual:
            annotations[MANUAL_PAUSE] = "true"
        patch = _merge({"metadata": {"annotations": annotations}}, current.kind.scale_patch(current.obj, 0))
        gpus = current.gpus(replicas)
        message = f"scaled to zero from {replicas} replicas by {by}: {reason}; {gpus} GPUs freed"
        return _Plan(patch, Outcome.CHANGED, replicas, 0, gpus, message, event=("ScaledToZero", "Normal"))

    # Resume

    def resume(self, workload: Workload, *, by: str = MANUAL, reason: str = "manual resume",
               fallback_replicas: int = 1, replicas: int | None = None, override_until: datetime | None = None,
               dry_run: bool = False) -> Result:
        """Restore the recorded count and remove our annotations. A policy
        (`by` != "manual") never resumes a manual pause. `replicas`, when
        given, is the size to wake to instead (a queue asking for more).
        `override_until`: if someone resized it while paused, leave it alone
        until then (written in the same patch that clears the record)."""
        return self._guarded(workload, lambda current: self._plan_resume(
            current, by=by, reason=reason, fallback_replicas=fallback_replicas, wanted=replicas,
            override_until=override_until), dry_run=dry_run)

    def scale_up(self, workload: Workload, *, replicas: int, by: str, reason: str, dry_run: bool = False) -> Result:
        """Grow a running workload (never shrink it: that is a pause's job)."""
        def plan(current: Workload) -> _Plan:
            before = current.replicas
            if not current.kind.sizable:
                return _Plan(None, Outcome.UNCHANGED, before, before, 0,
                             f"{current.kind.name} size is not scaler's to set; only pause and wake are")
            if before == 0 or before >= replicas or current.manual_pause:
                why = ("paused; a wake resumes it" if before == 0 or current.manual_pause
                       else f"already at {before} replicas (wanted {replicas})")
                return _Plan(None, Outcome.UNCHANGED, before, before, 0, why)
            gpus = current.gpus(replicas - before)
            message = f"scaled up from {before} to {replicas} replicas by {by}: {reason}; {gpus} GPUs claimed"
            return _Plan(current.kind.scale_patch(current.obj, replicas), Outcome.CHANGED, before, replicas, gpus,
                         message, event=("ScaledUp", "Normal"))
        return self._guarded(workload, plan, dry_run=dry_run)

    def _plan_resume(self, current: Workload, *, by: str, reason: str, fallback_replicas: int,
                     wanted: int | None = None, override_until: datetime | None = None):
        replicas = current.replicas
        record = current.record
        clear = {"metadata": {"annotations": {key: None for key in PAUSE_STATE if key in current.annotations}}}
        if current.manual_pause and by != MANUAL:
            return _Plan(None, Outcome.SKIPPED, replicas, replicas, 0,
                         "paused manually; only a manual resume (scaler resume) wakes it")
        if record is None and not current.manual_pause:
            # Only what scaler paused is scaler's to resume: a workload someone
            # scaled to zero themselves stays there, even in a resume -A.
            state = (f"running at {replicas} replicas" if replicas
                     else "at 0 replicas, but scaler did not pause it (no scaler.io/ annotations)")
            return _Plan(None, Outcome.UNCHANGED, replicas, replicas, 0, f"not paused: {state}")
        if replicas > 0:
            recorded = record.last_replicas if record else None
            message = (f"someone set replicas to {replicas} while it was paused"
                       f"{f' (recorded {recorded})' if recorded else ''}; left {replicas} "
                       "and cleared the pause record")
            if override_until is not None:
                clear["metadata"]["annotations"][OVERRIDE_UNTIL] = _rfc3339(override_until)
                message += f"; {by} leaves it alone until {_rfc3339(override_until)}"
            return _Plan(clear if clear["metadata"]["annotations"] else None, Outcome.SKIPPED,
                         replicas, replicas, 0, message, event=("ResumeSkipped", "Normal"))
        if wanted is not None:
            recorded = record.last_replicas if record else None
            target, source = wanted, f"recorded {recorded}" if recorded else "no recorded count"
        elif record is not None and record.last_replicas:
            target, source = record.last_replicas, f"recorded by {record.paused_by or 'a pause'}"
        else:
            target, source = fallback_replicas, f"no recorded count, used the minimum {fallback_replicas}"
        gpus = current.gpus(target)
        patch = _merge(clear, current.kind.scale_patch(current.obj, target))
        message = f"resumed to {target} replicas ({source}) by {by}: {reason}; {gpus} GPUs claimed"
        return _Plan(patch, Outcome.CHANGED, 0, target, gpus, message, event=("Resumed", "Normal"))

    # The guarded write loop shared by pause and resume

    def _guarded(self, workload: Workload, plan_for: Callable[[Workload], _Plan], *, dry_run: bool) -> Result:
        current = workload
        for attempt in range(self.retry.attempts):
            plan = plan_for(current)
            result = Result(current.kind.name, current.namespace, current.name, plan.outcome,
                            plan.message, plan.before, plan.after, plan.gpus)
            if plan.patch is None:
                return result
            if dry_run:
                result.outcome = Outcome.WOULD_CHANGE
                return result
            guarded = _merge(plan.patch, {"metadata": {"resourceVersion": current.resource_version}})
            try:
                written = self.kube.patch(current.kind.resource, current.namespace, current.name, guarded)
            except Conflict:
                self.retry.sleep(attempt)
                current = self.read(current)
                continue
            result.written = written
            self._follow_up(Workload(current.kind, written, current.gpu_resources), plan, result)
            return result
        raise Conflict(verb="patch", resource=f"{workload.kind.resource.qualified}/{workload.name} "
                       f"in namespace {workload.namespace}", status=409,
                       detail=f"still conflicting after {self.retry.attempts} attempts")

    def _follow_up(self, workload: Workload, plan: _Plan, result: Result) -> None:
        """After the write: tell KEDA, record an Event. Their failures are
        warnings on the row; the replica change itself has landed."""
        try:
            self._sync_keda(workload, paused=plan.after == 0)
        except KubeError as error:
            result.warnings.append(f"KEDA ScaledObject not updated: {error}")
        if plan.event:
            reason, kind = plan.event
            try:
                self.event(workload, reason=reason, message=plan.message, type_=kind)
            except KubeError as error:
                result.warnings.append(f"Event not recorded: {error}")

    def _sync_keda(self, workload: Workload, *, paused: bool) -> None:
        """A ScaledObject targeting this workload would undo our zero (or our
        restore): pause it at 0 with its own annotation while we hold the
        workload, and hand it back on resume."""
        if workload.kind.resource.group != "apps":
            return
        for scaled_object in self._scaled_objects_for(workload):
            annotations = scaled_object["metadata"].get("annotations") or {}
            wanted = "0" if paused else None
            if annotations.get(KEDA_PAUSED_REPLICAS) == wanted:
                continue
            self.kube.patch(SCALED_OBJECTS, workload.namespace, scaled_object["metadata"]["name"],
                            {"metadata": {"annotations": {KEDA_PAUSED_REPLICAS: wanted}}})

    def _scaled_objects_for(self, workload: Workload) -> list[dict]:
        """ScaledObjects aimed at this workload, from one LIST per namespace
        per few seconds (a batch of a thousand must not list a thousand times)."""
        now = time.monotonic()
        with self._keda_lock:
            cached = self._keda_cache.get(workload.namespace)
            if cached is None or now - cached[0] > self.keda_cache_seconds:
                try:
                    items, _ = self.kube.list(SCALED_OBJECTS, workload.namespace)
                except NotFound:  # KEDA's CRD is not installed
                    items = []
                cached = self._keda_cache[workload.namespace] = (now, items)
            items = cached[1]
        targets = []
        for item in items:
            ref = (item.get("spec") or {}).get("scaleTargetRef") or {}
            if ref.get("name") == workload.name and ref.get("kind", "Deployment") == workload.kind.name:
                targets.append(item)
        return targets

    def event(self, workload: Workload, *, reason: str, message: str, type_: str = "Normal") -> None:
        now = _rfc3339(self.clock())
        meta = workload.obj["metadata"]
        self.kube.create(EVENTS, workload.namespace, {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{workload.name}.", "namespace": workload.namespace},
            "involvedObject": {
                "apiVersion": workload.kind.resource.api_version, "kind": workload.kind.name,
                "name": workload.name, "namespace": workload.namespace,
                "uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason, "message": message[:1024], "type": type_,
            "source": {"component": self.component},
            "reportingComponent": self.component, "reportingInstance": self.instance,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        })


@dataclass(frozen=True)
class _Plan:
    patch: dict | None
    outcome: Outcome
    before: int
    after: int
    gpus: int
    message: str
    event: tuple[str, str] | None = None
