"""pricegrid.ext.american, tree engine with discrete cash dividends (escrowed-dividend model).

The model (american.pyx, design note 4): per row, with its flat rate r, the tree is built on
X0 = S - sum_{t_k in (0, T]} D_k e^{-r t_k}; at a node at time tau the exercise value is that
of the actual spot X_node + sum_{t_k in (tau, T]} D_k e^{-r (t_k - tau)}; exercise just
before an ex-time that falls inside a step is taken as a forward value.

References and tolerances (QL = the ``QuantLib`` wheel, flat curves, Actual365Fixed, ex-dates
and expiries on whole days so that times are exact; all prices at the default 801 steps):

* QuantLib's FdBlackScholesVanillaEngine with CashDividendModel Escrowed (Douglas scheme,
  ``QL_GRID`` time x space points) on 200 random American calls and puts: spot 20..500,
  K = S exp(U(-0.4, 0.4)), T 30 days..3 years, r in [0, 10%], vol 10%..60%, 1 to 4 dividends
  of 0.5%..3% of the spot, some after the expiry. q = 0: QuantLib 1.44 discounts the
  dividends at r - q (its escrowed FD adjustment and its AnalyticDividendEuropeanEngine),
  ours at r (as pricegrid's European escrowed spot), so the American prices agree for
  q = 0 only (american.pyx, design note 4). Price
  within 1e-4 of the spot: the Leisen-Reimer tree's own error for American options at 801
  steps is of that order (without dividends it is within 0.018 of the fixed-point engine at
  401 steps and 0.0046 at 1601, spot 100: tests/ext/test_american_kernel.py), and QL's FD
  is itself not converged to better than ~1e-5 of the spot (e.g. a put, spot 100, K 119.9,
  T 981 days, 4 dividends: QL 34.01070, 34.01117, 34.01140 at 750, 1500, 3000 points, the
  tree 34.01157, 34.01161, 34.01162 at 1601, 6401, 25601 steps). Measured on this set:
  at most 6.5e-5 of the spot (p99 3.2e-5, median 7.8e-6). Delta within 2e-3 (absolute;
  measured at most 8.1e-4, p99 3.0e-4): the tail is rows with the spot near the exercise
  boundary, where delta has a kink (another seed's 200 rows had one at 4.5e-3).
* Greeks on six cases away from the exercise boundary, against the same engine on a finer
  grid: delta 2e-4 (absolute), gamma 2e-3 relative; theta: QL's FD theta holds the escrowed
  spot X fixed, ours the actual spot S, so theta_S = theta_QL - delta r PV (PV the
  dividends' present value): 5e-3 relative; vega and rho against central differences of QL
  prices (spot and dividend schedule held, as ours): 2e-3 and 5e-3 relative. Measured
  maxima: price 1.4e-5 of the spot, delta 5.1e-5, gamma 7.4e-4, theta 2.6e-3, vega 8.5e-4,
  rho 3.0e-3 relative.
* European: BSM on the escrowed spot (pricegrid.ext.black) against QL's
  AnalyticDividendEuropeanEngine on 300 random rows, half with a dividend yield (QL given
  the amounts D e^{-q t}, see american.pyx design note 4): 1e-12 relative (the same
  formula).
* Identities: without dividends (none given, none in (0, T], or all of amount 0) every
  measure is bit for bit the plain tree's; American >= European on the escrowed spot (to
  1e-7 of the spot: the tree's European error; measured 2e-8) and >= intrinsic; a put's price
  increases and a call's (q = 0) decreases with the dividends' amounts; delta and gamma against
  finite differences of the price in S (X0 = S - PV moves with S one for one); convergence:
  against 25601 steps the maximum error over 12 rows falls about as 1/N (measured 9.9e-4,
  2.5e-4, 3.6e-5 of the spot at 101, 401, 1601 steps on 40 rows with 6 dividends).
* Kernel contract: argument errors, a spot not above the dividends' present value sets the
  spot's bit (NaN) with neighbours priced, 1 and 2 threads bitwise identical, T = 0 rows.
"""

from __future__ import annotations

