"""What one window state and one next edge cost, for cron expressions dense
and sparse, compact windows and windows with calendars: cold (a window just
compiled, as after a reload) and warm (the same window asked about other
instants, as on every tick).

Issue 20 found `start: "* 4-13 * 12 *"` asked about June costing 1.1-2.5 s
per state (fire times walked one by one back to December); the engine now
finds fire times by day.

    python benchmarks/windows.py [--instants 2000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

from scaler.decide.windows import Mode, Window, zone

CRON = [
    ("0 8 * * 1-5", "0 20 * * 1-5"),
    ("* 4-13 * 12 *", "0 14 * 12 *"),
    ("*/7 * 29 2 *", "0 0 1 3 *"),
    ("59 23 31 * *", "0 0 1 * *"),
    ("* * * * *", "30 * * * *"),
    ("0 0 1 1 *", "0 0 2 1 *"),
]
COMPACT = ["Mon-Fri 08:00-20:00", "Fri 18:00-Mon 07:00", "daily 22:00-06:00"]


def instants(rng: random.Random, count: int) -> list[datetime]:
    start = datetime(2020, 1, 1, tzinfo=UTC)
    return [start + timedelta(seconds=rng.randrange(10 * 366 * 86400)) for _ in range(count)]


def measure(make, moments: list[datetime]) -> tuple[float, float, float, float]:
    """(cold state, warm state, warm next edge, state per tick), microseconds
    per call (medians for cold; ticks 30 s apart, as the daemon asks)."""
    colds = []
    for moment in moments[:200]:
        window = make()
        started = time.perf_counter()
        window.active_at(moment)
        colds.append(time.perf_counter() - started)
    window = make()
    started = time.perf_counter()
    for moment in moments:
        window.active_at(moment)
    warm = (time.perf_counter() - started) / len(moments)
    started = time.perf_counter()
    for moment in moments:
        window.next_edge(moment)
    edge = (time.perf_counter() - started) / len(moments)
    window = make()
    ticks = [moments[0] + timedelta(seconds=30 * index) for index in range(len(moments))]
    started = time.perf_counter()
    for moment in ticks:
        window.active_at(moment)
    tick = (time.perf_counter() - started) / len(ticks)
    return statistics.median(colds) * 1e6, warm * 1e6, edge * 1e6, tick * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instants", type=int, default=2000)
    args = parser.parse_args()
    moments = instants(random.Random(20), args.instants)
    tz = zone("Europe/Berlin")
    print(f"{'window':<40} {'cold state':>11} {'warm state':>11} {'next edge':>11} {'per tick':>11}   "
          f"(microseconds; {args.instants} random instants over 2020-2029, Europe/Berlin)")
    worst = 0.0
    for start, end in CRON:
        numbers = measure(lambda start=start, end=end: Window(name="w", mode=Mode.UP, start=start, end=end, tz=tz),
                          moments)
        worst = max(worst, *numbers)
        print(f"{start + ' / ' + end:<40} " + " ".join(f"{number:>11.1f}" for number in numbers))
    for when in COMPACT:
        numbers = measure(lambda when=when: Window.from_when(when, name="w", mode=Mode.UP, tz=tz), moments)
        worst = max(worst, *numbers)
        print(f"{when:<40} " + " ".join(f"{number:>11.1f}" for number in numbers))
    print(f"slowest: {worst:.1f} us per call")


if __name__ == "__main__":
    main()
