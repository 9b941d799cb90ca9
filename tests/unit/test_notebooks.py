"""Kubeflow's Notebook (cluster/kinds/stopped.py) through the daemon's
reconciler and the command line, in process against the fake API server
and a fake Prometheus: an idle notebook is stopped with Kubeflow's
`kubeflow-resource-stopped` annotation and started again by an activity
signal; `pause`, `resume` and `status` take it; the web app's Start after a
pause is a person's change, not a GitOps revert. Served from the minimal
CRD in tests/fixtures/crds/notebooks.yaml; no controller runs (the tests
set status as it would)."""

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
from scaler.decide.annotations import LAST_REPLICAS, PAUSE_CAUSE, STARTED_AT
from scaler.decide.decisions import Action, Code
from scaler.decide.loading import check_texts
from scaler.run.acting import Actor
from scaler.run.evaluating import Evaluator, kinds_of
from scaler.signals.prometheus import Prometheus
from tests.helpers import eventually

CRD = Path(__file__).parents[1] / "fixtures" / "crds" / "notebooks.yaml"
NOTEBOOKS = "notebooks.kubeflow.org"
STOPPED = "kubeflow-resource-stopped"
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
FAST = Retry(attempts=8, base_seconds=0.001, max_seconds=0.01)
[POLICY], _ = check_texts([("notebooks.yaml", """
policies:
  - name: notebooks
    targets: {namespaces: [lab], kinds: [Notebook]}
    # GPU busy per notebook (its pod is <name>-0), and sessions waiting at the gateway
    idle: {query: 'sum by (namespace, workload) (notebook_gpu_busy)', threshold: 1, duration: 30m}
    wake: {query: 'sum by (namespace, workload) (notebook_sessions_waiting)', target_per_replica: 1}
""")])


