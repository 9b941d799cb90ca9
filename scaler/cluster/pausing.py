"""Pause and resume with memory: the one place a `writes.Write` is applied.

Each write is one JSON patch whose `test` operations guard what it must not
overwrite (writes.json_patch). A failed guard (422) or a 409 means someone
changed the replica count or scaler's record in between: the object is
re-read and the write worked out again from what is there now. Before every
attempt a fence may stop it (leadership; whether the write still means what
it meant). A write that calls for an Event records the action on the object
in the same patch (cluster/actions.py); after the patch lands come the Event
and the KEDA hand-over, whose failures are warnings, never a reason to undo
the replica change. Given an EventSink, Events are posted in the background
as each write lands, off the write's critical path (cluster/eventing.py).
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import structlog

from scaler.cluster import actions, writes
from scaler.cluster.actions import EVENTS, ActionRecord
from scaler.cluster.eventing import EventSink
from scaler.cluster.keda import SCALED_OBJECTS, keda_hand_over, scaled_objects_for
from scaler.cluster.kube import Conflict, Fence, Fenced, Invalid, Kube, KubeError, NotFound
from scaler.cluster.placing import Placement
from scaler.cluster.workloads import Workload
from scaler.cluster.writes import Outcome, Result, Write
from scaler.decide.annotations import KEDA_BEFORE, LAST_ACTION
from scaler.decide.times import rfc3339, utc_now

log = structlog.get_logger("scaler")


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
                 clock: Callable[[], datetime] = utc_now, events: EventSink | None = None,
                 fence: Fence | None = None, term: Callable[[], int] = lambda: 0,
                 placement: Placement | None = None,
                 event_ttl_seconds: float = actions.DEFAULT_EVENT_TTL_SECONDS) -> None:
        """`fence`: asked before the writes that follow one (the KEDA hand-over), which also go out only
        in the leadership term `term()` their write went out in. `placement`: where pods run, so a pause
        records its nodes (cluster/placing.py). `event_ttl_seconds`: how long the API server keeps Events."""
        self.kube = kube
        self.placement = placement
        self.fence = fence
        self.term = term
        self.retry = retry
        self.events = events
        self.component = component
        self.instance = socket.gethostname()
        self.clock = clock
        self.keda_cache_seconds = 5.0
        self._keda_cache: dict[str, tuple[float, list[dict]]] = {}
        self._keda_lock = threading.Lock()
        #: Set while the Events owed on the objects are not looked for in this term (the look failed): a
        #: write replacing an action record posts its Event first, if younger than `event_ttl_seconds`.
        self.unlooked = False
        self.event_ttl_seconds = event_ttl_seconds
        #: Workloads whose KEDA hand-over failed, and whether it was to pause (True) or hand back.
        self._unhanded: dict[tuple[str, str, str], bool] = {}

    def read(self, workload: Workload) -> Workload:
        obj = self.kube.get(workload.kind.resource, workload.namespace, workload.name)
        return Workload(workload.kind, obj, workload.gpu_resources)

    def pause(self, workload: Workload, *, by: str, reason: str, cause: str | None = None,
              dry_run: bool = False, fence: Callable[[Workload], None] | None = None) -> Result:
        """See `writes.pause`; the nodes its pods run on are recorded with it."""
        def write_for(current: Workload) -> Write:
            now = self.clock()
            nodes = (self.placement.record(current, now=now)
                     if self.placement is not None and current.replicas > 0 and not dry_run else None)
            return writes.pause(current, by=by, reason=reason, cause=cause, now=now, nodes=nodes)
        return self.apply(workload, write_for, dry_run=dry_run, fence=fence, mend=True)

    def resume(self, workload: Workload, *, by: str, reason: str, replicas: int, dry_run: bool = False,
               fence: Callable[[Workload], None] | None = None) -> Result:
        """See `writes.resume`: to `replicas`, the size a decision chose."""
        return self.apply(workload, lambda current: writes.resume(
            current, by=by, reason=reason, replicas=replicas, now=self.clock()), dry_run=dry_run, fence=fence,
            hand_back=True)

    def manual_resume(self, workload: Workload, *, reason: str = "manual resume", minimum: int | None = None,
                      hold: dict[str, str] | None = None, dry_run: bool = False) -> Result:
        """See `writes.manual_resume`: to the recorded count, read again with each attempt."""
        return self.apply(workload, lambda current: writes.manual_resume(
            current, reason=reason, minimum=minimum, hold=hold, now=self.clock()), dry_run=dry_run, hand_back=True)

    def hands_off(self, workload: Workload, *, by: str, reason: str, until: datetime, dry_run: bool = False,
                  fence: Callable[[Workload], None] | None = None) -> Result:
        """See `writes.hands_off`."""
        return self.apply(workload, lambda current: writes.hands_off(current, by=by, reason=reason, until=until),
                          dry_run=dry_run, fence=fence)

    def reverted(self, workload: Workload, *, reason: str, record: dict[str, str], first: bool,
                 dry_run: bool = False, fence: Callable[[Workload], None] | None = None) -> Result:
        """See `writes.reverted`."""
        return self.apply(workload, lambda current: writes.reverted(current, reason=reason, record=record,
                                                                     first=first), dry_run=dry_run, fence=fence)

    def scale_up(self, workload: Workload, *, replicas: int, by: str, reason: str, dry_run: bool = False,
                 fence: Callable[[Workload], None] | None = None) -> Result:
        """See `writes.scale_up`."""
        return self.apply(workload, lambda current: writes.scale_up(current, replicas=replicas, by=by,
                                                                     reason=reason, now=self.clock()),
                          dry_run=dry_run, fence=fence)

    def apply(self, workload: Workload, write_for: Callable[[Workload], Write], *, dry_run: bool,
              fence: Callable[[Workload], None] | None = None, mend: bool = False,
              hand_back: bool = False) -> Result:
        """Work out the write from the object as last read, send it guarded,
        and when a guard fails re-read and work it out again (bounded). A
        workload that has finished (its kind says so) gets no write at all.
        `fence(current)` is asked right before every attempt goes out (and
        raises Fenced to stop it): leadership, and whether the write still
        means what it meant with the object as now read. `mend` (a pause):
        a pause found already made gets its KEDA hand-over again, in case
        the run that made it failed to. `hand_back` (a resume): one that finds
        nothing of scaler's pause on the object (deleted and created again
        since the pause) hands back the ScaledObjects scaler's pause left
        paused, or KEDA would hold the new object at 0 for good."""
        current, refused = workload, None  # refused: (the operations, the 422 they got)
        action_id = f"{random.getrandbits(64):016x}"  # one per write: a retry sends the same record
        for attempt in range(self.retry.attempts):
            if current.finished:  # done for good, perhaps since it was read: nothing to pause or resume
                return Result(current.kind.name, current.namespace, current.name, Outcome.SKIPPED,
                              f"finished: this {current.kind.name} has run to its end (completed or failed); "
                              "scaler leaves it alone", current.replicas, current.replicas)
            write = write_for(current)
            result = Result.of(current, write)
            if write.patch is None:
                if mend and not dry_run and current.replicas == 0 and current.record is not None:
                    self._hand_over(current, paused=True, warnings=result.warnings)
                elif hand_back and not dry_run and current.record is None and not current.manual_pause:
                    self._hand_over(current, paused=False, warnings=result.warnings, only_ours=True)
                return result
            if dry_run:  # what the real run would report: a change, or a skip that records something
                result.outcome = Outcome.WOULD_CHANGE if write.outcome is Outcome.CHANGED else write.outcome
                return result
            record = None
            patch = write.patch
            if write.event is not None:
                record = ActionRecord(action_id, write.event[0], write.event[1], actions.clip(write.message),
                                      rfc3339(self.clock()))
                patch = writes.merge(patch, record.annotation())
                self._before_replacing(current)
            operations = writes.json_patch(patch, current)
            if refused is not None and refused[0] == operations:
                # Re-read, nothing we test has changed, and it was refused: not a
                # race but a value the API server does not accept.
                raise refused[1]
            term = self.term()  # the write's own fence lets it out only in the term it was decided in
            try:
                written = self.kube.patch(current.kind.resource, current.namespace, current.name, operations,
                                          fence=None if fence is None else partial(fence, current))
            except (Conflict, Invalid) as error:
                refused = (operations, error) if isinstance(error, Invalid) else None
                self.retry.sleep(attempt)
                current = self.read(current)
                continue
            result.written = written
            self._follow_up(Workload(current.kind, written, current.gpu_resources), write, record, result, term)
            return result
        raise Conflict(verb="patch", resource=f"{workload.kind.resource.qualified}/{workload.name} "
                       f"in namespace {workload.namespace}", status=409,
                       detail=f"still conflicting after {self.retry.attempts} attempts")

    def _before_replacing(self, current: Workload) -> None:
        """A write is about to replace the action record on `current`: the Event it is owed by goes out
        first if it may still be owed, still queued here, or (`unlooked`) never looked for."""
        replaced = ActionRecord.read(current.annotations)
        if self.events is None or replaced is None:
            return
        owed = self.unlooked and bool(actions.owed([current], set(), now=self.clock(),
                                                   ttl_seconds=self.event_ttl_seconds))  # only then: a write's CPU
        self.events.now(current.namespace, actions.event_name(current.name, replaced.id),
                        actions.event(current, replaced, component=self.component, instance=self.instance,
                                      note=actions.OWED_NOTE) if owed else None)

    def post_owed(self, workloads: Iterable[Workload], *, namespaces: Iterable[str | None], now: datetime,
                  ttl_seconds: float, note: str, warnings: list[str] | None = None) -> int:
        """Post the Events owed for the actions recorded on `workloads` (by
        a run killed, or a daemon deposed, before it posted them): one LIST
        of scaler's Events per namespace (None: every one), then only what
        is missing, each saying `note`. How many were posted (or queued); a
        failed LIST raises, a failed post is the sink's to retry (or,
        without one, said in `warnings` and left owed for the next run)."""
        posted: set[tuple[str, str]] = set()
        for namespace in namespaces:
            items, _ = self.kube.list(EVENTS, namespace, label_selector="=".join(actions.MANAGED_BY))
            posted |= {(item["metadata"].get("namespace", ""), item["metadata"]["name"]) for item in items}
        sent = 0
        for workload, record in actions.owed(workloads, posted, now=now, ttl_seconds=ttl_seconds):
            refused: list[str] = []
            self._post(actions.event(workload, record, component=self.component, instance=self.instance,
                                     note=note), refused)
            sent += not refused
            if warnings is not None:
                warnings += [f"{workload.ref}: {why}" for why in refused]
        return sent

    def _post(self, body: dict, warnings: list[str]) -> None:
        """An Event: to the sink, or at once (a name already taken was posted by someone else)."""
        if self.events is not None:
            self.events.post(body)
            return
        try:
            self.kube.create(EVENTS, body["metadata"]["namespace"], body)
        except Conflict:
            pass  # posted already
        except KubeError as error:
            warnings.append(f"Event not recorded: {error}")

    def _follow_up(self, workload: Workload, write: Write, record: ActionRecord | None, result: Result,
                   term: int) -> None:
        """After the write: its Event (at once, in the background when there
        is a sink), then the KEDA hand-over, in the write's term `term`."""
        if record is not None:
            self._post(actions.event(workload, record, component=self.component, instance=self.instance),
                       result.warnings)
        self._hand_over(workload, paused=write.after == 0, warnings=result.warnings, term=term)

    def _in_term(self, term: int | None) -> Fence | None:
        """The fence of a hand-over that follows a write of term `term`: a process that lost the Lease
        while the hand-over waited (a slow LIST, a Retry-After) and won it again must not send it in its
        new term; a leader in between may have resumed the workload, and KEDA would hold it at 0."""
        if term is None:
            return self.fence

        def check() -> None:
            if self.fence is not None:
                self.fence()
            if self.term() != term:
                raise Fenced("a new leadership term began since the write it follows")
        return check

    def _hand_over(self, workload: Workload, *, paused: bool, warnings: list[str], only_ours: bool = False,
                   term: int | None = None) -> None:
        """The ScaledObjects aimed at `workload` paused with it (or handed
        back; `only_ours`: only those marked paused by scaler), fenced (`_in_term`). One that
        fails is remembered for `mend_hand_overs`."""
        fence = self._in_term(term)
        try:
            targets = self._scaled_objects_for(workload)
            if only_ours:
                targets = [item for item in targets if KEDA_BEFORE in (item["metadata"].get("annotations") or {})]
            for name, patch in keda_hand_over(targets, paused=paused):
                self._keep(workload.namespace, self.kube.patch(SCALED_OBJECTS, workload.namespace, name, patch,
                                                               fence=fence))
        except (KubeError, Fenced) as error:  # fenced: not the leader now, but the write it follows landed
            warnings.append(f"KEDA ScaledObject not updated: {error}")
            with self._keda_lock:
                self._unhanded[workload.key] = paused
            return
        with self._keda_lock:
            self._unhanded.pop(workload.key, None)

    def _keep(self, namespace: str, written: dict) -> None:
        """A ScaledObject as our patch left it, into the namespace's cached list: a resume (or a pause)
        within the cache's seconds must see what this one wrote, not what was there before it."""
        name = written.get("metadata", {}).get("name")
        with self._keda_lock:
            if (cached := self._keda_cache.get(namespace)) is not None:
                items = [written if item["metadata"].get("name") == name else item for item in cached[1]]
                self._keda_cache[namespace] = (cached[0], items)

    @property
    def owes_hand_overs(self) -> bool:
        """Whether a KEDA hand-over failed here and was not sent since."""
        with self._keda_lock:
            return bool(self._unhanded)

    def mend_hand_overs(self, workloads: Iterable[Workload], *, every_pause: bool = False) -> list[str]:
        """Send again the KEDA hand-overs that failed here, for the workloads
        (among `workloads`, as now read) still as the hand-over left them: at
        zero with scaler's record to pause, running without it to hand back;
        with `every_pause`, also every pause's, and every hand-back of a
        workload scaler acted on that runs now (a process killed between a
        write and its hand-over: KEDA would hold a resumed workload at 0).
        What still failed, one line each."""
        with self._keda_lock:
            failed = dict(self._unhanded)
        if not failed and not every_pause:
            return []
        problems: list[str] = []
        stale = []  # changed since, or gone: its next pause or resume hands over anew
        for workload in workloads:
            paused = workload.replicas == 0 and workload.record is not None
            wanted = failed.pop(workload.key, None)
            warnings: list[str] = []
            if workload.kind.keda_targetable and (wanted == paused or (every_pause and paused)):
                self._hand_over(workload, paused=paused, warnings=warnings)
            elif (every_pause and workload.kind.keda_targetable and workload.replicas > 0
                  and workload.record is None and LAST_ACTION in workload.annotations):
                self._hand_over(workload, paused=False, warnings=warnings, only_ours=True)
            elif wanted is not None:
                stale.append(workload.key)
            problems += [f"{workload.ref}: {warning}" for warning in warnings]
        with self._keda_lock:
            for key in [*failed, *stale]:
                self._unhanded.pop(key, None)
        return problems

    def _scaled_objects_for(self, workload: Workload) -> list[dict]:
        """ScaledObjects aimed at this workload, from one LIST per namespace
        per few seconds (a batch of a thousand must not list a thousand times)."""
        if not workload.kind.keda_targetable:
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
        return scaled_objects_for(workload, cached[1])
