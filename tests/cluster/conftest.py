"""The cluster tier's fixtures: the real local cluster, started once per
session through the same code as deploy/local/up."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "deploy" / "local"))

import cluster as local_cluster

from tests.helpers import DaemonProcess, eventually


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """The real local cluster, started once per test session, and stopped at
    the end. SCALER_TEST_STATE_DIR reuses (and keeps) a cluster a developer
    already started."""
    reuse = os.environ.get("SCALER_TEST_STATE_DIR")
    state_dir = Path(reuse) if reuse else tmp_path_factory.mktemp("cluster")
    started = local_cluster.up(state_dir)
    yield started
    if not reuse:
        local_cluster.down(state_dir)


@pytest.fixture(scope="module")
def karpenter_cluster(tmp_path_factory, request):
    """A cluster of its own with Karpenter (deploy/local/up --karpenter), for
    one module: its tests' nodes come and go without touching the session's
    cluster, and with -n 2 --dist loadfile two such modules run side by side."""
    state_dir = tmp_path_factory.mktemp(f"{request.module.__name__.rsplit('.', 1)[-1]}-cluster")
    try:
        yield local_cluster.up(state_dir, karpenter=True)
    finally:
        local_cluster.down(state_dir)


@pytest.fixture(scope="session")
def kube(cluster):
    from kubernetes import config

    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture
def namespace(kube, request):
    from kubernetes import client

    core = client.CoreV1Api(kube)
    name = f"t-{request.node.name[:40].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in name)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # The default ServiceAccount is created asynchronously; pods need it.
    eventually(lambda: core.read_namespaced_service_account("default", name), timeout_seconds=30)
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def daemons(cluster, tmp_path):
    """Start `scaler run` subprocesses against the cluster; all are killed at
    the end of the test (a test that wants a clean exit stops them itself)."""
    started: list[DaemonProcess] = []

    def start(policies, *args: str, name: str | None = None, env: dict | None = None) -> DaemonProcess:
        log = tmp_path / f"{name or f'daemon-{len(started)}'}.log"
        daemon = DaemonProcess(cluster, policies, log, *args, env=env).start()
        started.append(daemon)
        return daemon
    yield start
    for daemon in started:
        daemon.kill()
