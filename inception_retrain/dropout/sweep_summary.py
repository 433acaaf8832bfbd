"""What the cross-fitted dropout sweep measured: one `TrainingResult` per training, one
`SweepSummary`.

A training (`sweep.train_cell`) fits one config on the other folds of one repeat and scores,
in inference mode after its fixed epoch budget:
  * every held-out image: its class probabilities (`probabilities`, in the order of `held_out`,
    the plan's rows), from which `crossfit.image_outcomes` gives its correctness, Brier score
    and log loss; for the config F4 tests, also the standard deviation of the predicted
    class's probability over MC-dropout passes (`mc_std`);
  * its own training images: accuracy (`train_accuracy`), for the train - held-out gap.
Its history holds, per epoch, the training loss and accuracy and the held-out fold's loss and
accuracy (`val_loss`, `val_accuracy`): pooled over trainings, the learning curves show whether
the common epoch budget let every config reach its plateau.

A training is **degenerate** when it predicts one class for every held-out image: it learned
nothing about the inputs. Degenerate trainings stay in the comparisons (they are their
config's real outcomes; dropping them would favour the configs that degenerate more often)
and are counted per config and per compared pair.

    summary = summarize(spec, plan, results)
    summary.outcomes(summary.config(0.5, "after_both"), "brier")    # (repeats, images)
    summary.fold_array(), summary.labels()
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

from inception_retrain.dropout.sweep_plan import SweepPlan
from inception_retrain.evaluation import crossfit

NO_DROPOUT = (0.0, "none")
AFTER, BEFORE = "after", "before"  # the Dropout after or before its Dense layer's ReLU


def effective(rate: float, placement: str) -> tuple[float, str]:
    """The head a grid cell really trains: rate 0 or placement none is "no dropout"."""
    return NO_DROPOUT if rate == 0.0 or placement == "none" else (float(rate), placement)


class TrainingResult(BaseModel):
    """One training of the sweep: config, repeat and fold, and how it scores."""

    rate: float
    placement: str
    order: str = AFTER  # BEFORE: the order check of C2 (Dropout before Dense(1024)'s ReLU)
    repeat: int
    fold: int
    seed: int
    dropout_layers: int
    epochs_run: int
    history: dict[str, list[float]]  # per epoch: loss, accuracy, val_loss, val_accuracy, seconds
    held_out: list[int]  # plan rows of the held-out fold
    probabilities: list[list[float]]  # per held-out image, per class
    mc_std: list[float] | None = None  # per held-out image (the config F4 tests)
    train_accuracy: float
    n_train: int
    seconds: float

    @property
    def degenerate(self) -> bool:
        """One class predicted for every held-out image."""
        predicted = np.asarray(self.probabilities).argmax(axis=1)
        return len(predicted) > 1 and bool((predicted == predicted[0]).all())

    @property
    def epoch_seconds(self) -> float:
        return float(sum(self.history.get("seconds", [])))


class ConfigSummary(BaseModel):
    """One config over its trainings (every repeat and fold)."""

    rate: float
    placement: str
    cells: list[str]  # the grid cells it stands for, "rate/placement"
    trainings: int
    degenerate: int
    accuracy: float  # out of fold, over every repeat and image
    accuracy_low: float  # Wilson interval with the corrected effective number of images
    accuracy_high: float
    brier: float
    log_loss: float
    train_accuracy: float  # mean over trainings, on their own training images
    gap: float  # mean over trainings of train - held-out accuracy
    beats_majority: bool  # one-sided, Holm over the configs
    p_holm: float
    curve_accuracy: list[float]  # held-out accuracy per epoch, pooled over trainings
    curve_loss: list[float]

    @property
    def key(self) -> tuple[float, str]:
        return (self.rate, self.placement)


class CacheUse(BaseModel):
    dir: str | None
    computed: int
    reused: int


class SweepSummary(BaseModel):
    """The whole cross-fitted sweep: design, images, every config and every training."""

    folds: int
    repeats: int
    epochs: int  # the fixed budget, the same for every training
    standardize: bool
    grid: str
    grid_cells: list[dict]
    plan: SweepPlan
    majority_accuracy: float  # always predicting the training folds' majority class, OOF
    configs: list[ConfigSummary]
    results: list[TrainingResult]  # every training of the grid (order "after")
    order_check: list[TrainingResult] = []  # C2: the same training with the other order
    tested: tuple[float, str] | None = None  # the config F4's MC-dropout passes ran on
    trainings: int
    degenerate: int
    epochs_total: int
    seconds_total: float  # the trainings' own seconds (set-up to scoring)
    epoch_seconds_total: float  # of which inside their epochs
    wall_seconds: float | None = None  # the sweep's wall time in this run (flows.sweep)
    cache: CacheUse | None = None

    def config(self, rate: float, placement: str) -> ConfigSummary | None:
        """The config row that the grid cell (rate, placement) trains."""
        key = effective(rate, placement)
        return next((c for c in self.configs if c.key == key), None)

    def fold_array(self) -> np.ndarray:
        return self.plan.fold_array()

    def labels(self) -> np.ndarray:
        return np.asarray(self.plan.labels, dtype=np.int64)

    def runs(self, row: ConfigSummary | tuple[float, str]) -> list[TrainingResult]:
        """The trainings of a config (its summary row or its (rate, placement))."""
        key = row.key if isinstance(row, ConfigSummary) else effective(*row)
        return [r for r in self.results if (r.rate, r.placement) == key]

    def probabilities(self, row) -> np.ndarray:
        """(repeats, images, classes) out-of-fold probabilities of a config."""
        return probabilities_of(self.runs(row), self.repeats, self.plan.n)

    def outcomes(self, row, metric: str) -> np.ndarray:
        """(repeats, images) out-of-fold outcomes of a config on `metric`."""
        return crossfit.image_outcomes(self.probabilities(row), self.labels())[metric]

    def per_training(self, row, value) -> np.ndarray:
        """(repeats, folds) of `value(result)` over a config's trainings."""
        out = np.full((self.repeats, self.folds), np.nan)
        for r in self.runs(row):
            out[r.repeat, r.fold] = value(r)
        return out

    def held_out_accuracy(self, row) -> np.ndarray:
        """(repeats, folds) accuracy of each training on its held-out fold."""
        correct = self.outcomes(row, "accuracy")
        folds = self.fold_array()
        out = np.zeros((self.repeats, self.folds))
        for r in range(self.repeats):
            for k in range(self.folds):
                out[r, k] = correct[r, folds[r] == k].mean()
        return out

    def gaps(self, row) -> np.ndarray:
        """(repeats, folds) train - held-out accuracy of each training."""
        return self.per_training(row, lambda r: r.train_accuracy) - self.held_out_accuracy(row)

    def degenerate_slots(self, *configs) -> list[tuple[int, int]]:
        """(repeat, fold) slots where any of `configs` has a degenerate training."""
        slots = {(r.repeat, r.fold) for c in configs for r in self.runs(c) if r.degenerate}
        return sorted(slots)


