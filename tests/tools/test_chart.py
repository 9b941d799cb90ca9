"""The Helm chart, linted and rendered by the real helm (built by
deploy/local/build). No cluster: tests/cluster/test_deploy.py applies what
these render."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import cluster as local_cluster
import pytest
import yaml

from scaler.decide.loading import load_policies
from scaler.run.evaluating import kinds_of
from scaler.run.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "scaler"


@pytest.fixture(scope="module")
def helm() -> str:
    return str(local_cluster.binaries() / "helm")


def _helm(helm: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([helm, *args], capture_output=True, check=False, text=True, timeout=60)


def render(helm: str, *args: str, hooks: bool = False) -> list[dict]:
    """What `helm install` creates; with hooks, also what runs at uninstall."""
    result = _helm(helm, "template", "scaler", str(CHART), "--namespace", "scaler", *args,
                   *(() if hooks else ("--no-hooks",)))
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def only(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def env_of(docs: list[dict]) -> dict[str, str]:
    container = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "<from the pod>") for e in container["env"]}


def grants(role: dict) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) triples; resourceNames-limited rules are marked."""
    out = set()
    for rule in role["rules"]:
        suffix = f"[{','.join(rule['resourceNames'])}]" if rule.get("resourceNames") else ""
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    out.add((group, resource + suffix, verb))
    return out


# What scaler/kube.py requests, verb by verb (docs/deploying.md explains each).
WORKLOAD_GRANTS = {
    *{("apps", r, v) for r in ("deployments", "statefulsets") for v in ("get", "list", "watch", "patch")},
    *{("serving.kserve.io", "inferenceservices", v) for v in ("get", "list", "watch", "patch")},
    *{(group, resource, v) for group, resource in (("batch", "jobs"), ("jobset.x-k8s.io", "jobsets"),
                                                   ("ray.io", "rayclusters"), ("ray.io", "rayjobs"),
                                                   ("kubeflow.org", "notebooks"))
      for v in ("get", "list", "watch", "patch")},
    ("keda.sh", "scaledobjects", "list"), ("keda.sh", "scaledobjects", "patch"),
    # An Event per action; a new leader lists scaler's Events to post those owed.
    ("", "events", "create"), ("", "events", "list"),
    ("", "pods", "list"),  # when a start's pods became Ready (its warm-up)
}
# What the node follower reads (docs/nodes.md): nodes watched, PDBs and Karpenter's NodePools listed; the
# pods on a node and its Events through the pods and events lists above.
NODE_GRANTS = {("", "nodes", "list"), ("", "nodes", "watch"), ("policy", "poddisruptionbudgets", "list"),
               ("karpenter.sh", "nodepools", "list")}
AUTOSCALER_STATUS_GRANTS = {("", "configmaps[cluster-autoscaler-status]", "get")}
LEASE_GRANTS = {("coordination.k8s.io", "leases", "create"),
                *{("coordination.k8s.io", "leases[scaler]", v) for v in ("get", "update", "patch")}}


