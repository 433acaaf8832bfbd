"""Stage `data-report`: every data check decided together, data_report.json and .html
(`inception_retrain.evaluation.data_report`), published as the `data-drift` table (this run
and the earlier ones: the history) and a link to the HTML."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.data.contract import DataValidation
from inception_retrain.data.contract_spec import DataCheckSpec
from inception_retrain.data.manifest import Manifest
from inception_retrain.evaluation.data_report import DataReport, write_data_report
from inception_retrain.evaluation.drift import DriftResult
from inception_retrain.tasks.ui import publish_data_report


@task(name="data-report", cache_policy=NO_CACHE)
def data_report_task(
    manifest: Manifest,
    validation: DataValidation,
    drift: DriftResult | None,
    spec: DataCheckSpec,
    run_dir: Path,
) -> DataReport:
    report = write_data_report(manifest, validation, drift, spec, run_dir)
    publish_data_report(run_dir)
    return report
