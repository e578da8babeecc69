"""Full revaluation of a batch of trades under a scenario set (issue: scenario risk).

One underlying of a stored snapshot is the base market. The trades' base market columns
(level, zero rate, dividend yield and vol at each trade's own expiry and strike) are read
once, through the same resolution as any batch priced on a snapshot; each scenario's
market is those columns moved by the scenario set's shifts (pricegrid.server.domain.
scenarios), and every (trade, scenario) pair is priced by the engine's batch kernel in one
call per chunk of trades: the rows are trade-major with the scenario axis contiguous, so a
chunk of trades is a contiguous block of the P&L cube. No per-scenario Python loop: a
shift's sizes reach the rows as (rows x components) weights times the (components x
scenarios) sizes, one matrix product per shift and chunk.

What a scenario's market is (stated, and what the tests check against):

* SPOT moves the underlying's quoted level S; a row's level (S less the present value of
  the cash dividends paid by its expiry, or a futures price) moves by S' - S, the dividends'
  present value held at the base curve.
* ZERO_RATE and DIVIDEND_YIELD move the continuously compounded zero rate and yield each
  row reads at its expiry, by the shift's size at that expiry (bucket weights over the
  pillars). VOL moves each row's vol by the size at (expiry, K/F) with F the base forward.
  With Smile.STICKY_MONEYNESS a spot move also moves each row's vol to the one its strike
  had at the same moneyness before the move: the surface is read again at K S0/S1 (rate
  and yield shifts in the same scenario do not move the smile).
* TIME rolls every expiry down by the size (floored at 0: an expired trade is worth its
  intrinsic value); the market columns are held (a sticky roll).
* A spot move is a move of the path: a lookback's running extremes take in the new level,
  and a barrier (single, double, touch) at or beyond the new level was touched on the way,
  the cell priced as touched (ext/pg_barrier.h, note 3: a knock-in is its European at the
  new level, a knock-out its rebate paid now, a one-touch Q now or Q DF, a no-touch 0).
  A trade's own spot beyond its barrier is still its error.

P&L = quantity x (scenario value - base value), in the trade's currency. A row that cannot
be priced in a scenario (e.g. a vol shifted below zero) gets NaN and a per-row error
naming the trade, the scenario and the field; it never fails the run.

How a block is priced: a moved market column stays what it is while it can, the trades'
own column (n, 1), or that column and a vector over the scenarios after one parallel shift
(a _Moved: column + sizes, or factors x column), and becomes an (n, s) array only when a
move depends on both the trade and the scenario (buckets, a grid, two shifts of one
quantity, a time roll, sticky moneyness). An engine with a cube runner (the analytic
European: pricegrid.ext.black.price_cube) reads the columns in that form and writes P&L
straight into the block, one pass, no n x s input columns; any other engine gets the n x s
columns and its batch runner. Both give the same bits (each cell is one IEEE operation on
the same numbers, priced by the same block loop). A one-pass block with a failed cell is
priced again through the batch path, which names the cells.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Mapping, Optional, Sequence

import numpy as np
from scipy import sparse

from pricegrid.server.domain import risk as risk_measures
from pricegrid.server.domain.catalogue import DEFAULT_SETTINGS, EngineSpec
from pricegrid.server.domain.errors import Code, FieldViolation, ServiceError, Violations, invalid
from pricegrid.server.domain.instruments import MarketBatch, MarketUsed, SnapshotMarket, check_expiry_dates
from pricegrid.server.domain.models import Measure
from pricegrid.server.domain.products import ProductBatch
from pricegrid.server.domain.scenarios import HESTON, Quantity, ScenarioSet, ShiftKind, Smile, apply, row_sizes
from pricegrid.server.pricers import catalogue as pricers
from pricegrid.server.service.pricing import BatchOutputs, PricingService, ShouldContinue


@dataclass(frozen=True)
class ScenarioError:
    trade: int
    scenario: int
    code: int
    field: str
    message: str


@dataclass
class CubeBlock:
    """Trades [start, stop) under every scenario: ``pnl`` (stop - start, scenarios)."""

    start: int
    stop: int
    pnl: np.ndarray
    errors: list[ScenarioError] = field(default_factory=list)
    failed: int = 0  # cells that failed (NaN in pnl); errors holds the first of them


@dataclass
class Revaluation:
    """The base values, what the base market was, and the cube's blocks (a generator: the
    cube is never held whole unless the caller keeps the blocks; with ``reuse``, a block's
    P&L array is overwritten by the next block, for callers that consume each block before
    asking for the next)."""

    base: np.ndarray                  # (trades,) quantity x base value
    market_used: Optional[MarketUsed]
    blocks: Iterator[CubeBlock]
    base_errors: list = field(default_factory=list)  # rows.RowError of the base valuation
    priced_by: object = None           # the engine's ModelRef


@dataclass
class Book:
    """One book of a portfolio as a run reads it: trades of one product on one underlying
    of a snapshot, the trades [start, start + rows) of the portfolio."""

    spec: EngineSpec
    batch: ProductBatch
    market: SnapshotMarket
    rows: int
    fields: Mapping[str, str]
    quantity: np.ndarray
    settings: object = None
    threads: int = 0
    start: int = 0


@dataclass(frozen=True)
class BookUsed:
    start: int
    stop: int
    priced_by: object
    market_used: Optional[MarketUsed]
    product: str


@dataclass
class PortfolioRevaluation(Revaluation):
    """A Revaluation of several books, with what priced each."""

    books: list = field(default_factory=list)  # BookUsed, in order


def _object_ids(snapshot, underlying_id: str) -> dict[str, list[str]]:
    u = snapshot.underlying(underlying_id)
    return {"underlying": [u.underlying_id], "discount curve": [u.discount_curve] if u.discount_curve else [],
            "dividend curve": [u.dividend_curve] if u.dividend_curve else [],
            "surface": [u.vol_surface] if u.vol_surface else []}


#: the largest quantity of a trade (so that P&L and its sums stay finite)
MAX_QUANTITY = 1e15


class _Scratch:
    """A run's working arrays, reused block after block (fresh arrays of a few MB each
    cost their page faults every block: a third of a run's time). A block's P&L is its own
    array; everything here is overwritten by the next block."""

    def __init__(self):
        self._buffers: dict = {}

    def get(self, name: str, shape: tuple, dtype=np.float64) -> np.ndarray:
        size = int(np.prod(shape))
        buf = self._buffers.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = self._buffers[name] = np.empty(size, dtype=dtype)
        return buf[:size].reshape(shape)


#: the shift kinds a _Moved stands for (one operation per cell)
_MOVED_KINDS = (ShiftKind.ABSOLUTE, ShiftKind.RELATIVE, ShiftKind.LOG)


@dataclass(frozen=True)
class _Moved:
    """A block's market column moved by one parallel shift, kept as the trades' column
    (n, 1) or (1, 1) and a vector over the scenarios (s,): ``column + vector`` ("add") or
    ``vector x column`` ("mul"). :meth:`cells` writes out the (n, s) array it stands for;
    a one-pass kernel reads it as it is (one operation per cell, the same bits)."""

    op: str
    column: np.ndarray
    vector: np.ndarray

    @classmethod
    def of(cls, kind: ShiftKind, column: np.ndarray, size: np.ndarray) -> "_Moved":
        """``column`` moved by ``size`` (s,) as domain.scenarios.apply moves it: absolute
        base + size, relative (1 + size) x base, log exp(size) x base."""
        if kind == ShiftKind.ABSOLUTE:
            return cls("add", column, size)
        return cls("mul", column, np.add(size, 1.0) if kind == ShiftKind.RELATIVE else np.exp(size))

    def cells(self, out: np.ndarray) -> np.ndarray:
        if self.op == "add":
            return np.add(self.column, self.vector, out=out)
        return np.multiply(self.vector, self.column, out=out)


def _kernel_input(a, shape: tuple[int, int]):
    """A market column of a block of ``shape`` (trades, scenarios) as a one-pass kernel
    reads it: ("add" | "mul", trade column, scenario vector), an (n, s) array, or a trade
    column (n or 1)."""
    if isinstance(a, _Moved):
        return (a.op, np.ascontiguousarray(a.column.reshape(-1)), np.ascontiguousarray(a.vector))
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 2 and a.shape[1] == 1:
        return np.ascontiguousarray(a.reshape(-1))
    return np.ascontiguousarray(np.broadcast_to(a, shape))


class ScenarioRevaluer:
    """Revaluation of batches under scenario sets, over a PricingService (its engines,
    limits and snapshots). ``one_pass``: an engine with a cube runner (the analytic
    European) prices each block straight into P&L, reading the trades' columns and the
    scenarios' moves as they are; False: every engine through its batch runner on n x s
    columns (the same bits, slower)."""

    def __init__(self, pricing: PricingService, *, max_row_errors: int = 1000, one_pass: bool = True):
        self.pricing = pricing
        self.max_row_errors = max_row_errors
        self.one_pass = one_pass

    def snapshot_of(self, market, fields: Mapping[str, str]):
        """The stored snapshot a request's market names (NOT_FOUND naming the field when it, or
        its underlying, is not stored)."""
        market_path = fields.get("rate", "market.rate").replace(".rate", "")
        if not isinstance(market, SnapshotMarket):
            raise invalid(f"{market_path}.snapshot_id", "required: scenarios shift a stored snapshot's market")
        snapshot = self.pricing.snapshots(market.snapshot_id) if self.pricing.snapshots is not None else None
        if snapshot is None:
            raise invalid(f"{market_path}.snapshot_id", f"no snapshot {market.snapshot_id!r} is stored",
                          code=Code.NOT_FOUND)
        if snapshot.underlying(market.underlying_id) is None:
            raise invalid(f"{market_path}.underlying_id", f"no underlying {market.underlying_id!r} in the snapshot",
                          code=Code.NOT_FOUND)
        off = check_expiry_dates(market, snapshot.valuation_date)  # the snapshot's axis, as Price and PriceBatch
        if off:
            prefix = market_path[: -len("market")]  # the book's (e.g. "portfolio.books[0].trades.")
            raise ServiceError(Code.INVALID_ARGUMENT, "; ".join(f"{prefix}{f}: {why}" for f, why in off),
                               [FieldViolation(f"{prefix}{f}", why) for f, why in off])
        return snapshot

    def revalue(
        self,
        spec: EngineSpec,
        batch: ProductBatch,
        market: SnapshotMarket,
        scenarios: ScenarioSet,
        quantity: np.ndarray,
        *,
        rows: int,
        fields: Mapping[str, str],
        chunk_rows: int = 262_144,
        threads: int = 0,
        should_continue: Optional[ShouldContinue] = None,
        scenarios_path: str = "",
        reuse: bool = False,
        settings=None,
        validate: bool = True,
        resolved=None,
    ) -> Revaluation:
        market_path = fields.get("rate", "market.rate").replace(".rate", "")
        snapshot = self.snapshot_of(market, fields)
        if validate:  # (a portfolio's books are checked together: see revalue_portfolio)
            scenarios.validate(_object_ids(snapshot, market.underlying_id), prefix=scenarios_path)
        quantity = np.asarray(quantity, dtype=np.float64)
        if quantity.shape not in ((rows,), (1,)) or not np.all(np.abs(quantity) <= MAX_QUANTITY):
            raise invalid("quantity", f"one finite quantity per trade ({rows}) or one for all, each at most "
                                      f"{MAX_QUANTITY:g} in size")
        if scenarios.scenarios > self.pricing.limits.max_rows:
            raise invalid(f"{scenarios_path}labels", f"{scenarios.scenarios:,} scenarios; at most "
                          f"{self.pricing.limits.max_rows:,} (one trade's scenarios are priced in one call)",
                          code=Code.RESOURCE_EXHAUSTED)
        product_path = fields.get("rate", "market.rate").replace("market.rate", "instruments")
        if batch.schedule is not None:
            raise invalid(product_path, f"{batch.product.name} options (fixing schedules) are not in scenario runs yet")
        if resolved is not None:  # (the batch with its snapshot spot, resolve_market's answer) read already
            batch, (base_market, used, base_fields) = resolved
        else:
            batch = self.pricing.with_snapshot_spot(batch, market)
            base_market, used, base_fields = self.pricing.resolve_market(spec, batch, market, fields)
        if base_market.cash_dividends is not None or (base_market.volatility is None and base_market.v0 is None):
            raise invalid(f"{market_path}.underlying_id", "an underlying priced with cash dividends by the engine "
                          "itself is not in scenario runs yet (the shifts move the spot, curves, vols and Heston "
                          "parameters)")
        if scenarios.smile == Smile.STICKY_MONEYNESS and ("strike" not in batch.columns or not used or
                                                           not used.vol_surface):
            raise invalid(f"{scenarios_path}smile", "sticky moneyness reads each trade's vol from the snapshot's "
                          "surface at its strike: the trades need strikes and the vols must come from the surface")
        extra = {} if settings is None else {"settings": settings}
        base = self.pricing.price_batch(spec, batch, base_market, (Measure.PRICE,), rows=rows, fields=base_fields,
                                        threads=threads, effective_inputs=True, should_continue=should_continue,
                                        **extra)
        base_value = base.values[0] * quantity
        s = scenarios.scenarios
        per_chunk = max(1, chunk_rows // s)

        # a scenario's row fails on the scenario's own market numbers: its errors name the
        # market fields (market.volatility, ...), the block names the trade and the scenario
        def blocks() -> Iterator[CubeBlock]:
            scratch = _Scratch()
            for start in range(0, rows, per_chunk):
                stop = min(rows, start + per_chunk)
                yield self._block(spec, batch, market, snapshot, scenarios, base_market, base, quantity,
                                  start, stop, fields, threads, should_continue, scratch, reuse, extra)

        return Revaluation(base_value, used, blocks(), list(base.errors), base.priced_by)

    def portfolio_snapshot(self, books: Sequence["Book"]):
        """The one stored snapshot the books are priced on (None when they name several, or an
        unknown one: each book's revaluation then says which)."""
        snapshots = {b.market.snapshot_id for b in books if isinstance(b.market, SnapshotMarket)}
        if len(snapshots) == 1 and self.pricing.snapshots is not None:
            return self.pricing.snapshots(next(iter(snapshots)))
        return None

    def validate_portfolio(self, books: Sequence["Book"], scenarios: ScenarioSet, scenarios_path: str = "") -> None:
        """The scenario set's checks against the objects of every book's underlying. A book
        whose underlying is not in the snapshot is NOT_FOUND on its market's underlying_id
        first (else the shifts would be blamed for matching nothing)."""
        snapshot = self.portfolio_snapshot(books)
        if snapshot is not None:
            ids: dict[str, list[str]] = {}
            for b in books:
                self.snapshot_of(b.market, b.fields)
                for kind, found in _object_ids(snapshot, b.market.underlying_id).items():
                    ids.setdefault(kind, []).extend(found)
            scenarios.validate(ids, prefix=scenarios_path)

    def block_trades(self, scenarios: int, block_cells: int) -> int:
        """Trades per block of revalue_portfolio for ``scenarios`` and ``block_cells`` (each
        book's blocks start at its first trade)."""
        s = max(1, scenarios)
        return max(1, min(max(1, block_cells // s) * s, self.pricing.limits.max_rows) // s)

    def revalue_portfolio(
        self,
        books: Sequence["Book"],
        scenarios: ScenarioSet,
        *,
        block_cells: int = 262_144,
        should_continue: Optional[ShouldContinue] = None,
        scenarios_path: str = "",
        reuse: bool = False,
        resolved: Optional[Mapping] = None,
    ) -> "PortfolioRevaluation":
        """Revalue every book (one snapshot) under one scenario set: the books' base values
        now, their blocks one after the other, trades numbered across the books. A shift
        must match some object of some book's underlying (it moves the books it matches)."""
        self.validate_portfolio(books, scenarios, scenarios_path)
        s = max(1, scenarios.scenarios)
        parts, used = [], []
        for b in books:
            r = self.revalue(b.spec, b.batch, b.market, scenarios, b.quantity, rows=b.rows, fields=b.fields,
                             chunk_rows=self.block_trades(s, block_cells) * s,
                             threads=b.threads, should_continue=should_continue, scenarios_path=scenarios_path,
                             reuse=reuse, settings=b.settings, validate=False,
                             resolved=(resolved or {}).get(id(b)))
            parts.append(r)
            used.append(BookUsed(b.start, b.start + b.rows, r.priced_by, r.market_used, b.batch.product.name))

        def blocks() -> Iterator[CubeBlock]:
            for b, r in zip(books, parts):
                for block in r.blocks:
                    if b.start:
                        block.start += b.start
                        block.stop += b.start
                        block.errors = [ScenarioError(e.trade + b.start, e.scenario, e.code, e.field, e.message)
                                        for e in block.errors]
                    yield block

        base = np.concatenate([r.base for r in parts]) if parts else np.zeros(0)
        base_errors = [e._replace(row=e.row + b.start) for b, r in zip(books, parts) for e in r.base_errors]
        first = parts[0] if parts else None
        return PortfolioRevaluation(base, first.market_used if first else None, blocks(), base_errors,
                                    first.priced_by if first else None, used)

    # ------------------------------------------------------------------ one chunk
    def _block(self, spec, batch, market, snapshot, scenarios, base_market: MarketBatch, base, quantity,
               start, stop, fields, threads, should_continue, scratch: _Scratch, reuse: bool,
               extra=None) -> CubeBlock:
        n, s = stop - start, scenarios.scenarios
        rows = slice(start, stop)

        shape = (n, s)

        def col(a):  # a per-row column of the chunk as (n, 1), a broadcast one as (1, 1)
            a = np.asarray(a, dtype=np.float64)
            return a[rows, None] if a.size > 1 else a.reshape(1, 1)

        def cells(name, a):
            """An (n, s) array of a column: a _Moved one written out (into the scratch)."""
            return a.cells(scratch.get(name, shape)) if isinstance(a, _Moved) else a

        def flat(name, a, dtype=np.float64):
            """The kernel's column of n x s rows: an (n, s) array as it is, an (n, 1) one
            repeated along the scenarios (one broadcasting copy), a (1, 1) one broadcast."""
            a = np.asarray(cells(name, a))
            if a.shape == shape:
                return np.ascontiguousarray(a, dtype=dtype).reshape(-1)
            if a.size == 1:
                return a.reshape(1).astype(dtype, copy=False)
            out = scratch.get(name, shape, dtype)
            out[...] = a
            return out.reshape(-1)

        def shifted(name, kind, base_values, size, own):
            """``base_values`` moved by one shift of ``size`` (rows or 1, scenarios). The
            trades' own column (``own``) under a parallel shift stays a _Moved: a column and
            a vector over the scenarios, the same bits as the (n, s) array it stands for."""
            if own and size.shape[0] == 1 and kind in _MOVED_KINDS:
                return _Moved.of(kind, base_values, size[0])
            base_values = cells(name, base_values)
            target = np.broadcast_shapes(np.shape(base_values), np.shape(size))
            out = scratch.get(name, target)
            if np.shares_memory(out, base_values):  # a second shift of the same quantity
                return apply(kind, base_values, size)
            return apply(kind, base_values, size, out=out)

        expiry = col(batch.columns["time_to_expiry"])
        strike = col(batch.columns["strike"]) if "strike" in batch.columns else None
        level, rate, q = col(base_market.underlying), col(base_market.rate), col(base_market.dividend_yield)
        vol = col(base_market.volatility) if base_market.volatility is not None else None
        forward = col(base.forward) if base.forward is not None else level
        u = snapshot.underlying(market.underlying_id)
        t = np.broadcast_to(expiry, (n, 1))[:, 0]
        moneyness = np.broadcast_to(strike / forward, (n, 1))[:, 0] if strike is not None else np.ones(n)
        quoted = u.level
        moved = np.full((1, s), quoted)  # the quoted level in each scenario, shifts applied in order
        new_rate, new_q, new_vol, new_t = rate, q, vol, expiry
        heston = {name: col(getattr(base_market, name)) for name in HESTON.values()} \
            if base_market.v0 is not None else None
        own_heston = dict(heston or {})
        for shift, sizes in scenarios.blocks():
            if shift.quantity == Quantity.TIME:
                new_t = np.maximum(np.subtract(new_t, sizes[0][None, :], out=scratch.get("t", shape)), 0.0,
                                   out=scratch.get("t", shape))
            elif shift.quantity == Quantity.SPOT:
                if shift.matches(u.underlying_id):
                    moved = apply(shift.kind, moved, sizes)
            elif shift.quantity == Quantity.ZERO_RATE and shift.matches(u.discount_curve):
                new_rate = shifted("rate", shift.kind, new_rate, row_sizes(shift, sizes, t, moneyness),
                                   new_rate is rate)
            elif shift.quantity == Quantity.DIVIDEND_YIELD and u.dividend_curve and shift.matches(u.dividend_curve):
                new_q = shifted("q", shift.kind, new_q, row_sizes(shift, sizes, t, moneyness), new_q is q)
            elif shift.quantity == Quantity.VOL and new_vol is not None and u.vol_surface and \
                    shift.matches(u.vol_surface):
                new_vol = shifted("vol", shift.kind, new_vol, row_sizes(shift, sizes, t, moneyness), new_vol is vol)
            elif shift.quantity in HESTON and heston is not None and shift.matches(u.underlying_id):
                name = HESTON[shift.quantity]
                heston[name] = shifted(name, shift.kind, heston[name], np.asarray(sizes, dtype=np.float64),
                                       heston[name] is own_heston[name])
        spot_moves = bool(np.any(moved != quoted))
        new_level = _Moved("add", level, (moved - quoted)[0]) if spot_moves else level
        spot_ratio = moved[0] / quoted if spot_moves else None
        if scenarios.smile == Smile.STICKY_MONEYNESS and spot_ratio is not None and new_vol is not None:
            new_vol = self._sticky_moneyness(spec, batch, market, scenarios, base_market, rows, n, s, spot_ratio,
                                             cells("vol", new_vol), vol, fields)
        q_chunk = quantity[rows] if quantity.size > 1 else quantity
        base_rows = base.values[0][rows]
        market_rows = (new_t, new_level, new_rate, new_q, new_vol)

        cube = pricers.cube_runner(spec) if self.one_pass and new_vol is not None else None
        if cube is not None:  # one pass: the moved columns as they are, P&L straight out of the kernel
            pnl = scratch.get("value", shape) if reuse else np.empty(shape)
            with self.pricing.large_calls(n * s):
                self.pricing.check_rows(n * s)
                self.pricing.check_cost(spec, batch, base_market, (Measure.PRICE,),
                                        (extra or {}).get("settings", DEFAULT_SETTINGS), n * s, unary=False)
                self.pricing.stop_if_asked(should_continue)
                columns = {name: np.ascontiguousarray(np.asarray(c)[rows] if np.asarray(c).size > 1 else c)
                           for name, c in batch.columns.items()}
                trace = getattr(should_continue, "trace", None)  # the block's kernel call: one chunk's span
                with (trace.span("chunk", {"pricegrid.chunk.start": 0, "pricegrid.chunk.stop": n * s,
                                           "pricegrid.chunk.count": 1, "pricegrid.chunk.kernel": "cube"})
                      if trace is not None else contextlib.nullcontext()):
                    bad = cube(columns, *(_kernel_input(a, shape) for a in market_rows),
                               np.ascontiguousarray(base_rows, dtype=np.float64),
                               np.ascontiguousarray(q_chunk, dtype=np.float64), pnl, self.pricing.threads_for(threads))
            if not bad:
                failed = 0
                if not np.isfinite(base_rows).all():  # rare: count the NaN cells
                    failed = int(pnl.size - np.count_nonzero(np.isfinite(pnl)))
                return CubeBlock(start, stop, pnl, [], failed)
            # rare: some cell failed; the block again through the batch path, which names them

        columns = {}
        for name, c in batch.columns.items():
            c = np.asarray(c)
            columns[name] = flat("col:" + name, c[rows, None], c.dtype) if c.size > 1 else c
        columns["time_to_expiry"] = flat("t", new_t)
        market_rows = MarketBatch(flat("level", new_level), flat("rate", new_rate), flat("q", new_q),
                                  flat("vol", new_vol) if new_vol is not None else None,
                                  *((flat(name, heston[name]) for name in HESTON.values()) if heston is not None
                                    else ()))
        if spot_moves and batch.product.name == "lookback":
            # a move of the spot is a move of the path: its extremes take in the new level (as
            # a stream's market_update does); a level beyond one was refused as a bad extreme
            lv = market_rows.underlying
            cells_n = max(lv.shape[0], columns["running_minimum"].shape[0])
            columns["running_minimum"] = np.minimum(np.broadcast_to(columns["running_minimum"], (cells_n,)), lv)
            columns["running_maximum"] = np.maximum(np.broadcast_to(columns["running_maximum"], (cells_n,)), lv)
        if spot_moves:
            # likewise a barrier's: a moved spot at or beyond a barrier touched it on the way,
            # priced as touched (a trade's own spot beyond its barrier stays refused: a wrong
            # type or level); the settings' internal flag, never sent by a caller
            settings = (extra or {}).get("settings", DEFAULT_SETTINGS)
            extra = {**(extra or {}), "settings": replace(settings, spot_beyond_barrier_touched=True)}
        outputs = BatchOutputs(scratch.get("value", (1, n * s)),  # (a Monte Carlo engine writes its errors too)
                               scratch.get("stderr", (1, n * s)) if spec.monte_carlo else None)
        priced = self.pricing.price_batch(spec, ProductBatch(batch.product, columns), market_rows, (Measure.PRICE,),
                                          rows=n * s, fields=fields, threads=threads, effective_inputs=False,
                                          should_continue=should_continue, outputs=outputs, **(extra or {}))
        values = priced.values[0].reshape(shape)
        errors = [ScenarioError(start + e.row // s, e.row % s, e.code, e.field, e.message)
                  for e in priced.errors[:self.max_row_errors]]
        pnl = np.subtract(values, base_rows[:, None], out=values if reuse else None)
        pnl *= np.reshape(q_chunk, (-1, 1))
        failed = 0
        if priced.error_count or not np.isfinite(base_rows).all():  # rare: count the NaN cells
            failed = int(pnl.size - np.count_nonzero(np.isfinite(pnl)))
        return CubeBlock(start, stop, pnl, errors, failed)

    def _sticky_moneyness(self, spec, batch, market, scenarios, base_market, rows, n, s, spot_ratio, new_vol, vol,
                          fields):
        """Each row's vol read again at K F0/F1 (the strike with the same moneyness before
        the spot move), plus whatever the vol shifts added to it."""
        strikes = np.asarray(batch.columns["strike"], dtype=np.float64)
        strikes = strikes[rows] if strikes.size > 1 else np.full(n, strikes[0])
        times = np.asarray(batch.columns["time_to_expiry"], dtype=np.float64)
        times = times[rows] if times.size > 1 else np.full(n, times[0])
        k = (strikes[:, None] / spot_ratio[None, :]).ravel()
        tiled = ProductBatch(batch.product, {**{name: np.asarray(c) for name, c in batch.columns.items()
                                                if np.asarray(c).size == 1},
                                             **{name: np.repeat(np.asarray(c)[rows], s) for name, c in
                                                batch.columns.items() if np.asarray(c).size > 1},
                                             "strike": k, "time_to_expiry": np.repeat(times, s)})
        moved, _, _ = self.pricing.resolve_market(spec, tiled, market, fields)
        return np.asarray(moved.volatility).reshape(n, s) + (new_vol - vol)


def portfolio_pnl(blocks: Sequence[CubeBlock]) -> np.ndarray:
    """Sum over trades of the blocks' P&L (NaN rows count as missing: nansum), (scenarios,)."""
    total = None
    for b in blocks:
        part = np.nansum(b.pnl, axis=0)
        total = part if total is None else total + part
    return total if total is not None else np.zeros(0)


# ---------------------------------------------------------------------------- a run
@dataclass
class Aggregates:
    """What the trailer reports: the portfolio's P&L per scenario (failed cells left out),
    its VaR and ES at each level, each trade's VaR and ES (trades x levels; NaN for a
    trade with a failed scenario), the failed cells and the compute time."""

    portfolio_pnl: np.ndarray
    var_levels: np.ndarray
    es_levels: np.ndarray
    var: np.ndarray
    es: np.ndarray
    trade_var: Optional[np.ndarray]  # None unless the run was asked for each trade's risk
    trade_es: Optional[np.ndarray]
    failed_cells: int
    compute_seconds: float
    nodes: list = field(default_factory=list)  # NodeRisk of the tag hierarchy, parents first
    trade_component_es: Optional[np.ndarray] = None    # (trades, ES levels) with the attribution
    trade_incremental_es: Optional[np.ndarray] = None  # (trades, ES levels) with incremental ES
    tail_scenarios: int = 0


@dataclass
class NodeRisk:
    path: tuple[str, ...]   # ("desk=rates", "book=B1")
    trades: int
    pnl: np.ndarray         # (scenarios,)
    var: np.ndarray         # per VaR level
    es: np.ndarray          # per ES level
    component_es: Optional[np.ndarray] = None    # per ES level, with the attribution
    incremental_es: Optional[np.ndarray] = None


#: caps of a tag hierarchy (each node holds a P&L vector over the scenarios)
MAX_NODES = 10_000
MAX_NODE_CELLS = 20_000_000


class Hierarchy:
    """The nodes of a tag hierarchy and which trades each holds: for tags (name, one value
    per trade) in order, a node per distinct (value of the first, ..., value of the l-th)
    for every level l, parents before their children. ``matrix`` (nodes x trades, sparse)
    sums trades' P&L into the nodes in one product per block."""

    def __init__(self, tags: Sequence[tuple[str, np.ndarray]], trades: int, scenarios: int, path: str = "aggregate_by"):
        paths: list[tuple[str, ...]] = []
        rows: list[np.ndarray] = []
        code = np.zeros(trades, dtype=np.int64)   # the node of each trade at the level above
        parents: list[tuple[str, ...]] = [()]
        for name, values in tags:
            names, inverse = np.unique(np.asarray(values, dtype=str), return_inverse=True)
            inverse = np.broadcast_to(inverse.reshape(-1), (trades,)) if len(values) == 1 else inverse.reshape(-1)
            combined = code * len(names) + inverse
            unique, code = np.unique(combined, return_inverse=True)
            code = code.reshape(-1)
            level = [parents[u // len(names)] + (f"{name}={names[u % len(names)]}",) for u in unique]
            rows.append(len(paths) + code)
            paths.extend(level)
            parents = level
            if len(paths) > MAX_NODES or len(paths) * scenarios > MAX_NODE_CELLS:
                raise ServiceError(Code.RESOURCE_EXHAUSTED, f"{path}: {len(paths):,} nodes over {scenarios:,} "
                                   f"scenarios; at most {MAX_NODES:,} nodes and {MAX_NODE_CELLS:,} node P&L values",
                                   [FieldViolation(path, "too many nodes")])
        order = sorted(range(len(paths)), key=lambda i: paths[i])  # a parent's path is a prefix: it sorts first
        rank = np.empty(len(paths), dtype=np.int64)
        rank[order] = np.arange(len(paths))
        self.paths = [paths[i] for i in order]
        node = rank[np.concatenate(rows)] if rows else np.zeros(0, dtype=np.int64)
        trade = np.tile(np.arange(trades), len(rows))
        self.matrix = sparse.csr_matrix((np.ones(node.size), (node, trade)), shape=(len(self.paths), trades))
        self.counts = np.asarray(self.matrix.sum(axis=1)).ravel().astype(np.int64)


class ScenarioRun:
    """One run, block by block: :meth:`next_block` prices the next trades under every
    scenario and folds them into the aggregates (so the cube is never held whole: each
    block has whole trades, hence each trade's VaR and ES come from its own block), and
    :meth:`aggregates` gives the trailer once the blocks are done."""

    def __init__(self, revaluation: Revaluation, trades: int, scenarios: int, var_levels: Sequence[float],
                 es_levels: Sequence[float], *, trade_risk: bool = True, hierarchy: Optional[Hierarchy] = None,
                 reprice: Optional[Callable[[Optional[np.ndarray]], Revaluation]] = None,
                 incremental: bool = False):
        self.revaluation = revaluation
        # the ES attribution's second pass: reprice(columns) revalues every trade under those
        # scenarios (None: all of them) through the same path, block by block
        self.reprice = reprice
        self.incremental = incremental
        self._attribution: Optional[tuple] = None
        self.trade_risk = trade_risk
        self.hierarchy = hierarchy
        self._nodes = np.zeros((len(hierarchy.paths), scenarios)) if hierarchy is not None else None
        self.trades, self.scenarios = trades, scenarios
        self.var_levels = np.asarray(var_levels, dtype=np.float64)
        self.es_levels = np.asarray(es_levels, dtype=np.float64)
        self._portfolio = np.zeros(scenarios)
        self._trade_var = np.full((trades, len(self.var_levels)), np.nan) if trade_risk else None
        self._trade_es = np.full((trades, len(self.es_levels)), np.nan) if trade_risk else None
        self._failed = 0
        self._seconds = 0.0

    def next_block(self) -> Optional[CubeBlock]:
        t0 = time.perf_counter()
        block = next(self.revaluation.blocks, None)
        if block is not None:
            pnl = block.pnl
            if block.failed == 0:
                self._portfolio += pnl.sum(axis=0)
                ok = None
            else:
                finite = np.isfinite(pnl)
                ok = finite.all(axis=1)
                self._failed += int(pnl.size - np.count_nonzero(finite))
                self._portfolio += np.nansum(pnl, axis=0)
            if self.hierarchy is not None:
                part = self.hierarchy.matrix[:, block.start:block.stop]
                self._nodes += part @ (pnl if ok is None else np.nan_to_num(pnl, nan=0.0))
            if self.trade_risk and (ok is None or ok.any()):
                sel = pnl if ok is None else pnl[ok]
                tail = risk_measures.historical_risk(sel, var_level=self.var_levels, es_level=self.es_levels, axis=1)
                rows = np.arange(block.start, block.stop) if ok is None else np.flatnonzero(ok) + block.start
                self._trade_var[rows] = np.asarray(tail.var).reshape(len(self.var_levels), -1).T
                self._trade_es[rows] = np.asarray(tail.es).reshape(len(self.es_levels), -1).T
        self._seconds += time.perf_counter() - t0
        return block

    def attribution_steps(self) -> Iterator[None]:
        """The ES attribution once the blocks are done, one block of work per step (so a
        caller can share its capacity between steps): each trade's Euler component from a
        revaluation under the tail scenarios; with ``incremental``, each trade's incremental
        ES from a second full pass (the portfolio's P&L now known)."""
        t0 = time.perf_counter()
        pnl = self._portfolio
        weights = np.vstack([risk_measures.es_tail_weights(pnl, float(a)) for a in self.es_levels])
        tail = np.flatnonzero((weights != 0).any(axis=0))
        component = np.zeros((self.trades, len(self.es_levels)))
        for block in self.reprice(tail).blocks:
            component[block.start:block.stop] = -(np.nan_to_num(block.pnl, nan=0.0) @ weights[:, tail].T)
            yield
        es = weights @ -pnl
        incremental = None
        if self.incremental:
            incremental = np.empty((self.trades, len(self.es_levels)))
            for block in self.reprice(None).blocks:
                rows = np.nan_to_num(block.pnl, nan=0.0)
                for j, a in enumerate(self.es_levels):
                    incremental[block.start:block.stop, j] = risk_measures.incremental_es(pnl, es[j], rows, a)
                yield
        self._attribution = (component, incremental, len(tail), es)
        self._seconds += time.perf_counter() - t0

    def aggregates(self) -> Aggregates:
        tail = risk_measures.historical_risk(self._portfolio, var_level=self.var_levels, es_level=self.es_levels)
        attribution = self._attribution
        if self.reprice is not None and attribution is None:
            for _ in self.attribution_steps():
                pass
            attribution = self._attribution
        nodes = []
        if self.hierarchy is not None and len(self.hierarchy.paths):
            t = risk_measures.historical_risk(self._nodes, var_level=self.var_levels, es_level=self.es_levels, axis=1)
            var = np.asarray(t.var).reshape(len(self.var_levels), -1)
            es = np.asarray(t.es).reshape(len(self.es_levels), -1)
            node_component = node_incremental = None
            if attribution is not None:
                node_component = np.asarray(self.hierarchy.matrix @ attribution[0])
                if self.incremental:
                    node_incremental = np.column_stack([
                        risk_measures.incremental_es(self._portfolio, attribution[3][j], self._nodes, a)
                        for j, a in enumerate(self.es_levels)])
            nodes = [NodeRisk(p, int(self.hierarchy.counts[i]), self._nodes[i], var[:, i], es[:, i],
                              None if node_component is None else node_component[i],
                              None if node_incremental is None else node_incremental[i])
                     for i, p in enumerate(self.hierarchy.paths)]
        out = Aggregates(self._portfolio, self.var_levels, self.es_levels,
                         np.atleast_1d(np.asarray(tail.var, dtype=np.float64)),
                         np.atleast_1d(np.asarray(tail.es, dtype=np.float64)),
                         self._trade_var, self._trade_es, self._failed, self._seconds, nodes)
        if attribution is not None:
            out.trade_component_es, out.trade_incremental_es, out.tail_scenarios = attribution[:3]
        return out


# ---------------------------------------------------------------------- sensitivities
#: the bump multiples each scheme prices, and how delta and gamma come from them
SCHEMES = {"central": (1.0, -1.0), "forward": (1.0, 2.0), "backward": (-1.0, -2.0)}


@dataclass
class Sensitivities:
    components: list[str]
    delta: np.ndarray       # (trades, components), quantity included
    gamma: np.ndarray
    errors: list
    market_used: Optional[MarketUsed]
    priced_by: object
    cross_gamma: Optional[np.ndarray] = None  # (trades, components, components), with cross terms


@dataclass(frozen=True, eq=False)
class BumpSet:
    """The bumped scenarios a scheme needs and where each difference reads them: for every
    component c, its bumps (the scheme's multiples of h[c]) at columns ``first[c]`` and
    ``second[c]`` (-1 for a time roll: one forward step only); for every pair (i, j) of
    ``pairs``, its corners at ``corners`` (central: ++, +-, -+, --; forward and backward:
    the two first bumps together). ``component``: the component of each column (a corner's:
    its first)."""

    scenarios: ScenarioSet
    scheme: str
    h: np.ndarray
    first: np.ndarray
    second: np.ndarray
    pairs: np.ndarray
    corners: np.ndarray
    component: np.ndarray

    @property
    def time(self) -> np.ndarray:
        return self.second < 0


def bump_count(shifts: Sequence, scheme: str, cross: bool) -> int:
    """The scenarios of :func:`bump_set` (without building them): 2 per component (1 for a
    time roll), and with cross terms 4 (central) or 1 per pair of components that are not
    time rolls."""
    k = sum(s.components for s in shifts)
    roll = sum(s.components for s in shifts if s.quantity == Quantity.TIME)
    moving = k - roll
    pairs = moving * (moving - 1) // 2 if cross else 0
    return 2 * moving + roll + pairs * (4 if scheme == "central" else 1)


def bump_set(shifts: Sequence, bumps: Sequence[float], scheme: str, smile: Smile,
             prefix: str = "", *, cross: bool = False, time: bool = False, bumps_path: str = "bumps",
             shifts_path: str = "shifts") -> BumpSet:
    """The scenarios a scheme needs: for every component of every shift, two bumps of its
    size (the multiples of SCHEMES), all other components unmoved; with ``cross``, the
    corners of every pair of components; with ``time``, a time roll is one forward step
    (else refused, as FIXED shifts are)."""
    bad = Violations()
    if len(bumps) != len(shifts):
        bad.add(f"{prefix}{bumps_path}", f"{len(bumps)} bump sizes for {len(shifts)} shifts: one per shift")
    for i, (s, h) in enumerate(zip(shifts, bumps)):
        if not (np.isfinite(h) and h > 0):
            bad.add(f"{prefix}{bumps_path}[{i}]", f"must be finite and > 0 (got {h!r})")
        if s.kind == ShiftKind.FIXED or (s.quantity == Quantity.TIME and not time):
            bad.add(f"{prefix}{shifts_path}[{i}].kind", "a bump moves a value: absolute, relative or log, not fixed"
                    + ("" if time else " or a time roll"))
    bad.raise_if_any()
    m1, m2 = SCHEMES[scheme]
    comps = sum(s.components for s in shifts)
    h = np.concatenate([[b] * s.components for s, b in zip(shifts, bumps)]).astype(np.float64) if shifts \
        else np.zeros(0)
    roll = np.concatenate([[s.quantity == Quantity.TIME] * s.components for s in shifts]).astype(bool) if shifts \
        else np.zeros(0, bool)
    names = [label for s in shifts for label in s.component_labels()]
    columns: list[tuple[int, float, int, float]] = []  # (component, multiple, second component, its multiple)
    first, second = np.empty(comps, np.int64), np.full(comps, -1, np.int64)
    for c in range(comps):
        if roll[c]:  # one step forward, whatever the scheme
            first[c] = len(columns)
            columns.append((c, 1.0, -1, 0.0))
            continue
        first[c], second[c] = len(columns), len(columns) + 1
        columns += [(c, m1, -1, 0.0), (c, m2, -1, 0.0)]
    moving = np.flatnonzero(~roll)
    pairs = np.array([(i, j) for a, i in enumerate(moving) for j in moving[a + 1:]] if cross else [],
                     dtype=np.int64).reshape(-1, 2)
    signs = [(1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)] if scheme == "central" else [(m1, m1)]
    corners = np.empty((len(pairs), len(signs)), np.int64)
    for p, (i, j) in enumerate(pairs):
        for q, (a, b) in enumerate(signs):
            corners[p, q] = len(columns)
            columns.append((int(i), a, int(j), b))
    sizes = np.zeros((comps, len(columns)))
    labels = []
    for col, (i, a, j, b) in enumerate(columns):
        sizes[i, col] = a * h[i]
        if j < 0:
            labels.append(f"{names[i]}@{a:+g}h")
        else:
            sizes[j, col] = b * h[j]
            labels.append(f"{names[i]}@{a:+g}h,{names[j]}@{b:+g}h")
    component = np.array([c[0] for c in columns], dtype=np.int64)
    # (the sizes and labels are the server's: a violation names the shifts or the bumps)
    return BumpSet(ScenarioSet(tuple(shifts), sizes, tuple(labels), smile, sizes_path="", own_labels=False), scheme,
                   h, first, second, pairs, corners, component)


#: the smallest bump whose square (the second difference's h^2) is a normal double
MIN_BUMP = float(np.sqrt(np.finfo(np.float64).tiny))


def _bump_levels(revaluer: "ScenarioRevaluer", book, shift, markets: dict) -> Optional[np.ndarray]:
    """The base values of ``shift``'s quantity that ``book``'s trades read (None when it moves
    nothing of the book, or the book's market cannot be read: its revaluation says why);
    ``markets`` keeps each book's resolved market columns (read once for all its shifts)."""
    snapshot = revaluer.pricing.snapshots(book.market.snapshot_id) \
        if isinstance(book.market, SnapshotMarket) and revaluer.pricing.snapshots is not None else None
    u = snapshot.underlying(book.market.underlying_id) if snapshot is not None else None
    if u is None:
        return None
    q = shift.quantity
    if q == Quantity.TIME:
        t = book.batch.columns.get("time_to_expiry")
        return None if t is None else np.asarray(t, dtype=np.float64)
    if q == Quantity.SPOT:
        return np.array([u.level]) if shift.matches(u.underlying_id) else None
    if not ((q == Quantity.ZERO_RATE and shift.matches(u.discount_curve))
            or (q == Quantity.DIVIDEND_YIELD and u.dividend_curve and shift.matches(u.dividend_curve))
            or (q == Quantity.VOL and u.vol_surface and shift.matches(u.vol_surface))
            or (q in HESTON and shift.matches(u.underlying_id))):
        return None
    if id(book) not in markets:
        try:
            batch = revaluer.pricing.with_snapshot_spot(book.batch, book.market)
            markets[id(book)] = (batch, revaluer.pricing.resolve_market(book.spec, batch, book.market, book.fields))
        except ServiceError:
            markets[id(book)] = None
    if markets[id(book)] is None:
        return None
    market = markets[id(book)][1][0]
    column = {Quantity.ZERO_RATE: "rate", Quantity.DIVIDEND_YIELD: "dividend_yield",
              Quantity.VOL: "volatility"}.get(q) or HESTON[q]
    values = getattr(market, column, None)
    return None if values is None else np.asarray(values, dtype=np.float64)


def check_bumps_move(revaluer: "ScenarioRevaluer", books: Sequence, plan: BumpSet, bumps_path: str) -> dict:
    """INVALID_ARGUMENT on ``bumps_path[i]`` for every bump that cannot move its quantity at
    the base level (before any revaluation: its delta and gamma would be 0, or 0/0, with no
    error). A relative or log bump moves every nonzero level iff 1 + m h (exp(m h)) is not 1
    for each multiple m the plan takes, so at least 2^-52; an absolute one must move the
    largest magnitude L the books' trades read (every book, every row the shift reaches at
    full weight), L + m h != L, so at least spacing(L), 2^-52 of L; and every bump at least
    MIN_BUMP, so that h^2 does not underflow. Returns the books' markets it resolved (by
    id(book): revalue_portfolio's ``resolved``, so that the revaluation reads them once)."""
    bad = Violations()
    scenarios = plan.scenarios
    start, markets = 0, {}
    for i, shift in enumerate(scenarios.shifts):
        comps = range(start, start + shift.components)
        start += shift.components
        if not len(comps):
            continue
        h = float(plan.h[comps[0]])
        ms = (1.0,) if shift.quantity == Quantity.TIME else SCHEMES[plan.scheme]  # (a corner: the same multiples)
        if shift.kind == ShiftKind.ABSOLUTE or shift.quantity == Quantity.TIME:
            levels = [lv[np.isfinite(lv)] for lv in (_bump_levels(revaluer, b, shift, markets) for b in books) if lv is not None]
            level = max((float(np.max(np.abs(lv))) for lv in levels if lv.size), default=0.0)
            moves = all((level + m * h) != level for m in ms)
            least = max(MIN_BUMP, float(np.spacing(level)))
            what = f"an absolute bump must move the largest base level it reaches ({level:.17g})"
            rel = f", {least / level:.3g} of that level" if level else ""
        else:
            size = np.array(ms) * h
            moves = bool(np.all((np.exp(size) if shift.kind == ShiftKind.LOG else 1.0 + size) != 1.0))
            least, rel = max(MIN_BUMP, float(np.finfo(np.float64).eps)), " of the base level"
            what = f"a {shift.kind.name.lower()} bump must move its quantity: 1 + h != 1"
        if not moves or h < MIN_BUMP:
            bad.add(f"{bumps_path}[{i}]", f"{h!r} cannot move shift {shift.name!r}: {what}; the smallest bump that "
                                          f"does is about {least:.3g}{rel}")
    bad.raise_if_any()
    return {k: v for k, v in markets.items() if v is not None}


def derivatives(bumps: BumpSet, pnl: np.ndarray, cross: bool = False):
    """(delta, gamma, cross gamma or None) of each row of ``pnl`` (rows, bump scenarios:
    V(bumped) - V(0), quantity included): delta and gamma (rows, components) by the
    scheme's differences (a time roll: theta = V(+h) - V(0) over h, gamma 0); with
    ``cross``, (rows, components, components), gamma on the diagonal and the corners'
    mixed differences off it."""
    with np.errstate(over="ignore", invalid="ignore"):  # a huge P&L is a non-finite derivative: a failed trade
        return _derivatives(bumps, pnl, cross)


def _derivatives(bumps: BumpSet, pnl: np.ndarray, cross: bool):
    h, scheme = bumps.h, bumps.scheme
    roll = bumps.time
    p1 = pnl[:, bumps.first]
    p2 = pnl[:, np.where(roll, bumps.first, bumps.second)]
    if scheme == "central":   # V(+h), V(-h); V(0) - V(0) = 0 on the P&L scale
        delta, gamma = (p1 - p2) / (2 * h), (p1 + p2) / h ** 2
    elif scheme == "forward":  # V(+h), V(+2h)
        delta, gamma = p1 / h, (p2 - 2 * p1) / h ** 2
    else:                      # V(-h), V(-2h)
        delta, gamma = -p1 / h, (p2 - 2 * p1) / h ** 2
    if roll.any():
        delta[:, roll] = p1[:, roll] / h[roll]
        gamma[:, roll] = 0.0
    if not cross:
        return delta, gamma, None
    k = len(h)
    g = np.zeros((pnl.shape[0], k, k))
    g[:, np.arange(k), np.arange(k)] = gamma
    if len(bumps.pairs):
        i, j = bumps.pairs[:, 0], bumps.pairs[:, 1]
        c = bumps.corners
        if scheme == "central":
            mixed = (pnl[:, c[:, 0]] - pnl[:, c[:, 1]] - pnl[:, c[:, 2]] + pnl[:, c[:, 3]]) / (4 * h[i] * h[j])
        else:  # (V(+-h_i, +-h_j) - V(+-h_i) - V(+-h_j) + V(0)) / (h_i h_j)
            mixed = (pnl[:, c[:, 0]] - pnl[:, bumps.first[i]] - pnl[:, bumps.first[j]]) / (h[i] * h[j])
        g[:, i, j] = mixed
        g[:, j, i] = mixed
    return delta, gamma, g


def _unexplained(delta, gamma, cross, errors, base_errors, prefix: str) -> list[ScenarioError]:
    """An error for every (trade, component) whose delta, gamma or cross gamma is NaN and
    that no bumped scenario's error names (the trade's base value failed, or the difference
    did): a NaN always comes with its error."""
    bad = ~(np.isfinite(delta) & np.isfinite(gamma))
    if cross is not None:
        bad |= ~np.isfinite(cross).all(axis=2)
    named = {(e.trade, e.scenario) for e in errors}
    base = {}
    for e in base_errors:
        base.setdefault(e.row, e)
    out = []
    for trade, component in zip(*np.nonzero(bad)):
        trade, component = int(trade), int(component)
        if (trade, component) in named:
            continue
        b = base.get(trade)
        out.append(ScenarioError(trade, component, b.code, b.field, f"the base value failed: {b.message}")
                   if b is not None else
                   ScenarioError(trade, component, int(Code.OUT_OF_RANGE), f"{prefix}bumps",
                                 "the finite difference is not finite (the bumped values are too far apart "
                                 "for the bump: try a larger or smaller one)"))
    return out


def sensitivities(revaluer: "ScenarioRevaluer", books: Sequence[Book], shifts, bumps, scheme: str, smile: Smile,
                  *, should_continue=None, prefix: str = "", cross: bool = False) -> Sensitivities:
    """Every trade's delta and gamma per component by full revaluation (see bump_set); with
    ``cross``, every cross derivative too."""
    plan = bump_set(shifts, bumps, scheme, smile, prefix, cross=cross)
    revaluer.validate_portfolio(books, plan.scenarios, prefix)
    resolved = check_bumps_move(revaluer, books, plan, f"{prefix}bumps")
    r = revaluer.revalue_portfolio(books, plan.scenarios, should_continue=should_continue, scenarios_path=prefix,
                                   resolved=resolved)
    blocks = list(r.blocks)
    cube = np.vstack([b.pnl for b in blocks]) if blocks else np.zeros((0, plan.scenarios.scenarios))
    # an error names the trade and the component whose bump failed (a corner's: its first)
    errors = [ScenarioError(e.trade, int(plan.component[e.scenario]), e.code, e.field, e.message)
              for b in blocks for e in b.errors]
    delta, gamma, g = derivatives(plan, cube, cross)
    errors += _unexplained(delta, gamma, g, errors, r.base_errors, prefix)
    return Sensitivities(plan.scenarios.component_labels(), delta, gamma, errors, r.market_used, r.priced_by, g)