@pytest.mark.parametrize("values", [
    pytest.param([], id="defaults"),
    pytest.param(["--set", "watchNamespaces={team-a,team-b}", "--set", "dryRun=false"], id="restricted"),
    pytest.param(["--set", "serviceMonitor.enabled=true", "--set", "namespace.create=true",
                  "--set", "pushWake.enabled=true"], id="everything-on"),
    pytest.param(["--set", "pushWake.enabled=true", "--set", "pushWake.auth=secret",
                  "--set", "pushWake.secret.name=gateway"], id="push-wake-secret"),
])
def test_lint_passes(helm, values):
    result = _helm(helm, "lint", "--strict", str(CHART), "--namespace", "scaler", *values)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_default_render_is_the_objects_users_get(helm):
    docs = render(helm)
    assert sorted(d["kind"] for d in docs) == sorted([
        "ServiceAccount", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Role",
        "RoleBinding", "Role", "RoleBinding", "Deployment", "Service", "PodDisruptionBudget"])
    assert only(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert only(docs, "Deployment")["spec"]["replicas"] == 2
    service = only(docs, "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]


def test_dry_run_is_on_by_default_and_one_value_turns_it_off(helm):
    assert env_of(render(helm))["SCALER_DRY_RUN"] == "true"
    assert env_of(render(helm, "--set", "dryRun=false"))["SCALER_DRY_RUN"] == "false"


def test_a_misspelled_value_is_refused_not_ignored(helm):
    result = _helm(helm, "template", "scaler", str(CHART), "--set", "dryrun=false")
    assert result.returncode != 0
    assert "dryrun" in result.stderr and "additional properties" in result.stderr.lower()


def test_every_variable_the_chart_sets_is_a_daemon_setting_and_parses(helm, monkeypatch):
    env = env_of(render(helm, "--set", "watchNamespaces={team-a,team-b}",
                        "--set", "prometheus.url=http://prom.monitoring:9090"))
    assert env["POD_NAMESPACE"] == env["POD_NAME"] == "<from the pod>"
    scaler_env = {k: v for k, v in env.items() if k.startswith("SCALER_")}
    unknown = [k for k in scaler_env if k.removeprefix("SCALER_").lower() not in Settings.model_fields]
    assert not unknown, f"the daemon has no such settings: {unknown}"
    for key, value in scaler_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("POD_NAMESPACE", "scaler")
    settings = Settings()
    assert settings.dry_run is True and settings.leader_election is True
    assert settings.lease_name == "scaler" and settings.effective_lease_namespace == "scaler"
    assert settings.namespaces == ["team-a", "team-b"]
    assert settings.policies == [Path("/etc/scaler/policies")]
    # The daemon reads the very ConfigMap the chart renders, by name.
    configmap = only(render(helm), "ConfigMap")["metadata"]
    assert settings.policy_configmap == configmap["name"] and configmap["namespace"] == settings.own_namespace
    assert settings.prometheus_url == "http://prom.monitoring:9090"
    assert settings.port == 8080 and settings.log_format == "json"


def test_cluster_mode_grants_exactly_what_the_daemon_uses(helm):
    docs = render(helm)
    assert grants(only(docs, "ClusterRole")) == WORKLOAD_GRANTS | NODE_GRANTS | {("", "namespaces", "list"),
                                                                                 ("", "namespaces", "watch")}
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Role"}
    assert grants(roles["scaler-leader-election"]) == LEASE_GRANTS
    assert grants(roles["scaler-policies"]) == {("", "configmaps[scaler-policies]", "get")}
    # cluster-autoscaler's status, in its own namespace, that ConfigMap only.
    assert grants(roles["scaler-autoscaler-status"]) == AUTOSCALER_STATUS_GRANTS
    assert {name: role["metadata"]["namespace"] for name, role in roles.items()} == {
        "scaler-leader-election": "scaler", "scaler-policies": "scaler", "scaler-autoscaler-status": "kube-system"}
    assert env_of(docs)["SCALER_NODE_FOLLOW_INTERVAL_SECONDS"] == "15"
    binding = only(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "scaler", "namespace": "scaler"}]


def test_restricted_mode_renders_a_role_per_namespace_and_nothing_cluster_wide(helm):
    docs = render(helm, "--set", "watchNamespaces={team-a,team-b}")
    assert not [d for d in docs if d["kind"].startswith("Cluster")]
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in docs if d["kind"] == "Role"}
    assert set(roles) == {("team-a", "scaler"), ("team-b", "scaler"), ("scaler", "scaler-leader-election"),
                          ("scaler", "scaler-policies")}
    for namespace in ("team-a", "team-b"):
        # Its own namespace's labels by GET (for namespace_selector), no list or watch of namespaces.
        assert grants(roles[(namespace, "scaler")]) == WORKLOAD_GRANTS | {("", f"namespaces[{namespace}]", "get")}
        binding = only([d for d in docs if d["metadata"].get("namespace") == namespace], "RoleBinding")
        assert binding["roleRef"]["name"] == "scaler"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "scaler", "namespace": "scaler"}]
    assert env_of(docs)["SCALER_NAMESPACES"] == "team-a,team-b"
    assert env_of(docs)["SCALER_NODE_FOLLOW_INTERVAL_SECONDS"] == "0"  # following reads cluster-wide: off


