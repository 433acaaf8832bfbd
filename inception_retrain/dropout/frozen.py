"""F3, frozen means frozen: training leaves every backbone variable bitwise unchanged.

`measure_frozen` builds the seed's own model (backbone + a copy of the trained head), takes a
byte-exact snapshot of every backbone variable (kernels, BatchNorm gamma/beta AND moving
mean/variance), runs a few real `fit` steps on real images, and compares byte for byte. It
also checks that training happened (head variables moved), so "unchanged" is not vacuous.
Whatever `backbone` is passed is measured as is. A fine-tuned model's backbone comes with its
unfrozen blocks trainable (their Conv2D layers; BatchNormalization stays frozen) and
`optimizer` is its fine-tuning optimiser: only the variables that really are frozen must stay
bitwise unchanged (`backbone_variables_changed`), and the trainable ones are counted apart
(`backbone_trainable_variables_changed`); a frozen variable that changes flips the verdict.

`cache_training_facts` shows the pipeline's own training never touches the backbone at all:
the trained head has no backbone layer or variable, only the cached features as input, and
the backbone loaded now has exactly the weights the cache was computed with.

    frozen = measure_frozen(backbone, copy_head(head), images, labels, n_classes)
    frozen.backbone_variables_changed   # 0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inception_retrain.dropout import chain


@dataclass
class Frozen:
    """Backbone variables, byte for byte, before and after real fit steps of the full model."""

    fit_steps: int
    images: int
    backbone_variables: int  # every backbone variable (frozen or trainable)
    backbone_trainable_variables: int
    backbone_variables_changed: int  # frozen ones that changed: must be 0
    changed_examples: list[str]
    batchnorm_layers: int
    batchnorm_moving_statistics: int
    batchnorm_moving_statistics_changed: int
    head_variables: int
    head_variables_changed: int
    model_trainable_variables: int
    backbone_frozen_variables: int = 0  # the variables that must stay unchanged
    backbone_trainable_variables_changed: int = 0  # unfrozen blocks' variables that moved
    optimizer: str = "RMSprop (the head's)"


@dataclass
class CacheFacts:
    """The pipeline's own training: a head without backbone layers, on cached features."""

    head_layer_types: list[str]
    head_input_shape: list[int]
    cached_feature_shape: list[int]
    head_variables: int
    head_has_conv_or_batchnorm: bool
    head_input_is_cached_features: bool
    backbone_digest_matches_cache: bool | None = None


_BN_STATS = ("moving_mean", "moving_variance")


def _bytes(variable) -> tuple[str, tuple, bytes]:
    values = np.ascontiguousarray(variable.numpy())
    return values.dtype.str, values.shape, values.tobytes()


def measure_frozen(
    backbone,
    head_copy,
    images: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    learning_rate: float = 1e-4,
    batch_size: int = 4,
    epochs: int = 1,
    optimizer=None,
) -> Frozen:
    """Bitwise comparison of backbone variables around real `fit` steps of the full model.

    `head_copy` is trained here: pass a copy, not the head other measurements use; a
    trainable backbone is trained too. `optimizer` (a Keras optimizer; default: the head's
    RMSprop at `learning_rate`) compiles the full model.
    """
    import keras

    from inception_retrain.training.head import compile_head

    x = backbone.output
    for layer in chain.head_layers(head_copy):
        x = layer(x)
    model = keras.Model(backbone.input, x, name="seed_model")
    compile_head(model, n_classes, learning_rate)
    described = "RMSprop (the head's)"
    if optimizer is not None:
        model.compile(optimizer=optimizer, loss=model.loss, metrics=["accuracy"])
        described = type(optimizer).__name__

    trainable = {id(v) for v in backbone.trainable_weights}
    backbone_before = [(v.path, _bytes(v)) for v in backbone.weights]
    head_before = [_bytes(v) for v in head_copy.weights]
    model.fit(
        images,
        chain.loss_targets(labels, n_classes),
        batch_size=batch_size,
        epochs=epochs,
        shuffle=False,
        verbose=0,
    )
    changed, bn_changed, bn_total, moved = [], 0, 0, 0
    for variable, (path, before) in zip(backbone.weights, backbone_before, strict=True):
        is_stat = variable.path.endswith(_BN_STATS)
        bn_total += is_stat
        if _bytes(variable) == before:
            continue
        if id(variable) in trainable:
            moved += 1
            continue
        changed.append(path)
        bn_changed += is_stat
    head_changed = sum(
        _bytes(v) != before for v, before in zip(head_copy.weights, head_before, strict=True)
    )
    bn_layers = [layer for layer in backbone.layers if "BatchNormalization" in type(layer).__name__]
    return Frozen(
        fit_steps=epochs * -(-len(images) // batch_size),
        images=int(len(images)),
        backbone_variables=len(backbone_before),
        backbone_trainable_variables=len(backbone.trainable_weights),
        backbone_variables_changed=len(changed),
        changed_examples=changed[:5],
        batchnorm_layers=len(bn_layers),
        batchnorm_moving_statistics=int(bn_total),
        batchnorm_moving_statistics_changed=int(bn_changed),
        head_variables=len(head_before),
        head_variables_changed=int(head_changed),
        model_trainable_variables=len(model.trainable_weights),
        backbone_frozen_variables=len(backbone_before) - len(trainable),
        backbone_trainable_variables_changed=moved,
        optimizer=described,
    )


def cache_training_facts(head, feature_shape, backbone=None, cache_metadata=None) -> CacheFacts:
    """The trained head never contains the backbone; the cache came from this backbone."""
    layers = chain.head_layers(head)
    kinds = sorted({type(layer).__name__ for layer in layers})
    input_shape = [int(d) for d in head.input_shape[1:]]
    cached_shape = [int(d) for d in feature_shape]
    matches = None
    recorded = (cache_metadata or {}).get("weights_sha256")
    if backbone is not None and recorded:
        from inception_retrain.features.backbone import weights_digest

        matches = weights_digest(backbone) == recorded
    return CacheFacts(
        head_layer_types=kinds,
        head_input_shape=input_shape,
        cached_feature_shape=cached_shape,
        head_variables=len(head.weights),
        head_has_conv_or_batchnorm=any(
            "Conv" in kind or "BatchNormalization" in kind for kind in kinds
        ),
        head_input_is_cached_features=input_shape == cached_shape,
        backbone_digest_matches_cache=matches,
    )
