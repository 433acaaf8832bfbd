"""Typed artifacts passed between stages: paths plus fingerprints, never models or arrays.

Each stage returns one of these and the next stage takes it, so any stage can be re-run
alone from files on disk, and Prefect only ever hashes or serialises small JSON-able values.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel


class Manifest(BaseModel):
    """Output of ingestion: `manifest.parquet`, one row per input file (ok or skipped)."""

    path: Path
    fingerprint: str  # sha256 over the sorted (content_id, label_index, split) of ok rows
    class_names: list[str]
    counts: dict  # same content as ingest.json


class FeatureCache(BaseModel):
    """Output of extraction: a Parquet dataset under `WORKDIR/cache/<backbone_fingerprint>/`."""

    cache_dir: Path
    backbone_fingerprint: str
    manifest_fingerprint: str
    feature_shape: tuple[int, ...]
    dtype: str
    computed: int  # images whose features were computed in this run
    reused: int  # images already cached under this fingerprint
    report_path: Path  # extract.json in the run folder


class TrainedHead(BaseModel):
    """Output of training: the head model plus its history, in the run folder."""

    head_path: Path  # run_dir/head.keras (input: cached features)
    history_path: Path  # run_dir/history.json
    fingerprint: str  # tasks.head.head_fingerprint: architecture and weights
    device: str


class Evaluation(BaseModel):
    """Output of evaluation on the frozen test split."""

    json_path: Path
    html_path: Path
    md_path: Path
    metrics: dict  # the headline numbers (accuracy, roc_auc, ...)


class ModelVersion(BaseModel):
    """An exported model under `WORKDIR/models/<version>/`, and whether it became champion."""

    version: str
    path: Path
    promoted: bool
    score: float | None
    champion_score: float | None
