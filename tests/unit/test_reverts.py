"""Who set the replicas back (managedFields), and the back-off that follows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scaler.cluster.informers import _slim
from scaler.decide.reverts import (
    backoff_seconds,
    hold_until,
    is_gitops,
    replicas_writer,
    revert_record,
)

REPLICAS = {"f:spec": {"f:replicas": {}}}
IMAGE = {"f:spec": {"f:template": {"f:spec": {}}}}


def managed(*entries) -> dict:
    return {"metadata": {"managedFields": [
        {"manager": manager, "operation": operation, "time": time, "fieldsV1": fields}
        for manager, operation, time, fields in entries]}}


@pytest.mark.parametrize(("obj", "writer"), [
    pytest.param(managed(("kube-controller-manager", "Update", "2026-01-01T00:00:00Z", IMAGE),
                         ("argocd-controller", "Apply", "2026-01-01T00:00:01Z", REPLICAS)),
                 "argocd-controller", id="argo-owns-the-replicas"),
    pytest.param(managed(("argocd-controller", "Apply", "2026-01-01T00:00:01Z", IMAGE),
                         ("kubectl", "Update", "2026-01-01T00:00:05Z", REPLICAS)), "kubectl",
                 id="a-person-scaled-it"),
    pytest.param(managed(("scaler", "Update", "2026-01-01T00:00:09Z", REPLICAS),
                         ("helm-controller", "Apply", "2026-01-01T00:00:01Z", REPLICAS)), "helm-controller",
                 id="shared-names-the-other-writer"),
    pytest.param(managed(("kubectl", "Update", "2026-01-01T00:00:01Z", REPLICAS),
                         ("kustomize-controller", "Apply", "2026-01-01T00:00:05Z", REPLICAS)),
                 "kustomize-controller", id="newest-wins"),
    pytest.param(managed(("kubectl", "Update", "2026-01-01T00:00:01Z", IMAGE)), None, id="nobody-owns-it"),
    pytest.param({"metadata": {}}, None, id="no-managed-fields"),
])
def test_replicas_writer(obj, writer):
    assert replicas_writer(obj) == writer
    assert replicas_writer(_slim(obj)) == writer  # the daemon's cache keeps exactly what this needs


def test_the_cache_keeps_only_the_replica_owners():
    obj = _slim(managed(("a", "Update", "t", IMAGE), ("b", "Apply", "t", {**REPLICAS, "f:metadata": {"x": {}}})))
    assert obj["metadata"]["managedFields"] == [{"manager": "b", "operation": "Apply", "time": "t",
                                                 "fieldsV1": REPLICAS}]


@pytest.mark.parametrize(("manager", "gitops"), [
    ("argocd-controller", True), ("kustomize-controller", True), ("helm-controller", True),
    ("kubectl", False), ("kubectl-edit", False), ("argocd", False), (None, False)])
def test_gitops_managers(manager, gitops):
    assert is_gitops(manager) is gitops


def test_backoff_doubles_and_is_capped():
    assert [backoff_seconds(n, base_seconds=300, max_seconds=3600) for n in (1, 2, 3, 4, 5)] == \
        [300, 600, 1200, 2400, 3600]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    record, _until = revert_record(manager="argocd-controller", reverts=2, now=now, base_seconds=10)
    assert record == {"scaler.io/reverted-by": "argocd-controller", "scaler.io/reverts": "2",
                      "scaler.io/backoff-until": "2026-01-01T00:00:20Z"}


def test_hold_until():
    assert hold_until({}) is None
    assert hold_until({"scaler.io/hold-up-until": "2026-01-01T02:00:00Z"}) == \
        datetime(2026, 1, 1, 2, tzinfo=UTC)
    nxt = {"scaler.io/hold-up-until": "next-window", "scaler.io/hold-up-from": "2026-01-01T00:00:00Z"}
    assert hold_until(nxt) == datetime(2026, 1, 1, 1, tzinfo=UTC)
    edge = datetime(2026, 1, 1, 8, tzinfo=UTC)
    assert hold_until(nxt, next_edge_after=lambda start: edge) == edge
