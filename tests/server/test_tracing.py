"""OpenTelemetry tracing against real servers on 127.0.0.1: a server given the SDK's
in-memory span exporter, called by our clients inside a span of the caller's own tracer
(W3C traceparent), records a server span in the caller's trace under the caller's span, with
the request id, method and code, and the chunks of a batch and the blocks of a scenario run
as its children; a traceparent sent by hand is honoured as written; spans go to an OTLP
collector (one started here) when PRICEGRID_OTLP_ENDPOINT names it; off by default."""

from __future__ import annotations

import time
from concurrent import futures

import grpc
import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from pricegrid.clients import EuropeanOption, FrontOfficeClient, Market, MarketClient, RiskClient, Shift
from pricegrid.v1 import pricing_pb2 as pb
from pricegrid.v1 import pricing_pb2_grpc
from tests.conftest import start_server

MARKET = Market(spot=100.0, rate=0.03, volatility=0.2)
CHUNK = 1000


@pytest.fixture(scope="module")
def traced():
    exporter = InMemorySpanExporter()
    running = start_server(span_exporter=exporter, chunk_rows=CHUNK, metrics_port=-1)
    yield running, exporter
    running.stop(1.0)


@pytest.fixture(scope="module")
def tracer():
    """The caller's own tracer (not the process's global provider: the clients read only the
    current span, through OpenTelemetry's propagator)."""
    return TracerProvider().get_tracer("tests.caller")


