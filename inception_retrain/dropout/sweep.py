"""F5, C1, C4: the dropout sweep, cross-fitted over every labelled image outside the test split.

The grid (`SweepSpec.grid`):
  * "claims" (default): the cells the claims need: no dropout (F5's and C4's reference),
    Dropout(0.2) after Dense(1024) (the seed's), Dropout(0.5) after Dense(1024) and
    Dropout(0.5) after both Dense layers (C1 compares those two; C4 tests the latter), and the
    run's own head's dropout if it is another (F5 tests the run's own, else the seed's);
  * "full": every rate x placement of `rates` and `placements`, plus the claims' cells when
    missing (marked `added`).
Rate 0 and placement "none" build the same head (no dropout), so such cells map to the one
"no dropout" config.

Cross-fitting (`sweep_plan`): the train and validation images (a stratified sample of
`max_images` above that) are split `repeats` times into `folds` folds. Each config is
trained once per (repeat, fold) on the other folds and predicts the held-out one, so every
config has an out-of-fold prediction for every image in every repeat, and the comparisons of
`effects.py` are paired image by image (`evaluation.crossfit`). The test split is untouched.
The (repeat, fold) training of every config starts from the same seed, `seed + repeat *
folds + fold`: the same initial weights, data order and dropout streams.

A training (`train_cell`) runs the training stage's own loop (`fit.fit`) for a fixed budget
of `epochs` epochs, the same for every config, without early stopping: picking an epoch on a
few images doubled the spread between trainings in the calibration and cost training images
(docs/evidence.md). With `standardize` (the default, as the main head trains) the inputs
are standardised per feature with the training folds' statistics (`training.standardize`),
which keeps the head's first RMSprop steps from killing Dense(512)'s units (the cause of
one-class "degenerate" trainings). Each epoch also scores the held-out fold, which gives the
pooled learning curves that show whether the budget reaches every config's plateau. It runs
on the process's one traced model (`reusable_head.sweep_head`): no model is built, traced
or compiled per training, and no checkpoint or TensorBoard file is written.

Two extra measurements ride on it: every config with dropout adds `mc_passes` MC-dropout
passes over each held-out fold (F4 tests the run's own head's), and C2's order check trains
the seed's config once more (repeat 0, fold 0) with its Dropout before Dense(1024)'s ReLU.

Results are stored per training under WORKDIR/sweeps (`sweep_store`), so a rerun on unchanged
data reuses them instead of training again; `flows.sweep` does that, one Prefect task run per
training it computes.

    spec = config.sweep(cache_dir, manifest_path, n_classes, feature_shape)   # RetrainConfig
    results = [train_cell(spec, cell) for cell in trainings(spec)]   # or flows.sweep
    summary = summarize(spec, results)                               # sweep_summary.py
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, Field

from inception_retrain.dropout.sweep_plan import SweepPlan, sweep_plan
from inception_retrain.dropout.sweep_summary import (
    AFTER,
    BEFORE,
    NO_DROPOUT,
    SweepSummary,
    TrainingResult,
    baseline_checks,
    effective,
    summarize_config,
)
from inception_retrain.plumbing.errors import DataError
from inception_retrain.training.head_spec import PLACEMENTS, DropoutPlacement, HeadSpec

SweepGrid = Literal["claims", "full"]
SEED_CELL = (0.2, "after_dense2")  # the question's Dropout(0.2) after Dense(1024)
END_ONLY, EVERY_LAYER = (0.5, "after_dense2"), (0.5, "after_both")  # C1's pair; C4 tests the 2nd
CLAIM_CELLS = (NO_DROPOUT, SEED_CELL, END_ONLY, EVERY_LAYER)
MIN_PER_FOLD = 2  # held-out images a fold needs at least


class SweepSpec(BaseModel):
    """Everything a sweep training needs; JSON-able, so it can be a flow parameter."""

    cache_dir: Path
    manifest_path: Path
    n_classes: int = Field(ge=2)
    feature_shape: tuple[int, ...]
    head: HeadSpec = Field(default_factory=HeadSpec)  # units and learning rate of every cell
    batch_size: int = Field(32, ge=1)
    epochs: int = Field(10, ge=1)  # the fixed budget of every training
    folds: int = Field(5, ge=2, le=20)
    repeats: int = Field(2, ge=1, le=20)
    seed: int = Field(0, ge=0)  # the (repeat, fold) training uses seed + repeat * folds + fold
    max_images: int | None = Field(2000, ge=10)  # above: a stratified sample of this size
    standardize: bool = True  # inputs standardised with the training folds' statistics
    mc_passes: int = Field(30, ge=0)  # F4: MC-dropout passes per held-out fold (0: none)
    order_check: bool = True  # C2: one more training with the Dropout before the ReLU
    grid: SweepGrid = "claims"
    rates: list[Annotated[float, Field(ge=0.0, lt=1.0)]] = [0.0, 0.2, 0.5, 0.8]  # grid "full"
    placements: list[DropoutPlacement] = list(PLACEMENTS)  # grid "full"
    # Where results are cached (WORKDIR/sweeps). None: WORKDIR/sweeps when cache_dir is
    # WORKDIR/cache/<fingerprint>, else no caching.
    sweeps_dir: Path | None = None

    def seed_of(self, repeat: int, fold: int) -> int:
        return self.seed + repeat * self.folds + fold


class SweepCell(BaseModel):
    """One training of the sweep: an effective (rate, placement), a repeat and a fold."""

    rate: float
    placement: str
    repeat: int
    fold: int
    order: str = AFTER

    @property
    def name(self) -> str:
        order = "-before-relu" if self.order == BEFORE else ""
        return f"{self.placement}-{self.rate:g}{order}-r{self.repeat}f{self.fold}"


class GridCell(BaseModel):
    """A requested (rate, placement) and the head it really trains."""

    rate: float
    placement: str
    effective_rate: float
    effective_placement: str
    added: bool  # not requested, added because a claim needs it


def tested_cell(spec: SweepSpec) -> tuple[float, str]:
    """F5's and F4's dropout: the run's own head's, or the seed's when it has none."""
    own = effective(spec.head.dropout_rate, spec.head.dropout_placement)
    return SEED_CELL if own == NO_DROPOUT else own


