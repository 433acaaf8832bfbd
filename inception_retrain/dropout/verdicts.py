"""The claims and the rules that turn measured numbers into verdicts.

Claims C1..C7 are the answers' claims from `shared/seed/question.md` (in English); F1..F5 are
the report's own measurement groups, stated as what one expects. Each `judge_*` function
reads only measurements and returns `{"verdict", "explanation", "numbers"}`: the verdict is
one of `VERDICTS`, decided by an explicit rule on the numbers, so a model where a claim fails
gets a different verdict (an unfrozen backbone refutes F3; dropout after both Dense layers
changes F1's list of touched layers).

    entries = judge(measurements)      # [{"id": "C1", "claim": ..., "verdict": ...}, ...]
"""

from __future__ import annotations

import math

from inception_retrain.dropout import sweep as sweep_lib

SUPPORTED = "supported"
REFUTED = "refuted"
CORRECTED = "supported with a correction"
VERDICTS = (SUPPORTED, REFUTED, CORRECTED)
# Kept values must equal input * float32(1/(1-rate)) bit for bit.
SCALING_EXACT = 1.0
# The mean dropped fraction may be this many standard errors away from the rate.
RATE_Z = 4.0

CLAIMS = {
    "C1": "Dropout is usually used only in the last layers of a network, not in every layer.",
    "C2": "There is debate whether dropout goes before or after the activation; rule of thumb: "
    "after the activation for every activation function except ReLU.",
    "C3": "You can add dropout after each hidden layer; it affects only the layer right before "
    "it (here Dense(1024)).",
    "C4": "The original dropout paper (Hinton et al., 2012) used p=0.5 on every fully connected "
    "layer before the output and none on convolutional layers; this became the most common "
    "setup.",
    "C5": "The dropout layer affects the output of the previous layer: 20% of the outputs of "
    "Dense(1024) are randomly dropped before they reach the final Dense layer.",
    "C6": "Only the neurons of the preceding layer are switched off, but all layers are affected "
    "through backpropagation: later layers get changed inputs, earlier layers changed "
    "gradients; with Dropout(rate=1) zero gradient flows.",
    "C7": "Whole neurons are dropped only when the Dense input is 2D (batch_size, features); "
    "Dropout applies an independent uniform random mask to every element. To drop whole "
    "neurons of a 3D input use noise_shape=(batch_size, 1, features); to drop the same "
    "neurons for every sample use noise_shape=(1, 1, features) (or (1, features) for 2D).",
    "F1": "Forward: with training=True, Dropout zeroes only units of its own input (the outputs "
    "of Dense(1024)); every layer before it (all frozen backbone layers, Dense(512), "
    "Dense(1024)) gives exactly the output it gives with training=False, while Dropout and "
    "every layer after it differ. A new mask is drawn for every step and every sample (not "
    "once per epoch), and kept values are scaled by exactly 1/(1-rate).",
    "F2": "Backward: with a fixed mask, the gradient of Dense(1024)'s kernel columns and bias "
    "for the dropped units is exactly zero in that step; Dense(512)'s gradient changes; "
    "frozen layers get no gradient; with rate 1 every layer before Dropout gets zero gradient.",
    "F3": "Frozen means frozen: training leaves every backbone weight and BatchNorm moving "
    "statistic bitwise identical, and the cache-based training never touches the backbone.",
    "F4": "At inference (training=False) Dropout is the identity and predictions are "
    "deterministic; with dropout kept on (MC dropout) predictions vary, and misclassified "
    "images carry higher uncertainty.",
    "F5": "Dropout reduces overfitting of this head on this data: a smaller train-validation "
    "accuracy gap than without dropout, without lower validation accuracy.",
}
ORDER = ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "F1", "F2", "F3", "F4", "F5")


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _result(verdict: str, explanation: str, numbers: dict) -> dict:
    assert verdict in VERDICTS
    return {"verdict": verdict, "explanation": explanation, "numbers": numbers}


def _main_dropout(forward: dict) -> dict:
    """The Dropout the question is about: the last one, right before the output layer."""
    return forward["dropouts"][-1]


def _layers_from(forward: dict, name: str) -> list[str]:
    names = [row["layer"] for row in forward["layers"]]
    return names[names.index(name) :]


def _scaling_exact(forward: dict) -> bool:
    return all(
        d["scaling"]["fraction_bitwise_equal_to_float32_product"] >= SCALING_EXACT
        for d in forward["dropouts"]
    )


