"""Where a custom resource keeps its size: read from its CRD, once per kind.

A custom resource is scaled through what its /scale subresource declares:
`subresources.scale.specReplicasPath` (e.g. `.spec.size`) in the
apiextensions.k8s.io/v1 CustomResourceDefinition, and `statusReplicasPath`
for the replicas running. scaler writes that path in the same guarded merge
patch as its pause record (one patch keeps the count and the zero together;
patching /scale separately would not), and never guesses `spec.replicas`.

A CRD without a scale subresource is an error naming the kind: the object
has no declared size to set. A CRD that is not installed is not an error:
there is nothing of that kind to manage (its LIST answers 404 and is skipped).
"""

from __future__ import annotations

import threading

from scaler.cluster.kinds import ScaledKind, WorkloadKind, resolve_kind
from scaler.cluster.kinds.scaled import custom_kind
from scaler.cluster.kube import Kube, NotFound, Resource
from scaler.decide.kinds import KindName, parse_kind

CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", namespaced=False)


class KindError(Exception):
    """A kind scaler cannot scale; the message names it and says why."""


def _path(text: object, *, kind: str, field: str) -> tuple[str, ...]:
    """'.spec.size' -> ('spec', 'size')."""
    if not isinstance(text, str) or not text.startswith(".") or len(text) < 2 or "[" in text:
        raise KindError(f"{kind}: its CRD declares {field} {text!r}, which scaler cannot read "
                        "(expected a path such as .spec.replicas)")
    return tuple(text[1:].split("."))


def scaled_kind_from_crd(crd: dict, name: KindName) -> ScaledKind:
    """The kind as its CRD's /scale subresource for `name.version` describes it."""
    versions = (crd.get("spec") or {}).get("versions") or []
    version = next((v for v in versions if v.get("name") == name.version), None)
    if version is None:
        served = ", ".join(str(v.get("name")) for v in versions) or "none"
        raise KindError(f"{name.name}: the CRD {name.plural}.{name.group} has no version {name.version} "
                        f"(served: {served})")
    scale = (version.get("subresources") or {}).get("scale")
    if not isinstance(scale, dict):
        raise KindError(f"{name.name}: the CRD {name.plural}.{name.group} has no scale subresource in "
                        f"{name.version}, so scaler does not know which field is its size (add "
                        "subresources.scale with specReplicasPath, or do not target this kind)")
    spec_path = _path(scale.get("specReplicasPath"), kind=name.name, field="specReplicasPath")
    status_text = scale.get("statusReplicasPath")
    status_path = _path(status_text, kind=name.name, field="statusReplicasPath") if status_text else \
        ("status", "replicas")
    return custom_kind(name, size_field=spec_path, ready_path=status_path)


class KindResolver:
    """Every spelling of a kind to the kind scaler scales: built-ins from the
    registry, custom resources from their CRD, read once and remembered
    (failures are not remembered: a CRD fixed later is picked up)."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._known: dict[str, WorkloadKind] = {}
        self._lock = threading.Lock()

    def __call__(self, text: str | KindName) -> WorkloadKind:
        name = parse_kind(text) if isinstance(text, str) else text
        if name.builtin:
            return resolve_kind(name)
        key = f"{name.key}/{name.version}"
        with self._lock:
            known = self._known.get(key)
        if known is not None:
            return known
        try:
            crd = self.kube.get(CRDS, None, f"{name.plural}.{name.group}")
        except NotFound:
            return resolve_kind(name)  # not installed: its LIST is a 404, skipped; asked again next time
        kind = scaled_kind_from_crd(crd, name)
        with self._lock:
            self._known[key] = kind
        return kind
