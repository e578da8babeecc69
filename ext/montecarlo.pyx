# cython: language_level=3
"""Monte Carlo engine: European, Asian, single-barrier and lookback options under GBM and
Heston, prices and Greeks with standard errors.

Design
------
1. Pointwise: the engine lives in ``pg_mc.h`` (row loading and validation, time grid, path
   classes and scenarios, payoffs, control means, statistics) and ``pg_mc_rng.h`` (Philox,
   Box-Muller, AS 241, Sobol). A *work unit* is one row, one randomisation (replicate) and
   one block of ``PG_MC_BLOCK`` = 2048 draws; it is simulated in chunks of 64 paths
   (lanes), every lane loop an ``omp simd`` loop (gcc calls libmvec's exp, log, sin, cos,
   erfc), and leaves per measure the sample statistics (count, means, centred second
   moments of the estimate and of its control). One-step pseudo-random paths (a GBM
   European) draw the whole block's normals in one call (the same numbers the chunks would
   draw); priced alone without antithetics, the block is one loop (terminal spot, payoff,
   control) and its statistics one two-pass sweep. Measured on the development VM (one
   thread, 2^20 paths, the bench's gbm_european): 4.1 ns per path, from 8.2 before
   these and the Philox change below; the vectorised numpy scheme takes about 25 ns.
2. Loops: the batch entry points validate every row first (one pass), then run the units.
   On one thread below ``PARALLEL_THRESHOLD`` path-steps in all; else in a ``prange`` over
   rows when there are at least 4 rows per thread (or at least one per thread, each with
   fewer than 2 units per thread), else over each row's units in turn (one trade with
   many paths; at most 1,024 units at a time, folded in order before the next). A row's units are always combined in unit order
   (pairwise update of T. F. Chan, G. H. Golub and R. J. LeVeque, "Algorithms for computing
   the sample variance", Amer. Statist. 37(3), 1983), and every unit's numbers are a pure
   function of (seed, replicate, draw, dimension), so results are bitwise the same for any
   thread count and do not depend on a row's place in the batch (rows share random numbers:
   common random numbers across rows as well).
   Stopping: with a stop block (``stop``, pg_stop.h) the loops poll for cancellation and the
   deadline between rows, every 64 units of a row and every 256 chunk-steps inside a unit
   (0.1-2 ms of work; a poll costs ~25 ns); a stopped call leaves PG_CANCELLED and NaN in
   every row it did not finish.
3. Random numbers. Philox4x32-10 (J. K. Salmon, M. A. Moraes, R. O. Dror and D. E. Shaw,
   "Parallel random numbers: as easy as 1, 2, 3", SC11, 2011), counter = (dimension, draw
   pair, tag), key = the 64-bit ``seed``; on AVX2 / AVX-512 its multiplications are explicit
   32 x 32 -> 64-bit vpmuludq (gcc vectorises the portable loop with the slower 64-bit
   vpmullq). Normals: Box-Muller (Box and Muller, Ann. Math.
   Stat. 29, 1958, p. 610) of Philox's two 52-bit uniforms: exact in law, and cheaper than
   an inverse (one log, sqrt, sin and cos per two normals, all libmvec vector calls, against
   a log, a sqrt and three rational approximations per normal, all evaluated in a SIMD
   loop); Sobol points go through M. J. Wichura's AS 241 inverse normal
   (Appl. Statist. 37, 1988, pp. 477-484; pg_normal.h) instead, which keeps their
   stratification. Antithetic variates: the draw's negated normals on the paired lane.
4. Sobol (``sobol=True``): Joe-Kuo direction numbers (S. Joe and F. Y. Kuo, SIAM J. Sci.
   Comput. 30(5), 2008, pp. 2635-2654, the set scipy ships), derived here from
   unscrambled ``scipy.stats.qmc.Sobol`` points: scipy generates in Gray-code order, so its
   point of index 2^k is v_k XOR v_{k-1}. Built on first use for the dimensions and number
   of points asked and cached for the process (``sobol_direction_numbers``); measured on the
   development VM: 21 ms for 64 dimensions and 2^16 points, 34 ms for 1,000 dimensions,
   after importing scipy.stats (1.4 s) on the first Sobol call of a process. The paths
   are split into 16 replicates, each the first paths/16 points under its own random
   digital shift (Philox, tag 1); the estimate is the replicates' mean and its standard
   error their standard deviation / 4 (P. L'Ecuyer and C. Lemieux, "Recent advances in
   randomized quasi-Monte Carlo methods", 2002, sec. 3). Dimensions: step k's normals are
   dimensions (k - 1) d + j (d = 1 for GBM, 2 for Heston: variance driver, then the spot's
   independent driver). ``brownian_bridge=True`` builds each driver's Brownian path by a
   Brownian bridge in level order (expiry first, then midpoints; P. Glasserman, "Monte
   Carlo Methods in Financial Engineering", Springer 2003, sec. 3.1, pp. 82-86), so the
   first dimensions carry the most variance; it is applied with pseudo-random numbers too
   (harmless, no gain). At most 21,201 dimensions.
5. Paths. Time grid: the product's dates (Asian fixings; discrete barrier monitoring dates
   T - j D, counted back from expiry; else expiry), each interval cut into equal steps of at
   most ``max_step`` years; a GBM European is one exact step. GBM: exact log-Euler steps.
   Heston: L. Andersen's QE scheme ("Simple and efficient simulation of the Heston
   stochastic volatility model", J. Comput. Finance 11(3), 2008, pp. 1-42: the quadratic
   and exponential moment-matched variance steps switched at psi_c = 1.5, the log-spot
   step with K0..K4 and central weights gamma1 = gamma2 = 1/2, and the paper's martingale
   correction K0* = -ln M - (K1 + K3/2) V, M = E[exp(A V') | V], A = K2 + K4/2, where M
   exists (A < 1/(2a) quadratic, A < beta exponential; else the uncorrected K0), or with
   ``heston_scheme=2`` full truncation Euler (R. Lord, R. Koekkoek and D. van Dijk, "A
   comparison of biased simulation schemes for stochastic volatility models", Quant.
   Finance 10(2), 2010, pp. 177-194). The QE uniform is Phi(-Zv) of the variance normal (so a bridge or Sobol
   point drives both branches). QE's bias grows with kappa x max_step (the trapezoidal
   integrated variance): measured with 10^5 paths and the control variate at kappa = 50
   (v0 = theta = 0.04, sigma 0.5, rho -0.7, T = 1, ATM call 9.230): -0.050 at max_step 1/32
   (kappa dt = 1.6), -0.017 at 1/128, 0.000 at 1/512; keep kappa x max_step below about
   0.5. Moment-matched weights gamma2 = (1 - f)/(1 - e^{-kappa dt}) were tried and were
   worse (+0.34 at 1/32).
6. Products. European. Asian (arithmetic or geometric; ``fixing_counts`` 0 = continuous
   averaging over [-elapsed, T] by the trapezoidal rule on the grid): average =
   (past x running + sum of future fixings) / (past + count) with ``running_average`` the
   average (of the same kind) of the ``past_fixings`` already fixed, or (elapsed x running
   + integral over [0, T]) / (elapsed + T); the columns and their conventions are those of
   pricegrid.ext.asian (running average >= 0 arithmetic, > 0 geometric, read only where
   there is past averaging; T = 0 with no averaging done: intrinsic value on spot), so a
   server can route a row to either engine. Barrier (Reiner-Rubinstein types, rebate as
   QuantLib: at expiry for a knock-in never knocked in, at the hit for a knock-out): with
   ``monitoring_interval`` D > 0 checked at the monitoring dates, paid at the date; with
   D = 0 continuous, by the probability exp(-2 ln(S_k/H) ln(S_{k+1}/H) / var) that the
   Brownian bridge between grid points crosses (Glasserman 2003, sec. 6.4, pp. 366-368;
   var = vol^2 dt, or the average Heston variance over the step times dt), the knock-out
   rebate paid at the end of the crossing step. Lookback (floating or fixed strike, on the
   running minimum / maximum, monitored continuously): per step the extreme of the Brownian
   bridge between the grid points is drawn exactly by inversion, max = (a + b +
   sqrt((b - a)^2 - 2 var log U)) / 2 (Glasserman 2003, sec. 6.4, p. 367), from one more
   random number per step (its dimension follows the step's drivers and is not bridged);
   exact in law under GBM for any grid, under Heston with the step's average variance.
   As pricegrid.ext.lookback, only the extremum the payoff uses is read (the maximum for
   floating puts and fixed calls, the minimum for floating calls and fixed puts).
7. Control variates (``control_variate=True``; the coefficient beta = Cov/Var estimated from
   the same samples, standard error from the residuals with n - 2 degrees of freedom):
   European GBM: the discounted terminal spot (mean S e^{-qT}); arithmetic Asian: the
   geometric average of the same fixings (discrete weights, exact lognormal mean: Kemna and
   Vorst, J. Banking Finance 14, 1990, in its discrete form); geometric Asian under GBM:
   the discounted spot at the last fixing; barrier and fixed lookback: the European payoff
   (Black-Scholes mean); floating lookback: the terminal spot. Under Heston the geometric
   and European controls are taken on a *shadow* GBM path driven by the same Brownian
   motion rho W_v + sqrt(1 - rho^2) W_perp with volatility sqrt(expected average variance),
   whose law is exactly lognormal, so its closed-form mean is exact.
8. Greeks (MEASURES 2..7) by central differences with common random numbers inside the
   kernel (``monte_carlo_crn``): every bumped scenario reuses the base normals; spot, rate
   and yield bumps reuse the base log-path, vol (sqrt(v0) under Heston: vega = dV/d sqrt(v0))
   and time bumps re-simulate it from the same normals. Bumps: delta 1e-3 S, gamma 1e-2 S
   (three points; near the edge of the spot domain, a barrier or a lookback's running
   extremum within the gamma bump, second-order one-sided differences away from it: delta
   from S, S + dh, S + 2dh, gamma from S .. S + 3dh, so the extremum is held fixed as in
   pricegrid.ext.lookback), vega 1e-3 (GBM: at most vol/2), rho and dividend rho 1e-3, theta
   min(1/365, half the first event time) years in each direction (the option ages: all
   dates move closer, running state stays as given; continuous averaging keeps its start:
   aged by h, the known part has absorbed h of the path at today's spot, as in
   pricegrid.ext.asian). Each Greek's control is the same
   difference of the control payoffs, with the same difference of their closed-form means,
   and its standard error that of the per-path difference.
9. Status: pg_status.h bits per row: the usual BSM input bits; PG_BAD_VOL (GBM) or
   PG_BAD_HESTON_* (Heston); PG_BAD_VARIANT for an unknown averaging / barrier / strike
   type; PG_BAD_FIXINGS (fixing times not finite, not increasing, <= 0 or after expiry);
   PG_BAD_RUNNING (a running average, or a lookback's minimum), PG_BAD_PAST_FIXINGS,
   PG_BAD_ELAPSED, PG_BAD_RUNNING_MAX (a lookback's maximum): each checked also where the
   row does not read it (as the analytic kernels); PG_BAD_BARRIER (beyond the spot; with
   barrier_price_batch's ``beyond_touched``, touched as at it), PG_BAD_REBATE,
   PG_BAD_MONITORING. Spot at the barrier (S == H) is touched now, whatever the monitoring
   (ext/pg_barrier.h, note 3): a knock-in is then simulated as the European, a knock-out is
   its rebate R (standard error 0, Greeks 0). Malformed schedules (a negative
   count, counts that do not add up to len(fixing_times)) raise ValueError. A failed row
   has NaN in every output and standard error; a valid row whose estimate is not finite
   gets PG_NOT_FINITE. T = 0: the payoff now, its spot derivative as delta, other Greeks 0,
   standard errors 0. Settings out of range (paths < 32, max_step not > 0, seed outside
   [0, 2^64), a grid of more than 2^20 steps, more than 21,201 Sobol dimensions, unknown
   model or scheme, bad measure codes, shapes) raise ValueError naming the setting.
"""

