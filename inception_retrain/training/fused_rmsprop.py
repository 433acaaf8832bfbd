"""RMSprop whose per-variable update runs as one fused XLA loop.

Same algorithm, hyper-parameters and op order as `keras.optimizers.RMSprop.update_step`
(momentum 0, not centered, the seed's setting):

    velocity = rho * velocity + (1 - rho) * gradient**2
    variable = variable - learning_rate * gradient / sqrt(velocity + epsilon)

Keras runs that as eight separate TF ops per variable, each streaming a full-size temporary
through memory. For the seed's head, whose first Dense holds 19.3 M weights, that is most of a
training step on a CPU: the step is bound by memory traffic, not arithmetic. Compiled by XLA
it is one pass over the gradient, the velocity and the weights: a head epoch takes half the CPU
time (bench/train.py). XLA may contract a multiply-add into one FMA, so weights can differ from
Keras's unfused update in the last bit (1.2e-8 after 3 epochs of the seed's head):
tests/test_equivalence.py checks the seed's way against the cached way both with this optimizer
on both sides (bit-identical) and with Keras's own RMSprop on the seed's side (within 1e-5).

Anything else (momentum, centered, sparse gradients) falls back to Keras's own update.

    >>> model.compile(optimizer=FusedRMSprop(learning_rate=1e-4), loss="binary_crossentropy")
"""

from __future__ import annotations

import keras
import tensorflow as tf


@tf.function(jit_compile=True, autograph=False)
def _update(variable, velocity, gradient, learning_rate, rho: float, epsilon: float):
    # Resource handles, not tf.Variables: a traced function would capture the variables it
    # first saw, and this one is shared by every optimizer (one compilation per shape).
    old_velocity = tf.raw_ops.ReadVariableOp(resource=velocity, dtype=gradient.dtype)
    new_velocity = rho * old_velocity + (1 - rho) * tf.square(gradient)
    tf.raw_ops.AssignVariableOp(resource=velocity, value=new_velocity)
    increment = learning_rate * gradient / tf.sqrt(new_velocity + epsilon)
    tf.raw_ops.AssignSubVariableOp(resource=variable, value=increment)


@keras.saving.register_keras_serializable(package="inception_retrain")
class FusedRMSprop(keras.optimizers.RMSprop):
    """`keras.optimizers.RMSprop` with the update of each dense variable fused by XLA."""

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # Outside a tf.distribute strategy, update directly: Keras's route through the
        # default strategy's `extended.update` keeps every variable it updated inside a
        # tf.function alive after its model is gone (measured: +160-200 MB per trained head,
        # which the dropout sweep's 21 trainings add up to about 4 GB).
        if tf.distribute.has_strategy():
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        for gradient, variable in zip(grads, trainable_variables, strict=True):
            self.update_step(gradient, _tf_variable(variable), learning_rate)

    def update_step(self, gradient, variable, learning_rate):
        if self.momentum > 0 or self.centered or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        velocity = self._velocities[self._get_variable_index(variable)]
        dtype = variable.dtype
        _update(
            _handle(variable),
            _handle(velocity),
            tf.cast(gradient, dtype),
            tf.cast(learning_rate, dtype),
            float(self.rho),
            float(self.epsilon),
        )


def _tf_variable(variable):
    return variable.value if isinstance(variable, keras.Variable) else variable


def _handle(variable):
    return _tf_variable(variable).handle
