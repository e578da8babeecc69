"""pricegrid.ext.montecarlo: Monte Carlo prices and Greeks (GBM, Heston) with standard errors.

References and tolerances. A Monte Carlo estimate is checked against an exact value with
|estimate - exact| <= 3 SE + bias, SE the kernel's own standard error; every call has a
fixed seed, so each check is deterministic (it either always passes or always fails); the
seeds were not chosen to make checks pass (the seed is 2024 throughout, others only where
several independent runs are needed). bias is 0 where the scheme is exact in law (GBM
steps, the continuous-barrier crossing probability under GBM, the lookback's bridge
extremes under GBM, geometric averages on the fixing dates) and stated where it is not:

* GBM European prices and all six Greeks against pricegrid.ext.black (exact BSM; Haug
  2007): bias 0 for the price; the Greeks' central differences (delta 1e-3 S, gamma 1e-2 S,
  vega 1e-3, rho 1e-3, theta 1/365) have a truncation error of order h^2 V''' / 6, below
  1e-3 of the Greek on these cases (gamma's is the largest, 7e-4; checked by the same
  differences of the closed form below), so bias = 1e-3 |Greek|.
* Geometric Asian: QuantLib's AnalyticDiscreteGeometricAveragePriceAsianEngine (discrete,
  with past fixings) and AnalyticContinuousGeometricAveragePriceAsianEngine (continuous);
  our own closed form of the discrete case (the lognormal law of the weighted log-average)
  for the Greeks. The continuous average is the trapezoidal rule on a grid of 1/365:
  bias 2e-4 relative (the rule's error on the variance of the log-average, O(dt/T)).
* Arithmetic Asian: QuantLib's MCDiscreteArithmeticAPEngine with its geometric control
  variate, 2^16 samples: |ours - QuantLib| <= 3 sqrt(SE^2 + SE_QL^2).
* Single barriers, continuous monitoring: pricegrid.ext.barrier (Reiner-Rubinstein, Haug
  sec. 4.17.1), all four types, calls and puts, with rebate; the rebate of a knock-out is
  paid at the end of the step in which the crossing falls (max_step = 1/250): bias
  R r max_step. Discrete monitoring at expiry only (interval >= T) against the closed form
  from Black and cash-or-nothing digitals (bias 0); weekly monitoring against the
  Broadie-Glasserman-Kou shift of the barrier by exp(+-0.5826 vol sqrt(dt)) ("A continuity
  correction for discrete barrier options", Math. Finance 7(4), 1997), an approximation:
  bias 0.5% of the price.
* Lookbacks: QuantLib's AnalyticContinuousFloatingLookbackEngine and
  AnalyticContinuousFixedLookbackEngine (Goldman-Sosin-Gatto, Conze-Viswanathan): bias 0.
* Heston European against pricegrid.ext.heston (Lewis formula, 1e-11 accurate), spot 100:
  QE with max_step 1/32, bias 0.01; full truncation Euler with max_step 1/250, bias 0.02.
  Measured on the four cases below with 10^6 paths and the control variate: QE errors
  -0.004, 0.010, 0.008, -0.002 (SE 0.005-0.011), Euler -0.003, 0.010, 0.004, 0.007 (no
  bias detectable at that level; Euler at 1/32 is off by up to 0.065, 7 SE). Greeks against
  central differences of the analytic price with the same bumps (vega = dV/d sqrt(v0)),
  bias 2% of the Greek.
* Identities: in-out parity holds path by path (DI + DO = the European on the same paths,
  1e-12); E[S_T] = forward under QE with the martingale correction.
* Variance reduction and convergence: SE(4N) / SE(N) in [0.45, 0.55]; antithetic, control
  variates and Sobol each reduce the SE by stated factors; the SE is calibrated (z-scores of
  40 independent seeds have a standard deviation in [0.6, 1.4], mean within 0.5).
* Kernel contract: bit-identical results for 1 and 2 threads (rows and path-block
  parallelism), independent of batch position; status bits and NaN rows; setting errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import QuantLib as ql
from scipy.stats import norm, qmc

from pricegrid.ext import barrier as bar
from pricegrid.ext import asian, black, heston, lookback
from pricegrid.ext import montecarlo as mc
from pricegrid.ext import status as pgs

CALL, PUT = pgs.CALL, pgs.PUT
GBM, HESTON = mc.GBM, mc.HESTON
ALL = (1, 2, 3, 4, 5, 6, 7)
SEED = 2024
NAN, INF = math.nan, math.inf

INT_COLUMNS = {"option_type", "averaging", "barrier_type", "strike_type", "fixing_counts", "past_fixings"}
PRODUCT_COLUMNS = {
    "european": (),
    "asian": ("averaging", "fixing_times", "fixing_counts", "running_average", "past_fixings", "elapsed"),
    "barrier": ("barrier_type", "barrier", "rebate", "monitoring_interval"),
    "lookback": ("strike_type", "running_minimum", "running_maximum"),
}
ORDER = {
    "european": ("option_type", "strike", "time", "spot", "rate", "dividend_yield"),
    "asian": ("averaging", "option_type", "strike", "time", "fixing_times", "fixing_counts",
              "running_average", "past_fixings", "elapsed", "spot", "rate", "dividend_yield"),
    "barrier": ("barrier_type", "option_type", "strike", "time", "barrier", "rebate",
                "monitoring_interval", "spot", "rate", "dividend_yield"),
    "lookback": ("strike_type", "option_type", "strike", "time", "running_minimum",
                 "running_maximum", "spot", "rate", "dividend_yield"),
}
MODEL_COLUMNS = ("volatility", "v0", "kappa", "theta", "sigma", "rho")
DEFAULTS = {
    "option_type": CALL, "strike": 100.0, "time": 1.0, "spot": 100.0, "rate": 0.05,
    "dividend_yield": 0.02, "volatility": 0.25, "v0": 0.04, "kappa": 1.5, "theta": 0.04,
    "sigma": 0.5, "rho": -0.7, "averaging": 1, "fixing_times": np.arange(1, 13) / 12.0,
    "fixing_counts": 12, "running_average": 0.0, "past_fixings": 0, "elapsed": 0.0,
    "barrier_type": 2, "barrier": 90.0, "rebate": 0.0, "monitoring_interval": 0.0,
    "strike_type": 1, "running_minimum": 100.0, "running_maximum": 100.0,
}
FUNCTIONS = {"european": mc.european_price_batch, "asian": mc.asian_price_batch,
             "barrier": mc.barrier_price_batch, "lookback": mc.lookback_price_batch}


def run(product, model=GBM, measures=(1,), threads=1, paths=20_000, max_step=1 / 50, seed=SEED,
        antithetic=False, control_variate=False, sobol=False, brownian_bridge=False,
        heston_scheme=1, n=None, beyond_touched=None, **columns):
    """One batch call; columns not given take DEFAULTS (length 1); beyond_touched: the
    barrier entry's keyword, when given. Returns (out, se, status, nbad)."""
    cols = {}
    for name in ORDER[product] + MODEL_COLUMNS:
        value = columns.get(name, DEFAULTS[name])
        dtype = np.int32 if name in INT_COLUMNS else np.float64
        cols[name] = np.ascontiguousarray(np.atleast_1d(np.asarray(value, dtype=dtype)))
    if n is None:
        n = max(len(v) for k, v in cols.items() if k != "fixing_times")
    k = len(measures)
    out, se = np.full((k, n), -7.0), np.full((k, n), -7.0)
    status = np.full(n, -7, dtype=np.int32)
    args = [cols[name] for name in ORDER[product]] + [model] + [cols[name] for name in MODEL_COLUMNS]
    nbad = FUNCTIONS[product](*args, np.asarray(measures, dtype=np.int32), out, se, status, threads,
                              paths, max_step, seed, antithetic, control_variate, sobol,
                              brownian_bridge, heston_scheme,
                              **({} if beyond_touched is None else {"beyond_touched": beyond_touched}))
    return out, se, status, nbad


