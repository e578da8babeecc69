"""pricegrid.ext.black: European prices and Greeks under BSM, Black-76 and Bachelier.

References and tolerances (eps = 2.2e-16):

* QuantLib >= 1.41 (the ``QuantLib`` wheel; its Python API exports BachelierCalculator from
  1.40 and BlackCalculator.vanna/volga from 1.41), on a few thousand random cases per model across
  the domain: T from 1 day to 30 years, vol 1% to 300%, rates -3%..12%, yields -5%..10%,
  strikes up to 8 standard deviations in and out of the money.
  - BSM: ``AnalyticEuropeanEngine`` on a ``GeneralizedBlackScholesProcess`` (flat curves,
    Actual365Fixed, T = days/365 exactly) for the price and first-order Greeks;
    ``BlackCalculator`` for vanna and volga.
  - Black-76: ``blackFormula`` and ``BlackCalculator``; Bachelier: ``bachelierBlackFormula``
    and ``BachelierCalculator``.
  Tolerance: 1e-12 relative, or an absolute 1e-14 of the magnitude of the terms the
  measure is built from (e.g. DF (F + K) for a Black price, about 1e-12 for F, K ~ 100).
  The absolute part is needed where the value is far smaller than its terms, and there
  QuantLib's own error is of the order of eps times the terms: it forms N(-d) as 1 - N(d)
  for puts, its N(x) = (1 + erf(x/sqrt 2))/2 has an absolute error of about eps for x < 0,
  and below N = 1e-8 it switches to an asymptotic series good to about 1e-7 relative
  (i.e. < 1e-15 of the terms); an out-of-the-money price is also the difference of two
  terms, so any implementation loses eps times the terms there. For the engine
  comparison, QuantLib builds F as S qDF/rDF and the deviation as sqrt(vol^2 T), a few ulps
  from ours; deep out-of-the-money and short-dated values amplify that by their
  elasticity, so the tolerance adds 8 eps times our own elasticities in S and vol.
* Haug's published generalized-BSM values (1st ed. 1998, pp. 2-8, 11-16, 24), to the 4
  decimals printed.
* Central finite differences of our price for all nine Greeks (moderate domain).
* Identities: put-call parity, Black-76 = BSM on S = F with q = r, the Bachelier closed
  form (Bachelier 1900; Schachermayer and Teichmann, Math. Finance 18(1), 2008, 155-170)
  and hand-computable values, T = 0 intrinsic values.
* Kernel contract: status bits and NaN rows, broadcasting, threads, measure subsets,
  price_one against price_batch, argument errors.
* Scenario cubes (price_cube): every cell against price_batch on the same inputs laid out
  as n x s rows and against price_one, bit for bit (no tolerance: the same block loop).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import QuantLib as ql

from pricegrid.ext import black
from pricegrid.ext import status as pgs

BSM, B76, BACH = pgs.MODEL_BSM, pgs.MODEL_BLACK76, pgs.MODEL_BACHELIER
MODELS = (BSM, B76, BACH)
CALL, PUT = pgs.CALL, pgs.PUT
NAMES = ("price", "delta", "gamma", "vega", "theta", "rho", "dividend_rho", "vanna", "volga", "charm")
CODE = {name: code for code, name in enumerate(NAMES, start=1)}
ALL = np.arange(1, 11, dtype=np.int32)
EPS = np.finfo(float).eps
INPUTS = ("option_type", "strike", "time", "underlying", "rate", "dividend", "vol")


# --------------------------------------------------------------------------- helpers
def run(model, cases, measures=ALL, threads=1, n=None):
    """price_batch on a dict of inputs (n rows: by default the longest input); returns
    (dict name -> array, forward, df, status, nbad)."""
    args = {
        name: np.ascontiguousarray(cases[name], dtype=np.int32 if name == "option_type" else np.float64)
        for name in INPUTS
    }
    n = max(a.shape[0] for a in args.values()) if n is None else n
    measures = np.asarray(measures, dtype=np.int32)
    out = np.full((measures.shape[0], n), -7.0)
    forward, df, status = np.full(n, -7.0), np.full(n, -7.0), np.full(n, -7, dtype=np.int32)
    nbad = black.price_batch(model, *(args[name] for name in INPUTS), measures, out, forward, df,
                             status, threads)
    values = {NAMES[code - 1]: out[j] for j, code in enumerate(measures)}
    return values, forward, df, status, nbad


def random_cases(rng, n, model):
    """Random rows across the domain; strikes up to 8 standard deviations from the forward."""
    days = rng.integers(1, 30 * 365 + 1, n)
    t = days / 365.0
    r = rng.uniform(-0.03, 0.12, n)
    q = rng.uniform(-0.05, 0.10, n)
    x = rng.uniform(-8.0, 8.0, n)
    if model == BACH:
        level = np.exp(rng.uniform(np.log(1e-3), np.log(1e3), n))
        u = level * rng.uniform(-2.0, 2.0, n)
        vol = level * np.exp(rng.uniform(np.log(0.01), np.log(3.0), n))
        k = u + vol * np.sqrt(t) * x
    else:
        vol = np.exp(rng.uniform(np.log(0.01), np.log(3.0), n))
        u = np.exp(rng.uniform(np.log(1.0), np.log(1e4), n))
        f = u * np.exp((r - q) * t) if model == BSM else u
        k = f * np.exp(vol * np.sqrt(t) * x)
    return {
        "option_type": rng.integers(1, 3, n).astype(np.int32),
        "strike": k, "time": t, "days": days, "underlying": u, "rate": r, "dividend": q, "vol": vol,
    }


def moderate_cases(rng, n, model):
    """Random rows where finite differences are accurate (|d| <= 2, T >= 0.1, vol >= 10%)."""
    t = rng.uniform(0.1, 5.0, n)
    r = rng.uniform(-0.02, 0.10, n)
    q = rng.uniform(-0.03, 0.08, n)
    if model == BACH:
        u = rng.uniform(-2.0, 5.0, n)
        vol = rng.uniform(0.2, 2.0, n)
        k = u + vol * np.sqrt(t) * rng.uniform(-2.0, 2.0, n)
    else:
        vol = rng.uniform(0.1, 0.8, n)
        u = np.exp(rng.uniform(np.log(20.0), np.log(500.0), n))
        f = u * np.exp((r - q) * t) if model == BSM else u
        k = f * np.exp(vol * np.sqrt(t) * rng.uniform(-2.0, 2.0, n))
    return {"option_type": rng.integers(1, 3, n).astype(np.int32), "strike": k, "time": t,
            "underlying": u, "rate": r, "dividend": q, "vol": vol}


def terms(model, c, v):
    """Magnitude of the terms each measure is built from (the scale of its rounding error)."""
    k, t, u, r, q, vol = (np.asarray(c[name], dtype=float) for name in INPUTS[1:])
    df, sd, sqt = np.exp(-r * t), vol * np.sqrt(t), np.sqrt(t)
    if model == BACH:
        p = df * (np.abs(u - k) + sd)
        d = (u - k) / sd
        return {"price": p, "delta": df, "gamma": df / sd, "vega": df * sqt,
                "theta": np.abs(r) * p + df * vol / sqt, "rho": t * p, "dividend_rho": 0 * t,
                "vanna": df * (1 + np.abs(d)) / vol, "volga": df * sqt * (1 + d * d) / vol,
                "charm": df * (np.abs(r) + (1 + np.abs(d)) / t)}
    f = u * np.exp((r - q) * t) if model == BSM else u
    qe = q if model == BSM else r
    ds = f / u
    p = df * (f + k)
    d1 = np.log(f / k) / sd + sd / 2
    d2 = d1 - sd
    return {
        "price": p, "delta": df * ds, "gamma": df * ds * ds / (f * sd), "vega": df * f * sqt,
        # BlackCalculator.theta divides the Black-Scholes PDE's terms by T
        "theta": df * f * vol / sqt + (np.abs(qe) + np.abs(r)) * p
        + (np.abs(v["price"]) + u * np.abs(v["delta"])) / t + (vol * u) ** 2 * np.abs(v["gamma"]),
        "rho": t * p, "dividend_rho": t * df * f,
        "vanna": df * ds * (1 + np.abs(d2)) / vol,
        "volga": df * f * sqt * (1 + np.abs(d1 * d2)) / vol,
        "charm": df * ds * (np.abs(qe) + np.abs(r - qe) / sd + (1 + np.abs(d2)) / t),
    }


def assert_close(name, ours, ref, rtol, atol):
    """|ours - ref| <= rtol |ref| + atol elementwise, reporting the worst row."""
    ours, ref = np.asarray(ours, float), np.asarray(ref, float)
    atol = np.broadcast_to(np.asarray(atol, float), ref.shape)
    err = np.abs(ours - ref)
    tol = rtol * np.abs(ref) + atol
    bad = ~(err <= tol)
    if bad.any():
        i = int(np.argmax(np.where(bad, err / np.where(tol > 0, tol, 1e-300), 0)))
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {ref.size} rows off; worst row {i}: ours {ours[i]!r}, "
            f"reference {ref[i]!r}, |diff| {err[i]:.3e} > tol {tol[i]:.3e}"
        )


@pytest.fixture
def ql_today():
    """A QuantLib evaluation date for this test only (QuantLib keeps it globally)."""
    settings = ql.Settings.instance()
    saved = settings.evaluationDate
    today = ql.Date(15, ql.January, 2025)
    settings.evaluationDate = today
    yield today
    settings.evaluationDate = saved


def ql_type(option_type):
    return ql.Option.Call if option_type == CALL else ql.Option.Put


# --------------------------------------------------------------------------- QuantLib
def test_bsm_matches_quantlib_analytic_european_engine(ql_today):
    """Price, delta, gamma, vega, theta, rho, dividend_rho vs AnalyticEuropeanEngine."""
    rng = np.random.default_rng(20250115)
    c = random_cases(rng, 2000, BSM)
    v, forward, df, status, nbad = run(BSM, c)
    assert nbad == 0 and not status.any()

    dc = ql.Actual365Fixed()
    spot, rate, div, vol = (ql.SimpleQuote(0.0) for _ in range(4))
    process = ql.GeneralizedBlackScholesProcess(
        ql.QuoteHandle(spot),
        ql.YieldTermStructureHandle(ql.FlatForward(ql_today, ql.QuoteHandle(div), dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(ql_today, ql.QuoteHandle(rate), dc)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(ql_today, ql.NullCalendar(), ql.QuoteHandle(vol), dc)),
    )
    engine = ql.AnalyticEuropeanEngine(process)
    names = ("price", "delta", "gamma", "vega", "theta", "rho", "dividend_rho")
    ref = np.empty((len(names), len(c["time"])))
    for i in range(len(c["time"])):
        spot.setValue(c["underlying"][i])
        rate.setValue(c["rate"][i])
        div.setValue(c["dividend"][i])
        vol.setValue(c["vol"][i])
        maturity = ql_today + int(c["days"][i])
        assert dc.yearFraction(ql_today, maturity) == c["time"][i]
        option = ql.VanillaOption(ql.PlainVanillaPayoff(ql_type(c["option_type"][i]), c["strike"][i]),
                                  ql.EuropeanExercise(maturity))
        option.setPricingEngine(engine)
        ref[:, i] = (option.NPV(), option.delta(), option.gamma(), option.vega(), option.theta(),
                     option.rho(), option.dividendRho())

    # our elasticities in S and vol, to propagate QuantLib's few-ulp different F and sd
    h = 1e-6
    bumped = {}
    for name, factor in (("underlying", 1), ("vol", 1)):
        up, down = dict(c), dict(c)
        up[name] = c[name] * math.exp(h * factor)
        down[name] = c[name] * math.exp(-h * factor)
        bumped[name] = (run(BSM, up)[0], run(BSM, down)[0])
    scale = terms(BSM, c, v)
    for j, name in enumerate(names):
        elasticity = sum(np.abs(up[name] - down[name]) / (2 * h) for up, down in bumped.values())
        assert_close(name, v[name], ref[j], 1e-12, 1e-14 * scale[name] + 8 * EPS * elasticity)


def test_bsm_forward_and_discount_match_quantlib_curves(ql_today):
    """forward_out = S qDF/rDF and df_out = rDF of QuantLib's flat curves."""
    rng = np.random.default_rng(7)
    c = random_cases(rng, 500, BSM)
    _, forward, df, status, _ = run(BSM, c, measures=[])
    assert not status.any()
    dc = ql.Actual365Fixed()
    for i in range(len(c["time"])):
        maturity = ql_today + int(c["days"][i])
        rdf = ql.FlatForward(ql_today, c["rate"][i], dc).discount(maturity)
        qdf = ql.FlatForward(ql_today, c["dividend"][i], dc).discount(maturity)
        assert df[i] == pytest.approx(rdf, rel=8 * EPS)
        assert forward[i] == pytest.approx(c["underlying"][i] * qdf / rdf, rel=16 * EPS)


