"""The suspend kinds (cluster/kinds/suspended.py: Job, JobSet, RayCluster,
RayJob) through the daemon's reconciler and the command line, in process
against the fake API server, as a user sees them: `spec.suspend` and
scaler's annotations on the object, the Events, the rows and exit codes of
`pause`, `resume`, `status`, `plan` and `backtest`. The custom resources are
served from the minimal CRDs in tests/fixtures/crds/ (no controller runs:
the tests set status as one would)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from scaler.cli.main import main
from scaler.cluster.eventing import EventSink
from scaler.cluster.pausing import Pauser, Retry
from scaler.cluster.views import WatchingView
from scaler.decide.annotations import LAST_REPLICAS, PAUSE_CAUSE, PAUSED_BY
from scaler.decide.decisions import Code
from scaler.decide.loading import check_texts
from scaler.run.acting import Actor
from scaler.run.evaluating import Evaluator, kinds_of
from scaler.signals.prometheus import Prometheus
from tests.helpers import eventually

CRDS = Path(__file__).parents[1] / "fixtures" / "crds"
T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)  # a Monday, in the night window below
FAST = Retry(attempts=8, base_seconds=0.001, max_seconds=0.01)
GPUS = {"containers": [{"name": "trainer", "image": "trainer:1",
                        "resources": {"limits": {"nvidia.com/gpu": "2"}}}], "restartPolicy": "Never"}


def job_spec(parallelism: int = 2) -> dict:
    return {"parallelism": parallelism, "completions": 8, "template": {"spec": GPUS}}


#: kind -> (resource, CRD file or None, spec, the status of a running one, GPUs it holds)
KINDS = {
    "Job": ("jobs.batch", None, job_spec(), {"active": 2, "ready": 2}, 4),
    "JobSet": ("jobsets.jobset.x-k8s.io", "jobsets.yaml",
               {"replicatedJobs": [{"name": "workers", "replicas": 2, "template": {"spec": job_spec()}}]},
               {"replicatedJobsStatus": [{"name": "workers", "ready": 2}]}, 8),
    "RayCluster": ("rayclusters.ray.io", "rayclusters.yaml",
                   {"headGroupSpec": {"template": {"spec": GPUS}},
                    "workerGroupSpecs": [{"groupName": "gpu", "replicas": 2, "template": {"spec": GPUS}}]},
                   {"state": "ready"}, 6),
    "RayJob": ("rayjobs.ray.io", "rayjobs.yaml",
               {"entrypoint": "python train.py", "rayClusterSpec": {"headGroupSpec": {"template": {"spec": GPUS}}}},
               {"jobDeploymentStatus": "Running"}, 2),
}


WINDOW = {"name": "training-off", "mode": "down", "when": "Mon 11:00-12:30"}
HOUR = {**WINDOW, "when": "Mon 11:00-12:00"}


def policy(kind: str, window: str = "Mon 11:00-12:30", **extra: str) -> list:
    more = "".join(f"    {key}: {value}\n" for key, value in extra.items())
    found, problems = check_texts([("p.yaml", f"""
policies:
  - name: nights
    targets: {{namespaces: [llm], kinds: [{kind}]}}
    schedule:
      timezone: UTC
      windows: [{{name: training-off, mode: down, when: "{window}"}}]
{more}""")])
    assert not problems, problems
    return found


def policy_file(directory: Path, kind: str, window: dict) -> Path:
    path = directory / "p.yaml"
    path.write_text(yaml.safe_dump({"policies": [{"name": "nights", "targets": {"namespaces": ["llm"], "kinds": [kind]},
                                                  "schedule": {"timezone": "UTC", "windows": [window]}}]}))
    return path


def create(fake, kind: str, name: str = "train", *, running: bool = True, **meta) -> dict:
    resource, crd, spec, status, _ = KINDS[kind]
    if crd is not None and not any(c["metadata"]["name"] == resource
                                   for c in fake.items("customresourcedefinitions.apiextensions.k8s.io")):
        fake.create("customresourcedefinitions.apiextensions.k8s.io", yaml.safe_load((CRDS / crd).read_text()))
    if not any(n["metadata"]["name"] == "llm" for n in fake.items("namespaces")):
        fake.create("namespaces", {"metadata": {"name": "llm"}})
    fake.create(resource, {"metadata": {"name": name, "labels": {"app": name}, **meta},
                           "spec": {"suspend": False, **spec}}, namespace="llm")
    return fake.set_status(resource, "llm", name, status if running else {})


class Daemon:
    """The daemon's reconciler on the fake: watch caches, guarded writes, Events."""

    def __init__(self, fake) -> None:
        self.now = T0
        kube = fake.client()
        self.view = WatchingView(kube)
        self.sink = EventSink(kube)
        self.evaluator = Evaluator(prometheus=Prometheus("http://127.0.0.1:1", timeout_seconds=1), view=self.view,
                                   excluded_namespaces=())
        self.actor = Actor(evaluator=self.evaluator,
                           pauser=Pauser(kube, retry=FAST, clock=lambda: self.now, events=self.sink), dry_run=False,
                           clock=lambda: self.now)

    def sees(self, policies, name: str, suspend: bool) -> None:
        """Wait until the watch cache has `name` with this switch."""
        eventually(lambda: any(w.name == name and w.obj["spec"]["suspend"] is suspend
                               for w in self.view.workloads(kinds_of(policies))), timeout_seconds=5,
                   interval_seconds=0.02)

    def tick(self, policies, now: datetime):
        self.now = now
        evaluations = self.evaluator.evaluate(policies, now=now)
        results = self.actor.act(evaluations, now=now, term=0)
        assert self.sink.flush(timeout_seconds=5) == 0
        return evaluations, results


