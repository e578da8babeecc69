"""Memory back to the OS after large calls (pricegrid.server.app.memory.MallocTrimmer): the
trimming rule on a fake trim, then RSS of a real `pricegrid serve` process around a
1M-row PriceBatch (before the trimmer: 71 -> 296 MiB, and it stayed there)."""

import threading
import time

import grpc
import numpy as np
import pytest

from pricegrid.server.app.memory import MallocTrimmer
from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import pricing_pb2 as pb
from pricegrid.v1 import pricing_pb2_grpc

from tests.server.test_serve_process import Server


def test_memory_is_trimmed_once_large_calls_are_over():
    trims = []
    trimmer = MallocTrimmer(min_rows=1000, idle_s=0.05, trim=lambda: trims.append(time.monotonic()) or 1)
    with trimmer(10):  # small: not a large call
        pass
    time.sleep(0.15)
    assert trims == []
    with trimmer(1000):
        time.sleep(0.2)  # in flight: nothing trimmed under it
        assert trims == []
    ended = time.monotonic()
    deadline = time.monotonic() + 5
    while not trims and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(trims) == 1 and trims[0] - ended >= 0.05
    assert trimmer.trims == 1


def test_calls_in_quick_succession_keep_the_heap_until_they_stop():
    trims = []
    trimmer = MallocTrimmer(min_rows=1, idle_s=0.1, trim=lambda: trims.append(1) or 1)
    for _ in range(10):  # a client looping batches: gaps shorter than idle_s
        with trimmer(5):
            time.sleep(0.02)
        time.sleep(0.02)
    assert trims == []
    time.sleep(0.5)
    assert trims == [1]


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _batch(rows: int) -> pb.PriceBatchRequest:
    rng = np.random.default_rng(0)
    raw = lambda a: c.DoubleColumn(raw=np.ascontiguousarray(a, dtype="<f8").tobytes())  # noqa: E731
    return pb.PriceBatchRequest(
        model=c.MODEL_BLACK_SCHOLES_MERTON, measures=[c.MEASURE_PRICE, c.MEASURE_DELTA, c.MEASURE_GAMMA, c.MEASURE_VEGA],
        european=pb.EuropeanOptionColumns(option_type=c.Int32Column(raw=rng.integers(1, 3, rows).astype("<i4").tobytes()),
                                          strike=raw(rng.uniform(80, 120, rows)),
                                          time_to_expiry=raw(rng.uniform(0.1, 2.0, rows))),
        market=pb.MarketColumns(spot=raw(rng.uniform(90, 110, rows)), rate=c.DoubleColumn(values=[0.03]),
                                dividend_yield=c.DoubleColumn(values=[0.01]), volatility=raw(rng.uniform(0.1, 0.4, rows))),
        output_encoding=c.ENCODING_RAW,
    )


@pytest.mark.slow
def test_rss_returns_near_its_level_after_a_million_row_batch():
    server = Server()
    try:
        channel = grpc.insecure_channel(server.address, options=[("grpc.max_receive_message_length", -1),
                                                                 ("grpc.max_send_message_length", -1)])
        stub = pricing_pb2_grpc.PricingServiceStub(channel)
        stub.PriceBatch(_batch(10), timeout=30)
        time.sleep(0.3)
        pid = server.proc.pid
        idle = _rss_mib(pid)
        peak = [idle]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], _rss_mib(pid))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        reply = stub.PriceBatch(_batch(1_000_000), timeout=120)
        assert reply.rows == 1_000_000 and reply.error_count == 0
        del reply
        done.set()
        sampler.join()
        after = _rss_mib(pid)
        deadline = time.monotonic() + 20  # the trim runs once the batch is over; a loaded machine delays it
        while after - idle > 0.5 * (peak[0] - idle) and time.monotonic() < deadline:
            time.sleep(0.1)
            after = _rss_mib(pid)
        assert peak[0] - idle > 100  # the batch did take its memory (~230 MiB here)
        assert after - idle < 0.5 * (peak[0] - idle), (idle, peak[0], after)  # here: 71 -> 296 -> ~110 MiB
        channel.close()
    finally:
        server.kill()
