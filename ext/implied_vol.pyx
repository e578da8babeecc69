"""Implied volatility: arrays of premiums in, arrays of vols out.

Design note
-----------
1. Pointwise (C, ``static inline``, declared in ``pg_implied_vol.pxd``): for one row, the
   domain checks (``pg_inputs.h``; T > 0; price finite and >= 0), forward F and discount
   factor DF, the no-arbitrage bounds on the undiscounted price, and the model's solver on
   the out-of-the-money value (``pg_implied_vol.h``):
   - BSM (F = S e^{(r-q)T}) and Black-76: Peter Jaeckel, "Let's Be Rational", Wilmott
     (January 2015) 59-69 (``pg_lets_be_rational.h``): the normalised Black function in four
     regions (section 3: asymptotic expansion for large |h|, small-t Taylor expansion, erfcx
     form, direct form), the four-branch initial guess by rational cubic interpolation with
     the lower and upper transformation functions (section 4), Householder(3) iterations on
     the branch's objective (section 5); two steps reach machine precision.
   - Bachelier: the out-of-the-money reduction of Jaeckel, "Implied Normal Volatility",
     Wilmott (2017), section 2, solved not by his rational approximation but by Householder(3)
     iterations on log / reciprocal objectives from asymptotic initial guesses
     (``pg_implied_normal.h`` says how and why that keeps full precision).
   - erfcx: W. J. Cody, Math. Comp. 23 (1969) 631-638 (SPECFUN CALERF ranges); inverse
     normal cdf: M. J. Wichura, Applied Statistics 37 (1988) 477-484, AS 241
     (``pg_normal.h``).
2. Loops: a batch is cut into blocks of PG_IV_BLOCK (64) rows at fixed offsets;
   ``pg_implied_vol_block`` runs, per block, an ``omp simd`` pass of checks and
   normalisation, an ``omp simd`` pass of the branch-free Let's Be Rational (glibc's vector
   exp/log; every lane computes every branch and keeps its own, then exactly two Householder
   steps), and a scalar pass that re-solves the rare lanes that ask for it (asymptotic
   region, a third step needed, a step out of its bracket) with the scalar solver and writes
   the outputs. Blocks are padded to whole vectors, so a row gets the same bits whatever the
   batch, its position in it and the thread count. ``implied_vol_batch`` releases the GIL
   and runs the blocks with ``prange(num_threads=threads)`` when n >= PARALLEL_THRESHOLD, in
   a plain loop below it; ``implied_vol_one`` runs a block of one row (the same bits as in
   a batch). Bachelier blocks run the same three passes with the branch-free normal solver
   (``pg_bachv_implied_u``: both guesses, three Householder steps, scalar fall-back).
3. Status: per row, the OR of the ``pg_status.h`` bits; such rows get NaN in every output and
   the batch returns how many there are. Valid rows never return NaN.
4. Stopping: ``implied_vol_batch`` takes the service's stop block (``stop``, ``pg_stop.h``).
   Before each block it reads the block's reason word (no clock: ``pg_stop_seen``), and the
   flag and the deadline (``pg_stop_poll``, a clock read of ~25 ns) before every
   ``_POLL_BLOCKS``-th block (16: 1,024 rows, about 0.15 ms of one core on the development
   VM), so a stopped call ends within that much work per thread. Blocks not started then
   get PG_CANCELLED and NaN in every output; blocks done keep their results.
"""

from cython.parallel cimport prange
from libc.stdint cimport int64_t
from pg_common cimport pg_stop_poll, pg_stop_seen, stop_block
from pg_implied_vol cimport *   # C declarations of the pointwise functions

import numpy as np

#: rows; below it a batch runs on one thread. Measured (2 cores): with threads=2 a batch of 64
#: rows costs 4 us more than on one thread, 128 rows break even, 256 rows run 1.7x faster.
#: Threads take chunks of 2 blocks (128 rows) dynamically, so a thread that the OS deschedules
#: does not hold back the rest; the block grid is fixed, so results do not depend on it.
cdef enum:
    _PARALLEL_THRESHOLD = 256
