"""Publish a run folder's reports to the Prefect UI as artifacts of the current flow run.

The flow calls these after the stage that wrote the files; they read only those files, so
what the UI shows is what the run folder holds. Keyed artifacts get a new version on every
run, so the UI shows each key's history across runs (Artifacts -> key).

| function                  | key                  | type     | from                         |
| ------------------------- | -------------------- | -------- | ---------------------------- |
| publish_ingest            | skipped-files        | table    | skipped.csv, ingest.json     |
| publish_metrics           | metrics              | table    | evaluation.json (headline)   |
| publish_evaluation_report | evaluation-report    | markdown | evaluation.md                |
| publish_dropout_impact    | dropout-impact       | markdown | dropout_impact.md            |
|                           | dropout-sweep        | table    | dropout_impact.json (sweep)  |
| publish_report_links      | evaluation-html,     | link     | evaluation.html,             |
|                           | dropout-impact-html  |          | dropout_impact.html          |
| publish_data_report       | data-drift           | table    | data_report.json of this run |
|                           |                      |          | and the workdir's earlier    |
|                           | data-report-html     | link     | data_report.html             |

Progress artifacts (extraction, training) come from `tasks.runtime`. The stage tasks call
these after their core function wrote the files. Each function returns the created artifact
ids (empty when its input file is missing) and never raises: monitoring must not fail a run.

    manifest = ingest(config, run_dir)
    publish_ingest(run_dir)
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from inception_retrain.data import ingest
from inception_retrain.dropout import report as dropout_report
from inception_retrain.evaluation import data_report
from inception_retrain.evaluation.evaluate import FILE_NAME as EVALUATION_FILE
from inception_retrain.evaluation.evaluate import read_evaluation
from inception_retrain.plumbing.errors import DataError
from inception_retrain.plumbing.schemas import read_document
from inception_retrain.runs.run_folder import list_run_dirs

logger = logging.getLogger(__name__)

MAX_TABLE_ROWS = 500  # keeps the Prefect database small on huge skip lists
DRIFT_HISTORY_RUNS = 60  # runs in the data-drift table: two months of nightly runs
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")


def _read(read, path: Path) -> dict | None:
    try:
        return read(path)
    except DataError as error:
        logger.warning("no artifact from %s: %s", path.name, error)
        return None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        logger.warning("no artifact from %s: %s", path.name, error)
        return None


def markdown_for_ui(markdown: str, run_dir: Path, html_name: str) -> str:
    """`markdown` with relative image links replaced by a note: the UI cannot load them, and
    the HTML report next to it embeds every plot."""

    def note(match: re.Match) -> str:
        alt, target = match.group(1), match.group(2)
        if target.startswith(("data:", "http://", "https://")):
            return match.group(0)
        return f"*{alt}: plot `{target}` in `{run_dir}` (embedded in {html_name})*"

    return _MD_IMAGE.sub(note, markdown)


def publish_ingest(run_dir: Path) -> list[UUID]:
    """Table `skipped-files`: every skipped input file with its reason (first 500 rows)."""
    run_dir = Path(run_dir)
    counts = _read(
        lambda p: read_document(p, ingest.COUNTS_KIND, ingest.COUNTS_VERSION),
        run_dir / ingest.COUNTS_FILE,
    )
    try:
        with open(run_dir / "skipped.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        logger.warning("no skipped-files artifact: %s", error)
        return []
    reasons = ", ".join(f"{n} {r}" for r, n in (counts or {}).get("skipped_by_reason", {}).items())
    description = (
        f"{len(rows)} of {(counts or {}).get('files', '?')} files skipped"
        + (f" ({reasons})" if reasons else "")
        + (f"; first {MAX_TABLE_ROWS} shown" if len(rows) > MAX_TABLE_ROWS else "")
        + f". Run folder: {run_dir}"
    )
    # An empty table still gets a row, so "nothing skipped" is visible rather than blank.
    table = rows[:MAX_TABLE_ROWS] or [{"uri": "(none)", "reason": "", "detail": ""}]
    return [create_table_artifact(table, key="skipped-files", description=description)]


def publish_metrics(run_dir: Path) -> list[UUID]:
    """Table `metrics`: the headline test-split metrics of evaluation.json."""
    document = _read(read_evaluation, Path(run_dir) / EVALUATION_FILE)
    if document is None:
        return []
    headline: dict[str, Any] = document.get("headline") or {}
    rows = [
        {"metric": name, "value": value}
        for name, value in headline.items()
        if value is None or (isinstance(value, int | float) and not isinstance(value, bool))
    ]
    description = f"Test split ({document.get('n_test', '?')} images) of run {run_dir}"
    return [create_table_artifact(rows, key="metrics", description=description)]


def publish_evaluation_report(run_dir: Path) -> list[UUID]:
    """Markdown `evaluation-report`: evaluation.md (with the promotion decision, once made)."""
    run_dir = Path(run_dir)
    markdown = _read_text(run_dir / "evaluation.md")
    if markdown is None:
        return []
    body = markdown_for_ui(markdown, run_dir, "evaluation.html")
    return [
        create_markdown_artifact(
            body, key="evaluation-report", description=f"evaluation.md of {run_dir}"
        )
    ]


def sweep_rows(document: dict) -> list[dict]:
    """F5's sweep of dropout_impact.json as table rows: one per trained config, each
    cross-fitted statistic as a column (learning curves left out)."""
    for claim in document.get("claims") or []:
        if isinstance(claim, dict) and claim.get("id") == "F5":
            summary = (claim.get("details") or {}).get("sweep") or {}
            return [_flat(row) for row in summary.get("configs") or []]
    return []


def _flat(row: dict) -> dict:
    flat: dict[str, Any] = {}
    for name, value in row.items():
        if isinstance(value, dict) and "mean" in value:
            flat[f"{name}_mean"], flat[f"{name}_std"] = value["mean"], value.get("std")
        elif value is None or isinstance(value, str | int | float | bool):
            flat[name] = value
    return flat


def publish_dropout_impact(run_dir: Path) -> list[UUID]:
    """Markdown `dropout-impact` (dropout_impact.md) and table `dropout-sweep`."""
    run_dir = Path(run_dir)
    ids: list[UUID] = []
    markdown = _read_text(run_dir / "dropout_impact.md")
    if markdown is not None:
        body = markdown_for_ui(markdown, run_dir, "dropout_impact.html")
        ids.append(
            create_markdown_artifact(
                body, key="dropout-impact", description=f"dropout_impact.md of {run_dir}"
            )
        )
    document = _read(
        lambda p: read_document(p, dropout_report.KIND, dropout_report.VERSION),
        run_dir / dropout_report.FILE_NAME,
    )
    rows = sweep_rows(document) if document else []
    if rows:
        ids.append(
            create_table_artifact(
                rows,
                key="dropout-sweep",
                description=f"Dropout sweep (cross-fitted, out of fold) of run {run_dir}",
            )
        )
    return ids


def publish_report_links(run_dir: Path) -> list[UUID]:
    """Link artifacts to the run folder's HTML reports (file:// URLs on the run's machine)."""
    run_dir = Path(run_dir).resolve()
    ids = []
    for name, key in (
        ("evaluation.html", "evaluation-html"),
        ("dropout_impact.html", "dropout-impact-html"),
    ):
        path = run_dir / name
        if path.is_file():
            ids.append(
                create_link_artifact(
                    path.as_uri(),
                    link_text=f"{name} ({run_dir.name})",
                    key=key,
                    description=f"Self-contained HTML report in {run_dir}",
                )
            )
    return ids


def drift_row(document: dict, run: str) -> dict:
    """One run's line of the data-drift history: its reference, new images, the overall
    feature test, the drift state and the flagged checks."""
    checks = {c["name"]: c for c in document.get("checks") or []}
    overall = checks.get("features:all") or {}
    outcome = document.get("summary") or {}
    return {
        "run": run,
        "reference": document.get("reference_text") or "none",
        "new_images": document.get("n_new"),
        "features_mmd": overall.get("statistic"),
        "features_p": overall.get("p_value"),
        "features_p_holm": overall.get("p_adjusted"),
        "drift": outcome.get("drift"),
        "anomalies": outcome.get("anomalies"),
        "flagged": ", ".join(outcome.get("flagged") or []) or "-",
        "blocked": bool(outcome.get("blocked")),
    }


def drift_history(run_dir: Path) -> list[dict]:
    """`drift_row` of every run of `run_dir`'s workdir with a data report, up to this one,
    newest first (at most DRIFT_HISTORY_RUNS)."""
    run_dir = Path(run_dir)
    rows = []
    for earlier in reversed(list_run_dirs(run_dir.parent.parent)):
        if earlier.name > run_dir.name:
            continue
        path = earlier / data_report.JSON_FILE
        if not path.is_file():
            continue
        try:
            rows.append(drift_row(data_report.read_data_report(path), earlier.name))
        except DataError as error:
            logger.warning("data-drift history: %s", error)
        if len(rows) >= DRIFT_HISTORY_RUNS:
            break
    return rows


def publish_data_report(run_dir: Path) -> list[UUID]:
    """Table `data-drift` (this run's data checks and the workdir's earlier runs', newest
    first: drift across runs) and a link `data-report-html` to data_report.html."""
    run_dir = Path(run_dir)
    rows = drift_history(run_dir)
    if not rows or rows[0]["run"] != run_dir.name:
        logger.warning("no data-drift artifact: %s has no data report", run_dir)
        return []
    this = rows[0]
    description = (
        f"Data checks of run {run_dir.name} against {this['reference']}: drift "
        f"{this['drift']}, {this['anomalies']} flagged"
        + (" (blocked)" if this["blocked"] else "")
        + f"; earlier runs below. Report: {run_dir / data_report.HTML_FILE}"
    )
    ids = [create_table_artifact(rows, key="data-drift", description=description)]
    html = (run_dir / data_report.HTML_FILE).resolve()
    if html.is_file():
        ids.append(
            create_link_artifact(
                html.as_uri(),
                link_text=f"{data_report.HTML_FILE} ({run_dir.name})",
                key="data-report-html",
                description=f"Self-contained data report in {run_dir}",
            )
        )
    return ids
