"""pricegrid.ext.market (through pricegrid.server.pricers.market_columns): the market columns
of a batch's rows on one snapshot underlying, and Europeans priced on them in one pass.

References and tolerances: none of these numbers is new, so every check is against the
kernels that define them, exact (bit for bit) except where the market kernel computes per
expiry what they compute per point (pg_market.h notes 2 and 4):

* rate and dividend yield: ``curves.zero_rates`` at each row's expiry (0 where the time is
  not a valid time);
* level: the spot less the escrowed cash dividends, each dividend's amount times
  ``curves.discount_factors`` at its ex-time, summed in time order as numpy's cumsum;
* vol: ``surfaces.vols`` at (T, K, F) with F = level exp((r - q) T) from the same numbers
  (glibc's exp; numpy's exp may differ in the last bit, so F is rebuilt with math.exp);
  bit for bit for grids and SABR; SVI within 4 units in the last place (its interpolation
  weights per unit time are per expiry and k = ln(K (1/F)));
* one pass: ``black.price_batch`` on ``columns``' columns, for every measure set, thread
  count and batch length (blocks aligned the same way): bit for bit, except BSM on a spot
  and Black-76 on a futures price over an SVI surface (DF, F and sqrt(T) per expiry, libm's
  exp instead of libmvec's; ln(F/K) = -k of the vol lookup): there the market columns are
  still ``columns``' bits and F, DF within 4 units in the last place; prices and Greeks
  within 1e-13 relative or 1e-15 of the column's largest value (vanna, volga, charm:
  1e-14), a row's values independent of the measure set and of its place;
* the cache: a row's numbers do not depend on its place, on the other rows, or on how many
  distinct expiries the call holds (more than the cache can keep included).
The service-level checks (tests/server/test_rpc_snapshot_pricing.py) compare the RPCs with
QuantLib.
"""

from __future__ import annotations

import math
import mmap

import numpy as np
import pytest

from pricegrid.ext import black
from pricegrid.server.domain.curves import Interpolation, ValueKind, YieldCurve
from pricegrid.server.domain.surfaces import GridSurface, SabrSurface, StrikeAxis, SviSurface
from pricegrid.server.pricers import curves as curve_pricer
from pricegrid.server.pricers import surfaces as surface_pricer
from pricegrid.server.pricers.market_columns import PreparedMarket

RNG = np.random.default_rng(20261204)


def _curve(cid, interpolation, kind=ValueKind.ZERO_RATE, n=8, level=0.03):
    t = np.cumsum(RNG.uniform(0.05, 2.0, n))
    v = level + RNG.uniform(-0.01, 0.01, n)
    if kind == ValueKind.DISCOUNT_FACTOR:
        v = np.exp(-v * t)
    return YieldCurve(cid, "USD", "ACT_365F", t, v, kind, interpolation)


def _svi(n=6):
    t = np.cumsum(RNG.uniform(0.05, 1.0, n))
    params = np.column_stack([0.02 * t + 0.001, np.full(n, 0.1), np.full(n, -0.4), np.full(n, 0.02),
                              np.full(n, 0.2)])
    return SviSurface("S-SVI", "S", t, params)


def _grid(axis=StrikeAxis.STRIKE):
    t = np.array([0.1, 0.5, 1.0, 2.0])
    nodes = {StrikeAxis.STRIKE: np.linspace(60, 140, 9), StrikeAxis.MONEYNESS: np.linspace(0.6, 1.4, 9),
             StrikeAxis.LOG_MONEYNESS: np.linspace(-0.5, 0.4, 9), StrikeAxis.DELTA: np.linspace(0.9, 0.1, 9)}[axis]
    vols = 0.2 + 0.05 * RNG.random((4, 9))
    return GridSurface("S-GRID", "S", t, axis=axis, nodes=nodes, vols=vols)


def _sabr():
    t = np.array([0.25, 1.0, 3.0])
    params = np.array([[0.3, 0.7, -0.3, 0.4], [0.28, 0.7, -0.25, 0.35], [0.25, 0.7, -0.2, 0.3]])
    return SabrSurface("S-SABR", "S", t, params)


def _rows(n, distinct=300, tmax=4.0):
    times = RNG.choice(np.round(RNG.uniform(0.0, tmax, distinct), 6), n)
    strikes = RNG.uniform(50.0, 160.0, n)
    return times, strikes


