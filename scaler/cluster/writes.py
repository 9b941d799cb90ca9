"""Writes as values: what a pause, a resume or a scale-up sends, worked out in
memory from the object as read and the instant.

Pure: nothing here talks to the API server. `pausing.Pauser` is the one place
that applies a `Write` (guarded, retried, followed by its Event and the KEDA
hand-over, cluster/keda.py), so what is tested here per kind is exactly what goes out.

A pause writes the replica count it is about to erase and the zero in one
merge patch, so either both land or neither does; the record is never 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from scaler.cluster.starts import ready_record, relapse_cleanup, relapsed, warm_ups
from scaler.cluster.workloads import Workload
from scaler.decide.annotations import (
    BACKOFF_UNTIL,
    HOLD_FROM,
    HOLD_UNTIL,
    LAST_ACTION,
    LAST_REPLICAS,
    MANUAL_PAUSE,
    NODE_WAIT,
    NODES,
    OVERRIDE_UNTIL,
    PAUSE_CAUSE,
    PAUSE_REASON,
    PAUSE_STATE,
    PAUSED_AT,
    PAUSED_BY,
    READY_AT,
    REVERT_STATE,
    STARTED_AT,
    WARM_UPS,
    WARM_UPS_KEPT,
)
from scaler.decide.decisions import MANUAL, Code, unrestorable
from scaler.decide.times import parse_time, rfc3339


class Outcome(str, Enum):
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    FAILED = "failed"
    WOULD_CHANGE = "would-change"  # dry run


@dataclass(frozen=True)
class Write:
    """One change to one object: the merge patch (None: nothing to send), what
    it does, and the Event that tells people about it."""

    patch: dict | None
    outcome: Outcome
    before: int
    after: int
    gpus: int
    message: str
    #: (reason, type) of the Event to record once the patch has landed
    event: tuple[str, str] | None = None


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

    @classmethod
    def of(cls, workload: Workload, write: Write) -> Result:
        return cls(workload.kind.name, workload.namespace, workload.name, write.outcome, write.message,
                   write.before, write.after, write.gpus)

    def as_dict(self) -> dict:
        return {
            "kind": self.kind, "namespace": self.namespace, "name": self.name,
            "result": self.outcome.value, "reason": self.reason,
            "replicasBefore": self.replicas_before, "replicasAfter": self.replicas_after,
            "gpus": self.gpus, "secondsToReady": self.seconds_to_ready, "warnings": self.warnings,
        }


def merge(*patches: dict) -> dict:
    """Deep-merge merge patches, later ones winning."""
    out: dict = {}
    for patch in patches:
        for key, value in patch.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = value
    return out


def _annotations(values: dict) -> dict:
    return {"metadata": {"annotations": values}}


def pause(current: Workload, *, by: str, reason: str, cause: str | None, now: datetime,
          nodes: str | None = None) -> Write:
    """Scale to 0 and record the count. `by` is "manual" or "policy/<name>";
    `cause` the rule's reason code; `nodes` the record of the nodes its pods
    run on (cluster/nodes.py). A manual pause also sets the durable paused
    annotation."""
    manual = by == MANUAL
    replicas, record = current.replicas, current.record
    if replicas == 0:
        if manual and not current.manual_pause:
            # Already at zero (by a policy, or by hand): make it durable.
            durable = {MANUAL_PAUSE: "true", PAUSED_BY: MANUAL, PAUSE_REASON: reason}
            if record is None:  # nobody's count to keep: a manual resume leaves it at 0 (manual_resume)
                durable |= {PAUSED_AT: rfc3339(now), PAUSE_CAUSE: str(Code.AT_ZERO)}
            was = f"paused by {record.paused_by}" if record and record.paused_by else "at 0 replicas"
            return Write(_annotations(durable), Outcome.CHANGED, 0, 0, 0,
                         f"already {was}; now paused manually until a manual resume",
                         event=("PausedManually", "Normal"))
        who = "manually" if current.manual_pause else (
            f"by {record.paused_by}" if record and record.paused_by else "(at 0 replicas)")
        return Write(None, Outcome.UNCHANGED, 0, 0, 0, f"already paused {who}")
    values: dict[str, str | None] = {  # None: the merge patch removes that annotation
        LAST_REPLICAS: str(replicas),
        PAUSED_AT: rfc3339(now),
        PAUSED_BY: by,
        PAUSE_REASON: reason,
        PAUSE_CAUSE: MANUAL if manual else cause,
        OVERRIDE_UNTIL: None,  # a new pause ends an earlier hands-off period
        NODES: nodes,
    }
    # ... and a person's hold-up that has run out
    values.update({key: None for key in (HOLD_UNTIL, HOLD_FROM) if key in current.annotations})
    if manual:
        values[MANUAL_PAUSE] = "true"
    if relapsed(current, now=now):  # paused while relapsing: that Ready was no warm-up
        values.update(relapse_cleanup(current))
    gpus = current.gpus(replicas)
    return Write(merge(_annotations(values), current.kind.scale_patch(current.obj, 0, now=now)), Outcome.CHANGED,
                 replicas, 0, gpus, f"scaled to zero from {replicas} replicas by {by}: {reason}; {gpus} GPUs freed",
                 event=("ScaledToZero", "Normal"))


def _starting(now: datetime) -> dict:
    """A new start: when it began, and no Ready time yet."""
    return _annotations({STARTED_AT: rfc3339(now), READY_AT: None})


def resume(current: Workload, *, by: str, reason: str, replicas: int, now: datetime,
           hold: Mapping[str, str] | None = None, source: str | None = None) -> Write:
    """Wake a paused workload to `replicas`, the size decided (a policy's
    decision, or `manual_resume`'s), removing scaler's annotations in the
    same patch. A policy never resumes a manual pause, and wakes a zero it
    did not pause only for a queue (`_wake`). `hold`: a person's hold-up
    (`scaler resume --for`). `source`: where `replicas` came from, if not the record."""
    record, hold, before = current.record, dict(hold or {}), current.replicas
    replicas = current.kind.resumed_replicas(current.obj, replicas)  # what a one-unit kind runs at, whatever was asked
    if current.manual_pause and by != MANUAL:
        return Write(None, Outcome.SKIPPED, before, before, 0,
                     "paused manually; only a manual resume (scaler resume) wakes it")
    if record is None and not current.manual_pause:
        if before == 0 and by != MANUAL:
            return _wake(current, by=by, reason=reason, replicas=replicas, now=now)
        return _not_paused(current, by=by, reason=reason, hold=hold)
    recorded = record.last_replicas if record else None
    held = f"; held up until {hold[HOLD_UNTIL]}" if hold else ""
    if before > 0:
        was = f" (recorded {recorded})" if recorded else ""
        return _set_back(current, hold, ("ResumeSkipped", "Normal"), f"someone set replicas to {before} while it "
                         f"was paused{was}; left {before} and cleared the pause record{held}")
    source = source or (f"recorded by {record.paused_by or 'a pause'}" if record and recorded == replicas
                        else f"recorded {recorded}" if recorded else unrestorable(current.annotations) or
                        "no recorded count")
    # The pause held until a resume: no GitOps controller is fighting it (any more).
    clear = {**_present(current, (*PAUSE_STATE, *REVERT_STATE)), **hold}
    gpus = current.gpus(replicas)
    return Write(merge(_annotations(clear), _starting(now), current.kind.scale_patch(current.obj, replicas, now=now)),
                 Outcome.CHANGED, 0, replicas, gpus,
                 f"resumed to {replicas} replicas ({source}) by {by}: {reason}; {gpus} GPUs claimed{held}",
                 event=("Resumed", "Normal"))


def manual_resume(current: Workload, *, reason: str, minimum: int | None, now: datetime,
                  hold: Mapping[str, str] | None = None) -> Write:
    """`scaler resume`: to the recorded count, else `minimum` (None: 1) (a policy's resume is sized by its
    decision). A workload that was at 0 when it was paused by hand (a `pause --all` over a parked
    Deployment, a Job suspended for Kueue) is unpaused and left at 0 unless `minimum` is given: there is
    nothing to restore, and waking it would start what someone had stopped."""
    recorded = current.record.last_replicas if current.record else None
    if (recorded is None and minimum is None and current.manual_pause and current.replicas == 0
            and current.annotations.get(PAUSE_CAUSE) == Code.AT_ZERO):
        clear = _present(current, (*PAUSE_STATE, *REVERT_STATE))
        return Write(_annotations(clear), Outcome.CHANGED, 0, 0, 0,
                     f"pause removed by {MANUAL}: {reason}; it was at 0 replicas when paused, nothing to restore: "
                     "left at 0", event=("Resumed", "Normal"))
    minimum = minimum or 1
    return resume(current, by=MANUAL, reason=reason, replicas=recorded or minimum, now=now, hold=hold,
                  source=None if recorded else
                  f"{unrestorable(current.annotations) or 'no recorded count'}, used the minimum {minimum}")


def _present(current: Workload, keys: tuple[str, ...]) -> dict[str, str | None]:
    """Those of `keys` that are on the object, to remove."""
    return {key: None for key in keys if key in current.annotations}


def _not_paused(current: Workload, *, by: str, reason: str, hold: dict[str, str]) -> Write:
    """Only what scaler paused is scaler's to resume: a zero someone else made
    stays, even in a resume -A. One running takes a person's hold-up, once."""
    replicas = current.replicas
    state = (f"running at {replicas} replicas" if replicas
             else "at 0 replicas, but scaler did not pause it (no scaler.io/ annotations)")
    if hold and replicas and any(current.annotations.get(k) != v for k, v in hold.items()):
        return Write(_annotations(hold), Outcome.CHANGED, replicas, replicas, 0,
                     f"not paused ({state}); held up until {hold[HOLD_UNTIL]} by {by}: {reason}",
                     event=("HeldUp", "Normal"))
    return Write(None, Outcome.UNCHANGED, replicas, replicas, 0, f"not paused: {state}")


def hands_off(current: Workload, *, by: str, reason: str, until: datetime) -> Write:
    """A person set the size of a workload a policy had paused (`reason`: the
    human override's decision): the person wins, and is left alone until `until`."""
    return _set_back(current, {OVERRIDE_UNTIL: rfc3339(until)}, ("ResumeSkipped", "Normal"),
                     f"{reason}; cleared the pause record; {by} leaves it alone until {rfc3339(until)}")


def reverted(current: Workload, *, reason: str, record: dict[str, str], first: bool) -> Write:
    """A GitOps controller set the size back after our pause (`reason`: the
    revert's decision): its record (who, how many in a row, the back-off) is
    written. Only the first revert in a row gets an Event: reported once."""
    return _set_back(current, record, ("PauseReverted", "Warning") if first else None,
                     f"{reason}; not pausing again before {record.get(BACKOFF_UNTIL)}")


def _set_back(current: Workload, values: dict[str, str], event: tuple[str, str] | None, message: str) -> Write:
    """Someone set its size while it was paused: the size stays theirs, the
    pause record goes and `values` are written instead, in one patch."""
    replicas = current.replicas
    if replicas == 0 or (current.record is None and not current.manual_pause):
        return Write(None, Outcome.UNCHANGED, replicas, replicas, 0, "not set back while paused: nothing to record")
    clear = {**_present(current, PAUSE_STATE), **values}
    return Write(_annotations(clear) if clear else None, Outcome.SKIPPED, replicas, replicas, 0, message,
                 event=event)


def _wake(current: Workload, *, by: str, reason: str, replicas: int, now: datetime) -> Write:
    """A queue wakes a workload at zero that scaler did not pause (rule 3a):
    no count to restore, no pause to undo, so no record is left (a later
    pause records its size as usual); leftover override or cause annotations
    go, and the start is recorded, as for any wake."""
    gpus, clear = current.gpus(replicas), _present(current, PAUSE_STATE)
    return Write(merge(_annotations(clear), _starting(now), current.kind.scale_patch(current.obj, replicas, now=now)),
                 Outcome.CHANGED, 0, replicas, gpus,
                 f"woken to {replicas} replicas by {by} (it was at 0, not paused by scaler): {reason}; "
                 f"{gpus} GPUs claimed", event=("Resumed", "Normal"))


def scale_up(current: Workload, *, replicas: int, by: str, reason: str, now: datetime) -> Write:
    """Grow a running workload (never shrink it: that is a pause's job)."""
    before = current.replicas
    if not current.kind.sizable:
        return Write(None, Outcome.UNCHANGED, before, before, 0,
                     f"{current.kind.name} size is not scaler's to set; only pause and wake are")
    if before == 0 or before >= replicas or current.manual_pause:
        why = ("paused; a wake resumes it" if before == 0 or current.manual_pause
               else f"already at {before} replicas (wanted {replicas})")
        return Write(None, Outcome.UNCHANGED, before, before, 0, why)
    gpus = current.gpus(replicas - before)
    return Write(merge(_starting(now), current.kind.scale_patch(current.obj, replicas, now=now)), Outcome.CHANGED,
                 before, replicas, gpus,
                 f"scaled up from {before} to {replicas} replicas by {by}: {reason}; {gpus} GPUs claimed",
                 event=("ScaledUp", "Normal"))


def record_start(current: Workload, *, now: datetime, ready_at: datetime | None = None) -> Write:
    """Someone else scaled it up (or a pod restarted): it is loading, from now."""
    return Write(_starting(now), Outcome.CHANGED, current.replicas, current.replicas, 0,
                 "loading: start recorded")


def record_ready(current: Workload, *, now: datetime, ready_at: datetime | None = None,
                 node_ready_at: datetime | None = None) -> Write:
    """Every replica is Ready: since `ready_at` (the pods' Ready condition; else now), how long the warm-up
    took and, with `node_ready_at` (the last new node Ready: it waited for nodes), how much was the node's.
    Never before the start it ends: a pass whose `now` was taken before another pass recorded that start
    would otherwise leave the start open, and a second Ready would follow."""
    started = parse_time(current.annotations.get(STARTED_AT))
    ready = max(min(ready_at or now, now), started or now)
    seconds = max(ready.timestamp() - started.timestamp(), 0.0) if started else None
    values: dict = {**ready_record(current, ready),  # startup_grace counts from it
                    **({NODE_WAIT: None} if NODE_WAIT in current.annotations else {})}
    message = f"all {current.replicas} replicas Ready"
    if seconds is not None:
        values[WARM_UPS] = ",".join(f"{v:.0f}" for v in [*warm_ups(current.annotations), seconds][-WARM_UPS_KEPT:])
        node = min(node_ready_at.timestamp() - started.timestamp(), seconds) if node_ready_at and started else -1
        values |= {NODE_WAIT: f"{node:.0f}"} if node >= 0 else {}
        split = f" (node Ready after {node:.0f}s, model {seconds - node:.0f}s more)" if node >= 0 else ""
        message = f"Ready {seconds:.0f}s after its start{split}: {message}"
    return Write(_annotations(values), Outcome.CHANGED, current.replicas, current.replicas, 0, message,
                 event=("Ready", "Normal"))


def reopen_start(current: Workload, *, now: datetime, ready_at: datetime | None = None) -> Write:
    """NotReady again soon after all Ready (starts.relapsed): the same start goes on."""
    ready = parse_time(current.annotations.get(READY_AT))
    after = f" {max((now - ready).total_seconds(), 0):.0f}s" if ready is not None else ""
    return Write(_annotations(relapse_cleanup(current)), Outcome.CHANGED, current.replicas, current.replicas, 0,
                 f"NotReady again{after} after all Ready: the same start, still counted from "
                 f"{current.annotations.get(STARTED_AT)} (a crash loop is let go at max_startup)")


#: scaler's own annotations: every write tests them as read, so two writers
#: (two daemons, the daemon and a person's `scaler resume`) never overwrite
#: each other's record.
GUARDED_ANNOTATIONS = (*PAUSE_STATE, OVERRIDE_UNTIL, HOLD_UNTIL, *REVERT_STATE, LAST_ACTION)


def _pointer(path: tuple[str, ...]) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in path)