@pytest.fixture
def daemon(fake):
    made = Daemon(fake)
    yield made
    made.view.stop(timeout_seconds=2)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_keep_down_window_suspends_at_its_edge_and_unsuspends_at_its_end(fake, daemon, kind):
    resource, _, _, _, gpus = KINDS[kind]
    create(fake, kind)
    [evaluation], [result] = daemon.tick(policy(kind), T0)
    assert evaluation.decision.reason_code is Code.KEEP_DOWN_WINDOW and evaluation.gpus == gpus
    obj = fake.get(resource, "llm", "train")
    annotations = obj["metadata"]["annotations"]
    assert obj["spec"]["suspend"] is True
    assert (annotations[LAST_REPLICAS], annotations[PAUSED_BY], annotations[PAUSE_CAUSE]) == \
        ("1", "policy/nights", "keep-down-window")
    [event] = fake.events("llm", "train")
    assert event["reason"] == "ScaledToZero" and event["involvedObject"]["kind"] == kind
    assert "scaled to zero from 1 replicas by policy/nights" in event["message"]
    assert f"{gpus} GPUs freed" in event["message"]
    spec_before = {key: value for key, value in obj["spec"].items() if key != "suspend"}

    [evaluation], [result] = daemon.tick(policy(kind), T0 + timedelta(hours=1))  # the window has ended
    assert evaluation.decision.reason_code is Code.WINDOW_ENDED
    obj = fake.get(resource, "llm", "train")
    assert obj["spec"] == {"suspend": False, **spec_before}  # restored exactly: only the switch changed
    assert not any(key.startswith("scaler.io/") and key not in ("scaler.io/started-at", "scaler.io/last-action")
                   for key in obj["metadata"]["annotations"])
    assert "resumed to 1 replicas (recorded by policy/nights)" in result.reason and f"{gpus} GPUs claimed" in \
        result.reason


def test_a_finished_job_is_left_alone_by_the_window_and_by_hand(fake, daemon, tmp_path, capsys):
    create(fake, "Job", "done")
    fake.set_status("jobs.batch", "llm", "done", {"active": 0, "ready": 0, "succeeded": 8, "conditions": [
        {"type": "Complete", "status": "True", "lastTransitionTime": "2026-12-07T10:00:00Z"}]})
    create(fake, "Job", "train")
    evaluations, _ = daemon.tick(policy("Job"), T0)
    assert [e.workload.name for e in evaluations] == ["train"]
    assert fake.get("jobs.batch", "llm", "done")["spec"]["suspend"] is False
    kubeconfig = fake.kubeconfig(tmp_path / "kubeconfig", namespace="llm")
    patches = fake.count("PATCH", "/jobs/done")
    assert main(["pause", "job/done", "--kubeconfig", str(kubeconfig)]) == 0
    out = capsys.readouterr().out
    assert "skipped" in out and "finished: this Job has run to its end (completed or failed)" in out
    assert fake.count("PATCH", "/jobs/done") == patches


@pytest.fixture
def cli(fake, tmp_path, capsys):
    kubeconfig = fake.kubeconfig(tmp_path / "kubeconfig", namespace="llm")

    def run(*arguments: str) -> tuple[int, str, str]:
        code = main([*arguments, "--kubeconfig", str(kubeconfig)])
        out, err = capsys.readouterr()
        return code, out, err
    return run


