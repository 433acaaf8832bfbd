"""Verdict rules for the mechanism: what Dropout does, checked bit for bit on the run's model.

Each rule reads only the measurements it names (numbers in) and returns a `Finding`: a
verdict, the rule that decided it, what would have flipped it, and the numbers it used.
Measurements that
disagree with a claim flip its verdict: an unfrozen backbone refutes F3 and makes C6
"supported" (every layer is then affected), dropout after both Dense layers refutes F1 (Dense
(1024)'s output then changes too).

"clarified" marks a definitional point: C3 ("affects only the layer before it": later layers
get other inputs and earlier layers other gradients, by the chain rule), C5 (the dropped
count is random, kept values are scaled), F2 (exactly zero per sample, not per batch step)
and C6 (a frozen layer has nothing to train, so "all layers" means all trainable layers).
These hold for any rate in (0, 1) and say so; the verdict itself still rests on the measured
mechanism and turns "refuted" when the measurement disagrees.
"""

from __future__ import annotations

import math

from inception_retrain.dropout.backbone_reach import BackboneReach
from inception_retrain.dropout.backward import Backward
from inception_retrain.dropout.claims import (
    CLARIFIED,
    INCONCLUSIVE,
    MECHANISM,
    REFUTED,
    SUPPORTED,
    Finding,
)
from inception_retrain.dropout.direct import ActivationOrder, NoiseShapes
from inception_retrain.dropout.forward import FitMasks, Forward
from inception_retrain.dropout.frozen import CacheFacts, Frozen
from inception_retrain.dropout.inference import Inference

RATE_Z = 4.0  # the mean dropped fraction may be this many standard errors from the rate
DEFINITIONAL = "This is definitional: it holds for any rate between 0 and 1."


def _finding(claim, question, verdict, rule, flip, numbers, reason="") -> Finding:
    return Finding(claim, MECHANISM, question, verdict, rule, flip, numbers, reason=reason)


def judge_f1(forward: Forward, masks: FitMasks) -> Finding:
    expected = forward.layers_from(forward.main.layer)
    mismatches = sum(d.mask_mismatches_on_active_units for d in forward.dropouts)
    exact = all(
        d.scaling.fraction_bitwise_equal_to_float32_product == 1.0 for d in forward.dropouts
    )
    failures = []
    if forward.backbone_layers_changed:
        failures.append(f"{forward.backbone_layers_changed} frozen backbone layers changed")
    if forward.touched != expected:
        extra = [name for name in forward.touched if name not in expected]
        failures.append(
            f"layers before {forward.main.layer} changed: {', '.join(extra)}"
            if extra
            else "a layer at or after Dropout did not change"
        )
    if not exact:
        failures.append("kept values are not exactly input x float32(1/(1-rate))")
    if mismatches:
        failures.append(f"{mismatches} zeros do not match the replayed mask")
    if not masks.fresh_per_step:
        failures.append("consecutive steps reused a mask")
    if not masks.fresh_per_sample:
        failures.append("samples shared a mask within a step")
    numbers = {
        "layers_compared": forward.n_layers,
        "backbone_layers": forward.n_backbone_layers,
        "backbone_layers_changed": forward.backbone_layers_changed,
        "layers_changed": len(forward.touched),
        "layers_expected_to_change": len(expected),
        "kept_values_bitwise_scaled": exact,
        "mask_mismatches": mismatches,
        "fit_steps": masks.steps,
        "distinct_step_masks": masks.distinct_step_masks,
        "samples_sharing_a_mask": masks.samples_sharing_a_mask_within_a_step,
    }
    return _finding(
        "F1",
        "With training on and off, which layers' outputs change, and how are masks drawn?",
        REFUTED if failures else SUPPORTED,
        rule=f"Supported when, over {forward.images} images and {forward.n_layers} layers, "
        f"exactly the layers from {forward.main.layer} on differ (max |delta| > 0) and every "
        "earlier one is bitwise identical, every zero matches the replayed mask, every kept "
        "value equals input x float32(1/(1-rate)), and no mask repeats across steps or samples.",
        flip="One differing value before Dropout, one kept value off by one bit, or one "
        "repeated mask refutes it.",
        numbers=numbers,
        reason="; ".join(failures),
    )


