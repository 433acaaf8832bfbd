"""`DataReference`: the data a run's data checks compare with, as stages hand it on.

The reference is the champion's training data (the run folder its version was exported
from), or, before any champion exists, the newest earlier run whose data was accepted
(`inception_retrain.runs.data_reference.find_reference` chooses). Its manifest says which
images it had, with which labels and properties; its backbone fingerprint says whether its
cached features can be compared with this run's at all (another backbone: "not comparable").

    >>> reference.describe()
    'champion v0003 (run 20261206-020000-3fa2b1)'
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict


class DataReference(BaseModel):
    """A reference run: its folder, manifest, backbone fingerprint and why it was chosen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_dir: Path
    manifest_path: Path
    backbone_fingerprint: str | None  # None: the run extracted no features
    role: Literal["champion", "previous-run"]
    version: str | None = None  # the champion's version
    note: str = ""  # why another reference than the champion, when there is one

    def describe(self) -> str:
        if self.role == "champion":
            return f"champion {self.version} (run {self.run_dir.name})"
        return f"previous run {self.run_dir.name}"
