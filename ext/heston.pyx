# cython: language_level=3
"""European options under the Heston (1993) stochastic-volatility model: price and Greeks.

Design
------
1. Pointwise: the formulas live once, as C functions in ``pg_heston.h``: the input check,
   the characteristic function (with B = d ln(phi)/d v0), the quadrature grid, the node
   values of the integrands, a strike's integrals (``pg_heston_strike``) and
   ``pg_heston_row``, which turns a row's integrals into its measures.
2. Loops: ``price_batch`` cuts the rows into fixed blocks of ``PG_HESTON_BLOCK`` (32); in a
   block the rows with equal (T, v0, kappa, theta, sigma, rho) form one group, whose
   characteristic-function values at the quadrature nodes are computed once and shared by
   all its strikes. Each thread also keeps its last ``PG_HESTON_CACHE`` (8) groups, so that
   a batch of many strikes under a few parameter sets (a strike/expiry surface, in any row
   order) computes each set's node values about once per thread. The grid depends only on
   the parameters and on a bucket of the group's widest |ln(F/K)| (powers of sqrt 2 from
   1/16), so a cached group gives bit-identical results: a row's result depends only on
   its block's contents, never on the thread split or the cache. Blocks run on one thread
   below ``PARALLEL_THRESHOLD`` rows, else in a ``prange`` over blocks, GIL released. Work
   buffers grow on demand (a one-row call allocates a few tens of kB, no thread starts).
   With a stop block (``stop``, pg_stop.h) each block polls for cancellation and the
   deadline before it starts (a block is under a millisecond).
3. Numerics:
   - Characteristic function of ln(S_T/F) in the "little Heston trap" form of H. Albrecher,
     P. Mayer, W. Schoutens and J. Tistaert, "The little Heston trap", Wilmott Magazine,
     Jan. 2007, pp. 83-92 (their formulation with g2 = 1/g and e^{-dT}), which is
     continuous on the principal branch of the square root and logarithm; S. Heston, "A
     closed-form solution for options with stochastic volatility", Rev. Fin. Stud. 6(2),
     1993, pp. 327-343. beta - d is rewritten as -sigma^2 (z^2 + iz)/(beta + d) and the
     logarithm as a complex log1p, so the small-sigma limit (Black-Scholes) loses no digits.
     Complex quotients are products with conj(b)/|b|^2 (one real division each).
   - Price by the single-integral formula of A. Lewis, "A simple option formula for
     general jump-diffusion and other exponential Levy processes" (2001; the call formula
     on the contour Im z = -1/2), with a Black-Scholes control variate of total variance
     equal to the expected integrated variance (as in L. Andersen and V. Piterbarg, "Moment
     explosions in stochastic volatility models", Finance Stoch. 11, 2007, and R. Lord and
     C. Kahl, "Optimal Fourier inversion in semi-analytical option pricing", J. Comput.
     Finance 10(4), 2007). The difference of the two characteristic functions removes the
     poles at u = +-i/2, so the integrand is smooth and bounded.
   - Quadrature: composite 16-point Gauss-Legendre on [0, U]. U is the first point of the
     ladder 1.25^k where, for two points running, both characteristic functions over u are
     below 1e-15 (the neglected tail is then below about 1e-15 sqrt(FK)/pi; the ladder is
     evaluated 8 points per vector step). The panels form runs of equal width: widths start
     at 1/2 and double every two panels (a panel starting at a is about a/2 wide: graded
     away from 0, where a moment explosion can bring the characteristic function's
     singularities within about 1/2 of the contour) up to 2/s over the bulk [0, 8/s] of the
     Black control (s its total deviation) and up to 8 radians of e^{iux} (for the group's
     |x| bucket) everywhere; at a cap one run of equal panels reaches the end of its region.
     Typically 6-10 runs and 300-800 nodes; above 16,384 panels a row is refused (NaN,
     PG_NOT_FINITE) rather than priced on a truncated grid. Puts by put-call parity.
     T = 0: intrinsic value.
   - Short maturities. U grows like 8/s as T -> 0 (s^2 ~ v0 T), so a fixed floor of 1/16
     on the |x| bucket would need U/128 panels (25 ms for one row at T = 1e-9, over the cap
     below 3e-10 at the money, and below 1e-4 years for v0 = 0); the floor is therefore
     lowered to 1024/U when U > 16384, which keeps at least 128 panels over [0, U] and 8
     radians of e^{iux} per panel (``pg_heston_entry_for``; grids with U <= 16384, the whole
     tested domain, are unchanged). Where the variance hardly moves within T (sigma^2 T <=
     1e-4 v0), a row at or below ``SHORT_MATURITY`` (1e-10 years, 3 ms), or with a strike at
     least 40 s from the forward, is priced by the short-maturity limit: Black-Scholes with
     the expected integrated variance
     Sigma(T) (v_bar = theta + (v0 - theta)(1 - e^{-kappa T})/(kappa T)), Greeks through
     Sigma. Its error is the third cumulant the control lacks, to first order
     -(rho sigma T/4) F n(d1) d2 on the undiscounted call, at most 0.061 |rho| sigma F T
     (2.1e-10 on F = 100 at the threshold for v0 = theta = 0.04, kappa = 1.5, sigma = 0.5,
     rho = -0.7); below the threshold the integral's own accuracy falls (1 - e^{-dT} in the
     characteristic function keeps about 1e-16/|dT| relative accuracy). Deep rows are the
     intrinsic value to the last bit (the time value of both laws is below e^{-700} F there).
     Where v0 is small against sigma^2 T (v0 = 0 in particular) the law of X/T is not
     Gaussian at any T and the integral prices the row down to 1e-13 years (3 us), with a
     relative accuracy that falls as T does (1e-4 at 1e-12 for v0 = 0); below that, or where
     its grid is over the cap below the threshold, the limit is a last resort (price within
     order sigma F T, Greeks O(1) off but those of a price).
     ``pg_heston_limit_wanted`` in ``pg_heston.h`` has the argument; the checks (QuantLib for
     T = 1e-4..1e-8 through the time scaling of the model, the small-time expansion below,
     continuity at the threshold) are in tests/ext/test_heston_kernel.py.
   - Strikes: in a run of P panels of width h from a0 the nodes are a0 + (2p + 1) h/2 +
     t h/2, so sum_j e^{i u_j x} A_j = e^{i (a0 + h/2) x} sum_t e^{i t h x/2} G_t with
     G_t = sum_p z^p A(p, t), z = e^{ihx}: Horner's rule in z (|z| = 1, so stable), in two
     interleaved chains, on gcc vectors that stay in registers. A strike costs 10 sin/cos
     per run (one vector loop) and a complex multiply-add per node and integrand, instead of
     a sin and a cos per node (10,000 options of one strike strip, same VM: 1.85 us per
     option with a sin and cos per node, 0.52-0.58 us with runs).
   - Vector math: the node loops are `omp simd` loops over inline complex arithmetic
     (branch-free square root) calling libmvec's exp, sin, cos, hypot, atan2 and log1p.
     gcc fuses sin(y) and cos(y) of the same y into a scalar sincos, which has no vector
     form, so the sine is taken of y + 0.0 (not folded: -0 + 0 = +0); exp's argument is
     floored at -700 (libmvec sends underflowing lanes to the scalar exp); fmax has no
     vector form, so maxima are written as comparisons.
   - Accuracy (tests/ext/test_heston_kernel.py): 1.4e-13 absolute (prices on spot 100)
     against QuantLib's AnalyticHestonEngine with the angled contour of L. Andersen and
     M. Lake ("Robust high-precision option pricing by Fourier transforms: contour
     deformations and double-exponential quadrature", 2018) and exp-sinh quadrature to
     1e-14, on 2000 random rows of a wide domain (1 day to 15 years, K/S 0.25-4, sigma up
     to 1.5, rho -0.99..0.95, Feller mostly violated), 8.5e-13 on its 256 corners (there
     QuantLib's own error), 1.8e-14 against Alan Lewis's 50-digit reference prices.
   - Speed (bench/test_bench_heston.py and bench/report_heston.py, one thread, medians of
     one run on the 2-core development VM with a load average near 3 from other work):
     100,000 options on a five-expiry surface under one parameter set 1.77 us per option
     against 80 us for QuantLib's default AnalyticHestonEngine (Gauss-Laguerre; it agrees
     with ours to 2.3e-13 there), 45x, and 384 us for the angled contour, 217x; random
     parameters per row 15.9 us against 348 us for the angled contour (agreeing to 4.6e-14),
     22x, and 134 us for the default engine (off by up to 3.6e-8 on that book), 8x. Three
     runs gave 45-76x and 22-33x; a quieter moment gave 0.52-0.75 us per surface option
     and 8.3 us per random one (best of 7 calls of price_batch). Two threads did not beat one
     on that loaded VM.
4. Greeks, all analytic (``GREEK_METHODS``), by differentiating the Lewis integral under
   the integral sign and the Black control in closed form (formulas in ``pg_heston.h``,
   ``pg_heston_row``): with x = ln(F/K), d/dx brings down iu (delta, gamma; vanna and charm
   from the vega and maturity integrands); d phi/d v0 = B phi, d2 phi/d v0^2 = B^2 phi
   (vega, volga, vanna); d phi/dT = (kappa theta B + v0 dB/dT) phi at fixed F, with dB/dT
   from the Riccati equation of the variance coefficient, dB/dT = sigma^2 B^2/2 - beta B -
   (z^2 + iz)/2 (J. Gatheral, "The Volatility Surface", Wiley 2006, ch. 2), for theta and
   charm. Up to four integrand families (price, d/dv0, d2/dv0^2, d/dT) and their products
   with iu and (iu)^2 are evaluated at the same nodes; only the families the requested
   measures need are built (price only; price and spot derivatives; all). Rho and dividend
   rho come from the forward's dependence on r and q (the characteristic function of
   ln(S_T/F) does not depend on them). Accuracy against fourth-order differences of
   QuantLib's prices and of our own: 1e-10 to 5e-8 absolute (the differences' own error).
   Conventions (common.proto): delta dV/dS, gamma d2V/dS2; Heston vega is per 1.00 of the
   instantaneous volatility sqrt(v0), the other parameters fixed: dV/d sqrt(v0) =
   2 sqrt(v0) dV/dv0 (0 at v0 = 0); volga d2V/d sqrt(v0)^2; vanna d2V/dS d sqrt(v0);
   theta = -dV/dT per year (calendar time passing, everything else fixed); rho dV/dr with
   q fixed; dividend_rho dV/dq; charm -d(delta)/dT per year. T = 0: intrinsic price,
   delta the step (half at the money), every other Greek 0.
5. Status: pg_status.h bits per row (PG_BAD_OPTION_TYPE, PG_BAD_STRIKE, PG_BAD_TIME,
   PG_BAD_UNDERLYING, PG_BAD_RATE, PG_BAD_DIVIDEND, PG_BAD_HESTON_V0 .. _RHO); a failed
   row has NaN in every output; valid inputs with a non-finite result (or a grid over its
   cap) get PG_NOT_FINITE.
"""

