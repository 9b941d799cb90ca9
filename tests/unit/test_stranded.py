"""Nothing a policy paused is left at zero by nobody: a policy renamed,
outranked, removed, or whose targets no longer take in a workload it
paused. The daemon in process (tests/unit/running.py) with the policies
edited while the workload is paused, as a hot reload does."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from scaler.cluster.views import WatchingView
from scaler.decide.annotations import LAST_REPLICAS, PAUSE_CAUSE, PAUSED_AT, PAUSED_BY
from scaler.decide.decisions import Action, Code, Signals, WorkloadState
from scaler.decide.precedence import decide
from tests.fakes.bodies import all_day, deployment, namespace
from tests.unit.running import Log, Passes, Running, policies, settings, wait_until

DEPLOYMENTS = "deployments.apps"
START = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)  # a Monday, inside the night window


def nights(name: str, selector: str = "app=chat", priority: int = 0) -> str:
    return textwrap.dedent(f"""
        policies:
          - name: {name}
            priority: {priority}
            targets: {{namespaces: [llm], selector: {selector}}}
            schedule:
              timezone: UTC
              windows:
                - {{name: night, mode: down, start: "0 0 * * *", end: "0 6 * * *"}}
        """)


def idle_only(name: str) -> str:
    return (f"  - name: {name}\n    priority: 10\n    targets: {{namespaces: [llm], selector: app=chat}}\n"
            "    idle: {query: 'vllm:num_requests_running', threshold: 0.5, duration: 10m}\n")


def _after_edit(fake, prometheus, before: str, after: str) -> tuple[dict, list]:
    """Paused at 01:00 by `before`; `after` in force from then on; the day's passes until 20:00."""
    namespace(fake, "llm")
    fake.create(DEPLOYMENTS, deployment("chat", replicas=4), namespace="llm")
    daemon = Passes(fake, prometheus.url, policies(before), now=START)
    try:
        daemon.seen("chat")
        daemon.step(START)
        assert fake.get(DEPLOYMENTS, "llm", "chat")["spec"]["replicas"] == 0
        daemon.policies = policies(after)
        decided = []
        for hour in (2, 5, 7, 12, 20):
            daemon.seen("chat")
            decided += [e.decision for e in daemon.step(START + timedelta(hours=hour))
                        if e.workload.name == "chat"]
        assert daemon.sink.flush(timeout_seconds=5) == 0  # the Events, posted in the background
        return fake.get(DEPLOYMENTS, "llm", "chat"), decided
    finally:
        daemon.stop()


@pytest.mark.parametrize("after", [
    pytest.param(nights("nights"), id="unchanged"),
    pytest.param(nights("gpu-nights"), id="renamed"),
    pytest.param(nights("nights") + idle_only("chat-idle"), id="outranked-by-an-idle-policy"),
])
def test_the_keep_down_window_that_paused_it_ending_resumes_it_whoever_owns_it_now(fake, prometheus, after):
    obj, decided = _after_edit(fake, prometheus, nights("nights"), after)
    assert obj["spec"]["replicas"] == 4
    [resume] = [d for d in decided if d.action is Action.RESUME]
    assert resume.reason_code is Code.WINDOW_ENDED
    assert resume.reason.startswith("the keep-down window that paused it has ended: resuming to 4")


@pytest.mark.parametrize("after", [
    pytest.param(nights("nights", selector="app=other"), id="selector-changed"),
    pytest.param(nights("other", selector="app=other"), id="policy-replaced"),
])
def test_a_workload_no_policy_targets_any_more_is_resumed_to_its_recorded_count(fake, prometheus, after):
    obj, decided = _after_edit(fake, prometheus, nights("nights"), after)
    assert obj["spec"]["replicas"] == 4
    assert LAST_REPLICAS not in obj["metadata"]["annotations"]
    [resume] = [d for d in decided if d.action is Action.RESUME]
    assert (resume.reason_code, resume.policy) == (Code.NO_POLICY, "nights")
    assert resume.reason == ("no policy targets it any more (policy/nights paused it): "
                             "resuming to 4 (4 recorded at pause)")
    [event] = fake.events("llm", "chat", "Resumed")
    assert resume.reason in event["message"] and "by policy/nights" in event["message"]


