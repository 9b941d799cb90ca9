"""Calendars where the daemon and the command line meet them, against the
in-process fake API server: `plan --at` on Epiphany, a ConfigMap calendar
read through the API, the last good policies kept over a broken reload, the
Event and `status` naming the holiday, and `backtest`'s replay following it."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime

import pytest

from scaler.cli.main import main
from scaler.cluster.discovery import KindResolver
from scaler.cluster.pausing import Pauser
from scaler.cluster.views import ListingView
from scaler.decide.decisions import WorkloadState
from scaler.decide.loading import check_texts
from scaler.decide.replaying import Steps, Subject, replay, window_runs
from scaler.run.acting import Actor
from scaler.run.daemon import Daemon
from scaler.run.evaluating import Evaluator
from scaler.run.settings import Settings
from scaler.run.sources import ConfigMapPolicies, FilePolicies
from scaler.signals.prometheus import Prometheus
from tests.unit.test_calendars import OFFICE, OFFSITES_ICS

NOWHERE = "http://127.0.0.1:9"  # no Prometheus: the policies here have no signal
EPIPHANY = "2027-01-06T10:00:00+01:00"


def chat(fake, *, replicas: int = 2) -> None:
    fake.create("namespaces", {"metadata": {"name": "llm"}})
    fake.create("deployments.apps", {"metadata": {"name": "chat", "labels": {"app": "chat"}},
                                     "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "chat"}},
                                              "template": {"metadata": {"labels": {"app": "chat"}},
                                                           "spec": {"containers": [{"name": "c", "image": "x"}]}}}},
                namespace="llm")
    fake.set_status("deployments.apps", "llm", "chat", {"replicas": replicas, "readyReplicas": replicas})


@pytest.mark.parametrize(("subdivision", "code", "row"), [
    pytest.param("BY", 3, ["llm", "Deployment", "chat", "office", "pause", "2", "->", "0", "keep-up", "window",
                           "'office'", "is", "off", "today:", "Heilige", "Drei", "Könige", "(DE-BY);"], id="bavaria"),
    pytest.param("BE", 0, ["llm", "Deployment", "chat", "office", "hold", "2", "keep-up", "window", "'office'"],
                 id="berlin"),
])
def test_plan_at_epiphany(fake, tmp_path, capsys, subdivision, code, row):
    """Bavaria: paused, the holiday named; Berlin: up (exit 3: a change is pending; 0: none)."""
    chat(fake)
    path = tmp_path / "office.yaml"
    path.write_text(OFFICE.format(subdivision=subdivision))
    kubeconfig = fake.kubeconfig(tmp_path / "kubeconfig")
    assert main(["plan", "--policies", str(path), "--kubeconfig", str(kubeconfig), "--prometheus-url", NOWHERE,
                 "--at", EPIPHANY, "--all"]) == code
    lines = capsys.readouterr().out.splitlines()
    chat_rows = [line.split() for line in lines if " chat " in line]
    assert len(chat_rows) == 1 and chat_rows[0][:len(row)] == row, lines


def test_plan_reads_a_configmap_calendar_through_the_api(fake, tmp_path, capsys):
    chat(fake)
    fake.create("configmaps", {"metadata": {"name": "calendars"}, "data": {"offsites.ics": OFFSITES_ICS}},
                namespace="llm")
    path = tmp_path / "eval.yaml"
    path.write_text(textwrap.dedent("""\
        calendars:
          team-offsites: {ical: {configmap: llm/calendars, key: offsites.ics}}
        policies:
          - name: eval
            targets: {namespaces: [llm]}
            schedule:
              timezone: Europe/Berlin
              windows: [{name: offsite, mode: down, on: [team-offsites]}]
        """))
    kubeconfig = fake.kubeconfig(tmp_path / "kubeconfig")
    assert main(["plan", "--policies", str(path), "--kubeconfig", str(kubeconfig), "--prometheus-url", NOWHERE,
                 "--at", "2026-01-12T10:00:00+01:00"]) == 3
    out = capsys.readouterr().out
    assert "is active (now: Team offsite (team-offsites)): pausing 2 replicas" in out


# ---------------------------------------------------------------- sources and reloads


POLICIES = """\
calendars:
  team-offsites: {ical: {file: offsites.ics}}
  shared: {ical: {configmap: calendars, key: shared.ics}}
