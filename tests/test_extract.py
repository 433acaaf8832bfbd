"""Extraction: exact cached features, incremental runs, new fingerprints, kills, corruption.

Real JPEG/PNG files (the demo generator's), real manifests (`tasks.ingest`), the real
InceptionV3 with random weights at 150 px (mixed7: 7x7x768), real Parquet parts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from inception_retrain.cli.main import app
from inception_retrain.config import RetrainConfig
from inception_retrain.data.demo_data import CLASSES, demo_image
from inception_retrain.data.ingest import ingest
from inception_retrain.data.manifest import read_image_rows as read_ok_rows
from inception_retrain.features.backbone import load_backbone
from inception_retrain.features.extraction import extract_features
from inception_retrain.features.feature_cache import list_caches
from inception_retrain.features.feature_parts import TEMP_GLOB, parts
from inception_retrain.features.preprocess import image_dataset
from inception_retrain.training.training_data import load_split

REPO = Path(__file__).resolve().parent.parent


def write_images(folder: Path, indices: range, seed: int = 0) -> list[Path]:
    """Demo images `indices`, alternating classes, as real files in class folders."""
    written = []
    for index in indices:
        label = CLASSES[index % 2]
        data, ext = demo_image(label, index, seed)
        path = folder / label / f"img-{index:03d}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return written


def make_config(tmp: Path, data: Path, **overrides) -> RetrainConfig:
    values = {"data": str(data), "workdir": str(tmp / "work"), "weights": "random:0"}
    return RetrainConfig(**{**values, **overrides})


class Runs:
    """Ingest + extract into numbered run folders under one workdir."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.count = 0

    def extract(self, config: RetrainConfig, **kwargs):
        self.count += 1
        run_dir = self.tmp / f"run-{self.count}"
        manifest = ingest(config.ingest, run_dir)
        cache = extract_features(manifest, config.extraction, run_dir, **kwargs)
        report = json.loads((run_dir / "extract.json").read_text())
        return manifest, cache, report


def cached_ids(cache_dir: Path) -> list[str]:
    """Content ids over all visible parts, with repetitions."""
    return [
        cid for part in parts(cache_dir) for cid in pq.read_table(part)["content_id"].to_pylist()
    ]


def assert_each_once(cache_dir: Path, manifest_path: Path) -> None:
    ids = cached_ids(cache_dir)
    assert len(ids) == len(set(ids)), "an image is cached twice"
    assert set(ids) == set(read_ok_rows(manifest_path).content_ids)
    assert not list(cache_dir.glob(TEMP_GLOB))


def direct_features(manifest_path: Path, batch_size: int) -> dict[str, np.ndarray]:
    """backbone(x, training=False) on the same files, in the same batches, float32."""
    rows = read_ok_rows(manifest_path)
    backbone = load_backbone("random:0", "mixed7", 150)
    outputs = [
        backbone(images, training=False).numpy()
        for images in image_dataset(rows.uris, 150, batch_size)
    ]
    return dict(zip(rows.content_ids, np.concatenate(outputs), strict=True))


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_cached_features_match_the_backbone(tmp_path, dtype):
    write_images(tmp_path / "data", range(12))
    config = make_config(tmp_path, tmp_path / "data", feature_dtype=dtype, extract_batch_size=5)
    manifest, cache, report = Runs(tmp_path).extract(config, part_rows=8)
    assert (cache.computed, cache.reused, cache.dtype) == (12, 0, dtype)
    assert cache.feature_shape == (7, 7, 768)
    assert report["parts_written"] == 2 and report["fingerprint_inputs"]["feature_dtype"] == dtype

    ids, features, labels = load_split(cache.cache_dir, manifest.path, None)
    direct = direct_features(manifest.path, config.extract_batch_size)
    expected = np.stack([direct[cid] for cid in ids])
    assert features.shape == (12, 7, 7, 768) and np.abs(expected).max() > 0
    if dtype == "float32":
        assert np.array_equal(features, expected)
    else:  # float16 rounding of the exact value, nothing else
        assert np.array_equal(features, expected.astype(np.float16).astype(np.float32))
        np.testing.assert_allclose(features, expected, rtol=2**-10, atol=2**-24)
    rows = read_ok_rows(manifest.path)
    label_of = dict(zip(rows.content_ids, rows.label_indices, strict=True))
    assert labels.tolist() == [label_of[cid] for cid in ids]


