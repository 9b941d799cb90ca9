"""One exit code per mistake, whichever command it is made in (README "Exit
codes"): 2 for a usage error (an argument that cannot be read: a time, a
duration, a kind, a selector; a time beyond what scaler accepts), 1 for an
error of the cluster, the kubeconfig or a policy file (a namespace that does
not exist). Each with one `error:` line naming the cause and never a
traceback. In process, against the fake API server; nothing is written."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaler.cli.instants import instant
from scaler.cli.main import main
from scaler.decide.times import rfc3339

WINDOWS = """\
policies:
  - name: chat
    targets: {namespaces: [default], selector: app=chat}
    schedule:
      timezone: Europe/Berlin
      windows: [{name: business-hours, mode: up, when: "Mon-Fri 08:00-20:00"}]
"""
CRD = {"metadata": {"name": "widgets.example.com"},
       "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}}}]}}

#: mistake -> (exit code, [(arguments, a piece of the one error line)]); {P} is a policy file.
MISTAKES = {
    "unreadable-time": (2, [
        (("plan", "--policies", "{P}", "--at", "yesterday"), "--at: 'yesterday' is not a time"),
        (("backtest", "--policies", "{P}", "--from", "yesterday"), "--from: 'yesterday' is not a time"),
        (("backtest", "--policies", "{P}", "--from=-1h", "--to", "2026-11-20T09:00"),
         "--to: '2026-11-20T09:00' has no time zone"),
        (("resume", "x", "--until", "yesterday"), "--until 'yesterday' is not a time"),
        (("resume", "x", "--until", "25:00"), "--until '25:00' is not a time"),
    ]),
    "unreadable-duration": (2, [
        (("plan", "--policies", "{P}", "--at", "now-soon"), "--at: 'soon' is not a duration"),
        (("backtest", "--policies", "{P}", "--from=-1h", "--step", "soon"), "--step: 'soon' is not a duration"),
        (("backtest", "--policies", "{P}", "--from=-1h", "--warm-up", "soon"), "--warm-up: 'soon' is not a duration"),
        (("backtest", "--policies", "{P}", "--from=-1h", "--flap-window", "x"), "--flap-window: 'x' is not a duration"),
        (("resume", "x", "--for", "soon"), "--for 'soon' is not a duration"),
    ]),
    "time-beyond-a-year-or-the-calendar": (2, [
        (("resume", "x", "--until", "9999-12-31T23:59:59Z"),
         "--until '9999-12-31T23:59:59Z' is more than a year ahead (31622400s), the longest hold scaler accepts"),
        (("resume", "x", "--for", "400d"), "--for '400d' is longer than a year (31622400s)"),
        (("plan", "--policies", "{P}", "--at", "now+400d"), "--at: '400d' is longer than a year (31622400s)"),
        (("plan", "--policies", "{P}", "--at", "0001-01-01T00:00:00+01:00"),
         "--at: '0001-01-01T00:00:00+01:00' is outside 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z"),
        (("backtest", "--policies", "{P}", "--from", "0001-01-01T00:30:00+01:00", "--to=-1h"),
         "--from: '0001-01-01T00:30:00+01:00' is outside 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z"),
    ]),
    "unknown-kind": (2, [
        (("pause", "x", "--kind", "Pod"), "unknown kind 'Pod': expected one of Deployment"),
        (("resume", "x", "--kind", "Pod"), "unknown kind 'Pod': expected one of Deployment"),
        (("status", "--kind", "Pod"), "unknown kind 'Pod': expected one of Deployment"),
        (("pause", "pod/x"), "unknown kind 'pod': expected one of Deployment"),
        (("resume", "pod/x"), "unknown kind 'pod': expected one of Deployment"),
        (("status", "--kind", "widgets.example.com"), "needs its version"),
    ]),
    "kind-without-scale": (2, [
        (("pause", "x", "--kind", "widgets.example.com/v1"), "the CRD widgets.example.com has no scale subresource"),
        (("resume", "widgets.example.com/v1/x"), "the CRD widgets.example.com has no scale subresource"),
        (("status", "--kind", "widgets.example.com/v1"), "the CRD widgets.example.com has no scale subresource"),
    ]),
    "malformed-selector": (2, [
        (("pause", "-l", "app=("), "invalid label selector 'app=(': '(' is not a valid label value at column 5"),
        (("resume", "-l", "app=("), "invalid label selector 'app=('"),
        (("status", "-l", "app=("), "invalid label selector 'app=('"),
        (("backtest", "--policies", "{P}", "--from=-1h", "-l", "app=("), "invalid label selector 'app=('"),
    ]),
    "namespace-not-found": (1, [
        (("pause", "x", "-n", "no-such-ns"), "error: namespace 'no-such-ns' not found"),
        (("resume", "x", "-n", "no-such-ns"), "error: namespace 'no-such-ns' not found"),
        (("status", "-n", "no-such-ns"), "error: namespace 'no-such-ns' not found"),
        (("backtest", "--policies", "{P}", "--from=-1h", "-n", "no-such-ns"),
         "error: namespace 'no-such-ns' not found"),
    ]),
    "kubeconfig-missing": (1, [
        (("pause", "x", "--kubeconfig", "{K}"), "does not exist"),
        (("status", "--kubeconfig", "{K}"), "does not exist"),
        (("plan", "--policies", "{P}", "--kubeconfig", "{K}"), "does not exist"),
        (("backtest", "--policies", "{P}", "--from=-1h", "--kubeconfig", "{K}"), "does not exist"),
    ]),
}
def deployment(name: str, *, replicas: int, gpus: int = 1, annotations: dict | None = None) -> dict:
    """A Deployment body with `gpus` GPUs per replica, labelled app=NAME."""
    pod = {"metadata": {"labels": {"app": name}},
           "spec": {"containers": [{"name": "server", "image": "vllm/vllm-openai:fake",
                                    "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]}}
    return {"metadata": {"name": name, "labels": {"app": name}, "annotations": annotations or {}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": pod}}


CASES = [pytest.param(mistake, code, arguments, cause, id=f"{mistake}:{' '.join(arguments[:3])}")
         for mistake, (code, cases) in MISTAKES.items() for arguments, cause in cases]


@pytest.fixture
def cli(fake, tmp_path, capsys):
    """Runs `scaler ARGUMENTS` in process against the fake: (exit code, stdout, stderr)."""
    kubeconfig = fake.kubeconfig(tmp_path / "kubeconfig")
    policies = tmp_path / "policies.yaml"
    policies.write_text(WINDOWS)
    fake.create("customresourcedefinitions.apiextensions.k8s.io", CRD)
    fake.create("deployments.apps", deployment("chat", replicas=2), namespace="default")

    def run(*arguments: str) -> tuple[int, str, str]:
        filled = [a.replace("{P}", str(policies)).replace("{K}", str(tmp_path / "missing")) for a in arguments]
        if "--kubeconfig" not in filled:
            filled += ["--kubeconfig", str(kubeconfig)]
        if filled[0] in ("plan", "backtest"):
            filled += ["--prometheus-url", "http://127.0.0.1:1", "--prometheus-timeout-seconds", "2"]
        try:
            code = main(filled)
        except SystemExit as exit_:  # argparse
            code = exit_.code
        out, err = capsys.readouterr()
        return code, out, err
    return run


@pytest.mark.parametrize(("mistake", "code", "arguments", "cause"), CASES)
def test_one_mistake_one_exit_code_and_one_error_line(cli, mistake, code, arguments, cause):
    exit_code, out, err = cli(*arguments)
    assert exit_code == code, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and cause in errors[0], err
    assert "Traceback" not in out + err


def test_the_table_holds_each_mistake_in_several_commands():
    """The table above compares commands: each mistake in two or more of them."""
    for mistake, (_, cases) in MISTAKES.items():
        assert len({arguments[0] for arguments, _ in cases}) >= 2, mistake


# ---------------------------------------------------------------- the ends of the calendar


@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))
def test_every_time_from_year_1_to_9999_is_printed_in_rfc_3339_and_read_back(moment):
    moment = moment.replace(microsecond=0, tzinfo=UTC)
    text = rfc3339(moment)
    assert len(text) == 20 and text[4] == "-" and text.endswith("Z")
    assert instant(text, now=datetime(2026, 1, 1, tzinfo=UTC), flag="--at") == moment


def _one_error_naming(err: str, argument: str) -> None:
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(err.splitlines()) == 1 and len(errors) == 1 and argument in errors[0], err


@pytest.mark.parametrize("windows", [True, False], ids=["with-windows", "no-windows"])
def test_plan_at_the_last_second_of_9999_is_an_answer_or_one_error_naming_it(cli, tmp_path, windows):
    """Whether the window engine can look past 9999 (being fixed apart) or
    not: never an OverflowError, a traceback or a failed policy row."""
    if not windows:
        (tmp_path / "policies.yaml").write_text("policies:\n  - name: chat\n    targets: {selector: app=chat}\n"
                                                "    wake: {query: q, target_per_replica: 1}\n")
    code, out, err = cli("plan", "--policies", "{P}", "--at", "9999-12-31T23:59:59Z", "-o", "json")
    assert code in (0, 2, 3, 4), err
    assert "OverflowError" not in out + err and "Traceback" not in out + err
    if code == 2:
        _one_error_naming(err, "--at 9999-12-31T23:59:59Z")
    else:
        document = json.loads(out)
        assert document["at"] == "9999-12-31T23:59:59Z" and document["policyErrors"] == []


@pytest.mark.parametrize("command", [
    ("plan", "--policies", "{P}", "--at", "0001-01-01T00:00:00Z", "-o", "json"),
    ("backtest", "--policies", "{P}", "--from", "0001-01-01T00:00:00Z", "--to", "0001-01-01T01:00:00Z", "-o", "json"),
], ids=["plan", "backtest"])
def test_the_first_second_of_year_1_is_printed_with_four_digits(cli, command):
    code, out, err = cli(*command)
    assert "OverflowError" not in out + err and "Traceback" not in out + err
    if code == 2:
        _one_error_naming(err, f"{command[3]} 0001-01-01T00:00:00Z")
    else:
        document = json.loads(out)
        assert document.get("at", document.get("from")) == "0001-01-01T00:00:00Z"


def test_year_1_without_windows_is_answered_with_its_four_digits(cli, tmp_path):
    (tmp_path / "policies.yaml").write_text("policies:\n  - name: chat\n    targets: {selector: app=chat}\n"
                                            "    wake: {query: q, target_per_replica: 1}\n")
    code, out, err = cli("backtest", "--policies", "{P}", "--from", "0001-01-01T00:00:00Z", "--to",
                         "0001-01-01T01:00:00Z", "-o", "json")
    assert code == 4, err  # Prometheus is not there: unknown
    assert json.loads(out)["from"] == "0001-01-01T00:00:00Z"
    assert "wake signal, 0001-01-01 00:00 to 0001-01-01 01:00 UTC: Prometheus at http://127.0.0.1:1 unreachable" in err
    code, out, err = cli("plan", "--policies", "{P}", "--at", "0001-01-01T00:00:00Z", "--all")
    assert code == 4, err
    assert "evaluated at 0001-01-01T00:00:00Z, signals as of 0001-01-01T00:00:00Z" in out


def test_a_policy_file_that_is_missing_is_still_reported_as_such(cli, tmp_path):
    code, _, err = cli("plan", "--policies", str(tmp_path / "nope.yaml"), "--at", "now-1h")
    assert code == 1 and "error: the policies are invalid" in err

