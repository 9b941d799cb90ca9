"""Who set the replicas back (managedFields), and the back-off that follows; a
person's hold (`resume --for/--until`) and where its end falls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from datetime import time as wall_time
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.cli.manual import local_zone
from scaler.cluster.informers import _slim
from scaler.decide.reverts import (
    HoldError,
    backoff_seconds,
    hold_annotations,
    hold_until,
    is_gitops,
    replicas_writer,
    revert_record,
)
from scaler.decide.times import rfc3339

REPLICAS = {"f:spec": {"f:replicas": {}}}
IMAGE = {"f:spec": {"f:template": {"f:spec": {}}}}


def managed(*entries) -> dict:
    return {"metadata": {"managedFields": [
        {"manager": manager, "operation": operation, "time": time, "fieldsV1": fields}
        for manager, operation, time, fields in entries]}}


@pytest.mark.parametrize(("obj", "writer"), [
    pytest.param(managed(("kube-controller-manager", "Update", "2026-01-01T00:00:00Z", IMAGE),
                         ("argocd-controller", "Apply", "2026-01-01T00:00:01Z", REPLICAS)),
                 "argocd-controller", id="argo-owns-the-replicas"),
    pytest.param(managed(("argocd-controller", "Apply", "2026-01-01T00:00:01Z", IMAGE),
                         ("kubectl", "Update", "2026-01-01T00:00:05Z", REPLICAS)), "kubectl",
                 id="a-person-scaled-it"),
    pytest.param(managed(("scaler", "Update", "2026-01-01T00:00:09Z", REPLICAS),
                         ("helm-controller", "Apply", "2026-01-01T00:00:01Z", REPLICAS)), "helm-controller",
                 id="shared-names-the-other-writer"),
    pytest.param(managed(("kubectl", "Update", "2026-01-01T00:00:01Z", REPLICAS),
                         ("kustomize-controller", "Apply", "2026-01-01T00:00:05Z", REPLICAS)),
                 "kustomize-controller", id="newest-wins"),
    pytest.param(managed(("kubectl", "Update", "2026-01-01T00:00:01Z", IMAGE)), None, id="nobody-owns-it"),
    pytest.param({"metadata": {}}, None, id="no-managed-fields"),
])
def test_replicas_writer(obj, writer):
    assert replicas_writer(obj) == writer
    assert replicas_writer(_slim(obj)) == writer  # the daemon's cache keeps exactly what this needs


def test_the_cache_keeps_only_the_replica_owners():
    obj = _slim(managed(("a", "Update", "t", IMAGE), ("b", "Apply", "t", {**REPLICAS, "f:metadata": {"x": {}}})))
    assert obj["metadata"]["managedFields"] == [{"manager": "b", "operation": "Apply", "time": "t",
                                                 "fieldsV1": REPLICAS}]


@pytest.mark.parametrize(("manager", "gitops"), [
    ("argocd-controller", True), ("kustomize-controller", True), ("helm-controller", True),
    ("kubectl", False), ("kubectl-edit", False), ("argocd", False), (None, False)])
def test_gitops_managers(manager, gitops):
    assert is_gitops(manager) is gitops


def test_backoff_doubles_and_is_capped():
    assert [backoff_seconds(n, base_seconds=300, max_seconds=3600) for n in (1, 2, 3, 4, 5)] == \
        [300, 600, 1200, 2400, 3600]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    record, _until = revert_record(manager="argocd-controller", reverts=2, now=now, base_seconds=10)
    assert record == {"scaler.io/reverted-by": "argocd-controller", "scaler.io/reverts": "2",
                      "scaler.io/backoff-until": "2026-01-01T00:00:20Z"}


def test_hold_until():
    assert hold_until({}) is None
    assert hold_until({"scaler.io/hold-up-until": "2026-01-01T02:00:00Z"}) == \
        datetime(2026, 1, 1, 2, tzinfo=UTC)
    nxt = {"scaler.io/hold-up-until": "next-window", "scaler.io/hold-up-from": "2026-01-01T00:00:00Z"}
    assert hold_until(nxt) == datetime(2026, 1, 1, 1, tzinfo=UTC)
    edge = datetime(2026, 1, 1, 8, tzinfo=UTC)
    assert hold_until(nxt, next_edge_after=lambda start: edge) == edge


# ---------------------------------------------------------------- resume --until HH:MM and its bounds

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(("now", "text", "until"), [
    # Spring forward in Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
    pytest.param(datetime(2026, 3, 29, 1, 0, tzinfo=BERLIN), "02:30", "2026-03-29T01:00:00Z",
                 id="skipped-time-happens-at-the-jump"),
    pytest.param(datetime(2026, 3, 29, 1, 0, tzinfo=BERLIN), "05:00", "2026-03-29T03:00:00Z",
                 id="after-the-jump-in-summer-time"),
    pytest.param(datetime(2026, 3, 28, 23, 0, tzinfo=BERLIN), "02:30", "2026-03-29T01:00:00Z",
                 id="the-evening-before"),
    # Fall back, 2026-10-25: 03:00 CEST back to 02:00 CET (01:00 UTC); 02:30 happens first at 00:30 UTC.
    pytest.param(datetime(2026, 10, 25, 1, 0, tzinfo=BERLIN), "02:30", "2026-10-25T00:30:00Z",
                 id="repeated-time-at-its-first-occurrence"),
    pytest.param(datetime(2026, 10, 25, 2, 10, fold=1, tzinfo=BERLIN), "02:40", "2026-10-26T01:40:00Z",
                 id="repeated-time-already-past-once-is-tomorrow"),
    pytest.param(datetime(2026, 10, 24, 20, 0, tzinfo=BERLIN), "05:00", "2026-10-25T04:00:00Z",
                 id="after-the-change-in-winter-time"),
    pytest.param(datetime(2026, 6, 1, 18, 0, tzinfo=UTC), "18:00", "2026-06-02T18:00:00Z",
                 id="now-is-not-after-now"),
    pytest.param(datetime(2026, 6, 1, 18, 0, tzinfo=timezone(timedelta(hours=-5))), "17:59",
                 "2026-06-02T22:59:00Z", id="a-fixed-offset"),
])
def test_until_a_wall_time_follows_the_windows_rule(now, text, until):
    assert hold_annotations(until_text=text, now=now)["scaler.io/hold-up-until"] == until


def _naive_next_wall_time(now: datetime, hour: int, minute: int) -> datetime:
    """The windows' rule walked in 5-minute steps, as tests/oracle.py does: a
    wall time W happens at the first moment the clock has shown W or later
    (`shown` never goes back); the first such moment after `now`."""
    zone = now.tzinfo
    assert isinstance(zone, ZoneInfo)
    step, moment = timedelta(minutes=5), (now - timedelta(days=2)).astimezone(UTC)
    shown = datetime.min
    today = now.astimezone(zone).date()
    targets = [datetime.combine(today + timedelta(days=d), wall_time(hour, minute)) for d in range(-3, 4)]
    while moment <= now + timedelta(days=3):
        shown = max(shown, moment.astimezone(zone).replace(tzinfo=None))
        if moment > now and any(target <= shown for target in targets):
            return moment
        targets = [target for target in targets if target > shown]
        moment += step
    raise AssertionError("no such wall time within three days")


ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham", "America/Santiago",
         "Asia/Tehran", "Pacific/Apia", "Europe/London", "UTC"]


def _changes_of_clocks(zone: ZoneInfo, year: int) -> list[datetime]:
    """Instants (UTC, to the hour) at which `zone`'s offset changes in `year`."""
    moment, found = datetime(year, 1, 1, tzinfo=UTC), []
    while moment.year == year:
        following = moment + timedelta(days=1)
        if moment.astimezone(zone).utcoffset() != following.astimezone(zone).utcoffset():
            hour = moment
            while hour.astimezone(zone).utcoffset() == moment.astimezone(zone).utcoffset():
                hour += timedelta(hours=1)
            found.append(hour)
        moment = following
    return found or [datetime(year, 1, 1, tzinfo=UTC)]


