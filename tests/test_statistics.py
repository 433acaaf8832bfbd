"""`inception_retrain.evaluation.statistics` on data built so that the answer is known.

Intervals are checked against scipy's own t test and by coverage over many simulated
experiments; the decision rule on intervals that lie clearly above, below or across its
threshold; AUROC against scikit-learn, its permutation test by its false-alarm rate on scores
that carry no signal, and its intervals on scores that do.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from inception_retrain.evaluation import statistics as st


def test_paired_t_interval_matches_scipy_and_d_z():
    a = {0: 0.81, 1: 0.84, 2: 0.80, 3: 0.86, 4: 0.83}
    b = {0: 0.78, 1: 0.80, 2: 0.79, 3: 0.80, 4: 0.82, 9: 0.5}  # seed 9 has no partner
    diff = st.paired_difference(a, b)
    assert diff.keys == (0, 1, 2, 3, 4) and diff.n == 5
    reference = stats.ttest_rel(list(a.values()), [b[k] for k in a]).confidence_interval(0.95)
    assert diff.interval.low == pytest.approx(reference.low)
    assert diff.interval.high == pytest.approx(reference.high)
    differences = np.subtract(list(a.values()), [b[k] for k in a])
    assert diff.mean == pytest.approx(differences.mean())
    assert diff.effect_size == pytest.approx(differences.mean() / differences.std(ddof=1))


def test_t_interval_covers_the_true_difference_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    true_difference, covered, experiments = 0.03, 0, 4000
    for _ in range(experiments):
        seed_effect = rng.normal(0.8, 0.05, size=5)  # shared by both configs of a seed
        a = seed_effect + true_difference + rng.normal(0, 0.02, size=5)
        b = seed_effect + rng.normal(0, 0.02, size=5)
        interval = st.paired_difference(a, b).interval
        covered += interval.low <= true_difference <= interval.high
    assert abs(covered / experiments - 0.95) < 0.015


def test_the_one_rule_above_below_across():
    margin = 0.05
    better = st.threshold_for(st.BETTER, margin)
    at_least = st.threshold_for(st.AT_LEAST_AS_GOOD, margin)
    assert (better, at_least) == (0.0, -0.05)
    clearly_up = st.paired_difference([0.90, 0.91, 0.92, 0.90, 0.91], [0.80, 0.80, 0.81, 0.79, 0.8])
    assert st.decide(clearly_up.interval, better).outcome == st.HOLDS
    assert st.decide(clearly_up.interval, at_least).outcome == st.HOLDS
    clearly_down = st.paired_difference([0.70, 0.71, 0.70, 0.69, 0.7], [0.80, 0.81, 0.8, 0.8, 0.8])
    assert st.decide(clearly_down.interval, better).outcome == st.FAILS
    assert st.decide(clearly_down.interval, at_least).outcome == st.FAILS
    noisy = st.paired_difference([0.9, 0.7, 0.85, 0.6, 0.8], [0.7, 0.9, 0.6, 0.85, 0.8])
    assert st.decide(noisy.interval, better).outcome == st.INCONCLUSIVE
    assert st.decide(noisy.interval, at_least).outcome == st.INCONCLUSIVE


def test_a_tie_never_supports_better_and_is_within_a_margin():
    tie = st.paired_difference([0.8] * 5, [0.8] * 5)
    assert (tie.interval.low, tie.interval.high) == (0.0, 0.0) and tie.effect_size is None
    assert st.decide(tie.interval, st.threshold_for(st.BETTER, 0.05)).outcome == st.INCONCLUSIVE
    within = st.decide(tie.interval, st.threshold_for(st.AT_LEAST_AS_GOOD, 0.05))
    assert within.outcome == st.HOLDS  # equivalent within the margin: at least as good


def test_one_seed_decides_nothing():
    single = st.paired_difference([0.9], [0.1])
    assert not single.interval.bounded
    for threshold in (-0.05, 0.0, 0.5):
        assert st.decide(single.interval, threshold).outcome == st.INCONCLUSIVE
    assert st.mean_interval([]).estimate is None


def test_beats_a_baseline_only_with_the_whole_interval():
    assert st.beats(st.mean_interval([1, 1, 1, 0, 1, 1, 1, 1, 1, 1] * 5), 0.6)
    assert not st.beats(st.mean_interval([1, 0, 1, 0, 1, 1, 0, 1]), 0.6)
    assert st.beats(st.mean_interval([0, 1]), None)


def test_auroc_is_scikit_learns_with_ties():
    rng = np.random.default_rng(1)
    labels = rng.random(60) < 0.3
    scores = np.round(rng.normal(size=60) + labels, 1)  # rounded: many ties
    assert st.auroc(scores[labels], scores[~labels]) == pytest.approx(roc_auc_score(labels, scores))


def test_permutation_test_false_alarms_about_5_percent_without_signal():
    rng = np.random.default_rng(2)
    p_values = [
        st.auroc_test(rng.random(40) < 0.25, rng.normal(size=40), resamples=499, seed=i).p_value
        for i in range(200)
    ]
    assert 0.02 <= np.mean(np.array(p_values) < 0.05) <= 0.09


def test_auroc_test_and_difference_on_scores_with_signal():
    rng = np.random.default_rng(3)
    labels = rng.random(200) < 0.2
    informative = rng.normal(size=200) + 1.5 * labels
    noise = rng.normal(size=200)
    test = st.auroc_test(labels, informative, resamples=999)
    assert test.p_value < 0.01 and test.interval.low > 0.5
    assert test.interval.low < test.auroc < test.interval.high
    assert (test.positives, test.negatives) == (int(labels.sum()), int((~labels).sum()))
    difference = st.auroc_difference(labels, informative, noise, resamples=999)
    assert difference.low > 0.1
    same = st.auroc_difference(labels, informative, informative, resamples=999)
    assert same.low == same.high == 0.0


def test_auroc_needs_two_of_each_class():
    test = st.auroc_test([True, False, False], [0.9, 0.1, 0.2])
    assert test.auroc == 1.0 and test.p_value is None and not test.interval.bounded
    assert st.auroc_test([False] * 4, [0.1, 0.2, 0.3, 0.4]).auroc is None
    assert math.isinf(st.auroc_difference([1, 0], [0.5, 0.2], [0.1, 0.3]).high)
