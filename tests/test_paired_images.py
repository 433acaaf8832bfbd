"""The paired per-image comparison (evaluation/paired_images.py: crossfit's one-split comparison
and its verdict rule), calibrated by simulation.

Two models scored on the same test images: the verdict must rarely claim a difference that is
not there (false alarms under the null, at most about 5% for a 95% interval), find a planted one
(power), call identical-enough models equivalent, and call a model equivalent whose true
difference is the margin at most at the two one-sided tests' 5% level. Each scenario is
simulated 1,000 times; the thresholds leave room for the simulation's own error (a 5% rate
measured over 1,000 draws has a standard error of 0.7%).
"""

from __future__ import annotations

import numpy as np
import pytest

from inception_retrain.evaluation import crossfit
from inception_retrain.evaluation.paired_images import (
    A_BETTER,
    BETTER,
    EQUIVALENT,
    INCONCLUSIVE,
    WORSE,
    compare_per_image,
)

REPS = 1000


def _correctness(rng, n: int, both: float, a_only: float, b_only: float):
    """0/1 per image for models a and b: both right with probability `both`, only a right
    with `a_only`, only b with `b_only` (the rest: both wrong)."""
    u = rng.random(n)
    a = u < both + a_only
    b = (u < both) | ((u >= both + a_only) & (u < both + a_only + b_only))
    return a.astype(float), b.astype(float)


def _verdicts(draw, margin: float, **options) -> dict[str, float]:
    rng = np.random.default_rng(20)
    counts = dict.fromkeys((BETTER, EQUIVALENT, WORSE, INCONCLUSIVE), 0)
    for _ in range(REPS):
        a, b = draw(rng)
        counts[compare_per_image(a, b, margin, **options).verdict] += 1
    return {verdict: count / REPS for verdict, count in counts.items()}


@pytest.mark.parametrize(
    ("n", "discordant"), [(20, 0.3), (50, 0.6), (200, 0.1), (200, 0.3), (1000, 0.05)]
)
def test_correctness_false_alarms_stay_near_five_percent(n, discordant):
    """Same accuracy (discordant images split evenly): 'better' or 'worse' is a false alarm."""
    rates = _verdicts(
        lambda rng: _correctness(rng, n, 0.9 - discordant, discordant / 2, discordant / 2),
        margin=0.02,
        binary=True,
    )
    assert rates[BETTER] + rates[WORSE] <= 0.07, rates


def test_correctness_finds_a_planted_improvement():
    """A model right on 10% more of 400 images: found nearly always, never called worse."""
    rates = _verdicts(lambda rng: _correctness(rng, 400, 0.7, 0.13, 0.03), 0.02, binary=True)
    assert rates[BETTER] >= 0.95 and rates[WORSE] == 0.0, rates
    flipped = _verdicts(lambda rng: _correctness(rng, 400, 0.7, 0.03, 0.13), 0.02, binary=True)
    assert flipped[WORSE] >= 0.95 and flipped[BETTER] == 0.0, flipped


def test_equivalence_needs_a_tight_interval_and_never_covers_a_difference_of_the_margin():
    same = _verdicts(lambda rng: _correctness(rng, 2000, 0.85, 0.01, 0.01), 0.05, binary=True)
    assert same[EQUIVALENT] >= 0.9, same
    at_margin = _verdicts(lambda rng: _correctness(rng, 1000, 0.8, 0.075, 0.025), 0.05, binary=True)
    # TOST's nominal rate at the margin is 5%; 0.065 leaves two simulation standard errors
    assert at_margin[EQUIVALENT] <= 0.065, at_margin
    few = _verdicts(lambda rng: _correctness(rng, 30, 0.85, 0.0, 0.0), 0.02, binary=True)
    assert few[INCONCLUSIVE] == 1.0, few  # 30 identical answers cannot show ± 2 points


