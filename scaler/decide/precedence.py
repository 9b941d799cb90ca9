"""The precedence table as code: what one policy wants for one workload at one
instant.

One function per row of the README's table ("How it decides"), listed in
order in `RULES`; the first row that answers decides. Each row reads the
same `Facts`, worked out once per decision. tests/test_decisions.py is the
specification, row by row.

Each row declares beside its function, with `@rule` (decide/rules.py), what
the daemon and the replay must know about it: the reason codes it answers
with, which of them time alone changes, whether it acts on the schedule
alone, and whether its hold still writes. The sets they use
(`SCHEDULE_CODES`, `TIMELESS`, `WRITES_WHILE_HOLDING`) are derived from
`RULES`, never kept by hand: adding a row is adding its function here.

Pure: no I/O, no clock. A signal value is `float | None`; None (and NaN,
±Inf) means unknown, and an unknown signal never leads to a scale-down. Only
a schedule (a keep-down window, or `outside: down`) or a person's pause
(`scaler.io/paused`) may scale down while metrics are unavailable: neither
depends on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from scaler.decide.annotations import OVERRIDE_UNTIL
from scaler.decide.decisions import (
    POLICY_PAUSE_PREFIX,
    Action,
    Code,
    Conflict,
    Decision,
    Signals,
    WorkloadState,
)
from scaler.decide.facts import Facts, beside, known
from scaler.decide.policies import OnUnknown, Policy
from scaler.decide.reverts import (
    advice,
    backoff_until,
    hold_until,
    reverted_by,
    reverts_of,
)
from scaler.decide.rules import Rule, rule, schedule_codes, timeless_codes, writing_codes
from scaler.decide.times import human_duration, later, parse_time, seconds_between
from scaler.decide.windows import next_edge


def _set_back(f: Facts) -> bool:
    """Running again while the record of a policy's pause is still on it:
    someone set its size after the pause."""
    workload = f.workload
    return f.current > 0 and workload.last_replicas is not None and workload.paused_by_policy


@rule("1", Code.MANUAL_PAUSE)
def manual_pause(f: Facts) -> Decision | None:
    """1. A person paused it: only a person wakes it. The annotation set by
    hand on a running workload pauses it, as KServe's stop annotation stops
    a service; one resized by hand after its pause is left as the person set it."""
    workload, current = f.workload, f.current
    if not workload.manual_pause:
        return None
    if current == 0:
        return f.hold("paused by hand (scaler.io/paused=true); only a manual resume wakes it", Code.MANUAL_PAUSE)
    if workload.last_replicas is None and workload.paused_by is None:  # no pause made: the annotation alone
        return f.decision(Action.PAUSE, 0, f"paused by hand (scaler.io/paused=true set on it): pausing {current} "
                          "replicas; only a manual resume wakes it", Code.MANUAL_PAUSE)
    recorded = f" (recorded {workload.last_replicas})" if workload.last_replicas else " (paused at 0)"
    return f.hold(f"paused by hand (scaler.io/paused=true), but someone set replicas to {current} since{recorded}: "
                  f"leaving {current}; scaler resume hands it back to its policy", Code.MANUAL_PAUSE)


@rule("1b", Code.HUMAN_OVERRIDE, writes_while_holding=True)
def human_override(f: Facts) -> Decision | None:
    """1b. Someone (not a GitOps controller) set its size while scaler had it
    paused: the person wins. The daemon drops the record and keeps its hands
    off (`hands_off`) until the policy's next window edge."""
    workload, current = f.workload, f.current
    if not _set_back(f) or workload.size_writer_gitops:
        return None
    return f.hold(f"someone set replicas to {current} while {workload.paused_by} had it paused "
                  f"(recorded {workload.last_replicas}): leaving {current}", Code.HUMAN_OVERRIDE)


@rule("1c", Code.GITOPS_REVERT, writes_while_holding=True)
def gitops_revert(f: Facts) -> Decision | None:
    """1c. A GitOps controller set its size back after scaler's pause: the
    daemon drops the record, writes the revert's and backs off
    (`gitops_backoff`), longer with each revert in a row."""
    workload, current = f.workload, f.current
    if not _set_back(f) or not workload.size_writer_gitops:
        return None
    count = reverts_of(workload.annotations) + 1
    return f.hold(f"pause reverted by {workload.size_writer} ({count} time{'s' if count != 1 else ''} in a row): "
                  f"replicas set back to {current} while {workload.paused_by} had it paused (recorded "
                  f"{workload.last_replicas}): leaving {current} and backing off; {advice(workload.size_field)}",
                  Code.GITOPS_REVERT)


