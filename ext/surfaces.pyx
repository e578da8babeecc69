# cython: language_level=3
"""Volatility surfaces: Black implied vols and total variances at arrays of (T, K, F).

Design
------
1. Pointwise: ``pg_surfaces.h`` holds the surface checks (``pg_surface_prepare``, once per
   call, O(slices x nodes)), the slices (grid row, raw SVI, Hagan's SABR), the interpolation
   between slices (``pg_surface_point``), raw SVI's derivatives with Durrleman's g, and the
   undiscounted Black call on total variance used by the butterfly checks.
2. Loops: ``evaluate`` cuts the points into blocks of ``PG_SURF_BLOCK`` (256) and
   evaluates each point on its own: one branch-free binary search over the expiries (and,
   for a grid, one over the strike nodes), then at most two slices. Blocks run on one
   thread below ``PARALLEL_THRESHOLD`` points, else in a ``prange`` over blocks, GIL
   released. Scalar code only (no vector math), so a point's bits depend neither on the
   thread count nor on its place in the batch.
3. Surfaces: n slices at expiries 0 < T_1 < ... < T_n (year fractions), of one kind:
   - ``GRID``: p nodes on one strike axis, the same nodes for every expiry, and an n x p
     matrix of Black vols > 0. Axes: ``STRIKE`` (absolute K), ``MONEYNESS`` (K/F),
     ``LOG_MONEYNESS`` (ln(K/F)), ``DELTA`` (below); F is the point's forward. Across strikes
     at a slice: linear in total variance w = vol^2 T_i (equivalently in vol^2) between
     adjacent nodes; beyond the end nodes the end node's vol, flat (constant vol in strike).
   - ``DELTA`` grid: the nodes are forward deltas, premium-unadjusted, of a call:
     Delta = N(d1), d1 = (-ln(K/F) + sigma^2 T/2)/(sigma sqrt(T)), strictly inside (0, 1)
     (a put's delta as the call's, 1 + Delta_put), given in decreasing delta = increasing
     strike (0.9, 0.75, 0.5, 0.25, 0.1). Delta depends on K only through k = ln(K/F), so
     node j of slice i is the log-moneyness k_ij = sd (sd/2 - N^-1(Delta_j)),
     sd = vol_ij sqrt(T_i): a LOG_MONEYNESS grid whose nodes differ per slice, converted
     once per call (``delta_log_moneyness``; N^-1 is Wichura's AS 241, pg_normal.h) and
     interpolated as above on each slice's own k_ij. The k_ij must increase along each
     slice: vols that make two strikes cross flag the later vol (``CROSSING``). At T_i and
     the node's own strike F e^k_ij the node's vol comes back to rounding (ln(F e^k / F) need
     not give back k's bits), not bit for bit.
   - ``SVI``: raw SVI per slice (J. Gatheral, "A parsimonious arbitrage-free implied
     volatility parameterization with application to the valuation of volatility
     derivatives", Global Derivatives & Risk Management, Madrid, 2004; J. Gatheral and
     A. Jacquier, "Arbitrage-free SVI volatility surfaces", Quantitative Finance 14(1),
     2014, pp. 59-71, sec. 3.1 eq. (3.1)) in total variance: w_i(k) = a + b (rho (k - m)
     + sqrt((k - m)^2 + sigma^2)), k = ln(K/F). Parameter bounds (G-J sec. 3.1): b >= 0,
     |rho| < 1, sigma > 0, a + b sigma sqrt(1 - rho^2) >= 0 (w >= 0), and the wing bound
     b (1 + |rho|) <= 4 (the slopes of w within 4 everywhere: Rogers & Tehranchi, "Can the
     implied volatility surface move by parallel shifts?", Finance Stoch. 14, 2010). Lee's
     moment formula (R. Lee, "The moment formula for implied volatility at extreme strikes",
     Math. Finance 14(3), 2004) bounds the asymptotic slopes b (1 +- rho) of w by 2, i.e.
     b (1 + |rho|) <= 2 for no arbitrage; slices between 2 and 4 are accepted here and
     reported by the pricer layer's butterfly check ("lee_wing"), not refused.
   - ``SABR``: P. S. Hagan, D. Kumar, A. S. Lesniewski and D. E. Woodward, "Managing smile
     risk", Wilmott Magazine, Sept. 2002, pp. 84-108, eq. (2.17a) with its ATM limit
     (2.18): the lognormal vol of (F, K, T_i; alpha, beta, rho, nu) per slice, each slice
     evaluated at the point's own F and K. Bounds: alpha > 0, 0 <= beta <= 1, |rho| < 1,
     nu >= 0. Hagan's expansion can give a negative vol for extreme nu^2 T; such a point
     gets ``NOT_FINITE``.
4. Between slices and outside them, exactly (the same for every kind): at the point's fixed
   axis coordinate (K for a STRIKE grid, K/F otherwise, a DELTA grid included), total variance is linear in T
   between adjacent expiries; before T_1 the vol is T_1's (flat, w = vol^2 T through the
   origin); from T_n on the vol is T_n's (flat, w proportional to T). At T = 0: w = 0 and
   the vol is T_1's. Nodes come back exactly: at T = T_i and an axis node the vol is the
   node's vol bit for bit (DELTA grids: to rounding, note 3). For the STRIKE grid this is QuantLib's ``BlackVarianceSurface``
   with Bilinear interpolation and ``ConstantExtrapolation`` on both strike sides.
5. Status: pg_status.h bits per point: PG_BAD_TIME (T NaN, infinite or < 0), PG_BAD_STRIKE
   (K not finite or not > 0), PG_BAD_UNDERLYING (F not finite or not > 0, checked where the
   surface reads F: moneyness and delta axes, SVI, SABR), PG_BAD_VOL (every point, when the surface
   fails ``validate``: no slices, no nodes, or any flagged entry), PG_NOT_FINITE (valid
   inputs, no finite non-negative variance). Every output of a failed point is NaN; nothing
   else is. Wrong shapes or unknown codes (kind, axis, measure) raise ValueError.
"""

