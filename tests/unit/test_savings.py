"""Savings as the bill sees them (docs/savings.md): the price a released
node keeps, the counters on /metrics (nominal and realized GPU-hours and
money) and the rule that they never count twice across restarts and
failovers, and `scaler savings` reading them back from Prometheus."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from scaler.cli.main import main
from scaler.cluster.kinds import DEPLOYMENT
from scaler.cluster.nodes import NodeFacts, NodeRecord, NodesRecord
from scaler.cluster.savings import GpuHourPrices, PriceError, node_price, saved
from scaler.cluster.workloads import Workload
from scaler.decide.annotations import LAST_REPLICAS, NODES, PAUSED_AT, PAUSED_BY, STARTED_AT
from scaler.decide.times import rfc3339
from scaler.run.saving import Pricer, SavingsCollector
from scaler.signals.prometheus import Prometheus
from tests.fakes.prometheus import FakePrometheus, Query
from tests.unit.test_following import World

T0 = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)
FACTS8 = NodeFacts(8, "gpu-8x", "local-a", "on-demand", "gpu", 29.6)


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


def deployment(name: str, *, replicas: int = 0, recorded: int = 2, gpus: int = 4, paused_at: datetime | None = T0,
               by: str = "policy/nights", nodes: NodesRecord | None = None, started_at: datetime | None = None,
               namespace: str = "ml") -> Workload:
    annotations = {}
    if paused_at is not None:
        annotations |= {LAST_REPLICAS: str(recorded), PAUSED_AT: rfc3339(paused_at), PAUSED_BY: by}
    if nodes is not None:
        annotations[NODES] = nodes.annotation()
    if started_at is not None:
        annotations[STARTED_AT] = rfc3339(started_at)
    template = {"spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]}}
    return Workload(DEPLOYMENT, {"metadata": {"name": name, "namespace": namespace, "annotations": annotations},
                                 "spec": {"replicas": replicas, "template": template}})


def released(name: str = "gpu-a1", *, at: datetime, freed: int = 8, facts: NodeFacts | None = FACTS8,
             **extra) -> NodeRecord:
    return NodeRecord(name, freed, facts, "released", True, released_at=rfc3339(at), extra=extra)


class View:
    """What the collector reads: the workloads in the watch cache now."""

    def __init__(self, *workloads: Workload) -> None:
        self.now = list(workloads)

    def workloads(self, kinds):
        return self.now


NO_PRICES = GpuHourPrices()


def collector(view: View, *, clock, leading=lambda: True, prices=NO_PRICES) -> SavingsCollector:
    return SavingsCollector(view=view, kinds=lambda: [DEPLOYMENT], leading=leading, prices=prices, clock=clock)


def scrape(collecting: SavingsCollector) -> dict[tuple[str, ...], float]:
    registry = CollectorRegistry()
    registry.register(collecting)
    found = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                found[(sample.name, sample.labels["basis"], sample.labels["policy"], sample.labels["namespace"],
                       sample.labels["workload"])] = sample.value
    return found


# Prices

def test_a_node_is_priced_by_its_label_then_karpenter_then_opencost_then_the_setting():
    prices = GpuHourPrices.parse(2.0, '{"node.kubernetes.io/instance-type": {"gpu-8x": 3.5}}')
    unlabelled = NodeFacts(8, "gpu-8x", "local-a", "on-demand", "gpu")
    assert node_price(FACTS8, karpenter=31.0, opencost_per_gpu=4.0, prices=prices) == (29.6, "label")
    assert node_price(unlabelled, karpenter=31.0, opencost_per_gpu=4.0, prices=prices) == (31.0, "karpenter")
    assert node_price(unlabelled, karpenter=None, opencost_per_gpu=4.0, prices=prices) == (32.0, "opencost")
    assert node_price(unlabelled, karpenter=None, opencost_per_gpu=None, prices=prices) == (28.0, "setting")
    other = NodeFacts(4, "gpu-4x", None, None, None)
    assert node_price(other, karpenter=None, opencost_per_gpu=None, prices=prices) == (8.0, "setting")
    assert node_price(other, karpenter=None, opencost_per_gpu=None, prices=GpuHourPrices()) is None


@pytest.mark.parametrize("text, message", [
    ("[1]", "must be a JSON object"),
    ('{"kubernetes.io/hostname": {"a": 1}}', "prices may be keyed by"),
    ('{"karpenter.sh/capacity-type": {"spot": -1}}', "finite prices >= 0"),
    ("{nope", "not JSON"),
], ids=["not-object", "unknown-label", "negative", "not-json"])
def test_a_price_setting_that_cannot_be_read_is_refused_by_flag_and_variable(text, message, capsys):
    with pytest.raises(PriceError, match=message):
        GpuHourPrices.parse(None, text)
    assert main(["run", "--gpu-hour-prices", text, "--policies", "/nonexistent"]) == 1
    err = capsys.readouterr().err
    assert "--gpu-hour-prices / SCALER_GPU_HOUR_PRICES" in err and message in err


# What a pause saved

def test_nominal_counts_the_recorded_size_and_realized_only_the_released_nodes_since_they_went():
    nodes = NodesRecord(rfc3339(T0), (released(at=T0 + hours(0.5), pricePerHour=29.6, creditedGpus=8),
                                      NodeRecord("gpu-b2", 4, NodeFacts(8, "gpu-8x", None, None, None))))
    amount = saved(paused_at=T0, gpus=12, nodes=nodes, end=T0 + hours(2), prices=GpuHourPrices())
    assert amount.gpu_hours == {"nominal": 24.0, "realized": 12.0}  # 12 GPUs x 2 h; 8 GPUs x 1.5 h
    assert amount.money["realized"] == pytest.approx(29.6 * 1.5)
    # nominal money: 8 GPUs at the node's label price per GPU; the other 4 at no known price: left out
    assert amount.money["nominal"] == pytest.approx(24.0 * 29.6 / 8)
    plain = saved(paused_at=T0, gpus=12, nodes=None, end=T0 + hours(2), prices=GpuHourPrices())
    assert plain.gpu_hours == {"nominal": 24.0, "realized": 0.0} and plain.money == {}


@pytest.fixture
def world(fake):
    """Paused workloads on the fake API server, followed (tests/unit/test_following.py)."""
    made: list[World] = []

    def make(**kwargs) -> World:
        made.append(World(fake, **kwargs))
        return made[-1]
    yield make
    for w in made:
        w.stop()


def test_a_released_node_keeps_its_price_and_the_gpus_each_pause_that_shared_it_is_credited(world):
    """On the fake API server, through the follower: two workloads paused on
    one 8-GPU node without a price label; Karpenter's offering price is in
    Prometheus; the node goes."""
    server = FakePrometheus(instant=lambda query: [{"metric": {}, "value": [0, "31.5"]}]
                            if "offering_price_estimate" in query.promql else []).serve()
    try:
        w = world()
        w.follower.pricer = Pricer(Prometheus(server.url), GpuHourPrices())
        w.node("gpu-a1")
        w.node("gpu-b1", labels={"eks-node-viewer/instance-price": "29.6"})
        w.deployment("big", node="gpu-a1", gpus=6)
        w.deployment("small", node="gpu-a1", gpus=2)
        w.deployment("third", node="gpu-b1", gpus=8)
        for name in ("big", "small", "third"):
            w.pause(name)
        w.gone("big-5d8f9-0", "small-5d8f9-0", node="gpu-a1")
        w.follow(40)
        kept = [w.record(name)["nodes"][0] for name in ("big", "small")]
        assert [(n["state"], n["creditedGpus"], n["pricePerHour"], n["priceSource"]) for n in kept] == [
            ("released", 6.0, 31.5, "karpenter"), ("released", 2.0, 31.5, "karpenter")]
        [asked] = [q.promql for q in server.requests if "offering_price_estimate" in q.promql]
        assert asked == ('max(karpenter_cloudprovider_instance_type_offering_price_estimate{instance_type="gpu-8x",'
                         'capacity_type="on-demand",zone="local-a"})')  # once for the node, not once per pause
        # the label, when there is one, wins without a query
        w.gone("third-5d8f9-0", node="gpu-b1")
        asked = len(server.requests)
        w.follow(80)
        [node] = w.record("third")["nodes"]
        assert (node["instancePrice"], node["pricePerHour"], node["priceSource"], node["creditedGpus"]) == (
            29.6, 29.6, "label", 8.0)
        assert len(server.requests) == asked
    finally:
        server.stop()


# The counters, and counting once

def test_the_leader_exports_what_each_pause_saved_and_a_standby_nothing():
    nodes = NodesRecord(rfc3339(T0), (released(at=T0 + hours(1), pricePerHour=29.6, creditedGpus=8),))
    view = View(deployment("llm", nodes=nodes), deployment("chat", by="manual", recorded=1, gpus=1),
                deployment("up", replicas=2, paused_at=None))
    found = scrape(collector(view, clock=lambda: T0 + hours(3)))
    assert found == {
        ("scaler_saved_gpu_hours_total", "nominal", "nights", "ml", "llm"): 24.0,
        ("scaler_saved_gpu_hours_total", "realized", "nights", "ml", "llm"): 16.0,
        ("scaler_saved_money_total", "nominal", "nights", "ml", "llm"): pytest.approx(24 * 29.6 / 8),
        ("scaler_saved_money_total", "realized", "nights", "ml", "llm"): pytest.approx(2 * 29.6),
        ("scaler_saved_gpu_hours_total", "nominal", "manual", "ml", "chat"): 3.0,
        ("scaler_saved_gpu_hours_total", "realized", "manual", "ml", "chat"): 0.0,
    }
    assert scrape(collector(view, clock=lambda: T0 + hours(3), leading=lambda: False)) == {}


def test_an_ended_pause_keeps_its_amount_at_the_resume_until_the_next_pause_starts_from_zero():
    view = View(deployment("llm"))
    now = [T0 + hours(1)]
    counting = collector(view, clock=lambda: now[0])
    key = ("scaler_saved_gpu_hours_total", "nominal", "nights", "ml", "llm")
    assert scrape(counting)[key] == 8.0
    view.now = [deployment("llm", replicas=2, paused_at=None, started_at=T0 + hours(1.5))]
    now[0] = T0 + hours(2)
    assert scrape(counting)[key] == 12.0  # to the resume, not to now
    now[0] = T0 + hours(5)
    assert scrape(counting)[key] == 12.0
    view.now = [deployment("llm", paused_at=T0 + hours(4))]
    assert scrape(counting)[key] == 8.0  # a new pause: a counter reset, which increase() reads as one
    # a process started after the resume never saw that pause: it exports nothing for it, never again
    view.now = [deployment("llm", replicas=2, paused_at=None, started_at=T0 + hours(1.5))]
    assert scrape(collector(view, clock=lambda: T0 + hours(2))) == {}


def test_a_scrape_that_saw_the_pause_after_its_resume_never_lowers_the_counter():
    """The watch cache lags a resume by a moment: a scrape then still sees
    the pause open, up to now. The resume's own amount is lower; a counter
    going down would be read by increase() as a reset and counted again."""
    view = View(deployment("llm"))
    now = [T0 + hours(2)]
    counting = collector(view, clock=lambda: now[0])
    key = ("scaler_saved_gpu_hours_total", "nominal", "nights", "ml", "llm")
    assert scrape(counting)[key] == 16.0  # resumed at 1.5 h, but the cache does not know yet
    view.now = [deployment("llm", replicas=2, paused_at=None, started_at=T0 + hours(1.5))]
    now[0] = T0 + hours(2.1)
    assert scrape(counting)[key] == 16.0


def increase(samples: list[float]) -> float:
    """Prometheus's increase() between the first and last sample, without
    extrapolation: every rise, and after a drop (a reset) the new value."""
    total = 0.0
    for before, after in pairwise(samples):
        total += after - before if after >= before else after
    return total


@settings(max_examples=60, deadline=None)
@given(scrapes=st.lists(st.tuples(st.integers(1, 900), st.sampled_from(["scrape", "restart", "no-leader"])),
                        min_size=2, max_size=40),
       release_after=st.integers(0, 20_000))
def test_restarts_and_failovers_never_count_twice_nor_lose_what_is_on_the_object(scrapes, release_after):
    """Whatever the kills and failovers between scrapes, the merged series'
    increase is exactly what the record says was saved between its first
    and last sample."""
    release = T0 + timedelta(seconds=release_after)
    nodes = NodesRecord(rfc3339(T0), (released(at=release, creditedGpus=8),))
    view = View(deployment("llm", nodes=nodes))
    now = [T0 + timedelta(seconds=1)]
    counting = collector(view, clock=lambda: now[0])
    samples: dict[str, list[float]] = {"nominal": [], "realized": []}
    times = []
    for seconds, what in scrapes:
        now[0] += timedelta(seconds=seconds)
        if what == "restart":  # kill -9 or a failover: a new process, nothing in memory
            counting = collector(view, clock=lambda: now[0])
        elif what == "no-leader":
            continue
        found = scrape(counting)
        times.append(now[0])
        for basis in samples:
            samples[basis].append(found[("scaler_saved_gpu_hours_total", basis, "nights", "ml", "llm")])
    if len(times) < 2:
        return
    first, last = times[0], times[-1]
    assert increase(samples["nominal"]) == pytest.approx(8 * (last - first).total_seconds() / 3600)
    realized = 8 * max((last - max(first, release)).total_seconds(), 0) / 3600
    assert increase(samples["realized"]) == pytest.approx(realized, abs=1e-9)


# scaler savings

def answering(values: dict[str, list[tuple[dict, float]]]) -> FakePrometheus:
    def instant(query: Query) -> list:
        metric = "scaler_saved_money_total" if "scaler_saved_money_total" in query.promql else \
            "scaler_saved_gpu_hours_total"
        return [{"metric": labels, "value": [0, str(value)]} for labels, value in values.get(metric, [])]
    return FakePrometheus(instant=instant).serve()


def labels(basis: str, workload: str, *, policy: str = "nights", namespace: str = "ml") -> dict:
    return {"basis": basis, "policy": policy, "namespace": namespace, "workload": workload}


def test_savings_answers_gpu_hours_and_money_nominal_realized_and_only_nominal(capsys):
    server = answering({
        "scaler_saved_gpu_hours_total": [(labels("nominal", "llm"), 96.0), (labels("realized", "llm"), 80.0),
                                         (labels("nominal", "chat", policy="manual"), 10.0)],
        "scaler_saved_money_total": [(labels("nominal", "llm"), 355.2), (labels("realized", "llm"), 296.0)]})
    try:
        argv = ["savings", "--prometheus-url", server.url, "--from", "2026-11-01T00:00:00Z",
                "--to", "2026-12-01T00:00:00Z"]
        assert main([*argv, "-o", "json"]) == 0
        document = json.loads(capsys.readouterr().out)
        assert document["from"] == "2026-11-01T00:00:00Z" and document["to"] == "2026-12-01T00:00:00Z"
        assert document["rows"] == [
            {"policy": "manual", "namespace": "ml", "workload": "chat",
             "gpuHours": {"nominal": 10.0, "realized": 0.0, "onlyNominal": 10.0}, "money": None},
            {"policy": "nights", "namespace": "ml", "workload": "llm",
             "gpuHours": {"nominal": 96.0, "realized": 80.0, "onlyNominal": 16.0},
             "money": {"nominal": 355.2, "realized": 296.0}}]
        assert document["total"] == {"gpuHours": {"nominal": 106.0, "realized": 80.0, "onlyNominal": 26.0},
                                     "money": {"nominal": 355.2, "realized": 296.0}}
        [hours_query, _] = [q for q in server.requests if q.path == "/api/v1/query"]
        assert hours_query.form["time"] == str(datetime(2026, 12, 1, tzinfo=UTC).timestamp()) + "00"
        # The whole period, at a step that keeps it under MAX_POINTS; what the
        # query answers is checked by Prometheus' engine (tests/tools/test_savings_query.py).
        assert hours_query.promql.startswith("sum by (basis, policy, namespace, workload) (increase(")
        assert hours_query.promql.endswith(")[2592000s:236s]))")
        assert main(argv) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split() == ["POLICY", "NAMESPACE", "WORKLOAD", "GPU-H", "NOMINAL", "GPU-H", "REALIZED",
                                    "ONLY", "NOMINAL", "MONEY", "NOMINAL", "MONEY", "REALIZED"]
        assert lines[2].split() == ["nights", "ml", "llm", "96.00", "80.00", "16.00", "355.20", "296.00"]
        assert lines[3].split() == ["TOTAL", "106.00", "80.00", "26.00", "355.20", "296.00"]
    finally:
        server.stop()


def test_savings_by_namespace_filters_in_the_query(capsys):
    server = answering({"scaler_saved_gpu_hours_total": [({"basis": "nominal", "namespace": "ml"}, 5.0)]})
    try:
        assert main(["savings", "--prometheus-url", server.url, "--from", "now-1d", "--by", "namespace",
                     "-n", "ml", "--policy", "nights"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[1].split() == ["ml", "5.00", "0.00", "5.00", "-", "-"]
        promql = server.requests[0].promql
        assert 'scaler_saved_gpu_hours_total{exported_namespace="ml",policy="nights"}' in promql
        assert 'scaler_saved_gpu_hours_total{namespace="ml",exported_namespace="",policy="nights"}' in promql
        assert server.requests[0].promql.startswith("sum by (basis, namespace) (")
    finally:
        server.stop()


def test_savings_says_so_when_nothing_was_recorded(capsys):
    server = answering({})
    try:
        assert main(["savings", "--prometheus-url", server.url, "--from", "2026-11-01T00:00:00Z",
                     "--to", "2026-11-02T00:00:00Z"]) == 0
        assert capsys.readouterr().out == ("no savings recorded from 2026-11-01T00:00:00Z to 2026-11-02T00:00:00Z "
                                           "(1d)\n")
    finally:
        server.stop()


def test_savings_exits_4_naming_prometheus_when_it_cannot_answer(capsys):
    server = FakePrometheus().serve()
    url = server.url
    server.stop()
    assert main(["savings", "--prometheus-url", url, "--from", "now-1d", "--prometheus-timeout-seconds", "1"]) == 4
    err = capsys.readouterr().err
    assert err.startswith(f"error: savings unknown: Prometheus at {url} unreachable"), err
    assert "Retrying" not in err and len(err.splitlines()) == 1

    def failing(query: Query) -> list:
        raise RuntimeError("many-to-many matching not allowed")
    server = FakePrometheus(instant=failing).serve()
    try:
        assert main(["savings", "--prometheus-url", server.url, "--from", "now-1d"]) == 4
        assert "HTTP 422 execution: many-to-many matching not allowed" in capsys.readouterr().err
    finally:
        server.stop()


@pytest.mark.parametrize("period, message", [
    (["--from", "2026-11-02T00:00:00Z", "--to", "2026-11-01T00:00:00Z"], "is not after --from"),
    (["--from", "yesterday"], "--from"),
    (["--from", "now-1d", "--to", "now+1h"], "is in the future"),
], ids=["backwards", "unreadable", "future"])
def test_savings_refuses_a_period_that_is_not_one_with_exit_2(period, message, capsys):
    assert main(["savings", "--prometheus-url", "http://127.0.0.1:9", *period]) == 2
    assert message in capsys.readouterr().err


# Pre-warm counts the node

def test_a_start_that_waited_for_a_new_node_splits_its_warm_up_into_node_and_model(world, tmp_path, capsys):
    """A resume at T0 whose pod landed on a node created after it (Ready at
    +40 s) and was Ready at +95 s: the warm-up recorded is the whole 95 s,
    and the Ready Event, the object and `status -o wide/json` say 40 s of it
    was the node's."""
    from scaler.cluster.eventing import EventSink
    from scaler.cluster.pausing import Pauser
    from scaler.decide.annotations import NODE_WAIT, READY_AT, WARM_UPS
    from scaler.decide.loading import check_texts
    from scaler.run.acting import Actor
    from scaler.run.evaluating import Evaluator
    from scaler.run.tracking import Tracker
    from tests.helpers import eventually
    from tests.unit.test_following import NIGHTS, stamp

    w = world()
    started = T0
    for name, created in (("gpu-new", started + timedelta(seconds=30)), ("gpu-old", started - hours(5))):
        w.fake.create("nodes", {"metadata": {"name": name, "creationTimestamp": stamp(created)}, "spec": {},
                                "status": {"allocatable": {"nvidia.com/gpu": "8"}, "conditions": [
                                    {"type": "Ready", "status": "True", "lastTransitionTime": stamp(
                                        created + timedelta(seconds=10))}]}})
    for name, node in (("llm", "gpu-new"), ("chat", "gpu-old")):
        template = {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c"}]}}
        w.fake.create("deployments.apps", {"metadata": {"name": name, "annotations": {STARTED_AT: stamp(started)}},
                                           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                                                    "template": template}}, namespace="rec")
        w.fake.set_status("deployments.apps", "rec", name, {"replicas": 1, "readyReplicas": 1})
        w.fake.create("pods", {"metadata": {"name": f"{name}-0", "labels": {"app": name}},
                               "spec": {"nodeName": node, "containers": [{"name": "c"}]},
                               "status": {"phase": "Running", "conditions": [
                                   {"type": "Ready", "status": "True",
                                    "lastTransitionTime": stamp(started + timedelta(seconds=95))}]}},
                      namespace="rec")
    eventually(lambda: w.placement.node("gpu-new") is not None and w.placement.node("gpu-old") is not None,
               timeout_seconds=5)
    eventually(lambda: len([x for x in w.view.workloads([DEPLOYMENT]) if x.ready_replicas]) == 2, timeout_seconds=5)
    policies, problems = check_texts([("p.yaml", NIGHTS)])
    assert not problems
    evaluator = Evaluator(prometheus=Prometheus("http://127.0.0.1:9", timeout_seconds=1), view=w.view,
                          excluded_namespaces=())
    actor = Actor(evaluator=evaluator, dry_run=False,
                  pauser=Pauser(w.kube, events=EventSink(w.kube), placement=w.placement))
    Tracker(evaluator=evaluator, actor=actor).track_starts(policies, now=started + timedelta(seconds=100))
    actor.pauser.events.flush(timeout_seconds=5)
    llm = w.fake.get("deployments.apps", "rec", "llm")["metadata"]["annotations"]
    assert (llm[WARM_UPS], llm[NODE_WAIT], llm[READY_AT]) == ("95", "40", stamp(started + timedelta(seconds=95)))
    [event] = w.events("llm", "Ready")
    assert event["message"] == ("Ready 95s after its start (node Ready after 40s, model 55s more): "
                                "all 1 replicas Ready")
    chat = w.fake.get("deployments.apps", "rec", "chat")["metadata"]["annotations"]
    assert chat[WARM_UPS] == "95" and NODE_WAIT not in chat  # its node was there before the start
    assert w.events("chat", "Ready")[0]["message"] == "Ready 95s after its start: all 1 replicas Ready"

    for name in ("llm", "chat"):  # status shows a paused workload's last warm-up: what a resume takes
        eventually(lambda name=name: READY_AT in w.workload(name).annotations, timeout_seconds=5)
        w.pause(name)
    kubeconfig = str(w.fake.kubeconfig(tmp_path / "kubeconfig"))
    assert main(["status", "--kubeconfig", kubeconfig, "-n", "rec", "-o", "json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["workloads"]}
    assert (rows["llm"]["nodeWaitSeconds"], rows["chat"]["nodeWaitSeconds"]) == (40.0, None)
    assert main(["status", "--kubeconfig", kubeconfig, "-n", "rec", "-o", "wide"]) == 0
    assert "95s (node 40s + model 55s)" in capsys.readouterr().out
