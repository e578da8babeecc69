"""FakeChannel, the fake transport shipped for users' tests, driving the real clients."""

import threading

import grpc
import numpy as np
import pytest

from pricegrid.clients import (
    EuropeanOption,
    FrontOfficeClient,
    Market,
    PricingError,
    RiskClient,
)
from pricegrid.clients.testing import FakeChannel, FakeRpcError, bad_request, servicer_handlers
from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import pricing_pb2 as pb
from pricegrid.v1 import pricing_pb2_grpc as pb_grpc

OPTION = EuropeanOption(option_type="call", strike=100.0, expiry=0.5)
MARKET = Market(spot=100.0, rate=0.05, volatility=0.2)
REF = c.ModelRef(model="toy", engine="intrinsic", version="0")


def toy_price(request):
    """A stand-in model: intrinsic value of the spot (enough to see data flow through)."""
    s = request.market.spot if request.market.WhichOneof("underlying") == "spot" else request.market.forward
    k = request.european.strike
    sign = 1.0 if request.european.option_type == c.OPTION_TYPE_CALL else -1.0
    greeks = pb.Greeks(delta=sign) if c.MEASURE_DELTA in request.measures else None
    return pb.PriceResponse(price=max(sign * (s - k), 0.0), greeks=greeks, priced_by=REF)


def price_handler(request, context):
    if request.european.strike <= 0:
        context.abort_with_status(bad_request("european.strike: must be > 0", [("european.strike", "must be > 0")]))
    return toy_price(request)


def test_unary_price_through_the_fake():
    channel = FakeChannel(handlers={"Price": price_handler})
    client = FrontOfficeClient(channel=channel)
    r = client.price(EuropeanOption(option_type="call", strike=90.0, expiry=0.5), MARKET, measures=["delta"])
    assert r.price == 10.0 and r.greeks.delta == 1.0 and r.priced_by.model == "toy"
    (seen,) = channel.requests
    assert seen.method == "/pricegrid.v1.PricingService/Price"
    assert isinstance(seen.request, pb.PriceRequest) and seen.request.european.strike == 90.0
    assert seen.timeout == 1.0  # a deadline on every call by default
    client.price(OPTION, MARKET, timeout=None)
    assert channel.requests[-1].timeout is None
    client.close()
    assert not channel.closed  # the caller's channel stays the caller's


def test_rich_errors_surface_as_pricing_error_with_the_field():
    client = FrontOfficeClient(channel=FakeChannel(handlers={"/pricegrid.v1.PricingService/Price": price_handler}))
    with pytest.raises(PricingError) as info:
        client.price(EuropeanOption(option_type="call", strike=-1.0, expiry=0.5), MARKET)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and info.value.field == "european.strike"


def test_missing_handlers_and_failing_handlers():
    def broken(request, context):
        raise RuntimeError("boom")

    def coded(request, context):
        context.set_code(grpc.StatusCode.FAILED_PRECONDITION)
        context.set_details("not today")
        return pb.ImpliedVolatilityResponse()

    client = FrontOfficeClient(channel=FakeChannel(handlers={"Price": broken, "ImpliedVolatility": coded}))
    with pytest.raises(PricingError) as info:
        client.server_info()
    assert info.value.code == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(PricingError) as info:
        client.price(OPTION, MARKET)
    assert info.value.code == grpc.StatusCode.UNKNOWN and "boom" in info.value.message
    with pytest.raises(PricingError) as info:
        client.implied_vol(OPTION, MARKET, 5.0)
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION and info.value.message == "not today"


def test_raw_bytes_pass_untouched():
    channel = FakeChannel(handlers={"Echo": lambda request, context: request})
    echo = channel.unary_unary("/pricegrid.v1.EchoService/Echo", request_serializer=None, response_deserializer=None)
    payload = pb.PriceRequest(model=1).SerializeToString() + b"\x00\xff"
    assert echo(payload) == payload
    assert channel.requests[0].request == payload


