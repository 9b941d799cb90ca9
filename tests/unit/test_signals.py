"""Prometheus answers, odd ones first: the parser on canned JSON, and the client
against a real HTTP server on loopback that answers 500, hangs, or sends
garbage. Unknown must never come back as a number."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scaler.signals.prometheus import Prometheus
from scaler.signals.queries import idle_query, queue_query, resolution_seconds, seen_query
from scaler.signals.results import parse_vector

QUERY = queue_query("q", namespace_label="namespace", workload_label="workload")


def series(value, namespace="llm", workload="chat", **labels):
    metric = {"namespace": namespace, "workload": workload, **labels}
    return {"metric": {k: v for k, v in metric.items() if v is not None}, "value": [1700000000.0, value]}


@pytest.mark.parametrize(("result", "expected", "unusable", "unmatched"), [
    pytest.param([], {}, 0, 0, id="empty-vector"),
    pytest.param([series("3")], {("llm", "chat"): 3.0}, 0, 0, id="one-series"),
    pytest.param([series("0")], {("llm", "chat"): 0.0}, 0, 0, id="zero-is-a-value"),
    pytest.param([series("NaN")], {("llm", "chat"): None}, 1, 0, id="nan"),
    pytest.param([series("+Inf")], {("llm", "chat"): None}, 1, 0, id="plus-inf"),
    pytest.param([series("-Inf")], {("llm", "chat"): None}, 1, 0, id="minus-inf"),
    pytest.param([series("abc")], {("llm", "chat"): None}, 1, 0, id="not-a-number"),
    pytest.param([{"metric": {"namespace": "llm", "workload": "chat"}}], {("llm", "chat"): None}, 1, 0,
                 id="no-value"),
    pytest.param([series("1"), series("4")], {("llm", "chat"): 4.0}, 0, 0, id="duplicate-series-larger-wins"),
    pytest.param([series("4"), series("1")], {("llm", "chat"): 4.0}, 0, 0, id="duplicate-series-any-order"),
    pytest.param([series("4"), series("NaN")], {("llm", "chat"): None}, 1, 0, id="duplicate-with-nan-unknown"),
    pytest.param([series("NaN"), series("4")], {("llm", "chat"): None}, 1, 0, id="nan-then-value-unknown"),
    pytest.param([series("2", namespace=None)], {}, 0, 1, id="missing-namespace-label"),
    pytest.param([series("2", workload=None, pod="chat-1")], {}, 0, 1, id="wrong-labels"),
    pytest.param([series("2", workload="")], {}, 0, 1, id="empty-label"),
    pytest.param([series("2"), series("5", workload="code")], {("llm", "chat"): 2.0, ("llm", "code"): 5.0}, 0, 0,
                 id="two-workloads"),
    pytest.param("not a list", {}, 0, 0, id="result-not-a-list"),
    pytest.param([None, 7], {}, 0, 2, id="items-not-objects"),
])
def test_parse_vector(result, expected, unusable, unmatched):
    vector = parse_vector(result, QUERY)
    assert vector.values == expected
    assert (vector.unusable, vector.unmatched) == (unusable, unmatched)
    for key, value in expected.items():
        assert vector.get(key) == value
    assert vector.get(("llm", "absent")) is None  # missing is unknown, not 0


def test_labels_are_the_policys():
    query = queue_query("q", namespace_label="exported_namespace", workload_label="model")
    vector = parse_vector([{"metric": {"exported_namespace": "a", "model": "m"}, "value": [0, "1.5"]},
                           series("9")], query)
    assert vector.values == {("a", "m"): 1.5}
    assert vector.unmatched == 1


@pytest.mark.parametrize("label", ["my-label", "1abc", "", "a b", "ns{x}"])
def test_invalid_label_names_are_refused(label):
    with pytest.raises(ValueError, match="not a valid Prometheus label name"):
        queue_query("q", namespace_label=label, workload_label="workload")
    with pytest.raises(ValueError, match="not a valid Prometheus label name"):
        idle_query("q", duration_seconds=60, namespace_label="namespace", workload_label=label)
    with pytest.raises(ValueError, match="not a valid Prometheus label name"):
        seen_query("q", namespace_label=label, workload_label="workload")


@pytest.mark.parametrize(("duration", "step"), [(1, 1), (59, 1), (600, 10), (1800, 30), (86400, 60)])
def test_idle_query_resolution(duration, step):
    assert resolution_seconds(duration) == step
    promql = idle_query("up", duration_seconds=duration, namespace_label="namespace",
                        workload_label="workload").promql
    assert f"[{duration}s:{step}s]" in promql
    assert f"offset {duration}s" in promql  # the window's start must have been seen
    # ... and every step of the window but one (tests/tools/test_idle_query.py runs it on Prometheus's engine)
    assert f">= -Inf)[{duration}s:{step}s]) >= scalar(count_over_time(vector(1)[{duration}s:{step}s])) - 1" in promql


def test_the_gap_finder_reads_what_the_coverage_guard_counts():
    """The range query that names a hole asks for the very expression the
    idle query counts at each step, so the two agree on where it was."""
    for expr in ("up", 'sum by (namespace, workload) (rate(x{a="b"}[5m]))'):
        seen = seen_query(expr, namespace_label="ns", workload_label="wl").promql
        idle = idle_query(expr, duration_seconds=1800, namespace_label="ns", workload_label="wl").promql
        assert f"count_over_time(({seen} >= -Inf)[1800s:30s])" in idle


class _Canned(BaseHTTPRequestHandler):
    """Answers every query the way the test says; `hang` holds the answer."""

    status = 200
    body = b""
    hang: threading.Event | None = None

    def do_GET(self):
        if self.hang is not None:
            self.hang.wait(10)
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    started = []

    def start(*, status=200, body=b"", hang=None):
        handler = type("Handler", (_Canned,), {"status": status, "body": body, "hang": hang})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        started.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}"
    yield start
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


def answer(result) -> bytes:
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


def test_a_good_answer(server):
    vector = Prometheus(server(body=answer([series("2.5")]))).vector(QUERY)
    assert vector.error is None
    assert vector.get(("llm", "chat")) == 2.5


@pytest.mark.parametrize(("status", "body", "says"), [
    pytest.param(500, b'{"status":"error","error":"boom"}', "answered an error", id="http-500"),
    pytest.param(400, b'{"status":"error","errorType":"bad_data","error":"parse error"}', "answered an error",
                 id="http-400-bad-query"),
    pytest.param(503, b"", "", id="http-503-retried-then-error"),
    pytest.param(200, b"<html>not json</html>", "unreadable", id="not-json"),
    pytest.param(200, b'{"status":"success"}', "unreadable", id="json-without-data"),
    pytest.param(200, b'{"status":"success","data":null}', "unreadable", id="json-data-null"),
])
def test_errors_are_unknown_for_everyone(server, status, body, says):
    vector = Prometheus(server(status=status, body=body), timeout_seconds=5).vector(QUERY)
    assert vector.error is not None and says in vector.error
    assert vector.get(("llm", "chat")) is None


def test_a_hung_prometheus_times_out_as_unknown(server):
    hang = threading.Event()
    try:
        prometheus = Prometheus(server(body=answer([series("1")]), hang=hang), timeout_seconds=0.5)
        vector = prometheus.vector(QUERY)
    finally:
        hang.set()
    assert vector.error is not None and "timed out after 0.5s" in vector.error
    assert vector.get(("llm", "chat")) is None


def test_nothing_listening_is_unknown():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    prometheus = Prometheus(f"http://127.0.0.1:{port}", timeout_seconds=2)
    vector = prometheus.vector(QUERY)
    assert vector.error is not None and "unreachable" in vector.error
    assert vector.get(("llm", "chat")) is None
    assert prometheus.queries == 1
