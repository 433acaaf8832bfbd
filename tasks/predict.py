"""Stage `predict-files`: a registered model's predictions for image files
(`inception_retrain.predict`)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.predict import predict_files

predict_files_task = task(predict_files, name="predict-files", cache_policy=NO_CACHE)