from pg_common cimport out_stride
from cython.parallel cimport prange
from libc.math cimport NAN
from libc.stdlib cimport malloc, free

cdef extern from "pg_surfaces.h" nogil:
    enum:
        PG_SURF_GRID
        PG_SURF_SVI
        PG_SURF_SABR
        PG_AXIS_STRIKE
        PG_AXIS_MONEYNESS
        PG_AXIS_LOG_MONEYNESS
        PG_AXIS_DELTA
        PG_SURF_VOL
        PG_SURF_TOTAL_VARIANCE
        PG_SURF_MEASURE_MAX
        PG_SVI_COLUMNS
        PG_SABR_COLUMNS
        PG_SURF_NOT_FINITE
        PG_SURF_NOT_POSITIVE
        PG_SURF_DUPLICATE
        PG_SURF_NOT_INCREASING
        PG_SURF_OUT_OF_BOUNDS
        PG_SURF_MIN_VARIANCE
        PG_SURF_WING
        PG_SURF_OVERFLOW
        PG_SURF_NOT_DECREASING
        PG_SURF_CROSSING
        PG_SURF_BLOCK
        PG_BAD_STRIKE
        PG_BAD_UNDERLYING
        PG_BAD_VOL
        PG_NOT_FINITE

    ctypedef struct pg_surface:
        int kind
        int n
        int bad

    int pg_surface_max_threads()
    int pg_surface_prepare(pg_surface *S, int kind, int axis, int n, const double *T, int p,
                           const double *x, int q, const double *v, double *work,
                           int *expiry_status, int *node_status, int *value_status)
    Py_ssize_t pg_surface_block(const pg_surface *S, const double *T, const double *K,
                                const double *F, int fstep, Py_ssize_t start, int m,
                                const int *meas, int k, double *out, Py_ssize_t ldo, int *status)
    void pg_svi_eval(const double *r, double k, double *w, double *w1, double *w2)
    double pg_durrleman_g(double k, double w, double w1, double w2)
    double pg_black_call_w(double F, double K, double w)
    double pg_delta_log_moneyness(double delta, double sig, double T)
    int pg_surf_delta_check(const double *x, int j)
    int pg_surf_vol_check(double vol, double T)
    int pg_finite(double x)

