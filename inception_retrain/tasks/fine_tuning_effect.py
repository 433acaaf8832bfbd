"""Stage `fine-tuning-effect` (only with --fine-tune): the head alone or the fine-tuned model,
chosen on validation, then compared image by image on test
(`inception_retrain.evaluation.fine_tuning_effect`). The flow goes on with the chosen model;
the evaluate stage puts the comparison into evaluation.json and the evaluation report."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.evaluation.fine_tuning_effect import measure_fine_tuning

fine_tuning_effect_task = task(
    measure_fine_tuning,
    name="fine-tuning-effect",
    cache_policy=NO_CACHE,
    timeout_seconds=2 * 3600,
)