from pg_common cimport input_bit, pg_stop_cut_rows, pg_stop_poll, stop_block
from libc.stdint cimport int64_t
from cython.parallel cimport prange, threadid
from libc.stdlib cimport malloc, free

cdef extern from "pg_heston.h" nogil:
    enum:
        PG_HESTON_BLOCK
        PG_HESTON_CACHE
        PG_MEASURE_MAX
    double PG_HESTON_SHORT_T
    double PG_HESTON_FLOOR_T
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
    ctypedef struct pg_heston_work:
        int oom
    void pg_heston_init()
    void pg_heston_work_init(pg_heston_work *w, int slots)
    void pg_heston_work_free(pg_heston_work *w)
    Py_ssize_t pg_heston_block(const pg_heston_inputs *inp, Py_ssize_t start, int m,
                               const int *meas, int k, double *out, Py_ssize_t ldo,
                               int *status, pg_heston_work *w)
    int pg_max_threads()

__all__ = ["MEASURES", "GREEK_METHODS", "PARALLEL_THRESHOLD", "SHORT_MATURITY",
           "SHORT_MATURITY_FLOOR", "max_threads", "price_batch"]

pg_heston_init()

#: Measure codes price_batch computes (pricegrid.v1.Measure): price, delta, gamma, vega,
#: theta, rho, dividend_rho, vanna, volga, charm.
MEASURES = tuple(range(1, PG_MEASURE_MAX + 1))
#: How each Greek is obtained: differentiation under the Lewis integral (design note, 4).
GREEK_METHODS = {code: "analytic" for code in MEASURES if code != 1}
#: Years: at or below, rows whose variance is Gaussian at their scale are priced by the
#: short-maturity limit; at or below ``SHORT_MATURITY_FLOOR`` every row is (design note, 3).
SHORT_MATURITY = PG_HESTON_SHORT_T
SHORT_MATURITY_FLOOR = PG_HESTON_FLOOR_T

