# cython: language_level=3
"""European options under Black-Scholes-Merton, Black-76 and Bachelier: price and Greeks.

Design
------
1. Pointwise: the formulas live once, as inline C functions in ``pg_black.h`` (declared in
   ``black.pxd`` for other families to cimport). ``pg_black_terms_of`` validates one row and
   computes what every measure shares (F, DF, dF/dU, sqrt(T), s = vol sqrt(T), d1, d2,
   n(d1), N(w d1), N(w d2), price); ``pg_black_<measure>`` turns those terms into one
   measure. ``price_one`` calls them directly, for one trade.
2. Loops: ``price_batch`` cuts the rows into blocks of ``PG_BLACK_BLOCK``; per block
   ``pg_black_block`` runs one ``omp simd`` loop for the shared terms and one small
   ``omp simd`` loop per requested measure (price, price + delta and price + 5 Greeks in
   the terms loop itself), so gcc calls glibc's vector math (libmvec: exp, log, erfc) and
   only what was asked for is computed. Blocks run on one thread
   below ``PARALLEL_THRESHOLD`` rows, else in a ``prange`` over blocks, GIL released.
   Blocks are fixed (rows [32 b, 32 b + 32)), so results do not depend on the threads.
3. Numerics: generalized Black-Scholes-Merton with cost of carry b (Haug, "The Complete
   Guide to Option Pricing Formulas", 2nd ed., McGraw-Hill 2007, sec. 1.1.6, p. 8):
   b = r - q for BSM, b = 0 for Black-76; the Greeks are Haug's chapter 2
   ("Black-Scholes-Merton Greeks"; the generalized delta is on p. 27), written on the
   forward: V = DF w (F N(w d1) - K N(w d2)), F = S e^{bT}, DF = e^{-rT}. Bachelier:
   V = DF (w (F - K) N(w d) + s n(d)), d = (F - K)/s (L. Bachelier, "Theorie de la
   speculation", Ann. Sci. ENS 17, 1900, pp. 21-86; this form in W. Schachermayer and
   J. Teichmann, "How close are the option pricing formulas of Bachelier and
   Black-Merton-Scholes?", Math. Finance 18(1), 2008, pp. 155-170). N(x) = erfc(-x/sqrt 2)/2.
4. Conventions are common.proto's: vega per 1.00 of vol, theta = -dV/dT per year, rho with
   q fixed (BSM) or F fixed (Black-76, Bachelier: rho = -T V), dividend_rho = dV/dq (BSM,
   else 0), charm = -d(delta)/dT per year. T = 0: intrinsic price, delta the discounted
   step (half at the money), other Greeks 0.
5. Status: pg_status.h bits per row; a failed row has NaN in every output, and valid inputs
   whose forward, discount factor, price or any requested measure is not finite get
   PG_NOT_FINITE.
6. Scenario cubes: ``price_cube`` prices n trades under s scenarios straight into P&L
   (pg_black_cube.h): each block of 32 rows is gathered from the trades' columns and the
   scenarios' moves (column + vector, vector x column, or per-cell values) into block
   arrays and priced by the same full-block loop, so no n x s input column is ever written
   and a cell has the bits price_batch and price_one give for its inputs.
"""

from pg_common cimport input_bit
from cython.parallel cimport prange
from libc.math cimport NAN

# black.pxd (the C declarations of pg_black.h) is included automatically.

__all__ = ["PARALLEL_THRESHOLD", "max_threads", "price_batch", "price_cube", "price_one"]

cdef extern from "pg_black_cube.h" nogil:
    enum:
        PG_CUBE_TRADE
        PG_CUBE_ADD
        PG_CUBE_MUL
        PG_CUBE_CELL
    ctypedef struct pg_cube_input:
        int how
        int one
        const double *c
        const double *v
    ctypedef struct pg_cube:
        const int *option_type
        const double *strike
        int one_type
        int one_strike
        pg_cube_input[5] inp "in"
        const double *base
        const double *quantity
        int one_quantity
        Py_ssize_t n
        Py_ssize_t s
    Py_ssize_t pg_black_cube_block(int model, const pg_cube *cube, Py_ssize_t b, double *pnl)

