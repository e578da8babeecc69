"""RiskService.RunScenarioRisk through RiskClient.scenario_risk against a real server (the
session's, 127.0.0.1, with its built-in demo snapshot): the cube equals each scenario's
market priced on its own through Price, bit for bit; the aggregates equal numpy's on the
cube; blocks, float32, per-row errors, bad requests named by field, caps, cancellation."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from pricegrid.clients import EuropeanOption, FrontOfficeClient, Market, MarketClient, PricingError, RiskClient, Shift
from pricegrid.server.app import demo
from pricegrid.server.domain.instruments import MarketBatch, SnapshotMarket
from pricegrid.server.domain.models import Model
from pricegrid.server.domain.products import PRODUCTS, ProductBatch
from pricegrid.server.service.market import MarketDataService
from pricegrid.server.service.pricing import Limits, PricingService
from pricegrid.server.store.sqlite import SqliteSnapshotStore

TRADES = 40


@pytest.fixture(scope="module")
def book():
    rng = np.random.default_rng(21)
    return {"option_type": np.where(rng.random(TRADES) < 0.5, "call", "put"),
            "strike": rng.uniform(5200, 6800, TRADES), "time_to_expiry": rng.uniform(0.1, 2.5, TRADES),
            "quantity": rng.choice([-2.0, 1.0, 3.0], TRADES)}


def run(risk, snapshot_id, book, shifts, sizes, labels, **kw):
    return risk.scenario_risk(snapshot_id=snapshot_id, underlying_id="SPX", model="bsm", shifts=shifts, sizes=sizes,
                              labels=labels, option_type=book["option_type"], strike=book["strike"],
                              time_to_expiry=book["time_to_expiry"], quantity=book["quantity"],
                              trade_ids=[f"T{i}" for i in range(TRADES)], **kw)


def base_market(book):
    """The trades' base market numbers, read from the same demo snapshot in this process."""
    market = MarketDataService(SqliteSnapshotStore(":memory:"))
    record, _ = market.put(demo.snapshot(), force=True, reason="test")
    service = PricingService(Limits(), snapshots=market.snapshot)
    spec = service.catalogue.find("european", Model.BLACK_SCHOLES_MERTON)
    batch = ProductBatch(PRODUCTS["european"], {"option_type": np.where(book["option_type"] == "call", 1, 2).astype(np.int32),
                                                "strike": book["strike"], "time_to_expiry": book["time_to_expiry"]})
    ref = SnapshotMarket(record.snapshot_id, "SPX", MarketBatch(np.zeros(1), np.zeros(1), np.zeros(1), None))
    m, _, _ = service.resolve_market(spec, batch, ref, {})
    return m.underlying, m.rate, m.dividend_yield, m.volatility


def test_the_cube_is_each_scenarios_market_priced_through_price_bit_for_bit(server, risk, snapshot_id, book):
    shifts = [Shift("spot", "spot", "relative", ["SPX"]), Shift("vol", "vol", "absolute", ["SPX-SVI"]),
              Shift("rate", "zero_rate", "absolute", ["USD-*"])]
    sizes = np.array([[-0.15, 0.0, 0.05], [0.05, 0.0, -0.02], [0.002, 0.0, -0.001]])
    r = run(risk, snapshot_id, book, shifts, sizes, ["crash", "flat", "rally"], output="both", trade_risk=True)
    assert r.trade_ids[3] == "T3" and r.scenario_labels == ["crash", "flat", "rally"]
    assert r.components == ["spot", "vol", "rate"] and r.cube.shape == (TRADES, 3) and not r.errors
    assert r.market["vol_surface"] == "SPX-SVI" and r.market["snapshot_id"] == snapshot_id
    assert r.priced_by["engine"] == "analytic_european"
    np.testing.assert_array_equal(r.cube[:, 1], 0.0)
    level, rate, q, vol = base_market(book)
    with FrontOfficeClient(target=server.address, timeout=10) as fo:
        def price(i, x_spot, x_vol, x_rate):
            option = EuropeanOption(option_type=str(book["option_type"][i]), strike=float(book["strike"][i]),
                                    expiry=float(book["time_to_expiry"][i]))
            return fo.price(option, Market(spot=float(level[i] * (1 + x_spot)), rate=float(rate[i] + x_rate),
                                           dividend_yield=float(q[i]), volatility=float(vol[i] + x_vol))).price
        for i in (0, 7, TRADES - 1):
            base = price(i, 0.0, 0.0, 0.0)
            assert r.base[i] == base * book["quantity"][i]
            for j in (0, 2):
                assert r.cube[i, j] == (price(i, *sizes[:, j]) - base) * book["quantity"][i], (i, j)
    # the aggregates are the cube's, summed and ranked as the domain states
    np.testing.assert_allclose(r.portfolio_pnl, r.cube.sum(axis=0), rtol=1e-12)
    losses = -r.portfolio_pnl
    assert r.var[0.99] == pytest.approx(np.sort(losses)[int(np.ceil(3 * 0.99)) - 1])
    assert r.trade_var.shape == (TRADES, 1) and r.trade_expected_shortfall.shape == (TRADES, 1)
    assert r.trade_var[5, 0] == pytest.approx(np.max(-r.cube[5]))


