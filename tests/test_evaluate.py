"""Evaluation: metrics (hand-computed values, scikit-learn) and the evaluate stage's outputs."""

from __future__ import annotations

import json
import math
import re
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from inception_retrain.evaluation import metrics as M
from inception_retrain.evaluation.report import write_evaluation_report
from inception_retrain.plumbing.errors import DataError
from inception_retrain.plumbing.schemas import parquet_metadata, write_document
from inception_retrain.training.head_spec import HeadSpec

# --- metrics, hand-computed ----------------------------------------------------------------
#
# Binary: labels and P(class 1) below. Predicted (p > 0.5): [0, 0, 0, 1, 1, 1], so
# TP = 2 (#3, #4), FP = 1 (#5), FN = 1 (#2), TN = 2 (#0, #1).
# ROC-AUC: positives 0.35, 0.85, 0.75 against negatives 0.15, 0.45, 0.55 win 1 + 3 + 3 of
# 9 pairs = 7/9. AP: ranked + + - - + -, precision at each positive 1, 1, 3/5 -> 13/15.
# Calibration (top-label confidence, correct?): 0.85 y, 0.55 y, 0.65 n, 0.85 y, 0.75 y, 0.55 n
# -> bins 5: conf .55 acc .5, 6: .65 vs 0, 7: .75 vs 1, 8: .85 vs 1
# -> ECE = (2 * .05 + .65 + .25 + 2 * .15) / 6 = 1.3 / 6.
BINARY_LABELS = [0, 0, 1, 1, 1, 0]
BINARY_P1 = [0.15, 0.45, 0.35, 0.85, 0.75, 0.55]


def binary_probabilities():
    p1 = np.array(BINARY_P1)
    return np.stack([1 - p1, p1], axis=1)


def test_binary_metrics_match_hand_computed_values():
    report = M.classification_report(BINARY_LABELS, binary_probabilities(), ["neg", "pos"])
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["precision"] == pytest.approx(2 / 3)
    assert report["recall"] == pytest.approx(2 / 3)
    assert report["f1"] == pytest.approx(2 / 3)
    assert report["roc_auc"] == pytest.approx(7 / 9)
    assert report["pr_auc"] == pytest.approx(13 / 15)
    expected_log_loss = -sum(map(math.log, [0.85, 0.55, 0.35, 0.85, 0.75, 0.45])) / 6
    assert report["log_loss"] == pytest.approx(expected_log_loss)
    assert report["confusion_matrix"] == [[2, 1], [1, 2]]
    assert report["per_class"][0] == pytest.approx(
        {"class": "neg", "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}
    )
    assert report["ece"] == pytest.approx(1.3 / 6)
    counts = [b["count"] for b in report["calibration"]["bins"]]
    assert counts == [0, 0, 0, 0, 0, 2, 1, 1, 2, 0]
    assert report["calibration"]["bins"][5]["accuracy"] == pytest.approx(0.5)
    assert report["notes"] == []


def test_the_hand_written_metrics_agree_with_scikit_learn():
    """log_loss and the calibration are written here (see metrics.py); the rest is
    scikit-learn's. On random 3-class softmax outputs, every number equals scikit-learn's."""
    from sklearn import metrics as sk

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 3)).astype(np.float32)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)  # float32 rows
    labels = rng.integers(0, 3, size=200)
    report = M.classification_report(labels, probabilities, ["a", "b", "c"])
    with warnings.catch_warnings():  # "y_prob values do not sum to one": the reason
        warnings.simplefilter("ignore", UserWarning)
        expected_loss = sk.log_loss(labels, probabilities.astype(np.float64), labels=[0, 1, 2])
    assert report["log_loss"] == pytest.approx(expected_loss, rel=1e-6)
    expected_auc = np.mean([sk.roc_auc_score(labels == k, probabilities[:, k]) for k in range(3)])
    assert report["roc_auc"] == pytest.approx(expected_auc)
    assert report["accuracy"] == pytest.approx(sk.accuracy_score(labels, probabilities.argmax(1)))


