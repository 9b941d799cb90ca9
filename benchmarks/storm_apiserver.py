"""The API server under a storm: restarted with extra flags (recorded in the
cluster's state, so deploy/local/down stops it) and its audit log read.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from common import local_cluster
from storm_harness import parse_time, wait_for

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


def with_audit(cluster, work: Path) -> tuple[Audit, list[str]]:
    """Restart the API server with an audit log; (the log, the command to restore)."""
    original = list(cluster.commands["apiserver"])
    (work / "audit-policy.yaml").write_text(AUDIT_POLICY)
    path = work / "audit.log"
    start_apiserver(cluster, [*original, "--audit-policy-file", str(work / "audit-policy.yaml"),
                              "--audit-log-path", str(path), "--audit-log-format", "json",
                              "--audit-log-maxsize", "0", "--audit-log-mode", "blocking"])
    return Audit(path), original
