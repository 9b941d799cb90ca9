"""A hole in an idle window, end to end in process: the fake API server's
workloads, a loopback Prometheus answering the idle query and the range
query that names the hole, and the decision's reason as the evaluator (the
daemon's and `scaler plan`'s) and `scaler plan` show it."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scaler.cli.main import main
from scaler.cluster.pausing import Pauser
from scaler.cluster.views import ListingView
from scaler.decide.decisions import Action, Code
from scaler.decide.loading import load_policies
from scaler.run.acting import Actor
from scaler.run.evaluating import Evaluator
from scaler.run.observability import configure_logging
from scaler.signals.prometheus import Prometheus
from scaler.signals.queries import idle_query, seen_query

#: The evaluated instant: 90 s windows at 1 s steps read 10:00:00 to 10:01:30.
NOW = datetime(2026, 5, 4, 10, 1, 30, 400_000, tzinfo=UTC)
T0 = int(datetime(2026, 5, 4, 10, 0, tzinfo=UTC).timestamp())
QUERY = "vllm:num_requests_running"
POLICIES = f"""
policies:
  - name: idle
    targets: {{namespaces: [llm], kinds: [Deployment]}}
    idle: {{query: '{QUERY}', threshold: 0.5, duration: 90s}}
    startup_grace: 0s
    scale_down_delay: 0s
"""
HOLD = "metrics unavailable: idle signal unknown ({}): holding at 2 (never scale down on missing data)"


def series(name: str, **fields) -> dict:
    return {"metric": {"namespace": "llm", "workload": name}, **fields}


def seen(name: str, seconds) -> dict:
    return series(name, values=[[T0 + second, "0"] for second in seconds])


class _Prometheus(BaseHTTPRequestHandler):
    """Instant queries get `instant`; range queries get `matrix`, or a 500
    (`matrix` None), or wait for `hang`. Asked by GET or POST; every request kept."""

    instant: list
    matrix: list | None
    hang: threading.Event | None
    asked: list

    def _answer(self, params: dict) -> None:
        path = urllib.parse.urlsplit(self.path).path
        self.asked.append((path, {key: values[0] for key, values in params.items()}))
        if path.endswith("/query_range"):
            if self.hang is not None:
                self.hang.wait(10)
            if self.matrix is None:
                self.send_response(500)
                self.end_headers()
                self.wfile.write(b'{"status":"error","error":"boom"}')
                return
            body = {"resultType": "matrix", "result": self.matrix}
        else:
            body = {"resultType": "vector", "result": self.instant}
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"status": "success", "data": body}).encode())

    def do_GET(self):
        self._answer(urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query))

    def do_POST(self):
        self._answer(urllib.parse.parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()))

    def log_message(self, *args):
        pass


@pytest.fixture
def prometheus():
    servers = []

    def start(*, instant: list, matrix: list | None, hang: threading.Event | None = None):
        handler = type("Handler", (_Prometheus,), {"instant": instant, "matrix": matrix, "hang": hang, "asked": []})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}", handler.asked
    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def cluster(fake):
    """chat and code running (2 Ready), gone running without any series,
    asleep at zero."""
    fake.create("namespaces", {"metadata": {"name": "llm"}})
    for name, replicas in (("chat", 2), ("code", 2), ("gone", 2), ("asleep", 0)):
        fake.create("deployments.apps", {"metadata": {"name": name}, "spec": {"replicas": replicas}}, namespace="llm")
        fake.set_status("deployments.apps", "llm", name, {"replicas": replicas, "readyReplicas": replicas})
    return fake


#: code seen throughout (idle); chat with a hole at 10:00:30-10:01:00; gone and asleep without a series.
INSTANT = [series("code", value=[NOW.timestamp(), "0"])]
MATRIX = [seen("chat", [*range(0, 30), *range(60, 91)]), seen("code", range(0, 91))]


def _evaluate(cluster, url: str, tmp_path, *, deadline_seconds: float = 5, signals_at=None,
              text: str = POLICIES) -> dict:
    (tmp_path / "policies.yaml").write_text(text)
    evaluator = Evaluator(prometheus=Prometheus(url, timeout_seconds=5), view=ListingView(cluster.client()),
                          excluded_namespaces=(), signal_deadline_seconds=deadline_seconds)
    evaluator.signals_at = signals_at
    evaluations = evaluator.evaluate(load_policies([tmp_path / "policies.yaml"]), now=NOW)
    return {e.workload.name: e.decision for e in evaluations}


def test_the_hole_is_named_in_the_reason_and_one_range_query_finds_it_for_all(cluster, prometheus, tmp_path):
    url, asked = prometheus(instant=INSTANT, matrix=MATRIX)
    decisions = _evaluate(cluster, url, tmp_path)
    chat = decisions["chat"]
    assert (chat.action, chat.replicas, chat.reason_code) == (Action.HOLD, 2, Code.METRICS_UNKNOWN)
    assert chat.reason == HOLD.format("no data from 2026-05-04 10:00:30 to 10:01:00 UTC")
    assert decisions["gone"].reason == HOLD.format("no series")
    assert (decisions["code"].action, decisions["code"].reason_code) == (Action.PAUSE, Code.IDLE_TIMEOUT)
    assert decisions["asleep"].reason_code is Code.AT_ZERO
    ranges = [params for path, params in asked if path.endswith("/query_range")]
    assert ranges == [{"query": seen_query(QUERY, namespace_label="namespace", workload_label="workload").promql,
                       "start": f"{T0:.3f}", "end": f"{T0 + 90:.3f}", "step": "1"}]


def test_no_range_query_while_every_running_workload_is_seen(cluster, prometheus, tmp_path):
    instant = [series(name, value=[NOW.timestamp(), "0"]) for name in ("chat", "code", "gone")]
    url, asked = prometheus(instant=instant, matrix=MATRIX)
    decisions = _evaluate(cluster, url, tmp_path)
    assert {decisions[name].reason_code for name in ("chat", "code", "gone")} == {Code.IDLE_TIMEOUT}
    assert [path for path, _ in asked] == ["/api/v1/query"]


def test_no_range_query_for_workloads_a_window_holds(cluster, prometheus, tmp_path):
    """Only a hold on the unknown idle signal asks where the hole was: inside
    a keep-up window the idle signal decides nothing, and costs nothing."""
    url, asked = prometheus(instant=INSTANT, matrix=MATRIX)
    office = POLICIES + """    schedule:
      timezone: UTC
      windows: [{name: office, mode: up, when: "Mon-Fri 08:00-20:00"}]
