"""Paired comparisons of two learners image by image, and the one verdict rule.

Two designs, one rule:

* **Cross-fitted** (`compare_crossfit`, the dropout sweep): all labelled images are split R
  times ("repeats") into K folds; in each repeat every learner is trained on the other K - 1
  folds and predicts the held-out fold, so each image has one out-of-fold (OOF) outcome per
  learner and repeat. Trainings of the two learners in one repeat and fold are paired (same
  seed: same initial weights and data order). The test is the corrected resampled t of
  Nadeau & Bengio (2003): the J = R * K per-fold mean differences m_j are correlated (their
  training sets overlap), so Var(mean) = (1/J + n_test/n_train) * s_m^2 with J - 1 degrees of
  freedom. It is the only candidate that held its level in the calibration (docs/evidence.md):
  pooling every (repeat, image) difference, a t over images and bootstraps over images all
  ignore that one training decides many images at once, and said "better" or "worse" for
  identical configs in 10-40% of repetitions. `compare_folds` is the same test on a
  per-training quantity (a train - held-out accuracy gap, an AUROC per fold).
* **One split** (`compare_single_split`): one training per learner, both scored on the same
  images; a paired t over images (N - 1 df), or for correctness Bonett and Price's adjusted Wald
  interval of two paired proportions (it does not collapse when no image is discordant). It
  ignores the variance between training seeds (another seed could change the answer), and says
  so in its `note`. For comparisons where only one training of each learner exists, e.g. a head
  trained alone against the same head fine-tuned with part of the backbone
  (`paired_images.compare_per_image` is its view for the evaluation's fine-tuning comparison).

Per-image outcomes (`image_outcomes`): correctness (0/1), Brier score (half the squared
distance between the probability vector and the one-hot label: (p - y)^2 for two classes, in
[0, 1] for any number) and log loss (probabilities clipped to [1e-7, 1 - 1e-7]).
`difference` is always "how much better B is than A" in the metric's own units: B - A for
accuracy, A - B for Brier and log loss, so a positive difference favours B.

The verdict rule (`verdict_of`), with the margin fixed before the run:

* equivalent: the 90% interval (two one-sided tests at 5%, Lakens 2017) lies inside
  (-margin, +margin);
* better: the 95% interval lies above 0; worse: below 0;
* when "better" (or "worse") and "equivalent" both hold, equivalent wins: the margin is the
  definition of a difference that matters; `direction` keeps the side it leans to;
* otherwise inconclusive, with the smallest difference the data could have detected (80%
  power, two-sided 5%) and about how many images (and repeats, when they can help) would
  decide it;
* not testable: set by `gate` when no learner beats always predicting the majority class
  (`beats_majority`: one-sided, Holm over the learners).

Intervals stay in range: differences of accuracies or Brier scores are clipped to [-1, 1]; a
single cross-fitted accuracy gets a Wilson interval (`accuracy_interval`), inside [0, 1].

    r = compare_crossfit(brier_a, brier_b, folds, "brier", margin=0.034)   # (R, N) arrays
    r.verdict, r.direction, r.difference, r.ci95, r.min_detectable, r.images_needed
    r = compare_single_split(correct_a, correct_b, "accuracy", margin=0.05)  # (N,) arrays
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from inception_retrain.data.distribution_tests import holm_adjust

BETTER, WORSE, EQUIVALENT, INCONCLUSIVE, NOT_TESTABLE = (
    "better",
    "worse",
    "equivalent",
    "inconclusive",
    "not testable",
)
VERDICTS = (BETTER, EQUIVALENT, WORSE, INCONCLUSIVE, NOT_TESTABLE)
B_BETTER, B_WORSE, NO_DIRECTION = "B better", "B worse", "none"
ALPHA = 0.05  # two-sided level of the 95% interval; TOST at ALPHA gives the 90% interval
POWER = 0.8  # of the minimum detectable difference
PROBABILITY_CLIP = 1e-7  # as Keras's losses clip probabilities


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    bound: float  # |one image's value| <= bound, so |difference| <= bound
    unit: str  # what `difference` measures


METRICS = {
    "accuracy": Metric("accuracy", True, 1.0, "accuracy B - A"),
    "brier": Metric("brier", False, 1.0, "Brier A - B"),
    "log_loss": Metric("log_loss", False, -math.log(PROBABILITY_CLIP), "log loss A - B (nats)"),
}
TESTS = {
    "nadeau_bengio": "corrected resampled t (Nadeau & Bengio 2003)",
    "paired_t_images": "paired t over images (one training per model)",
    "paired_proportions": "paired proportions, Bonett-Price adjusted Wald (one training per model)",
}


@dataclass
class PairedComparison:
    """Learner B against learner A on one metric. Positive `difference` favours B."""

    metric: str
    unit: str
    test: str  # a key of TESTS
    difference: float
    ci95: tuple[float, float]
    ci90: tuple[float, float]  # the equivalence (TOST) interval
    se: float
    df: float
    p_value: float  # two-sided, H0: difference = 0
    margin: float
    verdict: str
    direction: str  # B_BETTER, B_WORSE or NO_DIRECTION: the sign the 95% interval is sure of
    n_images: int
    n_folds: int  # 1 for one split
    n_repeats: int
    n_test: float  # mean images per held-out fold (all images for one split)
    n_train: float  # mean images each training was fitted on (0: not known)
    min_detectable: float  # |difference| detected with 80% power at two-sided 5%
    images_needed: int | None = None  # inconclusive: about how many images would decide
    repeats_needed: int | None = None  # inconclusive: repeats that would (None: they cannot)
    note: str = ""
    fold_differences: list[list[float]] = field(default_factory=list)  # (R, K), oriented
    image_differences: list[float] = field(default_factory=list)  # per image, over repeats

    @property
    def design(self) -> str:
        if self.test in ("paired_t_images", "paired_proportions"):
            return "one split"
        return f"{self.n_repeats}x{self.n_folds} cross-fit"

    def summary(self) -> str:
        """One line, e.g. 'equivalent: Brier A - B -0.0036 [95% CI -0.0315, +0.0243] ...'."""
        low, high = self.ci95
        text = (
            f"{self.verdict}: {self.unit} {self.difference:+.4f} [95% CI {low:+.4f}, "
            f"{high:+.4f}] ({self.design}, {self.n_images} images)"
        )
        if self.verdict == EQUIVALENT:
            text += f" within ±{self.margin:g}"
            if self.direction != NO_DIRECTION:
                text += f" ({self.direction}, by less than the margin)"
        if self.verdict == INCONCLUSIVE:
            text += f"; minimum detectable difference {self.min_detectable:.3f}"
            if self.images_needed:
                text += f"; about {self.images_needed} images would decide"
        return text + (f" ({self.note})" if self.note else "")


# --- the verdict rule --------------------------------------------------------------------


def verdict_of(ci95: tuple[float, float], ci90: tuple[float, float], margin: float):
    """(verdict, direction) from the 95% interval (direction) and the 90% one (equivalence);
    equivalent wins when both hold."""
    if margin <= 0:
        raise ValueError("the margin must be > 0")
    low95, high95 = ci95
    low90, high90 = ci90
    direction = B_BETTER if low95 > 0 else B_WORSE if high95 < 0 else NO_DIRECTION
    if -margin < low90 and high90 < margin:
        return EQUIVALENT, direction
    if direction == B_BETTER:
        return BETTER, direction
    if direction == B_WORSE:
        return WORSE, direction
    return INCONCLUSIVE, direction


# --- per-image outcomes ------------------------------------------------------------------


def image_outcomes(probabilities, labels) -> dict[str, np.ndarray]:
    """Per image: correctness, Brier and log loss of per-class probabilities (..., N, K)
    against integer labels (N,). Ties in the argmax go to the lower class, as metrics.py."""
    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels, np.int64)
    n_classes = probabilities.shape[-1]
    one_hot = np.eye(n_classes)[labels]
    chosen = np.take_along_axis(
        probabilities, np.broadcast_to(labels[:, None], (*probabilities.shape[:-1], 1)), -1
    )[..., 0]
    return {
        "accuracy": (probabilities.argmax(-1) == labels).astype(np.float64),
        "brier": 0.5 * ((probabilities - one_hot) ** 2).sum(-1),
        "log_loss": -np.log(np.clip(chosen, PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)),
    }


# --- the tests -----------------------------------------------------------------------------


def _check(a, b, folds):
    a, b, folds = np.asarray(a, np.float64), np.asarray(b, np.float64), np.asarray(folds)
    if a.ndim == 1:
        a, b, folds = a[None], b[None], folds[None]
    if a.shape != b.shape or a.shape != folds.shape:
        raise ValueError(f"shapes differ: a {a.shape}, b {b.shape}, folds {folds.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("outcomes must be finite: one out-of-fold value per image and repeat")
    if len(np.unique(folds)) < 2:
        raise ValueError("a cross-fitted comparison needs at least 2 folds")
    return a, b, folds


def fold_means(values: np.ndarray, folds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per (repeat, fold) mean of `values` (R, N) and the held-out folds' sizes, both (R, K)."""
    keys = np.unique(folds)
    means = np.array([[values[r, folds[r] == k].mean() for k in keys] for r in range(len(values))])
    sizes = np.array([[(folds[r] == k).sum() for k in keys] for r in range(len(values))])
    return means, sizes


