"""`EvidenceSpec`: how the dropout report decides its effect claims, fixed before the run.

The deciding per-image score of C1, C4, F5 and C2 (`metric`: Brier by default, which carries
more information per image than correctness and had more power in the calibration) and each
score's margin, the smallest difference that matters: a 95% interval inside it (90% for the
two one-sided tests) makes two configs "equivalent" (`evaluation.crossfit.verdict_of`).
The Brier and log-loss margins go with the accuracy margin through the head's measured
exchange rates (0.68 Brier and 2.0 nats per unit of accuracy: docs/evidence.md).
`auroc_margin` is F4's: how much better MC dropout must spot errors than the confidence.

    spec = EvidenceSpec()
    spec.margin("brier")            # 0.034
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Score = Literal["brier", "accuracy", "log_loss"]


class EvidenceSpec(BaseModel):
    """The deciding score and the margins of the dropout report's effect claims."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: Score = "brier"
    accuracy_margin: float = Field(0.05, gt=0.0, lt=1.0)
    brier_margin: float = Field(0.034, gt=0.0, lt=1.0)
    log_loss_margin: float = Field(0.10, gt=0.0, lt=10.0)
    auroc_margin: float = Field(0.05, gt=0.0, lt=1.0)

    def margin(self, metric: str) -> float:
        return {
            "accuracy": self.accuracy_margin,
            "brier": self.brier_margin,
            "log_loss": self.log_loss_margin,
        }[metric]
