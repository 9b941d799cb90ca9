"""The daemon's exact-time edge job, in process (tests/unit/running.py): with a
reconcile only every 5 minutes and Prometheus hung, a pre-warm edge resumes
each paused workload to its recorded count within a second of the edge,
without a query. Window edges fall on whole minutes, too far for this tier;
a pre-warm edge (a keep-up window's start less the lead) can be put two
seconds ahead, and the same job acts on both. The cluster tier keeps one
real window edge with a hung Prometheus (tests/cluster/test_runtime.py)."""

from __future__ import annotations

import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from scaler.decide.annotations import LAST_REPLICAS, PAUSE_CAUSE, PAUSED_AT, PAUSED_BY
from scaler.decide.times import human_duration
from tests.fakes.bodies import deployment, namespace
from tests.fakes.prometheus import FakePrometheus
from tests.helpers import pause_state
from tests.unit.running import Running, settings, wait_until

DEPLOYMENTS = "deployments.apps"
COUNTS = {"a": 1, "b": 3, "c": 5}


@pytest.fixture
def hung():
    """A Prometheus that answers nothing: every query waits out its timeout."""
    release = threading.Event()
    server = FakePrometheus(instant=lambda query: release.wait(10) and [])
    server.serve()
    yield server
    release.set()
    server.stop()


def _paused(name: str, last: int, tier: str) -> dict:
    return deployment(name, replicas=0, labels={"tier": tier}, annotations={
        LAST_REPLICAS: str(last), PAUSED_BY: f"policy/{tier}", PAUSED_AT: "2026-01-01T00:00:00Z",
        PAUSE_CAUSE: "outside-down"})


def _edge_ahead(seconds: float) -> tuple[datetime, int]:
    """(the next whole minute at least `seconds` + 2 away, the lead that puts its pre-warm `seconds` from now)."""
    now = datetime.now(UTC)
    opens = (now + timedelta(seconds=seconds + 2, minutes=1)).replace(second=0, microsecond=0)
    return opens, int((opens - now).total_seconds() - seconds)


def test_a_prewarm_edge_acts_within_a_second_with_prometheus_hung_and_restores_exact_counts(fake, hung, log,
                                                                                            tmp_path):
    namespace(fake, "llm")
    for name, count in COUNTS.items():
        fake.create(DEPLOYMENTS, _paused(name, count, "warm"), namespace="llm")
    fake.create(DEPLOYMENTS, _paused("cold", 2, "cold"), namespace="llm")
    fake.create(DEPLOYMENTS, deployment("chat", replicas=2), namespace="llm")
    opens, lead = _edge_ahead(2)
    closes = opens + timedelta(minutes=30)
    window = f'{{name: day, mode: up, start: "{opens:%M %H} * * *", end: "{closes:%M %H} * * *"}}'
    (tmp_path / "policies.yaml").write_text(textwrap.dedent(f"""
        policies:
          - name: warm
            targets: {{namespaces: [llm], selector: tier=warm}}
            schedule: {{timezone: UTC, outside: down, windows: [{window}]}}
            prewarm: {lead}s
          - name: cold
            targets: {{namespaces: [llm], selector: tier=cold}}
            schedule: {{timezone: UTC, outside: down, windows: [{window}]}}
          - name: chat-idle
            targets: {{namespaces: [llm], selector: app=chat}}
            idle: {{query: 'vllm:num_requests_running', threshold: 0.5, duration: 10m}}
            startup_grace: 0s
        """))
    edge = opens - timedelta(seconds=lead)
    # Only the edge job can act on time: the next reconcile is 5 minutes away.
    with Running.start(settings(fake, hung.url, tmp_path, evaluation_interval_seconds=300)) as daemon:
        assert datetime.now(UTC) < edge, "started after the edge; the test proves nothing"
        assert [fake.get(DEPLOYMENTS, "llm", n)["spec"]["replicas"] for n in COUNTS] == [0, 0, 0]
        wait_until(lambda: all(fake.get(DEPLOYMENTS, "llm", n)["spec"]["replicas"] == count
                               for n, count in COUNTS.items()), timeout_seconds=8)
        resumed_after = (datetime.now(UTC) - edge).total_seconds()
        assert resumed_after < 1.0, f"resumed {resumed_after:.2f}s after the pre-warm edge"
        assert all(pause_state(fake.get(DEPLOYMENTS, "llm", n)["metadata"].get("annotations")) == {} for n in COUNTS)
        prewarmed = log.wait("decision", lambda line: line.get("reason_code") == "prewarm")
        assert f"opens within {human_duration(lead)} (prewarm): resuming to " in prewarmed[0]["reason"]
        wait_until(lambda: daemon.metric("scaler_reconcile_duration_seconds_count", kind="edge"))  # it finished
        assert fake.get(DEPLOYMENTS, "llm", "cold")["spec"]["replicas"] == 0
        assert fake.get(DEPLOYMENTS, "llm", "chat")["spec"]["replicas"] == 2
        assert daemon.reconciles() == 1  # the one at the start: the edge job acted, not a reconcile
    assert daemon.code == [0]


@pytest.mark.parametrize("interval", [300, 1])
def test_an_edge_decided_ahead_of_time_writes_nothing_before_the_edge(fake, hung, tmp_path, interval):
    """The edge job decides before the edge (EDGE_LEAD) so the writes go out as it passes: every PATCH
    reaches the API server at the edge or after it, none while the workloads are still in their window.
    With a reconcile every second, reconciles run while the edge job waits: none of them replaces it
    (a replaced job would be skipped as a second instance of a running one)."""
    namespace(fake, "llm")
    for name, count in COUNTS.items():
        fake.create(DEPLOYMENTS, _paused(name, count, "warm"), namespace="llm")
    opens, lead = _edge_ahead(4)
    closes = opens + timedelta(minutes=30)
    (tmp_path / "policies.yaml").write_text(textwrap.dedent(f"""
        policies:
          - name: warm
            targets: {{namespaces: [llm], selector: tier=warm}}
            schedule:
              timezone: UTC
              outside: down
              windows: [{{name: day, mode: up, start: "{opens:%M %H} * * *", end: "{closes:%M %H} * * *"}}]
            prewarm: {lead}s
        """))
    edge = (opens - timedelta(seconds=lead)).timestamp()
    wall_minus_monotonic = time.time() - time.monotonic()
    with Running.start(settings(fake, hung.url, tmp_path, evaluation_interval_seconds=interval)) as daemon:
        assert time.time() < edge - 2, "started within the lead; the test proves nothing"
        wait_until(lambda: all(fake.get(DEPLOYMENTS, "llm", n)["spec"]["replicas"] == count
                               for n, count in COUNTS.items()), timeout_seconds=10)
        wait_until(lambda: daemon.metric("scaler_reconcile_duration_seconds_count", kind="edge"))
        assert not daemon.metric("scaler_scheduler_missed_runs_total", task="edge", why="busy")
    patches = [request.at + wall_minus_monotonic for request in list(fake.requests)
               if request.method == "PATCH" and "/deployments/" in request.path]
    assert len(patches) >= len(COUNTS)  # the resumes, and any start records after them
    early = [round(edge - at, 3) for at in patches if at < edge - 0.001]
    assert not early, f"PATCHes this many seconds before the edge: {early}"
