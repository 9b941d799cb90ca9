"""The watch caches against the real API server."""

from __future__ import annotations

import pytest
from kubernetes import client

from scaler.cluster.informers import Informer
from scaler.cluster.kinds import DEPLOYMENT
from scaler.cluster.kube import Expired, Kube
from tests.helpers import eventually, gpu_deployment


def test_cache_follows_creates_updates_and_deletes(kube, namespace, cluster):
    informer = Informer(Kube.from_environment(kubeconfig=str(cluster.kubeconfig)), DEPLOYMENT.resource,
                        namespace=namespace, slim=DEPLOYMENT.slim).start()  # as the daemon's view builds it
    try:
        assert informer.synced.wait(30)
        apps = client.AppsV1Api(kube)
        apps.create_namespaced_deployment(namespace, gpu_deployment("a", replicas=2, gpus=0))
        eventually(lambda: informer.get(namespace, "a") is not None, timeout_seconds=10)
        apps.patch_namespaced_deployment_scale("a", namespace, {"spec": {"replicas": 4}})
        # The controller-manager writes the status (its own managedFields
        # entry) when it gets to it: a busy machine may take a while.
        full = eventually(lambda: (read := apps.read_namespaced_deployment("a", namespace)).spec.replicas == 4
                          and "kube-controller-manager" in {e.manager for e in read.metadata.managed_fields}
                          and read, timeout_seconds=30)
        version = int(full.metadata.resource_version)
        eventually(lambda: int(informer.get(namespace, "a")["metadata"]["resourceVersion"]) >= version,
                   timeout_seconds=10)
        # Only who owns spec.replicas is kept (reverts.replicas_writer reads it), reduced to that field:
        # the controller-manager's status entry is dropped.
        cached = informer.get(namespace, "a")["metadata"]["managedFields"]
        assert cached and {(e["manager"], e["operation"]) for e in cached} == {("OpenAPI-Generator", "Update")}
        assert all(e["fieldsV1"] == {"f:spec": {"f:replicas": {}}} for e in cached)
        apps.delete_namespaced_deployment("a", namespace)
        eventually(lambda: informer.get(namespace, "a") is None, timeout_seconds=10)
    finally:
        informer.stop()


def test_a_watch_from_a_compacted_resource_version_is_gone(namespace, cluster):
    """The API server answers a watch from a resourceVersion it no longer
    has with 410 Gone; the informer must treat that as 're-list', which
    its run loop does on Expired. (Version 1 is compacted once the session's
    cluster is older than the API server's compaction interval; run alone on
    a fresh cluster this test cannot tell.)"""
    informer = Informer(Kube.from_environment(kubeconfig=str(cluster.kubeconfig)), DEPLOYMENT.resource,
                        namespace=namespace)
    with pytest.raises(Expired):
        informer._watch("1")
