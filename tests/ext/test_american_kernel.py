"""pricegrid.ext.american: American options (fixed-point boundary engine and Leisen-Reimer tree).

References and tolerances (prices on spot 100; QL = the ``QuantLib`` wheel, flat curves,
Actual365Fixed, T = days/365 exactly):

* QuantLib's ``QdFpAmericanEngine`` with its high-precision scheme on 120 random rows (calls
  and puts, K = 100 exp(U(-0.5, 0.5)), T from 1 day to 12 years, vol 5%..100%, r and q in
  [0, 10%]). Absolute tolerances per scheme: fast 5e-4, accurate 3e-5, high precision 1e-5.
  The reference is not exact: QuantLib's high-precision scheme stops after 10 plain
  fixed-point steps, and where r and q are close those have not converged (measured: a deep
  in-the-money put K = 483, r 9.27%, q 9.65%, vol 89%, T 6.4: QL 384.32767, while both fixed
  point systems run to convergence, and every node count we tried, give 384.32770). On this
  set our high-precision scheme and QL's differ by at most 5.4e-6, which bounds the
  reference's error here; the accurate scheme's 3e-5 is the brief's target, its measured
  maximum is 9e-6. QuantLib's own accurate scheme is also checked against the same rows
  (its measured maximum error, 5.3e-4, is above ours by a factor 50 on the same rows).
* Extreme strikes (K/S up to 6, deep in the money, 30 rows): |accurate - high| <= 1e-6 K
  (errors scale with the strike; measured 3e-7 K).
* Published values: (a) N. Ju and R. Zhong, "An approximate formula for pricing American
  options", J. Derivatives 7(2), Winter 1999, Exhibit 3 (short-dated puts, S = 40,
  r = 4.88%), as tabulated in QuantLib's test-suite/americanoption.cpp (juValues). They are
  that paper's quadratic approximation, printed to 3 decimals, not exact prices: tolerance
  2e-2 (the largest gap, 0.016, is at K = 45, vol 40%, T = 0.5833, where our three schemes,
  the tree and QuantLib's high-precision engine agree on 7.3830). (b) The Andersen-Lake
  examples of J. Healy's AQFED.jl (src/american/README.md): put K = 100, S = 80, vol 30%,
  T = 0.75, r = 4%, q = 0: 21.086135735 (his ALO implementation with 7 collocation nodes;
  ours 21.0861260, QuantLib's high-precision scheme agrees with ours to 4e-9 at T = 273/365,
  so the printed value carries ~1e-5 of its own error): tolerance 2e-5. The negative-rate
  put r = -0.5%, q = -1% (two boundaries) 22.372978113: tolerance 2e-4 with the default 801
  tree steps, 1e-5 with 4001.
* Identities: American >= European (pricegrid.ext.black); an American call with q <= 0 (r
  >= 0) is the European call (1e-12 relative); put-call symmetry C(S, K, r, q) = P(K, S, q, r)
  (1e-12 relative: exact by construction of the kernel); T = 0 intrinsic; deep in the money
  immediate exercise (K - S exactly); the tree converges to the fixed point engine as steps
  grow (max errors over 20 rows at 101, 401, 1601 steps: 0.063, 0.018, 0.0046, i.e. about
  1/N; asserted: each at least halves, the last below 1e-2).
* Tree: prices and gamma equal QuantLib's BinomialLRVanillaEngine with the same steps
  (1e-9: the same Leisen-Reimer tree); delta within 1e-3 (QuantLib averages the two step-2
  slopes, we take the step-1 slope); maturities up to 5 years. On one 10.8-year row
  (call K 78.3, vol 76%, r 3.95%, q 4.6%) QuantLib's tree gives 63.8064 and ours 63.8511,
  where the fixed point engine (all schemes) gives 63.9032: not investigated further.
* Greeks: fixed-point (bumps inside the kernel) vs QuantLib's FdBlackScholesVanillaEngine
  (2000 x 2000, Douglas) for delta (2e-4 abs), gamma (1e-3 rel); vega, rho and dividend rho
  vs central differences of QL's high-precision prices (2e-3 rel, QL's own noise); theta vs
  the Black-Scholes PDE in the continuation region theta = rV - (r-q)S delta - vol^2 S^2
  gamma/2 (1e-5 rel + 1e-7 abs); accurate vs high-precision scheme (1e-4 rel); tree Greeks vs
  the fixed-point ones (5e-3 rel).
* Regimes: q < r < 0 (two boundaries) is priced on the tree, identical to method 2;
  r <= 0 <= q ... European; q = r (Black-76 on futures) vs QL.
* Kernel contract: bad inputs set their bit and NaN with neighbours priced; broadcast =
  tiled; 1 and 2 threads bitwise identical; n = 1; argument errors.
"""

