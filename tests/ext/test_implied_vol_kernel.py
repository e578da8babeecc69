"""Implied-volatility kernel (pricegrid.ext.implied_vol) against QuantLib, SciPy and identities.

Reference: QuantLib prices (``blackFormula``, ``bachelierBlackFormula``) on thousands of random
rows across the domain, QuantLib's own implied-vol solvers where they are accurate, and
``scipy.special`` for the special functions.

Tolerance (stated once): the vol is recovered to 1e-12 relative wherever it is *identifiable*
from the reference price. QuantLib forms the price from terms of size ``DF F Phi(w d1)`` and
``DF K Phi(w d2)`` (Bachelier: ``DF |F - K| Phi(w d)`` and ``DF s phi(d)``), so its error is
about ``(4 eps + delta(z)) * term`` summed over the terms, where 4 eps covers rounding (of F,
K, ln(F/K), the products and the difference) and delta(z) is the relative noise of Phi at the
rounded argument z: z^2 eps, or QuantLib's own error where larger (measured against
``scipy.special.ndtr``; QuantLib's normal cdf is off by up to 1e-7 for z in [-8, -4]). A row is
identifiable when a 1e-12 relative change of the vol moves the price by more than 10 times
that noise (``vega * vol * 1e-12 > 10 * noise``, noise at least one ulp of the price): the
reference then pins the vol to 1e-13, and the kernel must reach 1e-12. Rows that fail it (deep in or out of the money at tiny time
value, QuantLib's inaccurate tail, prices at the bounds) are still solved (status 0, finite
vol) but not held to the tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import QuantLib as ql
from scipy import special
from scipy.stats import norm

from pricegrid.ext import implied_vol as iv
from pricegrid.ext import status as S

EPS = np.finfo(float).eps
RTOL = 1e-12
CALL, PUT = S.CALL, S.PUT
QL_TYPE = {CALL: ql.Option.Call, PUT: ql.Option.Put}
EMPTY = np.empty(0)


def batch(model, option_type, strike, time, underlying, rate, dividend, price, threads=1, outputs=True):
    """Run implied_vol_batch on array-likes; returns (count, status, vol, forward, df)."""
    cols = [np.atleast_1d(np.asarray(a, dtype=float)) for a in (strike, time, underlying, rate, dividend, price)]
    ot = np.atleast_1d(np.asarray(option_type, dtype=np.int32))
    n = max(len(ot), *(len(c) for c in cols))
    vol, st = np.empty(n), np.empty(n, dtype=np.int32)
    fwd, df = (np.empty(n), np.empty(n)) if outputs else (EMPTY, EMPTY)
    count = iv.implied_vol_batch(model, ot, *cols, vol, fwd, df, st, threads)
    return count, st, vol, fwd, df


# ----------------------------------------------------------------------------- random rows
def lognormal_rows(rng, n, *, bsm):
    """Random rows: T 1 day..30 y, vol 1%..300%, strikes to +-12 std devs, negative rates."""
    T = 10 ** rng.uniform(np.log10(1 / 365), np.log10(30), n)
    vol = 10 ** rng.uniform(-2, np.log10(3), n)
    r = rng.uniform(-0.03, 0.10, n)
    q = rng.uniform(-0.02, 0.08, n) if bsm else np.zeros(n)
    U = 10 ** rng.uniform(-2, 4, n)
    F = U * np.exp((r - q) * T) if bsm else U
    z = np.where(rng.random(n) < 0.6, rng.uniform(-3, 3, n), rng.uniform(-12, 12, n))   # std devs
    K = F * np.exp(z * vol * np.sqrt(T))
    ot = np.where(rng.random(n) < 0.5, CALL, PUT).astype(np.int32)
    return ot, K, T, U, r, q, vol, F


_QL_PHI = ql.CumulativeNormalDistribution()


def phi_noise(z):
    """Relative noise of a reference Phi(z): the sensitivity to rounding its argument, z^2 eps,
    or QuantLib's own error where larger (measured against scipy.special.ndtr for z >= -10,
    where ndtr is exact to 2e-15; below, QuantLib sums an asymptotic series, exact to 1e-16)."""
    z = np.asarray(z, dtype=float)
    ref = special.ndtr(z)
    ql_phi = np.array([_QL_PHI(float(x)) for x in np.ravel(z)]).reshape(z.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        ql_err = np.where((ref > 0) & (z >= -10), np.abs(ql_phi - ref) / ref, 0.0)
    return np.maximum(ql_err, z * z * EPS)


def black_reference(ot, K, T, F, r, vol):
    """QuantLib prices and the identifiability mask of the module docstring."""
    DF = np.exp(-r * T)
    sd = vol * np.sqrt(T)
    price = np.array([ql.blackFormula(QL_TYPE[o], k, f, s, d) for o, k, f, s, d in zip(ot, K, F, sd, DF)])
    w = np.where(ot == CALL, 1.0, -1.0)
    d1 = np.log(F / K) / sd + 0.5 * sd
    d2 = d1 - sd
    vega = DF * F * norm.pdf(d1) * np.sqrt(T)
    noise = DF * (F * special.ndtr(w * d1) * (4 * EPS + phi_noise(w * d1))
                  + K * special.ndtr(w * d2) * (4 * EPS + phi_noise(w * d2)))
    noise = np.maximum(noise, np.spacing(price))
    upper = np.where(ot == CALL, F, K) * DF
    intrinsic = np.maximum(w * (F - K), 0.0) * DF
    ident = (vega * vol * 1e-12 > 10 * noise) & (price < upper) & (price > intrinsic)
    return price, ident


def bachelier_rows(rng, n):
    """Random Bachelier rows: forwards and strikes of both signs, to +-12 std devs."""
    T = 10 ** rng.uniform(np.log10(1 / 365), np.log10(30), n)
    nv = 10 ** rng.uniform(-2, np.log10(3), n)
    F = rng.uniform(-5, 5, n)
    K = F + np.where(rng.random(n) < 0.6, rng.uniform(-3, 3, n), rng.uniform(-12, 12, n)) * nv * np.sqrt(T)
    r = rng.uniform(-0.03, 0.10, n)
    ot = np.where(rng.random(n) < 0.5, CALL, PUT).astype(np.int32)
    return ot, K, T, F, r, nv


def bachelier_reference(ot, K, T, F, r, nv):
    """QuantLib Bachelier prices and the identifiability mask of the module docstring."""
    DF = np.exp(-r * T)
    sd = nv * np.sqrt(T)
    price = np.array([ql.bachelierBlackFormula(QL_TYPE[o], k, f, s, d) for o, k, f, s, d in zip(ot, K, F, sd, DF)])
    w = np.where(ot == CALL, 1.0, -1.0)
    d = (F - K) / sd
    noise = DF * (np.maximum(abs(F), abs(K)) * special.ndtr(w * d) * (4 * EPS + phi_noise(w * d))
                  + 4 * EPS * sd * norm.pdf(d))
    noise = np.maximum(noise, np.spacing(price))
    ident = (DF * np.sqrt(T) * norm.pdf(d) * nv * 1e-12 > 10 * noise) & (price > DF * np.maximum(w * (F - K), 0))
    return price, ident


def rel_err(a, b):
    """|a - b| / |b| (absolute where b == 0); NaN anywhere fails every bound."""
    b = np.asarray(b, dtype=float)
    return np.abs(a - b) / np.where(b == 0, 1.0, np.abs(b))


# ----------------------------------------------------------------------------- special functions
def test_erfcx_matches_scipy():
    """Cody's erfcx against scipy.special.erfcx over the range where scipy is exact."""
    rng = np.random.default_rng(1)
    x = np.concatenate([
        rng.uniform(-5.0, 30.0, 4000), rng.uniform(-0.5, 0.5, 1000), 10 ** rng.uniform(-12, 8, 1000),
        [0.0, 0.46875, -0.46875, 4.0, -4.0, 26.0, 1e10, 1e100],
    ])
    assert rel_err(iv._erfcx(x), special.erfcx(x)).max() < 2e-15


