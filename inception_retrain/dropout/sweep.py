"""F5, the dropout sweep: the head trained on cached features for each (rate, placement) cell.

The grid (`SweepSpec.grid`):
  * "claims" (default): the cells the claims need: no dropout (F5's and C4's reference),
    Dropout(0.2) after Dense(1024) (the seed's), Dropout(0.5) after Dense(1024) and
    Dropout(0.5) after both Dense layers (C1 compares those two; C4 tests the latter), and the
    run's own head's dropout if it is another (F5 tests the run's own, else the seed's);
  * "full": every rate x placement of `rates` and `placements`, plus the claims' cells when
    missing (marked `added`).
Rate 0 and placement "none" build the same head (no dropout), so such cells map to the one
"no dropout" training per seed.

Each cell is trained once per seed in `seeds`. A seed fixes the initial weights, the data
order and the dropout masks' stream, the same for every cell, so cells are compared seed by
seed (`evaluation.statistics`). A training (`train_cell`) is the training stage's own
loop (`fit.fit`): up to `epochs` epochs, early stopping on validation loss with `patience`
and the best epoch's weights restored (without a validation split: every epoch, last
weights). It runs on the process's one traced model (`sweep_model.sweep_head`): no model is
built, traced or compiled per training, and no checkpoint or TensorBoard file is written.
It is then scored in inference mode on train, validation and test (`sweep_summary`).

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

from pydantic import BaseModel, Field

from inception_retrain.dropout.sweep_summary import (
    NO_DROPOUT,
    SweepSummary,
    TrainingResult,
    effective,
    score_split,
    split_roles,
    summarize_config,
)
from inception_retrain.training.head_spec import PLACEMENTS, DropoutPlacement, HeadSpec

SweepGrid = Literal["claims", "full"]
SEED_CELL = (0.2, "after_dense2")  # the question's Dropout(0.2) after Dense(1024)
END_ONLY, EVERY_LAYER = (0.5, "after_dense2"), (0.5, "after_both")  # C1's pair; C4 tests the 2nd
CLAIM_CELLS = (NO_DROPOUT, SEED_CELL, END_ONLY, EVERY_LAYER)
SPLITS = ("train", "validation", "test")


class SweepSpec(BaseModel):
    """Everything a sweep training needs; JSON-able, so it can be a flow parameter."""

    cache_dir: Path
    manifest_path: Path
    n_classes: int = Field(ge=2)
    feature_shape: tuple[int, ...]
    head: HeadSpec = Field(default_factory=HeadSpec)  # units and learning rate of every cell
    batch_size: int = Field(32, ge=1)
    epochs: int = Field(20, ge=1)  # the most a training runs; early stopping may end it sooner
    patience: int = Field(3, ge=0)  # early-stopping patience on validation loss (0: off)
    grid: SweepGrid = "claims"
    rates: list[Annotated[float, Field(ge=0.0, lt=1.0)]] = [0.0, 0.2, 0.5, 0.8]  # grid "full"
    placements: list[DropoutPlacement] = list(PLACEMENTS)  # grid "full"
    seeds: list[int] = Field([0, 1, 2, 3, 4], min_length=1)
    # Where results are cached (WORKDIR/sweeps). None: WORKDIR/sweeps when cache_dir is
    # WORKDIR/cache/<fingerprint>, else no caching.
    sweeps_dir: Path | None = None


class SweepCell(BaseModel):
    """One training of the sweep: an effective (rate, placement) and a seed."""

    rate: float
    placement: str
    seed: int


class GridCell(BaseModel):
    """A requested (rate, placement) and the head it really trains."""

    rate: float
    placement: str
    effective_rate: float
    effective_placement: str
    added: bool  # not requested, added because a claim needs it


def tested_cell(spec: SweepSpec) -> tuple[float, str]:
    """F5's dropout: the run's own head's, or the seed's when the run's head has none."""
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
    """The distinct trainings the grid needs (each effective config once per seed)."""
    return [SweepCell(rate=r, placement=p, seed=s) for r, p in configs(spec) for s in spec.seeds]


