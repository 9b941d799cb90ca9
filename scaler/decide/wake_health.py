"""Whether a workload at zero can be woken by its wake signal (docs/policies.md,
"Can it be woken?"). Pure: the evaluation gives what Prometheus answered.

A workload at zero is woken only by a wake signal that exists while it is at
zero. For each one a wake signal covers, the answer is one of:
- its series is there (a number): it can be woken;
- no series, and the signal says `absent: zero` (a holder that exports
  nothing while nobody waits): no demand, read as 0, nothing to report;
- no series (`absent: unknown`, the default), a NaN or ±Inf value, or the
  query failing: unknown, held; once that has lasted the signal's
  `blocked_after` it *cannot wake*, named as such.

Absence is read as zero only for a workload at zero, whose only way is up:
for a running workload it stays unknown, so a missing series never scales
anything down.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from scaler.decide.policies import Absent, WakeSignal


class Blocked(str, Enum):
    """Why a workload at zero cannot be woken (the `reason` of `scaler_wake_blocked`)."""

    NO_SERIES = "no-series"
    UNUSABLE = "unusable"
    QUERY_FAILING = "query-failing"


def absent_reading(value: float | None, *, present: bool, answered: bool, replicas: int,
                   wake: WakeSignal) -> float | None:
    """The wake signal's value for the decision. A workload at zero without a
    series, from a query that answered, reads 0 when the signal declares
    `absent: zero`; everything else as it came (None: unknown)."""
    if value is None and answered and not present and replicas == 0 and wake.absent is Absent.ZERO:
        return 0.0
    return value


@dataclass(frozen=True)
class WakeHealth:
    """A workload at zero whose wake signal has no usable value."""

    reason: Blocked
    #: How long it has been so, in seconds; None: longer than was looked at (`looked_seconds`).
    for_seconds: float | None
    looked_seconds: float
    #: It has lasted the signal's `blocked_after`: it cannot be woken.
    blocked: bool
    sentence: str


_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or",
             "unless", "inf", "nan", "start", "end"}
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(query: str) -> list[str]:
    """The metric names a PromQL query reads, in order, for a person to read
    (functions, keywords, label names and strings left out). Best effort: a
    name it cannot tell from a label is still only shown, never used."""
    # strings and comments, read left to right: a '#' inside a string is text
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`|#[^\n]*', " ", query)
    text = re.sub(r"\{[^}]*\}", "{}", text)  # matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    names = []
    for match in _NAME.finditer(text):
        name, rest = match.group(), text[match.end():].lstrip()
        if name.lower() in _KEYWORDS or rest.startswith("("):
            continue
        if name not in names:
            names.append(name)
    return names


def series_of(wake: WakeSignal, namespace: str, name: str) -> str:
    """'gateway_pending_requests{namespace=llm,workload=chat}': what was looked for."""
    labels = f"{{{wake.namespace_label}={namespace},{wake.workload_label}={name}}}"
    names = metric_names(wake.query)
    return " or ".join(f"{metric}{labels}" for metric in names[:3]) if names else f"the wake query{labels}"


def lasted(seconds: float) -> str:
    """'2 h', '2 h 5 min', '45 min', '30 s'."""
    seconds = int(seconds)
    hours, minutes = seconds // 3600, seconds % 3600 // 60
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min" if minutes else f"{seconds} s"


def health(reason: Blocked, *, wake: WakeSignal, namespace: str, name: str, for_seconds: float | None,
           looked_seconds: float, error: str | None = None) -> WakeHealth:
    """The sentence for a workload at zero without a usable wake value:
    'cannot wake: no series for X for 2 h' once it lasted `blocked_after`."""
    blocked = for_seconds is None or for_seconds >= wake.blocked_after_seconds
    how_long = f" for more than {lasted(looked_seconds)}" if for_seconds is None else \
        f" for {lasted(for_seconds)}" if for_seconds >= 1 else ""
    what = {Blocked.NO_SERIES: f"no series for {series_of(wake, namespace, name)}",
            Blocked.UNUSABLE: f"the wake signal is NaN or ±Inf for {series_of(wake, namespace, name)}",
            Blocked.QUERY_FAILING: "the wake query fails"}[reason]
    sentence = f"{'cannot wake: ' if blocked else ''}{what}{how_long}"
    if error:
        sentence += f" ({error})"
    return WakeHealth(reason, for_seconds, looked_seconds, blocked, sentence)
