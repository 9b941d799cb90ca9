"""A workload scaler paused, set running again by someone else: a person's
edit (human-override) or a GitOps controller's revert (gitops-revert), told
apart by who set its size (managedFields) and the daemon's GitOps managers.
In process, against the fake API server: one reason code and one sentence
in the decision, the log line, the Event, the metric and `scaler plan`."""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest

from scaler.cli.main import main
from scaler.cluster.discovery import KindResolver
from scaler.cluster.pausing import Pauser, Retry
from scaler.cluster.views import ListingView
from scaler.decide.annotations import BACKOFF_UNTIL, LAST_REPLICAS, OVERRIDE_UNTIL, REVERTED_BY, REVERTS
from scaler.decide.decisions import Action, Code
from scaler.decide.loading import check_texts
from scaler.decide.precedence import WRITES_WHILE_HOLDING
from scaler.decide.reverts import HandsOff
from scaler.run.acting import Actor
from scaler.run.evaluating import Evaluator
from scaler.run.observability import Metrics, configure_logging
from scaler.signals.prometheus import Prometheus

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)  # a Monday, inside the keep-down window
NOWHERE = "http://127.0.0.1:1"  # the policy has no signal: Prometheus is never asked
FAST = Retry(attempts=8, base_seconds=0.001, max_seconds=0.01)
POLICY = """
policies:
  - name: nights
    targets: {{namespaces: [llm], kinds: [{kind}]}}
    schedule:
      timezone: UTC
      windows: [{{name: maintenance, mode: down, when: "Mon 11:00-12:30"}}]
"""
VLLM = "vllmservers.serving.example.com"
CRD = {"metadata": {"name": VLLM},
       "spec": {"group": "serving.example.com", "scope": "Namespaced",
                "names": {"plural": "vllmservers", "singular": "vllmserver", "kind": "VLLMServer"},
                "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {
                    "status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"}}}]}}
#: kind in the policy, resource, the object's spec at a size, where its size is
KINDS = {
    "deployment": ("Deployment", "deployments.apps", lambda n: {"replicas": n}, "/spec/replicas"),
    "custom-size": (f"{VLLM}/v1", VLLM, lambda n: {"size": n}, "/spec/size"),
}


class Daemon:
    """The daemon's evaluate-and-act over the fake, with its metrics and its log lines."""

    def __init__(self, fake, kind: str, *, managers=None) -> None:
        self.fake = fake
        self.policy_kind, self.resource, self.spec, self.pointer = KINDS[kind]
        fake.create("namespaces", {"metadata": {"name": "llm"}})
        if self.resource == VLLM:
            fake.create("customresourcedefinitions.apiextensions.k8s.io", CRD)
        fake.create(self.resource, {"metadata": {"name": "chat"}, "spec": self.spec(2)}, namespace="llm")
        self.policies, problems = check_texts([("p.yaml", POLICY.format(kind=self.policy_kind))])
        assert not problems, problems
        kube = fake.client()
        self.metrics = Metrics()
        hands_off = HandsOff(gitops_managers=managers) if managers else HandsOff()
        self.evaluator = Evaluator(prometheus=Prometheus(NOWHERE, timeout_seconds=1), view=ListingView(kube),
                                   excluded_namespaces=(), resolve=KindResolver(kube),
                                   gitops_managers=hands_off.gitops_managers)
        self.actor = Actor(evaluator=self.evaluator, pauser=Pauser(kube, retry=FAST, clock=lambda: T0),
                           dry_run=False, metrics=self.metrics, clock=lambda: T0, hands_off=hands_off)

    def size(self) -> int:
        spec = self.fake.get(self.resource, "llm", "chat")["spec"]
        return spec.get("size", spec.get("replicas"))

    def annotations(self) -> dict:
        return self.fake.get(self.resource, "llm", "chat")["metadata"].get("annotations") or {}

    def reconcile(self):
        evaluations = self.evaluator.evaluate(self.policies, now=T0)
        return evaluations, self.actor.act(evaluations, now=T0)

    def decisions(self, action: str, reason: str) -> float | None:
        return self.metrics.registry.get_sample_value("scaler_decisions_total", {"action": action, "reason": reason})


@contextmanager
def log_lines(capsys):
    """The daemon's JSON log lines written inside the block."""
    root = logging.getLogger()
    handlers, level = root.handlers, root.level
    capsys.readouterr()
    configure_logging(log_format="json", level="info")
    lines: list[dict] = []
    try:
        yield lines
    finally:
        root.handlers, root.level = handlers, level
        lines += [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]


