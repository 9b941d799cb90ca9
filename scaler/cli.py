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
from scaler.policies import check_policies, json_schema


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


def run_validate(args: argparse.Namespace) -> int:
    """Exit 0 with one summary line if every policy is valid; otherwise exit 1
    with one `file:line: field: message` line per problem."""
    policies, problems = check_policies(args.paths)
    if problems:
        for problem in problems:
            print(problem)
        print(f"{_plural(len(problems), 'problem')}", file=sys.stderr)
        return 1
    print(f"{_plural(len(policies), 'policy', 'policies')} in {_plural(len(policies.files), 'file')} OK")
    return 0


def _schema_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--indent", type=int, default=2, help="JSON indentation (default 2)")


def run_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of a policy file (for yaml-language-server:
    `# yaml-language-server: $schema=policy.schema.json`)."""
    print(json.dumps(json_schema(), indent=args.indent))
    return 0


COMMANDS: tuple[Command, ...] = (
    Command("validate", "check policy files; print one line per problem", _validate_arguments, run_validate),
    Command("schema", "print the JSON Schema of a policy file", _schema_arguments, run_schema),
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help(sys.stderr)
        return 2
    return args.run(args)
