"""The options library's engines: (product, model, engine) -> the kernel that prices it.

Each :class:`EngineSpec` names its model reference and version (every result carries it),
the measures it computes and how each is obtained (the kernels say: their ``MEASURES`` and
``GREEK_METHODS``), and ``run``: an adapter of a few lines that hands a
:class:`~pricegrid.server.domain.products.ProductBatch`'s columns to the kernel in the order
the kernel takes them. Every kernel follows one convention (see ext/: arrays of length n or
1 in, ``out[k, n]`` + per-row status bits out, GIL released, OpenMP above a threshold).

Models: the kernels of this library are written under Black-Scholes-Merton (spot, dividend
yield) and Heston. Black-76 (options on futures) is BSM with spot = futures price and
dividend yield = rate, so every BSM engine also prices Black-76; its rho then holds the
futures price fixed (dV/dr with r and q moving together) and it has no dividend rho.

Validation of each kernel is in tests/ext/test_<family>_kernel.py (QuantLib on random
cases, published tables, identities); ``validated_against`` says which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from pricegrid.server.domain.models import Engine, GreekMethod, Measure, Model, ModelRef
from pricegrid.server.domain.products import ProductBatch
from pricegrid.server.domain.instruments import MarketBatch

_EMPTY = np.empty(0, dtype=np.float64)


@dataclass(frozen=True)
class Settings:
    """Engine settings after defaults (pricegrid.v1.EngineSettings)."""

    paths: int = 100_000
    seed: int = 1
    max_step: float = 1.0 / 52.0
    antithetic: bool = True
    control_variate: bool = True
    sobol: bool = False
    brownian_bridge: Optional[bool] = None  # None: on with Sobol
    tree_steps: int = 801
    american_scheme: int = 2  # 1 fast, 2 accurate, 3 high precision

    @property
    def bridge(self) -> bool:
        return self.sobol if self.brownian_bridge is None else self.brownian_bridge


DEFAULT_SETTINGS = Settings()

#: run(batch, market, codes int32[k], out (k, n), stderr (k, n) or None, status int32[n], threads, settings) -> bad rows
Runner = Callable[[ProductBatch, MarketBatch, np.ndarray, np.ndarray, Optional[np.ndarray], np.ndarray, int, Settings], int]


@dataclass(frozen=True)
class EngineSpec:
    product: str
    model: Model
    engine: Engine
    ref: ModelRef
    measures: tuple[Measure, ...]
    methods: dict = field(hash=False)  # Measure -> GreekMethod
    run: Runner = field(hash=False, repr=False)
    validated_against: str = ""
    default: bool = False
    monte_carlo: bool = False
    underlying: str = "spot"  # the market input the model needs

    @property
    def takes_dividend(self) -> bool:
        return self.model != Model.BLACK_76


ENGINES: dict[tuple[str, Model, Engine], EngineSpec] = {}


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
) -> None:
    """Add an engine for ``product`` under each of ``models``. Its measures are the kernel's
    ``MEASURES`` (or ``measures``), less those a model does not have."""
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
        ENGINES[(product, model, engine)] = EngineSpec(
            product=product,
            model=model,
            engine=engine,
            ref=ModelRef(model_name, name, version),
            measures=ms,
            methods=_methods(kernel, ms, greek_methods, engine),
            run=_black76(run) if model == Model.BLACK_76 else run,
            validated_against=validated_against,
            default=default,
            monte_carlo=monte_carlo,
            underlying="forward" if model in (Model.BLACK_76, Model.BACHELIER) else "spot",
        )


def _black76(run: Runner) -> Runner:
    """A BSM runner pricing Black-76: spot = futures price, dividend yield = rate; rho is the
    sum of the kernel's rho and dividend rho (r and q move together, the futures price held)."""

    def black76(batch, market, codes, out, stderr, status, threads, settings):
        m = MarketBatch(market.underlying, market.rate, market.rate, market.volatility)
        rho = np.flatnonzero(codes == int(Measure.RHO))
        if not len(rho):
            return run(batch, m, codes, out, stderr, status, threads, settings)
        k, n = out.shape
        wide = np.empty((k + 1, n))
        nbad = run(batch, m, np.append(codes, np.int32(Measure.DIVIDEND_RHO)).astype(np.int32), wide, None, status,
                   threads, settings)
        wide[rho[0]] += wide[k]
        out[...] = wide[:k]
        return nbad

    return black76


