# cython: language_level=3
"""European options under the Heston (1993) stochastic-volatility model: prices.

Design
------
1. Pointwise: the formulas live once, as C functions in ``pg_heston.h``: the input check,
   the characteristic function, the quadrature grid and ``pg_heston_group``, which prices
   rows sharing (T, v0, kappa, theta, sigma, rho). ``heston_price_one`` prices a group of
   one row with them.
2. Loops: ``heston_price_batch`` cuts the rows into fixed blocks of ``PG_HESTON_BLOCK``
   (32) rows; in a block the rows with equal (T, v0, kappa, theta, sigma, rho) form one
   group, whose characteristic function values at the quadrature nodes are computed once
   and shared by all its strikes (a strip of strikes then costs one cos/sin per node and
   strike instead of a complex characteristic function). Blocks run on one thread below
   ``PARALLEL_THRESHOLD`` rows, else in a ``prange`` over blocks (each thread owns one
   work buffer of 3 x 65,536 doubles, allocated before the loop), GIL released. A row's
   result depends only on its block's contents, never on the thread split.
3. Numerics:
   - Characteristic function of ln(S_T/F) in the "little Heston trap" form of H. Albrecher,
     P. Mayer, W. Schoutens and J. Tistaert, "The little Heston trap", Wilmott Magazine,
     Jan. 2007, pp. 83-92 (their formulation with g2 = 1/g and e^{-dT}), which is
     continuous on the principal branch of the square root and logarithm; S. Heston, "A closed-form solution for options with stochastic
     volatility", Rev. Fin. Stud. 6(2), 1993, pp. 327-343. beta - d is rewritten as
     -sigma^2 (z^2 + iz)/(beta + d) and the logarithm as a complex log1p, so the small-sigma
     limit (Black-Scholes) loses no digits.
   - Price by the single-integral formula of A. Lewis, "A simple option formula for
     general jump-diffusion and other exponential Levy processes" (2001; the call formula on
     the contour Im z = -1/2), with a Black-Scholes control variate of total variance equal to
     the expected integrated variance (as in L. Andersen and V. Piterbarg, "Moment
     explosions in stochastic volatility models", Finance Stoch. 11, 2007, and
     R. Lord and C. Kahl, "Optimal Fourier inversion in semi-analytical option pricing",
     J. Comput. Finance 10(4), 2007). The difference of the two characteristic functions
     removes the poles at u = +-i/2, so the integrand is smooth and bounded.
   - Quadrature: composite 16-point Gauss-Legendre on [0, U]; U is found by stepping
     (x 1.25) until both characteristic functions over u are below 1e-17. Panel [a, a + h]
     has h = max(1/2, a/2) (graded away from 0, where a moment explosion can bring the
     characteristic function's singularities within about 1/2 of the contour; wider first
     panels lost 1e-8 on high vol-of-vol, long-dated rows), capped at 2/s over the bulk
     [0, 8/s] of the Black control (s its total deviation) and, everywhere, at 8 radians of
     e^{iux} for the group's widest |x|; beyond the bulk the widths grow geometrically (the
     heavy tail of phi decays exponentially, on a log scale). Typically 300-700 nodes;
     about 29,000 at the corner of the domain (1 week, sigma 1.5, rho -0.95); above 4096
     panels a row is refused (NaN, PG_NOT_FINITE) rather than priced on a truncated grid.
     Puts by put-call parity. T = 0: intrinsic value.
   - Accuracy: 5e-14 absolute (prices on spot 100) against QuantLib's AnalyticHestonEngine
     with the angled contour of L. Andersen and M. Lake ("Robust high-precision option
     pricing by Fourier transforms: contour deformations and double-exponential
     quadrature", 2018) and exp-sinh quadrature to 1e-14 on 3000
     random rows and the 256 corners of the domain (tests/ext/test_heston_kernel.py).
   - Vector math: the node loops are `omp simd` loops over inline complex arithmetic
     (branch-free square root and division) calling libmvec's exp, sin, cos, hypot, atan2
     and log1p. gcc fuses sin(y) and cos(y) of the same y into a scalar sincos, which has
     no vector form, so the sine is taken of y + 0.0 (not folded: -0 + 0 = +0).
     Measured on the 2-core development VM (10,000 options, best of 5, busy neighbours):
     15.5 us per option with random parameters, 2.4 us per option in strike strips of 32
     sharing parameters (1 thread); QuantLib's angled-contour engine, reused, 182 us and its
     (model, 192) Gauss-Laguerre form 74 us per option.
4. Status: pg_status.h bits per row (PG_BAD_HESTON_* for the model's parameters); a failed
   row's price is NaN.
"""

from pg_common cimport input_bit
from cython.parallel cimport prange, threadid
from libc.stdlib cimport malloc, free

cdef extern from "pg_heston.h" nogil:
    enum:
        PG_HESTON_BLOCK
        PG_HESTON_MAX_NODES
    ctypedef struct pg_heston_inputs:
        const int *option_type
        const double *strike
        const double *time
        const double *spot
        const double *rate
        const double *dividend
        const double *v0
        const double *kappa
        const double *theta
        const double *sigma
        const double *rho
        int broadcast
    void pg_heston_init()
    Py_ssize_t pg_heston_block(const pg_heston_inputs *inp, Py_ssize_t start, int m,
                               double *out, int *status, double *work)
    int pg_max_threads()

__all__ = ["PARALLEL_THRESHOLD", "max_threads", "heston_price_batch", "heston_price_one"]

pg_heston_init()

