"""pricegrid.ext.lookback: continuously monitored lookback options under BSM, price and Greeks.

References and tolerances (eps = 2.2e-16; H is the level the formula measures from: the
running extremum, or a fixed strike beyond it):

* QuantLib (the ``QuantLib`` wheel): ``AnalyticContinuousFloatingLookbackEngine`` and
  ``AnalyticContinuousFixedLookbackEngine``, 2000 random cases each (T from 1 day to 10
  years, vol 3% to 150%, rates -3%..12%, yields -5%..10%, a third new trades with the
  extremum at spot, the rest seasoned up to 1.5 standard deviations; flat curves,
  Actual365Fixed, T = days/365 exactly). Both are the same closed forms. Tolerance 1e-11
  relative plus (S + H) (1e-12 (1 + |lambda ln(S/H)|) + 2e-15/|lambda|) absolute, a model of
  QuantLib's rounding, which the 50-digit test below shows to be QuantLib's, not ours: its
  correction term (pow N3 - e^{bT} N4)/lambda cancels to about eps/|lambda| of the level
  near zero carry (a case with lambda = 3e-6 is off by 4e-12 (S + H)), and pow =
  (S/H)^{-lambda} carries a relative error of eps |lambda ln(S/H)|; ours stays within
  2e-16 (S + H) of the 50-digit values on the same rows. Rows with |lambda| < 1e-6 are
  left to the 50-digit test: below |lambda| = 1e-7 QuantLib replaces the formula by its
  b = 0 limit, an error of order lambda.
* A 50-digit mpmath evaluation of the same formulas (the b = 0 limit written out
  separately), on random cases including carries b = r - q of 0 and +-1e-14..1e-3: prices to
  5e-14 relative plus 1e-15 (S + H) (measured: below 1e-14 relative).
* Zero-carry continuity: b = +-10^-k, k = 1..15, and b = 0 against the 50-digit values,
  same tolerance: the kernel sums the 0/0 quotient as a series near b = 0.
* Greeks against 60-digit central differences of the same formula (h = 1e-12 relative,
  so the reference is good to ~1e-20): delta, gamma, vega, theta (analytic) to 1e-12
  relative plus 1e-14 of the Greek's scale; rho and dividend_rho (a four-point central
  difference in the kernel, step 0.2% of the price's scale in r) to 1e-9 relative plus
  1e-11 of theirs (measured: below 3e-11 relative). Scales: the level S + H per unit of
  the Greek: (S + H)/S for delta, (1/s + |lambda|)(S + H)/S^2 for gamma (s = vol sqrt T),
  sqrt(T)(1 + |lambda|)(S + H) for vega, (1/T + 1)(S + H) for theta,
  (T + sqrt(T)/vol)(S + H) for rho and dividend_rho.
* Haug, "Option Pricing Formulas" (1st ed., McGraw-Hill 1998): floating strike p. 61-62
  (one value), fixed strike pp. 63-64 (36 values); and M. Broadie, P. Glasserman and
  S. Kou, "Connecting discrete and continuous path-dependent options", Finance Stoch. 3
  (1999), pp. 70-74 (continuous values, six cases). Values as transcribed in QuantLib's
  test-suite/lookbackoptions.cpp; T = days/360 exactly there and here. Tolerance 1e-4:
  the values are printed to 4 decimals.
* Identities: a fixed-strike option whose strike the extremum already beat is a
  floating one plus a forward: call(K <= max) = floating put(max) + S e^{-qT} - K e^{-rT},
  put(K >= min) = floating call(min) - S e^{-qT} + K e^{-rT}, prices and Greeks, to 1e-12 of
  the level; lookbacks dominate the European on the same strike (pricegrid.ext.black);
  homogeneity V(cS, cH, cK) = c V; rho + dividend_rho = -T V; T = 0 intrinsic values.
  Tolerances 1e-12 relative plus 1e-13 of the Greek's scale (rho, dividend_rho: 1e-9 and
  1e-11, as above).
* Kernel contract: status bits and NaN rows, the unused extremum and a floating strike not
  read, broadcasting, 1 and 2 threads bitwise identical, measure subsets, argument errors.
"""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest
import QuantLib as ql

from pricegrid.ext import black
from pricegrid.ext import lookback as lb
from pricegrid.ext import status as pgs