def test_aggregates_only_by_default_and_a_cube_in_several_float32_blocks(risk, snapshot_id, book):
    rng = np.random.default_rng(5)
    scenarios = 20_000  # 40 trades x 20k x 8 bytes = 6.4 MB: more than one block
    shifts = [Shift("spot", "spot", "log", ["SPX"]), Shift("vol", "vol", "relative", ["SPX-SVI"],
                                                           grid_expiries=["6M", "2Y"], grid_moneyness=[0.9, 1.1])]
    sizes = np.vstack([rng.normal(0, 0.02, scenarios), rng.normal(0, 0.05, (4, scenarios))])
    labels = [f"d{j}" for j in range(scenarios)]
    agg = run(risk, snapshot_id, book, shifts, sizes, labels)
    assert agg.cube is None and agg.blocks == 0 and agg.portfolio_pnl.shape == (scenarios,)
    assert agg.trade_var is None  # not asked
    seen = []
    both = run(risk, snapshot_id, book, shifts, sizes, labels, output="both", cube_type="float32",
               progress=lambda done, total: seen.append((done, total)))
    assert both.blocks >= 2 and seen[-1] == (TRADES, TRADES)
    np.testing.assert_array_equal(agg.portfolio_pnl, both.portfolio_pnl)
    np.testing.assert_allclose(both.cube.sum(axis=0), both.portfolio_pnl, rtol=1e-5, atol=1e-2)
    es = np.sort(-agg.portfolio_pnl)[::-1][: int(np.ceil(scenarios * 0.025))].mean()
    assert agg.expected_shortfall[0.975] == pytest.approx(es, rel=1e-12)


def test_a_cell_that_cannot_be_priced_is_a_row_error_and_left_out_of_the_sums(risk, snapshot_id, book):
    shifts = [Shift("vol", "vol", "absolute", ["SPX-SVI"])]
    r = run(risk, snapshot_id, book, shifts, np.array([[0.01, -9.0]]), ["up", "impossible"], output="both",
            trade_risk=True)
    assert np.isnan(r.cube[:, 1]).all() and np.isfinite(r.cube[:, 0]).all()
    assert len(r.errors) == TRADES and {e.scenario for e in r.errors} == {1}
    assert r.failed_cells == TRADES and r.portfolio_pnl[1] == 0.0
    assert all(e.field == "portfolio.market.volatility" and "finite and > 0" in e.message for e in r.errors)
    assert np.isnan(r.trade_var).all()  # every trade failed in one scenario


def test_bad_requests_name_their_fields(risk, snapshot_id, book):
    with pytest.raises(PricingError) as e:
        run(risk, snapshot_id, book, [Shift("x", "zero_rate", "absolute", ["EUR-*"])], [[0.01]], ["a"])
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.field == "scenarios.shifts[0].selector"
    bad = dict(book, strike=np.where(np.arange(TRADES) == 3, np.nan, book["strike"]))
    r = run(risk, snapshot_id, bad, [Shift("s", "spot", "relative", ["SPX"])], [[0.1]], ["a"], output="both")
    # a bad trade is a row error of the base valuation and of its scenarios, not a failed run
    assert np.isnan(r.base[3]) and [e.row for e in r.base_errors] == [3]
    assert r.base_errors[0].field == "portfolio.european.strike"
    assert [(e.trade, e.scenario) for e in r.errors] == [(3, 0)] and np.isfinite(np.delete(r.cube, 3, axis=0)).all()
    with pytest.raises(PricingError) as e:
        run(risk, "no-such-snapshot", book, [Shift("s", "spot", "relative", ["SPX"])], [[0.1]], ["a"])
    assert e.value.code == grpc.StatusCode.NOT_FOUND and e.value.field == "portfolio.market.snapshot_id"
    for selector in (["*"], ["NOPE"]):  # the unknown underlying is named, not the shift that matches nothing
        with pytest.raises(PricingError) as e:
            risk.scenario_risk(snapshot_id=snapshot_id, underlying_id="NOPE", model="bsm",
                               shifts=[Shift("s", "spot", "relative", selector)], sizes=[[0.1]], labels=["a"],
                               option_type=book["option_type"], strike=book["strike"],
                               time_to_expiry=book["time_to_expiry"], quantity=book["quantity"])
        assert e.value.code == grpc.StatusCode.NOT_FOUND and e.value.field == "portfolio.market.underlying_id"
    with pytest.raises(PricingError) as e:
        run(risk, snapshot_id, book, [Shift("r", "zero_rate", "absolute", ["USD-OIS"], tenors=["3M", "1X"])],
            [[0.0], [0.0]], ["a"], var_levels=(1.5,))
    fields = {f for f, _ in e.value.field_violations}
    assert {"scenarios.shifts[0].buckets.tenors[1]", "var_levels[0]"} <= fields
    # the value quoted as sent (numpy 2 wrote "np.float64(1.5)")
    assert dict(e.value.field_violations)["var_levels[0]"].endswith("(got 1.5)")
    with pytest.raises(ValueError):  # the client checks the sizes' shape against the shifts
        run(risk, snapshot_id, book, [Shift("s", "spot", "relative", ["SPX"])], [[0.1, 0.2]], ["a"])