"""
    decisions = _evaluate(cluster, url, tmp_path, text=office)  # NOW is a Monday, 10:01 UTC
    assert {decisions[name].reason_code for name in ("chat", "code", "gone")} == {Code.KEEP_UP_WINDOW}
    assert [path for path, _ in asked] == ["/api/v1/query"]


def test_a_failing_range_query_leaves_the_reason_plain(cluster, prometheus, tmp_path):
    url, _ = prometheus(instant=INSTANT, matrix=None)
    decisions = _evaluate(cluster, url, tmp_path)
    assert decisions["chat"].reason == "metrics unavailable: idle signal unknown: holding at 2 " \
                                       "(never scale down on missing data)"
    assert decisions["code"].action is Action.PAUSE


def test_a_hung_range_query_is_bounded_by_the_evaluations_deadline(cluster, prometheus, tmp_path):
    hang = threading.Event()
    url, _ = prometheus(instant=INSTANT, matrix=MATRIX, hang=hang)
    try:
        started = time.monotonic()
        decisions = _evaluate(cluster, url, tmp_path, deadline_seconds=1)
        took = time.monotonic() - started
    finally:
        hang.set()
    assert took < 2.5, took  # the range query's own 5 s timeout is not waited for
    assert decisions["chat"].reason == "metrics unavailable: idle signal unknown: holding at 2 " \
                                       "(never scale down on missing data)"
    assert decisions["code"].action is Action.PAUSE


def test_signals_read_at_a_past_instant_look_for_the_hole_then(cluster, prometheus, tmp_path):
    """`plan --at`: the range query ends at the instant the signals are read at."""
    then = datetime(2026, 5, 4, 9, 0, 10, tzinfo=UTC)
    start = T0 - 3600 + 10 - 90
    chat = series("chat", values=[[start + second, "0"] for second in range(50, 71)])
    url, asked = prometheus(instant=INSTANT, matrix=[chat])
    decisions = _evaluate(cluster, url, tmp_path, signals_at=then)
    (_, instant), (_, ranged) = asked
    assert float(instant["time"]) == then.timestamp()
    assert (ranged["start"], ranged["end"], ranged["step"]) == (f"{start:.3f}", f"{start + 90:.3f}", "1")
    assert decisions["chat"].reason == HOLD.format(
        "no data from 2026-05-04 08:58:40 to 08:59:30 UTC, no data since 2026-05-04 08:59:51 UTC")


def test_a_future_instant_looks_for_the_hole_as_of_the_passs_one_clock_reading(cluster, prometheus, tmp_path):
    """`plan --at` a future instant: the windows as of then, the signals as of
    the clock reading the pass took (`read_at`), never a reading of its own."""
    url, asked = prometheus(instant=INSTANT, matrix=MATRIX)
    (tmp_path / "policies.yaml").write_text(POLICIES)
    evaluator = Evaluator(prometheus=Prometheus(url, timeout_seconds=5), view=ListingView(cluster.client()),
                          excluded_namespaces=())
    evaluations = evaluator.evaluate(load_policies([tmp_path / "policies.yaml"]), now=NOW + timedelta(days=400),
                                     read_at=NOW)
    (_, instant), (_, ranged) = asked
    assert "time" not in instant and float(ranged["end"]) == T0 + 90  # Prometheus's now; the pass's reading
    [chat] = [e.decision for e in evaluations if e.workload.name == "chat"]
    assert chat.reason == HOLD.format("no data from 2026-05-04 10:00:30 to 10:01:00 UTC")


def test_plan_at_shows_the_hole(cluster, prometheus, tmp_path, capsys):
    url, asked = prometheus(instant=INSTANT, matrix=MATRIX)
    (tmp_path / "policies.yaml").write_text(POLICIES)
    code = main(["plan", "--kubeconfig", str(cluster.kubeconfig(tmp_path / "kubeconfig")), "--policies",
                 str(tmp_path / "policies.yaml"), "--prometheus-url", url, "-o", "json", "--all",
                 "--at", "2026-05-04T10:01:30Z"])
    assert code == 3  # code's pause is pending
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["evaluations"]}
    assert rows["chat"]["reason"] == HOLD.format("no data from 2026-05-04 10:00:30 to 10:01:00 UTC")
    assert rows["chat"]["reasonCode"] == "metrics-unknown" and rows["chat"]["action"] == "hold"
    assert rows["gone"]["reason"] == HOLD.format("no series")
    instant, ranged = (params for _, params in asked)
    assert float(instant["time"]) == float(ranged["end"]) == T0 + 90


def test_plan_names_nan_and_inf_as_the_holes_they_are(cluster, prometheus, tmp_path, capsys):
    """Prometheus leaves out a workload whose signal is -Inf now, or was +Inf
    at two steps (the idle query counts only finite values as seen); the
    reason says so, as it says NaN, rather than "no data"."""
    chat = series("chat", values=[[T0 + s, "0" if s < 80 else "-Inf"] for s in range(0, 91)])
    gone = series("gone", values=[[T0 + s, "+Inf" if s in (10, 60) else "0"] for s in range(0, 91)])
    url, _ = prometheus(instant=INSTANT, matrix=[chat, gone, seen("code", range(0, 91))])
    (tmp_path / "policies.yaml").write_text(POLICIES)
    main(["plan", "--kubeconfig", str(cluster.kubeconfig(tmp_path / "kubeconfig")), "--policies",
          str(tmp_path / "policies.yaml"), "--prometheus-url", url, "-o", "json", "--all",
          "--at", "2026-05-04T10:01:30Z"])
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["evaluations"]}
    assert (rows["chat"]["action"], rows["chat"]["reasonCode"]) == ("hold", "metrics-unknown")
    assert rows["chat"]["reason"] == HOLD.format("-Inf since 2026-05-04 10:01:20 UTC")
    assert rows["gone"]["reason"] == HOLD.format(
        "+Inf from 2026-05-04 10:00:10 to 10:00:11 UTC, +Inf from 2026-05-04 10:01:00 to 10:01:01 UTC")


def test_the_daemons_decision_line_names_the_hole(cluster, prometheus, tmp_path, capsys):
    """The daemon's evaluate-and-act logs the hold with the same sentence."""
    url, _ = prometheus(instant=INSTANT, matrix=MATRIX)
    (tmp_path / "policies.yaml").write_text(POLICIES)
    evaluator = Evaluator(prometheus=Prometheus(url, timeout_seconds=5), view=ListingView(cluster.client()),
                          excluded_namespaces=())
    actor = Actor(evaluator=evaluator, pauser=Pauser(cluster.client()), dry_run=True)
    root = logging.getLogger()
    handlers, level = root.handlers, root.level
    configure_logging(log_format="json", level="info")
    try:
        actor.act(evaluator.evaluate(load_policies([tmp_path / "policies.yaml"]), now=NOW), now=NOW)
    finally:
        root.handlers, root.level = handlers, level
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    chat = next(line for line in lines if line.get("event") == "decision" and line.get("workload") == "chat")
    assert chat["reason"] == HOLD.format("no data from 2026-05-04 10:00:30 to 10:01:00 UTC")
    assert (chat["action"], chat["reason_code"], chat["replicas_after"]) == ("hold", "metrics-unknown", 2)