def test_erfcx_reflection_far_left():
    """erfcx(x) = 2 exp(x^2) - erfcx(-x) for x < 0, exp(x^2) split so that x^2 is exact."""
    x = -np.linspace(5.0, 26.0, 400)
    y = iv._erfcx(x)
    # exp(x^2) computed in two exact-exponent pieces; erfcx(-x) < 1e-1 is negligible at 1e-15
    ref = 2 * np.exp(np.floor(-x * 16) ** 2 / 256) * np.exp((-x - np.floor(-x * 16) / 16) * (-x + np.floor(-x * 16) / 16)) - special.erfcx(-x)
    assert rel_err(y, ref).max() < 2e-15


def test_inverse_norm_cdf_matches_scipy():
    """AS 241 against scipy.special.ndtri, from 1e-300 to 1 - 1e-16."""
    rng = np.random.default_rng(2)
    p = np.concatenate([rng.uniform(0, 1, 4000), 10 ** rng.uniform(-300, -1, 2000),
                        1 - 10 ** rng.uniform(-15, -1, 500), [0.5, 0.075, 0.925, 1e-300]])
    assert rel_err(iv._inverse_norm_cdf(p), special.ndtri(p)).max() < 1.5e-15
    assert iv._inverse_norm_cdf(np.array([0.5]))[0] == 0.0


