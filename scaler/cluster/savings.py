"""What a pause saved, as a function of the records on the workload and the
clock: GPU-hours **nominal** (the recorded size x GPUs per replica x time
at zero) and **realized** (the GPUs of the nodes released because of the
pause x time since each went), and their money where a price is known.

The amounts are values, not increments: any replica of the daemon, any
restart, computes the same amount from the same object at the same instant,
so the counters built on them (run/saving.py) never count a second time
what a killed leader counted (docs/savings.md, "Counting once").

A node's price and the GPUs a pause takes credit for are taken when the node
is released and kept in its entry of `scaler.io/nodes` (`pricePerHour`,
`priceSource`, `creditedGpus`): a later change of price does not rewrite
what was saved.

Pure: computes values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from scaler.cluster.nodes import RELEASED, NodeFacts, NodeRecord, NodesRecord
from scaler.decide.times import parse_time

#: Where a released node's price came from, in the order they are tried.
LABEL, KARPENTER, OPENCOST, SETTING = "label", "karpenter", "opencost", "setting"
SOURCES = (LABEL, KARPENTER, OPENCOST, SETTING)
#: The node labels a price setting may be keyed by: those the record keeps.
PRICE_KEYS = {
    "node.kubernetes.io/instance-type": "instance_type",
    "topology.kubernetes.io/zone": "zone",
    "karpenter.sh/capacity-type": "capacity_type",
    "karpenter.sh/nodepool": "node_pool",
}
NOMINAL, REALIZED = "nominal", "realized"


class PriceError(ValueError):
    """A price setting that cannot be read."""


@dataclass(frozen=True)
class GpuHourPrices:
    """Prices per GPU-hour set by the user: one for every node (`default`),
    and per value of one of PRICE_KEYS (the first key that names the node's
    value wins, in the order given)."""

    default: float | None = None
    by_label: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    @classmethod
    def parse(cls, default: float | None, text: str | None) -> GpuHourPrices:
        """From `--gpu-hour-price` and `--gpu-hour-prices` (JSON: `{"LABEL": {"VALUE": PRICE}}`)."""
        if default is not None and not (math.isfinite(default) and default >= 0):
            raise PriceError(f"a price must be a finite number >= 0, not {default!r}")
        if not text:
            return cls(default)
        try:
            data = json.loads(text)
        except ValueError as error:
            raise PriceError(f"not JSON: {error}") from None
        if not isinstance(data, dict):
            raise PriceError('must be a JSON object: {"LABEL": {"VALUE": PRICE}}')
        by_label: dict[str, dict[str, float]] = {}
        for label, values in data.items():
            if label not in PRICE_KEYS:
                raise PriceError(f"{label!r}: prices may be keyed by {', '.join(PRICE_KEYS)} only")
            if not isinstance(values, dict) or not all(
                    isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
                    for v in values.values()):
                raise PriceError(f"{label!r}: must map label values to finite prices >= 0")
            by_label[label] = {str(k): float(v) for k, v in values.items()}
        return cls(default, by_label)

    def per_gpu_hour(self, facts: NodeFacts | None) -> float | None:
        for label, values in self.by_label.items():
            value = getattr(facts, PRICE_KEYS[label]) if facts is not None else None
            if value is not None and value in values:
                return values[value]
        return self.default


def credited_gpus(node: NodeRecord) -> float:
    """The GPUs of a released node this pause takes credit for: its share
    (by the GPUs each paused workload freed there) of the node's GPUs, as
    taken at the release; before that, the node's GPUs, else the freed ones."""
    credited = node.extra.get("creditedGpus")
    if isinstance(credited, int | float) and not isinstance(credited, bool) and math.isfinite(credited):
        return max(float(credited), 0.0)
    return float(node.facts.gpus if node.facts is not None and node.facts.gpus else node.freed_gpus)