def _masks_fresh(fit_masks: dict) -> tuple[bool, bool]:
    per_step = fit_masks["consecutive_step_pairs"] > 0 and (
        fit_masks["identical_consecutive_steps"] == 0
    )
    per_sample = fit_masks["samples_sharing_a_mask_within_a_step"] == 0
    return per_step, per_sample


# --- F: the report's own measurement groups -------------------------------------------


def judge_f1(forward: dict, fit_masks: dict) -> dict:
    main = _main_dropout(forward)
    expected = _layers_from(forward, main["layer"])
    per_step, per_sample = _masks_fresh(fit_masks)
    mismatches = sum(d["mask_mismatches_on_active_units"] for d in forward["dropouts"])
    numbers = {
        "layers_compared": forward["n_layers"],
        "backbone_layers_compared": forward["n_backbone_layers"],
        "backbone_layers_changed": forward["backbone_layers_changed"],
        "touched": forward["touched"],
        "touched_if_claim_holds": expected,
        "unchanged_before_first_dropout": forward["unchanged_before_first_dropout"],
        "changed_from_first_dropout_on": forward["changed_from_first_dropout_on"],
        "scale_expected": main["scaling"]["expected_factor"],
        "scale_ratio_min": main["scaling"]["ratio_min"],
        "scale_ratio_max": main["scaling"]["ratio_max"],
        "kept_values_bitwise_scaled": main["scaling"]["fraction_bitwise_equal_to_float32_product"],
        "mask_mismatches_on_active_units": mismatches,
        "fit_steps": fit_masks["steps"],
        "identical_consecutive_step_masks": fit_masks["identical_consecutive_steps"],
        "fraction_changed_between_steps": fit_masks["fraction_changed_between_steps"],
        "samples_sharing_a_mask_within_a_step": fit_masks["samples_sharing_a_mask_within_a_step"],
    }
    failures = []
    if forward["backbone_layers_changed"]:
        failures.append(f"{forward['backbone_layers_changed']} frozen backbone layers changed")
    if not forward["changed_from_first_dropout_on"]:
        failures.append("some layer at or after Dropout did not change")
    if not _scaling_exact(forward):
        failures.append("kept values are not exactly input/(1-rate)")
    if mismatches:
        failures.append(f"{mismatches} zeros do not match the replayed mask")
    if not per_step:
        failures.append("consecutive steps reused a mask")
    if not per_sample:
        failures.append("samples shared a mask within a step")
    if failures:
        return _result(REFUTED, "; ".join(failures) + ".", numbers)
    facts = (
        f"{forward['n_backbone_layers']} frozen backbone layers unchanged (max |delta| = 0); "
        f"touched: {', '.join(forward['touched'])}. {fit_masks['steps']} fit steps drew "
        f"{fit_masks['distinct_step_masks']} different masks "
        f"({_fmt(fit_masks['fraction_changed_between_steps'], 3)} of the units flip between "
        f"consecutive steps, expected "
        f"{_fmt(fit_masks['expected_fraction_changed_between_steps'], 3)}"
        f"), no two samples of a step shared a mask, and every kept value equals input x "
        f"{_fmt(main['scaling']['expected_factor'], 6)} bit for bit."
    )
    if forward["touched"] == expected:
        return _result(SUPPORTED, facts, numbers)
    extra = [name for name in forward["touched"] if name not in expected]
    return _result(
        CORRECTED,
        f"In this model {', '.join(extra)} also change(s), because {forward['first_dropout']} "
        f"comes before them: each Dropout leaves the layers before it untouched. " + facts,
        numbers,
    )


