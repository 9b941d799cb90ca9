"""The idle query on Prometheus's own engine: `promtool test rules` evaluates
the very PromQL scaler sends against series with holes in them (a stale
marker ends a series at once, as after a failed scrape or a Pushgateway
group deleted; `_` is a step without a sample), at chosen instants.

A workload whose signal was not seen through its idle window is left out of
the answer (unknown), with at most one subquery step missing; a window seen
throughout gives the signal's maximum. promtool comes with Debian's
prometheus package (deploy/local/install installs it); without it this
fails rather than skips.
"""

from __future__ import annotations

import pytest
import yaml

from scaler.signals.queries import idle_query
from tests.tools.test_alerts import promtool

#: Each series from t=0 s, one sample a second: "0x100" is 101 samples of 0.
SERIES = {
    "seen": "0x400",
    "busy": "5x100 0x300",  # 5 until 100 s, then 0
    "hole": "0x100 stale _x9 0x300",  # unseen at 101..110 s (10 steps)
    "one-step": "0x100 stale 0x300",  # unseen at 101 s only: within the tolerance
    "two-steps": "0x100 stale _ 0x300",  # unseen at 101 and 102 s
    "nan": "0x100 NaN NaN 0x300",  # NaN at 101 and 102 s: a NaN step is unseen too
    "probe": "0x100 stale _x59 0x300",  # unseen at 101..160 s: the probe's 60 s hole
}
EVERY = {name: 0 for name in SERIES}


def _evaluations(expr: str, expected: dict[int, dict[str, float]]) -> list[dict]:
    return [{"expr": expr, "eval_time": f"{at}s",
             "exp_samples": [{"labels": f'{{namespace="a", workload="{name}"}}', "value": value}
                             for name, value in sorted(found.items())]}
            for at, found in expected.items()]


