"""The risk client on ``grpc.aio``: scenario runs, sensitivities, parametric VaR, stored
portfolios and backtest histories, the stress catalogue, with ``async`` methods and the same
arguments and results as :class:`RiskClient`.

    >>> async with AsyncRiskClient(target="127.0.0.1:50051") as risk:
    ...     books = [risk.book("european", model="bsm", underlying_id="SPX", ...)]
    ...     r = await risk.scenario_risk(books=books, snapshot_id=sid, stresses=["covid-2020"],
    ...                                  stress_targets={"equity": ["SPX"], "equity_vol": ["SPX-*"]})

The channel is opened on first use, in the event loop that uses it. A scenario run's
messages are read as they come, so other coroutines run while the server computes.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import grpc
import grpc.aio

from pricegrid.v1 import risk_pb2, risk_pb2_grpc

from . import _backtest, _scenarios, _tracing
from ._aio import aio_channel
from ._config import USE_CLIENT_DEFAULT, ChannelOptions, RetryConfig, balanced, channel_options, default_target, resolve_timeout
from ._errors import PricingError
from ._risk import _RUN_SCENARIO_RISK, _RiskRequests, _serialize
from ._scenarios import ScenarioRiskResult


class AsyncRiskClient(_RiskRequests):
    """Risk RPCs over ``grpc.aio``. Arguments as for :class:`RiskClient` (``channel`` must
    then be a ``grpc.aio.Channel``)."""

    def __init__(
        self,
        *,
        target: str | None = None,
        timeout: float | None = 60.0,
        retries: RetryConfig = RetryConfig(),
        channel: grpc.aio.Channel | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        token=None,
        options: ChannelOptions = (),
    ) -> None:
        self.timeout = resolve_timeout(timeout, None)
        self._target = target or default_target()
        self._credentials = credentials
        self._token = token
        self._options = balanced(self._target, channel_options(retries, max_message_bytes=-1, extra=options))
        self._owns_channel = channel is None
        self._channel = channel
        self._stub = risk_pb2_grpc.RiskServiceStub(channel) if channel is not None else None
        self._closed = False

    def _stub_now(self) -> risk_pb2_grpc.RiskServiceStub:
        if self._closed:
            raise RuntimeError("the client is closed")
        if self._stub is None:
            self._channel = aio_channel(self._target, self._credentials, self._options, self._token)
            self._stub = risk_pb2_grpc.RiskServiceStub(self._channel)
        return self._stub

    async def scenario_risk(self, *, progress: Callable[[int, int], None] | None = None,
                            timeout=USE_CLIENT_DEFAULT, **kwargs: Any) -> ScenarioRiskResult:
        """As :meth:`RiskClient.scenario_risk` (arguments of :meth:`scenario_request`);
        ``progress(trades_done, trades)`` is called as the blocks come. Cancelling the task
        cancels the call (the server stops the run)."""
        request = self.scenario_request(**kwargs)
        collector = _scenarios.Collector(request, progress)
        self._stub_now()
        call = self._channel.unary_stream(_RUN_SCENARIO_RISK, request_serializer=_serialize,
                                          response_deserializer=_scenarios.read_part)(
            request, timeout=resolve_timeout(timeout, self.timeout), metadata=_tracing.metadata())
        try:
            async for part in call:
                collector.feed(part)
        except grpc.RpcError as e:
            raise PricingError.from_rpc_error(e) from None
        finally:
            call.cancel()  # a no-op once the stream is done; else (cancelled, failed) the server stops
        return collector.result()

    async def sensitivities(self, *, shifts, bumps, scheme: str = "central", smile: str = "sticky_strike",
                            quantity: Any = None, trade_ids: Iterable[str] | None = None, snapshot_id: str = "",
                            underlying_id: str = "", model=None, instrument: str = "european", books=None,
                            portfolio: str = "", cross_gamma: bool = False, timeout=USE_CLIENT_DEFAULT,
                            **columns: Any):
        """As :meth:`RiskClient.sensitivities`."""
        trades = self._trades(books, portfolio, instrument, model, snapshot_id, underlying_id, columns)
        request = _scenarios.sensitivities_request(
            **trades, quantity=quantity, trade_ids=None if trade_ids is None else list(trade_ids), shifts=list(shifts),
            bumps=list(bumps), scheme=scheme, smile=smile, cross_gamma=cross_gamma)
        return _scenarios.sensitivities_result(await self._unary("Sensitivities", request, timeout))

    async def parametric_var(self, deltas, covariance, *, factors=None, books=None, gammas=None,
                             method: str = "delta_normal", levels: Iterable[float] = (0.99,),
                             timeout=USE_CLIENT_DEFAULT) -> list:
        """As :meth:`RiskClient.parametric_var`."""
        request = _scenarios.parametric_request(deltas, covariance, factors=factors, books=books, gammas=gammas,
                                                method=method, levels=list(levels))
        return _scenarios.parametric_result(await self._unary("ParametricVar", request, timeout))

    async def put_portfolio(self, name: str, books, *, description: str = "", timeout=USE_CLIENT_DEFAULT):
        """As :meth:`RiskClient.put_portfolio`."""
        request = risk_pb2.PutPortfolioRequest(name=name, description=description,
                                               portfolio=risk_pb2.Portfolio(books=list(books)))
        reply = await self._unary("PutPortfolio", request, timeout)
        return _scenarios.stored_portfolio(reply.portfolio, created=reply.created)

    async def get_portfolio(self, name_or_id: str, *, timeout=USE_CLIENT_DEFAULT):
        reply = await self._unary("GetPortfolio", risk_pb2.GetPortfolioRequest(portfolio=name_or_id), timeout)
        return _scenarios.stored_portfolio(reply.portfolio, with_content=True)

    async def list_portfolios(self, name: str = "", *, limit: int = 100, timeout=USE_CLIENT_DEFAULT) -> list:
        reply = await self._unary("ListPortfolios", risk_pb2.ListPortfoliosRequest(name=name, limit=limit), timeout)
        return [_scenarios.stored_portfolio(p) for p in reply.portfolios]

    async def delete_portfolio(self, portfolio_id: str, *, timeout=USE_CLIENT_DEFAULT) -> bool:
        return (await self._unary("DeletePortfolio", risk_pb2.DeletePortfolioRequest(id=portfolio_id),
                                  timeout)).deleted

    async def backtest(self, pnl=None, var=None, *, history: str = "", level: float = 0.99, window: int = 250,
                       labels=None, var_convention: str | None = None, timeout=USE_CLIENT_DEFAULT):
        """As :meth:`RiskClient.backtest`: one stream, the stored history's days (if named)
        then ``pnl`` and ``var`` in messages of at most 50,000 days; the result over all."""
        messages = _backtest.backtest_messages(pnl, var, labels, history=history, level=level, window=window,
                                               var_convention=var_convention)
        call = self._stub_now().Backtest(iter(messages), timeout=resolve_timeout(timeout, self.timeout),
                                         metadata=_tracing.metadata())
        last = None
        try:
            async for reply in call:
                last = reply
        except grpc.RpcError as e:
            raise PricingError.from_rpc_error(e) from None
        return _backtest.result_of(last)

    async def put_backtest_history(self, name: str, pnl, var, labels=None, *, var_convention: str | None = None,
                                   append: bool = False, base_id: str = "", description: str = "",
                                   timeout=USE_CLIENT_DEFAULT):
        """As :meth:`RiskClient.put_backtest_history`."""
        request = _backtest.history_request(name, pnl, var, labels, var_convention=var_convention, append=append,
                                            base_id=base_id, description=description)
        reply = await self._unary("PutBacktestHistory", request, timeout)
        return _backtest.stored_history(reply.backtest_history, created=reply.created)

    async def get_backtest_history(self, name_or_id: str, *, timeout=USE_CLIENT_DEFAULT):
        reply = await self._unary("GetBacktestHistory", risk_pb2.GetBacktestHistoryRequest(
            backtest_history=name_or_id), timeout)
        return _backtest.stored_history(reply.backtest_history, with_content=True)

    async def list_backtest_histories(self, name: str = "", *, limit: int = 100,
                                      timeout=USE_CLIENT_DEFAULT) -> list:
        reply = await self._unary("ListBacktestHistories", risk_pb2.ListBacktestHistoriesRequest(
            name=name, limit=limit), timeout)
        return [_backtest.stored_history(x) for x in reply.backtest_histories]

    async def delete_backtest_history(self, history_id: str, *, timeout=USE_CLIENT_DEFAULT) -> bool:
        return (await self._unary("DeleteBacktestHistory", risk_pb2.DeleteBacktestHistoryRequest(id=history_id),
                                  timeout)).deleted

    async def stresses(self, *, timeout=USE_CLIENT_DEFAULT) -> risk_pb2.ListStressesResponse:
        """As :meth:`RiskClient.stresses`."""
        return await self._unary("ListStresses", risk_pb2.ListStressesRequest(), timeout)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_channel and self._channel is not None:
            await self._channel.close()

    async def __aenter__(self) -> "AsyncRiskClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _unary(self, method: str, request, timeout):
        try:
            return await getattr(self._stub_now(), method)(request, timeout=resolve_timeout(timeout, self.timeout),
                                                           metadata=_tracing.metadata())
        except grpc.RpcError as e:
            raise PricingError.from_rpc_error(e) from None
