"""`scaler backtest`: what the policies would have done over a past period,
workload by workload: GPU-hours used against always up, pauses, wakes,
flaps, and the demand that met a paused workload and how long it waited.

Exit codes: 0 replayed; 4 some signal data could not be read (those steps
are unknown in the replay, and held as the daemon would hold); 1 error (bad
policies, an unreachable cluster, a namespace that does not exist, a policy
that failed); 2 usage (an unreadable time, duration or selector, a period
that is not one, a --chart path that cannot be written).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from scaler.cli.instants import InstantError, check_computable, duration, instant
from scaler.cli.output import console, print_document, table
from scaler.cli.plan import reported, valid_policies
from scaler.cli.scoping import Stop, check_namespace
from scaler.cluster.kube import KubeconfigError, KubeError
from scaler.decide.decisions import Action
from scaler.decide.replaying import Replay, Steps
from scaler.decide.selectors import Selector, SelectorError
from scaler.decide.times import human_duration, rfc3339, utc_now
from scaler.run.backtesting import Backtest, Scope, backtest
from scaler.run.observability import configure_logging
from scaler.run.settings import PlanSettings, add_settings_arguments

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_UNKNOWN = 0, 1, 2, 4
#: Where a workload's size at the start came from.
START_FROM_HISTORY, START_FROM_TODAY = "kube-state-metrics", "today (no history)"
#: More steps than this is refused: a year at one minute.
MAX_STEPS = 366 * 1440


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, PlanSettings)
    parser.add_argument("--from", dest="start", required=True,
                        help="start of the period: RFC 3339 with a zone (2026-11-16T00:00:00Z), "
                             "or now-7d (also --from=-7d)")
    parser.add_argument("--to", dest="end", default="now", help="end of the period (default now)")
    parser.add_argument("--step", default="1m", help="one evaluation per step (default 1m; the daemon's "
                                                     "evaluation interval is the closest to what it does)")
    parser.add_argument("-n", "--namespace", help="only workloads in this namespace")
    parser.add_argument("-l", "--selector", help="only workloads with these labels (kubectl's syntax)")
    parser.add_argument("--warm-up", help="start to Ready for workloads without measured warm-ups "
                                          "(scaler.io/warm-up-seconds); default 0s")
    parser.add_argument("--flap-window", default="15m",
                        help="a pause undone by a wake (or a wake by a pause) this soon is a flap (default 15m)")
    parser.add_argument("-o", "--output", choices=("table", "wide", "json", "yaml"), default="table",
                        help="wide: also every action, with its reason")
    parser.add_argument("--chart", metavar="FILE", help="also write a timeline per workload, self-contained HTML")


def _period(args: argparse.Namespace, now: datetime) -> tuple[Steps, float | None, float]:
    start = instant(args.start, now=now, flag="--from")
    end = instant(args.end, now=now, flag="--to")
    step = duration(args.step, flag="--step")
    if step < 1 or step != int(step):
        raise InstantError(f"--step: {args.step!r}: a step is whole seconds, 1s or more")
    if end <= start:
        raise InstantError(f"--to {rfc3339(end)} is not after --from {rfc3339(start)}")
    if end > now:
        raise InstantError(f"--to {rfc3339(end)} is in the future: history ends now ({rfc3339(now)})")
    start, end = start.replace(microsecond=0), end.replace(microsecond=0)
    if end <= start:
        raise InstantError(f"--to {rfc3339(end)} is not a whole second after --from {rfc3339(start)}")
    count = int((end - start).total_seconds() // step) + 1
    if count > MAX_STEPS:
        raise InstantError(f"{count} steps of {human_duration(step)}: more than {MAX_STEPS}; take a longer --step")
    warm_up = duration(args.warm_up, flag="--warm-up") if args.warm_up else None
    return Steps(start, int(step), count, until=end), warm_up, duration(args.flap_window, flag="--flap-window")


def run_backtest(settings: PlanSettings, *, options: argparse.Namespace) -> int:
    args = options
    configure_logging(log_format="auto", level="warning")
    now = utc_now()
    try:
        steps, warm_up, flap_seconds = _period(args, now)
        selector = Selector.parse(args.selector) if args.selector else None
        if args.chart:
            from scaler.cli.timeline import check_chart

            check_chart(args.chart)  # before the work, not after it
        check_computable(valid_policies(settings), steps.start, flag="--from")
    except (InstantError, SelectorError, ValueError) as error:  # check_chart: ValueError names the path
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeError as error:  # check_chart: plotly is not installed
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    if args.namespace is not None and not _namespace_exists(settings, args.namespace):
        return EXIT_ERROR
    with _progress() as (progress, on_plan):
        result = reported(lambda: backtest(settings, steps=steps, now=now, scope=Scope(args.namespace, selector),
                                           declared_warm_up=warm_up, keep_points=bool(args.chart),
                                           progress=progress, on_plan=on_plan))
    if result is None:
        return EXIT_ERROR
    document = summary(result, flap_seconds=flap_seconds)
    if args.output in ("json", "yaml"):
        print_document(document, args.output)
    else:
        _print_table(document, wide=args.output == "wide")
    if args.chart:
        from scaler.cli.timeline import write_timeline

        write_timeline(args.chart, result)
        print(f"timeline written to {args.chart}", file=sys.stderr)
    for message in result.signal_errors:
        print(f"warning: signal unknown (held): {message}", file=sys.stderr)
    for message in result.warnings:
        print(f"warning: {message}", file=sys.stderr)
    if result.failures:
        return EXIT_ERROR
    return EXIT_UNKNOWN if result.signal_errors else EXIT_OK


def _namespace_exists(settings: PlanSettings, namespace: str) -> bool:
    """`-n nope` is an error, as for `scaler status`, not an empty replay;
    False once it has said why."""
    try:
        check_namespace(settings.kube(), namespace)
    except (Stop, KubeError, KubeconfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return False
    return True


@contextmanager
def _progress() -> Iterator[tuple[Callable[[str, int], None], Callable[[int, int], None]]]:
    """A progress bar on a terminal (stderr); silence anywhere else."""
    if not sys.stderr.isatty():
        yield (lambda what, done: None), (lambda signals, workloads: None)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console(sys.stderr), transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def on_plan(signals: int, workloads: int) -> None:
            tasks["signals"] = bar.add_task("range queries", total=signals)
            tasks["workloads"] = bar.add_task("replaying", total=workloads)

        yield (lambda what, done: bar.advance(tasks[what], done) if what in tasks else None), on_plan


def workload_summary(replay: Replay, *, flap_seconds: float) -> dict:
    s, steps = replay.subject, replay.steps
    waits = [wait.seconds for wait in replay.waits]
    return {
        "namespace": s.state.namespace, "kind": s.state.kind, "name": s.state.name, "policy": s.policy.name,
        "size": s.size, "gpusPerReplica": s.gpus_per_replica,
        "warmUpSeconds": round(s.warm_up_seconds, 1), "warmUpSource": s.warm_up_source,
        "startReplicas": s.size if s.start_replicas is None else s.start_replicas,
        "startSizeFrom": START_FROM_TODAY if s.start_replicas is None else START_FROM_HISTORY,
        "gpuHours": round(replay.gpu_hours, 3), "gpuHoursAlwaysUp": round(replay.gpu_hours_always_up, 3),
        "gpuHoursSaved": round(replay.gpu_hours_saved, 3),
        "pauses": replay.count(Action.PAUSE), "wakes": replay.count(Action.RESUME),
        "scaleUps": replay.count(Action.SCALE_UP), "flaps": replay.flaps(flap_seconds),
        "demandWhilePaused": len(waits), "waitSecondsTotal": round(sum(waits), 1),
        "waitSecondsWorst": round(max(waits), 1) if waits else 0.0,
        "stillWaitingAtEnd": sum(1 for wait in replay.waits if wait.served is None),
        "unknownSteps": replay.unknown_steps, "unknownPercent": round(100 * replay.unknown_steps / steps.count, 1),
        "actions": [{"at": rfc3339(act.at), "action": act.action.value, "from": act.before, "to": act.after,
                     "reasonCode": str(act.code), "reason": act.reason} for act in replay.acts],
    }


def summary(result: Backtest, *, flap_seconds: float) -> dict:
    """The backtest as one document (-o json/yaml; the table shows the same)."""
    rows = [workload_summary(replay, flap_seconds=flap_seconds) for replay in result.replays]
    used, up = sum(r["gpuHours"] for r in rows), sum(r["gpuHoursAlwaysUp"] for r in rows)
    return {
        "from": rfc3339(result.steps.start), "to": rfc3339(result.steps.end),
        "stepSeconds": result.steps.step_seconds, "steps": result.steps.count,
        "flapWindowSeconds": flap_seconds, "prometheusRequests": result.requests,
        "total": {"workloads": len(rows), "gpuHours": round(used, 3), "gpuHoursAlwaysUp": round(up, 3),
                  "gpuHoursSaved": round(up - used, 3), "savedPercent": round(100 * (up - used) / up, 1) if up else 0.0,
                  "pauses": sum(r["pauses"] for r in rows), "wakes": sum(r["wakes"] for r in rows),
                  "flaps": sum(r["flaps"] for r in rows),
                  "demandWhilePaused": sum(r["demandWhilePaused"] for r in rows),
                  "waitSecondsWorst": max((r["waitSecondsWorst"] for r in rows), default=0.0),
                  "unknownSteps": sum(r["unknownSteps"] for r in rows)},
        "workloads": rows, "signalErrors": result.signal_errors, "policyErrors": result.failures,
        "warnings": result.warnings,
    }


def _hours(value: float) -> str:
    return f"{value:,.2f}"


def _print_table(document: dict, *, wide: bool) -> None:
    screen = console()
    rows = [(r["namespace"], r["name"], r["policy"], _hours(r["gpuHours"]), _hours(r["gpuHoursAlwaysUp"]),
             _hours(r["gpuHoursSaved"]), str(r["pauses"]), str(r["wakes"]), str(r["flaps"]),
             str(r["demandWhilePaused"]), human_duration(r["waitSecondsWorst"]) if r["demandWhilePaused"] else "-",
             f"{r['warmUpSeconds']:g}s {r['warmUpSource']}",
             f"{r['startReplicas']} {'history' if r['startSizeFrom'] == START_FROM_HISTORY else 'today'}",
             f"{r['unknownPercent']:g}%" if r["unknownSteps"] else "-")
            for r in document["workloads"]]
    rows += [("-", "-", f["policy"], "", "", "", "", "", "", "", "", "", "", f"failed: {f['source'] or 'policy'}: "
              f"{f['error']}") for f in document["policyErrors"]]
    screen.print(table(("NAMESPACE", "NAME", "POLICY", "GPU-H USED", "ALWAYS UP", "SAVED", "PAUSES", "WAKES",
                        "FLAPS", "DEMAND AT 0", "WORST WAIT", "WARM-UP", "START", "UNKNOWN"), rows))
    total = document["total"]
    screen.print(f"{document['from']} to {document['to']}, {document['steps']} steps of "
                 f"{human_duration(document['stepSeconds'])}, {total['workloads']} workload(s): "
                 f"{_hours(total['gpuHoursSaved'])} of {_hours(total['gpuHoursAlwaysUp'])} GPU-hours saved "
                 f"({total['savedPercent']:g}%), {total['pauses']} pauses, {total['wakes']} wakes, "
                 f"{total['flaps']} flaps; {document['prometheusRequests']} Prometheus requests")
    known = sum(1 for r in document["workloads"] if r["startSizeFrom"] == START_FROM_HISTORY)
    if document["workloads"]:
        screen.print(f"start size: from kube-state-metrics for {known}, today's (no history) for "
                     f"{len(document['workloads']) - known} workload(s)")
    if wide:
        for r in document["workloads"]:
            for act in r["actions"]:
                screen.print(f"{act['at']}  {r['namespace']}/{r['name']}  {act['action']} {act['from']} -> "
                             f"{act['to']}  {act['reason']}")
