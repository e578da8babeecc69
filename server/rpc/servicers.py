"""Servicers: a few lines each, from proto to the service and back.

Conversions live in :mod:`requests` and :mod:`responses` (the lean front-office path in
:mod:`fast`), errors in :mod:`errors`, logging/metrics/request ids in :mod:`interceptors`. ``handlers()`` builds the generic handlers for the server.
"""

from __future__ import annotations

import dataclasses

import grpc

from pricegrid.server.domain.errors import Code, ServiceError
from pricegrid.server.rpc import _codec
from pricegrid.server.rpc import fast
from pricegrid.server.rpc import requests as req
from pricegrid.server.rpc import responses as resp
from pricegrid.server.rpc.errors import to_rich_status
from pricegrid.server.rpc.interceptors import Undecodable, safe_deserializer, wrap_stream, wrap_unary
from pricegrid.server.rpc.observe import RpcObserver
from pricegrid.server.service.pricing import PricingService, Watch
from pricegrid.server.service.ticking import MarketMove, TickingBook
from pricegrid.v1 import common_pb2 as cpb
from pricegrid.v1 import pricing_pb2 as pb
from pricegrid.v1 import wire

SERVICE = "pricegrid.v1.PricingService"
_PARSE_PRICE = safe_deserializer(pb.PriceRequest)
_PARSE_STREAM = safe_deserializer(pb.PriceStreamRequest)
ECHO_SERVICE = "pricegrid.v1.EchoService"


class PricingServicer:
    def __init__(self, service: PricingService, *, default_deadline_s: float, max_stream_trades: int, info):
        self.service = service
        self.default_deadline_s = default_deadline_s
        self.max_stream_trades = max_stream_trades
        self.info = info  # () -> ServerInfoResponse

    def _watch(self, context) -> Watch:
        """The call's deadline (the caller's, else our budget) and cancellation, for the checks
        between chunks and the kernels that poll: the caller going away stops them."""
        remaining = context.time_remaining()  # None, or a huge number, when the caller set no deadline
        budget = self.default_deadline_s if remaining is None or remaining > 1e8 else remaining
        watch = Watch(budget, context.is_active)
        if not context.add_callback(watch.cancel):  # already over
            watch.cancel()
        return watch

    def Price(self, data, context, rid):
        # bytes in and out: the analytic European engine's common shape goes C codec ->
        # kernel -> C codec (price_lean); every other request is a batch of one
        lean = fast.price_lean(data, self.service)
        if lean is not None:
            return lean, 1, 0
        request = _PARSE_PRICE(data)
        if type(request) is Undecodable:
            raise request.error()
        result = self.service.price(*req.product_one(request, self.service.catalogue),
                                    should_continue=self._watch(context))
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
        return reply.finish(result), rows, result.error_count

    def ImpliedVolatility(self, request, context, rid):
        model, option, market, fields = req.european_one(request, with_vol=False)
        result = self.service.implied_vol(model, option, market, request.price, fields)
        return resp.implied_vol_response(result), 1, 0

    def ImpliedVolatilityBatch(self, request, context, rid):
        model, options, market, price, rows, fields = req.european_batch(
            request, self.service.limits.max_rows, with_vol=False, price_field="price"
        )
        result = self.service.implied_vol_batch(
            model, options, market, price, rows=rows, fields=fields, threads=request.threads,
            effective_inputs=not request.omit_effective_inputs, should_continue=self._watch(context),
        )
        return resp.implied_vol_batch_response_bytes(result, request.output_encoding), rows, result.error_count

    def ServerInfo(self, request, context, rid):
        return self.info(), 1, 0

    def PriceStream(self, requests, context, rid, counter):
        # bytes in and out; a price message of the common shape, not held, never meets the
        # generated code
        book = TickingBook(self.service, self.max_stream_trades)
        for data in requests:
            counter[0] += 1
            split = _codec.split_stream_request(data)
            if split is not None and split[2] == 2 and not split[1]:
                cid, trade_id, _, a, b = split
                lean = fast.price_lean(data[a:b], self.service)
                if lean is not None:
                    yield _stream_result(cid, trade_id, lean)
                    continue
            message = _PARSE_STREAM(data)
            if type(message) is Undecodable:
                yield _stream_error("", "", message.error()).SerializeToString()
                continue
            for reply in self._stream_message(book, message):
                yield reply if type(reply) is bytes else reply.SerializeToString()

    def _stream_message(self, book: TickingBook, message):
        cid = message.correlation_id
        try:
            body = message.WhichOneof("body")
            if body == "price":
                trade = req.product_one(message.price, self.service.catalogue, prefix="price.")
                result = book.price(*trade, trade_id=message.trade_id)
                yield _stream_result(cid, message.trade_id, resp.price_response_bytes(result))
            elif body == "market_update":
                upd = message.market_update
                move = MarketMove(**{f: getattr(upd, f) for f in ("spot", "forward", "rate", "dividend_yield", "volatility") if upd.HasField(f)})
                if upd.HasField("heston"):
                    h = upd.heston
                    move = dataclasses.replace(move, heston=(h.v0, h.kappa, h.theta, h.sigma, h.rho))
                for trade_id, outcome in book.move(move, upd.trade_ids):
                    if isinstance(outcome, ServiceError):
                        yield _stream_error(cid, trade_id, outcome)
                    else:
                        yield _stream_result(cid, trade_id, resp.price_response_bytes(outcome))
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


_UNARY = ("Price", "PriceBatch", "ImpliedVolatility", "ImpliedVolatilityBatch", "ServerInfo")
_BATCH = {"PriceBatch", "ImpliedVolatilityBatch"}


def handlers(servicer: PricingServicer, observer: RpcObserver, *, echo: bool) -> list[grpc.GenericRpcHandler]:
    service = pb.DESCRIPTOR.services_by_name["PricingService"]
    methods = {}
    for method in service.methods:
        request_cls = getattr(pb, method.input_type.name)
        response_cls = getattr(pb, method.output_type.name)
        fn = getattr(servicer, method.name)
        path = f"/{SERVICE}/{method.name}"
        if method.name == "Price":
            # the front-office hot path: raw bytes both ways (see rpc/_codec.pyx)
            methods[method.name] = grpc.unary_unary_rpc_method_handler(
                wrap_unary(path, fn, observer, batch=False), request_deserializer=None, response_serializer=None
            )
        elif method.name in _BATCH:
            # columnar: read as a zero-copy view, answered with bytes written by responses
            methods[method.name] = grpc.unary_unary_rpc_method_handler(
                wrap_unary(path, fn, observer, batch=True),
                request_deserializer=safe_deserializer(request_cls, zero_copy=True),
                response_serializer=None,
            )
        elif method.name in _UNARY:
            methods[method.name] = grpc.unary_unary_rpc_method_handler(
                wrap_unary(path, fn, observer, batch=False),
                request_deserializer=safe_deserializer(request_cls),
                response_serializer=response_cls.SerializeToString,
            )
        else:
            methods[method.name] = grpc.stream_stream_rpc_method_handler(
                wrap_stream(path, fn, observer), request_deserializer=None, response_serializer=None
            )
    out = [grpc.method_handlers_generic_handler(SERVICE, methods)]
    if echo:
        out.append(
            grpc.method_handlers_generic_handler(
                ECHO_SERVICE,
                {
                    # bare floor: bytes in, the same bytes out, no parsing, no instrumentation
                    "Echo": grpc.unary_unary_rpc_method_handler(lambda request, context: request),
                    "EchoStream": grpc.stream_stream_rpc_method_handler(lambda requests, context: requests),
                },
            )
        )
    return out
