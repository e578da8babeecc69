# cython: language_level=3
"""Continuously monitored lookback options under Black-Scholes-Merton: price and Greeks.

Design
------
1. Pointwise: the formulas live once, as C functions in ``pg_lookback.h``:
   ``pg_lookback_check`` validates one row, ``pg_lookback_direct`` is the closed form,
   ``pg_lookback_G_series`` its zero-carry quotient summed as a series, and
   ``pg_lookback_core`` prices a block's rows with them.
2. Loops: ``lookback_price_batch`` cuts the rows into fixed blocks of ``PG_LOOKBACK_BLOCK``
   (32). Per block one ``omp simd`` loop evaluates the closed form (libmvec exp, log,
   erfc), rows near zero carry are redone with the series (scalar), one more ``omp simd``
   loop gives delta, gamma, vega and theta, and rho costs four more passes on bumped
   rates. Blocks run on one thread below ``PARALLEL_THRESHOLD`` rows, else in a
   ``prange`` over blocks, GIL released; results do not depend on the thread count.
3. Numerics (b = r - q, s = vol sqrt(T), lambda = 2b/vol^2; the formula as written out in
   pg_lookback.h, note 1):
   - Floating strike, payoff S_T - min (call) or max - S_T (put): M. B. Goldman,
     H. B. Sosin and M. A. Gatto, "Path dependent options: buy at the low, sell at the
     high", J. Finance 34(5) (1979), pp. 1111-1127; with the running extremum as in
     E. G. Haug, "The Complete Guide to Option Pricing Formulas", 2nd ed., McGraw-Hill 2007,
     sec. 4.15.1 (1st ed. 1998, pp. 61-62).
   - Fixed strike, payoff max(max - K, 0) (call) or max(K - min, 0) (put): A. Conze and
     Viswanathan, "Path dependent options: the case of lookback options", J. Finance 46(5)
     (1991), pp. 1893-1907; Haug 2nd ed. sec. 4.15.2 (1st ed. pp. 63-64): when K is
     already beaten by the extremum (call K <= max, put K >= min) the option is the
     floating-style formula on the extremum plus the discounted intrinsic
     e^{-rT}(max - K) (e^{-rT}(K - min)).
   - Zero carry: the formulas divide by b through sigma^2/(2b). Near b = 0 the quotient
     [(S/H)^{-lambda} N(.) - e^{bT} N(.)]/lambda is summed as a Taylor series in lambda
     (pg_lookback.h, note 2) when |lambda| (|ln(S/H)| + s (|d1| + 5)) <= 1/4, so b = 0
     (q = r, Black-76) is the exact limit and nearby carries lose no digits; elsewhere the
     direct quotient loses at most a few eps / (1/4) of the correction term. (QuantLib
     switches to the b = 0 limit below |lambda| = 1e-7, an error of order lambda there and
     eps/lambda just above.)
   - N(x) = erfc(-x/sqrt 2)/2; (S/H)^{-lambda} N(x) for x < -30 by the Mills ratio (no
     overflow when lambda ln(S/H) is large).
4. Greeks (MEASURES 1..7). Delta, gamma, vega: analytic. The identity
   (S/H)^{-lambda} n(d1 - lambda s) = n(d1) e^{bT} (H the level of the formula, L =
   ln(S/H)) cancels the n(.) terms of the spot and vol derivatives of the correction term,
   leaving delta = eta [e^{-qT} N(eta d1) + kappa e^{-rT} (G - P)], gamma = (eta/S)
   [2 eta e^{-qT} n(d1)/s + kappa (lambda - 1) e^{-rT} P], vega = eta kappa (2/vol) S e^{-rT}
   (L P + G), with G the stable quotient above and P = (S/H)^{-lambda} N(zeta(d1 - lambda s))
   (pg_lookback.h, note 3); no division by b. Theta: from the Black-Scholes equation,
   theta = r V - b S delta - vol^2 S^2 gamma / 2, which the price satisfies as a function of
   spot and time at a fixed running extremum (the option ages, the extremum stays); an
   identity of the closed form, so "analytic". Rho: four-point central difference of the
   closed form in r ("finite_difference"), (f(-2h) - 8 f(-h) + 8 f(h) - f(2h))/(12h), with
   h = 0.002 / (a sqrt(T)/vol + 2 |ln(S/H)|/vol^2 + 2T), a = sum over d1, d2 and
   zeta(d1 - lambda s) of 1 + |d| (0.2% of the scale on which the price varies in r:
   truncation about 5e-13 and rounding about 2e-13 of rho's scale). Dividend rho =
   -T V - rho exactly (V is e^{-rT} times a function of r - q), so it shares rho's method.
   All checked against 60-digit central differences in tests/ext/test_lookback_kernel.py.
   Delta and gamma hold the running extremum fixed (the formula is analytic in S through
   and below it, so a new trade with S at its extremum is differentiated like any other).
   Units as common.proto. T = 0: intrinsic value, delta of the payoff with the extremum
   fixed (1/-1 floating, 0 fixed), other Greeks 0.
5. Status (pg_status.h): PG_BAD_VARIANT strike_type not 1 (floating) or 2 (fixed);
   PG_BAD_OPTION_TYPE; PG_BAD_STRIKE (fixed strike: not finite or <= 0; a floating row does
   not read its strike, which must still be finite and >= 0, 0 when unset); PG_BAD_TIME;
   PG_BAD_UNDERLYING; PG_BAD_RATE; PG_BAD_DIVIDEND; PG_BAD_VOL; PG_BAD_RUNNING (the running
   minimum) and PG_BAD_RUNNING_MAX (the running maximum): not finite, not > 0, or on the
   wrong side of spot (min > spot, max < spot). Both extremes are checked on every row,
   also the one the row does not read (the maximum for floating calls and fixed puts, the
   minimum for floating puts and fixed calls): they are the same path's. A
   failed row has NaN in every output; valid inputs with a non-finite result get
   PG_NOT_FINITE.
6. Accuracy and cost (tests/ext/test_lookback_kernel.py, bench/test_bench_asian.py): prices
   within 1e-14 relative of a 50-digit evaluation for every carry including b = 0; delta,
   gamma, vega, theta within ~1e-14, rho within ~3e-11 relative of 60-digit differences.
   On the 2-core development VM (one thread, books of 100,000, busy neighbours) a price
   costs 100-150 ns and price + six Greeks 700-900 ns per option; QuantLib's analytic
   engines, reused in a Python loop, 22-35 us per option in the same run.
"""

