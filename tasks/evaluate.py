"""Evaluation stage: score the trained head on the frozen test split and write the reports.

Only the `test` split is scored: ingestion keeps it fixed as data grows, so numbers of
different runs (and the champion's) are comparable. Its identity is `test_split_fingerprint`
(sha256 over the sorted `content_id:label_index` of the manifest's ok test rows).

Writes into the run folder:
  evaluation.json          every metric (tasks/metrics.py), n_test, class names, fingerprints
                           of backbone, head and test split, and the weights description
                           (random weights are labelled as such)
  evaluation.md / .html    the same for people; the HTML embeds every plot (no external URL)
  test_predictions.parquet content_id, uri, label_index, label, p_<class>..., predicted,
                           predicted_index, confidence
  roc.png, pr.png, learning_curves.png, reliability.png, misclassified.png

    evaluation = evaluate(manifest, cache, head, config, run_dir)
    evaluation.metrics["roc_auc"]

Undefined metrics (ROC-AUC on a one-class test split) are null with a note; an empty test
split, or test images without cached features, raise DataError.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.artifacts import Evaluation, FeatureCache, Manifest, TrainedHead
from inception_retrain.config import RetrainConfig
from inception_retrain.errors import DataError
from inception_retrain.files import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    sha256_bytes,
)
from tasks import cache_locks
from tasks import metrics as M
from tasks.backbone import weights_description
from tasks.feature_cache import iter_split_batches, read_metadata
from tasks.predict import predictions_table
from tasks.report_html import image_html, render_html, table_html, table_markdown

HEADLINE = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "log_loss", "ece")
GALLERY_SIZE = 12
THUMBNAIL_PX = 128


# --- inputs -----------------------------------------------------------------------------


def read_test_rows(manifest_path: Path) -> dict[str, dict]:
    """The manifest's ok test rows: content_id -> {uri, label, label_index}."""
    table = pq.read_table(
        manifest_path,
        columns=["content_id", "uri", "label", "label_index", "split", "status"],
        filters=[("status", "=", "ok"), ("split", "=", "test")],
    )
    return {
        row["content_id"]: row
        for row in table.select(["content_id", "uri", "label", "label_index"]).to_pylist()
    }


def test_split_fingerprint(manifest_path: Path) -> str:
    """Identity of the test split: which images, with which labels."""
    rows = read_test_rows(manifest_path)
    lines = sorted(f"{cid}:{row['label_index']}" for cid, row in rows.items())
    return sha256_bytes("\n".join(lines).encode())


def read_history(path: Path) -> dict[str, list[float]]:
    """Per-epoch series from history.json: {"loss": [...], "val_loss": [...], ...}.

    Accepts Keras' `History.history` dict, the same under a "history" key, or a list of
    per-epoch dicts under "epochs". Missing or unreadable -> {}.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    if isinstance(data, dict) and isinstance(data.get("history"), dict):
        data = data["history"]
    if isinstance(data, dict) and isinstance(data.get("epochs"), list):
        data = data["epochs"]
    if isinstance(data, list):
        keys = {k for epoch in data if isinstance(epoch, dict) for k in epoch}
        data = {k: [epoch.get(k) for epoch in data] for k in keys}
    if not isinstance(data, dict):
        return {}
    series = {}
    for key, values in data.items():
        if isinstance(values, list) and all(isinstance(v, int | float) for v in values):
            series[key] = [float(v) for v in values]
    return series


def score_split(
    head_path: Path, cache_dir: Path, manifest_path: Path, split: str, n_classes: int
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(content_ids, probabilities (N, K), labels) of one split, sorted by content id.

    Streams the cache in row batches, so memory stays bounded for a large test split.
    """
    import keras

    from tasks.head import probabilities_to_scores

    model = keras.saving.load_model(head_path, compile=False, safe_mode=True)
    ids: list[str] = []
    scores, labels = [np.zeros((0, n_classes))], [np.zeros((0,), np.int32)]
    with cache_locks.reading(cache_dir):
        for batch_ids, features, batch_labels in iter_split_batches(
            cache_dir, manifest_path, split, batch_rows=256
        ):
            ids.extend(batch_ids)
            raw = model.predict(features, batch_size=64, verbose=0)
            scores.append(probabilities_to_scores(raw, n_classes))
            labels.append(batch_labels)
    order = np.argsort(np.array(ids), kind="stable")  # the order of load_split
    probabilities, all_labels = np.concatenate(scores), np.concatenate(labels)
    return [ids[i] for i in order], probabilities[order], all_labels[order]