import numpy as np
import pytest
import QuantLib as ql

from pricegrid.ext import american as am
from pricegrid.ext import black
from pricegrid.ext import status as pgs

CALL, PUT = pgs.CALL, pgs.PUT
TREE = am.METHOD_TREE
ALL = np.arange(1, 8, dtype=np.int32)
PRICE = np.array([1], dtype=np.int32)
QL_GRID = 500
TODAY = ql.Date(15, ql.January, 2025)


def run(ot, K, T, S, r, q, vol, div_t=None, div_a=None, measures=PRICE, steps=801, threads=1, method=TREE):
    cols = [np.atleast_1d(np.asarray(ot, dtype=np.int32))] + [np.atleast_1d(np.asarray(x, dtype=np.float64))
                                                              for x in (K, T, S, r, q, vol)]
    n = max(len(c) for c in cols)
    out = np.full((len(measures), n), -7.0)
    status = np.full(n, -7, dtype=np.int32)
    extra = () if div_t is None else (np.asarray(div_t, dtype=np.float64), np.asarray(div_a, dtype=np.float64))
    nbad = am.price_batch(*cols, np.asarray(measures, dtype=np.int32), out, status, threads, method, 2, steps, *extra)
    return out, status, nbad


def priced(*args, **kw):
    out, status, nbad = run(*args, **kw)
    assert nbad == 0 and not status.any(), status
    return out


def pv(div_t, div_a, r, T):
    return sum(a * np.exp(-r * t) for t, a in zip(div_t, div_a) if 0 < t <= T)


@pytest.fixture(scope="module")
def evaluation_date():
    settings = ql.Settings.instance()
    saved = settings.evaluationDate
    settings.evaluationDate = TODAY
    yield TODAY
    settings.evaluationDate = saved


def ql_option(ot, S, K, days, r, q, vol, divs, *, american=True):
    """(option, process) with ``divs`` = [(days, amount)], flat curves."""
    dc = ql.Actual365Fixed()
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(S)),
        ql.YieldTermStructureHandle(ql.FlatForward(TODAY, q, dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(TODAY, r, dc)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(TODAY, ql.NullCalendar(), vol, dc)),
    )
    exercise = ql.AmericanExercise(TODAY, TODAY + days) if american else ql.EuropeanExercise(TODAY + days)
    option = ql.VanillaOption(ql.PlainVanillaPayoff(ql.Option.Call if ot == CALL else ql.Option.Put, K), exercise)
    return option, process, ql.DividendVector([TODAY + d for d, _ in divs], [a for _, a in divs])


def ql_fd(ot, S, K, days, r, q, vol, divs, grid=QL_GRID):
    """QuantLib's escrowed FD engine: (price, delta, gamma, theta)."""
    option, process, schedule = ql_option(ot, S, K, days, r, q, vol, divs)
    option.setPricingEngine(ql.FdBlackScholesVanillaEngine(
        process, schedule, grid, grid, 0, ql.FdmSchemeDesc.Douglas(), False, -ql.nullDouble(),
        ql.FdBlackScholesVanillaEngine.Escrowed))
    return option.NPV(), option.delta(), option.gamma(), option.theta()


def random_case(rng):
    ot = CALL if rng.integers(0, 2) else PUT
    S = float(np.exp(rng.uniform(np.log(20.0), np.log(500.0))))
    K = float(S * np.exp(rng.uniform(-0.4, 0.4)))
    days = int(rng.integers(30, 3 * 365))
    r, vol = float(rng.uniform(0.0, 0.1)), float(rng.uniform(0.1, 0.6))
    ex = sorted(int(d) for d in rng.integers(1, days + 60, int(rng.integers(1, 5))))
    return ot, S, K, days, r, 0.0, vol, [(d, float(S * rng.uniform(0.005, 0.03))) for d in ex]


def ours(ot, S, K, days, r, q, vol, divs, measures=PRICE, steps=801):
    out = priced(ot, K, days / 365, S, r, q, vol, [d / 365 for d, _ in divs], [a for _, a in divs],
                 measures=measures, steps=steps)
    return out[:, 0]