def test_norm_cdf_matches_scipy_and_the_tail_series():
    """Phi built on erfcx: scipy.special.ndtr where that is exact (z >= -5); in the far tail
    the asymptotic series phi(z)/|z| sum_k (-1)^k (2k-1)!!/z^2k at z = k/16 (z^2 exact)."""
    z = np.linspace(-5.0, 8.0, 5000)
    assert rel_err(iv._norm_cdf(z), special.ndtr(z)).max() < 5e-15     # both within 2.5e-15
    z = -np.arange(20 * 16, 37 * 16 + 1) / 16.0
    series, term = np.ones_like(z), np.ones_like(z)
    for k in range(1, 12):
        term = term * -(2 * k - 1) / z**2
        series += term
    ref = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) / -z * series
    assert rel_err(iv._norm_cdf(z), ref).max() < 2e-15


def test_normalised_black_matches_quantlib_in_its_accurate_region():
    """b(x, s) of Let's Be Rational = undiscounted Black price / sqrt(F K)."""
    rng = np.random.default_rng(3)
    x = rng.uniform(-3, 3, 2000)
    s = 10 ** rng.uniform(-1, 0.7, 2000)
    for theta, typ in ((1.0, ql.Option.Call), (-1.0, ql.Option.Put)):
        b = iv._normalised_black(x, s, theta)
        ref = np.array([ql.blackFormula(typ, math.exp(-xi / 2), math.exp(xi / 2), si, 1.0) for xi, si in zip(x, s)])
        ok = ref > 1e-3
        assert rel_err(b[ok], ref[ok]).max() < 1e-13


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("model", [S.MODEL_BLACK76, S.MODEL_BSM])
def test_round_trip_against_quantlib_prices(model):
    """Thousands of random rows, deep ITM/OTM (to 12 std devs), 1 day..30 y, 1%..300%, r < 0."""
    rng = np.random.default_rng(10 + model)
    n = 4000
    ot, K, T, U, r, q, vol, F = lognormal_rows(rng, n, bsm=model == S.MODEL_BSM)
    price, ident = black_reference(ot, K, T, F, r, vol)
    inside = (price > np.maximum(np.where(ot == CALL, F - K, K - F), 0) * np.exp(-r * T)) & (
        price < np.where(ot == CALL, F, K) * np.exp(-r * T) * (1 - 4 * EPS))
    count, st, got, fwd, df = batch(model, ot, K, T, U, r, q, price)
    assert ident.sum() > 0.4 * n                     # the test bites on most rows
    assert (st[inside] == 0).all() and np.isfinite(got[inside]).all()
    err = rel_err(got[ident], vol[ident])
    assert err.max() < RTOL, f"max rel err {err.max():.3g}"
    assert np.median(err) < 5e-15                    # typical: the reference price's own noise
    assert count == (st != 0).sum()


