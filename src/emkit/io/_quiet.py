"""Keep library chatter (Python warnings, C-level stderr, OpenCV logging) out of the CLI.

emkit's promise on bad input is one line on stderr. Readers call libraries that talk on
their own: mrcfile and zarr issue Python warnings, OpenCV logs ``[ WARN:0@...]`` lines and
libpng/libjpeg print ``libpng warning: ...`` straight to file descriptor 2. Around such
calls these context managers turn all of it into DEBUG records of the caller's logger, so
``emkit -vv`` still shows it. They act in the main thread only (see ``_in_main_thread``).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator

_LIBRARY_LOGGERS = ("tifffile", "zarr", "numcodecs", "mrcfile", "imagecodecs")


class _ToDebug(logging.Handler):
    """Re-log a library's records (its child loggers' too) as DEBUG records of emkit's."""

    def __init__(self, target: logging.Logger) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        self.target.debug("%s: %s", record.name, record.getMessage())


def _in_main_thread() -> bool:
    # The warnings filters and file descriptor 2 belong to the whole process: swapping them
    # from two threads at once could leave either swapped for good. Readers running in
    # worker threads (Dask) leave them alone; the CLI reads in the main thread.
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def python_warnings_to_log(logger: logging.Logger) -> Iterator[list[warnings.WarningMessage]]:
    """Log Python warnings and library log records raised inside the block at DEBUG.

    Yields the list the warnings are collected in, for a caller that turns one into an
    error (it is complete once the block has ended).
    """
    if not _in_main_thread():
        yield []
        return
    quiet = _ToDebug(logger)
    # A handler on the library's top logger sees its modules' records too (zarr logs from
    # zarr.core.*); not propagating keeps them from the root handler that prints to stderr.
    library_loggers = [
        logging.getLogger(name)
        for name in _LIBRARY_LOGGERS
        if not any(isinstance(h, _ToDebug) for h in logging.getLogger(name).handlers)
    ]
    propagate = [lib.propagate for lib in library_loggers]
    for lib in library_loggers:
        lib.addHandler(quiet)
        lib.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield caught
            finally:
                for item in caught:
                    logger.debug("%s: %s", item.category.__name__, item.message)
    finally:
        for lib, before in zip(library_loggers, propagate):
            lib.removeHandler(quiet)
            lib.propagate = before


@contextlib.contextmanager
def c_stderr_to_log(logger: logging.Logger) -> Iterator[None]:
    """Send what C libraries write to file descriptor 2 inside the block to DEBUG records.

    Only for short calls (decoding one image): while it runs, anything else the process
    writes to fd 2 is captured too.
    """
    if not _in_main_thread():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2: nothing to guard
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read(1 << 16).decode("utf-8", "replace")
            for line in text.splitlines():
                if line.strip():
                    logger.debug("library: %s", line.strip())


@contextlib.contextmanager
def opencv_quiet(logger: logging.Logger) -> Iterator[None]:
    """OpenCV's logging off and C stderr captured (libpng/libjpeg warnings) for the block."""
    import cv2

    log = getattr(getattr(cv2, "utils", None), "logging", None)
    previous = None
    if log is not None:
        with contextlib.suppress(Exception):
            previous = log.getLogLevel()
            log.setLogLevel(log.LOG_LEVEL_SILENT)
    try:
        with c_stderr_to_log(logger), python_warnings_to_log(logger):
            yield
    finally:
        if log is not None and previous is not None:
            with contextlib.suppress(Exception):
                log.setLogLevel(previous)


# Set while a reader opens a file whose oddities were already reported (each chunk task of a
# chunked run reopens the file). A context variable: each thread (a multi-threaded Dask
# worker's tasks) has its own, unlike a logger's level.
_QUIET_READS: contextvars.ContextVar[bool] = contextvars.ContextVar("emkit_quiet_reads",
                                                                     default=False)


@contextlib.contextmanager
def reads_quietly() -> Iterator[None]:
    """Readers inside the block log what is odd about a file at DEBUG, not WARNING."""
    token = _QUIET_READS.set(True)
    try:
        yield
    finally:
        _QUIET_READS.reset(token)


def read_warning_level() -> int:
    """The level a reader logs a file's oddities at: WARNING, or DEBUG in :func:`reads_quietly`."""
    return logging.DEBUG if _QUIET_READS.get() else logging.WARNING
