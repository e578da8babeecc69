"""The cost estimate (pricegrid.server.domain.cost): what each engine's work is counted in,
and how a batch's rows add up. Its figures against measured time: bench/calibrate_cost.py."""

import numpy as np
import pytest

from pricegrid.server.domain import cost
from pricegrid.server.domain.catalogue import Settings
from pricegrid.server.domain.instruments import MarketBatch
from pricegrid.server.domain.models import Engine, Measure, Model
from pricegrid.server.domain.products import Schedule
from pricegrid.server.pricers import catalogue as pricers

PRICE = (Measure.PRICE,)
ALL = (Measure.PRICE, Measure.DELTA, Measure.GAMMA, Measure.VEGA, Measure.THETA, Measure.RHO, Measure.DIVIDEND_RHO)


def spec(product, model, engine):
    return pricers.CATALOGUE.find(product, model, engine)


def test_every_engine_has_measured_costs():
    assert all(s.cost is not None for s in pricers.CATALOGUE)


def test_monte_carlo_steps_per_row():
    t = {"time_to_expiry": np.array([1.0, 0.5, 0.0, np.nan, -1.0])}
    gbm = cost.mc_steps(Model.BLACK_SCHOLES_MERTON, "european", t, None, 1 / 52)
    np.testing.assert_array_equal(gbm, [1, 1, 0, 0, 0])  # one exact step, none at expiry
    np.testing.assert_array_equal(cost.mc_steps(Model.HESTON, "european", t, None, 1 / 52), [52, 26, 0, 0, 0])
    asian = cost.mc_steps(Model.BLACK_SCHOLES_MERTON, "asian", {"time_to_expiry": np.array([1.0, 1.0])},
                          Schedule(np.linspace(0.1, 1.0, 12), np.array([10, 2], dtype=np.int32)), 0.25)
    np.testing.assert_array_equal(asian, [14, 6])
    barrier = cost.mc_steps(Model.BLACK_SCHOLES_MERTON, "barrier",
                            {"time_to_expiry": np.array([1.0]), "monitoring_interval": np.array([0.1])}, None, 0.5)
    np.testing.assert_array_equal(barrier, [2 + 11])
    huge = cost.mc_steps(Model.HESTON, "lookback", {"time_to_expiry": np.array([1e9])}, None, 1e-9)
    assert huge[0] == cost.MC_MAX_STEPS


def test_monte_carlo_cost_is_paths_times_steps():
    s = spec("european", Model.HESTON, Engine.MONTE_CARLO)
    cols = {"time_to_expiry": np.array([1.0]), "option_type": np.array([1], dtype=np.int32)}
    small = cost.estimate(s, "european", cols, None, None, PRICE, Settings(paths=10_000), 1)
    large = cost.estimate(s, "european", cols, None, None, PRICE, Settings(paths=1_000_000), 1)
    greeks = cost.estimate(s, "european", cols, None, None, ALL, Settings(paths=1_000_000), 1)
    sobol = cost.estimate(s, "european", cols, None, None, PRICE, Settings(paths=1_000_000, sobol=True), 1)
    assert large.seconds == pytest.approx(100 * small.seconds, rel=0.05)
    assert greeks.seconds > 2 * large.seconds and sobol.seconds == pytest.approx(1.5 * large.seconds, rel=0.05)
    assert large.field == "settings.paths" and "1000000 paths x up to 52 time steps" in large.detail
    # 10M paths of a one-year Heston European: seconds of one core, over the unary default
    assert 2.0 < cost.estimate(s, "european", cols, None, None, PRICE, Settings(paths=10_000_000), 1).seconds < 60


def test_trees_count_nodes_and_one_tree_per_bump():
    s = spec("american", Model.BLACK_SCHOLES_MERTON, Engine.BINOMIAL_TREE)
    cols = {"time_to_expiry": np.array([1.0])}
    price = cost.estimate(s, "american", cols, None, None, PRICE, Settings(tree_steps=801), 10)
    greeks = cost.estimate(s, "american", cols, None, None, ALL, Settings(tree_steps=801), 10)
    delta = cost.estimate(s, "american", cols, None, None, (Measure.PRICE, Measure.DELTA, Measure.GAMMA),
                          Settings(tree_steps=801), 10)
    assert greeks.seconds == pytest.approx(7 * price.seconds) and delta.seconds == price.seconds
    bigger = cost.estimate(s, "american", cols, None, None, PRICE, Settings(tree_steps=8001), 10)
    assert bigger.seconds == pytest.approx(price.seconds * (8002 * 8003) / (802 * 803))
    assert price.field == "settings.tree_steps" and price.seconds == pytest.approx(10 * 802 * 803 / 2 * 0.25e-9)


def test_fixed_point_rows_in_the_two_boundary_regime_cost_a_tree():
    s = spec("american", Model.BLACK_SCHOLES_MERTON, Engine.FIXED_POINT)
    cols = {"time_to_expiry": np.array([1.0]), "option_type": np.array([2, 2, 1], dtype=np.int32)}
    one = MarketBatch(np.array([100.0]), np.array([0.03]), np.array([0.01]), np.array([0.2]))
    two = MarketBatch(np.array([100.0]), np.array([-0.01]), np.array([-0.03]), np.array([0.2]))  # q < r < 0
    settings = Settings(tree_steps=50_001)
    plain = cost.estimate(s, "american", cols, None, one, PRICE, settings, 3)
    mixed = cost.estimate(s, "american", cols, None, two, PRICE, settings, 3)
    assert plain.field == "rows" and plain.seconds == pytest.approx(3 * 12e-6)
    assert mixed.field == "settings.tree_steps" and "2 row(s) in the two-boundary regime" in mixed.detail
    assert mixed.seconds == pytest.approx(2 * 50_002 * 50_003 / 2 * 0.25e-9 + 12e-6)


def test_analytic_engines_cost_rows():
    s = spec("barrier", Model.BLACK_SCHOLES_MERTON, Engine.ANALYTIC)
    est = cost.estimate(s, "barrier", {"time_to_expiry": np.ones(5)}, None, None, ALL, Settings(), 1_000_000)
    assert est.field == "rows" and est.seconds == pytest.approx(1.5)
    assert cost.chunk_rows(est.max_row_ns, 1, 262_144) == 13_333
    assert cost.chunk_rows(est.max_row_ns, 4, 262_144) == 53_333
    assert cost.chunk_rows(10.0, 1, 262_144) == 262_144 and cost.chunk_rows(1e12, 1, 262_144) == 1
