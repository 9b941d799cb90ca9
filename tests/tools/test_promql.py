"""The PromQL scaler sends, parsed and evaluated by Prometheus's own engine
(`promtool test rules`, on series given in the test): a policy's query with
comments (valid PromQL) reads the same value as without them.

promtool comes with Debian's prometheus package (deploy/local/install);
without it these tests fail rather than skip, as tests/tools/test_alerts.py.
"""

from __future__ import annotations

import pytest
import yaml

from scaler.signals.queries import idle_query, wake_query
from tests.tools.test_alerts import promtool

SERIES = [
    # Busy at 2 requests for the whole test: the idle maximum and the queue are both 2.
    {"series": 'vllm_requests{namespace="llm", workload="chat", path="/v1#chat"}', "values": "2x30"},
    # Another path: the matcher on "/v1#chat" must leave it out.
    {"series": 'vllm_requests{namespace="llm", workload="chat", path="/v1"}', "values": "5x30"},
]
CHAT = '{namespace="llm", workload="chat"}'

EXPRESSIONS = {
    "comment-at-the-end": 'sum by (namespace, workload) (vllm_requests{path="/v1#chat"})  # requests being served',
    "comment-lines-around": '# served requests, per workload\nsum by (namespace, workload) '
                            '(vllm_requests{path="/v1#chat"})\n# vLLM exports them',
    "comments-inside": 'sum by (namespace, workload) (  # per workload\n  vllm_requests{path="/v1#chat"}  # vLLM\n)',
    "hash-in-a-matcher": "sum by (namespace, workload) (vllm_requests{path='/v1#chat'})",
}


def _promql(name: str) -> list[tuple[str, str]]:
    expr = EXPRESSIONS[name]
    return [("idle", idle_query(expr, duration_seconds=300, namespace_label="namespace",
                                workload_label="workload").promql),
            ("queue", wake_query(expr, namespace_label="namespace", workload_label="workload").promql)]


@pytest.mark.parametrize("name", sorted(EXPRESSIONS))
def test_prometheus_parses_and_evaluates_the_queries_scaler_sends(tmp_path, name):
    tests = [{"expr": promql, "eval_time": "20m", "exp_samples": [{"labels": CHAT, "value": 2}]}
             for _, promql in _promql(name)]
    spec = tmp_path / "queries.test.yaml"
    spec.write_text(yaml.safe_dump({"rule_files": [], "evaluation_interval": "1m", "tests": [
        {"interval": "1m", "input_series": SERIES, "promql_expr_test": tests}]}))
    done = promtool("test", "rules", spec)
    assert done.returncode == 0, "\n\n".join(promql for _, promql in _promql(name)) + "\n" + done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_refuses_a_query_whose_closing_parenthesis_is_in_a_comment(tmp_path):
    """The test above can fail: the wrapping of old, on one line, is refused."""
    spec = tmp_path / "queries.test.yaml"
    expr = f"sum by (namespace, workload) ({EXPRESSIONS['comment-at-the-end']})"
    spec.write_text(yaml.safe_dump({"rule_files": [], "evaluation_interval": "1m", "tests": [
        {"interval": "1m", "input_series": SERIES,
         "promql_expr_test": [{"expr": expr, "eval_time": "20m", "exp_samples": [{"labels": CHAT, "value": 2}]}]}]}))
    done = promtool("test", "rules", spec)
    assert done.returncode != 0 and "unclosed left parenthesis" in done.stdout + done.stderr
