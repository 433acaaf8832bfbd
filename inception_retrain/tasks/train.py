"""Stage `train`: the head fitted on cached features (`inception_retrain.training.train`).

Retried once unless the failure is an expected one; the retry resumes from the training's
last checkpoint.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.tasks.runtime import RETRY_ONCE
from inception_retrain.training.train import train_head

TRAIN_TIMEOUT_S = 6 * 3600

train_task = task(
    train_head,
    name="train",
    cache_policy=NO_CACHE,
    timeout_seconds=TRAIN_TIMEOUT_S,
    **RETRY_ONCE.options(),
)
