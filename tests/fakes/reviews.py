"""The fake API server's TokenRequest, TokenReview and SubjectAccessReview,
answered as the local kube-apiserver answers them (tests/fixtures/api:
`token-*` and `access-review-*`).

A TokenReview is answered from `FakeKube.tokens` (token -> who it is and for
which audiences): a test adds entries with `fake.token(...)`, and a
TokenRequest (`serviceaccounts/NAME/token`) adds the token it mints, as the
ServiceAccount it was minted for. A SubjectAccessReview is allowed by an
entry of `FakeKube.permissions` (`fake.allow(...)`), or by RBAC: the Roles,
ClusterRoles and their bindings stored in the fake, evaluated as the RBAC
authorizer does (verbs, apiGroups, resources with their subresource,
resourceNames, `*`), with its reason text. Both are create-only: nothing is
stored, and a GET is refused with 405.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakes.kubeapi import FakeKube

#: The API server's own audience (its --api-audiences on the local cluster).
API_AUDIENCE = "https://kubernetes.default.svc"
VIRTUAL = {("authentication.k8s.io", "tokenreviews"), ("authorization.k8s.io", "subjectaccessreviews")}


@dataclass(frozen=True)
class Holder:
    """Who a token is."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    audiences: tuple[str, ...] = (API_AUDIENCE,)
    extra: dict = field(default_factory=dict, hash=False)


def _meta(manager: str, api_version: str, fields: dict) -> dict:
    return {"managedFields": [{"manager": manager, "operation": "Update", "apiVersion": api_version,
                               "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "fieldsType": "FieldsV1",
                               "fieldsV1": fields}]}


