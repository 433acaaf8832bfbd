"""Ingestion stage: a source (demo, folder, tfds) -> a content-hashed, validated manifest.

Semantics:
  * Source: `demo` (generated into WORKDIR/demo-data if missing), a folder laid out as
    `ROOT/<class>/<files>` or `ROOT/<split>/<class>/<files>` (split: train, validation/val/
    valid, test; case-insensitive), or `tfds:NAME[?data_dir=DIR]` (materialised as files
    by `tasks.tfds_source`, then ingested as a folder). Files deeper than the class folder
    belong to that class.
  * Every file is one manifest row, `ok` or `skipped` with a reason (`REASONS`). Each image
    is fully decoded with Pillow (the same `to_rgb` as extraction and serving); its
    header size is checked against `max_pixels` before decoding (decompression bombs).
    Hidden files, `.DS_Store`, `Thumbs.db`, `desktop.ini`, `._*` and hidden or
    `__MACOSX` folders are ignored: no row.
  * Content id = sha256 of the bytes. Identical files appear once as `ok` (first by sorted
    path); later copies are `duplicate`, or `duplicate-conflicting-label` when their class
    differs (also listed in ingest.json).
  * Labels: sorted names of the classes that have ok images; fewer than 2 is a `DataError`.
  * Splits: explicit split folders win. Without them, `split_for(content_id, fractions)`
    hashes the content id, so an image never changes split as the dataset grows. With split
    folders, a missing validation/test folder is carved out of `train` the same way.
  * Writes `manifest.parquet`, `ingest.json` (counts) and `skipped.csv` (uri, reason,
    detail), in that order, before any `DataError`, so a failed run still shows why.

    >>> manifest = ingest(RetrainConfig(data="/data/flowers"), run_dir)
    >>> manifest.class_names, manifest.counts["ok"]
    (['daisy', 'rose'], 1234)
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError
from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.artifacts import Manifest
from inception_retrain.config import DEMO_SOURCE, RetrainConfig
from inception_retrain.errors import DataError
from inception_retrain.files import atomic_write_bytes, atomic_write_json, sha256_file
from inception_retrain.logs import run_logger
from inception_retrain.progress import Progress
from tasks import tfds_source
from tasks.demo_data import ensure_demo_data
from tasks.feature_cache import METADATA_KEY
from tasks.preprocess import IMAGE_EXTENSIONS, to_rgb

SPLITS = ("train", "validation", "test")
SPLIT_FOLDERS = {"train": "train", "validation": "validation", "val": "validation"}
SPLIT_FOLDERS.update({"valid": "validation", "test": "test"})
IGNORED_NAMES = {".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini"}
IGNORED_FOLDERS = {"__macosx"}

# Skip reasons, in the order a file is checked.
REASONS = {
    "unsupported-extension": "not one of " + "/".join(e[1:] for e in IMAGE_EXTENSIONS),
    "no-class-folder": "file sits directly in the root or a split folder, so it has no class",
    "outside-split-folders": "root has split folders, but this file is in another folder",
    "unreadable": "the file or folder cannot be read (permissions, broken link, I/O error)",
    "empty-file": "zero bytes",
    "not-an-image": "Pillow cannot identify it as an image",
    "too-many-pixels": "width x height over max_pixels (decompression bomb guard)",
    "truncated": "the image data ends early",
    "corrupt": "identified as an image, but decoding failed",
    "duplicate": "same bytes as an earlier file (by path) with the same class",
    "duplicate-conflicting-label": "same bytes as an earlier file (by path) in another class",
}

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("content_id", pa.string()),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("label_index", pa.int32()),
        pa.field("split", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("format", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
    ]
)


@dataclass
class Row:
    """One input file: where it is, what the folders say, and what validation found."""

    uri: str
    label: str | None = None
    split_folder: str | None = None
    content_id: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    reason: str = ""
    detail: str = ""
    label_index: int | None = None
    split: str | None = None

    @property
    def ok(self) -> bool:
        return not self.reason


# --- splits ------------------------------------------------------------------------------


def split_for(content_id: str, fractions: Sequence[float], names: Sequence[str] = SPLITS) -> str:
    """The split of a content id: a pure function of the id and the fractions.

    The first 60 bits of the sha256 hex give a uniform number in [0, 1), compared with
    the cumulative fractions (renormalised to sum 1).
    """
    position = int(content_id[:15], 16) / float(16**15)
    total = float(sum(fractions))
    cumulative = 0.0
    for name, fraction in zip(names, fractions, strict=True):
        cumulative += fraction / total
        if position < cumulative:
            return name
    return names[-1]


# --- finding files -----------------------------------------------------------------------


def _ignored(name: str) -> bool:
    return name.startswith(".") or name.lower() in IGNORED_NAMES


def _walk(root: Path, rows: list[Row], counters: Counter) -> list[Path]:
    """All candidate files under `root`, sorted; unreadable folders become rows."""

    def on_error(error: OSError) -> None:
        rows.append(Row(uri=str(error.filename), reason="unreadable", detail=error.strerror or ""))

    files = []
    for folder, dirs, names in os.walk(root, onerror=on_error):
        kept = [d for d in dirs if not d.startswith(".") and d.lower() not in IGNORED_FOLDERS]
        counters["ignored"] += len(dirs) - len(kept)
        dirs[:] = sorted(kept)
        for name in sorted(names):
            if _ignored(name):
                counters["ignored"] += 1
            else:
                files.append(Path(folder) / name)
    return files


def _layout(root: Path) -> tuple[str, set[str]]:
    """('split-folders', splits present) or ('class-folders', empty set)."""
    present = set()
    try:
        for entry in root.iterdir():
            if entry.is_dir() and entry.name.lower() in SPLIT_FOLDERS:
                present.add(SPLIT_FOLDERS[entry.name.lower()])
    except OSError as error:
        raise DataError(f"cannot read data folder {root}: {error.strerror}") from None
    return ("split-folders", present) if present else ("class-folders", set())


def _placed_row(root: Path, path: Path, layout: str) -> Row:
    """A row with label and split folder from the path, or a placement skip reason."""
    parts = path.relative_to(root).parts
    row = Row(uri=str(path))
    if layout == "split-folders":
        split = SPLIT_FOLDERS.get(parts[0].lower())
        if split is None:
            row.reason = "outside-split-folders" if len(parts) > 1 else "no-class-folder"
            return row
        row.split_folder, parts = split, parts[1:]
    if len(parts) < 2:
        row.reason = "no-class-folder"
        return row
    row.label = parts[0]
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        row.reason = "unsupported-extension"
    return row


# --- validating one file -----------------------------------------------------------------


def _decode_failure(error: Exception) -> str:
    message = str(error).lower()
    if isinstance(error, EOFError) or "truncated" in message or "premature end" in message:
        return "truncated"
    return "corrupt"


def examine(row: Row, max_pixels: int) -> Row:
    """Hash and fully decode `row.uri`; fills content id, size and format, or a reason."""
    path = row.uri
    try:
        if os.stat(path).st_size == 0:
            row.reason = "empty-file"
            return row
        row.content_id = sha256_file(path)
    except OSError as error:
        row.reason, row.detail = "unreadable", error.strerror or str(error)
        return row
    try:
        with Image.open(path) as image:
            row.format = image.format
            width, height = image.size  # from the header: nothing decoded yet
            if width * height > max_pixels:
                row.reason = "too-many-pixels"
                row.detail = f"{width}x{height} > max_pixels {max_pixels}"
                return row
            image.seek(0)  # first frame of an animation, as extraction uses
            rgb = to_rgb(image)  # full decode, EXIF rotation, RGB conversion
            row.width, row.height = rgb.size
    except Image.DecompressionBombError as error:
        row.reason, row.detail = "too-many-pixels", str(error)
    except UnidentifiedImageError as error:
        row.reason, row.detail = "not-an-image", str(error)
    except PermissionError as error:
        row.reason, row.detail = "unreadable", error.strerror or str(error)
    except Exception as error:  # any decoder failure is data, never a crash
        row.reason, row.detail = _decode_failure(error), f"{type(error).__name__}: {error}"
    if row.reason:
        row.width = row.height = None
    return row


def examine_all(rows: list[Row], max_pixels: int, workers: int | None = None) -> None:
    """`examine` every row without a reason yet, in a thread pool (Pillow and hashlib
    release the GIL), with a progress bar."""
    todo = [row for row in rows if not row.reason]
    workers = workers or min(16, (os.cpu_count() or 1) + 4)
    with (
        Progress(total=len(todo), description="ingest", unit="file") as progress,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest") as pool,
    ):
        for _ in pool.map(lambda row: examine(row, max_pixels), todo):
            progress.update(1)


# --- deciding labels, duplicates and splits ----------------------------------------------


def _mark_duplicates(rows: list[Row]) -> list[dict]:
    """Skip later copies of the same bytes; returns the conflicting-label groups."""
    first: dict[str, Row] = {}
    conflicts: dict[str, dict] = {}
    for row in rows:  # sorted by uri
        if not row.ok:
            continue
        kept = first.setdefault(row.content_id, row)
        if kept is row:
            continue
        if row.label == kept.label:
            row.reason = "duplicate"
        else:
            row.reason = "duplicate-conflicting-label"
            group = conflicts.setdefault(
                row.content_id,
                {
                    "content_id": row.content_id,
                    "kept": kept.uri,
                    "labels": [kept.label],
                    "uris": [kept.uri],
                },
            )
            group["labels"].append(row.label)
            group["uris"].append(row.uri)
        row.detail = f"same content as {kept.uri}"
    return list(conflicts.values())


def _assign_splits(rows: list[Row], layout: str, present: set[str], fractions) -> dict:
    """Set `row.split` where the content id or folder decides it; returns how."""
    share = dict(zip(SPLITS, fractions, strict=True))
    if layout == "class-folders":
        from_train = list(SPLITS)
    else:  # train files also fill splits that have no folder
        from_train = ["train"] + [s for s in SPLITS if s not in present and s != "train"]
    from_train_fractions = [share[s] for s in from_train]
    for row in rows:
        if row.reason not in ("", "duplicate", "duplicate-conflicting-label"):
            continue  # a split only means something for a valid image
        if row.split_folder and row.split_folder != "train":
            row.split = row.split_folder
        else:
            row.split = split_for(row.content_id, from_train_fractions, from_train)
    return {
        "splits_from_folders": sorted(present, key=SPLITS.index),
        "splits_from_hash": [s for s in from_train if layout == "class-folders" or s != "train"],
    }


# --- writing -----------------------------------------------------------------------------


def fingerprint(rows: list[Row]) -> str:
    """sha256 over the sorted (content_id, label_index, split) of the ok rows."""
    return keys_fingerprint((r.content_id, r.label_index, r.split) for r in rows if r.ok)


def keys_fingerprint(keys) -> str:
    """The manifest fingerprint of (content_id, label_index, split) keys, in any order."""
    digest = hashlib.sha256()
    for content_id, label_index, split in sorted(keys):
        digest.update(f"{content_id}\t{label_index}\t{split}\n".encode())
    return digest.hexdigest()


def _write_manifest(path: Path, rows: list[Row], class_names: list[str], source: str) -> None:
    columns = {
        "content_id": [r.content_id for r in rows],
        "uri": [r.uri for r in rows],
        "label": [r.label for r in rows],
        "label_index": [r.label_index for r in rows],
        "split": [r.split for r in rows],
        "width": [r.width for r in rows],
        "height": [r.height for r in rows],
        "format": [r.format for r in rows],
        "status": ["ok" if r.ok else "skipped" for r in rows],
        "reason": [r.reason for r in rows],
    }
    metadata = {METADATA_KEY: json.dumps({"class_names": class_names, "source": source})}
    table = pa.table(columns, schema=MANIFEST_SCHEMA.with_metadata(metadata))
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def _write_skipped(path: Path, rows: list[Row]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["uri", "reason", "detail"])
    writer.writerows((r.uri, r.reason, r.detail) for r in rows if not r.ok)
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def _counts(rows, class_names, source, root, layout, split_info, conflicts, ignored, seconds):
    ok = [r for r in rows if r.ok]
    per_class = Counter(r.label for r in ok)
    per_split_class: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
    for row in ok:
        per_split_class[row.split][row.label] = per_split_class[row.split].get(row.label, 0) + 1
    skipped_by_reason = Counter(r.reason for r in rows if not r.ok)
    return {
        "source": source,
        "root": str(root),
        "layout": layout,
        "files": len(rows),
        "ok": len(ok),
        "skipped": len(rows) - len(ok),
        "skipped_by_reason": dict(sorted(skipped_by_reason.items())),
        "ignored": ignored,
        "class_names": class_names,
        "per_class": {c: per_class[c] for c in class_names},
        "per_split": {s: sum(per_split_class[s].values()) for s in SPLITS},
        "per_split_class": per_split_class,
        "duplicates": skipped_by_reason["duplicate"]
        + skipped_by_reason["duplicate-conflicting-label"],
        "conflicting_label_duplicates": conflicts,
        **split_info,
        "seconds": round(seconds, 3),
    }


def _reason_summary(counts: dict) -> str:
    reasons = sorted(counts["skipped_by_reason"].items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{n} {reason}" for reason, n in reasons)


def _check_usable(counts: dict, described: str) -> None:
    """Raise the one-line DataError a user sees when the data cannot be trained on."""
    layouts = "ROOT/<class>/<images> or ROOT/<train|validation|test>/<class>/<images>"
    if counts["files"] == 0:
        raise DataError(f"no image files found in {described} (expected {layouts})")
    if counts["ok"] == 0:
        raise DataError(
            f"no valid images in {described}: {counts['skipped']} files skipped "
            f"({_reason_summary(counts)}); see skipped.csv in the run folder"
        )
    per_class = counts["per_class"]
    if len(per_class) < 2:
        found = ", ".join(f"{c} ({n} images)" for c, n in per_class.items())
        raise DataError(
            f"need at least 2 classes with valid images in {described}, found "
            f"{len(per_class)}: {found} (expected {layouts})"
        )
    if counts["per_split"]["train"] == 0:
        raise DataError(f"no training images in {described}: per split {counts['per_split']}")


def require_test_images(manifest: Manifest) -> None:
    """The retrain flow scores every model on the test split: an empty one is a DataError
    right after ingest, before extraction and training spend their time on a model that
    could never be evaluated or promoted."""
    per_split = manifest.counts["per_split"]
    if per_split.get("test", 0) == 0:
        raise DataError(
            f"the test split is empty (images per split: {per_split}), so no model could be "
            "evaluated: give --split-fractions a test share, add a test/ folder, or add images"
        )


# --- the stage ---------------------------------------------------------------------------


def resolve_source(
    config: RetrainConfig, materialise: Callable[[str, Path], Path] | None = None
) -> Path:
    """The folder to ingest for `config.data` (generating or materialising it if needed)."""
    if config.data == DEMO_SOURCE:
        return ensure_demo_data(config.demo_dir).absolute()
    if config.data.startswith(tfds_source.PREFIX):
        return (materialise or tfds_source.materialise_tfds)(config.data, config.workdir)
    root = Path(config.data).absolute()
    if not root.is_dir():
        raise DataError(f"data folder not found: {config.data}")
    return root


def ingest(
    config: RetrainConfig,
    run_dir: Path,
    materialise: Callable[[str, Path], Path] | None = None,
) -> Manifest:
    """Validate every file of `config.data` and write the manifest (see module docstring)."""
    started = time.monotonic()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    source = config.data
    root = resolve_source(config, materialise)
    described = source if Path(source).absolute() == root else f"{source} ({root})"

    layout, present = _layout(root)
    counters: Counter = Counter()
    unreadable_folders: list[Row] = []
    files = _walk(root, unreadable_folders, counters)
    rows = sorted(
        [_placed_row(root, path, layout) for path in files] + unreadable_folders,
        key=lambda r: r.uri,
    )
    examine_all(rows, config.max_pixels)
    conflicts = _mark_duplicates(rows)

    class_names = sorted({r.label for r in rows if r.ok})
    index = {name: i for i, name in enumerate(class_names)}
    for row in rows:
        row.label_index = index.get(row.label)
    split_info = _assign_splits(rows, layout, present, config.split_fractions)

    counts = _counts(
        rows, class_names, source, root, layout, split_info, conflicts,
        counters["ignored"], time.monotonic() - started,
    )  # fmt: skip
    manifest_path = run_dir / "manifest.parquet"
    _write_manifest(manifest_path, rows, class_names, source)
    atomic_write_json(run_dir / "ingest.json", counts)
    _write_skipped(run_dir / "skipped.csv", rows)
    run_logger(__name__).info(
        "ingested %s: %d ok, %d skipped (%s)",
        described, counts["ok"], counts["skipped"], _reason_summary(counts) or "none",
    )  # fmt: skip
    _check_usable(counts, described)
    return Manifest(
        path=manifest_path,
        fingerprint=fingerprint(rows),
        class_names=class_names,
        counts=counts,
    )


def _ingest_in_flow(config: RetrainConfig, run_dir: Path) -> Manifest:
    """`ingest`, with the tfds download as its own task run, retried on download errors."""
    return ingest(config, run_dir, materialise=tfds_source.materialise_tfds_task)


# Local validation is deterministic, so the stage itself is not retried.
ingest_task = task(_ingest_in_flow, name="ingest", cache_policy=NO_CACHE)
