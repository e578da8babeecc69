"""Servicers: a few lines each, from proto to the service and back.

Conversions live in :mod:`requests` and :mod:`responses` (the lean front-office path in
:mod:`fast`), errors in :mod:`errors`, logging/metrics/request ids/admission in
:mod:`interceptors`. ``handlers()`` builds the generic handlers for the server.

Unary methods are plain functions ``(request, call, request_id)``, run in their capacity
class's thread pool (:class:`~pricegrid.server.rpc.admission.Lane`); ``call`` says whether
the caller is still there and how much of the deadline is left. The lean Price path and
ServerInfo run inline on the event loop (microseconds). PriceStream is a coroutine on the
loop: an idle stream holds no thread; a message of the lean shape is priced inline, any
other in the front-office pool behind its gate, one message at a time.
"""

from __future__ import annotations

import dataclasses
import time

import grpc
import grpc.aio

from typing import Optional

from pricegrid.server.domain.errors import Code, ServiceError, invalid
from pricegrid.server.rpc import _codec
from pricegrid.server.rpc import fast
from pricegrid.server.rpc import requests as req
from pricegrid.server.rpc import responses as resp
from pricegrid.server.rpc.admission import Lane, Lanes, Refused, StreamGate
from pricegrid.server.rpc.errors import to_rich_status
from pricegrid.server.rpc.interceptors import Undecodable, safe_deserializer, serialized, wrap_stream, wrap_unary
from pricegrid.server.rpc.observe import RpcObserver
from pricegrid.server.service.pricing import PricingService, Watch
from pricegrid.server.service.ticking import HeldBytes, MarketMove, TickingBook
from pricegrid.v1 import common_pb2 as cpb
from pricegrid.v1 import pricing_pb2 as pb
from pricegrid.v1 import wire

SERVICE = "pricegrid.v1.PricingService"
_PARSE_PRICE = safe_deserializer(pb.PriceRequest)
_PARSE_STREAM = safe_deserializer(pb.PriceStreamRequest)
ECHO_SERVICE = "pricegrid.v1.EchoService"


