"""A small Kubernetes API server in process, for the unit tier.

It speaks HTTP on 127.0.0.1, so scaler's real client stack (the kubernetes
package's ApiClient, urllib3, our Kube, the informers' watch streams, the
client's LeaseLock) talks to it unchanged. It refuses what the real server
refuses, with the real server's answers: Status bodies, 404 for a missing
object or namespace, 404 text for an unserved group, 409 for a stale
resourceVersion or a taken name, 422 for a failed JSON-patch `test` or an
invalid value, 410 for a compacted watch. tests/fixtures/api/exchanges.json
holds what the local kube-apiserver answered to the same requests, and
tests/unit/test_fake_api.py holds the fake to it (the cluster tier records
the real answers again and compares).

Faults are injected per request (`fail`): any status (429 with Retry-After,
5xx, 403), a hang until released, a connection reset; `before` runs a
function before a matching request is handled (a writer racing scaler).
Every request is logged (`requests`), so a test counts PATCHes.

Objects are stored as JSON, keyed by (group, plural) whatever the version;
managedFields record who owns which fields (create, update, apply), which is
what scaler reads to tell a GitOps revert from a person's edit.

TokenRequest, TokenReview and SubjectAccessReview are answered, never stored,
from tables a test sets (`token`, `allow`) and the RBAC objects it creates
(tests/fakes/reviews.py).
"""

from __future__ import annotations

import base64
import copy
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.fakes import reviews
from tests.fakes.patching import PatchError, dig, json_patch, leaves, merge_patch
from tests.fakes.selecting import SelectorError, field_matches, label_matches


@dataclass(frozen=True)
class Kind:
    group: str
    plural: str
    kind: str
    namespaced: bool = True
    versions: tuple[str, ...] = ("v1",)
    #: writes to the main resource keep status as it was (a /status subresource exists)
    status_subresource: bool = False
    #: spec changes bump metadata.generation
    generation: bool = False

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


BUILTIN = [
    Kind("", "namespaces", "Namespace", namespaced=False, status_subresource=True),
    Kind("", "nodes", "Node", namespaced=False, status_subresource=True),
    Kind("", "pods", "Pod", status_subresource=True),
    Kind("", "events", "Event"),
    Kind("", "configmaps", "ConfigMap"),
    Kind("", "secrets", "Secret"),
    Kind("", "serviceaccounts", "ServiceAccount"),
    Kind("apps", "deployments", "Deployment", status_subresource=True, generation=True),
    Kind("apps", "statefulsets", "StatefulSet", status_subresource=True, generation=True),
    Kind("apps", "daemonsets", "DaemonSet", status_subresource=True, generation=True),
    Kind("apps", "replicasets", "ReplicaSet", status_subresource=True, generation=True),
    Kind("batch", "jobs", "Job", status_subresource=True, generation=True),
    Kind("coordination.k8s.io", "leases", "Lease"),
    Kind("policy", "poddisruptionbudgets", "PodDisruptionBudget", status_subresource=True, generation=True),
    Kind("apiextensions.k8s.io", "customresourcedefinitions", "CustomResourceDefinition", namespaced=False,
         status_subresource=True, generation=True),
    Kind("rbac.authorization.k8s.io", "roles", "Role"),
    Kind("rbac.authorization.k8s.io", "rolebindings", "RoleBinding"),
    Kind("rbac.authorization.k8s.io", "clusterroles", "ClusterRole", namespaced=False),
    Kind("rbac.authorization.k8s.io", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    # Create-only: answered in their status, never stored (tests/fakes/reviews.py).
    Kind("authentication.k8s.io", "tokenreviews", "TokenReview", namespaced=False),
    Kind("authorization.k8s.io", "subjectaccessreviews", "SubjectAccessReview", namespaced=False),
]

BUILTIN_KEYS = frozenset((k.group, k.plural) for k in BUILTIN)

#: Fields the server owns: never in a patch's ownership, never compared.
SYSTEM = {("metadata", k) for k in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields",
                                    "name", "namespace", "generateName", "deletionTimestamp")}
SYSTEM |= {("apiVersion",), ("kind",)}
DEFAULT_REPLICAS = {"deployments", "statefulsets", "replicasets"}


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict | None = None,
                 headers: dict | None = None, text: str | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details = details if details is not None else {}
        self.headers = headers or {}
        self.text = text  # a plain-text body instead of a Status (404 page not found)

    def body(self) -> bytes:
        if self.text is not None:
            return self.text.encode()
        return json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": self.message, "reason": self.reason, "details": self.details,
                           "code": self.code}).encode()


