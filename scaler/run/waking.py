"""The push wake: `POST /wake` on the daemon's port (docs/wake.md).

A request holder (a gateway, a proxy plugin, a person's script) that has a
request for a workload at zero says so, and the leader wakes it at once,
without waiting for a scrape and a wake check:

    POST /wake  {"namespace": "llm", "name": "chat"}
                {"namespace": "llm", "kind": "StatefulSet", "selector": "app=chat", "queue": 12}

A push is a queue signal for that workload, known now: the workload's policy decides with `Signals(wake=Q)`,
through the same precedence table as every other decision (a manual pause still holds, a keep-down window
still wins), where Q is the request's `queue`, or else the smallest queue that wakes (the policy's
`activation_threshold` + 1). A resume or scale-up goes out through the actor's fenced writes (only the leader,
in its term, re-decided before every attempt), with its Event, log line and metrics, its reason starting
"woken by a push from <caller>". Nothing else is written: a push never pauses anything.

Concurrent requests for one workload share one wake (`Flights`): many
requests, one write, one answer. Who may push, and how much, is
run/admitting.py. A standby forwards an authenticated request to the leader
(its pod, named in the Lease, read for its address) and returns the leader's
answer; when it cannot, or for a request that was forwarded already, it
answers 503 naming the Lease's holder.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

import structlog
from prometheus_client import Counter, Histogram

from scaler.cluster.discovery import KindError
from scaler.cluster.kinds import WorkloadKind
from scaler.cluster.kube import KubeError
from scaler.cluster.reviews import Identity
from scaler.cluster.views import PODS
from scaler.cluster.workloads import Workload
from scaler.cluster.writes import Outcome, Result
from scaler.decide.decisions import Action, Code, Conflict, Decision, Signals, is_excluded, select_policy
from scaler.decide.facts import beside
from scaler.decide.kinds import UnknownKind, parse_kind
from scaler.decide.loading import PolicySet
from scaler.decide.precedence import decide
from scaler.decide.selectors import Selector, SelectorError
from scaler.decide.times import utc_now
from scaler.run.acting import Actor
from scaler.run.admitting import Answer, Budgets, Flights, Gate, Refusal, SecretGate, TokenGate
from scaler.run.evaluating import Evaluation, Evaluator, kinds_of
from scaler.run.leading import LEASES, Leadership
from scaler.run.observability import Health, Metrics, PostHandler
from scaler.run.settings import Settings

log = structlog.get_logger("scaler")

#: Every result a request can get, with its HTTP status; the first ones are the best news (a
#: selector's request says the best of its workloads').
STATUS = {"woken": 200, "scaled-up": 200, "dry-run": 200, "waking": 200, "already-up": 200, "held": 409,
          "failed": 502, "not-sent": 503, "not-managed": 403, "not-found": 404, "forbidden": 403,
          "unauthenticated": 401, "rate-limited": 429, "invalid": 400, "not-leader": 503, "not-ready": 503,
          "unavailable": 503, "error": 500}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_NAME = re.compile(r"^[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?$")
#: The largest `queue` a request may give.
MAX_QUEUE = 1e9
#: A request a standby forwarded carries this header (naming the standby); it is never forwarded again.
FORWARDED = "X-Scaler-Forwarded-By"
#: How long a standby waits for the leader's answer to a forwarded request.
FORWARD_SECONDS = 10.0
#: How long a push waits for another pass's write to the same workload (a pause) before deciding.
IN_FLIGHT_SECONDS = 5.0
_FIELDS = {"namespace", "name", "selector", "kind", "queue"}


def _invalid(reason: str) -> Refusal:
    return Refusal(400, "invalid", reason)


class Standby(Refusal):
    """This replica does not lead: 503, naming the leader if one holds the Lease."""

    def __init__(self, identity: str, leader: str | None, why: str = "") -> None:
        super().__init__(503, "not-leader", f"this replica ({identity}) is a standby; "
                         f"{f'the leader is {leader}' if leader else 'no replica holds the Lease now'}{why}",
                         leader=leader, headers={"Retry-After": "1"})
        self.identity, self.leader = identity, leader


@dataclass(frozen=True)
class WakeRequest:
    """What a request asks for: one workload by name, or every one a label selector matches."""

    namespace: str
    kind: str = "Deployment"
    name: str = ""
    selector: str = ""
    queue: float | None = None

    @classmethod
    def parse(cls, body: bytes) -> WakeRequest:
        """The request in `body`, or a 400 Refusal naming what is wrong."""
        try:
            data = json.loads(body)
        except ValueError:
            raise _invalid('the body is not JSON: send {"namespace": "...", "name": "..."}') from None
        if not isinstance(data, dict):
            raise _invalid('the body must be a JSON object: {"namespace": "...", "name": "..."}')
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            raise _invalid(f"unknown field(s) {', '.join(unknown)}: expected {', '.join(sorted(_FIELDS))}")
        namespace, name, selector, kind = (data.get(key, default) for key, default in
                                           (("namespace", None), ("name", ""), ("selector", ""),
                                            ("kind", "Deployment")))
        if not isinstance(namespace, str) or not _DNS_LABEL.match(namespace):
            raise _invalid("namespace: a namespace name is required")
        if not isinstance(name, str) or not isinstance(selector, str) or not isinstance(kind, str):
            raise _invalid("name, selector and kind are strings")
        if bool(name) == bool(selector):
            raise _invalid("give either name or selector (one of them)")
        if name and not _DNS_NAME.match(name):
            raise _invalid(f"name: {name[:80]!r} is not an object name")
        if selector:
            try:
                Selector.parse(selector)
            except SelectorError as error:
                raise _invalid(f"selector: {error}") from None
        return cls(namespace, kind, name, selector, cls._queue(data.get("queue")))

    @staticmethod
    def _queue(value: object) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or not 0 <= value <= MAX_QUEUE:
            raise _invalid(f"queue: a number from 0 to {MAX_QUEUE:g} (requests waiting)")
        return float(value)


class DaemonParts(Protocol):
    """What the push wake reads of the daemon (run/daemon.py)."""

    settings: Settings
    policies: PolicySet
    evaluator: Evaluator
    actor: Actor
    leadership: Leadership
    metrics: Metrics
    health: Health

    def post_owed_events(self, term: int) -> None: ...  # before the first write of a term


def push_wake_routes(daemon: DaemonParts) -> dict[str, PostHandler]:
    """The POST routes to serve: /wake when the push wake is on, else none."""
    s = daemon.settings
    if not s.push_wake:
        return {}
    gate: Gate
    if s.push_wake_auth == "secret":
        assert s.push_wake_secret_file is not None  # the settings refuse it otherwise
        gate = SecretGate(s.push_wake_secret_file)
    else:
        gate = TokenGate(daemon.actor.pauser.kube, audiences=tuple(s.push_wake_audiences),
                         verb=s.push_wake_verb, cache_seconds=s.push_wake_auth_cache_seconds)
    waker = Waker(daemon, gate=gate, budgets=Budgets(rate=s.push_wake_rate_per_second, burst=s.push_wake_burst))
    return {"/wake": waker.handle}


class Waker:
    """Answers POST /wake."""

    #: How long a standby reuses what it read of the Lease's holder.
    LEADER_SECONDS = 2.0

    def __init__(self, daemon: DaemonParts, *, gate: Gate, budgets: Budgets) -> None:
        self.daemon, self.gate, self.budgets = daemon, gate, budgets
        self._flights: Flights[tuple, Answer] = Flights()
        self._leader: tuple[float, str | None] = (-math.inf, None)
        self._addresses: dict[str, tuple[float, str | None]] = {}
        r = daemon.metrics.registry
        self.requests = Counter("scaler_push_wakes_total", "POST /wake requests, by result.", ["result"], registry=r)
        self.seconds = Histogram("scaler_push_wake_duration_seconds", "POST /wake: from the request read to "
                                 "the answer (the auth round trips and the write included).", registry=r,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30))
        for result in (*STATUS, "forwarded"):
            self.requests.labels(result)

    def handle(self, headers: Mapping[str, str], body: bytes) -> tuple[int, dict, dict[str, str]]:
        started = time.monotonic()
        try:
            answer = self._handle(headers, body)
        except Refusal as refusal:
            answer = refusal.answer
            if answer.status in (401, 403):
                log.info("push wake refused", result=answer.body["result"], reason=answer.body["reason"])
        except Exception as error:  # one request's failure is its answer, never the server's
            log.exception("push wake failed")
            answer = Answer(500, {"result": "error", "reason": f"{type(error).__name__}: {error}"})
        self.requests.labels("forwarded" if "forwardedBy" in answer.body else answer.body.get("result", "error")).inc()
        self.seconds.observe(time.monotonic() - started)
        return answer.status, answer.body, answer.headers

    def _handle(self, headers: Mapping[str, str], body: bytes) -> Answer:
        identity = self.gate.authenticate(headers.get("authorization"))
        wake = WakeRequest.parse(body)
        try:
            term = self._leading()
        except Standby as standby:
            return self._forward(standby, headers, body)
        kind = self._scope(wake)
        resource = kind.resource
        self.gate.authorize(identity, self.gate.access(group=resource.group, resource=resource.plural,
                                                       namespace=wake.namespace, name=wake.name),
                            charge=lambda: self.budgets.charge(identity.username))
        key = (kind.key, wake.namespace, wake.name, wake.selector, wake.queue)
        answer, _ = self._flights.run(key, lambda: self._wake(wake, kind, identity, term=term))
        return answer

    # Who may act, and on what

    def _leading(self) -> int:
        """The term to act in, or a 503: a standby names the leader."""
        daemon = self.daemon
        leadership, term = daemon.leadership, daemon.leadership.term
        if daemon.actor.may_act(None, term) and daemon.health.synced():
            return term
        if leadership.enabled and not leadership.holds():
            raise Standby(leadership.identity, self._holder())
        raise Refusal(503, "not-ready", "starting or stopping: the caches or the policies of this term are "
                      "not read yet", headers={"Retry-After": "1"})

    def _holder(self) -> str | None:
        read_at, holder = self._leader
        if time.monotonic() - read_at < self.LEADER_SECONDS:
            return holder
        leadership = self.daemon.leadership
        try:
            lease = leadership.kube.get(LEASES, leadership.namespace, leadership.name)
            holder = (lease.get("spec") or {}).get("holderIdentity") or None
        except KubeError:
            holder = None
        self._leader = (time.monotonic(), holder)
        return holder

    def _forward(self, standby: Standby, headers: Mapping[str, str], body: bytes) -> Answer:
        """The leader's answer to this request, or `standby` if it cannot be had."""
        address = None if headers.get(FORWARDED.lower()) or standby.leader is None else \
            self._address(standby.leader)
        if address is None:
            raise standby
        request = urllib.request.Request(f"http://{address}/wake", data=body, method="POST", headers={
            "Authorization": headers.get("authorization", ""), "Content-Type": "application/json",
            FORWARDED: standby.identity})
        try:
            try:
                with urllib.request.urlopen(request, timeout=FORWARD_SECONDS) as reply:
                    status, data, sent = reply.status, reply.read(), reply.headers
            except urllib.error.HTTPError as error:
                status, data, sent = error.code, error.read(), error.headers
            answer = json.loads(data)
            assert isinstance(answer, dict) and "result" in answer, "not an answer of scaler's"
        except (OSError, ValueError, AssertionError) as error:
            raise Standby(standby.identity, standby.leader, f"; forwarding to it at {address} failed: "
                          f"{error}") from None
        kept = {name: sent[name] for name in ("Retry-After", "WWW-Authenticate") if sent.get(name)}
        return Answer(status, {**answer, "forwardedBy": standby.identity}, kept)

    def _address(self, leader: str) -> str | None:
        """host:port of the leader's pod (its port named `metrics`, else ours), read at most every few seconds."""
        read_at, address = self._addresses.get(leader, (-math.inf, None))
        if time.monotonic() - read_at < self.LEADER_SECONDS:
            return address
        leadership, address = self.daemon.leadership, None
        try:
            pod = leadership.kube.get(PODS, leadership.namespace, leader)
        except KubeError:
            pod = {}
        ip = (pod.get("status") or {}).get("podIP")
        if ip:
            ports = [port for container in (pod.get("spec") or {}).get("containers") or []
                     for port in container.get("ports") or [] if port.get("name") == "metrics"]
            port = ports[0].get("containerPort") if ports else self.daemon.settings.port
            address = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
        self._addresses = {leader: (time.monotonic(), address)}
        return address

    def _scope(self, wake: WakeRequest) -> WorkloadKind:
        """The kind asked for, if scaler manages it in that namespace at all
        (known from its settings and policies, before anyone's permission)."""
        evaluator, settings = self.daemon.evaluator, self.daemon.settings
        managed = {kind.key for kind in kinds_of(self.daemon.policies, evaluator.resolve)}
        try:
            name = parse_kind(wake.kind)
            if name.key not in managed:  # known without asking the API server: a made-up kind costs it nothing
                raise Refusal(403, "not-managed", f"no policy targets {name.key}")
            kind = evaluator.resolve(wake.kind)
        except UnknownKind as error:
            raise _invalid(f"kind: {error}") from None
        except (KindError, KubeError) as error:
            raise Refusal(403, "not-managed", f"kind {wake.kind}: {error}") from None
        if kind.key not in managed:
            raise Refusal(403, "not-managed", f"no policy targets {kind.name}")
        if wake.namespace in evaluator.excluded_namespaces:
            raise Refusal(403, "not-managed", f"namespace {wake.namespace} is excluded: scaler never touches it")
        if settings.namespaces and wake.namespace not in settings.namespaces:
            raise Refusal(403, "not-managed", f"namespace {wake.namespace} is not one this daemon watches")
        return kind

    # Waking

    def _wake(self, wake: WakeRequest, kind: WorkloadKind, identity: Identity, *, term: int) -> Answer:
        view, now = self.daemon.evaluator.view, utc_now()
        if wake.name:
            found = view.latest(Workload(kind, {"metadata": {"namespace": wake.namespace, "name": wake.name}}))
            if found is None:
                raise Refusal(404, "not-found", f"no {kind.name} {wake.name} in namespace {wake.namespace}")
            answer = self._one(found, wake, identity, now=now, term=term)
            log.info("push wake", by=identity.username, kind=kind.name, namespace=wake.namespace,
                     workload=wake.name, result=answer["result"], reason=answer["reason"])
            return Answer(STATUS[answer["result"]], answer)
        selector = Selector.parse(wake.selector)
        matched = sorted((w for w in view.workloads([kind])
                          if w.namespace == wake.namespace and selector.matches(w.labels)), key=lambda w: w.name)
        if not matched:
            raise Refusal(404, "not-found", f"no {kind.name} in namespace {wake.namespace} matches {wake.selector}")
        answers = []
        for workload in matched:
            try:
                answers.append(self._one(workload, wake, identity, now=now, term=term))
            except Refusal as refusal:  # over the caller's budget: the rest are not written
                answers.append({**refusal.answer.body, "kind": kind.name, "namespace": workload.namespace,
                                "name": workload.name})
        best = min((a["result"] for a in answers), key=list(STATUS).index)
        log.info("push wake", by=identity.username, kind=kind.name, namespace=wake.namespace, selector=wake.selector,
                 result=best, results={a["name"]: a["result"] for a in answers})
        return Answer(STATUS[best], {"result": best, "reason": f"{len(answers)} matched {wake.selector}",
                                     "kind": kind.name, "namespace": wake.namespace, "selector": wake.selector,
                                     "workloads": answers})

    def _one(self, workload: Workload, wake: WakeRequest, identity: Identity, *, now: datetime, term: int) -> dict:
        """One workload's answer: what its policy decides for the push, and what was written."""
        evaluator = self.daemon.evaluator
        if self.daemon.actor.written(workload.key, timeout_seconds=IN_FLIGHT_SECONDS):  # a pause on its way
            workload = evaluator.view.latest(workload) or workload
        state = evaluator.state_of(workload)
        facts = {"kind": workload.kind.name, "namespace": workload.namespace, "name": workload.name,
                 "replicas": workload.replicas, "readyReplicas": workload.ready_replicas, "by": identity.username}
        if is_excluded(state, excluded_namespaces=evaluator.excluded_namespaces):
            return {"result": "not-managed", "reason": "annotated scaler.io/exclude: scaler never touches it",
                    **facts}
        chosen = select_policy(self.daemon.policies, state,
                               namespace_labels=evaluator.view.namespace_labels(workload.namespace))
        if chosen is None:
            return {"result": "not-managed", "reason": "no policy matches it", **facts}
        if isinstance(chosen, Conflict):
            held = decide(policy=chosen, workload=state, signals=Signals(), now=now)
            return {"result": "held", "reason": held.reason, "reasonCode": str(held.reason_code), **facts}
        if chosen.wake is None:
            return {"result": "held", "policy": chosen.name, **facts,
                    "reason": f"policy {chosen.name} has no wake signal: a push is a queue signal, and this "
                              "policy wakes on none (add a wake: block to it)"}
        queue = wake.queue if wake.queue is not None else chosen.wake.activation_threshold + 1
        signals = Signals(wake=queue)
        decision = decide(policy=chosen, workload=state, signals=signals, now=now)
        facts.update(policy=chosen.name, queue=queue, desired=decision.replicas,
                     reasonCode=str(decision.reason_code))
        if decision.action in (Action.RESUME, Action.SCALE_UP):
            decision = replace(decision, reason=f"{'woken' if decision.action is Action.RESUME else 'scaled up'} "
                                                f"by a push from {identity.username}: {decision.reason}")
            return self._write(Evaluation(workload, state, chosen, decision, signals), facts, now=now, term=term)
        return _held(decision, workload, queue, chosen.wake.activation_threshold, facts)

    def _write(self, evaluation: Evaluation, facts: dict, *, now: datetime, term: int) -> dict:
        """Through the actor's fenced writes, as every other decision, after the Events the last leader owed (a
        wake replaces the record they are found by); a write takes a token from the caller's budget (or 429)."""
        actor, decision = self.daemon.actor, evaluation.decision
        if not actor.dry_run:
            self.budgets.charge(facts["by"])
        self.daemon.post_owed_events(term)
        results = actor.act([evaluation], now=now, term=term)
        if not results:
            if actor.may_act(evaluation.policy, term):
                return {"result": "waking", "reason": "another pass is writing it now", **facts}
            return {"result": "not-sent", "reason": "not the leader any more, stopping, or its policy changed",
                    **facts}
        result: Result = results[0]
        wrote = "woken" if decision.action is Action.RESUME else "scaled-up"
        outcome = {Outcome.CHANGED: wrote, Outcome.WOULD_CHANGE: "dry-run", Outcome.FAILED: "failed"}
        if result.outcome in outcome:
            reason = decision.reason if result.outcome is Outcome.CHANGED else \
                f"dry run: would have {wrote.replace('-', ' ')}: {decision.reason}" \
                if result.outcome is Outcome.WOULD_CHANGE else result.reason
            return {**facts, "result": outcome[result.outcome], "reason": reason}
        fresh = actor.view.latest(evaluation.workload) or evaluation.workload
        if fresh.replicas > 0:  # someone (another pass) woke it first, or it was up already
            return {**facts, "result": "already-up", "reason": result.reason, "replicas": fresh.replicas,
                    "readyReplicas": fresh.ready_replicas}
        again = decide(policy=evaluation.policy, workload=self.daemon.evaluator.state_of(fresh),
                       signals=evaluation.signals, now=utc_now())
        if again.action is Action.HOLD:  # paused by hand, or a window closed, while the write waited
            return {**facts, "result": "held", "reason": again.reason, "reasonCode": str(again.reason_code)}
        return {**facts, "result": "not-sent", "reason": result.reason}


def _held(decision: Decision, workload: Workload, queue: float, threshold: float, facts: dict) -> dict:
    """A decision that writes nothing: up already, or held where it is."""
    if workload.replicas > 0 and decision.action is not Action.PAUSE:
        return {**facts, "result": "already-up", "reason": decision.reason}
    reason, (low, limit) = decision.reason, (beside(queue, threshold), beside(threshold, queue))
    if workload.replicas == 0 and queue <= threshold and decision.reason_code is not Code.KEEP_DOWN_WINDOW:
        reason = f"queue {low} is not above the activation threshold {limit}: {reason}"
    return {**facts, "result": "held", "reason": reason}
