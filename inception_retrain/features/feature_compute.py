"""Computing features: the streaming loop of one process, and a shard of a distributed run.

`compute_missing` streams image rows through preprocessing and the backbone and writes a
Parquet part every `part_rows` images (`feature_parts.write_part`, named from its content
ids), on a background thread that overlaps compression and disk with compute. Memory is
bounded by `part_rows` (one part filling, one queued, one being written), not by the number
of images. The single-process extraction runs it over every missing image.

Augmented views (`inception_retrain.features.augmentation`) go the same way: a view job is an image
row with a view index, `views`, and the rows of one image come one after another so the image
is decoded once for all its views (`preprocess.augmented_dataset`); the parts are view parts
(`feature_parts`), written into the policy's view folder.

A distributed extraction cuts the missing images into shards of a fixed number of manifest
rows (`make_shards`; view jobs into shards of as many views, `make_view_shards`) and runs
`compute_shard` once per shard, in any process, on any machine:

  * a shard writes one part named from the content ids it was given (`Shard.part`), so a
    retried shard, or one run twice by two workers, replaces that part with the same rows:
    no image is ever cached twice;
  * the process loads the backbone once (`process_backbone`, a per-process cache keyed by
    weights, layer, size and dtype), not once per shard, and checks that its fingerprint is
    the one the extraction planned for, so a worker with other weights never writes into
    this cache;
  * `threads` bounds TensorFlow's thread pools in that process (set before TensorFlow
    starts its runtime; a process that already ran TensorFlow keeps its pools), so N worker
    processes on N cores do not oversubscribe them;
  * images and the cache may be local or at a URI (`storage`): a worker needs nothing local.

    >>> shards = make_shards(rows, shard_rows=256)
    >>> result = compute_shard(shards[0], job)     # job: a ShardJob (what every shard shares)
    >>> result.computed, result.skipped
    (256, [])
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel

from inception_retrain.data.manifest import ImageRows
from inception_retrain.features import feature_cache
from inception_retrain.features.augmentation import AugmentPolicy, view_arrays
from inception_retrain.features.feature_parts import (
    feature_schema,
    part_name,
    schema_metadata,
    write_part,
)
from inception_retrain.features.preprocess import augmented_dataset, image_dataset
from inception_retrain.plumbing.errors import WeightsError
from inception_retrain.plumbing.progress import Progress

log = logging.getLogger(__name__)

# Images per part: bounds memory (~19 MB of float16 features per part in flight), what a kill
# loses, and the un-overlapped write of the last part (measured in bench/extract.py).
PART_ROWS = 256


class PartWriter:
    """Writes parts on a background thread (a queue of one), overlapping compression and disk
    with compute. Only numpy/pyarrow run there. `background=False` writes inline."""

    def __init__(self, cache_dir, schema, background: bool = True):
        self.cache_dir = cache_dir
        self.schema = schema
        self.written: list = []
        self._error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._thread = None
        if background:
            self._thread = threading.Thread(target=self._run, name="part-writer", daemon=True)
            self._thread.start()

    def submit(
        self, ids: list[str], labels: list[int], splits: list[str], features, views=None
    ) -> None:
        self._raise_if_failed()
        if self._thread is None:
            self._write((ids, labels, splits, features, views))
        else:
            self._queue.put((ids, labels, splits, features, views))

    def _write(self, item) -> None:
        *columns, views = item
        self.written.append(write_part(self.cache_dir, self.schema, *columns, views=views))

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
    cache_dir,
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
    views: list[int] | None = None,
    policy: AugmentPolicy | None = None,
) -> ComputeResult:
    """Stream `rows` through preprocessing and `backbone`, writing parts of `part_rows`.

    With `views` (one view index per row, rows of one image consecutive) and `policy`, the
    rows are view jobs and the parts view parts (`schema` made with `views=`).
    The knobs after `part_rows` exist for the benchmark's levers and for shards (`infer`: an
    already traced `inference_function(backbone, output_dtype=<the schema's dtype>)`).
    """
    from inception_retrain.features.backbone import inference_function

    started = time.perf_counter()
    if not len(rows):
        return ComputeResult(0, [], 0.0, 0)
    dtype = np.dtype(schema_metadata(schema)["dtype"])
    size = int(np.prod(backbone.output_shape[1:]))
    infer = infer or inference_function(backbone, output_dtype=dtype.name)
    dataset = _dataset(
        rows.uris,
        rows.content_ids,
        views,
        policy,
        image_size,
        batch_size,
        parallel_calls=parallel_calls,
        prefetch=prefetch,
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
                None if views is None else [views[p] for p in positions],
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


def _dataset(uris, content_ids, views, policy, image_size, batch_size, **knobs):
    """The images of `uris` (`views` None), or views `views` of them under `policy`."""
    if views is None:
        return image_dataset(uris, image_size, batch_size, content_ids=content_ids, **knobs)
    transforms, contrasts = view_arrays(content_ids, views, policy, image_size)
    return augmented_dataset(
        uris, content_ids, transforms, contrasts, image_size, batch_size, **knobs
    )


# --- shards of a distributed extraction ---------------------------------------------------------


class Shard(BaseModel):
    """A fixed run of manifest rows whose features one task computes into one part."""

    index: int
    content_ids: list[str]
    uris: list[str]
    label_indices: list[int]
    splits: list[str]
    views: list[int] = []  # one view index per row in a shard of views; empty: originals

    @property
    def part(self) -> str:
        return part_name(self.content_ids, self.views or None)


class ShardJob(BaseModel):
    """What every shard of one extraction shares (small and JSON-able: a task input)."""

    cache_dir: str  # a local folder or a URI
    weights: str
    layer: str
    image_size: int
    feature_dtype: str
    fingerprint: str
    schema_metadata: dict  # fingerprint, fingerprint_inputs, weights description
    feature_shape: tuple[int, ...]
    batch_size: int
    views_dir: str | None = None  # where shards of views write (the policy's view folder)
    policy: AugmentPolicy | None = None


class ShardResult(BaseModel):
    index: int
    part: str
    computed: int  # rows written: images, or views in a shard of views
    skipped: list[str]  # content ids (of a shard of views: each skipped image once)
    of_views: bool = False  # a shard of views
    seconds: float
    pid: int  # the process that computed it (tests and benchmarks count them)
    backbone_loads: int  # backbones this process had built by then (1: loaded once)


def make_shards(rows: ImageRows, shard_rows: int) -> list[Shard]:
    """`rows` cut into shards of `shard_rows` rows, in manifest order."""
    return [
        Shard(
            index=index,
            content_ids=rows.content_ids[start : start + shard_rows],
            uris=rows.uris[start : start + shard_rows],
            label_indices=rows.label_indices[start : start + shard_rows],
            splits=rows.splits[start : start + shard_rows],
        )
        for index, start in enumerate(range(0, len(rows), shard_rows))
    ]


def make_view_shards(
    rows: ImageRows, views: list[int], shard_rows: int, first_index: int = 0
) -> list[Shard]:
    """View jobs (`rows` and `views`, one per job, an image's jobs consecutive) cut into
    shards of about `shard_rows` jobs, never splitting an image's jobs (it is decoded once
    per shard); numbered from `first_index`."""
    shards: list[Shard] = []
    start = 0
    while start < len(rows):
        end = min(start + shard_rows, len(rows))
        while end < len(rows) and rows.content_ids[end] == rows.content_ids[end - 1]:
            end += 1
        shards.append(
            Shard(
                index=first_index + len(shards),
                content_ids=rows.content_ids[start:end],
                uris=rows.uris[start:end],
                label_indices=rows.label_indices[start:end],
                splits=rows.splits[start:end],
                views=views[start:end],
            )
        )
        start = end
    return shards


def limit_tf_threads(threads: int | None) -> None:
    """Bound TensorFlow's intra- and inter-op pools in this process (before its runtime
    starts; later calls are ignored, with a debug note)."""
    if not threads:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already initialised in this process
        log.debug("TensorFlow's thread pools were already set up in process %d", os.getpid())


_BACKBONES: dict[tuple, tuple] = {}
_BACKBONE_LOCK = threading.Lock()


def process_backbone(weights: str, layer: str, image_size: int, feature_dtype: str):
    """(backbone, traced inference function, fingerprint), loaded once per process."""
    from inception_retrain.features.backbone import (
        backbone_fingerprint,
        inference_function,
        load_backbone,
    )

    key = (weights, layer, image_size, feature_dtype)
    with _BACKBONE_LOCK:
        if key not in _BACKBONES:
            backbone = load_backbone(weights, layer, image_size)
            fingerprint, _ = backbone_fingerprint(
                backbone, weights, layer, image_size, feature_dtype
            )
            infer = inference_function(backbone, output_dtype=feature_dtype)
            _BACKBONES[key] = (backbone, infer, fingerprint)
        return _BACKBONES[key]


def compute_shard(shard: Shard, job: ShardJob, threads: int | None = None) -> ShardResult:
    """Compute and write the part of `shard` (see module docstring). Idempotent.

    `threads`: this process's share of cores (a Dask worker's thread count), for
    TensorFlow's pools and the image decoders; None leaves both at their defaults."""
    started = time.perf_counter()
    limit_tf_threads(threads)
    backbone, infer, fingerprint = process_backbone(
        job.weights, job.layer, job.image_size, job.feature_dtype
    )
    if fingerprint != job.fingerprint:
        raise WeightsError(
            f"the backbone in process {os.getpid()} has fingerprint {fingerprint}, not "
            f"{job.fingerprint}: its weights ({job.weights}) differ from the run's"
        )
    views = shard.views or None
    if views is not None and (job.views_dir is None or job.policy is None):
        raise ValueError("a shard of views needs a job with views_dir and policy")
    view_meta = None if views is None else job.policy.record()
    schema = feature_schema(job.feature_shape, job.feature_dtype, job.schema_metadata, view_meta)
    size = int(np.prod(job.feature_shape))
    features = np.empty((len(shard.content_ids), size), np.dtype(job.feature_dtype))
    done: list[int] = []
    dataset = _dataset(
        shard.uris,
        shard.content_ids,
        views,
        job.policy,
        job.image_size,
        job.batch_size,
        parallel_calls=threads,
    )
    for positions, images in dataset:
        positions = positions.numpy().tolist()
        features[positions] = infer(images).numpy().reshape(len(positions), size)
        done.extend(positions)
    done.sort()
    if done:  # one part, named from the rows the shard was given (whatever it skipped)
        with feature_cache.adding(job.cache_dir):  # a view folder is in the cache folder
            write_part(
                job.cache_dir if views is None else job.views_dir,
                schema,
                [shard.content_ids[i] for i in done],
                [shard.label_indices[i] for i in done],
                [shard.splits[i] for i in done],
                features[done],
                name=shard.part,
                views=None if views is None else [views[i] for i in done],
            )
    skipped = sorted(set(range(len(shard.content_ids))) - set(done))
    return ShardResult(
        index=shard.index,
        part=shard.part,
        computed=len(done),
        skipped=list(dict.fromkeys(shard.content_ids[i] for i in skipped)),
        of_views=views is not None,
        seconds=time.perf_counter() - started,
        pid=os.getpid(),
        backbone_loads=len(_BACKBONES),
    )
