"""Leader election on a coordination.k8s.io Lease, through the kubernetes
client's LeaderElection and LeaseLock.

The client calls its "stopped leading" callback only after the renew deadline
has passed with no renewal. We act only while the last successful renewal is
younger than the renew deadline, so a leader cut off from the API server
stops writing at once rather than when the callback comes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

from scaler.cluster.kube import Kube, KubeError, NotFound, Resource
from scaler.decide.times import parse_time

log = structlog.get_logger("scaler.run.leading")
LEASES = Resource("coordination.k8s.io", "v1", "leases")


class _Lock(LeaseLock):
    """The client's LeaseLock, knowing which version of the Lease this process
    wrote last: a Lease held under this identity that this process did not
    write (another replica given the same identity, this pod's predecessor
    killed a moment ago, or someone who took it while we were frozen) is
    another holder's, taken only once it lapses, never renewed as our own."""

    def __init__(self, name: str, namespace: str, identity: str, leadership: Leadership) -> None:
        super().__init__(name, namespace, identity)
        self._leadership = leadership

    def get(self, name, namespace):
        found, record = super().get(name, namespace)
        lease = self.lease_reference
        if found and record.holder_identity == self.identity \
                and not self._leadership.wrote(lease.metadata.resource_version, lease.spec.renew_time):
            if not self._leadership.twin:
                log.warning("the Lease is held under this replica's identity by another process (one with the "
                            "same identity, or this one's predecessor): waiting for it to lapse",
                            identity=self.identity, lease=f"{namespace}/{name}")
            self._leadership.twin = True
            record.holder_identity = f"{self.identity} (another process)"
        return found, record

    def create(self, name, namespace, election_record):
        self._leadership.sent = self.time_str_to_iso(election_record.renew_time)  # its answer may be lost
        created = super().create(name, namespace, election_record)
        if created:
            self._leadership.written = self.lease_reference.metadata.resource_version
        return created

    def update(self, name, namespace, updated_record):
        """The client's update, keeping the version it wrote (the client drops the answer)."""
        if self.lease_reference is None:
            return False
        self.lease_reference.spec = self.get_lease_spec(updated_record, self.lease_reference.spec)
        self._leadership.sent = self.lease_reference.spec.renew_time  # its answer may be lost
        try:
            self.lease_reference = self.api_instance.replace_namespaced_lease(
                name=name, namespace=namespace, body=self.lease_reference)
        except ApiException as error:
            log.info("lease not updated", error=f"{error.status} {error.reason}")
            return False
        self._leadership.written = self.lease_reference.metadata.resource_version
        self._leadership.twin = False
        return True


class _Election(leaderelection.LeaderElection):
    """The client's election, stopped for good once `leadership` stops: its
    loop would otherwise re-acquire the Lease we just handed back."""

    def __init__(self, config, leadership: Leadership) -> None:
        super().__init__(config)
        self._leadership = leadership

    def try_acquire_or_renew(self):
        with self._leadership.lease_lock:
            if self._leadership.stopping.is_set():
                return False
            # Counted from before the request: the Lease's renewTime is about
            # when it was sent, and a standby's clock runs from the renewal it saw.
            sent_at = time.monotonic()
            try:
                succeeded = super().try_acquire_or_renew()
            except Exception as error:  # noqa: BLE001 - an API hiccup is a failed renewal, not a crash
                log.warning("lease renewal failed", error=f"{type(error).__name__}: {error}")
                return False
        if succeeded:
            self._leadership.renewed(sent_at)
        return succeeded


