"""Stage `augmentation-effect` (only with --augment-views > 0): the head trained without and
with the run's augmented views, paired over seeds (`evaluation.augmentation_effect`).
The evaluate stage puts the result into evaluation.json and the evaluation report."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.evaluation.augmentation_effect import measure_effect
from inception_retrain.tasks.runtime import RETRY_ONCE

augmentation_effect_task = task(
    measure_effect,
    name="augmentation-effect",
    cache_policy=NO_CACHE,
    timeout_seconds=6 * 3600,
    **RETRY_ONCE.options(),
)
