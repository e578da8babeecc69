# cython: language_level=3
"""Analytic average-price (fixed-strike) Asian options under Black-Scholes-Merton.

Design
------
1. Pointwise: the formulas live once, as C functions in ``pg_asian.h``.
   ``pg_asian_terms_of`` validates one row and reduces it to a lognormal value
   V = DF c B(F, K, v) (forward F, effective strike K, total log-variance v, weight c of the
   part of the average still to come) together with the partial derivatives of F, v, K and
   c that the Greeks need; ``pg_asian_black`` evaluates B and its partials;
   ``pg_asian_measure`` assembles one measure.
2. Loops: ``asian_price_batch`` cuts the rows into fixed blocks of ``PG_ASIAN_BLOCK`` (32).
   Per block: the terms row by row (a discrete row loops over its own fixings; the
   exponentials of an arithmetic row's fixings in ``omp simd`` chunks of 64), one ``omp
   simd`` loop for B and its partials (libmvec log, exp, erfc), one loop per requested
   measure. Blocks run on one thread below ``PARALLEL_THRESHOLD`` rows, else in a
   ``prange`` over blocks, GIL released; results do not depend on the thread count.
   Schedules are columnar: ``fixing_times`` holds every row's future fixing times
   concatenated in row order and ``fixing_counts`` one count per row, or a single count
   (one schedule shared by every row). A count of 0 means continuous averaging from
   valuation to expiry. Per-row schedules need the rows' offsets (a prefix sum of the
   counts, computed before the loop; none for a shared schedule, none for n = 1).
3. Numerics (b = r - q, w = +1 call / -1 put; payoff max(w (A - K), 0) at expiry T):
   - Geometric, continuous: A. G. Z. Kemna and A. C. F. Vorst, "A pricing method for
     options based on average asset values", J. Banking Finance 14 (1990), pp. 113-129;
     in the form of E. G. Haug, "The Complete Guide to Option Pricing Formulas", 2nd ed.,
     McGraw-Hill 2007, sec. 4.20.1 (b_A = (b - vol^2/6)/2, vol_A = vol/sqrt 3). Seasoned
     (averaging began ``elapsed`` years ago at geometric running average A): ln G =
     (elapsed ln A + int_0^T ln S_u du)/(elapsed + T) is normal, mean
     (elapsed ln A + T ln S + (b - vol^2/2) T^2/2)/(elapsed + T), variance
     vol^2 T^3/(3 (elapsed + T)^2).
   - Geometric, discrete: ln G = (m ln A + sum_i ln S_{t_i})/N (m past fixings with
     geometric mean A, n future ones, N = m + n) is normal with mean
     (m ln A + n ln S + (b - vol^2/2) sum t_i)/N and variance
     vol^2 sum_{i,j} min(t_i, t_j)/N^2 -- the formula of QuantLib's
     AnalyticDiscreteGeometricAveragePriceAsianEngine (after Clewlow and Strickland,
     "Implementing Derivatives Models", Wiley 1998, pp. 118-123).
   - Arithmetic (arithmetic_method 1, Turnbull-Wakeman): S. M. Turnbull and L. M. Wakeman,
     "A quick algorithm for pricing European average options", J. Financial Quant. Anal.
     26(3) (1991), pp. 377-389; Haug 2nd ed. sec. 4.20.2 (pp. 192-202, with the strike
     adjustment for an average already begun, p. 193). The future part A_f of the average
     is taken lognormal with its exact first two moments; the known part moves into the
     strike: V = DF c B(E[A_f], K*, ln(E[A_f^2]/E[A_f]^2)), c = n/N (discrete) or
     T/(elapsed + T) (continuous), K* = K + ((1 - c)/c)(K - A). K* <= 0: exercise is
     certain, call = DF (E[A] - K) and put = 0 exactly (Haug p. 193).
   - Arithmetic (arithmetic_method 2, Levy): E. Levy, "Pricing European average rate
     currency options", J. Int. Money Finance 11 (1992), pp. 474-491; Haug 2nd ed. sec.
     4.20.3. For continuous averaging Levy's formula is the same two-moment lognormal match
     as Turnbull-Wakeman's (Haug's M1, M2 and Levy's S_E, D agree term by term), so both
     codes give the same continuous price. Levy's method is continuous only: a discrete
     arithmetic row under arithmetic_method 2 is rejected (PG_BAD_VARIANT), not priced.
   - Moments without cancellation: continuous moments as divided differences of exp
     (pg_asian.h, note 3): no division by b, b + vol^2 or 2b + vol^2, so q = r (Black-76,
     b = 0) and b = -vol^2, -vol^2/2 are exact and lose no digits nearby; the discrete
     variance excess is a sum of positive terms with expm1; v = log1p(excess).
   - N(x) = erfc(-x/sqrt 2)/2; d1, d2 clamped to [-40, 40] as in black.pyx.
4. Greeks (MEASURES 1..7), analytic for every case: derivatives of the formula above by
   the chain rule (pg_asian.h, note 4), including the arithmetic approximations (they are
   the exact Greeks of the approximate price, as a bump-and-reprice of it would be).
   Units as common.proto. Theta is dV/dt per year of calendar time with the averaging
   schedule fixed in calendar time: discrete fixing times all shrink by dt, the past
   fixings (count and average) stay as given, and dt -> 0, so no fixing passes
   (the analytic limit of a bump small enough that none does). Continuous averaging keeps
   its start date: after dt the elapsed time is elapsed + dt and the running average has
   absorbed dt of the path at spot (spot does not move, as for any theta); the remaining
   time shrinks by dt. This is the theta that satisfies the Black-Scholes equation
   theta = r V - b S delta - vol^2 S^2 gamma / 2 for the geometric prices (a test checks
   it). QuantLib's continuous geometric engine instead lets the averaging window start
   at the valuation date (its theta moves the start), so its theta is not compared.
   T = 0 (continuous averaging only): intrinsic value on the known average (spot when
   averaging never began), delta the step where it depends on spot, other Greeks 0.
5. Status (pg_status.h): PG_BAD_VARIANT unknown averaging code, or a discrete arithmetic
   row under Levy; PG_BAD_OPTION_TYPE; PG_BAD_STRIKE (not finite or <= 0); PG_BAD_TIME;
   PG_BAD_UNDERLYING; PG_BAD_RATE; PG_BAD_DIVIDEND; PG_BAD_VOL (not finite or <= 0);
   PG_BAD_FIXINGS (a time not finite, <= 0, not strictly increasing, or after the row's
   expiry); PG_BAD_RUNNING (a running average not finite or < 0; for a geometric row whose
   averaging began -- past_fixings > 0 discrete, elapsed > 0 continuous -- also 0, as it is
   logged); PG_BAD_PAST_FIXINGS (past_fixings < 0); PG_BAD_ELAPSED (elapsed not finite or
   < 0). Each is checked on every row, also where the row does not read it (the average of
   a new trade, past_fixings of a continuous row, elapsed of a discrete one): a value that
   could not be read anywhere is refused, never ignored; a valid one is ignored there.
   A failed row has NaN in every output; valid inputs with a non-finite result get
   PG_NOT_FINITE. Malformed schedules (a negative count, counts that do not add up to
   len(fixing_times)) raise ValueError: they are array structure, not row data.
6. Accuracy and cost (tests/ext/test_asian_kernel.py, bench/test_bench_asian.py): prices of
   every kind within ~1e-15 relative of a 60-digit evaluation of the textbook formulas,
   Greeks within ~1e-13 of 60-digit differences, including b = 0, -vol^2, -vol^2/2. On
   the 2-core development VM (one thread, books of 100,000, 12 fixings per discrete
   trade, busy neighbours) a price costs 70-80 ns (geometric), 170 ns (Turnbull-Wakeman,
   discrete), 250 ns (continuous arithmetic) per option, with six Greeks 100-550 ns;
   QuantLib's analytic engines, reused in a Python loop, 14-67 us per option in the same
   run.
"""

