"""RunScenarioRisk's TAYLOR and HYBRID modes and Sensitivities' cross-gamma through RiskClient
against a real server (the session's, 127.0.0.1, its built-in demo snapshot): cross-gamma
against the Black-Scholes vanna, symmetric, its diagonal the gamma; the Taylor cube against
numpy's delta-gamma formula on the Sensitivities RPC's numbers and against full revaluation
(error O(x^3) with cross terms); HYBRID's tail cells and VaR/ES equal to a FULL run's bit for
bit; the error report recomputed; bad input named by field; caps; the deadline."""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest

from pricegrid.clients import MarketClient, PricingError, RiskClient, Shift
from pricegrid.server.domain.risk import historical_risk
from tests.clients.test_scenario_risk_rpc import TRADES, base_market

N = 400  # scenarios


@pytest.fixture(scope="module")
def book():
    rng = np.random.default_rng(33)
    return {"option_type": np.where(rng.random(TRADES) < 0.5, "call", "put"),
            "strike": rng.uniform(5200, 6800, TRADES), "time_to_expiry": rng.uniform(0.1, 2.5, TRADES),
            "quantity": rng.choice([-2.0, 1.0, 3.0], TRADES)}


SHIFTS = [Shift("spot", "spot", "relative", ["SPX"]), Shift("vol", "vol", "absolute", ["SPX-SVI"]),
          Shift("rate", "zero_rate", "absolute", ["USD-*"], tenors=["6M", "2Y"])]


def trades(book):
    return dict(option_type=book["option_type"], strike=book["strike"], time_to_expiry=book["time_to_expiry"],
                quantity=book["quantity"])


def run(risk, snapshot_id, book, shifts, sizes, **kw):
    return risk.scenario_risk(snapshot_id=snapshot_id, underlying_id="SPX", model="bsm", shifts=shifts, sizes=sizes,
                              labels=[f"s{j}" for j in range(np.shape(sizes)[1])], **trades(book), **kw)


def sensitivities(risk, snapshot_id, book, shifts, bumps, **kw):
    return risk.sensitivities(snapshot_id=snapshot_id, underlying_id="SPX", model="bsm", shifts=shifts, bumps=bumps,
                              **trades(book), **kw)


@pytest.fixture(scope="module")
def moves():
    """Spot (relative), a parallel vol and two rate buckets, N scenarios."""
    rng = np.random.default_rng(7)
    return np.vstack([rng.normal(0, 0.03, N), rng.normal(0, 0.02, N), rng.normal(0, 0.002, (2, N))])


# ------------------------------------------------------------------------ cross-gamma
def test_cross_gamma_is_the_black_scholes_vanna_symmetric_with_gamma_on_its_diagonal(risk, snapshot_id, book):
    """d2V/dx_spot dx_vol of a relative spot and an absolute vol shift is S dV2/dS dsigma
    = S (-e^{-qT} phi(d1) d2 / sigma) (Black-Scholes with a continuous yield): the central
    four-point difference of h = 1e-4 to 5e-6 relative (truncation h^2: 1.7e-4 at h = 1e-3,
    2.0e-6 at 1e-4 on this book)."""
    level, rate, q, vol = base_market(book)
    shifts, bumps = SHIFTS[:2], [1e-4, 1e-4]
    r = sensitivities(risk, snapshot_id, book, shifts, bumps, cross_gamma=True)
    assert r.cross_gamma.shape == (TRADES, 2, 2) and r.portfolio_cross_gamma.shape == (2, 2) and not r.errors
    t, k = book["time_to_expiry"], book["strike"]
    d1 = (np.log(level / k) + (rate - q + 0.5 * vol ** 2) * t) / (vol * np.sqrt(t))
    d2 = d1 - vol * np.sqrt(t)
    vanna = -np.exp(-q * t) * np.exp(-0.5 * d1 ** 2) / math.sqrt(2 * math.pi) * d2 / vol
    want = level * vanna * book["quantity"]
    np.testing.assert_allclose(r.cross_gamma[:, 0, 1], want, rtol=5e-6, atol=1e-7 * np.abs(want).max())
    np.testing.assert_array_equal(r.cross_gamma, np.transpose(r.cross_gamma, (0, 2, 1)))
    np.testing.assert_array_equal(np.diagonal(r.cross_gamma, axis1=1, axis2=2), r.gamma)
    plain = sensitivities(risk, snapshot_id, book, shifts, bumps)
    assert plain.cross_gamma is None
    np.testing.assert_array_equal(plain.gamma, r.gamma)  # the same bumps, the same numbers
    np.testing.assert_array_equal(plain.delta, r.delta)
    np.testing.assert_allclose(r.portfolio_cross_gamma, r.cross_gamma.sum(axis=0), rtol=1e-12)
    # forward: (V(+h_i,+h_j) - V(+h_i) - V(+h_j) + V(0)) / h_i h_j, first order in h
    fwd = sensitivities(risk, snapshot_id, book, shifts, bumps, cross_gamma=True, scheme="forward")
    np.testing.assert_allclose(fwd.cross_gamma[:, 0, 1], want, rtol=2e-2, atol=2e-3 * np.abs(want).max())
    np.testing.assert_array_equal(np.diagonal(fwd.cross_gamma, axis1=1, axis2=2), fwd.gamma)