def test_the_cell_cap_is_resource_exhausted(server, snapshot_id, book):
    from tests.conftest import start_server

    small = start_server(max_scenario_cells=100)
    try:
        with RiskClient(target=small.address, timeout=30) as client:
            with MarketClient(target=small.address, timeout=10) as market:
                sid = market.list_snapshots("demo")[0].id
            with pytest.raises(PricingError) as e:
                run(client, sid, book, [Shift("s", "spot", "relative", ["SPX"])], [[0.1, 0.2, 0.3]], ["a", "b", "c"])
            assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "120 revaluations; at most 100" in str(e.value)
    finally:
        small.stop(1.0)


def test_a_run_past_its_deadline_stops_and_the_server_keeps_serving(risk, snapshot_id, book):
    rng = np.random.default_rng(9)
    scenarios = 200_000
    big = {k: np.tile(v, 5) for k, v in book.items()}  # 200 trades x 200k scenarios = 40M revaluations
    with pytest.raises(PricingError) as e:
        risk.scenario_risk(snapshot_id=snapshot_id, underlying_id="SPX", model="bsm",
                           shifts=[Shift("s", "spot", "log", ["SPX"])], sizes=rng.normal(0, 0.01, (1, scenarios)),
                           labels=[str(j) for j in range(scenarios)], option_type=big["option_type"],
                           strike=big["strike"], time_to_expiry=big["time_to_expiry"], timeout=0.02)
    assert e.value.code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)
    ok = run(risk, snapshot_id, book, [Shift("s", "spot", "relative", ["SPX"])], [[0.1]], ["a"])
    assert ok.portfolio_pnl.shape == (1,)


def test_an_empty_scenario_set_is_refused_naming_its_fields(risk, snapshot_id, book):
    with pytest.raises(PricingError) as e:
        run(risk, snapshot_id, book, [], np.zeros((0, 0)), [])
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {"scenarios.shifts", "scenarios.labels"} <= {f for f, _ in e.value.field_violations}


def _json_objects(text):
    import json

    decoder, i = json.JSONDecoder(), 0
    while (i := text.find("{", i)) >= 0:
        try:
            obj, end = decoder.raw_decode(text, i)
        except ValueError:
            i += 1
            continue
        yield obj
        i = end


def test_cli_risk_run_from_a_csv_and_a_yaml_file(server, snapshot_id, tmp_path, capsys):
    import csv
    import json

    from pricegrid.clients import cli

    book = tmp_path / "book.csv"
    book.write_text("trade_id,option_type,strike,time_to_expiry,quantity,desk\n"
                    "A,call,6000,0.5,2,eq\nB,put,5800,1.0,-1,eq\nC,call,6500,2.0,3,vol\n")
    stress = tmp_path / "stress.yaml"
    stress.write_text("labels: [crash, flat, rally]\n"
                      "shifts:\n"
                      "  - {name: spot, quantity: spot, kind: relative, selector: [SPX], sizes: [-0.2, 0.0, 0.1]}\n"
                      "  - name: rates\n    quantity: zero_rate\n    kind: absolute\n    selector: ['USD-*']\n"
                      "    tenors: [ON, 6M, 2Y]\n    sizes: [[0, 0, 0], [0.001, 0, -0.001], [0.002, 0, -0.002]]\n")
    cube_csv, png = tmp_path / "cube.csv", tmp_path / "pnl.png"
    argv = ["risk", "run", "--portfolio", str(book), "--scenarios", str(stress), "--snapshot", snapshot_id,
            "--underlying", "SPX", "--cube-csv", str(cube_csv), "--png", str(png), "--trade-risk",
            "--aggregate-by", "desk",
            "--target", server.address, "--json"]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    doc = next(d for d in _json_objects(text) if "portfolio_pnl" in d)
    assert doc["trades"] == 3 and doc["scenarios"] == 3 and doc["failed_cells"] == 0
    assert doc["portfolio_pnl"]["flat"] == 0.0 and doc["portfolio_pnl"]["crash"] != 0.0
    assert set(doc["trade_var"]) == {"A", "B", "C"}
    assert [(n["path"], n["trades"]) for n in doc["nodes"]] == [(["desk=eq"], 2), (["desk=vol"], 1)]
    with cube_csv.open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["trade_id", "crash", "flat", "rally"] and [r[0] for r in rows[1:]] == ["A", "B", "C"]
    assert sum(float(r[1]) for r in rows[1:]) == pytest.approx(doc["portfolio_pnl"]["crash"], rel=1e-12)
    assert png.stat().st_size > 1000
    # an output it cannot write: exit 2, one line, no traceback
    nowhere = tmp_path / "missing" / "x"
    for flag in ("--cube-csv", "--png"):
        bad = [nowhere if a in (str(cube_csv), str(png)) and argv[i - 1] == flag else a for i, a in enumerate(argv)]
        assert cli.main([str(a) for a in bad]) == 2
        err = capsys.readouterr().err
        assert f"error: cannot write {nowhere}: No such file or directory" in err and "Traceback" not in err
    # a mistake in the file is named, exit 2
    stress.write_text("labels: [a]\nshifts:\n  - {name: s, quantity: spot, selector: [SPX], sizes: [1, 2]}\n")
    assert cli.main(argv[:-1]) == 2
    assert "shifts[0].sizes" in capsys.readouterr().err


