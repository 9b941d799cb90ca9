"""The field types of the policy format: durations, names, labels, numbers
in range, each checked with a message written for the person who wrote it.
Everything the daemon could trip on at run time is refused here, at load."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from scaler.decide.kinds import UnknownKind, parse_kind
from scaler.decide.selectors import Selector, SelectorError

POLICY_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")
#: Prometheus label names, as PromQL's `by (...)` accepts them.
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
#: A namespace name: an RFC 1123 DNS label.
NAMESPACE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
#: Replica counts are int32 in the Kubernetes API; more is an HTTP 422 on every write.
MAX_REPLICAS = 2**31 - 1
#: Longest duration a setting may have: a year (an idle window longer than
#: Prometheus keeps data can never be complete anyway).
MAX_DURATION_SECONDS = 366 * 86400.0
#: Smallest queue length one replica may serve; smaller sizes every queue at the replica cap.
MIN_TARGET_PER_REPLICA = 0.001
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def invalid(message: str) -> PydanticCustomError:
    # The message goes through the context so braces in user text stay literal.
    return PydanticCustomError("scaler", "{message}", {"message": message})


# ---------------------------------------------------------------- field types


def parse_duration(value: Any) -> float:
    """'90s', '30m', '1h30m', '1.5h', '2d', '250ms' or a number of seconds."""
    if isinstance(value, bool):
        raise invalid(f"{value!r} is not a duration (write e.g. 90s, 30m, 1h30m)")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if text.startswith("-"):
            raise invalid(f"{value!r} is negative; a duration is 0 or more (e.g. 90s, 30m, 1h30m)")
        parts = _DURATION.findall(text)
        if not text or "".join(number + unit for number, unit in parts) != text:
            raise invalid(f"{value!r} is not a duration (write e.g. 90s, 30m, 1h30m, 2d)")
        seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    else:
        raise invalid(f"{value!r} is not a duration (write e.g. 90s, 30m, 1h30m)")
    if not math.isfinite(seconds):  # .inf, .nan, or a number past a float's range
        raise invalid(f"{value!r} is not a finite number; a duration is 0 or more (e.g. 90s, 30m, 1h30m)")
    if seconds < 0:
        raise invalid(f"{value!r} is negative; a duration is 0 or more (e.g. 90s, 30m, 1h30m)")
    if seconds > MAX_DURATION_SECONDS:
        raise invalid(f"{value!r} is longer than a year ({MAX_DURATION_SECONDS:.0f}s), the longest duration "
                       "scaler accepts")
    return seconds


def _positive(seconds: float) -> float:
    if seconds <= 0:
        raise invalid("must be longer than 0 (e.g. 90s, 30m, 1h30m)")
    return seconds


_DURATION_SCHEMA = WithJsonSchema({
    "anyOf": [{"type": "string", "pattern": r"^\s*(\d+(\.\d+)?(ms|d|h|m|s)\s*)+$"},
              {"type": "number", "minimum": 0}],
    "description": "A duration such as 90s, 30m, 1h30m or 2d, or a number of seconds.",
})
Duration = Annotated[float, BeforeValidator(parse_duration), _DURATION_SCHEMA]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive), _DURATION_SCHEMA]


def _check_kind(text: str) -> str:
    """Any spelling kinds.parse_kind accepts, stored as its canonical name."""
    try:
        return parse_kind(text).name
    except UnknownKind as error:
        raise invalid(str(error)) from None


Kind = Annotated[str, AfterValidator(_check_kind)]


def check_selector(text: str | None) -> str | None:
    if text is not None:
        try:
            Selector.parse(text)
        except SelectorError as error:
            raise invalid(str(error)) from None
    return text


def _check_query(text: str) -> str:
    if not text.strip():
        raise invalid("the PromQL query is empty")
    return text


def _not_a_boolean(value: Any) -> Any:
    """A number field refuses YAML's booleans, which Python would count as 1
    and 0 (`min_replicas: true`, `threshold: yes`)."""
    if isinstance(value, bool):
        raise invalid(f"{str(value).lower()} is a boolean (true/false, yes/no, on/off), not a number")
    return value


def _check_finite(value: float) -> float:
    if not math.isfinite(value):
        raise invalid(f"{value} is not a finite number")
    return value


def _check_label_name(text: str) -> str:
    if not LABEL_NAME.match(text):
        raise invalid(f"{text!r} is not a Prometheus label name: letters, digits and '_', not starting with "
                       "a digit (label_replace can copy a label to a valid name)")
    return text


def _check_namespaces(names: tuple[str, ...] | None) -> tuple[str, ...] | None:
    for name in names or ():
        if not NAMESPACE_NAME.match(name):
            raise invalid(f"{name!r} is not a namespace name: 1-63 lowercase letters, digits and '-', "
                           "starting and ending with a letter or digit")
    return names


Query = Annotated[str, AfterValidator(_check_query)]
LabelName = Annotated[str, AfterValidator(_check_label_name)]
Namespaces = Annotated[tuple[str, ...], AfterValidator(_check_namespaces)]
Finite = Annotated[float, BeforeValidator(_not_a_boolean), AfterValidator(_check_finite)]
Whole = Annotated[int, BeforeValidator(_not_a_boolean)]
WholeOrNone = Annotated[int | None, BeforeValidator(_not_a_boolean)]


def _check_prewarm(value: Any) -> Any:
    if value is None or value == "auto":
        return value
    return _positive(parse_duration(value))


#: 'auto', or seconds.
Prewarm = Annotated[str | float, BeforeValidator(_check_prewarm), WithJsonSchema({
    "anyOf": [{"const": "auto"}, {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?(ms|d|h|m|s)\s*)+$"},
              {"type": "number", "exclusiveMinimum": 0}],
    "description": "'auto' (the measured warm-up) or a duration such as 90s or 5m."})]
