"""Conversions between the client's value objects and the pricegrid.v1 messages (per trade).

All of the client's knowledge of the per-trade message shapes lives here; the clients only
call these functions.
"""

from __future__ import annotations

import datetime as _dt
from typing import Iterable

from pricegrid.v1 import common_pb2, pricing_pb2

from ._errors import PricingError
from ._models import (
    DAY_COUNTS,
    MEASURE_NAMES,
    OPTION_TYPES,
    ENGINES,
    INSTRUMENTS,
    EffectiveInputs,
    EngineSettings,
    EuropeanOption,
    ExpiryDates,
    Greeks,
    ImpliedVolResult,
    Market,
    MarketUpdate,
    MarketUsed,
    ModelInfo,
    ModelRef,
    PriceResult,
    ServerInfo,
    ServerLimits,
    engine_code,
    enum_code,
    enum_names,
    measure_codes,
    model_code,
)

_MODEL_NAMES = {v: k for k, v in {"bsm": 1, "black76": 2, "bachelier": 3, "heston": 4}.items()}
_ENGINE_NAMES = {v: k for k, v in ENGINES.items()}
_METHOD_NAMES = {v: k for k, v in enum_names("GreekMethod").items()}


def date_message(value: _dt.date) -> common_pb2.Date:
    return common_pb2.Date(year=value.year, month=value.month, day=value.day)


def option_message(option: EuropeanOption) -> pricing_pb2.EuropeanOption:
    if not isinstance(option, EuropeanOption):
        raise TypeError(f"option must be a EuropeanOption, not {type(option).__name__}")
    msg = pricing_pb2.EuropeanOption(option_type=OPTION_TYPES[option.option_type], strike=option.strike)
    if isinstance(option.expiry, ExpiryDates):
        e = option.expiry
        msg.expiry.dates.valuation_date.CopyFrom(date_message(e.valuation_date))
        msg.expiry.dates.expiry_date.CopyFrom(date_message(e.expiry_date))
        msg.expiry.dates.day_count = DAY_COUNTS[e.day_count]
    else:
        msg.expiry.year_fraction = option.expiry
    return msg


def _expiry_into(msg, expiry) -> None:
    if isinstance(expiry, ExpiryDates):
        msg.expiry.dates.valuation_date.CopyFrom(date_message(expiry.valuation_date))
        msg.expiry.dates.expiry_date.CopyFrom(date_message(expiry.expiry_date))
        msg.expiry.dates.day_count = DAY_COUNTS[expiry.day_count]
    else:
        msg.expiry.year_fraction = expiry


def instrument_message(option) -> tuple[str, object]:
    """(PriceRequest oneof member, message) of any instrument dataclass. The dataclasses'
    fields have the messages' field names; enum fields hold the enum's value names."""
    which = INSTRUMENTS.get(type(option))
    if which is None:
        names = ", ".join(t.__name__ for t in INSTRUMENTS)
        raise TypeError(f"option must be one of {names}, not {type(option).__name__}")
    if which == "european":
        return which, option_message(option)
    msg = getattr(pricing_pb2, type(option).__name__)()
    for f in option.__dataclass_fields__:
        value = getattr(option, f)
        if value is None:
            continue
        if f == "expiry":
            _expiry_into(msg, value)
        elif f == "option_type":
            msg.option_type = OPTION_TYPES[value]
        elif f == "fixing_dates":
            msg.fixing_dates.extend(date_message(d) for d in value)
        elif f == "fixing_times":
            msg.fixing_times.extend(value)
        elif msg.DESCRIPTOR.fields_by_name[f].enum_type is not None:
            setattr(msg, f, enum_code(msg.DESCRIPTOR.fields_by_name[f].enum_type.name, value, f))
        else:
            setattr(msg, f, value)
    return which, msg


def settings_message(settings: EngineSettings | None):
    if settings is None:
        return None
    if not isinstance(settings, EngineSettings):
        raise TypeError(f"settings must be EngineSettings, not {type(settings).__name__}")
    msg = pricing_pb2.EngineSettings()
    for f in settings.__dataclass_fields__:
        value = getattr(settings, f)
        if value is None:
            continue
        if f == "american_scheme":
            msg.american_scheme = enum_code("AmericanScheme", value, f)
        else:
            setattr(msg, f, value)
    return msg


