"""F5, the rate x placement sweep: train the head on cached features for each grid cell.

A grid cell is (dropout rate, placement); each is trained with `len(seeds)` seeds for
`epochs` epochs by `inception_retrain.fit.fit_head` (the training stage's head, loop and seeding, no
early stopping) on the run's cached train split, then scored in inference mode on train,
validation and test.

Rate 0 and placement "none" build the same model (no Dropout layer), so every such cell maps
to the one "no dropout" training, done once per seed. Cells the claims need are added to the
grid when missing (marked `added`): no dropout (F5's reference), and rate 0.5 both after
Dense(1024) only and after both Dense layers (C1's comparison, C4's "p=0.5 on every FC layer").

Comparisons use the validation split (test when there is none), and call two means a tie when
they differ by at most `tie_tolerance`: two standard errors of the difference, and never less
than one example of that split. `beats_majority` says whether any config beat always
predicting the majority class; if none did, the sweep cannot tell configs apart.

Results are stored per training under WORKDIR/sweeps (`inception_retrain.dropout.sweep_store`), so a
rerun on unchanged data reuses them instead of training again; `flows.sweep` does that.

    spec = SweepSpec.from_run(config, cache_dir, manifest_path, n_classes, feature_shape)
    results = [train_cell(spec, cell) for cell in trainings(spec)]   # or flows.sweep
    summary = summarize(spec, results)
"""

from __future__ import annotations

import functools
import gc
import math
import time
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import BaseModel, Field

from inception_retrain.head_spec import PLACEMENTS, DropoutPlacement, HeadSpec

NO_DROPOUT = (0.0, "none")
REQUIRED_CELLS = (NO_DROPOUT, (0.5, "after_dense2"), (0.5, "after_both"))
METRICS = ("loss", "accuracy")
CURVES = ("loss", "accuracy", "val_loss", "val_accuracy")


class SweepSpec(BaseModel):
    """Everything a sweep training needs; JSON-able, so it can be a flow parameter."""

    cache_dir: Path
    manifest_path: Path
    n_classes: int = Field(ge=2)
    feature_shape: tuple[int, ...]
    head: HeadSpec = Field(default_factory=HeadSpec)  # units and learning rate of every cell
    batch_size: int = Field(32, ge=1)
    epochs: int = Field(5, ge=1)
    rates: list[Annotated[float, Field(ge=0.0, lt=1.0)]] = [0.0, 0.2, 0.5, 0.8]
    placements: list[DropoutPlacement] = list(PLACEMENTS)
    seeds: list[int] = Field([0, 1, 2], min_length=1)
    # Where results are cached (WORKDIR/sweeps). None: WORKDIR/sweeps when cache_dir is
    # WORKDIR/cache/<fingerprint>, else no caching.
    sweeps_dir: Path | None = None

    @classmethod
    def from_run(cls, config, cache_dir, manifest_path, n_classes, feature_shape) -> SweepSpec:
        return cls(
            cache_dir=cache_dir,
            manifest_path=manifest_path,
            n_classes=n_classes,
            feature_shape=tuple(feature_shape),
            head=config.head,
            batch_size=config.batch_size,
            epochs=config.sweep_epochs,
            rates=list(config.sweep_rates),
            placements=list(config.sweep_placements),
            seeds=[config.seed + i for i in range(config.sweep_seeds)],
            sweeps_dir=Path(config.workdir) / "sweeps",
        )


class SweepCell(BaseModel):
    """One training of the sweep: an effective (rate, placement) and a seed."""

    rate: float
    placement: str
    seed: int


def effective(rate: float, placement: str) -> tuple[float, str]:
    """The model a cell really builds: rate 0 or placement none is "no dropout"."""
    return NO_DROPOUT if rate == 0.0 or placement == "none" else (float(rate), placement)


def grid(spec: SweepSpec) -> list[dict]:
    """Grid cells in order: the requested ones, then those the claims need (`added`)."""
    cells = [(float(r), p) for r in spec.rates for p in spec.placements]
    requested = {effective(*cell) for cell in cells}
    cells += [cell for cell in REQUIRED_CELLS if cell not in requested]
    rows = []
    for index, (rate, placement) in enumerate(cells):
        eff = effective(rate, placement)
        rows.append(
            {
                "rate": rate,
                "placement": placement,
                "effective_rate": eff[0],
                "effective_placement": eff[1],
                "added": index >= len(spec.rates) * len(spec.placements),
            }
        )
    return rows


def trainings(spec: SweepSpec) -> list[SweepCell]:
    """The distinct trainings the grid needs (each effective config once per seed)."""
    configs = list(dict.fromkeys(effective(r["rate"], r["placement"]) for r in grid(spec)))
    return [SweepCell(rate=r, placement=p, seed=s) for r, p in configs for s in spec.seeds]


