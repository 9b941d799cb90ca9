"""Decisions per second: select_policy + decide for 10,000 workloads against
20 policies, all with one `now` (as in one daemon tick).

Each round uses a new `now`, so every policy's schedule state is computed
afresh inside the timed loop (once per policy, not per workload).

    python benchmarks/decisions.py [--workloads 10000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

from scaler.decide.decisions import Signals, WorkloadState, select_policy
from scaler.decide.policies import Policy
from scaler.decide.precedence import decide

NAMESPACES = [f"team-{index}" for index in range(16)] + ["llm", "batch", "research", "demo"]
APPS = ["chat", "embed", "rerank", "whisper", "sdxl", "notebook", "trainer", "router"]
ZONES = ["Europe/Berlin", "America/New_York", "Pacific/Auckland", "UTC"]
WHENS = ["Mon-Fri 08:00-20:00", "daily 22:00-06:00", "Fri 18:00-Mon 07:00", "Mon-Fri 09:00-17:30"]


def make_policies(rng: random.Random) -> list[Policy]:
    policies = []
    for index in range(20):
        spec: dict = {
            "name": f"policy-{index}",
            "priority": index % 7,
            "targets": {
                "namespaces": rng.sample(NAMESPACES, 3) if index % 4 else None,
                "namespace_selector": "tier=gpu" if index % 4 == 0 else None,
                "selector": f"app in ({','.join(rng.sample(APPS, 3))}),!canary",
                "kinds": ["Deployment", "StatefulSet"],
            },
            "idle": {"query": "q", "threshold": 5, "duration": "30m"},
            "wake": {"query": "q", "target_per_replica": 4},
            "min_replicas": 1,
            "max_replicas": 8,
            "startup_grace": "10m",
            "scale_down_delay": "15m",
        }
        if index % 2 == 0:
            spec["schedule"] = {"timezone": ZONES[index % len(ZONES)],
                                "outside": "down" if index % 6 == 0 else "signals",
                                "windows": [{"mode": "up", "when": WHENS[index % len(WHENS)]},
                                            {"mode": "down", "start": "0 2 * * 0", "end": "0 4 * * 0"}]}
        spec["targets"] = {key: value for key, value in spec["targets"].items() if value is not None}
        policies.append(Policy.model_validate(spec))
    return policies


def make_workloads(rng: random.Random, count: int, now: datetime) -> list[tuple[WorkloadState, Signals, dict]]:
    workloads = []
    for index in range(count):
        replicas = rng.choice([0, 0, 1, 1, 2, 3, 4])
        labels = {"app": rng.choice(APPS), "app.kubernetes.io/managed-by": "helm"}
        if rng.random() < 0.1:
            labels["canary"] = "true"
        state = WorkloadState(
            kind=rng.choice(["Deployment", "Deployment", "StatefulSet"]),
            namespace=rng.choice(NAMESPACES), name=f"w{index}", labels=labels, replicas=replicas,
            last_replicas=rng.choice([None, 2, 3]) if replicas == 0 else None,
            paused_by=rng.choice([None, "policy/policy-1"]) if replicas == 0 else None,
            ready_replicas=replicas,
            started_at=now - timedelta(minutes=rng.randint(60, 600)),
            ready_at=now - timedelta(minutes=rng.randint(0, 59)) if replicas else None,
        )
        signals = Signals(idle=rng.choice([None, 0.0, 3.0, 40.0, 90.0]), wake=rng.choice([None, 0.0, 0.0, 3.0, 30.0]))
        namespace_labels = {"tier": "gpu"} if NAMESPACES.index(state.namespace) % 2 else {}
        workloads.append((state, signals, namespace_labels))
    return workloads


def run_round(policies, workloads, now) -> tuple[float, dict]:
    actions: dict = {}
    started = time.perf_counter()
    for workload, signals, namespace_labels in workloads:
        policy = select_policy(policies, workload, namespace_labels=namespace_labels)
        decision = decide(policy=policy, workload=workload, signals=signals, now=now)
        actions[decision.action] = actions.get(decision.action, 0) + 1
    return time.perf_counter() - started, actions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(42)
    start = datetime(2024, 6, 4, 9, 0, tzinfo=UTC)
    policies = make_policies(rng)
    workloads = make_workloads(rng, args.workloads, start)
    rates = []
    for round_index in range(args.rounds):
        now = start + timedelta(hours=7 * round_index)  # a new instant: schedule state computed afresh
        elapsed, actions = run_round(policies, workloads, now)
        rates.append(len(workloads) / elapsed)
        summary = ", ".join(f"{action.value}={count}" for action, count in sorted(actions.items()))
        print(f"round {round_index + 1}: {len(workloads) / elapsed:,.0f} decisions/s "
              f"({elapsed * 1000:.0f} ms; {summary})")
    print(f"{len(workloads):,} workloads x {len(policies)} policies: "
          f"median {statistics.median(rates):,.0f} decisions/s (best {max(rates):,.0f})")


if __name__ == "__main__":
    main()
