"""evaluation.md and evaluation.html: the evaluation of a run, for people.

Rendered from the run's evaluation.json and, once made, its promotion decision
(promotion.json), by the templates `evaluation.md.j2` and `evaluation.html.j2`. The HTML is
one self-contained file (every plot embedded); the Markdown links the PNGs beside it. A
backbone with random weights puts a banner at the top of both.

    >>> md_path, html_path = write_evaluation_report(run_dir, promotion=record)
"""

from __future__ import annotations

from pathlib import Path

from inception_retrain.evaluation.augmentation_effect import AugmentationEffect
from inception_retrain.evaluation.evaluate import FILE_NAME, HEADLINE, read_evaluation
from inception_retrain.evaluation.fine_tuning_effect import (
    FINE_TUNED,
    HEAD_ONLY,
    FineTuningEffect,
)
from inception_retrain.evaluation.plots import TITLES
from inception_retrain.evaluation.reports import render
from inception_retrain.evaluation.slices import FILE_NAME as SLICES_FILE
from inception_retrain.evaluation.slices import read_slices
from inception_retrain.plumbing.files import atomic_write
from inception_retrain.training.head_spec import dropout_in_words

PER_CLASS_COLUMNS = ["class", "precision", "recall", "f1", "support"]
AUGMENT_COLUMNS = [
    "claim",
    "reference",
    "compared",
    "improvement [95% CI]",
    "effect size (paired d)",
    "verdict",
]
AUGMENT_TRAINING_COLUMNS = [
    "seed",
    "dropout",
    "views",
    "epochs",
    "accuracy",
    "log loss",
    "ECE",
    "gap",
]
FINE_TUNE_VALIDATION_COLUMNS = ["model", "images", "log loss", "accuracy"]
FINE_TUNE_TEST_COLUMNS = [
    "per image",
    "head alone",
    "fine-tuned",
    "improvement [95% CI]",
    "margin",
    "verdict",
    "method",
]
CALIBRATION_COLUMNS = ["bin", "count", "mean confidence", "accuracy"]
# how the pages name metrics and settings (evaluation.json keeps its keys)
METRIC_NAMES = {"roc_auc": "ROC AUC", "pr_auc": "PR AUC", "log_loss": "log loss", "ece": "ECE"}
MISCLASSIFIED_COLUMNS = ["uri", "label", "predicted", "confidence"]
SLICE_COLUMNS = ["slice", "n", "accuracy [95% CI]", "mean confidence", "ROC-AUC [95% CI]"]
GATE_COLUMNS = ["slice", "n", "accuracy", "champion", "difference [CI]", "verdict"]


def _interval(value, low, high) -> str:
    if value is None:
        return "n/a"
    bounds = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
    return f"{value:.3f}{bounds}"


def _slice_rows(run_dir: Path) -> list[dict]:
    """slices.json's slices as table rows (none when the run has no sliced evaluation)."""
    if not (run_dir / SLICES_FILE).is_file():
        return []
    return [
        {
            "slice": s["slice"],
            "n": s["n"],
            "accuracy [95% CI]": _interval(s["accuracy"], s["accuracy_low"], s["accuracy_high"]),
            "mean confidence": s["mean_confidence"],
            "ROC-AUC [95% CI]": _interval(s["roc_auc"], s["roc_auc_low"], s["roc_auc_high"]),
        }
        for s in read_slices(run_dir / SLICES_FILE)["slices"]
    ]


def _gate_rows(promotion: dict | None) -> list[dict]:
    """The promotion's slice gate as table rows."""
    return [
        {
            "slice": row["slice"],
            "n": row["n"],
            "accuracy": row["accuracy"],
            "champion": row["champion_accuracy"],
            "difference [CI]": _interval(row["difference"], row["low"], row["high"]),
            "verdict": row["verdict"],
        }
        for row in (promotion or {}).get("slices") or []
    ]


