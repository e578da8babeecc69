"""Pricing use cases: one trade, columnar batches (in cancellable chunks), implied vol.

Independent of transport: inputs are domain objects, outputs plain results, failures
:class:`ServiceError`. ``fields`` maps the kernels' input names (option_type, strike,
time_to_expiry, underlying, rate, dividend_yield, volatility, price) and ``settings`` to the
caller's own field paths, so that every error names the field as the caller wrote it.

Budgets: every request's cost is estimated before it runs (pricegrid.server.domain.cost) and
refused with RESOURCE_EXHAUSTED over the cap of its call class (``Limits.max_cost_unary_s``
for one trade, ``max_cost_batch_s`` for a batch). A call's deadline and cancellation travel
in a :class:`Watch`: checked between chunks, and polled inside the kernels of the engines
whose spec says ``polls_stop`` (Monte Carlo, American, Heston) and of the implied-vol batch,
which stop within a few milliseconds of work and leave ``CANCELLED`` in the rows they did not
finish.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Mapping, NamedTuple, Optional, Sequence

import numpy as np

from pricegrid.server.domain import cost as _cost
from pricegrid.server.domain.catalogue import DEFAULT_SETTINGS, Catalogue, EngineSpec, Settings
from pricegrid.server.domain.errors import Code, FieldViolation, ServiceError, invalid
from pricegrid.server.domain.instruments import (
    CashDividends, EuropeanOption, EuropeanOptionBatch, MarketBatch, MarketInputs, MarketUsed, SnapshotMarket,
    check_expiry_dates,
)
from pricegrid.server.domain.models import IMPLIED_VOL_REFS, Engine, Measure, Model, ModelRef
from pricegrid.server.domain.products import ProductBatch, unread_inputs
from pricegrid.server.pricers import catalogue as pricers
from pricegrid.server.pricers import status as _st
from pricegrid.server.pricers.analytic_european import price_european_values
from pricegrid.server.pricers.implied_vol import ImpliedVolBatch, implied_vol_european_batch, implied_vol_european_one
from pricegrid.server.service import rows as _rows
from pricegrid.server.pricers.market_columns import FusedMarket, PreparedMarket
from pricegrid.server.service.market import prepare as prepare_snapshot
from pricegrid.server.service.market import resolve as resolve_snapshot

#: a callable the batch loop asks between chunks: None to go on, or the Code to stop with
#: (a :class:`Watch` is one, which the kernels that poll can read as well)
ShouldContinue = Callable[[], Optional[Code]]


class Watch:
    """One call's deadline and cancellation, shared with the kernels (ext/pg_stop.h).

    The transport makes one per call with the time the call may take (``deadline_s`` from
    now; None: no deadline) and, optionally, ``is_active`` (the transport's own view of the
    caller), and calls :meth:`cancel` when the caller goes away (a gRPC termination callback,
    from any thread). Called, it is a :data:`ShouldContinue`. ``block`` is the stop block the
    kernels poll: [STOP_FLAG] set by :meth:`cancel`, [STOP_DEADLINE] the deadline in
    ``time.monotonic_ns()``, [STOP_REASON] written by a kernel that stopped.

    ``trace``: the call's tracing (None: off), anything whose ``span(name, attributes)`` is
    a context manager; the chunk loops open one span per chunk with it."""

    __slots__ = ("block", "deadline_ns", "_is_active", "trace")

    def __init__(self, deadline_s: Optional[float] = None, is_active: Optional[Callable[[], bool]] = None,
                 trace=None):
        self.trace = trace
        self.block = np.zeros(_st.STOP_WORDS, dtype=np.int64)
        self.deadline_ns = None if deadline_s is None else time.monotonic_ns() + max(0, int(deadline_s * 1e9))
        if self.deadline_ns is not None:
            self.block[_st.STOP_DEADLINE] = max(1, self.deadline_ns)
        self._is_active = is_active

    def cancel(self, *_args) -> None:
        """Stop: the kernels see it at their next poll (any thread may call this)."""
        self.block[_st.STOP_FLAG] = 1

    def __call__(self) -> Optional[Code]:
        if self.block[_st.STOP_FLAG] or (self._is_active is not None and not self._is_active()):
            return Code.CANCELLED
        if self.deadline_ns is not None and time.monotonic_ns() >= self.deadline_ns:
            return Code.DEADLINE_EXCEEDED
        return None

    def stopped(self) -> Optional[Code]:
        """Why a kernel stopped (None: it did not)."""
        reason = int(self.block[_st.STOP_REASON])
        if not reason:
            return None
        return Code.DEADLINE_EXCEEDED if reason == _st.STOP_DEADLINE_EXCEEDED else Code.CANCELLED


@dataclass(frozen=True)
class Limits:
    max_rows: int = 1_000_000
    chunk_rows: int = 262_144
    kernel_threads: int = 1
    max_row_errors: int = 100
    # Monte Carlo: paths per option, and paths x rows per request (the work a call may ask)
    max_paths: int = 10_000_000
    max_path_rows: int = 200_000_000
    # estimated cost (pricegrid.server.domain.cost, core-seconds of the reference machine) a
    # call may ask: one trade (Price, a PriceStream trade), a batch
    max_cost_unary_s: float = 2.0
    max_cost_batch_s: float = 300.0


class PriceResult(NamedTuple):
    price: float
    greeks: dict  # Measure -> float, only those asked for
    forward: float
    discount_factor: float
    time_to_expiry: float
    volatility: float
    priced_by: ModelRef
    standard_error: float = 0.0  # Monte Carlo price
    details: tuple = ()  # (Measure, GreekMethod, standard error) per measure
    market_used: Optional[MarketUsed] = None  # set when the market came from a snapshot


class ImpliedVolResult(NamedTuple):
    volatility: float
    forward: float
    discount_factor: float
    time_to_expiry: float
    priced_by: ModelRef


@dataclass
class BatchResult:
    rows: int
    measures: tuple[Measure, ...]
    values: np.ndarray  # (k, rows)
    row_codes: np.ndarray  # google.rpc.Code per row
    errors: list
    error_count: int
    forward: Optional[np.ndarray]
    discount_factor: Optional[np.ndarray]
    time_to_expiry: Optional[np.ndarray]
    volatility: Optional[np.ndarray]
    priced_by: ModelRef
    compute_seconds: float = 0.0
    threads: int = 1
    chunks: int = 0
    extra: dict = field(default_factory=dict)
    methods: tuple = ()  # GreekMethod per measure (library engines)
    stderr: Optional[np.ndarray] = None  # (k, rows) Monte Carlo standard errors
    market_used: Optional[MarketUsed] = None  # set when the market came from a snapshot


def _slice(col: Optional[np.ndarray], a: int, b: int) -> Optional[np.ndarray]:
    if col is None or isinstance(col, CashDividends) or len(col) == 1:  # (cash dividends: every row's)
        return col
    return col[a:b]


def _rows_of(batch, a: int, b: int):
    """Rows [a, b) of every column of a batch dataclass (broadcast columns stay whole)."""
    return type(batch)(*(_slice(getattr(batch, f.name), a, b) for f in dataclasses.fields(batch)))


def _full(col: Optional[np.ndarray], rows: int) -> Optional[np.ndarray]:
    if col is None or len(col) == rows:
        return col
    return np.broadcast_to(col, (rows,))


@dataclasses.dataclass
class _OnePass:
    """A snapshot underlying left for the engine to read in its pricing pass: the prepared
    market, the request's inline fields, and, after the run, the most cash dividends a row
    took and (when kept) the market columns the engine wrote."""

    prepared: PreparedMarket
    inline: MarketBatch
    dividends: int = 0
    columns: Optional[tuple] = None

    def batch(self, batch: ProductBatch) -> MarketBatch:
        """The rows' market columns: those the engine wrote, else computed now (the same
        numbers)."""
        if self.columns is None:
            c = self.prepared.columns(*_per_row_times(batch.columns["time_to_expiry"], batch.columns.get("strike")))
            self.columns = (c.level, c.rate, c.dividend_yield, c.vol)
        level, rate, q, vol = self.columns
        return dataclasses.replace(self.inline, underlying=level, rate=rate, dividend_yield=q, volatility=vol)


def _per_row_times(times: np.ndarray, strikes: Optional[np.ndarray]):
    """(times, strikes) of equal length: one of them broadcast (length 1) is spread over the
    other's rows, as the market kernel reads them in pairs."""
    if strikes is not None and len(strikes) != len(times):
        n = max(len(strikes), len(times))
        times = np.ascontiguousarray(np.broadcast_to(times, (n,)))
        strikes = np.ascontiguousarray(np.broadcast_to(strikes, (n,)))
    return times, strikes


