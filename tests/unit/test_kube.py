"""scaler's API client (cluster/kube.py) against the fake API server: every
failure typed by its HTTP status, never by its text; throttling waited out
as the server asks; a server that never answers is unreachable in bounded
time."""

from __future__ import annotations

import threading

import pytest

from scaler.cluster import kube as k
from scaler.cluster.kinds import DEPLOYMENT


@pytest.fixture
def deployment(fake):
    fake.create("namespaces", {"metadata": {"name": "llm"}})
    fake.create("deployments.apps", {"metadata": {"name": "chat"}, "spec": {"replicas": 2}}, namespace="llm")


@pytest.mark.parametrize(("status", "error", "says"), [
    (401, k.Unauthorized, "unauthorized"), (403, k.Forbidden, "forbidden: cannot get"),
    (404, k.NotFound, "not found"), (409, k.Conflict, "409"), (410, k.Expired, "410"),
    (422, k.Invalid, "422"), (500, k.ServerError, "HTTP 500"), (503, k.ServerError, "HTTP 503"),
    (504, k.ServerError, "HTTP 504"), (418, k.KubeError, "HTTP 418"),
])
def test_every_failure_is_typed_by_its_status(fake, deployment, status, error, says):
    fake.fail(method="GET", path="/deployments/chat$", status=status)
    with pytest.raises(error) as caught:
        fake.client().get(DEPLOYMENT.resource, "llm", "chat")
    assert type(caught.value) is error and caught.value.status == status and says in str(caught.value)


def test_denials_share_a_type():
    assert issubclass(k.Unauthorized, k.Denied) and issubclass(k.Forbidden, k.Denied)


def test_throttling_past_every_retry_is_throttled(fake, deployment):
    fake.fail(method="GET", status=429, retry_after=0, times=None)
    with pytest.raises(k.Throttled):
        fake.client().get(DEPLOYMENT.resource, "llm", "chat")
    assert fake.count("GET") == k.Kube.THROTTLE_RETRIES + 1


def test_a_hung_server_is_unreachable_within_the_timeout(fake, deployment):
    hang = threading.Event()
    fake.fail(method="GET", hang=hang)
    try:
        with pytest.raises(k.Unreachable) as caught:
            fake.client().request("get", "GET", DEPLOYMENT.resource.path("llm", "chat"), resource_text="chat",
                                  timeout_seconds=0.5)
        assert fake.url in str(caught.value)
    finally:
        hang.set()


def test_a_dropped_connection_is_unreachable(fake, deployment):
    fake.fail(method="GET", reset=True, times=None)
    with pytest.raises(k.Unreachable):
        fake.client().get(DEPLOYMENT.resource, "llm", "chat")
