"""The lean Price path's kernel call beside a busy Python thread: why ``black.price_one``
keeps the GIL.

The lean path prices on the server's event loop. A call that releases the GIL, however
short, hands it to any other thread waiting for it (a pool thread between kernel calls,
the log writer), and gets it back only when that thread blocks or its switch interval
(5 ms) runs out. ``price_one`` (half a microsecond) therefore keeps the GIL; a one-row
``price_batch``, which releases it as every batch entry does, is timed beside it as what a
release costs. Figures in ``extra_info`` (microseconds), nothing asserted on time:

    .venv/bin/python -m pytest bench/test_bench_lean_gil.py --benchmark-json=/tmp/gil.json -p no:logging
    python -c "import json; [print(b['name'], b['extra_info']) for b in json.load(open('/tmp/gil.json'))['benchmarks']]"
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from pricegrid.ext import black

CALLS = 400


def _one():
    return black.price_one(1, 1, 100.0, 1.0, 100.0, 0.05, 0.0, 0.2, 0x3E)


def _column(value, dtype=np.float64):
    return np.array([value], dtype=dtype)


_ARGS = (1, _column(1, np.int32), _column(100.0), _column(1.0), _column(100.0), _column(0.05), _column(0.0),
         _column(0.2), np.array([1, 2, 3, 4, 5, 6], dtype=np.int32), np.empty((6, 1)), np.empty(0), np.empty(0),
         np.empty(1, dtype=np.int32), 1)


def _batch_of_one():
    return black.price_batch(*_ARGS)


def _latencies_us(fn, calls: int) -> np.ndarray:
    out = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t0
    return out * 1e6


@pytest.mark.parametrize("name, fn", [("price_one (keeps the GIL)", _one),
                                      ("1-row price_batch (releases the GIL)", _batch_of_one)],
                         ids=["price_one", "price_batch_of_one"])
def test_one_row_beside_a_busy_python_thread(benchmark, name, fn):
    assert fn() is not None
    stop = threading.Event()

    def busy():
        n = 0
        while not stop.is_set():
            n += 1

    idle = _latencies_us(fn, CALLS)
    thread = threading.Thread(target=busy, daemon=True)
    thread.start()
    try:
        busy_lat = benchmark.pedantic(_latencies_us, args=(fn, CALLS), rounds=1, iterations=1)
    finally:
        stop.set()
        thread.join()
    benchmark.extra_info.update(
        call=name, calls=CALLS,
        alone_p50_us=float(np.median(idle)), alone_p99_us=float(np.percentile(idle, 99)),
        busy_p50_us=float(np.median(busy_lat)), busy_p99_us=float(np.percentile(busy_lat, 99)))
