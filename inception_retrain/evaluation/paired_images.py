"""Two models on the same images: their paired per-image difference, its interval, a verdict.

    >>> result = compare_per_image(correct_tuned, correct_head, margin=0.02, binary=True)
    >>> result.verdict, result.interval.text()
    ('inconclusive', '0.025 [-0.021, 0.071]')

Each image gives one difference, a_i - b_i, oriented so that positive means `a` did better
(`lower_is_better=True` flips it for a loss such as the per-image log loss); the estimate is
their mean, with a two-sided interval at `confidence` (95%):

  * scores (`binary=False`, e.g. per-image log loss): Student's t interval of the mean
    difference (`statistics.mean_interval`; the unit is the image);
  * correctness (`binary=True`, 0/1 per image): the difference of two paired proportions,
    which only the discordant images move (`a_only`: right by `a` alone, `b_only`: by `b`
    alone); Bonett and Price's adjusted Wald interval (2012: one added to each discordant
    count, two to n), whose coverage stays near nominal even with few or no discordant
    images, where the plain Wald interval collapses to a point.

The verdict, with `margin` (fixed before the data are seen), in this order:

    the interval lies above 0                  -> "better"
    the interval lies below 0                  -> "worse"
    it lies inside (-margin, +margin)          -> "equivalent" (within ± margin)
    otherwise                                  -> "inconclusive"

So a difference shown to exist is never called equivalent, however small, and a tie is never
support for "better". One training per model: the interval covers the test images' sampling
only, not the variance between training seeds (tests/test_paired_images.py measures the
false-alarm rate under no difference and the power on a planted one by simulation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from inception_retrain.evaluation.statistics import CONFIDENCE, Interval, mean_interval

BETTER, EQUIVALENT, WORSE, INCONCLUSIVE = "better", "equivalent", "worse", "inconclusive"
VERDICTS = (BETTER, EQUIVALENT, WORSE, INCONCLUSIVE)


@dataclass(frozen=True)
class PerImageComparison:
    """`a` against `b` on the same images (see the module docstring)."""

    n: int
    mean_a: float | None
    mean_b: float | None
    interval: Interval  # of the mean difference, positive = `a` better
    margin: float
    verdict: str
    method: str
    lower_is_better: bool
    a_only: int | None = None  # binary: images only `a` got right
    b_only: int | None = None  # binary: images only `b` got right

    @property
    def estimate(self) -> float | None:
        return self.interval.estimate

    def as_dict(self) -> dict:
        return {
            "n": self.n,
            "mean_a": self.mean_a,
            "mean_b": self.mean_b,
            "difference": self.interval.estimate,
            "low": self.interval.low if self.interval.bounded else None,
            "high": self.interval.high if self.interval.bounded else None,
            "confidence": self.interval.confidence,
            "margin": self.margin,
            "verdict": self.verdict,
            "method": self.method,
            "lower_is_better": self.lower_is_better,
            "a_only": self.a_only,
            "b_only": self.b_only,
        }


def verdict(interval: Interval, margin: float) -> str:
    """The rule of the module docstring on an interval of "a - b, positive = a better"."""
    if not interval.bounded:
        return INCONCLUSIVE
    if interval.low > 0:
        return BETTER
    if interval.high < 0:
        return WORSE
    if -margin < interval.low and interval.high < margin:
        return EQUIVALENT
    return INCONCLUSIVE


def paired_proportion_interval(
    a_only: int, b_only: int, n: int, confidence: float = CONFIDENCE
) -> Interval:
    """Bonett-Price adjusted Wald interval of p(a right) - p(b right) on n paired images."""
    if n == 0:
        return Interval(None, -math.inf, math.inf, confidence, "adjusted Wald (paired)")
    estimate = (a_only - b_only) / n
    p_a, p_b = (a_only + 1) / (n + 2), (b_only + 1) / (n + 2)
    centre = p_a - p_b
    se = math.sqrt(max(p_a + p_b - centre**2, 0.0) / (n + 2))
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    low, high = max(centre - z * se, -1.0), min(centre + z * se, 1.0)
    return Interval(estimate, low, high, confidence, "adjusted Wald (paired)")


def compare_per_image(
    a,
    b,
    margin: float,
    *,
    binary: bool = False,
    lower_is_better: bool = False,
    confidence: float = CONFIDENCE,
) -> PerImageComparison:
    """Per-image values of `a` and `b` (the same images, in the same order) compared."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"a and b must score the same images: {a.size} vs {b.size} values")
    if margin < 0:
        raise ValueError("the margin must be >= 0")
    n = int(a.size)
    means = (float(a.mean()), float(b.mean())) if n else (None, None)
    a_only = b_only = None
    if binary:
        if not np.isin(a, (0.0, 1.0)).all() or not np.isin(b, (0.0, 1.0)).all():
            raise ValueError("binary comparisons take 0/1 values per image")
        a_only, b_only = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
        if lower_is_better:
            a_only, b_only = b_only, a_only
        interval = paired_proportion_interval(a_only, b_only, n, confidence)
        method = interval.method
    else:
        differences = (b - a) if lower_is_better else (a - b)
        interval = mean_interval(differences, confidence)
        method = "t (per-image differences)"
    return PerImageComparison(
        n=n,
        mean_a=means[0],
        mean_b=means[1],
        interval=interval,
        margin=float(margin),
        verdict=verdict(interval, margin),
        method=method,
        lower_is_better=lower_is_better,
        a_only=a_only,
        b_only=b_only,
    )
