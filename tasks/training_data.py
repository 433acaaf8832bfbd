"""tf.data input for head training, read from the Parquet feature cache.

Rows are the cache joined with the manifest (the manifest decides labels and splits; see
tasks/feature_cache.py). Each split becomes an `InMemorySplit` or a `StreamingSplit` whose
`dataset(epoch)` yields batches `(features float32 (B, *shape), labels int32 (B,))`.

Two modes, chosen by size (`mode="auto"`). Features are held and moved in the cache's dtype
(float16 by default: half the bytes) and become float32 per batch in TF (an exact cast, and
several times faster than NumPy's).
  * in-memory, when (train + validation rows) x bytes per stored row fits the memory budget:
    the split is read once into one array (`load_sorted`: `load_split`'s rows and order,
    sorted by content id, so the order does not depend on how extraction happened to write
    its parts; peak memory while loading is the array plus one read chunk, then TF's copy
    replaces it), and each epoch visits it in the order `epoch_order(n, seed, epoch)`, a
    full permutation;
  * streaming otherwise: `iter_split_batches` reads a few rows at a time (part, then row
    order) through a `shuffle` buffer of at most half the budget, so memory stays bounded by
    the buffer + one Parquet row group + a couple of prefetched batches. A buffered shuffle
    only mixes rows that are near each other in the cache, so its order differs from the
    in-memory permutation: both train to the same quality, not to the same weights. With
    `shuffle=False` both modes visit rows in cache order and give identical batches when the
    parts are stored sorted by content id.

The order of every epoch is a pure function of (seed, epoch), so training is deterministic
and an interrupted training resumed at epoch k sees exactly the batches it would have seen.

    >>> data = load_training_data(cache_dir, manifest_path, batch_size=32, seed=0,
    ...                           memory_budget_mb=2048)
    >>> data.mode, data.train.n, data.validation is None
    ('in-memory', 1200, False)
    >>> model.fit(data.train.dataset(epoch=0), validation_data=data.validation.dataset(0))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from inception_retrain.errors import DataError
from tasks import feature_cache
from tasks.tf_data import without_autotune

IN_MEMORY = "in-memory"
STREAMING = "streaming"
MODES = ("auto", IN_MEMORY, STREAMING)
_MAX_READ_ROWS = 256  # rows decoded from Parquet per step while streaming


def epoch_seed(seed: int, epoch: int) -> int:
    """A per-epoch seed derived from the run seed (stable across processes and versions)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The in-memory visiting order of epoch `epoch`: a permutation of range(n)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def _n_batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


class InMemorySplit:
    """A split held in memory; each epoch is one full permutation (or the stored order).

    Features stay in their dtype (a float16 cache takes half the memory) and become float32
    per batch in TF; the cast is exact.
    """

    mode = IN_MEMORY

    def __init__(self, features, labels, batch_size: int, seed: int = 0, shuffle: bool = True):
        import tensorflow as tf

        if len(features) != len(labels):
            raise ValueError("features and labels differ in length")
        features = np.asarray(features)
        if features.dtype not in (np.float16, np.float32):
            features = features.astype(np.float32)
        self.labels = np.asarray(labels, dtype=np.int32)
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        with tf.device("/CPU:0"):  # data lives in host memory whatever device trains
            self._x = tf.constant(features)
            self._y = tf.constant(self.labels)

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def n_batches(self) -> int:
        return _n_batches(self.n, self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        return epoch_order(self.n, self.seed, epoch) if self.shuffle else np.arange(self.n)

    def dataset(self, epoch: int = 0):
        import tensorflow as tf

        x, y = self._x, self._y
        indices = tf.data.Dataset.from_tensor_slices(self.order(epoch).astype(np.int64))
        batches = indices.batch(self.batch_size).map(
            lambda idx: (tf.cast(tf.gather(x, idx), tf.float32), tf.gather(y, idx))
        )
        return without_autotune(batches.prefetch(2))


def load_sorted(cache_dir: Path, manifest_path: Path, split: str, ids: Sequence[str], dtype):
    """`load_split`'s rows in `load_split`'s order (`ids`: the split's cached content ids,
    sorted), in the stored dtype, written straight to their rows of one preallocated array:
    peak memory is the split plus one read chunk."""
    shape = tuple(feature_cache.read_metadata(cache_dir)["feature_shape"])
    features = np.empty((len(ids), *shape), dtype=dtype)
    labels = np.empty((len(ids),), dtype=np.int32)
    row_of = {cid: row for row, cid in enumerate(ids)}
    filled = 0
    for batch_ids, values, batch_labels in feature_cache.iter_split_batches(
        cache_dir, manifest_path, split, _MAX_READ_ROWS, dtype=None
    ):
        rows = [row_of[cid] for cid in batch_ids]
        features[rows] = values
        labels[rows] = batch_labels
        filled += len(rows)
    if filled != len(ids):
        raise DataError(f"the feature cache changed while loading the '{split}' split")
    return features, labels


@dataclass
class StreamingSplit:
    """A split streamed from the cache through a bounded shuffle buffer."""

    cache_dir: Path
    manifest_path: Path
    split: str
    n: int
    feature_shape: tuple[int, ...]
    batch_size: int
    buffer_rows: int
    seed: int = 0
    shuffle: bool = True
    stored_dtype: str = "float32"
    mode: str = field(default=STREAMING, init=False)

    def __post_init__(self) -> None:
        import tensorflow as tf

        read_rows = max(1, min(_MAX_READ_ROWS, self.buffer_rows))
        args = (self.cache_dir, self.manifest_path, self.split, read_rows)

        def chunks():
            # Rows stay in the stored dtype (float16: half the bytes to copy and buffer) and
            # become float32 per batch in TF, which converts several times faster than NumPy.
            for _, values, labels in feature_cache.iter_split_batches(*args, dtype=None):
                yield values, labels

        signature = (
            tf.TensorSpec((None, *self.feature_shape), tf.as_dtype(self.stored_dtype)),
            tf.TensorSpec((None,), tf.int32),
        )
        self._rows = tf.data.Dataset.from_generator(chunks, output_signature=signature).unbatch()

    @property
    def n_batches(self) -> int:
        return _n_batches(self.n, self.batch_size)

    def dataset(self, epoch: int = 0):
        import tensorflow as tf

        rows = self._rows
        if self.shuffle:
            rows = rows.shuffle(
                self.buffer_rows,
                seed=epoch_seed(self.seed, epoch),
                reshuffle_each_iteration=False,
            )
        batches = rows.batch(self.batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y))
        batches = batches.prefetch(2).apply(tf.data.experimental.assert_cardinality(self.n_batches))
        return without_autotune(batches)


