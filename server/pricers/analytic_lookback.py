"""Lookback options in closed form (Goldman-Sosin-Gatto, Conze-Viswanathan; kernel:
``pricegrid.ext.lookback``). Validation: see ``validated_against`` below."""

from __future__ import annotations

from pricegrid.ext import lookback as _lookback
from pricegrid.server.domain.cost import EngineCost
from pricegrid.server.domain.models import Engine
from pricegrid.server.pricers._registry import BSM_AND_BLACK_76, register


def _run_lookback(batch, market, codes, out, stderr, status, threads, settings):
    c = batch.columns
    return _lookback.lookback_price_batch(
        c["strike_type"], c["option_type"], c["strike"], c["time_to_expiry"], c["running_minimum"],
        c["running_maximum"], market.underlying, market.rate, market.dividend_yield, market.volatility, codes, out,
        status, threads,
    )


register("lookback", BSM_AND_BLACK_76, Engine.ANALYTIC, name="analytic_lookback", version="1.0.0",
         kernel=_lookback, run=_run_lookback, default=True,
         validated_against="QuantLib AnalyticContinuous{Floating,Fixed}LookbackEngine on 2000 random cases, 50-digit"
                           " evaluation, Haug and Broadie-Glasserman-Kou tables; tests/ext/test_lookback_kernel.py",
         cost=EngineCost(row=40, row_greeks=150))  # ns per row, bench/calibrate_cost.py
