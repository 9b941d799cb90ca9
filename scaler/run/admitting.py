"""Who may push a wake, and how much: the push wake's gates (run/waking.py).

Two ways in, one chosen by a setting:
- `token`: the caller's bearer token is a Kubernetes token, checked with a
  TokenReview (for the audiences the setting names: by default `scaler`, so
  a token minted for the API server is refused here and one minted for
  scaler is useless against the API server), and the caller needs a verb
  (`patch` by default) on the workload's `/scale` subresource, checked with a
  SubjectAccessReview. Positive answers are reused for `cache_seconds` (and
  at most `Remembered.SIZE` of each are kept); a refusal is never reused, so
  a permission granted takes effect at once and a token revoked stops
  working within `cache_seconds`.
- `secret`: the bearer token is compared, in constant time, with a shared
  secret read from a file (re-read when the file changes: a mounted Secret
  that is rotated). Whoever holds it may wake anything scaler manages.

A caller's budget (`Budgets`, a token bucket per identity) counts the work
it makes the API server do: each permission check that is not answered
from memory, and each write, takes one token (a request answered from the
caches, "already up" or "held", costs none, nor does one joining a wake in
flight).
TokenReviews of tokens not seen before come from one bucket for everyone
(`REVIEWS_PER_SECOND`), so a flood of made-up tokens cannot turn into a
flood of requests to the API server. Concurrent requests asking the same
question share one answer (`Flights`).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from scaler.cluster.kube import Kube, KubeError
from scaler.cluster.reviews import Access, Identity, NotAuthenticated, Verdict, review_access, review_token

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: TokenReviews of tokens not in memory, per second, all callers together (and the burst above it).
REVIEWS_PER_SECOND, REVIEWS_BURST = 100.0, 200
#: A shared secret shorter than this is refused at start: it could be guessed.
MIN_SECRET_LENGTH = 16
#: The identity of whoever holds the shared secret.
SECRET_HOLDER = Identity("shared-secret")


@dataclass
class Answer:
    """What the endpoint says: an HTTP status, a JSON body, extra headers."""

    status: int
    body: dict
    headers: dict[str, str] = field(default_factory=dict)


class Refusal(Exception):
    """A request answered before any decision (401, 403, 429, 503, ...)."""

    def __init__(self, status: int, result: str, reason: str, *, headers: dict[str, str] | None = None,
                 **fields: object) -> None:
        super().__init__(reason)
        self.answer = Answer(status, {"result": result, "reason": reason, **fields}, headers or {})


class Bucket:
    """A token bucket: `rate` tokens a second, at most `burst` saved up."""

    def __init__(self, *, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.last = float(burst), now

    def take(self, now: float) -> float:
        """0 if a token was taken; else how many seconds until one will be there."""
        self.tokens = min(float(self.burst), self.tokens + max(now - self.last, 0.0) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate

    def full(self, now: float) -> bool:
        return self.tokens + max(now - self.last, 0.0) * self.rate >= self.burst


def rate_limited(wait_seconds: float, who: str) -> Refusal:
    retry = max(1, int(wait_seconds + 0.999))
    return Refusal(429, "rate-limited", f"too many wake requests from {who}; retry in {retry}s",
                   headers={"Retry-After": str(retry)})


class Budgets:
    """One bucket per caller. Callers whose bucket is full again are
    forgotten when more than `size` are kept."""

    def __init__(self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 size: int = 10_000) -> None:
        self.rate, self.burst, self.clock, self.size = rate, burst, clock, size
        self._buckets: dict[str, Bucket] = {}
        self._lock = threading.Lock()

    def charge(self, who: str) -> None:
        """Take one token from `who`'s bucket, or raise a 429 Refusal."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(who)
            if bucket is None:
                if len(self._buckets) >= self.size:
                    self._buckets = {key: b for key, b in self._buckets.items() if not b.full(now)}
                bucket = self._buckets[who] = Bucket(rate=self.rate, burst=self.burst, now=now)
            wait = bucket.take(now)
        if wait:
            raise rate_limited(wait, who)


class Remembered(Generic[K, V]):
    """Answers kept for `seconds`; at most SIZE (when full, the expired go
    first, then everything)."""

    SIZE = 10_000

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.clock = seconds, clock
        self._items: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            found = self._items.get(key)
        return found[1] if found is not None and found[0] > self.clock() else None

    def put(self, key: K, value: V) -> None:
        if self.seconds <= 0:
            return
        now = self.clock()
        with self._lock:
            if len(self._items) >= self.SIZE:
                self._items = {k: item for k, item in self._items.items() if item[0] > now}
                if len(self._items) >= self.SIZE:
                    self._items.clear()
            self._items[key] = (now + self.seconds, value)


class Flights(Generic[K, V]):
    """Concurrent calls for one key share one piece of work: the first runs
    it, the others wait for its value (or its exception)."""

    def __init__(self, *, wait_seconds: float = 60.0) -> None:
        self.wait_seconds = wait_seconds
        #: Calls that shared another's work, since the start.
        self.shared = 0
        self._running: dict[K, Future] = {}
        self._lock = threading.Lock()

    def run(self, key: K, work: Callable[[], V], *, admit: Callable[[], None] = lambda: None) -> tuple[V, bool]:
        """(the value, whether it was shared from a call already running).
        `admit()` is asked only before new work starts (it may raise)."""
        with self._lock:
            future = self._running.get(key)
            if future is None:
                admit()
                future = self._running[key] = Future()
                mine = True
            else:
                mine = False
                self.shared += 1
        if not mine:
            try:
                return future.result(timeout=self.wait_seconds), True
            except TimeoutError:
                raise Refusal(503, "not-ready", "the wake this request joined is still running; ask again") \
                    from None
        try:
            value = work()
        except BaseException as error:
            future.set_exception(error)
            raise
        finally:
            with self._lock:
                del self._running[key]
        future.set_result(value)
        return value, False


