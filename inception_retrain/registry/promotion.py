"""Promotion: does a new model deserve to be champion? Decided on the same test split.

A challenger that is the champion itself (the same backbone and head fingerprints, as a rerun
on unchanged data trains) is not promoted again: it would only publish a copy. Otherwise a
challenger becomes champion iff its score on the frozen test split is at least the
champion's score minus the policy's tolerance (`PromotionPolicy`: its metric, higher is
better; `neg_log_loss` is minus the log loss). The first model becomes champion if its score
is defined; a damaged champion pointer is recovered or refused, never taken for "no champion
yet" (`champion_gate`). Scores are compared on the SAME test split: if the champion was
scored on another one (its metrics.json records `test_split_fingerprint`), its model.keras is
re-scored on the current test images.

Two steps, so the flow can publish a version only when it will be promoted:
  1. `decide_promotion(evaluation, policy)` reads the registry and decides (writes nothing);
  2. `record_promotion(decision, version, ...)` makes the published `version` champion when
     the decision says so. It holds the registry lock, and decides again if the champion
     changed in between. The decision goes to run_dir/promotion.json, which the evaluation
     report shows.

    decision = decide_promotion(evaluation, policy)
    version = export_model(...) if decision.promoted else None
    record = record_promotion(decision, version, evaluation, policy, run_dir)
"""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from inception_retrain.data.images import load_rgb
from inception_retrain.data.manifest import read_image_rows
from inception_retrain.evaluation import metrics as M
from inception_retrain.evaluation.evaluate import Evaluation, read_evaluation
from inception_retrain.features.backbone import inference_function
from inception_retrain.plumbing.errors import DataError, PipelineError
from inception_retrain.plumbing.files import read_json
from inception_retrain.plumbing.schemas import read_document, write_document
from inception_retrain.registry import versions
from inception_retrain.registry.champion_gate import current_champion, first_champion
from inception_retrain.registry.predict import load_inference_model, predict_arrays
from inception_retrain.registry.promotion_policy import PromotionPolicy
from inception_retrain.registry.versions import ModelVersion

KIND, VERSION, FILE_NAME = "promotion", 1, "promotion.json"
# Tests set this to a crash-point name to kill the process there (see _crash_point).
CRASH_ENV = "INCEPTION_RETRAIN_CRASH_AT"


class PromotionDecision(BaseModel):
    """Whether the run's model should become champion, and why."""

    promoted: bool
    score: float | None
    metric: str
    tolerance: float
    previous_champion: str | None
    champion_score: float | None
    champion_score_source: str
    reason: str


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
    current = read_evaluation(evaluation.json_path)
    class_names = read_json(champion_dir / "labels.json")["class_names"]
    if class_names != current["class_names"]:
        return None, f"the champion predicts other classes ({', '.join(class_names)})"
    test = read_image_rows(Path(current["manifest"]["path"]), "test")
    if not len(test):
        return None, "the current test split is empty"
    order = np.argsort(test.content_ids)
    uris = [test.uris[i] for i in order]
    model, _ = load_inference_model(champion_dir)
    infer = inference_function(model)
    scores = []
    for begin in range(0, len(uris), chunk):
        try:
            images = [load_rgb(uri) for uri in uris[begin : begin + chunk]]
        except Exception as error:  # a test image vanished or changed since ingestion
            raise PipelineError(
                f"cannot re-score the champion on the test split: {error}"
            ) from None
        scores.append(predict_arrays(infer, images, len(class_names)))
    labels = [test.label_indices[i] for i in order]
    report = M.classification_report(labels, np.concatenate(scores), class_names)
    return M.score(report, metric), f"re-scored on the current test split ({len(uris)} images)"


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


def same_model(champion_dir: Path, evaluation: Evaluation) -> bool:
    """Whether the evaluated model is the champion itself: the same backbone and head
    fingerprints (weights content and architecture), as a rerun on unchanged data trains."""
    try:
        lineage = read_json(Path(champion_dir) / "metrics.json")["lineage"]
        current = read_evaluation(evaluation.json_path)
        head, backbone = current["head"]["fingerprint"], current["backbone"]["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError, DataError):
        return False
    recorded = (lineage.get("head_fingerprint"), lineage.get("backbone_fingerprint"))
    return recorded == (head, backbone)


def _decide_against(
    champion: dict | None, why: str, evaluation: Evaluation, policy: PromotionPolicy
) -> PromotionDecision:
    metric, tolerance = policy.metric, policy.tolerance
    new_score = M.score(evaluation.metrics, metric)
    old_score, how = None, ""
    models = policy.models_dir
    if champion is None:
        promoted, reason = first_champion(new_score, why)
    elif same_model(models / champion["version"], evaluation):  # publishing it again: a copy
        promoted = False
        reason = f"the same model as the champion {champion['version']} (equal fingerprints)"
    else:
        old_score, how = champion_score(models / champion["version"], evaluation, metric)
        promoted, reason = decide(new_score, old_score, tolerance, how)
    return PromotionDecision(
        promoted=promoted,
        score=new_score,
        metric=metric,
        tolerance=tolerance,
        previous_champion=champion["version"] if champion else None,
        champion_score=old_score,
        champion_score_source=how,
        reason=reason,
    )


def decide_promotion(evaluation: Evaluation, policy: PromotionPolicy) -> PromotionDecision:
    """Compare the run's model with the current champion (reads the registry only)."""
    champion, why = current_champion(policy.models_dir)  # a damaged pointer: recovered or refused
    return _decide_against(champion, why, evaluation, policy)


def record_promotion(
    decision: PromotionDecision,
    version: ModelVersion | None,
    evaluation: Evaluation,
    policy: PromotionPolicy,
    run_dir: Path,
) -> dict:
    """Make `version` champion if the decision (re-checked under the lock) says so; write
    promotion.json. `version` is None when nothing was published (a rejected model)."""
    models = policy.models_dir
    if version is not None and not versions.is_complete(version.path):
        raise PipelineError(f"model version folder {version.path} is incomplete")
    with versions.registry_lock(models):
        champion, why = current_champion(models, repair=True)
        if (champion or {}).get("version") != decision.previous_champion:
            decision = _decide_against(champion, why, evaluation, policy)  # changed meanwhile
        promoted = decision.promoted and version is not None
        if promoted:
            pointer = {
                "version": version.version,
                "score": decision.score,
                "metric": decision.metric,
                "time": datetime.now(UTC).isoformat(timespec="seconds"),
                "test_split_fingerprint": evaluation.metrics.get("test_split_fingerprint"),
                "run_dir": str(run_dir),
            }
            _crash_point("before-pointer")
            versions.write_champion(models, pointer)
            _crash_point("after-pointer")
    record = {
        **decision.model_dump(),
        "decision": "promoted" if promoted else "rejected",
        "promoted": promoted,
        "version": version.version if version is not None else None,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_document(Path(run_dir) / FILE_NAME, KIND, VERSION, record)
    return record


def read_promotion(run_dir: Path) -> dict | None:
    """promotion.json of a run, or None when no decision was recorded."""
    try:
        return read_document(Path(run_dir) / FILE_NAME, KIND, VERSION)
    except DataError:
        return None


def promote(
    version: ModelVersion, evaluation: Evaluation, policy: PromotionPolicy, run_dir: Path
) -> ModelVersion:
    """Decide and record in one call, for a version that is already published."""
    decision = decide_promotion(evaluation, policy)
    record = record_promotion(decision, version, evaluation, policy, run_dir)
    return version.model_copy(
        update={
            "promoted": record["promoted"],
            "score": record["score"],
            "champion_score": record["champion_score"],
        }
    )
