"""One compiled head per process, re-initialised in place for each of many short trainings.

The dropout sweep trains every cell on it, and the augmentation effect every seed. Building a
Keras head, tracing its train, test and predict functions and compiling them cost more than a
short training on a small split. So the process keeps ONE model for each
(feature shape, classes, hidden units, learning rate), with a `RateDropout` after each Dense
layer whose rate is a variable, and serves every cell with it:

    rates (0, 0)    no dropout ("none", or any placement at rate 0)
    rates (0, r)    Dropout(r) after Dense(units[1]) only ("after_dense2", the seed's)
    rates (r, r)    Dropout(r) after both Dense layers ("after_both")

`SweepHead.reset(seed, rates)` puts the model exactly where `fit.new_head(spec, seed)` starts:
kernels from the same seeded Glorot initialisers, zero biases, zero RMSprop slots and step
count, and each Dropout's random stream at its seed's start (seed + 1 and seed + 3, as
`head.build_head` seeds them). A `RateDropout` draws its mask from its own SeedGenerator the
way `keras.layers.Dropout(rate, seed)` does (one uniform draw per call, kept where >= rate,
kept values times float32(1 / (1 - rate))), and at rate 0 it keeps everything and multiplies
by 1.0, which is the identity bit for bit. So a cell trains to the same weights as
`fit.fit_head` with the same spec and seed, on a CPU (tests/test_dropout_sweep.py checks it).

`train(...)` is `fit.fit` with early stopping on validation loss and best weights restored;
no checkpoint, no TensorBoard. `predict(...)` runs one traced inference function (Keras's
`predict` builds a data adapter and an iterator per call: about 0.2 s each, measured). The
splits are `ReusedSplit`s: their tf.data pipeline is built once per process and reused by
every training (it reads the split's seed and epoch when a pass begins), which halves the
cost of starting an epoch's pass (0.05 s instead of 0.10 s on the demo's train split).

    head = sweep_head((7, 7, 768), n_classes=2, spec=HeadSpec())   # cached per process
    head.reset(seed=3, rates=(0.0, 0.2))
    result = head.train(train_split, validation_split, epochs=20, patience=3)
    probabilities = head.predict(features)
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from inception_retrain.training.head import compile_head
from inception_retrain.training.head_spec import HeadSpec
from inception_retrain.training.standardize import Standardize
from inception_retrain.training.training_data import InMemorySplit, epoch_order

PREDICT_ROWS = 256  # rows per inference call
STANDARDIZE = "standardize"

# (layer, kernel initialiser seed offset) as in `head.build_head`
DENSE_SEEDS = (("hidden_1", 0), ("hidden_2", 2), ("predictions", 4))
DROPOUT_SEEDS = (("dropout_1", 1), ("dropout", 3))


class RateDropout(keras.layers.Layer):
    """Dropout whose rate is a variable: `keras.layers.Dropout`'s mask, rate 0 the identity."""

    def __init__(self, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        self.rate = self.add_weight(shape=(), initializer="zeros", trainable=False, name="rate")
        self.scale = self.add_weight(shape=(), initializer="ones", trainable=False, name="scale")

    def set_rate(self, rate: float) -> None:
        self.rate.assign(rate)
        self.scale.assign(1.0 / (1.0 - rate))  # rounded to float32 as Dropout rounds it

    def call(self, inputs, training=False):
        if not training:
            return inputs
        draw = keras.random.uniform(
            keras.ops.shape(inputs), dtype=inputs.dtype, seed=self.seed_generator
        )
        return keras.ops.where(draw >= self.rate, inputs * self.scale, 0.0)


class SweepHead:
    """The sweep's model: one per process and architecture (see the module docstring)."""

    def __init__(
        self, feature_shape, n_classes: int, spec: HeadSpec, dropout_before_relu: bool = False
    ):
        from keras import layers

        units_1, units_2 = spec.hidden_units
        inputs = keras.Input(shape=tuple(feature_shape), name="features")
        x = Standardize(name=STANDARDIZE)(inputs)  # the identity unless statistics are set
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(units_1, activation="relu", name="hidden_1")(x)
        x = RateDropout(name="dropout_1")(x)
        if dropout_before_relu:  # Dense(1024) -> Dropout -> ReLU: C2's other order
            x = layers.Dense(units_2, name="hidden_2")(x)
            x = RateDropout(name="dropout")(x)
            x = layers.ReLU(name="hidden_2_relu")(x)
        else:
            x = layers.Dense(units_2, activation="relu", name="hidden_2")(x)
            x = RateDropout(name="dropout")(x)
        binary = n_classes == 2
        outputs = layers.Dense(
            1 if binary else n_classes,
            activation="sigmoid" if binary else "softmax",
            dtype="float32",
            name="predictions",
        )(x)
        self.model = keras.Model(inputs, outputs, name="sweep_head")
        self.n_classes = n_classes
        compile_head(self.model, n_classes, spec.learning_rate)
        self.model.optimizer.build(self.model.trainable_variables)
        self._infer = self._mc = None

    def reset(
        self,
        seed: int,
        rates: tuple[float, float],
        statistics: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Fresh weights, optimizer state and dropout streams for `seed`; these `rates`; the
        inputs standardised with `statistics` ((mean, scale) per feature; None: as they are)."""
        self.model.get_layer(STANDARDIZE).set_statistics(*(statistics or (None, None)))
        for name, offset in DENSE_SEEDS:
            layer = self.model.get_layer(name)
            init = keras.initializers.GlorotUniform(seed + offset)
            layer.kernel.assign(init(layer.kernel.shape, dtype=layer.kernel.dtype))
            layer.bias.assign(np.zeros(layer.bias.shape, layer.bias.dtype))
        for (name, offset), rate in zip(DROPOUT_SEEDS, rates, strict=True):
            layer = self.model.get_layer(name)
            layer.seed_generator.state.assign(np.array([seed + offset, 0], np.int64))
            layer.set_rate(float(rate))
        for variable in self.model.optimizer.variables:
            if not variable.path.endswith("learning_rate"):  # iterations and RMSprop slots
                variable.assign(np.zeros(variable.shape, variable.dtype))

    def train(self, train, validation, *, epochs: int, patience: int):
        """`fit.fit` from the state `reset` left (early stopping when `validation`)."""
        from inception_retrain.training.fit import fit

        return fit(self.model, train, validation, epochs=epochs, patience=patience)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Per-class probabilities (N, K) in inference mode (dropout off)."""
        import tensorflow as tf

        from inception_retrain.training.head import probabilities_to_scores

        if self._infer is None:
            spec = tf.TensorSpec([None, *self.model.input_shape[1:]], tf.float32)
            self._infer = tf.function(lambda x: self.model(x, training=False), [spec])
        raw = [
            np.asarray(self._infer(_float32(features[start : start + PREDICT_ROWS])))
            for start in range(0, len(features), PREDICT_ROWS)
        ]
        if not raw:
            return np.zeros((0, self.n_classes))
        return probabilities_to_scores(np.concatenate(raw), self.n_classes)

    def mc_predict(self, features: np.ndarray, passes: int) -> np.ndarray:
        """(passes, N, K) probabilities with dropout on (MC dropout), each pass with new masks
        from the layers' seeded streams. Dense(units[0])'s output does not depend on the
        masks, so it is computed once and only the layers after it run `passes` times."""
        import tensorflow as tf

        from inception_retrain.training.head import probabilities_to_scores

        if self._mc is None:
            names = [layer.name for layer in self.model.layers]
            tail = [self.model.get_layer(n) for n in names[names.index("hidden_1") + 1 :]]
            first = keras.Model(self.model.input, self.model.get_layer("hidden_1").output)
            spec = tf.TensorSpec([None, *self.model.input_shape[1:]], tf.float32)

            def passes_of(x, repeat):
                hidden = tf.repeat(first(x, training=False), repeat, axis=0)
                for layer in tail:
                    hidden = layer(hidden, training=True)
                return hidden

            self._mc = tf.function(passes_of, [spec, tf.TensorSpec([], tf.int32)])
        rows = max(1, PREDICT_ROWS * 8 // passes)
        raw = [
            np.asarray(self._mc(_float32(features[start : start + rows]), passes))
            for start in range(0, len(features), rows)
        ]
        if not raw:
            return np.zeros((passes, 0, self.n_classes))
        scores = [
            probabilities_to_scores(r, self.n_classes).reshape(-1, passes, self.n_classes)
            for r in raw
        ]
        return np.concatenate(scores).transpose(1, 0, 2)


def _float32(features):
    import tensorflow as tf

    return tf.constant(np.asarray(features, np.float32))


class ReusedSplit(InMemorySplit):
    """An `InMemorySplit` whose tf.data pipeline is built once and serves every training."""

    _dataset = None

    def dataset(self):
        if self._dataset is None:
            self._dataset = super().dataset()
        return self._dataset


class RowSubsetSplit(InMemorySplit):
    """All rows held once; each training visits the subset `rows` (set before it starts), in
    the order (seed, epoch) draws for that subset. The cross-fitted sweep trains on the
    other folds and validates on the held-out one with two of these over the same rows."""

    def __init__(self, features, labels, batch_size: int, shuffle: bool = True, share=None):
        if share is None:
            super().__init__(features, labels, batch_size, seed=0, shuffle=shuffle)
        else:  # the same rows, held once: `share`'s tensors
            self._x, self._y, self.labels = share._x, share._y, share.labels
            self.view_rows = self.views = None
            self.batch_size, self.seed, self.shuffle, self.epoch = batch_size, 0, shuffle, 0
        self.rows = np.arange(len(self.labels))
        self._datasets: dict[int, object] = {}  # one pipeline per subset size

    @property
    def n(self) -> int:
        return len(self.rows)

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return self.rows
        return self.rows[epoch_order(len(self.rows), self.seed, epoch)]

    def dataset(self):
        if self.n not in self._datasets:
            self._datasets[self.n] = super().dataset()
        return self._datasets[self.n]


@functools.lru_cache(maxsize=4)
def sweep_head(
    feature_shape: tuple[int, ...],
    n_classes: int,
    spec: HeadSpec,
    dropout_before_relu: bool = False,
) -> SweepHead:
    """The process's `SweepHead` for this architecture (dropout settings of `spec` ignored);
    `dropout_before_relu`: Dense(units[1])'s Dropout before its ReLU instead of after."""
    key = spec.with_dropout(0.0, "none")
    if key != spec:
        return sweep_head(tuple(feature_shape), n_classes, key, dropout_before_relu)
    return SweepHead(feature_shape, n_classes, spec, dropout_before_relu)
