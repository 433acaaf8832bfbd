"""Verdict rules for effects on this data (C1, C4, F5, F4's uncertainty, C2's performance
half), all by one engine (`evaluation.crossfit`), and for the claims' history and practice.

Every effect comparison is paired image by image over the sweep's cross-fit (every train
and validation image has an out-of-fold prediction of every config in every repeat), tested
by the corrected resampled t of Nadeau & Bengio (2003), and given the engine's verdict:
better, equivalent within ± the margin, worse or inconclusive (`crossfit.verdict_of`). The
deciding score (Brier by default) and the margins are fixed in the config before the run
(`EvidenceSpec`); the other scores are shown beside it. Each claim maps the verdict to its
wording:

  * "at least as good" (C1, C4, F5's accuracy part): better or equivalent -> supported,
    worse -> refuted;
  * "better" (F5's gap, F4 against the plain confidence): better -> supported, equivalent
    (a difference too small to matter) or worse -> refuted;
  * "no different" (C2's orders): equivalent -> supported, better or worse -> refuted;
  * inconclusive stays inconclusive, with the smallest difference the data could detect.

Before any of it, the gate: at least one config must beat always predicting the majority
class (one-sided, Holm over the configs); otherwise every effect verdict is "not testable
here: the head does not beat guessing". Degenerate trainings stay in the comparisons (they
are their config's real outcomes) and each comparison says how many pairs had one.

  * C1: Dropout(0.5) after Dense(1024) only is at least as good as after both Dense layers.
  * C4: Dropout(0.5) after both Dense layers is at least as good as the best other config.
    No config is picked on the data that judges it: it is compared with every other one
    (a fixed rule); supported when it is at least as good as each (an intersection-union
    test, no correction needed), refuted when it is worse than one of them after Holm's
    correction over the comparisons.
  * F5: the run's head's dropout (the seed's Dropout(0.2) after Dense(1024) when it has none)
    against no dropout: (1) the train - held-out accuracy gap of each training is smaller
    (better by more than the accuracy margin) AND (2) the held-out score is at least as good.
  * F4: the MC-dropout spread spots the held-out errors better than the plain confidence
    (1 - the deterministic probability of the predicted class): AUROC per held-out fold,
    paired by training; needs at least MIN_ERRORS errors and correct images in every fold.
  * C2 (performance): the seed's Dropout before and after Dense(1024)'s ReLU, trained from
    the same seed on one fold: no different (one split, paired over its images).
"""

from __future__ import annotations

import numpy as np

from inception_retrain.data.distribution_tests import holm_adjust
from inception_retrain.dropout import sweep as grid
from inception_retrain.dropout.claims import (
    AT_LEAST_AS_GOOD,
    BETTER_CLAIM,
    EFFECT,
    INCONCLUSIVE,
    NOT_TESTABLE,
    PRACTICE,
    REFUTED,
    SAME,
    SUPPORTED,
    Comparison,
    Finding,
)
from inception_retrain.dropout.evidence_spec import EvidenceSpec
from inception_retrain.dropout.sweep_summary import ConfigSummary, SweepSummary
from inception_retrain.evaluation import crossfit, statistics

MIN_ERRORS = 2  # F4: errors and correct images a held-out fold needs for its AUROC
MIN_FOLDS = 3  # F4: folds with an AUROC it needs (and half of them); the others are left out
METRIC_NAMES = {"accuracy": "accuracy", "brier": "Brier score", "log_loss": "log loss"}
GAP = crossfit.Metric("gap", False, 1.0, "train - held-out accuracy gap, A - B")
AUROC = crossfit.Metric("auroc", True, 1.0, "AUROC B - A")
MAPPING = {
    AT_LEAST_AS_GOOD: {
        crossfit.BETTER: SUPPORTED,
        crossfit.EQUIVALENT: SUPPORTED,
        crossfit.WORSE: REFUTED,
    },
    BETTER_CLAIM: {
        crossfit.BETTER: SUPPORTED,
        crossfit.EQUIVALENT: REFUTED,
        crossfit.WORSE: REFUTED,
    },
    SAME: {crossfit.EQUIVALENT: SUPPORTED, crossfit.BETTER: REFUTED, crossfit.WORSE: REFUTED},
}
MAPPING_TEXT = {
    AT_LEAST_AS_GOOD: "supported if better or equivalent, refuted if worse",
    BETTER_CLAIM: "supported if better, refuted if equivalent (too small to matter) or worse",
    SAME: "supported if equivalent, refuted if better or worse",
}
NOT_GUESSING = "the head does not beat guessing"


