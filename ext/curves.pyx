# cython: language_level=3
"""Yield curves: discount factors, zero rates and instantaneous forwards at arrays of times.

Design
------
1. Pointwise: ``pg_curves.h`` holds the node checks and per-segment coefficients
   (``pg_curve_prepare``, once per call, O(nodes)), the segment search
   (``pg_curve_locate``) and the evaluation of one time (``pg_curve_eval``): everything is
   written as I(t) = -ln DF(t), from which DF = exp(-I), the zero rate I/t and the
   instantaneous forward dI/dt follow.
2. Loops: ``evaluate`` cuts the query times into blocks of ``PG_CURVE_BLOCK`` (256); per
   block a scalar loop locates and evaluates each time (the previous time's segment is
   tried first, so sorted times cost O(1) each, others a binary search over the knots),
   then one ``omp simd`` loop takes exp (glibc's vector exp), padded so that every time
   goes through the same vector code. Blocks run on one thread below
   ``PARALLEL_THRESHOLD`` times, else in a ``prange`` over blocks, GIL released. Results
   depend neither on the thread count nor on a time's place in the batch or its order.
3. Curve: n nodes (t_i, v_i), 0 < t_1 < ... < t_n year fractions, v_i continuously
   compounded zero rates (``ZERO_RATES``) or discount factors (``DISCOUNT_FACTORS``); t = 0
   has DF 1 implicitly (a knot, not a node). Interpolations:
   - ``LOG_LINEAR_DISCOUNT`` (the default): ln DF linear between knots, i.e. piecewise
     flat instantaneous forwards; QuantLib's DiscountCurve (LogLinear).
   - ``LINEAR_ZERO``: zero rate linear in t between nodes; QuantLib's ZeroCurve (Linear).
   - ``MONOTONE_CONVEX``: P. S. Hagan and G. West, "Interpolation methods for curve
     construction", Applied Mathematical Finance 13(2), 2006, pp. 89-129, sec. 4-5 (the
     monotone convex method on discrete forwards), and "Methods for constructing a yield
     curve", Wilmott Magazine, May 2008, pp. 70-81: instantaneous forwards piecewise
     quadratic, continuous, reproducing every node's DF exactly, monotone between
     monotone discrete forwards. QuantLib's ConvexMonotone(quadraticity 0,
     monotonicity 1, forcePositive false) is the same method (formulas in pg_curves.h).
   - ``MONOTONE_CONVEX_POSITIVE``: the same with HW's positivity amendment (2006 sec. 6,
     2008 "ensuring positivity"): node forwards collared, f_0 to [0, 2 fd_1], f_i to
     [0, 2 min(fd_i, fd_{i+1})], f_n to [0, 2 fd_n], where the upper end is > 0. Positive
     discrete forwards then give non-negative instantaneous forwards everywhere (QuantLib's
     forcePositive is a different device and is not used as a reference).
4. Extrapolation, exactly:
   - before the first node (0 <= t < t_1): there is none, the segment from the knot
     (0, DF 1) is interpolated like the others. That gives LOG_LINEAR_DISCOUNT and
     LINEAR_ZERO the first node's zero rate r_1, flat (DF = exp(-r_1 t), forward r_1);
     MONOTONE_CONVEX its first section from f_0.
   - at t = 0: DF 1; the zero rate is its limit as t -> 0, the forward at 0.
   - after the last node (t >= t_n): a flat instantaneous forward f_end from t_n on:
     DF(t) = DF(t_n) exp(-f_end (t - t_n)), zero rate (r_n t_n + f_end (t - t_n))/t,
     forward f_end, where f_end is
       LOG_LINEAR_DISCOUNT  the last segment's (flat) forward, -ln(DF_n/DF_{n-1})/(t_n - t_{n-1});
       LINEAR_ZERO          the last segment's forward at t_n, r_n + t_n (r_n - r_{n-1})/(t_n - t_{n-1})
                            (r_n with one node);
       MONOTONE_CONVEX(_POSITIVE)  the last discrete forward fd_n (the last segment's average
                            forward), not HW's end-point forward f_n = fd_n - (f_{n-1} - fd_n)/2,
                            which carries the last section's slope into a level held forever
                            (it can be far from, even of the other sign than, the discrete
                            forwards); so the forward jumps from f_n to fd_n at t_n.
     These are QuantLib's extrapolations (InterpolatedDiscountCurve, InterpolatedZeroCurve,
     and InterpolatedForwardCurve under PiecewiseConvexMonotoneForward); the first two keep
     the forward continuous at t_n.
   - forwards are right-continuous at the nodes: a node time belongs to the segment on its
     right, t_n to the extrapolation (log-linear forwards jump at every node, monotone
     convex ones only at t_n, linear-zero ones where the zero-rate slope changes).
5. Status: pg_status.h bits per query time: PG_BAD_TIME for a time that is NaN, infinite or
   negative; PG_BAD_RATE on every time when the curve fails its checks (no nodes, or any
   node bit of ``validate_nodes``); PG_NOT_FINITE when a requested measure overflows
   (e.g. exp of a huge negative rate times a huge time). Every output of a failed time is
   NaN; nothing else is. Wrong shapes or unknown codes (interpolation, value kind,
   measure) raise ValueError: they are the caller's bug, not data.
"""

