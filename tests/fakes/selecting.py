"""Label and field selectors as the API server reads them, for the fake.

Written from the Kubernetes docs (equality- and set-based requirements),
not from scaler's own parser, so a disagreement between the two shows.
"""

from __future__ import annotations

import re


class SelectorError(ValueError):
    pass


_SET = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ = re.compile(r"^\s*([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)\s*$")
_EXISTS = re.compile(r"^\s*(!?)\s*([\w./-]+)\s*$")


def _requirements(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p.strip()]


def label_matches(selector: str, obj: dict) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for requirement in _requirements(selector or ""):
        if match := _SET.match(requirement):
            key, op, values = match.group(1), match.group(2), {v.strip() for v in match.group(3).split(",")}
            if (labels.get(key) in values) != (op == "in") or (op == "in" and key not in labels):
                return False
        elif match := _EQ.match(requirement):
            key, op, value = match.groups()
            if (labels.get(key) == value) != (op != "!="):
                return False
        elif match := _EXISTS.match(requirement):
            negate, key = match.groups()
            if (key in labels) == bool(negate):
                return False
        else:
            raise SelectorError(requirement)
    return True


def field_matches(selector: str, obj: dict) -> bool:
    for requirement in _requirements(selector or ""):
        match = re.match(r"^\s*([\w.]+)\s*(==|=|!=)\s*(.*?)\s*$", requirement)
        if not match:
            raise SelectorError(requirement)
        path, op, value = match.groups()
        node = obj
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if (str(node if node is not None else "") == value) != (op != "!="):
            return False
    return True
