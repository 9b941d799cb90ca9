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
import os
import random
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ROOT,
    create_deployments,
    create_namespace,
    deployment,
    local_cluster,
    start_cluster,
)

sys.path.insert(0, str(ROOT))
from scaler.cluster.actions import EVENTS, MANAGED_BY
from scaler.cluster.kinds import DEPLOYMENT
from scaler.cluster.kube import Conflict, Kube, KubeError, Resource
from scaler.decide.annotations import LAST_REPLICAS, OVERRIDE_UNTIL, STARTED_AT
from tests.helpers import DaemonProcess

LEASES = Resource("coordination.k8s.io", "v1", "leases")
#: A start recorded long ago: the Deployments are created paused (no pods, so
#: never Ready), and without it the daemon would record a start on each one
#: first (a PATCH per object that has nothing to do with the storm).
STARTED_LONG_AGO = "2020-01-01T00:00:00Z"
#: The daemons' flags in every scenario: policy edits are seen within a second.
RELOAD = ("--policy-reload-interval-seconds", "1")
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Request
    verbs: [patch]
    resources: [{group: apps, resources: [deployments]}]
  - level: Metadata
    verbs: [create, update, patch]
    resources: [{group: "", resources: [events]}, {group: coordination.k8s.io, resources: [leases]}]
  - level: None
"""


def size_of(name: str) -> int:
    """Each object's own replica count, from its name (d-00042 has 42 % 3 + 1)."""
    return int(name.rsplit("-", 1)[1]) % 3 + 1


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def cron(at: datetime) -> str:
    return f"{at.minute} {at.hour} * * *"


def next_minute(after: datetime) -> datetime:
    return after.replace(second=0, microsecond=0) + timedelta(minutes=1)


def wait_for(what: str, condition: Callable[[], object], timeout_seconds: float, interval: float = 0.1):
    """condition()'s first truthy value; TimeoutError naming `what` after the deadline."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_seconds:.0f}s")
        time.sleep(interval)


def settle(what: str, condition: Callable[[], object], timeout_seconds: float, interval: float = 0.5) -> bool:
    """Like wait_for, for what is then counted: a timeout is a warning, and
    what is missing shows in the counts."""
    try:
        wait_for(what, condition, timeout_seconds, interval)
        return True
    except TimeoutError as error:
        print(f"warning: {error}", file=sys.stderr, flush=True)
        return False


# The API server: restarted with extra flags, and its audit log read.

def _admin_context(cluster) -> ssl.SSLContext:
    pki = cluster.state_dir / "pki"
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return context


def apiserver_ready(cluster) -> bool:
    try:
        with urllib.request.urlopen(f"{cluster.apiserver_url}/readyz", timeout=2,
                                    context=_admin_context(cluster)) as answer:
            return answer.status == 200
    except (OSError, urllib.error.URLError):
        return False


def start_apiserver(cluster, argv: list[str], *, timeout_seconds: float = 120) -> float:
    """(Re)start the API server with `argv` on its own port, recorded in the
    cluster's state (so deploy/local/down stops it); the monotonic time it
    answered /readyz."""
    local_cluster.stop_component(cluster, "apiserver")
    with open(cluster.state_dir / "logs" / "apiserver.log", "ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, cwd=cluster.state_dir)
    cluster.pids["apiserver"], cluster.commands["apiserver"] = process.pid, argv
    cluster.save()
    wait_for("the API server's /readyz", lambda: apiserver_ready(cluster), timeout_seconds, interval=0.05)
    return time.monotonic()


@dataclass
class Write:
    """One request in the audit log."""

    resource: str
    verb: str
    namespace: str
    name: str
    agent: str
    code: int
    received: datetime
    completed: datetime
    replicas: int | None  # what a Deployment PATCH set /spec/replicas to, if it did


class Audit:
    """The API server's audit log (JSON lines), read from where the last read stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.writes: list[Write] = []

    def read(self) -> list[Write]:
        if not self.path.exists():
            return self.writes
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            data = log.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].splitlines():
            record = json.loads(line)
            ref = record.get("objectRef") or {}
            replicas = None
            for op in (record.get("requestObject") or []) if isinstance(record.get("requestObject"), list) else []:
                if op.get("op") in ("add", "replace") and op.get("path") == "/spec/replicas":
                    replicas = op.get("value")
            self.writes.append(Write(
                ref.get("resource", ""), record.get("verb", ""), ref.get("namespace", ""), ref.get("name", ""),
                record.get("userAgent", ""), (record.get("responseStatus") or {}).get("code", 0),
                parse_time(record["requestReceivedTimestamp"]), parse_time(record["stageTimestamp"]), replicas))
        return self.writes

    def of(self, *, resource: str, namespace: str | None = None, agent: str | None = None,
           verb: str | None = None) -> list[Write]:
        return [w for w in self.read() if w.resource == resource and (namespace is None or w.namespace == namespace)
                and (agent is None or w.agent.startswith(agent)) and (verb is None or w.verb == verb)]