def test_roc_auc_counts_ties_as_half():
    # positives 0.3, 0.9 vs negatives 0.3, 0.2: 0.5 + 1 + 1 + 1 of 4 pairs
    assert M.roc_auc([0, 1, 0, 1], [0.3, 0.3, 0.2, 0.9]) == pytest.approx(3.5 / 4)
    assert M.roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)


# 3 classes. Predicted: 0, 1, 2, 0, 2 -> correct, correct, correct, wrong (2->0), wrong (1->2).
# Confusion rows (true): [1,0,0], [0,1,1], [1,0,1]. Precision .5, 1, .5; recall 1, .5, .5;
# F1 2/3, 2/3, 1/2 -> macro P 2/3, R 2/3, F1 11/18.
# One-vs-rest ROC-AUC: class 0: 1; class 1: positives .5, .25 vs negatives .2, .3, .25
# -> (3 + 1 + .5) / 6 = .75; class 2: positives .6, .25 vs .1, .3, .6 -> (2.5 + 1) / 6 = 7/12;
# macro (1 + .75 + 7/12) / 3 = 7/9. AP: class 0: 1; class 1: ranks + then tie{+,-} ... -> .75;
# class 2: tie{+,-} at .6, then - , + -> .5; macro .75.
# Calibration: conf .7 y, .5 y, .6 y, .5 n, .6 n -> bins 5: acc .5 conf .5; 6: acc .5 conf .6;
# 7: acc 1 conf .7 -> ECE = (0 + 2 * .1 + .3) / 5 = .1.
MULTI_LABELS = [0, 1, 2, 2, 1]
MULTI_P = [
    [0.7, 0.2, 0.1],
    [0.2, 0.5, 0.3],
    [0.1, 0.3, 0.6],
    [0.5, 0.25, 0.25],
    [0.15, 0.25, 0.6],
]


def test_three_class_macro_metrics_match_hand_computed_values():
    report = M.classification_report(MULTI_LABELS, MULTI_P, ["a", "b", "c"])
    assert report["averaging"] == "macro"
    assert report["accuracy"] == pytest.approx(3 / 5)
    assert report["confusion_matrix"] == [[1, 0, 0], [0, 1, 1], [1, 0, 1]]
    assert [c["precision"] for c in report["per_class"]] == pytest.approx([0.5, 1.0, 0.5])
    assert [c["recall"] for c in report["per_class"]] == pytest.approx([1.0, 0.5, 0.5])
    assert [c["f1"] for c in report["per_class"]] == pytest.approx([2 / 3, 2 / 3, 0.5])
    assert [c["support"] for c in report["per_class"]] == [1, 2, 2]
    assert report["precision"] == pytest.approx(2 / 3)
    assert report["recall"] == pytest.approx(2 / 3)
    assert report["f1"] == pytest.approx(11 / 18)
    assert report["roc_auc"] == pytest.approx(7 / 9)
    assert report["pr_auc"] == pytest.approx(0.75)
    expected_log_loss = -sum(map(math.log, [0.7, 0.5, 0.6, 0.25, 0.25])) / 5
    assert report["log_loss"] == pytest.approx(expected_log_loss)
    assert report["ece"] == pytest.approx(0.1)


def test_one_class_split_leaves_roc_auc_undefined_with_a_note():
    probabilities = np.array([[0.8, 0.2], [0.4, 0.6], [0.9, 0.1]])
    report = M.classification_report([0, 0, 0], probabilities, ["neg", "pos"])
    assert report["roc_auc"] is None
    assert report["pr_auc"] is None
    assert any("ROC-AUC is undefined" in note for note in report["notes"])
    assert report["accuracy"] == pytest.approx(2 / 3)
    assert M.score(report, "roc_auc") is None
    assert M.score(report, "neg_log_loss") == pytest.approx(-report["log_loss"])


# --- the evaluate stage on real pipeline outputs ---------------------------------------------