import numpy as np

from pg_common cimport input_bit, pg_stop_poll, pg_stop_seen, stop_block
from cython.parallel cimport prange, threadid
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free, calloc
from libc.string cimport memset

cdef extern from "pg_mc.h" nogil:
    enum:
        PG_MC_L
        PG_MC_BLOCK
        PG_MC_REPLICATES
        PG_MC_MAX_STEPS
        PG_MC_MIN_PATHS
        PG_MC_NSTAT
        PG_MC_NMEASURE
        PG_MC_EUROPEAN
        PG_MC_ASIAN
        PG_MC_BARRIER
        PG_MC_LOOKBACK
        PG_MC_GBM
        PG_MC_HESTON
        PG_MC_QE
        PG_MC_FTE
        PG_MC_IN_OPTION_TYPE
        PG_MC_IN_VARIANT
        PG_MC_IN_STRIKE
        PG_MC_IN_TIME
        PG_MC_IN_SPOT
        PG_MC_IN_RATE
        PG_MC_IN_DIVIDEND
        PG_MC_IN_VOL
        PG_MC_IN_V0
        PG_MC_IN_KAPPA
        PG_MC_IN_THETA
        PG_MC_IN_SIGMA
        PG_MC_IN_RHO
        PG_MC_IN_RUNNING
        PG_MC_IN_PAST
        PG_MC_IN_ELAPSED
        PG_MC_IN_BARRIER
        PG_MC_IN_REBATE
        PG_MC_IN_MONITORING
        PG_MC_IN_RUN_MIN
        PG_MC_IN_RUN_MAX
        PG_MC_IN_FIX_COUNT

    double PG_MC_BUMP_DELTA
    double PG_MC_BUMP_GAMMA
    double PG_MC_BUMP_VOL
    double PG_MC_BUMP_RATE
    double PG_MC_BUMP_TIME

    ctypedef struct pg_mc_inputs:
        int product
        unsigned int broadcast
        const int *option_type
        const int *variant
        const double *strike
        const double *time
        const double *spot
        const double *rate
        const double *dividend
        const double *vol
        const double *v0
        const double *kappa
        const double *theta
        const double *sigma
        const double *rho
        const double *fixing_times
        const int64_t *fix_offset
        const int *fixing_counts
        const double *running
        const int *past
        const double *elapsed
        const double *barrier
        const double *rebate
        const double *monitoring
        int beyond_touched
        const double *run_min
        const double *run_max

    ctypedef struct pg_mc_settings:
        int model, scheme
        int64_t paths
        double max_step
        uint64_t seed
        int antithetic, control_variate, sobol, bridge
        const uint32_t *sobol_v
        int sobol_stride, sobol_bits
        int nmeas
        const int *meas
        int64_t *stop
        int64_t draws
        int replicates
        int64_t draws_per_rep
        int64_t blocks_per_rep
        int64_t units
        int chunk_draws

    ctypedef struct pg_mc_work:
        pass

    void pg_mc_settings_derive(pg_mc_settings *st)
    pg_mc_work *pg_mc_work_new(int64_t m_cap, int buffered, int dps)
    void pg_mc_work_free(pg_mc_work *w)
    int64_t pg_mc_prepass(const pg_mc_inputs *inp, const pg_mc_settings *st, Py_ssize_t n,
                          int *status, int64_t *steps, Py_ssize_t *too_many)
    int pg_mc_store(const pg_mc_settings *st, Py_ssize_t i, const double *est, const double *se,
                    double *out, Py_ssize_t ldo, double *err, Py_ssize_t lde, int *status)
    int64_t pg_mc_rep_size(const pg_mc_settings *st)
    void pg_mc_fold(const pg_mc_settings *st, int64_t u, const double *unit, double *reps)
    void pg_mc_row_serial(const pg_mc_inputs *inp, const pg_mc_settings *st, Py_ssize_t i,
                          int64_t m, pg_mc_work *w, double *unit, double *reps, double *est,
                          double *se)
    void pg_mc_row_unit(const pg_mc_inputs *inp, const pg_mc_settings *st, Py_ssize_t i,
                        int64_t m, int64_t u, pg_mc_work *w, double *unit)
    void pg_mc_row_finish(const pg_mc_inputs *inp, const pg_mc_settings *st, Py_ssize_t i,
                          int64_t m, pg_mc_work *w, const double *reps, double *est, double *se)
    int pg_mc_max_threads()