from pg_common cimport input_bit
from cython.parallel cimport prange

cdef extern from "pg_lookback.h" nogil:
    enum:
        PG_LOOKBACK_BLOCK
        PG_LOOKBACK_FLOATING
        PG_LOOKBACK_FIXED
        PG_LOOKBACK_MEASURE_MAX
        PG_LB_IN_STRIKE_TYPE
        PG_LB_IN_TYPE
        PG_LB_IN_STRIKE
        PG_LB_IN_TIME
        PG_LB_IN_MIN
        PG_LB_IN_MAX
        PG_LB_IN_SPOT
        PG_LB_IN_RATE
        PG_LB_IN_DIVIDEND
        PG_LB_IN_VOL
    ctypedef struct pg_lookback_inputs:
        const int *strike_type
        const int *option_type
        const double *strike
        const double *time
        const double *running_min
        const double *running_max
        const double *spot
        const double *rate
        const double *dividend
        const double *vol
        int broadcast
        Py_ssize_t n
    Py_ssize_t pg_lookback_block(const pg_lookback_inputs *inp, Py_ssize_t start, int m,
                                 const int *measures, int k, double *out, Py_ssize_t ldo,
                                 int *status)
    int pg_max_threads()

__all__ = ["FLOATING", "FIXED", "MEASURES", "GREEK_METHODS", "PARALLEL_THRESHOLD",
           "max_threads", "lookback_price_batch"]

FLOATING = PG_LOOKBACK_FLOATING
FIXED = PG_LOOKBACK_FIXED

#: Measure codes supported (pricegrid.v1.Measure): price, delta, gamma, vega, theta, rho,
#: dividend_rho.
MEASURES = (1, 2, 3, 4, 5, 6, 7)
#: How each Greek is computed (design note 4).
GREEK_METHODS = {2: "analytic", 3: "analytic", 4: "analytic", 5: "analytic",
                 6: "finite_difference", 7: "finite_difference"}

# Rows below which a batch runs on one thread. Measured on the 2-core development VM
# (floating strike, price only, median of 41, busy neighbours): 1024 rows 99.6 / 103.6 us
# on 1 / 2 threads, 2048 rows 213 / 124 us, 4096 rows 434 / 236 us.
cdef Py_ssize_t _PARALLEL_THRESHOLD = 2048
PARALLEL_THRESHOLD = _PARALLEL_THRESHOLD


def max_threads():
    """Threads an OpenMP parallel region would use by default (1 without OpenMP)."""
    return pg_max_threads()


