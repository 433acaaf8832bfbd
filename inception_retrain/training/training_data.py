"""tf.data input for head training, read from the Parquet feature cache.

Rows are the cache joined with the manifest: the caller passes, per split, the manifest's
content id -> label index (the manifest decides labels and splits). Each split becomes an
`InMemorySplit` or a `StreamingSplit` whose `dataset()` yields batches
`(features float32 (B, *shape), labels int32 (B,))` in the order of its current `epoch`
(set by `fit.EpochOrder` before each epoch; a new pass over the dataset reads it).

Two modes, chosen by size (`mode="auto"`). Features are held and moved in the cache's dtype
(float16 by default: half the bytes) and become float32 per batch in TF (an exact cast, and
several times faster than NumPy's).
  * in-memory, when (train + validation rows) x bytes per stored row fits the memory budget:
    the split is read once into one array (`load_sorted`: sorted by content id, so the order
    does not depend on how extraction wrote its parts; peak memory while loading is the array
    plus one read chunk), and each epoch visits it in the order `epoch_order(n, seed, epoch)`,
    a full permutation;
  * streaming otherwise: `feature_parts.iter_rows` reads the parts in an order drawn for
    the epoch, a few rows at a time, and each window of `buffer_rows` rows (at most half the
    budget) is permuted and handed to TF whole, so memory stays bounded by the window + one
    Parquet row group + a couple of prefetched batches. A window shuffle only mixes rows near
    each other in the cache, so its order differs from the in-memory permutation: both train
    to the same quality, not to the same weights. With `shuffle=False` both modes visit rows
    in cache order and give identical batches when the parts are sorted by content id.

The order of every epoch is a pure function of (seed, epoch), so training is deterministic
and an interrupted training resumed at epoch k sees exactly the batches it would have seen.

Augmented views (`inception_retrain.features.augmentation`; train split only): with `views_dir` and
K = `views_per_image`, each train image has up to K + 1 cached rows (the original and its
cached views 1..K of the view folder). Each epoch draws, for every image, one of the rows it
has, uniformly, from a generator seeded by (seed, epoch) apart from the order's
(`ViewChoice`), so an epoch still visits each image once, and the same draw picks the same
rows in memory and streaming. In memory, the split holds all the rows (originals first, then
the views, sorted by (content id, view)) and the draw picks which row each image's place in
the permutation reads; streaming reads the original and view parts in one random part order
and keeps each image's drawn row. The memory budget and the switch to streaming count every
row held: train images x (1 + its views) + validation images.

    >>> data = load_training_data(cache_dir, {"train": train_labels, "validation": val_labels},
    ...                           batch_size=32, seed=0, memory_budget_mb=2048)
    >>> data.mode, data.train.n, data.validation is None
    ('in-memory', 1200, False)
    >>> data.train.epoch = 3   # fit.EpochOrder does this
    >>> model.fit(data.train.dataset(), validation_data=data.validation.dataset())
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inception_retrain.data.manifest import read_image_rows
from inception_retrain.features import feature_parts
from inception_retrain.features.feature_cache import FeatureCache
from inception_retrain.features.tf_data import without_autotune
from inception_retrain.plumbing import storage
from inception_retrain.plumbing.errors import DataError
from inception_retrain.training.training_spec import TrainingSpec

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


VIEW_DRAW = 1  # the view draw's stream: (seed, epoch, 1), apart from the order's (seed, epoch)


@dataclass
class ViewChoice:
    """Which rows each image has: `available[i, 0]` its original (always), `available[i, v]`
    its view v; and the epoch's draw of one of them per image."""

    available: np.ndarray  # (n, K + 1) bool

    @classmethod
    def of(cls, ids: Sequence[str], view_keys: Sequence[tuple[str, int]], per_image: int):
        """From the images' ids and the cached (content id, view) keys."""
        index = {cid: i for i, cid in enumerate(ids)}
        available = np.zeros((len(ids), per_image + 1), bool)
        available[:, 0] = True
        for cid, view in view_keys:
            available[index[cid], view] = True
        return cls(available)

    def draw(self, seed: int, epoch: int) -> np.ndarray:
        """(n,) the view (0: the original) each image trains on in epoch `epoch`: uniform
        among the rows it has."""
        counts = self.available.sum(axis=1)
        rng = np.random.default_rng([seed, epoch, VIEW_DRAW])
        pick = np.minimum((rng.random(len(counts)) * counts).astype(np.int64), counts - 1)
        columns = np.argsort(~self.available, axis=1, kind="stable")  # available ones first
        return columns[np.arange(len(counts)), pick]


