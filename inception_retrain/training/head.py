"""The trainable head on top of the frozen backbone's cached features, built from a HeadSpec.

With the default `HeadSpec` it is exactly the seed's:
    Flatten -> Dense(512, relu) -> Dense(1024, relu) -> Dropout(0.2) -> Dense(1, sigmoid)
compiled with RMSprop(learning_rate=1e-4), binary cross-entropy and accuracy. With more than
two classes the output is Dense(n, softmax) with sparse categorical cross-entropy. RMSprop is
Keras's, with its update fused into one pass per variable (`fused_rmsprop`): the same
algorithm, about twice as fast a training step on a CPU.

Layer names are fixed so reports can address layers by name:
`flatten`, `hidden_1`, [`dropout_1`], `hidden_2`, [`dropout`], `predictions`.

`TrainedHead` is the training stage's artifact: `head.keras` (uncompiled) and `history.json`
in the run folder, with the head's fingerprint and the `TrainingSpec` that trained it (its
`HeadSpec` and seed: later stages that rebuild or retrain the head read them from here).

    >>> head = build_head((7, 7, 768), n_classes=2, spec=HeadSpec(), seed=0)
    >>> compile_head(head, n_classes=2, learning_rate=1e-4)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from inception_retrain.training.fused_rmsprop import FusedRMSprop
from inception_retrain.training.head_spec import HeadSpec
from inception_retrain.training.training_spec import TrainingSpec


class TrainedHead(BaseModel):
    """Output of training: the head model plus its history, in the run folder."""

    head_path: Path  # run_dir/head.keras (input: cached features)
    history_path: Path  # run_dir/history.json
    fingerprint: str  # head_fingerprint: architecture and weights
    device: str
    training: TrainingSpec


def build_head(
    feature_shape: Sequence[int],
    n_classes: int,
    spec: HeadSpec | None = None,
    seed: int = 0,
    name: str = "head",
    standardize: bool = False,
):
    """Build the uncompiled head model (input: one cached feature map per example).
    `standardize`: a `Standardize` layer before Flatten, for training (`save_head` folds it
    into hidden_1, so a saved head never has it)."""
    import keras
    from keras import layers

    from inception_retrain.training.standardize import LAYER_NAME, Standardize

    if n_classes < 2:
        raise ValueError(f"need at least 2 classes, got {n_classes}")
    spec = spec or HeadSpec()
    units_1, units_2 = spec.hidden_units
    rate_1, rate_2 = spec.rates
    init = keras.initializers.GlorotUniform

    inputs = keras.Input(shape=tuple(feature_shape), name="features")
    x = Standardize(name=LAYER_NAME)(inputs) if standardize else inputs
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(units_1, activation="relu", kernel_initializer=init(seed), name="hidden_1")(x)
    if rate_1 > 0:
        x = layers.Dropout(rate_1, seed=seed + 1, name="dropout_1")(x)
    x = layers.Dense(
        units_2, activation="relu", kernel_initializer=init(seed + 2), name="hidden_2"
    )(x)
    if rate_2 > 0:
        x = layers.Dropout(rate_2, seed=seed + 3, name="dropout")(x)
    if n_classes == 2:
        outputs = layers.Dense(
            1,
            activation="sigmoid",
            kernel_initializer=init(seed + 4),
            dtype="float32",  # float32 probabilities and loss under mixed_float16
            name="predictions",
        )(x)
    else:
        outputs = layers.Dense(
            n_classes,
            activation="softmax",
            kernel_initializer=init(seed + 4),
            dtype="float32",
            name="predictions",
        )(x)
    return keras.Model(inputs, outputs, name=name)


def compile_head(model, n_classes: int, learning_rate: float):
    """Compile as the seed does. `metrics=` by keyword: positionally it is loss_weights."""

    loss = "binary_crossentropy" if n_classes == 2 else "sparse_categorical_crossentropy"
    model.compile(
        optimizer=FusedRMSprop(learning_rate=learning_rate),
        loss=loss,
        metrics=["accuracy"],
    )
    return model


def head_fingerprint(model) -> str:
    """sha256 over a head's architecture (its Keras config) and its weights' bytes.

    Equal heads get equal fingerprints, which the hash of a saved `.keras` file does not give:
    Keras writes the save date into the file."""
    import hashlib
    import json

    import numpy as np

    digest = hashlib.sha256(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    for weights in model.get_weights():
        digest.update(f"{weights.dtype}{weights.shape}".encode())
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()


def probabilities_to_scores(probabilities, n_classes: int):
    """Per-class probabilities (N, n_classes) from the head's output (N, 1) or (N, n)."""
    import numpy as np

    probabilities = np.asarray(probabilities, dtype=np.float64)
    if n_classes == 2:
        positive = probabilities.reshape(-1)
        return np.stack([1.0 - positive, positive], axis=1)
    return probabilities


def save_head(model, spec: HeadSpec, n_classes: int, seed: int, path: Path) -> str:
    """Save `model`'s weights as a clean, uncompiled head at `path`, atomically.

    Uncompiled: half the size of a file with optimizer slots, and it loads without Keras's
    optimizer warnings (`compile_head` it to train further). A `Standardize` layer is folded
    into hidden_1 (`standardize.fold_into_dense`): the saved head is always the plain one, on
    raw features. Returns its `head_fingerprint`.
    """
    import os

    from inception_retrain.training.standardize import LAYER_NAME, fold_into_dense

    clean = build_head(model.input_shape[1:], n_classes, spec, seed)
    names = {layer.name for layer in model.layers}
    for layer in clean.layers:
        weights = model.get_layer(layer.name).get_weights() if layer.weights else []
        if layer.name == "hidden_1" and LAYER_NAME in names:
            standardize = model.get_layer(LAYER_NAME)
            weights = fold_into_dense(*weights, standardize.mean.numpy(), standardize.scale.numpy())
        if weights:
            layer.set_weights(weights)
    path = Path(path)
    # Keras saves to a path ending in .keras, not to a file object, so files.atomic_file
    # cannot serve: a temporary name with that suffix, then a rename.
    tmp = path.with_name(f".tmp-{path.name}")
    clean.save(tmp)
    os.replace(tmp, path)
    return head_fingerprint(clean)


def load_head(path: Path):
    """A saved head, uncompiled, in Keras's safe mode."""
    import keras

    return keras.saving.load_model(path, compile=False, safe_mode=True)