def find(product: str, model: Model, engine: Engine) -> Optional[EngineSpec]:
    if engine == Engine.UNSPECIFIED:
        for spec in ENGINES.values():
            if spec.product == product and spec.model == model and spec.default:
                return spec
        return None
    return ENGINES.get((product, model, engine))


def offered(product: str) -> list[EngineSpec]:
    return [s for s in ENGINES.values() if s.product == product]


def effective_inputs(spec: EngineSpec, batch: ProductBatch, market: MarketBatch, rows: int):
    """(forward, discount factor, time, volatility) columns of ``rows`` rows."""
    t = batch.columns["time_to_expiry"]
    df = np.exp(-market.rate * t)
    if spec.underlying == "forward":
        fwd = market.underlying * np.ones_like(t)
    else:
        fwd = market.underlying * np.exp((market.rate - market.dividend_yield) * t)
    vol = np.sqrt(market.v0) if spec.model == Model.HESTON else market.volatility
    full = lambda x: np.array(np.broadcast_to(x, (rows,)), dtype=np.float64)  # noqa: E731 (own, writable)
    return full(fwd), full(df), full(t), full(vol)


# ------------------------------------------------------------------------------ engines
from pricegrid.ext import black as _black  # noqa: E402


def _run_black(model_code: int):
    def run(batch, market, codes, out, stderr, status, threads, settings):
        c = batch.columns
        return _black.price_batch(
            model_code, c["option_type"], c["strike"], c["time_to_expiry"], market.underlying, market.rate,
            market.dividend_yield, market.volatility, codes, out, _EMPTY, _EMPTY, status, threads,
        )

    return run


_BLACK_VALIDATION = "QuantLib AnalyticEuropeanEngine/blackFormula/bachelierBlackFormula, finite differences, parity; tests/ext/test_black_kernel.py"

for _model, _code in ((Model.BLACK_SCHOLES_MERTON, 1), (Model.BACHELIER, 3)):
    register("european", (_model,), Engine.ANALYTIC, name="analytic_european", version="1.0.0", kernel=_black,
             run=_run_black(_code), validated_against=_BLACK_VALIDATION, default=True,
             measures=tuple(int(m) for m in Measure))
# Black-76 through its own kernel formulas (not the BSM mapping): rho and dividend rho as in
# common.proto, identical to the unary fast path.
ENGINES[("european", Model.BLACK_76, Engine.ANALYTIC)] = EngineSpec(
    product="european", model=Model.BLACK_76, engine=Engine.ANALYTIC,
    ref=ModelRef("black_76", "analytic_european", "1.0.0"), measures=tuple(Measure),
    methods={m: GreekMethod.ANALYTIC for m in Measure}, run=_run_black(2), validated_against=_BLACK_VALIDATION,
    default=True, underlying="forward",
)


from pricegrid.ext import american as _american  # noqa: E402


def _run_american(method: int):
    def run(batch, market, codes, out, stderr, status, threads, settings):
        c = batch.columns
        return _american.price_batch(
            c["option_type"], c["strike"], c["time_to_expiry"], market.underlying, market.rate, market.dividend_yield,
            market.volatility, codes, out, status, threads, method, settings.american_scheme, settings.tree_steps,
        )

    return run


_AMERICAN_MODELS = (Model.BLACK_SCHOLES_MERTON, Model.BLACK_76)
register("american", _AMERICAN_MODELS, Engine.FIXED_POINT, name="fixed_point_american", version="1.0.0",
         kernel=_american, run=_run_american(_american.METHOD_FIXED_POINT), default=True,
         greek_methods=_american.GREEK_METHODS_BY_METHOD[_american.METHOD_FIXED_POINT],
         validated_against="QuantLib QdFpAmericanEngine high precision on random cases (accurate scheme within 3e-5),"
                           " QuantLib Leisen-Reimer and FD engines for Greeks, Ju-Zhong and Healy tables, American >="
                           " European, put-call symmetry; tests/ext/test_american_kernel.py")
register("american", _AMERICAN_MODELS, Engine.BINOMIAL_TREE, name="leisen_reimer_american", version="1.0.0",
         kernel=_american, run=_run_american(_american.METHOD_TREE),
         greek_methods=_american.GREEK_METHODS_BY_METHOD[_american.METHOD_TREE],
         validated_against="QuantLib BinomialVanillaEngine (Leisen-Reimer) to 1e-9, convergence to the fixed-point"
                           " engine; tests/ext/test_american_kernel.py")
