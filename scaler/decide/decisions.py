"""The vocabulary of a decision: what is known about a workload, its signals,
the decision itself, and which policy applies to it.

Pure: no I/O, no clock. The rules that turn these into a `Decision` are in
`precedence`, one function per row of the README's table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, StrEnum

from scaler.decide.annotations import EXCLUDE, LAST_REPLICAS
from scaler.decide.fields import MAX_REPLICAS
from scaler.decide.policies import Policy

#: Namespaces never managed, whatever the policies say; the daemon adds its own.
DEFAULT_EXCLUDED_NAMESPACES: frozenset[str] = frozenset({"kube-system"})
#: `paused_by` of a pause a policy made: "policy/<name>".
POLICY_PAUSE_PREFIX = "policy/"
#: `paused_by` of a pause a person made with `scaler pause`.
MANUAL = "manual"


class Action(str, Enum):
    PAUSE = "pause"  # scale to 0 and record the current size
    RESUME = "resume"  # from 0 back up; clears the pause record
    SCALE_UP = "scale_up"  # running, more replicas
    HOLD = "hold"  # change nothing
    CONFLICT = "conflict"  # two policies of equal priority match; change nothing
    SKIP = "skip"  # no policy matches; not managed


class Code(StrEnum):
    """The machine-readable reason, one per row of the precedence table."""

    NO_POLICY = "no-policy"
    CONFLICT = "conflict"
    MANUAL_PAUSE = "manual-pause"
    KEEP_DOWN_WINDOW = "keep-down-window"
    QUEUE_WAKE = "queue-wake"
    QUEUE_SCALE_UP = "queue-scale-up"
    KEEP_UP_WINDOW = "keep-up-window"
    PREWARM = "prewarm"
    STARTING = "starting"
    OUTSIDE_DOWN = "outside-down"
    WINDOW_ENDED = "keep-down-window-ended"
    HUMAN_OVERRIDE = "human-override"
    GITOPS_REVERT = "gitops-revert"
    GITOPS_BACKOFF = "gitops-backoff"
    HELD_UP = "held-up"
    METRICS_UNKNOWN = "metrics-unknown"
    AT_ZERO = "at-zero"
    BUSY = "busy"
    STARTUP_GRACE = "startup-grace"
    SCALE_DOWN_DELAY = "scale-down-delay"
    IDLE_TIMEOUT = "idle-timeout"
    IDLE_SINCE_READY = "idle-window-since-ready"
    NO_RULE = "no-rule"


#: A recorded count as scaler writes it: ASCII digits (int() would also read "3_0" as 30, or other scripts' digits).
_COUNT = re.compile(r"[0-9]+")


def recorded_count(text: str | None) -> int | None:
    """The count a pause recorded (scaler.io/last-replicas, whitespace around it
    aside), or None when there is none a resume can restore: absent, or not a
    whole number of replicas from 1 to MAX_REPLICAS (past int32 no API server
    takes it)."""
    if text is None or not _COUNT.fullmatch(text.strip()):
        return None
    count = int(text)
    return count if 0 < count <= MAX_REPLICAS else None


def unrestorable(annotations: Mapping[str, str]) -> str | None:
    """Why the recorded count cannot be restored (a hand edit: "3.0", "", "-2",
    JSON), for the reason of a resume that uses a minimum instead; None when
    none was recorded, or it can be."""
    text = annotations.get(LAST_REPLICAS)
    if text is None or recorded_count(text) is not None:
        return None
    return f"the recorded count {text!r} is not a replica count (digits, 1 to {MAX_REPLICAS})"


@dataclass(frozen=True)
class WorkloadState:
    """What the decision needs to know about one workload, read from the
    cluster once per tick."""

    kind: str
    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    replicas: int = 0
    #: The size recorded by a pause (never 0), or None.
    last_replicas: int | None = None
    #: "policy/<name>" or "manual" from the pause record, or None.
    paused_by: str | None = None
    #: The durable manual-pause annotation is set.
    manual_pause: bool = False
    #: Replicas Ready now.
    ready_replicas: int = 0
    #: When its current start began (scaler.io/started-at), if recorded.
    started_at: datetime | None = None
    #: When all its replicas were first Ready after that start (scaler.io/ready-at).
    ready_at: datetime | None = None
    #: Recent warm-ups, start to all Ready, in seconds (scaler.io/warm-up-seconds).
    warm_ups: tuple[float, ...] = ()
    #: The reason code of the rule that paused it (scaler.io/pause-cause), if recorded.
    pause_cause: str | None = None
    #: Who last set its size: the managedFields manager, as its kind reads them.
    #: Read where it matters, running with a pause record on it (None: unknown or not read).
    size_writer: str | None = None
    #: That manager is a GitOps controller (one of the daemon's --gitops-managers), not a person.
    size_writer_gitops: bool = False
    #: Where its size is (its kind's field): what a GitOps tool must leave alone.
    size_field: tuple[str, ...] = ("spec", "replicas")
    #: Whether scaler may set its size (its kind's `sizable`): a one-unit kind (a Job, an
    #: InferenceService) is only stopped and started, so a queue wakes it but never sizes it.
    sizable: bool = True
    #: What a kind scaler does not size runs at once started (its controller's size: a Job 1, an
    #: InferenceService its minReplicas): the size its resume decides, whatever was recorded.
    started_replicas: int = 1

    @property
    def paused_by_policy(self) -> bool:
        """True if scaler's own policy paused it (so scaler may resume it)."""
        return self.paused_by is not None and self.paused_by.startswith((POLICY_PAUSE_PREFIX, "policy:"))

    @property
    def unrestorable(self) -> str | None:
        """Why the count its pause recorded cannot be restored, if one was and cannot be."""
        return unrestorable(self.annotations)

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @property
    def loaded_at(self) -> datetime | None:
        """When its current start finished (all Ready), or None while loading
        or if no start was ever recorded."""
        if self.ready_at is None or (self.started_at is not None and self.ready_at < self.started_at):
            return None
        return self.ready_at

    def loaded_within(self, max_startup_seconds: float) -> datetime | None:
        """`loaded_at`, if its start ended in less than `max_startup_seconds`.
        A start that took longer was not loading (a crash loop Ready at last,
        its cycles one start): it earns no startup grace, and its idle window
        does not count from that Ready, or a model NotReady one second a
        minute would be held for good."""
        loaded = self.loaded_at
        if loaded is not None and self.started_at is not None \
                and (loaded - self.started_at).total_seconds() >= max_startup_seconds:
            return None
        return loaded


