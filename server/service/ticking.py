"""Ticking: trades held on one front-office stream, re-priced as the market moves.

A :class:`TickingBook` lives as long as one PriceStream call; nothing is shared between
streams. A trade is kept under its trade id (the same id replaces it); a market move changes
only the fields it names, for the trades it names (all of them when it names none), and
re-prices each, one result or one error per trade.

Every move is answered at least once, and a bad move once, not once per trade: a move with
a non-finite number (or a negative volatility) is refused whole before any trade moves, and
so is a move whose trades would cost more to re-price, together, than one trade may (the
service's unary cap: a stream message is front-office work); a move with no trade held
answers with one error; unknown trade ids get one error each up to ``max_unknown`` and then
one error for the rest. A trade id named twice moves once. The stream's ``should_continue``
(its caller's deadline and cancellation) stops a move between trades, and the kernels that
poll it within one.

What a stream holds is bounded: ``max_trades`` trades, ``max_bytes`` bytes of their arrays,
and all streams together the shared :class:`HeldBytes` budget (a refusal names the trade's
``trade_id``; the stream goes on).

A move of the spot is a move of the path, so a held trade's path state follows it: a
lookback's extremes take in the new level, and a barrier or touch trade whose barrier the
spot reaches (at or beyond it) is touched, and stays touched at every later spot. A touched
trade is priced with its barrier at the spot, which the contract defines as touched now (a
knock-out its rebate now, a knock-in the European, a one-touch its cash now or its present
value, a no-touch 0). A trade sent at its barrier is touched from the start; a trade's own
spot beyond its barrier is still refused (a wrong barrier, not a touch).
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Mapping, NamedTuple, Optional, Sequence

import numpy as np

import math

from pricegrid.server.domain.errors import Code, ServiceError, Violations, invalid
from pricegrid.server.domain.catalogue import EngineSpec, Settings
from pricegrid.server.domain.instruments import MarketBatch, SnapshotMarket
from pricegrid.server.domain.models import Engine, Measure, Model
from pricegrid.server.domain.products import ProductBatch
from pricegrid.server.service.pricing import PriceResult, PricingService, ShouldContinue


class HeldTrade(NamedTuple):
    """A trade held on a stream: one row of any product, its engine, market and settings."""

    spec: EngineSpec
    batch: ProductBatch
    market: MarketBatch
    measures: tuple[Measure, ...]
    fields: Mapping[str, str]
    settings: Settings
    touched: bool = False  # a barrier the spot has reached: path state, kept (see the module's note)
    cost_s: float = 0.0  # its estimated cost (core-seconds), which a move does not change (see TickingBook.move)


def touched_at(batch: ProductBatch, level: float) -> bool:
    """Whether the spot (or forward) ``level`` is at or beyond a barrier of the one-row
    ``batch`` (False for a product without barriers). Codes: common.proto's BarrierType
    (1, 2 down; 3, 4 up) and BarrierDirection (1 down, 2 up)."""
    c, name = batch.columns, batch.product.name
    if name == "barrier":
        barrier, down = float(c["barrier"][0]), int(c["barrier_type"][0]) in (1, 2)
    elif name == "touch":
        barrier, down = float(c["barrier"][0]), int(c["direction"][0]) == 1
    elif name == "double_barrier":
        return level <= float(c["lower_barrier"][0]) or level >= float(c["upper_barrier"][0])
    else:
        return False
    return level <= barrier if down else level >= barrier


def _pinned(batch: ProductBatch, level: float) -> ProductBatch:
    """The touched trade at ``level``: its barrier there (a double barrier's upper one when the
    level is at or above it, else its lower one), which the kernels price as touched now."""
    cols = dict(batch.columns)
    at = np.array([level], dtype=np.float64)
    if batch.product.name == "double_barrier":
        cols["upper_barrier" if level >= float(cols["upper_barrier"][0]) else "lower_barrier"] = at
    else:
        cols["barrier"] = at
    return dataclasses.replace(batch, columns=cols)


@dataclass(frozen=True)
class MarketMove:
    """A partial market update: None leaves a field as it is."""

    spot: Optional[float] = None
    forward: Optional[float] = None
    rate: Optional[float] = None
    dividend_yield: Optional[float] = None
    volatility: Optional[float] = None
    heston: Optional[tuple] = None  # (v0, kappa, theta, sigma, rho)

    def check(self, prefix: str = "market_update") -> None:
        """The move's own domain, whatever the trades: every number finite, a volatility
        >= 0 (each trade's model checks the rest when it is re-priced)."""
        bad = Violations()
        for name in ("spot", "forward", "rate", "dividend_yield", "volatility"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                bad.add(f"{prefix}.{name}", f"must be finite (got {value!r})")
        if self.volatility is not None and self.volatility < 0.0:
            bad.add(f"{prefix}.volatility", f"must be >= 0 (got {self.volatility!r})")
        if self.spot is not None and self.forward is not None:
            bad.add(f"{prefix}.spot", "set spot or forward, not both")
        if self.heston is not None:
            for name, value in zip(_HESTON, self.heston):
                if not math.isfinite(value):
                    bad.add(f"{prefix}.heston.{name}", f"must be finite (got {value!r})")
        bad.raise_if_any()


_HESTON = ("v0", "kappa", "theta", "sigma", "rho")
#: the kernel input each move field changes, for error paths
_MOVED = {"spot": "underlying", "forward": "underlying", "rate": "rate", "dividend_yield": "dividend_yield",
          "volatility": "volatility"}


class HeldBytes:
    """The bytes of trades all the server's streams hold, against one cap (thread-safe: the
    streams' messages are priced in the front-office pool)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        """Reserve ``n`` bytes (a negative ``n`` gives some back); False when that would pass the cap."""
        with self._lock:
            if n > 0 and self.used + n > self.limit:
                return False
            self.used += n
            return True


def held_bytes(held: HeldTrade) -> int:
    """What a held trade keeps in memory, about: its arrays (columns, schedule, market) and
    a fixed 1 KiB for the objects around them."""
    arrays = list(held.batch.columns.values())
    if held.batch.schedule is not None:
        arrays += [held.batch.schedule.times, held.batch.schedule.counts]
    market = held.market.inline if isinstance(held.market, SnapshotMarket) else held.market
    arrays += [a for a in (getattr(market, f.name) for f in dataclasses.fields(market)) if isinstance(a, np.ndarray)]
    return 1024 + sum(int(a.nbytes) for a in arrays)


class TickingBook:
    def __init__(self, service: PricingService, max_trades: int, max_unknown: int = 10, *,
                 max_bytes: Optional[int] = None, budget: Optional[HeldBytes] = None,
                 should_continue: Optional[ShouldContinue] = None):
        self.service = service
        self.max_trades = max_trades
        self.max_unknown = max_unknown
        self.max_bytes = max_bytes
        self.budget = budget
        self.should_continue = should_continue
        self.trades: dict[str, HeldTrade] = {}
        self.bytes = 0  # of the trades held and reserved (what this book took from ``budget``)
        self._sizes: dict[str, int] = {}
        # close() comes from the event loop while a message may be priced in the pool
        self._lock = threading.Lock()
        self._closed = False

    def price(
        self, spec: EngineSpec, batch: ProductBatch, market: MarketBatch, measures: Sequence[Measure],
        fields: Mapping[str, str], settings: Settings, trade_id: str = "",
    ) -> PriceResult:
        held = None
        if trade_id:
            # at its barrier now (the price just given is the touched one): touched from the
            # start (a trade on a snapshot keeps the snapshot's spot: it cannot move away)
            touched = isinstance(market, MarketBatch) and touched_at(batch, float(market.underlying[0]))
            held = HeldTrade(spec, batch, market, tuple(measures), fields, settings, touched,
                             self.service.estimated_seconds(spec, batch, market, measures, settings))
            # its bytes taken before the work (a trade that cannot be held is not priced), and
            # given back if it fails
            delta, taken = self._reserve(trade_id, held)
        try:
            result = self.service.price(spec, batch, market, measures, fields, settings,
                                        should_continue=self.should_continue)
        except BaseException:
            if held is not None:
                self._release(taken)
            raise
        if held is not None:
            self._commit(trade_id, held, delta, taken)
        return result

    def _reserve(self, trade_id: str, held: HeldTrade) -> tuple[int, int]:
        """(the bytes holding ``held`` under ``trade_id`` adds, a replaced trade's given back;
        the bytes taken now: that, when positive), or RESOURCE_EXHAUSTED naming trade_id past
        a cap (trades, this stream's bytes, all streams' bytes)."""
        with self._lock:
            if self._closed:  # (the stream ended while this message waited for a slot)
                raise ServiceError(Code.CANCELLED, "trade_id: the stream has ended")
            if trade_id not in self.trades and len(self.trades) >= self.max_trades:
                raise ServiceError(
                    Code.RESOURCE_EXHAUSTED,
                    f"trade_id: this stream already holds {self.max_trades} trades (the server's cap)",
                )
            size = held_bytes(held)
            delta = size - self._sizes.get(trade_id, 0)
            taken = max(delta, 0)
            if self.max_bytes is not None and taken and self.bytes + taken > self.max_bytes:
                raise invalid("trade_id", f"holding this trade ({size:,} bytes) would take the trades this stream"
                              f" holds to {self.bytes + taken:,} bytes, over the server's cap of {self.max_bytes:,} per"
                              " stream; hold fewer or smaller trades (fixing schedules are the large part)",
                              code=Code.RESOURCE_EXHAUSTED)
            if self.budget is not None and taken and not self.budget.take(taken):
                raise invalid("trade_id", f"the server holds as many bytes of streams' trades as it may"
                              f" ({self.budget.limit:,}); this trade ({size:,} bytes) is not held: try again later, or"
                              " hold fewer trades", code=Code.RESOURCE_EXHAUSTED)
            self.bytes += taken
            return delta, taken

    def _release(self, taken: int) -> None:
        """A reserved trade was not held (its pricing failed): its bytes back."""
        with self._lock:
            if self._closed:  # (close gave back everything this book had taken, these too)
                return
            self.bytes -= taken
            if self.budget is not None and taken:
                self.budget.take(-taken)

    def _commit(self, trade_id: str, held: HeldTrade, delta: int, taken: int) -> None:
        """Hold a reserved trade (a replaced one's extra bytes given back), unless the stream
        ended meanwhile (its bytes were given back by close)."""
        with self._lock:
            if self._closed:
                return
            back = taken - delta  # > 0 when the new trade is smaller than the one it replaces
            if back:
                self.bytes -= back
                if self.budget is not None:
                    self.budget.take(-back)
            self._sizes[trade_id] = self._sizes.get(trade_id, 0) + delta
            self.trades[trade_id] = held

    def close(self) -> None:
        """The stream ended: give its trades' bytes back to the shared budget (those a message
        still being priced has reserved too: it will not hold its trade)."""
        with self._lock:
            self._closed = True
            if self.budget is not None and self.bytes:
                self.budget.take(-self.bytes)
            self.bytes = 0
            self._sizes.clear()
            self.trades.clear()

    def move(self, move: MarketMove, trade_ids: Sequence[str], prefix: str = "market_update"):
        """Apply ``move`` and re-price; yields (trade_id, PriceResult or ServiceError), at
        least one pair. Raises ServiceError (before yielding) for a move that is bad
        whatever the trade, or whose trades together cost more than one trade may."""
        move.check(prefix)
        ids = list(dict.fromkeys(trade_ids)) if trade_ids else list(self.trades)
        if not ids:
            yield "", ServiceError(Code.FAILED_PRECONDITION, f"{prefix}: no trade is held on this stream; nothing"
                                   " was re-priced (a price message with a trade_id holds one)")
            return
        unknown = [i for i in ids if i not in self.trades]
        moved = {_MOVED[f]: f"{prefix}.{f}" for f in _MOVED if getattr(move, f) is not None}
        if move.heston is not None:
            moved.update({h: f"{prefix}.heston.{h}" for h in _HESTON})
        # each trade moved first (its own refusals kept for its turn), then the cost of the
        # whole move against the cap, before any work
        plan: list[tuple[str, object]] = []
        seconds = 0.0
        for trade_id in ids:
            held = self.trades.get(trade_id)
            if held is None:
                continue
            try:
                held = self._moved(held, move, prefix)
            except ServiceError as exc:
                plan.append((trade_id, exc))
                continue
            if held.spec.engine == Engine.FIXED_POINT:  # its regime (so its cost) follows the rate and yield
                held = held._replace(cost_s=self.service.estimated_seconds(held.spec, held.batch, held.market,
                                                                           held.measures, held.settings))
            seconds += held.cost_s  # (the others' costs follow the trade and its settings alone: 6 us a trade)
            plan.append((trade_id, held))
        cap = self.service.limits.max_cost_unary_s
        if seconds > cap:
            raise invalid(f"{prefix}.trade_ids", f"re-pricing the {len(plan)} trades this move names is an estimated"
                          f" {seconds:.3g} core-seconds of work, over the server's cap of {cap:g} core-seconds for"
                          " one stream message; name fewer trades per move (market_update.trade_ids)",
                          code=Code.RESOURCE_EXHAUSTED)
        for trade_id in unknown[: self.max_unknown]:
            yield trade_id, invalid(f"{prefix}.trade_ids", f"no trade {trade_id!r} is held on this stream")
        if len(unknown) > self.max_unknown:
            more = len(unknown) - self.max_unknown
            yield "", invalid(f"{prefix}.trade_ids", f"and {more} more trade ids that no trade on this stream has"
                                                     f" (each of the first {self.max_unknown} answered alone)")
        for trade_id, held in plan:
            if isinstance(held, ServiceError):
                yield trade_id, held
                continue
            if self.should_continue is not None and self.should_continue() is not None:
                return  # the caller went away, or its deadline passed: no one reads the rest
            try:
                # a bad value the move brought is named as the move's field
                fields = {**held.fields, **moved}
                result = self.service.price(held.spec, held.batch, held.market, held.measures, fields, held.settings,
                                            should_continue=self.should_continue)
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
        if isinstance(market, SnapshotMarket):
            # the level, rate and dividends are the snapshot's: moving them is a new snapshot;
            # what the trade gave inline (its vol, its Heston parameters) moves as inline
            for name in ("spot", "forward", "rate", "dividend_yield"):
                if getattr(move, name) is not None:
                    raise invalid(f"{prefix}.{name}", f"the trade takes its {name} from snapshot "
                                  f"{market.snapshot_id!r}; to move it, store a new snapshot (PutSnapshot) and send "
                                  "the trade again with its id")
            inline = TickingBook._moved(held._replace(market=market.inline), move, prefix).market
            return held._replace(market=dataclasses.replace(market, inline=inline))
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
            elif value > 0.0 and (held.touched or touched_at(batch, value)):
                # the spot reached the barrier on its way here: touched, now and from now on
                # (a level the model refuses is left to it: the move's error, nothing touched)
                held = held._replace(touched=True)
                batch = _pinned(batch, value)
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
