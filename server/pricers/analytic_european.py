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
from pricegrid.server.domain.models import Measure, Model

_EMPTY = np.empty(0, dtype=np.float64)


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
) -> PricedBatch:
    measures = tuple(measures)
    values = np.empty((len(measures), rows), dtype=np.float64)
    status = np.empty(rows, dtype=np.int32)
    forward = np.empty(rows) if effective_inputs else None
    df = np.empty(rows) if effective_inputs else None
    bad = black.price_batch(
        int(model),
        options.option_type,
        options.strike,
        options.time_to_expiry,
        market.underlying,
        market.rate,
        market.dividend_yield,
        market.volatility,
        np.asarray(measures, dtype=np.int32),
        values,
        _EMPTY if forward is None else forward,
        _EMPTY if df is None else df,
        status,
        threads,
    )
    return PricedBatch(measures, values, status, forward, df, bad)


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
