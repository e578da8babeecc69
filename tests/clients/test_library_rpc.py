"""The options library through our own clients against a real server: every instrument from
FrontOfficeClient (unary, aio, stream), RiskClient (chunks, per-row Asian schedules, Heston
columns, Monte Carlo standard errors) and the CLI."""

import asyncio
import json
import math

import numpy as np
import pytest

from pricegrid.clients import (
    AmericanOption,
    AsianOption,
    AsyncFrontOfficeClient,
    BarrierOption,
    DigitalOption,
    DoubleBarrierOption,
    EngineSettings,
    EuropeanOption,
    FrontOfficeClient,
    HestonParameters,
    LookbackOption,
    Market,
    MarketUpdate,
    PricingError,
    RiskClient,
    TouchOption,
    cli,
)

MARKET = Market(spot=100.0, rate=0.03, dividend_yield=0.01, volatility=0.25)
HESTON = HestonParameters(v0=0.04, kappa=1.5, theta=0.05, sigma=0.6, rho=-0.7)

TRADES = [
    ("american", AmericanOption(option_type="put", strike=100.0, expiry=1.0), {}),
    ("american_tree", AmericanOption(option_type="put", strike=100.0, expiry=1.0), {"engine": "binomial_tree"}),
    ("barrier", BarrierOption(barrier_type="down_out", option_type="call", strike=100.0, expiry=0.5, barrier=90.0,
                              rebate=2.0), {}),
    ("barrier_discrete", BarrierOption(barrier_type="up_in", option_type="put", strike=100.0, expiry=0.5,
                                       barrier=110.0, monitoring_interval=1 / 252), {}),
    ("double_barrier", DoubleBarrierOption(knock_type="knock_out", option_type="call", strike=100.0, expiry=0.5,
                                           lower_barrier=80.0, upper_barrier=125.0), {}),
    ("digital", DigitalOption(payoff="cash_or_nothing", option_type="call", strike=100.0, expiry=0.5, cash=10.0), {}),
    ("gap", DigitalOption(payoff="gap", option_type="put", strike=100.0, expiry=0.5, payoff_strike=95.0), {}),
    ("one_touch", TouchOption(touch_type="one_touch", direction="down", barrier=90.0, expiry=0.5, payment="at_hit"), {}),
    ("no_touch", TouchOption(touch_type="no_touch", direction="up", barrier=115.0, expiry=0.5), {}),
    ("asian_geometric", AsianOption(averaging="geometric", option_type="call", strike=100.0, expiry=1.0), {}),
    ("asian_tw", AsianOption(averaging="arithmetic", option_type="call", strike=100.0, expiry=1.0,
                             fixing_times=(0.25, 0.5, 0.75, 1.0)), {"engine": "turnbull_wakeman"}),
    ("asian_mc", AsianOption(averaging="arithmetic", option_type="call", strike=100.0, expiry=1.0,
                             fixing_times=(0.25, 0.5, 0.75, 1.0), running_average=0.0),
     {"engine": "monte_carlo", "settings": EngineSettings(paths=20_000, seed=3)}),
    ("lookback", LookbackOption(strike_type="floating", option_type="call", expiry=1.0, running_minimum=95.0), {}),
]


@pytest.fixture(scope="module")
def front(server):
    with FrontOfficeClient(target=server.address, timeout=60.0) as f:
        yield f


@pytest.mark.parametrize("name, option, kw", TRADES, ids=[t[0] for t in TRADES])
def test_every_instrument_from_the_front_office_client(server, front, name, option, kw):
    r = front.price(option, MARKET, measures=("delta", "gamma", "vega", "theta", "rho"), **kw)
    assert math.isfinite(r.price) and r.price >= 0
    assert set(r.methods) == {"price", "delta", "gamma", "vega", "theta", "rho"}
    assert r.priced_by.engine and r.priced_by.version
    if kw.get("engine") == "monte_carlo":
        assert 0 < r.standard_error < 0.05 * r.price and r.methods["delta"] == "monte_carlo_crn"
        assert r.standard_errors["delta"] > 0
    else:
        assert r.standard_error == 0.0
    # the stream gives the same answer
    with FrontOfficeClient(target=server.address, timeout=60.0, use_stream=True) as s:
        assert s.price(option, MARKET, measures=("delta",), **kw).price == pytest.approx(r.price, rel=1e-12)


