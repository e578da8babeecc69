"""Heston parameters as scenario shifts: trades priced under MODEL_HESTON on a snapshot's
underlying move with spot, rate and their own v0, kappa, theta, sigma and rho; each cube cell
equals Price on that scenario's market (bit for bit); a parameter moved out of the model's
domain is a per-row error of its cells, never a failed run; Black-type trades beside them
do not move with a Heston shift."""

from __future__ import annotations

import numpy as np
import pytest

from pricegrid.clients import EuropeanOption, FrontOfficeClient, HestonParameters, Market, Shift
from tests.clients.test_scenario_risk_rpc import base_market

N = 6
H = dict(v0=0.04, kappa=1.5, theta=0.05, sigma=0.6, rho=-0.7)


def test_heston_parameters_move_and_each_cell_is_price_on_its_market(server, risk, snapshot_id):
    rng = np.random.default_rng(3)
    book = {"option_type": np.where(rng.random(N) < 0.5, "call", "put"), "strike": rng.uniform(5400, 6600, N),
            "time_to_expiry": rng.uniform(0.2, 2.0, N), "quantity": rng.choice([-1.0, 2.0], N)}
    heston = {k: np.full(N, v) for k, v in H.items()}
    heston["v0"] = rng.uniform(0.02, 0.06, N)
    trades = risk.book("european", model="heston", underlying_id="SPX", snapshot_id=snapshot_id,
                       option_type=book["option_type"], strike=book["strike"], time_to_expiry=book["time_to_expiry"],
                       quantity=book["quantity"], heston=heston)
    shifts = [Shift("spot", "spot", "relative", ["SPX"]), Shift("v0", "heston_v0", "absolute", ["SPX"]),
              Shift("rho", "heston_rho", "absolute", ["SPX"]), Shift("kappa", "heston_kappa", "relative", ["SPX"]),
              Shift("vov", "heston_sigma", "log", ["SPX"]), Shift("theta", "heston_theta", "fixed", ["SPX"])]
    sizes = np.array([[-0.1, 0.0, 0.05], [0.02, 0.0, -0.01], [-0.2, 0.0, 0.1], [0.5, 0.0, -0.3], [0.2, 0.0, -0.1],
                      [0.09, 0.05, 0.03]])
    r = risk.scenario_risk(books=[trades], shifts=shifts, sizes=sizes, labels=["stress", "theta", "calm"],
                           output="both")
    assert not r.errors and np.isfinite(r.cube).all()
    assert r.books[0].priced_by["model"] == "heston"
    level, rate, q, _ = base_market(book)  # the trades' base spot, rate and yield from the snapshot
    with FrontOfficeClient(target=server.address, timeout=10) as fo:
        def price(i, x):
            option = EuropeanOption(option_type=str(book["option_type"][i]), strike=float(book["strike"][i]),
                                    expiry=float(book["time_to_expiry"][i]))
            h = HestonParameters(float(heston["v0"][i] + x[1]), float(heston["kappa"][i] * (1 + x[3])),
                                 float(x[5]) if x is not None else float(heston["theta"][i]),
                                 float(heston["sigma"][i] * np.exp(x[4])), float(heston["rho"][i] + x[2]))
            return fo.price(option, Market(spot=float(level[i] * (1 + x[0])), rate=float(rate[i]),
                                           dividend_yield=float(q[i]), heston=h), model="heston").price

        for i in range(N):
            base = fo.price(EuropeanOption(option_type=str(book["option_type"][i]), strike=float(book["strike"][i]),
                                           expiry=float(book["time_to_expiry"][i])),
                            Market(spot=float(level[i]), rate=float(rate[i]), dividend_yield=float(q[i]),
                                   heston=HestonParameters(*(float(heston[k][i]) for k in H))), model="heston").price
            assert r.base[i] == base * book["quantity"][i]
            for j in (0, 2):
                assert r.cube[i, j] == (price(i, sizes[:, j]) - base) * book["quantity"][i], (i, j)
    # a parameter moved out of the model's domain: per-row errors, the run stands
    bad = risk.scenario_risk(books=[trades], shifts=[Shift("rho", "heston_rho", "absolute", ["SPX"])],
                             sizes=[[0.0, -0.5]], labels=["same", "beyond"], output="both")
    assert np.all(bad.cube[:, 0] == 0.0) and np.isnan(bad.cube[:, 1]).all()
    assert {e.scenario for e in bad.errors} == {1} and bad.failed_cells == N
    assert all("rho" in e.field for e in bad.errors)


def test_a_heston_shift_leaves_black_type_trades_alone_and_needs_parallel(risk, snapshot_id):
    from pricegrid.clients import PricingError

    black = risk.book("european", model="bsm", underlying_id="SPX", snapshot_id=snapshot_id, option_type="call",
                      strike=[6000.0], time_to_expiry=[1.0])
    r = risk.scenario_risk(books=[black], shifts=[Shift("v0", "heston_v0", "absolute", ["SPX"])], sizes=[[0.02]],
                           labels=["up"], output="cube")
    assert r.cube[0, 0] == 0.0
    with pytest.raises(PricingError) as e:
        risk.scenario_risk(books=[black], shifts=[Shift("v0", "heston_v0", "absolute", ["SPX"], tenors=["1Y"])],
                           sizes=[[0.02]], labels=["up"])
    assert e.value.field == "scenarios.shifts[0].buckets"
