"""What the dropout sweep measured: one `TrainingResult` per training, one `SweepSummary`.

Scoring (`score_split`), in inference mode after the best weights are restored, per split:
accuracy, log loss (probabilities clipped to [1e-7, 1 - 1e-7], as Keras's losses clip them),
how many images were predicted as each class, the accuracy of always predicting the split's
majority class, and each image's correctness as a string of "1" and "0" in the split's
(content id) order, the same for every training.

A training is **degenerate** when it predicts one class for every image of the selection split
(validation, else test): it learned nothing about the inputs, and its accuracy is just that
class's share. Degenerate trainings are counted per config and never decide a comparison.

Splits have roles: early stopping watches validation loss, and the best config is picked on
`selection_split` (validation, else test); effects are measured on `evaluation_split` (test,
else validation), so no number is both chosen and judged on one split when both exist.

Per config, `summarize` gives seed statistics of each score (mean, sample std and the 95% t
interval over seeds) and `accuracy_over_images`: the t interval over evaluation images of each
image's correctness averaged over the config's non-degenerate trainings. It is the test set's
size that limits how far a config can be told from always predicting the majority class, so
this interval is what must clear that baseline (`beats_majority`).

    summary = summarize(spec, results)
    row = summary.config(0.5, "after_both")
    row.per_seed("test", "accuracy")     # {seed: accuracy}
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

from inception_retrain.evaluation import statistics

LOSS_EPS = 1e-7
NO_DROPOUT = (0.0, "none")


def effective(rate: float, placement: str) -> tuple[float, str]:
    """The head a grid cell really trains: rate 0 or placement none is "no dropout"."""
    return NO_DROPOUT if rate == 0.0 or placement == "none" else (float(rate), placement)


class SplitScore(BaseModel):
    """A trained head's scores on one split (inference mode)."""

    n: int
    accuracy: float
    loss: float
    majority_accuracy: float
    predicted: list[int]  # images predicted as each class
    correct: str  # "1"/"0" per image, in the split's order

    @property
    def one_class(self) -> bool:
        return sum(count > 0 for count in self.predicted) <= 1

    def correctness(self) -> np.ndarray:
        return np.frombuffer(self.correct.encode("ascii"), np.uint8) == ord("1")


def score_split(probabilities: np.ndarray, labels: np.ndarray, n_classes: int) -> SplitScore:
    """Scores of per-class probabilities (N, K) against integer labels (N,)."""
    labels = np.asarray(labels, np.int64).reshape(-1)
    probabilities = np.asarray(probabilities, np.float64)
    predicted = probabilities.argmax(axis=1)  # ties go to the lower index, as metrics.py
    correct = predicted == labels
    chosen = np.clip(probabilities[np.arange(len(labels)), labels], LOSS_EPS, 1 - LOSS_EPS)
    return SplitScore(
        n=len(labels),
        accuracy=float(correct.mean()),
        loss=float(-np.log(chosen).mean()),
        majority_accuracy=float(np.bincount(labels, minlength=n_classes).max() / len(labels)),
        predicted=np.bincount(predicted, minlength=n_classes).astype(int).tolist(),
        correct=np.where(correct, "1", "0").astype(object).sum() if len(labels) else "",
    )


class TrainingResult(BaseModel):
    """One sweep training: what it ran and how it scores."""

    rate: float
    placement: str
    seed: int
    dropout_layers: int
    epochs_run: int
    best_epoch: int
    stopped_early: bool
    history: dict[str, list[float]]  # per epoch: loss, accuracy, val_loss, val_accuracy, seconds
    scores: dict[str, SplitScore]  # per non-empty split
    seconds: float

    def degenerate(self, split: str) -> bool:
        return split in self.scores and self.scores[split].one_class


class SeedStat(BaseModel):
    """Mean over seeds, sample std and the 95% t interval (None when it cannot be formed)."""

    mean: float | None
    std: float | None
    low: float | None
    high: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> SeedStat:
        interval = statistics.mean_interval(values)
        bounded = interval.bounded
        return cls(
            mean=interval.estimate,
            std=float(np.std(values, ddof=1)) if len(values) > 1 else None,
            low=interval.low if bounded else None,
            high=interval.high if bounded else None,
            n=len(values),
        )

    def interval(self) -> statistics.Interval:
        low = -math.inf if self.low is None else self.low
        high = math.inf if self.high is None else self.high
        return statistics.Interval(self.mean, low, high)


