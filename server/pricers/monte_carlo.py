"""Monte Carlo engines of the options library: European, Asian, barrier and lookback options
under Black-Scholes-Merton, Black-76 and Heston (kernel: ``pricegrid.ext.montecarlo``: Philox
or Sobol with a Brownian bridge, antithetics, control variates, Greeks by common random
numbers, a standard error with every measure). Validation: see ``_MC_VALIDATION``."""

from __future__ import annotations

import numpy as np

from pricegrid.ext import montecarlo as _mc
from pricegrid.server.domain.catalogue import MONTE_CARLO_SETTINGS
from pricegrid.server.domain.cost import EngineCost
from pricegrid.server.domain.models import Engine, Model
from pricegrid.server.pricers._registry import register


_ZERO1 = np.zeros(1)


def _run_mc(entry: str, model_code: int, columns: tuple[str, ...]):
    """A Monte Carlo product: its own columns, then the market, the model's parameters and
    the engine settings (kernel: ext/montecarlo.pyx)."""
    kernel = getattr(_mc, entry)
    barrier = entry == "barrier_price_batch"

    def run(batch, market, codes, out, stderr, status, threads, settings, stop=None):
        c = batch.columns
        # a scenario's spot beyond a barrier touched it (the internal setting; ext/pg_barrier.h, note 3)
        extra = {"beyond_touched": settings.spot_beyond_barrier_touched} if barrier else {}
        args = [c[name] for name in columns]
        if batch.schedule is not None:
            i = columns.index("time_to_expiry") + 1
            args[i:i] = [batch.schedule.times, batch.schedule.counts]
        heston = model_code == 4
        return kernel(
            *args, market.underlying, market.rate, market.dividend_yield, model_code,
            _ZERO1 if heston else market.volatility,
            *((market.v0, market.kappa, market.theta, market.sigma, market.rho) if heston else (_ZERO1,) * 5),
            codes, out, stderr, status, threads, settings.paths, settings.max_step, settings.seed,
            settings.antithetic, settings.control_variate, settings.sobol, settings.bridge, stop=stop, **extra,
        )

    return run


_MC_PRODUCTS = {
    "european": ("european_price_batch", ("option_type", "strike", "time_to_expiry")),
    "asian": ("asian_price_batch", ("averaging", "option_type", "strike", "time_to_expiry", "running_average",
                                    "past_fixings", "elapsed")),
    "barrier": ("barrier_price_batch", ("barrier_type", "option_type", "strike", "time_to_expiry", "barrier",
                                        "rebate", "monitoring_interval")),
    "lookback": ("lookback_price_batch", ("strike_type", "option_type", "strike", "time_to_expiry",
                                          "running_minimum", "running_maximum")),
}
#: ns per path and time step (price only, with Greeks) by (Heston, product), plus a fixed
#: cost per row (bench/calibrate_cost.py: one thread, antithetic, control variate on)
_MC_PATH_STEP = {
    (False, "european"): (7, 50), (False, "asian"): (5, 8), (False, "barrier"): (10, 110), (False, "lookback"): (10, 19),
    (True, "european"): (17, 65), (True, "asian"): (16, 56), (True, "barrier"): (43, 210), (True, "lookback"): (22, 70),
}


def _mc_cost(heston: bool, product: str) -> EngineCost:
    price, greeks = _MC_PATH_STEP[(heston, product)]
    return EngineCost(row=2_000, row_greeks=10_000, path_step=price, path_step_greeks=greeks)


_MC_VALIDATION = (
    "within 3 standard errors of the analytic kernels (BSM, geometric Asian, barrier, lookback, Heston) and of"
    " QuantLib's MCDiscreteArithmeticAPEngine; standard errors scale as 1/sqrt(paths); reproducible by seed and"
    " thread count; tests/ext/test_montecarlo_kernel.py"
)


def _mc_settings(product: str, model: Model) -> tuple[str, ...]:
    """The settings the kernel reads for ``product`` under ``model`` (any other set is
    refused): a GBM European is one exact step (ext/pg_mc.h, pg_mc_interval_steps), so it
    has no grid to cut (max_step) and no path to bridge (brownian_bridge). Checked by
    tests/server/test_rpc_library.py: every setting read changes some bits, none unread does."""
    if product == "european" and model != Model.HESTON:
        return tuple(s for s in MONTE_CARLO_SETTINGS if s not in ("max_step", "brownian_bridge"))
    return MONTE_CARLO_SETTINGS


for _product, (_entry, _columns) in _MC_PRODUCTS.items():
    for _model in (Model.BLACK_SCHOLES_MERTON, Model.BLACK_76, Model.HESTON):
        register(_product, (_model,), Engine.MONTE_CARLO, name=f"monte_carlo_{_product}", version="1.0.0",
                 kernel=_mc, run=_run_mc(_entry, 4 if _model == Model.HESTON else 1, _columns),
                 monte_carlo=True, validated_against=_MC_VALIDATION, polls_stop=True,
                 settings=_mc_settings(_product, _model),
                 cost=_mc_cost(_model == Model.HESTON, _product),
                 default=_model == Model.HESTON and _product != "european")
