# cython: language_level=3
"""Barrier and digital options under Black-Scholes-Merton: prices and Greeks.

Four batch entry points, one per product: ``barrier_price_batch`` (single barriers with
rebate, continuous or discrete monitoring), ``double_barrier_price_batch`` (knock-out and
knock-in between two flat barriers), ``digital_price_batch`` (cash-or-nothing,
asset-or-nothing, gap) and ``touch_price_batch`` (one-touch and no-touch).

Design
------
1. Pointwise: the formulas live once, as inline C functions in ``pg_barrier.h`` (single
   barriers, one-touch/no-touch, the finite-difference Greeks shared by the barrier
   families), ``pg_double_barrier.h`` and ``pg_digital.h``; ``barrier.pxd`` declares them
   for other families to cimport (``pg_<product>_check`` gives a row's status bits,
   ``pg_<product>_value`` its price).
2. Loops: an entry point cuts the rows into fixed blocks of ``PG_BARRIER_BLOCK`` (32) rows;
   ``pg_<product>_block`` prices one block with `omp simd` loops over its rows (glibc's
   vector exp, log, erfc, sin, cos). Blocks run on one thread while the batch's work
   (rows x price evaluations per row; digitals: rows / 2) is below ``PARALLEL_THRESHOLD``,
   else in a ``prange`` over blocks, GIL released. A block that is not a whole number of
   vectors (8 rows) is padded with copies of its last row, so every row runs through the
   same vector code: results depend neither on the thread count nor on a row's place in
   the batch (a trade priced alone gets the same bits as in any batch). A length-1 batch
   (one trade) prices one padded block: no thread start, no heap allocation, no table
   building (3-6 us for a price, 3-17 us with all ten measures: medians on the shared
   development VM, Python call included).
3. Numerics, with sources and pages, in the notes at the top of the three headers:
   - single barriers: E. Reiner and M. Rubinstein, "Breaking down the barriers", Risk 4(8),
     1991, as in E. G. Haug, "The Complete Guide to Option Pricing Formulas", 2nd ed.,
     McGraw-Hill 2007, sec. 4.17.1 (Table 4-13, p. 154); rebates as QuantLib's
     AnalyticBarrierEngine (knock-in: at expiry if never hit; knock-out: at the hit).
     Discrete monitoring every ``monitoring_interval`` years by the continuity correction of
     M. Broadie, P. Glasserman and S. Kou, Math. Finance 7(4), 1997, pp. 325-349 (barrier
     moved away from spot by exp(0.5826 vol sqrt(dt)), beta = -zeta(1/2)/sqrt(2 pi)).
   - double barriers: S. Ikeda and N. Kunitomo, Math. Finance 2(4), 1992 (Haug sec. 4.17.3,
     curvatures 0), image series cut adaptively per row (|n| <= ceil(sqrt(1 + 90 vol^2 T/W^2)/2),
     W = ln(U/L): omitted images below e^-45 of the terms), or the eigenfunction series of
     the killed walk, cut at the same relative size, whichever is cheaper for the row
     (modes from vol^2 T/W^2 of about 0.05, where the drift allows); knock-in = European -
     knock-out.
   - digitals: Haug sec. 4.19.1-4.19.3 (cash-or-nothing, asset-or-nothing, gap).
   - one-touch / no-touch: Reiner-Rubinstein binary barriers, Haug sec. 4.19.5 (cash at hit,
     cash at expiry, no-touch), BGK correction as for single barriers.
4. Greeks: MEASURES are the Measure codes 1..10 for every product. Digitals: analytic
   (chain rule on the closed form, pg_digital.h). Barriers, double barriers, touches:
   central finite differences of the closed form inside the kernel, per row, with steps
   scaled to the row (pg_barrier.h, note 4: 1e-4 of the natural scale for first
   derivatives, 2e-4 for second and mixed ones). ``GREEK_METHODS`` (barrier, double
   barrier, touch) and ``DIGITAL_GREEK_METHODS`` say which; ``GREEK_METHODS_BY_ENTRY`` maps
   each entry point to its dict. Units are common.proto's: vega per 1.00 of vol, theta =
   -dV/dT per year, rho with q fixed, charm = d(delta)/dt per year.
5. Status: pg_status.h bits per row; an unknown product code sets PG_BAD_VARIANT (call/put:
   PG_BAD_OPTION_TYPE) and never raises; every output of a failed row is NaN; valid inputs
   whose price or a requested measure is not finite get PG_NOT_FINITE.
6. Spot and barrier: a spot exactly at a barrier is touched (the barrier was hit: a knock-in
   is its European, a knock-out its rebate paid now, a one-touch Q or Q DF, a no-touch 0);
   a spot beyond one is PG_BAD_BARRIER (a wrong barrier type or level), unless the call
   says ``beyond_touched=True``: the spot is then a move of the trade's own (a scenario's),
   which crossed the barrier, and such a row is touched as one at it (pg_barrier.h, note 3).
"""

