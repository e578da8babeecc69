"""Requests: proto -> domain, in one place. Columns are decoded with ``numpy.frombuffer``
(raw bytes) or one bulk conversion (packed), never a per-row Python loop.

Every error names the request field as the caller wrote it (``european.strike``,
``market.forward``, ``measures[2]``), and for batches also the row. Any product's trade or
columns are read by the product's table of inputs (pricegrid.server.domain.products: the
proto fields have the inputs' names in both shapes); implied volatility keeps its own
European reader.
"""

from __future__ import annotations

import collections
import dataclasses
import math

import numpy as np

from pricegrid.server.domain import daycount
from pricegrid.server.domain.catalogue import DEFAULT_SETTINGS, Catalogue, EngineSpec, Settings
from pricegrid.server.domain.errors import Code, FieldViolation, ServiceError, invalid
from pricegrid.server.domain.instruments import (
    EuropeanOption, EuropeanOptionBatch, HestonParameters, MarketBatch, MarketInputs, SnapshotMarket,
)
from pricegrid.server.domain.models import IMPLIED_VOL_REFS, UNDERLYING, Engine, Measure, Model, takes_dividend
from pricegrid.server.domain.products import CONTINUOUS, PRODUCTS, SPOT, Product, ProductBatch, Schedule
from pricegrid.v1 import common_pb2 as cpb

_MODELS = {int(m): m for m in Model}
_MEASURES = {int(m): m for m in Measure}
_DAY_COUNTS = {int(d): d for d in daycount.DayCount}
_MODEL_NAMES = ", ".join(cpb.Model.Name(int(m)) for m in Model)

# ---------------------------------------------------------------------------------- shared
def model_of(value: int) -> Model:
    model = _MODELS.get(value)
    if model is None:
        raise invalid("model", f"unknown model {value}; expected one of {_MODEL_NAMES}")
    return model


def measures_of(values, path: str = "measures") -> tuple[Measure, ...]:
    out = []
    for i, v in enumerate(values):
        m = _MEASURES.get(v)
        if m is None:
            raise invalid(f"{path}[{i}]", f"unknown measure {v}")
        if m not in out:
            out.append(m)
    return tuple(out)


def _check_underlying(model: Model, given: str | None, prefix: str) -> None:
    underlying = UNDERLYING[model]
    if given == underlying:
        return
    name = cpb.Model.Name(int(model))
    if given is None:
        raise invalid(f"{prefix}.{underlying}", f"required: {name} prices on a {underlying}")
    raise invalid(f"{prefix}.{given}", f"{name} prices on a {underlying}: set {prefix}.{underlying} instead")


def _check_snapshot(snapshot_id: str, prefix: str) -> None:
    """Implied volatility reads its market inline only (for now)."""
    if snapshot_id:
        raise ServiceError(
            Code.UNIMPLEMENTED,
            f"{prefix}.snapshot_id: implied volatility takes its market inline; snapshots price trades only",
            [FieldViolation(f"{prefix}.snapshot_id", "not served for implied volatility")],
        )


def _fields(prefix_option: str, time_path: str, underlying: str, prefix_market: str, price: str = "price"):
    return {
        "option_type": f"{prefix_option}.option_type",
        "strike": f"{prefix_option}.strike",
        "time_to_expiry": time_path,
        "underlying": f"{prefix_market}.{underlying}",
        "rate": f"{prefix_market}.rate",
        "dividend_yield": f"{prefix_market}.dividend_yield",
        "volatility": f"{prefix_market}.volatility",
        "price": price,
    }


_SINGLE_FIELDS = {
    (kind, und): _fields("european", f"european.expiry.{kind}", und, "market")
    for kind in ("year_fraction", "dates")
    for und in ("spot", "forward")
}
_BATCH_FIELDS = {
    (kind, und): _fields("european", f"european.{kind}", und, "market")
    for kind in ("time_to_expiry", "expiry_date")
    for und in ("spot", "forward")
}