def claim_cells(spec: SweepSpec) -> list[tuple[float, str]]:
    """The cells the claims need: CLAIM_CELLS and the run's own head (F5 tests it)."""
    return list(dict.fromkeys([*CLAIM_CELLS, tested_cell(spec)]))


def grid(spec: SweepSpec) -> list[GridCell]:
    """Grid cells in order: the requested ones, then those the claims need (`added`)."""
    cells = claim_cells(spec)
    requested = len(cells)
    if spec.grid == "full":
        cells = [(float(r), p) for r in spec.rates for p in spec.placements]
        requested = len(cells)
        have = {effective(*cell) for cell in cells}
        cells += [cell for cell in claim_cells(spec) if cell not in have]
    return [
        GridCell(
            rate=rate,
            placement=placement,
            effective_rate=effective(rate, placement)[0],
            effective_placement=effective(rate, placement)[1],
            added=index >= requested,
        )
        for index, (rate, placement) in enumerate(cells)
    ]


def configs(spec: SweepSpec) -> list[tuple[float, str]]:
    """The distinct heads the grid trains, in grid order."""
    return list(dict.fromkeys((c.effective_rate, c.effective_placement) for c in grid(spec)))


def trainings(spec: SweepSpec) -> list[SweepCell]:
    """Every training: each config once per (repeat, fold), slot by slot (the configs of one
    slot share its training images, so its statistics are computed once), then C2's check."""
    cells = [
        SweepCell(rate=rate, placement=placement, repeat=repeat, fold=fold)
        for repeat in range(spec.repeats)
        for fold in range(spec.folds)
        for rate, placement in configs(spec)
    ]
    if spec.order_check:
        cells.append(
            SweepCell(rate=SEED_CELL[0], placement=SEED_CELL[1], repeat=0, fold=0, order=BEFORE)
        )
    return cells


