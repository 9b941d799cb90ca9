"""`scaler plan`: what the daemon would do now, and why.

Exit codes, for scripts and CI gates: 0 nothing would change, 2 changes are
pending, 1 error (bad policies, unreachable cluster, a policy that failed:
its row says why)."""

from __future__ import annotations

import sys

from scaler.cli.output import console, print_json, table
from scaler.cluster.kube import KubeError
from scaler.decide.times import utc_now
from scaler.run.observability import configure_logging
from scaler.run.planning import plan, upcoming_prewarms
from scaler.run.settings import PlanSettings

EXIT_NO_CHANGES, EXIT_ERROR, EXIT_PENDING = 0, 1, 2


def run_plan(settings: PlanSettings, *, output: str = "table", show_all: bool = False) -> int:
    # Log lines (a failed query, say) go to stderr, so `-o json` prints only JSON on stdout.
    configure_logging(log_format="auto", level="warning")
    now = utc_now()
    try:
        evaluations, errors, failures = plan(settings, now=now)
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
    prewarms = upcoming_prewarms(evaluations, now=now)
    if output == "json":
        print_json({"pending": len(pending), "evaluations": [e.as_dict() for e in shown], "signalErrors": errors,
                    "policyErrors": failures, "prewarms": prewarms})
    else:
        screen = console()
        if shown or failures:
            rows = []
            for e in shown:
                d = e.decision
                replicas = f"{e.workload.replicas} -> {d.replicas}" if d.changes else str(e.workload.replicas)
                rows.append((e.workload.namespace, e.workload.kind.name, e.workload.name, d.policy or "-",
                             d.action.value, replicas, str(e.gpus) if e.gpus else "", d.reason))
            rows += [("-", "-", "-", failure["policy"], "failed", "", "",
                      f"{failure['source'] or 'policy'}: {failure['error']}; skipped, the others were evaluated")
                     for failure in failures]
            screen.print(table(("NAMESPACE", "KIND", "NAME", "POLICY", "ACTION", "REPLICAS", "GPUS", "REASON"), rows))
        freed = sum(e.gpus for e in pending if e.decision.replicas < e.workload.replicas)
        claimed = sum(e.gpus for e in pending if e.decision.replicas > e.workload.replicas)
        screen.print(f"{len(pending)} change(s) pending across {len(evaluations)} managed workload(s); "
                     f"{freed} GPUs would be freed, {claimed} claimed")
        for row in prewarms:
            screen.print(f"pre-warm: {row['namespace']}/{row['name']} resumes at {row['resumeAt']}, "
                         f"{row['leadSeconds']}s ({row['lead']}) before its keep-up window opens at "
                         f"{row['windowOpensAt']}")
        for error in errors:
            screen.print(f"warning: signal unknown (held): {error}")
    if failures:
        return EXIT_ERROR
    return EXIT_PENDING if pending else EXIT_NO_CHANGES
