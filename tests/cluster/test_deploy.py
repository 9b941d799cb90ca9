"""Install the way users do, on the real API server: the plain manifests pass
server-side validation, and the chart's own RBAC is all the daemon needs and
no more. The daemon runs out of cluster as the chart's ServiceAccount, with a
TokenRequest token, the chart's environment and leader election on."""

from __future__ import annotations

import subprocess
import textwrap
import uuid
from pathlib import Path

import cluster as local_cluster
import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from scaler.cluster.kinds import DEPLOYMENT
from scaler.cluster.kube import Forbidden, Kube, Resource
from scaler.decide.annotations import LAST_REPLICAS, PAUSED_BY
from tests.helpers import (
    FAST,
    DaemonProcess,
    eventually,
    gpu_deployment,
    pause_state,
    run_scaler,
    wait_events,
)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "scaler"
MANIFESTS = ROOT / "deploy" / "manifests" / "scaler.yaml"
SECRETS = Resource("", "v1", "secrets")


@pytest.fixture(scope="module")
def binaries() -> Path:
    return local_cluster.binaries()


def _kubectl(binaries: Path, cluster, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(binaries / "kubectl"), "--kubeconfig", str(cluster.kubeconfig), *args],
                          input=stdin, capture_output=True, check=False, text=True, timeout=60)


def _can(binaries: Path, cluster, service_account: str, verb: str, resource: str, namespace: str) -> bool:
    """kubectl auth can-i, asked by the admin on the ServiceAccount's behalf."""
    result = _kubectl(binaries, cluster, "auth", "can-i", verb, resource, "-n", namespace,
                      f"--as=system:serviceaccount:{service_account}")
    return result.stdout.strip() == "yes"


