"""Double knock-in / knock-out options (Ikeda-Kunitomo series; kernel:
``pricegrid.ext.barrier``). Validation: see below."""

from __future__ import annotations

from pricegrid.ext import barrier as _barrier
from pricegrid.server.domain.cost import EngineCost
from pricegrid.server.domain.models import Engine
from pricegrid.server.pricers._registry import BSM_AND_BLACK_76, register


def _run_double_barrier(batch, market, codes, out, stderr, status, threads, settings):
    c = batch.columns
    return _barrier.double_barrier_price_batch(
        c["knock_type"], c["option_type"], c["strike"], c["time_to_expiry"], c["lower_barrier"], c["upper_barrier"],
        market.underlying, market.rate, market.dividend_yield, market.volatility, codes, out, status, threads,
        beyond_touched=settings.spot_beyond_barrier_touched,
    )


_B = "tests/ext/test_barrier_kernel.py"
register("double_barrier", BSM_AND_BLACK_76, Engine.ANALYTIC, name="analytic_double_barrier", version="1.0.0",
         kernel=_barrier, run=_run_double_barrier, default=True,
         greek_methods=_barrier.GREEK_METHODS_BY_ENTRY["double_barrier_price_batch"],
         validated_against="QuantLib AnalyticDoubleBarrierEngine (5 and 50 terms), mpmath to 1e-15 of scale, Haug"
                           f" double-barrier table, in-out parity; {_B}",
         cost=EngineCost(row=200, row_greeks=4_000))  # ns per row, bench/calibrate_cost.py
