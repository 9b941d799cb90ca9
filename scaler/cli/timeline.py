"""`scaler backtest --chart FILE`: a timeline per workload, one self-contained
HTML file (plotly, its script inlined once: opens offline, hover and zoom).

Per workload, two rows on one time axis (UTC): replicas and Ready replicas,
each action a marker on them (hover: the action, from -> to, the reason),
demand waiting at zero shaded; below, the idle signal with its threshold and
the wake signal. The windows in force shade the background. An unknown
signal step (no point, NaN, +Inf) is a gap, never a zero.

Sizes stay usable: the 50 workloads with the most GPU-hours always up are
drawn (the header says how many were left out), and a series keeps only the
points where its value changes, or, when even that is too many, the lowest
and highest point of each slice of the period (so a spike or a threshold
crossing still shows).
"""

from __future__ import annotations

import html
import math
import os
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, cast

from scaler.decide.decisions import Action
from scaler.decide.policies import IdleSignal
from scaler.decide.replaying import KEEP_DOWN, KEEP_UP, OUTSIDE_DOWN, Replay
from scaler.decide.step_signals import step_values
from scaler.decide.times import human_duration, rfc3339
from scaler.run.backtesting import Backtest
from scaler.signals.queries import IDLE, SIGNALS, WAKE

if TYPE_CHECKING:
    import plotly.graph_objects as go

#: Workloads drawn at most: the ones with the most GPU-hours always up.
MAX_WORKLOADS = 50
#: Points per signal series at most (about: the lowest and highest of each slice).
MAX_POINTS = 1500
HEIGHT_PIXELS = 460

#: window -> (legend, fill)
BANDS = {KEEP_UP: ("keep-up window", "rgba(44, 160, 44, 0.13)"),
         KEEP_DOWN: ("keep-down window", "rgba(214, 39, 40, 0.13)"),
         OUTSIDE_DOWN: ("outside keep-up (outside: down)", "rgba(127, 127, 127, 0.16)")}
WAITING = ("demand waiting at zero", "rgba(255, 127, 14, 0.35)")
#: action -> (marker symbol, colour)
MARKERS = {Action.PAUSE: ("triangle-down", "#d62728"), Action.RESUME: ("triangle-up", "#2ca02c"),
           Action.SCALE_UP: ("triangle-up-open", "#1f77b4")}
NO_PLOTLY = "--chart needs plotly: pip install 'scaler[chart]'"


def check_chart(path: str) -> None:
    """Refuse, before any work, a chart that could not be written:
    ValueError naming the path, RuntimeError without plotly."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"--chart {path}: directory {directory} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"--chart {path}: is a directory, not a file")
    _plotly()


def write_timeline(path: str, result: Backtest) -> None:
    """Write `result`'s timeline to `path` as one self-contained HTML file,
    atomically (a reader sees the old file or the whole new one)."""
    check_chart(path)
    _write_atomically(path, page(result))


def _write_atomically(path: str, text: str) -> None:
    """A temporary file beside `path` (created as open() would, so the umask
    applies), then renamed over it."""
    temporary = os.path.join(os.path.dirname(os.path.abspath(path)),
                             f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _plotly():
    """plotly.io, or the error that says how to install it."""
    try:
        import plotly.io
    except ImportError as error:
        raise RuntimeError(NO_PLOTLY) from error
    return plotly.io


def chosen(result: Backtest) -> tuple[list[Replay], int]:
    """The replays to draw, in the table's order, and how many were left out."""
    ranked = sorted(range(len(result.replays)), key=lambda i: -result.replays[i].gpu_hours_always_up)
    kept = set(ranked[:MAX_WORKLOADS])
    return [r for i, r in enumerate(result.replays) if i in kept], len(result.replays) - len(kept)


