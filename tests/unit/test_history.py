"""Reading a signal's past on canned range-query answers, and the instants
the command line takes. No Prometheus: what only a real one shows is in
tests/cluster/test_backtest.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaler.cli.instants import InstantError, duration, instant
from scaler.signals.history import MAX_POINTS, chunks, fetch
from scaler.signals.queries import wake_query
from scaler.signals.results import QueryError

START = datetime(2026, 11, 16, tzinfo=UTC)
T0 = int(START.timestamp())
QUERY = wake_query("q", namespace_label="namespace", workload_label="workload")


def series(name: str, values: list, namespace: str = "ml") -> dict:
    return {"metric": {"namespace": namespace, "workload": name}, "values": values}


@given(steps=st.integers(1, 5 * MAX_POINTS))
def test_chunks_cover_every_step_once_and_stay_under_the_limit(steps):
    covered = [index for first, last in chunks(steps) for index in range(first, last + 1)]
    assert covered == list(range(steps))
    assert all(last - first + 1 <= MAX_POINTS for first, last in chunks(steps))
    assert len(chunks(steps)) == -(-steps // MAX_POINTS)


def test_one_request_per_chunk_with_each_chunks_instants():
    asked = []

    def ask(query, begin, end, step):
        asked.append((begin, end, step))
        first = int((begin - START).total_seconds() // 60)
        return [series("chat", [[T0 + 60 * first, "1"], [int(end.timestamp()), "2"]])]

    history = fetch(QUERY, ask, start=START, step_seconds=60, steps=MAX_POINTS + 5)
    assert history.requests == 2 and len(asked) == 2
    assert asked[0] == (START, START + timedelta(minutes=MAX_POINTS - 1), 60)
    assert asked[1] == (START + timedelta(minutes=MAX_POINTS), START + timedelta(minutes=MAX_POINTS + 4), 60)
    # The second chunk's points follow the first's, in order.
    assert [point[0] for point in history.points[("ml", "chat")]] == [
        T0, T0 + 60 * (MAX_POINTS - 1), T0 + 60 * MAX_POINTS, T0 + 60 * (MAX_POINTS + 4)]


def test_a_failed_chunk_is_reported_with_its_range_and_the_others_are_kept():
    def ask(query, begin, end, step):
        if begin > START:
            raise RuntimeError("Prometheus at http://127.0.0.1:9 unreachable: ConnectionError")
        return [series("chat", [[T0, "1"]])]

    history = fetch(QUERY, ask, start=START, step_seconds=60, steps=MAX_POINTS + 10)
    assert history.points[("ml", "chat")] == [[T0, "1"]]
    assert history.failed_steps == 10
    assert history.errors == [f"{START + timedelta(minutes=MAX_POINTS):%Y-%m-%d %H:%M} to "
                              f"{START + timedelta(minutes=MAX_POINTS + 9):%Y-%m-%d %H:%M} UTC: Prometheus at "
                              "http://127.0.0.1:9 unreachable: ConnectionError"]


def test_a_chunk_over_prometheus_sample_limit_is_halved_until_it_fits():
    asked = []

    def ask(query, begin, end, step):
        asked.append((begin, end))
        if (end - begin) > timedelta(minutes=30):
            raise QueryError("Prometheus at x answered an error: HTTP 422 execution: query processing would load "
                             "too many samples into memory in query execution", status=422, error_type="execution")
        return [series("chat", [[int(begin.timestamp()), "1"]])]

    history = fetch(QUERY, ask, start=START, step_seconds=60, steps=100)
    assert history.errors == [] and history.requests == len(asked) == 7  # 100 -> 50,50 -> 25 x 4
    assert [point[0] for point in history.points[("ml", "chat")]] == [T0 + 60 * i for i in (0, 25, 50, 75)]


def test_a_chunk_that_stays_too_big_is_reported_not_retried_forever():
    def ask(query, begin, end, step):
        raise QueryError("Prometheus at x answered an error: HTTP 422 execution: query processing would load too "
                         "many samples into memory in query execution", status=422, error_type="execution")

    history = fetch(QUERY, ask, start=START, step_seconds=60, steps=100)
    assert history.requests == 1 + 2 + 4 + 8 + 16 and history.failed_steps == 100
    assert len(history.errors) == 16 and all("too many samples" in error for error in history.errors)


@pytest.mark.parametrize("error", [
    pytest.param(QueryError("Prometheus at x answered an error: HTTP 400 bad_data: parse error", status=400,
                            error_type="bad_data"), id="http-400"),
    pytest.param(QueryError("Prometheus at x answered an error: HTTP 503 timeout: too many samples", status=503,
                            error_type="timeout"), id="http-503-whatever-it-says"),
    pytest.param(QueryError("Prometheus at x timed out after 10s"), id="no-answer"),
    pytest.param(RuntimeError("query processing would load too many samples"), id="not-a-query-error"),
])
def test_only_a_query_prometheus_could_not_execute_is_halved_whatever_the_text_says(error):
    """Halving is for 422 (the sample limit): a bad query or an unreachable
    Prometheus would fail as often in halves, at up to 31 times the requests."""
    def ask(query, begin, end, step):
        raise error

    history = fetch(QUERY, ask, start=START, step_seconds=60, steps=100)
    assert history.requests == 1 and history.failed_steps == 100
    assert history.errors == [f"{START:%Y-%m-%d %H:%M} to {START + timedelta(minutes=99):%Y-%m-%d %H:%M} UTC: "
                              f"{error}"]


def test_two_series_for_one_workload_give_the_larger_value_and_an_unusable_one_makes_it_unknown():
    answer = [series("chat", [[T0, "1"], [T0 + 60, "5"], [T0 + 120, "2"]]),
              series("chat", [[T0, "3"], [T0 + 60, "NaN"], [T0 + 180, "4"]]),
              {"metric": {"workload": "chat"}, "values": [[T0, "9"]]},  # no namespace label
              series("other", "not a list")]
    history = fetch(QUERY, lambda *args: answer, start=START, step_seconds=60, steps=4)
    assert history.points[("ml", "chat")] == [[T0, "3"], [T0 + 60, "NaN"], [T0 + 120, "2"], [T0 + 180, "4"]]
    assert history.unmatched == 1
    assert history.points[("ml", "other")] == []


@pytest.mark.parametrize("answer", [None, {}, "garbage", [None, 3, {"metric": None}], [{"values": None}]])
def test_an_answer_that_is_not_a_matrix_gives_no_points_and_no_crash(answer):
    history = fetch(QUERY, lambda *args: answer, start=START, step_seconds=60, steps=3)
    assert history.points == {} and history.errors == []


NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("now", NOW),
    ("-7d", NOW - timedelta(days=7)),
    ("now-90m", NOW - timedelta(minutes=90)),
    ("now - 1h30m", NOW - timedelta(minutes=90)),
    ("+2h", NOW + timedelta(hours=2)),
    ("2026-11-20T09:00:00Z", datetime(2026, 11, 20, 9, tzinfo=UTC)),
    ("2026-11-20T09:00+01:00", datetime(2026, 11, 20, 8, tzinfo=UTC)),
    ("2026-11-20 09:00:00.5z", datetime(2026, 11, 20, 9, 0, 0, 500000, tzinfo=UTC)),
])
def test_instants(text, expected):
    assert instant(text, now=NOW, flag="--at") == expected


@pytest.mark.parametrize(("text", "message"), [
    ("2026-11-20T09:00", "--from: '2026-11-20T09:00' has no time zone; add Z for UTC"),
    ("yesterday", "--from: 'yesterday' is not a time"),
    ("-7 days", "--from: '-7 days' is not a time"),
    ("-7x", "--from: '7x' is not a duration"),
    ("now-", "--from: 'now-' is not a time"),
    ("", "--from: '' is not a time"),
])
def test_instants_that_are_refused_say_how_to_write_them(text, message):
    with pytest.raises(InstantError) as caught:
        instant(text, now=NOW, flag="--from")
    assert str(caught.value).startswith(message), str(caught.value)


def test_durations_name_their_flag():
    assert duration("1h30m", flag="--step") == 5400
    with pytest.raises(InstantError, match=r"^--step: 'soon' is not a duration"):
        duration("soon", flag="--step")