def market_message(market: Market, *, need_volatility: bool) -> pricing_pb2.Market:
    if not isinstance(market, Market):
        raise TypeError(f"market must be a Market, not {type(market).__name__}")
    by_reference = market.snapshot_id is not None
    if need_volatility and market.volatility is None and market.heston is None and not by_reference:
        raise ValueError("market.volatility is required to price (only implied_vol may leave it out)")
    msg = pricing_pb2.Market(rate=market.rate, dividend_yield=market.dividend_yield)
    if market.heston is not None:
        h = market.heston
        msg.heston.CopyFrom(pricing_pb2.HestonParameters(v0=h.v0, kappa=h.kappa, theta=h.theta, sigma=h.sigma, rho=h.rho))
    if by_reference:
        msg.snapshot_id, msg.underlying_id = market.snapshot_id, market.underlying_id
    elif market.spot is not None:
        msg.spot = market.spot
    else:
        msg.forward = market.forward
    if market.volatility is not None:
        msg.volatility = market.volatility
    return msg


def price_request(
    option,
    market: Market,
    *,
    model: str | int = "bsm",
    measures: Iterable[str] | str = (),
    engine: str | int | None = None,
    settings: EngineSettings | None = None,
) -> pricing_pb2.PriceRequest:
    which, instrument = instrument_message(option)
    request = pricing_pb2.PriceRequest(
        model=model_code(model),
        market=market_message(market, need_volatility=True),
        measures=measure_codes(measures),
        engine=engine_code(engine),
        settings=settings_message(settings),
    )
    getattr(request, which).CopyFrom(instrument)
    return request


def implied_vol_request(
    option: EuropeanOption, market: Market, price: float, *, model: str | int = "bsm"
) -> pricing_pb2.ImpliedVolatilityRequest:
    return pricing_pb2.ImpliedVolatilityRequest(
        model=model_code(model),
        european=option_message(option),
        market=market_message(market, need_volatility=False),
        price=float(price),
    )


def market_update_message(update: MarketUpdate) -> pricing_pb2.MarketUpdate:
    msg = pricing_pb2.MarketUpdate(trade_ids=list(update.trade_ids))
    for name in ("spot", "forward", "rate", "dividend_yield", "volatility"):
        value = getattr(update, name)
        if value is not None:
            setattr(msg, name, value)
    if update.heston is not None:
        h = update.heston
        msg.heston.CopyFrom(pricing_pb2.HestonParameters(v0=h.v0, kappa=h.kappa, theta=h.theta, sigma=h.sigma, rho=h.rho))
    return msg


# --------------------------------------------------------------------------- responses
def model_ref(msg: common_pb2.ModelRef) -> ModelRef:
    return ModelRef(model=msg.model, engine=msg.engine, version=msg.version)


def effective_inputs(msg: pricing_pb2.EffectiveInputs) -> EffectiveInputs:
    return EffectiveInputs(
        forward=msg.forward,
        discount_factor=msg.discount_factor,
        time_to_expiry=msg.time_to_expiry,
        volatility=msg.volatility,
    )


_GREEKS = tuple(Greeks.__dataclass_fields__)


def greeks(msg: pricing_pb2.Greeks) -> Greeks:
    return Greeks(**{name: getattr(msg, name) for name in _GREEKS if msg.HasField(name)})


def price_result(msg: pricing_pb2.PriceResponse) -> PriceResult:
    methods = {MEASURE_NAMES.get(d.measure, str(d.measure)): _METHOD_NAMES.get(d.method, str(d.method)) for d in msg.details}
    errors = {MEASURE_NAMES.get(d.measure, str(d.measure)): d.standard_error for d in msg.details if d.standard_error}
    return PriceResult(
        price=msg.price,
        greeks=greeks(msg.greeks),
        inputs=effective_inputs(msg.inputs) if msg.HasField("inputs") else None,
        priced_by=model_ref(msg.priced_by),
        standard_error=msg.standard_error,
        methods=methods,
        standard_errors=errors,
        market=_market_used(msg.market) if msg.HasField("market") else None,
        values={MEASURE_NAMES.get(d.measure, str(d.measure)): d.value for d in msg.details},
    )


