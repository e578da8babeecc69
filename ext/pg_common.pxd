# Helpers every kernel family's .pyx shares (cimported as `from pg_common cimport ...`).


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