def test_cross_gamma_cost_is_bounded_before_it_runs(book):
    from tests.conftest import start_server

    small = start_server(max_scenario_cells=2_000)  # 40 trades x 50 bumped scenarios at most
    try:
        with RiskClient(target=small.address, timeout=30) as client, \
                MarketClient(target=small.address, timeout=10) as market:
            sid = market.list_snapshots("demo")[0].id
            grid = Shift("g", "vol", "absolute", ["SPX-SVI"], grid_expiries=["6M", "1Y", "2Y"], grid_moneyness=[0.9, 1.1])
            ok = sensitivities(client, sid, book, [grid], [1e-3])  # 6 components: 12 bumps
            assert ok.delta.shape == (TRADES, 6)
            with pytest.raises(PricingError) as e:  # 12 + 4 x 15 corners = 72 bumped scenarios
                sensitivities(client, sid, book, [grid], [1e-3], cross_gamma=True)
            assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and e.value.field == "cross_gamma"
            sizes = np.zeros((6, 10))
            with pytest.raises(PricingError) as e:
                run(client, sid, book, [grid], sizes, revaluation="taylor", cross_gamma=True)
            assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and e.value.field == "taylor.cross_gamma"
            assert run(client, sid, book, [grid], sizes, revaluation="taylor").taylor.bump_scenarios == 12
    finally:
        small.stop(1.0)


# ------------------------------------------------------------------------ TAYLOR
def test_the_taylor_cube_is_the_delta_gamma_formula_on_the_sensitivities(risk, snapshot_id, book, moves):
    """Each cell is sum_i delta_i x_i + 1/2 sum_ij G_ij x_i x_j with the Sensitivities RPC's
    derivatives for the same bumps (numpy here), to 1e-12 relative (summation order)."""
    bumps = [1e-3, 1e-3, 1e-4]
    for cross in (False, True):
        s = sensitivities(risk, snapshot_id, book, SHIFTS, bumps, cross_gamma=cross)
        r = run(risk, snapshot_id, book, SHIFTS, moves, revaluation="taylor", taylor_bumps=bumps, cross_gamma=cross,
                output="both", trade_risk=True)
        g = s.cross_gamma if cross else np.apply_along_axis(np.diag, 1, s.gamma)
        want = s.delta @ moves + 0.5 * np.einsum("is,tij,js->ts", moves, g, moves)
        scale = np.abs(want).max()
        np.testing.assert_allclose(r.cube, want, rtol=1e-12, atol=1e-12 * scale)
        assert not r.errors and r.failed_cells == 0
        np.testing.assert_allclose(r.portfolio_pnl, want.sum(axis=0), rtol=1e-12, atol=1e-12 * scale)
        tail = historical_risk(r.portfolio_pnl, var_level=[0.99], es_level=[0.975])
        assert r.var == {0.99: tail.var[0]} and r.expected_shortfall == {0.975: tail.es[0]}
        assert r.taylor.revaluation == "taylor" and list(r.taylor.bumps) == bumps
        assert r.taylor.bump_scenarios == 8 + (4 * 6 if cross else 0)  # 4 components: 8 bumps; 6 pairs x 4
        assert r.taylor.max_abs_error is None and r.taylor.revalued.size == 0  # no check asked
        assert r.taylor.taylor_var == r.var
        # the header's base values are a FULL run's
        full = run(risk, snapshot_id, book, SHIFTS, moves[:, :3])
        np.testing.assert_array_equal(r.base, full.base)


