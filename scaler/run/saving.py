"""Savings as the bill sees them, on the daemon's /metrics: the price a
released node is kept with (taken at its release by the node follower), and
the counters of GPU-hours and money saved, nominal and realized, by policy,
namespace and workload (docs/savings.md).

Counting once: a counter's value is computed at each scrape from the records
on the workload (cluster/savings.py), never added up in memory, so a daemon
killed and started again, or a standby that takes over, exports the same
value the last leader would have, and `increase()` counts nothing twice.
Only the leader exports them; `scaler savings` merges the replicas' series
with `max by` before `increase()`. When a pause ends, the leader keeps
exporting its final value (to the resume's `scaler.io/started-at`) until the
workload is paused again, when the series starts again from zero (a counter
reset, which `increase()` reads as one).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import structlog
from prometheus_client.core import CounterMetricFamily

from scaler.cluster.kinds import WorkloadKind
from scaler.cluster.kube import KubeError
from scaler.cluster.nodes import NodeRecord, NodesRecord
from scaler.cluster.savings import (
    NOMINAL,
    REALIZED,
    GpuHourPrices,
    Saved,
    node_price,
    priced,
    saved,
)
from scaler.cluster.views import ClusterView
from scaler.cluster.workloads import Workload
from scaler.decide.annotations import NODES, STARTED_AT
from scaler.decide.times import parse_time, utc_now
from scaler.signals.prometheus import Prometheus
from scaler.signals.results import QueryError

log = structlog.get_logger("scaler")
GPU_HOURS, MONEY = "scaler_saved_gpu_hours", "scaler_saved_money"
LABELS = ("basis", "policy", "namespace", "workload")
KARPENTER_PRICE = "karpenter_cloudprovider_instance_type_offering_price_estimate"
OPENCOST_PRICE = "node_gpu_hourly_cost"


def _quoted(value: str) -> str:
    return json.dumps(value)  # a PromQL string: double quotes, backslash escapes


class Pricer:
    """Takes a released node's price (cluster/savings.node_price): its label,
    else Karpenter's offering price estimate for its instance type, capacity
    type and zone, else OpenCost's GPU hourly cost for the node (the last
    value within the hour: the node is gone), else the setting. A query that
    fails or finds nothing is skipped: the next source answers."""

    def __init__(self, prometheus: Prometheus | None, prices: GpuHourPrices) -> None:
        self.prometheus = prometheus
        self.prices = prices

    def _first(self, promql: str) -> float | None:
        if self.prometheus is None:
            return None
        try:
            result = self.prometheus.instant(promql)
        except QueryError as error:
            log.info("price not read", query=promql, error=str(error))
            return None
        values = []
        for series in result:
            try:
                values.append(float(series["value"][1]))
            except (KeyError, IndexError, TypeError, ValueError):
                continue
        finite = [v for v in values if v == v and v not in (float("inf"), float("-inf")) and v >= 0]
        return max(finite) if finite else None

    def karpenter(self, node: NodeRecord) -> float | None:
        facts = node.facts
        if facts is None or facts.instance_type is None:
            return None
        matchers = [f"instance_type={_quoted(facts.instance_type)}"]
        matchers += [f"{label}={_quoted(value)}" for label, value in (("capacity_type", facts.capacity_type),
                                                                       ("zone", facts.zone)) if value]
        return self._first(f"max({KARPENTER_PRICE}{{{','.join(matchers)}}})")

    def opencost(self, node: NodeRecord) -> float | None:
        return self._first(f"max(last_over_time({OPENCOST_PRICE}{{node={_quoted(node.name)}}}[1h]))")

    def price(self, node: NodeRecord) -> tuple[float, str] | None:
        facts = node.facts
        if facts is not None and facts.price is not None:
            return node_price(facts, karpenter=None, opencost_per_gpu=None, prices=self.prices)
        return node_price(facts, karpenter=self.karpenter(node), opencost_per_gpu=self.opencost(node),
                          prices=self.prices)

    def on_release(self, sharing: Mapping[str, int]) -> Callable[[NodeRecord], NodeRecord]:
        """What the follower adds to a node it releases in this pass: its
        price, and the GPUs the pause takes credit for (the node's GPUs,
        shared among the paused workloads followed on it by the GPUs each
        freed there). Prices are asked once per node and pass."""
        taken: dict[str, tuple[float, str] | None] = {}

        def add(node: NodeRecord) -> NodeRecord:
            if node.name not in taken:
                taken[node.name] = self.price(node)
            gpus = node.facts.gpus if node.facts is not None and node.facts.gpus else node.freed_gpus
            share = node.freed_gpus / sharing[node.name] if sharing.get(node.name) else 1.0
            return priced(node, price=taken[node.name], credited=gpus * min(share, 1.0))

        return add


def sharing(records: Iterable[NodesRecord]) -> dict[str, int]:
    """Node name -> the GPUs freed there by all the pauses followed on it."""
    found: dict[str, int] = {}
    for record in records:
        for node in record.nodes:
            if not node.done:
                found[node.name] = found.get(node.name, 0) + node.freed_gpus
    return found


def policy_of(paused_by: str | None) -> str:
    """The `policy` label: the policy's name, `manual`, or `unknown`."""
    if paused_by and paused_by.startswith("policy/"):
        return paused_by.removeprefix("policy/")
    return "manual" if paused_by == "manual" else "unknown"


