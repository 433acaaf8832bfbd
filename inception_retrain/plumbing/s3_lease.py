"""A lease lock on an object store, taken with conditional writes and renewed by its holder.

An object store has no `flock`, so a lock there is an object: whoever created it holds it,
until it releases it or stops renewing it for longer than its time to live. This is the
remote counterpart of `locks.file_lock`; `features.feature_cache` uses it for a feature cache
on `s3://` (an exclusive `.lease` and one shared lease per reader under `.in-use/`).

    >>> with S3Lease("s3://features/cache/3f2a/.lease", purpose="write").acquire(timeout_s=60):
    ...     ...                      # renewed every ttl_s / 3 by a thread while the block runs
    >>> lease = S3Lease(uri, purpose="prune")
    >>> if lease.try_acquire():     # never waits
    ...     lease.assert_held()      # right before a destructive step
    ...     lease.release()

Each lease object is a small JSON document: `owner` (a uuid4), `host`, `pid`, `purpose`,
`ttl_s`, `generation`, and `renewed` / `expires` on the writer's clock (for people only).

Operations, each one conditional request that the store checks (`s3_objects`):

    acquire    PUT If-None-Match: *           fails (412) while anyone holds it
    take over  PUT If-Match: <expired ETag>   fails if it was renewed or taken meanwhile
    renew      PUT If-Match: <our ETag>       fails if it was taken over: the lease is lost
    release    DELETE If-Match: <our ETag>    never deletes a lease that is not ours

Clock skew: no machine compares its clock with another's.
  * A challenger judges expiry on the *server's* clock: the age of the lease object (the
    response's `Date` minus its `Last-Modified`) against the `ttl_s` written in it plus
    `skew_s`. A store that sends no `Date` is judged by watching the same ETag stay
    unchanged for that long on the challenger's monotonic clock.
  * The holder judges its own lease on its *monotonic* clock: valid until the moment it
    *sent* its last successful write, plus `ttl_s - skew_s`. So it stops acting at least
    2 x `skew_s` before anyone may take over, whatever the machines' clocks say. `skew_s`
    covers the 1 s resolution of `Last-Modified` and `Date`, request latency and clock rate
    differences; it must be below `ttl_s / 3`.
  * Every body carries a fresh `generation`, so two writes never have one ETag (a single
    PUT's ETag is its MD5: equal bodies would defeat If-Match).

A request whose answer was lost (a timeout, a reset connection) may have been applied, and
botocore and s3fs resend such requests themselves, so the resend may fail against our own
write. After any failed condition or network error the lease is read back, and it is ours
if it carries our owner and generation.

Limits: a lease is advisory, and a holder paused for longer than its TTL (a VM suspended,
SIGSTOP) can act after losing it. Callers keep that harmless: feature parts are
content-named and appear whole, and prune checks `assert_held()` right before it deletes.
Atomicity under true concurrency is the store's guarantee (AWS S3 documents it; moto checks
a condition and then writes, without a lock of its own).
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from inception_retrain.plumbing.errors import ConfigError, PipelineError
from inception_retrain.plumbing.s3_objects import (
    ObjectStore,
    Stat,
    missing,
    precondition_failed,
    transient,
)

log = logging.getLogger(__name__)

TTL_S = 60.0
SKEW_S = 5.0


class LeaseError(PipelineError):
    """A lease could not be taken or kept."""


class LeaseHeld(LeaseError):
    """Someone else holds an unexpired lease."""


class LeaseLost(LeaseError):
    """We held the lease and no longer do (taken over, or not renewed in time)."""


class ConditionalWritesUnsupported(ConfigError):
    """The store ignores or refuses conditional writes: no lease can be built on it."""


def _iso(offset_s: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).isoformat(timespec="milliseconds")


def parse_body(raw: bytes) -> dict:
    """A lease's JSON body ({} when unreadable: it then expires by its age like any other)."""
    try:
        body = json.loads(raw)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def expired(stat: Stat, skew_s: float, default_ttl_s: float = TTL_S) -> bool | None:
    """Whether a lease object is past its TTL + skew on the server's clock (None: the store
    sent no Date, so only watching it can tell)."""
    if stat.age_s is None:
        return None
    ttl = parse_body(stat.body).get("ttl_s", default_ttl_s)
    try:
        ttl = float(ttl)
    except (TypeError, ValueError):
        ttl = default_ttl_s
    return stat.age_s > ttl + skew_s


def describe(uri: str, stat: Stat | None) -> str:
    """Who holds the lease at `uri`, for a one-line message."""
    if stat is None:
        return f"{uri} was released meanwhile"
    body = parse_body(stat.body)
    age = "?" if stat.age_s is None else f"{stat.age_s:.0f}"
    return (
        f"{uri} is held by pid {body.get('pid', '?')} on {body.get('host', '?')} "
        f"({body.get('purpose', '?')}, renewed {age} s ago, ttl {body.get('ttl_s', '?')} s)"
    )


