"""The stress catalogue and named scenario sets, through RiskClient against a real server
(the session's, 127.0.0.1, its built-in demo snapshot): the catalogue's sizes are its cited
figures; a named stress runs exactly as its shifts written out by hand (bit for bit);
stresses add to a set's own scenarios without changing them; stored sets run by name or id;
bad names and targets are refused naming the field."""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest

from pricegrid.clients import PricingError, Shift

VOL_TENORS = ["1M", "3M", "1Y", "2Y", "5Y"]
TRADES = 15


@pytest.fixture(scope="module")
def spx(risk, snapshot_id):
    rng = np.random.default_rng(3)
    return risk.book("european", model="bsm", underlying_id="SPX", snapshot_id=snapshot_id,
                     option_type=np.where(rng.random(TRADES) < 0.5, "call", "put"),
                     strike=rng.uniform(4500, 7000, TRADES), time_to_expiry=rng.uniform(0.05, 3.0, TRADES),
                     quantity=rng.choice([-1.0, 2.0], TRADES))


def _explicit(stress):
    """The stress's shifts written out by hand, on SPX and the USD curve."""
    shifts = {"equity": Shift("equity", "spot", "relative", ["SPX"]),
              "equity_vol": Shift("equity_vol", "vol", "absolute", ["SPX-*"], tenors=VOL_TENORS),
              "usd_rates": Shift("usd_rates", "zero_rate", "absolute", ["USD-*"], tenors=["2Y", "10Y"])}
    moves = {m.factor: list(m.sizes) for m in stress.moves}
    return [shifts[f] for f in moves], np.concatenate([moves[f] for f in moves]).reshape(-1, 1)


def test_the_catalogue_sizes_are_its_cited_figures(risk):
    cat = risk.stresses()
    stresses = {s.name: s for s in cat.stresses}
    assert set(stresses) == {"black-monday-1987", "lehman-2008", "covid-2020", "rates-shock-2022"}
    factors = {f.name: f for f in cat.factors}
    assert list(factors["equity_vol"].tenors) == VOL_TENORS and list(factors["usd_rates"].tenors) == ["2Y", "10Y"]
    for s in cat.stresses:
        assert s.sources and s.window and s.description, s.name
        for m in s.moves:
            assert len(m.sizes) == max(1, len(factors[m.factor].tenors)), (s.name, m.factor)
    moves = {n: {m.factor: list(m.sizes) for m in s.moves} for n, s in stresses.items()}
    # the published figures the descriptions state, recomputed here
    assert moves["black-monday-1987"]["equity"] == [-0.2047]
    assert moves["lehman-2008"]["equity"][0] == pytest.approx(752.44 / 1251.70 - 1, abs=1e-15)
    assert moves["covid-2020"]["equity"][0] == pytest.approx(-0.33925, abs=5e-6)
    assert moves["rates-shock-2022"]["usd_rates"] == pytest.approx([0.03669, 0.02330], abs=1e-15)
    assert moves["rates-shock-2022"]["equity"][0] == pytest.approx(-0.1944, abs=5e-5)
    # a 30-day vol move m becomes m sqrt(1M / T) at the vol pillars
    years = np.array([1 / 12, 0.25, 1.0, 2.0, 5.0])
    np.testing.assert_allclose(moves["black-monday-1987"]["equity_vol"], (1.5019 - 0.3637) * np.sqrt(1 / 12 / years),
                               rtol=1e-14)
    assert moves["black-monday-1987"]["equity_vol"][0] == pytest.approx(1.1382, abs=1e-12)
    assert "sqrt(1M / T)" in cat.notes


def test_a_catalogue_stress_runs_as_its_shifts_written_out(risk, spx):
    cat = {s.name: s for s in risk.stresses().stresses}
    names = ["black-monday-1987", "covid-2020", "rates-shock-2022"]
    r = risk.scenario_risk(books=[spx], stresses=names, stress_targets={"equity": ["SPX"], "equity_vol": ["SPX-*"]},
                           output="both")
    assert r.scenario_labels == names
    assert r.components[:2] == ["black-monday-1987:equity", "black-monday-1987:equity_vol/1M"]
    assert np.isfinite(r.cube).all() and not r.errors
    for j, name in enumerate(names):
        shifts, sizes = _explicit(cat[name])
        alone = risk.scenario_risk(books=[spx], shifts=shifts, sizes=sizes, labels=[name], output="cube")
        np.testing.assert_array_equal(r.cube[:, j], alone.cube[:, 0])
    assert r.var[0.99] == pytest.approx(-np.sort(r.portfolio_pnl)[0], rel=1e-15)  # ceil(3 x 0.99) = 3rd of 3
    # a factor mapped to nothing is left out: the COVID stress without its rate move
    no_rates = risk.scenario_risk(books=[spx], stresses=["covid-2020"], output="cube",
                                  stress_targets={"equity": ["SPX"], "equity_vol": ["SPX-*"], "usd_rates": []})
    shifts, sizes = _explicit(cat["covid-2020"])
    alone = risk.scenario_risk(books=[spx], shifts=shifts[:2], sizes=sizes[:6], labels=["c"], output="cube")
    np.testing.assert_array_equal(no_rates.cube, alone.cube)


