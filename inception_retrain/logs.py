"""Logging that shows expected failures as one line.

Prefect's task engine logs every task exception with its traceback. For a `PipelineError`
(bad data, bad weights, no GPU) the message is the whole story, so the traceback is dropped;
unexpected exceptions keep theirs.
"""

from __future__ import annotations

import logging

from inception_retrain.errors import PipelineError


class HideExpectedTracebacks(logging.Filter):
    """Strip exc_info from records whose exception is a PipelineError."""

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


def run_logger(name: str):
    """Prefect's run logger inside a flow or task run (shown in the UI), else `name`'s logger."""
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # MissingContextError outside a flow or task run
        return logging.getLogger(name)
