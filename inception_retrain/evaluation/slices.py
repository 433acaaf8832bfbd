"""Sliced evaluation: the test-split metrics of every slice, with confidence intervals.

`slice_metrics(manifest, evaluation, spec, run_dir)` groups the test images (their rows in
test_predictions.parquet, written by `evaluate`) into slices (`SliceSpec`): `class=<name>`,
`source=<folder>`, `format=<JPEG|PNG|...>`, `size=<bucket>` and `user=<slice>` from the
user's CSV. Per slice: the number of test images, accuracy with its 95% Wilson interval,
mean confidence, and for a two-class task ROC-AUC with a percentile bootstrap interval
(positives and negatives resampled apart; only with at least two of each).

Writes `slices.json` (the metrics) and `test_slices.parquet` (content_id and one column per
kind of slice: which slice each test image is in; the promotion gate pairs the new model's
and the champion's correctness per image and slice from it, `registry.slice_gate`).

    >>> sliced = slice_metrics(manifest, evaluation, SliceSpec(), run_dir)
    >>> read_slices(sliced.json_path)["slices"][0]["slice"]
    'class=blobs'
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from inception_retrain.data.manifest import Manifest, read_properties
from inception_retrain.evaluation.evaluate import Evaluation, read_test_predictions
from inception_retrain.evaluation.metrics import wilson
from inception_retrain.evaluation.predictions import probability_column
from inception_retrain.evaluation.slice_spec import SliceSpec, size_bucket
from inception_retrain.evaluation.statistics import auroc_test
from inception_retrain.plumbing.errors import DataError
from inception_retrain.plumbing.files import atomic_file
from inception_retrain.plumbing.schemas import (
    parquet_metadata,
    read_document,
    read_parquet_metadata,
    write_document,
)

KIND, VERSION, FILE_NAME = "sliced-metrics", 1, "slices.json"
TABLE_KIND, TABLE_VERSION, TABLE_FILE = "test-slices", 1, "test_slices.parquet"
KINDS = ("class", "source", "format", "size", "user")
CONFIDENCE = 0.95
AUC_RESAMPLES = 999


class SlicedMetrics(BaseModel):
    """The sliced evaluation as the stage hands it on: its files and the spec that made it."""

    json_path: Path
    table_path: Path
    spec: SliceSpec


def read_user_slices(path: Path) -> dict[str, list[str]]:
    """content id -> its user slices, from a CSV with the columns content_id and slice."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"content_id", "slice"} - set(reader.fieldnames or ())
            if missing:
                raise DataError(
                    f"slices file {path} lacks the column(s) {', '.join(sorted(missing))} "
                    "(expected a header: content_id,slice)"
                )
            slices: dict[str, list[str]] = defaultdict(list)
            for row in reader:
                cid, name = (row["content_id"] or "").strip(), (row["slice"] or "").strip()
                if cid and name and name not in slices[cid]:
                    slices[cid].append(name)
    except OSError as error:
        raise DataError(f"cannot read the slices file {path}: {error.strerror}") from None
    return dict(slices)


def _metrics(
    rows: list[int], correct: np.ndarray, confidence: np.ndarray, labels, positive
) -> dict:
    n = len(rows)
    hits = int(correct[rows].sum())
    low, high = wilson(hits, n, CONFIDENCE) or (None, None)
    metrics = {
        "n": n,
        "correct": hits,
        "accuracy": hits / n if n else None,
        "accuracy_low": low,
        "accuracy_high": high,
        "mean_confidence": float(confidence[rows].mean()) if n else None,
        "roc_auc": None,
        "roc_auc_low": None,
        "roc_auc_high": None,
    }
    if positive is not None and n:
        is_positive = labels[rows] == 1
        if min(is_positive.sum(), (~is_positive).sum()) >= 2:
            test = auroc_test(is_positive, positive[rows], resamples=AUC_RESAMPLES)
            interval = test.interval
            metrics.update(roc_auc=test.auroc, roc_auc_low=interval.low, roc_auc_high=interval.high)
    return metrics


def slice_metrics(
    manifest: Manifest, evaluation: Evaluation, spec: SliceSpec, run_dir: Path
) -> SlicedMetrics:
    """Measure every slice of the test split (see the module docstring)."""
    run_dir = Path(run_dir)
    predictions = read_test_predictions(evaluation.run_dir).to_pydict()
    ids = predictions["content_id"]
    labels = np.asarray(predictions["label_index"])
    correct = np.asarray(predictions["predicted_index"]) == labels
    confidence = np.asarray(predictions["confidence"], dtype=np.float64)
    class_names = list(manifest.class_names)
    positive = None
    if len(class_names) == 2:
        positive = np.asarray(predictions[probability_column(class_names[1])], np.float64)
    test = read_properties(manifest.path, "test")
    position = {cid: i for i, cid in enumerate(test.rows.content_ids)}
    user = read_user_slices(spec.csv) if spec.csv else {}
    membership: dict[str, list] = {kind: [] for kind in KINDS}
    for cid, label in zip(ids, labels, strict=True):
        k = position.get(cid)
        if k is None:
            raise DataError(f"test image {cid[:12]} of the predictions is not in the manifest")
        membership["class"].append(class_names[label])
        membership["source"].append(test.source[k] or "unknown")
        membership["format"].append(test.format[k] or "unknown")
        short = min(test.width[k], test.height[k])
        membership["size"].append(size_bucket(short, spec.size_edges))
        membership["user"].append(user.get(cid, []))
    groups: dict[str, list[int]] = defaultdict(list)
    for kind in KINDS:
        for i, value in enumerate(membership[kind]):
            for name in value if isinstance(value, list) else [value]:
                groups[f"{kind}={name}"].append(i)
    order = sorted(groups, key=lambda s: (KINDS.index(s.split("=", 1)[0]), s))
    slices = [
        {
            "slice": name,
            "kind": name.split("=", 1)[0],
            **_metrics(groups[name], correct, confidence, labels, positive),
        }
        for name in order
    ]
    document = {
        "n_test": len(ids),
        "class_names": class_names,
        "spec": spec.model_dump(mode="json"),
        "user_slices_file": str(spec.csv) if spec.csv else None,
        "user_ids_not_in_test": len(set(user) - set(ids)),
        "slices": slices,
    }
    json_path = write_document(run_dir / FILE_NAME, KIND, VERSION, document)
    table = pa.table(
        {
            "content_id": pa.array(ids, pa.string()),
            **{kind: pa.array(membership[kind], pa.string()) for kind in KINDS[:-1]},
            "user": pa.array(membership["user"], pa.list_(pa.string())),
        }
    ).replace_schema_metadata(parquet_metadata(TABLE_KIND, TABLE_VERSION, {}))
    with atomic_file(run_dir / TABLE_FILE) as handle:
        pq.write_table(table, handle)
    return SlicedMetrics(json_path=json_path, table_path=run_dir / TABLE_FILE, spec=spec)


def read_slices(path: Path) -> dict:
    """A slices.json document."""
    return read_document(path, KIND, VERSION)


def slice_members(sliced: SlicedMetrics) -> dict[str, list[str]]:
    """slice name -> the content ids of its test images, from test_slices.parquet."""
    table = pq.read_table(sliced.table_path)
    read_parquet_metadata(table.schema, TABLE_KIND, TABLE_VERSION, sliced.table_path)
    columns = table.to_pydict()
    members: dict[str, list[str]] = defaultdict(list)
    for kind in KINDS:
        for cid, value in zip(columns["content_id"], columns[kind], strict=True):
            for name in value if isinstance(value, list) else [value]:
                members[f"{kind}={name}"].append(cid)
    return dict(members)