__all__ = [
    "GRID", "SVI", "SABR", "KINDS", "STRIKE", "MONEYNESS", "LOG_MONEYNESS", "DELTA", "AXES",
    "VOL", "TOTAL_VARIANCE", "SVI_COLUMNS", "SABR_COLUMNS",
    "NOT_FINITE", "NOT_POSITIVE", "DUPLICATE", "NOT_INCREASING", "OUT_OF_BOUNDS",
    "MIN_VARIANCE", "WING", "OVERFLOW", "NOT_DECREASING", "CROSSING", "CHECK_BITS",
    "PARALLEL_THRESHOLD", "max_threads", "validate", "evaluate", "vols", "delta_log_moneyness",
    "svi_durrleman", "black_calls",
]

GRID = PG_SURF_GRID
SVI = PG_SURF_SVI
SABR = PG_SURF_SABR
KINDS = (GRID, SVI, SABR)
STRIKE = PG_AXIS_STRIKE
MONEYNESS = PG_AXIS_MONEYNESS
LOG_MONEYNESS = PG_AXIS_LOG_MONEYNESS
DELTA = PG_AXIS_DELTA
AXES = (STRIKE, MONEYNESS, LOG_MONEYNESS, DELTA)
#: measure codes of ``evaluate``
VOL = PG_SURF_VOL
TOTAL_VARIANCE = PG_SURF_TOTAL_VARIANCE
#: parameter columns of the slices
SVI_COLUMNS = ("a", "b", "rho", "m", "sigma")
SABR_COLUMNS = ("alpha", "beta", "rho", "nu")
#: check bits of ``validate`` (expiries, axis nodes, slice values)
NOT_FINITE = PG_SURF_NOT_FINITE
NOT_POSITIVE = PG_SURF_NOT_POSITIVE
DUPLICATE = PG_SURF_DUPLICATE
NOT_INCREASING = PG_SURF_NOT_INCREASING
OUT_OF_BOUNDS = PG_SURF_OUT_OF_BOUNDS
MIN_VARIANCE = PG_SURF_MIN_VARIANCE
WING = PG_SURF_WING
OVERFLOW = PG_SURF_OVERFLOW
NOT_DECREASING = PG_SURF_NOT_DECREASING
CROSSING = PG_SURF_CROSSING
#: check bit -> description
CHECK_BITS = {
    NOT_FINITE: "not finite",
    NOT_POSITIVE: "not > 0",
    DUPLICATE: "equal to the previous one",
    NOT_INCREASING: "below the previous one",
    OUT_OF_BOUNDS: "out of bounds",
    MIN_VARIANCE: "a + b sigma sqrt(1 - rho^2) < 0 (negative total variance)",
    WING: "b (1 + |rho|) > 4 (wing slope)",
    OVERFLOW: "vol^2 T overflows",
    NOT_DECREASING: "above the previous one (delta nodes decrease: strikes increase)",
    CROSSING: "strikes cross (the node's ln(K/F) is not above the previous node's)",
}

# Points below which a batch runs on one thread. A grid lookup costs tens of ns, a SABR one
# a few hundred (two slices, each with pow and logs), so 16384 points are far above the few
# us of waking a thread. Not tuned further (the development VM has 2 busy cores).
cdef Py_ssize_t _PARALLEL_THRESHOLD = 16384
PARALLEL_THRESHOLD = _PARALLEL_THRESHOLD


def max_threads():
    """Threads an OpenMP parallel region would use by default (1 without OpenMP)."""
    return pg_surface_max_threads()


