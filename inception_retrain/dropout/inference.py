"""F4, inference: Dropout is the identity with training=False; MC dropout as uncertainty.

`measure_inference` runs the trained head on cached features of a held-out split:
  * twice with training=False: outputs must be bitwise identical, and every Dropout's output
    must equal its input (identity);
  * `passes` times with only the Dropout layers in training mode (MC dropout): per image the
    standard deviation over passes of the probability of the class the model predicts, and
    the entropy of the passes' mean.
An image is an error when the model's own prediction (training=False, what it serves) is not
its label. Does MC dropout's uncertainty flag those errors? `statistics.auroc_test` gives the
AUROC of the std for telling errors from correct images (0.5: no signal), a one-sided
permutation p-value and a bootstrap interval. The plain baseline it is compared with is the
deterministic model's own confidence (uncertainty 1 - max probability, no extra passes):
`statistics.auroc_difference` gives the paired bootstrap interval of AUROC(std) - AUROC(1 -
confidence) on the same images.

    inference = measure_inference(layers, test_x, test_y, n_classes, passes=30)
    inference.uncertainty.auroc, inference.uncertainty.p_value
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inception_retrain.dropout import chain
from inception_retrain.evaluation import statistics
from inception_retrain.evaluation.metrics import roc_auc
from inception_retrain.training.head import probabilities_to_scores

MAX_IMAGE_ROWS = 1000  # per-image rows kept in the JSON


@dataclass
class ImageUncertainty:
    content_id: str
    label: int
    predicted: int  # the deterministic (training=False) prediction
    confidence: float  # its probability
    std: float  # MC-dropout std of that class's probability
    entropy: float  # of the MC passes' mean
    error: bool


@dataclass
class Inference:
    images: int
    passes: int
    deterministic_max_abs_delta: float
    deterministic_bitwise: bool
    dropout_identity: dict[str, float]  # Dropout layer -> max |output - input|, training=False
    mc_images_varying: int
    accuracy: float | None  # of the deterministic predictions
    mc_accuracy: float | None  # of the MC passes' mean
    errors: int
    mean_std_errors: float | None
    mean_std_correct: float | None
    uncertainty: statistics.AurocTest  # MC std -> error
    baseline: statistics.AurocTest  # 1 - deterministic confidence -> error
    difference: statistics.Interval  # AUROC(std) - AUROC(baseline), paired bootstrap
    auroc_entropy: float | None
    per_image: list[ImageUncertainty]

    @property
    def identity_max_abs_delta(self) -> float:
        return max(self.dropout_identity.values(), default=0.0)


def _entropy(probabilities: np.ndarray) -> np.ndarray:
    clipped = np.clip(probabilities, 1e-12, 1.0)
    return -(probabilities * np.log(clipped)).sum(axis=1)


def measure_inference(
    layers, features, labels, n_classes: int, passes: int, content_ids=None, seed: int = 0
) -> Inference:
    """Determinism and identity at inference; MC-dropout uncertainty against errors."""
    first = chain.run_chain(layers, features, dropout_on=False)
    second = chain.run_chain(layers, features, dropout_on=False)
    out_a, out_b = np.asarray(first[-1]), np.asarray(second[-1])
    identity = {}
    for index, layer in enumerate(layers):
        if chain.is_dropout(layer):
            before, after = np.asarray(first[index - 1]), np.asarray(first[index])
            identity[layer.name] = float(np.max(np.abs(after - before))) if after.size else 0.0

    runs = np.stack(
        [
            probabilities_to_scores(
                chain.run_chain(layers, features, dropout_on=True)[-1], n_classes
            )
            for _ in range(passes)
        ]
    )  # (passes, N, K)
    labels = np.asarray(labels).reshape(-1)
    rows = np.arange(len(labels))
    plain = probabilities_to_scores(out_a, n_classes)
    predicted = plain.argmax(axis=1)
    confidence = plain[rows, predicted]
    mean = runs.mean(axis=0)
    spread = runs.std(axis=0)[rows, predicted]
    entropy = _entropy(mean)
    errors = predicted != labels
    ids = list(content_ids) if content_ids is not None else [str(i) for i in rows]
    return Inference(
        images=int(len(labels)),
        passes=int(passes),
        deterministic_max_abs_delta=float(np.max(np.abs(out_a - out_b))) if out_a.size else 0.0,
        deterministic_bitwise=bool(np.array_equal(out_a, out_b)),
        dropout_identity=identity,
        mc_images_varying=int((runs.std(axis=0).max(axis=1) > 0).sum()) if len(labels) else 0,
        accuracy=float(np.mean(~errors)) if len(labels) else None,
        mc_accuracy=float(np.mean(mean.argmax(axis=1) == labels)) if len(labels) else None,
        errors=int(errors.sum()),
        mean_std_errors=float(spread[errors].mean()) if errors.any() else None,
        mean_std_correct=float(spread[~errors].mean()) if (~errors).any() else None,
        uncertainty=statistics.auroc_test(errors, spread, seed=seed),
        baseline=statistics.auroc_test(errors, 1.0 - confidence, seed=seed),
        difference=statistics.auroc_difference(errors, spread, 1.0 - confidence, seed=seed),
        auroc_entropy=roc_auc(errors, entropy),
        per_image=[
            ImageUncertainty(
                content_id=ids[i],
                label=int(labels[i]),
                predicted=int(predicted[i]),
                confidence=float(confidence[i]),
                std=float(spread[i]),
                entropy=float(entropy[i]),
                error=bool(errors[i]),
            )
            for i in range(min(len(labels), MAX_IMAGE_ROWS))
        ],
    )
