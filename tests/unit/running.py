"""The daemon in process for unit tests, two ways.

`Running`: its real run() (run/daemon.py) in a thread against the fake API
server and a fake Prometheus, with intervals of fractions of a second, its
JSON log lines captured (`Log`), its metrics read from its registry. What
`tests.helpers.DaemonProcess` is for the cluster tier, without a Python
start or a real cluster.

`Passes`: one daemon's memory (its evaluator, actor, tracker, watch cache) running the
passes `scaler run` runs, at instants the test gives: minutes and hours of
a scenario in simulated time (time is an argument)."""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import datetime
from pathlib import Path

from scaler.cluster.eventing import EventSink
from scaler.cluster.kinds import DEPLOYMENT
from scaler.cluster.pausing import Pauser, Retry
from scaler.cluster.views import WatchingView
from scaler.decide.loading import PolicyError, PolicySet, check_texts
from scaler.decide.reverts import HandsOff
from scaler.run.acting import Actor
from scaler.run.daemon import Daemon
from scaler.run.evaluating import Evaluator
from scaler.run.observability import Metrics, configure_logging
from scaler.run.settings import Settings
from scaler.run.sources import policy_source
from scaler.run.tracking import Tracker
from scaler.signals.prometheus import Prometheus
from tests.helpers import eventually

#: Intervals of the in-process daemon: a reconcile every 0.3 s, wake checks
#: and reloads every 0.1 s (the cluster tier's FAST, scaled down 7-10-fold).
QUICK = {"evaluation_interval_seconds": 0.3, "wake_check_interval_seconds": 0.1,
         "policy_reload_interval_seconds": 0.1, "prometheus_timeout_seconds": 0.5}


class Log:
    """Every log line of the test (the daemon's, the client's) as JSON, in a
    file: structlog and the stdlib root logger routed as `scaler run` routes
    them, restored at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        root = logging.getLogger()
        self._saved = root.handlers, root.level
        configure_logging(log_format="json", level="info")
        self._stream = open(path, "a", encoding="utf-8")  # closed in close()
        root.handlers[0].setStream(self._stream)

    def lines(self, event: str | None = None, where=lambda line: True) -> list[dict]:
        self._stream.flush()
        found = []
        for text in self.path.read_text(encoding="utf-8").splitlines():
            try:
                line = json.loads(text)
            except ValueError:
                continue
            if (event is None or line.get("event") == event) and where(line):
                found.append(line)
        return found

    def wait(self, event: str, where=lambda line: True, *, timeout_seconds: float = 5) -> list[dict]:
        """The lines of `event` that satisfy `where`, once there is one."""
        return eventually(lambda: self.lines(event, where), timeout_seconds=timeout_seconds,
                          interval_seconds=0.02)

    def close(self) -> None:
        root = logging.getLogger()
        root.handlers, level = self._saved
        root.setLevel(level)
        self._stream.close()


def settings(fake, prometheus_url: str, tmp_path: Path, *, policies: Path | None = None, name: str = "a",
             **overrides) -> Settings:
    values = {"kubeconfig": str(fake.kubeconfig(tmp_path / f"{name}.kubeconfig")), "prometheus_url": prometheus_url,
              "policies": [policies or tmp_path / "policies.yaml"], "identity": name, "port": 0,
              "bind_address": "127.0.0.1", "log_format": "json", **QUICK, **overrides}
    return Settings(**values)


class Running:
    """A daemon's run() in a thread; `stop()` does what SIGTERM does."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.code: list[int] = []
        self.thread = threading.Thread(target=lambda: self.code.append(daemon.run(handle_signals=False)),
                                       daemon=True, name=f"daemon-{daemon.settings.identity}")

    @classmethod
    def start(cls, settings: Settings) -> Running:
        """The daemon `scaler run` would start with these settings, running."""
        kube = settings.kube()
        source = policy_source(settings, kube)
        version = source.version()
        policies, problems = source.check()
        if problems:
            raise PolicyError(problems)
        running = cls(Daemon(settings, policies, source=source, version=version, kube=kube))
        running.thread.start()
        eventually(lambda: running.daemon.server, timeout_seconds=5, interval_seconds=0.01)
        return running

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def metric(self, name: str, **labels: str) -> float | None:
        return self.daemon.metrics.registry.get_sample_value(name, labels)

    def reconciles(self) -> float:
        return self.metric("scaler_reconcile_duration_seconds_count", kind="full") or 0

    def let_reconciles_pass(self, count: int = 2, *, timeout_seconds: float = 5) -> None:
        """For a test that asserts something did NOT happen: wait until the
        daemon has finished `count` more full reconciles, so the absence is its
        decision, not a slow tick."""
        done = self.reconciles()
        eventually(lambda: self.reconciles() >= done + count, timeout_seconds=timeout_seconds, interval_seconds=0.02)

    def readyz(self) -> tuple[int, dict]:
        import urllib.error
        import urllib.request

        url = f"http://127.0.0.1:{self.daemon.server.server_address[1]}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def stop(self, timeout_seconds: float = 8) -> int:
        """SIGTERM's part: stop, wait for the clean exit; its exit code."""
        if not self.code:
            self.daemon.stopping.set()
            self.thread.join(timeout_seconds)
        assert self.code, "the daemon did not stop in time"
        return self.code[0]

    def kill(self) -> None:
        """As SIGKILL leaves things: nothing more goes out (no Events posted,
        no Lease handed back); the thread is left to wind down unheard."""
        self.daemon.events.fence = _killed
        self.daemon.leadership.release = lambda: None
        self.daemon.stopping.set()
        self.thread.join(8)