policies:
  - name: eval
    schedule:
      timezone: Europe/Berlin
      windows: [{name: offsite, mode: down, on: [team-offsites, shared]}]
"""


def test_a_configmap_source_reads_its_own_keys_and_other_configmaps(fake):
    fake.create("namespaces", {"metadata": {"name": "scaler"}})
    fake.create("configmaps", {"metadata": {"name": "policies"},
                               "data": {"eval.yaml": POLICIES, "offsites.ics": OFFSITES_ICS}}, namespace="scaler")
    fake.create("configmaps", {"metadata": {"name": "calendars"}, "data": {"shared.ics": OFFSITES_ICS}},
                namespace="scaler")
    source = ConfigMapPolicies(fake.client(), "scaler", "policies")
    first = source.version()
    policies, problems = source.check()
    assert problems == [] and [policy.name for policy in policies] == ["eval"]
    assert set(policies.calendars) == {"team-offsites", "shared"}
    assert source.version() != first  # the first check learned which ConfigMap it reads: one reload more
    settled = source.version()
    assert source.version() == settled
    # Another ConfigMap's calendar changes: a new version, and the problem is named with file:line.
    fake.patch("configmaps", "scaler", "calendars", {"data": {"shared.ics": "garbage"}})
    assert source.version() != settled
    policies, problems = source.check()
    assert [str(problem) for problem in problems] == [
        "ConfigMap scaler/policies, eval.yaml:3: calendars.shared.ical: ConfigMap calendars, key shared.ics is not an "
        "iCalendar file: Content line could not be parsed into parts: 'garbage': Invalid content line"]
    assert list(policies) == []
    # The calendars' ConfigMap deleted: a change, one problem, and the policies are still read.
    fake.delete("configmaps", "scaler", "calendars")
    assert source.version() != settled
    _, problems = source.check()
    assert [str(problem).split(": ", 3)[:3] for problem in problems] == [
        ["ConfigMap scaler/policies, eval.yaml:3", "calendars.shared.ical", "cannot read ConfigMap scaler/calendars"]]
    fake.create("configmaps", {"metadata": {"name": "calendars"}, "data": {"shared.ics": OFFSITES_ICS}},
                namespace="scaler")
    # A key the policies name that the ConfigMap does not hold.
    fake.patch("configmaps", "scaler", "policies", {"data": {"offsites.ics": None}})
    source.version()
    _, problems = source.check()
    assert [str(problem) for problem in problems] == [
        "ConfigMap scaler/policies, eval.yaml:2: calendars.team-offsites.ical: the policies' ConfigMap has no key "
        "'offsites.ics' (with the policies in a ConfigMap, a file beside them is another key of it)"]


def test_files_reload_when_their_calendar_file_changes(tmp_path):
    (tmp_path / "offsites.ics").write_text(OFFSITES_ICS)
    (tmp_path / "eval.yaml").write_text(POLICIES.replace("team-offsites, shared", "team-offsites")
                                        .replace("  shared: {ical: {configmap: calendars, key: shared.ics}}\n", ""))
    source = FilePolicies([tmp_path])
    source.check()
    settled = source.version()
    (tmp_path / "offsites.ics").write_text(OFFSITES_ICS.replace("Team offsite", "Team day") + "\n")
    assert source.version() != settled


def test_a_broken_calendar_at_reload_keeps_the_last_good_policies(fake, tmp_path, monkeypatch):
    """The daemon's reload: a broken iCal is reported, and what was in force stays."""
    fake.create("namespaces", {"metadata": {"name": "scaler"}})
    fake.create("configmaps", {"metadata": {"name": "policies"},
                               "data": {"eval.yaml": POLICIES.replace(", shared", "").replace(
                                   "  shared: {ical: {configmap: calendars, key: shared.ics}}\n", ""),
                                        "offsites.ics": OFFSITES_ICS}}, namespace="scaler")
    monkeypatch.setenv("POD_NAMESPACE", "scaler")
    kube = fake.client()
    source = ConfigMapPolicies(kube, "scaler", "policies")
    version = source.version()
    good, problems = source.check()
    assert problems == []
    daemon = Daemon(Settings(policy_configmap="policies", prometheus_url=NOWHERE), good, source=source,
                    version=version, kube=kube)
    fake.patch("configmaps", "scaler", "policies", {"data": {"offsites.ics": "BEGIN:VCALENDAR\n"}})
    source.version()
    daemon._apply(*source.check())
    assert daemon.policies is good
    assert daemon.health.details["policyFilesValid"] is False
    assert daemon.health.details["policyProblems"][0].startswith(
        "ConfigMap scaler/policies, eval.yaml:2: calendars.team-offsites.ical: ")


