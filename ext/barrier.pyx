# cython: language_level=3
"""Single-barrier and European digital options under Black-Scholes-Merton: prices.

Design
------
1. Pointwise: the formulas live once, as inline C functions in ``pg_barrier.h`` (declared
   in ``barrier.pxd`` for other families to cimport). ``pg_barrier_check`` and
   ``pg_digital_check`` validate one row; ``pg_barrier_value`` and ``pg_digital_value``
   price a valid one; ``*_point`` does both. ``barrier_price_one`` and
   ``digital_price_one`` call the ``*_point`` functions directly, for one trade.
2. Loops: the batch entry points cut the rows into blocks of ``PG_BARRIER_BLOCK``; per
   block ``pg_barrier_block`` / ``pg_digital_block`` run one ``omp simd`` loop (so gcc
   calls glibc's vector exp, log, erfc). Blocks run on one thread below
   ``PARALLEL_THRESHOLD`` rows, else in a ``prange`` over blocks, GIL released. Blocks are
   fixed, so results do not depend on the threads.
3. Numerics: the Reiner-Rubinstein closed forms for the eight standard single barriers
   with cash rebate (E. Reiner and M. Rubinstein, "Breaking down the barriers", Risk 4(8),
   1991, pp. 28-35), in the form and notation (terms A..F, cost of carry b = r - q) of
   E. G. Haug, "The Complete Guide to Option Pricing Formulas", 2nd ed., McGraw-Hill 2007,
   sec. 4.17.1 "Standard Barrier Options" (Table 4-13 with its values on p. 154). Rebates
   follow Haug and QuantLib's AnalyticBarrierEngine: a knock-in that never knocked in pays
   R at expiry (term E); a knock-out pays R *when the barrier is hit* (term F).
   Digitals: Haug 2nd ed. sec. 4.19.1 (cash-or-nothing, Q e^{-rT} N(phi d2)) and 4.19.2
   (asset-or-nothing, S e^{(b-r)T} N(phi d1)); originally M. Rubinstein and E. Reiner,
   "Unscrambling the binary code", Risk 4(9), 1991. The formulas and their edge cases
   (T = 0, zero rebate, negative rates) are written out in ``pg_barrier.h``.
4. Conventions: a barrier is monitored continuously from now to expiry; spot must be
   strictly on the live side (down: H < S, up: H > S): a spot at or through the barrier is
   PG_BAD_BARRIER (the trade is already knocked in or out; this engine prices live
   barriers only). T = 0: knock-out = intrinsic, knock-in = rebate; digitals pay their
   step (half at S == K).
5. Status: pg_status.h bits per row (PG_BAD_BARRIER, PG_BAD_REBATE besides the usual
   ones; a cash-or-nothing cash amount uses PG_BAD_REBATE, its column being the same); a
   failed row's price is NaN; valid inputs whose price is not finite get PG_NOT_FINITE.
   Greeks are not computed here yet.
"""

from pg_common cimport input_bit
from cython.parallel cimport prange

# barrier.pxd (the C declarations of pg_barrier.h) is included automatically.

__all__ = [
    "DOWN_IN", "DOWN_OUT", "UP_IN", "UP_OUT", "CASH_OR_NOTHING", "ASSET_OR_NOTHING",
    "PARALLEL_THRESHOLD", "barrier_price_batch", "barrier_price_one",
    "digital_price_batch", "digital_price_one",
]

DOWN_IN = PG_BARRIER_DOWN_IN
DOWN_OUT = PG_BARRIER_DOWN_OUT
UP_IN = PG_BARRIER_UP_IN
UP_OUT = PG_BARRIER_UP_OUT
CASH_OR_NOTHING = PG_DIGITAL_CASH
ASSET_OR_NOTHING = PG_DIGITAL_ASSET

# Rows below which a batch runs on one thread (as in black.pyx; a barrier row costs about
# as much as a Black row with Greeks, so the same threshold; not measured separately yet).
cdef Py_ssize_t _PARALLEL_THRESHOLD = 2048
PARALLEL_THRESHOLD = _PARALLEL_THRESHOLD


