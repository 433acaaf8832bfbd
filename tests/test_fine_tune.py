"""Fine-tuning (training/fine_tune.py) on the session's tiny run: the block, the stage, the choice.

`tuned` fine-tunes `tiny_run`'s head with mixed7 on its cached mixed6 prefix (75 px, float32,
two epochs): enough steps to move every trainable weight, few enough to stay fast.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from inception_retrain.cli.options import UsageError, config_from_options
from inception_retrain.config import RetrainConfig


@pytest.mark.parametrize(
    ("block", "layer", "message"),
    [
        ("mixed8", "mixed7", "--fine-tune: mixed8 is above --layer mixed7"),
        ("mixed7", "mixed6", "--fine-tune: mixed7 is above --layer mixed6"),
        ("mixed0", "mixed7", "--fine-tune: mixed0 cannot be fine-tuned"),
        ("block7", "mixed7", "--fine-tune: unknown block 'block7'"),
    ],
)
def test_a_block_that_cannot_be_fine_tuned_is_refused_in_one_line(block, layer, message):
    with pytest.raises(UsageError) as refused:
        config_from_options({"fine_tune": block, "layer": layer})
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


def test_the_cli_refuses_a_bad_block_before_anything_runs(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "inception_retrain.cli", "run", "--fine-tune", "mixed9"]
        + ["--workdir", str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --fine-tune: mixed9 is above --layer mixed7: only blocks of the cut backbone "
        "can be fine-tuned (mixed1..mixed7), got 'mixed9'"
    ]
    assert not (tmp_path / "work").exists()


def test_the_prefix_is_the_block_below_and_the_setting_defaults_to_off():
    assert RetrainConfig().fine_tuning is None and RetrainConfig().prefix_extraction is None
    config = RetrainConfig(fine_tune="mixed6", fine_tune_optimizer="adam", augment_views=2)
    spec, prefix = config.fine_tuning, config.prefix_extraction
    assert (spec.block, spec.prefix, spec.blocks) == ("mixed6", "mixed5", ("mixed6", "mixed7"))
    assert (spec.learning_rate, spec.describe_optimizer()) == (1e-5, "Adam(learning_rate=1e-05)")
    assert prefix.backbone.layer == "mixed5"
    # The prefix is cached exactly as --layer is: same root, dtype, batching, shards, views.
    assert prefix.views == 2
    assert prefix.model_copy(update={"backbone": config.backbone}) == config.extraction
    default = RetrainConfig(fine_tune="mixed7").fine_tuning
    assert default.describe_optimizer() == "SGD(learning_rate=1e-05, momentum=0.9)"


@pytest.fixture(scope="module")
def prefix(tiny_run):
    """`tiny_run`'s images cached at mixed6, in its run folder's fine-tune/."""
    from inception_retrain.features.extraction import extract_features
    from inception_retrain.training.fine_tune import FINE_TUNE_DIR

    config = tiny_run.config.model_copy(update={"fine_tune": "mixed7"})
    return extract_features(
        tiny_run.manifest, config.prefix_extraction, tiny_run.run_dir / FINE_TUNE_DIR
    )


@pytest.fixture(scope="module")
def tuned(tiny_run, prefix):
    from inception_retrain.training.fine_tune import fine_tune
    from inception_retrain.training.fine_tune_spec import FineTuneSpec

    spec = FineTuneSpec(block="mixed7", learning_rate=1e-2, epochs=2, patience=0)
    return fine_tune(tiny_run.manifest, prefix, tiny_run.head, spec, tiny_run.run_dir)


@pytest.fixture(scope="module")
def inception(tiny_run):
    """The whole InceptionV3 `tiny_run`'s backbone is cut from (built once: ~5 s)."""
    from inception_retrain.features.backbone import load_inception

    return load_inception(tiny_run.config.weights, tiny_run.config.image_size)