def notebook(fake, name: str = "lab", *, ready: bool = True) -> dict:
    if not fake.items("customresourcedefinitions.apiextensions.k8s.io"):
        fake.create("customresourcedefinitions.apiextensions.k8s.io", yaml.safe_load(CRD.read_text()))
        fake.create("namespaces", {"metadata": {"name": "lab"}})
    pod = {"containers": [{"name": name, "image": "jupyter-pytorch-cuda:1",
                           "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}
    fake.create(NOTEBOOKS, {"metadata": {"name": name}, "spec": {"template": {"spec": pod}}}, namespace="lab")
    return running(fake, name) if ready else fake.get(NOTEBOOKS, "lab", name)


def running(fake, name: str = "lab") -> dict:
    return fake.set_status(NOTEBOOKS, "lab", name, {"readyReplicas": 1, "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-30T08:00:00Z"}]})


@pytest.fixture
def daemon(fake, prometheus):
    kube = fake.client()
    view = WatchingView(kube)
    sink = EventSink(kube)
    now = [T0]
    evaluator = Evaluator(prometheus=Prometheus(prometheus.url, timeout_seconds=2), view=view,
                          excluded_namespaces=())
    actor = Actor(evaluator=evaluator, pauser=Pauser(kube, retry=FAST, clock=lambda: now[0], events=sink),
                  dry_run=False, clock=lambda: now[0])

    def tick(at: datetime):
        now[0] = at
        evaluations = evaluator.evaluate([POLICY], now=at)
        results = actor.act(evaluations, now=at, term=0)
        assert sink.flush(timeout_seconds=5) == 0
        return evaluations, results

    def sees(check) -> None:
        eventually(lambda: any(check(w.obj) for w in view.workloads(kinds_of([POLICY]))), timeout_seconds=5,
                   interval_seconds=0.02)
    yield tick, sees
    view.stop(timeout_seconds=2)


def test_an_idle_notebook_is_stopped_and_started_again_by_activity(fake, prometheus, daemon):
    tick, sees = daemon
    notebook(fake)
    prometheus.answer("notebook_gpu_busy", {("lab", "lab"): 0})
    prometheus.answer("notebook_sessions_waiting", {("lab", "lab"): 0})
    [evaluation], [result] = tick(T0)
    assert (evaluation.decision.action, evaluation.decision.reason_code) == (Action.PAUSE, Code.IDLE_TIMEOUT)
    obj = fake.get(NOTEBOOKS, "lab", "lab")
    annotations = obj["metadata"]["annotations"]
    assert annotations[STOPPED] == "2026-11-30T12:00:00Z"  # Kubeflow's convention: when it was stopped
    assert (annotations[LAST_REPLICAS], annotations[PAUSE_CAUSE]) == ("1", "idle-timeout")
    assert result.reason.startswith("scaled to zero from 1 replicas by policy/notebooks") and "1 GPUs freed" in \
        result.reason
    [event] = fake.events("lab", "lab")
    assert event["reason"] == "ScaledToZero" and event["involvedObject"]["kind"] == "Notebook"

    fake.set_status(NOTEBOOKS, "lab", "lab", {"readyReplicas": 0, "conditions": []})  # its pod is gone
    sees(lambda obj: STOPPED in obj["metadata"]["annotations"] and not obj["status"]["readyReplicas"])
    [evaluation], _ = tick(T0 + timedelta(minutes=5))
    assert evaluation.decision.action is Action.HOLD  # stopped, nobody waiting: stays stopped

    prometheus.answer("notebook_sessions_waiting", {("lab", "lab"): 1})  # someone opens it
    [evaluation], [result] = tick(T0 + timedelta(minutes=10))
    assert evaluation.decision.action is Action.RESUME
    obj = fake.get(NOTEBOOKS, "lab", "lab")
    assert STOPPED not in obj["metadata"]["annotations"] and LAST_REPLICAS not in obj["metadata"]["annotations"]
    assert obj["metadata"]["annotations"][STARTED_AT] == "2026-11-30T12:10:00Z"
    assert "resumed to 1 replicas" in result.reason and "1 GPUs claimed" in result.reason


def test_the_web_apps_start_after_a_pause_is_a_persons_change(fake, prometheus, daemon):
    tick, sees = daemon
    notebook(fake)
    prometheus.answer("notebook_gpu_busy", {("lab", "lab"): 0})
    prometheus.answer("notebook_sessions_waiting", {("lab", "lab"): 0})
    tick(T0)
    fake.patch(NOTEBOOKS, "lab", "lab", {"metadata": {"annotations": {STOPPED: None}}}, manager="jupyter-web-app")
    sees(lambda obj: STOPPED not in obj["metadata"]["annotations"])
    _, [result] = tick(T0 + timedelta(minutes=1))
    assert "someone set replicas to 1 while policy/notebooks had it paused (recorded 1)" in result.reason
    annotations = fake.get(NOTEBOOKS, "lab", "lab")["metadata"]["annotations"]
    assert STOPPED not in annotations and "scaler.io/override-until" in annotations
    assert "scaler.io/reverted-by" not in annotations


def test_pause_status_and_resume_by_hand(fake, tmp_path, capsys):
    notebook(fake)
    kubeconfig = str(fake.kubeconfig(tmp_path / "kubeconfig", namespace="lab"))
    assert main(["pause", "notebook/lab", "--kubeconfig", kubeconfig]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if " lab " in line)
    assert line.split()[:6] == ["lab", "Notebook", "lab", "changed", "1", "->"]
    assert "1 changed, 0 unchanged, 0 skipped, 0 failed; 1 GPUs freed" in out
    assert STOPPED in fake.get(NOTEBOOKS, "lab", "lab")["metadata"]["annotations"]
    assert main(["status", "--kind", "Notebook", "--kubeconfig", kubeconfig, "-o", "json"]) == 0
    [row] = json.loads(capsys.readouterr().out)["workloads"]
    assert (row["state"], row["recorded"], row["pausedBy"], row["gpus"]) == ("paused", 1, "manual", 1)
    assert main(["resume", "notebooks.kubeflow.org/v1/lab", "--kubeconfig", kubeconfig]) == 0
    assert "resumed to 1 replicas (recorded by manual)" in capsys.readouterr().out
    assert STOPPED not in fake.get(NOTEBOOKS, "lab", "lab")["metadata"]["annotations"]