def test_restricted_mode_follows_nodes_only_when_asked_with_a_read_only_cluster_role(helm):
    docs = render(helm, "--set", "watchNamespaces={team-a}", "--set", "nodeFollowing.enabled=true",
                  "--set", "nodeFollowing.clusterAutoscalerStatus=autoscaling/ca-status")
    assert grants(only(docs, "ClusterRole", "scaler-nodes")) == NODE_GRANTS | {("", "pods", "list"),
                                                                               ("", "events", "list")}
    assert only(docs, "ClusterRoleBinding", "scaler-nodes")["roleRef"]["name"] == "scaler-nodes"
    status = only(docs, "Role", "scaler-autoscaler-status")
    assert status["metadata"]["namespace"] == "autoscaling"
    assert grants(status) == {("", "configmaps[ca-status]", "get")}
    env = env_of(docs)
    assert (env["SCALER_NODE_FOLLOW_INTERVAL_SECONDS"], env["SCALER_CLUSTER_AUTOSCALER_STATUS"]) == (
        "15", "autoscaling/ca-status")


def test_node_following_off_grants_nothing_for_it(helm):
    docs = render(helm, "--set", "nodeFollowing.enabled=false")
    assert not grants(only(docs, "ClusterRole")) & NODE_GRANTS
    assert [d for d in docs if d["metadata"]["name"] == "scaler-autoscaler-status"] == []
    assert env_of(docs)["SCALER_NODE_FOLLOW_INTERVAL_SECONDS"] == "0"


def test_extra_scalable_resources_add_get_list_watch_patch_and_their_crds(helm):
    """And a GET of each one's own CRD, by name: a custom resource is scaled
    where its /scale subresource says (specReplicasPath)."""
    docs = render(helm, "--set", "extraScalableResources[0].apiGroup=serving.example.com",
                  "--set", "extraScalableResources[0].resources={vllmservers}")
    assert grants(only(docs, "ClusterRole")) - WORKLOAD_GRANTS - NODE_GRANTS - {("", "namespaces", "list"),
                                                                                ("", "namespaces", "watch")} == {
        ("serving.example.com", "vllmservers", verb) for verb in ("get", "list", "watch", "patch")} | {
        ("apiextensions.k8s.io", "customresourcedefinitions[vllmservers.serving.example.com]", "get")}


def test_restricted_mode_reads_the_extra_crds_and_nothing_else_cluster_wide(helm):
    docs = render(helm, "--set", "watchNamespaces={team-a}",
                  "--set", "extraScalableResources[0].apiGroup=serving.example.com",
                  "--set", "extraScalableResources[0].resources={vllmservers}")
    assert grants(only(docs, "ClusterRole")) == {
        ("apiextensions.k8s.io", "customresourcedefinitions[vllmservers.serving.example.com]", "get")}
    assert only(docs, "ClusterRoleBinding")["roleRef"]["name"] == "scaler-crds"


def test_pod_runs_unprivileged_with_probes_and_limits(helm):
    pod = only(render(helm), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/scaler/policies"]["readOnly"] is True
    assert "/tmp" in mounts


def test_example_policies_are_valid_and_covered_by_the_default_rbac(helm, tmp_path):
    data = only(render(helm), "ConfigMap")["data"]
    assert sorted(data) == ["batch-workers.yaml", "business-hours.yaml", "office-hours.yaml", "weekend-shutdown.yaml"]
    for name, text in data.items():
        (tmp_path / name).write_text(text)
    policies = load_policies([tmp_path])
    allowed = grants(only(render(helm), "ClusterRole"))
    for kind in kinds_of(policies):
        for verb in ("get", "list", "watch", "patch"):
            assert (kind.resource.group, kind.resource.plural, verb) in allowed, (kind.name, verb)


def test_policies_value_replaces_the_examples(helm, tmp_path):
    nights = tmp_path / "nights.yaml"
    nights.write_text("policies:\n  - name: nights\n    targets: {namespaces: [llm]}\n")
    docs = render(helm, "--set-file", f"policies.nights\\.yaml={nights}")
    assert only(docs, "ConfigMap")["data"] == {"nights.yaml": nights.read_text()}


def test_an_icalendar_file_is_a_key_beside_the_policies(helm, tmp_path):
    """A calendar's {file: offsites.ics} is another key of the policies' ConfigMap."""
    office = tmp_path / "office.yaml"
    office.write_text("calendars:\n  o: {ical: {file: offsites.ics}}\npolicies:\n  - name: office\n")
    offsites = tmp_path / "offsites.ics"
    offsites.write_text("BEGIN:VCALENDAR\nEND:VCALENDAR\n")
    docs = render(helm, "--set-file", f"policies.office\\.yaml={office}", "--set-file",
                  f"policies.offsites\\.ics={offsites}")
    assert sorted(only(docs, "ConfigMap")["data"]) == ["office.yaml", "offsites.ics"]


def test_a_policy_key_the_daemon_would_not_read_is_refused(helm):
    result = _helm(helm, "template", "scaler", str(CHART), "--set", "policies.nights=x")
    assert result.returncode != 0
    assert "nights" in result.stderr


def test_more_replicas_without_leader_election_are_refused(helm):
    result = _helm(helm, "template", "scaler", str(CHART), "--set", "leaderElection.enabled=false")
    assert result.returncode != 0
    assert "replicaCount > 1 needs leaderElection.enabled=true" in result.stderr
    docs = render(helm, "--set", "leaderElection.enabled=false", "--set", "replicaCount=1")
    assert env_of(docs)["SCALER_LEADER_ELECTION"] == "false"
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    # No Lease grant.
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Role"] == ["scaler-autoscaler-status",
                                                                            "scaler-policies"]


