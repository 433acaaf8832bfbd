"""Which images the dropout sweep cross-fits, and their folds: a pure function of content ids.

The sweep's evidence is every labelled image outside the test split: the train and validation
images with cached features (the test split stays untouched; it serves the main head and
promotion). Above `max_images` (2,000 by default, where the comparisons already resolve
differences well inside their margins: docs/evidence.md) the sweep works on a stratified
sample of that size, so a nightly run on 20,000 images does not train its heads on all of
them. Each class keeps its share (largest remainders), and within a class the images whose
sha256(content id) is smallest: the same images on every rerun, and a grown folder keeps most
of its sample.

Folds: in repeat r, each class's images are ordered by sha256("r:content id") and dealt to
the K folds in turn, so every fold has the class mix of the whole (stratified), and an image's
fold depends only on its id, r and K.

    plan = sweep_plan(cache_dir, manifest_path, folds=5, repeats=2, max_images=2000)
    plan.content_ids, plan.labels, plan.folds        # (N,), (N,), (R, N)
    plan.training_rows(repeat=0, fold=3), plan.held_out_rows(0, 3)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel

POOL_SPLITS = ("train", "validation")


class SweepPlan(BaseModel):
    """The sweep's images (sorted by content id), their labels and folds."""

    content_ids: list[str]
    labels: list[int]
    folds: list[list[int]]  # (repeats, images): the held-out fold of each image
    pool_size: int  # train + validation images with cached features, before any sample
    max_images: int | None

    @property
    def sampled(self) -> bool:
        return len(self.content_ids) < self.pool_size

    @property
    def n(self) -> int:
        return len(self.content_ids)

    def fold_array(self) -> np.ndarray:
        return np.asarray(self.folds, dtype=np.int64)

    def training_rows(self, repeat: int, fold: int) -> np.ndarray:
        return np.flatnonzero(self.fold_array()[repeat] != fold)

    def held_out_rows(self, repeat: int, fold: int) -> np.ndarray:
        return np.flatnonzero(self.fold_array()[repeat] == fold)

    def class_counts(self) -> list[int]:
        return np.bincount(self.labels, minlength=max(self.labels, default=0) + 1).tolist()


def _rank_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def stratified_sample(ids: Sequence[str], labels: Sequence[int], size: int) -> list[int]:
    """Positions of `size` of the images: each class its share (largest remainders), within
    a class the smallest sha256(content id); in the input order."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * size / len(labels)
    quota = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - quota), kind="stable")[: size - quota.sum()]:
        quota[i] += 1
    keep = []
    for cls, n in zip(classes, quota, strict=True):
        members = np.flatnonzero(labels == cls)
        members = sorted(members, key=lambda i: _rank_key(ids[i]))[:n]
        keep.extend(members)
    return sorted(int(i) for i in keep)


def assign_folds(ids: Sequence[str], labels: Sequence[int], folds: int, repeats: int):
    """(repeats, N) fold of each image: per repeat and class, ids ranked by sha256 and dealt."""
    labels = np.asarray(labels)
    out = np.zeros((repeats, len(ids)), dtype=np.int64)
    for repeat in range(repeats):
        for cls in np.unique(labels):
            members = np.flatnonzero(labels == cls)
            ranked = sorted(members, key=lambda i: _rank_key(f"{repeat}:{ids[i]}"))
            out[repeat, ranked] = np.arange(len(ranked)) % folds
    return out


def plan_for(
    ids: Sequence[str],
    labels: Sequence[int],
    *,
    folds: int,
    repeats: int,
    max_images: int | None,
) -> SweepPlan:
    """The plan for these images (ids sorted or not; the plan sorts them)."""
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    ids = [ids[i] for i in order]
    labels = [int(labels[i]) for i in order]
    pool_size = len(ids)
    if max_images is not None and len(ids) > max_images:
        keep = stratified_sample(ids, labels, max_images)
        ids = [ids[i] for i in keep]
        labels = [labels[i] for i in keep]
    return SweepPlan(
        content_ids=ids,
        labels=labels,
        folds=assign_folds(ids, labels, folds, repeats).tolist(),
        pool_size=pool_size,
        max_images=max_images,
    )


def sweep_plan(
    cache_dir: Path, manifest_path: Path, *, folds: int, repeats: int, max_images: int | None
) -> SweepPlan:
    """The plan over the manifest's train and validation rows that have cached features."""
    from inception_retrain.data.manifest import read_image_rows
    from inception_retrain.features.feature_parts import cached_ids
    from inception_retrain.plumbing import storage

    cached = cached_ids(storage.location(cache_dir))
    rows = read_image_rows(Path(manifest_path))
    keys = [
        (cid, label)
        for cid, label, split in zip(rows.content_ids, rows.label_indices, rows.splits, strict=True)
        if split in POOL_SPLITS and cid in cached
    ]
    return plan_for(
        [k[0] for k in keys],
        [k[1] for k in keys],
        folds=folds,
        repeats=repeats,
        max_images=max_images,
    )
