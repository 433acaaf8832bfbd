"""Model registry: versions under `WORKDIR/models/<version>/` and the champion pointer.

  * A version folder (`v0001-20250101T120000Z`, numbered, sortable) becomes visible only by
    renaming a complete staging folder (`publish_version`), so a visible version is complete.
  * `models/champion.json` {version, score, metric, time, ...} names the champion. It is
    replaced with `atomic_write_json` (temp file, fsync, rename), after the version folder
    exists, so a crash at any moment leaves the old pointer or the new one, never neither.
  * `promote` makes a new version champion iff its score on the frozen test split is at least
    the champion's score minus `config.promotion_tolerance` (metric `config.promotion_metric`,
    higher is better; `neg_log_loss` is minus the log loss). The first model becomes champion.
    Scores are compared on the SAME test split: if the champion was scored on a different one
    (its metrics.json records `test_split_fingerprint`), its model.keras is re-scored on the
    current test images. The decision goes to run_dir/promotion.json and into a "Promotion"
    section of evaluation.md and evaluation.html.
  * `resolve_model(workdir, "champion" | VERSION)` -> the version folder.

Writers (export, promote) serialise on an flock of `models/.lock`.

    version = promote(version, evaluation, config, run_dir)
    resolve_model("workdir", "champion")  # -> workdir/models/v0003-...
"""

from __future__ import annotations

import contextlib
import fcntl
import html
import os
import re
import shutil
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.artifacts import Evaluation, ModelVersion
from inception_retrain.config import RetrainConfig
from inception_retrain.errors import PipelineError
from inception_retrain.files import atomic_write_json, atomic_write_text, read_json, read_umask
from tasks import metrics as M

CHAMPION_FILE = "champion.json"
REQUIRED_FILES = ("model.keras", "labels.json", "metrics.json", "model_card.md")
VERSION_PATTERN = re.compile(r"^v(\d+)-")
# Tests set this to a crash-point name to kill the process there (see _crash_point).
CRASH_ENV = "INCEPTION_RETRAIN_CRASH_AT"


class ModelNotFoundError(PipelineError):
    """No champion yet, or no such version."""


# --- versions ---------------------------------------------------------------------------------


def models_dir(workdir: str | os.PathLike[str]) -> Path:
    return Path(workdir) / "models"


def is_complete(version_dir: Path) -> bool:
    version_dir = Path(version_dir)
    return all((version_dir / name).is_file() for name in REQUIRED_FILES)


def list_versions(models: Path) -> list[str]:
    """Visible versions, oldest first (staging folders are hidden and never listed)."""
    if not Path(models).is_dir():
        return []
    names = [p.name for p in Path(models).iterdir() if p.is_dir() and VERSION_PATTERN.match(p.name)]
    return sorted(names, key=lambda n: int(VERSION_PATTERN.match(n).group(1)))