from __future__ import annotations

import numpy as np
import pytest
import QuantLib as ql

from pricegrid.ext import american as am
from pricegrid.ext import black
from pricegrid.ext import status as pgs

CALL, PUT = pgs.CALL, pgs.PUT
ALL = np.arange(1, 8, dtype=np.int32)
PRICE = np.array([1], dtype=np.int32)
INPUTS = ("option_type", "strike", "time", "spot", "rate", "dividend", "vol")
NAN, INF = float("nan"), float("inf")


# --------------------------------------------------------------------------- helpers
def _arrays(c):
    return [np.ascontiguousarray(c[k], dtype=np.int32 if k == "option_type" else np.float64)
            for k in INPUTS]


def run(c, measures=PRICE, threads=1, method=1, scheme=2, steps=801):
    args = _arrays(c)
    n = max(a.shape[0] for a in args)
    out = np.full((len(measures), n), -7.0)
    status = np.full(n, -7, dtype=np.int32)
    nbad = am.price_batch(*args, np.asarray(measures, dtype=np.int32), out, status, threads,
                          method, scheme, steps)
    return out, status, nbad


def price(c, **kw):
    out, status, nbad = run(c, **kw)
    assert nbad == 0 and not status.any(), status
    return out[0]


def one(option_type, strike, time, spot, rate, dividend, vol):
    return {"option_type": [option_type], "strike": [strike], "time": [time], "spot": [spot],
            "rate": [rate], "dividend": [dividend], "vol": [vol]}


def random_cases(rng, n, log_k=0.5):
    days = np.exp(rng.uniform(0.0, np.log(12 * 365), n)).astype(int)
    return {"option_type": rng.choice(np.array([CALL, PUT], np.int32), n),
            "strike": 100.0 * np.exp(rng.uniform(-log_k, log_k, n)), "days": days,
            "time": days / 365.0, "spot": np.full(n, 100.0), "rate": rng.uniform(0.0, 0.1, n),
            "dividend": rng.uniform(0.0, 0.1, n), "vol": rng.uniform(0.05, 1.0, n)}


@pytest.fixture(scope="module")
def qlenv():
    settings = ql.Settings.instance()
    saved = settings.evaluationDate
    today = ql.Date(15, ql.January, 2025)
    settings.evaluationDate = today
    dc = ql.Actual365Fixed()
    quotes = [ql.SimpleQuote(0.0) for _ in range(4)]
    spot, rate, div, vol = quotes
    process = ql.GeneralizedBlackScholesProcess(
        ql.QuoteHandle(spot),
        ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(div), dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(rate), dc)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), ql.QuoteHandle(vol), dc)),
    )
    yield today, process, quotes
    settings.evaluationDate = saved


def ql_price(qlenv, engine, c, i, greeks=False):
    today, _, (spot, rate, div, vol) = qlenv
    spot.setValue(float(c["spot"][i]))
    rate.setValue(float(c["rate"][i]))
    div.setValue(float(c["dividend"][i]))
    vol.setValue(float(c["vol"][i]))
    kind = ql.Option.Call if c["option_type"][i] == CALL else ql.Option.Put
    option = ql.VanillaOption(ql.PlainVanillaPayoff(kind, float(c["strike"][i])),
                              ql.AmericanExercise(today, today + int(c["days"][i])))
    option.setPricingEngine(engine)
    if greeks:
        return option.NPV(), option.delta(), option.gamma()
    return option.NPV()


def qdfp(qlenv, scheme):
    return ql.QdFpAmericanEngine(qlenv[1], getattr(ql.QdFpAmericanEngine, scheme)())


@pytest.fixture(scope="module")
def random_set(qlenv):
    rng = np.random.default_rng(2016)
    c = random_cases(rng, 120)
    high, acc = qdfp(qlenv, "highPrecisionScheme"), qdfp(qlenv, "accurateScheme")
    c["ql_high"] = np.array([ql_price(qlenv, high, c, i) for i in range(120)])
    c["ql_acc"] = np.array([ql_price(qlenv, acc, c, i) for i in range(120)])
    return c


