"""The comparison engine (`evaluation.crossfit`): formulas, signs, the verdict rule, sizes for
inconclusive results, ranges, the majority baseline and its gate, and the one-split case.

Its calibration on real tiny trainings is tests/test_evidence_calibration.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from inception_retrain.evaluation import crossfit as cf


def folds_for(repeats, n, k, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(np.arange(n) % k) for _ in range(repeats)])


def test_nadeau_bengio_formula():
    repeats, n, k = 2, 100, 5
    folds = folds_for(repeats, n, k)
    rng = np.random.default_rng(1)
    a = rng.random((repeats, n))
    b = a + rng.normal(-0.1, 0.3, (repeats, n))
    r = cf.compare_crossfit(a, b, folds, "brier", margin=0.034)  # Brier: difference = a - b
    d = a - b
    m = np.array([[d[i, folds[i] == j].mean() for j in range(k)] for i in range(repeats)])
    se = math.sqrt((1 / m.size + 20 / 80) * m.var(ddof=1))
    assert r.difference == pytest.approx(m.mean()) and r.se == pytest.approx(se)
    assert r.df == m.size - 1 and r.test == "nadeau_bengio"
    q = stats.t.ppf(0.975, m.size - 1)
    assert r.ci95 == pytest.approx((m.mean() - q * se, m.mean() + q * se))
    q90 = stats.t.ppf(0.95, m.size - 1)
    assert r.ci90 == pytest.approx((m.mean() - q90 * se, m.mean() + q90 * se))
    expected = (stats.t.ppf(0.975, r.df) + stats.t.ppf(0.8, r.df)) * r.se
    assert r.min_detectable == pytest.approx(expected)
    np.testing.assert_allclose(r.fold_differences, m)
    assert r.image_differences == pytest.approx(d.mean(axis=0).tolist())
    assert r.design == "2x5 cross-fit" and (r.n_test, r.n_train) == (20, 80)


def test_signs_favour_b():
    folds = folds_for(2, 200, 5)
    rng = np.random.default_rng(2)
    loss = rng.uniform(0.5, 1.0, (2, 200))
    r = cf.compare_crossfit(loss, loss - 0.3, folds, "log_loss", margin=0.1)
    assert r.difference == pytest.approx(0.3) and r.verdict == cf.BETTER
    assert r.direction == cf.B_BETTER and r.unit == "log loss A - B (nats)"
    a = (rng.random((2, 358)) < 0.6).astype(float)
    b = np.where(rng.random((2, 358)) < 0.5, 1.0, a)  # B fixes half of A's errors
    folds = folds_for(2, 358, 5)
    assert cf.compare_crossfit(a, b, folds, margin=0.05).verdict == cf.BETTER
    assert cf.compare_crossfit(b, a, folds, margin=0.05).verdict == cf.WORSE


def test_the_verdict_rule_and_equivalence_winning():
    assert cf.verdict_of((0.01, 0.03), (0.012, 0.028), 0.05) == (cf.EQUIVALENT, cf.B_BETTER)
    assert cf.verdict_of((-0.03, -0.01), (-0.028, -0.012), 0.05) == (cf.EQUIVALENT, cf.B_WORSE)
    assert cf.verdict_of((0.01, 0.09), (0.02, 0.08), 0.05) == (cf.BETTER, cf.B_BETTER)
    assert cf.verdict_of((-0.09, -0.01), (-0.08, -0.02), 0.05) == (cf.WORSE, cf.B_WORSE)
    assert cf.verdict_of((-0.04, 0.04), (-0.03, 0.03), 0.05) == (cf.EQUIVALENT, cf.NO_DIRECTION)
    assert cf.verdict_of((-0.08, 0.08), (-0.06, 0.06), 0.05) == (cf.INCONCLUSIVE, cf.NO_DIRECTION)
    # equivalence reads the 90% interval (two one-sided tests at 5%), not the 95% one
    assert cf.verdict_of((-0.055, 0.04), (-0.045, 0.03), 0.05)[0] == cf.EQUIVALENT
    with pytest.raises(ValueError):
        cf.verdict_of((0, 0), (0, 0), 0.0)


def test_identical_outcomes_are_equivalent_with_a_zero_interval():
    folds = folds_for(2, 100, 5)
    a = (np.random.default_rng(3).random((2, 100)) < 0.8).astype(float)
    r = cf.compare_crossfit(a, a.copy(), folds, margin=0.05)
    assert (r.difference, r.ci95, r.verdict, r.p_value) == (0.0, (0.0, 0.0), cf.EQUIVALENT, 1.0)


def test_inconclusive_says_what_would_decide_it():
    folds = folds_for(2, 80, 5)
    rng = np.random.default_rng(4)
    a = (rng.random((2, 80)) < 0.7).astype(float)
    b = (rng.random((2, 80)) < 0.72).astype(float)
    r = cf.compare_crossfit(a, b, folds, margin=0.05)
    assert r.verdict == cf.INCONCLUSIVE and r.min_detectable > abs(r.difference)
    assert r.images_needed > 80 and f"about {r.images_needed} images" in r.summary()
    # with 5 folds the variance cannot fall below n_test/n_train of it: repeats cannot help
    if r.repeats_needed is None:
        assert "only more images" in r.note


def test_intervals_stay_in_range():
    folds = np.stack([np.arange(20) % 2, np.arange(20) % 2])
    a, b = np.zeros((2, 20)), np.zeros((2, 20))
    b[0, folds[0] == 0] = 1  # one fold all right, the other all wrong
    a[1, folds[1] == 1] = 1
    r = cf.compare_crossfit(a, b, folds, margin=0.05)
    assert r.ci95 == (-1.0, 1.0) and -1 <= r.ci90[0] <= r.ci90[1] <= 1
    assert cf.wilson(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert cf.wilson(0, 10)[0] == 0 and cf.wilson(10, 10)[1] == 1
    all_right = cf.accuracy_interval(np.ones((2, 50)), folds_for(2, 50, 5))
    assert all_right.accuracy == 1 and 0 <= all_right.ci95[0] <= all_right.ci95[1] == 1
    correct = (np.random.default_rng(5).random((2, 50)) < 0.9).astype(float)
    interval = cf.accuracy_interval(correct, folds_for(2, 50, 5))
    assert (
        interval.n_effective <= 50
        and 0 < interval.ci95[0] < interval.accuracy < interval.ci95[1] <= 1
    )


def test_image_outcomes():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [0.0, 1.0]])
    labels = np.array([0, 0, 1, 1])
    out = cf.image_outcomes(probabilities, labels)
    assert out["accuracy"].tolist() == [1, 0, 0, 1]  # a tie predicts the lower class
    assert out["brier"] == pytest.approx([0.01, 0.64, 0.25, 0.0])
    assert out["log_loss"] == pytest.approx(
        [-np.log(0.9), -np.log(0.2), -np.log(0.5), -np.log(1 - 1e-7)]
    )
    three = cf.image_outcomes(np.array([[0.2, 0.3, 0.5]]), np.array([2]))
    assert three["brier"] == pytest.approx([0.5 * (0.04 + 0.09 + 0.25)])  # in [0, 1]


def test_per_training_quantities_leave_undefined_pairs_out():
    gap_a = np.array([[0.10, 0.12, 0.11, 0.09, 0.10], [0.11, 0.10, 0.12, 0.10, 0.09]])
    gap_b = gap_a - 0.08
    gap = cf.Metric("gap", False, 1.0, "gap A - B")
    r = cf.compare_folds(gap_a, gap_b, metric=gap, margin=0.05, n_test=20, n_train=80, n_images=100)
    assert r.difference == pytest.approx(0.08) and r.verdict == cf.BETTER
    holes = gap_b.copy()
    holes[0, 1] = np.nan
    r = cf.compare_folds(gap_a, holes, metric=gap, margin=0.05, n_test=20, n_train=80, n_images=100)
    assert r.df == 8 and "1 of 10 pairs left out" in r.note
    with pytest.raises(ValueError):
        cf.compare_folds(
            gap_a,
            np.full_like(gap_a, np.nan),
            metric=gap,
            margin=0.05,
            n_test=20,
            n_train=80,
            n_images=100,
        )


def test_one_split_is_a_paired_t_or_paired_proportions_and_says_what_it_ignores():
    rng = np.random.default_rng(6)
    a = (rng.random(400) < 0.8).astype(float)
    b = np.where(rng.random(400) < 0.5, 1.0, a)
    r = cf.compare_single_split(a, b, "brier", margin=0.05)  # 0/1 as a score: a paired t
    d = a - b  # Brier: lower is better, positive favours B
    assert r.difference == pytest.approx(d.mean())
    assert r.se == pytest.approx(d.std(ddof=1) / 20) and r.df == 399
    assert r.verdict == cf.WORSE and r.design == "one split"  # b is right more often
    assert "variance between training seeds" in r.note
    same = cf.compare_single_split(a, a, "brier", margin=0.034)
    assert same.verdict == cf.EQUIVALENT
    # correctness: paired proportions (Bonett-Price), moved by the discordant images only
    r = cf.compare_single_split(a, b, "accuracy", margin=0.05)
    b_only, a_only = int(((b == 1) & (a == 0)).sum()), int(((a == 1) & (b == 0)).sum())
    assert a_only == 0 and r.difference == pytest.approx((b_only - a_only) / 400)
    assert r.ci95[0] < r.difference < r.ci95[1] and r.verdict == cf.BETTER
    assert r.test == "paired_proportions" and r.design == "one split"
    # no discordant image: the interval stays open (a t over 0/1 differences would be [0, 0])
    few = cf.compare_single_split(a[:30], a[:30], "accuracy", margin=0.02)
    assert few.ci95[0] < 0 < few.ci95[1] and few.verdict == cf.INCONCLUSIVE
    with pytest.raises(ValueError, match="0/1"):
        cf.compare_single_split(a * 0.5, b, "accuracy", margin=0.05)
    with pytest.raises(ValueError):
        cf.compare_single_split(a, b[:10], margin=0.05)


def test_holm_majority_baseline_and_gate():
    assert cf.holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    labels = np.array([1, 1, 1, 0, 0, 1, 0, 1])
    folds = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    # fold 0 is predicted by a model of fold 1 (0,1,0,1: a tie -> 0), fold 1 by fold 0's (1)
    assert cf.majority_correct(labels, folds)[0].tolist() == [0, 0, 0, 1, 0, 1, 0, 1]
    rng = np.random.default_rng(7)
    labels = (rng.random(358) < 0.4).astype(int)
    folds = folds_for(2, 358, 5)
    good = (rng.random((2, 358)) < 0.9).astype(float)
    coin = (rng.random((2, 358)) < 0.5).astype(float)
    checks = {c.learner: c for c in cf.beats_majority({"good": good, "coin": coin}, labels, folds)}
    assert checks["good"].beats and not checks["coin"].beats
    assert checks["good"].p_holm >= checks["good"].p_one_sided
    r = cf.compare_crossfit(coin, good, folds, margin=0.05)
    assert cf.gate(r, list(checks.values())).verdict == cf.BETTER
    guessing = cf.beats_majority({"coin": coin, "other": coin[::-1]}, labels, folds)
    gated = cf.gate(cf.compare_crossfit(coin, coin[::-1], folds, margin=0.05), guessing)
    assert gated.verdict == cf.NOT_TESTABLE and "majority class" in gated.note


def test_input_validation():
    with pytest.raises(ValueError):
        cf.compare_crossfit(np.zeros((2, 10)), np.zeros((2, 11)), np.zeros((2, 10)), margin=0.05)
    bad = np.zeros((2, 10))
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        cf.compare_crossfit(bad, np.zeros((2, 10)), folds_for(2, 10, 2), margin=0.05)
    with pytest.raises(ValueError):
        cf.compare_crossfit(np.zeros((2, 10)), np.zeros((2, 10)), np.zeros((2, 10)), margin=0.05)
    with pytest.raises(KeyError):
        cf.compare_crossfit(
            np.zeros((2, 10)), np.zeros((2, 10)), folds_for(2, 10, 2), "auc", margin=0.05
        )