def stream_handler(requests, context):
    """A toy PriceStream: answers each message, holds trades, re-prices on market updates."""
    held = {}
    for message in requests:
        cid = message.correlation_id
        if message.HasField("price"):
            if message.price.european.strike <= 0:
                yield pb.PriceStreamResponse(
                    correlation_id=cid,
                    trade_id=message.trade_id,
                    error=c.Error(code=3, field="price.european.strike", message="must be > 0"),
                )
                continue
            if message.trade_id:
                held[message.trade_id] = pb.PriceRequest()
                held[message.trade_id].CopyFrom(message.price)
            yield pb.PriceStreamResponse(correlation_id=cid, trade_id=message.trade_id, result=toy_price(message.price))
        else:
            update = message.market_update
            for trade_id in update.trade_ids or sorted(held):
                request = held[trade_id]
                if update.HasField("spot"):
                    request.market.spot = update.spot
                yield pb.PriceStreamResponse(correlation_id=cid, trade_id=trade_id, result=toy_price(request))


def test_use_stream_multiplexes_callers_over_one_stream():
    channel = FakeChannel(handlers={"PriceStream": stream_handler})
    with FrontOfficeClient(channel=channel, use_stream=True) as client:
        results = {}

        def worker(k):
            results[k] = client.price(EuropeanOption(option_type="call", strike=float(k), expiry=0.5), MARKET).price

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(80, 100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == {k: 100.0 - k for k in range(80, 100)}
        with pytest.raises(PricingError) as info:
            client.price(EuropeanOption(option_type="call", strike=-5.0, expiry=0.5), MARKET)
        assert info.value.field == "price.european.strike"
        assert client.price(OPTION, MARKET).price == 0.0  # the stream goes on
    assert channel.calls["/pricegrid.v1.PricingService/PriceStream"] == 1


def test_ticking_session_through_the_fake():
    client = FrontOfficeClient(channel=FakeChannel(handlers={"PriceStream": stream_handler}))
    with client.stream() as session:
        assert session.add("A", EuropeanOption(option_type="call", strike=90.0, expiry=0.5), MARKET) == "1"
        session.add("B", EuropeanOption(option_type="put", strike=110.0, expiry=0.5), MARKET)
        first = [session.receive(timeout=2.0) for _ in range(2)]
        assert [(r.trade_id, r.result.price) for r in first] == [("A", 10.0), ("B", 10.0)]
        cid = session.update_market(spot=105.0)
        moved = {r.trade_id: r for r in (session.receive(timeout=2.0), session.receive(timeout=2.0))}
        assert {r.correlation_id for r in moved.values()} == {cid}
        assert moved["A"].result.price == 15.0 and moved["B"].result.price == 5.0
        session.update_market(spot=100.0, trade_ids=["B"])
        assert session.receive(timeout=2.0).result.price == 10.0
        session.price(EuropeanOption(option_type="call", strike=-1.0, expiry=0.5), MARKET, correlation_id="bad")
        bad = session.receive(timeout=2.0)
        assert bad.correlation_id == "bad" and not bad.ok and bad.error.field == "price.european.strike"
        with pytest.raises(TimeoutError):
            session.receive(timeout=0.05)
        session.done_sending()
        assert list(session) == []
        assert session.receive() is None


def batch_handler(request, context):
    """A toy PriceBatch: measure j of a row is j * (spot - strike); strike <= 0 fails the row."""
    k = np.frombuffer(request.european.strike.raw, "<f8")
    s = np.frombuffer(request.market.spot.raw, "<f8")
    n = max(len(k), len(s))
    k, s = np.broadcast_to(k, n), np.broadcast_to(s, n)
    bad = k <= 0
    value = np.where(bad, np.nan, s - k)
    return pb.PriceBatchResponse(
        rows=n,
        columns=[pb.MeasureColumn(measure=m, values=c.DoubleColumn(raw=(value * m).tobytes())) for m in request.measures],
        status=c.Int32Column(raw=np.where(bad, 3, 0).astype("<i4").tobytes()),
        errors=[c.RowError(row=i, code=3, field="european.strike", message="must be > 0") for i in np.flatnonzero(bad)],
        error_count=int(bad.sum()),
        priced_by=REF,
    )


def test_risk_client_chunks_and_reassembles_through_the_fake():
    info = pb.ServerInfoResponse(limits=pb.Limits(max_rows=7, max_message_bytes=1 << 20))
    channel = FakeChannel(handlers={"PriceBatch": batch_handler, "ServerInfo": lambda r, ctx: info})
    strike = np.arange(30, dtype=float)
    strike[[0, 8, 29]] = -1.0
    with RiskClient(channel=channel) as risk:
        res = risk.price_batch(
            model="bsm", option_type="call", strike=strike, time_to_expiry=0.5, spot=100.0, volatility=0.2,
            measures=("price", "delta"),
        )
    assert channel.calls["/pricegrid.v1.PricingService/PriceBatch"] == 5  # max_rows 7: 7+7+7+7+2
    expected = np.where(strike <= 0, np.nan, 100.0 - strike)
    np.testing.assert_array_equal(res.columns["price"], expected)
    np.testing.assert_array_equal(res["delta"], 2 * expected)
    assert [e.row for e in res.errors] == [0, 8, 29] and res.error_count == 3
    assert res.ok.tolist() == (strike > 0).tolist()
    assert res.priced_by.model == "toy" and res.stats.chunks == 5 and res.stats.bytes_sent > 30 * 8


def test_servicer_handlers_from_a_servicer_class():
    class Servicer(pb_grpc.PricingServiceServicer):
        def Price(self, request, context):
            return toy_price(request)

    handlers = servicer_handlers(Servicer())
    assert set(handlers) >= {"Price", "PriceBatch", "PriceStream", "ServerInfo"}
    client = FrontOfficeClient(channel=FakeChannel(handlers=handlers))
    assert client.price(EuropeanOption(option_type="call", strike=95.0, expiry=0.5), MARKET).price == 5.0
    with pytest.raises(PricingError) as info:  # the base class's own answer
        client.server_info()
    assert info.value.code == grpc.StatusCode.UNIMPLEMENTED


def test_fake_rpc_error_is_a_grpc_call():
    e = FakeRpcError(grpc.StatusCode.INTERNAL, "x")
    assert isinstance(e, grpc.RpcError) and isinstance(e, grpc.Call)
    assert e.code() == grpc.StatusCode.INTERNAL and e.details() == "x" and e.trailing_metadata() == ()


def test_async_client_through_the_aio_fake():
    import asyncio

    from pricegrid.clients import AsyncFrontOfficeClient
    from pricegrid.clients.testing import FakeAioChannel

    async def main():
        channel = FakeAioChannel(handlers={"Price": price_handler, "PriceStream": stream_handler})
        async with AsyncFrontOfficeClient(channel=channel) as client:
            assert (await client.price(EuropeanOption(option_type="put", strike=120.0, expiry=0.5), MARKET)).price == 20.0
            with pytest.raises(PricingError) as info:
                await client.price(EuropeanOption(option_type="call", strike=-1.0, expiry=0.5), MARKET)
            assert info.value.field == "european.strike"
            async with client.stream() as s:
                await s.add("A", EuropeanOption(option_type="call", strike=90.0, expiry=0.5), MARKET)
                assert (await s.receive(timeout=2)).result.price == 10.0
                await s.update_market(spot=95.0)
                moved = await s.receive(timeout=2)
                assert (moved.trade_id, moved.result.price) == ("A", 5.0)
                await s.done_sending()
                assert [r async for r in s] == []
        async with AsyncFrontOfficeClient(channel=channel, use_stream=True) as client:
            prices = await asyncio.gather(
                *(client.price(EuropeanOption(option_type="call", strike=float(k), expiry=0.5), MARKET) for k in range(90, 100))
            )
            assert [p.price for p in prices] == [10.0 - i for i in range(10)]
        assert not channel.closed
        return channel.calls

    calls = asyncio.run(asyncio.wait_for(main(), 30))
    assert calls["/pricegrid.v1.PricingService/PriceStream"] == 2


def test_use_stream_reconnects_when_the_stream_ends():
    def one_reply_then_hang_up(requests, context):
        for message in requests:
            yield pb.PriceStreamResponse(correlation_id=message.correlation_id, result=toy_price(message.price))
            return

    channel = FakeChannel(handlers={"PriceStream": one_reply_then_hang_up})
    with FrontOfficeClient(channel=channel, use_stream=True, timeout=5.0) as client:
        prices = [client.price(EuropeanOption(option_type="call", strike=k, expiry=0.5), MARKET).price for k in (90.0, 80.0, 70.0)]
    assert prices == [10.0, 20.0, 30.0]
    assert channel.calls["/pricegrid.v1.PricingService/PriceStream"] >= 3


def test_use_stream_gives_up_on_a_stream_the_server_refuses():
    channel = FakeChannel(handlers={})
    with FrontOfficeClient(channel=channel, use_stream=True, timeout=5.0) as client:
        with pytest.raises(PricingError) as info:
            client.price(OPTION, MARKET)
    assert info.value.code == grpc.StatusCode.UNIMPLEMENTED
    assert channel.calls["/pricegrid.v1.PricingService/PriceStream"] == 1


def test_optional_dependencies_say_what_to_install(monkeypatch):
    import sys

    import pandas as pd

    info = pb.ServerInfoResponse(limits=pb.Limits(max_rows=5, max_message_bytes=1 << 20))
    risk = RiskClient(channel=FakeChannel(handlers={"PriceBatch": batch_handler, "ServerInfo": lambda r, ctx: info}), progress=True)
    frame = pd.DataFrame({"option_type": ["call"] * 3, "strike": [1.0, 2.0, 3.0], "time_to_expiry": 0.5, "spot": 10.0, "volatility": 0.2})
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with pytest.warns(UserWarning, match=r"pricegrid\[progress\]"):
        res = risk.price_batch(model="bsm", option_type=1, strike=np.arange(1.0, 13.0), time_to_expiry=0.5, spot=20.0, volatility=0.2)
    assert res["price"].tolist() == (20.0 - np.arange(1.0, 13.0)).tolist()
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"pricegrid\[pandas\]"):
        risk.price_frame(frame, model="bsm")