def test_evaluation_reports_are_complete_and_consistent(tiny_run):
    import keras

    from inception_retrain.training.head import probabilities_to_scores
    from inception_retrain.training.training_data import load_split

    run_dir, evaluation = tiny_run.run_dir, tiny_run.evaluation
    document = json.loads(evaluation.json_path.read_text())
    class_names = tiny_run.manifest.class_names

    # The test split of the manifest, scored independently with the head.
    ids, features, labels = load_split(tiny_run.cache.cache_dir, tiny_run.manifest.path, "test")
    head = keras.saving.load_model(tiny_run.head.head_path, compile=False)
    expected = probabilities_to_scores(head.predict(features, verbose=0), len(class_names))
    predictions = pq.read_table(run_dir / "test_predictions.parquet").to_pylist()
    assert [row["content_id"] for row in predictions] == ids
    got = np.array([[row[f"p_{name}"] for name in class_names] for row in predictions])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert [row["label_index"] for row in predictions] == labels.tolist()
    manifest_rows = pq.read_table(tiny_run.manifest.path).to_pylist()
    uris = {row["content_id"]: row["uri"] for row in manifest_rows}
    assert all(row["uri"] == uris[row["content_id"]] for row in predictions)

    accuracy = float(np.mean(expected.argmax(axis=1) == labels))
    assert document["n_test"] == len(ids) == evaluation.metrics["n_test"]
    assert document["metrics"]["accuracy"] == pytest.approx(accuracy)
    assert evaluation.metrics["accuracy"] == pytest.approx(accuracy)
    assert document["class_names"] == class_names
    assert document["backbone"]["fingerprint"] == tiny_run.cache.backbone_fingerprint
    assert document["backbone"]["random_weights"] is True
    assert "RANDOM" in document["backbone"]["weights_description"]
    assert document["head"]["fingerprint"] == tiny_run.head.fingerprint
    assert len(document["metrics"]["confusion_matrix"]) == len(class_names)
    for key in ("roc_auc", "pr_auc", "log_loss", "ece", "f1", "precision", "recall"):
        assert document["metrics"][key] is not None

    wrong = int(np.sum(expected.argmax(axis=1) != labels))
    assert len(document["misclassified"]) == min(wrong, 12)
    confidences = [item["confidence"] for item in document["misclassified"]]
    assert confidences == sorted(confidences, reverse=True)

    for name in ("roc", "pr", "learning_curves", "reliability"):
        assert (run_dir / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run_dir / "misclassified.png").is_file() == (wrong > 0)

    md_path, html_path = write_evaluation_report(run_dir)  # no promotion decision yet
    page = html_path.read_text()
    assert "<h1>Evaluation report</h1>" in page
    assert f"{document['metrics']['accuracy']:.4f}" in page
    assert "RANDOM weights" in page
    # Self-contained: every image inline, nothing fetched from anywhere; links stay on the
    # page (its contents) or go to the run's other report beside it.
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) >= 4 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in page and "https://" not in page and "url(" not in page
    links = re.findall(r'href="([^"]*)"', page)
    anchors = set(re.findall(r'id="([^"]*)"', page))
    assert all(link.lstrip("#") in anchors for link in links if link.startswith("#"))
    assert {link for link in links if not link.startswith("#")} <= {"dropout_impact.html"}
    # The answer comes first, with its interval and the baseline it must beat.
    intervals = document["metrics"]["intervals"]
    low, high = intervals["accuracy"]["low"], intervals["accuracy"]["high"]
    assert 0 <= low <= document["metrics"]["accuracy"] <= high <= 1
    baseline = document["metrics"]["majority_baseline"]
    counts = np.bincount(labels, minlength=len(class_names))
    assert baseline["accuracy"] == pytest.approx(counts.max() / counts.sum())
    answer = page[page.index('id="answer"') : page.index('id="contents"')]
    assert f"{document['metrics']['accuracy']:.3f} [95% CI {low:.3f}, {high:.3f}]" in answer
    assert f"{baseline['accuracy']:.3f} for always answering the majority class" in answer
    assert f"tensorboard --logdir {run_dir / 'tensorboard'}" in page
    assert "<details><summary>Fingerprints" in page
    assert f"RMSprop, learning rate {tiny_run.head.training.head.learning_rate}" in page

    markdown = md_path.read_text()
    assert markdown.startswith("# Evaluation report")
    assert "![ROC curve](roc.png)" in markdown