# --- the stage ----------------------------------------------------------------------------


def evaluate(
    manifest: Manifest,
    cache: FeatureCache,
    head: TrainedHead,
    config: RetrainConfig,
    run_dir: Path,
) -> Evaluation:
    """Score `head` on the test split of `manifest` and write the reports into `run_dir`."""
    run_dir = Path(run_dir)
    class_names = list(manifest.class_names)
    rows = read_test_rows(manifest.path)
    if not rows:
        raise DataError(
            "the test split is empty: nothing to evaluate (add images or a test share to "
            "--split-fractions)"
        )
    ids, probabilities, labels = score_split(
        head.head_path, cache.cache_dir, manifest.path, "test", len(class_names)
    )
    if len(ids) < len(rows):
        raise DataError(
            f"{len(rows) - len(ids)} of {len(rows)} test images have no cached features in "
            f"{cache.cache_dir}: run extraction first"
        )
    report = M.classification_report(labels, probabilities, class_names)
    uris = [rows[cid]["uri"] for cid in ids]
    predictions = predictions_table(probabilities, class_names)
    predictions = predictions.add_column(0, "content_id", pa.array(ids, pa.string()))
    predictions = predictions.add_column(1, "uri", pa.array(uris, pa.string()))
    predictions = predictions.add_column(2, "label_index", pa.array(labels, pa.int32()))
    predictions = predictions.add_column(
        3, "label", pa.array([class_names[i] for i in labels], pa.string())
    )
    _write_parquet(predictions, run_dir / "test_predictions.parquet")

    notes = list(report["notes"])
    misclassified = _most_confident_errors(predictions.to_pylist())
    plots = _write_plots(
        run_dir, labels, probabilities, class_names, report, head, misclassified, notes
    )

    split_fingerprint = test_split_fingerprint(manifest.path)
    headline = {k: report[k] for k in HEADLINE}
    headline.update(n_test=len(ids), test_split_fingerprint=split_fingerprint)
    try:
        backbone_inputs = read_metadata(cache.cache_dir)
    except FileNotFoundError:
        backbone_inputs = {}
    document = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_dir": str(run_dir),
        "n_test": len(ids),
        "class_names": class_names,
        "metrics": report,
        "headline": headline,
        "test_split_fingerprint": split_fingerprint,
        "manifest": {"path": str(manifest.path), "fingerprint": manifest.fingerprint},
        "backbone": {
            "fingerprint": cache.backbone_fingerprint,
            "weights": config.weights,
            "weights_description": weights_description(config.weights),
            "random_weights": config.weights.startswith("random"),
            "layer": config.layer,
            "image_size": config.image_size,
            "feature_dtype": cache.dtype,
            "cache_metadata": backbone_inputs,
        },
        "head": {
            "path": str(head.head_path),
            "fingerprint": head.fingerprint,
            "device": head.device,
        },
        "plots": plots,
        "misclassified": misclassified,
        "notes": notes,
    }
    json_path = atomic_write_json(run_dir / "evaluation.json", document)
    md_path = atomic_write_text(run_dir / "evaluation.md", _markdown(document))
    html_path = atomic_write_text(run_dir / "evaluation.html", _html(document, run_dir))
    return Evaluation(json_path=json_path, html_path=html_path, md_path=md_path, metrics=headline)


evaluate_task = task(evaluate, name="evaluate", cache_policy=NO_CACHE)


def _write_parquet(table: pa.Table, path: Path) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def _most_confident_errors(rows: list[dict]) -> list[dict]:
    wrong = [r for r in rows if r["predicted_index"] != r["label_index"]]
    wrong.sort(key=lambda r: -r["confidence"])
    keys = ("content_id", "uri", "label", "predicted", "confidence")
    return [{k: r[k] for k in keys} for r in wrong[:GALLERY_SIZE]]


