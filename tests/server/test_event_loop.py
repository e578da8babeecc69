"""The server's event loop (Settings.event_loop): uvloop by default, asyncio's own when asked;
either serves the lean Price path, a PriceStream and a call off the lean path the same."""

from __future__ import annotations


import grpc
import pytest

from pricegrid.server.app.settings import Settings
from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import pricing_pb2 as pb
from pricegrid.v1 import pricing_pb2_grpc
from tests.conftest import start_server


def _requests():
    lean = pb.PriceRequest(model=c.MODEL_BLACK_SCHOLES_MERTON, measures=[c.MEASURE_DELTA],
                           european=pb.EuropeanOption(option_type=c.OPTION_TYPE_CALL, strike=100.0,
                                                      expiry=pb.Expiry(year_fraction=0.5)),
                           market=pb.Market(spot=100.0, rate=0.05, volatility=0.2))
    dated = pb.PriceRequest()  # off the lean path: an expiry by dates is a batch of one
    dated.CopyFrom(lean)
    dated.european.expiry.CopyFrom(pb.Expiry(dates=pb.ExpiryDates(
        valuation_date=c.Date(year=2030, month=12, day=31), expiry_date=c.Date(year=2031, month=6, day=30),
        day_count=c.DAY_COUNT_ACT_365F)))
    return lean, dated


@pytest.mark.parametrize("kind", ["uvloop", "asyncio"])
def test_each_event_loop_serves_the_same_answers(kind):
    running = start_server(event_loop=kind, metrics_port=-1)
    try:
        module = type(running.loop).__module__
        assert module.startswith("uvloop") if kind == "uvloop" else module.startswith("asyncio")
        lean, dated = _requests()
        with grpc.insecure_channel(running.address) as channel:
            stub = pricing_pb2_grpc.PricingServiceStub(channel)
            a = stub.Price(lean, timeout=10)
            b = stub.Price(dated, timeout=10)
            replies = list(stub.PriceStream(iter([pb.PriceStreamRequest(correlation_id="x", price=lean)]), timeout=10))
        assert a.price > 0 and a.greeks.delta > 0 and a.priced_by.engine == "analytic_european"
        assert b.price > 0 and b.inputs.time_to_expiry == pytest.approx(181 / 365, rel=1e-12)
        assert [r.correlation_id for r in replies] == ["x"] and replies[0].result == a
    finally:
        running.stop(0)


def test_the_default_is_uvloop_and_other_names_are_refused():
    assert Settings().event_loop == "uvloop"
    with pytest.raises(ValueError, match="event_loop must be uvloop or asyncio"):
        Settings(event_loop="trio")
