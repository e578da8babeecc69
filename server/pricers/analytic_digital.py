"""Cash-or-nothing, asset-or-nothing and gap digitals (kernel: ``pricegrid.ext.barrier``).
Validation: see below."""

from __future__ import annotations

from pricegrid.ext import barrier as _barrier
from pricegrid.server.domain.cost import EngineCost
from pricegrid.server.domain.models import Engine
from pricegrid.server.pricers._registry import BSM_AND_BLACK_76, register


def _run_digital(batch, market, codes, out, stderr, status, threads, settings):
    c = batch.columns
    return _barrier.digital_price_batch(
        c["payoff"], c["option_type"], c["strike"], c["time_to_expiry"], c["cash"], c["payoff_strike"],
        market.underlying, market.rate, market.dividend_yield, market.volatility, codes, out, status, threads,
    )


_B = "tests/ext/test_barrier_kernel.py"
register("digital", BSM_AND_BLACK_76, Engine.ANALYTIC, name="analytic_digital", version="1.0.0", kernel=_barrier,
         run=_run_digital, default=True, greek_methods=_barrier.GREEK_METHODS_BY_ENTRY["digital_price_batch"],
         validated_against="QuantLib AnalyticEuropeanEngine with cash/asset/gap payoffs, price and Greeks (1e-12),"
                           f" mpmath derivatives; {_B}",
         cost=EngineCost(row=15, row_greeks=40))  # ns per row, bench/calibrate_cost.py