# --- plots (matplotlib's object API: no pyplot, no global backend state) -------------------


def _figure(width: float = 5.0, height: float = 4.0):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _curve_classes(n_classes: int) -> list[int]:
    return [1] if n_classes == 2 else list(range(n_classes))


def _write_plots(run_dir, labels, probabilities, class_names, report, head, misclassified, notes):
    plots: dict[str, str] = {}
    n_classes = len(class_names)

    def save(fig, name: str) -> None:
        fig.savefig(run_dir / name, format="png")
        plots[name.removesuffix(".png")] = name

    for kind, curve in (("roc", M.roc_curve), ("pr", M.precision_recall_curve)):
        fig = _figure()
        ax = fig.add_subplot()
        drawn = 0
        for k in _curve_classes(n_classes):
            points = curve(labels == k, probabilities[:, k])
            if points is None:
                continue
            drawn += 1
            if kind == "roc":  # straight segments: ties are diagonal, as the AUC counts them
                ax.plot(points[0], points[1], label=class_names[k])
            else:  # precision P_n holds over recall (R_{n-1}, R_n], as average precision counts
                recall, precision = np.r_[0.0, points[1]], np.r_[points[0][0], points[0]]
                ax.plot(recall, precision, label=class_names[k], drawstyle="steps-pre")
        if not drawn:
            notes.append(f"no {kind.upper()} curve: the test split lacks the classes it needs")
            continue
        if kind == "roc":
            ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
            ax.set(xlabel="false positive rate", ylabel="true positive rate")
            ax.set_title(f"ROC (AUC {_fmt(report['roc_auc'])})")
        else:
            ax.set(xlabel="recall", ylabel="precision", ylim=(0, 1.02))
            ax.set_title(f"Precision-recall (AP {_fmt(report['pr_auc'])})")
        ax.legend(loc="lower right" if kind == "roc" else "lower left")
        save(fig, f"{kind}.png")

    history = read_history(head.history_path)
    if history.get("loss"):
        from matplotlib.ticker import MaxNLocator

        fig = _figure(9, 3.5)
        for i, metric in enumerate(("loss", "accuracy")):
            ax = fig.add_subplot(1, 2, i + 1)
            for prefix, label in (("", "train"), ("val_", "validation")):
                values = history.get(prefix + metric)
                if values:
                    ax.plot(range(1, len(values) + 1), values, marker="o", label=label)
            ax.set(xlabel="epoch", ylabel=metric, title=metric)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend()
        save(fig, "learning_curves.png")
    else:
        notes.append(f"no learning curves: no per-epoch history in {head.history_path}")

    bins = report["calibration"]["bins"]
    fig = _figure()
    ax = fig.add_subplot()
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
    ax.set_title(f"Reliability (ECE {_fmt(report['ece'])})")
    ax.legend(loc="upper left")
    save(fig, "reliability.png")

    if misclassified:
        save(_gallery(misclassified), "misclassified.png")
    return plots


