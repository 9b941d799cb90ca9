"""`scaler pause`, `resume` and `status` in process (scaler.cli.main.main)
against the fake API server: pause and resume with memory, kubectl's ways of
naming objects, the kinds beside Deployment, waiting for Ready. Each test
asserts what a user sees: replicas on the object, scaler's annotations, the
Event, the row, the exit code. (Moved from the cluster tier: none of it needs
a real API server; tests/cluster keeps RBAC, the HPA controller and kwok.)"""

from __future__ import annotations

import json
import threading
import time

import pytest

from scaler.cluster.batches import Selection, run_batch, select
from scaler.cluster.kinds import DEPLOYMENT
from scaler.cluster.pausing import Pauser
from scaler.cluster.writes import Outcome
from scaler.decide.annotations import (
    KEDA_PAUSED_REPLICAS,
    KSERVE_STOP,
    LAST_ACTION,
    LAST_REPLICAS,
    MANUAL_PAUSE,
    PAUSED_BY,
)
from scaler.decide.decisions import MANUAL
from tests.fakes.bodies import deployment, namespace, statefulset
from tests.helpers import pause_state, simple_crd

DEPLOYMENTS = "deployments.apps"


def _create(fake, *bodies: dict, kind: str = DEPLOYMENTS, ns: str = "llm") -> None:
    namespace(fake, ns)
    for body in bodies:
        fake.create(kind, body, namespace=ns)


def _replicas(fake, name: str, kind: str = DEPLOYMENTS) -> int:
    return fake.get(kind, "llm", name)["spec"]["replicas"]


def _ours(fake, name: str, kind: str = DEPLOYMENTS) -> dict:
    return pause_state(fake.get(kind, "llm", name)["metadata"].get("annotations"))


def _rows(ran) -> dict[str, dict]:
    assert ran.out, ran.err
    return {row["name"]: row for row in json.loads(ran.out)["results"]}


def _line(text: str, *pieces: str) -> str:
    found = [line for line in text.splitlines() if all(piece in f" {line} " for piece in pieces)]
    assert len(found) == 1, (pieces, text)
    return found[0]


def test_a_batch_of_deployments_and_statefulsets_round_trips_exactly(fake, scaler):
    original = {f"svc-{i:02d}": i % 7 + 1 for i in range(50)}
    _create(fake, *(deployment(name, replicas=count, gpus=0, labels={"batch": "yes"})
                    for name, count in original.items()))
    shards = {f"shard-{i}": replicas for i, replicas in enumerate((2, 3, 4))}
    _create(fake, *(statefulset(name, replicas=count, labels={"batch": "yes"}) for name, count in shards.items()),
            kind="statefulsets.apps")
    original |= shards
    _create(fake, deployment("bystander", replicas=2, gpus=0))

    def replicas_now() -> dict[str, tuple]:
        found = fake.items(DEPLOYMENTS, "llm") + fake.items("statefulsets.apps", "llm")
        return {o["metadata"]["name"]: (o["spec"]["replicas"], pause_state(o["metadata"].get("annotations")))
                for o in found}

    select_all = ("-n", "llm", "-l", "batch=yes", "--kind", "Deployment", "--kind", "StatefulSet", "-o", "json")
    paused = scaler("pause", *select_all)
    assert paused.code == 0, paused.err
    assert {name: row["result"] for name, row in _rows(paused).items()} == dict.fromkeys(original, "changed")
    state = replicas_now()
    for name, count in original.items():
        replicas, ours = state[name]
        assert replicas == 0 and ours[LAST_REPLICAS] == str(count), name
        assert ours[PAUSED_BY] == MANUAL and ours[MANUAL_PAUSE] == "true"
    assert state["bystander"] == (2, {})

    again = scaler("pause", *select_all)
    assert again.code == 0, again.err
    assert {row["result"] for row in _rows(again).values()} == {"unchanged"}
    assert replicas_now() == state

    resumed = scaler("resume", *select_all)
    assert resumed.code == 0, resumed.err
    assert {row["result"] for row in _rows(resumed).values()} == {"changed"}
    assert replicas_now() == {**{name: (count, {}) for name, count in original.items()}, "bystander": (2, {})}
    reasons = [e["reason"] for e in fake.events("llm", "svc-03")]
    assert reasons.count("ScaledToZero") == 1 and reasons.count("Resumed") == 1
    assert "from 4 replicas" in next(e["message"] for e in fake.events("llm", "svc-03", "ScaledToZero"))


def test_unrelated_writers_cause_no_conflict_and_counts_stay_exact(fake):
    """Another controller touches every object (labels: a new resourceVersion,
    neither the replicas nor scaler's record) between scaler's read and its
    write: one PATCH per object, no retry, every count exact."""
    original = {f"w-{i}": i % 5 + 1 for i in range(20)}
    _create(fake, *(deployment(name, replicas=count, gpus=0) for name, count in original.items()))
    kube = fake.client()
    workloads, _ = select(kube, Selection(kinds=[DEPLOYMENT], namespace="llm"))
    touched = iter(range(10_000))
    fake.before("PATCH", "/deployments/", lambda request: fake.patch(
        DEPLOYMENTS, "llm", request.path.rsplit("/", 1)[1], {"metadata": {"labels": {"touched": str(next(touched))}}}))
    pauser = Pauser(kube)
    results = run_batch(workloads, lambda w: pauser.pause(w, by=MANUAL, reason="test"), concurrency=8)
    assert {r.outcome for r in results} == {Outcome.CHANGED}
    assert kube.requests["patch"] == len(original)  # one write per object: no retries
    for name, count in original.items():
        assert (_replicas(fake, name), _ours(fake, name)[LAST_REPLICAS]) == (0, str(count))
    workloads, _ = select(kube, Selection(kinds=[DEPLOYMENT], namespace="llm"))
    assert {r.outcome for r in run_batch(workloads, pauser.manual_resume, concurrency=8)} == {Outcome.CHANGED}
    assert {name: _replicas(fake, name) for name in original} == original


def test_a_person_scaling_while_paused_wins_and_is_reported(fake, scaler):
    _create(fake, deployment("chat", replicas=5))
    assert scaler("pause", "chat", "-n", "llm").code == 0
    fake.patch(DEPLOYMENTS, "llm", "chat", {"spec": {"replicas": 3}}, manager="kubectl")
    resumed = scaler("resume", "chat", "-n", "llm")
    assert resumed.code == 0, resumed.err
    assert "someone set replicas to 3 while it was paused (recorded 5); left 3" in resumed.out
    assert (_replicas(fake, "chat"), _ours(fake, "chat")) == (3, {})
    assert fake.events("llm", "chat", "ResumeSkipped")


def test_the_pause_table_shows_gpus_freed_and_a_dry_run_writes_nothing(fake, scaler):
    _create(fake, deployment("big", replicas=2, gpus=4), deployment("small", replicas=1, gpus=1))
    dry = scaler("pause", "-n", "llm", "--dry-run")
    assert dry.code == 0, dry.err
    assert "dry run: 2 would change, 0 unchanged, 0 skipped, 0 failed; 9 GPUs freed" in dry.out
    assert _replicas(fake, "big") == 2 and fake.count("PATCH") == 0

    real = scaler("pause", "-n", "llm", "--all")
    assert real.code == 0, real.err
    big = _line(real.out, " big ")
    assert "changed" in big and "2 -> 0" in big and " 8 " in f" {big} "
    assert "2 changed, 0 unchanged, 0 skipped, 0 failed; 9 GPUs freed" in real.out

    status = scaler("status", "-n", "llm", "-o", "json")
    assert status.code == 0, status.err
    document = json.loads(status.out)
    paused = {row["name"]: row for row in document["paused"]}
    assert (paused["big"]["resumeTo"], paused["big"]["gpus"], paused["big"]["pausedBy"]) == (2, 8, MANUAL)
    assert document["gpusPaused"] == 9


def test_a_missing_name_fails_its_row_and_the_exit_code(fake, scaler):
    namespace(fake, "llm")
    result = scaler("pause", "nope", "-n", "llm")
    assert result.code == 1
    assert "failed: Deployment/StatefulSet/llm/nope: not found" in result.err


def test_kubectl_type_name_forms_select_each_name_in_its_own_kind(fake, scaler):
    """`kubectl get -o name` output pasted as is: deployment.apps/db pauses the
    Deployment db only, never the StatefulSet of the same name."""
    _create(fake, deployment("db", replicas=2), deployment("chat", replicas=3))
    _create(fake, statefulset("db", replicas=2), statefulset("cache", replicas=1), kind="statefulsets.apps")
    paused = scaler("pause", "deployment.apps/db", "deploy/chat", "sts/cache", "deployments/chat", "-n", "llm",
                    "-o", "json")
    assert paused.code == 0, paused.err
    results = json.loads(paused.out)["results"]
    assert len(results) == 3, results  # chat, named twice in two spellings, is one object and one row
    assert {(row["kind"], row["name"]): row["result"] for row in results} == {
        ("Deployment", "db"): "changed", ("Deployment", "chat"): "changed", ("StatefulSet", "cache"): "changed"}
    assert (_replicas(fake, "db"), _replicas(fake, "db", "statefulsets.apps")) == (0, 2)
    assert _replicas(fake, "cache", "statefulsets.apps") == 0

    resumed = scaler("resume", "statefulsets.apps/v1/cache", "deploy/db", "-n", "llm")
    assert resumed.code == 0, resumed.err
    assert (_replicas(fake, "cache", "statefulsets.apps"), _replicas(fake, "db")) == (1, 2)
    assert _replicas(fake, "chat") == 0  # not named

    missing = scaler("pause", "sts/chat", "-n", "llm")
    assert missing.code == 1
    assert "failed: StatefulSet/llm/chat: not found" in missing.err


def test_a_keda_scaled_object_is_paused_with_its_own_annotation_and_handed_back(fake, scaler):
    fake.create("customresourcedefinitions.apiextensions.k8s.io",
                simple_crd(group="keda.sh", kind="ScaledObject", plural="scaledobjects", version="v1alpha1"))
    _create(fake, deployment("worker", replicas=3))
    _create(fake, {"metadata": {"name": "worker"},
                   "spec": {"scaleTargetRef": {"name": "worker"}, "minReplicaCount": 0, "maxReplicaCount": 8}},
            kind="scaledobjects.keda.sh")

    def scaled_object() -> dict:
        return fake.get("scaledobjects.keda.sh", "llm", "worker")["metadata"].get("annotations") or {}

    assert scaler("pause", "worker", "-n", "llm").code == 0
    assert (_replicas(fake, "worker"), _ours(fake, "worker")[LAST_REPLICAS]) == (0, "3")
    assert scaled_object().get(KEDA_PAUSED_REPLICAS) == "0"
    assert scaler("resume", "worker", "-n", "llm").code == 0
    assert _replicas(fake, "worker") == 3 and scaled_object() == {}


def test_a_persons_own_keda_pause_outlives_a_pause_and_resume(fake, scaler):
    """KEDA paused at 2 by its owner: 0 while scaler holds the workload, 2 again after."""
    fake.create("customresourcedefinitions.apiextensions.k8s.io",
                simple_crd(group="keda.sh", kind="ScaledObject", plural="scaledobjects", version="v1alpha1"))
    _create(fake, deployment("worker", replicas=2))
    _create(fake, {"metadata": {"name": "worker", "annotations": {KEDA_PAUSED_REPLICAS: "2"}},
                   "spec": {"scaleTargetRef": {"name": "worker"}}}, kind="scaledobjects.keda.sh")

    def keda() -> str | None:
        annotations = fake.get("scaledobjects.keda.sh", "llm", "worker")["metadata"].get("annotations") or {}
        return annotations.get(KEDA_PAUSED_REPLICAS)

    assert scaler("pause", "worker", "-n", "llm").code == 0
    assert (_replicas(fake, "worker"), keda()) == (0, "0")
    assert scaler("resume", "worker", "-n", "llm").code == 0
    assert (_replicas(fake, "worker"), keda()) == (2, "2")
    assert fake.get("scaledobjects.keda.sh", "llm", "worker")["metadata"]["annotations"] == {KEDA_PAUSED_REPLICAS: "2"}


def test_a_pause_whose_keda_hand_over_failed_is_mended_by_the_next_run(fake, scaler):
    """The ScaledObject PATCH refused after the pause landed: the row warns,
    and KEDA would scale the workload back up. Running the pause again finds
    it paused (unchanged) and pauses the ScaledObject then."""
    fake.create("customresourcedefinitions.apiextensions.k8s.io",
                simple_crd(group="keda.sh", kind="ScaledObject", plural="scaledobjects", version="v1alpha1"))
    _create(fake, deployment("worker", replicas=3))
    _create(fake, {"metadata": {"name": "worker"}, "spec": {"scaleTargetRef": {"name": "worker"}}},
            kind="scaledobjects.keda.sh")

    def keda_paused() -> str | None:
        annotations = fake.get("scaledobjects.keda.sh", "llm", "worker")["metadata"].get("annotations") or {}
        return annotations.get(KEDA_PAUSED_REPLICAS)

    fake.fail(method="PATCH", path="/scaledobjects/", status=503)
    first = scaler("pause", "worker", "-n", "llm")
    assert first.code == 0 and "KEDA ScaledObject not updated" in first.out, first.out
    assert (_replicas(fake, "worker"), keda_paused()) == (0, None)
    again = scaler("pause", "worker", "-n", "llm")
    assert again.code == 0 and "0 changed, 1 unchanged" in again.out, again.out
    assert (_replicas(fake, "worker"), keda_paused()) == (0, "0")
    assert scaler("pause", "worker", "-n", "llm").code == 0
    assert fake.count("PATCH", "/scaledobjects/") == 2  # the refused one and the mend: none when all is right


def test_an_inference_service_is_stopped_by_its_annotation_and_started_again(fake, scaler):
    fake.create("customresourcedefinitions.apiextensions.k8s.io", simple_crd(
        group="serving.kserve.io", kind="InferenceService", plural="inferenceservices", version="v1beta1"))
    isvc = "inferenceservices.serving.kserve.io"
    _create(fake, {"metadata": {"name": "llama"}, "spec": {"predictor": {"minReplicas": 2, "model": {
        "modelFormat": {"name": "huggingface"}, "resources": {"limits": {"nvidia.com/gpu": "2"}}}}}}, kind=isvc)

    paused = scaler("pause", "llama", "-n", "llm", "--kind", "InferenceService", "-o", "json")
    assert paused.code == 0, paused.err
    row = _rows(paused)["llama"]
    assert (row["result"], row["replicasBefore"], row["replicasAfter"], row["gpus"]) == ("changed", 2, 0, 4)
    annotations = fake.get(isvc, "llm", "llama")["metadata"]["annotations"]
    assert annotations[KSERVE_STOP] == "true" and annotations[LAST_REPLICAS] == "2"

    resumed = scaler("resume", "llama", "-n", "llm", "--kind", "isvc", "-o", "json")
    assert resumed.code == 0, resumed.err
    assert _rows(resumed)["llama"]["replicasAfter"] == 2
    obj = fake.get(isvc, "llm", "llama")
    assert KSERVE_STOP not in (obj["metadata"].get("annotations") or {})
    assert pause_state(obj["metadata"].get("annotations")) == {}
    assert obj["spec"]["predictor"]["minReplicas"] == 2


def test_a_custom_resource_with_a_scale_subresource(fake, scaler):
    fake.create("customresourcedefinitions.apiextensions.k8s.io", simple_crd(
        group="serving.example.com", kind="VLLMServer", plural="vllmservers", version="v1alpha1", scale=True))
    servers = "vllmservers.serving.example.com"
    _create(fake, {"metadata": {"name": "mixtral"}, "spec": {"replicas": 6}}, kind=servers)
    kind = "vllmservers.serving.example.com/v1alpha1"
    assert scaler("pause", "mixtral", "-n", "llm", "--kind", kind).code == 0
    assert _replicas(fake, "mixtral", servers) == 0 and _ours(fake, "mixtral", servers)[LAST_REPLICAS] == "6"
    assert scaler("resume", "mixtral", "-n", "llm", "--kind", kind).code == 0
    assert _replicas(fake, "mixtral", servers) == 6


def test_resume_wait_reports_the_time_to_ready(fake, scaler):
    _create(fake, deployment("warm", replicas=2))
    assert scaler("pause", "warm", "-n", "llm").code == 0
    fake.auto_ready = False  # from here the pods take their time, as a model loads
    resumed_at = threading.Event()

    def become_ready() -> None:
        while _replicas(fake, "warm") == 0:
            time.sleep(0.02)
        resumed_at.set()
        time.sleep(0.4)
        fake.set_status(DEPLOYMENTS, "llm", "warm", {"replicas": 2, "readyReplicas": 2})
    loader = threading.Thread(target=become_ready, daemon=True)
    loader.start()
    result = scaler("resume", "warm", "-n", "llm", "--wait", "--timeout", "8", "-o", "json")
    loader.join(5)
    assert result.code == 0, result.err
    row = _rows(result)["warm"]
    assert row["result"] == "changed" and 0.4 <= row["secondsToReady"] < 8, row


def test_resume_wait_fails_the_row_that_is_not_ready_in_time(fake, scaler):
    _create(fake, deployment("cold", replicas=2))
    assert scaler("pause", "cold", "-n", "llm").code == 0
    fake.auto_ready = False
    result = scaler("resume", "cold", "-n", "llm", "--wait", "--timeout", "0.3", "-o", "json")
    assert result.code == 1, result.out + result.err
    row = _rows(result)["cold"]
    assert row["result"] == "failed" and "not ready after 0.3s (0/2 replicas ready)" in row["reason"], row
    assert _replicas(fake, "cold") == 2


def test_resume_leaves_alone_what_scaler_did_not_pause(fake, scaler):
    _create(fake, deployment("parked", replicas=0), deployment("mine", replicas=2))
    assert scaler("pause", "mine", "-n", "llm").code == 0
    result = scaler("resume", "-n", "llm", "--all", "-o", "json")
    assert result.code == 0, result.err
    rows = _rows(result)
    assert rows["parked"]["result"] == "unchanged" and "scaler did not pause it" in rows["parked"]["reason"]
    assert rows["mine"]["result"] == "changed"
    assert (_replicas(fake, "parked"), _replicas(fake, "mine")) == (0, 2)


def test_a_manual_pause_of_a_workload_already_at_zero_resumes_to_the_minimum_given(fake, scaler):
    _create(fake, deployment("cold", replicas=0))
    paused = scaler("pause", "cold", "-n", "llm")
    assert paused.code == 0 and "now paused manually" in paused.out
    resumed = scaler("resume", "cold", "-n", "llm", "--min-replicas", "2")
    assert resumed.code == 0 and "no recorded count, used the minimum 2" in resumed.out
    assert (_replicas(fake, "cold"), _ours(fake, "cold")) == (2, {})


def test_pause_all_then_resume_all_leaves_what_was_at_zero_at_zero(fake, scaler):
    """A Deployment parked at 0 and a Job suspended for a queue (Kueue) are
    made durably paused by a `pause --all`; the `resume --all` that ends the
    maintenance takes the pause off and leaves them stopped: nothing was
    recorded, and starting them would undo what someone else decided."""
    _create(fake, deployment("parked", replicas=0), deployment("chat", replicas=3))
    _create(fake, {"metadata": {"name": "train"}, "spec": {"suspend": True, "parallelism": 2, "template": {
        "spec": {"containers": [{"name": "t", "image": "x"}]}}}}, kind="jobs.batch")
    kinds = ("--kind", "Deployment", "--kind", "Job")
    assert scaler("pause", "-n", "llm", "--all", *kinds, "--reason", "maintenance").code == 0
    assert (_replicas(fake, "parked"), _replicas(fake, "chat")) == (0, 0)
    resumed = scaler("resume", "-n", "llm", "--all", *kinds, "-o", "json")
    assert resumed.code == 0, resumed.err
    rows = _rows(resumed)
    assert "it was at 0 replicas when paused, nothing to restore: left at 0" in rows["parked"]["reason"]
    assert (_replicas(fake, "parked"), _replicas(fake, "chat")) == (0, 3)
    assert fake.get("jobs.batch", "llm", "train")["spec"]["suspend"] is True
    assert _ours(fake, "parked") == {} and _ours(fake, "train", kind="jobs.batch") == {}
    assert sorted(e["reason"] for e in fake.events("llm", "parked")) == ["PausedManually", "Resumed"]


def _event_names(fake, name: str) -> list[str]:
    return sorted(event["metadata"]["name"] for event in fake.events("llm", name))


def test_the_next_run_posts_the_events_an_earlier_run_owed_exactly_once(fake, scaler):
    """A run that wrote its records but not their Events (killed between the
    two, or its Event POSTs failing) leaves them owed on the objects: the next
    `pause` or `resume` on them posts each once, saying so, before its own
    writes replace the records; a run after that posts none again."""
    _create(fake, *(deployment(name, replicas=2, gpus=0) for name in ("a", "b", "c")))
    fake.fail(method="POST", path="/events", status=503, times=3)
    first = scaler("pause", "a", "b", "c", "-n", "llm")
    assert first.code == 0 and "Event not recorded" in first.out, first.out
    assert [_event_names(fake, n) for n in "abc"] == [[], [], []]
    records = {n: json.loads(fake.get(DEPLOYMENTS, "llm", n)["metadata"]["annotations"][LAST_ACTION])["id"]
               for n in "abc"}

    fake.fail(method="POST", path="/events", status=503, times=1)
    refused = scaler("pause", "a", "-n", "llm")  # the owed Event refused again: said, not counted as posted
    assert refused.code == 0 and "posted" not in refused.err.replace("still not posted", ""), refused.err
    assert "note: an Event an earlier run owed is still not posted: Deployment/llm/a: Event not recorded" \
        in refused.err
    assert _event_names(fake, "a") == []

    again = scaler("pause", "a", "b", "-n", "llm")  # c is not selected: its Event stays owed
    assert again.code == 0 and "0 changed, 2 unchanged" in again.out
    assert "note: posted 2 Events that an earlier run owed" in again.err
    assert [_event_names(fake, n) for n in "abc"] == [[f"a.{records['a']}"], [f"b.{records['b']}"], []]
    assert "posted by a later run" in fake.events("llm", "a")[0]["message"]

    resumed = scaler("resume", "a", "b", "c", "-n", "llm")
    assert resumed.code == 0 and "note: posted 1 Event that an earlier run owed" in resumed.err
    assert [_replicas(fake, n) for n in "abc"] == [2, 2, 2]
    reasons = {n: sorted(e["reason"] for e in fake.events("llm", n)) for n in "abc"}
    assert reasons == {n: ["Resumed", "ScaledToZero"] for n in "abc"}

    quiet = scaler("resume", "a", "b", "c", "-n", "llm")
    assert quiet.code == 0 and "note:" not in quiet.err
    assert sum(len(fake.events("llm", n)) for n in "abc") == 6


def test_owed_events_across_every_namespace_are_found_with_one_list(fake, scaler):
    """With -A the owed Events of every namespace come from one LIST of
    scaler's Events in all of them, not one per namespace."""
    for ns in ("llm", "batch"):
        _create(fake, deployment("w", replicas=1, gpus=0, labels={"owed": "yes"}), ns=ns)
    fake.fail(method="POST", path="/events", status=503, times=2)
    assert scaler("pause", "-A", "-l", "owed=yes").code == 0
    assert fake.events("llm") == fake.events("batch") == []
    listed = [r.path for r in list(fake.requests) if r.method == "GET" and r.path.endswith("/events")]
    again = scaler("pause", "-A", "-l", "owed=yes")
    assert again.code == 0 and "note: posted 2 Events that an earlier run owed" in again.err, again.err
    assert [len(fake.events(ns)) for ns in ("llm", "batch")] == [1, 1]
    lists = [r.path for r in list(fake.requests) if r.method == "GET" and r.path.endswith("/events")][len(listed):]
    assert lists == ["/api/v1/events"]


