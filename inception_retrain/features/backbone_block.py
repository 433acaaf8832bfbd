"""The backbone cut in two for fine-tuning: the frozen prefix, and the block(s) above it.

`--fine-tune mixed7` with `--layer mixed7` unfreezes the block `mixed7` (the 32 layers after
`mixed6`); `--fine-tune mixed6` unfreezes `mixed6` and `mixed7`. The prefix ends at the block
output below the first unfrozen block (`prefix_layer`), so it can be cached like any cut
(`BackboneSpec(layer=prefix_layer(block))`), and fine-tuning trains `block_model`: a stand-alone
copy of the unfrozen layers, from the prefix's features to `--layer`'s.

    >>> prefix_layer("mixed7"), unfrozen_blocks("mixed6", "mixed7")   # backbone_spec
    ('mixed6', ('mixed6', 'mixed7'))
    >>> block = load_block("random:0", "mixed6", "mixed7", 150)  # (7, 7, 768) -> (7, 7, 768)
    >>> backbone = backbone_with_block("random:0", "mixed7", 150, block)  # flat, frozen

What a block copy is:
  * fresh layers built from the originals' configs, with the originals' weights: nothing is
    shared with the backbone it came from, so training the block leaves that backbone as it
    was;
  * stable layer names: Keras numbers auto-named layers per process (`conv2d_64` in one,
    `conv2d_158` in the next), so every layer but the block outputs gets
    `<its block>_<kind>_<k>` (`mixed7_conv2d_0` ... `mixed7_conv2d_9`), numbered in the
    backbone's own layer order. Reports name trained layers by these names, and a block's
    weights find their layers in any process's backbone by them (`backbone_with_block`);
  * BatchNormalization layers are never trainable (`trainable=False`: Keras 3 then runs
    them in inference mode even under `fit`, so their moving statistics never change, as the
    Keras transfer-learning guide does); every other layer is trainable when `trainable`.
"""

from __future__ import annotations

import re

from inception_retrain.features.backbone import load_backbone, load_inception
from inception_retrain.features.backbone_spec import BACKBONE_LAYERS, prefix_layer

BLOCK_MODEL_NAME = "block"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower().replace("2_d", "2d")


def layer_range(full, prefix: str, layer: str) -> list:
    """The layers of `full` after `prefix` up to and including `layer`, in its order."""
    names = [each.name for each in full.layers]
    return full.layers[names.index(prefix) + 1 : names.index(layer) + 1]


def stable_names(layers) -> list[str]:
    """A name per layer of a run of whole blocks (in backbone order) that does not depend
    on the process: block outputs keep theirs, the others become `<block>_<kind>_<k>`."""
    owners, owner = [], None
    for each in reversed(layers):  # a layer belongs to the next block output above it
        if each.name in BACKBONE_LAYERS:
            owner = each.name
        owners.append(owner)
    owners.reverse()
    counts: dict[tuple[str, str], int] = {}
    names = []
    for each, block in zip(layers, owners, strict=True):
        if each.name in BACKBONE_LAYERS or each.name.startswith(f"{block}_"):
            names.append(each.name)  # mixed7, and mixed9's own mixed9_0 / mixed9_1
            continue
        kind = _snake(type(each).__name__)
        k = counts.get((block, kind), 0)
        counts[block, kind] = k + 1
        names.append(f"{block}_{kind}_{k}")
    return names


def _is_batchnorm(layer) -> bool:
    import keras

    return isinstance(layer, keras.layers.BatchNormalization)


def block_model(full, prefix: str, layer: str, trainable: bool = True):
    """A copy of `full`'s layers after `prefix` up to `layer`, as one Keras model from the
    prefix's features to `layer`'s (see the module docstring)."""
    import keras
    from keras import tree

    start = full.get_layer(prefix).output
    inputs = keras.Input(shape=tuple(start.shape[1:]), name="prefix_features")
    tensors = {id(start): inputs}
    originals = layer_range(full, prefix, layer)
    for original, name in zip(originals, stable_names(originals), strict=True):
        config = {**original.get_config(), "name": name}
        copy = type(original).from_config(config)
        outputs = copy(tree.map_structure(lambda t: tensors[id(t)], original.input))
        copy.set_weights(original.get_weights())
        copy.trainable = trainable and not _is_batchnorm(copy)
        tensors[id(original.output)] = outputs
    return keras.Model(inputs, tensors[id(full.get_layer(layer).output)], name=BLOCK_MODEL_NAME)


def load_block(weights: str, prefix: str, layer: str, image_size: int, trainable: bool = True):
    """`block_model` of the InceptionV3 with `weights` at `image_size`."""
    return block_model(load_inception(weights, image_size), prefix, layer, trainable)


def trainable_layers(block) -> list[str]:
    """The names of the layers of `block` that hold trainable weights."""
    return [each.name for each in block.layers if each.trainable_weights]


def backbone_with_block(weights: str, layer: str, image_size: int, block, trainable: bool = False):
    """The backbone cut at `layer` (`load_backbone`), with `block`'s weights in its top
    layers: the backbone a fine-tuned model runs, as one flat model. Frozen, unless
    `trainable`: then each of those layers is as trainable as in `block`."""
    backbone = load_backbone(weights, layer, image_size)
    if trainable:  # the model's own flag hides every layer's weights from trainable_weights
        backbone.trainable = True  # (and sets every layer's): freeze them again, one by one
        for each in backbone.layers:
            each.trainable = False
    targets = layer_range(backbone, _prefix_of(block), layer)
    for target, name in zip(targets, stable_names(targets), strict=True):
        source = block.get_layer(name)
        target.set_weights(source.get_weights())
        target.trainable = trainable and source.trainable
    return backbone


def unfrozen_layers(backbone, block) -> list[str]:
    """The names, in a flat `backbone`, of the layers that `block` trains."""
    targets = layer_range(backbone, _prefix_of(block), backbone.layers[-1].name)
    names = stable_names(targets)
    trained = set(trainable_layers(block))
    return [each.name for each, name in zip(targets, names, strict=True) if name in trained]


def _prefix_of(block) -> str:
    """The block output `block` starts from: the one below its lowest block output."""
    outputs = [each.name for each in block.layers if each.name in BACKBONE_LAYERS]
    lowest = min(outputs, key=BACKBONE_LAYERS.index)
    return prefix_layer(lowest)


def prefix_model(backbone, prefix: str):
    """The part of a flat backbone up to `prefix` (it shares the backbone's layers)."""
    import keras

    return keras.Model(backbone.input, backbone.get_layer(prefix).output, name=f"to_{prefix}")
