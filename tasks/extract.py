"""Extraction stage: the manifest's ok images -> frozen-backbone features, cached as Parquet.

    >>> cache = extract_features(manifest, config, run_dir)
    >>> cache.cache_dir, cache.computed, cache.reused
    (PosixPath('workdir/cache/3f2a...'), 5, 395)

Semantics:
  * One cache folder per backbone fingerprint, `WORKDIR/cache/<fingerprint>/` (weights
    content, layer, image size, preprocessing version, stored dtype: see
    `tasks.backbone.backbone_fingerprint`). A new weights file or layer gets a new folder;
    other folders are never touched. `backbone.json` there records the fingerprint's inputs,
    the weights description and `last_used` (updated by every extraction; `cache prune` uses it).
  * Incremental: every part is read and verified first (`check_parts`: unreadable parts are
    quarantined and their images recomputed), then only ok images whose content id is in no
    readable part are computed. A second run on unchanged data computes nothing.
  * Crash-safe: features go out in parts of at most `part_rows` images, each written to a
    temporary file and renamed, so a kill loses at most the parts not yet renamed; the next
    run removes stray temporary files and computes what is missing, so every image ends up
    cached exactly once. A lock serialises extractions into the same folder
    (`tasks.cache_locks.writing`).
  * Images that changed or no longer decode since ingestion are skipped and counted.
  * Memory is bounded by `part_rows` (one part being filled, one queued, one being written),
    not by the dataset's size. Parts are compressed and written on a background thread
    (pyarrow only; TensorFlow stays on the calling thread).
  * Report: `run_dir/extract.json` (fingerprint and inputs, counts, images/s, bytes on disk).
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.artifacts import FeatureCache, Manifest
from inception_retrain.config import RetrainConfig
from inception_retrain.errors import DataError, retry_on_download_error
from inception_retrain.files import atomic_write_json, read_json
from inception_retrain.logs import run_logger
from inception_retrain.progress import Progress
from tasks import cache_locks
from tasks.backbone import (
    backbone_fingerprint,
    inference_function,
    load_backbone,
    weights_description,
)
from tasks.feature_cache import (
    METADATA_KEY,
    TEMP_GLOB,
    check_parts,
    feature_schema,
    parts,
    write_part,
)
from tasks.preprocess import image_dataset

# Images per part: bounds memory (~19 MB of float16 features per part in flight), what a kill
# loses, and the un-overlapped write of the last part (measured in bench/extract.py).
PART_ROWS = 256
EXTRACT_TIMEOUT_S = 12 * 3600
BACKBONE_JSON = "backbone.json"
MAX_LISTED_SKIPS = 100  # extract.json lists at most this many skipped content ids


@dataclass
class ImageRows:
    """The manifest's ok rows, in manifest order, one per content id."""

    content_ids: list[str] = field(default_factory=list)
    uris: list[str] = field(default_factory=list)
    label_indices: list[int] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.content_ids)

    def where(self, keep: Sequence[bool]) -> ImageRows:
        columns = (self.content_ids, self.uris, self.label_indices, self.splits)
        return ImageRows(*([v for v, k in zip(col, keep, strict=True) if k] for col in columns))


def read_ok_rows(manifest_path: Path) -> ImageRows:
    table = pq.read_table(
        manifest_path,
        columns=["content_id", "uri", "label_index", "split", "status"],
        filters=[("status", "=", "ok")],
    )
    rows = ImageRows()
    seen: set[str] = set()
    for cid, uri, label, split in zip(
        table.column("content_id").to_pylist(),
        table.column("uri").to_pylist(),
        table.column("label_index").to_pylist(),
        table.column("split").to_pylist(),
        strict=True,
    ):
        if cid in seen:  # the manifest promises unique ok ids; never cache one twice anyway
            continue
        seen.add(cid)
        rows.content_ids.append(cid)
        rows.uris.append(uri)
        rows.label_indices.append(int(label))
        rows.splits.append(split)
    return rows


