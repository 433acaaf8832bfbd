"""What augmented views did to the head: training without views against training with them,
paired over seeds, scored on the test split.

    effect = measure_effect(manifest, cache, head.training, seeds=5)  # cache.views: K > 0
    effect.metric("accuracy").verdict                      # "holds", "fails" or "inconclusive"

For each of `seeds` seeds s = `training.seed`, `training.seed + 1`, ... the run's head
(`training.head`: units, dropout, learning rate) is trained twice from the same
initial weights, data order and dropout masks: once on the train split's originals only
(K = 0), once drawing each epoch one of each train image's K + 1 cached rows (the views the
run extracted, `training_data`); both with the run's epochs, batch size and early stopping on
validation loss (best weights restored), as the training stage trains. The trainings run on
the reusable compiled head (`reusable_head.sweep_head`, re-initialised in place
per seed: bit-identical to a fresh `fit.fit_head` of that seed on a CPU), so the training
with views at the run's seed is the run's own head when the stage trained in memory.

Each training is scored in inference mode on the test split (accuracy, log loss, ECE:
`metrics`) and on the train split's originals (train accuracy - test accuracy is the
overfitting gap). Per metric, each seed gives one paired difference oriented so that positive
means the views helped (accuracy: with - without; log loss, ECE and the gap: without - with),
and `statistics.paired_difference` gives its mean with a 95% t interval and the effect size
d_z. The claim "the views improve <metric>" is then decided by `statistics.decide` at 0:
holds (the interval lies above 0), fails (below: the views made it worse) or inconclusive
(the interval contains 0, or fewer than two seeds). Trainings that predict one class for
every test image are counted (`degenerate`); they stay in the pairs, and the report says so.

Augmentation and dropout (`overfitting`): when the run's head has dropout, the same seeds also
train it without dropout, without and with the views, so the four heads {no dropout,
dropout} x {no views, views} answer the dropout report's F5 companion on the overfitting
gap, each claim decided by the same rule: does dropout alone shrink it, do the views alone,
do the views shrink it more than dropout does, and does dropout shrink it further on top of
the views. This doubles the trainings; a head without dropout trains only the first two.

The result goes into evaluation.json (`augmentation`, owned by `evaluation`) and from there
into evaluation.md/.html.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel

from inception_retrain.data.manifest import Manifest, read_image_rows
from inception_retrain.evaluation import metrics as M
from inception_retrain.evaluation import statistics
from inception_retrain.features import feature_cache
from inception_retrain.features.feature_cache import FeatureCache
from inception_retrain.plumbing.errors import DataError
from inception_retrain.training.training_data import IN_MEMORY, load_split, load_training_data
from inception_retrain.training.training_spec import TrainingSpec

# (metric, what better means, the claim's verb and object): the test split's scores and the
# overfitting gap
METRICS: tuple[tuple[str, Literal["higher", "lower"], str], ...] = (
    ("accuracy", "higher", "raise the test accuracy"),
    ("log_loss", "lower", "lower the test log loss"),
    ("ece", "lower", "lower the test calibration error (ECE)"),
    ("gap", "lower", "shrink the overfitting gap (train accuracy - test accuracy)"),
)


class Training(BaseModel):
    """One training of the comparison and its scores."""

    seed: int
    views: int  # views per image it drew from (0: originals only)
    dropout: bool  # the run's dropout (False: the same head without dropout)
    epochs_run: int
    best_epoch: int
    scores: dict[str, float]  # accuracy, log_loss, ece (test) and gap
    degenerate: bool  # predicted one class for every test image
    seconds: float


class MetricEffect(BaseModel):
    """The paired effect of one change (views, dropout) on one metric: `compared` against
    `reference` per seed; a positive improvement means the change helped."""

    metric: str
    better: Literal["higher", "lower"]
    claim: str  # what "holds" would mean, in words
    reference_label: str
    compared_label: str
    seeds: list[int]
    reference: list[float]  # per seed, in `seeds` order
    compared: list[float]
    mean_reference: float | None
    mean_compared: float | None
    improvement: float | None  # mean over seeds of the oriented difference
    low: float | None  # 95% t interval of `improvement` (None when it cannot be formed)
    high: float | None
    effect_size: float | None  # d_z
    verdict: str  # statistics.HOLDS / FAILS / INCONCLUSIVE

    @property
    def interval(self) -> statistics.Interval:
        low = -np.inf if self.low is None else self.low
        high = np.inf if self.high is None else self.high
        return statistics.Interval(self.improvement, low, high)


class AugmentationEffect(BaseModel):
    """Training with the run's views against training without, on the test split."""

    views: int  # K
    policy_fingerprint: str
    policy: dict
    seeds: list[int]
    epochs: int
    patience: int
    batch_size: int
    n_train: int
    n_view_rows: int
    n_test: int
    data_mode: str
    metrics: list[MetricEffect]  # the run's head: no views against K views
    overfitting: list[MetricEffect]  # the gap: views and dropout (empty: the head has none)
    trainings: list[Training]
    degenerate: dict[str, int]  # {"without": n, "with": n} views, the run's head
    seconds: float

    def metric(self, name: str) -> MetricEffect:
        return next(m for m in self.metrics if m.metric == name)