def test_the_block_copy_is_the_backbone_between_the_two_cuts(tiny_run, inception):
    import keras

    from inception_retrain.features.backbone_block import block_model, trainable_layers

    size = tiny_run.config.image_size
    block = block_model(inception, "mixed6", "mixed7")
    images = np.random.default_rng(0).uniform(-1, 1, (4, size, size, 3)).astype("float32")
    cuts = keras.Model(inception.input, [inception.get_layer(f"mixed{i}").output for i in (6, 7)])
    mixed6, direct = (np.asarray(t) for t in cuts(images))
    through = np.asarray(block(mixed6))
    assert np.array_equal(direct, through)  # bit for bit: caching mixed6 changes nothing
    kinds = [type(layer).__name__ for layer in block.layers[1:]]
    assert len(kinds) == 32 and kinds.count("Conv2D") == kinds.count("BatchNormalization") == 10
    assert trainable_layers(block) == [f"mixed7_conv2d_{k}" for k in range(10)]
    assert all(not layer.trainable for layer in block.layers if "batch_normalization" in layer.name)
    assert sum(int(np.prod(w.shape)) for w in block.trainable_weights) == 2_138_112


def test_fine_tuning_trains_the_block_and_leaves_batchnorm_statistics_unchanged(inception, tuned):
    import keras

    from inception_retrain.features.backbone_block import block_model
    from inception_retrain.training.fine_tune import split_fine_tuned

    original = block_model(inception, "mixed6", "mixed7")
    block, _ = split_fine_tuned(keras.saving.load_model(tuned.head_path, compile=False))
    statistics = changed_kernels = 0
    for before, after in zip(original.layers[1:], block.layers[1:], strict=True):
        assert before.name == after.name
        if isinstance(after, keras.layers.BatchNormalization):
            assert not after.trainable
            for name in ("moving_mean", "moving_variance", "beta"):
                same = np.array_equal(getattr(before, name).numpy(), getattr(after, name).numpy())
                assert same, f"{after.name}.{name} changed"
                statistics += 1
        elif isinstance(after, keras.layers.Conv2D):
            changed_kernels += not np.array_equal(before.kernel.numpy(), after.kernel.numpy())
    assert statistics == 30 and changed_kernels == 10
    assert tuned.trained_layers == [
        *(f"mixed7_conv2d_{k}" for k in range(10)),
        "hidden_1",
        "hidden_2",
        "predictions",
    ]
    assert tuned.trained_block_weights == 2_138_112 and len(tuned.frozen_block_layers) == 10


def test_a_trainable_batchnorm_in_training_mode_would_change_its_statistics():
    """The control for the test above: the Keras 3 behaviour fine-tuning must avoid."""
    import keras

    layer = keras.layers.BatchNormalization(scale=False)
    x = np.random.default_rng(1).normal(3.0, 2.0, (16, 4)).astype("float32")
    layer(x, training=True)  # builds it; a trainable layer in training mode moves its stats
    assert not np.allclose(layer.moving_mean.numpy(), 0.0)
    layer.trainable = False
    before = layer.moving_mean.numpy().copy()
    layer(x, training=True)
    assert np.array_equal(layer.moving_mean.numpy(), before)


def test_the_stage_writes_its_model_history_and_provenance(tiny_run, prefix, tuned):
    from inception_retrain.training.fine_tune import FineTunedModel, read_fine_tuned
    from inception_retrain.training.train import read_history, recorded_training

    folder = tiny_run.run_dir / "fine-tune"
    assert tuned.head_path == folder / "model.keras" and isinstance(tuned, FineTunedModel)
    assert read_fine_tuned(tiny_run.run_dir) == tuned
    history = read_history(tuned.history_path)
    assert history["epochs_run"] == tuned.epochs_run == 2 and len(history["val_loss"]) == 2
    assert history["fine_tuning"]["block"] == "mixed7"
    assert history["fine_tuning"]["base_head"] == tiny_run.head.fingerprint
    assert recorded_training(history) == tiny_run.head.training
    assert (tiny_run.run_dir / "tensorboard" / "fine-tune" / "train").is_dir()
    assert not list((tiny_run.run_dir / "checkpoints" / "fine-tune").glob("*"))
    assert tuned.prefix_fingerprint == prefix.backbone_fingerprint
    assert tuned.fingerprint != tiny_run.head.fingerprint


