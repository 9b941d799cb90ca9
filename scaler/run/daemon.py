"""`scaler run`: the long-running daemon.

Jobs on one APScheduler (each with max_instances=1, coalesce and a real
misfire grace):
- reconcile: every evaluation interval, everything, level-triggered;
- edge: one date job at the next window edge of any policy, so a window
  opening or closing acts within about a second of it (the next regular
  reconcile would heal a missed edge anyway);
- wake: every wake-check interval, only paused workloads of policies with a
  wake signal, one query per such policy;
- reload: re-reads the policy files when they change; a bad set is reported
  and the last good one stays in force.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import structlog
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from scaler.cluster.kube import Kube, KubeError
from scaler.run.leading import Leadership
from scaler.run.observability import Health, Metrics, configure_logging, serve
from scaler.cluster.pausing import Pauser
from scaler.decide.loading import PolicyError, PolicySet, check_policies
from scaler.signals.prometheus import Prometheus
from scaler.cluster.discovery import KindResolver
from scaler.run.reconciling import Reconciler, WatchingView, kinds_of
from scaler.decide.times import utc_now
from scaler.run.settings import Settings
from scaler.decide.windows import next_edge

log = structlog.get_logger("scaler")


def _fingerprint(paths: list[Path]) -> tuple:
    """What changed-on-disk means: every policy file's name, size and mtime
    (ConfigMap updates swap a symlink, which changes all three)."""
    seen = []
    for path in paths:
        candidates = sorted(path.iterdir()) if path.is_dir() else [path]
        for file in candidates:
            if file.suffix in (".yaml", ".yml") or not path.is_dir():
                try:
                    stat = file.stat()
                    seen.append((str(file), stat.st_size, stat.st_mtime_ns))
                except OSError:
                    seen.append((str(file), None, None))
    return tuple(seen)


class Daemon:
    def __init__(self, settings: Settings, policies: PolicySet) -> None:
        self.settings = settings
        self.policies = policies
        self.metrics = Metrics()
        self.health = Health(policies_loaded=True, details={"policyFilesValid": True, "failingPolicies": {}})
        self.kube = Kube.from_environment(kubeconfig=settings.kubeconfig, pool_size=settings.concurrency + 8)
        self.metrics.count_requests(self.kube.request_counts)
        self.prometheus = Prometheus(
            settings.prometheus_url, timeout_seconds=settings.prometheus_timeout_seconds,
            bearer_token_file=settings.prometheus_bearer_token_file, username=settings.prometheus_username,
            password_file=settings.prometheus_password_file, ca_file=settings.prometheus_ca_file)
        self.view = WatchingView(self.kube, namespaces=settings.namespaces, gpu_resources=settings.gpu_resources)
        self.leadership = Leadership(
            self.kube, enabled=settings.leader_election, name=settings.lease_name,
            namespace=settings.effective_lease_namespace, identity=settings.identity,
            lease_duration_seconds=settings.lease_duration_seconds,
            renew_deadline_seconds=settings.lease_renew_deadline_seconds,
            retry_period_seconds=settings.lease_retry_period_seconds, on_change=self._leadership_changed)
        self.reconciler = Reconciler(
            prometheus=self.prometheus, view=self.view, pauser=Pauser(self.kube),
            excluded_namespaces=settings.all_excluded_namespaces, dry_run=settings.dry_run, metrics=self.metrics,
            may_act=self.leadership.is_leading, resolve=KindResolver(self.kube))
        self.scheduler = BackgroundScheduler(timezone=timezone.utc, job_defaults={
            "max_instances": 1, "coalesce": True, "misfire_grace_time": 30})
        self.scheduler.add_listener(self._job_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED)
        self.stopping = threading.Event()
        self._fingerprint = _fingerprint(settings.policies)
        self.server = None
        self._published: set[str] = set()

    # Start and stop

    def run(self) -> int:
        s = self.settings
        self.server = serve(self.metrics, self.health, address=s.bind_address, port=s.port)
        port = self.server.server_address[1]
        log.info("starting", policies=len(self.policies), files=list(self.policies.files), port=port,
                 dry_run=s.dry_run, leader_election=s.leader_election, prometheus=s.prometheus_url,
                 evaluation_interval_seconds=s.evaluation_interval_seconds)
        self.metrics.policy_files_valid.set(1)  # it would not have started otherwise
        self._publish_policies()
        self.view.start_namespaces()
        synced = self.view.wait_synced(kinds_of(self.policies), timeout_seconds=60)
        if not synced:
            log.warning("caches not synced after 60s; continuing, the API server may be unreachable")
        self.health.api_reachable = synced  # a reconcile that succeeds sets it too
        self.leadership.start()
        self.scheduler.start()
        self.scheduler.add_job(self._reconcile, IntervalTrigger(seconds=s.evaluation_interval_seconds),
                               id="reconcile", next_run_time=datetime.now(timezone.utc))
        self.scheduler.add_job(self._wake, IntervalTrigger(seconds=s.wake_check_interval_seconds), id="wake")
        self.scheduler.add_job(self._reload, IntervalTrigger(seconds=s.policy_reload_interval_seconds), id="reload")
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stopping.set())
        self.stopping.wait()
        return self.shutdown()

    def shutdown(self, *, deadline_seconds: float = 25) -> int:
        log.info("stopping: finishing the write in flight, then releasing the lease")
        # A pod has 30 s between SIGTERM and SIGKILL. If a request hangs past
        # our deadline, say what was still running and exit non-zero ourselves.
        watchdog = threading.Timer(deadline_seconds, self._forced_exit)
        watchdog.daemon = True
        watchdog.start()
        self.leadership.release()  # no new writes from here on
        self.scheduler.shutdown(wait=True)  # waits for the running job to return
        self.view.stop()
        if self.server is not None:
            self.server.shutdown()
        watchdog.cancel()
        log.info("stopped")
        return 0

    def _forced_exit(self) -> None:
        running = [thread.name for thread in threading.enumerate() if thread is not threading.current_thread()]
        log.error("shutdown did not finish in time; exiting", threads=running)
        os._exit(1)

    def _leadership_changed(self, leading: bool) -> None:
        self.metrics.leader.set(1 if leading else 0)
        if leading and self.scheduler.running:
            # A new leader acts now, not at the next interval.
            self.scheduler.modify_job("reconcile", next_run_time=datetime.now(timezone.utc))

    def _job_event(self, event: JobExecutionEvent) -> None:
        job = event.job_id if event.job_id in ("reconcile", "wake", "reload") else "edge"
        if event.code == EVENT_JOB_MISSED:
            self.metrics.missed_runs.labels(job).inc()
            log.warning("scheduled run missed", job=job)
        else:
            self.metrics.job_errors.labels(job).inc()
            log.error("scheduled job failed", job=job, error=repr(event.exception))

    # Jobs

    def _reconcile(self) -> None:
        started = time.monotonic()
        now = utc_now()
        policies = self.policies
        with self.reconciler.lock:
            try:
                evaluations = self.reconciler.evaluate(policies, now=now)
                self.health.details["failingPolicies"] = dict(self.reconciler.policy_errors)
                self.reconciler.act(evaluations, now=now)
            except KubeError as error:
                self.health.api_reachable = False
                log.error("reconcile failed", error=str(error))
                return
            finally:
                self.metrics.reconcile_seconds.labels("full").observe(time.monotonic() - started)
        self.health.api_reachable = True
        self.health.reconciled = True
        self.metrics.last_success.set(time.time())
        by, gpus = self.reconciler.paused_totals(policies)
        for who in ("manual", "policy", "unknown"):
            self.metrics.paused.labels(who).set(by.get(who, 0))
        self.metrics.gpus_paused.set(gpus)
        self._schedule_edge(now)

    def _wake(self) -> None:
        started = time.monotonic()
        now = utc_now()
        with self.reconciler.lock:
            evaluations = self.reconciler.evaluate(self.policies, now=now, wake_only=True)
            self.reconciler.act(evaluations, now=now)
        self.metrics.reconcile_seconds.labels("wake").observe(time.monotonic() - started)

    def _schedule_edge(self, now: datetime) -> None:
        edges = [edge for policy in self.policies if policy.schedule is not None
                 if (edge := next_edge(policy.schedule.compiled, now)) is not None]
        if not edges:
            return
        # A hair after the edge, so the window's state has flipped when we look.
        when = min(edges) + timedelta(milliseconds=50)
        self.scheduler.add_job(self._reconcile, DateTrigger(run_date=when), id="edge", replace_existing=True,
                               misfire_grace_time=None)

    def _reload(self) -> None:
        fingerprint = _fingerprint(self.settings.policies)
        if fingerprint == self._fingerprint:
            return
        self._fingerprint = fingerprint
        policies, problems = check_policies(self.settings.policies)
        if problems:
            self.metrics.reload_errors.inc()
            self.metrics.policy_files_valid.set(0)
            self.health.details.update(policyFilesValid=False, policyProblems=[str(p) for p in problems[:20]])
            for problem in problems:
                log.error("policy file rejected; the last good policies stay in force", problem=str(problem),
                          file=problem.file, line=problem.line, field=problem.field)
            return
        self.policies = policies
        self.metrics.policy_files_valid.set(1)
        self.health.details.update(policyFilesValid=True, policyProblems=[])
        self._publish_policies()
        log.info("policies reloaded", policies=len(policies), names=[p.name for p in policies])
        self.scheduler.modify_job("reconcile", next_run_time=datetime.now(timezone.utc))

    def _publish_policies(self) -> None:
        self.metrics.policies.set(len(self.policies))
        names = {policy.name for policy in self.policies}
        for gone in self._published - names:  # a removed policy must not keep an alert firing
            self.metrics.forget_policy(gone)
        for name in names:
            self.metrics.touch_policy(name)
        self._published = names


def run(settings: Settings) -> int:
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    try:
        policies, problems = check_policies(settings.policies)
        if problems:
            raise PolicyError(problems)
    except PolicyError as error:
        for problem in error.problems:
            log.error("invalid policy", problem=str(problem))
        print("\n".join(str(p) for p in error.problems), file=sys.stderr)
        return 1
    try:
        daemon = Daemon(settings, policies)
    except Exception as error:  # kubeconfig missing or unreadable
        log.error("cannot start", error=f"{type(error).__name__}: {error}")
        return 1
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return daemon.run()
