"""The exact patches and Events a pause, resume or scale-up sends, per kind,
worked out in memory. The cluster tests prove only what the API server adds
(the guard, the 409, the stored object)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scaler.cluster import actions, keda, writes
from scaler.cluster.actions import ActionRecord
from scaler.cluster.kinds import DEPLOYMENT, INFERENCESERVICE, STATEFULSET, ScaledKind
from scaler.cluster.kube import Resource
from scaler.cluster.workloads import Workload
from scaler.cluster.writes import Outcome
from scaler.decide.annotations import (
    KEDA_BEFORE,
    KEDA_PAUSED_REPLICAS,
    KSERVE_STOP,
    LAST_ACTION,
    LAST_REPLICAS,
    MANUAL_PAUSE,
    NODES,
    OVERRIDE_UNTIL,
    PAUSE_CAUSE,
    PAUSE_REASON,
    PAUSED_AT,
    PAUSED_BY,
    READY_AT,
    READY_REPLICAS,
    STARTED_AT,
    WARM_UPS,
)
from scaler.decide.times import parse_time

NOW = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
STAMP = "2026-03-29T01:30:00Z"
VLLM = ScaledKind("vllmservers.serving.example.com/v1", Resource("serving.example.com", "v1", "vllmservers"),
                  size_field=("spec", "size"), template_path=("spec", "podTemplate", "spec"))
GPU_POD = {"containers": [{"name": "m", "resources": {"limits": {"nvidia.com/gpu": "2"}}}]}


def obj(kind, replicas, annotations=None, **extra) -> Workload:
    meta = {"name": "chat", "namespace": "llm", "uid": "u-1", "resourceVersion": "41",
            "annotations": dict(annotations or {})}
    if kind is INFERENCESERVICE:
        if replicas == 0:
            meta["annotations"][KSERVE_STOP] = "true"
        spec = {"predictor": {"minReplicas": max(replicas, 1), "model": {"resources": {"limits":
                                                                                        {"nvidia.com/gpu": "2"}}}}}
    elif kind is VLLM:
        spec = {"size": replicas, "podTemplate": {"spec": GPU_POD}}
    else:
        spec = {"replicas": replicas, "template": {"spec": GPU_POD}}
    return Workload(kind, {"metadata": meta, "spec": spec, **extra})


def record(last=3, by="policy/nightly", **more):
    return {LAST_REPLICAS: str(last), PAUSED_AT: "2026-03-28T22:00:00Z", PAUSED_BY: by,
            PAUSE_REASON: "idle", PAUSE_CAUSE: "idle-timeout", **more}


SCALE_TO = {
    DEPLOYMENT: lambda n: {"spec": {"replicas": n}},
    STATEFULSET: lambda n: {"spec": {"replicas": n}},
    VLLM: lambda n: {"spec": {"size": n}},
    INFERENCESERVICE: lambda n: {"metadata": {"annotations": {KSERVE_STOP: "true" if n == 0 else None}}},
}
KINDS = [pytest.param(kind, id=kind.name.split(".")[0]) for kind in SCALE_TO]


STARTING = {"metadata": {"annotations": {STARTED_AT: STAMP, READY_AT: None}}}


def merged(*parts):
    return writes.merge(*parts)


@pytest.mark.parametrize("kind", KINDS)
def test_policy_pause_records_the_count_and_the_zero_in_one_patch(kind):
    current = obj(kind, 1 if kind is INFERENCESERVICE else 3)
    write = writes.pause(current, by="policy/nightly", reason="idle 30m", cause="idle-timeout", now=NOW)
    before = current.replicas
    assert write.patch == merged({"metadata": {"annotations": {
        LAST_REPLICAS: str(before), PAUSED_AT: STAMP, PAUSED_BY: "policy/nightly", PAUSE_REASON: "idle 30m",
        PAUSE_CAUSE: "idle-timeout", OVERRIDE_UNTIL: None, NODES: None}}}, SCALE_TO[kind](0))
    assert (write.outcome, write.before, write.after, write.gpus) == (Outcome.CHANGED, before, 0, 2 * before)
    assert write.event == ("ScaledToZero", "Normal")
    assert write.message == (f"scaled to zero from {before} replicas by policy/nightly: idle 30m; "
                             f"{2 * before} GPUs freed")


def test_a_pause_records_its_nodes_in_the_same_patch_and_a_resume_removes_them():
    """The nodes record goes with the count and the zero (no nodes known:
    a leftover record is removed); a resume removes it with the pause state."""
    record = '{"v":1,"pausedAt":"' + STAMP + '","nodes":[{"name":"gpu-a1","freedGpus":6}]}'
    write = writes.pause(obj(DEPLOYMENT, 3), by="policy/nightly", reason="idle", cause="idle-timeout", now=NOW,
                         nodes=record)
    assert write.patch["metadata"]["annotations"][NODES] == record
    assert write.patch["spec"] == {"replicas": 0}
    paused = obj(DEPLOYMENT, 0, {LAST_REPLICAS: "3", PAUSED_AT: STAMP, PAUSED_BY: "policy/nightly",
                                 NODES: record})
    resumed = writes.resume(paused, by="policy/nightly", reason="window", replicas=3, now=NOW)
    assert resumed.patch["metadata"]["annotations"][NODES] is None


@pytest.mark.parametrize("kind", KINDS)
def test_manual_pause_is_durable(kind):
    write = writes.pause(obj(kind, 1), by="manual", reason="maintenance", cause=None, now=NOW)
    annotations = write.patch["metadata"]["annotations"]
    assert annotations[MANUAL_PAUSE] == "true"
    assert annotations[PAUSE_CAUSE] == "manual"
    assert annotations[LAST_REPLICAS] == "1"


def test_manual_pause_of_a_workload_a_policy_paused_keeps_its_record():
    write = writes.pause(obj(DEPLOYMENT, 0, record()), by="manual", reason="hold", cause=None, now=NOW)
    assert write.patch == {"metadata": {"annotations": {MANUAL_PAUSE: "true", PAUSED_BY: "manual",
                                                        PAUSE_REASON: "hold"}}}
    assert write.event == ("PausedManually", "Normal")
    assert "already paused by policy/nightly" in write.message


def test_manual_pause_of_a_workload_at_zero_without_record_dates_itself():
    write = writes.pause(obj(DEPLOYMENT, 0), by="manual", reason="hold", cause=None, now=NOW)
    assert write.patch["metadata"]["annotations"][PAUSED_AT] == STAMP
    assert LAST_REPLICAS not in write.patch["metadata"]["annotations"]  # never record 0


@pytest.mark.parametrize(("annotations", "by", "says"), [
    pytest.param(record(), "policy/nightly", "already paused by policy/nightly", id="policy-paused"),
    pytest.param({MANUAL_PAUSE: "true"}, "policy/nightly", "already paused manually", id="manual-paused"),
    pytest.param({}, "policy/nightly", "already paused (at 0 replicas)", id="zero-no-record"),
    pytest.param({MANUAL_PAUSE: "true", **record(by="manual")}, "manual", "already paused manually",
                 id="manual-again"),
])
def test_pausing_what_is_at_zero_sends_nothing(annotations, by, says):
    write = writes.pause(obj(DEPLOYMENT, 0, annotations), by=by, reason="r", cause=None, now=NOW)
    assert write.patch is None and write.outcome is Outcome.UNCHANGED and write.message == says


@pytest.mark.parametrize("kind", KINDS)
def test_resume_restores_the_recorded_count_and_removes_every_scaler_annotation(kind):
    last = 1 if kind is INFERENCESERVICE else 3
    current = obj(kind, 0, {**record(last), "team": "a", "scaler.io/exclude": "false"})
    write = writes.resume(current, by="policy/nightly", reason="window", replicas=last, now=NOW)
    cleared = {key: None for key in (LAST_REPLICAS, PAUSED_AT, PAUSED_BY, PAUSE_REASON, PAUSE_CAUSE)}
    assert write.patch == merged({"metadata": {"annotations": cleared}}, STARTING, SCALE_TO[kind](last))
    assert (write.outcome, write.before, write.after, write.gpus) == (Outcome.CHANGED, 0, last, 2 * last)
    assert write.event == ("Resumed", "Normal")


@pytest.mark.parametrize(("annotations", "decided", "target", "source"), [
    pytest.param(record(3), 3, 3, "recorded by policy/nightly", id="recorded"),
    pytest.param(record(3), 5, 5, "recorded 3", id="queue-wants-more"),
    pytest.param({**record(3), LAST_REPLICAS: "0"}, 2, 2, "the recorded count '0' is not a replica count",
                 id="recorded-zero-is-no-record"),
    pytest.param({**record(3), LAST_REPLICAS: "junk"}, 2, 2, "the recorded count 'junk' is not a replica count",
                 id="unreadable-record"),
    pytest.param({PAUSED_AT: "2026-03-28T22:00:00Z", PAUSED_BY: "policy/nightly"}, 2, 2, "no recorded count",
                 id="no-record"),
])
def test_a_policys_resume_applies_the_size_its_decision_chose(annotations, decided, target, source):
    write = writes.resume(obj(DEPLOYMENT, 0, annotations), by="policy/nightly", reason="r", replicas=decided,
                          now=NOW)
    assert write.patch["spec"] == {"replicas": target}
    assert f"({source}" in write.message


@pytest.mark.parametrize(("annotations", "minimum", "target", "source"), [
    pytest.param(record(3), 1, 3, "recorded by policy/nightly", id="recorded"),
    pytest.param({**record(3), LAST_REPLICAS: " 3 "}, 1, 3, "recorded by policy/nightly", id="spaces-around-it"),
    pytest.param({**record(3), LAST_REPLICAS: "0"}, 2, 2,
                 "the recorded count '0' is not a replica count (digits, 1 to 2147483647), used the minimum 2",
                 id="recorded-zero-is-no-record"),
    pytest.param({**record(3), LAST_REPLICAS: "junk"}, 2, 2,
                 "the recorded count 'junk' is not a replica count (digits, 1 to 2147483647), used the minimum 2",
                 id="unreadable-record"),
    pytest.param({**record(3), LAST_REPLICAS: "99999999999"}, 2, 2,
                 "the recorded count '99999999999' is not a replica count", id="record-past-int32"),
    pytest.param({**record(3), LAST_REPLICAS: "3_0"}, 2, 2, "the recorded count '3_0' is not a replica count",
                 id="underscores-are-not-digits"),
    pytest.param({**record(3), LAST_REPLICAS: "\u0663"}, 2, 2, "the recorded count '\u0663' is not",
                 id="ascii-digits-only"),
    pytest.param({**record(3), LAST_REPLICAS: "3.0"}, 2, 2, "the recorded count '3.0' is not a replica count",
                 id="no-decimal-point"),
    pytest.param({**record(3), LAST_REPLICAS: ""}, 2, 2, "the recorded count '' is not a replica count",
                 id="empty"),
    pytest.param({MANUAL_PAUSE: "true"}, 4, 4, "no recorded count, used the minimum 4",
                 id="manual-without-count"),
])
def test_a_manual_resume_sizes_itself_from_the_record(annotations, minimum, target, source):
    write = writes.manual_resume(obj(DEPLOYMENT, 0, annotations), reason="r", minimum=minimum, now=NOW)
    assert write.patch["spec"] == {"replicas": target}
    assert f"({source}" in write.message


def test_a_policy_never_resumes_a_manual_pause():
    write = writes.resume(obj(DEPLOYMENT, 0, {MANUAL_PAUSE: "true", **record(by="manual")}), by="policy/p",
                          reason="window", replicas=3, now=NOW)
    assert write.patch is None and write.outcome is Outcome.SKIPPED
    assert "only a manual resume" in write.message


@pytest.mark.parametrize("replicas", [0, 2])
def test_resume_leaves_what_scaler_did_not_pause(replicas):
    write = writes.manual_resume(obj(DEPLOYMENT, replicas, {"team": "a"}), reason="r", minimum=1, now=NOW)
    assert write.patch is None and write.outcome is Outcome.UNCHANGED
    assert write.message.startswith("not paused:")


def test_someone_resized_it_while_paused_the_record_goes_and_override_until_is_set():
    until = datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    reason = "someone set replicas to 5 while policy/nightly had it paused (recorded 3): leaving 5"
    write = writes.hands_off(obj(DEPLOYMENT, 5, record(3)), by="policy/nightly", reason=reason, until=until)
    annotations = write.patch["metadata"]["annotations"]
    assert annotations[OVERRIDE_UNTIL] == "2026-03-30T07:00:00Z"
    assert annotations[LAST_REPLICAS] is None
    assert "spec" not in write.patch  # the person's 5 stays
    assert write.outcome is Outcome.SKIPPED and write.event == ("ResumeSkipped", "Normal")
    assert write.message == (f"{reason}; cleared the pause record; policy/nightly leaves it alone until "
                             "2026-03-30T07:00:00Z")  # the decision's sentence, then what was written
    assert writes.hands_off(obj(DEPLOYMENT, 0, record(3)), by="policy/nightly", reason=reason,
                            until=until).patch is None  # paused again meanwhile: nothing to record


def test_a_manual_resume_of_a_workload_someone_resized_while_paused_leaves_their_size():
    write = writes.manual_resume(obj(DEPLOYMENT, 5, record(3)), reason="r", minimum=1, now=NOW)
    assert write.patch == {"metadata": {"annotations": {key: None for key in record(3)}}}
    assert write.outcome is Outcome.SKIPPED and write.event == ("ResumeSkipped", "Normal")
    assert write.message == "someone set replicas to 5 while it was paused (recorded 3); left 5 and cleared the " \
                            "pause record"


@pytest.mark.parametrize(("kind", "before", "wanted", "patch", "outcome"), [
    pytest.param(DEPLOYMENT, 1, 3, {"spec": {"replicas": 3}}, Outcome.CHANGED, id="deployment-grows"),
    pytest.param(STATEFULSET, 2, 4, {"spec": {"replicas": 4}}, Outcome.CHANGED, id="statefulset-grows"),
    pytest.param(VLLM, 1, 2, {"spec": {"size": 2}}, Outcome.CHANGED, id="custom-scale-path"),
    pytest.param(DEPLOYMENT, 3, 2, None, Outcome.UNCHANGED, id="never-shrinks"),
    pytest.param(DEPLOYMENT, 3, 3, None, Outcome.UNCHANGED, id="same-size"),
    pytest.param(DEPLOYMENT, 0, 3, None, Outcome.UNCHANGED, id="paused-waits-for-a-wake"),
    pytest.param(INFERENCESERVICE, 1, 3, None, Outcome.UNCHANGED, id="inferenceservice-not-sized"),
])
def test_scale_up(kind, before, wanted, patch, outcome):
    write = writes.scale_up(obj(kind, before), replicas=wanted, by="policy/q", reason="queue 9", now=NOW)
    assert (write.patch, write.outcome) == (merged(STARTING, patch) if patch else None, outcome)
    if patch:
        assert write.gpus == 2 * (wanted - before) and write.event == ("ScaledUp", "Normal")


GUARDS = [{"op": "test", "path": "/metadata/annotations/scaler.io~1" + key.split("/")[1], "value": None}
          for key in sorted(writes.GUARDED_ANNOTATIONS)]


def test_pause_as_json_patch_tests_the_count_and_the_record_then_writes_both():
    current = obj(DEPLOYMENT, 3, {"team": "a"})
    write = writes.pause(current, by="policy/p", reason="idle", cause="idle-timeout", now=NOW)
    operations = writes.json_patch(write.patch, current)
    tests = [op for op in operations if op["op"] == "test"]
    assert {"op": "test", "path": "/spec/replicas", "value": 3} in tests
    assert sorted(GUARDS, key=str) == sorted([op for op in tests if op["path"].startswith("/metadata")], key=str)
    changes = [op for op in operations if op["op"] != "test"]
    assert {"op": "add", "path": "/spec/replicas", "value": 0} in changes
    assert {"op": "add", "path": "/metadata/annotations/scaler.io~1last-replicas", "value": "3"} in changes
    assert operations.index(tests[-1]) < operations.index(changes[0])  # every test before any change
    assert all("team" not in op["path"] for op in operations)  # other annotations: not guarded, not written
    assert not any(op["path"].endswith("override-until") and op["op"] == "remove" for op in operations)


def test_resume_removes_only_the_annotations_that_are_there():
    current = obj(DEPLOYMENT, 0, record(3))
    write = writes.resume(current, by="policy/p", reason="window", replicas=3, now=NOW)
    operations = writes.json_patch(write.patch, current)
    removed = sorted(op["path"] for op in operations if op["op"] == "remove")
    assert removed == sorted(f"/metadata/annotations/scaler.io~1{key.split('/')[1]}"
                             for key in (LAST_REPLICAS, PAUSED_AT, PAUSED_BY, PAUSE_REASON, PAUSE_CAUSE))
    assert {"op": "test", "path": "/metadata/annotations/scaler.io~1last-replicas", "value": "3"} in operations
    assert {"op": "test", "path": "/spec/replicas", "value": 0} in operations


def test_an_object_without_annotations_gets_the_map_whole():
    current = obj(DEPLOYMENT, 2)
    del current.obj["metadata"]["annotations"]
    write = writes.pause(current, by="policy/p", reason="idle", cause="idle-timeout", now=NOW)
    operations = writes.json_patch(write.patch, current)
    assert {"op": "test", "path": "/metadata/annotations", "value": None} in operations
    added = [op for op in operations if op["path"] == "/metadata/annotations" and op["op"] == "add"]
    assert added[0]["value"] == {LAST_REPLICAS: "2", PAUSED_AT: STAMP, PAUSED_BY: "policy/p", PAUSE_REASON: "idle",
                                 PAUSE_CAUSE: "idle-timeout"}


def test_inferenceservice_guard_is_its_stop_annotation():
    current = obj(INFERENCESERVICE, 1)
    write = writes.pause(current, by="policy/p", reason="idle", cause="idle-timeout", now=NOW)
    operations = writes.json_patch(write.patch, current)
    assert {"op": "test", "path": "/metadata/annotations/serving.kserve.io~1stop", "value": None} in operations
    assert {"op": "add", "path": "/metadata/annotations/serving.kserve.io~1stop", "value": "true"} in operations


def test_custom_resource_guard_is_its_scale_path():
    current = obj(VLLM, 2)
    operations = writes.json_patch(writes.scale_up(current, replicas=4, by="p", reason="q", now=NOW).patch, current)
    assert {"op": "test", "path": "/metadata/annotations/scaler.io~1last-replicas", "value": None} in operations
    assert {"op": "test", "path": "/spec/size", "value": 2} in operations
    assert {"op": "add", "path": "/spec/size", "value": 4} in operations


def test_a_write_that_keeps_the_size_still_tests_the_size_it_was_worked_out_from():
    """A human override drops the record of a workload found running: landing on one set back to 0 since,
    it would drop the count a resume needs. Below a missing parent no test is sent (the server refuses it)."""
    current = obj(DEPLOYMENT, 2, record(4))
    write = writes.hands_off(current, by="scaler", reason="someone set replicas to 2", until=NOW)
    assert {"op": "test", "path": "/spec/replicas", "value": 2} in writes.json_patch(write.patch, current)
    nested = ScaledKind("x.example.com/v1", Resource("example.com", "v1", "xs"), size_field=("spec", "worker", "size"))
    current = Workload(nested, {"metadata": {"name": "x", "annotations": record(4)}, "spec": {}})
    write = writes.hands_off(current, by="scaler", reason="r", until=NOW)
    assert not any(op["path"].startswith("/spec") for op in writes.json_patch(write.patch, current))


def test_event_names_the_object_the_reporter_and_the_action():
    record = ActionRecord.new(reason="Resumed", type_="Normal", message="x" * 2000, now=NOW)
    body = actions.event(obj(STATEFULSET, 0), record, component="scaler", instance="pod-a")
    assert body["involvedObject"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "chat",
                                      "namespace": "llm", "uid": "u-1", "resourceVersion": "41"}
    assert (body["reason"], body["type"], len(body["message"])) == ("Resumed", "Normal", 1024)
    # Named after the action, so a second post of it is refused as a name taken: one Event.
    assert body["metadata"] == {"name": f"chat.{record.id}", "namespace": "llm",
                                "labels": {"app.kubernetes.io/managed-by": "scaler"}}
    assert (body["reportingComponent"], body["reportingInstance"]) == ("scaler", "pod-a")
    assert body["firstTimestamp"] == body["lastTimestamp"] == STAMP


def test_an_action_record_reads_back_and_refuses_what_is_not_one():
    record = ActionRecord.new(reason="ScaledToZero", type_="Normal", message="m", now=NOW)
    annotations = record.annotation()["metadata"]["annotations"]
    assert ActionRecord.read(annotations) == record
    bad_id = '{"id": "../x", "reason": "r", "type": "t", "message": "m", "at": "2026-01-01T00:00:00Z"}'
    bad_time = '{"id": "ab", "reason": "r", "type": "t", "message": "m", "at": "no"}'
    for bad in ("", "{", "[]", '{"id": "x"}', bad_id, bad_time):
        assert ActionRecord.read({LAST_ACTION: bad}) is None, bad


def test_an_event_name_is_a_dns_subdomain_whatever_the_workload_name():
    assert len(actions.event_name("w" * 253, "0123456789abcdef")) <= 253


def scaled_object(name, target, kind=None, paused=None, before=None):
    ref = {"name": target, **({"kind": kind} if kind else {})}
    annotations = {KEDA_PAUSED_REPLICAS: paused} if paused is not None else {}
    annotations |= {KEDA_BEFORE: before} if before is not None else {}
    return {"metadata": {"name": name, "annotations": annotations}, "spec": {"scaleTargetRef": ref}}


def _so(**change):
    return [("so", {"metadata": {"annotations": change}})]


@pytest.mark.parametrize(("kind", "items", "paused", "expected"), [
    pytest.param(DEPLOYMENT, [scaled_object("so", "chat")], True,
                 _so(**{KEDA_PAUSED_REPLICAS: "0", KEDA_BEFORE: ""}), id="pause-pauses-keda"),
    pytest.param(DEPLOYMENT, [scaled_object("so", "chat", paused="0", before="")], False,
                 _so(**{KEDA_PAUSED_REPLICAS: None, KEDA_BEFORE: None}), id="resume-hands-back"),
    pytest.param(DEPLOYMENT, [scaled_object("so", "chat", paused="2")], True,
                 _so(**{KEDA_PAUSED_REPLICAS: "0", KEDA_BEFORE: "2"}), id="pause-keeps-a-persons-keda-pause"),
    pytest.param(DEPLOYMENT, [scaled_object("so", "chat", paused="0", before="2")], False,
                 _so(**{KEDA_PAUSED_REPLICAS: "2", KEDA_BEFORE: None}), id="resume-puts-it-back"),
    pytest.param(DEPLOYMENT, [scaled_object("so", "chat", paused="3", before="2")], False,
                 _so(**{KEDA_BEFORE: None}), id="a-value-set-during-the-pause-stays"),
    pytest.param(DEPLOYMENT, [scaled_object("so", "chat", paused="0")], False,
                 _so(**{KEDA_PAUSED_REPLICAS: None}), id="an-older-scalers-pause-handed-back"),
    pytest.param(DEPLOYMENT, [scaled_object("so", "chat", paused="0")], True, [], id="already-paused"),
    pytest.param(DEPLOYMENT, [scaled_object("so", "chat", paused="2")], False, [], id="a-persons-value-left"),
    pytest.param(DEPLOYMENT, [scaled_object("so", "chat")], False, [], id="already-handed-back"),
    pytest.param(DEPLOYMENT, [scaled_object("so", "other")], True, [], id="other-target"),
    pytest.param(DEPLOYMENT, [scaled_object("so", "chat", kind="StatefulSet")], True, [], id="other-kind"),
    pytest.param(STATEFULSET, [scaled_object("so", "chat", kind="StatefulSet")], True,
                 _so(**{KEDA_PAUSED_REPLICAS: "0", KEDA_BEFORE: ""}), id="statefulset"),
    pytest.param(VLLM, [scaled_object("so", "chat", kind="vllmservers.serving.example.com/v1")], True, [],
                 id="custom-resource-not-handed"),
])
def test_keda_side_effect(kind, items, paused, expected):
    targets = keda.scaled_objects_for(obj(kind, 1), items)
    assert keda.keda_hand_over(targets, paused=paused) == expected


def test_a_start_is_recorded_with_the_resume_and_ready_ends_it_with_the_warm_up():
    current = obj(DEPLOYMENT, 0, record(3))
    resumed = writes.resume(current, by="policy/p", reason="queue", replicas=3, now=NOW)
    assert resumed.patch["metadata"]["annotations"][STARTED_AT] == STAMP
    assert resumed.patch["metadata"]["annotations"][READY_AT] is None
    loaded = obj(DEPLOYMENT, 3, {STARTED_AT: STAMP, WARM_UPS: "50,61,x,-3,nan"})
    ready = writes.record_ready(loaded, now=NOW.replace(minute=31, second=14))
    assert ready.patch == {"metadata": {"annotations": {READY_AT: "2026-03-29T01:31:14Z", READY_REPLICAS: "3",
                                                        WARM_UPS: "50,61,74"}}}
    assert ready.event == ("Ready", "Normal") and ready.message.startswith("Ready 74s after its start")


def test_warm_ups_keep_the_last_five():
    loaded = obj(DEPLOYMENT, 1, {STARTED_AT: STAMP, WARM_UPS: "1,2,3,4,5"})
    ready = writes.record_ready(loaded, now=NOW.replace(second=9))
    assert ready.patch["metadata"]["annotations"][WARM_UPS] == "2,3,4,5,9"


@pytest.mark.parametrize("micro", [1, 400_000, 999_999])
def test_ready_is_stamped_up_so_the_startup_grace_is_never_short(micro):
    """Annotations carry whole seconds. Ready seen at 01:30:07.4 is stamped
    01:30:08: a grace counted from 01:30:07 would end up to 1 s early."""
    seen = NOW.replace(second=7, microsecond=micro)
    stamp = writes.record_ready(obj(DEPLOYMENT, 2), now=seen).patch["metadata"]["annotations"][READY_AT]
    assert stamp == "2026-03-29T01:30:08Z" and parse_time(stamp) >= seen


def test_ready_without_a_recorded_start_has_no_warm_up():
    ready = writes.record_ready(obj(DEPLOYMENT, 2), now=NOW)
    assert ready.patch == {"metadata": {"annotations": {READY_AT: STAMP, READY_REPLICAS: "2"}}}


@pytest.mark.parametrize("recorded, replicas, relapse", [
    pytest.param("1", 2, False, id="scaled-up-since-ready"),
    pytest.param("2", 2, True, id="same-size"),
    pytest.param("3", 2, True, id="scaled-down-since-ready"),
    pytest.param(None, 2, True, id="ready-recorded-without-its-count"),
])
def test_a_pause_soon_after_ready_undoes_that_ready_only_on_a_relapse(recorded, replicas, relapse):
    """One replica NotReady 10 s after all were Ready: a relapse (that Ready was
    no warm-up) unless more replicas are wanted than then (a scale-up is a new start)."""
    ready = {READY_AT: "2026-03-29T01:29:50Z", **({READY_REPLICAS: recorded} if recorded else {})}
    current = obj(DEPLOYMENT, replicas, {STARTED_AT: "2026-03-29T01:29:00Z", WARM_UPS: "40,50", **ready},
                  status={"readyReplicas": replicas - 1})
    values = writes.pause(current, by="policy/p", reason="idle", cause="idle-timeout", now=NOW).patch["metadata"][
        "annotations"]
    undone = {READY_AT: None, WARM_UPS: "40", **({READY_REPLICAS: None} if recorded else {})}
    assert {key: values[key] for key in undone if key in values} == (undone if relapse else {})


def test_someone_elses_start_is_recorded():
    started = writes.record_start(obj(DEPLOYMENT, 2, {READY_AT: "2026-03-28T00:00:00Z"}), now=NOW)
    assert started.patch == STARTING and started.event is None


@pytest.mark.parametrize("kind", KINDS)
def test_a_queue_wakes_a_zero_scaler_did_not_pause_and_leaves_no_record(kind):
    """Rule 3a at zero without a record: on the branch point (575e6f6) the
    write layer answered 'not paused' and sent nothing, so `plan` showed
    'resume 0 -> 3' forever and the daemon logged it every wake tick."""
    write = writes.resume(obj(kind, 0, {PAUSE_CAUSE: "idle-timeout", "team": "a"}), by="policy/q",
                          reason="queue 10 > activation threshold 0", replicas=3, now=NOW)
    runs = 1 if kind is INFERENCESERVICE else 3  # KServe sizes a service (its minReplicas, 1 here); scaler starts it
    assert write.outcome is Outcome.CHANGED and (write.before, write.after) == (0, runs)
    assert write.patch == merged({"metadata": {"annotations": {PAUSE_CAUSE: None}}}, STARTING, SCALE_TO[kind](3))
    assert write.event == ("Resumed", "Normal")
    assert "not paused by scaler" in write.message


def test_a_manual_resume_still_leaves_a_zero_scaler_did_not_pause():
    write = writes.resume(obj(DEPLOYMENT, 0, {}), by="manual", reason="r", replicas=3, now=NOW)
    assert write.patch is None and write.message.startswith("not paused:")


def test_a_revert_drops_the_record_writes_the_back_off_and_reports_only_the_first():
    current = obj(DEPLOYMENT, 2, {LAST_REPLICAS: "2", "scaler.io/paused-by": "policy/p", "scaler.io/paused-at": "x"})
    record = {"scaler.io/reverted-by": "argocd-controller", "scaler.io/reverts": "1",
              "scaler.io/backoff-until": "2026-03-29T01:35:00Z"}
    reason = ("pause reverted by argocd-controller (1 time in a row): replicas set back to 2 while policy/p had "
              "it paused (recorded 2): leaving 2 and backing off; add ignoreDifferences for /spec/replicas")
    first = writes.reverted(current, reason=reason, record=record, first=True)
    assert first.patch == {"metadata": {"annotations": {LAST_REPLICAS: None, "scaler.io/paused-by": None,
                                                        "scaler.io/paused-at": None, **record}}}
    assert first.event == ("PauseReverted", "Warning")
    assert first.message == f"{reason}; not pausing again before 2026-03-29T01:35:00Z"  # the decision's sentence
    assert writes.reverted(current, reason=reason, record=record, first=False).event is None
    assert writes.reverted(obj(DEPLOYMENT, 0, {LAST_REPLICAS: "2"}), reason=reason, record=record,
                           first=True).patch is None


def test_resume_with_a_hold_writes_it_and_a_real_resume_clears_the_revert_state():
    hold = {"scaler.io/hold-up-until": "2026-03-29T03:30:00Z", "scaler.io/hold-up-from": "2026-03-29T01:30:00Z"}
    paused = obj(DEPLOYMENT, 0, {LAST_REPLICAS: "3", "scaler.io/paused-by": "manual", "scaler.io/reverts": "2"})
    write = writes.manual_resume(paused, reason="r", minimum=1, hold=hold, now=NOW)
    assert write.patch["metadata"]["annotations"] == {LAST_REPLICAS: None, "scaler.io/paused-by": None,
                                                      "scaler.io/reverts": None, **hold, STARTED_AT: STAMP,
                                                      READY_AT: None}
    assert write.after == 3 and "held up until 2026-03-29T03:30:00Z" in write.message
    running = writes.manual_resume(obj(DEPLOYMENT, 2), reason="r", minimum=1, hold=hold, now=NOW)
    assert (running.patch, running.outcome) == ({"metadata": {"annotations": hold}}, writes.Outcome.CHANGED)
    held = obj(DEPLOYMENT, 2, hold)
    assert writes.manual_resume(held, reason="r", minimum=1, hold=hold, now=NOW).patch is None