def lookback_price_batch(const int[::1] strike_type not None,        # IN  1 floating, 2 fixed
                         const int[::1] option_type not None,        # IN  OptionType codes
                         const double[::1] strike not None,          # IN  fixed strike, > 0 (floating: not read)
                         const double[::1] time not None,            # IN  years, >= 0
                         const double[::1] running_minimum not None,  # IN  minimum so far (new trade: spot)
                         const double[::1] running_maximum not None,  # IN  maximum so far (new trade: spot)
                         const double[::1] spot not None,            # IN  > 0
                         const double[::1] rate not None,            # IN  continuously compounded
                         const double[::1] dividend_yield not None,  # IN  continuous yield
                         const double[::1] volatility not None,      # IN  lognormal, > 0
                         const int[::1] measures not None,           # IN  k Measure codes (1..7)
                         double[:, :] out not None,                  # OUT (k, n); rows contiguous
                         int[::1] status not None,                   # OUT n: pg_status.h bits
                         int threads):
    """Price n = len(status) continuously monitored lookback options and their Greeks.

    strike_type 1: floating strike (call pays S_T - min, put max - S_T); 2: fixed strike
    (call pays max(max - K, 0), put max(K - min, 0)); min and max run over the whole life
    of the option, the part already observed given by ``running_minimum`` /
    ``running_maximum``. Every input has length n or 1 (broadcast). ``out[j]`` receives
    measure ``measures[j]``. Returns the number of rows whose status is not 0 (their
    outputs are NaN).
    """
    cdef Py_ssize_t n = status.shape[0]
    cdef Py_ssize_t k = measures.shape[0]
    cdef Py_ssize_t j, blk, nblocks, start, nbad = 0
    cdef int m
    cdef pg_lookback_inputs inp
    inp.n = n
    inp.broadcast = (
        input_bit("strike_type", strike_type.shape[0], n, PG_LB_IN_STRIKE_TYPE)
        | input_bit("option_type", option_type.shape[0], n, PG_LB_IN_TYPE)
        | input_bit("strike", strike.shape[0], n, PG_LB_IN_STRIKE)
        | input_bit("time", time.shape[0], n, PG_LB_IN_TIME)
        | input_bit("running_minimum", running_minimum.shape[0], n, PG_LB_IN_MIN)
        | input_bit("running_maximum", running_maximum.shape[0], n, PG_LB_IN_MAX)
        | input_bit("spot", spot.shape[0], n, PG_LB_IN_SPOT)
        | input_bit("rate", rate.shape[0], n, PG_LB_IN_RATE)
        | input_bit("dividend_yield", dividend_yield.shape[0], n, PG_LB_IN_DIVIDEND)
        | input_bit("volatility", volatility.shape[0], n, PG_LB_IN_VOL)
    )
    for j in range(k):
        if measures[j] < 1 or measures[j] > PG_LOOKBACK_MEASURE_MAX:
            raise ValueError(f"measures[{j}] = {measures[j]} is not supported "
                             f"(supported Measure codes: {MEASURES})")
    if out.shape[0] != k or out.shape[1] != n:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}); expected ({k}, {n})")
    if n > 1 and out.strides[1] != sizeof(double):
        raise ValueError("each row of out must be contiguous")
    if k > 1 and (out.strides[0] % sizeof(double) or out.strides[0] < n * sizeof(double)):
        raise ValueError("rows of out must not overlap")
    cdef Py_ssize_t ldo = out.strides[0] // sizeof(double) if k > 1 else n
    if n == 0:
        return 0

    inp.strike_type = &strike_type[0]
    inp.option_type = &option_type[0]
    inp.strike = &strike[0]
    inp.time = &time[0]
    inp.running_min = &running_minimum[0]
    inp.running_max = &running_maximum[0]
    inp.spot = &spot[0]
    inp.rate = &rate[0]
    inp.dividend = &dividend_yield[0]
    inp.vol = &volatility[0]
    cdef double *out_p = &out[0, 0] if k > 0 else NULL
    cdef const int *meas_p = &measures[0] if k > 0 else NULL
    cdef int *status_p = &status[0]

    nblocks = (n + PG_LOOKBACK_BLOCK - 1) // PG_LOOKBACK_BLOCK
    with nogil:
        if threads <= 1 or n < _PARALLEL_THRESHOLD:
            for blk in range(nblocks):
                start = blk * PG_LOOKBACK_BLOCK
                m = <int>(n - start if n - start < PG_LOOKBACK_BLOCK else PG_LOOKBACK_BLOCK)
                nbad += pg_lookback_block(&inp, start, m, meas_p, <int>k, out_p, ldo, status_p)
        else:
            for blk in prange(nblocks, num_threads=threads, schedule="guided", chunksize=4):
                start = blk * PG_LOOKBACK_BLOCK
                m = <int>(n - start if n - start < PG_LOOKBACK_BLOCK else PG_LOOKBACK_BLOCK)
                nbad += pg_lookback_block(&inp, start, m, meas_p, <int>k, out_p, ldo, status_p)
    return nbad
