"""Read what a script printed: its log lines, by level; or set up its logging in-process."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from metrics_pipeline.log_setup import configure_logging

# What configure_logging changes besides threading.excepthook: levels, handlers, propagation.
_CONFIGURED_LOGGERS = ("", "kafka", "kafka.consumer.fetcher", "pymongo", "matplotlib")


def error_lines(output: str) -> list[str]:
    """The ERROR and CRITICAL lines of a script's output, in order."""
    return [line for line in output.splitlines() if " ERROR " in line or " CRITICAL " in line]


@contextmanager
def scripts_logging(level: str = "INFO", secrets: Sequence[str] = ()) -> Iterator[io.StringIO]:
    """The scripts' logging (configure_logging), written to the StringIO yielded, in this
    process. On leaving, the handlers are flushed and every global it changed is put back
    (loggers, threading.excepthook), so later tests see the logging pytest set up."""
    loggers = [logging.getLogger(name or None) for name in _CONFIGURED_LOGGERS]
    saved = [(logger, logger.level, logger.handlers[:], logger.propagate) for logger in loggers]
    hook = threading.excepthook
    output = io.StringIO()
    try:
        configure_logging(level, secrets, stream=output)
        yield output
    finally:
        for handler in logging.getLogger().handlers:
            handler.flush()
        for logger, old_level, handlers, propagate in saved:
            logger.setLevel(old_level)
            logger.handlers[:] = handlers
            logger.propagate = propagate
        threading.excepthook = hook
