"""Batches of pause/resume for the CLI: select objects the way kubectl does,
run one operation per object with bounded concurrency, and report one row per
object. State-agnostic and idempotent: a mix of running and paused objects is
fine, and running the same batch twice changes nothing the second time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from scaler.cluster.kinds import WorkloadKind
from scaler.cluster.kinds.base import UnreadableSize
from scaler.cluster.kube import Forbidden, Kube, KubeError, NotFound
from scaler.cluster.workloads import DEFAULT_GPU_RESOURCES, Workload
from scaler.cluster.writes import Outcome, Result


@dataclass(frozen=True)
class Selection:
    kinds: Sequence[WorkloadKind]
    names: Sequence[str] = ()
    namespace: str | None = None  # None: all namespaces
    label_selector: str | None = None
    gpu_resources: tuple[str, ...] = DEFAULT_GPU_RESOURCES


def select(kube: Kube, selection: Selection, *,
           ignore_missing_kinds: bool = False) -> tuple[list[Workload], list[Result]]:
    """The objects a selection names, plus failed rows for names that match
    nothing (as kubectl fails on a name that does not exist).
    `ignore_missing_kinds` (kinds nobody asked for by name: `status` looks
    at every registered kind) leaves out a kind the API server does not
    serve, and one it may not list, with a skipped row saying so, unless it
    may list none of them."""
    found: list[Workload] = []
    problems: list[Result] = []
    forbidden: list[Forbidden] = []
    listed = 0
    for kind in selection.kinds:
        try:
            items, _ = kube.list(kind.resource, selection.namespace, label_selector=selection.label_selector)
        except NotFound:
            if ignore_missing_kinds:
                continue
            problems.append(Result(kind.name, selection.namespace or "", "*", Outcome.FAILED,
                                   f"the API server does not serve {kind.resource.qualified} "
                                   f"({kind.resource.api_version}): is its CRD installed?"))
            continue
        except Forbidden as error:
            # A NAME looked for in every kind: one kind it may not list is no reason to fail
            # a name found in another (one not found anywhere still fails, below).
            if not ignore_missing_kinds and not (selection.names and len(selection.kinds) > 1):
                raise
            forbidden.append(error)
            if ignore_missing_kinds:
                problems.append(Result(kind.name, selection.namespace or "", "*", Outcome.SKIPPED,
                                       f"not shown: {error}"))
            continue
        listed += 1
        for obj in items:
            if selection.names and obj["metadata"]["name"] not in selection.names:
                continue
            try:
                found.append(Workload(kind, obj, selection.gpu_resources))
            except UnreadableSize as error:  # named in its own row; the rest of the batch goes on
                problems.append(Result(kind.name, obj["metadata"].get("namespace", ""), obj["metadata"]["name"],
                                       Outcome.FAILED, f"its size cannot be read: {error}"))
    if forbidden and not listed:
        raise forbidden[0]
    return found, problems + _not_found(selection, [*found, *problems], [] if ignore_missing_kinds else forbidden)


def _not_found(selection: Selection, found: Sequence[Workload | Result], forbidden: list[Forbidden]) -> list[Result]:
    """A failed row per NAME found nowhere (`found`: the objects, and the rows of those unreadable);
    the 403 of a kind it may be in, if there was one."""
    problems = []
    for name in selection.names:
        if not any(w.name == name for w in found):
            if forbidden:
                raise forbidden[0]  # it may be there, in a kind it may not list
            kinds = "/".join(kind.name for kind in selection.kinds)
            where = f"namespace {selection.namespace}" if selection.namespace else "any namespace"
            problems.append(Result(kinds, selection.namespace or "", name, Outcome.FAILED,
                                   f"not found: no {kinds} named {name!r} in {where}"
                                   + (f" matching -l {selection.label_selector}" if selection.label_selector else "")))
    return problems


def run_batch(workloads: Iterable[Workload], operation: Callable[[Workload], Result], *,
              concurrency: int = 16, progress: bool = False, label: str = "working") -> list[Result]:
    """Apply operation to every workload, at most `concurrency` at once. API
    errors become rows (404 skipped, everything else failed), never a crash."""
    workloads = list(workloads)
    results: list[Result] = []

    def guarded(workload: Workload) -> Result:
        try:
            return operation(workload)
        except NotFound as error:
            return Result(workload.kind.name, workload.namespace, workload.name, Outcome.SKIPPED,
                          f"gone: {error} (deleted while the batch ran)")
        except KubeError as error:
            return Result(workload.kind.name, workload.namespace, workload.name, Outcome.FAILED, str(error),
                          replicas_before=workload.replicas)

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = [pool.submit(guarded, w) for w in workloads]
        if progress and workloads:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, transient=True) as bar:
                task = bar.add_task(label, total=len(futures))
                for future in as_completed(futures):
                    results.append(future.result())
                    bar.advance(task)
        else:
            results.extend(future.result() for future in as_completed(futures))
    return sort_results(results)


def sort_results(results: Iterable[Result]) -> list[Result]:
    return sorted(results, key=lambda r: (r.namespace, r.kind, r.name))


def wait_ready(kube: Kube, pairs: Sequence[tuple[Workload, Result, float]], *, timeout_seconds: float,
               poll_seconds: float = 0.5) -> None:
    """Health-gated resume: poll until each resumed workload has as many ready
    replicas as it was resumed to; fill in seconds_to_ready, or fail the row."""
    pending = {w.key: (w, r, started) for w, r, started in pairs}
    deadline = time.monotonic() + timeout_seconds
    last_ready: dict[tuple[str, str, str], int] = {}
    while pending:
        groups: dict[tuple[WorkloadKind, str], list] = {}
        for key, (w, r, started) in pending.items():
            groups.setdefault((w.kind, w.namespace), []).append((key, w, r, started))
        for (kind, namespace), members in groups.items():
            items, _ = kube.list(kind.resource, namespace)
            by_name = {obj["metadata"]["name"]: obj for obj in items}
            for key, w, r, started in members:
                obj = by_name.get(w.name)
                if obj is None:
                    r.outcome, r.reason = Outcome.FAILED, r.reason + "; deleted while waiting for it to be ready"
                    del pending[key]
                    continue
                ready = kind.ready_replicas(obj)
                last_ready[key] = ready
                if ready >= (r.replicas_after or 0):
                    r.seconds_to_ready = round(time.monotonic() - started, 2)
                    del pending[key]
        if not pending:
            return
        if time.monotonic() > deadline:
            for key, (_w, r, _) in pending.items():
                r.outcome = Outcome.FAILED
                r.reason += (f"; not ready after {timeout_seconds:g}s "
                             f"({last_ready.get(key, 0)}/{r.replicas_after} replicas ready)")
            return
        time.sleep(poll_seconds)
