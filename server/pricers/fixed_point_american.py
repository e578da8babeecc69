"""American options by the fixed point of Andersen, Lake and Offengelden (kernel:
``pricegrid.ext.american``), under Black-Scholes-Merton and Black-76; the default engine.
Validation: see ``validated_against`` below (tests/ext/test_american_kernel.py)."""

from __future__ import annotations

from pricegrid.ext import american as _american
from pricegrid.server.domain.cost import EngineCost
from pricegrid.server.domain.models import Engine
from pricegrid.server.pricers._registry import BSM_AND_BLACK_76, register


#: ns per boundary solve by scheme (fast, accurate, high precision) and per node of one tree
#: (bench/calibrate_cost.py); both engines price two-boundary rows on the tree
AMERICAN_COST = EngineCost(solve=(5_000, 12_000, 150_000), node=0.25)


def _run_american(method: int):
    def run(batch, market, codes, out, stderr, status, threads, settings, stop=None):
        c = batch.columns
        cash = market.cash_dividends  # the tree's only (its catalogue row says cash_dividends)
        return _american.price_batch(
            c["option_type"], c["strike"], c["time_to_expiry"], market.underlying, market.rate, market.dividend_yield,
            market.volatility, codes, out, status, threads, method, settings.american_scheme, settings.tree_steps,
            *((cash.times, cash.amounts) if cash is not None else ()), stop=stop,
        )

    return run


register("american", BSM_AND_BLACK_76, Engine.FIXED_POINT, name="fixed_point_american", version="1.0.0",
         kernel=_american, run=_run_american(_american.METHOD_FIXED_POINT), default=True, polls_stop=True,
         cost=AMERICAN_COST, settings=("american_scheme", "tree_steps"),  # (the tree: two-boundary rows)
         greek_methods=_american.GREEK_METHODS_BY_METHOD[_american.METHOD_FIXED_POINT],
         validated_against="QuantLib QdFpAmericanEngine high precision on random cases (accurate scheme within 3e-5),"
                           " QuantLib Leisen-Reimer and FD engines for Greeks, Ju-Zhong and Healy tables, American >="
                           " European, put-call symmetry; tests/ext/test_american_kernel.py")