# Rows below which a batch runs on one thread: waking a second thread costs a few
# microseconds, more than it saves on small batches. Measured on the 2-core development VM
# (BSM price + 5 Greeks, 1 thread / 2 threads, best of 5, busy neighbours): 512 rows
# 10.3 / 9.9 us, 1024 rows 17.7 / 15.5 us (but 0.9x and 0.5x in other runs), 2048 rows
# 33 / 27 us (1.24x-1.34x in every run), 65536 rows 1.45x-1.95x.
cdef Py_ssize_t _PARALLEL_THRESHOLD = 2048
PARALLEL_THRESHOLD = _PARALLEL_THRESHOLD

# Bits of the measures a price_one mask may ask for: codes 1 (price) .. 10 (charm).
cdef int _MASK_ALL = ((1 << (PG_MEASURE_MAX + 1)) - 1) & ~1


def max_threads():
    """Threads an OpenMP parallel region would use by default (1 without OpenMP)."""
    return pg_max_threads()


def price_batch(int model,
                const int[::1] option_type not None,     # IN  OptionType codes
                const double[::1] strike not None,       # IN
                const double[::1] time not None,         # IN  years, >= 0
                const double[::1] underlying not None,   # IN  spot (BSM) or forward
                const double[::1] rate not None,         # IN  continuously compounded
                const double[::1] dividend not None,     # IN  yield (BSM; ignored otherwise)
                const double[::1] vol not None,          # IN  lognormal, or normal (Bachelier)
                const int[::1] measures not None,        # IN  k Measure codes
                double[:, :] out not None,               # OUT (k, n): row j = measures[j]; rows contiguous
                double[::1] forward_out not None,        # OUT n, or 0 to skip
                double[::1] df_out not None,             # OUT n, or 0 to skip
                int[::1] status not None,                # OUT n: pg_status.h bits
                int threads):
    """Price n = len(status) European options and the requested Greeks.

    model: 1 Black-Scholes-Merton, 2 Black-76, 3 Bachelier. Every input has length n or 1
    (broadcast). ``out[j]`` receives measure ``measures[j]`` (Measure codes 1..10).
    ``forward_out``/``df_out`` receive the forward and discount factor (length 0: skipped).
    Each row of ``out`` must be contiguous; rows may be apart (``out[:, a:b]`` of a wider
    array), so a caller working in chunks writes straight into its final arrays.
    Runs on ``threads`` threads when ``threads > 1`` and ``n >= PARALLEL_THRESHOLD``.
    Returns the number of rows whose status is not 0 (their outputs are NaN).
    """
    cdef Py_ssize_t n = status.shape[0]
    cdef Py_ssize_t k = measures.shape[0]
    cdef Py_ssize_t j, blk, nblocks, start, nbad = 0
    cdef int m
    cdef pg_black_inputs inp
    cdef double *out_p = NULL
    cdef double *fwd_p = NULL
    cdef double *df_p = NULL

    if model < 1 or model > 3:
        raise ValueError(f"unknown model {model}; expected 1 (BSM), 2 (Black-76) or 3 (Bachelier)")
    inp.n = n
    inp.broadcast = (
        input_bit("option_type", option_type.shape[0], n, PG_IN_OPTION_TYPE)
        | input_bit("strike", strike.shape[0], n, PG_IN_STRIKE)
        | input_bit("time", time.shape[0], n, PG_IN_TIME)
        | input_bit("underlying", underlying.shape[0], n, PG_IN_UNDERLYING)
        | input_bit("rate", rate.shape[0], n, PG_IN_RATE)
        | input_bit("dividend", dividend.shape[0], n, PG_IN_DIVIDEND)
        | input_bit("vol", vol.shape[0], n, PG_IN_VOL)
    )
    for j in range(k):
        if measures[j] < 1 or measures[j] > PG_MEASURE_MAX:
            raise ValueError(f"measures[{j}] = {measures[j]} is not a Measure code (1..10)")
    if out.shape[0] != k or out.shape[1] != n:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}); expected ({k}, {n})")
    if n > 1 and out.strides[1] != sizeof(double):
        raise ValueError("each row of out must be contiguous")
    if k > 1 and (out.strides[0] % sizeof(double) or out.strides[0] < n * sizeof(double)):
        raise ValueError("rows of out must not overlap")
    cdef Py_ssize_t ldo = out.strides[0] // sizeof(double) if k > 1 else n
    if forward_out.shape[0] not in (0, n):
        raise ValueError(f"forward_out has length {forward_out.shape[0]}; expected {n} or 0")
    if df_out.shape[0] not in (0, n):
        raise ValueError(f"df_out has length {df_out.shape[0]}; expected {n} or 0")
    if n == 0:
        return 0

    inp.option_type = &option_type[0]
    inp.strike = &strike[0]
    inp.time = &time[0]
    inp.underlying = &underlying[0]
    inp.rate = &rate[0]
    inp.dividend = &dividend[0]
    inp.vol = &vol[0]
    if k > 0:
        out_p = &out[0, 0]
    if forward_out.shape[0] > 0:
        fwd_p = &forward_out[0]
    if df_out.shape[0] > 0:
        df_p = &df_out[0]
    cdef const int *meas_p = &measures[0] if k > 0 else NULL
    cdef int *status_p = &status[0]

    nblocks = (n + PG_BLACK_BLOCK - 1) // PG_BLACK_BLOCK
    with nogil:
        if threads <= 1 or n < _PARALLEL_THRESHOLD:
            for blk in range(nblocks):
                start = blk * PG_BLACK_BLOCK
                m = <int>(n - start if n - start < PG_BLACK_BLOCK else PG_BLACK_BLOCK)
                nbad += pg_black_block(model, &inp, start, m, meas_p, <int>k, out_p, ldo,
                                       fwd_p, df_p, status_p)
        else:
            for blk in prange(nblocks, num_threads=threads, schedule="guided", chunksize=8):
                start = blk * PG_BLACK_BLOCK
                m = <int>(n - start if n - start < PG_BLACK_BLOCK else PG_BLACK_BLOCK)
                nbad += pg_black_block(model, &inp, start, m, meas_p, <int>k, out_p, ldo,
                                       fwd_p, df_p, status_p)
    return nbad


