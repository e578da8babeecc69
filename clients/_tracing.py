"""W3C trace context on the clients' calls, when the caller traces with OpenTelemetry.

A call made while an OpenTelemetry span is current carries its ``traceparent`` (and
``tracestate``) metadata, written by the application's configured propagator, so that the
server's spans join the caller's trace. Without the ``opentelemetry-api`` package, or with no
span current, calls carry nothing more (the check costs well under a microsecond).
"""

from __future__ import annotations

try:
    from opentelemetry import propagate as _propagate
    from opentelemetry import trace as _trace
except ImportError:  # optional: the clients never need it
    _trace = None


def metadata():
    """The current span's trace context as gRPC call metadata, or None."""
    if _trace is None or not _trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict = {}
    _propagate.inject(carrier)
    return tuple(carrier.items()) or None