def test_stresses_follow_the_sets_own_scenarios_without_changing_them(risk, spx):
    own = [Shift("spot", "spot", "relative", ["SPX"])]
    sizes = [[-0.1, 0.0, 0.1]]
    base = risk.scenario_risk(books=[spx], shifts=own, sizes=sizes, labels=["d", "f", "u"], output="cube")
    both = risk.scenario_risk(books=[spx], shifts=own, sizes=sizes, labels=["d", "f", "u"], output="cube",
                              stresses=["lehman-2008"], stress_targets={"equity": ["SPX"], "equity_vol": ["SPX-*"]})
    assert both.scenario_labels == ["d", "f", "u", "lehman-2008"]
    np.testing.assert_array_equal(both.cube[:, :3], base.cube)
    only = risk.scenario_risk(books=[spx], stresses=["lehman-2008"], output="cube",
                              stress_targets={"equity": ["SPX"], "equity_vol": ["SPX-*"]})
    np.testing.assert_array_equal(both.cube[:, 3], only.cube[:, 0])


def test_stored_scenario_sets_run_by_name_or_id(risk, spx):
    shifts = [Shift("spot", "spot", "relative", ["SPX"]), Shift("vol", "vol", "absolute", ["SPX-*"])]
    sizes = np.array([[-0.3, 0.15], [0.25, -0.05]])
    first = risk.put_scenario_set("tests/desk-stress", shifts, sizes, ["crash", "melt-up"], description="ours")
    assert first.created and first.scenarios == 2 and first.components == 2 and len(first.id) == 32
    assert not risk.put_scenario_set("tests/desk-stress", shifts, sizes, ["crash", "melt-up"]).created
    got = risk.get_scenario_set("tests/desk-stress")
    assert got.id == first.id and list(got.scenario_set.labels) == ["crash", "melt-up"]
    r = risk.scenario_risk(books=[spx], stresses=["tests/desk-stress", "black-monday-1987"], output="cube",
                           stress_targets={"equity": ["SPX"], "equity_vol": ["SPX-*"]})
    assert r.scenario_labels == ["tests/desk-stress/crash", "tests/desk-stress/melt-up", "black-monday-1987"]
    alone = risk.scenario_risk(books=[spx], shifts=shifts, sizes=sizes, labels=["a", "b"], output="cube")
    np.testing.assert_array_equal(r.cube[:, :2], alone.cube)
    by_id = risk.scenario_risk(books=[spx], stresses=[first.id], output="cube")
    np.testing.assert_array_equal(by_id.cube, alone.cube)
    second = risk.put_scenario_set("tests/desk-stress", shifts[:1], [[-0.5]], ["deep"])
    assert risk.scenario_risk(books=[spx], stresses=["tests/desk-stress"]).scenario_labels == ["tests/desk-stress"]
    assert [x.id for x in risk.list_scenario_sets("tests/desk-stress")] == [second.id, first.id]
    assert risk.delete_scenario_set(second.id) and not risk.delete_scenario_set(second.id)
    assert risk.get_scenario_set("tests/desk-stress").id == first.id


def test_bad_stresses_and_targets_are_named(risk, spx):
    def refused(**kw):
        with pytest.raises(PricingError) as e:
            risk.scenario_risk(books=[spx], **kw)
        return e.value

    e = refused(stresses=["no-such-stress"])
    assert e.code == grpc.StatusCode.NOT_FOUND and e.field == "scenarios.stresses[0]"
    e = refused(stresses=["covid-2020"], stress_targets={"equities": ["SPX"]})
    assert e.field == "scenarios.stress_targets[0].factor"
    e = refused(stresses=["covid-2020"], stress_targets={"equity": ["NOPE"], "equity_vol": ["SPX-*"]})
    assert e.field == "scenarios.stress_targets[0].selectors" and "matches no underlying" in str(e)
    eua = risk.book("european", model="black76", underlying_id="EUA-DEC27", option_type="call", strike=80.0,
                    time_to_expiry=[0.5], snapshot_id=spx.trades.market.snapshot_id)
    with pytest.raises(PricingError) as e:  # the default USD selector meets a EUR-only book
        risk.scenario_risk(books=[eua], stresses=["rates-shock-2022"])
    assert e.value.field == "scenarios.stresses[0]" and "usd_rates" in str(e.value)
    e = refused(stresses=["covid-2020", "covid-2020"])
    assert e.field == "scenarios.stresses[1]"
    e = refused(stresses=["covid-2020"], stress_targets={"equity": [], "equity_vol": [], "usd_rates": []})
    assert e.field == "scenarios.stresses[0]" and "leave none" in str(e)
    for name, kw, field in [("black-monday-1987", {}, "name"), ("bad name!", {}, "name"),
                            ("tests/bad-tenor", {"tenors": ["7Q"]}, "scenario_set.shifts[0].buckets.tenors[0]")]:
        with pytest.raises(PricingError) as e:
            risk.put_scenario_set(name, [Shift("r", "zero_rate", "absolute", ["USD-*"], **kw)],
                                  [[0.01]] if not kw else [[0.01]], ["x"])
        assert e.value.field == field, (name, e.value)
    assert math.isfinite(risk.scenario_risk(books=[spx], stresses=["covid-2020"],
                                            stress_targets={"equity": ["SPX"], "equity_vol": ["SPX-*"]}).var[0.99])