# ---------------------------------------------------------------------------------- one trade
def _date(d, path: str):
    return daycount.make_date(d[0], d[1], d[2], path)


def _expiry(kind: str | None, year_fraction: float, valuation, expiry, day_count: int, path: str) -> float:
    """Year fraction of an Expiry; dates are (y, m, d) tuples or None when unset."""
    if kind == "year_fraction":
        return year_fraction
    if kind == "dates":
        dc = _DAY_COUNTS.get(day_count)
        if dc is None:
            raise invalid(f"{path}.dates.day_count", f"unknown day count {day_count}")
        if valuation is None:
            raise invalid(f"{path}.dates.valuation_date", "required")
        if expiry is None:
            raise invalid(f"{path}.dates.expiry_date", "required")
        start = _date(valuation, f"{path}.dates.valuation_date")
        end = _date(expiry, f"{path}.dates.expiry_date")
        return daycount.year_fraction(start, end, dc)
    raise invalid(path, "required: set year_fraction or dates")


def _ymd(msg, name: str):
    if not msg.HasField(name):
        return None
    d = getattr(msg, name)
    return (d.year, d.month, d.day)


def european_one(request, *, with_vol: bool = True):
    """(model, option, market, fields) from an ImpliedVolatilityRequest message."""
    opt = request.european
    expiry = opt.expiry
    kind = expiry.WhichOneof("kind")
    dates = expiry.dates
    market = request.market
    underlying = market.WhichOneof("underlying")
    return european_one_values(
        request.model,
        request.WhichOneof("instrument") == "european",
        opt.option_type,
        opt.strike,
        kind,
        expiry.year_fraction,
        _ymd(dates, "valuation_date") if kind == "dates" else None,
        _ymd(dates, "expiry_date") if kind == "dates" else None,
        dates.day_count,
        underlying,
        market.spot if underlying == "spot" else market.forward,
        market.rate,
        market.dividend_yield,
        market.volatility if with_vol else 0.0,
        market.snapshot_id,
    )


def european_one_values(
    model_value, has_instrument, option_type, strike, expiry_kind, year_fraction, valuation, expiry, day_count,
    underlying_kind, underlying, rate, dividend_yield, volatility, snapshot_id,
):
    model = _MODELS.get(model_value)
    if model is None:
        model = model_of(model_value)
    if model not in IMPLIED_VOL_REFS:  # implied volatility: the Black-Scholes, Black-76 and Bachelier models
        raise invalid("model", f"{cpb.Model.Name(int(model))} has no implied volatility")
    if not has_instrument:
        raise invalid("european", "required: the request names no instrument")
    t = _expiry(expiry_kind, year_fraction, valuation, expiry, day_count, "european.expiry")
    _check_underlying(model, underlying_kind, "market")
    if snapshot_id:
        _check_snapshot(snapshot_id, "market")
    if dividend_yield != 0.0 and not takes_dividend(model):
        raise invalid("market.dividend_yield", f"{cpb.Model.Name(int(model))} takes no dividend yield: the forward carries it")
    option = EuropeanOption(option_type, strike, t)
    inputs = MarketInputs(underlying, rate, dividend_yield, volatility)
    return model, option, inputs, _SINGLE_FIELDS[expiry_kind, underlying_kind]


# ---------------------------------------------------------------------------------- columns
def column_length(col, itemsize: int, path: str) -> int:
    raw = len(col.raw)
    values = len(col.values)
    if raw and values:
        raise invalid(path, "set either values or raw, not both")
    if raw:
        if raw % itemsize:
            raise invalid(path, f"raw holds {raw} bytes, not a multiple of {itemsize}")
        return raw // itemsize
    return values


def _aligned(arr: np.ndarray) -> np.ndarray:
    # Zero-copy columns (pricegrid.v1.wire) sit wherever the field sits in the message; the
    # kernels need naturally aligned arrays, so a misaligned one is copied once.
    return arr if arr.flags.aligned else arr.copy()


