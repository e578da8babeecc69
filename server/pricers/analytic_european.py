"""Analytic European options under Black-Scholes-Merton, Black-76 and Bachelier.

Kernel: ``pricegrid.ext.black`` (formulas once, in ext/pg_black.h; batch and single-trade
paths share them). Validated in tests/ext/test_black_kernel.py against QuantLib's
AnalyticEuropeanEngine, blackFormula and bachelierBlackFormula on thousands of random cases,
against finite differences and put-call parity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pricegrid.ext import black
from pricegrid.server.domain.instruments import EuropeanOption, EuropeanOptionBatch, MarketBatch, MarketInputs
from pricegrid.server.domain.catalogue import EngineSpec
from pricegrid.server.domain.models import Engine, GreekMethod, Measure, Model, ModelRef
from pricegrid.server.pricers._registry import EMPTY, add, register

@dataclass
class PricedBatch:
    """Kernel output for rows [0, n): ``values[j]`` holds ``measures[j]``; status bits per row."""

    measures: tuple[Measure, ...]
    values: np.ndarray  # (k, n) float64
    status: np.ndarray  # (n,) int32 bitmask, 0 = priced
    forward: np.ndarray | None
    discount_factor: np.ndarray | None
    bad_rows: int


def price_european_batch(
    model: Model,
    options: EuropeanOptionBatch,
    market: MarketBatch,
    measures: Sequence[Measure],
    *,
    rows: int,
    threads: int,
    effective_inputs: bool = True,
    out: PricedBatch | None = None,
) -> PricedBatch:
    """Price ``rows`` options; with ``out`` (views into larger arrays, e.g. one chunk of a
    batch), the kernel writes straight into them."""
    measures = tuple(measures)
    if out is None:
        out = PricedBatch(
            measures,
            np.empty((len(measures), rows), dtype=np.float64),
            np.empty(rows, dtype=np.int32),
            np.empty(rows) if effective_inputs else None,
            np.empty(rows) if effective_inputs else None,
            0,
        )
    out.bad_rows = black.price_batch(
        int(model),
        options.option_type,
        options.strike,
        options.time_to_expiry,
        market.underlying,
        market.rate,
        market.dividend_yield,
        market.volatility,
        np.asarray(measures, dtype=np.int32),
        out.values,
        EMPTY if out.forward is None else out.forward,
        EMPTY if out.discount_factor is None else out.discount_factor,
        out.status,
        threads,
    )
    return out


def price_european_one(model: Model, option: EuropeanOption, market: MarketInputs, measures_mask: int) -> tuple:
    """(status, forward, df, price, delta, gamma, vega, theta, rho, dividend_rho, vanna, volga, charm)."""
    return black.price_one(
        int(model),
        option.option_type,
        option.strike,
        option.time_to_expiry,
        market.underlying,
        market.rate,
        market.dividend_yield,
        market.volatility,
        measures_mask,
    )


#: the same, from plain values (the front-office path builds no objects)
price_european_values = black.price_one


# ------------------------------------------------------------------ the catalogue rows
def _run_black(model_code: int):
    def run(batch, market, codes, out, stderr, status, threads, settings):
        c = batch.columns
        return black.price_batch(
            model_code, c["option_type"], c["strike"], c["time_to_expiry"], market.underlying, market.rate,
            market.dividend_yield, market.volatility, codes, out, EMPTY, EMPTY, status, threads,
        )

    return run


_BLACK_VALIDATION = "QuantLib AnalyticEuropeanEngine/blackFormula/bachelierBlackFormula, finite differences, parity; tests/ext/test_black_kernel.py"

for _model, _code in ((Model.BLACK_SCHOLES_MERTON, 1), (Model.BACHELIER, 3)):
    register("european", (_model,), Engine.ANALYTIC, name="analytic_european", version="1.0.0", kernel=black,
             run=_run_black(_code), validated_against=_BLACK_VALIDATION, default=True,
             measures=tuple(int(m) for m in Measure))
# Black-76 through its own kernel formulas (not the BSM mapping): rho and dividend rho as in
# common.proto, identical to the unary fast path.
add(EngineSpec(
    product="european", model=Model.BLACK_76, engine=Engine.ANALYTIC,
    ref=ModelRef("black_76", "analytic_european", "1.0.0"), measures=tuple(Measure),
    methods={m: GreekMethod.ANALYTIC for m in Measure}, validated_against=_BLACK_VALIDATION,
    default=True, underlying="forward",
), _run_black(2))