def judge_f2(backward: dict) -> dict:
    check = backward["dropped_columns"][-1]
    rows = {row["variable"]: row for row in backward["variables"]}
    earlier = [row for row in backward["variables"] if row["before_last_dropout"]]
    frozen = backward.get("frozen", {})
    numbers = {
        "dense": check["dense"],
        "samples_checked": check["samples"],
        "dropped_units_total": check["dropped_units_total"],
        "max_abs_gradient_dropped_kernel_columns": check["max_abs_gradient_dropped_kernel_columns"],
        "max_abs_gradient_dropped_bias": check["max_abs_gradient_dropped_bias"],
        "kept_active_units_with_nonzero_gradient": check["kept_active_units_with_nonzero_gradient"],
        "kept_active_units_total": check["kept_active_units_total"],
        "hidden_1_kernel_relative_change": rows.get("hidden_1/kernel", {}).get("relative_change"),
        "batch": backward["batch"],
        "batch_zero_gradient_columns": check["batch_zero_gradient_columns"],
        "batch_mean_dropped_per_sample": check["batch_mean_dropped_per_sample"],
        "batch_zero_columns_match_silent_units": check["batch_zero_columns_match_silent_units"],
        "batch_units_dropped_somewhere_with_gradient": check[
            "batch_units_dropped_somewhere_with_gradient"
        ],
        "rate_1_max_norm_before_last_dropout": backward["rate_1_max_norm_before_last_dropout"],
        "backbone_trainable_variables": frozen.get("backbone_trainable_variables"),
        "full_model_trainable_variables": frozen.get("full_model_trainable_variables"),
        "full_model_trainable_variables_in_head": frozen.get(
            "full_model_trainable_variables_in_head"
        ),
    }
    failures = []
    if check["dropped_units_total"] == 0:
        failures.append("no unit was dropped in the checked samples")
    if check["max_abs_gradient_dropped_kernel_columns"] or check["max_abs_gradient_dropped_bias"]:
        failures.append("dropped units' gradient columns are not exactly zero")
    if check["kept_active_units_with_nonzero_gradient"] != check["kept_active_units_total"]:
        failures.append("some kept, active units got no gradient")
    if not all(row["relative_change"] > 0 for row in earlier):
        failures.append("a layer before Dropout has the same gradient with and without it")
    if frozen and (
        frozen["backbone_trainable_variables"]
        or frozen["full_model_trainable_variables_in_head"]
        != frozen["full_model_trainable_variables"]
    ):
        failures.append(
            f"the backbone has {frozen['backbone_trainable_variables']} trainable variables "
            "that a training step differentiates"
        )
    if not backward["rate_1_zero_before_last_dropout"]:
        failures.append("with rate 1 some layer before Dropout still gets a gradient")
    if failures:
        return _result(REFUTED, "; ".join(failures) + ".", numbers)
    facts = (
        f"Over {check['samples']} one-sample steps, the {check['dropped_units_total']} dropped "
        f"units' columns of {check['dense']}'s kernel and bias had gradient exactly 0 (every "
        f"kept, active unit had a non-zero one); "
        f"{_fmt(numbers['hidden_1_kernel_relative_change'], 3)} "
        f"relative change of hidden_1's kernel gradient; the backbone has "
        f"{frozen.get('backbone_trainable_variables', 'n/a')} trainable variables; with rate 1 "
        f"every gradient before Dropout is exactly 0."
    )
    if check["batch_units_dropped_somewhere_with_gradient"]:
        return _result(
            CORRECTED,
            f"Zero per sample, not per batch step: in the {backward['batch']}-sample step, "
            f"{check['batch_units_dropped_somewhere_with_gradient']} units dropped for some "
            f"samples still had a non-zero column (from the samples that kept them); only the "
            f"{check['batch_zero_gradient_columns']} units dropped or inactive for every sample "
            f"had an all-zero column. " + facts,
            numbers,
        )
    return _result(SUPPORTED, facts, numbers)


def judge_f3(frozen: dict, cache_facts: dict) -> dict:
    numbers = {
        "fit_steps": frozen["fit_steps"],
        "backbone_variables": frozen["backbone_variables"],
        "backbone_variables_changed": frozen["backbone_variables_changed"],
        "batchnorm_moving_statistics": frozen["batchnorm_moving_statistics"],
        "batchnorm_moving_statistics_changed": frozen["batchnorm_moving_statistics_changed"],
        "head_variables_changed": frozen["head_variables_changed"],
        "head_has_conv_or_batchnorm": cache_facts["head_has_conv_or_batchnorm"],
        "head_input_is_cached_features": cache_facts["head_input_is_cached_features"],
        "backbone_digest_matches_cache": cache_facts.get("backbone_digest_matches_cache"),
    }
    if frozen["backbone_variables_changed"]:
        return _result(
            REFUTED,
            f"{frozen['backbone_variables_changed']} of {frozen['backbone_variables']} backbone "
            f"variables changed in {frozen['fit_steps']} fit steps (BatchNorm moving statistics: "
            f"{frozen['batchnorm_moving_statistics_changed']} changed), e.g. "
            f"{', '.join(frozen['changed_examples'][:3])}.",
            numbers,
        )
    if not frozen["head_variables_changed"]:
        return _result(
            REFUTED,
            "Inconclusive: the fit steps did not move the head, so nothing trained.",
            numbers,
        )
    if (
        cache_facts["head_has_conv_or_batchnorm"]
        or not cache_facts["head_input_is_cached_features"]
    ):
        return _result(REFUTED, "The trained head is not a head on cached features.", numbers)
    if cache_facts.get("backbone_digest_matches_cache") is False:
        return _result(
            CORRECTED,
            "Frozen during training, but the backbone loaded now is not the one that computed "
            "the cache.",
            numbers,
        )
    return _result(
        SUPPORTED,
        f"After {frozen['fit_steps']} fit steps of the seed's full model, all "
        f"{frozen['backbone_variables']} backbone variables, including "
        f"{frozen['batchnorm_moving_statistics']} BatchNorm moving statistics, are bitwise "
        f"identical while {frozen['head_variables_changed']} head variables moved. The pipeline's "
        f"head has no backbone layer ({', '.join(cache_facts['head_layer_types'])}) and takes the "
        f"cached features {tuple(cache_facts['cached_feature_shape'])} as input.",
        numbers,
    )