def test_bsm_vanna_volga_match_quantlib_black_calculator():
    """vanna = BlackCalculator.vanna; volga = sqrt(T) BlackCalculator.volga (same F, DF, sd).

    QuantLib's volga differentiates vega (per 1.00 of vol) with respect to the standard
    deviation vol sqrt(T) rather than vol, hence the sqrt(T); finite differences below
    confirm ours is d(vega)/d(vol).
    """
    rng = np.random.default_rng(11)
    c = random_cases(rng, 2000, BSM)
    v, forward, df, status, _ = run(BSM, c)
    assert not status.any()
    t, s, vol = c["time"], c["underlying"], c["vol"]
    sd = vol * np.sqrt(t)
    ref = np.empty((3, len(t)))
    for i in range(len(t)):
        calc = ql.BlackCalculator(ql.PlainVanillaPayoff(ql_type(c["option_type"][i]), c["strike"][i]),
                                  forward[i], sd[i], df[i])
        ref[:, i] = (calc.value(), calc.vanna(s[i], t[i]), calc.volga(t[i]) * math.sqrt(t[i]))
    scale = terms(BSM, c, v)
    assert_close("price", v["price"], ref[0], 1e-12, 1e-14 * scale["price"])
    assert_close("vanna", v["vanna"], ref[1], 1e-12, 1e-14 * scale["vanna"])
    assert_close("volga", v["volga"], ref[2], 1e-12, 1e-14 * scale["volga"])