@functools.lru_cache(maxsize=1)
def _splits(cache_dir: str, manifest_path: str) -> dict:
    """train/validation/test (features, labels) from the cache, loaded once per process."""
    from inception_retrain.training_data import load_split

    splits = {}
    for split in ("train", "validation", "test"):
        _, features, labels = load_split(Path(cache_dir), Path(manifest_path), split)
        splits[split] = (features, labels)
    return splits


def _score(model, split, n_classes) -> dict | None:
    from inception_retrain.dropout.chain import loss_targets

    features, labels = split
    if len(labels) == 0:
        return None
    scores = model.evaluate(
        features, loss_targets(labels, n_classes), verbose=0, return_dict=True, batch_size=256
    )
    return {metric: float(scores[metric]) for metric in METRICS}


def _majority(labels: np.ndarray) -> float | None:
    """Accuracy of always predicting the split's most common class (the floor to beat)."""
    return float(np.bincount(labels).max() / len(labels)) if len(labels) else None


def train_cell(spec: SweepSpec, cell: SweepCell) -> dict:
    """Train one head of the sweep (`inception_retrain.fit.fit_head`, the training stage's own loop
    and seeding); its learning curves and inference-mode scores."""
    import keras

    from inception_retrain.fit import fit_head

    started = time.perf_counter()
    splits = _splits(str(spec.cache_dir), str(spec.manifest_path))
    model, fitted = fit_head(
        splits["train"],
        splits["validation"] if len(splits["validation"][1]) else None,
        spec=spec.head.with_dropout(cell.rate, cell.placement),
        seed=cell.seed,
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        n_classes=spec.n_classes,
        patience=0,
    )
    history = fitted.history
    result = {
        "rate": cell.rate,
        "placement": cell.placement,
        "seed": cell.seed,
        "split_sizes": {name: int(len(split[1])) for name, split in splits.items()},
        "majority_accuracy": {name: _majority(split[1]) for name, split in splits.items()},
        "dropout_layers": sum(isinstance(x, keras.layers.Dropout) for x in model.layers),
        "history": {key: [float(v) for v in history[key]] for key in CURVES if history.get(key)},
        **{name: _score(model, splits[name], spec.n_classes) for name in splits},
    }
    del model
    gc.collect()
    result["seconds"] = time.perf_counter() - started
    return result


def selection_split(results: list[dict]) -> str:
    """The split comparisons use: validation, else test, else train."""
    for split in ("validation", "test"):
        if results and results[0].get(split) is not None:
            return split
    return "train"


def _stats(values: list[float | None]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0  # sample std
    return {"mean": float(np.mean(values)), "std": spread, "n": len(values)}


def summarize(spec: SweepSpec, results: list[dict], split_sizes: dict | None = None) -> dict:
    """Mean and spread over seeds per config; the grid table; learning curves."""
    split = selection_split(results)
    configs: dict[tuple[float, str], list[dict]] = {}
    for result in results:
        configs.setdefault((result["rate"], result["placement"]), []).append(result)
    summary = []
    for (rate, placement), runs in configs.items():
        row = {"rate": rate, "placement": placement, "seeds": len(runs)}
        for name in ("train", "validation", "test"):
            for metric in METRICS:
                row[f"{name}_{metric}"] = _stats(
                    [r[name][metric] if r[name] else None for r in runs]
                )
        row["gap_accuracy"] = _stats(
            [r["train"]["accuracy"] - r[split]["accuracy"] for r in runs if r["train"] and r[split]]
        )
        row["gap_loss"] = _stats(
            [r[split]["loss"] - r["train"]["loss"] for r in runs if r["train"] and r[split]]
        )
        row["curves"] = {
            key: np.mean([r["history"][key] for r in runs], axis=0).tolist()
            for key in runs[0]["history"]
        }
        summary.append(row)
    sizes = split_sizes or (results[0]["split_sizes"] if results else {})
    majority = results[0]["majority_accuracy"].get(split) if results else None
    best = max((row[f"{split}_accuracy"]["mean"] or 0.0 for row in summary), default=0.0)
    return {
        "selection_split": split,
        "split_sizes": sizes,
        "majority_accuracy": majority,
        # did any config beat always predicting the majority class by more than one example?
        "beats_majority": majority is None or best > majority + 1.0 / max(sizes.get(split, 1), 1),
        "epochs": spec.epochs,
        "seeds": spec.seeds,
        "grid": grid(spec),
        "configs": summary,
        "trainings": len(results),
        "seconds_total": float(sum(r["seconds"] for r in results)),
    }


def find(summary: dict, rate: float, placement: str) -> dict | None:
    """The config row that the grid cell (rate, placement) trains."""
    key = effective(rate, placement)
    for row in summary["configs"]:
        if (row["rate"], row["placement"]) == key:
            return row
    return None


def tie_tolerance(a: dict, b: dict, n_examples: int) -> float:
    """Largest difference of two means ({mean, std, n}) still called a tie."""
    spread = math.sqrt(
        (a["std"] or 0.0) ** 2 / max(a["n"], 1) + (b["std"] or 0.0) ** 2 / max(b["n"], 1)
    )
    return max(2.0 * spread, 1.0 / max(n_examples, 1))
