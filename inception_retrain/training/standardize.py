"""Per-feature standardisation of the cached features, folded into the first Dense layer.

Why. The random-weight and ImageNet mixed7 features a head trains on are non-negative and
mostly common to every image (on the demo: 52% exact zeros, a mean cosine of 0.97 between two
images). Every incoming gradient of a Dense(512) unit then has one sign, so one RMSprop step
(which moves each weight by about the learning rate) shifts that unit's pre-activation on every
image at once, by more than its initial spread: 79-86% of Dense(512)'s units die in the first
epoch and the head predicts one class for several epochs, which early stopping on a small
validation split can restore. Centring and scaling each feature with the training images'
statistics removes that: 0 of 8 real trainings degenerate instead of 3 (docs/evidence.md).

How. A `Standardize` layer, (x - mean) * scale with non-trainable per-feature `mean` and
`scale`, sits between the input and `Flatten` while training. Each feature is centred and
scaled to one common spread: the root-mean-square standard deviation of the features that
vary (`scale` = spread / its sd, at most `MAX_GAIN` = 10 for a feature that barely varies on
the training images; 0 for a constant one). So the
common mode is gone and every feature counts alike, while the inputs keep the overall size of
the raw centred features, the size the head's learning rate acts on: scaled to unit variance
instead (6x larger on the demo), RMSprop's steps made the heads with Dropout(0.5) jump between
epochs (held-out accuracy 0.83-0.98 from one epoch to the next), which doubled the spread
between trainings that the comparisons must see through. When the head is saved, `fold_into_dense`
folds it into `hidden_1`: W' = scale * W (row by row), b' = b - (mean * scale) @ W, so the
saved head is the seed's Flatten -> Dense(512) -> Dense(1024) -> Dropout -> Dense(1)
on the raw cached features, and evaluation, export and the dropout report see exactly that
architecture and compute the same function (to float32 rounding). The cap matters there: a
feature almost constant over a small training set would otherwise get a weight thousands of
times larger in the folded head, and fine-tuning the block below, which makes it vary, then
sent the head's outputs to 0 and 1 (validation log loss 23 in tests/test_fine_tune_run.py).

    mean, scale = feature_statistics(features)                # (N, *shape) -> two (*shape,)
    kernel, bias = fold_into_dense(kernel, bias, mean, scale)
"""

from __future__ import annotations

from collections.abc import Iterable

import keras
import numpy as np

LAYER_NAME = "standardize"
CHUNK_ROWS = 256  # rows converted to float64 at a time while summing
CONSTANT_SD = 1e-12  # a feature whose standard deviation is below this is constant
MAX_GAIN = 10.0  # the largest scale, relative to the common spread, any feature gets


class Standardize(keras.layers.Layer):
    """(x - mean) * scale per feature, both non-trainable (set by `set_statistics`)."""

    def build(self, input_shape):
        shape = tuple(input_shape[1:])
        self.mean = self.add_weight(shape=shape, initializer="zeros", trainable=False, name="mean")
        self.scale = self.add_weight(shape=shape, initializer="ones", trainable=False, name="scale")

    def set_statistics(self, mean: np.ndarray | None, scale: np.ndarray | None) -> None:
        """The training images' statistics; None for both: the identity."""
        if mean is None:
            mean, scale = np.zeros(self.mean.shape), np.ones(self.scale.shape)
        self.mean.assign(np.asarray(mean, np.float32).reshape(self.mean.shape))
        self.scale.assign(np.asarray(scale, np.float32).reshape(self.scale.shape))

    def call(self, inputs):
        return (inputs - keras.ops.cast(self.mean, inputs.dtype)) * keras.ops.cast(
            self.scale, inputs.dtype
        )


class RunningMoments:
    """Per-feature mean and standard deviation accumulated over row chunks (float64)."""

    def __init__(self):
        self.n, self.total, self.squares = 0, None, None
        self.shift = None  # the first row: subtracting it keeps the sums well conditioned

    def add(self, rows: np.ndarray) -> None:
        for start in range(0, len(rows), CHUNK_ROWS):
            chunk = np.asarray(rows[start : start + CHUNK_ROWS], np.float64)
            if not len(chunk):
                continue
            if self.shift is None:
                self.shift = chunk[0].copy()
                self.total = np.zeros_like(self.shift)
                self.squares = np.zeros_like(self.shift)
            chunk = chunk - self.shift
            self.n += len(chunk)
            self.total += chunk.sum(axis=0)
            self.squares += (chunk * chunk).sum(axis=0)

    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, scale) as float32: scale = spread / sd, 0 where the feature is constant."""
        if not self.n:
            raise ValueError("no rows to standardise with")
        centred = self.total / self.n
        variance = np.maximum(self.squares / self.n - centred * centred, 0.0)
        sd = np.sqrt(variance)
        varying = sd > CONSTANT_SD
        spread = float(np.sqrt(variance[varying].mean())) if varying.any() else 1.0
        # a feature that barely varies on these images is scaled up at most MAX_GAIN times:
        # the folded head must not put huge weights on it (fine-tuning the block below moves it)
        sd = np.maximum(sd, spread / MAX_GAIN)
        scale = np.where(varying, spread / sd, 0.0)
        return (self.shift + centred).astype(np.float32), scale.astype(np.float32)


def feature_statistics(
    features: np.ndarray | Iterable[np.ndarray], rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) per feature over `features[rows]` (all rows when None), or over an
    iterable of row batches (a streamed split)."""
    moments = RunningMoments()
    if isinstance(features, np.ndarray):
        if rows is None:
            moments.add(features)
        else:
            rows = np.asarray(rows)
            for start in range(0, len(rows), CHUNK_ROWS):
                moments.add(features[np.sort(rows[start : start + CHUNK_ROWS])])
    else:
        for batch in features:
            moments.add(batch)
    return moments.statistics()


def fold_into_dense(kernel, bias, mean, scale) -> tuple[np.ndarray, np.ndarray]:
    """A Dense layer's (kernel, bias) on raw inputs that computes what (kernel, bias) computes
    on standardised ones: kernel rows times `scale`, bias minus (mean * scale) @ kernel.
    `mean` and `scale` are flattened in the order of `Flatten` (row-major)."""
    kernel = np.asarray(kernel, np.float64)
    mean = np.asarray(mean, np.float64).reshape(-1)
    scale = np.asarray(scale, np.float64).reshape(-1)
    folded_bias = np.asarray(bias, np.float64) - (mean * scale) @ kernel
    return (kernel * scale[:, None]).astype(np.float32), folded_bias.astype(np.float32)
