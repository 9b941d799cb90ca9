"""Where an idle signal was not seen: the steps of the window, the holes in
a range-query answer, and the words the reason uses for them. Canned
answers, then a loopback Prometheus for the range query as sent. What the
real engine counts is in tests/tools/test_idle_query.py."""

from __future__ import annotations

import json
import threading
import urllib.parse
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaler.signals.gaps import LISTED, MINUS_INF, NAN, NO_DATA, PLUS_INF, Gap, IdleSteps, describe, explain, find_gaps
from scaler.signals.prometheus import Prometheus
from scaler.signals.queries import idle_query, resolution_seconds, seen_query

#: 2026-05-04 10:00:00 UTC, a multiple of every step
T0 = int(datetime(2026, 5, 4, 10, 0, tzinfo=UTC).timestamp())
QUERY = seen_query("vllm:num_requests_running", namespace_label="namespace", workload_label="workload")
KEY = ("llm", "chat")


def series(values: list, name: str = "chat") -> dict:
    return {"metric": {"namespace": "llm", "workload": name}, "values": values}


def points(seconds, value: str = "0") -> list:
    return [[T0 + second, value] for second in seconds]


def clock(second: int) -> str:
    return datetime.fromtimestamp(T0 + second, UTC).strftime("%H:%M:%S")


#: 90 s at 1 s steps, read at 10:01:30.4: steps 10:00:00 (at or before the window's start) to 10:01:30
STEPS = IdleSteps(first=T0, last=T0 + 90, step=1)


@pytest.mark.parametrize(("instant", "duration", "expected"), [
    pytest.param(T0 + 90.4, 90, (T0, T0 + 90, 1), id="90s-at-1s-steps"),
    pytest.param(T0 + 90, 90, (T0, T0 + 90, 1), id="on-a-step"),
    pytest.param(T0 + 1800 + 17, 1800, (T0, T0 + 1800, 30), id="30m-at-30s-steps-off-the-grid"),
    pytest.param(T0 + 3660.5, 3600.5, (T0, T0 + 3660, 60), id="duration-rounded-up-like-the-query"),
])
def test_the_steps_are_the_subquerys_on_its_grid(instant, duration, expected):
    steps = IdleSteps.at(datetime.fromtimestamp(instant, UTC), duration)
    assert (steps.first, steps.last, steps.step) == expected
    assert steps.step == resolution_seconds(duration)
    assert f"[{int(-(-duration // 1))}s:{steps.step}s]" in idle_query(
        "m", duration_seconds=duration, namespace_label="namespace", workload_label="workload").promql


@pytest.mark.parametrize(("seen", "expected"), [
    pytest.param(range(0, 91), [], id="seen-throughout"),
    pytest.param(range(20, 91), [Gap(T0, T0 + 20, NO_DATA)], id="hole-at-start"),
    pytest.param([*range(0, 20), *range(80, 91)], [Gap(T0 + 20, T0 + 80, NO_DATA)], id="hole-in-the-middle"),
    pytest.param(range(0, 61), [Gap(T0 + 61, None, NO_DATA)], id="hole-at-end"),
    pytest.param([*range(0, 10), *range(20, 50), *range(55, 91)],
                 [Gap(T0 + 10, T0 + 20, NO_DATA), Gap(T0 + 50, T0 + 55, NO_DATA)], id="two-holes"),
    pytest.param([], [Gap(T0, None, NO_DATA)], id="nothing-seen"),
])
def test_holes_are_the_steps_without_a_point(seen, expected):
    assert find_gaps(points(seen), STEPS) == expected


def test_nan_points_are_holes_of_their_own():
    answer = points(range(0, 30)) + points(range(30, 40), "NaN") + points(range(45, 91))
    assert find_gaps(answer, STEPS) == [Gap(T0 + 30, T0 + 40, NAN), Gap(T0 + 40, T0 + 45, NO_DATA)]


def test_inf_points_are_holes_of_their_own_and_named():
    """The idle query counts only finite steps as seen, so ±Inf is a hole too."""
    answer = points(range(0, 30)) + points(range(30, 40), "-Inf") + points(range(40, 50), "+Inf") \
        + points(range(50, 91), "-Inf")
    gaps = find_gaps(answer, STEPS)
    assert gaps == [Gap(T0 + 30, T0 + 40, MINUS_INF), Gap(T0 + 40, T0 + 50, PLUS_INF), Gap(T0 + 50, None, MINUS_INF)]
    assert describe(gaps) == ("-Inf from 2026-05-04 10:00:30 to 10:00:40 UTC, +Inf from 2026-05-04 10:00:40 to "
                              "10:00:50 UTC, -Inf since 2026-05-04 10:00:50 UTC")


def test_malformed_points_are_holes():
    broken = [*points(range(0, 10)), [T0 + 10], "x", [None, "0"], [T0 + 11, "abc"], *points(range(12, 91))]
    assert find_gaps(broken, STEPS) == [Gap(T0 + 10, T0 + 11, NO_DATA), Gap(T0 + 11, T0 + 12, NAN)]