def judge_f2(backward: Backward) -> Finding:
    check, frozen = backward.main, backward.frozen
    failures = []
    if check.dropped_units_total == 0:
        failures.append("no unit was dropped in the checked samples")
    if check.max_abs_gradient_dropped_kernel_columns or check.max_abs_gradient_dropped_bias:
        failures.append("dropped units' gradient columns are not exactly zero")
    if check.kept_active_units_with_nonzero_gradient != check.kept_active_units_total:
        failures.append("some kept, active units got no gradient")
    if not all(row.relative_change > 0 for row in backward.earlier):
        failures.append("a layer before Dropout has the same gradient with and without it")
    if frozen and (
        frozen.frozen_layers_trainable_variables
        or frozen.full_model_trainable_variables
        != frozen.full_model_trainable_variables_in_head + frozen.backbone_trainable_variables
    ):
        failures.append(
            f"the backbone's frozen layers have {frozen.frozen_layers_trainable_variables} "
            "trainable variables that a training step differentiates"
        )
    if not backward.rate_1_zero_before_last_dropout:
        failures.append("with rate 1 some layer before Dropout still gets a gradient")
    numbers = {
        "samples_checked": check.samples,
        "dropped_units": check.dropped_units_total,
        "max_abs_gradient_dropped_columns": max(
            check.max_abs_gradient_dropped_kernel_columns, check.max_abs_gradient_dropped_bias
        ),
        "kept_active_units_with_gradient": check.kept_active_units_with_nonzero_gradient,
        "kept_active_units": check.kept_active_units_total,
        "dense_512_kernel_relative_change": backward.relative_change("hidden_1/kernel"),
        "batch": backward.batch,
        "batch_units_dropped_somewhere_with_gradient": (
            check.batch_units_dropped_somewhere_with_gradient
        ),
        "rate_1_max_norm_before_dropout": backward.rate_1_max_norm_before_last_dropout,
        "backbone_trainable_variables": frozen.backbone_trainable_variables if frozen else None,
        "unfrozen_backbone_layers": len(frozen.unfrozen_layers) if frozen else None,
    }
    per_batch = check.batch_units_dropped_somewhere_with_gradient > 0
    verdict = REFUTED if failures else (CLARIFIED if per_batch else SUPPORTED)
    return _finding(
        "F2",
        "With a fixed mask, which gradients are zero, which change, and what does rate 1 do?",
        verdict,
        rule=f"Over {check.samples} one-sample steps: every dropped unit's kernel column and bias "
        "gradient exactly 0 and every kept, active unit's non-zero; every variable before "
        "Dropout gets a different gradient with and without it; no frozen backbone layer has a "
        "trainable variable (a fine-tuned model's unfrozen blocks are trainable, as trained); "
        "rate 1 gives exactly zero gradient before Dropout. Clarified: in a step of "
        "several samples a unit's column is zero only if every sample dropped it (or it was "
        f"inactive); 'in that step' means per sample. {DEFINITIONAL}",
        flip="Any non-zero gradient for a dropped unit of a one-sample step, an unchanged earlier "
        "gradient, or a gradient through rate 1 refutes it.",
        numbers=numbers,
        reason="; ".join(failures),
    )