from pg_common cimport input_bit, out_stride
from cython.parallel cimport prange
from libc.stdlib cimport malloc, free

cdef extern from "pg_curves.h" nogil:
    enum:
        PG_CURVE_LOG_LINEAR_DISCOUNT
        PG_CURVE_LINEAR_ZERO
        PG_CURVE_MONOTONE_CONVEX
        PG_CURVE_MONOTONE_CONVEX_POSITIVE
        PG_CURVE_ZERO_RATES
        PG_CURVE_DISCOUNT_FACTORS
        PG_CURVE_DISCOUNT
        PG_CURVE_ZERO
        PG_CURVE_FORWARD
        PG_CURVE_MEASURE_MAX
        PG_NODE_TIME_NOT_FINITE
        PG_NODE_TIME_NOT_POSITIVE
        PG_NODE_TIME_DUPLICATE
        PG_NODE_TIME_NOT_INCREASING
        PG_NODE_VALUE_NOT_FINITE
        PG_NODE_DF_NOT_POSITIVE
        PG_NODE_OVERFLOW
        PG_CURVE_BLOCK
        PG_CURVE_WORK_COLUMNS

    ctypedef struct pg_curve:
        int interp
        int n
        int bad

    int pg_curve_max_threads()
    int pg_curve_prepare(pg_curve *c, int interp, int n, const double *t, const double *v,
                         int kind, double *work, int *node_status)
    Py_ssize_t pg_curve_block(const pg_curve *c, const double *times, Py_ssize_t start, int m,
                              const int *meas, int k, double *out, Py_ssize_t ldo, int *status)

__all__ = [
    "LOG_LINEAR_DISCOUNT", "LINEAR_ZERO", "MONOTONE_CONVEX", "MONOTONE_CONVEX_POSITIVE",
    "INTERPOLATIONS", "ZERO_RATES", "DISCOUNT_FACTORS", "DISCOUNT", "ZERO_RATE", "FORWARD",
    "NODE_TIME_NOT_FINITE", "NODE_TIME_NOT_POSITIVE", "NODE_TIME_DUPLICATE",
    "NODE_TIME_NOT_INCREASING", "NODE_VALUE_NOT_FINITE", "NODE_DF_NOT_POSITIVE",
    "NODE_OVERFLOW", "NODE_BITS", "PARALLEL_THRESHOLD", "max_threads", "validate_nodes",
    "evaluate", "discount_factors", "zero_rates", "forward_rates",
]