from pg_common cimport input_bit
from cython.parallel cimport prange

# barrier.pxd (the C declarations of the headers) is included automatically.

__all__ = [
    "DOWN_IN", "DOWN_OUT", "UP_IN", "UP_OUT", "KNOCK_IN", "KNOCK_OUT",
    "CASH_OR_NOTHING", "ASSET_OR_NOTHING", "GAP", "ONE_TOUCH", "NO_TOUCH", "DOWN", "UP",
    "AT_HIT", "AT_EXPIRY", "MEASURES", "GREEK_METHODS", "DIGITAL_GREEK_METHODS",
    "GREEK_METHODS_BY_ENTRY", "PARALLEL_THRESHOLD", "max_threads",
    "barrier_price_batch", "double_barrier_price_batch", "digital_price_batch",
    "touch_price_batch",
]

DOWN_IN = PG_BARRIER_DOWN_IN
DOWN_OUT = PG_BARRIER_DOWN_OUT
UP_IN = PG_BARRIER_UP_IN
UP_OUT = PG_BARRIER_UP_OUT
KNOCK_IN = PG_KNOCK_IN
KNOCK_OUT = PG_KNOCK_OUT
CASH_OR_NOTHING = PG_DIGITAL_CASH
ASSET_OR_NOTHING = PG_DIGITAL_ASSET
GAP = PG_DIGITAL_GAP
ONE_TOUCH = PG_TOUCH_ONE
NO_TOUCH = PG_TOUCH_NO
DOWN = PG_DIRECTION_DOWN
UP = PG_DIRECTION_UP
AT_HIT = PG_PAY_AT_HIT
AT_EXPIRY = PG_PAY_AT_EXPIRY

#: Measure codes every entry point computes (pricegrid.v1.Measure: PRICE .. CHARM).
MEASURES = tuple(range(1, PG_MEASURE_MAX + 1))
#: How the Greeks of barrier_price_batch, double_barrier_price_batch and touch_price_batch
#: are computed: bump-and-reprice of the closed form inside the kernel.
GREEK_METHODS = {code: "finite_difference" for code in range(2, PG_MEASURE_MAX + 1)}
#: How the Greeks of digital_price_batch are computed: derivatives of the closed form.
DIGITAL_GREEK_METHODS = {code: "analytic" for code in range(2, PG_MEASURE_MAX + 1)}
GREEK_METHODS_BY_ENTRY = {
    "barrier_price_batch": GREEK_METHODS,
    "double_barrier_price_batch": GREEK_METHODS,
    "touch_price_batch": GREEK_METHODS,
    "digital_price_batch": DIGITAL_GREEK_METHODS,
}

