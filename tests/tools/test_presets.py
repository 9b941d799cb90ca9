"""The wake presets (decide/presets.py) evaluated by Prometheus's own engine
(`promtool test rules`) on series shaped as each request holder exports
them, with the labels Prometheus adds when it scrapes the holder's pod
(job, namespace, pod, instance): the query scaler sends reads one value per
workload, under the labels the preset names, and the last-seen query of
wake-signal health (signals/queries.py) reads when it was last seen.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scaler.decide.policies import WakeSignal
from scaler.decide.presets import PRESETS
from scaler.signals.queries import last_seen_query, wake_query
from tests.tools.test_alerts import promtool

SCRAPED = 'job="{job}", namespace="{namespace}", pod="{pod}", instance="10.1.2.3:9090"'

#: preset -> (input series as the holder exports them, the values expected per (namespace, workload))
CASES = {
    "keda-http-add-on": ([
        # The interceptor runs in keda; the route's own namespace is a label of the series.
        ('interceptor_request_concurrency{route_name="chat", route_namespace="llm", '
         + SCRAPED.format(job="keda-add-ons-http-interceptor-metrics", namespace="keda", pod="interceptor-a")
         + "}", "3x30"),
        ('interceptor_request_concurrency{route_name="chat", route_namespace="llm", '
         + SCRAPED.format(job="keda-add-ons-http-interceptor-metrics", namespace="keda", pod="interceptor-b")
         + "}", "2x30"),
        ('interceptor_request_concurrency{route_name="code", route_namespace="team", '
         + SCRAPED.format(job="keda-add-ons-http-interceptor-metrics", namespace="keda", pod="interceptor-a")
         + "}", "0x30"),
    ], {("llm", "chat"): 5, ("team", "code"): 0}),
    "llm-d-epp": ([
        # New name, two priority bands for one model; the EPP pod scraped in the pool's namespace.
        ('llm_d_epp_flow_control_queue_size{fairness_id="a", priority="0", inference_pool="pool", '
         'model_name="chat", target_model_name="chat", '
         + SCRAPED.format(job="epp", namespace="llm", pod="epp-1") + "}", "4x30"),
        ('llm_d_epp_flow_control_queue_size{fairness_id="b", priority="-10", inference_pool="pool", '
         'model_name="chat", target_model_name="chat", '
         + SCRAPED.format(job="epp", namespace="llm", pod="epp-1") + "}", "1x30"),
        # Both names for one model: the new one is read, not the sum of both.
        ('inference_extension_flow_control_queue_size{fairness_id="a", priority="0", inference_pool="pool", '
         'model_name="chat", target_model_name="chat", '
         + SCRAPED.format(job="epp", namespace="llm", pod="epp-1") + "}", "4x30"),
        # An older EPP exporting only the deprecated name.
        ('inference_extension_flow_control_queue_size{fairness_id="a", priority="0", inference_pool="old", '
         'model_name="code", target_model_name="code", '
         + SCRAPED.format(job="epp", namespace="team", pod="epp-2") + "}", "2x30"),
    ], {("llm", "chat"): 5, ("team", "code"): 2}),
    "knative-activator": ([
        ('activator_request_concurrency{namespace_name="llm", configuration_name="chat", '
         'revision_name="chat-00002", '
         + SCRAPED.format(job="activator-service", namespace="knative-serving", pod="activator-1") + "}",
         "6x30"),
    ], {("llm", "chat-00002-deployment"): 6}),
    "vllm-router": ([
        # A counter: 60 requests a minute for chat; code got none since its first.
        ('vllm:num_incoming_requests_total{model="chat", '
         + SCRAPED.format(job="vllm-router", namespace="llm", pod="router-1") + "}", "0+60x30"),
        ('vllm:num_incoming_requests_total{model="code", '
         + SCRAPED.format(job="vllm-router", namespace="llm", pod="router-1") + "}", "7x30"),
    ], {("llm", "chat"): 60, ("llm", "code"): 0}),
}


#: The input series end at 30 m. Without stale markers (promtool writes none; a real scrape that
#: loses a series does) Prometheus's 5-minute lookback shows a gauge until 35 m; a rate over [1m]
#: needs two samples in its minute, so the router's ends at 30 m.
LAST_SEEN_MINUTES = {"vllm-router": 30}


def _run(tmp_path, series: list[tuple[str, str]], tests: list[dict]):
    spec = tmp_path / "preset.test.yaml"
    spec.write_text(yaml.safe_dump({"rule_files": [], "evaluation_interval": "1m", "tests": [
        {"interval": "1m", "input_series": [{"series": s, "values": v} for s, v in series],
         "promql_expr_test": tests}]}))
    return promtool("test", "rules", spec)


def _labels(wake: WakeSignal, namespace: str, workload: str) -> str:
    return f'{{{wake.namespace_label}="{namespace}", {wake.workload_label}="{workload}"}}'


def test_every_preset_has_a_case():
    assert set(CASES) == set(PRESETS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_preset_reads_one_value_per_workload_from_the_holder_s_series(tmp_path, name):
    series, expected = CASES[name]
    wake = WakeSignal.model_validate({"preset": name})
    sent = wake_query(wake.query, namespace_label=wake.namespace_label, workload_label=wake.workload_label)
    seen = last_seen_query(wake.query, namespace_label=wake.namespace_label, workload_label=wake.workload_label,
                           window_seconds=3600, step_seconds=60)
    tests = [{"expr": sent.promql, "eval_time": "20m",
              "exp_samples": [{"labels": _labels(wake, ns, wl), "value": value}
                              for (ns, wl), value in sorted(expected.items())]},
             {"expr": seen.promql, "eval_time": "40m", "exp_samples": [
                 {"labels": _labels(wake, ns, wl), "value": LAST_SEEN_MINUTES.get(name, 35) * 60}
                 for ns, wl in sorted(expected)]}]
    done = _run(tmp_path, series, tests)
    assert done.returncode == 0, f"{sent.promql}\n{seen.promql}\n{done.stdout}{done.stderr}"


def test_the_check_can_fail(tmp_path):
    """A wrong expectation is refused: the test above proves something."""
    series, _ = CASES["keda-http-add-on"]
    wake = WakeSignal.model_validate({"preset": "keda-http-add-on"})
    sent = wake_query(wake.query, namespace_label=wake.namespace_label, workload_label=wake.workload_label)
    done = _run(tmp_path, series, [{"expr": sent.promql, "eval_time": "20m", "exp_samples": [
        {"labels": _labels(wake, "llm", "chat"), "value": 3}]}])
    assert done.returncode != 0


#: docs/policies.md's plain NGINX and Envoy examples: (query, namespace label, workload label, series, expected)
EXAMPLES = {
    "ingress-nginx": (
        'sum by (exported_namespace, exported_service) (\n'
        '  increase(nginx_ingress_controller_requests{status="503"}[1m]))',
        "exported_namespace", "exported_service",
        [('nginx_ingress_controller_requests{status="503", exported_namespace="llm", exported_service="chat", '
          'ingress="chat", host="chat.example", ' + SCRAPED.format(job="ingress-nginx", namespace="ingress-nginx",
                                                                   pod="ctrl-1") + "}", "0+5x30"),
         ('nginx_ingress_controller_requests{status="200", exported_namespace="llm", exported_service="chat", '
          'ingress="chat", host="chat.example", ' + SCRAPED.format(job="ingress-nginx", namespace="ingress-nginx",
                                                                   pod="ctrl-1") + "}", "0+50x30")],
        {("llm", "chat"): 5}),
    "envoy": (
        'sum by (namespace, workload) (\n'
        '  label_replace(\n'
        '    label_replace(increase(envoy_cluster_upstream_cx_none_healthy[1m]),\n'
        '                  "namespace", "$1", "envoy_cluster_name", "([^_]+)_.+"),\n'
        '    "workload", "$1", "envoy_cluster_name", "[^_]+_(.+)"))',
        "namespace", "workload",
        [('envoy_cluster_upstream_cx_none_healthy{envoy_cluster_name="llm_chat", '
          + SCRAPED.format(job="envoy", namespace="gateway", pod="envoy-1") + "}", "0+2x30"),
         ('envoy_cluster_upstream_cx_none_healthy{envoy_cluster_name="llm_chat", '
          + SCRAPED.format(job="envoy", namespace="gateway", pod="envoy-2") + "}", "0+1x30")],
        {("llm", "chat"): 3}),
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_documented_proxy_examples_read_one_value_per_workload(tmp_path, name):
    query, namespace_label, workload_label, series, expected = EXAMPLES[name]
    doc = (Path(__file__).resolve().parents[2] / "docs" / "policies.md").read_text()
    assert "\n".join("    " + line for line in query.splitlines()) in doc, "the docs show another query"
    sent = wake_query(query, namespace_label=namespace_label, workload_label=workload_label)
    done = _run(tmp_path, series, [{"expr": sent.promql, "eval_time": "20m", "exp_samples": [
        {"labels": f'{{{namespace_label}="{ns}", {workload_label}="{wl}"}}', "value": value}
        for (ns, wl), value in expected.items()]}])
    assert done.returncode == 0, f"{sent.promql}\n{done.stdout}{done.stderr}"
