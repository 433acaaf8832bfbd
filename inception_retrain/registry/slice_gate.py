"""The promotion gate by slice: no slice may lose more than a set number of accuracy points
against the champion, measured paired on the same frozen test images.

A model whose overall score clears the champion's can still have broken a part of the data:
a class, a source folder, a format, a size bucket or a user slice (`evaluation.slices`).
`check_slices(champion_dir, evaluation, sliced, policy)` pairs, image by image, whether the
new model and the champion are right (`champion_predictions`: recorded on the same test
split, or the champion re-scored on the current one), and for each slice with at least
`policy.slice_min_images` paired test images takes the mean of new minus champion
correctness with a t interval. The decision is the project's one rule
(`evaluation.statistics.decide`) for "the slice is at least as good as the champion's, up to
`policy.max_slice_drop`":

    interval above -max_slice_drop   -> at least as good (holds)
    interval below -max_slice_drop   -> worse: the promotion is refused, naming the slice
    interval containing it            -> inconclusive: reported, not refused

The intervals are simultaneous over the slices tested (Bonferroni: confidence 1 - 0.05 / k
for k slices), so when no slice loses more than the margin, the chance that any is called
worse is at most 2.5% (one-sided), however many slices there are; the calibration by
simulation is in tests/test_data_checks_calibration.py and docs/data-checks.md. A slice
with fewer paired images is listed as too few and not gated. `max_slice_drop` 1 turns the
gate off.

    >>> gate = check_slices(champion_dir, evaluation, sliced, policy)
    >>> gate.refused, gate.reason
    (['source=camera-b'], 'slice source=camera-b lost 0.48 accuracy against the champion ...')
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel

from inception_retrain.evaluation.evaluate import Evaluation, read_test_predictions
from inception_retrain.evaluation.slices import SlicedMetrics, slice_members
from inception_retrain.evaluation.statistics import (
    FAILS,
    HOLDS,
    decide,
    paired_difference,
)
from inception_retrain.registry.champion_predictions import champion_test_predictions
from inception_retrain.registry.promotion_policy import PromotionPolicy

FAMILY_CONFIDENCE = 0.95
VERDICTS = {HOLDS: "at least as good", FAILS: "worse"}


class SliceGate(BaseModel):
    """The gate's verdict per slice, and which slices refuse the promotion."""

    rows: list[dict]
    refused: list[str]
    reason: str  # one line naming the refused slices ("" when none)
    how: str  # where the champion's per-image answers came from, or why the gate was skipped
    confidence: float  # of each slice's interval (simultaneous over the slices tested)


def _describe(row: dict, margin: float) -> str:
    return (
        f"slice {row['slice']} lost {-row['difference']:.2f} accuracy against the champion "
        f"({row['accuracy']:.2f} vs {row['champion_accuracy']:.2f} on {row['n']} paired test "
        f"images; interval [{row['low']:.2f}, {row['high']:.2f}] below -{margin:g})"
    )


def gate_rows(
    new_correct: dict[str, float],
    champion_correct: dict[str, float],
    members: dict[str, list[str]],
    policy: PromotionPolicy,
) -> tuple[list[dict], float]:
    """(one row per slice with its paired difference and verdict, the intervals'
    confidence): the decision of `check_slices` on per-image correctness (1.0 or 0.0)."""
    paired = {
        name: [cid for cid in ids if cid in new_correct and cid in champion_correct]
        for name, ids in members.items()
    }
    gated = [name for name, ids in paired.items() if len(ids) >= policy.slice_min_images]
    confidence = 1.0 - (1.0 - FAMILY_CONFIDENCE) / max(len(gated), 1)
    rows = []
    for name, ids in paired.items():
        row = {
            "slice": name,
            "n": len(ids),
            "accuracy": float(np.mean([new_correct[c] for c in ids])) if ids else None,
            "champion_accuracy": float(np.mean([champion_correct[c] for c in ids]))
            if ids
            else None,
            "difference": None,
            "low": None,
            "high": None,
            "verdict": "too few",
        }
        if name in gated:
            interval = paired_difference(
                {c: new_correct[c] for c in ids},
                {c: champion_correct[c] for c in ids},
                confidence,
            ).interval
            outcome = decide(interval, -policy.max_slice_drop).outcome
            row.update(
                difference=interval.estimate,
                low=interval.low,
                high=interval.high,
                verdict=VERDICTS.get(outcome, "inconclusive"),
            )
        rows.append(row)
    return rows, confidence


def check_slices(
    champion_dir: Path, evaluation: Evaluation, sliced: SlicedMetrics, policy: PromotionPolicy
) -> SliceGate:
    """Gate the promotion slice by slice (see the module docstring)."""
    champion, why = champion_test_predictions(champion_dir, evaluation)
    if champion is None:
        return SliceGate(rows=[], refused=[], reason="", how=f"not gated: {why}", confidence=0)
    new = read_test_predictions(evaluation.run_dir).to_pydict()
    label_of = dict(zip(new["content_id"], new["label_index"], strict=True))
    new_correct = {
        cid: float(p == label_of[cid])
        for cid, p in zip(new["content_id"], new["predicted_index"], strict=True)
    }
    champion_correct = {
        cid: float(p == label_of[cid])
        for cid, p in champion.predicted_of().items()
        if cid in label_of
    }
    rows, confidence = gate_rows(new_correct, champion_correct, slice_members(sliced), policy)
    refused = [row for row in rows if row["verdict"] == "worse"]
    return SliceGate(
        rows=rows,
        refused=[row["slice"] for row in refused],
        reason="; ".join(_describe(row, policy.max_slice_drop) for row in refused),
        how=champion.how,
        confidence=confidence,
    )
