"""The tools tier: helm (built by deploy/local/build) and promtool (Debian's
prometheus package), both installed by deploy/local/install."""

from __future__ import annotations

import sys

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "deploy" / "local"))
