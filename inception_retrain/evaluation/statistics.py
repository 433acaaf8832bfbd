"""Statistics for claims about noisy quantities: paired comparisons of trainings over seeds,
confidence intervals, effect sizes, one decision rule, and AUROC with its own tests.

Comparing trainings. Two configurations trained with the same seed share their initial
weights and data order, so their results are compared seed by seed: `paired_difference(a, b)`
takes one value per seed for each (mappings seed -> value; only seeds present in both count)
and returns the differences a - b, their mean with a two-sided t interval (Student's t with
n - 1 degrees of freedom; the unit is the seed), and the effect size d_z = mean / sd of the
differences (Cohen's d for paired data; None when every difference is the same).

Deciding a claim. A claim about a difference d is stated as "d > threshold" and
`decide(interval, threshold)` applies the one rule:

    the interval lies above the threshold        -> HOLDS
    the interval lies below the threshold        -> FAILS
    the interval contains the threshold          -> INCONCLUSIVE (too wide to decide)

`threshold_for(claim, margin)` gives the threshold: 0 for "better" (a real improvement of
any size), -margin for "at least as good" (non-inferiority: worse by less than the margin,
which must be fixed before the data are seen). A tie is therefore never support for "better"
and never a refutation of anything. With fewer than two values an interval is unbounded, so
every decision is INCONCLUSIVE.

Beyond guessing. `mean_interval(values)` is the t interval of a plain mean, e.g. over test
images of each image's correctness averaged over seeds: `beats(interval, baseline)` says
whether it clears a baseline such as always predicting the majority class.

AUROC. `auroc(positives, negatives)` is the Mann-Whitney estimate (ties count one half),
`auroc_test(is_positive, scores)` adds a one-sided permutation p-value (H0: the scores do not
separate the classes, AUROC = 0.5; `scipy.stats.permutation_test`) and a percentile bootstrap
interval that resamples positives and negatives separately (`scipy.stats.bootstrap`); both need
at least two items of each class (else the p-value is None and the interval unbounded), and
`auroc_difference(is_positive, a, b)` the paired bootstrap interval of AUROC(a) - AUROC(b)
on the same items.

    diff = paired_difference({0: 0.81, 1: 0.84, 2: 0.80}, {0: 0.78, 1: 0.80, 2: 0.79})
    decision = decide(diff.interval, threshold_for(AT_LEAST_AS_GOOD, margin=0.05))
    decision.outcome                       # HOLDS: worse by less than 0.05 at 95% confidence
    test = auroc_test(errors, uncertainty)  # test.auroc, test.interval, test.p_value
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"
BETTER, AT_LEAST_AS_GOOD = "better", "at least as good"
RESAMPLES = 9999  # permutation and bootstrap resamples (scipy's default)


@dataclass(frozen=True)
class Interval:
    """An estimate with a two-sided confidence interval; unbounded when it cannot be formed."""

    estimate: float | None
    low: float
    high: float
    confidence: float = CONFIDENCE
    method: str = "t"

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def text(self, digits: int = 3) -> str:
        """E.g. '0.042 [0.011, 0.073]' (the bounds as 'n/a' when unbounded)."""
        if self.estimate is None:
            return "n/a"
        bounds = f"[{self.low:.{digits}f}, {self.high:.{digits}f}]" if self.bounded else "[n/a]"
        return f"{self.estimate:.{digits}f} {bounds}"


def _t_bounds(mean: float, sd: float, n: int, confidence: float) -> tuple[float, float]:
    if n < 2:
        return -math.inf, math.inf
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return mean - half, mean + half


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean of `values` with its t interval (unbounded for fewer than two values)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0:
        return Interval(None, -math.inf, math.inf, confidence)
    mean = float(values.mean())
    sd = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return Interval(mean, *_t_bounds(mean, sd, values.size, confidence), confidence)


def beats(interval: Interval, baseline: float | None) -> bool:
    """True when the whole interval lies above `baseline` (None: nothing to beat)."""
    return baseline is None or (interval.bounded and interval.low > baseline)


@dataclass(frozen=True)
class PairedDifference:
    """a - b per key (seed), with the mean's t interval and the effect size d_z."""

    keys: tuple
    a: tuple[float, ...]
    b: tuple[float, ...]
    interval: Interval
    sd: float | None
    effect_size: float | None

    @property
    def n(self) -> int:
        return len(self.keys)

    @property
    def differences(self) -> tuple[float, ...]:
        return tuple(x - y for x, y in zip(self.a, self.b, strict=True))

    @property
    def mean(self) -> float | None:
        return self.interval.estimate


def paired_difference(
    a: Mapping | Sequence[float], b: Mapping | Sequence[float], confidence: float = CONFIDENCE
) -> PairedDifference:
    """Pair `a` and `b` by key (mappings) or position (sequences) and summarise a - b."""
    if not isinstance(a, Mapping):
        a = dict(enumerate(a))
    if not isinstance(b, Mapping):
        b = dict(enumerate(b))
    keys = tuple(key for key in a if key in b)
    xs = tuple(float(a[key]) for key in keys)
    ys = tuple(float(b[key]) for key in keys)
    differences = np.subtract(xs, ys, dtype=np.float64)
    interval = mean_interval(differences, confidence)
    sd = float(differences.std(ddof=1)) if len(keys) > 1 else None
    effect = None
    if sd:
        effect = float(differences.mean() / sd)
    return PairedDifference(keys, xs, ys, interval, sd, effect)