def _dig(obj, path: tuple[str, ...]):
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _leaves(patch: dict, path: tuple[str, ...] = ()):
    for key, value in patch.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, (*path, key))
        else:
            yield (*path, key), value


#: What a JSON-patch `test` of a string can match on kube-apiserver: it
#: compares the JSON encodings, and the server's escapes <, > and & and
#: writes other characters raw, so a test of "a>b" or "é" fails whatever
#: the object holds (recorded: tests/fixtures/api/exchanges.json).
_TESTABLE = re.compile(r"[ -~]*")
_UNTESTABLE = re.compile(r"[<>&]")


def testable(value: Any) -> bool:
    """Whether a `test` of `value` can succeed on the real API server. Free
    text (a pause reason with "queue 3 > 0", a person's "café") cannot; the
    fields written with it (the pause time, the action record's id) guard it."""
    return not isinstance(value, str) or (_TESTABLE.fullmatch(value) is not None
                                          and _UNTESTABLE.search(value) is None)


def json_patch(patch: dict, current: Workload) -> list[dict]:
    """The merge patch `patch` as JSON-patch operations, after `test`s that
    the fields it writes and scaler's annotations still hold what was read.

    A concurrent change to the replica count or to scaler's record fails a
    test (422: re-read and work the write out again), whether or not the write
    sets the count: every write was worked out from the count as read (a
    human override's write, which drops the record, must not land on a
    workload set back to 0 since, nor a manual pause "already at 0" on one
    scaled up since); a change to anything else (another annotation, a
    label, the image) does not, so unrelated writers cause no conflict (a
    size field whose parent is missing is not tested: the server refuses a
    `test` below a missing parent). A missing field is tested as null. An object
    with no annotations at all is the one exception: the whole map is tested
    absent and added, so anyone's first annotation on it in between costs one
    re-read. A value the server cannot test (see `testable`) is not tested;
    the record's other fields, written with it, are."""
    obj = current.obj
    annotations = _dig(obj, ("metadata", "annotations"))
    size = current.kind.size_field
    guarded = {path for path, _ in _leaves(patch)} | ({size} if isinstance(_dig(obj, size[:-1]), dict) else set())
    if isinstance(annotations, dict):
        guarded |= {("metadata", "annotations", key) for key in GUARDED_ANNOTATIONS}
    else:
        # No annotations at all: the map itself must still be absent, and is added whole.
        guarded = {path for path in guarded if path[:2] != ("metadata", "annotations")}
        guarded.add(("metadata", "annotations"))
    tests = [{"op": "test", "path": _pointer(path), "value": value} for path in sorted(guarded)
             if testable(value := _dig(obj, path))]
    ops: list[dict[str, Any]] = []
    new_annotations: dict[str, Any] = {}
    for path, value in _leaves(patch):
        if path[:2] == ("metadata", "annotations") and not isinstance(annotations, dict):
            if value is not None:
                new_annotations[path[2]] = value
        elif value is None:
            if _dig(obj, path) is not None:
                ops.append({"op": "remove", "path": _pointer(path)})
        else:
            ops.append({"op": "add", "path": _pointer(path), "value": value})
    if new_annotations:
        ops.append({"op": "add", "path": "/metadata/annotations", "value": new_annotations})
    return tests + ops