# A batch runs on one thread while its work is below PARALLEL_THRESHOLD, the work being
# rows x (price evaluations per row) for the finite-difference families (1 for a price,
# + 2 per first or pure second derivative, + 4 per mixed one: 23 for all ten measures) and
# rows / 2 for digitals (analytic Greeks; a digital row costs about half a barrier row).
# So a price-only batch goes parallel from 256 rows (digitals 512), one asking for every
# Greek from 12 rows. Measured on the 2-core development VM, price only, best of 300 calls
# (1 thread / 2 threads, us): barrier 128 rows 11/12, 256 rows 21/14, 512 rows 35/21;
# double barrier 128 rows 24/24, 256 rows 46/32; touch 128 rows 7/8, 256 rows 13/10;
# digital 256 rows 7/7, 512 rows 13/10. The medians agree except that, with the other core
# busy (six agents share the VM), a second thread now and then waits a scheduler slice
# (about 8 ms) for its core, whatever the batch size.
cdef Py_ssize_t _PARALLEL_THRESHOLD = 256
PARALLEL_THRESHOLD = _PARALLEL_THRESHOLD


def max_threads():
    """Threads an OpenMP parallel region would use by default (1 without OpenMP)."""
    return pg_max_threads()


cdef Py_ssize_t _check_measures(const int[::1] measures, double[:, :] out, Py_ssize_t n) except -1:
    """Validate the measure codes and the shape of out; return out's row stride in doubles."""
    cdef Py_ssize_t k = measures.shape[0]
    cdef Py_ssize_t j
    for j in range(k):
        if measures[j] < 1 or measures[j] > PG_MEASURE_MAX:
            raise ValueError(f"measures[{j}] = {measures[j]} is not a Measure code (1..10)")
    if out.shape[0] != k or out.shape[1] != n:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}); expected ({k}, {n})")
    if n > 1 and out.strides[1] != sizeof(double):
        raise ValueError("each row of out must be contiguous")
    if k > 1 and (out.strides[0] % sizeof(double) or out.strides[0] < n * sizeof(double)):
        raise ValueError("rows of out must not overlap")
    return out.strides[0] // sizeof(double) if k > 1 else n


cdef Py_ssize_t _work(Py_ssize_t n, const int[::1] measures, bint finite_differences):
    """The work of a batch of n rows asking for `measures`, in barrier price evaluations."""
    cdef Py_ssize_t j, evals = 1
    if not finite_differences:
        return n // 2
    for j in range(measures.shape[0]):
        if measures[j] == 8 or measures[j] == 10:      # vanna, charm: 4 points
            evals += 4
        elif measures[j] != 1:
            evals += 2
    return n * evals


cdef Py_ssize_t _run(pg_block_fn block, const pg_cols *inp, const int[::1] measures,
                     double[:, :] out, Py_ssize_t ldo, int[::1] status, int threads,
                     bint finite_differences):
    """The block loop every entry point shares (inputs already checked)."""
    cdef Py_ssize_t n = inp.n
    cdef int k = <int>measures.shape[0]
    cdef Py_ssize_t work = _work(n, measures, finite_differences)
    cdef Py_ssize_t nblocks = (n + PG_BARRIER_BLOCK - 1) // PG_BARRIER_BLOCK
    cdef Py_ssize_t blk, start, nbad = 0
    cdef int m
    cdef const int *meas_p = &measures[0] if k > 0 else NULL
    cdef double *out_p = &out[0, 0] if k > 0 else NULL
    cdef int *status_p = &status[0]
    with nogil:
        if threads <= 1 or work < _PARALLEL_THRESHOLD:
            for blk in range(nblocks):
                start = blk * PG_BARRIER_BLOCK
                m = <int>(n - start if n - start < PG_BARRIER_BLOCK else PG_BARRIER_BLOCK)
                nbad += block(inp, start, m, meas_p, k, out_p, ldo, status_p)
        else:
            for blk in prange(nblocks, num_threads=threads, schedule="guided", chunksize=4):
                start = blk * PG_BARRIER_BLOCK
                m = <int>(n - start if n - start < PG_BARRIER_BLOCK else PG_BARRIER_BLOCK)
                nbad += block(inp, start, m, meas_p, k, out_p, ldo, status_p)
    return nbad


