"""Storm 6: an edge with the default interval, a full reconcile running into it
(`python benchmarks/storms.py edge`).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

from storm_daemons import reconciled, scrape
from storm_harness import (
    Storm,
    down_window,
    events_cover,
    next_minute,
    parse_time,
    settle,
    tally,
    wait_for,
    wrong_paused,
)


def edge_count(storm: Storm, *, objects: int, reconcile_offset_seconds: float = 0.3, concurrency: int = 16,
               interval_seconds: float = 30) -> dict:
    """A keep-down window opens over `objects` Deployments; the daemon runs
    with the default interval, and the policy file is touched so that a full
    reconcile starts `reconcile_offset_seconds` after the edge (a reload
    reconciles at once, the next one an interval later): the edge job and the
    reconcile act on the same objects at once. PATCHes per changed object,
    and 422/409s (scaler's own guards refusing scaler's own writes)."""
    namespace = storm.batch("edge", objects)
    opens = next_minute(datetime.now(UTC) + timedelta(seconds=interval_seconds + 10))
    policy = down_window("edge", namespace, "edge", opens=opens, closes=opens + timedelta(minutes=30))
    storm.write_policies([policy])
    daemon = storm.daemon("edge", "--concurrency", str(concurrency), "--evaluation-interval-seconds",
                          f"{interval_seconds:g}")
    daemon.wait_ready(120)
    touch_at = opens - timedelta(seconds=interval_seconds) + timedelta(seconds=reconcile_offset_seconds)
    wait_for("the moment to touch the policies", lambda: datetime.now(UTC) >= touch_at, 120, interval=0.01)
    storm.write_policies([policy])  # the same policies, a new mtime: reloaded, and a reconcile at once
    wait_for("the edge", lambda: datetime.now(UTC) >= opens - timedelta(seconds=1), 120, interval=0.05)
    before = scrape(daemon)
    ends: list[float] = []  # when each full reconcile finished, in seconds from the edge
    watching = threading.Event()

    def watch() -> None:
        seen = before.get("reconciles", 0)
        while not watching.is_set():
            if (count := scrape(daemon).get("reconciles", 0)) > seen:
                seen = count
                ends.append(round((datetime.now(UTC) - opens).total_seconds(), 2))
            time.sleep(0.05)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    wait_for("every object paused", lambda: not wrong_paused(storm.objects(namespace)), 300, interval=0.3)
    names = sorted(storm.objects(namespace))
    settle("every Event", lambda: events_cover(storm, namespace, names, lambda e: e["ScaledToZero"] > 0), 120)
    last = scrape(daemon).get("reconciles", 0)
    wait_for("one more reconcile", lambda: reconciled(daemon, last), interval_seconds + 60, interval=0.5)
    after = scrape(daemon)
    watching.set()
    watcher.join(5)
    logged = [r for r in daemon.logs("decision") if r.get("namespace") == namespace and r.get("action") == "pause"]
    landed = [r for r in logged if r.get("result") == "changed"]
    written_at = [parse_time(r["timestamp"]) for r in landed]
    row = {"scenario": "edge", "objects": objects, "interval_seconds": interval_seconds,
           "patches": int(after.get("patch", 0) - before.get("patch", 0)), "changed": len(landed),
           "reconciles_ended_at_seconds_after_edge": ends,
           "conflicts_after_retries": int(after.get("actions_conflict", 0) - before.get("actions_conflict", 0)),
           "failed": int(after.get("actions_failed", 0) - before.get("actions_failed", 0)),
           "edge_to_last_write_seconds": round((max(written_at) - opens).total_seconds(), 2),
           "wrong": len(wrong_paused(storm.objects(namespace))),
           **tally(storm.events(namespace), names, "ScaledToZero")}
    if storm.audit is not None:
        patches = storm.audit.of(resource="deployments", namespace=namespace, agent="scaler/edge", verb="patch")
        row.update({"audit_patches": len(patches), "refused_422": sum(1 for w in patches if w.code == 422),
                    "refused_409": sum(1 for w in patches if w.code == 409)})
    daemon.stop()
    print(json.dumps(row), flush=True)
    return row
