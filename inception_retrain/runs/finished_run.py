"""The stage inputs of a finished run, read back from its folder, to run a stage again.

`inception-retrain dropout-report --run RUN_DIR` rebuilds a run's dropout report this way:
every artifact is read through the module that owns it (manifest, extraction report, head
and its history, run config), so nothing here knows a file format. The run's settings come
back as recorded (config.json's values); the caller validates them, with its overrides.

    >>> run = open_finished_run(run_dir)
    >>> run.manifest, run.cache, run.head, run.settings["sweep_folds"]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inception_retrain.data.ingest import COUNTS_FILE, COUNTS_KIND, COUNTS_VERSION
from inception_retrain.data.manifest import FILE_NAME as MANIFEST_FILE
from inception_retrain.data.manifest import Manifest, open_manifest
from inception_retrain.features import feature_parts
from inception_retrain.features.extraction import read_extract_report
from inception_retrain.features.feature_cache import FeatureCache, cache_dir_for
from inception_retrain.plumbing import storage
from inception_retrain.plumbing.errors import DataError, PipelineError
from inception_retrain.plumbing.schemas import read_document
from inception_retrain.runs import run_folder
from inception_retrain.training.head import TrainedHead, head_fingerprint, load_head
from inception_retrain.training.train import HISTORY_FILE, read_history, recorded_training


class NotAFinishedRun(PipelineError):
    """The folder lacks what re-running a stage needs."""


@dataclass
class FinishedRun:
    run_dir: Path
    settings: dict  # config.json's values, as recorded (workdir updated if the run moved)
    manifest: Manifest
    cache: FeatureCache
    head: TrainedHead


def open_finished_run(run_dir: Path) -> FinishedRun:
    """The artifacts of the run in `run_dir`."""
    run_dir = run_folder.check_finished(run_dir)
    settings, _ = run_folder.read_config(run_dir)
    try:
        counts = read_document(run_dir / COUNTS_FILE, COUNTS_KIND, COUNTS_VERSION)
    except DataError:
        counts = {}
    manifest = open_manifest(run_dir / MANIFEST_FILE, counts)
    cache = read_extract_report(run_dir)
    if storage.is_remote(cache.cache_dir):  # an object-store cache stays where it is
        if not feature_parts.parts(cache.cache_dir):
            raise NotAFinishedRun(f"feature cache {cache.cache_dir} has no parts (removed?)")
        return _finished(run_dir, settings, manifest, cache)
    if not cache.cache_dir.is_dir():  # the workdir moved: runs/<id>/ sits in WORKDIR/runs/
        workdir = run_dir.parent.parent
        beside = cache_dir_for(workdir, cache.backbone_fingerprint)
        cache = cache.model_copy(update={"cache_dir": beside})
        if beside.is_dir():
            settings = {**settings, "workdir": str(workdir)}
    if not cache.cache_dir.is_dir():
        raise NotAFinishedRun(f"feature cache {cache.cache_dir} not found (pruned?)")
    return _finished(run_dir, settings, manifest, cache)


def _finished(run_dir, settings, manifest, cache) -> FinishedRun:
    head_path = run_dir / "head.keras"
    head = TrainedHead(
        head_path=head_path,
        history_path=run_dir / HISTORY_FILE,
        fingerprint=head_fingerprint(load_head(head_path)),
        device="cpu",
        training=recorded_training(read_history(run_dir / HISTORY_FILE)),
    )
    return FinishedRun(run_dir, settings, manifest, cache, head)
