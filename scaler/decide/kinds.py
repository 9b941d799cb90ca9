"""The one grammar for naming a workload kind, in policy files and on the
command line alike, and the canonical identity every spelling resolves to.

Accepted, as kubectl accepts them: a built-in kind by name or short name in
any case (`Deployment`, `deploy`, `deployments`, `sts`, `isvc`), by
resource and group (`deployments.apps`, `deployments.apps/v1`, and the
`deployment.apps` that `kubectl get -o name` prints), or a custom
resource with a /scale subresource as `<plural>.<group>/<version>`. Two
spellings of one kind are one kind: `Deployment` and `deployments.apps/v1`
have the same `key`, so two policies naming them overlap (and conflict)
instead of acting on one object twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class UnknownKind(ValueError):
    pass


@dataclass(frozen=True)
class KindName:
    #: How scaler prints it: `Deployment`, or `vllmservers.serving.example.com/v1` for a custom resource.
    name: str
    group: str
    version: str
    plural: str
    builtin: bool

    @property
    def key(self) -> str:
        """The identity: the built-in name, or `<plural>.<group>` (any version)."""
        return self.name if self.builtin else f"{self.plural}.{self.group}"


_BUILTINS = (
    KindName("Deployment", "apps", "v1", "deployments", builtin=True),
    KindName("StatefulSet", "apps", "v1", "statefulsets", builtin=True),
    KindName("InferenceService", "serving.kserve.io", "v1beta1", "inferenceservices", builtin=True),
    KindName("Job", "batch", "v1", "jobs", builtin=True),
    KindName("JobSet", "jobset.x-k8s.io", "v1alpha2", "jobsets", builtin=True),
    KindName("RayCluster", "ray.io", "v1", "rayclusters", builtin=True),
    KindName("RayJob", "ray.io", "v1", "rayjobs", builtin=True),
    KindName("Notebook", "kubeflow.org", "v1", "notebooks", builtin=True),
)
_SHORT_NAMES = {"deploy": "Deployment", "sts": "StatefulSet", "isvc": "InferenceService"}
_BY_SPELLING: dict[str, KindName] = {}
for _kind in _BUILTINS:
    for _spelling in (_kind.name, _kind.name + "s", _kind.plural):
        _BY_SPELLING[_spelling.lower()] = _kind
for _short, _name in _SHORT_NAMES.items():
    _BY_SPELLING[_short] = next(k for k in _BUILTINS if k.name == _name)

BUILTIN_KINDS: tuple[str, ...] = tuple(kind.name for kind in _BUILTINS)
DEFAULT_KINDS: tuple[str, ...] = ("Deployment", "StatefulSet")

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_RESOURCE = re.compile(rf"^(?P<plural>{_DNS_LABEL})\.(?P<group>{_DNS_LABEL}(\.{_DNS_LABEL})*)"
                       r"(/(?P<version>v[0-9]+((alpha|beta)[0-9]+)?))?$")

EXPECTED = (f"expected one of {', '.join(BUILTIN_KINDS)} (or kubectl's names for them: "
            f"{', '.join(sorted(_SHORT_NAMES))}, deployments.apps/v1 …), or a custom resource with a /scale "
            "subresource written <plural>.<group>/<version> (e.g. vllmservers.serving.example.com/v1alpha1)")


def builtin_kind(name: str) -> KindName:
    """A built-in kind's names, by its kind name (the registry's key)."""
    return next(kind for kind in _BUILTINS if kind.name == name)


def parse_kind(text: str) -> KindName:
    """The kind `text` names; UnknownKind says what is accepted."""
    if not isinstance(text, str):
        raise UnknownKind(f"a kind is a string, not {type(text).__name__}: {EXPECTED}")
    builtin = _BY_SPELLING.get(text.lower())
    if builtin is not None:
        return builtin
    match = _RESOURCE.match(text)
    if match is None:
        raise UnknownKind(f"unknown kind {text!r}: {EXPECTED}")
    plural, group, version = match["plural"], match["group"], match["version"]
    for kind in _BUILTINS:
        # The plural, or the singular kubectl prints in `-o name` (deployment.apps/llm).
        if group == kind.group and plural in (kind.plural, kind.name.lower()):
            if version not in (None, kind.version):
                raise UnknownKind(f"{text!r}: {kind.name} is served as {kind.group}/{kind.version}")
            return kind
    if version is None:
        raise UnknownKind(f"{text!r} needs its version: <plural>.<group>/<version>, "
                          f"e.g. {plural}.{group}/v1")
    return KindName(f"{plural}.{group}/{version}", group, version, plural, builtin=False)
