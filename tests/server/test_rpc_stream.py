"""PriceStream: trades and market updates with correlation ids; errors per message."""

import queue
import threading

import grpc
import pytest

from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import pricing_pb2 as pb


class Stream:
    """A bidirectional stream driven one message at a time."""

    def __init__(self, call_factory):
        self.outbox = queue.Queue()
        self.replies = call_factory(iter(self.outbox.get, None), timeout=30)

    def send(self, message):
        self.outbox.put(message)

    def recv(self, n=1):
        return [next(self.replies) for _ in range(n)]

    def close(self):
        self.outbox.put(None)
        return list(self.replies)


def trade(strike=100.0, model=c.MODEL_BLACK_SCHOLES_MERTON, **market):
    m = dict(spot=100.0, rate=0.03, volatility=0.2) if model == c.MODEL_BLACK_SCHOLES_MERTON else dict(
        forward=70.0, rate=0.03, volatility=0.4)
    m.update(market)
    return pb.PriceRequest(
        model=model,
        european=pb.EuropeanOption(option_type=c.OPTION_TYPE_CALL, strike=strike, expiry=pb.Expiry(year_fraction=0.5)),
        market=pb.Market(**m),
        measures=[c.MEASURE_DELTA],
    )


def test_price_messages_are_answered_in_order(stub):
    s = Stream(stub.PriceStream)
    for i in range(5):
        s.send(pb.PriceStreamRequest(correlation_id=f"q{i}", price=trade(90.0 + 5 * i)))
    replies = s.recv(5)
    assert [r.correlation_id for r in replies] == [f"q{i}" for i in range(5)]
    assert all(r.HasField("result") and not r.HasField("error") for r in replies)
    assert replies[0].result.price > replies[4].result.price
    assert s.close() == []


def test_errors_are_per_message_and_the_stream_goes_on(stub):
    s = Stream(stub.PriceStream)
    s.send(pb.PriceStreamRequest(correlation_id="bad", price=trade(-1.0)))
    s.send(pb.PriceStreamRequest(correlation_id="good", price=trade(100.0)))
    s.send(pb.PriceStreamRequest(correlation_id="empty"))
    bad, good, empty = s.recv(3)
    assert bad.correlation_id == "bad" and bad.error.code == 3 and bad.error.field == "price.european.strike"
    assert good.correlation_id == "good" and good.result.price > 0
    assert empty.error.code == 3 and "body" in empty.error.message
    s.close()


def test_market_updates_reprice_held_trades(stub):
    s = Stream(stub.PriceStream)
    s.send(pb.PriceStreamRequest(correlation_id="t1", trade_id="A", price=trade(100.0)))
    s.send(pb.PriceStreamRequest(correlation_id="t2", trade_id="B", price=trade(110.0)))
    s.send(pb.PriceStreamRequest(correlation_id="t3", trade_id="F", price=trade(70.0, model=c.MODEL_BLACK_76)))
    a0, b0, f0 = s.recv(3)
    # a spot move for every trade: the Black-76 trade cannot take a spot and says so
    s.send(pb.PriceStreamRequest(correlation_id="tick1", market_update=pb.MarketUpdate(spot=105.0)))
    moved = {r.trade_id: r for r in s.recv(3)}
    assert all(r.correlation_id == "tick1" for r in moved.values())
    assert moved["A"].result.price > a0.result.price and moved["B"].result.price > b0.result.price
    assert moved["F"].error.field == "market_update.spot"
    # a vol move for one trade only
    s.send(pb.PriceStreamRequest(correlation_id="tick2", market_update=pb.MarketUpdate(volatility=0.3, trade_ids=["B"])))
    (only,) = s.recv(1)
    assert only.trade_id == "B" and only.result.price > moved["B"].result.price
    assert only.result.inputs.volatility == 0.3
    # a move no trade can take is refused once, naming its field, and moves nothing
    s.send(pb.PriceStreamRequest(correlation_id="tick3", market_update=pb.MarketUpdate(volatility=-1, trade_ids=["A", "Z"])))
    (bad,) = s.recv(1)
    assert bad.correlation_id == "tick3" and bad.error.code == 3 and bad.error.field == "market_update.volatility"
    # an unknown trade, and a move that one trade's model refuses (a zero vol): per trade,
    # naming the move's field
    s.send(pb.PriceStreamRequest(correlation_id="tick4", market_update=pb.MarketUpdate(volatility=0.0, trade_ids=["Z", "A"])))
    bad_z, bad_a = s.recv(2)
    assert bad_z.trade_id == "Z" and bad_z.error.field == "market_update.trade_ids"
    assert bad_a.trade_id == "A" and bad_a.error.code == 3 and bad_a.error.field == "market_update.volatility"
    s.close()


