"""PriceStream's bounds: what a stream holds (trades, bytes; all streams' bytes together),
what one market update may cost, a move stopped when its caller goes away, and a market
update's own fields (trade_id is a price message's)."""

import time

import grpc
import numpy as np
import pytest

from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import pricing_pb2 as pb
from pricegrid.v1 import pricing_pb2_grpc
from tests.conftest import start_server
from tests.server.test_rpc_budgets import _cpu_over
from tests.server.test_rpc_stream import Stream, trade

RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]


def _heston_mc(paths: int) -> pb.PriceRequest:
    """A one-year Heston European by Monte Carlo (52 steps a path; 40,000 paths: about 0.035
    estimated core-seconds, 1,000,000 about a second)."""
    return pb.PriceRequest(
        model=c.MODEL_HESTON, engine=c.ENGINE_MONTE_CARLO,
        european=pb.EuropeanOption(option_type=c.OPTION_TYPE_CALL, strike=100.0, expiry=pb.Expiry(year_fraction=1.0)),
        market=pb.Market(spot=100.0, rate=0.03, heston=pb.HestonParameters(v0=0.04, kappa=1.5, theta=0.04, sigma=0.5,
                                                                             rho=-0.7)),
        settings=pb.EngineSettings(paths=paths, seed=11),
    )


def _asian(fixings: int) -> pb.PriceRequest:
    """A geometric Asian with ``fixings`` fixings in its year: about 8 bytes each held."""
    return pb.PriceRequest(
        model=c.MODEL_BLACK_SCHOLES_MERTON,
        asian=pb.AsianOption(averaging=c.AVERAGING_GEOMETRIC, option_type=c.OPTION_TYPE_CALL, strike=100.0,
                             expiry=pb.Expiry(year_fraction=1.0),
                             fixing_times=np.linspace(1.0 / fixings, 1.0, fixings).tolist()),
        market=pb.Market(spot=100.0, rate=0.03, volatility=0.2),
    )


@pytest.fixture(scope="module")
def capped():
    """Small caps: one trade may cost 0.05 core-seconds (so may one market update), a stream
    hold 100,000 bytes of trades, all streams 150,000 (a 5,000-fixing Asian: about 41 kB)."""
    running = start_server(max_cost_unary_s=0.05, max_stream_held_bytes=100_000, max_held_bytes=150_000)
    channel = grpc.insecure_channel(running.address)
    yield pricing_pb2_grpc.PricingServiceStub(channel)
    channel.close()
    running.stop(0.5)


def test_a_market_update_with_a_trade_id_is_refused_and_moves_nothing(stub):
    """trade_id on a market_update message would be ignored (the move names its trades in
    market_update.trade_ids; empty: all): refused, naming it."""
    s = Stream(stub.PriceStream)
    s.send(pb.PriceStreamRequest(correlation_id="a", trade_id="A", price=trade(100.0)))
    s.send(pb.PriceStreamRequest(correlation_id="b", trade_id="B", price=trade(110.0)))
    a, b = s.recv(2)
    s.send(pb.PriceStreamRequest(correlation_id="m", trade_id="A", market_update=pb.MarketUpdate(spot=120.0)))
    (refused,) = s.recv(1)
    assert refused.error.code == INVALID_ARGUMENT and refused.error.field == "trade_id"
    assert "market_update.trade_ids" in refused.error.message
    s.send(pb.PriceStreamRequest(correlation_id="same", market_update=pb.MarketUpdate(spot=100.0)))
    again = {r.trade_id: r.result.price for r in s.recv(2)}
    assert again == {"A": a.result.price, "B": b.result.price}  # the refused move moved nothing
    assert s.close() == []


def test_a_move_costing_more_than_one_trade_may_is_refused_before_any_work(capped):
    """Two held Monte Carlo trades of about 0.035 estimated core-seconds each: a move of both
    (0.07) is over the cap for one stream message (0.05) and is refused whole, naming
    market_update.trade_ids; a move of one prices; the refused move moved nothing."""
    s = Stream(capped.PriceStream)
    s.send(pb.PriceStreamRequest(correlation_id="a", trade_id="A", price=_heston_mc(40_000)))
    s.send(pb.PriceStreamRequest(correlation_id="b", trade_id="B", price=_heston_mc(40_000)))
    held = s.recv(2)
    assert all(r.HasField("result") for r in held), held
    moved = pb.HestonParameters(v0=0.09, kappa=1.5, theta=0.04, sigma=0.5, rho=-0.7)
    s.send(pb.PriceStreamRequest(correlation_id="both", market_update=pb.MarketUpdate(heston=moved)))
    (refused,) = s.recv(1)
    assert refused.error.code == RESOURCE_EXHAUSTED and refused.error.field == "market_update.trade_ids"
    assert "0.05 core-seconds" in refused.error.message and "2 trades" in refused.error.message
    s.send(pb.PriceStreamRequest(correlation_id="rate", market_update=pb.MarketUpdate(rate=0.03, trade_ids=["A"])))
    (same,) = s.recv(1)
    assert same.result.price == held[0].result.price  # A kept its Heston parameters
    s.send(pb.PriceStreamRequest(correlation_id="one", market_update=pb.MarketUpdate(heston=moved, trade_ids=["B"])))
    (one,) = s.recv(1)
    assert one.trade_id == "B" and one.result.price > held[1].result.price  # more variance, a dearer call
    assert s.close() == []


