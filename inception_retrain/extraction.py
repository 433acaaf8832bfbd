"""Extraction: the manifest's ok images -> frozen-backbone features, cached as Parquet parts.

    >>> cache = extract_features(manifest, config, run_dir)
    >>> cache.cache_dir, cache.computed, cache.reused
    (PosixPath('workdir/cache/3f2a...'), 5, 395)

Semantics:
  * One cache folder per backbone fingerprint, `WORKDIR/cache/<fingerprint>/` (weights
    content, layer, image size, preprocessing version, stored dtype: see
    `backbone.backbone_fingerprint`). A new weights file or layer gets a new folder; other
    folders are never touched. `backbone.json` there records the fingerprint's inputs,
    the weights description and `last_used` (updated by every extraction; `cache prune` uses it).
  * Incremental: every part is read and verified first (`check_parts`: unreadable parts are
    quarantined and their images recomputed), then only ok images whose content id is in no
    readable part are computed. A second run on unchanged data computes nothing.
  * Crash-safe: features go out in parts of at most `part_rows` images, each written to a
    temporary file and renamed, so a kill loses at most the parts not yet renamed; the next
    run removes stray temporary files and computes what is missing, so every image ends up
    cached exactly once. A lock serialises extractions into the same folder
    (`feature_cache.writing`).
  * Images that changed or no longer decode since ingestion are skipped and counted.
  * Memory is bounded by `part_rows` (one part being filled, one queued, one being written),
    not by the dataset's size. Parts are compressed and written on a background thread
    (pyarrow only; TensorFlow stays on the calling thread).
  * Report: `run_dir/extract.json` (fingerprint and inputs, counts, images/s, bytes on disk).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inception_retrain import feature_cache
from inception_retrain.backbone import backbone_fingerprint, inference_function, load_backbone
from inception_retrain.config import RetrainConfig
from inception_retrain.errors import DataError
from inception_retrain.feature_cache import FeatureCache
from inception_retrain.feature_parts import check_parts, feature_schema, schema_metadata, write_part
from inception_retrain.manifest import ImageRows, Manifest, read_image_rows
from inception_retrain.preprocess import image_dataset
from inception_retrain.progress import Progress
from inception_retrain.schemas import read_document, write_document

log = logging.getLogger(__name__)

# Images per part: bounds memory (~19 MB of float16 features per part in flight), what a kill
# loses, and the un-overlapped write of the last part (measured in bench/extract.py).
PART_ROWS = 256
REPORT_KIND, REPORT_VERSION, REPORT_FILE = "extract-report", 1, "extract.json"
MAX_LISTED_SKIPS = 100  # extract.json lists at most this many skipped content ids


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
    dtype = np.dtype(schema_metadata(schema)["dtype"])
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
    description = config.weights_source.description
    feature_shape = tuple(inputs["feature_shape"])
    cache_dir = feature_cache.cache_dir_for(config.workdir, fingerprint)
    rows = read_image_rows(Path(manifest.path))
    with feature_cache.writing(cache_dir):
        stray = feature_cache.remove_temp_files(cache_dir)
        feature_cache.record_use(cache_dir, fingerprint, inputs, description)
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
    cached_rows, bytes_on_disk = feature_cache.cache_size(cache_dir)
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
    report_path = write_document(run_dir / REPORT_FILE, REPORT_KIND, REPORT_VERSION, report)
    log.info(
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


def read_extract_report(run_dir: Path) -> FeatureCache:
    """The FeatureCache a finished run's extraction handed on, from its extract.json."""
    report = read_document(Path(run_dir) / REPORT_FILE, REPORT_KIND, REPORT_VERSION)
    return FeatureCache(
        cache_dir=Path(report["cache_dir"]),
        backbone_fingerprint=report["fingerprint"],
        manifest_fingerprint=report["manifest_fingerprint"],
        feature_shape=tuple(report["feature_shape"]),
        dtype=report["dtype"],
        computed=report["computed"],
        reused=report["reused"],
        report_path=Path(run_dir) / REPORT_FILE,
    )
