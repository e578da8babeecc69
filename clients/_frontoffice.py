"""The front-office client: one trade at a time, low latency, sync.

    >>> from pricegrid.clients import FrontOfficeClient, EuropeanOption, Market
    >>> with FrontOfficeClient(target="127.0.0.1:50051") as client:
    ...     r = client.price(
    ...         EuropeanOption(option_type="call", strike=100.0, expiry=0.5),
    ...         Market(spot=100.0, rate=0.05, dividend_yield=0.01, volatility=0.2),
    ...         measures=("delta", "gamma", "vega"),
    ...     )
    >>> r.price, r.greeks.delta

Every call carries a deadline (``timeout``, 1 s by default; per call ``timeout=``, ``None``
for none) and is retried on ``UNAVAILABLE`` by gRPC's own retry policy (``retries=``).
With ``use_stream=True`` prices travel over one long-lived ``PriceStream`` shared by all
threads instead of one unary call each. ``client.stream()`` opens a ticking session.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import queue
import threading
import time
from typing import Iterable, Iterator

import grpc

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
from ._auth import MetadataInterceptor, TokenSource, credentials_from_env
from ._errors import PricingError
from ._models import (
    EngineSettings,
    EuropeanOption,
    ImpliedVolResult,
    Market,
    MarketUpdate,
    PriceResult,
    ServerInfo,
)

_CODE = grpc.StatusCode


def _make_channel(target, credentials, options, token=None) -> grpc.Channel:
    """A channel to ``target``: TLS with ``credentials`` (None: from PRICEGRID_CA/CERT/KEY, else
    plaintext); ``token`` (a string, a TokenSource, or None: PRICEGRID_TOKEN(_FILE)) goes
    with every call as ``authorization: Bearer``, with a request id."""
    target = target or default_target()
    options = balanced(target, options)
    if credentials is None:
        credentials = credentials_from_env()
    if credentials is not None:
        channel = grpc.secure_channel(target, credentials, options=options)
    else:
        channel = grpc.insecure_channel(target, options=options)
    tokens = _token_source(token)
    return grpc.intercept_channel(channel, MetadataInterceptor(tokens)) if tokens is not None else channel


def _token_source(token) -> "TokenSource | None":
    if token is None:
        return TokenSource.from_env()
    return token if isinstance(token, TokenSource) else TokenSource(token)


class FrontOfficeClient:
    """Price single trades over gRPC (see the module docstring for an example).

    Keyword-only arguments:

    ``target``       ``"host:port"`` (default ``$PRICEGRID_TARGET`` or ``127.0.0.1:50051``);
                     any gRPC target: several replicas as ``"ipv4:10.0.0.1:50051,10.0.0.2:50051"``
                     or a DNS name with several A records (``"dns:///pricegrid.risk.svc:50051"``),
                     calls spread over them round robin (a single host:port keeps gRPC's
                     pick_first).
    ``timeout``      the deadline of every call in seconds (``None``: no deadline).
    ``use_stream``   price over one long-lived PriceStream instead of unary calls.
    ``retries``      :class:`RetryConfig`; gRPC retries calls that fail ``UNAVAILABLE``.
    ``channel``      use this ``grpc.Channel`` (e.g. :class:`pricegrid.clients.testing.FakeChannel`)
                     instead of opening one; the client then does not close it.
    ``credentials``  ``grpc.ChannelCredentials`` for a TLS channel (``tls_credentials(ca,
                     cert, key)``; default: from ``$PRICEGRID_CA``/``CERT``/``KEY``, else plaintext).
    ``token``        a bearer token (JWT) or a ``TokenSource`` (e.g. ``TokenSource(file=...)``);
                     default ``$PRICEGRID_TOKEN`` or ``$PRICEGRID_TOKEN_FILE``.
    ``options``      extra channel options, appended to (and overriding) the client's own.
    """

    def __init__(
        self,
        *,
        target: str | None = None,
        timeout: float | None = 1.0,
        use_stream: bool = False,
        retries: RetryConfig = RetryConfig(),
        channel: grpc.Channel | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        token: "str | TokenSource | None" = None,
        options: ChannelOptions = (),
    ) -> None:
        self.timeout = resolve_timeout(timeout, None)
        self.retries = retries
        self._owns_channel = channel is None
        if channel is None:
            channel = _make_channel(target, credentials, channel_options(retries, extra=options), token)
        self._channel = channel
        self._stub = pricing_pb2_grpc.PricingServiceStub(channel)
        self._mux = _StreamMux(self._stub, retries) if use_stream else None
        self._closed = False

    # ------------------------------------------------------------------ calls
    def price(
        self,
        option,
        market: Market,
        *,
        model: str = "bsm",
        measures: Iterable[str] | str = (),
        engine: str | None = None,
        settings: EngineSettings | None = None,
        timeout=USE_CLIENT_DEFAULT,
    ) -> PriceResult:
        """Price one trade; ``measures`` names the Greeks wanted besides the price
        (``("delta", "gamma", "vega", "theta", "rho", "dividend_rho", "vanna", "volga", "charm")``).

        ``option`` is any instrument: EuropeanOption, AmericanOption, BarrierOption,
        DoubleBarrierOption, DigitalOption, TouchOption, AsianOption, LookbackOption.
        ``engine`` picks the method (``"analytic"``, ``"fixed_point"``, ``"binomial_tree"``,
        ``"monte_carlo"``, ``"turnbull_wakeman"``, ``"levy"``; None: the product's default)
        and ``settings`` its EngineSettings. ``result.methods`` says how each measure was
        obtained, ``result.standard_error`` a Monte Carlo price's standard error.
        Raises :class:`PricingError`."""
        request = _convert.price_request(
            option, market, model=model, measures=measures, engine=engine, settings=settings
        )
        timeout = resolve_timeout(timeout, self.timeout)
        if self._mux is not None:
            return _convert.price_result(self._mux.call(request, timeout))
        return _convert.price_result(self._unary(self._stub.Price, request, timeout))

    def implied_vol(
        self,
        option: EuropeanOption,
        market: Market,
        price: float,
        *,
        model: str = "bsm",
        timeout=USE_CLIENT_DEFAULT,
    ) -> ImpliedVolResult:
        """The volatility at which ``model`` prices ``option`` at ``price`` (market.volatility
        is ignored). Raises :class:`PricingError`."""
        request = _convert.implied_vol_request(option, market, price, model=model)
        response = self._unary(self._stub.ImpliedVolatility, request, resolve_timeout(timeout, self.timeout))
        return _convert.implied_vol_result(response)

    def server_info(self, *, timeout=USE_CLIENT_DEFAULT) -> ServerInfo:
        """The server's version, build flags, kernel threads, limits and models."""
        response = self._unary(
            self._stub.ServerInfo, pricing_pb2.ServerInfoRequest(), resolve_timeout(timeout, self.timeout)
        )
        return _convert.server_info(response)

    def stream(self, *, timeout: float | None = None) -> "PriceStreamSession":
        """Open a ticking session: add trades by id, move the market, read re-prices.

            >>> with client.stream() as session:
            ...     session.add("T1", option, market, measures=("delta",))
            ...     session.update_market(spot=101.0)
            ...     for reply in session: ...

        ``timeout`` bounds the whole session (default: none).
        """
        self._check_open()
        return PriceStreamSession(self._stub, timeout=timeout)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the shared price stream and the channel (if the client opened it)."""
        if self._closed:
            return
        self._closed = True
        if self._mux is not None:
            self._mux.close()
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> "FrontOfficeClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the client is closed")

    def _unary(self, method, request, timeout):
        self._check_open()
        try:
            return method(request, timeout=timeout, metadata=_tracing.metadata())
        except grpc.RpcError as e:
            raise PricingError.from_rpc_error(e) from None


# ---------------------------------------------------------------------------- stream mux
class _StreamBroken(Exception):
    def __init__(self, error: PricingError) -> None:
        super().__init__(str(error))
        self.error = error


class _Connection:
    """One open PriceStream: a request queue feeding gRPC, one reader thread handing each
    reply to the caller waiting on its correlation id."""

    def __init__(self, stub) -> None:
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: dict[str, concurrent.futures.Future] = {}
        self._lock = threading.Lock()
        self.broken = False
        self.error = PricingError(_CODE.UNAVAILABLE, "the price stream is closed")
        self._call = stub.PriceStream(iter(self._requests.get, None))
        self._reader = threading.Thread(target=self._read, name="pricegrid-price-stream", daemon=True)
        self._reader.start()

    def submit(self, correlation_id: str, message) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self.broken:
                raise _StreamBroken(self.error)
            self._pending[correlation_id] = future
            # Put under the lock so that nothing is queued after close() put the sentinel.
            self._requests.put(message)
        return future

    def forget(self, correlation_id: str) -> None:
        with self._lock:
            self._pending.pop(correlation_id, None)

    def _read(self) -> None:
        try:
            for response in self._call:
                with self._lock:
                    future = self._pending.pop(response.correlation_id, None)
                if future is not None:
                    future.set_result(response)
        except grpc.RpcError as e:
            error = PricingError.from_rpc_error(e)
        except Exception as e:  # pragma: no cover - a bug, reported to the callers
            error = PricingError(_CODE.INTERNAL, f"price stream reader failed: {e!r}")
        else:
            error = PricingError(_CODE.UNAVAILABLE, "the server ended the price stream")
        with self._lock:
            if not self.broken:
                self.error = error
            self.broken = True
            pending, self._pending = self._pending, {}
            self._requests.put(None)  # release gRPC's request-consuming thread
        for future in pending.values():
            future.set_exception(_StreamBroken(error))

    def close(self, wait: float = 1.0) -> None:
        with self._lock:
            if not self.broken:
                self.broken = True
                self._requests.put(None)  # half-close: the server ends the stream
        self._reader.join(wait)
        if self._reader.is_alive():
            self._call.cancel()
            self._reader.join(wait)


#: stream failures that another stream would meet again: not worth a reconnect
_FINAL_CODES = frozenset(
    {
        _CODE.UNIMPLEMENTED,
        _CODE.PERMISSION_DENIED,
        _CODE.UNAUTHENTICATED,
        _CODE.INVALID_ARGUMENT,
        _CODE.FAILED_PRECONDITION,
    }
)


class _StreamMux:
    """Prices over one shared PriceStream for every thread of a client, reconnecting when
    the stream breaks. A price is idempotent, so a call caught in a broken stream is sent
    again on a new one while its deadline and ``retries.max_attempts`` allow."""

    def __init__(self, stub, retries: RetryConfig) -> None:
        self._stub = stub
        self._retries = retries
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._connection: _Connection | None = None
        self._closed = False

    def _open(self) -> _Connection:
        with self._lock:
            if self._closed:
                raise PricingError(_CODE.CANCELLED, "the client is closed")
            if self._connection is None or self._connection.broken:
                self._connection = _Connection(self._stub)
            return self._connection

    def call(self, request: pricing_pb2.PriceRequest, timeout: float | None) -> pricing_pb2.PriceResponse:
        deadline = None if timeout is None else time.monotonic() + timeout
        attempt = 0
        while True:
            attempt += 1
            connection = self._open()
            correlation_id = str(next(self._ids))
            try:
                future = connection.submit(
                    correlation_id, pricing_pb2.PriceStreamRequest(correlation_id=correlation_id, price=request)
                )
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                response = future.result(remaining)
            except concurrent.futures.TimeoutError:
                connection.forget(correlation_id)
                raise PricingError(_CODE.DEADLINE_EXCEEDED, "deadline exceeded waiting for the stream reply") from None
            except _StreamBroken as broken:
                retryable = broken.error.code not in _FINAL_CODES
                in_time = deadline is None or time.monotonic() < deadline
                if retryable and in_time and attempt < self._retries.max_attempts:
                    time.sleep(min(self._retries.initial_backoff * (attempt - 1), self._retries.max_backoff))
                    continue
                raise broken.error from None
            if response.HasField("error"):
                raise PricingError.from_error_message(response.error)
            return response.result

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


# ---------------------------------------------------------------------------- ticking
class _End:
    __slots__ = ("error",)

    def __init__(self, error: PricingError | None) -> None:
        self.error = error


class PriceStreamSession:
    """A ticking PriceStream: trades held by ``trade_id`` on the server, re-priced on every
    market update. Made by :meth:`FrontOfficeClient.stream`.

    Each sending method returns the message's correlation id; replies arrive in order of
    the server's answers as :class:`StreamReply` (``correlation_id``, ``trade_id`` and
    ``result`` or ``error``). A failed message never ends the stream.

        >>> with client.stream() as s:
        ...     s.add("T1", EuropeanOption(option_type="call", strike=100.0, expiry=0.5),
        ...           Market(spot=100.0, rate=0.05, volatility=0.2), measures=("delta",))
        ...     s.receive(timeout=1.0).result.price
        ...     s.update_market(spot=101.0)          # every trade held re-prices
        ...     s.update_market(volatility=0.25, trade_ids=["T1"])
        ...     s.done_sending()
        ...     for reply in s: print(reply.trade_id, reply.result.price)
    """

    def __init__(self, stub, *, timeout: float | None = None) -> None:
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._replies: queue.SimpleQueue = queue.SimpleQueue()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._sending = True
        self._ended: _End | None = None
        self._call = stub.PriceStream(iter(self._requests.get, None), timeout=timeout, metadata=_tracing.metadata())
        self._reader = threading.Thread(target=self._read, name="pricegrid-ticking-stream", daemon=True)
        self._reader.start()

    # ------------------------------------------------------------------ sending
    def add(
        self,
        trade_id: str,
        option: EuropeanOption,
        market: Market,
        *,
        model: str = "bsm",
        measures: Iterable[str] | str = (),
        engine: str | None = None,
        settings: EngineSettings | None = None,
        correlation_id: str | None = None,
    ) -> str:
        """Price ``option`` (any instrument) now and hold it as ``trade_id`` for later market
        updates."""
        if not trade_id:
            raise ValueError("trade_id must be a non-empty string")
        request = _convert.price_request(option, market, model=model, measures=measures, engine=engine, settings=settings)
        return self._send(pricing_pb2.PriceStreamRequest(price=request, trade_id=str(trade_id)), correlation_id)

    def replace(self, trade_id: str, option: EuropeanOption, market: Market, **kwargs) -> str:
        """Replace the trade held as ``trade_id`` (same arguments as :meth:`add`)."""
        return self.add(trade_id, option, market, **kwargs)

    def price(
        self,
        option: EuropeanOption,
        market: Market,
        *,
        model: str = "bsm",
        measures: Iterable[str] | str = (),
        engine: str | None = None,
        settings: EngineSettings | None = None,
        correlation_id: str | None = None,
    ) -> str:
        """Price ``option`` (any instrument) once, without holding it."""
        request = _convert.price_request(option, market, model=model, measures=measures, engine=engine, settings=settings)
        return self._send(pricing_pb2.PriceStreamRequest(price=request), correlation_id)

    def update_market(
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
        """Move the market of the trades held (all, or ``trade_ids``); only the fields given
        change. The server replies once per trade moved."""
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

    def _send(self, message: pricing_pb2.PriceStreamRequest, correlation_id: str | None) -> str:
        message.correlation_id = correlation_id or str(next(self._ids))
        with self._lock:
            if not self._sending:
                raise RuntimeError("this stream session no longer sends (done_sending/close was called)")
            if self._ended is not None and self._ended.error is not None:
                raise self._ended.error
            self._requests.put(message)
        return message.correlation_id

    def done_sending(self) -> None:
        """Half-close: the server answers what was sent, then ends the stream (iteration
        then stops)."""
        with self._lock:
            if self._sending:
                self._sending = False
                self._requests.put(None)

    # ------------------------------------------------------------------ receiving
    def _read(self) -> None:
        error = None
        try:
            for response in self._call:
                self._replies.put(_convert.stream_reply(response))
        except grpc.RpcError as e:
            if e.code() != _CODE.CANCELLED or self._sending:
                error = PricingError.from_rpc_error(e)
        except Exception as e:  # pragma: no cover - a bug, reported to the reader
            error = PricingError(_CODE.INTERNAL, f"stream reader failed: {e!r}")
        with self._lock:
            if self._sending:
                self._sending = False
                self._requests.put(None)
        self._replies.put(_End(error))

    def receive(self, timeout: float | None = None) -> _convert.StreamReply | None:
        """The next reply; ``None`` once the stream has ended. Raises ``TimeoutError`` when
        none arrives within ``timeout`` seconds and :class:`PricingError` when the stream
        failed."""
        if self._ended is not None:
            return self._finish()
        try:
            item = self._replies.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no stream reply within {timeout} s") from None
        if isinstance(item, _End):
            self._ended = item
            return self._finish()
        return item

    def _finish(self) -> None:
        assert self._ended is not None
        if self._ended.error is not None:
            raise self._ended.error
        return None

    def __iter__(self) -> Iterator[_convert.StreamReply]:
        while True:
            reply = self.receive()
            if reply is None:
                return
            yield reply

    # ------------------------------------------------------------------ lifecycle
    def close(self, wait: float = 1.0) -> None:
        """Stop sending and end the stream: the server gets ``wait`` seconds to finish (the
        replies are then dropped unless read), after which the stream is cancelled."""
        with self._lock:
            was_sending, self._sending = self._sending, False
            if was_sending:
                self._requests.put(None)
        self._reader.join(wait)
        if self._reader.is_alive():
            self._call.cancel()
            self._reader.join(5.0)

    def __enter__(self) -> "PriceStreamSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
