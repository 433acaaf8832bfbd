"""Synthetic cached features for tests of the dropout sweep: a real Parquet feature cache
(WORKDIR/cache/<fingerprint>/) and a real manifest of the same rows, built from arrays.

    cache_dir, manifest_path = write_cache(workdir, features, labels, splits)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


def write_cache(
    workdir: Path, features: np.ndarray, labels, splits, fingerprint: str = "0123456789abcdef"
) -> tuple[Path, Path]:
    """Write `features` (N, *shape) with their labels and splits; returns (cache, manifest)."""
    from inception_retrain.data.manifest import ManifestRow, write_manifest
    from inception_retrain.features.feature_parts import feature_schema, write_part

    labels = [int(label) for label in labels]
    ids = [hashlib.sha256(f"{fingerprint}-{i}".encode()).hexdigest() for i in range(len(labels))]
    cache_dir = Path(workdir) / "cache" / fingerprint
    schema = feature_schema(features.shape[1:], "float32", {"fingerprint": fingerprint})
    write_part(cache_dir, schema, ids, labels, list(splits), features.astype(np.float32))
    rows = [
        ManifestRow(
            uri=f"/img/{cid}.png", label=f"c{label}", label_index=label, split=split, content_id=cid
        )
        for cid, label, split in zip(ids, labels, splits, strict=True)
    ]
    manifest_path = Path(workdir) / "manifest.parquet"
    write_manifest(manifest_path, rows, ["c0", "c1"], "test", {})
    return cache_dir, manifest_path


def splits_of(train: int, validation: int, test: int) -> list[str]:
    return ["train"] * train + ["validation"] * validation + ["test"] * test