@rule("1b", Code.HUMAN_OVERRIDE, reads_clock=True)
def hands_off(f: Facts) -> Decision | None:
    """1b. Someone set its size while paused, recently: left alone until then."""
    until = parse_time(f.workload.annotations.get(OVERRIDE_UNTIL))
    if until is not None and f.now < until:
        return f.hold(f"resized by hand while paused: left alone until {until:%Y-%m-%d %H:%M %Z} "
                      f"({OVERRIDE_UNTIL})", Code.HUMAN_OVERRIDE)
    return None


@rule("1c", Code.GITOPS_BACKOFF, reads_clock=True)
def gitops_backoff(f: Facts) -> Decision | None:
    """1c. A GitOps controller set the replicas back after scaler's pause:
    no pause until the back-off (growing with each revert) is over."""
    until = backoff_until(f.workload.annotations)
    if f.current == 0 or until is None or f.now >= until:
        return None
    who = reverted_by(f.workload.annotations) or "a GitOps controller"
    count = reverts_of(f.workload.annotations)
    return f.hold(f"pause reverted by {who} ({count} time{'s' if count != 1 else ''} in a row); backing off: "
                  f"no pause before {until:%Y-%m-%d %H:%M %Z}; {advice(f.workload.size_field)}", Code.GITOPS_BACKOFF)


@rule("1d", Code.HELD_UP, Code.QUEUE_SCALE_UP, reads_clock=[Code.HELD_UP])
def held_up(f: Facts) -> Decision | None:
    """1d. A person woke it for a while (`scaler resume --for/--until`): no
    pause, not even by a keep-down window, until then; a queue may still
    grow it."""
    schedule = f.policy.schedule
    until = hold_until(f.workload.annotations,
                       next_edge_after=(lambda start: next_edge(schedule.compiled, start)) if schedule else None)
    if f.current == 0 or until is None or f.now >= until:
        return None
    return queue_scale_up(f) or f.hold(f"woken by hand until {until:%Y-%m-%d %H:%M %Z} (scaler.io/hold-up-until): "
                                       "no pause before then", Code.HELD_UP)


@rule("2", Code.KEEP_DOWN_WINDOW, schedule_only=True)
def keep_down_window(f: Facts) -> Decision | None:
    """2. A keep-down window is an order: metrics, grace and delay do not count."""
    window = f.windows.keep_down
    if window is None:
        return None
    active = f"keep-down window {window.description} is active"
    if f.windows.keep_down_why:
        active += f" ({f.windows.keep_down_why})"
    if f.current > 0:
        return f.decision(Action.PAUSE, 0, f"{active}: pausing {f.current} replicas", Code.KEEP_DOWN_WINDOW)
    return f.hold(f"{active}: staying at 0", Code.KEEP_DOWN_WINDOW)


@rule("3a", Code.QUEUE_WAKE)
def queue_wake(f: Facts) -> Decision | None:
    """3a. At zero and the queue asks for it."""
    demand = f.demand
    if f.current != 0 or demand is None or demand.active is None:
        return None
    sizing = f"{demand.sizing}; " if f.workload.sizable else ""  # a one-unit kind wakes to its one unit
    return f.resume(lambda target, source: f"{demand.active}: waking to {target} ({sizing}{source})",
                    Code.QUEUE_WAKE, at_least=demand.wanted)


@rule("3b", Code.QUEUE_SCALE_UP)
def queue_scale_up(f: Facts) -> Decision | None:
    """3b. Running, and the queue needs more replicas than it has (a one-unit
    kind, a Job or an InferenceService, is never sized: its own controller sizes it)."""
    demand = f.demand
    if f.current == 0 or not f.workload.sizable or demand is None or demand.wanted <= f.current:
        return None
    return f.decision(Action.SCALE_UP, demand.wanted,
                      f"queue {demand.queue:g} needs more replicas: {f.current} -> {demand.wanted} "
                      f"({demand.sizing})", Code.QUEUE_SCALE_UP)