def _t_interval(estimate: float, se: float, df: float, level: float) -> tuple[float, float]:
    if se == 0:
        return estimate, estimate
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return estimate - half, estimate + half


def _min_detectable(se: float, df: float) -> float:
    df = min(df, 1e6)
    return float((stats.t.ppf(1 - ALPHA / 2, df) + stats.t.ppf(POWER, df)) * se)


def _result(metric, estimate, se, df, margin, centre=None, **sizes) -> PairedComparison:
    """The interval, p-value and verdict of an estimate with its standard error; `centre`:
    where the intervals are centred when not on the estimate (an adjusted interval)."""
    info = METRICS[metric] if isinstance(metric, str) else metric
    centre = estimate if centre is None else centre
    ci95 = _t_interval(centre, se, df, 1 - ALPHA)
    ci90 = _t_interval(centre, se, df, 1 - 2 * ALPHA)
    ci95 = tuple(float(np.clip(x, -info.bound, info.bound)) for x in ci95)
    ci90 = tuple(float(np.clip(x, -info.bound, info.bound)) for x in ci90)
    p_value = float(2 * stats.t.sf(abs(centre) / se, df)) if se > 0 else float(centre == 0)
    verdict, direction = verdict_of(ci95, ci90, margin)
    return PairedComparison(
        metric=info.name,
        unit=info.unit,
        difference=float(estimate),
        ci95=ci95,
        ci90=ci90,
        se=float(se),
        df=float(df),
        p_value=p_value,
        margin=float(margin),
        verdict=verdict,
        direction=direction,
        min_detectable=_min_detectable(se, df),
        **sizes,
    )


