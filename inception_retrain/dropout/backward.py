"""F2, the backward pass: which layers' gradients does Dropout change?

On one batch of the run's cached features (the frozen backbone's exact outputs) with the
trained head's layers:

  * gradients with dropout on (its mask replayed, so it is known), and with dropout off:
    per-variable norms and the relative change ||g_on - g_off|| / ||g_off||, plus the gradient
    that reaches the backbone's output (the frozen boundary, where nothing is trainable);
  * per sample (a batch of one, i.e. one real step): the gradient columns of the Dense layer
    before each Dropout (kernel columns and bias entries) for the units that sample dropped,
    which must be exactly 0; and, for the whole batch, which columns are exactly 0 (a unit
    dropped or inactive for EVERY sample of the batch);
  * every Dropout replaced by Dropout(rate=1.0): every layer before the last Dropout gets an
    exactly zero gradient (claim C6's extreme case). Keras implements rate 1 as
    `zeros_like(x)`, which cuts the graph: the tape returns no gradient at all (None) for
    those variables, reported as zeros and listed in `rate_1_variables_without_gradient_path`.

    backward = measure_backward(layers, features[:32], labels[:32], n_classes, backbone)
    backward.main.max_abs_gradient_dropped_kernel_columns   # 0.0
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from inception_retrain.dropout import chain


@dataclass
class VariableGradient:
    """One trainable variable's gradient norm with dropout on (fixed mask), off, and rate 1."""

    variable: str  # "layer/name"
    layer: str
    before_last_dropout: bool
    norm_with_dropout: float
    norm_without_dropout: float
    relative_change: float  # ||g_on - g_off|| / ||g_off||
    norm_rate_1: float
    relative_change_rate_1: float  # ||g_rate1 - g_off|| / ||g_off||: 1.0 when it is all zero


@dataclass
class FeatureGradient:
    """The gradient that reaches the backbone's output (the frozen boundary)."""

    norm_with_dropout: float
    norm_without_dropout: float
    relative_change: float
    norm_rate_1: float


@dataclass
class DroppedColumns:
    """The gradient columns of the Dense layer before one Dropout, for its dropped units."""

    dropout: str
    dense: str
    # per sample (batches of one): the dropped units' columns must be exactly zero
    samples: int
    dropped_units_total: int
    max_abs_gradient_dropped_kernel_columns: float
    max_abs_gradient_dropped_bias: float
    kept_active_units_total: int
    kept_active_units_with_nonzero_gradient: int
    # the whole batch: a column is zero only for a unit silent for EVERY sample
    batch_units: int
    batch_units_dropped_for_every_sample: int
    batch_units_dropped_or_inactive_for_every_sample: int
    batch_zero_gradient_columns: int
    batch_zero_columns_match_silent_units: bool
    batch_mean_dropped_per_sample: float
    batch_units_dropped_somewhere_with_gradient: int


@dataclass
class FrozenGradientFacts:
    """What a training step of the full model differentiates: the head's variables, and a
    fine-tuned model's unfrozen blocks' (`unfrozen_layers`), nothing of a frozen layer."""

    backbone_variables: int
    backbone_trainable_variables: int
    full_model_trainable_variables: int
    full_model_trainable_variables_in_head: int
    unfrozen_layers: list[str] = field(default_factory=list)  # backbone layers fine-tuning trains
    frozen_layers_trainable_variables: int = 0  # trainable variables of other backbone layers


@dataclass
class Backward:
    """F2: gradients with a fixed mask, without dropout, and with rate 1."""

    batch: int
    variables: list[VariableGradient]
    feature_gradient: FeatureGradient
    rate_1_zero_before_last_dropout: bool
    rate_1_max_norm_before_last_dropout: float
    rate_1_variables_without_gradient_path: list[str]
    dropped_columns: list[DroppedColumns]
    frozen: FrozenGradientFacts | None = None

    @property
    def main(self) -> DroppedColumns:
        """The columns of the last Dropout's Dense (Dense(1024) in the seed's head)."""
        return self.dropped_columns[-1]

    @property
    def earlier(self) -> list[VariableGradient]:
        """Variables of layers before the last Dropout."""
        return [row for row in self.variables if row.before_last_dropout]

    def relative_change(self, variable: str) -> float | None:
        return next((r.relative_change for r in self.variables if r.variable == variable), None)


