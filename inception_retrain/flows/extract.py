"""Extraction on a Dask cluster, as a subflow: plan, one task run per shard, finish.

    cache = run_extraction(manifest, config.extraction, run_dir, address)  # flows.cluster

`extract-plan` runs on the flow's process (it fingerprints the backbone and checks the
cache), each `extract-shard-<n>` on whichever worker Dask picks, and `extract-finish` writes
extract.json once every shard is done. A worker that dies mid-shard loses only that shard:
Dask runs it again on another worker, and the shard rewrites the same content-named part.
With `address=None` the retrain flow calls the one-process `extract` stage instead.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, unmapped

from inception_retrain.data.manifest import Manifest
from inception_retrain.features.extraction_spec import ExtractionSpec
from inception_retrain.features.feature_cache import FeatureCache
from inception_retrain.flows.cluster import task_runner
from inception_retrain.plumbing.cluster_spec import ClusterSpec
from inception_retrain.tasks.extract import (
    extract_shard_task,
    finish_extract_task,
    plan_extract_task,
)


@flow(name="extract-shards", log_prints=True)
def extract_shards(
    manifest: Manifest, spec: ExtractionSpec, run_dir: Path, address: str, cluster: str
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
    futures = extract_shard_task.map(shard=plan.shards, job=unmapped(plan.job))
    results = [future.result() for future in futures]
    return finish_extract_task(plan, results, manifest, run_dir, cluster)


def run_extraction(
    manifest: Manifest,
    spec: ExtractionSpec,
    run_dir: Path,
    address: str,
    cluster: ClusterSpec | None = None,
) -> FeatureCache:
    """`extract_shards` as a subflow whose task runner is the cluster at `address`
    (`cluster`: the setting that made it, for the report; default: the address)."""
    return extract_shards.with_options(task_runner=task_runner(address))(
        manifest, spec, run_dir, address, cluster.address if cluster else address
    )
