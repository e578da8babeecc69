# Helpers every kernel family's .pyx shares (cimported as `from pg_common cimport ...`).


cdef inline int input_bit(str name, Py_ssize_t size, Py_ssize_t n, int bit) except -1:
    """0 for an input of length n, `bit` for one of length 1 (broadcast), else ValueError."""
    if size == n:
        return 0
    if size == 1:
        return bit
    raise ValueError(f"{name} has length {size}; expected {n} (rows) or 1 (broadcast)")
