# Helpers every kernel family's .pyx shares (cimported as `from pg_common cimport ...`).

from libc.stdint cimport int64_t


cdef inline int input_bit(str name, Py_ssize_t size, Py_ssize_t n, int bit) except -1:
    """0 for an input of length n, `bit` for one of length 1 (broadcast), else ValueError."""
    if size == n:
        return 0
    if size == 1:
        return bit
    raise ValueError(f"{name} has length {size}; expected {n} (rows) or 1 (broadcast)")


cdef inline Py_ssize_t out_stride(double[:, :] out, Py_ssize_t k, Py_ssize_t m) except -1:
    """The row stride (in doubles) of an OUT (k, m) array whose rows are contiguous and do not
    overlap (rows may be apart: out[:, a:b] of a wider array), else ValueError."""
    if out.shape[0] != k or out.shape[1] != m:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}); expected ({k}, {m})")
    if m > 1 and out.strides[1] != sizeof(double):
        raise ValueError("each row of out must be contiguous")
    if k > 1 and (out.strides[0] % sizeof(double) or out.strides[0] < m * sizeof(double)):
        raise ValueError("rows of out must not overlap")
    return out.strides[0] // sizeof(double) if k > 1 else m


cdef extern from "pg_stop.h" nogil:
    enum:
        PG_STOP_WORDS
    int pg_stop_poll(int64_t *block)
    int pg_stop_seen(const int64_t *block)
    Py_ssize_t pg_stop_cut_rows(int *status, double *out, Py_ssize_t ldo, int k, Py_ssize_t start,
                                Py_ssize_t m)


cdef inline int64_t *stop_block(object stop) except? NULL:
    """The stop block's address (pg_stop.h: an int64 array of PG_STOP_WORDS, writable,
    contiguous) or NULL for ``stop=None``; else ValueError."""
    cdef int64_t[::1] b
    if stop is None:
        return NULL
    try:
        b = stop
    except (TypeError, ValueError):
        raise ValueError("stop must be a writable, contiguous int64 array (pricegrid.ext.status.STOP_WORDS)") from None
    if b.shape[0] < PG_STOP_WORDS:
        raise ValueError(f"stop has {b.shape[0]} words; expected {PG_STOP_WORDS}")
    return &b[0]