def test_a_workload_in_a_namespace_no_policy_reaches_any_more_is_not_scalers(fake, prometheus):
    """Another installation's, or the last policy of its namespace removed: left as it is."""
    obj, decided = _after_edit(fake, prometheus, nights("nights"),
                               nights("nights").replace("namespaces: [llm]", "namespaces: [other]"))
    assert obj["spec"]["replicas"] == 0 and obj["metadata"]["annotations"][LAST_REPLICAS] == "4"
    assert decided == [] and fake.events("llm", "chat", "Resumed") == []


def test_a_policy_file_removed_at_run_time_leaves_nothing_at_zero(fake, prometheus, tmp_path):
    namespace(fake, "llm")
    fake.create(DEPLOYMENTS, deployment("chat", replicas=3, labels={"tier": "gpu"}), namespace="llm")
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "nights.yaml").write_text(all_day())
    (directory / "other.yaml").write_text(all_day("other", mode="up", selector="app=nothing"))
    log = Log(tmp_path / "daemon.log")
    try:
        with Running.start(settings(fake, prometheus.url, tmp_path, policies=directory)) as daemon:
            wait_until(lambda: fake.get(DEPLOYMENTS, "llm", "chat")["spec"]["replicas"] == 0)
            (directory / "nights.yaml").unlink()
            wait_until(lambda: fake.get(DEPLOYMENTS, "llm", "chat")["spec"]["replicas"] == 3)
            daemon.let_reconciles_pass(2)
            assert daemon.metric("scaler_paused_workloads", paused_by="policy") == 0
        [line] = log.lines("decision", where=lambda line: line.get("result") == "changed"
                           and line.get("action") == "resume")
        assert (line["reason_code"], line["policy"]) == ("no-policy", "nights")
    finally:
        log.close()


@pytest.mark.parametrize(("annotations", "replicas"), [
    pytest.param({PAUSED_BY: "manual", LAST_REPLICAS: "4"}, 0, id="paused-by-hand"),
    pytest.param({}, 0, id="at-zero-by-someone-else"),
    pytest.param({PAUSED_BY: "policy/nights", LAST_REPLICAS: "4"}, 2, id="running-again"),
])
def test_what_no_policy_paused_is_left_alone(annotations, replicas):
    state = WorkloadState(kind="Deployment", namespace="llm", name="chat", annotations=annotations,
                          replicas=replicas, last_replicas=4 if annotations else None,
                          paused_by=annotations.get(PAUSED_BY), manual_pause=annotations.get(PAUSED_BY) == "manual")
    decision = decide(policy=None, workload=state, signals=Signals(), now=START)
    assert (decision.action, decision.reason_code) == (Action.SKIP, Code.NO_POLICY)


def test_a_prewarm_never_wakes_what_a_keep_down_window_holds_as_the_keep_up_window_opens(fake, prometheus):
    """Office hours Mon-Fri 08:00-20:00 with a maintenance window Wed 08:00-10:00:
    the pre-warm before Wednesday's 08:00 would resume a workload that the
    maintenance window pauses again at once: it holds, and resumes when maintenance ends."""
    policy = textwrap.dedent("""
        policies:
          - name: office
            targets: {namespaces: [llm], selector: app=chat}
            prewarm: 10m
            schedule:
              timezone: UTC
              outside: down
              windows:
                - {name: office, mode: up, start: "0 8 * * 1-5", end: "0 20 * * 1-5"}
                - {name: maintenance, mode: down, start: "0 8 * * 3", end: "0 10 * * 3"}
        """)
    paused = {LAST_REPLICAS: "4", PAUSED_BY: "policy/office", PAUSED_AT: "2026-12-08T20:00:00Z",
              PAUSE_CAUSE: "outside-down"}
    state = WorkloadState(kind="Deployment", namespace="llm", name="chat", annotations=paused, replicas=0,
                          last_replicas=4, paused_by="policy/office", pause_cause="outside-down")
    [office] = policies(policy)
    wednesday = datetime(2026, 12, 9, tzinfo=UTC)
    at = {minutes: decide(policy=office, workload=state, signals=Signals(), now=wednesday + timedelta(minutes=minutes))
          for minutes in (7 * 60 + 51, 7 * 60 + 59, 9 * 60 + 51, 10 * 60)}
    assert [(d.action, d.reason_code) for d in at.values()] == [
        (Action.HOLD, Code.OUTSIDE_DOWN), (Action.HOLD, Code.OUTSIDE_DOWN), (Action.HOLD, Code.KEEP_DOWN_WINDOW),
        (Action.RESUME, Code.KEEP_UP_WINDOW)]
    monday = datetime(2026, 12, 7, 7, 51, tzinfo=UTC)
    assert decide(policy=office, workload=state, signals=Signals(), now=monday).reason_code is Code.PREWARM


