# cython: language_level=3
"""American options under Black-Scholes-Merton: price and Greeks (design note: to be written)."""

from pg_common cimport input_bit
from cython.parallel cimport prange, threadid
from libc.stdlib cimport malloc, free

cdef extern from "pg_american.h" nogil:
    enum:
        PG_MEASURE_DIVIDEND_RHO
        PG_IN_OPTION_TYPE
        PG_IN_STRIKE
        PG_IN_TIME
        PG_IN_UNDERLYING
        PG_IN_RATE
        PG_IN_DIVIDEND
        PG_IN_VOL
        PG_AM_NSCHEMES
        PG_AM_METHOD_FP
        PG_AM_METHOD_TREE
    ctypedef struct pg_am_scheme:
        int n
        int l
        int m
        int p
    pg_am_scheme pg_am_schemes[3]
    ctypedef struct pg_am_inputs:
        const int *option_type
        const double *strike
        const double *time
        const double *spot
        const double *rate
        const double *dividend
        const double *vol
        int broadcast
    int pg_am_init()
    int pg_am_scheme_init(pg_am_scheme *sc, int n, int l, int m, int p, int newton)
    size_t pg_am_fp_work(const pg_am_scheme *sc)
    size_t pg_am_tree_work(int steps)
    Py_ssize_t pg_am_rows(int method, int scheme, int steps, double *work, const pg_am_inputs *inp,
                          Py_ssize_t start, Py_ssize_t m, const int *codes, int k, double *out,
                          Py_ssize_t ldo, int *status)
    int pg_max_threads()

if pg_am_init() != 0:
    raise MemoryError("pricegrid.ext.american: scheme tables")

__all__ = ["MEASURES", "GREEK_METHODS", "GREEK_METHODS_BY_METHOD", "PARALLEL_THRESHOLD", "SCHEMES",
           "METHOD_FIXED_POINT", "METHOD_TREE", "FAST", "ACCURATE", "HIGH_PRECISION",
           "max_threads", "price_batch"]

METHOD_FIXED_POINT = PG_AM_METHOD_FP
METHOD_TREE = PG_AM_METHOD_TREE
FAST, ACCURATE, HIGH_PRECISION = 1, 2, 3

#: scheme code -> (n Chebyshev intervals, l fixed-point nodes, m iterations, p price nodes)
SCHEMES = {s + 1: (pg_am_schemes[s].n, pg_am_schemes[s].l, pg_am_schemes[s].m, pg_am_schemes[s].p)
           for s in range(PG_AM_NSCHEMES)}

MEASURES = (1, 2, 3, 4, 5, 6, 7)
GREEK_METHODS_BY_METHOD = {
    PG_AM_METHOD_FP: {2: "finite_difference", 3: "finite_difference", 4: "finite_difference",
                      5: "finite_difference", 6: "finite_difference", 7: "finite_difference"},
    PG_AM_METHOD_TREE: {2: "tree_grid", 3: "tree_grid", 4: "finite_difference", 5: "tree_grid",
                        6: "finite_difference", 7: "finite_difference"},
}
GREEK_METHODS = GREEK_METHODS_BY_METHOD[PG_AM_METHOD_FP]

cdef Py_ssize_t _PARALLEL_THRESHOLD = 4
PARALLEL_THRESHOLD = _PARALLEL_THRESHOLD
cdef int _MAX_STEPS = 100001


def max_threads():
    """Threads an OpenMP parallel region would use by default (1 without OpenMP)."""
    return pg_max_threads()