def within(est, se, ref, bias=0.0, k=3.0):
    """|est - ref| <= k se + bias elementwise, reporting the worst z-score."""
    est, se, ref = (np.asarray(a, float) for a in (est, se, ref))
    bias = np.broadcast_to(np.asarray(bias, float), ref.shape)
    excess = np.abs(est - ref) - bias
    z = excess / np.where(se > 0, se, 1e-300)
    assert (excess <= k * se).all(), f"worst z = {z.max():.2f}: est {est}, ref {ref}, se {se}"


def black_measures(option_type, k, t, s, r, q, vol, measures=ALL):
    n = max(np.size(a) for a in (option_type, k, t, s, r, q, vol))
    a = [np.ascontiguousarray(np.broadcast_to(np.asarray(v, dtype=dt), (n,)))
         for v, dt in ((option_type, np.int32), (k, float), (t, float), (s, float), (r, float), (q, float), (vol, float))]
    out = np.empty((len(measures), n))
    status = np.empty(n, np.int32)
    empty = np.empty(0)
    black.price_batch(pgs.MODEL_BSM, *a, np.asarray(measures, np.int32), out, empty, empty, status, 1)
    assert not status.any()
    return out


@pytest.fixture
def ql_today():
    settings = ql.Settings.instance()
    saved = settings.evaluationDate
    today = ql.Date(15, ql.January, 2025)
    settings.evaluationDate = today
    yield today
    settings.evaluationDate = saved


def ql_process(today, s, r, q, vol):
    dc = ql.Actual365Fixed()
    return ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(s)), ql.YieldTermStructureHandle(ql.FlatForward(today, q, dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, r, dc)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), vol, dc)))


# --------------------------------------------------------------------------- European, GBM
def random_bsm(rng, n):
    return {"option_type": rng.integers(1, 3, n), "strike": 100.0 * np.exp(rng.uniform(-0.3, 0.3, n)),
            "time": rng.uniform(0.1, 2.0, n), "spot": np.full(n, 100.0), "rate": rng.uniform(-0.01, 0.08, n),
            "dividend_yield": rng.uniform(0.0, 0.05, n), "volatility": rng.uniform(0.1, 0.5, n)}


@pytest.mark.parametrize("settings", [{}, {"antithetic": True}, {"control_variate": True},
                                      {"sobol": True}])
def test_european_gbm_price_and_greeks_match_black_scholes(settings):
    c = random_bsm(np.random.default_rng(11), 8)
    out, se, status, nbad = run("european", measures=ALL, paths=50_000, **c, **settings)
    assert nbad == 0 and not status.any()
    ref = black_measures(c["option_type"], c["strike"], c["time"], c["spot"], c["rate"],
                         c["dividend_yield"], c["volatility"])
    within(out, se, ref, bias=1e-3 * np.abs(ref))
    assert (se[0] > 0).all()


def test_greek_bumps_truncation_error_is_negligible():
    """The central differences used inside the kernel, taken of the closed form: within 1e-3."""
    c = random_bsm(np.random.default_rng(11), 8)
    args = [c[k] for k in ("option_type", "strike", "time", "spot", "rate", "dividend_yield", "volatility")]
    ref = black_measures(*args)
    b = mc.BUMPS
    price = lambda **kw: black_measures(*[kw.get(name, a) for name, a in zip(  # noqa: E731
        ("option_type", "strike", "time", "spot", "rate", "dividend_yield", "volatility"), args)], measures=(1,))[0]
    s, t = c["spot"], c["time"]
    hd, hg = b["delta_relative_spot"] * s, b["gamma_relative_spot"] * s
    fd = {
        2: (price(spot=s + hd) - price(spot=s - hd)) / (2 * hd),
        3: (price(spot=s + hg) - 2 * price() + price(spot=s - hg)) / hg**2,
        4: (price(volatility=c["volatility"] + b["vol"]) - price(volatility=c["volatility"] - b["vol"])) / (2 * b["vol"]),
        5: (price(time=t - b["time_max"]) - price(time=t + b["time_max"])) / (2 * b["time_max"]),
        6: (price(rate=c["rate"] + b["rate"]) - price(rate=c["rate"] - b["rate"])) / (2 * b["rate"]),
        7: (price(dividend_yield=c["dividend_yield"] + b["rate"]) - price(dividend_yield=c["dividend_yield"] - b["rate"])) / (2 * b["rate"]),
    }
    for code, value in fd.items():
        np.testing.assert_allclose(value, ref[code - 1], rtol=1e-3, atol=1e-9)


def test_heston_martingale_forward_is_exact_under_qe():
    """E[S_T] = S e^{(r-q)T}: a call struck at 1e-9 is the discounted forward. High vol of
    vol (sigma 1.2 > 2 kappa theta: QE's exponential branch, the martingale correction)."""
    out, se, status, _ = run("european", model=HESTON, strike=1e-9, paths=40_000, max_step=0.25,
                             v0=0.09, kappa=0.5, theta=0.09, sigma=1.2, rho=-0.8, time=2.0)
    assert not status.any()
    within(out[0], se[0], 100.0 * math.exp(-0.02 * 2.0))


# --------------------------------------------------------------------------- Heston European
HESTON_CASES = {"option_type": [1, 2, 1, 2], "strike": [90.0, 100.0, 110.0, 120.0],
                "time": [0.5, 1.0, 1.5, 1.0], "v0": [0.04, 0.09, 0.02, 0.06],
                "kappa": [1.5, 2.0, 0.8, 3.0], "theta": [0.04, 0.06, 0.05, 0.03],
                "sigma": [0.5, 0.8, 0.3, 1.0], "rho": [-0.7, -0.5, -0.3, -0.9]}