def _nadeau_bengio(means: np.ndarray, n_test: float, n_train: float) -> tuple[float, float, int]:
    """(estimate, corrected standard error, df) of per-fold mean differences (R, K)."""
    j = means.size
    variance = float(means.var(ddof=1)) if j > 1 else 0.0
    se = math.sqrt((1.0 / j + n_test / n_train) * variance)
    return float(means.mean()), se, j - 1


def compare_folds(
    values_a,
    values_b,
    *,
    metric: Metric | str,
    margin: float,
    n_test: float,
    n_train: float,
    n_images: int,
) -> PairedComparison:
    """B against A on a per-training quantity (R, K), one value per repeat and fold (e.g. a
    train - held-out accuracy gap, where higher_is_better=False), by the corrected resampled t.
    `n_test`, `n_train`: the mean held-out and training sizes of a fold. A NaN (a fold where
    the quantity is undefined) leaves that pair out; at least two pairs must remain."""
    info = METRICS[metric] if isinstance(metric, str) else metric
    a, b = np.asarray(values_a, np.float64), np.asarray(values_b, np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"need two (repeats, folds) arrays, got {a.shape} and {b.shape}")
    d = (b - a) if info.higher_is_better else (a - b)
    kept = d[np.isfinite(d)]
    if kept.size < 2:
        raise ValueError("a comparison over folds needs at least 2 pairs with values")
    estimate, se, df = _nadeau_bengio(kept, n_test, n_train)
    result = _result(
        info,
        estimate,
        se,
        df,
        margin,
        test="nadeau_bengio",
        n_images=int(n_images),
        n_folds=d.shape[1],
        n_repeats=d.shape[0],
        n_test=float(n_test),
        n_train=float(n_train),
        fold_differences=d.tolist(),
    )
    if kept.size < d.size:
        result.note = f"{d.size - kept.size} of {d.size} pairs left out (no value)"
    if result.verdict == INCONCLUSIVE:
        _sizes(result, float(kept.var(ddof=1)))
    return result


