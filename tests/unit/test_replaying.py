"""The replay behind `scaler backtest`, in memory: what it would have done,
what that cost, and that its fast path changes nothing.

The fast path (reusing a decision while nothing it reads changed) is held
to `replay(reuse=False)`, which decides at every step, on random policies
and hostile signals. Windows are checked against tests/oracle.py, which
shares no code with scaler."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaler.decide.decisions import Action, Code, WorkloadState
from scaler.decide.policies import Policy
from scaler.decide.replaying import Steps, Subject, replay, window_runs
from scaler.decide.windows import zone
from tests import oracle

MONDAY = datetime(2026, 11, 16, tzinfo=UTC)
STATE = WorkloadState(kind="deployments.apps", namespace="ml", name="chat", replicas=3, ready_replicas=3)


def policy(**spec) -> Policy:
    base = {"name": "p", "startup_grace": "0s", "scale_down_delay": "0s"}
    return Policy.model_validate({**base, **spec})


IDLE = {"query": "vllm:num_requests_running", "threshold": 1, "duration": "10m"}
WAKE = {"query": "gateway_pending_requests", "target_per_replica": 4}


def points(steps: Steps, values: list[str | None]) -> list:
    """One point per step (None: no point), as a range query answers."""
    start = int(steps.start.timestamp())
    return [[start + index * steps.step_seconds, value] for index, value in enumerate(values) if value is not None]


def run(p: Policy, steps: Steps, *, idle=None, queue=None, size=3, gpus=2, warm_up=0.0, reuse=True,
        state=STATE):
    subject = Subject(state, p, size=size, gpus_per_replica=gpus, warm_up_seconds=warm_up)
    return replay(subject, steps, windows=window_runs(p, steps, subject.lead), reuse=reuse,
                  idle=points(steps, idle) if idle is not None else None,
                  wake=points(steps, queue) if queue is not None else None)


def test_an_idle_workload_is_paused_when_its_signal_goes_quiet_and_the_gpu_hours_follow():
    steps = Steps(MONDAY, 60, 120)
    result = run(policy(idle=IDLE), steps, idle=["5"] * 60 + ["0"] * 60)
    assert [(act.index, act.action, act.before, act.after) for act in result.acts] == [(60, Action.PAUSE, 3, 0)]
    assert result.acts[0].code is Code.IDLE_TIMEOUT and "below threshold 1" in result.acts[0].reason
    # 3 replicas x 2 GPUs for 60 one-minute steps, then nothing; always up would be 120 steps.
    assert result.gpu_hours == pytest.approx(3 * 2 * 60 / 60)
    assert result.gpu_hours_always_up == pytest.approx(3 * 2 * 120 / 60)
    assert result.gpu_hours_saved == pytest.approx(6.0)


def test_a_queue_wakes_it_and_the_wait_is_the_warm_up_and_the_grace_holds_after_ready():
    steps = Steps(MONDAY, 60, 60)
    p = policy(idle=IDLE, wake=WAKE, startup_grace="5m")
    queue = ["0"] * 10 + ["3"] * 5 + ["0"] * 45
    idle = ["0"] * 60  # idle throughout: only the warm-up and the grace keep it up after the wake
    result = run(p, steps, idle=idle, queue=queue, warm_up=150)
    moves = [(act.index, act.action) for act in result.acts]
    assert moves[0] == (0, Action.PAUSE) and moves[1] == (10, Action.RESUME)
    # Ready at step 10 + 150 s (step 12.5, so seen Ready at step 13); the grace is 5 minutes from Ready.
    assert moves[2][1] is Action.PAUSE and moves[2][0] >= 13 + 5 - 1
    assert len(result.waits) == 1 and result.waits[0].seconds == 150
    assert result.waits[0].served == MONDAY + timedelta(minutes=10, seconds=150)
    assert result.flaps(within_seconds=15 * 60) == 2  # pause/wake 10 min apart, then wake/pause within 15


def test_unknown_data_never_pauses_and_is_counted():
    steps = Steps(MONDAY, 60, 30)
    idle = ["5"] * 10 + [None] * 10 + ["NaN"] * 5 + ["+Inf"] * 5
    result = run(policy(idle=IDLE), steps, idle=idle)
    assert result.acts == []
    assert result.unknown_steps == 20
    assert result.gpu_hours == result.gpu_hours_always_up


def test_a_failed_stretch_holds_a_paused_workload_too_unless_on_unknown_resume():
    steps = Steps(MONDAY, 60, 20)
    idle, queue = ["0"] * 20, ["0"] * 5 + [None] * 15
    held = run(policy(idle=IDLE, wake=WAKE), steps, idle=idle, queue=queue)
    assert [act.action for act in held.acts] == [Action.PAUSE]
    woken = run(policy(idle=IDLE, wake=WAKE, on_unknown="resume"), steps, idle=idle, queue=queue)
    assert [(act.index, act.action) for act in woken.acts] == [(0, Action.PAUSE), (5, Action.RESUME)]


def test_a_keep_down_window_pauses_at_its_start_and_resumes_at_its_end_across_the_dst_weekend():
    """Berlin leaves summer time on Sunday 2026-10-25; the window is the weekend."""
    tz = zone("Europe/Berlin")
    when = "Sat,Sun 00:00-24:00"
    p = policy(schedule={"timezone": "Europe/Berlin", "windows": [{"name": "weekend", "mode": "down",
                                                                    "when": when}]})
    start = datetime(2026, 10, 23, 12, tzinfo=UTC)
    steps = Steps(start, 60, 4 * 1440)
    result = run(p, steps)
    states = oracle.walk({"when": when}, tz, start, steps.at(steps.count - 1))
    edges = oracle.changes(states)
    assert [(act.at, act.action) for act in result.acts] == [(edges[0], Action.PAUSE), (edges[1], Action.RESUME)]
    assert result.acts[1].code is Code.WINDOW_ENDED


def test_prewarm_resumes_a_window_early_by_the_measured_warm_up():
    p = policy(prewarm="auto", schedule={"timezone": "UTC", "outside": "down", "windows": [
        {"name": "day", "mode": "up", "when": "daily 09:00-17:00"}]})
    steps = Steps(MONDAY + timedelta(hours=8), 60, 120)
    warm = WorkloadState(**{**STATE.__dict__, "warm_ups": (300.0,)})
    result = run(p, steps, state=warm, warm_up=300)
    assert [(act.at, act.action, act.code) for act in result.acts] == [
        (MONDAY + timedelta(hours=8), Action.PAUSE, Code.OUTSIDE_DOWN),
        (MONDAY + timedelta(hours=8, minutes=55), Action.RESUME, Code.PREWARM)]
    assert result.replicas_at()[60] == (3, 3)  # Ready when the window opens at 09:00


def test_points_that_are_not_points_are_unknown_and_never_crash():
    steps = Steps(MONDAY, 60, 5)
    start = int(MONDAY.timestamp())
    garbage = [["x", "1"], [start + 60], None, [start + 120, None], [start + 180, "zero"], [start + 240, "0"]]
    subject = Subject(STATE, policy(idle=IDLE), size=1, gpus_per_replica=1, warm_up_seconds=0)
    result = replay(subject, steps, windows=window_runs(subject.policy, steps, None), idle=garbage)
    assert [(act.index, act.action) for act in result.acts] == [(4, Action.PAUSE)]
    assert result.unknown_steps == 4


# ---------------------------------------------------------------- the fast path

VALUES = st.sampled_from(["0", "0.5", "1", "3", "7", "12", "30", "NaN", None])


@st.composite
def scenarios(draw):
    spec: dict = {"name": "p", "startup_grace": draw(st.sampled_from(["0s", "2m", "7m"])),
                  "scale_down_delay": draw(st.sampled_from(["0s", "3m", "20m"])),
                  "on_unknown": draw(st.sampled_from(["hold", "resume"])),
                  "min_replicas": draw(st.integers(1, 3))}
    if draw(st.booleans()):
        spec["idle"] = {**IDLE, "duration": draw(st.sampled_from(["5m", "30m"]))}
    if draw(st.booleans()):
        spec["wake"] = {**WAKE, "activation_threshold": draw(st.sampled_from([0, 2]))}
        spec["max_replicas"] = draw(st.integers(spec["min_replicas"], 6))
    if draw(st.booleans()):
        spec["schedule"] = {"timezone": draw(st.sampled_from(["UTC", "Europe/Berlin", "Asia/Kolkata"])),
                            "outside": draw(st.sampled_from(["signals", "down"])),
                            "windows": [{"name": "w", "mode": draw(st.sampled_from(["up", "down"])),
                                         "when": draw(st.sampled_from(["daily 01:00-03:00", "Mon-Fri 00:20-01:10",
                                                                       "daily 22:00-06:00"]))}]}
        spec["prewarm"] = draw(st.sampled_from([None, "10m", "auto"]))
    if not {"idle", "wake", "schedule"} & spec.keys():
        spec["idle"] = IDLE  # a policy needs a rule
    count = draw(st.integers(1, 240))
    runs = draw(st.lists(st.tuples(VALUES, VALUES, st.integers(1, 40)), min_size=1, max_size=12))
    idle, queue = [], []
    for idle_value, queue_value, length in runs:
        idle += [idle_value] * length
        queue += [queue_value] * length
    return ({key: value for key, value in spec.items() if value is not None}, count,
            (idle * (count // len(idle) + 1))[:count], (queue * (count // len(queue) + 1))[:count],
            draw(st.sampled_from([0.0, 45.0, 400.0])), draw(st.sampled_from([30, 60, 300])), draw(st.integers(1, 4)),
            draw(st.datetimes(min_value=datetime(2026, 3, 27), max_value=datetime(2026, 3, 30))))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_reusing_decisions_changes_nothing(scenario):
    spec, count, idle, queue, warm_up, step, size, start = scenario
    p = Policy.model_validate(spec)
    steps = Steps(start.replace(tzinfo=UTC, microsecond=0), step, count)
    state = WorkloadState(**{**STATE.__dict__, "warm_ups": (warm_up,) if warm_up else ()})
    fast = run(p, steps, idle=idle, queue=queue, warm_up=warm_up, state=state, size=size)
    every = run(p, steps, idle=idle, queue=queue, warm_up=warm_up, state=state, size=size, reuse=False)
    assert fast.acts == every.acts
    assert fast.changes == every.changes
    assert fast.waits == every.waits
    assert fast.unknown_steps == every.unknown_steps
    assert fast.evaluations <= every.evaluations == count


def test_replicas_warming_under_a_window_are_ready_at_their_step_not_at_the_next_event():
    """A keep-up window resumes it; its hold reads no clock, so the fast path
    skips ahead, but not past the step its replicas come Ready."""
    p = policy(schedule={"timezone": "UTC", "outside": "down", "windows": [
        {"name": "day", "mode": "up", "when": "daily 09:00-17:00"}]})
    steps = Steps(MONDAY + timedelta(hours=8), 60, 180)
    fast = run(p, steps, warm_up=150)
    every = run(p, steps, warm_up=150, reuse=False)
    assert fast.changes == every.changes
    assert (63, 3, 3) in fast.changes  # resumed at 09:00 (step 60), Ready 150 s later: seen at step 63
    assert fast.evaluations < every.evaluations


# ---------------------------------------------------------------- GPU-hours over the period

def _integral(result, steps: Steps, *, start_replicas: int, gpus: int) -> float:
    """GPU-hours computed apart from the replay's spans: replicas x GPUs
    integrated over [start, end], the replicas changing at each action's time."""
    replicas, since, seconds = start_replicas, steps.start, 0.0
    for act in result.acts:
        seconds += replicas * gpus * (act.at - since).total_seconds()
        replicas, since = act.after, act.at
    seconds += replicas * gpus * (steps.end - since).total_seconds()
    return seconds / 3600


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.floats(0, 1), st.sampled_from([None, 0, 1, 5]), st.booleans())
def test_gpu_hours_are_the_integral_of_replicas_times_gpus_over_the_period(scenario, into_last, started, paused):
    """Whatever the policy, signals, step and where in its last step the
    period ends; from any start state (history's size, or at zero paused by
    its policy or by someone else)."""
    spec, count, idle, queue, warm_up, step, size, start = scenario
    p = Policy.model_validate(spec)
    begin = start.replace(tzinfo=UTC, microsecond=0)
    steps = Steps(begin, step, count, until=begin + timedelta(seconds=step * (count - 1 + into_last)))
    subject = Subject(STATE, p, size=started or size, gpus_per_replica=2, warm_up_seconds=warm_up,
                      start_replicas=started, start_paused_by_policy=paused)
    result = replay(subject, steps, windows=window_runs(p, steps, subject.lead),
                    idle=points(steps, idle), wake=points(steps, queue))
    initial = size if started is None else started
    assert result.gpu_hours == pytest.approx(_integral(result, steps, start_replicas=initial, gpus=2))
    assert result.gpu_hours_always_up == pytest.approx((started or size) * 2 * steps.seconds / 3600)
    assert all(act.at <= steps.end for act in result.acts)