@pytest.mark.parametrize(("kind", "spelling"), [
    ("Job", "job/train"), ("Job", "jobs.batch/v1/train"), ("JobSet", "jobset/train"),
    ("RayCluster", "raycluster/train"), ("RayJob", "rayjobs.ray.io/train")])
def test_pause_status_and_resume_by_hand(fake, cli, kind, spelling):
    resource, _, _, _, gpus = KINDS[kind]
    create(fake, kind)
    code, out, err = cli("pause", spelling, "--reason", "GPUs for the demo")
    assert code == 0, err
    line = next(line for line in out.splitlines() if " train " in line)
    assert line.split()[:5] == ["llm", kind, "train", "changed", "1"] and f" {gpus} " in line
    assert f"1 changed, 0 unchanged, 0 skipped, 0 failed; {gpus} GPUs freed" in out
    assert fake.get(resource, "llm", "train")["spec"]["suspend"] is True
    code, out, _ = cli("pause", spelling)  # again: nothing to do
    assert code == 0 and "already paused manually" in out

    code, out, _ = cli("status", "--kind", kind, "-o", "json")
    [row] = json.loads(out)["workloads"]
    assert (code, row["state"], row["recorded"], row["pausedBy"], row["gpus"]) == (0, "paused", 1, "manual", gpus)

    code, out, _ = cli("resume", spelling)
    assert code == 0 and "resumed to 1 replicas (recorded by manual)" in out
    assert fake.get(resource, "llm", "train")["spec"]["suspend"] is False
    code, out, _ = cli("resume", spelling)
    assert code == 0 and "not paused: running at 1 replicas" in out


def test_a_gitops_revert_of_the_suspend_switch_is_told_from_a_person(fake, daemon, cli):
    create(fake, "Job", "argo")
    create(fake, "Job", "person")
    daemon.tick(policy("Job"), T0)
    fake.apply("jobs.batch", "llm", "argo", {"spec": {"suspend": False}}, manager="argocd-controller")
    fake.patch("jobs.batch", "llm", "person", {"spec": {"suspend": False}}, manager="kubectl")
    daemon.sees(policy("Job"), "argo", False)
    daemon.sees(policy("Job"), "person", False)
    _, results = daemon.tick(policy("Job"), T0 + timedelta(minutes=1))
    by_name = {r.name: r for r in results}
    assert by_name["argo"].reason.startswith(
        "pause reverted by argocd-controller (1 time in a row): replicas set back to 1")
    assert "someone set replicas to 1 while policy/nights had it paused" in by_name["person"].reason
    argo = fake.get("jobs.batch", "llm", "argo")
    assert argo["spec"]["suspend"] is False and argo["metadata"]["annotations"]["scaler.io/reverted-by"] == \
        "argocd-controller"
    assert [e["type"] for e in fake.events("llm", "argo", reason="PauseReverted")] == ["Warning"]
    code, out, _ = cli("status", "--kind", "Job", "-o", "json")
    rows = {row["name"]: row for row in json.loads(out)["workloads"]}
    assert code == 0
    assert rows["argo"]["revertedBy"] == "argocd-controller" and rows["person"]["changedBy"] == "kubectl"


def test_plan_shows_the_suspend_it_would_make(fake, cli, tmp_path):
    create(fake, "RayJob")
    path = policy_file(tmp_path, "RayJob", WINDOW)
    code, out, err = cli("plan", "--policies", str(path), "--at", "2026-11-30T12:00:00Z", "-o", "json",
                         "--prometheus-url", "http://127.0.0.1:1")
    assert code == 3, err
    [row] = [row for row in json.loads(out)["evaluations"] if row["name"] == "train"]
    assert (row["kind"], row["action"], row["replicas"], row["desired"], row["gpus"]) == ("RayJob", "pause", 1, 0, 2)


def test_backtest_counts_the_gpu_hours_a_window_saves(fake, cli, prometheus, tmp_path):
    create(fake, "Job")
    path = policy_file(tmp_path, "Job", HOUR)
    code, out, err = cli("backtest", "--policies", str(path), "--from", "2026-11-30T10:00:00Z",
                         "--to", "2026-11-30T13:00:00Z", "--step", "5m", "--prometheus-url", prometheus.url,
                         "-o", "json")
    assert code == 0, err
    [row] = json.loads(out)["workloads"]
    assert (row["kind"], row["gpuHoursAlwaysUp"], row["gpuHoursSaved"]) == ("Job", 4 * 3, 4 * 1)