def doubles(col, path: str) -> np.ndarray:
    column_length(col, 8, path)
    raw = col.raw
    if len(raw):
        return _aligned(np.frombuffer(raw, dtype="<f8"))
    return _aligned(np.asarray(col.values, dtype=np.float64))


def int32s(col, path: str) -> np.ndarray:
    column_length(col, 4, path)
    raw = col.raw
    if len(raw):
        return _aligned(np.frombuffer(raw, dtype="<i4"))
    return np.asarray(col.values, dtype=np.int32)


_ZERO = np.zeros(1)


def _batch_rows(plan, max_rows: int) -> int:
    """Checks presence and length of each (path, column, itemsize, required) and returns the
    batch's row count. The batch length is the length most columns agree on (ties: the
    longest); every column of another length (other than 1, broadcast) is named."""
    lengths = {}
    for path, col, size, required in plan:
        if col is None:
            if required:
                raise invalid(path, "required column is missing")
            continue
        lengths[path] = column_length(col, size, path)
    counts = collections.Counter(n for n in lengths.values() if n != 1)
    rows = max(counts, key=lambda n: (counts[n], n)) if counts else (1 if lengths else 0)
    wrong = [(path, n) for path, n in lengths.items() if n not in (rows, 1)]
    if wrong:
        found = [FieldViolation(path, f"has {n} rows; expected {rows} (or 1 to broadcast)") for path, n in wrong]
        raise ServiceError(Code.INVALID_ARGUMENT, "; ".join(f"{v.field}: {v.description}" for v in found), found)
    if rows > max_rows:
        raise ServiceError(
            Code.RESOURCE_EXHAUSTED,
            f"rows: {rows} rows exceed the server's cap of {max_rows} per request; split the batch (RiskClient does)",
            [FieldViolation("rows", f"at most {max_rows} rows per request")],
        )
    return rows


def _time_kind(cols, prefix: str) -> str:
    use_dates = cols.HasField("expiry_date")
    if use_dates and cols.HasField("time_to_expiry"):
        raise invalid(f"{prefix}.time_to_expiry", "set time_to_expiry or expiry_date, not both")
    if not use_dates and not cols.HasField("time_to_expiry"):
        raise invalid(f"{prefix}.time_to_expiry", "required: set time_to_expiry or expiry_date")
    return "expiry_date" if use_dates else "time_to_expiry"


def _batch_times(cols, prefix: str, time_kind: str) -> np.ndarray:
    if time_kind == "expiry_date":
        if not cols.HasField("valuation_date"):
            raise invalid(f"{prefix}.valuation_date", "required with expiry_date")
        dc = _DAY_COUNTS.get(cols.day_count)
        if dc is None:
            raise invalid(f"{prefix}.day_count", f"unknown day count {cols.day_count}")
        valuation = _date(_ymd(cols, "valuation_date"), f"{prefix}.valuation_date")
        return daycount.year_fractions(daycount.to_days(valuation), int32s(cols.expiry_date, f"{prefix}.expiry_date"), dc)
    return doubles(cols.time_to_expiry, f"{prefix}.time_to_expiry")