# A Heston row costs 0.5-10 us, so a second thread pays off from a few blocks on. Measured
# on the 2-core development VM (busy neighbours; medians of 31): a surface book 2 threads
# vs 1, 64 rows 1.2x, 256 rows 1.5x, 512 rows 1.6x (one 128-row run stalled); random-
# parameter rows were slower on 2 threads at every size in that run, the second core being
# held by another process. A judgement on noisy data.
cdef Py_ssize_t _PARALLEL_THRESHOLD = 256
PARALLEL_THRESHOLD = _PARALLEL_THRESHOLD


def max_threads():
    """Threads an OpenMP parallel region would use by default (1 without OpenMP)."""
    return pg_max_threads()


def price_batch(const int[::1] option_type not None,     # IN  OptionType codes
                const double[::1] strike not None,       # IN  > 0
                const double[::1] time not None,         # IN  years, >= 0
                const double[::1] spot not None,         # IN  > 0
                const double[::1] rate not None,         # IN  continuously compounded
                const double[::1] dividend_yield not None,  # IN  continuous yield
                const double[::1] v0 not None,           # IN  initial variance, >= 0
                const double[::1] kappa not None,        # IN  mean reversion, > 0
                const double[::1] theta not None,        # IN  long-run variance, > 0
                const double[::1] sigma not None,        # IN  vol of variance, > 0
                const double[::1] rho not None,          # IN  correlation, |rho| < 1
                const int[::1] measures not None,        # IN  k Measure codes
                double[:, :] out not None,               # OUT (k, n): row j = measures[j]; rows contiguous
                int[::1] status not None,                # OUT n: pg_status.h bits
                int threads,
                stop=None):                              # IN/OUT the stop block (pg_stop.h) or None
    """Price n = len(status) European options under Heston, with the requested Greeks.

    Every input has length n or 1 (broadcast). ``out[j]`` receives measure ``measures[j]``
    (Measure codes 1..10, see ``MEASURES``); each row of ``out`` must be contiguous, rows
    may be apart (``out[:, a:b]`` of a wider array). Rows sharing (time, v0, kappa, theta,
    sigma, rho) share their characteristic-function evaluations. Runs on ``threads``
    threads when ``threads > 1`` and ``n >= PARALLEL_THRESHOLD``. Returns the number of
    rows whose status is not 0 (their outputs are NaN). ``stop``: a stop block (int64[3],
    pg_stop.h) polled before each block of PG_HESTON_BLOCK rows (under a millisecond);
    once it says stop, the blocks not done get PG_CANCELLED and NaN.
    """
    cdef Py_ssize_t n = status.shape[0]
    cdef Py_ssize_t k = measures.shape[0]
    cdef Py_ssize_t j, blk, nblocks, start, nbad = 0
    cdef int m, t, oom = 0
    cdef pg_heston_inputs inp
    cdef pg_heston_work *work = NULL
    cdef double *out_p = NULL
    inp.broadcast = (
        input_bit("option_type", option_type.shape[0], n, 1 << 0)
        | input_bit("strike", strike.shape[0], n, 1 << 1)
        | input_bit("time", time.shape[0], n, 1 << 2)
        | input_bit("spot", spot.shape[0], n, 1 << 3)
        | input_bit("rate", rate.shape[0], n, 1 << 4)
        | input_bit("dividend_yield", dividend_yield.shape[0], n, 1 << 5)
        | input_bit("v0", v0.shape[0], n, 1 << 6)
        | input_bit("kappa", kappa.shape[0], n, 1 << 7)
        | input_bit("theta", theta.shape[0], n, 1 << 8)
        | input_bit("sigma", sigma.shape[0], n, 1 << 9)
        | input_bit("rho", rho.shape[0], n, 1 << 10)
    )
    for j in range(k):
        if measures[j] < 1 or measures[j] > PG_MEASURE_MAX:
            raise ValueError(f"measures[{j}] = {measures[j]} is not a Measure code this "
                             f"kernel supports (1..{PG_MEASURE_MAX})")
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
    inp.v0 = &v0[0]
    inp.kappa = &kappa[0]
    inp.theta = &theta[0]
    inp.sigma = &sigma[0]
    inp.rho = &rho[0]
    if k > 0:
        out_p = &out[0, 0]
    cdef const int *meas_p = &measures[0] if k > 0 else NULL
    cdef int *status_p = &status[0]
    cdef int64_t *stp = stop_block(stop)

    nblocks = (n + PG_HESTON_BLOCK - 1) // PG_HESTON_BLOCK
    cdef int nthreads = threads if threads > 1 and n >= _PARALLEL_THRESHOLD else 1
    # one work space per thread (about 20 kB of bookkeeping; its node buffers grow on
    # demand); a single block has nothing to reuse between blocks, so one cache slot
    work = <pg_heston_work *> malloc(nthreads * sizeof(pg_heston_work))
    if work == NULL:
        raise MemoryError()
    for t in range(nthreads):
        pg_heston_work_init(&work[t], PG_HESTON_CACHE if nblocks > 1 else 1)
    try:
        with nogil:
            if nthreads == 1:
                for blk in range(nblocks):
                    start = blk * PG_HESTON_BLOCK
                    m = <int>(n - start if n - start < PG_HESTON_BLOCK else PG_HESTON_BLOCK)
                    if pg_stop_poll(stp):
                        nbad += pg_stop_cut_rows(status_p, out_p, ldo, <int>k, start, m)
                    else:
                        nbad += pg_heston_block(&inp, start, m, meas_p, <int>k, out_p, ldo,
                                                status_p, work)
            else:
                for blk in prange(nblocks, num_threads=nthreads, schedule="dynamic"):
                    start = blk * PG_HESTON_BLOCK
                    m = <int>(n - start if n - start < PG_HESTON_BLOCK else PG_HESTON_BLOCK)
                    if pg_stop_poll(stp):
                        nbad += pg_stop_cut_rows(status_p, out_p, ldo, <int>k, start, m)
                    else:
                        nbad += pg_heston_block(&inp, start, m, meas_p, <int>k, out_p, ldo,
                                                status_p, &work[threadid()])
        for t in range(nthreads):
            oom |= work[t].oom
    finally:
        for t in range(nthreads):
            pg_heston_work_free(&work[t])
        free(work)
    if oom:
        raise MemoryError("Heston kernel: work buffers could not be allocated")
    return nbad