# One storm: the cluster, an admin client, the daemons it started.

@dataclass
class Storm:
    cluster: object
    work: Path
    audit: Audit | None = None
    seed: int = 0
    kube: Kube = field(init=False)
    rng: random.Random = field(init=False)
    daemons: list[DaemonProcess] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.kube = Kube.from_environment(kubeconfig=str(self.cluster.kubeconfig), pool_size=32)
        self.kube.api_client.user_agent = "storms/harness"
        self.rng = random.Random(self.seed)
        self.policies = self.work / "policies.yaml"
        # A daemon refuses an empty list: one policy over a namespace that does not exist.
        self.write_policies([idle_window("storm-nothing", "storm-nothing", "nothing")])

    def write_policies(self, policies: list[dict]) -> None:
        """Replace the policy file at once (JSON is YAML): a daemon never reads half a file."""
        staged = self.policies.with_suffix(".tmp")
        staged.write_text(json.dumps({"policies": policies}, indent=1) + "\n")
        os.replace(staged, self.policies)

    def batch(self, label: str, objects: int) -> str:
        """A fresh namespace of `objects` Deployments, created paused (no pods)."""
        namespace = f"storm-{label}-{uuid.uuid4().hex[:5]}"
        create_namespace(self.kube, namespace)
        self.namespaces.append(namespace)
        bodies = []
        for i in range(objects):
            body = deployment(f"d-{i:05d}", replicas=size_of(f"d-{i}"), labels={"storm": label})
            body["metadata"]["annotations"] = {STARTED_AT: STARTED_LONG_AGO}
            bodies.append(body)
        create_deployments(self.kube, namespace, bodies)
        return namespace

    def daemon(self, name: str, *args: str, env: dict | None = None) -> DaemonProcess:
        """`scaler run` with identity `name` (its User-Agent: scaler/<name>)."""
        started = DaemonProcess(self.cluster, self.policies, self.work / f"{name}.log", *RELOAD, *args,
                                "--identity", name, env=env).start()
        self.daemons.append(started)
        return started

    def close(self, *, delete: bool = True, wait: bool = True) -> None:
        """Kill every daemon it started (a stopped one is continued first);
        delete its namespaces (the API server's garbage collector does the
        rest), and with `wait` until they are gone."""
        for daemon in self.daemons:
            if daemon.process and daemon.process.poll() is None:
                daemon.process.send_signal(signal.SIGCONT)
            daemon.kill()
        for namespace in self.namespaces if delete else ():
            try:
                self.kube.request("delete", "DELETE", f"/api/v1/namespaces/{namespace}", resource_text=namespace)
            except KubeError as error:
                print(f"warning: {error}", file=sys.stderr)
        # Until they are gone: a daemon started meanwhile (the next storm's)
        # would find actions recorded on objects whose Events the namespace's
        # deletion already removed, and post them into a namespace that
        # refuses them.
        settle("the storm's namespaces deleted", lambda: not any(
            self._exists(namespace) for namespace in (self.namespaces if delete and wait else ())), 300, interval=1)

    def _exists(self, namespace: str) -> bool:
        try:
            self.kube.get(Resource("", "v1", "namespaces", namespaced=False), None, namespace)
            return True
        except KubeError:
            return False

    def objects(self, namespace: str) -> dict[str, tuple[int, dict]]:
        items, _ = self.kube.list(DEPLOYMENT.resource, namespace)
        return {i["metadata"]["name"]: (i["spec"]["replicas"], i["metadata"].get("annotations") or {})
                for i in items}

    def events(self, namespace: str) -> dict[str, Counter]:
        """scaler's Events in `namespace`: per involved object, how many of each reason."""
        items, _ = self.kube.list(EVENTS, namespace, label_selector="=".join(MANAGED_BY))
        found: dict[str, Counter] = defaultdict(Counter)
        for item in items:
            found[item["involvedObject"]["name"]][item["reason"]] += 1
        return found

    def lease_namespace(self) -> str:
        """A namespace of its own for the daemons' Lease (no workloads in it)."""
        if not hasattr(self, "_lease_namespace"):
            self._lease_namespace = f"storm-lease-{uuid.uuid4().hex[:5]}"
            create_namespace(self.kube, self._lease_namespace)
            self.namespaces.append(self._lease_namespace)
        return self._lease_namespace

    def holder(self, lease: str, namespace: str) -> str | None:
        try:
            return (self.kube.get(LEASES, namespace, lease).get("spec") or {}).get("holderIdentity") or None
        except KubeError:
            return None


