"""A seeded generator of policy files, good and bad, for the fuzz tests.

Each file starts from a policy assembled from plausible and implausible
values for every field (wrong types, out-of-range numbers, odd label names,
weird windows, unknown keys), is dumped as YAML, and is then sometimes
mangled as text (a character dropped, inserted or replaced, lines swapped,
the file cut short, an anchor and merge key added). Deterministic per seed.
"""

from __future__ import annotations

import random

import yaml

_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

# Each list: (plausible values, implausible ones). A field takes a plausible
# value 96 times in 100, so about a third of the files are accepted.
NAMES = (["chat", "embed", "a", "x" * 63, "a.b"], ["x" * 64, "Chat", "-a", "", "a_b", 7, None])
INTS = ([1, 2, 3, 8, 2**31 - 1], [0, -1, 2**31, 10**20, 1.5, "3", True, None, "lots"])
FLOATS = ([0.001, 0.5, 1, 5, 1e308], [0, 1e-320, float("inf"), float("nan"), -1, "1", None, [], {}])
DURATIONS = (["30s", "5m", "1h30m", "2d", "250ms", 60], ["0s", 0, -5, "1y", "400d", 10**15, "5 m", "", None, True])
QUERIES = (["up", "sum by (namespace, workload) (rate(x[5m]))", "sum("], ["", "   ", 42, None])
LABELS = (["workload", "namespace", "pod", "_x"], ["my-label", "1x", "", "a b", "ü", None, 3])
ZONES = (["UTC", "Europe/Berlin", "America/Havana", "Pacific/Chatham"], ["Mars/Olympus", "", "utc", None, 1])
DAYS = (["daily", "Mon-Fri", "Sat,Sun", "Fri-Mon", "Sun", "mon, wed"], ["Funday", "Mon-", ""])
TIMES = (["00:00", "08:00", "20:00", "23:59", "24:00", "02:30"], ["25:00", "8", "12:60"])
CRONS = (["0 8 * * 1-5", "0 20 * * 1-5", "*/15 * * * *", "0 0 1 * *", "0 0 29 2 *", "0 0 * * 7",
          "0 8 * * mon-fri"], ["0 0 31 2 *", "0 25 * * *", "0 8 * * 8", "0 8 1 * 1", "* * * *", "@daily", ""])
KINDS = (["Deployment", "StatefulSet", "InferenceService", "deploy", "sts", "deployments.apps/v1",
          "vllmservers.serving.example.com/v1", "Job", "rayclusters.ray.io/v1"],
         ["deployments.apps/v2", "vllmservers.serving.example.com", "Pod", "", "CronJob", "rayjobs.ray.io/v1alpha1"])
SELECTORS = (["", "app=chat", "app in (chat, embed),!canary", "tier notin (cpu)"], ["app==", "=x", "a b", "!"])
NAMESPACES = (["llm", "kube-system", "team-a"], ["LLM", "", "a" * 64, "-x"])
KEYS = ["name", "priority", "description", "targets", "schedule", "idle", "wake", "min_replicas", "max_replicas",
        "scale_down_delay", "startup_grace", "on_unknown"]
JUNK = ["\x00", "\x1b", "\t", "\u2028", "&", "*", "<<", ": ", "- ", "[", "]", "{", "}", "'", '"', "#", "\n", "!!",
        "%", "@", "|", ">", "?", "ü", "\ufeff"]


def _pick(rng: random.Random, values: tuple[list, list]):
    good, bad = values
    return rng.choice(good if rng.random() < 0.96 else bad)


def _maybe(rng: random.Random, probability: float) -> bool:
    return rng.random() < probability


def _window(rng: random.Random) -> dict:
    window: dict = {"mode": rng.choice(["up", "down"] * 20 + ["sideways", None])}
    if _maybe(rng, 0.6):
        start, end = _pick(rng, TIMES), _pick(rng, TIMES)
        if _maybe(rng, 0.15):
            window["when"] = f"{_pick(rng, DAYS)} {start}-{_pick(rng, DAYS)} {end}"
        else:
            window["when"] = f"{_pick(rng, DAYS)} {start}-{end}"
    else:
        window["start"], window["end"] = _pick(rng, CRONS), _pick(rng, CRONS)
        if _maybe(rng, 0.05):
            window["when"] = "daily 00:00-24:00"
    if _maybe(rng, 0.3):
        window["name"] = _pick(rng, NAMES)
    return window


def _signal(rng: random.Random, kind: str) -> dict:
    signal: dict = {"query": _pick(rng, QUERIES)}
    if kind == "idle":
        signal["threshold"] = _pick(rng, FLOATS)
        signal["duration"] = _pick(rng, DURATIONS)
    else:
        signal["target_per_replica"] = _pick(rng, FLOATS)
        if _maybe(rng, 0.5):
            signal["activation_threshold"] = _pick(rng, FLOATS)
    for label in ("workload_label", "namespace_label"):
        if _maybe(rng, 0.3):
            signal[label] = _pick(rng, LABELS)
    return signal