def test_steps_of_several_seconds_and_fractional_timestamps():
    steps = IdleSteps(first=T0, last=T0 + 1800, step=30)
    answer = [[float(T0 + s), "1"] for s in range(0, 1801, 30) if not 600 <= s < 690]
    assert find_gaps(answer, steps) == [Gap(T0 + 600, T0 + 690, NO_DATA)]
    assert describe(find_gaps(answer, steps)) == "no data from 2026-05-04 10:10:00 to 10:11:30 UTC"


@given(missing=st.sets(st.integers(0, 90)), nan=st.sets(st.integers(0, 90)))
def test_holes_are_exactly_the_unseen_steps_in_maximal_runs(missing, nan):
    """An oracle: every step is in one hole iff it had no usable point, and
    no two holes of one kind touch."""
    answer = [[T0 + s, "NaN" if s in nan else "0"] for s in range(0, 91) if s not in missing]
    gaps = find_gaps(answer, STEPS)
    unseen = {s: NO_DATA if s in missing else NAN for s in (missing | nan)}
    covered = {}
    for gap in gaps:
        for second in range(gap.start - T0, (gap.end if gap.end is not None else T0 + 91) - T0):
            assert second not in covered
            covered[second] = gap.what
    assert covered == unseen
    assert all(gap.end is not None for gap in gaps[:-1])
    assert all((a.end == b.start and a.what != b.what) or a.end < b.start for a, b in pairwise(gaps))


@pytest.mark.parametrize(("gaps", "text"), [
    pytest.param([Gap(T0 + 120, T0 + 180, NO_DATA)], "no data from 2026-05-04 10:02:00 to 10:03:00 UTC",
                 id="one"),
    pytest.param([Gap(T0 + 120, None, NO_DATA)], "no data since 2026-05-04 10:02:00 UTC", id="open"),
    pytest.param([Gap(T0 - 10 * 3600 - 30, T0 - 10 * 3600 + 30, NAN)],
                 "NaN from 2026-05-03 23:59:30 to 2026-05-04 00:00:30 UTC", id="across-midnight"),
    pytest.param([Gap(T0, T0 + 5, NO_DATA), Gap(T0 + 10, T0 + 12, NAN)],
                 "no data from 2026-05-04 10:00:00 to 10:00:05 UTC, NaN from 2026-05-04 10:00:10 to 10:00:12 UTC",
                 id="two"),
])
def test_the_words_for_the_holes(gaps, text):
    assert describe(gaps) == text


def test_many_holes_are_counted_not_listed():
    gaps = [Gap(T0 + 10 * n, T0 + 10 * n + 2, NO_DATA) for n in range(LISTED + 2)]
    text = describe(gaps)
    assert text.count("no data from") == LISTED and text.endswith(", 2 more gaps")


def test_explain_names_each_unknown_workloads_holes():
    answer = [series(points([*range(0, 20), *range(80, 91)])),
              series(points(range(0, 91)), name="quiet"),
              series(points(range(0, 91), "NaN"), name="nan")]
    why = explain(answer, QUERY, [KEY, ("llm", "quiet"), ("llm", "nan"), ("llm", "gone")], STEPS)
    assert why == {
        KEY: f"no data from 2026-05-04 {clock(20)} to {clock(80)} UTC",
        ("llm", "quiet"): "no data after 2026-05-04 10:01:30 UTC",  # seen at every step, not at the instant
        ("llm", "nan"): "NaN since 2026-05-04 10:00:00 UTC",
        ("llm", "gone"): "no series",
    }


def test_an_answer_that_is_not_a_matrix_says_no_series():
    assert explain("garbage", QUERY, [KEY], STEPS) == {KEY: "no series"}  # type: ignore[arg-type]
    assert explain([series("not a list")], QUERY, [KEY], STEPS) == {KEY: "no series"}


# The range query as sent, to a loopback Prometheus


class _RangeAnswers(BaseHTTPRequestHandler):
    """Answers query_range with `result`, whether asked by GET or POST; keeps what was asked."""

    result: list
    asked: list

    def _answer(self, params: dict) -> None:
        self.asked.append({key: values[0] for key, values in params.items()})
        body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": self.result}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._answer(urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query))

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self._answer(urllib.parse.parse_qs(self.rfile.read(length).decode()))

    def log_message(self, *args):
        pass


@pytest.fixture
def range_server():
    servers = []

    def start(result: list):
        handler = type("Handler", (_RangeAnswers,), {"result": result, "asked": []})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}", handler.asked
    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def test_the_range_query_as_sent_and_its_answer_read(range_server):
    url, asked = range_server([series(points([*range(0, 30), *range(90, 91)])), series(points(range(0, 91)), "x")])
    steps = IdleSteps.at(datetime.fromtimestamp(T0 + 90.7, UTC), 90)
    answer = Prometheus(url, timeout_seconds=5).matrix(QUERY, steps.start, steps.end, steps.step)
    assert asked == [{"query": "max by (namespace, workload) (\nvllm:num_requests_running\n)",
                      "start": f"{T0:.3f}", "end": f"{T0 + 90:.3f}", "step": "1"}]
    assert explain(answer, QUERY, [KEY], steps) == {KEY: "no data from 2026-05-04 10:00:30 to 10:01:30 UTC"}