def _no_marker(rows: int) -> ContextManager:
    return contextlib.nullcontext()


class PricingService:
    def __init__(self, limits: Limits = Limits(), snapshots: Optional[Callable[[str], object]] = None, *,
                 large_calls: Optional[Callable[[int], ContextManager]] = None):
        """``snapshots``: snapshot id -> the stored Snapshot or None (the market data service's
        ``snapshot``); without it, prices against snapshots are refused. ``large_calls``:
        ``large_calls(rows)`` is entered around every batch (the app's MallocTrimmer gives the
        memory of large ones back to the OS once they are over)."""
        self.limits = limits
        self.snapshots = snapshots
        self.large_calls = large_calls or _no_marker
        #: every engine the service prices with (data; the transport reads it from here)
        self.catalogue: Catalogue = pricers.CATALOGUE
        self._fast_specs = {
            int(m): self.catalogue.find("european", m, Engine.ANALYTIC)
            for m in (Model.BLACK_SCHOLES_MERTON, Model.BLACK_76, Model.BACHELIER)
        }

    # ------------------------------------------------------------------ helpers
    def threads_for(self, requested: int) -> int:
        cap = max(1, self.limits.kernel_threads)
        return cap if requested <= 0 else min(requested, cap)

    def _chunks(self, rows: int):
        step = max(1, self.limits.chunk_rows)
        return [(a, min(a + step, rows)) for a in range(0, rows, step)] or [(0, 0)]

    def check_rows(self, rows: int, field_path: str = "rows") -> None:
        if rows > self.limits.max_rows:
            raise ServiceError(
                Code.RESOURCE_EXHAUSTED,
                f"{field_path}: {rows} rows exceed the server's cap of {self.limits.max_rows} per request;"
                " split the batch (RiskClient does)",
                [FieldViolation(field_path, f"at most {self.limits.max_rows} rows per request")],
            )

    def _each_chunk(self, chunks, should_continue: Optional[ShouldContinue]):
        """The chunks, asking ``should_continue`` before each (stops with its code); with a
        Watch that traces, each chunk's work is a span (rows [start, stop))."""
        trace = getattr(should_continue, "trace", None)
        for a, b in chunks:
            self._stop(should_continue)
            if trace is None:
                yield a, b
            else:
                with trace.span("chunk", {"pricegrid.chunk.start": a, "pricegrid.chunk.stop": b,
                                          "pricegrid.chunk.count": len(chunks)}):
                    yield a, b

    @staticmethod
    def stop_if_asked(should_continue: Optional[ShouldContinue]) -> None:
        """Raise CANCELLED or DEADLINE_EXCEEDED if ``should_continue`` says to stop."""
        PricingService._stop(should_continue)

    @staticmethod
    def _stop(should_continue: Optional[ShouldContinue]) -> None:
        if should_continue is None:
            return
        code = should_continue()
        if code is not None:
            what = "deadline exceeded" if code == Code.DEADLINE_EXCEEDED else "cancelled by the caller"
            raise ServiceError(code, f"batch stopped between chunks: {what}")

    # ------------------------------------------------------------------ market by reference
    def with_snapshot_spot(self, batch: ProductBatch, market) -> ProductBatch:
        """``batch`` with the inputs a trade on a snapshot left to the spot
        (``SnapshotMarket.spot_inputs``: a lookback's running extremes, unset for a new trade)
        set to the snapshot's spot, every row's: the traded level, as an inline trade's unset
        extremes are the spot it sends (an escrowed level would put them above the spot of
        an engine that takes the dividends off itself). Unchanged when nothing is left to the
        spot or the snapshot or its underlying is not stored (:meth:`resolve_market` says so)."""
        if not isinstance(market, SnapshotMarket) or not market.spot_inputs:
            return batch
        snapshot = self.snapshots(market.snapshot_id) if self.snapshots is not None else None
        underlying = snapshot.underlying(market.underlying_id) if snapshot is not None else None
        if underlying is None or underlying.level is None:
            return batch
        spot = np.array([underlying.level], dtype=np.float64)
        return dataclasses.replace(batch, columns={**batch.columns, **{name: spot for name in market.spot_inputs}})

    def resolve_market(self, spec: EngineSpec, batch: ProductBatch, market, fields: Mapping[str, str], *,
                       one_pass: bool = False):
        """(MarketBatch, MarketUsed or None, fields): a snapshot reference turned into the
        market columns of the batch's rows; inline markets pass through. With ``one_pass``
        and an engine that reads a snapshot in its pricing pass (``spec.fuses_market``), the
        first item is a ``_OnePass`` instead: the prepared underlying, read by the kernel."""
        if not isinstance(market, SnapshotMarket):
            return market, None, fields
        rate_path = fields.get("rate", "market.rate")
        snap_path = rate_path.replace("market.rate", "market.snapshot_id")
        und_path = rate_path.replace("market.rate", "market.underlying_id")
        snapshot = self.snapshots(market.snapshot_id) if self.snapshots is not None else None
        if snapshot is None:
            what = f"no snapshot {market.snapshot_id!r} is stored" if self.snapshots is not None else \
                "this service holds no market snapshots"
            raise ServiceError(Code.NOT_FOUND, f"{snap_path}: {what}", [FieldViolation(snap_path, what)])
        _check_expiry_axis(market, snapshot)
        inline_vol = market.inline.volatility
        # no vol given (None: the reader's "unset"): the surface's; a vol given is used as given
        want_vol = spec.model != Model.HESTON and inline_vol is None
        if want_vol and spec.model == Model.BACHELIER:
            # a surface holds Black (lognormal) vols; read as a normal vol, 0.4 priced an
            # at-the-money EUA option at 1e-7 instead of about 12 (the vol unit is the price's)
            vol_path = rate_path.replace("market.rate", "market.volatility")
            what = ("Bachelier needs a normal (absolute) vol, and the snapshot's surfaces hold Black (lognormal) "
                    "vols: send volatility")
            raise ServiceError(Code.INVALID_ARGUMENT, f"{vol_path}: {what}", [FieldViolation(vol_path, what)])
        if one_pass and spec.fuses_market and want_vol:
            prepared, used = prepare_snapshot(market.snapshot_id, snapshot, market.underlying_id, spec.underlying,
                                              und_path, want_vol=True)
            return _OnePass(prepared, market.inline), used, {**fields, "underlying": und_path,
                                                             "volatility": und_path}
        times, strikes = _per_row_times(batch.columns["time_to_expiry"], batch.columns.get("strike"))
        level, rate, q, vol, used = resolve_snapshot(
            market.snapshot_id, snapshot, market.underlying_id, spec.underlying, times,
            und_path, strikes=strikes, want_vol=want_vol,
        )
        cash = None
        if used.dividends and batch.product.name != "european":
            # spot minus the dividends' present value is the escrowed model of a European
            # payoff; an early-exercise or path-dependent payoff sees the dividends on the path,
            # which only an engine that escrows them on its own grid can price
            if not spec.cash_dividends:
                raise _cash_dividends_refused(spec, batch, market.underlying_id, used.dividends, und_path,
                                              rate_path.replace("market.rate", "engine"))
            level, cash = _cash_dividends(snapshot, market.underlying_id)
        resolved = dataclasses.replace(market.inline, underlying=level, rate=rate, dividend_yield=q,
                                       volatility=vol if want_vol else inline_vol, cash_dividends=cash)
        fields = {**fields, "underlying": und_path}
        if want_vol:  # a vol the surface could not give is the underlying's surface's fault
            fields["volatility"] = und_path
        return resolved, used, fields

    # ------------------------------------------------------------------ one trade
    def price(
        self,
        spec: EngineSpec,
        batch: ProductBatch,
        market: MarketBatch,
        measures: Sequence[Measure],
        fields: Mapping[str, str],
        settings: Settings = DEFAULT_SETTINGS,
        *,
        should_continue: Optional[ShouldContinue] = None,
    ) -> PriceResult:
        """One trade of any product: a batch of one (every column of length 1) through the
        engine's runner. The measures come back as price first, then by Measure number.
        ``market``: a MarketBatch, or a SnapshotMarket resolved here (as :meth:`price_batch`
        resolves it: the same bits as the trade's row in a batch). ``should_continue``
        (a :class:`Watch` for the kernels that poll it): the call's deadline and
        cancellation; its cost is capped by ``Limits.max_cost_unary_s``."""
        unread = unread_inputs(batch)
        if unread:  # an input this trade's payoff does not read: refused, never ignored
            found = [FieldViolation(fields.get(name, name), f"{why} (got {batch.columns[name][0].item()!r})")
                     for name, _, why in unread]
            raise ServiceError(Code.INVALID_ARGUMENT, "; ".join(f"{v.field}: {v.description}" for v in found), found)
        # a snapshot read in the pricing pass, as a batch reads it: the same bits as a row of
        # PriceBatch (resolved to columns first, the last bits of the curves' numbers differ)
        batch = self.with_snapshot_spot(batch, market)
        market, used, fields = self.resolve_market(spec, batch, market, fields, one_pass=True)
        result = self._price_one(spec, batch, market, measures, fields, settings, should_continue)
        if isinstance(market, _OnePass):
            used = used._replace(dividends=market.dividends)
        return result._replace(market_used=used) if used is not None else result

    def _price_one(self, spec, batch, market, measures, fields, settings, should_continue=None) -> PriceResult:
        measures = (Measure.PRICE,) + tuple(sorted(set(measures) - {Measure.PRICE}))
        one_pass = isinstance(market, _OnePass)
        if self._fast_specs.get(int(spec.model)) is spec and not one_pass:
            return self._price_fast_one(spec, batch, market, measures, fields)
        out = BatchOutputs.new(len(measures), 1, stderr=spec.monte_carlo, effective=spec.kernel_writes_forward)
        if one_pass and self._fast_specs.get(int(spec.model)) is spec:
            status = self._run_one_pass_one(spec, batch, market, measures, out)
        else:
            settings_path = fields.get("settings", "settings")
            self.check_settings(spec, settings, 1, settings_path)
            estimate = self.check_cost(spec, batch, market, measures, settings, 1, unary=True, prefix=settings_path)
            status, _ = self._run(spec, batch, market, measures, 1, 1, settings, should_continue, out, estimate,
                                  settings_path)
        values, stderr = out.values, out.stderr
        if one_pass:  # the market columns the engine read (kept: the forward was wanted)
            market = market.batch(batch)
        if status[0]:
            _expiry_first(status, fields)
            _rows.raise_for_status(
                int(status[0]), spec.model, fields, _row_values(batch, market, 0), product=batch.product,
            )
        if spec.kernel_writes_forward:
            fwd, df = out.forward, out.discount_factor
        else:
            fwd, df = _forward_and_discount(spec, batch, market)
        t, vol = _time_and_volatility(spec, batch, market)
        se = stderr[:, 0] if stderr is not None else np.zeros(len(measures))
        details = tuple((m, spec.methods[m], float(se[j])) for j, m in enumerate(measures))
        greeks = {m: float(values[j, 0]) for j, m in enumerate(measures) if m != Measure.PRICE}
        return PriceResult(
            float(values[0, 0]), greeks, float(fwd[0]), float(df[0]), float(t[0]), float(vol[0]), spec.ref,
            float(se[0]), details,
        )

    @staticmethod
    def _run_one_pass_one(spec, batch, market: "_OnePass", measures, out: "BatchOutputs") -> np.ndarray:
        """One trade of an engine with a one-row fast path on a snapshot read in its pricing
        pass: the engine's runner on the row, as :meth:`_run` calls it for a one-row batch
        (the same kernel call, so the same bits) without the batch's chunks, polls and cost
        check (an analytic European row: nanoseconds). The row's status; the market columns
        the kernel read and its cash dividends are left in ``market``."""
        codes = np.asarray([int(m) for m in measures], dtype=np.int32)
        status = np.empty(1, dtype=np.int32)
        market.columns = tuple(np.empty(1) for _ in range(4))
        fused = FusedMarket(market.prepared, market.columns)
        pricers.runner(spec)(batch, fused, codes, out.values, None, status, 1, DEFAULT_SETTINGS,
                             effective=(out.forward, out.discount_factor))
        market.dividends = fused.dividends
        return status

    def _price_fast_one(self, spec, batch, market, measures, fields) -> PriceResult:
        """A trade of an engine with a one-row fast path: the same numbers, bit for bit, as the
        front office's lean path gives for the same trade."""
        c = batch.columns
        mask = 0
        for m in measures:
            mask |= 1 << int(m)
        t = float(c["time_to_expiry"][0])
        vol = float(market.volatility[0])
        out, _ = self.price_fast(
            int(spec.model), int(c["option_type"][0]), float(c["strike"][0]), t, float(market.underlying[0]),
            float(market.rate[0]), float(market.dividend_yield[0]), vol, mask,
        )
        if out[0]:
            bits = out[0] & ~_read_at_expiry(fields) if out[0] & _st.BAD_TIME else out[0]
            _rows.raise_for_status(bits, spec.model, fields, _row_values(batch, market, 0), product=batch.product)
        greeks = {m: out[2 + int(m)] for m in measures if m != Measure.PRICE}
        details = tuple((m, spec.methods[m], 0.0) for m in measures)
        return PriceResult(out[3], greeks, out[1], out[2], t, vol, spec.ref, 0.0, details)

    def price_fast(self, model: int, option_type: int, strike: float, time: float, underlying: float,
                   rate: float, dividend_yield: float, volatility: float, measures_mask: int):
        """The analytic European engine's one-row fast path (the same kernel formulas as its
        batch runner) for the front office: the kernel's tuple (status, forward, df, price,
        delta, ..., charm) and the engine's spec, for inputs already known to be of that
        engine's shape (model 1..3). A status other than 0 means: call :meth:`price` for the
        error."""
        out = price_european_values(model, option_type, strike, time, underlying, rate, dividend_yield, volatility,
                                    measures_mask)
        return out, self._fast_specs[model]

    def implied_vol(
        self, model: Model, option: EuropeanOption, market: MarketInputs, price: float, fields: Mapping[str, str]
    ) -> ImpliedVolResult:
        status, vol, forward, df = implied_vol_european_one(model, option, market, price)
        if status:
            values = {**option._asdict(), **market._asdict(), "price": price}
            _rows.raise_for_status(status, model, fields, values, implied_vol=True)
        return ImpliedVolResult(vol, forward, df, option.time_to_expiry, IMPLIED_VOL_REFS[model])

    # ------------------------------------------------------------------ batches
    def implied_vol_batch(
        self,
        model: Model,
        options: EuropeanOptionBatch,
        market: MarketBatch,
        price: np.ndarray,
        *,
        rows: int,
        fields: Mapping[str, str],
        threads: int = 0,
        effective_inputs: bool = True,
        should_continue: Optional[ShouldContinue] = None,
    ) -> BatchResult:
        with self.large_calls(rows):
            return self._implied_vol_batch(model, options, market, price, rows, fields, threads, effective_inputs,
                                           should_continue)

    def _implied_vol_batch(self, model, options, market, price, rows, fields, threads, effective_inputs,
                           should_continue) -> BatchResult:
        self.check_rows(rows)
        threads = self.threads_for(threads)
        chunks = self._chunks(rows)
        t0 = time.perf_counter()
        whole = ImpliedVolBatch(
            np.empty(rows), np.empty(rows, dtype=np.int32),
            np.empty(rows) if effective_inputs else None, np.empty(rows) if effective_inputs else None, 0,
        )
        watch = should_continue if isinstance(should_continue, Watch) else None  # the kernel polls it
        for a, b in self._each_chunk(chunks, should_continue):
            implied_vol_european_batch(
                model,
                _rows_of(options, a, b),
                _rows_of(market, a, b),
                _slice(price, a, b),
                rows=b - a,
                threads=threads,
                out=ImpliedVolBatch(
                    whole.volatility[a:b], whole.status[a:b], _slice(whole.forward, a, b),
                    _slice(whole.discount_factor, a, b), 0,
                ),
                stop=None if watch is None else watch.block,
            )
            _raise_if_stopped(watch, whole.status, a, b, rows)
        vol, status, forward, df = whole.volatility, whole.status, whole.forward, whole.discount_factor
        if market.volatility is not None:  # a vol column sent is not read; a row with a bad one fails
            bad = np.broadcast_to(~(np.isfinite(market.volatility) & (market.volatility >= 0.0)), (rows,))
            if bad.any():
                status[bad] |= _st.BAD_VOL
                for col in (vol, forward, df):  # as the kernel leaves its failed rows
                    if col is not None:
                        col[bad] = np.nan
        elapsed = time.perf_counter() - t0
        return self._implied_vol_result(
            model, rows, vol.reshape(1, rows), status, forward, df, options, market, price, fields, elapsed, threads,
            len(chunks), effective_inputs,
        )

    # ------------------------------------------------------------------ options library
    def check_settings(self, spec: EngineSpec, settings: Settings, rows: int, prefix: str = "settings") -> None:
        """Monte Carlo work within the server's caps (RESOURCE_EXHAUSTED names the field)."""
        if not spec.monte_carlo:
            return
        if settings.paths < 32:
            raise ServiceError(
                Code.INVALID_ARGUMENT,
                f"{prefix}.paths: Monte Carlo needs at least 32 paths (got {settings.paths})",
                [FieldViolation(f"{prefix}.paths", "at least 32")],
            )
        if settings.paths > self.limits.max_paths:
            raise ServiceError(
                Code.RESOURCE_EXHAUSTED,
                f"{prefix}.paths: {settings.paths} paths exceed the server's cap of {self.limits.max_paths} per option",
                [FieldViolation(f"{prefix}.paths", f"at most {self.limits.max_paths}")],
            )
        if settings.paths * rows > self.limits.max_path_rows:
            cap = self.limits.max_path_rows
            raise ServiceError(
                Code.RESOURCE_EXHAUSTED,
                f"{prefix}.paths: {rows} rows x {settings.paths} paths exceed the server's cap of {cap} paths per"
                " request; send fewer rows per request or fewer paths",
                [FieldViolation(f"{prefix}.paths", f"rows x paths at most {cap}")],
            )

    def check_cost(self, spec: EngineSpec, batch: ProductBatch, market, measures, settings: Settings, rows: int, *,
                   unary: bool, prefix: str = "settings") -> Optional[_cost.Estimate]:
        """The request's estimated cost (pricegrid.server.domain.cost), refused with
        RESOURCE_EXHAUSTED over the cap of its call class, naming the setting that drives it."""
        estimate = _cost.estimate(spec, batch.product.name, batch.columns, batch.schedule, market, measures,
                                  settings, rows)
        if estimate is None:
            return None
        cap = self.limits.max_cost_unary_s if unary else self.limits.max_cost_batch_s
        seconds = estimate.seconds
        if seconds > cap:
            what = "one trade" if unary else "one batch request"
            path = estimate.field if estimate.field == "rows" else prefix + estimate.field.removeprefix("settings")
            fix = "send fewer rows per request (RiskClient splits batches)" if path == "rows" else \
                f"lower {path}" + ("" if unary else " or send fewer rows per request")
            raise ServiceError(
                Code.RESOURCE_EXHAUSTED,
                f"{path}: {estimate.detail} is an estimated {seconds:.3g} core-seconds of work, over the server's"
                f" cap of {cap:g} core-seconds for {what}; {fix}",
                [FieldViolation(path, f"estimated cost at most {cap:g} core-seconds for {what}"
                                      f" (this request: {seconds:.3g})")],
            )
        return estimate

    def estimated_seconds(self, spec: EngineSpec, batch: ProductBatch, market, measures, settings: Settings) -> float:
        """The estimated cost of pricing ``batch`` (core-seconds; 0 for an engine without
        measured costs), as :meth:`check_cost` estimates it, without its cap."""
        estimate = _cost.estimate(spec, batch.product.name, batch.columns, batch.schedule, market, measures,
                                  settings, len(batch.columns["time_to_expiry"]))
        return 0.0 if estimate is None else estimate.seconds

    def _run(self, spec: EngineSpec, batch: ProductBatch, market: MarketBatch, measures, rows: int, threads: int,
             settings: Settings, should_continue, out: "BatchOutputs", estimate: Optional[_cost.Estimate] = None,
             settings_path: str = "settings"):
        """Rows [0, rows) through the engine's runner in chunks sized by its cost, writing into
        ``out``; the status bits per row and the number of chunks. A kernel that polls gets
        the call's stop block (``should_continue`` a :class:`Watch`); one that stopped ends
        the call with CANCELLED or DEADLINE_EXCEEDED."""
        codes = np.asarray([int(m) for m in measures], dtype=np.int32)
        status = np.empty(rows, dtype=np.int32)
        step = spec.chunk_rows(settings, self.limits.chunk_rows)
        if not spec.polls_stop and estimate is not None:  # seen between chunks only: ~20 ms each
            step = min(step, _cost.chunk_rows(estimate.max_row_ns, threads, self.limits.chunk_rows))
        chunks = [(a, min(a + step, rows)) for a in range(0, rows, step)] or [(0, 0)]
        run = pricers.runner(spec)
        watch = should_continue if isinstance(should_continue, Watch) and spec.polls_stop else None
        forward = spec.kernel_writes_forward and out.forward is not None
        one_pass = isinstance(market, _OnePass)
        if one_pass and out.forward is not None:  # the effective inputs are wanted: keep the columns
            market.columns = tuple(np.empty(rows) for _ in range(4))
        for a, b in self._each_chunk(chunks, should_continue):
            extra = {"effective": (out.forward[a:b], out.discount_factor[a:b])} if forward else {}
            if watch is not None:
                extra["stop"] = watch.block
            if one_pass:
                rows_market = FusedMarket(market.prepared, None if market.columns is None else
                                          tuple(c[a:b] for c in market.columns))
            else:
                rows_market = _rows_of(market, a, b)
            try:
                run(
                    batch.rows(a, b), rows_market, codes, out.values[:, a:b],
                    None if out.stderr is None else out.stderr[:, a:b], status[a:b], threads, settings, **extra,
                )
            except ValueError as exc:  # the kernel refused what it was given
                raise _kernel_refusal(exc, spec, settings_path) from exc
            _raise_if_stopped(watch, status, a, b, rows)
            if one_pass:
                market.dividends = max(market.dividends, rows_market.dividends)
        return status, len(chunks)

    def price_batch(
        self,
        spec: EngineSpec,
        batch: ProductBatch,
        market: MarketBatch,
        measures: Sequence[Measure],
        *,
        rows: int,
        fields: Mapping[str, str],
        threads: int = 0,
        effective_inputs: bool = True,
        should_continue: Optional[ShouldContinue] = None,
        settings: Settings = DEFAULT_SETTINGS,
        outputs: Optional["BatchOutputs"] = None,
    ) -> BatchResult:
        """Every product's batch, in cancellable chunks sized by the engine's cost.

        ``outputs``: the arrays to write into (e.g. views into the caller's reply, so that
        nothing is copied afterwards); by default new ones. Failed rows get NaN for every
        effective input, as for their measures."""
        with self.large_calls(rows):
            return self._price_batch(spec, batch, market, measures, rows, fields, threads, effective_inputs,
                                     should_continue, settings, outputs)

    def _price_batch(self, spec, batch, market, measures, rows, fields, threads, effective_inputs, should_continue,
                     settings, outputs) -> BatchResult:
        self.check_rows(rows)
        settings_path = fields.get("settings", "settings")
        self.check_settings(spec, settings, rows, settings_path)
        batch = self.with_snapshot_spot(batch, market)
        market, used, fields = self.resolve_market(spec, batch, market, fields, one_pass=True)
        measures = tuple(measures) or (Measure.PRICE,)
        estimate = self.check_cost(spec, batch, market, measures, settings, rows, unary=False, prefix=settings_path)
        threads = self.threads_for(threads)
        if outputs is None:
            outputs = BatchOutputs.new(len(measures), rows, stderr=spec.monte_carlo, effective=effective_inputs)
        t0 = time.perf_counter()
        status, chunks = self._run(spec, batch, market, measures, rows, threads, settings, should_continue, outputs,
                                   estimate, settings_path)
        elapsed = time.perf_counter() - t0
        unread = unread_inputs(batch)
        if unread:  # rows that set an input their payoff does not read fail, named (_rows.UNREAD)
            refused = np.broadcast_to(np.logical_or.reduce([m for _, m, _ in unread]) if len(unread) > 1
                                      else unread[0][1], (rows,))
            status[refused] |= _rows.UNREAD
            outputs.values[:, refused] = np.nan
            if outputs.stderr is not None:
                outputs.stderr[:, refused] = np.nan
        bad = int(np.count_nonzero(status))
        if bad:
            _expiry_first(status, fields)
        if isinstance(market, _OnePass):
            used = used._replace(dividends=market.dividends)
            if effective_inputs or bad:
                market = market.batch(batch)
        errors = []
        if bad:
            errors = _rows.row_errors(
                status, spec.model, fields, _columns(batch, market), cap=self.limits.max_row_errors,
                product=batch.product, unread=unread,
            )
        fwd = df = t = vol = None
        if effective_inputs:
            fwd, df = outputs.forward, outputs.discount_factor
            if not spec.kernel_writes_forward:
                f, d = _forward_and_discount(spec, batch, market)
                np.copyto(fwd, f)
                np.copyto(df, d)
            t, vol = (_full(c, rows) for c in _time_and_volatility(spec, batch, market))
            if bad:  # the inputs of a failed row are not "used": NaN, as its measures
                failed = status != 0
                t, vol = np.array(t), np.array(vol)
                for col in (fwd, df, t, vol):
                    col[failed] = np.nan
        return BatchResult(
            rows=rows, measures=measures, values=outputs.values,
            row_codes=_rows.row_codes(status) if bad else np.zeros(rows, dtype=np.int32),
            errors=errors, error_count=bad, forward=fwd, discount_factor=df, time_to_expiry=t, volatility=vol,
            priced_by=spec.ref, compute_seconds=elapsed, threads=threads, chunks=chunks,
            methods=tuple(spec.methods[m] for m in measures), stderr=outputs.stderr, market_used=used,
        )

    def _implied_vol_result(
        self, model, rows, values, status, forward, df, options, market, price, fields, elapsed, threads, chunks,
        effective_inputs,
    ) -> BatchResult:
        bad = int(np.count_nonzero(status))
        errors = []
        if bad:
            columns = {
                "option_type": options.option_type,
                "strike": options.strike,
                "time_to_expiry": options.time_to_expiry,
                "underlying": market.underlying,
                "rate": market.rate,
                "dividend_yield": market.dividend_yield,
                "volatility": market.volatility,
                "price": price,
            }
            errors = _rows.row_errors(status, model, fields, columns, cap=self.limits.max_row_errors, implied_vol=True)
        codes = _rows.row_codes(status) if bad else np.zeros(rows, dtype=np.int32)
        time_col = vol_col = None
        if effective_inputs:
            time_col = _full(options.time_to_expiry, rows)
            vol_col = values[0]
        return BatchResult(
            rows=rows,
            measures=(),
            values=values,
            row_codes=codes,
            errors=errors,
            error_count=bad,
            forward=forward,
            discount_factor=df,
            time_to_expiry=time_col,
            volatility=vol_col,
            priced_by=IMPLIED_VOL_REFS[model],
            compute_seconds=elapsed,
            threads=threads,
            chunks=chunks,
        )


