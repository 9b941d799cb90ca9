"""What a storm reads from a daemon it started: its /metrics counters, its
/readyz, its JSON log lines.
"""

from __future__ import annotations

import urllib.request
from collections import defaultdict
from datetime import datetime

from storm_harness import parse_time

from tests.helpers import DaemonProcess


def scrape(daemon: DaemonProcess) -> dict[str, float]:
    """The daemon's counters we poll: successful writes, PATCHes, full reconciles."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{daemon.port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    values: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        if line.startswith("scaler_actions_total{"):
            result = line.split('result="', 1)[1].split('"', 1)[0]
            values[f"actions_{result}"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("scaler_kube_requests_total{"):
            values[line.split('verb="', 1)[1].split('"', 1)[0]] += float(line.rsplit(" ", 1)[1])
        elif line.startswith('scaler_reconcile_duration_seconds_count{kind="full"}'):
            values["reconciles"] = float(line.rsplit(" ", 1)[1])
    return values


def readyz(daemon: DaemonProcess) -> int:
    """The status of the daemon's /readyz; 0 while nothing answers."""
    try:
        return daemon.get("/readyz")[0]
    except OSError:
        return 0


def log_lines(daemon: DaemonProcess, event: str, since: datetime | None = None) -> list[dict]:
    return [r for r in daemon.logs(event) if since is None or parse_time(r["timestamp"]) >= since]


def changed(daemon: DaemonProcess, namespace: str, action: str | None = None) -> set[str]:
    """The objects whose write (of `action`) this daemon logged as landed."""
    return {r["workload"] for r in daemon.logs("decision") if r.get("namespace") == namespace
            and r.get("result") == "changed" and action in (None, r.get("action"))}


def owed_posted(daemon: DaemonProcess) -> int:
    return sum(r.get("events", 0) for r in daemon.logs("posting the Events a previous daemon owed"))


def reconciled(daemon: DaemonProcess, more_than: float) -> bool:
    return scrape(daemon).get("reconciles", 0) > more_than


def agent_of(daemon: DaemonProcess) -> str:
    return "scaler/" + daemon.args[daemon.args.index("--identity") + 1]