def test_aggregation_by_tags_into_a_hierarchy(risk, snapshot_id, book):
    from pricegrid.server.domain.risk import historical_risk

    rng = np.random.default_rng(4)
    desk = np.where(np.arange(TRADES) < 25, "equity", "vol")
    books = np.array([f"B{i % 3}" for i in range(TRADES)])
    shifts = [Shift("spot", "spot", "log", ["SPX"]), Shift("vol", "vol", "absolute", ["SPX-SVI"])]
    sizes = np.vstack([rng.normal(0, 0.03, 200), rng.normal(0, 0.02, 200)])
    r = run(risk, snapshot_id, book, shifts, sizes, [f"s{j}" for j in range(200)], output="both",
            tags={"desk": desk, "book": books, "region": "EU"}, aggregate_by=["desk", "book"],
            var_levels=(0.99, 0.95))
    assert [n.path for n in r.nodes][:4] == [("desk=equity",), ("desk=equity", "book=B0"), ("desk=equity", "book=B1"),
                                             ("desk=equity", "book=B2")]
    assert len(r.nodes) == 2 + 6
    for n in r.nodes:
        rows = np.ones(TRADES, bool)
        for part in n.path:
            name, value = part.split("=")
            rows &= {"desk": desk, "book": books}[name] == value
        assert n.trades == rows.sum()
        np.testing.assert_allclose(n.pnl, r.cube[rows].sum(axis=0), rtol=1e-12, atol=1e-9)
        tail = historical_risk(n.pnl, var_level=[0.99, 0.95], es_level=[0.975])
        assert n.var == {0.99: tail.var[0], 0.95: tail.var[1]} and n.expected_shortfall == {0.975: tail.es[0]}
    # children sum to their parent
    np.testing.assert_allclose(sum(r.node("desk=vol", f"book=B{i}").pnl for i in range(3)), r.node("desk=vol").pnl,
                               rtol=1e-12, atol=1e-9)
    with pytest.raises(PricingError) as e:
        run(risk, snapshot_id, book, shifts, sizes, [f"s{j}" for j in range(200)], tags={"desk": desk},
            aggregate_by=["book"])
    assert e.value.field == "aggregate_by[0]"


def test_parametric_var_against_closed_forms_and_bad_covariances(risk):
    from statistics import NormalDist

    from pricegrid.server.domain.risk import parametric_var

    s = np.array([[0.04, 0.006, 0.0], [0.006, 0.09, -0.01], [0.0, -0.01, 0.01]])
    d = np.array([[1000.0, -500.0, 200.0], [0.0, 300.0, 0.0]])
    g = np.array([[-50.0, 0.0, 0.0], [0.0, 20.0, 0.0], [0.0, 0.0, 0.0]])
    books = risk.parametric_var(d, s, factors=["spx", "vix", "usd"], books=["eq", "vol"], levels=(0.99, 0.95))
    for i, b in enumerate(books):
        sigma = float(np.sqrt(d[i] @ s @ d[i]))
        assert b.book == ("eq", "vol")[i] and b.standard_deviation == pytest.approx(sigma, rel=1e-12)
        assert b.var[0.99] == pytest.approx(NormalDist().inv_cdf(0.99) * sigma, rel=1e-12)
        assert b.var[0.95] == pytest.approx(NormalDist().inv_cdf(0.95) * sigma, rel=1e-12)
        assert b.mean == 0.0 and b.skewness == 0.0
    for method in ("delta_gamma_normal", "cornish_fisher"):
        got = risk.parametric_var(d, s, gammas=g, method=method, levels=(0.99,))
        want = parametric_var(method, d, s, gamma=np.broadcast_to(g, (2, 3, 3)), level=[0.99])
        assert [b.var[0.99] for b in got] == pytest.approx(list(np.asarray(want).ravel()), rel=1e-12)
        assert got[0].mean == pytest.approx(0.5 * np.trace(g @ s), rel=1e-12)
    bad = s.copy()
    bad[0, 0] = -1.0  # not positive semi-definite
    with pytest.raises(PricingError) as e:
        risk.parametric_var(d, bad)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.field == "covariance"
    with pytest.raises(PricingError) as e:
        risk.parametric_var(d[:, :2], s, factors=["spx", "vix", "usd"])
    assert e.value.field == "deltas"
    with pytest.raises(PricingError) as e:
        risk.parametric_var(d, s, method="cornish_fisher")  # needs the gammas
    assert e.value.field == "gammas"
    # finite inputs whose variance overflows: OUT_OF_RANGE naming them (was var = inf, OK)
    with pytest.raises(PricingError) as e:
        risk.parametric_var(np.array([[1e10]]), np.array([[1e308]]), factors=["a"])
    assert e.value.code == grpc.StatusCode.OUT_OF_RANGE
    assert {f for f, _ in e.value.field_violations} == {"deltas", "covariance"}


