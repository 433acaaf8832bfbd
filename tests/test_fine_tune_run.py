"""`inception-retrain run --fine-tune mixed7`, end to end with the real CLI, twice on one workdir.

The small demo at 75 px with a weights file, float32 features, a 64-128 head trained one
epoch at a learning rate so low (1e-5) that it stays under-trained, then three epochs of
fine-tuning mixed7 with it (SGD 3e-3, momentum 0.9), which keeps training the head and so
lowers the validation loss by a wide margin (about 0.85 -> 0.64 here): the fine-tuned model is
chosen, and everything after uses it. The second run, on unchanged data and with the same
options (in this process: `run_retrain`, what the CLI's `run` calls, without a second
start-up), computes no feature at either layer and trains the same model again (fine-tuning is
deterministic, across processes too), so it does not publish it twice.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from prefect_fixtures import child_env
from test_export import fresh_process_predictions, positive_probabilities
from tiny_cli import TINY_SWEEP

from inception_retrain.cli.options import config_from_options
from inception_retrain.flows.retrain import run_retrain

# Two whole fine-tuning runs through the CLI (2-3 minutes): extended. The default suite keeps
# the stage-level versions in test_fine_tune.py and test_fine_tune_equivalence.py.
pytestmark = [pytest.mark.slow, pytest.mark.extended]

CLI = Path(sys.executable).parent / "inception-retrain"
RUN_TIMEOUT_S = 600
SIZE = 75
TINY_FINE_TUNE = [
    "--image-size",
    str(SIZE),
    "--feature-dtype",
    "float32",
    "--hidden-units",
    "64,128",
    "--learning-rate",
    "1e-5",
    "--split-fractions",
    "0.5,0.2,0.3",
    "--epochs",
    "1",
    "--batch-size",
    "16",
    "--patience",
    "0",
    *TINY_SWEEP,
    "--fine-tune",
    "mixed7",
    "--fine-tune-learning-rate",
    "3e-3",
    "--fine-tune-epochs",
    "3",
    "--fine-tune-patience",
    "0",
]


def _run(arguments: list[str], env: dict, log: Path) -> Path:
    with open(log, "wb") as err:
        done = subprocess.run(
            [str(CLI), "run", *arguments],
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            timeout=RUN_TIMEOUT_S,
            cwd=log.parent,
        )
    assert done.returncode == 0, log.read_text()[-6000:]
    return Path(done.stdout.decode().strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(small_demo_dir, random_weights_file, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fine-tune-run")
    # Each run starts its own temporary Prefect server; a busy machine needs a minute.
    env = child_env(
        PREFECT_HOME=str(folder / "prefect"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
    )
    arguments = [
        "--data",
        str(small_demo_dir),
        "--workdir",
        str(folder / "work"),
        "--weights",
        str(random_weights_file),
        *TINY_FINE_TUNE,
    ]
    first = _run(arguments, env, folder / "first.log")
    options = dict(zip(arguments[::2], arguments[1::2], strict=True))
    config = config_from_options({key[2:].replace("-", "_"): v for key, v in options.items()})
    second, ok, message = run_retrain(config)
    assert ok, message
    return SimpleNamespace(first=first, second=second, folder=folder, weights=random_weights_file)


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_the_prefix_is_cached_beside_the_head_features_and_a_rerun_computes_neither(runs):
    head, prefix = _json(runs.first / "extract.json"), _json(runs.first / "fine-tune/extract.json")
    assert head["fingerprint_inputs"]["layer"] == "mixed7"
    assert prefix["fingerprint_inputs"]["layer"] == "mixed6"
    assert prefix["fingerprint"] != head["fingerprint"]
    assert prefix["computed"] == prefix["images"] == head["computed"] > 0
    assert prefix["feature_shape"] == head["feature_shape"]  # mixed6 and mixed7: same bytes

    again = _json(runs.second / "fine-tune/extract.json")
    assert again["fingerprint"] == prefix["fingerprint"]
    assert again["computed"] == 0 and again["reused"] == prefix["images"]
    assert _json(runs.second / "extract.json")["computed"] == 0


def test_validation_chooses_the_fine_tuned_model_and_the_report_shows_the_paired_comparison(
    runs,
):
    evaluation = _json(runs.first / "evaluation.json")
    section = evaluation["fine_tuning"]
    assert section["chosen"] == "fine-tuned"
    validation = section["validation"]
    assert validation["fine-tuned"]["log_loss"] < validation["head-only"]["log_loss"]
    assert evaluation["head"]["fine_tuned"]["blocks"] == ["mixed7"]
    assert evaluation["head"]["path"].endswith("fine-tune/model.keras")
    for metric in ("accuracy", "log_loss"):
        row = section["test"][metric]
        assert row["n"] == evaluation["n_test"]
        assert row["verdict"] in ("better", "equivalent", "worse", "inconclusive")
        assert row["low"] <= row["difference"] <= row["high"]
    report = (runs.first / "evaluation.md").read_text()
    assert (
        "**The run's model: fine-tuned.** Chosen on the validation split, never on test" in report
    )
    assert "| correct (accuracy) |" in report and "| log loss |" in report
    assert "variance between training seeds" in report
    assert 'id="fine-tuning"' in (runs.first / "evaluation.html").read_text()


def test_the_dropout_report_measures_dropout_inside_the_fine_tuned_block(runs):
    report = (runs.first / "dropout_impact.md").read_text()
    assert (
        "**With fine-tuning (mixed7 unfrozen), the backbone's gradients too?** Yes, through "
        "backpropagation: the head's Dropout mask changed the gradient of 10 of the 10 "
        "trainable layers of mixed7"
    ) in report
    assert "| C6 | mechanism | supported | With the top block unfrozen (mixed7)" in report
    assert "| F3 | mechanism | supported |" in report


def _exported(runs) -> Path:
    promotion = _json(runs.first / "promotion.json")
    assert promotion["decision"] == "promoted"
    return runs.first.parent.parent / "models" / promotion["version"]


def test_the_export_carries_the_fine_tuned_block_over_the_untouched_prefix(runs):
    import keras

    from inception_retrain.features.backbone import load_inception
    from inception_retrain.features.backbone_block import block_model

    model = keras.saving.load_model(_exported(runs) / "model.keras", safe_mode=True)
    nested = {layer.name: layer for layer in model.layers}
    prefix, tuned = nested["inception_v3_mixed6"], nested["fine_tuned"]
    original = load_inception(str(runs.weights), SIZE)
    cut = keras.Model(original.input, original.get_layer("mixed6").output)
    assert len(prefix.weights) == len(cut.weights) > 0
    for exported, from_file in zip(prefix.weights, cut.weights, strict=True):
        assert np.array_equal(exported.numpy(), from_file.numpy()), exported.path
    block, reference = tuned.get_layer("block"), block_model(original, "mixed6", "mixed7")
    kernels = 0
    for exported, from_file in zip(block.layers[1:], reference.layers[1:], strict=True):
        same = [
            np.array_equal(a.numpy(), b.numpy())
            for a, b in zip(exported.weights, from_file.weights, strict=True)
        ]
        if isinstance(exported, keras.layers.Conv2D):
            assert not any(same), exported.name
            kernels += 1
        else:
            assert all(same), exported.name  # BatchNormalization: frozen, as in the file
    assert kernels == 10


def test_the_export_reproduces_the_pipeline_and_its_card_says_what_was_trained(runs, tmp_path):
    version = _exported(runs)
    class_names = _json(runs.first / "evaluation.json")["class_names"]
    uris, expected = positive_probabilities(runs.first / "test_predictions.parquet", class_names)
    result = fresh_process_predictions(version, uris, tmp_path)
    exported = np.array(result["keras"]).reshape(-1)
    np.testing.assert_allclose(exported, expected, rtol=0, atol=1e-5)  # float32 features
    np.testing.assert_allclose(np.array(result["serve"]).reshape(-1), exported, atol=1e-5)
    card = (version / "model_card.md").read_text()
    assert "frozen up to `mixed6`, mixed7 fine-tuned" in card
    assert "- optimiser: SGD(learning_rate=0.003, momentum=0.9)" in card
    assert "mixed7_conv2d_0, mixed7_conv2d_1" in card and "hidden_1, hidden_2, predictions" in card


def test_the_rerun_trains_the_same_fine_tuned_model_and_publishes_nothing(runs):
    first, second = _json(runs.first / "evaluation.json"), _json(runs.second / "evaluation.json")
    assert second["fine_tuning"]["chosen"] == "fine-tuned"
    assert second["head"]["fingerprint"] == first["head"]["fingerprint"]
    promotion = _json(runs.second / "promotion.json")
    assert promotion["decision"] == "rejected" and "the same model" in promotion["reason"]
