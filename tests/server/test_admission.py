"""Admission control and limits: gates shed with RESOURCE_EXHAUSTED and a retry pushback,
the lean path and health answer while the front office is full, per-method request sizes
(also compressed), the default deadline of unary calls, Echo off by default and metered."""

import asyncio
import concurrent.futures
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pricegrid.server.rpc.admission import PUSHBACK, Gate, Refused
from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import pricing_pb2 as pb
from pricegrid.v1 import pricing_pb2_grpc
from tests.conftest import start_server

PRICE = "/pricegrid.v1.PricingService/Price"


# ------------------------------------------------------------------ the gate alone
def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_gate_admits_up_to_its_limit_then_refuses_at_once():
    async def main():
        gate = Gate("front-office", 2)
        await gate.enter()
        await gate.enter()
        t0 = time.perf_counter()
        with pytest.raises(Refused) as info:
            await gate.enter()
        assert time.perf_counter() - t0 < 0.01
        assert info.value.code.name == "RESOURCE_EXHAUSTED" and info.value.pushback_ms >= 1
        assert info.value.trailer == (PUSHBACK, str(info.value.pushback_ms))
        assert (gate.active, gate.refused) == (2, 1)
        gate.leave(0.002)
        await gate.enter()
        assert gate.admitted == 3

    run(main())


def test_pushback_starts_from_the_first_hold_not_from_the_floor():
    """A fresh gate has measured no hold: a refusal then says how long the first admitted
    call has held its slot so far; the first hold that ends is taken as it is, later ones
    averaged with weight HOLD_WEIGHT (it used to start at min_pushback_ms, 1 ms, and take
    about ten calls to approach the hold time)."""
    from pricegrid.server.rpc.admission import HOLD_WEIGHT

    async def main():
        gate = Gate("batch", 1, min_pushback_ms=1)
        await gate.enter()
        await asyncio.sleep(0.15)
        with pytest.raises(Refused) as info:
            await gate.enter()
        assert 150 <= info.value.pushback_ms < 1000
        gate.leave(0.2)
        await gate.enter()
        assert gate.pushback_ms() == 200
        gate.leave(0.1)
        assert gate.pushback_ms() == round(200 + HOLD_WEIGHT * (100 - 200))
        assert Gate("idle", 1, min_pushback_ms=7).pushback_ms() == 7  # nothing admitted yet: the floor

    run(main())


def test_gate_queue_waits_a_bounded_time_and_hands_slots_over_in_order():
    async def main():
        gate = Gate("front-office", 1, queue=2, max_wait_s=0.05)
        await gate.enter()
        first = asyncio.ensure_future(gate.enter())
        second = asyncio.ensure_future(gate.enter())
        await asyncio.sleep(0)
        assert gate.waiting == 2
        with pytest.raises(Refused):  # the queue is full: no wait at all
            await gate.enter()
        gate.leave(0.001)  # the slot goes to the first waiter
        await first
        assert gate.active == 1 and not second.done()
        t0 = time.perf_counter()
        with pytest.raises(Refused):  # nobody leaves: the second gives up after max_wait_s
            await second
        assert 0.02 < time.perf_counter() - t0 < 0.5
        assert gate.waiting == 0 and gate.active == 1

    run(main())


def test_a_cancelled_waiter_gives_its_place_to_the_next():
    async def main():
        gate = Gate("batch", 1, queue=4, max_wait_s=None)
        await gate.enter()
        gone = asyncio.ensure_future(gate.enter())
        stays = asyncio.ensure_future(gate.enter())
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.sleep(0)
        gate.leave(0.001)
        await stays
        assert gate.active == 1 and gate.waiting == 0
        gate.leave(0.001)
        assert gate.active == 0

    run(main())


# ------------------------------------------------------------------ through the server
def slow_price(steps=50_000):
    """An American put on a binomial tree of ``steps`` steps (50,000: about 0.3 s of a core here)."""
    return pb.PriceRequest(
        model=c.MODEL_BLACK_SCHOLES_MERTON,
        american=pb.AmericanOption(option_type=c.OPTION_TYPE_PUT, strike=100, expiry=pb.Expiry(year_fraction=1)),
        market=pb.Market(spot=100, rate=0.05, volatility=0.2),
        engine=c.ENGINE_BINOMIAL_TREE, settings=pb.EngineSettings(tree_steps=steps),
    )


def lean_price():
    return pb.PriceRequest(
        model=c.MODEL_BLACK_SCHOLES_MERTON,
        european=pb.EuropeanOption(option_type=c.OPTION_TYPE_CALL, strike=100, expiry=pb.Expiry(year_fraction=0.5)),
        market=pb.Market(spot=100, rate=0.05, volatility=0.2),
        measures=[c.MEASURE_DELTA],
    )


def wait_until(predicate, timeout=10.0):
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.002)


def pushback(error: grpc.RpcError) -> int:
    return int(dict(error.trailing_metadata())[PUSHBACK])