def judge_f4(inference: dict) -> dict:
    identity = max((d["max_abs_delta"] for d in inference["dropout_identity"]), default=0.0)
    numbers = {
        key: inference[key]
        for key in (
            "images",
            "passes",
            "deterministic_bitwise",
            "deterministic_max_abs_delta",
            "mc_images_varying",
            "errors",
            "mean_std_errors",
            "mean_std_correct",
            "auroc_std",
            "auroc_entropy",
            "mc_accuracy",
            "deterministic_accuracy",
        )
    }
    numbers["dropout_identity_max_abs_delta"] = identity
    if not inference["deterministic_bitwise"] or identity != 0.0:
        return _result(
            REFUTED, "training=False is not deterministic or Dropout is not the identity.", numbers
        )
    if not inference["mc_images_varying"]:
        return _result(REFUTED, "MC dropout passes did not vary.", numbers)
    facts = (
        f"Two training=False passes were bitwise identical and Dropout's output equalled its "
        f"input; {inference['passes']} MC passes varied for {inference['mc_images_varying']} of "
        f"{inference['images']} images."
    )
    auroc = inference["auroc_std"]
    if auroc is None:
        return _result(
            CORRECTED,
            facts + f" The uncertainty cannot be tested against errors here: "
            f"{inference['errors']} of {inference['images']} images are misclassified.",
            numbers,
        )
    if auroc > 0.5:
        return _result(
            SUPPORTED,
            facts + f" Errors had mean std {_fmt(inference['mean_std_errors'], 3)} against "
            f"{_fmt(inference['mean_std_correct'], 3)} for correct images; AUROC of the std for "
            f"predicting an error = {_fmt(auroc, 3)}.",
            numbers,
        )
    return _result(
        CORRECTED,
        facts + f" But misclassified images did not carry higher uncertainty here (AUROC "
        f"{_fmt(auroc, 3)} <= 0.5).",
        numbers,
    )


def _n_selection(summary: dict) -> int:
    return int(summary.get("split_sizes", {}).get(summary["selection_split"], 0) or 0)


def _caveat(summary: dict) -> str:
    """A warning when no config beat the majority class: ties then say nothing."""
    if summary.get("beats_majority", True):
        return ""
    return (
        f"Uninformative on this data: no configuration beat always predicting the majority "
        f"class ({_fmt(summary.get('majority_accuracy'), 3)} {summary['selection_split']} "
        f"accuracy), so the ties below carry no evidence either way. "
    )


def _acc(row: dict, summary: dict) -> dict:
    return row[f"{summary['selection_split']}_accuracy"]


def _compare(a: dict, b: dict, n: int) -> tuple[float, float, str]:
    """(a - b, tolerance, 'higher'|'tie'|'lower') for two {mean, std, n} stats."""
    difference = a["mean"] - b["mean"]
    tolerance = sweep_lib.tie_tolerance(a, b, n)
    outcome = "tie" if abs(difference) <= tolerance else ("higher" if difference > 0 else "lower")
    return difference, tolerance, outcome


def _tested_config(summary: dict, context: dict) -> dict:
    """F5 tests the run's own dropout config if the grid has it, else the seed's, else any."""
    for rate, placement in (
        (context.get("rate"), context.get("placement")),
        (0.2, "after_dense2"),
    ):
        if rate is not None and sweep_lib.effective(rate, placement) != sweep_lib.NO_DROPOUT:
            row = sweep_lib.find(summary, rate, placement)
            if row is not None:
                return row
    return next(r for r in summary["configs"] if r["placement"] != "none")


