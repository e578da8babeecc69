"""Compute budgets, measured: how fast a crafted batch is read, how long it stalls a concurrent
Price, and how soon a kernel stops after its deadline or its caller's cancellation.

Cases:

* ``parse``   the crafted 1.3 MiB PriceBatch shapes of issue 9 read by the compiled reader
              (``read_view``, the server's) and by the pure-Python ``wire.parse`` (the
              baseline, the server's reader before): seconds per read
* ``stall``   a front-office client loops Price on a real server (127.0.0.1) while another
              sends a crafted batch every 20 ms (baselines in the same run: nothing else
              running; the server reading batches with wire.parse, as before): Price latency
              p50 / p99 / max in ``extra_info`` (client and server share this process, so the
              GIL too)
* ``stop``    kernels given a deadline 50 ms ahead on minutes of work (Monte Carlo, American
              tree, Heston): how late after the deadline they return; and a unary Monte Carlo
              Price with a 0.3 s deadline: how late after the caller's DEADLINE_EXCEEDED the
              server's handler ends (its in-flight gauge back to 0)

    .venv/bin/python -m pytest bench/test_bench_budgets.py --benchmark-json=/tmp/bench_budgets.json -s

About a minute. Figures of one run on the 2-core development VM (load ~1) are in the issue note.
"""

from __future__ import annotations

import statistics
import threading
import time

import grpc
import numpy as np
import pytest

from pricegrid.ext import american, heston, montecarlo
from pricegrid.ext import status as st
from pricegrid.server.app.server import start
from pricegrid.server.app.settings import Settings
from pricegrid.server.rpc import _codec
from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import pricing_pb2 as pb
from pricegrid.v1 import pricing_pb2_grpc
from pricegrid.v1 import wire

MiB = 1 << 20


def _lenfield(number, payload):
    return wire.tag(number, 2) + wire.varint(len(payload)) + payload