def _gallery(items: list[dict]):
    from PIL import Image

    from tasks.preprocess import load_rgb

    columns = min(4, len(items))
    rows = -(-len(items) // columns)
    fig = _figure(2.2 * columns, 2.5 * rows)
    for i, item in enumerate(items):
        ax = fig.add_subplot(rows, columns, i + 1)
        ax.set_axis_off()
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


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


# --- reports --------------------------------------------------------------------------------

PLOT_TITLES = {
    "roc": "ROC curve",
    "pr": "Precision-recall curve",
    "learning_curves": "Learning curves",
    "reliability": "Reliability diagram",
    "misclassified": "Most confidently misclassified test images",
}


def _summary_rows(document: dict) -> list[tuple[str, str]]:
    backbone = document["backbone"]
    return [
        ("run folder", document["run_dir"]),
        ("test images", str(document["n_test"])),
        ("classes", ", ".join(document["class_names"])),
        ("averaging", document["metrics"]["averaging"]),
        ("backbone weights", backbone["weights_description"]),
        ("backbone", f"InceptionV3 up to {backbone['layer']}, {backbone['image_size']} px"),
        ("backbone fingerprint", backbone["fingerprint"]),
        ("head fingerprint", document["head"]["fingerprint"]),
        ("test split fingerprint", document["test_split_fingerprint"]),
        ("manifest fingerprint", document["manifest"]["fingerprint"]),
    ]


def _metric_rows(report: dict) -> list[dict]:
    return [{"metric": k, "value": report[k]} for k in HEADLINE]


def _confusion_rows(document: dict) -> tuple[list[list], list[str]]:
    names = document["class_names"]
    columns = ["true \\ predicted", *names]
    matrix = document["metrics"]["confusion_matrix"]
    return [[names[i], *row] for i, row in enumerate(matrix)], columns


def _calibration_rows(report: dict) -> list[dict]:
    return [
        {"bin": f"[{b['lower']:.1f}, {b['upper']:.1f})", **b}
        for b in report["calibration"]["bins"]
        if b["count"]
    ]


CALIBRATION_COLUMNS = ["bin", "count", "mean_confidence", "accuracy"]
PER_CLASS_COLUMNS = ["class", "precision", "recall", "f1", "support"]
MISCLASSIFIED_COLUMNS = ["uri", "label", "predicted", "confidence"]


def _markdown(document: dict) -> str:
    report = document["metrics"]
    confusion, confusion_columns = _confusion_rows(document)
    lines = ["# Evaluation report", ""]
    lines += [f"- **{k}**: {v}" for k, v in _summary_rows(document)]
    lines += ["", "## Metrics", "", table_markdown(_metric_rows(report), ["metric", "value"])]
    lines += ["", "## Per class", "", table_markdown(report["per_class"], PER_CLASS_COLUMNS)]
    lines += ["", "## Confusion matrix", "", table_markdown(confusion, confusion_columns)]
    lines += ["", "## Calibration", "", f"ECE: {_fmt(report['ece'])}", ""]
    lines += [table_markdown(_calibration_rows(report), CALIBRATION_COLUMNS)]
    for key, name in document["plots"].items():
        lines += ["", f"## {PLOT_TITLES[key]}", "", f"![{PLOT_TITLES[key]}]({name})"]
    if document["misclassified"]:
        lines += ["", table_markdown(document["misclassified"], MISCLASSIFIED_COLUMNS)]
    else:
        lines += ["", "## Misclassified test images", "", "None: every test image is correct."]
    if document["notes"]:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in document["notes"]]
    return "\n".join(lines) + "\n"


def _html(document: dict, run_dir: Path) -> str:
    report = document["metrics"]
    summary = table_html(_summary_rows(document), ["item", "value"])
    if document["backbone"]["random_weights"]:
        warning = html.escape(document["backbone"]["weights_description"])
        summary = f'<p class="note"><strong>{warning}</strong></p>' + summary
    headline = (
        f'<p>Accuracy: <strong id="accuracy">{report["accuracy"]:.4f}</strong> '
        f"on {document['n_test']} test images.</p>"
    )
    confusion, confusion_columns = _confusion_rows(document)
    sections = [
        ("Summary", headline + summary),
        ("Metrics", table_html(_metric_rows(report), ["metric", "value"])),
        ("Per class", table_html(report["per_class"], PER_CLASS_COLUMNS)),
        ("Confusion matrix", table_html(confusion, confusion_columns)),
        (
            "Calibration",
            f"<p>ECE: {_fmt(report['ece'])}</p>"
            + table_html(_calibration_rows(report), CALIBRATION_COLUMNS),
        ),
    ]
    for key, name in document["plots"].items():
        body = image_html(run_dir / name, PLOT_TITLES[key])
        if key == "misclassified":
            body += table_html(document["misclassified"], MISCLASSIFIED_COLUMNS)
        sections.append((PLOT_TITLES[key], body))
    if not document["misclassified"]:
        sections.append(("Misclassified test images", "<p>None: every test image is correct.</p>"))
    if document["notes"]:
        items = "".join(f"<li>{html.escape(note)}</li>" for note in document["notes"])
        sections.append(("Notes", f'<ul class="note">{items}</ul>'))
    return render_html("Evaluation report", sections)