def test_service_monitor_is_off_by_default_and_scrapes_metrics_when_on(helm):
    assert not [d for d in render(helm) if d["kind"] == "ServiceMonitor"]
    monitor = only(render(helm, "--set", "serviceMonitor.enabled=true"), "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_plain_manifests_and_example_policies_are_in_sync_with_the_chart(helm):
    result = subprocess.run([str(ROOT / "deploy" / "render"), "--check"], capture_output=True, check=False, text=True,
                            timeout=120, env={**os.environ, "HELM": helm})
    assert result.returncode == 0, result.stderr


def test_uninstall_hook_stops_the_daemon_before_its_rbac_goes_with_only_what_it_needs(helm):
    """tests/cluster/test_real_node.py shows it working on real pods."""
    docs = [d for d in render(helm, hooks=True) if "helm.sh/hook" in d["metadata"].get("annotations", {})]
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "Job", "Role", "RoleBinding", "ServiceAccount"]
    for doc in docs:
        annotations = doc["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-delete"
        assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
        # Its RBAC and script exist before its Job starts.
        assert int(annotations["helm.sh/hook-weight"]) == (0 if doc["kind"] == "Job" else -1)
    assert grants(only(docs, "Role")) == {("apps", "deployments/scale[scaler]", "patch"), ("", "pods", "list"),
                                          ("coordination.k8s.io", "leases[scaler]", "delete")}
    job = only(docs, "Job")["spec"]["template"]
    daemon = only(render(helm), "Deployment")["spec"]
    assert job["spec"]["serviceAccountName"] == "scaler-uninstall"
    assert job["spec"]["containers"][0]["image"] == daemon["template"]["spec"]["containers"][0]["image"]
    assert job["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert job["spec"]["securityContext"]["runAsNonRoot"] is True
    # Its pod is not one of the daemon's, and it waits for exactly those.
    selector = daemon["selector"]["matchLabels"]
    assert not selector.items() <= job["metadata"]["labels"].items()
    env = {e["name"]: e["value"] for e in job["spec"]["containers"][0]["env"]}
    assert env["SELECTOR"] == ",".join(f"{k}={v}" for k, v in selector.items())
    assert env["LEASE"] == "scaler" and env["DEPLOYMENT"] == "scaler"
    assert "uninstall.py" in only(docs, "ConfigMap")["data"]


def test_no_uninstall_hook_without_leader_election(helm):
    docs = render(helm, "--set", "replicaCount=1", "--set", "leaderElection.enabled=false", hooks=True)
    assert not [d for d in docs if d["kind"] == "Job"]


PUSH_WAKE_REVIEWS = {("authentication.k8s.io", "tokenreviews", "create"),
                     ("authorization.k8s.io", "subjectaccessreviews", "create")}


def test_the_push_wake_is_off_by_default_with_no_grant_for_it(helm):
    docs = render(helm)
    assert not [d for d in docs if d["metadata"]["name"].endswith("push-wake")]
    assert not [k for k in env_of(docs) if k.startswith("SCALER_PUSH_WAKE")]


def test_the_push_wake_with_tokens_may_review_them_and_find_the_leader_and_nothing_more(helm, monkeypatch):
    """Token mode: TokenReview and SubjectAccessReview (cluster-scoped, as
    system:auth-delegator grants them), and a standby's GET of the leader's
    pod in the release namespace; its settings parse."""
    docs = render(helm, "--set", "pushWake.enabled=true", "--set", "pushWake.audiences={scaler,gateway}",
                  "--set", "watchNamespaces={team-a}")
    role = only(docs, "ClusterRole", "scaler-push-wake")
    assert grants(role) == PUSH_WAKE_REVIEWS
    assert only(docs, "ClusterRoleBinding", "scaler-push-wake")["roleRef"]["name"] == "scaler-push-wake"
    pods = only(docs, "Role", "scaler-push-wake")
    assert grants(pods) == {("", "pods", "get")} and pods["metadata"]["namespace"] == "scaler"
    assert only(docs, "RoleBinding", "scaler-push-wake")["subjects"] == [
        {"kind": "ServiceAccount", "name": "scaler", "namespace": "scaler"}]
    env = env_of(docs)
    for key, value in env.items():
        if key.startswith("SCALER_"):
            monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.push_wake is True and settings.push_wake_auth == "token"
    assert settings.push_wake_audiences == ["scaler", "gateway"] and settings.push_wake_verb == "patch"
    assert "SCALER_PUSH_WAKE_SECRET_FILE" not in env


def test_the_push_wake_with_a_shared_secret_mounts_it_and_reviews_nothing(helm, monkeypatch):
    docs = render(helm, "--set", "pushWake.enabled=true", "--set", "pushWake.auth=secret",
                  "--set", "pushWake.secret.name=gateway-wake", "--set", "pushWake.secret.key=token")
    assert not [d for d in docs if d["kind"].startswith("Cluster") and d["metadata"]["name"].endswith("push-wake")]
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "push-wake-secret"]
    assert volume["secret"] == {"secretName": "gateway-wake", "items": [{"key": "token", "path": "token"}]}
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "push-wake-secret"]
    assert mount == {"name": "push-wake-secret", "mountPath": "/etc/scaler/push-wake", "readOnly": True}
    env = env_of(docs)
    assert env["SCALER_PUSH_WAKE_AUTH"] == "secret"
    assert env["SCALER_PUSH_WAKE_SECRET_FILE"] == "/etc/scaler/push-wake/token"
    for key, value in env.items():
        if key.startswith("SCALER_"):
            monkeypatch.setenv(key, value)
    assert Settings().push_wake_secret_file == Path("/etc/scaler/push-wake/token")
    result = _helm(helm, "template", "scaler", str(CHART), "--set", "pushWake.enabled=true",
                   "--set", "pushWake.auth=secret")
    assert result.returncode != 0 and "pushWake.secret.name is required" in result.stderr


def test_prices_reach_the_daemon_as_its_price_settings_and_a_label_it_cannot_price_by_is_refused(
        helm, monkeypatch):
    assert not {"SCALER_GPU_HOUR_PRICE", "SCALER_GPU_HOUR_PRICES"} & set(env_of(render(helm)))  # none by default
    env = env_of(render(helm, "--set-json", "savings.gpuHourPrice=2.5", "--set-json",
                        'savings.gpuHourPrices={"node.kubernetes.io/instance-type": {"p4d.24xlarge": 4.1}}'))
    for key, value in env.items():
        if key.startswith("SCALER_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("POD_NAMESPACE", "scaler")
    prices = Settings().prices()
    assert prices.default == 2.5
    assert dict(prices.by_label) == {"node.kubernetes.io/instance-type": {"p4d.24xlarge": 4.1}}
    refused = _helm(helm, "template", "x", str(CHART), "--set-json",
                    'savings.gpuHourPrices={"kubernetes.io/hostname": {"a": 1}}')
    # (helm's schema library names the wrong path; the property and the allowed ones are right)
    assert refused.returncode != 0 and "invalid propertyName 'kubernetes.io/hostname'" in refused.stderr
    assert "karpenter.sh/nodepool" in refused.stderr, refused.stderr