def test_black76_matches_quantlib():
    """Price (blackFormula) and Greeks (BlackCalculator on the forward); rho = -T V."""
    rng = np.random.default_rng(76)
    c = random_cases(rng, 2000, B76)
    v, forward, df, status, _ = run(B76, c)
    assert not status.any()
    np.testing.assert_array_equal(forward, c["underlying"])
    t, f, vol = c["time"], c["underlying"], c["vol"]
    sd = vol * np.sqrt(t)
    assert_close("df", df, np.exp(-c["rate"] * t), 4 * EPS, 0.0)
    names = ("price", "delta", "gamma", "vega", "theta", "rho", "vanna", "volga")
    ref = np.empty((len(names), len(t)))
    for i in range(len(t)):
        payoff = ql.PlainVanillaPayoff(ql_type(c["option_type"][i]), c["strike"][i])
        calc = ql.BlackCalculator(payoff, f[i], sd[i], df[i])
        value = ql.blackFormula(ql_type(c["option_type"][i]), c["strike"][i], f[i], sd[i], df[i])
        ref[:, i] = (value, calc.deltaForward(), calc.gammaForward(), calc.vega(t[i]),
                     calc.theta(f[i], t[i]), -t[i] * value, calc.vanna(f[i], t[i]),
                     calc.volga(t[i]) * math.sqrt(t[i]))
    scale = terms(B76, c, v)
    for j, name in enumerate(names):
        assert_close(name, v[name], ref[j], 1e-12, 1e-14 * scale[name])
    assert not v["dividend_rho"].any()


def test_bachelier_matches_quantlib():
    """Price (bachelierBlackFormula) and Greeks (BachelierCalculator); rho = -T V.

    QuantLib 1.44's BachelierCalculator.vanna leaves out the discount factor that its
    deltaForward carries, so ours is compared with DF times it (and with finite
    differences below); its volga is per standard deviation, as for Black.
    """
    rng = np.random.default_rng(1900)
    c = random_cases(rng, 2000, BACH)
    v, forward, df, status, _ = run(BACH, c)
    assert not status.any()
    t, f, vol = c["time"], c["underlying"], c["vol"]
    sd = vol * np.sqrt(t)
    names = ("price", "delta", "gamma", "vega", "theta", "rho", "vanna", "volga")
    ref = np.empty((len(names), len(t)))
    for i in range(len(t)):
        payoff = ql.PlainVanillaPayoff(ql_type(c["option_type"][i]), c["strike"][i])
        calc = ql.BachelierCalculator(payoff, f[i], sd[i], df[i])
        value = ql.bachelierBlackFormula(ql_type(c["option_type"][i]), c["strike"][i], f[i], sd[i], df[i])
        ref[:, i] = (value, calc.deltaForward(), calc.gammaForward(), calc.vega(t[i]),
                     calc.theta(f[i], t[i]), -t[i] * value, df[i] * calc.vanna(t[i]),
                     calc.volga(t[i]) * math.sqrt(t[i]))
    scale = terms(BACH, c, v)
    for j, name in enumerate(names):
        assert_close(name, v[name], ref[j], 1e-12, 1e-14 * scale[name])
    assert not v["dividend_rho"].any()


# --------------------------------------------------------------------------- identities
@pytest.mark.parametrize("model", MODELS)
def test_greeks_match_central_finite_differences(model):
    """All nine Greeks against central differences of our price (moderate domain).

    Steps are scaled so that d moves by 1e-5 (first order) or 1e-3 (second order, mixed);
    tolerance 1e-8 (first order) and 2e-6 (second order) of |Greek| + its terms.
    """
    rng = np.random.default_rng(100 + model)
    c = moderate_cases(rng, 400, model)
    v = run(model, c)[0]
    t, u, vol = c["time"], c["underlying"], c["vol"]
    sd = vol * np.sqrt(t)
    unit = sd * (np.abs(u) if model != BACH else 1.0)  # a move of U that moves d by about 1

    def price(**bumps):
        b = dict(c)
        for name, step in bumps.items():
            b[name] = c[name] + step
        values, _, _, status, _ = run(model, b, measures=[1])
        assert not status.any()
        return values["price"]

    h1, h2 = 1e-5, 1e-3
    hu, hv, ht, hr = h1 * unit, h1 * vol, h1 * t, 1e-5
    gu, gv, gt = h2 * unit, h2 * vol, h2 * t
    p0 = price()
    fd = {
        "delta": (price(underlying=hu) - price(underlying=-hu)) / (2 * hu),
        "vega": (price(vol=hv) - price(vol=-hv)) / (2 * hv),
        "theta": -(price(time=ht) - price(time=-ht)) / (2 * ht),
        "rho": (price(rate=hr) - price(rate=-hr)) / (2 * hr),
        "dividend_rho": (price(dividend=hr) - price(dividend=-hr)) / (2 * hr),
        "gamma": (price(underlying=gu) - 2 * p0 + price(underlying=-gu)) / gu**2,
        "volga": (price(vol=gv) - 2 * p0 + price(vol=-gv)) / gv**2,
        "vanna": (price(underlying=gu, vol=gv) - price(underlying=gu, vol=-gv)
                  - price(underlying=-gu, vol=gv) + price(underlying=-gu, vol=-gv)) / (4 * gu * gv),
        "charm": -(price(underlying=gu, time=gt) - price(underlying=gu, time=-gt)
                   - price(underlying=-gu, time=gt) + price(underlying=-gu, time=-gt)) / (4 * gu * gt),
    }
    scale = terms(model, c, v)
    for name, ref in fd.items():
        tol = 1e-8 if name in ("delta", "vega", "theta", "rho", "dividend_rho") else 2e-6
        assert_close(name, v[name], ref, tol, tol * scale[name])
    if model != BSM:
        assert not v["dividend_rho"].any()


@pytest.mark.parametrize("model", MODELS)
def test_put_call_parity(model):
    """C - P = DF (F - K), and the matching identities for every Greek."""
    rng = np.random.default_rng(200 + model)
    c = random_cases(rng, 3000, model)
    c["option_type"] = np.full(len(c["time"]), CALL, np.int32)
    call, forward, df, _, _ = run(model, c)
    c["option_type"] = np.full(len(c["time"]), PUT, np.int32)
    put = run(model, c)[0]
    k, t, u, r, q = c["strike"], c["time"], c["underlying"], c["rate"], c["dividend"]
    ds = forward / u if model == BSM else 1.0
    qe = q if model == BSM else r
    scale = terms(model, c, call)
    expected = {
        "price": df * (forward - k),
        "delta": df * ds,
        "theta": df * (qe * forward - r * k) if model != BACH else r * df * (forward - k),
        "rho": t * df * k if model == BSM else -t * df * (forward - k),
        "dividend_rho": -t * df * forward if model == BSM else 0 * t,
        "charm": qe * df * ds,
    }
    for name in NAMES:
        diff = call[name] - put[name]
        want = expected.get(name, 0 * t)
        assert_close(f"{name} call - put", diff, want, 1e-12, 1e-13 * scale[name])