CALL, PUT = pgs.CALL, pgs.PUT
FLOATING, FIXED = lb.FLOATING, lb.FIXED
NAMES = ("price", "delta", "gamma", "vega", "theta", "rho", "dividend_rho")
ALL = np.arange(1, 8, dtype=np.int32)
INPUTS = ("strike_type", "option_type", "strike", "time", "running_minimum", "running_maximum",
          "spot", "rate", "dividend_yield", "volatility")
NAN = float("nan")


# --------------------------------------------------------------------------- helpers
def run(cases, measures=ALL, threads=1):
    """lookback_price_batch on a dict of columns; returns ({name: values}, status, nbad)."""
    args = [np.ascontiguousarray(np.atleast_1d(cases[name]),
                                 dtype=np.int32 if name in ("strike_type", "option_type") else np.float64)
            for name in INPUTS]
    n = max(a.shape[0] for a in args)
    measures = np.asarray(measures, dtype=np.int32)
    out = np.full((measures.shape[0], n), -7.0)
    status = np.full(n, -7, dtype=np.int32)
    nbad = lb.lookback_price_batch(*args, measures, out, status, threads)
    return {NAMES[c - 1]: out[j] for j, c in enumerate(measures)}, status, nbad


def random_cases(rng, n, strike_type):
    """Random rows; a third new trades (extremum = spot), the rest seasoned."""
    days = rng.integers(1, 3651, n)
    t = days / 365.0
    s = np.exp(rng.uniform(np.log(20.0), np.log(500.0), n))
    vol = np.exp(rng.uniform(np.log(0.03), np.log(1.5), n))
    sd = np.minimum(vol * np.sqrt(t), 1.5)
    new = rng.random(n) < 1 / 3
    mn = np.where(new, s, s * np.exp(-rng.uniform(0.0, 1.0, n) * sd))
    mx = np.where(new, s, s * np.exp(rng.uniform(0.0, 1.0, n) * sd))
    k = s * np.exp(rng.uniform(-2.0, 2.0, n) * np.minimum(sd, 1.0))
    return {
        "strike_type": np.full(n, strike_type, np.int32),
        "option_type": rng.integers(1, 3, n).astype(np.int32),
        "strike": k if strike_type == FIXED else np.zeros(n),
        "time": t, "days": days, "running_minimum": mn, "running_maximum": mx, "spot": s,
        "rate": rng.uniform(-0.03, 0.12, n), "dividend_yield": rng.uniform(-0.05, 0.10, n),
        "volatility": vol,
    }


def level(c):
    """H: the extremum (floating) or the strike beyond it (fixed) each row measures from."""
    call = c["option_type"] == CALL
    fixed = c["strike_type"] == FIXED
    mn, mx, k = c["running_minimum"], c["running_maximum"], c["strike"]
    return np.where(fixed, np.where(call, np.maximum(k, mx), np.minimum(k, mn)),
                    np.where(call, mn, mx))


def row(c, i):
    return {name: c[name][i] for name in INPUTS}


def assert_close(name, ours, ref, rtol, atol):
    ours, ref = np.asarray(ours, float), np.asarray(ref, float)
    atol = np.broadcast_to(np.asarray(atol, float), ref.shape)
    err = np.abs(ours - ref)
    tol = rtol * np.abs(ref) + atol
    bad = ~(err <= tol)
    if bad.any():
        i = int(np.argmax(np.where(bad, err / np.where(tol > 0, tol, 1e-300), 0)))
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {ref.size} rows out of tolerance; worst row {i}: ours "
            f"{ours[i]!r}, reference {ref[i]!r}, |diff| {err[i]:.3e} > tol {tol[i]:.3e}")


