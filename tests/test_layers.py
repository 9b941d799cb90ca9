import shutil
import subprocess

from tests.conftest import ROOT


def test_decide_layer_imports_no_io_frameworks():
    """The import-linter contract in .importlinter holds: the pure decision
    modules import neither Kubernetes, Prometheus clients nor structlog."""
    result = subprocess.run([shutil.which("lint-imports") or "lint-imports"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout
