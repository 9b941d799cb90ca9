"""POST /wake on a daemon in process, against the fake API server: who may
wake what, through the precedence table, with one write however many ask,
and never from a standby (run/waking.py, run/admitting.py, docs/wake.md)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from scaler.decide.loading import check_policies
from scaler.run.daemon import Daemon
from scaler.run.settings import Settings
from scaler.run.sources import FilePolicies
from tests.helpers import eventually

GATEWAY = "system:serviceaccount:gw:envoy"
TOKEN = "gateway-token"
POLICY = """
policies:
  - name: chat
    targets: {namespaces: [llm, kube-system]}
    wake: {query: 'sum by (namespace, workload) (gateway_pending_requests)', target_per_replica: 8}
    min_replicas: 1
    max_replicas: 4
"""
PAUSED = {"scaler.io/last-replicas": "2", "scaler.io/paused-by": "policy/chat", "scaler.io/paused-at":
          "2026-01-01T00:00:00Z", "scaler.io/pause-reason": "idle", "scaler.io/pause-cause": "idle-timeout"}


class Running:
    """A daemon with the push wake on, run() in a thread, ready to answer."""

    def __init__(self, fake, prometheus, tmp_path, *, text: str = POLICY, **settings) -> None:
        (tmp_path / "policies.yaml").write_text(text)
        options = dict(kubeconfig=str(fake.kubeconfig(tmp_path / "kubeconfig")), prometheus_url=prometheus.url,
                       policies=[tmp_path / "policies.yaml"], identity="a", port=0, bind_address="127.0.0.1",
                       evaluation_interval_seconds=30, wake_check_interval_seconds=30,
                       policy_reload_interval_seconds=30, log_format="console", push_wake=True)
        self.settings = Settings(**{**options, **settings})
        source = FilePolicies(self.settings.policies)
        policies, problems = check_policies(self.settings.policies)
        assert not problems
        self.daemon = Daemon(self.settings, policies, source=source, version=source.version())
        self.code: list[int] = []
        self.thread = threading.Thread(target=lambda: self.code.append(self.daemon.run(handle_signals=False)),
                                       daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        eventually(lambda: self.daemon.server, timeout_seconds=5, interval_seconds=0.01)
        if not self.settings.leader_election:
            eventually(lambda: self.daemon.health.ready() or None, timeout_seconds=5, interval_seconds=0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.daemon.stopping.set()
        self.thread.join(8)
        assert self.code == [0], "the daemon did not stop cleanly"

    def wake(self, body: dict | bytes, *, token: str | None = TOKEN,
             headers: dict | None = None) -> tuple[int, dict, dict]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.daemon.server.server_address[1]}/wake",
                                         data=data, method="POST",
                                         headers={"Content-Type": "application/json", **(headers or {})})
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read()), dict(answer.headers)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read()), dict(error.headers)

    def wake_forwarded(self, body: dict) -> tuple[int, dict, dict]:
        """As a standby forwards it."""
        return self.wake(body, headers={"X-Scaler-Forwarded-By": "c"})

    def counted(self, result: str) -> float:
        return self.daemon.metrics.registry.get_sample_value("scaler_push_wakes_total", {"result": result}) or 0


def workloads(fake, *names, namespace="llm", replicas=0, annotations=PAUSED, labels=None):
    if not any(n["metadata"]["name"] == namespace for n in fake.items("namespaces")):
        fake.create("namespaces", {"metadata": {"name": namespace}})
    for name in names:
        fake.create("deployments.apps", {"metadata": {"name": name, "annotations": dict(annotations),
                                                      "labels": labels or {"app": name}},
                                         "spec": {"replicas": replicas}}, namespace=namespace)


def gateway(fake, *, namespace="llm", name=""):
    """The gateway's token (minted for scaler), allowed to patch deployments/scale in `namespace`."""
    fake.token(TOKEN, GATEWAY, groups=("system:serviceaccounts",), audiences=("scaler",))
    fake.allow(GATEWAY, "patch", "deployments.apps/scale", namespace=namespace, name=name)


def replicas(fake, name, namespace="llm"):
    return fake.get("deployments.apps", namespace, name)["spec"]["replicas"]


def test_a_valid_token_wakes_a_workload_at_zero_to_its_recorded_size(fake, prometheus, tmp_path):
    workloads(fake, "chat")
    gateway(fake)
    with Running(fake, prometheus, tmp_path) as running:
        status, answer, _ = running.wake({"namespace": "llm", "name": "chat"})
        events = eventually(lambda: fake.events("llm", "chat", reason="Resumed"), timeout_seconds=5)
        assert running.counted("woken") == 1
    assert status == 200 and answer["result"] == "woken", answer
    assert answer["replicas"] == 0 and answer["desired"] == 2 and answer["policy"] == "chat"
    assert answer["reasonCode"] == "queue-wake" and answer["by"] == GATEWAY
    assert answer["reason"].startswith(f"woken by a push from {GATEWAY}: queue 1 > activation threshold 0: "
                                       "waking to 2")
    assert replicas(fake, "chat") == 2
    annotations = fake.get("deployments.apps", "llm", "chat")["metadata"]["annotations"]
    assert "scaler.io/last-replicas" not in annotations and "scaler.io/started-at" in annotations
    [event] = events
    assert event["message"].startswith("resumed to 2 replicas (recorded by policy/chat) by policy/chat: "
                                       f"woken by a push from {GATEWAY}: queue 1 > activation threshold 0")
    assert fake.count("PATCH", "/deployments/") == 1


@pytest.mark.parametrize(("token", "body", "status", "result", "why"), [
    pytest.param(None, {"namespace": "llm", "name": "chat"}, 401, "unauthenticated", "no bearer token",
                 id="no-token"),
    pytest.param("made-up", {"namespace": "llm", "name": "chat"}, 401, "unauthenticated", "invalid bearer token",
                 id="invalid-token"),
    pytest.param("api-server-token", {"namespace": "llm", "name": "chat"}, 401, "unauthenticated",
                 'is invalid for the target audiences ["scaler"]', id="token-for-the-api-server"),
    pytest.param("other-token", {"namespace": "llm", "name": "chat"}, 403, "forbidden",
                 "system:serviceaccount:gw:other may not patch deployments.apps/scale chat in namespace llm",
                 id="no-permission"),
    pytest.param(TOKEN, {"namespace": "team", "name": "chat"}, 403, "forbidden",
                 "may not patch deployments.apps/scale chat in namespace team", id="permission-elsewhere"),
    pytest.param(TOKEN, {"namespace": "kube-system", "name": "chat"}, 403, "not-managed",
                 "namespace kube-system is excluded", id="excluded-namespace"),
    pytest.param(TOKEN, {"namespace": "llm", "name": "chat", "kind": "InferenceService"}, 403, "not-managed",
                 "no policy targets InferenceService", id="kind-not-managed"),
])
def test_a_refused_request_writes_nothing(fake, prometheus, tmp_path, token, body, status, result, why):
    for namespace in ("llm", "team", "kube-system"):
        workloads(fake, "chat", namespace=namespace)
    gateway(fake)
    fake.token("api-server-token", GATEWAY)  # minted for the API server's audience, not scaler's
    fake.token("other-token", "system:serviceaccount:gw:other", audiences=("scaler",))
    fake.allow("system:serviceaccount:gw:other", "get", "deployments.apps", namespace="llm")
    with Running(fake, prometheus, tmp_path) as running:
        got, answer, headers = running.wake(body, token=token)
        assert running.counted(result) == 1
    assert (got, answer["result"]) == (status, result), answer
    assert why in answer["reason"]
    if status == 401:
        assert headers["WWW-Authenticate"] == 'Bearer realm="scaler"'
    assert fake.count("PATCH") == 0 and fake.events("llm") == fake.events("kube-system") == []
    assert all(replicas(fake, "chat", namespace) == 0 for namespace in ("llm", "team", "kube-system"))


@pytest.mark.parametrize(("annotations", "text", "reason"), [
    pytest.param({"scaler.io/paused": "true", "scaler.io/last-replicas": "2", "scaler.io/paused-by": "manual"},
                 POLICY, "paused by hand (scaler.io/paused=true); only a manual resume wakes it", id="manual-pause"),
    pytest.param(PAUSED, POLICY.replace("    min_replicas: 1\n", "    min_replicas: 1\n    schedule:\n"
                                        "      timezone: UTC\n      windows: [{name: always, mode: down, "
                                        "when: \"Mon-Sun 00:00-24:00\"}]\n"),
                 "keep-down window 'always' (Mon-Sun 00:00-24:00 UTC) is active: staying at 0", id="keep-down-window"),
    pytest.param(PAUSED, POLICY.replace("    wake: {query: 'sum by (namespace, workload) (gateway_pending_requests)',"
                                        " target_per_replica: 8}\n", "    idle: {query: 'up', threshold: 1, "
                                        "duration: 5m}\n"),
                 "policy chat has no wake signal: a push is a queue signal", id="no-wake-signal"),
])
def test_the_precedence_table_still_holds_a_workload_a_push_asks_for(fake, prometheus, tmp_path, annotations,
                                                                    text, reason):
    workloads(fake, "chat", annotations=annotations)
    gateway(fake)
    with Running(fake, prometheus, tmp_path, text=text) as running:
        status, answer, _ = running.wake({"namespace": "llm", "name": "chat"})
    assert (status, answer["result"]) == (409, "held"), answer
    assert reason in answer["reason"]
    assert fake.count("PATCH") == 0 and replicas(fake, "chat") == 0


def test_a_queue_in_the_request_sizes_the_wake_and_a_running_workload_is_already_up(fake, prometheus, tmp_path):
    workloads(fake, "chat", "code")
    fake.patch("deployments.apps", "llm", "code", {"spec": {"replicas": 1},
                                                   "metadata": {"annotations": {k: None for k in PAUSED}}})
    gateway(fake)
    with Running(fake, prometheus, tmp_path) as running:
        _, woken, _ = running.wake({"namespace": "llm", "name": "chat", "queue": 30})
        _, up, _ = running.wake({"namespace": "llm", "name": "code"})
        _, grown, _ = running.wake({"namespace": "llm", "name": "code", "queue": 12})
        _, small, _ = running.wake({"namespace": "llm", "name": "chat", "queue": 0})
    assert woken["result"] == "woken" and woken["desired"] == 4 and replicas(fake, "chat") == 4  # ceil(30/8)
    assert "ceil(30/8) = 4" in woken["reason"]
    assert up["result"] == "already-up" and up["replicas"] == 1
    assert grown["result"] == "scaled-up" and replicas(fake, "code") == 2
    assert grown["reason"].startswith(f"scaled up by a push from {GATEWAY}: queue 12 needs more replicas: 1 -> 2")
    assert small["result"] == "already-up"  # chat is up now: a small queue asks for nothing


def test_a_queue_not_above_the_activation_threshold_is_held_and_says_so(fake, prometheus, tmp_path):
    workloads(fake, "chat")
    gateway(fake)
    with Running(fake, prometheus, tmp_path) as running:
        status, answer, _ = running.wake({"namespace": "llm", "name": "chat", "queue": 0})
    assert (status, answer["result"]) == (409, "held")
    assert answer["reason"].startswith("queue 0 is not above the activation threshold 0: paused by policy/chat")
    assert fake.count("PATCH") == 0


def test_a_selector_wakes_every_match_and_needs_the_permission_on_the_whole_namespace(fake, prometheus, tmp_path):
    workloads(fake, "chat-a", "chat-b", labels={"app": "chat"})
    workloads(fake, "other")
    gateway(fake)
    fake.token("named-token", "named", audiences=("scaler",))
    fake.allow("named", "patch", "deployments.apps/scale", namespace="llm", name="chat-a")
    with Running(fake, prometheus, tmp_path) as running:
        refused, by_name, _ = running.wake({"namespace": "llm", "selector": "app=chat"}, token="named-token")
        status, answer, _ = running.wake({"namespace": "llm", "selector": "app=chat"})
        missing, none, _ = running.wake({"namespace": "llm", "selector": "app=nothing"})
    assert refused == 403 and "(any name)" in by_name["reason"]
    assert status == 200 and answer["result"] == "woken"
    assert [(w["name"], w["result"]) for w in answer["workloads"]] == [("chat-a", "woken"), ("chat-b", "woken")]
    assert replicas(fake, "chat-a") == replicas(fake, "chat-b") == 2 and replicas(fake, "other") == 0
    assert missing == 404 and none["result"] == "not-found"


def test_many_concurrent_requests_for_one_workload_make_one_patch_and_get_one_answer(fake, prometheus, tmp_path):
    """The write is held until every other request has joined it: all of them share it."""
    workloads(fake, "chat")
    gateway(fake)
    hold = threading.Event()
    fake.fail(method="PATCH", path="/deployments/chat$", hang=hold)
    requests = 500
    with Running(fake, prometheus, tmp_path) as running, ThreadPoolExecutor(requests) as pool:
        flights = running.daemon.posts["/wake"].__self__._flights
        sent = [pool.submit(running.wake, {"namespace": "llm", "name": "chat"}) for _ in range(requests)]
        eventually(lambda: flights.shared == requests - 1 or None, timeout_seconds=8, interval_seconds=0.02)
        hold.set()
        answers = [future.result(timeout=10) for future in sent]
        assert running.counted("woken") == requests
    assert {(status, answer["result"]) for status, answer, _ in answers} == {(200, "woken")}
    assert len({json.dumps(answer, sort_keys=True) for _, answer, _ in answers}) == 1
    assert fake.count("PATCH", "/deployments/") == 1
    assert fake.count("POST", "/tokenreviews") == 1 and fake.count("POST", "/subjectaccessreviews") == 1
    assert replicas(fake, "chat") == 2


def test_a_standby_answers_with_the_leader_and_never_writes(fake, prometheus, tmp_path):
    workloads(fake, "chat")
    gateway(fake)
    fake.create("leases.coordination.k8s.io", {"metadata": {"name": "scaler"}, "spec": {
        "holderIdentity": "scaler-7d9f-leader", "leaseDurationSeconds": 3600,
        "renewTime": "2099-01-01T00:00:00.000000Z", "acquireTime": "2099-01-01T00:00:00.000000Z"}},
        namespace="default")
    with Running(fake, prometheus, tmp_path, leader_election=True) as running:
        status, answer, headers = running.wake({"namespace": "llm", "name": "chat"})
    assert (status, answer["result"], answer["leader"]) == (503, "not-leader", "scaler-7d9f-leader"), answer
    assert answer["reason"] == "this replica (a) is a standby; the leader is scaler-7d9f-leader"
    assert headers["Retry-After"] == "1"
    assert fake.count("PATCH") == 0


def test_a_standby_forwards_to_the_leader_whose_answer_it_returns(fake, prometheus, tmp_path):
    """Two replicas: the Lease names `a`; `b` reads a's pod for its address
    and forwards the request; only `a` writes. A request that was forwarded
    once is never forwarded again (no loop between two standbys)."""
    workloads(fake, "chat", "code")
    gateway(fake)
    with Running(fake, prometheus, tmp_path, leader_election=True) as leader:
        a = leader.daemon
        eventually(lambda: a.actor.may_act(None, a.leadership.term) or None, timeout_seconds=8)
        fake.create("pods", {"metadata": {"name": "a"}, "spec": {"containers": [{
            "name": "scaler", "image": "scaler", "ports": [
                {"name": "metrics", "containerPort": a.server.server_address[1]}]}]},
            "status": {"podIP": "127.0.0.1"}}, namespace="default")
        with Running(fake, prometheus, tmp_path, leader_election=True, identity="b") as standby:
            status, answer, _ = standby.wake({"namespace": "llm", "name": "chat"})
            looped = standby.wake_forwarded({"namespace": "llm", "name": "code"})
            assert standby.counted("forwarded") == 1 and leader.counted("woken") == 1
    assert (status, answer["result"], answer["forwardedBy"]) == (200, "woken", "b"), answer
    assert (looped[0], looped[1]["result"], looped[1]["leader"]) == (503, "not-leader", "a")
    writers = {r.agent.split()[0] for r in fake.requests if r.method == "PATCH" and "/deployments/" in r.path}
    assert writers == {"scaler/a"} and replicas(fake, "chat") == 2 and replicas(fake, "code") == 0


def test_tokens_and_permissions_are_checked_once_for_many_wakes(fake, prometheus, tmp_path):
    names = [f"m{i}" for i in range(12)]
    workloads(fake, *names)
    gateway(fake)
    with Running(fake, prometheus, tmp_path) as running:
        for name in names:
            assert running.wake({"namespace": "llm", "name": name})[1]["result"] == "woken"
        for name in names:
            assert running.wake({"namespace": "llm", "name": name})[1]["result"] == "already-up"
    assert fake.count("POST", "/tokenreviews") == 1
    assert fake.count("POST", "/subjectaccessreviews") == len(names)
    assert fake.count("PATCH", "/deployments/") == len(names)


def test_a_caller_over_its_budget_is_refused_with_429_and_retry_after(fake, prometheus, tmp_path):
    workloads(fake, "a", "b")
    gateway(fake)
    with Running(fake, prometheus, tmp_path, push_wake_rate_per_second=0.01, push_wake_burst=3) as running:
        first = running.wake({"namespace": "llm", "name": "a"})  # a permission check and a wake: 2 tokens
        second = running.wake({"namespace": "llm", "name": "b"})  # another check: the last token; no wake
    assert first[1]["result"] == "woken"
    assert (second[0], second[1]["result"]) == (429, "rate-limited")
    assert second[1]["reason"].startswith(f"too many wake requests from {GATEWAY}; retry in ")
    assert int(second[2]["Retry-After"]) >= 1
    assert replicas(fake, "b") == 0 and fake.count("PATCH", "/deployments/") == 1


def test_a_dry_run_daemon_says_what_it_would_do_and_writes_nothing(fake, prometheus, tmp_path):
    workloads(fake, "chat")
    gateway(fake)
    with Running(fake, prometheus, tmp_path, dry_run=True) as running:
        status, answer, _ = running.wake({"namespace": "llm", "name": "chat"})
    assert (status, answer["result"]) == (200, "dry-run")
    assert answer["reason"].startswith(f"dry run: would have woken: woken by a push from {GATEWAY}")
    assert fake.count("PATCH") == 0


@pytest.mark.parametrize(("body", "why"), [
    pytest.param(b"not json", "the body is not JSON", id="not-json"),
    pytest.param(b"[]", "the body must be a JSON object", id="not-an-object"),
    pytest.param({"namespace": "llm"}, "give either name or selector", id="neither"),
    pytest.param({"namespace": "llm", "name": "a", "selector": "app=a"}, "give either name or selector",
                 id="both"),
    pytest.param({"name": "chat"}, "namespace: a namespace name is required", id="no-namespace"),
    pytest.param({"namespace": "llm", "nmae": "chat"}, "unknown field(s) nmae", id="misspelled-field"),
    pytest.param({"namespace": "llm", "name": "Chat!"}, "is not an object name", id="bad-name"),
    pytest.param({"namespace": "llm", "selector": "app in"}, "selector:", id="bad-selector"),
    pytest.param({"namespace": "llm", "name": "chat", "queue": -1}, "queue: a number from 0", id="negative-queue"),
    pytest.param({"namespace": "llm", "name": "chat", "queue": True}, "queue: a number from 0", id="bool-queue"),
    pytest.param({"namespace": "llm", "name": "chat", "kind": "Pod"}, "kind: unknown kind 'Pod'", id="bad-kind"),
])
def test_a_malformed_request_is_refused_with_what_is_wrong(fake, prometheus, tmp_path, body, why):
    workloads(fake, "chat")
    gateway(fake)
    with Running(fake, prometheus, tmp_path) as running:
        status, answer, _ = running.wake(body)
    assert (status, answer["result"]) == (400, "invalid") and why in answer["reason"], answer
    assert fake.count("PATCH") == 0


def test_the_shared_secret_mode_compares_the_secret_and_names_the_holder(fake, prometheus, tmp_path):
    workloads(fake, "a", "b")
    secret = tmp_path / "secret"
    secret.write_text("s3cret-long-enough-for-a-gateway\n")
    with Running(fake, prometheus, tmp_path, push_wake_auth="secret", push_wake_secret_file=secret) as running:
        wrong = running.wake({"namespace": "llm", "name": "a"}, token="s3cret-long-enough-for-a-gatewaX")
        right = running.wake({"namespace": "llm", "name": "a"}, token="s3cret-long-enough-for-a-gateway")
        secret.write_text("rotated-secret-just-as-long-as-it-was\n")
        old = running.wake({"namespace": "llm", "name": "b"}, token="s3cret-long-enough-for-a-gateway")
        new = running.wake({"namespace": "llm", "name": "b"}, token="rotated-secret-just-as-long-as-it-was")
    assert (wrong[0], wrong[1]["reason"]) == (401, "wrong shared secret")
    assert right[1]["result"] == "woken" and right[1]["by"] == "shared-secret"
    assert old[0] == 401 and new[1]["result"] == "woken"
    assert fake.count("POST", "/tokenreviews") == fake.count("POST", "/subjectaccessreviews") == 0


def test_the_endpoint_is_off_unless_asked_for(fake, prometheus, tmp_path):
    workloads(fake, "chat")
    gateway(fake)
    with Running(fake, prometheus, tmp_path, push_wake=False) as running:
        status, answer, _ = running.wake({"namespace": "llm", "name": "chat"})
    assert (status, answer["result"]) == (404, "not-found")
    assert fake.count("PATCH") == 0 and fake.count("POST", "/tokenreviews") == 0


def test_requests_answered_from_memory_cost_a_caller_nothing(fake, prometheus, tmp_path):
    """A holder that asks again for every request it holds must not be refused
    for it: only a permission check and a write take from its budget."""
    workloads(fake, "chat")
    gateway(fake)
    with Running(fake, prometheus, tmp_path, push_wake_rate_per_second=0.01, push_wake_burst=2) as running:
        first = running.wake({"namespace": "llm", "name": "chat"})  # a permission check and a write
        again = [running.wake({"namespace": "llm", "name": "chat"}) for _ in range(20)]
    assert first[1]["result"] == "woken"
    assert {(status, answer["result"]) for status, answer, _ in again} == {(200, "already-up")}
    assert fake.count("PATCH", "/deployments/") == 1


def test_a_selector_over_the_caller_s_budget_says_which_workloads_were_not_written(fake, prometheus, tmp_path):
    workloads(fake, "chat-a", "chat-b", labels={"app": "chat"})
    gateway(fake)
    with Running(fake, prometheus, tmp_path, push_wake_rate_per_second=0.01, push_wake_burst=2) as running:
        status, answer, _ = running.wake({"namespace": "llm", "selector": "app=chat"})
    assert (status, answer["result"]) == (200, "woken"), answer
    assert [(w["name"], w["result"]) for w in answer["workloads"]] == [("chat-a", "woken"),
                                                                       ("chat-b", "rate-limited")]
    assert answer["workloads"][1]["reason"].startswith(f"too many wake requests from {GATEWAY}")
    assert replicas(fake, "chat-a") == 2 and replicas(fake, "chat-b") == 0


def test_a_token_review_that_names_no_audience_is_not_a_token_for_scaler(fake, prometheus, tmp_path, monkeypatch):
    """The TokenReview API: a client that sets spec.audiences checks status.audiences names one of
    them; none named means the token is good for the API server's audience (an authenticator that
    is not audience-aware, behind a webhook or a proxy), not for scaler's: 401, nothing written."""
    from tests.fakes import reviews

    original = reviews.token_review

    def unaware(fake_, body, manager):
        answer = original(fake_, {**body, "spec": {**body["spec"], "audiences": [reviews.API_AUDIENCE]}}, manager)
        answer["status"].pop("audiences", None)
        return answer

    monkeypatch.setattr(reviews, "token_review", unaware)
    workloads(fake, "chat")
    fake.token("api-server-token", GATEWAY, groups=("system:serviceaccounts",))  # minted for the API server
    fake.allow(GATEWAY, "patch", "deployments.apps/scale", namespace="llm")
    with Running(fake, prometheus, tmp_path) as running:
        status, answer, _ = running.wake({"namespace": "llm", "name": "chat"}, token="api-server-token")
    assert (status, answer["result"]) == (401, "unauthenticated")
    assert "not for audience scaler" in answer["reason"]
    assert replicas(fake, "chat") == 0 and fake.count("PATCH") == 0


OUTSIDE_DOWN = POLICY.replace("    min_replicas: 1\n", "    min_replicas: 1\n    schedule:\n"
                              "      timezone: UTC\n      outside: down\n"
                              "      windows: [{name: never-now, mode: up, when: \"Mon 03:00-03:01\"}]\n")


def test_a_push_while_the_daemon_pauses_the_workload_wakes_it_after_the_pause(fake, prometheus, tmp_path):
    """The daemon pauses chat (outside every window, outside: down); a push arrives while that PATCH
    is on its way. Deciding from the object as it was before the pause, the push said `already-up`
    and the pause then landed: a live request's wake lost. It waits for the write in flight and wakes it."""
    workloads(fake, "chat", replicas=2, annotations={})
    gateway(fake)
    assert "outside: down" in OUTSIDE_DOWN
    answers: list = []
    daemon: dict = {}

    def slow_pause(request) -> None:  # the pause's PATCH held until the push has answered (at most 2 s)
        if request.method == "PATCH" and "running" in daemon and not answers:
            thread = threading.Thread(target=lambda: answers.append(daemon["running"].wake(
                {"namespace": "llm", "name": "chat", "queue": 1})))
            thread.start()
            thread.join(2)

    fake.before("PATCH", "/deployments/chat", slow_pause)
    running = daemon["running"] = Running(fake, prometheus, tmp_path, text=OUTSIDE_DOWN)
    with running:
        eventually(lambda: answers or None, timeout_seconds=10)
        status, answer, _ = answers[0]
    assert (status, answer["result"]) == (200, "woken"), answer
    assert replicas(fake, "chat") == 2


def test_a_manual_pause_that_lands_while_a_push_writes_answers_held(fake, prometheus, tmp_path):
    """Someone pauses chat by hand just as the push's write goes out: the write is dropped, and the
    answer is 409 `held` (fail fast, a person holds it), not 503 `not-sent` (retry: leadership)."""
    workloads(fake, "chat")
    gateway(fake)
    done: list = []

    def manual_pause(request) -> None:
        if request.method == "PATCH" and not done:
            done.append(request)
            fake.patch("deployments.apps", "llm", "chat",
                       {"metadata": {"annotations": {"scaler.io/paused": "true", "scaler.io/paused-by": "manual"}}})

    fake.before("PATCH", "/deployments/chat", manual_pause)
    with Running(fake, prometheus, tmp_path) as running:
        status, answer, _ = running.wake({"namespace": "llm", "name": "chat"})
    assert (status, answer["result"], answer["reasonCode"]) == (409, "held", "manual-pause")
    assert replicas(fake, "chat") == 0


def test_made_up_kinds_cost_the_api_server_nothing(fake, prometheus, tmp_path):
    """A caller with a valid token and no permission at all names 50 custom-resource kinds no policy
    targets: each is refused (403 not-managed) without a CRD look-up."""
    workloads(fake, "chat")
    fake.token(TOKEN, GATEWAY, groups=("system:serviceaccounts",), audiences=("scaler",))  # no RBAC at all
    with Running(fake, prometheus, tmp_path) as running:
        before = fake.count("GET", "customresourcedefinitions")
        answers = [running.wake({"namespace": "llm", "name": "chat", "kind": f"x{i}.example.com/v1"})
                   for i in range(50)]
        looked_up = fake.count("GET", "customresourcedefinitions") - before
    assert {(status, answer["result"]) for status, answer, _ in answers} == {(403, "not-managed")}
    assert looked_up == 0
