"""`scaler plan`: evaluate every policy once, as the daemon would now, and
print what it would do and why. Writes nothing.

Exit codes, for scripts and CI gates: 0 nothing would change, 2 changes are
pending, 1 error (bad policies, unreachable cluster)."""

from __future__ import annotations

import json
import sys
from datetime import datetime

from scaler.cluster.discovery import KindResolver
from scaler.cluster.kube import Kube, KubeError
from scaler.cluster.pausing import Pauser
from scaler.decide.loading import check_policies
from scaler.signals.prometheus import Prometheus
from scaler.run.reconciling import Evaluation, ListingView, Reconciler
from scaler.decide.times import utc_now
from scaler.run.observability import configure_logging
from scaler.run.settings import Settings

EXIT_NO_CHANGES, EXIT_ERROR, EXIT_PENDING = 0, 1, 2  # 1 also when a policy failed (its row says why)


def plan(settings: Settings, *, now: datetime | None = None) -> tuple[list[Evaluation], list[str], list[dict]]:
    """Evaluations for every managed workload, the signal errors seen, and the
    policies that failed (each {"policy", "source", "error"}: skipped, the
    others were evaluated)."""
    policies, problems = check_policies(settings.policies)
    if problems:
        raise ValueError("\n".join(str(p) for p in problems))
    kube = Kube.from_environment(kubeconfig=settings.kubeconfig)
    prometheus = Prometheus(
        settings.prometheus_url, timeout_seconds=settings.prometheus_timeout_seconds,
        bearer_token_file=settings.prometheus_bearer_token_file, username=settings.prometheus_username,
        password_file=settings.prometheus_password_file, ca_file=settings.prometheus_ca_file)
    view = ListingView(kube, namespaces=settings.namespaces, gpu_resources=settings.gpu_resources)
    reconciler = Reconciler(prometheus=prometheus, view=view, pauser=Pauser(kube),
                            excluded_namespaces=settings.all_excluded_namespaces, dry_run=True,
                            resolve=KindResolver(kube))
    evaluations = reconciler.evaluate(policies, now=now or utc_now())
    failures = [{"policy": name, "source": policies.sources.get(name), "error": error}
                for name, error in sorted(reconciler.policy_errors.items())]
    return evaluations, sorted(set(reconciler.signal_errors)), failures


def run_plan(settings: Settings, *, output: str = "table", show_all: bool = False) -> int:
    # Log lines (a failed query, say) go to stderr, so `-o json` prints only JSON on stdout.
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    try:
        evaluations, errors, failures = plan(settings)
    except ValueError as error:
        print(str(error), file=sys.stderr)
        return EXIT_ERROR
    except KubeError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:  # kubeconfig problems come as several exception types
        print(f"error: cannot reach the cluster: {error}", file=sys.stderr)
        return EXIT_ERROR
    evaluations.sort(key=lambda e: (not e.decision.changes, e.workload.namespace, e.workload.name))
    pending = [e for e in evaluations if e.decision.changes]
    shown = evaluations if show_all else pending + [e for e in evaluations if e.decision.action.value == "conflict"]
    if output == "json":
        json.dump({"pending": len(pending), "evaluations": [e.as_dict() for e in shown],
                   "signalErrors": errors, "policyErrors": failures}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        from rich.console import Console
        from rich.table import Table

        console = Console(width=220 if not sys.stdout.isatty() else None, highlight=False)
        if shown or failures:
            table = Table(box=None, pad_edge=False, show_edge=False)
            for column in ("NAMESPACE", "KIND", "NAME", "POLICY", "ACTION", "REPLICAS", "GPUS", "REASON"):
                table.add_column(column, overflow="fold")
            for e in shown:
                d = e.decision
                replicas = f"{e.workload.replicas} -> {d.replicas}" if d.changes else str(e.workload.replicas)
                table.add_row(e.workload.namespace, e.workload.kind.name, e.workload.name, d.policy or "-",
                              d.action.value, replicas, str(e.gpus) if e.gpus else "", d.reason)
            for failure in failures:
                table.add_row("-", "-", "-", failure["policy"], "failed", "", "",
                              f"{failure['source'] or 'policy'}: {failure['error']}; skipped, the others were "
                              "evaluated")
            console.print(table)
        freed = sum(e.gpus for e in pending if e.decision.replicas < e.workload.replicas)
        claimed = sum(e.gpus for e in pending if e.decision.replicas > e.workload.replicas)
        console.print(f"{len(pending)} change(s) pending across {len(evaluations)} managed workload(s); "
                      f"{freed} GPUs would be freed, {claimed} claimed")
        for error in errors:
            console.print(f"warning: signal unknown (held): {error}")
    if failures:
        return EXIT_ERROR
    return EXIT_PENDING if pending else EXIT_NO_CHANGES