def claim_verdict(claim: str, verdict: str) -> str:
    """The finding's verdict for the engine's `verdict` on a claim of kind `claim`."""
    if verdict == crossfit.NOT_TESTABLE:
        return NOT_TESTABLE
    return MAPPING[claim].get(verdict, INCONCLUSIVE)


def label(config: ConfigSummary | tuple[float, str], units=(512, 1024)) -> str:
    """'no dropout', 'Dropout(0.2) after Dense(1024)', 'Dropout(0.5) after both Dense layers'."""
    rate, placement = (config.rate, config.placement) if hasattr(config, "rate") else config
    if (rate, placement) == grid.NO_DROPOUT:
        return "no dropout"
    where = f"after Dense({units[1]})" if placement == "after_dense2" else "after both Dense layers"
    return f"Dropout({rate:g}) {where}"


def _f(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def guessing(summary: SweepSummary) -> bool:
    """True when no config beats always predicting the majority class (the gate)."""
    return not any(c.beats_majority for c in summary.configs)


def _comparison(r: crossfit.PairedComparison, **fields) -> Comparison:
    """A `Comparison` from the engine's result (`fields`: name, labels, claim, ...)."""
    return Comparison(
        metric=r.metric,
        unit=r.unit,
        verdict=r.verdict,
        direction=r.direction,
        difference=r.difference,
        low=r.ci95[0],
        high=r.ci95[1],
        low90=r.ci90[0],
        high90=r.ci90[1],
        margin=r.margin,
        p_value=r.p_value,
        design=r.design,
        images=r.n_images,
        folds=r.n_folds,
        repeats=r.n_repeats,
        min_detectable=r.min_detectable,
        images_needed=r.images_needed,
        repeats_needed=r.repeats_needed,
        note=r.note,
        per_image=[float(x) for x in r.image_differences],
        per_fold=[[float(x) for x in row] for row in r.fold_differences],
        **fields,
    )


def _gated(r: crossfit.PairedComparison, summary: SweepSummary) -> crossfit.PairedComparison:
    if guessing(summary):
        r.verdict = crossfit.NOT_TESTABLE
        r.note = f"{NOT_GUESSING}: no config beats always predicting the majority class"
    return r


def compare_configs(
    s: SweepSummary,
    a: ConfigSummary,
    b: ConfigSummary,
    metric: str,
    evidence: EvidenceSpec,
    *,
    claim: str,
    name: str,
    units,
    deciding: bool = True,
) -> Comparison:
    """B against A on one per-image score, cross-fitted."""
    r = crossfit.compare_crossfit(
        s.outcomes(a, metric),
        s.outcomes(b, metric),
        s.fold_array(),
        metric,
        margin=evidence.margin(metric),
    )
    return _comparison(
        _gated(r, s),
        name=name,
        a=label(a, units),
        b=label(b, units),
        claim=claim,
        degenerate_pairs=len(s.degenerate_slots(a, b)),
        deciding=deciding,
    )


def compare_on_scores(s, a, b, evidence, *, claim, name, units) -> list[Comparison]:
    """The deciding score first, then the other two as context."""
    metrics = [evidence.metric, *(m for m in crossfit.METRICS if m != evidence.metric)]
    return [
        compare_configs(s, a, b, m, evidence, claim=claim, name=name, units=units, deciding=i == 0)
        for i, m in enumerate(metrics)
    ]


def _numbers(c: Comparison) -> dict:
    return {
        "metric": c.metric,
        "difference": c.difference,
        "ci_low": c.low,
        "ci_high": c.high,
        "ci90_low": c.low90,
        "ci90_high": c.high90,
        "margin": c.margin,
        "engine_verdict": c.verdict,
        "direction": c.direction,
        "images": c.images,
        "folds": c.folds,
        "repeats": c.repeats,
        "min_detectable": c.min_detectable,
        "images_needed": c.images_needed,
        "degenerate_pairs": c.degenerate_pairs,
    }


def rule_text(c: Comparison) -> str:
    what = METRIC_NAMES.get(c.metric, c.metric)
    return (
        f"{c.b} against {c.a} on {what} ({c.unit}), paired image by image over {c.images} "
        f"images ({c.design}; corrected resampled t), margin ±{c.margin:g} fixed before the "
        "run: equivalent if the 90% CI lies inside ±margin, better or worse if the 95% CI "
        "lies above or below 0 (equivalent wins when both hold); "
        f"{MAPPING_TEXT[c.claim]}. Needs a config that beats always predicting the majority "
        "class."
    )


def flip_text(c: Comparison) -> str:
    if c.verdict == crossfit.NOT_TESTABLE:
        return "A config beating always predicting the majority class would make it testable."
    ci95 = f"[{_f(c.low)}, {_f(c.high)}]"
    ci90 = f"[{_f(c.low90)}, {_f(c.high90)}]"
    m = f"{c.margin:g}"
    if c.verdict == crossfit.EQUIVALENT:
        return f"Not equivalent if the 90% CI {ci90} reached ±{m}."
    if c.verdict == crossfit.BETTER:
        return (
            f"Inconclusive if the 95% CI's lower end ({_f(c.low)}) reached 0; equivalent if the "
            f"90% CI {ci90} fell inside ±{m}."
        )
    if c.verdict == crossfit.WORSE:
        return (
            f"Inconclusive if the 95% CI's upper end ({_f(c.high)}) reached 0; equivalent if "
            f"the 90% CI {ci90} fell inside ±{m}."
        )
    needed = f"; about {c.images_needed} images would decide it" if c.images_needed else ""
    return (
        f"Decided once the 95% CI {ci95} excludes 0 or the 90% CI {ci90} fits inside ±{m}: "
        f"this data could detect differences of {_f(c.min_detectable)} or more{needed}."
    )


def why_text(c: Comparison) -> str:
    """Why a comparison decides nothing ('' when it decides)."""
    if c.verdict == crossfit.NOT_TESTABLE:
        return c.note or NOT_GUESSING
    if c.verdict != crossfit.INCONCLUSIVE:
        return ""
    needed = f"; about {c.images_needed} images would decide it" if c.images_needed else ""
    note = f" ({c.note})" if c.note and "repeats" in c.note else ""
    return (
        f"{c.name}: the interval is too wide for ±{c.margin:g}; the smallest difference this "
        f"data could detect is {_f(c.min_detectable)}{needed}{note}"
    )


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


def _effect(claim, question, main: Comparison, comparisons, numbers=None, rule="") -> Finding:
    verdict = claim_verdict(main.claim, main.verdict)
    return Finding(
        claim,
        EFFECT,
        question,
        verdict,
        rule=rule + rule_text(main),
        flip=flip_text(main),
        numbers={**_numbers(main), **(numbers or {})},
        comparisons=comparisons,
        reason=why_text(main),
    )


def judge_c1(s: SweepSummary, evidence: EvidenceSpec, units=(512, 1024)) -> list[Finding]:
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
    name = "end only vs every layer, rate 0.5"
    comparisons = compare_on_scores(
        s, every, end, evidence, claim=AT_LEAST_AS_GOOD, name=name, units=units
    )
    for row in s.configs:  # full grids: the other rates, for context
        other = s.config(row.rate, "after_both")
        if row.placement == "after_dense2" and row.rate != 0.5 and other is not None:
            comparisons.append(
                compare_configs(
                    s,
                    other,
                    row,
                    evidence.metric,
                    evidence,
                    claim=AT_LEAST_AS_GOOD,
                    name=f"end only vs every layer, rate {row.rate:g}",
                    units=units,
                    deciding=False,
                )
            )
    return [_effect("C1", question, comparisons[0], comparisons), practice]


def judge_c4(
    s: SweepSummary,
    evidence: EvidenceSpec,
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
        f"On this data, is {label(grid.EVERY_LAYER, units)} at least as good as the best "
        "other config (compared with every other one: none is picked on the data that "
        "judges it)?"
    )
    candidate = s.config(*grid.EVERY_LAYER)
    others = [c for c in s.configs if c is not candidate]
    if candidate is None or not others:
        return [_missing("C4", question, "a rate-0.5 cell after both and another config"), history]
    pairs = [
        compare_configs(
            s,
            other,
            candidate,
            evidence.metric,
            evidence,
            claim=AT_LEAST_AS_GOOD,
            name=f"p=0.5 every FC layer vs {label(other, units)}",
            units=units,
        )
        for other in others
    ]
    verdicts = [c.verdict for c in pairs]
    # A refutation needs a "worse" that survives Holm's correction over the comparisons.
    p_values = [1.0 if c.p_value is None else c.p_value for c in pairs]
    adjusted = holm_adjust(p_values)
    refuting = [
        c
        for c, p in zip(pairs, adjusted, strict=True)
        if c.verdict == crossfit.WORSE and p < crossfit.ALPHA
    ]
    if crossfit.NOT_TESTABLE in verdicts:
        verdict = NOT_TESTABLE
    elif refuting:
        verdict = REFUTED
    elif all(v in (crossfit.BETTER, crossfit.EQUIVALENT) for v in verdicts):
        verdict = SUPPORTED
    else:
        verdict = INCONCLUSIVE
    worst = min(pairs, key=lambda c: c.low if c.low is not None else -np.inf)
    reasons = [why_text(c) for c in pairs if why_text(c)]
    if verdict == REFUTED:
        reasons = [
            f"{c.name}: worse (95% CI [{_f(c.low)}, {_f(c.high)}], Holm-adjusted p {p:.3g})"
            for c, p in zip(pairs, adjusted, strict=True)
            if c in refuting
        ]
    numbers = {
        **_numbers(worst),
        "closest_other": worst.a,
        "holm_adjusted_p": {c.a: float(p) for c, p in zip(pairs, adjusted, strict=True)},
    }
    effect = Finding(
        "C4",
        EFFECT,
        question,
        verdict,
        rule="Compared with every other config of the sweep, each by the one rule: supported "
        "if at least as good as each (better or equivalent), refuted if worse than one of them "
        "with Holm's correction over the comparisons, otherwise inconclusive. Each: "
        + rule_text(pairs[0]).replace(pairs[0].a, "the other config"),
        flip=f"Against {worst.a}, the closest: {flip_text(worst)}",
        numbers=numbers,
        comparisons=pairs,
        reason="; ".join(dict.fromkeys(reasons)),
    )
    return [effect, history]


def judge_f5(
    s: SweepSummary, evidence: EvidenceSpec, units=(512, 1024), cell=grid.SEED_CELL
) -> list[Finding]:
    """F5 for the dropout `cell` (the run's own head's; the seed's when it has none)."""
    tested, none = s.config(*cell), s.config(*grid.NO_DROPOUT)
    question = (
        f"On this data, does {label(cell, units)} shrink the train - held-out accuracy gap "
        "without costing held-out performance?"
    )
    if tested is None or none is None:
        return [_missing("F5", question, "a no-dropout cell and the tested cell")]
    sizes = s.plan.n / s.folds
    gap = crossfit.compare_folds(
        s.gaps(none),
        s.gaps(tested),
        metric=GAP,
        margin=evidence.accuracy_margin,
        n_test=sizes,
        n_train=s.plan.n - sizes,
        n_images=s.plan.n,
    )
    gap_comparison = _comparison(
        _gated(gap, s),
        name="gap shrinks with dropout",
        a=label(none, units),
        b=label(tested, units),
        claim=BETTER_CLAIM,
        degenerate_pairs=len(s.degenerate_slots(none, tested)),
    )
    scores = compare_on_scores(
        s,
        none,
        tested,
        evidence,
        claim=AT_LEAST_AS_GOOD,
        name="score kept with dropout",
        units=units,
    )
    parts = (gap_comparison, scores[0])
    verdicts = {claim_verdict(c.claim, c.verdict) for c in parts}
    if NOT_TESTABLE in verdicts:
        verdict = NOT_TESTABLE
    elif REFUTED in verdicts:
        verdict = REFUTED
    elif verdicts == {SUPPORTED}:
        verdict = SUPPORTED
    else:
        verdict = INCONCLUSIVE
    if verdict == REFUTED:
        reasons = [
            f"{c.name}: {c.verdict} ({c.unit} {_f(c.difference)} [{_f(c.low)}, {_f(c.high)}])"
            for c in parts
            if claim_verdict(c.claim, c.verdict) == REFUTED
        ]
    else:
        reasons = [why_text(c) for c in parts if why_text(c)]
    numbers = {
        "gap_reduction": gap_comparison.difference,
        "gap_reduction_ci_low": gap_comparison.low,
        "gap_reduction_ci_high": gap_comparison.high,
        "gap_verdict": gap_comparison.verdict,
        "gap_no_dropout": none.gap,
        "gap_dropout": tested.gap,
        "score_metric": scores[0].metric,
        "score_difference": scores[0].difference,
        "score_ci_low": scores[0].low,
        "score_ci_high": scores[0].high,
        "score_verdict": scores[0].verdict,
        "accuracy_margin": evidence.accuracy_margin,
        "score_margin": scores[0].margin,
    }
    return [
        Finding(
            "F5",
            EFFECT,
            question,
            verdict,
            rule="Two parts, supported only if both hold, refuted if either fails. (1) The "
            "train - held-out accuracy gap, one value per training, paired by repeat and fold "
            f"(corrected resampled t), must be better (smaller by more than ±"
            f"{evidence.accuracy_margin:g}): {MAPPING_TEXT[BETTER_CLAIM]}. (2) "
            + rule_text(scores[0]),
            flip=f"(1) {flip_text(gap_comparison)} (2) {flip_text(scores[0])}",
            numbers=numbers,
            comparisons=[gap_comparison, *scores],
            reason="; ".join(dict.fromkeys(r for r in reasons if r)),
        )
    ]


def uncertainty_aurocs(s: SweepSummary) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(errors, MC AUROC, confidence AUROC) per (repeat, fold) of the config F4 tests (the
    held-out errors counted, the AUROCs NaN where a fold has too few of either class); None
    when the sweep ran no MC-dropout passes."""
    if s.tested is None:
        return None
    runs = [r for r in s.runs(s.tested) if r.mc_std is not None]
    if len(runs) != s.repeats * s.folds:
        return None
    labels = s.labels()
    errors = np.zeros((s.repeats, s.folds))
    mc = np.full((s.repeats, s.folds), np.nan)
    confidence = np.full((s.repeats, s.folds), np.nan)
    for r in runs:
        probabilities = np.asarray(r.probabilities)
        wrong = probabilities.argmax(axis=1) != labels[r.held_out]
        errors[r.repeat, r.fold] = wrong.sum()
        if min(wrong.sum(), (~wrong).sum()) >= MIN_ERRORS:
            spread = np.asarray(r.mc_std)
            doubt = 1.0 - probabilities.max(axis=1)
            mc[r.repeat, r.fold] = statistics.auroc(spread[wrong], spread[~wrong])
            confidence[r.repeat, r.fold] = statistics.auroc(doubt[wrong], doubt[~wrong])
    return errors, mc, confidence


def judge_f4_uncertainty(
    s: SweepSummary, evidence: EvidenceSpec, units=(512, 1024), inference=None
) -> Finding:
    """F4's effect: held-out errors carry more MC-dropout spread than the plain confidence
    shows (the baseline any classifier has), by the corrected resampled t over folds."""
    tested = label(s.tested, units) if s.tested else "the tested config"
    question = (
        f"Does MC dropout ({tested}) spot misclassified images better than the plain "
        "confidence does?"
    )
    rule = (
        "AUROC of the MC-dropout std for telling a held-out fold's errors from its correct "
        "images, against the AUROC of 1 - the deterministic confidence, per training, paired "
        f"by repeat and fold (corrected resampled t), margin ±{evidence.auroc_margin:g}: "
        f"{MAPPING_TEXT[BETTER_CLAIM]}. A held-out fold with fewer than {MIN_ERRORS} errors or "
        f"correct images has no AUROC and its pair is left out; needs half of the folds (at "
        f"least {MIN_FOLDS}) and a config that beats guessing."
    )
    context = _main_head_numbers(inference)

    def not_testable(flip: str, numbers: dict, reason: str) -> Finding:
        return Finding(
            "F4",
            EFFECT,
            question,
            NOT_TESTABLE,
            rule=rule,
            flip=flip,
            numbers=numbers,
            reason=reason,
        )

    aurocs = uncertainty_aurocs(s)
    if aurocs is None:
        return not_testable(
            "A sweep with MC-dropout passes (--mc-passes > 0) would decide it.",
            context,
            "the sweep ran no MC-dropout passes",
        )
    errors, mc, confidence = aurocs
    numbers = {
        "held_out_errors": int(errors.sum()),
        "fewest_errors_in_a_fold": int(errors.min()),
        "predictions": int(s.repeats * s.plan.n),
        **context,
    }
    usable = int(np.isfinite(mc).sum())
    if mc.size < MIN_FOLDS:
        return not_testable(
            f"A sweep of at least {MIN_FOLDS} trainings per config (repeats x folds).",
            numbers,
            f"the sweep has {mc.size} trainings per config, fewer than {MIN_FOLDS}",
        )
    if usable < max(MIN_FOLDS, mc.size // 2):
        rate = errors.sum() / (s.repeats * s.plan.n)
        wanted = int(np.ceil(2 * MIN_ERRORS * s.folds / rate)) if rate > 0 else None
        more = f"; about {wanted} images at this error rate would give enough" if wanted else ""
        return not_testable(
            f"At least {MIN_ERRORS} errors in most held-out folds{more}.",
            numbers,
            f"too few errors to test: {int(errors.sum())} held-out errors over "
            f"{s.repeats} repeats; {usable} of {mc.size} held-out folds have at least "
            f"{MIN_ERRORS} errors and {MIN_ERRORS} correct images (needs half of them and at "
            f"least {MIN_FOLDS}){more}",
        )
    sizes = s.plan.n / s.folds
    r = crossfit.compare_folds(
        confidence,
        mc,
        metric=AUROC,
        margin=evidence.auroc_margin,
        n_test=sizes,
        n_train=s.plan.n - sizes,
        n_images=s.plan.n,
    )
    c = _comparison(
        _gated(r, s),
        name="MC-dropout std vs plain confidence",
        a="1 - confidence",
        b="MC-dropout std",
        claim=BETTER_CLAIM,
        lost_pairs=int(mc.size - usable),
    )
    numbers.update(
        {
            "auroc_mc": float(np.nanmean(mc)),
            "auroc_confidence": float(np.nanmean(confidence)),
            **_numbers(c),
        }
    )
    return Finding(
        "F4",
        EFFECT,
        question,
        claim_verdict(c.claim, c.verdict),
        rule=rule,
        flip=flip_text(c),
        numbers=numbers,
        comparisons=[c],
        reason=why_text(c),
    )


def _main_head_numbers(inference) -> dict:
    """The run's own head on its MC split, for context (not deciding)."""
    if inference is None:
        return {}
    test, base = inference.uncertainty, inference.baseline
    return {
        "main_head_errors": inference.errors,
        "main_head_images": inference.images,
        "main_head_auroc_mc": test.auroc,
        "main_head_auroc_confidence": base.auroc,
    }


def judge_c2_performance(
    s: SweepSummary, evidence: EvidenceSpec, units=(512, 1024), relu_identical: bool = True
) -> Finding:
    """C2's performance half: the seed's Dropout before and after Dense(1024)'s ReLU."""
    question = (
        "Does the order (dropout before or after the activation) change how well this ReLU "
        "head learns?"
    )
    rule = (
        f"{label(grid.SEED_CELL, units)} trained twice from the same seed on the same fold "
        "(repeat 0, fold 0), once with the Dropout after the ReLU and once before it, and "
        f"compared on the held-out images' {METRIC_NAMES[evidence.metric]} (one split: a "
        f"paired t over images), margin ±{evidence.margin(evidence.metric):g}: "
        f"{MAPPING_TEXT[SAME]}. Sigmoid and tanh heads are not trained."
    )
    after = next(
        (r for r in s.runs(grid.SEED_CELL) if (r.repeat, r.fold) == (0, 0)),
        None,
    )
    before = s.order_check[0] if s.order_check else None
    if after is None or before is None:
        return Finding(
            "C2",
            EFFECT,
            question,
            NOT_TESTABLE,
            rule=rule,
            flip="A sweep with its order check on would decide it.",
            reason="the sweep did not train the seed's config with the other order",
        )
    labels = s.labels()
    outcome = {
        name: crossfit.image_outcomes(np.asarray(run.probabilities), labels[run.held_out])[
            evidence.metric
        ]
        for name, run in (("after", after), ("before", before))
    }
    r = crossfit.compare_single_split(
        outcome["after"],
        outcome["before"],
        evidence.metric,
        margin=evidence.margin(evidence.metric),
    )
    c = _comparison(
        _gated(r, s),
        name="Dropout before vs after the ReLU",
        a="after the ReLU",
        b="before the ReLU",
        claim=SAME,
    )
    identical = np.array_equal(np.asarray(after.probabilities), np.asarray(before.probabilities))
    numbers = {**_numbers(c), "identical_predictions": identical, "relu_identical": relu_identical}
    return Finding(
        "C2",
        EFFECT,
        question,
        claim_verdict(SAME, c.verdict),
        rule=rule,
        flip=flip_text(c),
        numbers=numbers,
        comparisons=[c],
        reason=why_text(c),
    )