# --------------------------------------------------------------------------- QuantLib
@pytest.mark.parametrize("scheme,tol", [(1, 5e-4), (2, 3e-5), (3, 1e-5)])
def test_matches_quantlib_high_precision(random_set, scheme, tol):
    c = random_set
    err = np.abs(price(c, scheme=scheme) - c["ql_high"])
    i = int(np.argmax(err))
    assert err.max() <= tol, (f"scheme {scheme}: max |ours - QL high| {err.max():.3e} at row {i}: "
                              + ", ".join(f"{k}={c[k][i]}" for k in INPUTS))


def test_more_accurate_than_quantlib_accurate(random_set):
    c = random_set
    ql_err = np.abs(c["ql_acc"] - c["ql_high"])
    ours = np.abs(price(c, scheme=2) - c["ql_high"])
    assert ours.max() < ql_err.max() and ours.mean() < ql_err.mean()
    # and QuantLib's accurate scheme agrees with ours within its own error
    assert np.abs(price(c, scheme=2) - c["ql_acc"]).max() <= 1.5e-3


def test_extreme_strikes_relative_to_strike():
    rng = np.random.default_rng(7)
    n = 30
    c = random_cases(rng, n, log_k=1.8)
    c["option_type"] = np.full(n, PUT, np.int32)
    c["time"] = rng.uniform(1.0, 10.0, n)
    acc, high = price(c, scheme=2), price(c, scheme=3)
    assert (np.abs(acc - high) <= 1e-6 * c["strike"]).all(), np.abs(acc - high) / c["strike"]


def test_black76_q_equals_r(qlenv):
    rng = np.random.default_rng(76)
    c = random_cases(rng, 12)
    c["dividend"] = c["rate"].copy()
    high = qdfp(qlenv, "highPrecisionScheme")
    ref = np.array([ql_price(qlenv, high, c, i) for i in range(12)])
    assert np.abs(price(c) - ref).max() <= 3e-5


# Ju and Zhong (1999), Exhibit 3, via QuantLib's test-suite/americanoption.cpp: (K, T, vol,
# value); puts, S = 40, r = 4.88%, q = 0.
JU_EXHIBIT_3 = [
    (35, 0.0833, 0.2, 0.006), (35, 0.3333, 0.2, 0.201), (35, 0.5833, 0.2, 0.433),
    (40, 0.0833, 0.2, 0.851), (40, 0.3333, 0.2, 1.576), (40, 0.5833, 0.2, 1.984),
    (45, 0.0833, 0.2, 5.000), (45, 0.3333, 0.2, 5.084), (45, 0.5833, 0.2, 5.260),
    (35, 0.0833, 0.3, 0.078), (35, 0.3333, 0.3, 0.697), (35, 0.5833, 0.3, 1.218),
    (40, 0.0833, 0.3, 1.309), (40, 0.3333, 0.3, 2.477), (40, 0.5833, 0.3, 3.161),
    (45, 0.0833, 0.3, 5.059), (45, 0.3333, 0.3, 5.699), (45, 0.5833, 0.3, 6.231),
    (35, 0.0833, 0.4, 0.247), (35, 0.3333, 0.4, 1.344), (35, 0.5833, 0.4, 2.150),
    (40, 0.0833, 0.4, 1.767), (40, 0.3333, 0.4, 3.381), (40, 0.5833, 0.4, 4.342),
    (45, 0.0833, 0.4, 5.288), (45, 0.3333, 0.4, 6.501), (45, 0.5833, 0.4, 7.367),
]


def test_published_values_ju_zhong_exhibit_3():
    k, t, v, ref = (np.array(x) for x in zip(*JU_EXHIBIT_3))
    n = len(ref)
    c = {"option_type": np.full(n, PUT, np.int32), "strike": k, "time": t, "spot": np.full(n, 40.0),
         "rate": np.full(n, 0.0488), "dividend": np.zeros(n), "vol": v}
    ours = price(c, scheme=3)
    assert np.abs(ours - ref).max() <= 2e-2
    np.testing.assert_allclose(price(c, scheme=2), ours, atol=1e-5)


