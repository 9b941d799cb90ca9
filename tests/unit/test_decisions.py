"""The decision table. Each row is one line of the precedence table in
docs/policies.md: the policy, the workload, the signals and the instant go in;
the action, the target replicas, the reason code and a piece of the reason
the user reads come out."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaler.decide.annotations import LAST_REPLICAS
from scaler.decide.decisions import (
    Action,
    Code,
    Conflict,
    Signals,
    WorkloadState,
    is_excluded,
    select_policy,
)
from scaler.decide.facts import Facts
from scaler.decide.policies import Policy
from scaler.decide.precedence import RULES, SCHEDULE_CODES, TIMELESS, WRITES_WHILE_HOLDING, decide
from scaler.decide.rules import rule, schedule_codes, timeless_codes, writing_codes
from scaler.decide.times import human_duration, rfc3339
from scaler.decide.windows import zone
from tests.unit.test_properties import cases

BERLIN = zone("Europe/Berlin")


def at(text: str, tz=BERLIN) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz)


TUESDAY_NIGHT = at("2024-06-04 23:00")  # no window active
TUESDAY_DAY = at("2024-06-04 10:00")  # business hours
SUNDAY_MAINTENANCE = at("2024-06-09 03:00")  # the keep-down window
SATURDAY_NOON = at("2024-06-08 12:00")

IDLE = {"query": "max(DCGM_FI_DEV_GPU_UTIL) by (namespace, workload)", "threshold": 5, "duration": "30m"}
WAKE = {"query": "sum(router_queue_length) by (namespace, workload)", "target_per_replica": 4}


def make_policy(**overrides) -> Policy:
    spec = {
        "name": "llm",
        "schedule": {"timezone": "Europe/Berlin", "windows": [
            {"name": "business-hours", "mode": "up", "when": "Mon-Fri 08:00-20:00"},
            {"name": "maintenance", "mode": "down", "when": "Sun 02:00-04:00"},
        ]},
        "idle": IDLE,
        "wake": WAKE,
        "min_replicas": 1,
        "max_replicas": 6,
        "startup_grace": "10m",
        "scale_down_delay": "15m",
    }
    spec.update(overrides)
    return Policy.model_validate({key: value for key, value in spec.items() if value is not None})


POLICY = make_policy()
OUTSIDE_DOWN = make_policy(schedule={"timezone": "Europe/Berlin", "outside": "down", "windows": [
    {"name": "business-hours", "mode": "up", "when": "Mon-Fri 08:00-20:00"}]})
ON_UNKNOWN_RESUME = make_policy(on_unknown="resume")
NO_MAX = make_policy(max_replicas=None)
MIN_TWO = make_policy(min_replicas=2)
ACTIVATION_TWO = make_policy(wake={**WAKE, "activation_threshold": 2})
IDLE_ONLY = make_policy(schedule=None, wake=None, startup_grace="0s", scale_down_delay="0s")
DEFAULTS = make_policy(schedule=None, wake=None, startup_grace=None, scale_down_delay=None)
DELAY_HOUR = make_policy(scale_down_delay="1h")
PREWARM_90S = make_policy(prewarm="90s")
PREWARM_AUTO = make_policy(prewarm="auto", prewarm_max="2m")
OUTSIDE_DOWN_PREWARM = make_policy(prewarm="90s", schedule={"timezone": "Europe/Berlin", "outside": "down",
                                                             "windows": [{"name": "business-hours", "mode": "up",
                                                                          "when": "Mon-Fri 08:00-20:00"}]})
TUESDAY_EARLY = at("2024-06-04 07:59")  # a minute before business hours
WINDOWS_ONLY = make_policy(idle=None, wake=None)
GRACE_HOUR = make_policy(schedule=None, wake=None, startup_grace="1h", scale_down_delay=None)
BOTH_WINDOWS_AT_ONCE = make_policy(schedule={"timezone": "Europe/Berlin", "windows": [
    {"name": "business-hours", "mode": "up", "when": "Mon-Fri 08:00-20:00"},
    {"name": "lunch", "mode": "down", "when": "Mon-Fri 12:00-13:00"}]})
WEEKEND_DOWN = make_policy(schedule={"timezone": "Europe/Berlin", "windows": [
    {"name": "weekend", "mode": "down", "when": "Fri 18:00-Mon 07:00"}]})
NIGHT_DOWN = make_policy(schedule={"timezone": "Europe/Berlin", "windows": [
    {"name": "night", "mode": "down", "when": "daily 22:00-06:00"}]})
EARLY_DOWN = make_policy(schedule={"timezone": "Europe/Berlin", "windows": [
    {"name": "early", "mode": "down", "when": "daily 01:00-03:00"}]})
NY_EVENING_DOWN = make_policy(schedule={"timezone": "America/New_York", "windows": [
    {"name": "evening", "mode": "down", "start": "0 22 * * *", "end": "0 6 * * *"}]})
AUCKLAND_NIGHT_DOWN = make_policy(schedule={"timezone": "Pacific/Auckland", "windows": [
    {"name": "night", "mode": "down", "when": "daily 22:00-06:00"}]})


def running(replicas=2, **fields) -> dict:
    """Running with every replica Ready, unless `ready_replicas` says otherwise."""
    return {"replicas": replicas, "ready_replicas": replicas, **fields}


def paused(last=3, by="policy/llm", **fields) -> dict:
    return {"replicas": 0, "last_replicas": last, "paused_by": by, **fields}


def ago(minutes: float, now: datetime = TUESDAY_NIGHT) -> datetime:
    return now - timedelta(minutes=minutes)


QUIET = Signals(idle=0.5, wake=0)
BUSY = Signals(idle=60, wake=0)
HOLE = "no data from 2024-06-04 20:40:00 to 20:41:00 UTC"
GAP = Signals(idle=None, wake=0, why={"idle": HOLE})  # the idle window had a hole

# policy, workload fields, signals, now, (action, replicas, code), a piece of the reason
TABLE = [
    # 1. manual pause: never touched
    pytest.param(POLICY, paused(manual_pause=True, by="manual"), Signals(idle=0, wake=100), TUESDAY_DAY,
                 (Action.HOLD, 0, Code.MANUAL_PAUSE), "only a manual resume wakes it", id="manual-pause-beats-queue"),
    pytest.param(POLICY, running(manual_pause=True), QUIET, SUNDAY_MAINTENANCE,
                 (Action.PAUSE, 0, Code.MANUAL_PAUSE), "(scaler.io/paused=true set on it): pausing 2 replicas",
                 id="manual-pause-annotation-set-by-hand-pauses"),
    pytest.param(POLICY, running(manual_pause=True), Signals(idle=5, wake=100), TUESDAY_DAY,
                 (Action.PAUSE, 0, Code.MANUAL_PAUSE), "pausing 2 replicas",
                 id="manual-pause-annotation-beats-a-queue"),
    pytest.param(POLICY, running(3, last_replicas=2, paused_by="manual", manual_pause=True), QUIET,
                 SUNDAY_MAINTENANCE, (Action.HOLD, 3, Code.MANUAL_PAUSE),
                 "but someone set replicas to 3 since (recorded 2): leaving 3",
                 id="manual-pause-resized-by-hand-stays"),
    # 2. keep-down window: schedule-based, so it holds even without metrics
    pytest.param(POLICY, running(3), Signals(idle=60, wake=50), SUNDAY_MAINTENANCE,
                 (Action.PAUSE, 0, Code.KEEP_DOWN_WINDOW),
                 "keep-down window 'maintenance' (Sun 02:00-04:00 Europe/Berlin) is active: pausing 3 replicas",
                 id="keep-down-window-beats-queue"),
    pytest.param(POLICY, paused(), Signals(idle=0, wake=50), SUNDAY_MAINTENANCE,
                 (Action.HOLD, 0, Code.KEEP_DOWN_WINDOW), "staying at 0", id="keep-down-window-at-zero-holds"),
    pytest.param(POLICY, running(3), Signals(), SUNDAY_MAINTENANCE,
                 (Action.PAUSE, 0, Code.KEEP_DOWN_WINDOW), "is active", id="keep-down-window-with-metrics-unknown"),
    pytest.param(POLICY, running(3, started_at=ago(2, SUNDAY_MAINTENANCE), ready_at=ago(1, SUNDAY_MAINTENANCE)),
                 BUSY, SUNDAY_MAINTENANCE, (Action.PAUSE, 0, Code.KEEP_DOWN_WINDOW), "is active",
                 id="keep-down-window-ignores-startup-grace"),
    pytest.param(POLICY, running(3, ready_replicas=0, started_at=ago(1, SUNDAY_MAINTENANCE)), QUIET,
                 SUNDAY_MAINTENANCE, (Action.PAUSE, 0, Code.KEEP_DOWN_WINDOW), "is active",
                 id="keep-down-window-pauses-a-loading-workload"),
    pytest.param(BOTH_WINDOWS_AT_ONCE, running(2), BUSY, at("2024-06-04 12:30"),
                 (Action.PAUSE, 0, Code.KEEP_DOWN_WINDOW), "'lunch'", id="keep-down-beats-keep-up-window"),
    # 3. wake and scale up by queue
    pytest.param(POLICY, paused(last=3), Signals(idle=0, wake=4), TUESDAY_NIGHT,
                 (Action.RESUME, 3, Code.QUEUE_WAKE), "queue 4 > activation threshold 0: waking to 3",
                 id="queue-wakes-to-recorded-size"),
    pytest.param(POLICY, paused(last=2), Signals(idle=0, wake=20), TUESDAY_NIGHT,
                 (Action.RESUME, 5, Code.QUEUE_WAKE), "ceil(20/4) = 5", id="queue-wakes-above-recorded-size"),
    pytest.param(POLICY, paused(last=2), Signals(idle=0, wake=100), TUESDAY_NIGHT,
                 (Action.RESUME, 6, Code.QUEUE_WAKE), "capped at max_replicas 6", id="queue-wake-capped-at-max"),
    pytest.param(MIN_TWO, paused(last=None), Signals(idle=0, wake=1), TUESDAY_NIGHT,
                 (Action.RESUME, 2, Code.QUEUE_WAKE), "min_replicas 2, nothing recorded",
                 id="queue-wake-without-record-uses-min-replicas"),
    pytest.param(POLICY, {"replicas": 0}, Signals(idle=0, wake=1), TUESDAY_NIGHT,
                 (Action.RESUME, 1, Code.QUEUE_WAKE), "waking to 1", id="queue-wakes-a-zero-scaler-did-not-pause"),
    pytest.param(POLICY, paused(last=3), Signals(idle=0, wake=8), TUESDAY_DAY,
                 (Action.RESUME, 3, Code.QUEUE_WAKE), "waking", id="queue-wake-inside-keep-up-window"),
    pytest.param(OUTSIDE_DOWN, paused(last=3), Signals(idle=0, wake=3), TUESDAY_NIGHT,
                 (Action.RESUME, 3, Code.QUEUE_WAKE), "waking", id="queue-wake-beats-outside-down"),
    pytest.param(ACTIVATION_TWO, paused(last=3), Signals(idle=0, wake=2), TUESDAY_NIGHT,
                 (Action.HOLD, 0, Code.AT_ZERO), "staying at 0", id="queue-at-activation-threshold-does-not-wake"),
    pytest.param(NO_MAX, paused(last=3), Signals(idle=0, wake=100), TUESDAY_NIGHT,
                 (Action.RESUME, 3, Code.QUEUE_WAKE), "min_replicas (no max_replicas)",
                 id="without-max-replicas-queue-wakes-to-recorded-size"),
    pytest.param(POLICY, running(2), Signals(idle=60, wake=17), TUESDAY_NIGHT,
                 (Action.SCALE_UP, 5, Code.QUEUE_SCALE_UP), "2 -> 5 (ceil(17/4) = 5)", id="queue-scale-up"),
    pytest.param(POLICY, running(2), Signals(idle=60, wake=100), TUESDAY_DAY,
                 (Action.SCALE_UP, 6, Code.QUEUE_SCALE_UP), "capped at max_replicas 6",
                 id="queue-scale-up-capped-at-max"),
    pytest.param(POLICY, running(8), Signals(idle=0, wake=100), TUESDAY_NIGHT,
                 (Action.HOLD, 8, Code.BUSY), "busy: queue 100", id="queue-never-scales-down-above-max"),
    pytest.param(POLICY, running(5), Signals(idle=0, wake=4), TUESDAY_NIGHT,
                 (Action.HOLD, 5, Code.BUSY), "busy: queue 4 > activation threshold 0",
                 id="queue-demand-blocks-idle-pause"),
    pytest.param(NO_MAX, running(1), Signals(idle=60, wake=100), TUESDAY_NIGHT,
                 (Action.HOLD, 1, Code.BUSY), "busy", id="without-max-replicas-no-queue-scale-up"),
    # 4. keep-up window
    pytest.param(POLICY, paused(last=3), Signals(idle=0, wake=0), TUESDAY_DAY,
                 (Action.RESUME, 3, Code.KEEP_UP_WINDOW),
                 "keep-up window 'business-hours' (Mon-Fri 08:00-20:00 Europe/Berlin) is active: resuming to 3 "
                 "(3 recorded at pause)", id="keep-up-window-resumes-what-scaler-paused"),
    pytest.param(MIN_TWO, paused(last=None), Signals(idle=0, wake=0), TUESDAY_DAY,
                 (Action.RESUME, 2, Code.KEEP_UP_WINDOW), "min_replicas 2, nothing recorded",
                 id="keep-up-window-resume-without-record-uses-min-replicas"),
    pytest.param(MIN_TWO, paused(last=None, annotations={LAST_REPLICAS: "3.0"}), Signals(idle=0, wake=0), TUESDAY_DAY,
                 (Action.RESUME, 2, Code.KEEP_UP_WINDOW),
                 "min_replicas 2, the recorded count '3.0' is not a replica count (digits, 1 to 2147483647)",
                 id="keep-up-window-resume-says-why-a-hand-edited-count-is-not-restored"),
    pytest.param(POLICY, paused(last=3), Signals(), TUESDAY_DAY,
                 (Action.RESUME, 3, Code.KEEP_UP_WINDOW), "resuming to 3", id="keep-up-window-with-metrics-unknown"),
    pytest.param(POLICY, {"replicas": 0}, Signals(idle=0, wake=0), TUESDAY_DAY,
                 (Action.HOLD, 0, Code.KEEP_UP_WINDOW), "scaler did not pause this workload",
                 id="keep-up-window-leaves-others-zero-alone"),
    pytest.param(POLICY, paused(by="manual"), Signals(idle=0, wake=0), TUESDAY_DAY,
                 (Action.HOLD, 0, Code.KEEP_UP_WINDOW), "did not pause",
                 id="keep-up-window-leaves-a-manual-pause-record-alone"),
    pytest.param(POLICY, running(2), Signals(idle=0, wake=0), TUESDAY_DAY,
                 (Action.HOLD, 2, Code.KEEP_UP_WINDOW), "no idle scale-down", id="keep-up-window-blocks-idle-pause"),
    # 5. outside: down
    pytest.param(OUTSIDE_DOWN, running(2), QUIET, TUESDAY_NIGHT,
                 (Action.PAUSE, 0, Code.OUTSIDE_DOWN),
                 "outside every keep-up window ('business-hours' (Mon-Fri 08:00-20:00 Europe/Berlin)) with "
                 "outside: down: pausing 2 replicas", id="outside-down-pauses-a-quiet-workload"),
    pytest.param(OUTSIDE_DOWN, running(2), BUSY, TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.BUSY), "but busy: idle signal max 60 over the last 30m",
                 id="outside-down-waits-while-the-idle-signal-says-busy"),
    pytest.param(OUTSIDE_DOWN, paused(), QUIET, TUESDAY_NIGHT,
                 (Action.HOLD, 0, Code.OUTSIDE_DOWN), "staying at 0", id="outside-down-at-zero-holds"),
    pytest.param(OUTSIDE_DOWN, running(2), Signals(), TUESDAY_NIGHT,
                 (Action.PAUSE, 0, Code.OUTSIDE_DOWN), "pausing", id="outside-down-with-metrics-unknown-still-pauses"),
    pytest.param(OUTSIDE_DOWN, running(2), Signals(idle=0, wake=1), TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.BUSY), "but queue 1 > activation threshold 0: staying up",
                 id="outside-down-waits-for-queue-demand"),
    pytest.param(OUTSIDE_DOWN, running(2, started_at=ago(5), ready_at=ago(3)), QUIET, TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.STARTUP_GRACE), "startup grace 10m leaves 7m",
                 id="outside-down-waits-for-startup-grace"),
    pytest.param(OUTSIDE_DOWN, running(2, ready_replicas=1, started_at=ago(1)), QUIET, TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.STARTING), "1 of 2 replicas Ready, loading for 1m",
                 id="outside-down-waits-while-loading"),
    pytest.param(OUTSIDE_DOWN, running(2, started_at=ago(12), ready_at=ago(11)), QUIET, TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.SCALE_DOWN_DELAY), "scale_down_delay 15m leaves 3m",
                 id="outside-down-waits-for-scale-down-delay"),
    pytest.param(OUTSIDE_DOWN, paused(), QUIET, TUESDAY_DAY,
                 (Action.RESUME, 3, Code.KEEP_UP_WINDOW), "resuming to 3", id="outside-down-policy-resumes-in-window"),
    # 6. unknown signals: never a scale-down
    pytest.param(POLICY, running(2), Signals(idle=None, wake=0), TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.METRICS_UNKNOWN), "metrics unavailable: idle signal unknown: holding at 2",
                 id="idle-unknown-holds"),
    pytest.param(POLICY, running(2), Signals(idle=math.nan, wake=0), TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.METRICS_UNKNOWN), "idle signal unknown", id="idle-nan-is-unknown"),
    pytest.param(POLICY, running(2), Signals(idle=math.inf, wake=0), TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.METRICS_UNKNOWN), "idle signal unknown", id="idle-inf-is-unknown"),
    pytest.param(POLICY, running(2), Signals(idle=0, wake=None), TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.METRICS_UNKNOWN), "wake signal unknown",
                 id="queue-unknown-blocks-idle-pause"),
    pytest.param(POLICY, running(2), Signals(idle=None, wake=-math.inf), TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.METRICS_UNKNOWN), "idle signal and wake signal unknown",
                 id="both-unknown-named"),
    pytest.param(POLICY, running(2), GAP, TUESDAY_NIGHT, (Action.HOLD, 2, Code.METRICS_UNKNOWN),
                 f"metrics unavailable: idle signal unknown ({HOLE}): holding at 2 (never scale down on missing data)",
                 id="idle-unknown-gap-named"),
    pytest.param(POLICY, running(2), Signals(idle=None, wake=None, why={"idle": HOLE}), TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.METRICS_UNKNOWN),
                 f"metrics unavailable: idle signal unknown ({HOLE}) and wake signal unknown: holding at 2",
                 id="both-unknown-gap-named-for-idle"),
    pytest.param(POLICY, running(2), Signals(idle=0, wake=None, why={"idle": HOLE}), TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.METRICS_UNKNOWN), "metrics unavailable: wake signal unknown: holding at 2",
                 id="queue-unknown-a-stale-idle-why-is-not-told"),
    pytest.param(POLICY, paused(), GAP, TUESDAY_NIGHT, (Action.HOLD, 0, Code.AT_ZERO), "waiting for the queue",
                 id="idle-unknown-gap-not-consulted-at-zero"),
    pytest.param(OUTSIDE_DOWN, running(2), GAP, TUESDAY_NIGHT, (Action.PAUSE, 0, Code.OUTSIDE_DOWN),
                 "pausing 2 replicas", id="outside-down-pauses-with-an-idle-gap"),
    pytest.param(POLICY, paused(), Signals(idle=0, wake=None), TUESDAY_NIGHT,
                 (Action.HOLD, 0, Code.METRICS_UNKNOWN), "holding at 0", id="queue-unknown-at-zero-holds"),
    pytest.param(POLICY, paused(), Signals(idle=None, wake=0), TUESDAY_NIGHT,
                 (Action.HOLD, 0, Code.AT_ZERO), "waiting for the queue",
                 id="idle-signal-not-consulted-at-zero"),
    pytest.param(ON_UNKNOWN_RESUME, paused(last=3), Signals(idle=0, wake=None), TUESDAY_NIGHT,
                 (Action.RESUME, 3, Code.METRICS_UNKNOWN),
                 "wake signal unknown; on_unknown: resume wakes what scaler paused: resuming to 3",
                 id="on-unknown-resume-wakes-what-scaler-paused"),
    pytest.param(ON_UNKNOWN_RESUME, paused(last=3), Signals(idle=None, wake=0), TUESDAY_NIGHT,
                 (Action.HOLD, 0, Code.AT_ZERO), "staying at 0",
                 id="on-unknown-resume-ignores-idle-signal-gone-with-the-pods"),
    pytest.param(ON_UNKNOWN_RESUME, {"replicas": 0}, Signals(idle=0, wake=None), TUESDAY_NIGHT,
                 (Action.HOLD, 0, Code.METRICS_UNKNOWN), "holding at 0", id="on-unknown-resume-leaves-others-alone"),
    pytest.param(ON_UNKNOWN_RESUME, running(2), Signals(idle=None, wake=0), TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.METRICS_UNKNOWN), "never scale down", id="on-unknown-resume-never-scales-down"),
    pytest.param(ON_UNKNOWN_RESUME, running(2), Signals(), SUNDAY_MAINTENANCE,
                 (Action.PAUSE, 0, Code.KEEP_DOWN_WINDOW), "is active", id="on-unknown-resume-still-keeps-down"),
    pytest.param(IDLE_ONLY, running(2), Signals(idle=0, wake=None), TUESDAY_NIGHT,
                 (Action.PAUSE, 0, Code.IDLE_TIMEOUT), "idle", id="unconfigured-signal-is-not-consulted"),
    pytest.param(WINDOWS_ONLY, running(2), Signals(), TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.NO_RULE), "no rule applies", id="windows-only-policy-needs-no-metrics"),
    # 7. at zero
    pytest.param(POLICY, paused(), QUIET, TUESDAY_NIGHT,
                 (Action.HOLD, 0, Code.AT_ZERO), "paused by policy/llm; waiting for the queue: staying at 0",
                 id="paused-waits-for-queue"),
    pytest.param(POLICY, {"replicas": 0}, QUIET, TUESDAY_NIGHT,
                 (Action.HOLD, 0, Code.AT_ZERO), "not paused by scaler", id="zero-without-record-and-no-queue-holds"),
    # 8. idle timeout
    pytest.param(POLICY, running(2), QUIET, TUESDAY_NIGHT,
                 (Action.PAUSE, 0, Code.IDLE_TIMEOUT),
                 "idle: signal max 0.5 over the last 30m, below threshold 5: pausing 2 replicas", id="idle-timeout"),
    pytest.param(POLICY, running(2), Signals(idle=5, wake=0), TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.BUSY), "max 5 over the last 30m, not below threshold 5",
                 id="idle-at-threshold-is-busy"),
    # a value :g would print as the threshold is printed in full: "max 5, below threshold 5" explains nothing
    pytest.param(POLICY, running(2), Signals(idle=4.9999999, wake=0), TUESDAY_NIGHT,
                 (Action.PAUSE, 0, Code.IDLE_TIMEOUT), "max 4.9999999 over the last 30m, below threshold 5",
                 id="idle-just-below-threshold-is-told-apart"),
    pytest.param(POLICY, running(2), Signals(idle=5.0000001, wake=0), TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.BUSY), "max 5.0000001 over the last 30m, not below threshold 5",
                 id="idle-just-above-threshold-is-told-apart"),
    pytest.param(OUTSIDE_DOWN, running(2), Signals(idle=5.0000001, wake=0), TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.BUSY), "idle signal max 5.0000001 over the last 30m, not below threshold 5",
                 id="outside-down-idle-just-above-threshold-is-told-apart"),
    pytest.param(ACTIVATION_TWO, running(2), Signals(idle=0.5, wake=2.0000001), TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.BUSY), "queue 2.0000001 > activation threshold 2",
                 id="queue-just-above-activation-is-told-apart"),
    # a threshold :g rounds is printed in full too where that would print the value alike: "max 1.23457e+06
    # (or 1234568.0), not below threshold 1.23457e+06" reads as the opposite of what was decided
    pytest.param(make_policy(idle={**IDLE, "threshold": 1234567}), running(2), Signals(idle=1234568, wake=0),
                 TUESDAY_NIGHT, (Action.HOLD, 2, Code.BUSY),
                 "max 1234568 over the last 30m, not below threshold 1234567",
                 id="idle-above-a-long-threshold-is-told-apart"),
    pytest.param(make_policy(idle={**IDLE, "threshold": 5.0000001}), running(2), Signals(idle=5.00000005, wake=0),
                 TUESDAY_NIGHT, (Action.PAUSE, 0, Code.IDLE_TIMEOUT),
                 "max 5.00000005 over the last 30m, below threshold 5.0000001",
                 id="idle-below-a-long-threshold-is-told-apart"),
    pytest.param(make_policy(wake={**WAKE, "activation_threshold": 1234567}), paused(3),
                 Signals(idle=None, wake=1234568), TUESDAY_NIGHT, (Action.RESUME, 6, Code.QUEUE_WAKE),
                 "queue 1234568 > activation threshold 1234567", id="queue-above-a-long-activation-is-told-apart"),
    pytest.param(POLICY, running(2, started_at=ago(6), ready_at=ago(4)), QUIET, TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.STARTUP_GRACE),
                 "starting: all 2 replicas Ready for 4m: startup grace 10m leaves 6m", id="idle-in-startup-grace"),
    pytest.param(POLICY, running(2, started_at=ago(40), ready_at=ago(35)), QUIET, TUESDAY_NIGHT,
                 (Action.PAUSE, 0, Code.IDLE_TIMEOUT), "pausing", id="idle-startup-grace-over"),
    pytest.param(POLICY, running(2, started_at=ago(34), ready_at=ago(4)), QUIET, TUESDAY_NIGHT,
                 (Action.PAUSE, 0, Code.IDLE_TIMEOUT), "pausing", id="ready-only-at-max-startup-earns-no-grace"),
    pytest.param(POLICY, running(2, started_at=ago(33.5), ready_at=ago(4)), QUIET, TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.STARTUP_GRACE), "Ready for 4m: startup grace 10m leaves 6m",
                 id="ready-just-within-max-startup-earns-its-grace"),
    pytest.param(make_policy(startup_grace="0s"), running(2, started_at=ago(45), ready_at=ago(5)), QUIET,
                 TUESDAY_NIGHT, (Action.PAUSE, 0, Code.IDLE_TIMEOUT), "pausing",
                 id="idle-window-does-not-count-from-a-ready-past-max-startup"),
    pytest.param(POLICY, running(2, started_at=ago(3)), QUIET, TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.STARTUP_GRACE), "startup grace 10m leaves 10m",
                 id="startup-grace-begins-when-all-are-seen-ready"),
    pytest.param(POLICY, running(2, ready_replicas=0, started_at=ago(3)), QUIET, TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.STARTING), "starting: 0 of 2 replicas Ready, loading for 3m",
                 id="starting-while-the-model-loads"),
    pytest.param(POLICY, running(2, ready_replicas=1), Signals(), TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.STARTING), "1 of 2 replicas Ready, loading;",
                 id="starting-without-a-recorded-start"),
    pytest.param(POLICY, running(2, ready_replicas=0, started_at=ago(31)), QUIET, TUESDAY_NIGHT,
                 (Action.PAUSE, 0, Code.IDLE_TIMEOUT), "0 of 2 replicas Ready 31m after its start, past max_startup "
                 "30m: no longer protected as loading; idle: signal max 0", id="starting-gives-up-after-max-startup"),
    pytest.param(POLICY, running(2, ready_replicas=0, started_at=ago(1)), Signals(idle=0, wake=20), TUESDAY_NIGHT,
                 (Action.SCALE_UP, 5, Code.QUEUE_SCALE_UP), "2 -> 5", id="starting-still-scales-up-for-a-queue"),
    pytest.param(DEFAULTS, running(2, started_at=ago(2), ready_at=ago(0.5)), QUIET, TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.STARTUP_GRACE), "startup grace 1m leaves 30s",
                 id="starting-defaults-protect-a-fresh-wake"),
    pytest.param(POLICY, running(2, started_at=ago(25), ready_at=ago(20)), QUIET, TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.IDLE_SINCE_READY), "Ready for only 20m: the idle window counts from Ready, "
                 "10m to go", id="idle-window-counts-from-ready"),
    pytest.param(POLICY, running(2, started_at=ago(25), ready_at=ago(26)), QUIET, TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.STARTUP_GRACE), "leaves 10m", id="idle-old-ready-before-the-new-start"),
    pytest.param(DELAY_HOUR, running(2, started_at=ago(45), ready_at=ago(44)), QUIET, TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.SCALE_DOWN_DELAY), "scaled up 45m ago: scale_down_delay 1h leaves 15m",
                 id="idle-in-scale-down-delay"),
    pytest.param(DELAY_HOUR, running(2, started_at=ago(61), ready_at=ago(60)), QUIET, TUESDAY_NIGHT,
                 (Action.PAUSE, 0, Code.IDLE_TIMEOUT), "pausing", id="idle-scale-down-delay-over"),
    pytest.param(GRACE_HOUR, running(2, started_at=at("2024-10-27 02:40"), ready_at=at("2024-10-27 02:50")),
                 QUIET, at("2024-10-27 02:30").replace(fold=1),  # 02:50 CEST = 00:50Z; 02:30 CET = 01:30Z
                 (Action.HOLD, 2, Code.STARTUP_GRACE), "Ready for 40m: startup grace 1h leaves 20m",
                 id="startup-grace-counts-real-time-across-fall-back"),
    pytest.param(IDLE_ONLY, running(2), QUIET, TUESDAY_NIGHT,
                 (Action.PAUSE, 0, Code.IDLE_TIMEOUT), "pausing", id="idle-without-a-recorded-start"),
    # 4a. pre-warm: resume ahead of a keep-up window by the warm-up
    pytest.param(PREWARM_90S, paused(), QUIET, TUESDAY_EARLY,
                 (Action.RESUME, 3, Code.PREWARM), "pre-warm: keep-up window 'business-hours' (Mon-Fri 08:00-20:00 "
                 "Europe/Berlin) opens within 1m30s (prewarm): resuming to 3", id="prewarm-resumes-ahead"),
    pytest.param(PREWARM_90S, paused(), QUIET, at("2024-06-04 07:58"),
                 (Action.HOLD, 0, Code.AT_ZERO), "waiting for the queue", id="prewarm-not-yet"),
    pytest.param(PREWARM_AUTO, paused(warm_ups=(40.0, 75.0)), QUIET, at("2024-06-04 07:58:50"),
                 (Action.RESUME, 3, Code.PREWARM), "(measured warm-up)", id="prewarm-auto-takes-the-slowest"),
    pytest.param(PREWARM_AUTO, paused(warm_ups=(40.0, 75.0)), QUIET, at("2024-06-04 07:58:40"),
                 (Action.HOLD, 0, Code.AT_ZERO), "waiting", id="prewarm-auto-not-yet"),
    pytest.param(PREWARM_AUTO, paused(warm_ups=(600.0,)), QUIET, at("2024-06-04 07:58:30"),
                 (Action.RESUME, 3, Code.PREWARM), "within 2m", id="prewarm-auto-capped-at-prewarm-max"),
    pytest.param(PREWARM_AUTO, paused(warm_ups=(600.0,)), QUIET, at("2024-06-04 07:55"),
                 (Action.HOLD, 0, Code.AT_ZERO), "waiting", id="prewarm-auto-cap-keeps-it-down-until-then"),
    pytest.param(PREWARM_AUTO, paused(), QUIET, TUESDAY_EARLY,
                 (Action.HOLD, 0, Code.AT_ZERO), "waiting", id="prewarm-auto-without-a-measured-warm-up"),
    pytest.param(PREWARM_90S, paused(), QUIET, at("2024-06-09 02:59"),
                 (Action.HOLD, 0, Code.KEEP_DOWN_WINDOW), "maintenance", id="prewarm-never-beats-keep-down"),
    pytest.param(OUTSIDE_DOWN_PREWARM, running(2), QUIET, TUESDAY_EARLY,
                 (Action.HOLD, 2, Code.PREWARM), "no scale-down", id="prewarm-keeps-outside-down-from-pausing"),
    pytest.param(PREWARM_90S, paused(by="manual", manual_pause=True), QUIET, TUESDAY_EARLY,
                 (Action.HOLD, 0, Code.MANUAL_PAUSE), "manual", id="prewarm-never-wakes-a-manual-pause"),
    # 9. nothing applies
    pytest.param(WINDOWS_ONLY, running(2), QUIET, SATURDAY_NOON,
                 (Action.HOLD, 2, Code.NO_RULE), "no rule applies", id="hold"),
    # edges: start inclusive, end exclusive
    pytest.param(POLICY, paused(), QUIET, at("2024-06-04 07:59"),
                 (Action.HOLD, 0, Code.AT_ZERO), "staying at 0", id="edge-minute-before-keep-up-start"),
    pytest.param(POLICY, paused(), QUIET, at("2024-06-04 08:00"),
                 (Action.RESUME, 3, Code.KEEP_UP_WINDOW), "resuming", id="edge-keep-up-start-inclusive"),
    pytest.param(POLICY, running(2), QUIET, at("2024-06-04 19:59"),
                 (Action.HOLD, 2, Code.KEEP_UP_WINDOW), "no idle scale-down", id="edge-keep-up-last-minute"),
    pytest.param(POLICY, running(2), QUIET, at("2024-06-04 20:00"),
                 (Action.PAUSE, 0, Code.IDLE_TIMEOUT), "pausing", id="edge-keep-up-end-exclusive"),
    # windows across midnight and the weekend
    pytest.param(WEEKEND_DOWN, running(2), BUSY, at("2024-06-07 17:59"),
                 (Action.HOLD, 2, Code.BUSY), "busy", id="weekend-friday-before"),
    pytest.param(WEEKEND_DOWN, running(2), BUSY, at("2024-06-07 18:00"),
                 (Action.PAUSE, 0, Code.KEEP_DOWN_WINDOW), "'weekend' (Fri 18:00-Mon 07:00 Europe/Berlin)",
                 id="weekend-friday-start"),
    pytest.param(WEEKEND_DOWN, running(2), BUSY, SATURDAY_NOON,
                 (Action.PAUSE, 0, Code.KEEP_DOWN_WINDOW), "'weekend'", id="weekend-saturday"),
    pytest.param(WEEKEND_DOWN, running(2), BUSY, at("2024-06-10 06:59"),
                 (Action.PAUSE, 0, Code.KEEP_DOWN_WINDOW), "'weekend'", id="weekend-monday-early"),
    pytest.param(WEEKEND_DOWN, paused(), Signals(idle=0, wake=0), at("2024-06-10 07:00"),
                 (Action.HOLD, 0, Code.AT_ZERO), "staying at 0", id="weekend-over-monday-morning"),
    pytest.param(NIGHT_DOWN, running(2), BUSY, at("2024-06-05 02:00"),
                 (Action.PAUSE, 0, Code.KEEP_DOWN_WINDOW), "'night' (daily 22:00-06:00 Europe/Berlin)",
                 id="night-window-after-midnight"),
    # daylight saving time
    pytest.param(NIGHT_DOWN, running(2), BUSY, at("2024-10-27 04:30", zone("UTC")),
                 (Action.PAUSE, 0, Code.KEEP_DOWN_WINDOW), "'night'", id="dst-berlin-fall-back-05-30-cet-still-night"),
    pytest.param(NIGHT_DOWN, running(2), BUSY, at("2024-10-27 05:00", zone("UTC")),
                 (Action.HOLD, 2, Code.BUSY), "busy", id="dst-berlin-fall-back-night-ends-06-00-cet"),
    pytest.param(EARLY_DOWN, running(2), BUSY, at("2024-03-31 00:30", zone("UTC")),
                 (Action.PAUSE, 0, Code.KEEP_DOWN_WINDOW), "'early'", id="dst-berlin-spring-forward-01-30-cet"),
    pytest.param(EARLY_DOWN, running(2), BUSY, at("2024-03-31 01:00", zone("UTC")),
                 (Action.HOLD, 2, Code.BUSY), "busy", id="dst-berlin-spring-forward-window-is-one-hour"),
    pytest.param(NY_EVENING_DOWN, running(2), BUSY, at("2024-11-03 10:59", zone("UTC")),
                 (Action.PAUSE, 0, Code.KEEP_DOWN_WINDOW), "America/New_York",
                 id="dst-new-york-fall-back-05-59-est"),
    pytest.param(NY_EVENING_DOWN, running(2), BUSY, at("2024-11-03 11:00", zone("UTC")),
                 (Action.HOLD, 2, Code.BUSY), "busy", id="dst-new-york-fall-back-ends-06-00-est"),
    pytest.param(NY_EVENING_DOWN, running(2), BUSY, at("2024-03-10 09:59", zone("UTC")),
                 (Action.PAUSE, 0, Code.KEEP_DOWN_WINDOW), "'evening'", id="dst-new-york-spring-forward-05-59-edt"),
    pytest.param(NY_EVENING_DOWN, running(2), BUSY, at("2024-03-10 10:00", zone("UTC")),
                 (Action.HOLD, 2, Code.BUSY), "busy", id="dst-new-york-spring-forward-ends-06-00-edt"),
    pytest.param(AUCKLAND_NIGHT_DOWN, running(2), BUSY, at("2024-09-29 05:30", zone("Pacific/Auckland")),
                 (Action.PAUSE, 0, Code.KEEP_DOWN_WINDOW), "Pacific/Auckland",
                 id="dst-auckland-september-spring-forward-night"),
    pytest.param(AUCKLAND_NIGHT_DOWN, running(2), BUSY, at("2024-04-07 17:59", zone("UTC")),
                 (Action.PAUSE, 0, Code.KEEP_DOWN_WINDOW), "'night'", id="dst-auckland-april-fall-back-05-59-nzst"),
    pytest.param(AUCKLAND_NIGHT_DOWN, running(2), BUSY, at("2024-04-07 18:00", zone("UTC")),
                 (Action.HOLD, 2, Code.BUSY), "busy", id="dst-auckland-april-fall-back-ends-06-00-nzst"),
    # 5b. a keep-down window undoes its own pause when it ends
    pytest.param(POLICY, paused(last=4, by="policy/llm", pause_cause="keep-down-window"), Signals(), TUESDAY_NIGHT,
                 (Action.RESUME, 4, Code.WINDOW_ENDED), "the keep-down window that paused it has ended: resuming to 4",
                 id="window-ended-resumes-even-with-metrics-unknown"),
    pytest.param(POLICY, paused(last=4, by="policy/llm", pause_cause="keep-down-window"), QUIET, SUNDAY_MAINTENANCE,
                 (Action.HOLD, 0, Code.KEEP_DOWN_WINDOW), "staying at 0", id="window-ended-not-while-it-lasts"),
    # (a policy renamed, or outranked by this one since: its window's pause must not strand the workload)
    pytest.param(POLICY, paused(last=4, by="policy/other", pause_cause="keep-down-window"), QUIET, TUESDAY_NIGHT,
                 (Action.RESUME, 4, Code.WINDOW_ENDED), "has ended: resuming to 4",
                 id="window-ended-whichever-policy-paused-it"),
    pytest.param(POLICY, paused(last=4, by="policy/llm", pause_cause="idle-timeout"), QUIET, TUESDAY_NIGHT,
                 (Action.HOLD, 0, Code.AT_ZERO), "waiting for the queue", id="window-ended-not-for-an-idle-pause"),
    # 1b. a person resized it while a policy had it paused: the person wins
    pytest.param(POLICY, running(3, last_replicas=5, paused_by="policy/llm"), QUIET, SUNDAY_MAINTENANCE,
                 (Action.HOLD, 3, Code.HUMAN_OVERRIDE), "someone set replicas to 3 while policy/llm had it paused "
                 "(recorded 5): leaving 3", id="human-override-beats-keep-down-window"),
    pytest.param(POLICY, running(3, annotations={"scaler.io/override-until": "2024-06-09T04:00:00Z"}), QUIET,
                 SUNDAY_MAINTENANCE, (Action.HOLD, 3, Code.HUMAN_OVERRIDE), "left alone until 2024-06-09 04:00",
                 id="human-override-holds-until-the-edge"),
    pytest.param(POLICY, running(3, annotations={"scaler.io/override-until": "2024-06-09T00:30:00Z"}), QUIET,
                 SUNDAY_MAINTENANCE, (Action.PAUSE, 0, Code.KEEP_DOWN_WINDOW), "is active",
                 id="human-override-expired"),
    # 1b/1c. who set the size of a paused workload back up tells a person's edit from a GitOps revert
    pytest.param(POLICY, running(3, last_replicas=5, paused_by="policy/llm", size_writer="kubectl-scale"), QUIET,
                 TUESDAY_NIGHT, (Action.HOLD, 3, Code.HUMAN_OVERRIDE),
                 "someone set replicas to 3 while policy/llm had it paused (recorded 5): leaving 3",
                 id="human-override-by-anyone-not-a-gitops-controller"),
    pytest.param(POLICY, running(2, last_replicas=3, paused_by="policy/llm", size_writer="argocd-controller",
                                 size_writer_gitops=True), QUIET, SUNDAY_MAINTENANCE,
                 (Action.HOLD, 2, Code.GITOPS_REVERT), "pause reverted by argocd-controller (1 time in a row): "
                 "replicas set back to 2 while policy/llm had it paused (recorded 3): leaving 2 and backing off; "
                 "add ignoreDifferences for /spec/replicas", id="gitops-revert-beats-keep-down-window"),
    pytest.param(IDLE_ONLY, running(2, last_replicas=2, paused_by="policy/llm", size_writer="kustomize-controller",
                                    size_writer_gitops=True, annotations={"scaler.io/reverts": "2"}), QUIET,
                 TUESDAY_NIGHT, (Action.HOLD, 2, Code.GITOPS_REVERT),
                 "pause reverted by kustomize-controller (3 times in a row)", id="gitops-revert-counts-in-a-row"),
    pytest.param(POLICY, paused(size_writer="argocd-controller", size_writer_gitops=True), Signals(idle=0, wake=4),
                 TUESDAY_NIGHT, (Action.RESUME, 3, Code.QUEUE_WAKE), "waking to 3",
                 id="gitops-revert-only-of-a-running-workload"),
    pytest.param(POLICY, running(2, last_replicas=3, paused_by="manual", manual_pause=True,
                                 size_writer="argocd-controller", size_writer_gitops=True), QUIET, TUESDAY_NIGHT,
                 (Action.HOLD, 2, Code.MANUAL_PAUSE), "paused by hand", id="gitops-revert-of-a-manual-pause-is-not"),
    # 1c. a GitOps controller reverted scaler's pause: back off, whatever else applies
    pytest.param(POLICY, running(2, annotations={
                     "scaler.io/reverted-by": "argocd-controller", "scaler.io/reverts": "2",
                     "scaler.io/backoff-until": "2024-06-09T01:30:00Z"}), QUIET, SUNDAY_MAINTENANCE,
                 (Action.HOLD, 2, Code.GITOPS_BACKOFF), "pause reverted by argocd-controller (2 times in a row); "
                 "backing off: no pause before 2024-06-09 01:30 UTC; add ignoreDifferences for /spec/replicas",
                 id="gitops-backoff-beats-keep-down-window"),
    pytest.param(IDLE_ONLY, running(2, annotations={
                     "scaler.io/reverted-by": "argocd-controller", "scaler.io/reverts": "1",
                     "scaler.io/backoff-until": "2024-06-04T20:00:00Z"}), QUIET, TUESDAY_NIGHT,
                 (Action.PAUSE, 0, Code.IDLE_TIMEOUT), "pausing 2", id="gitops-backoff-over-pauses-again"),
    pytest.param(POLICY, paused(annotations={"scaler.io/backoff-until": "2024-06-05T20:00:00Z"}),
                 Signals(idle=0, wake=4), TUESDAY_NIGHT, (Action.RESUME, 3, Code.QUEUE_WAKE), "waking to 3",
                 id="gitops-backoff-never-blocks-a-wake"),
    # 1d. a person woke it until a time (scaler resume --for/--until): no pause until then
    pytest.param(POLICY, running(2, annotations={"scaler.io/hold-up-until": "2024-06-09T03:00:00Z"}), QUIET,
                 SUNDAY_MAINTENANCE, (Action.HOLD, 2, Code.HELD_UP), "woken by hand until 2024-06-09 03:00 UTC",
                 id="held-up-beats-keep-down-window"),
    pytest.param(POLICY, running(2, annotations={"scaler.io/hold-up-until": "2024-06-09T03:00:00Z"}),
                 Signals(idle=0, wake=20), SUNDAY_MAINTENANCE, (Action.SCALE_UP, 5, Code.QUEUE_SCALE_UP),
                 "needs more replicas", id="held-up-still-scales-up-for-a-queue"),
    pytest.param(POLICY, running(2, annotations={"scaler.io/hold-up-until": "2024-06-09T00:59:00Z"}), QUIET,
                 SUNDAY_MAINTENANCE, (Action.PAUSE, 0, Code.KEEP_DOWN_WINDOW), "is active", id="held-up-expired"),
    pytest.param(POLICY, running(2, annotations={"scaler.io/hold-up-until": "next-window",
                                                 "scaler.io/hold-up-from": "2024-06-04T21:00:00Z"}), QUIET,
                 TUESDAY_NIGHT, (Action.HOLD, 2, Code.HELD_UP), "until 2024-06-05 06:00 UTC",
                 id="held-up-until-next-window-edge"),
    pytest.param(IDLE_ONLY, running(2, annotations={"scaler.io/hold-up-until": "next-window",
                                                    "scaler.io/hold-up-from": "2024-06-04T20:30:00Z"}), QUIET,
                 TUESDAY_NIGHT, (Action.HOLD, 2, Code.HELD_UP), "until 2024-06-04 21:30 UTC",
                 id="held-up-next-window-without-schedule-is-an-hour"),
]


@pytest.mark.parametrize(("policy", "workload", "signals", "now", "expected", "reason"), TABLE)
def test_decision_table(policy, workload, signals, now, expected, reason):
    state = WorkloadState(kind="Deployment", namespace="llm", name="chat", **workload)
    decision = decide(policy=policy, workload=state, signals=signals, now=now)
    assert (decision.action, decision.replicas, decision.reason_code) == expected, decision.reason
    assert reason in decision.reason
    assert decision.policy == policy.name


def test_conflict_is_left_alone():
    state = WorkloadState(kind="Deployment", namespace="llm", name="chat", replicas=2)
    decision = decide(policy=Conflict(("a", "b"), 5), workload=state, signals=QUIET, now=TUESDAY_NIGHT)
    assert (decision.action, decision.replicas, decision.reason_code) == (Action.CONFLICT, 2, Code.CONFLICT)
    assert "policies 'a' and 'b' all match with priority 5" in decision.reason


def test_no_policy_is_skipped():
    state = WorkloadState(kind="Deployment", namespace="llm", name="chat", replicas=2)
    decision = decide(policy=None, workload=state, signals=QUIET, now=TUESDAY_NIGHT)
    assert (decision.action, decision.replicas, decision.reason_code) == (Action.SKIP, 2, Code.NO_POLICY)


def test_no_policy_resumes_what_a_policy_paused():
    """Its policy removed, renamed or no longer targeting it: not left at 0 by nobody."""
    state = WorkloadState(kind="Deployment", namespace="llm", name="chat", replicas=0, last_replicas=3,
                          paused_by="policy/nights")
    decision = decide(policy=None, workload=state, signals=QUIET, now=TUESDAY_NIGHT)
    assert (decision.action, decision.replicas, decision.reason_code, decision.policy) == \
        (Action.RESUME, 3, Code.NO_POLICY, "nights")


def test_no_policy_says_why_a_hand_edited_count_is_not_restored():
    state = WorkloadState(kind="Deployment", namespace="llm", name="chat", replicas=0, last_replicas=None,
                          paused_by="policy/nights", annotations={LAST_REPLICAS: "3_0"})
    decision = decide(policy=None, workload=state, signals=QUIET, now=TUESDAY_NIGHT)
    assert (decision.action, decision.replicas) == (Action.RESUME, 1)
    assert "(the recorded count '3_0' is not a replica count (digits, 1 to 2147483647): 1)" in decision.reason


# ---------------------------------------------------------------- selection


def targeted(name, priority=0, **targets) -> Policy:
    return Policy.model_validate({"name": name, "priority": priority, "targets": targets, "idle": IDLE})


SELECTION = [
    targeted("all-gpu", 0, selector="gpu=true"),
    targeted("llm-chat", 10, namespaces=["llm"], selector="app in (chat, embed)"),
    targeted("team-prod", 5, namespace_selector="env=prod"),
    targeted("batch", 10, namespaces=["batch"], kinds=["StatefulSet", "jobqueues.batch.example.com/v1"]),
    targeted("batch-too", 10, namespaces=["batch"], selector="tier=gpu", exclude_namespaces=["scratch"]),
]


@pytest.mark.parametrize(("kind", "namespace", "labels", "namespace_labels", "expected"), [
    pytest.param("Deployment", "llm", {"app": "chat", "gpu": "true"}, {}, "llm-chat", id="highest-priority-wins"),
    pytest.param("Deployment", "llm", {"app": "rerank", "gpu": "true"}, {}, "all-gpu", id="falls-back-to-lower"),
    pytest.param("Deployment", "other", {"gpu": "true"}, {"env": "prod"}, "team-prod", id="namespace-selector"),
    pytest.param("Deployment", "other", {"app": "x"}, {"env": "dev"}, None, id="no-match"),
    pytest.param("InferenceService", "llm", {"app": "chat"}, {}, None, id="kind-not-targeted"),
    pytest.param("StatefulSet", "batch", {}, {}, "batch", id="statefulset"),
    # A workload's kind is the kind's identity (any version): plural.group for a custom resource.
    pytest.param("jobqueues.batch.example.com", "batch", {}, {}, "batch", id="custom-resource-kind"),
    pytest.param("StatefulSet", "batch", {"tier": "gpu"}, {}, Conflict(("batch", "batch-too"), 10),
                 id="equal-top-priority-conflict"),
])
def test_select_policy(kind, namespace, labels, namespace_labels, expected):
    workload = WorkloadState(kind=kind, namespace=namespace, name="w", labels=labels, replicas=1)
    chosen = select_policy(SELECTION, workload, namespace_labels=namespace_labels)
    assert (chosen.name if isinstance(chosen, Policy) else chosen) == expected


def test_select_policy_ignores_order():
    workload = WorkloadState(kind="Deployment", namespace="llm", name="w", labels={"app": "chat", "gpu": "true"})
    for policies in (SELECTION, SELECTION[::-1]):
        assert select_policy(policies, workload, namespace_labels={}).name == "llm-chat"


def test_exclude_namespaces_of_a_policy():
    policy = targeted("p", exclude_namespaces=["scratch"])
    assert select_policy([policy], WorkloadState("Deployment", "scratch", "w"), namespace_labels={}) is None
    assert select_policy([policy], WorkloadState("Deployment", "llm", "w"), namespace_labels={}) is policy


@pytest.mark.parametrize(("namespace", "annotations", "excluded"), [
    pytest.param("kube-system", {}, True, id="kube-system"),
    pytest.param("llm", {"scaler.io/exclude": "true"}, True, id="annotation"),
    pytest.param("llm", {"scaler.io/exclude": "false"}, False, id="annotation-false"),
    pytest.param("llm", {}, False, id="ordinary"),
])
def test_is_excluded_by_default(namespace, annotations, excluded):
    assert is_excluded(WorkloadState("Deployment", namespace, "w", annotations=annotations)) is excluded


def test_is_excluded_with_the_daemons_namespace():
    workload = WorkloadState("Deployment", "scaler-system", "w")
    assert is_excluded(workload, excluded_namespaces={"kube-system", "scaler-system"})
    assert not is_excluded(workload)


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (0.25, "0.2s"), (45, "45s"), (90, "1m30s"), (600, "10m"), (5400, "1h30m"), (90061, "1d1h1m1s"),
])
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def test_the_precedence_table_in_the_docs_names_these_tests_and_codes():
    """README.md's precedence table points at rows of this file; keep them in step."""
    import fnmatch
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    doc = readme.split("## How it decides", 1)[1].split("\n## ", 1)[0]
    # \u2013: the en dash the README's table writes in the id column of an unnumbered row
    rows = [line for line in doc.splitlines() if re.match(r"\| (\d+[a-d]?|\u2013) \|", line)]
    ids = [param.id for param in TABLE] + [name for name in globals() if name.startswith("test_")]
    assert len(rows) >= 12
    for row in rows:
        cells = row.strip("|").split("|")
        codes = re.findall(r"`([^`]+)`", cells[-2])
        assert codes and all(Code(code) for code in codes)  # real reason codes
        for pattern in re.findall(r"`([^`]+)`", cells[-1]):
            assert fnmatch.filter(ids, pattern), f"{pattern} in README.md matches no test"
    documented = set(re.findall(r"`([a-z-]+)`", doc + (root / "docs" / "policies.md").read_text()))
    assert {code.value for code in Code} <= documented