def barrier_price_batch(const int[::1] barrier_type not None,         # IN  1 down-in, 2 down-out, 3 up-in, 4 up-out
                        const int[::1] option_type not None,          # IN  OptionType: 1 call, 2 put
                        const double[::1] strike not None,            # IN  > 0
                        const double[::1] time not None,              # IN  years to expiry, >= 0
                        const double[::1] barrier not None,           # IN  > 0, on the live side of spot or at it (note 6)
                        const double[::1] rebate not None,            # IN  cash, >= 0
                        const double[::1] monitoring_interval not None,  # IN  0 continuous, > 0 every that many years
                        const double[::1] spot not None,              # IN  > 0
                        const double[::1] rate not None,              # IN  continuously compounded
                        const double[::1] dividend_yield not None,    # IN  continuous yield
                        const double[::1] volatility not None,        # IN  lognormal, > 0
                        const int[::1] measures not None,             # IN  k Measure codes
                        double[:, :] out not None,                    # OUT (k, n): out[j, i] = measures[j] of row i
                        int[::1] status not None,                     # OUT n: pg_status.h bits, 0 = priced
                        int threads,
                        bint beyond_touched=False):                   # IN  a spot beyond the barrier is touched
    """Price n = len(status) single-barrier options and the requested Greeks.

    Arguments, in order: barrier_type, option_type (int32 codes), strike, time, barrier,
    rebate, monitoring_interval, spot, rate, dividend_yield, volatility (float64), measures
    (int32 Measure codes), out (float64, shape (k, n), each row contiguous, rows may be
    apart), status (int32, n), threads. Every input column has length n or 1 (broadcast).

    Reiner-Rubinstein closed form; a knock-in's rebate is paid at expiry if the barrier was
    never hit, a knock-out's when it is hit. ``monitoring_interval`` > 0: discretely
    monitored, Broadie-Glasserman-Kou continuity correction. Greeks by central finite
    differences of the closed form (``GREEK_METHODS``). A spot at the barrier is touched; one
    beyond it is refused (PG_BAD_BARRIER), or with ``beyond_touched`` touched too (note 6).
    Returns the number of rows whose status is not 0 (their outputs are NaN).
    """
    cdef Py_ssize_t n = status.shape[0]
    cdef pg_cols inp
    inp.n = n
    inp.beyond_touched = beyond_touched
    inp.ni = 2
    inp.nd = 9
    inp.broadcast = (
        input_bit("barrier_type", barrier_type.shape[0], n, PG_ICOL_BIT(0))
        | input_bit("option_type", option_type.shape[0], n, PG_ICOL_BIT(1))
        | input_bit("strike", strike.shape[0], n, PG_DCOL_BIT(0))
        | input_bit("time", time.shape[0], n, PG_DCOL_BIT(1))
        | input_bit("barrier", barrier.shape[0], n, PG_DCOL_BIT(2))
        | input_bit("rebate", rebate.shape[0], n, PG_DCOL_BIT(3))
        | input_bit("monitoring_interval", monitoring_interval.shape[0], n, PG_DCOL_BIT(4))
        | input_bit("spot", spot.shape[0], n, PG_DCOL_BIT(5))
        | input_bit("rate", rate.shape[0], n, PG_DCOL_BIT(6))
        | input_bit("dividend_yield", dividend_yield.shape[0], n, PG_DCOL_BIT(7))
        | input_bit("volatility", volatility.shape[0], n, PG_DCOL_BIT(8))
    )
    cdef Py_ssize_t ldo = _check_measures(measures, out, n)
    if n == 0:
        return 0
    inp.ic[0] = &barrier_type[0]
    inp.ic[1] = &option_type[0]
    inp.dc[0] = &strike[0]
    inp.dc[1] = &time[0]
    inp.dc[2] = &barrier[0]
    inp.dc[3] = &rebate[0]
    inp.dc[4] = &monitoring_interval[0]
    inp.dc[5] = &spot[0]
    inp.dc[6] = &rate[0]
    inp.dc[7] = &dividend_yield[0]
    inp.dc[8] = &volatility[0]
    return _run(pg_barrier_block, &inp, measures, out, ldo, status, threads, True)


