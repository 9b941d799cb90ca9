"""Storm 3: split brain, the leader frozen (SIGSTOP) across its lease while its
writes fail guards (`python benchmarks/storms.py split-brain`).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from storm_daemons import agent_of, changed, log_lines, reconciled, scrape
from storm_harness import Storm, down_window, idle_window, settle, tally, wait_for, wrong_resumed

from scaler.cluster.kinds import DEPLOYMENT
from scaler.cluster.kube import Kube, KubeError
from scaler.decide.annotations import OVERRIDE_UNTIL
from tests.helpers import DaemonProcess


class Racer:
    """Other writers changing a guarded annotation (scaler.io/override-until,
    to an instant in the past, so the decision stays the same) on every
    object of a namespace, each object once every `every_seconds`: the
    daemon's guarded PATCHes that read the object before such a write fail
    with 422, and it re-reads and retries; paced, so that some of its
    retries get through and the leader keeps making progress."""

    def __init__(self, cluster, namespace: str, names: list[str], writers: int, every_seconds: float = 1.0) -> None:
        self.kube = Kube.from_environment(kubeconfig=str(cluster.kubeconfig), pool_size=writers + 2)
        self.kube.api_client.user_agent = "storms/racer"
        self.namespace, self.names, self.every_seconds = namespace, names, every_seconds
        self.stop_event = threading.Event()
        self.written = 0
        self.threads = [threading.Thread(target=self._run, args=(names[i::writers],), daemon=True)
                        for i in range(writers)]

    def __enter__(self) -> Racer:
        for thread in self.threads:
            thread.start()
        return self

    def _run(self, names: list[str]) -> None:
        count = 0
        while not self.stop_event.is_set():
            started = time.monotonic()
            for name in names:
                count += 1
                past = (datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=count)).strftime("%Y-%m-%dT%H:%M:%SZ")
                try:
                    self.kube.patch(DEPLOYMENT.resource, self.namespace, name,
                                    {"metadata": {"annotations": {OVERRIDE_UNTIL: past}}})
                    self.written += 1
                except KubeError:
                    pass
            self.stop_event.wait(max(self.every_seconds - (time.monotonic() - started), 0))

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(10)

    def __exit__(self, *_) -> None:
        self.stop()


@dataclass
class Pair:
    """Two daemons electing a leader on one Lease, with its timings."""

    storm: Storm
    lease: tuple[int, int, int]
    qps: float = 0
    leader: DaemonProcess = field(init=False)
    standby: DaemonProcess = field(init=False)

    def __post_init__(self) -> None:
        duration, deadline, retry = self.lease
        self.ref = ("scaler-storms", self.storm.lease_namespace())
        flags = ("--evaluation-interval-seconds", "2", "--leader-election", "--lease-name", self.ref[0],
                 "--lease-namespace", self.ref[1], "--lease-duration-seconds", str(duration),
                 "--lease-renew-deadline-seconds", str(deadline), "--lease-retry-period-seconds", str(retry),
                 *(("--api-qps", f"{self.qps:g}", "--api-burst", "1") if self.qps else ()))
        one, two = self.storm.daemon("one", *flags), self.storm.daemon("two", *flags)
        one.wait_ready(120)
        two.wait_ready(120)
        holder = wait_for("a leader", lambda: self.storm.holder(*self.ref), 60, interval=0.2)
        self.leader, self.standby = (one, two) if holder == "one" else (two, one)

    def swap(self) -> None:
        self.leader, self.standby = self.standby, self.leader


def split_brain(storm: Storm, *, trials: int, objects: int, writers: int = 6, qps: float = 10,
                lease: tuple[int, int, int] = (6, 4, 1), most_paused_before_stop: int | None = None) -> dict:
    """`qps`: the daemons' client-side request rate (--api-qps, burst 1). Its
    wait comes after a 422's re-read and before the next PATCH (and before
    the fence), so the racing writers change the object in between most
    times: the leader's writes stay in the re-read-retry loop. The stop
    comes after a random number of its pauses landed, at most
    `most_paused_before_stop` (default: a quarter of the objects)."""
    pair = Pair(storm, lease, qps)
    rows = []
    for trial in range(1, trials + 1):
        most = most_paused_before_stop or max(objects // 4, 2)
        row = {"trial": trial, "objects": objects, **split_trial(storm, pair, trial, objects, writers, most)}
        print(json.dumps(row), flush=True)
        rows.append(row)
        pair.swap()
    summary = {"scenario": "split-brain", "trials": len(rows), "objects": objects * trials,
               # Without an audit log: a deposed write that landed shows as a duplicate Event or a wrong count.
               "writes_by_deposed_leader": sum(r["deposed_patches_landed"] for r in rows)
               if storm.audit is not None else None,
               "missing": sum(r["missing"] for r in rows), "duplicate": sum(r["duplicate"] for r in rows),
               "wrong": sum(r["wrong"] for r in rows)}
    print(json.dumps(summary), flush=True)
    return {"rows": rows, **summary}


def split_trial(storm: Storm, pair: Pair, trial: int, objects: int, writers: int, most: int) -> dict:
    """The leader's pauses racing other writers; SIGSTOP it; flip the policy;
    the standby takes over and resumes; SIGCONT; count what the old one does."""
    duration, deadline, retry = pair.lease
    leader, standby = pair.leader, pair.standby
    namespace = storm.batch("split", objects)
    name = f"split-{trial}"
    storm.write_policies([idle_window(name, namespace, "split")])
    names = sorted(storm.objects(namespace))
    before = scrape(leader)
    with Racer(storm.cluster, namespace, names, writers) as racer:
        storm.write_policies([down_window(name, namespace, "split", opens=None, closes=None)])
        # Some pauses landed and others are failing their guards: freeze it then.
        target = storm.rng.randint(1, most)
        wait_for("the leader's pauses under the racing writers",
                 lambda: (m := scrape(leader)).get("actions_success", 0) - before.get("actions_success", 0)
                 >= target and m.get("get", 0) - before.get("get", 0) >= 5, 180, interval=0.02)
        # At most a few Event posts after its last pause landed: some may still be queued.
        time.sleep(storm.rng.uniform(0, 0.1))
        leader.process.send_signal(signal.SIGSTOP)
        stopped_at, stopped_wall = time.monotonic(), datetime.now(UTC)
        racer.stop()
    storm.write_policies([idle_window(name, namespace, "split")])
    new_name = standby.args[standby.args.index("--identity") + 1]
    wait_for("the standby's takeover", lambda: storm.holder(*pair.ref) == new_name, duration + retry + 30,
             interval=0.05)
    took_over_wall, took_over = datetime.now(UTC), time.monotonic() - stopped_at
    wait_for("the new leader resumed everything", lambda: not wrong_resumed(storm.objects(namespace)), 120,
             interval=0.3)
    # Frozen at least as long as the lease, whatever the takeover took.
    time.sleep(max(duration + retry - (time.monotonic() - stopped_at), 0))
    stopped_for = time.monotonic() - stopped_at
    leader.process.send_signal(signal.SIGCONT)
    continued_wall = datetime.now(UTC)
    # Its threads wake: writes in their retry back-off (at most 1.5 s), its
    # election loop (retry period); then a full pass of its own.
    wait_for("the old leader to see it lost the Lease",
             lambda: any(r.get("leading") is False
                         for r in log_lines(leader, "leadership changed", continued_wall)), deadline + 30)
    after = scrape(leader).get("reconciles", 0)
    wait_for("a pass of the old leader", lambda: reconciled(leader, after), 60, interval=0.3)
    before_new = scrape(standby).get("reconciles", 0)
    wait_for("one more pass of the new leader", lambda: reconciled(standby, before_new), 60, interval=0.3)

    def resumes_evented() -> bool:
        events = storm.events(namespace)
        return all(events.get(n, Counter())["Resumed"] >= events.get(n, Counter())["ScaledToZero"] for n in names)
    settle("the Events of every resume", resumes_evented, 60)
    row = split_row(storm, namespace, names, old=leader, new=standby, stopped_wall=stopped_wall,
                    took_over_wall=took_over_wall, continued_wall=continued_wall)
    row.update({"racing_writes": racer.written, "takeover_seconds": round(took_over, 2),
                "stopped_seconds": round(stopped_for, 2)})
    return row


def split_row(storm: Storm, namespace: str, names: list[str], *, old: DaemonProcess, new: DaemonProcess,
              stopped_wall: datetime, took_over_wall: datetime, continued_wall: datetime) -> dict:
    """What the deposed leader did after the takeover, and the Events per object."""
    writing_after = [r for r in log_lines(old, "writing", continued_wall) if r.get("namespace") == namespace]
    landed_after = [r for r in log_lines(old, "decision", continued_wall)
                    if r.get("namespace") == namespace and r.get("result") == "changed"]
    dropped_after = [r for r in log_lines(old, "decision", continued_wall)
                     if r.get("namespace") == namespace and str(r.get("note", "")).startswith("not sent")]
    events = storm.events(namespace)
    # A write's answer logged after the wake may be for a PATCH sent before
    # the stop (the answer came while it was frozen): the audit log tells.
    row: dict = {"deposed_writing_lines": len(writing_after), "answers_logged_after_wake": len(landed_after),
                 "deposed_dropped": len(dropped_after),
                 "paused_by_old": len(changed(old, namespace)), "resumed_by_new": len(changed(new, namespace)),
                 "wrong": len(wrong_resumed(storm.objects(namespace)))}
    paused = {n for n in names if events.get(n, Counter())["ScaledToZero"] or events.get(n, Counter())["Resumed"]}
    if storm.audit is not None:
        patches = storm.audit.of(resource="deployments", namespace=namespace, verb="patch")
        old_agent = agent_of(old)
        row["deposed_patches_sent"] = sum(1 for w in patches if w.agent == old_agent
                                          and w.received >= took_over_wall)
        row["deposed_patches_landed"] = sum(1 for w in patches if w.agent == old_agent
                                            and w.received >= took_over_wall and w.code == 200)
        before_stop = [w for w in patches if w.agent == old_agent and w.received < stopped_wall]
        row["guard_refusals_before_stop"] = sum(1 for w in before_stop if w.code == 422)
        last = {w.name: w for w in sorted(before_stop, key=lambda w: w.received)}
        # Its last PATCH of the object before the stop was refused: that write
        # was in its retry loop then, or had given up after its last attempt.
        row["last_patch_refused_at_stop"] = sum(1 for w in last.values() if w.code == 422)
        row["deposed_events_posted"] = sum(
            1 for w in storm.audit.of(resource="events", namespace=namespace, agent=old_agent, verb="create")
            if w.received >= took_over_wall and w.code == 201)
        pauses = Counter(w.name for w in patches if w.code == 200 and w.replicas == 0)
        paused |= set(pauses)
        expected = pauses.__getitem__
    else:
        def expected(n: str) -> int:
            return 1 if n in paused else 0
    stz, res = tally(events, names, "ScaledToZero", expected), tally(events, names, "Resumed", expected)
    row.update({"paused": len(paused), "missing": stz["missing"] + res["missing"],
                "duplicate": stz["duplicate"] + res["duplicate"], "missing_scaled_to_zero": stz["missing"],
                "missing_resumed": res["missing"]})
    return row
