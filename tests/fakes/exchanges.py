"""The requests that pin the fake API server to the real one.

`run(send, namespace)` sends them in order to any server and returns what
each answer means (`summary`): the status code, a Status's reason, message
and causes, an object's name, labels, annotations, replicas and who owns
the replicas in managedFields, a list's names and paging, a watch's events.
The local kube-apiserver's answers are kept in
tests/fixtures/api/exchanges.json; the unit tier holds the fake to them and
the cluster tier holds the real server to them (so a new Kubernetes version
that answers differently is noticed). Re-record with

    .venv/bin/python -m tests.fakes.exchanges --kubeconfig "$KUBECONFIG"
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "api" / "exchanges.json"
JSON, MERGE, PATCH, APPLY = ("application/json", "application/merge-patch+json", "application/json-patch+json",
                             "application/apply-patch+yaml")

#: (method, path, query, body, content type) -> (status, parsed body: dict, or text)
Send = Callable[[str, str, dict, Any, str], tuple[int, Any]]


def _deployment(name: str, replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app": name}, "annotations": {"a": "b"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "x"}]}}}}


def steps(ns: str) -> list[tuple[str, str, str, dict, Any, str, bool]]:
    """(label, method, path, query, body, content type, compare the message)."""
    deployments = f"/apis/apps/v1/namespaces/{ns}/deployments"
    d = f"{deployments}/d"
    scaler = {"fieldManager": "scaler"}
    return [
        ("create-namespace", "POST", "/api/v1/namespaces", {}, {"metadata": {"name": ns}}, JSON, True),
        ("create", "POST", deployments, {"fieldManager": "helm"}, _deployment("d", 2), JSON, True),
        ("create-taken-name", "POST", deployments, {}, _deployment("d", 2), JSON, True),
        ("create-in-missing-namespace", "POST", f"/apis/apps/v1/namespaces/{ns}-none/deployments", {},
         _deployment("d", 1), JSON, True),
        ("get-missing", "GET", f"{deployments}/nope", {}, None, JSON, True),
        ("get-unserved-group", "GET", f"/apis/nope.example.com/v1/namespaces/{ns}/things", {}, None, JSON, True),
        ("json-patch-test-fails", "PATCH", d, scaler, [{"op": "test", "path": "/spec/replicas", "value": 5}],
         PATCH, True),
        ("json-patch-test-null-on-missing-key", "PATCH", d, scaler,
         [{"op": "test", "path": "/metadata/annotations/scaler.io~1none", "value": None}], PATCH, True),
        ("json-patch-test-null-on-missing-parent", "PATCH", d, scaler,
         [{"op": "test", "path": "/spec/nothere/x", "value": None}], PATCH, True),
        ("json-patch-test-value-on-missing-key", "PATCH", d, scaler,
         [{"op": "test", "path": "/metadata/annotations/scaler.io~1none", "value": "1"}], PATCH, True),
        ("json-patch-remove-missing", "PATCH", d, scaler,
         [{"op": "remove", "path": "/metadata/annotations/scaler.io~1none"}], PATCH, True),
        ("json-patch-replace-missing", "PATCH", d, scaler,
         [{"op": "replace", "path": "/metadata/annotations/scaler.io~1none", "value": "1"}], PATCH, True),
        ("json-patch-guarded-pause", "PATCH", d, scaler,
         [{"op": "test", "path": "/spec/replicas", "value": 2},
          {"op": "test", "path": "/metadata/annotations/scaler.io~1last-replicas", "value": None},
          {"op": "add", "path": "/metadata/annotations/scaler.io~1last-replicas", "value": "2"},
          {"op": "add", "path": "/spec/replicas", "value": 0}], PATCH, True),
        ("merge-patch-stale-version", "PATCH", d, {}, {"metadata": {"resourceVersion": "1"},
                                                      "spec": {"replicas": 3}}, MERGE, True),
        ("merge-patch-negative-replicas", "PATCH", d, {}, {"spec": {"replicas": -1}}, MERGE, True),
        ("merge-patch-annotation-not-a-string", "PATCH", d, {}, {"metadata": {"annotations": {"n": 1}}}, MERGE,
         False),
        ("merge-patch-replicas-over-int32", "PATCH", d, {}, {"spec": {"replicas": 2**40}}, MERGE, False),
        ("json-patch-replicas-not-a-number", "PATCH", d, {}, [{"op": "replace", "path": "/spec/replicas",
                                                                "value": "3"}], PATCH, False),
        ("apply-by-gitops", "PATCH", d, {"fieldManager": "argocd-controller", "force": "true"},
         {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 3}},
         APPLY, True),
        ("apply-conflict", "PATCH", d, {"fieldManager": "flux"},
         {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 4}},
         APPLY, True),
        ("update-by-person", "PATCH", d, {"fieldManager": "kubectl-scale"}, {"spec": {"replicas": 5}}, MERGE,
         True),
        *_string_tests(d),
        ("create-second", "POST", deployments, {}, _deployment("e", 1), JSON, True),
        ("list-first-page", "GET", deployments, {"limit": "1"}, None, JSON, True),
        ("list-by-label", "GET", deployments, {"labelSelector": "app=e"}, None, JSON, True),
        ("list-by-set-label", "GET", deployments, {"labelSelector": "app in (d,x),app!=e"}, None, JSON, True),
        ("create-event", "POST", f"/api/v1/namespaces/{ns}/events", {},
         {"metadata": {"generateName": "d.", "namespace": ns}, "involvedObject": {
             "apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "namespace": ns},
          "reason": "ScaledToZero", "message": "m", "type": "Normal", "source": {"component": "scaler"},
          "count": 1}, JSON, True),
        ("update-stale", "PUT", d, {}, {**_deployment("d", 1), "metadata": {"name": "d", "resourceVersion": "1"}},
         JSON, True),
        ("delete", "DELETE", d, {}, None, JSON, True),
        ("get-deleted", "GET", d, {}, None, JSON, True),
        *review_steps(ns),
    ]


TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


def _token_review(audiences: list[str]) -> Callable[[dict], dict]:
    """A TokenReview of the token the `token-request` step was given."""
    return lambda answers: {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {
        "token": answers["token-request"]["status"]["token"], "audiences": audiences}}


def _access_review(ns: str, *, verb: str = "patch", namespace: str | None = None) -> dict:
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {
        "user": f"system:serviceaccount:{ns}:waker",
        "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"],
        "resourceAttributes": {"namespace": namespace or ns, "verb": verb, "group": "apps",
                               "resource": "deployments", "subresource": "scale", "name": "d"}}}


def review_steps(ns: str) -> list:
    """Who a token is (TokenRequest, TokenReview) and what it may do (a Role,
    its binding, SubjectAccessReviews): what the push wake asks. A body may be
    a function of the answers so far; an eighth element, a predicate on the
    answer, sends the step again (for up to 5 s) until it holds: RBAC is read
    from a cache that sees a new binding a moment after it is created."""
    token = f"/api/v1/namespaces/{ns}/serviceaccounts/waker/token"
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}"
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
               "spec": {"audiences": ["scaler"], "expirationSeconds": 600}}
    scaler = {"fieldManager": "scaler"}
    return [
        ("create-serviceaccount", "POST", f"/api/v1/namespaces/{ns}/serviceaccounts", {},
         {"metadata": {"name": "waker"}}, JSON, True),
        ("token-request", "POST", token, {}, request, JSON, True),
        ("token-request-missing-account", "POST", token.replace("/waker/", "/nobody/"), {}, request, JSON, True),
        ("token-review", "POST", TOKEN_REVIEWS, scaler, _token_review(["scaler"]), JSON, True),
        ("token-review-other-audience", "POST", TOKEN_REVIEWS, scaler, _token_review(["other"]), JSON, True),
        ("token-review-invalid", "POST", TOKEN_REVIEWS, scaler, {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": "not-a-token", "audiences": ["scaler"]}}, JSON, True),
        ("token-review-empty", "POST", TOKEN_REVIEWS, scaler, {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": ""}}, JSON, True),
        ("token-review-list", "GET", TOKEN_REVIEWS, {}, None, JSON, True),
        ("access-review-before-binding", "POST", ACCESS_REVIEWS, scaler, _access_review(ns), JSON, True),
        ("create-role", "POST", f"{rbac}/roles", {}, {"metadata": {"name": "waker"}, "rules": [
            {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]}]}, JSON, True),
        ("create-rolebinding", "POST", f"{rbac}/rolebindings", {}, {
            "metadata": {"name": "waker"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "waker"},
            "subjects": [{"kind": "ServiceAccount", "name": "waker", "namespace": ns}]}, JSON, True),
        ("access-review-allowed", "POST", ACCESS_REVIEWS, scaler, _access_review(ns), JSON, True,
         lambda answer: (answer.get("status") or {}).get("allowed") is True),
        ("access-review-other-verb", "POST", ACCESS_REVIEWS, scaler, _access_review(ns, verb="delete"), JSON,
         True),
        ("access-review-other-namespace", "POST", ACCESS_REVIEWS, scaler,
         _access_review(ns, namespace=f"{ns}-other"), JSON, True),
    ]


#: Annotation values a JSON-patch `test` compares: the server compares JSON
#: encodings (its own escapes <, > and &; Python's escapes non-ASCII).
STRINGS = {"plain": "a b:c/d", "greater": "queue 3 > 0", "ampersand": "a&b", "accent": "café",
           "line-separator": "a\u2028b", "newline": "a\nb", "json": '{"id":"ab","m":"x"}'}


def _string_tests(d: str) -> list:
    steps = []
    for label, value in STRINGS.items():
        steps.append((f"set-string-{label}", "PATCH", d, {}, {"metadata": {"annotations": {"t": value}}}, MERGE,
                      True))
        steps.append((f"test-string-{label}", "PATCH", d, {},
                      [{"op": "test", "path": "/metadata/annotations/t", "value": value}], PATCH, True))
    return steps


def _review(status: int, body: dict) -> dict:
    """A TokenRequest's, TokenReview's or SubjectAccessReview's answer: what it says, not the token."""
    answer = body.get("status") or {}
    user = answer.get("user") or {}
    out = {"status": status, "kind": body["kind"], "apiVersion": body.get("apiVersion"),
           "metadata": sorted(body.get("metadata") or {})}
    if body["kind"] == "TokenRequest":
        return {**out, "token": bool(answer.get("token")), "expires": bool(answer.get("expirationTimestamp")),
                "audiences": (body.get("spec") or {}).get("audiences")}
    if body["kind"] == "TokenReview":
        return {**out, "authenticated": answer.get("authenticated"), "username": user.get("username"),
                "uid": bool(user.get("uid")), "groups": user.get("groups"), "extra": sorted(user.get("extra") or {}),
                "audiences": answer.get("audiences"), "error": answer.get("error")}
    return {**out, "allowed": answer.get("allowed"), "denied": answer.get("denied"), "reason": answer.get("reason")}


