"""What every fault storm stands on: waiting with a deadline, the policies
it writes, and a Storm (the cluster, an admin client, the daemons it
started, its namespaces) with the counts of what is on the objects.

benchmarks/storms.py runs the scenarios; this module is not run on its own.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from common import ROOT, create_deployments, create_namespace, deployment

sys.path.insert(0, str(ROOT))  # tests.helpers: the daemon as a process
from scaler.cluster.actions import EVENTS, MANAGED_BY
from scaler.cluster.kinds import DEPLOYMENT
from scaler.cluster.kube import Kube, KubeError, Resource
from scaler.decide.annotations import LAST_REPLICAS, STARTED_AT
from tests.helpers import DaemonProcess

if TYPE_CHECKING:
    from storm_apiserver import Audit  # it imports wait_for from here

LEASES = Resource("coordination.k8s.io", "v1", "leases")
#: A start recorded long ago: the Deployments are created paused (no pods, so
#: never Ready), and without it the daemon would record a start on each one
#: first (a PATCH per object that has nothing to do with the storm).
STARTED_LONG_AGO = "2020-01-01T00:00:00Z"
#: The daemons' flags in every scenario: policy edits are seen within a second.
RELOAD = ("--policy-reload-interval-seconds", "1")


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


# The policies a storm writes.

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