def _check(tmp_path, *, duration_seconds: int, expected: dict[int, dict[str, float]],
           series: dict[str, str] = SERIES, interval: str = "1s", inner: str = "m") -> None:
    """The idle query of `inner` at each instant of `expected` gives exactly those workloads, with those values."""
    expr = idle_query(inner, duration_seconds=duration_seconds, namespace_label="namespace",
                      workload_label="workload").promql
    tests = {"evaluation_interval": interval, "tests": [{
        "interval": interval,
        "input_series": [{"series": f'm{{namespace="a", workload="{name}"}}', "values": values}
                         for name, values in series.items()],
        "promql_expr_test": _evaluations(expr, expected)}]}
    path = tmp_path / "idle-query.test.yaml"
    path.write_text(yaml.safe_dump(tests))
    done = promtool("test", "rules", path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_hole_in_the_window_is_unknown_until_a_window_is_seen_after_it(tmp_path):
    """40 s windows [t-40 s, t] at 1 s steps: a workload is left out while
    two or more unseen steps lie in its window, or none is seen now."""
    _check(tmp_path, duration_seconds=40, expected={
        90: {**EVERY, "busy": 5},  # seen throughout: the maximum
        105: {"seen": 0, "busy": 5, "one-step": 0},  # hole and probe unseen now; two-steps, nan: 2 steps
        130: {"seen": 0, "busy": 5, "one-step": 0},
        142: {"seen": 0, "busy": 0, "one-step": 0, "two-steps": 0, "nan": 0},  # 102 s is the only step left
        149: {"seen": 0, "busy": 0, "one-step": 0, "two-steps": 0, "nan": 0},  # hole's 109 and 110 s are not
        150: {"seen": 0, "busy": 0, "one-step": 0, "two-steps": 0, "nan": 0, "hole": 0},  # one step: tolerated
    })


def test_the_probe_a_60s_hole_in_a_90s_window(tmp_path):
    """Idle for 90 s; the series gone for 60 s (101..160 s), then 0 again.
    The old query answered 0 (idle) 33 s after the hole, max over what it
    saw; now it is unknown until 90 s of seen samples follow the hole (the
    window's start must be seen: the start guard, within 30 s before it)."""
    quiet = {name: 0 for name in SERIES if name != "probe"}
    _check(tmp_path, duration_seconds=90, expected={
        100: {**EVERY, "busy": 5},
        130: {"seen": 0, "busy": 5, "one-step": 0},  # in the hole: probe has no sample now
        194: {"seen": 0, "busy": 0, "one-step": 0, "two-steps": 0, "nan": 0},  # 33 s after it
        201: quiet,
        250: quiet,  # the window starts at 160 s, in the hole, and nothing was seen in the 30 s before
        251: EVERY,
    })


#: Values that are not a number a person could compare with a threshold.
UNUSABLE = {
    "minus-inf-now": "0x100 -Inf",  # -Inf from 101 s
    "nan-now": "0x100 NaN",  # NaN from 101 s
    "plus-inf-now": "0x100 +Inf",  # +Inf from 101 s
    "minus-inf-twice": "0x80 -Inf -Inf 0x30",  # -Inf at 81 and 82 s: two unseen steps
    "minus-inf-once": "0x80 -Inf 0x30",  # -Inf at 81 s only: the one step tolerated, as for a NaN
    "plus-inf-once": "0x80 +Inf 0x30",  # +Inf at 81 s: the window's maximum, which reads as unknown
    "nan-until-start": " ".join(["NaN"] * 70) + " 0x60",  # NaN until 69 s: as if it began at 70 s
    "seen": "0x130",
}


def test_nan_or_inf_now_or_twice_in_the_window_is_unknown_not_idle(tmp_path):
    """Promise 2: NaN and ±Inf are unknown. A comparison or aggregation, and
    max_over_time, skip NaN and -Inf, so a guard that only asked for a
    sample answered 0 (idle) for a signal that was -Inf or NaN now, or -Inf
    for most of the window. Now such a step is unseen, like a lost scrape:
    never at the instant evaluated, at most one in the window."""
    _check(tmp_path, duration_seconds=40, series=UNUSABLE, expected={
        101: {"minus-inf-once": 0, "plus-inf-once": float("inf"), "seen": 0},
        109: {"minus-inf-once": 0, "plus-inf-once": float("inf"), "seen": 0},  # NaN at and before the start
        110: {"minus-inf-once": 0, "plus-inf-once": float("inf"), "seen": 0, "nan-until-start": 0},
        122: {"minus-inf-twice": 0, "minus-inf-once": 0, "plus-inf-once": 0, "seen": 0,  # 82 s left: one step
              "nan-until-start": 0},
    })


def test_nan_now_is_unknown_with_hourly_steps(tmp_path):
    """1 h windows at 60 s steps, 15 s scrapes, NaN from 4005 s: unknown at
    once, between two steps too, not a step's length later."""
    series = {"nan-now": "0x266 " + " ".join(["NaN"] * 10), "seen": "0x276"}
    _check(tmp_path, duration_seconds=3600, series=series, interval="15s",
           expected={3990: {"nan-now": 0, "seen": 0}, 4005: {"seen": 0}, 4065: {"seen": 0}})


@pytest.mark.parametrize("duration_seconds", [1, 59, 61, 600, 1801, 86400])
def test_the_query_parses_for_any_duration(tmp_path, duration_seconds):
    """Every step the resolution can take, and a duration off its grid."""
    expr = idle_query("m", duration_seconds=duration_seconds, namespace_label="namespace",
                      workload_label="workload").promql
    rules = {"groups": [{"name": "idle", "rules": [{"record": "idle", "expr": expr}]}]}
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    done = promtool("check", "rules", path)
    assert done.returncode == 0, done.stdout + done.stderr


#: 15 s scrapes, t=0 s on: busy (1) at every other scrape, 15 s, 45 s, ...;
#: quiet throughout; gone for 4 and for 8 scrapes after 2250 s.
SCRAPED = {"every-other": " ".join(["0", "1"] * 200), "quiet": "0x400",
           "gone-1m": "0x150 stale _x3 0x200", "gone-2m": "0x150 stale _x7 0x200"}


def test_a_gauge_is_read_at_the_steps_so_wrap_it_to_see_every_scrape(tmp_path):
    """A 30 m window has 30 s steps; a gauge scraped every 15 s is read at
    the steps only, here always a 0, so a workload busy at every other
    scrape reads idle (docs/policies.md says so). `max_over_time(g[1m])`
    reads every scrape into each step: busy; a hole of up to that minute is
    then not seen (gone-1m), a longer one still is (gone-2m)."""
    _check(tmp_path, duration_seconds=1800, series=SCRAPED, interval="15s",
           expected={2400: {"every-other": 0, "quiet": 0}})
    _check(tmp_path, duration_seconds=1800, series=SCRAPED, interval="15s", inner="max_over_time(m[1m])",
           expected={2400: {"every-other": 1, "quiet": 0, "gone-1m": 0}})
