"""Expected failures. Their message is the one line a user sees (CLI stderr, Prefect state).

Anything else that escapes a stage is a bug: the run still fails with one line, and the
traceback goes to the task run's log.
"""


class PipelineError(Exception):
    """A clear, expected failure of a stage (bad data, bad weights, no GPU, ...)."""


class ConfigError(PipelineError, ValueError):
    """A setting cannot work (checked before any work starts)."""


class DataError(PipelineError):
    """The input data cannot be used (no valid images, fewer than 2 classes, ...)."""


class WeightsError(PipelineError):
    """The backbone weights cannot be loaded (missing file, wrong architecture, ...)."""


class DeviceError(PipelineError):
    """The requested device is not available."""


class DownloadError(PipelineError):
    """A download failed (network, proxy, checksum): often transient, so stages retry it."""


class BusyError(PipelineError):
    """Another run holds the workdir."""


class DiskFullError(PipelineError):
    """A write found no space left on its device (ENOSPC, or a quota: EDQUOT). What was
    written before it is kept whole; nothing half-written is left."""