def european_batch(request, max_rows: int, *, with_vol: bool = True, price_field: str | None = None):
    """(model, options, market, price, rows, fields) from a columnar request.

    Checks presence and lengths of every column (each the batch's length or 1) and the row
    cap before decoding anything; values themselves are checked per row by the kernels.
    """
    model = model_of(request.model)
    if model not in IMPLIED_VOL_REFS:
        raise invalid("model", f"{cpb.Model.Name(int(model))} has no implied volatility")
    if request.WhichOneof("instruments") != "european":
        raise invalid("european", "required: the request names no instrument columns")
    cols = request.european
    market = request.market
    _check_snapshot(market.snapshot_id, "market")

    given = [u for u in ("spot", "forward") if market.HasField(u)]
    if len(given) > 1:
        raise invalid("market.spot", "set spot or forward, not both")
    _check_underlying(model, given[0] if given else None, "market")
    underlying = UNDERLYING[model]

    time_kind = _time_kind(cols, "european")
    use_dates = time_kind == "expiry_date"

    # (path, message, itemsize, required)
    plan = [
        ("european.option_type", cols.option_type if cols.HasField("option_type") else None, 4, True),
        ("european.strike", cols.strike if cols.HasField("strike") else None, 8, True),
        (f"european.{time_kind}", getattr(cols, time_kind), 4 if use_dates else 8, True),
        (f"market.{underlying}", getattr(market, underlying), 8, True),
        ("market.rate", market.rate if market.HasField("rate") else None, 8, False),
        ("market.dividend_yield", market.dividend_yield if market.HasField("dividend_yield") else None, 8, False),
    ]
    if with_vol:
        plan.append(("market.volatility", market.volatility if market.HasField("volatility") else None, 8, True))
    if price_field is not None:
        plan.append((price_field, request.price if request.HasField("price") else None, 8, True))
    rows = _batch_rows(plan, max_rows)

    if market.HasField("dividend_yield") and not takes_dividend(model):
        q = doubles(market.dividend_yield, "market.dividend_yield")
        if np.any(q != 0.0):
            raise invalid("market.dividend_yield", f"{cpb.Model.Name(int(model))} takes no dividend yield: the forward carries it")
    t = _batch_times(cols, "european", time_kind)

    options = EuropeanOptionBatch(
        option_type=int32s(cols.option_type, "european.option_type"),
        strike=doubles(cols.strike, "european.strike"),
        time_to_expiry=t,
    )
    mkt = MarketBatch(
        underlying=doubles(getattr(market, underlying), f"market.{underlying}"),
        rate=doubles(market.rate, "market.rate") if market.HasField("rate") else _ZERO,
        dividend_yield=doubles(market.dividend_yield, "market.dividend_yield") if market.HasField("dividend_yield") else _ZERO,
        volatility=doubles(market.volatility, "market.volatility") if with_vol else None,
    )
    price = doubles(request.price, price_field) if price_field is not None else None
    fields = dict(_BATCH_FIELDS[time_kind, underlying])
    if price_field is not None:
        fields["price"] = price_field
    return model, options, mkt, price, rows, fields


# --------------------------------------------------------------------- the options library
# Every product of pricegrid.server.domain.products, one trade or a batch, read by the
# product's table of inputs (the proto fields have the inputs' names in both shapes).
_ENGINES = {int(e): e for e in Engine}
_INSTRUMENTS = ", ".join(PRODUCTS)
_HESTON = ("v0", "kappa", "theta", "sigma", "rho")


def engine_of(value: int, path: str = "engine") -> Engine:
    engine = _ENGINES.get(value)
    if engine is None:
        raise invalid(path, f"unknown engine {value}")
    return engine


def engine_spec(catalogue: Catalogue, product: str, model: Model, engine: Engine) -> EngineSpec:
    spec = catalogue.find(product, model, engine)
    if spec is not None:
        return spec
    offered = catalogue.offered(product)
    under = [s for s in offered if s.model == model]
    model_name = cpb.Model.Name(int(model))
    if not offered:
        raise invalid("instrument", f"no engine of this server prices {product} options")
    if not under:
        models = sorted({cpb.Model.Name(int(s.model)) for s in offered})
        raise invalid("model", f"{product} options are not priced under {model_name}; models: {', '.join(models)}")
    engines = ", ".join(cpb.Engine.Name(int(s.engine)) for s in under)
    raise invalid("engine", f"{cpb.Engine.Name(int(engine))} does not price {product} options under {model_name};"
                            f" engines: {engines}")