class _Unresolved(LeaseError):
    """A renewal whose outcome a network error hid: try again until the local deadline."""


class S3Lease:
    """One exclusive lease object at `uri` (see module docstring)."""

    def __init__(
        self,
        uri: str,
        *,
        purpose: str = "write",
        ttl_s: float = TTL_S,
        skew_s: float = SKEW_S,
        renew_every_s: float | None = None,
        on_lost: Callable[[LeaseLost], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not 0 <= skew_s < ttl_s / 3:
            raise ValueError("skew_s must be at least 0 and below ttl_s / 3")
        self.uri = uri
        self.store, self.key = ObjectStore.for_location(uri)
        self.purpose, self.ttl_s, self.skew_s = purpose, ttl_s, skew_s
        self.renew_every_s = renew_every_s or ttl_s / 3
        self.on_lost = on_lost
        self.clock = clock
        self.owner = uuid.uuid4().hex
        self.generation = 0
        self.etag: str | None = None
        self.valid_until = 0.0  # our monotonic deadline
        self.acquired: str | None = None
        self.lost = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._first_seen: dict[str, float] = {}  # ETag -> when first seen (no Date header)

    # --- one write, and what it means ------------------------------------------------------

    def _body(self) -> bytes:
        self.generation += 1
        now = _iso()
        self.acquired = self.acquired or now
        return json.dumps(
            {
                "owner": self.owner,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "purpose": self.purpose,
                "ttl_s": self.ttl_s,
                "acquired": self.acquired,
                "renewed": now,
                "expires": _iso(self.ttl_s),
                "generation": self.generation,
            },
            sort_keys=True,
        ).encode()

    def _is_ours(self, stat: Stat | None) -> bool:
        body = parse_body(stat.body) if stat is not None else {}
        return body.get("owner") == self.owner and body.get("generation") == self.generation

    def _write(self, **condition) -> bool:
        """One conditional PUT; whether our body is the lease now (ambiguity resolved)."""
        body, sent = self._body(), self.clock()
        try:
            self.etag = self.store.put(self.key, body, **condition)
        except Exception as error:
            if not (precondition_failed(error) or missing(error) or transient(error)):
                raise
            stat = self.store.get(self.key)  # a resend may have failed against our own write
            if not self._is_ours(stat):
                return False
            self.etag = stat.etag
        self.valid_until = sent + self.ttl_s - self.skew_s
        return True

    def _expired(self, stat: Stat) -> bool:
        verdict = expired(stat, self.skew_s, self.ttl_s)
        if verdict is not None:
            return verdict
        first = self._first_seen.setdefault(stat.etag, self.clock())
        ttl = parse_body(stat.body).get("ttl_s", self.ttl_s)
        return self.clock() - first > float(ttl) + self.skew_s

    # --- taking, keeping and giving back ------------------------------------------------------

    def try_acquire(self) -> bool:
        """Take the lease if it is free or expired; never waits."""
        with self._lock:
            if self._write(if_none_match=True):
                return True
            stat = self.store.get(self.key)
            if stat is None:  # released in between
                return self._write(if_none_match=True)
            if self._expired(stat):
                log.info("taking over the expired lease %s", describe(self.uri, stat))
                return self._write(if_match=stat.etag)
            return False

    def acquire(
        self,
        timeout_s: float | None = 0.0,
        poll_s: float = 2.0,
        on_wait: Callable[[str], None] | None = None,
    ) -> S3Lease:
        """Take the lease, waiting up to `timeout_s` (None: as long as it takes), and start
        renewing it; LeaseHeld (one line, naming the holder) if it stays held."""
        deadline = None if timeout_s is None else self.clock() + timeout_s
        told = False
        while not self.try_acquire():
            if deadline is not None and self.clock() >= deadline:
                raise LeaseHeld(describe(self.uri, self.store.get(self.key)))
            if on_wait is not None and not told:
                on_wait(f"waiting for the lease {describe(self.uri, self.store.get(self.key))}")
                told = True
            left = poll_s if deadline is None else max(0.0, min(poll_s, deadline - self.clock()))
            time.sleep(left)
        self.start_renewing()
        return self

    def renew(self) -> None:
        """Write the lease again (If-Match our ETag); LeaseLost if it is not ours any more."""
        with self._lock:
            if self.etag is None:
                raise LeaseLost(f"{self.uri}: not held")
            if self.clock() > self.valid_until:
                raise LeaseLost(f"{self.uri}: not renewed within its {self.ttl_s:g} s")
            try:
                ours = self._write(if_match=self.etag)
            except Exception as error:
                raise _Unresolved(str(error)) from error
            if not ours:
                self.etag = None
                raise LeaseLost(f"{self.uri}: taken over or removed (renewal refused)")

    def held(self) -> bool:
        """Whether we may act as the holder now (call right before a destructive step)."""
        return self.etag is not None and not self.lost.is_set() and self.clock() < self.valid_until

    def assert_held(self) -> None:
        if not self.held():
            raise LeaseLost(f"{self.uri}: no longer held")

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still ours (If-Match)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            etag, self.etag = self.etag, None
            if etag is None:
                return
            try:
                self.store.delete(self.key, if_match=etag)
            except Exception as error:
                if precondition_failed(error) or missing(error):
                    log.warning("lease %s was no longer ours when released", self.uri)
                    return
                # The store is unreachable: the lease expires by its TTL. Raising here would
                # hide the error that ended the holder's work (the same outage, usually).
                log.warning(
                    "lease %s not released (%s): it expires in %g s", self.uri, error, self.ttl_s
                )

    def __enter__(self) -> S3Lease:
        if self.etag is None:
            self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # --- the renewal thread -----------------------------------------------------------------

    def start_renewing(self) -> None:
        """Renew the lease every `renew_every_s` from now on (after `try_acquire`)."""
        self.lost.clear()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._renew_until_stopped, name=f"lease-{self.key}", daemon=True
        )
        self._thread.start()

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self.renew_every_s):
            try:
                self.renew()
            except _Unresolved as error:
                log.warning("lease %s: renewal failed (%s); trying again", self.uri, error)
                if self.clock() > self.valid_until:
                    self._lose(LeaseLost(f"{self.uri}: not renewed within its {self.ttl_s:g} s"))
                    return
            except LeaseLost as error:
                self._lose(error)
                return

    def _lose(self, error: LeaseLost) -> None:
        log.error("%s", error)
        self.lost.set()
        if self.on_lost is not None:
            self.on_lost(error)