class ConfigSummary(BaseModel):
    """One trained head of the grid over its seeds."""

    rate: float
    placement: str
    cells: list[str]  # the grid cells it stands for, "rate/placement"
    runs: list[TrainingResult]  # one per seed, in seed order
    degenerate: int  # trainings predicting one class for every selection-split image
    train_accuracy: SeedStat | None
    validation_accuracy: SeedStat | None
    test_accuracy: SeedStat | None
    validation_loss: SeedStat | None
    test_loss: SeedStat | None
    gap_accuracy: SeedStat | None  # train - evaluation accuracy
    epochs_run: SeedStat
    # evaluation images' correctness averaged over the non-degenerate trainings, t interval
    accuracy_over_images: SeedStat | None
    beats_majority: bool  # accuracy_over_images lies above the majority class's accuracy

    def per_seed(self, split: str, metric: str) -> dict[int, float]:
        return {r.seed: getattr(r.scores[split], metric) for r in self.runs if split in r.scores}

    def gap(self, evaluation: str) -> dict[int, float]:
        return {
            r.seed: r.scores["train"].accuracy - r.scores[evaluation].accuracy
            for r in self.runs
            if "train" in r.scores and evaluation in r.scores
        }


class CacheUse(BaseModel):
    dir: str | None
    computed: int
    reused: int


class SweepSummary(BaseModel):
    """The whole sweep: settings, split roles and every config."""

    selection_split: str
    evaluation_split: str
    split_sizes: dict[str, int]
    majority_accuracy: dict[str, float]
    epochs: int  # maximum per training
    patience: int
    grid: str
    seeds: list[int]
    grid_cells: list[dict]
    configs: list[ConfigSummary]
    trainings: int
    degenerate: int
    epochs_total: int
    seconds_total: float
    cache: CacheUse | None = None

    def config(self, rate: float, placement: str) -> ConfigSummary | None:
        """The config row that the grid cell (rate, placement) trains."""
        key = effective(rate, placement)
        return next((c for c in self.configs if (c.rate, c.placement) == key), None)


def split_roles(results: list[TrainingResult]) -> tuple[str, str]:
    """(selection split, evaluation split) of the splits the trainings were scored on."""
    present = set(results[0].scores) if results else set()
    selection = next((s for s in ("validation", "test", "train") if s in present), "train")
    evaluation = next((s for s in ("test", "validation", "train") if s in present), "train")
    return selection, evaluation


def _stat(values: list[float]) -> SeedStat | None:
    return SeedStat.of(values) if values else None


def summarize_config(
    rate: float,
    placement: str,
    cells: list[str],
    runs: list[TrainingResult],
    selection: str,
    evaluation: str,
) -> ConfigSummary:
    """One config over its seeds (see the module docstring)."""
    runs = sorted(runs, key=lambda r: r.seed)

    def scores(split, metric):
        return _stat([getattr(r.scores[split], metric) for r in runs if split in r.scores])

    over_images, beats = None, False
    learned = [r for r in runs if not r.degenerate(selection) and evaluation in r.scores]
    if learned:
        correctness = np.mean([r.scores[evaluation].correctness() for r in learned], axis=0)
        over_images = SeedStat.of(correctness)
        majority = learned[0].scores[evaluation].majority_accuracy
        beats = statistics.beats(over_images.interval(), majority)
    row = ConfigSummary(
        rate=rate,
        placement=placement,
        cells=cells,
        runs=runs,
        degenerate=sum(r.degenerate(selection) for r in runs),
        train_accuracy=scores("train", "accuracy"),
        validation_accuracy=scores("validation", "accuracy"),
        test_accuracy=scores("test", "accuracy"),
        validation_loss=scores("validation", "loss"),
        test_loss=scores("test", "loss"),
        gap_accuracy=None,
        epochs_run=SeedStat.of([r.epochs_run for r in runs]),
        accuracy_over_images=over_images,
        beats_majority=beats,
    )
    row.gap_accuracy = _stat(list(row.gap(evaluation).values()))
    return row
