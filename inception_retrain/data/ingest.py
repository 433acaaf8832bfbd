"""Ingestion: a source (demo, folder, tfds) -> a validated, content-hashed manifest.

Semantics:
  * Source: `demo` (generated into WORKDIR/demo-data if missing), a folder laid out as
    `ROOT/<class>/<files>` or `ROOT/<split>/<class>/<files>` (split: train, validation/val/
    valid, test; case-insensitive), or `tfds:NAME[?data_dir=DIR]` (materialised as files by
    `inception_retrain.data.tfds_source`, then ingested as a folder). Files deeper than the class
    folder belong to that class.
  * Source folder (`source_folder`, the manifest's `source`; the sliced evaluation and the
    data checks group by it): the folder directly below the class folder that holds the
    file, at any depth (`photos/cats/phone-2024/a.jpg` and `photos/cats/phone-2024/x/b.jpg`
    -> `phone-2024`); a file directly in its class folder has the data root's own name
    (`photos/cats/c.jpg` -> `photos`), so each `--data` root is one source of its own.
  * Files are found by `image_files.find_files` and each one is checked by `images.examine`
    (the same finder and validator as prediction), so every file is one manifest row, `ok` or
    `skipped` with a reason: the file reasons of `images.REASONS`, or where it sits
    (`PLACEMENT_REASONS`), or a duplicate.
  * Content id = sha256 of the bytes. Identical files appear once as `ok` (first by sorted
    path); later copies are `duplicate`, or `duplicate-conflicting-label` when their class
    differs (also listed in ingest.json).
  * Labels: sorted names of the classes that have ok images; fewer than 2 is a `DataError`.
  * Splits: explicit split folders win. Without them, `split_for(content_id, fractions)`
    hashes the content id, so an image never changes split as the dataset grows. With split
    folders, a missing validation/test folder is carved out of `train` the same way.
  * Writes `manifest.parquet`, `ingest.json` (counts) and `skipped.csv` (uri, reason,
    detail), in that order, before any `DataError`, so a failed run still shows why.

    >>> manifest = ingest(IngestSpec(source="/data/flowers", workdir="/data/work"), run_dir)
    >>> manifest.class_names, manifest.counts["ok"]
    (['daisy', 'rose'], 1234)
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from inception_retrain.data import manifest as manifest_file
from inception_retrain.data import tfds_source
from inception_retrain.data.demo_data import DEMO_FOLDER, DEMO_SOURCE, ensure_demo_data
from inception_retrain.data.image_files import find_files
from inception_retrain.data.images import REASONS as FILE_REASONS
from inception_retrain.data.images import examine
from inception_retrain.data.ingest_spec import IngestSpec
from inception_retrain.data.manifest import SPLITS, Manifest, ManifestRow
from inception_retrain.plumbing import storage
from inception_retrain.plumbing.errors import DataError
from inception_retrain.plumbing.files import atomic_write
from inception_retrain.plumbing.progress import Progress
from inception_retrain.plumbing.schemas import write_document

log = logging.getLogger(__name__)

COUNTS_KIND, COUNTS_VERSION, COUNTS_FILE = "ingest-counts", 1, "ingest.json"
SPLIT_FOLDERS = {"train": "train", "validation": "validation", "val": "validation"}
SPLIT_FOLDERS.update({"valid": "validation", "test": "test"})
PLACEMENT_REASONS = {
    "no-class-folder": "file sits directly in the root or a split folder, so it has no class",
    "outside-split-folders": "root has split folders, but this file is in another folder",
}
DUPLICATE_REASONS = {
    "duplicate": "same bytes as an earlier file (by path) with the same class",
    "duplicate-conflicting-label": "same bytes as an earlier file (by path) in another class",
}
REASONS = {**FILE_REASONS, **PLACEMENT_REASONS, **DUPLICATE_REASONS}


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


# --- where each file sits ------------------------------------------------------------------


def _relative_parts(root: Path | str, path: Path | str) -> tuple[str, ...]:
    if isinstance(root, str):  # a URI prefix (s3://bucket/photos)
        return tuple(str(path)[len(root) :].strip("/").split("/"))
    return Path(path).relative_to(root).parts


def _layout(root: Path | str, files=()) -> tuple[str, set[str]]:
    """('split-folders', splits present) or ('class-folders', empty set)."""
    if isinstance(root, str):  # an object store has no folders: the files' keys say it
        first = {parts[0].lower() for f in files if len(parts := _relative_parts(root, f)) > 1}
        present = {SPLIT_FOLDERS[name] for name in first if name in SPLIT_FOLDERS}
        return ("split-folders", present) if present else ("class-folders", set())
    present = set()
    try:
        for entry in root.iterdir():
            if entry.is_dir() and entry.name.lower() in SPLIT_FOLDERS:
                present.add(SPLIT_FOLDERS[entry.name.lower()])
    except OSError as error:
        raise DataError(f"cannot read data folder {root}: {error.strerror}") from None
    return ("split-folders", present) if present else ("class-folders", set())


def root_name(root: Path | str) -> str:
    """The data root's own name (a folder's name, or the last part of a URI prefix)."""
    name = str(root).rstrip("/").rsplit("/", 1)[-1] if isinstance(root, str) else root.name
    return name or "data"


def source_folder(root: Path | str, class_parts: tuple[str, ...]) -> str:
    """The source folder of a file whose path below the split folder is `class_parts`
    (class folder first, file name last): see the module docstring."""
    return class_parts[1] if len(class_parts) > 2 else root_name(root)


def _placed_row(root: Path | str, path, layout: str) -> tuple[ManifestRow, str | None]:
    """A row with its label and source folder from the path (or a placement reason), and
    its split folder."""
    parts = _relative_parts(root, path)
    row, split_folder = ManifestRow(uri=str(path)), None
    if layout == "split-folders":
        split_folder = SPLIT_FOLDERS.get(parts[0].lower())
        if split_folder is None:
            row.reason = "outside-split-folders" if len(parts) > 1 else "no-class-folder"
            return row, None
        parts = parts[1:]
    if len(parts) < 2:
        row.reason = "no-class-folder"
        return row, None
    row.label = parts[0]
    row.source = source_folder(root, parts)
    return row, split_folder


def _examine_all(rows: list[ManifestRow], max_pixels: int, min_size: int) -> None:
    """`images.examine` every row without a reason yet, in a thread pool (Pillow and hashlib
    release the GIL), with a progress bar."""
    todo = [row for row in rows if not row.reason]
    workers = min(16, (os.cpu_count() or 1) + 4)

    def check(row: ManifestRow) -> None:
        found = examine(row.uri, max_pixels, min_size)
        row.reason, row.detail, row.content_id = found.reason, found.detail, found.content_id
        row.width, row.height, row.format = found.width, found.height, found.format
        row.mode, row.brightness = found.mode, found.brightness

    with (
        Progress(total=len(todo), description="ingest", unit="file") as progress,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest") as pool,
    ):
        for _ in pool.map(check, todo):
            progress.update(1)


# --- labels, duplicates and splits --------------------------------------------------------


def _mark_duplicates(rows: list[ManifestRow]) -> list[dict]:
    """Skip later copies of the same bytes; returns the conflicting-label groups."""
    first: dict[str, ManifestRow] = {}
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


def _assign_splits(rows, split_folders: dict[str, str], layout, present, fractions) -> dict:
    """Set `row.split` of valid images where a folder or the content id decides it."""
    share = dict(zip(SPLITS, fractions, strict=True))
    if layout == "class-folders":
        from_train = list(SPLITS)
    else:  # train files also fill splits that have no folder
        from_train = ["train"] + [s for s in SPLITS if s not in present and s != "train"]
    from_train_fractions = [share[s] for s in from_train]
    for row in rows:
        if row.reason not in ("", *DUPLICATE_REASONS):
            continue  # a split only means something for a valid image
        folder = split_folders.get(row.uri)
        if folder and folder != "train":
            row.split = folder
        else:
            row.split = split_for(row.content_id, from_train_fractions, from_train)
    return {
        "splits_from_folders": sorted(present, key=SPLITS.index),
        "splits_from_hash": [s for s in from_train if layout == "class-folders" or s != "train"],
    }


# --- writing ---------------------------------------------------------------------------------


def _write_skipped(path: Path, rows: list[ManifestRow]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["uri", "reason", "detail"])
    writer.writerows((r.uri, r.reason, r.detail) for r in rows if not r.ok)
    atomic_write(path, buffer.getvalue())


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
        "duplicates": sum(skipped_by_reason[r] for r in DUPLICATE_REASONS),
        "conflicting_label_duplicates": conflicts,
        **split_info,
        "seconds": round(seconds, 3),
    }


def reason_summary(counts: dict) -> str:
    """'12 corrupt, 3 empty-file' from ingest.json's counts."""
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
            f"({reason_summary(counts)}); see skipped.csv in the run folder"
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


