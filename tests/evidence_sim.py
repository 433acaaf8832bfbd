"""Calibration data and the sweep's design run on tiny heads (`tiny_heads`), for the tests of
`evaluation.crossfit` (tests/test_evidence_calibration.py; docs/evidence.md).

A repetition draws a fresh labelled set of N = 358 images (the demo's train + validation:
145 positives, so always predicting the majority class scores 0.595). Each config reads one
*view* of them, 32 post-ReLU values like a tiny (2, 2, 8) feature map (about half exact
zeros, as the random-weight mixed7 features):

    x = relu(mu * (2y - 1) * w + noise),   noise = c * shared + sqrt(1 - c^2) * own

w is a fixed unit direction; `shared` is one draw per image, `own` one per image and view, so
two views with c = 1 share every image's noise (a config with a larger mu is a better model
of the same images) and c = 0.5 gives equally good configs that disagree image by image
(the hard null, "A/A'"). The images are split into folds by the product's own `plan_for`
(stratified, from content ids), every config is trained on every (repeat, fold) for a fixed
budget, configs of one (repeat, fold) share a randomness slot unless their `seed` differs,
and each training is also scored on a large population sample: its true accuracy.

    runs = crossfit_runs(rng, reps=30, mus=[mu, mu], configs=[A, A_other_seed])
    runs.outcomes(t, c, "brier"), runs.folds[t]               # for crossfit.compare_crossfit
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tiny_heads

from inception_retrain.dropout.sweep_plan import plan_for
from inception_retrain.evaluation import crossfit

N = 358
POSITIVES = 145
FEATURES = 32
EPOCHS = 15
HIDDEN = (16, 32)
DEFAULT = (0.0, 0.2)  # the seed's head: Dropout(0.2) after the last hidden layer
W = np.random.default_rng(20240611).standard_normal(FEATURES)
W /= np.linalg.norm(W)
# signal strength -> true accuracy of the default head trained on 4/5 of N images for 15
# epochs (the calibration study's strengths stage, 60 data sets per strength)
MU = np.round(np.arange(0.6, 2.61, 0.1), 2)
TRUE_ACCURACY = np.array(
    [0.645, 0.674, 0.703, 0.732, 0.759, 0.785, 0.809, 0.831, 0.851, 0.869, 0.885]
    + [0.900, 0.914, 0.926, 0.937, 0.946, 0.954, 0.961, 0.967, 0.973, 0.977]
)


def mu_for(accuracy: float) -> float:
    """The signal strength whose default head has this true accuracy."""
    return float(np.interp(accuracy, TRUE_ACCURACY, MU))


@dataclass(frozen=True)
class Config:
    view: int = 0
    seed: int = 0
    p1: float = DEFAULT[0]
    p2: float = DEFAULT[1]


def labels(rng, n: int = N, exact: bool = True) -> np.ndarray:
    if exact:
        y = np.zeros(n, np.float32)
        y[: round(POSITIVES / N * n)] = 1
        return rng.permutation(y)
    return (rng.random(n) < POSITIVES / N).astype(np.float32)


def views(rng, y, mus, corr=None) -> np.ndarray:
    """(len(mus), n, FEATURES) features of images with labels y."""
    sign = (2 * y - 1)[:, None]
    shared = rng.standard_normal((len(y), FEATURES))
    out = []
    for mu, c in zip(mus, corr or [1.0] * len(mus), strict=True):
        own = rng.standard_normal((len(y), FEATURES))
        noise = shared if c >= 1 else c * shared + np.sqrt(1 - c * c) * own
        out.append(np.maximum(mu * sign * W + noise, 0))
    return np.stack(out).astype(np.float32)


@dataclass
class Runs:
    """Out-of-fold logits of every config on every data set: z (T, C, R, N), folds (T, R, N),
    labels (T, N), and each training's true accuracy (T, C, R, K) when scored."""

    z: np.ndarray
    folds: np.ndarray
    labels: np.ndarray
    true_accuracy: np.ndarray | None

    def outcomes(self, t: int, c: int, metric: str) -> np.ndarray:
        probabilities = tiny_heads.probabilities(self.z[t, c])
        return crossfit.image_outcomes(probabilities, self.labels[t].astype(int))[metric]

    def compare(self, t, a, b, metric, margin) -> crossfit.PairedComparison:
        return crossfit.compare_crossfit(
            self.outcomes(t, a, metric),
            self.outcomes(t, b, metric),
            self.folds[t],
            metric,
            margin=margin,
        )