cdef extern from "pg_status.h" nogil:
    enum:
        PG_CANCELLED

__all__ = [
    "MEASURES", "GREEK_METHODS", "PARALLEL_THRESHOLD", "GBM", "HESTON", "QE",
    "FULL_TRUNCATION_EULER", "ARITHMETIC", "GEOMETRIC", "DOWN_IN", "DOWN_OUT", "UP_IN",
    "UP_OUT", "FLOATING", "FIXED", "BUMPS", "SOBOL_REPLICATES", "SOBOL_MAX_DIMS", "MIN_PATHS",
    "european_price_batch", "asian_price_batch", "barrier_price_batch",
    "lookback_price_batch", "sobol_direction_numbers", "max_threads",
]

GBM = PG_MC_GBM
HESTON = PG_MC_HESTON
QE = PG_MC_QE
FULL_TRUNCATION_EULER = PG_MC_FTE
ARITHMETIC, GEOMETRIC = 1, 2
DOWN_IN, DOWN_OUT, UP_IN, UP_OUT = 1, 2, 3, 4
FLOATING, FIXED = 1, 2
SOBOL_REPLICATES = PG_MC_REPLICATES
SOBOL_MAX_DIMS = 21201
MIN_PATHS = PG_MC_MIN_PATHS

#: Measure codes supported (pricegrid.v1.Measure): price, delta, gamma, vega, theta, rho,
#: dividend rho.
MEASURES = (1, 2, 3, 4, 5, 6, 7)
#: How each Greek is computed: central differences inside the kernel, every scenario on the
#: same random numbers. Vega under Heston is dV/d sqrt(v0).
GREEK_METHODS = {code: "monte_carlo_crn" for code in MEASURES[1:]}
#: The bump sizes (see the design note, item 8).
BUMPS = {"delta_relative_spot": PG_MC_BUMP_DELTA, "gamma_relative_spot": PG_MC_BUMP_GAMMA,
         "vol": PG_MC_BUMP_VOL, "rate": PG_MC_BUMP_RATE, "time_max": PG_MC_BUMP_TIME}

