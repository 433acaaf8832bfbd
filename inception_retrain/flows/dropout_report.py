"""Rebuild a finished run's dropout report: the sweep (reusing stored trainings), then the
dropout-report stage, on the run's own artifacts.

    json_path = rebuild_dropout_report(Path("workdir/runs/20260101-120000-3fa2b1"),
                                       {"sweep_repeats": 3})

The run's recorded settings (config.json) with the overrides make its `RetrainConfig`; a
setting that no longer validates fails the flow in one line.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from inception_retrain.config import RetrainConfig
from inception_retrain.flows.sweep import run_sweep
from inception_retrain.runs.finished_run import open_finished_run
from inception_retrain.tasks.dropout_report import dropout_report_task
from inception_retrain.tasks.runtime import hide_expected_tracebacks

hide_expected_tracebacks()


@flow(name="rebuild-dropout-report", log_prints=True)
def rebuild_dropout_report(run_dir: Path, overrides: dict, sweep_workers: int = 1) -> str:
    """dropout_impact.{json,md,html} of the run in `run_dir` again; returns the JSON's path.
    `overrides` change the run's config fields (sweep settings, typically)."""
    run = open_finished_run(run_dir)
    config = RetrainConfig.from_recorded(run.settings, overrides)
    heads = run.head_cache or run.cache  # the sweep trains heads on the head's own cache
    spec = config.sweep(
        heads.cache_dir, run.manifest.path, run.manifest.n_classes, heads.feature_shape
    )
    sweep = run_sweep(spec, workers=sweep_workers)
    path = dropout_report_task(
        run.manifest,
        run.cache,
        run.head,
        sweep,
        run.run_dir,
        config.evidence,
        config.mc_passes,
        run.fine_tuned,
    )
    return str(path)
