"""One structured log line and a few Prometheus metrics per RPC, off the hot path.

Handlers append one tuple per call to a deque (tens of nanoseconds); a writer thread renders
them with structlog every ``flush_seconds``, after the responses have gone out, so logging
never sits between a front-office caller and its price. Metrics are observed inline:
prometheus-client children are cached per (method, code), which keeps an observation to
about a microsecond.
"""

from __future__ import annotations

import collections
import datetime as dt
import threading
import time

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
)
ROW_BUCKETS = (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000)


class Metrics:
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.latency = Histogram(
            "pricegrid_rpc_duration_seconds", "Server-side RPC duration", ["method", "code"],
            buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.rows = Histogram(
            "pricegrid_batch_rows", "Rows per batch request", ["method"], buckets=ROW_BUCKETS, registry=registry
        )
        self.row_errors = Counter(
            "pricegrid_row_errors", "Batch rows that failed, by method", ["method"], registry=registry
        )
        self.errors = Counter("pricegrid_rpc_errors", "RPCs that ended in an error, by code", ["method", "code"], registry=registry)
        self.stream_messages = Counter(
            "pricegrid_stream_messages", "Messages received on streaming RPCs (counted when the stream ends)",
            ["method"], registry=registry
        )
        self.in_flight = Gauge(
            "pricegrid_rpc_in_flight", "RPCs being handled now", ["method"], registry=registry
        )
        self.models = Gauge(
            "pricegrid_model_info", "Models live on this server (value 1)", ["model", "engine", "version"], registry=registry
        )
        self._latency = {}

    def watch_capacity(self, lanes, streams) -> None:
        """Export the gates' state (read when scraped: nothing on the calls' path)."""
        self.registry.register(_CapacityCollector(lanes, streams))

    def observe(self, method: str, code: str, seconds: float, rows: int, bad_rows: int, batch: bool) -> None:
        key = (method, code)
        child = self._latency.get(key)
        if child is None:
            child = self._latency[key] = self.latency.labels(method, code)
        child.observe(seconds)
        if code != "OK":
            self.errors.labels(method, code).inc()
        if batch:
            self.rows.labels(method).observe(rows)
            if bad_rows:
                self.row_errors.labels(method).inc(bad_rows)


class RpcObserver:
    def __init__(self, metrics: Metrics, *, flush_seconds: float = 0.2, logger=None):
        self.metrics = metrics
        self.flush_seconds = flush_seconds
        self.log = logger or structlog.get_logger("pricegrid.rpc")
        self._pending: collections.deque = collections.deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pricegrid-log", daemon=True)
        self._thread.start()

    def gauge(self, method: str):
        """The in-flight gauge of one method (handlers inc/dec it around each call)."""
        return self.metrics.in_flight.labels(method)

    def record(self, method: str, code: str, seconds: float, rows: int, request_id: str,
               bad_rows: int = 0, batch: bool = False, detail: str = "") -> None:
        self.metrics.observe(method, code, seconds, rows, bad_rows, batch)
        if detail == "stream":  # ``rows``: the stream's messages
            self.metrics.stream_messages.labels(method).inc(rows)
        self._pending.append((time.time(), method, code, seconds, rows, bad_rows, request_id, detail))

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self._flush_quietly()
        self._flush_quietly()

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except Exception:  # a closed stdout must not stop the server (or this thread)
            self._pending.clear()

    def flush(self) -> None:
        pending = self._pending
        while pending:
            ts, method, code, seconds, rows, bad_rows, request_id, detail = pending.popleft()
            event = dict(
                method=method, code=code, duration_ms=round(seconds * 1e3, 4), rows=rows, request_id=request_id,
                at=dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="microseconds"),
            )
            if bad_rows:
                event["bad_rows"] = bad_rows
            if detail:
                event["detail"] = detail
            if code == "OK":
                self.log.info("rpc", **event)
            else:
                self.log.warning("rpc", **event)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class _CapacityCollector:
    """Admission control as Prometheus sees it, read from the gates at scrape time."""

    def __init__(self, lanes, streams):
        self.gates = [lane.gate for lane in (lanes.front, lanes.batch, lanes.market) if lane.gate is not None]
        self.streams = streams

    def collect(self):
        active = GaugeMetricFamily("pricegrid_admission_active", "Calls holding a slot of their class", labels=["class"])
        waiting = GaugeMetricFamily("pricegrid_admission_waiting", "Calls waiting for a slot", labels=["class"])
        limit = GaugeMetricFamily("pricegrid_admission_limit", "Slots of the class", labels=["class"])
        refused = CounterMetricFamily("pricegrid_admission_refused", "Calls refused with RESOURCE_EXHAUSTED",
                                      labels=["class"])
        for gate in self.gates:
            active.add_metric([gate.name], gate.active)
            waiting.add_metric([gate.name], gate.waiting)
            limit.add_metric([gate.name], gate.limit)
            refused.add_metric([gate.name], gate.refused)
        refused.add_metric(["streams"], self.streams.refused)
        yield from (active, waiting, limit, refused)
        yield GaugeMetricFamily("pricegrid_streams_open", "Streams open on the server", value=self.streams.open)
