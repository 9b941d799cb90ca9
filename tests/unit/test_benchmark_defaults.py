"""The benchmarks that measure `scaler run` and the CLI's batches "as users
run them" use the writes in flight those do unless told otherwise: the
default moved from 16 to 32, and edge.py and batch.py kept passing 16."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scaler.run.settings import ClusterSettings

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.parametrize("script", ["edge.py", "batch.py"])
def test_a_benchmark_writes_as_many_at_once_as_the_daemon_does_by_default(script):
    shown = subprocess.run([sys.executable, script, "--help"], cwd=BENCHMARKS, capture_output=True, text=True,
                           timeout=60, check=True).stdout
    default = ClusterSettings.model_fields["concurrency"].default
    assert f"writes in flight (default: SCALER_CONCURRENCY's, {default})" in " ".join(shown.split())
