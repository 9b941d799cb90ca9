"""The unit tier's fixtures: an in-process fake API server per test."""

from __future__ import annotations

import pytest

from tests.fakes.kubeapi import FakeKube


@pytest.fixture
def fake():
    server = FakeKube().serve()
    yield server
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def logging_as_the_daemon_does():
    """Every logger routed as `scaler run` routes it, from the first test on:
    structlog caches a logger on first use, so a module used before any
    configure_logging would keep printing with structlog's defaults and a
    later test reading the daemon's JSON lines would find none."""
    from scaler.run.observability import configure_logging

    configure_logging(log_format="json", level="info")