def double_barrier_price_batch(const int[::1] knock not None,            # IN  1 knock-in, 2 knock-out
                               const int[::1] option_type not None,      # IN  OptionType: 1 call, 2 put
                               const double[::1] strike not None,        # IN  > 0
                               const double[::1] time not None,          # IN  years to expiry, >= 0
                               const double[::1] lower_barrier not None, # IN  > 0, <= spot (note 6)
                               const double[::1] upper_barrier not None, # IN  >= spot, > lower (note 6)
                               const double[::1] spot not None,          # IN  > 0
                               const double[::1] rate not None,          # IN  continuously compounded
                               const double[::1] dividend_yield not None,  # IN  continuous yield
                               const double[::1] volatility not None,    # IN  lognormal, > 0
                               const int[::1] measures not None,         # IN  k Measure codes
                               double[:, :] out not None,                # OUT (k, n)
                               int[::1] status not None,                 # OUT n: pg_status.h bits
                               int threads,
                               bint beyond_touched=False):               # IN  a spot outside [L, U] is touched
    """Price n = len(status) double-barrier options (continuous monitoring, flat barriers,
    no rebate) and the requested Greeks.

    Arguments, in order: knock, option_type (int32 codes), strike, time, lower_barrier,
    upper_barrier, spot, rate, dividend_yield, volatility (float64), measures, out (k, n),
    status (n), threads. Every input column has length n or 1 (broadcast).

    Knock-out: Ikeda-Kunitomo image series, or the eigenfunction series where it converges
    faster, each cut adaptively per row (see the module note); knock-in = European -
    knock-out. Greeks by central finite differences of the closed form. A spot at a barrier
    is touched; one outside [lower, upper] is refused, or with ``beyond_touched`` touched too
    (note 6). Returns the number of rows whose status is not 0 (their outputs are NaN).
    """
    cdef Py_ssize_t n = status.shape[0]
    cdef pg_cols inp
    inp.n = n
    inp.beyond_touched = beyond_touched
    inp.ni = 2
    inp.nd = 8
    inp.broadcast = (
        input_bit("knock", knock.shape[0], n, PG_ICOL_BIT(0))
        | input_bit("option_type", option_type.shape[0], n, PG_ICOL_BIT(1))
        | input_bit("strike", strike.shape[0], n, PG_DCOL_BIT(0))
        | input_bit("time", time.shape[0], n, PG_DCOL_BIT(1))
        | input_bit("lower_barrier", lower_barrier.shape[0], n, PG_DCOL_BIT(2))
        | input_bit("upper_barrier", upper_barrier.shape[0], n, PG_DCOL_BIT(3))
        | input_bit("spot", spot.shape[0], n, PG_DCOL_BIT(4))
        | input_bit("rate", rate.shape[0], n, PG_DCOL_BIT(5))
        | input_bit("dividend_yield", dividend_yield.shape[0], n, PG_DCOL_BIT(6))
        | input_bit("volatility", volatility.shape[0], n, PG_DCOL_BIT(7))
    )
    cdef Py_ssize_t ldo = _check_measures(measures, out, n)
    if n == 0:
        return 0
    inp.ic[0] = &knock[0]
    inp.ic[1] = &option_type[0]
    inp.dc[0] = &strike[0]
    inp.dc[1] = &time[0]
    inp.dc[2] = &lower_barrier[0]
    inp.dc[3] = &upper_barrier[0]
    inp.dc[4] = &spot[0]
    inp.dc[5] = &rate[0]
    inp.dc[6] = &dividend_yield[0]
    inp.dc[7] = &volatility[0]
    return _run(pg_double_barrier_block, &inp, measures, out, ldo, status, threads, True)


