"""The Prometheus client: instant and range queries with scaler's timeouts and auth.

Queries are POSTed with a form-encoded body, as Prometheus's HTTP API allows
for /api/v1/query and /api/v1/query_range: a long query never meets a limit
on the length of a URL (a 414, or a proxy that drops the connection).

Unknown is not zero. An HTTP error, a timeout or an unreachable server comes
back as a `Vector` with an error, which is None for every workload, and the
decision layer holds. So does an answer Prometheus sent with a warning that
data is missing (`partial`): a failed remote read, a Thanos store that did
not answer. Its result holds what the sources that answered had: a
workload's busy series may be the one left out. Failures are told apart by exception type and HTTP
status, never by the text of a message.
"""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from scaler.signals.queries import SignalQuery
from scaler.signals.results import QueryError, Vector, parse_vector

#: Answers retried once: a proxy or a restarting Prometheus.
RETRIED_STATUSES = (502, 503, 504)
#: How PromQL's own annotations begin (Prometheus's util/annotations): remarks
#: on the query (`rate()` of a gauge, a histogram fixed up), computed over all
#: the data. Prometheus before 2.54 and Thanos send them in `warnings`, the
#: list where a failed remote read or store says data is missing; they carry
#: no other marker to tell them apart.
PROMQL_ANNOTATIONS = ("PromQL info:", "PromQL warning:")


def partial(body: dict) -> list[str]:
    """The warnings of an answer that say data is missing from it: any
    but PromQL's remarks on the query."""
    warnings = body.get("warnings")
    return [str(warning) for warning in warnings if not str(warning).startswith(PROMQL_ANNOTATIONS)] \
        if isinstance(warnings, list) else []


def _is_timeout(error: object) -> bool:
    # urllib3's NewConnectionError (refused, no route) is a ConnectTimeoutError by inheritance only.
    return (isinstance(error, urllib3.exceptions.TimeoutError)
            and not isinstance(error, urllib3.exceptions.NewConnectionError))


def _timed_out(error: Exception) -> bool:
    """A timeout, however requests wraps it: its own Timeout, or urllib3's
    timeout inside a ConnectionError (a read timeout while the body streams,
    or retries that ended on one)."""
    if isinstance(error, requests.Timeout):
        return True
    cause = error.args[0] if error.args else None
    return _is_timeout(cause) or _is_timeout(getattr(cause, "reason", None))  # a MaxRetryError's last error


def _excerpt(text: str, limit: int = 300) -> str:
    return " ".join(text.split())[:limit]


class Prometheus:
    """Instant and range queries, with our timeouts, auth and TLS."""

    def __init__(self, url: str, *, timeout_seconds: float = 10, bearer_token_file: Path | None = None,
                 username: str | None = None, password_file: Path | None = None,
                 ca_file: Path | None = None, retries: int = 1) -> None:
        self.session = requests.Session()
        # Passed with each request: a session's own `verify` loses to REQUESTS_CA_BUNDLE in the environment.
        self.verify: str | bool = str(ca_file) if ca_file else True
        if username is not None:
            self.session.auth = (username, password_file.read_text().strip() if password_file else "")
        # Retry a refused connection or a 502-504 once (queries are reads, so a
        # POST may be sent again); a read timeout is final (a hung Prometheus
        # would otherwise cost two timeouts a query). The last answer is kept,
        # so a 503 after its retry is reported with its status and body.
        retry = Retry(total=retries, read=False, backoff_factor=0.1, status_forcelist=RETRIED_STATUSES,
                      allowed_methods=frozenset({"POST"}), raise_on_status=False)
        for scheme in ("http://", "https://"):
            self.session.mount(scheme, HTTPAdapter(max_retries=retry))
        self.bearer_token_file = bearer_token_file
        self.url = url
        self.timeout_seconds = timeout_seconds
        self.queries = 0
        self._count = threading.Lock()  # evaluations query from several threads

    def _headers(self) -> dict[str, str]:
        # Re-read on every query: projected service-account tokens rotate.
        if self.bearer_token_file is None:
            return {}
        return {"Authorization": f"Bearer {self.bearer_token_file.read_text().strip()}"}

    def _post(self, path: str, form: dict[str, str]) -> list:
        """The answer's `data.result`, or QueryError saying what went wrong."""
        with self._count:
            self.queries += 1
        try:
            headers = self._headers()
        except OSError as error:
            raise QueryError(f"Prometheus at {self.url}: cannot read the bearer token file "
                             f"{self.bearer_token_file}: {error.strerror or error}") from None
        try:
            response = self.session.post(f"{self.url.rstrip('/')}{path}", data=form, headers=headers,
                                         verify=self.verify, timeout=self.timeout_seconds)
        except (requests.RequestException, OSError) as error:  # OSError: e.g. a CA file that is not there
            if _timed_out(error):
                raise QueryError(f"Prometheus at {self.url} timed out after {self.timeout_seconds:g}s") from None
            raise QueryError(f"Prometheus at {self.url} unreachable: {type(error).__name__}: "
                             f"{str(error)[:200]}") from None
        return self._read(response)

    def _read(self, response: requests.Response) -> list:
        try:
            body = response.json()
        except ValueError:  # not JSON (requests' JSONDecodeError is one)
            body = None
        status = response.status_code
        if status != 200 or (isinstance(body, dict) and body.get("status") == "error"):
            fields = body if isinstance(body, dict) else {}
            error_type = fields.get("errorType") if isinstance(fields.get("errorType"), str) else None
            detail = fields["error"] if isinstance(fields.get("error"), str) else response.text
            raise QueryError(f"Prometheus at {self.url} answered an error: HTTP {status}"
                             + (f" {error_type}" if error_type else "")
                             + (f": {_excerpt(detail)}" if detail.strip() else ""),
                             status=status, error_type=error_type)
        if body is None:
            raise QueryError(f"Prometheus at {self.url} sent an unreadable answer: not JSON: "
                             f"{_excerpt(response.text, 200)!r}")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or "result" not in data:
            raise QueryError(f"Prometheus at {self.url} sent an unreadable answer: no data.result in "
                             f"{_excerpt(response.text, 200)!r}")
        if missing := partial(body):
            raise QueryError(f"Prometheus at {self.url} answered with data missing (a partial answer): "
                             f"{_excerpt('; '.join(missing))}", status=status)
        return data["result"]

    def matrix(self, query: SignalQuery, start: datetime, end: datetime, step_seconds: float) -> list:
        """The `data.result` of a range query from start to end (inclusive);
        raises `QueryError` saying what went wrong."""
        return self._post("/api/v1/query_range", {"query": query.promql, "start": f"{start.timestamp():.3f}",
                                                  "end": f"{end.timestamp():.3f}", "step": f"{step_seconds:g}"})

    def instant(self, promql: str, *, at: datetime | None = None) -> list:
        """The `data.result` of an instant query, labels and all (prices,
        `scaler savings`); raises `QueryError` saying what went wrong."""
        return self._post("/api/v1/query", {"query": promql, **({"time": f"{at.timestamp():.3f}"} if at else {})})

    def vector(self, query: SignalQuery, *, at: datetime | None = None) -> Vector:
        """The signal per workload now, or as of `at` (`scaler plan --at`)."""
        form = {"query": query.promql, **({"time": f"{at.timestamp():.3f}"} if at else {})}
        try:
            result = self._post("/api/v1/query", form)
        except QueryError as error:
            return Vector(error=str(error))
        return parse_vector(result, query)