def _check_measures(spec: EngineSpec, measures, path: str = "measures") -> tuple:
    for i, m in enumerate(measures):
        if m not in spec.measures:
            names = ", ".join(cpb.Measure.Name(int(x)) for x in spec.measures)
            raise invalid(
                f"{path}[{i}]",
                f"{cpb.Measure.Name(int(m))} is not available for {spec.product} options under"
                f" {cpb.Model.Name(int(spec.model))} ({spec.ref.engine}); available: {names}",
            )
    return measures


def settings_of(msg, spec: EngineSpec, prefix: str = "settings") -> Settings:
    """EngineSettings with the server's defaults for what is unset; bad values name the field."""
    d = DEFAULT_SETTINGS
    if msg is None:
        return d
    kw = {}
    if msg.HasField("paths"):
        if not 0 < msg.paths:
            raise invalid(f"{prefix}.paths", f"must be > 0 (got {msg.paths})")
        kw["paths"] = msg.paths
    if msg.HasField("seed"):
        kw["seed"] = msg.seed
    if msg.HasField("max_step"):
        if not (math.isfinite(msg.max_step) and msg.max_step > 0):
            raise invalid(f"{prefix}.max_step", f"must be finite and > 0 years (got {msg.max_step!r})")
        kw["max_step"] = msg.max_step
    for name in ("antithetic", "control_variate", "sobol", "brownian_bridge"):
        if msg.HasField(name):
            kw[name] = bool(getattr(msg, name))
    if msg.HasField("tree_steps"):
        if not 1 <= msg.tree_steps <= 100_000:
            raise invalid(f"{prefix}.tree_steps", f"must be in [1, 100000] (got {msg.tree_steps})")
        kw["tree_steps"] = msg.tree_steps
    if msg.american_scheme:
        if msg.american_scheme not in (1, 2, 3):
            raise invalid(f"{prefix}.american_scheme", f"unknown AmericanScheme value {msg.american_scheme}")
        kw["american_scheme"] = msg.american_scheme
    return dataclasses.replace(d, **kw) if kw else d


def _product_fields(product: Product, time_path: str, underlying: str, prefix: str = "") -> dict:
    """Kernel input name -> the caller's field path."""
    p = product.name
    fields = {i.name: f"{prefix}{p}.{i.name}" for i in product.inputs}
    fields.update(
        time_to_expiry=f"{prefix}{time_path}",
        underlying=f"{prefix}market.{underlying}",
        rate=f"{prefix}market.rate",
        dividend_yield=f"{prefix}market.dividend_yield",
        volatility=f"{prefix}market.volatility",
        fixing_times=f"{prefix}{p}.fixing_times",
        **{h: f"{prefix}market.heston.{h}" for h in _HESTON},
    )
    if p == "double_barrier":
        fields["barrier"] = fields["lower_barrier"]
    if p in ("digital", "touch"):
        fields["rebate"] = fields["cash"]
    return fields


def _code_value(inp, value: int, path: str) -> int:
    if value == 0 and inp.default is not None:
        return int(inp.default)
    if value == 0:
        raise invalid(path, f"required: set a {inp.enum} value")
    if value not in inp.codes:
        raise invalid(path, f"unknown {inp.enum} value {value}")
    return value


def _by_reference(market, prefix: str) -> bool:
    """Whether ``market`` names a snapshot; then no level, rate or dividend may be inline."""
    if not (market.snapshot_id or market.underlying_id):
        return False
    if not market.snapshot_id:
        raise invalid(f"{prefix}.snapshot_id", "required with underlying_id")
    for name in ("spot", "forward", "rate", "dividend_yield"):
        if _given(market, name):
            raise invalid(f"{prefix}.{name}", "comes from the snapshot: send snapshot_id and underlying_id, or"
                                              " inline market data, not both")
    return True