def paused_then_set_back(fake, kind: str, set_back, **options) -> Daemon:
    """Paused by the keep-down window at 2, then set back to a size by `set_back(daemon)`."""
    daemon = Daemon(fake, kind, **options)
    _, [paused] = daemon.reconcile()
    assert (paused.outcome.value, daemon.size(), daemon.annotations()[LAST_REPLICAS]) == ("changed", 0, "2")
    set_back(daemon)
    return daemon


def plan_json(fake, daemon: Daemon, tmp_path, capsys, *extra: str) -> dict:
    (tmp_path / "p.yaml").write_text(POLICY.format(kind=daemon.policy_kind))
    capsys.readouterr()
    code = main(["plan", "--kubeconfig", str(fake.kubeconfig(tmp_path / "kubeconfig")), "--policies",
                 str(tmp_path / "p.yaml"), "--prometheus-url", NOWHERE, "--prometheus-timeout-seconds", "1",
                 "-o", "json", "--all", *extra])
    assert code == 0, capsys.readouterr()
    [row] = json.loads(capsys.readouterr().out)["evaluations"]
    return row


def argo_sets(size: int):
    def apply(daemon: Daemon) -> None:
        daemon.fake.apply(daemon.resource, "llm", "chat", {"spec": daemon.spec(size)}, manager="argocd-controller")
    return apply


def a_person_sets(size: int):
    def patch(daemon: Daemon) -> None:
        daemon.fake.patch(daemon.resource, "llm", "chat", {"spec": daemon.spec(size)}, manager="kubectl-edit")
    return patch


@pytest.mark.parametrize("kind", KINDS)
def test_a_gitops_revert_is_one_reason_everywhere(fake, tmp_path, capsys, kind):
    daemon = paused_then_set_back(fake, kind, argo_sets(2))
    sentence = ("pause reverted by argocd-controller (1 time in a row): replicas set back to 2 while policy/nights "
                f"had it paused (recorded 2): leaving 2 and backing off; add ignoreDifferences for {daemon.pointer}")
    with log_lines(capsys) as lines:
        [evaluation], [result] = daemon.reconcile()
    decision = evaluation.decision
    assert (decision.action, decision.replicas, decision.reason_code, decision.reason) == \
        (Action.HOLD, 2, Code.GITOPS_REVERT, sentence)

    # The log: the decision line, then the write's own line, with the same code and sentence.
    said = [(line["event"], line["reason_code"], line["reason"]) for line in lines if line.get("workload") == "chat"]
    assert said == [("decision", "gitops-revert", sentence), ("writing", "gitops-revert", sentence),
                    ("pause reverted", "gitops-revert", sentence)]
    reverted = next(line for line in lines if line.get("event") == "pause reverted")
    assert (reverted["level"], reverted["reverted_by"], reverted["reverts"], reverted["result"]) == \
        ("warning", "argocd-controller", 1, "skipped")
    # The Event: the sentence, then what was written.
    [event] = fake.events("llm", "chat", reason="PauseReverted")
    assert event["type"] == "Warning"
    assert event["message"] == f"{sentence}; not pausing again before 2026-12-07T12:05:00Z"
    # The metrics: the decision's code, and the revert counted once.
    assert daemon.decisions("hold", "gitops-revert") == 1 and daemon.decisions("hold", "human-override") is None
    assert daemon.metrics.registry.get_sample_value("scaler_pause_reverts_total",
                                                    {"manager": "argocd-controller"}) == 1
    # On the object: the size stays Git's, the pause record became the revert's.
    annotations = daemon.annotations()
    assert daemon.size() == 2 and result.replicas_after == 2 and LAST_REPLICAS not in annotations
    assert (annotations[REVERTED_BY], annotations[REVERTS], annotations[BACKOFF_UNTIL]) == \
        ("argocd-controller", "1", "2026-12-07T12:05:00Z")
    # Then the back-off holds, as its own code.
    [evaluation], written = daemon.reconcile()
    assert (evaluation.decision.reason_code, written) == (Code.GITOPS_BACKOFF, [])
    assert evaluation.decision.reason.endswith(f"add ignoreDifferences for {daemon.pointer}")


@pytest.mark.parametrize("kind", KINDS)
def test_plan_shows_the_revert_with_the_same_code_and_sentence(fake, tmp_path, capsys, kind):
    daemon = paused_then_set_back(fake, kind, argo_sets(2))
    row = plan_json(fake, daemon, tmp_path, capsys)
    [evaluation] = daemon.evaluator.evaluate(daemon.policies, now=T0)
    assert (row["action"], row["reasonCode"], row["reason"]) == ("hold", "gitops-revert", evaluation.decision.reason)
    assert row["reason"].startswith("pause reverted by argocd-controller (1 time in a row)")


