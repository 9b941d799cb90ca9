"""What calendars cost a daemon tick: 1,000 workloads against 20 policies,
first without calendars, then the same policies with them (every schedule's
keep-up window `except:` a union of Bavarian holidays, a shutdown range and
an iCalendar file of weekly events, half of them with a keep-down window
`on:` that file too).

A tick is what the daemon does per reconcile without the cluster: select
the policy and decide for every workload, all with one `now` (schedule
states are computed once per policy per tick), then each policy's next
window edge (the edge job). The first tick after a reload also computes the
calendars' year; it is shown apart ("cold").

    python benchmarks/calendars.py [--workloads 1000] [--ticks 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from decisions import make_policies, make_workloads

from scaler.decide.decisions import select_policy
from scaler.decide.loading import PolicySet, check_texts
from scaler.decide.precedence import decide
from scaler.decide.windows import next_edge

ICS = "\r\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//bench//EN", *[line for index in range(20) for line in (
    "BEGIN:VEVENT", f"UID:e{index}@bench", "DTSTAMP:20240101T000000Z", f"SUMMARY:event {index}",
    f"DTSTART;TZID=Europe/Berlin:202401{index + 1:02d}T{9 + index % 8:02d}0000",
    f"DTEND;TZID=Europe/Berlin:202401{index + 1:02d}T{11 + index % 8:02d}0000",
    f"RRULE:FREQ=WEEKLY;INTERVAL={1 + index % 3}", "END:VEVENT")], "END:VCALENDAR"]) + "\r\n"
CALENDARS = {
    "holidays-de-by": {"holidays": {"country": "DE", "subdivision": "BY"}},
    "shutdown": {"dates": ["2024-12-23..2025-01-03", {"date": "2024-06-07", "name": "bridge day"}]},
    "events": {"ical": {"file": "events.ics"}},
    "days-off": {"union": ["holidays-de-by", "shutdown"]},
}


def scheduled(policies, *, calendars: bool) -> PolicySet:
    """The policies, each with a schedule (those without one get office
    hours), and with `calendars` every keep-up window `except:` the days off
    and the events, every fourth policy a keep-down window `on:` the events;
    loaded as the daemon loads them."""
    specs = []
    for index, policy in enumerate(policies):
        spec = policy.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        spec.setdefault("schedule", {"timezone": "Europe/Berlin",
                                     "windows": [{"mode": "up", "when": "Mon-Fri 08:00-20:00"}]})
        if calendars:
            windows = spec["schedule"]["windows"]
            for window in windows:
                if window["mode"] == "up":
                    window["except"] = ["days-off", "events"]
            if index % 4 == 0:
                windows.append({"name": "events", "mode": "down", "on": ["events"]})
        specs.append(spec)
    body = {"calendars": CALENDARS, "policies": specs} if calendars else {"policies": specs}
    found, problems = check_texts([("bench.yaml", yaml.safe_dump(body, sort_keys=False))],
                                  read_ical=lambda spec, origin: ICS)
    assert not problems, problems
    return found


def tick(policies, workloads, now) -> tuple[float, float]:
    """(seconds deciding, seconds finding every policy's next edge)."""
    started = time.perf_counter()
    for workload, signals, namespace_labels in workloads:
        policy = select_policy(policies, workload, namespace_labels=namespace_labels)
        decide(policy=policy, workload=workload, signals=signals, now=now)
    decided = time.perf_counter()
    for policy in policies:
        if policy.schedule is not None:
            next_edge(policy.schedule.compiled, now)
    return decided - started, time.perf_counter() - decided


def measure(label: str, make, workloads, start: datetime, ticks: int) -> None:
    policies = make()
    cold = tick(policies, workloads, start)
    warm = [tick(policies, workloads, start + timedelta(minutes=30 * index)) for index in range(1, ticks + 1)]
    deciding = statistics.median(w[0] for w in warm) * 1000
    edges = statistics.median(w[1] for w in warm) * 1000
    print(f"{label:<18} cold tick {sum(cold) * 1000:8.1f} ms (decide {cold[0] * 1000:.1f}, edges "
          f"{cold[1] * 1000:.1f});  warm ticks, median: decide {deciding:6.1f} ms, edges {edges:6.2f} ms, "
          f"total {deciding + edges:6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=20)
    args = parser.parse_args()
    import random

    start = datetime(2024, 5, 29, 22, 0, tzinfo=UTC)  # Corpus Christi (Fronleichnam) in Bavaria is 2024-05-30
    base = make_policies(random.Random(42))
    workloads = make_workloads(random.Random(7), args.workloads, start)
    print(f"{args.workloads:,} workloads x {len(base)} policies, each with a schedule; {args.ticks} ticks 30 minutes "
          f"apart from {start:%Y-%m-%d %H:%MZ}")
    measure("without calendars", lambda: scheduled(base, calendars=False), workloads, start, args.ticks)
    measure("with calendars", lambda: scheduled(base, calendars=True), workloads, start, args.ticks)


if __name__ == "__main__":
    main()