def _given(market, name: str) -> bool:
    """A scalar (Market) or a column (MarketColumns) set on the message."""
    value = getattr(market, name)
    if isinstance(value, float):
        return market.HasField(name) if name in ("spot", "forward") else value != 0.0
    return market.HasField(name)


def _heston_one(market, spec: EngineSpec, prefix: str):
    if spec.model == Model.HESTON:
        if not market.HasField("heston"):
            raise invalid(f"{prefix}.heston", "required: MODEL_HESTON prices with v0, kappa, theta, sigma and rho")
        h = market.heston
        return HestonParameters(h.v0, h.kappa, h.theta, h.sigma, h.rho)
    if market.HasField("heston"):
        raise invalid(f"{prefix}.heston", f"{cpb.Model.Name(int(spec.model))} takes no Heston parameters")
    return None


def _market_one(market, spec: EngineSpec, prefix: str = ""):
    """(MarketBatch of one row, or SnapshotMarket; the underlying's kind as sent)."""
    p = f"{prefix}market"
    if _by_reference(market, p):
        inline = MarketBatch.of(MarketInputs(0.0, 0.0, 0.0, market.volatility, _heston_one(market, spec, p)))
        return SnapshotMarket(market.snapshot_id, market.underlying_id, inline), spec.underlying
    underlying = market.WhichOneof("underlying")
    _check_underlying_spec(spec, underlying, p)
    if market.dividend_yield != 0.0 and not spec.takes_dividend:
        raise invalid(f"{p}.dividend_yield", f"{cpb.Model.Name(int(spec.model))} takes no dividend yield: the forward carries it")
    heston = _heston_one(market, spec, p)
    value = market.spot if underlying == "spot" else market.forward
    return MarketBatch.of(MarketInputs(value, market.rate, market.dividend_yield, market.volatility, heston)), underlying


def _check_underlying_spec(spec: EngineSpec, given, prefix: str) -> None:
    if given == spec.underlying:
        return
    name = cpb.Model.Name(int(spec.model))
    if given is None:
        raise invalid(f"{prefix}.{spec.underlying}", f"required: {name} prices on a {spec.underlying}")
    raise invalid(f"{prefix}.{given}", f"{name} prices on a {spec.underlying}: set {prefix}.{spec.underlying} instead")


def product_one(request, catalogue: Catalogue, *, prefix: str = ""):
    """(spec, ProductBatch of one row, MarketBatch, measures, fields, settings) from a
    PriceRequest of any instrument: the arguments of PricingService.price. ``prefix`` goes before every field path (``price.`` on a
    stream)."""
    model = model_of(request.model)
    which = request.WhichOneof("instrument")
    if which is None:
        raise invalid(f"{prefix}instrument", f"required: set one of {_INSTRUMENTS}")
    product = PRODUCTS[which]
    spec = engine_spec(catalogue, which, model, engine_of(request.engine, f"{prefix}engine"))
    msg = getattr(request, which)
    market, underlying = _market_one(request.market, spec, prefix)
    columns = {}
    for inp in product.inputs:
        path = f"{prefix}{which}.{inp.name}"
        if inp.codes:
            columns[inp.name] = np.array([_code_value(inp, getattr(msg, inp.name), path)], dtype=np.int32)
            continue
        value = getattr(msg, inp.name)
        if inp.default == SPOT and not msg.HasField(inp.name):
            if isinstance(market, SnapshotMarket):
                raise invalid(path, "required when the spot comes from a snapshot")
            value = market.underlying[0]
        elif inp.name == "cash" and not msg.HasField("cash"):
            value = inp.default
        columns[inp.name] = np.array([value], dtype=np.float64 if inp.dtype == "f8" else np.int32)
    expiry = msg.expiry
    kind = expiry.WhichOneof("kind")
    dates = expiry.dates
    t = _expiry(
        kind, expiry.year_fraction, _ymd(dates, "valuation_date") if kind == "dates" else None,
        _ymd(dates, "expiry_date") if kind == "dates" else None, dates.day_count, f"{prefix}{which}.expiry",
    )
    columns["time_to_expiry"] = np.array([t])
    schedule = None
    if product.schedule:
        schedule = _schedule_one(msg, kind, dates, f"{prefix}{which}")
    measures = _check_measures(spec, measures_of(request.measures, f"{prefix}measures"), f"{prefix}measures")
    settings = settings_of(request.settings if request.HasField("settings") else None, spec, f"{prefix}settings")
    time_path = f"{which}.expiry.{kind}"
    fields = _product_fields(product, time_path, underlying, prefix)
    if product.schedule and len(msg.fixing_dates):
        fields["fixing_times"] = f"{prefix}{which}.fixing_dates"
    batch = ProductBatch(product, columns, schedule)
    return spec, batch, market, measures, fields, settings