def test_delta_normal_refuses_gammas_and_gammas_are_checked_whatever_the_method(risk):
    """Gammas with delta-normal (or no method) were ignored, NaN or antisymmetric ones
    included: a client that forgot the method got delta-normal VaR without a word."""
    from statistics import NormalDist

    s = np.array([[0.04, 0.006], [0.006, 0.09]])
    d = np.array([[1000.0, -500.0]])
    sym, nan, anti = np.array([[-50.0, 3.0], [3.0, 20.0]]), np.full((2, 2), np.nan), np.array([[0.0, 1e6], [-1e6, 0.0]])
    for method in ({}, {"method": "delta_normal"}):
        for g in (sym, nan, anti):
            with pytest.raises(PricingError) as e:
                risk.parametric_var(d, s, gammas=g, **method)
            assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.field == "gammas"
            [why] = [why for f, why in e.value.field_violations if f == "gammas"]
            assert why.startswith("delta-normal reads no gammas")
            assert ("as given" in why) == (g is not sym)  # a bad one is said to be bad too
    for method in ("delta_gamma_normal", "cornish_fisher"):
        for g in (nan, anti):
            with pytest.raises(PricingError) as e:
                risk.parametric_var(d, s, gammas=g, method=method)
            assert e.value.field == "gammas"
            assert not any("delta-normal" in why for _, why in e.value.field_violations)
    assert risk.parametric_var(d, s)[0].var[0.99] == pytest.approx(NormalDist().inv_cdf(0.99) * np.sqrt(d[0] @ s @ d[0]),
                                                                   rel=1e-12)


def test_historical_scenarios_from_a_series_of_levels(risk, snapshot_id, book):
    """Each scenario is the change between two dates of the series, in the form its shift
    applies it: the same run as sending those changes as sizes."""
    rng = np.random.default_rng(8)
    dates = [f"2024-01-{d:02d}" for d in range(1, 31)]
    spx = 5000 * np.exp(np.cumsum(rng.normal(0, 0.01, 30)))
    vol = 0.18 + np.cumsum(rng.normal(0, 0.005, 30))
    shifts = [Shift("spot", "spot", "log", ["SPX"]), Shift("vol", "vol", "absolute", ["SPX-SVI"])]
    hist = run(risk, snapshot_id, book, shifts, None, (), history={
        "dates": dates, "levels": np.column_stack([spx, vol]), "holding_period": 5})
    assert hist.scenario_labels[0] == "2024-01-01/2024-01-06" and len(hist.scenario_labels) == 25
    sizes = np.vstack([np.log(spx[5:] / spx[:-5]), vol[5:] - vol[:-5]])
    same = run(risk, snapshot_id, book, shifts, sizes, hist.scenario_labels)
    np.testing.assert_array_equal(hist.portfolio_pnl, same.portfolio_pnl)
    assert hist.var == same.var
    with pytest.raises(PricingError) as e:  # a log change of a non-positive level
        run(risk, snapshot_id, book, shifts, None, (), history={"dates": dates[:3], "levels": [[1, 0.2], [-1, 0.2], [2, 0.2]]})
    assert e.value.field == "scenarios.history.levels"


