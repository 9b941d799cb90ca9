"""Reading YAML policy files safely: bounded, with the line of everything.

Policy files may come from anyone who can edit a ConfigMap, so reading one
must never hang the daemon, eat its memory or end in a traceback. Limits,
each reported as `file:line: message`:

* a file is at most MAX_FILE_BYTES;
* no control characters other than tab, newline and carriage return (a NUL
  byte is a pasted binary, not YAML);
* mappings and lists nest at most MAX_DEPTH deep, counted while parsing,
  before anything is built (PyYAML builds recursively);
* after aliases are expanded a document holds at most MAX_NODES values (a
  few hundred bytes of nested aliases otherwise expand to billions), and an
  alias may not refer to the node that contains it (`&p [*p]`).

Merge keys (`<<: *defaults`) are YAML's way of sharing settings and work as
in YAML 1.1: keys written next to `<<` win over merged ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 100_000
MERGE_TAG = "tag:yaml.org,2002:merge"
#: libyaml when PyYAML was built with it (ten times faster on big files).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: What YAML counts as a line break, so our line numbers agree with the parser's.
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")


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


class Document:
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


def in_policy(path: tuple) -> tuple:
    """A document path relative to its policy: ('policies', 0, 'idle') -> ('idle',)."""
    return path[2:] if len(path) >= 2 and path[0] == "policies" and isinstance(path[1], int) else path


def field_path(loc: Iterable) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def check_text(text: str, file: str) -> Problem | None:
    """The first reason not to parse `text` at all, or None."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        return Problem(file, None, "", f"the file is {size} bytes; policy files are at most {MAX_FILE_BYTES} "
                                       "(split it)")
    bad = _CONTROL.search(text)
    if bad is not None:
        line = len(_LINE_BREAK.findall(text, 0, bad.start())) + 1
        return Problem(file, line, "", f"control character U+{ord(bad.group()):04X} is not allowed in a "
                                       "policy file (only tab, newline and carriage return)")
    return None


def _check_depth(text: str, file: str, aliases: list[list[int]], loader: Any = _LOADER) -> Problem | None:
    """Nesting deeper than MAX_DEPTH, found from parser events (the parser
    is not recursive; the composer and constructor are). The line of each
    alias is added to `aliases`, a list per document: the composer hands an
    alias over as the anchored node itself and forgets where it was written."""
    depth = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.DocumentStartEvent):
            aliases.append([])
        elif isinstance(event, yaml.AliasEvent) and aliases:
            mark = event.start_mark
            aliases[-1].append(mark.line + 1 if mark else 0)
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark  # always set by the parser; the stubs allow None
                return Problem(file, mark.line + 1 if mark else None, "",
                               f"mappings and lists nest more than {MAX_DEPTH} deep")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
    return None


def _check_depth_again(text: str, file: str, aliases: list[list[int]]) -> Problem | None:
    """The fast parser refused the file. libyaml has a nesting limit of its
    own (1,000 levels in PyYAML 6.0.4's wheels) and refuses deeper flow
    collections before it yields a single event; the pure-Python parser has
    none and yields events one by one, so it finds our shallower limit
    first. Any other error is left to the composer, which reports it with
    its line."""
    aliases.clear()
    try:
        return _check_depth(text, file, aliases, loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None


def _check_graph(root: yaml.Node, file: str) -> Problem | None:
    """Aliases expanded: at most MAX_NODES values, MAX_DEPTH deep, no cycle.
    Iterative, each node visited once (sizes are remembered), so an alias
    bomb is measured without being expanded."""
    done: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, depth)
    visiting: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in done:
            continue
        children = _children(node)
        if not children_done:
            if key in visiting:
                return Problem(file, node.start_mark.line + 1, "",
                               "an alias refers to the mapping or list that contains it (a recursive alias)")
            visiting.add(key)
            stack.append((node, True))
            for child in children:
                if id(child) in visiting:
                    return Problem(file, child.start_mark.line + 1, "", "an alias refers to the mapping or list "
                                                                        "that contains it (a recursive alias)")
                if id(child) not in done:
                    stack.append((child, False))
            continue
        visiting.discard(key)
        size = 1 + sum(done[id(child)][0] for child in children)
        depth = 1 + max((done[id(child)][1] for child in children), default=0)
        if size > MAX_NODES:
            return Problem(file, node.start_mark.line + 1, "",
                           f"with its aliases expanded this holds more than {MAX_NODES} values (an alias bomb?)")
        if depth > MAX_DEPTH:
            return Problem(file, node.start_mark.line + 1, "",
                           f"with its aliases expanded this nests more than {MAX_DEPTH} deep")
        done[key] = (size, depth)
    return None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


_BOOL_TAG, _STR_TAG, _TIMESTAMP_TAG = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:str", "tag:yaml.org,2002:timestamp"
_NUMBER_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})
#: A number as YAML 1.2's core schema writes one. YAML 1.1 also reads `1:30` as
#: 90 (base 60), `010` as 8 (octal), `0b11` and `1_000`: text in YAML 1.2.
_YAML_1_2_NUMBER = re.compile(r"[-+]?(?:0|[1-9][0-9]*)|0o[0-7]+|0x[0-9a-fA-F]+"
                              r"|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                              r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)")