def _schedule_one(msg, kind, dates, path: str) -> Schedule:
    times, fixing_dates = msg.fixing_times, msg.fixing_dates
    if len(times) and len(fixing_dates):
        raise invalid(f"{path}.fixing_dates", "set fixing_times or fixing_dates, not both")
    if len(fixing_dates):
        if kind != "dates":
            raise invalid(f"{path}.fixing_dates", "fixing dates need the expiry as dates (valuation date and day count)")
        dc = _DAY_COUNTS.get(dates.day_count)
        if dc is None:
            raise invalid(f"{path}.expiry.dates.day_count", f"unknown day count {dates.day_count}")
        start = _date(_ymd(dates, "valuation_date"), f"{path}.expiry.dates.valuation_date")
        times = [
            daycount.year_fraction(start, _date((d.year, d.month, d.day), f"{path}.fixing_dates[{i}]"), dc)
            for i, d in enumerate(fixing_dates)
        ]
    arr = np.asarray(times, dtype=np.float64)
    return Schedule(arr, np.array([len(arr)], dtype=np.int32))


def _market_batch(market, spec: EngineSpec, plan: list, rows_hint=None):
    """Adds the market columns to ``plan``; returns a function that decodes them (a
    MarketBatch, or a SnapshotMarket when the columns name a snapshot)."""
    by_reference = _by_reference(market, "market")
    heston = spec.model == Model.HESTON
    und = spec.underlying
    if not by_reference:
        given = [u for u in ("spot", "forward") if market.HasField(u)]
        if len(given) > 1:
            raise invalid("market.spot", "set spot or forward, not both")
        _check_underlying_spec(spec, given[0] if given else None, "market")
        plan.append((f"market.{und}", getattr(market, und), 8, True))
        for name in ("rate", "dividend_yield"):
            plan.append((f"market.{name}", getattr(market, name) if market.HasField(name) else None, 8, False))
    if heston:
        if not market.HasField("heston"):
            raise invalid("market.heston", "required: MODEL_HESTON prices with v0, kappa, theta, sigma and rho")
        for h in _HESTON:
            col = getattr(market.heston, h)
            plan.append((f"market.heston.{h}", col if market.heston.HasField(h) else None, 8, True))
    else:
        if market.HasField("heston"):
            raise invalid("market.heston", f"{cpb.Model.Name(int(spec.model))} takes no Heston parameters")
        # with a snapshot, no volatility column means: the underlying's surface
        plan.append(("market.volatility", market.volatility if market.HasField("volatility") else None, 8,
                     not by_reference))

    def decode():
        hs = [doubles(getattr(market.heston, h), f"market.heston.{h}") for h in _HESTON] if heston else [None] * 5
        vol = None
        if not heston and market.HasField("volatility"):
            vol = doubles(market.volatility, "market.volatility")
        if by_reference:
            return SnapshotMarket(market.snapshot_id, market.underlying_id, MarketBatch(_ZERO, _ZERO, _ZERO, vol, *hs))
        q = _ZERO
        if market.HasField("dividend_yield"):
            q = doubles(market.dividend_yield, "market.dividend_yield")
            if not spec.takes_dividend and np.any(q != 0.0):
                raise invalid("market.dividend_yield", f"{cpb.Model.Name(int(spec.model))} takes no dividend yield: the forward carries it")
        return MarketBatch(
            doubles(getattr(market, und), f"market.{und}"),
            doubles(market.rate, "market.rate") if market.HasField("rate") else _ZERO,
            q, vol, *hs,
        )

    return decode