cdef int _check_barrier_type(int barrier_type) except -1:
    if barrier_type < PG_BARRIER_DOWN_IN or barrier_type > PG_BARRIER_UP_OUT:
        raise ValueError(f"unknown barrier_type {barrier_type}; expected 1 (down-in), "
                         "2 (down-out), 3 (up-in) or 4 (up-out)")
    return 0


cdef int _check_payoff(int payoff) except -1:
    if payoff != PG_DIGITAL_CASH and payoff != PG_DIGITAL_ASSET:
        raise ValueError(f"unknown payoff {payoff}; expected 1 (cash-or-nothing) or 2 (asset-or-nothing)")
    return 0


cdef Py_ssize_t _run(int kind, int code, pg_barrier_inputs *inp, double *out_p, int *status_p,
                     int threads) noexcept nogil:
    """The block loop shared by both batch entry points (kind 0 barrier, 1 digital)."""
    cdef Py_ssize_t n = inp.n
    cdef Py_ssize_t nblocks = (n + PG_BARRIER_BLOCK - 1) // PG_BARRIER_BLOCK
    cdef Py_ssize_t blk, start, nbad = 0
    cdef int m
    if threads <= 1 or n < _PARALLEL_THRESHOLD:
        for blk in range(nblocks):
            start = blk * PG_BARRIER_BLOCK
            m = <int>(n - start if n - start < PG_BARRIER_BLOCK else PG_BARRIER_BLOCK)
            if kind == 0:
                nbad += pg_barrier_block(code, inp, start, m, out_p, status_p)
            else:
                nbad += pg_digital_block(code, inp, start, m, out_p, status_p)
    else:
        for blk in prange(nblocks, num_threads=threads, schedule="guided", chunksize=8):
            start = blk * PG_BARRIER_BLOCK
            m = <int>(n - start if n - start < PG_BARRIER_BLOCK else PG_BARRIER_BLOCK)
            if kind == 0:
                nbad += pg_barrier_block(code, inp, start, m, out_p, status_p)
            else:
                nbad += pg_digital_block(code, inp, start, m, out_p, status_p)
    return nbad


