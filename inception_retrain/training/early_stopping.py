"""Keras's `EarlyStopping`, with the best weights kept in TensorFlow variables.

`keras.callbacks.EarlyStopping(restore_best_weights=True)` copies every weight out to NumPy
(`model.get_weights()`) after each epoch that improves the monitored value. The head's first
Dense alone holds 19 M weights, and on 2 cores that copy, with its fresh 76 MB allocation,
took about 70 ms per improving epoch, up to 1 s of a 5 s training (bench/sweep.py,
docs/benchmarks.md). This subclass keeps Keras's rules and state unchanged (`best`, `wait`,
`best_epoch`, `stopped_epoch`, `best_weights`) and only stores the copy differently: one set
of variables beside the model's, assigned in place, which is a memory copy inside TensorFlow.

    stopping = EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    model.fit(train, validation_data=validation, epochs=20, callbacks=[stopping])

`best_weights` is then a list of variables, in `model.weights` order; NumPy reads them as
arrays (`np.asarray`), and a list of arrays assigned to it (a restored checkpoint) is restored
at the end as before.
"""

from __future__ import annotations

import keras


class _WeightsInVariables:
    """The model as EarlyStopping sees it: get/set_weights go through one set of variables."""

    def __init__(self, model):
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_copy", None)

    def __getattr__(self, name):
        return getattr(self._model, name)

    def __setattr__(self, name, value):  # e.g. `stop_training`
        setattr(self._model, name, value)

    def get_weights(self) -> list:
        import tensorflow as tf

        weights = self._model.weights
        if self._copy is None or len(self._copy) != len(weights):
            copy = [tf.Variable(w.value, trainable=False) for w in weights]
            object.__setattr__(self, "_copy", copy)
        else:
            for saved, weight in zip(self._copy, weights, strict=True):
                saved.assign(weight.value)
        return self._copy

    def set_weights(self, weights: list) -> None:
        for weight, value in zip(self._model.weights, weights, strict=True):
            weight.assign(value)


class EarlyStopping(keras.callbacks.EarlyStopping):
    """`keras.callbacks.EarlyStopping`, its best weights kept in variables (module docstring)."""

    def set_model(self, model):
        super().set_model(_WeightsInVariables(model))
