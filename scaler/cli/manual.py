"""`scaler pause`, `scaler resume` and `scaler status`: the manual side, in
kubectl's style. A manual pause is durable: the daemon honours it until a
manual resume, as KServe honours its stop annotation."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from scaler.cli.output import (
    DOCUMENTS,
    OUTPUTS,
    console,
    print_document,
    print_names,
    render_results,
    table,
)
from scaler.cli.scoping import (
    EXIT_ERROR,
    EXIT_OK,
    Scope,
    Stop,
    check_arguments,
    require_scope,
    scope,
)
from scaler.cli.signal_checks import add_wake_arguments, cannot_wake
from scaler.cluster.actions import DEFAULT_EVENT_TTL_SECONDS
from scaler.cluster.batches import run_batch, sort_results, wait_ready
from scaler.cluster.kube import KubeError
from scaler.cluster.nodes import NodesRecord
from scaler.cluster.nodes import summary as nodes_summary
from scaler.cluster.pausing import Pauser
from scaler.cluster.placing import Placement
from scaler.cluster.starts import warm_ups
from scaler.cluster.workloads import Workload
from scaler.cluster.writes import Outcome
from scaler.decide.annotations import (
    BACKOFF_UNTIL,
    HOLD_FROM,
    HOLD_UNTIL,
    NODE_WAIT,
    NODES,
    OVERRIDE_UNTIL,
    STARTED_AT,
)
from scaler.decide.decisions import MANUAL, unrestorable
from scaler.decide.kinds import BUILTIN_KINDS
from scaler.decide.reverts import (
    NEXT_WINDOW,
    HoldError,
    advice,
    backoff_until,
    hold_annotations,
    hold_until,
    reverted_by,
    reverts_of,
)
from scaler.decide.times import human_duration, parse_time
from scaler.run.settings import ClusterSettings, add_settings_arguments


def add_selection_arguments(parser: argparse.ArgumentParser, *, names: bool = True) -> None:
    if names:
        parser.add_argument("names", nargs="*", metavar="NAME",
                            help="workloads by name, or as kubectl's TYPE/NAME (deploy/llm, deployment.apps/llm)")
    scope_ = parser.add_mutually_exclusive_group()
    scope_.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig context's)")
    scope_.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    parser.add_argument("-l", "--selector", help="label selector, kubectl syntax (app=llm,tier!=dev)")
    parser.add_argument("--kind", action="append", dest="kinds", metavar="KIND",
                        help=f"{', '.join(BUILTIN_KINDS)}, or plural.group/version of a custom resource with "
                             "/scale; repeatable (default: Deployment and StatefulSet)")
    parser.add_argument("-o", "--output", choices=OUTPUTS, default="table")
    add_settings_arguments(parser, ClusterSettings)


def add_pause_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_arguments(parser)
    parser.add_argument("--all", action="store_true",
                        help="every workload selected by -n/-A (required without NAME or -l, as kubectl scale)")
    parser.add_argument("--reason", default="", help="why, recorded on the object and in its Event")
    parser.add_argument("--dry-run", action="store_true", help="show the whole selection and what would change, "
                                                               "write nothing")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def add_resume_arguments(parser: argparse.ArgumentParser) -> None:
    add_pause_arguments(parser)
    parser.add_argument("--wait", action="store_true", help="wait until the restored pods are Ready")
    parser.add_argument("--timeout", type=_positive_seconds, default=300,
                        help="seconds --wait waits (default 300)")
    parser.add_argument("--min-replicas", type=_positive_int, default=None,
                        help="replicas to resume to when no count was recorded (default 1; one paused "
                             "at 0 stays at 0 unless this is given)")
    hold = parser.add_mutually_exclusive_group()
    hold.add_argument("--for", dest="hold_for", metavar="DURATION",
                      help="keep it up this long (2h, 90m), then the policy applies again")
    hold.add_argument("--until", dest="hold_until", metavar="TIME",
                      help="keep it up until next-window (the policy's next window edge), HH:MM (local time) "
                           "or an RFC 3339 time, then the policy applies again")


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_arguments(parser, names=False)
    add_wake_arguments(parser)


def _fail(error: Stop) -> int:
    print(f"error: {error}", file=sys.stderr)
    return error.code


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (some containers)
        return f"uid {os.getuid()}"


def _report(results, *, args, verb: str) -> int:
    render_results(results, output=args.output, verb=verb, dry_run=getattr(args, "dry_run", False))
    failed = [r for r in results if r.outcome is Outcome.FAILED]
    for r in failed:
        print(f"failed: {r.kind}/{r.namespace}/{r.name}: {r.reason}", file=sys.stderr)
    return EXIT_ERROR if failed else EXIT_OK


def _post_owed(pauser: Pauser, selected: Scope, *, args) -> None:
    """Before acting, whose writes replace the records: the Events still owed
    for the actions recorded on the selection (a run of this command, or a
    daemon, killed between a write and its Event), from one LIST per
    namespace (with -A, one in all). Not checkable: a note."""
    if args.dry_run or not selected.workloads:
        return
    namespaces = [None] if args.all_namespaces else sorted({w.namespace for w in selected.workloads})
    refused: list[str] = []
    try:
        posted = pauser.post_owed(selected.workloads, namespaces=namespaces,
                                  now=datetime.now(UTC), ttl_seconds=DEFAULT_EVENT_TTL_SECONDS,
                                  note="posted by a later run: the one that acted stopped before it could",
                                  warnings=refused)
    except KubeError as error:
        print(f"note: the Events an earlier run may owe were not checked: {error}", file=sys.stderr)
        return
    if posted:
        print(f"note: posted {posted} Event{'s' if posted != 1 else ''} that an earlier run owed", file=sys.stderr)
    for why in refused:
        print(f"note: an Event an earlier run owed is still not posted: {why}", file=sys.stderr)


def run_pause(args) -> int:
    try:
        check_arguments(args)
        require_scope(args, verb="pause")
        selected = scope(args)
    except Stop as error:
        return _fail(error)
    reason = args.reason or f"paused manually by {_user()}"
    pauser = Pauser(selected.kube, placement=Placement(selected.kube))
    _post_owed(pauser, selected, args=args)
    results = run_batch(
        selected.workloads, lambda w: pauser.pause(w, by=MANUAL, reason=reason, dry_run=args.dry_run),
        concurrency=selected.settings.concurrency, progress=sys.stderr.isatty(), label="pausing")
    return _report(sort_results(results + selected.rows), args=args, verb="pause")


def local_zone() -> tzinfo:
    """This machine's time zone as IANA rules (so `--until 02:30` on a day
    the clocks change is placed as windows are): $TZ (a name or a file),
    else /etc/localtime, else just the offset in force now."""
    name = os.environ.get("TZ", "").removeprefix(":")
    try:
        if name and not name.startswith("/"):
            return ZoneInfo(name)
        with open(name or "/etc/localtime", "rb") as file:
            return ZoneInfo.from_file(file, key=name or "localtime")
    except (OSError, ValueError, ZoneInfoNotFoundError):  # e.g. a POSIX rule such as TZ=CET-1CEST
        zone = datetime.now(UTC).astimezone().tzinfo
        assert zone is not None
        return zone


def _hold(args) -> dict[str, str] | None:
    if args.hold_for is None and args.hold_until is None:
        return None
    try:
        return hold_annotations(for_text=args.hold_for, until_text=args.hold_until,
                                now=datetime.now(local_zone()))
    except HoldError as error:
        raise Stop(str(error), code=2) from None


def run_resume(args) -> int:
    try:
        hold = _hold(args)
        check_arguments(args)
        require_scope(args, verb="resume")
        selected = scope(args)
    except Stop as error:
        return _fail(error)
    reason = args.reason or f"resumed manually by {_user()}"
    pauser = Pauser(selected.kube)
    _post_owed(pauser, selected, args=args)
    started: dict[tuple[str, str, str], float] = {}

    def resume(workload):
        begun = time.monotonic()
        result = pauser.manual_resume(workload, reason=reason, minimum=args.min_replicas, hold=hold,
                                      dry_run=args.dry_run)
        started[(workload.kind.name, workload.namespace, workload.name)] = begun
        return result

    workloads = selected.workloads
    results = run_batch(workloads, resume, concurrency=selected.settings.concurrency,
                        progress=sys.stderr.isatty(), label="resuming")
    if args.wait and not args.dry_run:
        by_key = {(w.kind.name, w.namespace, w.name): w for w in workloads}
        pairs = [(by_key[(r.kind, r.namespace, r.name)], r, started[(r.kind, r.namespace, r.name)])
                 for r in results if r.outcome is Outcome.CHANGED and r.replicas_after and r.replicas_before == 0]
        try:
            wait_ready(selected.kube, pairs, timeout_seconds=args.timeout)
        except KubeError as error:
            return _fail(Stop(f"while waiting for readiness: {error}"))
    return _report(sort_results(results + selected.rows), args=args, verb="resume")


def _notes(w: Workload, now: datetime) -> dict:
    """What is true on the object beyond its size: who set it back, holds, back-offs."""
    a, record = w.annotations, w.record
    hold, backoff, override = hold_until(a), backoff_until(a), parse_time(a.get(OVERRIDE_UNTIL))
    writer = w.size_writer
    notes = []
    if w.replicas > 0 and record is not None:
        notes.append(f"set to {w.replicas} by {writer or 'someone'} after the pause (record left)")
    if record is not None and (why := unrestorable(a)):
        notes.append(f"{why}: a resume goes to a minimum instead")
    if reverted_by(a) and w.replicas == 0:
        notes.append(f"this pause holds, after {reverts_of(a)} revert(s) by {reverted_by(a)}")
    elif reverted_by(a):
        count = reverts_of(a)
        notes.append(f"reverted by {reverted_by(a)} ({count} time{'s' if count != 1 else ''} in a row); "
                     f"{advice(w.kind.size_field)}"
                     + (f"; no pause before {backoff:%Y-%m-%d %H:%M %Z}" if backoff and backoff > now else ""))
    if a.get(HOLD_UNTIL) == NEXT_WINDOW:  # its end depends on the policy, which status does not read
        notes.append(f"held up until the policy's next window edge after {a.get(HOLD_FROM)}")
    elif hold and hold > now:
        notes.append(f"held up until {hold:%Y-%m-%d %H:%M %Z}")
    if override and override > now:
        notes.append(f"hands off until {override:%Y-%m-%d %H:%M %Z} (changed by hand)")
    started = parse_time(a.get(STARTED_AT))
    if started and 0 < w.replicas and w.ready_replicas < w.replicas:
        notes.append(f"loading: {w.ready_replicas} of {w.replicas} Ready, "
                     f"{human_duration(max(now.timestamp() - started.timestamp(), 0))} since its start")
    wait = a.get(NODE_WAIT)
    return {"warmUps": warm_ups(a), "nodeWaitSeconds": float(wait) if wait and wait.isdigit() else None,
            "changedBy": writer, "revertedBy": reverted_by(a), "reverts": reverts_of(a) or None,
            "backoffUntil": a.get(BACKOFF_UNTIL), "holdUntil": a.get(HOLD_UNTIL),
            "overrideUntil": a.get(OVERRIDE_UNTIL), "notes": notes}


def _status_row(w: Workload, now: datetime) -> dict | None:
    """One workload as the cluster has it now, or None if scaler left nothing on it."""
    record = w.record
    extra = _notes(w, now)
    if record is None and not w.manual_pause and not extra["notes"] and not extra["revertedBy"]:
        return None
    paused = w.replicas == 0 and (record is not None or w.manual_pause)
    since = record.paused_at_datetime() if record and paused else None
    recorded = record.last_replicas if record else None
    return {
        "namespace": w.namespace, "kind": w.kind.name, "name": w.name,
        "state": "paused" if paused else ("running" if w.replicas else "at 0 (not paused by scaler)"),
        "replicas": w.replicas, "recorded": recorded,
        "pausedBy": ((record.paused_by if record else None) or MANUAL) if paused else None,
        "manual": w.manual_pause, "pausedAt": record.paused_at if record else None,
        "pausedForSeconds": int((now - since).total_seconds()) if since else None,
        "resumeTo": recorded if paused else None,
        "gpus": w.gpus(recorded or 0) if paused else 0,
        "reason": record.reason if record else None, **extra, **_nodes(w if paused else None),
    }


def _nodes(w: Workload | None) -> dict:
    """Where the GPUs a pause freed are: each node its pods ran on, released,
    reused or held (and by what), as the daemon's node follower last wrote."""
    record = NodesRecord.read(w.annotations, NODES) if w is not None else None
    if record is None:
        return {"nodes": [], "nodesSummary": None}
    return {"nodes": [node.as_json() for node in record.nodes], "nodesSummary": nodes_summary(record)}


