"""Settings: SCALER_ environment variables, flags over them, and a clear
error naming both when a value is wrong."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from scaler.run.settings import Settings, add_settings_arguments, settings_from
from tests.conftest import ROOT


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SCALER_")}
    return subprocess.run([sys.executable, "-m", "scaler", *args], capture_output=True, check=False, text=True,
                          timeout=60, cwd=ROOT, env={**clean, **(env or {})})


@pytest.mark.parametrize("args, env, expected", [
    pytest.param(["--evaluation-interval-seconds", "0"], {}, "invalid setting --evaluation-interval-seconds / "
                 "SCALER_EVALUATION_INTERVAL_SECONDS: Input should be greater than 0", id="flag"),
    pytest.param([], {"SCALER_PROMETHEUS_URL": "prometheus:9090"}, "invalid setting --prometheus-url / "
                 "SCALER_PROMETHEUS_URL: Value error, must start with http:// or https://", id="environment"),
    pytest.param(["--leader-election", "--lease-duration-seconds", "5", "--lease-renew-deadline-seconds", "8"], {},
                 "lease timings must satisfy", id="lease-timings"),
    pytest.param(["--log-format", "xml"], {}, "invalid setting --log-format / SCALER_LOG_FORMAT", id="choice"),
])
def test_an_invalid_setting_stops_the_daemon_at_start_naming_it(args, env, expected):
    result = _run("run", "--policies", str(ROOT / "policies"), *args, env=env)
    assert result.returncode == 1
    assert expected in result.stderr


def test_flags_override_the_environment():
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    os.environ["SCALER_EVALUATION_INTERVAL_SECONDS"] = "45"
    os.environ["SCALER_NAMESPACES"] = "llm,batch"
    try:
        from_env = settings_from(parser.parse_args([]))
        overridden = settings_from(parser.parse_args(["--evaluation-interval-seconds", "10"]))
    finally:
        del os.environ["SCALER_EVALUATION_INTERVAL_SECONDS"], os.environ["SCALER_NAMESPACES"]
    assert from_env.evaluation_interval_seconds == 45 and from_env.namespaces == ["llm", "batch"]
    assert overridden.evaluation_interval_seconds == 10
    assert Settings().evaluation_interval_seconds == 30


def test_a_broken_policy_file_stops_the_daemon_at_start_naming_file_and_line(tmp_path):
    (tmp_path / "p.yaml").write_text("policies:\n  - name: x\n    max_replicas: 0\n")
    result = _run("run", "--policies", str(tmp_path))
    assert result.returncode == 1
    assert f"{tmp_path / 'p.yaml'}:3: max_replicas:" in result.stderr


@pytest.mark.parametrize("value", ["", ","], ids=["empty", "comma"])
def test_policies_set_to_nothing_stop_the_daemon_at_start(value, tmp_path):
    """SCALER_POLICIES="" (a template's empty value) or --policies "" named no
    policy file: read as no policies at all, the daemon would resume every
    workload a policy had paused, as targeted by none."""
    result = _run("run", "--kubeconfig", str(tmp_path / "none"), env={"SCALER_POLICIES": value})
    assert result.returncode == 1
    assert "--policies / SCALER_POLICIES: names no policy file or directory" in result.stderr, result.stderr


def test_an_unreachable_api_server_is_a_clear_error(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "clusters: [{name: x, cluster: {server: 'https://127.0.0.1:9', insecure-skip-tls-verify: true}}]\n"
        "users: [{name: x, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: x, user: x, namespace: default}}]\n")
    result = _run("pause", "llm", "--kubeconfig", str(kubeconfig))
    assert result.returncode == 1
    assert "error: cannot reach the API server at https://127.0.0.1:9: " in result.stderr
    assert "Connection refused" in result.stderr and "Traceback" not in result.stderr
