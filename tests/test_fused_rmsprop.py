"""FusedRMSprop is Keras's RMSprop: the same updates to float rounding, on any model."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from tasks.fused_rmsprop import FusedRMSprop


def train(optimizer, steps: int = 6, seed: int = 0, units: int = 48):
    """A small Dense model trained `steps` full-batch steps; returns (before, after) weights."""
    import keras

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, 30)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((30,)), keras.layers.Dense(units, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=optimizer, loss="mse")
    before = [w.copy() for w in model.get_weights()]
    model.fit(x, y, batch_size=64, epochs=steps, shuffle=False, verbose=0)
    return before, model.get_weights()


def test_updates_match_keras_rmsprop_to_rounding():
    import keras

    before, fused = train(FusedRMSprop(learning_rate=1e-2))
    _, stock = train(keras.optimizers.RMSprop(learning_rate=1e-2))
    for start, a, b in zip(before, fused, stock, strict=True):
        assert np.abs(a - start).max() > 1e-3  # it trained
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # and the tolerance sees a different learning rate
    _, slower = train(keras.optimizers.RMSprop(learning_rate=9e-3))
    pairs = zip(fused, slower, strict=True)
    assert not all(np.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in pairs)


@pytest.mark.parametrize("options", [{"momentum": 0.9}, {"centered": True}])
def test_momentum_and_centered_use_keras_own_update(options):
    import keras

    _, fused = train(FusedRMSprop(learning_rate=1e-2, **options))
    _, stock = train(keras.optimizers.RMSprop(learning_rate=1e-2, **options))
    for a, b in zip(fused, stock, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_second_model_of_the_same_shapes_trains_after_the_first_is_gone():
    """The compiled update is shared across optimizers; it must not hold the first model's
    variables (a traced function that captured them fails once they are deleted)."""
    first = train(FusedRMSprop(learning_rate=1e-2), seed=1)
    del first
    gc.collect()
    before, after = train(FusedRMSprop(learning_rate=1e-2), seed=2)
    assert all(np.abs(a - b).max() > 1e-3 for a, b in zip(before, after, strict=True))
