"""Metrics, logs and the one HTTP port: /metrics, /healthz, /readyz, and the POST routes the
daemon adds (the push wake's /wake)."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import product

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from scaler.cluster.blockers import KINDS as BLOCKER_KINDS
from scaler.cluster.writes import Outcome
from scaler.signals.queries import SIGNALS

log = structlog.get_logger("scaler")

ACTIONS = ("pause", "resume", "scale_up")
#: scaler_actions_total's `result` for each outcome of a write (the decision line's
#: `result`): one vocabulary for both. A write fenced off before it was sent, or
#: whose workload was gone, is skipped; a conflict that outlasted the retries failed.
ACTION_RESULTS = {Outcome.CHANGED: "success", Outcome.WOULD_CHANGE: "dry_run", Outcome.FAILED: "failed",
                  Outcome.SKIPPED: "skipped", Outcome.UNCHANGED: "skipped"}
#: Every `result` exported (at 0 from the start); `conflict` and `gone` stay at 0,
#: kept so that queries and dashboards naming them still find a series.
RESULTS = (*dict.fromkeys(ACTION_RESULTS.values()), "conflict", "gone")
JOBS = ("reconcile", "wake", "edge", "reload", "follow")


class Metrics:
    """Every series the daemon exports, in its own registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self._published: set[str] = set()
        self.decisions = Counter("scaler_decisions_total", "Decisions made, by action and reason code.",
                                 ["action", "reason"], registry=r)
        self.actions = Counter("scaler_actions_total", "Writes attempted, by action and result.",
                               ["action", "result"], registry=r)
        self.reconcile_seconds = Histogram("scaler_reconcile_duration_seconds", "Wall time of one reconcile.",
                                           ["kind"], registry=r,
                                           buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
        self.wake_to_ready = Histogram(
            "scaler_wake_to_ready_seconds", "Cold starts: from a start (a resume, a scale-up, or someone else's "
            "scale-up first seen loading) to its first Ready replica (phase=first) and to all Ready (phase=all).",
            ["policy", "phase"], registry=r, buckets=(1, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 1800))
        self.last_success = Gauge("scaler_last_successful_reconcile_timestamp_seconds",
                                  "Unix time the last full reconcile completed.", registry=r)
        self.paused = Gauge("scaler_paused_workloads", "Workloads paused, by who paused them.",
                            ["paused_by"], registry=r)
        self.gpus_paused = Gauge("scaler_gpus_paused", "GPUs the paused workloads would hold at their recorded size.",
                                 registry=r)
        self.query_errors = Counter("scaler_query_errors_total", "PromQL queries that failed (the signal is unknown).",
                                    ["policy", "signal"], registry=r)
        self.queries = Counter("scaler_queries_total", "PromQL queries sent.", ["policy", "signal"], registry=r)
        self.unknown = Gauge("scaler_signal_unknown_workloads",
                             "Workloads whose signal was unknown at the last evaluation (held, never scaled down).",
                             ["policy", "signal"], registry=r)
        self.leader = Gauge("scaler_leader", "1 while this replica holds the lease and acts.", registry=r)
        self.policies = Gauge("scaler_policies_loaded", "Policies in force.", registry=r)
        self.policy_files_valid = Gauge("scaler_policy_files_valid",
                                        "1 while the policy files on disk are valid; 0 while they are rejected "
                                        "(the last good set stays in force).", registry=r)
        self.policy_failing = Gauge("scaler_policy_failing",
                                    "1 while a policy fails at run time (it is skipped; the others act).",
                                    ["policy"], registry=r)
        self.reload_errors = Counter("scaler_policy_reload_errors_total",
                                     "Policy reloads rejected (the last good set stays in force).", registry=r)
        self.job_errors = Counter("scaler_scheduler_job_errors_total", "Scheduled jobs that raised.", ["task"],
                                  registry=r)
        self.missed_runs = Counter("scaler_scheduler_missed_runs_total",
                                   "Scheduled runs that did not run: started too late, or skipped because "
                                   "the previous run was still going.", ["task", "why"], registry=r)
        self.pause_reverts = Counter("scaler_pause_reverts_total",
                                     "Pauses a GitOps controller set back (scaler then backs off), by its "
                                     "managedFields manager.", ["manager"], registry=r)
        self._node_metrics(r)
        for action in ACTIONS:
            for result in RESULTS:
                self.actions.labels(action, result)
        for kind in ("full", "edge", "wake"):
            self.reconcile_seconds.labels(kind)
        for job in JOBS:
            self.job_errors.labels(job)
            for why in ("late", "busy"):
                self.missed_runs.labels(job, why)

    def _node_metrics(self, r: CollectorRegistry) -> None:
        """What the node follower (run/following.py) exports."""
        self.node_release_seconds = Histogram(
            "scaler_node_release_seconds", "From a pause to the going of a node its pods ran on (one observation per "
            "paused workload and node released).", registry=r,
            buckets=(10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 1800, 3600, 7200, 21600))
        self.gpus_freed_not_released = Gauge(
            "scaler_gpus_freed_not_released", "GPUs paused workloads freed on nodes that are still there, by what "
            "holds the node first (docs/nodes.md): freed, but still on the bill.", ["blocker"], registry=r)
        for blocker in BLOCKER_KINDS:
            self.gpus_freed_not_released.labels(blocker)

    def job_event(self, event: JobEvent) -> None:
        """A scheduler job that failed, ran late or was skipped as busy:
        counted by job (`edge` for every window-edge date job) and logged."""
        job = event.job_id if event.job_id in JOBS else "edge"
        if event.code == EVENT_JOB_MISSED:
            self.missed_runs.labels(job, "late").inc()
            log.warning("scheduled run missed", task=job, why="started too late")
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            self.missed_runs.labels(job, "busy").inc()
            log.warning("scheduled run skipped", task=job, why="the previous run is still going")
        else:
            self.job_errors.labels(job).inc()
            log.error("scheduled job failed", job=job, error=repr(event.exception))

    def count_requests(self, requests: Callable[[], dict[str, int]]) -> None:
        """Export the Kubernetes client's request counts at scrape time."""
        self.registry.register(_RequestCollector(requests))

    def publish_policies(self, names: set[str]) -> None:
        """The per-policy series of the policies in force, at zero until
        something happens; a removed policy's go, so no alert keeps firing."""
        for gone in self._published - names:
            with suppress(KeyError):
                self.policy_failing.remove(gone)
            for signal, family in product(SIGNALS, (self.query_errors, self.unknown, self.queries)):
                with suppress(KeyError):
                    family.remove(gone, signal.name)
        for name in names:
            self.policy_failing.labels(name)
            for signal in SIGNALS:
                self.query_errors.labels(name, signal.name)
                self.unknown.labels(name, signal.name)
        self._published = set(names)


class _RequestCollector:
    def __init__(self, requests: Callable[[], dict[str, int]]) -> None:
        self.requests = requests

    def collect(self):
        family = CounterMetricFamily("scaler_kube_requests", "Kubernetes API requests, by verb.", labels=["verb"])
        for verb, count in sorted(self.requests().items()):
            family.add_metric([verb], count)
        yield family


@dataclass
class Health:
    """What /readyz reports: ready once policies are loaded, the API server
    answered, and a reconcile completed."""

    policies_loaded: bool = False
    api_reachable: bool = False
    reconciled: bool = False
    details: dict = field(default_factory=dict)
    #: Every watch cache has listed: until then the daemon knows nothing true.
    synced: Callable[[], bool] = lambda: True

    def ready(self) -> bool:
        return self.policies_loaded and self.api_reachable and self.reconciled and self.synced()


#: A POST route (the push wake): (the request's headers, names lower-cased; its body) -> (status, JSON body,
#: extra headers).
PostHandler = Callable[[Mapping[str, str], bytes], tuple[int, dict, dict[str, str]]]
#: The largest POST body read; a longer one is refused unread (413).
MAX_POST_BYTES = 16 * 1024
#: How long a client of /metrics, /readyz or /wake may keep a connection silent (a request line,
#: headers or a body announced and never sent): past it, the connection is closed, its thread freed.
READ_SECONDS = 10.0


class _Handler(BaseHTTPRequestHandler):
    metrics: Metrics
    health: Health
    posts: Mapping[str, PostHandler] = {}

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._send(200, b"ok\n", "text/plain")
        elif path == "/readyz":
            h = self.health
            body = json.dumps({"ready": h.ready(), "policiesLoaded": h.policies_loaded,
                               "apiReachable": h.api_reachable, "reconciled": h.reconciled,
                               "cachesSynced": h.synced(), **h.details})
            self._send(200 if h.ready() else 503, body.encode() + b"\n", "application/json")
        else:
            self._send(404, b"not found\n", "text/plain")

    def do_POST(self) -> None:
        route = self.posts.get(self.path.split("?", 1)[0])
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        headers: dict[str, str]
        if route is None:
            status, answer, headers = 404, {"result": "not-found", "reason": "no such path"}, {}
        elif not 0 <= length <= MAX_POST_BYTES:
            self.close_connection = True  # the body is left unread
            status, answer, headers = 413, {"result": "invalid", "reason": f"the body must have a Content-Length "
                                                                         f"of at most {MAX_POST_BYTES} bytes"}, {}
        else:
            sent = {name.lower(): value for name, value in self.headers.items()}
            status, answer, headers = route(sent, self.rfile.read(length))
        self._send(status, json.dumps(answer).encode() + b"\n", "application/json", headers)

    def _send(self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # probes every few seconds are not news
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    #: The listen backlog: a burst of wake requests waits in it instead of being refused (the default is 5).
    request_queue_size = 1024


def serve(metrics: Metrics, health: Health, *, address: str, port: int,
          posts: Mapping[str, PostHandler] | None = None) -> ThreadingHTTPServer:
    handler = type("Handler", (_Handler,), {"metrics": metrics, "health": health, "posts": dict(posts or {}),
                                            "timeout": READ_SECONDS})
    server = _Server((address, port), handler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


class _LibraryFailures(logging.Handler):
    """The kubernetes client's leader election reports refused Lease writes
    only as INFO lines on stdlib logging; bring its failures into our log."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(("Failed", "Error")):
            structlog.get_logger(record.name).warning("leader election: " + message[:500])


class _Lines(structlog.stdlib.ProcessorFormatter):
    """structlog's formatter with a short way for the daemon's own JSON lines
    (two per write at a window edge, on the CPU the API server needs): an
    event dict without an exception is rendered as it is, without the
    record copy and the processor chain the general way takes. Library
    records and exceptions take the general way; the line is the same."""

    def __init__(self, *, renderer, **kwargs) -> None:
        super().__init__(processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                                     structlog.processors.format_exc_info, renderer], **kwargs)
        self._json = renderer if isinstance(renderer, structlog.processors.JSONRenderer) else None

    def format(self, record: logging.LogRecord) -> str:
        event = record.msg
        if (self._json is not None and isinstance(event, dict) and getattr(record, "_logger", None) is not None
                and "exc_info" not in event):
            return str(self._json(None, record.levelname.lower(), event))
        return super().format(record)


#: Libraries whose INFO lines are noise in the daemon's log; their warnings stay.
_QUIET_LIBRARIES = ("apscheduler", "kubernetes", "urllib3", "requests")


def configure_logging(*, log_format: str = "auto", level: str = "info") -> None:
    """One stream, one line per record: structlog and every library's stdlib
    logging (APScheduler, the kubernetes client, urllib3, Python warnings)
    go through one handler, so lines never interleave and all are JSON when
    not on a terminal (or asked)."""
    as_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    renderer = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level, stamp,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        # Levels are the stdlib root's (set below): a logger cached on first use
        # keeps the wrapper it was made with, and must still follow a new level.
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Lines(
        renderer=renderer,
        foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name, stamp]))
    # The Logging HOWTO's "Optimization": no line prints the caller, thread or process.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(getattr(logging, level.upper()))
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    logging.captureWarnings(True)
    election = logging.getLogger("leaderelection")
    election.setLevel(logging.INFO)
    election.propagate = False
    if not any(isinstance(h, _LibraryFailures) for h in election.handlers):
        election.addHandler(_LibraryFailures())