# Path-steps (paths x grid steps, summed over the rows) below which a call runs on one
# thread (a path-step costs 5-30 ns). Measured on the 2-core development VM with busy
# neighbours, one row, 1 vs 2 threads, median of 15 (threshold set to 0 for the purpose):
# the second thread delays a call by 4-12 ms whenever the other core is taken, so below
# 2^17 path-steps (GBM European 65,536 paths: 0.7 ms on one thread) two threads never won;
# Heston 65,536 paths x 4 steps (2^18): 7.8 ms on one thread, 4.4 ms on two at best.
cdef int64_t _PARALLEL_THRESHOLD = 1 << 18
PARALLEL_THRESHOLD = _PARALLEL_THRESHOLD
# Units of one row computed in parallel before they are folded (in order) into its
# statistics: bounds the memory of a huge single-trade run (1024 x 7 x 6 doubles).
cdef int64_t _UNIT_BATCH = 1024


def max_threads():
    """Threads an OpenMP parallel region would use by default (1 without OpenMP)."""
    return pg_mc_max_threads()


# --------------------------------------------------------------------------- Sobol directions
_sobol_v = np.zeros((1, 1), dtype=np.uint32)
_sobol_v[0, 0] = 1 << 31


def sobol_direction_numbers(int ndim, int nbits):
    """Direction numbers v[bit, dim] (uint32) for at least ``ndim`` dimensions and points
    below 2^nbits, cached for the process.

    Derived from unscrambled ``scipy.stats.qmc.Sobol(..., bits=32)`` points: scipy emits
    points in Gray-code order, so its point of index 2^k is v_k XOR v_{k-1} (v_0: index 1).
    """
    global _sobol_v
    if ndim < 1 or ndim > SOBOL_MAX_DIMS:
        raise ValueError(f"sobol needs {ndim} dimensions; at most {SOBOL_MAX_DIMS}")
    if nbits < 1 or nbits > 32:
        raise ValueError(f"sobol needs points below 2^{nbits}; at most 2^32")
    have_bits, have_dims = _sobol_v.shape
    if have_bits >= nbits and have_dims >= ndim:
        return _sobol_v
    from scipy.stats import qmc

    nbits = max(nbits, have_bits)
    ndim = max(ndim, have_dims)
    eng = qmc.Sobol(ndim, scramble=False, bits=32)
    points = np.empty((nbits, ndim), dtype=np.uint64)
    position = 0
    for k in range(nbits):
        eng.fast_forward((1 << k) - position)
        points[k] = np.round(eng.random(1)[0] * 2.0**32).astype(np.uint64)
        position = (1 << k) + 1
    v = np.empty_like(points)
    v[0] = points[0]
    for k in range(1, nbits):
        v[k] = points[k] ^ v[k - 1]
    _sobol_v = np.ascontiguousarray(v.astype(np.uint32))
    return _sobol_v


# --------------------------------------------------------------------------- shared driver
cdef int _check_out(double[:, :] a, str name, Py_ssize_t k, Py_ssize_t n) except -1:
    if a.shape[0] != k or a.shape[1] != n:
        raise ValueError(f"{name} has shape ({a.shape[0]}, {a.shape[1]}); expected ({k}, {n})")
    if n > 1 and a.strides[1] != sizeof(double):
        raise ValueError(f"each row of {name} must be contiguous")
    if k > 1 and (a.strides[0] % sizeof(double) or a.strides[0] < n * <Py_ssize_t>sizeof(double)):
        raise ValueError(f"rows of {name} must not overlap")
    return 0


