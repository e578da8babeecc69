"""One structured log line and the Prometheus metrics of every RPC, off the hot path.

Handlers append one tuple per call to a deque (tens of nanoseconds); a writer thread renders
them with structlog every ``flush_seconds``, after the responses have gone out, so logging
never sits between a front-office caller and its price; the flush's lines go out in one
write (the app's ``batched``). Metrics are observed on the event loop, just after the
reply has been handed to gRPC (a unary call's in the loop's next round, a stream message's
when gRPC asks for the next reply): prometheus-client children are cached per label values,
which keeps an observation to about a microsecond.

The metrics (names as Prometheus conventions have them: base units, ``_total`` on counters,
``_info`` for constant labels with value 1):

    pricegrid_rpc_duration_seconds{method,code}     histogram: server-side duration of every call;
                                                    its ``_count`` is the handled total per method
                                                    and code
    pricegrid_rpc_errors_total{method,code}         calls that ended in an error
    pricegrid_rpc_in_flight{method}                 calls being handled now
    pricegrid_rpc_queue_wait_seconds{method}        time a call waited for a slot of its capacity
                                                    class (summed over a stream's messages)
    pricegrid_rpc_compute_seconds{method}           time its work ran in the class's thread pool
                                                    (both: calls that ran in a pool; the lean Price
                                                    path and other inline work have neither)
    pricegrid_batch_rows{method}                    histogram: rows per batch request answered (OK)
    pricegrid_row_errors_total{method}              batch rows that failed
    pricegrid_stream_messages_total{method}         messages received on streams (when one ends)
    pricegrid_model_rows_total{model,engine,version}       rows priced (PricingService calls)
    pricegrid_model_duration_seconds{model,engine,version} histogram: server-side seconds of a
                                                    pricing call (a PriceStream message: its own)
    pricegrid_auth_denied_total{method,code}        calls refused UNAUTHENTICATED/PERMISSION_DENIED
    pricegrid_admission_{active,waiting,limit}{class}, pricegrid_admission_refused_total{class}
                                                    admission control; refused: the calls shed
    pricegrid_streams_open                          streams open now
    pricegrid_model_info{model,engine,version}      models live (1)
    pricegrid_build_info{version,...}               the build (1): compiler flags, CPU target
    process_*, python_*                             prometheus-client's process, platform and GC
                                                    collectors
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import threading
import time
from typing import Callable, ContextManager

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
)
ROW_BUCKETS = (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000)


class Metrics:
    """Every metric of one server, in its own registry (several servers share a process in
    the tests). ``build``: the labels of ``pricegrid_build_info``."""

    def __init__(self, registry: CollectorRegistry, build: dict | None = None):
        self.registry = registry
        self.latency = Histogram(
            "pricegrid_rpc_duration_seconds", "Server-side RPC duration (its _count: calls handled)",
            ["method", "code"], buckets=LATENCY_BUCKETS, registry=registry,
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
        self.queue_wait = Histogram(
            "pricegrid_rpc_queue_wait_seconds", "Time a call waited for a slot of its capacity class",
            ["method"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.compute = Histogram(
            "pricegrid_rpc_compute_seconds", "Time a call's work ran in its capacity class's thread pool",
            ["method"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.model_rows = Counter(
            "pricegrid_model_rows", "Rows priced, by model, engine and version", ["model", "engine", "version"],
            registry=registry,
        )
        self.model_latency = Histogram(
            "pricegrid_model_duration_seconds", "Server-side duration of pricing calls, by model, engine and version",
            ["model", "engine", "version"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.denied = Counter(
            "pricegrid_auth_denied", "Calls refused by the auth policy (UNAUTHENTICATED, PERMISSION_DENIED)",
            ["method", "code"], registry=registry,
        )
        self.models = Gauge(
            "pricegrid_model_info", "Models live on this server (value 1)", ["model", "engine", "version"], registry=registry
        )
        build = build or {}
        self.build = Gauge("pricegrid_build_info", "How this server was built (value 1)", list(build),
                           registry=registry)
        (self.build.labels(**build) if build else self.build).set(1)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self._latency = {}
        self._models = {}
        self._pool = {}

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
        if batch and code == "OK":  # rows of the batches answered: a refused call read none
            self.rows.labels(method).observe(rows)
            if bad_rows:
                self.row_errors.labels(method).inc(bad_rows)

    def ran(self, method: str, waited: float, computed: float) -> None:
        """A call whose work ran in a capacity class's pool: its wait for a slot, its work."""
        children = self._pool.get(method)
        if children is None:
            children = self._pool[method] = (self.queue_wait.labels(method), self.compute.labels(method))
        children[0].observe(waited)
        children[1].observe(computed)

    def priced(self, ref, rows: int, seconds: float) -> None:
        """A pricing call (or PriceStream message) by the engine ``ref`` (a domain ModelRef)."""
        children = self._models.get(ref)
        if children is None:
            labels = (ref.model, ref.engine, ref.version)
            children = self._models[ref] = (self.model_rows.labels(*labels), self.model_latency.labels(*labels))
        children[0].inc(rows)
        children[1].observe(seconds)

    def count_denied(self, method: str, code: str) -> None:
        """A call the auth policy refused (rpc.auth.Authorizer's ``on_deny``)."""
        self.denied.labels(method, code).inc()