def test_published_values_aqfed_andersen_lake():
    c = {k: np.array(v) for k, v in one(PUT, 100.0, 0.75, 80.0, 0.04, 0.0, 0.3).items()}
    assert abs(price(c, scheme=3)[0] - 21.086135735070997) <= 2e-5
    assert abs(price(c, scheme=2)[0] - 21.086135735070997) <= 2e-5
    neg = dict(c, rate=np.array([-0.005]), dividend=np.array([-0.01]))
    assert abs(price(neg)[0] - 22.372978113275483) <= 2e-4
    assert abs(price(neg, steps=4001)[0] - 22.372978113275483) <= 1e-5


# --------------------------------------------------------------------------- identities
def european(c):
    args = _arrays(c)
    n = args[0].shape[0]
    out, status = np.empty((1, n)), np.empty(n, np.int32)
    black.price_batch(1, *args, PRICE, out, np.empty(0), np.empty(0), status, 1)
    return out[0]


def test_american_at_least_european_and_intrinsic():
    c = random_cases(np.random.default_rng(3), 400, log_k=1.0)
    for scheme in (1, 2):
        v = price(c, scheme=scheme)
        intrinsic = np.maximum(np.where(c["option_type"] == CALL, 1, -1) * (c["spot"] - c["strike"]), 0)
        assert (v >= european(c) - 1e-12 * c["strike"]).all()
        assert (v >= intrinsic).all()


def test_call_without_dividends_is_european():
    c = random_cases(np.random.default_rng(4), 200)
    c["option_type"] = np.full(200, CALL, np.int32)
    c["dividend"] = np.where(np.arange(200) % 2 == 0, 0.0, -c["dividend"])
    np.testing.assert_allclose(price(c), european(c), rtol=1e-12, atol=1e-13)


def test_put_call_symmetry():
    c = random_cases(np.random.default_rng(5), 200)
    c["option_type"] = np.full(200, CALL, np.int32)
    sym = dict(c, option_type=np.full(200, PUT, np.int32), strike=c["spot"], spot=c["strike"],
               rate=c["dividend"], dividend=c["rate"])
    np.testing.assert_allclose(price(c), price(sym), rtol=1e-12)


def test_expiry_intrinsic_and_greeks():
    c = {"option_type": np.array([CALL, CALL, PUT, PUT, PUT], np.int32),
         "strike": np.array([90.0, 110.0, 110.0, 90.0, 100.0]), "time": np.zeros(5),
         "spot": np.full(5, 100.0), "rate": np.full(5, 0.05), "dividend": np.full(5, 0.02),
         "vol": np.full(5, 0.3)}
    for method in (1, 2):
        out, status, nbad = run(c, ALL, method=method)
        assert nbad == 0
        np.testing.assert_array_equal(out[0], [10.0, 0.0, 10.0, 0.0, 0.0])
        np.testing.assert_array_equal(out[1], [1.0, 0.0, -1.0, 0.0, -0.5])
        assert not out[2:].any()


def test_deep_in_the_money_immediate_exercise():
    c = {"option_type": np.array([PUT, PUT, CALL], np.int32),
         "strike": np.array([200.0, 150.0, 50.0]), "time": np.array([1.0, 3.0, 2.0]),
         "spot": np.full(3, 100.0), "rate": np.array([0.05, 0.08, 0.01]),
         "dividend": np.array([0.0, 0.01, 0.08]), "vol": np.full(3, 0.2)}
    for method in (1, 2):
        out, status, nbad = run(c, ALL, method=method)
        assert nbad == 0
        np.testing.assert_array_equal(out[0], [100.0, 50.0, 50.0])
        np.testing.assert_allclose(out[1], [-1.0, -1.0, 1.0], atol=1e-9)
        assert np.abs(out[2:]).max() < 1e-9


def test_tree_converges_to_fixed_point_engine():
    c = random_cases(np.random.default_rng(6), 20)
    c["time"] = np.clip(c["time"], 0.1, 5.0)
    ref = price(c, scheme=3)
    errs = [np.abs(price(c, method=2, steps=s) - ref).max() for s in (101, 401, 1601)]
    assert errs[0] > 2 * errs[1] > 4 * errs[2] and errs[2] < 1e-2, errs