def test_heston_from_the_clients(front, server):
    market = Market(spot=100.0, rate=0.03, dividend_yield=0.01, heston=HESTON)
    r = front.price(EuropeanOption(option_type="call", strike=105.0, expiry=0.75), market, model="heston",
                    measures=("delta", "vega"))
    assert r.priced_by.model == "heston" and r.methods["price"] == "analytic"
    assert r.inputs.volatility == pytest.approx(0.2)  # sqrt(v0)
    with RiskClient(target=server.address) as risk:
        out = risk.price_batch(model="heston", option_type="call", strike=np.linspace(80, 120, 41),
                               time_to_expiry=0.75, spot=100.0, rate=0.03, dividend_yield=0.01,
                               heston=HESTON, measures=("price", "delta"))
    assert out.error_count == 0
    assert out["price"][25] == pytest.approx(r.price, rel=1e-12)
    assert np.all(np.diff(out["price"]) < 0)  # calls fall with the strike


def test_aio_client_prices_an_instrument(server):
    async def go():
        async with AsyncFrontOfficeClient(target=server.address, timeout=30.0) as client:
            return await client.price(TRADES[2][1], MARKET, measures=("delta",))

    r = asyncio.run(go())
    assert r.price > 0 and r.methods["delta"]


def test_stream_holds_a_barrier_and_reprices_it(server):
    option = BarrierOption(barrier_type="down_out", option_type="call", strike=100.0, expiry=0.5, barrier=90.0)
    with FrontOfficeClient(target=server.address, timeout=30.0) as fo:
        before = fo.price(option, MARKET).price
        after = fo.price(option, Market(spot=95.0, rate=0.03, dividend_yield=0.01, volatility=0.25)).price
        with fo.stream() as session:
            session.add("B1", option, MARKET)
            first = session.receive(timeout=30)
            session.update_market(MarketUpdate(spot=95.0))
            second = session.receive(timeout=30)
            session.update_market(MarketUpdate(spot=85.0))  # through the barrier: knocked out
            third = session.receive(timeout=30)
            session.update_market(MarketUpdate(spot=95.0))  # and it stays so (no rebate: worth 0)
            fourth = session.receive(timeout=30)
    assert first.result.price == pytest.approx(before, rel=1e-12)
    assert second.result.price == pytest.approx(after, rel=1e-12)
    assert third.error is None and fourth.error is None
    assert third.result.price == fourth.result.price == 0.0 and after > 0.0


def test_stream_lookback_keeps_its_running_extremes(server):
    option = LookbackOption(strike_type="floating", option_type="call", expiry=1.0)  # minimum so far: the spot
    with FrontOfficeClient(target=server.address, timeout=30.0) as fo:
        with fo.stream() as session:
            session.add("L1", option, MARKET)
            session.receive(timeout=30)
            session.update_market(MarketUpdate(spot=90.0))  # a new minimum
            session.receive(timeout=30)
            session.update_market(MarketUpdate(spot=100.0))
            back = session.receive(timeout=30)
        # the same as a new trade whose minimum so far is 90
        fresh = fo.price(LookbackOption(strike_type="floating", option_type="call", expiry=1.0, running_minimum=90.0),
                         MARKET)
    assert back.result.price == pytest.approx(fresh.price, rel=1e-12)


def test_risk_client_barrier_batch_in_chunks(server):
    n = 5000
    rng = np.random.default_rng(4)
    spot = rng.uniform(95, 105, n)
    kw = dict(model="bsm", instrument="barrier", barrier_type=np.where(rng.random(n) < 0.5, "down_out", "down_in"),
              option_type="call", strike=rng.uniform(80, 120, n), barrier=rng.uniform(70, 90, n), rebate=1.0,
              time_to_expiry=0.5, spot=spot, rate=0.03, volatility=0.25, measures=("price", "delta"))
    with RiskClient(target=server.address, chunk_rows=700) as risk:
        chunked = risk.price_batch(**kw)
    with RiskClient(target=server.address) as risk:
        whole = risk.price_batch(**kw)
    assert chunked.stats.chunks == 8 and whole.stats.chunks == 1
    assert chunked.error_count == 0 and chunked.methods["price"] == "analytic"
    np.testing.assert_array_equal(chunked["price"], whole["price"])
    np.testing.assert_array_equal(chunked["delta"], whole["delta"])


