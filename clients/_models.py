"""Typed value objects of the client API, and the names they use for the contract's enums.

Everything here is a small frozen dataclass, checked when it is built, so that a mistake
shows up where it was made rather than as a server error later::

    >>> from datetime import date
    >>> EuropeanOption(option_type="call", strike=100.0, expiry=0.5)
    EuropeanOption(option_type='call', strike=100.0, expiry=0.5)
    >>> EuropeanOption(
    ...     option_type="put",
    ...     strike=95.0,
    ...     expiry=ExpiryDates(valuation_date=date(2025, 1, 2), expiry_date=date(2025, 7, 2)),
    ... ).expiry.day_count
    'ACT/365F'
    >>> Market(spot=100.0, rate=0.05, dividend_yield=0.01, volatility=0.2)
    Market(spot=100.0, forward=None, rate=0.05, dividend_yield=0.01, volatility=0.2)

Units are those of ``proto/pricegrid/v1/common.proto``: rates and yields continuously
compounded per 1.00, volatility per 1.00 and annualised (lognormal for ``"bsm"`` and
``"black76"``, absolute for ``"bachelier"``), Greeks per 1.00 change of their input.
"""

from __future__ import annotations

import datetime as _dt
import numbers
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from pricegrid.v1 import common_pb2

# --------------------------------------------------------------------------- enum names
#: model name -> pricegrid.v1.Model. The names ``priced_by.model`` reports are accepted too.
MODELS: Mapping[str, int] = {
    "bsm": common_pb2.MODEL_BLACK_SCHOLES_MERTON,
    "black76": common_pb2.MODEL_BLACK_76,
    "bachelier": common_pb2.MODEL_BACHELIER,
    "heston": common_pb2.MODEL_HESTON,
}
_MODEL_ALIASES = {
    "black_scholes_merton": "bsm",
    "black-scholes-merton": "bsm",
    "black_76": "black76",
    "black-76": "black76",
    "normal": "bachelier",
}

#: engine name -> pricegrid.v1.Engine (None or "default": the product's default engine)
ENGINES: Mapping[str, int] = {
    "analytic": common_pb2.ENGINE_ANALYTIC,
    "fixed_point": common_pb2.ENGINE_FIXED_POINT,
    "binomial_tree": common_pb2.ENGINE_BINOMIAL_TREE,
    "monte_carlo": common_pb2.ENGINE_MONTE_CARLO,
    "turnbull_wakeman": common_pb2.ENGINE_TURNBULL_WAKEMAN,
    "levy": common_pb2.ENGINE_LEVY,
}


def enum_names(enum_name: str) -> dict[str, int]:
    """Lower-case names of a contract enum's values without its prefix
    (``BarrierType`` -> ``{"down_in": 1, ...}``), UNSPECIFIED left out."""
    desc = common_pb2.DESCRIPTOR.enum_types_by_name[enum_name]
    prefix = desc.values[0].name[: -len("UNSPECIFIED")]
    return {v.name[len(prefix):].lower(): v.number for v in desc.values if v.number}


def enum_code(enum_name: str, value: str | int, what: str) -> int:
    """``"down-in"``/``"DOWN_IN"``/``1`` -> the enum's number; ValueError names the choices."""
    names = enum_names(enum_name)
    if isinstance(value, str):
        key = value.strip().lower().replace("-", "_").replace(" ", "_")
        if key in names:
            return names[key]
    elif isinstance(value, int) and not isinstance(value, bool) and value in names.values():
        return int(value)
    raise ValueError(f"unknown {what} {value!r}; expected one of {sorted(names)}")


def engine_code(engine: str | int | None) -> int:
    if engine is None or engine == "default":
        return 0
    if isinstance(engine, str) and engine.strip().lower().replace("-", "_") in ENGINES:
        return ENGINES[engine.strip().lower().replace("-", "_")]
    if isinstance(engine, int) and not isinstance(engine, bool) and engine in ENGINES.values():
        return int(engine)
    raise ValueError(f"unknown engine {engine!r}; expected one of {sorted(ENGINES)} or None")