def page(result: Backtest) -> str:
    """The whole HTML document: a header, then one chart per chosen workload."""
    plotly_io = _plotly()
    replays, left_out = chosen(result)
    charts = [plotly_io.to_html(spec(result, r), validate=False, full_html=False, include_plotlyjs=i == 0,
                                div_id=f"workload-{i}", default_height=f"{HEIGHT_PIXELS}px",
                                config={"displaylogo": False, "responsive": True})
              for i, r in enumerate(replays)]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<title>scaler backtest timeline</title>\n<style>body{font-family:sans-serif;margin:1em 2em}"
            " .key span{padding:0 .6em;margin-right:.6em} section{border-top:1px solid #ddd}</style>\n"
            "</head>\n<body>\n" + header(result, replays, left_out)
            + "".join(f"<section>{chart}</section>\n" for chart in charts) + "</body>\n</html>\n")


def header(result: Backtest, replays: list[Replay], left_out: int) -> str:
    """Period, step, totals, what was left out, and a colour key."""
    steps, every = result.steps, result.replays
    used, up = sum(r.gpu_hours for r in every), sum(r.gpu_hours_always_up for r in every)
    share = f" ({(up - used) / up:.0%})" if up else ""
    lines = [(f"Period {rfc3339(steps.start)} to {rfc3339(steps.end)} (times in UTC), one step every "
              f"{human_duration(steps.step_seconds)} ({steps.count:,} steps)."),
             (f"{len(every)} workload{'s' if len(every) != 1 else ''}: GPU-hours used {used:,.1f} of {up:,.1f} "
              f"always up, {up - used:,.1f} saved{share}; {sum(r.count(Action.PAUSE) for r in every)} pauses, "
              f"{sum(r.count(Action.RESUME, Action.SCALE_UP) for r in every)} wakes and scale-ups, "
              f"{sum(len(r.waits) for r in every)} waits.")]
    if left_out:
        lines.append(f"Showing the {len(replays)} workloads with the most GPU-hours always up: "
                     f"{left_out} left out (counted in the totals above).")
    if result.signal_errors:
        lines.append(f"{len(result.signal_errors)} signal chunks could not be read: their steps are unknown "
                     "(gaps) and the replay held on them.")
    if result.failures:
        lines.append("Not replayed: " + ", ".join(f"policy {f['policy']} ({f['error']})" for f in result.failures))
    key = "".join(f'<span style="background:{fill}">{html.escape(name)}</span>'
                  for name, fill in [*BANDS.values(), WAITING])
    links = " ".join(f'<a href="#workload-{i}">{html.escape(_name(r))}</a>' for i, r in enumerate(replays))
    return ("<h1>scaler backtest: timeline</h1>\n" + "".join(f"<p>{html.escape(line)}</p>\n" for line in lines)
            + f'<p class="key">{key}</p>\n<p>{links}</p>\n')


def _name(replay: Replay) -> str:
    state = replay.subject.state
    return f"{state.namespace}/{state.name} ({replay.subject.policy.name})"


def _title(replay: Replay) -> str:
    up = replay.gpu_hours_always_up
    saved = f" ({replay.gpu_hours_saved / up:.0%})" if up else ""
    subject = replay.subject
    facts = (f"{subject.state.kind}, {subject.size} x {subject.gpus_per_replica} GPU, warm-up "
             f"{human_duration(subject.warm_up_seconds)} ({subject.warm_up_source}) · GPU-hours used "
             f"{replay.gpu_hours:,.1f} / always up {up:,.1f} / saved {replay.gpu_hours_saved:,.1f}{saved}"
             f" · {len(replay.acts)} actions, {len(replay.waits)} waits, {replay.unknown_steps} steps held unknown")
    return f"<b>{_text(_name(replay))}</b><br><sub>{_text(facts)}</sub>"


def _text(text: str) -> str:
    """Plain text for plotly's labels, which read a few HTML tags."""
    return text.replace("&", "&amp;").replace("<", "&lt;")


def _x(moment: datetime) -> str:
    """UTC, as plotly reads a date without a zone."""
    return rfc3339(moment)[:-1].replace("T", " ")


