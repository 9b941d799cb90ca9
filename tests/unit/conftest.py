"""The unit tier's fixtures: an in-process fake API server and a fake Prometheus per test."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.fakes.kubeapi import FakeKube
from tests.fakes.prometheus import FakePrometheus


@pytest.fixture
def fake():
    server = FakeKube().serve()
    yield server
    server.stop()


@pytest.fixture
def log(tmp_path):
    """Every log line of the test as JSON (tests/unit/running.Log)."""
    from tests.unit.running import Log

    captured = Log(tmp_path / "daemon.log")
    yield captured
    captured.close()


@pytest.fixture
def prometheus():
    """A fake Prometheus answering what a test tells it (`answer`), empty before that."""
    server = FakePrometheus().serve()
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


@dataclass(frozen=True)
class Ran:
    """One `scaler ...` run in process: its exit code and what it printed."""

    code: int
    out: str
    err: str


@pytest.fixture
def scaler(fake, tmp_path, capsys):
    """`scaler ARGUMENTS` through scaler.cli.main.main, as a user runs it,
    against the fake API server (its kubeconfig unless one is given). Each
    run starts with logging as a new process has it (no handler: Python's
    last resort prints warnings to stderr), and what a command configured
    (plan and backtest route their logs to the stderr of their run) is
    undone after it."""
    import logging

    from scaler.cli.main import main

    kubeconfig = fake.kubeconfig(tmp_path / "fake.kubeconfig")

    def run(*arguments: str) -> Ran:
        arguments = tuple(str(a) for a in arguments)
        if "--kubeconfig" not in arguments and arguments[:1] not in (("validate",), ("schema",)):
            arguments += ("--kubeconfig", str(kubeconfig))
        capsys.readouterr()
        root = logging.getLogger()
        saved = root.handlers, root.level
        root.handlers = []
        root.setLevel(logging.WARNING)
        try:
            code = main(list(arguments))
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code
        finally:
            root.handlers = saved[0]
            root.setLevel(saved[1])
        out, err = capsys.readouterr()
        return Ran(code, out, err)
    return run