def judge_f5(summary: dict, context: dict) -> dict:
    n = _n_selection(summary)
    reference = sweep_lib.find(summary, *sweep_lib.NO_DROPOUT)
    tested = _tested_config(summary, context)
    gap_diff, gap_tol, gap_outcome = _compare(tested["gap_accuracy"], reference["gap_accuracy"], n)
    acc_diff, acc_tol, acc_outcome = _compare(_acc(tested, summary), _acc(reference, summary), n)
    numbers = {
        "split": summary["selection_split"],
        "tested": {"rate": tested["rate"], "placement": tested["placement"]},
        "gap_with_dropout": tested["gap_accuracy"],
        "gap_without_dropout": reference["gap_accuracy"],
        "gap_difference": gap_diff,
        "gap_tolerance": gap_tol,
        "accuracy_with_dropout": _acc(tested, summary),
        "accuracy_without_dropout": _acc(reference, summary),
        "accuracy_difference": acc_diff,
        "accuracy_tolerance": acc_tol,
        "per_config": [
            {
                "rate": row["rate"],
                "placement": row["placement"],
                "gap_accuracy": row["gap_accuracy"]["mean"],
                "accuracy": _acc(row, summary)["mean"],
            }
            for row in summary["configs"]
        ],
    }
    facts = (
        f"Rate {tested['rate']} ({tested['placement']}) vs no dropout, "
        f"{plural(tested['seeds'], 'seed')}, "
        f"{plural(summary['epochs'], 'epoch')}: train-{summary['selection_split']} accuracy gap "
        f"{_fmt(tested['gap_accuracy']['mean'], 3)} vs {_fmt(reference['gap_accuracy']['mean'], 3)}"
        f" (tie within {_fmt(gap_tol, 3)}); {summary['selection_split']} accuracy "
        f"{_fmt(_acc(tested, summary)['mean'], 3)} vs {_fmt(_acc(reference, summary)['mean'], 3)} "
        f"(tie within {_fmt(acc_tol, 3)})."
    )
    numbers["majority_accuracy"] = summary.get("majority_accuracy")
    facts = _caveat(summary) + facts
    if gap_outcome == "lower" and acc_outcome != "lower":
        return _result(SUPPORTED, facts, numbers)
    if gap_outcome == "lower":
        return _result(CORRECTED, "Less overfitting, but at a cost in accuracy. " + facts, numbers)
    return _result(REFUTED, "Dropout did not shrink the gap on this data. " + facts, numbers)


# --- C: the answers' claims ------------------------------------------------------------


def judge_c1(summary: dict) -> dict:
    n = _n_selection(summary)
    comparisons = []
    for row in summary["configs"]:
        if row["placement"] != "after_dense2":
            continue
        both = sweep_lib.find(summary, row["rate"], "after_both")
        if both is None:
            continue
        diff, tol, outcome = _compare(_acc(row, summary), _acc(both, summary), n)
        comparisons.append(
            {
                "rate": row["rate"],
                "end_only_accuracy": _acc(row, summary)["mean"],
                "every_layer_accuracy": _acc(both, summary)["mean"],
                "difference": diff,
                "tolerance": tol,
                "end_only_is": outcome,
            }
        )
    numbers = {
        "split": summary["selection_split"],
        "comparisons": comparisons,
        "majority_accuracy": summary.get("majority_accuracy"),
    }
    outcomes = {c["end_only_is"] for c in comparisons}
    text = "; ".join(
        f"rate {c['rate']}: end only {_fmt(c['end_only_accuracy'], 3)} vs every hidden layer "
        f"{_fmt(c['every_layer_accuracy'], 3)} ({c['end_only_is']})"
        for c in comparisons
    )
    note = (
        f" {_caveat(summary)}How often practitioners do this is not measurable here; on this data "
        f"({summary['selection_split']} accuracy, {plural(len(summary['seeds']), 'seed')}): {text}."
    )
    if outcomes <= {"higher", "tie"}:
        return _result(
            SUPPORTED,
            "Dropout only after the last hidden layer did at least as well as after "
            "every hidden layer." + note,
            numbers,
        )
    if outcomes == {"lower"}:
        return _result(REFUTED, "Dropout after every hidden layer did better." + note, numbers)
    return _result(CORRECTED, "Which is better depends on the rate." + note, numbers)