def judge_f3(frozen: Frozen, facts: CacheFacts) -> Finding:
    numbers = {
        "fit_steps": frozen.fit_steps,
        "backbone_variables": frozen.backbone_variables,
        "backbone_variables_changed": frozen.backbone_variables_changed,
        "backbone_frozen_variables": frozen.backbone_frozen_variables,
        "backbone_trainable_variables_changed": frozen.backbone_trainable_variables_changed,
        "batchnorm_moving_statistics": frozen.batchnorm_moving_statistics,
        "batchnorm_moving_statistics_changed": frozen.batchnorm_moving_statistics_changed,
        "head_variables_changed": frozen.head_variables_changed,
        "head_input_is_cached_features": facts.head_input_is_cached_features,
        "backbone_digest_matches_cache": facts.backbone_digest_matches_cache,
    }
    if frozen.backbone_variables_changed:
        verdict, reason = (
            REFUTED,
            (
                f"{frozen.backbone_variables_changed} of "
                f"{frozen.backbone_frozen_variables} frozen backbone variables changed"
            ),
        )
    elif not frozen.head_variables_changed:
        verdict, reason = INCONCLUSIVE, "the head did not move either: nothing was trained"
    elif facts.head_has_conv_or_batchnorm or not facts.head_input_is_cached_features:
        verdict, reason = REFUTED, "the trained head holds backbone layers or other inputs"
    else:
        verdict, reason = SUPPORTED, ""
    return _finding(
        "F3",
        "Does training change any frozen backbone variable?",
        verdict,
        rule=f"Byte-for-byte comparison of all {frozen.backbone_frozen_variables} frozen "
        f"backbone variables (BatchNorm moving statistics included) around {frozen.fit_steps} "
        "real fit steps of the full model, which must move the head; and the pipeline's head "
        "must hold no backbone layer and take the cached features as input. A fine-tuned "
        f"model trains its unfrozen blocks in those steps ({frozen.optimizer}): their "
        f"{frozen.backbone_trainable_variables} trainable variables are counted apart, only "
        "the frozen ones must stay unchanged.",
        flip="One changed byte in a backbone variable refutes it (an unfrozen backbone does); "
        "a head that did not move makes it inconclusive.",
        numbers=numbers,
        reason=reason,
    )


def judge_f4_determinism(inference: Inference) -> Finding:
    identity = inference.identity_max_abs_delta
    failures = []
    if not inference.deterministic_bitwise:
        failures.append("two training=False passes differ")
    if identity != 0.0:
        failures.append(f"Dropout changed its input at inference (max |delta| {identity:g})")
    if not inference.mc_images_varying:
        failures.append("MC-dropout passes did not vary")
    return _finding(
        "F4",
        "Is Dropout the identity at inference, and does MC dropout vary?",
        REFUTED if failures else SUPPORTED,
        rule=f"Two training=False passes over {inference.images} images bitwise identical, "
        "every Dropout's output equal to its input, and MC passes (dropout on) varying.",
        flip="One differing bit between inference passes refutes it.",
        numbers={
            "images": inference.images,
            "passes": inference.passes,
            "deterministic_max_abs_delta": inference.deterministic_max_abs_delta,
            "dropout_identity_max_abs_delta": identity,
            "mc_images_varying": inference.mc_images_varying,
        },
        reason="; ".join(failures),
    )


def judge_c2(order: ActivationOrder) -> Finding:
    unit, real = order.standardised, order.real
    same_masks = all(check.same_mask for check in unit.values())
    relu = unit["relu"].identical and real["relu"].identical
    differs = not unit["sigmoid"].identical and not unit["tanh"].identical
    numbers = {
        "values": order.values,
        "relu_max_abs_delta": unit["relu"].max_abs_delta,
        "sigmoid_max_abs_delta": unit["sigmoid"].max_abs_delta,
        "sigmoid_on_dropped_units": unit["sigmoid"].max_abs_delta_on_dropped_units,
        "tanh_max_abs_delta": unit["tanh"].max_abs_delta,
        "tanh_real_max_abs_delta": real["tanh"].max_abs_delta,
        "real_input_std": order.input_std,
    }
    return _finding(
        "C2",
        "Does the order of dropout and activation matter, and only for non-ReLU?",
        SUPPORTED if same_masks and relu and differs else REFUTED,
        rule=f"With one shared mask on {order.values} real Dense(1024) pre-activations (as they "
        "are and standardised): supported when relu(dropout(z)) and dropout(relu(z)) are "
        "bitwise identical while sigmoid and tanh differ.",
        flip="One differing ReLU value, or identical sigmoid or tanh outputs, refutes it.",
        numbers=numbers,
    )


def judge_c3(forward: Forward, backward: Backward) -> Finding:
    mismatches = sum(d.mask_mismatches_on_active_units for d in forward.dropouts)
    rows = {row.layer: row for row in forward.layers}
    names = [row.layer for row in forward.layers]
    later = [n for n in names[names.index(forward.main.layer) + 1 :] if rows[n].changed]
    earlier = [r.variable for r in backward.earlier if r.relative_change > 0]
    holds = (
        not mismatches
        and forward.unchanged_before_first_dropout
        and not forward.backbone_layers_changed
    )
    return _finding(
        "C3",
        "Does a Dropout switch off outputs of the layer right before it, and only those?",
        CLARIFIED if holds else REFUTED,
        rule="The mechanism holds when every zero a Dropout adds matches its mask on its own "
        "input and nothing before the first Dropout changes. Clarified: 'affects only' is "
        "imprecise, since later layers then get other inputs and earlier trainable layers "
        f"other gradients (chain rule). {DEFINITIONAL}",
        flip="Any changed value before the first Dropout, or a zero the mask does not explain, "
        "refutes it.",
        numbers={
            "masked_outputs_of": ", ".join(c.dense for c in backward.dropped_columns),
            "mask_mismatches": mismatches,
            "later_layers_changed": len(later),
            "earlier_variables_with_other_gradients": len(earlier),
        },
        reason="" if holds else "values outside a Dropout's input changed",
    )


