"""Analytic European options under Black-Scholes-Merton, Black-76 and Bachelier.

Kernel: ``pricegrid.ext.black`` (formulas once, in ext/pg_black.h; batch and single-trade
paths share them). Validated in tests/ext/test_black_kernel.py against QuantLib's
AnalyticEuropeanEngine, blackFormula and bachelierBlackFormula on thousands of random cases,
against finite differences and put-call parity.
"""

from __future__ import annotations

import numpy as np

from pricegrid.ext import black
from pricegrid.server.domain.catalogue import EngineSpec
from pricegrid.server.domain.cost import EngineCost
from pricegrid.server.domain.models import OPTION_MEASURES, Engine, GreekMethod, Model, ModelRef
from pricegrid.server.pricers._registry import CATALOGUE, EMPTY, add, add_cube_runner, register
from pricegrid.server.pricers.market_columns import FusedMarket



#: the one-row fast path of these engines (the front-office path builds no objects): the kernel's
#: single-trade entry, the same formulas as the batch runner's
price_european_values = black.price_one


def _per_row(col: np.ndarray, n: int) -> np.ndarray:
    """``col`` (n or 1 values) as n values: the same numbers, so the same bits as a full column."""
    return col if col.shape[0] == n else np.full(n, col[0], dtype=col.dtype)


# ------------------------------------------------------------------ the catalogue rows
def _run_black(model_code: int):
    def run(batch, market, codes, out, stderr, status, threads, settings, effective=None):
        c = batch.columns
        forward, df = (EMPTY, EMPTY) if effective is None else effective
        if isinstance(market, FusedMarket):  # a snapshot underlying, read in the same pass
            # (that kernel takes a strike and a time per row: a broadcast one is spread here)
            n = status.shape[0]
            bad, most = market.market.price_black(model_code, c["option_type"], _per_row(c["strike"], n),
                                                  _per_row(c["time_to_expiry"], n), codes, out, forward, df, status,
                                                  market.columns, threads)
            market.dividends = max(market.dividends, most)
            return bad
        return black.price_batch(
            model_code, c["option_type"], c["strike"], c["time_to_expiry"], market.underlying, market.rate,
            market.dividend_yield, market.volatility, codes, out, forward, df, status, threads,
        )

    return run


def _cube_black(model_code: int):
    def cube(columns, time, underlying, rate, dividend, vol, base, quantity, pnl, threads):
        return black.price_cube(model_code, np.ascontiguousarray(columns["option_type"], dtype=np.int32),
                                np.ascontiguousarray(columns["strike"], dtype=np.float64), time, underlying, rate,
                                dividend, vol, base, quantity, pnl, threads)

    return cube


#: ns per row (bench/calibrate_cost.py)
BLACK_COST = EngineCost(row=15, row_greeks=30)
_BLACK_VALIDATION = "QuantLib AnalyticEuropeanEngine/blackFormula/bachelierBlackFormula, finite differences, parity; tests/ext/test_black_kernel.py"

for _model, _code in ((Model.BLACK_SCHOLES_MERTON, 1), (Model.BACHELIER, 3)):
    register("european", (_model,), Engine.ANALYTIC, name="analytic_european", version="1.0.0", kernel=black,
             run=_run_black(_code), validated_against=_BLACK_VALIDATION, default=True,
             measures=tuple(int(m) for m in OPTION_MEASURES), kernel_writes_forward=True, fuses_market=True,
             cost=BLACK_COST)
# Black-76 through its own kernel formulas (not the BSM mapping): rho and dividend rho as in
# common.proto, identical to the unary fast path.
add(EngineSpec(
    product="european", model=Model.BLACK_76, engine=Engine.ANALYTIC,
    ref=ModelRef("black_76", "analytic_european", "1.0.0"), measures=OPTION_MEASURES,
    methods={m: GreekMethod.ANALYTIC for m in OPTION_MEASURES}, validated_against=_BLACK_VALIDATION,
    default=True, underlying="forward", kernel_writes_forward=True, fuses_market=True, cost=BLACK_COST,
), _run_black(2))
# Scenario cubes in one pass (ScenarioRevaluer): the kernel reads each trade's columns and
# the scenarios' moves, never n x s copies of them; the same bits as the runners above.
for _model, _code in ((Model.BLACK_SCHOLES_MERTON, 1), (Model.BLACK_76, 2), (Model.BACHELIER, 3)):
    add_cube_runner(CATALOGUE.find("european", _model, Engine.ANALYTIC), _cube_black(_code))
