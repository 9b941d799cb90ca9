"""Loading policy files, with every problem reported as file:line.

A policy file is YAML holding either a top-level `policies:` list or a single
policy mapping; several documents separated by `---` are allowed. A path may
be a directory: every *.yaml and *.yml file directly in it, sorted by name.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from scaler.decide.policies import Policy
from scaler.decide.reading import (
    MAX_FILE_BYTES,
    Document,
    Problem,
    field_path,
    read_documents,
)

__all__ = ["Policy", "PolicyError", "PolicySet", "Problem", "check_policies", "check_texts", "load_policies"]


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


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The model class that holds the last key of `loc` (inside a Policy)."""
    model: type[BaseModel] | None = Policy
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


def _message(error: Mapping[str, Any]) -> str:
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        model = _model_at(loc[:-1])
        allowed = [info.alias or name for name, info in model.model_fields.items()] if model else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key {loc[-1]!r}{hint} (allowed: {', '.join(allowed)})"
    if error["type"] == "missing":
        return "required"
    message = error["msg"]
    return message.removeprefix("Value error, ")


def _validate_policy(data: Any, *, file: str, document: Document, base: tuple,
                     problems: list[Problem]) -> Policy | None:
    try:
        return Policy.model_validate(data)
    except ValidationError as error:
        for detail in error.errors():
            loc = tuple(detail["loc"])
            problems.append(Problem(file, document.line(base + loc), field_path(loc), _message(detail)))
    return None


def _policies_in(document: Document) -> tuple[list[tuple[Any, tuple]], list[tuple[str, tuple]]]:
    """(policy data, path) pairs in a document, and shape problems as (message, path)."""
    data = document.data
    if not isinstance(data, dict):
        return [], [(_SHAPE_HELP, ())]
    if "policies" not in data:
        return [(data, ())], []
    shape = [(f"unknown key {key!r} next to 'policies' (allowed: policies, and keys starting with 'x-' "
              "to hold anchors for merge keys)", (key,))
             for key in data if key != "policies" and not (isinstance(key, str) and key.startswith("x-"))]
    items = data["policies"]
    if not isinstance(items, list):
        return [], [*shape, ("expected a list of policies", ("policies",))]
    if not items:
        return [], [*shape, ("the list of policies is empty", ("policies",))]
    return [(item, ("policies", index)) for index, item in enumerate(items)], shape


def _files(paths: Iterable[str | Path], problems: list[Problem]) -> list[Path]:
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(child for child in path.iterdir()
                           if child.suffix in (".yaml", ".yml") and child.is_file())
            if not found:
                problems.append(Problem(str(path), None, "", "no .yaml or .yml files in this directory"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem(str(path), None, "", "no such file or directory"))
    return files


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


def check_policies(paths: Iterable[str | Path]) -> tuple[PolicySet, list[Problem]]:
    """Every policy that validated, and every problem found (all of them,
    not just the first)."""
    problems: list[Problem] = []
    files = _files(paths, problems)
    texts = ((str(path), _read_text(path, str(path), problems)) for path in files)
    return check_texts(texts, problems=problems)


def check_texts(texts: Iterable[tuple[str, str | None]], *,
                problems: list[Problem] | None = None) -> tuple[PolicySet, list[Problem]]:
    """As `check_policies`, for texts already read, each named as its
    problems will be (a file, or a ConfigMap key); a None text is skipped."""
    problems = [] if problems is None else problems
    policies: list[Policy] = []
    sources: dict[str, str] = {}
    names: list[str] = []
    for file, text in texts:
        names.append(file)
        if text is not None and len(text.encode("utf-8")) > MAX_FILE_BYTES:
            problems.append(Problem(file, None, "", f"larger than {MAX_FILE_BYTES} bytes, the limit for a policy "
                                                    "file (split it)"))
        elif text is not None:
            policies.extend(_check_text(text, file, sources, problems))
    return PolicySet(tuple(policies), tuple(names), sources), problems


def _check_text(text: str, file: str, sources: dict[str, str], problems: list[Problem]) -> list[Policy]:
    """The valid policies of one text; its problems are added to `problems`,
    and each policy's name to `sources` (names must be unique across texts)."""
    policies: list[Policy] = []
    documents = [document for document in read_documents(text, file, problems) if document.data is not None]
    if not documents and not any(problem.file == file for problem in problems):
        problems.append(Problem(file, 1, "", f"empty file: {_SHAPE_HELP}"))
    for document in documents:
        items, shape = _policies_in(document)
        problems.extend(Problem(file, document.line(path_), field_path(path_), message) for message, path_ in shape)
        for data, base in items:
            line = document.line((*base, "name") if isinstance(data, dict) and "name" in data else base)
            name = data.get("name") if isinstance(data, dict) else None
            first = sources.get(name) if isinstance(name, str) else None
            duplicate = first is not None
            if first is not None:
                problems.append(Problem(file, line, "name",
                                        f"duplicate policy name {name!r} (first defined at {first})"))
            elif isinstance(name, str):
                sources[name] = f"{file}:{line}"
            policy = _validate_policy(data, file=file, document=document, base=base, problems=problems)
            if policy is not None and not duplicate:
                policies.append(policy)
    return policies


def load_policies(paths: Iterable[str | Path]) -> PolicySet:
    """The policies in `paths` (files or directories); PolicyError listing
    every problem if there is any."""
    policies, problems = check_policies(paths)
    if problems:
        raise PolicyError(problems)
    return policies


