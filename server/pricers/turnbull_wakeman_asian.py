"""Asian options in closed form: geometric averages exactly, arithmetic averages by
Turnbull-Wakeman moment matching (kernel: ``pricegrid.ext.asian``); the default Asian engine
under Black-Scholes-Merton and Black-76. Validation: see ``validated_against`` below."""

from __future__ import annotations

from pricegrid.ext import asian as _asian
from pricegrid.server.domain.cost import EngineCost
from pricegrid.server.domain.models import Engine
from pricegrid.server.pricers._registry import BSM_AND_BLACK_76, register


def _run_asian(arithmetic_method: int):
    def run(batch, market, codes, out, stderr, status, threads, settings):
        c, s = batch.columns, batch.schedule
        return _asian.asian_price_batch(
            c["averaging"], c["option_type"], c["strike"], c["time_to_expiry"], s.times, s.counts,
            c["running_average"], c["past_fixings"], c["elapsed"], market.underlying, market.rate,
            market.dividend_yield, market.volatility, codes, out, status, threads, arithmetic_method,
        )

    return run


#: ns per row (bench/calibrate_cost.py), every analytic Asian engine; a discrete schedule adds
#: 1-15 ns per fixing, bounded by the message size, not counted
ASIAN_COST = EngineCost(row=100, row_greeks=200)
_ASIAN_VALIDATION = (
    "QuantLib {engine} on 1000 random cases (1e-12 geometric, 1e-10 moment matching), 60-digit mpmath, Haug and"
    " Clewlow-Strickland tables, parity, one fixing = European; tests/ext/test_asian_kernel.py"
)
register("asian", BSM_AND_BLACK_76, Engine.ANALYTIC, name="analytic_asian_tw", version="1.0.0", kernel=_asian,
         run=_run_asian(_asian.TURNBULL_WAKEMAN), default=True,
         validated_against=_ASIAN_VALIDATION.format(
             engine="Analytic{Continuous,Discrete}GeometricAveragePriceAsianEngine and TurnbullWakemanAsianEngine"),
         cost=ASIAN_COST)
register("asian", BSM_AND_BLACK_76, Engine.TURNBULL_WAKEMAN, name="analytic_asian_tw", version="1.0.0",
         kernel=_asian, run=_run_asian(_asian.TURNBULL_WAKEMAN),
         validated_against=_ASIAN_VALIDATION.format(engine="TurnbullWakemanAsianEngine"), cost=ASIAN_COST)
