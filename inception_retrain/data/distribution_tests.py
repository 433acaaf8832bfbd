"""Two-sample tests with exact p-values, and the record every data check writes (`Check`).

The data checks (`contract`: the data contract; `evaluation.drift`: drift of the cached
features) compare a new batch of images with a reference batch (the champion's training
images). Every statistical check here is a permutation test, or an exact conditional Monte
Carlo test, so its p-value is valid in finite samples whatever the data look like: under
"reference and new images come from one distribution" the pooled sample is exchangeable,
every statistic is computed by a procedure that treats both groups alike, and

    p = (1 + #{permuted statistic >= observed}) / (1 + permutations)

is then valid: P(p <= a) <= a for every a. Its resolution is 1 / (1 + permutations) (0.001
with the default 999), which must stay below the strictest Holm step, alpha / (checks in
the family): 0.05 / 9 = 0.0056 for two classes.

  * `categorical_test`: Pearson chi-square of the 2 x k table of category counts (classes,
    formats, modes), p-value from the exact conditional null (pooled counts fixed, the new
    batch's counts multivariate hypergeometric): right for sparse tables, where the
    asymptotic chi-square is not. Categories only the new batch has are listed.
  * `ks_test`: the two-sample Kolmogorov-Smirnov distance of a numeric property (short side,
    aspect ratio, brightness), permutation p-value (exact with tied values, unlike the KS
    tables).
  * `holm`: Holm's step-down adjustment over the checks that were tested: it controls the
    probability of any false alarm in the family at alpha under any dependence between the
    checks (the overall and per-class feature tests share images).

A check on too few images is not tested (status "too-few": no p-value, never flagged, out of
the family), nor is a property whose value is the same for every image old and new
("constant"); both decisions look only at the pooled sample, which the null leaves
unchanged, so Holm's guarantee holds for the checks that remain. The calibration of every
test (false alarms under no drift, power on planted shifts) is in docs/data-checks.md and
tests/test_data_checks_calibration.py.

    >>> check = categorical_test(["a"] * 150 + ["b"] * 150, ["a"] * 8 + ["b"] * 32, "classes")
    >>> check.p_value, check.detail["new_counts"]
    (0.001, [8, 32])
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

PERMUTATIONS = 999  # p-value resolution 0.001
MIN_NEW = 10  # new images a statistical check needs (REPORT: minimum sizes)
MIN_REFERENCE = 20  # reference images it needs
# Statuses of a check: tested, or why not.
TESTED, TOO_FEW, CONSTANT, NO_REFERENCE, NOT_COMPARABLE, OFF = (
    "tested",
    "too-few",
    "constant",
    "no-reference",
    "not-comparable",
    "off",
)


@dataclass
class Check:
    """One data check's record.

    `kind` is "rule" (a contract rule: flagged when it is broken, no p-value),
    "class-balance", "property" or "features" (statistical: flagged after Holm over the
    family). `blocking` is `flagged` for a check whose severity is "block". `null` is the
    permutation distribution of the statistic (for its histogram), `scores` one drift score
    per new image (feature checks), `message` one line saying what was found.
    """

    name: str
    kind: str
    status: str = TESTED
    n_reference: int = 0
    n_new: int = 0
    statistic: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    flagged: bool = False
    severity: str = "warn"
    blocking: bool = False
    message: str = ""
    permutations: int = 0
    null: np.ndarray | None = None
    scores: np.ndarray | None = None
    detail: dict = field(default_factory=dict)

    @property
    def statistical(self) -> bool:
        return self.kind != "rule"

    def to_dict(self, with_arrays: bool = False) -> dict:
        """A JSON-able record; arrays (the null distribution, per-image scores, arrays in
        `detail`) only `with_arrays`, as lists."""
        record = {k: v for k, v in asdict(self).items() if k not in ("null", "scores")}
        record["detail"] = {
            k: v for k, v in self.detail.items() if with_arrays or not isinstance(v, np.ndarray)
        }
        if with_arrays:
            for key in ("null", "scores"):
                value = getattr(self, key)
                record[key] = None if value is None else np.asarray(value).tolist()
        return plain(record)

    @classmethod
    def from_dict(cls, record: dict) -> Check:
        values = {k: v for k, v in record.items() if k in cls.__dataclass_fields__}
        for key in ("null", "scores"):
            if values.get(key) is not None:
                values[key] = np.asarray(values[key], dtype=np.float64)
        return cls(**values)


def plain(value):
    """NumPy values -> Python ones, recursively (for JSON)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_rng(seed: int, name: str) -> np.random.Generator:
    """A generator per (seed, check name): a check's result does not depend on the others."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def permutation_p_value(observed: float, null: np.ndarray) -> float:
    """(1 + #{null >= observed}) / (1 + len(null)), with a float tolerance for ties."""
    tolerance = 1e-12 * max(1.0, abs(observed))
    return float((1 + np.count_nonzero(null >= observed - tolerance)) / (1 + len(null)))


def memberships(n_reference: int, n_new: int, count: int, rng) -> np.ndarray:
    """(count, N) bool: True marks the rows playing "new" in each random permutation."""
    base = np.zeros(n_reference + n_new, dtype=bool)
    base[n_reference:] = True
    return rng.permuted(np.broadcast_to(base, (count, base.size)), axis=1)


def too_few(
    name: str, kind: str, n_reference: int, n_new: int, min_reference: int, min_new: int
) -> Check | None:
    """A "too-few" check when either group is below its minimum, else None."""
    if n_reference >= min_reference and n_new >= min_new:
        return None
    return Check(
        name,
        kind,
        TOO_FEW,
        n_reference,
        n_new,
        message=f"too few to test ({n_new} new, {n_reference} reference; needs "
        f"{min_new} and {min_reference})",
        detail={"min_reference": min_reference, "min_new": min_new},
    )


def categorical_test(
    reference: Sequence,
    new: Sequence,
    name: str,
    kind: str = "property",
    permutations: int = PERMUTATIONS,
    seed: int = 0,
    min_new: int = MIN_NEW,
    min_reference: int = MIN_REFERENCE,
) -> Check:
    """Does the mix of categories differ? (See module docstring.)"""
    reference, new = np.asarray(reference, dtype=str), np.asarray(new, dtype=str)
    m, n = len(reference), len(new)
    early = too_few(name, kind, m, n, min_reference, min_new)
    if early:
        return early
    categories, codes = np.unique(np.concatenate([reference, new]), return_inverse=True)
    pooled = np.bincount(codes, minlength=len(categories))
    new_counts = np.bincount(codes[m:], minlength=len(categories))
    ref_counts = pooled - new_counts
    counts = {
        "categories": categories.tolist(),
        "reference_counts": ref_counts.tolist(),
        "new_counts": new_counts.tolist(),
        "unseen": categories[(ref_counts == 0) & (new_counts > 0)].tolist(),
    }
    if len(categories) < 2:  # e.g. every image RGB: nothing to test
        return Check(name, kind, CONSTANT, m, n, message=f"all {categories[0]}", detail=counts)
    expected_new = pooled * n / (m + n)
    expected_ref = pooled * m / (m + n)

    def chi2(new_counts: np.ndarray) -> np.ndarray:  # (..., k) -> (...)
        ref = pooled - new_counts
        return ((new_counts - expected_new) ** 2 / expected_new).sum(-1) + (
            (ref - expected_ref) ** 2 / expected_ref
        ).sum(-1)

    observed = float(chi2(new_counts))
    draws = check_rng(seed, name).multivariate_hypergeometric(pooled, n, size=permutations)
    null = chi2(draws)
    shares = ", ".join(
        f"{c} {r / m:.0%}->{k / n:.0%}"
        for c, r, k in zip(categories, ref_counts, new_counts, strict=True)
    )
    return Check(
        name,
        kind,
        TESTED,
        m,
        n,
        statistic=observed,
        p_value=permutation_p_value(observed, null),
        permutations=permutations,
        null=null,
        message=shares,
        detail=counts,
    )


def ks_test(
    reference: Sequence[float],
    new: Sequence[float],
    name: str,
    permutations: int = PERMUTATIONS,
    seed: int = 0,
    min_new: int = MIN_NEW,
    min_reference: int = MIN_REFERENCE,
) -> Check:
    """Two-sample KS distance of a numeric property with a permutation p-value: the ECDFs
    are compared only at the ends of runs of tied values, so ties are handled exactly."""
    reference = np.asarray(reference, dtype=np.float64)
    new = np.asarray(new, dtype=np.float64)
    m, n = len(reference), len(new)
    early = too_few(name, "property", m, n, min_reference, min_new)
    if early:
        return early
    values = np.concatenate([reference, new])
    if np.ptp(values) == 0:  # e.g. every image the same size: nothing to test
        return Check(
            name,
            "property",
            CONSTANT,
            m,
            n,
            message=f"all {values[0]:g}",
            detail={"value": float(values[0])},
        )
    order = np.argsort(values, kind="stable")
    ends = np.r_[np.diff(values[order]) != 0, True]  # last position of each tied run

    def distance(is_new: np.ndarray) -> np.ndarray:  # (B, N) in pooled order -> (B,)
        step = np.where(is_new[:, order], -1.0 / n, 1.0 / m)
        return np.abs(np.cumsum(step, axis=1)[:, ends]).max(axis=1)

    is_new = np.zeros(m + n, dtype=bool)
    is_new[m:] = True
    observed = float(distance(is_new[None])[0])
    rng = check_rng(seed, name)
    null = np.concatenate(
        [
            distance(memberships(m, n, min(256, permutations - lo), rng))
            for lo in range(0, permutations, 256)
        ]
    )
    medians = float(np.median(reference)), float(np.median(new))
    return Check(
        name,
        "property",
        TESTED,
        m,
        n,
        statistic=observed,
        p_value=permutation_p_value(observed, null),
        permutations=permutations,
        null=null,
        message=f"median {medians[0]:.4g} -> {medians[1]:.4g}",
        detail={"reference_median": medians[0], "new_median": medians[1]},
    )


def holm_adjust(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the order given."""
    p = np.asarray(p_values, np.float64)
    adjusted = np.empty(len(p))
    running = 0.0
    for rank, i in enumerate(np.argsort(p, kind="stable")):
        running = max(running, (len(p) - rank) * p[i])
        adjusted[i] = min(1.0, running)
    return adjusted


def holm(checks: Sequence[Check], alpha: float) -> list[Check]:
    """Holm's step-down correction over the statistical checks that were tested (the
    family); sets `p_adjusted` and `flagged` on them, in place, and returns the checks.
    Rule checks and untested ones are left as they are (untested ones never flagged)."""
    family = [c for c in checks if c.statistical and c.status == TESTED and c.p_value is not None]
    for check, adjusted in zip(family, holm_adjust([c.p_value for c in family]), strict=True):
        check.p_adjusted = float(adjusted)
        check.flagged = adjusted <= alpha
    for check in checks:
        if check.statistical and check not in family:
            check.p_adjusted, check.flagged = None, False
    return list(checks)


def blas_threads(threads: int | None = 1):
    """Cap BLAS threads for a block (threadpoolctl, a scikit-learn dependency; None: as is).

    One thread is what the checks use: on a busy 2-core machine two OpenBLAS threads spin
    while the other core is taken, and the same checks took about 10x longer (the spike's
    measurement, docs/data-checks.md)."""
    if threads is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads, user_api="blas")
