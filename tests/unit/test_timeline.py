"""`scaler backtest --chart`: the timeline file, from a replay built in
memory (no cluster, no Prometheus): one self-contained HTML file, a chart
per workload, every action's reason on hover, windows and waits shaded,
unknown signal steps drawn as gaps."""

from __future__ import annotations

import os
import random
import re
import sys
from datetime import UTC, datetime

import pytest
from plotly.io.json import to_json_plotly

from scaler.cli.timeline import MAX_POINTS, MAX_WORKLOADS, figure, step_values, thinned, write_timeline
from scaler.decide.decisions import WorkloadState
from scaler.decide.replaying import Steps, Subject, replay, window_runs
from scaler.run.backtesting import Backtest
from tests.unit.test_decisions import at, make_policy

#: Tuesday 2024-06-04 in Berlin, a day at one-minute steps.
DAY = Steps(at("2024-06-04 00:00").astimezone(UTC), 60, 1440)
#: Berlin wall-clock spans of that day: [first minute, end minute).
QUIET_FROM, NAN = "02:00", ("03:00", "03:30")
PULSE = ("05:00", "05:10")
BUSY_AGAIN = ("05:05", "05:40")
MISSING = ("22:00", "22:10")
BATCH = make_policy(name="batch", schedule={"timezone": "Europe/Berlin", "outside": "down", "windows": [
    {"name": "business-hours", "mode": "up", "when": "Mon-Fri 08:00-20:00"},
    {"name": "maintenance", "mode": "down", "when": "Tue 12:00-13:00"}]})


def minute(hhmm: str) -> int:
    hours, minutes = map(int, hhmm.split(":"))
    return hours * 60 + minutes


def within(index: int, span: tuple[str, str]) -> bool:
    return minute(span[0]) <= index < minute(span[1])


def signals(steps: Steps) -> dict[str, list]:
    """Busy until 02:00, then quiet but for a burst; NaN for half an hour,
    no point at all for ten minutes; a queue pulse at 05:00."""
    start, idle, queue = int(steps.start.timestamp()), [], []
    for index in range(steps.count):
        timestamp = start + index * steps.step_seconds
        queue.append([timestamp, "3" if within(index, PULSE) else "0"])
        if within(index, NAN):
            idle.append([float(timestamp), "NaN"])
        elif not within(index, MISSING):
            busy = index < minute(QUIET_FROM) or within(index, BUSY_AGAIN)
            idle.append([timestamp, "50" if busy else "1"])
    return {"idle": idle, "wake": queue}


def add(result: Backtest, subject: Subject, points: dict[str, list] | None) -> None:
    """As scaler.run.backtesting does: window runs per (policy, lead), the replay, the points kept."""
    key = (subject.policy.name, subject.lead)
    windows = result.windows.setdefault(key, window_runs(subject.policy, result.steps, subject.lead))
    result.replays.append(replay(subject, result.steps, windows=windows, **(points or {})))
    if points is not None:
        result.points[(subject.state.namespace, subject.state.name)] = points


def subject(name: str, policy=None, *, size: int = 2) -> Subject:
    state = WorkloadState(kind="Deployment", namespace="ml", name=name, replicas=size, ready_replicas=size)
    return Subject(state, policy or make_policy(), size=size, gpus_per_replica=1, warm_up_seconds=120,
                   warm_up_source="declared")


@pytest.fixture(scope="module")
def day() -> Backtest:
    result = Backtest(DAY)
    add(result, subject("llm-a"), signals(DAY))
    add(result, subject("batch-b", BATCH, size=3), signals(DAY))
    return result