def crafted() -> dict:
    size = int(1.3 * MiB)
    one = _lenfield(4, _lenfield(3, wire.tag(1, 1) + b"\0" * 8))
    return {
        "repeated_singular_message": one * (size // len(one)),
        "unpacked_doubles": _lenfield(3, _lenfield(6, (wire.tag(1, 1) + b"\0" * 8) * (size // 9))),
        "packed_int32_column": _lenfield(3, _lenfield(1, _lenfield(1, b"\x01" * size))),
        "unknown_fields": (wire.tag(99, 0) + b"\0") * (size // 3),
    }


CRAFTED = crafted()


def _read(impl, data):
    try:
        if impl == "read_view":
            return _codec.read_view(pb.PriceBatchRequest, data)
        return wire.parse(pb.PriceBatchRequest, data)
    except wire.DecodeError:
        return None


@pytest.mark.parametrize("impl", ["read_view", "wire_parse"])
@pytest.mark.parametrize("case", list(CRAFTED))
def test_parse(benchmark, case, impl):
    """Seconds to read (or refuse) one crafted 1.3 MiB PriceBatch."""
    data = CRAFTED[case]
    benchmark.extra_info.update(bytes=len(data))
    rounds = 20 if impl == "read_view" else 1
    benchmark.pedantic(_read, args=(impl, data), rounds=rounds, iterations=1)


# ------------------------------------------------------------------ a running server
@pytest.fixture(scope="module")
def server():
    running = start(Settings(host="127.0.0.1", port=0, metrics_port=-1, store=":memory:", kernel_threads=1,
                             max_cost_unary_s=1e6, max_cost_batch_s=1e6))
    channel = grpc.insecure_channel(running.address)
    yield running, channel
    channel.close()
    running.stop(0.5)


def _price():
    return pb.PriceRequest(
        model=c.MODEL_BLACK_SCHOLES_MERTON,
        european=pb.EuropeanOption(option_type=c.OPTION_TYPE_CALL, strike=100.0, expiry=pb.Expiry(year_fraction=1.0)),
        market=pb.Market(spot=100.0, rate=0.03, volatility=0.2),
    )


def _latencies(channel, seconds, other=None) -> list:
    stub = pricing_pb2_grpc.PricingServiceStub(channel)
    request = _price()
    stop = threading.Event()
    thread = None
    if other is not None:
        thread = threading.Thread(target=other, args=(stop,))
        thread.start()
    out = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        stub.Price(request, timeout=10)
        out.append(time.perf_counter() - t)
        time.sleep(0.001)
    stop.set()
    if thread is not None:
        thread.join()
    return out


def _summary(lat) -> dict:
    lat = sorted(lat)
    return {"calls": len(lat), "p50_ms": statistics.median(lat) * 1e3, "p99_ms": lat[int(0.99 * (len(lat) - 1))] * 1e3,
            "max_ms": lat[-1] * 1e3}


@pytest.mark.parametrize("load", ["idle", "crafted_batches-read_view", "crafted_batches-wire_parse"])
def test_stall(benchmark, server, load, monkeypatch):
    """Price latency on a server while crafted batches arrive (baselines: idle; the Python
    reader the server had before)."""
    _, channel = server
    if load.endswith("wire_parse"):  # the deserializer looks the reader up on each call
        monkeypatch.setattr(_codec, "read_view", wire.parse)
    send = channel.unary_unary("/pricegrid.v1.PricingService/PriceBatch")

    def crafted_batches(stop):  # one crafted batch every 20 ms, each shape in turn
        while not stop.is_set():
            for data in CRAFTED.values():
                try:
                    send(data, timeout=10)
                except grpc.RpcError:
                    pass
                time.sleep(0.02)

    figures = {}

    def run():
        figures.update(_summary(_latencies(channel, 3.0, crafted_batches if load != "idle" else None)))

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
    print(load, {k: round(v, 3) for k, v in figures.items()})


# ------------------------------------------------------------------ stopping
one = lambda x: np.array([x], dtype=np.float64)  # noqa: E731
i1 = lambda x: np.array([x], dtype=np.int32)  # noqa: E731


def _mc(b):
    out, se, status = np.empty((1, 1)), np.empty((1, 1)), np.empty(1, np.int32)
    montecarlo.barrier_price_batch(i1(2), i1(1), one(100.0), one(1.0), one(70.0), one(0.0), one(0.0), one(100.0),
                                   one(0.03), one(0.0), 1, one(0.2), *(one(0.0),) * 5, i1(1), out, se, status, 1,
                                   10_000_000, 1 / 252, 1, True, True, False, False, stop=b)


def _tree(b):
    out, status = np.empty((1, 1)), np.empty(1, np.int32)
    american.price_batch(i1(2), one(100.0), one(1.0), one(100.0), one(0.03), one(0.01), one(0.2), i1(1), out, status,
                         1, american.METHOD_TREE, 2, 100_000, stop=b)


def _heston(b):
    n = 500_000
    out, status = np.empty((1, n)), np.empty(n, np.int32)
    heston.price_batch(i1(1), np.linspace(60, 140, n), one(1.0), one(100.0), one(0.03), one(0.0),
                       np.linspace(0.01, 0.09, n), one(1.5), one(0.04), one(0.5), one(-0.7), i1(1), out, status, 1,
                       stop=b)


@pytest.mark.parametrize("kernel", ["monte_carlo", "american_tree", "heston"])
def test_stop_in_kernel(benchmark, kernel):
    """How late after its deadline (50 ms ahead) a kernel on minutes of work returns."""
    fn = {"monte_carlo": _mc, "american_tree": _tree, "heston": _heston}[kernel]
    late = []

    def run():
        b = np.zeros(st.STOP_WORDS, dtype=np.int64)
        b[st.STOP_DEADLINE] = deadline = time.monotonic_ns() + 50_000_000
        fn(b)
        late.append((time.monotonic_ns() - deadline) / 1e6)
        assert b[st.STOP_REASON] == st.STOP_DEADLINE_EXCEEDED

    benchmark.pedantic(run, rounds=10, iterations=1)
    benchmark.extra_info.update(late_ms_median=statistics.median(late), late_ms_max=max(late))
    print(kernel, f"late after deadline: median {statistics.median(late):.2f} ms, max {max(late):.2f} ms")


def test_stop_unary_monte_carlo_over_rpc(benchmark, server):
    """A 102-byte Heston Monte Carlo Price (10M paths, ~10 s of work) with a 0.3 s deadline:
    ms from the caller's DEADLINE_EXCEEDED to the server's handler ending."""
    running, channel = server
    stub = pricing_pb2_grpc.PricingServiceStub(channel)
    gauge = running.observer.gauge("/pricegrid.v1.PricingService/Price")
    request = pb.PriceRequest(
        model=c.MODEL_HESTON, engine=c.ENGINE_MONTE_CARLO,
        european=pb.EuropeanOption(option_type=c.OPTION_TYPE_CALL, strike=100.0, expiry=pb.Expiry(year_fraction=1.0)),
        market=pb.Market(spot=100.0, rate=0.03, heston=pb.HestonParameters(v0=0.04, kappa=1.5, theta=0.04, sigma=0.5,
                                                                             rho=-0.7)),
        settings=pb.EngineSettings(paths=10_000_000),
    )
    after = []

    def run():
        try:
            stub.Price(request, timeout=0.3)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        t = time.perf_counter()
        while gauge._value.get() > 0 and time.perf_counter() - t < 30:
            time.sleep(0.0005)
        after.append((time.perf_counter() - t) * 1e3)

    benchmark.pedantic(run, rounds=5, iterations=1)
    benchmark.extra_info.update(handler_end_after_caller_ms_median=statistics.median(after),
                                handler_end_after_caller_ms_max=max(after))
    print(f"handler ended after the caller's DEADLINE_EXCEEDED: median {statistics.median(after):.2f} ms,"
          f" max {max(after):.2f} ms")
