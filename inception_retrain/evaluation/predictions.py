"""The predictions table: what a model said about each image, as Arrow columns.

Columns: `p_<class>` per class (probability), `predicted` (class name), `predicted_index` and
`confidence` (the largest probability). Evaluation writes it for the test split
(`test_predictions.parquet`, with content ids, uris and labels in front); batch prediction
writes it per input file (with path, status and error in front).

    >>> predictions_table(np.array([[0.2, 0.8]]), ["cat", "dog"]).to_pylist()
    [{'p_cat': 0.2, 'p_dog': 0.8, 'predicted': 'dog', 'predicted_index': 1, 'confidence': 0.8}]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa


def probability_column(class_name: str) -> str:
    return f"p_{class_name}"


def predictions_table(probabilities: np.ndarray, class_names: Sequence[str]) -> pa.Table:
    """p_<class> per class, predicted (name), predicted_index and confidence."""
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1, len(class_names))
    predicted = probabilities.argmax(axis=1)
    columns = {probability_column(n): probabilities[:, k] for k, n in enumerate(class_names)}
    columns["predicted"] = pa.array([class_names[i] for i in predicted], pa.string())
    columns["predicted_index"] = pa.array(predicted, pa.int32())
    columns["confidence"] = probabilities.max(axis=1, initial=0.0)
    return pa.table(columns)