cdef int _settings(pg_mc_settings *st, int model, object paths, double max_step, object seed,
                   bint antithetic, bint control_variate, bint sobol, bint brownian_bridge,
                   int heston_scheme) except -1:
    if model != PG_MC_GBM and model != PG_MC_HESTON:
        raise ValueError(f"unknown model {model}; expected 1 (GBM / Black-Scholes-Merton) or 4 (Heston)")
    if heston_scheme != PG_MC_QE and heston_scheme != PG_MC_FTE:
        raise ValueError(f"unknown heston_scheme {heston_scheme}; expected 1 (QE) or 2 (full truncation Euler)")
    try:
        paths_i = int(paths)
    except (TypeError, ValueError):
        raise ValueError(f"paths must be an integer, got {paths!r}") from None
    if paths_i != paths or paths_i < PG_MC_MIN_PATHS or paths_i > (1 << 48):
        raise ValueError(f"paths = {paths!r}; expected an integer in [{PG_MC_MIN_PATHS}, 2^48]")
    if not (max_step > 0.0 and max_step <= 1e300):
        raise ValueError(f"max_step = {max_step!r}; expected a finite number of years > 0")
    try:
        seed_i = int(seed)
    except (TypeError, ValueError):
        raise ValueError(f"seed must be an integer, got {seed!r}") from None
    if seed_i != seed or seed_i < 0 or seed_i >= (1 << 64):
        raise ValueError(f"seed = {seed!r}; expected an integer in [0, 2^64)")
    st.model = model
    st.scheme = heston_scheme
    st.paths = paths_i
    st.max_step = max_step
    st.seed = <uint64_t>seed_i
    st.antithetic = antithetic
    st.control_variate = control_variate
    st.sobol = sobol
    st.bridge = brownian_bridge
    st.sobol_v = NULL
    st.sobol_stride = 0
    st.sobol_bits = 0
    st.stop = NULL
    pg_mc_settings_derive(st)
    return 0


cdef unsigned int _model_bits(int model, Py_ssize_t n, const double[::1] volatility,
                              const double[::1] v0, const double[::1] kappa,
                              const double[::1] theta, const double[::1] sigma,
                              const double[::1] rho) except? 0xFFFFFFFF:
    cdef unsigned int b = 0
    if model == PG_MC_GBM:
        b |= input_bit("volatility", volatility.shape[0], n, PG_MC_IN_VOL)
    else:
        b |= (input_bit("v0", v0.shape[0], n, PG_MC_IN_V0)
              | input_bit("kappa", kappa.shape[0], n, PG_MC_IN_KAPPA)
              | input_bit("theta", theta.shape[0], n, PG_MC_IN_THETA)
              | input_bit("sigma", sigma.shape[0], n, PG_MC_IN_SIGMA)
              | input_bit("rho", rho.shape[0], n, PG_MC_IN_RHO))
    return b


cdef Py_ssize_t _run(pg_mc_inputs *inp, pg_mc_settings *st, const int[::1] measures,
                     double[:, :] out, double[:, :] stderr, int[::1] status, int threads,
                     object stop) except -1:
    """Validate, simulate and store: the part every product shares. ``stop``: the stop block
    (pg_stop.h) or None; once it says stop, every row not finished gets PG_CANCELLED."""
    cdef Py_ssize_t n = status.shape[0]
    cdef Py_ssize_t k = measures.shape[0]
    cdef Py_ssize_t j, i, too_many = -1, nbad = 0
    for j in range(k):
        if measures[j] < 1 or measures[j] > PG_MC_NMEASURE:
            raise ValueError(f"measures[{j}] = {measures[j]} is not supported; expected one of {MEASURES}")
    _check_out(out, "out", k, n)
    _check_out(stderr, "stderr", k, n)
    if n == 0:
        return 0
    st.nmeas = <int>k
    st.meas = &measures[0] if k > 0 else NULL
    cdef Py_ssize_t ldo = out.strides[0] // sizeof(double) if k > 1 else n
    cdef Py_ssize_t lde = stderr.strides[0] // sizeof(double) if k > 1 else n
    cdef double *out_p = &out[0, 0] if k > 0 else NULL
    cdef double *err_p = &stderr[0, 0] if k > 0 else NULL
    cdef int *status_p = &status[0]
    st.stop = stop_block(stop)
    cdef int64_t *stp = st.stop
    cdef bint cut

    steps_arr = np.empty(n, dtype=np.int64)
    cdef int64_t[::1] steps = steps_arr
    cdef int64_t mmax
    with nogil:
        mmax = pg_mc_prepass(inp, st, n, status_p, &steps[0], &too_many)
    if k == 0:
        for i in range(n):
            nbad += status_p[i] != 0
        return nbad
    if too_many >= 0:
        raise ValueError(f"max_step = {st.max_step!r} gives row {too_many} more than "
                         f"{PG_MC_MAX_STEPS} time steps")
    cdef int dps = (1 if st.model == PG_MC_GBM else 2) + (1 if inp.product == PG_MC_LOOKBACK else 0)
    cdef int buffered = st.sobol or st.bridge
    if buffered and mmax * dps > SOBOL_MAX_DIMS:
        raise ValueError(f"{'sobol' if st.sobol else 'brownian_bridge'} needs {mmax * dps} "
                         f"dimensions (max_step = {st.max_step!r}); at most {SOBOL_MAX_DIMS}")
    cdef const uint32_t[:, ::1] sob
    if st.sobol and mmax > 0:
        nbits = max(1, int(st.blocks_per_rep * PG_MC_BLOCK - 1).bit_length())
        table = sobol_direction_numbers(<int>(mmax * dps), nbits)
        sob = table
        st.sobol_v = &sob[0, 0]
        st.sobol_stride = <int>table.shape[1]
        st.sobol_bits = <int>table.shape[0]

    # threads
    cdef double work = 0.0
    for i in range(n):
        if status_p[i] == 0:
            work += <double>st.paths * <double>(steps[i] if steps[i] > 0 else 1)
    cdef int nthreads = threads if threads > 1 and work >= _PARALLEL_THRESHOLD else 1
    # rows in parallel when there are many (or each has few units), else each row's units
    cdef int by_rows = nthreads > 1 and (n >= 4 * nthreads or (st.units < 2 * nthreads and n >= nthreads))
    if nthreads > 1 and not by_rows and st.units < 2:
        nthreads = 1
    cdef int64_t ustat = k * PG_MC_NSTAT                 # one unit's statistics
    cdef int64_t rsize = pg_mc_rep_size(st)              # one row's replicate statistics
    cdef int64_t per_thread = ustat + rsize + 2 * k      # unit, replicates, estimates, errors
    cdef int64_t ubatch = _UNIT_BATCH if st.units > _UNIT_BATCH else st.units
    cdef int nws = nthreads
    cdef pg_mc_work **ws = <pg_mc_work **>calloc(nws, sizeof(pg_mc_work *))
    cdef double *buf = <double *>malloc((nws * per_thread + ubatch * ustat) * sizeof(double))
    cdef double *ubuf = buf + nws * per_thread if buf != NULL else NULL
    cdef double *b
    cdef int t
    cdef int64_t u0, uu, ucnt
    try:
        if ws == NULL or buf == NULL:
            raise MemoryError()
        for t in range(nws):
            ws[t] = pg_mc_work_new(mmax if mmax > 0 else 1, buffered, dps)
            if ws[t] == NULL:
                raise MemoryError()
        with nogil:
            # a row is cut (PG_CANCELLED, NaN) when a stop is seen before it or while it runs
            if nthreads == 1:
                b = buf
                for i in range(n):
                    if pg_stop_poll(stp):
                        status_p[i] |= PG_CANCELLED
                    elif status_p[i] == 0:
                        pg_mc_row_serial(inp, st, i, steps[i], ws[0], b, b + ustat,
                                         b + ustat + rsize, b + ustat + rsize + k)
                        if pg_stop_seen(stp):
                            status_p[i] |= PG_CANCELLED
                    nbad += pg_mc_store(st, i, b + ustat + rsize, b + ustat + rsize + k, out_p,
                                        ldo, err_p, lde, status_p)
            elif by_rows:
                for i in prange(n, num_threads=nthreads, schedule="dynamic"):
                    t = threadid()
                    b = buf + per_thread * t
                    if pg_stop_poll(stp):
                        status_p[i] |= PG_CANCELLED
                    elif status_p[i] == 0:
                        pg_mc_row_serial(inp, st, i, steps[i], ws[t], b, b + ustat,
                                         b + ustat + rsize, b + ustat + rsize + k)
                        if pg_stop_seen(stp):
                            status_p[i] |= PG_CANCELLED
                    nbad += pg_mc_store(st, i, b + ustat + rsize, b + ustat + rsize + k, out_p,
                                        ldo, err_p, lde, status_p)
            else:
                b = buf
                for i in range(n):
                    cut = pg_stop_poll(stp) != 0
                    if status_p[i] == 0 and steps[i] > 0 and not cut:
                        memset(b + ustat, 0, rsize * sizeof(double))
                        u0 = 0
                        while u0 < st.units:
                            ucnt = st.units - u0 if st.units - u0 < ubatch else ubatch
                            for uu in prange(ucnt, num_threads=nthreads, schedule="dynamic"):
                                if not pg_stop_seen(stp):
                                    pg_mc_row_unit(inp, st, i, steps[i], u0 + uu, ws[threadid()],
                                                   ubuf + uu * ustat)
                            if pg_stop_poll(stp):
                                cut = True
                                break
                            for uu in range(ucnt):
                                pg_mc_fold(st, u0 + uu, ubuf + uu * ustat, b + ustat)
                            u0 += ucnt
                    if cut:
                        status_p[i] |= PG_CANCELLED
                    elif status_p[i] == 0:
                        pg_mc_row_finish(inp, st, i, steps[i], ws[0], b + ustat,
                                         b + ustat + rsize, b + ustat + rsize + k)
                    nbad += pg_mc_store(st, i, b + ustat + rsize, b + ustat + rsize + k, out_p,
                                        ldo, err_p, lde, status_p)
    finally:
        if ws != NULL:
            for t in range(nws):
                pg_mc_work_free(ws[t])
            free(ws)
        free(buf)
    return nbad