def test_round_trip_bachelier_against_quantlib_prices():
    """Normal vol, forwards and strikes of both signs, to +-12 std devs, 1 day..30 y."""
    rng = np.random.default_rng(20)
    n = 4000
    ot, K, T, F, r, nv = bachelier_rows(rng, n)
    price, ident = bachelier_reference(ot, K, T, F, r, nv)
    count, st, got, fwd, df = batch(S.MODEL_BACHELIER, ot, K, T, F, r, 0.0, price)
    assert ident.sum() > 0.4 * n
    assert (st == 0).all() and np.isfinite(got).all()
    err = rel_err(got[ident], nv[ident])
    assert err.max() < RTOL, f"max rel err {err.max():.3g}"
    assert count == 0


def test_agrees_with_quantlib_implied_vol_solvers():
    """QuantLib's Brent (accuracy 1e-14), Li-Rational-Spline and Bachelier (Jaeckel 2017)."""
    rng = np.random.default_rng(30)
    n = 400
    F, T = 100.0, 10 ** rng.uniform(-1, 1, n)
    vol = rng.uniform(0.05, 1.0, n)
    K = F * np.exp(rng.uniform(-2, 2, n) * vol * np.sqrt(T))
    ot = np.where(rng.random(n) < 0.5, CALL, PUT).astype(np.int32)
    price = np.array([ql.blackFormula(QL_TYPE[o], k, F, v * math.sqrt(t), 1.0) for o, k, v, t in zip(ot, K, vol, T)])
    _, st, got, _, _ = batch(S.MODEL_BLACK76, ot, K, T, F, 0.0, 0.0, price)
    sd = got * np.sqrt(T)
    brent = np.array([ql.blackFormulaImpliedStdDev(QL_TYPE[o], k, F, p, 1.0, 0.0, ql.nullDouble(), 1e-14, 200)
                      for o, k, p in zip(ot, K, price)])
    lirs = np.array([ql.blackFormulaImpliedStdDevLiRS(QL_TYPE[o], k, F, p, 1.0, 0.0, ql.nullDouble(), 1.0, 1e-12, 1000)
                     for o, k, p in zip(ot, K, price)])
    assert (st == 0).all()
    assert rel_err(sd, brent).max() < 1e-12
    assert rel_err(sd, lirs).max() < 1e-10          # LiRS stops at its accuracy, 1e-12 absolute
    # Bachelier: QuantLib implements Jaeckel's "Implied Normal Volatility" (2017)
    Fb = rng.uniform(-3, 3, n)
    nv = 10 ** rng.uniform(-3, 0, n)
    Kb = Fb + rng.uniform(-3, 3, n) * nv * np.sqrt(T)
    pb = np.array([ql.bachelierBlackFormula(QL_TYPE[o], k, f, v * math.sqrt(t), 1.0) for o, k, f, v, t in zip(ot, Kb, Fb, nv, T)])
    _, st, gotb, _, _ = batch(S.MODEL_BACHELIER, ot, Kb, T, Fb, 0.0, 0.0, pb)
    qlb = np.array([ql.bachelierBlackFormulaImpliedVol(QL_TYPE[o], k, f, t, p, 1.0) for o, k, f, t, p in zip(ot, Kb, Fb, T, pb)])
    assert (st == 0).all()
    assert rel_err(gotb, qlb).max() < 1e-13