def test_taylor_against_full_revaluation_has_a_third_order_error(risk, snapshot_id, book):
    """With cross terms the error of the expansion is O(x^3): halving every move divides it
    by about 8 for every trade (bumps 1e-4, so the derivatives' own error stays below it);
    the diagonal expansion misses the spot-vol term, O(x^2): a factor about 4."""
    rng = np.random.default_rng(3)
    unit = np.vstack([rng.choice([-1.0, 1.0], 20) * 0.02, rng.choice([-1.0, 1.0], 20) * 0.015])
    shifts = SHIFTS[:2]
    errors = {}
    for cross in (True, False):
        for scale in (1.0, 0.5):
            sizes = unit * scale
            full = run(risk, snapshot_id, book, shifts, sizes, output="cube")
            taylor = run(risk, snapshot_id, book, shifts, sizes, revaluation="taylor", cross_gamma=cross,
                         taylor_bumps=[1e-4, 1e-4], output="cube")
            errors[cross, scale] = np.abs(taylor.cube - full.cube).sum(axis=1)  # per trade
    ratio = errors[True, 1.0] / errors[True, 0.5]
    assert np.all((ratio > 7.0) & (ratio < 9.0)), ratio
    ratio = errors[False, 1.0] / errors[False, 0.5]  # (8 where a trade's vanna is about 0)
    assert 3.5 < np.median(ratio) < 4.5 and np.all(ratio > 3.0), ratio
    assert errors[True, 1.0].sum() < 0.2 * errors[False, 1.0].sum()