#: the settings a kernel's ValueError may be about, by the word its message starts with
#: (ext/montecarlo.pyx, ext/american.pyx: "max_step = ...", "sobol needs ...", "unknown scheme ...")
_KERNEL_SETTINGS = {"paths": "paths", "seed": "seed", "max_step": "max_step", "sobol": "sobol",
                    "brownian_bridge": "brownian_bridge", "tree_steps": "tree_steps", "scheme": "american_scheme"}


def _kernel_refusal(exc: ValueError, spec: EngineSpec, settings_path: str) -> ServiceError:
    """A kernel's ValueError as the caller's error: INVALID_ARGUMENT naming the setting when
    it is about a setting (the kernels name it first), else INTERNAL: the service handed the
    kernel a shape it does not take, which is the server's bug, never the caller's settings."""
    text = str(exc)
    words = text.split(maxsplit=2)
    word = words[1] if words[:1] == ["unknown"] and len(words) > 1 else (words[0] if words else "")
    name = _KERNEL_SETTINGS.get(word)
    if name is not None:
        path = f"{settings_path}.{name}"
        return ServiceError(Code.INVALID_ARGUMENT, f"{path}: {text}", [FieldViolation(path, text)])
    return ServiceError(Code.INTERNAL, f"the {spec.ref.engine} kernel refused the inputs the server prepared: {text}")


