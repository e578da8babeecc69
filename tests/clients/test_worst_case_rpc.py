"""RiskService.WorstCase through RiskClient.worst_case against a real server (the session's,
127.0.0.1, its demo snapshot): a linear book against Studer's closed form with the deltas of
the Sensitivities RPC; a short-gamma book against hundreds of points of the ellipsoid
revalued by RunScenarioRisk, whose run of the answer's scenario reproduces its P&L bit for
bit; the reverse question against the closed form c* = (L / sqrt(d'Sd))^2 and against the
forward question; bad requests named by field; the server serving on."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from scipy.stats import chi2

from pricegrid.clients import PricingError, Shift

# Synthetic forwards: a call less a put of the same strike and expiry is DF (F - K), linear in
# the level, whatever the vol (the same strike reads the same vol); two spot factors (a
# relative and an absolute move, S (1 + x1) + x2) keep it linear in both, and a vol factor
# with no delta at all still moves in the worst case through its correlations.
FORWARDS = {"option_type": np.array(["call", "put"] * 4), "strike": np.repeat([5400.0, 6000.0, 6300.0, 7000.0], 2),
            "time_to_expiry": np.repeat([0.25, 0.5, 1.0, 2.0], 2),
            "quantity": np.repeat([3.0, -1.0, 2.0, 1.5], 2) * np.array([1.0, -1.0] * 4)}
LINEAR_SHIFTS = [Shift("spot", "spot", "relative", ["SPX"]), Shift("points", "spot", "absolute", ["SPX"]),
                 Shift("vol", "vol", "absolute", ["SPX-SVI"])]
LINEAR_COV = np.array([[0.05 ** 2, 0.3 * 0.05 * 30.0, -0.6 * 0.05 * 0.02],
                       [0.3 * 0.05 * 30.0, 30.0 ** 2, 0.0],
                       [-0.6 * 0.05 * 0.02, 0.0, 0.02 ** 2]])
# Short straddles (P&L concave in the spot, short vega): the worst case is on the boundary
STRADDLES = {"option_type": np.array(["call", "put"] * 5), "strike": np.repeat([5600.0, 5900.0, 6000.0, 6200.0, 6500.0], 2),
             "time_to_expiry": np.repeat([0.1, 0.3, 0.5, 1.0, 1.5], 2), "quantity": np.repeat([-2.0, -1.0, -3.0, -1.0, -2.0], 2)}
CURVED_SHIFTS = [Shift("spot", "spot", "log", ["SPX"]), Shift("vol", "vol", "absolute", ["SPX-SVI"]),
                 Shift("rate", "zero_rate", "absolute", ["USD-OIS"])]
CURVED_COV = np.array([[0.04 ** 2, -0.7 * 0.04 * 0.015, 0.2 * 0.04 * 0.002],
                       [-0.7 * 0.04 * 0.015, 0.015 ** 2, 0.0],
                       [0.2 * 0.04 * 0.002, 0.0, 0.002 ** 2]])


def _book(book):
    return {k: book[k] for k in ("option_type", "strike", "time_to_expiry", "quantity")}


def worst(risk, snapshot_id, book, shifts, cov, **kw):
    return risk.worst_case(snapshot_id=snapshot_id, underlying_id="SPX", model="bsm", shifts=shifts, covariance=cov,
                           trade_ids=[f"T{i}" for i in range(len(book["strike"]))], **_book(book), **kw)


def scenarios(risk, snapshot_id, book, **kw):
    return risk.scenario_risk(snapshot_id=snapshot_id, underlying_id="SPX", model="bsm", **_book(book), **kw)


@pytest.fixture(scope="module")
def linear_delta(risk, snapshot_id):
    """d of the synthetic forwards by the Sensitivities RPC (central differences: exact on a
    linear book to rounding)."""
    r = risk.sensitivities(snapshot_id=snapshot_id, underlying_id="SPX", model="bsm", shifts=LINEAR_SHIFTS,
                           bumps=[1e-3, 1.0, 1e-3], **_book(FORWARDS))
    assert not r.errors and abs(r.portfolio_delta[2]) < 1e-6 * abs(r.portfolio_delta[1])  # no vega
    return r.portfolio_delta


def test_a_linear_book_against_studers_closed_form(risk, snapshot_id, linear_delta):
    """x* = -sqrt(c) S d / sqrt(d'Sd), a loss of sqrt(c d'Sd), c = chi2.ppf(0.99, 3): the move
    to 1e-7 of the ellipsoid's size per component, the loss to 1e-9 relative."""
    d, s = linear_delta, LINEAR_COV
    c = chi2.ppf(0.99, 3)
    sigma = np.sqrt(d @ s @ d)
    x_star = -np.sqrt(c) * s @ d / sigma
    r = worst(risk, snapshot_id, FORWARDS, LINEAR_SHIFTS, s, level=0.99)
    assert r.components == ["spot", "points", "vol"] and r.converged and r.reached
    np.testing.assert_allclose(r.move / np.sqrt(c * np.diag(s)), x_star / np.sqrt(c * np.diag(s)), atol=1e-7)
    assert r.loss == pytest.approx(np.sqrt(c) * sigma, rel=1e-9)
    assert r.bound2 == pytest.approx(c, rel=1e-12) and r.dof == 3.0
    assert r.radius2 == pytest.approx(r.move @ np.linalg.solve(s, r.move), rel=1e-9)
    assert r.radius2 == pytest.approx(c, rel=1e-9) and r.radius_level == pytest.approx(0.99, rel=1e-9)
    # the delta-gamma comparison is exact on a linear book
    np.testing.assert_allclose(r.delta_gamma_move / np.sqrt(c * np.diag(s)), x_star / np.sqrt(c * np.diag(s)),
                               atol=1e-7)
    assert -r.delta_gamma_pnl == pytest.approx(np.sqrt(c) * sigma, rel=1e-7)
    np.testing.assert_allclose(r.trade_pnl.sum(), r.pnl, rtol=1e-12)
    assert r.priced_by["engine"] == "analytic_european" and r.market["snapshot_id"] == snapshot_id
    # a caller's degrees of freedom
    r5 = worst(risk, snapshot_id, FORWARDS, LINEAR_SHIFTS, s, level=0.95, dof=5)
    assert r5.bound2 == pytest.approx(chi2.ppf(0.95, 5), rel=1e-12)
    assert r5.loss == pytest.approx(np.sqrt(chi2.ppf(0.95, 5)) * sigma, rel=1e-9)