def test_a_backtest_asks_for_the_guarded_query_and_holds_while_a_window_covers_the_hole(cluster, prometheus,
                                                                                        tmp_path, capsys):
    """backtest replays range queries of the very PromQL the daemon sends, so
    the coverage guard comes with it: Prometheus leaves the steps whose
    window covers a hole without a point (tests/tools/test_idle_query.py
    shows its engine doing so), and the replay holds there, unknown.

    The answer here: busy (5) until 10:00:50, a hole in the signal from
    10:01:00 to 10:01:40, then 0; with 90 s windows the steps 10:01:00 to
    10:03:00 cover the hole and have no point; 10:03:10 is the first window
    seen after it, all 0."""
    steps = range(0, 301, 10)
    answer = [series("chat", values=[[T0 + t, "5" if t <= 50 else "0"] for t in steps if not 60 <= t <= 180])]
    url, asked = prometheus(instant=[], matrix=answer)
    (tmp_path / "policies.yaml").write_text(POLICIES)
    code = main(["backtest", "--kubeconfig", str(cluster.kubeconfig(tmp_path / "kubeconfig")), "--policies",
                 str(tmp_path / "policies.yaml"), "--prometheus-url", url, "-o", "json",
                 "--from", "2026-05-04T10:00:00Z", "--to", "2026-05-04T10:05:00Z", "--step", "10s"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0, document
    sent = next(form for path, form in asked if path.endswith("/query_range"))  # the start sizes come first
    assert sent["query"] == idle_query(QUERY, duration_seconds=90, namespace_label="namespace",
                                       workload_label="workload").promql
    assert "count_over_time(vector(1)[90s:1s])" in sent["query"]
    chat = next(row for row in document["workloads"] if row["name"] == "chat")
    assert chat["unknownSteps"] == 13
    assert [(a["at"], a["action"], a["reasonCode"]) for a in chat["actions"]] == [
        ("2026-05-04T10:03:10Z", "pause", "idle-timeout")]


def test_a_window_whose_maximum_is_plus_inf_names_the_step(cluster, prometheus, tmp_path):
    """+Inf at one step of chat's window: one step is tolerated, so the idle
    query answers chat, with the window's maximum, +Inf, which is unknown.
    The reason says where the +Inf was, as it does for a hole (it said only
    "idle signal unknown", and no range query looked)."""
    instant = [*INSTANT, series("chat", value=[NOW.timestamp(), "+Inf"])]
    chat = series("chat", values=[[T0 + s, "+Inf" if s == 40 else "0"] for s in range(0, 91)])
    url, asked = prometheus(instant=instant, matrix=[chat, seen("code", range(0, 91))])
    decisions = _evaluate(cluster, url, tmp_path)
    assert (decisions["chat"].action, decisions["chat"].reason_code) == (Action.HOLD, Code.METRICS_UNKNOWN)
    assert decisions["chat"].reason == HOLD.format("+Inf from 2026-05-04 10:00:40 to 10:00:41 UTC")
    assert decisions["gone"].reason == HOLD.format("no series")
    assert sum(path.endswith("/query_range") for path, _ in asked) == 1