def summary(status: int, body: Any, *, message: bool = True) -> dict:
    """What an answer means, without what differs run to run (uids, versions, times)."""
    if not isinstance(body, dict):
        return {"status": status, "text": str(body).strip()}
    if body.get("kind") in ("TokenRequest", "TokenReview", "SubjectAccessReview"):
        return _review(status, body)
    if body.get("kind") == "Status":
        details = body.get("details") or {}
        out = {"status": status, "reason": body.get("reason"), "code": body.get("code"),
               "details": {k: details[k] for k in ("name", "group", "kind") if k in details},
               "causes": [c.get("field") for c in details.get("causes") or []]}
        if message:
            out["message"] = body.get("message")
        return out
    if body.get("kind", "").endswith("List"):
        meta = body.get("metadata") or {}
        return {"status": status, "kind": body["kind"], "names": [i["metadata"]["name"] for i in body["items"]],
                "continue": bool(meta.get("continue")), "remaining": meta.get("remainingItemCount")}
    meta = body.get("metadata") or {}
    owners = sorted(entry["manager"] for entry in meta.get("managedFields") or []
                    if "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {}))
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith("deployment.")}
    return {"status": status, "kind": body.get("kind"), "apiVersion": body.get("apiVersion"),
            "name": f"{meta['generateName']}*" if meta.get("generateName") else meta.get("name"),
            "labels": meta.get("labels"),
            "annotations": annotations or None, "replicas": (body.get("spec") or {}).get("replicas"),
            "replicaOwners": owners, "has": sorted(k for k in ("uid", "resourceVersion", "creationTimestamp")
                                                   if meta.get(k))}