def test_short_straddles_lose_most_at_the_answer_and_a_scenario_run_reproduces_it(risk, snapshot_id):
    """The answer's loss is at least the full-revaluation loss of 400 random points of the
    ellipsoid's boundary and of the delta-gamma move (one RunScenarioRisk run), and running
    its scenario gives its P&L bit for bit."""
    s, c = CURVED_COV, chi2.ppf(0.99, 3)
    r = worst(risk, snapshot_id, STRADDLES, CURVED_SHIFTS, s, level=0.99, label="worst-99")
    assert r.converged and r.loss > 0 and r.iterations >= 2
    assert r.radius2 == pytest.approx(c, rel=1e-9)  # concave P&L: on the boundary
    assert r.move @ np.linalg.solve(s, r.move) == pytest.approx(r.radius2, rel=1e-9)
    rng = np.random.default_rng(11)
    z = rng.normal(size=(3, 400))
    boundary = np.sqrt(c) * np.linalg.cholesky(s) @ (z / np.linalg.norm(z, axis=0))
    sizes = np.column_stack([boundary, r.delta_gamma_move])
    run = scenarios(risk, snapshot_id, STRADDLES, shifts=CURVED_SHIFTS, sizes=sizes,
                    labels=[f"b{j}" for j in range(sizes.shape[1])])
    assert run.failed_cells == 0
    assert r.pnl <= run.portfolio_pnl.min()
    assert r.loss < 1.02 * -run.portfolio_pnl.min()  # dense enough to come close
    # the answer's own scenario, as a run
    kw = r.scenario_kwargs()
    assert kw["labels"] == ["worst-99"] and kw["sizes"].shape == (3, 1)
    again = scenarios(risk, snapshot_id, STRADDLES, output="both", **kw)
    assert again.portfolio_pnl[0] == r.pnl
    np.testing.assert_array_equal(again.cube[:, 0], r.trade_pnl)
    assert again.components == r.components


