"""The calendars of a policy set, built at load: each definition checked,
its iCalendar text read (by an `IcalReader`: beside the policy file, or
through the API), unions resolved, and every problem reported once, as
file:line, where the calendar is defined.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from scaler.decide.calendar_specs import CalendarSpec, IcalError, IcalSpec, union_of
from scaler.decide.calendars import Calendar, Source
from scaler.decide.fields import POLICY_NAME
from scaler.decide.icalendars import MAX_ICAL_BYTES
from scaler.decide.reading import Problem


class Placed(Protocol):
    """A calendar's data, where it was written (`loading` makes them)."""

    @property
    def data(self) -> Any: ...

    @property
    def file(self) -> str: ...

    @property
    def path(self) -> tuple: ...

    @property
    def line(self) -> int | None: ...

    def problem(self, loc: tuple, message: str) -> Problem: ...


class CalendarUnreadable(Exception):
    """An iCalendar source cannot be read; the message says why."""


#: (the ical: spec, the file it was written in) -> its text; None when it
#: is not read here (a ConfigMap, for `validate` without a cluster);
#: CalendarUnreadable when it cannot be read.
IcalReader = Callable[[IcalSpec, str], "str | None"]


def read_ical_file(spec: IcalSpec, origin: str) -> str | None:
    """An iCalendar file named relative to the policy file `origin`; a
    ConfigMap is not read here (None)."""
    if spec.file is None:
        return None
    path = Path(origin).parent / spec.file
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_ICAL_BYTES + 1)
    except OSError as error:
        raise CalendarUnreadable(f"cannot read {path}: {error.strerror or error}") from None
    if len(data) > MAX_ICAL_BYTES:
        raise CalendarUnreadable(f"{path} is larger than {MAX_ICAL_BYTES} bytes, the limit for an iCalendar file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CalendarUnreadable(f"{path} is not UTF-8 text") from None


def not_read(spec: IcalSpec, origin: str) -> str | None:
    return None


class CalendarSet:
    """The calendars of a policy set: each checked, its iCalendar text read,
    unions resolved; a calendar with a problem is `broken` (a policy using
    it is dropped, its problem reported once, where it is defined)."""

    def __init__(self, read_ical: IcalReader, problems: list[Problem], *,
                 describe: Callable[[Mapping[str, Any]], str]) -> None:
        """`describe` words a pydantic error for a person."""
        self.read_ical, self.problems, self.describe = read_ical, problems, describe
        self.built: dict[str, Calendar] = {}
        self.sources: dict[str, str] = {}
        self.broken: set[str] = set()
        self.unread: list[str] = []
        self._specs: dict[str, tuple[CalendarSpec, Placed]] = {}
        self._own: dict[str, list[Source]] = {}

    @property
    def context(self) -> dict[str, Any]:
        return {"calendars": self.built, "broken": self.broken}

    def build(self, definitions: Sequence[Placed]) -> None:
        for item in definitions:
            self._define(item)
        for name, (spec, item) in self._specs.items():
            self._read(name, spec, item)
        for name in self._specs:
            self._resolve(name, ())

    def _define(self, item: Placed) -> None:
        name = item.path[-1]
        if not isinstance(name, str) or not POLICY_NAME.match(name):
            self.problems.append(item.problem((), f"{name!r} is not a calendar name: use 1-63 lowercase letters, "
                                                  "digits, '-' and '.', starting and ending with a letter or digit"))
            return
        if name in self.sources:
            self.problems.append(item.problem((), f"calendar {name!r} is defined twice (first defined at "
                                                  f"{self.sources[name]})"))
            return
        self.sources[name] = f"{item.file}:{item.line}"
        try:
            self._specs[name] = (CalendarSpec.model_validate(item.data), item)
        except ValidationError as error:
            self.broken.add(name)
            self.problems.extend(item.problem(tuple(detail["loc"]), self.describe(detail))
                                 for detail in error.errors())

    def _read(self, name: str, spec: CalendarSpec, item: Placed) -> None:
        text = None
        try:
            if spec.ical is not None:
                text = self.read_ical(spec.ical, item.file)
                if text is None:
                    self.unread.append(name)
            self._own[name] = spec.own_sources(name, text)
        except (CalendarUnreadable, IcalError) as error:
            self.broken.add(name)
            self.problems.append(item.problem(("ical",), str(error)))

    def _resolve(self, name: str, chain: tuple[str, ...]) -> Calendar | None:
        """The calendar `name` with its union resolved, or None if it is broken."""
        if name in self.built or name in self.broken or name not in self._own:
            return self.built.get(name)
        spec, item = self._specs[name]
        parts = []
        for index, other in enumerate(spec.union or ()):
            if other in (*chain, name):
                cycle = " -> ".join((*chain[chain.index(other):], name, other) if other in chain else (name, other))
                self.problems.append(item.problem(("union", index), f"calendar {other!r} includes itself ({cycle})"))
            elif other not in self._specs and other not in self.broken:
                known = ", ".join(sorted(self._specs)) or "none"
                self.problems.append(item.problem(("union", index),
                                                  f"unknown calendar {other!r} (calendars: {known})"))
            elif (part := self._resolve(other, (*chain, name))) is not None:
                parts.append(part)
                continue
            self.broken.add(name)
            return None
        self.built[name] = union_of(name, self._own[name], parts, description=spec.description)
        return self.built[name]