# ---------------------------------------------------------------- the Event and status


def test_the_event_and_status_name_the_holiday(fake, tmp_path, capsys):
    chat(fake)
    policies, problems = check_texts([("office.yaml", OFFICE.format(subdivision="BY"))])
    assert problems == []
    kube = fake.client()
    evaluator = Evaluator(prometheus=Prometheus(NOWHERE, timeout_seconds=1), view=ListingView(kube),
                          excluded_namespaces=(), resolve=KindResolver(kube))
    actor = Actor(evaluator=evaluator, pauser=Pauser(kube), dry_run=False)
    epiphany = datetime.fromisoformat(EPIPHANY)
    results = actor.act(evaluator.evaluate(policies, now=epiphany), now=epiphany)  # as a reconcile does
    assert [result.outcome.value for result in results] == ["changed"]
    assert fake.get("deployments.apps", "llm", "chat")["spec"]["replicas"] == 0
    [event] = fake.events("llm", "chat", reason="ScaledToZero")
    assert "keep-up window 'office' is off today: Heilige Drei Könige (DE-BY)" in event["message"]
    kubeconfig = fake.kubeconfig(tmp_path / "kubeconfig", namespace="llm")
    assert main(["status", "--kubeconfig", str(kubeconfig), "-n", "llm"]) == 0
    [row] = [line for line in capsys.readouterr().out.splitlines() if " chat " in line]
    assert "paused" in row and "keep-up window 'office' is off today: Heilige Drei Könige (DE-BY)" in row


# ---------------------------------------------------------------- backtest


def test_a_replay_follows_the_holiday():
    """backtest's replay from Epiphany 09:00 (Berlin) for two days: paused at
    once with the day named, resumed when office hours open on the 7th; the
    fast path (decisions reused between window edges) says the same."""
    policies, _ = check_texts([("office.yaml", OFFICE.format(subdivision="BY"))])
    policy = policies.policies[0]
    steps = Steps(datetime(2027, 1, 6, 8, 0, tzinfo=UTC), 300, 2 * 288)
    subject = Subject(WorkloadState(kind="Deployment", namespace="llm", name="chat", replicas=2, ready_replicas=2),
                      policy, size=2, gpus_per_replica=1, warm_up_seconds=60)
    acts = replay(subject, steps, windows=window_runs(policy, steps, None)).acts
    tz = policy.schedule.compiled.tz
    assert [(act.at.astimezone(tz).strftime("%d %H:%M"), act.action.value) for act in acts] == [
        ("06 09:00", "pause"), ("07 08:00", "resume"), ("07 20:00", "pause"), ("08 08:00", "resume")]
    assert acts[0].reason.startswith("keep-up window 'office' is off today: Heilige Drei Könige (DE-BY); ")
    slow = replay(subject, steps, windows=window_runs(policy, steps, None), reuse=False).acts
    assert [(act.at, act.reason) for act in slow] == [(act.at, act.reason) for act in acts]


def test_next_edge_is_the_calendar_boundary_not_a_poll():
    policies, _ = check_texts([("office.yaml", OFFICE.format(subdivision="BY").replace(
        'when: "Mon-Fri 08:00-20:00", ', 'when: "Mon-Fri 00:00-24:00", '))])
    schedule = policies.policies[0].schedule.compiled
    after = datetime(2027, 1, 5, 12, tzinfo=UTC)
    assert schedule.windows[0].next_edge(after) == datetime(2027, 1, 5, 23, tzinfo=UTC)  # Epiphany's midnight
    assert schedule.windows[0].next_edge(datetime(2027, 1, 5, 23, tzinfo=UTC)) == datetime(2027, 1, 6, 23, tzinfo=UTC)