@settings(max_examples=80, deadline=None)
@given(zone=st.sampled_from(ZONES), year=st.integers(2005, 2035), change=st.integers(0, 3),
       minutes=st.integers(-36 * 12, 36 * 12).map(lambda fifths: 5 * fifths),
       hour=st.integers(0, 23), minute=st.sampled_from(range(0, 60, 5)))
def test_until_a_wall_time_matches_a_naive_walk_of_the_clock(zone, year, change, minutes, hour, minute):
    """Around a change of clocks (within 36 hours of one), where it matters."""
    changes = _changes_of_clocks(ZoneInfo(zone), year)
    now = changes[change % len(changes)] + timedelta(minutes=minutes)
    local = now.astimezone(ZoneInfo(zone))
    until = hold_annotations(until_text=f"{hour:02d}:{minute:02d}", now=local)["scaler.io/hold-up-until"]
    assert until == rfc3339(_naive_next_wall_time(local, hour, minute))


def test_until_and_for_are_bounded_alike():
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    year = timedelta(days=366)
    assert hold_annotations(for_text="366d", now=now)["scaler.io/hold-up-until"] == rfc3339(now + year)
    assert hold_annotations(until_text=rfc3339(now + year), now=now)["scaler.io/hold-up-until"] == rfc3339(now + year)
    with pytest.raises(HoldError, match=r"^--for '367d' is longer than a year \(31622400s\)"):
        hold_annotations(for_text="367d", now=now)
    with pytest.raises(HoldError, match=r"^--until '2027-06-02T12:00:01Z' is more than a year ahead \(31622400s\), "
                                        "the longest hold scaler accepts$"):
        hold_annotations(until_text="2027-06-02T12:00:01Z", now=now)
    with pytest.raises(HoldError, match=r"^--for 'soon' is not a duration"):
        hold_annotations(for_text="soon", now=now)


@pytest.mark.parametrize(("tz", "key"), [
    ("Europe/Berlin", "Europe/Berlin"), (":America/New_York", "America/New_York"),
    ("/usr/share/zoneinfo/Asia/Tokyo", "/usr/share/zoneinfo/Asia/Tokyo"),
])
def test_the_local_zone_is_read_as_iana_rules(monkeypatch, tz, key):
    monkeypatch.setenv("TZ", tz)
    zone = local_zone()
    assert isinstance(zone, ZoneInfo) and zone.key == key


def test_a_local_zone_without_iana_rules_is_its_offset_now(monkeypatch):
    monkeypatch.setenv("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")  # a POSIX rule: no IANA name
    zone = local_zone()
    assert not isinstance(zone, ZoneInfo) and datetime.now(zone).utcoffset() is not None
