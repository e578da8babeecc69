"""Streams and connections: hundreds of idle PriceStreams hold no thread (Price and health
answer meanwhile), the server's cap on open streams, keepalive that agrees with our clients
(an idle stream survives a client pinging faster than gRPC's default server policy allows),
and GOAWAY on connection age without failing calls."""

import asyncio
import concurrent.futures
import time

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pricegrid.clients import EuropeanOption, FrontOfficeClient, Market, PricingError, RetryConfig
from pricegrid.server.rpc.admission import PUSHBACK
from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import pricing_pb2 as pb
from pricegrid.v1 import pricing_pb2_grpc
from tests.conftest import start_server

CALL = EuropeanOption(option_type="call", strike=100.0, expiry=0.5)
MARKET = Market(spot=100.0, rate=0.05, volatility=0.2)


def lean(cid: str) -> pb.PriceStreamRequest:
    return pb.PriceStreamRequest(correlation_id=cid, price=pb.PriceRequest(
        model=c.MODEL_BLACK_SCHOLES_MERTON,
        european=pb.EuropeanOption(option_type=c.OPTION_TYPE_CALL, strike=100, expiry=pb.Expiry(year_fraction=0.5)),
        market=pb.Market(spot=100, rate=0.05, volatility=0.2)))


def held(cid: str) -> pb.PriceStreamRequest:
    """A message off the lean path (a held trade): priced in the front-office pool."""
    message = lean(cid)
    message.trade_id = f"T-{cid}"
    return message


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_hundreds_of_idle_streams_while_price_and_health_answer():
    n = 250
    running = start_server(front_workers=2, metrics_port=-1)
    try:
        async def main():
            async with grpc.aio.insecure_channel(running.address) as ch:
                stub = pricing_pb2_grpc.PricingServiceStub(ch)
                streams = [stub.PriceStream(timeout=60) for _ in range(n)]
                for i, s in enumerate(streams):  # each stream open on the server: one answer back
                    await s.write(lean(str(i)))
                assert all([(await s.read()).result.price > 0 for s in streams])
                assert running.streams.open == n  # more streams than the server has threads
                # now idle; unary calls and health answer promptly, and a stream still works
                t0 = time.perf_counter()
                for _ in range(20):
                    assert (await stub.Price(lean("u").price, timeout=5)).price > 0
                reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
                assert time.perf_counter() - t0 < 5
                await streams[7].write(held("h"))
                assert (await streams[7].read()).trade_id == "T-h"
                for s in streams:
                    await s.done_writing()
                for s in streams:
                    assert await s.read() is grpc.aio.EOF

        run(main())
        deadline = time.monotonic() + 10
        while running.streams.open and time.monotonic() < deadline:
            time.sleep(0.01)
        assert running.streams.open == 0
    finally:
        running.stop(0)


def test_streams_beyond_the_server_cap_are_refused_with_pushback():
    running = start_server(max_streams=3, metrics_port=-1)
    try:
        async def main():
            async with grpc.aio.insecure_channel(running.address) as ch:
                stub = pricing_pb2_grpc.PricingServiceStub(ch)
                streams = [stub.PriceStream(timeout=30) for _ in range(3)]
                for s in streams:
                    await s.write(lean("x"))
                    await s.read()
                extra = stub.PriceStream(timeout=30)
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await extra.read()
                assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert int(dict(info.value.trailing_metadata())[PUSHBACK]) > 0
                await streams[0].done_writing()
                assert await streams[0].read() is grpc.aio.EOF
                again = stub.PriceStream(timeout=30)
                await again.write(lean("y"))
                assert (await again.read()).correlation_id == "y"
                for s in (*streams[1:], again):
                    await s.done_writing()
                    await s.read()

        run(main())
    finally:
        running.stop(0)


