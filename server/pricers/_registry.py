"""The pricers' registry: each engine module adds its catalogue row and its runner here.

A row is a domain :class:`~pricegrid.server.domain.catalogue.EngineSpec` (data: model
reference and version, measures and how each is obtained, default, cost); its runner is an
adapter of a few lines that hands a :class:`~pricegrid.server.domain.products.ProductBatch`'s
columns to the kernel in the order the kernel takes them. Every kernel follows one
convention (see ext/: arrays of length n or 1 in, ``out[k, n]`` + per-row status bits out,
GIL released, OpenMP above a threshold).

Models: the kernels of the options library are written under Black-Scholes-Merton (spot,
dividend yield) and Heston. Black-76 (options on futures) is BSM with spot = futures price
and dividend yield = rate, so :func:`register` lets every BSM engine also price Black-76; its
rho then holds the futures price fixed (dV/dr with r and q moving together) and it has no
dividend rho.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from pricegrid.server.domain.catalogue import Catalogue, EngineSpec, Settings
from pricegrid.server.domain.cost import EngineCost
from pricegrid.server.domain.instruments import MarketBatch
from pricegrid.server.domain.models import UNDERLYING, Engine, GreekMethod, Measure, Model, ModelRef
from pricegrid.server.domain.products import ProductBatch

#: models of the Black-Scholes kernels of the options library (Black-76 by the mapping above)
BSM_AND_BLACK_76 = (Model.BLACK_SCHOLES_MERTON, Model.BLACK_76)
#: an empty output column (a kernel's optional output that is not wanted)
EMPTY = np.empty(0, dtype=np.float64)

#: run(batch, market, codes int32[k], out (k, n), stderr (k, n) or None, status int32[n], threads, settings) -> bad
#: rows; an engine whose spec says ``kernel_writes_forward`` also takes ``effective=(forward[n], df[n])``, one
#: whose spec says ``polls_stop`` takes ``stop=`` (the stop block of ext/pg_stop.h, or None)
Runner = Callable[[ProductBatch, MarketBatch, np.ndarray, np.ndarray, Optional[np.ndarray], np.ndarray, int, Settings], int]

#: cube(columns, time, underlying, rate, dividend, vol, base, quantity, pnl (n, s), threads) -> failed cells: an
#: engine's scenario cube priced straight into P&L (the moved inputs as ``pricegrid.ext.black.price_cube`` takes
#: them: a trade column, an (n, s) array, or ("add" | "mul", trade column, scenario vector))
CubeRunner = Callable[..., int]

#: every engine the pricers add, as data (read by the service)
CATALOGUE = Catalogue()
#: the code that runs each engine of the catalogue, by its key
RUNNERS: dict[tuple[str, Model, Engine], Runner] = {}
#: the engines that also price a scenario cube in one pass, by key (the others: through their runner)
CUBE_RUNNERS: dict[tuple[str, Model, Engine], CubeRunner] = {}


#: how an engine obtains the price itself
_PRICE_METHOD = {
    Engine.FIXED_POINT: GreekMethod.NUMERICAL,
    Engine.BINOMIAL_TREE: GreekMethod.TREE_GRID,
    Engine.MONTE_CARLO: GreekMethod.MONTE_CARLO,
}


def _methods(kernel, measures, named=None, engine=Engine.ANALYTIC) -> dict:
    named = getattr(kernel, "GREEK_METHODS", {}) if named is None else named
    out = {m: GreekMethod.of(named.get(int(m), "analytic")) for m in measures}
    if Measure.PRICE in out:
        out[Measure.PRICE] = _PRICE_METHOD.get(engine, GreekMethod.ANALYTIC)
    return out


def register(
    product: str,
    models: tuple[Model, ...],
    engine: Engine,
    *,
    name: str,
    version: str,
    kernel,
    run: Runner,
    validated_against: str,
    default: bool = False,
    monte_carlo: bool = False,
    measures: Optional[tuple[int, ...]] = None,
    greek_methods: Optional[dict] = None,
    kernel_writes_forward: bool = False,
    fuses_market: bool = False,
    cash_dividends: bool = False,
    cost: Optional[EngineCost] = None,
    polls_stop: bool = False,
    settings: tuple[str, ...] = (),
) -> None:
    """Add an engine for ``product`` under each of ``models``. Its measures are the kernel's
    ``MEASURES`` (or ``measures``), less those a model does not have. ``cash_dividends``: its
    runner prices ``MarketBatch.cash_dividends`` (spot models only: a futures price has none).
    ``cost``: its measured costs (the service estimates a request's cost from them);
    ``polls_stop``: its runner takes ``stop=`` and its kernel polls it; ``settings``: the
    EngineSettings fields its runner reads (any other set is refused)."""
    codes = tuple(measures if measures is not None else kernel.MEASURES)
    for model in models:
        ms = tuple(Measure(c) for c in codes)
        if model == Model.BLACK_76:
            # rho is rho + dividend rho (the futures price held), dividend rho does not exist
            if not (Measure.RHO in ms and Measure.DIVIDEND_RHO in ms) or monte_carlo:
                ms = tuple(m for m in ms if m != Measure.RHO)
            ms = tuple(m for m in ms if m != Measure.DIVIDEND_RHO)
        model_name = {
            Model.BLACK_SCHOLES_MERTON: "black_scholes_merton",
            Model.BLACK_76: "black_76",
            Model.BACHELIER: "bachelier",
            Model.HESTON: "heston",
        }[model]
        spec = EngineSpec(
            product=product,
            model=model,
            engine=engine,
            ref=ModelRef(model_name, name, version),
            measures=ms,
            methods=_methods(kernel, ms, greek_methods, engine),
            validated_against=validated_against,
            default=default,
            monte_carlo=monte_carlo,
            underlying=UNDERLYING[model],
            kernel_writes_forward=kernel_writes_forward and model != Model.BLACK_76,
            fuses_market=fuses_market and model != Model.BLACK_76,
            cash_dividends=cash_dividends and UNDERLYING[model] == "spot",
            cost=cost,
            polls_stop=polls_stop,
            settings=settings,
        )
        add(spec, _black76(run) if model == Model.BLACK_76 else run)


def add(spec: EngineSpec, run: Runner) -> None:
    CATALOGUE.add(spec)
    RUNNERS[spec.key] = run


def _black76(run: Runner) -> Runner:
    """A BSM runner pricing Black-76: spot = futures price, dividend yield = rate; rho is the
    sum of the kernel's rho and dividend rho (r and q move together, the futures price held)."""

    def black76(batch, market, codes, out, stderr, status, threads, settings, **kw):
        m = MarketBatch(market.underlying, market.rate, market.rate, market.volatility)
        rho = np.flatnonzero(codes == int(Measure.RHO))
        if not len(rho):
            return run(batch, m, codes, out, stderr, status, threads, settings, **kw)
        k, n = out.shape
        wide = np.empty((k + 1, n))
        nbad = run(batch, m, np.append(codes, np.int32(Measure.DIVIDEND_RHO)).astype(np.int32), wide, None, status,
                   threads, settings, **kw)
        wide[rho[0]] += wide[k]
        out[...] = wide[:k]
        return nbad

    return black76


def runner(spec: EngineSpec) -> Runner:
    """The code that runs ``spec``."""
    return RUNNERS[spec.key]


def add_cube_runner(spec: EngineSpec, cube: CubeRunner) -> None:
    """``cube`` prices scenario cubes of ``spec`` (an engine already added): the same bits as
    its runner on the cube's rows laid out as columns."""
    if spec.key not in RUNNERS:
        raise ValueError(f"engine {spec.key} is not registered")
    CUBE_RUNNERS[spec.key] = cube


def cube_runner(spec: EngineSpec) -> Optional[CubeRunner]:
    """The one-pass scenario cube of ``spec``, or None (its cubes go through its runner)."""
    return CUBE_RUNNERS.get(spec.key)
