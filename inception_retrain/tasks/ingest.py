"""Stage `ingest`: a data source -> a validated manifest (`inception_retrain.data.ingest`).

A tfds source is downloaded by its own task run, `materialise-tfds`, retried with backoff on
download errors; local validation is deterministic, so `ingest` itself is not retried. The
skipped files are published as the `skipped-files` table, also when ingest rejects the data.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.data.ingest import ingest
from inception_retrain.data.ingest_spec import IngestSpec
from inception_retrain.data.manifest import Manifest
from inception_retrain.data.tfds_source import materialise_tfds
from inception_retrain.tasks.runtime import DOWNLOAD_RETRIES
from inception_retrain.tasks.ui import publish_ingest

materialise_tfds_task = task(
    materialise_tfds,
    name="materialise-tfds",
    cache_policy=NO_CACHE,
    **DOWNLOAD_RETRIES.options(),
)


@task(name="ingest", cache_policy=NO_CACHE)
def ingest_task(spec: IngestSpec, run_dir: Path) -> Manifest:
    try:
        return ingest(spec, run_dir, materialise=materialise_tfds_task)
    finally:  # ingest writes skipped.csv before it rejects the data
        publish_ingest(run_dir)
