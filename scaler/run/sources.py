"""Where the daemon's policies come from: files, or a ConfigMap read through
the API server; and where their iCalendar calendars come from.

A ConfigMap mounted as a volume is refreshed by each pod's kubelet on its own
sync period, up to a minute or more apart. After an edit, a standby that
takes over the Lease may still hold the old text and undo what the leader has
just done (pause what it resumed). Read through the API, every replica has
the same version within one reload interval, and a new leader reads it once
more before it acts (the daemon's part).

Both sources answer the same two questions: `version()`, cheap, changes when
the policies (or a calendar they read) may have; `check()`, the policies of
the last version seen and every problem with them.

A calendar's iCalendar text (`ical: {file: x.ics}` or `{configmap: NAME,
key: K}`) is read by an `IcalTexts`: a file beside the policy file (with the
policies in a ConfigMap: another key of that ConfigMap), a ConfigMap through
the API (NAME in the daemon's namespace, or NAMESPACE/NAME).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from pathlib import Path

from scaler.cluster.kube import Kube, KubeError, Resource
from scaler.decide.calendar_specs import IcalSpec
from scaler.decide.loading import CalendarUnreadable, PolicySet, Problem, check_policies, check_texts, read_ical_file

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


class IcalTexts:
    """Reads the iCalendar texts of one check (an `IcalReader`), and
    remembers what it read, so that `version()` can tell when one changes."""

    def __init__(self, kube: Callable[[], Kube] | None, namespace: str, *,
                 own: Mapping[str, str] | None = None) -> None:
        """`own`: the data of the ConfigMap the policies came from (its keys
        are the files beside them); None for policy files on disk."""
        self._kube, self.namespace, self.own = kube, namespace, own
        self.files: set[Path] = set()
        self.configmaps: set[tuple[str, str]] = set()

    def __call__(self, spec: IcalSpec, origin: str) -> str | None:
        if spec.file is not None:
            if self.own is None:
                self.files.add(Path(origin).parent / spec.file)
                return read_ical_file(spec, origin)
            key = spec.file.removeprefix("./")
            if key not in self.own:
                raise CalendarUnreadable(f"the policies' ConfigMap has no key {key!r} (with the policies in a "
                                         "ConfigMap, a file beside them is another key of it)")
            return self.own[key]
        assert spec.configmap is not None and spec.key is not None  # IcalSpec checked it
        namespace, _, name = spec.configmap.rpartition("/")
        namespace = namespace or self.namespace
        self.configmaps.add((namespace, name))
        if self._kube is None:
            return None
        try:
            data = self._kube().get(CONFIGMAPS, namespace, name).get("data") or {}
        except KubeError as error:
            raise CalendarUnreadable(f"cannot read ConfigMap {namespace}/{name}: {error}") from None
        if spec.key not in data:
            raise CalendarUnreadable(f"ConfigMap {namespace}/{name} has no key {spec.key!r} (it has: "
                                     f"{', '.join(sorted(data)) or 'no data'})")
        return data[spec.key]

    def version(self) -> tuple:
        """What it read, as it is now: the files' sizes and times, the
        ConfigMaps' resourceVersions, or why one cannot be read (a deleted
        calendar ConfigMap is a change, whose problem the check reports; it
        does not stop the policies from being read)."""
        files = _fingerprint(sorted(self.files))
        maps = tuple((namespace, name, self._resource_version(namespace, name))
                     for namespace, name in sorted(self.configmaps)) if self._kube is not None else ()
        return files, maps

    def _resource_version(self, namespace: str, name: str) -> str:
        assert self._kube is not None
        try:
            return str(self._kube().get(CONFIGMAPS, namespace, name)["metadata"]["resourceVersion"])
        except KubeError as error:
            return f"unreadable: {error}"


class FilePolicies:
    """Policy files and directories on disk."""

    def __init__(self, paths: list[Path], *, kube: Callable[[], Kube] | None = None,
                 namespace: str = "default") -> None:
        """`kube` makes the client for ConfigMap calendars, when one is used."""
        self.paths = list(paths)
        self._kube, self._namespace = kube, namespace
        self._texts = IcalTexts(kube, namespace)

    def __str__(self) -> str:
        return ", ".join(map(str, self.paths))

    def version(self) -> Hashable:
        return _fingerprint(self.paths), self._texts.version()

    def check(self) -> tuple[PolicySet, list[Problem]]:
        """Every problem of the files; none named at all (SCALER_POLICIES="", or --policies ",") is one,
        not an empty set: with no policies, the daemon resumes all that policies paused."""
        if not self.paths:
            return PolicySet((), ()), [Problem("--policies / SCALER_POLICIES", None, "",
                                               "names no policy file or directory")]
        self._texts = IcalTexts(self._kube, self._namespace)
        return check_policies(self.paths, read_ical=self._texts)


class ConfigMapPolicies:
    """The .yaml and .yml keys of one ConfigMap, each read as a policy file
    whose problems are named `ConfigMap NAMESPACE/NAME, KEY:LINE`; its other
    keys are the files beside them (iCalendar texts)."""

    def __init__(self, kube: Kube, namespace: str, name: str) -> None:
        self.kube, self.namespace, self.name = kube, namespace, name
        self._data: dict[str, str] = {}
        self._texts = IcalTexts(lambda: kube, namespace, own={})

    def __str__(self) -> str:
        return f"ConfigMap {self.namespace}/{self.name}"

    @property
    def _policy_texts(self) -> dict[str, str]:
        return {key: text for key, text in self._data.items() if key.endswith((".yaml", ".yml"))}

    def version(self) -> Hashable:
        """Reads the ConfigMap (KubeError if that fails); its data, and the
        versions of other ConfigMaps its calendars read, are the version."""
        data = self.kube.get(CONFIGMAPS, self.namespace, self.name).get("data") or {}
        self._data = dict(sorted(data.items()))
        return tuple(self._data.items()), self._texts.version()

    def check(self) -> tuple[PolicySet, list[Problem]]:
        texts = self._policy_texts
        if not texts:
            return PolicySet((), (str(self),)), [Problem(str(self), None, "", "no .yaml or .yml keys in its data")]
        self._texts = IcalTexts(lambda: self.kube, self.namespace, own=self._data)
        return check_texts(((f"{self}, {key}", text) for key, text in texts.items()), read_ical=self._texts)


PolicySource = FilePolicies | ConfigMapPolicies


def check_configured_policies(settings) -> tuple[PolicySet, list[Problem]]:
    """`plan`'s and `backtest`'s policies, from where the daemon with the
    same settings reads them: the ConfigMap if one is set, else the files
    (their ConfigMap calendars read through the API, a client made only if
    one is used)."""
    source = policy_source(settings, settings.kube() if settings.policy_configmap else None)
    source.version()  # a ConfigMap is read here (KubeError if it cannot be); files are only looked at
    return source.check()


class _Once:
    """`make()`'s result, made on the first call."""

    def __init__(self, make: Callable[[], Kube]) -> None:
        self.make: Callable[[], Kube] = make
        self.made: Kube | None = None

    def __call__(self) -> Kube:
        if self.made is None:
            self.made = self.make()
        return self.made


def policy_source(settings, kube: Kube | None) -> PolicySource:
    """The ConfigMap if one is set (`NAME`, in the daemon's own namespace, or
    `NAMESPACE/NAME`), else the files (whose ConfigMap calendars are read
    with a client made when first needed)."""
    own_namespace = settings.own_namespace or "default"
    if not settings.policy_configmap:
        return FilePolicies(settings.policies, namespace=own_namespace, kube=_Once(settings.kube))
    namespace, _, name = settings.policy_configmap.rpartition("/")
    assert kube is not None, "run() makes a Kube whenever policy_configmap is set"
    return ConfigMapPolicies(kube, namespace or own_namespace, name)
