"""Storms 1 and 2: kill -9 at window edges, with one daemon or two electing a
leader (`python benchmarks/storms.py kills [--election]`).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from storm_daemons import agent_of, changed, owed_posted, reconciled, scrape
from storm_harness import (
    Storm,
    down_window,
    events_cover,
    idle_window,
    next_minute,
    settle,
    tally,
    wait_for,
    wrong_paused,
    wrong_resumed,
)

from tests.helpers import DaemonProcess


@dataclass
class Acting:
    """The daemons of a kill storm: who acts, who stands by, and who is next."""

    storm: Storm
    election: tuple[str, ...]
    lease: tuple[str, str] | None
    flags: tuple[str, ...]
    count: int = 0
    leader: DaemonProcess | None = None
    standby: DaemonProcess | None = None

    def start(self) -> DaemonProcess:
        self.count += 1
        return self.storm.daemon(f"d{self.count}", *self.flags, *self.election)

    def begin(self) -> None:
        first, second = self.start(), (self.start() if self.lease else None)
        first.wait_ready(120)
        if second is None:
            self.leader = first
            return
        second.wait_ready(120)
        holder = wait_for("a leader", lambda: self.storm.holder(*self.lease), 60, interval=0.2)
        self.leader, self.standby = (first, second) if holder == "d1" else (second, first)

    def kill_and_replace(self) -> dict:
        """SIGKILL the one acting; the next one acts (a new daemon, or the
        standby once it holds the Lease, with a new standby started)."""
        killed, killed_at = self.leader, time.monotonic()
        killed.process.kill()
        killed.process.wait(10)
        if self.lease is None:
            self.leader = self.start()
            self.leader.wait_ready(120)
            return {"killed": killed, "took_over_seconds": round(time.monotonic() - killed_at, 2)}
        standby = self.standby
        name = standby.args[standby.args.index("--identity") + 1]
        before = scrape(standby).get("reconciles", 0)
        wait_for("the standby's takeover", lambda: self.storm.holder(*self.lease) == name, 60, interval=0.1)
        took = time.monotonic() - killed_at
        wait_for("the new leader's reconcile", lambda: reconciled(standby, before), 60)
        self.leader, self.standby = standby, self.start()
        self.standby.wait_ready(120)
        return {"killed": killed, "took_over_seconds": round(took, 2)}


def kill_storm(storm: Storm, *, batches: int, objects: int, election: bool = False, trigger: str = "edge",
               edge_minutes: int = 1, concurrency: int = 16, lease: tuple[int, int, int] = (6, 4, 1),
               interval_seconds: float = 30, stop_after: int | None = None) -> dict:
    """Edges 1..batches+1: edge j pauses batch j and resumes batch j-1; the
    acting daemon is SIGKILLed after a random number of that edge's writes.
    trigger "edge": real window edges on minute boundaries, `edge_minutes`
    apart (the edge job acts); "reload": the policy file is flipped (the
    reload's reconcile acts), for tests that cannot wait for minutes.
    `stop_after`: that many edges (default: all, batches + 1)."""
    lease_ref = ("scaler-storms", storm.lease_namespace()) if election else None
    flags = ("--concurrency", str(concurrency), "--evaluation-interval-seconds", f"{interval_seconds:g}")
    election_flags = () if not election else (
        "--leader-election", "--lease-name", lease_ref[0], "--lease-namespace", lease_ref[1],
        "--lease-duration-seconds", str(lease[0]), "--lease-renew-deadline-seconds", str(lease[1]),
        "--lease-retry-period-seconds", str(lease[2]))
    acting = Acting(storm, election_flags, lease_ref, flags)
    label = "elect" if election else "kill"
    namespaces: dict[int, str] = {1: storm.batch(label, objects)}
    first_edge = next_minute(datetime.now(UTC) + timedelta(seconds=25))
    edges = {j: first_edge + timedelta(minutes=(j - 1) * edge_minutes) for j in range(1, batches + 2)}

    def policies(j: int, *, flipped: bool) -> list[dict]:
        """Batch j-1 (resumed at edge j) and batch j (paused at it), and j+1 if made."""
        found = []
        for k in (j - 1, j, j + 1):
            if k not in namespaces or k > batches:
                continue
            name = f"storm-{k}"
            if trigger == "edge":
                found.append(down_window(name, namespaces[k], label, opens=edges[k], closes=edges[k + 1]))
            elif (k == j and flipped) or (k == j - 1 and not flipped):
                found.append(down_window(name, namespaces[k], label, opens=None, closes=None))
            else:
                found.append(idle_window(name, namespaces[k], label))
        return found

    storm.write_policies(policies(1, flipped=False))
    acting.begin()
    rows = []
    for j in range(1, min(batches + 1, stop_after or batches + 1) + 1):
        pausing, resuming = namespaces.get(j) if j <= batches else None, namespaces.get(j - 1)
        if trigger == "edge":
            wait_for(f"edge {j}", lambda at=edges[j]: datetime.now(UTC) >= at, 600, interval=0.02)
        else:
            storm.write_policies(policies(j, flipped=True))
        row = {"edge": j, **storm_edge(storm, acting, pausing, resuming, objects, election=election)}
        print(json.dumps(row), flush=True)
        rows.append(row)
        if j + 1 <= batches:
            namespaces[j + 1] = storm.batch(label, objects)
        storm.write_policies(policies(j + 1, flipped=False))
        if trigger == "edge" and j + 1 <= batches and datetime.now(UTC) > edges[j + 1] - timedelta(seconds=5):
            raise TimeoutError(f"batch {j + 1} not ready 5 s before its edge: use a larger --edge-minutes")
    # Stopped early, no batch was both paused and resumed: nothing to tally but the rows.
    final = final_tally(storm, list(namespaces.values())) if len(rows) == batches + 1 else None
    summary = {"scenario": "leader-kills" if election else "kills", "trigger": trigger, "trials": len(rows),
               "objects": objects * batches, "final": final}
    print(json.dumps(summary), flush=True)
    return {"rows": rows, **summary}


def final_tally(storm: Storm, namespaces: list[str]) -> dict:
    """Every batch paused once and resumed once: one Event of each per object, all back at their size."""
    final = {"pause": {"missing": 0, "duplicate": 0}, "resume": {"missing": 0, "duplicate": 0}, "wrong": 0}
    for namespace in namespaces:
        events, names = storm.events(namespace), storm.objects(namespace)
        for key, reason in (("pause", "ScaledToZero"), ("resume", "Resumed")):
            for what, n in tally(events, names, reason).items():
                final[key][what] += n
        final["wrong"] += len(wrong_resumed(names))
    return final


def storm_edge(storm: Storm, acting: Acting, pausing: str | None, resuming: str | None, objects: int, *,
               election: bool) -> dict:
    """One edge, just past: kill the acting daemon after a random number of
    the edge's writes, let the next one act, and count."""
    started = time.monotonic()
    expected = objects * ((pausing is not None) + (resuming is not None))
    done_before = scrape(acting.leader).get("actions_success", 0)
    target = storm.rng.randint(1, expected - 1)
    leader = acting.leader
    wait_for(f"{target} writes after the edge",
             lambda: scrape(leader).get("actions_success", 0) - done_before >= target, 300, interval=0.02)
    kill = acting.kill_and_replace()
    killed: DaemonProcess = kill.pop("killed")
    row = {"pausing": objects if pausing else 0, "resuming": objects if resuming else 0,
           "writes_before_kill": edge_writes(storm, killed, pausing, resuming), **kill}
    row.update(settle_edge(storm, acting.leader, pausing, resuming))
    row["owed_events_posted_by_next"] = owed_posted(acting.leader)
    if election:
        row["objects_written_by_both"] = written_by_both(storm, killed, acting.leader, (pausing, resuming))
    row["edge_to_settled_seconds"] = round(time.monotonic() - started, 1)
    return row


def edge_writes(storm: Storm, daemon: DaemonProcess, pausing: str | None, resuming: str | None) -> int:
    """This edge's writes that landed from `daemon`: from the audit log when
    there is one (a kill may cut the log line of a write that landed), else
    from its log."""
    if storm.audit is None:
        return sum(len(changed(daemon, ns, action)) for ns, action in ((pausing, "pause"), (resuming, "resume"))
                   if ns)
    return sum(1 for ns in (pausing, resuming) if ns
               for w in storm.audit.of(resource="deployments", namespace=ns, agent=agent_of(daemon), verb="patch")
               if w.code == 200 and w.replicas is not None and (w.replicas == 0) == (ns == pausing))


def settle_edge(storm: Storm, leader: DaemonProcess, pausing: str | None, resuming: str | None) -> dict:
    """Wait until the acting daemon has finished the edge's work and posted
    its Events, then one more full reconcile (so a late duplicate shows), and count."""
    def states() -> tuple[list[str], list[str]]:
        return (wrong_paused(storm.objects(pausing)) if pausing else [],
                wrong_resumed(storm.objects(resuming)) if resuming else [])

    def evented() -> bool:
        return all(events_cover(storm, ns, storm.objects(ns), lambda e, r=reason: e[r] > 0)
                   for ns, reason in ((pausing, "ScaledToZero"), (resuming, "Resumed")) if ns)
    if settle("every object written", lambda: not any(states()), 180):
        settle("every Event posted", evented, 120)
    before = scrape(leader).get("reconciles", 0)
    wait_for("one more reconcile", lambda: reconciled(leader, before), 90, interval=0.3)
    wrong_p, wrong_r = states()
    row: dict = {"wrong_paused": len(wrong_p), "wrong_resumed": len(wrong_r)}
    if pausing:
        row["scaled_to_zero"] = tally(storm.events(pausing), storm.objects(pausing), "ScaledToZero")
    if resuming:
        row["resumed"] = tally(storm.events(resuming), storm.objects(resuming), "Resumed")
    return row


def written_by_both(storm: Storm, old: DaemonProcess, new: DaemonProcess, namespaces) -> int:
    """Objects both daemons wrote at this edge: from the audit log's landed
    PATCHes by User-Agent when there is one, else from the daemons' logs."""
    both = 0
    pausing = namespaces[0]
    for namespace in (ns for ns in namespaces if ns):
        if storm.audit is not None:
            # Each object is paused at one edge and resumed at the next:
            # only this edge's direction counts.
            by: dict[str, set[str]] = defaultdict(set)
            for w in storm.audit.of(resource="deployments", namespace=namespace, verb="patch"):
                if w.code == 200 and w.replicas is not None and (w.replicas == 0) == (namespace == pausing):
                    by[w.name].add(w.agent)
            both += sum(1 for agents in by.values() if agent_of(old) in agents and agent_of(new) in agents)
        else:
            action = "pause" if namespace == pausing else "resume"
            both += len(changed(old, namespace, action) & changed(new, namespace, action))
    return both
