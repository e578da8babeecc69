"""Single barrier options with rebate, continuous (Reiner-Rubinstein) or discrete monitoring
(Broadie-Glasserman-Kou) (kernel: ``pricegrid.ext.barrier``). Validation: see below."""

from __future__ import annotations

from pricegrid.ext import barrier as _barrier
from pricegrid.server.domain.cost import EngineCost
from pricegrid.server.domain.models import Engine
from pricegrid.server.pricers._registry import BSM_AND_BLACK_76, register


def _run_barrier(batch, market, codes, out, stderr, status, threads, settings):
    c = batch.columns
    return _barrier.barrier_price_batch(
        c["barrier_type"], c["option_type"], c["strike"], c["time_to_expiry"], c["barrier"], c["rebate"],
        c["monitoring_interval"], market.underlying, market.rate, market.dividend_yield, market.volatility, codes, out,
        status, threads, beyond_touched=settings.spot_beyond_barrier_touched,
    )


_B = "tests/ext/test_barrier_kernel.py"
register("barrier", BSM_AND_BLACK_76, Engine.ANALYTIC, name="analytic_barrier", version="1.0.0", kernel=_barrier,
         run=_run_barrier, default=True, greek_methods=_barrier.GREEK_METHODS_BY_ENTRY["barrier_price_batch"],
         validated_against="QuantLib AnalyticBarrierEngine on 4000 random cases (1e-12), 40-digit mpmath, Haug"
                           f" Table 4-13, Broadie-Glasserman-Kou vs Monte Carlo, in-out parity; {_B}",
         cost=EngineCost(row=60, row_greeks=1_500))  # ns per row, bench/calibrate_cost.py