cdef int _columns(int kind, int axis, Py_ssize_t p) except -1:
    """Values per slice for ``kind`` (codes checked)."""
    if kind not in KINDS:
        raise ValueError(f"unknown surface kind {kind}; expected one of {KINDS}")
    if kind == PG_SURF_GRID:
        if axis not in AXES:
            raise ValueError(f"unknown strike axis {axis}; expected one of {AXES}")
        return <int>p
    if p != 0:
        raise ValueError(f"nodes has length {p}; an SVI or SABR surface has no axis nodes (pass an empty array)")
    return PG_SVI_COLUMNS if kind == PG_SURF_SVI else PG_SABR_COLUMNS


cdef double *_prepare(pg_surface *S, int kind, int axis, const double[::1] expiries,
                      const double[::1] nodes, const double[:, ::1] values,
                      int *expiry_status, int *node_status, int *value_status) except NULL:
    """Check codes and shapes, allocate the workspace and prepare the surface (caller frees)."""
    cdef Py_ssize_t n = expiries.shape[0], p = nodes.shape[0]
    cdef int q = _columns(kind, axis, p)
    if values.shape[0] != n or values.shape[1] != q:
        raise ValueError(f"values has shape ({values.shape[0]}, {values.shape[1]}); expected ({n}, {q})")
    if n > 1_000_000 or p > 1_000_000 or n * p > 100_000_000:
        raise ValueError(f"{n} expiries x {p} nodes; at most 1,000,000 each and 100,000,000 values")
    cdef Py_ssize_t size = n * p * (2 if kind == PG_SURF_GRID and axis == PG_AXIS_DELTA else 1)
    cdef double *work = <double *>malloc((size + 1) * sizeof(double))
    if work == NULL:
        raise MemoryError()
    cdef const double *T_p = &expiries[0] if n > 0 else NULL
    cdef const double *x_p = &nodes[0] if p > 0 else NULL
    cdef const double *v_p = &values[0, 0] if n > 0 and q > 0 else NULL
    with nogil:
        pg_surface_prepare(S, kind, axis, <int>n, T_p, <int>p, x_p, q, v_p, work,
                           expiry_status, node_status, value_status)
    return work


def validate(int kind, int axis,
             const double[::1] expiries not None,     # IN  n year fractions, increasing, > 0
             const double[::1] nodes not None,        # IN  p axis nodes (GRID), else empty
             const double[:, ::1] values not None,    # IN  (n, q): vols (q = p), SVI (5), SABR (4)
             int[::1] expiry_status not None,         # OUT n check bits, 0 = good
             int[::1] node_status not None,           # OUT p
             int[:, ::1] value_status not None):      # OUT (n, q)
    """Check a surface's data; each entry gets the check bits (``CHECK_BITS``) it fails.

    Returns the number of flagged entries. ``evaluate`` accepts the surface when this is 0
    and it has at least one expiry (and, for a grid, one node). Calendar and butterfly
    arbitrage are not checked here (see ``svi_durrleman``, ``black_calls`` and the pricer
    layer): they are quality gates, not structural faults.
    """
    cdef Py_ssize_t n = expiries.shape[0], p = nodes.shape[0]
    if expiry_status.shape[0] != n:
        raise ValueError(f"expiry_status has length {expiry_status.shape[0]}; expected {n}")
    if node_status.shape[0] != p:
        raise ValueError(f"node_status has length {node_status.shape[0]}; expected {p}")
    if value_status.shape[0] != values.shape[0] or value_status.shape[1] != values.shape[1]:
        raise ValueError("value_status must have the shape of values")
    cdef pg_surface S
    cdef double *work = _prepare(&S, kind, axis, expiries, nodes, values,
                                 &expiry_status[0] if n > 0 else NULL,
                                 &node_status[0] if p > 0 else NULL,
                                 &value_status[0, 0] if value_status.shape[0] > 0 and value_status.shape[1] > 0 else NULL)
    free(work)
    return S.bad


