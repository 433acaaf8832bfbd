"""`HeadSpec`: the trainable head on the frozen backbone, as plain data.

    Flatten -> Dense(units[0], relu) -> [Dropout] -> Dense(units[1], relu) -> [Dropout] -> output

`dropout_placement` says where the Dropout layers go: `after_dense2` (the seed's: one Dropout
after Dense(1024)), `after_both` (one after each Dense) or `none`. A rate of 0 is the same head
as `none`. The output is Dense(1, sigmoid) for two classes, Dense(K, softmax) otherwise; the
optimizer is RMSprop with `learning_rate`. The defaults are the seed's head, and this is the
only place they are written: the config, the head builder, the fit loop and the dropout sweep
all take a `HeadSpec`.

    >>> HeadSpec().rates
    (0.0, 0.2)
    >>> HeadSpec(dropout_rate=0.5, dropout_placement="after_both").rates
    (0.5, 0.5)
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DropoutPlacement = Literal["after_dense2", "after_both", "none"]
PLACEMENTS: tuple[DropoutPlacement, ...] = ("after_dense2", "after_both", "none")
PLACEMENT_WORDS = {"after_dense2": "after Dense({second})", "after_both": "after both Dense layers"}


def dropout_in_words(rate: float | None, placement: str | None, hidden_units=(512, 1024)) -> str:
    """A head's dropout as a reader says it, from a spec's plain fields (a stored report's).

    >>> dropout_in_words(0.2, "after_dense2")
    'Dropout(0.2) after Dense(1024)'
    >>> dropout_in_words(0.5, "none")
    'no dropout'
    """
    if not rate or placement == "none" or placement not in PLACEMENT_WORDS:
        return "no dropout"
    second = (hidden_units or (512, 1024))[1]
    return f"Dropout({rate:g}) " + PLACEMENT_WORDS[placement].format(second=second)


class HeadSpec(BaseModel):
    """Architecture and optimizer of the head (see module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden_units: tuple[int, int] = Field((512, 1024), description="Sizes of the two Dense layers.")
    dropout_rate: float = Field(
        0.2, ge=0.0, lt=1.0, description="Rate of the head's Dropout (below 1: 1 drops everything)."
    )
    dropout_placement: DropoutPlacement = Field(
        "after_dense2", description="Dropout after Dense(1024) (the seed), after both, or none."
    )
    learning_rate: float = Field(1e-4, gt=0.0, le=1.0, description="RMSprop learning rate.")

    @field_validator("hidden_units")
    @classmethod
    def _positive_units(cls, value: tuple[int, int]) -> tuple[int, int]:
        if any(u < 1 for u in value):
            raise ValueError("hidden units must be >= 1")
        return value

    @property
    def rates(self) -> tuple[float, float]:
        """The Dropout rate after Dense 1 and after Dense 2 (0.0: no Dropout layer there)."""
        rate = float(self.dropout_rate)
        if self.dropout_placement == "after_both":
            return (rate, rate)
        if self.dropout_placement == "after_dense2":
            return (0.0, rate)
        return (0.0, 0.0)

    @property
    def has_dropout(self) -> bool:
        return any(self.rates)

    def with_dropout(self, rate: float, placement: DropoutPlacement) -> HeadSpec:
        """The same head with another dropout rate and placement."""
        return self.model_copy(update={"dropout_rate": rate, "dropout_placement": placement})

    def describe(self) -> str:
        """E.g. 'Dense(512) -> Dense(1024) -> Dropout(0.2)'."""
        first, second = self.rates
        parts = [f"Dense({self.hidden_units[0]})"]
        parts += [f"Dropout({first:g})"] if first else []
        parts += [f"Dense({self.hidden_units[1]})"]
        parts += [f"Dropout({second:g})"] if second else []
        return " -> ".join(parts)