def _check_expiry_axis(market: SnapshotMarket, snapshot) -> None:
    """Expiry dates on a snapshot start at its valuation date and count ACT/365F (its one time
    axis), else INVALID_ARGUMENT naming each: the snapshot's lookups would be made at another
    point in time than the trade's expiry. One valuation date and day count per batch: a
    batch fails as a whole, as for its other date fields."""
    off = check_expiry_dates(market, snapshot.valuation_date)
    if off:
        raise ServiceError(Code.INVALID_ARGUMENT, "; ".join(f"{f}: {why}" for f, why in off),
                           [FieldViolation(f, why) for f, why in off])


def _read_at_expiry(fields: Mapping[str, str]) -> int:
    """The status bits of the inputs a snapshot gave at each row's expiry (level, rates, the
    surface's vol; ``fields`` names them by the snapshot's underlying_id), and of overflow; 0
    for an inline market. A row whose expiry is bad has no market there: only the expiry is
    reported, not what was read from it."""
    und = fields.get("underlying", "")
    if not und.endswith("underlying_id"):
        return 0
    derived = _st.BAD_UNDERLYING | _st.BAD_RATE | _st.BAD_DIVIDEND | _st.NOT_FINITE
    if fields.get("volatility") == und:  # (the surface's vol; an inline one is the caller's)
        derived |= _st.BAD_VOL
    return derived