def judge_c2(order: dict) -> dict:
    unit, real = order["standardised"], order["real"]
    numbers = {
        f"{name}_{key}": unit[name][key]
        for name in ("relu", "sigmoid", "tanh")
        for key in ("max_abs_delta", "fraction_differing", "same_mask")
    }
    numbers["sigmoid_max_abs_delta_on_dropped_units"] = unit["sigmoid"][
        "max_abs_delta_on_dropped_units"
    ]
    numbers["real_input_std"] = real["input_std"]
    numbers["real_relu_max_abs_delta"] = real["relu"]["max_abs_delta"]
    numbers["real_tanh_max_abs_delta"] = real["tanh"]["max_abs_delta"]
    numbers["values"] = order["values"]
    relu, sigmoid, tanh = unit["relu"], unit["sigmoid"], unit["tanh"]
    same_masks = all(unit[name]["same_mask"] for name in ("relu", "sigmoid", "tanh"))
    relu_commutes = relu["identical"] and real["relu"]["identical"]
    if same_masks and relu_commutes and not sigmoid["identical"] and not tanh["identical"]:
        return _result(
            SUPPORTED,
            f"With the same mask on {order['values']} real pre-activations of hidden_2 (the "
            f"claim's Dense(1024)), as they are and standardised: ReLU before and after are "
            f"bitwise identical (max |delta| = {_fmt(relu['max_abs_delta'])}), so for ReLU the "
            f"order does not matter. Sigmoid differs (max |delta| "
            f"{_fmt(sigmoid['max_abs_delta'], 3)}: a unit dropped before the activation outputs "
            f"sigmoid(0) = 0.5, it is not switched off) and tanh differs on kept units "
            f"(max |delta| {_fmt(tanh['max_abs_delta'], 3)} standardised, "
            f"{_fmt(real['tanh']['max_abs_delta'], 3)} on the raw values of std "
            f"{_fmt(real['input_std'], 3)}, where tanh is nearly linear: tanh(z/(1-p)) != "
            f"tanh(z)/(1-p)). After the activation is the order that really zeroes the unit.",
            numbers,
        )
    return _result(
        REFUTED,
        "The measured commutation does not single out ReLU "
        f"(ReLU identical: {relu_commutes}, sigmoid identical: {sigmoid['identical']}, "
        f"tanh identical: {tanh['identical']}, same masks: {same_masks}).",
        numbers,
    )


def judge_c3(forward: dict, backward: dict) -> dict:
    main = _main_dropout(forward)
    names = [row["layer"] for row in forward["layers"]]
    after = names[names.index(main["layer"]) + 1 :]
    rows = {row["layer"]: row for row in forward["layers"]}
    later_changed = [name for name in after if rows[name]["changed"]]
    earlier_gradients = [
        row["variable"]
        for row in backward["variables"]
        if row["before_last_dropout"] and row["relative_change"] > 0
    ]
    mismatches = sum(d["mask_mismatches_on_active_units"] for d in forward["dropouts"])
    numbers = {
        "masked_outputs_of": [d["dense"] for d in backward["dropped_columns"]],
        "mask_mismatches_on_active_units": mismatches,
        "backbone_layers_changed": forward["backbone_layers_changed"],
        "later_layers_changed": later_changed,
        "earlier_gradients_changed": earlier_gradients,
    }
    if forward["backbone_layers_changed"] or mismatches:
        return _result(REFUTED, "Dropout changed values outside its own input.", numbers)
    if later_changed or earlier_gradients:
        return _result(
            CORRECTED,
            f"It switches off only outputs of the layer right before it "
            f"({', '.join(numbers['masked_outputs_of'])}: zeros exactly where the mask says), but "
            f"that is not the only layer affected: later layers get different inputs "
            f"({', '.join(later_changed) or 'none'} changed) and earlier trainable layers get "
            f"different gradients ({', '.join(earlier_gradients) or 'none'}).",
            numbers,
        )
    return _result(SUPPORTED, "Only the preceding layer's outputs were affected.", numbers)


