"""Training: the head of a run, fitted on the cached train split, validated on validation.

    >>> head = train_head(manifest, cache, TrainingSpec(), run_dir)      # -> TrainedHead

Semantics:
  * The head is `fit.new_head(spec.head)`: the seed's by default; n > 2 classes get a
    softmax output and sparse categorical cross-entropy. With `spec.standardize` it trains on
    the features standardised per feature with the train split's statistics, folded into
    hidden_1 when saved (`standardize.py`): head.keras is the plain head on raw features.
  * Input: `training_data` (in memory when it fits `memory_budget_mb`, else streamed); with
    augmented views (`cache.views`), each epoch trains on one of every train image's K + 1
    cached rows.
  * The loop is `fit.fit` (early stopping on val_loss with `patience`, best weights
    restored; without validation images all epochs run and the last weights are kept, and
    history.json says so in `notes`), on `device_scope(spec.device)`, seeded.
  * Checkpoints: `checkpoints/` gets the whole training state after an epoch when
    `checkpoint_every_s` (60 s) passed since the last one (`checkpoint.TimedCheckpoint`).
    `train_head` on a run folder with a checkpoint of the same training (same data and
    settings, `epochs` excepted) resumes after the checkpointed epoch and ends exactly where an
    uninterrupted training would. The checkpoint is deleted when training completes.
  * Outputs in the run folder: `head.keras` (uncompiled), `history.json` (per-epoch
    loss/accuracy/val_loss/val_accuracy and seconds, epochs run, best epoch (from 1), device,
    data mode, notes), `tensorboard/{train,validation}` (Keras's TensorBoard callback), and a
    progress bar (`progress.Progress`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import keras

from inception_retrain.data.manifest import Manifest
from inception_retrain.features import feature_cache
from inception_retrain.features.feature_cache import FeatureCache
from inception_retrain.features.feature_parts import iter_rows
from inception_retrain.plumbing import storage
from inception_retrain.plumbing.errors import DataError
from inception_retrain.plumbing.files import sha256_json
from inception_retrain.plumbing.progress import Progress
from inception_retrain.plumbing.schemas import read_document, write_document
from inception_retrain.training.checkpoint import TimedCheckpoint
from inception_retrain.training.device import device_scope
from inception_retrain.training.fit import METRICS, FitResult, deterministic, fit, new_head
from inception_retrain.training.head import TrainedHead, save_head
from inception_retrain.training.standardize import feature_statistics
from inception_retrain.training.training_data import (
    InMemorySplit,
    TrainingData,
    load_run_training_data,
)
from inception_retrain.training.training_spec import TrainingSpec

log = logging.getLogger(__name__)

HISTORY_KIND, HISTORY_VERSION, HISTORY_FILE = "training-history", 1, "history.json"
CHECKPOINT_EVERY_S = 60.0  # at most this much training is lost to a crash


def training_key(manifest: Manifest, cache: FeatureCache, spec: TrainingSpec, mode: str) -> str:
    """What must match for a checkpoint to be resumed (everything but `epochs`)."""
    fields = spec.model_dump(
        mode="json",
        include={"head", "batch_size", "patience", "seed", "mixed_precision", "standardize"},
    )
    blob = {
        "manifest": manifest.fingerprint,
        "backbone": cache.backbone_fingerprint,
        "feature_shape": list(cache.feature_shape),
        "data_mode": mode,
        **fields,
    }
    if cache.views is not None:  # the views train too
        blob["views"] = [cache.views.policy_fingerprint, cache.views.per_image]
    return sha256_json(blob)[:16]


class EpochLog(keras.callbacks.Callback):
    """One log line and one progress step per epoch."""

    def __init__(self, progress: Progress, epochs: int):
        super().__init__()
        self.progress, self.epochs = progress, epochs

    def on_epoch_end(self, epoch, logs=None):
        self.progress.update(1)
        parts = [f"{key} {logs[key]:.4f}" for key in METRICS if key in (logs or {})]
        seconds = (logs or {}).get("seconds", 0.0)
        log.info("epoch %d/%d: %s (%.1f s)", epoch + 1, self.epochs, ", ".join(parts), seconds)


def fit_monitored(
    model,
    data: TrainingData,
    *,
    epochs: int,
    patience: int,
    checkpoint: TimedCheckpoint,
    tensorboard_dir: Path,
    what: str,
    callbacks=(),
) -> FitResult:
    """`fit` as the stages run it: a progress bar and a log line per epoch, TensorBoard
    scalars in `tensorboard_dir`, resumable from `checkpoint`; `what` names the stage."""
    tensorboard = keras.callbacks.TensorBoard(tensorboard_dir, write_graph=False, profile_batch=0)
    with Progress(total=epochs, description=what, unit="epoch") as progress:
        result = fit(
            model,
            data.train,
            data.validation,
            epochs=epochs,
            patience=patience,
            checkpoint=checkpoint,
            callbacks=[EpochLog(progress, epochs), tensorboard, *callbacks],
        )
    if result.resumed_from:
        log.info("%s: resumed after epoch %d", what, result.resumed_from)
    return result


def train_head(
    manifest: Manifest,
    cache: FeatureCache,
    spec: TrainingSpec,
    run_dir: Path,
    *,
    callbacks: Sequence = (),
    checkpoint_every_s: float = CHECKPOINT_EVERY_S,
) -> TrainedHead:
    """Train the head on the cached train split, validate on the validation split.

    `callbacks`: extra Keras callbacks for `fit` (monitoring, tests).
    `checkpoint_every_s`: least time between checkpoints (0: after every epoch).
    Writes head.keras, history.json, tensorboard/ and checkpoints/ in `run_dir`.
    """
    run_dir = Path(run_dir)
    n_classes = manifest.n_classes
    with (
        feature_cache.reading(cache.cache_dir),  # a streaming epoch reads it until the end
        device_scope(spec.device, spec.mixed_precision) as device,
        deterministic(spec.seed),
    ):
        data, train_rows = load_run_training_data(manifest.path, cache, spec)
        notes = data_notes(data, n_classes)
        statistics = None
        if spec.standardize:  # the training images' per-feature statistics (standardize.py)
            statistics = feature_statistics(
                batch
                for _, batch, _ in iter_rows(
                    storage.location(cache.cache_dir), train_rows, dtype=None
                )
            )
        model = new_head(data.feature_shape, n_classes, spec.head, spec.seed, statistics)
        checkpoint = TimedCheckpoint(
            run_dir / "checkpoints",
            training_key(manifest, cache, spec, data.mode),
            every_s=checkpoint_every_s,
        )
        result = fit_monitored(
            model,
            data,
            epochs=spec.epochs,
            patience=spec.patience,
            checkpoint=checkpoint,
            tensorboard_dir=run_dir / "tensorboard",
            what="train",
            callbacks=callbacks,
        )
        head_path = run_dir / "head.keras"
        fingerprint = save_head(model, spec.head, n_classes, spec.seed, head_path)

    history = history_document(result, spec, data, device, manifest, notes)
    history_path = write_document(run_dir / HISTORY_FILE, HISTORY_KIND, HISTORY_VERSION, history)
    checkpoint.clear()
    return TrainedHead(
        head_path=head_path,
        history_path=history_path,
        fingerprint=fingerprint,
        device=device,
        training=spec,
    )


def read_history(path: Path) -> dict:
    """history.json of a run (per-epoch series and the training's facts)."""
    return read_document(path, HISTORY_KIND, HISTORY_VERSION)


def recorded_training(history: dict) -> TrainingSpec:
    """The `TrainingSpec` a history.json was trained with (its `head` block in histories
    written before it recorded the spec whole)."""
    if "training" in history:
        return TrainingSpec.model_validate(history["training"])
    head = dict(history["head"])
    settings = {key: head.pop(key) for key in ("batch_size", "patience", "seed")}
    head.pop("loss", None)
    return TrainingSpec(head=head, epochs=history.get("epochs_requested", 10), **settings)


def data_notes(data, n_classes: int) -> list[str]:
    notes = []
    if data.validation is None:
        notes.append(
            "no validation images: trained without validation; early stopping off, "
            "the last epoch's weights are kept"
        )
        log.warning(notes[-1])
    for split, missing in data.missing.items():
        if missing:
            notes.append(f"{missing} {split} images have no cached features and were left out")
            log.warning(notes[-1])
    labels = data.train.labels if isinstance(data.train, InMemorySplit) else None
    if labels is not None and len(labels) and int(labels.max()) >= n_classes:
        raise DataError(f"cached labels exceed the manifest's {n_classes} classes")
    return notes


def history_document(result: FitResult, spec: TrainingSpec, data, device, manifest, notes) -> dict:
    return {
        **{key: result.history.get(key, []) for key in METRICS},
        "seconds_per_epoch": result.history.get("seconds", []),
        "epochs_requested": spec.epochs,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "monitor": result.monitor,
        "early_stopping": result.early_stopping,
        "stopped_early": result.stopped_early,
        "restored_best_weights": result.early_stopping,
        "resumed_from_epoch": result.resumed_from,
        "device": device,
        "mixed_precision": spec.mixed_precision and device == "gpu",
        "data_mode": data.mode,
        "n_train": data.train.n,
        "n_validation": data.validation.n if data.validation is not None else 0,
        "n_train_view_rows": data.view_rows,  # cached augmented views besides the originals
        "feature_shape": list(data.feature_shape),
        "class_names": manifest.class_names,
        "head": {
            **spec.head.model_dump(mode="json"),
            "batch_size": spec.batch_size,
            "patience": spec.patience,
            "seed": spec.seed,
            "loss": "binary_crossentropy"
            if manifest.n_classes == 2
            else "sparse_categorical_crossentropy",
        },
        "notes": notes,
        "training": spec.model_dump(mode="json"),
    }
