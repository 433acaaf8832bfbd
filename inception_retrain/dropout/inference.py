"""F4, inference: Dropout is the identity with training=False; MC dropout as uncertainty.

`measure_inference` runs the trained head on cached features of a held-out split:
  * twice with training=False: outputs must be bitwise identical, and every Dropout's output
    must equal its input (identity);
  * `passes` times with only the Dropout layers in training mode (MC dropout): per image the
    predictive mean, the standard deviation over passes of the predicted class's probability,
    and the entropy of the mean. An image is an error when the mean's argmax is not its
    label; the AUROC of each uncertainty for telling errors from correct images says whether
    errors carry more uncertainty (0.5 = no signal; undefined without both kinds).

    inference = measure_inference(layers, test_x, test_y, n_classes, passes=30)
    inference["auroc_std"]
"""

from __future__ import annotations

import numpy as np

from inception_retrain.dropout import chain
from inception_retrain.head import probabilities_to_scores
from inception_retrain.metrics import roc_auc

MAX_IMAGE_ROWS = 1000  # per-image rows kept in the JSON


def _entropy(probabilities: np.ndarray) -> np.ndarray:
    clipped = np.clip(probabilities, 1e-12, 1.0)
    return -(probabilities * np.log(clipped)).sum(axis=1)


def measure_inference(
    layers, features, labels, n_classes: int, passes: int, content_ids=None
) -> dict:
    """Determinism and identity at inference; MC-dropout uncertainty against errors."""
    first = chain.run_chain(layers, features, dropout_on=False)
    second = chain.run_chain(layers, features, dropout_on=False)
    out_a, out_b = np.asarray(first[-1]), np.asarray(second[-1])
    identity = []
    for index, layer in enumerate(layers):
        if chain.is_dropout(layer):
            before, after = np.asarray(first[index - 1]), np.asarray(first[index])
            identity.append(
                {"layer": layer.name, "max_abs_delta": float(np.max(np.abs(after - before)))}
            )

    runs = np.stack(
        [
            probabilities_to_scores(
                chain.run_chain(layers, features, dropout_on=True)[-1], n_classes
            )
            for _ in range(passes)
        ]
    )  # (passes, N, K)
    mean = runs.mean(axis=0)
    predicted = mean.argmax(axis=1)
    labels = np.asarray(labels).reshape(-1)
    spread = runs.std(axis=0)[np.arange(len(labels)), predicted]
    entropy = _entropy(mean)
    errors = predicted != labels
    deterministic = probabilities_to_scores(out_a, n_classes).argmax(axis=1)
    ids = list(content_ids) if content_ids is not None else [str(i) for i in range(len(labels))]
    return {
        "images": int(len(labels)),
        "passes": int(passes),
        "deterministic_max_abs_delta": float(np.max(np.abs(out_a - out_b))) if out_a.size else 0.0,
        "deterministic_bitwise": bool(np.array_equal(out_a, out_b)),
        "dropout_identity": identity,
        "mc_images_varying": int((runs.std(axis=0).max(axis=1) > 0).sum()),
        "mc_accuracy": float(np.mean(~errors)) if len(labels) else None,
        "deterministic_accuracy": float(np.mean(deterministic == labels)) if len(labels) else None,
        "errors": int(errors.sum()),
        "mean_std_errors": float(spread[errors].mean()) if errors.any() else None,
        "mean_std_correct": float(spread[~errors].mean()) if (~errors).any() else None,
        "auroc_std": roc_auc(errors, spread),
        "auroc_entropy": roc_auc(errors, entropy),
        "per_image": [
            {
                "content_id": ids[i],
                "label": int(labels[i]),
                "predicted": int(predicted[i]),
                "mean_probability": float(mean[i, predicted[i]]),
                "std": float(spread[i]),
                "entropy": float(entropy[i]),
                "error": bool(errors[i]),
            }
            for i in range(min(len(labels), MAX_IMAGE_ROWS))
        ],
    }