# --- the stage -----------------------------------------------------------------------------


def resolve_source(
    source: str, workdir: Path, materialise: Callable[[str, Path], Path] | None = None
) -> Path | str:
    """The folder to ingest for `source` (generating the demo under `workdir` or
    materialising a tfds dataset there if needed), or the URI prefix of a remote one."""
    if source == DEMO_SOURCE:
        return ensure_demo_data(Path(workdir) / DEMO_FOLDER).absolute()
    if source.startswith(tfds_source.PREFIX):
        return (materialise or tfds_source.materialise_tfds)(source, Path(workdir))
    if storage.is_remote(source):  # s3://bucket/prefix: read where it is
        return str(storage.location(source))
    root = Path(source).absolute()
    if not root.is_dir():
        raise DataError(f"data folder not found: {source}")
    return root


def ingest(
    spec: IngestSpec,
    run_dir: Path,
    materialise: Callable[[str, Path], Path] | None = None,
) -> Manifest:
    """Validate every file of `spec.source` and write the manifest (see module docstring).

    `materialise(data, workdir) -> folder` turns a tfds source into files (default:
    `tfds_source.materialise_tfds`; the Prefect task passes a retried task).
    """
    started = time.monotonic()
    run_dir = Path(run_dir)
    source = spec.source
    root = resolve_source(source, spec.workdir, materialise)
    described = source if str(storage.location(source)) == str(root) else f"{source} ({root})"

    found = find_files([root])
    layout, present = _layout(root, found.files)
    placed = [_placed_row(root, path, layout) for path in found.files]
    split_folders = {row.uri: folder for row, folder in placed if folder}
    rows = [row for row, _ in placed]
    rows += [ManifestRow(uri=uri, reason="unreadable", detail=why) for uri, why in found.unreadable]
    rows.sort(key=lambda r: r.uri)
    _examine_all(rows, spec.max_pixels, spec.min_image_size)
    conflicts = _mark_duplicates(rows)

    class_names = sorted({r.label for r in rows if r.ok})
    index = {name: i for i, name in enumerate(class_names)}
    for row in rows:
        row.label_index = index.get(row.label)
    split_info = _assign_splits(rows, split_folders, layout, present, spec.split_fractions)

    counts = _counts(
        rows,
        class_names,
        source,
        root,
        layout,
        split_info,
        conflicts,
        found.ignored,
        time.monotonic() - started,
    )
    manifest = manifest_file.write_manifest(
        run_dir / manifest_file.FILE_NAME, rows, class_names, source, counts
    )
    write_document(run_dir / COUNTS_FILE, COUNTS_KIND, COUNTS_VERSION, counts)
    _write_skipped(run_dir / "skipped.csv", rows)
    log.info(
        "ingested %s: %d ok, %d skipped (%s)",
        described,
        counts["ok"],
        counts["skipped"],
        reason_summary(counts) or "none",
    )
    _check_usable(counts, described)
    return manifest
