"""Extraction on a Dask cluster, as a subflow: plan, one task run per shard, finish.

    cache = run_extraction(manifest, config.extraction, run_dir, address)  # flows.cluster

`extract-plan` runs on the flow's process (it fingerprints the backbone and checks the
cache), each `extract-shard-<n>` on whichever worker Dask picks, and `extract-finish` writes
extract.json once every shard is done. The flow waits on the shards with their time-outs
(`flows/shards.py`, `ShardPolicy`): a worker that dies mid-shard loses only that shard (Dask
runs it again on another worker, and the shard rewrites the same content-named part); a shard
that hangs is cancelled, its worker replaced and the shard run again; a lost scheduler ends
the run at once with one line, and a rerun computes only the images not yet cached.
With `address=None` the retrain flow calls the one-process `extract` stage instead.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from inception_retrain.data.manifest import Manifest
from inception_retrain.features.extraction_spec import ExtractionSpec
from inception_retrain.features.feature_cache import FeatureCache
from inception_retrain.flows.cluster import task_runner
from inception_retrain.flows.shards import run_shards
from inception_retrain.plumbing.cluster_spec import ClusterSpec
from inception_retrain.plumbing.shard_policy import ShardPolicy
from inception_retrain.tasks.extract import (
    extract_shard_task,
    finish_extract_task,
    plan_extract_task,
)


@flow(name="extract-shards", log_prints=True)
def extract_shards(
    manifest: Manifest,
    spec: ExtractionSpec,
    run_dir: Path,
    address: str,
    cluster: str,
    policy: ShardPolicy | None = None,
) -> FeatureCache:
    """Every missing image's features, computed shard by shard on the cluster."""
    plan = plan_extract_task(manifest, spec)
    get_run_logger().info(
        "extract: %d images and %d views to compute in %d shards of up to %d rows on %s "
        "(%d images cached)",
        plan.todo,
        plan.view_todo,
        len(plan.shards),
        spec.shard_rows,
        address,
        plan.images - plan.todo,
    )
    policy = policy or ShardPolicy()
    shard_task = extract_shard_task.with_options(retries=policy.retries)
    results = run_shards(
        lambda shard: shard_task.submit(shard, plan.job),
        plan.shards,
        policy,
        name=lambda shard: shard.index,
    )
    return finish_extract_task(plan, results, manifest, run_dir, cluster)


def run_extraction(
    manifest: Manifest,
    spec: ExtractionSpec,
    run_dir: Path,
    address: str,
    cluster: ClusterSpec | None = None,
    policy: ShardPolicy | None = None,
) -> FeatureCache:
    """`extract_shards` as a subflow whose task runner is the cluster at `address`
    (`cluster`: the setting that made it, for the report; default: the address), each shard
    under `policy` (default `ShardPolicy()`)."""
    return extract_shards.with_options(task_runner=task_runner(address))(
        manifest, spec, run_dir, address, cluster.address if cluster else address, policy
    )