def evaluate(int kind, int axis,
             const double[::1] expiries not None,   # IN  n slices' expiries, years
             const double[::1] nodes not None,      # IN  p axis nodes (GRID), else empty
             const double[:, ::1] values not None,  # IN  (n, q) slice values
             const double[::1] T not None,          # IN  m expiries of the points, years, >= 0
             const double[::1] K not None,          # IN  m strikes, > 0
             const double[::1] F not None,          # IN  m forwards at T (or 1: one for all), > 0
             const int[::1] measures not None,      # IN  k measure codes (VOL, TOTAL_VARIANCE)
             double[:, :] out not None,             # OUT (k, m): row j = measures[j]; rows contiguous
             int[::1] status not None,              # OUT m pg_status.h bits, 0 = evaluated
             int threads):
    """Black vol and/or total variance of a surface at m points (T[i], K[i], F[i]).

    Runs on ``threads`` threads when ``threads > 1`` and ``m >= PARALLEL_THRESHOLD``.
    Returns the number of points whose status is not 0 (their outputs are NaN).
    """
    cdef Py_ssize_t m = T.shape[0], k = measures.shape[0], j
    _columns(kind, axis, nodes.shape[0])
    for j in range(k):
        if measures[j] < 1 or measures[j] > PG_SURF_MEASURE_MAX:
            raise ValueError(f"measures[{j}] = {measures[j]} is not a surface measure (1 vol, 2 total variance)")
    if K.shape[0] != m:
        raise ValueError(f"K has length {K.shape[0]}; expected {m} (T)")
    if F.shape[0] != m and F.shape[0] != 1:
        raise ValueError(f"F has length {F.shape[0]}; expected {m} (T) or 1 (broadcast)")
    if status.shape[0] != m:
        raise ValueError(f"status has length {status.shape[0]}; expected {m} (T)")
    cdef Py_ssize_t ldo = out_stride(out, k, m)
    if m == 0:
        _free_checked(kind, axis, expiries, nodes, values)
        return 0
    return _run(kind, axis, expiries, nodes, values, T, K, F, &measures[0] if k > 0 else NULL,
                <int>k, &out[0, 0] if k > 0 else NULL, ldo, status, threads)


cdef int _free_checked(int kind, int axis, const double[::1] expiries, const double[::1] nodes,
                       const double[:, ::1] values) except -1:
    """Shape checks of an empty batch (so that a wrong surface shape raises either way)."""
    cdef pg_surface S
    free(_prepare(&S, kind, axis, expiries, nodes, values, NULL, NULL, NULL))
    return 0


cdef Py_ssize_t _run(int kind, int axis, const double[::1] expiries, const double[::1] nodes,
                     const double[:, ::1] values, const double[::1] T, const double[::1] K,
                     const double[::1] F, const int *meas_p, int k, double *out_p,
                     Py_ssize_t ldo, int[::1] status, int threads) except -1:
    """The block loop every entry point shares (shapes and codes checked, m > 0)."""
    cdef Py_ssize_t m = T.shape[0]
    cdef Py_ssize_t blk, nblocks, start, nbad = 0
    cdef int mb
    cdef int fstep = 1 if F.shape[0] == m else 0
    cdef pg_surface S
    cdef double *work = _prepare(&S, kind, axis, expiries, nodes, values, NULL, NULL, NULL)
    cdef const double *T_p = &T[0]
    cdef const double *K_p = &K[0]
    cdef const double *F_p = &F[0]
    cdef int *status_p = &status[0]
    nblocks = (m + PG_SURF_BLOCK - 1) // PG_SURF_BLOCK
    try:
        with nogil:
            if threads <= 1 or m < _PARALLEL_THRESHOLD:
                for blk in range(nblocks):
                    start = blk * PG_SURF_BLOCK
                    mb = <int>(m - start if m - start < PG_SURF_BLOCK else PG_SURF_BLOCK)
                    nbad += pg_surface_block(&S, T_p, K_p, F_p, fstep, start, mb, meas_p, k,
                                             out_p, ldo, status_p)
            else:
                for blk in prange(nblocks, num_threads=threads, schedule="static"):
                    start = blk * PG_SURF_BLOCK
                    mb = <int>(m - start if m - start < PG_SURF_BLOCK else PG_SURF_BLOCK)
                    nbad += pg_surface_block(&S, T_p, K_p, F_p, fstep, start, mb, meas_p, k,
                                             out_p, ldo, status_p)
    finally:
        free(work)
    return nbad


