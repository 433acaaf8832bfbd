"""Extraction: the manifest's ok images -> frozen-backbone features, cached as Parquet parts.

    >>> spec = ExtractionSpec(backbone=BackboneSpec(), cache_root="workdir/cache")
    >>> cache = extract_features(manifest, spec, run_dir)            # one process
    >>> cache.cache_dir, cache.computed, cache.reused
    (PosixPath('workdir/cache/3f2a...'), 5, 395)

    >>> plan = plan_extraction(manifest, spec)                       # distributed: shards
    >>> results = [compute_shard(s, plan.job) for s in plan.shards]  # anywhere, in any order
    >>> cache = finish_extraction(plan, results, manifest, run_dir, cluster="local:2")

Semantics:
  * One cache folder per backbone fingerprint, `<cache root>/<fingerprint>/` (weights
    content, layer, image size, preprocessing version, stored dtype and part format: see
    `backbone.backbone_fingerprint`); the root is `spec.cache_root` (WORKDIR/cache or
    `--feature-cache`: a folder or a URI such as s3://bucket/prefix). A new weights file or
    layer gets a new folder; other folders are never touched. `backbone.json` there records
    the fingerprint's inputs, the weights description and `last_used` (`cache prune` uses
    it).
  * Incremental: every part new or rewritten since the last check is read and verified
    first, the others' ids are read (`check_parts`, `verified.json`: unreadable parts are
    quarantined and their images recomputed), then only ok images whose content id is in no
    readable part are computed. A second run on unchanged data computes nothing.
  * Crash-safe: parts are named from their content ids and appear whole (a temp file renamed,
    or one object upload), so a kill loses at most the parts not yet written, and a retried
    or duplicated shard rewrites its own part: every image ends up cached exactly once. The
    next run removes stray temporary files. Locks: `feature_cache` (exclusive for the set-up
    and a single-process run, shared by shards; none on an object store).
  * One process (`extract_features`): streams every missing image through
    `feature_compute.compute_missing`, parts of `part_rows`. Distributed
    (`plan_extraction` -> `compute_shard` per shard -> `finish_extraction`): shards of
    `spec.shard_rows` manifest rows, each one part; the features are the same bytes.
  * Images that changed or no longer decode since ingestion are skipped and counted.
  * Augmented views (`spec.views` = K > 0): every train image also gets views
    1..K under `spec.augment` (`augmentation`), cached as view parts in the policy's view
    folder (`view_cache`) and checked, computed and sharded like the originals, as view
    jobs keyed by (content id, view). An unchanged rerun computes no view, raising K
    computes only the new view indices, a new policy computes its own views (the old folder
    stays for `cache prune`), a new train image computes its K + 1 rows. Validation and
    test images never get views.
  * Report: `run_dir/extract.json` (fingerprint and inputs, counts, images/s, bytes on disk;
    `views` with the views' counts).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from inception_retrain.data.manifest import ImageRows, Manifest, read_image_rows
from inception_retrain.features import feature_cache
from inception_retrain.features.backbone import (
    backbone_fingerprint,
    inference_function,
    load_backbone,
)
from inception_retrain.features.backbone_spec import BackboneSpec
from inception_retrain.features.extraction_spec import ExtractionSpec
from inception_retrain.features.feature_cache import FeatureCache
from inception_retrain.features.feature_compute import (
    PART_ROWS,
    Shard,
    ShardJob,
    ShardResult,
    compute_missing,
    make_shards,
    make_view_shards,
    process_backbone,
)
from inception_retrain.features.feature_parts import check_parts, feature_schema
from inception_retrain.features.view_extraction import ViewsFound, cached_views, check_views
from inception_retrain.plumbing import storage
from inception_retrain.plumbing.errors import DataError
from inception_retrain.plumbing.progress import Progress
from inception_retrain.plumbing.schemas import read_document, write_document

log = logging.getLogger(__name__)

REPORT_KIND, REPORT_VERSION, REPORT_FILE = "extract-report", 1, "extract.json"
MAX_LISTED_SKIPS = 100  # extract.json lists at most this many skipped content ids


@dataclass
class _SetUp:
    """What an extraction found before computing anything."""

    cache_dir: Path | str
    fingerprint: str
    inputs: dict
    description: str
    images: int
    todo: ImageRows
    quarantined: list
    stray: int
    parts_read_fully: int = 0  # parts the check decoded in full (new or rewritten ones)
    views: ViewsFound | None = None  # with --augment-views: the view folder's check
    view_jobs: ImageRows = field(default_factory=ImageRows)  # missing views: image rows
    view_indices: list[int] = field(default_factory=list)  # and their view indices

    def schema_metadata(self) -> dict:
        return {
            "fingerprint": self.fingerprint,
            "fingerprint_inputs": self.inputs,
            "weights": self.description,
        }


@contextmanager
def _set_up(manifest: Manifest, spec: ExtractionSpec, backbone) -> Iterator[_SetUp]:
    """Fingerprint, cache folder, clean-up and check of its parts, inside the write lock,
    which the block keeps (a single-process extraction computes inside it)."""
    fingerprint, inputs = backbone_fingerprint(
        backbone,
        spec.backbone.weights,
        spec.backbone.layer,
        spec.backbone.image_size,
        spec.feature_dtype,
    )
    description = spec.backbone.weights_source.description
    cache_dir = storage.join(spec.cache_root, fingerprint)
    rows = read_image_rows(Path(manifest.path))
    with feature_cache.writing(cache_dir):
        stray = feature_cache.remove_temp_files(cache_dir)
        feature_cache.record_use(cache_dir, fingerprint, inputs, description)
        check = check_parts(cache_dir, feature_cache.read_verified(cache_dir))
        feature_cache.write_verified(cache_dir, check.verified)
        todo = rows.where([cid not in check.cached for cid in rows.content_ids])
        set_up = _SetUp(
            cache_dir,
            fingerprint,
            inputs,
            description,
            len(rows),
            todo,
            check.quarantined,
            stray,
            check.read_fully,
        )
        views = check_views(cache_dir, rows, spec.views, spec.augment)
        if views is not None:
            set_up.views, set_up.view_jobs, set_up.view_indices = views
        yield set_up


def extract_features(
    manifest: Manifest, spec: ExtractionSpec, run_dir: Path, *, part_rows: int = PART_ROWS
) -> FeatureCache:
    """Make sure every ok image of `manifest` has cached features, in this process."""
    started = time.perf_counter()
    backbone = load_backbone(spec.backbone.weights, spec.backbone.layer, spec.backbone.image_size)
    with _set_up(manifest, spec, backbone) as set_up:
        shape = tuple(set_up.inputs["feature_shape"])
        schema = feature_schema(shape, spec.feature_dtype, set_up.schema_metadata())
        infer = inference_function(backbone, output_dtype=spec.feature_dtype)
        settings = {
            "image_size": spec.backbone.image_size,
            "batch_size": spec.batch_size,
            "part_rows": part_rows,
            "infer": infer,
        }
        with Progress(total=len(set_up.todo), description="extract", unit="img") as progress:
            result = compute_missing(
                backbone, set_up.todo, set_up.cache_dir, schema, progress=progress, **settings
            )
        view_result = None
        if set_up.views is not None:
            view_schema = feature_schema(
                shape, spec.feature_dtype, set_up.schema_metadata(), spec.augment.record()
            )
            jobs = set_up.view_jobs
            with Progress(total=len(jobs), description="views", unit="view") as progress:
                view_result = compute_missing(
                    backbone,
                    jobs,
                    set_up.views.views_dir,
                    view_schema,
                    progress=progress,
                    views=set_up.view_indices,
                    policy=spec.augment,
                    **settings,
                )
    counts = {"parts_written": result.parts_written, "part_rows": part_rows}
    view_counts = None
    if view_result is not None:
        counts["view_parts_written"] = view_result.parts_written
        counts["view_compute_seconds"] = round(view_result.seconds, 3)
        view_counts = (view_result.computed, view_result.skipped)
    return _finish(
        manifest,
        spec,
        run_dir,
        set_up,
        result.computed,
        result.skipped,
        result.seconds,
        started,
        counts,
        view_counts=view_counts,
    )


# --- distributed: plan, shards, finish ----------------------------------------------------------


class ExtractionPlan(BaseModel):
    """What a distributed extraction will compute: the shards and what they share."""

    spec: ExtractionSpec
    job: ShardJob
    shards: list[Shard]
    images: int
    fingerprint_inputs: dict
    description: str
    quarantined: list[str]
    stray: int
    started: float  # time.time() when planning began
    views: ViewsFound | None = None  # what the set-up found in the views' folder

    @property
    def todo(self) -> int:
        """Images to compute (view jobs not counted)."""
        return sum(len(shard.content_ids) for shard in self.shards if not shard.views)

    @property
    def view_todo(self) -> int:
        return sum(len(shard.views) for shard in self.shards)


def plan_extraction(manifest: Manifest, spec: ExtractionSpec) -> ExtractionPlan:
    """Fingerprint the backbone, check the cache and cut the missing images into shards."""
    started = time.time()
    backbone, _, _ = process_backbone(
        spec.backbone.weights, spec.backbone.layer, spec.backbone.image_size, spec.feature_dtype
    )
    with _set_up(manifest, spec, backbone) as set_up:
        pass  # the exclusive lock covers the check only; shards take it shared (`adding`)
    views = set_up.views
    shards = make_shards(set_up.todo, spec.shard_rows)
    if views is not None:
        shards += make_view_shards(
            set_up.view_jobs, set_up.view_indices, spec.shard_rows, len(shards)
        )
    job = ShardJob(
        cache_dir=str(set_up.cache_dir),
        weights=spec.backbone.weights,
        layer=spec.backbone.layer,
        image_size=spec.backbone.image_size,
        feature_dtype=spec.feature_dtype,
        fingerprint=set_up.fingerprint,
        schema_metadata=set_up.schema_metadata(),
        feature_shape=tuple(set_up.inputs["feature_shape"]),
        batch_size=spec.batch_size,
        views_dir=None if views is None else str(views.views_dir),
        policy=None if views is None else spec.augment,
    )
    return ExtractionPlan(
        spec=spec,
        job=job,
        shards=shards,
        images=set_up.images,
        fingerprint_inputs=set_up.inputs,
        description=set_up.description,
        quarantined=[str(p) for p in set_up.quarantined],
        stray=set_up.stray,
        started=started,
        views=views,
    )


def finish_extraction(
    plan: ExtractionPlan,
    results: list[ShardResult],
    manifest: Manifest,
    run_dir: Path,
    cluster: str | None = None,
) -> FeatureCache:
    """The report and FeatureCache of a distributed extraction, once every shard is done
    (`cluster`: where the shards ran, for the report)."""
    if sorted(r.index for r in results) != [s.index for s in plan.shards]:
        raise DataError("the extraction's shards did not all finish")
    set_up = _SetUp(
        cache_dir=plan.job.cache_dir,
        fingerprint=plan.job.fingerprint,
        inputs=plan.fingerprint_inputs,
        description=plan.description,
        images=plan.images,
        todo=ImageRows(),
        quarantined=plan.quarantined,
        stray=plan.stray,
        views=plan.views,
    )
    originals = [r for r in results if not r.of_views]
    view_results = [r for r in sorted(results, key=lambda r: r.index) if r.of_views]
    counts = {
        "parts_written": sum(1 for r in originals if r.computed),
        "shards": len(plan.shards),
        "shard_rows": plan.spec.shard_rows,
        "worker_processes": len({r.pid for r in results}),
        "backbone_loads_per_process": max((r.backbone_loads for r in results), default=0),
        "shard_seconds": round(sum(r.seconds for r in results), 3),
    }
    computed = sum(r.computed for r in originals)
    skipped = [cid for r in sorted(originals, key=lambda r: r.index) for cid in r.skipped]
    view_counts = None
    if plan.views is not None:
        counts["view_parts_written"] = sum(1 for r in view_results if r.computed)
        view_skipped = list(dict.fromkeys(cid for r in view_results for cid in r.skipped))
        view_counts = (sum(r.computed for r in view_results), view_skipped)
    wall = time.time() - plan.started
    return _finish(
        manifest,
        plan.spec,
        run_dir,
        set_up,
        computed,
        skipped,
        wall,
        None,
        counts,
        reused=plan.images - plan.todo,
        view_counts=view_counts,
        cluster=cluster,
    )


# --- the report -----------------------------------------------------------------------------------


def _finish(
    manifest: Manifest,
    spec: ExtractionSpec,
    run_dir: Path,
    set_up: _SetUp,
    computed: int,
    skipped: list[str],
    compute_seconds: float,
    started: float | None,
    counts: dict,
    reused: int | None = None,
    view_counts: tuple[int, list[str]] | None = None,  # (view rows computed, images skipped)
    cluster: str | None = None,
) -> FeatureCache:
    reused = set_up.images - len(set_up.todo) if reused is None else reused
    if set_up.images and reused + computed == 0:
        raise DataError(
            f"none of the {set_up.images} images in the manifest could be read for extraction "
            "(files changed or deleted since ingestion?)"
        )
    feature_shape = tuple(set_up.inputs["feature_shape"])
    cached_rows, bytes_on_disk = feature_cache.cache_size(set_up.cache_dir)
    raw_per_image = int(np.prod(feature_shape)) * 4
    per_image = bytes_on_disk / cached_rows if cached_rows else 0.0
    seconds = time.perf_counter() - started if started is not None else compute_seconds
    report = {
        "fingerprint": set_up.fingerprint,
        "fingerprint_inputs": set_up.inputs,
        "weights": spec.backbone.weights,
        "weights_description": set_up.description,
        "cache_dir": str(set_up.cache_dir),
        "manifest_fingerprint": manifest.fingerprint,
        "cluster": cluster,
        "images": set_up.images,
        "computed": computed,
        "reused": reused,
        "skipped": len(skipped),
        "skipped_content_ids": skipped[:MAX_LISTED_SKIPS],
        "quarantined": len(set_up.quarantined),
        "quarantined_parts": [str(path) for path in set_up.quarantined],
        "stray_temp_files_removed": set_up.stray,
        "parts_checked_in_full": set_up.parts_read_fully,
        **counts,
        "compute_seconds": round(compute_seconds, 3),
        "seconds": round(seconds, 3),
        "images_per_s": round(computed / compute_seconds, 2) if compute_seconds else None,
        "batch_size": spec.batch_size,
        "dtype": spec.feature_dtype,
        "feature_shape": list(feature_shape),
        "cached_images": cached_rows,
        "bytes_on_disk": bytes_on_disk,
        "bytes_per_image": round(per_image, 1),
        "raw_float32_bytes_per_image": raw_per_image,
        "size_vs_raw_float32": round(per_image / raw_per_image, 4),
        "views": None,
    }
    views = None
    if set_up.views is not None:
        report["views"] = set_up.views.report(*view_counts, spec.augment)
        views = cached_views(report["views"])
    report_path = write_document(Path(run_dir) / REPORT_FILE, REPORT_KIND, REPORT_VERSION, report)
    log.info(
        "extract: %d computed, %d reused, %d skipped, %d quarantined parts -> %s",
        computed,
        reused,
        len(skipped),
        len(set_up.quarantined),
        set_up.cache_dir,
    )
    if views is not None:
        log.info(
            "extract: views %d computed, %d reused -> %s",
            views.computed,
            views.reused,
            views.views_dir,
        )
    return FeatureCache(
        cache_dir=set_up.cache_dir,
        backbone=spec.backbone,
        backbone_fingerprint=set_up.fingerprint,
        manifest_fingerprint=manifest.fingerprint,
        feature_shape=feature_shape,
        dtype=spec.feature_dtype,
        computed=computed,
        reused=reused,
        report_path=report_path,
        views=views,
    )


def read_extract_report(run_dir: Path) -> FeatureCache:
    """The FeatureCache a finished run's extraction handed on, from its extract.json."""
    report = read_document(Path(run_dir) / REPORT_FILE, REPORT_KIND, REPORT_VERSION)
    inputs = report["fingerprint_inputs"]
    backbone = BackboneSpec(
        weights=report["weights"], layer=inputs["layer"], image_size=inputs["image_size"]
    )
    return FeatureCache(
        cache_dir=report["cache_dir"],
        backbone=backbone,
        backbone_fingerprint=report["fingerprint"],
        manifest_fingerprint=report["manifest_fingerprint"],
        feature_shape=tuple(report["feature_shape"]),
        dtype=report["dtype"],
        computed=report["computed"],
        reused=report["reused"],
        report_path=Path(run_dir) / REPORT_FILE,
        views=cached_views(report.get("views")),
    )