@pytest.mark.parametrize("kind", KINDS)
def test_a_persons_edit_is_a_human_override_everywhere(fake, tmp_path, capsys, kind):
    daemon = paused_then_set_back(fake, kind, a_person_sets(3))
    sentence = "someone set replicas to 3 while policy/nights had it paused (recorded 2): leaving 3"
    assert plan_json(fake, daemon, tmp_path, capsys)["reasonCode"] == "human-override"
    with log_lines(capsys) as lines:
        [evaluation], [result] = daemon.reconcile()
    decision = evaluation.decision
    assert (decision.action, decision.replicas, decision.reason_code, decision.reason) == \
        (Action.HOLD, 3, Code.HUMAN_OVERRIDE, sentence)
    said = [(line["event"], line["reason_code"], line["reason"]) for line in lines if line.get("workload") == "chat"]
    assert said == [("decision", "human-override", sentence), ("writing", "human-override", sentence),
                    ("human override", "human-override", sentence)]
    override = next(line for line in lines if line.get("event") == "human override")
    assert (override["changed_by"], override["override_until"]) == ("kubectl-edit", "2026-12-07T12:30:00+00:00")
    [event] = fake.events("llm", "chat", reason="ResumeSkipped")
    assert event["message"] == (f"{sentence}; cleared the pause record; policy/nights leaves it alone until "
                                "2026-12-07T12:30:00Z")  # the window's end: its next edge
    assert fake.events("llm", "chat", reason="PauseReverted") == []
    assert daemon.decisions("hold", "human-override") == 1 and daemon.decisions("hold", "gitops-revert") is None
    assert daemon.metrics.registry.get_sample_value("scaler_pause_reverts_total",
                                                    {"manager": "kubectl-edit"}) is None
    annotations = daemon.annotations()
    assert (daemon.size(), result.replicas_after, annotations[OVERRIDE_UNTIL]) == (3, 3, "2026-12-07T12:30:00Z")
    assert LAST_REPLICAS not in annotations and REVERTED_BY not in annotations
    # Then the hands-off period holds, with the same code, and writes nothing.
    [evaluation], written = daemon.reconcile()
    assert (evaluation.decision.reason_code, evaluation.decision.writes, written) == (Code.HUMAN_OVERRIDE, False, [])


def test_the_daemons_gitops_managers_decide_who_is_a_controller(fake, tmp_path, capsys):
    """--gitops-managers reaches the decision (through the state every decision reads): a
    manager not on the list is a person, one on it a controller, in the daemon and in plan alike."""
    daemon = paused_then_set_back(fake, "deployment", argo_sets(2), managers=("flux-custom",))
    assert plan_json(fake, daemon, tmp_path, capsys, "--gitops-managers", "flux-custom")["reasonCode"] == \
        "human-override"
    assert plan_json(fake, daemon, tmp_path, capsys)["reasonCode"] == "gitops-revert"  # the default list
    [evaluation], _ = daemon.reconcile()
    assert evaluation.decision.reason_code is Code.HUMAN_OVERRIDE
    assert daemon.annotations()[OVERRIDE_UNTIL] == "2026-12-07T12:30:00Z" and REVERTED_BY not in daemon.annotations()


def test_a_revert_fenced_off_before_it_was_written_is_not_counted(fake):
    """The lease lost between the decision and the write: nothing written,
    and nothing counted (the next leader records and counts it)."""
    daemon = paused_then_set_back(fake, "deployment", argo_sets(2))
    asked = []

    def may_act(policy, term):
        asked.append(policy)
        return len(asked) == 1  # yes when the pass starts the write; no by the time it goes out
    daemon.actor.may_act = may_act
    [evaluation], [result] = daemon.reconcile()
    assert evaluation.decision.reason_code is Code.GITOPS_REVERT
    assert result.reason.startswith("not sent: not the leader")
    assert REVERTED_BY not in daemon.annotations()
    assert [event["reason"] for event in fake.events("llm", "chat")] == ["ScaledToZero"]  # the pause's only
    assert daemon.metrics.registry.get_sample_value("scaler_pause_reverts_total",
                                                    {"manager": "argocd-controller"}) is None


def test_every_hold_that_writes_has_a_write():
    """A row declared writes_while_holding without a write here fails: the
    actor writes exactly the holds the table says write."""
    assert set(Actor.HOLD_WRITES) == WRITES_WHILE_HOLDING