def test_a_time_roll_is_theta_one_day_forward(risk, snapshot_id, book):
    """theta = (V(+h) - V(0)) / h with the default h = 1/365: a roll of exactly one day is
    the full revaluation's P&L (to rounding), a roll of two days twice it."""
    shifts = [Shift("spot", "spot", "log", ["SPX"]), Shift("roll", "time", "absolute")]
    sizes = np.array([[0.0, 0.0, 0.01], [1 / 365, 2 / 365, 0.0]])
    full = run(risk, snapshot_id, book, shifts, sizes, output="cube")
    r = run(risk, snapshot_id, book, shifts, sizes, revaluation="taylor", output="cube")
    assert r.taylor.bumps[0] == pytest.approx(1e-3) and r.taylor.bumps[1] == 1 / 365
    assert r.taylor.bump_scenarios == 3  # two spot bumps, one roll
    np.testing.assert_allclose(r.cube[:, 0], full.cube[:, 0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(r.cube[:, 1], 2 * full.cube[:, 0], rtol=1e-9, atol=1e-9)
    # a roll too small to shorten the longest expiry (up to 2.5 years: spacing 4.4e-16) is refused
    with pytest.raises(PricingError) as e:
        run(risk, snapshot_id, book, shifts, sizes, revaluation="taylor", output="cube", taylor_bumps=[1e-3, 1e-16])
    assert [f for f, _ in e.value.field_violations] == ["taylor.bumps[1]"]


def test_a_taylor_check_sample_reports_its_error(risk, snapshot_id, book, moves):
    """check_scenarios evenly spaced (or the tail) revalued in full: their full P&L is the
    FULL run's bit for bit, the error statistics and VaR/ES recomputed here."""
    full = run(risk, snapshot_id, book, SHIFTS, moves, var_levels=(0.99, 0.95), es_levels=(0.975,))
    for check, want_index in (("even", np.unique(np.rint(np.linspace(0, N - 1, 25)).astype(int))), ("tail", None)):
        r = run(risk, snapshot_id, book, SHIFTS, moves, revaluation="taylor", check_scenarios=25, check=check,
                var_levels=(0.99, 0.95), es_levels=(0.975,))
        t = r.taylor
        if want_index is None:
            want_index = np.sort(np.argsort(r.portfolio_pnl, kind="stable")[:25])
        np.testing.assert_array_equal(t.revalued, want_index)
        np.testing.assert_array_equal(t.full_pnl, full.portfolio_pnl[want_index])
        np.testing.assert_array_equal(t.taylor_pnl, r.portfolio_pnl[want_index])
        error = t.taylor_pnl - t.full_pnl
        assert t.max_abs_error == np.abs(error).max() and t.rms_error == pytest.approx(np.sqrt(np.mean(error ** 2)),
                                                                                         rel=1e-15)
        assert 0 < t.max_abs_error < 0.05 * np.abs(full.portfolio_pnl).max()
        assert t.taylor_var == r.var and t.taylor_expected_shortfall == r.expected_shortfall
        mixed = r.portfolio_pnl.copy()
        mixed[want_index] = t.full_pnl
        tail = historical_risk(mixed, var_level=[0.99, 0.95], es_level=[0.975])
        assert t.revalued_var == {0.99: tail.var[0], 0.95: tail.var[1]}
        assert t.revalued_expected_shortfall == {0.975: tail.es[0]}


# ------------------------------------------------------------------------ HYBRID
def test_hybrid_tail_is_full_revaluation_bit_for_bit_and_its_var_is_fulls(risk, snapshot_id, book, moves):
    levels = dict(var_levels=(0.99, 0.95), es_levels=(0.975,))
    full = run(risk, snapshot_id, book, SHIFTS, moves, output="both", trade_risk=True, **levels)
    taylor = run(risk, snapshot_id, book, SHIFTS, moves, output="both", revaluation="taylor", **levels)
    r = run(risk, snapshot_id, book, SHIFTS, moves, output="both", revaluation="hybrid", trade_risk=True, **levels)
    t = r.taylor
    # the default tail: 2 m + 10, m = N - floor(N level) + 1 at the deepest level (0.95: 21)
    assert t.revaluation == "hybrid" and len(t.revalued) == 2 * 21 + 10
    np.testing.assert_array_equal(t.revalued, np.sort(np.argsort(taylor.portfolio_pnl, kind="stable")[:52]))
    tail = t.revalued
    np.testing.assert_array_equal(r.cube[:, tail], full.cube[:, tail])
    rest = np.setdiff1d(np.arange(N), tail)
    np.testing.assert_array_equal(r.cube[:, rest], taylor.cube[:, rest])
    np.testing.assert_array_equal(r.portfolio_pnl[tail], full.portfolio_pnl[tail])
    # the tail covers every level: the hybrid's VaR and ES are FULL's, exactly
    assert r.var == full.var and r.expected_shortfall == full.expected_shortfall
    assert t.revalued_var == r.var and t.revalued_expected_shortfall == r.expected_shortfall
    assert t.taylor_var == taylor.var and t.taylor_expected_shortfall == taylor.expected_shortfall
    np.testing.assert_array_equal(t.taylor_pnl, taylor.portfolio_pnl[tail])
    np.testing.assert_array_equal(t.full_pnl, full.portfolio_pnl[tail])
    error = t.taylor_pnl - t.full_pnl
    assert t.max_abs_error == np.abs(error).max() and t.rms_error == pytest.approx(np.sqrt(np.mean(error ** 2)),
                                                                                     rel=1e-15)
    # each trade's risk from the hybrid cube
    want = historical_risk(r.cube, var_level=[0.99, 0.95], es_level=[0.975], axis=1)
    np.testing.assert_array_equal(r.trade_var, np.asarray(want.var).reshape(2, -1).T)
    # a given tail
    small = run(risk, snapshot_id, book, SHIFTS, moves, revaluation="hybrid", hybrid_tail=3, output="cube")
    assert len(small.taylor.revalued) == 3 and small.taylor.revalued_var


def test_a_trade_that_fails_its_bumps_is_a_row_error_in_every_scenario(risk, snapshot_id, book):
    bad = dict(book, strike=np.where(np.arange(TRADES) == 4, np.nan, book["strike"]))
    sizes = np.array([[0.01, -0.02, 0.03], [0.0, 0.01, -0.01]])
    r = run(risk, snapshot_id, bad, SHIFTS[:2], sizes, revaluation="hybrid", hybrid_tail=1, output="both")
    assert np.isnan(r.base[4]) and [e.row for e in r.base_errors] == [4]
    assert np.isnan(r.cube[4]).all() and np.isfinite(np.delete(r.cube, 4, axis=0)).all()
    assert r.failed_cells == 3 and sorted((e.trade, e.scenario) for e in r.errors) == [(4, 0), (4, 1), (4, 2)]
    assert all(e.field == "portfolio.european.strike" for e in r.errors)
    assert np.isfinite(r.portfolio_pnl).all()


# ------------------------------------------------------------------------ bad input
def test_bad_taylor_requests_name_their_fields(risk, snapshot_id, book, moves):
    fixed = [Shift("v", "vol", "fixed", ["SPX-SVI"]), Shift("s", "spot", "relative", ["SPX"])]
    with pytest.raises(PricingError) as e:
        run(risk, snapshot_id, book, fixed, [[0.2, 0.3], [0.0, 0.1]], revaluation="hybrid", taylor_bumps=[1e-3, -1.0],
            hybrid_tail=5)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {f for f, _ in e.value.field_violations} == {"scenarios.shifts[0].kind", "taylor.bumps[1]",
                                                        "taylor.hybrid_tail"}
    cases = [
        (dict(revaluation="taylor", taylor_bumps=[1e-3]), "taylor.bumps"),
        (dict(revaluation="taylor", hybrid_tail=3), "taylor.hybrid_tail"),
        (dict(revaluation="taylor", check_scenarios=N + 1), "taylor.check_scenarios"),
        (dict(revaluation="hybrid", check_scenarios=3), "taylor.check_scenarios"),
        (dict(revaluation="hybrid", es_attribution=True), "es_attribution"),  # FULL only
    ]
    for kw, field in cases:
        with pytest.raises(PricingError) as e:
            run(risk, snapshot_id, book, SHIFTS, moves, **kw)
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.field == field, (kw, e.value)
    # settings without their mode, and a check without a sample, through the raw request
    from pricegrid.clients import _scenarios
    from pricegrid.v1 import risk_pb2 as rpb
    from pricegrid.v1 import risk_pb2_grpc

    request = _scenarios.request_of(
        risk._snapshot_portfolio("european", "bsm", snapshot_id, "SPX", {k: v for k, v in trades(book).items()
                                                                          if k != "quantity"}),
        quantity=None, trade_ids=None, shifts=SHIFTS[:1], sizes=[[0.01]], labels=["a"], smile="sticky_strike",
        output="aggregates", cube_type="float64", var_levels=(0.99,), es_levels=(0.975,))
    request.taylor.cross_gamma = True
    stub = risk_pb2_grpc.RiskServiceStub(risk.channel)
    for mode, field in ((rpb.REVALUATION_MODE_FULL, "taylor"), (rpb.REVALUATION_MODE_TAYLOR, "taylor.check")):
        request.revaluation = mode
        request.taylor.check = rpb.TAYLOR_CHECK_TAIL
        with pytest.raises(PricingError) as e:
            _scenarios.collect(stub.RunScenarioRisk, request, 30)
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.field == field


def test_a_taylor_run_past_its_deadline_stops_and_the_server_keeps_serving(risk, snapshot_id, book):
    rng = np.random.default_rng(9)
    scenarios = 200_000
    big = {k: np.tile(v, 5) for k, v in book.items()}  # 200 trades x 200k scenarios
    with pytest.raises(PricingError) as e:
        risk.scenario_risk(snapshot_id=snapshot_id, underlying_id="SPX", model="bsm", revaluation="hybrid",
                           shifts=SHIFTS[:2], sizes=rng.normal(0, 0.01, (2, scenarios)),
                           labels=[str(j) for j in range(scenarios)], option_type=big["option_type"],
                           strike=big["strike"], time_to_expiry=big["time_to_expiry"], timeout=0.05)
    assert e.value.code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)
    ok = run(risk, snapshot_id, book, SHIFTS[:1], [[0.1]], revaluation="taylor")
    assert ok.portfolio_pnl.shape == (1,)


def test_hybrid_over_books_of_several_products_and_underlyings(risk, snapshot_id):
    """A portfolio of books (European and American options on SPX, Black-76 options on a
    futures): HYBRID keeps a FULL run's blocks, so its tail is FULL's bit for bit; an
    absolute spot shift over both underlyings takes the default bump of the smaller level."""
    from tests.clients.test_portfolio_rpc import _books

    books = _books(risk, snapshot_id)
    rng = np.random.default_rng(12)
    shifts = [Shift("spot", "spot", "absolute", ["*"]), Shift("vol", "vol", "absolute", ["*"]),
              Shift("usd", "zero_rate", "absolute", ["USD-*"])]
    sizes = np.vstack([rng.normal(0, 1.5, 150), rng.normal(0, 0.01, 150), rng.normal(0, 0.001, 150)])
    labels = [f"s{j}" for j in range(150)]
    full = risk.scenario_risk(books=books, shifts=shifts, sizes=sizes, labels=labels, output="both")
    r = risk.scenario_risk(books=books, shifts=shifts, sizes=sizes, labels=labels, output="both",
                           revaluation="hybrid", hybrid_tail=20)
    assert [(b.trade_start, b.trade_stop) for b in r.books] == [(b.trade_start, b.trade_stop) for b in full.books]
    np.testing.assert_array_equal(r.base, full.base)
    tail = r.taylor.revalued
    np.testing.assert_array_equal(r.cube[:, tail], full.cube[:, tail])
    np.testing.assert_array_equal(r.portfolio_pnl[tail], full.portfolio_pnl[tail])
    assert r.var == full.var
    from pricegrid.server.app import demo
    from pricegrid.server.service.market import MarketDataService
    from pricegrid.server.store.sqlite import SqliteSnapshotStore

    market = MarketDataService(SqliteSnapshotStore(":memory:"))
    record, _ = market.put(demo.snapshot(), force=True, reason="test")
    snap = market.snapshot(record.snapshot_id)
    levels = {u: snap.underlying(u).level for u in ("SPX", "EUA-DEC27")}
    assert levels["EUA-DEC27"] < levels["SPX"] and r.taylor.bumps[0] == 1e-3 * levels["EUA-DEC27"]
    rest = np.setdiff1d(np.arange(150), tail)
    assert np.abs(r.cube[:, rest] - full.cube[:, rest]).max() < 0.05 * np.abs(full.cube).max()


def test_a_bump_that_cannot_move_its_quantity_is_refused_before_the_work(risk, snapshot_id, book, moves):
    """6000 (1 + 1e-17) == 6000 and 0.2 + 1e-18 == 0.2: such bumps gave delta 0 and gamma 0
    (1e-300: gamma 0/0) with no error. Refused, naming each bump and the smallest that moves
    it; a bump just above it is accepted and its derivatives are finite."""
    for bumps, bad in (([1e-17, 1e-18], {"bumps[0]", "bumps[1]"}), ([1e-4, 1e-300], {"bumps[1]"}),
                       ([1e-300, 1e-4], {"bumps[0]"})):
        with pytest.raises(PricingError) as e:
            sensitivities(risk, snapshot_id, book, SHIFTS[:2], bumps)
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert {f for f, _ in e.value.field_violations} == bad, bumps
        assert all("smallest bump" in why for _, why in e.value.field_violations)
        with pytest.raises(PricingError) as e:
            run(risk, snapshot_id, book, SHIFTS, moves, revaluation="taylor", taylor_bumps=bumps + [1e-4])
        assert {f for f, _ in e.value.field_violations} == {"taylor." + f for f in bad}
    # the smallest bumps that move: 2^-52 relative; absolute, a spacing of the largest vol
    # the trades read (in [0.0039, 1) here: 2^-53 moves it, 2^-62 is under half its spacing)
    s = sensitivities(risk, snapshot_id, book, SHIFTS[:2], [2.0 ** -52, 2.0 ** -53])
    assert s.errors == [] and np.isfinite(s.delta).all() and np.isfinite(s.gamma).all()
    with pytest.raises(PricingError) as e:  # 1 + 2^-54 and 1 - 2^-54 round to 1
        sensitivities(risk, snapshot_id, book, SHIFTS[:2], [2.0 ** -54, 2.0 ** -62])
    assert {f for f, _ in e.value.field_violations} == {"bumps[0]", "bumps[1]"}

