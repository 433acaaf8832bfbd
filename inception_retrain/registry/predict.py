"""Batch prediction with an exported model: image files or folders in, a CSV/Parquet table out.

`predict_files(model_dir, paths, output)` loads `model_dir/model.keras` (safe mode) and
`labels.json`, finds files with `image_files.find_files` and checks each with
`images.examine`, the same finder and validator as ingestion, so a file is found, or
refused for the same reason, in both. It writes one row per file:

    path, status (ok|error), error (the reason, as in ingest's skipped.csv), detail,
    p_<class>..., predicted, predicted_index, confidence

A file that cannot be used gets `status=error` and its reason; it is never fatal. The output
format follows the suffix (`.csv`, or `.parquet`/`.pq`) and is written atomically.

    summary = predict_files(Path("workdir/models/v0001-..."), [Path("photos/")], Path("out.csv"))
    summary["n_ok"], summary["n_failed"]

On a cluster the same work is split: `find_inputs`, then `predict_shard` per shard of files
(any process; the model is loaded once per process, `process_model`), then
`write_predictions` joins the shards' rows in input order and writes the output once, so a
retried shard never adds a row twice.

The model resizes internally, so images of any size are accepted; images of the same size
are batched together.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from pydantic import BaseModel

from inception_retrain.data.image_files import find_files
from inception_retrain.data.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIZE, examine
from inception_retrain.evaluation.predictions import predictions_table
from inception_retrain.features.backbone import inference_function
from inception_retrain.plumbing.errors import DataError, PipelineError
from inception_retrain.plumbing.files import atomic_file, read_json
from inception_retrain.training.head import probabilities_to_scores

OUTPUT_SUFFIXES = (".csv", ".parquet", ".pq")


def load_inference_model(model_dir: Path):
    """(model, class_names) of an exported version folder; safe mode on."""
    import keras

    model_dir = Path(model_dir)
    try:
        class_names = read_json(model_dir / "labels.json")["class_names"]
        model = keras.saving.load_model(model_dir / "model.keras", safe_mode=True)
    except (OSError, ValueError, KeyError) as error:
        raise PipelineError(f"cannot load the model in {model_dir}: {error}") from None
    return model, list(class_names)


def predict_arrays(infer, images: Sequence[np.ndarray], n_classes: int, batch_size: int = 16):
    """Per-class probabilities (N, K) for decoded RGB images (batches of same-size images).

    `infer` maps a float32 batch to the model's output: `backbone.inference_function(model)`,
    one traced graph for any image size (several times faster than eager calls on single
    images, the same numbers up to float rounding).
    """
    results: list[np.ndarray | None] = [None] * len(images)
    start = 0
    while start < len(images):
        shape = images[start].shape
        stop = start + 1
        while stop < len(images) and stop - start < batch_size and images[stop].shape == shape:
            stop += 1
        batch = np.stack(images[start:stop]).astype(np.float32)
        raw = np.asarray(infer(batch))
        for offset, row in enumerate(probabilities_to_scores(raw, n_classes)):
            results[start + offset] = row
        start = stop
    return np.stack(results) if results else np.zeros((0, n_classes))


class PredictionInputs(BaseModel):
    """The files to score (str: local paths or URIs) and the folders that could not be read."""

    files: list[str]
    unreadable: list[tuple[str, str]]  # (folder, why)

    def shards(self, files_per_shard: int) -> list[list[str]]:
        return [
            self.files[start : start + files_per_shard]
            for start in range(0, len(self.files), files_per_shard)
        ]


def find_inputs(paths: Sequence[str | Path]) -> PredictionInputs:
    """Every candidate file under `paths` (a DataError if there is none)."""
    found = find_files(paths)
    if not found.files and not found.unreadable:
        raise DataError(f"no image files found in {', '.join(map(str, paths)) or '(nothing)'}")
    return PredictionInputs(files=[str(f) for f in found.files], unreadable=found.unreadable)


_MODELS: dict[str, tuple] = {}


def process_model(model_dir: Path):
    """(class names, traced inference function) of a model folder, loaded once per process
    (a Dask worker scoring many shards loads the model once)."""
    key = str(Path(model_dir).absolute())
    if key not in _MODELS:
        model, class_names = load_inference_model(Path(model_dir))
        _MODELS[key] = (class_names, inference_function(model))
    return _MODELS[key]


def predict_shard(
    model_dir: Path, files: Sequence[str], chunk: int = 64, min_size: int = DEFAULT_MIN_SIZE
) -> pa.Table:
    """One row per file of `files`, in order: probabilities, or the reason it failed.

    Depends only on `files` and the model, so a retried shard gives the same rows."""
    class_names, infer = process_model(model_dir)
    n_classes = len(class_names)
    probabilities = np.full((len(files), n_classes), np.nan)
    reasons, details = [""] * len(files), [""] * len(files)
    for begin in range(0, len(files), chunk):  # bounded memory: a chunk at a time
        good = []
        for i in range(begin, min(begin + chunk, len(files))):
            check = examine(files[i], DEFAULT_MAX_PIXELS, min_size, keep_rgb=True)
            reasons[i], details[i] = check.reason, check.detail
            if check.ok:
                good.append((i, check.rgb))
        if good:
            scores = predict_arrays(infer, [image for _, image in good], n_classes)
            probabilities[[i for i, _ in good]] = scores
    return _rows(list(files), probabilities, reasons, details, class_names)


def _rows(files, probabilities, reasons, details, class_names) -> pa.Table:
    ok = np.array([not reason for reason in reasons], bool)
    table = predictions_table(np.nan_to_num(probabilities), class_names)
    columns = {
        "path": pa.array([str(f) for f in files], pa.string()),
        "status": pa.array(["ok" if good else "error" for good in ok], pa.string()),
        "error": pa.array(reasons, pa.string()),
        "detail": pa.array(details, pa.string()),
    }
    mask = pa.array(~ok, pa.bool_())
    for name in table.column_names:  # failed rows: no probabilities, no prediction
        columns[name] = pc.if_else(mask, pa.scalar(None, table[name].type), table[name])
    return pa.table(columns)


def write_predictions(
    model_dir: Path, inputs: PredictionInputs, tables: Sequence[pa.Table], output: Path
) -> dict:
    """Join the shards' rows (in input order), add a row per unreadable folder, write
    `output` atomically; returns the summary."""
    class_names = read_json(Path(model_dir) / "labels.json")["class_names"]
    folders = [folder for folder, _ in inputs.unreadable]
    unreadable = _rows(
        folders,
        np.full((len(folders), len(class_names)), np.nan),
        ["unreadable"] * len(folders),
        [why for _, why in inputs.unreadable],
        class_names,
    )
    table = pa.concat_tables([*tables, unreadable]) if tables else unreadable
    if table.num_rows != len(inputs.files) + len(folders):
        raise PipelineError("the prediction shards did not cover every input file")
    _write_table(table, Path(output))
    status = table.column("status").to_pylist()
    paths, errors = table.column("path").to_pylist(), table.column("error").to_pylist()
    failed = [(p, e) for p, e, s in zip(paths, errors, status, strict=True) if s != "ok"]
    return {
        "model_dir": str(model_dir),
        "output": str(output),
        "class_names": class_names,
        "n_files": table.num_rows,
        "n_ok": table.num_rows - len(failed),
        "n_failed": len(failed),
        "failed": failed,
    }


def check_output(output: Path) -> Path:
    output = Path(output)
    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise PipelineError(f"output must end in .csv or .parquet, got '{output.name}'")
    return output


def predict_files(
    model_dir: Path,
    paths: Sequence[str | Path],
    output: Path,
    chunk: int = 64,
    min_size: int = DEFAULT_MIN_SIZE,
) -> dict:
    """Predict every file under `paths` with the model in `model_dir`; write `output`."""
    output = check_output(output)
    inputs = find_inputs(paths)
    process_model(model_dir)  # a bad model fails before any file is read
    table = predict_shard(model_dir, inputs.files, chunk, min_size)
    return write_predictions(model_dir, inputs, [table], output)


def _write_table(table: pa.Table, output: Path) -> None:
    with atomic_file(output) as handle:
        if output.suffix.lower() == ".csv":
            pa_csv.write_csv(table, handle)
        else:
            pq.write_table(table, handle)