def _expected(disc, div, level, spot, dividends, surface, times, strikes):
    """The columns from the curve and surface kernels, escrowing done here."""
    r, rs = curve_pricer.zero_rates(disc, times)
    r = np.where(rs == 0, r, 0.0)
    if div is not None:
        q, qs = curve_pricer.zero_rates(div, times)
        q = np.where(qs == 0, q, 0.0)
    else:
        q = np.zeros_like(times)
    lv = np.full_like(times, level)
    live = [(t, a) for t, a in dividends if t > 0]
    if live:
        d_t = np.array([t for t, _ in live])
        df, _ = curve_pricer.discount_factors(disc, d_t)
        pv = np.concatenate(([0.0], np.cumsum(np.array([a for _, a in live]) * df)))
        taken = np.searchsorted(d_t, np.nan_to_num(times, nan=-1.0), side="right")
        lv = level - pv[taken]
    if spot:
        fwd = np.array([lv[i] * math.exp((r[i] - q[i]) * times[i]) if np.isfinite(times[i]) else math.nan
                        for i in range(len(times))])
    else:
        fwd = lv.copy()
    vol = None
    if surface is not None:
        k = np.where(strikes > 0, strikes, fwd)
        vol, _ = surface_pricer.vols(surface, times, k, fwd)
    return lv, r, q, vol


def _same(a, b):
    np.testing.assert_array_equal(np.asarray(a).view(np.int64), np.asarray(b).view(np.int64))


def _ulps(a, b, most):
    """a and b within `most` units in the last place (NaN where the other is NaN)."""
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    ok = ~np.isnan(a)
    assert np.all(np.sign(a[ok]) == np.sign(b[ok]))
    assert np.abs(a[ok].view(np.int64) - b[ok].view(np.int64)).max(initial=0) <= most


# one pass against the batch kernel, per measure code: (relative, of the column's largest)
_ONE_PASS_TOL = {c: (1e-13, 1e-15) for c in range(1, 8)} | {8: (1e-13, 1e-14), 9: (1e-13, 1e-14),
                                                              10: (1e-13, 1e-14)}


def _one_pass_close(got, want, codes):
    for row, code in zip(range(len(codes)), codes):
        g, w = got[row], want[row]
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        ok = ~np.isnan(w)
        rel, col = _ONE_PASS_TOL[int(code)]
        bound = rel * np.abs(w[ok]) + col * np.abs(w[ok]).max(initial=0.0)
        assert np.all(np.abs(g[ok] - w[ok]) <= bound), (code, np.max(np.abs(g[ok] - w[ok]) - bound))


@pytest.mark.parametrize("surface_kind", ["svi", "grid_strike", "grid_moneyness", "grid_log", "grid_delta", "sabr",
                                          "none"])
@pytest.mark.parametrize("interp", list(Interpolation))
def test_columns_are_the_curve_and_surface_kernels_numbers(surface_kind, interp):
    disc = _curve("D", interp)
    div = _curve("Q", Interpolation.LOG_LINEAR_DISCOUNT, ValueKind.DISCOUNT_FACTOR, level=0.01)
    surface = {"svi": _svi, "grid_strike": lambda: _grid(StrikeAxis.STRIKE),
               "grid_moneyness": lambda: _grid(StrikeAxis.MONEYNESS),
               "grid_log": lambda: _grid(StrikeAxis.LOG_MONEYNESS), "grid_delta": lambda: _grid(StrikeAxis.DELTA),
               "sabr": _sabr, "none": lambda: None}[surface_kind]()
    dividends = [(-0.1, 5.0), (0.3, 1.0), (0.8, 1.2), (1.9, 0.7)]
    times, strikes = _rows(5_000)
    times[:4] = [0.0, np.nan, -1.0, np.inf]  # invalid times: rate 0, vol NaN
    strikes[4:7] = [0.0, -3.0, np.nan]       # not > 0: at the forward (NaN: NaN forward vol)
    m = PreparedMarket(disc, div, 100.0, True, dividends, surface)
    got = m.columns(times, strikes)
    lv, r, q, vol = _expected(disc, div, 100.0, True, dividends, surface, times, strikes)
    _same(got.rate, r)
    _same(got.dividend_yield, q)
    _same(got.level, lv)
    if surface is None:
        assert got.vol is None
    else:
        if surface_kind == "svi":
            _ulps(got.vol, vol, 4)
        else:
            _same(got.vol, vol)
        assert np.isnan(got.vol[[1, 2, 3]]).all()
    assert got.rate[1] == got.rate[2] == 0.0
    assert got.dividends == 3  # the three dividends with ex-time > 0 by the latest row