@rule("4", Code.KEEP_UP_WINDOW, schedule_only=True)
def keep_up_window(f: Facts) -> Decision | None:
    """4. A keep-up window: resume what scaler paused, never pause for idleness."""
    window = f.windows.keep_up
    if window is None:
        return None
    why = f" ({f.windows.keep_up_why})" if f.windows.keep_up_why else ""
    return f.keep_up(f"keep-up window {window.description} is active{why}", Code.KEEP_UP_WINDOW,
                     running="no idle scale-down")


@rule("4a", Code.PREWARM, schedule_only=True)
def prewarm(f: Facts) -> Decision | None:
    """4a. A keep-up window opens within the warm-up: resume now, so it is Ready when it opens."""
    lead = f.prewarm_lead
    if lead is None or f.windows.keep_up is not None:
        return None
    assert f.policy.schedule is not None
    ahead = later(f.now, lead)
    state = f.policy.schedule.compiled.state_at(ahead) if ahead is not None else None
    window = state.keep_up if state is not None and state.keep_down is None else None
    if window is None:  # none opens, or a keep-down window holds it down as it does
        return None
    return f.keep_up(f"pre-warm: keep-up window {window.description} opens within {human_duration(lead)} "
                     f"({'measured warm-up' if f.policy.prewarm == 'auto' else 'prewarm'})", Code.PREWARM,
                     running="no scale-down")


@rule("4b", Code.STARTING, Code.STARTUP_GRACE, reads_clock=True)
def starting(f: Facts) -> Decision | None:
    """4b. Loading its model, or Ready for less than startup_grace: never idle."""
    workload, now, policy = f.workload, f.now, f.policy
    if f.current == 0:
        return None
    started = workload.started_at
    since = max(seconds_between(started, now), 0) if started is not None else None
    if workload.ready_replicas < f.current:
        if since is not None and since >= policy.max_startup_seconds:
            return None  # not Ready after max_startup: broken, not loading
        loading = f"loading for {human_duration(since)}" if since is not None else "loading"
        return f.hold(f"starting: {workload.ready_replicas} of {f.current} replicas Ready, {loading}; "
                      "no idle scale-down while a model loads", Code.STARTING)
    grace = policy.startup_grace_seconds
    loaded = workload.loaded_within(policy.max_startup_seconds)
    if grace <= 0 or (loaded is None and (started is None or workload.loaded_at is not None)):
        return None
    ready_for = max(seconds_between(loaded, now), 0) if loaded is not None else 0.0
    if ready_for >= grace:
        return None
    return f.hold(f"starting: all {f.current} replicas Ready for {human_duration(ready_for)}: startup grace "
                  f"{human_duration(grace)} leaves {human_duration(grace - ready_for)}", Code.STARTUP_GRACE)


@rule("5", Code.OUTSIDE_DOWN, Code.BUSY, Code.SCALE_DOWN_DELAY, reads_clock=[Code.SCALE_DOWN_DELAY])
def outside_down(f: Facts) -> Decision | None:
    """5. Outside every keep-up window with `outside: down`: pause unless busy."""
    if not f.windows.outside_down:
        return None
    policy = f.policy
    assert policy.schedule is not None
    up = [window.description for window in policy.schedule.compiled.up_windows]
    # Three named at most: the sentence goes whole into the Event (its record keeps 1,024 characters).
    hours = "; ".join(up[:3]) + (f"; and {len(up) - 3} more" if len(up) > 3 else "") if up else "none"
    outside = f"outside every keep-up window ({hours}) with outside: down"
    if f.current == 0:
        return f.hold(f"{outside}: staying at 0", Code.OUTSIDE_DOWN)
    if f.demanded is not None:
        return f.hold(f"{outside}, but {f.demanded}: staying up", Code.BUSY)
    idle, value = policy.idle, f.signals.idle
    if idle is not None and known(value) and value >= idle.threshold:
        # Serving requests is being busy, even when none wait in a queue.
        return f.hold(f"{outside}, but busy: idle signal max {beside(value, idle.threshold)} over the last "
                      f"{human_duration(idle.duration_seconds)}, not below threshold "
                      f"{beside(idle.threshold, value)}: staying up", Code.BUSY)
    return f.waiting(f"{outside}: would pause") or \
        f.decision(Action.PAUSE, 0, f"{outside}: pausing {f.current} replicas", Code.OUTSIDE_DOWN)


