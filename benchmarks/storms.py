"""Fault storms against `scaler run` on the real local cluster, counted exactly.

Each scenario is a subcommand with its sizes as flags; each is bounded (every
wait has a deadline) and stops every process it started. It prints one JSON
line per trial and a summary line; it asserts nothing (the cluster tier's
tests/cluster/test_storms.py asserts the same counts at reduced sizes).

  kills         a keep-down window edge every minute: it pauses one batch of
                Deployments and resumes the one before; at each edge the
                daemon is SIGKILLed after a random number of its writes and a
                new one started. Per object: replicas 0 and last-replicas
                exact once paused, the recorded size once resumed; exactly
                one ScaledToZero and one Resumed Event (0 missing, 0
                duplicate). --election: two daemons electing a leader, the
                leader killed (leader kills), and objects written by both.
  split-brain   two daemons; the leader's pauses fail their guards (another
                writer changes scaler.io/override-until on the same objects,
                so they are in the 422-re-read-retry loop) when it is
                SIGSTOPped past its lease; the policy is flipped so the
                standby, once leader, resumes what the old one paused; then
                SIGCONT. Writes by the deposed leader after the takeover
                (its log, and the API server's audit log by User-Agent).
  throttled     the API server refusing all but one mutating request at a
                time (--max-mutating-requests-inflight 1), the daemon on a
                ServiceAccount token (system:masters is never throttled)
                across a keep-down window's end: pauses that land after the
                window ended.
  api-down      the daemon started with the API server stopped: /readyz while
                it is away, and the first write's delay after it returns.
  edge          an edge over many Deployments with the default 30 s interval,
                a full reconcile timed to start just after the edge, so both
                passes act at once: PATCHes per changed object, and writes
                refused by scaler's own guards (422/409).

The cluster: SCALER_CLUSTER_STATE_DIR (deploy/local/up) or one started in
~/.cache/scaler/bench-storms and stopped at the end. The API server is
restarted with an audit log (a policy that records PATCHes of Deployments
and writes of Events and Leases; deploy/local/cluster.py is not changed: the
recorded command line gets the extra flags) and restored at the end;
--no-audit counts from the daemons' logs and Events alone.

    python benchmarks/storms.py kills --batches 10 --objects 1000
    python benchmarks/storms.py kills --election --batches 4 --objects 1000
    python benchmarks/storms.py split-brain --trials 5 --objects 200
    python benchmarks/storms.py throttled --objects 1000
    python benchmarks/storms.py api-down --down-seconds 10,75
    python benchmarks/storms.py edge --objects 1000
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import local_cluster, start_cluster
from storm_api_down import api_down
from storm_apiserver import start_apiserver, with_audit
from storm_edge import edge_count
from storm_harness import Storm
from storm_kills import kill_storm
from storm_split_brain import split_brain
from storm_throttled import throttled

#: What tests/cluster/test_storms.py runs at reduced sizes, from here.
__all__ = ["Storm", "api_down", "edge_count", "kill_storm", "main", "split_brain", "throttled"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=None, help="random kill moments (default: random)")
    parser.add_argument("--no-audit", action="store_true", help="count from the daemons' logs and Events alone")
    commands = parser.add_subparsers(dest="scenario", required=True)
    kills = commands.add_parser("kills", help="SIGKILL the daemon mid-batch at each window edge")
    kills.add_argument("--batches", type=int, default=10)
    kills.add_argument("--objects", type=int, default=1000)
    kills.add_argument("--election", action="store_true", help="two daemons electing a leader; kill the leader")
    kills.add_argument("--trigger", choices=("edge", "reload"), default="edge")
    kills.add_argument("--edge-minutes", type=int, default=1)
    kills.add_argument("--concurrency", type=int, default=16)
    kills.add_argument("--interval-seconds", type=float, default=10, help="the daemons' evaluation interval")
    split = commands.add_parser("split-brain", help="SIGSTOP the leader across its lease while its writes retry")
    split.add_argument("--trials", type=int, default=5)
    split.add_argument("--objects", type=int, default=40)
    split.add_argument("--writers", type=int, default=6)
    split.add_argument("--qps", type=float, default=10, help="the daemons' --api-qps (burst 1)")
    slow = commands.add_parser("throttled", help="a window's end while the API server throttles the daemon")
    slow.add_argument("--objects", type=int, default=1000)
    slow.add_argument("--window-minutes", type=int, default=1)
    slow.add_argument("--inflight", type=int, default=1)
    down = commands.add_parser("api-down", help="the daemon started with the API server stopped")
    down.add_argument("--objects", type=int, default=100)
    down.add_argument("--down-seconds", default="10,75")
    edge = commands.add_parser("edge", help="an edge with the default interval and a reconcile running into it")
    edge.add_argument("--objects", type=int, default=1000)
    edge.add_argument("--offset-seconds", type=float, default=0.3)
    args = parser.parse_args(argv)

    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print(json.dumps({"scenario": args.scenario, "seed": seed, "started": datetime.now(UTC).isoformat()}), flush=True)
    cluster, own = start_cluster("bench-storms")
    work = Path(tempfile.mkdtemp(prefix=f"scaler-storms-{args.scenario}-"))
    audit, original = (None, None) if args.no_audit else with_audit(cluster, work)
    storm = Storm(cluster, work, audit, seed)
    started = time.monotonic()
    try:
        if args.scenario == "kills":
            kill_storm(storm, batches=args.batches, objects=args.objects, election=args.election,
                       trigger=args.trigger, edge_minutes=args.edge_minutes, concurrency=args.concurrency,
                       interval_seconds=args.interval_seconds)
        elif args.scenario == "split-brain":
            split_brain(storm, trials=args.trials, objects=args.objects, writers=args.writers, qps=args.qps)
        elif args.scenario == "throttled":
            throttled(storm, objects=args.objects, window_minutes=args.window_minutes, inflight=args.inflight)
        elif args.scenario == "api-down":
            api_down(storm, objects=args.objects, down_seconds=[float(s) for s in args.down_seconds.split(",")])
        else:
            edge_count(storm, objects=args.objects, reconcile_offset_seconds=args.offset_seconds)
    finally:
        storm.close()
        print(json.dumps({"scenario": args.scenario, "seconds": round(time.monotonic() - started, 1),
                          "work": str(work)}), flush=True)
        if own:
            local_cluster.down(cluster.state_dir)
        elif original is not None:
            start_apiserver(cluster, original)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