cdef int _cube_input(pg_cube_input *x, str name, object source, Py_ssize_t n, Py_ssize_t s,
                     list keep) except -1:
    """One moved input of price_cube (see its docstring) into ``x``; its arrays into ``keep``."""
    cdef const double[::1] c
    cdef const double[::1] v
    cdef const double[:, ::1] cells
    if isinstance(source, tuple):
        if len(source) != 3 or source[0] not in ("add", "mul"):
            raise ValueError(f"{name}: expected an array or (\"add\" or \"mul\", column, vector)")
        c, v = source[1], source[2]
        if c.shape[0] not in (n, 1):
            raise ValueError(f"{name} has {c.shape[0]} trade values; expected {n} or 1")
        if v.shape[0] != s:
            raise ValueError(f"{name} has {v.shape[0]} scenario values; expected {s}")
        x.how = PG_CUBE_ADD if source[0] == "add" else PG_CUBE_MUL
        x.one = c.shape[0] == 1
        x.c = &c[0] if c.shape[0] else NULL
        x.v = &v[0] if v.shape[0] else NULL
        keep.append((c, v))
        return 0
    if getattr(source, "ndim", 1) == 2:
        cells = source
        if cells.shape[0] != n or cells.shape[1] != s:
            raise ValueError(f"{name} has shape ({cells.shape[0]}, {cells.shape[1]}); expected ({n}, {s})")
        x.how = PG_CUBE_CELL
        x.one = 0
        x.c = &cells[0, 0] if n * s else NULL
        x.v = NULL
        keep.append(cells)
        return 0
    c = source
    if c.shape[0] not in (n, 1):
        raise ValueError(f"{name} has {c.shape[0]} trade values; expected {n} or 1")
    x.how = PG_CUBE_TRADE
    x.one = c.shape[0] == 1
    x.c = &c[0] if c.shape[0] else NULL
    x.v = NULL
    keep.append(c)
    return 0