def test_extremes_short_expiry_and_tiny_prices():
    """One-day expiry at 1% vol, far wings with prices down to 1e-200, 30 y at 300%."""
    F = 100.0
    cases = []  # (type, K, T, vol)
    for z in (-30.0, -12.0, -6.0, 0.0, 6.0, 12.0, 30.0):
        cases += [(CALL, F * math.exp(z * 0.01 * math.sqrt(1 / 365)), 1 / 365, 0.01),
                  (PUT, F * math.exp(z * 0.2 * math.sqrt(0.5)), 0.5, 0.2)]
    cases += [(CALL, 100.0, 30.0, 3.0), (PUT, 100.0, 30.0, 3.0), (CALL, 400.0, 30.0, 1.5)]
    ot = np.array([c[0] for c in cases], np.int32)
    K, T, vol = (np.array([c[i] for c in cases]) for i in (1, 2, 3))
    price, ident = black_reference(ot, K, T, np.full(len(K), F), np.zeros(len(K)), vol)
    _, st, got, _, _ = batch(S.MODEL_BLACK76, ot, K, T, F, 0.0, 0.0, price)
    assert price[ident].min() < 1e-150                # the far wings are really far
    assert (st == 0).all()
    assert rel_err(got[ident], vol[ident]).max() < RTOL


def test_far_wing_with_normalised_price_below_1e280():
    """36-37 std devs out (s = 3): price / sqrt(F K) is 1e-284..1e-300, where the solver works
    from ln(price / sqrt(F K)). QuantLib's price is wrong here (K Phi(d2) underflows), so the
    reference is the Black formula in logs with scipy.special.log_ndtr: its two terms cancel
    13-fold and each is exp of a log near -630, so the price is good to ~3e-12 and, the vol
    moving it by a factor d^2 ~ 1300 more, the vol to ~2e-15."""
    F, T, vol = 100.0, 4.0, 1.5
    sd = vol * math.sqrt(T)
    K = F * np.exp(np.array([36.0, 36.5, 37.0]) * sd)
    d1 = np.log(F / K) / sd + 0.5 * sd
    price = np.exp(math.log(F) + special.log_ndtr(d1)) - np.exp(np.log(K) + special.log_ndtr(d1 - sd))
    assert (price / np.sqrt(F * K) < 1e-280).all() and (price > 1e-280).all()
    _, st, got, _, _ = batch(S.MODEL_BLACK76, CALL, K, T, F, 0.0, 0.0, price)
    assert (st == 0).all()
    assert rel_err(got, vol).max() < RTOL


def test_puts_and_calls_give_the_same_vol():
    """A put priced by parity from a call has the call's vol (out-of-the-money side exact)."""
    rng = np.random.default_rng(40)
    n = 2000
    F, T = 100.0, 10 ** rng.uniform(-2, 1, n)
    vol = 10 ** rng.uniform(-1.5, 0.3, n)
    K = F * np.exp(rng.uniform(-2, 2, n) * vol * np.sqrt(T))
    otm_call = K >= F
    otm = np.array([ql.blackFormula(ql.Option.Call if c else ql.Option.Put, k, F, v * math.sqrt(t), 1.0)
                    for c, k, v, t in zip(otm_call, K, vol, T)])
    itm = otm + np.abs(F - K)                        # parity: ITM = OTM + |F - K|
    _, _, v_otm, _, _ = batch(S.MODEL_BLACK76, np.where(otm_call, CALL, PUT), K, T, F, 0.0, 0.0, otm)
    _, _, v_itm, _, _ = batch(S.MODEL_BLACK76, np.where(otm_call, PUT, CALL), K, T, F, 0.0, 0.0, itm)
    # the ITM price carries the intrinsic value: its time value is known to eps * price
    vega = F * norm.pdf(np.log(F / K) / (vol * np.sqrt(T)) + 0.5 * vol * np.sqrt(T)) * np.sqrt(T)
    ident = vega * vol * 1e-12 > 100 * EPS * itm
    assert rel_err(v_otm, vol).max() < RTOL
    assert rel_err(v_itm[ident], v_otm[ident]).max() < RTOL


def test_bsm_equals_black76_on_its_forward():
    """BSM on (S, r, q) = Black-76 on the forward the kernel reports, same rate: same bits."""
    rng = np.random.default_rng(50)
    ot, K, T, U, r, q, vol, F = lognormal_rows(rng, 1000, bsm=True)
    price, _ = black_reference(ot, K, T, F, r, vol)
    _, st1, v1, f1, d1 = batch(S.MODEL_BSM, ot, K, T, U, r, q, price)
    ok = st1 == 0
    assert ok.sum() > 900
    _, st2, v2, f2, d2 = batch(S.MODEL_BLACK76, ot[ok], K[ok], T[ok], f1[ok], r[ok], np.nan, price[ok])  # q ignored
    assert (st2 == 0).all()
    np.testing.assert_array_equal(v1[ok], v2)
    np.testing.assert_array_equal(d1[ok], d2)
    assert rel_err(f1[ok], U[ok] * np.exp((r[ok] - q[ok]) * T[ok])).max() < 1e-13
    assert rel_err(d1[ok], np.exp(-r[ok] * T[ok])).max() < 1e-15