# --------------------------------------------------------------------------- 50-digit reference
def mp_price(strike_type, option_type, k, t, mn, mx, s, r, q, vol, dps=50):
    """The Goldman-Sosin-Gatto / Conze-Viswanathan formulas (Haug 2nd ed. 4.15.1-4.15.2) in
    dps-digit arithmetic, with the b = 0 limit written out."""
    with mp.workdps(dps):
        k, t, mn, mx, s, r, q, vol = (x if isinstance(x, mp.mpf) else mp.mpf(float(x))
                                      for x in (k, t, mn, mx, s, r, q, vol))
        eta = 1 if option_type == CALL else -1
        if strike_type == FIXED:
            h = (max(k, mx) if eta == 1 else min(k, mn))
            kf, zeta, kappa = k, eta, -1
        else:
            h = mn if eta == 1 else mx
            kf, zeta, kappa = h, -eta, 1
        if t == 0:
            return eta * (h - kf) if strike_type == FIXED else eta * (s - h)
        b = r - q
        sd = vol * mp.sqrt(t)
        x = mp.log(s / h)
        d1 = (x + (b + vol**2 / 2) * t) / sd
        d2 = d1 - sd
        if b == 0:
            g = -(x + sd**2 / 2) * mp.ncdf(zeta * d1) - zeta * sd * mp.npdf(d1)
        else:
            lam = 2 * b / vol**2
            g = (mp.exp(-lam * x) * mp.ncdf(zeta * (d1 - lam * sd)) - mp.exp(b * t) * mp.ncdf(zeta * d1)) / lam
        return (eta * (s * mp.exp(-q * t) * mp.ncdf(eta * d1) - h * mp.exp(-r * t) * mp.ncdf(eta * d2)
                       + kappa * s * mp.exp(-r * t) * g) + eta * mp.exp(-r * t) * (h - kf))


def mp_greeks(r_):
    """Price and Greeks 1..7 of one row: 60-digit central differences of mp_price (the
    direct quotient loses up to 14 digits at b = 1e-14 before a second difference over
    1e-10 S loses 20 more)."""
    with mp.workdps(60):
        base = {name: mp.mpf(float(r_[name])) for name in INPUTS[2:]}

        def f(**bump):
            v = dict(base, **bump)
            return mp_price(r_["strike_type"], r_["option_type"], v["strike"], v["time"],
                            v["running_minimum"], v["running_maximum"], v["spot"], v["rate"],
                            v["dividend_yield"], v["volatility"], dps=60)

        h = mp.mpf("1e-12")

        def d(name):
            x = base[name]
            e = h * max(abs(x), 1)
            return (f(**{name: x + e}) - f(**{name: x - e})) / (2 * e)

        s, t = base["spot"], base["time"]
        p0 = f()
        hs = h * s * 100
        gamma = (f(spot=s + hs) - 2 * p0 + f(spot=s - hs)) / hs**2
        theta = -(f(time=t + h * t) - f(time=t - h * t)) / (2 * h * t)
        return [float(x) for x in (p0, d("spot"), gamma, d("volatility"), theta, d("rate"),
                                   d("dividend_yield"))]


# --------------------------------------------------------------------------- QuantLib
@pytest.fixture
def ql_today():
    settings = ql.Settings.instance()
    saved = settings.evaluationDate
    today = ql.Date(15, ql.January, 2025)
    settings.evaluationDate = today
    yield today
    settings.evaluationDate = saved


def ql_prices(today, c):
    dc = ql.Actual365Fixed()
    spot, rate, div, vol = (ql.SimpleQuote(0.0) for _ in range(4))
    process = ql.GeneralizedBlackScholesProcess(
        ql.QuoteHandle(spot),
        ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(div), dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(rate), dc)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), ql.QuoteHandle(vol), dc)),
    )
    floating = ql.AnalyticContinuousFloatingLookbackEngine(process)
    fixed = ql.AnalyticContinuousFixedLookbackEngine(process)
    out = np.empty(len(c["spot"]))
    for i in range(out.size):
        spot.setValue(float(c["spot"][i]))
        rate.setValue(float(c["rate"][i]))
        div.setValue(float(c["dividend_yield"][i]))
        vol.setValue(float(c["volatility"][i]))
        call = c["option_type"][i] == CALL
        kind = ql.Option.Call if call else ql.Option.Put
        exercise = ql.EuropeanExercise(today + int(c["days"][i]))
        if c["strike_type"][i] == FLOATING:
            minmax = c["running_minimum"][i] if call else c["running_maximum"][i]
            option = ql.ContinuousFloatingLookbackOption(float(minmax), ql.FloatingTypePayoff(kind), exercise)
            option.setPricingEngine(floating)
        else:
            minmax = c["running_maximum"][i] if call else c["running_minimum"][i]
            option = ql.ContinuousFixedLookbackOption(float(minmax), ql.PlainVanillaPayoff(kind, float(c["strike"][i])),
                                                      exercise)
            option.setPricingEngine(fixed)
        out[i] = option.NPV()
    return out


