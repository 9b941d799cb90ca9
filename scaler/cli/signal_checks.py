"""`scaler validate --check-signals`: each policy's signals asked of a live
Prometheus before the policies are deployed, so a wake signal that could
never wake anything is found then, not after a user waited (docs/cli.md).

A query that fails, series that name no workload (the namespace or workload
label missing), and a wake query with no series at all while its `absent` is
`unknown` are problems (exit 1). A wake query with no series and `absent:
zero` is a note: nobody waiting reads as zero for workloads at zero.
"""

from __future__ import annotations

from pathlib import Path

from scaler.decide.loading import PolicySet
from scaler.decide.policies import Absent
from scaler.decide.times import utc_now
from scaler.decide.wake_health import metric_names
from scaler.run.evaluating import queries_of
from scaler.run.settings import ClusterSettings, PlanSettings
from scaler.signals.prometheus import Prometheus
from scaler.signals.queries import seen_query


def check_signals(policies: PolicySet, prometheus: Prometheus) -> tuple[list[str], list[str]]:
    """(problems, notes): one line each, naming the policy and the signal."""
    problems, notes = [], []
    for policy in policies:
        for signal, sent in queries_of(policy):
            rule = policy.idle if signal == "idle" else policy.wake
            assert rule is not None
            # The idle expression per workload now: the idle query proper needs a whole window of data.
            query = seen_query(rule.query, namespace_label=rule.namespace_label,
                               workload_label=rule.workload_label) if signal == "idle" else sent
            where = f"policy {policy.name}, {signal} signal"
            vector = prometheus.vector(query)
            labels = f"{{{rule.namespace_label}=...,{rule.workload_label}=...}}"
            if vector.error is not None:
                problems.append(f"{where}: the query fails: {vector.error}")
                continue
            if vector.unmatched:
                problems.append(f"{where}: {vector.unmatched} series without the labels {rule.namespace_label} "
                                f"and {rule.workload_label}: they match no workload (map them with label_replace)")
            if vector.values:
                shown = ", ".join(f"{ns}/{wl}" for ns, wl in sorted(vector.values)[:5])
                more = f" and {len(vector.values) - 5} more" if len(vector.values) > 5 else ""
                notes.append(f"{where}: series for {len(vector.values)} workload(s): {shown}{more}")
                continue
            series = " or ".join(f"{metric}{labels}" for metric in metric_names(rule.query)[:3]) or \
                f"the query{labels}"
            if signal == "idle":
                notes.append(f"{where}: no series for {series} now (only running workloads need one)")
            elif policy.wake is not None and policy.wake.absent is Absent.ZERO:
                notes.append(f"{where}: no series for {series} now: read as nobody waiting (absent: zero)")
            elif not vector.unmatched:
                problems.append(f"{where}: cannot wake: no series for {series}: a workload at zero would never be "
                                "woken by it. Check the metric exists while the workload is at zero (a pod's own "
                                "metrics vanish with it) and its labels; declare absent: zero only if the request "
                                "holder exports nothing while nobody waits")
    return problems, notes


def add_wake_arguments(parser) -> None:
    """status --policies: which paused workloads their wake signal cannot wake."""
    parser.add_argument("--policies", action="append", type=Path, metavar="PATH",
                        help="with the policies (file or directory, repeatable) also ask Prometheus whether each "
                             "workload at zero can be woken: 'cannot wake: ...' in NOTE")
    parser.add_argument("--prometheus-url", metavar="URL",
                        help="with --policies (default: SCALER_PROMETHEUS_URL)")


def cannot_wake(cluster: ClusterSettings, args) -> dict[tuple[str, str, str], str]:
    """(kind, namespace, name) -> 'cannot wake: ...', evaluated as `scaler plan`
    does, for status. A failure is raised as ValueError, saying what failed."""
    from scaler.run.planning import plan  # the evaluation: only when asked for

    options = {**cluster.model_dump(), "policies": args.policies,
               **({"prometheus_url": args.prometheus_url} if args.prometheus_url else {})}
    evaluations, _, _ = plan(PlanSettings(**options), now=utc_now())
    return {(e.workload.kind.name, e.workload.namespace, e.workload.name): why for e in evaluations
            if (why := (e.signals.why or {}).get("wake", "")).startswith("cannot wake")}
