"""Kubernetes label selectors, as kubectl writes them, parsed and matched.

Supported (the same as `kubectl get -l`): `key=value`, `key==value`,
`key!=value`, `key in (a,b)`, `key notin (a,b)`, `key` (exists) and `!key`
(does not exist), joined by commas; all must hold. The empty selector matches
everything. As in Kubernetes, `!=` and `notin` also match objects that do not
have the label at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_KEY = re.compile(rf"^({_PREFIX}/)?{_NAME}$")
_VALUE = re.compile(rf"^({_NAME})?$")
_TOKEN = re.compile(r"\s*(==|!=|=|\(|\)|,|!|[^\s=!(),]+)")


class SelectorError(ValueError):
    """The text is not a label selector; the message says where and why."""


class Operator(Enum):
    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        operator = self.operator
        if operator is Operator.EQUALS or operator is Operator.IN:
            return value is not None and value in self.values
        if operator is Operator.NOT_EQUALS or operator is Operator.NOT_IN:
            return value is None or value not in self.values
        if operator is Operator.EXISTS:
            return value is not None
        return value is None

    def __str__(self) -> str:
        values = sorted(self.values)
        if self.operator is Operator.EXISTS:
            return self.key
        if self.operator is Operator.DOES_NOT_EXIST:
            return "!" + self.key
        if self.operator in (Operator.EQUALS, Operator.NOT_EQUALS):
            return f"{self.key}{self.operator.value}{values[0]}"
        return f"{self.key} {self.operator.value} ({','.join(values)})"


@dataclass(frozen=True)
class Selector:
    """A parsed label selector: every requirement must match."""

    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Selector:
        """Parse kubectl selector syntax; raise SelectorError naming the problem."""
        return cls(tuple(_Parser(text).requirements()))

    def matches(self, labels: Mapping[str, str]) -> bool:
        for requirement in self.requirements:
            if not requirement.matches(labels):
                return False
        return True

    def __bool__(self) -> bool:
        return bool(self.requirements)

    def __str__(self) -> str:
        return ",".join(str(requirement) for requirement in self.requirements)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, int]] = []
        position = 0
        stripped_end = len(text.rstrip())
        while position < stripped_end:
            match = _TOKEN.match(text, position)
            if match is None:  # pragma: no cover - the token pattern accepts any non-space
                raise self._error("unexpected character", position)
            self.tokens.append((match.group(1), match.start(1)))
            position = match.end()
        self.index = 0

    def _error(self, message: str, position: int | None = None) -> SelectorError:
        where = "at the end" if position is None else f"at column {position + 1}"
        return SelectorError(f"invalid label selector {self.text!r}: {message} {where}")

    def _peek(self) -> str | None:
        return self.tokens[self.index][0] if self.index < len(self.tokens) else None

    def _position(self) -> int | None:
        return self.tokens[self.index][1] if self.index < len(self.tokens) else None

    def _take(self) -> str | None:
        token = self._peek()
        self.index += 1
        return token

    def requirements(self) -> list[Requirement]:
        found: list[Requirement] = []
        if not self.tokens:
            return found
        while True:
            found.append(self._requirement())
            token = self._peek()
            if token is None:
                return found
            if token != ",":
                raise self._error(f"expected ',' but found {token!r}", self._position())
            self._take()

    def _key(self) -> str:
        position = self._position()
        token = self._take()
        if token is None or token in ("=", "==", "!=", "(", ")", ",", "!"):
            raise self._error("expected a label key" + (f" but found {token!r}" if token else ""), position)
        if not _KEY.match(token):
            raise self._error(f"{token!r} is not a valid label key", position)
        return token

    def _value(self) -> str:
        position = self._position()
        token = self._peek()
        if token is None or token in (",", ")"):
            return ""  # key= and key in (a,) allow the empty value, as in Kubernetes
        self._take()
        if token in ("=", "==", "!=", "(", "!") or not _VALUE.match(token):
            raise self._error(f"{token!r} is not a valid label value", position)
        return token

    def _requirement(self) -> Requirement:
        if self._peek() == "!":
            self._take()
            return Requirement(self._key(), Operator.DOES_NOT_EXIST)
        key = self._key()
        position = self._position()
        token = self._peek()
        if token is None or token == ",":
            return Requirement(key, Operator.EXISTS)
        self._take()
        if token in ("=", "=="):
            return Requirement(key, Operator.EQUALS, frozenset({self._value()}))
        if token == "!=":
            return Requirement(key, Operator.NOT_EQUALS, frozenset({self._value()}))
        if token in ("in", "notin"):
            return Requirement(key, Operator.IN if token == "in" else Operator.NOT_IN, self._set())
        raise self._error(f"expected one of =, ==, !=, in, notin after {key!r} but found {token!r}", position)

    def _set(self) -> frozenset[str]:
        position = self._position()
        if self._take() != "(":
            raise self._error("expected '(' to start a set of values", position)
        if self._peek() == ")":
            raise self._error("a set of values may not be empty", self._position())
        values = {self._value()}
        while True:
            position = self._position()
            token = self._take()
            if token == ")":
                return frozenset(values)
            if token != ",":
                raise self._error("expected ',' or ')' in a set of values"
                                  + (f" but found {token!r}" if token else ""), position)
            values.add(self._value())
