"""Everything the daemon could trip on at run time is refused by `validate`
with file:line: label names PromQL cannot group by, replica counts beyond the
API's int32, per-replica targets so small that ceil(queue/target) overflows,
durations beyond a year, namespace names that cannot exist. And one kind has
one identity: two policies naming one Deployment in different spellings are a
conflict, not two owners. On the branch point (575e6f6) ten of the validate
cases were accepted (and `plan` then failed, or every resume got HTTP 422),
and a queue of 1e308 raised OverflowError in decide(); the spelling
conflicts already held there (kinds.py, 5482ea2) and stay as a guard."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime

import pytest

from scaler.cli.main import main
from scaler.decide.decisions import (
    Action,
    Code,
    Conflict,
    Signals,
    WorkloadState,
    select_policy,
)
from scaler.decide.policies import Policy
from scaler.decide.precedence import decide

HEAD = """\
policies:
  - name: p
"""


@pytest.mark.parametrize(("body", "line", "message"), [
    pytest.param("    idle: {query: up, threshold: 1, duration: 5m, workload_label: my-label}\n", 3,
                 "idle.workload_label: 'my-label' is not a Prometheus label name", id="label-with-dash"),
    pytest.param("    wake:\n      query: up\n      target_per_replica: 1\n      namespace_label: 1ns\n", 6,
                 "wake.namespace_label: '1ns' is not a Prometheus label name", id="label-starting-with-digit"),
    pytest.param("    min_replicas: 2147483648\n    wake: {query: up, target_per_replica: 1}\n", 3,
                 "min_replicas: Input should be less than or equal to 2147483647", id="min-replicas-beyond-int32"),
    pytest.param("    max_replicas: 99999999999\n    wake: {query: up, target_per_replica: 1}\n", 3,
                 "max_replicas: Input should be less than or equal to 2147483647", id="max-replicas-beyond-int32"),
    pytest.param("    wake: {query: up, target_per_replica: 1e-320}\n", 3,
                 "wake.target_per_replica: Input should be greater than or equal to 0.001", id="tiny-target"),
    pytest.param("    wake: {query: up, target_per_replica: .nan}\n", 3,
                 "wake.target_per_replica: ", id="nan-target"),
    pytest.param("    idle: {query: up, threshold: .inf, duration: 5m}\n", 3,
                 "idle.threshold: inf is not a finite number", id="infinite-threshold"),
    pytest.param("    idle: {query: up, threshold: 1, duration: 99999999999999}\n", 3,
                 "idle.duration: 99999999999999 is longer than a year", id="endless-duration"),
    pytest.param("    scale_down_delay: 400d\n    idle: {query: up, threshold: 1, duration: 5m}\n", 3,
                 "scale_down_delay: '400d' is longer than a year", id="endless-delay"),
    pytest.param("    priority: 1e400\n    idle: {query: up, threshold: 1, duration: 5m}\n", 3,
                 "priority: ", id="priority-not-an-int"),
    pytest.param("    priority: 99999999999999999999\n    idle: {query: up, threshold: 1, duration: 5m}\n", 3,
                 "priority: Input should be less than or equal to 2147483647", id="priority-beyond-int32"),
    pytest.param("    schedule: {timezone: Pacific, windows: [{mode: up, when: daily 08:00-20:00}]}\n", 3,
                 "schedule.timezone: unknown time zone 'Pacific'", id="zone-database-directory"),
    pytest.param("    targets: {namespaces: [LLM_Team]}\n    idle: {query: up, threshold: 1, duration: 5m}\n", 3,
                 "targets.namespaces: 'LLM_Team' is not a namespace name", id="bad-namespace"),
    pytest.param("    targets: {exclude_namespaces: ['']}\n    idle: {query: up, threshold: 1, duration: 5m}\n", 3,
                 "targets.exclude_namespaces: '' is not a namespace name", id="empty-excluded-namespace"),
])
def test_run_time_traps_are_load_time_errors(tmp_path, capsys, body, line, message):
    path = tmp_path / "p.yaml"
    path.write_text(HEAD + textwrap.dedent(body) if not body.startswith("    ") else HEAD + body)
    code = main(["validate", str(path)])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out[0].startswith(f"{path}:{line}: {message}"), out


def test_the_largest_valid_sizes_are_accepted(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text(HEAD + "    min_replicas: 2147483647\n    wake: {query: up, target_per_replica: 0.001}\n")
    assert main(["validate", str(path)]) == 0


NOW = datetime(2024, 6, 4, 12, tzinfo=UTC)


@pytest.mark.parametrize("queue", [1e308, 2.0**31, 1e12])
def test_a_huge_queue_is_capped_not_an_overflow(queue):
    policy = Policy.model_validate({"name": "p", "max_replicas": 2147483647,
                                    "wake": {"query": "q", "target_per_replica": 0.001}})
    workload = WorkloadState(kind="Deployment", namespace="llm", name="w", replicas=0)
    decision = decide(policy=policy, workload=workload, signals=Signals(wake=queue), now=NOW)
    assert (decision.action, decision.reason_code) == (Action.RESUME, Code.QUEUE_WAKE)
    assert decision.replicas == 2147483647


@pytest.mark.parametrize(("first", "second"), [
    pytest.param("Deployment", "deployments.apps/v1", id="kind-and-resource"),
    pytest.param("deploy", "deployments.apps", id="short-name-and-group"),
    pytest.param("StatefulSet", "statefulsets", id="kind-and-plural"),
    pytest.param("vllmservers.serving.example.com/v1", "vllmservers.serving.example.com/v1alpha1",
                 id="custom-resource-two-versions"),
])
def test_two_spellings_of_one_kind_are_one_target_and_a_conflict(first, second):
    one = Policy.model_validate({"name": "one", "targets": {"kinds": [first]}, "idle": {
        "query": "q", "threshold": 1, "duration": 60}})
    other = Policy.model_validate({"name": "other", "targets": {"kinds": [second]}, "idle": {
        "query": "q", "threshold": 1, "duration": 60}})
    workload = WorkloadState(kind=one.targets.compiled.kinds and next(iter(one.targets.compiled.kinds)),
                             namespace="llm", name="w", replicas=2)
    chosen = select_policy([one, other], workload, namespace_labels={})
    assert chosen == Conflict(("one", "other"), 0)
    decision = decide(policy=chosen, workload=workload, signals=Signals(), now=NOW)
    assert (decision.action, decision.replicas) == (Action.CONFLICT, 2)
