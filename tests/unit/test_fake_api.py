"""The fake API server answers as the real one did (tests/fixtures/api), so
what the unit tier proves against it holds against a real server."""

from __future__ import annotations

import json
import threading

import pytest

from scaler.cluster.informers import Informer
from scaler.cluster.kube import Resource
from tests.fakes import exchanges
from tests.helpers import eventually

DEPLOYMENTS = Resource("apps", "v1", "deployments")


def test_every_recorded_exchange_is_answered_as_the_real_server_did(fake):
    recorded = json.loads(exchanges.FIXTURE.read_text())
    answered = exchanges.run(exchanges.sender(fake.client().api_client), "exchanges-fake")
    assert set(answered) == set(recorded)
    different = {label: {"real": recorded[label], "fake": answered[label]}
                 for label in recorded if answered[label] != recorded[label]}
    assert not different, json.dumps(different, indent=1)


def test_a_watch_delivers_every_change_in_order(fake):
    fake.create("namespaces", {"metadata": {"name": "llm"}})
    informer = Informer(fake.client(), DEPLOYMENTS, namespace="llm").start()
    try:
        assert informer.synced.wait(5)
        fake.create("deployments.apps", {"metadata": {"name": "chat"}, "spec": {"replicas": 2}}, namespace="llm")
        fake.patch("deployments.apps", "llm", "chat", {"spec": {"replicas": 0}})
        eventually(lambda: (informer.get("llm", "chat") or {}).get("spec", {}).get("replicas") == 0 or None,
                   timeout_seconds=5)
        fake.delete("deployments.apps", "llm", "chat")
        eventually(lambda: informer.get("llm", "chat") is None or None, timeout_seconds=5)
    finally:
        informer.stop()


def test_a_compacted_watch_is_gone_and_the_cache_lists_again(fake):
    fake.create("namespaces", {"metadata": {"name": "llm"}})
    fake.create("deployments.apps", {"metadata": {"name": "a"}}, namespace="llm")
    listed = threading.Event()
    fake.before("GET", r"/deployments$", lambda request: listed.set() if request.verb == "list" else None)
    # The first watch is held until the history is compacted under it.
    hold = threading.Event()
    fake.fail(method="GET", path="/deployments", watch=True, hang=hold)
    informer = Informer(fake.client(), DEPLOYMENTS, namespace="llm").start()
    try:
        assert informer.synced.wait(5)
        listed.clear()
        fake.create("deployments.apps", {"metadata": {"name": "b"}}, namespace="llm")
        fake.compact()
        hold.set()
        assert listed.wait(5), "no re-list after 410 Gone"
        eventually(lambda: informer.get("llm", "b"), timeout_seconds=5)
    finally:
        informer.stop()


@pytest.mark.parametrize(("patch", "status"), [
    pytest.param([{"op": "test", "path": "/spec/replicas", "value": 3}], 422, id="failed-test"),
    pytest.param({"metadata": {"resourceVersion": "1"}}, 409, id="stale-version"),
    pytest.param({"spec": {"replicas": -1}}, 422, id="negative-replicas"),
])
def test_refusals_change_nothing(fake, patch, status):
    fake.create("namespaces", {"metadata": {"name": "llm"}})
    before = fake.create("deployments.apps", {"metadata": {"name": "chat"}, "spec": {"replicas": 2}},
                         namespace="llm")
    content = exchanges.PATCH if isinstance(patch, list) else exchanges.MERGE
    code, _ = exchanges.sender(fake.client().api_client)(
        "PATCH", "/apis/apps/v1/namespaces/llm/deployments/chat", {}, patch, content)
    assert code == status
    assert fake.get("deployments.apps", "llm", "chat") == before