def mc_passes_of(spec: SweepSpec, cell: SweepCell) -> int:
    """MC-dropout passes over the held-out fold: every config with dropout gets them (cheap:
    only the layers after Dense(units[0]) run again), so F4 can test whichever config is the
    run's own without training anything again."""
    has_dropout = any(spec.head.with_dropout(cell.rate, cell.placement).rates)
    return spec.mc_passes if has_dropout and cell.order == AFTER else 0


def plan(spec: SweepSpec) -> SweepPlan:
    """The sweep's images and folds (checked: every fold gets at least MIN_PER_FOLD images)."""
    result = _plan(
        str(spec.cache_dir), str(spec.manifest_path), spec.folds, spec.repeats, spec.max_images
    )
    if result.n < spec.folds * MIN_PER_FOLD:
        raise DataError(
            f"the dropout sweep needs at least {spec.folds * MIN_PER_FOLD} train and validation "
            f"images with cached features for {spec.folds} folds, found {result.n}"
        )
    return result


@functools.lru_cache(maxsize=2)
def _plan(cache_dir: str, manifest_path: str, folds: int, repeats: int, max_images) -> SweepPlan:
    return sweep_plan(
        Path(cache_dir), Path(manifest_path), folds=folds, repeats=repeats, max_images=max_images
    )


@functools.lru_cache(maxsize=1)
def _data(
    cache_dir: str, manifest_path: str, folds: int, repeats: int, max_images, batch_size: int
):
    """(features, labels, training split, held-out split) of the plan's images, loaded and
    turned into tf.data pipelines once per process."""
    from inception_retrain.features import feature_parts
    from inception_retrain.plumbing import storage
    from inception_retrain.training.reusable_head import RowSubsetSplit
    from inception_retrain.training.training_data import load_sorted

    chosen = _plan(cache_dir, manifest_path, folds, repeats, max_images)
    wanted = dict(zip(chosen.content_ids, chosen.labels, strict=True))
    location = storage.location(cache_dir)
    stored = np.dtype(feature_parts.read_metadata(location)["dtype"])  # float16 stays float16
    features, labels = load_sorted(location, wanted, chosen.content_ids, stored)
    train = RowSubsetSplit(features, labels, batch_size, shuffle=True)
    held_out = RowSubsetSplit(features, labels, batch_size, shuffle=False, share=train)
    return features, np.asarray(labels), train, held_out


@functools.lru_cache(maxsize=1)
def _statistics(
    cache_dir: str,
    manifest_path: str,
    folds: int,
    repeats: int,
    max_images,
    batch_size: int,
    repeat: int,
    fold: int,
):
    """Per-feature (mean, scale) of one slot's training images."""
    from inception_retrain.training.standardize import feature_statistics

    chosen = _plan(cache_dir, manifest_path, folds, repeats, max_images)
    features = _data(cache_dir, manifest_path, folds, repeats, max_images, batch_size)[0]
    return feature_statistics(features, chosen.training_rows(repeat, fold))


