"""Classification metrics in plain numpy (no scikit-learn), for binary and multi-class heads.

Conventions:
  * `labels` are class indices (N,); `probabilities` are per-class probabilities (N, K), rows
    summing to 1 (use `tasks.head.probabilities_to_scores` for a sigmoid head's (N, 1) output).
  * The predicted class is the argmax (ties go to the lower index, so p = 0.5 predicts class 0).
  * Binary (K == 2): precision, recall, F1, ROC-AUC and PR-AUC are those of the positive class,
    index 1. Multi-class: macro averages over all K classes (precision/recall/F1) or over the
    classes for which the metric is defined (one-vs-rest ROC-AUC and PR-AUC).
  * An undefined value (ROC-AUC with one class present, precision with no positive predictions,
    ...) is `None` in the curves and `0.0` for precision/recall/F1 (as scikit-learn's
    zero_division=0), and the report's `notes` say why.
  * ROC-AUC is the trapezoid area under the ROC curve over distinct thresholds (ties count
    one half); PR-AUC is average precision, sum over thresholds of (R_n - R_{n-1}) * P_n.
  * Calibration uses top-label confidence (max probability) against accuracy, in equal-width
    bins [i/B, (i+1)/B) (1.0 falls in the last); ECE = sum_b (n_b / N) * |acc_b - conf_b|.

    >>> report = classification_report([0, 1, 1], [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], ["a", "b"])
    >>> report["accuracy"], report["recall"]
    (0.6666666666666666, 0.5)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LOG_LOSS_EPS = 1e-15
CALIBRATION_BINS = 10


def _as_inputs(labels, probabilities) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[0] != labels.shape[0]:
        raise ValueError(f"probabilities must be (N, K) with N={labels.shape[0]}")
    return labels, probabilities


def confusion_matrix(labels, predicted, n_classes: int) -> np.ndarray:
    """Counts (K, K): rows are true classes, columns predicted classes."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, np.int64), np.asarray(predicted, np.int64)), 1)
    return matrix


