"""The three patch forms the API server takes, applied as it applies them.

Written from RFC 6902 (JSON patch), RFC 7386 (merge patch) and what the
local kube-apiserver answered (tests/fixtures/api/exchanges.json): a `test`
of a missing key against null passes, a `replace` of a missing key adds it,
an operation whose parent is missing fails, and so does a `remove` of a
missing key. A `test` of a string the server and Python's client encode
differently (with <, > or &, or non-ASCII) never passes.
"""

from __future__ import annotations

import copy
from typing import Any


class PatchError(ValueError):
    """The server refuses the patch (422 Invalid)."""


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"invalid JSON pointer {pointer!r}")
    return [_unescape(token) for token in pointer[1:].split("/")]


def _parent(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise PatchError(f"doc is missing path: {'/'.join(tokens)}")
    if not isinstance(node, dict | list):
        raise PatchError(f"doc is missing path: {'/'.join(tokens)}")
    return node


def _index(node: list, token: str, *, appending: bool) -> int:
    if appending and token == "-":
        return len(node)
    if not token.isdigit():
        raise PatchError(f"invalid array index {token!r}")
    index = int(token)
    if index > len(node) or (not appending and index == len(node)):
        raise PatchError(f"array index {index} out of bounds")
    return index


def _get(doc: Any, tokens: list[str]) -> tuple[bool, Any]:
    """(found, value) at `tokens`; a missing parent is an error."""
    if not tokens:
        return True, doc
    parent, last = _parent(doc, tokens), tokens[-1]
    if isinstance(parent, dict):
        return (last in parent), parent.get(last)
    index = _index(parent, last, appending=False)
    return True, parent[index]


def json_patch(doc: Any, operations: Any) -> Any:
    """`doc` after the operations (a new object); PatchError when one fails."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch is a list of operations")
    doc = copy.deepcopy(doc)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise PatchError(f"invalid operation {operation!r}")
        doc = _operate(doc, operation["op"], _tokens(operation["path"]), operation)
    return doc


def _operate(doc: Any, op: str, tokens: list[str], operation: dict) -> Any:
    if op == "test":
        found, value = _get(doc, tokens)
        expected = operation.get("value")
        if not (value == expected if found else expected is None) or not _encodes_alike(expected):
            raise PatchError(f"testing value {operation['path']} failed")
        return doc
    if op == "remove":
        _remove(doc, tokens)
        return doc
    if op in ("add", "replace"):
        if "value" not in operation:
            raise PatchError(f"{op} operation has no value")
        if op == "replace" and tokens and isinstance(_parent(doc, tokens), list):
            _remove(doc, tokens)  # an array index must exist; a map key need not (as the server does)
        return _add(doc, tokens, copy.deepcopy(operation["value"]))
    if op in ("move", "copy"):
        found, value = _get(doc, _tokens(operation.get("from", "")))
        if not found:
            raise PatchError(f"{op} operation does not apply: missing from path")
        if op == "move":
            _remove(doc, _tokens(operation["from"]))
        return _add(doc, tokens, copy.deepcopy(value))
    raise PatchError(f"unknown operation {op!r}")


def _encodes_alike(value: Any) -> bool:
    """The server compares a test's value by its JSON encoding: Go escapes
    <, > and &, Python's client escapes other non-ASCII and Go writes it
    raw (but both escape U+2028 and U+2029). A
    string where the two differ never tests equal, whatever the object holds."""
    if isinstance(value, str):
        return not any(c in "<>&" or (ord(c) > 0x7E and c not in "\u2028\u2029") for c in value)
    if isinstance(value, dict):
        return all(_encodes_alike(k) and _encodes_alike(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_encodes_alike(v) for v in value)
    return True


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent, last = _parent(doc, tokens), tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    else:
        parent.insert(_index(parent, last, appending=True), value)
    return doc


def _remove(doc: Any, tokens: list[str]) -> None:
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent, last = _parent(doc, tokens), tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"remove operation does not apply: doc is missing key: {'/'.join(tokens)}")
        del parent[last]
    else:
        del parent[_index(parent, last, appending=False)]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: null deletes, objects merge, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def leaves(obj: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(path, value) of every leaf of a mapping (lists and scalars are leaves)."""
    if isinstance(obj, dict) and obj:
        found = []
        for key, value in obj.items():
            found.extend(leaves(value, (*path, key)))
        return found
    return [(path, obj)] if path else []


def dig(obj: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return False, None
        obj = obj[key]
    return True, obj
