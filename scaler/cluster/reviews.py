"""Asking the API server who a caller is and what it may do: a TokenReview
(authentication.k8s.io/v1) for a bearer token, a SubjectAccessReview
(authorization.k8s.io/v1) for one verb on one resource. Both are create-only
resources that answer in their `status` and store nothing. The push wake
(run/waking.py) authenticates and authorises its callers with them, so a
caller is whoever the cluster says it is and may do what RBAC (or whatever
authorizer the cluster runs) lets it, and nothing is decided here.
"""

from __future__ import annotations

from dataclasses import dataclass

from scaler.cluster.kube import Kube, Resource

TOKEN_REVIEWS = Resource("authentication.k8s.io", "v1", "tokenreviews", namespaced=False)
ACCESS_REVIEWS = Resource("authorization.k8s.io", "v1", "subjectaccessreviews", namespaced=False)


@dataclass(frozen=True)
class Identity:
    """Who the API server says a token belongs to (a TokenReview's `status.user`)."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    #: `extra`, as sorted pairs (hashable): a bound token's pod name and node, for example.
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


class NotAuthenticated(Exception):
    """The API server did not accept the token; the text says why, as it said."""


@dataclass(frozen=True)
class Access:
    """One request's attributes, as RBAC names them: `patch` on
    `deployments/scale` in group `apps`, namespace `llm`, name `chat` (no
    name: every object of the resource in the namespace)."""

    verb: str
    group: str
    resource: str
    namespace: str
    subresource: str = ""
    name: str = ""

    def __str__(self) -> str:
        """'patch deployments.apps/scale chat in namespace llm', as `kubectl auth can-i` spells it."""
        what = f"{self.resource}.{self.group}" if self.group else self.resource
        what += f"/{self.subresource}" if self.subresource else ""
        named = f" {self.name}" if self.name else " (any name)"
        return f"{self.verb} {what}{named} in namespace {self.namespace}"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    #: The authorizer's reason, when it gave one ('RBAC: allowed by RoleBinding ...').
    reason: str = ""


def review_token(kube: Kube, token: str, *, audiences: tuple[str, ...] = ()) -> Identity:
    """Who `token` is, for one of `audiences` (empty: the API server's own);
    NotAuthenticated if the API server does not say it is anyone."""
    spec: dict = {"token": token}
    if audiences:
        spec["audiences"] = list(audiences)
    answer = kube.create(TOKEN_REVIEWS, None, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                               "spec": spec})
    status = answer.get("status") or {}
    user = status.get("user") or {}
    if status.get("authenticated") is not True or not user.get("username"):
        raise NotAuthenticated(str(status.get("error") or "the API server did not authenticate the token"))
    # The TokenReview API: with spec.audiences set, check status.audiences names one of them. None
    # named means the token is good for the API server's own audience (an authenticator that is not
    # audience-aware, behind a webhook or a proxy), not for ours.
    if audiences and not set(map(str, status.get("audiences") or ())) & set(audiences):
        raise NotAuthenticated(f"the token is not for audience {' or '.join(audiences)} (the API server named "
                               f"{', '.join(map(str, status.get('audiences') or ())) or 'none'})")
    extra = user.get("extra") or {}
    return Identity(str(user["username"]), str(user.get("uid") or ""), tuple(map(str, user.get("groups") or ())),
                    tuple(sorted((str(k), tuple(map(str, v or ()))) for k, v in extra.items())))


def review_access(kube: Kube, identity: Identity, access: Access) -> Verdict:
    """Whether `identity` may make the request `access` describes."""
    attributes = {"verb": access.verb, "group": access.group, "resource": access.resource,
                  "namespace": access.namespace}
    if access.subresource:
        attributes["subresource"] = access.subresource
    if access.name:
        attributes["name"] = access.name
    spec: dict = {"user": identity.username, "groups": list(identity.groups), "resourceAttributes": attributes}
    if identity.uid:
        spec["uid"] = identity.uid
    if identity.extra:
        spec["extra"] = {key: list(values) for key, values in identity.extra}
    answer = kube.create(ACCESS_REVIEWS, None, {"apiVersion": "authorization.k8s.io/v1",
                                                "kind": "SubjectAccessReview", "spec": spec})
    status = answer.get("status") or {}
    reason = str(status.get("reason") or status.get("evaluationError") or "")
    return Verdict(status.get("allowed") is True and status.get("denied") is not True, reason)