def judge_c5(forward: Forward, masks: FitMasks, backward: Backward) -> Finding:
    main = forward.main
    rate, units = masks.rate, masks.units
    mean_fraction = masks.dropped_mean / units
    standard_error = math.sqrt(rate * (1 - rate) / (units * masks.samples))
    preceding = backward.main.dense
    consistent = abs(mean_fraction - rate) <= RATE_Z * standard_error + 1e-12
    holds = consistent and preceding == "hidden_2" and not main.mask_mismatches_on_active_units
    return _finding(
        "C5",
        f"Are {rate:.0%} of Dense(1024)'s outputs dropped before the output layer?",
        CLARIFIED if holds else REFUTED,
        rule=f"The mean dropped fraction over {masks.samples} samples of a real fit epoch must "
        f"lie within {RATE_Z:g} standard errors of the rate, on the outputs of the Dense layer "
        "before it (hidden_2, Dense(1024) in the seed's head), with zeros exactly where the "
        "mask says. Clarified: the count is random per sample and step (Binomial(units, "
        "rate)), not exactly the rate, and kept outputs are "
        f"multiplied by 1/(1-rate). {DEFINITIONAL}",
        flip=f"A mean fraction more than {RATE_Z:g} standard errors ({standard_error:.2g} each) "
        "from the rate, or masks on another layer, refutes it.",
        numbers={
            "rate": rate,
            "units": units,
            "samples": masks.samples,
            "dropped_fraction_mean": mean_fraction,
            "standard_error": standard_error,
            "dropped_min": masks.dropped_min,
            "dropped_max": masks.dropped_max,
            "dropped_std": masks.dropped_std,
            "binomial_std": masks.expected_std,
            "kept_scale": main.scaling.expected_factor,
        },
        reason="" if holds else f"dropped fraction {mean_fraction:.4f} vs rate {rate}",
    )


def judge_c6(forward: Forward, backward: Backward, frozen: Frozen) -> Finding:
    earlier = backward.earlier
    trainable_affected = (
        forward.changed_from_first_dropout_on
        and bool(earlier)
        and all(r.relative_change > 0 for r in earlier)
        and backward.rate_1_zero_before_last_dropout
    )
    facts = backward.frozen
    frozen_untouched = (
        forward.backbone_layers_changed == 0
        and not (facts and facts.backbone_trainable_variables)
        and frozen.backbone_variables_changed == 0
    )
    verdict = CLARIFIED if frozen_untouched else SUPPORTED
    if not trainable_affected:
        verdict = REFUTED
    numbers = {f"{r.variable}_relative_change": r.relative_change for r in earlier}
    numbers.update(
        {
            "later_layers_changed": forward.changed_from_first_dropout_on,
            "backbone_output_gradient_relative_change": backward.feature_gradient.relative_change,
            "rate_1_max_norm_before_dropout": backward.rate_1_max_norm_before_last_dropout,
            "backbone_variables_changed_by_training": frozen.backbone_variables_changed,
        }
    )
    return _finding(
        "C6",
        "Are all layers affected: later ones through their inputs, earlier ones through gradients?",
        verdict,
        rule="Every layer after Dropout must change in the forward pass, every trainable "
        "variable before it must get a different gradient, and rate 1 must give exactly zero "
        "gradient before it. Supported if the backbone is affected too; clarified if it is "
        "frozen: its output gradient changes, but it has no trainable variable and stays "
        "bitwise unchanged, so 'all layers' means all trainable layers.",
        flip="An unaffected trainable layer, or a gradient through rate 1, refutes it; an "
        "unfrozen backbone makes it supported.",
        numbers=numbers,
        reason="" if trainable_affected else "a trainable layer was not affected",
    )