def test_garbage_message_gets_an_error_reply(channel):
    call = channel.stream_stream("/pricegrid.v1.PricingService/PriceStream")
    good = pb.PriceStreamRequest(correlation_id="ok", price=trade()).SerializeToString()
    replies = [pb.PriceStreamResponse.FromString(b) for b in call(iter([good, b"\xff\xff\xff\x0fjunk", good]), timeout=10)]
    assert [r.HasField("error") for r in replies] == [False, True, False]
    assert replies[1].error.code == 3


def test_many_streams_in_parallel(stub):
    errors = []

    def run(k):
        try:
            s = Stream(stub.PriceStream)
            for i in range(50):
                s.send(pb.PriceStreamRequest(correlation_id=f"{k}-{i}", price=trade(80.0 + i)))
                (r,) = s.recv(1)
                assert r.correlation_id == f"{k}-{i}" and r.result.price > 0
            s.close()
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors


def test_every_message_is_answered(stub):
    """A market update that moves nothing still gets one reply: a bad one (NaN) its error,
    a valid one on a stream holding no trade a FAILED_PRECONDITION; the stream goes on."""
    s = Stream(stub.PriceStream)
    s.send(pb.PriceStreamRequest(correlation_id="nan", market_update=pb.MarketUpdate(spot=float("nan"))))
    s.send(pb.PriceStreamRequest(correlation_id="inf", market_update=pb.MarketUpdate(
        rate=float("inf"), heston=pb.HestonParameters(v0=float("nan"), kappa=1.0, theta=0.04, sigma=0.5))))
    s.send(pb.PriceStreamRequest(correlation_id="none", market_update=pb.MarketUpdate(spot=101.0)))
    s.send(pb.PriceStreamRequest(correlation_id="empty", market_update=pb.MarketUpdate()))
    nan, inf, none, empty = s.recv(4)
    assert nan.correlation_id == "nan" and nan.error.code == 3 and nan.error.field == "market_update.spot"
    assert inf.error.code == 3 and "market_update.rate" in inf.error.message
    assert "market_update.heston.v0" in inf.error.message
    assert none.correlation_id == "none" and none.error.code == 9  # FAILED_PRECONDITION: no trade held
    assert empty.error.code == 9
    s.send(pb.PriceStreamRequest(correlation_id="t", trade_id="A", price=trade(100.0)))
    (a,) = s.recv(1)
    # a bad move with a trade held is refused once, not once per trade, and moves nothing
    s.send(pb.PriceStreamRequest(correlation_id="nan2", market_update=pb.MarketUpdate(volatility=float("nan"))))
    (nan2,) = s.recv(1)
    assert nan2.error.field == "market_update.volatility" and not nan2.trade_id
    s.send(pb.PriceStreamRequest(correlation_id="ok", market_update=pb.MarketUpdate(spot=100.0)))
    (ok,) = s.recv(1)
    assert ok.trade_id == "A" and ok.result.price == a.result.price  # the NaN did not stick
    assert s.close() == []


def test_replies_for_unknown_trade_ids_are_capped(stub):
    s = Stream(stub.PriceStream)
    s.send(pb.PriceStreamRequest(correlation_id="t", trade_id="A", price=trade(100.0)))
    s.recv(1)
    ids = [f"X{i}" for i in range(10_000)] + ["A", "A"]
    s.send(pb.PriceStreamRequest(correlation_id="many", market_update=pb.MarketUpdate(spot=102.0, trade_ids=ids)))
    s.send(pb.PriceStreamRequest(correlation_id="next", price=trade(100.0)))
    replies = []
    while not replies or replies[-1].correlation_id != "next":
        replies += s.recv(1)
    many = [r for r in replies if r.correlation_id == "many"]
    unknown = [r for r in many if r.HasField("error")]
    assert len(unknown) == 11  # ten by name, then one for the other 9,990
    assert "9990 more" in unknown[-1].error.message
    moved = [r for r in many if r.HasField("result")]
    assert [r.trade_id for r in moved] == ["A"]  # named twice, moved once
    s.close()