#: measure name -> pricegrid.v1.Measure, in the contract's order (read from its descriptor:
#: "price", "delta", ..., "clean_price", "yield", "pv01", "pnl")
MEASURES: Mapping[str, int] = {
    v.name.removeprefix("MEASURE_").lower(): v.number for v in common_pb2.Measure.DESCRIPTOR.values if v.number
}
MEASURE_NAMES: Mapping[int, str] = {v: k for k, v in MEASURES.items()}

#: day count name -> pricegrid.v1.DayCount
DAY_COUNTS: Mapping[str, int] = {
    "ACT/365F": common_pb2.DAY_COUNT_ACT_365F,
    "ACT/360": common_pb2.DAY_COUNT_ACT_360,
    "ACT/ACT ISDA": common_pb2.DAY_COUNT_ACT_ACT_ISDA,
    "30/360": common_pb2.DAY_COUNT_THIRTY_360,
}
_DAY_COUNT_KEYS = {name.replace(" ", "").upper(): name for name in DAY_COUNTS}
_DAY_COUNT_KEYS.update({"ACT/365FIXED": "ACT/365F", "ACT/ACT": "ACT/ACT ISDA", "30/360BONDBASIS": "30/360"})

#: option type name -> pricegrid.v1.OptionType
OPTION_TYPES: Mapping[str, int] = {"call": common_pb2.OPTION_TYPE_CALL, "put": common_pb2.OPTION_TYPE_PUT}
_OPTION_TYPE_KEYS = {"call": "call", "c": "call", "put": "put", "p": "put"}


def model_code(model: str | int) -> int:
    """``"bsm"`` | ``"black76"`` | ``"bachelier"`` (or a pricegrid.v1.Model value) -> Model."""
    if isinstance(model, str):
        key = model.strip().lower()
        key = _MODEL_ALIASES.get(key, key)
        if key in MODELS:
            return MODELS[key]
        raise ValueError(f"unknown model {model!r}; expected one of {sorted(MODELS)}")
    if isinstance(model, int) and model in MODELS.values():
        return int(model)
    raise ValueError(f"unknown model {model!r}; expected one of {sorted(MODELS)}")


def measure_code(measure: str | int) -> int:
    """``"delta"`` (or a pricegrid.v1.Measure value) -> Measure."""
    if isinstance(measure, str):
        key = measure.strip().lower()
        if key in MEASURES:
            return MEASURES[key]
    elif isinstance(measure, int) and measure in MEASURE_NAMES:
        return int(measure)
    raise ValueError(f"unknown measure {measure!r}; expected one of {list(MEASURES)}")


def measure_codes(measures: str | Iterable[str | int]) -> list[int]:
    """A name, a comma-separated string or an iterable of names -> Measure values, in order,
    without repeats."""
    if isinstance(measures, str):
        measures = [m for m in measures.split(",") if m.strip()]
    out: list[int] = []
    for m in measures:
        code = measure_code(m)
        if code not in out:
            out.append(code)
    return out


def day_count_name(day_count: str) -> str:
    """Normalise a day count name (``"act/365f"`` -> ``"ACT/365F"``)."""
    if isinstance(day_count, str):
        key = day_count.replace(" ", "").replace("_", "").upper()
        if key in _DAY_COUNT_KEYS:
            return _DAY_COUNT_KEYS[key]
    raise ValueError(f"unknown day count {day_count!r}; expected one of {list(DAY_COUNTS)}")


def option_type_name(option_type: str | int) -> str:
    """``"call"``/``"C"``/``1`` -> ``"call"``; ``"put"``/``"P"``/``2`` -> ``"put"``."""
    if isinstance(option_type, str):
        key = option_type.strip().lower()
        if key in _OPTION_TYPE_KEYS:
            return _OPTION_TYPE_KEYS[key]
    elif isinstance(option_type, int) and not isinstance(option_type, bool):
        for name, code in OPTION_TYPES.items():
            if code == option_type:
                return name
    raise ValueError(f"unknown option type {option_type!r}; expected 'call' or 'put'")