# --------------------------------------------------------------------------- QuantLib
def test_price_and_delta_against_quantlib_fd_escrowed(evaluation_date):
    rng = np.random.default_rng(20250115)
    for i in range(200):
        case = random_case(rng)
        price, delta, _, _ = ql_fd(*case)
        got = ours(*case, measures=np.array([1, 2], np.int32))
        S = case[1]
        assert abs(got[0] - price) <= 1e-4 * S, (i, case, got[0], price)
        assert abs(got[1] - delta) <= 2e-3, (i, case, got[1], delta)


GREEK_CASES = [
    (PUT, 100.0, 105.0, 365, 0.05, 0.0, 0.25, [(91, 1.5), (182, 1.5), (273, 1.5)]),
    (CALL, 100.0, 95.0, 365, 0.04, 0.0, 0.30, [(91, 2.0), (273, 2.0)]),
    (CALL, 50.0, 52.0, 200, 0.06, 0.0, 0.35, [(60, 1.2), (150, 1.2)]),
    (PUT, 250.0, 240.0, 730, 0.03, 0.0, 0.20, [(100, 3.0), (280, 3.0), (460, 3.0), (640, 3.0)]),
    (CALL, 100.0, 110.0, 1000, 0.07, 0.0, 0.40, [(300, 4.0), (900, 4.0)]),
    (PUT, 80.0, 80.0, 120, 0.02, 0.0, 0.45, [(30, 0.8)]),
]


@pytest.mark.parametrize("case", GREEK_CASES)
def test_greeks_against_quantlib_fd_escrowed(evaluation_date, case):
    ot, S, K, days, r, q, vol, divs = case
    price, delta, gamma, theta = ql_fd(*case, grid=1500)
    got = ours(*case, measures=ALL)
    assert got[0] == pytest.approx(price, abs=1e-4 * S)
    assert got[1] == pytest.approx(delta, abs=2e-4)
    assert got[2] == pytest.approx(gamma, rel=2e-3)
    # QL's theta holds the escrowed spot X = S - PV_t; ours the actual spot: dX/dt = -r PV at fixed S
    assert got[4] == pytest.approx(theta - delta * r * pv([d / 365 for d, _ in divs], [a for _, a in divs], r,
                                                          days / 365), rel=5e-3)
    vega = (ql_fd(ot, S, K, days, r, q, vol + 1e-3, divs, grid=800)[0]
            - ql_fd(ot, S, K, days, r, q, vol - 1e-3, divs, grid=800)[0]) / 2e-3
    rho = (ql_fd(ot, S, K, days, r + 1e-3, q, vol, divs, grid=800)[0]  # spot and dividends held, as ours
           - ql_fd(ot, S, K, days, r - 1e-3, q, vol, divs, grid=800)[0]) / 2e-3
    assert got[3] == pytest.approx(vega, rel=2e-3)
    assert got[5] == pytest.approx(rho, rel=5e-3)


def test_european_escrowed_spot_matches_quantlib_analytic_dividend_engine(evaluation_date):
    """The escrowed spot the European path prices on, against AnalyticDividendEuropeanEngine.
    QuantLib discounts the dividends at r - q, we at r: given D e^{-q t} it escrows the same spot."""
    rng = np.random.default_rng(7)
    for i in range(300):
        ot, S, K, days, r, _, vol, divs = random_case(rng)
        q = float(rng.uniform(0.0, 0.05)) if i % 2 else 0.0
        ql_divs = [(d, a * np.exp(-q * d / 365)) for d, a in divs]
        option, process, schedule = ql_option(ot, S, K, days, r, q, vol, ql_divs, american=False)
        option.setPricingEngine(ql.AnalyticDividendEuropeanEngine(process, schedule))
        x = S - pv([d / 365 for d, _ in divs], [a for _, a in divs], r, days / 365)
        out, status = np.empty((1, 1)), np.empty(1, np.int32)
        black.price_batch(1, np.array([ot], np.int32), np.array([K]), np.array([days / 365]), np.array([x]),
                          np.array([r]), np.array([q]), np.array([vol]), PRICE, out, np.empty(0), np.empty(0),
                          status, 1)
        assert out[0, 0] == pytest.approx(option.NPV(), rel=1e-12, abs=1e-12 * S)


