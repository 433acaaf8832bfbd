"""`TrainingSpec`: how the head is trained, as plain data.

    >>> spec = TrainingSpec()
    >>> spec.head.describe(), spec.epochs, spec.batch_size, spec.patience
    ('Dense(512) -> Dense(1024) -> Dropout(0.2)', 10, 32, 3)

`head` is the architecture and optimiser (`head_spec.HeadSpec`); `seed` fixes the initial
weights, the data order and the dropout masks; `patience` is early stopping on validation loss
in epochs (0: off); `device` is auto, cpu or gpu (`device.device_scope`), and
`mixed_precision` applies on a GPU only. Training data are held in memory when they fit
`memory_budget_mb`, else streamed from the cache. `standardize`: train on the features
standardised per feature with the training images' statistics, folded into the first Dense
layer when the head is saved (`standardize.py`); False in specs recorded before it existed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from inception_retrain.training.head_spec import HeadSpec

Device = Literal["auto", "cpu", "gpu"]


class TrainingSpec(BaseModel):
    """The head and the training loop's settings (see module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    head: HeadSpec = Field(default_factory=HeadSpec)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    patience: int = Field(3, ge=0)
    seed: int = Field(0, ge=0)
    device: Device = "auto"
    mixed_precision: bool = False
    memory_budget_mb: int = Field(2048, ge=1)
    standardize: bool = False
