"""Expected failures. Their message is the one line a user sees (CLI stderr, Prefect state)."""


class PipelineError(Exception):
    """A clear, expected failure of a stage (bad data, bad weights, no GPU, ...)."""


class DataError(PipelineError):
    """The input data cannot be used (no valid images, fewer than 2 classes, ...)."""


class WeightsError(PipelineError):
    """The backbone weights cannot be loaded (missing file, wrong architecture, ...)."""


class DeviceError(PipelineError):
    """The requested device is not available."""


class DownloadError(PipelineError):
    """A download failed (network, proxy, checksum): often transient, so stages retry it."""


def retry_on_download_error(task, task_run, state) -> bool:
    """Prefect `retry_condition_fn`: retry a task run only when it failed on a download."""
    try:
        state.result()
    except DownloadError:
        return True
    except BaseException:
        return False
    return False
