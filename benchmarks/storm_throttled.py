"""Storm 4: a keep-down window ending while the API server throttles the
daemon (`python benchmarks/storms.py throttled`).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from storm_apiserver import start_apiserver
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
    wrong_resumed,
)

from scaler.cluster.kube import Conflict, Resource

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