def _market_used(m) -> MarketUsed:
    return MarketUsed(m.snapshot_id, m.underlying_id, m.discount_curve, m.dividend_curve, m.dividends, m.vol_surface)


def implied_vol_result(msg: pricing_pb2.ImpliedVolatilityResponse) -> ImpliedVolResult:
    return ImpliedVolResult(
        volatility=msg.volatility,
        inputs=effective_inputs(msg.inputs) if msg.HasField("inputs") else None,
        priced_by=model_ref(msg.priced_by),
    )


def server_info(msg: pricing_pb2.ServerInfoResponse) -> ServerInfo:
    limits = msg.limits
    build = msg.build
    return ServerInfo(
        version=msg.version,
        kernel_threads=msg.kernel_threads,
        limits=ServerLimits(
            max_message_bytes=limits.max_message_bytes,
            max_rows=limits.max_rows,
            default_deadline_seconds=limits.default_deadline_seconds,
            parallel_threshold_rows=limits.parallel_threshold_rows,
            chunk_rows=limits.chunk_rows,
            max_stream_trades=limits.max_stream_trades,
            max_trade_message_bytes=limits.max_trade_message_bytes,
            max_stream_message_bytes=limits.max_stream_message_bytes,
            max_cost_unary_seconds=limits.max_cost_unary_seconds,
            max_cost_batch_seconds=limits.max_cost_batch_seconds,
        ),
        models=tuple(
            ModelInfo(
                ref=model_ref(m.ref),
                model=_MODEL_NAMES.get(m.model, str(m.model)),
                instruments=tuple(m.instruments),
                measures=tuple(MEASURE_NAMES.get(x, str(x)) for x in m.measures),
                validated_against=m.validated_against,
                engine=_ENGINE_NAMES.get(m.engine, ""),
                methods=tuple(_METHOD_NAMES.get(x, str(x)) for x in m.methods),
                default_engine=m.default_engine,
            )
            for m in msg.models
        ),
        build={
            "compiler": build.compiler,
            "compile_args": list(build.compile_args),
            "link_args": list(build.link_args),
            "cpu_target": build.cpu_target,
            "debug": build.debug,
            "openmp": build.openmp,
            "cython_version": build.cython_version,
            "numpy_version": build.numpy_version,
            "built_at": build.built_at,
        },
        versions=dict(msg.versions),
        started_at=msg.started_at,
    )


class StreamReply:
    """One reply on a ticking stream: a price for ``trade_id`` (``result``) or the
    ``error`` of the message ``correlation_id`` named.

        >>> for reply in session:
        ...     if reply.ok:
        ...         book[reply.trade_id] = reply.result.price
        ...     else:
        ...         log.warning("%s failed: %s", reply.correlation_id, reply.error)

    ``reply.raise_for_error()`` raises the :class:`PricingError` of a failed message.
    """

    __slots__ = ("correlation_id", "trade_id", "result", "error")

    def __init__(self, correlation_id: str, trade_id: str, result: PriceResult | None, error: PricingError | None):
        self.correlation_id = correlation_id
        self.trade_id = trade_id
        self.result = result
        self.error = error

    @property
    def ok(self) -> bool:
        return self.error is None

    def raise_for_error(self) -> PriceResult:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def __repr__(self) -> str:
        body = f"result={self.result!r}" if self.ok else f"error={self.error!r}"
        return f"StreamReply(correlation_id={self.correlation_id!r}, trade_id={self.trade_id!r}, {body})"

    def __eq__(self, other) -> bool:
        if not isinstance(other, StreamReply):
            return NotImplemented
        return (self.correlation_id, self.trade_id, self.result, repr(self.error)) == (
            other.correlation_id,
            other.trade_id,
            other.result,
            repr(other.error),
        )


def stream_reply(msg: pricing_pb2.PriceStreamResponse) -> StreamReply:
    if msg.HasField("error"):
        return StreamReply(msg.correlation_id, msg.trade_id, None, PricingError.from_error_message(msg.error))
    return StreamReply(msg.correlation_id, msg.trade_id, price_result(msg.result), None)
