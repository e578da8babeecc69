# cython: language_level=3
"""Copies of result columns into the caller's arrays, with streaming stores.

1. Why: RiskClient puts each chunk's reply columns into the batch's result arrays. Those
   arrays are large (8 MB per measure for a million rows) and nobody reads them before the
   batch is done, so ordinary stores first read every destination line into the cache
   (read-for-ownership) only to overwrite it. Non-temporal stores write the lines straight
   out: about a third less memory traffic. A stand-alone test of this loop placing a million
   rows of price + 5 Greeks (13 chunks, cold source and destination) took 6.8 ms against
   memcpy's 10.7 ms on the 2-core VM; through RiskClient against a live server, PriceBatch
   took 4 ms less per million rows (alternating calls, same process).
2. Small copies (under STREAM_BYTES) use memcpy: they stay in cache, where memcpy is faster.
3. The stores are ordinary x86 SSE2/AVX/AVX-512 intrinsics picked at compile time by the
   target's flags; other CPUs use memcpy. The result is the same bytes either way
   (tests/clients/test_copy.py).

:class:`PayloadBuffers` is the other direction: the request bytes of a batch's chunks.

4. Why: each chunk's request is one ``bytes`` (gRPC takes nothing else), a few MB written
   from the caller's columns. A fresh one each time comes from malloc, and with glibc's
   default thresholds (the caller's process is not ours to tune) the heap grows and is
   trimmed again around every batch, so the pages are faulted in and zeroed by the kernel
   over and over. RiskClient keeps the chunk buffers and writes each chunk into one that
   nobody else holds any more. Against a live server, 1M rows of price + 5 Greeks in 13
   chunks, alternating in one process: 10,500 page faults per batch became 2,400, the
   client's CPU 79 ms became 57 ms, the wall time 86 ms became 77 ms.
5. The rule that keeps it safe: a kept buffer is written only while the pool's own
   reference is its only one (gRPC copies a message into its own slices when the call
   starts and drops its reference when the call ends; until then the buffer is not
   touched). A buffer is never resized, and its cached hash is reset when it is rewritten.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.ref cimport Py_REFCNT
from libc.string cimport memcpy

cdef extern from *:
    """
    #include <string.h>
    #include <stdint.h>
    #if defined(__x86_64__) && (defined(__AVX512F__) || defined(__AVX__) || defined(__SSE2__))
    #include <immintrin.h>
    #define PG_STREAM 1
    #else
    #define PG_STREAM 0
    #endif

    static void pg_stream_copy(double *dst, const double *src, size_t n)
    {
    #if PG_STREAM
        size_t i = 0;
        /* Vector stores need an aligned destination: ordinary stores up to the boundary. */
        while (i < n && ((uintptr_t)(dst + i) & 63)) { dst[i] = src[i]; i++; }
    #if defined(__AVX512F__)
        for (; i + 8 <= n; i += 8) _mm512_stream_pd(dst + i, _mm512_loadu_pd(src + i));
    #elif defined(__AVX__)
        for (; i + 4 <= n; i += 4) _mm256_stream_pd(dst + i, _mm256_loadu_pd(src + i));
    #else
        for (; i + 2 <= n; i += 2) _mm_stream_pd(dst + i, _mm_loadu_pd(src + i));
    #endif
        for (; i < n; i++) dst[i] = src[i];
        _mm_sfence();  /* the streamed lines are visible to every thread after this */
    #else
        memcpy(dst, src, n * sizeof(double));
    #endif
    }
    """
    void pg_stream_copy(double *dst, const double *src, size_t n) nogil


cdef Py_ssize_t _STREAM_BYTES = 256 * 1024
#: copies of at least this many bytes use streaming stores
STREAM_BYTES = _STREAM_BYTES


def copy_into(double[::1] dst not None, const double[::1] src not None):
    """dst[:] = src (equal lengths), streaming the stores for large copies."""
    cdef Py_ssize_t n = dst.shape[0]
    if src.shape[0] != n:
        raise ValueError(f"copy_into: {src.shape[0]} values for {n} places")
    if n == 0:
        return
    with nogil:
        if n * 8 >= _STREAM_BYTES:
            pg_stream_copy(&dst[0], &src[0], <size_t>n)
        else:
            memcpy(&dst[0], &src[0], <size_t>n * 8)


cdef extern from *:
    """
    #pragma GCC diagnostic push
    #pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    /* A bytes object rewritten in place must not keep the hash of its former content. */
    static void pg_forget_hash(PyObject *b) { ((PyBytesObject *)b)->ob_shash = -1; }
    #pragma GCC diagnostic pop
    """
    void pg_forget_hash(object b)


cdef Py_ssize_t _KEEP_BYTES = 64 * 1024
#: payloads of fewer bytes are not kept (malloc serves them from warm memory anyway)
KEEP_BYTES = _KEEP_BYTES


cdef class PayloadBuffers:
    """Chunk request bytes, kept and rewritten once nobody else holds them (see 4 and 5 in
    the module's notes). ``capacity`` bounds how many are kept; ``min_bytes`` is the
    smallest payload worth keeping."""

    cdef list _kept
    cdef readonly Py_ssize_t capacity
    cdef readonly Py_ssize_t min_bytes

    def __init__(self, Py_ssize_t capacity, Py_ssize_t min_bytes=_KEEP_BYTES):
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self._kept = []
        self.capacity = capacity
        self.min_bytes = min_bytes

    @property
    def kept(self) -> int:
        """How many buffers are kept."""
        return len(self._kept)

    @property
    def buffers(self) -> tuple:
        """The kept buffers (for inspection: one held here is not reused until let go)."""
        return tuple(self._kept)

    @property
    def kept_bytes(self) -> int:
        """Their total size."""
        return sum(PyBytes_GET_SIZE(b) for b in self._kept)

    def clear(self) -> None:
        """Let every kept buffer go (those still in a call stay alive until it ends)."""
        self._kept = []

    cdef object _take(self, Py_ssize_t size):
        """A bytes of ``size`` that only the caller will hold: a kept one nobody else holds,
        else a new one (kept when there is room, making room by dropping a free one)."""
        cdef Py_ssize_t i, free_at = -1
        cdef object b
        if size >= self.min_bytes and self.capacity > 0:
            for i in range(len(self._kept)):
                b = self._kept[i]
                if Py_REFCNT(b) == 2:  # the list's reference and ``b``'s: free
                    if PyBytes_GET_SIZE(b) == size:
                        pg_forget_hash(b)
                        return b
                    free_at = i
            b = None
        b = PyBytes_FromStringAndSize(NULL, size)
        if size >= self.min_bytes and self.capacity > 0:
            if len(self._kept) >= self.capacity and free_at >= 0:
                del self._kept[free_at]
            if len(self._kept) < self.capacity:
                self._kept.append(b)
        return b

    def join(self, parts, Py_ssize_t size) -> bytes:
        """``b"".join(parts)`` (which must come to ``size`` bytes), written into a kept
        buffer where one is free. Parts are anything with a contiguous buffer (bytes,
        memoryviews of arrays); the copy runs without the GIL."""
        parts = list(parts)
        cdef Py_ssize_t n = len(parts), got = 0, total = 0, i
        cdef Py_buffer *views = <Py_buffer *>PyMem_Malloc(max(n, 1) * sizeof(Py_buffer))
        cdef char *dst
        if views == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                PyObject_GetBuffer(parts[i], &views[i], PyBUF_SIMPLE)
                got += 1
                total += views[i].len
            if total != size:
                raise ValueError(f"the parts come to {total} bytes, not {size}")
            out = self._take(size)
            dst = PyBytes_AS_STRING(out)
            with nogil:
                for i in range(n):
                    if views[i].len:
                        memcpy(dst, views[i].buf, <size_t>views[i].len)
                        dst += views[i].len
            return out
        finally:
            for i in range(got):
                PyBuffer_Release(&views[i])
            PyMem_Free(views)
