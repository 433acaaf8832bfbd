"""Fitting a head on cached features: the one training loop, seeded and deterministic.

`fit(model, train, validation, epochs=..., patience=...)` is one `model.fit` call with Keras's
own callbacks, used by the training stage and the dropout sweep alike:
  * `EarlyStopping(monitor="val_loss", patience, restore_best_weights=True)` (Keras's, its
    copy of the best weights kept in variables: `early_stopping.py`) when there is a
    validation split and `patience` > 0: the best epoch's weights are restored at the end,
    whether or not training stopped early. Without validation (or with patience 0) every
    epoch runs and the last epoch's weights are kept;
  * `EpochOrder`: each epoch visits the rows in the order given by (seed, epoch)
    (`inception_retrain.training.training_data`), so the order never depends on how many epochs ran
    before in this process, and a resumed training sees the batches it would have seen;
  * `EpochSeconds`: wall seconds per epoch, as `seconds` in the history;
  * whatever else the caller adds (a `TimedCheckpoint`, TensorBoard, a progress bar).

`deterministic(seed)` seeds Python, NumPy, TensorFlow and Keras and turns on op determinism,
so two CPU runs with one seed give identical weights.

    with deterministic(seed=0):
        model = new_head(feature_shape, n_classes, HeadSpec(), seed=0)
        result = fit(model, data.train, data.validation, epochs=10, patience=3)
    result.best_epoch, result.history["val_loss"]
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import keras
import numpy as np

from inception_retrain.training.early_stopping import EarlyStopping
from inception_retrain.training.head import build_head, compile_head
from inception_retrain.training.head_spec import HeadSpec
from inception_retrain.training.training_data import InMemorySplit

METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


@contextlib.contextmanager
def op_determinism() -> Iterator[None]:
    """TensorFlow's op determinism for the block (switched back off afterwards when it was
    off, so later GPU work is not held to deterministic kernels)."""
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    was_enabled = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if not was_enabled:
            tf_config.disable_op_determinism()


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seed Python/NumPy/TF/Keras, and op determinism, for the block."""
    keras.utils.set_random_seed(seed)
    with op_determinism():
        yield


def new_head(
    feature_shape: Sequence[int], n_classes: int, spec: HeadSpec, seed: int, statistics=None
):
    """A compiled, freshly initialised head (the one place stages create a trainable head).
    `statistics`: (mean, scale) per feature: the inputs are standardised with them while
    training (`standardize.py`; `head.save_head` folds them into hidden_1)."""
    model = build_head(feature_shape, n_classes, spec, seed, standardize=statistics is not None)
    if statistics is not None:
        model.get_layer("standardize").set_statistics(*statistics)
    return compile_head(model, n_classes, spec.learning_rate)


class EpochOrder(keras.callbacks.Callback):
    """Tells the splits which epoch begins; their next pass uses that epoch's order."""

    def __init__(self, *splits):
        super().__init__()
        self.splits = [split for split in splits if split is not None]

    def on_epoch_begin(self, epoch, logs=None):
        for split in self.splits:
            split.epoch = epoch


class EpochSeconds(keras.callbacks.Callback):
    """Adds the epoch's wall seconds to its logs (so to the history)."""

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["seconds"] = time.perf_counter() - self._started


@dataclass
class FitResult:
    history: dict[str, list[float]]  # METRICS and seconds, one value per epoch run
    epochs_run: int
    best_epoch: int  # numbered from 1, by val_loss (loss without validation)
    monitor: str
    early_stopping: bool  # best weights restored
    stopped_early: bool
    resumed_from: int | None  # epochs done before this call, from a checkpoint

    def as_dict(self) -> dict:
        return {
            **{key: list(values) for key, values in self.history.items()},
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
        }


def fit(
    model,
    train,
    validation,
    *,
    epochs: int,
    patience: int,
    checkpoint=None,
    callbacks: Sequence = (),
) -> FitResult:
    """Train `model` (compiled) on `train`, validating on `validation` (may be None).

    `train`/`validation` are `inception_retrain.training.training_data` splits. `checkpoint` is a
    `TimedCheckpoint` (or None): a checkpoint of this training is restored first.
    """
    early_stopping = patience > 0 and validation is not None
    monitor = "val_loss" if validation is not None else "loss"
    stopping = None
    if early_stopping:
        stopping = EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    initial_epoch = 0
    if checkpoint is not None:
        checkpoint.early_stopping = stopping
        initial_epoch = checkpoint.restore(model)
    past = {}
    if checkpoint is not None and initial_epoch:
        past = {key: list(values) for key, values in checkpoint.history.items()}
    order = [EpochOrder(train, validation), EpochSeconds()]
    extra = ([stopping] if stopping else []) + ([checkpoint] if checkpoint else [])
    history: dict[str, list[float]] = {}
    if initial_epoch < epochs:
        history = model.fit(
            train.dataset(),
            validation_data=validation.dataset() if validation is not None else None,
            epochs=epochs,
            initial_epoch=initial_epoch,
            callbacks=[*order, *extra, *callbacks],
            shuffle=False,  # the splits order each epoch themselves
            verbose=0,
        ).history
    merged = {
        key: [float(v) for v in past.get(key, [])] + [float(v) for v in history.get(key, [])]
        for key in (*METRICS, "seconds")
        if key in past or key in history
    }
    runs = len(merged.get("loss", []))
    values = merged.get(monitor) or [0.0]
    return FitResult(
        history=merged,
        epochs_run=runs,
        best_epoch=int(np.argmin(values)) + 1,
        monitor=monitor,
        early_stopping=early_stopping,
        stopped_early=runs < epochs,
        resumed_from=initial_epoch or None,
    )


def fit_head(
    train_xy: tuple[np.ndarray, np.ndarray],
    val_xy: tuple[np.ndarray, np.ndarray] | None,
    *,
    spec: HeadSpec,
    seed: int,
    epochs: int,
    batch_size: int,
    n_classes: int | None = None,
    patience: int = 0,
    shuffle: bool = True,
    initial_weights: list[np.ndarray] | None = None,
):
    """Train a fresh head on in-memory arrays; returns (model, FitResult).

    `train_xy`/`val_xy` are (features (N, *shape), integer labels (N,)); `val_xy` may be None.
    `n_classes` defaults to max(2, largest label + 1). The same seeding, data order and loop
    as the training stage, without files: the same arguments give identical weights on a
    CPU. `initial_weights` (as `model.get_weights()`) replaces the seeded initial weights.
    """
    features, labels = train_xy
    labels = np.asarray(labels)
    if n_classes is None:
        n_classes = max(2, int(labels.max()) + 1)
    with deterministic(seed):
        model = new_head(features.shape[1:], n_classes, spec, seed)
        if initial_weights is not None:
            model.set_weights(initial_weights)
        train = InMemorySplit(features, labels, batch_size, seed, shuffle)
        validation = None
        if val_xy is not None and len(val_xy[1]):
            validation = InMemorySplit(val_xy[0], val_xy[1], batch_size, seed, shuffle=False)
        result = fit(model, train, validation, epochs=epochs, patience=patience)
    return model, result
