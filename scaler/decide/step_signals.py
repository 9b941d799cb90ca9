"""A signal's value at each step of a replay, as the daemon would have read
it at that instant: a step without a point is unknown, unless the answer
covering it came back without one for the workload (`ABSENT`), which a
wake signal declaring `absent: zero` reads as no demand at zero, as the
daemon reads an instant answer without its series (`wake_health.absent_reading`).
A step whose answer failed stays unknown. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import compress
from operator import ne
from typing import TYPE_CHECKING, Any

from scaler.decide.policies import Policy
from scaler.decide.wake_health import absent_reading

if TYPE_CHECKING:
    from scaler.decide.replaying import Points, Steps

#: The text of a step an answer covered without a point for the workload (no series then).
ABSENT: Any = object()
_UNREAD = object()


class StepSignal:
    """One signal over the steps: its text at each step (None: no answer
    covered it; ABSENT: one did, without a point), the steps where the text
    changes, and the value last read."""

    __slots__ = ("changes", "text", "texts", "value")

    def __init__(self, points: Points | None, steps: Steps, unanswered: Sequence[tuple[int, int]] = ()) -> None:
        """`unanswered`: [first, last] step indexes whose answer failed."""
        start, step = int(steps.start.timestamp()), steps.step_seconds
        texts = [ABSENT if text is None else text
                 for text in map(_by_time(points).get, range(start, start + steps.count * step, step))]
        for first, last in unanswered:
            texts[first:last + 1] = [None] * len(texts[first:last + 1])
        self.texts = texts
        self.changes = list(compress(range(1, steps.count), map(ne, texts[1:], texts)))
        self.text: object = _UNREAD
        self.value: float | None = None

    @staticmethod
    def parse(text: Any) -> float | None:
        """A point's value; None (unknown) if absent, not a number, NaN or ±Inf."""
        try:
            value = float(text) if text is not None else None
        except (TypeError, ValueError):
            return None
        return value if value is not None and math.isfinite(value) else None

    def read(self, index: int) -> None:
        """The value at step `index`."""
        text = self.texts[index]
        if text != self.text:
            self.text = text
            self.value = self.parse(text)

    def wake_value(self, policy: Policy, *, replicas: int) -> float | None:
        """The value read, as the daemon's decision reads a wake signal: no
        series in an answer at zero is 0 when the signal declares `absent: zero`."""
        if policy.wake is None:
            return self.value
        return absent_reading(self.value, present=self.text is not ABSENT, answered=self.text is not None,
                              replicas=replicas, wake=policy.wake)


def step_values(points: Points | None, steps: Steps) -> list[float | None]:
    """The signal's value at each step, as the replay reads it (None: unknown)."""
    return [StepSignal.parse(text) for text in StepSignal(points, steps).texts]


def _by_time(points: Points | None) -> dict:
    """{unix seconds: text}; a malformed point is left out (its step is unknown)."""
    try:
        # The fast path: dict() takes any 2-item sequences, such as JSON's [t, "v"] lists; typeshed
        # asks for tuples only. A malformed point raises, and the loop below sorts them out.
        return dict(points or ())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        found = {}
        for point in points or ():
            try:
                timestamp, text = point
                found[timestamp] = text
            except (TypeError, ValueError):
                continue
        return found