def _scores(probabilities, labels, train_probabilities, train_labels) -> dict[str, float]:
    test_accuracy = float(np.mean(probabilities.argmax(axis=1) == labels))
    train_accuracy = float(np.mean(train_probabilities.argmax(axis=1) == train_labels))
    return {
        "accuracy": test_accuracy,
        "log_loss": M.log_loss(labels, probabilities),
        "ece": M.calibration(labels, probabilities)["ece"],
        "gap": train_accuracy - test_accuracy,
    }


def compare(
    name: str,
    better: str,
    claim: str,
    seeds: Sequence[int],
    reference: dict,
    compared: dict,
    labels: tuple[str, str] = ("without views", "with views"),
) -> MetricEffect:
    """The paired effect of one change on one metric from per-seed values."""
    sign = 1.0 if better == "higher" else -1.0
    oriented = statistics.paired_difference(
        {s: sign * compared[s] for s in seeds}, {s: sign * reference[s] for s in seeds}
    )
    decision = statistics.decide(oriented.interval, statistics.threshold_for(statistics.BETTER, 0))
    bounded = oriented.interval.bounded
    return MetricEffect(
        metric=name,
        better=better,
        claim=claim,
        reference_label=labels[0],
        compared_label=labels[1],
        seeds=list(seeds),
        reference=[reference[s] for s in seeds],
        compared=[compared[s] for s in seeds],
        mean_reference=float(np.mean([reference[s] for s in seeds])) if seeds else None,
        mean_compared=float(np.mean([compared[s] for s in seeds])) if seeds else None,
        improvement=oriented.mean,
        low=oriented.interval.low if bounded else None,
        high=oriented.interval.high if bounded else None,
        effect_size=oriented.effect_size,
        verdict=decision.outcome,
    )


def _overfitting(k: int, seeds: list[int], gap) -> list[MetricEffect]:
    """The F5 companion's claims on the gap, from `gap(views, dropout, seed)`."""
    cells = {  # name: (reference, compared, claim)
        "dropout": ((0, False), (0, True), "dropout alone shrinks the overfitting gap"),
        "views": ((0, False), (k, False), f"{k} views alone shrink the overfitting gap"),
        "views vs dropout": ((0, True), (k, False), f"{k} views shrink the gap more than dropout"),
        "both vs views": ((k, False), (k, True), f"dropout shrinks the gap further with {k} views"),
    }

    def label(cell: tuple[int, bool]) -> str:
        return f"{'dropout' if cell[1] else 'no dropout'}, {cell[0]} views"

    return [
        compare(
            f"gap: {name}",
            "lower",
            claim,
            seeds,
            {s: gap(*reference, s) for s in seeds},
            {s: gap(*compared, s) for s in seeds},
            (label(reference), label(compared)),
        )
        for name, (reference, compared, claim) in cells.items()
    ]