def judge_c6_backbone(reach: BackboneReach, frozen: Frozen) -> Finding:
    """C6 inside the backbone: the head's Dropout against the top block's gradients
    (`frozen`: F3 of the run's model, unless the measured model brought its own steps)."""
    frozen = reach.steps or frozen
    blocks = ", ".join(reach.blocks)
    numbers = {
        "model": reach.model,
        "backbone_trainable_layers": reach.trainable,
        "backbone_layers_with_changed_gradient": reach.changed,
        "min_relative_change": reach.min_relative_change,
        "median_relative_change": reach.median_relative_change,
        "max_relative_change": reach.max_relative_change,
        "frozen_block_layers": len(reach.frozen_layers),
        "images": reach.images,
        "frozen_backbone_variables": frozen.backbone_frozen_variables,
        "frozen_backbone_variables_changed": frozen.backbone_variables_changed,
        "fit_steps": frozen.fit_steps,
    }
    numbers.update({f"{row.layer}_relative_change": row.relative_change for row in reach.layers})
    reason = ""
    if not reach.trainable:
        verdict = CLARIFIED
        reason = (
            f"nothing in the backbone trains here ({blocks} frozen): no backbone layer has a "
            "gradient for Dropout to change; fine-tune a block (--fine-tune) to measure it"
        )
    elif reach.changed == reach.trainable and not frozen.backbone_variables_changed:
        verdict = SUPPORTED
    else:
        verdict = REFUTED
        reason = (
            f"{reach.trainable - reach.changed} of {reach.trainable} trainable backbone layers "
            f"kept the same gradient, {frozen.backbone_variables_changed} frozen variables "
            "changed"
        )
    return _finding(
        "C6",
        f"With the top block unfrozen ({blocks}), does Dropout reach the backbone's gradients?",
        verdict,
        rule=f"On {reach.images} real training images and the model's weights, the gradient of "
        f"every trainable layer of {blocks} with the head's Dropout on (one mask) against off: "
        "supported if every one changes (relative change > 0) while every frozen backbone "
        "variable stays bitwise unchanged through real fit steps (F3); clarified if the block "
        "is frozen (no gradient reaches a backbone weight).",
        flip="A trainable backbone layer whose gradient Dropout does not change, or a frozen "
        "variable that moves, refutes it; freezing the block makes it 'no change in the "
        "backbone'.",
        numbers=numbers,
        reason=reason,
    )


C7_EXPECTED = {
    "3d_default": lambda p: not p.whole_features_dropped and p.samples_with_distinct_masks > 1,
    "3d_noise_shape_batch_1_features": lambda p: (
        p.whole_features_dropped and p.samples_with_distinct_masks > 1
    ),
    "3d_noise_shape_none_1_features": lambda p: (
        p.whole_features_dropped and p.samples_with_distinct_masks > 1
    ),
    "3d_noise_shape_1_1_features": lambda p: (
        p.whole_features_dropped and p.same_mask_for_every_sample
    ),
    "2d_default": lambda p: p.samples_with_distinct_masks > 1,
    "2d_noise_shape_1_features": lambda p: p.same_mask_for_every_sample,
}


def judge_c7(shapes: NoiseShapes) -> Finding:
    patterns = shapes.patterns
    holds = {name: bool(check(patterns[name])) for name, check in C7_EXPECTED.items()}
    failed = [name for name, ok in holds.items() if not ok]
    numbers = {f"{name}_as_claimed": ok for name, ok in holds.items()}
    numbers["3d_default_features_constant_across_timesteps"] = patterns[
        "3d_default"
    ].fraction_features_constant_across_timesteps
    return _finding(
        "C7",
        "How do masks vary with the input's rank and noise_shape?",
        REFUTED if failed else SUPPORTED,
        rule="Masks of Dropout on inputs of ones: the 3D default varies per element; "
        "noise_shape (batch, 1, features) and (None, 1, features) keep whole features per "
        "sample; (1, 1, features) and 2D (1, features) share one mask across samples.",
        flip="Any pattern not as claimed refutes it.",
        numbers=numbers,
        reason=f"not as claimed: {', '.join(failed)}" if failed else "",
    )
