"""Fault storms at the sizes CI can afford; benchmarks/storms.py runs the same
scenarios at full size (docs/benchmarks.md has their numbers). Each asserts
exact counts a user can check: replicas and scaler.io/last-replicas on every
object, one Event per action (none missing, none repeated), no write by a
deposed leader, and PATCHes equal to the objects changed.

No audit log here (the session's API server is shared): who wrote what comes
from each daemon's log, whose `decision` line follows every write that
landed unless the daemon was killed, and from the Events. The split-brain
test runs first: its daemons are held to 10 requests a second, and owed
Events another test's deleted namespaces left behind would take their turn."""

from __future__ import annotations

import random
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import storms  # benchmarks/ is not a package: on sys.path above

NONE = {"missing": 0, "duplicate": 0}


@pytest.fixture
def storm(cluster, tmp_path):
    seed = random.randrange(1 << 30)
    print(f"storm seed {seed} (kill moments, stop moments)")
    started = storms.Storm(cluster, tmp_path, seed=seed)
    yield started
    started.close(wait=False)


def test_a_leader_frozen_past_its_lease_while_retrying_writes_nothing_after_it_wakes(storm):
    """SIGSTOP while its pauses fail their guards; the standby takes over and
    resumes what it paused; SIGCONT: it sends no write, and every pause has
    its Event, every resume too."""
    result = storms.split_brain(storm, trials=2, objects=30, writers=3, most_paused_before_stop=3)
    for row in result["rows"]:
        # No write started after it woke; one sent after it (a pause landing
        # after the standby's resume) would show as a second pause and resume.
        assert row["deposed_writing_lines"] == 0, row
        assert row["missing"] == 0 and row["duplicate"] == 0 and row["wrong"] == 0, row
        assert row["resumed_by_new"] == row["paused"], row
        assert row["stopped_seconds"] >= 6 + 1, row  # frozen across the whole lease
    assert sum(row["paused_by_old"] for row in result["rows"]) > 0, "no pause landed before the stop"


def test_a_daemon_killed_mid_batch_at_each_edge_loses_no_count_and_no_event(storm):
    """kill -9 after a random number of a pause's writes, a new daemon; then
    the same for the resume."""
    result = storms.kill_storm(storm, batches=1, objects=150, trigger="reload", interval_seconds=3)
    paused, resumed = result["rows"]
    assert paused["wrong_paused"] == 0 and paused["scaled_to_zero"] == NONE, paused
    assert resumed["wrong_resumed"] == 0 and resumed["resumed"] == NONE, resumed
    assert result["final"] == {"pause": NONE, "resume": NONE, "wrong": 0}, result


def test_a_leader_killed_mid_batch_leaves_its_standby_nothing_to_repeat(storm):
    result = storms.kill_storm(storm, batches=1, objects=100, election=True, trigger="reload", interval_seconds=3,
                               stop_after=1)
    [row] = result["rows"]
    assert row["wrong_paused"] == 0 and row["scaled_to_zero"] == NONE, row
    assert row["objects_written_by_both"] == 0, row
    assert row["took_over_seconds"] < 6 + 1 + 10, row  # lease duration + retry period, and a busy machine


def test_an_edge_with_a_reconcile_running_into_it_sends_one_patch_per_object(storm):
    row = storms.edge_count(storm, objects=200, interval_seconds=5)
    assert row["changed"] == 200 and row["patches"] == 200, row
    assert row["conflicts_after_retries"] == 0 and row["failed"] == 0 and row["wrong"] == 0, row
    assert row["missing"] == 0 and row["duplicate"] == 0, row
