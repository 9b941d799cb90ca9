"""`scaler plan`, `scaler backtest` and `scaler run`'s start, in process
against the fake API server and a fake Prometheus: what they print and
their exit codes (README "Exit codes"). Moved from the cluster tier: the
real Prometheus's answers at a past instant and over a real hole stay there
(tests/cluster/test_backtest.py, test_idle_gaps.py)."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from scaler.decide.annotations import LAST_REPLICAS, PAUSE_CAUSE, PAUSED_AT, PAUSED_BY, WARM_UPS
from scaler.decide.times import parse_time, rfc3339
from scaler.decide.windows import zone
from tests.fakes.bodies import all_day, deployment, namespace

DEPLOYMENTS = "deployments.apps"


@pytest.fixture
def plan(scaler, prometheus):
    def run(policies, *arguments: str):
        return scaler("plan", "--policies", policies, "--prometheus-url", prometheus.url, *arguments)
    return run


def _write(tmp_path, text: str, name: str = "policies.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _line(text: str, *pieces: str) -> str:
    found = [line for line in text.splitlines() if all(piece in f" {line} " for piece in pieces)]
    assert len(found) == 1, (pieces, text)
    return found[0]


def test_plan_shows_pending_changes_and_exit_codes(fake, plan, tmp_path):
    namespace(fake, "llm")
    policies = _write(tmp_path, all_day())
    nothing = plan(policies)
    assert nothing.code == 0, nothing.err
    assert "0 change(s) pending" in nothing.out

    fake.create(DEPLOYMENTS, deployment("llm", replicas=3, gpus=2, labels={"tier": "gpu"}), namespace="llm")
    pending = plan(policies)
    assert pending.code == 3, pending.err
    row = _line(pending.out, " llm ", "nights")
    assert "pause" in row and "3 -> 0" in row and " 6 " in f" {row} "
    assert "1 change(s) pending" in pending.out and "6 GPUs would be freed" in pending.out
    assert json.loads(plan(policies, "-o", "json").out)["evaluations"][0]["reasonCode"] == "keep-down-window"
    assert fake.get(DEPLOYMENTS, "llm", "llm")["spec"]["replicas"] == 3 and fake.count("PATCH") == 0

    failed = plan(_write(tmp_path, "policies:\n  - name: x\n    min_replicas: -1\n", "broken.yaml"))
    assert failed.code == 1
    assert "broken.yaml:3: " in failed.err


def test_plan_shows_the_upcoming_prewarm_and_its_lead(fake, plan, tmp_path):
    namespace(fake, "llm")
    fake.create(DEPLOYMENTS, deployment("chat", replicas=0, annotations={
        LAST_REPLICAS: "2", PAUSED_BY: "policy/chat", PAUSED_AT: "2026-01-01T00:00:00Z",
        PAUSE_CAUSE: "outside-down", WARM_UPS: "50,74,61"}), namespace="llm")
    policies = _write(tmp_path, """
        policies:
          - name: chat
            targets: {namespaces: [llm], selector: app=chat}
            schedule:
              timezone: Europe/Berlin
              outside: down
              windows: [{name: office, mode: up, when: "daily 09:00-17:00"}]
            prewarm: auto
        """)
    result = plan(policies, "-o", "json")
    assert result.code in (0, 3), result.err  # nothing or changes pending; never an error
    prewarms = json.loads(result.out)["prewarms"]
    assert [(row["name"], row["leadSeconds"], row["lead"]) for row in prewarms] == [("chat", 74, "measured warm-up")]
    opens = parse_time(prewarms[0]["windowOpensAt"])
    assert opens.astimezone(zone("Europe/Berlin")).strftime("%H:%M") == "09:00"
    assert (opens - parse_time(prewarms[0]["resumeAt"])).total_seconds() == 74
    table = plan(policies)
    assert "pre-warm: llm/chat resumes at " in table.out
    assert "74s (measured warm-up) before its keep-up window opens" in table.out


def test_plan_json_is_pure_json_when_a_query_fails(fake, plan, prometheus, tmp_path):
    """Before: the failed query's log line came first on stdout."""
    namespace(fake, "llm")
    fake.create(DEPLOYMENTS, deployment("chat", replicas=2), namespace="llm")

    def refused(query):
        raise ValueError("1:10: parse error: unclosed left parenthesis")
    prometheus.instant = refused
    policies = _write(tmp_path, """
        policies:
          - name: broken-query
            targets: {namespaces: [llm]}
            idle: {query: 'sum(rate(', threshold: 1, duration: 5m}
        """)
    planned = plan(policies, "-o", "json", "--all")
    assert planned.code == 4, planned.err  # unknown: a signal could not be evaluated (README's table)
    answer = json.loads(planned.out)
    assert answer["signalErrors"] and answer["evaluations"][0]["reasonCode"] == "metrics-unknown"
    assert "signal unknown: query failed" in planned.err


