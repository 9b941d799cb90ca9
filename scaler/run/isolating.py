"""Failure isolation: a policy that fails at run time is reported and
skipped, and every other policy keeps acting.

Load-time validation refuses everything known to trip the daemon; this is
the net under it (a CRD without /scale, a kind that cannot be read, a bug).
A failing policy shows up in the log (once, when it starts or stops
failing, naming policy and file), in `scaler_policy_failing{policy}`, in
/readyz, and as a row of `scaler plan`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import structlog

from scaler.decide.policies import Policy

log = structlog.get_logger("scaler")
T = TypeVar("T")


def isolated(errors: dict[str, str], policy: Policy, work: Callable[[], T]) -> T | None:
    """`work()`, or None with the failure recorded against `policy`."""
    try:
        return work()
    except Exception as error:  # noqa: BLE001 - any failure of one policy must not stop the others
        errors.setdefault(policy.name, f"{type(error).__name__}: {error}")
        return None


def report_failures(errors: dict[str, str], *, previous: dict[str, str], checked: Iterable[Policy],
                    policies: Iterable[Policy], metrics=None) -> dict[str, str]:
    """The failures now in force: `errors` for the policies just `checked`,
    `previous` for the rest. Logs changes; sets the gauge."""
    checked_names = {policy.name for policy in checked}
    current = {name: error for name, error in previous.items() if name not in checked_names} | errors
    sources = getattr(policies, "sources", {})
    for name, error in errors.items():
        if previous.get(name) != error:
            log.error("policy failed at run time; skipped, the other policies go on", policy=name,
                      source=sources.get(name), error=error)
    for name in previous.keys() - current.keys():
        log.info("policy works again", policy=name, source=sources.get(name))
    if metrics is not None:
        for policy in policies:
            metrics.policy_failing.labels(policy.name).set(1 if policy.name in current else 0)
    return current