def _expiry_first(status: np.ndarray, fields: Mapping[str, str]) -> None:
    """Clears, in the rows whose expiry is bad, the bits of what was read at it (above)."""
    derived = _read_at_expiry(fields)
    if derived:
        status[(status & _st.BAD_TIME) != 0] &= np.int32(~derived)


def _raise_if_stopped(watch: Optional[Watch], status: np.ndarray, a: int, b: int, rows: int) -> None:
    """After a kernel ran rows [a, b) with the call's stop block: a kernel that stopped ends
    the call with CANCELLED or DEADLINE_EXCEEDED, saying how many rows were done."""
    code = None if watch is None else watch.stopped()
    if code is None:
        return
    done = a + int(np.count_nonzero((status[a:b] & _st.CANCELLED) == 0))
    what = "deadline exceeded" if code == Code.DEADLINE_EXCEEDED else "cancelled by the caller"
    raise ServiceError(code, f"stopped in the kernel after {done} of {rows} row(s): {what}")


def _cash_dividends(snapshot, underlying_id: str) -> tuple[np.ndarray, CashDividends]:
    """(the actual spot, the dividends with ex-time > 0) of a snapshot's underlying, for an
    engine that escrows them itself (at each row's flat rate, on its own grid)."""
    u = snapshot.underlying(underlying_id)
    live = [d for d in u.dividends if d.time > 0]
    return (np.array([u.level], dtype=np.float64),
            CashDividends(np.array([d.time for d in live], dtype=np.float64),
                          np.array([d.amount for d in live], dtype=np.float64)))