def _log_losses(rng, n: int, shift: float):
    """Heavy-tailed per-image log losses (log-normal, as confident mistakes make them) of b,
    and of a: the same images' losses, with noise of their own, lowered by `shift`."""
    base = rng.lognormal(-1.5, 1.2, n)
    noise = rng.lognormal(-1.5, 1.2, n) - rng.lognormal(-1.5, 1.2, n)
    return base + 0.5 * noise - shift, base


@pytest.mark.parametrize("n", [20, 50, 200])
def test_log_loss_false_alarms_stay_near_five_percent(n):
    rates = _verdicts(lambda rng: _log_losses(rng, n, 0.0), 0.02, lower_is_better=True)
    assert rates[BETTER] + rates[WORSE] <= 0.07, rates


def test_log_loss_finds_a_planted_improvement_and_its_sign():
    rates = _verdicts(lambda rng: _log_losses(rng, 400, 0.1), 0.02, lower_is_better=True)
    assert rates[BETTER] >= 0.9 and rates[WORSE] == 0.0, rates
    worse = _verdicts(lambda rng: _log_losses(rng, 400, -0.1), 0.02, lower_is_better=True)
    assert worse[WORSE] >= 0.9 and worse[BETTER] == 0.0, worse


def test_the_interval_counts_only_discordant_images_and_stays_open_without_them():
    a = np.array([1, 1, 0, 0, 1, 1, 1, 0], float)
    b = np.array([1, 0, 1, 0, 1, 0, 1, 0], float)
    result = compare_per_image(a, b, 0.02, binary=True)
    assert (result.a_only, result.b_only, result.n) == (2, 1, 8)
    assert result.estimate == pytest.approx(1 / 8)
    assert result.low < 0 < result.high and result.verdict == INCONCLUSIVE
    # concordant images move nothing: the same discordant pairs among more agreeing images
    padded = compare_per_image(np.r_[a, np.ones(8)], np.r_[b, np.ones(8)], 0.02, binary=True)
    assert (padded.a_only, padded.b_only) == (2, 1) and padded.estimate == pytest.approx(1 / 16)
    same = np.ones(100)
    none = compare_per_image(same, same, 0.02, binary=True)
    assert none.estimate == 0 and none.low < 0 < none.high  # not collapsed to a point


def test_it_is_the_engines_one_split_comparison_seen_from_a():
    """One engine: the interval, verdict and direction are crossfit.compare_single_split's
    with the roles swapped, and the verdict rule is crossfit.verdict_of (equivalent wins)."""
    rng = np.random.default_rng(4)
    a, b = _correctness(rng, 3000, 0.8, 0.05, 0.03)
    mine = compare_per_image(a, b, 0.05, binary=True)
    engine = crossfit.compare_single_split(b, a, "accuracy", margin=0.05)
    assert (mine.low, mine.high, mine.verdict) == (*engine.ci95, engine.verdict)
    assert mine.verdict == EQUIVALENT and mine.direction == A_BETTER  # real, but under the margin
    losses = _log_losses(rng, 300, 0.1)
    mine = compare_per_image(*losses, 0.02, lower_is_better=True)
    engine = crossfit.compare_single_split(losses[1], losses[0], "log_loss", margin=0.02)
    assert mine.difference == pytest.approx(engine.difference) and mine.verdict == BETTER
    assert mine.as_dict()["method"].startswith("paired t over images")


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="same images"):
        compare_per_image([1.0, 0.0], [1.0], 0.1, binary=True)
    with pytest.raises(ValueError, match="0/1"):
        compare_per_image([0.5], [1.0], 0.1, binary=True)
    with pytest.raises(ValueError, match="margin"):
        compare_per_image([1.0, 0.0], [1.0, 1.0], 0.0, binary=True)
    assert compare_per_image([], [], 0.1).verdict == INCONCLUSIVE
    assert compare_per_image([1.0], [0.0], 0.1, binary=True).verdict == INCONCLUSIVE
