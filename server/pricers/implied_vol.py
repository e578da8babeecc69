"""Implied volatility of European options: Black-76/BSM by Jaeckel's "Let's Be Rational"
(2015), Bachelier by Jaeckel's "Implied Normal Volatility" (2017).

Kernel: ``pricegrid.ext.implied_vol``. Validated in tests/ext/test_implied_vol_kernel.py by
round trips on thousands of random cases and against QuantLib's implied-vol functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pricegrid.ext import implied_vol as _iv
from pricegrid.server.domain.instruments import EuropeanOption, EuropeanOptionBatch, MarketBatch, MarketInputs
from pricegrid.server.domain.models import Model

_EMPTY = np.empty(0, dtype=np.float64)


@dataclass
class ImpliedVolBatch:
    volatility: np.ndarray
    status: np.ndarray
    forward: np.ndarray | None
    discount_factor: np.ndarray | None
    bad_rows: int


def implied_vol_european_batch(
    model: Model,
    options: EuropeanOptionBatch,
    market: MarketBatch,
    price: np.ndarray,
    *,
    rows: int,
    threads: int,
    effective_inputs: bool = True,
    out: ImpliedVolBatch | None = None,
    stop: np.ndarray | None = None,
) -> ImpliedVolBatch:
    """Implied vols of ``rows`` options; with ``out`` the kernel writes straight into it.
    ``stop``: the call's stop block (ext/pg_stop.h), polled by the kernel every 1,024 rows;
    rows it did not solve come back CANCELLED."""
    if out is None:
        out = ImpliedVolBatch(
            np.empty(rows),
            np.empty(rows, dtype=np.int32),
            np.empty(rows) if effective_inputs else None,
            np.empty(rows) if effective_inputs else None,
            0,
        )
    out.bad_rows = _iv.implied_vol_batch(
        int(model),
        options.option_type,
        options.strike,
        options.time_to_expiry,
        market.underlying,
        market.rate,
        market.dividend_yield,
        price,
        out.volatility,
        _EMPTY if out.forward is None else out.forward,
        _EMPTY if out.discount_factor is None else out.discount_factor,
        out.status,
        threads,
        stop=stop,
    )
    return out


def implied_vol_european_one(model: Model, option: EuropeanOption, market: MarketInputs, price: float) -> tuple:
    """(status, vol, forward, df)."""
    return _iv.implied_vol_one(
        int(model),
        option.option_type,
        option.strike,
        option.time_to_expiry,
        market.underlying,
        market.rate,
        market.dividend_yield,
        price,
    )