def bearer(header: str | None) -> str:
    """The token of an `Authorization: Bearer TOKEN` header, or a 401."""
    scheme, _, token = (header or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Refusal(401, "unauthenticated", "no bearer token (send Authorization: Bearer TOKEN)",
                      headers={"WWW-Authenticate": 'Bearer realm="scaler"'})
    return token


def _unauthenticated(why: str) -> Refusal:
    return Refusal(401, "unauthenticated", why, headers={"WWW-Authenticate": 'Bearer realm="scaler"'})


class TokenGate:
    """Kubernetes tokens: TokenReview, then a SubjectAccessReview per workload."""

    def __init__(self, kube: Kube, *, audiences: tuple[str, ...], verb: str, cache_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kube, self.audiences, self.verb = kube, audiences, verb
        self.clock = clock
        self._identities: Remembered[str, Identity] = Remembered(cache_seconds, clock=clock)
        self._verdicts: Remembered[tuple[Identity, Access], Verdict] = Remembered(cache_seconds, clock=clock)
        self._reviews = Bucket(rate=REVIEWS_PER_SECOND, burst=REVIEWS_BURST, now=clock())
        self._reviews_lock = threading.Lock()
        self._flights: Flights[tuple, object] = Flights()

    def authenticate(self, header: str | None) -> Identity:
        token = bearer(header)
        key = hashlib.sha256(token.encode()).hexdigest()  # the cache keeps no token
        known = self._identities.get(key)
        if known is not None:
            return known

        def review() -> Identity:
            try:
                identity = review_token(self.kube, token, audiences=self.audiences)
            except NotAuthenticated as why:
                raise _unauthenticated(f"the token was not accepted: {why}") from None
            except KubeError as error:
                raise Refusal(503, "unavailable", f"cannot check the token: {error}") from None
            self._identities.put(key, identity)
            return identity
        identity, _ = self._flights.run(("token", key), review, admit=self._admit_review)
        assert isinstance(identity, Identity)
        return identity

    def _admit_review(self) -> None:
        with self._reviews_lock:
            wait = self._reviews.take(self.clock())
        if wait:
            raise rate_limited(wait, "unknown tokens")

    def access(self, *, group: str, resource: str, namespace: str, name: str = "") -> Access:
        """What a caller needs to wake a workload: the verb on its /scale subresource."""
        return Access(self.verb, group, resource, namespace, "scale", name)

    def authorize(self, identity: Identity, access: Access, *, charge: Callable[[], None]) -> None:
        """Return if `identity` may make `access`'s request, else a 403 Refusal.
        `charge()` is asked before the API server is."""
        key = (identity, access)
        if self._verdicts.get(key) is not None:
            return

        def review() -> Verdict:
            try:
                return review_access(self.kube, identity, access)
            except KubeError as error:
                raise Refusal(503, "unavailable", f"cannot check the permission: {error}") from None
        verdict, _ = self._flights.run(("access", key), review, admit=charge)
        assert isinstance(verdict, Verdict)
        if not verdict.allowed:
            why = f" ({verdict.reason})" if verdict.reason else ""
            raise Refusal(403, "forbidden", f"{identity.username} may not {access}{why}")
        self._verdicts.put(key, verdict)


class SecretGate:
    """A shared secret in a file, compared in constant time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._version: tuple[int, int, int] | None = None
        self._secret = b""
        self._lock = threading.Lock()
        self._read()  # at start: an unreadable or short secret stops the daemon there

    def _read(self) -> bytes:
        stat = self.path.stat()
        version = (stat.st_mtime_ns, stat.st_ino, stat.st_size)
        with self._lock:
            if version != self._version:
                secret = self.path.read_bytes().strip()
                if len(secret) < MIN_SECRET_LENGTH:
                    raise ValueError(f"the push wake's shared secret in {self.path} is shorter than "
                                     f"{MIN_SECRET_LENGTH} characters")
                self._secret, self._version = secret, version
            return self._secret

    def authenticate(self, header: str | None) -> Identity:
        token = bearer(header).encode()
        try:
            secret = self._read()
        except (OSError, ValueError) as error:
            raise Refusal(503, "unavailable", f"the shared secret is unreadable: {error}") from None
        if not hmac.compare_digest(hashlib.sha256(token).digest(), hashlib.sha256(secret).digest()):
            raise _unauthenticated("wrong shared secret")
        return SECRET_HOLDER

    def access(self, *, group: str, resource: str, namespace: str, name: str = "") -> Access:
        return Access("wake", group, resource, namespace, "scale", name)

    def authorize(self, identity: Identity, access: Access, *, charge: Callable[[], None]) -> None:
        """The secret is the permission: whatever scaler manages."""


Gate = TokenGate | SecretGate