def test_next_prewarm_is_the_next_keep_up_opening_minus_the_lead():
    from scaler.decide.facts import next_prewarm

    when, lead = next_prewarm(PREWARM_90S, (), TUESDAY_NIGHT)
    assert (when, lead) == (at("2024-06-05 07:58:30"), 90.0)
    when, lead = next_prewarm(PREWARM_AUTO, (30.0, 70.0), at("2024-06-07 21:00"))  # Friday night
    assert (when, lead) == (at("2024-06-10 07:58:50"), 70.0)  # Monday: the weekend has no opening
    assert next_prewarm(PREWARM_AUTO, (), TUESDAY_NIGHT) is None
    assert next_prewarm(POLICY, (30.0,), TUESDAY_NIGHT) is None


# ---------------------------------------------------------------- what each row declares


def answering(policy, state, signals, now):
    """The row that answers, and its answer, as `decide` walks the table."""
    facts = Facts(policy, state, signals, now)
    return next((row, answer) for row in RULES if (answer := row(facts)) is not None)


#: The sets kept by hand before each row declared its properties (issue 21):
#: run/evaluating.py's SCHEDULE_CODES, decide/replaying.py's TIMELESS, and
#: the code run/reconciling.py's `_override_to_clear` wrote for.
SCHEDULE_BY_HAND = {Code.KEEP_DOWN_WINDOW, Code.KEEP_UP_WINDOW, Code.PREWARM, Code.WINDOW_ENDED}
TIMELESS_BY_HAND = {Code.BUSY, Code.AT_ZERO, Code.NO_RULE, Code.METRICS_UNKNOWN, Code.KEEP_UP_WINDOW,
                    Code.KEEP_DOWN_WINDOW, Code.OUTSIDE_DOWN, Code.MANUAL_PAUSE, Code.PREWARM}