def test_a_futures_price_is_the_level_and_the_forward():
    disc = _curve("D", Interpolation.MONOTONE_CONVEX)
    surface = _sabr()
    times, strikes = _rows(2_000)
    m = PreparedMarket(disc, None, 80.0, False, (), surface)
    got = m.columns(times, strikes)
    lv, r, q, vol = _expected(disc, None, 80.0, False, (), surface, times, strikes)
    _same(got.level, np.full_like(times, 80.0))
    _same(got.rate, r)
    _same(got.dividend_yield, np.zeros_like(times))
    _same(got.vol, vol)


@pytest.mark.parametrize("distinct", [1, 7, 3_000, 200_000])
def test_a_rows_numbers_do_not_depend_on_the_others_or_on_the_cache(distinct):
    """From one expiry to more distinct expiries than the cache keeps (4096 entries, half
    filled at most): each row's numbers are those of the row alone, in any order, on any
    number of threads."""
    disc = _curve("D", Interpolation.MONOTONE_CONVEX_POSITIVE)
    div = _curve("Q", Interpolation.LINEAR_ZERO, level=0.01)
    m = PreparedMarket(disc, div, 100.0, True, [(0.5, 1.0)], _svi())
    n = 300_000
    times, strikes = _rows(n, distinct=distinct)
    whole = m.columns(times, strikes)
    two = m.columns(times, strikes, threads=2)
    perm = RNG.permutation(n)
    shuffled = m.columns(times[perm], strikes[perm])
    few = RNG.choice(n, 50, replace=False)
    for name in ("level", "rate", "dividend_yield", "vol"):
        _same(getattr(two, name), getattr(whole, name))
        _same(getattr(shuffled, name), getattr(whole, name)[perm])
        alone = np.array([getattr(m.columns(times[i:i + 1], strikes[i:i + 1]), name)[0] for i in few])
        _same(alone, getattr(whole, name)[few])


@pytest.mark.parametrize("model", [1, 2, 3])
@pytest.mark.parametrize("n", [1, 31, 32, 257, 70_001])
@pytest.mark.parametrize("measures", [(1,), (1, 2), (1, 2, 3, 4, 5, 6), (5, 1, 10, 8, 9, 7, 3)])
def test_one_pass_is_the_batch_kernel_on_the_columns(model, n, measures):
    disc = _curve("D", Interpolation.LOG_LINEAR_DISCOUNT, ValueKind.DISCOUNT_FACTOR)
    div = _curve("Q", Interpolation.LOG_LINEAR_DISCOUNT, level=0.01) if model == 1 else None
    m = PreparedMarket(disc, div, 100.0, model != 2, [(0.4, 2.0)] if model == 1 else (), _svi())
    times, strikes = _rows(n)
    if n > 40:
        times[33] = np.nan  # a failed row: NaN everywhere, its status named
    types = RNG.integers(1, 3, n).astype(np.int32)
    codes = np.array(measures, dtype=np.int32)
    cols = m.columns(times, strikes)
    want = np.empty((len(codes), n))
    want_f, want_df, want_st = np.empty(n), np.empty(n), np.empty(n, dtype=np.int32)
    bad = black.price_batch(model, types, strikes, times, cols.level, cols.rate, cols.dividend_yield, cols.vol,
                            codes, want, want_f, want_df, want_st, 1)
    for threads in (1, 2):
        out = np.empty((len(codes), n))
        f, df, st = np.empty(n), np.empty(n), np.empty(n, dtype=np.int32)
        kept = tuple(np.empty(n) for _ in range(4))
        got_bad, most = m.price_black(model, types, strikes, times, codes, out, f, df, st, kept, threads)
        assert got_bad == bad == int(np.count_nonzero(want_st))
        np.testing.assert_array_equal(st, want_st)
        if model == 3:  # Bachelier: the batch kernel on the block's columns
            _same(out, want)
            _same(f, want_f)
            _same(df, want_df)
        else:  # per-expiry terms (module docstring)
            _one_pass_close(out, want, codes)
            _ulps(f, want_f, 4)
            _ulps(df, want_df, 4)
        for a, b in zip(kept, (cols.level, cols.rate, cols.dividend_yield, cols.vol)):
            _same(a, b)
        assert most == cols.dividends
    if n > 40:
        assert want_st[33] != 0 and np.isnan(out[:, 33]).all()


