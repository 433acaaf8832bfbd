"""Stage `train`: fit the Dense/Dropout head on cached features.

    >>> head = train_head(manifest, cache, config, run_dir)      # -> TrainedHead
    >>> model, history = fit_head((x, y), (x_val, y_val), hidden_units=(512, 1024), rate=0.2,
    ...                           placement="after_dense2", seed=0, epochs=5, batch_size=32,
    ...                           learning_rate=1e-4)

Semantics:
  * The head is `tasks.head.build_head` + `compile_head` (the seed's by default) with the
    config's sizes, dropout rate and placement, learning rate and seed; n > 2 classes get a
    softmax output and sparse categorical cross-entropy.
  * Input: `tasks.training_data` (in memory when it fits `memory_budget_mb`, else streamed).
    Each epoch's order is a pure function of (seed, epoch).
  * Determinism: `keras.utils.set_random_seed(seed)` and op determinism, so two CPU runs with
    one seed give identical weights (op determinism is switched back off afterwards when it
    was off, so later stages on a GPU are not restricted to deterministic kernels).
  * One `fit` call per epoch, so this module owns early stopping and checkpoints:
      - early stopping watches `val_loss` with `patience` epochs (0: off); the best epoch's
        weights are restored at the end whether or not training stopped early;
      - with no validation images training runs all epochs without early stopping and keeps
        the last epoch's weights; history.json says so in `notes`;
      - after an epoch, when `checkpoint_every_s` (60 s) passed since the last one,
        `checkpoints/` gets the whole training state (weights, optimizer slots, dropout RNG
        state, best weights, history, early-stopping counters), written atomically.
        `train_head` on a run folder with a checkpoint of the same training (same data and
        settings, `epochs` excepted) resumes after the checkpointed epoch and ends exactly
        where an uninterrupted training would. The Prefect task retries once, which
        resumes. The checkpoint is deleted when training completes (it is twice the head's
        size); `head.keras` and `history.json` remain.
  * Outputs in the run folder: `head.keras` (uncompiled), `history.json` (per-epoch
    loss/accuracy/val_loss/val_accuracy and seconds, epochs run, best epoch (numbered from
    1), device, data mode, notes), `tensorboard/{train,validation}` (per-epoch scalars,
    Keras' tag names), and a progress bar / Prefect progress artifact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.artifacts import FeatureCache, Manifest, TrainedHead
from inception_retrain.config import RetrainConfig
from inception_retrain.errors import DataError, PipelineError
from inception_retrain.files import atomic_write_json, read_json
from inception_retrain.logs import run_logger
from inception_retrain.progress import Progress
from tasks import cache_locks
from tasks.device import device_scope
from tasks.head import build_head, compile_head, head_fingerprint
from tasks.training_data import InMemorySplit, load_training_data

TRAIN_TIMEOUT_S = 6 * 3600
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
CHECKPOINT_STATE = "state.json"
CHECKPOINT_EVERY_S = 60.0  # at most this much training is lost to a crash


# --- seeding -------------------------------------------------------------------------------


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seed Python/NumPy/TF/Keras and enable op determinism for the block."""
    import keras
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    was_enabled = tf_config.is_op_determinism_enabled()
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if not was_enabled:
            tf_config.disable_op_determinism()


# --- the epoch loop ------------------------------------------------------------------------


@dataclass
class TrainingState:
    """Everything besides the model that the epoch loop carries (and checkpoints)."""

    history: dict[str, list[float]] = field(
        default_factory=lambda: {key: [] for key in (*METRICS, "seconds")}
    )
    best: float = math.inf
    best_epoch: int = -1  # 0-based; -1 before the first epoch
    wait: int = 0
    stopped_early: bool = False
    best_weights: list[np.ndarray] | None = None

    @property
    def epochs_done(self) -> int:
        return len(self.history["loss"])

    def to_json(self) -> dict:
        return {
            "history": self.history,
            "best": None if math.isinf(self.best) else self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "stopped_early": self.stopped_early,
        }

    @classmethod
    def from_json(cls, data: dict, best_weights: list[np.ndarray] | None) -> TrainingState:
        best = math.inf if data["best"] is None else float(data["best"])
        return cls(
            data["history"], best, data["best_epoch"], data["wait"], data["stopped_early"],
            best_weights,
        )  # fmt: skip