from pricegrid.ext import heston as _heston  # noqa: E402


def _run_heston(batch, market, codes, out, stderr, status, threads, settings):
    c = batch.columns
    return _heston.price_batch(
        c["option_type"], c["strike"], c["time_to_expiry"], market.underlying, market.rate, market.dividend_yield,
        market.v0, market.kappa, market.theta, market.sigma, market.rho, codes, out, status, threads,
    )


register("european", (Model.HESTON,), Engine.ANALYTIC, name="analytic_heston", version="1.0.0", kernel=_heston,
         run=_run_heston, default=True,
         validated_against="QuantLib AnalyticHestonEngine (angled contour, exp-sinh 1e-14) on random cases to 1e-10,"
                           " published values, Greeks by finite differences; tests/ext/test_heston_kernel.py")




from pricegrid.ext import asian as _asian  # noqa: E402
from pricegrid.ext import lookback as _lookback  # noqa: E402


def _run_asian(arithmetic_method: int):
    def run(batch, market, codes, out, stderr, status, threads, settings):
        c, s = batch.columns, batch.schedule
        return _asian.asian_price_batch(
            c["averaging"], c["option_type"], c["strike"], c["time_to_expiry"], s.times, s.counts,
            c["running_average"], c["past_fixings"], c["elapsed"], market.underlying, market.rate,
            market.dividend_yield, market.volatility, codes, out, status, threads, arithmetic_method,
        )

    return run


_ASIAN_VALIDATION = (
    "QuantLib {engine} on 1000 random cases (1e-12 geometric, 1e-10 moment matching), 60-digit mpmath, Haug and"
    " Clewlow-Strickland tables, parity, one fixing = European; tests/ext/test_asian_kernel.py"
)
register("asian", _AMERICAN_MODELS, Engine.ANALYTIC, name="analytic_asian_tw", version="1.0.0", kernel=_asian,
         run=_run_asian(_asian.TURNBULL_WAKEMAN), default=True,
         validated_against=_ASIAN_VALIDATION.format(
             engine="Analytic{Continuous,Discrete}GeometricAveragePriceAsianEngine and TurnbullWakemanAsianEngine"))
register("asian", _AMERICAN_MODELS, Engine.TURNBULL_WAKEMAN, name="analytic_asian_tw", version="1.0.0",
         kernel=_asian, run=_run_asian(_asian.TURNBULL_WAKEMAN),
         validated_against=_ASIAN_VALIDATION.format(engine="TurnbullWakemanAsianEngine"))
register("asian", _AMERICAN_MODELS, Engine.LEVY, name="analytic_asian_levy", version="1.0.0", kernel=_asian,
         run=_run_asian(_asian.LEVY),
         validated_against=_ASIAN_VALIDATION.format(engine="ContinuousArithmeticAsianLevyEngine"))


def _run_lookback(batch, market, codes, out, stderr, status, threads, settings):
    c = batch.columns
    return _lookback.lookback_price_batch(
        c["strike_type"], c["option_type"], c["strike"], c["time_to_expiry"], c["running_minimum"],
        c["running_maximum"], market.underlying, market.rate, market.dividend_yield, market.volatility, codes, out,
        status, threads,
    )


register("lookback", _AMERICAN_MODELS, Engine.ANALYTIC, name="analytic_lookback", version="1.0.0",
         kernel=_lookback, run=_run_lookback, default=True,
         validated_against="QuantLib AnalyticContinuous{Floating,Fixed}LookbackEngine on 2000 random cases, 50-digit"
                           " evaluation, Haug and Broadie-Glasserman-Kou tables; tests/ext/test_lookback_kernel.py")


from pricegrid.ext import barrier as _barrier  # noqa: E402


def _run_barrier(batch, market, codes, out, stderr, status, threads, settings):
    c = batch.columns
    return _barrier.barrier_price_batch(
        c["barrier_type"], c["option_type"], c["strike"], c["time_to_expiry"], c["barrier"], c["rebate"],
        c["monitoring_interval"], market.underlying, market.rate, market.dividend_yield, market.volatility, codes, out,
        status, threads,
    )


def _run_double_barrier(batch, market, codes, out, stderr, status, threads, settings):
    c = batch.columns
    return _barrier.double_barrier_price_batch(
        c["knock_type"], c["option_type"], c["strike"], c["time_to_expiry"], c["lower_barrier"], c["upper_barrier"],
        market.underlying, market.rate, market.dividend_yield, market.volatility, codes, out, status, threads,
    )


