"""Reading a custom resource's size path from its CRD (pure part of
cluster/discovery.py); the cluster test proves the write lands there."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scaler.cluster.discovery import KindError, scaled_kind_from_crd
from scaler.decide.kinds import parse_kind

NAME = parse_kind("sizedservers.example.com/v1")
NOW = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def crd(scale: dict | None, version: str = "v1") -> dict:
    subresources = {"status": {}} | ({"scale": scale} if scale is not None else {})
    return {"spec": {"group": "example.com", "versions": [{"name": version, "subresources": subresources}]}}


def test_the_declared_paths_are_read_and_written():
    kind = scaled_kind_from_crd(crd({"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"}),
                                NAME)
    obj = {"spec": {"size": 4, "replicas": 9}, "status": {"size": 3}}
    assert (kind.replicas(obj), kind.ready_replicas(obj)) == (4, 3)
    assert kind.scale_patch(obj, 0, now=NOW) == {"spec": {"size": 0}}
    assert kind.key == "sizedservers.example.com" and kind.name == "sizedservers.example.com/v1"


def test_nested_paths_and_no_status_path():
    kind = scaled_kind_from_crd(crd({"specReplicasPath": ".spec.engine.workers"}), NAME)
    assert kind.scale_patch({}, 2, now=NOW) == {"spec": {"engine": {"workers": 2}}}
    assert kind.ready_path == ("status", "replicas")


@pytest.mark.parametrize(("manifest", "fragment"), [
    pytest.param(crd(None), "sizedservers.example.com/v1: the CRD sizedservers.example.com has no scale subresource",
                 id="no-scale"),
    pytest.param(crd({"specReplicasPath": ".spec.size"}, version="v2"), "has no version v1 (served: v2)",
                 id="other-version"),
    pytest.param(crd({"specReplicasPath": "spec.size"}), "cannot read", id="not-a-path"),
    pytest.param(crd({"specReplicasPath": ".spec.sizes[0]"}), "cannot read", id="array-path"),
])
def test_a_kind_scaler_cannot_size_is_an_error_naming_it(manifest, fragment):
    with pytest.raises(KindError) as raised:
        scaled_kind_from_crd(manifest, NAME)
    assert fragment in str(raised.value)