def run_status(args) -> int:
    """What is true on the cluster now: replicas, the recorded size, who
    paused it, who set it back, holds and back-offs, and the GPUs held back."""
    try:
        selected = scope(args, all_kinds=True)
    except Stop as error:
        return _fail(error)
    now = datetime.now(UTC)
    rows = [row for w in sorted(selected.workloads, key=lambda w: (w.namespace, w.kind.name, w.name))
            if (row := _status_row(w, now)) is not None]
    if args.policies:
        try:
            wakes = cannot_wake(selected.settings, args)
        except (ValueError, OSError, KubeError) as error:
            return _fail(Stop(f"--policies: {error}"))
        for row in rows:
            if why := wakes.get((row["kind"], row["namespace"], row["name"])):
                row["notes"].append(why)
    paused = [r for r in rows if r["state"] == "paused"]
    gpus = sum(r["gpus"] for r in paused)
    problems = [r for r in selected.rows if r.outcome is Outcome.FAILED]
    if args.output in DOCUMENTS:
        print_document({"workloads": rows, "paused": paused, "gpusPaused": gpus}, args.output)
    elif args.output == "name":
        print_names((r["kind"], r["name"]) for r in rows)
    else:
        _status_table(rows, wide=args.output == "wide")
        others = len(rows) - len(paused)
        console().print(f"{len(paused)} paused; {gpus} GPUs paused"
                        + (f"; {others} running with scaler state" if others else ""))
    for problem in problems:
        print(f"failed: {problem.reason}", file=sys.stderr)
    for kind in [r for r in selected.rows if r.outcome is Outcome.SKIPPED and r.name == "*"]:
        print(f"note: {kind.kind} {kind.reason}", file=sys.stderr)  # a kind it may not list
    return EXIT_ERROR if problems else EXIT_OK


