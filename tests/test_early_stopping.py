"""`early_stopping.EarlyStopping` decides and restores exactly as Keras's own callback."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from inception_retrain.training.early_stopping import EarlyStopping


def _train(callback_class, restore: bool, checkpoint_weights=None):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 8)).astype("float32"), rng.integers(0, 2, 64).astype("float32")
    vx, vy = rng.normal(size=(32, 8)).astype("float32"), rng.integers(0, 2, 32).astype("float32")
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, "relu"), keras.layers.Dense(1, "sigmoid")]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    stopping = callback_class(monitor="val_loss", patience=2, restore_best_weights=restore)
    history = model.fit(
        x,
        y,
        validation_data=(vx, vy),
        epochs=30,
        batch_size=16,
        shuffle=False,
        callbacks=[stopping],
        verbose=0,
    ).history
    return model, stopping, history


@pytest.mark.parametrize("restore", [True, False])
def test_same_decisions_and_the_same_restored_weights_as_keras(restore):
    ours, ours_stopping, ours_history = _train(EarlyStopping, restore)
    keras_model, keras_stopping, keras_history = _train(keras.callbacks.EarlyStopping, restore)
    assert ours_history == keras_history
    assert ours_stopping.stopped_epoch == keras_stopping.stopped_epoch > 0  # it did stop early
    assert ours_stopping.best_epoch == keras_stopping.best_epoch
    # the restored weights are the best epoch's, not the last epoch's
    assert ours_stopping.best_epoch < len(ours_history["loss"]) - 1
    for mine, theirs in zip(ours.get_weights(), keras_model.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    if restore:  # the copy reads as arrays (what a checkpoint saves)
        saved = [np.asarray(w) for w in ours_stopping.best_weights]
        for mine, theirs in zip(saved, keras_stopping.best_weights, strict=True):
            np.testing.assert_array_equal(mine, theirs)


def test_weights_assigned_from_a_restored_checkpoint_are_restored_at_the_end():
    model, stopping, _ = _train(EarlyStopping, True)
    arrays = [np.full(w.shape, 0.5, w.dtype) for w in model.get_weights()]
    stopping.best_weights = arrays  # as TimedCheckpoint restores them
    stopping.on_train_end()
    for weight in model.get_weights():
        np.testing.assert_array_equal(weight, 0.5)
