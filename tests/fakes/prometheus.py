"""A Prometheus HTTP API in process, for the unit tier: instant and range
queries (GET or POST, as Prometheus takes both), answered from what a test
set per query text, with the faults a real one has (an error answer, a hang,
nothing listening)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Values = dict[tuple[str, str], float | str]


class FakePrometheus:
    def __init__(self) -> None:
        #: (substring of the PromQL, {(namespace, workload): value}); the first match answers
        self.answers: list[tuple[str, Values]] = []
        self.queries: list[dict[str, str]] = []
        self.status = 200
        self.hang = threading.Event()
        self.hang.set()  # cleared: every query waits until it is set again
        self._server: ThreadingHTTPServer | None = None

    def answer(self, substring: str, values: Values) -> None:
        self.answers.insert(0, (substring, values))

    def serve(self) -> FakePrometheus:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer(parse_qs(urlsplit(self.path).query))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                self._answer({**parse_qs(urlsplit(self.path).query), **form})

            def _answer(self, params: dict[str, list[str]]) -> None:
                flat = {k: v[-1] for k, v in params.items()}
                fake.queries.append(flat)
                fake.hang.wait()
                body = fake.body(urlsplit(self.path).path, flat)
                status = fake.status
                data = json.dumps(body if status == 200 else {"status": "error", "errorType": "internal",
                                                               "error": "injected"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def body(self, path: str, params: dict[str, str]) -> dict:
        promql = params.get("query", "")
        values = next((v for substring, v in self.answers if substring in promql), {})
        at = float(params.get("time") or params.get("end") or 0)
        if path.endswith("/query_range"):
            start, end, step = float(params["start"]), float(params["end"]), float(params["step"])
            points = [[start + i * step, str(0)] for i in range(int((end - start) // step) + 1)]
            result = [{"metric": {"namespace": ns, "workload": wl},
                       "values": [[t, str(value)] for t, _ in points]} for (ns, wl), value in values.items()]
            return {"status": "success", "data": {"resultType": "matrix", "result": result}}
        result = [{"metric": {"namespace": ns, "workload": wl}, "value": [at, str(value)]}
                  for (ns, wl), value in values.items()]
        return {"status": "success", "data": {"resultType": "vector", "result": result}}

    def stop(self) -> None:
        self.hang.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