def run_epochs(
    model,
    train,
    validation,
    *,
    epochs: int,
    patience: int,
    state: TrainingState | None = None,
    on_epoch_end: Callable[[int, TrainingState], None] | None = None,
    callbacks: Sequence = (),
) -> TrainingState:
    """Fit `model` epoch by epoch from `state.epochs_done` to `epochs` (see module docstring).

    `train`/`validation` are `tasks.training_data` splits (`validation` may be None).
    """
    state = state or TrainingState()
    early_stopping = patience > 0 and validation is not None
    monitor = "val_loss" if validation is not None else "loss"
    for epoch in range(state.epochs_done, epochs):
        if state.stopped_early:
            break
        started = time.perf_counter()
        logs = model.fit(
            train.dataset(epoch),
            validation_data=validation.dataset(epoch) if validation is not None else None,
            epochs=epoch + 1,
            initial_epoch=epoch,
            callbacks=list(callbacks),
            shuffle=False,  # the datasets are already in this epoch's order
            verbose=0,
        ).history
        state.history["seconds"].append(time.perf_counter() - started)
        for key in METRICS:
            if key in logs:
                state.history[key].append(float(logs[key][-1]))
        value = state.history[monitor][-1]
        if value < state.best:
            state.best, state.best_epoch, state.wait = value, epoch, 0
            if early_stopping:
                state.best_weights = model.get_weights()
        else:
            state.wait += 1
            state.stopped_early = early_stopping and state.wait >= patience
        if on_epoch_end is not None:
            on_epoch_end(epoch, state)
    if early_stopping and state.best_weights is not None:
        model.set_weights(state.best_weights)
    return state


def new_head(
    feature_shape: Sequence[int],
    n_classes: int,
    *,
    hidden_units: Sequence[int],
    rate: float,
    placement: str,
    seed: int,
    learning_rate: float,
):
    """`build_head` + `compile_head` (the one place both stages create a trainable head)."""
    model = build_head(feature_shape, n_classes, hidden_units, rate, placement, seed)
    return compile_head(model, n_classes, learning_rate)


def fit_head(
    train_xy: tuple[np.ndarray, np.ndarray],
    val_xy: tuple[np.ndarray, np.ndarray] | None,
    *,
    hidden_units: Sequence[int] = (512, 1024),
    rate: float = 0.2,
    placement: str = "after_dense2",
    seed: int = 0,
    epochs: int = 5,
    batch_size: int = 32,
    learning_rate: float = 1e-4,
    n_classes: int | None = None,
    patience: int = 0,
    shuffle: bool = True,
    initial_weights: list[np.ndarray] | None = None,
):
    """Train a fresh head on in-memory arrays; returns (model, history dict).

    `train_xy`/`val_xy` are (features (N, *shape), integer labels (N,)); `val_xy` may be None.
    `n_classes` defaults to max(2, largest label + 1). Same seeding, data order
    (`training_data.epoch_order(n, seed, epoch)`, or the given order when `shuffle=False`)
    and epoch loop as `train_head`, without files: calling it twice with the same arguments
    gives identical weights on a CPU. `initial_weights` (as `model.get_weights()`) replaces
    the seeded initial weights. History keys: loss, accuracy, val_loss, val_accuracy,
    seconds (per epoch), epochs_run, best_epoch (from 1; by val_loss, else loss),
    stopped_early.
    """
    features, labels = train_xy
    labels = np.asarray(labels)
    if n_classes is None:
        n_classes = max(2, int(labels.max()) + 1)
    with deterministic(seed):
        model = new_head(
            features.shape[1:], n_classes, hidden_units=hidden_units, rate=rate,
            placement=placement, seed=seed, learning_rate=learning_rate,
        )  # fmt: skip
        if initial_weights is not None:
            model.set_weights(initial_weights)
        train = InMemorySplit(features, labels, batch_size, seed, shuffle)
        validation = None
        if val_xy is not None and len(val_xy[1]):
            validation = InMemorySplit(val_xy[0], val_xy[1], batch_size, seed, shuffle=False)
        state = run_epochs(model, train, validation, epochs=epochs, patience=patience)
    history = {key: list(values) for key, values in state.history.items()}
    history.update(
        epochs_run=state.epochs_done,
        best_epoch=state.best_epoch + 1,
        stopped_early=state.stopped_early,
    )
    return model, history