def test_price_exactly_intrinsic_gives_zero_vol():
    """Price at intrinsic (or 0 out of the money) -> vol 0, status 0, for every model."""
    K = np.array([80.0, 120.0, 100.0, 80.0, 120.0])
    ot = np.array([CALL, PUT, CALL, PUT, CALL], np.int32)
    for model in (S.MODEL_BSM, S.MODEL_BLACK76, S.MODEL_BACHELIER):
        _, st, _, fwd, df = batch(model, ot, K, 0.7, 100.0, 0.03, 0.01, 30.0)   # in bounds
        assert (st == 0).all()
        w = np.where(ot == CALL, 1.0, -1.0)
        price = df * np.maximum(w * (fwd - K), 0.0)
        _, st, vol, _, _ = batch(model, ot, K, 0.7, 100.0, 0.03, 0.01, price)
        assert (st == 0).all(), (model, st)
        np.testing.assert_array_equal(vol, 0.0)


# ----------------------------------------------------------------------------- bad rows
GOOD = dict(ot=CALL, K=100.0, T=1.0, U=100.0, r=0.02, q=0.01, p=8.0)
BAD_CASES = [
    # (model, field, value, expected status)
    (S.MODEL_BLACK76, "ot", 0, S.BAD_OPTION_TYPE),
    (S.MODEL_BLACK76, "ot", 3, S.BAD_OPTION_TYPE),
    (S.MODEL_BLACK76, "K", 0.0, S.BAD_STRIKE),
    (S.MODEL_BLACK76, "K", -5.0, S.BAD_STRIKE),
    (S.MODEL_BSM, "K", np.nan, S.BAD_STRIKE),
    (S.MODEL_BACHELIER, "K", np.inf, S.BAD_STRIKE),
    (S.MODEL_BLACK76, "T", 0.0, S.BAD_TIME),
    (S.MODEL_BSM, "T", -1.0, S.BAD_TIME),
    (S.MODEL_BACHELIER, "T", np.nan, S.BAD_TIME),
    (S.MODEL_BLACK76, "U", 0.0, S.BAD_UNDERLYING),
    (S.MODEL_BSM, "U", -100.0, S.BAD_UNDERLYING),
    (S.MODEL_BACHELIER, "U", np.nan, S.BAD_UNDERLYING),
    (S.MODEL_BLACK76, "r", np.inf, S.BAD_RATE),
    (S.MODEL_BACHELIER, "r", np.nan, S.BAD_RATE),
    (S.MODEL_BSM, "q", np.nan, S.BAD_DIVIDEND),
    (S.MODEL_BLACK76, "p", np.nan, S.BAD_PRICE),
    (S.MODEL_BSM, "p", -1e-3, S.BAD_PRICE),
    (S.MODEL_BACHELIER, "p", np.inf, S.BAD_PRICE),
    (S.MODEL_BLACK76, "p", 200.0, S.PRICE_OUT_OF_BOUNDS),           # call above F
    (S.MODEL_BSM, "p", 150.0, S.PRICE_OUT_OF_BOUNDS),
    (S.MODEL_BLACK76, "K", 50.0, S.PRICE_OUT_OF_BOUNDS),            # call price below intrinsic
    (S.MODEL_BACHELIER, "K", 50.0, S.PRICE_OUT_OF_BOUNDS),
]


