"""Price and ImpliedVolatility RPCs against golden requests (tests/golden/price.json, expected
values from QuantLib; regenerate with tests/golden/make_golden.py)."""

import json
import math
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format

from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import pricing_pb2 as pb

GOLDEN = json.loads((Path(__file__).parents[1] / "golden" / "price.json").read_text())
REL = 1e-12


def close(a, b, rel=REL, abs_=1e-12):
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


@pytest.mark.parametrize("case", GOLDEN, ids=[c["name"] for c in GOLDEN])
def test_golden_price(stub, case):
    request = json_format.ParseDict(case["request"], pb.PriceRequest())
    response = stub.Price(request, timeout=5)
    expected = case["expected"]
    assert close(response.price, expected["price"]), (response.price, expected["price"])
    for name, value in expected.get("greeks", {}).items():
        field = json_format.MessageToDict(response.greeks, preserving_proto_field_name=False)
        assert close(field[name], value, rel=1e-10, abs_=1e-10), (name, field[name], value)
    for name, value in expected["inputs"].items():
        got = json_format.MessageToDict(response.inputs)[name]
        assert close(got, value), (name, got, value)
    assert response.priced_by.version and response.priced_by.engine == "analytic_european"


def test_units_per_point_and_per_day(stub):
    request = json_format.ParseDict(GOLDEN[0]["request"], pb.PriceRequest())
    g = stub.Price(request, timeout=5).greeks
    assert g.vega_per_point == pytest.approx(g.vega / 100, rel=1e-15)
    assert g.theta_per_day == pytest.approx(g.theta / 365, rel=1e-15)


def test_only_requested_greeks_are_present(stub):
    request = json_format.ParseDict(GOLDEN[0]["request"], pb.PriceRequest())
    del request.measures[:]
    request.measures.append(c.MEASURE_GAMMA)
    response = stub.Price(request, timeout=5)
    assert response.greeks.HasField("gamma")
    assert not response.greeks.HasField("delta") and not response.greeks.HasField("vega")


def test_model_and_inputs_echoed(stub):
    request = pb.PriceRequest(
        model=c.MODEL_BLACK_SCHOLES_MERTON,
        european=pb.EuropeanOption(option_type=c.OPTION_TYPE_CALL, strike=100, expiry=pb.Expiry(year_fraction=2.0)),
        market=pb.Market(spot=100, rate=0.03, dividend_yield=0.01, volatility=0.25),
    )
    response = stub.Price(request, timeout=5)
    assert response.priced_by.model == "black_scholes_merton"
    assert response.inputs.forward == pytest.approx(100 * math.exp(0.02 * 2), rel=1e-15)
    assert response.inputs.discount_factor == pytest.approx(math.exp(-0.06), rel=1e-15)
    assert response.inputs.time_to_expiry == 2.0 and response.inputs.volatility == 0.25


@pytest.mark.parametrize("case", GOLDEN, ids=[c["name"] for c in GOLDEN])
def test_implied_vol_round_trip(stub, case):
    request = json_format.ParseDict(case["request"], pb.PriceRequest())
    iv = stub.ImpliedVolatility(
        pb.ImpliedVolatilityRequest(
            model=request.model, european=request.european, market=request.market, price=case["expected"]["price"]
        ),
        timeout=5,
    )
    assert iv.volatility == pytest.approx(request.market.volatility, rel=1e-10)
    assert iv.priced_by.engine.startswith("implied_vol")


def test_every_measure_comes_back_in_details_with_its_value(stub):
    r = pb.PriceRequest(model=1, measures=[c.MEASURE_CHARM, c.MEASURE_DELTA],
                        european=pb.EuropeanOption(option_type=1, strike=100.0, expiry=pb.Expiry(year_fraction=0.5)),
                        market=pb.Market(spot=100.0, rate=0.03, volatility=0.2))
    got = stub.Price(r, timeout=10)  # the lean path
    assert [d.measure for d in got.details] == [c.MEASURE_PRICE, c.MEASURE_DELTA, c.MEASURE_CHARM]
    assert [d.value for d in got.details] == [got.price, got.greeks.delta, got.greeks.charm]
    assert {d.method for d in got.details} == {c.GREEK_METHOD_ANALYTIC}
    r.european.expiry.ClearField("year_fraction")  # the full path (dates): the same details
    r.european.expiry.dates.CopyFrom(pb.ExpiryDates(valuation_date=c.Date(year=2026, month=1, day=2),
                                                    expiry_date=c.Date(year=2026, month=7, day=3),
                                                    day_count=c.DAY_COUNT_ACT_365F))
    got = stub.Price(r, timeout=10)
    assert [d.value for d in got.details] == [got.price, got.greeks.delta, got.greeks.charm]


def test_a_measure_the_engine_does_not_compute_names_its_field(stub):
    r = pb.PriceRequest(model=1, measures=[c.MEASURE_DELTA, c.MEASURE_CLEAN_PRICE],
                        european=pb.EuropeanOption(option_type=1, strike=100.0, expiry=pb.Expiry(year_fraction=0.5)),
                        market=pb.Market(spot=100.0, rate=0.03, volatility=0.2))
    with pytest.raises(grpc.RpcError) as e:
        stub.Price(r, timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "measures[1]" in e.value.details()