# A Heston row costs microseconds (hundreds of characteristic-function nodes), so a second
# thread pays off from a few blocks on.
cdef Py_ssize_t _PARALLEL_THRESHOLD = 128
PARALLEL_THRESHOLD = _PARALLEL_THRESHOLD


def max_threads():
    """Threads an OpenMP parallel region would use by default (1 without OpenMP)."""
    return pg_max_threads()


def heston_price_batch(const int[::1] option_type not None,   # IN  OptionType codes
                       const double[::1] strike not None,     # IN
                       const double[::1] time not None,       # IN  years, >= 0
                       const double[::1] spot not None,       # IN
                       const double[::1] rate not None,       # IN  continuously compounded
                       const double[::1] dividend not None,   # IN  continuous yield
                       const double[::1] v0 not None,         # IN  initial variance, >= 0
                       const double[::1] kappa not None,      # IN  mean reversion, > 0
                       const double[::1] theta not None,      # IN  long-run variance, > 0
                       const double[::1] sigma not None,      # IN  vol of variance, > 0
                       const double[::1] rho not None,        # IN  correlation, |rho| < 1
                       double[::1] out not None,              # OUT n prices
                       int[::1] status not None,              # OUT n: pg_status.h bits
                       int threads):
    """Price n = len(status) European options under Heston.

    Every input has length n or 1 (broadcast). Rows sharing (time, v0, kappa, theta, sigma,
    rho) inside a block of 32 share their characteristic function evaluations. Runs on
    ``threads`` threads when ``threads > 1`` and ``n >= PARALLEL_THRESHOLD``. Returns the
    number of rows whose status is not 0 (their price is NaN).
    """
    cdef Py_ssize_t n = status.shape[0]
    cdef Py_ssize_t blk, nblocks, start, nbad = 0
    cdef int m
    cdef pg_heston_inputs inp
    cdef double *work = NULL
    inp.broadcast = (
        input_bit("option_type", option_type.shape[0], n, 1 << 0)
        | input_bit("strike", strike.shape[0], n, 1 << 1)
        | input_bit("time", time.shape[0], n, 1 << 2)
        | input_bit("spot", spot.shape[0], n, 1 << 3)
        | input_bit("rate", rate.shape[0], n, 1 << 4)
        | input_bit("dividend", dividend.shape[0], n, 1 << 5)
        | input_bit("v0", v0.shape[0], n, 1 << 6)
        | input_bit("kappa", kappa.shape[0], n, 1 << 7)
        | input_bit("theta", theta.shape[0], n, 1 << 8)
        | input_bit("sigma", sigma.shape[0], n, 1 << 9)
        | input_bit("rho", rho.shape[0], n, 1 << 10)
    )
    if out.shape[0] != n:
        raise ValueError(f"out has length {out.shape[0]}; expected {n}")
    if n == 0:
        return 0
    inp.option_type = &option_type[0]
    inp.strike = &strike[0]
    inp.time = &time[0]
    inp.spot = &spot[0]
    inp.rate = &rate[0]
    inp.dividend = &dividend[0]
    inp.v0 = &v0[0]
    inp.kappa = &kappa[0]
    inp.theta = &theta[0]
    inp.sigma = &sigma[0]
    inp.rho = &rho[0]
    cdef double *out_p = &out[0]
    cdef int *status_p = &status[0]

    nblocks = (n + PG_HESTON_BLOCK - 1) // PG_HESTON_BLOCK
    cdef int nthreads = threads if threads > 1 and n >= _PARALLEL_THRESHOLD else 1
    cdef Py_ssize_t per_thread = 3 * PG_HESTON_MAX_NODES
    # one work buffer per thread, allocated here so that a failure raises MemoryError
    work = <double *> malloc(nthreads * per_thread * sizeof(double))
    if work == NULL:
        raise MemoryError()
    try:
        with nogil:
            if nthreads == 1:
                for blk in range(nblocks):
                    start = blk * PG_HESTON_BLOCK
                    m = <int>(n - start if n - start < PG_HESTON_BLOCK else PG_HESTON_BLOCK)
                    nbad += pg_heston_block(&inp, start, m, out_p, status_p, work)
            else:
                for blk in prange(nblocks, num_threads=nthreads, schedule="dynamic"):
                    start = blk * PG_HESTON_BLOCK
                    m = <int>(n - start if n - start < PG_HESTON_BLOCK else PG_HESTON_BLOCK)
                    nbad += pg_heston_block(&inp, start, m, out_p, status_p,
                                            work + threadid() * per_thread)
    finally:
        free(work)
    return nbad


def heston_price_one(int option_type, double strike, double time, double spot, double rate,
                     double dividend, double v0, double kappa, double theta, double sigma,
                     double rho):
    """One trade through the same functions as ``heston_price_batch``: (status, price)."""
    cdef pg_heston_inputs inp
    cdef double price
    cdef int st
    cdef double *work = <double *> malloc(3 * PG_HESTON_MAX_NODES * sizeof(double))
    if work == NULL:
        raise MemoryError()
    inp.option_type = &option_type
    inp.strike = &strike
    inp.time = &time
    inp.spot = &spot
    inp.rate = &rate
    inp.dividend = &dividend
    inp.v0 = &v0
    inp.kappa = &kappa
    inp.theta = &theta
    inp.sigma = &sigma
    inp.rho = &rho
    inp.broadcast = (1 << 11) - 1
    with nogil:
        pg_heston_block(&inp, 0, 1, &price, &st, work)
    free(work)
    return st, price
