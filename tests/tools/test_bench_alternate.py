"""pricegrid.tools.bench.alternate: the batch series take turns on the calling thread, call
by call, warm-up calls apart, errors counted, each series within its time."""

import threading
import time

import pytest

from pricegrid.tools import bench


class Recorder(bench._Worker):
    """A caller that notes which thread ran each call, in which order."""

    def __init__(self, name, log, fail_on=(), sleep=0.0):
        self.name, self.log, self.fail_on, self.sleep, self.n, self.closed = name, log, set(fail_on), sleep, 0, False

    def call(self):
        self.n += 1
        self.log.append((self.name, self.n, threading.get_ident()))
        time.sleep(self.sleep)
        if self.n in self.fail_on:
            raise RuntimeError(f"{self.name} call {self.n} failed")
        return 10, 20

    def close(self):
        self.closed = True


def test_series_alternate_on_the_calling_thread_after_their_warm_up():
    log, made = [], {}

    def maker(name, **kw):
        def make():
            made[name] = Recorder(name, log, **kw)
            return made[name]
        return make

    out = bench.alternate({"A": maker("A"), "B": maker("B", fail_on={3})}, count=4, duration=60.0, warmup=1,
                          rows_per_call=7)
    assert {t for _, _, t in log} == {threading.get_ident()}
    # warm-ups first (A1, B1), then A, B, A, B, ... one call each
    assert [(n, i) for n, i, _ in log] == [("A", 1), ("B", 1)] + [(n, i) for i in range(2, 6) for n in "AB"]
    assert len(out["A"].latencies) == 4 and out["A"].errors == 0 and out["A"].bytes_sent == 40
    assert len(out["B"].latencies) == 3 and out["B"].errors == 1 and "B call 3 failed" in out["B"].first_error
    assert out["A"].rows_per_call == 7 and out["A"].wall_seconds > 0
    assert made["A"].closed and made["B"].closed


def test_a_series_out_of_time_ends_the_rounds():
    log = []
    out = bench.alternate({"slow": lambda: Recorder("slow", log, sleep=0.05), "fast": lambda: Recorder("fast", log)},
                          count=1000, duration=0.2, warmup=0)
    # each slow call sleeps 50 ms, so its series has had its 0.2 s after four rounds at most
    assert 1 <= len(out["slow"].latencies) <= 4 and len(out["fast"].latencies) == len(out["slow"].latencies)
    assert out["slow"].wall_seconds >= 0.2


def test_a_failed_warm_up_says_which_series():
    with pytest.raises(bench.BenchError, match="B: warm-up failed"):
        bench.alternate({"A": lambda: Recorder("A", []), "B": lambda: Recorder("B", [], fail_on={1})}, count=2,
                        duration=5.0, warmup=1)