def events_cover(storm: Storm, namespace: str, names, wanted: Callable[[Counter], bool]) -> bool:
    """Whether every object's Events (one LIST) are as `wanted`."""
    events = storm.events(namespace)
    return all(wanted(events.get(n, Counter())) for n in names)


def wrong_paused(objects: dict[str, tuple[int, dict]]) -> list[str]:
    return [n for n, (replicas, notes) in objects.items()
            if replicas != 0 or notes.get(LAST_REPLICAS) != str(size_of(n))]


def wrong_resumed(objects: dict[str, tuple[int, dict]]) -> list[str]:
    return [n for n, (replicas, notes) in objects.items() if replicas != size_of(n) or LAST_REPLICAS in notes]


def tally(events: dict[str, Counter], names, reason: str, expected: Callable[[str], int] = lambda n: 1) -> dict:
    """Missing and duplicate Events of `reason` against `expected(name)` per object."""
    missing = sum(max(expected(n) - events.get(n, Counter())[reason], 0) for n in names)
    duplicate = sum(max(events.get(n, Counter())[reason] - expected(n), 0) for n in names)
    return {"missing": missing, "duplicate": duplicate}


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


# 1 and 2: kill -9 storms, with one daemon or two electing a leader.

def down_window(name: str, namespace: str, label: str, *, opens: datetime | None,
                closes: datetime | None) -> dict:
    """A policy with a keep-down window over one batch: [opens, closes) in
    UTC; opens None: always down; opens in the far future: not down now."""
    window = ({"name": "storm", "mode": "down", "when": "daily 00:00-24:00"} if opens is None else
              {"name": "storm", "mode": "down", "start": cron(opens), "end": cron(closes)})
    return {"name": name, "targets": {"namespaces": [namespace], "selector": f"storm={label}"},
            "schedule": {"timezone": "UTC", "windows": [window]}}


def idle_window(name: str, namespace: str, label: str) -> dict:
    """The same policy with its keep-down window 12 hours away."""
    later = datetime.now(UTC) + timedelta(hours=12)
    return down_window(name, namespace, label, opens=later, closes=later + timedelta(minutes=1))


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
    final = final_tally(storm, list(namespaces.values()))
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


def agent_of(daemon: DaemonProcess) -> str:
    return "scaler/" + daemon.args[daemon.args.index("--identity") + 1]


# 3: split brain: the leader frozen (SIGSTOP) across its lease while its writes fail guards.

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


# 4: a keep-down window ending while the API server throttles the daemon.

SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts")
CLUSTER_ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", namespaced=False)