def test_the_period_ends_within_its_last_step():
    with pytest.raises(ValueError, match="not within its last step"):
        Steps(MONDAY, 60, 10, until=MONDAY + timedelta(minutes=11))
    with pytest.raises(ValueError, match="not within its last step"):
        Steps(MONDAY, 60, 10, until=MONDAY + timedelta(minutes=8))
    assert Steps(MONDAY, 60, 10, until=MONDAY + timedelta(minutes=9)).seconds == 540


def test_at_zero_at_the_start_paused_by_its_policy_is_woken_by_its_window():
    p = policy(schedule={"timezone": "UTC", "windows": [{"name": "day", "mode": "up", "when": "daily 09:00-17:00"}]})
    steps = Steps(MONDAY + timedelta(hours=8), 60, 120)
    woken = replay(Subject(STATE, p, size=3, gpus_per_replica=1, warm_up_seconds=0, start_replicas=0,
                           start_paused_by_policy=True), steps, windows=window_runs(p, steps, None))
    assert [(act.index, act.action, act.after) for act in woken.acts] == [(60, Action.RESUME, 3)]
    left = replay(Subject(STATE, p, size=3, gpus_per_replica=1, warm_up_seconds=0, start_replicas=0), steps,
                  windows=window_runs(p, steps, None))
    assert left.acts == [] and left.gpu_hours == 0
