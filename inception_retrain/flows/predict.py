"""The batch-prediction flow: score image files or folders with a registered model.

Deployable on its own (it needs only a model under WORKDIR/models, not the retrain flow):

    python -m inception_retrain.flows.predict   # serves "batch-predict" (no work pool)
    batch_predict(paths=["/data/inbox"], output="/data/out/predictions.parquet")

`model` is "champion" (resolved when the run starts, so a newer champion is picked up) or a
version name. Bad image files become error rows in the output, never a failed run; a missing
model or an empty input fails the run with a one-line message.

`cluster` ("local:N" or "tcp://HOST:PORT", parsed once, like `RetrainConfig.cluster`) scores
shards of `shard_files` input files as one task run each on a Dask cluster
(flows/cluster.py), each with the time-outs of `shard_policy` (flows/shards.py); the output
is the same table, written once by the flow. Inputs may be local paths or URIs
(s3://bucket/prefix).
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from inception_retrain.flows.cluster import dask_cluster, task_runner
from inception_retrain.flows.shards import run_shards
from inception_retrain.plumbing.cluster_spec import Cluster, ClusterSpec
from inception_retrain.plumbing.shard_policy import ShardPolicy
from inception_retrain.registry.predict import check_output, find_inputs
from inception_retrain.registry.versions import resolve_model
from inception_retrain.tasks.predict import (
    predict_files_task,
    predict_shard_task,
    write_predictions_task,
)

SHARD_FILES = 256


@flow(name="batch-predict", log_prints=True)
def batch_predict(
    paths: list[str],
    output: str = "predictions.csv",
    model: str = "champion",
    workdir: str = "workdir",
    cluster: Cluster | None = None,
    shard_files: int = SHARD_FILES,
    shard_policy: ShardPolicy | None = None,
) -> dict:
    """Predict every image under `paths` with `model`; write `output` (.csv or .parquet)."""
    logger = get_run_logger()
    model_dir = resolve_model(workdir, model)
    logger.info("model %s: %s", model, model_dir)
    if cluster is not None:
        policy = shard_policy or ShardPolicy()
        summary = _predict_on_cluster(model_dir, paths, Path(output), cluster, shard_files, policy)
    else:  # called, not submitted: TensorFlow runs on the flow's main thread
        summary = predict_files_task(model_dir, paths, Path(output))
    logger.info(
        "%d images, %d failed -> %s", summary["n_files"], summary["n_failed"], summary["output"]
    )
    return summary


@flow(name="predict-shards")
def predict_shards(
    model_dir: Path, paths: list[str], output: Path, shard_files: int, policy: ShardPolicy
) -> dict:
    inputs = find_inputs(paths)
    shards = inputs.shards(max(1, shard_files))
    get_run_logger().info("%d files in %d shards", len(inputs.files), len(shards))
    shard_task = predict_shard_task.with_options(retries=policy.retries)
    rows = run_shards(
        lambda indexed: shard_task.submit(model_dir, indexed[1], indexed[0]),
        list(enumerate(shards)),
        policy,
        name=lambda indexed: indexed[0],
    )
    return write_predictions_task(model_dir, inputs, rows, output)


def _predict_on_cluster(
    model_dir, paths, output, cluster: ClusterSpec, shard_files: int, policy: ShardPolicy
) -> dict:
    check_output(output)
    with dask_cluster(cluster) as address:
        runner = task_runner(address)
        return predict_shards.with_options(task_runner=runner)(
            model_dir, paths, output, shard_files, policy
        )


if __name__ == "__main__":
    batch_predict.serve(name="batch-predict")
