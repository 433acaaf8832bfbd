"""The champion's prediction for each image of the current test split: recorded or re-scored.

Paired comparisons of a new model with the champion (its overall score, `promotion`; each
slice, `slice_gate`) need the champion's answer on the very images the new model was scored
on. When the champion was evaluated on the same test split (its metrics.json records the
split's fingerprint), its run folder's test_predictions.parquet already holds them; otherwise
its exported model.keras predicts the current test images from their files (`rescored`,
remembered for the process, so the score and the slices re-score once).

    >>> champion = champion_test_predictions(champion_dir, evaluation)
    >>> champion.predicted_of()["3f2a..."], champion.how
    (1, 'recorded on the same test split')
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inception_retrain.data.images import load_rgb
from inception_retrain.data.manifest import read_image_rows, split_fingerprint
from inception_retrain.evaluation.evaluate import (
    Evaluation,
    read_evaluation,
    read_test_predictions,
)
from inception_retrain.features.backbone import inference_function
from inception_retrain.plumbing.errors import DataError, PipelineError
from inception_retrain.plumbing.files import read_json
from inception_retrain.registry.predict import load_inference_model, predict_arrays

RECORDED = "recorded on the same test split"


@dataclass(frozen=True)
class ChampionPredictions:
    """The champion's probabilities on test images (sorted by content id) and whence."""

    content_ids: tuple[str, ...]
    probabilities: np.ndarray  # (N, K)
    labels: np.ndarray  # the current manifest's labels of those images
    how: str

    def predicted_of(self) -> dict[str, int]:
        """content id -> the class the champion predicts."""
        predicted = self.probabilities.argmax(axis=1)
        return dict(zip(self.content_ids, predicted.tolist(), strict=True))


@functools.lru_cache(maxsize=2)
def rescored(champion_dir: Path, manifest_path: Path, test_fingerprint: str, chunk: int = 64):
    """The champion's model.keras on the current test images (raw files, `chunk` at a
    time); `test_fingerprint` keys the memory. PipelineError if a file vanished."""
    test = read_image_rows(manifest_path, "test")
    order = np.argsort(test.content_ids)
    uris = [test.uris[i] for i in order]
    model, class_names = load_inference_model(champion_dir)
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
    return ChampionPredictions(
        content_ids=tuple(test.content_ids[i] for i in order),
        probabilities=np.concatenate(scores) if scores else np.zeros((0, len(class_names))),
        labels=np.array([test.label_indices[i] for i in order]),
        how=f"re-scored on the current test split ({len(uris)} images)",
    )


def _recorded(champion_dir: Path, class_names: list[str]) -> ChampionPredictions | None:
    """The champion's evaluation of its own test split, from its run folder (None when the
    folder or its predictions are gone)."""
    try:
        lineage = read_json(Path(champion_dir) / "metrics.json")["lineage"]
        table = read_test_predictions(Path(lineage["run_dir"])).to_pydict()
    except (OSError, ValueError, KeyError, TypeError, DataError):
        return None
    columns = [f"p_{name}" for name in class_names]
    if any(column not in table for column in columns):
        return None
    order = np.argsort(table["content_id"])
    probabilities = np.column_stack([np.asarray(table[c], np.float64) for c in columns])
    return ChampionPredictions(
        content_ids=tuple(table["content_id"][i] for i in order),
        probabilities=probabilities[order],
        labels=np.asarray(table["label_index"])[order],
        how=RECORDED,
    )


def champion_test_predictions(
    champion_dir: Path, evaluation: Evaluation
) -> tuple[ChampionPredictions | None, str]:
    """(the champion's predictions on the evaluation's test images, "") or (None, why not)."""
    current = read_evaluation(evaluation.json_path)
    class_names = read_json(Path(champion_dir) / "labels.json")["class_names"]
    if class_names != current["class_names"]:
        return None, f"the champion predicts other classes ({', '.join(class_names)})"
    recorded = read_json(Path(champion_dir) / "metrics.json")
    split = evaluation.metrics.get("test_split_fingerprint")
    if split and recorded.get("test_split_fingerprint") == split:
        found = _recorded(champion_dir, class_names)
        if found is not None:
            return found, ""
    manifest_path = Path(current["manifest"]["path"])
    if not len(read_image_rows(manifest_path, "test")):
        return None, "the current test split is empty"
    fingerprint = split or split_fingerprint(manifest_path, "test")
    return rescored(Path(champion_dir), manifest_path, fingerprint), ""
