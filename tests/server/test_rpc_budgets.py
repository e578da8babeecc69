"""Compute budgets over RPC: a request's cost is estimated before it runs and refused over the
cap of its call class (RESOURCE_EXHAUSTED naming the setting and the cap), and long kernels
stop within milliseconds once the caller's deadline has passed or the caller has gone.

CPU is measured as this process's CPU time (the server runs in it) over a window after the
call ended: a kernel still running would spend the whole window on a core. The bounds are
generous (a shared 2-core VM); bench/test_bench_budgets.py has the tight figures.
"""

import re
import threading
import time

import grpc
import numpy as np
import pytest

from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import pricing_pb2 as pb
from pricegrid.v1 import pricing_pb2_grpc

from tests.conftest import start_server
from tests.server.richerr import violations


def _heston_mc(paths: int) -> pb.PriceRequest:
    """A one-year Heston European by Monte Carlo (52 steps a path): about 100 bytes of request."""
    return pb.PriceRequest(
        model=c.MODEL_HESTON, engine=c.ENGINE_MONTE_CARLO,
        european=pb.EuropeanOption(option_type=c.OPTION_TYPE_CALL, strike=100.0,
                                   expiry=pb.Expiry(year_fraction=1.0)),
        market=pb.Market(spot=100.0, rate=0.03, heston=pb.HestonParameters(v0=0.04, kappa=1.5, theta=0.04, sigma=0.5,
                                                                             rho=-0.7)),
        settings=pb.EngineSettings(paths=paths),
    )


def _tree_batch(rows: int, steps: int) -> pb.PriceBatchRequest:
    rng = np.random.default_rng(0)
    return pb.PriceBatchRequest(
        model=c.MODEL_BLACK_SCHOLES_MERTON, engine=c.ENGINE_BINOMIAL_TREE,
        american=pb.AmericanOptionColumns(option_type=c.Int32Column(values=[c.OPTION_TYPE_PUT]),
                                          strike=c.DoubleColumn(raw=rng.uniform(80, 120, rows).tobytes()),
                                          time_to_expiry=c.DoubleColumn(values=[1.0])),
        market=pb.MarketColumns(spot=c.DoubleColumn(values=[100.0]), rate=c.DoubleColumn(values=[0.03]),
                                volatility=c.DoubleColumn(values=[0.2])),
        settings=pb.EngineSettings(tree_steps=steps),
        output_encoding=c.ENCODING_RAW,
    )


def _iv_batch(rows: int) -> pb.ImpliedVolatilityBatchRequest:
    """Implied vols of ``rows`` BSM calls from their premiums: the premiums a raw column (8 bytes
    a row, so the request decodes in milliseconds), every other column broadcast."""
    price = np.random.default_rng(1).uniform(3.0, 12.0, rows)
    return pb.ImpliedVolatilityBatchRequest(
        model=c.MODEL_BLACK_SCHOLES_MERTON,
        european=pb.EuropeanOptionColumns(option_type=c.Int32Column(values=[c.OPTION_TYPE_CALL]),
                                          strike=c.DoubleColumn(values=[100.0]),
                                          time_to_expiry=c.DoubleColumn(values=[0.5])),
        market=pb.MarketColumns(spot=c.DoubleColumn(values=[100.0]), rate=c.DoubleColumn(values=[0.03])),
        price=c.DoubleColumn(raw=price.tobytes()), output_encoding=c.ENCODING_RAW,
    )


def _fast_price() -> pb.PriceRequest:
    return pb.PriceRequest(
        model=c.MODEL_BLACK_SCHOLES_MERTON,
        european=pb.EuropeanOption(option_type=c.OPTION_TYPE_CALL, strike=100.0, expiry=pb.Expiry(year_fraction=1.0)),
        market=pb.Market(spot=100.0, rate=0.03, volatility=0.2),
    )


def _cpu_over(window: float) -> float:
    t0 = time.process_time()
    time.sleep(window)
    return time.process_time() - t0


