"""A hole in the idle series, on the real Prometheus (1 s scrapes, 15 s
lookback delta) with the daemon, `scaler plan` and `scaler backtest`: the
probe of issue 20, where a 60 s hole in a 90 s idle window read as idle
33 s after it.

The series is deleted from the Pushgateway (the next scrape writes a stale
marker, as a failed scrape does) for longer than the one step the idle
window may miss, then pushed again: the daemon holds, names the hole, and
pauses only once a whole idle window was seen after it; the backtest,
replaying the daemon's own query, does the same."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from datetime import UTC, datetime, timedelta

from kubernetes import client

from scaler.decide.times import rfc3339
from tests.cluster.test_daemon import _push, _replicas, _write
from tests.helpers import FAST, eventually, gpu_deployment, run_scaler

IDLE_SECONDS = 30  # 1 s subquery steps: one unseen second is tolerated, two are not
GAP_SECONDS = 15
HOLE = r"idle signal unknown \(no data (?:since|after) (\S+ \S+) UTC\)"
CLOSED = r"idle signal unknown \(no data from (\S+ \S+) to (\S+) UTC\)"


def _policy(namespace: str) -> str:
    return f"""
        policies:
          - name: chat-idle
            targets:
              namespaces: [{namespace}]
              selector: app=chat
            idle:
              query: 'vllm:num_requests_running{{namespace="{namespace}"}}'
              threshold: 0.5
              duration: {IDLE_SECONDS}s
            min_replicas: 1
            startup_grace: 0s
            scale_down_delay: 0s
        """


def _logged_at(line: dict) -> float:
    return datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()


def _utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _plan_names_the_closed_hole(cluster, policies, namespace: str) -> tuple[float, float] | None:
    done = run_scaler("plan", "--policies", str(policies), "-o", "json", "--all", kubeconfig=cluster.kubeconfig,
                      env={"SCALER_PROMETHEUS_URL": cluster.prometheus_url})
    row = next(r for r in json.loads(done.stdout)["evaluations"] if r["namespace"] == namespace)
    found = re.search(CLOSED, row["reason"])
    if found is None:
        return None
    assert row["reasonCode"] == "metrics-unknown" and row["action"] == "hold", row
    day = found[1].split()[0]
    return _utc(found[1]), _utc(f"{day} {found[2]}")


def test_a_hole_in_the_idle_series_is_unknown_named_and_replayed(kube, namespace, cluster, tmp_path, daemons):
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, gpu_deployment("chat", replicas=2, gpus=1))
    _push(cluster, namespace, "vllm:num_requests_running", 5)
    policies = _write(tmp_path / "policies.yaml", _policy(namespace))
    daemon = daemons(policies, *FAST)
    daemon.wait_ready()
    # A whole window seen, busy (before that the young series is unknown).
    daemon.wait_log("decision", lambda line: line.get("reason_code") == "busy", timeout_seconds=IDLE_SECONDS + 40)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)

    _push(cluster, namespace, "vllm:num_requests_running", 0)
    time.sleep(2)  # a few idle samples before the hole
    deleted = time.time()
    group = (f"{cluster.pushgateway_url}/metrics/job/test/namespace/{namespace}"
             "/workload/chat/metric/vllm_num_requests_running")
    urllib.request.urlopen(urllib.request.Request(group, method="DELETE"), timeout=5)
    held = daemon.wait_log("decision", lambda line: line.get("reason_code") == "metrics-unknown"
                           and _logged_at(line) > deleted, timeout_seconds=10)[0]
    assert held["action"] == "hold" and held["replicas_after"] == 2
    assert held["reason"].startswith("metrics unavailable: idle signal unknown (no data "), held["reason"]
    assert held["reason"].endswith("): holding at 2 (never scale down on missing data)")
    since = re.search(HOLE, held["reason"])
    assert since is not None and deleted - 2 <= _utc(since[1]) <= deleted + 3, (held["reason"], deleted)

    time.sleep(max(0.0, deleted + GAP_SECONDS - time.time()))
    back = time.time()
    _push(cluster, namespace, "vllm:num_requests_running", 0)
    # Data again, but the window still holds the hole: `plan` names it, from and to.
    hole = eventually(lambda: _plan_names_the_closed_hole(cluster, policies, namespace), timeout_seconds=20)
    assert deleted - 2 <= hole[0] <= deleted + 3 and back - 1 <= hole[1] <= back + 3, (hole, deleted, back)
    assert _replicas(kube, namespace, "chat") == 2

    eventually(lambda: _replicas(kube, namespace, "chat") == 0, timeout_seconds=IDLE_SECONDS + 30)
    paused = daemon.wait_log("decision", lambda line: line.get("reason_code") == "idle-timeout")[0]
    after_hole = _logged_at(paused) - back
    print(f"\nhole {back - deleted:.1f}s; paused {after_hole:.1f}s after it (idle window {IDLE_SECONDS}s)")
    # A whole window after the hole, bar the one step tolerated and the second the hole's end is cut to.
    # Before the guard it paused once the busy samples left the window, ~13 s after the hole.
    assert IDLE_SECONDS - 3 <= after_hole <= IDLE_SECONDS + 10, after_hole
    assert paused["reason"].startswith(f"idle: signal max 0 over the last {IDLE_SECONDS}s"), paused["reason"]

    # The replay steps on whole seconds, up to a second after the daemon's instants: end well after the pause.
    time.sleep(3)
    end = datetime.now(UTC).replace(microsecond=0)
    done = run_scaler("backtest", "--policies", str(policies), "--from", rfc3339(start), "--to", rfc3339(end),
                      "--step", "1s", "-n", namespace, "-o", "json", kubeconfig=cluster.kubeconfig,
                      env={"SCALER_PROMETHEUS_URL": cluster.prometheus_url})
    assert done.returncode == 0, done.stdout + done.stderr
    row = json.loads(done.stdout)["workloads"][0]
    print(f"backtest from {start.timestamp() - back:.1f}s to {end.timestamp() - back:.1f}s after the hole")
    actions = [(_utc(a["at"].rstrip("Z")), a["action"], a["reasonCode"]) for a in row["actions"]]
    print(f"backtest: {[(round(at - back, 1), what) for at, what, _ in actions]}, unknown {row['unknownSteps']}")
    assert [what for _, what, _ in actions] == ["pause"] and actions[0][2] == "idle-timeout"
    assert IDLE_SECONDS - 3 <= actions[0][0] - back and abs(actions[0][0] - _logged_at(paused)) <= 3, actions
    # The steps whose window covers the hole: from the hole's start to a window after its end.
    assert GAP_SECONDS + IDLE_SECONDS - 5 <= row["unknownSteps"] <= GAP_SECONDS + IDLE_SECONDS + 5, row
    assert daemon.stop() == 0