# --- checkpoints ---------------------------------------------------------------------------


def _save_arrays(path: Path, arrays: Sequence[np.ndarray]) -> None:
    """np.savez to a temp file, fsync, rename: the file is complete or absent."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        np.savez(handle, *arrays)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _load_arrays(path: Path) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


class Checkpoints:
    """Training state in `run_dir/checkpoints/`, identified by a training key.

    `save` writes at most every `every_s` seconds (an epoch of the seed's head on a few
    thousand images takes seconds, its checkpoint ~160 MB). `state.json` is written last and
    names the arrays files it belongs to, so a crash at any moment leaves the previous
    complete checkpoint or the new one.
    """

    def __init__(self, directory: Path, key: str, every_s: float = 0.0):
        self.directory = Path(directory)
        self.key = key
        self.every_s = every_s
        self._last = time.monotonic()

    def save(self, epoch: int, model, state: TrainingState) -> bool:
        """Checkpoint the state after `epoch` if due; returns whether it was written."""
        if time.monotonic() - self._last < self.every_s:
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        arrays = f"epoch-{epoch + 1:04d}.npz"
        variables = [v.numpy() for v in model.variables]
        optimizer = [v.numpy() for v in model.optimizer.variables]
        _save_arrays(self.directory / arrays, variables + optimizer)
        previous = self._state()
        best = None
        if state.best_weights is not None:
            best = f"best-{state.best_epoch + 1:04d}.npz"
            if previous.get("best_weights") != best:  # written once per best epoch
                _save_arrays(self.directory / best, state.best_weights)
        atomic_write_json(
            self.directory / CHECKPOINT_STATE,
            {
                "key": self.key,
                "arrays": arrays,
                "n_model_variables": len(variables),
                "best_weights": best,
                "state": state.to_json(),
            },
        )
        self._remove_all_but(arrays, best)
        self._last = time.monotonic()
        return True

    def _state(self) -> dict:
        try:
            return read_json(self.directory / CHECKPOINT_STATE)
        except (OSError, ValueError):
            return {}

    def _remove_all_but(self, *keep: str | None) -> None:
        for path in self.directory.glob("*.npz"):
            if path.name not in keep:
                path.unlink(missing_ok=True)

    def restore(self, model) -> TrainingState | None:
        """Load the checkpoint into `model` (compiled); None if there is no usable one."""
        saved = self._state()
        if not saved:
            return None
        if saved.get("key") != self.key:
            run_logger(__name__).warning(
                "checkpoint in %s is from other data/settings: ignored", self.directory
            )
            return None
        try:
            arrays = _load_arrays(self.directory / saved["arrays"])
            best = saved["best_weights"] and _load_arrays(self.directory / saved["best_weights"])
        except (OSError, ValueError, KeyError) as error:
            run_logger(__name__).warning("checkpoint unreadable (%s): starting from scratch", error)
            return None
        model.optimizer.build(model.trainable_variables)
        targets = list(model.variables) + list(model.optimizer.variables)
        if saved["n_model_variables"] != len(model.variables) or len(arrays) != len(targets):
            run_logger(__name__).warning(
                "checkpoint does not match this head: starting from scratch"
            )
            return None
        for variable, value in zip(targets, arrays, strict=True):
            variable.assign(value)
        return TrainingState.from_json(saved["state"], best or None)

    def clear(self) -> None:
        for path in self.directory.glob("*.npz"):
            path.unlink(missing_ok=True)
        (self.directory / CHECKPOINT_STATE).unlink(missing_ok=True)


def training_key(manifest: Manifest, cache: FeatureCache, config: RetrainConfig, mode: str) -> str:
    """What must match for a checkpoint to be resumed (everything but `epochs`)."""
    fields = config.model_dump(
        mode="json",
        include={
            "hidden_units", "dropout_rate", "dropout_placement", "learning_rate",
            "batch_size", "patience", "seed", "mixed_precision",
        },
    )  # fmt: skip
    blob = {
        "manifest": manifest.fingerprint,
        "backbone": cache.backbone_fingerprint,
        "feature_shape": list(cache.feature_shape),
        "data_mode": mode,
        **fields,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


# --- TensorBoard ---------------------------------------------------------------------------


class EpochSummaries:
    """Per-epoch scalars under tensorboard/train and tensorboard/validation (Keras' tags).

    Written with `tf.summary.write` and the scalars plugin's metadata, which is what
    `tf.summary.scalar` does, minus its dependency on the tensorboard package (TF 2.21 no
    longer installs it; `pip install tensorboard` is only needed to view the logs).
    """

    def __init__(self, directory: Path):
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        self._tf = tf
        self._metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
            data_class=summary_pb2.DATA_CLASS_SCALAR,
        ).SerializeToString()
        self._writers = {
            "train": tf.summary.create_file_writer(str(directory / "train")),
            "validation": tf.summary.create_file_writer(str(directory / "validation")),
        }

    def write(self, epoch: int, state: TrainingState) -> None:
        history = state.history
        rows = {
            "train": {
                "epoch_loss": "loss",
                "epoch_accuracy": "accuracy",
                "epoch_seconds": "seconds",
            },
            "validation": {"epoch_loss": "val_loss", "epoch_accuracy": "val_accuracy"},
        }
        for writer_name, tags in rows.items():
            with self._writers[writer_name].as_default():
                for tag, key in tags.items():
                    if len(history[key]) > epoch:
                        value = self._tf.constant(history[key][epoch], self._tf.float32)
                        self._tf.summary.write(tag, value, step=epoch, metadata=self._metadata)
            self._writers[writer_name].flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()


# --- the stage -----------------------------------------------------------------------------


def _save_head(model, n_classes: int, config: RetrainConfig, path: Path) -> str:
    """Save the head uncompiled, atomically: half the size of a file with optimizer slots,
    and it loads without Keras' optimizer warnings (`compile_head` it to train further).
    Returns its `head_fingerprint`."""
    clean = build_head(
        model.input_shape[1:], n_classes, config.hidden_units, config.dropout_rate,
        config.dropout_placement, config.seed,
    )  # fmt: skip
    clean.set_weights(model.get_weights())
    tmp = path.with_name(f".tmp-{path.name}")  # keeps the .keras suffix Keras requires
    clean.save(tmp)
    os.replace(tmp, path)
    return head_fingerprint(clean)


def train_head(
    manifest: Manifest,
    cache: FeatureCache,
    config: RetrainConfig,
    run_dir: Path,
    *,
    callbacks: Sequence = (),
    checkpoint_every_s: float = CHECKPOINT_EVERY_S,
) -> TrainedHead:
    """Train the head on the cached train split, validate on the validation split.

    `callbacks`: extra Keras callbacks passed to every epoch's `fit` (monitoring, tests).
    `checkpoint_every_s`: least time between checkpoints (0: after every epoch).
    Writes head.keras, history.json, tensorboard/ and checkpoints/ in `run_dir`.
    """
    run_dir = Path(run_dir)
    n_classes = len(manifest.class_names)
    with (
        cache_locks.reading(cache.cache_dir),  # a streaming epoch reads it until the end
        device_scope(config.device, config.mixed_precision) as device,
        deterministic(config.seed),
    ):
        data = load_training_data(
            cache.cache_dir,
            manifest.path,
            batch_size=config.batch_size,
            seed=config.seed,
            memory_budget_mb=config.memory_budget_mb,
        )
        notes = _data_notes(data, n_classes)
        model = new_head(
            data.feature_shape, n_classes, hidden_units=config.hidden_units,
            rate=config.dropout_rate, placement=config.dropout_placement, seed=config.seed,
            learning_rate=config.learning_rate,
        )  # fmt: skip
        checkpoints = Checkpoints(
            run_dir / "checkpoints",
            training_key(manifest, cache, config, data.mode),
            every_s=checkpoint_every_s,
        )
        state = checkpoints.restore(model)
        resumed_from = state.epochs_done if state else None
        if resumed_from is not None:
            run_logger(__name__).info(
                "resuming training after epoch %d from %s", resumed_from, checkpoints.directory
            )
        summaries = EpochSummaries(run_dir / "tensorboard")
        progress = Progress(total=config.epochs, description="train", unit="epoch")
        progress.update(min(resumed_from or 0, config.epochs))

        def after_epoch(epoch: int, current: TrainingState) -> None:
            if epoch + 1 < config.epochs and not current.stopped_early:  # else: done, cleared
                checkpoints.save(epoch, model, current)
            summaries.write(epoch, current)
            progress.update(1)
            run_logger(__name__).info(
                "epoch %d/%d: %s", epoch + 1, config.epochs, _epoch_line(current, epoch)
            )

        try:
            state = run_epochs(
                model, data.train, data.validation, epochs=config.epochs,
                patience=config.patience, state=state, on_epoch_end=after_epoch,
                callbacks=callbacks,
            )  # fmt: skip
        finally:
            progress.close()
            summaries.close()
        head_path = run_dir / "head.keras"
        fingerprint = _save_head(model, n_classes, config, head_path)

    history = _history_json(state, config, data, device, manifest, resumed_from, notes)
    history_path = atomic_write_json(run_dir / "history.json", history)
    checkpoints.clear()
    return TrainedHead(
        head_path=head_path,
        history_path=history_path,
        fingerprint=fingerprint,
        device=device,
    )


def _data_notes(data, n_classes: int) -> list[str]:
    notes = []
    if data.validation is None:
        notes.append(
            "no validation images: trained without validation; early stopping off, "
            "the last epoch's weights are kept"
        )
        run_logger(__name__).warning(notes[-1])
    for split, missing in data.missing.items():
        if missing:
            notes.append(f"{missing} {split} images have no cached features and were left out")
            run_logger(__name__).warning(notes[-1])
    labels = data.train.labels if isinstance(data.train, InMemorySplit) else None
    if labels is not None and len(labels) and int(labels.max()) >= n_classes:
        raise DataError(f"cached labels exceed the manifest's {n_classes} classes")
    return notes


def _epoch_line(state: TrainingState, epoch: int) -> str:
    parts = [f"{key} {state.history[key][epoch]:.4f}" for key in METRICS if state.history[key]]
    return ", ".join(parts) + f" ({state.history['seconds'][epoch]:.1f} s)"


def _history_json(state, config, data, device, manifest, resumed_from, notes) -> dict:
    n_classes = len(manifest.class_names)
    early_stopping = config.patience > 0 and data.validation is not None
    return {
        **{key: state.history[key] for key in METRICS},
        "seconds_per_epoch": state.history["seconds"],
        "epochs_requested": config.epochs,
        "epochs_run": state.epochs_done,
        "best_epoch": state.best_epoch + 1,
        "monitor": "val_loss" if data.validation is not None else "loss",
        "early_stopping": early_stopping,
        "stopped_early": state.stopped_early,
        "restored_best_weights": early_stopping,
        "resumed_from_epoch": resumed_from,
        "device": device,
        "mixed_precision": config.mixed_precision and device == "gpu",
        "data_mode": data.mode,
        "n_train": data.train.n,
        "n_validation": data.validation.n if data.validation is not None else 0,
        "feature_shape": list(data.feature_shape),
        "class_names": manifest.class_names,
        "head": {
            "hidden_units": list(config.hidden_units),
            "dropout_rate": config.dropout_rate,
            "dropout_placement": config.dropout_placement,
            "learning_rate": config.learning_rate,
            "batch_size": config.batch_size,
            "patience": config.patience,
            "seed": config.seed,
            "loss": "binary_crossentropy" if n_classes == 2 else "sparse_categorical_crossentropy",
        },
        "notes": notes,
    }


def _retry_unless_expected(task, task_run, state) -> bool:
    """Retry (which resumes from the checkpoint) unless the failure is an expected one."""
    try:
        state.result()
    except PipelineError:
        return False
    except BaseException:
        return True
    return True


train_task = task(
    train_head,
    name="train",
    cache_policy=NO_CACHE,
    timeout_seconds=TRAIN_TIMEOUT_S,
    retries=1,
    retry_condition_fn=_retry_unless_expected,
)