@pytest.fixture
def workload_namespaces(kube):
    """Namespaces for workloads, apart from the one the chart is installed in
    (the daemon never touches its own namespace)."""
    core = client.CoreV1Api(kube)
    created = []

    def make(prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        created.append(name)
        return name
    yield make
    for name in created:
        core.delete_namespace(name, propagation_policy="Background")


class Install:
    """The chart's ServiceAccount and RBAC, rendered by helm for a release in a
    test namespace, applied by the admin; removed (cluster-scoped objects
    included) at the end."""

    def __init__(self, *, binaries: Path, cluster, kube, namespace: str, tmp_path: Path) -> None:
        self.binaries, self.cluster, self.kube, self.namespace = binaries, cluster, kube, namespace
        self.tmp_path = tmp_path
        self.release = namespace  # fullname: "<namespace>-scaler", unique per test
        self.applied: list[dict] = []
        self.policies: list[dict] = []  # the policies ConfigMap, once set_policies applied it

    def render(self, *values: str, show: tuple[str, ...] = ("templates/serviceaccount.yaml",
                                                            "templates/rbac.yaml")) -> list[dict]:
        args = [str(self.binaries / "helm"), "template", self.release, str(CHART), "--namespace", self.namespace,
                *values]
        for template in show:
            args += ["--show-only", template]
        result = subprocess.run(args, capture_output=True, check=False, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    def apply(self, docs: list[dict]) -> None:
        result = _kubectl(self.binaries, self.cluster, "apply", "-f", "-",
                          stdin=yaml.safe_dump_all(docs))
        assert result.returncode == 0, result.stderr
        self.applied = docs

    @property
    def service_account(self) -> str:
        account = next(d for d in self.applied if d["kind"] == "ServiceAccount")
        return account["metadata"]["name"]

    @property
    def who(self) -> str:
        return f"{self.namespace}:{self.service_account}"

    def kubeconfig(self) -> Path:
        """A kubeconfig holding a TokenRequest token of the chart's ServiceAccount."""
        token = client.CoreV1Api(self.kube).create_namespaced_service_account_token(
            self.service_account, self.namespace, client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=["https://kubernetes.default.svc"],
                                               expiration_seconds=3600))).status.token
        path = self.tmp_path / "scaler.kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "scaler",
            "clusters": [{"name": "local", "cluster": {
                "server": self.cluster.apiserver_url,
                "certificate-authority": str(self.cluster.state_dir / "pki" / "ca.crt")}}],
            "users": [{"name": "scaler", "user": {"token": token}}],
            "contexts": [{"name": "scaler", "context": {"cluster": "local", "user": "scaler",
                                                        "namespace": self.namespace}}],
        }))
        return path

    def daemon_env(self, *values: str) -> dict[str, str]:
        """The Deployment's environment as the chart renders it, with what the
        downward API would fill in."""
        deployment = self.render(*values, show=("templates/deployment.yaml",))[0]
        env = {}
        for item in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
            env[item["name"]] = item.get("value")
        env["POD_NAMESPACE"] = self.namespace
        env["POD_NAME"] = f"{self.release}-scaler-0"
        # DaemonProcess passes these as flags; the files and ports are the test's.
        for name in ("SCALER_POLICIES", "SCALER_PORT", "SCALER_PROMETHEUS_URL", "SCALER_LOG_FORMAT"):
            env.pop(name)
        return env

    def set_policies(self, text: str) -> None:
        """The chart's policies ConfigMap, holding `text` as nights.yaml, applied
        (created, or edited as `helm upgrade` would)."""
        values = self.tmp_path / "policies-values.yaml"
        values.write_text(yaml.safe_dump({"policies": {"nights.yaml": text}}))
        docs = self.render("-f", str(values), show=("templates/configmap.yaml",))
        result = _kubectl(self.binaries, self.cluster, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
        assert result.returncode == 0, result.stderr
        self.policies = docs

    def remove(self) -> None:
        applied = self.applied + self.policies
        if applied:
            _kubectl(self.binaries, self.cluster, "delete", "--ignore-not-found", "--wait=false", "-f", "-",
                     stdin=yaml.safe_dump_all(applied))


@pytest.fixture
def install(binaries, cluster, kube, namespace, tmp_path):
    installed = Install(binaries=binaries, cluster=cluster, kube=kube, namespace=namespace, tmp_path=tmp_path)
    yield installed
    installed.remove()


def _nights(*, mode: str, namespaces: list[str] | None = None, namespace_selector: str | None = None) -> str:
    """A window covering the whole day: keep-down pauses now, keep-up resumes now."""
    where = (f"namespace_selector: {namespace_selector}" if namespace_selector
             else f"namespaces: [{', '.join(namespaces or [])}]")
    return textwrap.dedent(f"""
        policies:
          - name: nights
            targets:
              {where}
              selector: tier=gpu
            schedule:
              timezone: UTC
              windows:
                - name: all-day
                  mode: {mode}
                  start: "0 0 * * *"
                  end: "59 23 * * *"
        """)


def _deployment(kube, namespace: str, name: str) -> client.V1Deployment:
    return client.AppsV1Api(kube).read_namespaced_deployment(name, namespace)


def _pause_state(deployment: client.V1Deployment) -> dict:
    return pause_state(deployment.metadata.annotations)


def _denials(daemon: DaemonProcess) -> list[str]:
    return [line for line in daemon.log_text().splitlines()
            if "forbidden" in line.lower() or "HTTP 403" in line or "(403)" in line]


def _until(daemon: DaemonProcess, check, *, timeout_seconds: float = 45):
    """Wait for check, failing at once with the daemon's own words if the API
    server refused it anything (rather than with a timeout)."""
    def allowed_and(check_):
        denials = _denials(daemon)
        assert not denials, "the daemon was refused something the chart should grant:\n" + "\n".join(denials)
        return check_()
    return eventually(lambda: allowed_and(check), timeout_seconds=timeout_seconds)


# The plain manifests


def test_plain_manifests_pass_server_side_validation(binaries, cluster, kube):
    core = client.CoreV1Api(kube)
    created = False
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="scaler")))
        created = True
    except ApiException as error:
        if error.status != 409:
            raise
    try:
        # A server-side dry run does not create the Namespace, so the objects
        # in it need it to exist already.
        result = _kubectl(binaries, cluster, "apply", "--dry-run=server", "-f", str(MANIFESTS))
        assert result.returncode == 0, result.stderr
        applied = {line.split(" ")[0] for line in result.stdout.splitlines()}
        assert applied == {
            "namespace/scaler", "serviceaccount/scaler", "configmap/scaler-policies",
            "clusterrole.rbac.authorization.k8s.io/scaler", "clusterrolebinding.rbac.authorization.k8s.io/scaler",
            "role.rbac.authorization.k8s.io/scaler-leader-election",
            "rolebinding.rbac.authorization.k8s.io/scaler-leader-election",
            "role.rbac.authorization.k8s.io/scaler-policies", "rolebinding.rbac.authorization.k8s.io/scaler-policies",
            # cluster-autoscaler's status ConfigMap in kube-system, read to name what holds a node
            "role.rbac.authorization.k8s.io/scaler-autoscaler-status",
            "rolebinding.rbac.authorization.k8s.io/scaler-autoscaler-status",
            "service/scaler", "deployment.apps/scaler", "poddisruptionbudget.policy/scaler"}, result.stdout
    finally:
        if created:
            core.delete_namespace("scaler", propagation_policy="Background")