def _number(name: str, value, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    return float(value)


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True, slots=True)
class ExpiryDates:
    """An expiry given as dates; the server turns them into a year fraction.

        >>> ExpiryDates(valuation_date=date(2025, 1, 2), expiry_date=date(2026, 1, 2),
        ...             day_count="ACT/360")

    ``day_count`` is one of ``"ACT/365F"`` (default), ``"ACT/360"``, ``"ACT/ACT ISDA"``,
    ``"30/360"`` (ISDA bond basis); case and spaces are forgiven.
    """

    valuation_date: _dt.date
    expiry_date: _dt.date
    day_count: str = "ACT/365F"

    def __post_init__(self) -> None:
        for name in ("valuation_date", "expiry_date"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = _dt.date.fromisoformat(value)
            elif isinstance(value, _dt.datetime):
                value = value.date()
            if not isinstance(value, _dt.date):
                raise TypeError(f"{name} must be a datetime.date, not {type(value).__name__}")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "day_count", day_count_name(self.day_count))


@dataclass(frozen=True, slots=True)
class EuropeanOption:
    """A European call or put.

        >>> EuropeanOption(option_type="call", strike=100.0, expiry=0.5)   # years
        >>> EuropeanOption(option_type="put", strike=100.0,
        ...                expiry=ExpiryDates(valuation_date=date(2025, 1, 2),
        ...                                   expiry_date=date(2025, 7, 2)))

    ``option_type`` is ``"call"`` or ``"put"`` (``"C"``/``"P"`` are accepted and normalised).
    """

    option_type: str
    strike: float
    expiry: float | ExpiryDates

    def __post_init__(self) -> None:
        object.__setattr__(self, "option_type", option_type_name(self.option_type))
        object.__setattr__(self, "strike", _number("strike", self.strike))
        if not isinstance(self.expiry, ExpiryDates):
            object.__setattr__(self, "expiry", _number("expiry", self.expiry))


@dataclass(frozen=True, slots=True)
class Market:
    """Market inputs for one trade, inline. Give exactly one of ``spot`` (``"bsm"``) or
    ``forward`` (``"black76"``, ``"bachelier"``).

        >>> Market(spot=100.0, rate=0.05, dividend_yield=0.01, volatility=0.2)
        >>> Market(forward=82.5, rate=0.03, volatility=0.45)          # Black-76
        >>> Market(forward=0.012, rate=0.02, volatility=0.007)        # Bachelier, normal vol

    ``volatility`` may be left out only for implied volatility, which ignores it.

    Or by reference to a market snapshot the server holds: the underlying's level, rates and
    dividends (and, without ``volatility``, its surface's vol at the trade's expiry and
    strike) come from the snapshot:

        >>> Market(snapshot_id="9f2c...", underlying_id="SPX")
        >>> Market(snapshot_id="9f2c...", underlying_id="EUA-DEC27", volatility=0.45)
    """

    spot: float | None = None
    forward: float | None = None
    rate: float = 0.0
    dividend_yield: float = 0.0
    volatility: float | None = None
    heston: "HestonParameters | None" = None
    snapshot_id: str | None = None
    underlying_id: str | None = None

    def __post_init__(self) -> None:
        if self.snapshot_id is not None or self.underlying_id is not None:
            if not (self.snapshot_id and self.underlying_id):
                raise ValueError("give both snapshot_id= and underlying_id= to price against a snapshot")
            if self.spot is not None or self.forward is not None or self.rate or self.dividend_yield:
                raise ValueError("the spot or forward, rate and dividend yield come from the snapshot: leave them out")
        elif (self.spot is None) == (self.forward is None):
            raise ValueError("give exactly one of spot= or forward=")
        if self.heston is not None and not isinstance(self.heston, HestonParameters):
            raise TypeError(f"heston must be HestonParameters, not {type(self.heston).__name__}")
        object.__setattr__(self, "spot", _number("spot", self.spot, optional=True))
        object.__setattr__(self, "forward", _number("forward", self.forward, optional=True))
        object.__setattr__(self, "rate", _number("rate", self.rate))
        object.__setattr__(self, "dividend_yield", _number("dividend_yield", self.dividend_yield))
        object.__setattr__(self, "volatility", _number("volatility", self.volatility, optional=True))


