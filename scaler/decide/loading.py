"""Loading policy files, with every problem reported as file:line.

A policy file is YAML holding either a top-level `policies:` list (and
`calendars:`, named calendars defined once in the whole set of files) or a
single policy mapping; several documents separated by `---` are allowed. A
path may be a directory: every *.yaml and *.yml file directly in it, sorted
by name. iCalendar texts are read by an `IcalReader`: beside the policy
file here; through the API where the policies come from a ConfigMap.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from scaler.decide.calendar_sets import CalendarSet, CalendarUnreadable, IcalReader, not_read, read_ical_file
from scaler.decide.calendar_specs import CalendarSpec
from scaler.decide.calendars import Calendar
from scaler.decide.policies import BROKEN_CALENDAR, Policy
from scaler.decide.reading import (
    MAX_FILE_BYTES,
    Document,
    Problem,
    field_path,
    read_documents,
)

__all__ = ["CalendarUnreadable", "IcalReader", "Policy", "PolicyError", "PolicySet", "Problem", "check_policies",
           "check_texts", "load_policies", "read_ical_file"]


class PolicyError(Exception):
    """The policy files have problems; `.problems` lists all of them."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


@dataclass(frozen=True)
class PolicySet:
    """Validated policies with unique names, in file order, and where each
    was defined."""

    policies: tuple[Policy, ...]
    files: tuple[str, ...]
    sources: Mapping[str, str] = field(default_factory=dict)
    #: The calendars defined, by name, and where (file:line).
    calendars: Mapping[str, Calendar] = field(default_factory=dict)
    calendar_sources: Mapping[str, str] = field(default_factory=dict)
    #: Calendars whose iCalendar text was not read here (a ConfigMap, for `validate`).
    unread: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[Policy]:
        return iter(self.policies)

    def __len__(self) -> int:
        return len(self.policies)

    def by_name(self, name: str) -> Policy | None:
        return next((policy for policy in self.policies if policy.name == name), None)

    def in_force(self, policy: Policy) -> bool:
        """Whether `policy` (perhaps from an earlier set) is in this set as it
        is: a decision it made may still be acted on."""
        current = self.by_name(policy.name)
        return current is policy or current == policy


_SHAPE_HELP = "expected a mapping: 'policies:' with a list of policies, or one policy"


def _model_at(loc: tuple, root: type[BaseModel]) -> type[BaseModel] | None:
    """The model class that holds the last key of `loc` (inside `root`)."""
    model: type[BaseModel] | None = root
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        info = next((info for name, info in model.model_fields.items() if (info.alias or name) == part), None)
        model = _find_model(info.annotation) if info is not None else None
    return model


def _find_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, tuple, list, typing.Annotated):
        for argument in typing.get_args(annotation):
            found = _find_model(argument)
            if found is not None:
                return found
    return None


def _message(error: Mapping[str, Any], root: type[BaseModel] = Policy) -> str:
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        model = _model_at(loc[:-1], root)
        allowed = [info.alias or name for name, info in model.model_fields.items()] if model else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key {loc[-1]!r}{hint} (allowed: {', '.join(allowed)})"
    if error["type"] == "missing":
        return "required"
    if error["type"] in ("model_type", "dict_type"):
        return f"expected a mapping (key: value lines), not {_kind_of(error.get('input'))}"
    message = error["msg"]
    return message.removeprefix("Value error, ")


def _validate_policy(data: Any, *, file: str, document: Document, base: tuple, problems: list[Problem],
                     context: Mapping[str, Any]) -> Policy | None:
    try:
        return Policy.model_validate(data, context=context)
    except ValidationError as error:
        for detail in error.errors():
            if detail["type"] == BROKEN_CALENDAR:
                continue  # the calendar's own problem is reported where it is defined
            loc = tuple(detail["loc"])
            if not loc and detail["type"] == "model_type":  # not a mapping: where it is in the file, what it is
                problems.append(Problem(file, document.line(base), field_path(base), "expected a policy (a mapping "
                                        f"with name, targets, ...), not {_kind_of(data)}"))
                continue
            problems.append(Problem(file, document.line(base + loc), field_path(loc), _message(detail)))
    return None


def _kind_of(value: Any) -> str:
    """What a YAML value is, in words: 'a string "x"', 'a list', 'nothing'."""
    if value is None:
        return "nothing (an empty item)"
    if isinstance(value, list):
        return "a list"
    text = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return f"{'a string' if isinstance(value, str) else 'the value'} {text}"


@dataclass(frozen=True)
class _Item:
    """A policy's or a calendar's data, where it was written."""

    data: Any
    file: str
    document: Document
    path: tuple

    @property
    def line(self) -> int | None:
        return self.document.line(self.path)

    def problem(self, loc: tuple, message: str) -> Problem:
        return Problem(self.file, self.document.line(self.path + loc), field_path(self.path + loc), message)


_TOP_KEYS = ("policies", "calendars")


def _contents(document: Document, file: str, problems: list[Problem]) -> tuple[list[_Item], list[_Item]]:
    """The policies and the calendars of a document; shape problems are added."""
    data = document.data
    here = _Item(data, file, document, ())
    if not isinstance(data, dict):
        problems.append(here.problem((), _SHAPE_HELP))
        return [], []
    if not any(key in data for key in _TOP_KEYS):
        return [here], []
    problems.extend(here.problem((key,), f"unknown key {key!r} next to 'policies' (allowed: policies, calendars, "
                                         "and keys starting with 'x-' to hold anchors for merge keys)")
                    for key in data if key not in _TOP_KEYS and not (isinstance(key, str) and key.startswith("x-")))
    calendars = data.get("calendars", {})
    if not isinstance(calendars, dict):
        problems.append(here.problem(("calendars",), "expected a mapping of calendar names to calendars"))
        calendars = {}
    found = [_Item(value, file, document, ("calendars", name)) for name, value in calendars.items()]
    if "policies" not in data:
        return [], found
    items = data["policies"]
    if not isinstance(items, list):
        problems.append(here.problem(("policies",), "expected a list of policies"))
    elif not items:
        problems.append(here.problem(("policies",), "the list of policies is empty"))
    else:
        return [_Item(item, file, document, ("policies", index)) for index, item in enumerate(items)], found
    return [], found