# The chart's RBAC, end to end


def test_chart_rbac_is_enough_for_a_full_pause_and_resume_and_no_more(
        install, kube, cluster, binaries, workload_namespaces, daemons, tmp_path):
    workloads = workload_namespaces("gpu")
    install.apply(install.render())
    kubeconfig = install.kubeconfig()
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(workloads, gpu_deployment("llm", replicas=3, gpus=0, labels={"tier": "gpu"}))
    install.set_policies(_nights(mode="down", namespaces=[workloads]))
    env = install.daemon_env("--set", "dryRun=false")
    assert env["SCALER_LEADER_ELECTION"] == "true" and env["SCALER_DRY_RUN"] == "false"
    # The daemon reads the chart's ConfigMap through the API; the files it is given are never read.
    assert env["SCALER_POLICY_CONFIGMAP"] == install.policies[0]["metadata"]["name"]
    daemon = daemons(tmp_path / "not-read.yaml", *FAST, env={**env, "KUBECONFIG": str(kubeconfig)})

    _until(daemon, lambda: _deployment(kube, workloads, "llm").spec.replicas == 0)
    annotations = _pause_state(_deployment(kube, workloads, "llm"))
    assert annotations[LAST_REPLICAS] == "3" and annotations[PAUSED_BY] == "policy/nights"
    assert "from 3 replicas" in wait_events(kube, workloads, "llm", "ScaledToZero")[0].message
    def lease():
        return client.CoordinationV1Api(kube).read_namespaced_lease(env["SCALER_LEASE_NAME"], install.namespace)
    first = lease().spec
    assert first.holder_identity == env["POD_NAME"]
    # Renewed, so `update` on the Lease is granted.
    _until(daemon, lambda: lease().spec.renew_time > first.renew_time, timeout_seconds=15)

    install.set_policies(_nights(mode="up", namespaces=[workloads]))  # hot reload: the window turns keep-up
    _until(daemon, lambda: _deployment(kube, workloads, "llm").spec.replicas == 3)
    assert _pause_state(_deployment(kube, workloads, "llm")) == {}
    assert daemon.stop() == 0  # hands the Lease back: get and patch on it
    assert _denials(daemon) == []

    # The policies ConfigMap by name, and no other ConfigMap.
    configmap = install.policies[0]["metadata"]["name"]
    assert _can(binaries, cluster, install.who, "get", f"configmaps/{configmap}", install.namespace)
    assert not _can(binaries, cluster, install.who, "get", "configmaps/other", install.namespace)
    assert not _can(binaries, cluster, install.who, "list", "configmaps", install.namespace)

    # The same identity may not read Secrets, here or anywhere.
    assert not _can(binaries, cluster, install.who, "get", "secrets", workloads)
    assert not _can(binaries, cluster, install.who, "list", "secrets", install.namespace)
    with pytest.raises(Forbidden, match=f"forbidden: cannot get secrets/any in namespace {workloads}"):
        Kube.from_environment(kubeconfig=str(kubeconfig)).get(SECRETS, workloads, "any")