@dataclass(frozen=True, slots=True)
class HestonParameters:
    """Heston (1993) parameters for ``model="heston"``: initial variance ``v0``, mean
    reversion ``kappa``, long-run variance ``theta``, vol of variance ``sigma``, correlation
    ``rho``.

        >>> Market(spot=100.0, rate=0.03, heston=HestonParameters(0.04, 1.5, 0.04, 0.5, -0.7))
    """

    v0: float
    kappa: float
    theta: float
    sigma: float
    rho: float

    def __post_init__(self) -> None:
        for name in ("v0", "kappa", "theta", "sigma", "rho"):
            object.__setattr__(self, name, _number(name, getattr(self, name)))


def _instrument(self, enums: Mapping[str, str], numbers: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    """Shared checks of the instrument dataclasses: enum fields by name, numbers as floats,
    the expiry as years or ExpiryDates."""
    for name, enum in enums.items():
        if name == "option_type":
            object.__setattr__(self, name, option_type_name(self.option_type))
        else:
            code = enum_code(enum, getattr(self, name), name)
            object.__setattr__(self, name, next(k for k, v in enum_names(enum).items() if v == code))
    for name in numbers:
        object.__setattr__(self, name, _number(name, getattr(self, name), optional=name in optional))
    if not isinstance(self.expiry, ExpiryDates):
        object.__setattr__(self, "expiry", _number("expiry", self.expiry))


@dataclass(frozen=True, slots=True)
class AmericanOption:
    """An American call or put (``model="bsm"`` on a spot, ``"black76"`` on a futures price).

        >>> AmericanOption(option_type="put", strike=100.0, expiry=1.0)
    """

    option_type: str
    strike: float
    expiry: float | ExpiryDates

    def __post_init__(self) -> None:
        _instrument(self, {"option_type": "OptionType"}, ("strike",))


@dataclass(frozen=True, slots=True)
class BarrierOption:
    """A single barrier: ``barrier_type`` ``"down_in"``, ``"down_out"``, ``"up_in"``,
    ``"up_out"``; ``rebate`` paid at expiry (knock-in never in) or at hit (knock-out);
    ``monitoring_interval`` years between observations (0: continuous).

        >>> BarrierOption(barrier_type="down_out", option_type="call", strike=100.0,
        ...               expiry=0.5, barrier=90.0, rebate=3.0)
    """

    barrier_type: str
    option_type: str
    strike: float
    expiry: float | ExpiryDates
    barrier: float
    rebate: float = 0.0
    monitoring_interval: float = 0.0

    def __post_init__(self) -> None:
        _instrument(self, {"barrier_type": "BarrierType", "option_type": "OptionType"},
                    ("strike", "barrier", "rebate", "monitoring_interval"))


@dataclass(frozen=True, slots=True)
class DoubleBarrierOption:
    """A double knock-in or knock-out (``knock_type`` ``"knock_in"``/``"knock_out"``)."""

    knock_type: str
    option_type: str
    strike: float
    expiry: float | ExpiryDates
    lower_barrier: float
    upper_barrier: float

    def __post_init__(self) -> None:
        _instrument(self, {"knock_type": "KnockType", "option_type": "OptionType"},
                    ("strike", "lower_barrier", "upper_barrier"))


@dataclass(frozen=True, slots=True)
class DigitalOption:
    """A European digital: ``payoff`` ``"cash_or_nothing"`` (pays ``cash``),
    ``"asset_or_nothing"`` or ``"gap"`` (pays S - ``payoff_strike`` once S passes ``strike``)."""

    payoff: str
    option_type: str
    strike: float
    expiry: float | ExpiryDates
    cash: float = 1.0
    payoff_strike: float = 0.0

    def __post_init__(self) -> None:
        _instrument(self, {"payoff": "DigitalPayoff", "option_type": "OptionType"},
                    ("strike", "cash", "payoff_strike"))


@dataclass(frozen=True, slots=True)
class TouchOption:
    """One-touch or no-touch on a barrier ``direction`` ``"down"``/``"up"`` of the spot; a
    one-touch pays ``cash`` ``"at_hit"`` or ``"at_expiry"`` (a no-touch at expiry)."""

    touch_type: str
    direction: str
    barrier: float
    expiry: float | ExpiryDates
    payment: str = "at_expiry"
    cash: float = 1.0
    monitoring_interval: float = 0.0

    def __post_init__(self) -> None:
        _instrument(self, {"touch_type": "TouchType", "direction": "BarrierDirection", "payment": "TouchPayment"},
                    ("barrier", "cash", "monitoring_interval"))


@dataclass(frozen=True, slots=True)
class AsianOption:
    """An average-price Asian: ``averaging`` ``"arithmetic"``/``"geometric"``; future fixings
    as ``fixing_times`` (years) or ``fixing_dates`` (with an ExpiryDates expiry), neither for
    continuous averaging; an average already begun as ``running_average`` over
    ``past_fixings`` fixings (discrete) or ``elapsed`` years (continuous)."""

    averaging: str
    option_type: str
    strike: float
    expiry: float | ExpiryDates
    fixing_times: tuple[float, ...] = ()
    fixing_dates: tuple[_dt.date, ...] = ()
    running_average: float = 0.0
    past_fixings: int = 0
    elapsed: float = 0.0

    def __post_init__(self) -> None:
        _instrument(self, {"averaging": "Averaging", "option_type": "OptionType"},
                    ("strike", "running_average", "elapsed"))
        object.__setattr__(self, "fixing_times", tuple(_number("fixing_times", t) for t in self.fixing_times))
        object.__setattr__(self, "fixing_dates", tuple(
            _dt.date.fromisoformat(d) if isinstance(d, str) else d for d in self.fixing_dates))
        object.__setattr__(self, "past_fixings", int(self.past_fixings))


@dataclass(frozen=True, slots=True)
class LookbackOption:
    """A lookback: ``strike_type`` ``"floating"`` or ``"fixed"`` (with ``strike``); the
    extremes seen so far, ``running_minimum``/``running_maximum`` (None: the spot)."""

    strike_type: str
    option_type: str
    expiry: float | ExpiryDates
    strike: float = 0.0
    running_minimum: float | None = None
    running_maximum: float | None = None

    def __post_init__(self) -> None:
        _instrument(self, {"strike_type": "LookbackStrike", "option_type": "OptionType"},
                    ("strike", "running_minimum", "running_maximum"), optional=("running_minimum", "running_maximum"))


#: instrument dataclass -> the PriceRequest oneof member it fills
INSTRUMENTS = {
    EuropeanOption: "european",
    AmericanOption: "american",
    BarrierOption: "barrier",
    DoubleBarrierOption: "double_barrier",
    DigitalOption: "digital",
    TouchOption: "touch",
    AsianOption: "asian",
    LookbackOption: "lookback",
}


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Settings of the pricing method; None leaves the server's default.

        >>> EngineSettings(paths=200_000, seed=7, sobol=True)          # Monte Carlo
        >>> EngineSettings(tree_steps=2001)                           # binomial tree
        >>> EngineSettings(american_scheme="high_precision")          # fixed point
    """

    paths: int | None = None
    seed: int | None = None
    max_step: float | None = None
    antithetic: bool | None = None
    control_variate: bool | None = None
    sobol: bool | None = None
    brownian_bridge: bool | None = None
    tree_steps: int | None = None
    american_scheme: str | None = None

    def __post_init__(self) -> None:
        if self.american_scheme is not None:
            code = enum_code("AmericanScheme", self.american_scheme, "american_scheme")
            object.__setattr__(self, "american_scheme", next(
                k for k, v in enum_names("AmericanScheme").items() if v == code))


@dataclass(frozen=True, slots=True)
class MarketUpdate:
    """A partial market move for the trades held on a ticking stream: only the fields set
    change; ``trade_ids`` empty moves every trade held.

        >>> MarketUpdate(spot=101.5)
        >>> MarketUpdate(volatility=0.25, trade_ids=("T1", "T7"))
    """

    spot: float | None = None
    forward: float | None = None
    rate: float | None = None
    dividend_yield: float | None = None
    volatility: float | None = None
    trade_ids: tuple[str, ...] = ()
    heston: HestonParameters | None = None

    def __post_init__(self) -> None:
        for name in ("spot", "forward", "rate", "dividend_yield", "volatility"):
            object.__setattr__(self, name, _number(name, getattr(self, name), optional=True))
        if isinstance(self.trade_ids, str):
            object.__setattr__(self, "trade_ids", (self.trade_ids,))
        else:
            object.__setattr__(self, "trade_ids", tuple(str(t) for t in self.trade_ids))


# --------------------------------------------------------------------------- results
@dataclass(frozen=True, slots=True)
class Greeks:
    """The Greeks of one trade; each is ``None`` unless it was asked for.

    ``vega_per_point`` is vega per vol point (vega / 100) and ``theta_per_day`` is theta per
    calendar day (theta / 365); the server fills them beside ``vega`` and ``theta``.
    """

    delta: float | None = None
    gamma: float | None = None
    vega: float | None = None
    theta: float | None = None
    rho: float | None = None
    dividend_rho: float | None = None
    vanna: float | None = None
    volga: float | None = None
    charm: float | None = None
    vega_per_point: float | None = None
    theta_per_day: float | None = None

    def as_dict(self) -> dict[str, float]:
        """The Greeks that are present, by name."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__ if getattr(self, name) is not None}


@dataclass(frozen=True, slots=True)
class EffectiveInputs:
    """The inputs the model actually used (dates made a year fraction, spot made a forward)."""

    forward: float
    discount_factor: float
    time_to_expiry: float
    volatility: float


@dataclass(frozen=True, slots=True)
class ModelRef:
    """Which model, engine and engine version produced a result (for audit)."""

    model: str = ""
    engine: str = ""
    version: str = ""

    def __str__(self) -> str:
        return f"{self.model}/{self.engine}@{self.version}"


@dataclass(frozen=True, slots=True)
class PriceResult:
    """A price, the Greeks asked for, the inputs used and the model that priced it.

        >>> r = client.price(option, market, measures=("delta", "vega"))
        >>> r.price, r.greeks.delta, r.greeks.vega_per_point, r.inputs.forward, str(r.priced_by)
    """

    price: float
    greeks: Greeks = field(default_factory=Greeks)
    inputs: EffectiveInputs | None = None
    priced_by: ModelRef = field(default_factory=ModelRef)
    #: Monte Carlo: the price's standard error (0 otherwise)
    standard_error: float = 0.0
    #: measure name -> how it was obtained ("analytic", "finite_difference", "tree_grid",
    #: "monte_carlo_crn", ...)
    methods: Mapping[str, str] = field(default_factory=dict)
    #: measure name -> Monte Carlo standard error
    standard_errors: Mapping[str, float] = field(default_factory=dict)
    #: what came from a market snapshot (None when the market was inline)
    market: "MarketUsed | None" = None
    #: every measure returned by name, the price included (any Measure, not only Greeks)
    values: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MarketUsed:
    """The market data a price took from a snapshot: the snapshot, the underlying, the curves,
    the cash dividends taken off the spot, and the surface the vol came from ("" if inline)."""

    snapshot_id: str
    underlying_id: str
    discount_curve: str = ""
    dividend_curve: str = ""
    dividends: int = 0
    vol_surface: str = ""


@dataclass(frozen=True, slots=True)
class ImpliedVolResult:
    """An implied volatility (lognormal, or normal for ``"bachelier"``) and its context."""

    volatility: float
    inputs: EffectiveInputs | None = None
    priced_by: ModelRef = field(default_factory=ModelRef)


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """The server's limits (ServerInfo.limits); the risk client plans its chunks from them."""

    max_message_bytes: int = 0
    max_rows: int = 0
    default_deadline_seconds: float = 0.0
    parallel_threshold_rows: int = 0
    chunk_rows: int = 0
    max_stream_trades: int = 0
    max_trade_message_bytes: int = 0    # a Price / ImpliedVolatility request (0: not reported)
    max_stream_message_bytes: int = 0   # one PriceStream message
    max_cost_unary_seconds: float = 0.0  # estimated core-seconds one trade may ask
    max_cost_batch_seconds: float = 0.0  # ... one batch request


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model the server prices with."""

    ref: ModelRef
    model: str
    instruments: tuple[str, ...] = ()
    measures: tuple[str, ...] = ()
    validated_against: str = ""
    engine: str = ""
    methods: tuple[str, ...] = ()  # parallel to measures
    default_engine: bool = False


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What ``server_info()`` returns: versions, build flags, kernel threads, limits, models."""

    version: str = ""
    kernel_threads: int = 0
    limits: ServerLimits = field(default_factory=ServerLimits)
    models: tuple[ModelInfo, ...] = ()
    build: Mapping[str, object] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)
    started_at: str = ""
