"""Classification metrics of a head's test-split predictions, from scikit-learn.

Conventions:
  * `labels` are class indices (N,); `probabilities` are per-class probabilities (N, K), rows
    summing to 1 (`inception_retrain.training.head.probabilities_to_scores` turns a sigmoid head's
    (N, 1) output into (N, 2)).
  * The predicted class is the argmax (ties go to the lower index, so p = 0.5 predicts class 0).
  * Binary (K == 2): precision, recall, F1, ROC-AUC and PR-AUC are those of the positive class,
    index 1. Multi-class: macro averages over all K classes (precision/recall/F1) or over the
    classes for which the metric is defined (one-vs-rest ROC-AUC and PR-AUC).
  * An undefined value (ROC-AUC with one class present, PR-AUC without positives) is `None`
    and the report's `notes` say why; precision/recall/F1 count it as 0.0 (zero_division=0).
  * ROC-AUC is scikit-learn's `roc_auc_score` (ties count one half); PR-AUC is
    `average_precision_score`, the sum over thresholds of (R_n - R_{n-1}) * P_n.
  * Calibration uses top-label confidence (max probability) against accuracy in equal-width
    bins [i/B, (i+1)/B) (1.0 falls in the last); ECE = sum_b (n_b / N) * |acc_b - conf_b|.
    scikit-learn's `calibration_curve` is for one class's probability, not the top label, so
    this one is written here.

    >>> report = classification_report([0, 1, 1], [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], ["a", "b"])
    >>> report["accuracy"], report["recall"]
    (0.6666666666666666, 0.5)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn import metrics as sk

LOG_LOSS_EPS = 1e-15
CALIBRATION_BINS = 10


def _as_inputs(labels, probabilities) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[0] != labels.shape[0]:
        raise ValueError(f"probabilities must be (N, K) with N={labels.shape[0]}")
    return labels, probabilities


def roc_curve(is_positive, scores):
    """(fpr, tpr, thresholds), starting at (0, 0); None if only one class is present."""
    is_positive = np.asarray(is_positive, dtype=bool).reshape(-1)
    if is_positive.all() or not is_positive.any():
        return None
    return sk.roc_curve(is_positive, np.asarray(scores, np.float64).reshape(-1))


def roc_auc(is_positive, scores) -> float | None:
    is_positive = np.asarray(is_positive, dtype=bool).reshape(-1)
    if is_positive.all() or not is_positive.any():
        return None
    return float(sk.roc_auc_score(is_positive, np.asarray(scores, np.float64).reshape(-1)))


def precision_recall_curve(is_positive, scores):
    """(precision, recall, thresholds), high threshold to low; None if no positives."""
    is_positive = np.asarray(is_positive, dtype=bool).reshape(-1)
    if not is_positive.any():
        return None
    precision, recall, thresholds = sk.precision_recall_curve(
        is_positive, np.asarray(scores, np.float64).reshape(-1)
    )
    # scikit-learn adds the (recall 0, precision 1) end point and orders low to high.
    return precision[:-1][::-1], recall[:-1][::-1], thresholds[::-1]


def average_precision(is_positive, scores) -> float | None:
    is_positive = np.asarray(is_positive, dtype=bool).reshape(-1)
    if not is_positive.any():
        return None
    return float(
        sk.average_precision_score(is_positive, np.asarray(scores, np.float64).reshape(-1))
    )


def log_loss(labels, probabilities, eps: float = LOG_LOSS_EPS) -> float:
    """Mean negative log probability of the true class (clipped to [eps, 1 - eps]).

    scikit-learn's `log_loss` is the same number, but warns whenever a float32 softmax row,
    widened to float64, does not sum to one within float64 rounding: written here, tested
    against it (tests/test_evaluate.py)."""
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
    classes = np.arange(n_classes)
    matrix = sk.confusion_matrix(labels, predicted, labels=classes)
    precision_k, recall_k, f1_k, support_k = sk.precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0
    )
    if n_classes == 2:
        averaging = f"binary (positive class: {class_names[1]})"
        precision, recall, f1 = (float(v[1]) for v in (precision_k, recall_k, f1_k))
    else:
        averaging = "macro"
        precision, recall, f1 = (float(v.mean()) for v in (precision_k, recall_k, f1_k))
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
            "precision": float(precision_k[k]),
            "recall": float(recall_k[k]),
            "f1": float(f1_k[k]),
            "support": int(support_k[k]),
        }
        for k, name in enumerate(class_names)
    ]
    return {
        "n": int(labels.size),
        "averaging": averaging,
        "accuracy": float(sk.accuracy_score(labels, predicted)),
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


# --- intervals and the baseline ----------------------------------------------------------------

INTERVAL_RESAMPLES = 2000
PROPORTIONS = ("accuracy", "precision", "recall")  # Wilson intervals when binary
BOOTSTRAPPED = ("f1", "roc_auc", "pr_auc", "log_loss", "ece")


def wilson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson's score interval of a proportion (inside [0, 1] by construction)."""
    if trials <= 0:
        return None
    from scipy import stats

    interval = stats.binomtest(int(successes), int(trials)).proportion_ci(
        confidence_level=confidence, method="wilson"
    )
    return float(interval.low), float(interval.high)