#: row -> (x axis, y axis): replicas; the idle signal; the wake signal (its own scale, on the right)
AXES = {"replicas": ("x", "y"), IDLE.name: ("x2", "y2"), WAKE.name: ("x2", "y3")}
#: each signal's colour
COLOURS = {IDLE.name: "#9467bd", WAKE.name: "#ff7f0e"}


def figure(result: Backtest, replay: Replay) -> go.Figure:
    """The chart of one workload as a plotly Figure (validated: for tests
    and other callers; the page renders `spec` unvalidated, ten times faster)."""
    _plotly()
    import plotly.graph_objects as go

    return go.Figure(spec(result, replay))


def spec(result: Backtest, replay: Replay) -> dict:
    """One workload's chart as plotly reads it: replicas above, signals
    below, one time axis."""
    steps, grid = result.steps, {"showgrid": True, "gridcolor": "#eee", "zeroline": False}
    span = [_x(steps.start), _x(steps.end)]
    layout = {
        "height": HEIGHT_PIXELS, "title": {"text": _title(replay), "x": 0.01}, "hovermode": "closest",
        "margin": {"t": 80, "b": 40, "l": 60, "r": 60}, "plot_bgcolor": "white",
        "legend": {"orientation": "h", "y": -0.12, "font": {"size": 11}},
        "shapes": bands(result, replay),
        "xaxis": {"anchor": "y", "range": span, "showticklabels": False, **grid},
        "xaxis2": {"anchor": "y2", "matches": "x", "range": span, "title": {"text": "UTC"}, **grid},
        "yaxis": {"anchor": "x", "domain": [0.47, 1], "rangemode": "tozero", "title": {"text": "replicas"},
                  **grid},
        "yaxis2": {"anchor": "x2", "domain": [0, 0.4], "rangemode": "tozero", "title": {"text": f"{IDLE.name} signal"},
                   **grid},
        "yaxis3": {"anchor": "x2", "overlaying": "y2", "side": "right", "rangemode": "tozero",
                   "title": {"text": f"{WAKE.name} signal"}, "showgrid": False, "zeroline": False}}
    return {"data": _replica_traces(replay) + _signal_traces(result, replay), "layout": layout}


def _trace(row: str, name: str, x: list, y: list, **more) -> dict:
    xaxis, yaxis = AXES[row]
    return {"type": "scatter", "name": name, "x": x, "y": y, "xaxis": xaxis, "yaxis": yaxis, **more}


def bands(result: Backtest, replay: Replay) -> list[dict]:
    """Background shapes: each window run (across both rows) and each wait
    (on the replicas row), one legend entry per kind."""
    steps, subject = result.steps, replay.subject
    runs = result.windows.get((subject.policy.name, subject.lead), [])
    shown: set[str] = set()

    def band(start: datetime, end: datetime, name: str, fill: str, rows: str) -> dict:
        first = name not in shown
        shown.add(name)
        return {"type": "rect", "xref": "x", "yref": rows, "x0": _x(start), "x1": _x(end), "y0": 0, "y1": 1,
                "fillcolor": fill, "line": {"width": 0}, "layer": "below", "name": name, "legendgroup": name,
                "showlegend": first}

    shapes = [band(steps.at(run.first), steps.at(following), *BANDS[run.window], "paper")
              # not strict: with no runs (none computed for this lead) steps.count is left unpaired
              for run, following in zip(runs, [*(r.first for r in runs[1:]), steps.count], strict=False)
              if run.window in BANDS]
    return shapes + [band(wait.since, wait.served or steps.end, *WAITING, "y domain") for wait in replay.waits]