def test_incremental_runs_compute_only_new_images(tmp_path):
    data = tmp_path / "data"
    write_images(data, range(10))
    config = make_config(tmp_path, data)
    runs = Runs(tmp_path)

    manifest, first, report = runs.extract(config, part_rows=4)
    assert (first.computed, first.reused) == (10, 0)
    assert report["parts_written"] == 3

    manifest, second, report = runs.extract(config, part_rows=4)
    assert (second.computed, second.reused) == (0, 10)
    assert report["parts_written"] == 0 and second.cache_dir == first.cache_dir
    assert report["parts_checked_in_full"] == 3  # written by the first run, verified now
    manifest, second, report = runs.extract(config, part_rows=4)
    assert report["parts_checked_in_full"] == 0  # verified before and unchanged since

    write_images(data, range(10, 13))  # k = 3 new images
    manifest, third, report = runs.extract(config, part_rows=4)
    assert (third.computed, third.reused) == (3, 10)
    assert report["images"] == 13
    assert_each_once(third.cache_dir, manifest.path)
    info = json.loads((third.cache_dir / "backbone.json").read_text())
    assert (
        info["fingerprint"] == third.backbone_fingerprint and info["last_used"] >= info["created"]
    )


def test_changed_or_deleted_images_are_skipped(tmp_path):
    data = tmp_path / "data"
    files = write_images(data, range(8))
    config = make_config(tmp_path, data)
    run_dir = tmp_path / "run"
    manifest = ingest(config.ingest, run_dir)
    files[1].write_bytes(b"overwritten since ingestion")
    files[2].write_bytes(files[3].read_bytes())  # still decodes, but is not the ingested image
    files[4].unlink()
    cache = extract_features(manifest, config.extraction, run_dir)
    report = json.loads((run_dir / "extract.json").read_text())
    assert (cache.computed, report["skipped"]) == (5, 3)
    ids = set(cached_ids(cache.cache_dir))
    assert len(ids) == 5 and not ids & set(report["skipped_content_ids"])


def test_new_weights_or_layer_gets_a_new_cache_and_leaves_the_old(tmp_path, random_weights_file):
    data = tmp_path / "data"
    write_images(data, range(6))
    runs = Runs(tmp_path)
    _, base, _ = runs.extract(make_config(tmp_path, data))
    snapshot = {p.name: p.read_bytes() for p in parts(base.cache_dir)}

    _, other_layer, _ = runs.extract(make_config(tmp_path, data, layer="mixed2"))
    _, other_file, _ = runs.extract(make_config(tmp_path, data, weights=str(random_weights_file)))
    fingerprints = {base.backbone_fingerprint, other_layer.backbone_fingerprint}
    fingerprints.add(other_file.backbone_fingerprint)
    assert len(fingerprints) == 3
    assert other_layer.computed == 6 and other_file.computed == 6
    assert other_layer.feature_shape == (16, 16, 288)
    assert {p.name: p.read_bytes() for p in parts(base.cache_dir)} == snapshot

    # The CLI lists all three (random ones labelled as such), then prunes the older ones.
    runner = CliRunner()
    work = tmp_path / "work"
    listing = runner.invoke(app, ["cache", "ls", "--workdir", str(work)])
    assert listing.exit_code == 0, listing.output
    assert all(fp in listing.output for fp in fingerprints)
    assert "RANDOM" in listing.output and "mixed2@150px" in listing.output
    assert [c["fingerprint"] for c in list_caches(work)][0] == other_file.backbone_fingerprint

    dry = runner.invoke(app, ["cache", "prune", "--workdir", str(work), "--dry-run"])
    assert dry.exit_code == 0 and "would remove 2 cache(s)" in dry.output
    assert len(list_caches(work)) == 3
    pruned = runner.invoke(
        app,
        ["cache", "prune", "--workdir", str(work), "--keep", base.backbone_fingerprint],
    )
    assert pruned.exit_code == 0 and "removed 1 cache(s)" in pruned.output, pruned.output
    left = {c["fingerprint"] for c in list_caches(work)}
    assert left == {base.backbone_fingerprint, other_file.backbone_fingerprint}
    assert not other_layer.cache_dir.exists()
    assert sorted(os.listdir(work / "cache")) == sorted(left)