@pytest.mark.parametrize("strike_type", [FLOATING, FIXED], ids=["floating", "fixed"])
def test_matches_quantlib_analytic_engines(ql_today, strike_type):
    c = random_cases(np.random.default_rng(100 + strike_type), 2000, strike_type)
    v, status, nbad = run(c, measures=[1])
    assert nbad == 0 and not status.any()
    ref = ql_prices(ql_today, c)
    lam = 2 * (c["rate"] - c["dividend_yield"]) / c["volatility"] ** 2
    x = np.log(c["spot"] / level(c))
    keep = np.abs(lam) >= 1e-6
    assert keep.sum() > 1990
    atol = (c["spot"] + level(c)) * (1e-12 * (1 + np.abs(lam * x)) + 2e-15 / np.abs(lam))
    assert_close("price vs QuantLib", v["price"][keep], ref[keep], 1e-11, atol[keep])


# --------------------------------------------------------------------------- 50-digit checks
def zero_carry_cases(rng, n, strike_type):
    c = random_cases(rng, n, strike_type)
    b = np.concatenate([np.zeros(n // 3), 10.0 ** rng.uniform(-14, -3, n // 3),
                        -(10.0 ** rng.uniform(-14, -3, n - 2 * (n // 3)))])
    c["dividend_yield"] = c["rate"] - b
    return c


@pytest.mark.parametrize("strike_type", [FLOATING, FIXED], ids=["floating", "fixed"])
def test_prices_match_50_digit_formula(strike_type):
    rng = np.random.default_rng(200 + strike_type)
    c = random_cases(rng, 150, strike_type)
    cz = zero_carry_cases(rng, 90, strike_type)
    c = {name: np.concatenate([c[name], cz[name]]) for name in c}
    v, status, _ = run(c, measures=[1])
    assert not status.any()
    ref = np.array([float(mp_price(*(row(c, i)[name] for name in INPUTS))) for i in range(c["spot"].size)])
    assert_close("price vs 50 digits", v["price"], ref, 5e-14, 1e-15 * (c["spot"] + level(c)))


def test_zero_carry_is_continuous():
    """b = r - q from +-1e-1 down to +-1e-15 and 0: every price equals the 50-digit value."""
    bs = [s * 10.0 ** -k for k in range(1, 16) for s in (1, -1)] + [0.0]
    for strike_type, option_type, k, mn, mx in [(FLOATING, CALL, 0, 90, 110), (FLOATING, PUT, 0, 90, 110),
                                               (FIXED, CALL, 105, 90, 100), (FIXED, CALL, 95, 90, 110),
                                               (FIXED, PUT, 95, 90, 110), (FIXED, PUT, 105, 90, 110)]:
        c = {"strike_type": strike_type, "option_type": option_type, "strike": float(k), "time": 1.0,
             "running_minimum": float(mn), "running_maximum": float(mx), "spot": 100.0, "rate": 0.05,
             "dividend_yield": 0.05 - np.array(bs), "volatility": 0.3}
        v, status, _ = run(c, measures=[1])
        assert not status.any()
        ref = [float(mp_price(strike_type, option_type, k, 1.0, mn, mx, 100.0, 0.05, 0.05 - b, 0.3)) for b in bs]
        assert_close(f"zero carry {strike_type}/{option_type}/{k}", v["price"], ref, 5e-14, 1e-15 * 200)


def greek_scales(c, v):
    """Per-Greek absolute scales: the level S + H per unit of each Greek."""
    s, t, vol = c["spot"], c["time"], c["volatility"]
    lam = np.abs(2 * (c["rate"] - c["dividend_yield"]) / vol**2)
    sd = vol * np.sqrt(t)
    lev = s + level(c)
    return {"price": lev, "delta": lev / s, "gamma": lev * (1 / sd + lam) / s**2,
            "vega": lev * np.sqrt(t) * (1 + lam), "theta": lev * (1 / t + 1),
            "rho": lev * (t + np.sqrt(t) / vol), "dividend_rho": lev * (t + np.sqrt(t) / vol)}


@pytest.mark.parametrize("strike_type", [FLOATING, FIXED], ids=["floating", "fixed"])
def test_greeks_match_high_precision_differences(strike_type):
    rng = np.random.default_rng(300 + strike_type)
    c = random_cases(rng, 40, strike_type)
    cz = zero_carry_cases(rng, 15, strike_type)
    c = {name: np.concatenate([c[name], cz[name]]) for name in c}
    v, status, _ = run(c)
    assert not status.any()
    ref = np.array([mp_greeks(row(c, i)) for i in range(c["spot"].size)]).T
    scales = greek_scales(c, v)
    for j, name in enumerate(NAMES):
        fd = name in ("rho", "dividend_rho")
        rtol, atol = (1e-9, 1e-11) if fd else (1e-12, 1e-14)
        assert_close(f"{name} vs 60-digit differences", v[name], ref[j], rtol, atol * scales[name])


def test_greek_methods_and_measures_are_declared():
    assert lb.MEASURES == (1, 2, 3, 4, 5, 6, 7)
    assert lb.GREEK_METHODS == {2: "analytic", 3: "analytic", 4: "analytic", 5: "analytic",
                                6: "finite_difference", 7: "finite_difference"}


# --------------------------------------------------------------------------- published values
# Haug 1998 p. 61-62 and Broadie-Glasserman-Kou 1999 pp. 70-74: floating strike
# (option_type, minmax, spot, q, r, T, vol, value)
FLOATING_VALUES = [
    (CALL, 100.0, 120.0, 0.06, 0.10, 0.50, 0.30, 25.3533),
    (CALL, 100.0, 100.0, 0.00, 0.05, 1.00, 0.30, 23.7884),
    (CALL, 100.0, 100.0, 0.00, 0.05, 0.20, 0.30, 10.7190),
    (CALL, 100.0, 110.0, 0.00, 0.05, 0.20, 0.30, 14.4597),
    (PUT, 100.0, 100.0, 0.00, 0.10, 0.50, 0.30, 15.3526),
    (PUT, 110.0, 100.0, 0.00, 0.10, 0.50, 0.30, 16.8468),
    (PUT, 120.0, 100.0, 0.00, 0.10, 0.50, 0.30, 21.0645),
]
# Haug 1998 pp. 63-64: fixed strike, S = minmax = 100, q = 0, r = 0.10
# (K, T, vol) -> (call, put)
FIXED_VALUES = {
    (95, 0.5, 0.1): (13.2687, 0.6899), (95, 0.5, 0.2): (18.9263, 4.4448), (95, 0.5, 0.3): (24.9857, 8.9213),
    (100, 0.5, 0.1): (8.5126, 3.3917), (100, 0.5, 0.2): (14.1702, 8.3177), (100, 0.5, 0.3): (20.2296, 13.1579),
    (105, 0.5, 0.1): (4.3908, 8.1478), (105, 0.5, 0.2): (9.8905, 13.0739), (105, 0.5, 0.3): (15.8512, 17.9140),
    (95, 1.0, 0.1): (18.3241, 1.0534), (95, 1.0, 0.2): (26.0731, 6.2813), (95, 1.0, 0.3): (34.7116, 12.2376),
    (100, 1.0, 0.1): (13.8000, 3.8079), (100, 1.0, 0.2): (21.5489, 10.1294), (100, 1.0, 0.3): (30.1874, 16.3889),
    (105, 1.0, 0.1): (9.5445, 8.3321), (105, 1.0, 0.2): (17.2965, 14.6536), (105, 1.0, 0.3): (25.9002, 20.9130),
}


@pytest.mark.parametrize("option_type, minmax, s, q, r, t, vol, value", FLOATING_VALUES)
def test_floating_matches_published_values(option_type, minmax, s, q, r, t, vol, value):
    c = {"strike_type": FLOATING, "option_type": option_type, "strike": 0.0, "time": t,
         "running_minimum": minmax if option_type == CALL else s,
         "running_maximum": minmax if option_type == PUT else s,
         "spot": s, "rate": r, "dividend_yield": q, "volatility": vol}
    v, status, _ = run(c, measures=[1])
    assert status[0] == 0
    assert abs(v["price"][0] - value) <= 1e-4


@pytest.mark.parametrize("k, t, vol", sorted(FIXED_VALUES))
def test_fixed_matches_haug_table(k, t, vol):
    call, put = FIXED_VALUES[(k, t, vol)]
    c = {"strike_type": FIXED, "option_type": [CALL, PUT], "strike": float(k), "time": t,
         "running_minimum": 100.0, "running_maximum": 100.0, "spot": 100.0, "rate": 0.10,
         "dividend_yield": 0.0, "volatility": vol}
    v, status, _ = run(c, measures=[1])
    assert not status.any()
    np.testing.assert_allclose(v["price"], [call, put], rtol=0, atol=1e-4)


# --------------------------------------------------------------------------- identities
def test_beaten_fixed_strike_is_floating_plus_forward():
    """max(M_T - K, 0) = (M_T - S_T) + (S_T - K) once K <= max; likewise for puts."""
    rng = np.random.default_rng(400)
    c = random_cases(rng, 400, FIXED)
    call = c["option_type"] == CALL
    # strikes the extremum has already beaten
    c["strike"] = np.where(call, c["running_maximum"] * rng.uniform(0.5, 1.0, 400),
                           c["running_minimum"] * rng.uniform(1.0, 2.0, 400))
    fl = dict(c, strike_type=np.full(400, FLOATING, np.int32),
              option_type=np.where(call, PUT, CALL).astype(np.int32))
    v_fixed, st1, _ = run(c)
    v_float, st2, _ = run(fl)
    assert not st1.any() and not st2.any()
    s, k, t, r, q = c["spot"], c["strike"], c["time"], c["rate"], c["dividend_yield"]
    w = np.where(call, 1.0, -1.0)
    dq, dr = np.exp(-q * t), np.exp(-r * t)
    forward = {"price": w * (s * dq - k * dr), "delta": w * dq, "gamma": 0.0 * s, "vega": 0.0 * s,
               "theta": w * (q * s * dq - r * k * dr), "rho": w * t * k * dr, "dividend_rho": -w * t * s * dq}
    scales = greek_scales(c, v_fixed)
    for name in NAMES:
        # rho (a difference quotient on each side) and dividend_rho = -T V - rho: 1e-11 of scale
        fd = name in ("rho", "dividend_rho")
        assert_close(name, v_fixed[name], v_float[name] + forward[name], 1e-9 if fd else 1e-12,
                     (1e-11 if fd else 1e-13) * scales[name])


def test_lookbacks_dominate_the_european():
    rng = np.random.default_rng(401)
    for strike_type in (FLOATING, FIXED):
        c = random_cases(rng, 500, strike_type)
        v, status, _ = run(c, measures=[1])
        assert not status.any()
        # the European on the same level: fixed -> strike K; floating call -> K = min, put -> K = max
        k = c["strike"] if strike_type == FIXED else level(c)
        euro = np.empty((1, 500))
        none = np.empty(0)
        black.price_batch(pgs.MODEL_BSM, c["option_type"], k, c["time"], c["spot"], c["rate"],
                          c["dividend_yield"], c["volatility"], np.array([1], np.int32), euro, none, none,
                          np.empty(500, np.int32), 1)
        assert np.all(v["price"] >= euro[0] - 1e-12 * (c["spot"] + k))


def test_homogeneity_and_rate_identity():
    """Scaling spot, extremum and strike by c scales the price by c; rho + dividend_rho = -T V."""
    rng = np.random.default_rng(402)
    for strike_type in (FLOATING, FIXED):
        c = random_cases(rng, 300, strike_type)
        v, _, _ = run(c)
        scaled = dict(c, spot=c["spot"] * 3.5, strike=c["strike"] * 3.5,
                      running_minimum=c["running_minimum"] * 3.5, running_maximum=c["running_maximum"] * 3.5)
        w, _, _ = run(scaled)
        lev = c["spot"] + level(c)
        assert_close("price", w["price"], 3.5 * v["price"], 1e-13, 1e-14 * 3.5 * lev)
        assert_close("delta", w["delta"], v["delta"], 1e-12, 1e-14 * lev / c["spot"])
        assert_close("vega", w["vega"], 3.5 * v["vega"], 1e-12, 1e-14 * 3.5 * lev)
        assert_close("rho + dividend_rho", v["rho"] + v["dividend_rho"], -c["time"] * v["price"], 1e-12,
                     1e-14 * lev * c["time"])


def test_expiry_is_intrinsic():
    c = {"strike_type": [FLOATING, FLOATING, FIXED, FIXED, FIXED, FIXED],
         "option_type": [CALL, PUT, CALL, CALL, PUT, PUT], "strike": [0, 0, 95, 115, 105, 80.0],
         "time": 0.0, "running_minimum": 90.0, "running_maximum": 110.0, "spot": 100.0, "rate": 0.05,
         "dividend_yield": 0.02, "volatility": 0.3}
    v, status, _ = run(c)
    assert not status.any()
    np.testing.assert_array_equal(v["price"], [10.0, 10.0, 15.0, 0.0, 15.0, 0.0])
    np.testing.assert_array_equal(v["delta"], [1.0, -1.0, 0.0, 0.0, 0.0, 0.0])
    for name in ("gamma", "vega", "theta", "rho", "dividend_rho"):
        np.testing.assert_array_equal(v[name], 0.0)


# --------------------------------------------------------------------------- kernel contract
def good_rows(n=3):
    return {"strike_type": np.array([FLOATING, FIXED, FIXED][:n], np.int32),
            "option_type": np.array([CALL, PUT, CALL][:n], np.int32),
            "strike": np.array([0.0, 95.0, 105.0][:n]), "time": np.full(n, 0.75),
            "running_minimum": np.full(n, 90.0), "running_maximum": np.full(n, 110.0),
            "spot": np.full(n, 100.0), "rate": np.full(n, 0.04), "dividend_yield": np.full(n, 0.01),
            "volatility": np.full(n, 0.25)}


BAD = [
    ("strike_type", 0, pgs.BAD_VARIANT), ("strike_type", 3, pgs.BAD_VARIANT),
    ("option_type", 3, pgs.BAD_OPTION_TYPE), ("strike", 0.0, pgs.BAD_STRIKE),
    ("strike", NAN, pgs.BAD_STRIKE), ("time", -0.1, pgs.BAD_TIME), ("time", NAN, pgs.BAD_TIME),
    ("spot", 0.0, pgs.BAD_UNDERLYING), ("rate", NAN, pgs.BAD_RATE),
    ("dividend_yield", float("inf"), pgs.BAD_DIVIDEND), ("volatility", 0.0, pgs.BAD_VOL),
    ("volatility", NAN, pgs.BAD_VOL), ("running_minimum", 101.0, pgs.BAD_RUNNING),
    ("running_minimum", 0.0, pgs.BAD_RUNNING), ("running_minimum", NAN, pgs.BAD_RUNNING),
    ("running_maximum", 99.0, pgs.BAD_RUNNING_MAX), ("running_maximum", float("inf"), pgs.BAD_RUNNING_MAX),
]


@pytest.mark.parametrize("field, value, bit", BAD)
def test_bad_input_sets_its_bit_and_nans_its_row_only(field, value, bit):
    # row 1 is a fixed put: it reads the strike and the running minimum; row 0 (floating call)
    # the minimum too, row 2 (fixed call) the maximum
    c = good_rows()
    target = 2 if field == "running_maximum" else 1
    c[field] = c[field].copy()
    c[field][target] = value
    v, status, nbad = run(c)
    assert nbad == 1
    assert status[target] == bit
    assert all(np.isnan(v[name][target]) for name in NAMES)
    others = [i for i in range(3) if i != target]
    assert not status[others].any()
    assert all(np.isfinite(v[name][others]).all() for name in NAMES)


def test_unused_inputs_are_checked_but_not_read():
    """A floating row's strike and every row's other extremum are not read: a valid value
    there changes nothing; one that could not be read anywhere fails the row, naming itself."""
    ref, _, _ = run(good_rows())
    c = good_rows()
    c["strike"][0] = 123.0                # floating call: no strike
    c["running_maximum"][:2] = 250.0      # floating call and fixed put use the minimum
    c["running_minimum"][2] = 5.0         # fixed call uses the maximum
    v, status, nbad = run(c)
    assert nbad == 0
    for name in NAMES:
        np.testing.assert_array_equal(v[name], ref[name])
    for name, row, value, bit in (("strike", 0, NAN, pgs.BAD_STRIKE), ("strike", 0, -1.0, pgs.BAD_STRIKE),
                                  ("running_maximum", 0, NAN, pgs.BAD_RUNNING_MAX),
                                  ("running_maximum", 1, 99.0, pgs.BAD_RUNNING_MAX),
                                  ("running_minimum", 2, -5.0, pgs.BAD_RUNNING)):
        c = good_rows()
        c[name][row] = value
        v, status, nbad = run(c)
        assert nbad == 1 and status[row] == bit, (name, value, status)


def test_broadcast_inputs_equal_tiled_inputs():
    c = random_cases(np.random.default_rng(500), 70, FIXED)
    c["rate"] = np.array([0.03])
    c["volatility"] = np.array([0.2])
    tiled = dict(c, rate=np.full(70, 0.03), volatility=np.full(70, 0.2))
    a, _, _ = run(c)
    b, _, _ = run(tiled)
    for name in NAMES:
        np.testing.assert_array_equal(a[name], b[name])


def test_one_and_two_threads_give_identical_results():
    rng = np.random.default_rng(501)
    c = random_cases(rng, 5000, FLOATING)
    c2 = random_cases(rng, 5000, FIXED)
    c = {name: np.concatenate([c[name], c2[name]]) for name in c}
    assert c["spot"].size >= lb.PARALLEL_THRESHOLD
    a, _, _ = run(c, threads=1)
    b, _, _ = run(c, threads=2)
    for name in NAMES:
        np.testing.assert_array_equal(a[name], b[name])


@pytest.mark.parametrize("strike_type", [FIXED, FLOATING])
def test_a_rows_bits_do_not_depend_on_its_place_in_a_batch(strike_type):
    """A trade priced alone (a block of one row, as the Price RPC prices it) and the same
    trade anywhere in a batch, in a full block or a short last one, give the same bits:
    every block is computed whole (padded), on the vector path."""
    c = random_cases(np.random.default_rng(503 + strike_type), 45, strike_type)  # a full block and 13 rows
    full, status, _ = run(c)
    assert not status.any()
    for i in range(45):
        alone, _, _ = run({name: np.atleast_1d(c[name][i]) for name in INPUTS})
        for name in NAMES:
            assert alone[name][0] == full[name][i], (i, name, alone[name][0], full[name][i])
    for lo, hi in ((3, 7), (32, 45), (40, 45)):  # rows in other blocks, at other places
        part, _, _ = run({name: np.ascontiguousarray(c[name][lo:hi]) for name in INPUTS})
        for name in NAMES:
            np.testing.assert_array_equal(part[name], full[name][lo:hi])


def test_subsets_of_measures_equal_rows_of_the_full_computation():
    c = random_cases(np.random.default_rng(502), 100, FIXED)
    full, _, _ = run(c)
    for subset in ([6], [3, 1], [7, 5, 2], [4]):
        part, _, _ = run(c, measures=subset)
        for code in subset:
            np.testing.assert_array_equal(part[NAMES[code - 1]], full[NAMES[code - 1]])


def test_argument_errors_name_the_argument():
    c = good_rows()
    args = [np.ascontiguousarray(c[name]) for name in INPUTS]
    out, status = np.empty((7, 3)), np.empty(3, np.int32)
    with pytest.raises(ValueError, match="measures"):
        lb.lookback_price_batch(*args, np.array([8], np.int32), np.empty((1, 3)), status, 1)
    with pytest.raises(ValueError, match="spot"):
        bad = list(args)
        bad[6] = np.full(2, 100.0)
        lb.lookback_price_batch(*bad, ALL, out, status, 1)
    with pytest.raises(ValueError, match="out has shape"):
        lb.lookback_price_batch(*args, ALL, np.empty((6, 3)), status, 1)
    assert lb.lookback_price_batch(*[a[:0] for a in args], ALL, np.empty((7, 0)), np.empty(0, np.int32), 1) == 0


def test_out_rows_may_be_views_of_a_wider_array():
    c = good_rows()
    wide = np.full((7, 10), -1.0)
    args = [np.ascontiguousarray(c[name]) for name in INPUTS]
    lb.lookback_price_batch(*args, ALL, wide[:, 4:7], np.empty(3, np.int32), 1)
    ref, _, _ = run(c)
    for j, name in enumerate(NAMES):
        np.testing.assert_array_equal(wide[j, 4:7], ref[name])
    assert (wide[:, :4] == -1.0).all() and (wide[:, 7:] == -1.0).all()