def live_leases(prefix_uri: str, skew_s: float = SKEW_S) -> list[dict]:
    """The unexpired lease objects directly under `prefix_uri`, as their bodies (with `key`
    and `age_s`): by the server's clock and each lease's own TTL. A lease whose age is
    unknown (no Date header) counts as live."""
    store, prefix = ObjectStore.for_location(prefix_uri)
    found = []
    for key in store.list(prefix.rstrip("/") + "/"):
        stat = store.get(key)
        if stat is None:  # released meanwhile
            continue
        if expired(stat, skew_s) is not True:
            found.append({**parse_body(stat.body), "key": key, "age_s": stat.age_s})
    return found


def read_lease(uri: str) -> tuple[Stat | None, dict]:
    """(the lease object at `uri` or None, its body)."""
    store, key = ObjectStore.for_location(uri)
    stat = store.get(key)
    return stat, parse_body(stat.body) if stat is not None else {}


_CHECKED: dict[str, bool] = {}


def check_conditional_writes(prefix_uri: str) -> None:
    """ConditionalWritesUnsupported (one line) unless the store at `prefix_uri` enforces
    If-None-Match and If-Match on PUT and If-Match on DELETE: some S3-compatible stores
    ignore them silently, which would make every lease a no-op. Writes and removes one probe
    object; checked once per bucket and process."""
    store, prefix = ObjectStore.for_location(prefix_uri)
    if _CHECKED.get(store.bucket):
        return
    key = posixpath.join(prefix, f".lease-probe-{uuid.uuid4().hex}")
    wrong = '"' + "0" * 32 + '"'
    etag = store.put(key, b'{"probe": 1}', if_none_match=True)
    try:
        checks = (
            ("If-None-Match on PutObject", lambda: store.put(key, b"2", if_none_match=True)),
            ("If-Match on PutObject", lambda: store.put(key, b"3", if_match=wrong)),
            ("If-Match on DeleteObject", lambda: store.delete(key, if_match=wrong)),
        )
        for what, attempt in checks:
            try:
                attempt()
            except Exception as error:
                if precondition_failed(error):
                    continue
                raise ConditionalWritesUnsupported(
                    f"the object store of {prefix_uri} refused {what} "
                    f"({type(error).__name__}): a cache there cannot be locked; use a store "
                    "that supports conditional writes (AWS S3, MinIO) or a local cache"
                ) from None
            raise ConditionalWritesUnsupported(
                f"the object store of {prefix_uri} ignores {what} (the write went through): "
                "a cache there cannot be locked; use a store that supports conditional "
                "writes (AWS S3, MinIO) or a local cache"
            )
    finally:
        current = store.get(key)
        try:
            store.delete(key, if_match=current.etag if current else etag)
        except Exception as error:  # the probe object stays: harmless, and logged
            log.warning("could not remove the probe object %s: %s", key, error)
    _CHECKED[store.bucket] = True
