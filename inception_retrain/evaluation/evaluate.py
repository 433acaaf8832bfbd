"""Evaluation: the trained head scored on the frozen test split.

Only the `test` split is scored: ingestion keeps it fixed as data grows, so numbers of
different runs (and the champion's) are comparable. Its identity is the manifest's
`split_fingerprint(path, "test")`.

Writes into the run folder:
  evaluation.json          every metric (`metrics.classification_report`), n_test, class
                           names, fingerprints of backbone, head and test split, the weights
                           description (random weights are labelled as such), plot files
  test_predictions.parquet content_id, uri, label_index, label, p_<class>..., predicted,
                           predicted_index, confidence (with the predictions table's schema
                           version in its metadata)
  roc.png, pr.png, learning_curves.png, reliability.png, misclassified.png

The human reports, evaluation.md and evaluation.html, are rendered from evaluation.json by
`reports.render_evaluation` once the promotion decision is known. With augmented views
(`--augment-views`), evaluation.json's `augmentation` holds the paired comparison of training
without and with them (`augmentation_effect.AugmentationEffect`; null without views).
With fine-tuning (`--fine-tune`), `head` is the model chosen on validation (a
`FineTunedModel` scores the prefix cache through its fine-tuned block), `head.fine_tuned`
says what it trained, and `fine_tuning` holds the choice and the paired per-image
comparison of the two models on the test split (`fine_tuning_effect.FineTuningEffect`; null
without fine-tuning).

    evaluation = evaluate(manifest, cache, head, run_dir)
    evaluation.metrics["roc_auc"]

Undefined metrics (ROC-AUC on a one-class test split) are null with a note; an empty test
split, or test images without cached features, raise DataError.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from inception_retrain.data.manifest import Manifest, read_image_rows, split_fingerprint
from inception_retrain.evaluation import metrics as M
from inception_retrain.evaluation.augmentation_effect import AugmentationEffect
from inception_retrain.evaluation.fine_tuning_effect import FineTuningEffect
from inception_retrain.evaluation.plots import write_plots
from inception_retrain.evaluation.predictions import predictions_table
from inception_retrain.evaluation.scoring import score_cached
from inception_retrain.features.feature_cache import FeatureCache
from inception_retrain.features.feature_parts import read_metadata
from inception_retrain.plumbing.errors import DataError
from inception_retrain.plumbing.files import atomic_file
from inception_retrain.plumbing.schemas import parquet_metadata, read_document, write_document
from inception_retrain.training.fine_tune import FineTunedModel
from inception_retrain.training.head import TrainedHead
from inception_retrain.training.train import read_history

KIND, VERSION, FILE_NAME = "evaluation", 1, "evaluation.json"
PREDICTIONS_KIND, PREDICTIONS_VERSION = "test-predictions", 1
HEADLINE = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "log_loss", "ece")
GALLERY_SIZE = 12


class Evaluation(BaseModel):
    """Output of evaluation: evaluation.json and the headline numbers."""

    json_path: Path
    metrics: dict  # the headline numbers (accuracy, roc_auc, ..., n_test, test split id)

    @property
    def run_dir(self) -> Path:
        return self.json_path.parent


def read_evaluation(path: Path) -> dict:
    """An evaluation.json document."""
    return read_document(path, KIND, VERSION)


def _most_confident_errors(rows: list[dict]) -> list[dict]:
    wrong = [r for r in rows if r["predicted_index"] != r["label_index"]]
    wrong.sort(key=lambda r: -r["confidence"])
    keys = ("content_id", "uri", "label", "predicted", "confidence")
    return [{k: r[k] for k in keys} for r in wrong[:GALLERY_SIZE]]


def _history_or_empty(path: Path) -> dict:
    try:
        return read_history(path)
    except DataError:
        return {}


def _fine_tuned(head: TrainedHead) -> dict | None:
    """What a fine-tuned model trained (None for a head alone)."""
    if not isinstance(head, FineTunedModel):
        return None
    spec = head.fine_tuning
    return {
        "description": head.describe(),
        "blocks": list(spec.blocks),
        "prefix": spec.prefix,
        "optimizer": spec.describe_optimizer(),
        "trained_layers": head.trained_layers,
        "frozen_block_layers": head.frozen_block_layers,
        "trained_block_weights": head.trained_block_weights,
        "epochs_run": head.epochs_run,
        "best_epoch": head.best_epoch,
        "base_head_fingerprint": head.base_head_fingerprint,
    }


def evaluate(
    manifest: Manifest,
    cache: FeatureCache,
    head: TrainedHead,
    run_dir: Path,
    augmentation: AugmentationEffect | None = None,
    fine_tuning: FineTuningEffect | None = None,
) -> Evaluation:
    """Score `head` on the test split of `manifest`; write evaluation.json, the predictions
    and the plots into `run_dir` (with `augmentation`, the views' measured effect; with
    `fine_tuning`, the choice between the head alone and the fine-tuned model)."""
    run_dir = Path(run_dir)
    class_names = list(manifest.class_names)
    test = read_image_rows(manifest.path, "test")
    if not len(test):
        raise DataError(
            "the test split is empty: nothing to evaluate (add images or a test share to "
            "--split-fractions)"
        )
    ids, probabilities, labels = score_cached(
        head.head_path, cache.cache_dir, test.label_of(), len(class_names)
    )
    if len(ids) < len(test):
        raise DataError(
            f"{len(test) - len(ids)} of {len(test)} test images have no cached features in "
            f"{cache.cache_dir}: run extraction first"
        )
    report = M.classification_report(labels, probabilities, class_names)
    report["intervals"] = M.metric_intervals(labels, probabilities, class_names)
    report["majority_baseline"] = M.majority_baseline(labels, class_names)
    uri_of = dict(zip(test.content_ids, test.uris, strict=True))
    predictions = predictions_table(probabilities, class_names)
    front = {
        "content_id": pa.array(ids, pa.string()),
        "uri": pa.array([uri_of[cid] for cid in ids], pa.string()),
        "label_index": pa.array(labels, pa.int32()),
        "label": pa.array([class_names[i] for i in labels], pa.string()),
    }
    for position, (name, column) in enumerate(front.items()):
        predictions = predictions.add_column(position, name, column)
    predictions = predictions.replace_schema_metadata(
        parquet_metadata(PREDICTIONS_KIND, PREDICTIONS_VERSION, {"class_names": class_names})
    )
    with atomic_file(run_dir / "test_predictions.parquet") as handle:
        pq.write_table(predictions, handle)

    notes = list(report["notes"])
    misclassified = _most_confident_errors(predictions.to_pylist())
    history = _history_or_empty(head.history_path)
    best, run = history.get("best_epoch"), history.get("epochs_run")
    if best and run and best == run and run == history.get("epochs_requested"):
        notes.append(
            f"the best epoch was the last one ({best} of {run}): validation loss was still "
            "falling, so more --epochs may train a better head"
        )
    plots = write_plots(
        run_dir, labels, probabilities, class_names, report, history, misclassified, notes
    )
    test_fingerprint = split_fingerprint(manifest.path, "test")
    headline = {k: report[k] for k in HEADLINE}
    headline.update(n_test=len(ids), test_split_fingerprint=test_fingerprint)
    try:
        backbone_inputs = read_metadata(cache.cache_dir)
    except FileNotFoundError:
        backbone_inputs = {}
    backbone = cache.backbone
    weights = backbone.weights_source
    document = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_dir": str(run_dir),
        "n_test": len(ids),
        "class_names": class_names,
        "metrics": report,
        "headline": headline,
        "test_split_fingerprint": test_fingerprint,
        "manifest": {"path": str(manifest.path), "fingerprint": manifest.fingerprint},
        "backbone": {
            "fingerprint": cache.backbone_fingerprint,
            "weights": backbone.weights,
            "weights_description": weights.description,
            "random_weights": weights.is_random,
            "layer": backbone.layer,
            "image_size": backbone.image_size,
            "feature_dtype": cache.dtype,
            "cache_metadata": backbone_inputs,
        },
        "head": {
            "path": str(head.head_path),
            "fingerprint": head.fingerprint,
            "device": head.device,
            "spec": head.training.head.model_dump(mode="json"),
            "training": head.training.model_dump(mode="json"),
            "best_epoch": best,
            "epochs_run": run,
            "fine_tuned": _fine_tuned(head),
        },
        "plots": plots,
        "misclassified": misclassified,
        "notes": notes,
        "augmentation": augmentation.model_dump(mode="json") if augmentation else None,
        "fine_tuning": fine_tuning.model_dump(mode="json") if fine_tuning else None,
    }
    json_path = write_document(run_dir / FILE_NAME, KIND, VERSION, document)
    return Evaluation(json_path=json_path, metrics=headline)