def digital_price_batch(const int[::1] payoff not None,            # IN  1 cash-or-nothing, 2 asset-or-nothing, 3 gap
                        const int[::1] option_type not None,       # IN  OptionType: 1 call, 2 put
                        const double[::1] strike not None,         # IN  > 0 (the trigger)
                        const double[::1] time not None,           # IN  years to expiry, >= 0
                        const double[::1] cash not None,           # IN  cash-or-nothing amount, >= 0 (else not read)
                        const double[::1] payoff_strike not None,  # IN  gap: the strike paid, finite (else not read)
                        const double[::1] spot not None,           # IN  > 0
                        const double[::1] rate not None,           # IN  continuously compounded
                        const double[::1] dividend_yield not None, # IN  continuous yield
                        const double[::1] volatility not None,     # IN  lognormal, > 0
                        const int[::1] measures not None,          # IN  k Measure codes
                        double[:, :] out not None,                 # OUT (k, n)
                        int[::1] status not None,                  # OUT n: pg_status.h bits
                        int threads):
    """Price n = len(status) European digitals and the requested Greeks (analytic).

    Arguments, in order: payoff, option_type (int32 codes), strike, time, cash,
    payoff_strike, spot, rate, dividend_yield, volatility (float64), measures, out (k, n),
    status (n), threads. Every input column has length n or 1 (broadcast).

    Payoffs at expiry, for a call (a put: S < strike): cash-or-nothing ``cash`` if
    S > strike; asset-or-nothing S if S > strike; gap S - payoff_strike if S > strike.
    Returns the number of rows whose status is not 0 (their outputs are NaN).
    """
    cdef Py_ssize_t n = status.shape[0]
    cdef pg_cols inp
    inp.n = n
    inp.beyond_touched = 0
    inp.ni = 2
    inp.nd = 8
    inp.broadcast = (
        input_bit("payoff", payoff.shape[0], n, PG_ICOL_BIT(0))
        | input_bit("option_type", option_type.shape[0], n, PG_ICOL_BIT(1))
        | input_bit("strike", strike.shape[0], n, PG_DCOL_BIT(0))
        | input_bit("time", time.shape[0], n, PG_DCOL_BIT(1))
        | input_bit("cash", cash.shape[0], n, PG_DCOL_BIT(2))
        | input_bit("payoff_strike", payoff_strike.shape[0], n, PG_DCOL_BIT(3))
        | input_bit("spot", spot.shape[0], n, PG_DCOL_BIT(4))
        | input_bit("rate", rate.shape[0], n, PG_DCOL_BIT(5))
        | input_bit("dividend_yield", dividend_yield.shape[0], n, PG_DCOL_BIT(6))
        | input_bit("volatility", volatility.shape[0], n, PG_DCOL_BIT(7))
    )
    cdef Py_ssize_t ldo = _check_measures(measures, out, n)
    if n == 0:
        return 0
    inp.ic[0] = &payoff[0]
    inp.ic[1] = &option_type[0]
    inp.dc[0] = &strike[0]
    inp.dc[1] = &time[0]
    inp.dc[2] = &cash[0]
    inp.dc[3] = &payoff_strike[0]
    inp.dc[4] = &spot[0]
    inp.dc[5] = &rate[0]
    inp.dc[6] = &dividend_yield[0]
    inp.dc[7] = &volatility[0]
    return _run(pg_digital_block, &inp, measures, out, ldo, status, threads, False)