LOG_LINEAR_DISCOUNT = PG_CURVE_LOG_LINEAR_DISCOUNT
LINEAR_ZERO = PG_CURVE_LINEAR_ZERO
MONOTONE_CONVEX = PG_CURVE_MONOTONE_CONVEX
MONOTONE_CONVEX_POSITIVE = PG_CURVE_MONOTONE_CONVEX_POSITIVE
INTERPOLATIONS = (LOG_LINEAR_DISCOUNT, LINEAR_ZERO, MONOTONE_CONVEX, MONOTONE_CONVEX_POSITIVE)
#: value kinds of the node values
ZERO_RATES = PG_CURVE_ZERO_RATES
DISCOUNT_FACTORS = PG_CURVE_DISCOUNT_FACTORS
#: measure codes of ``evaluate``
DISCOUNT = PG_CURVE_DISCOUNT
ZERO_RATE = PG_CURVE_ZERO
FORWARD = PG_CURVE_FORWARD
#: per-node bits of ``validate_nodes``
NODE_TIME_NOT_FINITE = PG_NODE_TIME_NOT_FINITE
NODE_TIME_NOT_POSITIVE = PG_NODE_TIME_NOT_POSITIVE
NODE_TIME_DUPLICATE = PG_NODE_TIME_DUPLICATE
NODE_TIME_NOT_INCREASING = PG_NODE_TIME_NOT_INCREASING
NODE_VALUE_NOT_FINITE = PG_NODE_VALUE_NOT_FINITE
NODE_DF_NOT_POSITIVE = PG_NODE_DF_NOT_POSITIVE
NODE_OVERFLOW = PG_NODE_OVERFLOW
#: node bit -> (field, description)
NODE_BITS = {
    NODE_TIME_NOT_FINITE: ("node_times", "not finite"),
    NODE_TIME_NOT_POSITIVE: ("node_times", "not > 0"),
    NODE_TIME_DUPLICATE: ("node_times", "equal to the previous node's time"),
    NODE_TIME_NOT_INCREASING: ("node_times", "below the previous node's time"),
    NODE_VALUE_NOT_FINITE: ("node_values", "not finite"),
    NODE_DF_NOT_POSITIVE: ("node_values", "discount factor not > 0"),
    NODE_OVERFLOW: ("node_values", "the curve overflows here (rate times time, or a slope, not finite)"),
}

# Query times below which a batch runs on one thread. A log-linear lookup costs 4 ns
# (sorted times) to 23 ns (random order) on the 2-core development VM (bench/test_bench_curves.py),
# so 16384 times are 65-370 us of work, far above the few us of waking a thread. Not tuned
# further: there, with the other core busy, 2 threads were slower than 1 (0.4x-0.8x).
cdef Py_ssize_t _PARALLEL_THRESHOLD = 16384
PARALLEL_THRESHOLD = _PARALLEL_THRESHOLD


def max_threads():
    """Threads an OpenMP parallel region would use by default (1 without OpenMP)."""
    return pg_curve_max_threads()


cdef int _check_codes(int interpolation, int value_kind) except -1:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation}; expected one of {INTERPOLATIONS}")
    if value_kind != PG_CURVE_ZERO_RATES and value_kind != PG_CURVE_DISCOUNT_FACTORS:
        raise ValueError(f"unknown value kind {value_kind}; expected 1 (zero rates) or 2 (discount factors)")
    return 0


cdef double *_prepare(pg_curve *c, int interpolation, const double[::1] node_times,
                      const double[::1] node_values, int value_kind, int *node_status) except NULL:
    """Check the codes and shapes, allocate the workspace and prepare the curve (caller frees)."""
    _check_codes(interpolation, value_kind)
    cdef Py_ssize_t n = node_times.shape[0]
    if node_values.shape[0] != n:
        raise ValueError(f"node_values has length {node_values.shape[0]}; expected {n} (node_times)")
    if n > 100_000_000:
        raise ValueError(f"{n} nodes; at most 100,000,000")
    cdef double *work = <double *>malloc(PG_CURVE_WORK_COLUMNS * (n + 1) * sizeof(double))
    if work == NULL:
        raise MemoryError()
    cdef const double *t_p = &node_times[0] if n > 0 else NULL
    cdef const double *v_p = &node_values[0] if n > 0 else NULL
    with nogil:
        pg_curve_prepare(c, interpolation, <int>n, t_p, v_p, value_kind, work, node_status)
    return work


