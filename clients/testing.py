"""A fake transport for your tests: run code that uses the pricegrid clients without a server.

In the manner of ``httpx.MockTransport``: give :class:`FakeChannel` a handler per method,
written like a gRPC servicer method (``request, context -> response``; streams take and
return iterators), and pass it as ``channel=``::

    from pricegrid.clients import EuropeanOption, FrontOfficeClient, Market
    from pricegrid.clients.testing import FakeChannel, bad_request
    from pricegrid.v1 import pricing_pb2

    def price(request, context):
        if request.european.strike <= 0:
            context.abort_with_status(bad_request("strike must be > 0", [("european.strike", "must be > 0")]))
        return pricing_pb2.PriceResponse(price=10.45)

    channel = FakeChannel(handlers={"Price": price})
    client = FrontOfficeClient(channel=channel)
    assert client.price(EuropeanOption(option_type="call", strike=100, expiry=1.0),
                        Market(spot=100, volatility=0.2)).price == 10.45
    assert channel.requests[0].method == "/pricegrid.v1.PricingService/Price"

Handlers are keyed by method name (``"Price"``) or full path
(``"/pricegrid.v1.PricingService/Price"``). Requests really go through the clients'
serializers: a handler receives the parsed request message of the method's contract type
(raw ``bytes`` where the caller sent bytes, as for ``EchoService``) and may return a message
or ``bytes``. A method without a handler fails ``UNIMPLEMENTED``, as on a real server.
:class:`FakeAioChannel` takes the same handlers for :class:`AsyncFrontOfficeClient`.
``context.abort(code, details)``, ``context.abort_with_status(status)`` and
``context.set_code``/``set_details`` behave as in gRPC; any other exception in a handler
fails the call ``UNKNOWN``.

Ready-made handlers fake the batch and risk methods from your numbers:
:func:`batch_handler` (``PriceBatch``: measures computed from the request's columns, chunked
batches included) and :func:`scenario_handler` (``RunScenarioRisk``: your cube streamed with
its aggregates)::

    channel = FakeChannel(handlers={"PriceBatch": batch_handler(lambda c: {"price": 0.1 * c["strike"]})})
    with RiskClient(channel=channel, chunk_rows=1000) as risk:
        r = risk.price_batch(model="bsm", option_type="call", strike=strikes, time_to_expiry=1.0,
                             spot=100.0, volatility=0.2)
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import grpc
import grpc.aio
from google.protobuf import descriptor_pool, message_factory

from pricegrid.v1 import echo_pb2, pricing_pb2  # noqa: F401  (register the contract's types)

__all__ = ["FakeAioChannel", "FakeChannel", "FakeContext", "FakeRpcError", "RecordedRequest", "bad_request",
           "batch_handler", "scenario_handler", "servicer_handlers"]

_DETAILS_KEY = "grpc-status-details-bin"


def bad_request(
    message: str,
    field_violations: list[tuple[str, str]] = (),
    *,
    code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT,
) -> grpc.Status:
    """A rich status with ``google.rpc.BadRequest`` field violations, as the pricegrid server
    sends, for ``context.abort_with_status(...)``."""
    from google.rpc import error_details_pb2, status_pb2
    from grpc_status import rpc_status

    detail = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in field_violations
        ]
    )
    status = status_pb2.Status(code=code.value[0], message=message)
    status.details.add().Pack(detail)
    return rpc_status.to_status(status)


def servicer_handlers(servicer: Any) -> dict[str, Callable]:
    """Handlers from an object with servicer methods (e.g. a subclass of
    ``pricing_pb2_grpc.PricingServiceServicer``): every public method named after an RPC of
    the pricegrid.v1 services it defines."""
    pool = descriptor_pool.Default()
    names: set[str] = set()
    for service in ("pricegrid.v1.PricingService", "pricegrid.v1.EchoService"):
        names.update(m.name for m in pool.FindServiceByName(service).methods)
    return {name: getattr(servicer, name) for name in names if callable(getattr(servicer, name, None))}


# ---------------------------------------------------------------------------- errors
class FakeRpcError(grpc.RpcError, grpc.Call):
    """A failed call, shaped like gRPC's own (``code()``, ``details()``,
    ``trailing_metadata()``), so ``grpc_status.rpc_status.from_call`` reads it."""

    def __init__(self, code: grpc.StatusCode, details: str = "", trailing_metadata=()) -> None:
        super().__init__(f"{code.name}: {details}")
        self._code = code
        self._details = details
        self._trailing = tuple(trailing_metadata or ())

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self):
        return self._trailing

    def initial_metadata(self):
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self):
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback) -> bool:
        return False

    def __repr__(self) -> str:
        return f"FakeRpcError({self._code!r}, {self._details!r})"


class _Abort(Exception):
    def __init__(self, code, details, trailing) -> None:
        super().__init__(details)
        self.code, self.details, self.trailing = code, details, trailing


class FakeContext:
    """The servicer context a handler receives (the parts of ``grpc.ServicerContext`` a
    handler needs)."""

    def __init__(self, metadata, timeout: float | None) -> None:
        self._metadata = tuple(metadata or ())
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._code = grpc.StatusCode.OK
        self._details = ""
        self._trailing: tuple = ()
        self._callbacks: list[Callable] = []
        self.cancelled = False

    def abort(self, code: grpc.StatusCode, details: str = ""):
        raise _Abort(code, details, self._trailing)

    def abort_with_status(self, status: grpc.Status):
        raise _Abort(status.code, status.details, tuple(status.trailing_metadata or ()) + self._trailing)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def set_trailing_metadata(self, metadata) -> None:
        self._trailing = tuple(metadata)

    def invocation_metadata(self):
        return self._metadata

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def is_active(self) -> bool:
        return not self.cancelled and (self._deadline is None or time.monotonic() < self._deadline)

    def add_callback(self, callback: Callable) -> bool:
        self._callbacks.append(callback)
        return True

    def peer(self) -> str:
        return "fake:0"

    def _finish(self) -> None:
        for callback in self._callbacks:
            callback()


@dataclass(frozen=True)
class RecordedRequest:
    """One request message the fake channel carried (``request`` as the handler saw it)."""

    method: str
    request: Any
    metadata: tuple = ()
    timeout: float | None = None


# ---------------------------------------------------------------------------- channel
class FakeChannel(grpc.Channel):
    """A ``grpc.Channel`` that answers from in-process handlers (see the module docstring).

    ``requests`` lists every request message carried, in order; ``calls`` counts calls per
    method path.
    """

    def __init__(self, handlers: Mapping[str, Callable] | None = None) -> None:
        self.handlers = dict(handlers or {})
        self.requests: list[RecordedRequest] = []
        self.calls: dict[str, int] = {}
        self.closed = False
        self._lock = threading.Lock()

    # -------------------------------------------------------------- grpc.Channel
    def unary_unary(self, method, request_serializer=None, response_deserializer=None, _registered_method=False):
        return _UnaryUnary(self, method, request_serializer, response_deserializer)

    def unary_stream(self, method, request_serializer=None, response_deserializer=None, _registered_method=False):
        return _UnaryStream(self, method, request_serializer, response_deserializer)

    def stream_unary(self, method, request_serializer=None, response_deserializer=None, _registered_method=False):
        return _StreamUnary(self, method, request_serializer, response_deserializer)

    def stream_stream(self, method, request_serializer=None, response_deserializer=None, _registered_method=False):
        return _StreamStream(self, method, request_serializer, response_deserializer)

    def subscribe(self, callback, try_to_connect=False) -> None:
        callback(grpc.ChannelConnectivity.READY)

    def unsubscribe(self, callback) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> "FakeChannel":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    # -------------------------------------------------------------- plumbing
    def _handler(self, path: str) -> Callable:
        if self.closed:
            raise ValueError("Cannot invoke RPC on closed channel!")
        with self._lock:
            self.calls[path] = self.calls.get(path, 0) + 1
        handler = self.handlers.get(path) or self.handlers.get(path.rsplit("/", 1)[-1])
        if handler is None:
            raise FakeRpcError(grpc.StatusCode.UNIMPLEMENTED, f"Method not found: {path}")
        return handler

    def _incoming(self, path: str, request, serializer, metadata, timeout):
        """What the handler sees: the request through the wire format and back."""
        if serializer is None:
            carried = request
        else:
            data = serializer(request)
            cls = _message_class(path, "input")
            carried = cls.FromString(data) if cls is not None else request
        self.requests.append(RecordedRequest(path, carried, tuple(metadata or ()), timeout))
        return carried


def _message_class(path: str, which: str):
    try:
        service, method = path.lstrip("/").rsplit("/", 1)
        descriptor = descriptor_pool.Default().FindServiceByName(service).FindMethodByName(method)
    except (KeyError, ValueError):
        return None
    return message_factory.GetMessageClass(descriptor.input_type if which == "input" else descriptor.output_type)


def _outgoing(response, deserializer):
    data = response if isinstance(response, (bytes, bytearray)) else response.SerializeToString()
    return deserializer(bytes(data)) if deserializer is not None else bytes(data)


def _fail(error: BaseException, context: FakeContext | None = None) -> FakeRpcError:
    if isinstance(error, FakeRpcError):
        return error
    if isinstance(error, _Abort):
        return FakeRpcError(error.code, error.details, error.trailing)
    # As gRPC's server does: a code and details the handler set win over UNKNOWN.
    code, details, trailing = grpc.StatusCode.UNKNOWN, f"Exception calling application: {error!r}", ()
    if context is not None and context._code != grpc.StatusCode.OK:
        code, details, trailing = context._code, context._details or details, context._trailing
    return FakeRpcError(code, details, trailing)


def _check(context: FakeContext) -> None:
    if context._code != grpc.StatusCode.OK:
        raise FakeRpcError(context._code, context._details, context._trailing)


class _Callable:
    def __init__(self, channel: FakeChannel, method: str, serializer, deserializer) -> None:
        self._channel = channel
        self._method = method
        self._serializer = serializer
        self._deserializer = deserializer


class _UnaryUnary(_Callable):
    def _invoke(self, request, timeout, metadata):
        handler = self._channel._handler(self._method)
        carried = self._channel._incoming(self._method, request, self._serializer, metadata, timeout)
        context = FakeContext(metadata, timeout)
        try:
            response = handler(carried, context)
            _check(context)
            return _outgoing(response, self._deserializer)
        except Exception as e:
            raise _fail(e, context) from None
        finally:
            context._finish()

    def __call__(self, request, timeout=None, metadata=None, credentials=None, wait_for_ready=None, compression=None):
        return self._invoke(request, timeout, metadata)

    def with_call(self, request, timeout=None, metadata=None, credentials=None, wait_for_ready=None, compression=None):
        return self._invoke(request, timeout, metadata), _DoneCall()

    def future(self, request, timeout=None, metadata=None, credentials=None, wait_for_ready=None, compression=None):
        try:
            return _DoneFuture(result=self._invoke(request, timeout, metadata))
        except FakeRpcError as e:
            return _DoneFuture(error=e)


class _StreamUnary(_Callable):
    def _invoke(self, request_iterator, timeout, metadata):
        handler = self._channel._handler(self._method)
        context = FakeContext(metadata, timeout)
        requests = (
            self._channel._incoming(self._method, r, self._serializer, metadata, timeout) for r in request_iterator
        )
        try:
            response = handler(requests, context)
            _check(context)
            return _outgoing(response, self._deserializer)
        except Exception as e:
            raise _fail(e, context) from None
        finally:
            context._finish()

    def __call__(self, request_iterator, timeout=None, metadata=None, credentials=None, wait_for_ready=None, compression=None):
        return self._invoke(request_iterator, timeout, metadata)

    def with_call(self, request_iterator, timeout=None, metadata=None, credentials=None, wait_for_ready=None, compression=None):
        return self._invoke(request_iterator, timeout, metadata), _DoneCall()

    def future(self, request_iterator, timeout=None, metadata=None, credentials=None, wait_for_ready=None, compression=None):
        try:
            return _DoneFuture(result=self._invoke(request_iterator, timeout, metadata))
        except FakeRpcError as e:
            return _DoneFuture(error=e)


def _stream_handler(channel: FakeChannel, method: str) -> Callable:
    """The handler, or one that fails as the missing method would (when the call is read)."""
    try:
        return channel._handler(method)
    except FakeRpcError as e:
        error = e  # `e` is unbound when the except block ends

        def missing(requests, context):
            raise error

        return missing


class _UnaryStream(_Callable):
    def __call__(self, request, timeout=None, metadata=None, credentials=None, wait_for_ready=None, compression=None):
        channel = self._channel
        handler = _stream_handler(channel, self._method)

        def requests():
            yield channel._incoming(self._method, request, self._serializer, metadata, timeout)

        return _StreamCall(lambda it, ctx: handler(next(it), ctx), requests(), self._deserializer, metadata, timeout)


class _StreamStream(_Callable):
    def __call__(self, request_iterator, timeout=None, metadata=None, credentials=None, wait_for_ready=None, compression=None):
        channel = self._channel
        handler = _stream_handler(channel, self._method)
        requests = (channel._incoming(self._method, r, self._serializer, metadata, timeout) for r in request_iterator)
        return _StreamCall(handler, requests, self._deserializer, metadata, timeout)


class _StreamCall(grpc.RpcError, grpc.Call):
    """A response-streaming call: the handler runs on its own thread, as on a server, so a
    client may interleave writes and reads."""

    _END = object()

    def __init__(self, handler, requests: Iterator, deserializer, metadata, timeout) -> None:
        self._out: queue.SimpleQueue = queue.SimpleQueue()
        self._deserializer = deserializer
        self._context = FakeContext(metadata, timeout)
        self._code: grpc.StatusCode | None = None
        self._error: FakeRpcError | None = None
        self._lock = threading.Lock()
        self._callbacks: list[Callable] = []
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._thread = threading.Thread(target=self._serve, args=(handler, requests), daemon=True)
        self._thread.start()

    def _serve(self, handler, requests) -> None:
        try:
            for response in handler(requests, self._context):
                if self._context.cancelled:
                    return
                self._out.put(_outgoing(response, self._deserializer))
            _check(self._context)
            self._out.put(self._END)
        except Exception as e:
            self._out.put(_fail(e, self._context))
        finally:
            self._context._finish()

    def __iter__(self):
        return self

    def __next__(self):
        if self._code is not None:
            if self._error is not None:
                raise self._error
            raise StopIteration
        remaining = None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
        try:
            item = self._out.get(timeout=remaining)
        except queue.Empty:
            item = FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
            self._context.cancelled = True
        if isinstance(item, FakeRpcError):
            self._terminate(item.code(), item)
            raise item
        if item is self._END:
            self._terminate(grpc.StatusCode.OK, None)
            raise StopIteration
        return item

    def _terminate(self, code, error) -> None:
        with self._lock:
            if self._code is not None:
                return
            self._code, self._error = code, error
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def cancel(self) -> bool:
        if self._code is not None:
            return False
        self._context.cancelled = True
        self._out.put(FakeRpcError(grpc.StatusCode.CANCELLED, "Locally cancelled by application!"))
        return True

    # grpc.Call
    def code(self):
        return self._code

    def details(self):
        return self._error.details() if self._error else ""

    def trailing_metadata(self):
        return self._error.trailing_metadata() if self._error else ()

    def initial_metadata(self):
        return ()

    def is_active(self) -> bool:
        return self._code is None

    def time_remaining(self):
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def add_callback(self, callback) -> bool:
        with self._lock:
            if self._code is not None:
                return False
            self._callbacks.append(callback)
            return True


class _DoneCall(grpc.Call):
    def code(self):
        return grpc.StatusCode.OK

    def details(self):
        return ""

    def trailing_metadata(self):
        return ()

    def initial_metadata(self):
        return ()

    def is_active(self):
        return False

    def time_remaining(self):
        return None

    def cancel(self):
        return False

    def add_callback(self, callback):
        return False


class _DoneFuture(grpc.Future):
    """A finished call, as ``multicallable.future()`` returns (the fake answers at once)."""

    def __init__(self, result=None, error: FakeRpcError | None = None) -> None:
        self._result = result
        self._error = error

    def cancel(self):
        return False

    def cancelled(self):
        return False

    def running(self):
        return False

    def done(self):
        return True

    def result(self, timeout=None):
        if self._error is not None:
            raise self._error
        return self._result

    def exception(self, timeout=None):
        return self._error

    def traceback(self, timeout=None):
        return None

    def add_done_callback(self, fn):
        fn(self)

    def code(self):
        return self._error.code() if self._error else grpc.StatusCode.OK

    def details(self):
        return self._error.details() if self._error else ""


# ---------------------------------------------------------------------------- grpc.aio
class FakeAioChannel(grpc.aio.Channel):
    """The ``grpc.aio`` twin of :class:`FakeChannel`, for :class:`AsyncFrontOfficeClient`;
    it takes the same (synchronous) handlers::

        client = AsyncFrontOfficeClient(channel=FakeAioChannel(handlers={"Price": price}))

    Create it inside the event loop that uses it.
    """

    def __init__(self, handlers: Mapping[str, Callable] | None = None) -> None:
        self._sync = FakeChannel(handlers)

    @property
    def handlers(self) -> dict:
        return self._sync.handlers

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._sync.requests

    @property
    def calls(self) -> dict[str, int]:
        return self._sync.calls

    @property
    def closed(self) -> bool:
        return self._sync.closed

    def unary_unary(self, method, request_serializer=None, response_deserializer=None, _registered_method=False):
        return _AioUnary(_UnaryUnary(self._sync, method, request_serializer, response_deserializer))

    def stream_unary(self, method, request_serializer=None, response_deserializer=None, _registered_method=False):
        raise NotImplementedError("FakeAioChannel serves unary-unary and stream-stream methods")

    def unary_stream(self, method, request_serializer=None, response_deserializer=None, _registered_method=False):
        raise NotImplementedError("FakeAioChannel serves unary-unary and stream-stream methods")

    def stream_stream(self, method, request_serializer=None, response_deserializer=None, _registered_method=False):
        return _AioStreamStream(self._sync, method, request_serializer, response_deserializer)

    async def close(self, grace=None) -> None:
        self._sync.close()

    def get_state(self, try_to_connect: bool = False):
        return grpc.ChannelConnectivity.READY

    async def wait_for_state_change(self, last_observed_state) -> None:
        return None

    async def channel_ready(self) -> None:
        return None

    async def __aenter__(self) -> "FakeAioChannel":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


class _AioUnary:
    def __init__(self, sync: _UnaryUnary) -> None:
        self._sync = sync

    def __call__(self, request, *, timeout=None, metadata=None, credentials=None, wait_for_ready=None, compression=None):
        async def call():
            return self._sync._invoke(request, timeout, metadata)

        return call()


class _AioStreamStream(_Callable):
    def __call__(self, request_iterator=None, *, timeout=None, metadata=None, credentials=None, wait_for_ready=None, compression=None):
        return _AioStreamCall(self._channel, self._method, self._serializer, self._deserializer, request_iterator, timeout, metadata)


class _AioStreamCall:
    """A stream-stream call on the event loop; the handler runs on a thread of its own."""

    _DONE = object()

    def __init__(self, channel: FakeChannel, method, serializer, deserializer, request_iterator, timeout, metadata) -> None:
        import asyncio

        self._loop = asyncio.get_running_loop()
        self._responses: asyncio.Queue = asyncio.Queue()
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._deserializer = deserializer
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._context = FakeContext(metadata, timeout)
        self._code: grpc.StatusCode | None = None
        self._error: FakeRpcError | None = None
        self._writer = None
        handler = _stream_handler(channel, method)
        incoming = (
            channel._incoming(method, r, serializer, metadata, timeout) for r in iter(self._requests.get, self._DONE)
        )
        threading.Thread(target=self._serve, args=(handler, incoming), daemon=True).start()
        if request_iterator is not None:
            self._writer = self._loop.create_task(self._pump(request_iterator))

    async def _pump(self, request_iterator) -> None:
        try:
            async for request in request_iterator:
                self._requests.put(request)
        finally:
            self._requests.put(self._DONE)

    def _post(self, item) -> None:
        try:
            self._loop.call_soon_threadsafe(self._responses.put_nowait, item)
        except RuntimeError:  # the loop is gone: nobody is listening
            self._context.cancelled = True

    def _serve(self, handler, requests) -> None:
        try:
            for response in handler(requests, self._context):
                if self._context.cancelled:
                    return
                self._post(_outgoing(response, self._deserializer))
            _check(self._context)
            self._post(self._DONE)
        except Exception as e:
            self._post(_fail(e, self._context))
        finally:
            self._context._finish()

    async def write(self, request) -> None:
        self._requests.put(request)

    async def done_writing(self) -> None:
        self._requests.put(self._DONE)

    async def read(self):
        import asyncio

        if self._code is not None:
            if self._error is not None:
                raise self._error
            return grpc.aio.EOF
        remaining = None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
        try:
            item = await asyncio.wait_for(self._responses.get(), remaining)
        except asyncio.TimeoutError:
            item = FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
            self._context.cancelled = True
        if isinstance(item, FakeRpcError):
            self._code, self._error = item.code(), item
            raise item
        if item is self._DONE:
            self._code = grpc.StatusCode.OK
            return grpc.aio.EOF
        return item

    async def __aiter_impl(self):
        while True:
            response = await self.read()
            if response is grpc.aio.EOF:
                return
            yield response

    def __aiter__(self):
        return self.__aiter_impl()

    def cancel(self) -> bool:
        if self._code is not None:
            return False
        self._context.cancelled = True
        self._requests.put(self._DONE)
        if self._writer is not None:
            self._writer.cancel()
        self._responses.put_nowait(FakeRpcError(grpc.StatusCode.CANCELLED, "Locally cancelled by application!"))
        return True

    def done(self) -> bool:
        return self._code is not None

    def cancelled(self) -> bool:
        return self._code == grpc.StatusCode.CANCELLED

    async def code(self):
        return self._code

    async def details(self) -> str:
        return self._error.details() if self._error else ""

    async def trailing_metadata(self):
        return self._error.trailing_metadata() if self._error else ()

    async def initial_metadata(self):
        return ()


# ---------------------------------------------------------------------------- fake servers
def _request_columns(message) -> dict:
    """The request's numeric columns (an instrument's and the market's) as arrays by name."""
    import numpy as np

    out = {}
    for field, value in message.ListFields():
        kind = field.message_type.name if field.message_type is not None else ""
        if kind == "DoubleColumn":
            out[field.name] = np.frombuffer(value.raw, "<f8") if value.raw else np.asarray(value.values, float)
        elif kind == "Int32Column":
            out[field.name] = np.frombuffer(value.raw, "<i4") if value.raw else np.asarray(value.values, np.int32)
    return out


