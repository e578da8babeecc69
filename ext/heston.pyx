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
   work buffer), GIL released. A row's result depends only on its block's contents, never
   on the thread split.
3. Numerics:
   - Characteristic function of ln(S_T/F) in the "little Heston trap" form of H. Albrecher,
     P. Mayer, W. Schoutens and J. Tistaert, "The little Heston trap", Wilmott Magazine,
     Jan. 2007, pp. 83-92 (eq. for phi with g2 = 1/g, p. 84-85), which is continuous on the
     principal branch; S. Heston, "A closed-form solution for options with stochastic
     volatility", Rev. Fin. Stud. 6(2), 1993, pp. 327-343. beta - d is rewritten as
     -sigma^2 (z^2 + iz)/(beta + d) and the logarithm as a complex log1p, so the small-sigma
     limit (Black-Scholes) loses no digits.
   - Price by the single-integral formula of A. Lewis, "A simple option formula for
     general jump-diffusion and other exponential Levy processes" (2001), eq. (3.11)
     (contour Im z = -1/2), with a Black-Scholes control variate of total variance equal to
     the expected integrated variance (as in L. Andersen and V. Piterbarg, "Moment
     explosions in stochastic volatility models", Finance Stoch. 11, 2007, and
     R. Lord and C. Kahl, "Optimal Fourier inversion in semi-analytical option pricing",
     J. Comput. Finance 10(4), 2007). The difference of the two characteristic functions
     removes the poles at u = +-i/2, so the integrand is smooth and bounded.
   - Quadrature: composite 16-point Gauss-Legendre on [0, U]; U is found by stepping
     until both characteristic functions over u are below 1e-17; panels are uniform (width
     min(2/s, 8/|x|), s the total deviation) over the bulk [0, 8/s] and then double in
     width (the heavy tail of phi decays exponentially, on a log scale), never spanning
     more than 8 radians of e^{iux}. Puts by put-call parity. T = 0: intrinsic value.
4. Status: pg_status.h bits per row (PG_BAD_HESTON_* for the model's parameters); a failed
   row's price is NaN.
"""

from cython.parallel cimport prange, parallel
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


cdef inline int _input(str name, Py_ssize_t size, Py_ssize_t n, int bit) except -1:
    """0 for an input of length n, `bit` for one of length 1 (broadcast), else ValueError."""
    if size == n:
        return 0
    if size == 1:
        return bit
    raise ValueError(f"{name} has length {size}; expected {n} (rows) or 1 (broadcast)")


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
        _input("option_type", option_type.shape[0], n, 1 << 0)
        | _input("strike", strike.shape[0], n, 1 << 1)
        | _input("time", time.shape[0], n, 1 << 2)
        | _input("spot", spot.shape[0], n, 1 << 3)
        | _input("rate", rate.shape[0], n, 1 << 4)
        | _input("dividend", dividend.shape[0], n, 1 << 5)
        | _input("v0", v0.shape[0], n, 1 << 6)
        | _input("kappa", kappa.shape[0], n, 1 << 7)
        | _input("theta", theta.shape[0], n, 1 << 8)
        | _input("sigma", sigma.shape[0], n, 1 << 9)
        | _input("rho", rho.shape[0], n, 1 << 10)
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
    if threads <= 1 or n < _PARALLEL_THRESHOLD:
        work = <double *> malloc(3 * PG_HESTON_MAX_NODES * sizeof(double))
        if work == NULL:
            raise MemoryError()
        with nogil:
            for blk in range(nblocks):
                start = blk * PG_HESTON_BLOCK
                m = <int>(n - start if n - start < PG_HESTON_BLOCK else PG_HESTON_BLOCK)
                nbad += pg_heston_block(&inp, start, m, out_p, status_p, work)
        free(work)
    else:
        with nogil, parallel(num_threads=threads):
            work = <double *> malloc(3 * PG_HESTON_MAX_NODES * sizeof(double))
            for blk in prange(nblocks, schedule="dynamic"):
                start = blk * PG_HESTON_BLOCK
                m = <int>(n - start if n - start < PG_HESTON_BLOCK else PG_HESTON_BLOCK)
                if work != NULL:
                    nbad += pg_heston_block(&inp, start, m, out_p, status_p, work)
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
