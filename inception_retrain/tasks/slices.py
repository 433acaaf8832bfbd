"""Stage `slices`: the test split's metrics per class, source folder, format, size bucket and
user slice, with intervals (`inception_retrain.evaluation.slices.slice_metrics`); the
promotion gate reads them."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.evaluation.slices import slice_metrics

slices_task = task(slice_metrics, name="slices", cache_policy=NO_CACHE)
