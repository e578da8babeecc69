"""European options under Heston by Lewis's integral with a Black control variate (kernel:
``pricegrid.ext.heston``). Validation: see ``validated_against`` below."""

from __future__ import annotations

from pricegrid.ext import heston as _heston
from pricegrid.server.domain.cost import EngineCost
from pricegrid.server.domain.models import Engine, Model
from pricegrid.server.pricers._registry import register


def _run_heston(batch, market, codes, out, stderr, status, threads, settings, stop=None):
    c = batch.columns
    return _heston.price_batch(
        c["option_type"], c["strike"], c["time_to_expiry"], market.underlying, market.rate, market.dividend_yield,
        market.v0, market.kappa, market.theta, market.sigma, market.rho, codes, out, status, threads, stop=stop,
    )


# 1.1.0: every maturity prices (a grid sized to the integrand at short T, the short-maturity
# limit at and below 1e-10 years and for deep strikes; ext/heston.pyx design note 3)
register("european", (Model.HESTON,), Engine.ANALYTIC, name="analytic_heston", version="1.1.0", kernel=_heston,
         run=_run_heston, default=True, polls_stop=True,
         cost=EngineCost(row=12_000, row_greeks=16_000),  # ns per row (random parameters), bench/calibrate_cost.py
         validated_against="QuantLib AnalyticHestonEngine (angled contour, exp-sinh 1e-14) on random cases to 1e-10,"
                           " published values, Greeks by finite differences; short maturities against QuantLib"
                           " (1e-4..1e-8 years) and the small-time expansion; tests/ext/test_heston_kernel.py")