def server_spans(exporter, trace_id: int, name: str, timeout: float = 5.0) -> list:
    """The finished spans ``name`` of the trace (a call's span ends just after its reply went
    out: waits for one)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id and s.name == name]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


def children(exporter, parent) -> list:
    return [s for s in exporter.get_finished_spans() if s.parent is not None
            and s.parent.span_id == parent.context.span_id]


def test_off_by_default(server):
    assert server.tracer_provider is None


def test_a_client_call_joins_the_callers_trace(traced, tracer):
    running, exporter = traced
    with FrontOfficeClient(target=running.address, timeout=10) as fo:
        with tracer.start_as_current_span("caller") as caller:
            price = fo.price(EuropeanOption(option_type="call", strike=100.0, expiry=0.5), MARKET).price
        assert price > 0
        fo.price(EuropeanOption(option_type="call", strike=100.0, expiry=0.5), MARKET)  # no span: a trace of its own
    ctx = caller.get_span_context()
    (span,) = server_spans(exporter, ctx.trace_id, "pricegrid.v1.PricingService/Price")
    assert span.parent.span_id == ctx.span_id and span.parent.is_remote and span.kind == SpanKind.SERVER
    a = span.attributes
    assert (a["rpc.system"], a["rpc.service"], a["rpc.method"]) == ("grpc", "pricegrid.v1.PricingService", "Price")
    assert a["rpc.grpc.status_code"] == 0 and a["pricegrid.rows"] == 1 and a["pricegrid.request_id"]
    assert span.resource.attributes["service.name"] == "pricegrid"
    deadline = time.monotonic() + 5
    while True:
        others = [s for s in exporter.get_finished_spans() if s.name == span.name and s.context.trace_id != ctx.trace_id]
        if others or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert others and all(s.parent is None for s in others)


def test_a_traceparent_written_by_hand_and_an_error(traced):
    running, exporter = traced
    trace_id, parent_id = 0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7
    metadata = [("traceparent", f"00-{trace_id:032x}-{parent_id:016x}-01"), ("x-request-id", "trace-bad-1")]
    with grpc.insecure_channel(running.address) as ch:
        with pytest.raises(grpc.RpcError) as bad:
            pricing_pb2_grpc.PricingServiceStub(ch).Price(pb.PriceRequest(), metadata=metadata, timeout=5)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    (span,) = server_spans(exporter, trace_id, "pricegrid.v1.PricingService/Price")
    assert span.parent.span_id == parent_id
    assert span.attributes["pricegrid.request_id"] == "trace-bad-1"
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert span.status.status_code == StatusCode.UNSET  # the caller's mistake, not the server's failure


def test_batch_chunks_are_children_of_the_call(traced, tracer):
    running, exporter = traced
    rows = 4 * CHUNK + 500
    with RiskClient(target=running.address, timeout=30) as risk:
        with tracer.start_as_current_span("caller") as caller:
            out = risk.price_batch(option_type="put", strike=np.linspace(80, 120, rows), time_to_expiry=0.5,
                                   spot=100.0, rate=0.03, volatility=0.2, model="bsm")
    assert np.isfinite(out["price"]).all()
    ctx = caller.get_span_context()
    (call,) = server_spans(exporter, ctx.trace_id, "pricegrid.v1.PricingService/PriceBatch")
    assert call.parent.span_id == ctx.span_id and call.attributes["pricegrid.rows"] == rows
    chunks = sorted((s for s in children(exporter, call) if s.name == "chunk"),
                    key=lambda s: s.attributes["pricegrid.chunk.start"])
    ranges = [(s.attributes["pricegrid.chunk.start"], s.attributes["pricegrid.chunk.stop"]) for s in chunks]
    assert ranges == [(a, min(a + CHUNK, rows)) for a in range(0, rows, CHUNK)]
    assert all(call.start_time <= s.start_time <= s.end_time <= call.end_time for s in chunks)
    assert all(s.context.trace_id == ctx.trace_id for s in chunks)


def test_scenario_blocks_are_children_of_the_call(traced, tracer):
    running, exporter = traced
    trades, scenarios = 1100, 500  # 550,000 cells: two blocks of the cube
    rng = np.random.default_rng(5)
    with MarketClient(target=running.address, timeout=10) as market:
        snapshot_id = market.list_snapshots("demo")[0].id
    with RiskClient(target=running.address, timeout=60) as risk:
        with tracer.start_as_current_span("caller") as caller:
            r = risk.scenario_risk(snapshot_id=snapshot_id, underlying_id="SPX", model="bsm",
                                   shifts=[Shift("spot", "spot", "relative", ["SPX"])],
                                   sizes=np.linspace(-0.2, 0.2, scenarios)[None, :],
                                   labels=[f"s{i}" for i in range(scenarios)], option_type=np.full(trades, "call"),
                                   strike=rng.uniform(5200, 6800, trades), time_to_expiry=rng.uniform(0.1, 2.0, trades),
                                   quantity=np.ones(trades))
    assert r.cube is None or r.cube.shape == (trades, scenarios)
    ctx = caller.get_span_context()
    (call,) = server_spans(exporter, ctx.trace_id, "pricegrid.v1.RiskService/RunScenarioRisk")
    assert call.parent.span_id == ctx.span_id and call.attributes["rpc.grpc.status_code"] == 0
    names = [s.name for s in children(exporter, call)]
    assert names.count("scenario start") == 1 and names.count("scenario aggregates") == 1
    (start,) = [s for s in children(exporter, call) if s.name == "scenario start"]
    blocks = [s for s in children(exporter, call) if s.name == "scenario block"]
    blocks += [s for s in children(exporter, start) if s.name == "scenario block"]  # the first, before the header
    covered = sorted((s.attributes["pricegrid.block.trade_start"], s.attributes["pricegrid.block.trade_stop"])
                     for s in blocks if "pricegrid.block.trade_start" in s.attributes)
    assert len(covered) >= 2 and covered[0][0] == 0 and covered[-1][1] == trades
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:]))
    # the pricing inside a block: its chunks are the block's children
    assert any(s.name == "chunk" for b in blocks for s in children(exporter, b))


def test_spans_go_to_an_otlp_collector():
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    received = []

    class Collector(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            received.append(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    collector = grpc.server(futures.ThreadPoolExecutor(2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(), collector)
    port = collector.add_insecure_port("127.0.0.1:0")
    collector.start()
    try:
        running = start_server(otlp_endpoint=f"http://127.0.0.1:{port}", metrics_port=-1)
        try:
            with FrontOfficeClient(target=running.address, timeout=10) as fo:
                fo.price(EuropeanOption(option_type="call", strike=100.0, expiry=0.5), MARKET)
        finally:
            running.stop(1.0)  # flushes the batched spans
    finally:
        collector.stop(0)
    spans = [(r.resource, s) for req in received for r in req.resource_spans for ss in r.scope_spans for s in ss.spans]
    names = {s.name for _, s in spans}
    assert "pricegrid.v1.PricingService/Price" in names
    service = {a.key: a.value.string_value for a in spans[0][0].attributes}["service.name"]
    assert service == "pricegrid"
