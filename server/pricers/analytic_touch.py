"""One-touch (paid at hit or at expiry) and no-touch options (Reiner-Rubinstein binary
barriers; kernel: ``pricegrid.ext.barrier``). Validation: see below."""

from __future__ import annotations

from pricegrid.ext import barrier as _barrier
from pricegrid.server.domain.cost import EngineCost
from pricegrid.server.domain.models import Engine
from pricegrid.server.pricers._registry import BSM_AND_BLACK_76, register


def _run_touch(batch, market, codes, out, stderr, status, threads, settings):
    c = batch.columns
    return _barrier.touch_price_batch(
        c["touch_type"], c["direction"], c["payment"], c["cash"], c["barrier"], c["time_to_expiry"],
        c["monitoring_interval"], market.underlying, market.rate, market.dividend_yield, market.volatility, codes, out,
        status, threads, beyond_touched=settings.spot_beyond_barrier_touched,
    )


_B = "tests/ext/test_barrier_kernel.py"
register("touch", BSM_AND_BLACK_76, Engine.ANALYTIC, name="analytic_touch", version="1.0.0", kernel=_barrier,
         run=_run_touch, default=True, greek_methods=_barrier.GREEK_METHODS_BY_ENTRY["touch_price_batch"],
         validated_against="QuantLib AnalyticDigitalAmericanEngine, AnalyticDigitalAmericanKOEngine and"
                           f" AnalyticBinaryBarrierEngine, Haug binary-barrier cases, one-touch + no-touch parity; {_B}",
         cost=EngineCost(row=40, row_greeks=700))  # ns per row, bench/calibrate_cost.py
