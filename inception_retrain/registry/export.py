"""Export: one self-contained inference model per version under `WORKDIR/models/`.

The exported `model.keras` maps a batch of raw RGB images (float32, (None, None, None, 3),
values 0-255, any size) to probabilities:

    Resizing + Rescaling (preprocess) -> frozen backbone (backbone) -> head

It contains only built-in Keras layers and nested functional models (no Lambda), so it loads
with `keras.saving.load_model(path, safe_mode=True)`. A binary model outputs (N, 1), the
probability of `class_names[1]`; a multi-class model (N, K) softmax. Beside it:

    saved_model/    `model.export` for TF Serving (signature `serve`, input as above)
    labels.json     {"class_names": [...], "output": "sigmoid"|"softmax"}
    metrics.json    the evaluation's headline metrics, the test-split fingerprint, lineage
    model_card.md   data source and counts, weights (random ones labelled), fingerprints,
                    the backbone's and the training's settings, metrics (`model_card.md.j2`);
                    for a fine-tuned model, which layers were trained and with which optimiser

Everything is written into a hidden staging folder that is renamed to the version name only
when complete (`versions.publish_version`), so a version folder is always complete; on a
full disk the staging folder is removed and the export fails with a one-line
`DiskFullError` (the champion and every published version stay as they were). The
backbone is the one that made the cached features (`cache.backbone`). A fine-tuned model
(`training.fine_tune.FineTunedModel`, exported with its prefix cache) starts at the prefix,
so the exported model is the frozen prefix, then the fine-tuned block(s) and the head: the
same preprocessing, backbone and nesting, the block carried inside the model.

    version = export_model(manifest, cache, head, evaluation, policy, run_dir)
    version.path  # WORKDIR/models/v0003-20250101T120000Z
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from inception_retrain.data.manifest import Manifest, read_metadata, split_class_counts
from inception_retrain.evaluation import metrics as M
from inception_retrain.evaluation.evaluate import HEADLINE, Evaluation, read_evaluation
from inception_retrain.evaluation.reports import render
from inception_retrain.features.backbone import load_backbone
from inception_retrain.features.feature_cache import FeatureCache
from inception_retrain.features.preprocess import preprocessing_layers
from inception_retrain.plumbing.errors import DiskFullError
from inception_retrain.plumbing.files import atomic_write, disk_full_error, is_disk_full
from inception_retrain.plumbing.schemas import write_document
from inception_retrain.registry.promotion_policy import PromotionPolicy
from inception_retrain.registry.versions import (
    METRICS_FILE,
    METRICS_KIND,
    METRICS_VERSION,
    ModelVersion,
    new_staging,
    publish_version,
)
from inception_retrain.training.fine_tune import FineTunedModel
from inception_retrain.training.head import TrainedHead, load_head

LABELS_KIND, LABELS_VERSION = "model-labels", 1


def build_inference_model(head_path: Path, weights: str, layer: str, image_size: int):
    """Raw RGB images -> probabilities, as one functional Keras model."""
    import keras

    head = load_head(head_path)
    backbone = load_backbone(weights, layer, image_size)
    backbone.trainable = False
    image = keras.Input(shape=(None, None, 3), dtype="float32", name="image")
    x = image
    for preprocessing in preprocessing_layers(image_size):
        x = preprocessing(x)
    probabilities = head(backbone(x, training=False))
    return keras.Model(image, probabilities, name="inception_retrain")


def export_model(
    manifest: Manifest,
    cache: FeatureCache,
    head: TrainedHead,
    evaluation: Evaluation,
    policy: PromotionPolicy,
    run_dir: Path,
) -> ModelVersion:
    """Write a new, complete model version into `policy.models_dir`; it is not champion until
    `promote` says so (its score is `policy.metric`'s)."""
    models = policy.models_dir
    backbone = cache.backbone
    staging = new_staging(models)
    try:
        model = build_inference_model(
            head.head_path, backbone.weights, backbone.layer, backbone.image_size
        )
        model.save(staging / "model.keras")
        model.export(str(staging / "saved_model"), format="tf_saved_model", verbose=False)
        class_names = list(manifest.class_names)
        write_document(
            staging / "labels.json",
            LABELS_KIND,
            LABELS_VERSION,
            {
                "class_names": class_names,
                "output": "sigmoid" if len(class_names) == 2 else "softmax",
            },
        )
        evaluation_document = read_evaluation(evaluation.json_path)
        lineage = {
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "run_dir": str(run_dir),
            "evaluation": str(evaluation.json_path),
            "manifest_fingerprint": manifest.fingerprint,
            "backbone_fingerprint": cache.backbone_fingerprint,
            "head_fingerprint": head.fingerprint,
            "weights": backbone.weights,
            "weights_description": backbone.weights_source.description,
            "layer": backbone.layer,
            "image_size": backbone.image_size,
            "feature_dtype": cache.dtype,
            "fine_tuning": _fine_tuning(head),
        }
        metrics = {
            "metrics": dict(evaluation.metrics),
            "test_split_fingerprint": evaluation.metrics.get("test_split_fingerprint"),
            "n_test": evaluation.metrics.get("n_test"),
            "class_names": class_names,
            "per_class": evaluation_document["metrics"]["per_class"],
            "lineage": lineage,
        }
        write_document(staging / METRICS_FILE, METRICS_KIND, METRICS_VERSION, metrics)
        card = model_card(manifest, cache, head, lineage, evaluation.metrics, class_names)
        atomic_write(staging / "model_card.md", card)
        version_dir = publish_version(staging, models)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if is_disk_full(error) and not isinstance(error, DiskFullError):
            raise disk_full_error(models) from None  # Keras and TF write without us
        raise
    return ModelVersion(
        version=version_dir.name,
        path=version_dir,
        promoted=False,
        score=M.score(evaluation.metrics, policy.metric),
        champion_score=None,
    )


def _fine_tuning(head: TrainedHead) -> dict | None:
    """What a fine-tuned model trained, for the lineage and the card (None: head only)."""
    if not isinstance(head, FineTunedModel):
        return None
    spec = head.fine_tuning
    return {
        "blocks": list(spec.blocks),
        "frozen_up_to": spec.prefix,
        "optimizer": spec.describe_optimizer(),
        "trained_layers": list(head.trained_layers),
        "frozen_batchnorm_layers": list(head.frozen_block_layers),
        "trained_block_weights": head.trained_block_weights,
        "epochs_run": head.epochs_run,
        "best_epoch": head.best_epoch,
        "base_head_fingerprint": head.base_head_fingerprint,
    }


def model_card(
    manifest: Manifest,
    cache: FeatureCache,
    head: TrainedHead,
    lineage: dict,
    metrics: dict,
    class_names: list[str],
) -> str:
    """model_card.md, rendered from `model_card.md.j2`."""
    split_rows, skipped = split_class_counts(manifest.path)
    weights = cache.backbone.weights_source
    settings = {
        "backbone": cache.backbone.model_dump(mode="json"),
        "feature_dtype": cache.dtype,
        "training": head.training.model_dump(mode="json"),
    }
    if isinstance(head, FineTunedModel):
        settings["fine_tuning"] = head.fine_tuning.model_dump(mode="json")
    return render(
        "model_card.md.j2",
        random_weights=weights.description if weights.is_random else "",
        class_names=class_names,
        backbone=cache.backbone,
        training=head.training,
        settings_json=json.dumps(settings, indent=2),
        source=read_metadata(manifest.path).get("source", "unknown"),
        skipped=skipped,
        split_rows=split_rows,
        split_columns=["split", *class_names, "total"],
        lineage=lineage,
        fine_tuning=lineage.get("fine_tuning"),
        metrics=metrics,
        metric_rows=[{"metric": k, "value": metrics.get(k)} for k in HEADLINE],
    )