def threshold_for(claim: str, margin: float) -> float:
    """The threshold a difference must clear: 0 for BETTER, -margin for AT_LEAST_AS_GOOD."""
    if claim == BETTER:
        return 0.0
    if claim == AT_LEAST_AS_GOOD:
        if margin < 0:
            raise ValueError("the equivalence margin must be >= 0")
        return -float(margin)
    raise ValueError(f"unknown claim {claim!r}")


@dataclass(frozen=True)
class Decision:
    """The one rule's outcome for "difference > threshold" on `interval`."""

    outcome: str  # HOLDS, FAILS or INCONCLUSIVE
    threshold: float
    interval: Interval


def decide(interval: Interval, threshold: float) -> Decision:
    """HOLDS if the interval lies above `threshold`, FAILS if below, else INCONCLUSIVE."""
    if interval.bounded and interval.low > threshold:
        return Decision(HOLDS, threshold, interval)
    if interval.bounded and interval.high < threshold:
        return Decision(FAILS, threshold, interval)
    return Decision(INCONCLUSIVE, threshold, interval)


# --- AUROC -------------------------------------------------------------------------------


def auroc(positives, negatives, axis: int = -1):
    """P(score of a positive > score of a negative) + half the ties, along `axis`."""
    positives, negatives = np.asarray(positives, np.float64), np.asarray(negatives, np.float64)
    n_pos, n_neg = positives.shape[axis], negatives.shape[axis]
    ranks = stats.rankdata(np.concatenate([positives, negatives], axis=axis), axis=axis)
    rank_sum = np.take(ranks, np.arange(n_pos), axis=axis).sum(axis=axis)
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


@dataclass(frozen=True)
class AurocTest:
    """AUROC of `scores` for telling positives from negatives, with its uncertainty."""

    auroc: float | None
    interval: Interval  # percentile bootstrap, positives and negatives resampled apart
    p_value: float | None  # one-sided permutation test of AUROC = 0.5 against > 0.5
    positives: int
    negatives: int


def _split(is_positive, scores) -> tuple[np.ndarray, np.ndarray]:
    is_positive = np.asarray(is_positive, dtype=bool).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    return scores[is_positive], scores[~is_positive]


def _bootstrap(samples, statistic, confidence: float, resamples: int, seed: int) -> Interval:
    estimate = float(statistic(*samples, axis=-1))
    if min(len(sample) for sample in samples) < 2:  # nothing to resample
        return Interval(estimate, -math.inf, math.inf, confidence, "bootstrap percentile")
    result = stats.bootstrap(
        samples,
        statistic,
        n_resamples=resamples,
        vectorized=True,
        axis=-1,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    return Interval(estimate, float(low), float(high), confidence, "bootstrap percentile")


def auroc_test(
    is_positive,
    scores,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> AurocTest:
    """AUROC with bootstrap interval and permutation p-value (None without both classes)."""
    positives, negatives = _split(is_positive, scores)
    if min(len(positives), len(negatives)) < 2:  # too few of a class to resample or permute
        value = float(auroc(positives, negatives)) if len(positives) and len(negatives) else None
        unbounded = Interval(value, -math.inf, math.inf, confidence, "bootstrap percentile")
        return AurocTest(value, unbounded, None, len(positives), len(negatives))
    interval = _bootstrap((positives, negatives), auroc, confidence, resamples, seed)
    permuted = stats.permutation_test(
        (positives, negatives),
        auroc,
        permutation_type="independent",
        vectorized=True,
        n_resamples=resamples,
        alternative="greater",
        axis=-1,
        rng=np.random.default_rng(seed),
    )
    return AurocTest(
        interval.estimate, interval, float(permuted.pvalue), len(positives), len(negatives)
    )


def auroc_difference(
    is_positive,
    scores_a,
    scores_b,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Interval:
    """AUROC(a) - AUROC(b) on the same items, with a paired bootstrap interval (the same
    resampled items score both; positives and negatives resampled apart)."""
    is_positive = np.asarray(is_positive, dtype=bool).reshape(-1)
    a = np.asarray(scores_a, np.float64).reshape(-1)
    b = np.asarray(scores_b, np.float64).reshape(-1)
    pos, neg = np.flatnonzero(is_positive), np.flatnonzero(~is_positive)
    if len(pos) == 0 or len(neg) == 0:
        return Interval(None, -math.inf, math.inf, confidence, "bootstrap percentile")

    def difference(p, n, axis=-1):
        return auroc(a[p], a[n], axis) - auroc(b[p], b[n], axis)

    return _bootstrap((pos, neg), difference, confidence, resamples, seed)