def test_risk_client_asian_per_row_schedules_across_chunks(server):
    rng = np.random.default_rng(9)
    n = 300
    schedules = [np.sort(rng.uniform(0.05, 1.0, rng.integers(1, 13))) for _ in range(n)]
    schedules = [np.unique(s) for s in schedules]
    kw = dict(model="bsm", instrument="asian", engine="turnbull_wakeman", averaging="arithmetic", option_type="call",
              strike=rng.uniform(90, 110, n), fixing_times=schedules, time_to_expiry=1.0, spot=100.0, rate=0.03,
              volatility=0.25)
    with RiskClient(target=server.address, chunk_rows=37) as risk:
        out = risk.price_batch(**kw)
    assert out.error_count == 0 and out.stats.chunks == 9
    with FrontOfficeClient(target=server.address, timeout=30) as fo:
        for i in (0, 36, 37, 150, n - 1):  # rows either side of chunk edges
            one = fo.price(AsianOption(averaging="arithmetic", option_type="call", strike=float(kw["strike"][i]),
                                       expiry=1.0, fixing_times=tuple(schedules[i])),
                           Market(spot=100.0, rate=0.03, volatility=0.25), engine="turnbull_wakeman")
            assert out["price"][i] == pytest.approx(one.price, rel=1e-13), i


def test_risk_client_monte_carlo_standard_errors(server):
    with RiskClient(target=server.address) as risk:
        out = risk.price_batch(model="bsm", instrument="european", engine="monte_carlo",
                               settings=EngineSettings(paths=20_000, seed=5), option_type="call",
                               strike=[90.0, 100.0, 110.0], time_to_expiry=1.0, spot=100.0, rate=0.03,
                               volatility=0.2, measures=("price", "delta"))
        exact = risk.price_batch(model="bsm", option_type="call", strike=[90.0, 100.0, 110.0], time_to_expiry=1.0,
                                 spot=100.0, rate=0.03, volatility=0.2)
    se = out.standard_errors["price"]
    assert np.all(se > 0) and np.all(np.abs(out["price"] - exact["price"]) < 4 * se)
    assert out.methods["delta"] == "monte_carlo_crn" and out.priced_by.engine


def test_cli_prices_a_barrier(server, capsys):
    code = cli.main(["price", "--target", server.address, "--instrument", "barrier", "--barrier-type", "down_out",
                     "--type", "call", "--strike", "100", "--barrier", "90", "--rebate", "2", "--expiry", "0.5",
                     "--spot", "100", "--rate", "0.03", "--dividend", "0.01", "--vol", "0.25", "--greeks", "delta",
                     "--json"])
    assert code == 0
    text = capsys.readouterr().out
    body = json.loads(text[text.index("{"):])
    with FrontOfficeClient(target=server.address, timeout=30) as fo:
        want = fo.price(TRADES[2][1], MARKET).price
    assert body["price"] == pytest.approx(want, rel=1e-14) and body["methods"]["delta"]


def test_cli_price_file_of_asians(server, tmp_path, capsys):
    path = tmp_path / "asians.csv"
    path.write_text("averaging,option_type,strike,time_to_expiry,fixing_times,spot,rate,volatility\n"
                    "arithmetic,call,100,1.0,0.25;0.5;0.75;1.0,100,0.03,0.25\n"
                    "geometric,put,95,0.5,,100,0.03,0.3\n")
    code = cli.main(["price-file", str(path), "--target", server.address, "--instrument", "asian",
                     "--engine", "turnbull_wakeman", "--json"])
    text = capsys.readouterr().out
    assert code == 0, text
    body = json.loads(text[text.index("{"):])
    assert body["rows"] == 2 and body["error_count"] == 0
    assert all(r["price"] > 0 for r in body["results"])


