"""Properties that hold for every valid policy and every input, checked with
hypothesis: the target size is honest (never more than was asked for or
recorded), decisions are deterministic, and missing data never scales down."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaler.decide.decisions import Action, Code, Signals, WorkloadState, select_policy
from scaler.decide.policies import Policy
from scaler.decide.precedence import decide
from scaler.decide.selectors import Selector
from scaler.decide.windows import Mode, Window, zone

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Pacific/Auckland", "Asia/Kolkata"]
WHENS = ["Mon-Fri 08:00-20:00", "daily 22:00-06:00", "Fri 18:00-Mon 07:00", "Sat,Sun 00:00-24:00",
         "daily 01:00-03:00", "daily 02:30-05:00", "Mon 00:00-Mon 23:59"]
CRONS = [("0 8 * * 1-5", "0 20 * * 1-5"), ("*/15 * * * *", "10-59/15 * * * *"), ("0 0 1 * *", "0 0 2 * *")]

SCHEDULE_SCHEDULES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def windows(draw):
    mode = draw(st.sampled_from(["up", "down"]))
    if draw(st.booleans()):
        return {"mode": mode, "when": draw(st.sampled_from(WHENS))}
    start, end = draw(st.sampled_from(CRONS))
    return {"mode": mode, "start": start, "end": end}


@st.composite
def policies(draw):
    spec: dict = {"name": "p", "on_unknown": draw(st.sampled_from(["hold", "resume"]))}
    minimum = draw(st.integers(1, 4))
    spec["min_replicas"] = minimum
    if draw(st.booleans()):
        spec["max_replicas"] = draw(st.integers(minimum, 12))
    rules = draw(st.sets(st.sampled_from(["schedule", "idle", "wake"]), min_size=1))
    if "schedule" in rules:
        spec["schedule"] = {"timezone": draw(st.sampled_from(ZONES)),
                            "outside": draw(st.sampled_from(["signals", "down"])),
                            "windows": draw(st.lists(windows(), min_size=1, max_size=3))}
    if "idle" in rules:
        spec["idle"] = {"query": "q", "threshold": draw(st.floats(0, 100)),
                        "duration": draw(st.integers(1, 7200))}
    if "wake" in rules:
        spec["wake"] = {"query": "q", "target_per_replica": draw(st.floats(0.5, 100)),
                        "activation_threshold": draw(st.floats(0, 10))}
    spec["startup_grace"] = draw(st.integers(0, 3600))
    spec["scale_down_delay"] = draw(st.integers(0, 3600))
    spec["prewarm"] = draw(st.sampled_from([None, "auto", 60, 900]))
    return Policy.model_validate(spec)


NOW_RANGE = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31),
                         timezones=st.sampled_from([zone(name) for name in ZONES]))


def recent(now):
    return st.none() | st.integers(0, 7200).map(lambda seconds: now - timedelta(seconds=seconds))


@st.composite
def workloads(draw, now):
    replicas = draw(st.integers(0, 30))
    paused_by = draw(st.sampled_from([None, "policy/p", "policy/other", "manual"]))
    return WorkloadState(
        kind="Deployment", namespace="llm", name="w", replicas=replicas,
        last_replicas=draw(st.none() | st.integers(1, 30)),
        paused_by=paused_by,
        manual_pause=draw(st.booleans()) if paused_by == "manual" else False,
        ready_replicas=draw(st.integers(0, replicas)),
        started_at=draw(recent(now)),
        ready_at=draw(recent(now)),
        warm_ups=tuple(draw(st.lists(st.floats(1, 3600), max_size=5))),
    )


VALUES = st.none() | st.just(math.nan) | st.just(math.inf) | st.floats(-5, 1e6, allow_nan=False)


@st.composite
def cases(draw):
    now = draw(NOW_RANGE)
    return draw(policies()), draw(workloads(now)), Signals(idle=draw(VALUES), wake=draw(VALUES)), now


def unknown(value) -> bool:
    return value is None or not math.isfinite(value)


@SCHEDULE_SCHEDULES
@given(cases())
def test_target_is_within_what_was_asked_or_recorded(case):
    policy, workload, signals, now = case
    decision = decide(policy=policy, workload=workload, signals=signals, now=now)
    ceiling = max(workload.replicas, workload.last_replicas or 0, policy.min_replicas, policy.max_replicas or 0)
    assert 0 <= decision.replicas <= ceiling, decision
    if policy.max_replicas is not None and decision.action is Action.SCALE_UP:
        assert decision.replicas <= policy.max_replicas


@SCHEDULE_SCHEDULES
@given(cases())
def test_action_and_target_agree(case):
    policy, workload, signals, now = case
    decision = decide(policy=policy, workload=workload, signals=signals, now=now)
    current = workload.replicas
    if decision.action is Action.PAUSE:
        assert current > 0 and decision.replicas == 0
    elif decision.action is Action.RESUME:
        assert current == 0 and decision.replicas >= 1
    elif decision.action is Action.SCALE_UP:
        assert 0 < current < decision.replicas
    else:
        assert decision.replicas == current
    if workload.manual_pause:  # a person's pause: held, or made (the annotation set by hand on a running one)
        pausing = current > 0 and workload.last_replicas is None and workload.paused_by is None
        assert (decision.action, decision.reason_code) == (Action.PAUSE if pausing else Action.HOLD,
                                                           Code.MANUAL_PAUSE)
    if decision.action is Action.RESUME and decision.reason_code is not Code.QUEUE_WAKE:
        assert workload.paused_by_policy  # only the queue wakes what scaler did not pause
    assert decision.reason and isinstance(decision.reason_code, Code)


@SCHEDULE_SCHEDULES
@given(cases())
def test_deterministic(case):
    policy, workload, signals, now = case
    first = decide(policy=policy, workload=workload, signals=signals, now=now)
    again = decide(policy=policy, workload=workload, signals=signals, now=now)
    rebuilt = Policy.model_validate(policy.model_dump(by_alias=True))  # fresh schedule, nothing remembered
    fresh = decide(policy=rebuilt, workload=workload, signals=signals, now=now)
    assert first == again == fresh


@SCHEDULE_SCHEDULES
@given(cases())
def test_unknown_signal_never_scales_down(case):
    policy, workload, signals, now = case
    depends_on_unknown = (policy.wake is not None and unknown(signals.wake)) or \
                         (policy.idle is not None and workload.replicas > 0 and unknown(signals.idle))
    decision = decide(policy=policy, workload=workload, signals=signals, now=now)
    if depends_on_unknown and decision.replicas < workload.replicas:
        # only a schedule or a person's pause, which need no metrics, may scale down now
        assert decision.reason_code in (Code.KEEP_DOWN_WINDOW, Code.OUTSIDE_DOWN, Code.MANUAL_PAUSE), decision
    if policy.schedule is None and depends_on_unknown and decision.reason_code is not Code.MANUAL_PAUSE:
        assert decision.replicas >= workload.replicas


@SCHEDULE_SCHEDULES
@given(cases())
def test_same_instant_in_another_zone_decides_the_same(case):
    policy, workload, signals, now = case
    elsewhere = now.astimezone(timezone(timedelta(hours=-3, minutes=-30)))
    assert decide(policy=policy, workload=workload, signals=signals, now=now) == \
        decide(policy=policy, workload=workload, signals=signals, now=elsewhere)


@settings(max_examples=100, deadline=None)
@given(when=st.sampled_from(WHENS), tz=st.sampled_from(ZONES), now=NOW_RANGE)
def test_window_state_only_changes_at_edges(when, tz, now):
    window = Window.from_when(when, name="w", mode=Mode.UP, tz=zone(tz))
    edge = window.next_edge(now)
    assert edge is not None and edge > now
    assert window.active_at(now) == window.active_at(edge - timedelta(microseconds=1))


LABEL_VALUES = st.sampled_from(["a", "b", "c"])
REQUIREMENTS = st.one_of(
    st.builds("{}={}".format, st.sampled_from(["app", "tier"]), LABEL_VALUES),
    st.builds("{}!={}".format, st.sampled_from(["app", "tier"]), LABEL_VALUES),
    st.builds("{} in ({})".format, st.sampled_from(["app", "tier"]),
              st.lists(LABEL_VALUES, min_size=1, max_size=3).map(",".join)),
    st.builds("{} notin ({})".format, st.sampled_from(["app", "tier"]),
              st.lists(LABEL_VALUES, min_size=1, max_size=3).map(",".join)),
    st.sampled_from(["app", "!app", "tier", "!tier"]),
)


@given(text=st.lists(REQUIREMENTS, max_size=4).map(",".join),
       labels=st.dictionaries(st.sampled_from(["app", "tier", "x"]), LABEL_VALUES))
def test_selector_text_round_trips(text, labels):
    selector = Selector.parse(text)
    assert Selector.parse(str(selector)).matches(labels) == selector.matches(labels)


@settings(max_examples=50, deadline=None)
@given(priorities=st.lists(st.integers(0, 3), min_size=1, max_size=6), data=st.data())
def test_selection_is_the_unique_top_priority_or_a_conflict(priorities, data):
    pool = [Policy.model_validate({"name": f"p{index}", "priority": priority,
                                   "idle": {"query": "q", "threshold": 1, "duration": 60}})
            for index, priority in enumerate(priorities)]
    order = data.draw(st.permutations(pool))
    chosen = select_policy(order, WorkloadState("Deployment", "llm", "w"), namespace_labels={})
    top = max(priorities)
    winners = sorted(policy.name for policy in pool if policy.priority == top)
    if len(winners) == 1:
        assert chosen.name == winners[0]
    else:
        assert sorted(chosen.policies) == winners and chosen.priority == top
