"""`PromotionPolicy`: when a challenger becomes champion, and which registry it joins.

    >>> policy = PromotionPolicy(models_dir="/data/work/models")
    >>> policy.metric, policy.tolerance
    ('roc_auc', 0.0)

A challenger is promoted when its `metric` on the test split (higher is better;
`neg_log_loss` is minus the log loss) is at least the champion's minus `tolerance`
(`promotion.decide`), and no slice of the test split (class, source folder, format, size
bucket, user slice) is shown to lose more than `max_slice_drop` accuracy against the
champion, paired on the same images (`slice_gate`; slices with fewer than
`slice_min_images` paired test images are not gated; `max_slice_drop` 1 turns the gate
off). `models_dir` is the registry (`versions.models_dir(workdir)`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PromotionMetric = Literal["roc_auc", "pr_auc", "accuracy", "f1", "neg_log_loss"]


class PromotionPolicy(BaseModel):
    """The promotion rule's metric and tolerance, and the registry's folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models_dir: Path
    metric: PromotionMetric = "roc_auc"
    tolerance: float = Field(0.0, ge=0.0, le=1.0)
    max_slice_drop: float = Field(0.10, ge=0.0, le=1.0)
    slice_min_images: int = Field(10, ge=2)

    @property
    def gates_slices(self) -> bool:
        return self.max_slice_drop < 1.0