def heston_ref(c, measures=(1,), **bump):
    """pricegrid.ext.heston (analytic): measures x rows, or the price row for measures=(1,)."""
    cols = {"option_type": c["option_type"], "strike": c["strike"], "time": c["time"], "spot": 100.0,
            "rate": 0.05, "dividend_yield": 0.02, **{k: c[k] for k in ("v0", "kappa", "theta", "sigma", "rho")}}
    cols.update(bump)
    n = len(c["strike"])
    args = [np.ascontiguousarray(np.broadcast_to(np.asarray(cols[k], dtype=np.int32 if k == "option_type" else float), (n,)))
            for k in ("option_type", "strike", "time", "spot", "rate", "dividend_yield", "v0", "kappa", "theta", "sigma", "rho")]
    out, status = np.empty((len(measures), n)), np.empty(n, np.int32)
    heston.price_batch(*args, np.asarray(measures, np.int32), out, status, 1)
    assert not status.any()
    return out[0] if len(measures) == 1 else out


@pytest.mark.parametrize("scheme, max_step, bias, settings", [
    (mc.QE, 1 / 32, 0.01, {}), (mc.FULL_TRUNCATION_EULER, 1 / 250, 0.02, {}),
    (mc.QE, 1 / 32, 0.01, {"sobol": True, "brownian_bridge": True})])
def test_heston_european_matches_analytic(scheme, max_step, bias, settings):
    out, se, status, _ = run("european", model=HESTON, measures=(1,), paths=40_000, max_step=max_step,
                             heston_scheme=scheme, control_variate=True, **HESTON_CASES, **settings)
    assert not status.any()
    within(out[0], se[0], heston_ref(HESTON_CASES), bias=bias)


def test_heston_greeks_match_differences_of_the_analytic_price():
    c = HESTON_CASES
    out, se, status, _ = run("european", model=HESTON, measures=ALL, paths=40_000, max_step=1 / 32,
                             control_variate=True, **c)
    assert not status.any()
    b, s = mc.BUMPS, 100.0
    hd, hg, hv, hr, ht = b["delta_relative_spot"] * s, b["gamma_relative_spot"] * s, b["vol"], b["rate"], b["time_max"]
    sv = np.sqrt(c["v0"])
    t = np.asarray(c["time"])
    ref = np.array([
        heston_ref(c),
        (heston_ref(c, spot=s + hd) - heston_ref(c, spot=s - hd)) / (2 * hd),
        (heston_ref(c, spot=s + hg) - 2 * heston_ref(c) + heston_ref(c, spot=s - hg)) / hg**2,
        (heston_ref(c, v0=(sv + hv) ** 2) - heston_ref(c, v0=(sv - hv) ** 2)) / (2 * hv),
        (heston_ref(c, time=t - ht) - heston_ref(c, time=t + ht)) / (2 * ht),
        (heston_ref(c, rate=0.05 + hr) - heston_ref(c, rate=0.05 - hr)) / (2 * hr),
        (heston_ref(c, dividend_yield=0.02 + hr) - heston_ref(c, dividend_yield=0.02 - hr)) / (2 * hr),
    ])
    # QE discretisation bias (max_step 1/32), per measure: price 0.01 as above, derivatives
    # 2% of the value
    within(out, se, ref, bias=np.vstack([np.full(4, 0.01), 0.02 * np.abs(ref[1:])]))
    # the bumps' truncation error against the analytic Greeks (vega = dV/d sqrt(v0) there too)
    np.testing.assert_allclose(ref, heston_ref(c, measures=ALL), rtol=2e-3, atol=1e-6)


# --------------------------------------------------------------------------- Asian
def geometric_closed_form(w, k, s, r, q, vol, t_fix, T, running=1.0, past=0):
    """E e^{-rT} (w (G - K))^+ for ln G = (past ln running + sum ln S(t_i)) / N, t_i > 0."""
    t_fix = np.asarray(t_fix, float)
    n = past + len(t_fix)
    mean = (past * math.log(running) + np.sum(math.log(s) + (r - q - 0.5 * vol**2) * t_fix)) / n
    var = vol**2 * np.sum(np.minimum.outer(t_fix, t_fix)) / n**2
    f, sd = math.exp(mean + 0.5 * var), math.sqrt(var)
    d1 = math.log(f / k) / sd + 0.5 * sd
    return math.exp(-r * T) * w * (f * norm.cdf(w * d1) - k * norm.cdf(w * (d1 - sd)))


def test_geometric_asian_matches_quantlib_discrete_engine(ql_today):
    days = np.array([30, 61, 91, 122, 152, 183, 213, 244, 274, 305, 335, 365])
    t_fix = days / 365.0
    out, se, status, _ = run("asian", averaging=2, option_type=[1, 2], fixing_times=t_fix, fixing_counts=12,
                             time=1.0, volatility=0.3, paths=50_000)
    assert not status.any()
    proc = ql_process(ql_today, 100.0, 0.05, 0.02, 0.3)
    ref = []
    for kind in (ql.Option.Call, ql.Option.Put):
        option = ql.DiscreteAveragingAsianOption(
            ql.Average.Geometric, 1.0, 0, [ql_today + int(d) for d in days], ql.PlainVanillaPayoff(kind, 100.0),
            ql.EuropeanExercise(ql_today + 365))
        option.setPricingEngine(ql.AnalyticDiscreteGeometricAveragePriceAsianEngine(proc))
        ref.append(option.NPV())
    np.testing.assert_allclose(ref, [geometric_closed_form(w, 100.0, 100.0, 0.05, 0.02, 0.3, t_fix, 1.0)
                                     for w in (1, -1)], rtol=1e-12)
    within(out[0], se[0], ref)


def test_geometric_asian_with_past_fixings_and_greeks_match_closed_form():
    """Seasoned: 4 of 10 fixings past at a running geometric average of 104; expiry after
    the last fixing. Greeks against the same central differences of the closed form."""
    t_fix = np.linspace(0.1, 0.6, 6)
    kw = dict(averaging=2, option_type=[1, 2], fixing_times=t_fix, fixing_counts=6, running_average=104.0,
              past_fixings=4, time=0.75, strike=102.0, volatility=0.3)
    out, se, status, _ = run("asian", measures=ALL, paths=40_000, **kw)
    assert not status.any()
    b = mc.BUMPS

    def v(w, s=100.0, r=0.05, q=0.02, vol=0.3, shift=0.0):
        return geometric_closed_form(w, 102.0, s, r, q, vol, t_fix + shift, 0.75 + shift, 104.0, 4)

    hd, hg, ht = 100 * b["delta_relative_spot"], 100 * b["gamma_relative_spot"], min(b["time_max"], 0.05)
    ref = np.array([[v(w), (v(w, s=100 + hd) - v(w, s=100 - hd)) / (2 * hd),
                     (v(w, s=100 + hg) - 2 * v(w) + v(w, s=100 - hg)) / hg**2,
                     (v(w, vol=0.3 + b["vol"]) - v(w, vol=0.3 - b["vol"])) / (2 * b["vol"]),
                     (v(w, shift=-ht) - v(w, shift=ht)) / (2 * ht),
                     (v(w, r=0.05 + b["rate"]) - v(w, r=0.05 - b["rate"])) / (2 * b["rate"]),
                     (v(w, q=0.02 + b["rate"]) - v(w, q=0.02 - b["rate"])) / (2 * b["rate"])]
                    for w in (1, -1)]).T
    within(out, se, ref)


