"""What a command may touch, and every way of getting there wrong, named.

Checked in order, each before the first request it would spoil: the
selector's syntax (with the column), the kinds (with the list of known
ones), the settings, the kubeconfig (missing, unreadable, empty, garbage, no
current context), the API server (with its URL), the namespace. Then the
selection itself, minus what the daemon would never touch either
(`decisions.is_excluded`: the excluded namespaces and `scaler.io/exclude`),
which comes back as skipped rows saying why.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from scaler.cluster.batches import Selection, select
from scaler.cluster.discovery import KindError, KindResolver
from scaler.cluster.kinds import KINDS, WorkloadKind, resolve_kind
from scaler.cluster.kube import Forbidden, Kube, KubeconfigError, KubeError, NotFound
from scaler.cluster.views import NAMESPACES
from scaler.cluster.workloads import Workload
from scaler.cluster.writes import Outcome, Result
from scaler.decide.annotations import EXCLUDE
from scaler.decide.decisions import WorkloadState, is_excluded
from scaler.decide.kinds import DEFAULT_KINDS, UnknownKind
from scaler.decide.selectors import Selector, SelectorError
from scaler.run.settings import ClusterSettings, SettingsError, settings_from

#: Exit codes, one table for every command (README "Exit codes").
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class Stop(Exception):
    """A problem that ends the command before any object is touched; `code`
    is the exit code (1 error, 2 usage)."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Scope:
    kube: Kube
    settings: ClusterSettings
    #: the workloads to act on
    workloads: list[Workload]
    #: rows for what was selected but not acted on: not found (failed), excluded (skipped)
    rows: list[Result]


def typed_names(args: argparse.Namespace) -> dict[str, tuple[str, ...]] | None:
    """kubectl's TYPE/NAME form (`deploy/llm sts/db`): the names by kind
    text, when every NAME has a type; None when none has one."""
    names = getattr(args, "names", None) or ()
    typed = [name for name in names if "/" in name]
    if not typed:
        return None
    if len(typed) != len(names):
        raise Stop("give every NAME as TYPE/NAME (deploy/llm), or none of them and --kind", EXIT_USAGE)
    if args.kinds:
        raise Stop("--kind and TYPE/NAME both give the kind: use one of them", EXIT_USAGE)
    grouped: dict[str, tuple[str, ...]] = {}
    for text in names:
        kind, _, name = text.rpartition("/")  # a kind may hold a slash (deployments.apps/v1), a name may not
        if not kind or not name:
            raise Stop(f"{text!r}: expected TYPE/NAME, e.g. deploy/llm", EXIT_USAGE)
        grouped[kind] = (*grouped.get(kind, ()), name)
    return grouped


def check_arguments(args: argparse.Namespace) -> None:
    """What can be checked without the cluster."""
    if args.selector is not None:
        try:
            Selector.parse(args.selector)
        except SelectorError as error:
            raise Stop(str(error), EXIT_USAGE) from None
    try:
        for text in [*(args.kinds or ()), *(typed_names(args) or ())]:
            resolve_kind(text)
    except UnknownKind as error:
        raise Stop(str(error), EXIT_USAGE) from None


def require_scope(args: argparse.Namespace, *, verb: str) -> None:
    """As `kubectl scale`: a bulk write names its objects, selects them, or
    says --all, one of them: as kubectl, a name is not combined with -l or
    --all (which would it mean?), nor looked up in every namespace. A dry
    run cannot hurt, so it may show the whole selection."""
    given = [flag for flag, value in (("NAME", args.names), ("-l", args.selector), ("--all", args.all)) if value]
    if len(given) > 1:
        raise Stop(f"{verb}: {' and '.join(given)} cannot be given together: name the workloads, select them "
                   f"(-l SELECTOR), or pass --all", EXIT_USAGE)
    if args.names and args.all_namespaces:
        raise Stop(f"{verb}: a workload cannot be named across all namespaces (-A): "
                   f"give its namespace with -n, or select with -l", EXIT_USAGE)
    if given or args.dry_run:
        return
    where = "every namespace" if args.all_namespaces else f"namespace {args.namespace}" if args.namespace \
        else "the current namespace"
    raise Stop(f"refusing to {verb} every workload in {where}: name them (NAME...), select them (-l SELECTOR), "
               f"or pass --all; --dry-run shows what --all would {verb}", EXIT_USAGE)


