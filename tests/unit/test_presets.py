"""`wake: {preset: ...}` (decide/presets.py) through `scaler plan` and
`scaler validate`, on canned Prometheus answers shaped as each holder's
series come back from the query scaler sends (its own label names; the
query itself is evaluated by Prometheus in tests/tools/test_presets.py)."""

from __future__ import annotations

import json
import textwrap

import pytest

from scaler.decide.policies import WakeSignal
from scaler.decide.presets import PRESETS
from tests.fakes.bodies import deployment, namespace
from tests.fakes.prometheus import Query

DEPLOYMENTS = "deployments.apps"
PAUSED = {"scaler.io/last-replicas": "2", "scaler.io/paused-by": "policy/chat", "scaler.io/paused-at":
          "2026-01-01T00:00:00Z", "scaler.io/pause-reason": "idle", "scaler.io/pause-cause": "idle-timeout"}
#: preset -> (the metric its query reads, the workload at zero, a series as the answer carries it)
SHAPES = {
    "keda-http-add-on": ("interceptor_request_concurrency", "chat",
                         {"route_namespace": "llm", "route_name": "chat"}),
    "llm-d-epp": ("llm_d_epp_flow_control_queue_size", "chat", {"namespace": "llm", "workload": "chat"}),
    "knative-activator": ("activator_request_concurrency", "chat-00001-deployment",
                          {"namespace_name": "llm", "workload": "chat-00001-deployment"}),
    "vllm-router": ("vllm:num_incoming_requests_total", "chat", {"namespace": "llm", "workload": "chat"}),
}


def policy(wake: str) -> str:
    return textwrap.dedent(f"""
        policies:
          - name: chat
            targets: {{namespaces: [llm]}}
            wake: {wake}
        """)


def answering(prometheus, metric: str, labels: dict | None, value: float = 3) -> None:
    """Queries reading `metric` answer one series with `labels` (None: no series)."""
    def instant(query: Query) -> list:
        if metric not in query.promql or "timestamp(" in query.promql or labels is None:
            return []
        return [{"metric": labels, "value": [float(query.form.get("time") or 0), str(value)]}]
    prometheus.instant = instant


def plan(scaler, prometheus, tmp_path, text: str) -> dict:
    path = tmp_path / "policies.yaml"
    path.write_text(text)
    ran = scaler("plan", "--policies", path, "--prometheus-url", prometheus.url, "-o", "json", "--all")
    return json.loads(ran.out)


def test_every_preset_has_a_shape_and_says_how_it_was_checked():
    assert set(SHAPES) == set(PRESETS)
    assert all(p.checked_against and p.matching for p in PRESETS.values())


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_a_preset_wakes_the_workload_its_series_names(fake, scaler, prometheus, tmp_path, name):
    metric, workload, labels = SHAPES[name]
    namespace(fake, "llm")
    fake.create(DEPLOYMENTS, deployment(workload, replicas=0, annotations=PAUSED), namespace="llm")
    answering(prometheus, metric, labels)
    document = plan(scaler, prometheus, tmp_path, policy(f"{{preset: {name}}}"))
    [evaluation] = document["evaluations"]
    assert (evaluation["action"], evaluation["desired"]) == ("resume", 2), evaluation
    assert evaluation["reason"].startswith("queue 3 > activation threshold 0")
    assert any(metric in q.promql for q in prometheus.requests)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_no_series_is_what_the_preset_declares(fake, scaler, prometheus, tmp_path, name):
    metric, workload, _ = SHAPES[name]
    namespace(fake, "llm")
    fake.create(DEPLOYMENTS, deployment(workload, replicas=0, annotations=PAUSED), namespace="llm")
    answering(prometheus, metric, None)
    [evaluation] = plan(scaler, prometheus, tmp_path, policy(f"{{preset: {name}}}"))["evaluations"]
    if PRESETS[name].absent.value == "zero":
        assert evaluation["reason"] == "paused by policy/chat; waiting for the queue: staying at 0"
    else:
        assert evaluation["reason"].startswith("metrics unavailable: wake signal unknown (cannot wake: no series "
                                               f"for {metric}{{namespace_name=llm,workload={workload}}} for more "
                                               "than 6 h)")
    assert evaluation["action"] == "hold"


def test_keys_beside_a_preset_override_it_and_an_unknown_preset_is_a_policy_error(scaler, tmp_path):
    wake = WakeSignal.model_validate({"preset": "llm-d-epp", "absent": "unknown", "target_per_replica": 16,
                                      "activation_threshold": 2})
    assert (wake.absent.value, wake.target_per_replica, wake.activation_threshold) == ("unknown", 16, 2)
    assert "llm_d_epp_flow_control_queue_size" in wake.query and wake.preset == "llm-d-epp"
    path = tmp_path / "policies.yaml"
    path.write_text(policy("{preset: keda}"))
    ran = scaler("validate", path)
    assert ran.code == 1
    assert "unknown preset 'keda': one of keda-http-add-on, knative-activator, llm-d-epp, vllm-router" in ran.out
    assert ran.out.startswith(f"{path}:")


def test_the_schema_accepts_a_preset_alone_and_still_wants_a_query_without_one():
    import jsonschema

    from scaler.decide.policies import json_schema

    schema = json_schema()
    check = jsonschema.Draft202012Validator(schema)
    base = {"name": "chat", "targets": {"namespaces": ["llm"]}}
    assert check.is_valid({**base, "wake": {"preset": "keda-http-add-on"}})
    assert check.is_valid({**base, "wake": {"query": "q", "target_per_replica": 2}})
    assert not check.is_valid({**base, "wake": {"target_per_replica": 2}})