def _replica_traces(replay: Replay) -> list[dict]:
    """Replicas and Ready as step lines (a point where either changed), the
    actions on them, and a marker where each wait began."""
    steps, changes = replay.steps, replay.changes
    x = [_x(steps.at(first)) for first, _, _ in changes] + [_x(steps.end)]
    replicas = [r for _, r, _ in changes] + [changes[-1][1] if changes else None]
    ready = [r for _, _, r in changes] + [changes[-1][2] if changes else None]
    traces = [_trace("replicas", "replicas", x, replicas, mode="lines", line={"shape": "hv", "color": "#1f77b4"}),
              _trace("replicas", "Ready", x, ready, mode="lines",
                     line={"shape": "hv", "color": "#17becf", "dash": "dot", "width": 3})]
    for action, (symbol, colour) in MARKERS.items():
        acts = [act for act in replay.acts if act.action is action]
        if acts:
            traces.append(_trace(
                "replicas", action.value, [_x(act.at) for act in acts], [act.after for act in acts], mode="markers",
                marker={"symbol": symbol, "size": 11, "color": colour}, hoverinfo="x+text",
                hovertext=[_text(f"{act.action.value} {act.before} -> {act.after}: {act.reason}") for act in acts]))
    if replay.waits:
        traces.append(_trace(
            "replicas", WAITING[0], [_x(wait.since) for wait in replay.waits], [0] * len(replay.waits),
            mode="markers", marker={"symbol": "x", "size": 9, "color": "#ff7f0e"}, hoverinfo="x+text",
            hovertext=[f"demand waited {human_duration(wait.seconds)}" if wait.served else
                       f"demand still waiting when the period ended ({human_duration(wait.seconds)})"
                       for wait in replay.waits]))
    return traces


def _signal_traces(result: Backtest, replay: Replay) -> list[dict]:
    """The idle signal and its threshold, the wake signal and its
    activation threshold (if any), for the signals the policy reads."""
    policy, steps = replay.subject.policy, result.steps
    state = replay.subject.state
    points = result.points.get((state.namespace, state.name), {})
    ends = [_x(steps.start), _x(steps.end)]
    out: list[dict] = []
    for kind in SIGNALS:
        signal, rule, colour = kind.name, kind.rule(policy), COLOURS[kind.name]
        if rule is None:
            continue
        values = step_values(points.get(signal), steps)
        kept = thinned(values, MAX_POINTS)
        out.append(_trace(signal, f"{signal} signal", [_x(steps.at(i)) for i in kept], [values[i] for i in kept],
                          mode="lines", connectgaps=False, line={"shape": "hv", "color": colour}))
        threshold = rule.threshold if isinstance(rule, IdleSignal) else rule.activation_threshold
        if kind is IDLE or threshold:
            out.append(_trace(signal, f"{signal} {'threshold' if kind is IDLE else 'activation'}", ends,
                              [threshold, threshold], mode="lines", hoverinfo="name+y",
                              line={"dash": "dash", "color": colour, "width": 1}))
    return out


def thinned(values: Sequence[float | None], limit: int) -> list[int]:
    """The steps to draw so a step line (`shape: hv`) looks as the full
    series would: every unknown run's first step (a gap), and of each known
    run the steps where the value changes and its last step; if that is more
    than `limit`, only the lowest and highest of each slice of the period."""
    exact = _runs(values, 1)
    if len(exact) <= limit:
        return exact
    return _runs(values, math.ceil(len(values) / max(1, limit // 2)))


def _runs(values: Sequence[float | None], width: int) -> list[int]:
    kept: list[int] = []
    index = 0
    while index < len(values):
        end = index + 1
        known = values[index] is not None
        while end < len(values) and (values[end] is not None) == known:
            end += 1
        kept.extend(_run(values, index, end, width) if known else [index])
        index = end
    return kept


def _run(values: Sequence[float | None], first: int, end: int, width: int) -> list[int]:
    """The steps to draw of one run of known values [first, end): each
    slice of `width` steps gives its lowest and highest."""
    candidates: Sequence[int] = range(first, end)
    if width > 1:
        slices = (range(start, min(start + width, end)) for start in range(first, end, width))
        def value(index: int) -> float:
            return cast(float, values[index])  # within a run of known values: never None

        candidates = sorted({first, end - 1}.union(*((min(piece, key=value), max(piece, key=value))
                                                     for piece in slices)))
    out: list[int] = []
    for index in candidates:
        if not out or values[index] != values[out[-1]] or index == end - 1:
            out.append(index)
    return out