def _gradients(layers, x, targets, loss_fn, dropout_on, replace=None, only=None):
    """(gradient w.r.t. x, {layer/var: gradient}, per-layer outputs, variables without a
    gradient path) for one step; a missing gradient counts as zeros."""
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    variables = [
        (f"{layer.name}/{variable.name}", variable)
        for layer in layers
        for variable in layer.trainable_weights
        if only is None or layer.name in only
    ]
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = chain.run_chain(layers, x, dropout_on, replace)
        loss = loss_fn(targets, outputs[-1])
    grads = tape.gradient(loss, [x] + [v for _, v in variables])
    # None: no path from the loss (Dropout(1.0) returns zeros_like(x), cutting the graph).
    disconnected = [name for (name, _), g in zip(variables, grads[1:], strict=True) if g is None]
    by_name = {
        name: np.zeros(v.shape, np.float32) if g is None else np.asarray(g)
        for (name, v), g in zip(variables, grads[1:], strict=True)
    }
    x_grad = np.zeros(x.shape, np.float32) if grads[0] is None else np.asarray(grads[0])
    return x_grad, by_name, [np.asarray(o) for o in outputs], disconnected


def _norm(values: np.ndarray) -> float:
    return float(np.linalg.norm(values.astype(np.float64).ravel()))


def _preceding_dense(layers, index: int):
    for layer in reversed(layers[:index]):
        if hasattr(layer, "kernel"):
            return layer
    return None


def measure_backward(
    layers,
    features,
    labels,
    n_classes: int,
    backbone=None,
    per_sample: int = 8,
    unfrozen_layers: tuple[str, ...] = (),
) -> Backward:
    """Gradients with a fixed (replayed) mask, without dropout, and with rate 1
    (`unfrozen_layers`: the backbone layers a fine-tuned model trains)."""
    import keras

    loss_fn = chain.loss_function(n_classes)
    targets = chain.loss_targets(labels, n_classes)
    states = chain.snapshot(layers)
    input_on, grads_on, outputs_on, _ = _gradients(layers, features, targets, loss_fn, True)
    input_off, grads_off, _, _ = _gradients(layers, features, targets, loss_fn, False)
    stand_ins = {
        layer.name: keras.layers.Dropout(1.0, name=f"{layer.name}_rate_1")
        for layer in layers
        if chain.is_dropout(layer)
    }
    input_one, grads_one, _, cut = _gradients(layers, features, targets, loss_fn, True, stand_ins)

    names = [layer.name for layer in layers]
    last_dropout = max(i for i, layer in enumerate(layers) if chain.is_dropout(layer))
    rows = []
    for key in grads_on:
        layer_name = key.split("/")[0]
        off = grads_off[key]
        rows.append(
            VariableGradient(
                variable=key,
                layer=layer_name,
                before_last_dropout=names.index(layer_name) < last_dropout,
                norm_with_dropout=_norm(grads_on[key]),
                norm_without_dropout=_norm(off),
                relative_change=_norm(grads_on[key] - off) / max(_norm(off), 1e-30),
                norm_rate_1=_norm(grads_one[key]),
                relative_change_rate_1=_norm(grads_one[key] - off) / max(_norm(off), 1e-30),
            )
        )
    before = [row for row in rows if row.before_last_dropout]
    columns = []
    for index, layer in enumerate(layers):
        if not chain.is_dropout(layer):
            continue
        dense = _preceding_dense(layers, index)
        keep = chain.keep_mask(layer, outputs_on[index - 1].shape, states[layer.name])
        batch_check = _batch_columns(grads_on[f"{dense.name}/kernel"], keep, outputs_on[index - 1])
        sample_check = _per_sample_columns(
            layers, layer, dense, features[:per_sample], targets[:per_sample], loss_fn
        )
        columns.append(
            DroppedColumns(dropout=layer.name, dense=dense.name, **sample_check, **batch_check)
        )
    return Backward(
        batch=int(len(features)),
        variables=rows,
        feature_gradient=FeatureGradient(
            norm_with_dropout=_norm(input_on),
            norm_without_dropout=_norm(input_off),
            relative_change=_norm(input_on - input_off) / max(_norm(input_off), 1e-30),
            norm_rate_1=_norm(input_one),
        ),
        rate_1_zero_before_last_dropout=all(row.norm_rate_1 == 0.0 for row in before)
        and _norm(input_one) == 0.0,
        rate_1_max_norm_before_last_dropout=max(
            [row.norm_rate_1 for row in before] + [_norm(input_one)]
        ),
        rate_1_variables_without_gradient_path=cut,
        dropped_columns=columns,
        frozen=frozen_gradient_facts(backbone, layers, unfrozen_layers)
        if backbone is not None
        else None,
    )


