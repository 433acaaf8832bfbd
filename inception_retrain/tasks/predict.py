"""Stage `predict-files`: a registered model's predictions for image files
(`inception_retrain.registry.predict`).

In one process `predict_files_task` is the whole stage. On a Dask cluster (flows/predict.py)
each shard of input files is a `predict-shard-<n>` task run on any worker (the model loaded
once per worker process), retried unless the failure is an expected one; the flow writes
the joined rows once (`write_predictions_task`).
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.registry.predict import predict_files, predict_shard, write_predictions
from inception_retrain.tasks.runtime import SHARD_RETRIES

predict_files_task = task(predict_files, name="predict-files", cache_policy=NO_CACHE)


@task(
    name="predict-shard",
    task_run_name="predict-shard-{index}",
    cache_policy=NO_CACHE,
    **SHARD_RETRIES.options(),
)
def predict_shard_task(model_dir: Path, files: list[str], index: int):
    return predict_shard(model_dir, files)


write_predictions_task = task(write_predictions, name="write-predictions", cache_policy=NO_CACHE)