from pg_common cimport input_bit
from cython.parallel cimport prange
from libc.stdlib cimport malloc, free
from libc.stdint cimport int64_t

cdef extern from "pg_asian.h" nogil:
    enum:
        PG_ASIAN_BLOCK
        PG_ASIAN_ARITHMETIC
        PG_ASIAN_GEOMETRIC
        PG_ASIAN_TURNBULL_WAKEMAN
        PG_ASIAN_LEVY
        PG_ASIAN_MEASURE_MAX
        PG_AS_IN_AVERAGING
        PG_AS_IN_TYPE
        PG_AS_IN_STRIKE
        PG_AS_IN_TIME
        PG_AS_IN_RUNNING
        PG_AS_IN_PAST
        PG_AS_IN_ELAPSED
        PG_AS_IN_SPOT
        PG_AS_IN_RATE
        PG_AS_IN_DIVIDEND
        PG_AS_IN_VOL
    ctypedef struct pg_asian_inputs:
        const int *averaging
        const int *option_type
        const double *strike
        const double *time
        const double *fixing_times
        const int *fixing_counts
        const int64_t *offsets
        int shared
        const double *running_average
        const int *past_fixings
        const double *elapsed
        const double *spot
        const double *rate
        const double *dividend
        const double *vol
        int broadcast
        int method
        Py_ssize_t n
    void pg_asian_prepare(pg_asian_inputs *inp)
    Py_ssize_t pg_asian_block(const pg_asian_inputs *inp, Py_ssize_t start, int m,
                              const int *measures, int k, double *out, Py_ssize_t ldo,
                              int *status)
    int pg_max_threads()