PARALLEL_THRESHOLD = _PARALLEL_THRESHOLD
#: blocks between two reads of the clock and the stop flag (design note 4)
cdef enum:
    _POLL_BLOCKS = 16

cdef Py_ssize_t _stride(Py_ssize_t length, Py_ssize_t n, str name) except -1:
    if length == n and n != 1:
        return 1
    if length == 1:
        return 0
    raise ValueError(f"{name} has length {length}; expected {n} (one per row) or 1 (broadcast)")


cdef int _check_model(int model) except -1:
    if model != 1 and model != 2 and model != 3:
        raise ValueError(f"model must be 1 (BSM), 2 (Black-76) or 3 (Bachelier), got {model}")
    return 0


def implied_vol_batch(int model, const int[::1] option_type, const double[::1] strike,
                      const double[::1] time, const double[::1] underlying,
                      const double[::1] rate, const double[::1] dividend,
                      const double[::1] price, double[::1] vol_out, double[::1] forward_out,
                      double[::1] df_out, int[::1] status, int threads,
                      stop=None):                  # IN/OUT the stop block (pg_stop.h) or None
    """Implied volatility of n = len(status) rows; returns the number of rows with a status.

    model: 1 BSM (underlying = spot, dividend = continuous yield), 2 Black-76 (underlying =
    forward), 3 Bachelier (normal vol; forward and strike of any sign); dividend is ignored
    for 2 and 3. option_type: 1 call, 2 put. Inputs (IN) have length n or 1 (broadcast);
    vol_out has length n, forward_out and df_out length n or 0 (not written) (OUT).
    ``stop``: a stop block (int64[3], pg_stop.h) polled between blocks of 64 rows (design
    note 4); once it says stop, the rows not solved get PG_CANCELLED and NaN.
    """
    cdef Py_ssize_t n = status.shape[0]
    cdef Py_ssize_t b, nblocks
    cdef int bad = 0
    cdef pg_iv_columns c
    _check_model(model)
    c.s_option_type = _stride(option_type.shape[0], n, "option_type")
    c.s_strike = _stride(strike.shape[0], n, "strike")
    c.s_time = _stride(time.shape[0], n, "time")
    c.s_underlying = _stride(underlying.shape[0], n, "underlying")
    c.s_rate = _stride(rate.shape[0], n, "rate")
    c.s_dividend = _stride(dividend.shape[0], n, "dividend")
    c.s_price = _stride(price.shape[0], n, "price")
    if vol_out.shape[0] != n:
        raise ValueError(f"vol_out has length {vol_out.shape[0]}; expected {n}")
    if forward_out.shape[0] != n and forward_out.shape[0] != 0:
        raise ValueError(f"forward_out has length {forward_out.shape[0]}; expected {n} or 0")
    if df_out.shape[0] != n and df_out.shape[0] != 0:
        raise ValueError(f"df_out has length {df_out.shape[0]}; expected {n} or 0")
    if n == 0:
        return 0
    c.option_type = &option_type[0]                  # IN
    c.strike = &strike[0]                            # IN
    c.time = &time[0]                                # IN
    c.underlying = &underlying[0]                    # IN
    c.rate = &rate[0]                                # IN
    c.dividend = &dividend[0]                        # IN
    c.price = &price[0]                              # IN
    c.vol = &vol_out[0]                              # OUT
    c.forward = &forward_out[0] if forward_out.shape[0] != 0 else NULL   # OUT
    c.df = &df_out[0] if df_out.shape[0] != 0 else NULL                  # OUT
    c.status = &status[0]                            # OUT
    cdef int64_t *stp = stop_block(stop)
    if threads < 1:
        threads = 1
    nblocks = (n + PG_IV_BLOCK - 1) // PG_IV_BLOCK
    with nogil:
        if threads > 1 and n >= _PARALLEL_THRESHOLD:
            for b in prange(nblocks, num_threads=threads, schedule="dynamic", chunksize=2):
                bad += _solve_block(&c, model, n, b, stp)
        else:
            for b in range(nblocks):
                bad += _solve_block(&c, model, n, b, stp)
    return bad


