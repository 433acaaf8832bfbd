"""The evaluation report's plots: one function per figure, each from the numbers it shows.

    >>> plots = write_plots(run_dir, labels, probabilities, class_names, report, history,
    ...                     misclassified, notes)
    >>> plots
    {'roc': 'roc.png', 'pr': 'pr.png', 'learning_curves': 'learning_curves.png', ...}

A figure that cannot be drawn (no ROC curve on a one-class test split, no history) is left
out and `notes` says why.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inception_retrain.data.images import load_rgb
from inception_retrain.evaluation import metrics as M
from inception_retrain.evaluation.figures import new_figure, save_png
from inception_retrain.evaluation.reports import sig

THUMBNAIL_PX = 128
TITLES = {
    "roc": "ROC curve",
    "pr": "Precision-recall curve",
    "learning_curves": "Learning curves",
    "reliability": "Reliability diagram",
    "misclassified": "Most confidently misclassified test images",
}


def _curve_classes(n_classes: int) -> list[int]:
    return [1] if n_classes == 2 else list(range(n_classes))


def roc_figure(labels, probabilities, class_names, roc_auc):
    """One ROC curve per class (the positive class for two); None if none is defined."""
    fig, (ax,) = new_figure()
    drawn = 0
    for k in _curve_classes(len(class_names)):
        points = M.roc_curve(labels == k, probabilities[:, k])
        if points is not None:  # straight segments: ties are diagonal, as the AUC counts them
            ax.plot(points[0], points[1], label=class_names[k])
            drawn += 1
    if not drawn:
        return None
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate")
    ax.set_title(f"ROC (AUC {sig(roc_auc)})")
    ax.legend(loc="lower right")
    return fig


def pr_figure(labels, probabilities, class_names, pr_auc):
    """Precision-recall steps per class; None if no class has positives."""
    fig, (ax,) = new_figure()
    drawn = 0
    for k in _curve_classes(len(class_names)):
        points = M.precision_recall_curve(labels == k, probabilities[:, k])
        if points is None:
            continue
        # precision P_n holds over recall (R_{n-1}, R_n], as average precision counts it
        recall, precision = np.r_[0.0, points[1]], np.r_[points[0][0], points[0]]
        ax.plot(recall, precision, label=class_names[k], drawstyle="steps-pre")
        drawn += 1
    if not drawn:
        return None
    ax.set(xlabel="recall", ylabel="precision", ylim=(0, 1.02))
    ax.set_title(f"Precision-recall (AP {sig(pr_auc)})")
    ax.legend(loc="lower left")
    return fig


def learning_curves_figure(history: dict):
    """Loss and accuracy per epoch, train and validation, with the best epoch (the one whose
    weights were kept) marked; None without a history."""
    if not history.get("loss"):
        return None
    from matplotlib.ticker import MaxNLocator

    best = history.get("best_epoch")
    fig, axes = new_figure(9, 3.5, columns=2)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, label in (("", "train"), ("val_", "validation")):
            values = history.get(prefix + metric)
            if values:
                ax.plot(range(1, len(values) + 1), values, marker="o", label=label)
        if best:
            ax.axvline(best, color="grey", linestyle="--", label=f"best epoch ({best}), kept")
        ax.set(xlabel="epoch", ylabel=metric, title=metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    return fig


def reliability_figure(calibration: dict, ece: float | None):
    """Accuracy per confidence bin against the diagonal of perfect calibration."""
    bins = calibration["bins"]
    fig, (ax,) = new_figure()
    filled = [b for b in bins if b["count"]]
    ax.bar(
        [b["lower"] for b in filled],
        [b["accuracy"] for b in filled],
        width=1 / len(bins),
        align="edge",
        edgecolor="black",
        label="accuracy",
    )
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    ax.set(xlabel="confidence (top-label)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    ax.set_title(f"Reliability (ECE {sig(ece)})")
    ax.legend(loc="upper left")
    return fig


def gallery_figure(items: list[dict]):
    """Thumbnails of misclassified images with true and predicted class; None if none."""
    if not items:
        return None
    from PIL import Image

    columns = min(4, len(items))
    rows = -(-len(items) // columns)
    fig, axes = new_figure(2.2 * columns, 2.5 * rows, rows=rows, columns=columns)
    for ax in axes:
        ax.set_axis_off()
    for ax, item in zip(axes, items, strict=False):
        ax.set_title(
            f"true: {item['label']}\npred: {item['predicted']} ({item['confidence']:.2f})",
            fontsize=8,
        )
        try:
            thumb = Image.fromarray(load_rgb(item["uri"]))
            thumb.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            ax.imshow(np.asarray(thumb))
        except Exception:  # a missing or unreadable file must not break the report
            ax.text(0.5, 0.5, "image\nunreadable", ha="center", va="center", fontsize=8)
    return fig


def write_plots(
    run_dir: Path, labels, probabilities, class_names, report, history, misclassified, notes
) -> dict[str, str]:
    """Draw every figure that can be drawn into `run_dir`; returns {name: file name}."""
    figures = {
        "roc": roc_figure(labels, probabilities, class_names, report["roc_auc"]),
        "pr": pr_figure(labels, probabilities, class_names, report["pr_auc"]),
        "learning_curves": learning_curves_figure(history),
        "reliability": reliability_figure(report["calibration"], report["ece"]),
        "misclassified": gallery_figure(misclassified),
    }
    why_missing = {
        "roc": "no ROC curve: the test split lacks the classes it needs",
        "pr": "no PR curve: the test split lacks the classes it needs",
        "learning_curves": "no learning curves: no per-epoch history",
    }
    plots = {}
    for name, fig in figures.items():
        if fig is None:
            if name in why_missing:
                notes.append(why_missing[name])
            continue
        save_png(fig, Path(run_dir) / f"{name}.png")
        plots[name] = f"{name}.png"
    return plots