def _killed() -> None:
    from scaler.cluster.kube import Fenced

    raise Fenced("killed")


def save(path: Path, text: str) -> None:
    """A policy file written whole, as kubelet and editors do: a running
    daemon's reload checks the directory at any moment, and a file caught
    half-written is (rightly) rejected as what it then was."""
    partial = path.with_name(f".{path.name}.partial")  # not .yaml: never read as a policy file
    partial.write_text(text)
    os.replace(partial, path)


def wait_until(check, *, timeout_seconds: float = 5):
    """`eventually` with a short poll, for in-process daemons."""
    return eventually(check, timeout_seconds=timeout_seconds, interval_seconds=0.02)


def policies(text: str) -> PolicySet:
    found, problems = check_texts([("policies.yaml", text)])
    assert not problems, problems
    return found


class Passes:
    """One daemon's memory (its evaluator, actor, tracker, watch cache, Event sink and
    metrics) running the passes `scaler run` runs, at the instant `now` the
    test gives; `leading` says whether its writes may go out (a standby's may
    not). Its writes' timestamps and its fence read the same instant."""

    def __init__(self, fake, prometheus_url: str, policy_set: PolicySet, *, now: datetime, leading: bool = True,
                 hands_off: HandsOff = HandsOff()) -> None:
        self.fake, self.policies, self.leading, self.now = fake, policy_set, leading, now
        kube = fake.client()
        self.view = WatchingView(kube)
        self.sink = EventSink(kube)
        self.metrics = Metrics()
        self.evaluator = Evaluator(prometheus=Prometheus(prometheus_url, timeout_seconds=2), view=self.view,
                                   excluded_namespaces=(), gitops_managers=hands_off.gitops_managers)
        self.actor = Actor(
            evaluator=self.evaluator,
            pauser=Pauser(kube, retry=Retry(attempts=8, base_seconds=0.001, max_seconds=0.01),
                          clock=lambda: self.now, events=self.sink),
            dry_run=False, metrics=self.metrics, hands_off=hands_off,
            may_act=lambda policy, term: self.leading, clock=lambda: self.now)
        self.tracker = Tracker(evaluator=self.evaluator, actor=self.actor, metrics=self.metrics)

    def seen(self, name: str, namespace: str = "llm") -> None:
        """Wait until the watch cache holds the Deployment as the API server
        has it now (the watch's lag, not time passing)."""
        version = self.fake.get("deployments.apps", namespace, name)["metadata"]["resourceVersion"]
        eventually(lambda: any(w.namespace == namespace and w.name == name
                               and w.obj["metadata"]["resourceVersion"] == version
                               for w in self.view.workloads([DEPLOYMENT])) or None,
                   timeout_seconds=5, interval_seconds=0.005)

    def step(self, now: datetime, *, full: bool = True) -> list:
        """A full reconcile (or a wake check) at `now`: decide, write, record starts."""
        self.now = now
        evaluations = self.evaluator.evaluate(self.policies, now=now, wake_only=not full)
        self.tracker.observe(evaluations, self.policies)
        self.actor.act(evaluations, now=now)
        self.tracker.track_starts(self.policies, now=now)
        return evaluations

    def metric(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)

    def stop(self) -> None:
        self.view.stop(timeout_seconds=2)
