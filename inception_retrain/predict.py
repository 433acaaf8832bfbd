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

from inception_retrain.backbone import inference_function
from inception_retrain.errors import DataError, PipelineError
from inception_retrain.files import atomic_file, read_json
from inception_retrain.head import probabilities_to_scores
from inception_retrain.image_files import find_files
from inception_retrain.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIZE, examine
from inception_retrain.predictions import predictions_table

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


def predict_files(
    model_dir: Path,
    paths: Sequence[str | Path],
    output: Path,
    chunk: int = 64,
    min_size: int = DEFAULT_MIN_SIZE,
) -> dict:
    """Predict every file under `paths` with the model in `model_dir`; write `output`."""
    output = Path(output)
    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise PipelineError(f"output must end in .csv or .parquet, got '{output.name}'")
    found = find_files(paths)
    files = found.files + [Path(folder) for folder, _ in found.unreadable]
    if not files:
        raise DataError(f"no image files found in {', '.join(map(str, paths)) or '(nothing)'}")
    model, class_names = load_inference_model(Path(model_dir))
    n_classes = len(class_names)
    infer = inference_function(model)  # traced once, reused for every chunk

    probabilities = np.full((len(files), n_classes), np.nan)
    reasons = [""] * len(files)
    details = [""] * len(files)
    for folder_index, (_, why) in enumerate(found.unreadable, start=len(found.files)):
        reasons[folder_index], details[folder_index] = "unreadable", why
    for begin in range(0, len(found.files), chunk):  # bounded memory: a chunk at a time
        good = []
        for i in range(begin, min(begin + chunk, len(found.files))):
            check = examine(files[i], DEFAULT_MAX_PIXELS, min_size, keep_rgb=True)
            reasons[i], details[i] = check.reason, check.detail
            if check.ok:
                good.append((i, check.rgb))
        if good:
            scores = predict_arrays(infer, [image for _, image in good], n_classes)
            probabilities[[i for i, _ in good]] = scores

    ok = np.array([not reason for reason in reasons])
    table = predictions_table(np.nan_to_num(probabilities), class_names)
    columns = {
        "path": pa.array([str(f) for f in files], pa.string()),
        "status": pa.array(["ok" if good else "error" for good in ok], pa.string()),
        "error": pa.array(reasons, pa.string()),
        "detail": pa.array(details, pa.string()),
    }
    mask = pa.array(~ok)
    for name in table.column_names:  # failed rows: no probabilities, no prediction
        columns[name] = pc.if_else(mask, pa.scalar(None, table[name].type), table[name])
    _write_table(pa.table(columns), output)
    failed = [(str(files[i]), reasons[i]) for i in np.flatnonzero(~ok)]
    return {
        "model_dir": str(model_dir),
        "output": str(output),
        "class_names": class_names,
        "n_files": len(files),
        "n_ok": int(ok.sum()),
        "n_failed": len(failed),
        "failed": failed,
    }


def _write_table(table: pa.Table, output: Path) -> None:
    with atomic_file(output) as handle:
        if output.suffix.lower() == ".csv":
            pa_csv.write_csv(table, handle)
        else:
            pq.write_table(table, handle)
