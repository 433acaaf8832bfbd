"""The lease lock on an object store (`plumbing.s3_lease`), against moto's standalone server.

What these tests prove: the lease makes the right conditional requests and acts rightly on
each answer (200, 412, 404), between real processes, with expiry judged on the server's
clock: a renewed lease stays held past its TTL, a dead holder's lease is taken over once its
TTL has passed on the server, a stale holder can neither renew nor release a lease taken
over, a writer's wrong clock changes nothing, a lost answer is resolved by reading back, and
a store that ignores conditions is refused.

What they cannot prove: atomicity under true concurrency. moto checks a condition and then
writes, without a lock of its own (moto/s3/responses.py), so two racing PUTs could both pass
on moto where S3 lets one through. That is the store's guarantee (AWS documents it); these
tests do not race requests against moto.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid

import pytest
from s3_fixtures import moto_with_bucket

from inception_retrain.plumbing import s3_lease
from inception_retrain.plumbing.s3_lease import LeaseHeld, LeaseLost, S3Lease
from inception_retrain.plumbing.s3_objects import ObjectStore

BUCKET = "leases"
TTL, SKEW = 2.0, 0.5

HOLDER = """
import sys
from inception_retrain.plumbing.s3_lease import S3Lease
uri, ttl, skew = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
lease = S3Lease(uri, ttl_s=ttl, skew_s=skew, renew_every_s=ttl / 4).acquire()
print("HELD", lease.owner, flush=True)
sys.stdin.readline()  # hold (renewing) until told to stop
assert lease.held(), "lost the lease while holding it"
lease.release()
print("RELEASED", flush=True)
"""


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    with moto_with_bucket(tmp_path_factory.mktemp("moto-leases"), BUCKET) as server:
        yield server


@pytest.fixture
def uri(moto) -> str:
    return f"s3://{BUCKET}/cache/{uuid.uuid4().hex[:8]}/.lease"


def start_holder(uri: str, ttl: float = TTL, skew: float = SKEW) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, uri, str(ttl), str(skew)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    assert line.startswith("HELD"), process.stderr.read()
    return process


def body(uri: str) -> dict:
    store, key = ObjectStore.for_location(uri)
    stat = store.get(key)
    return json.loads(stat.body) if stat else {}


def test_moto_enforces_conditional_writes_and_a_store_that_ignores_them_is_refused(
    uri, monkeypatch
):
    prefix = uri.rsplit("/", 1)[0]
    s3_lease._CHECKED.clear()
    s3_lease.check_conditional_writes(prefix)  # raises unless all three conditions hold
    s3_lease._CHECKED.clear()
    real_put = ObjectStore.put

    def ignoring(self, key, data, *, if_none_match=False, if_match=None):
        return real_put(self, key, data)  # drops the conditions, as some stores do

    monkeypatch.setattr(ObjectStore, "put", ignoring)
    with pytest.raises(s3_lease.ConditionalWritesUnsupported, match="ignores If-None-Match"):
        s3_lease.check_conditional_writes(prefix)
    s3_lease._CHECKED.clear()


def test_a_renewed_lease_holds_across_processes_and_is_free_once_released(uri):
    holder = start_holder(uri)
    try:
        second = S3Lease(uri, ttl_s=TTL, skew_s=SKEW)
        with pytest.raises(LeaseHeld, match=f"is held by pid {holder.pid} on "):
            second.acquire(timeout_s=1.0, poll_s=0.2)
        # The holder renews: waiting longer than its TTL (plus skew) does not free it.
        with pytest.raises(LeaseHeld):
            second.acquire(timeout_s=2 * TTL, poll_s=0.3)
        holder.stdin.write("release\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "RELEASED", holder.stderr.read()
        assert holder.wait(timeout=30) == 0
        second.acquire(timeout_s=30, poll_s=0.2)
        assert second.held() and body(uri)["owner"] == second.owner
        second.release()
        assert body(uri) == {}
    finally:
        holder.kill()
        holder.wait()


def test_the_lease_of_a_killed_holder_is_taken_over_once_its_ttl_passed_on_the_server(uri):
    ttl, skew = 4.0, 1.0  # renewed every 1 s: just after the kill it is well within its TTL
    holder = start_holder(uri, ttl, skew)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    dead_owner = body(uri)["owner"]
    lease = S3Lease(uri, ttl_s=ttl, skew_s=skew)
    assert not lease.try_acquire()  # not yet expired on the server's clock
    lease.acquire(timeout_s=4 * ttl, poll_s=0.3)
    assert body(uri)["owner"] == lease.owner != dead_owner
    lease.release()


def stale_and_new(uri: str) -> tuple[S3Lease, S3Lease]:
    """A holder that stopped renewing (as when it hangs), and the one that took over."""
    old = S3Lease(uri, ttl_s=TTL, skew_s=SKEW).acquire()
    old._stop.set()
    old._thread.join()
    new = S3Lease(uri, ttl_s=TTL, skew_s=SKEW).acquire(timeout_s=6 * TTL, poll_s=0.2)
    return old, new


def test_a_stale_holder_can_neither_renew_nor_release_a_lease_taken_over(uri):
    old, new = stale_and_new(uri)
    old.valid_until = float("inf")  # it wrongly believes it still holds the lease
    with pytest.raises(LeaseLost, match="renewal refused"):
        old.renew()  # If-Match on its old ETag: 412
    assert not old.held()
    assert body(uri)["owner"] == new.owner

    old, newer = stale_and_new(uri.replace(".lease", ".lease2"))
    old.release()  # DELETE If-Match on its old ETag: 412, logged, nothing deleted
    assert body(newer.uri)["owner"] == newer.owner
    new.release()
    newer.release()


def test_expiry_ignores_the_writers_clock(uri):
    """A lease written by a machine whose clock is decades behind says it expired long ago;
    the server says it was written just now, so it is held until its TTL passes there."""
    store, key = ObjectStore.for_location(uri)
    stale_clock = {"owner": "skewed", "ttl_s": TTL, "generation": 1}
    stale_clock |= {"renewed": "2000-01-01T00:00:00+00:00", "expires": "2000-01-01T00:00:03"}
    store.put(key, json.dumps(stale_clock).encode(), if_none_match=True)
    lease = S3Lease(uri, ttl_s=TTL, skew_s=SKEW)
    assert not lease.try_acquire()
    lease.acquire(timeout_s=6 * TTL, poll_s=0.2)  # freed by its age on the server only
    assert body(uri)["owner"] == lease.owner
    lease.release()


def test_a_lost_answer_to_our_own_write_is_resolved_by_reading_back(uri, monkeypatch):
    """The PUT was applied but its answer lost, and the client's resend got 412 against our
    own write: the lease is ours all the same."""
    real_put = ObjectStore.put

    def applied_then_resent(self, key, data, **conditions):
        real_put(self, key, data, **conditions)
        return real_put(self, key, data, **conditions)  # the resend: 412

    monkeypatch.setattr(ObjectStore, "put", applied_then_resent)
    lease = S3Lease(uri, ttl_s=TTL, skew_s=SKEW)
    assert lease.try_acquire()
    monkeypatch.undo()
    assert body(uri)["owner"] == lease.owner and lease.held()
    lease.release()
    assert body(uri) == {}