def _down_all_day(name: str, targets: str) -> str:
    return (f"  - name: {name}\n    targets: {targets}\n    schedule:\n      timezone: UTC\n      windows:\n"
            f'        - {{name: {name}-0, mode: down, start: "0 0 * * *", end: "0 12 * * *"}}\n'
            f'        - {{name: {name}-1, mode: down, start: "0 12 * * *", end: "0 0 * * *"}}\n')


def test_a_namespace_whose_labels_could_not_be_read_strands_nothing_and_wakes_nothing(fake, prometheus):
    """A daemon restricted to its namespaces reads their labels once a minute. A namespace-selector
    policy pauses 'chat'; another policy reaches the namespace too. One failed read of the labels
    is not 'no policy targets it': 'chat' stays paused (no wake, no pause again a minute later)."""
    fake.create("namespaces", {"metadata": {"name": "llm", "labels": {"scaler.io/weekend-shutdown": "true"}}})
    fake.create(DEPLOYMENTS, deployment("chat", replicas=4), namespace="llm")
    weekend = _down_all_day("weekend-shutdown", "{namespace_selector: 'scaler.io/weekend-shutdown=true'}")
    text = "policies:\n" + weekend + _down_all_day("business-hours", "{namespaces: [llm], selector: 'x=y'}")
    daemon = Passes(fake, prometheus.url, policies(text), now=START)
    daemon.view.stop(timeout_seconds=2)
    daemon.view = daemon.evaluator.view = WatchingView(fake.client(), namespaces=("llm",))
    replicas = []
    try:
        for minute in range(4):
            if minute == 2:  # the labels' once-a-minute read is due, and fails once
                daemon.view._labels["llm"] = (0.0, *daemon.view._labels["llm"][1:])
                fake.fail(method="GET", path="/api/v1/namespaces/llm$", status=500, times=1)
            daemon.seen("chat")
            daemon.step(START + timedelta(minutes=minute))
            replicas.append(fake.get(DEPLOYMENTS, "llm", "chat")["spec"]["replicas"])
        assert daemon.sink.flush(timeout_seconds=5) == 0
    finally:
        daemon.stop()
    assert replicas == [0, 0, 0, 0] and fake.events("llm", "chat", "Resumed") == []


def test_another_installations_pause_in_a_shared_namespace_is_left_alone(fake, prometheus):
    """Team A's scaler manages app=chat in llm, team B's app=embed: A never held team-b's policy,
    so what B paused is not A's to resume."""
    fake.create("namespaces", {"metadata": {"name": "llm"}})
    fake.create(DEPLOYMENTS, deployment("embed", replicas=2, labels={"app": "embed"}), namespace="llm")
    team_a = "policies:\n" + _down_all_day("team-a", "{namespaces: [llm], selector: app=chat}").replace("down", "up")
    a = Passes(fake, prometheus.url, policies(team_a), now=START)
    team_b = "policies:\n" + _down_all_day("team-b", "{namespaces: [llm], selector: app=embed}")
    b = Passes(fake, prometheus.url, policies(team_b), now=START)
    replicas = []
    try:
        for minute in range(3):
            for daemon in (b, a):
                daemon.seen("embed")
                daemon.step(START + timedelta(minutes=minute))
                replicas.append(fake.get(DEPLOYMENTS, "llm", "embed")["spec"]["replicas"])
    finally:
        a.stop()
        b.stop()
    assert replicas == [0] * 6