def price_per_hour(node: NodeRecord) -> float | None:
    """The node's hourly price as taken at its release (None: none known)."""
    price = node.extra.get("pricePerHour")
    if isinstance(price, int | float) and not isinstance(price, bool) and math.isfinite(price) and price >= 0:
        return float(price)
    return None


def priced(node: NodeRecord, *, price: tuple[float, str] | None, credited: float) -> NodeRecord:
    """`node` as released, with what the record keeps from then on."""
    extra = {**node.extra, "creditedGpus": round(credited, 3)}
    if price is not None:
        extra.update(pricePerHour=round(price[0], 6), priceSource=price[1])
    return replace(node, extra=extra)


def node_price(facts: NodeFacts | None, *, karpenter: float | None, opencost_per_gpu: float | None,
               prices: GpuHourPrices) -> tuple[float, str] | None:
    """A released node's hourly price and its source, the first known of:
    its price label, Karpenter's offering price estimate, OpenCost's GPU
    hourly cost x its GPUs, the price setting x its GPUs."""
    gpus = facts.gpus if facts is not None else 0
    setting = prices.per_gpu_hour(facts)
    for price, source in ((facts.price if facts else None, LABEL), (karpenter, KARPENTER),
                          (opencost_per_gpu * gpus if opencost_per_gpu is not None and gpus else None, OPENCOST),
                          (setting * gpus if setting is not None and gpus else None, SETTING)):
        if price is not None and math.isfinite(price) and price >= 0:
            return price, source
    return None


@dataclass(frozen=True)
class Saved:
    """What one pause saved up to an instant."""

    gpu_hours: Mapping[str, float]
    #: By basis; a basis without any known price is absent.
    money: Mapping[str, float]


def _hours(start: datetime | None, end: datetime) -> float:
    return max((end - start).total_seconds(), 0.0) / 3600 if start is not None else 0.0


def saved(*, paused_at: datetime | None, gpus: int, nodes: NodesRecord | None, end: datetime,
          prices: GpuHourPrices) -> Saved:
    """What a pause that began at `paused_at`, of a workload that held `gpus`
    GPUs at its recorded size, saved until `end` (now, or the resume)."""
    nominal_hours = gpus * _hours(paused_at, end)
    realized_hours = 0.0
    realized_money: float | None = None
    per_gpu: list[tuple[int, float]] = []  # (GPUs, price per GPU-hour) of the recorded nodes with a price
    for node in nodes.nodes if nodes is not None else ():
        facts = node.facts
        label = facts.price / facts.gpus if facts is not None and facts.price is not None and facts.gpus else None
        known = label if label is not None else prices.per_gpu_hour(facts)
        if known is not None:
            per_gpu.append((node.freed_gpus, known))
        if node.state != RELEASED:
            continue
        hours = _hours(parse_time(node.released_at), end)
        credited = credited_gpus(node)
        realized_hours += credited * hours
        price = price_per_hour(node)
        if price is not None and facts is not None and facts.gpus:
            realized_money = (realized_money or 0.0) + price * min(credited / facts.gpus, 1.0) * hours
    money = {} if realized_money is None else {REALIZED: realized_money}
    nominal_price = _nominal_price(per_gpu, gpus, prices.default)
    if nominal_price is not None:
        money[NOMINAL] = nominal_hours * nominal_price
    return Saved({NOMINAL: nominal_hours, REALIZED: realized_hours}, money)


def _nominal_price(per_gpu: list[tuple[int, float]], gpus: int, default: float | None) -> float | None:
    """The price per GPU-hour of the recorded size: the recorded nodes'
    (their price label per GPU, else the setting for them), weighted by the
    GPUs freed on each; the GPUs on no priced node at the default setting."""
    priced_gpus = sum(n for n, _ in per_gpu)
    if not priced_gpus and default is None:
        return None
    rest = max(gpus - priced_gpus, 0)
    if rest and default is None:
        return sum(n * p for n, p in per_gpu) / priced_gpus
    total = sum(n * p for n, p in per_gpu) + rest * (default or 0.0)
    return total / max(priced_gpus + rest, 1)
