"""How the command line prints: one table style and one document style for
every command, so `-o json` / `-o yaml` is always one document on stdout, a
table always reads the same, and `-o name` is kubectl's `kind.group/name`
per line (to pipe into kubectl or xargs).

Forms, as kubectl means them: table, wide (the table with more columns),
json, yaml, name."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import IO, Any

from scaler.cluster.kinds import resolve_kind
from scaler.cluster.writes import Outcome, Result

OUTPUTS = ("table", "wide", "json", "yaml", "name")
DOCUMENTS = ("json", "yaml")


def console(stream: IO[str] | None = None):
    """A rich console on `stream`: the terminal's width on a TTY, wide and
    colourless in a pipe or a file, so lines are not folded for scripts."""
    from rich.console import Console

    stream = stream or sys.stdout
    # In a pipe, as wide as the rows are: a folded cell would split the line a script greps.
    return Console(file=stream, width=None if stream.isatty() else 100_000, highlight=False, soft_wrap=False)


def table(columns: Sequence[str], rows: Iterable[Sequence[str]]):
    """kubectl's look: upper-case headers, no borders."""
    from rich.table import Table

    grid = Table(box=None, pad_edge=False, show_edge=False)
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*row)
    return grid


def print_json(data: Any, stream: IO[str] | None = None) -> None:
    stream = stream or sys.stdout
    json.dump(data, stream, indent=2)
    stream.write("\n")


def print_document(data: Any, output: str, stream: IO[str] | None = None) -> None:
    """`-o json` or `-o yaml`: the same document either way."""
    if output == "yaml":
        import yaml

        (stream or sys.stdout).write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
    else:
        print_json(data, stream)


def resource_name(kind: str, name: str) -> str:
    """kubectl's `-o name`: deployment.apps/chat, or <plural>.<group>/name for a custom resource."""
    try:
        resolved = resolve_kind(kind)
    except ValueError:
        return f"{kind.lower()}/{name}"
    resource = resolved.resource
    singular = resolved.name.lower() if "/" not in resolved.name else resource.plural
    return f"{singular}.{resource.group}/{name}" if resource.group else f"{singular}/{name}"


def print_names(rows: Iterable[tuple[str, str]], stream: IO[str] | None = None) -> None:
    stream = stream or sys.stdout
    for kind, name in rows:
        stream.write(resource_name(kind, name) + "\n")


def summary(results: Sequence[Result], *, verb: str) -> dict:
    counts = {outcome.value: 0 for outcome in Outcome}
    for result in results:
        counts[result.outcome.value] += 1
    gpus = sum(r.gpus for r in results if r.outcome in (Outcome.CHANGED, Outcome.WOULD_CHANGE))
    return {**counts, "gpus": gpus, "verb": verb}


def render_results(results: Sequence[Result], *, output: str, verb: str, dry_run: bool = False,
                   stream: IO[str] | None = None) -> None:
    """A batch's rows and its summary line. `-o name` lists the objects that
    changed (or would); `-o wide` adds the time to ready and warnings as columns."""
    totals = summary(results, verb=verb)
    if output in DOCUMENTS:
        print_document({"results": [r.as_dict() for r in results], "summary": totals, "dryRun": dry_run},
                       output, stream)
        return
    if output == "name":
        print_names(((r.kind, r.name) for r in results if r.outcome in (Outcome.CHANGED, Outcome.WOULD_CHANGE)),
                    stream)
        return
    wide = output == "wide"
    show_ready = wide or any(r.seconds_to_ready is not None for r in results)
    columns = ("NAMESPACE", "KIND", "NAME", "RESULT", "REPLICAS", "GPUS", *(("READY IN",) if show_ready else ()),
               "REASON", *(("WARNINGS",) if wide else ()))
    rows = []
    for r in results:
        replicas = "" if r.replicas_before is None else (
            f"{r.replicas_before}" if r.replicas_after in (None, r.replicas_before)
            else f"{r.replicas_before} -> {r.replicas_after}")
        row = [r.namespace, r.kind, r.name, r.outcome.value, replicas, str(r.gpus) if r.gpus else ""]
        if show_ready:
            row.append("" if r.seconds_to_ready is None else f"{r.seconds_to_ready:.1f}s")
        if wide:
            row += [r.reason, "; ".join(r.warnings)]
        else:
            row.append(r.reason + "".join(f" (warning: {w})" for w in r.warnings))
        rows.append(row)
    screen = console(stream)
    screen.print(table(columns, rows))
    freed = "GPUs freed" if verb == "pause" else "GPUs claimed"
    prefix = "dry run: " if dry_run else ""
    screen.print(
        f"{prefix}{totals['changed'] + totals['would-change']} {'would change' if dry_run else 'changed'}, "
        f"{totals['unchanged']} unchanged, {totals['skipped']} skipped, {totals['failed']} failed; "
        f"{totals['gpus']} {freed}"
    )