def _cash_dividends_refused(spec: EngineSpec, batch: ProductBatch, underlying_id: str, count: int, und_path: str,
                            engine_path: str) -> ServiceError:
    """INVALID_ARGUMENT for cash dividends an engine does not price, naming the engine that does."""
    what = f"{underlying_id} pays {count} cash dividend(s) before expiry"
    if batch.product.name == "american":
        fix = (f"ENGINE_{spec.engine.name} does not price cash dividends; set {engine_path} to ENGINE_BINOMIAL_TREE"
               " (escrowed-dividend model), or give the underlying a dividend curve instead")
        violations = [FieldViolation(und_path, what), FieldViolation(engine_path, fix)]
    else:
        fix = (f"they are priced for European options (escrowed model) and American options on ENGINE_BINOMIAL_TREE"
               f" only, not yet for {batch.product.name} options: give the underlying a dividend curve instead")
        violations = [FieldViolation(und_path, f"{what}; {fix}")]
    return ServiceError(Code.INVALID_ARGUMENT, "; ".join(f"{v.field}: {v.description}" for v in violations),
                        violations)


def _escrowed(batch: ProductBatch, market: MarketBatch) -> np.ndarray:
    """The spot the kernel prices on: with cash dividends (given to the engine with the actual
    spot), the spot less their present value at each row's flat rate, as the kernel escrows."""
    if market.cash_dividends is None:
        return market.underlying
    t = batch.columns["time_to_expiry"]
    return market.underlying - market.cash_dividends.present_value(market.rate, t)


