"""C2 and C7, measured directly on Keras layer calls.

C2, dropout before or after the activation: with the SAME mask (two Dropout layers with the
same seed draw the same mask; checked), compare `act(dropout(z))` with `dropout(act(z))` for
ReLU, sigmoid and tanh on real pre-activations `z` (the trained Dense(1024)'s, on cached
features), as they are and standardised. ReLU commutes with masking and with positive
scaling, so the two orders are bitwise identical; sigmoid(0) = 0.5 and tanh(s*z) != s*tanh(z)
make the others differ.

C7, `noise_shape`: Dropout on inputs of ones, so the output shows the mask everywhere. For a
3D input (batch, timesteps, features): the default masks every element independently;
`(batch, 1, features)` keeps each sample's feature on or off across all timesteps;
`(1, 1, features)` (and `(1, features)` for 2D input) drops the same features for every sample.

    order = measure_activation_order(pre_activations, rate=0.2)
    order.standardised["relu"].max_abs_delta      # 0.0
    shapes = measure_noise_shapes()
    shapes.patterns["3d_noise_shape_1_1_features"].same_mask_for_every_sample   # True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ACTIVATIONS = ("relu", "sigmoid", "tanh")


@dataclass
class OrderCheck:
    """act(dropout(z)) against dropout(act(z)) with one shared mask, for one activation."""

    same_mask: bool
    max_abs_delta: float
    fraction_differing: float
    max_abs_delta_on_dropped_units: float
    max_abs_delta_on_kept_units: float
    identical: bool


@dataclass
class ActivationOrder:
    """C2 on `values` real pre-activations, as they are and standardised."""

    rate: float
    values: int
    input_std: float
    real: dict[str, OrderCheck]  # by activation
    standardised: dict[str, OrderCheck]


@dataclass
class MaskPattern:
    """How one Dropout keep-mask varies across samples (and, for 3D input, timesteps)."""

    shape: list[int]
    noise_shape: list[int | None] | None
    dropped_fraction: float
    same_mask_for_every_sample: bool
    samples_with_distinct_masks: int
    whole_features_dropped: bool
    fraction_features_constant_across_timesteps: float | None = None


@dataclass
class NoiseShapes:
    """C7: Dropout's masks for 3D and 2D inputs with and without `noise_shape`."""

    rate: float
    patterns: dict[str, MaskPattern]


def pre_activations(layers, features, layer_name: str = "hidden_2") -> np.ndarray:
    """`z = x @ kernel + bias` of the named Dense layer, for cached features."""
    from inception_retrain.dropout import chain

    names = [layer.name for layer in layers]
    index = names.index(layer_name)
    outputs = chain.run_chain(layers[:index], features, dropout_on=False)
    x = np.asarray(outputs[-1]) if outputs else np.asarray(features)
    dense = layers[index]
    return x @ np.asarray(dense.kernel) + np.asarray(dense.bias)


def _orders(z: np.ndarray, rate: float, seed: int) -> dict[str, OrderCheck]:
    """For each activation: act(dropout(z)) vs dropout(act(z)) with one shared mask."""
    import keras

    from inception_retrain.dropout import chain

    result = {}
    for name in ACTIVATIONS:
        activation = keras.layers.Activation(name)
        first = keras.layers.Dropout(rate, seed=seed)
        second = keras.layers.Dropout(rate, seed=seed)
        states = chain.snapshot([first]), chain.snapshot([second])
        before = np.asarray(activation(first(z, training=True)))
        after = np.asarray(second(activation(z), training=True))
        kept = chain.keep_mask(first, z.shape, states[0][first.name])
        kept_second = chain.keep_mask(second, z.shape, states[1][second.name])
        delta = np.abs(before - after)
        result[name] = OrderCheck(
            same_mask=bool(np.array_equal(kept, kept_second)),
            max_abs_delta=float(delta.max()) if delta.size else 0.0,
            fraction_differing=float((before != after).mean()) if delta.size else 0.0,
            max_abs_delta_on_dropped_units=float(delta[~kept].max()) if (~kept).any() else 0.0,
            max_abs_delta_on_kept_units=float(delta[kept].max()) if kept.any() else 0.0,
            identical=bool(np.array_equal(before, after)),
        )
    return result


def measure_activation_order(z: np.ndarray, rate: float, seed: int = 0) -> ActivationOrder:
    """Both orders for ReLU, sigmoid and tanh, on `z` as is ("real") and standardised to unit
    standard deviation ("standardised"): tanh is nearly linear near 0, so on tiny real
    pre-activations its two orders differ only at rounding level."""
    z = np.asarray(z, np.float32)
    scale = float(z.std()) or 1.0
    return ActivationOrder(
        rate=float(rate),
        values=int(z.size),
        input_std=float(z.std()) if z.size else 0.0,
        real=_orders(z, rate, seed),
        standardised=_orders(z / np.float32(scale), rate, seed),
    )


def _mask(shape, noise_shape, rate: float, seed: int) -> np.ndarray:
    import keras

    layer = keras.layers.Dropout(rate, noise_shape=noise_shape, seed=seed)
    return np.asarray(layer(np.ones(shape, np.float32), training=True)) != 0


def _pattern(mask: np.ndarray, noise_shape) -> MaskPattern:
    """How a keep-mask varies: across samples, and (3D) across timesteps."""
    samples = mask.reshape(mask.shape[0], -1)
    constant = None
    whole = True  # 2D: one value per feature per sample
    if mask.ndim == 3:
        per_feature = np.all(mask == mask[:, :1, :], axis=1)  # (batch, features)
        constant, whole = float(per_feature.mean()), bool(per_feature.all())
    return MaskPattern(
        shape=list(mask.shape),
        noise_shape=None if noise_shape is None else list(noise_shape),
        dropped_fraction=float((~mask).mean()),
        same_mask_for_every_sample=bool(np.all(samples == samples[0])),
        samples_with_distinct_masks=int(len(np.unique(samples, axis=0))),
        whole_features_dropped=whole,
        fraction_features_constant_across_timesteps=constant,
    )


def measure_noise_shapes(
    rate: float = 0.5, batch: int = 8, timesteps: int = 10, features: int = 64, seed: int = 0
) -> NoiseShapes:
    """Mask patterns of Dropout for 3D and 2D inputs with and without noise_shape."""
    cases = {
        "3d_default": ((batch, timesteps, features), None),
        "3d_noise_shape_batch_1_features": ((batch, timesteps, features), (batch, 1, features)),
        "3d_noise_shape_none_1_features": ((batch, timesteps, features), (None, 1, features)),
        "3d_noise_shape_1_1_features": ((batch, timesteps, features), (1, 1, features)),
        "2d_default": ((batch, features), None),
        "2d_noise_shape_1_features": ((batch, features), (1, features)),
    }
    patterns = {
        name: _pattern(_mask(shape, noise_shape, rate, seed), noise_shape)
        for name, (shape, noise_shape) in cases.items()
    }
    return NoiseShapes(rate=float(rate), patterns=patterns)
