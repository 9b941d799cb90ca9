"""`scaler savings`: what the pauses saved over a past period, in GPU-hours
and money, nominal and realized, by workload, namespace or policy, read from
Prometheus's history of the daemon's own counters (docs/savings.md).

One instant query per counter, at `--to`: the replicas' series merged with
`max by` (every leader exports the same value for a pause: run/saving.py),
then `increase()` over the period as a subquery, summed by the grouping.

Exit codes: 0 answered (an empty period too); 4 Prometheus could not answer
(unreachable, an error, a timeout): nothing is known; 2 usage (an
unreadable time, a period that is not one); 1 a setting.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import datetime

from scaler.cli.instants import InstantError, instant
from scaler.cli.output import console, print_document, table
from scaler.cluster.savings import NOMINAL, REALIZED
from scaler.decide.times import human_duration, rfc3339, utc_now
from scaler.run.observability import configure_logging
from scaler.run.saving import GPU_HOURS, MONEY
from scaler.run.settings import PrometheusSettings, add_settings_arguments
from scaler.signals.results import QueryError

EXIT_OK, EXIT_USAGE, EXIT_UNKNOWN = 0, 2, 4
GROUPS = {"workload": ("policy", "namespace", "workload"), "namespace": ("namespace",), "policy": ("policy",)}
#: Subquery points per series at most: a month at about four minutes.
MAX_POINTS = 11_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, PrometheusSettings)
    parser.add_argument("--from", dest="start", required=True,
                        help="start of the period: RFC 3339 with a zone, or now-30d (also --from=-30d)")
    parser.add_argument("--to", dest="end", default="now", help="end of the period (default now)")
    parser.add_argument("--by", choices=tuple(GROUPS), default="workload", help="one row per (default workload)")
    parser.add_argument("-n", "--namespace", help="only this namespace")
    parser.add_argument("--policy", help="only pauses by this policy (`manual`: by hand)")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")


def step_seconds(period_seconds: float) -> int:
    """The subquery's resolution: a second, coarser for periods over about three hours."""
    return max(1, math.ceil(period_seconds / MAX_POINTS))


def query(metric: str, *, by: tuple[str, ...], period_seconds: int, step: int, namespace: str | None,
          policy: str | None) -> str:
    """The increase over the period of each pause's counter, summed `by`.
    A scrape that sets its own `namespace` (a ServiceMonitor, Kubernetes
    service discovery) keeps the workload's as `exported_namespace`: that one
    is the workload's when it is there."""
    own = f",policy={json.dumps(policy)}" if policy else ""
    if namespace:
        quoted = json.dumps(namespace)
        series = (f"{metric}_total{{exported_namespace={quoted}{own}}} or "
                  f'{metric}_total{{namespace={quoted},exported_namespace=""{own}}}')
    else:
        series = f"{metric}_total{{{own.lstrip(',')}}}"
    workloads = f'label_replace({series}, "namespace", "$1", "exported_namespace", "(.+)")'
    merged = f"max by (basis, policy, namespace, workload) ({workloads})"
    return f"sum by (basis, {', '.join(by)}) (increase(({merged})[{period_seconds}s:{step}s]))"


def _period(args: argparse.Namespace, now: datetime) -> tuple[datetime, datetime]:
    start = instant(args.start, now=now, flag="--from").replace(microsecond=0)
    end = instant(args.end, now=now, flag="--to").replace(microsecond=0)
    if end <= start:
        raise InstantError(f"--to {rfc3339(end)} is not after --from {rfc3339(start)}")
    if end > now:
        raise InstantError(f"--to {rfc3339(end)} is in the future: history ends now ({rfc3339(now)})")
    return start, end


def _read(result: list, by: tuple[str, ...], rows: dict, field: str) -> None:
    for series in result:
        labels = series.get("metric") or {}
        try:
            value = float(series["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if not math.isfinite(value) or labels.get("basis") not in (NOMINAL, REALIZED):
            continue
        key = tuple(labels.get(label, "") for label in by)
        row = rows.setdefault(key, {label: labels.get(label, "") for label in by})
        row.setdefault(field, {})[labels["basis"]] = value


def _finish(row: dict) -> dict:
    hours = row.get("gpuHours") or {}
    nominal, realized = hours.get(NOMINAL, 0.0), hours.get(REALIZED, 0.0)
    money = row.get("money")
    return {**{k: v for k, v in row.items() if k not in ("gpuHours", "money")},
            "gpuHours": {NOMINAL: round(nominal, 6), REALIZED: round(realized, 6),
                         "onlyNominal": round(max(nominal - realized, 0.0), 6)},
            "money": None if not money else {basis: round(money[basis], 6) for basis in sorted(money)}}


def savings(prometheus, *, start: datetime, end: datetime, by: tuple[str, ...], namespace: str | None,
            policy: str | None) -> dict:
    """The document `-o json` prints; raises QueryError."""
    period = int((end - start).total_seconds())
    step = step_seconds(period)
    rows: dict = {}
    for metric, field in ((GPU_HOURS, "gpuHours"), (MONEY, "money")):
        promql = query(metric, by=by, period_seconds=period, step=step, namespace=namespace, policy=policy)
        _read(prometheus.instant(promql, at=end), by, rows, field)
    finished = [_finish(rows[key]) for key in sorted(rows)]
    total: dict = {"gpuHours": {}, "money": None}
    for name in (NOMINAL, REALIZED, "onlyNominal"):
        total["gpuHours"][name] = round(sum(row["gpuHours"][name] for row in finished), 6)
    priced = [row["money"] for row in finished if row["money"]]
    if priced:
        total["money"] = {basis: round(sum(m.get(basis, 0.0) for m in priced), 6)
                          for basis in sorted({b for m in priced for b in m})}
    return {"from": rfc3339(start), "to": rfc3339(end), "by": by[-1], "rows": finished, "total": total}


def _money(money: dict | None, basis: str) -> str:
    return f"{money[basis]:.2f}" if money and basis in money else "-"


def _print_table(document: dict, by: tuple[str, ...]) -> None:
    columns = [label.upper() for label in by] + ["GPU-H NOMINAL", "GPU-H REALIZED", "ONLY NOMINAL",
                                                 "MONEY NOMINAL", "MONEY REALIZED"]
    rows = []
    for row in [*document["rows"], {**{label: "" for label in by}, by[0]: "TOTAL", **document["total"]}]:
        hours, money = row["gpuHours"], row["money"]
        rows.append([row[label] for label in by] + [f"{hours[NOMINAL]:.2f}", f"{hours[REALIZED]:.2f}",
                                                     f"{hours['onlyNominal']:.2f}", _money(money, NOMINAL),
                                                     _money(money, REALIZED)])
    console().print(table(columns, rows))


def run_savings(settings: PrometheusSettings, *, options: argparse.Namespace) -> int:
    configure_logging(log_format="auto", level="error")  # the one error line, not the HTTP library's retries
    now = utc_now()
    try:
        start, end = _period(options, now)
    except InstantError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    by = GROUPS[options.by]
    try:
        document = savings(settings.prometheus(), start=start, end=end, by=by, namespace=options.namespace,
                           policy=options.policy)
    except QueryError as error:
        print(f"error: savings unknown: {error}", file=sys.stderr)
        return EXIT_UNKNOWN
    if options.output == "json":
        print_document(document, "json")
    elif not document["rows"]:
        print(f"no savings recorded from {document['from']} to {document['to']} "
              f"({human_duration((end - start).total_seconds())})")
    else:
        _print_table(document, by)
    return EXIT_OK