@functools.lru_cache(maxsize=1)
def _training_splits(cache_dir: str, manifest_path: str, batch_size: int) -> tuple:
    """(train, validation or None) as `ReusedSplit`s, built once per process."""
    from inception_retrain.training.reusable_head import ReusedSplit

    splits = _splits(cache_dir, manifest_path)
    (x, y), (xv, yv) = splits["train"], splits["validation"]
    train = ReusedSplit(x, y, batch_size, seed=0, shuffle=True)
    validation = ReusedSplit(xv, yv, batch_size, seed=0, shuffle=False) if len(yv) else None
    return train, validation


@functools.lru_cache(maxsize=1)
def _splits(cache_dir: str, manifest_path: str) -> dict:
    """train/validation/test (features, labels) from the cache, loaded once per process."""
    from inception_retrain.training.training_data import load_split

    splits = {}
    for split in SPLITS:
        _, features, labels = load_split(Path(cache_dir), Path(manifest_path), split)
        splits[split] = (features, labels)
    return splits


def train_cell(spec: SweepSpec, cell: SweepCell) -> TrainingResult:
    """Train one head of the sweep on the process's traced model and score it."""
    from inception_retrain.training.fit import op_determinism
    from inception_retrain.training.reusable_head import sweep_head

    started = time.perf_counter()
    splits = _splits(str(spec.cache_dir), str(spec.manifest_path))
    train, validation = _training_splits(
        str(spec.cache_dir), str(spec.manifest_path), spec.batch_size
    )
    head = sweep_head(tuple(spec.feature_shape), spec.n_classes, spec.head)
    rates = spec.head.with_dropout(cell.rate, cell.placement).rates
    for split in (train, validation):
        if split is not None:  # this training's data order (validation is not shuffled)
            split.seed, split.epoch = cell.seed, 0
    # Op determinism without fit.deterministic's re-seeding: every draw here is seeded
    # explicitly, and tf.random.set_seed clears TF's eager caches (each training after the
    # first would start 0.2-0.4 s slower).
    with op_determinism():
        head.reset(cell.seed, rates)
        fitted = head.train(train, validation, epochs=spec.epochs, patience=spec.patience)
    scores = {
        name: score_split(head.predict(features), labels, spec.n_classes)
        for name, (features, labels) in splits.items()
        if len(labels)
    }
    return TrainingResult(
        rate=cell.rate,
        placement=cell.placement,
        seed=cell.seed,
        dropout_layers=sum(rate > 0 for rate in rates),
        epochs_run=fitted.epochs_run,
        best_epoch=fitted.best_epoch,
        stopped_early=fitted.stopped_early,
        history={
            key: fitted.history[key]
            for key in ("loss", "accuracy", "val_loss", "val_accuracy", "seconds")
            if key in fitted.history
        },
        scores=scores,
        seconds=time.perf_counter() - started,
    )


def summarize(spec: SweepSpec, results: list[TrainingResult]) -> SweepSummary:
    """Group the trainings by config (grid order) and summarise each over its seeds."""
    selection, evaluation = split_roles(results)
    cells = grid(spec)
    by_config: dict[tuple[float, str], list[TrainingResult]] = {}
    for result in results:
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
    first = results[0].scores if results else {}
    return SweepSummary(
        selection_split=selection,
        evaluation_split=evaluation,
        split_sizes={name: score.n for name, score in first.items()},
        majority_accuracy={name: score.majority_accuracy for name, score in first.items()},
        epochs=spec.epochs,
        patience=spec.patience,
        grid=spec.grid,
        seeds=list(spec.seeds),
        grid_cells=[cell.model_dump() for cell in cells],
        configs=[
            summarize_config(*key, names[key], by_config[key], selection, evaluation)
            for key in order
        ],
        trainings=len(results),
        degenerate=sum(r.degenerate(selection) for r in results),
        epochs_total=sum(r.epochs_run for r in results),
        seconds_total=float(sum(r.seconds for r in results)),
    )
