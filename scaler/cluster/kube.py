"""A thin Kubernetes API client: raw JSON in and out, errors typed by status code.

The generated models of the kubernetes package are slow to build and hide
fields of custom resources, so the adapters speak JSON through the package's
ApiClient's configuration and connection pool (kubeconfig, in-cluster auth, TLS,
pooling), not through its generated layers.
Errors are mapped by HTTP status, never by message text.
"""

from __future__ import annotations

import builtins
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from scaler.cluster.kubeconfig import KubeconfigError, check_kubeconfig, kubeconfig_paths

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
#: Every write says who made it: `kubectl get -o yaml --show-managed-fields`
#: and audit logs tell scaler's writes from a person's or a GitOps controller's.
FIELD_MANAGER = "scaler"


class KubeError(Exception):
    """An API request failed; `str()` names the verb and the resource."""

    def __init__(self, *, verb: str, resource: str, status: int | None, detail: str = "") -> None:
        self.verb = verb
        self.resource = resource
        self.status = status
        self.detail = detail
        super().__init__(self._message())

    def _message(self) -> str:
        text = f"{self.verb} {self.resource}: HTTP {self.status}"
        return f"{text}: {self.detail}" if self.detail else text


class NotFound(KubeError):
    def _message(self) -> str:
        return f"{self.resource} not found"


class Conflict(KubeError):
    def _message(self) -> str:
        return f"{self.resource} changed while we wrote it (409 Conflict on {self.verb})"


class Denied(KubeError):
    """401 or 403: the API server would not let us."""


class Forbidden(Denied):
    def _message(self) -> str:
        return f"forbidden: cannot {self.verb} {self.resource}"


class Unauthorized(Denied):
    def _message(self) -> str:
        return f"unauthorized: the API server refused our credentials (on {self.verb} {self.resource})"


class Expired(KubeError):
    """410: a watch's resourceVersion was compacted away: list again."""

    def _message(self) -> str:
        return f"{self.verb} {self.resource}: resourceVersion expired (410 Gone)"


class ServerError(KubeError):
    """5xx: the API server (or what is in front of it) failed."""


class Unreachable(KubeError):
    """`detail` starts with the server's URL."""

    def _message(self) -> str:
        return f"cannot reach the API server at {self.detail} (on {self.verb} {self.resource})"


class Fenced(Exception):
    """A write stopped before it went out: this process no longer holds the
    Lease, or what the write was for no longer holds. The text says which."""


#: Called right before a write goes out; raises Fenced to stop it.
Fence = Callable[[], None]


def no_hidden_retries(configuration: k8s.Configuration) -> k8s.Configuration:
    """urllib3, left to itself, sends a request again after a 429 or 503 with
    Retry-After (three times, sleeping as asked) and after an error reading
    the answer: a write would go out again without asking its fence, long
    after it was decided. Only a connection that failed before the request
    was sent is tried again here; every other retry is Kube.request's own,
    fenced, attempt."""
    configuration.retries = urllib3.Retry(total=2, connect=2, read=0, status=0, other=0, redirect=0,
                                          respect_retry_after_header=False, raise_on_status=False)
    return configuration


def _why(error: BaseException) -> str:
    """The innermost cause of a connection failure, without urllib3's wrapping."""
    reason = getattr(error, "reason", None)
    while isinstance(reason, BaseException) and (inner := getattr(reason, "reason", None)) is not None:
        reason = inner
    text = str(reason if isinstance(reason, BaseException) else error)
    return text.split(": ", 1)[-1] if "Failed to establish" in text else text


class Invalid(KubeError):
    """422: the API server refused the body (a failed JSON-patch `test`
    guard, or a value it does not accept)."""

    def _message(self) -> str:
        return f"{self.verb} {self.resource} refused as invalid (422): {self.detail}"


class Throttled(KubeError):
    """429 after every retry the API server's Retry-After asked for."""

    def _message(self) -> str:
        return f"{self.verb} {self.resource}: still throttled (429) after retrying as asked"


_BY_STATUS: dict[int, type[KubeError]] = {401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
                                          410: Expired, 422: Invalid, 429: Throttled}


def error_for(status: int | None) -> type[KubeError]:
    """The KubeError type of an HTTP status: by code, never by message."""
    if status is not None and status >= 500:
        return ServerError
    return _BY_STATUS.get(status or 0, KubeError)


