"""A workload its kind says is finished for good (a completed Job) is left
alone by every layer that asks the kind: no evaluation reads it (the daemon,
`plan`), no write is sent to it (the daemon, `pause`, `resume`), even when
it finished after it was read. And `status`, which looks at every registered
kind, leaves out a kind it may not list with a note, unless it may list
none. Against the fake API server, with a kind made for the test (the real
finishing kinds have their own tests)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from scaler.cli.main import main
from scaler.cluster.kinds import KINDS
from scaler.cluster.kinds.base import dig
from scaler.cluster.kinds.scaled import ScaledKind
from scaler.cluster.kube import Resource
from scaler.cluster.pausing import Pauser, Retry
from scaler.cluster.views import ListingView, WatchingView
from scaler.cluster.workloads import Workload
from scaler.cluster.writes import Outcome
from scaler.decide.annotations import LAST_REPLICAS
from scaler.decide.decisions import MANUAL
from scaler.decide.loading import check_texts
from scaler.run.acting import Actor
from scaler.run.evaluating import Evaluator
from scaler.run.tracking import Tracker
from scaler.signals.prometheus import Prometheus

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)  # a Monday, inside the window below
FAST = Retry(attempts=8, base_seconds=0.001, max_seconds=0.01)
[NIGHT], _ = check_texts([("p.yaml", """
policies:
  - name: nights
    targets: {namespaces: [llm]}
    schedule:
      timezone: UTC
      windows: [{name: night, mode: down, when: "Mon 11:00-12:30"}]
""")])


@dataclass(frozen=True)
class Finishing(ScaledKind):
    """Deployments, but one whose status says `done` has finished."""

    def finished(self, obj: dict) -> bool:
        return bool(dig(obj, ("status", "done")))


FINISHING = Finishing("Deployment", Resource("apps", "v1", "deployments"), key="Deployment")


def two_deployments(fake):
    fake.create("namespaces", {"metadata": {"name": "llm"}})
    for name in ("running", "done"):
        fake.create("deployments.apps", {"metadata": {"name": name}, "spec": {"replicas": 2}}, namespace="llm")
    fake.set_status("deployments.apps", "llm", "done", {"done": True})


@pytest.mark.parametrize("watching", [False, True], ids=["listed-plan", "watched-daemon"])
def test_a_finished_workload_is_not_evaluated_and_not_paused(fake, watching):
    two_deployments(fake)
    kube = fake.client()
    view = WatchingView(kube) if watching else ListingView(kube)
    evaluator = Evaluator(prometheus=Prometheus("http://127.0.0.1:1", timeout_seconds=1), view=view,
                          excluded_namespaces=(), resolve=lambda name: FINISHING)
    actor = Actor(evaluator=evaluator, pauser=Pauser(kube, retry=FAST, clock=lambda: T0), dry_run=False,
                  clock=lambda: T0)
    tracker = Tracker(evaluator=evaluator, actor=actor)
    try:
        evaluations = evaluator.evaluate([NIGHT], now=T0)
        assert [e.workload.name for e in evaluations] == ["running"]
        actor.act(evaluations, now=T0, term=0)
        assert tracker.track_starts([NIGHT], now=T0) == []
    finally:
        if watching:
            view.stop(timeout_seconds=2)
    assert fake.get("deployments.apps", "llm", "running")["spec"]["replicas"] == 0
    done = fake.get("deployments.apps", "llm", "done")
    assert done["spec"]["replicas"] == 2 and LAST_REPLICAS not in (done["metadata"].get("annotations") or {})


def test_no_write_goes_to_a_finished_workload_even_one_that_finished_after_it_was_read(fake):
    two_deployments(fake)
    pauser = Pauser(fake.client(), retry=FAST, clock=lambda: T0)
    done = Workload(FINISHING, fake.get("deployments.apps", "llm", "done"))
    result = pauser.pause(done, by=MANUAL, reason="test")
    assert (result.outcome, result.reason) == (Outcome.SKIPPED, "finished: this Deployment has run to its end "
                                                                "(completed or failed); scaler leaves it alone")
    running = Workload(FINISHING, fake.get("deployments.apps", "llm", "running"))

    def finishes(request):  # it ends (and its size changes) while the pause is on its way
        fake.set_status("deployments.apps", "llm", "running", {"done": True})
        fake.patch("deployments.apps", "llm", "running", {"spec": {"replicas": 1}})
    fake.before("PATCH", "/deployments/running$", finishes)
    result = pauser.pause(running, by=MANUAL, reason="test")
    assert result.outcome is Outcome.SKIPPED and result.reason.startswith("finished:")
    assert fake.get("deployments.apps", "llm", "running")["spec"]["replicas"] == 1


@pytest.fixture
def status(fake, tmp_path, capsys):
    kubeconfig = fake.kubeconfig(tmp_path / "kubeconfig")
    fake.create("deployments.apps", {"metadata": {"name": "chat", "annotations": {LAST_REPLICAS: "2"}},
                                     "spec": {"replicas": 0}}, namespace="default")

    def run(*arguments: str) -> tuple[int, str, str]:
        code = main(["status", "--kubeconfig", str(kubeconfig), *arguments])
        out, err = capsys.readouterr()
        return code, out, err
    return run


def test_status_leaves_out_a_kind_it_may_not_list_with_a_note(fake, status):
    fake.deny("list", "statefulsets.apps")
    code, out, err = status()
    assert code == 0 and "chat" in out and "1 paused" in out
    assert "note: StatefulSet not shown: forbidden: cannot list statefulsets.apps" in err


def test_status_that_may_list_no_kind_is_an_error_and_one_asked_for_is_too(fake, status):
    fake.deny("list", "statefulsets.apps")
    code, _, err = status("--kind", "StatefulSet")
    assert code == 1 and "error: forbidden: cannot list statefulsets.apps" in err
    for kind in KINDS.values():
        fake.deny("list", kind.resource.qualified)
    code, _, err = status()
    assert code == 1 and "error: forbidden: cannot list" in err
