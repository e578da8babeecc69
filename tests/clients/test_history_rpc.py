"""Historical scenarios read from stored snapshots (HistoricalSizes.snapshots) through
RiskClient against a real server: the levels are each snapshot's spot, zero rates at the
pillars and at-the-money vols, computed here from the snapshots' own numbers; the run equals
one given those levels by hand, bit for bit; bad series are refused naming the field."""

from __future__ import annotations

import copy
import math

import grpc
import numpy as np
import pytest

from pricegrid.clients import MarketClient, PricingError, Shift

DAYS = 6
SPOTS = [6000.0, 6050.0, 5900.0, 5925.5, 6100.0, 6080.0]


@pytest.fixture(scope="module")
def stored(server):
    """Six end-of-day snapshots named tests/history: SPX and the USD curve move each day, the
    SVI surface's first slice tilts; their ids and contents."""
    with MarketClient(target=server.address, timeout=10) as market:
        _, demo = market.get_snapshot(market.list_snapshots("demo")[0].id)
        ids, docs = [], []
        for d in range(DAYS):
            doc = copy.deepcopy(demo)
            doc["name"], doc["asOf"] = "tests/history", f"2026-11-{d + 2:02d}T17:30:00Z"
            doc["valuationDate"] = {"year": 2026, "month": 11, "day": d + 2}
            spx = next(u for u in doc["underlyings"] if u["id"] == "SPX")
            spx["spot"] = SPOTS[d]
            usd = next(c for c in doc["curves"] if c["id"] == "USD-OIS")
            usd["values"] = [v + 0.0001 * d * (1 + i % 3) for i, v in enumerate(usd["values"])]
            svi = next(s for s in doc["surfaces"] if s["id"] == "SPX-SVI")
            svi["svi"]["slices"][3]["a"] += 0.0004 * d
            ids.append(market.put_snapshot(doc, force=True, reason="test history").id)
            docs.append(doc)
    return ids, docs


def _atm_svi_vol(slice_, t):
    """Black vol of an SVI slice at k = ln(K/F) = 0: w = a + b (rho (-m) + sqrt(m^2 + sigma^2))."""
    w = slice_["a"] + slice_["b"] * (slice_["rho"] * -slice_["m"] + math.sqrt(slice_["m"] ** 2 + slice_["sigma"] ** 2))
    return math.sqrt(w / t)


SHIFTS = [Shift("spx", "spot", "log", ["SPX"]), Shift("usd", "zero_rate", "absolute", ["USD-*"], tenors=["2Y", "10Y"]),
          Shift("vol", "vol", "absolute", ["SPX-*"], tenors=["1Y"])]


def _book(risk, sid):
    rng = np.random.default_rng(8)
    return risk.book("european", model="bsm", underlying_id="SPX", snapshot_id=sid,
                     option_type=np.where(rng.random(10) < 0.5, "call", "put"), strike=rng.uniform(5500, 6500, 10),
                     time_to_expiry=rng.uniform(0.2, 2.0, 10))


def test_levels_from_snapshots_are_their_spot_zero_rates_and_atm_vols(risk, stored):
    ids, docs = stored
    book = _book(risk, ids[-1])
    r = risk.scenario_risk(books=[book], shifts=SHIFTS, history={"snapshots": {"name": "tests/history"}}, output="cube")
    days = [f"2026-11-{d + 2:02d}" for d in range(DAYS)]
    assert r.scenario_labels == [f"{a}/{b}" for a, b in zip(days, days[1:])]
    # the levels, from the snapshots' own numbers
    levels = np.empty((DAYS, 4))
    for d, doc in enumerate(docs):
        usd = next(c for c in doc["curves"] if c["id"] == "USD-OIS")
        nodes = dict(zip(usd["nodeTimes"], usd["values"]))  # zero rates at the nodes 2 and 10
        svi = next(s for s in doc["surfaces"] if s["id"] == "SPX-SVI")
        levels[d] = [SPOTS[d], nodes[2.0], nodes[10.0], _atm_svi_vol(svi["svi"]["slices"][3], 1.0)]
    by_hand = risk.scenario_risk(books=[book], shifts=SHIFTS, history={"dates": days, "levels": levels},
                                 output="cube")
    np.testing.assert_allclose(r.cube, by_hand.cube, rtol=1e-9, atol=1e-9)
    assert np.all(r.cube[:, 1] != 0.0) and not r.errors
    # and by ids, over a range: the same numbers
    by_ids = risk.scenario_risk(books=[book], shifts=SHIFTS, history={"snapshots": {"ids": ids[1:4]}}, output="cube")
    np.testing.assert_array_equal(by_ids.cube, r.cube[:, 1:3])
    ranged = risk.scenario_risk(books=[book], shifts=SHIFTS, output="cube", history={"snapshots": {
        "name": "tests/history", "start": "2026-11-03", "end": "2026-11-05T23:00:00Z"}})
    np.testing.assert_array_equal(ranged.cube, r.cube[:, 1:3])
    # plain dates are whole days (UTC): the end date's 17:30Z snapshot is in (it was left out)
    dates = risk.scenario_risk(books=[book], shifts=SHIFTS, output="cube", history={"snapshots": {
        "name": "tests/history", "start": "2026-11-03", "end": "2026-11-05"}})
    assert dates.scenario_labels == ["2026-11-03/2026-11-04", "2026-11-04/2026-11-05"]
    np.testing.assert_array_equal(dates.cube, r.cube[:, 1:3])
    # a date-time end is the instant itself; a plain-date start is from its day's beginning
    before = risk.scenario_risk(books=[book], shifts=SHIFTS, output="cube", history={"snapshots": {
        "name": "tests/history", "start": "2026-11-03", "end": "2026-11-05T17:29:59Z"}})
    assert before.scenario_labels == ["2026-11-03/2026-11-04"]
    two_day = risk.scenario_risk(books=[book], shifts=SHIFTS, output="cube", history={
        "snapshots": {"name": "tests/history"}, "holding_period": 2, "overlapping": False})
    assert two_day.scenario_labels == [f"{days[0]}/{days[2]}", f"{days[2]}/{days[4]}"]


def test_bad_snapshot_histories_are_named(risk, stored):
    ids, _ = stored
    book = _book(risk, ids[-1])

    def refused(shifts=SHIFTS, **series):
        with pytest.raises(PricingError) as e:
            risk.scenario_risk(books=[book], shifts=shifts, history={"snapshots": series})
        return e.value

    e = refused(shifts=[Shift("vol", "vol", "absolute", ["SPX-*"])], name="tests/history")
    assert e.field == "scenarios.shifts[0].shape" and "parallel" in str(e)
    e = refused(shifts=[Shift("spot", "spot", "log", ["*"])], name="tests/history")
    assert e.field == "scenarios.shifts[0].selector" and "needs one underlying" in str(e)
    e = refused(name="tests/no-such-history")
    assert e.code == grpc.StatusCode.NOT_FOUND and e.field == "scenarios.history.snapshots.name"
    e = refused(ids=[ids[2], ids[1]])
    assert e.field == "scenarios.history.snapshots.ids[1]" and "time order" in str(e)
    e = refused(name="tests/history", start="yesterday")
    assert e.field == "scenarios.history.snapshots.start"