cdef const int *_ptr_i(const int[::1] a):
    return &a[0] if a.shape[0] > 0 else NULL


cdef const double *_ptr_d(const double[::1] a):
    return &a[0] if a.shape[0] > 0 else NULL


cdef int _common(pg_mc_inputs *inp, Py_ssize_t n, const int[::1] option_type,
                 const double[::1] strike, const double[::1] time, const double[::1] spot,
                 const double[::1] rate, const double[::1] dividend_yield, int model,
                 const double[::1] volatility, const double[::1] v0, const double[::1] kappa,
                 const double[::1] theta, const double[::1] sigma, const double[::1] rho) except -1:
    inp.broadcast |= (
        input_bit("option_type", option_type.shape[0], n, PG_MC_IN_OPTION_TYPE)
        | input_bit("strike", strike.shape[0], n, PG_MC_IN_STRIKE)
        | input_bit("time", time.shape[0], n, PG_MC_IN_TIME)
        | input_bit("spot", spot.shape[0], n, PG_MC_IN_SPOT)
        | input_bit("rate", rate.shape[0], n, PG_MC_IN_RATE)
        | input_bit("dividend_yield", dividend_yield.shape[0], n, PG_MC_IN_DIVIDEND)
        | _model_bits(model, n, volatility, v0, kappa, theta, sigma, rho)
    )
    inp.option_type = _ptr_i(option_type)
    inp.strike = _ptr_d(strike)
    inp.time = _ptr_d(time)
    inp.spot = _ptr_d(spot)
    inp.rate = _ptr_d(rate)
    inp.dividend = _ptr_d(dividend_yield)
    inp.vol = _ptr_d(volatility)
    inp.v0 = _ptr_d(v0)
    inp.kappa = _ptr_d(kappa)
    inp.theta = _ptr_d(theta)
    inp.sigma = _ptr_d(sigma)
    inp.rho = _ptr_d(rho)
    return 0