class RateLimit:
    """Client-side QPS with a burst (a token bucket), as client-go's: a
    thousand writes at a window edge must not arrive as one wall of requests.
    `qps` 0 means no limit."""

    def __init__(self, *, qps: float, burst: int) -> None:
        self.qps = qps
        self.burst = max(burst, 1)
        self._tokens = float(self.burst)
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if self.qps <= 0:
            return
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
            self._last = now
            self._tokens -= 1
            delay = -self._tokens / self.qps if self._tokens < 0 else 0.0
        if delay > 0:
            time.sleep(delay)


@dataclass(frozen=True)
class Resource:
    """An API resource: group ("" for core), version, plural, namespaced."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """kubectl's name for RBAC messages: deployments.apps, pods."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base


def describe(resource: Resource, namespace: str | None, name: str | None = None) -> str:
    where = f" in namespace {namespace}" if namespace else ""
    return f"{resource.qualified}{'/' + name if name else ''}{where}"


class Kube:
    """Raw JSON requests against one API server, counted (benchmarks and the
    daemon's metrics read `requests`)."""

    #: 429s retried per request, each after the Retry-After the server sent (capped).
    THROTTLE_RETRIES = 5
    MAX_RETRY_AFTER_SECONDS = 10.0

    def __init__(self, api_client: k8s.ApiClient, *, default_namespace: str = "default",
                 rate_limit: RateLimit | None = None) -> None:
        self.api_client = api_client
        self.server = api_client.configuration.host
        self.default_namespace = default_namespace
        self.rate_limit = rate_limit or RateLimit(qps=0, burst=1)
        self._lock = threading.Lock()
        self.requests: dict[str, int] = {}
        #: The API server's own pool when the client talks to it directly (no
        #: proxy, no path before the API's, as a Rancher-style proxy URL has),
        #: looked up once and not parsed out of a URL with every request.
        manager = api_client.rest_client.pool_manager
        parts = urlsplit(self.server)
        direct = type(manager) is urllib3.PoolManager and parts.hostname and not parts.path.strip("/")
        self._pool: urllib3.HTTPConnectionPool | None = manager.connection_from_url(self.server) if direct else None

    @classmethod
    def from_environment(cls, *, kubeconfig: str | None = None, context: str | None = None,
                         pool_size: int = 32, qps: float = 0, burst: int = 1) -> Kube:
        """In-cluster credentials when running in a pod and no kubeconfig is
        named, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
        configuration = k8s.Configuration()
        namespace = "default"
        try:
            if kubeconfig is None and context is None:
                k8s_config.load_incluster_config(client_configuration=configuration)
                with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as handle:
                    namespace = handle.read().strip() or namespace
            else:
                raise k8s_config.ConfigException("kubeconfig requested")
        except (k8s_config.ConfigException, OSError):
            check_kubeconfig(kubeconfig, context)
            try:
                k8s_config.load_kube_config(config_file=kubeconfig, context=context,
                                            client_configuration=configuration)
            except Exception as error:  # noqa: BLE001 - the library raises several types for one kind of problem
                raise KubeconfigError(f"kubeconfig {os.pathsep.join(kubeconfig_paths(kubeconfig))}: "
                                      f"{error}") from None
            try:
                _, active = k8s_config.list_kube_config_contexts(config_file=kubeconfig)
                if context:
                    contexts, _ = k8s_config.list_kube_config_contexts(config_file=kubeconfig)
                    active = next(c for c in contexts if c["name"] == context)
                namespace = active.get("context", {}).get("namespace") or namespace
            except (k8s_config.ConfigException, StopIteration):
                pass
        configuration.connection_pool_maxsize = pool_size
        return cls(k8s.ApiClient(no_hidden_retries(configuration)), default_namespace=namespace,
                   rate_limit=RateLimit(qps=qps, burst=burst))

    def request(self, verb: str, method: str, path: str, *, resource_text: str,
                query: dict[str, Any] | None = None, body: Any = None,
                content_type: str = "application/json", timeout_seconds: float = 30,
                fence: Fence | None = None) -> dict:
        """One request; a 429 is retried after the server's Retry-After
        (bounded), every other failure raises a typed KubeError. `fence` is
        called right before each attempt goes out (after any wait for the
        rate limit or a Retry-After) and raises to stop it."""
        for attempt in range(self.THROTTLE_RETRIES + 1):
            self.rate_limit.wait()
            if fence is not None:
                fence()
            self.count(verb)
            status, data, retry_after = self._send(method, path, verb=verb, resource_text=resource_text,
                                                   query=query, body=body, content_type=content_type,
                                                   timeout_seconds=timeout_seconds)
            if status != 429 or attempt == self.THROTTLE_RETRIES:
                break
            time.sleep(min(retry_after, self.MAX_RETRY_AFTER_SECONDS))
        if not 200 <= status < 300:
            raise error_for(status)(verb=verb, resource=resource_text, status=status, detail=_status_detail(data))
        return orjson.loads(data) if data else {}

    def _send(self, method: str, path: str, *, verb: str, resource_text: str, query, body, content_type: str,
              timeout_seconds: float) -> tuple[int, bytes, float]:
        """One request on the client's own connection pool (its TLS, client
        certificates, proxy and retries), without the generated client's
        layers: the body is plain JSON already, and the headers are the
        client's own (user agent, a bearer token refreshed as it would)."""
        api = self.api_client
        headers = {**api.default_headers, "Accept": "application/json", "Content-Type": content_type}
        if api.cookie:
            headers["Cookie"] = api.cookie
        for setting in api.configuration.auth_settings().values():
            if setting["in"] == "header" and setting["value"]:
                headers[setting["key"]] = setting["value"]
        pairs = [(k, v) for k, v in (query or {}).items() if v is not None]
        target = path + ("?" + urlencode(pairs) if pairs else "")
        data = None if body is None else orjson.dumps(body)
        timeout = urllib3.Timeout(total=timeout_seconds)
        try:
            if self._pool is not None:
                response = self._pool.urlopen(method, target, body=data, headers=headers, timeout=timeout,
                                        preload_content=True, redirect=False, assert_same_host=False)
            else:
                response = api.rest_client.pool_manager.request(method, self.server + target, body=data,
                                                                headers=headers, timeout=timeout, preload_content=True)
        except (OSError, urllib3.exceptions.HTTPError) as error:  # TLS failures too
            raise Unreachable(verb=verb, resource=resource_text, status=None,
                              detail=f"{self.server}: {_why(error)}") from None
        retry_after = 1.0
        if response.status == 429:
            try:
                retry_after = max(float(response.headers.get("Retry-After") or 1), 0.0)
            except ValueError:
                pass
        return response.status, response.data, retry_after

    def count(self, verb: str) -> None:
        with self._lock:
            self.requests[verb] = self.requests.get(verb, 0) + 1

    def request_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.requests)

    # Verbs, named as RBAC names them.

    def get(self, resource: Resource, namespace: str | None, name: str) -> dict:
        return self.request("get", "GET", resource.path(namespace, name),
                            resource_text=describe(resource, namespace, name))

    def list(self, resource: Resource, namespace: str | None = None, *, label_selector: str | None = None,
             field_selector: str | None = None, limit: int = 500) -> tuple[list[dict], str]:
        """All objects (following continue tokens) and the list's resourceVersion."""
        items: list[dict] = []
        token = None
        while True:
            page = self.request("list", "GET", resource.path(namespace),
                                resource_text=describe(resource, namespace),
                                query={"labelSelector": label_selector, "fieldSelector": field_selector,
                                       "limit": limit, "continue": token})
            items.extend(page.get("items", []))
            token = page.get("metadata", {}).get("continue")
            if not token:
                return items, page.get("metadata", {}).get("resourceVersion", "")

    # builtins.list: in this class's body `list` is the method above.
    def patch(self, resource: Resource, namespace: str | None, name: str, patch: dict | builtins.list, *,
              fence: Fence | None = None) -> dict:
        """A merge patch (a dict) or a JSON patch (a list of operations)."""
        return self.request("patch", "PATCH", resource.path(namespace, name),
                            resource_text=describe(resource, namespace, name), query={"fieldManager": FIELD_MANAGER},
                            body=patch, content_type=JSON_PATCH if isinstance(patch, list) else MERGE_PATCH,
                            fence=fence)

    def create(self, resource: Resource, namespace: str | None, body: dict, *, fence: Fence | None = None) -> dict:
        return self.request("create", "POST", resource.path(namespace), query={"fieldManager": FIELD_MANAGER},
                            resource_text=describe(resource, namespace), body=body, fence=fence)


def _status_detail(data: bytes | None) -> str:
    """A Status body's reason (NotFound, Invalid, ...) and, for people, its message."""
    try:
        status = json.loads(data or b"{}")
    except ValueError:
        return ""
    if not isinstance(status, dict):
        return ""
    reason, message = status.get("reason") or "", str(status.get("message") or "")[:300]
    return f"{reason}: {message}" if reason and message else reason or message