def test_a_move_stops_when_its_caller_goes_away():
    """A move re-pricing a trade of about a second (1M Heston paths) on a server whose caps
    allow it: the stream cancelled 0.2 s into the move, the kernel stops (it polls the
    stream's cancellation) instead of finishing for no one."""
    running = start_server(kernel_threads=1, max_cost_unary_s=1e6, max_cost_batch_s=1e6)
    channel = grpc.insecure_channel(running.address)
    try:
        stub = pricing_pb2_grpc.PricingServiceStub(channel)
        s = Stream(stub.PriceStream)
        s.send(pb.PriceStreamRequest(correlation_id="hold", trade_id="H", price=_heston_mc(1_000_000)))
        (held,) = s.recv(1)
        assert held.HasField("result")
        moved = pb.HestonParameters(v0=0.05, kappa=1.5, theta=0.04, sigma=0.5, rho=-0.7)
        s.send(pb.PriceStreamRequest(correlation_id="move", market_update=pb.MarketUpdate(heston=moved)))
        time.sleep(0.2)
        s.replies.cancel()
        time.sleep(0.1)
        assert _cpu_over(0.3) < 0.15  # (the move would spend ~0.3 s of the window)
    finally:
        channel.close()
        running.stop(0.5)


def test_what_a_stream_holds_is_capped_in_bytes_and_so_is_what_all_streams_hold(capped):
    """Per stream 100,000 bytes: two 5,000-fixing Asians (about 41 kB each) are held, a third
    is refused naming trade_id (the stream goes on, and a trade replaced by one of its size
    still fits). All streams 150,000: a second stream's second trade is refused while the
    first stream holds its two, and held once the first stream has ended."""
    first = Stream(capped.PriceStream)
    for i in range(3):
        first.send(pb.PriceStreamRequest(correlation_id=f"h{i}", trade_id=f"A{i}", price=_asian(5_000)))
    a0, a1, a2 = first.recv(3)
    assert a0.HasField("result") and a1.HasField("result")
    assert a2.error.code == RESOURCE_EXHAUSTED and a2.error.field == "trade_id"
    assert "100,000 per stream" in a2.error.message
    first.send(pb.PriceStreamRequest(correlation_id="again", trade_id="A1", price=_asian(5_000)))
    first.send(pb.PriceStreamRequest(correlation_id="free", price=_asian(5_000)))  # not held: no bytes
    replaced, free = first.recv(2)
    assert replaced.HasField("result") and free.HasField("result")

    second = Stream(capped.PriceStream)
    second.send(pb.PriceStreamRequest(correlation_id="b0", trade_id="B0", price=_asian(5_000)))
    second.send(pb.PriceStreamRequest(correlation_id="b1", trade_id="B1", price=_asian(5_000)))
    b0, b1 = second.recv(2)
    assert b0.HasField("result")
    assert b1.error.code == RESOURCE_EXHAUSTED and b1.error.field == "trade_id"
    assert "150,000" in b1.error.message
    assert first.close() == []
    time.sleep(0.2)  # (the first stream's end reaches the server)
    second.send(pb.PriceStreamRequest(correlation_id="b1", trade_id="B1", price=_asian(5_000)))
    (b1,) = second.recv(1)
    assert b1.HasField("result")
    assert second.close() == []


def test_a_stream_cancelled_while_its_trade_is_priced_gives_its_bytes_back():
    """The stream's end gives its trades' bytes back to the server's budget while a message
    may still be read and priced in the pool (a 120,000-fixing Asian: about 1 MB, some ms):
    that message's trade must not be held afterwards. Its bytes were leaked for good, and a
    few such cancels left no stream able to hold a trade."""
    running = start_server(max_held_bytes=1_500_000)  # one such trade at a time
    channel = grpc.insecure_channel(running.address)
    try:
        stub = pricing_pb2_grpc.PricingServiceStub(channel)
        big = _asian(120_000)
        for delay in (0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.006, 0.008):
            s = Stream(stub.PriceStream)
            s.send(pb.PriceStreamRequest(correlation_id="hold", trade_id="H", price=big))
            time.sleep(delay)
            s.replies.cancel()
        time.sleep(0.5)  # (every cancelled message has finished in the pool)
        s = Stream(stub.PriceStream)
        s.send(pb.PriceStreamRequest(correlation_id="hold", trade_id="H", price=big))
        (held,) = s.recv(1)
        assert held.HasField("result"), held.error.message
        assert s.close() == []
    finally:
        channel.close()
        running.stop(0.5)


def test_a_trade_reserved_when_its_stream_ends_is_not_held():
    """The order the race above takes, step by step: bytes reserved before the work, the
    stream closed, then the work done: nothing held, nothing left taken from the budget."""
    from pricegrid.server.rpc import requests as req
    from pricegrid.server.service.pricing import Limits, PricingService
    from pricegrid.server.service.ticking import HeldBytes, HeldTrade, TickingBook

    service = PricingService(Limits())
    budget = HeldBytes(10_000)
    book = TickingBook(service, 10, budget=budget)
    spec, batch, market, measures, fields, settings = req.product_one(trade(100.0), service.catalogue)
    held = HeldTrade(spec, batch, market, tuple(measures), fields, settings)
    delta, taken = book._reserve("T", held)
    assert taken > 0 and budget.used == taken
    book.close()
    book._commit("T", held, delta, taken)
    assert budget.used == 0 and book.trades == {} and book.bytes == 0
    book2 = TickingBook(service, 10, budget=budget)
    book2.price(spec, batch, market, measures, fields, settings, trade_id="T")
    assert budget.used > 0
    book2.close()
    assert budget.used == 0