def test_a_wrong_instrument_is_a_pricing_error(front):
    with pytest.raises(PricingError) as info:
        front.price(BarrierOption(barrier_type="down_out", option_type="call", strike=100.0, expiry=0.5, barrier=110.0),
                    MARKET)
    assert info.value.bad_input and "barrier.barrier" in [f for f, _ in info.value.field_violations]


def test_monte_carlo_is_reproducible_by_seed_and_heston_paths_price_asians(front):
    option = AsianOption(averaging="arithmetic", option_type="put", strike=100.0, expiry=0.5,
                         fixing_times=(0.125, 0.25, 0.375, 0.5))
    market = Market(spot=100.0, rate=0.03, heston=HESTON)
    settings = EngineSettings(paths=10_000, seed=42)
    a = front.price(option, market, model="heston", settings=settings, measures=("delta",))
    b = front.price(option, market, model="heston", settings=settings, measures=("delta",))
    c = front.price(option, market, model="heston", settings=EngineSettings(paths=10_000, seed=43))
    assert a.priced_by.engine == "monte_carlo_asian" and a.priced_by.model == "heston"  # the default under Heston
    assert (a.price, a.greeks.delta) == (b.price, b.greeks.delta) and a.price != c.price
    assert abs(a.price - c.price) < 5 * math.hypot(a.standard_error, c.standard_error)
    assert a.methods == {"price": "monte_carlo", "delta": "monte_carlo_crn"}


def test_levy_refuses_discrete_fixings_by_name(front):
    option = AsianOption(averaging="arithmetic", option_type="call", strike=100.0, expiry=1.0, fixing_times=(0.5, 1.0))
    with pytest.raises(PricingError) as info:
        front.price(option, MARKET, engine="levy")
    assert info.value.bad_input and "continuous averaging only" in info.value.message
    assert "asian.averaging" in [f for f, _ in info.value.field_violations]


def test_too_few_paths_is_invalid(front):
    with pytest.raises(PricingError) as info:
        front.price(TRADES[11][1], MARKET, engine="monte_carlo", settings=EngineSettings(paths=8))
    assert "settings.paths" in [f for f, _ in info.value.field_violations]


def test_cli_refuses_the_terms_of_another_instrument(server, capsys):
    """A flag the chosen instrument does not take is refused (exit 2, named), never dropped."""
    base = ["price", "--target", server.address, "--model", "bsm", "--expiry", "0.5", "--spot", "100", "--rate", "0.05",
            "--vol", "0.2"]
    assert cli.main(base + ["--type", "call", "--strike", "100", "--barrier", "90"]) == 2
    err = capsys.readouterr().err
    assert "--barrier" in err and "barrier, touch" in err and "--instrument" in err
    assert cli.main(base + ["--instrument", "touch", "--touch-type", "one_touch", "--direction", "down",
                            "--barrier", "90", "--strike", "100"]) == 2
    assert "--strike" in capsys.readouterr().err
    assert cli.main(base + ["--type", "call", "--strike", "100"]) == 0
    capsys.readouterr()
    # settings the engine does not read: the server's refusal, named
    assert cli.main(base + ["--type", "call", "--strike", "100", "--paths", "5000", "--tree-steps", "3"]) != 0
    err = capsys.readouterr().err
    assert "settings.paths" in err and "settings.tree_steps" in err


def test_cli_price_file_refuses_unknown_columns(server, tmp_path, capsys):
    path = tmp_path / "barriers.csv"
    header = "option_type,strike,time_to_expiry,spot,rate,volatility,barrier_type,barrier"
    path.write_text(f"{header},rebates\ncall,100,1,100,0.03,0.25,down_out,90,2\n")
    argv = ["price-file", str(path), "--target", server.address, "--instrument", "barrier", "--json"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "rebates" in err and "rebate" in err.replace("rebates", "")
    path.write_text(f"{header},rebate\ncall,100,1,100,0.03,0.25,down_out,90,2\n")
    assert cli.main(argv) == 0
    body = capsys.readouterr().out
    assert json.loads(body[body.index("{"):])["error_count"] == 0
    path.write_text(f"{header}\ncall,100,1,100,0.03,0.25,down_out,90\n")
    assert cli.main(argv[:-1] + ["--instrument", "european", "--json"]) == 2  # another instrument's columns
    assert "barrier_type, barrier" in capsys.readouterr().err
