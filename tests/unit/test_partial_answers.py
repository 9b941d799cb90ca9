"""An answer Prometheus sends with a warning that data is missing (a failed
remote read, a Thanos store that did not answer) is unknown, not the values
it holds: the series left out may be the busy one. PromQL's own remarks on
the query ("PromQL info: ...") are not missing data and leave the answer as
it is. Through `scaler plan` and `scaler backtest`, as a user runs them."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from scaler.decide.times import rfc3339
from tests.fakes.bodies import deployment, namespace

DEPLOYMENTS = "deployments.apps"
IDLE = "vllm:num_requests_running"
REMOTE_READ = "remote_read: error sending request to storage 10.0.0.7:9201: connection refused"
PROMQL_INFO = 'PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: "x"'


@pytest.fixture
def chat(fake, prometheus, tmp_path):
    """llm/chat running 2 replicas; its idle signal answers 0 (idle) at every
    instant and step; the policy file's path."""
    namespace(fake, "llm")
    fake.create(DEPLOYMENTS, deployment("chat", replicas=2, gpus=1), namespace="llm")
    labels = {"namespace": "llm", "workload": "chat"}

    def instant(query):
        at = float(query.form.get("time") or datetime.now(UTC).timestamp())
        return [{"metric": labels, "value": [at, "0"]}] if IDLE in query.promql else []

    def range_(query):
        start, end, step = (float(query.form[key]) for key in ("start", "end", "step"))
        points = [[start + k * step, "0"] for k in range(int((end - start) / step) + 1)]
        return [{"metric": labels, "values": points}] if IDLE in query.promql else []

    prometheus.instant, prometheus.range = instant, range_
    path = tmp_path / "policies.yaml"
    path.write_text(textwrap.dedent(f"""
        policies:
          - name: chat
            targets: {{namespaces: [llm], selector: app=chat}}
            idle: {{query: '{IDLE}{{namespace="llm"}}', threshold: 0.5, duration: 10m}}
            startup_grace: 0s
            scale_down_delay: 0s
        """))
    return path


def _plan(scaler, prometheus, policies):
    result = scaler("plan", "--policies", policies, "--prometheus-url", prometheus.url, "-o", "json", "--all")
    return result, json.loads(result.out)["evaluations"][0]


def test_plan_holds_on_an_answer_with_data_missing(fake, scaler, prometheus, chat):
    prometheus.warnings = lambda query: [REMOTE_READ]
    result, row = _plan(scaler, prometheus, chat)
    assert result.code == 4, result.out + result.err  # a signal could not be read
    assert (row["action"], row["reasonCode"]) == ("hold", "metrics-unknown"), row
    assert "idle signal unknown" in row["reason"], row
    assert "answered with data missing (a partial answer): " + REMOTE_READ in result.err
    assert fake.get(DEPLOYMENTS, "llm", "chat")["spec"]["replicas"] == 2


def test_a_promql_remark_on_the_query_is_not_missing_data(scaler, prometheus, chat):
    prometheus.warnings = lambda query: [PROMQL_INFO]
    result, row = _plan(scaler, prometheus, chat)
    assert result.code == 3, result.out + result.err  # the pause is pending, as without the remark
    assert (row["action"], row["reasonCode"]) == ("pause", "idle-timeout"), row


def test_a_backtest_counts_the_steps_of_a_partial_answer_as_unknown(scaler, prometheus, chat):
    end = datetime.now(UTC).replace(microsecond=0)
    period = ("--from", rfc3339(end - timedelta(minutes=30)), "--to", rfc3339(end), "--step", "1m")

    def backtest():
        result = scaler("backtest", "--policies", chat, "--prometheus-url", prometheus.url, *period, "-o", "json")
        return result, json.loads(result.out)["workloads"][0]

    complete, row = backtest()
    assert complete.code == 0 and row["pauses"] == 1, complete.out + complete.err
    prometheus.warnings = lambda query: [REMOTE_READ] if "query_range" in query.path else []
    partial, row = backtest()
    assert partial.code == 4, partial.out + partial.err
    assert row["pauses"] == 0 and row["unknownSteps"] == 31, row
    assert "partial answer" in partial.err