def test_corrupt_parts_are_quarantined_and_recomputed(tmp_path):
    data = tmp_path / "data"
    write_images(data, range(12))
    config = make_config(tmp_path, data)
    runs = Runs(tmp_path)
    manifest, first, _ = runs.extract(config, part_rows=4)
    before = load_split(first.cache_dir, manifest.path, None)
    flipped, truncated, intact = parts(first.cache_dir)
    with open(flipped, "r+b") as handle:  # bytes inside the features' data pages
        handle.seek(flipped.stat().st_size // 2)
        handle.write(b"\x5a" * 16)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])

    manifest, second, report = runs.extract(config, part_rows=4)
    assert report["quarantined"] == 2 and report["parts_checked_in_full"] == 3
    assert (second.computed, second.reused) == (8, 4)
    quarantine = second.cache_dir / "quarantine"
    assert sorted(p.name for p in quarantine.iterdir()) == sorted([flipped.name, truncated.name])
    assert intact.exists()
    assert_each_once(second.cache_dir, manifest.path)
    after = load_split(second.cache_dir, manifest.path, None)
    assert after[0] == before[0] and np.array_equal(after[1], before[1])


_KILLED_RUN = """
import os, sys, time
from pathlib import Path
from inception_retrain.data.manifest import Manifest
from inception_retrain.config import RetrainConfig
from inception_retrain.features.extraction import extract_features

real_replace = os.replace
renames = []

def rename_then_stall(source, target):
    # Fault injection: the second part's temp file is fully written, then the process
    # stalls before its rename, so the SIGKILL lands mid-extraction with a temp file present.
    if os.path.basename(source).startswith(".part-"):
        renames.append(source)
        if len(renames) >= 2:
            time.sleep(600)
    real_replace(source, target)

os.replace = rename_then_stall
config = RetrainConfig.model_validate_json(sys.argv[1])
manifest = Manifest.model_validate_json(sys.argv[2])
extract_features(manifest, config.extraction, Path(sys.argv[3]), part_rows=4)
"""


def test_sigkill_mid_extraction_then_rerun_caches_each_image_once(tmp_path):
    data = tmp_path / "data"
    write_images(data, range(14))
    config = make_config(tmp_path, data, extract_batch_size=2)
    manifest = ingest(config.ingest, tmp_path / "run-killed")
    cache_root = tmp_path / "work" / "cache"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _KILLED_RUN,
            config.model_dump_json(),
            manifest.model_dump_json(),
            str(tmp_path / "run-killed"),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while not (
            list(cache_root.glob("*/part-*.parquet")) and list(cache_root.glob("*/.part-*"))
        ):
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "extraction never reached its second part"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    (cache_dir,) = cache_root.iterdir()
    assert len(list(cache_dir.glob(TEMP_GLOB))) == 1  # the unfinished part is not a part
    survivors = cached_ids(cache_dir)
    assert len(survivors) == 4  # exactly the one renamed part

    cache = extract_features(manifest, config.extraction, tmp_path / "run-rerun", part_rows=4)
    report = json.loads((tmp_path / "run-rerun" / "extract.json").read_text())
    assert (cache.computed, cache.reused) == (10, 4)
    assert report["stray_temp_files_removed"] == 1 and report["quarantined"] == 0
    assert_each_once(cache_dir, manifest.path)
    shutil.rmtree(tmp_path / "work")  # 14 x 75 KB of features; keep /tmp small
