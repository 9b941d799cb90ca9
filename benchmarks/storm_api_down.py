"""Storm 5: the daemon started while the API server is down
(`python benchmarks/storms.py api-down`).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from common import local_cluster
from storm_apiserver import start_apiserver
from storm_daemons import agent_of, readyz
from storm_harness import Storm, down_window, parse_time, wait_for, wrong_paused


def api_down(storm: Storm, *, objects: int, down_seconds: list[float]) -> dict:
    """Per trial: the API server stopped, the daemon started, /readyz polled
    while it is away, the API server started again: when /readyz turns 200
    and when the first write goes out, after its return."""
    cluster = storm.cluster
    original = list(cluster.commands["apiserver"])
    rows = []
    for trial, down in enumerate(down_seconds, 1):
        row = {"trial": trial, "down_seconds": down, "objects": objects,
               **down_trial(storm, trial, objects, down, original)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    summary = {"scenario": "api-down", "trials": len(rows),
               "max_first_write_after_return_seconds": max(r["first_write_after_return_seconds"] for r in rows),
               "ready_while_down": sum(r["readyz_while_down"].get(200, 0) for r in rows)}
    print(json.dumps(summary), flush=True)
    return {"rows": rows, **summary}


def down_trial(storm: Storm, trial: int, objects: int, down: float, original: list[str]) -> dict:
    cluster = storm.cluster
    namespace = storm.batch("down", objects)
    storm.write_policies([down_window(f"down-{trial}", namespace, "down", opens=None, closes=None)])
    local_cluster.stop_component(cluster, "apiserver")
    try:
        daemon = storm.daemon(f"down{trial}")
        started = time.monotonic()
        answers: Counter = Counter()
        while time.monotonic() - started < down:
            answers[readyz(daemon)] += 1
            time.sleep(0.2)
    finally:
        returned = start_apiserver(cluster, original)
    returned_wall = datetime.now(UTC) - timedelta(seconds=time.monotonic() - returned)
    ready = wait_for("the daemon's /readyz", lambda: readyz(daemon) == 200 and time.monotonic(), 120, interval=0.05)
    wait_for("every object paused", lambda: not wrong_paused(storm.objects(namespace)), 120, interval=0.5)
    first = min(parse_time(r["timestamp"]) for r in daemon.logs("writing"))
    row = {"readyz_while_down": dict(answers), "ready_after_return_seconds": round(ready - returned, 2),
           "first_write_after_return_seconds": round((first - returned_wall).total_seconds(), 2)}
    if storm.audit is not None:
        patches = [w for w in storm.audit.of(resource="deployments", namespace=namespace, verb="patch")
                   if w.agent == agent_of(daemon)]
        row["first_patch_received_after_return_seconds"] = round(
            (min(w.received for w in patches) - returned_wall).total_seconds(), 2)
    daemon.stop()
    return row
