"""Pricing use cases: one trade, columnar batches (in cancellable chunks), implied vol.

Independent of transport: inputs are domain objects, outputs plain results, failures
:class:`ServiceError`. ``fields`` maps the kernels' input names (option_type, strike,
time_to_expiry, underlying, rate, dividend_yield, volatility, price) to the caller's own
field paths, so that every error names the field as the caller wrote it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, NamedTuple, Optional, Sequence

import numpy as np

from pricegrid.server.domain.errors import Code, FieldViolation, ServiceError
from pricegrid.server.domain.instruments import EuropeanOption, EuropeanOptionBatch, MarketBatch, MarketInputs
from pricegrid.server.domain.models import CATALOGUE, IMPLIED_VOL_REFS, Measure, Model, ModelRef
from pricegrid.server.pricers.analytic_european import PricedBatch, price_european_batch, price_european_one
from pricegrid.server.pricers.implied_vol import ImpliedVolBatch, implied_vol_european_batch, implied_vol_european_one
from pricegrid.server.service import rows as _rows

#: a callable the batch loop asks between chunks: None to go on, or the Code to stop with
ShouldContinue = Callable[[], Optional[Code]]

_GREEK_SLOTS = {  # Measure -> index in the kernel's price_one tuple
    Measure.PRICE: 3,
    Measure.DELTA: 4,
    Measure.GAMMA: 5,
    Measure.VEGA: 6,
    Measure.THETA: 7,
    Measure.RHO: 8,
    Measure.DIVIDEND_RHO: 9,
    Measure.VANNA: 10,
    Measure.VOLGA: 11,
    Measure.CHARM: 12,
}


@dataclass(frozen=True)
class Limits:
    max_rows: int = 1_000_000
    chunk_rows: int = 262_144
    kernel_threads: int = 1
    max_row_errors: int = 100


class PriceResult(NamedTuple):
    price: float
    greeks: dict  # Measure -> float, only those asked for
    forward: float
    discount_factor: float
    time_to_expiry: float
    volatility: float
    priced_by: ModelRef


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


def _slice(col: Optional[np.ndarray], a: int, b: int) -> Optional[np.ndarray]:
    if col is None or len(col) == 1:
        return col
    return col[a:b]


def _rows_of(batch, a: int, b: int):
    """Rows [a, b) of every column of a batch dataclass (broadcast columns stay whole)."""
    return type(batch)(*(_slice(getattr(batch, f.name), a, b) for f in dataclasses.fields(batch)))


def _full(col: Optional[np.ndarray], rows: int) -> Optional[np.ndarray]:
    if col is None or len(col) == rows:
        return col
    return np.broadcast_to(col, (rows,))


class PricingService:
    def __init__(self, limits: Limits = Limits()):
        self.limits = limits

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
        """The chunks, asking ``should_continue`` before each (stops with its code)."""
        for a, b in chunks:
            self._stop(should_continue)
            yield a, b

    @staticmethod
    def _stop(should_continue: Optional[ShouldContinue]) -> None:
        if should_continue is None:
            return
        code = should_continue()
        if code is not None:
            what = "deadline exceeded" if code == Code.DEADLINE_EXCEEDED else "cancelled by the caller"
            raise ServiceError(code, f"batch stopped between chunks: {what}")

    # ------------------------------------------------------------------ one trade
    def price(
        self,
        model: Model,
        option: EuropeanOption,
        market: MarketInputs,
        measures: Sequence[Measure],
        fields: Mapping[str, str],
    ) -> PriceResult:
        mask = 0
        for m in measures:
            mask |= 1 << int(m)
        out = price_european_one(model, option, market, mask)
        if out[0]:
            _rows.raise_for_status(out[0], model, fields, {**option._asdict(), **market._asdict()})
        greeks = {m: out[_GREEK_SLOTS[m]] for m in measures if m != Measure.PRICE}
        return PriceResult(
            out[3], greeks, out[1], out[2], option.time_to_expiry, market.volatility, CATALOGUE[model].ref
        )

    def implied_vol(
        self, model: Model, option: EuropeanOption, market: MarketInputs, price: float, fields: Mapping[str, str]
    ) -> ImpliedVolResult:
        status, vol, forward, df = implied_vol_european_one(model, option, market, price)
        if status:
            values = {**option._asdict(), **market._asdict(), "price": price}
            _rows.raise_for_status(status, model, fields, values, implied_vol=True)
        return ImpliedVolResult(vol, forward, df, option.time_to_expiry, IMPLIED_VOL_REFS[model])

    # ------------------------------------------------------------------ batches
    def price_batch(
        self,
        model: Model,
        options: EuropeanOptionBatch,
        market: MarketBatch,
        measures: Sequence[Measure],
        *,
        rows: int,
        fields: Mapping[str, str],
        threads: int = 0,
        effective_inputs: bool = True,
        should_continue: Optional[ShouldContinue] = None,
        outputs: Optional[tuple] = None,
    ) -> BatchResult:
        """``outputs``: optional (values (k, rows), forward, discount factor) arrays to fill,
        e.g. views into the caller's reply, so that nothing is copied afterwards."""
        self.check_rows(rows)
        measures = tuple(measures) or (Measure.PRICE,)
        threads = self.threads_for(threads)
        chunks = self._chunks(rows)
        t0 = time.perf_counter()
        if outputs is None:
            outputs = (
                np.empty((len(measures), rows)),
                np.empty(rows) if effective_inputs else None,
                np.empty(rows) if effective_inputs else None,
            )
        whole = PricedBatch(measures, outputs[0], np.empty(rows, dtype=np.int32), outputs[1], outputs[2], 0)
        for a, b in self._each_chunk(chunks, should_continue):
            price_european_batch(
                model,
                _rows_of(options, a, b),
                _rows_of(market, a, b),
                measures,
                rows=b - a,
                threads=threads,
                out=PricedBatch(
                    measures, whole.values[:, a:b], whole.status[a:b], _slice(whole.forward, a, b),
                    _slice(whole.discount_factor, a, b), 0,
                ),
            )
        values, status, forward, df = whole.values, whole.status, whole.forward, whole.discount_factor
        elapsed = time.perf_counter() - t0
        return self._batch_result(
            model, measures, rows, values, status, forward, df, options, market, fields,
            CATALOGUE[model].ref, elapsed, threads, len(chunks), effective_inputs, implied_vol=False,
        )

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
        self.check_rows(rows)
        threads = self.threads_for(threads)
        chunks = self._chunks(rows)
        t0 = time.perf_counter()
        whole = ImpliedVolBatch(
            np.empty(rows), np.empty(rows, dtype=np.int32),
            np.empty(rows) if effective_inputs else None, np.empty(rows) if effective_inputs else None, 0,
        )
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
            )
        vol, status, forward, df = whole.volatility, whole.status, whole.forward, whole.discount_factor
        elapsed = time.perf_counter() - t0
        result = self._batch_result(
            model, (), rows, vol.reshape(1, rows), status, forward, df, options, market, fields,
            IMPLIED_VOL_REFS[model], elapsed, threads, len(chunks), effective_inputs, implied_vol=True, price=price,
        )
        return result

    def _batch_result(
        self, model, measures, rows, values, status, forward, df, options, market, fields, ref,
        elapsed, threads, chunks, effective_inputs, *, implied_vol, price=None,
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
            errors = _rows.row_errors(
                status, model, fields, columns, cap=self.limits.max_row_errors, implied_vol=implied_vol
            )
        codes = _rows.row_codes(status) if bad else np.zeros(rows, dtype=np.int32)
        time_col = vol_col = None
        if effective_inputs:
            time_col = _full(options.time_to_expiry, rows)
            vol_col = values[0] if implied_vol else _full(market.volatility, rows)
        return BatchResult(
            rows=rows,
            measures=tuple(measures),
            values=values,
            row_codes=codes,
            errors=errors,
            error_count=bad,
            forward=forward,
            discount_factor=df,
            time_to_expiry=time_col,
            volatility=vol_col,
            priced_by=ref,
            compute_seconds=elapsed,
            threads=threads,
            chunks=chunks,
        )