def validate_nodes(int interpolation,
                   const double[::1] node_times not None,    # IN  n year fractions
                   const double[::1] node_values not None,   # IN  n zero rates or discount factors
                   int value_kind,                           # IN  ZERO_RATES or DISCOUNT_FACTORS
                   int[::1] node_status not None):           # OUT n: NODE_* bits, 0 = good
    """Check a curve's nodes; ``node_status[i]`` gets the NODE_* bits of node i.

    Returns the number of bad nodes. A curve is usable by ``evaluate`` when this is 0 and
    it has at least one node. ``NODE_BITS`` maps each bit to its field and description.
    """
    cdef Py_ssize_t n = node_times.shape[0]
    if node_status.shape[0] != n:
        raise ValueError(f"node_status has length {node_status.shape[0]}; expected {n}")
    cdef pg_curve c
    cdef double *work = _prepare(&c, interpolation, node_times, node_values, value_kind,
                                 &node_status[0] if n > 0 else NULL)
    free(work)
    return c.bad


def evaluate(int interpolation,
             const double[::1] node_times not None,    # IN  n nodes: year fractions, increasing, > 0
             const double[::1] node_values not None,   # IN  n zero rates (cont. comp.) or discount factors
             int value_kind,                           # IN  ZERO_RATES or DISCOUNT_FACTORS
             const double[::1] times not None,         # IN  m query times, years, >= 0, any order
             const int[::1] measures not None,         # IN  k measure codes (DISCOUNT, ZERO_RATE, FORWARD)
             double[:, :] out not None,                # OUT (k, m): row j = measures[j]; rows contiguous
             int[::1] status not None,                 # OUT m: pg_status.h bits, 0 = evaluated
             int threads):
    """Evaluate a yield curve at m = len(times) times.

    ``out[j, i]`` receives measure ``measures[j]`` at ``times[i]``: the discount factor,
    the continuously compounded zero rate or the instantaneous forward rate. Each row of
    ``out`` must be contiguous; rows may be apart (``out[:, a:b]`` of a wider array).
    Runs on ``threads`` threads when ``threads > 1`` and ``m >= PARALLEL_THRESHOLD``.
    Returns the number of times whose status is not 0 (their outputs are NaN).
    """
    cdef Py_ssize_t m = times.shape[0]
    cdef Py_ssize_t k = measures.shape[0]
    cdef Py_ssize_t j
    _check_codes(interpolation, value_kind)
    for j in range(k):
        if measures[j] < 1 or measures[j] > PG_CURVE_MEASURE_MAX:
            raise ValueError(f"measures[{j}] = {measures[j]} is not a curve measure (1 DF, 2 zero rate, 3 forward)")
    if status.shape[0] != m:
        raise ValueError(f"status has length {status.shape[0]}; expected {m} (times)")
    cdef Py_ssize_t ldo = out_stride(out, k, m)
    if node_values.shape[0] != node_times.shape[0]:
        raise ValueError(f"node_values has length {node_values.shape[0]}; expected {node_times.shape[0]} (node_times)")
    if m == 0:
        return 0

    return _run(interpolation, node_times, node_values, value_kind, times,
                &measures[0] if k > 0 else NULL, <int>k, &out[0, 0] if k > 0 else NULL, ldo,
                status, threads)


