"""Whether a workload at zero can be woken (decide/wake_health.py,
run/wake_watch.py): said by `scaler plan`, counted by the daemon's
scaler_wake_blocked, and `absent: zero` never scaling anything down."""

from __future__ import annotations

import json
import textwrap
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaler.decide.policies import Absent, WakeSignal
from scaler.decide.wake_health import Blocked, absent_reading, health, metric_names, series_of
from tests.fakes.bodies import deployment, namespace
from tests.helpers import eventually

DEPLOYMENTS = "deployments.apps"
PAUSED = {"scaler.io/last-replicas": "2", "scaler.io/paused-by": "policy/chat", "scaler.io/paused-at":
          "2026-01-01T00:00:00Z", "scaler.io/pause-reason": "idle", "scaler.io/pause-cause": "idle-timeout"}


def policy(absent: str = "unknown", blocked_after: str = "10m") -> str:
    return textwrap.dedent(f"""
        policies:
          - name: chat
            targets: {{namespaces: [llm]}}
            idle: {{query: 'sum by (namespace, workload) (gateway_active_requests)', threshold: 1, duration: 5m}}
            wake:
              query: 'sum by (namespace, workload) (gateway_pending_requests)'
              target_per_replica: 8
              absent: {absent}
              blocked_after: {blocked_after}
        """)


@pytest.fixture
def plan(scaler, prometheus, tmp_path):
    def run(text: str, *arguments: str):
        path = tmp_path / "policies.yaml"
        path.write_text(text)
        return scaler("plan", "--policies", path, "--prometheus-url", prometheus.url, *arguments)
    return run


def at_zero(fake, *names: str) -> None:
    namespace(fake, "llm")
    for name in names:
        fake.create(DEPLOYMENTS, deployment(name, replicas=0, annotations=PAUSED), namespace="llm")


def last_seen(prometheus, values: dict[tuple[str, str], float]) -> None:
    """The last-seen query answers these Unix times; the wake query answers no series."""
    prometheus.answer("gateway_pending_requests", {})
    prometheus.answer("last_over_time(timestamp(", values)


@pytest.mark.parametrize(("query", "names"), [
    ("sum by (namespace, workload) (gateway_pending_requests)", ["gateway_pending_requests"]),
    ('sum by (namespace, workload) (label_replace(interceptor_request_concurrency{route_name!=""}, '
     '"workload", "$1", "route_name", "(.+)"))', ["interceptor_request_concurrency"]),
    ("max(rate(a_total[5m])) by (namespace) + on (namespace) group_left b # c_in_a_comment", ["a_total", "b"]),
    ("vector(0)", []),
])
def test_the_metric_names_a_person_is_told_to_look_for(query, names):
    assert metric_names(query) == names


def test_the_sentence_names_the_series_and_says_cannot_wake_only_past_the_bound():
    wake = WakeSignal(query="sum by (namespace, workload) (gateway_pending_requests)", target_per_replica=1,
                      blocked_after="10m")
    early = health(Blocked.NO_SERIES, wake=wake, namespace="llm", name="chat", for_seconds=180, looked_seconds=21600)
    late = health(Blocked.NO_SERIES, wake=wake, namespace="llm", name="chat", for_seconds=7200, looked_seconds=21600)
    never = health(Blocked.NO_SERIES, wake=wake, namespace="llm", name="chat", for_seconds=None,
                   looked_seconds=21600)
    assert (early.blocked, early.sentence) == (False, "no series for "
                                               "gateway_pending_requests{namespace=llm,workload=chat} for 3 min")
    assert late.sentence == "cannot wake: no series for gateway_pending_requests{namespace=llm,workload=chat} for 2 h"
    assert never.blocked and never.sentence.endswith("for more than 6 h")
    assert series_of(WakeSignal(query="vector(0)", target_per_replica=1), "a", "b") == \
        "the wake query{namespace=a,workload=b}"


@given(value=st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)), present=st.booleans(),
       answered=st.booleans(), replicas=st.integers(0, 50), absent=st.sampled_from(list(Absent)))
def test_absence_is_read_as_zero_only_for_a_workload_at_zero_and_only_when_declared(value, present, answered,
                                                                                      replicas, absent):
    wake = WakeSignal(query="q", target_per_replica=1, absent=absent)
    read = absent_reading(value, present=present, answered=answered, replicas=replicas, wake=wake)
    if value is not None or replicas > 0 or present or not answered or absent is Absent.UNKNOWN:
        assert read == value
    else:
        assert read == 0.0


def test_plan_names_a_workload_at_zero_its_wake_signal_cannot_wake(fake, plan, prometheus):
    at_zero(fake, "chat", "code")
    now = time.time()
    last_seen(prometheus, {("llm", "chat"): now - 7200, ("llm", "code"): now - 120})
    ran = plan(policy())
    assert ran.code == 0, ran.err
    assert ("warning: llm/chat (policy chat): cannot wake: no series for "
            "gateway_pending_requests{namespace=llm,workload=chat} for 2 h") in ran.out
    assert "llm/code" not in ran.out  # absent for 2 minutes: not yet past blocked_after
    document = json.loads(plan(policy(), "-o", "json", "--all").out)
    assert [(row["name"], row["why"]) for row in document["cannotWake"]] == [
        ("chat", "cannot wake: no series for gateway_pending_requests{namespace=llm,workload=chat} for 2 h")]
    [chat] = [e for e in document["evaluations"] if e["name"] == "chat"]
    assert chat["reason"] == ("metrics unavailable: wake signal unknown (cannot wake: no series for "
                              "gateway_pending_requests{namespace=llm,workload=chat} for 2 h): holding at 0 "
                              "(never scale down on missing data)")


