"""The interceptor chain, applied once when handlers are built rather than per call.

Each RPC handler is wrapped so that it:
  * turns an undecodable request body into INVALID_ARGUMENT (grpcio alone would answer
    INTERNAL "Exception deserializing request"),
  * carries a request id (the caller's ``x-request-id`` metadata, or one made here) into the
    log line and, on errors, the trailing metadata,
  * maps ServiceError through the one error table, and anything unexpected to INTERNAL
    without leaking internals (the log line has the traceback),
  * records one log line and the metrics.
Built once per method at start-up, a wrapper costs a function call per RPC, where a
grpc.ServerInterceptor would rebuild a method handler on every call.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Callable

import grpc
import structlog

from pricegrid.server.domain.errors import Code, ServiceError
from pricegrid.server.rpc import _codec, errors
from pricegrid.server.rpc.observe import RpcObserver
from pricegrid.v1 import wire

_log = structlog.get_logger("pricegrid.rpc")
_ids = itertools.count(1)
_PREFIX = f"{os.getpid():x}-"


class Undecodable:
    """Stands in for a request whose bytes did not parse as the method's message."""

    __slots__ = ("type_name", "reason")

    def __init__(self, type_name: str, reason: str):
        self.type_name = type_name
        self.reason = reason

    def error(self) -> ServiceError:
        return ServiceError(
            Code.INVALID_ARGUMENT, f"request body is not a valid {self.type_name} message ({self.reason})"
        )


def safe_deserializer(message_cls, *, zero_copy: bool = False):
    """The method's parser, returning Undecodable instead of raising. ``zero_copy`` reads
    the message as a pricegrid.v1.wire View (columns stay in the received bytes) with the
    compiled reader (linear time, GIL released over large messages: rpc/_codec.pyx)."""
    parse = (lambda data: _codec.read_view(message_cls, data)) if zero_copy else message_cls.FromString
    name = message_cls.DESCRIPTOR.full_name

    def deserialize(data: bytes):
        try:
            return parse(data)
        except wire.DecodeError as exc:  # our readers' own words (no internals in them)
            return Undecodable(name, str(exc) or "DecodeError")
        except Exception as exc:  # DecodeError, RuntimeError from upb, ...
            return Undecodable(name, type(exc).__name__)

    return deserialize


def request_id(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata():
        if key == "x-request-id":
            return value[:128]
    return f"{_PREFIX}{next(_ids)}"


def _fail(context, rid: str, exc: BaseException, method: str) -> str:
    if isinstance(exc, ServiceError):
        errors.abort(context, exc, rid)
    _log.error("rpc_internal_error", method=method, request_id=rid, exc_info=exc)
    context.set_trailing_metadata((("x-request-id", rid),))
    context.abort(grpc.StatusCode.INTERNAL, f"internal error; quote request id {rid}")
    return "INTERNAL"


def wrap_unary(method: str, fn: Callable, observer: RpcObserver, *, batch: bool) -> Callable:
    """fn(request, context, request_id) -> (response, rows, bad_rows)."""
    in_flight = observer.gauge(method)

    def handler(request, context):
        t0 = time.perf_counter()
        rid = request_id(context)
        code = "OK"
        rows = bad = 0
        in_flight.inc()
        try:
            if type(request) is Undecodable:
                raise request.error()
            response, rows, bad = fn(request, context, rid)
            return response
        except ServiceError as exc:
            code = exc.code.name
            _fail(context, rid, exc, method)
        except Exception as exc:
            code = "INTERNAL"
            _fail(context, rid, exc, method)
        finally:
            in_flight.dec()
            observer.record(method, code, time.perf_counter() - t0, rows, rid, bad, batch)

    return handler


def wrap_stream(method: str, fn: Callable, observer: RpcObserver) -> Callable:
    """fn(request_iterator, context, request_id, counter) -> iterator of responses."""
    in_flight = observer.gauge(method)

    def handler(request_iterator, context):
        t0 = time.perf_counter()
        rid = request_id(context)
        counter = [0]
        code = "OK"
        in_flight.inc()
        try:
            yield from fn(request_iterator, context, rid, counter)
        except ServiceError as exc:
            code = exc.code.name
            _fail(context, rid, exc, method)
        except Exception as exc:
            code = "INTERNAL"
            _fail(context, rid, exc, method)
        finally:
            in_flight.dec()
            if not context.is_active() and code == "OK":
                code = "CANCELLED"
            observer.record(method, code, time.perf_counter() - t0, counter[0], rid, 0, False, "stream")

    return handler
