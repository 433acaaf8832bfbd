"""What a workdir's runs were and what they gave, read from their run folders: for listings.

Each run folder says what it is in files its owners wrote: `config.json` (the settings) and
`status.json` (state, times, the data checks' outcome once checked, the test metrics once
evaluated, the promotion once decided: `run_folder`), and `ingest.json` (the images:
`data.ingest`). A summary reads only those, so
`runs ls` lists hundreds of runs without importing TensorFlow; a run found dead on the way is
marked killed (`run_folder.run_state`).

    >>> rows = list_runs(workdir)                     # oldest first
    >>> rows[-1]["metric"], rows[-1]["score"], rows[-1]["dropout"]
    ('roc_auc', 0.9788, 'Dropout(0.2) after Dense(1024)')
    >>> compare_runs(run_a, run_b)["settings"]["learning_rate"]
    (0.0001, 0.001)
"""

from __future__ import annotations

import os
from pathlib import Path

from inception_retrain.data.ingest import COUNTS_FILE, COUNTS_KIND, COUNTS_VERSION
from inception_retrain.plumbing.errors import DataError
from inception_retrain.plumbing.schemas import read_document
from inception_retrain.runs import run_folder
from inception_retrain.training.head_spec import dropout_in_words

REPORTS = ("evaluation.html", "dropout_impact.html", "data_report.html")


def dropout_setting(settings: dict) -> str:
    """The head's dropout in words: "Dropout(0.2) after Dense(1024)", or "no dropout"."""
    head = settings.get("head") or {}
    return dropout_in_words(
        head.get("dropout_rate", 0.2),
        head.get("dropout_placement", "after_dense2"),
        head.get("hidden_units"),
    )


def run_summary(run_dir: Path) -> dict:
    """One run: {run, path, state, started, updated, data, images, skipped, anomalies,
    drift, data_blocked, dropout, metric, score, metrics, decision, version, message,
    reports, settings}. `anomalies` (flagged data checks), `drift` (flagged, ok, too-few,
    not-comparable, no-reference, off, not-run) and `data_blocked` are None for a run
    without data checks."""
    run_dir = Path(run_dir)
    status = run_folder.run_state(run_dir) or {}
    try:
        settings = run_folder.read_config(run_dir)[0]
    except (DataError, KeyError):
        settings = {}
    try:
        counts = read_document(run_dir / COUNTS_FILE, COUNTS_KIND, COUNTS_VERSION)
    except DataError:
        counts = {}
    promotion = status.get("promotion") or {}
    metrics = status.get("metrics") or {}
    data_checks = status.get("data_checks") or {}
    metric = promotion.get("metric") or settings.get("promotion_metric", "roc_auc")
    score = promotion.get("score")
    if score is None and metric in metrics:
        score = metrics[metric]
    return {
        "run": run_dir.name,
        "path": str(run_dir),
        "state": status.get("state", "unknown"),
        "started": status.get("started", ""),
        "updated": status.get("updated", ""),
        "data": settings.get("data", "?"),
        "images": counts.get("ok"),
        "skipped": counts.get("skipped"),
        "anomalies": data_checks.get("anomalies"),
        "drift": data_checks.get("drift"),
        "data_blocked": data_checks.get("blocked"),
        "dropout": dropout_setting(settings) if settings else "?",
        "metric": metric,
        "score": score,
        "metrics": metrics,
        "decision": promotion.get("decision"),
        "version": promotion.get("version"),
        "message": status.get("message", ""),
        "reports": [str(run_dir / name) for name in REPORTS if (run_dir / name).is_file()],
        "settings": settings,
    }


def list_runs(workdir: str | os.PathLike[str]) -> list[dict]:
    """`run_summary` of every run folder of `workdir`, oldest first."""
    return [run_summary(run_dir) for run_dir in run_folder.list_run_dirs(workdir)]


def find_run(workdir: str | os.PathLike[str], name: str) -> Path:
    """A run folder by path, by id, or by a unique prefix of its id (`20261206-2141`)."""
    given = Path(name)
    if given.is_dir():
        return given
    runs = run_folder.list_run_dirs(workdir)
    matches = [run for run in runs if run.name == name] or [
        run for run in runs if run.name.startswith(name)
    ]
    if len(matches) == 1:
        return matches[0]
    where = run_folder.runs_dir(workdir)
    if not matches:
        raise DataError(f"no run {name!r} under {where} (see `inception-retrain runs ls`)")
    raise DataError(f"{name!r} names {len(matches)} runs under {where}: give more of its id")


def flat_settings(settings: dict, prefix: str = "") -> dict:
    """Nested settings under their option names (`augment_views`; the head's fields bare,
    as `--dropout-rate` is)."""
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(flat_settings(value, "" if key == "head" else f"{prefix}{key}_"))
        else:
            flat[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return flat


def compare_runs(first: Path, second: Path) -> dict:
    """Two runs side by side: {runs, settings: {name: (a, b)} for settings that differ,
    metrics: {name: (a, b)} for every metric either has, outcome: {field: (a, b)}}."""
    a, b = run_summary(first), run_summary(second)
    settings_a, settings_b = flat_settings(a["settings"]), flat_settings(b["settings"])
    settings = {
        key: (settings_a.get(key), settings_b.get(key))
        for key in sorted(set(settings_a) | set(settings_b))
        if settings_a.get(key) != settings_b.get(key)
    }
    metrics = {
        key: (a["metrics"].get(key), b["metrics"].get(key))
        for key in sorted(set(a["metrics"]) | set(b["metrics"]))
    }
    outcome = {
        key: (a[key], b[key])
        for key in ("state", "started", "images", "dropout", "metric", "score", "decision")
    }
    return {"runs": (a["run"], b["run"]), "settings": settings, "metrics": metrics, **outcome}
