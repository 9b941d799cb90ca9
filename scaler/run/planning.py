"""`scaler plan`'s evaluation: every policy once, as the daemon would now.
Writes nothing; the command line prints it."""

from __future__ import annotations

from datetime import datetime

from scaler.cluster.pausing import Pauser
from scaler.cluster.views import ListingView
from scaler.decide.loading import check_policies
from scaler.decide.times import utc_now
from scaler.run.reconciling import Evaluation, Reconciler
from scaler.run.settings import PlanSettings


def plan(settings: PlanSettings, *, now: datetime | None = None) -> tuple[list[Evaluation], list[str]]:
    """Evaluations for every managed workload, and the signal errors seen."""
    policies, problems = check_policies(settings.policies)
    if problems:
        raise ValueError("\n".join(str(p) for p in problems))
    kube = settings.kube()
    prometheus = settings.prometheus()
    view = ListingView(kube, namespaces=settings.namespaces, gpu_resources=settings.gpu_resources)
    reconciler = Reconciler(prometheus=prometheus, view=view, pauser=Pauser(kube),
                            excluded_namespaces=settings.all_excluded_namespaces, dry_run=True,
                            signal_deadline_seconds=settings.signal_deadline_seconds)
    evaluations = reconciler.evaluate(policies, now=now or utc_now())
    return evaluations, sorted(set(reconciler.signal_errors))
