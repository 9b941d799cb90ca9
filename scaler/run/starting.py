"""`scaler run`'s start: the policies read and checked before anything else (a
bad set is exit 1 with its `file:line` problems), then the daemon
(run/daemon.py) built and run until it is stopped."""

from __future__ import annotations

import os
import sys

import structlog

from scaler.cluster.kube import KubeError
from scaler.decide.loading import PolicyError
from scaler.run.daemon import Daemon
from scaler.run.observability import configure_logging
from scaler.run.settings import Settings
from scaler.run.sources import PolicySource, policy_source

log = structlog.get_logger("scaler")


def run(settings: Settings) -> int:
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    source: PolicySource | None = None
    try:
        kube = settings.kube() if settings.policy_configmap else None  # files are checked before any kubeconfig
        source = policy_source(settings, kube)
        version = source.version()
        policies, problems = source.check()
        if problems:
            raise PolicyError(problems)
        daemon = Daemon(settings, policies, source=source, version=version, kube=kube)
    except PolicyError as error:
        for problem in error.problems:
            log.error("invalid policy", problem=str(problem))
        print("\n".join(str(p) for p in error.problems), file=sys.stderr)
        return 1
    except KubeError as error:
        log.error("cannot read the policies", source=str(source), error=str(error))
        print(f"error: cannot read the policies from {source}: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 - kubeconfig missing or unreadable (any type): log it, exit 1
        log.error("cannot start", error=f"{type(error).__name__}: {error}")
        return 1
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return daemon.run()
