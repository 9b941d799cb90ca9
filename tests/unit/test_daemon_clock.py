"""The daemon in process (tests/unit/running.py) when the wall clock steps:
APScheduler, which times the jobs, reads the wall clock, and cannot be given
one; its `datetime` (the scheduler's and the executor's) is the one thing
patched, and the daemon is told the same time through its `wall_clock`."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import apscheduler.executors.base
import apscheduler.schedulers.base

from tests.fakes.bodies import all_day, deployment, namespace
from tests.unit.running import Running, settings, wait_until


class _Stepped(datetime):
    """datetime, its now() off by `offset`."""

    offset = timedelta(0)

    @classmethod
    def now(cls, tz=None):
        return datetime.now(tz) + cls.offset


def test_a_wall_clock_stepped_back_an_hour_does_not_stop_the_daemon_for_an_hour(fake, prometheus, log,
                                                                                tmp_path, monkeypatch):
    for module in (apscheduler.schedulers.base, apscheduler.executors.base):
        monkeypatch.setattr(module, "datetime", _Stepped)
    monkeypatch.setattr(_Stepped, "offset", timedelta(0))
    (tmp_path / "policies.yaml").write_text(all_day())
    namespace(fake, "llm")
    with Running.start(settings(fake, prometheus.url, tmp_path)) as daemon:
        daemon.let_reconciles_pass(2)
        _Stepped.offset = timedelta(hours=-1)  # NTP steps the clock back, with a keep-down window open
        daemon.daemon.wall_clock = lambda: time.time() - 3600
        fake.create("deployments.apps", deployment("late", replicas=2, gpus=0, labels={"tier": "gpu"}),
                    namespace="llm")
        wait_until(lambda: fake.get("deployments.apps", "llm", "late")["spec"]["replicas"] == 0)
        reconciles = daemon.reconciles()
        daemon.let_reconciles_pass(2)  # and on, every interval, not an hour later
        assert daemon.reconciles() >= reconciles + 2
    [stepped] = log.lines("wall clock stepped; the scheduled jobs run now")
    assert -3601 < stepped["step_seconds"] < -3599
    assert datetime.now(UTC) - timedelta(minutes=5) < datetime.fromisoformat(stepped["timestamp"])