def test_continuous_geometric_asian_matches_quantlib_engine(ql_today):
    out, se, status, _ = run("asian", averaging=2, option_type=[1, 2], fixing_times=np.empty(0),
                             fixing_counts=0, time=1.0, volatility=0.3, paths=50_000, max_step=1 / 365)
    assert not status.any()
    proc = ql_process(ql_today, 100.0, 0.05, 0.02, 0.3)
    ref = []
    for kind in (ql.Option.Call, ql.Option.Put):
        option = ql.ContinuousAveragingAsianOption(ql.Average.Geometric, ql.PlainVanillaPayoff(kind, 100.0),
                                                   ql.EuropeanExercise(ql_today + 365))
        option.setPricingEngine(ql.AnalyticContinuousGeometricAveragePriceAsianEngine(proc))
        ref.append(option.NPV())
    within(out[0], se[0], ref, bias=2e-4 * np.abs(ref))


def test_continuous_geometric_asian_with_elapsed_time_matches_closed_form():
    """ln G = (e ln A + int_0^T ln S dt) / (e + T): Gaussian with mean
    (e ln A + T ln S + (r - q - vol^2/2) T^2/2) / (e + T) and variance vol^2 T^3 / (3 (e + T)^2)."""
    e, a, T, s, k, r, q, vol = 0.5, 95.0, 0.5, 100.0, 98.0, 0.05, 0.02, 0.3
    out, se, status, _ = run("asian", averaging=2, option_type=[1, 2], fixing_times=np.empty(0), fixing_counts=0,
                             running_average=a, elapsed=e, time=T, strike=k, volatility=vol, paths=40_000,
                             max_step=1 / 365)
    assert not status.any()
    mean = (e * math.log(a) + T * math.log(s) + (r - q - 0.5 * vol**2) * T**2 / 2) / (e + T)
    sd = vol * math.sqrt(T**3 / 3) / (e + T)
    f = math.exp(mean + 0.5 * sd**2)
    d1 = math.log(f / k) / sd + 0.5 * sd
    ref = [math.exp(-r * T) * w * (f * norm.cdf(w * d1) - k * norm.cdf(w * (d1 - sd))) for w in (1, -1)]
    within(out[0], se[0], ref, bias=2e-4 * np.abs(ref))


@pytest.mark.parametrize("past", [0, 3])
def test_arithmetic_asian_matches_quantlib_monte_carlo_engine(ql_today, past):
    days = np.array([30, 61, 91, 122, 152, 183, 213, 244, 274, 305, 335, 365])
    running = 97.0
    out, se, status, _ = run("asian", option_type=[1, 2], fixing_times=days / 365.0, fixing_counts=12,
                             running_average=running, past_fixings=past, volatility=0.3, paths=50_000,
                             control_variate=True)
    assert not status.any()
    proc = ql_process(ql_today, 100.0, 0.05, 0.02, 0.3)
    for i, kind in enumerate((ql.Option.Call, ql.Option.Put)):
        option = ql.DiscreteAveragingAsianOption(
            ql.Average.Arithmetic, running * past, past, [ql_today + int(d) for d in days],
            ql.PlainVanillaPayoff(kind, 100.0), ql.EuropeanExercise(ql_today + 365))
        option.setPricingEngine(ql.MCDiscreteArithmeticAPEngine(
            proc, "pseudorandom", requiredSamples=2**16, controlVariate=True, seed=42))
        ref, ref_se = option.NPV(), option.errorEstimate()
        assert abs(out[0, i] - ref) <= 3.0 * math.hypot(se[0, i], ref_se), (out[0, i], se[0, i], ref, ref_se)


def test_heston_asian_control_variate_is_unbiased():
    """Under Heston the geometric control lives on the shadow GBM path: with and without the
    control the estimates agree, and the control helps (less than under GBM: the shadow's
    volatility is deterministic; measured SE ratio 0.58)."""
    kw = dict(model=HESTON, fixing_times=np.arange(1, 13) / 12.0, fixing_counts=12, paths=40_000, max_step=1 / 24)
    a, sa, st1, _ = run("asian", **kw)
    b, sb, st2, _ = run("asian", control_variate=True, **kw)
    assert not st1.any() and not st2.any()
    # the same paths: the difference is b's regression correction, whose error is below sa
    assert abs(a[0, 0] - b[0, 0]) <= 3.0 * sa[0, 0]
    assert sb[0, 0] < 0.7 * sa[0, 0]


# --------------------------------------------------------------------------- barriers
_PRICE = np.array([1], np.int32)


def _analytic_barrier(btype, option_type, strike, t, s, r, q, vol, h, rebate, out, status, threads):
    """Prices of pricegrid.ext.barrier's continuously monitored single barriers (one type)."""
    bt = np.array([btype], np.int32)
    return bar.barrier_price_batch(bt, option_type, strike, t, h, rebate, np.zeros(1), s, r, q, vol, _PRICE,
                                   out.reshape(1, -1), status, threads)


def _analytic_digital(payoff, option_type, strike, t, s, r, q, vol, cash, out, status, threads):
    """Prices of pricegrid.ext.barrier's European digitals (one payoff)."""
    pay = np.array([payoff], np.int32)
    return bar.digital_price_batch(pay, option_type, strike, t, cash, np.zeros(1), s, r, q, vol, _PRICE,
                                   out.reshape(1, -1), status, threads)


@pytest.mark.parametrize("btype, h", [(1, 90.0), (2, 90.0), (3, 112.0), (4, 112.0)])
def test_continuous_barrier_matches_analytic(btype, h):
    out, se, status, _ = run("barrier", barrier_type=btype, barrier=h, rebate=3.0, option_type=[1, 2],
                             strike=[95.0, 105.0], paths=40_000, max_step=1 / 250, control_variate=True)
    assert not status.any()
    ref, st = np.empty(2), np.empty(2, np.int32)
    a = lambda v: np.ascontiguousarray(v, dtype=float)  # noqa: E731
    _analytic_barrier(btype, np.array([1, 2], np.int32), a([95.0, 105.0]), a([1.0]), a([100.0]), a([0.05]),
                            a([0.02]), a([0.25]), a([h]), a([3.0]), ref, st, 1)
    out_only = btype in (2, 4)
    within(out[0], se[0], ref, bias=3.0 * 0.05 / 250 if out_only else 0.0)


