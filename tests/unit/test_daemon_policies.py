"""The daemon in process (tests/unit/running.py) reloading its policies, from
files or from a ConfigMap through the API: a broken edit or a deleted
ConfigMap keeps the last good set in force and says so, and a new leader
reads the policies in its own term before it acts. Moved from the cluster
tier; elections over a real API server stay there (tests/cluster/test_daemon.py)."""

from __future__ import annotations

import textwrap

from tests.fakes.bodies import all_day, deployment, namespace
from tests.unit.running import Running, save, settings, wait_until

DEPLOYMENTS = "deployments.apps"
LEASES = "leases.coordination.k8s.io"


def _replicas(fake, name: str) -> int:
    return fake.get(DEPLOYMENTS, "llm", name)["spec"]["replicas"]


def _gpu(fake, name: str, replicas: int = 2, labels: dict | None = None) -> None:
    namespace(fake, "llm")
    fake.create(DEPLOYMENTS, deployment(name, replicas=replicas, gpus=0, labels=labels or {"tier": "gpu"}),
                namespace="llm")


#: Leader election on a short Lease, the policies from the ConfigMap `llm/policies`.
ELECTION = {"policy_configmap": "llm/policies", "leader_election": True, "lease_name": "scaler-llm",
            "lease_namespace": "llm", "lease_duration_seconds": 3, "lease_renew_deadline_seconds": 2,
            "lease_retry_period_seconds": 1}


def _configmap(fake, **texts: str) -> None:
    """The ConfigMap llm/policies holding these keys (created, or replaced)."""
    namespace(fake, "llm")
    data = {key.replace("_", "-") + ".yaml": text for key, text in texts.items()}
    try:
        fake.write("configmaps", "llm", "policies", lambda obj: {**obj, "data": data}, manager="kubectl")
    except Exception:  # noqa: BLE001 - not there yet
        fake.create("configmaps", {"metadata": {"name": "policies"}, "data": data}, namespace="llm")


def test_a_broken_policy_file_is_reported_and_the_old_policies_keep_working(fake, prometheus, log, tmp_path):
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "nights.yaml").write_text(all_day())
    namespace(fake, "llm")
    with Running.start(settings(fake, prometheus.url, tmp_path, policies=directory)) as daemon:
        save(directory / "broken.yaml", textwrap.dedent("""
            policies:
              - name: broken
                schedule:
                  timezone: Mars/Olympus
                  windows: [{mode: down, when: "Mon-Fri 08:00-20:00"}]
            """))
        wait_until(lambda: daemon.metric("scaler_policy_reload_errors_total") == 1
                   and daemon.metric("scaler_policy_files_valid") == 0)
        rejected = log.wait("policy file rejected; the last good policies stay in force")
        assert any("broken.yaml:5: schedule.timezone: unknown time zone 'Mars/Olympus'" in line["problem"]
                   for line in rejected), rejected
        assert daemon.metric("scaler_policies_loaded") == 1
        _gpu(fake, "late")
        wait_until(lambda: _replicas(fake, "late") == 0)
        assert daemon.readyz()[0] == 200
        (directory / "broken.yaml").unlink()  # fixed: the gauge the alert watches recovers
        wait_until(lambda: daemon.metric("scaler_policy_files_valid") == 1)
        # Edited again, keep-up: everything paused comes back, to its count.
        save(directory / "nights.yaml", all_day(mode="up"))
        wait_until(lambda: _replicas(fake, "late") == 2)
    assert daemon.code == [0]


def test_a_broken_edit_or_a_deleted_configmap_keeps_the_last_good_policies(fake, prometheus, log, tmp_path):
    _configmap(fake, nights=all_day())
    with Running.start(settings(fake, prometheus.url, tmp_path, policy_configmap="llm/policies")) as daemon:
        assert log.wait("starting")[0]["source"] == "ConfigMap llm/policies"
        _configmap(fake, nights="policies:\n  - name: nights\n    targets: {namespaces: [x]}\n    idle: 3\n")
        rejected = log.wait("policy file rejected; the last good policies stay in force")
        assert rejected[0]["problem"].startswith("ConfigMap llm/policies, nights.yaml:"), rejected[0]
        wait_until(lambda: daemon.metric("scaler_policy_files_valid") == 0)
        _gpu(fake, "late")
        wait_until(lambda: _replicas(fake, "late") == 0)  # the last good set acts

        fake.delete("configmaps", "llm", "policies")
        unread = log.wait("cannot read the policies; the last good ones stay in force, and a new leader waits "
                          "for them")
        assert "not found" in unread[0]["error"] and "configmaps/policies" in unread[0]["error"], unread[0]
        _gpu(fake, "later", replicas=1)
        wait_until(lambda: _replicas(fake, "later") == 0)
        assert daemon.readyz()[0] == 200
    assert daemon.code == [0]


