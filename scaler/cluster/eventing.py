"""Events posted in the background, each as soon as its write has landed,
fenced, retried while the API server refuses them for a while, and flushed at
shutdown (cluster/actions.py names them after the action they record)."""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import structlog

from scaler.cluster.actions import EVENTS
from scaler.cluster.kube import Conflict, Fence, Fenced, Kube, KubeError

log = structlog.get_logger("scaler")


class EventSink:
    """Posts Events from a few background threads as soon as each write has
    landed, so a batch of writes never waits for its Events and a kill loses
    at most what was in flight (the next daemon posts those: actions.owed).
    `fence` is asked before each post: only the Lease holder posts. An Event
    whose name is already taken was posted by someone else (the daemon that
    acted, or the next one recovering it): counted as posted. One refused
    for a while (throttled past its Retry-Afters, a server error, the server
    away) is tried again `retries` times, `retry_seconds` later and doubling:
    its write has landed, and a later action on the object would leave it
    owed by no record. `flush` sends the waiting retries at once and waits
    for every Event still queued (shutdown).

    Events stay off a batch's critical path (an Event costs the API server
    about what a PATCH does): while writes are in flight (`quiet`, the
    actor's, is clear) an Event waits for them to end, up to `hold_seconds`
    after it was queued; past that, while they last, Events go out one at a
    time; then at full pace. Without `quiet`, no write is ever in flight.
    Flushed at shutdown, an Event refused is not retried: its record is on
    the object, and the Lease must not wait for the API server to take it.

    An Event given up on while it may still be posted later (fenced, or
    refused for a while past the retries) sets `owed`: its record stays on
    the object, and the daemon looks for owed Events again. A write about to
    replace the record an Event still queued is owed by asks for it `now`:
    once the record is gone, a kill would leave that Event owed by nothing."""

    #: How long an Event waits for the writes in flight to end before it goes out anyway (one at a
    #: time). Long enough for a batch of thousands (3,000 writes take 11-20 s on two cores): an Event
    #: sent during the batch takes the API server's time from the writes (with the API server on a
    #: core of its own, a 5 s hold left 3,000 writes at 0.74 of the ceiling, 60 s at 0.90). A kill
    #: loses none of them: each is owed by its record on the object (actions.owed).
    hold_seconds = 60.0

    def __init__(self, kube: Kube, *, workers: int = 4, fence: Fence | None = None,
                 quiet: threading.Event | None = None, retries: int = 5, retry_seconds: float = 2.0) -> None:
        self.kube = kube
        self.fence = fence
        self.quiet = quiet
        #: Set when an Event is left unposted that a later look for owed Events may post.
        self.owed = threading.Event()
        self._hurry = threading.Event()  # set by flush: nothing waits any more
        self._last_try = threading.Event()  # set by a flush at shutdown: nothing is retried any more
        self._lane = threading.Lock()  # the one Event posted at a time while writes are in flight
        self.retries, self.retry_seconds = retries, retry_seconds
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="event")
        self._pending = 0  # queued, being posted, or waiting to be retried
        self._idle = threading.Condition()
        #: [body, attempt, hold until]: taken in order by at most `workers` drainers,
        #: so queueing an Event costs a write no thread hand-off of its own.
        self._queue: deque[list] = deque()
        #: The entries of `_queue` by Event (namespace, name), for `now`; one it took is emptied.
        self._queued: dict[tuple[str, str], list] = {}
        self._drainers = 0
        self._waiting: dict[threading.Timer, tuple[dict, int]] = {}
        #: Events posted, found already posted, left to the next leader, refused, and retries sent.
        self.counts = {"posted": 0, "already": 0, "fenced": 0, "failed": 0, "retried": 0}

    def post(self, body: dict) -> None:
        self._enqueue(body, 0, time.monotonic() + self.hold_seconds, new=True)

    def _enqueue(self, body: dict, attempt: int, until: float, *, new: bool = False) -> None:
        with self._idle:
            self._pending += new
            entry = [body, attempt, until]
            self._queue.append(entry)
            self._queued[_key(body)] = entry
            if self._drainers >= self.workers:
                return
            self._drainers += 1
        self._pool.submit(self._drain)

    def _drain(self) -> None:
        while True:
            with self._idle:
                if not self._queue:
                    self._drainers -= 1
                    return
                entry = self._queue.popleft()
                if not entry:
                    continue  # taken by `now`
                body, attempt, until = entry
            try:
                self._post(body, attempt, until, entry)
            except Exception:  # a defect must not stall every Event queued behind it
                log.exception("event not recorded", event_reason=body.get("reason"))
                self._done("failed")

    def now(self, namespace: str, name: str, owed: dict | None = None) -> None:
        """Post the Event `name` at once (fenced as any post) if it is still queued or waiting to be
        retried, else `owed` if given (its body: an Event that may never have been posted; one that was
        is refused as a name taken): a write is about to replace the record on the object it is owed by."""
        with self._idle:
            entry = self._queued.pop((namespace, name), None)
            timer = None if entry else next((t for t, (b, _) in self._waiting.items()
                                             if _key(b) == (namespace, name)), None)
            if entry:
                body, attempt, _ = entry
                entry.clear()
            elif timer is not None:
                timer.cancel()
                body, attempt = self._waiting.pop(timer)
            elif owed is not None:
                body, attempt = owed, self.retries  # not retried: its record is about to go
                self._pending += 1
            else:
                return
        self._post(body, attempt)

    def _wait_for_quiet(self, until: float, entry: list | None = None) -> None:
        """Until no write is in flight, `until` (monotonic), a flush, or `now` took `entry`."""
        while self.quiet is not None and not self._hurry.is_set() and (left := until - time.monotonic()) > 0 \
                and (entry is None or entry):
            if self.quiet.wait(min(left, 0.25)):
                return

    def _claimed(self, entry: list) -> bool:
        """Whether the drainer holding `entry` still posts it: not if `now` took it meanwhile."""
        with self._idle:
            if entry and self._queued.get(_key(entry[0])) is entry:
                del self._queued[_key(entry[0])]
            return bool(entry)

    def _post(self, body: dict, attempt: int, until: float = 0.0, entry: list | None = None) -> None:
        outcome = "posted"
        try:
            self._wait_for_quiet(until, entry)
            if entry is not None and not self._claimed(entry):
                return  # `now` posts it
            if self.quiet is not None and not self.quiet.is_set():  # writes still in flight
                with self._lane:
                    self.kube.create(EVENTS, body["metadata"]["namespace"], body, fence=self.fence)
            else:
                self.kube.create(EVENTS, body["metadata"]["namespace"], body, fence=self.fence)
        except Fenced:
            outcome = "fenced"  # not ours to post any more: the next leader finds it owed
            self.owed.set()  # or this one, if the renewal was only late
        except Conflict:
            outcome = "already"
        except KubeError as error:
            passing = error.status is None or error.status == 429 or error.status >= 500
            if attempt < self.retries and passing and not self._last_try.is_set():
                self._later(body, attempt + 1)
                return  # still pending
            outcome = "failed"
            if passing:
                self.owed.set()
            involved = body["involvedObject"]
            log.warning("event not recorded", namespace=involved["namespace"], workload=involved["name"],
                        kind=involved["kind"], event_reason=body["reason"], error=str(error))
        self._done(outcome)

    def _done(self, outcome: str) -> None:
        with self._idle:
            self.counts[outcome] += 1
            self._pending -= 1
            self._idle.notify_all()

    def _later(self, body: dict, attempt: int) -> None:
        def send() -> None:
            with self._idle:
                if self._waiting.pop(timer, None) is None:
                    return  # flush sent it already
                self.counts["retried"] += 1
            self._enqueue(body, attempt, 0.0)
        timer = threading.Timer(self.retry_seconds * 2 ** (attempt - 1), send)
        timer.daemon = True
        with self._idle:
            self._waiting[timer] = (body, attempt)
        timer.start()

    def flush(self, *, timeout_seconds: float, retrying: bool = True) -> int:
        """Send the waiting retries now, and wait until every queued Event is
        posted (or, not `retrying`, as at shutdown, given up on once refused:
        left owed); the number still pending."""
        deadline = time.monotonic() + timeout_seconds
        if not retrying:
            self._last_try.set()
        self._hurry.set()
        with self._idle:
            waiting, self._waiting = self._waiting, {}
            self.counts["retried"] += len(waiting)
        for timer, (body, attempt) in waiting.items():
            timer.cancel()
            self._enqueue(body, attempt, 0.0)
        with self._idle:
            while self._pending and (left := deadline - time.monotonic()) > 0:
                self._idle.wait(left)
            return self._pending


def _key(body: dict) -> tuple[str, str]:
    """An Event's (namespace, name)."""
    meta = body.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")
