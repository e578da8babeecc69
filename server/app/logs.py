"""Structured logs with structlog: JSON lines on stdout by default.

Values bound with ``structlog.contextvars`` go into every line written in that context: a
call's work in a pool thread runs with its ``request_id`` bound (rpc.admission.Lane.run).

Each line is written and flushed at once (as structlog's PrintLogger does), except inside
:func:`batched`: the RPC log's writer thread renders every call's line there and writes the
whole flush with one system call. A flush per line cost 6 us of a line's 17.5 us on a pipe
(20,000 lines, one thread); a busy server writes a few thousand lines a second.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from typing import Iterator, TextIO

import structlog

_batching = threading.local()


class LineWriter:
    """A structlog logger that writes each rendered line to ``file``: flushed at once, or at
    the end of the :func:`batched` block the writing thread is in."""

    def __init__(self, file: TextIO | None = None):
        self._file = file if file is not None else sys.stdout
        self._lock = threading.Lock()

    def msg(self, message: str) -> None:
        with self._lock:
            self._file.write(message + "\n")
            if not getattr(_batching, "depth", 0):
                self._file.flush()

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg

    def flush(self) -> None:
        with self._lock:
            self._file.flush()


_writers: list[LineWriter] = []


@contextlib.contextmanager
def batched() -> Iterator[None]:
    """Lines written by this thread inside the block reach the stream at its end, together
    (nested blocks: at the outermost end; an exception still flushes them)."""
    _batching.depth = getattr(_batching, "depth", 0) + 1
    try:
        yield
    finally:
        _batching.depth -= 1
        if not _batching.depth:
            for writer in list(_writers):
                writer.flush()


def configure(level: str = "info", fmt: str = "json", stream=None) -> None:
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=_factory(stream),
        cache_logger_on_first_use=False,
    )


def _factory(stream: TextIO | None):
    """One LineWriter per stream for every logger (one lock keeps their lines whole)."""
    writer = LineWriter(stream)
    _writers[:] = [writer]
    return lambda *_args: writer