def vols(int kind, int axis,
         const double[::1] expiries not None,    # IN  n
         const double[::1] nodes not None,       # IN  p (GRID) or empty
         const double[:, ::1] values not None,   # IN  (n, q)
         const double[::1] T not None,           # IN  m
         const double[::1] K not None,           # IN  m
         const double[::1] F not None,           # IN  m or 1
         double[::1] out not None,               # OUT m Black vols
         int[::1] status not None,               # OUT m
         int threads):
    """``evaluate`` for the vol alone; returns the number of failed points."""
    cdef Py_ssize_t m = T.shape[0]
    cdef int measure = PG_SURF_VOL
    _columns(kind, axis, nodes.shape[0])
    if out.shape[0] != m:
        raise ValueError(f"out has length {out.shape[0]}; expected {m} (T)")
    if K.shape[0] != m:
        raise ValueError(f"K has length {K.shape[0]}; expected {m} (T)")
    if F.shape[0] != m and F.shape[0] != 1:
        raise ValueError(f"F has length {F.shape[0]}; expected {m} (T) or 1 (broadcast)")
    if status.shape[0] != m:
        raise ValueError(f"status has length {status.shape[0]}; expected {m} (T)")
    if m == 0:
        _free_checked(kind, axis, expiries, nodes, values)
        return 0
    return _run(kind, axis, expiries, nodes, values, T, K, F, &measure, 1, &out[0], m, status, threads)


def delta_log_moneyness(const double[::1] expiries not None,   # IN  n year fractions
                        const double[::1] deltas not None,     # IN  p forward call deltas in (0, 1)
                        const double[:, ::1] vols not None,    # IN  (n, p) Black vols
                        double[:, ::1] out not None):          # OUT (n, p) ln(K/F) per slice
    """The nodes of a DELTA grid as log-moneyness, slice by slice (design note 3):
    out[i, j] = sd (sd/2 - N^-1(deltas[j])), sd = vols[i, j] sqrt(expiries[i]), the k whose
    forward call delta N(d1) at vol vols[i, j] and expiry expiries[i] is deltas[j].

    Entries whose expiry (finite, > 0), delta or vol fails its check are NaN; returns their
    number. Crossing (k not increasing along a row) is ``validate``'s, not checked here.
    """
    cdef Py_ssize_t n = expiries.shape[0], p = deltas.shape[0], i, j
    if vols.shape[0] != n or vols.shape[1] != p:
        raise ValueError(f"vols has shape ({vols.shape[0]}, {vols.shape[1]}); expected ({n}, {p})")
    if out.shape[0] != n or out.shape[1] != p:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}); expected ({n}, {p})")
    cdef Py_ssize_t nbad = 0
    cdef double t
    with nogil:
        for i in range(n):
            t = expiries[i]
            for j in range(p):
                if (pg_finite(t) and t > 0.0 and pg_surf_delta_check(&deltas[0], <int>j) == 0
                        and pg_surf_vol_check(vols[i, j], t) == 0):
                    out[i, j] = pg_delta_log_moneyness(deltas[j], vols[i, j], t)
                else:
                    out[i, j] = NAN
                    nbad += 1
    return nbad


