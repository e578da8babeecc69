# cython: language_level=3
"""American options under Black-Scholes-Merton: price and Greeks.

Design
------
1. Pointwise: everything lives in ``pg_american.h``. ``pg_am_row`` validates one row and
   computes the requested measures; under it ``pg_am_solve`` (the exercise boundary),
   ``pg_am_price_prepare``/``pg_am_price_eval`` (the price integral of a solved boundary at
   any spot) and ``pg_am_tree`` (the binomial tree). All work is done for a put of unit
   strike: put(S, K, r, q) = K P(S/K; r, q), call(S, K, r, q) = S P(K/S; q, r)
   (McDonald-Schroder put-call symmetry: R. McDonald and M. Schroder, "A parity result for
   American options", J. Comput. Finance 1(3), 1998, pp. 5-13), so a boundary solved once
   serves every spot.
2. Loops: ``price_batch`` prices rows one by one (a row is microseconds of work, not a SIMD
   lane); inside a row the node loops are ``omp simd`` loops calling libmvec's exp, log and
   erfc. Rows run on one thread below ``PARALLEL_THRESHOLD``, else in a ``prange`` over rows
   (dynamic schedule; each thread owns a work buffer allocated before the loop), GIL
   released. A row's result depends only on its inputs, never on the thread split.
   In ``pg_am_solve`` the quadrature loops run over all n l (node, theta) points at once
   (per-point constants spread over contiguous arrays, per-node sums taken afterwards), not
   per node over l points: with l = 12 and 8-lane vectors a per-node reduction loop left
   4 points of every node to scalar libm erfc/exp (a profile showed scalar __erfc at 24%
   and __ieee754_exp at 8% of the accurate scheme's samples). The Jacobian rows are
   accumulated 8 columns at a time in registers over a zero-padded interpolation matrix.
   Accurate scheme, 1 thread, 2,000-option benchmark book on the 2-core development VM
   (load ~1, noisy): best of 30-40 calls 17.2-24.6 us per option before, 9.5-14.1 us
   after (interleaved runs of both builds); QuantLib's accurate scheme 212-297 us in the
   same sessions. Prices unchanged but for the last bits (max relative change 3.5e-15).
3. Numerics, engine 1 (fixed point; L. Andersen, M. Lake and D. Offengenden,
   "High-performance American option pricing", J. Comput. Finance 20(1), 2016, pp. 39-87;
   "ALO" below; sec. 4 for the integral equations, sec. 5 for the numerical scheme):
   - Early exercise premium representation of the put (ALO sec. 2; Kim 1990, Jacka 1991):
     V = v_E + int_0^T [r K e^{-rt} N(-d-(t, S/B(T-t))) - q S e^{-qt} N(-d+(t, S/B(T-t)))] dt.
   - The boundary is carried as y = ln(B/X)^2, X = B(0+) = K min(1, r/q), on n + 1
     Chebyshev-Lobatto nodes in z = 2 sqrt(tau/T) - 1 (ALO sec. 5.2: interpolation in
     sqrt-time of the squared log boundary), started from the QD+ boundary (J. Li, Rev.
     Deriv. Res. 13, 2010, pp. 75-99; ALO sec. 5.1), solved with 8 Halley steps per node.
   - The collocation equations of ALO's value-matching system FP-B (B = K e^{-(r-q)tau} N/D)
     are solved by Newton's method in s = sqrt(y) with the full n x n Jacobian (every node
     enters every integral through the interpolated boundary). This departs from ALO's
     iteration (one partial Jacobi-Newton step, then plain fixed-point steps) and from
     QuantLib's QdFpAmericanEngine, which switches to FP-A for |r - q| < 1e-3: on 300
     random rows we measured the plain FP-B iteration contracting at only ~0.5 per step
     where r and q are close (e.g. 3.6e-3 error after 4 steps, 4e-5 after 8), and FP-A
     diverging for r > q at low volatility (e.g. vol 5%, r 5%, q 0, T 10: off by 0.9 after
     8 steps); two Newton steps reach the converged collocation solution in every case seen.
     (The brief's FP-B' variant could not be checked against the paper's text here.)
   - Quadrature: every integral along the boundary is taken in theta with t = tau sin^2,
     u = tau cos^2 (t time to the exercise date, u the boundary's time to maturity); this
     makes sqrt(t) and sqrt(u) smooth, removing the square-root endpoint behaviour of both
     integrands, so plain Gauss-Legendre in theta converges fast. The Chebyshev abscissa of
     a quadrature node does not depend on T, so the interpolation matrices are built once.
   - Schemes (n Chebyshev intervals, l nodes per boundary integral, m Newton steps of which
     the first `newton` rebuild the Jacobian, p price nodes), as QuantLib's fast / accurate /
     high-precision schemes in role: 1 fast (8, 8, 2, 24, 1), 2 accurate (12, 12, 2, 40, 2),
     3 high precision (32, 48, 3, 128, 3). ``SCHEMES`` lists them. Measured against
     QuantLib's QdFpAmericanEngine high-precision scheme (tests/ext/test_american_kernel.py
     and the benchmark state the figures).
   - Regimes of the unit put (r, q): r <= 0 and q >= r: never exercised early, the European
     price and its analytic Greeks (pg_black.h). r >= 0 otherwise: one boundary, this
     engine. q < r < 0 (puts; calls: r < q < 0): two exercise boundaries (ALO do not cover
     it; QuantLib's engine refuses it); such a row is priced on the tree below with
     ``tree_steps`` steps, Greeks included, never silently by the one-boundary formula.
   - T = 0: intrinsic value, delta the step (half at the money), other Greeks 0. A spot at
     or beyond the boundary: intrinsic value (immediate exercise), delta -1 (put) / +1 (call).
4. Numerics, engine 2 (binomial tree): Leisen-Reimer (D. Leisen and M. Reimer, "Binomial
   models for option valuation - examining and improving convergence", Appl. Math. Finance
   3, 1996, pp. 319-346) with Peizer-Pratt method-2 inversion (p. 324), odd steps (an even
   ``tree_steps`` is raised by one), early exercise at every node. Far from the strike
   (|d1|, |d2| ~ 40) the inversion rounds the probabilities to 0 or 1; such rows use
   Cox-Ross-Rubinstein steps (J. Cox, S. Ross and M. Rubinstein, J. Financ. Econ. 7, 1979),
   and a row where those fail too (drift per step beyond vol per step, e.g. vol 0.1% with
   |r - q| = 45% on 101 steps) is PG_NOT_FINITE, never a wrong price. Node spots are
   products S d^i (u/d)^j, or exp(ln S + i ln d + j ln(u/d)) where a product could overflow.
   Delta and gamma from the
   nodes of steps 1 and 2; theta from the value at spot two steps on (the parabola through
   the three step-2 nodes) minus today's, per year (so it is 0 in the exercise region).
   Discrete cash dividends (``dividend_times``, ``dividend_amounts``: one schedule shared by
   the batch's rows, one underlying of one snapshot), escrowed-dividend model: the spot is
   a riskless part, the present value of the dividends still to be paid before expiry, plus
   a risky part X that follows geometric Brownian motion with the row's vol. Sources: J.
   Hull, "Options, Futures, and Other Derivatives", the chapter on basic numerical
   procedures, binomial trees for a stock paying a known dollar dividend (build the tree
   on S less the present value of the dividends, add that present value back at each
   node; the chapter's number differs between editions and was not checked here); the
   same model as QuantLib's FdBlackScholesVanillaEngine with CashDividendModel Escrowed
   (EscrowedDividendAdjustment, FdmEscrowedLogInnerValueCalculator), the reference of the
   tests. Per row, with its flat rate r (the zero rate to its expiry, as the tree
   discounts; the caller passes the actual spot S, so the escrowed spot and the add-back
   use one rate and one schedule):
   - X0 = S - sum_{t_k in (0, T]} D_k e^{-r t_k} (the spot's status bit where X0 <= 0); the
     tree (d1, d2, node spots) is built on X0.
   - At a node at time tau the exercise value is that of the actual spot X_node + PV_tau,
     PV_tau = sum_{t_k in (tau, T]} D_k e^{-r (t_k - tau)} (a dividend going ex at tau is
     gone: the node is ex-dividend); continuation as usual; at the root, on S itself.
   - Exercise just before an ex-date (cum dividend: a call) or just after it (a put) is
     what the dividends make worth doing, and the time grid misses it where the ex-time
     t_k falls inside a step (tau, tau + dt]: at tau the exercise value is also compared
     with that strategy's value, a forward, X_node e^{-q dl} + PV_tau - K e^{-r dl} (less
     D_k e^{-r dl} for a put), dl = t_k - tau: a feasible strategy, so a lower bound, exact
     as dt -> 0.
   - A dividend going ex at T itself can be had by exercising just before it: the payoff
     is max(w (X_N - K), w (X_N + D_T - K), 0) (so such a dividend costs an American call
     nothing; the European payoff, on the ex-dividend spot, keeps it off).
   These two cut the largest error against QuantLib on 100 random rows (spot 100, 801 steps)
   from 1.2e-4 to 4.8e-5 of the spot; the worst row before was a call at r 9% with three
   dividends, off by about the interest on K over the part of a step the grid lost.
   Without dividends (none given, none in (0, T], or all of amount 0) every step is the plain
   tree's, bit for bit. The dividends are discounted at r alone, and a yield q is paid on X
   only, as pricegrid's European escrowed spot does (server/service/market.py); QuantLib
   1.44 (its escrowed FD adjustment and AnalyticDividendEuropeanEngine) discounts them at
   r - q, the yield paid on the whole spot: the two agree for q = 0 (the tests compare the
   American prices there) and in the European price for any q once QuantLib is given the
   amounts D e^{-q t}. A consequence of ours: with q > 0, larger cash dividends also shrink
   the yield, so a deep in-the-money American call can gain from them (seen: +4.6e-4 on one
   of 60 test rows).
5. Greeks (common.proto conventions: vega per 1.00 of vol, theta = dV/dt as the option
   ages, rho with q fixed, dividend_rho = dV/dq):
   - engine 1, "finite_difference": spot bumps reuse the solved boundary (it does not depend
     on the spot): delta central with h = 1e-4 S min(1, vol sqrt T), gamma central with
     h = 1e-3 S min(1, vol sqrt T). Theta: the boundary does not depend on T either, so V at
     T - h and T - 2h is priced on the same boundary, three-point backward difference,
     h = 1e-3 T. Vega: central, boundary re-solved, h = 1e-4 max(vol, 0.05). Rho and
     dividend rho: central, re-solved, h = 1e-4 (absolute); where a bumped point would
     change the regime (e.g. r crossing 0), a three-point one-sided difference on the side
     that keeps it. Each engine's discretisation error is a smooth function of the inputs
     (fixed nodes, fixed iteration counts), so these differences agree between the accurate
     and high-precision schemes to about 1e-6 relative (tests).
   - engine 2: delta, gamma, theta "tree_grid" (above); vega (h = 1e-3 vol), rho and
     dividend rho (h = 1e-4) by repricing on the tree, "finite_difference". With cash
     dividends: delta and gamma are with respect to the actual spot S (X0 = S - PV and PV
     does not depend on S, so the slopes in X are slopes in S: the same as bumping S and
     escrowing again, without the bumps' noise); theta holds the actual spot fixed as the
     option ages (the parabola is read at X = S - PV_{2 dt}), less the amount of a dividend
     going ex within the two steps (the spot's drop on its ex-date: held across it, theta
     would jump by about delta D / (2 dt), an artefact of the step size); rho holds S and
     the dividends' amounts and ex-times fixed, so the escrowed spot moves with r (their
     present value is re-discounted at the bumped rate); dividend rho is dV/dq at fixed S
     and dividends.
   ``GREEK_METHODS`` describes engine 1, ``GREEK_METHODS_BY_METHOD`` both.
6. Validated domain (tests): vol 5%..100%, T 1 day..12 years, r and q in [0, 10%] against
   QuantLib, negative rates and strikes up to 6x spot by identities and the tree. Outside it
   rows are priced (vol 300% over 30 years: fixed point and tree 2001 steps differ by 0.2%
   of the strike, the tree being the coarser there) but not validated to the same level.
7. Status: pg_status.h bits per row (option type, strike, time, spot, rate, dividend, vol);
   a failed row has NaN in every output; valid inputs whose price or a requested measure is
   not finite get PG_NOT_FINITE.
"""