@pytest.mark.parametrize("h", [85.0, 99.5])
def test_barrier_greeks_match_differences_of_the_analytic_price(h):
    """Down-and-out call (K 95, no rebate): all Greeks against the kernel's bumps of the
    Reiner-Rubinstein price (pricegrid.ext.barrier). H 85: central differences; H 99.5,
    within the gamma bump of spot: one-sided differences upwards (design note 8)."""
    def v(s=100.0, t=1.0, r=0.05, q=0.02, vol=0.25):
        out, st = np.empty(1), np.empty(1, np.int32)
        a = lambda x: np.array([x], float)  # noqa: E731
        _analytic_barrier(2, np.array([1], np.int32), a(95.0), a(t), a(s), a(r), a(q), a(vol), a(h),
                                a(0.0), out, st, 1)
        return out[0]

    b = mc.BUMPS
    hd, hg, ht = 100 * b["delta_relative_spot"], 100 * b["gamma_relative_spot"], b["time_max"]
    if h < 99.0:
        delta = (v(s=100 + hd) - v(s=100 - hd)) / (2 * hd)
        gamma = (v(s=100 + hg) - 2 * v() + v(s=100 - hg)) / hg**2
    else:
        delta = (-3 * v() + 4 * v(s=100 + hd) - v(s=100 + 2 * hd)) / (2 * hd)
        gamma = (2 * v() - 5 * v(s=100 + hg) + 4 * v(s=100 + 2 * hg) - v(s=100 + 3 * hg)) / hg**2
    ref = [v(), delta, gamma,
           (v(vol=0.25 + b["vol"]) - v(vol=0.25 - b["vol"])) / (2 * b["vol"]), (v(t=1 - ht) - v(t=1 + ht)) / (2 * ht),
           (v(r=0.05 + b["rate"]) - v(r=0.05 - b["rate"])) / (2 * b["rate"]),
           (v(q=0.02 + b["rate"]) - v(q=0.02 - b["rate"])) / (2 * b["rate"])]
    out, se, status, _ = run("barrier", measures=ALL, barrier_type=2, barrier=h, strike=95.0, paths=40_000,
                             max_step=1 / 250, control_variate=True)
    assert not status.any()
    within(out[:, 0], se[:, 0], ref)


def test_barrier_monitored_only_at_expiry_matches_closed_form():
    """Interval >= T: one monitoring date, expiry. Down-and-out put (K 100, H 90, rebate 2,
    paid at the hit = at expiry): P(K) - P(H) - (K - H) CoN_put(H) + R CoN_put(H)."""
    out, se, status, _ = run("barrier", barrier_type=2, option_type=2, barrier=90.0, rebate=2.0,
                             monitoring_interval=[1.0, 5.0], paths=40_000, n=2)
    assert not status.any()
    a = lambda x: np.array([x], float)  # noqa: E731
    p = black_measures(2, [100.0, 90.0], 1.0, 100.0, 0.05, 0.02, 0.25, measures=(1,))[0]
    con, st = np.empty(1), np.empty(1, np.int32)
    _analytic_digital(1, np.array([2], np.int32), a(90.0), a(1.0), a(100.0), a(0.05), a(0.02), a(0.25), a(1.0),
                            con, st, 1)
    ref = p[0] - p[1] - 10.0 * con[0] + 2.0 * con[0]
    within(out[0], se[0], [ref, ref])
    assert out[0, 0] == out[0, 1]  # the same single date, the same paths


def test_weekly_barrier_matches_broadie_glasserman_kou():
    out, se, status, _ = run("barrier", barrier_type=[2, 4], barrier=[90.0, 115.0], option_type=[1, 2],
                             monitoring_interval=1 / 52, paths=40_000, control_variate=True)
    assert not status.any()
    shift = math.exp(0.5826 * 0.25 * math.sqrt(1 / 52))
    ref, st = np.empty(1), np.empty(1, np.int32)
    a = lambda x: np.array([x], float)  # noqa: E731
    refs = []
    for btype, h, ot in ((2, 90.0 / shift, 1), (4, 115.0 * shift, 2)):
        _analytic_barrier(btype, np.array([ot], np.int32), a(100.0), a(1.0), a(100.0), a(0.05), a(0.02),
                                a(0.25), a(h), a(0.0), ref, st, 1)
        refs.append(ref[0])
    within(out[0], se[0], refs, bias=0.005 * np.abs(refs))


@pytest.mark.parametrize("model", [GBM, HESTON])
def test_in_out_parity_holds_path_by_path(model):
    kw = dict(model=model, option_type=[1, 2], strike=[95.0, 105.0], barrier=90.0, paths=8_192, max_step=1 / 64)
    di, _, s1, _ = run("barrier", barrier_type=1, **kw)
    do, _, s2, _ = run("barrier", barrier_type=2, **kw)
    eu, eu_se, s3, _ = run("european", **{k: v for k, v in kw.items() if k != "barrier"})
    assert not (s1.any() or s2.any() or s3.any())
    if model == HESTON:   # same grid and dimensions: the same paths as the European
        np.testing.assert_allclose(di[0] + do[0], eu[0], rtol=1e-12)
    else:                 # the European is one exact step: other normals
        within(di[0] + do[0], eu_se[0] * math.sqrt(2), eu[0])


# --------------------------------------------------------------------------- lookbacks
@pytest.mark.parametrize("strike_type", [1, 2])
def test_lookback_matches_quantlib_analytic_engines(ql_today, strike_type):
    """Seasoned: running minimum 95, maximum 108 (spot 100). QuantLib's floating engine takes
    the minimum (call) or maximum (put) as its 'minmax'; the fixed engine likewise."""
    proc = ql_process(ql_today, 100.0, 0.05, 0.02, 0.25)
    ex = ql.EuropeanExercise(ql_today + 365)
    ref = []
    for kind, minmax in ((ql.Option.Call, 95.0), (ql.Option.Put, 108.0)):
        if strike_type == 1:
            option = ql.ContinuousFloatingLookbackOption(minmax, ql.FloatingTypePayoff(kind), ex)
            option.setPricingEngine(ql.AnalyticContinuousFloatingLookbackEngine(proc))
        else:
            minmax = 108.0 if kind == ql.Option.Call else 95.0
            option = ql.ContinuousFixedLookbackOption(minmax, ql.PlainVanillaPayoff(kind, 100.0), ex)
            option.setPricingEngine(ql.AnalyticContinuousFixedLookbackEngine(proc))
        ref.append(option.NPV())
    out, se, status, _ = run("lookback", strike_type=strike_type, option_type=[1, 2], running_minimum=95.0,
                             running_maximum=108.0, paths=40_000, max_step=1 / 4)
    assert not status.any()
    within(out[0], se[0], ref)


def asian_analytic(measures=ALL, **kw):
    """pricegrid.ext.asian (geometric closed forms) on the run() column conventions."""
    cols = {name: kw.get(name, DEFAULTS[name]) for name in ORDER["asian"] + ("volatility",)}
    n = max(np.size(v) for k, v in cols.items() if k != "fixing_times")
    arrays = [np.ascontiguousarray(np.atleast_1d(np.asarray(cols[name], dtype=np.int32 if name in INT_COLUMNS else float)))
              for name in ORDER["asian"] + ("volatility",)]
    out, status = np.empty((len(measures), n)), np.empty(n, np.int32)
    asian.asian_price_batch(*arrays, np.asarray(measures, np.int32), out, status, 1)
    assert not status.any()
    return out