#: Codes no row answers from the clock, but only ever with a change of size: the replay
#: never reuses a change, so their being in TIMELESS changes nothing (checked below).
CHANGES_ONLY = {Code.QUEUE_WAKE, Code.QUEUE_SCALE_UP, Code.WINDOW_ENDED, Code.IDLE_TIMEOUT}


def test_the_sets_the_daemon_and_the_replay_use_are_the_ones_kept_by_hand_before():
    assert SCHEDULE_CODES == SCHEDULE_BY_HAND
    assert TIMELESS == TIMELESS_BY_HAND | CHANGES_ONLY
    # The human override, split by who set the size: a person's edit, a GitOps controller's revert.
    assert WRITES_WHILE_HOLDING == {Code.HUMAN_OVERRIDE, Code.GITOPS_REVERT}


def test_a_row_added_with_a_property_is_in_the_set_derived_from_it():
    """Adding a row is declaring it: the sets follow without another edit."""
    def added(**properties):
        row = rule("2b", Code.NO_POLICY, **properties)(lambda f: None)
        return (*RULES[:7], row, *RULES[7:])
    assert Code.NO_POLICY in schedule_codes(added(schedule_only=True))
    assert Code.NO_POLICY not in schedule_codes(added())
    assert Code.NO_POLICY in writing_codes(added(writes_while_holding=True))
    assert Code.NO_POLICY not in timeless_codes(added(writes_while_holding=True))  # a write changes what it read
    assert Code.NO_POLICY not in timeless_codes(added(reads_clock=True))
    assert Code.NO_POLICY in timeless_codes(added())
    # A code another row answers too, without the property, is not the schedule's alone.
    shared = rule("2b", Code.BUSY, schedule_only=True)(lambda f: None)
    assert Code.BUSY not in schedule_codes((*RULES, shared))
    with pytest.raises(ValueError, match="reads_clock"):
        rule("2b", Code.NO_POLICY, reads_clock=[Code.BUSY])


