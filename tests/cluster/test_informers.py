"""The watch caches against the real API server."""

from __future__ import annotations

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


def test_a_watch_from_a_compacted_resource_version_is_gone(kube, namespace, cluster):
    """The API server answers a watch from a resourceVersion it no longer
    has with 410 Gone; the informer must treat that as 're-list', which
    its run loop does on Expired. The API server's watch cache, not etcd,
    answers it: a cache that has dropped no event yet still serves version 1
    (a fresh cluster's does), so Deployments are changed here until it has
    (it keeps at least 75 s of events; at once in a suite that ran a while)."""
    informer = Informer(Kube.from_environment(kubeconfig=str(cluster.kubeconfig)), DEPLOYMENT.resource,
                        namespace=namespace, watch_timeout_seconds=1)  # a watch still served ends in a second
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, gpu_deployment("churn", replicas=1, gpus=0))
    changes = iter(range(1_000_000))

    def gone() -> bool:
        for _ in range(5):  # enough that the cache fills before its 75 s pass: then age alone decides
            apps.patch_namespaced_deployment("churn", namespace, {"metadata": {"annotations": {
                "test/change": str(next(changes))}}})
        try:
            informer._watch("1")
        except Expired:
            return True
        return False
    assert eventually(gone, timeout_seconds=240, interval_seconds=0.5)
