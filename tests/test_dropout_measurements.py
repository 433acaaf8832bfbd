"""Dropout measurements on small real Keras models where the answer is known exactly.

A toy frozen "backbone" (Conv2D -> BatchNormalization -> ReLU) plus the project's own head
(`training.head.build_head`, small hidden layers) stand in for InceptionV3 + head: the same
layer kinds, so the same rules apply, in milliseconds.
"""

from __future__ import annotations

import numpy as np
import pytest

from inception_retrain.dropout import backward, chain, direct, forward, frozen, inference
from inception_retrain.dropout import mechanisms as rules
from inception_retrain.dropout.claims import CLARIFIED, REFUTED, SUPPORTED
from inception_retrain.training.head import build_head
from inception_retrain.training.head_spec import HeadSpec

IMAGE = (12, 12, 3)


def toy_backbone(trainable: bool = False):
    import keras

    inputs = keras.Input(IMAGE)
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Activation("relu", name="relu")(x)
    model = keras.Model(inputs, x, name="toy_backbone")
    model.trainable = trainable
    return model


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(8, *IMAGE)).astype(np.float32)
    backbone = toy_backbone()
    features = np.asarray(backbone(rng.normal(size=(96, *IMAGE)).astype(np.float32)))
    labels = rng.integers(0, 2, size=96).astype(np.int32)
    return backbone, images, features, labels


def head_layers(feature_shape, placement="after_dense2", rate=0.2):
    spec = HeadSpec(hidden_units=(32, 64), dropout_rate=rate, dropout_placement=placement)
    head = build_head(feature_shape, 2, spec)
    return head, chain.measurement_layers(head)[0]


def test_dropped_units_get_exactly_zero_gradient_columns(data):
    backbone, _, features, labels = data
    _, layers = head_layers(features.shape[1:])
    result = backward.measure_backward(layers, features[:16], labels[:16], 2, backbone)
    check = result.dropped_columns[0]
    assert check.dense == "hidden_2" and check.dropped_units_total > 0
    assert check.max_abs_gradient_dropped_kernel_columns == 0.0
    assert check.max_abs_gradient_dropped_bias == 0.0
    # the zeros come from the mask: every kept, active unit does get a gradient
    assert check.kept_active_units_with_nonzero_gradient == check.kept_active_units_total > 0
    # in a batch step only units silent for EVERY sample have an all-zero column
    assert check.batch_zero_columns_match_silent_units
    assert check.batch_units_dropped_somewhere_with_gradient > 0
    assert result.relative_change("hidden_1/kernel") > 0  # an earlier layer's gradient changes
    # rate 1: no gradient reaches anything before the Dropout (Keras cuts the graph)
    assert result.rate_1_zero_before_last_dropout
    assert "hidden_1/kernel" in result.rate_1_variables_without_gradient_path
    rows = {row.variable: row for row in result.variables}
    assert rows["predictions/bias"].norm_rate_1 > 0  # ... while the output bias still learns
    assert rows["hidden_1/kernel"].relative_change_rate_1 == 1.0  # all zero: a 100% change
    assert result.frozen.backbone_trainable_variables == 0
    # zero per sample, not per batch step: a definitional clarification, not a finding
    assert rules.judge_f2(result).verdict == CLARIFIED


@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_kept_values_are_scaled_by_exactly_one_over_keep_rate(data, rate):
    backbone, images, features, _ = data
    _, layers = head_layers(features.shape[1:], rate=rate)
    result = forward.measure_forward(backbone, layers, images)
    scaling = result.dropouts[0].scaling
    assert scaling.expected_factor == 1.0 / (1.0 - rate)
    assert scaling.kept_values_checked > 0
    assert scaling.fraction_bitwise_equal_to_float32_product == 1.0
    assert abs(scaling.ratio_min - 1 / (1 - rate)) < 1e-6 * (1 / (1 - rate))
    assert result.dropouts[0].mask_mismatches_on_active_units == 0  # replayed mask is real


