"""Export: the .keras file reproduces the pipeline's test probabilities in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from inception_retrain.plumbing.schemas import read_document

# Runs in a fresh interpreter: load model.keras in safe mode, predict each raw test image
# file, and call the SavedModel's `serve` signature on the same images.
FRESH_PROCESS = """
import json, sys
import keras, numpy as np, tensorflow as tf
from inception_retrain.data.images import load_rgb

model_dir, uris_path, out_path = sys.argv[1:]
uris = json.load(open(uris_path))
model = keras.saving.load_model(f"{model_dir}/model.keras", safe_mode=True)

def layers(m):
    for layer in m.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from layers(layer)

kinds = sorted({type(layer).__name__ for layer in layers(model)})
images = [load_rgb(uri)[None].astype("float32") for uri in uris]
spec = tf.TensorSpec([None, None, None, 3], tf.float32)  # traced once: faster than eager
infer = tf.function(lambda x: model(x, training=False), input_signature=[spec])
keras_p = [infer(x).numpy().reshape(-1).tolist() for x in images]
served = tf.saved_model.load(f"{model_dir}/saved_model")
serve_p = [served.serve(tf.constant(x)).numpy().reshape(-1).tolist() for x in images]
json.dump({"keras": keras_p, "serve": serve_p, "layer_types": kinds}, open(out_path, "w"))
"""


def fresh_process_predictions(model_dir, uris, tmp_path) -> dict:
    (tmp_path / "uris.json").write_text(json.dumps(uris))
    out = tmp_path / "out.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-c", FRESH_PROCESS, str(model_dir), str(tmp_path / "uris.json")]
    done = subprocess.run(
        [*command, str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def positive_probabilities(predictions_path, class_names):
    table = pq.read_table(predictions_path)
    return table.column("uri").to_pylist(), table.column(f"p_{class_names[1]}").to_numpy()


def test_exported_model_reproduces_pipeline_probabilities_in_a_fresh_process(
    tiny_run, tiny_version, tmp_path
):
    from inception_retrain.evaluation.evaluate import evaluate
    from inception_retrain.features.extraction import extract_features

    names = tiny_run.manifest.class_names
    uris, expected32 = positive_probabilities(tiny_run.run_dir / "test_predictions.parquet", names)
    # The comparison is only meaningful if the probabilities differ between images.
    assert np.ptp(expected32) > 0.05

    result = fresh_process_predictions(tiny_version.path, uris, tmp_path)
    exported = np.array(result["keras"]).reshape(-1)
    assert "Lambda" not in result["layer_types"]
    assert {"Resizing", "Rescaling"} <= set(result["layer_types"])
    # float32 cached features: the same computation up to float rounding.
    np.testing.assert_allclose(exported, expected32, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.array(result["serve"]).reshape(-1), exported, atol=1e-5)

    # The default float16 cache (real extraction): the same model within float16 rounding.
    config16 = tiny_run.config.model_copy(update={"feature_dtype": "float16"})
    run16 = tmp_path / "run16"
    cache16 = extract_features(tiny_run.manifest, config16.extraction, run16)
    assert cache16.dtype == "float16" and cache16.cache_dir != tiny_run.cache.cache_dir
    evaluate(tiny_run.manifest, cache16, tiny_run.head, run16)
    uris16, expected16 = positive_probabilities(run16 / "test_predictions.parquet", names)
    assert uris16 == uris
    np.testing.assert_allclose(exported, expected16, rtol=0, atol=1e-3)


def test_version_folder_is_complete_and_describes_the_model(tiny_run, tiny_version):
    from inception_retrain.plumbing.files import read_umask  # noqa: F401
    from inception_retrain.registry.versions import REQUIRED_FILES, VERSION_PATTERN, list_versions

    version_dir = tiny_version.path
    models = version_dir.parent
    assert models == tiny_run.config.workdir / "models"
    assert VERSION_PATTERN.match(tiny_version.version) and version_dir.name == tiny_version.version
    assert tiny_version.promoted is False
    assert all((version_dir / name).is_file() for name in REQUIRED_FILES)
    assert (version_dir / "saved_model" / "saved_model.pb").is_file()
    assert not [p for p in models.iterdir() if p.name.startswith(".staging-")]
    assert tiny_version.version in list_versions(models)

    mode = 0o666 & ~read_umask()  # readable by a serving user as any file the umask allows
    assert (version_dir / "labels.json").stat().st_mode & 0o777 == mode
    assert version_dir.stat().st_mode & 0o777 == 0o777 & ~read_umask()
    labels = read_document(version_dir / "labels.json", "model-labels", 1)
    assert labels == {"class_names": tiny_run.manifest.class_names, "output": "sigmoid"}
    metrics = read_document(version_dir / "metrics.json", "model-metrics", 1)
    evaluation = tiny_run.evaluation.metrics
    assert metrics["test_split_fingerprint"] == evaluation["test_split_fingerprint"]
    assert metrics["metrics"]["roc_auc"] == pytest.approx(evaluation["roc_auc"])
    assert tiny_version.score == pytest.approx(evaluation["roc_auc"])

    card = (version_dir / "model_card.md").read_text()
    assert "RANDOM weights" in card
    for fingerprint in (
        tiny_run.cache.backbone_fingerprint,
        tiny_run.manifest.fingerprint,
        evaluation["test_split_fingerprint"],
    ):
        assert fingerprint in card
    assert f"| accuracy | {evaluation['accuracy']:.4f} |" in card
    assert str(tiny_run.config.data) in card  # the data source


def test_failed_export_publishes_nothing(tiny_run, tmp_path):
    from inception_retrain.registry.export import export_model
    from inception_retrain.registry.versions import list_versions

    config = tiny_run.config.model_copy(update={"workdir": tmp_path / "work"})
    broken_head = tiny_run.head.model_copy(update={"head_path": tmp_path / "missing.keras"})
    with pytest.raises((OSError, ValueError)):
        export_model(
            tiny_run.manifest,
            tiny_run.cache,
            broken_head,
            tiny_run.evaluation,
            config.promotion,
            tiny_run.run_dir,
        )
    models = tmp_path / "work" / "models"
    assert list_versions(models) == []
    assert not [p for p in models.iterdir() if p.name.startswith(".staging-")]
