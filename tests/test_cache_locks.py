"""`cache prune` never removes a cache that a running stage reads or writes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from inception_retrain.cli.main import app
from inception_retrain.features import feature_cache as cache_locks
from inception_retrain.features.feature_cache import list_caches, prune_caches
from inception_retrain.plumbing.errors import DataError


def make_caches(workdir, *names):
    """Cache folders as extraction leaves them (backbone.json with a last-used time)."""
    folders = []
    for age, name in enumerate(names):
        folder = workdir / "cache" / name
        folder.mkdir(parents=True)
        used = f"2026-01-0{9 - age}T00:00:00+00:00"  # the first name is the most recent
        (folder / "backbone.json").write_text(json.dumps({"last_used": used}))
        folders.append(folder)
    return folders


def names(workdir):
    return sorted(c["fingerprint"] for c in list_caches(workdir))


def test_a_cache_being_read_is_not_pruned_until_the_reader_is_done(tmp_path):
    read, idle = make_caches(tmp_path, "aaaa", "bbbb")
    with cache_locks.reading(read):
        assert {c["fingerprint"]: c["in_use"] for c in list_caches(tmp_path)} == {
            "aaaa": True,
            "bbbb": False,
        }
        listing = CliRunner().invoke(app, ["cache", "ls", "--workdir", str(tmp_path)])
        assert listing.exit_code == 0, listing.output
        header, first, second = listing.output.splitlines()[:3]
        assert "in use" in header and "aaaa" in first and " yes " in first
        assert "bbbb" in second and " yes " not in second
        removed = prune_caches(tmp_path, keep_latest=0)
        assert [c["fingerprint"] for c in removed] == ["bbbb"]
        assert names(tmp_path) == ["aaaa"] and (read / "backbone.json").is_file()
    assert [c["fingerprint"] for c in prune_caches(tmp_path, keep_latest=0)] == ["aaaa"]
    assert names(tmp_path) == [] and not idle.exists()


def test_a_cache_being_written_is_not_pruned(tmp_path):
    (written,) = make_caches(tmp_path, "cccc")
    with cache_locks.writing(written):
        assert prune_caches(tmp_path, keep_latest=0) == []
    assert len(prune_caches(tmp_path, keep_latest=0)) == 1


def test_a_reader_in_another_process_keeps_its_cache(tmp_path):
    (read,) = make_caches(tmp_path, "dddd")
    script = (
        "import sys\nfrom inception_retrain.features import feature_cache as cache_locks\n"
        f"with cache_locks.reading({str(read)!r}):\n"
        "    print('reading', flush=True)\n    sys.stdin.read()\n"
    )
    reader = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout.readline().strip() == "reading"
        assert prune_caches(tmp_path, keep_latest=0) == []
        assert read.is_dir()
    finally:
        reader.communicate("", timeout=60)  # end its read: the lock goes with the process
    assert reader.returncode == 0
    assert len(prune_caches(tmp_path, keep_latest=0)) == 1 and not read.exists()


def test_reading_a_pruned_cache_is_a_clear_data_error(tmp_path):
    (folder,) = make_caches(tmp_path, "eeee")
    prune_caches(tmp_path, keep_latest=0)
    gone = r"feature cache .*eeee is gone \(pruned\?\)"
    with pytest.raises(DataError, match=gone), cache_locks.reading(folder):
        pass


def test_a_writer_makes_a_pruned_cache_again_and_a_probe_does_not(tmp_path):
    (folder,) = make_caches(tmp_path, "ffff")
    prune_caches(tmp_path, keep_latest=0)
    assert not cache_locks.in_use(folder) and not folder.exists()  # the probe made nothing
    assert prune_caches(tmp_path, keep_latest=0) == []
    with cache_locks.writing(folder) as held:
        assert held and folder.is_dir()