class PricingServicer:
    def __init__(self, service: PricingService, *, default_deadline_s: float, max_stream_trades: int, info,
                 stream_lane: Lane, sees_details=lambda principal: True, priced=None,
                 max_stream_bytes: Optional[int] = None, held: Optional[HeldBytes] = None):
        self.service = service
        #: what one stream's held trades may take (bytes), and the budget of all streams together
        self.max_stream_bytes = max_stream_bytes
        self.held = held
        #: (ModelRef, rows, seconds) -> None: a PriceStream message priced (the per-model metrics)
        self.priced = priced or (lambda ref, rows, seconds: None)
        #: (rpc.auth.Principal or None) -> whether the caller sees ServerInfo's build details
        self.sees_details = sees_details
        self.default_deadline_s = default_deadline_s
        self.max_stream_trades = max_stream_trades
        self.info = info  # () -> ServerInfoResponse
        self.stream_lane = stream_lane  # where a stream message off the lean path is priced

    def _watch(self, context) -> Watch:
        """The call's deadline (the caller's, else our budget) and cancellation, for the checks
        between chunks and the kernels that poll: the caller going away stops them."""
        remaining = context.time_remaining()  # None, or a huge number, when the caller set no deadline
        budget = self.default_deadline_s if remaining is None or remaining > 1e8 else remaining
        watch = Watch(budget, context.is_active, trace=context.trace)
        if not context.add_callback(watch.cancel):  # already over
            watch.cancel()
        return watch

    @staticmethod
    def _stream_watch(context, call) -> Watch:
        """A stream's deadline (the caller's, else none: a stream lives as long as its caller
        keeps it) and cancellation (``call``, the admission.Call its messages run under, is
        cancelled when the caller goes away during one), for the work its messages start."""
        remaining = context.time_remaining()
        watch = Watch(None if remaining is None or remaining > 1e8 else remaining, call.is_active, trace=call.trace)
        if not call.add_callback(watch.cancel):
            watch.cancel()
        return watch

    def price_lean(self, data: bytes):
        """The front-office hot path, inline on the loop: the analytic European engine's
        common shape goes C codec -> kernel -> C codec: (bytes, ModelRef), or None for any
        other request."""
        return fast.price_lean_ref(data, self.service)

    def Price(self, data, context, rid):
        # off the lean path: every other request is a batch of one
        request = _PARSE_PRICE(data)
        if type(request) is Undecodable:
            raise request.error()
        result = self.service.price(*req.product_one(request, self.service.catalogue),
                                    should_continue=self._watch(context))
        context.priced_by = result.priced_by
        return resp.price_response_bytes(result), 1, 0

    def PriceBatch(self, request, context, rid):
        spec, batch, market, rows, fields, measures, settings = req.product_batch(
            request, self.service.catalogue, self.service.limits.max_rows
        )
        effective = not request.omit_effective_inputs
        # the kernels write straight into the reply's bytes (see responses.PriceBatchReply)
        reply = resp.PriceBatchReply(
            rows, measures, request.output_encoding != cpb.ENCODING_PACKED, effective,
            methods=[spec.methods[m] for m in measures], stderr=spec.monte_carlo,
        )
        result = self.service.price_batch(
            spec, batch, market, measures, rows=rows, fields=fields, threads=request.threads,
            effective_inputs=effective, should_continue=self._watch(context), settings=settings,
            outputs=reply.outputs,
        )
        context.priced_by = result.priced_by
        return reply.finish(result), rows, result.error_count

    def ImpliedVolatility(self, request, context, rid):
        model, option, market, fields = req.european_one(request, with_vol=False)
        result = self.service.implied_vol(model, option, market, request.price, fields)
        context.priced_by = result.priced_by
        return resp.implied_vol_response(result), 1, 0

    def ImpliedVolatilityBatch(self, request, context, rid):
        model, options, market, price, rows, fields = req.european_batch(
            request, self.service.limits.max_rows, with_vol=False, price_field="price"
        )
        result = self.service.implied_vol_batch(
            model, options, market, price, rows=rows, fields=fields, threads=request.threads,
            effective_inputs=not request.omit_effective_inputs, should_continue=self._watch(context),
        )
        context.priced_by = result.priced_by
        return resp.implied_vol_batch_response_bytes(result, request.output_encoding), rows, result.error_count

    def ServerInfo(self, request, context, rid):
        info = self.info()
        if not self.sees_details(context.principal):  # limits and models, not how it is built
            info = type(info)(version=info.version, kernel_threads=info.kernel_threads, models=info.models,
                              limits=info.limits, started_at=info.started_at)
        return info, 1, 0

    async def PriceStream(self, requests, context, call, counter):
        # bytes in and out; a price message of the common shape, not held, never meets the
        # generated code and is priced inline; anything else goes to the front-office pool.
        # An async generator over the request iterator (gRPC aio's cheapest stream shape:
        # context.read()/write() cost more per message)
        book = TickingBook(self.service, self.max_stream_trades, max_bytes=self.max_stream_bytes, budget=self.held,
                           should_continue=self._stream_watch(context, call))
        try:
            async for reply in self._price_stream(requests, book, call, counter):
                yield reply
        finally:
            book.close()  # its trades' bytes back to the server's budget

    async def _price_stream(self, requests, book: TickingBook, call, counter):
        lane = self.stream_lane
        too_large = lane.too_large
        split_request = _codec.split_stream_request
        lean_price = fast.price_lean_ref
        service = self.service
        priced = self.priced
        clock = time.perf_counter
        async for data in requests:
            counter[0] += 1
            split = split_request(data)  # the ids, without reading the body
            refused = too_large(len(data), "a PriceStream message")
            if refused is not None:
                cid, trade_id = split[:2] if split is not None else ("", "")
                yield _stream_error(cid, trade_id, refused).SerializeToString()
                continue
            if split is not None and split[2] == 2 and not split[1]:
                cid, trade_id, _, a, b = split
                t0 = clock()
                lean = lean_price(data[a:b], service, cid.encode())  # the whole reply, framed
                if lean is not None:
                    seconds = clock() - t0
                    try:  # the reply first: its metrics when gRPC asks for the next one
                        yield lean[0]
                    finally:
                        priced(lean[1], 1, seconds)
                    continue
            message = _PARSE_STREAM(data)
            if type(message) is Undecodable:
                yield _stream_error("", "", message.error()).SerializeToString()
                continue
            try:
                replies = await lane.run(call, self._stream_replies, book, message)
            except Refused as exc:  # the front office is full: this message's answer says so
                replies = [_stream_error(message.correlation_id, message.trade_id, exc).SerializeToString()]
            for reply in replies:
                yield reply

    def _stream_replies(self, book: TickingBook, message) -> list:
        return [serialized(reply) for reply in self._stream_message(book, message)]

    def _stream_message(self, book: TickingBook, message):
        cid = message.correlation_id
        try:
            body = message.WhichOneof("body")
            if body == "price":
                trade = req.product_one(message.price, self.service.catalogue, prefix="price.")
                t0 = time.perf_counter()
                result = book.price(*trade, trade_id=message.trade_id)
                self.priced(result.priced_by, 1, time.perf_counter() - t0)
                yield _stream_result(cid, message.trade_id, resp.price_response_bytes(result))
            elif body == "market_update":
                if message.trade_id:  # (it would be ignored: a move names its trades in trade_ids)
                    raise invalid("trade_id", "a market_update moves the trades its market_update.trade_ids name (every"
                                  " held trade when empty); trade_id is a price message's: it holds that trade")
                upd = message.market_update
                move = MarketMove(**{f: getattr(upd, f) for f in ("spot", "forward", "rate", "dividend_yield", "volatility") if upd.HasField(f)})
                if upd.HasField("heston"):
                    h = upd.heston
                    move = dataclasses.replace(move, heston=(h.v0, h.kappa, h.theta, h.sigma, h.rho))
                t0 = time.perf_counter()
                for trade_id, outcome in book.move(move, upd.trade_ids):
                    if isinstance(outcome, ServiceError):
                        yield _stream_error(cid, trade_id, outcome)
                    else:
                        t1 = time.perf_counter()  # a trade's price, without the time its reply took
                        self.priced(outcome.priced_by, 1, t1 - t0)
                        yield _stream_result(cid, trade_id, resp.price_response_bytes(outcome))
                        t0 = time.perf_counter()
            else:
                raise ServiceError(Code.INVALID_ARGUMENT, "body: set price or market_update")
        except ServiceError as exc:
            yield _stream_error(cid, message.trade_id, exc)