def run(send: Send, namespace: str) -> dict[str, dict]:
    """Every step against one server, in a namespace of its own (created first)."""
    results, answers = {}, {}
    for label, method, path, query, given, content_type, message, *until in steps(namespace):
        body = given(answers) if callable(given) else given
        deadline = time.monotonic() + 5
        while True:
            status, answer = send(method, path, query, body, content_type)
            if not until or not isinstance(answer, dict) or until[0](answer) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        answers[label] = answer
        results[label] = summary(status, _unnamed(answer, namespace), message=message)
    return results


def _unnamed(answer: Any, namespace: str) -> Any:
    """The answer with the run's namespace name replaced, so runs compare."""
    return json.loads(json.dumps(answer).replace(namespace, "NS")) if namespace else answer


def sender(api_client) -> Send:
    """A Send over a kubernetes ApiClient (the real server's, or the fake's)."""
    def send(method: str, path: str, query: dict, body: Any, content_type: str) -> tuple[int, Any]:
        payload = body
        if content_type == APPLY:
            payload = json.dumps(body)  # YAML is a superset of JSON
        m, url, headers, data, _ = api_client.param_serialize(
            method=method, resource_path=path, query_params=list(query.items()),
            header_params={"Accept": "application/json", "Content-Type": content_type}, body=payload,
            auth_settings=["BearerToken"])
        response = api_client.call_api(m, url, header_params=headers, body=data, _request_timeout=10)
        raw = response.read()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode()
    return send


def record(kubeconfig: str) -> dict:
    from kubernetes import config

    api_client = config.new_client_from_config(config_file=kubeconfig)
    return run(sender(api_client), f"exchanges-{uuid.uuid4().hex[:6]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    args = parser.parse_args()
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(record(args.kubeconfig), indent=1, sort_keys=True) + "\n")
    print(f"recorded {FIXTURE}")


if __name__ == "__main__":
    main()
