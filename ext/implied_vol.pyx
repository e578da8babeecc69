"""Implied volatility: arrays of premiums in, arrays of vols out.

Design note
-----------
1. Pointwise (C, ``static inline``, declared in ``implied_vol.pxd``): ``pg_implied_vol_row``
   (``pg_implied_vol.h``) checks one row's domain (``pg_inputs.h``, T > 0, price finite and
   >= 0), maps it to forward F and discount factor DF, checks the no-arbitrage bounds on the
   undiscounted price and hands the out-of-the-money value to the model's solver:
   - BSM (F = S e^{(r-q)T}) and Black-76: Peter Jaeckel, "Let's Be Rational", Wilmott
     (January 2015) 59-69, in ``pg_lets_be_rational.h``: the normalised Black function in
     four regions (section 3: asymptotic expansion for large |h|, small-t Taylor expansion,
     erfcx form, direct form), the four-branch initial guess by rational cubic interpolation
     with the lower and upper transformation functions (section 4), Householder iterations of
     order 3 on the branch's objective (section 5): two reach machine precision.
   - Bachelier: the out-of-the-money reduction of Jaeckel, "Implied Normal Volatility",
     Wilmott (2017), section 2, solved by Householder(3) iterations on log / reciprocal
     objectives (``pg_implied_normal.h`` says how and why that keeps full precision).
   - erfcx: W. J. Cody, Math. Comp. 23 (1969) 631-638 (SPECFUN CALERF ranges); inverse normal
     cdf: M. J. Wichura, Applied Statistics 37 (1988) 477-484, AS 241 (``pg_normal.h``).
2. Loops: ``implied_vol_batch`` is the one batch loop: it checks lengths (each input has
   length n or 1, broadcast by a zero stride), releases the GIL and runs ``prange`` over rows
   with ``num_threads=threads`` when n >= PARALLEL_THRESHOLD, a plain loop below it.
   ``implied_vol_one`` calls the same pointwise function for one row.
3. Status: per row, the OR of the ``pg_status.h`` bits; such rows get NaN in every output and
   the batch returns how many there are. Valid rows never return NaN.
"""

from cython.parallel cimport prange
from pg_implied_vol cimport *

import numpy as np

#: rows; below it a batch runs on one thread (thread start-up costs more than it saves)
cdef enum:
    _PARALLEL_THRESHOLD = 256
PARALLEL_THRESHOLD = _PARALLEL_THRESHOLD

cdef struct _Columns:
    const int *option_type
    const double *strike
    const double *time
    const double *underlying
    const double *rate
    const double *dividend
    const double *price
    Py_ssize_t s_option_type, s_strike, s_time, s_underlying, s_rate, s_dividend, s_price
    double *vol
    double *forward
    double *df
    int *status
    bint want_forward, want_df


cdef inline int _solve_row(const _Columns *c, int model, Py_ssize_t i) noexcept nogil:
    cdef double vol, forward, df
    cdef int st = pg_implied_vol_row(
        model, c.option_type[i * c.s_option_type], c.strike[i * c.s_strike], c.time[i * c.s_time],
        c.underlying[i * c.s_underlying], c.rate[i * c.s_rate], c.dividend[i * c.s_dividend],
        c.price[i * c.s_price], &vol, &forward, &df)
    c.vol[i] = vol                                   # OUT
    if c.want_forward:
        c.forward[i] = forward                       # OUT
    if c.want_df:
        c.df[i] = df                                 # OUT
    c.status[i] = st                                 # OUT
    return st


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
                      double[::1] df_out, int[::1] status, int threads):
    """Implied volatility of n = len(status) rows; returns the number of rows with a status.

    model: 1 BSM (underlying = spot, dividend = continuous yield), 2 Black-76 (underlying =
    forward), 3 Bachelier (normal vol; forward and strike of any sign); dividend is ignored
    for 2 and 3. option_type: 1 call, 2 put. Inputs (IN) have length n or 1 (broadcast);
    vol_out has length n, forward_out and df_out length n or 0 (not written) (OUT).
    """
    cdef Py_ssize_t n = status.shape[0]
    cdef Py_ssize_t i
    cdef int bad = 0
    cdef _Columns c
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
    c.want_forward = forward_out.shape[0] != 0
    c.want_df = df_out.shape[0] != 0
    c.option_type = &option_type[0]
    c.strike = &strike[0]
    c.time = &time[0]
    c.underlying = &underlying[0]
    c.rate = &rate[0]
    c.dividend = &dividend[0]
    c.price = &price[0]
    c.vol = &vol_out[0]
    c.forward = &forward_out[0] if c.want_forward else NULL
    c.df = &df_out[0] if c.want_df else NULL
    c.status = &status[0]
    if threads < 1:
        threads = 1
    with nogil:
        if threads > 1 and n >= _PARALLEL_THRESHOLD:
            for i in prange(n, num_threads=threads, schedule="static"):
                bad += _solve_row(&c, model, i) != 0
        else:
            for i in range(n):
                bad += _solve_row(&c, model, i) != 0
    return bad


def implied_vol_one(int model, int option_type, double strike, double time, double underlying,
                    double rate, double dividend, double price):
    """Implied volatility of one row: (status, vol, forward, df), as one row of the batch."""
    cdef double vol, forward, df
    cdef int st
    if model != 1 and model != 2 and model != 3:
        _check_model(model)
    st = pg_implied_vol_row(model, option_type, strike, time, underlying, rate, dividend, price,
                            &vol, &forward, &df)
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