def compare_crossfit(
    a, b, folds, metric: str = "accuracy", *, margin: float, n_train: float | None = None
) -> PairedComparison:
    """B against A from their per-image out-of-fold outcomes.

    a, b: (R, N) outcome per repeat and image (`image_outcomes`); folds: (R, N) the fold of
    each image in each repeat. `n_train`: images each training was fitted on, when fewer than
    the other folds (e.g. an inner early-stopping slice held out)."""
    info = METRICS[metric]
    a, b, folds = _check(a, b, folds)
    d = (b - a) if info.higher_is_better else (a - b)
    means, sizes = fold_means(d, folds)
    n_images = d.shape[1]
    n_test = float(sizes.mean())
    n_train = float(n_images - n_test if n_train is None else n_train)
    estimate, se, df = _nadeau_bengio(means, n_test, n_train)
    result = _result(
        info,
        estimate,
        se,
        df,
        margin,
        test="nadeau_bengio",
        n_images=n_images,
        n_folds=means.shape[1],
        n_repeats=means.shape[0],
        n_test=n_test,
        n_train=n_train,
        fold_differences=means.tolist(),
        image_differences=d.mean(axis=0).tolist(),
    )
    if result.verdict == INCONCLUSIVE:
        _sizes(result, float(means.var(ddof=1)) if means.size > 1 else 0.0)
    return result