class Leadership:
    """Who may act. Without election, always this process."""

    def __init__(self, kube: Kube, *, enabled: bool, name: str, namespace: str, identity: str,
                 lease_duration_seconds: float, renew_deadline_seconds: float, retry_period_seconds: float,
                 on_change: Callable[[bool], None] = lambda leading: None) -> None:
        self.kube = kube
        self.enabled = enabled
        self.name, self.namespace, self.identity = name, namespace, identity
        self.lease_duration_seconds = lease_duration_seconds
        self.renew_deadline_seconds = renew_deadline_seconds
        self.retry_period_seconds = retry_period_seconds
        self.on_change = on_change
        self._leading = False
        #: Counts the times this process became leader: what was checked
        #: during one term (the policies in force) is unchecked in the next.
        self.term = 0
        self._last_renewal = 0.0
        self.stopping = threading.Event()
        #: Held by a renewal and by the release, so neither sees the Lease half-written by the other.
        self.lease_lock = threading.Lock()
        #: The Lease's resourceVersion as this process last wrote it, and the renewTime it last
        #: sent (a write whose answer was lost is still ours); whether another process holds
        #: it under this identity (said once).
        self.written: str | None = None
        self.sent: datetime | None = None
        self.twin = False

    def wrote(self, resource_version: str | None, renew_time: datetime | None) -> bool:
        """Whether the Lease as read is as this process wrote it: the version its answer
        gave, or the renewal it sent (to the microsecond: no other process sends the same)."""
        return (resource_version is not None and resource_version == self.written) \
            or (renew_time is not None and renew_time == self.sent)

    def start(self) -> None:
        if not self.enabled:
            self._set(True)
            return
        threading.Thread(target=self._campaign, name="leader-election", daemon=True).start()

    def holds(self) -> bool:
        """Holds the Lease now: the last renewal was sent less than the renew
        deadline ago (a standby takes over only after the longer lease
        duration). A process stopped past that (SIGSTOP, a long GC, a frozen
        VM) finds it false the moment it runs again."""
        if not self.enabled:
            return True
        return self._leading and time.monotonic() - self._last_renewal < self.renew_deadline_seconds

    def is_leading(self) -> bool:
        """Holds the Lease and is not stopping: may start a write."""
        return self.holds() and not self.stopping.is_set()

    def _set(self, leading: bool) -> None:
        if leading != self._leading:
            if leading:
                self.term += 1  # before it leads: no caller sees the new term's leading with the old term
            self._leading = leading
            log.info("leadership changed", leading=leading, identity=self.identity,
                     lease=f"{self.namespace}/{self.name}")
            self.on_change(leading)

    def renewed(self, sent_at: float) -> None:
        self._last_renewal = max(self._last_renewal, sent_at)

    def _campaign(self) -> None:
        while not self.stopping.is_set():
            lock = _Lock(self.name, self.namespace, self.identity, self)
            lock.api_instance = k8s.CoordinationV1Api(self.kube.api_client)
            config = electionconfig.Config(
                lock, lease_duration=self.lease_duration_seconds, renew_deadline=self.renew_deadline_seconds,
                retry_period=self.retry_period_seconds,
                onstarted_leading=lambda: self._set(True), onstopped_leading=lambda: self._set(False))
            _Election(config, self).run()
            self._set(False)

    def release(self) -> None:
        """Stop acting, and hand the Lease back if we hold it, so a standby
        takes over at once instead of after the lease duration. After this no
        renewal touches the Lease again."""
        self.stopping.set()
        if not self.enabled:
            return
        self._set(False)
        with self.lease_lock:  # a renewal in flight finishes first; none starts after
            try:
                lease = self.kube.get(LEASES, self.namespace, self.name)
                # Ours only as this process last wrote it: one held under our identity by
                # another process (a twin, or one that took it while we were frozen) is theirs.
                spec = lease.get("spec") or {}
                if spec.get("holderIdentity") != self.identity \
                        or not self.wrote(lease["metadata"].get("resourceVersion"), parse_time(spec.get("renewTime"))):
                    return
                now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                self.kube.patch(LEASES, self.namespace, self.name, {
                    "metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
                    "spec": {"holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": now}})
                log.info("lease released", lease=f"{self.namespace}/{self.name}")
            except NotFound:
                pass
            except KubeError as error:  # a 409 too: nobody else may write it while we hold it
                log.warning("could not release the lease", lease=f"{self.namespace}/{self.name}", error=str(error))
