"""The stage inputs of a finished run, read back from its folder, to run a stage again.

`inception-retrain dropout-report --run RUN_DIR` rebuilds a run's dropout report this way:
every artifact is read through the module that owns it (manifest, extraction report, head
and its history, run config), so nothing here knows a file format. The run's settings come
back as recorded (config.json's values); the caller validates them, with its overrides.

    >>> run = open_finished_run(run_dir)
    >>> run.manifest, run.cache, run.head, run.settings["sweep_folds"]

A run that fine-tuned (`fine-tune/` in its folder) has `fine_tuned`, and when its evaluation
says validation chose the fine-tuned model, `cache` and `head` are that model's: the prefix
cache and the `FineTunedModel`, as the run's later stages had them; the head-only `cache` and
`head` stay in `head_cache` and `trained_head`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inception_retrain.data.ingest import COUNTS_FILE, COUNTS_KIND, COUNTS_VERSION
from inception_retrain.data.manifest import FILE_NAME as MANIFEST_FILE
from inception_retrain.data.manifest import Manifest, open_manifest
from inception_retrain.evaluation.evaluate import read_evaluation
from inception_retrain.features import feature_parts
from inception_retrain.features.extraction import read_extract_report
from inception_retrain.features.feature_cache import FeatureCache, cache_dir_for
from inception_retrain.plumbing import storage
from inception_retrain.plumbing.errors import DataError, PipelineError
from inception_retrain.plumbing.schemas import read_document
from inception_retrain.runs import run_folder
from inception_retrain.training.fine_tune import FINE_TUNE_DIR, FineTunedModel, read_fine_tuned
from inception_retrain.training.head import TrainedHead, head_fingerprint, load_head
from inception_retrain.training.train import HISTORY_FILE, read_history, recorded_training


class NotAFinishedRun(PipelineError):
    """The folder lacks what re-running a stage needs."""


@dataclass
class FinishedRun:
    run_dir: Path
    settings: dict  # config.json's values, as recorded (workdir updated if the run moved)
    manifest: Manifest
    cache: FeatureCache  # the run's model's: the prefix cache when fine-tuning was chosen
    head: TrainedHead  # the run's model: a FineTunedModel when fine-tuning was chosen
    fine_tuned: FineTunedModel | None = None  # the run's fine-tuned model, chosen or not
    head_cache: FeatureCache | None = None  # the head's own cache and head
    trained_head: TrainedHead | None = None


def open_finished_run(run_dir: Path) -> FinishedRun:
    """The artifacts of the run in `run_dir`."""
    run_dir = run_folder.check_finished(run_dir)
    settings, _ = run_folder.read_config(run_dir)
    try:
        counts = read_document(run_dir / COUNTS_FILE, COUNTS_KIND, COUNTS_VERSION)
    except DataError:
        counts = {}
    manifest = open_manifest(run_dir / MANIFEST_FILE, counts)
    cache, settings = _cache(run_dir, read_extract_report(run_dir), settings)
    head_path = run_dir / "head.keras"
    head = TrainedHead(
        head_path=head_path,
        history_path=run_dir / HISTORY_FILE,
        fingerprint=head_fingerprint(load_head(head_path)),
        device="cpu",
        training=recorded_training(read_history(run_dir / HISTORY_FILE)),
    )
    run = FinishedRun(run_dir, settings, manifest, cache, head, head_cache=cache, trained_head=head)
    if (run_dir / FINE_TUNE_DIR / "fine_tune.json").is_file():
        run.fine_tuned = read_fine_tuned(run_dir)
        if _chosen(run_dir) == "fine-tuned":
            prefix, _ = _cache(run_dir, read_extract_report(run_dir / FINE_TUNE_DIR), settings)
            run.cache, run.head = prefix, run.fine_tuned
    return run


def _chosen(run_dir: Path) -> str | None:
    """Which model the run's evaluation says validation chose (None: no fine-tuning)."""
    try:
        section = read_evaluation(run_dir / "evaluation.json").get("fine_tuning")
    except DataError:
        return None
    return section["chosen"] if section else None


def _cache(run_dir: Path, cache: FeatureCache, settings: dict) -> tuple[FeatureCache, dict]:
    """`cache` where it is now, and the settings (their workdir updated if the run moved)."""
    if storage.is_remote(cache.cache_dir):  # an object-store cache stays where it is
        if not feature_parts.parts(cache.cache_dir):
            raise NotAFinishedRun(f"feature cache {cache.cache_dir} has no parts (removed?)")
        return cache, settings
    if not cache.cache_dir.is_dir():  # the workdir moved: runs/<id>/ sits in WORKDIR/runs/
        workdir = run_dir.parent.parent
        beside = cache_dir_for(workdir, cache.backbone_fingerprint)
        cache = cache.model_copy(update={"cache_dir": beside})
        if beside.is_dir():
            settings = {**settings, "workdir": str(workdir)}
    if not cache.cache_dir.is_dir():
        raise NotAFinishedRun(f"feature cache {cache.cache_dir} not found (pruned?)")
    return cache, settings