_YAML_1_1_OCTAL = re.compile(r"[-+]?0[0-9]+")


def _as_yaml_1_2(root: yaml.Node) -> None:
    """YAML 1.1 readings that YAML 1.2 (and editors) drop: a mapping key
    written as a bare `on`, `off`, `yes` or `no` is that word, not a
    boolean (a window's `on:` is the key `on`); a date or time is text
    (`2026-12-24`, and `2026-02-30`, which would otherwise stop the reader
    with a traceback), for the field that reads it to check; and so is a
    number only YAML 1.1 reads (`scale_down_delay: 1:30` is not 90 seconds,
    `min_replicas: 010` not 8)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode) and (node.tag == _TIMESTAMP_TAG or (
                node.tag in _NUMBER_TAGS and not node.style
                and (not _YAML_1_2_NUMBER.fullmatch(node.value) or _YAML_1_1_OCTAL.fullmatch(node.value)))):
            node.tag = _STR_TAG
        if isinstance(node, yaml.MappingNode):
            for key_node, _ in node.value:
                if (isinstance(key_node, yaml.ScalarNode) and key_node.tag == _BOOL_TAG and not key_node.style
                        and key_node.value.lower() not in ("true", "false")):
                    key_node.tag = _STR_TAG
        stack.extend(_children(node))


def read_documents(text: str, file: str, problems: list[Problem]) -> list[Document]:
    """The documents of one file, or [] with the problems added."""
    early = check_text(text, file)
    aliases: list[list[int]] = []
    if early is None:
        try:
            early = _check_depth(text, file, aliases)
        except yaml.YAMLError:
            early = _check_depth_again(text, file, aliases)
    if early is not None:
        problems.append(early)
        return []
    documents: list[Document] = []
    loader = None
    try:
        loader = _LOADER(text)
        while loader.check_node():
            node = loader.get_node()
            assert node is not None  # check_node() said a document follows
            unsafe = _check_graph(node, file)
            if unsafe is not None:
                problems.append(unsafe)
                return []
            _as_yaml_1_2(node)
            lines: dict[tuple, int] = {}
            _record_lines(loader, node, (), lines, file, problems)
            _place_aliases(loader, node, iter(aliases[len(documents)] if len(documents) < len(aliases) else ()),
                           lines)
            documents.append(Document(loader.construct_document(node), lines))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        detail = ", ".join(part for part in (error.context, error.problem) if part)
        problems.append(Problem(file, mark.line + 1 if mark else None, "", f"invalid YAML: {detail}"))
        return []
    except yaml.YAMLError as error:
        problems.append(Problem(file, None, "", f"invalid YAML: {error}"))
        return []
    finally:
        if loader is not None:
            loader.dispose()
    return documents


def _record_lines(loader: Any, node: yaml.Node, path: tuple, lines: dict[tuple, int],
                  file: str, problems: list[Problem]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set = set()
        merged: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                merged.extend(value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node])
                continue
            key = _key(loader, key_node)
            if key in seen:
                problems.append(Problem(file, key_node.start_mark.line + 1, field_path(in_policy((*path, key))),
                                        "duplicate key: YAML would silently keep only the last one"))
            seen.add(key)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _record_lines(loader, value_node, (*path, key), lines, file, problems)
        for source in merged:  # keys written here win; merged ones keep the line they were written on
            if isinstance(source, yaml.MappingNode):
                _record_merged(loader, source, path, seen, lines, file, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(loader, item, (*path, index), lines, file, problems)


def _record_merged(loader: Any, source: yaml.MappingNode, path: tuple, seen: set,
                   lines: dict[tuple, int], file: str, problems: list[Problem]) -> None:
    scratch: dict[tuple, int] = {}
    _record_lines(loader, source, path, scratch, file, [])
    for key_path, line in scratch.items():
        if len(key_path) > len(path) and key_path[len(path)] not in seen:
            lines.setdefault(key_path, line)
    seen.update(key_path[len(path)] for key_path in scratch if len(key_path) > len(path))


def _key(loader: Any, key_node: yaml.Node) -> Any:
    """A mapping key as a path holds it: its value, or for a (rare) mapping
    or list as a key, its line."""
    return loader.construct_object(key_node, deep=True) if isinstance(key_node, yaml.ScalarNode) \
        else key_node.start_mark.line


def _place_aliases(loader: Any, root: yaml.Node, lines_of_aliases: Iterator[int], lines: dict[tuple, int]) -> None:
    """A list item written as an alias (`- *p`) is at the alias's line, not
    its anchor's. The graph is walked in the order it was written: a node met
    again is an alias, the next of the parser's alias events (not followed,
    as the parser does not). Keys of merged mappings are not placed."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, tuple | None]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            line = next(lines_of_aliases, 0)
            if line and path and isinstance(path[-1], int):
                lines[path] = line
            continue
        seen.add(id(node))
        children: list[tuple[yaml.Node, tuple | None]] = []
        if isinstance(node, yaml.SequenceNode):
            children = [(item, None if path is None else (*path, index)) for index, item in enumerate(node.value)]
        elif isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                placed = None if path is None or key_node.tag == MERGE_TAG else (*path, _key(loader, key_node))
                children += [(key_node, None), (value_node, placed)]
        stack.extend(reversed(children))
