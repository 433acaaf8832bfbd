"""Expected failures. Their message is the one line a user sees (CLI stderr, Prefect state)."""


class PipelineError(Exception):
    """A clear, expected failure of a stage (bad data, bad weights, no GPU, ...)."""


class DataError(PipelineError):
    """The input data cannot be used (no valid images, fewer than 2 classes, ...)."""


class WeightsError(PipelineError):
    """The backbone weights cannot be loaded (missing file, wrong architecture, ...)."""


class DeviceError(PipelineError):
    """The requested device is not available."""