def probabilities_of(runs: Sequence[TrainingResult], repeats: int, n_images: int) -> np.ndarray:
    """Scatter the held-out probabilities of `runs` into (repeats, images, classes)."""
    if not runs:
        raise ValueError("no trainings")
    n_classes = len(runs[0].probabilities[0])
    out = np.full((repeats, n_images, n_classes), np.nan)
    for r in runs:
        out[r.repeat, r.held_out] = r.probabilities
    if np.isnan(out).any():
        raise ValueError("some images have no out-of-fold prediction (a training is missing)")
    return out


def _curve(runs: Sequence[TrainingResult], key: str) -> list[float]:
    curves = [r.history.get(key, []) for r in runs]
    length = min((len(c) for c in curves), default=0)
    return [float(np.mean([c[e] for c in curves])) for e in range(length)]


def summarize_config(
    key: tuple[float, str],
    cells: list[str],
    runs: list[TrainingResult],
    plan: SweepPlan,
    repeats: int,
    check: crossfit.BaselineCheck,
) -> ConfigSummary:
    """One config over its trainings (see the module docstring)."""
    labels = np.asarray(plan.labels)
    outcomes = crossfit.image_outcomes(probabilities_of(runs, repeats, plan.n), labels)
    accuracy = crossfit.accuracy_interval(outcomes["accuracy"], plan.fold_array()[:repeats])
    gaps = [
        r.train_accuracy - float(np.mean(outcomes["accuracy"][r.repeat, r.held_out])) for r in runs
    ]
    return ConfigSummary(
        rate=key[0],
        placement=key[1],
        cells=cells,
        trainings=len(runs),
        degenerate=sum(r.degenerate for r in runs),
        accuracy=accuracy.accuracy,
        accuracy_low=accuracy.ci95[0],
        accuracy_high=accuracy.ci95[1],
        brier=float(outcomes["brier"].mean()),
        log_loss=float(outcomes["log_loss"].mean()),
        train_accuracy=float(np.mean([r.train_accuracy for r in runs])),
        gap=float(np.mean(gaps)),
        beats_majority=check.beats,
        p_holm=check.p_holm,
        curve_accuracy=_curve(runs, "val_accuracy"),
        curve_loss=_curve(runs, "val_loss"),
    )


def baseline_checks(
    plan: SweepPlan, repeats: int, by_config: dict[tuple[float, str], list[TrainingResult]]
) -> dict[tuple[float, str], crossfit.BaselineCheck]:
    """Each config against always predicting the majority class (Holm over the configs)."""
    labels = np.asarray(plan.labels)
    correct = {
        f"{rate:g}/{placement}": crossfit.image_outcomes(
            probabilities_of(runs, repeats, plan.n), labels
        )["accuracy"]
        for (rate, placement), runs in by_config.items()
    }
    checks = crossfit.beats_majority(correct, labels, plan.fold_array()[:repeats])
    return dict(zip(by_config, checks, strict=True))
