"""The PromQL scaler sends: one query per policy signal, answered per workload
by (namespace, workload) labels; and `SIGNALS`, the one table of the signals
a policy may declare. Pure: builds strings, sends nothing."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from scaler.decide.policies import IdleSignal, Policy, WakeSignal

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

@dataclass(frozen=True)
class SignalQuery:
    """A query as sent, and how to read its result."""

    promql: str
    namespace_label: str
    workload_label: str


def _check_labels(namespace_label: str, workload_label: str) -> None:
    for label in (namespace_label, workload_label):
        if not LABEL_NAME.match(label):
            raise ValueError(f"{label!r} is not a valid Prometheus label name")


def _enclosed(expr: str) -> str:
    """The policy's PromQL in parentheses, on lines of its own: a `#`
    comment runs to the end of its line, so a comment at the end of the
    policy's query would otherwise swallow the closing parenthesis and all
    that follows. Nothing is stripped, so a `#` inside a string stays as is."""
    return f"(\n{expr}\n)"


def resolution_seconds(duration_seconds: float) -> int:
    """Subquery step: about 60 points over the idle window, 1 s to 60 s."""
    return int(min(60, max(1, duration_seconds // 60)))


def idle_query(expr: str, *, duration_seconds: float, namespace_label: str, workload_label: str) -> SignalQuery:
    """The signal's maximum over the idle window, per workload, computed by
    Prometheus so a daemon restart does not reset anyone's idle clock.

    Three guards keep missing or unusable data from looking idle: the signal
    must be seen (`seen`: a finite value) now, not stale nor NaN nor ±Inf;
    at the start of the window (a window Prometheus saw only the end of is
    not a full idle window); and at every step of the window but at most
    `GAP_TOLERANCE_STEPS` (`seen_throughout`: `max_over_time` alone skips a
    hole, a NaN and a -Inf). A +Inf anywhere in the window is the maximum,
    which the reader of the answer calls unknown."""
    _check_labels(namespace_label, workload_label)
    by = f"by ({namespace_label}, {workload_label})"
    on = f"on ({namespace_label}, {workload_label})"
    seconds = math.ceil(duration_seconds)
    step = resolution_seconds(duration_seconds)
    lookback = max(2 * step, 30)
    promql = (
        f"max {by} (max_over_time({_enclosed(expr)}[{seconds}s:{step}s]))"
        f" and {on} {seen(expr, by=by)}"
        f" and {on} last_over_time({seen(expr, by=by)}[{lookback}s:{step}s] offset {seconds}s)"
    )
    promql += f" and {on} ({seen_throughout(expr, by=by, seconds=seconds, step=step)})"
    return SignalQuery(promql, namespace_label, workload_label)


#: Steps of the idle window's subquery that may go unseen before the window
#: is unknown: one lost scrape, or a series a step late at the window's edge.
GAP_TOLERANCE_STEPS = 1


def seen(expr: str, *, by: str) -> str:
    """The signal per workload where it is seen: a finite value. A
    comparison drops what fails it, and NaN fails every one, so `> -Inf <
    +Inf` drops NaN, -Inf and +Inf (`>= -Inf` would keep -Inf, and an
    aggregation or `max_over_time` skips NaN and -Inf). The user's
    expression is on lines of its own: a `# comment` in it ends at its line."""
    return f"(max {by} (\n{expr}\n) > -Inf < +Inf)"


def seen_throughout(expr: str, *, by: str, seconds: int, step: int) -> str:
    """The workloads whose signal was seen at every step of the idle window's
    subquery but at most GAP_TOLERANCE_STEPS. A step is unseen when no series
    has a sample within Prometheus's lookback (a stale marker after a failed
    scrape ends it at once) or the value is NaN or ±Inf (`seen`).
    Prometheus counts the steps too (`vector(1)` over the same subquery), so
    the bound holds however the instant falls on the step grid and whether
    the subquery's range includes its start (Prometheus 2) or not (3)."""
    window = f"[{seconds}s:{step}s]"
    return (f"count_over_time({seen(expr, by=by)}{window})"
            f" >= scalar(count_over_time(vector(1){window})) - {GAP_TOLERANCE_STEPS}")


def seen_query(expr: str, *, namespace_label: str, workload_label: str) -> SignalQuery:
    """The idle signal per workload as `seen_throughout` reads it at each step:
    asked as a range query over the window to say where it was not seen."""
    _check_labels(namespace_label, workload_label)
    return SignalQuery(f"max by ({namespace_label}, {workload_label}) (\n{expr}\n)", namespace_label,
                       workload_label)


def wake_query(expr: str, *, namespace_label: str, workload_label: str) -> SignalQuery:
    """The wake signal (a queue's depth) right now, summed per workload
    (several routers may report it)."""
    _check_labels(namespace_label, workload_label)
    return SignalQuery(f"sum by ({namespace_label}, {workload_label}) {_enclosed(expr)}", namespace_label,
                       workload_label)


@dataclass(frozen=True)
class Signal:
    """One signal a policy may declare, and everything scaler needs to know
    about it. Its `name` is its one name everywhere: the policy's key, the
    field of `decide.decisions.Signals` the decision reads, the `signal`
    label of scaler_queries_total, scaler_query_errors_total and
    scaler_signal_unknown_workloads, and the word in "… signal unknown"."""

    name: str
    #: The policy's rule for this signal, or None when it declares none.
    rule: Callable[[Policy], IdleSignal | WakeSignal | None]
    #: The instant query for a policy's rule: one per policy, answered for all
    #: its workloads at once. A range query over the same expression is its history (`scaler backtest`).
    query: Callable[[Policy], SignalQuery]
    #: Asked on the wake checks too (paused workloads only), not only on full evaluations.
    on_wake_checks: bool
    #: A workload at zero without a value counts as unknown. Not for the idle
    #: signal: at zero its pods, and so its series, are gone.
    unknown_at_zero: bool

    def of(self, policy: Policy) -> SignalQuery | None:
        """This signal's query for `policy`, or None when it declares none."""
        return self.query(policy) if self.rule(policy) is not None else None


def _idle(policy: Policy) -> SignalQuery:
    rule = policy.idle
    assert rule is not None
    return idle_query(rule.query, duration_seconds=rule.duration_seconds, namespace_label=rule.namespace_label,
                      workload_label=rule.workload_label)


def _wake(policy: Policy) -> SignalQuery:
    rule = policy.wake
    assert rule is not None
    return wake_query(rule.query, namespace_label=rule.namespace_label, workload_label=rule.workload_label)


IDLE = Signal("idle", rule=lambda policy: policy.idle, query=_idle, on_wake_checks=False, unknown_at_zero=False)
WAKE = Signal("wake", rule=lambda policy: policy.wake, query=_wake, on_wake_checks=True, unknown_at_zero=True)
#: Every signal, in the order they are asked and reported.
SIGNALS: tuple[Signal, ...] = (IDLE, WAKE)


def last_seen_query(expr: str, *, namespace_label: str, workload_label: str, window_seconds: int,
                    step_seconds: int) -> SignalQuery:
    """When the wake signal last had a series per workload, as a Unix time,
    within `window_seconds` (absent: not seen in that window). `timestamp()`
    of the per-workload sum is the step it was seen at."""
    _check_labels(namespace_label, workload_label)
    by = f"by ({namespace_label}, {workload_label})"
    return SignalQuery(f"max {by} (last_over_time(timestamp(sum {by} {_enclosed(expr)})"
                       f"[{window_seconds}s:{step_seconds}s]))", namespace_label, workload_label)
