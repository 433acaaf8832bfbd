"""The words of the dropout report: the answer in the question's own terms, and what each
finding means, written from the measured numbers (never ahead of them).

`answer(m, entries)` gives the bullets the report opens with: the whole network? only the new
layers? only Dense(1024)? per epoch? at inference? and, when F5 is conclusive, whether it
helps on this data. Each bullet carries its measured number; sweep numbers appear only when
their verdict is conclusive. `explain(m, finding)` says what a finding found, in a sentence
or two; the rule and the flip condition come with the finding itself.

    for bullet in answer(m, entries): print(f"{bullet.question} {bullet.answer}")
"""

from __future__ import annotations

from dataclasses import dataclass

from inception_retrain.dropout.claims import (
    CONCLUSIVE,
    EFFECT,
    MECHANISM,
    REFUTED,
    SUPPORTED,
    Entry,
    Finding,
)
from inception_retrain.dropout.measurements import Measurements
from inception_retrain.dropout.verdicts import finding


@dataclass
class Bullet:
    question: str  # in the asker's words
    answer: str  # the short answer, then its measured evidence


def _pct(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}g}%"


def _g(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def _whole_network(m: Measurements) -> Bullet:
    f, frozen = m.forward, m.frozen
    if f.backbone_layers_changed == 0 and frozen.backbone_variables_changed == 0:
        text = (
            f"No. All {f.n_backbone_layers} {'' if m.context.fine_tuned else 'frozen '}"
            "backbone layers gave bitwise identical "
            f"outputs with training on and off (max |Δ| = 0), and {frozen.fit_steps} real "
            f"training steps left all {frozen.backbone_frozen_variables} frozen backbone "
            "variables bitwise unchanged"
            + (
                f" (fine-tuning trained the other {frozen.backbone_trainable_variables}, "
                f"those of {m.context.fine_tuned})."
                if frozen.backbone_trainable_variables and m.context.fine_tuned
                else "."
            )
        )
    else:
        text = (
            f"Here, yes: {f.backbone_layers_changed} of {f.n_backbone_layers} backbone "
            f"layers changed their output and {frozen.backbone_variables_changed} backbone "
            "variables changed in training, because the backbone is not frozen."
        )
    return Bullet("The whole network, frozen layers included?", text)


def _new_layers(m: Measurements) -> Bullet:
    f, c = m.forward, m.context
    unchanged = [
        c.dense(r.layer) for r in f.head_layers if r.layer.startswith("hidden") and not r.changed
    ]
    zeroed = [c.dense(d.dense) for d in m.backward.dropped_columns]
    share = _pct(f.main.dropped_fraction_mean)
    if len(zeroed) == 1 and not f.backbone_layers_changed:
        text = (
            f"In the forward pass, no: only {zeroed[0]}'s outputs are zeroed ({share} of "
            f"them per sample on average); {' and '.join(unchanged) or 'no Dense layer'} "
            "gave bitwise identical outputs, and only Dropout and the output layer after "
            "it changed."
        )
    else:
        text = (
            f"In this model every Dropout zeroes the outputs of the Dense layer before it "
            f"({', '.join(zeroed)}), so the layers changed in the forward pass are: "
            f"{', '.join(c.dense(n) for n in f.touched)}."
        )
    return Bullet("Only the newly added layers?", text)


def _dense_1024(m: Measurements) -> Bullet:
    check, b, c = m.backward.main, m.backward, m.context
    change = b.relative_change("hidden_1/kernel")
    text = (
        f"Its outputs, yes: {c.dense(check.dense)}'s dropped units get exactly zero "
        f"gradient in their kernel columns and bias for that sample "
        f"({check.dropped_units_total} dropped units over {check.samples} one-sample "
        f"steps, largest |g| = {_g(check.max_abs_gradient_dropped_kernel_columns)}). "
        f"Through the gradients, {c.dense('hidden_2')} and {c.dense('hidden_1')} learn "
        f"differently: {c.dense('hidden_1')}'s kernel gradient changes by {_pct(change)} "
        "with dropout on. With Dropout(rate=1) no gradient reaches either of them "
        f"(largest norm {_g(b.rate_1_max_norm_before_last_dropout)})."
    )
    return Bullet("Only Dense(1024), the layer right before it?", text)


def _per_epoch(m: Measurements) -> Bullet:
    masks = m.fit_masks
    if masks.fresh_per_step and masks.fresh_per_sample:
        text = (
            f"No: a new mask for each sample at each step. The {masks.steps} steps of a "
            f"real fit epoch drew {masks.distinct_step_masks} different masks, no two "
            f"samples of a step shared one, and {_pct(masks.fraction_changed_between_steps)} "
            "of the units flipped between consecutive steps (independent masks: "
            f"{_pct(masks.expected_fraction_changed_between_steps)})."
        )
    else:
        text = (
            f"Not as expected: over {masks.steps} steps, "
            f"{masks.identical_consecutive_steps} consecutive steps reused a mask and "
            f"{masks.samples_sharing_a_mask_within_a_step} samples shared one."
        )
    return Bullet("Are the neurons switched off once per epoch?", text)


def _inference(m: Measurements) -> Bullet:
    i = m.inference
    if i.deterministic_bitwise and i.identity_max_abs_delta == 0.0:
        text = (
            f"Nothing: at inference (training=False) Dropout passes its input through "
            f"unchanged (max |Δ| = 0) and two passes over {i.images} images give bitwise "
            "identical predictions."
        )
    else:
        text = "Something, here: inference was not deterministic (see F4)."
    return Bullet("And at inference?", text)


SCORE_NAMES = {
    "accuracy": "accuracy",
    "brier": "Brier score",
    "log_loss": "log loss",
    "gap": "train - held-out accuracy gap",
    "auroc": "AUROC",
}


def _decided(c) -> str:
    """E.g. 'equivalent within ±0.034: the Brier score of no dropout better than that of
    Dropout(0.2) after Dense(1024) by +0.0012 (95% CI [-0.0061, +0.0085])'."""
    verdict = c.verdict + (f" within ±{c.margin:g}" if c.verdict == "equivalent" else "")
    lean = (
        f", {c.direction} by less than the margin"
        if c.verdict == "equivalent" and c.direction != "none"
        else ""
    )
    score = SCORE_NAMES.get(c.metric, c.metric)
    change = "smaller" if c.metric == "gap" else "better"
    return (
        f"{verdict}{lean}: the {score} of {c.b} {change} than that of {c.a} by "
        f"{c.difference:+.4f} (95% CI [{c.low:+.4f}, {c.high:+.4f}])"
    )


def _design(m: Measurements) -> str:
    s = m.sweep
    return f"{s.repeats}x{s.folds} cross-fit, {s.plan.n} images"


def _on_this_data(m: Measurements, entries: list[Entry]) -> Bullet:
    from inception_retrain.dropout.effects import label
    from inception_retrain.dropout.verdicts import f5_cell

    f5 = finding(entries, "F5", EFFECT)
    question = f"Does {label(f5_cell(m.context), m.context.hidden_units)} help on this data?"
    if f5 is None or f5.verdict not in CONCLUSIVE:
        return Bullet(
            question,
            f"The sweep cannot tell here ({_why_undecided(f5)}); see F5 in "
            "the statistical section.",
        )
    gap, score = f5.comparisons[0], f5.comparisons[1]
    evidence = (
        f"the gap: {_decided(gap)}; the held-out {SCORE_NAMES[score.metric]}: "
        f"{_decided(score)} ({_design(m)})"
    )
    if f5.verdict == SUPPORTED:
        return Bullet(question, f"Yes, here: less overfitting at no cost. In numbers, {evidence}.")
    why = []
    if gap.verdict == "equivalent":
        why.append(
            f"it does not shrink the train - held-out accuracy gap by more than ±{gap.margin:g}"
        )
    elif gap.verdict == "worse":
        why.append("it widens the train - held-out accuracy gap")
    if score.verdict == "worse":
        why.append(f"it costs held-out {SCORE_NAMES[score.metric]}")
    return Bullet(question, f"No, here: {' and '.join(why)}. In numbers, {evidence}.")


PLACEMENT_WORDS = {
    "C1": "Dropout(0.5) after the last hidden layer only is {not_}at least as good as after "
    "every hidden layer",
    "C4": "Dropout(0.5) after every hidden layer is {not_}at least as good as each other config",
}


def _placement(m: Measurements, entries: list[Entry]) -> Bullet | None:
    """C1 and C4 on this data, when either decided (numbers only for decided effects)."""
    parts = []
    for claim, words in PLACEMENT_WORDS.items():
        f = finding(entries, claim, EFFECT)
        if f is None or f.verdict not in (SUPPORTED, REFUTED) or not f.comparisons:
            continue
        deciding = [c for c in f.comparisons if c.deciding]
        closest = min(deciding, key=lambda c: c.low)  # C4: the other config closest to it
        against = f" (closest: against {closest.a})" if claim == "C4" else ""
        text = words.format(not_="" if f.verdict == SUPPORTED else "not ")
        parts.append(f"{claim}: {text}{against}: {_decided(closest)}")
    if not parts:
        return None
    return Bullet(
        "Dropout in the last layers only, or in every layer?",
        "On this data: " + "; ".join(parts) + f" ({_design(m)}).",
    )


def _why_undecided(f5: Finding | None) -> str:
    """Why F5 did not decide, in words only: sweep numbers are for decided verdicts."""
    if f5 is None or not f5.comparisons:
        return (
            f5.reason if f5 is not None and f5.reason else "the sweep lacks the configs F5 compares"
        )
    reasons = []
    for c in f5.comparisons[:2]:
        if c.verdict == "not testable":
            reasons.append("no config beats always predicting the majority class")
        elif c.verdict == "inconclusive":
            reasons.append("its intervals are too wide for the margins")
    return "; ".join(dict.fromkeys(reasons)) or f5.verdict


def _backbone_gradients(m: Measurements) -> Bullet | None:
    reach = m.backbone_reach
    if reach is None:
        return None
    frozen = reach.steps or m.frozen
    blocks = ", ".join(reach.blocks)
    question = f"With fine-tuning ({blocks} unfrozen), the backbone's gradients too?"
    if not reach.trainable:
        text = (
            f"Not here: the backbone is frozen, {blocks} included, so no backbone layer has a "
            "gradient for Dropout to change (0 trainable layers). Run with --fine-tune "
            f"{reach.blocks[0]} to measure it."
        )
    else:
        which = ""
        if reach.model != "fine-tuned":
            which = " (measured on the run's fine-tuned model, which validation did not choose)"
        text = (
            f"Yes, through backpropagation{which}: the head's Dropout mask changed the "
            f"gradient of {reach.changed} of the {reach.trainable} trainable layers of "
            f"{blocks} (relative change median {_pct(reach.median_relative_change)}, from "
            f"{_pct(reach.min_relative_change)} to {_pct(reach.max_relative_change)}), while "
            f"{frozen.fit_steps} real fit steps of that model left all "
            f"{frozen.backbone_frozen_variables} frozen backbone variables (every layer below "
            f"{reach.blocks[0]}, and its {len(reach.frozen_layers)} BatchNormalization layers) "
            f"bitwise unchanged ({frozen.backbone_variables_changed} changed)."
        )
    return Bullet(question, text)


def answer(m: Measurements, entries: list[Entry]) -> list[Bullet]:
    """The report's opening bullets, in the question's own terms."""
    bullets = [
        _whole_network(m),
        _new_layers(m),
        _dense_1024(m),
        _per_epoch(m),
        _inference(m),
        _on_this_data(m, entries),
        _placement(m, entries),
        _backbone_gradients(m),
    ]
    return [bullet for bullet in bullets if bullet is not None]


def _d(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _comparison_text(f: Finding) -> str:
    parts = [
        f"{c.b} vs {c.a}, {SCORE_NAMES.get(c.metric, c.metric)} ({c.design}, {c.images} "
        f"images): {_decided(c)}"
        + (
            f"; {c.degenerate_pairs} pairs with a degenerate training, kept"
            if c.degenerate_pairs
            else ""
        )
        for c in f.comparisons
        if c.deciding and c.difference is not None
    ]
    return "; ".join(parts) + "."


def explain(m: Measurements, f: Finding) -> str:
    """What the finding found, in words (the rule and the flip condition are separate)."""
    if f.comparisons:
        return _comparison_text(f)
    if f.kind != MECHANISM:
        return ""  # the reason says it
    if f.verdict == REFUTED:
        return f"Measured against the claim: {f.reason}."
    n = f.numbers
    if f.claim == "C6" and "backbone_trainable_layers" in n:
        if not n["backbone_trainable_layers"]:
            return f"No change in the backbone: {f.reason}."
        return (
            f"Every one of the {n['backbone_trainable_layers']} trainable backbone layers got "
            f"another gradient (relative change {_pct(n['min_relative_change'])} to "
            f"{_pct(n['max_relative_change'])}); {n['frozen_backbone_variables']} frozen "
            f"variables bitwise unchanged after {n['fit_steps']} fit steps."
        )
    texts = {
        "F1": lambda: (
            f"{n['backbone_layers']} frozen backbone layers unchanged; "
            f"{n['layers_changed']} layers changed, exactly those from Dropout on; "
            f"{n['distinct_step_masks']} different masks in {n['fit_steps']} steps."
        ),
        "F2": lambda: (
            f"{n['dropped_units']} dropped units over {n['samples_checked']} samples, "
            "all with exactly zero gradient columns; in a "
            f"{n['batch']}-sample step {n['batch_units_dropped_somewhere_with_gradient']}"
            " units dropped for some samples still had a non-zero column."
        ),
        "F3": lambda: (
            f"All {n['backbone_frozen_variables']} frozen backbone variables bitwise "
            f"unchanged after {n['fit_steps']} fit steps, while {n['head_variables_changed']} "
            "head variables moved"
            + (
                f" (and {n['backbone_trainable_variables_changed']} fine-tuned ones)."
                if n.get("backbone_trainable_variables_changed")
                else "."
            )
        ),
        "F4": lambda: (
            f"Inference passes identical (max |Δ| "
            f"{_g(n['deterministic_max_abs_delta'])}); MC passes varied for "
            f"{n['mc_images_varying']} of {n['images']} images."
        ),
        "C2": lambda: (
            f"ReLU before vs after: max |Δ| {_g(n['relu_max_abs_delta'])}; sigmoid "
            f"{_g(n['sigmoid_max_abs_delta'])} (a unit dropped before sigmoid outputs "
            f"0.5, not 0); tanh {_g(n['tanh_max_abs_delta'])}."
        ),
        "C3": lambda: (
            f"Zeros only on {n['masked_outputs_of']}'s outputs, matching the mask; "
            f"{n['later_layers_changed']} later layer(s) and "
            f"{n['earlier_variables_with_other_gradients']} earlier variable(s) "
            "affected through inputs and gradients."
        ),
        "C5": lambda: (
            f"{_pct(n['dropped_fraction_mean'], 4)} dropped on average, "
            f"{n['dropped_min']} to {n['dropped_max']} per sample (std "
            f"{_g(n['dropped_std'])}, Binomial std {_g(n['binomial_std'])}); kept "
            f"outputs x {_g(n['kept_scale'], 6)}."
        ),
        "C6": lambda: (
            "Every trainable variable before Dropout got another gradient; the "
            "gradient reaching the backbone's output changed by "
            f"{_pct(n['backbone_output_gradient_relative_change'])}, and the "
            f"backbone stayed unchanged ({n['backbone_variables_changed_by_training']}"
            " variables changed)."
        ),
        "C7": lambda: "Every mask pattern as claimed.",
    }
    return texts[f.claim]()