def _stratified_resamples(labels: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """(resamples, N) image indices, each class resampled within itself, so every resample
    holds every class as often as the test split does (AUC stays defined)."""
    rng = np.random.default_rng(seed)
    columns = []
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        columns.append(rng.choice(members, size=(resamples, members.size), replace=True))
    return np.concatenate(columns, axis=1)


def metric_intervals(
    labels,
    probabilities,
    class_names: Sequence[str],
    confidence: float = 0.95,
    resamples: int = INTERVAL_RESAMPLES,
    seed: int = 0,
) -> dict[str, dict]:
    """A `confidence` interval for every headline metric: {metric: {low, high, method}}.

    Binary accuracy, precision and recall are proportions: Wilson's interval of their counts.
    The others (and every metric with more than two classes) take a percentile bootstrap over
    the test images, resampled within each class (`resamples`, fixed `seed`: the same test
    predictions give the same interval). A metric the test split leaves undefined has none."""
    labels, probabilities = _as_inputs(labels, probabilities)
    point = classification_report(labels, probabilities, class_names)
    intervals: dict[str, dict] = {}
    binary = len(class_names) == 2
    if binary:
        positive = probabilities[:, 1] > probabilities[:, 0]  # argmax, ties to class 0
        hits = positive & (labels == 1)
        counts = {
            "accuracy": (int((positive == (labels == 1)).sum()), labels.size),
            "precision": (int(hits.sum()), int(positive.sum())),
            "recall": (int(hits.sum()), int((labels == 1).sum())),
        }
        for name, (successes, trials) in counts.items():
            bounds = wilson(successes, trials, confidence)
            if bounds is not None:
                intervals[name] = {"low": bounds[0], "high": bounds[1], "method": "Wilson"}
    index = _stratified_resamples(labels, resamples, seed)
    if binary:
        samples = _binary_resampled(labels, probabilities, index)
    else:  # a loop of reports: slower, and fewer resamples do
        index = index[: max(200, resamples // 10)]
        reports = [_light_report(labels[i], probabilities[i], len(class_names)) for i in index]
        samples = {m: np.array([r[m] for r in reports], dtype=float) for m in reports[0]}
    tail = (1 - confidence) / 2 * 100
    for metric in (*PROPORTIONS, *BOOTSTRAPPED):
        values = samples.get(metric)
        if metric in intervals or point.get(metric) is None or values is None:
            continue
        values = values[np.isfinite(values)]
        if values.size:
            low, high = np.percentile(values, [tail, 100 - tail])
            intervals[metric] = {
                "low": float(low),
                "high": float(high),
                "method": f"bootstrap over images ({len(index)} resamples, within classes)",
            }
    return intervals


def _binary_resampled(labels: np.ndarray, probabilities: np.ndarray, index: np.ndarray) -> dict:
    """The bootstrapped metrics of a binary head for every resample (rows of `index`), as
    arrays; vectorised over the resamples except average precision (scikit-learn's, whose
    handling of tied scores the point estimate uses too)."""
    y = labels[index] == 1  # (B, N)
    score = probabilities[:, 1][index]
    positive = (probabilities[:, 1] > probabilities[:, 0])[index]
    tp = (positive & y).sum(axis=1)
    fp = (positive & ~y).sum(axis=1)
    fn = (~positive & y).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    n_pos, n_neg = y.sum(axis=1), (~y).sum(axis=1)  # the same in every row: stratified
    from scipy.stats import rankdata

    ranks = rankdata(score, axis=1)  # ties get the average rank: AUC counts them one half
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * y).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    ap = np.array([average_precision(yy, ss) or np.nan for yy, ss in zip(y, score, strict=True)])
    true_class = np.where(y, score, 1.0 - score)
    losses = -np.log(np.clip(true_class, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)).mean(axis=1)
    confidence = np.maximum(score, 1.0 - score)
    correct = (positive == y).astype(float)
    bins = np.minimum((confidence * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    rows = np.arange(len(index))[:, None] * CALIBRATION_BINS + bins
    size = len(index) * CALIBRATION_BINS
    # each bin's |sum(correct - confidence)| / N is n_b / N * |acc_b - conf_b|: the ECE's term
    gap = np.bincount(rows.ravel(), (correct - confidence).ravel(), minlength=size)
    ece = np.abs(gap.reshape(len(index), -1)).sum(axis=1) / y.shape[1]
    return {"f1": f1, "roc_auc": auc, "pr_auc": ap, "log_loss": losses, "ece": ece}


def _light_report(labels: np.ndarray, probabilities: np.ndarray, n_classes: int) -> dict:
    """The headline metrics of `classification_report`, without its tables (for resamples)."""
    predicted = probabilities.argmax(axis=1)
    classes = [1] if n_classes == 2 else range(n_classes)
    precision_k, recall_k, f1_k, _ = sk.precision_recall_fscore_support(
        labels, predicted, labels=list(classes), zero_division=0
    )
    areas = {
        name: [area(labels == k, probabilities[:, k]) for k in classes]
        for name, area in (("roc_auc", roc_auc), ("pr_auc", average_precision))
    }
    return {
        "accuracy": float((predicted == labels).mean()),
        "precision": float(np.mean(precision_k)),
        "recall": float(np.mean(recall_k)),
        "f1": float(np.mean(f1_k)),
        **{
            name: float(np.mean([v for v in values if v is not None]))
            if any(v is not None for v in values)
            else np.nan
            for name, values in areas.items()
        },
        "log_loss": log_loss(labels, probabilities),
        "ece": calibration(labels, probabilities)["ece"],
    }


def majority_baseline(labels, class_names: Sequence[str], confidence: float = 0.95) -> dict:
    """Always predicting the test split's most frequent class: {class, accuracy, low, high}
    (the accuracy a head must beat to have learned anything)."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    counts = np.bincount(labels, minlength=len(class_names))
    majority = int(counts.argmax())
    bounds = wilson(int(counts[majority]), labels.size, confidence) or (None, None)
    return {
        "class": class_names[majority],
        "accuracy": float(counts[majority] / labels.size) if labels.size else None,
        "low": bounds[0],
        "high": bounds[1],
    }
