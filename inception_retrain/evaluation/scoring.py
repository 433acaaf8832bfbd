"""Scoring a trained head on cached features: per-class probabilities for a set of images.

    >>> ids, probabilities, labels = score_cached(head_path, cache_dir, test_rows, n_classes=2)

The cache is streamed in row batches, so memory stays bounded for a large split; the result is
sorted by content id (the order `feature_parts.load_rows` uses), whatever order the parts
were written in.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from inception_retrain.features import feature_cache, feature_parts
from inception_retrain.training.head import load_head, probabilities_to_scores


def score_cached(
    head_path: Path, cache_dir: Path, wanted: Mapping[str, int], n_classes: int
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(content_ids, probabilities (N, K), labels) of the `wanted` rows (id -> label) that
    are cached, sorted by content id."""
    model = load_head(head_path)
    ids: list[str] = []
    scores, labels = [np.zeros((0, n_classes))], [np.zeros((0,), np.int32)]
    with feature_cache.reading(cache_dir):
        for batch_ids, features, batch_labels in feature_parts.iter_rows(
            cache_dir, wanted, batch_rows=256
        ):
            ids.extend(batch_ids)
            raw = model.predict(features, batch_size=64, verbose=0)
            scores.append(probabilities_to_scores(raw, n_classes))
            labels.append(batch_labels)
    order = np.argsort(np.array(ids), kind="stable")
    probabilities, all_labels = np.concatenate(scores), np.concatenate(labels)
    return [ids[i] for i in order], probabilities[order], all_labels[order]
