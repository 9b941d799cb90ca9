"""A write's result is spelled alike in its `decision` line and in
scaler_actions_total's `result` label, as docs/observability.md says: a
lasting conflict is `failed` (so ScalerActionsFailing, which reads
result="failed", fires), a workload deleted before its write and a write the
fence stopped before sending are `skipped`. Every label value is exported
from the start, at 0."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.fakes.bodies import all_day, deployment, namespace
from tests.unit.running import Passes, policies

DEPLOYMENTS = "deployments.apps"
KEEP_DOWN = all_day(selector="app=chat")  # a keep-down window all day long
NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
#: The values docs/observability.md lists for `result`.
RESULTS = ("success", "failed", "conflict", "gone", "dry_run", "skipped")


@pytest.fixture
def daemon(fake, prometheus):
    namespace(fake, "llm")
    fake.create(DEPLOYMENTS, deployment("chat", replicas=2), namespace="llm")
    passes = Passes(fake, prometheus.url, policies(KEEP_DOWN), now=NOW)
    passes.seen("chat")
    yield passes
    passes.stop()


def _counted(daemon) -> dict[str, float | None]:
    return {r: daemon.metric("scaler_actions_total", action="pause", result=r) for r in RESULTS}


def _written(log) -> list[tuple[str, str]]:
    return [(line["result"], line["level"]) for line in log.lines("decision", lambda line: "result" in line)]


def test_every_result_is_exported_at_zero_before_any_write(daemon):
    assert _counted(daemon) == dict.fromkeys(RESULTS, 0.0)


def test_a_lasting_conflict_is_failed_in_the_log_and_the_metric(fake, daemon, log):
    fake.fail(method="PATCH", path="/deployments/chat", status=409, times=None)
    daemon.step(NOW)
    assert fake.get(DEPLOYMENTS, "llm", "chat")["spec"]["replicas"] == 2
    assert _written(log) == [("failed", "error")]
    assert _counted(daemon) == {**dict.fromkeys(RESULTS, 0.0), "failed": 1.0}  # what ScalerActionsFailing reads


def test_a_workload_deleted_before_its_pause_is_skipped_in_the_log_and_the_metric(fake, daemon, log):
    evaluations = daemon.evaluator.evaluate(daemon.policies, now=NOW)
    fake.delete(DEPLOYMENTS, "llm", "chat")
    daemon.actor.act(evaluations, now=NOW)
    assert _written(log) == [("skipped", "info")]
    assert _counted(daemon) == {**dict.fromkeys(RESULTS, 0.0), "skipped": 1.0}


def test_a_pause_the_fence_stops_before_sending_is_skipped_in_the_log_and_the_metric(fake, daemon, log):
    evaluations = daemon.evaluator.evaluate(daemon.policies, now=NOW)
    fake.patch(DEPLOYMENTS, "llm", "chat", {"metadata": {"annotations": {"scaler.io/paused": "true"}}},
               manager="kubectl")  # paused by hand meanwhile: the policy no longer decides a pause
    daemon.seen("chat")
    daemon.actor.act(evaluations, now=NOW)
    assert fake.get(DEPLOYMENTS, "llm", "chat")["spec"]["replicas"] == 2
    assert _written(log) == [("skipped", "info")]
    assert _counted(daemon) == {**dict.fromkeys(RESULTS, 0.0), "skipped": 1.0}
    assert daemon.metric("scaler_actions_total", action="pause", result="dropped") is None