@contextlib.contextmanager
def registry_lock(models: Path):
    """Exclusive lock over version numbering and the champion pointer (released on crash)."""
    Path(models).mkdir(parents=True, exist_ok=True)
    with open(Path(models) / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_version(staging: Path, models: Path) -> Path:
    """Rename a complete staging folder to the next version name; returns the version folder."""
    # Temp folders and files are created owner-only; a served model must be readable by
    # other users (e.g. a TF Serving container), so apply the usual umask-based modes.
    mask = read_umask()
    os.chmod(staging, 0o777 & ~mask)
    for root, folders, files in os.walk(staging):
        for name in folders:
            os.chmod(Path(root) / name, 0o777 & ~mask)
        for name in files:
            path = Path(root) / name
            os.chmod(path, 0o666 & ~mask)
            with open(path, "rb") as handle:  # durable before visible
                os.fsync(handle.fileno())
    with registry_lock(models):
        _remove_abandoned(models)
        versions = list_versions(models)
        number = int(VERSION_PATTERN.match(versions[-1]).group(1)) + 1 if versions else 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = Path(models) / f"v{number:04d}-{stamp}"
        os.rename(staging, target)
        _fsync_dir(Path(models))
    return target


def _remove_abandoned(models: Path, older_than_s: float = 6 * 3600) -> None:
    """Staging folders and pointer temp files left by killed processes (old ones only: a
    running export's staging folder is young)."""
    now = time.time()
    for path in Path(models).glob(".*"):
        stale = path.name.startswith((".staging-", f".{CHAMPION_FILE}."))
        with contextlib.suppress(OSError):
            if not stale or now - path.stat().st_mtime <= older_than_s:
                continue
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


def read_champion(models: Path) -> tuple[dict | None, str]:
    """(pointer, "") or (None, why there is no usable champion)."""
    pointer = Path(models) / CHAMPION_FILE
    if not pointer.exists():
        return None, "no champion yet"
    try:
        champion = read_json(pointer)
        version_dir = Path(models) / champion["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None, f"{pointer} is unreadable"
    if not is_complete(version_dir):
        return None, f"champion folder {version_dir} is missing or incomplete"
    return champion, ""


def resolve_model(workdir: str | os.PathLike[str], name: str = "champion") -> Path:
    """The folder of model `name` ("champion" or a version name) under WORKDIR/models."""
    models = models_dir(workdir)
    if name == "champion":
        champion, why = read_champion(models)
        if champion is None:
            raise ModelNotFoundError(f"no champion model in {models} ({why}): run a retrain first")
        return models / champion["version"]
    version_dir = models / name
    if not VERSION_PATTERN.match(name) or not is_complete(version_dir):
        known = ", ".join(list_versions(models)[-5:]) or "none"
        raise ModelNotFoundError(f"no model version '{name}' in {models} (latest: {known})")
    return version_dir


# --- promotion --------------------------------------------------------------------------------


def _crash_point(name: str) -> None:
    """Die here, as a crash would, when a test asks for it (no effect otherwise)."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def champion_score(
    champion_dir: Path, evaluation: Evaluation, metric: str, chunk: int = 64
) -> tuple[float | None, str]:
    """The champion's score on the evaluation's test split, and how it was obtained.

    Recorded in the champion's metrics.json when that test split is the same one; otherwise
    its model.keras predicts the current test images (raw files, `chunk` at a time).
    """
    recorded = read_json(champion_dir / "metrics.json")
    split = evaluation.metrics.get("test_split_fingerprint")
    if split and recorded.get("test_split_fingerprint") == split:
        return M.score(recorded["metrics"], metric), "recorded on the same test split"
    from tasks.backbone import inference_function
    from tasks.evaluate import read_test_rows
    from tasks.predict import load_inference_model, predict_arrays
    from tasks.preprocess import load_rgb

    current = read_json(evaluation.json_path)
    class_names = read_json(champion_dir / "labels.json")["class_names"]
    if class_names != current["class_names"]:
        return None, f"the champion predicts other classes ({', '.join(class_names)})"
    rows = read_test_rows(Path(current["manifest"]["path"]))
    if not rows:
        return None, "the current test split is empty"
    rows = [rows[content_id] for content_id in sorted(rows)]
    model, _ = load_inference_model(champion_dir)
    infer = inference_function(model)
    scores = []
    for begin in range(0, len(rows), chunk):
        try:
            images = [load_rgb(row["uri"]) for row in rows[begin : begin + chunk]]
        except Exception as error:  # a test image vanished or changed since ingestion
            raise PipelineError(
                f"cannot re-score the champion on the test split: {error}"
            ) from None
        scores.append(predict_arrays(infer, images, len(class_names)))
    labels = [row["label_index"] for row in rows]
    report = M.classification_report(labels, np.concatenate(scores), class_names)
    return M.score(report, metric), f"re-scored on the current test split ({len(rows)} images)"


def decide(
    new_score: float | None, old_score: float | None, tolerance: float, how: str = ""
) -> tuple[bool, str]:
    """(promote?, reason) for a challenger against an existing champion."""
    if new_score is None:
        return False, "the new model's score is undefined on this test split"
    if old_score is None:
        return True, f"the champion has no score on this test split ({how or 'undefined'})"
    if new_score >= old_score - tolerance:
        return True, f"{new_score:.4f} >= {old_score:.4f} - {tolerance:g}"
    return False, f"{new_score:.4f} < {old_score:.4f} - {tolerance:g}"


def promote(
    version: ModelVersion, evaluation: Evaluation, config: RetrainConfig, run_dir: Path
) -> ModelVersion:
    """Make `version` champion if it is good enough; record the decision in the run folder."""
    models = models_dir(config.workdir)
    metric, tolerance = config.promotion_metric, config.promotion_tolerance
    if not is_complete(version.path):
        raise PipelineError(f"model version folder {version.path} is incomplete")
    new_score = M.score(evaluation.metrics, metric)
    with registry_lock(models):
        champion, why = read_champion(models)
        old_score, how = None, ""
        if champion is None:
            promoted, reason = True, f"first champion ({why})"
        elif champion["version"] == version.version:
            promoted, reason, old_score = True, "already the champion", champion.get("score")
        else:
            old_score, how = champion_score(models / champion["version"], evaluation, metric)
            promoted, reason = decide(new_score, old_score, tolerance, how)
        if promoted:
            pointer = {
                "version": version.version,
                "score": new_score,
                "metric": metric,
                "time": datetime.now(UTC).isoformat(timespec="seconds"),
                "test_split_fingerprint": evaluation.metrics.get("test_split_fingerprint"),
                "run_dir": str(run_dir),
            }
            _crash_point("before-pointer")
            atomic_write_json(models / CHAMPION_FILE, pointer)
            _crash_point("after-pointer")
    record = {
        "decision": "promoted" if promoted else "rejected",
        "promoted": promoted,
        "version": version.version,
        "score": new_score,
        "previous_champion": champion["version"] if champion else None,
        "champion_score": old_score,
        "champion_score_source": how,
        "metric": metric,
        "tolerance": tolerance,
        "reason": reason,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    atomic_write_json(Path(run_dir) / "promotion.json", record)
    _add_to_reports(evaluation, record)
    return version.model_copy(
        update={"promoted": promoted, "score": new_score, "champion_score": old_score}
    )


promote_task = task(promote, name="promote", cache_policy=NO_CACHE)


def _promotion_rows(record: dict) -> list[tuple[str, object]]:
    return [
        ("decision", record["decision"]),
        ("version", record["version"]),
        ("metric", record["metric"]),
        ("new model score", record["score"]),
        ("champion", record["previous_champion"] or "none"),
        ("champion score", record["champion_score"]),
        ("champion score source", record["champion_score_source"] or "n/a"),
        ("tolerance", record["tolerance"]),
        ("reason", record["reason"]),
    ]


def _add_to_reports(evaluation: Evaluation, record: dict) -> None:
    """Append (or replace) the "Promotion" section of evaluation.md and evaluation.html."""
    from tasks.report_html import append_section, format_value, table_html

    rows = _promotion_rows(record)
    md_path, html_path = Path(evaluation.md_path), Path(evaluation.html_path)
    if md_path.is_file():
        text = md_path.read_text().split("\n## Promotion\n")[0].rstrip("\n")
        lines = [f"- **{k}**: {format_value(v)}" for k, v in rows]
        atomic_write_text(md_path, text + "\n\n## Promotion\n\n" + "\n".join(lines) + "\n")
    if html_path.is_file():
        verdict = html.escape(f"{record['decision'].upper()}: {record['reason']}")
        body = f'<p id="promotion-decision"><strong>{verdict}</strong></p>'
        body += table_html(rows, ["item", "value"])
        atomic_write_text(html_path, append_section(html_path.read_text(), "Promotion", body))
