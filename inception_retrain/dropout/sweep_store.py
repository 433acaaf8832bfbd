"""The sweep result cache: each sweep training's result, stored once, reused by later runs.

A sweep training (`sweep.train_cell`) is deterministic: the same cached features, training
rows, head settings and seed give the same result on one machine (op determinism,
`fit.deterministic`). So its result is stored and a rerun on unchanged data trains nothing:

    WORKDIR/sweeps/<data-key>/key.json                      what <data-key> stands for
    WORKDIR/sweeps/<data-key>/<placement>-<rate>-r<repeat>f<fold>-<cell-key>.json   one training

`<data-key>` covers what every training of a sweep shares:
  * the feature cache's backbone fingerprint (weights content, layer, image size,
    preprocessing, stored dtype, feature shape) and its stored dtype and feature shape;
  * the training rows: sha256 of the sorted (content_id, label_index, split) of the
    manifest's ok rows that are in the feature cache (the rows `load_split` returns; with
    every row cached it is the manifest's own fingerprint);
  * the code: `CODE_VERSION` (bump it when the training or the result format changes), the
    sha256 of the modules that train and score (`TRAINING_MODULES`, so an edit there is
    never answered with old results) and the installed TensorFlow/Keras/NumPy versions.
`<cell-key>` adds the training's own inputs: effective rate and placement, the Dropout's
order (C2's check), repeat and fold and the design that fixes their images (folds, repeats,
sample cap), the seed, the epoch budget, standardisation, MC-dropout passes (configs with
dropout), batch size, learning rate, hidden units and n_classes. A grid that grows reuses the
cells it already has. Not in the key: the device (CPU and GPU kernels
differ by float rounding; the numbers stay valid measurements, but bit-equality with a
recomputation holds per device).

Files are written atomically (`files.write_json`). A file that does not parse, does not hold a
valid `TrainingResult`, or whose stored key differs from the expected one, is a miss: the
training runs again and replaces it. Concurrent runs may both train a missing cell; both write
the same result.

Why not Prefect's task cache (cache_key_fn, persisted results): it would give the same keys and
the same recompute-on-unreadable behaviour, but every reused training would still be a task run
that goes through the task engine (and, mapped, through the Dask cluster); the store is read in
the flow before anything is submitted, so a rerun on unchanged data creates no sweep task run.

    store = SweepStore.for_spec(spec)          # None: no WORKDIR known, nothing cached
    result = store.load(spec, cell)            # None when not stored
    store.save(spec, cell, train_cell(spec, cell))
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel, ValidationError

from inception_retrain.dropout.sweep_summary import TrainingResult
from inception_retrain.plumbing.files import read_json, sha256_file, write_json

CODE_VERSION = 3  # bump when a sweep training or its stored result changes meaning
KEY_FILE = "key.json"
TRAINING_MODULES = (
    "inception_retrain.dropout.sweep",
    "inception_retrain.dropout.sweep_plan",
    "inception_retrain.evaluation.crossfit",
    "inception_retrain.training.standardize",
    "inception_retrain.training.reusable_head",
    "inception_retrain.dropout.sweep_summary",
    "inception_retrain.training.fit",
    "inception_retrain.training.head",
    "inception_retrain.training.head_spec",
    "inception_retrain.training.fused_rmsprop",
    "inception_retrain.training.training_data",
)
PACKAGES = ("tensorflow", "tensorflow-cpu", "keras", "numpy")

log = logging.getLogger(__name__)


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _as_json(value):
    """`value` as it reads back from JSON (tuples become lists), for key comparisons."""
    return json.loads(json.dumps(value, sort_keys=True))


def default_sweeps_dir(cache_dir: Path) -> Path | None:
    """WORKDIR/sweeps for a feature cache at WORKDIR/cache/<fingerprint>, else None."""
    cache_dir = Path(cache_dir)
    return cache_dir.parent.parent / "sweeps" if cache_dir.parent.name == "cache" else None


def training_rows_fingerprint(cache_dir: Path, manifest_path: Path) -> str:
    """sha256 over the sorted (content_id, label_index, split) of the manifest's ok rows
    that have cached features: exactly the rows a sweep trains and scores on."""
    from inception_retrain.data.manifest import keys_fingerprint, read_image_rows
    from inception_retrain.features.feature_parts import cached_ids

    cached = cached_ids(cache_dir)
    rows = read_image_rows(manifest_path)
    keys = zip(rows.content_ids, rows.label_indices, rows.splits, strict=True)
    return keys_fingerprint(key for key in keys if key[0] in cached)


def code_fingerprint() -> dict:
    """CODE_VERSION, the training modules' source hashes and the numeric packages' versions."""
    sources = {}
    for name in TRAINING_MODULES:
        origin = importlib.util.find_spec(name).origin
        sources[name] = sha256_file(origin)[:16]
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return {"code_version": CODE_VERSION, "sources": sources, "packages": versions}


def cell_inputs(spec, cell) -> dict:
    """The inputs of one training beyond the shared data key."""
    from inception_retrain.dropout.sweep import mc_passes_of

    return _as_json(
        {
            "rate": float(cell.rate),
            "placement": cell.placement,
            "order": cell.order,
            "repeat": int(cell.repeat),
            "fold": int(cell.fold),
            "folds": spec.folds,
            "repeats": spec.repeats,
            "max_images": spec.max_images,
            "seed": spec.seed_of(cell.repeat, cell.fold),
            "epochs": spec.epochs,
            "standardize": spec.standardize,
            "mc_passes": mc_passes_of(spec, cell),
            "batch_size": spec.batch_size,
            "head": spec.head.model_dump(
                mode="json", exclude={"dropout_rate", "dropout_placement"}
            ),
            "n_classes": spec.n_classes,
        }
    )


class SweepStore(BaseModel):
    """One data key's folder under WORKDIR/sweeps; JSON-able (a task parameter)."""

    directory: Path
    data_key: dict

    @classmethod
    def for_spec(cls, spec) -> SweepStore | None:
        """The store for `spec`'s data, or None when no sweeps folder is known (the spec
        has no `sweeps_dir` and its cache is not at WORKDIR/cache/<fingerprint>) or the
        cache records no backbone fingerprint."""
        from inception_retrain.features.feature_parts import read_metadata

        root = spec.sweeps_dir or default_sweeps_dir(spec.cache_dir)
        if root is None:
            return None
        cache_meta = read_metadata(Path(spec.cache_dir))
        if not cache_meta.get("fingerprint"):
            return None
        data_key = _as_json(
            {
                "backbone_fingerprint": cache_meta["fingerprint"],
                "feature_dtype": cache_meta["dtype"],
                "feature_shape": list(cache_meta["feature_shape"]),
                "training_rows": training_rows_fingerprint(spec.cache_dir, spec.manifest_path),
                **code_fingerprint(),
            }
        )
        store = cls(directory=Path(root) / _digest(data_key)[:16], data_key=data_key)
        if not (store.directory / KEY_FILE).is_file():
            write_json(store.directory / KEY_FILE, data_key)
        return store

    def path(self, spec, cell) -> Path:
        key = _digest(cell_inputs(spec, cell))[:12]
        return self.directory / f"{cell.name}-{key}.json"

    def load(self, spec, cell) -> TrainingResult | None:
        """The stored result of this training, or None (absent, unreadable or another key)."""
        path = self.path(spec, cell)
        if not path.is_file():
            return None
        expected = {"data": self.data_key, "cell": cell_inputs(spec, cell)}
        try:
            stored = read_json(path)
            if stored["key"] == expected:
                return TrainingResult.model_validate(stored["result"])
        except (OSError, ValueError, KeyError, TypeError, ValidationError):
            pass
        log.warning("sweep cache: %s is unreadable or for other inputs; training again", path)
        return None

    def save(self, spec, cell, result: TrainingResult) -> Path:
        key = {"data": self.data_key, "cell": cell_inputs(spec, cell)}
        return write_json(self.path(spec, cell), {"key": key, "result": result.model_dump()})