def batch_handler(compute: Callable[[dict], Any]) -> Callable:
    """A ``PriceBatch`` handler for :class:`FakeChannel` that answers with your numbers:
    ``compute(columns)`` gets the request's columns by name (the instrument's and the
    market's: ``strike``, ``time_to_expiry``, ``spot``, ``volatility``, ``option_type`` as
    1/2, ..., each broadcast to the batch's rows) and returns ``{measure: values}`` (``"price"``,
    ``"delta"``, ... as asked; a bare array is the price). A NaN value makes its row fail
    ``OUT_OF_RANGE`` with an error, as the server does. Chunked batches work: each chunk is
    one call."""
    import numpy as np

    from pricegrid.v1 import common_pb2

    def handler(request, context):
        which = request.WhichOneof("instruments")
        columns = {**_request_columns(getattr(request, which)), **_request_columns(request.market)}
        rows = max([1, *(len(v) for v in columns.values())])
        columns = {k: np.broadcast_to(v, (rows,)) if len(v) == 1 else v for k, v in columns.items()}
        measures = list(request.measures) or [common_pb2.MEASURE_PRICE]
        values = compute(columns)
        if not isinstance(values, Mapping):
            values = {"price": values}
        reply = pricing_pb2.PriceBatchResponse(rows=rows)
        failed = np.zeros(rows, bool)
        for m in measures:
            name = common_pb2.Measure.Name(m).removeprefix("MEASURE_").lower()
            if name not in values:
                context.abort(grpc.StatusCode.UNIMPLEMENTED, f"the fake computes no {name}")
            v = np.broadcast_to(np.asarray(values[name], dtype="<f8"), (rows,))
            failed |= ~np.isfinite(v)
            reply.columns.add(measure=m).values.raw = np.ascontiguousarray(v).tobytes()
        if failed.any():
            reply.status.raw = np.where(failed, int(grpc.StatusCode.OUT_OF_RANGE.value[0]), 0).astype("<i4").tobytes()
            reply.error_count = int(failed.sum())
            for row in np.flatnonzero(failed)[:100]:
                reply.errors.add(row=int(row), code=grpc.StatusCode.OUT_OF_RANGE.value[0], field="",
                                 message="no finite value (the fake's)")
        return reply

    return handler