def _targets(rng: random.Random) -> dict:
    targets: dict = {}
    if _maybe(rng, 0.5):
        targets["namespaces"] = [_pick(rng, NAMESPACES) for _ in range(rng.randint(0, 2))]
    if _maybe(rng, 0.1):
        targets["namespace_selector"] = _pick(rng, SELECTORS)
    if _maybe(rng, 0.5):
        targets["selector"] = _pick(rng, SELECTORS)
    if _maybe(rng, 0.5):
        targets["kinds"] = [_pick(rng, KINDS) for _ in range(rng.choice([1, 1, 2, 3] * 5 + [0]))]
    if _maybe(rng, 0.2):
        targets["exclude_namespaces"] = [_pick(rng, NAMESPACES)]
    return targets


def _schedule(rng: random.Random) -> dict:
    schedule = {"timezone": _pick(rng, ZONES),
                "windows": [_window(rng) for _ in range(rng.choice([1, 1, 1, 2, 3] * 5 + [0]))]}
    if _maybe(rng, 0.4):
        schedule["outside"] = rng.choice(["signals", "down"] * 10 + ["up"])
    return schedule


def _spoil(rng: random.Random, spec: dict) -> None:
    """Now and then a misspelt key, or one taken away."""
    if _maybe(rng, 0.05):
        spec[rng.choice(["idel", "wakee", "min_replica", "extra"])] = 1
    if _maybe(rng, 0.05):
        del spec[rng.choice(list(spec))]


def policy(rng: random.Random) -> dict:
    # The helpers draw from rng in the order this function once did inline,
    # so a seed still makes the same policy.
    spec: dict = {"name": _pick(rng, NAMES)}
    if _maybe(rng, 0.3):
        spec["priority"] = _pick(rng, INTS)
    if _maybe(rng, 0.6):
        spec["targets"] = _targets(rng)
    if _maybe(rng, 0.6):
        spec["schedule"] = _schedule(rng)
    for kind in ("idle", "wake"):
        if _maybe(rng, 0.5):
            spec[kind] = _signal(rng, kind)
    for key in ("min_replicas", "max_replicas"):
        if _maybe(rng, 0.4):
            spec[key] = _pick(rng, INTS)
    for key in ("scale_down_delay", "startup_grace"):
        if _maybe(rng, 0.3):
            spec[key] = _pick(rng, DURATIONS)
    if _maybe(rng, 0.2):
        spec["on_unknown"] = rng.choice(["hold", "resume"] * 5 + ["panic"])
    _spoil(rng, spec)
    return spec


def _mangle(text: str, rng: random.Random) -> str:
    lines = text.split("\n")
    operation = rng.randrange(7)
    if operation == 0 and text:  # drop a character
        at = rng.randrange(len(text))
        return text[:at] + text[at + 1:]
    if operation == 1:  # insert junk
        at = rng.randrange(len(text) + 1)
        return text[:at] + rng.choice(JUNK) + text[at:]
    if operation == 2 and len(lines) > 2:  # swap two lines
        a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[a], lines[b] = lines[b], lines[a]
        return "\n".join(lines)
    if operation == 3:  # cut short
        return text[:rng.randrange(len(text) + 1)]
    if operation == 4 and len(lines) > 1:  # duplicate a line
        at = rng.randrange(len(lines))
        return "\n".join([*lines[:at + 1], lines[at], *lines[at + 1:]])
    if operation == 5:  # indent a line oddly
        at = rng.randrange(len(lines))
        lines[at] = " " * rng.choice([1, 3, 5]) + lines[at]
        return "\n".join(lines)
    return text.replace("\n", "\r\n") if rng.random() < 0.8 else text.upper()


def policy_file(seed: int) -> str:
    """The text of one generated policy file."""
    rng = random.Random(seed)
    policies = [policy(rng) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
    shape = rng.randrange(10)
    if shape == 0:
        text = yaml.dump(policies[0], Dumper=_DUMPER, sort_keys=False)
    elif shape == 1:  # shared defaults through a merge key
        defaults = {key: value for key, value in policies[0].items() if key != "name"}
        body = yaml.dump({"policies": [{"name": spec.get("name")} for spec in policies]},
                         Dumper=_DUMPER, sort_keys=False)
        text = "x-defaults: &d\n" + textwrap_indent(yaml.dump(defaults, Dumper=_DUMPER, sort_keys=False) or "{}\n") + \
            body.replace("- name:", "- <<: *d\n  name:")
    elif shape == 2:
        text = "\n---\n".join(yaml.dump({"policies": [spec]}, Dumper=_DUMPER, sort_keys=False) for spec in policies)
    else:
        text = yaml.dump({"policies": policies}, Dumper=_DUMPER, sort_keys=False, allow_unicode=rng.random() < 0.5)
    for _ in range(rng.choice([0, 0, 0, 0, 0, 1, 1, 2])):
        text = _mangle(text, rng)
    return text


def textwrap_indent(text: str) -> str:
    return "".join(f"  {line}\n" if line.strip() else "\n" for line in text.splitlines())