class InMemorySplit:
    """A split held in memory; each epoch is one full permutation (or the stored order).

    Features stay in their dtype (a float16 cache takes half the memory) and become float32
    per batch in TF; the cast is exact. With `view_rows` ((n, K) row indices of each image's
    views 1..K, -1 where one is not cached) the first n rows are the images' originals and
    the others their views; each epoch reads one row per image (`ViewChoice`).
    """

    mode = IN_MEMORY

    def __init__(
        self,
        features,
        labels,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        view_rows: np.ndarray | None = None,
    ):
        import tensorflow as tf

        if len(features) != len(labels):
            raise ValueError("features and labels differ in length")
        features = np.asarray(features)
        if features.dtype not in (np.float16, np.float32):
            features = features.astype(np.float32)
        all_labels = np.asarray(labels, dtype=np.int32)
        n = len(all_labels) if view_rows is None else len(view_rows)
        self.labels = all_labels[:n]  # one per image
        self.view_rows = None
        self.views = None
        if view_rows is not None and np.asarray(view_rows).size:
            self.view_rows = np.column_stack([np.arange(n), np.asarray(view_rows, np.int64)])
            self.views = ViewChoice(self.view_rows >= 0)
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.epoch = 0
        with tf.device("/CPU:0"):  # data lives in host memory whatever device trains
            self._x = tf.constant(features)
            self._y = tf.constant(all_labels)

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def n_batches(self) -> int:
        return _n_batches(self.n, self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """The rows epoch `epoch` reads, in order: one per image."""
        images = epoch_order(self.n, self.seed, epoch) if self.shuffle else np.arange(self.n)
        if self.views is None:
            return images
        rows = self.view_rows[np.arange(self.n), self.views.draw(self.seed, epoch)]
        return rows[images]

    def dataset(self):
        """Batches in the order of `self.epoch`, read when a pass over the dataset begins."""
        import tensorflow as tf

        x, y = self._x, self._y
        indices = tf.data.Dataset.from_generator(
            lambda: iter([self.order(self.epoch).astype(np.int64)]),
            output_signature=tf.TensorSpec([self.n], tf.int64),
        ).unbatch()
        batches = indices.batch(self.batch_size).map(
            lambda idx: (tf.cast(tf.gather(x, idx), tf.float32), tf.gather(y, idx))
        )
        batches = batches.apply(tf.data.experimental.assert_cardinality(self.n_batches))
        return without_autotune(batches.prefetch(2))


def load_sorted(
    cache_dir: Path,
    wanted: Mapping[str, int],
    ids: Sequence[str],
    dtype,
    views_dir=None,
    view_keys: Sequence[tuple[str, int]] = (),
):
    """`load_rows`'s rows in its order (`ids`: the wanted content ids that are cached,
    sorted), in the stored dtype, written straight to their rows of one preallocated array:
    peak memory is the split plus one read chunk. `view_keys` (cached (content id, view)
    keys of `views_dir`, sorted) follow as rows len(ids), len(ids) + 1, ..."""
    shape = tuple(feature_parts.read_metadata(cache_dir)["feature_shape"])
    features = np.empty((len(ids) + len(view_keys), *shape), dtype=dtype)
    labels = np.empty((len(features),), dtype=np.int32)
    sources = [(cache_dir, wanted, ids, 0)]
    if view_keys:
        view_wanted = {key: wanted[key[0]] for key in view_keys}
        sources.append((views_dir, view_wanted, view_keys, len(ids)))
    for folder, keyed, keys, first in sources:
        row_of = {key: first + row for row, key in enumerate(keys)}
        filled = 0
        for batch_keys, values, batch_labels in feature_parts.iter_rows(
            folder, keyed, _MAX_READ_ROWS, dtype=None
        ):
            rows = [row_of[key] for key in batch_keys]
            features[rows] = values
            labels[rows] = batch_labels
            filled += len(rows)
        if filled != len(keys):
            raise DataError(f"the feature cache {folder} changed while loading it")
    return features, labels


@dataclass
class StreamingSplit:
    """A split streamed from the cache through a bounded shuffle buffer."""

    cache_dir: Path | str  # a local folder or a URI
    wanted: Mapping[str, int]
    n: int
    feature_shape: tuple[int, ...]
    batch_size: int
    buffer_rows: int
    seed: int = 0
    shuffle: bool = True
    stored_dtype: str = "float32"
    views_dir: Path | str | None = None  # with `views`: the view folder
    views: ViewChoice | None = None  # rows of the images of `wanted`, in sorted id order
    mode: str = field(default=STREAMING, init=False)
    epoch: int = field(default=0, init=False)

    @property
    def n_batches(self) -> int:
        return _n_batches(self.n, self.batch_size)

    def _epoch_rows(self) -> tuple[list, dict]:
        """(the part files, key -> label of the rows) this epoch reads: each image's
        original, or with views the row drawn for it."""
        files = feature_parts.parts(self.cache_dir)
        if self.views is None:
            return files, self.wanted
        files = files + feature_parts.parts(self.views_dir)
        chosen = self.views.draw(self.seed, self.epoch)
        ids = sorted(self.wanted)
        wanted = {
            cid if view == 0 else (cid, int(view)): self.wanted[cid]
            for cid, view in zip(ids, chosen, strict=True)
        }
        return files, wanted

    def _windows(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """This epoch's rows, in the stored dtype, a window of about `buffer_rows` at a time:
        parts in a random order, rows permuted within each window (or cache order without
        shuffle). `dataset` cuts them into batches, which run across windows."""
        rng = np.random.default_rng([self.seed, self.epoch]) if self.shuffle else None
        files, wanted = self._epoch_rows()
        if rng is not None:
            files = [files[i] for i in rng.permutation(len(files))]
        read_rows = max(1, min(_MAX_READ_ROWS, self.buffer_rows))
        metadata = feature_parts.read_metadata(self.cache_dir)
        rows = feature_parts.iter_part_rows(files, wanted, metadata, read_rows, None)
        window_x: list[np.ndarray] = []
        window_y: list[np.ndarray] = []
        held = 0

        def window():
            x, y = np.concatenate(window_x), np.concatenate(window_y)  # one copy of the views
            window_x.clear(), window_y.clear()
            if rng is None:
                return x, y
            permutation = rng.permutation(len(y))
            return x[permutation], y[permutation]

        for _, values, labels in rows:
            window_x.append(values), window_y.append(labels)
            held += len(labels)
            if held >= self.buffer_rows:
                yield window()
                held = 0
        if window_x:
            yield window()

    def dataset(self):
        """Batches of the order of `self.epoch`, made when a pass over the dataset begins.
        Rows stay in the stored dtype (float16: half the bytes to copy and buffer) and become
        float32 per batch in TF, which converts several times faster than NumPy. The
        generator hands over whole windows and `rebatch` cuts them in TF: one Python call per
        window instead of one per batch (that call cost about 3.5 CPU-ms per batch, as much
        as reading the batch from Parquet)."""
        import tensorflow as tf

        signature = (
            tf.TensorSpec((None, *self.feature_shape), tf.as_dtype(self.stored_dtype)),
            tf.TensorSpec((None,), tf.int32),
        )
        windows = tf.data.Dataset.from_generator(self._windows, output_signature=signature)
        batches = windows.rebatch(self.batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y))
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
    view_rows: int = 0  # cached views of the train images (rows besides the originals)


def _cached_subset(wanted: Mapping[str, int], cached: set[str]) -> tuple[list[str], int]:
    """(the wanted ids that are cached, sorted; how many wanted ids are not cached)."""
    ids = sorted(cid for cid in wanted if cid in cached)
    return ids, len(wanted) - len(ids)


def choose_mode(rows: int, bytes_per_row: int, memory_budget_mb: int) -> str:
    """In memory when all rows (in the stored dtype) fit the budget, else streaming."""
    return IN_MEMORY if rows * bytes_per_row <= memory_budget_mb * 2**20 else STREAMING


def load_training_data(
    cache_dir: Path,
    train: Mapping[str, int],
    validation: Mapping[str, int],
    *,
    batch_size: int,
    seed: int,
    memory_budget_mb: int,
    mode: str = "auto",
    shuffle: bool = True,
    views_dir=None,
    views_per_image: int = 0,
) -> TrainingData:
    """Input for training on the `train` rows, validating on `validation` (none -> None).

    Each of `train` and `validation` maps content id -> label index (the manifest's).
    With `views_dir` and `views_per_image` K > 0 the train images also have their cached
    views 1..K (module docstring)."""
    if mode not in MODES:
        raise ValueError(f"unknown data mode {mode!r}; choose one of {MODES}")
    cache_dir = storage.location(cache_dir)  # a local folder or a URI (s3://...)
    if not feature_parts.parts(cache_dir):
        raise DataError(f"no cached features in {cache_dir}: run extract first")
    metadata = feature_parts.read_metadata(cache_dir)
    feature_shape = tuple(int(d) for d in metadata["feature_shape"])
    stored_dtype = np.dtype(metadata["dtype"])
    bytes_per_row = int(np.prod(feature_shape)) * stored_dtype.itemsize
    cached = feature_parts.cached_ids(cache_dir)
    train_ids, train_missing = _cached_subset(train, cached)
    val_ids, val_missing = _cached_subset(validation, cached)
    if not train_ids:
        raise DataError("no cached features for the training split: run extract first")
    view_keys: list[tuple[str, int]] = []
    if views_dir is not None and views_per_image > 0:
        views_dir = storage.location(views_dir)
        in_train = set(train_ids)
        view_keys = sorted(
            (cid, view)
            for cid, view in feature_parts.cached_ids(views_dir)
            if cid in in_train and 1 <= view <= views_per_image
        )
    if mode == "auto":
        rows = len(train_ids) + len(view_keys) + len(val_ids)
        mode = choose_mode(rows, bytes_per_row, memory_budget_mb)

    def make(wanted: Mapping[str, int], ids: list[str], shuffled: bool, keys=()):
        wanted = {cid: wanted[cid] for cid in ids}
        if mode == IN_MEMORY:
            features, labels = load_sorted(cache_dir, wanted, ids, stored_dtype, views_dir, keys)
            view_rows = None
            if keys:
                view_rows = np.full((len(ids), views_per_image), -1, np.int64)
                index = {cid: i for i, cid in enumerate(ids)}
                for row, (cid, view) in enumerate(keys, start=len(ids)):
                    view_rows[index[cid], view - 1] = row
            return InMemorySplit(features, labels, batch_size, seed, shuffled, view_rows)
        budget_rows = memory_budget_mb * 2**20 // 2 // bytes_per_row
        buffer_rows = min(len(ids), max(batch_size, budget_rows))
        views = ViewChoice.of(ids, keys, views_per_image) if keys else None
        return StreamingSplit(
            cache_dir,
            wanted,
            len(ids),
            feature_shape,
            batch_size,
            buffer_rows,
            seed,
            shuffled,
            stored_dtype.name,
            views_dir if keys else None,
            views,
        )

    return TrainingData(
        train=make(train, train_ids, shuffle, view_keys),
        validation=make(validation, val_ids, False) if val_ids else None,
        feature_shape=feature_shape,
        mode=mode,
        bytes_per_row=bytes_per_row,
        missing={"train": train_missing, "validation": val_missing},
        view_rows=len(view_keys),
    )


def load_run_training_data(
    manifest_path: Path, cache: FeatureCache, spec: TrainingSpec
) -> tuple[TrainingData, dict[str, int]]:
    """The training stage's input: the manifest's train and validation rows from `cache` (and
    its augmented views), as `spec` batches and seeds them; also the train rows (content id
    -> label), which the caller may need again (statistics)."""
    train_rows = read_image_rows(manifest_path, "train").label_of()
    val_rows = read_image_rows(manifest_path, "validation").label_of()
    data = load_training_data(
        cache.cache_dir,
        train_rows,
        val_rows,
        batch_size=spec.batch_size,
        seed=spec.seed,
        memory_budget_mb=spec.memory_budget_mb,
        views_dir=cache.views.views_dir if cache.views else None,
        views_per_image=cache.views.per_image if cache.views else 0,
    )
    return data, train_rows


def load_split(cache_dir: Path, manifest_path: Path, split: str | None):
    """One split of a run in memory: (content_ids sorted, features float32, labels int32).

    The manifest's rows of `split` (all ok rows for None) that are in the cache."""
    wanted = read_image_rows(Path(manifest_path), split).label_of()
    return feature_parts.load_rows(storage.location(cache_dir), wanted)