def scenario_handler(pnl: Callable[[list, list], Any]) -> Callable:
    """A ``RunScenarioRisk`` handler for :class:`FakeChannel`: ``pnl(trade_ids, labels)``
    returns the cube (trades x scenarios) your test wants; the handler streams it as the
    server does: a header, the blocks when the request asks for the cube, a trailer with
    the portfolio's P&L per scenario and its VaR and ES by the server's estimator (the
    ceil(n level)-th loss; Acerbi-Tasche)."""
    import numpy as np

    from pricegrid.v1 import risk_pb2

    from ._scenarios import batch_rows, tail_risk

    def handler(request, context):
        if request.HasField("portfolio"):
            n = batch_rows(request.portfolio)
            ids = list(request.trade_ids) or [str(i) for i in range(n)]
        else:
            ids = []
            for b, book in enumerate(request.books.books):
                ids += list(book.trade_ids) or [f"{b}:{r}" for r in range(batch_rows(book.trades))]
        labels = list(request.scenarios.labels)
        cube = np.asarray(pnl(ids, labels), dtype=np.float64).reshape(len(ids), len(labels))
        yield risk_pb2.RunScenarioRiskResponse(header=risk_pb2.ScenarioRiskHeader(
            trade_ids=ids, scenario_labels=labels, portfolio_trades=len(ids),
            base_values={"raw": np.zeros(len(ids), "<f8").tobytes()}))
        if request.output in (risk_pb2.SCENARIO_OUTPUT_CUBE, risk_pb2.SCENARIO_OUTPUT_BOTH):
            yield risk_pb2.RunScenarioRiskResponse(block=risk_pb2.ScenarioPnlBlock(
                trade_start=0, trade_stop=len(ids), pnl=np.ascontiguousarray(cube, "<f8").tobytes(),
                cube_type=risk_pb2.CUBE_TYPE_FLOAT64))
        total = cube.sum(axis=0)
        var, es = tail_risk(total, list(request.var_levels) or [0.99], list(request.es_levels) or [0.975])
        trailer = risk_pb2.ScenarioRiskTrailer(
            var=[risk_pb2.RiskAtLevel(level=k, value=v) for k, v in var.items()],
            expected_shortfall=[risk_pb2.RiskAtLevel(level=k, value=v) for k, v in es.items()])
        if request.output != risk_pb2.SCENARIO_OUTPUT_CUBE:
            trailer.portfolio_pnl.raw = total.astype("<f8").tobytes()
        yield risk_pb2.RunScenarioRiskResponse(trailer=trailer)

    return handler