def _holder(fake) -> str | None:
    try:
        return fake.get(LEASES, "llm", "scaler-llm")["spec"].get("holderIdentity") or None
    except Exception:  # noqa: BLE001 - no Lease yet
        return None


def _reads_by(fake, identity: str) -> int:
    """How often this replica read the policies' ConfigMap."""
    return sum(1 for r in list(fake.requests) if r.method == "GET" and r.path.endswith("/configmaps/policies")
               and r.agent.startswith(f"scaler/{identity}"))


def _scaled_by(fake, identity: str) -> list[str]:
    """The workloads this replica resized (its requests carry its identity):
    PATCHes that set /spec/replicas, not its bookkeeping (a Ready record of a
    resume the last leader made and did not see finish is the new one's)."""
    return [r.path.rsplit("/", 1)[1] for r in list(fake.requests)
            if r.method == "PATCH" and "/deployments/" in r.path and r.agent.startswith(f"scaler/{identity}")
            and isinstance(r.body, list)
            and any(op["op"] != "test" and op["path"] == "/spec/replicas" for op in r.body)]


def test_a_new_leader_reads_the_configmap_before_it_acts(fake, prometheus, log, tmp_path):
    """The double action the real-node failover test caught: a standby still
    holding the keep-down version took over and paused what the leader had
    just resumed. Here the standby reads the ConfigMap at its start and then
    not for ten minutes: at the takeover it holds the keep-down version."""
    _gpu(fake, "llm", replicas=3)
    _configmap(fake, nights=all_day())
    one = Running.start(settings(fake, prometheus.url, tmp_path, name="one", **ELECTION))
    try:
        wait_until(lambda: _holder(fake) == "one")
        wait_until(lambda: _replicas(fake, "llm") == 0)
        two = Running.start(settings(fake, prometheus.url, tmp_path, name="two", **ELECTION,
                                     policy_reload_interval_seconds=600))
        wait_until(lambda: _reads_by(fake, "two"))  # its first reload, at its start: the keep-down version
        # keep-up for llm, and a second policy the old version does not have.
        _configmap(fake, nights=all_day(mode="up"), batch=all_day("batch", selector="app=batch"))
        wait_until(lambda: _replicas(fake, "llm") == 3)
        wait_until(lambda: len(fake.events("llm", "llm", "Resumed")) == 1)
        # The new leader's read of the policies is slow: its reconciles come first, and must wait for it.
        fake.fail(method="GET", path="/configmaps/policies$", agent="scaler/two", delay_seconds=1, times=1)
    finally:
        assert one.stop() == 0  # hands the Lease back: the standby takes it at its next try
    with two:
        wait_until(lambda: _holder(fake) == "two")
        _gpu(fake, "batch", labels={"app": "batch"})
        # Only the new version pauses batch: once it has, two acts on that version.
        wait_until(lambda: _replicas(fake, "batch") == 0)
        assert log.lines("policies reloaded", lambda line: "batch" in line["names"])
        two.let_reconciles_pass(2)
        assert _replicas(fake, "llm") == 3
        assert len(fake.events("llm", "llm", "ScaledToZero")) == 1, "the new leader undid the last one's resume"
        assert _scaled_by(fake, "two") == ["batch"]
    assert two.code == [0]