def judge_c4(summary: dict, context: dict) -> dict:
    n = _n_selection(summary)
    candidate = sweep_lib.find(summary, 0.5, "after_both")
    reference = sweep_lib.find(summary, *sweep_lib.NO_DROPOUT)
    best = max(summary["configs"], key=lambda row: _acc(row, summary)["mean"] or -math.inf)
    best_diff, best_tol, best_outcome = _compare(_acc(candidate, summary), _acc(best, summary), n)
    ref_diff, ref_tol, ref_outcome = _compare(_acc(candidate, summary), _acc(reference, summary), n)
    numbers = {
        "split": summary["selection_split"],
        "p05_every_fc_accuracy": _acc(candidate, summary),
        "best": {"rate": best["rate"], "placement": best["placement"], **_acc(best, summary)},
        "no_dropout_accuracy": _acc(reference, summary),
        "difference_to_best": best_diff,
        "difference_to_no_dropout": ref_diff,
        "tolerance": best_tol,
        "dropout_layers_in_backbone": context.get("backbone_dropout_layers"),
        "majority_accuracy": summary.get("majority_accuracy"),
    }
    history = _caveat(summary) + (
        "The paper's history is not measurable here; the backbone's convolutional layers "
        f"carry {context.get('backbone_dropout_layers')} Dropout layers. On this data "
        f"({summary['selection_split']} accuracy): p=0.5 on both Dense layers "
        f"{_fmt(_acc(candidate, summary)['mean'], 3)}, best config rate {best['rate']} "
        f"({best['placement']}) {_fmt(_acc(best, summary)['mean'], 3)}, no dropout "
        f"{_fmt(_acc(reference, summary)['mean'], 3)}."
    )
    if best_outcome != "lower":
        return _result(
            SUPPORTED, "p=0.5 on every FC layer is (tied for) the best. " + history, numbers
        )
    if ref_outcome == "higher":
        return _result(
            CORRECTED,
            "p=0.5 on every FC layer beats no dropout but is not the best. " + history,
            numbers,
        )
    return _result(
        REFUTED,
        "p=0.5 on every FC layer is neither the best nor better than none. " + history,
        numbers,
    )


def judge_c5(forward: dict, fit_masks: dict, backward: dict) -> dict:
    main = _main_dropout(forward)
    rate = fit_masks["rate"]
    units = fit_masks["units"]
    mean_fraction = fit_masks["dropped_mean"] / units
    standard_error = math.sqrt(rate * (1 - rate) / (units * fit_masks["samples"]))
    preceding = backward["dropped_columns"][-1]["dense"]
    numbers = {
        "rate": rate,
        "preceding_layer": preceding,
        "units": units,
        "samples": fit_masks["samples"],
        "dropped_fraction_mean": mean_fraction,
        "dropped_per_sample_min": fit_masks["dropped_min"],
        "dropped_per_sample_max": fit_masks["dropped_max"],
        "dropped_per_sample_std": fit_masks["dropped_std"],
        "binomial_std": fit_masks["expected_std"],
        "kept_scale": main["scaling"]["expected_factor"],
        "output_layer_changed": forward["changed_from_first_dropout_on"],
    }
    consistent = abs(mean_fraction - rate) <= RATE_Z * standard_error + 1e-12
    if not consistent or preceding != "hidden_2" or main["mask_mismatches_on_active_units"]:
        return _result(
            REFUTED,
            f"Dropped fraction {_fmt(mean_fraction, 4)} vs rate {rate}; masked layer {preceding}.",
            numbers,
        )
    text = (
        f"On average {_fmt(100 * mean_fraction, 4)}% of {preceding}'s {units} outputs were "
        f"dropped (rate {rate}), before the output layer, whose output changed. But the count is "
        f"random per sample and step: {fit_masks['dropped_min']} to {fit_masks['dropped_max']} "
        f"per sample (std {_fmt(fit_masks['dropped_std'], 3)}, Binomial({units}, {rate}) std "
        f"{_fmt(fit_masks['expected_std'], 3)}), and the kept outputs are multiplied by "
        f"{_fmt(main['scaling']['expected_factor'], 6)}."
    )
    if fit_masks["dropped_std"] > 0 or main["scaling"]["expected_factor"] != 1.0:
        return _result(CORRECTED, text, numbers)
    return _result(SUPPORTED, text, numbers)


