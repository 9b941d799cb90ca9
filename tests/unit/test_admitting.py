"""The push wake's gates on their own (run/admitting.py): budgets, what is
remembered and for how long, shared work, the bearer header, the shared
secret. Time is an argument (a clock the test moves)."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaler.run.admitting import (
    MIN_SECRET_LENGTH,
    Bucket,
    Budgets,
    Flights,
    Refusal,
    Remembered,
    SecretGate,
    bearer,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@given(st.floats(0.1, 50), st.integers(1, 20), st.lists(st.floats(0, 5), min_size=1, max_size=200))
def test_a_bucket_never_grants_more_than_its_burst_plus_its_rate_over_the_time_passed(rate, burst, gaps):
    bucket, now, granted = Bucket(rate=rate, burst=burst, now=0.0), 0.0, 0
    for gap in gaps:
        now += gap
        wait = bucket.take(now)
        if wait == 0:
            granted += 1
        else:  # it says when the next token is there, and it is
            assert bucket.take(now + wait + 1e-9) == 0
            granted += 1
            now += wait + 1e-9
    assert granted <= burst + rate * now + 1e-6


def test_a_budget_is_per_caller_and_says_when_to_come_back():
    clock = Clock()
    budgets = Budgets(rate=0.5, burst=2, clock=clock)
    budgets.charge("a")
    budgets.charge("a")
    with pytest.raises(Refusal) as refused:
        budgets.charge("a")
    assert refused.value.answer.status == 429 and refused.value.answer.headers == {"Retry-After": "2"}
    budgets.charge("b")  # another caller's budget is its own
    clock.now += 2
    budgets.charge("a")


def test_budgets_forget_callers_whose_bucket_is_full_again_when_too_many_are_kept():
    clock = Clock()
    budgets = Budgets(rate=1, burst=1, clock=clock, size=3)
    for who in "abc":
        budgets.charge(who)
    clock.now += 0.5
    budgets.charge("d")  # none is full yet: all are kept
    assert set(budgets._buckets) == set("abcd")
    clock.now += 1
    budgets.charge("e")
    assert set(budgets._buckets) == {"e"}


def test_what_is_remembered_expires_and_never_grows_past_its_size():
    clock = Clock()
    remembered: Remembered[int, str] = Remembered(10, clock=clock)
    remembered.put(1, "one")
    clock.now += 9.9
    assert remembered.get(1) == "one"
    clock.now += 0.2
    assert remembered.get(1) is None
    remembered.SIZE = 4
    for key in range(10):
        remembered.put(key, str(key))
        assert len(remembered._items) <= 4
    assert remembered.get(9) == "9"
    assert Remembered(0, clock=clock).get(1) is None  # 0 seconds: nothing is kept


def test_concurrent_calls_share_one_piece_of_work_and_its_failure():
    flights: Flights[str, int] = Flights()
    started, release, calls = threading.Event(), threading.Event(), []

    def work() -> int:
        calls.append(1)
        started.set()
        release.wait(5)
        return 42

    results: list = []
    first = threading.Thread(target=lambda: results.append(flights.run("k", work)))
    first.start()
    started.wait(5)
    others = [threading.Thread(target=lambda: results.append(flights.run("k", work))) for _ in range(5)]
    for thread in others:
        thread.start()
    while flights.shared < 5:
        threading.Event().wait(0.005)
    release.set()
    for thread in [first, *others]:
        thread.join(5)
    assert len(calls) == 1 and sorted(results) == [(42, False)] + [(42, True)] * 5

    def fails() -> int:
        raise Refusal(503, "unavailable", "down")
    with pytest.raises(Refusal):
        flights.run("k", fails)
    assert flights.run("k", lambda: 7) == (7, False)  # a failure is not remembered


def test_admission_is_asked_only_before_new_work():
    flights: Flights[str, int] = Flights()

    def refuse() -> None:
        raise Refusal(429, "rate-limited", "no")
    with pytest.raises(Refusal):
        flights.run("k", lambda: 1, admit=refuse)
    assert flights.run("k", lambda: 1) == (1, False)


@pytest.mark.parametrize(("header", "token"), [
    pytest.param("Bearer abc", "abc", id="bearer"),
    pytest.param("bearer  abc ", "abc", id="any-case-and-spaces"),
    pytest.param(None, None, id="none"),
    pytest.param("Basic abc", None, id="basic"),
    pytest.param("Bearer", None, id="empty"),
    pytest.param("Bearer a b", None, id="two-words"),
])
def test_the_bearer_header(header, token):
    if token is None:
        with pytest.raises(Refusal) as refused:
            bearer(header)
        assert refused.value.answer.status == 401
        assert refused.value.answer.headers == {"WWW-Authenticate": 'Bearer realm="scaler"'}
    else:
        assert bearer(header) == token


def test_a_short_or_missing_shared_secret_stops_the_start(tmp_path):
    short = tmp_path / "short"
    short.write_text("x" * (MIN_SECRET_LENGTH - 1) + "\n")
    with pytest.raises(ValueError, match="shorter than 16 characters"):
        SecretGate(short)
    with pytest.raises(FileNotFoundError):
        SecretGate(tmp_path / "missing")


def test_a_shared_secret_that_becomes_unreadable_answers_503_not_401(tmp_path):
    path = tmp_path / "secret"
    path.write_text("a-long-enough-shared-secret")
    gate = SecretGate(path)
    assert gate.authenticate("Bearer a-long-enough-shared-secret").username == "shared-secret"
    path.unlink()
    with pytest.raises(Refusal) as refused:
        gate.authenticate("Bearer a-long-enough-shared-secret")
    assert refused.value.answer.status == 503 and "unreadable" in refused.value.answer.body["reason"]