def _rewrite_manifest(source, target, change):
    table = pq.read_table(source)
    rows = [change(dict(row)) for row in table.to_pylist()]
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), target)
    return target


def test_one_class_test_split_gives_null_roc_auc_not_a_crash(tiny_run, tmp_path):
    from inception_retrain.evaluation.evaluate import evaluate

    # The manifest decides labels: relabel every test image as class 0.
    def relabel(row):
        if row["split"] == "test" and row["status"] == "ok":
            row["label_index"], row["label"] = 0, tiny_run.manifest.class_names[0]
        return row

    path = _rewrite_manifest(tiny_run.manifest.path, tmp_path / "manifest.parquet", relabel)
    manifest = tiny_run.manifest.model_copy(update={"path": path})
    run = tiny_run
    evaluation = evaluate(manifest, run.cache, run.head, tmp_path)
    document = json.loads(evaluation.json_path.read_text())
    assert evaluation.metrics["roc_auc"] is None
    assert document["metrics"]["roc_auc"] is None
    assert any("ROC-AUC is undefined" in note for note in document["notes"])
    _, html_path = write_evaluation_report(tmp_path)
    assert "ROC-AUC is undefined" in html_path.read_text()
    assert not (tmp_path / "roc.png").exists()
    assert (
        evaluation.metrics["test_split_fingerprint"]
        != run.evaluation.metrics["test_split_fingerprint"]
    )


def test_empty_test_split_is_a_clear_data_error(tiny_run, tmp_path):
    from inception_retrain.evaluation.evaluate import evaluate

    def no_test(row):
        row["split"] = "train" if row["split"] == "test" else row["split"]
        return row

    path = _rewrite_manifest(tiny_run.manifest.path, tmp_path / "manifest.parquet", no_test)
    manifest = tiny_run.manifest.model_copy(update={"path": path})
    run = tiny_run
    with pytest.raises(DataError, match="test split is empty"):
        evaluate(manifest, run.cache, run.head, tmp_path)
    assert not (tmp_path / "evaluation.json").exists()


def test_test_images_without_cached_features_are_a_data_error(tiny_run, tmp_path):
    from inception_retrain.evaluation.evaluate import evaluate

    table = pq.read_table(tiny_run.manifest.path)
    extra = next(r for r in table.to_pylist() if r["split"] == "test" and r["status"] == "ok")
    extra["content_id"] = "f" * 64  # an image the cache has never seen
    rows = [*table.to_pylist(), extra]
    path = tmp_path / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    manifest = tiny_run.manifest.model_copy(update={"path": path})
    run = tiny_run
    with pytest.raises(DataError, match="1 of .* test images have no cached features"):
        evaluate(manifest, run.cache, run.head, tmp_path)