@dataclass
class TrainingData:
    """Train and validation input for one training run (validation may be absent)."""

    train: InMemorySplit | StreamingSplit
    validation: InMemorySplit | StreamingSplit | None
    feature_shape: tuple[int, ...]
    mode: str
    bytes_per_row: int  # as stored and held (float16 or float32)
    missing: dict[str, int]  # manifest rows of the split without cached features


def _split_ids(manifest_path: Path) -> dict[str, set[str]]:
    table = pq.read_table(
        manifest_path, columns=["content_id", "split"], filters=[("status", "=", "ok")]
    )
    ids: dict[str, set[str]] = {}
    for cid, split in zip(
        table.column("content_id").to_pylist(), table.column("split").to_pylist(), strict=True
    ):
        ids.setdefault(split, set()).add(cid)
    return ids


def _cached_ids(cache_dir: Path) -> set[str]:
    cached: set[str] = set()
    for part in feature_cache.parts(cache_dir):
        cached.update(pq.read_table(part, columns=["content_id"]).column(0).to_pylist())
    return cached


def split_contents(cache_dir: Path, manifest_path: Path) -> dict[str, tuple[list[str], int]]:
    """Per split: (its cached content ids, sorted; how many manifest rows are not cached)."""
    cached = _cached_ids(Path(cache_dir))
    return {
        split: (sorted(ids & cached), len(ids - cached))
        for split, ids in _split_ids(Path(manifest_path)).items()
    }


def choose_mode(rows: int, bytes_per_row: int, memory_budget_mb: int) -> str:
    """In memory when all rows (in the stored dtype) fit the budget, else streaming."""
    return IN_MEMORY if rows * bytes_per_row <= memory_budget_mb * 2**20 else STREAMING


def load_training_data(
    cache_dir: Path,
    manifest_path: Path,
    *,
    batch_size: int,
    seed: int,
    memory_budget_mb: int,
    mode: str = "auto",
    shuffle: bool = True,
    splits: Sequence[str] = ("train", "validation"),
) -> TrainingData:
    """Input for training on `splits[0]`, validating on `splits[1]` (empty -> None)."""
    if mode not in MODES:
        raise ValueError(f"unknown data mode {mode!r}; choose one of {MODES}")
    cache_dir, manifest_path = Path(cache_dir), Path(manifest_path)
    if not feature_cache.parts(cache_dir):
        raise DataError(f"no cached features in {cache_dir}: run extract first")
    metadata = feature_cache.read_metadata(cache_dir)
    feature_shape = tuple(int(d) for d in metadata["feature_shape"])
    stored_dtype = np.dtype(metadata["dtype"])
    bytes_per_row = int(np.prod(feature_shape)) * stored_dtype.itemsize
    contents = split_contents(cache_dir, manifest_path)
    train_split, val_split = splits
    train_ids, _ = contents.get(train_split, ([], 0))
    val_ids, _ = contents.get(val_split, ([], 0))
    if not train_ids:
        raise DataError(f"no cached features for the '{train_split}' split: run extract first")
    if mode == "auto":
        mode = choose_mode(len(train_ids) + len(val_ids), bytes_per_row, memory_budget_mb)

    def make(split: str, ids: list[str], shuffled: bool):
        if mode == IN_MEMORY:
            features, labels = load_sorted(cache_dir, manifest_path, split, ids, stored_dtype)
            return InMemorySplit(features, labels, batch_size, seed, shuffled)
        budget_rows = memory_budget_mb * 2**20 // 2 // bytes_per_row
        buffer_rows = min(len(ids), max(batch_size, budget_rows))
        return StreamingSplit(
            cache_dir, manifest_path, split, len(ids), feature_shape, batch_size, buffer_rows,
            seed, shuffled, stored_dtype.name,
        )  # fmt: skip

    return TrainingData(
        train=make(train_split, train_ids, shuffle),
        validation=make(val_split, val_ids, False) if val_ids else None,
        feature_shape=feature_shape,
        mode=mode,
        bytes_per_row=bytes_per_row,
        missing={split: contents.get(split, ([], 0))[1] for split in splits},
    )