def service_account_kubeconfig(storm: Storm, path: Path) -> Path:
    """A kubeconfig with a TokenRequest token of a ServiceAccount bound to
    cluster-admin: not system:masters, so the API server's in-flight limits
    apply to it (they never do to system:masters)."""
    namespace = storm.lease_namespace()
    for resource, where, body in (
            (SERVICE_ACCOUNTS, namespace, {"apiVersion": "v1", "kind": "ServiceAccount",
                                           "metadata": {"name": "scaler"}}),
            (CLUSTER_ROLE_BINDINGS, None, {
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": f"storms-{namespace}"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "ServiceAccount", "name": "scaler", "namespace": namespace}]})):
        try:
            storm.kube.create(resource, where, body)
        except Conflict:
            pass
    token = storm.kube.request(
        "create", "POST", SERVICE_ACCOUNTS.path(namespace, "scaler", "token"), resource_text="token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
              "spec": {"expirationSeconds": 7200}})["status"]["token"]
    cluster = storm.cluster
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "local", "cluster": {
            "server": cluster.apiserver_url, "certificate-authority": str(cluster.state_dir / "pki" / "ca.crt")}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": "sa"}}]}))
    return path


def throttled(storm: Storm, *, objects: int, window_minutes: int = 1, concurrency: int = 16,
              inflight: int = 1) -> dict:
    """The API server restarted with --max-mutating-requests-inflight
    `inflight`; a keep-down window of `window_minutes` opens over `objects`
    Deployments and ends while the throttled daemon is still pausing them.
    Counts pauses that land after the window's end (audit log: received
    after it; daemon log: a landed pause logged after it)."""
    cluster = storm.cluster
    original = list(cluster.commands["apiserver"])
    kubeconfig = service_account_kubeconfig(storm, storm.work / "sa.kubeconfig")
    namespace = storm.batch("throttled", objects)
    opens = next_minute(datetime.now(UTC) + timedelta(seconds=40))
    closes = opens + timedelta(minutes=window_minutes)
    storm.write_policies([down_window("throttled", namespace, "throttled", opens=opens, closes=closes)])
    start_apiserver(cluster, [*original, "--max-mutating-requests-inflight", str(inflight)])
    try:
        daemon = storm.daemon("throttled", "--concurrency", str(concurrency), env={"KUBECONFIG": str(kubeconfig)})
        daemon.wait_ready(120)
        wait_for("the window's end", lambda: datetime.now(UTC) >= closes, window_minutes * 60 + 120, interval=0.2)
        paused_at_end = sum(1 for replicas, _ in storm.objects(namespace).values() if replicas == 0)
        wait_for("every object resumed", lambda: not wrong_resumed(storm.objects(namespace)), 600, interval=1)
        settled = (datetime.now(UTC) - closes).total_seconds()
        names = sorted(storm.objects(namespace))
        settle("the Events", lambda: events_cover(storm, namespace, names, lambda e: e["Resumed"] >= e["ScaledToZero"]),
               300, 1)
        before = scrape(daemon).get("reconciles", 0)
        wait_for("one more reconcile", lambda: reconciled(daemon, before), 120, interval=0.5)
    finally:
        start_apiserver(cluster, original)
    pauses_logged = [r for r in daemon.logs("decision") if r.get("namespace") == namespace
                     and r.get("action") == "pause" and r.get("result") == "changed"]
    dropped = [r for r in daemon.logs("decision") if r.get("namespace") == namespace and r.get("action") == "pause"
               and "no longer wanted" in str(r.get("note", ""))]
    events = storm.events(namespace)
    row = {"scenario": "throttled", "objects": objects, "inflight": inflight, "window_seconds": window_minutes * 60,
           "paused_before_end": paused_at_end, "pauses_logged": len(pauses_logged),
           "pauses_logged_after_end": sum(1 for r in pauses_logged if parse_time(r["timestamp"]) > closes),
           "pauses_dropped_as_no_longer_wanted": len(dropped),
           "end_to_all_resumed_seconds": round(settled, 1)}
    if storm.audit is not None:
        patches = storm.audit.of(resource="deployments", namespace=namespace, agent="scaler/throttled", verb="patch")
        pauses = [w for w in patches if w.replicas == 0]
        row.update({
            "patches": len(patches), "throttled_429": sum(1 for w in patches if w.code == 429),
            "pauses_landed": sum(1 for w in pauses if w.code == 200),
            "late_pauses_landed": sum(1 for w in pauses if w.code == 200 and w.received >= closes),
            "pauses_in_flight_at_end": sum(1 for w in pauses if w.code == 200 and w.received < closes < w.completed),
            "last_pause_received_seconds_after_end": round(max(
                ((w.received - closes).total_seconds() for w in pauses if w.code == 200), default=-1e9), 3)})
        expected = Counter(w.name for w in pauses if w.code == 200).__getitem__
    else:
        paused = {r["workload"] for r in pauses_logged}

        def expected(n: str) -> int:
            return 1 if n in paused else 0
    stz, res = tally(events, names, "ScaledToZero", expected), tally(events, names, "Resumed", expected)
    row.update({"missing": stz["missing"] + res["missing"], "duplicate": stz["duplicate"] + res["duplicate"],
                "wrong": len(wrong_resumed(storm.objects(namespace)))})
    print(json.dumps(row), flush=True)
    return row


# 5: the daemon started while the API server is down.

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


# 6: an edge with the default interval, a full reconcile running into it.

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


# The command line.

def with_audit(cluster, work: Path) -> tuple[Audit, list[str]]:
    """Restart the API server with an audit log; (the log, the command to restore)."""
    original = list(cluster.commands["apiserver"])
    (work / "audit-policy.yaml").write_text(AUDIT_POLICY)
    path = work / "audit.log"
    start_apiserver(cluster, [*original, "--audit-policy-file", str(work / "audit-policy.yaml"),
                              "--audit-log-path", str(path), "--audit-log-format", "json",
                              "--audit-log-maxsize", "0", "--audit-log-mode", "blocking"])
    return Audit(path), original


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