def _status_table(rows: list[dict], *, wide: bool) -> None:
    if not rows:
        return
    columns = ["NAMESPACE", "KIND", "NAME", "STATE", "REPLICAS", "RECORDED", "PAUSED BY", "SINCE", "GPUS",
               "WARM-UP", "NODES", "NOTE"]
    if wide:
        columns += ["WARM-UPS", "REPLICAS SET BY", "PAUSED AT", "HOLD UNTIL", "BACKOFF UNTIL", "NODE DETAIL"]
    lines = []
    for r in rows:
        by = (r["pausedBy"] + (" (durable)" if r["manual"] else "")) if r["pausedBy"] else "-"
        note = "; ".join(([r["reason"]] if r["reason"] and r["state"] == "paused" else []) + r["notes"])
        warm = r["warmUps"]  # the last start's warm-up: about what a resume takes now
        line = [r["namespace"], r["kind"], r["name"], r["state"], str(r["replicas"]), str(r["recorded"] or "-"),
                by, _ago(r["pausedForSeconds"]), str(r["gpus"]), f"{warm[-1]:.0f}s" if warm else "-",
                r["nodesSummary"] or "-", note]
        if wide:
            line += [_warm_ups(warm, r["nodeWaitSeconds"]), r["changedBy"] or "-", r["pausedAt"] or "-",
                     r["holdUntil"] or "-", r["backoffUntil"] or "-", _node_detail(r["nodes"])]
        lines.append(line)
    console().print(table(columns, lines))


def _warm_ups(warm: list[float], node_wait: float | None) -> str:
    """-o wide: the last warm-ups, the latest split into node and model when it waited for a node."""
    text = ", ".join(f"{value:.0f}s" for value in warm) or "-"
    if warm and node_wait is not None:
        text += f" (node {node_wait:.0f}s + model {max(warm[-1] - node_wait, 0):.0f}s)"
    return text


def _node_detail(nodes: list[dict]) -> str:
    """-o wide: every node, its GPUs and where it is."""
    parts = []
    for node in nodes:
        what = f"{node['instanceType'] or '?'}, {node['gpus'] if node['gpus'] is not None else '?'} GPUs"
        if node["state"] == "released":
            where = f"released {node['releasedAfterSeconds']:.0f}s after pause" if node["releasedAfterSeconds"] \
                is not None else "released"
        elif node["state"] == "reused":
            where = f"reused by pod {node['reusedBy']}"
        else:
            where = "held: " + ("; ".join(node["blockers"]) if node["checked"] else "not checked yet")
        parts.append(f"{node['name']} ({what}, {node['freedGpus']} freed): {where}")
    return " | ".join(parts) or "-"


def _ago(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"