def price_batch(const int[::1] option_type not None,     # IN  OptionType codes (1 call, 2 put)
                const double[::1] strike not None,       # IN  > 0
                const double[::1] time not None,         # IN  years, >= 0
                const double[::1] spot not None,         # IN  > 0
                const double[::1] rate not None,         # IN  continuously compounded
                const double[::1] dividend_yield not None,  # IN  continuous yield
                const double[::1] volatility not None,   # IN  lognormal, > 0
                const int[::1] measures not None,        # IN  k Measure codes (1..7)
                double[:, :] out not None,               # OUT (k, n): out[j, i] = measures[j] of row i
                int[::1] status not None,                # OUT n: pg_status.h bits
                int threads, int method=1, int scheme=2, int tree_steps=801):
    """Price n = len(status) American options and the requested Greeks."""
    cdef Py_ssize_t n = status.shape[0]
    cdef Py_ssize_t k = measures.shape[0]
    cdef Py_ssize_t j, i, nbad = 0
    cdef pg_am_inputs inp
    cdef int steps
    if method != PG_AM_METHOD_FP and method != PG_AM_METHOD_TREE:
        raise ValueError(f"unknown method {method}; expected 1 (fixed point) or 2 (binomial tree)")
    if scheme < 1 or scheme > PG_AM_NSCHEMES:
        raise ValueError(f"unknown scheme {scheme}; expected 1 (fast), 2 (accurate) or 3 (high precision)")
    if tree_steps < 3 or tree_steps > _MAX_STEPS:
        raise ValueError(f"tree_steps {tree_steps} out of range 3..{_MAX_STEPS}")
    steps = tree_steps | 1
    inp.broadcast = (
        input_bit("option_type", option_type.shape[0], n, PG_IN_OPTION_TYPE)
        | input_bit("strike", strike.shape[0], n, PG_IN_STRIKE)
        | input_bit("time", time.shape[0], n, PG_IN_TIME)
        | input_bit("spot", spot.shape[0], n, PG_IN_UNDERLYING)
        | input_bit("rate", rate.shape[0], n, PG_IN_RATE)
        | input_bit("dividend_yield", dividend_yield.shape[0], n, PG_IN_DIVIDEND)
        | input_bit("volatility", volatility.shape[0], n, PG_IN_VOL)
    )
    for j in range(k):
        if measures[j] < 1 or measures[j] > PG_MEASURE_DIVIDEND_RHO:
            raise ValueError(f"measures[{j}] = {measures[j]} is not supported (codes 1..7)")
    if out.shape[0] != k or out.shape[1] != n:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}); expected ({k}, {n})")
    if n > 1 and out.strides[1] != sizeof(double):
        raise ValueError("each row of out must be contiguous")
    if k > 1 and (out.strides[0] % sizeof(double) or out.strides[0] < n * sizeof(double)):
        raise ValueError("rows of out must not overlap")
    cdef Py_ssize_t ldo = out.strides[0] // sizeof(double) if k > 1 else n
    if n == 0:
        return 0
    inp.option_type = &option_type[0]
    inp.strike = &strike[0]
    inp.time = &time[0]
    inp.spot = &spot[0]
    inp.rate = &rate[0]
    inp.dividend = &dividend_yield[0]
    inp.vol = &volatility[0]
    cdef double *out_p = &out[0, 0] if k > 0 else NULL
    cdef const int *codes = &measures[0] if k > 0 else NULL
    cdef int *status_p = &status[0]
    cdef int nthreads = threads if threads > 1 and n >= _PARALLEL_THRESHOLD else 1
    if nthreads > n:
        nthreads = <int>n
    cdef Py_ssize_t per_thread = pg_am_fp_work(&pg_am_schemes[scheme - 1]) + pg_am_tree_work(steps)
    cdef double *work = <double *> malloc(nthreads * per_thread * sizeof(double))
    if work == NULL:
        raise MemoryError()
    try:
        with nogil:
            if nthreads == 1:
                nbad = pg_am_rows(method, scheme, steps, work, &inp, 0, n, codes, <int>k, out_p,
                                  ldo, status_p)
            else:
                for i in prange(n, num_threads=nthreads, schedule="dynamic"):
                    nbad += pg_am_rows(method, scheme, steps, work + threadid() * per_thread, &inp,
                                       i, 1, codes, <int>k, out_p, ldo, status_p)
    finally:
        free(work)
    return nbad


def _dev_set_scheme(int code, int n, int l, int m, int p, int newton=1):
    """DEV ONLY"""
    if pg_am_scheme_init(&pg_am_schemes[code - 1], n, l, m, p, newton):
        raise MemoryError()