# --------------------------------------------------------------------------- entry points
def european_price_batch(const int[::1] option_type not None,     # IN  OptionType codes
                         const double[::1] strike not None,       # IN  > 0
                         const double[::1] time not None,         # IN  years, >= 0
                         const double[::1] spot not None,         # IN  > 0
                         const double[::1] rate not None,         # IN  continuously compounded
                         const double[::1] dividend_yield not None,  # IN  continuous yield
                         int model,                               # IN  1 GBM, 4 Heston
                         const double[::1] volatility not None,   # IN  GBM vol (unused for Heston)
                         const double[::1] v0 not None,           # IN  Heston (unused for GBM) ...
                         const double[::1] kappa not None,
                         const double[::1] theta not None,
                         const double[::1] sigma not None,
                         const double[::1] rho not None,
                         const int[::1] measures not None,        # IN  k Measure codes (1..7)
                         double[:, :] out not None,               # OUT (k, n) estimates
                         double[:, :] stderr not None,            # OUT (k, n) standard errors
                         int[::1] status not None,                # OUT n: pg_status.h bits
                         int threads,
                         paths, double max_step, seed, bint antithetic, bint control_variate,
                         bint sobol, bint brownian_bridge, int heston_scheme=1, stop=None):
    """Monte Carlo prices and Greeks of n = len(status) European options.

    Every input column has length n or 1 (broadcast); the columns of the model not chosen
    are not read (pass length-1 zeros). Returns the number of rows whose status is not 0.
    ``stop`` (every entry point): a stop block (int64[3], pg_stop.h) polled every ~0.1-2 ms of
    work; once it says stop, the rows not finished get PG_CANCELLED and NaN.
    """
    cdef Py_ssize_t n = status.shape[0]
    cdef pg_mc_inputs inp
    cdef pg_mc_settings st
    memset(&inp, 0, sizeof(inp))
    inp.product = PG_MC_EUROPEAN
    _settings(&st, model, paths, max_step, seed, antithetic, control_variate, sobol,
              brownian_bridge, heston_scheme)
    _common(&inp, n, option_type, strike, time, spot, rate, dividend_yield, model, volatility,
            v0, kappa, theta, sigma, rho)
    return _run(&inp, &st, measures, out, stderr, status, threads, stop)


def asian_price_batch(const int[::1] averaging not None,          # IN  1 arithmetic, 2 geometric
                      const int[::1] option_type not None,
                      const double[::1] strike not None,
                      const double[::1] time not None,
                      const double[::1] fixing_times not None,    # IN  flat, years from now, 0 < t <= time
                      const int[::1] fixing_counts not None,      # IN  per row (or 1: shared); 0 = continuous
                      const double[::1] running_average not None, # IN  average of the past fixings
                      const int[::1] past_fixings not None,       # IN  count of past fixings
                      const double[::1] elapsed not None,         # IN  years of continuous averaging done
                      const double[::1] spot not None,
                      const double[::1] rate not None,
                      const double[::1] dividend_yield not None,
                      int model,
                      const double[::1] volatility not None,
                      const double[::1] v0 not None,
                      const double[::1] kappa not None,
                      const double[::1] theta not None,
                      const double[::1] sigma not None,
                      const double[::1] rho not None,
                      const int[::1] measures not None,
                      double[:, :] out not None,
                      double[:, :] stderr not None,
                      int[::1] status not None,
                      int threads,
                      paths, double max_step, seed, bint antithetic, bint control_variate,
                      bint sobol, bint brownian_bridge, int heston_scheme=1, stop=None):
    """Monte Carlo prices and Greeks of n = len(status) Asian (average price) options.

    Row i's fixing times are the next ``fixing_counts[i]`` values of ``fixing_times`` (rows
    in order); with ``fixing_counts`` of length 1, ``fixing_times`` is one schedule shared by
    every row. A count of 0 averages continuously over [-elapsed, time].
    """
    cdef Py_ssize_t n = status.shape[0]
    cdef Py_ssize_t i
    cdef int64_t total = 0
    cdef pg_mc_inputs inp
    cdef pg_mc_settings st
    memset(&inp, 0, sizeof(inp))
    inp.product = PG_MC_ASIAN
    _settings(&st, model, paths, max_step, seed, antithetic, control_variate, sobol,
              brownian_bridge, heston_scheme)
    inp.broadcast = (
        input_bit("averaging", averaging.shape[0], n, PG_MC_IN_VARIANT)
        | input_bit("fixing_counts", fixing_counts.shape[0], n, PG_MC_IN_FIX_COUNT)
        | input_bit("running_average", running_average.shape[0], n, PG_MC_IN_RUNNING)
        | input_bit("past_fixings", past_fixings.shape[0], n, PG_MC_IN_PAST)
        | input_bit("elapsed", elapsed.shape[0], n, PG_MC_IN_ELAPSED)
    )
    _common(&inp, n, option_type, strike, time, spot, rate, dividend_yield, model, volatility,
            v0, kappa, theta, sigma, rho)
    offsets_arr = np.zeros(max(n, 1), dtype=np.int64)
    cdef int64_t[::1] offsets = offsets_arr
    for i in range(fixing_counts.shape[0]):
        if fixing_counts[i] < 0:
            raise ValueError(f"fixing_counts[{i}] = {fixing_counts[i]} is negative")
    if fixing_counts.shape[0] == 1 and n != 1:
        if fixing_times.shape[0] != fixing_counts[0]:
            raise ValueError(f"fixing_times has length {fixing_times.shape[0]}; the shared "
                             f"schedule has fixing_counts[0] = {fixing_counts[0]}")
    else:
        for i in range(fixing_counts.shape[0]):
            offsets[i] = total
            total += fixing_counts[i]
        if fixing_times.shape[0] != total:
            raise ValueError(f"fixing_times has length {fixing_times.shape[0]}; fixing_counts "
                             f"add up to {total}")
    inp.variant = _ptr_i(averaging)
    inp.fixing_times = _ptr_d(fixing_times)
    inp.fix_offset = &offsets[0]
    inp.fixing_counts = _ptr_i(fixing_counts)
    inp.running = _ptr_d(running_average)
    inp.past = _ptr_i(past_fixings)
    inp.elapsed = _ptr_d(elapsed)
    return _run(&inp, &st, measures, out, stderr, status, threads, stop)


