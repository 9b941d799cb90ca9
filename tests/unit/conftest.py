"""The unit tier's fixtures: an in-process fake API server per test."""

from __future__ import annotations

import pytest

from tests.fakes.kubeapi import FakeKube


@pytest.fixture
def fake():
    server = FakeKube().serve()
    yield server
    server.stop()