def test_black76_is_bsm_on_the_forward_with_q_equal_r():
    """Black-76(F) = BSM(S = F, q = r) for all measures but rho; B76 rho = BSM rho + dividend_rho."""
    rng = np.random.default_rng(1976)
    c = random_cases(rng, 3000, B76)
    b76, fw76, df76, _, _ = run(B76, c)
    bsm_case = dict(c, dividend=c["rate"])
    bsm, fwbsm, dfbsm, _, _ = run(BSM, bsm_case)
    np.testing.assert_array_equal(fwbsm, fw76)
    np.testing.assert_array_equal(dfbsm, df76)
    scale = terms(B76, c, b76)
    for name in ("price", "delta", "gamma", "vega", "theta", "vanna", "volga", "charm"):
        assert_close(name, b76[name], bsm[name], 1e-14, 1e-15 * scale[name])
    assert_close("rho", b76["rho"], bsm["rho"] + bsm["dividend_rho"], 1e-13, 1e-14 * scale["rho"])


def _bachelier_reference(option_type, f, k, t, r, vol):
    """Bachelier (1900) in discounted form (Schachermayer and Teichmann 2008, Math. Finance
    18(1), 155-170): V = DF [w (F - K) N(w d) + s n(d)], d = (F - K)/s, s = vol sqrt(T)."""
    from scipy.special import ndtr

    w = np.where(option_type == CALL, 1.0, -1.0)
    s = vol * np.sqrt(t)
    d = (f - k) / s
    return np.exp(-r * t) * (w * (f - k) * ndtr(w * d) + s * np.exp(-0.5 * d * d) / np.sqrt(2 * np.pi))


def test_bachelier_closed_form_and_hand_values():
    """The literature's closed form on random cases, and values computable by hand."""
    rng = np.random.default_rng(1900)
    c = random_cases(rng, 3000, BACH)
    v = run(BACH, c)[0]
    ref = _bachelier_reference(c["option_type"], c["underlying"], c["strike"], c["time"], c["rate"], c["vol"])
    assert_close("price", v["price"], ref, 1e-12, 1e-14 * terms(BACH, c, v)["price"])

    sqrt_2pi = math.sqrt(2 * math.pi)
    rows = [
        # (type, F, K, T, r, vol, price)
        (CALL, 100.0, 100.0, 1.0, 0.0, 20.0, 20.0 / sqrt_2pi),  # at the money: s n(0)
        (PUT, 100.0, 100.0, 1.0, 0.0, 20.0, 20.0 / sqrt_2pi),
        (CALL, 0.5, 0.5, 4.0, 0.05, 10.0, math.exp(-0.2) * 20.0 / sqrt_2pi),
        # d = 1: N(1) + n(1) = 0.841344746068543 + 0.241970724519143
        (CALL, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0833154705876863),
        (PUT, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0833154705876863),
        # negative forward and strike, 20 deviations in the money: intrinsic
        (CALL, -10.0, -30.0, 1.0, 0.0, 1.0, 20.0),
        (PUT, -30.0, -10.0, 1.0, 0.0, 1.0, 20.0),
    ]
    for option_type, f, k, t, r, vol, want in rows:
        got = black.price_one(BACH, option_type, k, t, f, r, 0.0, vol, 0)
        assert got[0] == 0
        assert got[3] == pytest.approx(want, rel=4 * EPS), (option_type, f, k)
    # the at-the-money Greeks: delta DF w/2, gamma DF n(0)/s, vega DF sqrt(T) n(0)
    st, fwd, df, p, delta, gamma, vega, *_ = black.price_one(BACH, PUT, 0.5, 4.0, 0.5, 0.05, 0.0, 10.0, 0x7FE)
    assert delta == pytest.approx(-0.5 * math.exp(-0.2), rel=4 * EPS)
    assert gamma == pytest.approx(math.exp(-0.2) / (20.0 * sqrt_2pi), rel=4 * EPS)
    assert vega == pytest.approx(math.exp(-0.2) * 2.0 / sqrt_2pi, rel=4 * EPS)


# Published generalized-BSM values: E. G. Haug, "The Complete Guide to Option Pricing
# Formulas", 1st ed. (McGraw-Hill 1998), prices pp. 2-8 and 24, Greeks pp. 11-16, as
# tabulated in QuantLib's test-suite/europeanoption.cpp; printed to 4 decimals, so the
# tolerance is 1e-4 (as there). (type, K, S, q, r, T, vol, measure, value)
HAUG = [
    (CALL, 65.0, 60.0, 0.00, 0.08, 0.25, 0.30, "price", 2.1334),
    (PUT, 95.0, 100.0, 0.05, 0.10, 0.50, 0.20, "price", 2.4648),
    (PUT, 19.0, 19.0, 0.10, 0.10, 0.75, 0.28, "price", 1.7011),
    (CALL, 19.0, 19.0, 0.10, 0.10, 0.75, 0.28, "price", 1.7011),
    (CALL, 1.60, 1.56, 0.08, 0.06, 0.50, 0.12, "price", 0.0291),
    (PUT, 70.0, 75.0, 0.05, 0.10, 0.50, 0.35, "price", 4.0870),
    (CALL, 100.0, 90.0, 0.10, 0.10, 0.10, 0.15, "price", 0.0205),
    (CALL, 100.0, 100.0, 0.10, 0.10, 0.10, 0.15, "price", 1.8734),
    (CALL, 100.0, 110.0, 0.10, 0.10, 0.50, 0.35, "price", 15.3086),
    (PUT, 100.0, 90.0, 0.10, 0.10, 0.10, 0.15, "price", 9.9210),
    (PUT, 100.0, 110.0, 0.10, 0.10, 0.50, 0.35, "price", 5.7963),
    (CALL, 100.0, 105.0, 0.10, 0.10, 0.50, 0.36, "delta", 0.5946),
    (PUT, 100.0, 105.0, 0.10, 0.10, 0.50, 0.36, "delta", -0.3566),
    (CALL, 60.0, 55.0, 0.00, 0.10, 0.75, 0.30, "gamma", 0.0278),
    (PUT, 60.0, 55.0, 0.00, 0.10, 0.75, 0.30, "gamma", 0.0278),
    (CALL, 60.0, 55.0, 0.00, 0.10, 0.75, 0.30, "vega", 18.9358),
    (PUT, 405.0, 430.0, 0.05, 0.07, 1 / 12, 0.20, "theta", -31.1924),
    (CALL, 75.0, 72.0, 0.00, 0.09, 1.00, 0.19, "rho", 38.7325),
    (PUT, 490.0, 500.0, 0.05, 0.08, 0.25, 0.15, "dividend_rho", 42.2254),
]


@pytest.mark.parametrize("option_type, k, s, q, r, t, vol, measure, value", HAUG)
def test_bsm_matches_haug_published_values(option_type, k, s, q, r, t, vol, measure, value):
    one = black.price_one(BSM, option_type, k, t, s, r, q, vol, 0x7FE)
    assert one[0] == 0
    assert one[3 + NAMES.index(measure)] == pytest.approx(value, abs=1e-4)