__all__ = ["ARITHMETIC", "GEOMETRIC", "TURNBULL_WAKEMAN", "LEVY", "MEASURES", "GREEK_METHODS",
           "PARALLEL_THRESHOLD", "max_threads", "asian_price_batch"]

ARITHMETIC = PG_ASIAN_ARITHMETIC
GEOMETRIC = PG_ASIAN_GEOMETRIC
TURNBULL_WAKEMAN = PG_ASIAN_TURNBULL_WAKEMAN
LEVY = PG_ASIAN_LEVY

#: Measure codes supported (pricegrid.v1.Measure): price, delta, gamma, vega, theta, rho,
#: dividend_rho.
MEASURES = (1, 2, 3, 4, 5, 6, 7)
#: How each Greek is computed: derivatives of the closed forms (see the design note).
GREEK_METHODS = {2: "analytic", 3: "analytic", 4: "analytic", 5: "analytic", 6: "analytic",
                 7: "analytic"}

# Rows below which a batch runs on one thread. Measured on the 2-core development VM
# (price only, median of 41, busy neighbours): continuous geometric 1024 rows 74.7 / 75.6 us
# on 1 / 2 threads, 2048 rows 155.7 / 83.7 us; discrete Turnbull-Wakeman (12 fixings) 1024
# rows 197 / 196 us. Above it a second thread pays off when the second core is free (it
# often is not on that VM: some 2-thread medians there were 8 ms, the scheduler's slice).
cdef Py_ssize_t _PARALLEL_THRESHOLD = 2048
PARALLEL_THRESHOLD = _PARALLEL_THRESHOLD


def max_threads():
    """Threads an OpenMP parallel region would use by default (1 without OpenMP)."""
    return pg_max_threads()


