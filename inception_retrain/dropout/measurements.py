"""Everything the dropout report measured on one run, as typed values.

`measure.dropout_report` fills a `Measurements` (each field comes from the module named
beside it); the verdict rules (`mechanisms.py`, `effects.py`), the prose, the plots and the
report writer read it and nothing else. `as_json(value)` turns any of these dataclasses and
pydantic models into plain JSON values (NaN and infinities become None).

    m.forward.touched, m.backward.main.dropped_units_total, m.sweep.config(0.0, "none")
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from inception_retrain.dropout.backbone_reach import BackboneReach
from inception_retrain.dropout.backward import Backward
from inception_retrain.dropout.direct import ActivationOrder, NoiseShapes
from inception_retrain.dropout.evidence_spec import EvidenceSpec
from inception_retrain.dropout.forward import FitMasks, Forward
from inception_retrain.dropout.frozen import CacheFacts, Frozen
from inception_retrain.dropout.inference import Inference
from inception_retrain.dropout.sweep_summary import SweepSummary


@dataclass
class RunContext:
    """The run the report is about."""

    run_dir: str
    weights: str
    weights_description: str
    random_weights: bool
    layer: str
    image_size: int
    hidden_units: list[int]
    rate: float  # of the run's head
    placement: str
    placement_text: str
    inserted: bool  # the head had no Dropout: the seed's was inserted for measuring
    n_classes: int
    class_names: list[str]
    split_sizes: dict[str, int]
    mc_split: str
    backbone_dropout_layers: int
    equivalence_margin: float
    evidence: EvidenceSpec | None = None  # the deciding score and margins of effect claims
    fine_tuned: str = ""  # what fine-tuning trained, when the run's model is fine-tuned

    def dense(self, name: str) -> str:
        """'Dense(512)' for hidden_1, 'Dense(1024)' for hidden_2, else the name."""
        labels = {
            "hidden_1": f"Dense({self.hidden_units[0]})",
            "hidden_2": f"Dense({self.hidden_units[1]})",
        }
        return labels.get(name, name)


@dataclass
class Measurements:
    context: RunContext
    forward: Forward  # forward.py, F1
    fit_masks: FitMasks  # forward.py, F1 / C5
    backward: Backward  # backward.py, F2
    frozen: Frozen  # frozen.py, F3
    cache_facts: CacheFacts  # frozen.py, F3
    inference: Inference  # inference.py, F4
    activation_order: ActivationOrder  # direct.py, C2
    noise_shapes: NoiseShapes  # direct.py, C7
    sweep: SweepSummary  # sweep.py via flows.sweep: C1, C2, C4, F4, F5
    backbone_reach: BackboneReach | None = None  # backbone_reach.py, C6 in the backbone


def as_json(value):
    """JSON-safe copy of dataclasses, pydantic models, numpy values and containers."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, BaseModel):
        return as_json(value.model_dump())
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return as_json(value.tolist())
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value
