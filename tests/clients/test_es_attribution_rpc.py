"""ES attribution of a scenario run (RunScenarioRisk's es_attribution and incremental_es)
through RiskClient against a real server: each trade's Euler component and incremental ES
equal the domain's attribution of the run's own cube and a plain numpy ES; the components
add up to the ES; a node's are its trades' (component) and its own P&L's (incremental)."""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest

from pricegrid.clients import MarketClient, PricingError, Shift
from pricegrid.server.domain.risk import es_attribution

LEVELS = (0.975, 0.9)


@pytest.fixture(scope="module")
def sid(server):
    with MarketClient(target=server.address, timeout=10) as market:
        return market.list_snapshots("demo")[0].id


@pytest.fixture(scope="module")
def run(risk, sid):
    """The run and each trade's (desk, book) tags, in the portfolio's order."""
    rng = np.random.default_rng(17)
    n = 30
    desks = np.where(rng.random(n) < 0.5, "d1", "d2")
    books = [risk.book("european", model="bsm", underlying_id="SPX", snapshot_id=sid,
                       option_type=np.where(rng.random(n) < 0.5, "call", "put"), strike=rng.uniform(5000, 7000, n),
                       time_to_expiry=rng.uniform(0.1, 2.0, n), quantity=rng.choice([-3.0, 1.0, 2.0], n),
                       tags={"desk": desks, "book": "vanilla"}),
             risk.book("barrier", model="bsm", underlying_id="SPX", snapshot_id=sid, option_type="put",
                       barrier_type="down_out", strike=rng.uniform(5500, 6500, 8), barrier=4800.0,
                       time_to_expiry=rng.uniform(0.3, 1.5, 8), quantity=-5.0, tags={"desk": "d2", "book": "exotic"}),
             risk.book("european", model="black76", underlying_id="EUA-DEC27", snapshot_id=sid,
                       option_type="call", strike=rng.uniform(70, 90, 6), time_to_expiry=rng.uniform(0.2, 0.9, 6),
                       quantity=40.0, tags={"desk": "d3", "book": "carbon"})]
    tags = {"desk": np.concatenate([desks, ["d2"] * 8, ["d3"] * 6]),
            "book": np.array(["vanilla"] * n + ["exotic"] * 8 + ["carbon"] * 6)}
    shifts = [Shift("spx", "spot", "log", ["SPX"]), Shift("eua", "spot", "log", ["EUA-*"]),
              Shift("vol", "vol", "absolute", ["*"]), Shift("usd", "zero_rate", "absolute", ["USD-*"])]
    s = 400
    sizes = np.vstack([rng.normal(0, 0.03, s), rng.normal(0, 0.05, s), rng.normal(0, 0.02, s),
                       rng.normal(0, 0.002, s)])
    r = risk.scenario_risk(books=books, shifts=shifts, sizes=sizes, labels=[f"s{j}" for j in range(s)],
                           output="both", es_levels=LEVELS, es_attribution=True, incremental_es=True,
                           aggregate_by=["desk", "book"])
    return r, tags


def _es(pnl: np.ndarray, level: float) -> float:
    """Acerbi-Tasche ES of a P&L vector, plain numpy (a positive number for losses)."""
    loss = np.sort(-pnl)[::-1]  # largest loss first
    n = len(loss)
    m = n * (1 - level)
    k = math.floor(m)
    return float((loss[:k].sum() + (m - k) * loss[k]) / m) if k < n else float(loss.mean())


def test_each_trades_component_and_incremental_es_are_the_cubes(run):
    run, _ = run
    cube = run.cube
    assert cube.shape == (44, 400) and not run.errors
    assert run.trade_component_es.shape == (44, 2) and run.trade_incremental_es.shape == (44, 2)
    assert 0 < run.tail_scenarios <= math.ceil(400 * 0.1) + 1
    total = cube.sum(axis=0)
    for j, level in enumerate(LEVELS):
        ref = es_attribution(cube, es_level=level, var_level=0.99)
        assert run.expected_shortfall[level] == pytest.approx(ref.es, rel=1e-12)
        assert run.expected_shortfall[level] == pytest.approx(_es(total, level), rel=1e-12)
        np.testing.assert_allclose(run.trade_component_es[:, j], ref.component, rtol=1e-10, atol=1e-9)
        assert run.trade_component_es[:, j].sum() == pytest.approx(run.expected_shortfall[level], rel=1e-11)
        np.testing.assert_allclose(run.trade_incremental_es[:, j], ref.incremental, rtol=1e-10, atol=1e-8)
        for i in (0, 31, 43):  # against a plain numpy ES of the portfolio without the trade
            assert run.trade_incremental_es[i, j] == pytest.approx(
                _es(total, level) - _es(total - cube[i], level), rel=1e-9, abs=1e-8)