@pytest.mark.parametrize("case", [
    dict(fixing_times=np.linspace(0.1, 0.6, 6), fixing_counts=6, running_average=104.0, past_fixings=4,
         time=0.75, strike=102.0),
    dict(fixing_times=np.empty(0), fixing_counts=0, running_average=97.0, elapsed=0.25, time=0.5),
    dict(fixing_times=np.empty(0), fixing_counts=0, time=1.0),
])
def test_geometric_asian_greeks_match_the_analytic_kernel(case):
    """Price and all six Greeks of seasoned and new geometric Asians against
    pricegrid.ext.asian (exact Greeks, theta with the averaging window fixed in calendar
    time): 3 SE plus the bumps' truncation (1e-3 relative) and, for continuous averaging,
    the trapezoidal rule's 2e-4 (max_step 1/365)."""
    kw = dict(averaging=2, option_type=[1, 2], volatility=0.3, **case)
    out, se, status, _ = run("asian", measures=ALL, paths=40_000, max_step=1 / 365, **kw)
    assert not status.any()
    ref = asian_analytic(**kw)
    within(out, se, ref, bias=1.2e-3 * np.abs(ref) + 1e-6)


@pytest.mark.parametrize("strike_type", [1, 2])
def test_lookback_greeks_match_the_analytic_kernel(strike_type):
    """New trades (running extremes = spot) and a seasoned one, calls and puts: price and all
    six Greeks against pricegrid.ext.lookback (analytic, the extremum held fixed). At
    S = M the kernel differentiates one-sidedly away from M (central differences would move
    the maximum with spot and give half the gamma). Bias: the bumps' truncation, 2e-3
    relative."""
    cols = dict(strike_type=strike_type, option_type=[1, 2, 1, 2], strike=[100.0, 100.0, 95.0, 105.0],
                running_minimum=[100.0, 100.0, 92.0, 92.0], running_maximum=[100.0, 100.0, 109.0, 109.0])
    out, se, status, _ = run("lookback", measures=ALL, paths=40_000, max_step=1 / 8, **cols)
    assert not status.any()
    names = ORDER["lookback"] + ("volatility",)
    merged = {name: cols.get(name, DEFAULTS[name]) for name in names}
    arrays = [np.ascontiguousarray(np.broadcast_to(np.asarray(merged[name], dtype=np.int32 if name in INT_COLUMNS else float), (4,)))
              for name in names]
    ref, st = np.empty((7, 4)), np.empty(4, np.int32)
    lookback.lookback_price_batch(*arrays, np.asarray(ALL, np.int32), ref, st, 1)
    assert not st.any()
    within(out, se, ref, bias=2e-3 * np.abs(ref) + 1e-6)


# --------------------------------------------------------------------------- estimator behaviour
def test_standard_error_falls_like_one_over_sqrt_paths():
    a = run("asian", paths=16_384)[1][0, 0]
    b = run("asian", paths=65_536)[1][0, 0]
    assert 0.45 <= b / a <= 0.55


def test_standard_error_is_calibrated():
    """40 seeds: the z-scores (estimate - exact) / SE of a BSM call have mean ~ 0, sd ~ 1,
    for plain, antithetic, control-variate and Sobol estimates."""
    ref = black_measures(1, 100.0, 1.0, 100.0, 0.05, 0.02, 0.25, measures=(1,))[0, 0]
    for settings in ({}, {"antithetic": True}, {"control_variate": True}, {"sobol": True}):
        z = []
        for seed in range(40):
            out, se, _, _ = run("european", paths=2_048, seed=seed, **settings)
            z.append((out[0, 0] - ref) / se[0, 0])
        z = np.array(z)
        assert abs(z.mean()) <= 0.5 and 0.6 <= z.std(ddof=1) <= 1.4, (settings, z.mean(), z.std(ddof=1))


def test_variance_reduction_at_equal_paths():
    base = dict(paths=32_768, option_type=[1, 2])
    plain = run("asian", **base)[1][0]
    assert (run("asian", antithetic=True, **base)[1][0] < 0.8 * plain).all()
    assert (run("asian", control_variate=True, **base)[1][0] < 0.1 * plain).all()
    eu = run("european", **base)[1][0]
    assert (run("european", antithetic=True, **base)[1][0] < 0.9 * eu).all()
    assert (run("european", control_variate=True, **base)[1][0] < 0.8 * eu).all()


def test_sobol_error_is_smaller_than_pseudo_random():
    """At equal paths the Sobol estimate's SE (from 16 randomisations) is far smaller, and
    so is its actual error against the exact price (European: Black; geometric Asian:
    closed form), with and without the Brownian bridge."""
    ref_eu = black_measures([1, 2], 100.0, 1.0, 100.0, 0.05, 0.02, 0.25, measures=(1,))[0]
    t_fix = np.arange(1, 13) / 12.0
    ref_as = [geometric_closed_form(w, 100.0, 100.0, 0.05, 0.02, 0.25, t_fix, 1.0) for w in (1, -1)]
    for product, ref, kw in (("european", ref_eu, {}), ("asian", ref_as, {"averaging": 2})):
        pr, pr_se, _, _ = run(product, paths=32_768, option_type=[1, 2], **kw)
        for bridge in (False, True):
            qm, qm_se, _, _ = run(product, paths=32_768, option_type=[1, 2], sobol=True, brownian_bridge=bridge, **kw)
            assert (qm_se[0] < 0.3 * pr_se[0]).all(), (product, bridge, qm_se, pr_se)
            within(qm[0], qm_se[0], ref)
            assert np.abs(qm[0] - ref).max() < 3 * pr_se[0].min()
    bb = run("asian", paths=32_768, averaging=2, sobol=True, brownian_bridge=True)[1][0, 0]
    nobb = run("asian", paths=32_768, averaging=2, sobol=True)[1][0, 0]
    assert bb < nobb


def test_sobol_direction_numbers_reproduce_scipy_points():
    v = mc.sobol_direction_numbers(40, 10).astype(np.uint64)[:10, :40]
    ref = qmc.Sobol(40, scramble=False, bits=32).random(1024)
    for i in (1, 2, 3, 100, 511, 1023):
        g = i ^ (i >> 1)
        x = np.zeros(40, np.uint64)
        for b in range(10):
            if g >> b & 1:
                x ^= v[b]
        np.testing.assert_array_equal(x / 2.0**32, ref[i])


