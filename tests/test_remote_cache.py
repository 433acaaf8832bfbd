"""A feature cache on an object store is locked and pruned like a local one (moto's server).

The caches are laid out as extraction leaves them (backbone.json, parts); the jobs that hold
them are real processes taking the cache's leases (`feature_cache.reading` / `writing`).
A prune never removes a cache a live job registered for, on this machine or another; a dead
job's lease stops counting once its TTL has passed on the server; a job never starts on a
cache being pruned; `cache ls` / `cache prune --feature-cache s3://...` do all this from the
command line.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid

import pytest
from s3_fixtures import moto_with_bucket
from typer.testing import CliRunner

from inception_retrain.cli.main import app
from inception_retrain.features import feature_cache
from inception_retrain.features.feature_cache import list_caches, prune_caches
from inception_retrain.plumbing import storage
from inception_retrain.plumbing.errors import DataError

BUCKET = "features"
TTL, SKEW = 3.0, 0.5

JOB = """
import sys
from inception_retrain.features import feature_cache
feature_cache.LEASE_TTL_S, feature_cache.LEASE_SKEW_S = float(sys.argv[3]), float(sys.argv[4])
lock = feature_cache.reading if sys.argv[1] == "read" else feature_cache.writing
with lock(sys.argv[2]):
    print("HOLDING", flush=True)
    sys.stdin.readline()
print("DONE", flush=True)
"""


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    with moto_with_bucket(tmp_path_factory.mktemp("moto-cache"), BUCKET) as server:
        yield server


@pytest.fixture
def root(moto, monkeypatch) -> str:
    monkeypatch.setattr(feature_cache, "LEASE_TTL_S", TTL)
    monkeypatch.setattr(feature_cache, "LEASE_SKEW_S", SKEW)
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}"


def make_caches(root: str, *names: str) -> list[str]:
    """Remote cache folders as extraction leaves them; the first name is the most recent."""
    folders = []
    for age, name in enumerate(names):
        folder = str(storage.join(root, name))
        used = f"2026-01-0{9 - age}T00:00:00+00:00"
        storage.write_bytes(f"{folder}/backbone.json", json.dumps({"last_used": used}).encode())
        storage.write_bytes(f"{folder}/part-{name}.parquet", b"not read by these tests")
        folders.append(folder)
    return folders


def names(root: str) -> list[str]:
    return sorted(c["fingerprint"] for c in list_caches(None, root))


def start_job(kind: str, cache_dir: str, ttl: float = TTL, skew: float = SKEW):
    process = subprocess.Popen(
        [sys.executable, "-c", JOB, kind, cache_dir, str(ttl), str(skew)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "HOLDING", process.stderr.read()
    return process


def finish(process: subprocess.Popen) -> None:
    out, err = process.communicate("\n", timeout=60)
    assert process.returncode == 0 and "DONE" in out, err


def test_a_remote_cache_read_or_written_by_another_process_is_not_pruned(root):
    read, written, idle = make_caches(root, "aaaa", "bbbb", "cccc")
    reader, writer = start_job("read", read), start_job("write", written)
    try:
        in_use = {c["fingerprint"]: c["in_use"] for c in list_caches(None, root)}
        assert in_use == {"aaaa": True, "bbbb": True, "cccc": False}
        removed = prune_caches(None, keep_latest=0, root=root)
        assert [c["fingerprint"] for c in removed] == ["cccc"]
        assert names(root) == ["aaaa", "bbbb"]
        assert storage.exists(f"{read}/part-aaaa.parquet")
        assert not storage.find_files(idle)  # every object of the idle cache is gone
    finally:
        finish(reader)
        finish(writer)
    assert len(prune_caches(None, keep_latest=0, root=root)) == 2
    assert names(root) == [] and not storage.find_files(root)  # leases released too


def test_a_dead_jobs_lease_stops_counting_once_its_ttl_has_passed(root):
    (cache_dir,) = make_caches(root, "dddd")
    reader = start_job("read", cache_dir, ttl=4.0, skew=1.0)
    reader.send_signal(signal.SIGKILL)  # it never releases its lease
    reader.wait()
    assert prune_caches(None, keep_latest=0, root=root) == []  # its lease is still fresh
    deadline = time.monotonic() + 60
    while not prune_caches(None, keep_latest=0, root=root):
        assert time.monotonic() < deadline, "the dead reader's lease never expired"
        time.sleep(0.5)
    assert names(root) == []


def test_a_job_does_not_start_on_a_cache_being_pruned_and_a_pruned_cache_is_gone(root):
    (cache_dir,) = make_caches(root, "eeee")
    with feature_cache.removal(cache_dir) as held:
        assert held is not None
        with pytest.raises(DataError, match="is being pruned"), feature_cache.reading(cache_dir):
            pass
        with pytest.raises(DataError, match="is being pruned"), feature_cache.adding(cache_dir):
            pass
        held.remove(cache_dir)
    gone = r"feature cache .*eeee is gone \(pruned\?\)"
    with pytest.raises(DataError, match=gone), feature_cache.reading(cache_dir):
        pass
    assert not storage.find_files(cache_dir)  # the refused jobs left no lease behind


def test_a_second_writer_waits_for_the_first_or_is_told_it_is_held(root):
    (cache_dir,) = make_caches(root, "ffff")
    writer = start_job("write", cache_dir)
    try:
        with feature_cache.writing(cache_dir, wait=False) as held:
            assert not held
    finally:
        finish(writer)
    with feature_cache.writing(cache_dir, wait=False) as held:
        assert held


def test_cache_ls_and_prune_on_an_object_store_from_the_command_line(root):
    read, idle = make_caches(root, "gggg", "hhhh")
    reader = start_job("read", read)
    try:
        runner = CliRunner()
        listing = runner.invoke(app, ["cache", "ls", "--feature-cache", root])
        assert listing.exit_code == 0, listing.output
        header, first, second = listing.output.splitlines()[:3]
        assert "in use" in header and "gggg" in first and " yes " in first
        assert "hhhh" in second and " yes " not in second
        pruned = runner.invoke(
            app, ["cache", "prune", "--keep-latest", "0", "--feature-cache", root]
        )
        assert pruned.exit_code == 0, pruned.output
        assert "removed hhhh" in pruned.output and "removed 1 cache(s)" in pruned.output
        assert names(root) == ["gggg"]
    finally:
        finish(reader)
    missing = CliRunner().invoke(app, ["cache", "ls", "--feature-cache", "s3://no-such/x"])
    assert missing.exit_code == 2
    assert "bucket 'no-such' does not exist" in missing.output
