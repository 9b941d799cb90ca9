"""The Prometheus client: instant and range queries with scaler's timeouts and auth.

Unknown is not zero. An HTTP error, a timeout or an unreachable server comes
back as a `Vector` with an error, which is None for every workload, and the
decision layer holds."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path

import requests
from requests.adapters import Retry

from scaler.signals.queries import SignalQuery
from scaler.signals.results import Vector, parse_vector


def _failures() -> tuple[type[Exception], ...]:
    from prometheus_api_client import PrometheusApiClientException

    return (PrometheusApiClientException, ValueError, KeyError, TypeError, requests.RequestException, OSError)


class RangeQueryError(Exception):
    """A range query that did not answer, phrased for the person reading."""


class Prometheus:
    """Instant queries through prometheus-api-client, with our timeouts and auth."""

    def __init__(self, url: str, *, timeout_seconds: float = 10, bearer_token_file: Path | None = None,
                 username: str | None = None, password_file: Path | None = None,
                 ca_file: Path | None = None, retries: int = 1) -> None:
        from prometheus_api_client import PrometheusConnect

        session = requests.Session()
        session.verify = str(ca_file) if ca_file else True
        self.bearer_token_file = bearer_token_file
        auth = None
        if username is not None:
            auth = (username, password_file.read_text().strip() if password_file else "")
        self.client = PrometheusConnect(
            url=url.rstrip("/"), session=session, auth=auth, timeout=timeout_seconds,
            # Retry a refused connection or a 502-504 once; a read timeout is
            # final (a hung Prometheus would otherwise cost two timeouts a query).
            retry=Retry(total=retries, read=0, backoff_factor=0.1, status_forcelist=(502, 503, 504)),
        )
        self.url = url
        self._failures = _failures()
        self.timeout_seconds = timeout_seconds
        self.queries = 0
        self._count = threading.Lock()  # evaluations query from several threads

    def _counted(self) -> None:
        with self._count:
            self.queries += 1
        self.client.headers = self._headers()

    def matrix(self, query: SignalQuery, start: datetime, end: datetime, step_seconds: float) -> list:
        """The `data.result` of a range query from start to end (inclusive);
        raises `RangeQueryError` saying what went wrong."""
        self._counted()
        try:
            return self.client.custom_query_range(query.promql, start_time=start, end_time=end,
                                                  step=f"{step_seconds:g}")
        except self._failures as error:
            raise RangeQueryError(self._failure(error)) from None

    def _headers(self) -> dict[str, str] | None:
        # Re-read on every query: projected service-account tokens rotate.
        if self.bearer_token_file is None:
            return None
        return {"Authorization": f"Bearer {self.bearer_token_file.read_text().strip()}"}

    def vector(self, query: SignalQuery, *, at: datetime | None = None) -> Vector:
        """The signal per workload now, or as of `at` (`scaler plan --at`)."""
        self._counted()
        try:
            result = self.client.custom_query(query.promql, params={"time": at.timestamp()} if at else None)
        except self._failures as error:
            return Vector(error=self._failure(error))
        return parse_vector(result, query)

    def _failure(self, error: Exception) -> str:
        """What went wrong with a query, for the person reading."""
        from prometheus_api_client import PrometheusApiClientException

        if isinstance(error, PrometheusApiClientException):
            return f"Prometheus at {self.url} answered an error: {str(error)[:300]}"
        if isinstance(error, (ValueError, KeyError, TypeError)):
            # Not JSON, or JSON without data.result. Before RequestException:
            # requests' JSONDecodeError is both, and this is no network fault.
            return f"Prometheus at {self.url} sent an unreadable answer: {type(error).__name__}: {str(error)[:200]}"
        # requests reports an exhausted read retry as a ConnectionError
        # wrapping the timeout; tell the two apart for the person reading.
        if isinstance(error, requests.Timeout) or "timed out" in str(error).lower():
            return f"Prometheus at {self.url} timed out after {self.timeout_seconds:g}s"
        return f"Prometheus at {self.url} unreachable: {type(error).__name__}: {str(error)[:200]}"