@pytest.fixture(scope="module")
def chart(day, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("chart") / "timeline.html"
    write_timeline(str(path), day)
    return path.read_text(encoding="utf-8")


def in_page(text: str) -> str:
    """`text` as the page's chart data carries it."""
    return to_json_plotly(text)[1:-1]


def test_the_chart_is_one_self_contained_html_file(chart):
    assert chart.startswith("<!DOCTYPE html>")
    assert chart.count("plotly.js v") == 1  # the library inlined once, for every chart
    assert re.findall(r"<script[^>]*\bsrc=", chart) == []
    assert re.findall(r"<link[^>]*\bhref=[\"']?https?:", chart) == []
    assert chart.count('class="plotly-graph-div"') == 2


def test_the_header_says_the_period_step_and_totals(chart, day):
    assert "Period 2024-06-03T22:00:00Z to 2024-06-04T22:00:00Z" in chart
    assert "one step every 1m (1,440 steps)" in chart
    used = sum(r.gpu_hours for r in day.replays)
    assert f"GPU-hours used {used:,.1f} of 120.0 always up" in chart  # 2 + 3 GPUs for 24 h
    assert "left out" not in chart


def test_each_workload_has_its_title_with_gpu_hours(chart, day):
    assert in_page("ml/llm-a (llm)") in chart and in_page("ml/batch-b (batch)") in chart
    for result in day.replays:
        assert in_page(f"always up {result.gpu_hours_always_up:,.1f} / saved {result.gpu_hours_saved:,.1f}") in chart


def test_each_action_shows_what_it_did_and_why_on_hover(chart, day):
    acts = [act for result in day.replays for act in result.acts]
    assert {act.action.value for act in acts} >= {"pause", "resume"}
    for act in acts:
        assert in_page(f"{act.action.value} {act.before} -> {act.after}: {act.reason}") in chart


def test_the_windows_are_shaded_in_their_own_colours_with_a_legend(day, chart):
    shapes = figure(day, day.replays[1]).layout.shapes
    bands = {shape.name: shape for shape in shapes if shape.yref == "paper"}
    assert set(bands) == {"keep-up window", "keep-down window", "outside keep-up (outside: down)"}
    assert len({shape.fillcolor for shape in bands.values()}) == 3
    assert [shape.name for shape in shapes if shape.showlegend and shape.yref == "paper"] == list(bands)
    keep_down = bands["keep-down window"]
    assert (keep_down.x0, keep_down.x1) == ("2024-06-04 10:00:00", "2024-06-04 11:00:00")  # 12:00-13:00 Berlin
    for name in bands:
        assert in_page(name) in chart


def test_a_wait_for_a_paused_workload_is_shaded_with_its_seconds(day):
    result = day.replays[0]
    assert [(w.since, w.served) for w in result.waits] == [(at("2024-06-04 05:00"), at("2024-06-04 05:02"))]
    fig = figure(day, result)
    [band] = [shape for shape in fig.layout.shapes if shape.name == "demand waiting at zero"]
    assert (band.x0, band.x1) == ("2024-06-04 03:00:00", "2024-06-04 03:02:00")
    [marker] = [trace for trace in fig.data if trace.name == "demand waiting at zero"]
    assert marker.hovertext == ("demand waited 2m",)


def drawn(trace, steps: Steps) -> list[float | None]:
    """What a step line (shape hv, gaps not connected) shows at every step."""
    points = dict(zip(trace.x, trace.y, strict=True))
    shown, value = [], None
    for index in range(steps.count):
        value = points.get(f"{steps.at(index):%Y-%m-%d %H:%M:%S}", value)
        shown.append(value)
    return shown


def test_unknown_signal_steps_are_gaps_never_zeros(day):
    fig = figure(day, day.replays[0])
    [idle] = [trace for trace in fig.data if trace.name == "idle signal"]
    [queue] = [trace for trace in fig.data if trace.name == "wake signal"]
    assert idle.connectgaps is False and idle.line.shape == "hv"
    shown = drawn(idle, DAY)
    for index, value in enumerate(shown):
        if within(index, NAN) or within(index, MISSING):
            assert value is None, f"step {index} (Berlin {index // 60:02}:{index % 60:02}) is not a gap"
        else:
            assert value in (1.0, 50.0)
    assert shown == step_values(day.points[("ml", "llm-a")]["idle"], DAY)  # drawn exactly, from fewer points
    assert len(idle.x) < 20 and drawn(queue, DAY) == [3.0 if within(i, PULSE) else 0.0 for i in range(DAY.count)]


def test_the_idle_threshold_is_a_dashed_line(day):
    [line] = [trace for trace in figure(day, day.replays[0]).data if trace.name == "idle threshold"]
    assert line.y == (5, 5) and line.line.dash == "dash"


def test_replicas_and_ready_are_step_lines_ending_with_the_period(day):
    result = day.replays[0]
    fig = figure(day, result)
    replicas, ready = (next(t for t in fig.data if t.name == name) for name in ("replicas", "Ready"))
    assert drawn(replicas, DAY) == [r for r, _ in result.replicas_at()]
    assert drawn(ready, DAY) == [r for _, r in result.replicas_at()]
    assert replicas.x[-1] == ready.x[-1] == "2024-06-04 22:00:00"


def test_a_noisy_week_is_thinned_to_its_lows_and_highs_keeping_its_gaps():
    rng = random.Random(7)
    values = [None if 5000 <= i < 5100 else rng.uniform(0, 100) for i in range(7 * 1440)]
    values[9000] = 1000.0  # one spike
    kept = thinned(values, MAX_POINTS)
    assert len(kept) <= MAX_POINTS + 4
    assert kept == sorted(kept)
    assert 9000 in kept and values.index(min(v for v in values if v is not None)) in kept
    assert 5000 in kept and not any(5000 < i < 5100 for i in kept)  # the gap: its first step, as None
    assert 4999 in kept and 5100 in kept  # the known runs around it end and start exactly


def test_a_week_that_changes_less_often_than_the_limit_is_drawn_exactly():
    rng = random.Random(8)
    values: list[float | None] = []
    while len(values) < 7 * 1440:
        values += [rng.choice([None, 0.0, 1.0, 7.5, 80.0])] * rng.randint(1, 40)
    values = values[:7 * 1440]
    kept = thinned(values, MAX_POINTS)
    assert len(kept) <= MAX_POINTS
    shown, at_step = [], dict.fromkeys(kept)
    for index in range(len(values)):
        shown.append(values[index] if index in at_step else shown[-1])
    assert shown == values


def test_a_steady_signal_is_two_points_per_run():
    assert thinned([0.0] * 10080, MAX_POINTS) == [0, 10079]
    assert thinned([1.0] * 10 + [None] * 5 + [2.0] * 10, MAX_POINTS) == [0, 9, 10, 15, 24]


def test_only_the_workloads_with_the_most_gpu_hours_always_up_are_drawn(tmp_path):
    hour = Steps(DAY.start, 60, 60)
    result = Backtest(hour)
    sizes = {f"w{n:02}": 2 + n % 5 for n in range(MAX_WORKLOADS + 2)}
    sizes["w07"] = sizes["w31"] = 1  # the two smallest
    for name, size in sizes.items():
        add(result, subject(name, size=size), None)  # no points kept: signals unknown
    path = tmp_path / "many.html"
    write_timeline(str(path), result)
    text = path.read_text(encoding="utf-8")
    assert f"Showing the {MAX_WORKLOADS} workloads with the most GPU-hours always up: 2 left out" in text
    assert f"{MAX_WORKLOADS + 2} workloads: GPU-hours used" in text
    assert text.count('class="plotly-graph-div"') == MAX_WORKLOADS
    assert in_page("ml/w07 (llm)") not in text and in_page("ml/w31 (llm)") not in text
    assert in_page("ml/w08 (llm)") in text


def test_a_missing_directory_is_an_error_naming_the_path(tmp_path, day):
    path = tmp_path / "no" / "such" / "timeline.html"
    with pytest.raises(ValueError, match=re.escape(str(path))):
        write_timeline(str(path), day)
    assert not (tmp_path / "no").exists()


def test_an_existing_file_is_replaced_whole_and_no_temporary_is_left(tmp_path, day):
    path = tmp_path / "timeline.html"
    path.write_text("old")
    write_timeline(str(path), day)
    assert path.read_text(encoding="utf-8").rstrip().endswith("</html>")
    assert os.listdir(tmp_path) == ["timeline.html"]


def test_without_plotly_mocked_absent_it_says_how_to_install(tmp_path, day, monkeypatch):
    """Mocked: plotly cannot be uninstalled for one test; a None in
    sys.modules makes its import fail as a missing package does."""
    for module in ("plotly", "plotly.io", "plotly.graph_objects"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(RuntimeError) as error:
        write_timeline(str(tmp_path / "timeline.html"), day)
    assert str(error.value) == "--chart needs plotly: pip install 'scaler[chart]'"
    assert os.listdir(tmp_path) == []


def test_a_signal_point_off_the_step_grid_or_not_finite_is_unknown():
    steps = Steps(datetime(2024, 6, 4, tzinfo=UTC), 60, 4)
    start = int(steps.start.timestamp())
    points = [[start, "1"], [start + 61, "2"], [start + 120.0, "+Inf"], [start + 180, "oops"], [start + 240, "5"]]
    assert step_values(points, steps) == [1.0, None, None, None]