# ------------------------------------------------------------------ cost caps (default server)
def test_a_single_trade_over_the_unary_cap_is_refused_naming_paths(stub):
    with pytest.raises(grpc.RpcError) as err:
        stub.Price(_heston_mc(10_000_000), timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "settings.paths" in err.value.details() and "core-seconds" in err.value.details()
    assert "cap of 2 core-seconds" in err.value.details()
    assert [f for f, _ in violations(err.value)] == ["settings.paths"]


def test_the_same_trade_within_the_cap_prices(stub):
    response = stub.Price(_heston_mc(20_000), timeout=30)
    assert 5 < response.price < 15


def test_a_batch_over_the_batch_cap_is_refused_naming_tree_steps(stub):
    started = time.perf_counter()
    with pytest.raises(grpc.RpcError) as err:
        stub.PriceBatch(_tree_batch(2000, 50_001), timeout=10)
    assert time.perf_counter() - started < 2.0  # refused before any work
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "settings.tree_steps" in err.value.details() and "cap of 300 core-seconds" in err.value.details()
    assert [f for f, _ in violations(err.value)] == ["settings.tree_steps"]


def test_a_batch_of_the_same_trades_within_the_cap_prices(stub):
    response = stub.PriceBatch(_tree_batch(4, 801), timeout=30)
    assert response.rows == 4 and response.error_count == 0


# ------------------------------------------------------------------ stopping inside kernels
@pytest.fixture(scope="module")
def roomy():
    """A server whose caps let a call run for minutes: what is left is the deadline."""
    running = start_server(kernel_threads=1, max_cost_unary_s=1e6, max_cost_batch_s=1e6)
    channel = grpc.insecure_channel(running.address)
    yield pricing_pb2_grpc.PricingServiceStub(channel)
    channel.close()
    running.stop(0.5)


def test_a_unary_monte_carlo_call_stops_at_its_deadline(roomy):
    """10M Heston paths x 52 steps: about ten seconds of one core, asked with 0.3 s."""
    roomy.Price(_fast_price(), timeout=10)  # warm
    started = time.perf_counter()
    with pytest.raises(grpc.RpcError) as err:
        roomy.Price(_heston_mc(10_000_000), timeout=0.3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.perf_counter() - started < 2.0
    time.sleep(0.1)
    assert _cpu_over(0.3) < 0.15  # the kernel stopped (it would spend ~0.3 s of the window)
    t = time.perf_counter()
    assert roomy.Price(_fast_price(), timeout=5).price > 0
    assert time.perf_counter() - t < 0.5


def test_a_cancelled_american_tree_batch_stops(roomy):
    """200 trees of 20,001 steps (about 10 s of one core), cancelled after 0.3 s."""
    future = roomy.PriceBatch.future(_tree_batch(200, 20_001), timeout=60)
    time.sleep(0.3)
    assert future.cancel()
    with pytest.raises(grpc.FutureCancelledError):
        future.result()
    time.sleep(0.1)
    assert _cpu_over(0.3) < 0.15
    assert roomy.Price(_fast_price(), timeout=5).price > 0


def test_a_monte_carlo_batch_stops_at_its_deadline_and_says_so(roomy):
    """The server's own answer (the client waits longer than the deadline the server applies:
    the default deadline of the call class when the caller sets none)."""
    running = start_server(kernel_threads=1, max_cost_batch_s=1e6, default_deadline_s=0.3)
    try:
        channel = grpc.insecure_channel(running.address)
        stub = pricing_pb2_grpc.PricingServiceStub(channel)
        request = pb.PriceBatchRequest(
            model=c.MODEL_HESTON, engine=c.ENGINE_MONTE_CARLO,
            european=pb.EuropeanOptionColumns(option_type=c.Int32Column(values=[1]),
                                              strike=c.DoubleColumn(values=[90.0, 100.0, 110.0]),
                                              time_to_expiry=c.DoubleColumn(values=[1.0])),
            market=pb.MarketColumns(spot=c.DoubleColumn(values=[100.0]), rate=c.DoubleColumn(values=[0.03]),
                                    heston=pb.HestonColumns(v0=c.DoubleColumn(values=[0.04]),
                                                            kappa=c.DoubleColumn(values=[1.5]),
                                                            theta=c.DoubleColumn(values=[0.04]),
                                                            sigma=c.DoubleColumn(values=[0.5]),
                                                            rho=c.DoubleColumn(values=[-0.7]))),
            settings=pb.EngineSettings(paths=10_000_000),
        )
        started = time.perf_counter()
        with pytest.raises(grpc.RpcError) as err:
            stub.PriceBatch(request)  # no deadline of its own
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "stopped in the kernel after 0 of 3 row(s)" in err.value.details()
        assert time.perf_counter() - started < 2.0
        channel.close()
    finally:
        running.stop(0.5)


def test_other_calls_go_on_while_a_kernel_is_stopped(roomy):
    """Cancellation from another thread while front-office calls keep flowing."""
    errors = []

    def long_call():
        try:
            roomy.Price(_heston_mc(10_000_000), timeout=0.5)
        except grpc.RpcError as exc:
            errors.append(exc.code())

    thread = threading.Thread(target=long_call)
    thread.start()
    for _ in range(20):
        assert roomy.Price(_fast_price(), timeout=5).price > 0
        time.sleep(0.01)
    thread.join(10)
    assert errors == [grpc.StatusCode.DEADLINE_EXCEEDED]


def test_an_implied_vol_batch_stops_inside_the_kernel_at_the_server_deadline():
    """4M rows in one chunk on one kernel thread (about 0.6 s of work here), the server's
    default deadline 0.25 s and none from the caller: the kernel polls the call's stop block,
    so the server itself answers DEADLINE_EXCEEDED, naming how far the kernel got, well
    before the work would have ended (it would answer OK after it, nothing checking the
    deadline inside one chunk). Then the same server answers the next calls."""
    running = start_server(kernel_threads=1, max_rows=4_000_000, chunk_rows=4_000_000, default_deadline_s=0.25)
    try:
        options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
        with grpc.insecure_channel(running.address, options=options) as channel:
            stub = pricing_pb2_grpc.PricingServiceStub(channel)
            request = _iv_batch(4_000_000)
            started = time.perf_counter()
            with pytest.raises(grpc.RpcError) as err:
                stub.ImpliedVolatilityBatch(request)  # no deadline of its own
            took = time.perf_counter() - started
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            found = re.search(r"stopped in the kernel after (\d+) of 4000000 row\(s\): deadline exceeded",
                              err.value.details())
            assert found, err.value.details()
            assert 0 < int(found.group(1)) < 4_000_000
            assert took < 2.0
            small = stub.ImpliedVolatilityBatch(_iv_batch(1000), timeout=10)
            assert small.rows == 1000 and small.error_count == 0
            assert stub.Price(_fast_price(), timeout=5).price > 0
    finally:
        running.stop(0.5)


def test_an_implied_vol_batch_past_the_caller_deadline_ends_promptly_and_the_server_goes_on(roomy):
    """1M rows (about 0.15 s of one core) asked with 30 ms: DEADLINE_EXCEEDED within the
    generous bound, no work left running on the server afterwards, and the next calls are
    answered at once."""
    request = _iv_batch(1_000_000)
    started = time.perf_counter()
    with pytest.raises(grpc.RpcError) as err:
        roomy.ImpliedVolatilityBatch(request, timeout=0.03)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.perf_counter() - started < 1.0
    time.sleep(0.1)
    assert _cpu_over(0.3) < 0.15
    t = time.perf_counter()
    small = roomy.ImpliedVolatilityBatch(_iv_batch(1000), timeout=5)
    assert small.rows == 1000 and small.error_count == 0
    assert roomy.Price(_fast_price(), timeout=5).price > 0
    assert time.perf_counter() - t < 0.5