def test_restricted_rbac_acts_in_the_listed_namespaces_and_is_refused_outside(
        install, kube, cluster, binaries, workload_namespaces, daemons, tmp_path):
    inside, outside = workload_namespaces("in"), workload_namespaces("out")
    restricted = ("--set", f"watchNamespaces={{{inside}}}", "--set", "dryRun=false")
    docs = install.render(*restricted)
    assert not [d for d in docs if d["kind"].startswith("Cluster")]
    install.apply(docs)
    kubeconfig = install.kubeconfig()
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    label = f"scaler-test={install.namespace}"
    for namespace in (inside, outside):
        core.patch_namespace(namespace, {"metadata": {"labels": dict([label.split("=")])}})
        apps.create_namespaced_deployment(namespace, gpu_deployment("llm", replicas=2, gpus=0,
                                                                    labels={"tier": "gpu"}))
    # The policy matches both namespaces by label, so the daemon has to read
    # the listed namespace's labels (a GET, granted by name in its Role).
    install.set_policies(_nights(mode="down", namespace_selector=label))
    env = install.daemon_env(*restricted)
    assert env["SCALER_NAMESPACES"] == inside
    daemon = daemons(tmp_path / "not-read.yaml", *FAST, env={**env, "KUBECONFIG": str(kubeconfig)})

    _until(daemon, lambda: _deployment(kube, inside, "llm").spec.replicas == 0)
    assert _pause_state(_deployment(kube, inside, "llm"))[LAST_REPLICAS] == "2"
    install.set_policies(_nights(mode="up", namespace_selector=label))
    _until(daemon, lambda: _deployment(kube, inside, "llm").spec.replicas == 2)
    assert daemon.stop() == 0
    assert _denials(daemon) == []
    untouched = _deployment(kube, outside, "llm")
    assert untouched.spec.replicas == 2 and _pause_state(untouched) == {}

    # Outside the list the identity may not even look, let alone write.
    assert _can(binaries, cluster, install.who, "patch", "deployments.apps", inside)
    assert not _can(binaries, cluster, install.who, "patch", "deployments.apps", outside)
    assert not _can(binaries, cluster, install.who, "list", "namespaces", inside)
    assert _can(binaries, cluster, install.who, "get", f"namespaces/{inside}", inside)
    assert not _can(binaries, cluster, install.who, "get", f"namespaces/{outside}", outside)
    token = Kube.from_environment(kubeconfig=str(kubeconfig))
    with pytest.raises(Forbidden, match=f"forbidden: cannot patch deployments.apps/llm in namespace {outside}"):
        token.patch(DEPLOYMENT.resource, outside, "llm", {"spec": {"replicas": 0}})
    assert _deployment(kube, outside, "llm").spec.replicas == 2


def _without(docs: list[dict], *, group: str, resource: str, verb: str) -> list[dict]:
    """The rendered RBAC with one verb taken away from one resource."""
    edited = []
    for doc in docs:
        if doc["kind"] in ("ClusterRole", "Role"):
            rules = []
            for rule in doc["rules"]:
                if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]:
                    others = [r for r in rule["resources"] if r != resource]
                    if others:
                        rules.append({**rule, "resources": others})
                    rules.append({**rule, "resources": [resource], "verbs": [v for v in rule["verbs"] if v != verb]})
                else:
                    rules.append(rule)
            edited.append({**doc, "rules": [r for r in rules if r["verbs"]]})
        else:
            edited.append(doc)
    return edited


@pytest.mark.parametrize("group, resource, verb", [
    pytest.param("apps", "deployments", "patch", id="patch-deployments"),
    pytest.param("apps", "deployments", "list", id="list-deployments"),
    pytest.param("", "events", "create", id="create-events"),
])
def test_one_verb_less_fails_naming_the_verb(install, kube, cluster, binaries, workload_namespaces,
                                             group, resource, verb):
    workloads = workload_namespaces("gpu")
    install.apply(_without(install.render(), group=group, resource=resource, verb=verb))
    qualified = f"{resource}.{group}" if group else resource
    eventually(lambda: not _can(binaries, cluster, install.who, verb, qualified, workloads), timeout_seconds=10)
    client.AppsV1Api(kube).create_namespaced_deployment(workloads, gpu_deployment("web", replicas=2, gpus=0))

    result = run_scaler("pause", "web", "-n", workloads, "--kind", "Deployment", "-o", "json",
                        kubeconfig=install.kubeconfig())

    replicas = _deployment(kube, workloads, "web").spec.replicas
    if verb == "list":  # nothing can be selected: the command fails before any write
        assert result.returncode == 1
        assert f"error: forbidden: cannot list deployments.apps in namespace {workloads}" in result.stderr
        assert replicas == 2
    elif verb == "patch":
        assert result.returncode == 1
        assert (f"failed: Deployment/{workloads}/web: forbidden: cannot patch deployments.apps/web "
                f"in namespace {workloads}") in result.stderr
        assert replicas == 2
    else:  # the pause lands; the missing Event is a warning on the row, not a failure
        assert result.returncode == 0, result.stderr
        row = yaml.safe_load(result.stdout)["results"][0]
        assert row["result"] == "changed" and replicas == 0
        assert row["warnings"] == [f"Event not recorded: forbidden: cannot create events in namespace {workloads}"]
