"""Stage `report`: evaluation.md and evaluation.html, rendered once the promotion decision is
known (`inception_retrain.evaluation.report`), published as the `evaluation-report` markdown
and links to the HTML reports."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.evaluation.report import write_evaluation_report
from inception_retrain.tasks.ui import publish_evaluation_report, publish_report_links


@task(name="report", cache_policy=NO_CACHE)
def report_task(run_dir: Path, promotion: dict | None) -> Path:
    _, html_path = write_evaluation_report(run_dir, promotion)
    publish_evaluation_report(run_dir)
    publish_report_links(run_dir)
    return html_path
