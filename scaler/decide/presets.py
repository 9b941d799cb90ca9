"""Wake signals for the request holders users run: `wake: {preset: NAME}`,
any key given beside it overriding the preset's (docs/policies.md, "Wake
presets"). Pure data: a query per holder, how its labels name the workload
and its namespace, and what no series means (`absent`).

Each was checked against the holder's own metric definitions at the version
named in `checked_against`; `tests/tools/test_presets.py` evaluates each
query with Prometheus's engine on series shaped as that holder exports them.
"""

from __future__ import annotations

from dataclasses import dataclass

from scaler.decide.policies import Absent


@dataclass(frozen=True)
class Preset:
    query: str
    absent: Absent
    #: How a series names its workload and namespace, for a person.
    matching: str
    checked_against: str
    namespace_label: str = "namespace"
    workload_label: str = "workload"
    target_per_replica: float = 1.0


PRESETS: dict[str, Preset] = {
    "keda-http-add-on": Preset(
        query="sum by (route_namespace, route_name) (interceptor_request_concurrency)",
        namespace_label="route_namespace", workload_label="route_name", absent=Absent.ZERO,
        matching="route_namespace and route_name: the InterceptorRoute (or HTTPScaledObject) named like the "
                 "workload, in its namespace",
        checked_against="KEDA HTTP add-on metrics reference after the rename of interceptor_pending_requests "
                        "to interceptor_request_concurrency (route_name, route_namespace labels); the interceptor "
                        "exports a route's series from its first request on, so none means nobody came"),
    "llm-d-epp": Preset(
        query="sum by (namespace, workload) (label_replace(llm_d_epp_flow_control_queue_size, "
              "\"workload\", \"$1\", \"target_model_name\", \"(.+)\"))\n"
              "or sum by (namespace, workload) (label_replace(inference_extension_flow_control_queue_size, "
              "\"workload\", \"$1\", \"target_model_name\", \"(.+)\"))",
        absent=Absent.ZERO,
        matching="the EPP's metrics carry no namespace label of their own: namespace is the one Prometheus "
                 "adds for the EPP pod it scrapes (the InferencePool's namespace, where its model servers "
                 "run), and the workload is named like target_model_name; the deprecated inference_extension_ "
                 "name is read where the new one is missing",
        checked_against="llm-d EPP with flow control enabled, llm_d_epp_flow_control_queue_size (and the "
                        "deprecated inference_extension_flow_control_queue_size) with fairness_id, priority, "
                        "inference_pool, model_name and target_model_name labels; an idle pool exports no "
                        "queue series"),
    "knative-activator": Preset(
        query="sum by (namespace_name, workload) (label_replace(activator_request_concurrency, "
              "\"workload\", \"$1-deployment\", \"revision_name\", \"(.+)\"))",
        namespace_label="namespace_name", absent=Absent.UNKNOWN,
        matching="namespace_name, and the revision's Deployment, which Knative names <revision_name>-deployment",
        checked_against="Knative Serving's activator_request_concurrency (namespace_name, configuration_name, "
                        "revision_name labels, the names of Serving's OpenCensus-era Prometheus exporter); "
                        "whether the activator keeps a series for an idle revision was not verified, so absence "
                        "stays unknown"),
    "vllm-router": Preset(
        query="sum by (namespace, workload) (label_replace(increase(vllm:num_incoming_requests_total[1m]), "
              "\"workload\", \"$1\", \"model\", \"(.+)\"))",
        absent=Absent.ZERO,
        matching="namespace is the router pod's (added by Prometheus when it scrapes the router), and the "
                 "workload is named like the model it serves (--served-model-name); requests that arrived in "
                 "the last minute, counted even when no backend is up",
        checked_against="vLLM production-stack router: vllm:num_incoming_requests (a counter, label model, "
                        "'including when no backends available'); its per-server gauges vanish with the "
                        "backends and cannot wake anything"),
}


def preset_values(name: object) -> dict[str, object]:
    """The keys a preset gives a wake signal; a ValueError naming the known ones."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: one of {', '.join(sorted(PRESETS))}")
    preset = PRESETS[name]
    return {"query": preset.query, "namespace_label": preset.namespace_label,
            "workload_label": preset.workload_label, "absent": preset.absent.value,
            "target_per_replica": preset.target_per_replica}