from pg_common cimport input_bit, stop_block
from libc.stdint cimport int64_t
from cython.parallel cimport prange, threadid
from libc.stdlib cimport malloc, free
from libc.math cimport isfinite

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
    double PG_AM_T_MAX
    ctypedef struct pg_am_scheme:
        int n
        int l
        int m
        int p
        int newton
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
    ctypedef struct pg_am_divs:
        const double *t
        const double *a
        int n
    int pg_am_init()
    size_t pg_am_fp_work(const pg_am_scheme *sc)
    size_t pg_am_tree_work(int steps)
    Py_ssize_t pg_am_rows(int method, int scheme, int steps, double *work, const pg_am_inputs *inp,
                          const pg_am_divs *dv, Py_ssize_t start, Py_ssize_t m, const int *codes, int k,
                          double *out, Py_ssize_t ldo, int *status, int64_t *stop)
    int pg_max_threads()

if pg_am_init() != 0:
    raise MemoryError("pricegrid.ext.american: scheme tables")

__all__ = ["MAX_TIME", "MEASURES", "GREEK_METHODS", "GREEK_METHODS_BY_METHOD", "PARALLEL_THRESHOLD", "SCHEMES",
           "METHOD_FIXED_POINT", "METHOD_TREE", "FAST", "ACCURATE", "HIGH_PRECISION",
           "max_threads", "price_batch"]

