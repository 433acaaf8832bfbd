"""Stage `data-drift`: the new images' cached features against the reference's, after
extraction (`inception_retrain.evaluation.drift.check_drift`)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.evaluation.drift import check_drift

data_drift_task = task(check_drift, name="data-drift", cache_policy=NO_CACHE)