def _files(paths: Iterable[str | Path], problems: list[Problem]) -> list[Path]:
    """The policy files named, or found in the directories named. A name
    that is there but cannot be read as a file (a broken symbolic link, a
    device) is a problem, never skipped: its policies would vanish unsaid."""
    files: list[Path] = []
    for text in paths:
        path = Path(text)
        if not str(text).strip():
            problems.append(Problem(repr(str(text)), None, "", "an empty path: name a policy file or directory"))
        elif path.is_dir():
            found = sorted(child for child in path.iterdir() if child.suffix in (".yaml", ".yml")
                           and not child.is_dir())
            if not found:
                problems.append(Problem(str(path), None, "", "no .yaml or .yml files in this directory"))
            files.extend(child for child in found if _readable(child, problems))
        elif _readable(path, problems):
            files.append(path)
    return files


def _readable(path: Path, problems: list[Problem]) -> bool:
    """A regular file (or a link to one); else a problem saying what it is."""
    if path.is_file():
        return True
    if path.is_symlink():
        why = f"a symbolic link to {os.readlink(path)}, which does not exist"
    elif path.exists():
        why = "not a regular file (a device, a socket or a pipe)"
    else:
        why = "no such file or directory"
    problems.append(Problem(str(path), None, "", why))
    return False


def _read_text(path: Path, file: str, problems: list[Problem]) -> str | None:
    """The file's text, read no further than the size limit."""
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            problems.append(Problem(file, None, "", f"the file is larger than {MAX_FILE_BYTES} bytes, the limit "
                                                    "for a policy file (split it)"))
            return None
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - data.rfind(b"\n", 0, error.start)
        problems.append(Problem(file, line, "", f"not UTF-8 text: byte 0x{data[error.start]:02x} at column {column}"))
    except OSError as error:
        problems.append(Problem(file, None, "", f"cannot read: {error.strerror or error}"))
    return None


def check_policies(paths: Iterable[str | Path], *,
                   read_ical: IcalReader = read_ical_file) -> tuple[PolicySet, list[Problem]]:
    """Every policy that validated, and every problem found (all of them,
    not just the first)."""
    problems: list[Problem] = []
    files = _files(paths, problems)
    texts = ((str(path), _read_text(path, str(path), problems)) for path in files)
    return check_texts(texts, problems=problems, read_ical=read_ical)


def check_texts(texts: Iterable[tuple[str, str | None]], *, problems: list[Problem] | None = None,
                read_ical: IcalReader = not_read) -> tuple[PolicySet, list[Problem]]:
    """As `check_policies`, for texts already read, each named as its
    problems will be (a file, or a ConfigMap key); a None text is skipped."""
    problems = [] if problems is None else problems
    items: list[_Item] = []
    definitions: list[_Item] = []
    names: list[str] = []
    for file, text in texts:
        names.append(file)
        if text is not None and len(text.encode("utf-8")) > MAX_FILE_BYTES:
            problems.append(Problem(file, None, "", f"larger than {MAX_FILE_BYTES} bytes, the limit for a policy "
                                                    "file (split it)"))
        elif text is not None:
            documents = [document for document in read_documents(text, file, problems) if document.data is not None]
            if not documents and not any(problem.file == file for problem in problems):
                problems.append(Problem(file, 1, "", f"empty file: {_SHAPE_HELP}"))
            for document in documents:
                found, defined = _contents(document, file, problems)
                items += found
                definitions += defined
    calendars = CalendarSet(read_ical, problems, describe=lambda detail: _message(detail, CalendarSpec))
    calendars.build(definitions)
    policies, sources = _check_items(items, calendars.context, problems)
    order = {name: index for index, name in enumerate(names)}
    problems.sort(key=lambda problem: (order.get(problem.file, -1), problem.line or 0))  # file by file, line by line
    return PolicySet(tuple(policies), tuple(names), sources, calendars.built, calendars.sources,
                     tuple(calendars.unread)), problems


def _check_items(items: list[_Item], context: Mapping[str, Any],
                 problems: list[Problem]) -> tuple[list[Policy], dict[str, str]]:
    """The valid policies among `items`; names must be unique across files."""
    policies: list[Policy] = []
    sources: dict[str, str] = {}
    for item in items:
        data = item.data
        line = item.document.line((*item.path, "name") if isinstance(data, dict) and "name" in data else item.path)
        name = data.get("name") if isinstance(data, dict) else None
        first = sources.get(name) if isinstance(name, str) else None
        if first == f"{item.file}:{line}":  # the same name text, reached again by an alias or a merge key
            line = item.line
        if first is not None:
            problems.append(Problem(item.file, line, "name",
                                    f"duplicate policy name {name!r} (first defined at {first})"))
        elif isinstance(name, str):
            sources[name] = f"{item.file}:{line}"
        policy = _validate_policy(data, file=item.file, document=item.document, base=item.path, problems=problems,
                                  context=context)
        if policy is not None and first is None:
            policies.append(policy)
    return policies, sources


def load_policies(paths: Iterable[str | Path]) -> PolicySet:
    """The policies in `paths` (files or directories); PolicyError listing
    every problem if there is any."""
    policies, problems = check_policies(paths)
    if problems:
        raise PolicyError(problems)
    return policies


