"""Stage `dropout-report`: which layers Dropout affects, measured on the run's model
(`inception_retrain.dropout.measure`); published as the `dropout-impact` markdown and the
`dropout-sweep` table."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.data.manifest import Manifest
from inception_retrain.dropout.evidence_spec import EvidenceSpec
from inception_retrain.dropout.measure import dropout_report
from inception_retrain.dropout.sweep_summary import SweepSummary
from inception_retrain.features.feature_cache import FeatureCache
from inception_retrain.tasks.ui import publish_dropout_impact
from inception_retrain.training.fine_tune import FineTunedModel
from inception_retrain.training.head import TrainedHead


@task(name="dropout-report", cache_policy=NO_CACHE)
def dropout_report_task(
    manifest: Manifest,
    cache: FeatureCache,
    head: TrainedHead,
    sweep: SweepSummary,
    run_dir: Path,
    evidence: EvidenceSpec,
    mc_passes: int,
    fine_tuned: FineTunedModel | None = None,
) -> Path:
    path = dropout_report(
        manifest,
        cache,
        head,
        sweep,
        run_dir,
        evidence=evidence,
        mc_passes=mc_passes,
        fine_tuned=fine_tuned,
    )
    publish_dropout_impact(run_dir)
    return path
