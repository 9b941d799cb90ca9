"""The kubeconfig, checked before the client library reads it: a missing,
empty, unreadable or malformed file, or a context it does not define, is an
error naming the file and what is wrong (the library raises several types
with less to say)."""

from __future__ import annotations

import os

import yaml


class KubeconfigError(Exception):
    """No usable kubeconfig: the message names the file and what is wrong with it."""


def kubeconfig_paths(kubeconfig: str | None) -> list[str]:
    """The files a kubeconfig is read from, as kubectl reads them."""
    if kubeconfig:
        return [kubeconfig]
    listed = [path for path in os.environ.get("KUBECONFIG", "").split(os.pathsep) if path]
    return listed or [os.path.expanduser("~/.kube/config")]


def _read_kubeconfig(path: str) -> dict | None:
    """One kubeconfig file as a mapping, None if it does not exist."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise KubeconfigError(f"kubeconfig {path} is unreadable: {getattr(error, 'strerror', None) or error}") \
            from None
    if not text.strip():
        raise KubeconfigError(f"kubeconfig {path} is empty")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise KubeconfigError(f"kubeconfig {path} is not valid YAML{where}") from None
    if not isinstance(data, dict) or not any(key in data for key in ("clusters", "contexts", "users")):
        raise KubeconfigError(f"kubeconfig {path} is not a kubeconfig (no clusters, contexts or users in it)")
    return data


def check_kubeconfig(kubeconfig: str | None, context: str | None) -> None:
    """Raise KubeconfigError naming what is wrong before the client library
    would raise one of its several exception types with less to say."""
    paths = kubeconfig_paths(kubeconfig)
    found = {path: data for path in paths if (data := _read_kubeconfig(path)) is not None}
    if not found:
        hint = "" if kubeconfig else " (set KUBECONFIG or pass --kubeconfig)"
        raise KubeconfigError(f"kubeconfig {os.pathsep.join(paths)} does not exist{hint}")
    names = [c.get("name") for data in found.values() for c in data.get("contexts") or [] if isinstance(c, dict)]
    current = context or next((d.get("current-context") for d in found.values() if d.get("current-context")), None)
    where = ", ".join(found)
    if current is None:
        raise KubeconfigError(f"kubeconfig {where} has no current context: pass --context "
                              f"(one of: {', '.join(map(str, names)) or 'none defined'}) or run kubectl config "
                              "use-context")
    if current not in names:
        raise KubeconfigError(f"context {current!r} is not defined in kubeconfig {where} "
                              f"(contexts: {', '.join(map(str, names)) or 'none'})")