class RpcObserver:
    def __init__(self, metrics: Metrics, *, flush_seconds: float = 0.2, logger=None,
                 batched: Callable[[], ContextManager] = contextlib.nullcontext):
        """``batched()``: a context in which the log's lines may be held and written together
        at its end (server.app.logs.batched: one write per flush, not one per line)."""
        self.metrics = metrics
        self.flush_seconds = flush_seconds
        self.log = logger or structlog.get_logger("pricegrid.rpc")
        self._batched = batched
        self._pending: collections.deque = collections.deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pricegrid-log", daemon=True)
        self._thread.start()

    def gauge(self, method: str):
        """The in-flight gauge of one method (handlers inc/dec it around each call)."""
        return self.metrics.in_flight.labels(method)

    def record(self, method: str, code: str, seconds: float, rows: int, request_id: str,
               bad_rows: int = 0, batch: bool = False, detail: str = "", call=None, model=None,
               message: str = "", at: float | None = None) -> None:
        """One call's end: ``call`` (an admission.Call, or None for inline work) says how long
        it waited for a slot and computed; ``model`` (a ModelRef) what priced it; ``message``
        an error's words (logged with its code); ``at`` when it ended (``time.time()``; now
        when not given)."""
        self.metrics.observe(method, code, seconds, rows, bad_rows, batch)
        if detail == "stream":  # ``rows``: the stream's messages
            self.metrics.stream_messages.labels(method).inc(rows)
        if call is not None and call.computed is not None:
            self.metrics.ran(method, call.waited, call.computed)
        if model is not None:
            self.metrics.priced(model, rows, seconds)
        self._pending.append((time.time() if at is None else at, method, code, seconds, rows, bad_rows, request_id,
                              detail, message))

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
        if not pending:
            return
        # one logger bound from structlog's configuration as it is now, for this flush's lines
        # (the lazy proxy binds one per line: a fifth of a line's cost)
        log = self.log.bind()
        with self._batched():
            self._write(log, pending)

    @staticmethod
    def _write(log, pending) -> None:
        while pending:
            ts, method, code, seconds, rows, bad_rows, request_id, detail, message = pending.popleft()
            event = dict(
                method=method, code=code, duration_ms=round(seconds * 1e3, 4), rows=rows, request_id=request_id,
                at=dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="microseconds"),
            )
            if bad_rows:
                event["bad_rows"] = bad_rows
            if detail:
                event["detail"] = detail
            if message:
                event["message"] = message
            if code == "OK":
                log.info("rpc", **event)
            else:
                log.warning("rpc", **event)

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