def test_tree_matches_quantlib_leisen_reimer(qlenv):
    c = random_cases(np.random.default_rng(8), 10)
    c["days"] = np.minimum(c["days"], 5 * 365)   # see the module docstring
    c["time"] = c["days"] / 365.0
    out, status, nbad = run(c, np.array([1, 2, 3], np.int32), method=2, steps=301)
    assert nbad == 0
    for i in range(10):
        p, d, g = ql_price(qlenv, ql.BinomialLRVanillaEngine(qlenv[1], 301), c, i, greeks=True)
        assert abs(out[0, i] - p) <= 1e-9 * max(1.0, p)
        assert abs(out[2, i] - g) <= 1e-9 * max(1.0, abs(g))
        assert abs(out[1, i] - d) <= 1e-3


# --------------------------------------------------------------------------- Greeks
GREEK_CASES = [(PUT, 100.0, 1.0, 0.05, 0.02, 0.3), (CALL, 110.0, 0.5, 0.03, 0.07, 0.25),
               (PUT, 120.0, 2.0, 0.08, 0.0, 0.4), (CALL, 90.0, 3.0, 0.02, 0.05, 0.2),
               (PUT, 100.0, 7 / 365, 0.05, 0.01, 0.2), (PUT, 95.0, 1.0, 0.05, 0.05, 0.35)]


def greek_cases():
    a = np.array(GREEK_CASES)
    days = np.round(a[:, 2] * 365).astype(int)
    return {"option_type": a[:, 0].astype(np.int32), "strike": a[:, 1], "days": days,
            "time": days / 365.0, "spot": np.full(len(a), 100.0), "rate": a[:, 3],
            "dividend": a[:, 4], "vol": a[:, 5]}


def test_greeks_against_quantlib(qlenv):
    c = greek_cases()
    out, status, nbad = run(c, ALL, scheme=3)
    assert nbad == 0
    fd = ql.FdBlackScholesVanillaEngine(qlenv[1], 2000, 2000, 0, ql.FdmSchemeDesc.Douglas())
    high = qdfp(qlenv, "highPrecisionScheme")
    for i in range(len(c["strike"])):
        _, d, g = ql_price(qlenv, fd, c, i, greeks=True)
        assert abs(out[1, i] - d) <= 2e-4
        assert abs(out[2, i] - g) <= 1e-3 * abs(g)
        for row, key, h in ((3, "vol", 1e-3), (5, "rate", 1e-4), (6, "dividend", 1e-4)):
            up, dn = dict(c), dict(c)
            up[key] = c[key].copy()
            dn[key] = c[key].copy()
            up[key][i] += h
            dn[key][i] -= h
            ref = (ql_price(qlenv, high, up, i) - ql_price(qlenv, high, dn, i)) / (2 * h)
            assert abs(out[row, i] - ref) <= 2e-3 * abs(ref) + 1e-4, (i, row, out[row, i], ref)