def barrier_price_batch(const int[::1] barrier_type not None,     # IN  1 DI, 2 DO, 3 UI, 4 UO
                        const int[::1] option_type not None,
                        const double[::1] strike not None,
                        const double[::1] time not None,
                        const double[::1] barrier not None,       # IN  > 0, on the live side of spot or at it (touched)
                        const double[::1] rebate not None,        # IN  >= 0
                        const double[::1] monitoring_interval not None,  # IN  years; 0 = continuous
                        const double[::1] spot not None,
                        const double[::1] rate not None,
                        const double[::1] dividend_yield not None,
                        int model,
                        const double[::1] volatility not None,
                        const double[::1] v0 not None,
                        const double[::1] kappa not None,
                        const double[::1] theta not None,
                        const double[::1] sigma not None,
                        const double[::1] rho not None,
                        const int[::1] measures not None,
                        double[:, :] out not None,
                        double[:, :] stderr not None,
                        int[::1] status not None,
                        int threads,
                        paths, double max_step, seed, bint antithetic, bint control_variate,
                        bint sobol, bint brownian_bridge, int heston_scheme=1, stop=None,
                        bint beyond_touched=False):
    """Monte Carlo prices and Greeks of n = len(status) single-barrier options with rebate.

    Rebate paid at expiry for a knock-in never knocked in, at the hit for a knock-out.
    ``monitoring_interval`` D > 0: monitored at T, T - D, T - 2D, ... > 0; 0: continuously
    (Brownian-bridge crossing probability per step of at most ``max_step``). A spot at the
    barrier is touched; one beyond it is PG_BAD_BARRIER, or with ``beyond_touched`` (the
    spot is a scenario's move of the trade's) touched too (ext/pg_barrier.h, note 3).
    """
    cdef Py_ssize_t n = status.shape[0]
    cdef pg_mc_inputs inp
    cdef pg_mc_settings st
    memset(&inp, 0, sizeof(inp))
    inp.product = PG_MC_BARRIER
    _settings(&st, model, paths, max_step, seed, antithetic, control_variate, sobol,
              brownian_bridge, heston_scheme)
    inp.broadcast = (
        input_bit("barrier_type", barrier_type.shape[0], n, PG_MC_IN_VARIANT)
        | input_bit("barrier", barrier.shape[0], n, PG_MC_IN_BARRIER)
        | input_bit("rebate", rebate.shape[0], n, PG_MC_IN_REBATE)
        | input_bit("monitoring_interval", monitoring_interval.shape[0], n, PG_MC_IN_MONITORING)
    )
    _common(&inp, n, option_type, strike, time, spot, rate, dividend_yield, model, volatility,
            v0, kappa, theta, sigma, rho)
    inp.variant = _ptr_i(barrier_type)
    inp.barrier = _ptr_d(barrier)
    inp.rebate = _ptr_d(rebate)
    inp.monitoring = _ptr_d(monitoring_interval)
    inp.beyond_touched = beyond_touched
    return _run(&inp, &st, measures, out, stderr, status, threads, stop)


def lookback_price_batch(const int[::1] strike_type not None,     # IN  1 floating, 2 fixed
                         const int[::1] option_type not None,
                         const double[::1] strike not None,       # IN  fixed strike (floating: not read)
                         const double[::1] time not None,
                         const double[::1] running_minimum not None,  # IN  <= spot
                         const double[::1] running_maximum not None,  # IN  >= spot
                         const double[::1] spot not None,
                         const double[::1] rate not None,
                         const double[::1] dividend_yield not None,
                         int model,
                         const double[::1] volatility not None,
                         const double[::1] v0 not None,
                         const double[::1] kappa not None,
                         const double[::1] theta not None,
                         const double[::1] sigma not None,
                         const double[::1] rho not None,
                         const int[::1] measures not None,
                         double[:, :] out not None,
                         double[:, :] stderr not None,
                         int[::1] status not None,
                         int threads,
                         paths, double max_step, seed, bint antithetic, bint control_variate,
                         bint sobol, bint brownian_bridge, int heston_scheme=1, stop=None):
    """Monte Carlo prices and Greeks of n = len(status) lookback options.

    Floating strike: call S_T - min, put max - S_T; fixed strike: call max(max - K, 0), put
    max(K - min, 0); extremes over the running ones and the path from now to expiry,
    monitored continuously (the Brownian bridge's extreme sampled in each step).
    """
    cdef Py_ssize_t n = status.shape[0]
    cdef pg_mc_inputs inp
    cdef pg_mc_settings st
    memset(&inp, 0, sizeof(inp))
    inp.product = PG_MC_LOOKBACK
    _settings(&st, model, paths, max_step, seed, antithetic, control_variate, sobol,
              brownian_bridge, heston_scheme)
    inp.broadcast = (
        input_bit("strike_type", strike_type.shape[0], n, PG_MC_IN_VARIANT)
        | input_bit("running_minimum", running_minimum.shape[0], n, PG_MC_IN_RUN_MIN)
        | input_bit("running_maximum", running_maximum.shape[0], n, PG_MC_IN_RUN_MAX)
    )
    _common(&inp, n, option_type, strike, time, spot, rate, dividend_yield, model, volatility,
            v0, kappa, theta, sigma, rho)
    inp.variant = _ptr_i(strike_type)
    inp.run_min = _ptr_d(running_minimum)
    inp.run_max = _ptr_d(running_maximum)
    return _run(&inp, &st, measures, out, stderr, status, threads, stop)
