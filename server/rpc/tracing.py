"""Distributed tracing with OpenTelemetry, off unless the app hands the handlers a
:class:`Tracing`.

Off (the default), the handlers hold ``None`` and create nothing: no span, no context, no
exporter. On, every call gets a server span named ``package.Service/Method`` (kind SERVER;
``rpc.system``, ``rpc.service``, ``rpc.method``, ``rpc.grpc.status_code``,
``pricegrid.request_id``, ``pricegrid.rows``), the child of the caller's span when the call
carries W3C ``traceparent`` (and ``tracestate``) metadata, a new trace otherwise. Its work
adds children from any thread through the call's :class:`CallTrace`: a span per chunk of a
batch (the service's chunk loop, through its Watch) and per block of a scenario run.

The span's status is ERROR for the codes that say the server failed (OpenTelemetry's gRPC
conventions: UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS);
a caller's mistake (INVALID_ARGUMENT, NOT_FOUND, ...) leaves it unset, with the code.
"""

from __future__ import annotations

from typing import Mapping, Optional

import grpc
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, get_current_span, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
_HEADERS = ("traceparent", "tracestate")
_CODES = {c.name: c.value[0] for c in grpc.StatusCode}
_SERVER_ERRORS = frozenset({"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"})


class Tracing:
    """The server's tracer (from the app's TracerProvider: its sampler and exporter)."""

    def __init__(self, tracer: Tracer):
        self.tracer = tracer

    def start(self, method: str, metadata, request_id: str) -> "CallTrace":
        """The server span of a call to ``method`` (``/package.Service/Method``), the child of
        the caller's span when ``metadata`` carries a valid ``traceparent``."""
        carrier = {k: v for k, v in metadata or () if k in _HEADERS}
        parent = _PROPAGATOR.extract(carrier) if carrier else None
        name = method.lstrip("/")
        service, _, rpc = name.partition("/")
        span = self.tracer.start_span(name, context=parent, kind=SpanKind.SERVER, attributes={
            "rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc, "pricegrid.request_id": request_id,
        })
        return CallTrace(self.tracer, span)


class CallTrace:
    """One call's server span, and the children its work adds (any thread)."""

    __slots__ = ("tracer", "server_span", "context")

    def __init__(self, tracer: Tracer, span):
        self.tracer = tracer
        self.server_span = span
        self.context = set_span_in_context(span)

    def end(self, code: str, rows: int, message: str = "") -> None:
        span = self.server_span
        span.set_attribute("rpc.grpc.status_code", _CODES.get(code, 2))
        span.set_attribute("pricegrid.rows", rows)
        if code in _SERVER_ERRORS:
            span.set_status(Status(StatusCode.ERROR, f"{code}: {message}" if message else code))
        span.end()

    def span(self, name: str, attributes: Optional[Mapping[str, object]] = None, *, current: bool = False):
        """A context manager: a child span of the span current in this thread, when that is
        one of this call's (a scenario block's, for the chunks priced in it), else of the
        call's span. ``current``: make it the current span while it is open (not inside a
        generator: a context attached there may be detached in another one)."""
        here = get_current_span()
        parent = None if here.get_span_context().trace_id == self.server_span.get_span_context().trace_id \
            and here.is_recording() else self.context
        return _Child(self.tracer.start_span(name, context=parent, attributes=attributes), current)


class _Child:
    __slots__ = ("span", "current", "token")

    def __init__(self, span, current: bool):
        self.span = span
        self.current = current
        self.token = None

    def __enter__(self):
        if self.current:
            self.token = otel_context.attach(set_span_in_context(self.span))
        return self.span

    def __exit__(self, kind, exc, tb) -> None:
        if self.token is not None:
            otel_context.detach(self.token)
        if exc is not None and isinstance(exc, Exception):  # GeneratorExit: a chunk loop closed early
            self.span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        self.span.end()


def build(*, endpoint: str = "", sample_ratio: float = 1.0, exporter=None, version: str = ""):
    """(Tracing, TracerProvider) for the server: spans batched to an OTLP/gRPC collector at
    ``endpoint`` (needs the ``otlp`` extra; ``http://host:4317`` plaintext, ``https://`` TLS,
    as the exporter reads them with its OTEL_EXPORTER_OTLP_* variables), and/or handed one by one to ``exporter`` (a
    SpanExporter: the tests' in-memory one). ``sample_ratio``: the share of new traces kept
    (a caller's sampled flag is followed). The provider is the server's own, not the
    process's global one; shut it down to flush the spans."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": "pricegrid", "service.version": version}),
        sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    if endpoint:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ValueError("otlp_endpoint is set but the OTLP exporter is not installed:"
                             " pip install 'pricegrid[otlp]'") from None
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return Tracing(provider.get_tracer("pricegrid.server", version)), provider