def test_plan_at_an_instant_to_come_reads_the_windows_then_and_the_signals_now(fake, plan, tmp_path):
    namespace(fake, "llm")
    fake.create(DEPLOYMENTS, deployment("chat", replicas=2), namespace="llm")
    window_start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=3)
    end = window_start + timedelta(minutes=1)
    policies = _write(tmp_path, f"""
        policies:
          - name: chat
            targets: {{namespaces: [llm], selector: app=chat}}
            schedule:
              timezone: UTC
              windows: [{{name: maintenance, mode: down, start: "{window_start:%M %H} * * *",
                         end: "{end:%M %H} * * *"}}]
        """)
    inside = plan(policies, "-o", "json", "--all", "--at", rfc3339(window_start + timedelta(seconds=30)))
    assert inside.code == 3, inside.out + inside.err
    assert json.loads(inside.out)["evaluations"][0]["reasonCode"] == "keep-down-window"
    assert "is in the future: windows as of then, signals as of now" in inside.err


def test_a_backtest_with_prometheus_unreachable_holds_everything_and_says_so(fake, scaler, tmp_path):
    namespace(fake, "llm")
    fake.create(DEPLOYMENTS, deployment("chat", replicas=2, gpus=1), namespace="llm")
    end = datetime.now(UTC).replace(microsecond=0)
    window = end + timedelta(hours=5)
    policies = _write(tmp_path, f"""
        policies:
          - name: chat
            targets: {{namespaces: [llm], selector: app=chat}}
            schedule:
              timezone: UTC
              windows: [{{name: maintenance, mode: down, start: "{window:%M %H} * * *",
                         end: "{window + timedelta(minutes=1):%M %H} * * *"}}]
            idle: {{query: 'vllm:num_requests_running{{namespace="llm"}}', threshold: 0.5, duration: 10s}}
            wake: {{query: 'gateway_pending_requests{{namespace="llm"}}', target_per_replica: 4}}
            min_replicas: 1
            max_replicas: 4
        """)
    period = ("--from", rfc3339(end - timedelta(minutes=10)), "--to", rfc3339(end), "--step", "30s", "-n", "llm",
              "--prometheus-url", "http://127.0.0.1:1")
    result = scaler("backtest", "--policies", policies, *period, "-o", "json")
    assert result.code == 4, result.out + result.err
    assert "warning: signal unknown (held): policy chat, idle signal, " in result.err
    assert "Prometheus at http://127.0.0.1:1 unreachable" in result.err
    document = json.loads(result.out)
    row = document["workloads"][0]
    # 2 GPUs for the 10 minutes asked for (the last of the 21 steps is the period's end)
    assert row["pauses"] == 0 and row["gpuHours"] == row["gpuHoursAlwaysUp"] == round(2 * 600 / 3600, 3)
    assert row["startSizeFrom"] == "today (no history)"
    # one instant query for the Deployments' sizes at the start, one range query per signal
    assert row["unknownSteps"] == document["steps"] == 21 and document["prometheusRequests"] == 3
    table = scaler("backtest", "--policies", policies, *period)
    assert table.code == 4
    cells = next(line.split() for line in table.out.splitlines() if line.startswith("llm"))
    assert cells[1:6] == ["chat", "chat", "0.33", "0.33", "0.00"] and cells[-1] == "100%", table.out
    assert "21 steps of 30s, 1 workload(s): 0.00 of 0.33 GPU-hours saved (0%)" in table.out


