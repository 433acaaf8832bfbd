"""`BackboneSpec`: which frozen backbone turns images into features, as plain data.

The weights (`imagenet`, a weights file, or `random[:SEED]`: `weights.parse_weights`), the
InceptionV3 layer the backbone ends at, and the square input size in pixels. The extraction
stage records the spec in the `FeatureCache` it hands on, so every later stage that needs the
backbone again (the dropout report's full model, export, the evaluation's lineage) rebuilds
exactly the backbone that made the cached features, from the artifact alone.

    >>> spec = BackboneSpec(weights="random:3")
    >>> spec.layer, spec.image_size, spec.weights_source.is_random
    ('mixed7', 150, True)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from inception_retrain.features.weights import WeightsSource, parse_weights
from inception_retrain.plumbing.errors import ConfigError

# The InceptionV3 block outputs a backbone can be cut at (Keras numbers its other layers per
# process, so only these names are stable), bottom first.
BACKBONE_LAYERS = tuple(f"mixed{i}" for i in range(11))


class BackboneSpec(BaseModel):
    """The frozen backbone: weights, cut layer and input size (see module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: str = "random:0"
    layer: str = "mixed7"
    image_size: int = 150

    @property
    def weights_source(self) -> WeightsSource:
        return parse_weights(self.weights)


def _known(name: str) -> str:
    if name not in BACKBONE_LAYERS:
        raise ConfigError(
            f"unknown block '{name}': InceptionV3's blocks are {', '.join(BACKBONE_LAYERS)}"
        )
    return name


def prefix_layer(block: str) -> str:
    """The block output the prefix ends at: the one below `block` (mixed7 -> mixed6)."""
    index = BACKBONE_LAYERS.index(_known(block))
    if index == 0:
        raise ConfigError(
            "mixed0 cannot be fine-tuned: the layers below it end in no block output to "
            "cache; choose mixed1 or above"
        )
    return BACKBONE_LAYERS[index - 1]


def unfrozen_blocks(block: str, layer: str) -> tuple[str, ...]:
    """The blocks fine-tuning `block` unfreezes under a backbone cut at `layer`."""
    first, last = BACKBONE_LAYERS.index(_known(block)), BACKBONE_LAYERS.index(_known(layer))
    if first > last:
        raise ConfigError(
            f"{block} is above --layer {layer}: only blocks of the cut backbone can be "
            f"fine-tuned ({BACKBONE_LAYERS[1]}..{layer})"
        )
    return BACKBONE_LAYERS[first : last + 1]
