"""pricegrid.ext.heston: European prices under the Heston (1993) model.

References and tolerances:

* QuantLib 1.44's ``AnalyticHestonEngine`` with the angled contour of Andersen and Lake
  (``AnalyticHestonEngine.AngledContour``) and exp-sinh quadrature to 1e-14 relative
  (``FourierIntegration.expSinh(1e-14)``), on 1000 random cases across the domain: v0,
  theta in [0.005, 0.5], kappa in [0.1, 10], sigma in [0.05, 1.5], rho in [-0.95, 0.5],
  T = days/365 from 7 days to 10 years (Actual365Fixed), strikes K/S in [0.5, 2], rates
  -1%..6%, dividend yields 0..4%. Tolerance 1e-11 absolute on spot 100 (observed: 5e-14
  on 3000 cases). QuantLib's other settings are not accurate enough for this: the
  ``(model, 192)`` Gauss-Laguerre form is off by up to ~1e-9 on short-dated, low-variance
  rows, the ``(model, relTol, maxEvaluations)`` Gauss-Lobatto form by ~1e-9 and sometimes
  does not converge, and Andersen-Piterbarg with exp-sinh by up to 2e-5 where the Feller
  condition fails badly; in each such row checked, ours agreed with the angled contour.
* Fang and Oosterlee's published reference values (F. Fang and C. W. Oosterlee, "A novel
  pricing method for European options based on Fourier-cosine series expansions", SIAM
  J. Sci. Comput. 31(2), 2008, pp. 826-848, sec. 5, Heston test: S = K = 100, r = q = 0,
  kappa = 1.5768, theta = 0.0398, sigma = 0.5751, rho = -0.5711, v0 = 0.0175): call
  5.785155450 for T = 1 and 22.318945791474590 for T = 10. These were themselves computed
  numerically: QuantLib's angled-contour engine and ours both give 5.785155434376 (1.6e-8
  below) and 22.318945791154 (3.2e-10 below), so the tolerances are 2e-8 and 5e-10, and
  the same rows are also checked against QuantLib at 1e-12.
* Identities: put-call parity, Black-Scholes as sigma -> 0 with v0 = theta
  (``pricegrid.ext.black.price_one``), T = 0 intrinsic values.
* Kernel contract: status bits and NaN rows, broadcasting, threads, heston_price_one
  against heston_price_batch, strike groups against rows priced alone.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import QuantLib as ql

from pricegrid.ext import black, heston
from pricegrid.ext import status as pgs

CALL, PUT = pgs.CALL, pgs.PUT
INPUTS = ("option_type", "strike", "time", "spot", "rate", "dividend", "v0", "kappa", "theta",
          "sigma", "rho")


def run(cases, threads=1, n=None):
    """heston_price_batch on a dict of inputs; returns (price, status, nbad)."""
    args = [np.ascontiguousarray(cases[name], dtype=np.int32 if name == "option_type" else np.float64)
            for name in INPUTS]
    n = max(a.shape[0] for a in args) if n is None else n
    out = np.full(n, -7.0)
    status = np.full(n, -7, dtype=np.int32)
    nbad = heston.heston_price_batch(*args, out, status, threads)
    return out, status, nbad


def one(cases, i):
    return heston.heston_price_one(*(cases[name][i].item() for name in INPUTS))


def random_cases(rng, n):
    logu = lambda lo, hi: np.exp(rng.uniform(math.log(lo), math.log(hi), n))  # noqa: E731
    days = rng.integers(7, 3651, n)
    spot = np.full(n, 100.0)
    return {
        "option_type": rng.integers(1, 3, n).astype(np.int32),
        "strike": spot * logu(0.5, 2.0), "days": days, "time": days / 365.0, "spot": spot,
        "rate": rng.uniform(-0.01, 0.06, n), "dividend": rng.uniform(0.0, 0.04, n),
        "v0": logu(0.005, 0.5), "kappa": logu(0.1, 10.0), "theta": logu(0.005, 0.5),
        "sigma": logu(0.05, 1.5), "rho": rng.uniform(-0.95, 0.5, n),
    }


@pytest.fixture
def ql_today():
    """A QuantLib evaluation date for this test only (QuantLib keeps it globally)."""
    settings = ql.Settings.instance()
    saved = settings.evaluationDate
    today = ql.Date(15, ql.January, 2025)
    settings.evaluationDate = today
    yield today
    settings.evaluationDate = saved


def ql_option(today, c, i):
    dc = ql.Actual365Fixed()
    process = ql.HestonProcess(
        ql.YieldTermStructureHandle(ql.FlatForward(today, float(c["rate"][i]), dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, float(c["dividend"][i]), dc)),
        ql.QuoteHandle(ql.SimpleQuote(float(c["spot"][i]))),
        *(float(c[name][i]) for name in ("v0", "kappa", "theta", "sigma", "rho")),
    )
    model = ql.HestonModel(process)
    maturity = today + int(c["days"][i])
    assert dc.yearFraction(today, maturity) == c["time"][i]
    kind = ql.Option.Call if c["option_type"][i] == CALL else ql.Option.Put
    option = ql.VanillaOption(ql.PlainVanillaPayoff(kind, float(c["strike"][i])), ql.EuropeanExercise(maturity))
    return option, model


# --------------------------------------------------------------------------- references
def test_matches_quantlib_analytic_heston_engine(ql_today):
    rng = np.random.default_rng(1993)
    c = random_cases(rng, 1000)
    price, status, nbad = run(c)
    assert nbad == 0 and not status.any()
    ref = np.empty_like(price)
    for i in range(len(price)):
        option, model = ql_option(ql_today, c, i)
        option.setPricingEngine(ql.AnalyticHestonEngine(
            model, ql.AnalyticHestonEngine.AngledContour, ql.FourierIntegration.expSinh(1e-14), 1e-16))
        ref[i] = option.NPV()
    err = np.abs(price - ref)
    i = int(np.argmax(err))
    assert err[i] <= 1e-11, ({k: c[k][i] for k in INPUTS}, price[i], ref[i])


@pytest.mark.parametrize("time, value, tol, ours", [
    (1.0, 5.785155450, 2e-8, 5.785155434376196), (10.0, 22.318945791474590, 5e-10, 22.31894579115449)])
def test_matches_fang_oosterlee_published_values(time, value, tol, ours):
    """``ours``: QuantLib 1.44, AngledContour with expSinh(1e-14), on T = 365 and 3650 days."""
    st, price = heston.heston_price_one(CALL, 100.0, time, 100.0, 0.0, 0.0, 0.0175, 1.5768, 0.0398,
                                        0.5751, -0.5711)
    assert st == 0
    assert price == pytest.approx(value, abs=tol)
    assert price == pytest.approx(ours, abs=1e-12)


def test_put_call_parity():
    rng = np.random.default_rng(5)
    c = random_cases(rng, 400)
    c["option_type"][:] = CALL
    calls, s1, _ = run(c)
    c["option_type"][:] = PUT
    puts, s2, _ = run(c)
    assert not s1.any() and not s2.any()
    t = c["time"]
    parity = c["spot"] * np.exp(-c["dividend"] * t) - c["strike"] * np.exp(-c["rate"] * t)
    np.testing.assert_allclose(calls - puts, parity, rtol=0, atol=1e-11)
    assert (calls >= -1e-12).all() and (puts >= -1e-12).all()


def test_tends_to_black_scholes_as_vol_of_vol_vanishes():
    """v0 = theta, sigma -> 0: deterministic variance, Black-Scholes at vol sqrt(theta).

    The Heston price is smooth in sigma at 0 with a first-order term proportional to rho
    (the vol-of-vol series of A. Lewis, "Option valuation under stochastic volatility", 2000), so V(sigma) - BS = sigma D + O(sigma^2):
    the difference over sigma must settle to a limit D as sigma falls from 1e-4 to 1e-8
    (nothing in the characteristic function cancels as sigma -> 0), and with rho = 0 the
    difference is O(sigma^2).
    """
    rng = np.random.default_rng(7)
    sigmas = (1e-4, 1e-5, 1e-6, 1e-7, 1e-8)
    for _ in range(40):
        option_type = int(rng.integers(1, 3))
        k, t = 100.0 * math.exp(rng.uniform(-0.5, 0.5)), rng.uniform(0.05, 5.0)
        r, q, var = rng.uniform(-0.01, 0.06), rng.uniform(0.0, 0.04), rng.uniform(0.01, 0.2)
        kappa, rho = rng.uniform(0.1, 5.0), rng.uniform(-0.9, 0.5)
        ref = black.price_one(pgs.MODEL_BSM, option_type, k, t, 100.0, r, q, math.sqrt(var), 0)
        assert ref[0] == 0
        slopes = []
        for sigma in sigmas:
            st, price = heston.heston_price_one(option_type, k, t, 100.0, r, q, var, kappa, var, sigma, rho)
            assert st == 0
            slopes.append((price - ref[3]) / sigma)
        assert abs(slopes[0]) <= 30.0
        for a, b, sigma in zip(slopes[1:], slopes[:-1], sigmas[:-1]):
            assert abs(a - b) <= 200.0 * sigma + 2e-12 / sigma
        st, price = heston.heston_price_one(option_type, k, t, 100.0, r, q, var, kappa, var, 1e-4, 0.0)
        assert abs(price - ref[3]) <= 1e-6


def test_expiry_is_intrinsic():
    k = np.array([90.0, 100.0, 110.0])
    for option_type, w in ((CALL, 1.0), (PUT, -1.0)):
        c = {name: np.array([v]) for name, v in zip(INPUTS, (option_type, 0, 0.0, 100.0, 0.05, 0.02, 0.04, 1.0, 0.04, 0.5, -0.7))}
        c["option_type"] = c["option_type"].astype(np.int32)
        c["strike"] = k
        price, status, nbad = run(c, n=3)
        assert nbad == 0
        np.testing.assert_array_equal(price, np.maximum(w * (100.0 - k), 0.0))


# --------------------------------------------------------------------------- kernel contract
GOOD = {"option_type": CALL, "strike": 95.0, "time": 0.75, "spot": 100.0, "rate": 0.03,
        "dividend": 0.01, "v0": 0.04, "kappa": 1.2, "theta": 0.05, "sigma": 0.6, "rho": -0.6}
INF, NAN = math.inf, math.nan
BAD = [
    ("option_type", 0, pgs.BAD_OPTION_TYPE), ("option_type", 3, pgs.BAD_OPTION_TYPE),
    ("strike", 0.0, pgs.BAD_STRIKE), ("strike", -1.0, pgs.BAD_STRIKE), ("strike", NAN, pgs.BAD_STRIKE),
    ("time", -0.1, pgs.BAD_TIME), ("time", INF, pgs.BAD_TIME),
    ("spot", 0.0, pgs.BAD_UNDERLYING), ("spot", NAN, pgs.BAD_UNDERLYING),
    ("rate", NAN, pgs.BAD_RATE), ("dividend", INF, pgs.BAD_DIVIDEND),
    ("v0", -1e-12, pgs.BAD_HESTON_V0), ("v0", NAN, pgs.BAD_HESTON_V0), ("v0", INF, pgs.BAD_HESTON_V0),
    ("kappa", 0.0, pgs.BAD_HESTON_KAPPA), ("kappa", -1.0, pgs.BAD_HESTON_KAPPA), ("kappa", NAN, pgs.BAD_HESTON_KAPPA),
    ("theta", 0.0, pgs.BAD_HESTON_THETA), ("theta", INF, pgs.BAD_HESTON_THETA), ("theta", NAN, pgs.BAD_HESTON_THETA),
    ("sigma", 0.0, pgs.BAD_HESTON_SIGMA), ("sigma", -0.3, pgs.BAD_HESTON_SIGMA), ("sigma", NAN, pgs.BAD_HESTON_SIGMA),
    ("rho", 1.0, pgs.BAD_HESTON_RHO), ("rho", -1.0, pgs.BAD_HESTON_RHO), ("rho", NAN, pgs.BAD_HESTON_RHO),
    ("rho", -INF, pgs.BAD_HESTON_RHO),
    ("v0", 0.0, pgs.OK),  # a zero initial variance is valid
]


@pytest.mark.parametrize("field, value, expected", BAD, ids=repr)
def test_bad_input_sets_its_bit_and_nans_its_row_only(field, value, expected):
    rows = 5
    c = {name: np.full(rows, GOOD[name], np.int32 if name == "option_type" else float) for name in INPUTS}
    c["strike"] = np.array([80.0, 90.0, 100.0, 110.0, 120.0])
    c[field][2] = value
    price, status, nbad = run(c)
    assert status[2] == expected and nbad == (expected != 0)
    np.testing.assert_array_equal(status[[0, 1, 3, 4]], 0)
    assert np.isnan(price[2]) == (expected != 0)
    for i in (0, 1, 3, 4):  # neighbours priced as if alone
        assert price[i] == pytest.approx(one(c, i)[1], rel=1e-13, abs=1e-13)
    st, p = one(c, 2)
    assert st == expected and np.isnan(p) == (expected != 0)


def test_several_bad_fields_set_several_bits():
    st, p = heston.heston_price_one(CALL, 100.0, 1.0, 100.0, 0.0, 0.0, -0.1, 1.0, 0.0, 0.5, 2.0)
    assert st == pgs.BAD_HESTON_V0 | pgs.BAD_HESTON_THETA | pgs.BAD_HESTON_RHO and math.isnan(p)


def test_a_grid_beyond_its_cap_is_not_finite_rather_than_wrong():
    """Far outside the tested domain (1 day, sigma = 5, v0 = theta = 1e-4, rho = -0.99) the
    characteristic function decays too slowly for the quadrature's node cap: NaN and
    PG_NOT_FINITE, and the neighbouring rows in the block are still priced."""
    c = {name: np.full(3, GOOD[name], np.int32 if name == "option_type" else float) for name in INPUTS}
    c["strike"][:] = 270.0
    for name, value in (("time", 1 / 365), ("v0", 1e-4), ("theta", 1e-4), ("sigma", 5.0), ("rho", -0.99)):
        c[name][1] = value
    price, status, nbad = run(c)
    assert list(status) == [0, pgs.NOT_FINITE, 0] and nbad == 1
    assert np.isnan(price[1]) and np.isfinite(price[[0, 2]]).all()
    assert one(c, 1)[0] == pgs.NOT_FINITE


def test_status_bits_are_mirrored():
    assert {pgs.FIELD_OF_BIT[1 << b] for b in range(12, 17)} == {"v0", "kappa", "theta", "sigma", "rho"}
    assert pgs.BAD_HESTON_V0 == 1 << 12 and pgs.BAD_HESTON_RHO == 1 << 16


def test_broadcast_inputs_equal_tiled_inputs():
    rng = np.random.default_rng(300)
    n = 70  # several blocks and a partial one
    c = random_cases(rng, n)
    for names in [[name] for name in INPUTS] + [list(INPUTS)]:
        short, tiled = dict(c), dict(c)
        for name in names:
            short[name] = c[name][5:6]
            tiled[name] = np.repeat(c[name][5:6], n)
        a, sa, _ = run(short, n=n)
        b, sb, _ = run(tiled)
        np.testing.assert_array_equal(a, b, err_msg=str(names))
        np.testing.assert_array_equal(sa, sb)


def test_one_and_two_threads_give_identical_results():
    rng = np.random.default_rng(400)
    n = 2 * heston.PARALLEL_THRESHOLD + 45
    c = random_cases(rng, n)
    c["sigma"][::37] = -1.0
    p1, s1, b1 = run(c, threads=1)
    p2, s2, b2 = run(c, threads=2)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(s1, s2)
    assert b1 == b2 == len(c["sigma"][::37])


def test_one_equals_batch_and_strike_strips_equal_rows_alone():
    """Rows sharing (T, v0, kappa, theta, sigma, rho) share nodes in a block; the grid
    then follows the group's widest |ln(F/K)|, so a row priced alone differs in the last
    bits only."""
    rng = np.random.default_rng(600)
    c = random_cases(rng, 64)
    price, status, _ = run(c)
    for i in range(len(price)):
        st, p = one(c, i)
        assert st == status[i] == 0
        assert p == pytest.approx(price[i], rel=1e-13, abs=1e-13)
    strip = {name: np.repeat(c[name][:1], 64) for name in INPUTS}
    strip["strike"] = np.linspace(50.0, 200.0, 64)
    strip["option_type"] = np.tile(np.array([CALL, PUT], np.int32), 32)
    price, status, _ = run(strip)
    assert not status.any()
    for i in range(64):
        assert abs(one(strip, i)[1] - price[i]) <= 1e-12


def test_argument_errors_name_the_argument():
    n = 4
    good = {name: np.full(n, GOOD[name], np.int32 if name == "option_type" else float) for name in INPUTS}
    for name in INPUTS:
        args = dict(good, **{name: good[name][:2]})
        with pytest.raises(ValueError, match=name):
            heston.heston_price_batch(*(args[k] for k in INPUTS), np.empty(n), np.empty(n, np.int32), 1)
    with pytest.raises(ValueError, match="out"):
        heston.heston_price_batch(*(good[k] for k in INPUTS), np.empty(n + 1), np.empty(n, np.int32), 1)
    empty = {name: good[name][:0] for name in INPUTS}
    assert heston.heston_price_batch(*(empty[k] for k in INPUTS), np.empty(0), np.empty(0, np.int32), 2) == 0