@pytest.mark.parametrize("model", MODELS)
def test_expiry_is_intrinsic(model):
    """T = 0: price DF max(w(F - K), 0) (DF = 1), delta the step (1/2 at the money), rest 0."""
    u = np.array([100.0, 100.0, 100.0, 90.0, 110.0, 100.0])
    k = np.array([100.0, 90.0, 110.0, 100.0, 100.0, 100.0])
    if model == BACH:
        u, k = u - 100.0, k - 100.0  # around zero, negative values included
    rows = len(u)
    for option_type, w in ((CALL, 1.0), (PUT, -1.0)):
        c = {"option_type": np.full(rows, option_type, np.int32), "strike": k, "time": np.zeros(rows),
             "underlying": u, "rate": np.full(rows, 0.05), "dividend": np.full(rows, 0.03),
             "vol": np.full(rows, 0.3 if model != BACH else 20.0)}
        v, forward, df, status, nbad = run(model, c)
        assert nbad == 0
        np.testing.assert_array_equal(df, 1.0)
        np.testing.assert_array_equal(forward, u)
        np.testing.assert_array_equal(v["price"], np.maximum(w * (u - k), 0.0))
        step = np.where(w * (u - k) > 0, 1.0, np.where(u == k, 0.5, 0.0))
        np.testing.assert_array_equal(v["delta"], w * step)
        for name in NAMES[2:]:
            np.testing.assert_array_equal(v[name], 0.0, err_msg=name)


# --------------------------------------------------------------------------- kernel contract
GOOD = {"option_type": CALL, "strike": 95.0, "time": 0.75, "underlying": 100.0, "rate": 0.03,
        "dividend": 0.01, "vol": 0.25}
INF, NAN = math.inf, math.nan
BAD_ROWS = [
    # (models, field, value, expected status)
    (MODELS, "option_type", 0, pgs.BAD_OPTION_TYPE),
    (MODELS, "option_type", 3, pgs.BAD_OPTION_TYPE),
    (MODELS, "option_type", -1, pgs.BAD_OPTION_TYPE),
    (MODELS, "time", -0.5, pgs.BAD_TIME),
    (MODELS, "time", -5e-324, pgs.BAD_TIME),
    (MODELS, "time", NAN, pgs.BAD_TIME),
    (MODELS, "time", INF, pgs.BAD_TIME),
    (MODELS, "time", -INF, pgs.BAD_TIME),
    (MODELS, "rate", NAN, pgs.BAD_RATE),
    (MODELS, "rate", INF, pgs.BAD_RATE),
    (MODELS, "rate", -INF, pgs.BAD_RATE),
    (MODELS, "vol", 0.0, pgs.BAD_VOL),
    (MODELS, "vol", -0.25, pgs.BAD_VOL),
    (MODELS, "vol", NAN, pgs.BAD_VOL),
    (MODELS, "vol", INF, pgs.BAD_VOL),
    (MODELS, "vol", -INF, pgs.BAD_VOL),
    ((BSM, B76), "strike", 0.0, pgs.BAD_STRIKE),
    ((BSM, B76), "strike", -95.0, pgs.BAD_STRIKE),
    (MODELS, "strike", NAN, pgs.BAD_STRIKE),
    (MODELS, "strike", INF, pgs.BAD_STRIKE),
    (MODELS, "strike", -INF, pgs.BAD_STRIKE),
    ((BSM, B76), "underlying", 0.0, pgs.BAD_UNDERLYING),
    ((BSM, B76), "underlying", -100.0, pgs.BAD_UNDERLYING),
    (MODELS, "underlying", NAN, pgs.BAD_UNDERLYING),
    (MODELS, "underlying", INF, pgs.BAD_UNDERLYING),
    (MODELS, "underlying", -INF, pgs.BAD_UNDERLYING),
    ((BSM,), "dividend", NAN, pgs.BAD_DIVIDEND),
    ((BSM,), "dividend", INF, pgs.BAD_DIVIDEND),
    ((BSM,), "dividend", -INF, pgs.BAD_DIVIDEND),
    # valid where the model allows it: priced, status 0
    ((B76, BACH), "dividend", NAN, pgs.OK),
    ((BACH,), "strike", -95.0, pgs.OK),
    ((BACH,), "underlying", -100.0, pgs.OK),
    ((BACH,), "strike", 0.0, pgs.OK),
    (MODELS, "vol", 5e-324, pgs.OK),
]


@pytest.mark.parametrize(
    "model, field, value, expected",
    [(m, f, val, e) for models, f, val, e in BAD_ROWS for m in models],
    ids=lambda x: repr(x),
)
def test_bad_input_sets_its_bit_and_nans_its_row_only(model, field, value, expected):
    """A row out of the model's domain gets exactly its bit and NaN everywhere; neighbours price."""
    rows = 5
    c = {name: np.full(rows, GOOD[name], np.int32 if name == "option_type" else float) for name in INPUTS}
    if model == BACH:
        c["vol"][:] = 20.0
    c[field][2] = value
    v, forward, df, status, nbad = run(model, c)
    assert status[2] == expected
    assert nbad == (expected != 0)
    np.testing.assert_array_equal(status[[0, 1, 3, 4]], 0)
    good = {name: c[name].copy() for name in INPUTS}
    good[field][2] = good[field][0]
    vg, fg, dg, _, _ = run(model, good)  # same rows in the same places (SIMD lane or not)
    for name in NAMES:
        np.testing.assert_array_equal(np.delete(v[name], 2), np.delete(vg[name], 2))
        assert np.isfinite(vg[name]).all()
        assert np.isnan(v[name][2]) == (expected != 0), name
    assert np.isnan(forward[2]) == (expected != 0) and np.isnan(df[2]) == (expected != 0)
    one = black.price_one(model, *(c[name][2].item() for name in INPUTS), 0x7FE)
    assert one[0] == expected
    assert all(np.isnan(x) for x in one[1:]) == (expected != 0)


def test_several_bad_fields_set_several_bits():
    c = {name: np.full(1, GOOD[name], np.int32 if name == "option_type" else float) for name in INPUTS}
    c["strike"][0], c["vol"][0], c["option_type"][0] = NAN, 0.0, 9
    status = run(BSM, c)[3]
    assert status[0] == pgs.BAD_STRIKE | pgs.BAD_VOL | pgs.BAD_OPTION_TYPE


def test_valid_inputs_with_an_overflowing_result_are_not_finite():
    """PG_NOT_FINITE when the forward, the price or a requested measure overflows."""
    # the forward overflows: S e^{(r - q) T} = 1e300 e^{150}
    c = dict(GOOD, underlying=1e300, rate=5.0, time=30.0)
    c = {name: np.array([c[name], GOOD[name]], np.int32 if name == "option_type" else float) for name in INPUTS}
    v, forward, df, status, nbad = run(BSM, c)
    assert list(status) == [pgs.NOT_FINITE, 0] and nbad == 1
    assert all(np.isnan(v[name][0]) for name in NAMES) and np.isnan(forward[0])
    # gamma at the money with a tiny spot and deviation overflows; the price does not
    c = dict(GOOD, underlying=1e-300, strike=1e-300, rate=0.0, dividend=0.0, vol=1e-10, time=1.0)
    c = {name: np.array([c[name]], np.int32 if name == "option_type" else float) for name in INPUTS}
    v, _, _, status, _ = run(BSM, c, measures=[CODE["price"], CODE["delta"]])
    assert status[0] == 0 and np.isfinite(v["price"][0])
    v, forward, df, status, _ = run(BSM, c, measures=[CODE["price"], CODE["gamma"]])
    assert status[0] == pgs.NOT_FINITE
    assert np.isnan(v["price"][0]) and np.isnan(v["gamma"][0]) and np.isnan(forward[0])
    one = black.price_one(BSM, CALL, 1e-300, 1.0, 1e-300, 0.0, 0.0, 1e-10, 1 << CODE["gamma"])
    assert one[0] == pgs.NOT_FINITE and all(np.isnan(x) for x in one[1:])


