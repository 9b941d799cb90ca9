"""Prometheus signals: one instant query per policy signal per evaluation,
its vector matched to workloads by (namespace, workload) labels.

Unknown is not zero. A workload missing from the result, a NaN or ±Inf
value, an HTTP error, a timeout or an unreachable server all come back as
None for that workload (or for every workload), and the decision layer holds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import requests
from requests.adapters import Retry

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

WorkloadKey = tuple[str, str]  # (namespace, workload name)


@dataclass(frozen=True)
class SignalQuery:
    """A query as sent, and how to read its result."""

    promql: str
    namespace_label: str
    workload_label: str


def _check_labels(namespace_label: str, workload_label: str) -> None:
    for label in (namespace_label, workload_label):
        if not LABEL_NAME.match(label):
            raise ValueError(f"{label!r} is not a valid Prometheus label name")


def resolution_seconds(duration_seconds: float) -> int:
    """Subquery step: about 60 points over the idle window, 1 s to 60 s."""
    return int(min(60, max(1, duration_seconds // 60)))


def idle_query(expr: str, *, duration_seconds: float, namespace_label: str, workload_label: str) -> SignalQuery:
    """The signal's maximum over the idle window, per workload, computed by
    Prometheus so a daemon restart does not reset anyone's idle clock.

    Two guards keep missing data from looking idle: the series must have a
    sample now (not stale), and one at the start of the window (a window
    Prometheus saw only the end of is not a full idle window)."""
    _check_labels(namespace_label, workload_label)
    by = f"by ({namespace_label}, {workload_label})"
    on = f"on ({namespace_label}, {workload_label})"
    seconds = int(math.ceil(duration_seconds))
    step = resolution_seconds(duration_seconds)
    lookback = max(2 * step, 30)
    promql = (
        f"max {by} (max_over_time(({expr})[{seconds}s:{step}s]))"
        f" and {on} max {by} ({expr})"
        f" and {on} max {by} (last_over_time(({expr})[{lookback}s:{step}s] offset {seconds}s))"
    )
    return SignalQuery(promql, namespace_label, workload_label)


def queue_query(expr: str, *, namespace_label: str, workload_label: str) -> SignalQuery:
    """The queue right now, summed per workload (several routers may report it)."""
    _check_labels(namespace_label, workload_label)
    return SignalQuery(f"sum by ({namespace_label}, {workload_label}) ({expr})", namespace_label, workload_label)


@dataclass
class Vector:
    """A query's answer: a value per workload, or the reason there is none."""

    values: dict[WorkloadKey, float | None] = field(default_factory=dict)
    error: str | None = None
    unusable: int = 0  # series whose value was NaN or ±Inf

    def get(self, key: WorkloadKey) -> float | None:
        if self.error is not None:
            return None
        return self.values.get(key)


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
        self.timeout_seconds = timeout_seconds
        self.queries = 0

    def _headers(self) -> dict[str, str] | None:
        # Re-read on every query: projected service-account tokens rotate.
        if self.bearer_token_file is None:
            return None
        return {"Authorization": f"Bearer {self.bearer_token_file.read_text().strip()}"}

    def vector(self, query: SignalQuery) -> Vector:
        from prometheus_api_client import PrometheusApiClientException

        self.queries += 1
        self.client.headers = self._headers()
        try:
            result = self.client.custom_query(query.promql)
        except PrometheusApiClientException as error:
            return Vector(error=f"Prometheus at {self.url} answered an error: {str(error)[:300]}")
        except (requests.RequestException, OSError) as error:
            # requests reports an exhausted read retry as a ConnectionError
            # wrapping the timeout; tell the two apart for the person reading.
            if isinstance(error, requests.Timeout) or "timed out" in str(error).lower():
                return Vector(error=f"Prometheus at {self.url} timed out after {self.timeout_seconds:g}s")
            return Vector(error=f"Prometheus at {self.url} unreachable: {type(error).__name__}: {str(error)[:200]}")
        except ValueError as error:  # not JSON
            return Vector(error=f"Prometheus at {self.url} sent an unreadable answer: {error}")
        vector = Vector()
        for series in result:
            labels = series.get("metric", {})
            key = (labels.get(query.namespace_label, ""), labels.get(query.workload_label, ""))
            try:
                value = float(series["value"][1])
            except (KeyError, IndexError, TypeError, ValueError):
                value = math.nan
            if math.isnan(value) or math.isinf(value):
                vector.unusable += 1
                vector.values[key] = None
            else:
                vector.values[key] = value
        return vector