def price_cube(int model,
               const int[::1] option_type not None,  # IN  n trades, or 1
               const double[::1] strike not None,    # IN  n or 1
               object time,                          # IN  a moved input (below)
               object underlying,                    # IN  spot (BSM) or forward
               object rate,                          # IN
               object dividend,                      # IN  yield (BSM; ignored otherwise)
               object vol,                           # IN
               const double[::1] base not None,      # IN  n: each trade's base value
               const double[::1] quantity not None,  # IN  n or 1
               double[:, ::1] pnl not None,          # OUT (n, s): (value - base) x quantity
               int threads):
    """The price of n trades under s scenarios, as P&L: ``pnl[t, j] = (V_tj - base[t]) x
    quantity[t]``, V_tj priced by the formulas of ``price_batch`` on row t s + j (the same
    bits as price_batch on those inputs laid out as n x s columns, and as price_one).

    Each moved input (time, underlying, rate, dividend, vol) is one of: a column of n trade
    values (or 1 for all), the same under every scenario; an (n, s) array, each cell's own
    value; or a tuple ("add", column, vector) meaning column[t] + vector[j], or ("mul",
    column, vector) meaning vector[j] x column[t] (column n or 1 values, vector s). Nothing
    of n x s is allocated. A failed cell (bad inputs, as price_batch's status) gets NaN.
    Runs on ``threads`` threads when ``threads > 1`` and ``n s >= PARALLEL_THRESHOLD``.
    Returns the number of failed cells (not which: price_batch on the block says which).
    """
    cdef pg_cube cube
    cdef Py_ssize_t n = base.shape[0], s = pnl.shape[1]
    cdef Py_ssize_t rows, nblocks, blk, nbad = 0
    cdef list keep = []
    if model < 1 or model > 3:
        raise ValueError(f"unknown model {model}; expected 1 (BSM), 2 (Black-76) or 3 (Bachelier)")
    if pnl.shape[0] != n:
        raise ValueError(f"pnl has {pnl.shape[0]} rows; expected {n} (one per trade)")
    cube.one_type = input_bit("option_type", option_type.shape[0], n, 1)
    cube.one_strike = input_bit("strike", strike.shape[0], n, 1)
    cube.one_quantity = input_bit("quantity", quantity.shape[0], n, 1)
    for i, (name, source) in enumerate((("time", time), ("underlying", underlying), ("rate", rate),
                                        ("dividend", dividend), ("vol", vol))):
        _cube_input(&cube.inp[i], name, source, n, s, keep)
    rows = n * s
    if rows == 0:
        return 0
    cube.option_type = &option_type[0]
    cube.strike = &strike[0]
    cube.base = &base[0]
    cube.quantity = &quantity[0]
    cube.n = n
    cube.s = s
    cdef double *out_p = &pnl[0, 0]
    nblocks = (rows + PG_BLACK_BLOCK - 1) // PG_BLACK_BLOCK
    with nogil:
        if threads <= 1 or rows < _PARALLEL_THRESHOLD:
            for blk in range(nblocks):
                nbad += pg_black_cube_block(model, &cube, blk, out_p)
        else:
            for blk in prange(nblocks, num_threads=threads, schedule="guided", chunksize=8):
                nbad += pg_black_cube_block(model, &cube, blk, out_p)
    return nbad


def price_one(int model, int option_type, double strike, double time, double underlying,
              double rate, double dividend, double vol, int measures_mask):
    """One trade through the same formulas as ``price_batch``, and the same bits: the trade
    is a block of one row, which pg_black_block computes padded to a full block on the
    vector path, as every row of every batch (about half a microsecond).

    Bit ``1 << code`` of ``measures_mask`` asks for Measure ``code``; the price is always
    computed. Returns (status, forward, df, price, delta, gamma, vega, theta, rho,
    dividend_rho, vanna, volga, charm); measures not asked for are 0.0, and every output is
    NaN when status is not 0.
    """
    cdef double o[PG_MEASURE_MAX + 1]
    cdef double got[PG_MEASURE_MAX]
    cdef int codes[PG_MEASURE_MAX]
    cdef double fwd, df
    cdef int st = 0, code, k = 0, j
    cdef pg_black_inputs inp
    if model < 1 or model > 3:
        raise ValueError(f"unknown model {model}; expected 1 (BSM), 2 (Black-76) or 3 (Bachelier)")
    if measures_mask & ~_MASK_ALL:
        raise ValueError(f"measures_mask {measures_mask:#x} has bits outside 1 << 1 .. 1 << 10")
    measures_mask |= 1 << PG_MEASURE_PRICE
    for code in range(PG_MEASURE_MAX + 1):
        o[code] = 0.0
        if code >= 1 and (measures_mask >> code) & 1:
            codes[k] = code
            k += 1
    inp.option_type = &option_type
    inp.strike = &strike
    inp.time = &time
    inp.underlying = &underlying
    inp.rate = &rate
    inp.dividend = &dividend
    inp.vol = &vol
    inp.broadcast = 0
    inp.n = 1
    # with the GIL: half a microsecond on the event loop, where letting another thread take
    # the GIL would cost the loop far more to get it back
    pg_black_block(model, &inp, 0, 1, codes, k, got, 1, &fwd, &df, &st)
    for j in range(k):
        o[codes[j]] = got[j]
    if st != 0:
        for code in range(PG_MEASURE_MAX + 1):
            o[code] = NAN
    return (st, fwd, df, o[1], o[2], o[3], o[4], o[5], o[6], o[7], o[8], o[9], o[10])
