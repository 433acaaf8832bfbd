"""Stage `extract`: the manifest's images -> cached backbone features
(`inception_retrain.features.extraction`).

In one process, `extract_task` is the whole stage. Only a failed weights download is
retried; a retry resumes from the parts already cached.

On a Dask cluster (flows/extract.py) the stage is three kinds of task runs:
`extract-plan` (the flow's process: fingerprint, cache check, shards),
`extract-shard-<n>` (one per shard, on any worker: `feature_compute.compute_shard`, retried
unless the failure is an expected one; a retry rewrites the same part; no timeout: Prefect
cannot interrupt a task in a Dask worker's thread, and a lost worker is Dask's to handle) and
`extract-finish` (the report). Shards take their thread count from the Dask worker.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.features.extraction import (
    extract_features,
    finish_extraction,
    plan_extraction,
)
from inception_retrain.features.feature_compute import Shard, ShardJob, ShardResult, compute_shard
from inception_retrain.tasks.runtime import DOWNLOAD_RETRIES, SHARD_RETRIES, dask_worker_threads

EXTRACT_TIMEOUT_S = 12 * 3600

extract_task = task(
    extract_features,
    name="extract",
    cache_policy=NO_CACHE,
    timeout_seconds=EXTRACT_TIMEOUT_S,
    **DOWNLOAD_RETRIES.options(),
)

plan_extract_task = task(
    plan_extraction,
    name="extract-plan",
    cache_policy=NO_CACHE,
    timeout_seconds=EXTRACT_TIMEOUT_S,
    **DOWNLOAD_RETRIES.options(),
)


@task(
    name="extract-shard",
    task_run_name="extract-shard-{shard.index}",
    cache_policy=NO_CACHE,
    **SHARD_RETRIES.options(),
)
def extract_shard_task(shard: Shard, job: ShardJob) -> ShardResult:
    return compute_shard(shard, job, threads=dask_worker_threads())


finish_extract_task = task(
    finish_extraction, name="extract-finish", cache_policy=NO_CACHE, timeout_seconds=1800
)