def test_the_reverse_question_on_a_linear_book_against_the_closed_form(risk, snapshot_id, linear_delta):
    """The smallest ellipsoid whose worst loss reaches L: c* = (L / sqrt(d'Sd))^2."""
    d, s = linear_delta, LINEAR_COV
    sigma = np.sqrt(d @ s @ d)
    target = 2.0 * sigma
    r = worst(risk, snapshot_id, FORWARDS, LINEAR_SHIFTS, s, loss=target)
    assert r.reached and r.converged
    assert r.loss >= target * (1 - 1e-9) and r.loss == pytest.approx(target, rel=1e-9)
    assert r.radius2 == pytest.approx((target / sigma) ** 2, rel=1e-7)
    assert r.radius_level == pytest.approx(chi2.cdf((target / sigma) ** 2, 3), rel=1e-7)
    np.testing.assert_allclose(r.move, -target * s @ d / sigma ** 2, rtol=1e-6, atol=1e-9)


def test_the_reverse_question_on_short_straddles_and_out_of_reach(risk, snapshot_id):
    forward = worst(risk, snapshot_id, STRADDLES, CURVED_SHIFTS, CURVED_COV, level=0.9)
    target = 0.5 * forward.loss
    r = worst(risk, snapshot_id, STRADDLES, CURVED_SHIFTS, CURVED_COV, loss=target)
    assert r.reached and r.loss >= target * (1 - 1e-9) and r.loss == pytest.approx(target, rel=1e-8)
    assert r.radius2 < forward.radius2 and r.radius_steps >= 1
    # asked forward at the level found, the worst loss is the target
    back = worst(risk, snapshot_id, STRADDLES, CURVED_SHIFTS, CURVED_COV, level=r.radius_level)
    assert back.loss == pytest.approx(target, rel=1e-7)
    # a loss no plausible move reaches: the worst at max_level, not reached
    far = worst(risk, snapshot_id, STRADDLES, CURVED_SHIFTS, CURVED_COV, loss=1e12, max_level=0.999)
    assert not far.reached and far.loss < 1e12 and far.radius_steps == 0
    assert far.bound2 == pytest.approx(chi2.ppf(0.999, 3), rel=1e-12)
    assert far.radius2 == pytest.approx(far.bound2, rel=1e-9)


def test_bad_requests_name_their_fields_all_at_once(risk, snapshot_id):
    asymmetric = CURVED_COV.copy()
    asymmetric[0, 1] *= 2
    with pytest.raises(PricingError) as e:
        worst(risk, snapshot_id, STRADDLES, CURVED_SHIFTS, asymmetric, level=1.5, max_iterations=0, tolerance=2.0)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {f for f, _ in e.value.field_violations} == {"covariance", "level", "max_iterations", "tolerance"}
    cases = [
        (dict(covariance=np.diag([0.01, -0.01, 0.01])), "covariance", "positive semi-definite"),
        (dict(covariance=np.eye(2) * 0.01), "covariance", "3 x 3"),
        (dict(covariance=np.zeros((3, 3))), "covariance", "zero"),
        (dict(loss=-5.0), "loss", "> 0"),
        (dict(level=0.99, dof=0.0), "dof", "between"),
        (dict(shifts=[Shift("roll", "time", "absolute"), *CURVED_SHIFTS[1:]]), "shifts[0].kind", "time roll"),
        (dict(shifts=[Shift("x", "zero_rate", "absolute", ["EUR-*"]), *CURVED_SHIFTS[1:]]), "shifts[0].selector",
         "matches no"),
        (dict(strike=np.where(np.arange(10) == 4, np.nan, STRADDLES["strike"])), "portfolio.european.strike",
         "trade T4"),
    ]
    for kw, field, words in cases:
        args = dict(shifts=CURVED_SHIFTS, covariance=CURVED_COV)
        book = dict(STRADDLES)
        if "strike" in kw:
            book["strike"] = kw.pop("strike")
        args.update(kw)
        with pytest.raises(PricingError) as e:
            worst(risk, snapshot_id, book, args.pop("shifts"), args.pop("covariance"), **args)
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.field == field, (kw, e.value)
        assert words in str(e.value), (kw, e.value)
    with pytest.raises(PricingError) as e:
        worst(risk, "no-such-snapshot", STRADDLES, CURVED_SHIFTS, CURVED_COV)
    assert e.value.code == grpc.StatusCode.NOT_FOUND and e.value.field == "portfolio.market.snapshot_id"