@pytest.mark.parametrize("model", MODELS)
def test_broadcast_inputs_equal_tiled_inputs(model):
    """Any input of length 1 gives the same bits as that input repeated n times."""
    rng = np.random.default_rng(300 + model)
    n = 203  # several blocks and a partial one
    c = random_cases(rng, n, model)
    for names in [[name] for name in INPUTS] + [list(INPUTS)]:
        short = dict(c)
        tiled = dict(c)
        for name in names:
            short[name] = c[name][5:6]
            tiled[name] = np.repeat(c[name][5:6], n)
        a, fa, da, sa, _ = run(model, short, n=n)
        b, fb, db, sb, _ = run(model, tiled)
        for name in NAMES:
            np.testing.assert_array_equal(a[name], b[name], err_msg=f"{names}: {name}")
        np.testing.assert_array_equal(fa, fb)
        np.testing.assert_array_equal(da, db)
        np.testing.assert_array_equal(sa, sb)


@pytest.mark.parametrize("model", MODELS)
def test_one_and_two_threads_give_identical_results(model):
    rng = np.random.default_rng(400 + model)
    n = 3 * black.PARALLEL_THRESHOLD + 17
    c = random_cases(rng, n, model)
    c["vol"][::97] = -1.0  # some failed rows too
    one = run(model, c, threads=1)
    two = run(model, c, threads=2)
    for name in NAMES:
        np.testing.assert_array_equal(one[0][name], two[0][name], err_msg=name)
    for j in (1, 2, 3):
        np.testing.assert_array_equal(one[j], two[j])
    assert one[4] == two[4] == len(c["vol"][::97])


@pytest.mark.parametrize("model", MODELS)
def test_subsets_of_measures_equal_rows_of_the_full_computation(model):
    rng = np.random.default_rng(500 + model)
    c = random_cases(rng, 300, model)
    full = run(model, c)[0]
    subsets = [[1], [5], [10, 2], [3, 3, 9], [7, 6, 5, 4], list(rng.permutation(np.arange(1, 11)))]
    for measures in subsets:
        values, _, _, _, _ = run(model, c, measures=measures)
        for name in values:
            np.testing.assert_array_equal(values[name], full[name], err_msg=f"{measures}: {name}")


@pytest.mark.parametrize("model", MODELS)
def test_fused_measure_sets_equal_the_general_path_with_failed_rows(model):
    """The sets computed in one pass (price; price, delta; price + delta, gamma, vega, theta,
    rho; any order) give the bits, statuses, forward/df and count of the per-measure loops,
    also in blocks with failed inputs and with an overflowing row."""
    rng = np.random.default_rng(700 + model)
    n = 5 * 32 + 11
    c = random_cases(rng, n, model)
    c["time"][::29] = 0.0  # expiry rows
    c["vol"][3], c["strike"][40], c["option_type"][41], c["rate"][100] = -1.0, NAN, 9, np.inf
    if model == BSM:  # the forward overflows
        c["underlying"][70], c["rate"][70], c["time"][70], c["dividend"][70] = 1e300, 5.0, 30.0, 0.0
    else:  # the forward is given: the discount factor e^150 makes a call's price overflow
        c["underlying"][70], c["strike"][70], c["rate"][70], c["time"][70] = 1e307, 1.0, -5.0, 30.0
        c["option_type"][70] = CALL
    full, f_full, d_full, s_full, nbad_full = run(model, c)
    assert nbad_full >= 5 and s_full[70] == pgs.NOT_FINITE
    six = [1, 2, 3, 4, 5, 6]
    for measures in ([1], [1, 2], [2, 1], six, list(rng.permutation(six)), six + [7]):
        values, forward, df, status, nbad = run(model, c, measures=measures)
        for name in values:
            np.testing.assert_array_equal(values[name], full[name], err_msg=f"{measures}: {name}")
        np.testing.assert_array_equal(forward, f_full)
        np.testing.assert_array_equal(df, d_full)
        np.testing.assert_array_equal(status, s_full)
        assert nbad == nbad_full


@pytest.mark.parametrize("model", MODELS)
def test_fused_sets_pass_valid_rows_whose_values_sum_past_dbl_max(model):
    """The one-pass sets test a row's inputs and values for finiteness through their sum; a
    valid row whose finite values sum past DBL_MAX only sends its block to the exact checks:
    it keeps status 0 and the bits of the per-measure loops."""
    rng = np.random.default_rng(710 + model)
    n = 2 * 32
    c = random_cases(rng, n, model)
    c["strike"][5] = c["underlying"][5] = 1.5e308  # at the money: every value finite
    c["time"][5], c["rate"][5], c["dividend"][5], c["vol"][5] = 0.5, 0.01, 0.01, 0.2
    assert math.isinf(float(c["strike"][5]) + float(c["underlying"][5]))
    full, f_full, d_full, s_full, nbad_full = run(model, c)
    assert nbad_full == 0 and not s_full.any()
    assert all(np.isfinite(v[5]) for v in full.values())
    for measures in ([1], [1, 2], [1, 2, 3, 4, 5, 6]):
        values, forward, df, status, nbad = run(model, c, measures=measures)
        assert nbad == 0 and not status.any()
        for name in values:
            np.testing.assert_array_equal(values[name], full[name], err_msg=f"{measures}: {name}")
        np.testing.assert_array_equal(forward, f_full)
        np.testing.assert_array_equal(df, d_full)


@pytest.mark.parametrize("model", MODELS)
def test_price_one_equals_price_batch(model):
    """The same bits: one trade is a block of one row, computed padded to a full block on
    the batch's vector path (libmvec), as every row of every batch is, wherever it sits."""
    rng = np.random.default_rng(600 + model)
    c = moderate_cases(rng, 200, model)
    v, forward, df, status, _ = run(model, c)
    for i in range(len(c["time"])):
        one = black.price_one(model, *(c[name][i].item() for name in INPUTS), 0x7FE)
        assert one[0] == status[i] == 0
        assert one[1] == forward[i] and one[2] == df[i]
        assert list(one[3:]) == [v[name][i] for name in NAMES]
    # a row's bits do not depend on where it sits: the batch's last rows (a tail block)
    # and the same rows at the head of a batch of their own
    tail = {name: np.ascontiguousarray(c[name][-7:]) for name in INPUTS}
    w, fw, _, _, _ = run(model, tail)
    for name in NAMES:
        np.testing.assert_array_equal(w[name], v[name][-7:])
    np.testing.assert_array_equal(fw, forward[-7:])
    # measures not asked for come back as 0.0; the price always comes
    one = black.price_one(model, *(c[name][0].item() for name in INPUTS), 1 << CODE["vega"])
    assert one[3] == pytest.approx(v["price"][0], rel=1e-13)
    assert one[6] == pytest.approx(v["vega"][0], rel=1e-13)
    assert [one[4], one[5]] + list(one[7:]) == [0.0] * 8