def test_a_full_front_office_sheds_with_pushback_while_lean_price_and_health_answer():
    running = start_server(front_workers=1, queue=0, metrics_port=-1)
    gate = running.lanes.front.gate
    try:
        with grpc.insecure_channel(running.address) as ch:
            stub = pricing_pb2_grpc.PricingServiceStub(ch)
            busy = stub.Price.future(slow_price(), timeout=30)
            wait_until(lambda: gate.active == 1)
            t0 = time.perf_counter()
            with pytest.raises(grpc.RpcError) as info:
                stub.Price(slow_price(2_000), timeout=5)
            refused_in = time.perf_counter() - t0
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "front-office" in info.value.details() and pushback(info.value) >= 1
            assert refused_in < 0.5  # decided at once (a loaded CI machine: generous)
            # the lean path runs on the loop, health never waits behind the pools
            assert stub.Price(lean_price(), timeout=5).greeks.delta > 0
            health = health_pb2_grpc.HealthStub(ch)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
            assert busy.result(timeout=30).price > 0
            wait_until(lambda: gate.active == 0)
            assert stub.Price(slow_price(2_000), timeout=5).price > 0  # a slot again
            assert gate.refused == 1
    finally:
        running.stop(0)


def test_a_full_batch_class_sheds_beyond_its_queue():
    running = start_server(batch_workers=1, queue=1, metrics_port=-1)
    gate = running.lanes.batch.gate
    try:
        with grpc.insecure_channel(running.address) as ch:
            stub = pricing_pb2_grpc.PricingServiceStub(ch)
            batch = pb.PriceBatchRequest(
                model=c.MODEL_BLACK_SCHOLES_MERTON,
                american=pb.AmericanOptionColumns(
                    option_type=c.Int32Column(values=[c.OPTION_TYPE_PUT]),
                    strike=c.DoubleColumn(values=[100.0]), time_to_expiry=c.DoubleColumn(values=[1.0])),
                market=pb.MarketColumns(spot=c.DoubleColumn(values=[100.0]), rate=c.DoubleColumn(values=[0.05]),
                                        volatility=c.DoubleColumn(values=[0.2])),
                engine=c.ENGINE_BINOMIAL_TREE, settings=pb.EngineSettings(tree_steps=50_000),
            )
            running_call = stub.PriceBatch.future(batch, timeout=30)
            wait_until(lambda: gate.active == 1)
            queued = stub.PriceBatch.future(batch, timeout=30)
            wait_until(lambda: gate.waiting == 1)
            with pytest.raises(grpc.RpcError) as info:
                stub.PriceBatch(batch, timeout=5)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and pushback(info.value) >= 100
            assert running_call.result(30).rows == 1 and queued.result(30).rows == 1
    finally:
        running.stop(0)


def test_the_default_deadline_ends_a_unary_call_whose_caller_set_none():
    running = start_server(default_deadline_s=0.2, front_workers=2, metrics_port=-1)
    try:
        with grpc.insecure_channel(running.address) as ch:
            stub = pricing_pb2_grpc.PricingServiceStub(ch)
            t0 = time.perf_counter()
            with pytest.raises(grpc.RpcError) as info:
                stub.Price(slow_price(100_000))  # ~1 s, no deadline of its own
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert 0.15 < time.perf_counter() - t0 < 0.9
            assert stub.Price(lean_price(), timeout=5).price > 0
            # a caller's own deadline is the caller's (the overrun call above still holds a slot)
            assert stub.Price(slow_price(2_000), timeout=10).price > 0
    finally:
        running.stop(0)


def test_per_trade_calls_take_small_messages_and_batches_large_ones():
    running = start_server(max_trade_message_bytes=4096, max_stream_message_bytes=8192, max_message_bytes=1 << 20,
                           metrics_port=-1)
    try:
        with grpc.insecure_channel(running.address, options=[("grpc.max_send_message_length", -1)]) as ch:
            stub = pricing_pb2_grpc.PricingServiceStub(ch)
            with pytest.raises(grpc.RpcError) as info:  # refused for its size, before it is parsed
                ch.unary_unary(PRICE)(b"\x00" * 5000, timeout=5)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "takes at most 4096 bytes" in info.value.details()
            assert pushback(info.value) < 0  # the same request is refused again: do not retry
            # the same bytes are fine for a batch method (its own, larger limit): the batch
            # reader sees them and answers for what they are
            with pytest.raises(grpc.RpcError) as info:
                ch.unary_unary("/pricegrid.v1.PricingService/PriceBatch")(b"\x00" * 5000, timeout=5)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            # a stream message over its size gets its own error reply (with its correlation id,
            # read without parsing the rest); the stream goes on
            call = ch.stream_stream("/pricegrid.v1.PricingService/PriceStream")
            good = pb.PriceStreamRequest(correlation_id="ok", price=lean_price()).SerializeToString()
            fits = pb.PriceStreamRequest(correlation_id="fits", market_update=pb.MarketUpdate(
                spot=101.0, trade_ids=[f"T{i:05d}" for i in range(700)])).SerializeToString()  # ~5.6 KB
            big = pb.PriceStreamRequest(correlation_id="big", market_update=pb.MarketUpdate(
                spot=101.0, trade_ids=[f"T{i:05d}" for i in range(1500)])).SerializeToString()  # ~12 KB
            replies = [pb.PriceStreamResponse.FromString(b) for b in call(iter([fits, big, good]), timeout=10)]
            by_cid = {r.correlation_id: r for r in replies}
            assert by_cid["big"].error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
            assert "takes at most 8192 bytes" in by_cid["big"].error.message
            # (read and answered: none of those trades is held on this stream)
            assert by_cid["fits"].error.field == "market_update.trade_ids"
            assert by_cid["ok"].result.price > 0
    finally:
        running.stop(0)


