"""Where the daemon's policies come from: files, or a ConfigMap read through
the API server.

A ConfigMap mounted as a volume is refreshed by each pod's kubelet on its own
sync period, up to a minute or more apart. After an edit, a standby that
takes over the Lease may still hold the old text and undo what the leader has
just done (pause what it resumed). Read through the API, every replica has
the same version within one reload interval, and a new leader reads it once
more before it acts (the daemon's part).

Both sources answer the same two questions: `version()`, cheap, changes when
the policies may have; `check()`, the policies of the last version seen and
every problem with them.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path

from scaler.cluster.kube import Kube, Resource
from scaler.decide.loading import PolicySet, Problem, check_policies, check_texts

CONFIGMAPS = Resource("", "v1", "configmaps")


def _fingerprint(paths: list[Path]) -> tuple:
    """What changed-on-disk means: every policy file's name, size and mtime
    (ConfigMap updates swap a symlink, which changes all three)."""
    seen: list[tuple[str, int | None, int | None]] = []
    for path in paths:
        candidates = sorted(path.iterdir()) if path.is_dir() else [path]
        for file in candidates:
            if file.suffix in (".yaml", ".yml") or not path.is_dir():
                try:
                    stat = file.stat()
                    seen.append((str(file), stat.st_size, stat.st_mtime_ns))
                except OSError:
                    seen.append((str(file), None, None))
    return tuple(seen)


class FilePolicies:
    """Policy files and directories on disk."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = list(paths)

    def __str__(self) -> str:
        return ", ".join(map(str, self.paths))

    def version(self) -> Hashable:
        return _fingerprint(self.paths)

    def check(self) -> tuple[PolicySet, list[Problem]]:
        return check_policies(self.paths)


class ConfigMapPolicies:
    """The .yaml and .yml keys of one ConfigMap, each read as a policy file
    whose problems are named `ConfigMap NAMESPACE/NAME, KEY:LINE`."""

    def __init__(self, kube: Kube, namespace: str, name: str) -> None:
        self.kube, self.namespace, self.name = kube, namespace, name
        self._texts: dict[str, str] = {}

    def __str__(self) -> str:
        return f"ConfigMap {self.namespace}/{self.name}"

    def version(self) -> Hashable:
        """Reads the ConfigMap (KubeError if that fails); its policy texts are the version."""
        data = self.kube.get(CONFIGMAPS, self.namespace, self.name).get("data") or {}
        self._texts = {key: text for key, text in sorted(data.items()) if key.endswith((".yaml", ".yml"))}
        return tuple(self._texts.items())

    def check(self) -> tuple[PolicySet, list[Problem]]:
        if not self._texts:
            return PolicySet((), (str(self),)), [Problem(str(self), None, "", "no .yaml or .yml keys in its data")]
        return check_texts((f"{self}, {key}", text) for key, text in self._texts.items())


PolicySource = FilePolicies | ConfigMapPolicies


def policy_source(settings, kube: Kube | None) -> PolicySource:
    """The ConfigMap if one is set (`NAME`, in the daemon's own namespace, or
    `NAMESPACE/NAME`), else the files."""
    if not settings.policy_configmap:
        return FilePolicies(settings.policies)
    namespace, _, name = settings.policy_configmap.rpartition("/")
    assert kube is not None, "run() makes a Kube whenever policy_configmap is set"
    return ConfigMapPolicies(kube, namespace or settings.own_namespace or "default", name)