def _words(key: str) -> str:
    """A key of evaluation.json as the pages say it: 'mean_confidence' -> 'mean confidence'."""
    return METRIC_NAMES.get(key, key.replace("_", " "))


def _summary(doc: dict) -> list[tuple[str, str]]:
    backbone = doc["backbone"]
    tuned = doc["head"].get("fine_tuned")
    cut = f"InceptionV3 up to {backbone['layer']}, {backbone['image_size']} px"
    if tuned:
        cut = (
            f"InceptionV3 up to {tuned['blocks'][-1]}, {backbone['image_size']} px: frozen "
            f"up to {tuned['prefix']} (its features cached), {', '.join(tuned['blocks'])} "
            "fine-tuned"
        )
    model = tuned["description"] if tuned else "the head alone, on the frozen backbone"
    return [
        ("run folder", doc["run_dir"]),
        ("test images", str(doc["n_test"])),
        ("classes", ", ".join(doc["class_names"])),
        ("averaging", doc["metrics"]["averaging"]),
        ("backbone weights", backbone["weights_description"]),
        ("model", model),
        ("backbone", cut),
    ]


def _fingerprints(doc: dict) -> list[tuple[str, str]]:
    return [
        ("backbone", doc["backbone"]["fingerprint"]),
        ("head", doc["head"]["fingerprint"]),
        ("test split", doc["test_split_fingerprint"]),
        ("manifest", doc["manifest"]["fingerprint"]),
    ]


def _settings(doc: dict) -> list[tuple[str, object]]:
    """The head and how it was trained (evaluation.json's `head`; older runs: its spec)."""
    head = doc["head"]
    spec = head.get("spec") or {}
    training = head.get("training") or {}
    units = spec.get("hidden_units") or ("?", "?")
    dropout = dropout_in_words(
        spec.get("dropout_rate"), spec.get("dropout_placement"), spec.get("hidden_units")
    )
    epochs = "-"
    if head.get("epochs_run"):
        epochs = f"{head['epochs_run']} of at most {training.get('epochs', '?')}"
        epochs += (
            f", best {head['best_epoch']} (its weights kept)" if head.get("best_epoch") else ""
        )
    rows = [
        ("head", f"Flatten -> Dense({units[0]}) -> Dense({units[1]}) -> output"),
        ("dropout", dropout),
        ("optimiser", f"RMSprop, learning rate {spec.get('learning_rate', '?')}"),
        ("epochs", epochs),
        ("batch size", training.get("batch_size", "-")),
        ("early-stopping patience", training.get("patience", "-")),
        ("seed", training.get("seed", "-")),
        ("device", head.get("device", "-")),
    ]
    return rows


def _metric_rows(doc: dict) -> list[dict]:
    """Every headline metric with its 95% interval and how that was computed."""
    intervals = doc["metrics"].get("intervals") or {}
    rows = []
    for metric in HEADLINE:
        bounds = intervals.get(metric)
        rows.append(
            {
                "metric": METRIC_NAMES.get(metric, metric),
                "value": doc["metrics"][metric],
                "95% CI": f"[{bounds['low']:.4f}, {bounds['high']:.4f}]" if bounds else "n/a",
                "method": bounds["method"] if bounds else "",
            }
        )
    return rows


def _answer(doc: dict) -> str:
    """The evaluation in one sentence: accuracy with its interval against the baseline."""
    metrics = doc["metrics"]
    accuracy, baseline = metrics["accuracy"], metrics.get("majority_baseline")
    bounds = (metrics.get("intervals") or {}).get("accuracy")
    text = f"Test accuracy {accuracy:.3f}"
    if bounds:
        text += f" [95% CI {bounds['low']:.3f}, {bounds['high']:.3f}]"
    text += f" on {doc['n_test']} test images"
    if baseline and baseline.get("accuracy") is not None:
        text += (
            f", against {baseline['accuracy']:.3f} for always answering the majority class "
            f"({baseline['class']})"
        )
        if bounds and bounds["low"] <= baseline["accuracy"]:
            text += ": the interval reaches the baseline, so this head is not shown to beat it"
    roc = metrics.get("roc_auc")
    roc_bounds = (metrics.get("intervals") or {}).get("roc_auc")
    if roc is not None:
        text += f"; ROC-AUC {roc:.3f}"
        if roc_bounds:
            text += f" [{roc_bounds['low']:.3f}, {roc_bounds['high']:.3f}]"
    return text + "."


