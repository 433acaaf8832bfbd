"""`DataContract` and `DataCheckSpec`: what the data checks look for, and how hard they look.

A data contract is a TFDV-style schema for image folders: one severity per check, as TFDV
gives each anomaly type a severity. A finding of a check whose severity is `block` stops the
run before training; `warn` reports it (data_report.html, `runs ls`, the Prefect artifact)
and goes on; `off` does not run the check at all (a statistical check set off leaves the
Holm family, so the others gain power).

    >>> contract = DataContract(class_added="block", brightness="off")
    >>> contract.severity("features:cats"), contract.severity("class-added")
    ('warn', 'block')

The checks, by name (`inception_retrain.data.contract` and `.evaluation.drift` run them):

| check | finds | default |
| --- | --- | --- |
| class-missing | a class of the reference has no valid image now | block |
| class-added | a class the reference did not have | warn |
| class-size | a class with fewer than `min_images_per_class` valid images | block |
| label-conflict | content ids whose label differs from the reference's | warn |
| class-balance | a changed class mix (chi-square, exact conditional p-value) | warn |
| short-side, aspect-ratio, brightness | a changed distribution (KS, permutation p-value) | warn |
| format, mode | a changed mix of file formats / channels (chi-square, exact) | warn |
| features | drift of the cached mixed7 features, overall and per class (MMD) | warn |

`DataCheckSpec` carries the contract with the statistical settings: the family-wise false
alarm rate `alpha` (Holm over every statistical check), the permutations, the minimum sizes
below which a check says "too few to test", the cap on each group (larger groups are
subsampled with `seed`), and `seed` itself (the same seed gives the same p-values).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["block", "warn", "off"]
SEVERITIES = ("block", "warn", "off")


class DataContract(BaseModel):
    """One severity per check (see the module docstring), and the per-class minimum."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_images_per_class: int = Field(
        10, ge=0, description="Fewest valid images a class may have (all splits)."
    )
    class_missing: Severity = Field(
        "block", description="A class of the reference has no valid image."
    )
    class_added: Severity = Field("warn", description="A class the reference did not have.")
    class_size: Severity = Field(
        "block", description="A class has fewer than --contract-min-images-per-class images."
    )
    label_conflict: Severity = Field(
        "warn", description="Images (same content) labelled otherwise than in the reference."
    )
    class_balance: Severity = Field("warn", description="The class mix of the new images.")
    short_side: Severity = Field("warn", description="The new images' short sides.")
    aspect_ratio: Severity = Field("warn", description="The new images' aspect ratios.")
    format: Severity = Field("warn", description="The new images' file formats.")
    mode: Severity = Field("warn", description="The new images' channels (RGB, L, RGBA, ...).")
    brightness: Severity = Field("warn", description="The new images' mean brightness.")
    features: Severity = Field(
        "warn", description="Drift of the new images' cached features, overall and per class."
    )

    def severity(self, check: str) -> str:
        """The severity of check `check` ("features:<class>" is the features' one)."""
        field = check.split(":", 1)[0].replace("-", "_")
        return getattr(self, field)


class DataCheckSpec(BaseModel):
    """The contract and the statistical settings of the data checks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    contract: DataContract = DataContract()
    alpha: float = Field(0.05, gt=0.0, lt=0.5)
    permutations: int = Field(999, ge=19, le=99_999)
    min_new: int = Field(10, ge=2)
    min_reference: int = Field(20, ge=2)
    max_images: int = Field(1000, ge=20)
    seed: int = Field(0, ge=0)