def test_setting_and_cost_errors_name_the_field_inside_the_message(stub):
    """A stream trade's settings are ``price.settings...``: the engine's minimum, the unread
    ones, a value out of range and the cost cap alike."""
    def mc(**settings):
        r = pb.PriceRequest(
            model=c.MODEL_BLACK_SCHOLES_MERTON, engine=c.ENGINE_MONTE_CARLO,
            barrier=pb.BarrierOption(barrier_type=c.BARRIER_TYPE_DOWN_OUT, option_type=c.OPTION_TYPE_CALL,
                                     strike=100.0, barrier=90.0, expiry=pb.Expiry(year_fraction=0.5)),
            market=pb.Market(spot=100.0, rate=0.03, volatility=0.2), settings=pb.EngineSettings(**settings))
        return r

    s = Stream(stub.PriceStream)
    cases = [(mc(paths=10), 3, "price.settings.paths"), (mc(paths=0), 3, "price.settings.paths"),
             (mc(paths=10**9), 8, "price.settings.paths"), (mc(paths=1000, tree_steps=5), 3, "price.settings.tree_steps"),
             (mc(paths=1000), 0, "")]
    for i, (request, _, _) in enumerate(cases):
        s.send(pb.PriceStreamRequest(correlation_id=f"m{i}", price=request))
    replies = s.recv(len(cases))
    for reply, (_, code, field) in zip(replies, cases):
        if code:
            assert (reply.error.code, reply.error.field) == (code, field), reply
        else:
            assert reply.HasField("result") and reply.result.price > 0
    assert s.close() == []


def test_market_updates_on_a_trade_held_on_a_snapshot(stub, channel):
    """A trade priced on a snapshot takes its spot, rate and dividends from it: a move of one
    of them is refused for that trade, naming the field (it ended the whole stream with
    INTERNAL); its inline vol moves as an inline trade's does; the stream goes on."""
    from pricegrid.v1 import market_pb2 as mpb
    from pricegrid.v1 import market_pb2_grpc

    demo = market_pb2_grpc.MarketDataServiceStub(channel).ListSnapshots(
        mpb.ListSnapshotsRequest(name="demo"), timeout=10).snapshots[0].id
    on_snapshot = pb.PriceRequest(
        model=c.MODEL_BLACK_SCHOLES_MERTON, measures=[c.MEASURE_DELTA],
        european=pb.EuropeanOption(option_type=c.OPTION_TYPE_CALL, strike=6000.0, expiry=pb.Expiry(year_fraction=0.5)),
        market=pb.Market(snapshot_id=demo, underlying_id="SPX"))
    s = Stream(stub.PriceStream)
    s.send(pb.PriceStreamRequest(correlation_id="p", trade_id="S", price=on_snapshot))
    s.send(pb.PriceStreamRequest(correlation_id="q", trade_id="A", price=trade(100.0)))
    s0, a0 = s.recv(2)
    assert s0.result.market.snapshot_id == demo and s0.result.market.vol_surface
    for name, value in (("spot", 6100.0), ("rate", 0.01), ("dividend_yield", 0.02)):
        s.send(pb.PriceStreamRequest(correlation_id=name, market_update=pb.MarketUpdate(trade_ids=["S", "A"],
                                                                                       **{name: value})))
        by_id = {r.trade_id: r for r in s.recv(2)}
        assert by_id["S"].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert by_id["S"].error.field == f"market_update.{name}" and demo in by_id["S"].error.message
        assert by_id["A"].result.price > 0  # the inline trade moved
    s.send(pb.PriceStreamRequest(correlation_id="vol", market_update=pb.MarketUpdate(volatility=0.3, trade_ids=["S"])))
    (moved,) = s.recv(1)
    assert moved.result.inputs.volatility == 0.3 and moved.result.price > s0.result.price
    assert moved.result.market.snapshot_id == demo and not moved.result.market.vol_surface
    s.send(pb.PriceStreamRequest(correlation_id="again", price=on_snapshot))
    (again,) = s.recv(1)
    assert again.result.price == s0.result.price
    assert s.close() == []
