"""A row of the precedence table as a value: its function and the properties
it declares beside it (`@rule`), and the sets the daemon and the replay
derive from the rows (decide/precedence.py lists them, in order). Pure."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from scaler.decide.decisions import Code, Decision
from scaler.decide.facts import Facts

Answer = Callable[[Facts], "Decision | None"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the table: its function, and what the daemon and the replay
    must know about it. Made by `@rule`, beside the function."""

    #: Its number in the README's table ("1b", "4a").
    row: str
    answer: Answer
    #: The reason codes it answers with.
    codes: frozenset[Code]
    #: Those of its answers that time alone changes, the windows apart (a
    #: grace or a delay running out, an override's, a back-off's or a hold's
    #: end): the replay decides them again at every step.
    reads_clock: frozenset[Code] = frozenset()
    #: It acts on the schedule alone: the daemon acts on it at a window edge,
    #: with no signal, before (and whether or not) Prometheus answers.
    schedule_only: bool = False
    #: Its hold still writes on the object (a record dropped, a hands-off or a
    #: back-off written): the daemon writes it as it writes a change.
    writes_while_holding: bool = False

    def __call__(self, f: Facts) -> Decision | None:
        return self.answer(f)

    @property
    def name(self) -> str:
        return self.answer.__name__


def rule(row: str, *codes: Code, reads_clock: bool | Iterable[Code] = False, schedule_only: bool = False,
         writes_while_holding: bool = False) -> Callable[[Answer], Rule]:
    """Declare a row: `@rule("4b", Code.STARTING, Code.STARTUP_GRACE,
    reads_clock=True)`. `reads_clock`: True for all of `codes`, or those of
    them that time alone changes."""
    clocked = frozenset(codes if reads_clock is True else reads_clock or ())
    if not codes or not clocked <= set(codes):
        raise ValueError(f"row {row}: reads_clock {sorted(clocked)} must be among its codes {sorted(codes)}")

    def declare(answer: Answer) -> Rule:
        return Rule(row, answer, frozenset(codes), clocked, schedule_only, writes_while_holding)
    return declare


def _answered(rules: Iterable[Rule], where: Callable[[Rule], bool] = lambda row: True) -> frozenset[Code]:
    return frozenset(code for row in rules if where(row) for code in row.codes)


def schedule_codes(rules: tuple[Rule, ...]) -> frozenset[Code]:
    """The codes of the rows that act on the schedule alone (and that no
    other row answers with)."""
    return _answered(rules, lambda row: row.schedule_only) - _answered(rules, lambda row: not row.schedule_only)


def writing_codes(rules: tuple[Rule, ...]) -> frozenset[Code]:
    """The codes of the rows whose hold still writes."""
    return _answered(rules, lambda row: row.writes_while_holding)


def timeless_codes(rules: tuple[Rule, ...]) -> frozenset[Code]:
    """The codes of decisions that hold until something they read changes:
    no row answers with them from the clock, and none that writes (a write
    changes what the next decision reads)."""
    clocked = frozenset(code for row in rules for code in row.reads_clock)
    return _answered(rules) - clocked - writing_codes(rules)
