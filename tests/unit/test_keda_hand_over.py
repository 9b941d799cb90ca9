"""The daemon's KEDA hand-over, in process against the fake API server: a
ScaledObject aimed at a paused Deployment must be paused with it
(`autoscaling.keda.sh/paused-replicas: "0"`), or KEDA scales the Deployment
back up. A hand-over refused after the pause landed is sent again by the
next pass; one that a killed daemon never sent is sent by the next daemon
when it starts leading. The CLI's side is tests/unit/test_manual_cli.py's."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from scaler.cluster.actions import ActionRecord
from scaler.cluster.batches import Selection, select
from scaler.cluster.kinds import DEPLOYMENT
from scaler.cluster.pausing import Pauser
from scaler.decide.annotations import (
    KEDA_BEFORE,
    KEDA_PAUSED_REPLICAS,
    LAST_REPLICAS,
    PAUSE_CAUSE,
    PAUSED_AT,
    PAUSED_BY,
)
from tests.fakes.bodies import deployment, namespace
from tests.helpers import simple_crd
from tests.unit.running import Running, settings, wait_until

DEPLOYMENTS, SCALED_OBJECTS = "deployments.apps", "scaledobjects.keda.sh"


@pytest.fixture
def keda(fake, tmp_path):
    """KEDA's CRD, a Deployment `worker` (3 replicas) with a ScaledObject aimed
    at it, and a policy whose keep-down window is open now."""
    fake.create("customresourcedefinitions.apiextensions.k8s.io",
                simple_crd(group="keda.sh", kind="ScaledObject", plural="scaledobjects", version="v1alpha1"))
    namespace(fake, "llm")
    fake.create(SCALED_OBJECTS, {"metadata": {"name": "worker"}, "spec": {"scaleTargetRef": {"name": "worker"}}},
                namespace="llm")
    opened = datetime.now(UTC) - timedelta(minutes=2)
    closes = opened + timedelta(hours=2)
    (tmp_path / "policies.yaml").write_text(textwrap.dedent(f"""
        policies:
          - name: nights
            targets: {{namespaces: [llm], selector: app=worker}}
            schedule:
              timezone: UTC
              windows: [{{name: night, mode: down, start: "{opened:%M %H} * * *", end: "{closes:%M %H} * * *"}}]
        """))
    return fake


def _keda_paused(fake) -> str | None:
    return (fake.get(SCALED_OBJECTS, "llm", "worker")["metadata"].get("annotations") or {}).get(KEDA_PAUSED_REPLICAS)


def test_a_refused_hand_over_is_logged_and_sent_again_by_the_next_pass(keda, prometheus, log, tmp_path):
    keda.create(DEPLOYMENTS, deployment("worker", replicas=3, labels={"app": "worker"}), namespace="llm")
    keda.fail(method="PATCH", path="/scaledobjects/", status=503)
    with Running.start(settings(keda, prometheus.url, tmp_path, evaluation_interval_seconds=1)):
        wait_until(lambda: keda.get(DEPLOYMENTS, "llm", "worker")["spec"]["replicas"] == 0)
        [warned] = log.wait("write incomplete")
        assert warned["workload"] == "worker" and "KEDA ScaledObject not updated" in warned["warning"], warned
        wait_until(lambda: _keda_paused(keda) == "0")
    assert keda.count("PATCH", "/scaledobjects/") == 2  # the refused one, then the one that landed
    assert keda.get(DEPLOYMENTS, "llm", "worker")["metadata"]["annotations"][LAST_REPLICAS] == "3"


def test_a_pause_whose_daemon_died_before_the_hand_over_gets_it_from_the_next(keda, prometheus, tmp_path):
    """Paused by the window (its record on the object), the ScaledObject left
    as it was: the next daemon pauses it when it starts leading, and once."""
    keda.create(DEPLOYMENTS, deployment("worker", replicas=0, labels={"app": "worker"}, annotations={
        LAST_REPLICAS: "3", PAUSED_BY: "policy/nights", PAUSED_AT: "2026-01-01T00:00:00Z",
        PAUSE_CAUSE: "keep-down-window"}), namespace="llm")
    with Running.start(settings(keda, prometheus.url, tmp_path, evaluation_interval_seconds=1)) as daemon:
        wait_until(lambda: _keda_paused(keda) == "0")
        daemon.let_reconciles_pass(2)
    assert keda.count("PATCH", "/scaledobjects/") == 1
    assert keda.get(DEPLOYMENTS, "llm", "worker")["spec"]["replicas"] == 0


def _worker(kube):
    workloads, _ = select(kube, Selection(kinds=[DEPLOYMENT], namespace="llm"))
    [worker] = [w for w in workloads if w.name == "worker"]
    return worker


@pytest.mark.parametrize("before", [None, "2"], ids=["no-keda-pause", "a-persons-keda-pause-at-2"])
def test_a_pause_and_a_resume_within_the_scaled_objects_cache_hand_over_and_back(fake, keda, before):
    """One Pauser (a daemon's passes share it) lists a namespace's ScaledObjects once per 5 s: what its
    own patch wrote must be what the next hand-over reads, or a resume right after a pause (a wake
    check, every 5 s) leaves KEDA paused at 0, and a pause right after a resume leaves it unpaused."""
    fake.create(DEPLOYMENTS, deployment("worker", replicas=3, labels={"app": "worker"}), namespace="llm")
    if before is not None:
        fake.patch(SCALED_OBJECTS, "llm", "worker", {"metadata": {"annotations": {KEDA_PAUSED_REPLICAS: before}}})
    kube = fake.client()
    pauser = Pauser(kube)
    for step in ("pause", "resume", "pause", "resume"):
        if step == "pause":
            pauser.pause(_worker(kube), by="policy/idle", reason="idle")
            assert (fake.get(DEPLOYMENTS, "llm", "worker")["spec"]["replicas"], _keda_paused(fake)) == (0, "0")
        else:
            pauser.resume(_worker(kube), by="policy/idle", reason="queue", replicas=3)
            assert (fake.get(DEPLOYMENTS, "llm", "worker")["spec"]["replicas"], _keda_paused(fake)) == (3, before)


@pytest.mark.parametrize("before", [None, "2"], ids=["no-keda-pause", "a-persons-keda-pause-at-2"])
def test_a_resume_of_a_workload_created_again_since_its_pause_hands_keda_back(fake, keda, scaler, before):
    """Paused with its ScaledObject, then deleted and created again under the same name (a reinstall):
    the new object has none of the pause's record, so `scaler resume` finds nothing to restore. The
    ScaledObject scaler paused must still be handed back as it was, or KEDA holds the new workload at
    0 for good. A KEDA pause someone set without scaler (a bare "0") is not scaler's to lift."""
    fake.create(DEPLOYMENTS, deployment("worker", replicas=3, labels={"app": "worker"}), namespace="llm")
    if before is not None:
        fake.patch(SCALED_OBJECTS, "llm", "worker", {"metadata": {"annotations": {KEDA_PAUSED_REPLICAS: before}}})
    assert scaler("pause", "worker", "-n", "llm").code == 0
    assert _keda_paused(fake) == "0"
    fake.delete(DEPLOYMENTS, "llm", "worker")
    fake.create(DEPLOYMENTS, deployment("worker", replicas=2, labels={"app": "worker"}), namespace="llm")

    resumed = scaler("resume", "worker", "-n", "llm")
    assert resumed.code == 0 and "not paused: running at 2 replicas" in resumed.out, resumed
    assert _keda_paused(fake) == before
    assert KEDA_BEFORE not in (fake.get(SCALED_OBJECTS, "llm", "worker")["metadata"].get("annotations") or {})

    fake.create(DEPLOYMENTS, deployment("other", replicas=0), namespace="llm")
    fake.create(SCALED_OBJECTS, {"metadata": {"name": "other", "annotations": {KEDA_PAUSED_REPLICAS: "0"}},
                                 "spec": {"scaleTargetRef": {"name": "other"}}}, namespace="llm")
    assert scaler("resume", "other", "-n", "llm").code == 0
    assert fake.get(SCALED_OBJECTS, "llm", "other")["metadata"]["annotations"][KEDA_PAUSED_REPLICAS] == "0"


@pytest.mark.parametrize("ours", [True, False], ids=["left-by-scaler", "a-persons-keda-pause"])
def test_a_resume_whose_daemon_died_before_the_hand_back_gets_it_from_the_next(keda, prometheus, tmp_path, ours):
    """Resumed (its record gone, the action's record left), the ScaledObject
    still paused by scaler at 0: KEDA would scale the workload back to 0. The
    next daemon hands it back when it starts leading; a 0 a person set (no
    marker of scaler's beside it) stays theirs."""
    record = ActionRecord("00000000000000aa", "Resumed", "Normal", "resumed to 3 replicas by policy/nights: r",
                          "2026-01-01T00:00:00Z")
    keda.create(DEPLOYMENTS, deployment("worker", replicas=3, labels={"app": "other"},
                                        annotations=record.annotation()["metadata"]["annotations"]),
                namespace="llm")
    marks = {KEDA_PAUSED_REPLICAS: "0", **({KEDA_BEFORE: ""} if ours else {})}
    keda.write(SCALED_OBJECTS, "llm", "worker",
               lambda obj: {**obj, "metadata": {**obj["metadata"], "annotations": marks}}, manager="scaler")
    with Running.start(settings(keda, prometheus.url, tmp_path, evaluation_interval_seconds=1)) as daemon:
        daemon.let_reconciles_pass(2)
    annotations = keda.get(SCALED_OBJECTS, "llm", "worker")["metadata"].get("annotations") or {}
    assert annotations == ({} if ours else marks)
    assert keda.count("PATCH", "/scaledobjects/") == (1 if ours else 0)
    assert keda.get(DEPLOYMENTS, "llm", "worker")["spec"]["replicas"] == 3
