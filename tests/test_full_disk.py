"""A full disk: extraction and export on a small filesystem (a real tmpfs where this machine
allows mounting one, else ENOSPC injected at the write layer: tests/full_disk.py).

  * atomic writes leave neither the file nor its temporary file, and say so in one line;
  * extraction into a cache on a full disk fails with one line; every part left is whole and
    readable; once space is freed, a rerun computes only the images not yet cached;
  * export onto a full disk fails with one line; no version folder and no staging folder
    are left; the champion stays the champion, complete; once space is freed, export works.
The "tmpfs" variants fall back to injection where mounting is not allowed. Export, and the
injected variant of extraction, are marked `extended` (`make test-extended`): minutes of
TensorFlow that the default suite cannot afford.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from full_disk import full_disk

from inception_retrain.data.ingest import ingest
from inception_retrain.features.extraction import extract_features
from inception_retrain.features.feature_parts import TEMP_GLOB, parts
from inception_retrain.plumbing.errors import DiskFullError
from inception_retrain.plumbing.files import atomic_write, is_disk_full

MB = 1 << 20
MODES = pytest.mark.parametrize("prefer_tmpfs", [True, False], ids=["tmpfs", "injected"])
# The injected variant of a TensorFlow test, and export, take long: `make test-extended`.
SLOW_MODES = pytest.mark.parametrize(
    "prefer_tmpfs",
    [True, pytest.param(False, marks=pytest.mark.extended)],
    ids=["tmpfs", "injected"],
)


def one_line(error: DiskFullError, folder: Path) -> str:
    message = str(error)
    assert "\n" not in message and message.startswith(f"no space left on the device of {folder}")
    assert "free some space there" in message and "what was written is kept" in message
    return message


@MODES
def test_an_atomic_write_on_a_full_disk_leaves_nothing_and_says_so(
    tmp_path, monkeypatch, prefer_tmpfs
):
    with full_disk(tmp_path / "disk", 1 * MB, monkeypatch, prefer_tmpfs=prefer_tmpfs) as disk:
        with pytest.raises(DiskFullError) as caught:
            atomic_write(disk.folder / "part-x.parquet", b"\1" * (3 * MB))
        one_line(caught.value, disk.folder)
        assert is_disk_full(caught.value) and caught.value.__cause__.errno == errno.ENOSPC
        assert list(disk.folder.iterdir()) == []  # neither the part nor .part-x.*.tmp
        disk.grow(8 * MB)
        atomic_write(disk.folder / "part-x.parquet", b"\1" * (3 * MB))
        assert (disk.folder / "part-x.parquet").stat().st_size == 3 * MB


def ids_in(cache_dir: Path) -> list[str]:
    found = []
    for part in parts(cache_dir):
        found += pq.read_table(part, columns=["content_id"]).column(0).to_pylist()  # whole
    return found


@SLOW_MODES
def test_extraction_on_a_full_disk_keeps_whole_parts_and_resumes_once_space_is_freed(
    tmp_path, monkeypatch, small_demo_dir, prefer_tmpfs
):
    from inception_retrain.config import RetrainConfig
    from inception_retrain.training.head_spec import HeadSpec

    manifest = None
    # About 56 KB per part of 4 images (float32, 75 px): three parts fit, the fourth does not.
    with full_disk(tmp_path / "disk", 200_000, monkeypatch, prefer_tmpfs=prefer_tmpfs) as disk:
        config = RetrainConfig(
            data=str(small_demo_dir),
            workdir=tmp_path / "work",
            weights="random:0",
            image_size=75,
            feature_dtype="float32",
            split_fractions=(0.5, 0.2, 0.3),
            head=HeadSpec(hidden_units=(16, 16)),
            feature_cache=str(disk.folder),
        )
        manifest = ingest(config.ingest, tmp_path / "run-1")
        with pytest.raises(DiskFullError) as caught:
            extract_features(manifest, config.extraction, tmp_path / "run-1", part_rows=4)
        (cache_dir,) = disk.folder.iterdir()
        one_line(caught.value, cache_dir)
        before = ids_in(cache_dir)  # every part left reads whole
        assert 0 < len(before) < manifest.counts["ok"] and len(before) % 4 == 0
        assert not list(cache_dir.glob(TEMP_GLOB))

        disk.grow(4 * MB)
        cache = extract_features(manifest, config.extraction, tmp_path / "run-2", part_rows=4)
        assert (cache.computed, cache.reused) == (manifest.counts["ok"] - len(before), len(before))
        after = ids_in(cache_dir)
        assert len(after) == len(set(after)) == manifest.counts["ok"]  # each image once
        report = json.loads((tmp_path / "run-2" / "extract.json").read_text())
        assert report["quarantined"] == 0


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.mark.extended
def test_export_on_a_full_disk_leaves_no_half_version_and_the_champion_stands(
    tmp_path, monkeypatch, tiny_run, tiny_version
):
    """On a tmpfs where the machine allows it (else injected: the other tests cover both)."""
    from inception_retrain.registry.export import export_model
    from inception_retrain.registry.versions import (
        is_complete,
        list_versions,
        read_champion,
        resolve_model,
        write_champion,
    )

    champion = tiny_version.version
    size = folder_bytes(tiny_version.path)

    def champion_in_place(folder: Path) -> None:
        shutil.copytree(tiny_version.path, folder / "models" / champion)
        write_champion(folder / "models", {"version": champion, "score": 0.5})

    r = tiny_run
    with full_disk(
        tmp_path / "disk",
        8 * MB,  # far less than one more version
        monkeypatch,
        prefill=champion_in_place,
        prefill_bytes=size + MB,
    ) as disk:
        models = disk.folder / "models"
        policy = r.config.promotion.model_copy(update={"models_dir": models})
        with pytest.raises(DiskFullError) as caught:
            export_model(r.manifest, r.cache, r.head, r.evaluation, policy, r.run_dir)
        one_line(caught.value, models)
        assert list_versions(models) == [champion]
        left = {p.name for p in models.iterdir()} - {".lock"}
        assert left == {champion, "champion.json", "champion-history.jsonl"}  # no staging
        assert read_champion(models)[0]["version"] == champion
        assert resolve_model(disk.folder, "champion") == models / champion
        assert is_complete(models / champion)

        disk.grow(size + 64 * MB)
        version = export_model(r.manifest, r.cache, r.head, r.evaluation, policy, r.run_dir)
        assert is_complete(version.path) and list_versions(models) == [champion, version.version]
        assert read_champion(models)[0]["version"] == champion  # export alone promotes nothing