@pytest.mark.parametrize("model", [1, 2])
@pytest.mark.parametrize("measures", [(1,), (1, 2), (1, 2, 3, 4, 5, 6), (2, 1, 8)])
def test_one_pass_names_each_failed_row_as_the_batch_kernel(model, measures):
    """The one pass's fused loops check a row by its signs and one finiteness test of a sum
    (pg_market.h): bad types, strikes, times and vols among good rows, in every place of
    their blocks, get the batch kernel's statuses and NaN; the good rows keep their values
    (huge strikes: valid inputs whose measures may overflow)."""
    disc = _curve("D", Interpolation.LOG_LINEAR_DISCOUNT, ValueKind.DISCOUNT_FACTOR)
    div = _curve("Q", Interpolation.LOG_LINEAR_DISCOUNT, level=0.01) if model == 1 else None
    m = PreparedMarket(disc, div, 100.0, model == 1, (), _svi())
    n = 1_000
    times, strikes = _rows(n)
    types = RNG.integers(1, 3, n).astype(np.int32)
    where = RNG.choice(n, 12, replace=False)
    types[where[0]], types[where[1]] = 0, 3
    strikes[where[2]], strikes[where[3]], strikes[where[4]] = -1.0, np.inf, np.nan
    strikes[where[5]], strikes[where[6]] = 1e308, 1.7e308  # valid inputs
    times[where[7]], times[where[8]], times[where[9]] = -0.5, np.inf, 0.0
    strikes[where[10]] = 0.0  # the vol at the forward; the batch kernel refuses the strike
    times[where[11]] = 1e-300  # a vol, a tiny sd
    codes = np.array(measures, dtype=np.int32)
    cols = m.columns(times, strikes)
    want = np.empty((len(codes), n))
    want_st = np.empty(n, dtype=np.int32)
    bad = black.price_batch(model, types, strikes, times, cols.level, cols.rate, cols.dividend_yield, cols.vol,
                            codes, want, np.empty(n), np.empty(n), want_st, 1)
    assert bad >= 7
    out = np.empty((len(codes), n))
    st = np.empty(n, dtype=np.int32)
    got_bad, _ = m.price_black(model, types, strikes, times, codes, out, np.empty(n), np.empty(n), st,
                               None, 1)
    assert got_bad == bad
    np.testing.assert_array_equal(st, want_st)
    assert np.isnan(out[:, st != 0]).all()
    _one_pass_close(out, want, codes)


@pytest.mark.parametrize("model", [1, 2])
def test_one_pass_rows_do_not_depend_on_the_measure_set_or_their_place(model):
    """BSM on a spot, Black-76 on a futures price (their own block loop over an SVI
    surface): a row's values are the same bits whatever else is asked (the sets computed
    in the terms loop and the others) and wherever the row is; failed rows are named as the
    batch kernel names them."""
    disc = _curve("D", Interpolation.LINEAR_ZERO)
    div = _curve("Q", Interpolation.LINEAR_ZERO, level=0.01) if model == 1 else None
    m = PreparedMarket(disc, div, 100.0, model == 1, [(0.4, 2.0)] if model == 1 else (), _svi(9))
    n = 3_001
    times, strikes = _rows(n)
    times[5], strikes[6], strikes[7] = -1.0, -2.0, np.inf
    types = RNG.integers(1, 3, n).astype(np.int32)
    types[8] = 7
    every = np.arange(1, 11, dtype=np.int32)
    full = np.empty((10, n))
    st = np.empty(n, dtype=np.int32)
    m.price_black(model, types, strikes, times, every, full, None, None, st, None, 1)
    cols = m.columns(times, strikes)
    want_st = np.empty(n, dtype=np.int32)
    black.price_batch(model, types, strikes, times, cols.level, cols.rate, cols.dividend_yield, cols.vol, every,
                      np.empty((10, n)), np.empty(n), np.empty(n), want_st, 1)
    np.testing.assert_array_equal(st, want_st)
    assert (st[5:9] != 0).all() and np.isnan(full[:, 5:9]).all()
    for codes in ((1,), (1, 2), (6, 5, 4, 3, 2, 1), (9,), (10, 1, 8), (2, 1, 3)):
        c = np.array(codes, dtype=np.int32)
        out = np.empty((len(c), n))
        m.price_black(model, types, strikes, times, c, out, None, None, np.empty(n, dtype=np.int32), None, 1)
        _same(out, full[c - 1])
    perm = RNG.permutation(n)
    out = np.empty((10, n))
    m.price_black(model, types[perm], strikes[perm], times[perm], every, out, None, None, np.empty(n, np.int32),
                  None, 1)
    _same(out, full[:, perm])
    for i in RNG.choice(n, 20, replace=False):
        one = np.empty((10, 1))
        m.price_black(model, types[i:i + 1], strikes[i:i + 1], times[i:i + 1], every, one, None, None,
                      np.empty(1, np.int32), None, 1)
        _same(one[:, 0], full[:, i])