def test_masks_differ_across_steps_and_samples(data):
    _, _, features, labels = data
    _, layers = head_layers(features.shape[1:], rate=0.5)
    masks = forward.measure_fit_masks(layers, features, labels, 2, batch_size=16)
    assert masks.steps == 6 and masks.distinct_step_masks == 6
    assert masks.identical_consecutive_steps == 0
    assert masks.samples_sharing_a_mask_within_a_step == 0
    # independent masks flip a unit with probability 2 r (1 - r) = 0.5
    assert abs(masks.fraction_changed_between_steps - 0.5) < 0.05
    standard_error = masks.expected_std / np.sqrt(masks.samples)
    assert abs(masks.dropped_mean - masks.expected_mean) < 4 * standard_error
    assert sum(masks.histogram.samples) == 96


def test_placement_after_both_changes_the_touched_layers(data):
    backbone, images, features, labels = data
    _, seed_layers = head_layers(features.shape[1:], "after_dense2")
    _, both_layers = head_layers(features.shape[1:], "after_both")
    masks = forward.measure_fit_masks(seed_layers, features, labels, 2, batch_size=32)
    cached = np.asarray(backbone(images)).astype(np.float16).astype(np.float32)
    seed = forward.measure_forward(backbone, seed_layers, images, cached)
    both = forward.measure_forward(backbone, both_layers, images)
    assert seed.touched == ["dropout", "predictions"]
    assert both.touched == ["dropout_1", "hidden_2", "dropout", "predictions"]
    assert seed.backbone_layers_changed == both.backbone_layers_changed == 0
    assert seed.backbone_vs_cache.within_float16_rounding
    wrong = forward.measure_forward(backbone, seed_layers, images, cached[::-1].copy())
    assert not wrong.backbone_vs_cache.within_float16_rounding
    assert rules.judge_f1(seed, masks).verdict == SUPPORTED
    flipped = rules.judge_f1(both, masks)  # Dense(1024)'s output changes too: F1 as stated fails
    assert flipped.verdict == REFUTED and "hidden_2" in flipped.reason


def test_unfrozen_backbone_flips_the_frozen_verdict(data):
    _, images, features, labels = data
    head, _ = head_layers(features.shape[1:])
    facts = frozen.cache_training_facts(head, features.shape[1:])
    results = {}
    for trainable in (False, True):
        result = frozen.measure_frozen(
            toy_backbone(trainable), chain.copy_head(head), images, labels[:8], 2, 1e-3
        )
        results[trainable] = (result, rules.judge_f3(result, facts).verdict)
    kept, verdict = results[False]
    assert kept.backbone_variables_changed == 0 and kept.head_variables_changed > 0
    assert kept.batchnorm_moving_statistics == 2
    assert verdict == SUPPORTED
    moved, verdict = results[True]
    assert moved.backbone_variables_changed > 0
    assert moved.batchnorm_moving_statistics_changed == 2  # BN in training mode
    assert verdict == REFUTED


def test_noise_shape_patterns():
    shapes = direct.measure_noise_shapes(rate=0.5, batch=8, timesteps=10, features=64)
    patterns = shapes.patterns
    assert not patterns["3d_default"].whole_features_dropped
    assert patterns["3d_default"].fraction_features_constant_across_timesteps < 0.05
    for name in ("3d_noise_shape_batch_1_features", "3d_noise_shape_none_1_features"):
        assert patterns[name].fraction_features_constant_across_timesteps == 1.0
        assert patterns[name].samples_with_distinct_masks == 8
    assert patterns["3d_noise_shape_1_1_features"].same_mask_for_every_sample
    assert patterns["3d_noise_shape_1_1_features"].fraction_features_constant_across_timesteps == 1
    assert patterns["2d_noise_shape_1_features"].same_mask_for_every_sample
    assert patterns["2d_default"].samples_with_distinct_masks == 8
    assert rules.judge_c7(shapes).verdict == SUPPORTED
    # a per-element mask where whole features were claimed refutes C7
    swapped = {**patterns, "3d_noise_shape_batch_1_features": patterns["3d_default"]}
    assert rules.judge_c7(direct.NoiseShapes(0.5, swapped)).verdict == REFUTED