def _details(kind: Kind, name: str | None) -> dict:
    details: dict = {"name": name} if name else {}
    if kind.group:
        details["group"] = kind.group
    details["kind"] = kind.plural
    return details


def not_found(kind: Kind, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{kind.qualified} "{name}" not found', _details(kind, name))


def conflict(kind: Kind, name: str) -> ApiError:
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {kind.qualified} "{name}": the object has '
                    "been modified; please apply your changes to the latest version and try again",
                    _details(kind, name))


def invalid(kind: Kind, name: str, field_path: str, message: str) -> ApiError:
    group = f".{kind.group}" if kind.group else ""
    return ApiError(422, "Invalid", f'{kind.kind}{group} "{name}" is invalid: {field_path}: {message}',
                    {"name": name, **({"group": kind.group} if kind.group else {}), "kind": kind.kind,
                     "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field_path}]})


PATCH_REFUSED = ApiError(422, "Invalid", "the server rejected our request due to an error in our request")


def refused_value(field_path: str) -> ApiError:
    """A patch that yields an object the server cannot decode (an annotation that is not a string)."""
    return ApiError(422, "Invalid", f' "" is invalid: {field_path}: Invalid value: the patched object',
                    {"causes": [{"reason": "FieldValueInvalid", "message": "Invalid value", "field": field_path}]})


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Fault:
    """What to do to requests that match: `status` answers it, `hang` holds it
    until the event is set, `reset` drops the connection, `delay_seconds`
    slows it. `times` matching requests are affected (None: every one).
    `after`: the request is carried out first, and only its answer is lost
    (a write that landed, as far as the client can tell, or not)."""

    method: str | None = None
    path: str | None = None  # a regular expression searched in the path
    status: int | None = None
    retry_after: float | None = None
    hang: threading.Event | None = None
    reset: bool = False
    delay_seconds: float = 0.0
    times: int | None = 1
    watch: bool | None = None  # only watches (True), only non-watches (False), or both
    agent: str | None = None  # only requests whose User-Agent starts with this (one of several clients)
    after: bool = False
    hits: int = 0

    def matches(self, method: str, path: str, watching: bool, agent: str = "", after: bool = False) -> bool:
        if self.after != after or (self.times is not None and self.hits >= self.times):
            return False
        if self.watch is not None and self.watch != watching:
            return False
        if self.agent is not None and not agent.startswith(self.agent):
            return False
        return (self.method is None or self.method == method) and (self.path is None or bool(
            re.search(self.path, path)))


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    verb: str
    status: int = 0
    body: Any = None
    content_type: str = ""
    agent: str = ""
    at: float = field(default_factory=time.monotonic)


@dataclass
class _Event:
    version: int
    key: tuple[str, str]  # (group, plural)
    namespace: str
    type: str
    obj: dict


class FakeKube:
    """The store, the watch log and the request log; `serve()` puts it on HTTP."""

    def __init__(self, *, auto_ready: bool = True, history: int = 100_000) -> None:
        self.kinds: dict[tuple[str, str], Kind] = {(k.group, k.plural): k for k in BUILTIN}
        self.objects: dict[tuple[str, str], dict[tuple[str, str], dict]] = {}
        self.owners: dict[tuple[str, str, str, str], dict[str, dict]] = {}  # manager -> {operation, time, paths}
        self.version = 100
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.log: list[_Event] = []
        self.history = history
        self.compacted = 0  # watches from before this version get 410 Gone
        self.faults: list[Fault] = []
        self.hooks: list[tuple[str | None, str, Callable[[Request], None]]] = []
        self.denied: list[tuple[str, str]] = []  # (verb, plural) answered 403
        self.requests: list[Request] = []
        #: token -> who a TokenReview says it is (`token`; a TokenRequest adds the tokens it mints)
        self.tokens: dict[str, reviews.Holder] = {}
        #: (user or group, verb, 'deployments.apps/scale', namespace or '' for any, name or '' for any):
        #: allowed by a SubjectAccessReview (`allow`), besides what the stored RBAC objects grant
        self.permissions: set[tuple[str, str, str, str, str]] = set()
        #: a Deployment's (StatefulSet's) status follows its spec at once: every replica Ready
        self.auto_ready = auto_ready
        self.stopped = threading.Event()
        self.cuts = 0  # watches started before the last cut_watches() break
        self._server: ThreadingHTTPServer | None = None
        for name in ("default", "kube-system"):
            self.create("namespaces", {"metadata": {"name": name}})

    # Kinds

    def kind(self, resource: str) -> Kind:
        """'deployments.apps', 'events', 'leases.coordination.k8s.io'."""
        plural, _, group = resource.partition(".")
        try:
            return self.kinds[(group, plural)]
        except KeyError:
            raise KeyError(f"the fake serves no {resource}") from None

    def _register_crd(self, crd: dict) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        versions = tuple(v["name"] for v in spec.get("versions") or [] if v.get("served", True))
        status = any(((v.get("subresources") or {}).get("status") is not None) for v in spec.get("versions") or [])
        kind = Kind(spec.get("group", ""), names.get("plural", ""), names.get("kind", ""),
                    namespaced=spec.get("scope", "Namespaced") == "Namespaced", versions=versions or ("v1",),
                    status_subresource=status, generation=True)
        self.kinds[(kind.group, kind.plural)] = kind

    # The store, as the server's handlers use it (and tests, directly)

    def _bump(self) -> str:
        self.version += 1
        return str(self.version)

    def _record(self, kind: Kind, namespace: str, type_: str, obj: dict) -> None:
        self.log.append(_Event(self.version, (kind.group, kind.plural), namespace, type_, copy.deepcopy(obj)))
        if len(self.log) > self.history:
            dropped = self.log[: len(self.log) - self.history]
            del self.log[: len(dropped)]
            self.compacted = dropped[-1].version
        self.changed.notify_all()

    def compact(self) -> None:
        """Forget the watch history: a watch from an older version gets 410 Gone."""
        with self.lock:
            self.log.clear()
            self.compacted = self.version

    def _store(self, kind: Kind) -> dict[tuple[str, str], dict]:
        return self.objects.setdefault((kind.group, kind.plural), {})

    def _check_namespace(self, kind: Kind, namespace: str) -> None:
        if kind.namespaced and ("", namespace) not in self._store(self.kinds[("", "namespaces")]):
            raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found',
                           {"name": namespace, "kind": "namespaces"})

    def create(self, resource: str | Kind, obj: dict, *, namespace: str = "", manager: str = "test",
               version: str | None = None) -> dict:
        kind = resource if isinstance(resource, Kind) else self.kind(resource)
        with self.lock:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            namespace = (namespace or meta.get("namespace", "")) if kind.namespaced else ""
            if kind.namespaced:
                if not namespace:
                    raise ApiError(400, "BadRequest", "the namespace of the object must be set")
                self._check_namespace(kind, namespace)
                meta["namespace"] = namespace
            if not meta.get("name"):
                if not meta.get("generateName"):
                    raise ApiError(422, "Invalid", f"{kind.kind} \"\" is invalid: metadata.name: Required value: "
                                   "name or generateName is required")
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            key = (namespace, meta["name"])
            if key in self._store(kind):
                raise ApiError(409, "AlreadyExists", f'{kind.qualified} "{meta["name"]}" already exists',
                               _details(kind, meta["name"]))
            if kind.plural in DEFAULT_REPLICAS:
                obj.setdefault("spec", {}).setdefault("replicas", 1)
            self._validate(kind, obj)
            obj["apiVersion"] = f"{kind.group}/{version or kind.versions[0]}" if kind.group else (version or "v1")
            obj["kind"] = kind.kind
            meta.update(uid=str(uuid.uuid4()), resourceVersion=self._bump(), creationTimestamp=now_text())
            if kind.generation:
                meta["generation"] = 1
            if kind.plural == "namespaces":
                meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
            self._own(kind, key, manager, "Update", {}, obj)
            self._follow(kind, obj)
            self._store(kind)[key] = obj
            if kind.plural == "customresourcedefinitions":
                self._register_crd(obj)
            self._record(kind, namespace, "ADDED", self._shown(kind, key, obj))
            return self._shown(kind, key, obj)

    def get(self, resource: str | Kind, namespace: str, name: str) -> dict:
        kind = resource if isinstance(resource, Kind) else self.kind(resource)
        with self.lock:
            key = (namespace if kind.namespaced else "", name)
            obj = self._store(kind).get(key)
            if obj is None:
                raise not_found(kind, name)
            return self._shown(kind, key, obj)

    def items(self, resource: str | Kind, namespace: str | None = None) -> list[dict]:
        kind = resource if isinstance(resource, Kind) else self.kind(resource)
        with self.lock:
            return [self._shown(kind, key, obj) for key, obj in sorted(self._store(kind).items())
                    if namespace is None or key[0] == namespace]

    def write(self, resource: str | Kind, namespace: str, name: str, change: Callable[[dict], dict], *,
              manager: str = "test", operation: str = "Update", subresource: str | None = None,
              expect_version: str | None = None, applied: dict | None = None) -> dict:
        """Replace the object by `change(copy)`: the one path every update takes."""
        kind = resource if isinstance(resource, Kind) else self.kind(resource)
        with self.lock:
            key = (namespace if kind.namespaced else "", name)
            old = self._store(kind).get(key)
            if old is None:
                raise not_found(kind, name)
            new = change(copy.deepcopy(old))
            if not isinstance(new, dict):
                raise PATCH_REFUSED
            sent = (new.get("metadata") or {}).get("resourceVersion")
            if expect_version is not None:
                sent = expect_version
            if sent and sent != old["metadata"]["resourceVersion"]:
                raise conflict(kind, name)
            new.setdefault("metadata", {})
            for system in ("uid", "creationTimestamp", "generation", "name", "namespace"):
                if system in old["metadata"]:
                    new["metadata"][system] = old["metadata"][system]
            new.pop("managedFields", None)
            new["metadata"].pop("managedFields", None)
            new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
            new = _split_status(kind, old, new, subresource)
            self._validate(kind, new)
            if kind.generation and new.get("spec") != old.get("spec"):
                new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
            if applied is not None:
                self._check_apply(kind, key, manager, applied, old)
            if _content(new) == _content(old):
                return self._shown(kind, key, old)  # no change: no new resourceVersion, no event
            new["metadata"]["resourceVersion"] = self._bump()
            self._own(kind, key, manager, operation, old, new, applied=applied)
            self._follow(kind, new)
            self._store(kind)[key] = new
            self._record(kind, key[0], "MODIFIED", self._shown(kind, key, new))
            return self._shown(kind, key, new)

    def delete(self, resource: str | Kind, namespace: str, name: str) -> dict:
        kind = resource if isinstance(resource, Kind) else self.kind(resource)
        with self.lock:
            key = (namespace if kind.namespaced else "", name)
            obj = self._store(kind).pop(key, None)
            if obj is None:
                raise not_found(kind, name)
            shown = self._shown(kind, key, obj)
            self.owners.pop((kind.group, kind.plural, *key), None)
            self._bump()
            shown["metadata"]["resourceVersion"] = str(self.version)
            self._record(kind, key[0], "DELETED", shown)
            if kind.plural == "namespaces":
                for other in list(self.kinds.values()):
                    if other.namespaced:
                        for inner in [k for k in self._store(other) if k[0] == name]:
                            self.delete(other, *inner)
            return shown

    # Conveniences for tests: another writer, the controllers

    def patch(self, resource: str, namespace: str, name: str, patch: dict, *, manager: str = "kubectl") -> dict:
        """A merge patch by another writer (a person: `kubectl`)."""
        return self.write(resource, namespace, name, lambda obj: merge_patch(obj, patch), manager=manager)

    def apply(self, resource: str, namespace: str, name: str, config: dict, *, manager: str,
              force: bool = True) -> dict:
        """Server-side apply of `config` by `manager` (a GitOps controller)."""
        return self.write(resource, namespace, name, lambda obj: merge_patch(obj, config), manager=manager,
                          operation="Apply", applied=None if force else config)

    def set_status(self, resource: str, namespace: str, name: str, status: dict) -> dict:
        return self.write(resource, namespace, name, lambda obj: {**obj, "status": {**(obj.get("status") or {}),
                                                                                   **status}},
                          manager="kube-controller-manager", subresource="status")

    def events(self, namespace: str, name: str | None = None, reason: str | None = None) -> list[dict]:
        return [e for e in self.items("events", namespace)
                if (name is None or e.get("involvedObject", {}).get("name") == name)
                and (reason is None or e.get("reason") == reason)]

    def count(self, method: str, path: str = "") -> int:
        return sum(1 for r in list(self.requests) if r.method == method and path in r.path)

    def fail(self, **kwargs: Any) -> Fault:
        fault = Fault(**kwargs)
        with self.lock:
            self.faults.append(fault)
        return fault

    def cut_watches(self) -> None:
        """Break every watch open now, its connection dropped mid-stream (the
        API server gone away, or a load balancer in front of it restarted)."""
        with self.lock:
            self.cuts += 1
            self.changed.notify_all()

    def before(self, method: str | None, path: str, hook: Callable[[Request], None]) -> None:
        """Run `hook` before each matching request is handled (outside the store's lock)."""
        self.hooks.append((method, path, hook))

    def token(self, token: str, username: str, *, groups: tuple[str, ...] = (), uid: str = "",
              audiences: tuple[str, ...] = (reviews.API_AUDIENCE,)) -> None:
        """A TokenReview of `token` (for one of `audiences`) says it is `username`."""
        self.tokens[token] = reviews.Holder(username, uid, (*groups, "system:authenticated"), audiences)

    def allow(self, subject: str, verb: str, resource: str, *, namespace: str = "", name: str = "") -> None:
        """A SubjectAccessReview lets `subject` (a user or a group) `verb` on
        `resource` ('deployments.apps/scale'), in `namespace` and on `name`
        ('' for any)."""
        self.permissions.add((subject, verb, resource, namespace, name))

    def deny(self, verb: str, resource: str) -> None:
        """Answer `verb` on `resource` (e.g. 'deployments.apps') with 403."""
        self.denied.append((verb, resource))

    # What the server adds

    def _follow(self, kind: Kind, obj: dict) -> None:
        """The controllers' part that tests do not want to write: a workload's
        status follows its spec when `auto_ready`."""
        if self.auto_ready and kind.plural in ("deployments", "statefulsets"):
            replicas = (obj.get("spec") or {}).get("replicas", 1)
            status = obj.setdefault("status", {})
            status.update(replicas=replicas, readyReplicas=replicas, availableReplicas=replicas,
                          updatedReplicas=replicas, observedGeneration=obj["metadata"].get("generation", 1))
            if not replicas:
                for name in ("replicas", "readyReplicas", "availableReplicas", "updatedReplicas"):
                    status.pop(name, None)

    def _validate(self, kind: Kind, obj: dict) -> None:
        meta, name = obj.get("metadata") or {}, (obj.get("metadata") or {}).get("name", "")
        for field_name in ("annotations", "labels"):
            values = meta.get(field_name)
            if values is None:
                continue
            if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
                raise refused_value("patch")
        if kind.plural in DEFAULT_REPLICAS:
            replicas = (obj.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas > 2**31 - 1:
                raise refused_value("patch")  # not an int32: the server cannot decode the object
            if replicas < 0:
                raise invalid(kind, name, "spec.replicas", f"Invalid value: {replicas}: must be greater than or "
                              "equal to 0")

    def _own(self, kind: Kind, key: tuple[str, str], manager: str, operation: str, old: dict, new: dict,
             applied: dict | None = None) -> None:
        """Who owns which fields: the writer takes every leaf it changed (an
        apply: every leaf of its configuration); the others lose them."""
        owners = self.owners.setdefault((kind.group, kind.plural, *key), {})
        before = dict(leaves(_owned(old)))
        changed = {path for path, value in leaves(_owned(new)) if before.get(path, _MISSING) != value}
        changed |= {path for path in before if not dig(_owned(new), path)[0]}
        if operation == "Apply":
            taken = {path for path, _ in leaves(_owned(applied or new))} if applied is not None else changed
        else:
            taken = changed
        for other, entry in owners.items():
            if other != manager:
                entry["paths"] -= taken
        entry = owners.setdefault(manager, {"operation": operation, "paths": set()})
        entry.update(operation=operation, time=now_text())
        entry["paths"] |= {path for path in taken if dig(_owned(new), path)[0]}
        for gone in [m for m, e in owners.items() if not e["paths"]]:
            del owners[gone]

    def _check_apply(self, kind: Kind, key: tuple[str, str], manager: str, config: dict, old: dict) -> None:
        owners = self.owners.get((kind.group, kind.plural, *key), {})
        conflicts = []
        for path, value in leaves(_owned(config)):
            found, current = dig(old, path)
            if found and current != value:
                where = "." + ".".join(path)
                conflicts += [(f'conflict with "{m}": {where}', where) for m, e in owners.items()
                              if m != manager and path in e["paths"]]
        if conflicts:
            raise ApiError(409, "Conflict", f"Apply failed with {len(conflicts)} conflict"
                           f"{'s' if len(conflicts) > 1 else ''}: {'; '.join(text for text, _ in conflicts)}",
                           {"causes": [{"reason": "FieldManagerConflict", "message": text.split(":")[0],
                                        "field": where} for text, where in conflicts]})

    def _shown(self, kind: Kind, key: tuple[str, str], obj: dict) -> dict:
        shown = copy.deepcopy(obj)
        owners = self.owners.get((kind.group, kind.plural, *key), {})
        if owners:
            shown["metadata"]["managedFields"] = [
                {"manager": manager, "operation": entry["operation"], "apiVersion": obj["apiVersion"],
                 "time": entry["time"], "fieldsType": "FieldsV1", "fieldsV1": _fields_v1(entry["paths"])}
                for manager, entry in owners.items()]
        return shown

    # HTTP

    def serve(self) -> FakeKube:
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, name="fake-kube",
                         daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None, "serve() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self.stopped.set()
        for fault in self.faults:
            if fault.hang is not None:
                fault.hang.set()
        with self.lock:
            self.changed.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def kubeconfig(self, path: Path, *, namespace: str = "default") -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-admin"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}]}))
        return path

    def client(self, **kwargs: Any):
        """scaler's Kube client, pointed at this server."""
        from kubernetes import client as k8s

        from scaler.cluster.kube import Kube, no_hidden_retries

        configuration = k8s.Configuration()
        configuration.host = self.url
        configuration.connection_pool_maxsize = 64
        return Kube(k8s.ApiClient(no_hidden_retries(configuration)), **kwargs)

    def watch_events(self, kind: Kind, namespace: str | None, since: int) -> list[_Event]:
        return [e for e in self.log if e.version > since and e.key == (kind.group, kind.plural)
                and (namespace is None or e.namespace == namespace)]


_MISSING = object()


def _owned(obj: dict | None) -> dict:
    """The fields a manager can own: not status, not the server's own."""
    if not obj:
        return {}
    out = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status")}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if ("metadata", k) not in SYSTEM}
    if meta:
        out["metadata"] = meta
    else:
        out.pop("metadata", None)
    return out


def _split_status(kind: Kind, old: dict, new: dict, subresource: str | None) -> dict:
    """With a /status subresource, the main resource's writes keep status as
    it was and /status writes change nothing else."""
    if not kind.status_subresource:
        return new
    if subresource == "status":
        return {**old, "status": new.get("status")} if "status" in new else {**old}
    if "status" in old:
        new["status"] = copy.deepcopy(old["status"])
    else:
        new.pop("status", None)
    return new


def _content(obj: dict) -> dict:
    out = copy.deepcopy(obj)
    out.get("metadata", {}).pop("resourceVersion", None)
    out.get("metadata", {}).pop("managedFields", None)
    return out


def _fields_v1(paths: set[tuple[str, ...]]) -> dict:
    root: dict = {}
    for path in sorted(paths):
        node = root
        for part in path:
            node = node.setdefault(f"f:{part}", {})
    return root


def _encode_continue(version: int, after: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps([version, *after]).encode()).decode()


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        _, namespace, name = json.loads(base64.urlsafe_b64decode(token.encode()))
        return namespace, name
    except (ValueError, TypeError):
        raise ApiError(400, "BadRequest", "continue key is not valid") from None


class _Handler(BaseHTTPRequestHandler):
    fake: FakeKube
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes: without this, Nagle's
        # algorithm and the client's delayed ACK cost 40 ms a request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # One request

    def _handle(self, method: str) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0]
        watching = method == "GET" and query.get("watch") in ("true", "1")
        request = Request(method, parts.path, query, "watch" if watching else method.lower(), content_type=content_type,
                          agent=self.headers.get("User-Agent") or "")
        fake.requests.append(request)
        try:
            self._faults(method, parts.path, watching)
            try:
                request.body = _parse_body(raw, content_type)
            except ValueError as error:
                raise ApiError(400, "BadRequest", f"error decoding body: {error}") from None
            route = _route(fake, parts.path)
            request.verb = _verb(method, route, watching)
            for hook_method, pattern, hook in list(fake.hooks):
                if (hook_method is None or hook_method == method) and re.search(pattern, parts.path):
                    hook(request)
            self._authorize(request.verb, route)
            if watching:
                self._watch(route, query, request)
                return
            status, body = self._dispatch(method, route, query, request)
            self._faults(method, parts.path, watching, after=True)
        except ApiError as error:
            request.status = error.code
            self._send(error.code, error.body(), headers=error.headers,
                       content_type="text/plain" if error.text is not None else "application/json")
            return
        except _Reset:
            request.status = -1
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        request.status = status
        self._send(status, json.dumps(body).encode())

    def _faults(self, method: str, path: str, watching: bool, *, after: bool = False) -> None:
        fake = self.fake
        agent = self.headers.get("User-Agent") or ""
        with fake.lock:
            fault = next((f for f in fake.faults if f.matches(method, path, watching, agent, after)), None)
            if fault is not None:
                fault.hits += 1
        if fault is None:
            return
        if fault.delay_seconds:
            fake.stopped.wait(fault.delay_seconds)
        if fault.hang is not None:
            fault.hang.wait()
        if fault.reset:
            raise _Reset()
        if fault.status is not None:
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            reason = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 403: "Forbidden",
                      401: "Unauthorized", 504: "Timeout"}.get(fault.status, "Unknown")
            raise ApiError(fault.status, reason, f"injected {fault.status}", headers=headers)

    def _authorize(self, verb: str, route: _Route) -> None:
        if (verb, route.kind.qualified) in self.fake.denied:
            where = f' in the namespace "{route.namespace}"' if route.namespace else ""
            named = f' "{route.name}"' if route.name else ""
            raise ApiError(403, "Forbidden", f'{route.kind.qualified}{named} is forbidden: User "fake" cannot {verb} '
                           f'resource "{route.kind.plural}" in API group "{route.kind.group}"{where}',
                           _details(route.kind, route.name))

    def _dispatch(self, method: str, route: _Route, query: dict, request: Request) -> tuple[int, Any]:
        fake, kind = self.fake, route.kind
        # Without a fieldManager the server names the writer after its user agent.
        manager = query.get("fieldManager") or (self.headers.get("User-Agent") or "unknown").split("/")[0]
        if (kind.group, kind.plural) in reviews.VIRTUAL or route.subresource == "token":
            return self._review(method, route, request, manager)
        if method == "GET" and route.name:
            return 200, fake.get(kind, route.namespace, route.name)
        if method == "GET":
            return 200, self._list(route, query)
        if method == "POST":
            if route.name:
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                               "resource")
            body = request.body if isinstance(request.body, dict) else {}
            named = (body.get("metadata") or {}).get("namespace")
            if kind.namespaced and named and named != route.namespace:
                raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the "
                               "namespace sent on the request")
            return 201, fake.create(kind, body, namespace=route.namespace, manager=manager, version=route.version)
        if method == "PUT":
            body = request.body if isinstance(request.body, dict) else {}
            if not (body.get("metadata") or {}).get("resourceVersion"):
                raise ApiError(422, "Invalid", f'{kind.kind} "{route.name}" is invalid: metadata.resourceVersion: '
                               "Invalid value: 0x0: must be specified for an update")
            return 200, fake.write(kind, route.namespace, route.name, lambda obj: copy.deepcopy(body),
                                   manager=manager, subresource=route.subresource)
        if method == "PATCH":
            return 200, self._patch(route, query, request, manager)
        if method == "DELETE":
            gone = fake.delete(kind, route.namespace, route.name)
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                         "details": {**_details(kind, route.name), "uid": gone["metadata"]["uid"]}}
        raise ApiError(405, "MethodNotAllowed", "method not allowed")

    def _review(self, method: str, route: _Route, request: Request, manager: str) -> tuple[int, Any]:
        """TokenRequest, TokenReview, SubjectAccessReview: create-only, answered in their status."""
        if method != "POST" or (route.name and route.subresource is None):
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                           "resource")
        if route.subresource == "token":
            return 201, reviews.token_request(self.fake, route.namespace, route.name, request.body, manager)
        if route.kind.plural == "tokenreviews":
            return 201, reviews.token_review(self.fake, request.body, manager)
        return 201, reviews.access_review(self.fake, request.body, manager)

    def _patch(self, route: _Route, query: dict, request: Request, manager: str) -> dict:
        body, kind = request.body, route.kind
        if request.content_type == "application/json-patch+json":
            def change(obj: dict) -> dict:
                try:
                    new = json_patch(obj, body)
                except PatchError:
                    raise PATCH_REFUSED from None
                # A resourceVersion the patch itself left as read is not a precondition.
                if (new.get("metadata") or {}).get("resourceVersion") == obj["metadata"]["resourceVersion"]:
                    new["metadata"].pop("resourceVersion")
                return new
            return self.fake.write(kind, route.namespace, route.name, change, manager=manager,
                                   subresource=route.subresource)
        if request.content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            if not isinstance(body, dict):
                raise PATCH_REFUSED
            return self.fake.write(kind, route.namespace, route.name, lambda obj: merge_patch(obj, body),
                                   manager=manager, subresource=route.subresource)
        if request.content_type == "application/apply-patch+yaml":
            if "fieldManager" not in query:
                raise ApiError(400, "BadRequest", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required "
                               "value: is required for apply patch")
            force = query.get("force") == "true"
            return self.fake.write(kind, route.namespace, route.name, lambda obj: merge_patch(obj, body),
                                   manager=manager, operation="Apply", applied=None if force else body,
                                   subresource=route.subresource)
        raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted "
                       f"media types include: application/json-patch+json, application/merge-patch+json, "
                       f"application/apply-patch+yaml; got {request.content_type!r}")

    def _list(self, route: _Route, query: dict) -> dict:
        fake, kind = self.fake, route.kind
        try:
            with fake.lock:
                items = [obj for obj in fake.items(kind, route.namespace or None)
                         if label_matches(query.get("labelSelector", ""), obj)
                         and field_matches(query.get("fieldSelector", ""), obj)]
                version = str(fake.version)
        except SelectorError as error:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {error}") from None
        if query.get("continue"):
            after = _decode_continue(query["continue"])
            items = [o for o in items if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > after]
        meta: dict = {"resourceVersion": version}
        limit = int(query.get("limit") or 0)
        if limit and len(items) > limit:
            last = items[limit - 1]["metadata"]
            meta["continue"] = _encode_continue(int(version), (last.get("namespace", ""), last["name"]))
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        if (kind.group, kind.plural) in BUILTIN_KEYS:  # a typed list's items carry no kind of their own
            for item in items:
                item.pop("apiVersion", None)
                item.pop("kind", None)
        group = f"{kind.group}/{route.version}" if kind.group else route.version
        return {"kind": f"{kind.kind}List", "apiVersion": group, "metadata": meta, "items": items}

    def _watch(self, route: _Route, query: dict, request: Request) -> None:
        fake, kind = self.fake, route.kind
        timeout = float(query.get("timeoutSeconds") or 1800)
        deadline = time.monotonic() + timeout
        since_text = query.get("resourceVersion") or "0"
        request.status = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        cut, broken = fake.cuts, False
        with fake.lock:
            if since_text == "0":
                events = [_Event(fake.version, (kind.group, kind.plural), o["metadata"].get("namespace", ""),
                                 "ADDED", o) for o in fake.items(kind, route.namespace or None)]
                since = fake.version
            else:
                since = int(since_text)
                events = []
        try:
            if since_text != "0" and since < fake.compacted:
                self._chunk({"type": "ERROR", "object": {
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": f"too old resource version: {since} ({fake.compacted})", "reason": "Expired",
                    "code": 410}})
                return
            for event in events:
                self._chunk({"type": event.type, "object": event.obj})
            while not fake.stopped.is_set():
                if fake.cuts != cut:
                    broken = True
                    raise _Reset()
                with fake.lock:
                    pending = fake.watch_events(kind, route.namespace or None, since)
                    if not pending:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        fake.changed.wait(min(left, 0.5))
                        continue
                for event in pending:
                    since = event.version
                    self._chunk({"type": event.type, "object": event.obj})
        except OSError:
            return
        finally:
            try:
                if not broken:  # broken: no end of the stream, the connection just drops
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
            except OSError:
                pass

    def _chunk(self, event: dict) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _send(self, status: int, body: bytes, *, headers: dict | None = None,
              content_type: str = "application/json") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass


class _Reset(Exception):
    pass


@dataclass
class _Route:
    kind: Kind
    version: str
    namespace: str
    name: str
    subresource: str | None


def _route(fake: FakeKube, path: str) -> _Route:
    parts = [p for p in path.split("/") if p]
    page_not_found = ApiError(404, "NotFound", "404 page not found", text="404 page not found\n")
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise page_not_found
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    elif len(rest) == 2 and rest[0] == "namespaces":
        rest = ["namespaces", rest[1]]
    if not rest or len(rest) > 3:
        raise page_not_found
    with fake.lock:
        kind = fake.kinds.get((group, rest[0]))
    if kind is None or version not in kind.versions:
        raise page_not_found
    if namespace and not kind.namespaced:
        raise page_not_found
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else None
    if subresource not in (None, "status", "token") or (subresource == "status" and not kind.status_subresource) \
            or (subresource == "token" and kind.plural != "serviceaccounts"):
        raise page_not_found
    return _Route(kind, version, namespace, name, subresource)


def _verb(method: str, route: _Route, watching: bool) -> str:
    if method == "GET":
        return "watch" if watching else ("get" if route.name else "list")
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]


def _parse_body(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    if content_type == "application/apply-patch+yaml":
        return yaml.safe_load(raw)
    return json.loads(raw)
