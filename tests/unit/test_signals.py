"""Prometheus answers, odd ones first: the parser on canned JSON, and the client
against a real HTTP server on loopback that answers 500, hangs, or sends
garbage. Unknown must never come back as a number."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from scaler.signals.prometheus import Prometheus
from scaler.signals.queries import idle_query, resolution_seconds, seen_query, wake_query
from scaler.signals.results import QueryError, parse_vector

QUERY = wake_query("q", namespace_label="namespace", workload_label="workload")


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
    query = wake_query("q", namespace_label="exported_namespace", workload_label="model")
    vector = parse_vector([{"metric": {"exported_namespace": "a", "model": "m"}, "value": [0, "1.5"]},
                           series("9")], query)
    assert vector.values == {("a", "m"): 1.5}
    assert vector.unmatched == 1


@pytest.mark.parametrize("label", ["my-label", "1abc", "", "a b", "ns{x}"])
def test_invalid_label_names_are_refused(label):
    with pytest.raises(ValueError, match="not a valid Prometheus label name"):
        wake_query("q", namespace_label=label, workload_label="workload")
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
    window = f"[{duration}s:{step}s]"
    assert f"> -Inf < +Inf){window}) >= scalar(count_over_time(vector(1){window})) - 1" in promql


def test_the_gap_finder_reads_what_the_coverage_guard_counts():
    """The range query that names a hole asks for the very expression the
    idle query counts at each step, so the two agree on where it was."""
    for expr in ("up", 'sum by (namespace, workload) (rate(x{a="b"}[5m]))'):
        seen = seen_query(expr, namespace_label="ns", workload_label="wl").promql
        idle = idle_query(expr, duration_seconds=1800, namespace_label="ns", workload_label="wl").promql
        assert f"count_over_time(({seen} > -Inf < +Inf)[1800s:30s])" in idle
        assert f"and on (ns, wl) ({seen} > -Inf < +Inf) and" in idle  # seen now: a finite value


class _Canned(BaseHTTPRequestHandler):
    """Answers every query the way the test says, GET or POST, as Prometheus
    does; `hang` holds the answer, `stall` sends the headers and then holds
    the body. A request line over 64 KiB is refused with 414 before any of
    this (http.server's limit; real servers and proxies have one too). Each
    request is logged: (method, path, form fields, headers)."""

    status = 200
    body = b""
    hang: threading.Event | None = None
    stall: threading.Event | None = None
    seen: list

    def do_GET(self):
        self._answer("GET", parse_qs(urlsplit(self.path).query))

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode()) \
            if self.headers.get("Content-Type") == "application/x-www-form-urlencoded" else {}
        self._answer("POST", form)

    def _answer(self, method: str, form: dict):
        self.seen.append((method, urlsplit(self.path).path, {key: values[0] for key, values in form.items()},
                          dict(self.headers)))
        if self.hang is not None:
            self.hang.wait(10)
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if self.stall is not None:
            self.wfile.flush()
            self.stall.wait(10)
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@dataclass
class Canned:
    url: str
    seen: list


@pytest.fixture
def server():
    started = []

    def start(*, status=200, body=b"", hang=None, stall=None, tls=None):
        seen: list = []
        handler = type("Handler", (_Canned,), {"status": status, "body": body, "hang": hang, "stall": stall,
                                               "seen": seen})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        started.append(httpd)
        return Canned(f"{'https' if tls else 'http'}://127.0.0.1:{httpd.server_address[1]}", seen)
    yield start
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


def answer(result) -> bytes:
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


def matrix_answer(result) -> bytes:
    return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}}).encode()


def test_a_good_answer(server):
    vector = Prometheus(server(body=answer([series("2.5")])).url).vector(QUERY)
    assert vector.error is None
    assert vector.get(("llm", "chat")) == 2.5


AT = datetime(2026, 11, 20, 9, 0, 0, 500000, tzinfo=UTC)


def test_queries_are_posted_as_a_form_with_the_query_in_the_body(server):
    """Prometheus's API takes POST for /query and /query_range: the query is
    in the body, never in the URL, whatever its length."""
    canned = server(body=answer([series("1")]))
    prometheus = Prometheus(canned.url + "/")
    prometheus.vector(QUERY)
    prometheus.vector(QUERY, at=AT)
    prometheus.matrix(QUERY, AT, AT.replace(hour=10), 60)
    assert [(method, path) for method, path, _, _ in canned.seen] == [
        ("POST", "/api/v1/query"), ("POST", "/api/v1/query"), ("POST", "/api/v1/query_range")]
    forms = [form for _, _, form, _ in canned.seen]
    assert forms[0] == {"query": QUERY.promql}
    assert forms[1] == {"query": QUERY.promql, "time": "1795165200.500"}
    assert forms[2] == {"query": QUERY.promql, "start": "1795165200.500", "end": "1795168800.500", "step": "60"}
    assert all(headers["Content-Type"] == "application/x-www-form-urlencoded" for *_, headers in canned.seen)


HUGE = wake_query(" or ".join(f'up{{job="job-{index:06d}"}}' for index in range(25_000)),
                   namespace_label="namespace", workload_label="workload")


def test_a_query_of_half_a_megabyte_is_answered_by_a_server_that_refuses_long_urls(server):
    """In a URL it would be refused (414) or the connection dropped: 'unreachable'."""
    assert len(HUGE.promql) > 500_000
    canned = server(body=answer([series("7")]))
    vector = Prometheus(canned.url).vector(HUGE)
    assert vector.error is None and vector.get(("llm", "chat")) == 7.0
    canned = server(body=matrix_answer([{"metric": {"namespace": "llm", "workload": "chat"},
                                         "values": [[1795165200, "7"]]}]))
    assert Prometheus(canned.url).matrix(HUGE, AT, AT, 60) == [
        {"metric": {"namespace": "llm", "workload": "chat"}, "values": [[1795165200, "7"]]}]
    assert [form["query"] for _, _, form, _ in canned.seen] == [HUGE.promql]


def test_the_fake_refuses_a_long_url_as_a_real_server_does(server):
    """The test above can fail: the same query in a URL is refused."""
    import requests

    canned = server(body=answer([series("7")]))
    try:
        status = requests.get(f"{canned.url}/api/v1/query", params={"query": HUGE.promql}, timeout=5).status_code
    except requests.ConnectionError:
        status = None  # reset before the answer was read
    assert status in (414, None) and canned.seen == []


def test_a_bearer_token_is_read_again_for_every_query_and_basic_auth_is_sent(server, tmp_path):
    canned = server(body=answer([]))
    token = tmp_path / "token"
    token.write_text("first\n")
    prometheus = Prometheus(canned.url, bearer_token_file=token)
    prometheus.vector(QUERY)
    token.write_text("rotated")
    prometheus.matrix(QUERY, AT, AT, 60)
    assert [headers["Authorization"] for *_, headers in canned.seen] == ["Bearer first", "Bearer rotated"]
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    Prometheus(canned.url, username="scaler", password_file=password).vector(QUERY)
    assert canned.seen[-1][3]["Authorization"] == "Basic " + base64.b64encode(b"scaler:s3cret").decode()


def test_an_unreadable_token_file_is_unknown_not_a_crash(server, tmp_path):
    canned = server(body=answer([series("1")]))
    vector = Prometheus(canned.url, bearer_token_file=tmp_path / "absent").vector(QUERY)
    assert vector.error == (f"Prometheus at {canned.url}: cannot read the bearer token file {tmp_path / 'absent'}: "
                            "No such file or directory")
    assert vector.get(("llm", "chat")) is None and canned.seen == []


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (certificate file, key file)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=30)
    return cert, key


def test_tls_with_the_ca_file_is_trusted_and_without_it_is_unknown(server, certificate):
    canned = server(body=answer([series("3")]), tls=certificate)
    vector = Prometheus(canned.url, ca_file=certificate[0]).vector(QUERY)
    assert vector.error is None and vector.get(("llm", "chat")) == 3.0
    untrusted = Prometheus(canned.url, timeout_seconds=5).vector(QUERY)
    assert untrusted.error is not None
    assert untrusted.error.startswith(f"Prometheus at {canned.url} unreachable: SSLError")


@pytest.mark.parametrize(("status", "body", "says"), [
    pytest.param(500, b'{"status":"error","error":"boom"}', "answered an error: HTTP 500: boom", id="http-500"),
    pytest.param(400, b'{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected"}',
                 "answered an error: HTTP 400 bad_data: 1:5: parse error: unexpected", id="http-400-bad-query"),
    pytest.param(422, b'{"status":"error","errorType":"execution","error":"query processing would load too many '
                      b'samples into memory in query execution"}',
                 "answered an error: HTTP 422 execution: query processing would load too many samples into memory "
                 "in query execution", id="http-422-too-many-samples"),
    pytest.param(503, b"", "answered an error: HTTP 503", id="http-503-retried-then-error"),
    pytest.param(414, b"<html><body>\n<h1>414 Request-URI Too Long</h1></body></html>",
                 "answered an error: HTTP 414: <html><body> <h1>414 Request-URI Too Long</h1></body></html>",
                 id="http-414-html"),
    pytest.param(200, b"<html>not json</html>", "sent an unreadable answer: not JSON: '<html>not json</html>'",
                 id="not-json"),
    pytest.param(200, b'{"status":"success"}', 'sent an unreadable answer: no data.result in \'{"status":"success"}\'',
                 id="json-without-data"),
    pytest.param(200, b'{"status":"success","data":null}', "sent an unreadable answer: no data.result in",
                 id="json-data-null"),
    pytest.param(200, b'{"status":"error","errorType":"internal","error":"odd"}',
                 "answered an error: HTTP 200 internal: odd", id="status-error-in-a-200"),
])
def test_errors_are_unknown_for_everyone(server, status, body, says):
    canned = server(status=status, body=body)
    vector = Prometheus(canned.url, timeout_seconds=5).vector(QUERY)
    assert vector.error is not None and vector.error.startswith(f"Prometheus at {canned.url} {says}"), vector.error
    assert vector.get(("llm", "chat")) is None
    assert len(canned.seen) == (2 if status == 503 else 1)  # 502-504 are retried once


@pytest.mark.parametrize(("status", "error_type"), [(400, "bad_data"), (422, "execution"), (503, "timeout")])
def test_a_range_query_error_carries_prometheus_status_and_error_type(server, status, error_type):
    body = json.dumps({"status": "error", "errorType": error_type, "error": "whatever it says"}).encode()
    with pytest.raises(QueryError) as caught:
        Prometheus(server(status=status, body=body).url).matrix(QUERY, AT, AT, 60)
    assert (caught.value.status, caught.value.error_type, caught.value.too_big) == (status, error_type, status == 422)


def test_a_hung_prometheus_times_out_as_unknown(server):
    hang = threading.Event()
    try:
        canned = server(body=answer([series("1")]), hang=hang)
        vector = Prometheus(canned.url, timeout_seconds=0.5).vector(QUERY)
    finally:
        hang.set()
    assert vector.error == f"Prometheus at {canned.url} timed out after 0.5s"
    assert vector.get(("llm", "chat")) is None
    assert len(canned.seen) == 1  # a read timeout is not retried


def test_a_body_that_stalls_after_the_headers_times_out_as_unknown(server):
    """requests reports this timeout as a ConnectionError around urllib3's
    ReadTimeoutError: told apart by type, it is still a timeout."""
    stall = threading.Event()
    try:
        canned = server(body=answer([series("1")]), stall=stall)
        with pytest.raises(QueryError) as caught:
            Prometheus(canned.url, timeout_seconds=0.5).matrix(QUERY, AT, AT, 60)
    finally:
        stall.set()
    assert str(caught.value) == f"Prometheus at {canned.url} timed out after 0.5s"
    assert caught.value.status is None


def test_nothing_listening_is_unknown():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    prometheus = Prometheus(f"http://127.0.0.1:{port}", timeout_seconds=2)
    vector = prometheus.vector(QUERY)
    assert vector.error is not None and vector.error.startswith(
        f"Prometheus at http://127.0.0.1:{port} unreachable: ConnectionError: ")
    assert vector.get(("llm", "chat")) is None
    assert prometheus.queries == 1
