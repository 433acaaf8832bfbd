"""Fine-tuning: the top block(s) of the backbone trained with the head, on a cached prefix.

    >>> tuned = fine_tune(manifest, prefix, head, FineTuneSpec(block="mixed7"), run_dir)
    >>> tuned.head_path, tuned.trained_layers[:2]
    (PosixPath('.../fine-tune/model.keras'), ['mixed7_conv2d_0', 'mixed7_conv2d_1'])

The second stage of the transfer-learning recipes for this model (the Machine Learning
Practica's, the Keras guide's), after the head has converged:
  * Input: features cached at `spec.prefix` (`prefix`, a `FeatureCache` made by the
    extraction stage with `BackboneSpec(layer=spec.prefix)`, views included), read like the
    head's (`training_data`: in memory within `memory_budget_mb`, else streamed). The frozen
    prefix never runs: a step costs the block's forward and backward pass and the head's.
  * The model (`fine_tune_model`): `block` (`backbone_block.load_block`: a copy of the
    unfrozen blocks, its Conv2D layers trainable, its BatchNormalization layers frozen, so
    in inference mode and their moving statistics unchanged) then the trained head
    (`head.keras`, all of it trainable), from prefix features to probabilities.
  * Training: `spec.make_optimizer()` (SGD 1e-5 with momentum 0.9 by default, or Adam),
    the head's loss, batch size, seed and device; the head's loop (`fit.fit`: early
    stopping on validation loss with the best weights restored, per-epoch order from the
    seed), a progress bar, TensorBoard (`tensorboard/fine-tune/`) and timed checkpoints
    (`checkpoints/fine-tune/`, resumed like the head's).
  * Output, in `run_dir/fine-tune/`: `model.keras` (uncompiled; input: prefix features),
    `history.json` (the head's history format, with `fine_tuning`), and `fine_tune.json`
    (the artifact's provenance: `read_fine_tuned`).

The artifact, `FineTunedModel`, is a `TrainedHead` whose model starts at the prefix: every
stage that scores a head on the cached features of its cache (evaluation, export's inference
model) scores it on the prefix cache unchanged, and it carries which layers were trained,
with which optimiser (`fine_tuning`, `trained_layers`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import keras

from inception_retrain.data.manifest import Manifest
from inception_retrain.features import feature_cache
from inception_retrain.features.backbone_block import BLOCK_MODEL_NAME, load_block
from inception_retrain.features.feature_cache import FeatureCache
from inception_retrain.plumbing.errors import DataError
from inception_retrain.plumbing.files import sha256_json
from inception_retrain.plumbing.schemas import read_document, write_document
from inception_retrain.training.checkpoint import TimedCheckpoint
from inception_retrain.training.device import device_scope
from inception_retrain.training.fine_tune_spec import FineTuneSpec
from inception_retrain.training.fit import deterministic
from inception_retrain.training.head import TrainedHead, head_fingerprint, load_head
from inception_retrain.training.train import (
    CHECKPOINT_EVERY_S,
    HISTORY_FILE,
    HISTORY_KIND,
    HISTORY_VERSION,
    data_notes,
    fit_monitored,
    history_document,
)
from inception_retrain.training.training_data import load_run_training_data

log = logging.getLogger(__name__)

FINE_TUNE_DIR = "fine-tune"  # in the run folder (and under tensorboard/ and checkpoints/)
MODEL_FILE = "model.keras"
KIND, VERSION, FILE_NAME = "fine-tuned-model", 1, "fine_tune.json"
HEAD_MODEL_NAME = "head"


class FineTunedModel(TrainedHead):
    """Output of fine-tuning: the block(s) and the head as one model on prefix features."""

    fine_tuning: FineTuneSpec
    base_head_fingerprint: str  # the trained head it started from
    prefix_fingerprint: str  # the prefix cache it trained on
    trained_layers: list[str]  # every layer whose weights it trained, block first
    frozen_block_layers: list[str]  # the unfrozen blocks' BatchNormalization layers
    trained_block_weights: int  # trainable weights of the blocks (the head's not counted)
    epochs_run: int
    best_epoch: int

    def describe(self) -> str:
        """E.g. 'mixed7 fine-tuned with the head (SGD(learning_rate=1e-05, momentum=0.9)) on
        cached mixed6 features'."""
        spec = self.fine_tuning
        return (
            f"{', '.join(spec.blocks)} fine-tuned with the head ({spec.describe_optimizer()}) "
            f"on cached {spec.prefix} features"
        )


def fine_tune_model(block, head):
    """One model, prefix features -> probabilities: `block` then `head` (nested, so their
    layers keep their names: `model.get_layer("block")`, `model.get_layer("head")`)."""
    inputs = keras.Input(shape=tuple(block.input.shape[1:]), name="features")
    return keras.Model(inputs, head(block(inputs)), name="fine_tuned")


def split_fine_tuned(model) -> tuple:
    """(block, head) of a model made by `fine_tune_model`."""
    return model.get_layer(BLOCK_MODEL_NAME), model.get_layer(HEAD_MODEL_NAME)


def compile_fine_tune(model, n_classes: int, spec: FineTuneSpec):
    """Compile with the spec's optimiser and the head's loss and metric."""
    loss = "binary_crossentropy" if n_classes == 2 else "sparse_categorical_crossentropy"
    model.compile(optimizer=spec.make_optimizer(), loss=loss, metrics=["accuracy"])
    return model