def test_the_rows_are_in_the_readmes_order():
    """RULES mirrors the README's table: its rows, in order (1b and 1c answer
    twice: the edit that set the size back, then the period it left)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    doc = readme.split("## How it decides", 1)[1].split("\n## ", 1)[0]
    numbered = [match[1] for line in doc.splitlines() if (match := re.match(r"\| (\d+[a-d]?) \|", line))]
    assert list(dict.fromkeys(row.row for row in RULES)) == numbered
    assert [row.name for row in RULES if row.row in ("1b", "1c")] == \
        ["human_override", "gitops_revert", "hands_off", "gitops_backoff"]


INSTANTS = st.integers(-7200, 7200).map(lambda seconds: timedelta(seconds=seconds))


@st.composite
def any_case(draw):
    """The property tests' cases, with what a person or a controller leaves:
    who set the size, an override, a back-off, a hold."""
    policy, state, signals, now = draw(cases())
    annotations = {}
    for key in ("scaler.io/override-until", "scaler.io/backoff-until", "scaler.io/hold-up-until"):
        if draw(st.booleans()):
            annotations[key] = rfc3339(now + draw(INSTANTS))
    if draw(st.booleans()):
        annotations["scaler.io/reverts"] = str(draw(st.integers(0, 4)))
    writer = draw(st.sampled_from([None, "kubectl", "argocd-controller"]))
    return policy, replace(state, annotations=annotations, size_writer=writer,
                           size_writer_gitops=writer == "argocd-controller"), signals, now


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_case())
def test_each_row_answers_only_as_it_declares(case):
    policy, state, signals, now = case
    row, answer = answering(policy, state, signals, now)
    decision = decide(policy=policy, workload=state, signals=signals, now=now)
    assert (decision.action, decision.replicas, decision.reason_code) == \
        (answer.action, answer.replicas, answer.reason_code)
    assert decision.reason_code in row.codes, row.name
    assert decision.writes_while_holding is (row.writes_while_holding and decision.action is Action.HOLD)
    assert decision.writes is (decision.changes or decision.writes_while_holding)
    if decision.reason_code in CHANGES_ONLY:
        assert decision.changes, decision  # never a hold: the replay never reuses it


@pytest.mark.parametrize(("policy", "workload", "signals", "now", "expected", "reason"), TABLE)
def test_each_row_of_the_table_answers_as_it_declares(policy, workload, signals, now, expected, reason):
    state = WorkloadState(kind="Deployment", namespace="llm", name="chat", **workload)
    row, _ = answering(policy, state, signals, now)
    decision = decide(policy=policy, workload=state, signals=signals, now=now)
    assert decision.reason_code in row.codes
    # The edit that set the size back while paused writes (the record dropped, a hands-off or a
    # back-off written); the period it leaves, and every other hold, does not.
    writes = decision.reason_code is Code.GITOPS_REVERT or (decision.reason_code is Code.HUMAN_OVERRIDE
                                                            and state.last_replicas is not None)
    assert decision.writes_while_holding is writes, row.name
