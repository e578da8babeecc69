"""PriceStream: trades and market updates with correlation ids; errors per message."""

import math
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


# ------------------------------------------------------------------ barriers on a stream
def _barrier(kind, **fields):
    """A 6-month call (a one-touch: cash 1) on spot 100, vol 20%, rate 3%, with Greeks."""
    expiry = pb.Expiry(year_fraction=0.5)
    if kind == "touch":
        product = {"touch": pb.TouchOption(expiry=expiry, **fields)}
    elif kind == "double_barrier":
        product = {"double_barrier": pb.DoubleBarrierOption(option_type=c.OPTION_TYPE_CALL, strike=100.0,
                                                            expiry=expiry, **fields)}
    else:
        product = {"barrier": pb.BarrierOption(option_type=c.OPTION_TYPE_CALL, strike=100.0, expiry=expiry,
                                               **fields)}
    return pb.PriceRequest(model=c.MODEL_BLACK_SCHOLES_MERTON, market=pb.Market(spot=100.0, rate=0.03, volatility=0.2),
                           measures=[c.MEASURE_DELTA, c.MEASURE_GAMMA, c.MEASURE_VEGA], **product)


def _at(request, spot, **product):
    """``request`` priced alone at ``spot`` (its barrier fields replaced by ``product``)."""
    r = pb.PriceRequest()
    r.CopyFrom(request)
    r.market.spot = spot
    which = r.WhichOneof("instrument")
    for name, value in product.items():
        setattr(getattr(r, which), name, value)
    return r


def _european_at(spot):
    return pb.PriceRequest(model=c.MODEL_BLACK_SCHOLES_MERTON,
                           european=pb.EuropeanOption(option_type=c.OPTION_TYPE_CALL, strike=100.0,
                                                      expiry=pb.Expiry(year_fraction=0.5)),
                           market=pb.Market(spot=spot, rate=0.03, volatility=0.2),
                           measures=[c.MEASURE_DELTA, c.MEASURE_GAMMA, c.MEASURE_VEGA])


def _assert_the_european(stub, result, spot):
    """A touched knock-in: the European call at ``spot``, its price to 1e-12 and its Greeks (the
    barrier kernel's differences) as tests/ext/test_barrier_kernel.py's GREEK_TOL."""
    european = stub.Price(_european_at(spot), timeout=10)
    assert result.price == pytest.approx(european.price, rel=1e-12)
    assert result.greeks.delta == pytest.approx(european.greeks.delta, rel=1e-6, abs=1e-9)
    assert result.greeks.gamma == pytest.approx(european.greeks.gamma, rel=1e-4, abs=1e-8)
    assert result.greeks.vega == pytest.approx(european.greeks.vega, rel=1e-6, abs=1e-8)


def _numbers(result):
    return (result.price, result.greeks.delta, result.greeks.gamma, result.greeks.vega)


def _walk(stub, request, spots):
    """Hold ``request`` as trade T and move its spot along ``spots``: the replies' results."""
    s = Stream(stub.PriceStream)
    s.send(pb.PriceStreamRequest(correlation_id="hold", trade_id="T", price=request))
    replies = s.recv(1)
    for i, spot in enumerate(spots):
        s.send(pb.PriceStreamRequest(correlation_id=f"m{i}", market_update=pb.MarketUpdate(spot=spot)))
        replies += s.recv(1)
    assert s.close() == []
    for r in replies:
        assert r.HasField("result"), r
    return [r.result for r in replies]


