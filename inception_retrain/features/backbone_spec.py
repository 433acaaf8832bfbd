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


class BackboneSpec(BaseModel):
    """The frozen backbone: weights, cut layer and input size (see module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: str = "random:0"
    layer: str = "mixed7"
    image_size: int = 150

    @property
    def weights_source(self) -> WeightsSource:
        return parse_weights(self.weights)