def test_argument_errors_name_the_argument():
    n = 4
    good = {name: np.full(n, GOOD[name], np.int32 if name == "option_type" else float) for name in INPUTS}
    out, fw, df, st = np.empty((10, n)), np.empty(n), np.empty(n), np.empty(n, np.int32)

    def call(model=BSM, measures=ALL, out=out, fw=fw, df=df, **over):
        args = dict(good, **over)
        return black.price_batch(model, *(args[name] for name in INPUTS), measures, out, fw, df, st, 1)

    assert call() == 0
    for model in (0, 4, -1):
        with pytest.raises(ValueError, match="model"):
            call(model=model)
    for name in INPUTS:
        with pytest.raises(ValueError, match=name):
            call(**{name: good[name][:2]})
    for bad in ([0], [11], [1, 2, -3]):
        with pytest.raises(ValueError, match="measures"):
            call(measures=np.array(bad, np.int32), out=np.empty((len(bad), n)))
    with pytest.raises(ValueError, match="out"):
        call(out=np.empty((9, n)))
    with pytest.raises(ValueError, match="out"):
        call(out=np.empty((10, n + 1)))
    with pytest.raises(ValueError, match="forward_out"):
        call(fw=np.empty(n - 1))
    with pytest.raises(ValueError, match="df_out"):
        call(df=np.empty(n + 1))
    # length 0 skips forward and df; no measures is allowed; an empty batch is a no-op
    assert call(fw=np.empty(0), df=np.empty(0), measures=np.empty(0, np.int32), out=np.empty((0, n))) == 0
    empty = {name: good[name][:0] for name in INPUTS}
    assert black.price_batch(BSM, *(empty[name] for name in INPUTS), ALL, np.empty((10, 0)),
                             np.empty(0), np.empty(0), np.empty(0, np.int32), 2) == 0
    with pytest.raises(ValueError, match="model"):
        black.price_one(4, CALL, 100.0, 1.0, 100.0, 0.0, 0.0, 0.2, 0)
    with pytest.raises(ValueError, match="measures_mask"):
        black.price_one(BSM, CALL, 100.0, 1.0, 100.0, 0.0, 0.0, 0.2, 1 << 11)
    with pytest.raises(ValueError, match="measures_mask"):
        black.price_one(BSM, CALL, 100.0, 1.0, 100.0, 0.0, 0.0, 0.2, 1)


# --------------------------------------------------------------------------- scenario cubes
MOVED = ("time", "underlying", "rate", "dividend", "vol")


def cube_case(rng, n, s, model, sources):
    """n trades (moderate_cases) under s scenarios; each moved input from its source in
    ``sources`` ("trade", "one": a column of 1, "add", "mul", "cell"). Returns the kernel's
    inputs and the same inputs laid out as n s rows."""
    c = moderate_cases(rng, n, model)
    kernel, rows = {}, {}
    for name in MOVED:
        col = c[name]
        how = sources.get(name, "trade")
        if how == "one":
            kernel[name], rows[name] = col[:1].copy(), np.full(n * s, col[0])
        elif how == "trade":
            kernel[name], rows[name] = col, np.repeat(col, s)
        elif how == "add":
            v = rng.normal(0.0, 0.01, s) * (1.0 if name != "underlying" else col.mean())
            kernel[name], rows[name] = ("add", col, v), np.add(col[:, None], v).ravel()
        elif how == "mul":
            v = np.exp(rng.normal(0.0, 0.1, s))
            kernel[name], rows[name] = ("mul", col, v), np.multiply(v, col[:, None]).ravel()
        else:
            cells = np.abs(col[:, None] * rng.uniform(0.9, 1.1, (n, s)))
            kernel[name], rows[name] = cells, cells.ravel()
    base = rng.uniform(0.0, 50.0, n)
    quantity = rng.choice([-3.0, 1.0, 2.5], n)
    return c, kernel, rows, base, quantity


def cube_reference(model, c, rows, base, quantity, n, s):
    """price_batch on the laid-out rows, then (value - base) x quantity in numpy."""
    out, st = np.empty((1, n * s)), np.empty(n * s, np.int32)
    nbad = black.price_batch(model, np.repeat(c["option_type"], s), np.repeat(c["strike"], s),
                             *(rows[name] for name in MOVED), np.array([1], np.int32), out, np.empty(0),
                             np.empty(0), st, 1)
    return (out[0].reshape(n, s) - base[:, None]) * quantity.reshape(-1, 1), nbad


def price_cube(model, c, kernel, base, quantity, n, s, threads=1, one=()):
    pnl = np.full((n, s), -7.0)
    args = {name: (c[name][:1].copy() if name in one else c[name]) for name in ("option_type", "strike")}
    nbad = black.price_cube(model, args["option_type"], args["strike"], *(kernel[name] for name in MOVED), base,
                            quantity[:1].copy() if "quantity" in one else quantity, pnl, threads)
    return pnl, nbad


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("n,s", [(1, 1), (7, 5), (3, 32), (11, 37), (5, 100), (40, 3)])
def test_price_cube_is_price_batch_on_the_laid_out_rows_bit_for_bit(model, n, s):
    """Every source of a moved input, blocks within a trade's scenarios, blocks over several
    trades (s < 32) and a short last block: each cell is price_batch's value on its row,
    and (value - base) x quantity is numpy's, bit for bit."""
    rng = np.random.default_rng(700 + 10 * model + n + s)
    for sources in ({}, {"underlying": "add", "rate": "add", "vol": "add"},
                    {"underlying": "mul", "dividend": "mul", "vol": "mul", "time": "cell"},
                    {"time": "one", "underlying": "cell", "rate": "one", "vol": "cell", "dividend": "add"}):
        c, kernel, rows, base, quantity = cube_case(rng, n, s, model, sources)
        ref, ref_bad = cube_reference(model, c, rows, base, quantity, n, s)
        pnl, nbad = price_cube(model, c, kernel, base, quantity, n, s)
        assert nbad == ref_bad == 0
        np.testing.assert_array_equal(pnl, ref, err_msg=str(sources))


@pytest.mark.parametrize("model", MODELS)
def test_price_cube_cells_are_price_one_and_broadcast_columns_are_tiled(model):
    rng = np.random.default_rng(800 + model)
    n, s = 9, 13
    c, kernel, rows, base, quantity = cube_case(rng, n, s, model, {"underlying": "add", "vol": "mul"})
    pnl, _ = price_cube(model, c, kernel, base, quantity, n, s)
    for t, j in ((0, 0), (4, 7), (n - 1, s - 1)):
        r = t * s + j
        one = black.price_one(model, int(c["option_type"][t]), float(c["strike"][t]),
                              *(float(rows[name][r]) for name in MOVED), 0)
        assert pnl[t, j] == (one[3] - base[t]) * quantity[t]
    # one option type, strike and quantity for every trade: those of trade 0 repeated
    tiled = {**c, "option_type": np.repeat(c["option_type"][:1], n), "strike": np.repeat(c["strike"][:1], n)}
    a, _ = price_cube(model, c, kernel, base, quantity, n, s, one=("option_type", "strike", "quantity"))
    b, _ = price_cube(model, tiled, kernel, base, np.repeat(quantity[:1], n), n, s)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("model", MODELS)