def _run_digital(batch, market, codes, out, stderr, status, threads, settings):
    c = batch.columns
    return _barrier.digital_price_batch(
        c["payoff"], c["option_type"], c["strike"], c["time_to_expiry"], c["cash"], c["payoff_strike"],
        market.underlying, market.rate, market.dividend_yield, market.volatility, codes, out, status, threads,
    )


def _run_touch(batch, market, codes, out, stderr, status, threads, settings):
    c = batch.columns
    return _barrier.touch_price_batch(
        c["touch_type"], c["direction"], c["payment"], c["cash"], c["barrier"], c["time_to_expiry"],
        c["monitoring_interval"], market.underlying, market.rate, market.dividend_yield, market.volatility, codes, out,
        status, threads,
    )


_B = "tests/ext/test_barrier_kernel.py"
register("barrier", _AMERICAN_MODELS, Engine.ANALYTIC, name="analytic_barrier", version="1.0.0", kernel=_barrier,
         run=_run_barrier, default=True, greek_methods=_barrier.GREEK_METHODS_BY_ENTRY["barrier_price_batch"],
         validated_against="QuantLib AnalyticBarrierEngine on 4000 random cases (1e-12), 40-digit mpmath, Haug"
                           f" Table 4-13, Broadie-Glasserman-Kou vs Monte Carlo, in-out parity; {_B}")
register("double_barrier", _AMERICAN_MODELS, Engine.ANALYTIC, name="analytic_double_barrier", version="1.0.0",
         kernel=_barrier, run=_run_double_barrier, default=True,
         greek_methods=_barrier.GREEK_METHODS_BY_ENTRY["double_barrier_price_batch"],
         validated_against="QuantLib AnalyticDoubleBarrierEngine (5 and 50 terms), mpmath to 1e-15 of scale, Haug"
                           f" double-barrier table, in-out parity; {_B}")
register("digital", _AMERICAN_MODELS, Engine.ANALYTIC, name="analytic_digital", version="1.0.0", kernel=_barrier,
         run=_run_digital, default=True, greek_methods=_barrier.GREEK_METHODS_BY_ENTRY["digital_price_batch"],
         validated_against="QuantLib AnalyticEuropeanEngine with cash/asset/gap payoffs, price and Greeks (1e-12),"
                           f" mpmath derivatives; {_B}")
register("touch", _AMERICAN_MODELS, Engine.ANALYTIC, name="analytic_touch", version="1.0.0", kernel=_barrier,
         run=_run_touch, default=True, greek_methods=_barrier.GREEK_METHODS_BY_ENTRY["touch_price_batch"],
         validated_against="QuantLib AnalyticDigitalAmericanEngine, AnalyticDigitalAmericanKOEngine and"
                           f" AnalyticBinaryBarrierEngine, Haug binary-barrier cases, one-touch + no-touch parity; {_B}")


from pricegrid.ext import montecarlo as _mc  # noqa: E402

_ZERO1 = np.zeros(1)


def _run_mc(entry: str, model_code: int, columns: tuple[str, ...]):
    """A Monte Carlo product: its own columns, then the market, the model's parameters and
    the engine settings (kernel: ext/montecarlo.pyx)."""
    kernel = getattr(_mc, entry)

    def run(batch, market, codes, out, stderr, status, threads, settings):
        c = batch.columns
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
            settings.antithetic, settings.control_variate, settings.sobol, settings.bridge,
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
_MC_VALIDATION = (
    "within 3 standard errors of the analytic kernels (BSM, geometric Asian, barrier, lookback, Heston) and of"
    " QuantLib's MCDiscreteArithmeticAPEngine; standard errors scale as 1/sqrt(paths); reproducible by seed and"
    " thread count; tests/ext/test_montecarlo_kernel.py"
)
for _product, (_entry, _columns) in _MC_PRODUCTS.items():
    for _model in (Model.BLACK_SCHOLES_MERTON, Model.BLACK_76, Model.HESTON):
        register(_product, (_model,), Engine.MONTE_CARLO, name=f"monte_carlo_{_product}", version="1.0.0",
                 kernel=_mc, run=_run_mc(_entry, 4 if _model == Model.HESTON else 1, _columns),
                 monte_carlo=True, validated_against=_MC_VALIDATION,
                 default=_model == Model.HESTON and _product != "european")