def _row_values(batch: ProductBatch, market: MarketBatch, row: int) -> dict:
    """The inputs of one row by kernel name, for error messages."""
    return {name: col[row if len(col) > 1 else 0].item() for name, col in _columns(batch, market).items()
            if col is not None and len(col)}


@dataclass
class BatchOutputs:
    """The arrays a batch writes into: ``values`` (k, rows); ``stderr`` (k, rows) for Monte
    Carlo engines; the forward and discount factor per row (None: not wanted). Any of them
    may be views into a caller's buffer (a reply's bytes), each row of ``values`` contiguous."""

    values: np.ndarray
    stderr: Optional[np.ndarray] = None
    forward: Optional[np.ndarray] = None
    discount_factor: Optional[np.ndarray] = None

    @staticmethod
    def new(k: int, rows: int, *, stderr: bool, effective: bool) -> "BatchOutputs":
        return BatchOutputs(
            np.empty((k, rows)), np.empty((k, rows)) if stderr else None,
            np.empty(rows) if effective else None, np.empty(rows) if effective else None,
        )


def _columns(batch: ProductBatch, market: MarketBatch) -> dict:
    """Every input column by kernel name (the product's, then the market's), for row errors."""
    columns = dict(batch.columns)
    for name in ("underlying", "rate", "dividend_yield", "volatility", "v0", "kappa", "theta", "sigma", "rho"):
        columns[name] = getattr(market, name)
    columns["underlying"] = _escrowed(batch, market)
    return columns


def _forward_and_discount(spec: EngineSpec, batch: ProductBatch, market: MarketBatch):
    """Forward and discount factor per row (the batch's length, or 1 when every input is)."""
    t = batch.columns["time_to_expiry"]
    df = np.exp(-market.rate * t)
    if spec.underlying == "forward":
        fwd = market.underlying * np.ones_like(t)
    else:
        fwd = _escrowed(batch, market) * np.exp((market.rate - market.dividend_yield) * t)
    return fwd, df


def _time_and_volatility(spec: EngineSpec, batch: ProductBatch, market: MarketBatch):
    if spec.model != Model.HESTON:
        return batch.columns["time_to_expiry"], market.volatility
    with np.errstate(invalid="ignore"):  # a failed row's v0 < 0: NaN, as its other outputs
        vol = np.sqrt(market.v0)
    return batch.columns["time_to_expiry"], vol
