"""Export stage: one self-contained inference model per version under `WORKDIR/models/`.

The exported `model.keras` maps a batch of raw RGB images (float32, (None, None, None, 3),
values 0-255, any size) to probabilities:

    Resizing + Rescaling (tasks.preprocess) -> frozen backbone (tasks.backbone) -> head

It contains only built-in Keras layers and nested functional models (no Lambda), so it loads
with `keras.saving.load_model(path, safe_mode=True)`. A binary model outputs (N, 1), the
probability of `class_names[1]`; a multi-class model (N, K) softmax. Beside it:

    saved_model/    `model.export` for TF Serving (signature `serve`, input as above)
    labels.json     {"class_names": [...], "output": "sigmoid"|"softmax"}
    metrics.json    the evaluation's headline metrics, the test-split fingerprint, lineage
    model_card.md   data source and counts, weights (random ones labelled), fingerprints,
                    config, metrics

Everything is written into a hidden staging folder that is renamed to the version name only
when complete (`tasks.registry.publish_version`), so a version folder is always complete.

    version = export_model(manifest, cache, head, evaluation, config, run_dir)
    version.path  # WORKDIR/models/v0003-20250101T120000Z
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.artifacts import (
    Evaluation,
    FeatureCache,
    Manifest,
    ModelVersion,
    TrainedHead,
)
from inception_retrain.config import RetrainConfig
from inception_retrain.files import atomic_write_json, atomic_write_text
from tasks import metrics as M
from tasks.backbone import weights_description
from tasks.evaluate import HEADLINE
from tasks.registry import models_dir, publish_version
from tasks.report_html import table_markdown


def build_inference_model(head_path: Path, weights: str, layer: str, image_size: int):
    """Raw RGB images -> probabilities, as one functional Keras model."""
    import keras

    from tasks.backbone import load_backbone
    from tasks.preprocess import preprocessing_layers

    head = keras.saving.load_model(head_path, compile=False, safe_mode=True)
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
    config: RetrainConfig,
    run_dir: Path,
) -> ModelVersion:
    """Write a new, complete model version; it is not champion until `promote` says so."""
    models = models_dir(config.workdir)
    models.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=models))
    try:
        model = build_inference_model(
            head.head_path, config.weights, config.layer, config.image_size
        )
        model.save(staging / "model.keras")
        model.export(str(staging / "saved_model"), format="tf_saved_model", verbose=False)
        class_names = list(manifest.class_names)
        atomic_write_json(
            staging / "labels.json",
            {
                "class_names": class_names,
                "output": "sigmoid" if len(class_names) == 2 else "softmax",
            },
        )
        evaluation_document = json.loads(Path(evaluation.json_path).read_text())
        lineage = {
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "run_dir": str(run_dir),
            "evaluation": str(evaluation.json_path),
            "manifest_fingerprint": manifest.fingerprint,
            "backbone_fingerprint": cache.backbone_fingerprint,
            "head_fingerprint": head.fingerprint,
            "weights": config.weights,
            "weights_description": weights_description(config.weights),
            "layer": config.layer,
            "image_size": config.image_size,
            "feature_dtype": cache.dtype,
        }
        metrics = {
            "metrics": dict(evaluation.metrics),
            "test_split_fingerprint": evaluation.metrics.get("test_split_fingerprint"),
            "n_test": evaluation.metrics.get("n_test"),
            "class_names": class_names,
            "per_class": evaluation_document["metrics"]["per_class"],
            "lineage": lineage,
        }
        atomic_write_json(staging / "metrics.json", metrics)
        card = model_card(manifest, config, lineage, evaluation.metrics, class_names)
        atomic_write_text(staging / "model_card.md", card)
        version_dir = publish_version(staging, models)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ModelVersion(
        version=version_dir.name,
        path=version_dir,
        promoted=False,
        score=M.score(evaluation.metrics, config.promotion_metric),
        champion_score=None,
    )


export_task = task(export_model, name="export", cache_policy=NO_CACHE)


def data_counts(manifest_path: Path) -> tuple[str, list[dict], int]:
    """(source, one row per split with per-class counts of ok images, skipped files)."""
    table = pq.read_table(manifest_path, columns=["label", "split", "status"])
    meta = (table.schema.metadata or {}).get(b"inception_retrain", b"{}")
    source = str(json.loads(meta).get("source", "unknown"))
    rows = table.to_pylist()
    counts = Counter((r["split"], r["label"]) for r in rows if r["status"] == "ok")
    skipped = sum(r["status"] != "ok" for r in rows)
    split_rows = []
    for split in ("train", "validation", "test"):
        row = {"split": split, **{label: n for (s, label), n in counts.items() if s == split}}
        row["total"] = sum(n for (s, _), n in counts.items() if s == split)
        split_rows.append(row)
    return source, split_rows, skipped


def model_card(manifest, config, lineage: dict, metrics: dict, class_names: list[str]) -> str:
    source, split_rows, skipped = data_counts(manifest.path)
    weights = lineage["weights_description"]
    warning = (
        "\n> **Warning: the backbone has RANDOM weights (not pretrained).** This model only "
        "demonstrates the pipeline; do not use its predictions.\n"
        if config.weights.startswith("random")
        else ""
    )
    metric_rows = [{"metric": k, "value": metrics.get(k)} for k in HEADLINE]
    lines = [
        "# Model card",
        warning,
        "## What it does",
        "",
        f"Classifies an RGB image (any size; resized to {config.image_size} px) into "
        f"{len(class_names)} classes: {', '.join(class_names)}. Input: float32 pixel values "
        "0-255, shape (batch, height, width, 3). Output: "
        + (
            f"(batch, 1), the probability of `{class_names[1]}`."
            if len(class_names) == 2
            else "(batch, classes), softmax probabilities in `labels.json` order."
        ),
        "",
        "## Data",
        "",
        f"- source: `{source}`",
        f"- skipped input files: {skipped}",
        "",
        table_markdown(split_rows, ["split", *class_names, "total"]),
        "",
        "## Model",
        "",
        f"- backbone: InceptionV3 up to `{config.layer}`, frozen",
        f"- weights: {weights} (`{config.weights}`)",
        f"- head: Flatten, Dense{tuple(config.hidden_units)}, dropout {config.dropout_rate} "
        f"({config.dropout_placement})",
        f"- backbone fingerprint: `{lineage['backbone_fingerprint']}`",
        f"- manifest fingerprint: `{lineage['manifest_fingerprint']}`",
        f"- head fingerprint: `{lineage['head_fingerprint']}`",
        f"- test split fingerprint: `{metrics.get('test_split_fingerprint')}`",
        f"- trained in run: `{lineage['run_dir']}`",
        "",
        f"## Metrics (test split, {metrics.get('n_test')} images)",
        "",
        table_markdown(metric_rows, ["metric", "value"]),
        "",
        "## Config",
        "",
        "```json",
        json.dumps(config.model_dump(mode="json"), indent=2, sort_keys=True),
        "```",
        "",
    ]
    return "\n".join(lines)