def _promotion_rows(record: dict) -> list[tuple[str, object]]:
    return [
        ("decision", record["decision"]),
        ("version", record.get("version") or "not published"),
        ("metric", _words(record["metric"])),
        ("new model score", record["score"]),
        ("champion", record["previous_champion"] or "none"),
        ("champion score", record["champion_score"]),
        ("champion score source", record["champion_score_source"] or "n/a"),
        ("tolerance", record["tolerance"]),
        ("reason", record["reason"]),
    ]


def _effect_rows(effects) -> list[dict]:
    return [
        {
            "claim": m.claim,
            "reference": f"{m.reference_label}: {m.mean_reference:.4f}",
            "compared": f"{m.compared_label}: {m.mean_compared:.4f}",
            "improvement [95% CI]": m.interval.text(4),
            "effect size (paired d)": m.effect_size,
            "verdict": m.verdict,
        }
        for m in effects
    ]


def _augmentation(section: dict | None) -> dict | None:
    """The evaluation's augmentation section for the templates (None without views)."""
    if not section:
        return None
    effect = AugmentationEffect.model_validate(section)
    trainings = [
        {
            "seed": t.seed,
            "views": t.views,
            "dropout": "yes" if t.dropout else "no",
            "epochs": t.epochs_run,
            **{_words(key): value for key, value in t.scores.items()},
        }
        for t in sorted(effect.trainings, key=lambda t: (t.seed, not t.dropout, t.views))
    ]
    ranges = ", ".join(f"{_words(key)} {value}" for key, value in effect.policy.items())
    summary = [
        ("views per train image (K)", effect.views),
        ("policy", f"{effect.policy_fingerprint} ({ranges})"),
        ("seeds", ", ".join(map(str, effect.seeds))),
        (
            "train images / cached view rows / test images",
            f"{effect.n_train} / {effect.n_view_rows} / {effect.n_test}",
        ),
        (
            "training",
            f"up to {effect.epochs} epochs, patience {effect.patience}, "
            f"batch {effect.batch_size}, {effect.data_mode}",
        ),
        (
            "trainings of the run's head predicting one class for every test image",
            f"{effect.degenerate['without']} without views, {effect.degenerate['with']} with",
        ),
        ("seconds", round(effect.seconds, 1)),
    ]
    return {
        "rows": _effect_rows(effect.metrics),
        "overfitting": _effect_rows(effect.overfitting),
        "trainings": trainings,
        "summary": summary,
        "views": effect.views,
    }


