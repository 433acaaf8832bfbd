"""The trained head as a chain of Keras layers, and how to see the masks Dropout draws.

The head (`inception_retrain.training.head`) is a straight chain `flatten, hidden_1, [dropout_1],
hidden_2, [dropout], predictions`. Measurements call those layer objects directly, so they use the
trained weights (no copies) and can run the chain with Dropout on or off, swap a Dropout for
another rate, or graft the chain onto the frozen backbone to get one model over every layer.

Seeing a mask: a Keras Dropout draws its mask from its own `seed_generator`, whose state
advances on every call, and the mask does not depend on the input values. So
`snapshot(layers)` before a call plus `keep_mask(layer, shape, state)` afterwards replays that
call's draw on an input of ones: the result is exactly the mask the call used, for every unit
(a unit whose input was already 0 after ReLU shows nothing in the real output).

    layers, inserted = measurement_layers(head, fallback_rate=0.2)
    states = snapshot(layers)
    outputs = run_chain(layers, features, dropout_on=True)
    mask = keep_mask(layers[4], outputs[3].shape, states["dropout"])  # True = kept
"""

from __future__ import annotations

import numpy as np

KIND_BACKBONE = "frozen backbone"
KIND_HEAD = "head"


def is_dropout(layer) -> bool:
    import keras

    return isinstance(layer, keras.layers.Dropout)


def head_layers(head) -> list:
    """The head's layers in call order, without its InputLayer."""
    import keras

    return [layer for layer in head.layers if not isinstance(layer, keras.layers.InputLayer)]


def dropout_layers(layers) -> list:
    return [layer for layer in layers if is_dropout(layer)]


def measurement_layers(head, fallback_rate: float = 0.2, seed: int = 0) -> tuple[list, bool]:
    """The head's layers, plus a Dropout(fallback_rate) after `hidden_2` if it has none.

    A head trained without dropout (placement "none" or rate 0) still gets its dropout
    measured where the seed puts it; Dropout has no weights, so inserting one changes no
    trained value. Returns (layers, inserted).
    """
    import keras

    layers = head_layers(head)
    if dropout_layers(layers):
        return layers, False
    rate = fallback_rate if 0.0 < fallback_rate < 1.0 else 0.2
    names = [layer.name for layer in layers]
    position = names.index("hidden_2") + 1 if "hidden_2" in names else len(layers) - 1
    inserted = keras.layers.Dropout(rate, seed=seed + 3, name="dropout")
    return [*layers[:position], inserted, *layers[position:]], True


def run_chain(layers, x, dropout_on: bool, replace: dict | None = None) -> list:
    """Every layer's output (tensors, in order) for input `x`.

    Only Dropout layers see `training=dropout_on`; the others run in inference mode (the head
    has no other training-dependent layer). `replace` maps a layer name to a stand-in layer
    (e.g. Dropout(1.0)) used instead of that layer.
    """
    replace = replace or {}
    outputs = []
    for layer in layers:
        layer = replace.get(layer.name, layer)
        x = layer(x, training=dropout_on) if is_dropout(layer) else layer(x)
        outputs.append(x)
    return outputs


def snapshot(layers) -> dict[str, np.ndarray]:
    """The RNG state of every Dropout layer in `layers`, by name, before a call."""
    return {
        layer.name: np.array(layer.seed_generator.state.numpy())
        for layer in layers
        if is_dropout(layer)
    }


def restore(layers, states: dict[str, np.ndarray]) -> None:
    for layer in layers:
        if layer.name in states:
            layer.seed_generator.state.assign(states[layer.name])


def keep_mask(layer, shape, state: np.ndarray) -> np.ndarray:
    """The keep-mask (True = kept) that `layer` drew for an input of `shape` from `state`.

    Replays the draw on ones, then puts the layer's RNG back where it was, so the caller's
    sequence of masks is undisturbed.
    """
    current = np.array(layer.seed_generator.state.numpy())
    layer.seed_generator.state.assign(state)
    try:
        probe = layer(np.ones(tuple(int(d) for d in shape), np.float32), training=True)
    finally:
        layer.seed_generator.state.assign(current)
    return np.asarray(probe) != 0


def full_model(backbone, layers):
    """One model from images to the output of EVERY layer: backbone layers, then the head.

    Returns (model, names, kinds); the model's outputs are in the order of `names`. The
    head's layer objects are reused, so the model carries the trained weights.
    """
    import keras

    outputs, names, kinds = [], [], []
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        outputs.append(layer.output)
        names.append(layer.name)
        kinds.append(KIND_BACKBONE)
    x = backbone.output
    for layer in layers:
        x = layer(x)
        outputs.append(x)
        names.append(layer.name)
        kinds.append(KIND_HEAD)
    return keras.Model(backbone.input, outputs, name="every_layer"), names, kinds


def copy_head(head):
    """An independent copy of a head model with the same weights (for training it)."""
    import keras

    clone = keras.models.clone_model(head)
    clone.set_weights(head.get_weights())
    return clone


def loss_function(n_classes: int):
    """The head's training loss (as `tasks.head.compile_head` sets it)."""
    import keras

    if n_classes == 2:
        return keras.losses.BinaryCrossentropy()
    return keras.losses.SparseCategoricalCrossentropy()


def loss_targets(labels, n_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if n_classes == 2:
        return labels.reshape(-1, 1).astype(np.float32)
    return labels.astype(np.int32)