def crossfit_runs(
    rng,
    reps: int,
    mus,
    configs,
    corr=None,
    *,
    folds: int = 5,
    repeats: int = 2,
    epochs: int = EPOCHS,
    random_labels: bool = False,
    population: int = 0,
    chunk: int = 3000,
) -> Runs:
    """`reps` data sets, each cross-fitted with every config; see the module docstring."""
    X = np.empty((reps, len(mus), N, FEATURES), np.float32)
    Y = np.empty((reps, N), np.float32)
    fold_of = np.empty((reps, repeats, N), np.int64)
    for t in range(reps):
        y = labels(rng)
        X[t] = views(rng, y, mus, corr)
        Y[t] = rng.permutation(y) if random_labels else y
        ids = [f"{t}-{int(rng.integers(1 << 62))}-{i}" for i in range(N)]
        plan = plan_for(
            ids, Y[t].astype(int).tolist(), folds=folds, repeats=repeats, max_images=None
        )
        order = np.argsort(ids)  # the plan sorts its images by id
        fold_of[t][:, order] = np.asarray(plan.folds)
    pop = None
    if population:
        y_pop = labels(rng, population, exact=False)
        pop = (views(rng, y_pop, mus, corr), y_pop)
    seeds = sorted({c.seed for c in configs})
    z = np.zeros((reps, len(configs), repeats, N), np.float32)
    truth = np.full((reps, len(configs), repeats, folds), np.nan) if population else None
    per_set = repeats * folds * len(configs)
    step = max(1, chunk // per_set)
    for first in range(0, reps, step):
        sets = range(first, min(reps, first + step))
        rows, data, lab, train, held, slot, p1, p2 = [], [], [], [], [], [], [], []
        for i, t in enumerate(sets):
            for r in range(repeats):
                for k in range(folds):
                    fit, out = (
                        np.flatnonzero(fold_of[t, r] != k),
                        np.flatnonzero(fold_of[t, r] == k),
                    )
                    for c, config in enumerate(configs):
                        rows.append((t, c, r, k))
                        data.append(i * len(mus) + config.view)
                        lab.append(i)
                        train.append(fit)
                        held.append(out)
                        slot.append(
                            ((t * repeats + r) * folds + k) * len(seeds) + seeds.index(config.seed)
                        )
                        p1.append(config.p1)
                        p2.append(config.p2)
        features = X[list(sets)].reshape(len(sets) * len(mus), N, FEATURES)
        data = np.asarray(data)
        jobs = tiny_heads.Jobs(
            data=data,
            labels=np.asarray(lab),
            train=_pad(train),
            slot=np.asarray(slot),
            p1=np.asarray(p1),
            p2=np.asarray(p2),
        )
        params = tiny_heads.train(jobs, features, Y[list(sets)], epochs, rng, HIDDEN)
        held_index = _pad(held)
        logits = tiny_heads.logits(params, features, data, held_index)
        if pop is not None:
            which = np.asarray([configs[c].view for (_, c, _, _) in rows])
            pop_z = tiny_heads.logits_shared(params, pop[0], which)
            pop_correct = ((pop_z >= 0) == (pop[1][None] == 1)).mean(axis=1)
        for m, (t, c, r, k) in enumerate(rows):
            keep = held_index[m] >= 0
            z[t, c, r, held_index[m][keep]] = logits[m][keep]
            if pop is not None:
                truth[t, c, r, k] = pop_correct[m]
    return Runs(z=z, folds=fold_of, labels=Y, true_accuracy=truth)


def _pad(rows) -> np.ndarray:
    out = np.full((len(rows), max(len(r) for r in rows)), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def rate_text(k: int, n: int) -> str:
    low, high = crossfit.wilson(k, n)
    return f"{k}/{n} = {k / n:.3f} [95% CI {low:.3f}, {high:.3f}]"
