"""Input that used to be read as something its writer did not mean, now a
clear error at its file and line (README promise 4), or read as written:

* a day-of-week step with no number (`1-5/`), which cron refuses;
* a number only YAML 1.1 reads (`1:30` as 90, `010` as 8), which YAML 1.2
  and editors read as text (or as 10);
* a boolean in a number field, which Python counts as 1 or 0;
* a `#` inside a PromQL string, which is text, not a comment, in the metric
  names a `cannot wake` sentence shows.
"""

from __future__ import annotations

import pytest

from scaler.decide.loading import check_texts
from scaler.decide.wake_health import metric_names
from scaler.decide.windows import WindowError, cron_trigger

POLICY = """\
policies:
  - name: chat
    targets: {{namespaces: [llm]}}
    wake: {{query: q, target_per_replica: 1}}
    max_replicas: 100000
    {key}: {value}
"""


def problems_of(text: str) -> list[str]:
    _, problems = check_texts([("p.yaml", text)])
    return [str(problem) for problem in problems]


@pytest.mark.parametrize("expression", ["0 8 * * 1-5/", "0 8 * * */", "0 8 * * mon/", "0 8 * * 1,3/"])
def test_a_day_of_week_step_without_a_number_is_refused(expression):
    with pytest.raises(WindowError, match="the step must be a positive number"):
        cron_trigger(expression)


def test_a_cron_window_with_an_empty_step_is_a_problem_at_its_line():
    text = ("policies:\n  - name: chat\n    schedule:\n      timezone: UTC\n"
            "      windows: [{mode: up, start: '0 8 * * *', end: '0 20 * * 1-5/'}]\n")
    [problem] = problems_of(text)
    assert problem.startswith("p.yaml:5: schedule.windows[0]") and "the step must be a positive number" in problem


@pytest.mark.parametrize(("key", "value"), [
    pytest.param("scale_down_delay", "1:30", id="base-60-duration"),
    pytest.param("startup_grace", "10:00", id="base-60-grace"),
    pytest.param("min_replicas", "1:30", id="base-60-replicas"),
    pytest.param("min_replicas", "0b11", id="binary"),
    pytest.param("scale_down_delay", "010", id="octal-duration"),
])
def test_a_number_only_yaml_1_1_reads_is_an_error_at_its_line(key, value):
    [problem] = problems_of(POLICY.format(key=key, value=value))
    assert problem.startswith(f"p.yaml:6: {key}: ") and (value in problem or "integer" in problem), problem


@pytest.mark.parametrize(("value", "replicas"), [("010", 10), ("0x10", 16), ("+5", 5), ("7", 7)])
def test_numbers_are_read_as_yaml_1_2_reads_them(value, replicas):
    policies, problems = check_texts([("p.yaml", POLICY.format(key="min_replicas", value=value))])
    assert problems == [] and policies.policies[0].min_replicas == replicas


@pytest.mark.parametrize(("key", "value", "field"), [
    pytest.param("min_replicas", "true", "min_replicas", id="min-replicas"),
    pytest.param("priority", "on", "priority", id="priority-on"),
    pytest.param("idle", "{query: q, threshold: yes, duration: 30m}", "idle.threshold", id="threshold-yes"),
    pytest.param("wake", "{query: q, target_per_replica: true}", "wake.target_per_replica", id="target"),
])
def test_a_boolean_in_a_number_field_is_an_error_naming_the_field(key, value, field):
    text = POLICY.format(key=key, value=value)
    if key == "wake":
        text = text.replace("    wake: {query: q, target_per_replica: 1}\n", "")
    problems = problems_of(text)
    assert any(problem.startswith("p.yaml:") and f": {field}: " in problem
               and "is a boolean (true/false, yes/no, on/off), not a number" in problem for problem in problems), \
        problems


def test_max_replicas_true_is_not_one():
    [problem] = problems_of(POLICY.format(key="priority", value=1).replace("100000", "true"))
    assert problem == "p.yaml:5: max_replicas: true is a boolean (true/false, yes/no, on/off), not a number"


@pytest.mark.parametrize(("query", "names"), [
    ('sum by (namespace, workload) (gateway_pending_requests{model="a#b"})', ["gateway_pending_requests"]),
    ("sum(queue{model='#'} or backlog) # q", ["queue", "backlog"]),
    ("sum(queue{model=`a#b`})", ["queue"]),
    ('sum(queue) # it\'s "quoted"\nor backlog', ["queue", "backlog"]),
])
def test_a_hash_inside_a_promql_string_is_not_a_comment(query, names):
    assert metric_names(query) == names


@pytest.mark.parametrize(("item", "said"), [
    ("just a string", "not a string 'just a string'"),
    ("", "not nothing (an empty item)"),
    ("[1, 2]", "not a list"),
    ("42", "not the value 42"),
])
def test_a_policy_that_is_not_a_mapping_is_named_by_its_place(item, said):
    text = ("policies:\n  - name: chat\n    targets: {namespaces: [llm]}\n    idle: {query: q, threshold: 1, "
            f"duration: 5m}}\n  - {item}\n")
    assert problems_of(text) == [f"p.yaml:5: policies[1]: expected a policy (a mapping with name, targets, ...), "
                                 f"{said}"]


def test_a_field_that_wants_a_mapping_says_what_it_got():
    text = "policies:\n  - name: chat\n    targets: llm\n    idle: [1]\n"
    assert problems_of(text) == ["p.yaml:3: targets: expected a mapping (key: value lines), not a string 'llm'",
                                 "p.yaml:4: idle: expected a mapping (key: value lines), not a list"]


@pytest.mark.parametrize(("value", "shown"), [(".inf", "inf"), (".nan", "nan"), ("1.0e+400", "inf")])
def test_a_duration_that_is_not_a_finite_number_is_not_called_negative(value, shown):
    """`.inf` (or a number too large for a float) and `.nan` as a duration are
    errors at their line; the message said '.inf is negative'."""
    [problem] = problems_of(POLICY.format(key="scale_down_delay", value=value))
    assert problem == (f"p.yaml:6: scale_down_delay: {shown} is not a finite number; a duration is 0 or more "
                       "(e.g. 90s, 30m, 1h30m)")