def test_a_nodes_component_is_its_trades_and_its_incremental_its_own(run):
    run, tags = run
    total = run.cube.sum(axis=0)
    assert [n.path for n in run.nodes][:2] == [("desk=d1",), ("desk=d1", "book=vanilla")]
    for node in run.nodes:
        rows = np.ones(len(run.trade_ids), bool)
        for part in node.path:
            name, value = part.split("=")
            rows &= tags[name] == value
        assert node.trades == rows.sum()
        for j, level in enumerate(LEVELS):
            assert node.component_es[level] == pytest.approx(run.trade_component_es[rows, j].sum(), rel=1e-10,
                                                             abs=1e-8)
            assert node.incremental_es[level] == pytest.approx(
                _es(total, level) - _es(total - run.cube[rows].sum(axis=0), level), rel=1e-9, abs=1e-8)
    top = [n for n in run.nodes if len(n.path) == 1]
    assert sum(n.component_es[0.975] for n in top) == pytest.approx(run.expected_shortfall[0.975], rel=1e-11)


def test_bad_attribution_requests_are_named(risk, sid):
    book = risk.book("european", model="bsm", underlying_id="SPX", snapshot_id=sid, option_type="call",
                     strike=[6000.0], time_to_expiry=[1.0])
    shifts, sizes = [Shift("spx", "spot", "relative", ["SPX"])], [[-0.1, 0.1]]
    with pytest.raises(PricingError) as e:
        risk.scenario_risk(books=[book], shifts=shifts, sizes=sizes, labels=["a", "b"], incremental_es=True)
    assert e.value.field == "incremental_es" and e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(PricingError) as e:
        risk.scenario_risk(books=[book], shifts=shifts, sizes=sizes, labels=["a", "b"], es_attribution=True,
                           output="cube")
    assert e.value.field == "es_attribution"


def test_the_cell_cap_counts_the_attribution_and_incremental_passes():
    """The cap counted one pass (two with incremental_es), but the attribution revalues the
    tail again: at a low ES level the whole cube. It counts trades x (n + t + n with
    incremental_es), t = min(n, n - floor(n level) + 1) at the lowest ES level, the most the
    tail pass revalues."""
    from pricegrid.clients import RiskClient
    from tests.conftest import start_server

    small = start_server(max_scenario_cells=3_000)
    rng = np.random.default_rng(3)
    try:
        with RiskClient(target=small.address, timeout=30) as client, \
                MarketClient(target=small.address, timeout=10) as market:
            sid = market.list_snapshots("demo")[0].id
            book = client.book("european", model="bsm", underlying_id="SPX", snapshot_id=sid, option_type="call",
                               strike=rng.uniform(5500, 6500, 20), time_to_expiry=rng.uniform(0.2, 2.0, 20))
            shifts, sizes = [Shift("spx", "spot", "relative", ["SPX"])], rng.normal(0, 0.03, (1, 100))
            labels = [f"s{j}" for j in range(100)]

            def run(**kw):
                return client.scenario_risk(books=[book], shifts=shifts, sizes=sizes, labels=labels, **kw)

            ok = run(es_attribution=True, es_levels=[0.975, 0.99])  # 20 x (100 + 4) = 2,080
            assert 0 < ok.tail_scenarios <= 100 - math.floor(100 * 0.975) + 1
            for kw, cells in ((dict(es_attribution=True, es_levels=[0.01]), "20 x (100 + 100)"),
                              (dict(es_attribution=True, incremental_es=True), "20 x (100 + 4 + 100)")):
                with pytest.raises(PricingError) as e:
                    run(**kw)
                assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and e.value.field == "scenarios.labels", kw
                assert "revaluations; at most 3,000" in str(e.value), cells
    finally:
        small.stop(1.0)
