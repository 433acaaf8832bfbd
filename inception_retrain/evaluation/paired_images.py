"""Two models on the same images, "is `a` better than `b`?": the crossfit engine's one-split
comparison and its one verdict rule, seen from `a`'s side.

    >>> result = compare_per_image(correct_tuned, correct_head, margin=0.02, binary=True)
    >>> result.verdict, result.difference, (result.low, result.high)
    ('inconclusive', 0.025, (-0.021, 0.071))

Each image gives one difference, oriented so that positive means `a` did better
(`lower_is_better=True` flips it for a loss such as the per-image log loss). The interval and
the verdict are `crossfit.compare_single_split`'s, with `b` as its A and `a` as its B (a
positive difference there favours B): for correctness (`binary=True`, 0/1 per image)
Bonett and Price's adjusted Wald interval of two paired proportions, for scores a paired t
over images; and `crossfit.verdict_of`, the rule of every effect claim in this project:

    the 90% interval lies inside (-margin, +margin)  -> "equivalent" (two one-sided tests)
    else the 95% interval lies above 0               -> "better"
    else it lies below 0                             -> "worse"
    otherwise                                        -> "inconclusive"

The margin is fixed before the data are seen and defines a difference that matters, so a real
but smaller difference is "equivalent", with `direction` saying which side it leans to. One
training per model: the interval covers the test images' sampling only, not the variance
between training seeds (tests/test_paired_images.py measures the false-alarm rate under no
difference and the power on a planted one by simulation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from inception_retrain.evaluation.crossfit import (
    B_BETTER,
    B_WORSE,
    BETTER,
    EQUIVALENT,
    INCONCLUSIVE,
    TESTS,
    WORSE,
    Metric,
    compare_single_split,
)

VERDICTS = (BETTER, EQUIVALENT, WORSE, INCONCLUSIVE)
A_BETTER, A_WORSE = "a better", "a worse"
CONFIDENCE = 0.95


@dataclass(frozen=True)
class PerImageComparison:
    """`a` against `b` on the same images (see the module docstring)."""

    n: int
    mean_a: float | None
    mean_b: float | None
    difference: float | None  # mean of a_i - b_i, positive = `a` better
    low: float | None  # its 95% interval (None: too few images)
    high: float | None
    ci90: tuple[float, float] | None  # the equivalence (TOST) interval
    margin: float
    verdict: str
    direction: str  # "a better", "a worse" or "none": the sign the 95% interval is sure of
    method: str
    lower_is_better: bool
    a_only: int | None = None  # binary: images only `a` got right
    b_only: int | None = None  # binary: images only `b` got right

    @property
    def estimate(self) -> float | None:
        return self.difference

    def as_dict(self) -> dict:
        return {
            "n": self.n,
            "mean_a": self.mean_a,
            "mean_b": self.mean_b,
            "difference": self.difference,
            "low": self.low,
            "high": self.high,
            "ci90": list(self.ci90) if self.ci90 is not None else None,
            "confidence": CONFIDENCE,
            "margin": self.margin,
            "verdict": self.verdict,
            "direction": self.direction,
            "method": self.method,
            "lower_is_better": self.lower_is_better,
            "a_only": self.a_only,
            "b_only": self.b_only,
        }


def compare_per_image(
    a, b, margin: float, *, binary: bool = False, lower_is_better: bool = False
) -> PerImageComparison:
    """Per-image values of `a` and `b` (the same images, in the same order) compared."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"a and b must score the same images: {a.size} vs {b.size} values")
    if margin <= 0:
        raise ValueError("the margin must be > 0")
    if binary and lower_is_better:
        raise ValueError("correctness is higher-is-better: binary excludes lower_is_better")
    if binary and not (np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all()):
        raise ValueError("binary comparisons take 0/1 values per image")
    n = int(a.size)
    means = (float(a.mean()), float(b.mean())) if n else (None, None)
    a_only = b_only = None
    if binary:
        a_only, b_only = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    common = {
        "n": n,
        "mean_a": means[0],
        "mean_b": means[1],
        "margin": float(margin),
        "lower_is_better": lower_is_better,
        "a_only": a_only,
        "b_only": b_only,
    }
    if n < 2:  # nothing to estimate a spread from
        difference = None if n == 0 else float((b - a)[0] if lower_is_better else (a - b)[0])
        return PerImageComparison(
            **common,
            difference=difference,
            low=None,
            high=None,
            ci90=None,
            verdict=INCONCLUSIVE,
            direction="none",
            method="too few images",
        )
    metric = "accuracy" if binary else Metric("score", not lower_is_better, math.inf, "a - b")
    r = compare_single_split(b, a, metric, margin=margin)  # its B is `a`: positive = a better
    direction = {B_BETTER: A_BETTER, B_WORSE: A_WORSE}.get(r.direction, "none")
    return PerImageComparison(
        **common,
        difference=r.difference,
        low=r.ci95[0],
        high=r.ci95[1],
        ci90=r.ci90,
        verdict=r.verdict,
        direction=direction,
        method=TESTS[r.test],
    )