def test_theta_satisfies_the_pde_and_schemes_agree():
    c = greek_cases()
    hi, _, _ = run(c, ALL, scheme=3)
    acc, _, _ = run(c, ALL, scheme=2)
    v, d, g, th = hi[0], hi[1], hi[2], hi[4]
    s, r, q, vol = c["spot"], c["rate"], c["dividend"], c["vol"]
    pde = r * v - (r - q) * s * d - 0.5 * vol**2 * s**2 * g
    np.testing.assert_allclose(th, pde, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(acc, hi, rtol=1e-4, atol=1e-7)


def test_tree_greeks_close_to_fixed_point():
    c = greek_cases()
    fp, _, _ = run(c, ALL, scheme=3)
    tr, _, nbad = run(c, ALL, method=2, steps=2001)
    assert nbad == 0
    np.testing.assert_allclose(tr, fp, rtol=5e-3, atol=2e-4)


def test_greek_metadata():
    assert am.MEASURES == (1, 2, 3, 4, 5, 6, 7)
    assert set(am.GREEK_METHODS) == {2, 3, 4, 5, 6, 7}
    assert am.GREEK_METHODS_BY_METHOD[2][2] == "tree_grid"
    assert set(am.SCHEMES) == {1, 2, 3}


# --------------------------------------------------------------------------- regimes
def test_negative_rates():
    # put with q < r < 0: two boundaries, priced on the tree (same steps: identical)
    c = {"option_type": np.array([PUT, CALL], np.int32), "strike": np.full(2, 100.0),
         "time": np.ones(2), "spot": np.full(2, 100.0), "rate": np.array([-0.01, -0.03]),
         "dividend": np.array([-0.03, -0.01]), "vol": np.full(2, 0.2)}
    fp, _, _ = run(c, ALL)
    tree, _, _ = run(c, ALL, method=2)
    np.testing.assert_array_equal(fp, tree)
    assert fp[0, 0] > european({k: v[:1] for k, v in c.items()})[0] + 1e-3
    # r < 0 <= q: a put is never exercised early: the European price exactly
    e = dict(c, option_type=np.full(2, PUT, np.int32), rate=np.array([-0.01, -0.02]),
             dividend=np.array([0.0, 0.03]))
    np.testing.assert_allclose(price(e), european(e), rtol=1e-13)
    # r = 0 > q: one boundary; fixed point engine vs the tree
    z = dict(e, rate=np.zeros(2), dividend=np.array([-0.03, -0.01]))
    np.testing.assert_allclose(price(z), price(z, method=2, steps=4001), atol=2e-4)


def test_double_boundary_against_quantlib_fd(qlenv):
    c = {"option_type": np.array([PUT], np.int32), "strike": np.array([100.0]), "days": np.array([365]),
         "time": np.array([1.0]), "spot": np.array([100.0]), "rate": np.array([-0.01]),
         "dividend": np.array([-0.03]), "vol": np.array([0.2])}
    fd = ql.FdBlackScholesVanillaEngine(qlenv[1], 1000, 2000, 0, ql.FdmSchemeDesc.Douglas())
    assert abs(price(c, steps=2001)[0] - ql_price(qlenv, fd, c, 0)) <= 1e-3


# --------------------------------------------------------------------------- contract
BAD = [("option_type", 3, pgs.BAD_OPTION_TYPE), ("strike", 0.0, pgs.BAD_STRIKE),
       ("strike", NAN, pgs.BAD_STRIKE), ("time", -1.0, pgs.BAD_TIME), ("time", INF, pgs.BAD_TIME),
       ("spot", -1.0, pgs.BAD_UNDERLYING), ("rate", NAN, pgs.BAD_RATE),
       ("dividend", INF, pgs.BAD_DIVIDEND), ("vol", 0.0, pgs.BAD_VOL), ("vol", NAN, pgs.BAD_VOL)]


@pytest.mark.parametrize("method", [1, 2])
@pytest.mark.parametrize("name,value,bit", BAD, ids=[f"{b[0]}={b[1]}" for b in BAD])
def test_bad_input_sets_its_bit(name, value, bit, method):
    c = {k: np.array(v * 3) for k, v in one(PUT, 100.0, 1.0, 100.0, 0.05, 0.02, 0.3).items()}
    c[name] = c[name].astype(np.int32 if name == "option_type" else float)
    c[name][1] = value
    out, status, nbad = run(c, ALL, method=method)
    assert nbad == 1
    assert list(status) == [0, bit, 0]
    assert np.isnan(out[:, 1]).all() and np.isfinite(out[:, [0, 2]]).all()


@pytest.mark.parametrize("method", [1, 2])
def test_expiry_beyond_the_domain_sets_the_time_bit(method):
    """Up to american.MAX_TIME (100 years) priced; beyond it BAD_TIME and NaN, never a
    number the engines cannot vouch for (a 1e5-year put came back -0.0 by fixed point)."""
    from pricegrid.server.domain.products import PRODUCTS

    assert am.MAX_TIME == PRODUCTS["american"].max_time == 100.0  # the service's words say the kernel's
    c = {k: np.array(v * 4) for k, v in one(PUT, 100.0, 1.0, 100.0, 0.03, 0.0, 0.25).items()}
    c["time"] = np.array([100.0, np.nextafter(100.0, 200.0), 1e5, 1e300])
    out, status, nbad = run(c, ALL, method=method)
    assert nbad == 3 and list(status) == [0, pgs.BAD_TIME, pgs.BAD_TIME, pgs.BAD_TIME]
    assert np.isnan(out[:, 1:]).all() and np.isfinite(out[:, 0]).all()
    assert 25.0 < out[0, 0] < 25.7134  # below the perpetual put's 25.7133...


@pytest.mark.parametrize("method", [1, 2])
def test_a_price_outside_the_no_arbitrage_bounds_is_not_returned(method):
    """Rates of hundreds overflowed the fixed point's boundary and a put came back at -20 (its
    negative exercise value): a price outside [max(exercise value, 0), K max(1, e^-rT)] for a
    put, [.., S max(1, e^-qT)] for a call, is answered NOT_FINITE, as an overflow is."""
    c = {k: np.array(v * 3) for k, v in one(PUT, 80.0, 1.0, 100.0, 0.03, 0.0, 0.2).items()}
    c["option_type"] = np.array([PUT, PUT, CALL], np.int32)
    c["strike"] = np.array([80.0, 80.0, 120.0])
    c["rate"] = np.array([0.03, 710.0, 0.03])
    c["dividend"] = np.array([0.0, 0.0, 750.0])
    out, status, nbad = run(c, ALL, method=method)
    assert list(status) == [0, pgs.NOT_FINITE, pgs.NOT_FINITE] and nbad == 2
    assert np.isnan(out[:, 1:]).all() and 0.0 < out[0, 0] < 80.0


def test_broadcast_threads_and_n_equals_one():
    c = random_cases(np.random.default_rng(9), 64)
    out1, st1, _ = run(c, ALL, threads=1)
    out2, st2, _ = run(c, ALL, threads=2)
    assert np.array_equal(out1, out2) and np.array_equal(st1, st2)
    for i in (0, 17):
        single = {k: c[k][i:i + 1] for k in INPUTS}
        o, s, _ = run(single, ALL)
        assert np.array_equal(o[:, 0], out1[:, i])
    b = dict(c, spot=np.array([100.0]), rate=np.array([0.05]))
    tiled = dict(c, spot=np.full(64, 100.0), rate=np.full(64, 0.05))
    assert np.array_equal(run(b, ALL)[0], run(tiled, ALL)[0])


def test_argument_errors():
    c = {k: np.array(v) for k, v in one(PUT, 100.0, 1.0, 100.0, 0.05, 0.02, 0.3).items()}
    with pytest.raises(ValueError):
        run(c, np.array([8], np.int32))
    with pytest.raises(ValueError):
        run(c, method=3)
    with pytest.raises(ValueError):
        run(c, scheme=0)
    with pytest.raises(ValueError):
        run(c, method=2, steps=1)
    with pytest.raises(ValueError):
        run(dict(c, strike=np.array([1.0, 2.0])) | {"spot": np.array([1.0, 2.0, 3.0])})
    out, status = np.empty((1, 0)), np.empty(0, np.int32)
    assert am.price_batch(*_arrays({k: np.empty(0) for k in INPUTS}), PRICE, out, status, 1) == 0


@pytest.mark.parametrize("method", [1, 2])
def test_extreme_inputs_are_priced_or_flagged(method):
    """Corners of the domain: a row is either finite, >= intrinsic, or PG_NOT_FINITE with NaN."""
    rng = np.random.default_rng(11)
    n = 600
    pick = lambda vals: rng.choice(np.array(vals, float), n)  # noqa: E731
    c = {"option_type": rng.choice(np.array([CALL, PUT], np.int32), n),
         "strike": pick([1e-8, 1e-3, 1, 50, 100, 200, 1e4, 1e8]),
         "time": pick([0, 1e-8, 1e-4, 1 / 365, 0.5, 5, 30, 100]),
         "spot": pick([1e-8, 1e-3, 1, 80, 100, 120, 1e4, 1e8]),
         "rate": pick([-0.5, -0.05, -1e-9, 0, 1e-9, 0.01, 0.1, 0.5, 2]),
         "dividend": pick([-0.5, -0.05, 0, 1e-9, 0.02, 0.1, 0.5, 2]),
         "vol": pick([1e-6, 1e-3, 0.01, 0.2, 1, 3, 10])}
    out, status, nbad = run(c, ALL, threads=2, method=method, steps=101)
    assert set(np.unique(status)) <= {0, pgs.NOT_FINITE}
    ok = status == 0
    assert np.isfinite(out[:, ok]).all() and np.isnan(out[:, ~ok]).all()
    intrinsic = np.maximum(np.where(c["option_type"] == CALL, 1, -1) * (c["spot"] - c["strike"]), 0)
    assert (out[0, ok] >= intrinsic[ok]).all()
    assert ok.mean() > (0.95 if method == 1 else 0.6)