@dataclass(frozen=True)
class Signals:
    """One value per signal for one workload; None = unknown (no series,
    NaN, Inf, a query error or timeout). `idle` is the signal's maximum over
    the policy's idle duration, unknown unless Prometheus saw the signal
    through that duration; `wake` is the wake signal now (a queue's depth).
    The fields are named as the signals are (`signals.queries.SIGNALS`)."""

    idle: float | None = None
    wake: float | None = None
    #: Why a signal is unknown, where that is known: "idle" -> "no data from
    #: 2026-05-04 10:02:00 to 10:03:00 UTC"; the unknown-signal row says it.
    why: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Decision:
    action: Action
    #: The target replica count; the current count for hold/conflict/skip.
    replicas: int
    reason: str
    reason_code: Code
    #: The policy that decided, if one did.
    policy: str | None = None
    #: A hold that still writes on the object (its rule is declared `writes_while_holding`:
    #: the record of a human override or of a GitOps revert). Set by `decide`, from the rule.
    writes_while_holding: bool = False

    @property
    def changes(self) -> bool:
        return self.action in (Action.PAUSE, Action.RESUME, Action.SCALE_UP)

    @property
    def writes(self) -> bool:
        """Whether acting on it writes to the object: a change of size, or a hold that records."""
        return self.changes or self.writes_while_holding


@dataclass(frozen=True)
class Conflict:
    """Several policies match one workload with the same, highest priority."""

    policies: tuple[str, ...]
    priority: int

    def __str__(self) -> str:
        names = " and ".join(repr(name) for name in self.policies)
        return f"policies {names} all match with priority {self.priority}"


def is_excluded(workload: WorkloadState, *,
                excluded_namespaces: Iterable[str] = DEFAULT_EXCLUDED_NAMESPACES) -> bool:
    """Never managed: a namespace on the global exclusion list (kube-system and
    the daemon's own), or the annotation scaler.io/exclude: "true"."""
    return workload.namespace in excluded_namespaces or workload.annotations.get(EXCLUDE) == "true"


def select_policy(policies: Iterable[Policy], workload: WorkloadState, *,
                  namespace_labels: Mapping[str, str]) -> Policy | Conflict | None:
    """The highest-priority policy matching the workload; a Conflict if
    several share that priority; None if none matches."""
    best: Policy | None = None
    tied: list[str] = []
    kind, namespace, labels = workload.kind, workload.namespace, workload.labels
    for policy in policies:
        if best is not None and policy.priority < best.priority:
            continue  # cannot win: skip the matching
        if not policy.targets.matches(kind=kind, namespace=namespace, labels=labels,
                                      namespace_labels=namespace_labels):
            continue
        if best is None or policy.priority > best.priority:
            best, tied = policy, []
        else:
            tied.append(policy.name)
    if best is not None and tied:
        return Conflict((best.name, *tied), best.priority)
    return best
