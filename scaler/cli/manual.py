"""`scaler pause`, `scaler resume` and `scaler status`: the manual side, in
kubectl's style. A manual pause is durable: the daemon honours it until a
manual resume, as KServe honours its stop annotation."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from datetime import datetime, timezone

from scaler.cli.output import OUTPUTS, console, print_json, render_results, table
from scaler.cluster.batches import (
    Selection,
    run_batch,
    select,
    sort_results,
    wait_ready,
)
from scaler.cluster.discovery import KindError, KindResolver
from scaler.cluster.kube import Kube, KubeError
from scaler.cluster.pausing import Pauser
from scaler.cluster.workloads import KINDS
from scaler.cluster.writes import Outcome
from scaler.decide.decisions import MANUAL
from scaler.decide.kinds import DEFAULT_KINDS, UnknownKind
from scaler.run.settings import (
    ClusterSettings,
    SettingsError,
    add_settings_arguments,
    settings_from,
)


def add_selection_arguments(parser: argparse.ArgumentParser, *, names: bool = True) -> None:
    if names:
        parser.add_argument("names", nargs="*", metavar="NAME", help="workloads by name (default: all selected)")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig context's)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    parser.add_argument("-l", "--selector", help="label selector, kubectl syntax (app=llm,tier!=dev)")
    parser.add_argument("--kind", action="append", dest="kinds", metavar="KIND",
                        help="Deployment, StatefulSet, InferenceService, or plural.group/version of a "
                             "custom resource with /scale; repeatable (default: Deployment and StatefulSet)")
    parser.add_argument("-o", "--output", choices=OUTPUTS, default="table")
    add_settings_arguments(parser, ClusterSettings)


def add_pause_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_arguments(parser)
    parser.add_argument("--reason", default="", help="why, recorded on the object and in its Event")
    parser.add_argument("--dry-run", action="store_true", help="show what would change, write nothing")


def add_resume_arguments(parser: argparse.ArgumentParser) -> None:
    add_pause_arguments(parser)
    parser.add_argument("--wait", action="store_true", help="wait until the restored pods are Ready")
    parser.add_argument("--timeout", type=float, default=300, help="seconds --wait waits (default 300)")
    parser.add_argument("--min-replicas", type=int, default=1,
                        help="replicas to resume to when no count was recorded (default 1)")


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_arguments(parser, names=False)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _connect(args) -> tuple[Kube, Selection, ClusterSettings]:
    settings = settings_from(args, ClusterSettings)
    kube = settings.kube()
    resolve = KindResolver(kube)  # a custom resource is sized where its CRD's /scale says
    kinds = [resolve(text) for text in (args.kinds or DEFAULT_KINDS)]
    namespace = None if args.all_namespaces else (args.namespace or kube.default_namespace)
    selection = Selection(kinds=kinds, names=tuple(getattr(args, "names", ()) or ()), namespace=namespace,
                          label_selector=args.selector, gpu_resources=tuple(settings.gpu_resources))
    return kube, selection, settings


class _Stop(Exception):
    """A problem that ends the command before any object is touched."""


def _selected(args, *, all_kinds: bool = False) -> tuple[Kube, ClusterSettings, list, list]:
    """Connect and select; `all_kinds` (status) looks at every registered
    kind whose API exists, unless --kind narrows it."""
    try:
        kube, selection, settings = _connect(args)
        if all_kinds and not args.kinds:
            selection = Selection(kinds=list(KINDS.values()), namespace=selection.namespace,
                                  label_selector=selection.label_selector, gpu_resources=selection.gpu_resources)
        workloads, problems = select(kube, selection, ignore_missing_kinds=all_kinds and not args.kinds)
    except (UnknownKind, KubeError, KindError, SettingsError) as error:
        raise _Stop(str(error)) from None
    except Exception as error:  # kubeconfig problems come as several exception types
        raise _Stop(f"cannot reach the cluster: {error}") from None
    return kube, settings, workloads, problems


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
    return 1 if failed else 0


def run_pause(args) -> int:
    try:
        kube, settings, workloads, problems = _selected(args)
    except _Stop as error:
        return _fail(str(error))
    reason = args.reason or f"paused manually by {_user()}"
    pauser = Pauser(kube)
    results = run_batch(
        workloads, lambda w: pauser.pause(w, by=MANUAL, reason=reason, dry_run=args.dry_run),
        concurrency=settings.concurrency, progress=sys.stderr.isatty(), label="pausing")
    return _report(sort_results(results + problems), args=args, verb="pause")


def run_resume(args) -> int:
    try:
        kube, settings, workloads, problems = _selected(args)
    except _Stop as error:
        return _fail(str(error))
    reason = args.reason or f"resumed manually by {_user()}"
    pauser = Pauser(kube)
    started: dict[tuple[str, str, str], float] = {}

    def resume(workload):
        begun = time.monotonic()
        result = pauser.resume(workload, by=MANUAL, reason=reason, fallback_replicas=args.min_replicas,
                               dry_run=args.dry_run)
        started[(workload.kind.name, workload.namespace, workload.name)] = begun
        return result

    results = run_batch(workloads, resume, concurrency=settings.concurrency,
                        progress=sys.stderr.isatty(), label="resuming")
    if args.wait and not args.dry_run:
        by_key = {(w.kind.name, w.namespace, w.name): w for w in workloads}
        pairs = [(by_key[(r.kind, r.namespace, r.name)], r, started[(r.kind, r.namespace, r.name)])
                 for r in results if r.outcome is Outcome.CHANGED and r.replicas_after]
        try:
            wait_ready(kube, pairs, timeout_seconds=args.timeout)
        except KubeError as error:
            return _fail(f"while waiting for readiness: {error}")
    return _report(sort_results(results + problems), args=args, verb="resume")


def run_status(args) -> int:
    """What is paused, by whom, since when, what a resume restores, and the
    GPUs it holds back."""
    try:
        _, _, workloads, problems = _selected(args, all_kinds=True)
    except _Stop as error:
        return _fail(str(error))
    now = datetime.now(timezone.utc)
    rows = []
    for w in sorted(workloads, key=lambda w: (w.namespace, w.kind.name, w.name)):
        record = w.record
        if record is None and not w.manual_pause:
            continue
        since = record.paused_at_datetime() if record else None
        resume_to = record.last_replicas if record and record.last_replicas else None
        rows.append({
            "namespace": w.namespace, "kind": w.kind.name, "name": w.name,
            "replicas": w.replicas,
            "pausedBy": (record.paused_by if record else None) or MANUAL,
            "manual": w.manual_pause,
            "pausedAt": record.paused_at if record else None,
            "pausedForSeconds": int((now - since).total_seconds()) if since else None,
            "resumeTo": resume_to,
            "gpus": w.gpus(resume_to or 0),
            "reason": record.reason if record else None,
            "humanOverride": w.replicas > 0,
        })
    if args.output == "json":
        print_json({"paused": rows, "gpusPaused": sum(r["gpus"] for r in rows)})
    else:
        lines = []
        for r in rows:
            note = f" (now at {r['replicas']}: changed by hand)" if r["humanOverride"] else ""
            lines.append((r["namespace"], r["kind"], r["name"], r["pausedBy"] + (" (durable)" if r["manual"] else ""),
                          _ago(r["pausedForSeconds"]), str(r["resumeTo"] or "-"), str(r["gpus"]),
                          (r["reason"] or "") + note))
        screen = console()
        if rows:
            screen.print(table(("NAMESPACE", "KIND", "NAME", "PAUSED BY", "SINCE", "RESUME TO", "GPUS", "REASON"),
                               lines))
        screen.print(f"{len(rows)} paused; {sum(r['gpus'] for r in rows)} GPUs paused")
    for problem in problems:
        print(f"failed: {problem.reason}", file=sys.stderr)
    return 1 if problems else 0


def _ago(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"
