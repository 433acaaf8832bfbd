"""What every stage task shares: the core's logs and progress shown in Prefect, retry rules.

Importing this module (the tasks package does) makes the core library visible in Prefect
without the core knowing Prefect:
  * records of the `inception_retrain` loggers inside a flow or task run also go to the
    Prefect API, so the UI shows them in the run's logs (outside a run they only print);
  * every `inception_retrain.plumbing.progress.Progress` inside a run also keeps a Prefect progress
    artifact up to date, so the UI shows the same number as the terminal bar.

`hide_expected_tracebacks()` keeps expected failures to one line in the logs.

Retry policies, each defined once and named (`RetryPolicy`; a task takes
`**POLICY.options()`):
  * `DOWNLOAD_RETRIES`: a failed download only (weights, a tfds dataset), twice, after 30 s
    and 120 s, since a network or a mirror often recovers within minutes;
  * `SHARD_RETRIES`: anything but an expected `PipelineError`, twice (`ShardPolicy.retries`,
    the config's `shard_retries`), after 5 s and 30 s, for a shard of work on a cluster (a
    lost worker, a flaky object store); a retry rewrites the same content-named output;
  * `RETRY_ONCE`: anything but an expected `PipelineError`, once, at once, for a long
    stage in the flow's process (training, which resumes from its own checkpoint, and the
    augmentation effect).

On a Dask worker: `dask_worker_threads()` is the worker's thread count (None elsewhere), and
two worker plugins the flows register on every cluster act in each worker process before any
task imports TensorFlow: `BoundTensorFlowThreads` bounds TensorFlow's thread pools to that
count, so N one-thread workers on N cores do not oversubscribe them, and `QuietStderr`
installs the stderr filter the CLI uses (`plumbing.stderr_filter`), so a worker's log shows
no TensorFlow start-up noise. A plugin reaches the workers that join or restart later too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from distributed.diagnostics.plugin import WorkerPlugin
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging.handlers import APILogHandler

from inception_retrain.plumbing import progress, stderr_filter
from inception_retrain.plumbing.errors import DownloadError, PipelineError
from inception_retrain.plumbing.shard_policy import ShardPolicy

CORE_LOGGER = "inception_retrain"


def in_prefect_run() -> bool:
    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


class _ToPrefectWhileInRun(APILogHandler):
    """Prefect's API log handler, for records made inside a flow or task run only."""

    def emit(self, record: logging.LogRecord) -> None:
        if in_prefect_run():
            super().emit(record)


def _show_core_logs() -> None:
    core = logging.getLogger(CORE_LOGGER)
    core.setLevel(logging.INFO)  # printed by the root's console handler, as run logs are
    if not any(isinstance(h, _ToPrefectWhileInRun) for h in core.handlers):
        core.addHandler(_ToPrefectWhileInRun())


class _ProgressArtifact:
    """A Prefect progress artifact that follows one `Progress` (created in a run only)."""

    def __init__(self, description: str, total: int):
        self.description = description
        self.id = create_progress_artifact(progress=0.0, description=f"{description}: 0/{total}")

    def update(self, done: int, total: int) -> None:
        percent = 100.0 * done / total if total else 100.0
        update_progress_artifact(
            artifact_id=self.id,
            progress=min(percent, 100.0),
            description=f"{self.description}: {done}/{total}",
        )

    close = update


def _progress_artifact(description: str, total: int) -> _ProgressArtifact | None:
    return _ProgressArtifact(description, total) if in_prefect_run() else None


_show_core_logs()
progress.add_listener(_progress_artifact)


def dask_worker_threads() -> int | None:
    """The thread count of the Dask worker running this code, or None outside one."""
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError):  # no dask, or not in a worker
        return None


class BoundTensorFlowThreads(WorkerPlugin):
    """Dask worker plugin: TensorFlow's intra- and inter-op pools sized to the worker's
    threads, set when the worker starts (before any task builds a model)."""

    name = "inception-retrain-tf-threads"

    def setup(self, worker) -> None:
        from inception_retrain.features.feature_compute import limit_tf_threads

        limit_tf_threads(int(worker.state.nthreads))


class QuietStderr(WorkerPlugin):
    """Dask worker plugin: the stderr filter (and TensorFlow's log level 2 unless set),
    installed when the worker starts, before any task imports TensorFlow."""

    name = "inception-retrain-quiet-stderr"

    def setup(self, worker) -> None:
        stderr_filter.quiet()


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how soon a task run is retried, and on which failures."""

    retries: int
    delays_s: tuple[float, ...]
    condition: Callable

    def options(self) -> dict:
        """The `task(...)` keyword arguments of this policy."""
        return {
            "retries": self.retries,
            "retry_delay_seconds": list(self.delays_s),
            "retry_condition_fn": self.condition,
        }


def retry_on_download_error(task, task_run, state) -> bool:
    """Retry a task run only when it failed on a download (often transient)."""
    try:
        state.result()
    except DownloadError:
        return True
    except BaseException:
        return False
    return False


def retry_unless_expected(task, task_run, state) -> bool:
    """Retry a task run unless it failed with an expected PipelineError."""
    try:
        state.result()
    except PipelineError:
        return False
    except BaseException:
        return True
    return True


DOWNLOAD_RETRIES = RetryPolicy(2, (30, 120), retry_on_download_error)
SHARD_RETRIES = RetryPolicy(ShardPolicy().retries, (5, 30), retry_unless_expected)
RETRY_ONCE = RetryPolicy(1, (0,), retry_unless_expected)


class HideExpectedTracebacks(logging.Filter):
    """Strip exc_info from records whose exception is a PipelineError: Prefect's engine logs
    every task exception with its traceback, and for an expected failure (bad data, bad
    weights, no GPU) the message is the whole story. Unexpected exceptions keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], PipelineError):
            record.exc_info = None
            record.exc_text = None
        return True


def hide_expected_tracebacks() -> None:
    """Install the filter on every handler of the root and `prefect` loggers (idempotent).

    Handler filters see records propagated from child loggers too (logger filters do not).
    """
    loggers = [logging.getLogger()] + [
        logger
        for name, logger in logging.Logger.manager.loggerDict.items()
        if name.startswith("prefect") and isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, HideExpectedTracebacks) for f in handler.filters):
                handler.addFilter(HideExpectedTracebacks())
