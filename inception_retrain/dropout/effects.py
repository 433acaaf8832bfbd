"""Verdict rules for effects on this data (C1, C4, F5, F4's uncertainty, C2's performance half)
and for the parts of claims that are history or practice.

Every effect comparison follows one rule (`statistics.decide`). Two sweep configs are
compared seed by seed on the evaluation split (test): d = a - b per seed, its mean with the 95%
t interval over seeds. A claim "d > threshold" is supported when the interval lies above the
threshold, refuted when it lies below, inconclusive when it contains it. The threshold is 0 for
"better" and -margin for "at least as good", where the margin is the run's
`equivalence_margin`, fixed in its config before the run. Before the rule applies, each config
must be able to decide at all. Seeds where either config's training is degenerate (one
class predicted for every validation image: it learned nothing) are left out of the pairs and
listed; with fewer than three pairs left the comparison is inconclusive. Over the pairs kept,
each config's accuracy over test images (correctness averaged over those seeds, t interval
over images) must clear always predicting the majority class; otherwise the comparison is
inconclusive and says why.

  * C1 (effect): Dropout(0.5) after Dense(1024) only is at least as good as after both Dense
    layers. Full grids show the other rates too, for context; only rate 0.5 decides.
  * C4 (effect): Dropout(0.5) after both Dense layers is at least as good as the best other
    config, picked by mean validation accuracy and judged on test (never both on one split).
  * F5: the run's head's dropout (the seed's Dropout(0.2) after Dense(1024) by default, and
    when the head has none) against no dropout: the train - test accuracy gap is smaller
    ("better": no dropout minus dropout > 0) AND test accuracy is at least as good.
    Supported if both hold, refuted if either fails, else inconclusive.
  * F4 (effect): misclassified test images carry higher MC-dropout uncertainty: supported when
    the permutation p-value is below 0.05 and the AUROC's bootstrap interval lies above 0.5,
    refuted when it lies below 0.5, not testable with fewer than two errors or two correct
    images. The deterministic confidence's AUROC is the baseline shown beside it.
"""

from __future__ import annotations

import numpy as np

from inception_retrain.dropout import sweep as grid
from inception_retrain.dropout.claims import (
    EFFECT,
    INCONCLUSIVE,
    NOT_TESTABLE,
    PRACTICE,
    REFUTED,
    SUPPORTED,
    Comparison,
    Finding,
)
from inception_retrain.dropout.direct import ActivationOrder
from inception_retrain.dropout.inference import Inference
from inception_retrain.dropout.sweep_summary import ConfigSummary, SweepSummary
from inception_retrain.evaluation import statistics

ALPHA = 0.05
MIN_PAIRS = 3  # seed pairs a comparison needs once degenerate trainings are left out
OUTCOME_VERDICT = {
    statistics.HOLDS: SUPPORTED,
    statistics.FAILS: REFUTED,
    statistics.INCONCLUSIVE: INCONCLUSIVE,
}


def label(config: ConfigSummary | tuple[float, str], units=(512, 1024)) -> str:
    """'no dropout', 'Dropout(0.2) after Dense(1024)', 'Dropout(0.5) after both Dense layers'."""
    rate, placement = (config.rate, config.placement) if hasattr(config, "rate") else config
    if (rate, placement) == grid.NO_DROPOUT:
        return "no dropout"
    where = f"after Dense({units[1]})" if placement == "after_dense2" else "after both Dense layers"
    return f"Dropout({rate:g}) {where}"


def beats_guessing(summary: SweepSummary, config: ConfigSummary, seeds, units) -> str:
    """Why `config`, over the trainings of `seeds`, cannot decide ("" when it can): its
    accuracy over evaluation images must clear always predicting the majority class."""
    split = summary.evaluation_split
    runs = [r for r in config.runs if r.seed in seeds and split in r.scores]
    majority = summary.majority_accuracy.get(split)
    interval = statistics.mean_interval(
        np.mean([r.scores[split].correctness() for r in runs], axis=0) if runs else []
    )
    if statistics.beats(interval, majority):
        return ""
    return (
        f"{label(config, units)}'s {split} accuracy over images, {interval.text()}, does not "
        f"clear always predicting the majority class ({_f(majority)})"
    )


