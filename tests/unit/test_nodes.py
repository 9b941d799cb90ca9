"""The record of a pause's nodes (`scaler.io/nodes`) and what one pass of
the follower makes of it: states, release times, the one Warning and the
release Event, the sentences of `scaler status`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from scaler.cluster import releases, writes
from scaler.cluster.kinds import DEPLOYMENT
from scaler.cluster.nodes import (
    HELD,
    RELEASED,
    REUSED,
    Assessment,
    Blocker,
    NodeFacts,
    NodeRecord,
    NodesRecord,
    gpus_by_node,
    record_at_pause,
    summary,
)
from scaler.cluster.workloads import Workload
from scaler.decide.annotations import NODES
from scaler.decide.times import rfc3339

PAUSED = datetime(2026, 12, 5, 3, 25, 34, tzinfo=UTC)
FACTS = NodeFacts(8, "gpu-8x", "local-a", "on-demand", "gpu")
DND = Blocker("do-not-disrupt", "pod rec/held-1 (Deployment held, not a DaemonSet) has karpenter.sh/do-not-disrupt")


def record(*nodes: NodeRecord) -> NodesRecord:
    return NodesRecord(rfc3339(PAUSED), nodes)


def at(seconds: float) -> datetime:
    return PAUSED + timedelta(seconds=seconds)


def step(before: NodesRecord, seen: dict, seconds: float, warn_after: float = 1800):
    return releases.advance(before, seen, now=at(seconds), warn_after_seconds=warn_after)


def test_a_pause_records_each_node_with_the_gpus_its_pods_held_there():
    pods = [{"spec": {"nodeName": name, "containers": [{"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]},
             "status": {"phase": phase}}
            for name, gpus, phase in (("b", 2, "Running"), ("a", 2, "Running"), ("b", 2, "Pending"),
                                      ("c", 2, "Succeeded"), ("d", 0, "Running"))]
    pods.append({"spec": {"containers": []}, "status": {"phase": "Pending"}})  # not scheduled yet
    held = gpus_by_node(pods, ("nvidia.com/gpu",))
    assert held == {"b": 4, "a": 2}
    made = record_at_pause(held, facts={"a": FACTS}, now=PAUSED)
    assert [(n.name, n.freed_gpus, n.facts, n.state, n.checked) for n in made.nodes] == [
        ("b", 4, None, HELD, False), ("a", 2, FACTS, HELD, False)]
    assert made.paused_at == "2026-12-05T03:25:34Z"


def test_the_last_node_released_ends_following_with_one_event():
    before = record(NodeRecord("gpu-a1", 8))
    held = step(before, {"gpu-a1": Assessment(HELD, (DND,), FACTS)}, 10)
    assert held.event is None and held.released == ()
    node = held.record.nodes[0]
    assert (node.checked, node.blockers, node.blocked_by, node.facts) == (True, (DND.text,), "do-not-disrupt", FACTS)
    gone = step(held.record, {"gpu-a1": Assessment(RELEASED, released_at=at(23.4))}, 30)
    assert gone.event == ("NodesReleased", "Normal",
                          "GPU node gpu-a1 released 23 s after the pause; 8 GPUs off the bill")
    released = gone.record.nodes[0]
    assert (released.state, released.released_at, released.released_after_seconds, released.blockers,
            released.facts) == (RELEASED, "2026-12-05T03:25:57Z", 23.4, (), FACTS)
    assert gone.released == (released,)
    # Done: a later pass changes nothing and says nothing.
    assert step(gone.record, {"gpu-a1": Assessment(HELD, (DND,))}, 60) == releases.Step(gone.record)


def test_a_node_gone_before_it_was_ever_seen_is_released_without_its_gpus():
    gone = step(record(NodeRecord("gpu-a1", 8)), {"gpu-a1": Assessment(RELEASED, released_at=at(20))}, 30)
    assert gone.event[2] == ("GPU node gpu-a1 released 20 s after the pause; the node's GPUs were not seen before "
                             "it went")


def test_two_nodes_one_event_when_the_last_goes_and_a_reused_one_is_named():
    both = record(NodeRecord("a", 4, FACTS), NodeRecord("b", 4, FACTS), NodeRecord("c", 2, FACTS))
    first = step(both, {"a": Assessment(RELEASED, released_at=at(25)), "b": Assessment(HELD, (DND,)),
                        "c": Assessment(REUSED, reused_by="batch/job-1")}, 30)
    assert first.event is None and [n.name for n in first.released] == ["a"]
    assert summary(first.record) == f"1 released 25s after pause, 1 reused, 1 held (b: {DND.text})"
    last = step(first.record, {"b": Assessment(RELEASED, released_at=at(41))}, 45)
    assert last.event == ("NodesReleased", "Normal", "GPU nodes a, b released 25-41 s after the pause; 16 GPUs off "
                                                     "the bill; GPUs on node c taken by pod batch/job-1")
    assert summary(last.record) == "2 released 25-41s after pause, 1 reused"


def test_gpus_reused_end_following_with_their_own_event():
    taken = step(record(NodeRecord("a", 4, FACTS)), {"a": Assessment(REUSED, reused_by="batch/job-1")}, 30)
    assert taken.event == ("NodesReused", "Normal", "GPUs on node a taken by pod batch/job-1")
    assert summary(taken.record) == "reused by batch/job-1"


def test_a_node_the_pause_did_not_see_gets_its_uid_at_the_first_look_only():
    """`scaler pause` has no Node cache: the follower's first look records the
    uid; a record that was checked without one (written before uids were
    kept) stays without, and follows the node by name as it did."""
    first = step(record(NodeRecord("a", 3)), {"a": Assessment(HELD, (DND,), FACTS, uid="u-1")}, 10).record
    assert json.loads(first.annotation())["nodes"][0]["uid"] == "u-1"
    old = step(record(NodeRecord("a", 3, checked=True)), {"a": Assessment(HELD, (DND,), FACTS, uid="u-2")}, 10)
    assert "uid" not in json.loads(old.record.annotation())["nodes"][0]
    kept = step(first, {"a": Assessment(HELD, (DND,), FACTS, uid="u-2")}, 20).record
    assert kept.nodes[0].uid == "u-1"


def test_a_node_held_past_the_threshold_is_warned_of_once():
    held = {"a": Assessment(HELD, (DND,), FACTS)}
    before = step(record(NodeRecord("a", 3)), held, 60, warn_after=120)
    assert before.event is None
    due = step(before.record, held, 121, warn_after=120)
    assert due.event == ("NodesHeld", "Warning", f"GPU node a still held 2m1s after the pause (3 GPUs freed, not off "
                                                 f"the bill): {DND.text}")
    assert due.record.nodes[0].warned_at == "2026-12-05T03:27:35Z"
    assert step(due.record, held, 500, warn_after=120).event is None


def test_a_node_never_checked_is_not_warned_of():
    assert step(record(NodeRecord("a", 3)), {}, 5000, warn_after=120).event is None


def test_status_says_where_each_node_is():
    assert summary(record(NodeRecord("a", 3))) == "held: not checked yet"
    held = step(record(NodeRecord("a", 3)), {"a": Assessment(HELD, (DND,))}, 10).record
    assert summary(held) == f"held: {DND.text}"
    assert summary(record()) == "-"


RECORDS = st.builds(
    lambda name, freed, facts, state, blockers, extra, after, uid: NodeRecord(
        name, freed, facts, state, True, tuple(blockers), "pod" if blockers else None,
        rfc3339(at(after)) if state == RELEASED else None, after if state == RELEASED else None,
        "ns/p" if state == REUSED else None, None, extra, uid),
    st.integers(0, 999).map(lambda i: f"kwok-gpu-{i}"), st.integers(0, 64),
    st.none() | st.builds(NodeFacts, st.integers(0, 16), st.none() | st.text(min_size=1, max_size=12),
                          st.none() | st.text(min_size=1, max_size=12),
                          st.none() | st.sampled_from(["spot", "on-demand"]),
                          st.none() | st.text(min_size=1, max_size=8)),
    st.sampled_from([HELD, RELEASED, REUSED]), st.lists(st.text(max_size=60), max_size=3),
    st.dictionaries(st.sampled_from(["price", "priceSource", "hourly"]), st.floats(0, 100) | st.text(max_size=5),
                    max_size=2),
    st.floats(0, 1e5).map(lambda x: round(x, 1)), st.none() | st.uuids().map(str))


@given(st.lists(RECORDS, max_size=4, unique_by=lambda n: n.name),
       st.dictionaries(st.sampled_from(["savings", "note"]), st.text(max_size=20), max_size=2))
def test_the_annotation_reads_back_as_written_and_can_always_be_guarded(nodes, extra):
    """Any text (a Karpenter message with "->" or "&", a pod name, a
    person's note) makes an annotation a later write's `test` can match on
    the real server, and keys this version does not know survive a rewrite."""
    written = NodesRecord(rfc3339(PAUSED), tuple(nodes), extra)
    text = written.annotation()
    assert writes.testable(text)
    read = NodesRecord.read({NODES: text}, NODES)
    assert read == written
    assert read.extra == extra and [n.extra for n in read.nodes] == [n.extra for n in nodes]
    assert json.loads(text)["v"] == 1


def test_an_unreadable_record_is_no_record():
    for text in ("", "{", "[]", '{"nodes": []}', '{"pausedAt": 5}'):
        assert NodesRecord.read({NODES: text}, NODES) is None
    kept = NodesRecord.read({NODES: '{"pausedAt":"x","nodes":[{"name":""},{"gpus":2},"x",{"name":"a","state":"?"}]}'},
                            NODES)
    assert [(n.name, n.state) for n in kept.nodes] == [("a", HELD)]


def paused(annotation: str | None, replicas: int = 0) -> Workload:
    meta = {"name": "llm", "namespace": "rec", "resourceVersion": "5", "annotations": {}}
    if annotation is not None:
        meta["annotations"][NODES] = annotation
    return Workload(DEPLOYMENT, {"metadata": meta, "spec": {"replicas": replicas}})


def test_the_write_changes_only_the_record_and_only_while_paused_as_followed():
    before = record(NodeRecord("a", 8, FACTS))
    seen = {"a": Assessment(RELEASED, released_at=at(30))}
    kwargs = dict(paused_at=before.paused_at, now=at(31), warn_after_seconds=1800)
    write, done = releases.follow(paused(before.annotation()), seen, **kwargs)
    assert list(write.patch["metadata"]["annotations"]) == [NODES] and set(write.patch) == {"metadata"}
    assert write.event == ("NodesReleased", "Normal") and write.message == done.event[2]
    assert NodesRecord.read(write.patch["metadata"]["annotations"], NODES) == done.record
    # Resumed meanwhile, or paused again (another record): nothing to write.
    assert releases.follow(paused(before.annotation(), replicas=2), seen, **kwargs)[0].patch is None
    again = record(NodeRecord("a", 8, FACTS)).annotation().replace("03:25:34", "04:00:00")
    assert releases.follow(paused(again), seen, **kwargs)[0].patch is None
    # Nothing new: no write.
    held = step(before, {"a": Assessment(HELD, (DND,))}, 10).record
    assert releases.follow(paused(held.annotation()), {"a": Assessment(HELD, (DND,))}, **kwargs)[0].patch is None
