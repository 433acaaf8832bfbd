"""Stage `extract`: the manifest's images -> cached backbone features
(`inception_retrain.extraction`).

Only a failed weights download is retried; a retry resumes from the parts already cached.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.extraction import extract_features
from inception_retrain.tasks.runtime import retry_on_download_error

EXTRACT_TIMEOUT_S = 12 * 3600

extract_task = task(
    extract_features,
    name="extract",
    cache_policy=NO_CACHE,
    timeout_seconds=EXTRACT_TIMEOUT_S,
    retries=2,
    retry_delay_seconds=[30, 120],
    retry_condition_fn=retry_on_download_error,
)
