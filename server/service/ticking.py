"""Ticking: trades held on one front-office stream, re-priced as the market moves.

A :class:`TickingBook` lives as long as one PriceStream call; nothing is shared between
streams. A trade is kept under its trade id (the same id replaces it); a market move changes
only the fields it names, for the trades it names (all of them when it names none), and
re-prices each, one result or one error per trade.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping, NamedTuple, Optional, Sequence

import numpy as np

from pricegrid.server.domain.errors import Code, ServiceError, invalid
from pricegrid.server.domain.catalogue import EngineSpec, Settings
from pricegrid.server.domain.instruments import MarketBatch
from pricegrid.server.domain.models import Measure, Model
from pricegrid.server.domain.products import ProductBatch
from pricegrid.server.service.pricing import PriceResult, PricingService


class HeldTrade(NamedTuple):
    """A trade held on a stream: one row of any product, its engine, market and settings."""

    spec: EngineSpec
    batch: ProductBatch
    market: MarketBatch
    measures: tuple[Measure, ...]
    fields: Mapping[str, str]
    settings: Settings


@dataclass(frozen=True)
class MarketMove:
    """A partial market update: None leaves a field as it is."""

    spot: Optional[float] = None
    forward: Optional[float] = None
    rate: Optional[float] = None
    dividend_yield: Optional[float] = None
    volatility: Optional[float] = None
    heston: Optional[tuple] = None  # (v0, kappa, theta, sigma, rho)


class TickingBook:
    def __init__(self, service: PricingService, max_trades: int):
        self.service = service
        self.max_trades = max_trades
        self.trades: dict[str, HeldTrade] = {}

    def price(
        self, spec: EngineSpec, batch: ProductBatch, market: MarketBatch, measures: Sequence[Measure],
        fields: Mapping[str, str], settings: Settings, trade_id: str = "",
    ) -> PriceResult:
        result = self.service.price(spec, batch, market, measures, fields, settings)
        if trade_id:
            self._hold(trade_id, HeldTrade(spec, batch, market, tuple(measures), fields, settings))
        return result

    def _hold(self, trade_id: str, held) -> None:
        if trade_id not in self.trades and len(self.trades) >= self.max_trades:
            raise ServiceError(
                Code.RESOURCE_EXHAUSTED,
                f"trade_id: this stream already holds {self.max_trades} trades (the server's cap)",
            )
        self.trades[trade_id] = held

    def move(self, move: MarketMove, trade_ids: Sequence[str], prefix: str = "market_update"):
        """Apply ``move`` and re-price; yields (trade_id, PriceResult or ServiceError)."""
        ids = list(trade_ids) or list(self.trades)
        for trade_id in ids:
            held = self.trades.get(trade_id)
            if held is None:
                yield trade_id, invalid(f"{prefix}.trade_ids", f"no trade {trade_id!r} is held on this stream")
                continue
            try:
                held = self._moved(held, move, prefix)
                result = self.service.price(
                    held.spec, held.batch, held.market, held.measures, held.fields, held.settings
                )
            except ServiceError as exc:
                yield trade_id, exc
                continue
            self.trades[trade_id] = held
            yield trade_id, result

    @staticmethod
    def _moved(held: HeldTrade, move: MarketMove, prefix: str) -> HeldTrade:
        spec, market, batch = held.spec, held.market, held.batch
        one = lambda x: np.array([x], dtype=np.float64)  # noqa: E731
        changes = {}
        if move.spot is not None or move.forward is not None:
            if move.spot is not None and move.forward is not None:
                raise invalid(f"{prefix}.spot", "set spot or forward, not both")
            given, value = ("spot", move.spot) if move.spot is not None else ("forward", move.forward)
            if given != spec.underlying:
                raise invalid(f"{prefix}.{given}", f"{spec.ref.model} trades are priced on a {spec.underlying}")
            changes["underlying"] = one(value)
            if batch.product.name == "lookback":  # the path's extremes include the new level
                cols = dict(batch.columns)
                cols["running_minimum"] = np.minimum(cols["running_minimum"], value)
                cols["running_maximum"] = np.maximum(cols["running_maximum"], value)
                batch = dataclasses.replace(batch, columns=cols)
        if move.dividend_yield is not None:
            if not spec.takes_dividend:
                raise invalid(f"{prefix}.dividend_yield", f"{spec.ref.model} takes no dividend yield")
            changes["dividend_yield"] = one(move.dividend_yield)
        if move.rate is not None:
            changes["rate"] = one(move.rate)
        if move.volatility is not None:
            if spec.model == Model.HESTON:
                raise invalid(f"{prefix}.volatility", "Heston trades move with market_update.heston")
            changes["volatility"] = one(move.volatility)
        if move.heston is not None:
            if spec.model != Model.HESTON:
                raise invalid(f"{prefix}.heston", f"{spec.ref.model} trades take no Heston parameters")
            changes.update({k: one(v) for k, v in zip(("v0", "kappa", "theta", "sigma", "rho"), move.heston)})
        return held._replace(market=dataclasses.replace(market, **changes), batch=batch)