@rule("5b", Code.WINDOW_ENDED, schedule_only=True)
def keep_down_window_ended(f: Facts) -> Decision | None:
    """5b. The keep-down window that paused it is over: undo its pause."""
    workload = f.workload
    # Whichever policy's window it was: one renamed, or outranked since, must not strand it at zero.
    if f.current == 0 and workload.pause_cause == Code.KEEP_DOWN_WINDOW and workload.paused_by_policy:
        return f.resume(lambda target, source: "the keep-down window that paused it has ended: "
                        f"resuming to {target} ({source})", Code.WINDOW_ENDED)
    return None


def _unknown(signals: list[str], why: Mapping[str, str] | None) -> str:
    """'idle signal and wake signal unknown', or with why where it is known:
    'idle signal unknown (no data from ... to ... UTC) and wake signal unknown'."""
    if not why or not any(signal in why for signal in signals):
        return f"{' and '.join(f'{signal} signal' for signal in signals)} unknown"
    return " and ".join(f"{signal} signal unknown ({why[signal]})" if signal in why else f"{signal} signal unknown"
                        for signal in signals)


@rule("6", Code.METRICS_UNKNOWN)
def unknown_signal(f: Facts) -> Decision | None:
    """6. A signal the decision needs is unknown: never scale down."""
    unknown = f.unknown_signals()
    if not unknown:
        return None
    what = f"metrics unavailable: {_unknown(unknown, f.signals.why)}"
    if f.policy.on_unknown is OnUnknown.RESUME and f.current == 0 and f.workload.paused_by_policy:
        return f.resume(lambda target, source: f"{what}; on_unknown: resume wakes what scaler paused: "
                        f"resuming to {target} ({source})", Code.METRICS_UNKNOWN)
    return f.hold(f"{what}: holding at {f.current} (never scale down on missing data)", Code.METRICS_UNKNOWN)


@rule("7", Code.AT_ZERO)
def at_zero(f: Facts) -> Decision | None:
    """7. At zero and nothing above woke it."""
    if f.current != 0:
        return None
    if f.workload.paused_by_policy:
        waiting_for = "waiting for the queue" if f.policy.wake is not None else "no wake rule"
        return f.hold(f"paused by {f.workload.paused_by}; {waiting_for}: staying at 0", Code.AT_ZERO)
    return f.hold("at 0 replicas and not paused by scaler: left as it is", Code.AT_ZERO)


@rule("8", Code.BUSY)
def queue_demand(f: Facts) -> Decision | None:
    """8. Requests are waiting: not idle, whatever the idle signal says."""
    if f.demanded is None:
        return None
    return f.hold(f"busy: {f.demanded}", Code.BUSY)


@rule("9", Code.BUSY, Code.IDLE_SINCE_READY, Code.SCALE_DOWN_DELAY, Code.IDLE_TIMEOUT,
      reads_clock=[Code.IDLE_SINCE_READY, Code.SCALE_DOWN_DELAY])
def idle_timeout(f: Facts) -> Decision | None:
    """9. The idle signal stayed below its threshold for the whole duration."""
    idle = f.policy.idle
    if idle is None:
        return None
    value = f.signals.idle
    assert value is not None  # row 6 held on an unknown one
    over = f"max {beside(value, idle.threshold)} over the last {human_duration(idle.duration_seconds)}"
    if value >= idle.threshold:
        return f.hold(f"busy: idle signal {over}, not below threshold {beside(idle.threshold, value)}", Code.BUSY)
    idle_text = f"idle: signal {over}, below threshold {beside(idle.threshold, value)}"
    loaded = f.workload.loaded_within(f.policy.max_startup_seconds)
    if loaded is not None and (up := max(seconds_between(loaded, f.now), 0)) < idle.duration_seconds:
        # The window reaches back before it was Ready: time at zero or loading is not idleness.
        return f.hold(f"{idle_text}, but it has been Ready for only {human_duration(up)}: the idle window "
                      f"counts from Ready, {human_duration(idle.duration_seconds - up)} to go", Code.IDLE_SINCE_READY)
    return f.waiting(f"{idle_text}; would pause") or \
        f.decision(Action.PAUSE, 0, f"{idle_text}: pausing {f.current} replicas", Code.IDLE_TIMEOUT)


