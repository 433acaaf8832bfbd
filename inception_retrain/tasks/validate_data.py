"""Stage `validate-data`: the data contract, checked on the manifests right after ingest
(`inception_retrain.data.contract.validate_data`), against the reference the flow found
(`inception_retrain.runs.data_reference`)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.data.contract import validate_data

validate_data_task = task(validate_data, name="validate-data", cache_policy=NO_CACHE)
