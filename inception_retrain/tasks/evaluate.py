"""Stage `evaluate`: the run's model (the head, or the fine-tuned model when chosen) scored on
the test split (`inception_retrain.evaluation.evaluate`); its headline numbers are published
as the `metrics` table."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.data.manifest import Manifest
from inception_retrain.evaluation.augmentation_effect import AugmentationEffect
from inception_retrain.evaluation.evaluate import Evaluation, evaluate
from inception_retrain.evaluation.fine_tuning_effect import FineTuningEffect
from inception_retrain.features.feature_cache import FeatureCache
from inception_retrain.tasks.ui import publish_metrics
from inception_retrain.training.head import TrainedHead


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(
    manifest: Manifest,
    cache: FeatureCache,
    head: TrainedHead,
    run_dir: Path,
    augmentation: AugmentationEffect | None = None,
    fine_tuning: FineTuningEffect | None = None,
) -> Evaluation:
    evaluation = evaluate(manifest, cache, head, run_dir, augmentation, fine_tuning)
    publish_metrics(run_dir)
    return evaluation