def test_price_cube_failed_cells_are_nan_counted_and_threads_agree(model):
    rng = np.random.default_rng(900 + model)
    n, s = 3 * black.PARALLEL_THRESHOLD // 50 + 1, 50  # past the threshold: two threads split it
    c, kernel, rows, base, quantity = cube_case(rng, n, s, model, {"underlying": "add", "vol": "add"})
    v = kernel["vol"][2].copy()
    v[[3, 17]] = -10.0  # two scenarios whose vol is negative for every trade
    kernel["vol"] = ("add", c["vol"], v)
    rows["vol"] = np.add(c["vol"][:, None], v).ravel()
    ref, ref_bad = cube_reference(model, c, rows, base, quantity, n, s)
    one, bad1 = price_cube(model, c, kernel, base, quantity, n, s, threads=1)
    two, bad2 = price_cube(model, c, kernel, base, quantity, n, s, threads=2)
    assert bad1 == bad2 == ref_bad == 2 * n
    assert np.isnan(one[:, [3, 17]]).all() and np.isfinite(np.delete(one, [3, 17], axis=1)).all()
    np.testing.assert_array_equal(one, ref)
    np.testing.assert_array_equal(two, ref)


def test_price_cube_argument_errors_name_the_argument():
    n, s = 4, 3
    t = np.full(n, 0.5)
    good = dict(option_type=np.full(n, CALL, np.int32), strike=np.full(n, 100.0), time=t, underlying=t * 200,
                rate=t * 0.0, dividend=t * 0.0, vol=t * 0.4, base=np.zeros(n), quantity=np.ones(n),
                pnl=np.empty((n, s)))

    def call(model=BSM, **over):
        a = dict(good, **over)
        return black.price_cube(model, *(a[k] for k in ("option_type", "strike", *MOVED, "base", "quantity", "pnl")),
                                1)

    assert call() == 0
    with pytest.raises(ValueError, match="model"):
        call(model=4)
    with pytest.raises(ValueError, match="pnl"):
        call(pnl=np.empty((n + 1, s)))
    for name in ("option_type", "strike", "quantity"):
        with pytest.raises(ValueError, match=name):
            call(**{name: good[name][:2]})
    for name in MOVED:
        with pytest.raises(ValueError, match=name):
            call(**{name: t[:2]})
        with pytest.raises(ValueError, match=name):
            call(**{name: np.ones((n, s + 1))})
        with pytest.raises(ValueError, match=name):
            call(**{name: ("add", t, np.zeros(s + 1))})
        with pytest.raises(ValueError, match=name):
            call(**{name: ("sub", t, np.zeros(s))})
    # no trades or no scenarios: nothing to price
    assert call(pnl=np.empty((n, 0)), rate=("add", t, np.zeros(0))) == 0
    empty = {k: v[:0] for k, v in good.items()}
    assert black.price_cube(BSM, *(empty[k] for k in ("option_type", "strike", *MOVED, "base", "quantity")),
                            np.empty((0, s)), 2) == 0


def test_threads_and_threshold_are_reported():
    assert black.max_threads() >= 1
    assert isinstance(black.PARALLEL_THRESHOLD, int) and black.PARALLEL_THRESHOLD > 0


def test_out_rows_may_be_views_of_a_wider_array():
    """A chunk writes straight into its slice of the batch's arrays (out[:, a:b])."""
    rng = np.random.default_rng(11)
    n = 300
    k = np.asarray([1, 2, 4], dtype=np.int32)
    args = dict(
        option_type=rng.integers(1, 3, n).astype(np.int32), strike=rng.uniform(50, 150, n),
        time=rng.uniform(0.1, 3, n), underlying=np.full(n, 100.0), rate=np.full(n, 0.02),
        dividend=np.zeros(1), vol=rng.uniform(0.1, 0.5, n),
    )
    whole = np.full((3, n + 50), -7.0)
    status = np.empty(n, np.int32)
    e = np.empty(0)
    black.price_batch(1, *args.values(), k, whole[:, 20:20 + n], e, e, status, 1)
    ref = np.empty((3, n))
    black.price_batch(1, *args.values(), k, ref, e, e, status, 1)
    np.testing.assert_array_equal(whole[:, 20:20 + n], ref)
    assert (whole[:, :20] == -7.0).all() and (whole[:, 20 + n:] == -7.0).all()
    with pytest.raises(ValueError):
        black.price_batch(1, *args.values(), k, np.empty((n, 3)).T, e, e, status, 1)


@pytest.mark.parametrize("model", (BSM, B76))
def test_far_tails_flush_to_zero_and_one(model):
    """Beyond |d| = 37 (pg_norm_cdf_d): N(-|d|) and n(d) are exactly 0 and N(|d|) exactly 1,
    so a short-dated far out-of-the-money option is worth 0 with zero Greeks and a far
    in-the-money one is DF w (F - K) with delta DF dF/dU w (both signs, both option types);
    within |d| <= 37 the values are the erfc/exp ones (continuous, not flushed early)."""
    rows = 4
    k = np.array([50.0, 200.0, 50.0, 200.0])  # |ln(F/K)| ~ 0.7 over sd = 0.001: |d| ~ 700
    c = {"option_type": np.array([CALL, CALL, PUT, PUT], np.int32), "strike": k, "time": np.full(rows, 1e-4),
         "underlying": np.full(rows, 100.0), "rate": np.full(rows, 0.05), "dividend": np.full(rows, 0.02),
         "vol": np.full(rows, 0.1)}
    v, forward, df, status, nbad = run(model, c)
    assert nbad == 0
    w = np.array([1.0, 1.0, -1.0, -1.0])
    itm = w * (forward - k) > 0
    np.testing.assert_array_equal(v["price"], np.where(itm, df * w * (forward - k), 0.0))
    ds = forward / 100.0 if model == BSM else 1.0
    np.testing.assert_array_equal(v["delta"], np.where(itm, df * ds * w, 0.0))
    for name in ("gamma", "vega", "vanna", "volga"):
        np.testing.assert_array_equal(v[name], 0.0, err_msg=name)
    assert np.all(v["price"] >= 0.0)
    # just inside the flush bound the tail is the exp value (Black-76, F = 100, r = 0: vega =
    # 100 n(d1) sqrt(T)), not flushed early
    sd = 0.1 * math.sqrt(0.25)
    for d in (-36.9, -37.0):
        c = {"option_type": np.array([CALL], np.int32), "strike": np.array([100.0 * math.exp(-(d - 0.5 * sd) * sd)]),
             "time": np.array([0.25]), "underlying": np.array([100.0]), "rate": np.array([0.0]),
             "dividend": np.array([0.0]), "vol": np.array([0.1])}
        v, *_ = run(B76, c, measures=np.array([CODE["vega"]], np.int32))
        assert v["vega"][0] > 0.0
        assert v["vega"][0] == pytest.approx(100.0 * 0.5 * math.exp(-0.5 * d * d) / math.sqrt(2 * math.pi), rel=1e-9)