def test_what_scenario_runs_do_not_take_yet_is_refused_before_anything_is_sent(risk, snapshot_id, book):
    spot = [Shift("s", "spot", "relative", ["SPX"])]
    cases = [
        (dict(volatility=0.2, smile="sticky_moneyness"), "scenarios.smile"),   # an inline vol: no surface to read
        (dict(quantity=np.full(TRADES, 1e300)), "quantity"),
        (dict(var_levels=tuple(np.linspace(0.5, 0.99, 25))), "var_levels"),
        (dict(tags={"desk": "x" * 300}, aggregate_by=["desk"]), "tags[0].values"),
    ]
    for kw, field in cases:
        args = dict(snapshot_id=snapshot_id, underlying_id="SPX", model="bsm", shifts=spot, sizes=[[0.1]], labels=["a"],
                    option_type=book["option_type"], strike=book["strike"], time_to_expiry=book["time_to_expiry"])
        args.update(kw)
        with pytest.raises(PricingError) as e:
            risk.scenario_risk(**args)
        assert e.value.field == field, (kw, e.value)
        assert e.value.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)


def test_bucketed_sensitivities_against_the_analytic_greeks(server, risk, snapshot_id, book):
    """A relative spot bump gives S dV/dS (the analytic delta times the spot); an absolute
    parallel vol bump the analytic vega; vega by expiry bucket sums to the parallel vega;
    central differences of h = 1e-4, to 1e-6 relative (truncation h^2 and rounding)."""
    from pricegrid.clients import RiskClient as _R  # noqa: F401  (the fixture's client)

    level, rate, q, vol = base_market(book)
    shifts = [Shift("spot", "spot", "relative", ["SPX"]), Shift("vol", "vol", "absolute", ["SPX-SVI"]),
              Shift("vol-by-expiry", "vol", "absolute", ["SPX-SVI"], tenors=["6M", "1Y", "2Y"])]
    r = risk.sensitivities(snapshot_id=snapshot_id, underlying_id="SPX", model="bsm", shifts=shifts,
                           bumps=[1e-4, 1e-4, 1e-4], option_type=book["option_type"], strike=book["strike"],
                           time_to_expiry=book["time_to_expiry"], quantity=book["quantity"])
    assert r.components == ["spot", "vol", "vol-by-expiry/6M", "vol-by-expiry/1Y", "vol-by-expiry/2Y"]
    assert r.delta.shape == (TRADES, 5) and not r.errors
    inline = risk.price_batch(model="bsm", option_type=book["option_type"], strike=book["strike"],
                              time_to_expiry=book["time_to_expiry"], spot=level, rate=rate, dividend_yield=q,
                              volatility=vol, measures=("price", "delta", "gamma", "vega"))
    np.testing.assert_allclose(r.delta[:, 0], inline["delta"] * level * book["quantity"], rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(r.delta[:, 1], inline["vega"] * book["quantity"], rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(r.delta[:, 2:].sum(axis=1), r.delta[:, 1], rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(r.portfolio_delta, r.delta.sum(axis=0), rtol=1e-12)
    # gamma of a relative spot bump: S^2 d2V/dS2
    np.testing.assert_allclose(r.gamma[:, 0], inline["gamma"] * level ** 2 * book["quantity"], rtol=1e-4, atol=1e-3)
    fwd = risk.sensitivities(snapshot_id=snapshot_id, underlying_id="SPX", model="bsm", shifts=shifts[:1],
                             bumps=[1e-4], scheme="forward", option_type=book["option_type"], strike=book["strike"],
                             time_to_expiry=book["time_to_expiry"], quantity=book["quantity"])
    np.testing.assert_allclose(fwd.delta[:, 0], r.delta[:, 0], rtol=1e-2, atol=1e-3)  # first order: O(h gamma)
    with pytest.raises(PricingError) as e:
        risk.sensitivities(snapshot_id=snapshot_id, underlying_id="SPX", model="bsm", shifts=shifts[:1], bumps=[0.0],
                           option_type=book["option_type"], strike=book["strike"], time_to_expiry=book["time_to_expiry"])
    assert e.value.field == "bumps[0]"


def test_a_block_message_is_written_once_and_read_in_place_as_the_generated_message():
    """The server writes a block's message as wire chunks (the P&L copied once) and the
    client reads it as a wire view (the P&L read from the received bytes): both mean what
    the generated classes would write and read, with errors, in float64 and float32."""
    from pricegrid.clients import _scenarios
    from pricegrid.server.rpc.risk import _block_message
    from pricegrid.server.service.scenarios import CubeBlock, ScenarioError
    from pricegrid.v1 import risk_pb2 as rpb

    pnl = np.random.default_rng(3).normal(size=(3, 5))
    for start, errors, float32 in ((0, [], False), (7, [ScenarioError(8, 4, 3, "market.volatility", "bad")], True)):
        block = CubeBlock(start, start + 3, pnl, errors, len(errors))
        data = _block_message(block, float32)
        want = rpb.RunScenarioRiskResponse(block=rpb.ScenarioPnlBlock(
            trade_start=start, trade_stop=start + 3, pnl=pnl.astype("<f4" if float32 else "<f8").tobytes(),
            cube_type=rpb.CUBE_TYPE_FLOAT32 if float32 else rpb.CUBE_TYPE_FLOAT64,
            errors=[rpb.ScenarioRowError(trade=e.trade, scenario=e.scenario, code=e.code, field=e.field,
                                         message=e.message) for e in errors]))
        assert rpb.RunScenarioRiskResponse.FromString(data) == want
        view = _scenarios.read_part(data)
        assert view.WhichOneof("part") == "block" and isinstance(view.block.pnl, memoryview)
        assert (view.block.trade_start, view.block.trade_stop, view.block.cube_type) == \
            (want.block.trade_start, want.block.trade_stop, want.block.cube_type)
        assert bytes(view.block.pnl) == want.block.pnl
        assert [(e.trade, e.scenario, e.code, e.field, e.message) for e in view.block.errors] == \
            [(e.trade, e.scenario, e.code, e.field, e.message) for e in want.block.errors]
    header = rpb.RunScenarioRiskResponse(header=rpb.ScenarioRiskHeader(trade_ids=["a"])).SerializeToString()
    assert type(_scenarios.read_part(header)) is rpb.RunScenarioRiskResponse  # any other part: generated


def test_trades_no_block_held_are_nan_in_the_cube():
    from pricegrid.clients import _scenarios
    from pricegrid.v1 import risk_pb2 as rpb

    request = rpb.RunScenarioRiskRequest(output=rpb.SCENARIO_OUTPUT_CUBE)
    collector = _scenarios.Collector(request)
    collector.feed(rpb.RunScenarioRiskResponse(header=rpb.ScenarioRiskHeader(trade_ids=list("abcd"),
                                                                             scenario_labels=["x", "y"])))
    collector.feed(rpb.RunScenarioRiskResponse(block=rpb.ScenarioPnlBlock(
        trade_start=1, trade_stop=3, pnl=np.arange(4.0).tobytes(), cube_type=rpb.CUBE_TYPE_FLOAT64)))
    collector.feed(rpb.RunScenarioRiskResponse(trailer=rpb.ScenarioRiskTrailer()))
    cube = collector.result().cube
    np.testing.assert_array_equal(cube[1:3], [[0.0, 1.0], [2.0, 3.0]])
    assert np.isnan(cube[[0, 3]]).all()


def test_a_spot_move_across_a_barrier_is_priced_as_touched_not_a_row_error(risk, snapshot_id):
    """Down-out and down-in calls (strike 6000, barrier 5500) under a -20% spot move (6000 to
    4800, through the barrier): no row errors, every cell in the P&L; the knock-out is worth
    its rebate (0) and the knock-in the European, so its cell is the European's cell plus
    the difference of their base values (ext/pg_barrier.h, note 3)."""
    common = dict(model="bsm", underlying_id="SPX", snapshot_id=snapshot_id, option_type="call",
                  strike=[6000.0, 6000.0], time_to_expiry=[0.5, 1.5], quantity=[1.0, -2.0])
    books = [risk.book("barrier", barrier_type=["down_out", "down_in"], barrier=[5500.0, 5500.0],
                       trade_ids=["DO", "DI"], **common),
             risk.book("european", trade_ids=["E1", "E2"], **common)]
    r = risk.scenario_risk(books=books, shifts=[Shift("spx", "spot", "relative", ["SPX"])], sizes=[[-0.2, -0.05]],
                           labels=["crash", "dip"], output="both")
    assert not r.errors and np.isfinite(r.cube).all() and np.isfinite(r.base).all()
    assert r.cube[0, 0] == -r.base[0]  # knocked out: worth its rebate, 0
    np.testing.assert_allclose(r.cube[1, 0], r.cube[3, 0] + r.base[3] - r.base[1], rtol=1e-12)
    assert r.cube[0, 1] != -r.base[0]  # -5%: still alive
    np.testing.assert_allclose(r.portfolio_pnl, r.cube.sum(axis=0), rtol=1e-12)


def test_cube_output_refuses_every_trailer_only_option_naming_each(risk, snapshot_id, book):
    """Output CUBE sends no trailer aggregates: trade_risk, aggregate_by and the levels
    were accepted and dropped without a word (es_attribution alone was refused)."""
    kw = dict(snapshot_id=snapshot_id, underlying_id="SPX", model="bsm", option_type=book["option_type"][:3],
              strike=book["strike"][:3], time_to_expiry=book["time_to_expiry"][:3],
              shifts=[Shift("spot", "spot", "relative", ["SPX"])], sizes=[[-0.1, 0.05]], labels=["a", "b"],
              output="cube")
    with pytest.raises(PricingError) as e:
        risk.scenario_risk(trade_risk=True, tags={"desk": "d"}, aggregate_by=["desk"], var_levels=[0.95],
                           es_levels=[0.9], es_attribution=True, incremental_es=True, **kw)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {f for f, _ in e.value.field_violations} == {"trade_risk", "aggregate_by", "var_levels", "es_levels",
                                                        "es_attribution", "incremental_es"}
    for one in (dict(trade_risk=True), dict(tags={"desk": "d"}, aggregate_by=["desk"]), dict(var_levels=[0.95]),
                dict(es_levels=[0.9])):
        with pytest.raises(PricingError) as e:
            risk.scenario_risk(**one, **kw)
        assert [f for f, _ in e.value.field_violations] == [k for k in one if k != "tags"]
    r = risk.scenario_risk(**kw)  # the levels unset: the server's, and CUBE runs
    assert r.cube.shape == (3, 2) and np.isfinite(r.cube).all()
    # a TAYLOR run's report reads the levels, with CUBE too
    t = risk.scenario_risk(revaluation="taylor", var_levels=[0.5], **kw)
    assert t.cube.shape == (3, 2) and t.taylor is not None


def test_violations_name_the_fields_as_each_request_writes_them(risk, snapshot_id):
    """Fields the request does not have were named (scenarios.values, labels of a
    Sensitivities request, labels[1] and stresses[0].name for a stress's scenario and shift),
    and a check that needs an invalid tag column was reported besides it."""
    import datetime as dt

    spx = dict(snapshot_id=snapshot_id, underlying_id="SPX", model="bsm", option_type=["call"], strike=[6000.0],
               time_to_expiry=[1.0])
    spot = [Shift("spot", "spot", "relative", ["SPX"])]

    def fields(call):
        with pytest.raises(PricingError) as e:
            call()
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
        return [f for f, _ in e.value.field_violations]

    assert fields(lambda: risk.scenario_risk(shifts=spot, sizes=[[np.nan]], labels=["a"], **spx)) == \
        ["scenarios.sizes"]
    assert fields(lambda: risk.scenario_risk(shifts=[Shift("spot", "spot", "absolute", ["SPX"])], history={
        "dates": ["2026-01-01", "2026-01-02"], "levels": [[-1.7e308], [1.7e308]]}, **spx)) == \
        ["scenarios.history.levels"]  # the changes overflow
    assert fields(lambda: risk.put_scenario_set("tests/nan-size", spot, [[np.nan]], ["a"])) == ["scenario_set.sizes"]
    assert fields(lambda: risk.sensitivities(shifts=[], bumps=[], **spx)) == ["shifts"]
    assert fields(lambda: risk.scenario_risk(shifts=spot, sizes=[[0.01]], labels=["lehman-2008"],
                                             stresses=["lehman-2008"], **spx)) == ["scenarios.stresses[0]"]
    assert fields(lambda: risk.scenario_risk(shifts=[Shift("lehman-2008:equity", "spot", "relative", ["SPX"])],
                                             sizes=[[0.01]], labels=["mine"], stresses=["lehman-2008"], **spx)) == \
        ["scenarios.stresses[0]"]
    assert fields(lambda: risk.scenario_risk(shifts=spot, sizes=[[0.01]], labels=["a"], tags={"desk": ["p", "q"]},
                                             aggregate_by=["desk"], **spx)) == ["tags[0].values"]
    # a book's expiry dates off the snapshot's axis, as docs/validation.md names it
    off = dict(model="bsm", underlying_id="SPX", option_type=["call"], strike=[6000.0],
               expiry_date=[dt.date(2027, 6, 4)])
    demo_date = dt.date(2026, 12, 4)
    books = [risk.book("european", valuation_date=demo_date, **off),
             risk.book("european", valuation_date=demo_date - dt.timedelta(days=3), **off)]
    assert fields(lambda: risk.scenario_risk(snapshot_id=snapshot_id, books=books, shifts=spot, sizes=[[0.1]],
                                             labels=["x"])) == ["books.books[1].trades.european.valuation_date"]


def test_a_sensitivities_cost_over_the_cap_names_its_own_field():
    """The bumped run over the cell cap named scenarios.labels, which SensitivitiesRequest
    does not have."""
    from tests.conftest import start_server

    small = start_server(max_scenario_cells=2_000)
    try:
        with RiskClient(target=small.address, timeout=30) as client, \
                MarketClient(target=small.address, timeout=10) as market:
            sid = market.list_snapshots("demo")[0].id
            grid = Shift("g", "vol", "absolute", ["SPX-SVI"], grid_expiries=["6M", "1Y", "2Y"],
                         grid_moneyness=[0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2, 1.25])
            with pytest.raises(PricingError) as e:  # 40 trades x 60 bumps = 2,400 revaluations
                client.sensitivities(snapshot_id=sid, underlying_id="SPX", model="bsm", shifts=[grid], bumps=[1e-3],
                                     option_type="call", strike=np.linspace(5000, 7000, 40), time_to_expiry=1.0)
            assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert [f for f, _ in e.value.field_violations] == ["shifts"]
    finally:
        small.stop(1.0)