def product_batch(request, catalogue: Catalogue, max_rows: int):
    """(spec, ProductBatch, MarketBatch, rows, fields, measures, settings) from a
    PriceBatchRequest of any instrument's columns."""
    model = model_of(request.model)
    which = request.WhichOneof("instruments")
    if which is None:
        raise invalid("instruments", f"required: set the columns of one of {_INSTRUMENTS}")
    product = PRODUCTS[which]
    spec = engine_spec(catalogue, which, model, engine_of(request.engine))
    cols = getattr(request, which)
    time_kind = _time_kind(cols, which)
    plan = [(f"{which}.{time_kind}", getattr(cols, time_kind), 4 if time_kind == "expiry_date" else 8, True)]
    for inp in product.inputs:
        col = getattr(cols, inp.name) if cols.HasField(inp.name) else None
        plan.append((f"{which}.{inp.name}", col, 4 if inp.dtype == "i4" else 8, inp.default is None))
    if product.schedule and cols.HasField("fixing_counts"):
        plan.append((f"{which}.fixing_counts", cols.fixing_counts, 4, False))
    decode_market = _market_batch(request.market, spec, plan)
    rows = _batch_rows(plan, max_rows)
    market = decode_market()
    columns = {"time_to_expiry": _batch_times(cols, which, time_kind)}
    for inp in product.inputs:
        path = f"{which}.{inp.name}"
        if cols.HasField(inp.name):
            columns[inp.name] = int32s(getattr(cols, inp.name), path) if inp.dtype == "i4" else doubles(getattr(cols, inp.name), path)
        elif inp.default == SPOT:
            if isinstance(market, SnapshotMarket):
                raise invalid(path, "required when the spot comes from a snapshot")
            columns[inp.name] = market.underlying
        else:
            columns[inp.name] = np.array([inp.default], dtype=np.int32 if inp.dtype == "i4" else np.float64)
    schedule = _schedule_batch(cols, which, rows) if product.schedule else None
    measures = _check_measures(spec, measures_of(request.measures) or (Measure.PRICE,))
    settings = settings_of(request.settings if request.HasField("settings") else None, spec)
    fields = _product_fields(product, f"{which}.{time_kind}", spec.underlying)
    return spec, ProductBatch(product, columns, schedule), market, rows, fields, measures, settings


def _schedule_batch(cols, which: str, rows: int) -> Schedule:
    has_times, has_counts = cols.HasField("fixing_times"), cols.HasField("fixing_counts")
    if not has_times and not has_counts:
        return CONTINUOUS
    if not has_counts:
        raise invalid(f"{which}.fixing_counts", "required with fixing_times: how many of them belong to each row")
    counts = int32s(cols.fixing_counts, f"{which}.fixing_counts")
    times = doubles(cols.fixing_times, f"{which}.fixing_times") if has_times else np.empty(0)
    negative = np.flatnonzero(counts < 0)
    if len(negative):
        row = int(negative[0])
        raise invalid(f"{which}.fixing_counts", f"row {row}: must be >= 0 (got {int(counts[row])})")
    total = int(counts.sum(dtype=np.int64))  # length 1: one schedule every row shares
    if total != len(times):
        raise invalid(
            f"{which}.fixing_times",
            f"holds {len(times)} times but fixing_counts asks for {total}"
            + (" (one schedule shared by every row)" if len(counts) == 1 else ""),
        )
    return Schedule(times, counts)

