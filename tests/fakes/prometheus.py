"""Prometheus's query API on loopback, for the unit tier: /api/v1/query and
/api/v1/query_range, by GET or by POST with a form body, as the real one
takes them. What it answers is up to the test (`instant`, `range`, and the
`warnings` a successful answer carries, as a failed remote read or a Thanos
store that did not answer add them); a
request line over 64 KiB is refused with 414 by http.server itself, as real
servers and proxies refuse long URLs. Every request is logged (`requests`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Query:
    method: str
    path: str
    form: dict[str, str]

    @property
    def promql(self) -> str:
        return self.form.get("query", "")


def _nothing(query: Query) -> list:
    return []


def _no_warnings(query: Query) -> list[str]:
    return []


@dataclass
class FakePrometheus:
    """`instant(query)` and `range(query)` return a `data.result` list (or
    raise to answer 422 execution with the message)."""

    instant: Callable[[Query], list] = _nothing
    range: Callable[[Query], list] = _nothing
    warnings: Callable[[Query], list[str]] = _no_warnings
    requests: list[Query] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    def serve(self, *, port: int = 0) -> FakePrometheus:
        """On a free loopback port, or on `port` (a Prometheus started again where it was)."""
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None, "serve() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, substring: str, values: dict[tuple[str, str], float]) -> None:
        """Instant queries whose PromQL contains `substring` answer these
        values per (namespace, workload); others answer what they did."""
        before = self.instant

        def instant(query: Query) -> list:
            if substring not in query.promql:
                return before(query)
            at = float(query.form.get("time") or 0)
            return [{"metric": {"namespace": ns, "workload": wl}, "value": [at, str(value)]}
                    for (ns, wl), value in values.items()]
        self.instant = instant

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    fake: FakePrometheus

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._answer("GET", urlsplit(self.path).query)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._answer("POST", self.rfile.read(length).decode())

    def _answer(self, method: str, encoded: str) -> None:
        path = urlsplit(self.path).path
        query = Query(method, path, {key: values[0] for key, values in parse_qs(encoded).items()})
        self.fake.requests.append(query)
        answer = {"/api/v1/query": (self.fake.instant, "vector"), "/api/v1/query_range": (self.fake.range, "matrix")}
        if path not in answer:
            return self._send(404, {"status": "error", "errorType": "not_found", "error": f"no {path}"})
        if not query.promql:
            return self._send(400, {"status": "error", "errorType": "bad_data", "error": "no query"})
        respond, kind = answer[path]
        try:
            result = respond(query)
        except Exception as error:  # noqa: BLE001 - the test's way to make a query fail
            return self._send(422, {"status": "error", "errorType": "execution", "error": str(error)})
        warnings = self.fake.warnings(query)
        self._send(200, {"status": "success", "data": {"resultType": kind, "result": result},
                         **({"warnings": warnings} if warnings else {})})

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