# --------------------------------------------------------------------------- identities
def _rows(rng, n):
    return (rng.choice(np.array([CALL, PUT], np.int32), n), 100.0 * np.exp(rng.uniform(-0.4, 0.4, n)),
            rng.integers(1, 3 * 365, n) / 365.0, np.full(n, 100.0), rng.uniform(-0.01, 0.1, n),
            rng.uniform(0.0, 0.05, n), rng.uniform(0.1, 0.6, n))


DIV_T = np.array([0.1, 0.35, 0.6, 0.85, 1.6, 2.4])
DIV_A = np.array([1.0, 1.2, 1.1, 1.3, 1.5, 1.0])


@pytest.mark.parametrize("steps", [101, 801])
def test_without_dividends_bit_for_bit_the_plain_tree(steps):
    rows = _rows(np.random.default_rng(3), 200)
    plain, status, _ = run(*rows, measures=ALL, steps=steps)
    T = rows[2]
    for div_t, div_a in (([], []), ([-1.0, 0.0, T.max() + 0.5], [2.0, 3.0, 4.0]), (DIV_T, np.zeros(6))):
        got, st, _ = run(*rows, div_t, div_a, measures=ALL, steps=steps)
        assert np.array_equal(got, plain, equal_nan=True) and np.array_equal(st, status)


def test_american_at_least_european_on_the_escrowed_spot_and_intrinsic():
    ot, K, T, S, r, q, vol = _rows(np.random.default_rng(5), 400)
    amer = priced(ot, K, T, S, r, q, vol, DIV_T, DIV_A)[0]
    x = S - np.array([pv(DIV_T, DIV_A, r[i], T[i]) for i in range(len(S))])
    euro, status = np.empty((1, len(S))), np.empty(len(S), np.int32)
    black.price_batch(1, ot, K, T, x, r, q, vol, PRICE, euro, np.empty(0), np.empty(0), status, 1)
    assert not status.any()
    assert np.all(amer >= euro[0] - 1e-7 * S)
    assert np.all(amer >= np.where(ot == CALL, S - K, K - S))
    assert np.any(amer - euro[0] > 1e-2)  # and early exercise is worth something somewhere


def test_a_put_gains_and_a_call_loses_with_the_dividends_amount():
    """Calls with q = 0: the yield is paid on the escrowed spot X only (design note 4), so with
    q > 0 larger dividends also shrink the yield and a deep in-the-money call can gain (seen:
    +4.6e-4 on one of these rows with its q)."""
    rng = np.random.default_rng(9)
    _, K, T, S, r, q, vol = _rows(rng, 60)
    for ot, sign in ((PUT, 1.0), (CALL, -1.0)):
        qq = q if ot == PUT else 0.0
        prices = np.array([priced(ot, K, T, S, r, qq, vol, DIV_T, DIV_A * scale)[0]
                           for scale in (0.0, 0.5, 1.0, 2.0)])
        step = sign * np.diff(prices, axis=0)
        live = T > DIV_T[0]  # a dividend before expiry
        assert np.all(step[:, live] >= -1e-12 * S[live])  # (equal where exercised at once, to rounding)
        if ot == PUT:  # strictly, but where the put is exercised at once whatever the dividends
            exercised = prices[1:] <= K - S + 1e-12
            assert np.all((step > 0) | exercised | ~live) and not exercised[:, live].all()
        assert np.all(prices[:, ~live] == prices[0, ~live])