def test_plan_says_since_when_it_could_not_look_past(fake, plan, prometheus):
    at_zero(fake, "chat")
    last_seen(prometheus, {})  # not seen in the window looked at
    ran = plan(policy(blocked_after="1h"))
    assert ("cannot wake: no series for gateway_pending_requests{namespace=llm,workload=chat} "
            "for more than 6 h") in ran.out


def test_absent_zero_is_no_demand_at_zero_without_a_warning_and_never_pauses_a_running_workload(fake, plan,
                                                                                              prometheus):
    at_zero(fake, "chat")
    fake.create(DEPLOYMENTS, deployment("code", replicas=2), namespace="llm")
    last_seen(prometheus, {})
    prometheus.answer("gateway_active_requests", {("llm", "code"): 0.0})  # idle, by the idle signal
    document = json.loads(plan(policy(absent="zero"), "-o", "json", "--all").out)
    reasons = {e["name"]: (e["action"], e["reason"]) for e in document["evaluations"]}
    assert document["cannotWake"] == [] and document["pending"] == 0
    assert reasons["chat"] == ("hold", "paused by policy/chat; waiting for the queue: staying at 0")
    assert reasons["code"][0] == "hold" and "wake signal unknown" in reasons["code"][1]
    assert not any("last_over_time(timestamp(" in q.promql for q in prometheus.requests)


def test_the_daemon_counts_blocked_wakes_by_reason(fake, prometheus, tmp_path):
    from tests.unit.test_push_wake import Running

    at_zero(fake, "chat", "code")
    now = time.time()
    last_seen(prometheus, {("llm", "chat"): now - 7200, ("llm", "code"): now - 60})
    with Running(fake, prometheus, tmp_path, text=policy(), push_wake=False) as running:
        registry = running.daemon.metrics.registry
        blocked = eventually(lambda: registry.get_sample_value("scaler_wake_blocked", {"reason": "no-series"}) or None,
                             timeout_seconds=5, interval_seconds=0.02)
        found = running.daemon.evaluator.wakes.found
        assert registry.get_sample_value("scaler_wake_blocked", {"reason": "query-failing"}) == 0
    assert blocked == 1
    assert found[("llm", "chat")].blocked and not found[("llm", "code")].blocked
    assert fake.count("PATCH") == 0


def test_validate_check_signals_finds_a_wake_signal_that_could_never_wake(scaler, prometheus, tmp_path):
    """Before the policies are deployed: the wake query answers nothing (a
    problem, exit 1, unless absent: zero), series without the workload label
    are a problem, a failing query is a problem."""
    path = tmp_path / "policies.yaml"
    path.write_text(policy())
    prometheus.answer("gateway_active_requests", {("llm", "chat"): 3.0})
    empty = scaler("validate", path, "--check-signals", "--prometheus-url", prometheus.url)
    assert empty.code == 1, empty.out
    assert ("problem: policy chat, wake signal: cannot wake: no series for "
            "gateway_pending_requests{namespace=...,workload=...}: a workload at zero would never be woken by it"
            ) in empty.out
    assert "policy chat, idle signal: series for 1 workload(s): llm/chat" in empty.out

    path.write_text(policy(absent="zero"))
    declared = scaler("validate", path, "--check-signals", "--prometheus-url", prometheus.url)
    assert declared.code == 0, declared.out
    assert "no series for gateway_pending_requests{namespace=...,workload=...} now: read as nobody waiting" \
        in declared.out

    before = prometheus.instant
    prometheus.instant = lambda query: ([{"metric": {"route": "chat"}, "value": [0, "1"]}]
                                        if "gateway_pending_requests" in query.promql else before(query))
    unlabelled = scaler("validate", path, "--check-signals", "--prometheus-url", prometheus.url)
    assert unlabelled.code == 1
    assert "1 series without the labels namespace and workload: they match no workload" in unlabelled.out

    def failing(query):
        raise ValueError("parse error: unexpected end of input")
    prometheus.instant = failing
    broken = scaler("validate", path, "--check-signals", "--prometheus-url", prometheus.url)
    assert broken.code == 1 and "policy chat, wake signal: the query fails:" in broken.out
    assert "unexpected end of input" in broken.out
    asked = len(prometheus.requests)
    assert scaler("validate", path).code == 0 and len(prometheus.requests) == asked  # without the flag: not asked


def test_status_with_the_policies_names_a_paused_workload_that_cannot_wake(fake, scaler, prometheus, tmp_path):
    at_zero(fake, "chat", "code")
    now = time.time()
    last_seen(prometheus, {("llm", "chat"): now - 7200, ("llm", "code"): now - 60})
    path = tmp_path / "policies.yaml"
    path.write_text(policy())
    plain = scaler("status", "-n", "llm")
    told = scaler("status", "-n", "llm", "--policies", path, "--prometheus-url", prometheus.url)
    rows = json.loads(scaler("status", "-n", "llm", "--policies", path, "--prometheus-url", prometheus.url,
                             "-o", "json").out)["workloads"]
    assert plain.code == told.code == 0, told.err
    assert "cannot wake" not in plain.out
    assert "cannot wake: no series for gateway_pending_requests{namespace=llm,workload=chat} for 2 h" in told.out
    notes = {row["name"]: row["notes"] for row in rows}
    assert notes["chat"] == ["cannot wake: no series for gateway_pending_requests{namespace=llm,workload=chat} "
                             "for 2 h"]
    assert notes["code"] == []
