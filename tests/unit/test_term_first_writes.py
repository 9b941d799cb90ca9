"""What a new leadership term may send first, in process against the fake API
server: every write of a term waits for the Events the last leader owed
(a write replaces `scaler.io/last-action`, the record an owed Event is found
by), whichever job or request makes it; and nothing that follows a write
(the KEDA hand-over) goes out in a later term than the write's. Elections
are set directly, as in tests/unit/test_daemon.py."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from scaler.cluster.actions import ActionRecord
from scaler.cluster.kinds import DEPLOYMENT
from scaler.decide.annotations import KEDA_PAUSED_REPLICAS, LAST_REPLICAS, PAUSE_CAUSE, PAUSED_AT, PAUSED_BY
from scaler.decide.times import rfc3339
from scaler.run.daemon import Daemon
from tests.fakes.bodies import deployment
from tests.helpers import eventually, simple_crd
from tests.unit import test_push_wake as push
from tests.unit.test_daemon import _never, make_daemon
from tests.unit.test_following import NIGHTS, World
from tests.unit.test_keda_hand_over import DEPLOYMENTS, SCALED_OBJECTS

OWED = ActionRecord("00000000000000ab", "ScaledToZero", "Normal", "scaled to zero from 2 replicas by policy/chat: "
                    "idle", rfc3339(datetime.now(UTC)))


def _leads(daemon: Daemon) -> None:
    """As the election does on winning, and the term's reload after it."""
    daemon.leadership._set(True)
    daemon.leadership.renewed(time.monotonic())
    daemon._checked_term = daemon.leadership.term


def test_a_push_wake_first_in_a_term_still_leaves_the_owed_event_posted(fake, prometheus, tmp_path):
    """The last leader paused `chat` and was killed before its Event went out.
    A push reaches the new leader before any of its jobs looked for owed
    Events (they were busy, on a Prometheus that hangs): the wake's record
    would replace the pause's, and the `ScaledToZero` Event would be owed by
    nothing. It is posted first."""
    push.workloads(fake, "chat", annotations={**push.PAUSED, **OWED.annotation()["metadata"]["annotations"]})
    push.gateway(fake)
    daemon = push.Running(fake, prometheus, tmp_path, leader_election=True).daemon
    daemon.view.start_namespaces()
    daemon.health.synced = daemon.view.synced
    try:
        assert daemon.view.wait_synced([DEPLOYMENT], timeout_seconds=5)
        _leads(daemon)
        status, answer, _ = daemon.posts["/wake"]({"authorization": f"Bearer {push.TOKEN}"},
                                                   json.dumps({"namespace": "llm", "name": "chat"}).encode())
        assert daemon.events.flush(timeout_seconds=5) == 0
    finally:
        daemon.view.stop(timeout_seconds=2)
    assert (status, answer["result"]) == (200, "woken"), answer
    assert fake.get(DEPLOYMENTS, "llm", "chat")["spec"]["replicas"] == 2
    [paused] = fake.events("llm", "chat", reason="ScaledToZero")
    assert paused["metadata"]["name"] == f"chat.{OWED.id}" and "posted by the next daemon" in paused["message"]
    assert len(fake.events("llm", "chat", reason="Resumed")) == 1


def test_a_hand_over_that_waited_into_a_new_term_is_not_sent(fake, prometheus, tmp_path):
    """The pause landed; its KEDA hand-over waits on the ScaledObjects' LIST (an API
    server slow to answer). Meanwhile the Lease lapses, a leader in between
    resumes the worker, and this replica wins the Lease again. The hand-over
    decided in the old term must not go out in the new one: KEDA would hold the
    running worker at 0."""
    keda = fake
    keda.create("customresourcedefinitions.apiextensions.k8s.io",
                simple_crd(group="keda.sh", kind="ScaledObject", plural="scaledobjects", version="v1alpha1"))
    keda.create("namespaces", {"metadata": {"name": "llm"}})
    keda.create(SCALED_OBJECTS, {"metadata": {"name": "worker"}, "spec": {"scaleTargetRef": {"name": "worker"}}},
                namespace="llm")
    keda.create(DEPLOYMENTS, deployment("worker", replicas=3, labels={"app": "worker"}), namespace="llm")
    daemon = make_daemon(keda, prometheus, tmp_path, leader_election=True)
    _leads(daemon)
    lapsed = []

    def lapse_and_win_again(request) -> None:
        if lapsed:
            return
        lapsed.append(request)
        keda.patch(DEPLOYMENTS, "llm", "worker", {"spec": {"replicas": 3}, "metadata": {"annotations": {
            LAST_REPLICAS: None, PAUSED_AT: None, PAUSED_BY: None, PAUSE_CAUSE: None}}}, manager="scaler")
        daemon.leadership._set(False)
        _leads(daemon)
    keda.before("GET", "/scaledobjects$", lapse_and_win_again)
    try:
        daemon._reconcile()
    finally:
        daemon.view.stop(timeout_seconds=2)
    assert lapsed and daemon.leadership.term == 2
    assert keda.get(DEPLOYMENTS, "llm", "worker")["spec"]["replicas"] == 3
    annotations = keda.get(SCALED_OBJECTS, "llm", "worker")["metadata"].get("annotations") or {}
    assert KEDA_PAUSED_REPLICAS not in annotations, annotations
    assert keda.count("PATCH", "/scaledobjects/") == 0


def test_a_follow_pass_first_in_a_term_still_leaves_the_owed_event_posted(fake, prometheus, tmp_path):
    """The last leader paused `llm` (its nodes recorded) and was killed before
    its Event went out; Karpenter removed the node meanwhile. The new leader's
    first write is its follow pass's `NodesReleased`, whose record would
    replace the pause's: the `ScaledToZero` Event is posted first, then both
    are there, once."""
    w = World(fake)
    try:
        w.node("gpu-a1")
        w.deployment("llm", node="gpu-a1")
        first = make_daemon(fake, prometheus, tmp_path, name="first", text=NIGHTS)
        first.events.fence = _never  # killed: its Events never go out
        first._checked_term = first.leadership.term
        first.follower.start()
        try:
            eventually(first.placement.nodes_listed, timeout_seconds=5)
            first._reconcile()
            assert first.events.flush(timeout_seconds=5) == 0
        finally:
            first.view.stop(timeout_seconds=2)
            first.follower.stop(timeout_seconds=2)
        assert fake.get(DEPLOYMENTS, "rec", "llm")["spec"]["replicas"] == 0 and w.events("llm") == []
        w.gone("llm-5d8f9-0", node="gpu-a1")
        second = make_daemon(fake, prometheus, tmp_path, name="second", text=NIGHTS, leader_election=True)
        second.follower.start()
        try:
            eventually(second.placement.nodes_listed, timeout_seconds=5)
            assert second.view.wait_synced([DEPLOYMENT], timeout_seconds=5)
            _leads(second)
            second.follower._pass()  # the follow job, before the term's reconcile
            second._reconcile()
            assert second.events.flush(timeout_seconds=5) == 0
        finally:
            second.view.stop(timeout_seconds=2)
            second.follower.stop(timeout_seconds=2)
    finally:
        w.stop()
    assert len(w.events("llm", "NodesReleased")) == 1
    [paused] = w.events("llm", "ScaledToZero")
    assert "posted by the next daemon" in paused["message"]