def test_relu_commutes_with_dropout_and_sigmoid_does_not():
    z = np.random.default_rng(1).normal(scale=3.0, size=(32, 64)).astype(np.float32)
    result = direct.measure_activation_order(z, rate=0.3)
    for order in (result.real, result.standardised):
        assert order["relu"].same_mask and order["sigmoid"].same_mask
        assert order["relu"].identical and order["relu"].max_abs_delta == 0.0
        assert not order["sigmoid"].identical
        assert order["sigmoid"].max_abs_delta_on_dropped_units == 0.5  # sigmoid(0) vs 0
        assert order["tanh"].max_abs_delta_on_dropped_units == 0.0  # tanh(0) = 0 ...
        assert order["tanh"].max_abs_delta_on_kept_units > 1e-3  # but tanh(sz) != s tanh(z)
    assert abs(result.input_std - 3.0) < 0.3  # the raw values' std
    assert rules.judge_c2(result).verdict == SUPPORTED
    result.standardised["relu"] = result.standardised["sigmoid"]
    assert rules.judge_c2(result).verdict == REFUTED


def test_inference_is_deterministic_and_mc_dropout_varies(data):
    _, _, features, labels = data
    _, layers = head_layers(features.shape[1:])
    result = inference.measure_inference(layers, features[:40], labels[:40], 2, passes=8)
    assert result.deterministic_bitwise and result.deterministic_max_abs_delta == 0.0
    assert result.dropout_identity == {"dropout": 0.0}
    assert result.mc_images_varying == 40
    assert len(result.per_image) == 40
    errors = [row.error for row in result.per_image]
    assert result.errors == sum(errors) and result.uncertainty.positives == sum(errors)
    assert result.uncertainty.auroc is None or 0.0 <= result.uncertainty.auroc <= 1.0
    assert rules.judge_f4_determinism(result).verdict == SUPPORTED


def test_head_without_dropout_gets_one_inserted_for_measurement(data):
    _, _, features, _ = data
    head, layers = head_layers(features.shape[1:], placement="none")
    names = [layer.name for layer in layers]
    assert "dropout" not in [layer.name for layer in chain.head_layers(head)]
    assert names == ["flatten", "hidden_1", "hidden_2", "dropout", "predictions"]


def test_c3_c5_c6_come_out_both_ways(data):
    """The definitional rules are not "clarified" whatever happens: each flips on a
    measurement that disagrees with its claim."""
    import dataclasses

    backbone, images, features, labels = data
    head, layers = head_layers(features.shape[1:])
    seed_forward = forward.measure_forward(backbone, layers, images)
    masks = forward.measure_fit_masks(layers, features, labels, 2, batch_size=16)
    grads = backward.measure_backward(layers, features[:16], labels[:16], 2, backbone)
    kept = frozen.measure_frozen(backbone, chain.copy_head(head), images, labels[:8], 2, 1e-3)
    assert rules.judge_c3(seed_forward, grads).verdict == CLARIFIED
    assert rules.judge_c5(seed_forward, masks, grads).verdict == CLARIFIED
    assert rules.judge_c6(seed_forward, grads, kept).verdict == CLARIFIED

    # An unfrozen backbone (BatchNorm in training mode changes its output, training moves
    # its variables): Dropout is then not all that differs (C3 refuted) and every layer is
    # affected, the backbone included (C6 supported).
    unfrozen = toy_backbone(trainable=True)
    moved_forward = forward.measure_forward(unfrozen, layers, images)
    moved = frozen.measure_frozen(unfrozen, chain.copy_head(head), images, labels[:8], 2, 1e-3)
    assert moved_forward.backbone_layers_changed > 0
    c3 = rules.judge_c3(moved_forward, grads)
    assert c3.verdict == REFUTED and "outside a Dropout" in c3.reason
    assert rules.judge_c6(moved_forward, grads, moved).verdict == SUPPORTED

    # 35% dropped instead of 20%: far beyond 4 standard errors, C5 refuted
    skewed = dataclasses.replace(masks, dropped_mean=0.35 * masks.units)
    c5 = rules.judge_c5(seed_forward, skewed, grads)
    assert c5.verdict == REFUTED and "dropped fraction 0.3500" in c5.reason
    # a trainable layer before Dropout whose gradient does not change: C6 refuted
    first = grads.earlier[0]
    still = [
        dataclasses.replace(row, relative_change=0.0) if row is first else row
        for row in grads.variables
    ]
    c6 = rules.judge_c6(seed_forward, dataclasses.replace(grads, variables=still), kept)
    assert c6.verdict == REFUTED and "not affected" in c6.reason
