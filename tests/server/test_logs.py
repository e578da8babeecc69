"""server.app.logs: every line reaches the stream at once, except the RPC log's flushes,
whose lines go out together at the end of ``batched`` (one flush, lines whole, in order)."""

from __future__ import annotations

import io
import json
import threading
import time

import prometheus_client
import pytest
import structlog

from pricegrid.server.app import logs
from pricegrid.server.rpc.observe import Metrics, RpcObserver


class Stdout(io.StringIO):
    """A stream that counts its flushes and says what had been flushed at each."""

    def __init__(self):
        super().__init__()
        self.flushes = []

    def flush(self):
        self.flushes.append(self.getvalue())
        super().flush()


@pytest.fixture
def out():
    stream = Stdout()
    logs.configure("info", "json", stream=stream)
    yield stream
    logs.configure("warning", "json")


def lines(text: str) -> list[dict]:
    return [json.loads(x) for x in text.splitlines()]


def test_a_line_outside_a_batch_is_flushed_at_once(out):
    log = structlog.get_logger("pricegrid.test")
    log.info("one", n=1)
    log.warning("two", n=2)
    assert len(out.flushes) == 2
    assert [x["event"] for x in lines(out.flushes[0])] == ["one"]
    assert [(x["event"], x["level"], x["n"]) for x in lines(out.flushes[1])] == [("one", "info", 1), ("two", "warning", 2)]


def test_lines_in_a_batch_go_out_together_at_its_outermost_end(out):
    log = structlog.get_logger("pricegrid.test")
    with logs.batched():
        log.info("a")
        with logs.batched():
            log.info("b")
        assert out.flushes == []  # the inner end is not the end
        log.info("c")
        assert out.flushes == []
    assert len(out.flushes) == 1 and [x["event"] for x in lines(out.flushes[0])] == ["a", "b", "c"]
    with pytest.raises(RuntimeError):
        with logs.batched():
            log.info("d")
            raise RuntimeError("boom")
    assert len(out.flushes) == 2 and lines(out.flushes[1])[-1]["event"] == "d"  # flushed all the same


def test_another_threads_line_is_not_held_by_a_batch(out):
    log = structlog.get_logger("pricegrid.test")
    with logs.batched():
        log.info("held")
        t = threading.Thread(target=lambda: log.error("at once"))
        t.start()
        t.join()
        assert len(out.flushes) == 1 and [x["event"] for x in lines(out.flushes[0])] == ["held", "at once"]


def test_the_rpc_log_writes_a_flush_of_many_lines_with_one_flush(out):
    observer = RpcObserver(Metrics(prometheus_client.CollectorRegistry()), flush_seconds=3600, batched=logs.batched)
    try:
        for i in range(200):
            observer.record("/pricegrid.v1.PricingService/Price", "OK" if i % 7 else "INVALID_ARGUMENT",
                            0.0003, 1, f"req-{i}", message="" if i % 7 else "bad strike")
        time.sleep(0.01)
        observer.flush()
    finally:
        observer.close()
    assert len(out.flushes) == 1
    got = lines(out.flushes[0])
    assert [x["request_id"] for x in got] == [f"req-{i}" for i in range(200)]
    assert all((x["level"] == "warning") == (i % 7 == 0) for i, x in enumerate(got))
    assert got[0]["message"] == "bad strike" and got[0]["code"] == "INVALID_ARGUMENT"