@pytest.mark.parametrize("model,field,value,expected", BAD_CASES)
def test_bad_input_sets_exactly_its_bit_and_neighbours_are_solved(model, field, value, expected):
    """One bad row in the middle of 300: its bit alone, NaN outputs; the others unharmed."""
    n, bad = 300, 137
    cols = {k: np.full(n, v, dtype=np.int32 if k == "ot" else float) for k, v in GOOD.items()}
    cols[field][bad] = value
    count, st, vol, fwd, df = batch(model, cols["ot"], cols["K"], cols["T"], cols["U"], cols["r"], cols["q"], cols["p"])
    assert st[bad] == expected
    assert np.isnan(vol[bad]) and np.isnan(fwd[bad]) and np.isnan(df[bad])
    others = np.arange(n) != bad
    assert (st[others] == 0).all() and count == 1
    good = iv.implied_vol_one(model, GOOD["ot"], GOOD["K"], GOOD["T"], GOOD["U"], GOOD["r"], GOOD["q"], GOOD["p"])
    assert good[0] == 0 and np.isfinite(good[1]) and good[1] > 0
    np.testing.assert_array_equal(vol[others], good[1])
    np.testing.assert_array_equal(fwd[others], good[2])
    one = iv.implied_vol_one(model, int(cols["ot"][bad]), cols["K"][bad], cols["T"][bad], cols["U"][bad],
                             cols["r"][bad], cols["q"][bad], cols["p"][bad])
    assert one[0] == expected and all(math.isnan(v) for v in one[1:])


def test_several_bad_inputs_in_one_row_or_their_bits():
    count, st, vol, _, _ = batch(S.MODEL_BSM, [0, CALL], [-1.0, 100.0], [0.0, 1.0], 100.0, [np.nan, 0.0], 0.0, [np.nan, 8.0])
    assert st[0] == S.BAD_OPTION_TYPE | S.BAD_STRIKE | S.BAD_TIME | S.BAD_RATE | S.BAD_PRICE
    assert st[1] == 0 and count == 1 and np.isnan(vol[0]) and np.isfinite(vol[1])


def test_bachelier_has_no_upper_bound_and_takes_negative_forwards():
    _, st, vol, _, _ = batch(S.MODEL_BACHELIER, [CALL, PUT, CALL], [-0.5, -2.0, 1.0], 2.0, [-1.0, -1.5, 0.5], 0.0, 0.0, [1e6, 0.7, 0.3])
    assert (st == 0).all() and np.isfinite(vol).all() and (vol > 0).all()


# ----------------------------------------------------------------------------- batch mechanics
def random_batch(n, seed=60):
    rng = np.random.default_rng(seed)
    ot, K, T, U, r, q, vol, F = lognormal_rows(rng, n, bsm=True)
    price, _ = black_reference(ot, K, T, F, r, vol)
    price[::97] = np.nan                                          # some bad rows
    return ot, K, T, U, r, q, price


def test_one_vs_two_threads_identical():
    n = max(5000, 4 * iv.PARALLEL_THRESHOLD)
    args = random_batch(n)
    r1 = batch(S.MODEL_BSM, *args, threads=1)
    r2 = batch(S.MODEL_BSM, *args, threads=2)
    assert r1[0] == r2[0] > 0
    for a, b in zip(r1[1:], r2[1:]):
        np.testing.assert_array_equal(a, b)


def test_implied_vol_one_equals_batch():
    """Same bits for a row alone and inside a batch (blocks are padded to whole vectors)."""
    args = random_batch(700, seed=61)
    _, st, vol, fwd, df = batch(S.MODEL_BSM, *args)
    for i in range(0, 700, 7):
        one = iv.implied_vol_one(S.MODEL_BSM, int(args[0][i]), *(float(a[i]) for a in args[1:]))
        np.testing.assert_array_equal(np.array(one[1:]), np.array([vol[i], fwd[i], df[i]]))
        assert one[0] == st[i]