@dataclass(frozen=True)
class Pause:
    """A pause the collector has seen: what its amount is computed from, and the amount."""

    labels: tuple[str, str, str]
    paused_at: datetime | None
    gpus: int
    nodes: NodesRecord | None
    amount: Saved
    open: bool = True


def _never_less(pause: Pause, before: Pause | None) -> Pause:
    """`pause`, its amounts no lower than those exported for the same pause
    before: a counter that went down would be read by `increase()` as a
    reset, and counted again whole. (A scrape that saw the pause still open
    after its resume, or a node's facts first seen later, would lower them.)"""
    if before is None or before.labels != pause.labels or before.paused_at != pause.paused_at:
        return pause
    hours = {basis: max(value, before.amount.gpu_hours.get(basis, 0.0))
             for basis, value in pause.amount.gpu_hours.items()}
    money = {basis: max(pause.amount.money.get(basis, 0.0), before.amount.money.get(basis, 0.0))
             for basis in {*pause.amount.money, *before.amount.money}}
    return replace(pause, amount=Saved(hours, money))


class SavingsCollector:
    """`scaler_saved_gpu_hours_total` and `scaler_saved_money_total`, computed
    at each scrape from the paused workloads in the watch cache; nothing while
    this replica does not lead."""

    def __init__(self, *, view: ClusterView, kinds: Callable[[], Sequence[WorkloadKind]],
                 leading: Callable[[], bool], prices: GpuHourPrices,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.view, self.kinds, self.leading, self.prices, self.clock = view, kinds, leading, prices, clock
        #: Workload key -> its current pause, or its last one (ended) until it is paused again.
        self._pauses: dict[tuple, Pause] = {}
        self._lock = threading.Lock()

    def amounts(self, *, now: datetime) -> dict[tuple[str, str, str], Saved]:
        """(policy, namespace, workload) -> what its current or last pause saved."""
        with self._lock:
            try:
                current = {workload.key: workload for workload in self.view.workloads(self.kinds())}
            except KubeError:  # a cache not listed (yet, or again): the amounts as last computed
                return {pause.labels: pause.amount for pause in self._pauses.values()}
            opened = set()
            for key, workload in current.items():
                pause = self._open(workload, now=now)
                if pause is not None:
                    self._pauses[key] = _never_less(pause, self._pauses.get(key))
                    opened.add(key)
            for key, pause in list(self._pauses.items()):
                if pause.open and key not in opened:
                    self._pauses[key] = _never_less(self._closed(pause, current.get(key), now=now), pause)
            return {pause.labels: pause.amount for pause in self._pauses.values()}

    def _open(self, workload: Workload, *, now: datetime) -> Pause | None:
        record = workload.record
        if record is None or workload.replicas != 0 or record.paused_at is None:
            return None
        paused_at = parse_time(record.paused_at)
        nodes = NodesRecord.read(workload.annotations, NODES)
        gpus = workload.gpus(record.last_replicas or 0)
        amount = saved(paused_at=paused_at, gpus=gpus, nodes=nodes, end=now, prices=self.prices)
        return Pause((policy_of(record.paused_by), workload.namespace, workload.name), paused_at, gpus, nodes, amount)

    def _closed(self, pause: Pause, current: Workload | None, *, now: datetime) -> Pause:
        """A pause seen open that is not any more: its amount at the resume
        (`scaler.io/started-at`, when the object is still there and it is
        after the pause), else as last computed."""
        resumed = parse_time(current.annotations.get(STARTED_AT) or "") if current is not None else None
        if resumed is None or pause.paused_at is None or not pause.paused_at <= resumed <= now:
            return replace(pause, open=False)
        amount = saved(paused_at=pause.paused_at, gpus=pause.gpus, nodes=pause.nodes, end=resumed,
                       prices=self.prices)
        return replace(pause, amount=amount, open=False)

    def collect(self):
        hours = CounterMetricFamily(GPU_HOURS, "GPU-hours saved by pauses, nominal (recorded size x GPUs per "
                                    "replica x time at zero) and realized (GPUs of the nodes released because of "
                                    "the pause x time since): docs/savings.md.", labels=LABELS)
        money = CounterMetricFamily(MONEY, "Money saved by pauses, in the unit of the prices, nominal and realized, "
                                    "where a price is known: docs/savings.md.", labels=LABELS)
        if self.leading():
            for (policy, namespace, workload), amount in sorted(self.amounts(now=self.clock()).items()):
                for basis in (NOMINAL, REALIZED):
                    hours.add_metric([basis, policy, namespace, workload], amount.gpu_hours[basis])
                    if basis in amount.money:
                        money.add_metric([basis, policy, namespace, workload], amount.money[basis])
        yield hours
        yield money
