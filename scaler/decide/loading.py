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

import yaml
from pydantic import BaseModel, ValidationError

from scaler.decide.policies import Policy


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the policy files. str() is
    `file:line: field.path: message`, the format editors jump to."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


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


_SHAPE_HELP = "expected a mapping: 'policies:' with a list of policies, or one policy"


class _Document:
    """One YAML document: its data and the line of every key and item."""

    def __init__(self, data: Any, lines: dict[tuple, int]) -> None:
        self.data = data
        self.lines = lines

    def line(self, path: tuple) -> int | None:
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


def _read_documents(text: str, file: str, problems: list[Problem]) -> list[_Document]:
    loader = yaml.SafeLoader(text)
    documents: list[_Document] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            lines: dict[tuple, int] = {}
            _record_lines(loader, node, (), lines, file, problems)
            documents.append(_Document(loader.construct_document(node), lines))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        detail = ", ".join(part for part in (error.context, error.problem) if part)
        problems.append(Problem(file, mark.line + 1 if mark else None, "", f"invalid YAML: {detail}"))
        return []
    except yaml.YAMLError as error:
        problems.append(Problem(file, None, "", f"invalid YAML: {error}"))
        return []
    finally:
        loader.dispose()
    return documents


def _record_lines(loader: yaml.SafeLoader, node: yaml.Node, path: tuple, lines: dict[tuple, int],
                  file: str, problems: list[Problem]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set = set()
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True) if isinstance(key_node, yaml.ScalarNode) \
                else key_node.start_mark.line
            if key == "<<":
                continue
            if key in seen:
                problems.append(Problem(file, key_node.start_mark.line + 1, _field_path(_in_policy(path + (key,))),
                                        "duplicate key: YAML would silently keep only the last one"))
            seen.add(key)
            lines[path + (key,)] = key_node.start_mark.line + 1
            _record_lines(loader, value_node, path + (key,), lines, file, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(loader, item, path + (index,), lines, file, problems)


def _in_policy(path: tuple) -> tuple:
    """A document path relative to its policy: ('policies', 0, 'idle') -> ('idle',)."""
    return path[2:] if len(path) >= 2 and path[0] == "policies" and isinstance(path[1], int) else path


def _field_path(loc: Iterable) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


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


def _validate_policy(data: Any, *, file: str, document: _Document, base: tuple,
                     problems: list[Problem]) -> Policy | None:
    try:
        return Policy.model_validate(data)
    except ValidationError as error:
        for detail in error.errors():
            loc = tuple(detail["loc"])
            problems.append(Problem(file, document.line(base + loc), _field_path(loc), _message(detail)))
    return None


def _policies_in(document: _Document) -> tuple[list[tuple[Any, tuple]], list[tuple[str, tuple]]]:
    """(policy data, path) pairs in a document, and shape problems as (message, path)."""
    data = document.data
    if not isinstance(data, dict):
        return [], [(_SHAPE_HELP, ())]
    if "policies" not in data:
        return [(data, ())], []
    shape = [(f"unknown key {key!r} next to 'policies' (allowed: policies)", (key,))
             for key in data if key != "policies"]
    items = data["policies"]
    if not isinstance(items, list):
        return [], shape + [("expected a list of policies", ("policies",))]
    if not items:
        return [], shape + [("the list of policies is empty", ("policies",))]
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


def check_policies(paths: Iterable[str | Path]) -> tuple[PolicySet, list[Problem]]:
    """Every policy that validated, and every problem found (all of them,
    not just the first)."""
    problems: list[Problem] = []
    files = _files(paths, problems)
    policies: list[Policy] = []
    sources: dict[str, str] = {}
    for path in files:
        file = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            problems.append(Problem(file, None, "", f"cannot read: {error}"))
            continue
        documents = [document for document in _read_documents(text, file, problems) if document.data is not None]
        if not documents and not any(problem.file == file for problem in problems):
            problems.append(Problem(file, 1, "", f"empty file: {_SHAPE_HELP}"))
        for document in documents:
            items, shape = _policies_in(document)
            problems.extend(Problem(file, document.line(path_), _field_path(path_), message)
                            for message, path_ in shape)
            for data, base in items:
                line = document.line(base + ("name",) if isinstance(data, dict) and "name" in data else base)
                name = data.get("name") if isinstance(data, dict) else None
                duplicate = isinstance(name, str) and name in sources
                if duplicate:
                    problems.append(Problem(file, line, "name",
                                            f"duplicate policy name {name!r} (first defined at {sources[name]})"))
                elif isinstance(name, str):
                    sources[name] = f"{file}:{line}"
                policy = _validate_policy(data, file=file, document=document, base=base, problems=problems)
                if policy is not None and not duplicate:
                    policies.append(policy)
    return PolicySet(tuple(policies), tuple(map(str, files)), sources), problems


def load_policies(paths: Iterable[str | Path]) -> PolicySet:
    """The policies in `paths` (files or directories); PolicyError listing
    every problem if there is any."""
    policies, problems = check_policies(paths)
    if problems:
        raise PolicyError(problems)
    return policies


