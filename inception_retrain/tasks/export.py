"""Stage `export`: a complete model version in the registry (`registry.export`)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.registry.export import export_model

export_task = task(export_model, name="export", cache_policy=NO_CACHE)