def test_caps_are_resource_exhausted_and_an_unpriceable_ellipsoid_a_failed_precondition(risk, snapshot_id):
    tenors = [f"{m}M" for m in range(1, 52)]
    with pytest.raises(PricingError) as e:  # 51 factors
        worst(risk, snapshot_id, STRADDLES, [Shift("r", "zero_rate", "absolute", ["USD-OIS"], tenors=tenors)],
              np.eye(51) * 1e-8)
    assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and e.value.field == "shifts"
    ten = [Shift("r", "zero_rate", "absolute", ["USD-OIS"], tenors=tenors[:10])]
    with pytest.raises(PricingError) as e:  # 10 trades x 111 points x 601 passes x 101 radii
        worst(risk, snapshot_id, STRADDLES, ten, np.eye(10) * 1e-8, loss=1.0, max_iterations=100, radius_steps=100)
    assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and e.value.field == "max_iterations"
    assert "at most 50,000,000" in str(e.value)
    with pytest.raises(PricingError) as e:  # max_iterations over its own cap
        worst(risk, snapshot_id, STRADDLES, CURVED_SHIFTS, CURVED_COV, max_iterations=1000)
    assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and e.value.field == "max_iterations"
    # a vol factor of 50 points: the ellipsoid reaches negative vols
    wild = np.diag([0.04 ** 2, 0.5 ** 2, 0.002 ** 2])
    with pytest.raises(PricingError) as e:
        worst(risk, snapshot_id, STRADDLES, CURVED_SHIFTS, wild)
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION and e.value.field == "portfolio.market.volatility"
    assert "cannot be priced at the move" in str(e.value) and "vol=" in str(e.value)
    ok = worst(risk, snapshot_id, STRADDLES, CURVED_SHIFTS, CURVED_COV, level=0.5)  # the server serves on
    assert ok.loss > 0


def test_a_search_past_its_deadline_stops(risk, snapshot_id):
    """3,000 trades x 20 factors: 1.3M revaluations a pass, several passes (the checks
    between passes themselves: tests/server/service/test_worst_case.py)."""
    big = {k: np.tile(v, 300) for k, v in STRADDLES.items()}
    twenty = [Shift("r", "zero_rate", "absolute", ["USD-OIS"], tenors=[f"{m}M" for m in range(1, 21)])]
    with pytest.raises(PricingError) as e:
        risk.worst_case(snapshot_id=snapshot_id, underlying_id="SPX", model="bsm", shifts=twenty,
                        covariance=np.eye(20) * 1e-8, max_iterations=5, timeout=0.02, **big)
    assert e.value.code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)
    ok = worst(risk, snapshot_id, STRADDLES, CURVED_SHIFTS, CURVED_COV, level=0.5)  # the server serves on
    assert ok.loss > 0


def test_a_portfolio_of_books_and_a_stored_one(risk, snapshot_id):
    """The straddles as two books (the calls and the puts), inline and stored: the same worst
    case as one book (the passes sum the books in another order: 1e-9), and a scenario run of
    the books reproduces the answer bit for bit."""
    one = worst(risk, snapshot_id, STRADDLES, CURVED_SHIFTS, CURVED_COV, level=0.99)
    calls, puts = (STRADDLES["option_type"] == kind for kind in ("call", "put"))
    books = [risk.book("european", model="bsm", underlying_id="SPX", option_type=STRADDLES["option_type"][rows],
                       strike=STRADDLES["strike"][rows], time_to_expiry=STRADDLES["time_to_expiry"][rows],
                       quantity=STRADDLES["quantity"][rows], trade_ids=[f"{name}{i}" for i in range(5)])
             for rows, name in ((calls, "C"), (puts, "P"))]
    r = risk.worst_case(books=books, snapshot_id=snapshot_id, shifts=CURVED_SHIFTS, covariance=CURVED_COV, level=0.99)
    assert r.trade_ids == [f"C{i}" for i in range(5)] + [f"P{i}" for i in range(5)]
    assert r.loss == pytest.approx(one.loss, rel=1e-9)
    np.testing.assert_allclose(r.move, one.move, rtol=1e-6)
    again = risk.scenario_risk(books=books, snapshot_id=snapshot_id, output="both", **r.scenario_kwargs())
    assert again.portfolio_pnl[0] == r.pnl and np.array_equal(again.cube[:, 0], r.trade_pnl)
    risk.put_portfolio("straddles", books)
    stored = risk.worst_case(portfolio="straddles", snapshot_id=snapshot_id, shifts=CURVED_SHIFTS,
                             covariance=CURVED_COV, level=0.99)
    assert stored.pnl == r.pnl and np.array_equal(stored.move, r.move)
