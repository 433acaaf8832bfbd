"""The data report: every data check of a run, decided together, for machines and people.

`write_data_report(manifest, validation, drift, spec, run_dir)` gathers the contract's checks
(`data.contract`, data_validation.json) and the drift tests (`evaluation.drift`,
data_drift.json; None when the run stopped before extraction), and decides:

  * statistical checks (class balance, properties, features overall and per class) are
    flagged by Holm's step-down procedure at `spec.alpha` over all of them that were tested:
    the probability that a run with no change raises any flag is at most alpha, whatever
    the dependence between the checks (docs/data-checks.md gives the measured rates);
  * rule checks are flagged when broken (`data.contract`);
  * a flagged check whose severity is `block` is blocking: the run stops before training,
    and `reason` is its one line.

Writes into the run folder `data_report.json` (each check with `name`, `statistic`,
`p_value`, `p_adjusted`, `flagged`, `blocking` and its context; the most-shifted new images;
a `summary` for status.json and `runs ls`) and `data_report.html`, self-contained, with its
plots (`data_plots`: class balance old against new, property histograms, each statistic
against its permutation null distribution, the most-shifted thumbnails).

    >>> report = write_data_report(manifest, validation, drift, spec, run_dir)
    >>> report.blocked, report.summary["drift"]
    (False, 'ok')
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from inception_retrain.data.contract import DataValidation, compare_with, read_validation
from inception_retrain.data.contract_spec import DataCheckSpec
from inception_retrain.data.distribution_tests import TESTED, Check, holm
from inception_retrain.data.manifest import Manifest
from inception_retrain.evaluation import data_plots
from inception_retrain.evaluation.drift import DriftResult, read_drift
from inception_retrain.evaluation.reports import render
from inception_retrain.plumbing.errors import PipelineError
from inception_retrain.plumbing.files import atomic_write
from inception_retrain.plumbing.schemas import read_document, write_document

KIND, VERSION = "data-report", 1
JSON_FILE, HTML_FILE = "data_report.json", "data_report.html"
MOST_SHIFTED = 12
REASONS_SHOWN = 3
CHECK_COLUMNS = [
    "check",
    "status",
    "severity",
    "n_reference",
    "n_new",
    "statistic",
    "p_value",
    "p_adjusted",
    "flagged",
    "blocking",
    "finding",
]
# What `runs ls` says about drift, from the overall feature test.
DRIFT_STATES = ("flagged", "ok", "too-few", "not-comparable", "no-reference", "off", "not-run")


class DataChecksBlocked(PipelineError):
    """A flagged data check whose severity is `block`: the run stops before training."""


class DataReport(BaseModel):
    """The data report as the flow hands it on."""

    json_path: Path
    html_path: Path
    blocked: bool
    reason: str  # one line: the blocking findings ("" when nothing blocks)
    summary: dict  # what status.json records (see `summary`)


def read_data_report(path: Path) -> dict:
    """A data_report.json document."""
    return read_document(path, KIND, VERSION)


def _finding(check: Check) -> str:
    if check.kind == "rule":
        return check.message
    test = f"p={check.p_value:.3g}, Holm {check.p_adjusted:.3g}" if check.p_adjusted else ""
    return f"flagged ({test}): {check.message}" if test else check.message


def reason(checks: list[Check]) -> str:
    """The one-line cause of a block: the first blocking findings."""
    blocking = [f"{c.name}: {_finding(c)}" for c in checks if c.blocking]
    if len(blocking) > REASONS_SHOWN:
        blocking = blocking[:REASONS_SHOWN] + [f"and {len(blocking) - REASONS_SHOWN} more"]
    return "; ".join(blocking)


def drift_state(checks: list[Check]) -> str:
    """flagged, ok, or why the overall feature test was not run (see DRIFT_STATES)."""
    features = [c for c in checks if c.kind == "features"]
    if not features:
        return "not-run"
    if any(c.flagged for c in features):
        return "flagged"
    overall = next((c for c in features if c.name == "features:all"), features[0])
    return "ok" if overall.status == TESTED else overall.status


def summary(checks: list[Check], reference_text: str | None) -> dict:
    """What status.json and `runs ls` keep: anomalies (flagged checks), whether they block,
    the drift state and the reference."""
    flagged = [c.name for c in checks if c.flagged]
    return {
        "anomalies": len(flagged),
        "flagged": flagged,
        "blocked": any(c.blocking for c in checks),
        "drift": drift_state(checks),
        "reference": reference_text,
    }


def _most_shifted(checks: list[Check], comparison) -> list[dict]:
    overall = next((c for c in checks if c.name == "features:all"), None)
    if overall is None or overall.scores is None or not len(overall.scores):
        return []
    ids = overall.detail.get("new_ids") or []
    rows = comparison.new.rows
    position = {cid: i for i, cid in enumerate(rows.content_ids)}
    order = np.argsort(overall.scores)[::-1][:MOST_SHIFTED]
    shifted = []
    for i in order:
        cid = ids[i]
        k = position[cid]
        shifted.append(
            {
                "content_id": cid,
                "uri": rows.uris[k],
                "label": rows.labels[k],
                "source": comparison.new.source[k],
                "score": float(overall.scores[i]),
            }
        )
    return shifted


def _record(check: Check) -> dict:
    record = check.to_dict()
    record["detail"].pop("new_ids", None)
    return record


def _row(check: Check) -> dict:
    return {
        "check": check.name,
        "status": check.status,
        "severity": check.severity,
        "n_reference": check.n_reference if check.statistical else None,
        "n_new": check.n_new if check.statistical else None,
        "statistic": check.statistic,
        "p_value": check.p_value,
        "p_adjusted": check.p_adjusted,
        "flagged": "yes" if check.flagged else "no",
        "blocking": "yes" if check.blocking else "no",
        "finding": check.message,
    }


def write_data_report(
    manifest: Manifest,
    validation: DataValidation,
    drift: DriftResult | None,
    spec: DataCheckSpec,
    run_dir: Path,
) -> DataReport:
    """Decide every check together and write data_report.json and .html (see the module
    docstring)."""
    run_dir = Path(run_dir)
    document, checks = read_validation(validation.json_path)
    drift_note = ""
    if drift is not None:
        drift_document, feature_checks = read_drift(drift.json_path)
        checks += feature_checks
        drift_note = drift_document.get("note") or ""
    holm(checks, spec.alpha)
    for check in checks:
        if check.statistical:
            check.blocking = check.flagged and check.severity == "block"
    reference = validation.reference
    reference_text = reference.describe() if reference else None
    comparison = compare_with(manifest.path, reference, spec)
    shifted = _most_shifted(checks, comparison)
    plots = {
        "classes": data_plots.class_balance_plot(run_dir, comparison),
        "properties": data_plots.properties_plot(run_dir, comparison),
        "null": data_plots.null_distributions_plot(run_dir, checks),
        "shifted": data_plots.most_shifted_thumbnails(run_dir, shifted),
    }
    plots = {key: name for key, name in plots.items() if name}
    family = [c.name for c in checks if c.statistical and c.status == TESTED]
    outcome = summary(checks, reference_text)
    report = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_dir": str(run_dir),
        "reference": document["reference"],
        "reference_text": reference_text,
        "alpha": spec.alpha,
        "family": family,
        "n_current": document["n_current"],
        "n_new": document["n_new"],
        "n_new_tested": document["n_new_tested"],
        "n_reference": document["n_reference"],
        "n_reference_tested": document["n_reference_tested"],
        "drift_run": drift is not None,
        "drift_note": drift_note,
        "blocked": outcome["blocked"],
        "reason": reason(checks),
        "summary": outcome,
        "checks": [_record(c) for c in checks],
        "most_shifted": shifted,
        "plots": plots,
        "spec": spec.model_dump(mode="json"),
    }
    json_path = write_document(run_dir / JSON_FILE, KIND, VERSION, report)
    html = render(
        "data_report.html.j2",
        title="Data report",
        random_weights="",
        doc=report,
        rows=[_row(c) for c in checks],
        columns=CHECK_COLUMNS,
        run_dir=run_dir,
    )
    html_path = run_dir / HTML_FILE
    atomic_write(html_path, html)
    return DataReport(
        json_path=json_path,
        html_path=html_path,
        blocked=report["blocked"],
        reason=report["reason"],
        summary=outcome,
    )