def fine_tune_key(
    manifest: Manifest, prefix: FeatureCache, head: TrainedHead, spec: FineTuneSpec, mode: str
) -> str:
    """What must match for a fine-tuning checkpoint to be resumed (everything but epochs)."""
    blob = {
        "manifest": manifest.fingerprint,
        "prefix": prefix.backbone_fingerprint,
        "head": head.fingerprint,
        "data_mode": mode,
        "batch_size": head.training.batch_size,
        "seed": head.training.seed,
        **spec.model_dump(mode="json", exclude={"epochs"}),
    }
    if prefix.views is not None:
        blob["views"] = [prefix.views.policy_fingerprint, prefix.views.per_image]
    return sha256_json(blob)[:16]


def fine_tune(
    manifest: Manifest,
    prefix: FeatureCache,
    head: TrainedHead,
    spec: FineTuneSpec,
    run_dir: Path,
    *,
    callbacks: Sequence = (),
    checkpoint_every_s: float = CHECKPOINT_EVERY_S,
) -> FineTunedModel:
    """Train `spec.blocks` and `head` together on `prefix`'s cached train split, validating
    on the validation split; writes `run_dir/fine-tune/` (module docstring)."""
    if prefix.backbone.layer != spec.prefix:
        raise DataError(
            f"fine-tuning {spec.block} needs features cached at {spec.prefix}, "
            f"not at {prefix.backbone.layer}"
        )
    run_dir = Path(run_dir)
    folder = run_dir / FINE_TUNE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    training = head.training
    n_classes = manifest.n_classes
    backbone = prefix.backbone
    with (
        feature_cache.reading(prefix.cache_dir),
        device_scope(training.device, training.mixed_precision) as device,
        deterministic(training.seed),
    ):
        data, _ = load_run_training_data(manifest.path, prefix, training)
        notes = data_notes(data, n_classes)
        block = load_block(backbone.weights, spec.prefix, spec.layer, backbone.image_size)
        model = compile_fine_tune(
            fine_tune_model(block, load_head(head.head_path)), n_classes, spec
        )
        checkpoint = TimedCheckpoint(
            run_dir / "checkpoints" / FINE_TUNE_DIR,
            fine_tune_key(manifest, prefix, head, spec, data.mode),
            every_s=checkpoint_every_s,
        )
        result = fit_monitored(
            model,
            data,
            epochs=spec.epochs,
            patience=spec.patience,
            checkpoint=checkpoint,
            tensorboard_dir=run_dir / "tensorboard" / FINE_TUNE_DIR,
            what="fine-tune",
            callbacks=callbacks,
        )
        model_path = folder / MODEL_FILE
        fingerprint = _save(model, model_path)

    history = history_document(result, training, data, device, manifest, notes)
    history["fine_tuning"] = {**spec.model_dump(mode="json"), "base_head": head.fingerprint}
    history_path = write_document(folder / HISTORY_FILE, HISTORY_KIND, HISTORY_VERSION, history)
    checkpoint.clear()
    trained = [name for name in _trained_layers(model)]
    tuned = FineTunedModel(
        head_path=model_path,
        history_path=history_path,
        fingerprint=fingerprint,
        device=device,
        training=training,
        fine_tuning=spec,
        base_head_fingerprint=head.fingerprint,
        prefix_fingerprint=prefix.backbone_fingerprint,
        trained_layers=trained,
        frozen_block_layers=[
            each.name for each in block.layers if isinstance(each, keras.layers.BatchNormalization)
        ],
        trained_block_weights=sum(int(w.numpy().size) for w in block.trainable_weights),
        epochs_run=result.epochs_run,
        best_epoch=result.best_epoch,
    )
    write_document(folder / FILE_NAME, KIND, VERSION, {"model": tuned.model_dump(mode="json")})
    log.info(
        "fine-tune: %s, best epoch %d of %d", tuned.describe(), tuned.best_epoch, tuned.epochs_run
    )
    return tuned


def _trained_layers(model) -> list[str]:
    block, head = split_fine_tuned(model)
    return [each.name for part in (block, head) for each in part.layers if each.trainable_weights]


def _save(model, path: Path) -> str:
    """Save an uncompiled copy of `model` at `path`, atomically; returns its fingerprint."""
    clean = keras.models.clone_model(model)
    clean.set_weights(model.get_weights())
    # Keras saves to a path ending in .keras: a temporary name with that suffix, then a rename.
    tmp = path.with_name(f".tmp-{path.name}")
    clean.save(tmp)
    os.replace(tmp, path)
    return head_fingerprint(clean)


def read_fine_tuned(run_dir: Path) -> FineTunedModel:
    """The `FineTunedModel` a finished run's fine-tuning handed on (its paths in `run_dir`,
    wherever the run folder is now)."""
    folder = Path(run_dir) / FINE_TUNE_DIR
    document = read_document(folder / FILE_NAME, KIND, VERSION)
    tuned = FineTunedModel.model_validate(document["model"])
    return tuned.model_copy(
        update={"head_path": folder / MODEL_FILE, "history_path": folder / HISTORY_FILE}
    )
