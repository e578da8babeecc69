"""Memory back to the OS after large calls: glibc's malloc_trim once the server is quiet.

``tune_malloc`` (pricegrid.server.app.server) keeps large freed blocks in glibc's heap, so that
back-to-back batches reuse warm pages instead of faulting in fresh mmap()s; the price is that
a 1M-row PriceBatch leaves its ~230 MB of request, columns and reply in the heap after it has
returned (RSS 71 -> 296 MiB here, and it stays there). :class:`MallocTrimmer` gives them back:
the service marks each large call (``with trimmer(rows): ...``), and once no large call has
been in flight for ``idle_s`` (after the last one ended: its reply has been sent by then on
any reasonable link) a background thread calls ``malloc_trim(0)``, which returns the free
pages of every arena (madvise) and the top of the heap. A client looping batches with gaps
shorter than ``idle_s`` keeps the warm heap. Linux/glibc only; elsewhere it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time
from typing import Callable, Optional


def _malloc_trim() -> Optional[Callable[[], int]]:
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)  # ctypes releases the GIL for the call


class MallocTrimmer:
    """``with trimmer(rows):`` around a call; calls of at least ``min_rows`` rows are large."""

    def __init__(self, *, min_rows: int = 65_536, idle_s: float = 0.5, trim: Optional[Callable[[], int]] = None):
        self.min_rows = min_rows
        self.idle_s = idle_s
        self._trim = trim if trim is not None else _malloc_trim()
        self._lock = threading.Lock()
        self._active = 0
        self._poked = threading.Event()
        self._thread: Optional[threading.Thread] = None
        #: how many times memory was trimmed (for tests and logs)
        self.trims = 0

    @property
    def enabled(self) -> bool:
        return self._trim is not None

    @contextlib.contextmanager
    def __call__(self, rows: int):
        if rows < self.min_rows or self._trim is None:
            yield
            return
        with self._lock:
            self._active += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pricegrid-trim", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
            self._poked.set()

    def _run(self) -> None:
        while True:
            self._poked.wait()
            self._poked.clear()
            while True:  # quiet for idle_s: no large call in flight, none ended meanwhile
                time.sleep(self.idle_s)
                with self._lock:
                    quiet = self._active == 0 and not self._poked.is_set()
                if quiet:
                    break
                self._poked.clear()
            self._trim()
            self.trims += 1
