"""The Grafana dashboard: it parses, every panel reads the `${datasource}`
variable, every expression is PromQL that promtool accepts, and every metric
it names is one the daemon exports (read from scaler.run.observability.Metrics
itself, so a renamed metric fails here instead of leaving a blank panel).

The PromQL helpers here are used by tests/test_alerts.py too.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from scaler.cluster.savings import GpuHourPrices
from scaler.run.observability import Metrics
from scaler.run.saving import SavingsCollector
from scaler.run.wake_watch import WakeWatch

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "scaler-dashboard.json"
DATASOURCE = "${datasource}"

# Grafana's variables, replaced by something of the same shape before the
# expression is handed to promtool or scanned for names.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h",
                     "$job": ".*", "$namespace": ".*"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan"}


def exported_names() -> set[str]:
    """Every sample name the daemon's /metrics can carry."""
    metrics = Metrics()
    metrics.count_requests(lambda: {})  # the daemon always registers the API request counts
    WakeWatch(prometheus=None, submit=None, registry=metrics.registry)  # the evaluator's, in the same registry
    # The savings counters, registered by the node follower (run/following.py).
    metrics.registry.register(SavingsCollector(view=None, kinds=lambda: [], leading=lambda: False,
                                               prices=GpuHourPrices()))
    names = set()
    for family in metrics.registry.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count", "created")}
        else:
            names.add(family.name)
    return names


def expand(expr: str) -> str:
    for variable in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(variable, GRAFANA_VARIABLES[variable])
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: what is left once strings,
    label matchers, ranges, label lists, function calls and keywords are gone."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expand(expr))
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", text):
        word = match.group(0)
        if text[match.end():].lstrip().startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def promtool_rejects(exprs: list[str], tmp_path: Path) -> str:
    """promtool's complaint about any of the expressions, '' if it accepts all
    of them (they go in as recording rules, which it parses in full)."""
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool not found: install Debian's prometheus package (deploy/local/install does)")
    rules = {"groups": [{"name": "expressions", "rules": [
        {"record": f"check:expression_{n}", "expr": expand(expr)} for n, expr in enumerate(exprs)]}]}
    path = tmp_path / "expressions.yaml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run([binary, "check", "rules", str(path)],
                          capture_output=True, check=False, text=True, timeout=60)
    return "" if done.returncode == 0 else done.stdout + done.stderr


def panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # inside a collapsed row
    return found


def expressions(dashboard: dict) -> list[str]:
    return [target["expr"] for panel in panels(dashboard) for target in panel.get("targets", [])]


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


# The helpers first: a checker that finds nothing proves nothing.

@pytest.mark.parametrize(("expr", "names"), [
    pytest.param('max by (pod) (scaler_leader{job=~"$job"}) == 1', {"scaler_leader"}, id="aggregation"),
    pytest.param("histogram_quantile(0.95, sum by (le, kind) (rate(a_bucket[$__rate_interval])))", {"a_bucket"},
                 id="histogram"),
    pytest.param("time() - b > 300", {"b"}, id="function-without-arguments"),
    pytest.param("60 * sum(rate(c_total[5m])) and on (instance) (d == 1)", {"c_total", "d"}, id="join"),
    pytest.param('sum(increase(e{x="f(g)"}[1h] offset 5m)) or absent(up{job="scaler"})', {"e", "up"},
                 id="offset-absent-strings"),
    pytest.param("1e3 * h / 0.5", {"h"}, id="numbers"),
])
def test_metric_names_finds_the_selected_metrics(expr, names):
    assert metric_names(expr) == names


def test_exported_names_come_from_the_daemon():
    names = exported_names()
    assert {"scaler_actions_total", "scaler_reconcile_duration_seconds_bucket", "scaler_leader",
            "scaler_kube_requests_total"} <= names
    assert "scaler_actions" not in names


def test_promtool_rejects_invalid_promql(tmp_path):
    assert promtool_rejects(["sum by (pod) (scaler_leader"], tmp_path)
    assert not promtool_rejects(["sum by (pod) (scaler_leader)"], tmp_path)


# The dashboard.

def test_the_dashboard_is_a_grafana_dashboard(dashboard):
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))


def test_every_panel_reads_the_datasource_variable(dashboard):
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", panel["datasource"])["uid"] == DATASOURCE, panel["title"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == DATASOURCE, variable["name"]


def test_every_expression_names_only_exported_metrics(dashboard):
    exported = exported_names()
    for expr in expressions(dashboard):
        names = metric_names(expr)
        assert names, expr
        assert names <= exported, f"{expr}: not exported: {names - exported}"
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            selector = re.fullmatch(r"label_values\((.*), *\w+\)", variable["definition"]).group(1)
            assert metric_names(selector) <= exported, variable["name"]


def test_every_expression_is_valid_promql(dashboard, tmp_path):
    assert promtool_rejects(expressions(dashboard), tmp_path) == ""


def test_every_expression_follows_the_variables(dashboard):
    """Each panel shows the scaler installation the job and namespace
    variables select, not every scaler Prometheus knows."""
    for expr in expressions(dashboard):
        selectors = re.findall(r"\{([^}]*)\}", expr)
        assert selectors, expr
        for selector in selectors:
            assert 'job=~"$job"' in selector and 'namespace=~"$namespace"' in selector, expr


def test_the_panels_users_asked_for_are_there(dashboard):
    used = {name for expr in expressions(dashboard) for name in metric_names(expr)}
    assert {
        "scaler_paused_workloads", "scaler_gpus_paused", "scaler_actions_total", "scaler_decisions_total",
        "scaler_reconcile_duration_seconds_bucket", "scaler_last_successful_reconcile_timestamp_seconds",
        "scaler_query_errors_total", "scaler_signal_unknown_workloads", "scaler_leader", "scaler_policies_loaded",
        "scaler_policy_reload_errors_total", "scaler_kube_requests_total", "scaler_scheduler_job_errors_total",
        "scaler_scheduler_missed_runs_total", "scaler_gpus_freed_not_released", "scaler_node_release_seconds_bucket",
        "scaler_saved_gpu_hours_total", "scaler_saved_money_total",
    } <= used
