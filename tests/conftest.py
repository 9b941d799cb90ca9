"""Three tiers, one folder each, each marked by where it lives:

- tests/unit: Python only (pure logic, and the act, run and CLI layers
  against the in-process fake API server in tests/fakes); `make test-unit`.
- tests/tools: needs helm or promtool (deploy/local/install provides them).
- tests/cluster: the real local cluster (marker `cluster`, fixtures in
  tests/cluster/conftest.py); `real_node` tests also a real node.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TIERS = {"unit": pytest.mark.unit, "tools": pytest.mark.tools, "cluster": pytest.mark.cluster}


def pytest_collection_modifyitems(items):
    for item in items:
        tier = Path(item.path).relative_to(ROOT / "tests").parts[0]
        if tier in TIERS:
            item.add_marker(TIERS[tier])