def per_class_scores(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix (0 where undefined)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    true_pos = np.diag(matrix)
    predicted = matrix.sum(axis=0)
    support = matrix.sum(axis=1)
    precision = np.divide(true_pos, predicted, out=np.zeros_like(true_pos), where=predicted > 0)
    recall = np.divide(true_pos, support, out=np.zeros_like(true_pos), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(int)}


def _threshold_counts(is_positive: np.ndarray, scores: np.ndarray):
    """Cumulative true/false positives when predicting positive for score >= each threshold."""
    order = np.argsort(-scores, kind="stable")
    scores, is_positive = scores[order], is_positive[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    true_pos = np.cumsum(is_positive)[last_of_tie]
    false_pos = (last_of_tie + 1) - true_pos
    return true_pos.astype(np.float64), false_pos.astype(np.float64), scores[last_of_tie]


def roc_curve(is_positive, scores):
    """(fpr, tpr, thresholds), starting at (0, 0); None if only one class is present."""
    is_positive = np.asarray(is_positive, dtype=bool).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    n_pos = is_positive.sum()
    n_neg = is_positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    true_pos, false_pos, thresholds = _threshold_counts(is_positive, scores)
    fpr = np.r_[0.0, false_pos / n_neg]
    tpr = np.r_[0.0, true_pos / n_pos]
    return fpr, tpr, np.r_[np.inf, thresholds]


def roc_auc(is_positive, scores) -> float | None:
    curve = roc_curve(is_positive, scores)
    if curve is None:
        return None
    fpr, tpr, _ = curve
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def precision_recall_curve(is_positive, scores):
    """(precision, recall, thresholds) at each distinct threshold, high to low; None if no
    positives."""
    is_positive = np.asarray(is_positive, dtype=bool).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    n_pos = is_positive.sum()
    if n_pos == 0:
        return None
    true_pos, false_pos, thresholds = _threshold_counts(is_positive, scores)
    precision = true_pos / (true_pos + false_pos)
    recall = true_pos / n_pos
    return precision, recall, thresholds


def average_precision(is_positive, scores) -> float | None:
    curve = precision_recall_curve(is_positive, scores)
    if curve is None:
        return None
    precision, recall, _ = curve
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def log_loss(labels, probabilities, eps: float = LOG_LOSS_EPS) -> float:
    """Mean negative log probability of the true class (clipped to [eps, 1 - eps])."""
    labels, probabilities = _as_inputs(labels, probabilities)
    true_class = probabilities[np.arange(labels.size), labels]
    return float(-np.mean(np.log(np.clip(true_class, eps, 1.0 - eps))))


def calibration(labels, probabilities, n_bins: int = CALIBRATION_BINS) -> dict:
    """Reliability-diagram bins (top-label confidence vs accuracy) and the ECE."""
    labels, probabilities = _as_inputs(labels, probabilities)
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    index = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    bins = []
    ece = 0.0
    for b in range(n_bins):
        inside = index == b
        count = int(inside.sum())
        entry = {"lower": b / n_bins, "upper": (b + 1) / n_bins, "count": count}
        if count:
            entry["mean_confidence"] = float(confidence[inside].mean())
            entry["accuracy"] = float(correct[inside].mean())
            ece += count / labels.size * abs(entry["accuracy"] - entry["mean_confidence"])
        else:
            entry["mean_confidence"] = entry["accuracy"] = None
        bins.append(entry)
    return {"n_bins": n_bins, "bins": bins, "ece": float(ece)}


def _one_vs_rest(labels, probabilities, area, what: str, notes: list[str]) -> float | None:
    """Binary: the positive class's value. Multi-class: macro over classes where defined."""
    n_classes = probabilities.shape[1]
    classes = [1] if n_classes == 2 else range(n_classes)
    values = {k: area(labels == k, probabilities[:, k]) for k in classes}
    defined = [v for v in values.values() if v is not None]
    if not defined:
        notes.append(f"{what} is undefined: the test split lacks the classes it needs")
        return None
    if len(defined) < len(values):
        missing = [k for k, v in values.items() if v is None]
        notes.append(f"{what} is the macro average over defined classes only (not {missing})")
    return float(np.mean(defined))


def classification_report(
    labels, probabilities, class_names: Sequence[str], n_bins: int = CALIBRATION_BINS
) -> dict:
    """Every metric of the evaluation as JSON-able values (see module docstring)."""
    labels, probabilities = _as_inputs(labels, probabilities)
    n_classes = len(class_names)
    if probabilities.shape[1] != n_classes:
        raise ValueError(f"{probabilities.shape[1]} probability columns for {n_classes} classes")
    if labels.size == 0:
        raise ValueError("no examples to score")
    notes: list[str] = []
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(labels, predicted, n_classes)
    scores = per_class_scores(matrix)
    if n_classes == 2:
        averaging = f"binary (positive class: {class_names[1]})"
        precision, recall, f1 = (float(scores[k][1]) for k in ("precision", "recall", "f1"))
    else:
        averaging = "macro"
        precision, recall, f1 = (float(scores[k].mean()) for k in ("precision", "recall", "f1"))
    if (matrix.sum(axis=0) == 0).any():
        notes.append("some classes are never predicted: their precision counts as 0")
    if (matrix.sum(axis=1) == 0).any():
        notes.append("some classes are absent from the test split: their recall counts as 0")
    roc = _one_vs_rest(labels, probabilities, roc_auc, "ROC-AUC", notes)
    pr = _one_vs_rest(labels, probabilities, average_precision, "PR-AUC", notes)
    calib = calibration(labels, probabilities, n_bins)
    per_class = [
        {
            "class": name,
            "precision": float(scores["precision"][k]),
            "recall": float(scores["recall"][k]),
            "f1": float(scores["f1"][k]),
            "support": int(scores["support"][k]),
        }
        for k, name in enumerate(class_names)
    ]
    return {
        "n": int(labels.size),
        "averaging": averaging,
        "accuracy": float(np.mean(predicted == labels)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": roc,
        "pr_auc": pr,
        "log_loss": log_loss(labels, probabilities),
        "ece": calib["ece"],
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
        "calibration": calib,
        "notes": notes,
    }


def score(metrics: dict, metric: str) -> float | None:
    """The promotion score for `metric` (higher is better; `neg_log_loss` = -log_loss)."""
    if metric == "neg_log_loss":
        value = metrics.get("log_loss")
        return None if value is None else -float(value)
    value = metrics.get(metric)
    return None if value is None else float(value)
