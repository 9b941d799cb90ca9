"""The PromQL scaler builds around a policy's query, read as PromQL's lexer
reads it: a `#` outside a string starts a comment that runs to the end of
its line. A comment in the policy's query is valid PromQL; it must not eat
what scaler wraps around it. tests/tools/test_promql.py runs the same
queries through Prometheus's own parser (promtool)."""

from __future__ import annotations

from dataclasses import fields

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaler.decide.decisions import Signals
from scaler.decide.policies import Policy
from scaler.run.evaluating import queries_of
from scaler.run.observability import Metrics
from scaler.signals.queries import SIGNALS, idle_query, wake_query

QUOTES = "\"'`"


def code(promql: str) -> str:
    """The text PromQL's lexer reads as code: comments removed (from `#`
    outside a string to the end of its line), strings kept whole, runs of
    whitespace as one space. In "..." and '...' a backslash escapes the next
    character; `...` has no escapes."""
    out, index, quote = [], 0, None
    while index < len(promql):
        char = promql[index]
        if quote is not None:
            out.append(char)
            if char == "\\" and quote != "`" and index + 1 < len(promql):
                out.append(promql[index + 1])
                index += 1
            elif char == quote:
                quote = None
        elif char in QUOTES:
            quote = char
            out.append(char)
        elif char == "#":
            while index < len(promql) and promql[index] not in "\r\n":
                index += 1
            continue
        else:
            out.append(char)
        index += 1
    return " ".join("".join(out).split())


def balanced(text: str) -> bool:
    """Parentheses, brackets and braces of `code(text)` close in order (strings skipped)."""
    pairs, stack, quote, escaped = {")": "(", "]": "[", "}": "{"}, [], None, False
    for char in code(text):
        if quote is not None:
            escaped, quote = (not escaped and char == "\\" and quote != "`"), \
                (None if char == quote and not escaped else quote)
            continue
        if char in QUOTES:
            quote = char
        elif char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack and quote is None


def built(expr: str) -> list[str]:
    return [idle_query(expr, duration_seconds=600, namespace_label="namespace", workload_label="workload").promql,
            wake_query(expr, namespace_label="namespace", workload_label="workload").promql]


BASE = 'sum by (namespace, workload) (vllm:num_requests_running{job="vllm"})'


@pytest.mark.parametrize(("expr", "same_as"), [
    pytest.param(BASE + "  # requests being served", BASE, id="comment-at-the-end"),
    pytest.param(BASE + "#", BASE, id="empty-comment-at-the-end"),
    pytest.param(f"# running requests, per workload\n{BASE}\n# (vLLM exports this)", BASE,
                 id="comments-on-their-own-lines"),
    pytest.param("sum by (namespace, workload) (  # per workload\n  vllm:num_requests_running  # vLLM\n)",
                 "sum by (namespace, workload) ( vllm:num_requests_running )", id="comments-inside-the-expression"),
    pytest.param('sum by (namespace, workload) (up{path="/a#b"})', 'sum by (namespace, workload) (up{path="/a#b"})',
                 id="hash-inside-a-label-matcher"),
    pytest.param("sum by (namespace, workload) (up{path='#x'}) # it's a comment",
                 "sum by (namespace, workload) (up{path='#x'})", id="hash-in-single-quotes-then-a-comment"),
    pytest.param('sum by (namespace, workload) (up{path=`\\#"`}) # c', 'sum by (namespace, workload) (up{path=`\\#"`})',
                 id="hash-in-a-raw-string-then-a-comment"),
    pytest.param('sum by (namespace, workload) (up{path="\\"#"}) # c', 'sum by (namespace, workload) (up{path="\\"#"})',
                 id="hash-after-an-escaped-quote-then-a-comment"),
])
def test_a_comment_in_the_policys_query_leaves_what_scaler_wraps_around_it(expr, same_as):
    for promql, plain in zip(built(expr), built(same_as), strict=True):
        assert balanced(promql), promql
        assert code(promql) == code(plain), promql


@given(comment=st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=40),
       own_line=st.booleans())
def test_any_comment_at_the_end_changes_nothing(comment, own_line):
    """A comment means nothing to Prometheus, so the queries scaler sends with
    it read as code exactly as without it."""
    expr = BASE + ("\n" if own_line else " ") + "#" + comment
    for promql, plain in zip(built(expr), built(BASE), strict=True):
        assert code(promql) == code(plain)
        assert balanced(promql)


def test_the_oracle_sees_a_comment_eat_the_rest_of_its_line():
    """The helpers above can fail: a comment on the wrapping's line hides the closing parenthesis."""
    assert code('up{a="#"} # x\n) + 1') == 'up{a="#"} ) + 1'
    assert not balanced("max(up # comment )")
    assert balanced("max(up # comment\n)")


def test_one_name_per_signal_for_the_policy_the_decision_and_the_metrics():
    """Each signal of the table is named as the policy declares it and as the
    decision reads it; the daemon pre-touches its metric label; a policy's
    signal is asked with the query the table builds."""
    assert [signal.name for signal in SIGNALS] == [f.name for f in fields(Signals) if f.name != "why"]
    assert {signal.name for signal in SIGNALS} <= set(Policy.model_fields)
    policy = Policy.model_validate({"name": "p", "idle": {"query": "a", "threshold": 1, "duration": "10m"},
                                    "wake": {"query": "b", "target_per_replica": 4}})
    assert [(name, query.promql) for name, query in queries_of(policy)] == [
        ("idle", idle_query("a", duration_seconds=600, namespace_label="namespace",
                            workload_label="workload").promql),
        ("wake", wake_query("b", namespace_label="namespace", workload_label="workload").promql)]
    assert [name for name, _ in queries_of(policy, wake_only=True)] == ["wake"]
    metrics = Metrics()
    metrics.publish_policies({"p"})
    assert metrics.registry.get_sample_value("scaler_signal_unknown_workloads", {"policy": "p", "signal": "wake"}) == 0
    assert metrics.registry.get_sample_value("scaler_signal_unknown_workloads",
                                             {"policy": "p", "signal": "queue"}) is None
