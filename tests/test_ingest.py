"""Ingestion: real files on disk -> manifest.parquet, ingest.json, skipped.csv.

Covers every skip reason, silent OS litter, split stability and explicit split folders,
duplicates, the DataErrors a user sees, and the tfds path through `tfds.testing.mock_data`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from inception_retrain.config import RetrainConfig
from inception_retrain.data.ingest import ingest, split_for
from inception_retrain.data.manifest import SCHEMA as MANIFEST_SCHEMA
from inception_retrain.data.manifest import SPLITS
from inception_retrain.plumbing.errors import DataError
from inception_retrain.plumbing.schemas import read_document

# --- helpers -----------------------------------------------------------------------------


def _image_bytes(seed: int, fmt: str = "PNG", size: tuple[int, int] = (48, 36)) -> bytes:
    """A small, unique, real image (random pixels from `seed`)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` (a decompression-bomb stand-in)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def _config(data: Path, workdir: Path, **overrides) -> RetrainConfig:
    return RetrainConfig(data=str(data), workdir=workdir, **overrides)


def _rows(manifest_path: Path) -> list[dict]:
    return pq.read_table(manifest_path).to_pylist()


def _class_folder(root: Path, label: str, seeds, fmt: str = "PNG") -> list[Path]:
    ext = {"PNG": "png", "JPEG": "jpg"}[fmt]
    return [_write(root / label / f"{label}-{s}.{ext}", _image_bytes(s, fmt)) for s in seeds]


# --- every kind of bad file --------------------------------------------------------------


def test_folder_with_every_bad_file_kind(tmp_path):
    root = tmp_path / "data"
    good = {
        "cats/a.jpg": _image_bytes(1, "JPEG"),
        "cats/b.JPEG": _image_bytes(2, "JPEG"),
        "cats/c.png": _image_bytes(3, "PNG"),
        "cats/deeper/d.jpeg": _image_bytes(4, "JPEG"),  # nested: still class 'cats'
        "dogs/e.bmp": _image_bytes(5, "BMP"),
        "dogs/f.gif": _image_bytes(6, "GIF"),
        "dogs/g.webp": _image_bytes(7, "WEBP"),
        "dogs/h.PNG": _image_bytes(8, "PNG"),
    }
    full_png, full_jpeg = _image_bytes(9, "PNG"), _image_bytes(10, "JPEG")
    garbled = bytearray(_image_bytes(11, "PNG"))
    start = garbled.find(b"IDAT") + 54
    garbled[start : start + 40] = bytes(b ^ 0xFF for b in garbled[start : start + 40])
    bad = {
        "cats/empty.jpg": (b"", "empty-file"),
        "cats/cut.png": (full_png[: len(full_png) // 2], "truncated"),
        "cats/cut.jpg": (full_jpeg[: len(full_jpeg) // 2], "truncated"),
        "cats/garbled.png": (bytes(garbled), "corrupt"),
        "dogs/text.jpg": (b"hello, I am not a JPEG\n", "not-an-image"),
        "dogs/notes.txt": (b"some notes\n", "unsupported-extension"),
        "dogs/bomb.png": (_png_header_only(8000, 8000), "too-many-pixels"),
        "dogs/pillow-bomb.png": (_png_header_only(20000, 20000), "too-many-pixels"),
        "stray.jpg": (_image_bytes(12, "JPEG"), "no-class-folder"),
        "dogs/tiny.png": (_image_bytes(13, "PNG", size=(40, 20)), "too-small"),
    }
    litter = [
        "cats/.DS_Store",
        ".DS_Store",
        "dogs/Thumbs.db",
        "cats/desktop.ini",
        "cats/._a.jpg",
        ".hidden/x.jpg",
        "__MACOSX/cats/._c.png",
        "cats/.cache/y.png",
    ]
    for name, data in good.items():
        _write(root / name, data)
    for name, (data, _) in bad.items():
        _write(root / name, data)
    for name in litter:
        _write(root / name, _image_bytes(99, "PNG"))
    os.symlink(root / "gone.jpg", root / "dogs" / "dangling.jpg")  # unreadable
    expected_skips = {str(root / k): reason for k, (_, reason) in bad.items()}
    expected_skips[str(root / "dogs" / "dangling.jpg")] = "unreadable"

    run_dir = tmp_path / "run"
    manifest = ingest(_config(root, tmp_path / "work").ingest, run_dir)

    rows = _rows(manifest.path)
    ok = {r["uri"] for r in rows if r["status"] == "ok"}
    skipped = {r["uri"]: r["reason"] for r in rows if r["status"] == "skipped"}
    assert ok == {str(root / name) for name in good}
    assert skipped == expected_skips
    assert len(rows) == len(good) + len(expected_skips)  # litter makes no rows
    assert not any("DS_Store" in r["uri"] or "MACOSX" in r["uri"] for r in rows)

    counts = read_document(run_dir / "ingest.json", "ingest-counts", 1)
    assert counts == manifest.counts
    assert counts["ok"] == 8 and counts["skipped"] == 11 and counts["files"] == 19
    assert counts["skipped_by_reason"] == {
        "corrupt": 1,
        "empty-file": 1,
        "no-class-folder": 1,
        "not-an-image": 1,
        "too-many-pixels": 2,
        "too-small": 1,
        "truncated": 2,
        "unreadable": 1,
        "unsupported-extension": 1,
    }
    assert counts["per_class"] == {"cats": 4, "dogs": 4}
    assert sum(counts["per_split"].values()) == 8
    assert counts["class_names"] == manifest.class_names == ["cats", "dogs"]
    assert counts["source"] == str(root)

    with open(run_dir / "skipped.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert {r["uri"]: r["reason"] for r in table} == expected_skips
    details = {Path(r["uri"]).name: r["detail"] for r in table}
    assert "8000x8000 > max_pixels" in details["bomb.png"]  # our header check, pre-decode
    assert "decompression bomb" in details["pillow-bomb.png"]  # Pillow's own guard


def test_ok_rows_carry_decoded_size_format_label_and_split(tmp_path):
    root = tmp_path / "data"
    _write(root / "a" / "wide.png", _image_bytes(1, "PNG", size=(96, 40)))
    _write(root / "b" / "tall.jpg", _image_bytes(2, "JPEG", size=(40, 96)))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 96x40, displayed rotated: 40x96
    rotated = io.BytesIO()
    Image.fromarray(np.zeros((40, 96, 3), np.uint8)).save(rotated, "JPEG", exif=exif.tobytes())
    _write(root / "b" / "rotated.jpg", rotated.getvalue())
    manifest = ingest(_config(root, tmp_path / "w").ingest, tmp_path / "run")

    table = pq.read_table(manifest.path)
    assert table.schema.names == MANIFEST_SCHEMA.names
    metadata = json.loads(table.schema.metadata[b"inception_retrain"])
    assert metadata == {
        "schema": "inception-retrain/manifest",
        "schema_version": 2,
        "class_names": ["a", "b"],
        "source": str(root),
    }
    rows = {Path(r["uri"]).name: r for r in table.to_pylist()}
    wide = rows["wide.png"]
    assert (wide["width"], wide["height"], wide["format"]) == (96, 40, "PNG")
    assert (wide["label"], wide["label_index"], wide["status"], wide["reason"]) == (
        "a",
        0,
        "ok",
        "",
    )
    expected_id = hashlib.sha256((root / "a" / "wide.png").read_bytes()).hexdigest()
    assert wide["content_id"] == expected_id
    assert wide["split"] == split_for(expected_id, (0.8, 0.1, 0.1))
    assert (rows["tall.jpg"]["label_index"], rows["tall.jpg"]["format"]) == (1, "JPEG")
    assert (rows["rotated.jpg"]["width"], rows["rotated.jpg"]["height"]) == (40, 96)

    digest = hashlib.sha256()
    for cid, label, split in sorted(
        (r["content_id"], r["label_index"], r["split"]) for r in rows.values()
    ):
        digest.update(f"{cid}\t{label}\t{split}\n".encode())
    assert manifest.fingerprint == digest.hexdigest()


def test_max_pixels_applies_to_complete_images(tmp_path):
    root = tmp_path / "data"
    _write(root / "a" / "big.png", _image_bytes(1, size=(100, 60)))
    _class_folder(root, "a", [2, 3])
    _class_folder(root, "b", [4, 5])
    manifest = ingest(_config(root, tmp_path / "w", max_pixels=5000).ingest, tmp_path / "run")
    reasons = {Path(r["uri"]).name: r["reason"] for r in _rows(manifest.path)}
    assert reasons["big.png"] == "too-many-pixels"
    assert manifest.counts["ok"] == 4


INGEST = """
import sys
from pathlib import Path
from inception_retrain.config import RetrainConfig
from inception_retrain.data.ingest import ingest
data, workdir, run_dir = sys.argv[1:]
print(ingest(RetrainConfig(data=data, workdir=workdir).ingest, Path(run_dir)).path)
"""


def unprivileged(command: list[str]) -> list[str] | None:
    """`command` as this user without the capabilities that let root read any file
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so a mode-000 file is unreadable even as root;
    None where they cannot be dropped."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    drop = [setpriv, "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]
    probe = subprocess.run([*drop, "true"], capture_output=True)
    return [*drop, *command] if probe.returncode == 0 else None


def test_file_without_read_permission_is_unreadable(tmp_path, monkeypatch):
    """A file the ingesting process cannot open is skipped as unreadable. Root reads any
    file, so as root the ingest runs without the capabilities that allow it (setpriv);
    where they cannot be dropped, the read error is injected instead."""
    root = tmp_path / "data"
    _class_folder(root, "a", [1, 2])
    _class_folder(root, "b", [3, 4])
    locked = _write(root / "b" / "locked.png", _image_bytes(5))
    locked.chmod(0)
    command = unprivileged([sys.executable, "-c", INGEST, str(root), str(tmp_path / "w")])
    try:
        if command is not None:
            done = subprocess.run(
                [*command, str(tmp_path / "run")], capture_output=True, text=True, timeout=300
            )
            assert done.returncode == 0, done.stderr[-3000:]
            manifest_path = Path(done.stdout.strip().splitlines()[-1])
        else:  # no way to drop root's privileges here: the error an open() would raise
            from inception_retrain.plumbing import storage

            real_read = storage.read_bytes

            def refuse(value):
                if Path(str(value)) == locked:
                    raise PermissionError(13, "Permission denied", str(value))
                return real_read(value)

            monkeypatch.setattr(storage, "read_bytes", refuse)
            manifest_path = ingest(_config(root, tmp_path / "w").ingest, tmp_path / "run").path
    finally:
        locked.chmod(0o644)
    rows = _rows(manifest_path)
    reasons = {Path(r["uri"]).name: r["reason"] for r in rows}
    assert reasons["locked.png"] == "unreadable"
    assert sum(r["status"] == "ok" for r in rows) == 4


# --- splits ------------------------------------------------------------------------------


def test_split_for_is_pure_and_respects_fractions():
    ids = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(3000)]
    for fractions in [(0.8, 0.1, 0.1), (0.5, 0.25, 0.25), (0.6, 0.0, 0.4)]:
        splits = [split_for(cid, fractions) for cid in ids]
        assert splits == [split_for(cid, fractions) for cid in ids]  # pure
        for name, fraction in zip(SPLITS, fractions, strict=True):
            assert abs(splits.count(name) / len(ids) - fraction) < 0.03, (name, fractions)
    assert {split_for(cid, (1.0, 0.0, 0.0)) for cid in ids} == {"train"}


def test_existing_images_keep_their_split_when_the_dataset_grows(tmp_path):
    root = tmp_path / "data"
    _class_folder(root, "a", range(0, 30))
    _class_folder(root, "b", range(100, 130), "JPEG")
    first = ingest(_config(root, tmp_path / "w").ingest, tmp_path / "run1")
    before = {r["content_id"]: r["split"] for r in _rows(first.path)}
    assert set(before.values()) == set(SPLITS)

    _class_folder(root, "a", range(30, 60))
    _class_folder(root, "b", range(130, 160))
    _class_folder(root, "c", range(200, 220))  # a new class too
    second = ingest(_config(root, tmp_path / "w").ingest, tmp_path / "run2")
    after = {r["content_id"]: r["split"] for r in _rows(second.path)}
    assert len(after) == 140
    assert all(after[cid] == split for cid, split in before.items())
    assert second.fingerprint != first.fingerprint
    again = ingest(_config(root, tmp_path / "w").ingest, tmp_path / "run3")
    assert again.fingerprint == second.fingerprint


def test_explicit_split_folders_win(tmp_path):
    root = tmp_path / "data"
    for split in ("train", "validation", "test"):
        for label in ("x", "y"):
            base = {"train": 0, "validation": 100, "test": 200}[split] + (label == "y") * 50
            _class_folder(root / split, label, range(base, base + 8))
    manifest = ingest(_config(root, tmp_path / "w").ingest, tmp_path / "run")
    for row in _rows(manifest.path):
        assert row["status"] == "ok"
        assert row["split"] == Path(row["uri"]).relative_to(root).parts[0]
        assert row["label"] == Path(row["uri"]).parent.name
    counts = manifest.counts
    assert counts["layout"] == "split-folders"
    assert counts["per_split"] == {"train": 16, "validation": 16, "test": 16}
    assert counts["splits_from_folders"] == ["train", "validation", "test"]
    assert counts["splits_from_hash"] == []


def test_missing_split_folder_is_carved_from_train(tmp_path):
    root = tmp_path / "data"
    _class_folder(root / "train", "x", range(0, 40))
    _class_folder(root / "train", "y", range(40, 80))
    _class_folder(root / "Test", "x", range(80, 84))  # split folder names: any case
    _class_folder(root / "Test", "y", range(84, 88))
    _write(root / "extra" / "x" / "z.png", _image_bytes(90))
    _write(root / "train" / "loose.png", _image_bytes(91))
    manifest = ingest(_config(root, tmp_path / "w").ingest, tmp_path / "run")
    rows = _rows(manifest.path)
    reasons = {Path(r["uri"]).name: r["reason"] for r in rows if r["status"] == "skipped"}
    assert reasons == {"z.png": "outside-split-folders", "loose.png": "no-class-folder"}
    for row in rows:
        if row["status"] != "ok":
            continue
        if "/Test/" in row["uri"]:
            assert row["split"] == "test"
        else:  # train folder: train or validation by hash, never test
            expected = split_for(row["content_id"], (0.8, 0.1), ("train", "validation"))
            assert row["split"] == expected
    counts = manifest.counts
    assert counts["splits_from_folders"] == ["train", "test"]
    assert counts["splits_from_hash"] == ["validation"]
    assert counts["per_split"]["test"] == 8 and counts["per_split"]["validation"] > 0


# --- duplicates --------------------------------------------------------------------------


def test_duplicates_are_counted_once_and_conflicts_reported(tmp_path):
    root = tmp_path / "data"
    _class_folder(root, "a", [1, 2, 3])
    _class_folder(root, "b", [4, 5, 6])
    same = _image_bytes(1)  # identical to a/a-1.png
    _write(root / "a" / "z-copy.png", same)  # same class, sorts after a-1.png
    _write(root / "b" / "conflict.png", same)  # other class
    run_dir = tmp_path / "run"
    manifest = ingest(_config(root, tmp_path / "w").ingest, run_dir)

    rows = {str(Path(r["uri"]).relative_to(root)): r for r in _rows(manifest.path)}
    assert rows["a/a-1.png"]["status"] == "ok"
    assert rows["a/z-copy.png"]["reason"] == "duplicate"
    assert rows["b/conflict.png"]["reason"] == "duplicate-conflicting-label"
    cid = rows["a/a-1.png"]["content_id"]
    assert rows["b/conflict.png"]["content_id"] == cid
    assert [r["content_id"] for r in rows.values() if r["status"] == "ok"].count(cid) == 1
    counts = json.loads((run_dir / "ingest.json").read_text())
    assert counts["ok"] == 6 and counts["duplicates"] == 2
    assert counts["per_class"] == {"a": 3, "b": 3}
    assert counts["conflicting_label_duplicates"] == [
        {
            "content_id": cid,
            "kept": str(root / "a" / "a-1.png"),
            "labels": ["a", "b"],
            "uris": [str(root / "a" / "a-1.png"), str(root / "b" / "conflict.png")],
        }
    ]


# --- errors a user sees ------------------------------------------------------------------


def test_fewer_than_two_classes_is_a_data_error(tmp_path):
    root = tmp_path / "data"
    _class_folder(root, "only", [1, 2, 3])
    _write(root / "broken" / "x.jpg", b"")  # a folder with no valid image is no class
    with pytest.raises(DataError, match=r"need at least 2 classes .* found 1: only \(3 images\)"):
        ingest(_config(root, tmp_path / "w").ingest, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "ingest.json").read_text())["ok"] == 3


def test_all_files_corrupt_is_a_data_error_with_counts(tmp_path):
    root = tmp_path / "data"
    png = _image_bytes(1)
    _write(root / "a" / "1.png", png[:60])
    _write(root / "a" / "2.png", png[: len(png) // 2])
    _write(root / "b" / "3.jpg", b"plain text")
    run_dir = tmp_path / "run"
    with pytest.raises(DataError) as caught:
        ingest(_config(root, tmp_path / "w").ingest, run_dir)
    message = str(caught.value)
    assert message == (
        f"no valid images in {root}: 3 files skipped (2 truncated, 1 not-an-image); "
        "see skipped.csv in the run folder"
    )
    assert "\n" not in message
    # The run folder still shows what was skipped.
    assert json.loads((run_dir / "ingest.json").read_text())["skipped"] == 3
    assert len((run_dir / "skipped.csv").read_text().splitlines()) == 4
    assert pq.read_table(run_dir / "manifest.parquet").num_rows == 3


def test_empty_folder_is_a_data_error(tmp_path):
    (tmp_path / "data" / "a").mkdir(parents=True)
    _write(tmp_path / "data" / ".DS_Store", b"x")
    with pytest.raises(DataError, match="no image files found in"):
        ingest(_config(tmp_path / "data", tmp_path / "w").ingest, tmp_path / "run")


# --- demo and tfds sources ---------------------------------------------------------------


def test_demo_source_is_generated_and_its_broken_files_counted(tmp_path):
    from inception_retrain.data.demo_data import BROKEN_FILES

    config = RetrainConfig(data="demo", workdir=tmp_path / "w")
    manifest = ingest(config.ingest, tmp_path / "run")
    counts = manifest.counts
    assert (tmp_path / "w" / "demo-data" / ".demo-data.json").is_file()
    assert counts["ok"] == 400 and counts["per_class"] == {"blobs": 200, "stripes": 200}
    assert counts["skipped"] == 3
    skipped = {
        str(Path(r["uri"]).relative_to(config.demo_dir.absolute())): r["reason"]
        for r in _rows(manifest.path)
        if r["status"] == "skipped"
    }
    assert skipped == BROKEN_FILES
    assert counts["ignored"] == 2  # stripes/.DS_Store and the hidden .demo-data.json


def _tfds_metadata(name: str, data_dir: Path, splits: dict[str, int]) -> None:
    """Write tfds metadata with these split names, so mock_data serves those splits."""
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(data_dir=str(data_dir)):
        builder = tfds.builder(name)
        infos = [
            tfds.core.SplitInfo(name=split, shard_lengths=[n], num_bytes=0)
            for split, n in splits.items()
        ]
        builder.info.set_splits(tfds.core.SplitDict(infos))
        Path(builder.data_dir).mkdir(parents=True, exist_ok=True)
        builder.info.write_to_directory(builder.data_dir)


def test_tfds_source_with_only_train_gets_hash_splits(tmp_path):
    import tensorflow_datasets as tfds

    workdir = tmp_path / "w"
    # tfds mock images have random sizes, some below the default minimum image size
    config = RetrainConfig(data="tfds:cats_vs_dogs", workdir=workdir, min_image_size=1)
    # data_dir: mock_data's default would point into the installed tfds package.
    with tfds.testing.mock_data(num_examples=12, data_dir=str(tmp_path / "tfds")):
        manifest = ingest(config.ingest, tmp_path / "run1")
    root = workdir / "sources" / "tfds" / "cats_vs_dogs"
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    assert files and {p.relative_to(root).parts[0] for p in files} == {"train"}
    assert {p.parent.name for p in files} <= {"cat", "dog"}
    for path in files:  # original encoded bytes, named by their content id
        assert path.stem == hashlib.sha256(path.read_bytes()).hexdigest()
        assert path.suffix == ".png" and path.read_bytes().startswith(b"\x89PNG")
    counts = manifest.counts
    assert manifest.class_names == ["cat", "dog"]
    assert counts["source"] == "tfds:cats_vs_dogs" and counts["root"] == str(root.absolute())
    assert counts["ok"] == len(files)
    assert counts["splits_from_folders"] == ["train"]
    assert counts["splits_from_hash"] == ["validation", "test"]
    for row in _rows(manifest.path):
        assert row["content_id"] == Path(row["uri"]).stem
        assert row["split"] == split_for(row["content_id"], (0.8, 0.1, 0.1))

    # Idempotent: nothing is rewritten, with or without the completion marker.
    stamps = {p: p.stat().st_mtime_ns for p in files}
    marker = root / ".materialised.json"
    assert json.loads(marker.read_text())["written"] == len(files)
    marker.unlink()
    with tfds.testing.mock_data(num_examples=12, data_dir=str(tmp_path / "tfds")):
        again = ingest(config.ingest, tmp_path / "run2")
    assert json.loads(marker.read_text())["written"] == 0
    assert {p: p.stat().st_mtime_ns for p in files} == stamps
    assert again.fingerprint == manifest.fingerprint


def test_tfds_splits_map_to_split_folders(tmp_path):
    import tensorflow_datasets as tfds

    from inception_retrain.data.tfds_source import materialise_tfds

    data_dir = tmp_path / "tfds"
    _tfds_metadata("beans", data_dir, {"train": 3, "validation": 3, "test": 3, "extra": 3})
    with tfds.testing.mock_data(num_examples=3, data_dir=str(data_dir)):
        root = materialise_tfds(f"tfds:beans?data_dir={data_dir}", tmp_path / "w")
    assert root == (tmp_path / "w" / "sources" / "tfds" / "beans").absolute()
    labels = {"angular_leaf_spot", "bean_rust", "healthy"}
    for split in ("train", "validation", "test"):
        files = [p for p in (root / split).rglob("*") if p.is_file()]
        assert len(files) == 3 and {p.parent.name for p in files} <= labels
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["test", "train", "validation"]
    report = json.loads((root / ".materialised.json").read_text())
    assert report["left_out_splits"] == ["extra"]
    assert report["splits"] == {"train": 3, "validation": 3, "test": 3}


def test_unknown_tfds_name_is_a_data_error(tmp_path):
    config = RetrainConfig(data="tfds:no_such_dataset_here", workdir=tmp_path / "w")
    with pytest.raises(DataError, match="unknown tensorflow-datasets name 'no_such_dataset_here'"):
        ingest(config.ingest, tmp_path / "run")


@pytest.mark.slow
def test_ingest_task_in_a_flow_runs_the_tfds_download_as_its_own_task(tmp_path):
    import tensorflow_datasets as tfds
    from prefect import flow
    from prefect.client.orchestration import get_client

    from inception_retrain.tasks.ingest import ingest_task

    @flow(name="ingest-only")
    def ingest_only(config: RetrainConfig, run_dir: Path):
        return ingest_task(config.ingest, run_dir)

    config = RetrainConfig(data="tfds:cats_vs_dogs", workdir=tmp_path / "w", min_image_size=1)
    with tfds.testing.mock_data(num_examples=10, data_dir=str(tmp_path / "tfds")):
        state = ingest_only(config, tmp_path / "run", return_state=True)
    assert state.is_completed(), state.message
    manifest = state.result()
    assert manifest.class_names == ["cat", "dog"] and manifest.counts["ok"] == 10
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs()
    names = {run.name.rsplit("-", 1)[0] for run in runs if run.flow_run_id == flow_run_id}
    assert names == {"ingest", "materialise-tfds"}