def barrier_price_batch(int barrier_type,
                        const int[::1] option_type not None,  # IN  OptionType codes
                        const double[::1] strike not None,    # IN  > 0
                        const double[::1] time not None,      # IN  years, >= 0
                        const double[::1] spot not None,      # IN  > 0
                        const double[::1] rate not None,      # IN  continuously compounded
                        const double[::1] dividend not None,  # IN  continuous yield
                        const double[::1] vol not None,       # IN  lognormal, > 0
                        const double[::1] barrier not None,   # IN  > 0, strictly on the live side of spot
                        const double[::1] rebate not None,    # IN  cash, >= 0
                        double[::1] out not None,             # OUT n prices
                        int[::1] status not None,             # OUT n: pg_status.h bits
                        int threads):
    """Price n = len(status) single-barrier options of one ``barrier_type``.

    barrier_type: 1 down-and-in, 2 down-and-out, 3 up-and-in, 4 up-and-out. Every input has
    length n or 1 (broadcast). Runs on ``threads`` threads when ``threads > 1`` and
    ``n >= PARALLEL_THRESHOLD``. Returns the number of rows whose status is not 0 (their
    prices are NaN).
    """
    cdef Py_ssize_t n = status.shape[0]
    cdef pg_barrier_inputs inp
    _check_barrier_type(barrier_type)
    inp.n = n
    inp.broadcast = (
        input_bit("option_type", option_type.shape[0], n, PG_IN_OPTION_TYPE)
        | input_bit("strike", strike.shape[0], n, PG_IN_STRIKE)
        | input_bit("time", time.shape[0], n, PG_IN_TIME)
        | input_bit("spot", spot.shape[0], n, PG_IN_UNDERLYING)
        | input_bit("rate", rate.shape[0], n, PG_IN_RATE)
        | input_bit("dividend", dividend.shape[0], n, PG_IN_DIVIDEND)
        | input_bit("vol", vol.shape[0], n, PG_IN_VOL)
        | input_bit("barrier", barrier.shape[0], n, PG_IN_BARRIER)
        | input_bit("rebate", rebate.shape[0], n, PG_IN_REBATE)
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
    inp.vol = &vol[0]
    inp.barrier = &barrier[0]
    inp.rebate = &rebate[0]
    cdef double *out_p = &out[0]
    cdef int *status_p = &status[0]
    cdef Py_ssize_t nbad
    with nogil:
        nbad = _run(0, barrier_type, &inp, out_p, status_p, threads)
    return nbad


def barrier_price_one(int barrier_type, int option_type, double strike, double time,
                      double spot, double rate, double dividend, double vol, double barrier,
                      double rebate):
    """One barrier trade through the same formulas as ``barrier_price_batch``.

    Returns (status, price); price is NaN when status is not 0.
    """
    cdef int st
    cdef double v
    _check_barrier_type(barrier_type)
    v = pg_barrier_point(barrier_type, option_type, strike, time, spot, rate, dividend, vol,
                         barrier, rebate, &st)
    return (st, v)


def digital_price_batch(int payoff,
                        const int[::1] option_type not None,  # IN  OptionType codes
                        const double[::1] strike not None,    # IN  > 0
                        const double[::1] time not None,      # IN  years, >= 0
                        const double[::1] spot not None,      # IN  > 0
                        const double[::1] rate not None,      # IN  continuously compounded
                        const double[::1] dividend not None,  # IN  continuous yield
                        const double[::1] vol not None,       # IN  lognormal, > 0
                        const double[::1] cash not None,      # IN  cash-or-nothing amount, >= 0 (asset-or-nothing: not read)
                        double[::1] out not None,             # OUT n prices
                        int[::1] status not None,             # OUT n: pg_status.h bits
                        int threads):
    """Price n = len(status) European digitals of one ``payoff``.

    payoff: 1 cash-or-nothing (pays ``cash`` if in the money at expiry), 2 asset-or-nothing
    (pays the asset). Every input has length n or 1 (broadcast). Returns the number of
    rows whose status is not 0 (their prices are NaN).
    """
    cdef Py_ssize_t n = status.shape[0]
    cdef pg_barrier_inputs inp
    _check_payoff(payoff)
    inp.n = n
    inp.broadcast = (
        input_bit("option_type", option_type.shape[0], n, PG_IN_OPTION_TYPE)
        | input_bit("strike", strike.shape[0], n, PG_IN_STRIKE)
        | input_bit("time", time.shape[0], n, PG_IN_TIME)
        | input_bit("spot", spot.shape[0], n, PG_IN_UNDERLYING)
        | input_bit("rate", rate.shape[0], n, PG_IN_RATE)
        | input_bit("dividend", dividend.shape[0], n, PG_IN_DIVIDEND)
        | input_bit("vol", vol.shape[0], n, PG_IN_VOL)
        | input_bit("cash", cash.shape[0], n, PG_IN_REBATE)
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
    inp.vol = &vol[0]
    inp.barrier = NULL
    inp.rebate = &cash[0]
    cdef double *out_p = &out[0]
    cdef int *status_p = &status[0]
    cdef Py_ssize_t nbad
    with nogil:
        nbad = _run(1, payoff, &inp, out_p, status_p, threads)
    return nbad


def digital_price_one(int payoff, int option_type, double strike, double time, double spot,
                      double rate, double dividend, double vol, double cash):
    """One digital trade through the same formulas as ``digital_price_batch``.

    Returns (status, price); price is NaN when status is not 0.
    """
    cdef int st
    cdef double v
    _check_payoff(payoff)
    v = pg_digital_point(payoff, option_type, strike, time, spot, rate, dividend, vol, cash, &st)
    return (st, v)