def test_fine_tuning_refuses_a_cache_at_another_layer(tiny_run, tmp_path):
    from inception_retrain.plumbing.errors import DataError
    from inception_retrain.training.fine_tune import fine_tune
    from inception_retrain.training.fine_tune_spec import FineTuneSpec

    with pytest.raises(DataError, match="needs features cached at mixed6, not at mixed7"):
        fine_tune(tiny_run.manifest, tiny_run.cache, tiny_run.head, FineTuneSpec(), tmp_path)


def test_the_choice_reads_validation_and_the_comparison_pairs_test_images(tiny_run, prefix, tuned):
    from inception_retrain.data.manifest import read_image_rows
    from inception_retrain.evaluation.fine_tuning_effect import (
        FINE_TUNED,
        HEAD_ONLY,
        measure_fine_tuning,
    )

    effect = measure_fine_tuning(
        tiny_run.manifest, tiny_run.cache, tiny_run.head, prefix, tuned, 0.02, 0.02
    )
    head, fine = effect.validation[HEAD_ONLY], effect.validation[FINE_TUNED]
    assert head.images == fine.images == len(read_image_rows(tiny_run.manifest.path, "validation"))
    assert effect.chosen == (FINE_TUNED if fine.log_loss < head.log_loss else HEAD_ONLY)
    assert f"{fine.log_loss:.4f}" in effect.reason and f"{head.log_loss:.4f}" in effect.reason
    n_test = len(read_image_rows(tiny_run.manifest.path, "test"))
    accuracy, log_loss = effect.test["accuracy"], effect.test["log_loss"]
    assert effect.n_test == accuracy["n"] == log_loss["n"] == n_test
    means = effect.test_means
    assert accuracy["difference"] == pytest.approx(
        means[FINE_TUNED]["accuracy"] - means[HEAD_ONLY]["accuracy"]
    )
    assert log_loss["difference"] == pytest.approx(
        means[HEAD_ONLY]["log_loss"] - means[FINE_TUNED]["log_loss"]
    )
    assert accuracy["low"] <= accuracy["difference"] <= accuracy["high"]
    assert "variance between training seeds" in effect.notes[0]


def test_the_choice_rule_keeps_the_head_on_a_tie_or_without_validation():
    from inception_retrain.evaluation.fine_tuning_effect import (
        FINE_TUNED,
        HEAD_ONLY,
        ValidationScores,
        _choose,
    )

    def scores(head_loss, tuned_loss):
        return {
            HEAD_ONLY: ValidationScores(images=10, log_loss=head_loss, accuracy=0.8),
            FINE_TUNED: ValidationScores(images=10, log_loss=tuned_loss, accuracy=0.8),
        }

    assert _choose(scores(0.5, 0.4))[0] == FINE_TUNED
    assert _choose(scores(0.5, 0.5))[0] == HEAD_ONLY
    assert _choose(scores(0.4, 0.5))[0] == HEAD_ONLY
    chosen, reason = _choose({})
    assert chosen == HEAD_ONLY and reason.startswith("no validation images")


def test_the_nightly_deployment_exposes_fine_tuning_in_its_parameters():
    from inception_retrain.flows.deployments import (
        NIGHTLY_RETRAIN,
        build_deployments,
        nightly_parameters,
    )

    (nightly,) = [d for d in build_deployments() if d.name == NIGHTLY_RETRAIN]
    schema = nightly._parameter_openapi_schema.model_dump()["definitions"]["RetrainConfig"]
    fields = schema["properties"]
    assert (
        fields["fine_tune"]["default"] is None and "unfreeze" in fields["fine_tune"]["description"]
    )
    assert fields["fine_tune_optimizer"]["enum"] == ["sgd", "adam"]
    assert fields["fine_tune_learning_rate"]["default"] == 1e-5
    parameters = nightly_parameters({"fine_tune": "mixed7", "fine_tune_optimizer": "adam"})
    config = RetrainConfig.model_validate(parameters["config"])
    assert config.fine_tuning.describe_optimizer() == "Adam(learning_rate=1e-05)"
