"""`scaler savings`' PromQL run by Prometheus' own engine (`promtool test
rules`): the same answer whether the scrape kept the workload's namespace as
`namespace` (a static scrape, as the local cluster's) or renamed it to
`exported_namespace` because the target has a `namespace` label of its own
(a ServiceMonitor, Kubernetes service discovery: scaler's namespace)."""

from __future__ import annotations

import yaml

from scaler.cli.savings import GROUPS, query
from tests.tools.test_alerts import promtool

METRIC = "scaler_saved_gpu_hours_total"


def series(workload: str, namespace: str, *, scraped_by_service_monitor: bool, per_minute: int) -> dict:
    """A pause's counter, growing `per_minute` GPU-hours a minute for an hour."""
    labels = {"basis": "nominal", "policy": "nights", "workload": workload}
    if scraped_by_service_monitor:
        labels |= {"exported_namespace": namespace, "namespace": "scaler", "job": "scaler-sm"}
    else:
        labels |= {"namespace": namespace, "job": "scaler"}
    text = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return {"series": f"{METRIC}{{{text}}}", "values": f"0+{per_minute}x60"}


def case(by: str, namespace: str | None, expected: dict[tuple[str, ...], float]) -> dict:
    """The savings query over the last 30 minutes of the hour, at its end.
    A counter growing v a minute increases by 30 v over 30 minutes."""
    labels = ("basis", *GROUPS[by])
    return {"expr": query(METRIC.removesuffix("_total"), by=GROUPS[by], period_seconds=1800, step=60,
                          namespace=namespace, policy="nights"),
            "eval_time": "60m",
            "exp_samples": [{"labels": "{" + ",".join(f'{k}="{v}"' for k, v in zip(labels, ("nominal", *key),
                                                                                   strict=True)) + "}",
                             "value": value} for key, value in expected.items()]}


def test_the_savings_query_reads_the_workloads_namespace_from_either_scrape(tmp_path):
    inputs = [series("llm", "ml", scraped_by_service_monitor=False, per_minute=1),
              series("chat", "ml", scraped_by_service_monitor=True, per_minute=2),
              series("batch", "team", scraped_by_service_monitor=True, per_minute=4)]
    tests = [case("namespace", "ml", {("ml",): 90}),
             case("namespace", "team", {("team",): 120}),
             case("namespace", None, {("ml",): 90, ("team",): 120}),
             case("workload", None, {("nights", "ml", "llm"): 30, ("nights", "ml", "chat"): 60,
                                     ("nights", "team", "batch"): 120})]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": []}))
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yaml"], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": inputs, "promql_expr_test": tests}]}))
    done = promtool("test", "rules", tmp_path / "test.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
