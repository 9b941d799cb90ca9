"""The `scaler` command line.

Each subcommand is a `Command` in `COMMANDS`: a name, a one-line help, a
function adding its arguments and a function running it that returns the
exit code. A new subcommand is one more entry; `main` does not change.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scaler import __version__
from scaler.cli import calendars, manual
from scaler.cli.output import OUTPUTS
from scaler.cli.signal_checks import check_signals
from scaler.decide.loading import check_policies
from scaler.decide.policies import json_schema
from scaler.run.settings import (
    PlanSettings,
    PrometheusSettings,
    Settings,
    SettingsError,
    add_settings_arguments,
    settings_from,
)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"


def _validate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="policy file, or directory of *.yaml/*.yml files (not recursive)")
    calendars.add_arguments(parser)
    parser.add_argument("--check-signals", action="store_true",
                        help="also ask a live Prometheus each policy's signals: a failing query, series naming no "
                             "workload, or a wake signal with no series (absent: unknown) is a problem")
    parser.add_argument("--prometheus-url", metavar="URL",
                        help="for --check-signals (default: SCALER_PROMETHEUS_URL; the other SCALER_PROMETHEUS_* "
                             "variables apply)")


def run_validate(args: argparse.Namespace) -> int:
    """Exit 0 with one summary line if every policy is valid; otherwise exit 1
    with one `file:line: field: message` line per problem. `--explain
    CALENDAR` lists the days the calendar yields instead of the summary."""
    policies, problems = check_policies(args.paths)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{_plural(len(problems), 'problem')}", file=sys.stderr)
    if args.explain is not None:
        return calendars.explain(policies, args) or (1 if problems else 0)
    if problems:
        return 1
    defined = f", {_plural(len(policies.calendars), 'calendar')}" if policies.calendars else ""
    print(f"{_plural(len(policies), 'policy', 'policies')}{defined} in {_plural(len(policies.files), 'file')} OK")
    for name in policies.unread:
        print(f"calendar {name!r}: its iCalendar file is in a ConfigMap, read through the API by the daemon and "
              "`scaler plan`, not here")
    return _check_signals(policies, args) if args.check_signals else 0


def _check_signals(policies, args: argparse.Namespace) -> int:
    """validate --check-signals: exit 1 if any signal could not work (cli/signal_checks.py)."""
    try:
        settings = PrometheusSettings(**({"prometheus_url": args.prometheus_url} if args.prometheus_url else {}))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    problems, notes = check_signals(policies, settings.prometheus())
    for line in notes:
        print(line)
    for line in problems:
        print(f"problem: {line}")
    print(f"signals checked against {settings.prometheus_url}: {_plural(len(problems), 'problem')}",
          file=sys.stderr)
    return 1 if problems else 0


def _schema_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--indent", type=int, default=2, help="JSON indentation (default 2)")


def run_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of a policy file (for yaml-language-server:
    `# yaml-language-server: $schema=policy.schema.json`)."""
    print(json.dumps(json_schema(), indent=args.indent))
    return 0


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)


def _with_settings(run: Callable[..., int], *, model=Settings, **options) -> int:
    """Run with the settings from flags and SCALER_ variables, or exit 1
    naming every invalid one. plan and backtest read policy files named by
    flag rather than a ConfigMap named only in the environment."""
    try:
        settings = settings_from(options.pop("args"), model, named_files_first=model is PlanSettings)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return run(settings, **options)


def run_daemon(args: argparse.Namespace) -> int:
    """The daemon: evaluate the policies on a schedule and act."""
    from scaler.run.starting import run

    return _with_settings(run, args=args)


def _plan_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, PlanSettings)
    parser.add_argument("-o", "--output", choices=OUTPUTS, default="table")
    parser.add_argument("--all", dest="show_all", action="store_true",
                        help="also list managed workloads that would not change, with the reason")
    parser.add_argument("--at", metavar="TIME",
                        help="evaluate at TIME instead of now: the windows at TIME and, for a past TIME, the "
                             "signals as Prometheus had them then; the workloads as they are now "
                             "(RFC 3339 with a zone, or now+2h, now-1d)")


def run_plan_command(args: argparse.Namespace) -> int:
    """Exit 0: nothing would change; 3: changes pending; 4: some signals
    unknown (the evaluation is incomplete); 1: error; 2: usage."""
    from scaler.cli.plan import run_plan

    return _with_settings(run_plan, model=PlanSettings, args=args, output=args.output, show_all=args.show_all,
                          at=args.at)


def _backtest_arguments(parser: argparse.ArgumentParser) -> None:
    from scaler.cli.backtest import add_arguments

    add_arguments(parser)


def run_backtest_command(args: argparse.Namespace) -> int:
    """Exit 0: replayed; 4: some signal data could not be read; 1: error."""
    from scaler.cli.backtest import run_backtest

    return _with_settings(run_backtest, model=PlanSettings, args=args, options=args)


def _savings_arguments(parser: argparse.ArgumentParser) -> None:
    from scaler.cli.savings import add_arguments

    add_arguments(parser)


def run_savings_command(args: argparse.Namespace) -> int:
    """Exit 0: answered; 4: Prometheus could not answer; 2: usage; 1: a setting."""
    from scaler.cli.savings import run_savings
    from scaler.run.settings import PrometheusSettings

    return _with_settings(run_savings, model=PrometheusSettings, args=args, options=args)


COMMANDS: tuple[Command, ...] = (
    Command("validate", "check policy files; print one line per problem", _validate_arguments, run_validate),
    Command("schema", "print the JSON Schema of a policy file", _schema_arguments, run_schema),
    Command("pause", "scale workloads to zero, remembering their size (durable until a manual resume)",
            manual.add_pause_arguments, manual.run_pause),
    Command("resume", "restore paused workloads to their recorded size", manual.add_resume_arguments,
            manual.run_resume),
    Command("status", "what is paused, by whom, since when, and the GPUs it holds back",
            manual.add_status_arguments, manual.run_status),
    Command("run", "run the daemon: evaluate policies on a schedule and act", _run_arguments, run_daemon),
    Command("plan", "evaluate the policies once and show what the daemon would do (exit 3: changes pending, "
                    "4: some signals unknown)",
            _plan_arguments, run_plan_command),
    Command("backtest", "replay the policies over a past period: GPU-hours saved, pauses, wakes, waits "
                        "(reads only)", _backtest_arguments, run_backtest_command),
    Command("savings", "what the pauses saved over a period, in GPU-hours and money, nominal and realized "
                       "(from Prometheus; exit 4: Prometheus could not answer)", _savings_arguments,
            run_savings_command),
)


def build_parser(commands: Sequence[Command] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scaler", description="Scales idle GPU workloads on Kubernetes to zero and wakes them again.")
    parser.add_argument("--version", action="version", version=f"scaler {__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in commands:
        sub = subcommands.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes (README "Exit codes"): 0 success, 1 error, 2 usage error,
    and for `plan` 3 changes pending, 4 some signals unknown."""
    parser = build_parser()
    args = parser.parse_args(argv)  # a usage error exits 2 here, as argparse does
    if getattr(args, "run", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - never a traceback: name the cause in one line
        print(f"error: {type(error).__name__}: {error}".splitlines()[0], file=sys.stderr)
        return 1