def token_request(fake: FakeKube, namespace: str, name: str, body: Any, manager: str) -> dict:
    """Mint a token for ServiceAccount `name` (404 if there is none)."""
    account = fake.get("serviceaccounts", namespace, name)
    spec = (body or {}).get("spec") or {}
    audiences = tuple(spec.get("audiences") or (API_AUDIENCE,))
    seconds = int(spec.get("expirationSeconds") or 3600)
    token = "fake-" + secrets.token_urlsafe(24)
    fake.tokens[token] = Holder(f"system:serviceaccount:{namespace}:{name}", account["metadata"]["uid"],
                                ("system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                                 "system:authenticated"), audiences,
                                {"authentication.kubernetes.io/credential-id": [f"JTI={uuid.uuid4()}"]})
    expires = (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "uid": account["metadata"]["uid"],
                         "creationTimestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                         **_meta(manager, "authentication.k8s.io/v1", {"f:spec": {}})},
            "spec": {"audiences": list(audiences), "expirationSeconds": seconds, "boundObjectRef": None},
            "status": {"token": token, "expirationTimestamp": expires}}


def token_review(fake: FakeKube, body: Any, manager: str) -> dict:
    from tests.fakes.kubeapi import ApiError

    spec = dict((body or {}).get("spec") or {})
    token = spec.get("token") or ""
    if not token:
        raise ApiError(400, "BadRequest", "token is required for TokenReview in authentication")
    wanted = list(spec.get("audiences") or [API_AUDIENCE])
    holder = fake.tokens.get(token)
    status: dict = {"user": {}}
    if holder is None:
        status["error"] = "invalid bearer token"
    elif not set(holder.audiences) & set(wanted):
        quoted = ",".join(f'"{a}"' for a in holder.audiences)
        status["error"] = (f"[invalid bearer token, token audiences [{quoted}] is invalid for the target "
                           f"audiences [{','.join(f'{chr(34)}{a}{chr(34)}' for a in wanted)}]]")
    else:
        user: dict = {"username": holder.username, "groups": list(holder.groups)}
        if holder.uid:
            user["uid"] = holder.uid
        if holder.extra:
            user["extra"] = holder.extra
        status = {"authenticated": True, "user": user, "audiences": [a for a in wanted if a in holder.audiences]}
    fields = {"f:spec": {f"f:{key}": {} for key in spec}}
    return {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
            "metadata": _meta(manager, "authentication.k8s.io/v1", fields), "spec": spec, "status": status}


def access_review(fake: FakeKube, body: Any, manager: str) -> dict:
    spec = dict((body or {}).get("spec") or {})
    attributes = spec.get("resourceAttributes") or {}
    user, groups = spec.get("user") or "", tuple(spec.get("groups") or ())
    status: dict = {"allowed": False}
    reason = _table(fake, user, groups, attributes) or _rbac(fake, user, groups, attributes)
    if reason:
        status = {"allowed": True, "reason": reason}
    fields = {"f:spec": {f"f:{key}": {} for key in spec}}
    return {"kind": "SubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
            "metadata": _meta(manager, "authorization.k8s.io/v1", fields), "spec": spec, "status": status}


def resource_of(attributes: dict) -> str:
    """'deployments.apps/scale': the resource as `fake.allow` names it."""
    resource, group = attributes.get("resource", ""), attributes.get("group", "")
    qualified = f"{resource}.{group}" if group else resource
    return f"{qualified}/{attributes['subresource']}" if attributes.get("subresource") else qualified


def _table(fake: FakeKube, user: str, groups: tuple[str, ...], attributes: dict) -> str:
    wanted = resource_of(attributes)
    for subject, verb, resource, namespace, name in fake.permissions:
        if (subject == user or subject in groups) and verb == attributes.get("verb") and resource == wanted \
                and namespace in ("", attributes.get("namespace", "")) and name in ("", attributes.get("name", "")):
            return f"allowed by the fake's table to {subject}"
    return ""


def _rule_allows(rule: dict, attributes: dict) -> bool:
    resource = attributes.get("resource", "")
    if attributes.get("subresource"):
        resource += "/" + attributes["subresource"]
    names = rule.get("resourceNames") or []
    return (any(g in ("*", attributes.get("group", "")) for g in rule.get("apiGroups") or [])
            and any(r in ("*", resource) for r in rule.get("resources") or [])
            and any(v in ("*", attributes.get("verb")) for v in rule.get("verbs") or [])
            and (not names or attributes.get("name", "") in names))


def _subject(subject: dict, user: str, groups: tuple[str, ...]) -> str | None:
    """How RBAC names the subject in its reason, if it is this user."""
    kind, name = subject.get("kind"), subject.get("name", "")
    if kind == "ServiceAccount" and user == f"system:serviceaccount:{subject.get('namespace', '')}:{name}":
        return f'ServiceAccount "{name}/{subject.get("namespace", "")}"'
    if kind == "User" and user == name:
        return f'User "{name}"'
    if kind == "Group" and name in groups:
        return f'Group "{name}"'
    return None


def _rbac(fake: FakeKube, user: str, groups: tuple[str, ...], attributes: dict) -> str:
    namespace = attributes.get("namespace", "")
    bindings = [("ClusterRoleBinding", b) for b in fake.items("clusterrolebindings.rbac.authorization.k8s.io")]
    if namespace:
        bindings += [("RoleBinding", b) for b in fake.items("rolebindings.rbac.authorization.k8s.io", namespace)]
    for binding_kind, binding in bindings:
        ref, meta = binding.get("roleRef") or {}, binding["metadata"]
        who = next((w for s in binding.get("subjects") or [] if (w := _subject(s, user, groups))), None)
        if who is None:
            continue
        try:
            role = fake.get("roles.rbac.authorization.k8s.io" if ref.get("kind") == "Role"
                            else "clusterroles.rbac.authorization.k8s.io", meta.get("namespace", ""), ref["name"])
        except Exception:  # noqa: BLE001 - a binding to a missing role grants nothing, as in RBAC
            continue
        if any(_rule_allows(rule, attributes) for rule in role.get("rules") or []):
            where = f"{meta['name']}/{meta['namespace']}" if binding_kind == "RoleBinding" else meta["name"]
            return f'RBAC: allowed by {binding_kind} "{where}" of {ref.get("kind")} "{ref["name"]}" to {who}'
    return ""