def _stream_result(cid: str, trade_id: str, result: bytes) -> bytes:
    """PriceStreamResponse bytes around an already encoded PriceResponse."""
    chunks = []
    if cid:
        chunks += wire.field_bytes(1, cid.encode())
    if trade_id:
        chunks += wire.field_bytes(2, trade_id.encode())
    chunks += wire.field_bytes(3, result)
    return b"".join(chunks)


def _stream_error(cid: str, trade_id: str, exc: ServiceError) -> pb.PriceStreamResponse:
    field = exc.violations[0].field if exc.violations else ""
    return pb.PriceStreamResponse(
        correlation_id=cid, trade_id=trade_id,
        error=cpb.Error(code=int(exc.code), field=field, message=to_rich_status(exc).message),
    )


_BATCH = {"PriceBatch", "ImpliedVolatilityBatch"}
_INLINE = {"ServerInfo"}  # a prebuilt message: microseconds, on the loop


def _unary(fn, **kwargs) -> grpc.RpcMethodHandler:
    kwargs.setdefault("auth", None)
    kwargs.setdefault("tracing", None)
    # raw bytes both ways: requests are size-checked, then parsed where the lane runs them
    return grpc.unary_unary_rpc_method_handler(wrap_unary(**kwargs, fn=fn), request_deserializer=None,
                                               response_serializer=None)


def handlers(servicer: PricingServicer, observer: RpcObserver, lanes: Lanes, *, streams: StreamGate,
             echo: bool, auth=None, tracing=None) -> list[grpc.GenericRpcHandler]:
    """Every method, each wrapped once (interceptors.wrap_*); ``auth``: the Authorizer every
    call passes first (None: no policy); ``tracing``: an rpc.tracing.Tracing (None: off)."""
    service = pb.DESCRIPTOR.services_by_name["PricingService"]
    methods = {}
    for method in service.methods:
        request_cls = getattr(pb, method.input_type.name)
        fn = getattr(servicer, method.name)
        path = f"/{SERVICE}/{method.name}"
        if method.name == "Price":
            # the front-office hot path inline (see rpc/_codec.pyx), any other trade in the pool
            methods[method.name] = _unary(fn, auth=auth, tracing=tracing, method=path, observer=observer,
                                          lane=lanes.front,
                                          inline_first=servicer.price_lean)
        elif method.name in _BATCH:
            # columnar: read as a zero-copy view, answered with bytes written by responses
            methods[method.name] = _unary(fn, auth=auth, tracing=tracing, method=path, observer=observer,
                                          lane=lanes.batch, batch=True,
                                          parse=safe_deserializer(request_cls, zero_copy=True))
        elif method.name == "PriceStream":
            methods[method.name] = grpc.stream_stream_rpc_method_handler(
                wrap_stream(path, fn, observer, streams=streams, auth=auth, tracing=tracing),
                request_deserializer=None, response_serializer=None
            )
        else:
            lane = lanes.inline if method.name in _INLINE else lanes.front
            methods[method.name] = _unary(fn, auth=auth, tracing=tracing, method=path, observer=observer, lane=lane,
                                          parse=safe_deserializer(request_cls))
    out = [grpc.method_handlers_generic_handler(SERVICE, methods)]
    if echo:
        # a benchmark aid, off by default: bytes in, the same bytes out, behind the same
        # request ids, size limit (the largest message), log line and metrics as any method
        out.append(grpc.method_handlers_generic_handler(ECHO_SERVICE, {
            "Echo": _unary(_echo, auth=auth, tracing=tracing, method=f"/{ECHO_SERVICE}/Echo", observer=observer,
                           lane=lanes.echo),
            "EchoStream": grpc.stream_stream_rpc_method_handler(
                wrap_stream(f"/{ECHO_SERVICE}/EchoStream", _echo_stream(lanes.echo), observer, streams=streams,
                            auth=auth, tracing=tracing),
                request_deserializer=None, response_serializer=None,
            ),
        }))
    return out


def _echo(data, call, rid):
    return data, 1, 0


def _echo_stream(lane: Lane):
    async def echo(requests, context, call, counter):
        async for data in requests:
            counter[0] += 1
            refused = lane.too_large(len(data), "an EchoStream message")
            if refused is not None:
                raise refused
            yield data

    return echo