def test_a_move_to_or_beyond_a_barrier_touches_the_held_trade_and_it_stays_touched(stub):
    """The touch is path state, as a lookback's extremes are: once a move brings the spot to
    or beyond a held trade's barrier, the trade is priced as touched (a knock-out its rebate
    now, a knock-in the European, a one-touch its cash's present value, a no-touch 0), at
    every later spot too, the spot back inside included (it was refused beyond the barrier,
    and priced as never touched once back)."""
    price = lambda r: stub.Price(r, timeout=10)  # noqa: E731
    # a down-and-out with a rebate: alive, then knocked out beyond the barrier, then back
    out = _barrier("barrier", barrier_type=c.BARRIER_TYPE_DOWN_OUT, barrier=90.0, rebate=2.0)
    held, alive, knocked, back = _walk(stub, out, [95.0, 88.0, 100.0])
    assert _numbers(held) == _numbers(price(out))
    assert _numbers(alive) == _numbers(price(_at(out, 95.0)))
    assert _numbers(knocked) == _numbers(back) == (2.0, 0.0, 0.0, 0.0)
    assert _numbers(price(out))[0] != 2.0  # (the untouched trade at 100 is not its rebate)
    # a down-and-in: from the touch on, the trade at its barrier (the European), at each spot
    knock_in = _barrier("barrier", barrier_type=c.BARRIER_TYPE_DOWN_IN, barrier=90.0, rebate=1.0)
    results = _walk(stub, knock_in, [90.0, 105.0, 80.0])
    for result, spot in zip(results[1:], (90.0, 105.0, 80.0)):
        _assert_the_european(stub, result, spot)
        assert _numbers(result) == _numbers(price(_at(knock_in, spot, barrier=spot)))
    # an up-and-out crossed upwards: 0 without a rebate, and after
    up = _barrier("barrier", barrier_type=c.BARRIER_TYPE_UP_OUT, barrier=120.0)
    assert [_numbers(r) for r in _walk(stub, up, [125.0, 110.0])] [1:] == [(0.0, 0.0, 0.0, 0.0)] * 2
    # double barriers: at or beyond either one
    for spots in ([130.0, 100.0], [70.0, 100.0], [80.0, 119.0]):
        d_out = _barrier("double_barrier", knock_type=c.KNOCK_TYPE_KNOCK_OUT, lower_barrier=80.0,
                         upper_barrier=120.0)
        assert [_numbers(r) for r in _walk(stub, d_out, spots)][1:] == [(0.0, 0.0, 0.0, 0.0)] * 2, spots
        d_in = _barrier("double_barrier", knock_type=c.KNOCK_TYPE_KNOCK_IN, lower_barrier=80.0,
                        upper_barrier=120.0)
        for result, spot in zip(_walk(stub, d_in, spots)[1:], spots):
            _assert_the_european(stub, result, spot)
            pinned = {"upper_barrier": spot} if spot >= 120.0 else {"lower_barrier": spot}
            assert _numbers(result) == _numbers(price(_at(d_in, spot, **pinned))), spots
    # touches: a one-touch paid at expiry is worth its cash's present value, a no-touch 0
    one = _barrier("touch", touch_type=c.TOUCH_TYPE_ONE_TOUCH, direction=c.BARRIER_DIRECTION_UP,
                   payment=c.TOUCH_PAYMENT_AT_EXPIRY, cash=10.0, barrier=110.0)
    results = _walk(stub, one, [105.0, 112.0, 95.0])
    assert _numbers(results[1]) == _numbers(price(_at(one, 105.0)))
    for result, spot in zip(results[2:], (112.0, 95.0)):
        assert result.price == pytest.approx(10.0 * math.exp(-0.03 * 0.5), rel=1e-15)
        assert _numbers(result) == _numbers(price(_at(one, spot, barrier=spot)))  # at its barrier: touched
    none = _barrier("touch", touch_type=c.TOUCH_TYPE_NO_TOUCH, direction=c.BARRIER_DIRECTION_DOWN, barrier=90.0)
    assert [r.price for r in _walk(stub, none, [85.0, 100.0])][1:] == [0.0, 0.0]


def test_a_trade_held_at_its_barrier_is_touched_and_one_never_touched_is_not(stub):
    """Sent at its barrier, a trade is touched now and stays so when the spot moves away; a
    trade whose spot moves inside its barriers is priced as the same trade sent at that spot."""
    price = lambda r: stub.Price(r, timeout=10)  # noqa: E731
    at = _barrier("barrier", barrier_type=c.BARRIER_TYPE_DOWN_OUT, barrier=100.0, rebate=3.0)
    assert [_numbers(r) for r in _walk(stub, at, [110.0, 120.0])] == [(3.0, 0.0, 0.0, 0.0)] * 3
    inside = _barrier("double_barrier", knock_type=c.KNOCK_TYPE_KNOCK_OUT, lower_barrier=80.0, upper_barrier=120.0)
    for result, spot in zip(_walk(stub, inside, [81.0, 119.0, 100.0])[1:], (81.0, 119.0, 100.0)):
        assert _numbers(result) == _numbers(price(_at(inside, spot))) and result.price > 0
    # a move that fails (a spot the model refuses) touches nothing: the trade stays as it was
    s = Stream(stub.PriceStream)
    out = _barrier("barrier", barrier_type=c.BARRIER_TYPE_DOWN_OUT, barrier=90.0, rebate=2.0)
    s.send(pb.PriceStreamRequest(correlation_id="hold", trade_id="T", price=out))
    s.send(pb.PriceStreamRequest(correlation_id="bad", market_update=pb.MarketUpdate(spot=-5.0)))
    s.send(pb.PriceStreamRequest(correlation_id="back", market_update=pb.MarketUpdate(spot=100.0)))
    held, bad, back = s.recv(3)
    assert bad.error.field == "market_update.spot"
    assert _numbers(back.result) == _numbers(held.result) == _numbers(price(out))
    assert s.close() == []


def test_a_monte_carlo_barrier_is_touched_by_a_move_as_the_analytic_one(stub):
    """The Monte Carlo engine reads the same touched state: a knock-out crossed by a move pays
    its rebate now (standard error 0), then and after; a knock-in is simulated as the
    European, as the same trade sent at its barrier."""
    price = lambda r: stub.Price(r, timeout=30)  # noqa: E731
    for barrier_type in (c.BARRIER_TYPE_DOWN_OUT, c.BARRIER_TYPE_DOWN_IN):
        mc = _barrier("barrier", barrier_type=barrier_type, barrier=90.0, rebate=2.0)
        mc.engine = c.ENGINE_MONTE_CARLO
        mc.settings.paths = 2000
        mc.settings.seed = 7
        held, crossed, back = _walk(stub, mc, [85.0, 100.0])
        assert held.price == price(mc).price and held.price != 2.0
        for result, spot in ((crossed, 85.0), (back, 100.0)):
            assert result.price == price(_at(mc, spot, barrier=spot)).price
            if barrier_type == c.BARRIER_TYPE_DOWN_OUT:
                assert result.price == 2.0 and result.details[0].standard_error == 0.0
            else:
                assert result.price != 2.0 and result.details[0].standard_error > 0.0