def touch_price_batch(const int[::1] touch_type not None,           # IN  1 one-touch, 2 no-touch
                      const int[::1] direction not None,            # IN  1 down (barrier below spot), 2 up
                      const int[::1] payment not None,              # IN  1 at hit, 2 at expiry (no-touch: 2 only)
                      const double[::1] cash not None,              # IN  amount paid, >= 0
                      const double[::1] barrier not None,           # IN  > 0, on its side of spot or at it (note 6)
                      const double[::1] time not None,              # IN  years to expiry, >= 0
                      const double[::1] monitoring_interval not None,  # IN  0 continuous, > 0 every that many years
                      const double[::1] spot not None,              # IN  > 0
                      const double[::1] rate not None,              # IN  continuously compounded
                      const double[::1] dividend_yield not None,    # IN  continuous yield
                      const double[::1] volatility not None,        # IN  lognormal, > 0
                      const int[::1] measures not None,             # IN  k Measure codes
                      double[:, :] out not None,                    # OUT (k, n)
                      int[::1] status not None,                     # OUT n: pg_status.h bits
                      int threads,
                      bint beyond_touched=False):                   # IN  a spot beyond the barrier is touched
    """Price n = len(status) one-touch / no-touch options (cash) and the requested Greeks.

    Arguments, in order: touch_type, direction, payment (int32 codes), cash, barrier, time,
    monitoring_interval, spot, rate, dividend_yield, volatility (float64), measures,
    out (k, n), status (n), threads. Every input column has length n or 1 (broadcast).

    A one-touch pays ``cash`` when the barrier is hit (payment 1) or at expiry if it was hit
    (payment 2); a no-touch pays ``cash`` at expiry if it was never hit (payment must be 2;
    anything else is PG_BAD_VARIANT). ``monitoring_interval`` > 0: Broadie-Glasserman-Kou
    correction. Greeks by central finite differences of the closed form. A spot at the
    barrier is touched; one beyond it is refused, or with ``beyond_touched`` touched too
    (note 6). Returns the number of rows whose status is not 0 (their outputs are NaN).
    """
    cdef Py_ssize_t n = status.shape[0]
    cdef pg_cols inp
    inp.n = n
    inp.beyond_touched = beyond_touched
    inp.ni = 3
    inp.nd = 8
    inp.broadcast = (
        input_bit("touch_type", touch_type.shape[0], n, PG_ICOL_BIT(0))
        | input_bit("direction", direction.shape[0], n, PG_ICOL_BIT(1))
        | input_bit("payment", payment.shape[0], n, PG_ICOL_BIT(2))
        | input_bit("cash", cash.shape[0], n, PG_DCOL_BIT(0))
        | input_bit("barrier", barrier.shape[0], n, PG_DCOL_BIT(1))
        | input_bit("time", time.shape[0], n, PG_DCOL_BIT(2))
        | input_bit("monitoring_interval", monitoring_interval.shape[0], n, PG_DCOL_BIT(3))
        | input_bit("spot", spot.shape[0], n, PG_DCOL_BIT(4))
        | input_bit("rate", rate.shape[0], n, PG_DCOL_BIT(5))
        | input_bit("dividend_yield", dividend_yield.shape[0], n, PG_DCOL_BIT(6))
        | input_bit("volatility", volatility.shape[0], n, PG_DCOL_BIT(7))
    )
    cdef Py_ssize_t ldo = _check_measures(measures, out, n)
    if n == 0:
        return 0
    inp.ic[0] = &touch_type[0]
    inp.ic[1] = &direction[0]
    inp.ic[2] = &payment[0]
    inp.dc[0] = &cash[0]
    inp.dc[1] = &barrier[0]
    inp.dc[2] = &time[0]
    inp.dc[3] = &monitoring_interval[0]
    inp.dc[4] = &spot[0]
    inp.dc[5] = &rate[0]
    inp.dc[6] = &dividend_yield[0]
    inp.dc[7] = &volatility[0]
    return _run(pg_touch_block, &inp, measures, out, ldo, status, threads, True)