@rule("10", Code.NO_RULE)
def no_rule(f: Facts) -> Decision:
    """10. Nothing applies."""
    return f.hold("no rule applies (no window active, no idle rule, no queue demand)", Code.NO_RULE)


#: The README's table, top to bottom. Rows 1b and 1c each answer twice: first
#: the edit that set the size back while paused (by a person, by a GitOps
#: controller: exclusive), then the hands-off or back-off period it left.
RULES: tuple[Rule, ...] = (
    manual_pause,
    human_override,
    gitops_revert,
    hands_off,
    gitops_backoff,
    held_up,
    keep_down_window,
    queue_wake,
    queue_scale_up,
    keep_up_window,
    prewarm,
    starting,
    outside_down,
    keep_down_window_ended,
    unknown_signal,
    at_zero,
    queue_demand,
    idle_timeout,
    no_rule,
)


#: Decided by a schedule alone: the daemon acts on them at window edges, with
#: no signal (`Evaluator.evaluate(with_signals=False)`).
SCHEDULE_CODES = schedule_codes(RULES)
#: Holds that still write (`Decision.writes_while_holding`): the actor (run/acting.py) has a write for each.
WRITES_WHILE_HOLDING = writing_codes(RULES)
#: Decisions the replay reuses until something they read changes (the windows are compared apart).
TIMELESS = timeless_codes(RULES)


def decide(*, policy: Policy | Conflict | None, workload: WorkloadState, signals: Signals,
           now: datetime) -> Decision:
    """What `policy` wants for `workload` at `now` (tz-aware), given `signals`:
    the first row of `RULES` that answers."""
    if policy is None:
        return unmanaged(workload)
    if isinstance(policy, Conflict):
        return Decision(Action.CONFLICT, workload.replicas,
                        f"{policy}; left alone until one has a higher priority", Code.CONFLICT)
    facts = Facts(policy, workload, signals, now)
    for index, (answer, writes) in enumerate(_ANSWERS):
        decision = answer(facts)
        if decision is not None:
            if writes and decision.action is Action.HOLD:
                decision = replace(decision, writes_while_holding=True)
            if decision.action is Action.PAUSE and index > _KEEP_UP and (gave_up := facts.gave_up_loading()):
                decision = replace(decision, reason=f"{gave_up}: no longer protected as loading; {decision.reason}")
            return _with_days_off(decision, facts) if index > _KEEP_UP else decision
    raise AssertionError("no_rule always answers")


def unmanaged(workload: WorkloadState) -> Decision:
    """No policy targets it. One a policy paused (the policy since removed,
    renamed, or its targets changed) is not left at zero by nobody: it is
    resumed to its recorded count. Anything else is not scaler's."""
    if workload.replicas == 0 and workload.paused_by_policy and not workload.manual_pause:
        target = workload.last_replicas or 1
        source = f"{target} recorded at pause" if workload.last_replicas else \
            f"{workload.unrestorable or 'nothing recorded'}: 1"
        paused_by = workload.paused_by or ""
        return Decision(Action.RESUME, target, f"no policy targets it any more ({paused_by} paused it): "
                        f"resuming to {target} ({source})", Code.NO_POLICY,
                        paused_by.removeprefix(POLICY_PAUSE_PREFIX).removeprefix("policy:"))
    return Decision(Action.SKIP, workload.replicas, "no policy matches this workload", Code.NO_POLICY)


_ANSWERS = tuple((row.answer, row.writes_while_holding) for row in RULES)
_KEEP_UP = RULES.index(keep_up_window)


def _with_days_off(decision: Decision, f: Facts) -> Decision:
    """A decision below the keep-up row, on a day a calendar keeps a window
    closed, says so first: 'keep-up window 'office' is off today: Heilige
    Drei Könige (DE-BY); outside every keep-up window ...'."""
    off = f.windows.off
    if not off:
        return decision
    return replace(decision, reason=f"{'; '.join(off)}; {decision.reason}")