def _fine_tuning(section: dict | None) -> dict | None:
    """The evaluation's fine-tuning section for the templates (None without fine-tuning)."""
    if not section:
        return None
    effect = FineTuningEffect.model_validate(section)
    labels = {HEAD_ONLY: "head alone", FINE_TUNED: "fine-tuned"}
    validation = [
        {"model": labels[name], **{_words(k): v for k, v in scores.model_dump().items()}}
        for name, scores in effect.validation.items()
    ]
    tests = []
    for metric, text in (("accuracy", "correct (accuracy)"), ("log_loss", "log loss")):
        row = effect.test[metric]
        interval = "n/a"
        if row["difference"] is not None:
            bounds = "[n/a]"
            if row["low"] is not None:
                bounds = f"[{row['low']:.4f}, {row['high']:.4f}]"
            interval = f"{row['difference']:.4f} {bounds}"
        tests.append(
            {
                "per image": text,
                "head alone": effect.test_means[HEAD_ONLY][metric],
                "fine-tuned": effect.test_means[FINE_TUNED][metric],
                "improvement [95% CI]": interval,
                "margin": f"± {row['margin']:g}",
                "verdict": row["verdict"],
                "method": row["method"],
            }
        )
    accuracy = effect.test["accuracy"]
    summary = [
        ("fine-tuned", effect.description),
        ("trained layers", ", ".join(effect.trained_layers)),
        ("epochs", f"{effect.epochs_run} run, best {effect.best_epoch}"),
        ("test images", effect.n_test),
        (
            "test images right by one model only",
            f"{accuracy['a_only']} fine-tuned, {accuracy['b_only']} head alone",
        ),
    ]
    return {
        "chosen": labels[effect.chosen],
        "reason": effect.reason,
        "validation": validation,
        "tests": tests,
        "summary": summary,
        "notes": effect.notes,
    }


def context(doc: dict, run_dir: Path, promotion: dict | None) -> dict:
    """What the evaluation templates are filled with."""
    names = doc["class_names"]
    matrix = doc["metrics"]["confusion_matrix"]
    return {
        "title": "Evaluation report",
        "doc": doc,
        "run_dir": Path(run_dir),
        "random_weights": doc["backbone"]["weights_description"]
        if doc["backbone"]["random_weights"]
        else "",
        "summary": _summary(doc),
        "answer": _answer(doc),
        "settings": _settings(doc),
        "fingerprints": _fingerprints(doc),
        "metric_rows": _metric_rows(doc),
        "baseline": doc["metrics"].get("majority_baseline"),
        "tensorboard": f"tensorboard --logdir {Path(run_dir) / 'tensorboard'}",
        "dropout_report": (Path(run_dir) / "dropout_impact.html").is_file(),
        "headline": [
            {"metric": METRIC_NAMES.get(k, k), "value": doc["metrics"][k]} for k in HEADLINE
        ],
        "per_class_columns": PER_CLASS_COLUMNS,
        "confusion_columns": ["true \\ predicted", *names],
        "confusion": [[names[i], *row] for i, row in enumerate(matrix)],
        "calibration_columns": CALIBRATION_COLUMNS,
        "calibration": [
            {"bin": f"[{b['lower']:.1f}, {b['upper']:.1f})", **{_words(k): v for k, v in b.items()}}
            for b in doc["metrics"]["calibration"]["bins"]
            if b["count"]
        ],
        "misclassified_columns": MISCLASSIFIED_COLUMNS,
        "titles": TITLES,
        "promotion": promotion,
        "promotion_rows": _promotion_rows(promotion) if promotion else [],
        "augmentation": _augmentation(doc.get("augmentation")),
        "augment_columns": AUGMENT_COLUMNS,
        "augment_training_columns": AUGMENT_TRAINING_COLUMNS,
        "fine_tuning": _fine_tuning(doc.get("fine_tuning")),
        "fine_tune_validation_columns": FINE_TUNE_VALIDATION_COLUMNS,
        "fine_tune_test_columns": FINE_TUNE_TEST_COLUMNS,
        "slices": _slice_rows(Path(run_dir)),
        "slice_columns": SLICE_COLUMNS,
        "gate": _gate_rows(promotion),
        "gate_columns": GATE_COLUMNS,
    }


def write_evaluation_report(run_dir: Path, promotion: dict | None = None) -> tuple[Path, Path]:
    """Render evaluation.md and evaluation.html into `run_dir`; returns their paths."""
    run_dir = Path(run_dir)
    values = context(read_evaluation(run_dir / FILE_NAME), run_dir, promotion)
    md_path = atomic_write(run_dir / "evaluation.md", render("evaluation.md.j2", **values))
    html_path = atomic_write(run_dir / "evaluation.html", render("evaluation.html.j2", **values))
    return md_path, html_path