def test_delta_and_gamma_are_slopes_in_the_actual_spot():
    """Against differences of the price in S (with a yield, which QuantLib's model does not
    share). The second difference of the tree's prices carries the tree's error's own
    curvature (at 801 steps up to 4.4% off the grid gamma here, 0.65% at 12801 steps, while
    the grid gamma moves by 0.05%): gamma against prices on 12801 steps."""
    for ot, S, K, days, r, _, vol, divs in GREEK_CASES:
        q = 0.02
        t, a = [d / 365 for d, _ in divs], [x for _, x in divs]
        g = priced(ot, K, days / 365, S, r, q, vol, t, a, measures=np.array([1, 2, 3], np.int32))[:, 0]
        at = lambda s, steps=801: priced(ot, K, days / 365, s, r, q, vol, t, a, steps=steps)[0, 0]  # noqa: E731
        h = 1e-3 * S
        assert g[1] == pytest.approx((at(S + h) - at(S - h)) / (2 * h), abs=5e-4)
        h = 1e-2 * S
        fine = (at(S + h, 12801) - 2 * at(S, 12801) + at(S - h, 12801)) / (h * h)
        assert g[2] == pytest.approx(fine, rel=1e-2)


def test_converges_as_the_steps_grow():
    ot, K, T, S, r, q, vol = (c[:12] for c in _rows(np.random.default_rng(11), 12))
    fine = priced(ot, K, T, S, r, q, vol, DIV_T, DIV_A, steps=25601)[0]
    err = [np.max(np.abs(priced(ot, K, T, S, r, q, vol, DIV_T, DIV_A, steps=n)[0] - fine) / S)
           for n in (101, 401, 1601)]
    assert err[1] < err[0] / 2.5 and err[2] < err[1] / 2.5 and err[2] < 1e-4, err


# --------------------------------------------------------------------------- kernel contract
def test_argument_errors():
    row = (PUT, 100.0, 1.0, 100.0, 0.05, 0.0, 0.2)
    for div_t, div_a, text in (([0.5], [1.0, 2.0], "dividend_times for 2"), ([np.nan], [1.0], "not finite"),
                               ([0.5], [-1.0], "not finite and >= 0"), ([0.5], [np.inf], "not finite"),
                               ([0.5, 0.2], [1.0, 1.0], "in time order")):
        with pytest.raises(ValueError, match=text):
            run(*row, div_t, div_a)
    with pytest.raises(ValueError, match="binomial tree only"):
        run(*row, [0.5], [1.0], method=am.METHOD_FIXED_POINT)
    with pytest.raises(ValueError, match="go together"):
        am.price_batch(*[np.array([x], dtype=np.int32 if j == 0 else np.float64) for j, x in enumerate(row)],
                       PRICE, np.empty((1, 1)), np.empty(1, np.int32), 1, TREE, 2, 801, np.array([0.5]))
    # the fixed-point engine with an empty schedule is the fixed-point engine
    assert run(*row, [], [], method=am.METHOD_FIXED_POINT)[0][0, 0] == run(*row, method=am.METHOD_FIXED_POINT)[0][0, 0]


def test_a_spot_not_above_the_dividends_present_value_is_flagged():
    out, status, nbad = run([PUT, CALL, PUT], 100.0, [1.0, 1.0, 0.05], [100.0, 4.0, 4.0], 0.05, 0.0, 0.2,
                            [0.5], [5.0], measures=ALL)
    assert nbad == 1 and status[1] == pgs.BAD_UNDERLYING and np.isnan(out[:, 1]).all()
    assert status[0] == 0 and status[2] == 0 and np.isfinite(out[:, [0, 2]]).all()  # T = 0.05: before the dividend


def test_threads_broadcast_and_expiry():
    rows = _rows(np.random.default_rng(13), 64)
    one, _, _ = run(*rows, DIV_T, DIV_A, measures=ALL, steps=201)
    two, _, _ = run(*rows, DIV_T, DIV_A, measures=ALL, steps=201, threads=2)
    assert np.array_equal(one, two)
    single = run(*(c[5:6] for c in rows), DIV_T, DIV_A, measures=ALL, steps=201)[0]
    assert np.array_equal(single[:, 0], one[:, 5])
    out = priced([CALL, PUT], 100.0, 0.0, [104.0, 97.0], 0.05, 0.0, 0.2, DIV_T, DIV_A, measures=ALL)
    assert out[0].tolist() == [4.0, 3.0] and out[1].tolist() == [1.0, -1.0]  # T = 0: intrinsic on the spot