def test_a_name_is_found_in_a_kind_it_may_list_when_another_kind_is_forbidden(fake, scaler):
    """A user who may list Deployments but not StatefulSets resumes a Deployment by bare name; a name
    in no kind it may list still fails with the 403 that hides it."""
    _create(fake, deployment("chat", replicas=2))
    fake.deny("list", "statefulsets.apps")
    paused = scaler("pause", "chat", "-n", "llm")
    assert paused.code == 0, paused.err
    assert _replicas(fake, "chat") == 0
    missing = scaler("pause", "nowhere", "-n", "llm")
    assert missing.code == 1 and "forbidden: cannot list statefulsets.apps" in missing.err


def test_a_dry_run_reports_what_the_real_run_does_for_a_paused_workload_resized_by_hand(fake, scaler):
    _create(fake, deployment("chat", replicas=3))
    assert scaler("pause", "chat", "-n", "llm").code == 0
    fake.patch(DEPLOYMENTS, "llm", "chat", {"spec": {"replicas": 5}})
    dry = _rows(scaler("resume", "chat", "-n", "llm", "--dry-run", "-o", "json"))["chat"]
    real = _rows(scaler("resume", "chat", "-n", "llm", "-o", "json"))["chat"]
    assert (dry["result"], real["result"]) == ("skipped", "skipped")
    assert dry["reason"] == real["reason"] and "someone set replicas to 5 while it was paused" in real["reason"]
    assert _replicas(fake, "chat") == 5


@pytest.mark.parametrize("value", ["abc", -2, 2.5, True])
def test_a_custom_resource_whose_size_cannot_be_read_fails_alone(fake, scaler, value):
    """One object of a kind whose CRD does not type its size holds no whole number there: its row
    fails, naming the field and the value; its neighbour is paused and resumed as ever."""
    fake.create("customresourcedefinitions.apiextensions.k8s.io", simple_crd(
        group="serving.example.com", kind="VLLMServer", plural="vllmservers", version="v1alpha1", scale=True))
    servers, kind = "vllmservers.serving.example.com", "vllmservers.serving.example.com/v1alpha1"
    _create(fake, {"metadata": {"name": "odd"}, "spec": {"replicas": value}},
            {"metadata": {"name": "good"}, "spec": {"replicas": 4}}, kind=servers)
    paused = scaler("pause", "odd", "good", "-n", "llm", "--kind", kind, "-o", "json")
    rows = _rows(paused)
    assert paused.code == 1 and rows["odd"]["result"] == "failed"
    assert f"its size cannot be read: spec.replicas is {value!r}, not a whole number of replicas" \
        == rows["odd"]["reason"]
    assert "Traceback" not in paused.err and _replicas(fake, "good", kind=servers) == 0
    assert scaler("resume", "good", "-n", "llm", "--kind", kind).code == 0
    assert _replicas(fake, "good", kind=servers) == 4


@pytest.mark.parametrize("edited", ["3.0", "3_0", "", "-3"])
def test_a_hand_edited_count_is_named_by_status_and_by_the_resume_that_cannot_restore_it(fake, scaler, edited):
    """Someone edited scaler.io/last-replicas: `status` says it cannot be restored, and the resume that uses
    the minimum instead says why, never 'no recorded count' (one was recorded) nor a guess ('3_0' is not 30)."""
    _create(fake, deployment("chat", replicas=0, gpus=0, annotations={
        LAST_REPLICAS: edited, PAUSED_BY: MANUAL, MANUAL_PAUSE: "true", "scaler.io/paused-at": "2026-01-01T00:00:00Z"}))
    [row] = json.loads(scaler("status", "-n", "llm", "-o", "json").out)["workloads"]
    assert row["recorded"] is None
    assert f"the recorded count {edited!r} is not a replica count (digits, 1 to 2147483647): a resume goes to a " \
           "minimum instead" in row["notes"]
    resumed = scaler("resume", "chat", "-n", "llm", "--min-replicas", "2", "-o", "json")
    assert resumed.code == 0 and _replicas(fake, "chat") == 2
    assert f"(the recorded count {edited!r} is not a replica count (digits, 1 to 2147483647), used the minimum 2)" \
        in _rows(resumed)["chat"]["reason"]