def _f(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def compare(
    summary, a, b, *, claim, margin, units, name, metric="accuracy", deciding=True
) -> Comparison:
    """The one rule on a - b per seed (metric "accuracy": evaluation accuracy; "gap": the
    train - evaluation accuracy gap), over the seeds where neither training is degenerate."""
    split, selection = summary.evaluation_split, summary.selection_split
    if metric == "gap":
        values_a, values_b, shown = a.gap(split), b.gap(split), f"train - {split} accuracy gap"
    else:
        values_a, values_b = a.per_seed(split, "accuracy"), b.per_seed(split, "accuracy")
        shown = f"{split} accuracy"
    excluded = sorted({r.seed for r in (*a.runs, *b.runs) if r.degenerate(selection)})
    values_a = {seed: v for seed, v in values_a.items() if seed not in excluded}
    values_b = {seed: v for seed, v in values_b.items() if seed not in excluded}
    diff = statistics.paired_difference(values_a, values_b)
    threshold = statistics.threshold_for(claim, margin)
    reasons = []
    if diff.n < MIN_PAIRS:
        reasons.append(
            f"{diff.n} seed pair(s) without a degenerate training, fewer than {MIN_PAIRS}"
        )
    else:
        reasons += [beats_guessing(summary, c, diff.keys, units) for c in (a, b)]
    reasons = [r for r in reasons if r]
    interval = diff.interval
    return Comparison(
        name=name,
        metric=shown,
        a=label(a, units),
        b=label(b, units),
        claim=claim,
        threshold=threshold,
        n=diff.n,
        mean=diff.mean,
        low=interval.low if interval.bounded else None,
        high=interval.high if interval.bounded else None,
        effect_size=diff.effect_size,
        outcome=statistics.INCONCLUSIVE
        if reasons
        else statistics.decide(interval, threshold).outcome,
        blocked="; ".join(reasons),
        excluded=excluded,
        deciding=deciding,
    )


def rule_text(c: Comparison, margin: float, summary: SweepSummary) -> str:
    what = (
        f"at least as good: worse by less than the margin {margin:g}, fixed before the run"
        if c.claim == statistics.AT_LEAST_AS_GOOD
        else "better: a difference above 0"
    )
    return (
        f"{c.a} - {c.b} on {c.metric}, paired over {c.n} seeds ({what}): supported if its 95% "
        f"CI lies above {c.threshold:g}, refuted if below, inconclusive if it contains "
        f"{c.threshold:g}. Seeds where either training is degenerate are left out (fewer than "
        f"{MIN_PAIRS} pairs left: inconclusive); a config whose {summary.evaluation_split} "
        "accuracy CI over images does not clear the majority class "
        f"({_f(summary.majority_accuracy.get(summary.evaluation_split))}) cannot decide."
    )


def flip_text(c: Comparison) -> str:
    t, low, high = f"{c.threshold:g}", _f(c.low), _f(c.high)
    if c.blocked:
        return (
            f"Decidable once at least {MIN_PAIRS} seed pairs train without degenerating and "
            f"both configs beat the majority class; then the CI ({_f(c.mean)} [{low}, {high}]) "
            f"against {t} decides."
        )
    raise_low = f"the CI's lower end ({low}) rose above {t}"
    drop_high = f"its upper end ({high}) fell below {t}"
    if c.outcome == statistics.HOLDS:
        return f"Inconclusive if the CI's lower end ({low}) reached {t}; refuted if {drop_high}."
    if c.outcome == statistics.FAILS:
        return f"Inconclusive if the CI's upper end ({high}) reached {t}; supported if {raise_low}."
    return f"Supported if {raise_low}; refuted if {drop_high}."


def _numbers(c: Comparison) -> dict:
    return {
        "difference": c.mean,
        "ci_low": c.low,
        "ci_high": c.high,
        "seeds": c.n,
        "effect_size_dz": c.effect_size,
        "threshold": c.threshold,
    }


def _missing(claim: str, question: str, needs: str) -> Finding:
    return Finding(
        claim,
        EFFECT,
        question,
        NOT_TESTABLE,
        rule=f"Needs {needs} in the sweep.",
        flip=f"A sweep with {needs} would decide it.",
        reason=f"the sweep has no {needs}",
    )


def judge_c1(s: SweepSummary, margin: float, units=(512, 1024)) -> list[Finding]:
    question = (
        f"On this data, is {label(grid.END_ONLY, units)} only at least as good as "
        f"{label(grid.EVERY_LAYER, units)}?"
    )
    end, every = s.config(*grid.END_ONLY), s.config(*grid.EVERY_LAYER)
    practice = Finding(
        "C1",
        PRACTICE,
        "Is dropout usually used only in the last layers?",
        NOT_TESTABLE,
        rule="How often practitioners place dropout is a fact about published networks, not "
        "about this model or data.",
        flip="A survey of architectures could decide it.",
        reason="a claim about common practice",
    )
    if end is None or every is None:
        return [_missing("C1", question, "rate-0.5 cells after Dense 2 and after both"), practice]
    main = compare(
        s,
        end,
        every,
        claim=statistics.AT_LEAST_AS_GOOD,
        margin=margin,
        units=units,
        name="end only vs every layer, rate 0.5",
    )
    context = [
        compare(
            s,
            row,
            other,
            claim=statistics.AT_LEAST_AS_GOOD,
            margin=margin,
            units=units,
            name=f"end only vs every layer, rate {row.rate:g}",
            deciding=False,
        )
        for row in s.configs
        if row.placement == "after_dense2"
        and row.rate != 0.5
        and (other := s.config(row.rate, "after_both")) is not None
    ]
    effect = Finding(
        "C1",
        EFFECT,
        question,
        OUTCOME_VERDICT[main.outcome],
        rule=rule_text(main, margin, s),
        flip=flip_text(main),
        numbers=_numbers(main),
        comparisons=[main, *context],
        reason=main.blocked
        or (
            "the interval contains the threshold" if main.outcome == statistics.INCONCLUSIVE else ""
        ),
    )
    return [effect, practice]


def judge_c4(
    s: SweepSummary,
    margin: float,
    units=(512, 1024),
    layer: str = "mixed7",
    backbone_dropout_layers: int | None = None,
) -> list[Finding]:
    history = Finding(
        "C4",
        PRACTICE,
        "Did the 2012 paper use p=0.5 on every FC layer and none on "
        "convolutions, and did that become the most common setup?",
        NOT_TESTABLE,
        rule="The paper's setup and later practice are history; measured instead: the frozen "
        f"convolutional backbone (InceptionV3 to {layer}) has "
        f"{backbone_dropout_layers} Dropout layers.",
        flip="Reading the paper and surveying later networks would decide it.",
        numbers={"backbone_dropout_layers": backbone_dropout_layers},
        reason="a claim about history and practice",
    )
    question = (
        f"On this data, is {label(grid.EVERY_LAYER, units)} at least as good as the "
        f"best other config (picked on {s.selection_split}, judged on "
        f"{s.evaluation_split})?"
    )
    candidate = s.config(*grid.EVERY_LAYER)
    others = [c for c in s.configs if c is not candidate and c.validation_accuracy is not None]
    if candidate is None or not others:
        return [_missing("C4", question, "a rate-0.5 cell after both and another config"), history]
    if s.selection_split == s.evaluation_split:
        finding = Finding(
            "C4",
            EFFECT,
            question,
            NOT_TESTABLE,
            rule="The best config is picked on one split and judged on another.",
            flip="A run with both validation and test images would decide it.",
            reason="no separate validation and test splits",
        )
        return [finding, history]
    best = max(others, key=lambda c: c.validation_accuracy.mean)
    main = compare(
        s,
        candidate,
        best,
        claim=statistics.AT_LEAST_AS_GOOD,
        margin=margin,
        units=units,
        name="p=0.5 every FC layer vs best other",
    )
    none = s.config(*grid.NO_DROPOUT)
    extra = []
    if none is not None and none is not best:
        extra.append(
            compare(
                s,
                candidate,
                none,
                claim=statistics.AT_LEAST_AS_GOOD,
                margin=margin,
                units=units,
                name="p=0.5 every FC layer vs none",
                deciding=False,
            )
        )
    numbers = {
        **_numbers(main),
        "best_other": label(best, units),
        "best_other_validation_accuracy": best.validation_accuracy.mean,
    }
    effect = Finding(
        "C4",
        EFFECT,
        question,
        OUTCOME_VERDICT[main.outcome],
        rule=f"Best other config by mean {s.selection_split} accuracy: {label(best, units)}. "
        + rule_text(main, margin, s),
        flip=flip_text(main),
        numbers=numbers,
        comparisons=[main, *extra],
        reason=main.blocked
        or (
            "the interval contains the threshold" if main.outcome == statistics.INCONCLUSIVE else ""
        ),
    )
    return [effect, history]


def judge_f5(
    s: SweepSummary, margin: float, units=(512, 1024), cell=grid.SEED_CELL
) -> list[Finding]:
    """F5 for the dropout `cell` (the run's own head's; the seed's when it has none)."""
    tested, none = s.config(*cell), s.config(*grid.NO_DROPOUT)
    question = (
        f"On this data, does {label(cell, units)} shrink the train - "
        f"{s.evaluation_split} accuracy gap without costing {s.evaluation_split} "
        "accuracy?"
    )
    if tested is None or none is None:
        return [_missing("F5", question, "a no-dropout cell and the seed's cell")]
    gap = compare(
        s,
        none,
        tested,
        claim=statistics.BETTER,
        margin=margin,
        units=units,
        name="gap shrinks with dropout",
        metric="gap",
    )
    accuracy = compare(
        s,
        tested,
        none,
        claim=statistics.AT_LEAST_AS_GOOD,
        margin=margin,
        units=units,
        name="accuracy kept with dropout",
    )
    outcomes = {gap.outcome, accuracy.outcome}
    if statistics.FAILS in outcomes:
        verdict = REFUTED
    elif outcomes == {statistics.HOLDS}:
        verdict = SUPPORTED
    else:
        verdict = INCONCLUSIVE
    undecided = [c for c in (gap, accuracy) if c.outcome == statistics.INCONCLUSIVE]
    failed = [c for c in (gap, accuracy) if c.outcome == statistics.FAILS]
    reasons = [c.blocked or f"{c.name}: the interval contains {c.threshold:g}" for c in undecided]
    if verdict == REFUTED:
        reasons = [f"{c.name}: the interval lies below {c.threshold:g}" for c in failed]
    reason = "; ".join(dict.fromkeys("; ".join(reasons).split("; ")))  # each cause once
    numbers = {
        "gap_reduction": gap.mean,
        "gap_reduction_ci_low": gap.low,
        "gap_reduction_ci_high": gap.high,
        "accuracy_difference": accuracy.mean,
        "accuracy_ci_low": accuracy.low,
        "accuracy_ci_high": accuracy.high,
        "seeds": gap.n,
        "margin": margin,
    }
    return [
        Finding(
            "F5",
            EFFECT,
            question,
            verdict,
            rule="Both parts by the one rule, supported only if both hold, refuted if either "
            f"fails. (1) {rule_text(gap, margin, s)} (2) {rule_text(accuracy, margin, s)}",
            flip=f"(1) {flip_text(gap)} (2) {flip_text(accuracy)}",
            numbers=numbers,
            comparisons=[gap, accuracy],
            reason=reason,
        )
    ]


def judge_f4_uncertainty(inference: Inference, split: str = "test") -> Finding:
    test, base = inference.uncertainty, inference.baseline
    question = f"Do misclassified {split} images carry higher MC-dropout uncertainty?"
    rule = (
        f"AUROC of the MC-dropout std for telling errors from correct images: supported if "
        f"the one-sided permutation p-value is below {ALPHA} and the 95% bootstrap CI "
        "lies above 0.5, refuted if the CI lies below 0.5, otherwise inconclusive; "
        "needs at least two errors and two correct images."
    )
    numbers = {
        "errors": inference.errors,
        "images": inference.images,
        "auroc": test.auroc,
        "auroc_ci_low": test.interval.low if test.interval.bounded else None,
        "auroc_ci_high": test.interval.high if test.interval.bounded else None,
        "permutation_p": test.p_value,
        "baseline_auroc_confidence": base.auroc,
        "mc_minus_baseline": inference.difference.estimate,
        "mc_minus_baseline_ci_low": inference.difference.low
        if inference.difference.bounded
        else None,
        "mc_minus_baseline_ci_high": inference.difference.high
        if inference.difference.bounded
        else None,
    }
    if test.p_value is None:
        return Finding(
            "F4",
            EFFECT,
            question,
            NOT_TESTABLE,
            rule=rule,
            flip="A split with at least two errors and two correct images.",
            numbers=numbers,
            reason=f"{test.positives} errors and {test.negatives} correct images",
        )
    low, high = test.interval.low, test.interval.high
    if test.p_value < ALPHA and low > 0.5:
        verdict, flip = (
            SUPPORTED,
            (
                f"Inconclusive if p reached {ALPHA} (it is "
                f"{test.p_value:.4f}) or the CI's lower end ({low:.3f}) "
                "fell to 0.5."
            ),
        )
    elif high < 0.5:
        verdict, flip = REFUTED, f"Inconclusive if the CI's upper end ({high:.3f}) reached 0.5."
    else:
        verdict = INCONCLUSIVE
        flip = (
            f"Supported if p fell below {ALPHA} (it is {test.p_value:.4f}) with the CI "
            f"above 0.5 (it is [{low:.3f}, {high:.3f}]); refuted if the CI fell below 0.5."
        )
    return Finding(
        "F4",
        EFFECT,
        question,
        verdict,
        rule=rule,
        flip=flip,
        numbers=numbers,
        reason="the interval contains 0.5 or p >= 0.05" if verdict == INCONCLUSIVE else "",
    )


def judge_c2_performance(order: ActivationOrder) -> Finding:
    relu_same = all(o["relu"].identical for o in (order.real, order.standardised))
    reason = (
        (
            "this head's activations are ReLU, for which the two orders are the same "
            "function bit for bit (C2's mechanism), so here they cannot differ in performance; "
            "sigmoid and tanh heads are not trained"
        )
        if relu_same
        else ("the head's ReLU orders differ, and no head with another activation is trained")
    )
    return Finding(
        "C2",
        EFFECT,
        "Does the order (dropout before or after the activation) change how well a head learns?",
        NOT_TESTABLE,
        rule="Would need heads trained with each order and each activation, compared seed by "
        "seed like the sweep.",
        flip="A sweep over activations and orders would decide it.",
        reason=reason,
    )
