"""Downloads are retried with backoff; everything else fails at once (real Prefect runs)."""

from __future__ import annotations

from prefect import flow, task

from inception_retrain.data.tfds_source import TfdsDownloadError
from inception_retrain.features.backbone import WeightsDownloadError
from inception_retrain.plumbing.errors import DownloadError, WeightsError
from inception_retrain.tasks.extract import extract_task
from inception_retrain.tasks.ingest import materialise_tfds_task
from inception_retrain.tasks.runtime import retry_on_download_error


def _flaky(error: Exception, failures: int):
    attempts = []

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_on_download_error)
    def stage():
        attempts.append(1)
        if len(attempts) <= failures:
            raise error
        return "done"

    @flow
    def pipeline() -> bool:
        return stage(return_state=True).is_completed()

    return pipeline(), attempts


def test_a_download_error_is_retried_until_it_succeeds():
    completed, attempts = _flaky(WeightsDownloadError("connection reset"), failures=2)
    assert completed and len(attempts) == 3


def test_a_non_download_error_is_not_retried():
    completed, attempts = _flaky(WeightsError("weights file does not fit"), failures=1)
    assert not completed and len(attempts) == 1


def test_the_stages_that_download_retry_only_downloads():
    assert issubclass(WeightsDownloadError, DownloadError)
    assert issubclass(TfdsDownloadError, DownloadError)
    for stage in (extract_task, materialise_tfds_task):
        assert stage.retries == 2
        assert stage.retry_condition_fn is retry_on_download_error


def test_the_retry_condition_reads_the_failed_states_exception():
    from prefect.states import Failed

    from inception_retrain.plumbing.errors import DataError

    assert retry_on_download_error(None, None, Failed(data=TfdsDownloadError("network down")))
    assert not retry_on_download_error(None, None, Failed(data=DataError("unknown name")))
    assert not retry_on_download_error(None, None, Failed(data=ValueError("bug")))
