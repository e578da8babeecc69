"""American options on a Leisen-Reimer binomial tree (kernel: ``pricegrid.ext.american``),
under Black-Scholes-Merton and Black-76, with a snapshot's discrete cash dividends under BSM
(escrowed-dividend model, american.pyx design note 4). Validation: see ``validated_against``
below.

Versions: 1.0.0 the tree; 1.1.0 adds cash dividends (every price without them unchanged, bit
for bit)."""

from __future__ import annotations

from pricegrid.ext import american as _american
from pricegrid.server.domain.models import Engine
from pricegrid.server.pricers._registry import BSM_AND_BLACK_76, register
from pricegrid.server.pricers.fixed_point_american import AMERICAN_COST, _run_american


register("american", BSM_AND_BLACK_76, Engine.BINOMIAL_TREE, name="leisen_reimer_american", version="1.1.0",
         kernel=_american, run=_run_american(_american.METHOD_TREE), cash_dividends=True, polls_stop=True,
         cost=AMERICAN_COST, settings=("tree_steps",),
         greek_methods=_american.GREEK_METHODS_BY_METHOD[_american.METHOD_TREE],
         validated_against="QuantLib BinomialVanillaEngine (Leisen-Reimer) to 1e-9, convergence to the fixed-point"
                           " engine; tests/ext/test_american_kernel.py. Cash dividends (escrowed model): QuantLib"
                           " FdBlackScholesVanillaEngine (CashDividendModel Escrowed) within 1e-4 of the spot at 801"
                           " steps; tests/ext/test_american_dividends.py")
