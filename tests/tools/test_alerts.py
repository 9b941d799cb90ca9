"""The alert rules: promtool accepts them, their own unit tests pass, and the
PrometheusRule for the Prometheus Operator carries exactly the same groups.

promtool comes with Debian's prometheus package, which deploy/local/install
installs; without it these tests fail rather than skip, so CI cannot pass
without having checked the rules.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.tools.test_dashboard import exported_names, metric_names

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "deploy" / "prometheus"
RULES = RULES_DIR / "scaler-rules.yaml"
RULE_TESTS = RULES_DIR / "scaler-rules.test.yaml"
PROMETHEUS_RULE = RULES_DIR / "prometheusrule.yaml"

EXPECTED_ALERTS = {
    "ScalerDown", "ScalerNoSuccessfulReconcile", "ScalerActionsFailing", "ScalerMetricsUnknown",
    "ScalerNoLeader", "ScalerPolicyReloadFailing", "ScalerPolicyFailing", "ScalerCannotWake",
    "ScalerGPUsFreedButNodesHeld",
}


def promtool(*args: str | Path) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool not found: install Debian's prometheus package (deploy/local/install does)")
    return subprocess.run([binary, *map(str, args)], capture_output=True, check=False, text=True, timeout=60)


def alerts(groups: list[dict]) -> dict[str, dict]:
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def test_promtool_accepts_the_rules():
    done = promtool("check", "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in done.stdout


def test_the_rules_pass_their_unit_tests():
    done = promtool("test", "rules", RULE_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_broken_rule_file_is_rejected(tmp_path):
    broken = tmp_path / "scaler-rules.yaml"
    text = RULES.read_text()
    broken.write_text(text.replace("> 300", "> > 300", 1))
    assert broken.read_text() != text
    done = promtool("check", "rules", broken)
    assert done.returncode != 0
    assert '"ScalerNoSuccessfulReconcile": could not parse expression' in done.stdout + done.stderr


def test_the_unit_tests_catch_a_changed_alert(tmp_path):
    """An alert that waits 1 minute instead of 5 must fail the tests that
    say it stays quiet through shorter outages."""
    text = RULES.read_text()
    changed = text.replace("for: 5m", "for: 1m", 1)
    assert changed != text
    (tmp_path / "scaler-rules.yaml").write_text(changed)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    done = promtool("test", "rules", tmp_path / RULE_TESTS.name)
    assert done.returncode != 0
    assert "ScalerDown" in done.stdout + done.stderr


def test_every_alert_is_there_and_explained():
    found = alerts(yaml.safe_load(RULES.read_text())["groups"])
    assert set(found) == EXPECTED_ALERTS
    for name, rule in found.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"].strip(), name
        assert len(rule["annotations"]["description"]) > 200, f"{name}: the description is the runbook"


def test_every_alert_names_only_exported_metrics():
    exported = exported_names() | {"up"}  # up: Prometheus's own, one per scrape target
    for name, rule in alerts(yaml.safe_load(RULES.read_text())["groups"]).items():
        names = metric_names(rule["expr"])
        assert names, name
        assert names <= exported, f"{name}: not exported: {names - exported}"


def test_every_alert_has_a_firing_and_a_quiet_case():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing, quiet = set(), set()
    for test in tests:
        for case in test.get("alert_rule_test", []):
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    assert firing == EXPECTED_ALERTS
    assert quiet == EXPECTED_ALERTS


def test_the_prometheus_rule_carries_the_same_groups():
    plain = yaml.safe_load(RULES.read_text())
    wrapped = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert wrapped["apiVersion"] == "monitoring.coreos.com/v1"
    assert wrapped["kind"] == "PrometheusRule"
    assert wrapped["metadata"]["name"]
    assert wrapped["spec"]["groups"] == plain["groups"]
