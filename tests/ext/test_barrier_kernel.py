"""pricegrid.ext.barrier: single-barrier (with rebate) and European digital prices under BSM.

References and tolerances (eps = 2.2e-16):

* QuantLib (the ``QuantLib`` wheel) on random cases across the domain (T from 1 day to 10
  years, vol 5% to 100%, rates -3%..12%, yields -5%..10%, strikes within about 3.5 standard
  deviations, barriers from 0.1% to ~60% away from spot, rebates 0..10; flat curves,
  Actual365Fixed, T = days/365 exactly):
  - barriers: ``BarrierOption`` with ``AnalyticBarrierEngine``, all four types, calls and
    puts, 2000 cases. Tolerance RTOL_BARRIER = 1e-10 relative, plus an absolute 1e-13 of
    the size of the terms (S + K + R). The absolute part covers prices far smaller than
    the A..F terms they are sums of (e.g. a knock-in far from its barrier), where both
    implementations lose eps times the terms, and QuantLib's N(x) = (1 + erf)/2 has an
    absolute error of about eps.
  - digitals: ``CashOrNothingPayoff`` / ``AssetOrNothingPayoff`` with
    ``AnalyticEuropeanEngine``, 1000 cases each, RTOL_DIGITAL = 1e-10 relative plus 1e-14
    of the payout (Q or S).
  QuantLib builds the forward from discount factors and the deviation from the variance,
  a few ulps from ours; the tolerances above cover that comfortably on this domain.
* Haug, "The Complete Guide to Option Pricing Formulas", 2nd ed. 2007, Table 4-13, p. 154
  (S = 100, r = 8%, b = 4%, T = 0.5, rebate 3), to the 4 decimals printed: tolerance 1e-4
  (one unit of the last printed decimal: six of the 48 printed values differ from the
  exact formula by 1e-4 after rounding, e.g. up-and-out call K = 90, vol 30%: 2.6341
  printed, formula 2.63404; QuantLib agrees with us there). The table's H = 100 rows have
  spot on the barrier, which this engine rejects (PG_BAD_BARRIER) by design.
* Haug 2nd ed. sec. 4.19.1-4.19.2 worked examples: cash-or-nothing put 2.6710,
  asset-or-nothing put 20.2069.
* Identities: in-out parity with rebate, checked for every type:
      in(R) + out(R) = vanilla + R DF Q(no hit) + R E[exp(-r tau); tau <= T]
  (the knock-in pays R at expiry if never hit, the knock-out pays R at the hit), where the
  two rebate terms are computed here from the first-passage law of the drifted log-price
  (reflection principle and the first-passage Laplace transform, written in nu, gamma
  form, not Haug's mu, lambda), and vanilla from pricegrid.ext.black. Tolerance 1e-12
  relative to vanilla + R. Digitals: cash call + cash put = Q DF, asset call + asset put
  = S exp(-qT).
* Kernel contract: every bad input sets exactly its bit with a NaN price and its
  neighbours priced; broadcast = tiled; 1 and 2 threads bitwise identical; price_one =
  batch (1e-13 relative); T = 0 values; argument errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import QuantLib as ql

from pricegrid.ext import barrier as bar
from pricegrid.ext import black
from pricegrid.ext import status as pgs

CALL, PUT = pgs.CALL, pgs.PUT
TYPES = (bar.DOWN_IN, bar.DOWN_OUT, bar.UP_IN, bar.UP_OUT)
TYPE_NAME = {bar.DOWN_IN: "down-in", bar.DOWN_OUT: "down-out", bar.UP_IN: "up-in", bar.UP_OUT: "up-out"}
PAYOFFS = (bar.CASH_OR_NOTHING, bar.ASSET_OR_NOTHING)
RTOL_BARRIER = 1e-10
RTOL_DIGITAL = 1e-10
NAN, INF = float("nan"), float("inf")
BARRIER_INPUTS = ("option_type", "strike", "time", "spot", "rate", "dividend", "vol", "barrier", "rebate")
DIGITAL_INPUTS = ("option_type", "strike", "time", "spot", "rate", "dividend", "vol", "cash")


# --------------------------------------------------------------------------- helpers
def _arrays(cases, names):
    return [np.ascontiguousarray(cases[name], dtype=np.int32 if name == "option_type" else np.float64)
            for name in names]


def run_barrier(btype, cases, threads=1):
    args = _arrays(cases, BARRIER_INPUTS)
    n = max(a.shape[0] for a in args)
    out, status = np.full(n, -7.0), np.full(n, -7, dtype=np.int32)
    nbad = bar.barrier_price_batch(btype, *args, out, status, threads)
    return out, status, nbad


def run_digital(payoff, cases, threads=1):
    args = _arrays(cases, DIGITAL_INPUTS)
    n = max(a.shape[0] for a in args)
    out, status = np.full(n, -7.0), np.full(n, -7, dtype=np.int32)
    nbad = bar.digital_price_batch(payoff, *args, out, status, threads)
    return out, status, nbad


def is_down(btype):
    return btype in (bar.DOWN_IN, bar.DOWN_OUT)


def random_cases(rng, n, btype=bar.DOWN_IN):
    """Random rows across the domain; barriers strictly on the live side of spot."""
    days = rng.integers(1, 10 * 365 + 1, n)
    t = days / 365.0
    vol = rng.uniform(0.05, 1.0, n)
    r = rng.uniform(-0.03, 0.12, n)
    q = rng.uniform(-0.05, 0.10, n)
    s = rng.uniform(50.0, 150.0, n)
    sd = vol * np.sqrt(t)
    k = s * np.exp(rng.uniform(-3.5, 3.5, n) * np.minimum(sd, 1.0))
    dist = np.exp(rng.uniform(math.log(1e-3), math.log(0.5), n))
    h = s * np.exp(-dist) if is_down(btype) else s * np.exp(dist)
    rebate = np.where(rng.random(n) < 0.3, 0.0, rng.uniform(0.0, 10.0, n))
    # lambda = sqrt(mu^2 + 2r/vol^2) must be real for a knock-out's rebate (see pg_barrier.h)
    mu = (r - q - 0.5 * vol**2) / vol**2
    rebate = np.where(mu**2 + 2 * r / vol**2 < 0, 0.0, rebate)
    option_type = rng.choice(np.array([CALL, PUT], dtype=np.int32), n)
    return {"option_type": option_type, "strike": k, "time": t, "days": days, "spot": s,
            "rate": r, "dividend": q, "vol": vol, "barrier": h, "rebate": rebate,
            "cash": rng.uniform(0.0, 10.0, n)}


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
            f"{name}: {int(bad.sum())} of {ref.size} rows out of tolerance; worst row {i}: ours {ours[i]!r}, "
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


def ql_process(today):
    dc = ql.Actual365Fixed()
    spot, rate, div, vol = (ql.SimpleQuote(0.0) for _ in range(4))
    process = ql.GeneralizedBlackScholesProcess(
        ql.QuoteHandle(spot),
        ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(div), dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(rate), dc)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), ql.QuoteHandle(vol), dc)),
    )
    return process, (spot, rate, div, vol)


def ql_type(option_type):
    return ql.Option.Call if option_type == CALL else ql.Option.Put


QL_BARRIER = {bar.DOWN_IN: ql.Barrier.DownIn, bar.DOWN_OUT: ql.Barrier.DownOut,
              bar.UP_IN: ql.Barrier.UpIn, bar.UP_OUT: ql.Barrier.UpOut}


# --------------------------------------------------------------------------- QuantLib
@pytest.mark.parametrize("btype", TYPES, ids=TYPE_NAME.get)
def test_barrier_matches_quantlib_analytic_barrier_engine(ql_today, btype):
    rng = np.random.default_rng(1000 + btype)
    c = random_cases(rng, 500, btype)
    ours, status, nbad = run_barrier(btype, c)
    assert nbad == 0 and not status.any()
    process, (spot, rate, div, vol) = ql_process(ql_today)
    engine = ql.AnalyticBarrierEngine(process)
    ref = np.empty_like(ours)
    for i in range(ours.shape[0]):
        spot.setValue(c["spot"][i])
        rate.setValue(c["rate"][i])
        div.setValue(c["dividend"][i])
        vol.setValue(c["vol"][i])
        option = ql.BarrierOption(QL_BARRIER[btype], c["barrier"][i], c["rebate"][i],
                                  ql.PlainVanillaPayoff(ql_type(c["option_type"][i]), c["strike"][i]),
                                  ql.EuropeanExercise(ql_today + int(c["days"][i])))
        option.setPricingEngine(engine)
        ref[i] = option.NPV()
    scale = c["spot"] + c["strike"] + c["rebate"]
    assert_close(TYPE_NAME[btype], ours, ref, RTOL_BARRIER, 1e-13 * scale)


@pytest.mark.parametrize("payoff", PAYOFFS, ids=("cash", "asset"))
def test_digital_matches_quantlib_analytic_european_engine(ql_today, payoff):
    rng = np.random.default_rng(2000 + payoff)
    c = random_cases(rng, 1000)
    ours, status, nbad = run_digital(payoff, c)
    assert nbad == 0 and not status.any()
    process, (spot, rate, div, vol) = ql_process(ql_today)
    engine = ql.AnalyticEuropeanEngine(process)
    ref = np.empty_like(ours)
    for i in range(ours.shape[0]):
        spot.setValue(c["spot"][i])
        rate.setValue(c["rate"][i])
        div.setValue(c["dividend"][i])
        vol.setValue(c["vol"][i])
        kind = ql_type(c["option_type"][i])
        if payoff == bar.CASH_OR_NOTHING:
            p = ql.CashOrNothingPayoff(kind, c["strike"][i], c["cash"][i])
        else:
            p = ql.AssetOrNothingPayoff(kind, c["strike"][i])
        option = ql.VanillaOption(p, ql.EuropeanExercise(ql_today + int(c["days"][i])))
        option.setPricingEngine(engine)
        ref[i] = option.NPV()
    payout = c["cash"] if payoff == bar.CASH_OR_NOTHING else c["spot"]
    assert_close("digital", ours, ref, RTOL_DIGITAL, 1e-14 * payout)


# --------------------------------------------------------------------------- published values
# Haug 2nd ed., Table 4-13, p. 154: S = 100, r = 0.08, b = 0.04 (q = 0.04), T = 0.5, rebate 3.
# (type, strike, barrier, call vol 25%, call vol 30%, put vol 25%, put vol 30%)
HAUG_4_13 = [
    (bar.DOWN_OUT, 90, 95, 9.0246, 8.8334, 2.2798, 2.4170),
    (bar.DOWN_OUT, 100, 95, 6.7924, 7.0285, 2.2947, 2.4258),
    (bar.DOWN_OUT, 110, 95, 4.8759, 5.4137, 2.6252, 2.6246),
    (bar.UP_OUT, 90, 105, 2.6789, 2.6341, 3.7760, 4.2293),
    (bar.UP_OUT, 100, 105, 2.3580, 2.4389, 5.4932, 5.8032),
    (bar.UP_OUT, 110, 105, 2.3453, 2.4315, 7.5187, 7.5649),
    (bar.DOWN_IN, 90, 95, 7.7627, 9.0093, 2.9586, 3.8769),
    (bar.DOWN_IN, 100, 95, 4.0109, 5.1370, 6.5677, 7.7989),
    (bar.DOWN_IN, 110, 95, 2.0576, 2.8517, 11.9752, 13.3078),
    (bar.UP_IN, 90, 105, 14.1112, 15.2098, 1.4653, 2.0658),
    (bar.UP_IN, 100, 105, 8.4482, 9.7278, 3.3721, 4.4226),
    (bar.UP_IN, 110, 105, 4.5910, 5.8350, 7.0846, 8.3686),
]


@pytest.mark.parametrize("btype, k, h, c25, c30, p25, p30", HAUG_4_13)
def test_barrier_matches_haug_table_4_13(btype, k, h, c25, c30, p25, p30):
    for option_type, vol, value in ((CALL, 0.25, c25), (CALL, 0.30, c30), (PUT, 0.25, p25), (PUT, 0.30, p30)):
        st, v = bar.barrier_price_one(btype, option_type, k, 0.5, 100.0, 0.08, 0.04, vol, h, 3.0)
        assert st == 0
        assert abs(v - value) <= 1e-4 + 1e-12, (btype, option_type, k, h, vol, v, value)


@pytest.mark.parametrize("btype", TYPES, ids=TYPE_NAME.get)
def test_table_4_13_spot_on_the_barrier_is_rejected(btype):
    """The table's H = 100 = S rows: already touched, outside this engine's domain."""
    for option_type in (CALL, PUT):
        st, v = bar.barrier_price_one(btype, option_type, 100.0, 0.5, 100.0, 0.08, 0.04, 0.25, 100.0, 3.0)
        assert st == pgs.BAD_BARRIER and math.isnan(v)


def test_digitals_match_haug_examples():
    """Haug 2nd ed. sec. 4.19.1 (cash-or-nothing put: S 100, X 80, T 0.75, r 6%, b 0, vol 35%,
    cash 10 -> 2.6710) and 4.19.2 (asset-or-nothing put: S 70, X 65, T 0.5, r 7%, q 5%,
    vol 27% -> 20.2069)."""
    st, v = bar.digital_price_one(bar.CASH_OR_NOTHING, PUT, 80.0, 0.75, 100.0, 0.06, 0.06, 0.35, 10.0)
    assert st == 0 and abs(v - 2.6710) <= 1e-4
    st, v = bar.digital_price_one(bar.ASSET_OR_NOTHING, PUT, 65.0, 0.5, 70.0, 0.07, 0.05, 0.27, 0.0)
    assert st == 0 and abs(v - 20.2069) <= 1e-4


# --------------------------------------------------------------------------- identities
def no_hit_probability(s, h, t, b, vol):
    """Q(the barrier h is not reached before t) for ln S_t = ln s + nu t + vol W_t
    (reflection principle; nu = b - vol^2/2)."""
    nu = b - 0.5 * vol * vol
    sd = vol * np.sqrt(t)
    a = np.log(h / s)
    down = h < s
    sign = np.where(down, 1.0, -1.0)   # work with the distance to the barrier
    cdf = lambda x: 0.5 * np.vectorize(math.erfc)(-x / math.sqrt(2.0))
    return cdf(sign * (-a + nu * t) / sd) - np.exp(2 * nu * a / vol**2) * cdf(sign * (a + nu * t) / sd)


def hit_rebate_value(s, h, t, r, b, vol):
    """E[exp(-r tau); tau <= t] for the first passage tau of ln S at ln h (Laplace
    transform of the first-passage time of a drifted Brownian motion; gamma = sqrt(nu^2 + 2 r vol^2))."""
    nu = b - 0.5 * vol * vol
    gamma = np.sqrt(nu * nu + 2.0 * r * vol * vol)
    sd = vol * np.sqrt(t)
    a = np.log(h / s)
    sign = np.where(h < s, 1.0, -1.0)
    cdf = lambda x: 0.5 * np.vectorize(math.erfc)(-x / math.sqrt(2.0))
    return (np.exp(a * (nu + sign * gamma) / vol**2) * cdf(sign * (a + sign * gamma * t) / sd)
            + np.exp(a * (nu - sign * gamma) / vol**2) * cdf(sign * (a - sign * gamma * t) / sd))


@pytest.mark.parametrize("direction", ("down", "up"))
def test_in_out_parity_with_rebate(direction):
    """in(R) + out(R) = vanilla + R DF Q(no hit) + R E[exp(-r tau); tau <= T]."""
    kin, kout = (bar.DOWN_IN, bar.DOWN_OUT) if direction == "down" else (bar.UP_IN, bar.UP_OUT)
    rng = np.random.default_rng(3 if direction == "down" else 4)
    c = random_cases(rng, 1000, kin)
    c["rate"] = np.abs(c["rate"])   # real gamma for every row (the rebate terms need it)
    vin, st_in, _ = run_barrier(kin, c)
    vout, st_out, _ = run_barrier(kout, c)
    assert not st_in.any() and not st_out.any()
    n = vin.shape[0]
    out = np.empty((1, n))
    st = np.empty(n, dtype=np.int32)
    black.price_batch(pgs.MODEL_BSM, c["option_type"], c["strike"], c["time"], c["spot"], c["rate"],
                      c["dividend"], c["vol"], np.array([1], dtype=np.int32), out, np.empty(0), np.empty(0),
                      st, 1)
    assert not st.any()
    b = c["rate"] - c["dividend"]
    rebate = c["rebate"] * (np.exp(-c["rate"] * c["time"])
                            * no_hit_probability(c["spot"], c["barrier"], c["time"], b, c["vol"])
                            + hit_rebate_value(c["spot"], c["barrier"], c["time"], c["rate"], b, c["vol"]))
    assert_close("in + out", vin + vout, out[0] + rebate, 0.0, 1e-12 * (out[0] + c["rebate"] + 1e-3 * c["spot"]))
    # without a rebate the parity is exact vanilla
    c0 = dict(c, rebate=np.zeros(n))
    assert_close("in + out, R = 0", run_barrier(kin, c0)[0] + run_barrier(kout, c0)[0], out[0], 1e-12,
                 1e-14 * (c["spot"] + c["strike"]))


def test_digital_call_put_parity():
    rng = np.random.default_rng(5)
    c = random_cases(rng, 1000)
    for payoff, total in ((bar.CASH_OR_NOTHING, c["cash"] * np.exp(-c["rate"] * c["time"])),
                          (bar.ASSET_OR_NOTHING, c["spot"] * np.exp(-c["dividend"] * c["time"]))):
        calls = run_digital(payoff, dict(c, option_type=np.full(1000, CALL, np.int32)))[0]
        puts = run_digital(payoff, dict(c, option_type=np.full(1000, PUT, np.int32)))[0]
        assert_close("call + put", calls + puts, total, 1e-14, 1e-15 * total)


@pytest.mark.parametrize("btype", TYPES, ids=TYPE_NAME.get)
def test_expiry_values(btype):
    h = 90.0 if is_down(btype) else 110.0
    for option_type, k in ((CALL, 95.0), (CALL, 105.0), (PUT, 95.0), (PUT, 105.0)):
        st, v = bar.barrier_price_one(btype, option_type, k, 0.0, 100.0, 0.05, 0.01, 0.2, h, 2.5)
        intrinsic = max((100.0 - k) if option_type == CALL else (k - 100.0), 0.0)
        assert st == 0
        assert v == (2.5 if btype in (bar.DOWN_IN, bar.UP_IN) else intrinsic)


def test_digital_expiry_values():
    for k, step in ((95.0, 1.0), (100.0, 0.5), (105.0, 0.0)):
        assert bar.digital_price_one(bar.CASH_OR_NOTHING, CALL, k, 0.0, 100.0, 0.05, 0.0, 0.2, 7.0) == (0, 7.0 * step)
        assert bar.digital_price_one(bar.ASSET_OR_NOTHING, PUT, k, 0.0, 100.0, 0.05, 0.0, 0.2, NAN) == \
            (0, 100.0 * (1.0 - step if step != 0.5 else 0.5))


# --------------------------------------------------------------------------- kernel contract
def base_row(btype):
    return {"option_type": CALL, "strike": 100.0, "time": 0.75, "spot": 100.0, "rate": 0.03,
            "dividend": 0.01, "vol": 0.25, "barrier": 90.0 if is_down(btype) else 110.0,
            "rebate": 2.0, "cash": 5.0}


COMMON_BAD = [
    ("option_type", 0, pgs.BAD_OPTION_TYPE), ("option_type", 3, pgs.BAD_OPTION_TYPE),
    ("strike", 0.0, pgs.BAD_STRIKE), ("strike", -5.0, pgs.BAD_STRIKE), ("strike", NAN, pgs.BAD_STRIKE),
    ("strike", INF, pgs.BAD_STRIKE),
    ("time", -0.5, pgs.BAD_TIME), ("time", NAN, pgs.BAD_TIME), ("time", INF, pgs.BAD_TIME),
    ("spot", 0.0, pgs.BAD_UNDERLYING), ("spot", -100.0, pgs.BAD_UNDERLYING), ("spot", NAN, pgs.BAD_UNDERLYING),
    ("spot", INF, pgs.BAD_UNDERLYING),
    ("rate", NAN, pgs.BAD_RATE), ("rate", INF, pgs.BAD_RATE), ("rate", -INF, pgs.BAD_RATE),
    ("dividend", NAN, pgs.BAD_DIVIDEND), ("dividend", INF, pgs.BAD_DIVIDEND),
    ("vol", 0.0, pgs.BAD_VOL), ("vol", -0.2, pgs.BAD_VOL), ("vol", NAN, pgs.BAD_VOL), ("vol", INF, pgs.BAD_VOL),
]
BARRIER_BAD = COMMON_BAD + [
    ("barrier", 0.0, pgs.BAD_BARRIER), ("barrier", -90.0, pgs.BAD_BARRIER), ("barrier", NAN, pgs.BAD_BARRIER),
    ("barrier", INF, pgs.BAD_BARRIER), ("barrier", 100.0, pgs.BAD_BARRIER),   # at spot
    ("barrier", "through", pgs.BAD_BARRIER),                                   # on the wrong side
    ("rebate", -1.0, pgs.BAD_REBATE), ("rebate", NAN, pgs.BAD_REBATE), ("rebate", INF, pgs.BAD_REBATE),
    ("rebate", 0.0, pgs.OK),
]


def check_row_alone(out, status, nbad, expected, one):
    """Row 2 of 5 is the bad one: its bit and NaN; the others priced as price_one prices them."""
    assert status[2] == expected
    assert nbad == (0 if expected == pgs.OK else 1)
    if expected != pgs.OK:
        assert math.isnan(out[2])
    for i in (0, 1, 3, 4):
        assert status[i] == 0 and out[i] == pytest.approx(one, rel=1e-13)


@pytest.mark.parametrize("btype", TYPES, ids=TYPE_NAME.get)
@pytest.mark.parametrize("field, value, expected", BARRIER_BAD, ids=repr)
def test_bad_barrier_input_sets_its_bit_and_nans_its_row_only(btype, field, value, expected):
    row = base_row(btype)
    if value == "through":
        value = 101.0 if is_down(btype) else 99.0
    cases = {name: np.full(5, row[name]) for name in BARRIER_INPUTS}
    cases[field] = cases[field].astype(np.int32 if field == "option_type" else float)
    cases[field][2] = value
    out, status, nbad = run_barrier(btype, cases)
    one = bar.barrier_price_one(btype, *(row[name] for name in BARRIER_INPUTS))
    assert one[0] == 0
    check_row_alone(out, status, nbad, expected, one[1])
    bad_one = bar.barrier_price_one(btype, *(cases[name][2] for name in BARRIER_INPUTS))
    assert bad_one[0] == expected and (expected == pgs.OK or math.isnan(bad_one[1]))


DIGITAL_BAD = COMMON_BAD + [
    ("cash", -1.0, pgs.BAD_REBATE), ("cash", NAN, pgs.BAD_REBATE), ("cash", INF, pgs.BAD_REBATE),
]


@pytest.mark.parametrize("payoff", PAYOFFS, ids=("cash", "asset"))
@pytest.mark.parametrize("field, value, expected", DIGITAL_BAD, ids=repr)
def test_bad_digital_input_sets_its_bit_and_nans_its_row_only(payoff, field, value, expected):
    if field == "cash" and payoff == bar.ASSET_OR_NOTHING:
        expected = pgs.OK   # the cash column is not read for asset-or-nothing
    row = base_row(bar.DOWN_IN)
    cases = {name: np.full(5, row[name]) for name in DIGITAL_INPUTS}
    cases[field] = cases[field].astype(np.int32 if field == "option_type" else float)
    cases[field][2] = value
    out, status, nbad = run_digital(payoff, cases)
    one = bar.digital_price_one(payoff, *(row[name] for name in DIGITAL_INPUTS))
    assert one[0] == 0
    check_row_alone(out, status, nbad, expected, one[1])


def test_knock_out_rebate_without_real_lambda_is_not_finite():
    """r < 0 with mu^2 + 2r/vol^2 < 0: the hit-paid rebate has no closed form here."""
    st, v = bar.barrier_price_one(bar.DOWN_OUT, CALL, 100.0, 1.0, 100.0, -0.03, -0.03, 0.2, 90.0, 1.0)
    assert st == pgs.NOT_FINITE and math.isnan(v)
    st, v = bar.barrier_price_one(bar.DOWN_OUT, CALL, 100.0, 1.0, 100.0, -0.03, -0.03, 0.2, 90.0, 0.0)
    assert st == 0 and v > 0


@pytest.mark.parametrize("btype", TYPES, ids=TYPE_NAME.get)
def test_broadcast_inputs_equal_tiled_inputs(btype):
    rng = np.random.default_rng(7)
    c = random_cases(rng, 100, btype)
    c["spot"] = np.full(100, 100.0)
    c["barrier"] = np.full(100, 90.0 if is_down(btype) else 110.0)
    for name in ("spot", "rate", "dividend", "vol", "barrier", "rebate", "option_type"):
        short = dict(c, **{name: c[name][:1]})
        tiled = dict(c, **{name: np.repeat(c[name][:1], 100)})
        a, sa, _ = run_barrier(btype, short)
        b, sb, _ = run_barrier(btype, tiled)
        assert np.array_equal(a, b, equal_nan=True) and np.array_equal(sa, sb), name
    for payoff in PAYOFFS:
        short = dict(c, cash=c["cash"][:1], strike=c["strike"][:1])
        tiled = dict(c, cash=np.repeat(c["cash"][:1], 100), strike=np.repeat(c["strike"][:1], 100))
        assert np.array_equal(run_digital(payoff, short)[0], run_digital(payoff, tiled)[0])


@pytest.mark.parametrize("btype", TYPES, ids=TYPE_NAME.get)
def test_one_and_two_threads_give_identical_results(btype):
    n = 3 * bar.PARALLEL_THRESHOLD + 17
    c = random_cases(np.random.default_rng(8), n, btype)
    c["vol"][::97] = NAN   # some failed rows too
    a, sa, na = run_barrier(btype, c, threads=1)
    b, sb, nb = run_barrier(btype, c, threads=2)
    assert na == nb == len(range(0, n, 97))
    assert np.array_equal(a, b, equal_nan=True) and np.array_equal(sa, sb)
    for payoff in PAYOFFS:
        a, sa, _ = run_digital(payoff, c, threads=1)
        b, sb, _ = run_digital(payoff, c, threads=2)
        assert np.array_equal(a, b, equal_nan=True) and np.array_equal(sa, sb)


@pytest.mark.parametrize("btype", TYPES, ids=TYPE_NAME.get)
def test_price_one_equals_batch(btype):
    c = random_cases(np.random.default_rng(9), 200, btype)
    out, status, _ = run_barrier(btype, c)
    one = [bar.barrier_price_one(btype, *(c[name][i] for name in BARRIER_INPUTS)) for i in range(200)]
    assert [s for s, _ in one] == list(status)
    assert_close("one vs batch", [v for _, v in one], out, 1e-13, 1e-15 * (c["spot"] + c["rebate"]))
    for payoff in PAYOFFS:
        out, status, _ = run_digital(payoff, c)
        one = [bar.digital_price_one(payoff, *(c[name][i] for name in DIGITAL_INPUTS)) for i in range(200)]
        assert [s for s, _ in one] == list(status)
        assert_close("digital one vs batch", [v for _, v in one], out, 1e-13, 1e-15 * c["spot"])


def test_argument_errors_name_the_argument():
    c = random_cases(np.random.default_rng(10), 4)
    args = _arrays(c, BARRIER_INPUTS)
    out, status = np.empty(4), np.empty(4, dtype=np.int32)
    with pytest.raises(ValueError, match="barrier_type"):
        bar.barrier_price_batch(5, *args, out, status, 1)
    with pytest.raises(ValueError, match="barrier_type"):
        bar.barrier_price_one(0, CALL, 100.0, 1.0, 100.0, 0.0, 0.0, 0.2, 90.0, 0.0)
    bad = list(args)
    bad[7] = np.ones(3)
    with pytest.raises(ValueError, match="barrier has length 3"):
        bar.barrier_price_batch(bar.DOWN_IN, *bad, out, status, 1)
    with pytest.raises(ValueError, match="out has length"):
        bar.barrier_price_batch(bar.DOWN_IN, *args, np.empty(3), status, 1)
    dargs = _arrays(c, DIGITAL_INPUTS)
    with pytest.raises(ValueError, match="payoff"):
        bar.digital_price_batch(3, *dargs, out, status, 1)
    with pytest.raises(ValueError, match="payoff"):
        bar.digital_price_one(0, CALL, 100.0, 1.0, 100.0, 0.0, 0.0, 0.2, 1.0)
    assert bar.barrier_price_batch(bar.DOWN_IN, *(a[:0] for a in args), np.empty(0),
                                   np.empty(0, dtype=np.int32), 1) == 0