def asian_price_batch(const int[::1] averaging not None,         # IN  1 arithmetic, 2 geometric
                      const int[::1] option_type not None,       # IN  OptionType codes
                      const double[::1] strike not None,         # IN  > 0
                      const double[::1] time not None,           # IN  years to expiry, >= 0
                      const double[::1] fixing_times not None,   # IN  future fixing times, rows concatenated
                      const int[::1] fixing_counts not None,     # IN  per row, or 1 shared schedule; 0 = continuous
                      const double[::1] running_average not None,  # IN  average of the past fixings / path so far
                      const int[::1] past_fixings not None,      # IN  past discrete fixings, >= 0
                      const double[::1] elapsed not None,        # IN  years of continuous averaging done, >= 0
                      const double[::1] spot not None,           # IN  > 0
                      const double[::1] rate not None,           # IN  continuously compounded
                      const double[::1] dividend_yield not None,  # IN  continuous yield
                      const double[::1] volatility not None,     # IN  lognormal, > 0
                      const int[::1] measures not None,          # IN  k Measure codes (1..7)
                      double[:, :] out not None,                 # OUT (k, n); rows contiguous
                      int[::1] status not None,                  # OUT n: pg_status.h bits
                      int threads,
                      int arithmetic_method=PG_ASIAN_TURNBULL_WAKEMAN):
    """Price n = len(status) average-price Asian options and the requested Greeks.

    Every per-row input has length n or 1 (broadcast). ``fixing_times`` holds the future
    fixing times (year fractions from valuation, strictly increasing, > 0, the last <= the
    row's ``time``) of every row, concatenated in row order; ``fixing_counts`` holds one
    count per row, or one count for a schedule shared by every row; a count of 0 means
    continuous averaging from valuation to expiry. ``arithmetic_method``: 1
    Turnbull-Wakeman (discrete and continuous), 2 Levy (continuous only). ``out[j]``
    receives measure ``measures[j]``. Returns the number of rows whose status is not 0
    (their outputs are NaN).
    """
    cdef Py_ssize_t n = status.shape[0]
    cdef Py_ssize_t k = measures.shape[0]
    cdef Py_ssize_t j, i, blk, nblocks, start, nbad = 0, total
    cdef int m
    cdef pg_asian_inputs inp
    cdef int64_t *offsets = NULL

    if arithmetic_method != PG_ASIAN_TURNBULL_WAKEMAN and arithmetic_method != PG_ASIAN_LEVY:
        raise ValueError(f"unknown arithmetic_method {arithmetic_method}; expected 1 "
                         "(Turnbull-Wakeman) or 2 (Levy)")
    inp.n = n
    inp.method = arithmetic_method
    inp.broadcast = (
        input_bit("averaging", averaging.shape[0], n, PG_AS_IN_AVERAGING)
        | input_bit("option_type", option_type.shape[0], n, PG_AS_IN_TYPE)
        | input_bit("strike", strike.shape[0], n, PG_AS_IN_STRIKE)
        | input_bit("time", time.shape[0], n, PG_AS_IN_TIME)
        | input_bit("running_average", running_average.shape[0], n, PG_AS_IN_RUNNING)
        | input_bit("past_fixings", past_fixings.shape[0], n, PG_AS_IN_PAST)
        | input_bit("elapsed", elapsed.shape[0], n, PG_AS_IN_ELAPSED)
        | input_bit("spot", spot.shape[0], n, PG_AS_IN_SPOT)
        | input_bit("rate", rate.shape[0], n, PG_AS_IN_RATE)
        | input_bit("dividend_yield", dividend_yield.shape[0], n, PG_AS_IN_DIVIDEND)
        | input_bit("volatility", volatility.shape[0], n, PG_AS_IN_VOL)
    )
    input_bit("fixing_counts", fixing_counts.shape[0], n, 1)
    for j in range(k):
        if measures[j] < 1 or measures[j] > PG_ASIAN_MEASURE_MAX:
            raise ValueError(f"measures[{j}] = {measures[j]} is not supported "
                             f"(supported Measure codes: {MEASURES})")
    if out.shape[0] != k or out.shape[1] != n:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}); expected ({k}, {n})")
    if n > 1 and out.strides[1] != sizeof(double):
        raise ValueError("each row of out must be contiguous")
    if k > 1 and (out.strides[0] % sizeof(double) or out.strides[0] < n * sizeof(double)):
        raise ValueError("rows of out must not overlap")
    cdef Py_ssize_t ldo = out.strides[0] // sizeof(double) if k > 1 else n

    # the schedule's structure: counts >= 0 adding up to len(fixing_times)
    inp.shared = fixing_counts.shape[0] == 1
    total = 0
    for i in range(fixing_counts.shape[0]):
        if fixing_counts[i] < 0:
            raise ValueError(f"fixing_counts[{i}] = {fixing_counts[i]} is negative")
        total += fixing_counts[i]
    if total != fixing_times.shape[0]:
        raise ValueError(f"fixing_counts add up to {total} but fixing_times has "
                         f"{fixing_times.shape[0]} entries")
    if n == 0:
        return 0

    inp.averaging = &averaging[0]
    inp.option_type = &option_type[0]
    inp.strike = &strike[0]
    inp.time = &time[0]
    inp.fixing_times = &fixing_times[0] if fixing_times.shape[0] > 0 else NULL
    inp.fixing_counts = &fixing_counts[0]
    inp.running_average = &running_average[0]
    inp.past_fixings = &past_fixings[0]
    inp.elapsed = &elapsed[0]
    inp.spot = &spot[0]
    inp.rate = &rate[0]
    inp.dividend = &dividend_yield[0]
    inp.vol = &volatility[0]
    inp.offsets = NULL
    cdef double *out_p = &out[0, 0] if k > 0 else NULL
    cdef const int *meas_p = &measures[0] if k > 0 else NULL
    cdef int *status_p = &status[0]

    if not inp.shared:
        offsets = <int64_t *> malloc(n * sizeof(int64_t))
        if offsets == NULL:
            raise MemoryError()
        total = 0
        for i in range(n):
            offsets[i] = total
            total += fixing_counts[i]
        inp.offsets = offsets
    pg_asian_prepare(&inp)

    nblocks = (n + PG_ASIAN_BLOCK - 1) // PG_ASIAN_BLOCK
    try:
        with nogil:
            if threads <= 1 or n < _PARALLEL_THRESHOLD:
                for blk in range(nblocks):
                    start = blk * PG_ASIAN_BLOCK
                    m = <int>(n - start if n - start < PG_ASIAN_BLOCK else PG_ASIAN_BLOCK)
                    nbad += pg_asian_block(&inp, start, m, meas_p, <int>k, out_p, ldo, status_p)
            else:
                for blk in prange(nblocks, num_threads=threads, schedule="guided", chunksize=4):
                    start = blk * PG_ASIAN_BLOCK
                    m = <int>(n - start if n - start < PG_ASIAN_BLOCK else PG_ASIAN_BLOCK)
                    nbad += pg_asian_block(&inp, start, m, meas_p, <int>k, out_p, ldo, status_p)
    finally:
        free(offsets)
    return nbad
