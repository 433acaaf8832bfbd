"""C6 inside the backbone: does the head's Dropout change the gradients of backbone layers?

Answer C6 ("all layers are affected through backpropagation") where fine-tuning makes it
measurable: on one batch of real training images and the model's weights, the frozen prefix's
features go through the top `block` (as the model trained it: with `--fine-tune`, its Conv2D
layers trainable and its BatchNormalization layers frozen; without, all frozen) and then the
head's layers. The loss's gradient with respect to every trainable variable of the block is
taken twice, with the head's Dropout on (one mask) and off, and each trainable layer gets
the relative change of its gradient, ||g_on - g_off|| / ||g_off||. A layer without trainable
variables has no gradient for Dropout to change: with the block frozen the measurement reports
no change anywhere in the backbone (the finding's flip). `steps` holds F3's real fit steps of
the same model (`frozen.measure_frozen`, its block trainable as trained): every frozen
variable stays bit-identical while the trainable ones move.

    reach = measure_backbone_reach(prefix_features, block, head_layers, labels, n_classes,
                                   model="fine-tuned")
    reach.changed, reach.min_relative_change     # e.g. 10, 0.031
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import numpy as np

from inception_retrain.dropout import chain
from inception_retrain.dropout.frozen import Frozen


@dataclass
class LayerGradient:
    """One trainable backbone layer's gradient with the head's Dropout on and off."""

    layer: str
    kind: str
    weights: int
    norm_with_dropout: float
    norm_without_dropout: float
    relative_change: float


@dataclass
class BackboneReach:
    """The head's Dropout against the gradients of the top block's layers."""

    model: str  # which model: "fine-tuned", "fine-tuned, not chosen" or "frozen backbone"
    blocks: list[str]
    images: int
    layers: list[LayerGradient]  # the block's trainable layers
    frozen_layers: list[str] = field(default_factory=list)  # the block's layers with frozen weights
    steps: Frozen | None = None  # F3's real fit steps of the same model: frozen bytes unchanged

    @property
    def trainable(self) -> int:
        return len(self.layers)

    @property
    def changed(self) -> int:
        return sum(row.relative_change > 0 for row in self.layers)

    @property
    def min_relative_change(self) -> float | None:
        return min((row.relative_change for row in self.layers), default=None)

    @property
    def median_relative_change(self) -> float | None:
        values = [row.relative_change for row in self.layers]
        return statistics.median(values) if values else None

    @property
    def max_relative_change(self) -> float | None:
        return max((row.relative_change for row in self.layers), default=None)


def _norm(values) -> float:
    return float(np.linalg.norm(np.asarray(values, np.float64).ravel()))


def _gradients(block, layers, x, targets, loss_fn, dropout_on: bool) -> list:
    import tensorflow as tf

    with tf.GradientTape() as tape:
        features = block(x, training=True)  # BatchNormalization frozen: inference mode
        outputs = chain.run_chain(layers, features, dropout_on)
        loss = loss_fn(targets, outputs[-1])
    grads = tape.gradient(loss, block.trainable_weights)
    return [
        np.zeros(v.shape, np.float32) if g is None else np.asarray(g)
        for v, g in zip(block.trainable_weights, grads, strict=True)
    ]


def measure_backbone_reach(
    prefix_features,
    block,
    layers,
    labels,
    n_classes: int,
    *,
    model: str,
    blocks: list[str],
    steps: Frozen | None = None,
) -> BackboneReach:
    """Per trainable layer of `block`, its gradient with the Dropout of `layers` (the head's,
    in order) on against off, on the same batch and weights (module docstring)."""
    loss_fn = chain.loss_function(n_classes)
    targets = chain.loss_targets(labels, n_classes)
    x = np.asarray(prefix_features, np.float32)
    states = chain.snapshot(layers)
    on = _gradients(block, layers, x, targets, loss_fn, True)
    chain.restore(layers, states)  # the caller's sequence of masks is undisturbed
    off = _gradients(block, layers, x, targets, loss_fn, False)
    index = {id(v): i for i, v in enumerate(block.trainable_weights)}
    rows, frozen = [], []
    for layer in block.layers:
        if layer.trainable_weights:
            own = [index[id(v)] for v in layer.trainable_weights]
            g_on = np.concatenate([on[i].ravel() for i in own])
            g_off = np.concatenate([off[i].ravel() for i in own])
            rows.append(
                LayerGradient(
                    layer=layer.name,
                    kind=type(layer).__name__,
                    weights=int(g_on.size),
                    norm_with_dropout=_norm(g_on),
                    norm_without_dropout=_norm(g_off),
                    relative_change=_norm(g_on - g_off) / max(_norm(g_off), 1e-30),
                )
            )
        elif layer.weights:
            frozen.append(layer.name)
    return BackboneReach(
        model=model,
        blocks=list(blocks),
        images=int(len(x)),
        layers=rows,
        frozen_layers=frozen,
        steps=steps,
    )