METHOD_FIXED_POINT = PG_AM_METHOD_FP
#: the longest expiry either engine prices, in years (a longer one: BAD_TIME; pg_american.h)
MAX_TIME = PG_AM_T_MAX
METHOD_TREE = PG_AM_METHOD_TREE
FAST, ACCURATE, HIGH_PRECISION = 1, 2, 3

#: scheme code -> (n Chebyshev intervals, l nodes per boundary integral, m Newton steps,
#: p price nodes, Newton steps that rebuild the Jacobian)
SCHEMES = {s + 1: (pg_am_schemes[s].n, pg_am_schemes[s].l, pg_am_schemes[s].m, pg_am_schemes[s].p,
                   pg_am_schemes[s].newton) for s in range(PG_AM_NSCHEMES)}

MEASURES = (1, 2, 3, 4, 5, 6, 7)
GREEK_METHODS_BY_METHOD = {
    PG_AM_METHOD_FP: {2: "finite_difference", 3: "finite_difference", 4: "finite_difference",
                      5: "finite_difference", 6: "finite_difference", 7: "finite_difference"},
    PG_AM_METHOD_TREE: {2: "tree_grid", 3: "tree_grid", 4: "finite_difference", 5: "tree_grid",
                        6: "finite_difference", 7: "finite_difference"},
}
GREEK_METHODS = GREEK_METHODS_BY_METHOD[PG_AM_METHOD_FP]