def test_a_batch_over_its_size_is_refused_by_the_servers_own_check_logged_and_counted():
    """A PriceBatch or market-data request a little over --max-message-bytes meets the
    handler's check (its message, a negative pushback, the errors metric), not gRPC core's
    (which answered first, unlogged, when its receive limit was the same number); beyond the
    margin (an eighth, at least 1 MiB) gRPC core still refuses it unread."""
    from pricegrid.server.app.server import receive_limit

    running = start_server(max_message_bytes=1 << 20, metrics_port=-1)
    limit = receive_limit(running.settings)
    assert limit == (1 << 20) + (1 << 20)
    registry = running.observer.metrics.registry
    try:
        with grpc.insecure_channel(running.address, options=[("grpc.max_send_message_length", -1)]) as ch:
            for method in ("/pricegrid.v1.PricingService/PriceBatch", "/pricegrid.v1.MarketDataService/PutSnapshot"):
                with pytest.raises(grpc.RpcError) as info:
                    ch.unary_unary(method)(b"\x00" * ((1 << 20) + 100_000), timeout=10)
                assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert info.value.details() == f"request is {(1 << 20) + 100_000} bytes; {method} takes at most " \
                                               f"{1 << 20} bytes"
                assert pushback(info.value) < 0
                deadline = time.monotonic() + 5
                while not registry.get_sample_value("pricegrid_rpc_errors_total",
                                                    {"method": method, "code": "RESOURCE_EXHAUSTED"}):
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
            with pytest.raises(grpc.RpcError) as info:
                ch.unary_unary("/pricegrid.v1.PricingService/PriceBatch")(b"\x00" * (limit + 1), timeout=10)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "takes at most" not in info.value.details()  # gRPC core's refusal
    finally:
        running.stop(0)


def test_echo_is_off_by_default_and_metered_when_on(server):
    running = start_server(metrics_port=-1)
    try:
        with grpc.insecure_channel(running.address) as ch:
            with pytest.raises(grpc.RpcError) as info:
                ch.unary_unary("/pricegrid.v1.EchoService/Echo")(b"hello", timeout=5)
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        running.stop(0)
    # the session server runs with echo on (the bench tests use it): a call is counted
    registry = server.observer.metrics.registry
    labels = dict(method="/pricegrid.v1.EchoService/Echo", code="OK")
    before = registry.get_sample_value("pricegrid_rpc_duration_seconds_count", labels) or 0
    with grpc.insecure_channel(server.address) as ch:
        assert ch.unary_unary("/pricegrid.v1.EchoService/Echo")(b"hello", timeout=5) == b"hello"
    # recorded on the server's loop just after the reply went out: within moments, once
    deadline = time.monotonic() + 5
    while registry.get_sample_value("pricegrid_rpc_duration_seconds_count", labels) == before \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert registry.get_sample_value("pricegrid_rpc_duration_seconds_count", labels) == before + 1


def test_capacity_metrics_are_exported(server, stub):
    stub.Price(lean_price(), timeout=5)
    registry = server.observer.metrics.registry
    assert registry.get_sample_value("pricegrid_admission_limit", {"class": "front-office"}) >= 1
    assert registry.get_sample_value("pricegrid_admission_refused_total", {"class": "batch"}) is not None
    assert registry.get_sample_value("pricegrid_streams_open") is not None


def test_after_a_refusal_a_gate_fails_fast_instead_of_queueing():
    async def main():
        gate = Gate("front-office", 1, queue=4, max_wait_s=0.05, overload_s=0.2)
        await gate.enter()
        burst = asyncio.ensure_future(gate.enter())  # a burst: waits for the slot
        await asyncio.sleep(0)
        assert gate.waiting == 1
        with pytest.raises(Refused):
            await burst  # nobody left within max_wait_s
        t0 = time.perf_counter()
        with pytest.raises(Refused):  # sustained overload now: refused at once, no wait
            await gate.enter()
        assert time.perf_counter() - t0 < 0.01 and gate.waiting == 0
        await asyncio.sleep(0.25)  # quiet again: bursts wait for a slot
        later = asyncio.ensure_future(gate.enter())
        await asyncio.sleep(0)
        assert gate.waiting == 1
        gate.leave(0.001)
        await later

    run(main())