def connect(args: argparse.Namespace) -> tuple[Kube, ClusterSettings]:
    check_arguments(args)
    try:
        settings = settings_from(args, ClusterSettings)
        return settings.kube(), settings
    except (SettingsError, KubeconfigError) as error:
        raise Stop(str(error)) from None


def check_namespace(kube: Kube, namespace: str) -> None:
    """`-n nope` is an error, not an empty table. Without the right to read
    namespaces, the LIST that follows answers for it."""
    try:
        kube.get(NAMESPACES, None, namespace)
    except NotFound:
        raise Stop(f"namespace {namespace!r} not found") from None
    except Forbidden:
        pass
    except KubeError as error:
        raise Stop(str(error)) from None


def exclusion(workload: Workload, excluded_namespaces: set[str]) -> str | None:
    """Why the daemon would never touch it, or None: the same rule (is_excluded)."""
    state = WorkloadState(kind=workload.kind.key, namespace=workload.namespace, name=workload.name,
                          annotations=workload.annotations)
    if not is_excluded(state, excluded_namespaces=excluded_namespaces):
        return None
    if workload.namespace in excluded_namespaces:
        return (f"excluded: namespace {workload.namespace} is never touched "
                f"(excluded namespaces: {', '.join(sorted(excluded_namespaces))})")
    return f'excluded: annotated {EXCLUDE}: "true"; never touched'


def scope(args: argparse.Namespace, *, all_kinds: bool = False) -> Scope:
    """Connect, check the namespace, select; `all_kinds` (status) looks at
    every registered kind whose API exists, unless --kind narrows it."""
    kube, settings = connect(args)
    resolve = KindResolver(kube)  # a custom resource is sized where its CRD's /scale says
    typed = typed_names(args)
    try:
        if typed:  # one selection per kind, each with its own names; two spellings of a kind are one
            by_kind: dict[str, tuple[WorkloadKind, tuple[str, ...]]] = {}
            for text, names in typed.items():
                kind = resolve(text)
                _, before = by_kind.get(kind.key, (kind, ()))
                by_kind[kind.key] = (kind, tuple(dict.fromkeys(before + names)))
            groups = [([kind], names) for kind, names in by_kind.values()]
        else:
            kinds = list(KINDS.values()) if all_kinds and not args.kinds else \
                [resolve(text) for text in (args.kinds or DEFAULT_KINDS)]
            groups = [(kinds, tuple(getattr(args, "names", ()) or ()))]
    except KindError as error:  # a kind given as an argument that scaler cannot scale
        raise Stop(str(error), EXIT_USAGE) from None
    except KubeError as error:
        raise Stop(str(error)) from None
    namespace = None if args.all_namespaces else (args.namespace or kube.default_namespace)
    workloads, rows = [], []
    try:
        if namespace is not None:
            check_namespace(kube, namespace)
        for kinds, names in groups:
            selection = Selection(kinds=kinds, names=names, namespace=namespace, label_selector=args.selector,
                                  gpu_resources=tuple(settings.gpu_resources))
            found, failed = select(kube, selection, ignore_missing_kinds=all_kinds and not args.kinds and not typed)
            workloads += found
            rows += failed
    except KubeError as error:
        raise Stop(str(error)) from None
    excluded = settings.all_excluded_namespaces
    kept = []
    for workload in workloads:
        why = exclusion(workload, excluded)
        if why is None:
            kept.append(workload)
        else:
            rows.append(Result(workload.kind.name, workload.namespace, workload.name, Outcome.SKIPPED, why,
                               replicas_before=workload.replicas))
    return Scope(kube, settings, kept, rows)