# --------------------------------------------------------------------------- kernel contract
def test_reproducible_by_seed():
    a = run("barrier", measures=ALL, paths=4_096, seed=7)
    b = run("barrier", measures=ALL, paths=4_096, seed=7)
    c = run("barrier", measures=ALL, paths=4_096, seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert (a[0] != c[0]).all()
    d = run("barrier", measures=ALL, paths=4_096, seed=2**64 - 1)
    assert not d[2].any()


@pytest.mark.parametrize("product, model, settings", [
    ("european", GBM, {}), ("asian", GBM, {"sobol": True, "brownian_bridge": True, "antithetic": True}),
    ("barrier", HESTON, {"control_variate": True}), ("lookback", HESTON, {"sobol": True})])
def test_threads_and_batch_position_do_not_change_results(product, model, settings):
    """n = 1 with many path blocks (blocks in parallel) and n = 10 (rows in parallel), 1 and
    2 threads: bitwise identical; a row alone equals the same row inside a batch."""
    strikes = np.linspace(90.0, 115.0, 10)
    kw = dict(model=model, measures=(1, 2, 5), max_step=1 / 16, **settings)
    one = [run(product, threads=t, paths=40_000, strike=strikes[2:3], **kw) for t in (1, 2)]
    np.testing.assert_array_equal(one[0][0], one[1][0])
    np.testing.assert_array_equal(one[0][1], one[1][1])
    many = [run(product, threads=t, paths=40_000, strike=strikes, **kw) for t in (1, 2)]
    np.testing.assert_array_equal(many[0][0], many[1][0])
    np.testing.assert_array_equal(many[0][1], many[1][1])
    np.testing.assert_array_equal(many[0][0][:, 2], one[0][0][:, 0])


def test_more_units_than_one_parallel_batch():
    """2.3 million paths of one row: 1,124 blocks, more than the 1,024 computed in parallel
    before folding; 1 and 2 threads agree bitwise and the estimate is right."""
    a = run("european", paths=2_300_000, threads=1)
    b = run("european", paths=2_300_000, threads=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    ref = black_measures(1, 100.0, 1.0, 100.0, 0.05, 0.02, 0.25, measures=(1,))[0]
    within(a[0][0], a[1][0], ref)


def test_broadcast_equals_tiled():
    a = run("barrier", option_type=[1, 2, 1], strike=100.0, barrier=[85.0, 85.0, 80.0], paths=2_048)
    b = run("barrier", option_type=[1, 2, 1], strike=[100.0] * 3, barrier=[85.0, 85.0, 80.0], paths=2_048,
            spot=[100.0] * 3, volatility=[0.25] * 3)
    np.testing.assert_array_equal(a[0], b[0])


def test_expiry_values():
    out, se, status, _ = run("european", measures=ALL, time=0.0, option_type=[1, 1, 2, 2],
                             strike=[90.0, 100.0, 110.0, 100.0])
    assert not status.any()
    np.testing.assert_array_equal(out[0], [10.0, 0.0, 10.0, 0.0])
    np.testing.assert_array_equal(out[1], [1.0, 0.5, -1.0, -0.5])
    assert not out[2:].any() and not se.any()
    out, _, status, _ = run("barrier", time=0.0, barrier_type=[1, 2], rebate=3.0, strike=95.0)
    np.testing.assert_array_equal(out[0], [3.0, 5.0])
    out, _, status, _ = run("asian", time=0.0, fixing_times=np.empty(0), fixing_counts=0, elapsed=0.5,
                            running_average=104.0)
    np.testing.assert_array_equal(out[0], [4.0])


GOOD_TIMES = np.array([0.25, 0.5, 1.0])
BAD_COMMON = [
    ("option_type", 0, pgs.BAD_OPTION_TYPE), ("option_type", 3, pgs.BAD_OPTION_TYPE),
    ("strike", 0.0, pgs.BAD_STRIKE), ("strike", NAN, pgs.BAD_STRIKE),
    ("time", -0.1, pgs.BAD_TIME), ("time", INF, pgs.BAD_TIME),
    ("spot", 0.0, pgs.BAD_UNDERLYING), ("spot", NAN, pgs.BAD_UNDERLYING),
    ("rate", NAN, pgs.BAD_RATE), ("dividend_yield", INF, pgs.BAD_DIVIDEND),
    ("volatility", 0.0, pgs.BAD_VOL), ("volatility", NAN, pgs.BAD_VOL),
]
BAD_HESTON = [
    ("v0", -1e-12, pgs.BAD_HESTON_V0), ("v0", NAN, pgs.BAD_HESTON_V0), ("kappa", 0.0, pgs.BAD_HESTON_KAPPA),
    ("theta", -1.0, pgs.BAD_HESTON_THETA), ("sigma", 0.0, pgs.BAD_HESTON_SIGMA),
    ("rho", 1.0, pgs.BAD_HESTON_RHO), ("rho", NAN, pgs.BAD_HESTON_RHO), ("v0", 0.0, pgs.OK),
]
BAD_PRODUCT = [
    ("asian", "averaging", 3, pgs.BAD_VARIANT),
    ("asian", "running_average", -1.0, pgs.BAD_RUNNING),    # with past fixings
    ("asian", "running_average", 0.0, pgs.OK),              # arithmetic: 0 is a valid average
    ("asian", "past_fixings", -1, pgs.BAD_PAST_FIXINGS),
    ("barrier", "barrier_type", 5, pgs.BAD_VARIANT),
    ("barrier", "barrier", 100.0, pgs.OK),                   # spot on the barrier: touched
    ("barrier", "barrier", 105.0, pgs.BAD_BARRIER),          # down barrier above spot
    ("barrier", "barrier", NAN, pgs.BAD_BARRIER),
    ("barrier", "rebate", -1.0, pgs.BAD_REBATE),
    ("barrier", "monitoring_interval", -0.1, pgs.BAD_MONITORING),
    ("barrier", "monitoring_interval", NAN, pgs.BAD_MONITORING),
    ("lookback", "strike_type", 0, pgs.BAD_VARIANT),
    ("lookback", "running_minimum", 101.0, pgs.BAD_RUNNING),  # above spot (floating call: read)
    ("lookback", "running_minimum", 0.0, pgs.BAD_RUNNING),
    ("lookback", "running_maximum", 99.0, pgs.BAD_RUNNING_MAX),  # a floating call does not read it: checked
    ("lookback", "running_maximum", NAN, pgs.BAD_RUNNING_MAX),
    ("lookback", "running_maximum", 250.0, pgs.OK),
]
PRODUCT_GOOD = {"asian": {"running_average": 101.0, "past_fixings": 2}, "barrier": {}, "lookback": {}, "european": {}}


def _bad_row_check(product, model, field, value, expected, extra=None):
    extra = dict(PRODUCT_GOOD[product], **(extra or {}))
    column = np.array([DEFAULTS[field] if field not in extra else extra[field]] * 3,
                      dtype=np.int32 if field in INT_COLUMNS else float)
    column[1] = value
    extra[field] = column
    out, se, status, nbad = run(product, model=model, measures=(1, 2), paths=1_024, max_step=0.25, n=3, **extra)
    assert status[1] == expected, (product, field, value, status)
    assert status[0] == 0 and status[2] == 0
    assert nbad == (expected != 0)
    if expected:
        assert np.isnan(out[:, 1]).all() and np.isnan(se[:, 1]).all()
    assert np.isfinite(out[:, [0, 2]]).all()


@pytest.mark.parametrize("product", ["european", "barrier"])
@pytest.mark.parametrize("field, value, expected", BAD_COMMON)
def test_bad_common_input_sets_its_bit_and_nans_its_row_only(product, field, value, expected):
    _bad_row_check(product, GBM, field, value, expected)


@pytest.mark.parametrize("field, value, expected", BAD_HESTON)
def test_bad_heston_input_sets_its_bit(field, value, expected):
    _bad_row_check("european", HESTON, field, value, expected)
    if field == "v0":   # the volatility column is not read under Heston
        _bad_row_check("european", HESTON, "volatility", NAN, pgs.OK)


@pytest.mark.parametrize("product, field, value, expected", BAD_PRODUCT)
def test_bad_product_input_sets_its_bit(product, field, value, expected):
    _bad_row_check(product, GBM, field, value, expected)


@pytest.mark.parametrize("times, counts, expected", [
    ([0.5, 0.25, 1.0], 3, pgs.BAD_FIXINGS),   # not increasing
    ([0.0, 0.5, 1.0], 3, pgs.BAD_FIXINGS),    # a fixing today belongs to the running average
    ([0.5, 1.0, 1.5], 3, pgs.BAD_FIXINGS),    # after expiry (T = 1)
    ([0.5, NAN, 1.0], 3, pgs.BAD_FIXINGS),
    ([0.5, 1.0, 1.0], 3, pgs.BAD_FIXINGS),
])
def test_bad_fixings(times, counts, expected):
    t = np.concatenate([GOOD_TIMES, times, GOOD_TIMES])
    out, se, status, nbad = run("asian", fixing_times=t, fixing_counts=[3, counts, 3], n=3, paths=1_024)
    assert list(status) == [0, expected, 0] and nbad == 1


def test_continuous_averaging_checks():
    """elapsed < 0 bad; a running average read (elapsed > 0) must be >= 0 (arithmetic) or
    > 0 (geometric); T = 0 with no averaging done is valid (intrinsic on spot)."""
    out, se, status, nbad = run("asian", fixing_times=np.empty(0), fixing_counts=0, n=6, paths=1_024,
                                averaging=[1, 1, 1, 2, 1, 2], elapsed=[0.0, -1.0, 0.5, 0.5, 0.0, 0.0],
                                running_average=[0.0, 100.0, -1.0, 0.0, 100.0, 0.0],
                                time=[1.0, 1.0, 1.0, 1.0, 0.0, 0.0], strike=95.0)
    assert list(status) == [0, pgs.BAD_ELAPSED, pgs.BAD_RUNNING, pgs.BAD_RUNNING, 0, 0]
    np.testing.assert_array_equal(out[0, 4:], [5.0, 5.0])


def test_schedule_errors_raise():
    with pytest.raises(ValueError, match="fixing_counts"):
        run("asian", fixing_times=GOOD_TIMES, fixing_counts=[3, -1], n=2)
    with pytest.raises(ValueError, match="fixing_times"):
        run("asian", fixing_times=GOOD_TIMES, fixing_counts=[3, 1], n=2)


@pytest.mark.parametrize("kwargs, name", [
    ({"paths": 0}, "paths"), ({"paths": 31}, "paths"), ({"paths": 1.5}, "paths"),
    ({"max_step": 0.0}, "max_step"), ({"max_step": NAN}, "max_step"), ({"max_step": 1e-9}, "max_step"),
    ({"seed": -1}, "seed"), ({"seed": 2**64}, "seed"), ({"model": 2}, "model"),
    ({"heston_scheme": 3}, "heston_scheme"), ({"measures": (8,)}, "measures"),
    ({"strike": [1.0, 2.0], "option_type": [1, 2, 1]}, "strike"),
])
def test_setting_errors_name_the_setting(kwargs, name):
    kwargs = dict(kwargs)
    with pytest.raises(ValueError, match=name):
        run("barrier", **kwargs)


def test_sobol_dimension_limit_names_the_setting():
    with pytest.raises(ValueError, match="sobol"):
        run("barrier", sobol=True, max_step=1e-5, time=1.0)


def _assert_touched_rows(out, se, types, kw):
    """Touched barrier rows (rebate 2.5): each knock-in is the European row, bit for bit (the
    same streams), each knock-out its rebate with standard error 0 and no Greeks."""
    euro, euro_se, _, _ = run("european", **kw)
    knock_in = np.array([t in (1, 3) for t in types])
    np.testing.assert_array_equal(out[:, knock_in], euro[:, knock_in])
    np.testing.assert_array_equal(se[:, knock_in], euro_se[:, knock_in])
    np.testing.assert_array_equal(out[0, ~knock_in], 2.5)
    np.testing.assert_array_equal(out[1:, ~knock_in], 0.0)
    np.testing.assert_array_equal(se[:, ~knock_in], 0.0)


@pytest.mark.parametrize("model", [GBM, HESTON])
@pytest.mark.parametrize("monitoring", [0.0, 1 / 52])
def test_a_touched_barrier_is_the_european_or_the_rebate(model, monitoring):
    """Spot at the barrier is touched now (ext/pg_barrier.h, note 3): each knock-in row is
    simulated as the European row (the same numbers as european_price_batch, which shares the
    seed's streams), each knock-out row is its rebate with standard error 0 and no Greeks."""
    types = [1, 2, 3, 4, 1, 2, 3, 4]
    kw = dict(model=model, measures=(1, 2, 3, 4), paths=4_096, option_type=[1, 1, 1, 1, 2, 2, 2, 2],
              spot=100.0, strike=[90.0, 95.0, 105.0, 110.0] * 2, control_variate=True, antithetic=True)
    out, se, status, nbad = run("barrier", barrier_type=types, barrier=100.0, rebate=2.5,
                                monitoring_interval=monitoring, **kw)
    assert nbad == 0
    _assert_touched_rows(out, se, types, kw)


@pytest.mark.parametrize("model", [GBM, HESTON])
def test_a_spot_beyond_the_barrier_is_touched_with_beyond_touched_and_refused_without(model):
    """ext/pg_barrier.h, note 3: a spot beyond the barrier is PG_BAD_BARRIER (a wrong type or
    level), unless beyond_touched (a scenario's move crossed it): then it is touched as one at
    the barrier, the knock-in the European row, the knock-out its rebate."""
    types = [1, 2, 3, 4, 1, 2, 3, 4]
    spot = [95.0, 80.0, 104.0, 130.0] * 2    # beyond 100: below for down, above for up
    kw = dict(model=model, measures=(1, 2, 3, 4), paths=4_096, option_type=[1, 1, 1, 1, 2, 2, 2, 2],
              spot=spot, strike=[90.0, 95.0, 105.0, 110.0] * 2, control_variate=True, antithetic=True)
    out, se, status, nbad = run("barrier", barrier_type=types, barrier=100.0, rebate=2.5, **kw)
    assert nbad == 8 and (status == pgs.BAD_BARRIER).all() and np.isnan(out).all()
    out, se, status, nbad = run("barrier", barrier_type=types, barrier=100.0, rebate=2.5, beyond_touched=True, **kw)
    assert nbad == 0
    _assert_touched_rows(out, se, types, kw)
    # live rows keep their bits under the flag
    live = dict(kw, spot=100.0 + np.array([5.0, 5.0, -5.0, -5.0] * 2))
    a = run("barrier", barrier_type=types, barrier=100.0, rebate=2.5, **live)
    b = run("barrier", barrier_type=types, barrier=100.0, rebate=2.5, beyond_touched=True, **live)
    assert a[3] == 0 and b[3] == 0
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