def svi_durrleman(const double[::1] params not None,   # IN  5: a, b, rho, m, sigma (total variance)
                  const double[::1] k not None,        # IN  m log-moneyness ln(K/F)
                  double[:, ::1] out not None,         # OUT (4, m): w, dw/dk, d2w/dk2, g
                  int[::1] status not None):           # OUT m pg_status.h bits
    """Raw SVI total variance, its k-derivatives and Durrleman's g(k) at m log-moneyness points.

    g(k) = (1 - k w'/(2w))^2 - (w'^2/4)(1/w + 1/4) + w''/2 (Gatheral & Jacquier 2014,
    Lemma 2.2): a slice is free of butterfly arbitrage iff g >= 0 (and d_+ -> -inf).
    Status: PG_BAD_STRIKE for a k that is not finite, PG_BAD_VOL everywhere for parameters
    outside the bounds of ``validate``, PG_NOT_FINITE where w = 0 (g undefined).
    Returns the number of failed points (NaN in every output).
    """
    cdef Py_ssize_t m = k.shape[0], i
    if params.shape[0] != PG_SVI_COLUMNS:
        raise ValueError(f"params has length {params.shape[0]}; expected {PG_SVI_COLUMNS} ({', '.join(SVI_COLUMNS)})")
    if out.shape[0] != 4 or out.shape[1] != m:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}); expected (4, {m})")
    if status.shape[0] != m:
        raise ValueError(f"status has length {status.shape[0]}; expected {m} (k)")
    cdef pg_surface S
    cdef double one = 1.0
    cdef int bad = pg_surface_prepare(&S, PG_SURF_SVI, 0, 1, &one, 0, NULL, PG_SVI_COLUMNS,
                                      &params[0], NULL, NULL, NULL, NULL)
    cdef double w, w1, w2, g
    cdef int s
    cdef Py_ssize_t nbad = 0
    with nogil:
        for i in range(m):
            s = 0 if pg_finite(k[i]) else PG_BAD_STRIKE
            if bad:
                s = s | PG_BAD_VOL
            if s == 0:
                pg_svi_eval(&params[0], k[i], &w, &w1, &w2)
                g = pg_durrleman_g(k[i], w, w1, w2)
                if not (w > 0.0 and pg_finite(g)):
                    s = PG_NOT_FINITE
            if s:
                w = w1 = w2 = g = NAN
                nbad += 1
            out[0, i] = w
            out[1, i] = w1
            out[2, i] = w2
            out[3, i] = g
            status[i] = s
    return nbad


def black_calls(const double[::1] F not None,   # IN  m forwards (or 1: one for all), > 0
                const double[::1] K not None,   # IN  m strikes, > 0
                const double[::1] w not None,   # IN  m total variances vol^2 T, >= 0
                double[::1] out not None,       # OUT m undiscounted Black calls
                int[::1] status not None):      # OUT m pg_status.h bits
    """Undiscounted Black call prices F N(d1) - K N(d2) from total variance (butterfly checks).

    Status: PG_BAD_UNDERLYING, PG_BAD_STRIKE, PG_BAD_VOL (w NaN, infinite or < 0); such a
    row's price is NaN. Returns the number of failed rows.
    """
    cdef Py_ssize_t m = K.shape[0], i
    if F.shape[0] != m and F.shape[0] != 1:
        raise ValueError(f"F has length {F.shape[0]}; expected {m} (K) or 1 (broadcast)")
    if w.shape[0] != m or out.shape[0] != m or status.shape[0] != m:
        raise ValueError(f"w, out and status must have length {m} (K)")
    cdef Py_ssize_t fstep = 1 if F.shape[0] == m else 0
    cdef Py_ssize_t nbad = 0
    cdef double f
    cdef int s
    with nogil:
        for i in range(m):
            f = F[i * fstep]
            s = 0 if (f > 0.0 and pg_finite(f)) else PG_BAD_UNDERLYING
            if not (K[i] > 0.0 and pg_finite(K[i])):
                s = s | PG_BAD_STRIKE
            if not (w[i] >= 0.0 and pg_finite(w[i])):
                s = s | PG_BAD_VOL
            status[i] = s
            if s:
                out[i] = NAN
                nbad += 1
            else:
                out[i] = pg_black_call_w(f, K[i], w[i])
    return nbad