def train_cell(spec: SweepSpec, cell: SweepCell) -> TrainingResult:
    """Train one head of the sweep on the process's traced model and score it."""
    from inception_retrain.evaluation.crossfit import image_outcomes
    from inception_retrain.training.fit import op_determinism
    from inception_retrain.training.reusable_head import sweep_head

    started = time.perf_counter()
    key = (str(spec.cache_dir), str(spec.manifest_path), spec.folds, spec.repeats, spec.max_images)
    chosen = plan(spec)
    features, labels, train, held_out = _data(*key, spec.batch_size)
    rows, held = (
        chosen.training_rows(cell.repeat, cell.fold),
        chosen.held_out_rows(cell.repeat, cell.fold),
    )
    statistics = (
        _statistics(*key, spec.batch_size, cell.repeat, cell.fold) if spec.standardize else None
    )
    head = sweep_head(tuple(spec.feature_shape), spec.n_classes, spec.head, cell.order == BEFORE)
    rates = spec.head.with_dropout(cell.rate, cell.placement).rates
    seed = spec.seed_of(cell.repeat, cell.fold)
    train.rows, train.seed, train.epoch = rows, seed, 0
    held_out.rows, held_out.epoch = held, 0
    # Op determinism without fit.deterministic's re-seeding: every draw here is seeded
    # explicitly, and tf.random.set_seed clears TF's eager caches (each training after the
    # first would start 0.2-0.4 s slower).
    with op_determinism():
        head.reset(seed, rates, statistics)
        fitted = head.train(train, held_out, epochs=spec.epochs, patience=0)
        probabilities = head.predict(features[held])
        train_probabilities = head.predict(features[rows])
        mc_std = None
        if mc_passes_of(spec, cell):
            predicted = probabilities.argmax(axis=1)
            passes = head.mc_predict(features[held], spec.mc_passes)
            mc_std = passes[:, np.arange(len(held)), predicted].std(axis=0).tolist()
    train_accuracy = image_outcomes(train_probabilities, labels[rows])["accuracy"].mean()
    return TrainingResult(
        rate=cell.rate,
        placement=cell.placement,
        order=cell.order,
        repeat=cell.repeat,
        fold=cell.fold,
        seed=seed,
        dropout_layers=sum(rate > 0 for rate in rates),
        epochs_run=fitted.epochs_run,
        history={
            key: fitted.history[key]
            for key in ("loss", "accuracy", "val_loss", "val_accuracy", "seconds")
            if key in fitted.history
        },
        held_out=held.tolist(),
        probabilities=probabilities.tolist(),
        mc_std=mc_std,
        train_accuracy=float(train_accuracy),
        n_train=len(rows),
        seconds=time.perf_counter() - started,
    )


def summarize(spec: SweepSpec, results: list[TrainingResult]) -> SweepSummary:
    """Group the trainings by config (grid order) and summarise each over its slots."""
    return summarize_plan(spec, plan(spec), results)


def summarize_plan(spec: SweepSpec, chosen: SweepPlan, results: list[TrainingResult]):
    """`summarize` with the plan the trainings ran on given."""
    cells = grid(spec)
    main = [r for r in results if r.order == AFTER]
    by_config: dict[tuple[float, str], list[TrainingResult]] = {}
    for result in main:
        by_config.setdefault((result.rate, result.placement), []).append(result)
    order = [key for key in configs(spec) if key in by_config]
    order += [key for key in by_config if key not in order]
    names = {
        key: [
            f"{c.rate:g}/{c.placement}"
            for c in cells
            if (c.effective_rate, c.effective_placement) == key
        ]
        for key in order
    }
    by_config = {key: by_config[key] for key in order}
    checks = baseline_checks(chosen, spec.repeats, by_config)
    labels = np.asarray(chosen.labels)
    majority = _majority_accuracy(labels, chosen.fold_array())
    return SweepSummary(
        folds=spec.folds,
        repeats=spec.repeats,
        epochs=spec.epochs,
        standardize=spec.standardize,
        grid=spec.grid,
        grid_cells=[cell.model_dump() for cell in cells],
        plan=chosen,
        majority_accuracy=majority,
        configs=[
            summarize_config(key, names[key], by_config[key], chosen, spec.repeats, checks[key])
            for key in order
        ],
        results=main,
        order_check=[r for r in results if r.order == BEFORE],
        tested=tested_cell(spec) if spec.mc_passes else None,
        trainings=len(results),
        degenerate=sum(r.degenerate for r in results),
        epochs_total=sum(r.epochs_run for r in results),
        seconds_total=float(sum(r.seconds for r in results)),
        epoch_seconds_total=float(sum(r.epoch_seconds for r in results)),
    )


def _majority_accuracy(labels: np.ndarray, folds: np.ndarray) -> float:
    from inception_retrain.evaluation.crossfit import majority_correct

    return float(majority_correct(labels, folds).mean())
