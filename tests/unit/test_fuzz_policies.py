"""A bounded policy fuzzer (tests/fuzzing.py makes the files, seeded, so a
failure names the seed that reproduces it). For thousands of generated files:

* loading never raises (no traceback reaches a user);
* every rejection names the file and a line in it;
* every accepted policy survives what the daemon does with it on each tick:
  query building, select_policy and decide for workloads it targets (running,
  at zero with and without a record; signals known, unknown, NaN, huge), and
  next_edge for its schedule.

On the branch point (575e6f6) this fails within the first 150 seeds: seed 23
(an ESC character: ReaderError traceback), seeds 111, 113, 132 (a tiny
target_per_replica accepted, then OverflowError in decide), seed 124 (NUL).
Writing it found two more here: `timezone: Pacific` (a directory in the zone
database: IsADirectoryError traceback) and a lone carriage return, which
YAML counts as a line break, shifting our control-character line numbers.

SCALER_FUZZ_FILES (default 3000) sets the count, fuzzed in chunks of 100
seeds, one test each; the time taken and the rate are printed. tests/cluster/test_fuzzed_plan.py runs `scaler plan`
against the real cluster for a sample of the accepted files.
"""

from __future__ import annotations

import math
import os
import re
import time
import traceback
from datetime import UTC, datetime

import pytest

from scaler.decide.decisions import Signals, WorkloadState, select_policy
from scaler.decide.kinds import parse_kind
from scaler.decide.loading import check_policies
from scaler.decide.policies import Policy
from scaler.decide.precedence import decide
from scaler.decide.windows import next_edge
from scaler.signals.queries import idle_query, wake_query
from tests.fuzzing import policy_file

LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
FILES = int(os.environ.get("SCALER_FUZZ_FILES", "3000"))
NOWS = [datetime(2024, 3, 31, 0, 30, tzinfo=UTC), datetime(2026, 11, 1, 6, 0, tzinfo=UTC),
        datetime(2031, 12, 31, 23, 59, tzinfo=UTC)]
SIGNALS = [Signals(), Signals(idle=0.0, wake=0.0), Signals(idle=5.0, wake=10.0), Signals(idle=math.nan, wake=1e308),
           Signals(idle=math.inf, wake=-1.0)]


def workloads_for(policy: Policy) -> list[WorkloadState]:
    namespace = (policy.targets.namespaces or ("llm",))[0]
    labels = {"app": "chat", "tier": "gpu"}
    states = []
    for kind in policy.targets.kinds:
        key = parse_kind(kind).key
        states += [
            WorkloadState(key, namespace, "w", labels=labels, replicas=2),
            WorkloadState(key, namespace, "w", labels=labels, replicas=0),
            WorkloadState(key, namespace, "w", labels=labels, replicas=0, last_replicas=3,
                          paused_by=f"policy/{policy.name}"),
        ]
    return states


def evaluate(policy: Policy, everything: tuple[Policy, ...]) -> None:
    """What one tick does with a policy, without the cluster."""
    if policy.idle is not None:
        idle_query(policy.idle.query, duration_seconds=policy.idle.duration_seconds,
                   namespace_label=policy.idle.namespace_label, workload_label=policy.idle.workload_label)
    if policy.wake is not None:
        wake_query(policy.wake.query, namespace_label=policy.wake.namespace_label,
                    workload_label=policy.wake.workload_label)
    for now in NOWS:
        if policy.schedule is not None:
            edge = next_edge(policy.schedule.compiled, now)
            assert edge is None or edge > now
        for state in workloads_for(policy):
            chosen = select_policy(everything, state, namespace_labels={"team": "a"})
            for signals in SIGNALS:
                for candidate in {id(policy): policy, id(chosen): chosen}.values():
                    decision = decide(policy=candidate, workload=state, signals=signals, now=now)
                    assert 0 <= decision.replicas <= 2**31 - 1 and decision.reason


#: Seeds per test: each chunk is its own test, well inside the unit tier's 10 s.
CHUNK = 100


@pytest.mark.parametrize("first", range(0, FILES, CHUNK), ids=lambda first: f"seeds-{first}")
def test_generated_policy_files(tmp_path, first):
    started = time.perf_counter()
    accepted = rejected = 0
    failures = []
    seeds = range(first, min(first + CHUNK, FILES))
    for seed in seeds:
        path = tmp_path / f"fuzz-{seed}.yaml"
        text = policy_file(seed)
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            policies, problems = check_policies([path])
            lines = len(LINE_BREAK.findall(text)) + 2  # as YAML counts them: \r alone is a break too
            for problem in problems:
                assert problem.file == str(path), problem
                assert problem.line is not None and 1 <= problem.line <= lines, f"no line: {problem}"
            if problems:
                rejected += 1
                continue
            accepted += 1
            for policy in policies:
                evaluate(policy, policies.policies)
        except Exception:  # noqa: BLE001 - collected, reported with the seed
            failures.append(f"seed {seed}:\n{text}\n{traceback.format_exc()}")
            if len(failures) >= 5:
                break
    seconds = time.perf_counter() - started
    print(f"\nfuzzed {len(seeds)} policy files in {seconds:.1f}s ({len(seeds) / seconds:.0f} files/s): "
          f"{accepted} accepted and evaluated, {rejected} rejected with file:line")
    assert not failures, "\n\n".join(failures)
    # About 15% of generated files are valid (9-19 per 100 seen); a chunk with
    # fewer than 5 would mean the generator lost its way.
    assert accepted >= len(seeds) // 20, "the generator should produce enough valid files to evaluate"
