"""The worst-case search's pieces (server/service/worst_case.py): the trust-region subproblem
against its optimality certificate (More and Sorensen's theorem: v is a global minimiser of
b'v + v'Hv/2 over |v| <= D iff (H + mu I) v = -b, H + mu I is positive semi-definite,
mu >= 0 and mu (|v| - D) = 0) and against a dense search of the circle and the disc; the
finite-difference model exact on a quadratic; the whitening; the cost bound."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pricegrid.server.service import worst_case as wc


def _certificate(b, h, radius, sub, tol=1e-9):
    n = b.size
    v, mu = sub.step, sub.mu
    scale = max(np.abs(h).max(), np.linalg.norm(b), 1.0)
    assert mu >= 0.0
    assert np.linalg.norm(v) <= radius * (1 + 1e-12)
    np.testing.assert_allclose((h + mu * np.eye(n)) @ v, -b, atol=tol * scale)
    assert np.linalg.eigvalsh(h + mu * np.eye(n))[0] >= -tol * scale
    assert mu * (radius - np.linalg.norm(v)) <= tol * scale * radius
    assert sub.value == pytest.approx(b @ v + 0.5 * v @ h @ v, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("n", [1, 2, 3, 8])
def test_the_subproblem_meets_the_optimality_certificate(n):
    rng = np.random.default_rng(n)
    for trial in range(60):
        a = rng.normal(size=(n, n))
        h = 0.5 * (a + a.T) * rng.choice([0.01, 1.0, 100.0])
        if trial % 3 == 0:
            h = a @ a.T + 0.1 * np.eye(n)  # positive definite: sometimes inside
        b = rng.normal(size=n) * rng.choice([1e-3, 1.0, 30.0])
        radius = rng.choice([0.1, 1.0, 5.0])
        _certificate(b, h, radius, wc.trust_region_step(b, h, radius))


def test_the_subproblem_against_a_dense_search_of_the_disc():
    rng = np.random.default_rng(3)
    t = np.linspace(0.0, 2 * np.pi, 10_001)
    rho = np.sqrt(np.linspace(0.0, 1.0, 201))
    x, y = np.outer(rho, np.cos(t)).ravel(), np.outer(rho, np.sin(t)).ravel()
    for _ in range(20):
        a = rng.normal(size=(2, 2))
        h, b = a + a.T, rng.normal(size=2)
        sub = wc.trust_region_step(b, h)
        dense = b[0] * x + b[1] * y + 0.5 * (h[0, 0] * x * x + 2 * h[0, 1] * x * y + h[1, 1] * y * y)
        assert sub.value <= dense.min() + 1e-12  # no point of the disc is better
        assert sub.value == pytest.approx(dense.min(), abs=1e-4 * (1 + abs(dense.min())))


def test_the_hard_case_and_the_interior():
    # b orthogonal to the most negative curvature's eigenvector: mu = 1, w = -(0, 1/3), then
    # along e1 to the sphere
    sub = wc.trust_region_step(np.array([0.0, 1.0]), np.diag([-1.0, 2.0]))
    assert sub.hard_case and sub.mu == pytest.approx(1.0)
    assert abs(sub.step[0]) == pytest.approx(math.sqrt(8.0 / 9.0), rel=1e-12)
    assert sub.step[1] == pytest.approx(-1.0 / 3.0, rel=1e-12)
    assert sub.value == pytest.approx(-1.0 / 3.0 + 0.5 * (-8.0 / 9.0 + 2.0 / 9.0), rel=1e-12)
    inside = wc.trust_region_step(np.array([0.1, -0.2]), np.diag([2.0, 4.0]))
    np.testing.assert_allclose(inside.step, [-0.05, 0.05], rtol=1e-14)
    assert inside.mu == 0.0 and not inside.hard_case
    # a linear model: Studer's closed form -b / |b| on the unit ball
    b = np.array([3.0, -4.0])
    np.testing.assert_allclose(wc.trust_region_step(b, np.zeros((2, 2))).step, -b / 5.0, rtol=1e-12)


def test_the_finite_difference_model_is_exact_on_a_quadratic():
    rng = np.random.default_rng(7)
    r = 4
    a = rng.normal(size=(r, r))
    h, g, f0 = a + a.T, rng.normal(size=r), 0.7
    u = rng.normal(size=r) * 0.3
    points = u[:, None] + wc._stencil(r) * wc.BUMP
    values = np.array([f0 + g @ (p - u) + 0.5 * (p - u) @ h @ (p - u) for p in points.T])
    assert points.shape[1] == r * r + r + 1
    f, g_fd, h_fd = wc._model(values, r, wc.BUMP)
    assert f == f0
    np.testing.assert_allclose(g_fd, g, atol=1e-9)
    np.testing.assert_allclose(h_fd, h, atol=1e-6)


def test_whitening_and_the_cost_bound():
    s = np.array([[0.04, 0.01, 0.0], [0.01, 0.09, 0.0], [0.0, 0.0, 0.0]])  # singular: the third never moves
    w = wc.whitening(s)
    assert w.shape == (3, 2)
    np.testing.assert_allclose(w @ w.T, s, atol=1e-15)
    q = wc.WorstCaseQuestion(level=0.99, max_iterations=10)
    assert wc.planned_revaluations(7, 3, q) == 7 * (13 * (1 + wc.MAX_STARTS * 10) + 1)
    reverse = wc.WorstCaseQuestion(level=None, loss=1.0, max_iterations=10, radius_steps=4)
    assert wc.planned_revaluations(7, 3, reverse) == 7 * (13 * (1 + wc.MAX_STARTS * 10) * 5 + 1)


def test_the_search_checks_the_call_between_passes():
    """The call's watch is asked before every pass (and by the pricing service between a
    pass's chunks; the kernels poll its stop block): once it says the call is over, the
    search stops with its code."""
    from pricegrid.server.app import demo
    from pricegrid.server.domain.errors import Code, ServiceError
    from pricegrid.server.domain.instruments import MarketBatch, SnapshotMarket
    from pricegrid.server.domain.models import Model
    from pricegrid.server.domain.products import PRODUCTS, ProductBatch
    from pricegrid.server.domain.scenarios import Quantity, Shift, ShiftKind, Smile
    from pricegrid.server.service.market import MarketDataService
    from pricegrid.server.service.pricing import Limits, PricingService
    from pricegrid.server.service.scenarios import Book, ScenarioRevaluer
    from pricegrid.server.store.sqlite import SqliteSnapshotStore

    market = MarketDataService(SqliteSnapshotStore(":memory:"))
    record, _ = market.put(demo.snapshot(), force=True, reason="test")
    service = PricingService(Limits(), snapshots=market.snapshot)
    spec = service.catalogue.find("european", Model.BLACK_SCHOLES_MERTON)
    batch = ProductBatch(PRODUCTS["european"], {"option_type": np.array([1, 2], dtype=np.int32),
                                                "strike": np.array([6000.0, 6000.0]),
                                                "time_to_expiry": np.array([0.5, 0.5])})
    ref = SnapshotMarket(record.snapshot_id, "SPX", MarketBatch(np.zeros(1), np.zeros(1), np.zeros(1), None))
    books = [Book(spec, batch, ref, 2, {"rate": "market.rate"}, np.array([-1.0, -1.0]))]
    shifts = (Shift("spot", Quantity.SPOT, ShiftKind.LOG, ("SPX",)),
              Shift("vol", Quantity.VOL, ShiftKind.ABSOLUTE, ("SPX-SVI",)))
    cov = np.array([[0.04 ** 2, -0.3 * 0.04 * 0.015], [-0.3 * 0.04 * 0.015, 0.015 ** 2]])
    asked = []

    def over_after_two():
        asked.append(1)
        return Code.DEADLINE_EXCEEDED if len(asked) > 2 else None

    def run(should_continue):
        return wc.worst_case(ScenarioRevaluer(service), books, shifts, Smile.STICKY_STRIKE, cov,
                             wc.WorstCaseQuestion(level=0.99), rows=2, trade_ids=["C", "P"],
                             should_continue=should_continue)

    free = run(None)
    assert free.iterations >= 3 and free.converged and free.pnl < 0
    with pytest.raises(ServiceError) as e:  # asked before the first pass
        run(lambda: Code.CANCELLED)
    assert e.value.code == Code.CANCELLED and "worst-case search stopped between passes" in e.value.message
    with pytest.raises(ServiceError) as e:  # asked between passes and between a pass's chunks
        run(over_after_two)
    assert e.value.code == Code.DEADLINE_EXCEEDED and len(asked) == 3  # nothing more once it said so