def idle_stream_survives(running, idle_s: float, ping_ms: int) -> bool:
    """A FrontOfficeClient stream session (our client's channel options, keepalive shortened
    to ``ping_ms``): one price, ``idle_s`` seconds of silence, one more price."""
    options = [("grpc.keepalive_time_ms", ping_ms), ("grpc.keepalive_timeout_ms", 5_000)]
    with FrontOfficeClient(target=running.address, options=options, retries=RetryConfig(max_attempts=1)) as client:
        with client.stream(timeout=60) as session:
            session.price(CALL, MARKET)
            assert session.receive(timeout=10).result.price > 0
            time.sleep(idle_s)
            try:
                try:
                    session.price(CALL, MARKET)
                except RuntimeError:  # the stream has ended: receive() says how
                    pass
                return session.receive(timeout=10).result.price > 0
            except PricingError as e:
                assert e.code == grpc.StatusCode.UNAVAILABLE and "too many pings" in e.message.lower(), e
                return False


def test_an_idle_stream_survives_keepalive_pings_the_server_allows():
    # our clients ping every 30 s and the server allows one every 10 s. Shortened: the client
    # pings every 300 ms and the server allows one every 100 ms; 7 s idle. Beside it, the
    # same client against gRPC's default policy (a ping every 5 minutes at most) is sent away
    # with GOAWAY too_many_pings (after about 5 s here), so the first does not pass by
    # accident. Both at once: about 7 s.
    allows = start_server(keepalive_min_ping_s=0.1, metrics_port=-1)
    strict = start_server(keepalive_min_ping_s=300, metrics_port=-1)
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            survived = pool.submit(idle_stream_survives, allows, 7.0, 300)
            killed = pool.submit(idle_stream_survives, strict, 7.0, 300)
            assert survived.result(30) is True
            assert killed.result(30) is False
    finally:
        allows.stop(0)
        strict.stop(0)


def test_connection_age_rebalances_without_failing_calls():
    running = start_server(max_connection_age_s=0.5, max_connection_age_grace_s=1.0, metrics_port=-1)
    try:
        with FrontOfficeClient(target=running.address, timeout=5) as client:
            end = time.monotonic() + 2.0  # four connection ages: each GOAWAY'd, calls go on
            calls = 0
            while time.monotonic() < end:
                assert client.price(CALL, MARKET).price > 0
                calls += 1
                time.sleep(0.01)
        assert calls > 20
    finally:
        running.stop(0)


def test_a_connection_carries_at_most_its_share_of_streams():
    """--max-connection-streams 2: a third stream on the connection is refused at once
    (RESOURCE_EXHAUSTED with a pushback), while Price on the same connection is answered (it
    used to wait in the client for an HTTP/2 stream until its deadline) and another
    connection opens streams of its own."""
    running = start_server(max_connection_streams=2, metrics_port=-1)
    try:
        async def main():
            own = [("grpc.use_local_subchannel_pool", 1)]  # a connection of its own
            async with grpc.aio.insecure_channel(running.address, options=own) as ch, \
                    grpc.aio.insecure_channel(running.address, options=own) as other:
                stub = pricing_pb2_grpc.PricingServiceStub(ch)
                streams = [stub.PriceStream(timeout=30) for _ in range(2)]
                for s in streams:
                    await s.write(lean("x"))
                    await s.read()
                assert (await stub.Price(lean("u").price, timeout=5)).price > 0
                third = stub.PriceStream(timeout=5)  # refused before it reads a message
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await third.read()
                assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "this connection already has 2 streams open" in info.value.details()
                assert dict(info.value.trailing_metadata())[PUSHBACK] == "1000"
                assert running.streams.refused == 1
                theirs = pricing_pb2_grpc.PricingServiceStub(other).PriceStream(timeout=5)
                await theirs.write(lean("v"))
                assert (await theirs.read()).correlation_id == "v"
                await theirs.done_writing()
                await streams[0].done_writing()
                assert await streams[0].read() is grpc.aio.EOF
                again = stub.PriceStream(timeout=5)  # a stream closed: room for one more
                await again.write(lean("w"))
                assert (await again.read()).correlation_id == "w"
                await again.done_writing()
                await streams[1].done_writing()
                await streams[1].read()
                assert running.streams.open <= 1

        run(main())
    finally:
        running.stop(0)