@pytest.mark.parametrize("threads", [1, 2])
def test_one_pass_into_fresh_pages_writes_its_rows_only(threads):
    """Outputs in pages never touched (anonymous mmap): the one pass faults them in before
    its blocks (pg_mkt_prefault), and gives the numbers and statuses it gives in a buffer
    already in memory, writing nothing outside its rows (the rows between the output rows
    of a strided array, the status array's tail)."""
    disc = _curve("D", Interpolation.LINEAR_ZERO)
    m = PreparedMarket(disc, _curve("Q", Interpolation.LINEAR_ZERO, level=0.01), 100.0, True, (), _svi())
    n, k = 600_000, 2  # rows of 4.8 MB: their middle pages lie apart from the sentinel rows' pages
    times, strikes = _rows(n)
    times[7] = np.nan
    types = RNG.integers(1, 3, n).astype(np.int32)
    codes = np.array([1, 2], dtype=np.int32)
    want, want_st = np.full((k, n), np.nan), np.full(n, -1, dtype=np.int32)
    m.price_black(1, types, strikes, times, codes, want, None, None, want_st, None, threads)
    grid = np.frombuffer(mmap.mmap(-1, 2 * k * n * 8), dtype=np.float64).reshape(2 * k, n)
    grid[1::2] = 7.0
    st = np.frombuffer(mmap.mmap(-1, (n + 4096) * 4), dtype=np.int32)
    st[n:] = -7
    bad, _ = m.price_black(1, types, strikes, times, codes, grid[::2], None, None, st[:n], None, threads)
    _same(grid[::2], want)
    np.testing.assert_array_equal(st[:n], want_st)
    assert bad == 1 and st[7] != 0
    assert (grid[1::2] == 7.0).all() and (st[n:] == -7).all()


def test_one_pass_needs_a_surface_and_checks_shapes():
    m = PreparedMarket(_curve("D", Interpolation.LINEAR_ZERO), None, 100.0, True)
    t = np.array([0.5])
    with pytest.raises(ValueError, match="surface"):
        m.price_black(1, np.array([1], np.int32), np.array([100.0]), t, np.array([1], np.int32), np.empty((1, 1)),
                      None, None, np.empty(1, np.int32), None, 1)
    with pytest.raises(ValueError, match="vol_out"):
        m._market.columns(t, t, np.empty(1), np.empty(1), np.empty(1), np.empty(1), 1)


def test_snapshots_being_validated_never_share_a_prepared_market():
    """Stored snapshots are prepared once per (id, underlying); one not stored yet (id "")
    is prepared afresh, so two different ones never see each other's curves."""
    import datetime as dt

    from pricegrid.server.domain.market import Snapshot, Underlying
    from pricegrid.server.service.market import prepare

    def snap(rate):
        curve = YieldCurve("D", "USD", "ACT_365F", np.array([1.0, 2.0]), np.array([rate, rate]), ValueKind.ZERO_RATE)
        return Snapshot("s", dt.datetime(2026, 12, 4, tzinfo=dt.timezone.utc), dt.date(2026, 12, 4), (curve,),
                        (Underlying("X", "USD", spot=100.0, discount_curve="D"),))

    a, _ = prepare("", snap(0.01), "X", "spot")
    b, _ = prepare("", snap(0.05), "X", "spot")
    t = np.array([1.5])
    assert a.columns(t).rate[0] == pytest.approx(0.01) and b.columns(t).rate[0] == pytest.approx(0.05)
    c, _ = prepare("some-id", snap(0.02), "X", "spot")
    d, _ = prepare("some-id", snap(0.02), "X", "spot")
    assert c is d
