"""Every claim's verdicts: the rules of `mechanisms.py` and `effects.py`, in report order.

The claims, verdicts and kinds are defined in `claims.py`; each rule reads `Measurements`
only and returns `Finding`s (verdict, the rule that decided it, what would flip it, the
numbers). The prose that explains them lives in `prose.py`.

    entries = judge(measurements, EvidenceSpec())
    [finding.verdict for entry in entries for finding in entry.findings]
"""

from __future__ import annotations

from collections import Counter

from inception_retrain.dropout import effects, mechanisms, sweep_summary
from inception_retrain.dropout.claims import CLAIMS, ORDER, VERDICTS, Entry
from inception_retrain.dropout.evidence_spec import EvidenceSpec
from inception_retrain.dropout.measurements import Measurements
from inception_retrain.dropout.sweep import SEED_CELL


def judge(m: Measurements, evidence: EvidenceSpec) -> list[Entry]:
    """All twelve entries, in report order; `evidence`: the run's deciding score and margins."""
    units, context = m.context.hidden_units, m.context
    c2 = mechanisms.judge_c2(m.activation_order)
    relu_identical = all(
        o["relu"].identical for o in (m.activation_order.real, m.activation_order.standardised)
    )
    findings = {
        "C1": effects.judge_c1(m.sweep, evidence, units),
        "C2": [c2, effects.judge_c2_performance(m.sweep, evidence, units, relu_identical)],
        "C3": [mechanisms.judge_c3(m.forward, m.backward)],
        "C4": effects.judge_c4(
            m.sweep, evidence, units, context.layer, context.backbone_dropout_layers
        ),
        "C5": [mechanisms.judge_c5(m.forward, m.fit_masks, m.backward)],
        "C6": [mechanisms.judge_c6(m.forward, m.backward, m.frozen)]
        + ([mechanisms.judge_c6_backbone(m.backbone_reach, m.frozen)] if m.backbone_reach else []),
        "C7": [mechanisms.judge_c7(m.noise_shapes)],
        "F1": [mechanisms.judge_f1(m.forward, m.fit_masks)],
        "F2": [mechanisms.judge_f2(m.backward)],
        "F3": [mechanisms.judge_f3(m.frozen, m.cache_facts)],
        "F4": [
            mechanisms.judge_f4_determinism(m.inference),
            effects.judge_f4_uncertainty(m.sweep, evidence, units, m.inference),
        ],
        "F5": effects.judge_f5(m.sweep, evidence, units, f5_cell(context)),
    }
    return [Entry(key, CLAIMS[key], findings[key]) for key in ORDER]


def f5_cell(context) -> tuple[float, str]:
    """The dropout F5 tests: the run's own head's, or the seed's when it has none."""
    own = sweep_summary.effective(context.rate, context.placement)
    return SEED_CELL if own == sweep_summary.NO_DROPOUT else own


def tally(entries: list[Entry]) -> dict[str, int]:
    """How many findings got each verdict, in VERDICTS order."""
    counts = Counter(f.verdict for entry in entries for f in entry.findings)
    return {verdict: counts[verdict] for verdict in VERDICTS if counts[verdict]}


def finding(entries: list[Entry], claim: str, kind: str):
    """The finding of `kind` for `claim` (None if it has none)."""
    entry = next(e for e in entries if e.id == claim)
    return next((f for f in entry.findings if f.kind == kind), None)