def test_fake_batch_and_scenario_servers():
    """batch_handler and scenario_handler: a user's numbers come back through the real
    clients, chunked batches placed in order, a NaN row failing, a scenario run's
    aggregates by the server's estimator."""
    import numpy as np

    from pricegrid.clients import RiskClient, Shift
    from pricegrid.clients.testing import FakeChannel, batch_handler, scenario_handler

    def compute(c):
        price = 0.1 * c["strike"] + c["spot"]
        price = np.where(c["strike"] > 500, np.nan, price)
        return {"price": price, "delta": np.where(c["option_type"] == 1, 0.5, -0.5)}

    channel = FakeChannel(handlers={"PriceBatch": batch_handler(compute)})
    strikes = np.arange(1.0, 1001.0)
    with RiskClient(channel=channel, chunk_rows=100) as risk:
        r = risk.price_batch(model="bsm", option_type=np.where(strikes % 2 == 0, "call", "put"), strike=strikes,
                             time_to_expiry=1.0, spot=100.0, volatility=0.2, measures=("price", "delta"))
    assert r.stats.chunks == 10 and sum(1 for q in channel.requests if q.method.endswith("PriceBatch")) == 10
    np.testing.assert_array_equal(r["price"][:500], 0.1 * strikes[:500] + 100.0)
    assert np.isnan(r["price"][500:]).all() and r.error_count == 500 and (r.status[500:] == 11).all()
    np.testing.assert_array_equal(r["delta"], np.where(strikes % 2 == 0, 0.5, -0.5))

    cube = np.arange(12.0).reshape(3, 4) - 6.0
    seen = []

    def pnl(ids, labels):
        seen.append((ids, labels))
        return cube

    channel = FakeChannel(handlers={"RunScenarioRisk": scenario_handler(pnl)})
    with RiskClient(channel=channel) as risk:
        res = risk.scenario_risk(snapshot_id="s", underlying_id="SPX", model="bsm", option_type="call",
                                 strike=[1.0, 2.0, 3.0], time_to_expiry=1.0, shifts=[Shift("s", "spot", "relative",
                                                                                          ["SPX"])],
                                 sizes=[[0.1, 0.2, 0.3, 0.4]], labels=list("abcd"), output="both",
                                 var_levels=(0.5,), es_levels=(0.5,))
    assert seen == [(["0", "1", "2"], ["a", "b", "c", "d"])]
    np.testing.assert_array_equal(res.cube, cube)
    np.testing.assert_array_equal(res.portfolio_pnl, cube.sum(axis=0))  # [-6, -3, 0, 3]
    # losses -3, 0, 3, 6: VaR the ceil(4 x 0.5) = 2nd smallest, ES the mean of the two beyond it
    assert res.var[0.5] == 0.0 and res.expected_shortfall[0.5] == 4.5