cdef inline int _block_len(Py_ssize_t n, Py_ssize_t b) noexcept nogil:
    cdef Py_ssize_t rest = n - b * PG_IV_BLOCK
    return <int>(rest if rest < PG_IV_BLOCK else PG_IV_BLOCK)


cdef inline int _solve_block(const pg_iv_columns *c, int model, Py_ssize_t n, Py_ssize_t b,
                             int64_t *stp) noexcept nogil:
    """Block b, unless the call was stopped (design note 4): then its rows are cut."""
    cdef int m = _block_len(n, b)
    if stp != NULL and (pg_stop_poll(stp) if b % _POLL_BLOCKS == 0 else pg_stop_seen(stp)):
        return pg_iv_cut_rows(c, b * PG_IV_BLOCK, m)
    return pg_implied_vol_block(c, model, b * PG_IV_BLOCK, m)


def implied_vol_one(int model, int option_type, double strike, double time, double underlying,
                    double rate, double dividend, double price):
    """Implied volatility of one row: (status, vol, forward, df), as one row of the batch."""
    cdef double vol, forward, df
    cdef int st
    cdef pg_iv_columns c
    if model != 1 and model != 2 and model != 3:
        _check_model(model)
    c.option_type = &option_type
    c.strike = &strike
    c.time = &time
    c.underlying = &underlying
    c.rate = &rate
    c.dividend = &dividend
    c.price = &price
    c.s_option_type = c.s_strike = c.s_time = c.s_underlying = c.s_rate = c.s_dividend = c.s_price = 0
    c.vol = &vol
    c.forward = &forward
    c.df = &df
    c.status = &st
    pg_implied_vol_block(&c, model, 0, 1)
    return (st, vol, forward, df)


# ------------------------------------------------------------------ test hooks (not API)
def _erfcx(const double[::1] x):
    """pg_erfcx elementwise (for tests)."""
    out = np.empty(x.shape[0])
    cdef double[::1] o = out
    cdef Py_ssize_t i
    for i in range(x.shape[0]):
        o[i] = pg_erfcx(x[i])
    return out


def _norm_cdf(const double[::1] x):
    """pg_norm_cdf elementwise (for tests)."""
    out = np.empty(x.shape[0])
    cdef double[::1] o = out
    cdef Py_ssize_t i
    for i in range(x.shape[0]):
        o[i] = pg_norm_cdf(x[i])
    return out


def _inverse_norm_cdf(const double[::1] p):
    """pg_inverse_norm_cdf elementwise (for tests)."""
    out = np.empty(p.shape[0])
    cdef double[::1] o = out
    cdef Py_ssize_t i
    for i in range(p.shape[0]):
        o[i] = pg_inverse_norm_cdf(p[i])
    return out


def _normalised_black(const double[::1] x, const double[::1] s, double theta):
    """b(x, s) of Let's Be Rational elementwise (for tests)."""
    out = np.empty(x.shape[0])
    cdef double[::1] o = out
    cdef Py_ssize_t i
    for i in range(x.shape[0]):
        o[i] = pg_lbr_normalised_black(x[i], s[i], theta)
    return out


def _implied_vol_row(int model, int option_type, double strike, double time, double underlying,
                     double rate, double dividend, double price):
    """pg_implied_vol_row: the plain scalar form of one row (for tests of the SIMD blocks)."""
    cdef double vol, forward, df
    cdef int st = pg_implied_vol_row(model, option_type, strike, time, underlying, rate, dividend,
                                     price, &vol, &forward, &df)
    return (st, vol, forward, df)
