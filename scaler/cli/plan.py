"""`scaler plan`: what the daemon would do now, and why.

Exit codes, for scripts and CI gates: 0 nothing would change, 3 changes are
pending, 4 some signals were unknown, 1 error (bad policies, unreachable
cluster, a policy that failed at run time: its row says why), 2 usage (what
argparse refuses, an unreadable or incomputable --at).

4 wins over 3: with a signal unknown, the daemon holds what depends on it,
so the pending list may be short of what it will do once Prometheus answers;
a CI gate must not read an incomplete evaluation as a complete one. The
pending changes are still listed."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from scaler.cli.instants import InstantError, check_computable, instant
from scaler.cli.output import DOCUMENTS, console, print_document, print_names, table
from scaler.cluster.kube import KubeconfigError, KubeError
from scaler.decide.policies import Policy
from scaler.decide.times import rfc3339, utc_now
from scaler.run.observability import configure_logging
from scaler.run.planning import Evaluation, plan, upcoming_prewarms
from scaler.run.settings import PlanSettings
from scaler.run.sources import check_configured_policies

EXIT_NO_CHANGES, EXIT_ERROR, EXIT_USAGE, EXIT_PENDING, EXIT_UNKNOWN = 0, 1, 2, 3, 4
T = TypeVar("T")


def reported(work: Callable[[], T]) -> T | None:
    """`work()`, or None once it has said why it could not run: the
    policies are invalid (one line per problem), or the cluster is not there."""
    try:
        return work()
    except ValueError as error:
        print(str(error), file=sys.stderr)
        print("error: the policies are invalid (one line per problem above)", file=sys.stderr)
    except (KubeError, KubeconfigError) as error:
        print(f"error: {error}", file=sys.stderr)
    return None


def valid_policies(settings: PlanSettings) -> list[Policy]:
    """The policies, to check an instant against; none when they are invalid
    (the evaluation reports that, one line per problem)."""
    try:
        policies, problems = check_configured_policies(settings)
    except (KubeError, KubeconfigError):
        return []  # the evaluation says why
    return [] if problems else list(policies)


def _instant(at: str | None, policies: Callable[[], list[Policy]]) -> tuple[datetime, datetime | None]:
    """(the instant evaluated, the instant the signals are read at: None for
    now); InstantError if it cannot be read or the policies cannot be worked
    out at it."""
    now = utc_now()
    if at is None:
        return now, None
    moment = instant(at, now=now, flag="--at")
    check_computable(policies(), moment, flag="--at")
    if moment > now:
        print(f"note: {rfc3339(moment)} is in the future: windows as of then, signals as of now", file=sys.stderr)
        return moment, None
    return moment, moment


def run_plan(settings: PlanSettings, *, output: str = "table", show_all: bool = False, at: str | None = None) -> int:
    # Log lines (a failed query, say) go to stderr, so `-o json` prints only the document on stdout.
    configure_logging(log_format="auto", level="warning")
    try:
        now, signals_at = _instant(at, lambda: valid_policies(settings))
    except InstantError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    found = reported(lambda: plan(settings, now=now, signals_at=signals_at))
    if found is None:
        return EXIT_ERROR
    evaluations, errors, failures = found
    evaluations.sort(key=lambda e: (not e.decision.changes, e.workload.namespace, e.workload.name))
    pending = [e for e in evaluations if e.decision.changes]
    shown = evaluations if show_all else pending + [e for e in evaluations if e.decision.action.value == "conflict"]
    prewarms = upcoming_prewarms(evaluations, now=now)
    blocked = [{"namespace": e.workload.namespace, "kind": e.workload.kind.name, "name": e.workload.name,
                "policy": e.decision.policy, "why": why} for e in evaluations
               if (why := (e.signals.why or {}).get("wake", "")).startswith("cannot wake")]
    if output in DOCUMENTS:
        print_document({"at": rfc3339(now), "signalsAt": rfc3339(signals_at or utc_now()),
                        "pending": len(pending), "evaluations": [e.as_dict() for e in shown], "signalErrors": errors,
                        "policyErrors": failures, "prewarms": prewarms,
                        "cannotWake": blocked}, output)
    elif output == "name":
        print_names((e.workload.kind.name, e.workload.name) for e in pending)
    else:
        _print_table(shown, pending, evaluations, failures=failures, prewarms=prewarms, errors=errors,
                     wide=output == "wide")
        for row in blocked:
            console().print(f"warning: {row['namespace']}/{row['name']} (policy {row['policy']}): {row['why']}")
        if at is not None:
            console().print(f"evaluated at {rfc3339(now)}, signals as of "
                            f"{rfc3339(signals_at) if signals_at else 'now'}; the workloads as they are now")
    if failures:
        return EXIT_ERROR
    if errors:
        print(f"unknown: {len(errors)} signal(s) could not be evaluated; what depends on them is held "
              "(exit 4)", file=sys.stderr)
        return EXIT_UNKNOWN
    return EXIT_PENDING if pending else EXIT_NO_CHANGES


def _print_table(shown: list[Evaluation], pending: list[Evaluation], evaluations: list[Evaluation], *,
                 failures: list[dict], prewarms: list[dict], errors: list[str], wide: bool) -> None:
    screen = console()
    if shown or failures:
        rows = []
        for e in shown:
            d = e.decision
            replicas = f"{e.workload.replicas} -> {d.replicas}" if d.changes else str(e.workload.replicas)
            rows.append((e.workload.namespace, e.workload.kind.name, e.workload.name, d.policy or "-",
                         d.action.value, replicas, str(e.gpus) if e.gpus else "",
                         *((str(d.reason_code),) if wide else ()), d.reason))
        rows += [("-", "-", "-", failure["policy"], "failed", "", "", *(("policy-failed",) if wide else ()),
                  f"{failure['source'] or 'policy'}: {failure['error']}; skipped, the others were evaluated")
                 for failure in failures]
        screen.print(table(("NAMESPACE", "KIND", "NAME", "POLICY", "ACTION", "REPLICAS", "GPUS",
                            *(("REASON CODE",) if wide else ()), "REASON"), rows))
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
