"""Batch prediction with an exported model: image files or folders in, a CSV/Parquet table out.

`predict_files(model_dir, paths, output)` loads `model_dir/model.keras` (safe mode) and
`labels.json`, collects images (folders recursively; accepted extensions only, case-blind;
hidden files and folders ignored; a file named explicitly is always tried), decodes each with
`tasks.preprocess.load_rgb`, and writes one row per file:

    path, status (ok|error), error, p_<class>..., predicted, predicted_index, confidence

A file that cannot be read or decoded gets `status=error` and the reason; it is never fatal.
The output format follows the suffix (`.csv`, or `.parquet`/`.pq`) and is written atomically.

    summary = predict_files(Path("workdir/models/v0001-..."), [Path("photos/")], Path("out.csv"))
    summary["n_ok"], summary["n_failed"]

The model resizes internally, so images of any size are accepted; images of the same size
are batched together.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from inception_retrain.errors import DataError, PipelineError
from inception_retrain.files import atomic_write_bytes
from tasks.preprocess import IMAGE_EXTENSIONS

OUTPUT_SUFFIXES = (".csv", ".parquet", ".pq")


def probability_column(class_name: str) -> str:
    return f"p_{class_name}"


def predictions_table(probabilities: np.ndarray, class_names: Sequence[str]) -> pa.Table:
    """p_<class> per class, predicted (name), predicted_index and confidence (max probability)."""
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1, len(class_names))
    predicted = probabilities.argmax(axis=1)
    columns = {probability_column(n): probabilities[:, k] for k, n in enumerate(class_names)}
    columns["predicted"] = pa.array([class_names[i] for i in predicted], pa.string())
    columns["predicted_index"] = pa.array(predicted, pa.int32())
    columns["confidence"] = probabilities.max(axis=1, initial=0.0)
    return pa.table(columns)


def find_images(paths: Iterable[str | Path]) -> list[Path]:
    """Files to predict, in a stable order: folders walked recursively (accepted extensions,
    no hidden entries), named files kept as given (a bad one becomes an error row)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            found.append(path)
            continue
        for candidate in sorted(path.rglob("*")):
            relative = candidate.relative_to(path).parts
            if any(part.startswith(".") for part in relative) or not candidate.is_file():
                continue
            if candidate.suffix.lower() in IMAGE_EXTENSIONS:
                found.append(candidate)
    return found


def load_inference_model(model_dir: Path):
    """(model, class_names) of an exported version folder; safe mode on."""
    import keras

    model_dir = Path(model_dir)
    try:
        class_names = json.loads((model_dir / "labels.json").read_text())["class_names"]
        model = keras.saving.load_model(model_dir / "model.keras", safe_mode=True)
    except (OSError, ValueError, KeyError) as error:
        raise PipelineError(f"cannot load the model in {model_dir}: {error}") from None
    return model, list(class_names)


def predict_arrays(infer, images: Sequence[np.ndarray], n_classes: int, batch_size: int = 16):
    """Per-class probabilities (N, K) for decoded RGB images (batches of same-size images).

    `infer` maps a float32 batch to the model's output: `tasks.backbone.inference_function(
    model)`, one traced graph for any image size (several times faster than eager calls on
    single images, the same numbers up to float rounding).
    """
    from tasks.head import probabilities_to_scores

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


def _decode(path: Path) -> tuple[np.ndarray | None, str]:
    from tasks.preprocess import load_rgb

    if not path.exists():
        return None, "not found"
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return None, f"unsupported extension '{path.suffix}'"
    try:
        image = load_rgb(path)
    except Exception as error:  # Pillow raises many types for corrupt files
        return None, f"cannot decode: {type(error).__name__}: {error}".strip()
    if image.ndim != 3 or min(image.shape[:2]) < 1:
        return None, "empty image"
    return image, ""


def predict_files(
    model_dir: Path, paths: Sequence[str | Path], output: Path, chunk: int = 64
) -> dict:
    """Predict every image under `paths` with the model in `model_dir`; write `output`."""
    output = Path(output)
    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise PipelineError(f"output must end in .csv or .parquet, got '{output.name}'")
    files = find_images(paths)
    if not files:
        raise DataError(f"no image files found in {', '.join(map(str, paths)) or '(nothing)'}")
    from tasks.backbone import inference_function

    model, class_names = load_inference_model(Path(model_dir))
    n_classes = len(class_names)
    infer = inference_function(model)  # traced once, reused for every chunk

    probabilities = np.full((len(files), n_classes), np.nan)
    errors = [""] * len(files)
    for begin in range(0, len(files), chunk):  # bounded memory: decode a chunk at a time
        decoded = [(i, *_decode(files[i])) for i in range(begin, min(begin + chunk, len(files)))]
        good = [(i, image) for i, image, _ in decoded if image is not None]
        for i, _, error in decoded:
            errors[i] = error
        if good:
            scores = predict_arrays(infer, [image for _, image in good], n_classes)
            probabilities[[i for i, _ in good]] = scores

    ok = np.array([not e for e in errors])
    table = predictions_table(np.nan_to_num(probabilities), class_names)
    columns = {
        "path": pa.array([str(f) for f in files], pa.string()),
        "status": pa.array(["ok" if good else "error" for good in ok], pa.string()),
        "error": pa.array(errors, pa.string()),
    }
    mask = pa.array(~ok)
    for name in table.column_names:  # failed rows: no probabilities, no prediction
        columns[name] = pc.if_else(mask, pa.scalar(None, table[name].type), table[name])
    _write_table(pa.table(columns), output)
    failed = [(str(files[i]), errors[i]) for i in np.flatnonzero(~ok)]
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
    buffer = io.BytesIO()
    if output.suffix.lower() == ".csv":
        pa_csv.write_csv(table, buffer)
    else:
        pq.write_table(table, buffer)
    atomic_write_bytes(output, buffer.getvalue())