def test_three_class_evaluation_uses_macro_averages(tiny_run, tmp_path):
    """A 3-class head on a small hand-made cache: per-class curves, macro metrics."""
    from inception_retrain.evaluation.evaluate import evaluate
    from inception_retrain.features.backbone_spec import BackboneSpec
    from inception_retrain.features.feature_cache import FeatureCache
    from inception_retrain.features.feature_parts import feature_schema, write_part
    from inception_retrain.training.head import TrainedHead, build_head, compile_head
    from inception_retrain.training.training_spec import TrainingSpec

    rows = [r for r in pq.read_table(tiny_run.manifest.path).to_pylist() if r["status"] == "ok"]
    names = ["a", "b", "c"]
    for i, row in enumerate(rows):
        row["label_index"] = i % 3
        row["label"] = names[i % 3]
    table = pq.read_table(tiny_run.manifest.path)
    metadata = parquet_metadata("manifest", 2, {"class_names": names, "source": "test"})
    path = tmp_path / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema.with_metadata(metadata)), path)
    manifest = tiny_run.manifest.model_copy(update={"path": path, "class_names": names})

    shape = (4,)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(len(rows), 4)).astype(np.float32)
    features[:, 0] += 2.0 * np.array([r["label_index"] for r in rows])  # learnable signal
    cache_dir = tmp_path / "cache"
    schema = feature_schema(shape, "float32", {"fingerprint": "test"})
    ids, labels = [r["content_id"] for r in rows], [r["label_index"] for r in rows]
    write_part(cache_dir, schema, ids, labels, ["x"] * len(rows), features)
    cache = FeatureCache(
        cache_dir=cache_dir,
        backbone=BackboneSpec(),
        backbone_fingerprint="test",
        manifest_fingerprint="test",
        feature_shape=shape,
        dtype="float32",
        computed=len(rows),
        reused=0,
        report_path=tmp_path / "extract.json",
    )
    model = compile_head(build_head(shape, 3, HeadSpec(hidden_units=(8, 8))), 3, 1e-2)
    model.fit(features, np.array(labels), epochs=20, verbose=0)
    model.save(tmp_path / "head.keras")
    history = {"loss": [1.0, 0.5], "accuracy": [0.4, 0.7]}
    write_document(tmp_path / "history.json", "training-history", 1, history)
    head = TrainedHead(
        head_path=tmp_path / "head.keras",
        history_path=tmp_path / "history.json",
        fingerprint="x",
        device="cpu",
        training=TrainingSpec(head=HeadSpec(hidden_units=(8, 8))),
    )

    evaluation = evaluate(manifest, cache, head, tmp_path)
    document = json.loads(evaluation.json_path.read_text())
    predictions = pq.read_table(tmp_path / "test_predictions.parquet")
    probabilities = np.stack([predictions.column(f"p_{n}").to_numpy() for n in names], axis=1)
    labels = predictions.column("label_index").to_numpy()
    expected = M.classification_report(labels, probabilities, names)
    assert document["metrics"]["averaging"] == "macro"
    assert np.shape(document["metrics"]["confusion_matrix"]) == (3, 3)
    per_class_f1 = [c["f1"] for c in document["metrics"]["per_class"]]
    assert document["metrics"]["f1"] == pytest.approx(np.mean(per_class_f1))
    assert document["metrics"]["roc_auc"] == pytest.approx(expected["roc_auc"])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (tmp_path / "learning_curves.png").is_file()


def test_metric_intervals_cover_the_point_and_stay_in_range():
    from inception_retrain.evaluation import metrics as M

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 60)
    p = np.clip(0.5 + (labels - 0.5) * rng.uniform(0.0, 0.9, 60), 0.01, 0.99)
    probabilities = np.stack([1 - p, p], axis=1)
    point = M.classification_report(labels, probabilities, ["a", "b"])
    intervals = M.metric_intervals(labels, probabilities, ["a", "b"], resamples=500)
    assert set(intervals) == {*M.PROPORTIONS, *M.BOOTSTRAPPED}
    for metric, bounds in intervals.items():
        assert bounds["low"] <= point[metric] <= bounds["high"], metric
        if metric != "log_loss":
            assert bounds["low"] >= 0 and bounds["high"] <= 1, metric
    assert intervals["accuracy"]["method"] == "Wilson"
    # The same predictions give the same interval; a perfect head's accuracy stays below 1.
    again = M.metric_intervals(labels, probabilities, ["a", "b"], resamples=500)
    assert again == intervals
    assert M.wilson(42, 42)[1] == 1.0 and M.wilson(42, 42)[0] < 1.0
    # The vectorised resamples are the reports of the resampled images.
    index = M._stratified_resamples(labels, 20, seed=1)
    fast = M._binary_resampled(labels, probabilities, index)
    for row, i in enumerate(index):
        slow = M._light_report(labels[i], probabilities[i], 2)
        for metric, values in fast.items():
            assert values[row] == pytest.approx(slow[metric], abs=1e-12), metric