# --- locking and the cache folder's bookkeeping ---------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def record_use(cache_dir: Path, fingerprint: str, inputs: dict, description: str) -> dict:
    """Create or refresh backbone.json (keeps `created`, sets `last_used` to now)."""
    import keras
    import tensorflow as tf

    path = cache_dir / BACKBONE_JSON
    try:
        created = read_json(path).get("created")
    except (OSError, ValueError, AttributeError):
        created = None
    info = {
        "fingerprint": fingerprint,
        "inputs": inputs,
        "weights_description": description,
        "feature_shape": inputs["feature_shape"],
        "dtype": inputs["feature_dtype"],
        "created": created or _now(),
        "last_used": _now(),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    atomic_write_json(path, info)
    return info


def remove_temp_files(cache_dir: Path) -> int:
    """Delete temporary parts left by killed writers (call with the lock held)."""
    stray = list(cache_dir.glob(TEMP_GLOB))
    for path in stray:
        path.unlink(missing_ok=True)
    return len(stray)


def cache_size(cache_dir: Path) -> tuple[int, int]:
    """(rows, bytes) over the readable parts, from Parquet footers only (cheap)."""
    rows = size = 0
    for part in parts(cache_dir):
        try:
            rows += pq.read_metadata(part).num_rows
            size += part.stat().st_size
        except Exception:  # unreadable: check_parts will quarantine it on the next run
            continue
    return rows, size


# --- the streaming computation ----------------------------------------------------------------


class PartWriter:
    """Writes parts on a background thread (a queue of one), overlapping compression and disk
    with compute. Only numpy/pyarrow run there. `background=False` writes inline."""

    def __init__(self, cache_dir: Path, schema, background: bool = True):
        self.cache_dir = cache_dir
        self.schema = schema
        self.written: list[Path] = []
        self._error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._thread = None
        if background:
            self._thread = threading.Thread(target=self._run, name="part-writer", daemon=True)
            self._thread.start()

    def submit(self, ids: list[str], labels: list[int], splits: list[str], features) -> None:
        self._raise_if_failed()
        if self._thread is None:
            self._write((ids, labels, splits, features))
        else:
            self._queue.put((ids, labels, splits, features))

    def _write(self, item) -> None:
        self.written.append(write_part(self.cache_dir, self.schema, *item))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._write(item)
                except BaseException as error:  # reported on the caller's thread
                    self._error = error

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Finish the queued parts (they are complete), then stop."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        self._raise_if_failed()


@dataclass
class ComputeResult:
    computed: int
    skipped: list[str]  # content ids that changed or failed to decode
    seconds: float
    parts_written: int


def compute_missing(
    backbone,
    rows: ImageRows,
    cache_dir: Path,
    schema,
    *,
    image_size: int,
    batch_size: int,
    part_rows: int = PART_ROWS,
    parallel_calls: int | None = None,
    prefetch: int | None = None,
    overlap_writes: bool = True,
    infer=None,
    progress: Progress | None = None,
) -> ComputeResult:
    """Stream `rows` through preprocessing and `backbone`, writing parts of `part_rows`.

    The knobs after `part_rows` exist for the benchmark's levers (`infer`: an already traced
    `inference_function(backbone, output_dtype=<the schema's dtype>)`); the stage uses the
    defaults.
    """
    started = time.perf_counter()
    if not len(rows):
        return ComputeResult(0, [], 0.0, 0)
    dtype = np.dtype(json.loads(schema.metadata[METADATA_KEY])["dtype"])
    size = int(np.prod(backbone.output_shape[1:]))
    infer = infer or inference_function(backbone, output_dtype=dtype.name)
    dataset = image_dataset(
        rows.uris,
        image_size,
        batch_size,
        parallel_calls=parallel_calls,
        prefetch=prefetch,
        content_ids=rows.content_ids,
    )
    writer = PartWriter(cache_dir, schema, background=overlap_writes)
    buffer = np.empty((part_rows, size), dtype)
    positions: list[int] = []
    processed = np.zeros(len(rows), bool)
    advanced = 0

    def flush() -> None:
        nonlocal buffer, positions
        if positions:
            writer.submit(
                [rows.content_ids[p] for p in positions],
                [rows.label_indices[p] for p in positions],
                [rows.splits[p] for p in positions],
                buffer[: len(positions)],
            )
            buffer = np.empty((part_rows, size), dtype)  # the writer owns the old one now
            positions = []

    try:
        for batch_positions, images in dataset:
            features = infer(images).numpy().reshape(len(images), size)
            batch_positions = batch_positions.numpy().tolist()
            start = 0
            while start < len(batch_positions):
                take = min(part_rows - len(positions), len(batch_positions) - start)
                fill = len(positions)
                buffer[fill : fill + take] = features[start : start + take]
                positions.extend(batch_positions[start : start + take])
                processed[batch_positions[start : start + take]] = True
                start += take
                if len(positions) == part_rows:
                    flush()
            if progress is not None:
                progress.update(batch_positions[-1] + 1 - advanced)
            advanced = batch_positions[-1] + 1
        flush()
    finally:
        writer.close()
    if progress is not None and advanced < len(rows):
        progress.update(len(rows) - advanced)
    skipped = [cid for cid, ok in zip(rows.content_ids, processed, strict=True) if not ok]
    elapsed = time.perf_counter() - started
    return ComputeResult(int(processed.sum()), skipped, elapsed, len(writer.written))


# --- the stage --------------------------------------------------------------------------------


def extract_features(
    manifest: Manifest, config: RetrainConfig, run_dir: Path, *, part_rows: int = PART_ROWS
) -> FeatureCache:
    """Make sure every ok image of `manifest` has cached features; returns the cache."""
    started = time.perf_counter()
    run_dir = Path(run_dir)
    backbone = load_backbone(config.weights, config.layer, config.image_size)
    fingerprint, inputs = backbone_fingerprint(
        backbone, config.weights, config.layer, config.image_size, config.feature_dtype
    )
    description = weights_description(config.weights)
    feature_shape = tuple(inputs["feature_shape"])
    cache_dir = Path(config.workdir) / "cache" / fingerprint
    rows = read_ok_rows(Path(manifest.path))
    with cache_locks.writing(cache_dir):
        stray = remove_temp_files(cache_dir)
        record_use(cache_dir, fingerprint, inputs, description)
        cached, quarantined = check_parts(cache_dir)
        todo = rows.where([cid not in cached for cid in rows.content_ids])
        schema = feature_schema(
            feature_shape,
            config.feature_dtype,
            {"fingerprint": fingerprint, "fingerprint_inputs": inputs, "weights": description},
        )
        with Progress(total=len(todo), description="extract", unit="img") as progress:
            result = compute_missing(
                backbone,
                todo,
                cache_dir,
                schema,
                image_size=config.image_size,
                batch_size=config.extract_batch_size,
                part_rows=part_rows,
                progress=progress,
            )
    reused = len(rows) - len(todo)
    if len(rows) and reused + result.computed == 0:
        raise DataError(
            f"none of the {len(rows)} images in the manifest could be read for extraction "
            "(files changed or deleted since ingestion?)"
        )
    cached_rows, bytes_on_disk = cache_size(cache_dir)
    raw_per_image = int(np.prod(feature_shape)) * 4
    per_image = bytes_on_disk / cached_rows if cached_rows else 0.0
    report = {
        "fingerprint": fingerprint,
        "fingerprint_inputs": inputs,
        "weights": config.weights,
        "weights_description": description,
        "cache_dir": str(cache_dir),
        "manifest_fingerprint": manifest.fingerprint,
        "images": len(rows),
        "computed": result.computed,
        "reused": reused,
        "skipped": len(result.skipped),
        "skipped_content_ids": result.skipped[:MAX_LISTED_SKIPS],
        "quarantined": len(quarantined),
        "quarantined_parts": [str(path) for path in quarantined],
        "stray_temp_files_removed": stray,
        "parts_written": result.parts_written,
        "compute_seconds": round(result.seconds, 3),
        "seconds": round(time.perf_counter() - started, 3),
        "images_per_s": round(result.computed / result.seconds, 2) if result.seconds else None,
        "batch_size": config.extract_batch_size,
        "part_rows": part_rows,
        "dtype": config.feature_dtype,
        "feature_shape": list(feature_shape),
        "cached_images": cached_rows,
        "bytes_on_disk": bytes_on_disk,
        "bytes_per_image": round(per_image, 1),
        "raw_float32_bytes_per_image": raw_per_image,
        "size_vs_raw_float32": round(per_image / raw_per_image, 4),
    }
    report_path = atomic_write_json(run_dir / "extract.json", report)
    run_logger(__name__).info(
        "extract: %d computed, %d reused, %d skipped, %d quarantined parts -> %s",
        result.computed,
        reused,
        len(result.skipped),
        len(quarantined),
        cache_dir,
    )
    return FeatureCache(
        cache_dir=cache_dir,
        backbone_fingerprint=fingerprint,
        manifest_fingerprint=manifest.fingerprint,
        feature_shape=feature_shape,
        dtype=config.feature_dtype,
        computed=result.computed,
        reused=reused,
        report_path=report_path,
    )


extract_task = task(
    extract_features,
    name="extract",
    cache_policy=NO_CACHE,
    timeout_seconds=EXTRACT_TIMEOUT_S,
    # Only a failed weights download is retried; a retry resumes from the cached parts.
    retries=2,
    retry_delay_seconds=[30, 120],
    retry_condition_fn=retry_on_download_error,
)


# --- listing and pruning caches (the `cache ls` / `cache prune` commands) -------------------


def list_caches(workdir: Path) -> list[dict]:
    """One dict per cache folder, most recently used first."""
    root = Path(workdir) / "cache"
    if not root.is_dir():
        return []
    caches = []
    for cache_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            info = read_json(cache_dir / BACKBONE_JSON)
        except (OSError, ValueError):
            info = {}
        images, size = cache_size(cache_dir)
        inputs = info.get("inputs", {})
        caches.append(
            {
                "fingerprint": cache_dir.name,
                "path": str(cache_dir),
                "images": images,
                "bytes": size,
                "dtype": info.get("dtype", "?"),
                "layer": inputs.get("layer", "?"),
                "image_size": inputs.get("image_size"),
                "weights_description": info.get("weights_description", "unknown"),
                "created": info.get("created", ""),
                "last_used": info.get("last_used", ""),
                "in_use": cache_locks.in_use(cache_dir),
            }
        )
    return sorted(caches, key=lambda c: c["last_used"], reverse=True)


def format_cache_table(caches: list[dict]) -> str:
    header = ("fingerprint", "images", "MB", "dtype", "last used", "in use", "layer", "weights")
    lines = [header] + [
        (
            c["fingerprint"],
            str(c["images"]),
            f"{c['bytes'] / 1e6:.1f}",
            c["dtype"],
            c["last_used"] or "-",
            "yes" if c["in_use"] else "-",
            f"{c['layer']}@{c['image_size']}px",
            c["weights_description"],
        )
        for c in caches
    ]
    widths = [max(len(row[i]) for row in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in lines
    )


def prune_caches(
    workdir: Path,
    keep: list[str] | None = None,
    keep_latest: int = 1,
    dry_run: bool = False,
) -> list[dict]:
    """Remove every cache except the `keep_latest` most recently used and those in `keep`.

    A cache in use (a running extraction writes it, or a stage reads it: `tasks.cache_locks`)
    is left alone. Returns the caches removed
    (or, with `dry_run`, that would be removed). A folder is first renamed away, so a removal
    interrupted halfway never leaves a half-deleted cache under its fingerprint.
    """
    caches = list_caches(workdir)
    kept = set(keep or []) | {c["fingerprint"] for c in caches[: max(keep_latest, 0)]}
    removed = []
    for cache in caches:
        if cache["fingerprint"] in kept:
            continue
        if dry_run:
            removed.append(cache)
            continue
        cache_dir = Path(cache["path"])
        try:
            with cache_locks.removable(cache_dir) as free:
                if not free:
                    run_logger(__name__).warning(
                        "cache %s is in use; not pruned", cache["fingerprint"]
                    )
                    continue
                trash = cache_dir.parent / f".trash-{cache_dir.name}-{secrets.token_hex(3)}"
                os.replace(cache_dir, trash)
        except DataError:  # another prune removed it meanwhile
            continue
        shutil.rmtree(trash, ignore_errors=True)
        removed.append(cache)
    return removed
