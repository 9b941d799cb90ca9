"""The policy model and loader: defaults, durations, kinds, file shapes,
directories and the PolicySet the daemon receives."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from scaler.decide.loading import PolicyError, Problem, check_policies, check_texts, load_policies
from scaler.decide.policies import OnUnknown, Policy, json_schema, parse_duration
from scaler.decide.windows import Mode, Outside

ROOT = Path(__file__).resolve().parents[2]


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


MINIMAL = {"name": "p", "idle": {"query": "up", "threshold": 1, "duration": "5m"}}


def test_defaults():
    policy = Policy.model_validate(MINIMAL)
    assert policy.priority == 0
    assert policy.targets.kinds == ("Deployment", "StatefulSet")
    assert policy.targets.namespaces is None and policy.targets.namespace_selector is None
    assert policy.min_replicas == 1 and policy.max_replicas is None
    # A freshly woken model is protected by default (docs/policies.md says why these numbers).
    assert policy.scale_down_delay_seconds == 300 and policy.startup_grace_seconds == 60
    assert policy.max_startup_seconds == 1800 and policy.prewarm is None and policy.prewarm_max_seconds == 900
    assert policy.on_unknown is OnUnknown.HOLD
    assert policy.idle.duration_seconds == 300
    assert policy.idle.workload_label == "workload" and policy.idle.namespace_label == "namespace"


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("30m", 1800), ("1h30m", 5400), ("1.5h", 5400), ("2d", 172800), ("250ms", 0.25),
    ("1h 30m", 5400), (45, 45), (0, 0), ("0s", 0),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["-5m", "5 minutes", "m", "", "1h30", True, "1y", [1]])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_idle_duration_must_be_positive():
    with pytest.raises(ValidationError, match="must be longer than 0"):
        Policy.model_validate({**MINIMAL, "idle": {"query": "up", "threshold": 1, "duration": "0s"}})


@pytest.mark.parametrize("kind", [
    "Deployment", "StatefulSet", "InferenceService", "vllmservers.serving.example.com/v1alpha1",
    "jobqueues.batch.example.com/v1",
])
def test_valid_kinds(kind):
    assert Policy.model_validate({**MINIMAL, "targets": {"kinds": [kind]}}).targets.kinds == (kind,)


@pytest.mark.parametrize(("spelling", "canonical"), [
    ("deployment", "Deployment"), ("deploy", "Deployment"), ("deployments", "Deployment"),
    ("deployments.apps", "Deployment"), ("deployments.apps/v1", "Deployment"), ("DEPLOYMENT", "Deployment"),
    ("sts", "StatefulSet"), ("statefulsets.apps/v1", "StatefulSet"),
    ("isvc", "InferenceService"), ("inferenceservices.serving.kserve.io/v1beta1", "InferenceService"),
    # What `kubectl get -o name` prints before the slash.
    ("deployment.apps", "Deployment"), ("statefulset.apps", "StatefulSet"),
    ("inferenceservice.serving.kserve.io", "InferenceService"),
    # The suspend kinds: kubectl has no short names for them.
    ("job", "Job"), ("jobs", "Job"), ("jobs.batch/v1", "Job"), ("job.batch", "Job"),
    ("jobset", "JobSet"), ("jobsets.jobset.x-k8s.io/v1alpha2", "JobSet"),
    ("raycluster", "RayCluster"), ("rayclusters.ray.io/v1", "RayCluster"), ("rayjobs.ray.io", "RayJob"),
    ("notebook", "Notebook"), ("notebooks.kubeflow.org/v1", "Notebook"), ("notebook.kubeflow.org", "Notebook"),
])
def test_kubectl_spellings_are_one_kind(spelling, canonical):
    policy = Policy.model_validate({**MINIMAL, "targets": {"kinds": [spelling]}})
    assert policy.targets.kinds == (canonical,)
    assert policy.targets.matches(kind=canonical, namespace="a", labels={}, namespace_labels={})


def test_two_versions_of_a_custom_resource_are_one_target():
    policy = Policy.model_validate({**MINIMAL, "targets": {"kinds": ["vllmservers.serving.example.com/v1"]}})
    assert policy.targets.matches(kind="vllmservers.serving.example.com", namespace="a", labels={},
                                  namespace_labels={})


@pytest.mark.parametrize(("kind", "says"), [
    ("Pod", "unknown kind"), ("vllmservers/v1", "unknown kind"), ("VLLMServers.serving.example.com/v1", "unknown kind"),
    ("vllmservers.serving.example.com", "needs its version"),
    ("deployments.apps/v1beta1", "Deployment is served as apps/v1"),
    ("", "unknown kind"),
])
def test_unknown_kinds(kind, says):
    with pytest.raises(ValidationError, match=says):
        Policy.model_validate({**MINIMAL, "targets": {"kinds": [kind]}})


def test_windows_compile_in_their_time_zone():
    policy = Policy.model_validate({**MINIMAL, "schedule": {"timezone": "America/New_York", "outside": "down",
                                                            "windows": [{"mode": "up", "when": "daily 09:00-17:00"},
                                                                        {"name": "patch", "mode": "down",
                                                                         "start": "0 3 * * 3", "end": "0 4 * * 3"}]}})
    schedule = policy.schedule.compiled
    assert schedule.outside is Outside.DOWN
    assert [(window.name, window.mode, window.tz.key) for window in schedule.windows] == [
        ("daily 09:00-17:00", Mode.UP, "America/New_York"), ("patch", Mode.DOWN, "America/New_York")]


def test_a_policy_needs_a_rule():
    with pytest.raises(ValidationError, match="the policy has no rule"):
        Policy.model_validate({"name": "p"})


def test_policies_are_immutable():
    policy = Policy.model_validate(MINIMAL)
    with pytest.raises(ValidationError):
        policy.priority = 3


# ---------------------------------------------------------------- files


def test_policies_list_single_mapping_and_documents(tmp_path):
    write(tmp_path, "a.yaml", """\
        policies:
          - name: one
            idle: {query: up, threshold: 1, duration: 5m}
          - name: two
            priority: 3
            wake: {query: queue, target_per_replica: 2}
        """)
    write(tmp_path, "b.yml", """\
        name: three
        idle: {query: up, threshold: 1, duration: 5m}
        ---
        name: four
        idle: {query: up, threshold: 1, duration: 5m}
        """)
    write(tmp_path, "notes.txt", "not a policy")
    (tmp_path / "nested").mkdir()
    write(tmp_path / "nested", "ignored.yaml", "name: [")
    policies = load_policies([tmp_path])
    assert [policy.name for policy in policies] == ["one", "two", "three", "four"]
    assert policies.files == (str(tmp_path / "a.yaml"), str(tmp_path / "b.yml"))
    assert policies.sources["two"] == f"{tmp_path / 'a.yaml'}:4"
    assert policies.sources["four"] == f"{tmp_path / 'b.yml'}:4"
    assert policies.by_name("two").priority == 3
    assert policies.by_name("missing") is None
    assert len(policies) == 4


def test_load_policies_raises_with_every_problem(tmp_path):
    write(tmp_path, "bad.yaml", """\
        policies:
          - name: one
            idle: {query: "", threshold: 1, duration: 5m}
          - name: two
            wake: {query: q, target_per_replica: -1}
        """)
    with pytest.raises(PolicyError) as raised:
        load_policies([tmp_path / "bad.yaml"])
    assert [(problem.line, problem.field) for problem in raised.value.problems] == [
        (3, "idle.query"), (5, "wake.target_per_replica")]
    assert str(raised.value).splitlines()[0] == f"{tmp_path / 'bad.yaml'}:3: idle.query: the PromQL query is empty"


def test_problem_format():
    assert str(Problem("p.yaml", 14, "schedule.windows[1].start", "bad")) == \
        "p.yaml:14: schedule.windows[1].start: bad"
    assert str(Problem("p.yaml", 3, "", "invalid YAML: x")) == "p.yaml:3: invalid YAML: x"
    assert str(Problem("gone", None, "", "no such file or directory")) == "gone: no such file or directory"


def test_examples_in_the_repository_load():
    policies = load_policies([ROOT / "policies"])
    assert len(policies) >= 4
    assert len(policies.files) >= 4


def test_texts_check_as_the_same_files_do_named_as_given():
    """A ConfigMap's keys are checked by the same code as files: same
    policies, same problems, under the name the caller gives."""
    files = sorted((ROOT / "policies").glob("*.yaml"))
    from_files, file_problems = check_policies(files)
    from_texts, text_problems = check_texts((f"ConfigMap ns/p, {f.name}", f.read_text()) for f in files)
    assert from_texts.policies == from_files.policies and file_problems == text_problems == []
    assert from_texts.sources and all(where.startswith("ConfigMap ns/p, ") for where in from_texts.sources.values())


def test_texts_report_every_problem_across_keys():
    one = "policies:\n  - name: a\n    idle: {query: q, threshold: 1, duration: 5m}\n"
    _, problems = check_texts([("cm, one.yaml", one), ("cm, two.yaml", one), ("cm, three.yaml", ""),
                               ("cm, big.yaml", "#" * (2 ** 20 + 1)), ("cm, unread.yaml", None)])
    assert [str(p) for p in problems] == [
        "cm, two.yaml:2: name: duplicate policy name 'a' (first defined at cm, one.yaml:2)",
        "cm, three.yaml:1: empty file: expected a mapping: 'policies:' with a list of policies, or one policy",
        "cm, big.yaml: larger than 1048576 bytes, the limit for a policy file (split it)"]


def test_a_decision_is_acted_on_only_while_its_policy_is_in_force_as_it_was(tmp_path):
    """What a new leader, or a pass that began before a reload, asks before it
    writes: the same policy reloaded is in force; edited or removed, not."""
    text = "policies:\n  - name: a\n    idle: {query: q, threshold: 1, duration: %s}\n"
    before = check_texts([("cm, a.yaml", text % "5m")])[0]
    policy = before.by_name("a")
    assert before.in_force(policy)
    assert check_texts([("cm, a.yaml", text % "5m")])[0].in_force(policy)  # new objects, equal
    assert not check_texts([("cm, a.yaml", text % "6m")])[0].in_force(policy)
    assert not check_texts([("cm, a.yaml", text.replace("name: a", "name: b") % "5m")])[0].in_force(policy)


# ---------------------------------------------------------------- JSON Schema


def test_schema_describes_both_shapes():
    schema = json_schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"Policy", "PolicyFile", "ScheduleConfig", "WindowConfig", "Targets"} <= set(schema["$defs"])
    policy = schema["$defs"]["Policy"]
    assert policy["additionalProperties"] is False
    assert policy["required"] == ["name"]
    assert {"scale_down_delay", "startup_grace", "on_unknown"} <= set(policy["properties"])
    assert "duration" in schema["$defs"]["IdleSignal"]["properties"]


def test_one_spelling_per_key():
    """The file says `duration: 30m`; the attribute name with its unit is not a second spelling."""
    with pytest.raises(ValidationError, match=r"unknown key|Extra inputs"):
        Policy.model_validate({"name": "p", "idle": {"query": "up", "threshold": 1, "duration_seconds": 60}})


def test_the_policy_reference_documents_every_key_of_the_schema():
    """docs/policies.md is the reference users read; a key the schema accepts
    but the page never mentions is a key nobody can discover."""
    import re
    from pathlib import Path

    from scaler.decide.policies import json_schema

    doc = (Path(__file__).resolve().parents[2] / "docs" / "policies.md").read_text()
    documented = set(re.findall(r"`([a-z_]+):?`", doc))
    schema = json_schema()
    keys: set[str] = set()
    for definition in [schema, *schema.get("$defs", {}).values()]:
        keys.update(definition.get("properties", {}))
    assert keys, "the schema has no properties: the test would prove nothing"
    assert sorted(keys - documented) == []
