"""Head alone or fine-tuned? Chosen on validation, then compared image by image on test.

    effect = measure_fine_tuning(manifest, cache, head, prefix, tuned,
                                 accuracy_margin=0.02, log_loss_margin=0.02)
    effect.chosen         # "fine-tuned" or "head-only": the run's model from here on
    effect.test["log_loss"]["verdict"]   # "better", "equivalent", "worse" or "inconclusive"

The choice reads the validation split only, never the test split: each model scores the
validation images from its own cache (the head from `cache`, at --layer; the fine-tuned model
from `prefix`, the block below), and the fine-tuned model is chosen when its validation log
loss (the quantity early stopping minimises, a proper scoring rule) is lower than the head's;
a tie keeps the head. Without validation images nothing can be chosen on evidence, so the head
is kept and the effect says why.

Only then, and whichever was chosen, both score the test split, and each test image gives a
paired difference, fine-tuned minus head alone, positive when fine-tuning helped: correctness
(0/1: the accuracy difference, `paired_images.compare_per_image(binary=True)`) and log loss
(`lower_is_better=True`), each with a 95% interval and a verdict against its margin, fixed
before the run, by the crossfit engine's one-split comparison and verdict rule. One training per
model: the intervals cover the sampling of test images, not the variance between training seeds,
and the effect says so.

The result goes into evaluation.json (`fine_tuning`) and from there into the evaluation
report; promotion then compares the chosen model with the champion on test, as always.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel

from inception_retrain.data.manifest import Manifest, read_image_rows
from inception_retrain.evaluation.metrics import LOG_LOSS_EPS
from inception_retrain.evaluation.paired_images import compare_per_image
from inception_retrain.evaluation.scoring import score_cached
from inception_retrain.features.feature_cache import FeatureCache
from inception_retrain.plumbing.errors import DataError
from inception_retrain.training.fine_tune import FineTunedModel
from inception_retrain.training.head import TrainedHead

HEAD_ONLY, FINE_TUNED = "head-only", "fine-tuned"
SEEDS_NOTE = (
    "One training per model: the intervals cover the sampling of test images only, not the "
    "variance between training seeds (another seed could move either model)."
)


class ValidationScores(BaseModel):
    """One model on the validation split."""

    images: int
    log_loss: float
    accuracy: float


class FineTuningEffect(BaseModel):
    """The choice between the head alone and the fine-tuned model, and their test comparison."""

    chosen: Literal["head-only", "fine-tuned"]
    reason: str
    description: str  # what was fine-tuned, how
    optimizer: str
    trained_layers: list[str]
    epochs_run: int
    best_epoch: int
    validation: dict[str, ValidationScores]  # by HEAD_ONLY / FINE_TUNED (empty: none)
    test: dict[str, dict]  # "accuracy", "log_loss": PerImageComparison.as_dict()
    test_means: dict[str, dict[str, float]]  # by model: accuracy, log_loss on test
    n_test: int
    notes: list[str]


def _per_image(
    head_path, cache_dir, wanted: dict[str, int], n_classes: int
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(content ids, correct 0/1, log loss) per image of `wanted` found in the cache."""
    ids, probabilities, labels = score_cached(head_path, cache_dir, wanted, n_classes)
    true_class = probabilities[np.arange(len(labels)), labels]
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    loss = -np.log(np.clip(true_class, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS))
    return ids, correct, loss


def _paired(split: str, manifest: Manifest, cache, head, prefix, tuned):
    """Both models on `split`, paired by image: (ids, head (correct, loss), tuned (...))."""
    wanted = read_image_rows(manifest.path, split).label_of()
    n_classes = manifest.n_classes
    head_ids, *head_scores = _per_image(head.head_path, cache.cache_dir, wanted, n_classes)
    tuned_ids, *tuned_scores = _per_image(tuned.head_path, prefix.cache_dir, wanted, n_classes)
    if head_ids != tuned_ids:
        missing = len(wanted) - len(set(head_ids) & set(tuned_ids))
        raise DataError(
            f"{missing} {split} images lack cached features at {cache.backbone.layer} or "
            f"{prefix.backbone.layer}: run extraction first"
        )
    return head_ids, head_scores, tuned_scores


def _choose(validation: dict[str, ValidationScores]) -> tuple[str, str]:
    if not validation:
        return HEAD_ONLY, (
            "no validation images: nothing to choose the fine-tuned model on, so the head "
            "alone is kept (the test split is never used to choose)"
        )
    head, tuned = validation[HEAD_ONLY], validation[FINE_TUNED]
    scores = (
        f"validation log loss {tuned.log_loss:.4f} fine-tuned vs {head.log_loss:.4f} head "
        f"alone (accuracy {tuned.accuracy:.4f} vs {head.accuracy:.4f}, "
        f"{head.images} images)"
    )
    if tuned.log_loss < head.log_loss:
        return FINE_TUNED, f"fine-tuning lowered the {scores}"
    return HEAD_ONLY, f"fine-tuning did not lower the {scores}"


def measure_fine_tuning(
    manifest: Manifest,
    cache: FeatureCache,
    head: TrainedHead,
    prefix: FeatureCache,
    tuned: FineTunedModel,
    accuracy_margin: float,
    log_loss_margin: float,
) -> FineTuningEffect:
    """Choose on validation, then compare on test (module docstring)."""
    validation = {}
    if len(read_image_rows(manifest.path, "validation")):
        ids, head_scores, tuned_scores = _paired("validation", manifest, cache, head, prefix, tuned)
        for name, (correct, loss) in ((HEAD_ONLY, head_scores), (FINE_TUNED, tuned_scores)):
            validation[name] = ValidationScores(
                images=len(ids), log_loss=float(loss.mean()), accuracy=float(correct.mean())
            )
    chosen, reason = _choose(validation)

    ids, (head_correct, head_loss), (tuned_correct, tuned_loss) = _paired(
        "test", manifest, cache, head, prefix, tuned
    )
    if not ids:
        raise DataError("the test split is empty: nothing to compare the models on")
    accuracy = compare_per_image(tuned_correct, head_correct, accuracy_margin, binary=True)
    log_loss = compare_per_image(tuned_loss, head_loss, log_loss_margin, lower_is_better=True)
    return FineTuningEffect(
        chosen=chosen,
        reason=reason,
        description=tuned.describe(),
        optimizer=tuned.fine_tuning.describe_optimizer(),
        trained_layers=list(tuned.trained_layers),
        epochs_run=tuned.epochs_run,
        best_epoch=tuned.best_epoch,
        validation=validation,
        test={"accuracy": accuracy.as_dict(), "log_loss": log_loss.as_dict()},
        test_means={
            HEAD_ONLY: {
                "accuracy": float(head_correct.mean()),
                "log_loss": float(head_loss.mean()),
            },
            FINE_TUNED: {
                "accuracy": float(tuned_correct.mean()),
                "log_loss": float(tuned_loss.mean()),
            },
        },
        n_test=len(ids),
        notes=[SEEDS_NOTE],
    )