cdef Py_ssize_t _run(int interpolation, const double[::1] node_times,
                     const double[::1] node_values, int value_kind, const double[::1] times,
                     const int *meas_p, int k, double *out_p, Py_ssize_t ldo, int[::1] status,
                     int threads) except -1:
    """The block loop every entry point shares (shapes and codes already checked, m > 0)."""
    cdef Py_ssize_t m = times.shape[0]
    cdef Py_ssize_t blk, nblocks, start, nbad = 0
    cdef int mb
    cdef pg_curve c
    cdef double *work = _prepare(&c, interpolation, node_times, node_values, value_kind, NULL)
    cdef const double *t_p = &times[0]
    cdef int *status_p = &status[0]
    nblocks = (m + PG_CURVE_BLOCK - 1) // PG_CURVE_BLOCK
    try:
        with nogil:
            if threads <= 1 or m < _PARALLEL_THRESHOLD:
                for blk in range(nblocks):
                    start = blk * PG_CURVE_BLOCK
                    mb = <int>(m - start if m - start < PG_CURVE_BLOCK else PG_CURVE_BLOCK)
                    nbad += pg_curve_block(&c, t_p, start, mb, meas_p, k, out_p, ldo, status_p)
            else:
                for blk in prange(nblocks, num_threads=threads, schedule="static"):
                    start = blk * PG_CURVE_BLOCK
                    mb = <int>(m - start if m - start < PG_CURVE_BLOCK else PG_CURVE_BLOCK)
                    nbad += pg_curve_block(&c, t_p, start, mb, meas_p, k, out_p, ldo, status_p)
    finally:
        free(work)
    return nbad


cdef Py_ssize_t _one_measure(int measure, int interpolation, const double[::1] node_times,
                             const double[::1] node_values, int value_kind,
                             const double[::1] times, double[::1] out, int[::1] status,
                             int threads) except -1:
    cdef Py_ssize_t m = times.shape[0]
    _check_codes(interpolation, value_kind)
    if out.shape[0] != m:
        raise ValueError(f"out has length {out.shape[0]}; expected {m} (times)")
    if status.shape[0] != m:
        raise ValueError(f"status has length {status.shape[0]}; expected {m} (times)")
    if node_values.shape[0] != node_times.shape[0]:
        raise ValueError(f"node_values has length {node_values.shape[0]}; expected {node_times.shape[0]} (node_times)")
    if m == 0:
        return 0
    return _run(interpolation, node_times, node_values, value_kind, times, &measure, 1,
                &out[0], m, status, threads)


def discount_factors(int interpolation,
                     const double[::1] node_times not None,   # IN  n
                     const double[::1] node_values not None,  # IN  n
                     int value_kind,                          # IN
                     const double[::1] times not None,        # IN  m
                     double[::1] out not None,                # OUT m discount factors
                     int[::1] status not None,                # OUT m
                     int threads):
    """``evaluate`` for the discount factor alone; returns the number of failed times."""
    return _one_measure(PG_CURVE_DISCOUNT, interpolation, node_times, node_values, value_kind,
                        times, out, status, threads)


def zero_rates(int interpolation,
               const double[::1] node_times not None,   # IN  n
               const double[::1] node_values not None,  # IN  n
               int value_kind,                          # IN
               const double[::1] times not None,        # IN  m
               double[::1] out not None,                # OUT m continuously compounded zero rates
               int[::1] status not None,                # OUT m
               int threads):
    """``evaluate`` for the zero rate alone; returns the number of failed times."""
    return _one_measure(PG_CURVE_ZERO, interpolation, node_times, node_values, value_kind,
                        times, out, status, threads)


def forward_rates(int interpolation,
                  const double[::1] node_times not None,   # IN  n
                  const double[::1] node_values not None,  # IN  n
                  int value_kind,                          # IN
                  const double[::1] times not None,        # IN  m
                  double[::1] out not None,                # OUT m instantaneous forward rates
                  int[::1] status not None,                # OUT m
                  int threads):
    """``evaluate`` for the instantaneous forward alone; returns the number of failed times."""
    return _one_measure(PG_CURVE_FORWARD, interpolation, node_times, node_values, value_kind,
                        times, out, status, threads)
