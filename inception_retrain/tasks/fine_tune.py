"""Stage `fine-tune` (only with --fine-tune): the top block(s) trained with the head on the
cached prefix (`inception_retrain.training.fine_tune`).

Retried once unless the failure is an expected one; the retry resumes from the fine-tuning's
last checkpoint.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.tasks.runtime import RETRY_ONCE
from inception_retrain.training.fine_tune import fine_tune

FINE_TUNE_TIMEOUT_S = 12 * 3600

fine_tune_task = task(
    fine_tune,
    name="fine-tune",
    cache_policy=NO_CACHE,
    timeout_seconds=FINE_TUNE_TIMEOUT_S,
    **RETRY_ONCE.options(),
)
