"""The front-office client on ``grpc.aio``: the same API as :class:`FrontOfficeClient`, with
``async`` methods.

    >>> async with AsyncFrontOfficeClient(target="127.0.0.1:50051") as client:
    ...     r = await client.price(option, market, measures=("delta",))
    ...     async with client.stream() as session:
    ...         await session.add("T1", option, market)
    ...         reply = await session.receive(timeout=1.0)

The channel is opened on first use, in the event loop that uses it.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import AsyncIterator, Iterable

import grpc
import grpc.aio

from pricegrid.v1 import pricing_pb2, pricing_pb2_grpc

from . import _convert, _tracing
from ._config import (
    USE_CLIENT_DEFAULT,
    ChannelOptions,
    RetryConfig,
    balanced,
    channel_options,
    default_target,
    resolve_timeout,
)
from ._auth import AioMetadataInterceptor, TokenSource, credentials_from_env
from ._errors import PricingError
from ._frontoffice import _FINAL_CODES, _End
from ._models import EuropeanOption, ImpliedVolResult, Market, MarketUpdate, PriceResult, ServerInfo

_CODE = grpc.StatusCode


def aio_channel(target: str, credentials, options, token) -> grpc.aio.Channel:
    """A grpc.aio channel to ``target`` (in the running loop): TLS with ``credentials`` (None:
    from PRICEGRID_CA/CERT/KEY, else plaintext); ``token`` (None: PRICEGRID_TOKEN(_FILE)) with
    every call, with a request id."""
    credentials = credentials if credentials is not None else credentials_from_env()
    tokens = TokenSource.from_env() if token is None else (
        token if isinstance(token, TokenSource) else TokenSource(token))
    interceptors = AioMetadataInterceptor(tokens) if tokens is not None else None
    if credentials is not None:
        return grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)
    return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)


class AsyncFrontOfficeClient:
    """Price single trades over ``grpc.aio``. Arguments as for :class:`FrontOfficeClient`;
    ``channel`` must then be a ``grpc.aio.Channel``."""

    def __init__(
        self,
        *,
        target: str | None = None,
        timeout: float | None = 1.0,
        use_stream: bool = False,
        retries: RetryConfig = RetryConfig(),
        channel: grpc.aio.Channel | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        token=None,
        options: ChannelOptions = (),
    ) -> None:
        self.timeout = resolve_timeout(timeout, None)
        self.retries = retries
        self._target = target or default_target()
        self._credentials = credentials
        self._token = token
        self._options = balanced(self._target, channel_options(retries, extra=options))
        self._owns_channel = channel is None
        self._channel = channel
        self._stub = pricing_pb2_grpc.PricingServiceStub(channel) if channel is not None else None
        self._use_stream = use_stream
        self._mux: _AsyncStreamMux | None = None
        self._closed = False

    def _stub_now(self):
        if self._closed:
            raise RuntimeError("the client is closed")
        if self._stub is None:
            self._channel = aio_channel(self._target, self._credentials, self._options, self._token)
            self._stub = pricing_pb2_grpc.PricingServiceStub(self._channel)
        return self._stub

    async def price(
        self,
        option: EuropeanOption,
        market: Market,
        *,
        model: str = "bsm",
        measures: Iterable[str] | str = (),
        engine: str | None = None,
        settings=None,
        timeout=USE_CLIENT_DEFAULT,
    ) -> PriceResult:
        """Price one trade of any instrument (see :meth:`FrontOfficeClient.price`)."""
        request = _convert.price_request(option, market, model=model, measures=measures, engine=engine, settings=settings)
        timeout = resolve_timeout(timeout, self.timeout)
        stub = self._stub_now()
        if self._use_stream:
            if self._mux is None:
                self._mux = _AsyncStreamMux(stub, self.retries)
            return _convert.price_result(await self._mux.call(request, timeout))
        return _convert.price_result(await self._unary(stub.Price, request, timeout))

    async def implied_vol(
        self,
        option: EuropeanOption,
        market: Market,
        price: float,
        *,
        model: str = "bsm",
        timeout=USE_CLIENT_DEFAULT,
    ) -> ImpliedVolResult:
        """Implied volatility of one trade (see :meth:`FrontOfficeClient.implied_vol`)."""
        request = _convert.implied_vol_request(option, market, price, model=model)
        stub = self._stub_now()
        response = await self._unary(stub.ImpliedVolatility, request, resolve_timeout(timeout, self.timeout))
        return _convert.implied_vol_result(response)

    async def server_info(self, *, timeout=USE_CLIENT_DEFAULT) -> ServerInfo:
        stub = self._stub_now()
        response = await self._unary(
            stub.ServerInfo, pricing_pb2.ServerInfoRequest(), resolve_timeout(timeout, self.timeout)
        )
        return _convert.server_info(response)

    def stream(self, *, timeout: float | None = None) -> "AsyncPriceStreamSession":
        """Open a ticking session (see :meth:`FrontOfficeClient.stream`); call it inside the
        event loop."""
        return AsyncPriceStreamSession(self._stub_now(), timeout=timeout)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._mux is not None:
            await self._mux.close()
        if self._owns_channel and self._channel is not None:
            await self._channel.close()

    async def __aenter__(self) -> "AsyncFrontOfficeClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @staticmethod
    async def _unary(method, request, timeout):
        try:
            return await method(request, timeout=timeout, metadata=_tracing.metadata())
        except grpc.RpcError as e:
            raise PricingError.from_rpc_error(e) from None


# ---------------------------------------------------------------------------- stream mux
class _AsyncConnection:
    def __init__(self, stub) -> None:
        self._requests: asyncio.Queue = asyncio.Queue()
        self._pending: dict[str, asyncio.Future] = {}
        self.broken = False
        self.error = PricingError(_CODE.UNAVAILABLE, "the price stream is closed")
        self._call = stub.PriceStream(self._request_iterator())
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _request_iterator(self):
        while True:
            item = await self._requests.get()
            if item is None:
                return
            yield item

    def submit(self, correlation_id: str, message) -> asyncio.Future:
        if self.broken:
            raise _Broken(self.error)
        future = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        self._requests.put_nowait(message)
        return future

    def forget(self, correlation_id: str) -> None:
        self._pending.pop(correlation_id, None)

    async def _read(self) -> None:
        try:
            async for response in self._call:
                future = self._pending.pop(response.correlation_id, None)
                if future is not None and not future.done():
                    future.set_result(response)
        except grpc.RpcError as e:
            error = PricingError.from_rpc_error(e)
        except asyncio.CancelledError:
            error = PricingError(_CODE.CANCELLED, "the price stream was closed")
        else:
            error = PricingError(_CODE.UNAVAILABLE, "the server ended the price stream")
        if not self.broken:
            self.error = error
        self.broken = True
        self._requests.put_nowait(None)
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(_Broken(error))

    async def close(self, wait: float = 1.0) -> None:
        if not self.broken:
            self.broken = True
            self._requests.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), wait)
        except (asyncio.TimeoutError, Exception):
            self._call.cancel()
            self._reader.cancel()
            try:
                await self._reader
            except BaseException:
                pass


class _Broken(Exception):
    def __init__(self, error: PricingError) -> None:
        super().__init__(str(error))
        self.error = error


class _AsyncStreamMux:
    def __init__(self, stub, retries: RetryConfig) -> None:
        self._stub = stub
        self._retries = retries
        self._ids = itertools.count(1)
        self._connection: _AsyncConnection | None = None
        self._closed = False

    def _open(self) -> _AsyncConnection:
        if self._closed:
            raise PricingError(_CODE.CANCELLED, "the client is closed")
        if self._connection is None or self._connection.broken:
            self._connection = _AsyncConnection(self._stub)
        return self._connection

    async def call(self, request, timeout: float | None):
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        attempt = 0
        while True:
            attempt += 1
            connection = self._open()
            correlation_id = str(next(self._ids))
            try:
                future = connection.submit(
                    correlation_id, pricing_pb2.PriceStreamRequest(correlation_id=correlation_id, price=request)
                )
                remaining = None if deadline is None else max(0.0, deadline - loop.time())
                response = await asyncio.wait_for(future, remaining)
            except asyncio.TimeoutError:
                connection.forget(correlation_id)
                raise PricingError(_CODE.DEADLINE_EXCEEDED, "deadline exceeded waiting for the stream reply") from None
            except _Broken as broken:
                retryable = broken.error.code not in _FINAL_CODES
                in_time = deadline is None or loop.time() < deadline
                if retryable and in_time and attempt < self._retries.max_attempts:
                    await asyncio.sleep(min(self._retries.initial_backoff * (attempt - 1), self._retries.max_backoff))
                    continue
                raise broken.error from None
            if response.HasField("error"):
                raise PricingError.from_error_message(response.error)
            return response.result

    async def close(self) -> None:
        self._closed = True
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()


# ---------------------------------------------------------------------------- ticking
class AsyncPriceStreamSession:
    """A ticking PriceStream on ``grpc.aio``; the API of :class:`PriceStreamSession` with
    ``async`` methods and ``async for``."""

    def __init__(self, stub, *, timeout: float | None = None) -> None:
        self._requests: asyncio.Queue = asyncio.Queue()
        self._replies: asyncio.Queue = asyncio.Queue()
        self._ids = itertools.count(1)
        self._sending = True
        self._ended: _End | None = None
        self._call = stub.PriceStream(self._request_iterator(), timeout=timeout, metadata=_tracing.metadata())
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _request_iterator(self):
        while True:
            item = await self._requests.get()
            if item is None:
                return
            yield item

    async def add(
        self,
        trade_id: str,
        option: EuropeanOption,
        market: Market,
        *,
        model: str = "bsm",
        measures: Iterable[str] | str = (),
        engine: str | None = None,
        settings=None,
        correlation_id: str | None = None,
    ) -> str:
        if not trade_id:
            raise ValueError("trade_id must be a non-empty string")
        request = _convert.price_request(option, market, model=model, measures=measures, engine=engine, settings=settings)
        return self._send(pricing_pb2.PriceStreamRequest(price=request, trade_id=str(trade_id)), correlation_id)

    async def replace(self, trade_id: str, option: EuropeanOption, market: Market, **kwargs) -> str:
        return await self.add(trade_id, option, market, **kwargs)

    async def price(
        self,
        option: EuropeanOption,
        market: Market,
        *,
        model: str = "bsm",
        measures: Iterable[str] | str = (),
        engine: str | None = None,
        settings=None,
        correlation_id: str | None = None,
    ) -> str:
        request = _convert.price_request(option, market, model=model, measures=measures, engine=engine, settings=settings)
        return self._send(pricing_pb2.PriceStreamRequest(price=request), correlation_id)

    async def update_market(
        self,
        update: MarketUpdate | None = None,
        /,
        *,
        spot: float | None = None,
        forward: float | None = None,
        rate: float | None = None,
        dividend_yield: float | None = None,
        volatility: float | None = None,
        trade_ids: Iterable[str] = (),
        correlation_id: str | None = None,
    ) -> str:
        if update is None:
            update = MarketUpdate(
                spot=spot,
                forward=forward,
                rate=rate,
                dividend_yield=dividend_yield,
                volatility=volatility,
                trade_ids=tuple(trade_ids),
            )
        message = pricing_pb2.PriceStreamRequest(market_update=_convert.market_update_message(update))
        return self._send(message, correlation_id)

    def _send(self, message, correlation_id: str | None) -> str:
        message.correlation_id = correlation_id or str(next(self._ids))
        if not self._sending:
            raise RuntimeError("this stream session no longer sends (done_sending/close was called)")
        if self._ended is not None and self._ended.error is not None:
            raise self._ended.error
        self._requests.put_nowait(message)
        return message.correlation_id

    async def done_sending(self) -> None:
        if self._sending:
            self._sending = False
            self._requests.put_nowait(None)

    async def _read(self) -> None:
        error = None
        try:
            async for response in self._call:
                self._replies.put_nowait(_convert.stream_reply(response))
        except grpc.RpcError as e:
            if e.code() != _CODE.CANCELLED or self._sending:
                error = PricingError.from_rpc_error(e)
        except asyncio.CancelledError:
            pass
        if self._sending:
            self._sending = False
            self._requests.put_nowait(None)
        self._replies.put_nowait(_End(error))

    async def receive(self, timeout: float | None = None) -> _convert.StreamReply | None:
        if self._ended is None:
            try:
                item = await asyncio.wait_for(self._replies.get(), timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"no stream reply within {timeout} s") from None
            if not isinstance(item, _End):
                return item
            self._ended = item
        if self._ended.error is not None:
            raise self._ended.error
        return None

    async def __aiter__(self) -> AsyncIterator[_convert.StreamReply]:
        while True:
            reply = await self.receive()
            if reply is None:
                return
            yield reply

    async def close(self, wait: float = 1.0) -> None:
        """Stop sending and end the stream: the server gets ``wait`` seconds to finish,
        after which the stream is cancelled."""
        if self._sending:
            self._sending = False
            self._requests.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), wait)
            return
        except asyncio.TimeoutError:
            pass
        self._call.cancel()
        try:
            await asyncio.wait_for(self._reader, 5.0)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            pass

    async def __aenter__(self) -> "AsyncPriceStreamSession":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