def judge_c6(forward: dict, backward: dict, frozen: dict) -> dict:
    earlier = [row for row in backward["variables"] if row["before_last_dropout"]]
    earlier_changed = bool(earlier) and all(row["relative_change"] > 0 for row in earlier)
    facts = backward.get("frozen", {})
    frozen_untouched = (
        forward["backbone_layers_changed"] == 0
        and not facts.get("backbone_trainable_variables")
        and frozen["backbone_variables_changed"] == 0
    )
    numbers = {
        "later_layers_changed": forward["changed_from_first_dropout_on"],
        "earlier_gradient_relative_change": {
            row["variable"]: row["relative_change"] for row in earlier
        },
        "gradient_at_backbone_output_relative_change": backward["feature_gradient"][
            "relative_change"
        ],
        "rate_1_max_norm_before_last_dropout": backward["rate_1_max_norm_before_last_dropout"],
        "backbone_layers_changed_forward": forward["backbone_layers_changed"],
        "backbone_variables_changed_by_training": frozen["backbone_variables_changed"],
    }
    if not (
        forward["changed_from_first_dropout_on"]
        and earlier_changed
        and backward["rate_1_zero_before_last_dropout"]
    ):
        return _result(
            REFUTED,
            "Some trainable layer was not affected, or rate 1 let a gradient through.",
            numbers,
        )
    changes = ", ".join(
        f"{k} {_fmt(v, 3)}" for k, v in numbers["earlier_gradient_relative_change"].items()
    )
    text = (
        f"Later layers changed in the forward pass; every trainable variable before Dropout got "
        f"a different gradient (relative change "
        f"{changes}); "
        f"with rate 1 every gradient before Dropout was exactly 0."
    )
    if frozen_untouched:
        return _result(
            CORRECTED,
            "All TRAINABLE layers are affected, not all layers: the frozen backbone's outputs "
            "were identical, it has no trainable variable, and training left it bitwise "
            "unchanged (the gradient reaching its output changed by "
            f"{_fmt(numbers['gradient_at_backbone_output_relative_change'], 3)} but stops "
            "there). " + text,
            numbers,
        )
    return _result(SUPPORTED, "Every layer, the backbone included, was affected. " + text, numbers)


def judge_c7(shapes: dict) -> dict:
    expectations = {
        "3d_default": lambda p: (
            not p["whole_features_dropped"] and p["samples_with_distinct_masks"] > 1
        ),
        "3d_noise_shape_batch_1_features": lambda p: (
            p["whole_features_dropped"] and p["samples_with_distinct_masks"] > 1
        ),
        "3d_noise_shape_none_1_features": lambda p: (
            p["whole_features_dropped"] and p["samples_with_distinct_masks"] > 1
        ),
        "3d_noise_shape_1_1_features": lambda p: (
            p["whole_features_dropped"] and p["same_mask_for_every_sample"]
        ),
        "2d_default": lambda p: p["samples_with_distinct_masks"] > 1,
        "2d_noise_shape_1_features": lambda p: p["same_mask_for_every_sample"],
    }
    holds = {name: bool(check(shapes[name])) for name, check in expectations.items()}
    numbers = {name: {**shapes[name], "as_claimed": holds[name]} for name in expectations}
    default = shapes["3d_default"]
    whole = shapes["3d_noise_shape_batch_1_features"]
    text = (
        f"3D default: {_fmt(default.get('fraction_features_constant_across_timesteps'), 3)} of "
        f"(sample, feature) pairs keep one state across timesteps (per element); "
        f"noise_shape=(batch, 1, features): "
        f"{_fmt(whole['fraction_features_constant_across_timesteps'], 3)}"
        f" (whole features), "
        f"{shapes['3d_noise_shape_batch_1_features']['samples_with_distinct_masks']} distinct "
        f"masks over {default['shape'][0]} samples; (1, 1, features) and (1, features): one "
        f"mask for all samples."
    )
    if all(holds.values()):
        return _result(SUPPORTED, text, numbers)
    failed = [name for name, ok in holds.items() if not ok]
    return _result(REFUTED, f"Not as claimed: {', '.join(failed)}. " + text, numbers)


def judge(measurements: dict) -> list[dict]:
    """All twelve entries, in report order."""
    m = measurements
    results = {
        "C1": judge_c1(m["sweep"]),
        "C2": judge_c2(m["activation_order"]),
        "C3": judge_c3(m["forward"], m["backward"]),
        "C4": judge_c4(m["sweep"], m["context"]),
        "C5": judge_c5(m["forward"], m["fit_masks"], m["backward"]),
        "C6": judge_c6(m["forward"], m["backward"], m["frozen"]),
        "C7": judge_c7(m["noise_shapes"]),
        "F1": judge_f1(m["forward"], m["fit_masks"]),
        "F2": judge_f2(m["backward"]),
        "F3": judge_f3(m["frozen"], m["cache_facts"]),
        "F4": judge_f4(m["inference"]),
        "F5": judge_f5(m["sweep"], m["context"]),
    }
    return [{"id": key, "claim": CLAIMS[key], **results[key]} for key in ORDER]
