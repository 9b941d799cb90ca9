"""The kinds scaler only stops and starts (a Job, a JobSet, a RayCluster or
RayJob, an InferenceService, a Notebook: not `sizable`) woken by a queue, as
a user sees it. docs/policies.md: "a queue wakes them but never grows them".
A wake asking for 4 must start the one unit and say so, with the GPUs that
unit holds, not four times them; and a running one must not show a scale-up
it will never make (`scaler plan` exits 3 on a pending change)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scaler.cluster import writes
from scaler.cluster.kinds import INFERENCESERVICE, JOB, NOTEBOOK, RAYCLUSTER
from scaler.cluster.workloads import Workload
from scaler.decide.annotations import KSERVE_STOP, LAST_REPLICAS, PAUSED_AT, PAUSED_BY
from scaler.decide.loading import check_texts
from scaler.signals.prometheus import Prometheus
from tests.unit.test_suspend_kinds import KINDS, T0, Daemon, create

NOW = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
GPU_POD = {"containers": [{"name": "m", "resources": {"limits": {"nvidia.com/gpu": "2"}}}]}
PAUSED = {LAST_REPLICAS: "1", PAUSED_BY: "policy/q", PAUSED_AT: "2026-12-07T10:00:00Z"}


def _stopped(kind) -> Workload:
    meta = {"name": "chat", "namespace": "llm", "annotations": dict(PAUSED)}
    if kind is INFERENCESERVICE:
        meta["annotations"][KSERVE_STOP] = "true"
        spec: dict = {"predictor": {"minReplicas": 2, "model": {"resources": {"limits": {"nvidia.com/gpu": "2"}}}}}
    elif kind is NOTEBOOK:
        meta["annotations"]["kubeflow-resource-stopped"] = "2026-12-07T10:00:00Z"
        spec = {"template": {"spec": GPU_POD}}
    elif kind is RAYCLUSTER:
        spec = {"suspend": True, "headGroupSpec": {"template": {"spec": GPU_POD}}}
    else:
        spec = {"suspend": True, "parallelism": 1, "template": {"spec": GPU_POD}}
    return Workload(kind, {"metadata": meta, "spec": spec})


@pytest.mark.parametrize(("kind", "runs"), [
    pytest.param(JOB, 1, id="Job"), pytest.param(RAYCLUSTER, 1, id="RayCluster"),
    pytest.param(NOTEBOOK, 1, id="Notebook"),
    pytest.param(INFERENCESERVICE, 2, id="InferenceService-minReplicas-2")])
def test_a_wake_asking_for_more_starts_the_one_unit_and_counts_its_gpus(kind, runs):
    write = writes.resume(_stopped(kind), by="policy/q", reason="queue 10", replicas=4, now=NOW)
    assert (write.before, write.after, write.gpus) == (0, runs, 2 * runs)
    assert write.message.startswith(f"resumed to {runs} replicas ") and f"; {2 * runs} GPUs claimed" in write.message


def _wake_policy(kind: str) -> list:
    found, problems = check_texts([("p.yaml", f"""
policies:
  - name: q
    targets: {{namespaces: [llm], kinds: [{kind}]}}
    wake: {{query: 'sum by (namespace, workload) (queue)', target_per_replica: 1}}
    max_replicas: 4
""")])
    assert not problems, problems
    return found


@pytest.mark.parametrize("kind", ["Job", "RayCluster"])
def test_a_queue_wakes_a_suspended_one_to_its_one_unit_and_never_grows_it(fake, prometheus, kind):
    resource, _, _, _, gpus = KINDS[kind]
    create(fake, kind)
    fake.write(resource, "llm", "train", lambda o: {**o, "spec": {**o["spec"], "suspend": True}, "metadata": {
        **o["metadata"], "annotations": dict(PAUSED)}})
    prometheus.answer("queue", {("llm", "train"): 10})
    daemon = Daemon(fake)
    daemon.evaluator.prometheus = Prometheus(prometheus.url, timeout_seconds=2)
    policies = _wake_policy(kind)
    try:
        daemon.sees(policies, "train", True)
        [evaluation], [result] = daemon.tick(policies, T0)
        assert fake.get(resource, "llm", "train")["spec"]["suspend"] is False
        assert (evaluation.decision.replicas, result.replicas_after, result.gpus) == (1, 1, gpus)
        [event] = fake.events("llm", "train", reason="Resumed")
        assert "resumed to 1 replicas" in event["message"] and f"; {gpus} GPUs claimed" in event["message"], event
        assert "waking to 1 (1 recorded at pause)" in event["message"]

        daemon.sees(policies, "train", False)
        [evaluation], results = daemon.tick(policies, T0)  # running, the queue still 10: nothing to grow
        assert evaluation.decision.action.value == "hold" and results == []
    finally:
        daemon.view.stop(timeout_seconds=2)


def test_a_queue_wake_with_nothing_recorded_decides_the_one_unit_its_event_says(fake, prometheus):
    """min_replicas 2, no record: the decision (the log line, the metric,
    `plan`) said 'waking to 2' with twice the GPUs while the Event said 1."""
    resource, _, _, _, gpus = KINDS["Job"]
    create(fake, "Job")
    fake.write(resource, "llm", "train", lambda o: {**o, "spec": {**o["spec"], "suspend": True}})
    prometheus.answer("queue", {("llm", "train"): 10})
    daemon = Daemon(fake)
    daemon.evaluator.prometheus = Prometheus(prometheus.url, timeout_seconds=2)
    found, problems = check_texts([("p.yaml", """
policies:
  - name: q
    targets: {namespaces: [llm], kinds: [Job]}
    wake: {query: 'sum by (namespace, workload) (queue)', target_per_replica: 1}
    min_replicas: 2
    max_replicas: 4
""")])
    assert not problems, problems
    try:
        daemon.sees(found, "train", True)
        [evaluation], [result] = daemon.tick(found, T0)
        assert (evaluation.decision.replicas, evaluation.gpus, result.replicas_after) == (1, gpus, 1)
        assert "waking to 1 (started, not sized" in evaluation.decision.reason
        [event] = fake.events("llm", "train", reason="Resumed")
        assert "woken to 1 replicas" in event["message"] and evaluation.decision.reason in event["message"]
    finally:
        daemon.view.stop(timeout_seconds=2)


def test_plan_shows_no_scale_up_for_a_running_job_with_a_queue(fake, scaler, prometheus, tmp_path):
    create(fake, "Job")
    prometheus.answer("queue", {("llm", "train"): 10})
    path = tmp_path / "p.yaml"
    path.write_text("""
policies:
  - name: q
    targets: {namespaces: [llm], kinds: [Job]}
    wake: {query: 'sum by (namespace, workload) (queue)', target_per_replica: 1}
    max_replicas: 4
""")
    result = scaler("plan", "--policies", str(path), "--prometheus-url", prometheus.url)
    assert result.code == 0, (result.out, result.err)
    assert "scale_up" not in result.out and "1 -> 4" not in result.out, result.out