# A row costs microseconds (fixed point) to a millisecond (tree), so a second thread pays
# off from a few rows. Measured on the 2-core development VM (accurate scheme, random puts,
# median of 200 calls, busy neighbours): 2 rows 31.3 / 31.0 us (1 / 2 threads), 4 rows
# 57.9 / 34.5 us, 16 rows 223 / 120 us (after the simd restructuring of pg_am_solve; the
# build before it measured 52.3 / 51.7, 101 / 55.0, 404 / 213 us in the same session); the
# fast scheme's rows cost about a third, hence 4.
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
                int threads, int method=1, int scheme=2, int tree_steps=801,
                const double[::1] dividend_times=None,    # IN  d ex-times (years, in order), every row's
                const double[::1] dividend_amounts=None,   # IN  d cash amounts, >= 0
                stop=None):                                # IN/OUT the stop block (pg_stop.h) or None
    """Price n = len(status) American options and the requested Greeks; expiries up to
    ``MAX_TIME`` (100) years, a longer one gets BAD_TIME (pg_american.h: PG_AM_T_MAX).

    Every input has length n or 1 (broadcast). ``out[j]`` receives measure ``measures[j]``
    (Measure codes 1 price .. 7 dividend rho); each row of ``out`` must be contiguous.
    method: 1 fixed point (ALO), 2 Leisen-Reimer tree. scheme (method 1): 1 fast,
    2 accurate, 3 high precision. tree_steps: steps of the tree (method 2, and the rows of
    method 1 in the two-boundary regime); odd, an even count is raised by one.
    dividend_times, dividend_amounts (method 2 only): one underlying's discrete cash
    dividends in time order, shared by every row; ``spot`` is then the actual
    (cum-dividend) spot and each row escrows the dividends with ex-time in (0, T] at its own
    flat rate (design note 4); a row whose spot is not above their present value gets the
    spot's status bit. Runs on
    ``threads`` threads when ``threads > 1`` and ``n >= PARALLEL_THRESHOLD``. Returns the
    number of rows whose status is not 0 (their outputs are NaN). ``stop``: a stop block
    (int64[3], pg_stop.h) polled before each row and within long trees; once it says stop,
    the rows not done get PG_CANCELLED and NaN.
    """
    cdef Py_ssize_t n = status.shape[0]
    cdef Py_ssize_t k = measures.shape[0]
    cdef Py_ssize_t j, i, nbad = 0
    cdef pg_am_inputs inp
    cdef pg_am_divs dv
    cdef int steps
    if method != PG_AM_METHOD_FP and method != PG_AM_METHOD_TREE:
        raise ValueError(f"unknown method {method}; expected 1 (fixed point) or 2 (binomial tree)")
    if scheme < 1 or scheme > PG_AM_NSCHEMES:
        raise ValueError(f"unknown scheme {scheme}; expected 1 (fast), 2 (accurate) or 3 (high precision)")
    if tree_steps < 3 or tree_steps > _MAX_STEPS:
        raise ValueError(f"tree_steps {tree_steps} out of range 3..{_MAX_STEPS}")
    steps = tree_steps | 1
    dv.n = 0
    dv.t = dv.a = NULL
    if (dividend_times is None) != (dividend_amounts is None):
        raise ValueError("dividend_times and dividend_amounts go together")
    if dividend_times is not None:
        if dividend_times.shape[0] != dividend_amounts.shape[0]:
            raise ValueError(f"{dividend_times.shape[0]} dividend_times for {dividend_amounts.shape[0]}"
                             " dividend_amounts")
        for j in range(dividend_times.shape[0]):
            if not isfinite(dividend_times[j]):
                raise ValueError(f"dividend_times[{j}] = {dividend_times[j]} is not finite")
            if j and dividend_times[j] < dividend_times[j - 1]:
                raise ValueError(f"dividend_times must be in time order (dividend_times[{j}] ="
                                 f" {dividend_times[j]} < {dividend_times[j - 1]})")
            if not (isfinite(dividend_amounts[j]) and dividend_amounts[j] >= 0.0):
                raise ValueError(f"dividend_amounts[{j}] = {dividend_amounts[j]} is not finite and >= 0")
        dv.n = <int>dividend_times.shape[0]
        if dv.n:
            if method != PG_AM_METHOD_TREE:
                raise ValueError("cash dividends are priced on the binomial tree only (method 2)")
            dv.t = &dividend_times[0]
            dv.a = &dividend_amounts[0]
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
    cdef int64_t *stp = stop_block(stop)
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
                nbad = pg_am_rows(method, scheme, steps, work, &inp, &dv, 0, n, codes, <int>k, out_p,
                                  ldo, status_p, stp)
            else:
                for i in prange(n, num_threads=nthreads, schedule="dynamic"):
                    nbad += pg_am_rows(method, scheme, steps, work + threadid() * per_thread, &inp,
                                       &dv, i, 1, codes, <int>k, out_p, ldo, status_p, stp)
    finally:
        free(work)
    return nbad