@pytest.mark.parametrize("model", [S.MODEL_BSM, S.MODEL_BLACK76, S.MODEL_BACHELIER])
def test_simd_blocks_agree_with_the_scalar_row(model):
    """The branch-free SIMD solvers (glibc's vector exp/log) against the plain scalar ones
    (libm), row by row: same status, the same forward and discount factor, and where the vol is
    identifiable the same vol to 1e-13."""
    rng = np.random.default_rng(64 + model)
    n = 3000
    if model == S.MODEL_BACHELIER:
        ot, K, T, U, r, vol = bachelier_rows(rng, n)
        q = np.zeros(n)
        price, ident = bachelier_reference(ot, K, T, U, r, vol)
    else:
        ot, K, T, U, r, q, vol, F = lognormal_rows(rng, n, bsm=model == S.MODEL_BSM)
        price, ident = black_reference(ot, K, T, F, r, vol)
    _, st, got, fwd, df = batch(model, ot, K, T, U, r, q, price)
    ref = np.array([iv._implied_vol_row(model, int(o), k, t, u, rr, qq, p)
                    for o, k, t, u, rr, qq, p in zip(ot, K, T, U, r, q, price)])
    np.testing.assert_array_equal(ref[:, 0], st)
    both = (ref[:, 0] == 0) & (st == 0)
    assert rel_err(got[both & ident], ref[both & ident, 1]).max() < 1e-13
    np.testing.assert_array_equal(fwd[both], ref[both, 2])      # both from libm's scalar exp
    np.testing.assert_array_equal(df[both], ref[both, 3])


def test_broadcast_equals_tiled():
    rng = np.random.default_rng(62)
    n = 333
    K = 100 * np.exp(rng.uniform(-0.5, 0.5, n))
    price = np.array([ql.blackFormula(ql.Option.Put, k, 101.0, 0.3, math.exp(-0.02)) for k in K])
    b = batch(S.MODEL_BLACK76, PUT, K, 1.0, 101.0, 0.02, 0.0, price)
    t = batch(S.MODEL_BLACK76, np.full(n, PUT), K, np.full(n, 1.0), np.full(n, 101.0), np.full(n, 0.02), np.zeros(n), price)
    for a, c in zip(b, t):
        np.testing.assert_array_equal(a, c)
    assert rel_err(b[2], 0.3).max() < RTOL


def test_forward_and_df_outputs_may_be_skipped():
    args = random_batch(200, seed=63)
    full = batch(S.MODEL_BSM, *args)
    skipped = batch(S.MODEL_BSM, *args, outputs=False)
    assert full[0] == skipped[0]
    np.testing.assert_array_equal(full[1], skipped[1])
    np.testing.assert_array_equal(full[2], skipped[2])


def test_empty_batch():
    assert batch(S.MODEL_BLACK76, EMPTY.astype(np.int32), EMPTY, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY)[0] == 0


def test_argument_errors_name_the_argument():
    n = 4
    good = [np.ones(n, np.int32)] + [np.ones(n)] * 6
    out = [np.empty(n), np.empty(n), np.empty(n), np.empty(n, np.int32)]
    with pytest.raises(ValueError, match="model"):
        iv.implied_vol_batch(4, *good, *out, 1)
    with pytest.raises(ValueError, match="model"):
        iv.implied_vol_one(0, 1, 100.0, 1.0, 100.0, 0.0, 0.0, 5.0)
    for i, name in enumerate(["option_type", "strike", "time", "underlying", "rate", "dividend", "price"]):
        bad = list(good)
        bad[i] = np.ones(3, np.int32) if i == 0 else np.ones(3)
        with pytest.raises(ValueError, match=name):
            iv.implied_vol_batch(2, *bad, *out, 1)
    with pytest.raises(ValueError, match="vol_out"):
        iv.implied_vol_batch(2, *good, np.empty(3), *out[1:], 1)
    with pytest.raises(ValueError, match="forward_out"):
        iv.implied_vol_batch(2, *good, out[0], np.empty(2), out[2], out[3], 1)
    with pytest.raises(ValueError, match="df_out"):
        iv.implied_vol_batch(2, *good, out[0], out[1], np.empty(5), out[3], 1)


def test_parallel_threshold_is_a_positive_int():
    assert isinstance(iv.PARALLEL_THRESHOLD, int) and iv.PARALLEL_THRESHOLD > 0
