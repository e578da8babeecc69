"""Market columns of a batch's rows on one underlying of a snapshot: level, rate, dividend
yield and vol per row (kernel: ``pricegrid.ext.market``; conventions in its design note),
and European options priced on them in one pass.

The curve and surface numbers are the curve and surface kernels' own pointwise functions,
so a row's rate (and a grid or SABR vol) is, bit for bit, what ``curves.zero_rates`` and
``surfaces.vols`` give at its expiry and strike; an SVI vol is within 4 units in the last
place (interpolation weights per expiry). A European priced in one pass writes the same
market columns as ``columns`` and is, bit for bit, the batch kernel on them, except BSM on
a spot and Black-76 on a futures price over an SVI surface (DF, F and sqrt(T) per expiry,
ln(F/K) from the vol lookup): within 1e-13 relative or 1e-15 of the column's largest value
(tests/ext/test_market_kernel.py). The kernel computes what depends on the expiry alone
once per distinct expiry. Registers no engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional, Sequence

import numpy as np

from pricegrid.ext import market as _kernel
from pricegrid.server.domain.curves import YieldCurve
from pricegrid.server.pricers.curves import _nodes, discount_factors
from pricegrid.server.pricers.surfaces import Surface, _kernel_args

__all__ = ["MarketColumns", "PreparedMarket", "FusedMarket"]

_EMPTY = np.empty(0)
_EMPTY_2D = np.empty((0, 0))


class MarketColumns(NamedTuple):
    level: np.ndarray              # (m,) spot less escrowed dividends, or the futures price
    rate: np.ndarray               # (m,) discount zero rate at each expiry
    dividend_yield: np.ndarray     # (m,) dividend-curve zero rate (0 without a curve)
    vol: Optional[np.ndarray]      # (m,) surface vol at (T, K, F), NaN where it has none; None without a surface
    dividends: int                 # the most cash dividends any row's level takes off


class PreparedMarket:
    """One underlying of a snapshot, checked and prepared once for a request: ``discount``
    (required) and ``dividend`` curves, the ``level`` (a spot when ``spot``, else a futures
    price), ``cash_dividends`` as (ex-time, amount) in time order (those with ex-time > 0
    come off the spot at their present value on ``discount``) and the vol ``surface``."""

    def __init__(self, discount: YieldCurve, dividend: Optional[YieldCurve], level: float, spot: bool,
                 cash_dividends: Sequence[tuple[float, float]] = (), surface: Optional[Surface] = None):
        d_t, d_v = _nodes(discount)
        if dividend is not None:
            q_interp, q_kind = int(dividend.interpolation), int(dividend.value_kind)
            q_t, q_v = _nodes(dividend)
        else:
            q_interp, q_kind, q_t, q_v = 0, 0, _EMPTY, _EMPTY
        live = [(t, a) for t, a in cash_dividends if t > 0]
        cash_t = np.array([t for t, _ in live], dtype=np.float64)
        cash_pv = np.zeros(len(live) + 1)
        if live:  # a futures price carries none (Snapshot.validate)
            df, _ = discount_factors(discount, cash_t)
            cash_pv[1:] = np.cumsum(np.array([a for _, a in live]) * df)
        if surface is not None:
            kind, axis, expiries, nodes, values = _kernel_args(surface)
            values = np.ascontiguousarray(values.reshape(expiries.shape[0], -1))
        else:
            kind, axis, expiries, nodes, values = 0, 0, _EMPTY, _EMPTY, _EMPTY_2D
        self.has_surface = surface is not None
        self._market = _kernel.Market(int(discount.interpolation), d_t, d_v, int(discount.value_kind), q_interp, q_t,
                                      q_v, q_kind, float(level), bool(spot), cash_t, cash_pv, kind, axis, expiries,
                                      nodes, values)

    def columns(self, times, strikes=None, *, threads: int = 1) -> MarketColumns:
        """The columns of rows with expiries ``times`` (the vol at ``strikes``; None or a
        strike not > 0: at the forward)."""
        t = np.ascontiguousarray(times, dtype=np.float64).reshape(-1)
        m = t.shape[0]
        k = _EMPTY if strikes is None else np.ascontiguousarray(strikes, dtype=np.float64).reshape(-1)
        if k.shape[0] == 1 and m != 1:
            k = np.full(m, k[0])
        level, rate, q = np.empty(m), np.empty(m), np.empty(m)
        vol = np.empty(m) if self.has_surface else _EMPTY
        most = self._market.columns(t, k, level, rate, q, vol, int(threads))
        return MarketColumns(level, rate, q, vol if self.has_surface else None, int(most))

    def price_black(self, model: int, option_type, strike, time, codes, out, forward, df, status,
                    columns: Optional[Sequence[np.ndarray]], threads: int) -> tuple[int, int]:
        """European options priced in one pass (``black.price_batch`` on ``columns()``'s
        columns; module docstring for how close): (failed rows, most cash dividends). ``columns``: four
        arrays (level, rate, dividend yield, vol) of the rows' length to receive the market
        columns, or None."""
        level, rate, q, vol = columns if columns is not None else (_EMPTY,) * 4
        return self._market.price_black(model, option_type, strike, time, codes, out, forward, df, status,
                                        level, rate, q, vol, int(threads))


@dataclass
class FusedMarket:
    """Rows of a batch whose market is a prepared snapshot underlying, handed to an engine
    that prices on it in one pass (``EngineSpec.fuses_market``). ``columns``: where the
    engine writes the rows' market columns (level, rate, dividend yield, vol), or None;
    ``dividends``: the engine records the most cash dividends a row took."""

    market: PreparedMarket
    columns: Optional[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = None
    dividends: int = 0
