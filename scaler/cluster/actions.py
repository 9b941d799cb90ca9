"""Every action leaves its record on the object, and its Event is named after
that record, so the Event is posted exactly once, whoever posts it.

A write that calls for an Event (a pause, a resume, a Ready, ...) carries
`scaler.io/last-action` in the same patch: an id, the Event's reason, type
and message, and when. The Event's name is derived from the workload and
that id. The daemon posts it as soon as the write lands; if it is killed
first, the next daemon (after a restart, or a standby taking over) finds the
record, sees no Event of that name, and posts it, saying so. A second post
of the same Event is refused by the API server as a name already taken, so
two daemons racing to post it still make one.

Pure: builds values, sends nothing.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime

from scaler.cluster.kube import Resource
from scaler.cluster.workloads import Workload
from scaler.decide.annotations import LAST_ACTION
from scaler.decide.times import parse_time, rfc3339

EVENTS = Resource("", "v1", "events")
#: On every Event scaler posts: one LIST finds them all.
MANAGED_BY = ("app.kubernetes.io/managed-by", "scaler")
#: What an Event posted for a record another daemon (or run) left says, after its message.
OWED_NOTE = "posted by the next daemon: the one that acted stopped before it could"
#: The most characters of a message the record keeps and an Event says.
MESSAGE_CHARS = 1024
#: kube-apiserver keeps Events this long by default (--event-ttl): a record
#: older than this whose Event is not found was posted and has expired.
DEFAULT_EVENT_TTL_SECONDS = 3600.0


@dataclass(frozen=True)
class ActionRecord:
    """What `scaler.io/last-action` holds."""

    id: str
    reason: str
    type: str
    message: str
    at: str

    @classmethod
    def new(cls, *, reason: str, type_: str, message: str, now: datetime) -> ActionRecord:
        return cls(secrets.token_hex(8), reason, type_, clip(message), rfc3339(now))

    def annotation(self) -> dict:
        """The merge patch part that records it."""
        return {"metadata": {"annotations": {LAST_ACTION: json.dumps(asdict(self), separators=(",", ":"))}}}

    @classmethod
    def read(cls, annotations: dict) -> ActionRecord | None:
        """The record on an object, or None (absent, or not one of ours)."""
        try:
            data = json.loads(annotations.get(LAST_ACTION) or "")
            record = cls(**{key: str(data[key]) for key in ("id", "reason", "type", "message", "at")})
        except (ValueError, TypeError, KeyError):
            return None
        return record if record.id.isalnum() and parse_time(record.at) is not None else None


def clip(text: str, limit: int = MESSAGE_CHARS) -> str:
    """`text` in at most `limit` characters: whole, or cut after its last whole word that fits and
    ended with "…", so no word or number reads as another (a count of 12 cut to 1)."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    if not text[limit - 1].isspace():  # the cut fell in a word: drop what of it was kept
        cut = cut.rpartition(" ")[0] or cut
    return cut.rstrip(" ,;:") + "…"


def event_name(workload_name: str, action_id: str) -> str:
    """The Event's name: a DNS subdomain (at most 253 characters) per action."""
    return f"{workload_name[:236]}.{action_id}"


def event(workload: Workload, record: ActionRecord, *, component: str, instance: str, note: str = "") -> dict:
    """The core/v1 Event that records `record`'s action on `workload`."""
    meta = workload.obj["metadata"]
    note = f" ({note})" if note else ""
    message = clip(record.message, MESSAGE_CHARS - len(note)) + note  # the note whole: who posted it, and why
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": event_name(workload.name, record.id), "namespace": workload.namespace,
                     "labels": dict([MANAGED_BY])},
        "involvedObject": {
            "apiVersion": workload.kind.resource.api_version, "kind": workload.kind.name,
            "name": workload.name, "namespace": workload.namespace,
            "uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": record.reason, "message": message, "type": record.type,
        "source": {"component": component},
        "reportingComponent": component, "reportingInstance": instance,
        "firstTimestamp": record.at, "lastTimestamp": record.at, "count": 1,
    }


def owed(workloads: Iterable[Workload], posted: set[tuple[str, str]], *, now: datetime,
         ttl_seconds: float = DEFAULT_EVENT_TTL_SECONDS) -> list[tuple[Workload, ActionRecord]]:
    """The actions whose Event is not among `posted` ((namespace, name) of
    scaler's Events), recorded less than `ttl_seconds` ago (an older one's
    Event may have been posted and expired: posting it again would repeat it),
    or after `now`: written by a clock ahead of this one (another replica's,
    or this one's before it stepped back), its Event cannot have expired."""
    found = []
    for workload in workloads:
        record = ActionRecord.read(workload.annotations)
        if record is None or (workload.namespace, event_name(workload.name, record.id)) in posted:
            continue
        at = parse_time(record.at)
        if at is not None and (now - at).total_seconds() < ttl_seconds:
            found.append((workload, record))
    return found