def _per_sample_columns(layers, dropout, dense, features, targets, loss_fn) -> dict:
    """One sample per step: the dense layer's gradient columns of the dropped units."""
    max_kernel, max_bias, dropped_total, kept_active, kept_active_nonzero = 0.0, 0.0, 0, 0, 0
    index = layers.index(dropout)
    for i in range(len(features)):
        states = chain.snapshot(layers)
        _, grads, outputs, _ = _gradients(
            layers, features[i : i + 1], targets[i : i + 1], loss_fn, True, only={dense.name}
        )
        keep = chain.keep_mask(dropout, outputs[index - 1].shape, states[dropout.name])[0]
        kernel, bias = grads[f"{dense.name}/kernel"], grads[f"{dense.name}/bias"]
        dropped = ~keep
        dropped_total += int(dropped.sum())
        if dropped.any():
            max_kernel = max(max_kernel, float(np.abs(kernel[:, dropped]).max()))
            max_bias = max(max_bias, float(np.abs(bias[dropped]).max()))
        active = keep & (outputs[index - 1][0] > 0)
        kept_active += int(active.sum())
        kept_active_nonzero += int((np.abs(kernel[:, active]).max(axis=0) > 0).sum())
    return {
        "samples": int(len(features)),
        "dropped_units_total": dropped_total,
        "max_abs_gradient_dropped_kernel_columns": max_kernel,
        "max_abs_gradient_dropped_bias": max_bias,
        "kept_active_units_total": kept_active,
        "kept_active_units_with_nonzero_gradient": kept_active_nonzero,
    }


def _batch_columns(kernel_grad: np.ndarray, keep: np.ndarray, dense_out: np.ndarray) -> dict:
    """Whole batch: a column is 0 exactly when its unit is dropped or inactive for all."""
    silent = (~keep) | (dense_out <= 0)
    zero_columns = np.all(kernel_grad == 0, axis=0)
    return {
        "batch_units": int(keep.shape[1]),
        "batch_units_dropped_for_every_sample": int(np.all(~keep, axis=0).sum()),
        "batch_units_dropped_or_inactive_for_every_sample": int(np.all(silent, axis=0).sum()),
        "batch_zero_gradient_columns": int(zero_columns.sum()),
        "batch_zero_columns_match_silent_units": bool(
            np.array_equal(zero_columns, np.all(silent, axis=0))
        ),
        "batch_mean_dropped_per_sample": float((~keep).sum(axis=1).mean()),
        # dropped for some sample, yet a non-zero batch gradient (from the other samples)
        "batch_units_dropped_somewhere_with_gradient": int(
            (np.any(~keep, axis=0) & ~zero_columns).sum()
        ),
    }


def frozen_gradient_facts(backbone, layers, unfrozen_layers=()) -> FrozenGradientFacts:
    """What a training step of the full model differentiates: the head's variables and those
    of the backbone layers in `unfrozen_layers` (none for the seed's model)."""
    full, _, _ = chain.full_model(backbone, layers)
    head_ids = {id(v) for layer in layers for v in layer.weights}
    trainable = full.trainable_weights
    outside = sum(
        len(layer.trainable_weights)
        for layer in backbone.layers
        if layer.name not in set(unfrozen_layers)
    )
    return FrozenGradientFacts(
        backbone_variables=len(backbone.weights),
        backbone_trainable_variables=len(backbone.trainable_weights),
        full_model_trainable_variables=len(trainable),
        full_model_trainable_variables_in_head=sum(id(v) in head_ids for v in trainable),
        unfrozen_layers=list(unfrozen_layers),
        frozen_layers_trainable_variables=outside,
    )