def test_a_term_won_while_the_policies_are_read_reads_them_again_and_acts(fake, prometheus, tmp_path):
    """The race CI caught: the first reload was still reading when the Lease
    was won, the new leader's own reload was skipped (one instance at a time),
    and the leader did nothing until the next reload interval."""
    _gpu(fake, "llm", replicas=3)
    _configmap(fake, nights=all_day())
    fake.create(LEASES, {"metadata": {"name": "scaler-llm"}, "spec": {
        "holderIdentity": "gone", "leaseDurationSeconds": 1, "renewTime": "2000-01-01T00:00:00.000000Z"}},
        namespace="llm")
    read_before_leading = []

    def slow_read(request) -> None:
        """The daemon's first read of the policies ends only after it leads."""
        if request.agent.startswith("scaler/one") and not read_before_leading:
            read_before_leading.append(True)
            wait_until(lambda: _holder(fake) == "one")
    fake.before("GET", "/configmaps/policies$", slow_read)
    election = {**ELECTION, "policy_reload_interval_seconds": 600}
    with Running.start(settings(fake, prometheus.url, tmp_path, name="one", **election)) as one:
        wait_until(lambda: _replicas(fake, "llm") == 0)
    assert read_before_leading and one.code == [0]


def test_two_daemons_with_one_identity_never_lead_at_once(fake, prometheus, log, tmp_path):
    """SCALER_IDENTITY set alike on two replicas (or two `scaler run` on one
    host, both named after it): the second finds the Lease held under its own
    name, but not written by it, so it waits as a standby instead of renewing
    it as its own; it takes over once the first hands the Lease back."""
    _gpu(fake, "llm", replicas=3)
    _configmap(fake, nights=all_day())
    first = Running.start(settings(fake, prometheus.url, tmp_path, name="same", **ELECTION))
    try:
        wait_until(lambda: first.metric("scaler_leader") == 1)
        second = Running.start(settings(fake, prometheus.url, tmp_path, name="same", **ELECTION))
        for _ in range(30):  # several lease durations
            assert (first.metric("scaler_leader"), second.metric("scaler_leader")) == (1, 0)
            first.daemon.stopping.wait(0.2)
        assert log.lines("the Lease is held under this replica's identity by another process (one with the same "
                         "identity, or this one's predecessor): waiting for it to lapse")
    finally:
        assert first.stop() == 0
    with second:
        wait_until(lambda: second.metric("scaler_leader") == 1)
    assert second.code == [0]


def test_a_twin_stopped_leaves_the_lease_to_the_one_holding_it(fake, prometheus, log, tmp_path):
    """Of two replicas given one identity, the standby stopping (a rolling
    update, a scale-down) must not hand back the Lease the other holds: it
    never wrote it. Handed back, the leader lost it for a lease duration
    and nobody acted meanwhile."""
    _gpu(fake, "llm", replicas=3)
    _configmap(fake, nights=all_day())
    with Running.start(settings(fake, prometheus.url, tmp_path, name="same", **ELECTION)) as first:
        wait_until(lambda: first.metric("scaler_leader") == 1)
        second = Running.start(settings(fake, prometheus.url, tmp_path, name="same", **ELECTION))
        first.daemon.stopping.wait(1.5)  # the standby has read the Lease
        acquired = fake.get(LEASES, "llm", "scaler-llm")["spec"]["acquireTime"]
        assert second.stop() == 0
        for _ in range(15):  # several lease durations: renewed by the first, never handed back and taken anew
            lease = fake.get(LEASES, "llm", "scaler-llm")["spec"]
            assert (lease["holderIdentity"], lease["acquireTime"], first.metric("scaler_leader")) == \
                ("same", acquired, 1)
            first.daemon.stopping.wait(0.2)
    assert len(log.lines("lease released")) == 1  # the first's own, at its stop; none by the twin


def test_a_renewal_whose_answer_was_lost_is_still_the_leaders_own(fake, prometheus, log, tmp_path):
    """The Lease renewed, but the answer lost (a connection reset): the next
    read finds a version the process was never told of. It is still its own
    renewal, not a twin's: the lone replica goes on leading, and says
    nothing of another process."""
    _gpu(fake, "llm", replicas=3)
    _configmap(fake, nights=all_day())
    with Running.start(settings(fake, prometheus.url, tmp_path, name="one", **ELECTION)) as one:
        wait_until(lambda: one.metric("scaler_leader") == 1)
        lost = fake.fail(method="PUT", path="/leases/", after=True, reset=True)
        for _ in range(25):  # several lease durations
            assert one.metric("scaler_leader") == 1
            one.daemon.stopping.wait(0.2)
        assert lost.hits == 1
    assert not log.lines("the Lease is held under this replica's identity by another process (one with the same "
                         "identity, or this one's predecessor): waiting for it to lapse")