def compare_single_split(
    a, b, metric: Metric | str = "accuracy", *, margin: float
) -> PairedComparison:
    """B against A when each was trained once and both scored the same N images. Scores: a
    paired t over images (N - 1 df). Correctness (accuracy): the difference of two paired
    proportions, which only the discordant images move, with Bonett and Price's adjusted Wald
    interval (2012: one added to each discordant count, two to N), whose coverage stays near
    nominal with few or no discordant images, where a t over 0/1 differences collapses to a
    point. The interval covers the sampling of images only, not the variance between
    trainings (seeds), which the cross-fitted design measures; the result says so."""
    info = METRICS[metric] if isinstance(metric, str) else metric
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: a {a.shape}, b {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("outcomes must be finite")
    if len(a) < 2:
        raise ValueError("a paired comparison over images needs at least 2 images")
    d = (b - a) if info.higher_is_better else (a - b)
    n = len(d)
    centre, df, test = None, n - 1, "paired_t_images"
    if info.name == "accuracy":
        if not (np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all()):
            raise ValueError("accuracy compares 0/1 correctness per image")
        centre, se = _paired_proportions(int((d > 0).sum()), int((d < 0).sum()), n)
        df, test = math.inf, "paired_proportions"
    else:
        se = float(d.std(ddof=1) / math.sqrt(n))
    result = _result(
        info,
        float(d.mean()),
        se,
        df,
        margin,
        centre=centre,
        test=test,
        n_images=n,
        n_folds=1,
        n_repeats=1,
        n_test=float(n),
        n_train=0.0,
        image_differences=d.tolist(),
        note="one training per model: the interval ignores the variance between training "
        "seeds, so another seed could give another answer",
    )
    if result.verdict == INCONCLUSIVE:
        _sizes(result, None)
    return result


def _paired_proportions(b_only: int, a_only: int, n: int) -> tuple[float, float]:
    """(centre, standard error) of Bonett and Price's adjusted Wald interval for p(B right) -
    p(A right) on n paired images, `b_only` of them right by B alone, `a_only` by A alone."""
    p_b, p_a = (b_only + 1) / (n + 2), (a_only + 1) / (n + 2)
    centre = p_b - p_a
    return centre, math.sqrt(max(p_b + p_a - centre**2, 0.0) / (n + 2))


def _sizes(r: PairedComparison, fold_variance: float | None) -> None:
    """Images (and repeats) that would decide an inconclusive comparison if the truth were
    the observed difference. The standard error is taken to shrink as 1/sqrt(images): true
    of the images' part, optimistic for the trainings' part. The goal is the cheaper of
    showing the observed direction and showing equivalence (90% interval inside the margin
    with 80% power)."""
    d = abs(r.difference)
    z = stats.norm.ppf
    targets = []
    if d > 0:
        targets.append(d / (z(1 - ALPHA / 2) + z(POWER)))
    if d < r.margin:
        targets.append((r.margin - d) / (z(1 - ALPHA) + z(POWER)))
    if not targets or r.se == 0:
        return
    target = max(targets)
    r.images_needed = int(math.ceil(r.n_images * (r.se / target) ** 2))
    if fold_variance is None or r.test != "nadeau_bengio":
        return
    # Var = (1/(R K) + n_test/n_train) s^2: more repeats shrink only the 1/(R K) part
    room = target**2 / fold_variance - r.n_test / r.n_train if fold_variance > 0 else math.inf
    r.repeats_needed = int(math.ceil(1.0 / (r.n_folds * room))) if room > 0 else None
    if r.repeats_needed is None:
        r.note = "more repeats cannot decide this; only more images can"


# --- one learner's accuracy, and the majority-class baseline ---------------------------------


def wilson(successes: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (successes and n may be fractional), in [0, 1]."""
    if n <= 0:
        return 0.0, 1.0
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes <= 0 else max(0.0, centre - half)
    high = 1.0 if successes >= n else min(1.0, centre + half)
    return float(low), float(high)


@dataclass(frozen=True)
class Accuracy:
    """A cross-fitted accuracy with its Wilson interval (inside [0, 1])."""

    accuracy: float
    ci95: tuple[float, float]
    n_effective: float  # images whose binomial variance equals the corrected variance


def accuracy_interval(correct, folds, level: float = 0.95) -> Accuracy:
    """One learner's OOF accuracy over (R, N) correctness: a Wilson interval with the effective
    number of images p(1-p)/Var_NB, where Var_NB is the corrected resampled variance of the
    mean (never more than the N images: never narrower than a plain binomial on them)."""
    correct, _, folds = _check(correct, correct, folds)
    p = float(correct.mean())
    n = correct.shape[1]
    means, sizes = fold_means(correct, folds)
    _, se, _ = _nadeau_bengio(means, float(sizes.mean()), n - float(sizes.mean()))
    n_effective = float(n) if se == 0 or p in (0.0, 1.0) else min(float(n), p * (1 - p) / se**2)
    return Accuracy(p, wilson(p * n_effective, n_effective, level), n_effective)


def majority_correct(labels, folds) -> np.ndarray:
    """(R, N) correctness of always predicting the class most common in the training folds
    (ties: the lower label)."""
    labels = np.asarray(labels)
    folds = np.asarray(folds)
    folds = folds[None] if folds.ndim == 1 else folds
    out = np.zeros(folds.shape)
    classes = np.unique(labels)
    for r in range(len(folds)):
        for k in np.unique(folds[r]):
            held_out = folds[r] == k
            counts = [(labels[~held_out] == c).sum() for c in classes]
            out[r, held_out] = labels[held_out] == classes[int(np.argmax(counts))]
    return out


@dataclass(frozen=True)
class BaselineCheck:
    """Does one learner beat always predicting the majority class? (one-sided, Holm)"""

    learner: str
    accuracy: float
    baseline: float
    difference: float
    ci95: tuple[float, float]
    p_one_sided: float
    p_holm: float
    beats: bool


def beats_majority(correct_by_learner: dict, labels, folds, alpha: float = ALPHA):
    """Which learners beat the majority-class baseline on the same OOF images, each by the
    one-sided corrected resampled t, the family-wise error over learners held by Holm."""
    base = majority_correct(labels, folds)
    rows = []
    for name, correct in correct_by_learner.items():
        r = compare_crossfit(base, correct, folds, "accuracy", margin=1.0)
        if r.se > 0:
            p = float(stats.t.sf(r.difference / r.se, r.df))
        else:
            p = 0.0 if r.difference > 0 else 1.0
        rows.append((name, float(np.mean(correct)), float(base.mean()), r.difference, r.ci95, p))
    adjusted = holm_adjust([row[-1] for row in rows])
    return [
        BaselineCheck(*row, p_holm=float(h), beats=bool(h < alpha))
        for row, h in zip(rows, adjusted, strict=True)
    ]


def gate(comparison: PairedComparison, checks: list[BaselineCheck]) -> PairedComparison:
    """`comparison` marked NOT_TESTABLE when no learner beats the majority-class baseline."""
    if not any(check.beats for check in checks):
        comparison.verdict = NOT_TESTABLE
        comparison.note = "no config beats always predicting the majority class (Holm, 5%)"
    return comparison
