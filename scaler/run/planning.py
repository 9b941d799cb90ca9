"""`scaler plan`'s evaluation: every policy once, as the daemon would now,
by the evaluator alone (no writer, no pauser). Writes nothing; the command
line prints it."""

from __future__ import annotations

from datetime import datetime, timedelta

from scaler.cluster.discovery import KindResolver
from scaler.cluster.views import ListingView
from scaler.decide.facts import next_prewarm
from scaler.decide.times import rfc3339, utc_now
from scaler.run.evaluating import Evaluation, Evaluator
from scaler.run.isolating import report_failures
from scaler.run.settings import PlanSettings
from scaler.run.sources import check_configured_policies


def plan(settings: PlanSettings, *, now: datetime, signals_at: datetime | None = None,
         ) -> tuple[list[Evaluation], list[str], list[dict]]:
    """Evaluations for every managed workload at `now` (windows, times), the
    signal errors seen, and the policies that failed (each {"policy",
    "source", "error"}: skipped, the others were evaluated). Signals are read
    as of `signals_at` if given, else as of now; the workloads are as they are."""
    policies, problems = check_configured_policies(settings)
    if problems:
        raise ValueError("\n".join(str(p) for p in problems))
    kube = settings.kube()
    view = ListingView(kube, namespaces=settings.namespaces, gpu_resources=settings.gpu_resources)
    evaluator = Evaluator(prometheus=settings.prometheus(), view=view,
                          excluded_namespaces=settings.all_excluded_namespaces,
                          signal_deadline_seconds=settings.signal_deadline_seconds, resolve=KindResolver(kube),
                          gitops_managers=settings.gitops_managers, signals_at=signals_at)
    # The clock, read once: a future `now` reads the signals as of it.
    evaluations = evaluator.evaluate(policies, now=now, read_at=min(now, utc_now()))
    errors = report_failures(evaluations.failures, previous={}, checked=evaluations.checked, policies=policies)
    failures = [{"policy": name, "source": policies.sources.get(name), "error": error}
                for name, error in sorted(errors.items())]
    return list(evaluations), sorted(set(evaluations.signal_errors)), failures


def upcoming_prewarms(evaluations: list[Evaluation], *, now: datetime) -> list[dict]:
    """Each managed workload's next pre-warm: when it resumes, its lead, and
    when the keep-up window it prepares for opens."""
    found = []
    for evaluation in evaluations:
        policy = evaluation.policy
        if policy is None or policy.prewarm is None:
            continue
        upcoming = next_prewarm(policy, evaluation.state.warm_ups, now)
        if upcoming is None:
            continue
        when, lead = upcoming
        found.append({"namespace": evaluation.workload.namespace, "kind": evaluation.workload.kind.name,
                      "name": evaluation.workload.name, "policy": policy.name, "resumeAt": rfc3339(when),
                      "leadSeconds": round(lead), "windowOpensAt": rfc3339(when + timedelta(seconds=lead)),
                      "lead": "measured warm-up" if policy.prewarm == "auto" else "prewarm"})
    return sorted(found, key=lambda row: (row["resumeAt"], row["namespace"], row["name"]))