def _train(head, data, seed: int, rates, training: TrainingSpec, test, train, statistics) -> tuple:
    """One training on `data` from `seed`'s start; (FitResult, test probabilities, scores).
    `statistics`: the inputs' standardisation, as the training stage's (None: raw)."""
    from inception_retrain.training.fit import op_determinism

    for split in (data.train, data.validation):
        if split is not None:  # this training's data order and view draws
            split.seed, split.epoch = seed, 0
    with op_determinism():
        head.reset(seed, rates, statistics)
        fitted = head.train(
            data.train, data.validation, epochs=training.epochs, patience=training.patience
        )
    probabilities = head.predict(test[0])
    return fitted, probabilities, _scores(probabilities, test[1], head.predict(train[0]), train[1])


def measure_effect(manifest: Manifest, cache: FeatureCache, training: TrainingSpec, seeds: int):
    """Train and score the run's head (`training`) without and with the cache's views, for
    `seeds` seeds from `training.seed` (and, if the head has dropout, the same head without
    dropout both ways)."""
    from inception_retrain.training.reusable_head import sweep_head
    from inception_retrain.training.standardize import feature_statistics

    if cache.views is None or not cache.views.per_image:
        raise DataError("the augmentation effect needs a run with --augment-views > 0")
    started = time.perf_counter()
    k = cache.views.per_image
    seed_list = [training.seed + i for i in range(seeds)]
    dropouts = (True, False) if training.head.has_dropout else (True,)
    train_rows = read_image_rows(manifest.path, "train").label_of()
    val_rows = read_image_rows(manifest.path, "validation").label_of()
    trainings: list[Training] = []
    view_rows, mode = 0, IN_MEMORY
    with feature_cache.reading(cache.cache_dir):
        _, test_x, test_y = load_split(cache.cache_dir, manifest.path, "test")
        _, train_x, train_y = load_split(cache.cache_dir, manifest.path, "train")
        if not len(test_y):
            raise DataError("the test split has no cached features: nothing to compare on")
        head = sweep_head(tuple(cache.feature_shape), manifest.n_classes, training.head)
        statistics = feature_statistics(train_x) if training.standardize else None
        for views in (0, k):  # one data set at a time: memory
            data = load_training_data(
                cache.cache_dir,
                train_rows,
                val_rows,
                batch_size=training.batch_size,
                seed=training.seed,
                memory_budget_mb=training.memory_budget_mb,
                views_dir=cache.views.views_dir if views else None,
                views_per_image=views,
            )
            view_rows, mode = max(view_rows, data.view_rows), data.mode
            for dropout, seed in ((d, s) for d in dropouts for s in seed_list):
                begun = time.perf_counter()
                rates = training.head.rates if dropout else (0.0, 0.0)
                fitted, probabilities, scores = _train(
                    head,
                    data,
                    seed,
                    rates,
                    training,
                    (test_x, test_y),
                    (train_x, train_y),
                    statistics,
                )
                trainings.append(
                    Training(
                        seed=seed,
                        views=views,
                        dropout=dropout,
                        epochs_run=fitted.epochs_run,
                        best_epoch=fitted.best_epoch,
                        scores=scores,
                        degenerate=len(set(probabilities.argmax(axis=1))) <= 1,
                        seconds=time.perf_counter() - begun,
                    )
                )
    by = {(t.views, t.dropout, t.seed): t for t in trainings}
    effects = [
        compare(
            name,
            better,
            f"{k} views per image {wording}",
            seed_list,
            {s: by[(0, True, s)].scores[name] for s in seed_list},
            {s: by[(k, True, s)].scores[name] for s in seed_list},
        )
        for name, better, wording in METRICS
    ]
    overfitting = []
    if len(dropouts) == 2:
        overfitting = _overfitting(k, seed_list, lambda v, d, s: by[(v, d, s)].scores["gap"])
    own = [t for t in trainings if t.dropout]
    return AugmentationEffect(
        views=k,
        policy_fingerprint=cache.views.policy_fingerprint,
        policy=cache.views.policy.model_dump(mode="json"),
        seeds=seed_list,
        epochs=training.epochs,
        patience=training.patience,
        batch_size=training.batch_size,
        n_train=len(train_y),
        n_view_rows=view_rows,
        n_test=len(test_y),
        data_mode=mode,
        metrics=effects,
        overfitting=overfitting,
        trainings=trainings,
        degenerate={
            "without": sum(t.degenerate for t in own if t.views == 0),
            "with": sum(t.degenerate for t in own if t.views),
        },
        seconds=time.perf_counter() - started,
    )
