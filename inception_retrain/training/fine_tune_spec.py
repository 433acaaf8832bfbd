"""`FineTuneSpec`: which blocks fine-tuning unfreezes and how it trains them, as plain data.

After the head trains, `block` and every block above it up to `layer` (the backbone's cut)
train together with the head, starting from the trained head, on features cached at the
block output below `block` (`prefix`). The optimiser is SGD with momentum (the Machine
Learning Practica's recipe for this model: learning rate 1e-5, momentum 0.9) or Adam (the
Keras transfer-learning guide's, 1e-5); early stopping on validation loss with `patience`
epochs (0: off) restores the best weights. Batch size, seed and device are the head's
(`TrainingSpec`).

    >>> spec = FineTuneSpec(block="mixed7", layer="mixed7")
    >>> spec.prefix, spec.blocks, spec.describe_optimizer()
    ('mixed6', ('mixed7',), 'SGD(learning_rate=1e-05, momentum=0.9)')
    >>> FineTuneSpec(block="mixed8", layer="mixed7")   # ValidationError: above --layer
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from inception_retrain.features.backbone_spec import prefix_layer, unfrozen_blocks

FineTuneOptimizer = Literal["sgd", "adam"]


class FineTuneSpec(BaseModel):
    """The unfrozen blocks and their training (see module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    block: str = "mixed7"
    layer: str = "mixed7"
    optimizer: FineTuneOptimizer = "sgd"
    learning_rate: float = Field(1e-5, gt=0.0, le=1.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    epochs: int = Field(10, ge=1)
    patience: int = Field(3, ge=0)

    @model_validator(mode="after")
    def _block_below_layer(self) -> FineTuneSpec:
        prefix_layer(self.block)
        unfrozen_blocks(self.block, self.layer)
        return self

    @property
    def prefix(self) -> str:
        """The block output whose features fine-tuning reads from the cache."""
        return prefix_layer(self.block)

    @property
    def blocks(self) -> tuple[str, ...]:
        return unfrozen_blocks(self.block, self.layer)

    def describe_optimizer(self) -> str:
        if self.optimizer == "sgd":
            return f"SGD(learning_rate={self.learning_rate:g}, momentum={self.momentum:g})"
        return f"Adam(learning_rate={self.learning_rate:g})"

    def make_optimizer(self):
        """A new Keras optimizer as this spec says."""
        import keras

        if self.optimizer == "sgd":
            return keras.optimizers.SGD(learning_rate=self.learning_rate, momentum=self.momentum)
        return keras.optimizers.Adam(learning_rate=self.learning_rate)