def test_run_with_a_missing_policy_configmap_exits_1_naming_it(fake, scaler, prometheus):
    namespace(fake, "llm")
    result = scaler("run", "--policy-configmap", "llm/nope", "--prometheus-url", prometheus.url, "--port", "0",
                    "--bind-address", "127.0.0.1")
    assert result.code == 1, result.out + result.err
    assert "error: cannot read the policies from ConfigMap llm/nope: configmaps/nope in namespace llm not found" \
        in result.err


def test_plan_reads_the_policy_configmap_the_daemon_reads(fake, scaler, prometheus):
    """With the chart's settings (SCALER_POLICY_CONFIGMAP) `plan` must show
    what the daemon would do with its policies, not the image's files."""
    namespace(fake, "llm")
    fake.create(DEPLOYMENTS, deployment("llm", replicas=3, gpus=2, labels={"tier": "gpu"}), namespace="llm")
    fake.create("configmaps", {"metadata": {"name": "policies"}, "data": {"nights.yaml": all_day()}},
                namespace="llm")
    pending = scaler("plan", "--policy-configmap", "llm/policies", "--prometheus-url", prometheus.url)
    assert pending.code == 3, pending.err
    assert "pause" in _line(pending.out, " llm ", "nights") and "1 change(s) pending" in pending.out
    fake.write("configmaps", "llm", "policies", lambda obj: {**obj, "data": {"nights.yaml": "policies: 7\n"}},
               manager="kubectl")
    broken = scaler("plan", "--policy-configmap", "llm/policies", "--prometheus-url", prometheus.url)
    assert broken.code == 1
    assert "ConfigMap llm/policies, nights.yaml:1: " in broken.err
    missing = scaler("backtest", "--policy-configmap", "llm/nope", "--prometheus-url", prometheus.url,
                     "--from", "now-1h")
    assert missing.code == 1
    assert "configmaps/nope in namespace llm not found" in missing.err


def test_policies_named_on_the_command_line_win_over_the_configmap_of_the_environment(
        fake, scaler, prometheus, tmp_path, monkeypatch):
    """In the daemon's pod SCALER_POLICY_CONFIGMAP is set: `plan --policies
    draft.yaml` there must plan the draft, not the ConfigMap."""
    namespace(fake, "llm")
    fake.create(DEPLOYMENTS, deployment("llm", replicas=3, gpus=2, labels={"tier": "gpu"}), namespace="llm")
    monkeypatch.setenv("SCALER_POLICY_CONFIGMAP", "llm/nope")
    draft = scaler("plan", "--policies", _write(tmp_path, all_day()), "--prometheus-url", prometheus.url)
    assert draft.code == 3, draft.err
    assert "pause" in _line(draft.out, " llm ", "nights")
    configured = scaler("plan", "--prometheus-url", prometheus.url)
    assert configured.code == 1 and "configmaps/nope in namespace llm not found" in configured.err


def test_the_daemon_reads_the_configmap_of_the_environment_even_with_policies_named(
        fake, scaler, prometheus, tmp_path, monkeypatch):
    """The chart's pod names both; the daemon must read the ConfigMap (the
    files are the mounted copy, a minute behind an edit)."""
    namespace(fake, "llm")
    monkeypatch.setenv("SCALER_POLICY_CONFIGMAP", "llm/nope")
    result = scaler("run", "--policies", str(tmp_path / "not-read.yaml"), "--prometheus-url", prometheus.url,
                    "--port", "0", "--bind-address", "127.0.0.1")
    assert result.code == 1, result.out + result.err
    assert "cannot read the policies from ConfigMap llm/nope" in result.err and "not-read" not in result.err
