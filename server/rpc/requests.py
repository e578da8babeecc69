"""Requests: proto -> domain, in one place. Columns are decoded with ``numpy.frombuffer``
(raw bytes) or one bulk conversion (packed), never a per-row Python loop.

Every error names the request field as the caller wrote it (``european.strike``,
``market.forward``, ``measures[2]``), and for batches also the row. Any product's trade or
columns are read by the product's table of inputs (pricegrid.server.domain.products: the
proto fields have the inputs' names in both shapes); implied volatility keeps its own
European reader.

A reader reports every violation of the request's shape at once (a
:class:`~pricegrid.server.domain.errors.Violations` collects them: missing, unknown,
conflicting or malformed fields, enum values the contract does not know anywhere in the
message, market fields the model takes none of); a check that needs a field which is itself
invalid is skipped (the engine table needs a known model). The values' domains (strike > 0,
a barrier on its side of spot, Heston's bounds) are the kernels', per row: a trade whose
shape is valid reports all of its bad values together, a batch each bad row's.
"""

from __future__ import annotations

import collections
import dataclasses
import math

import numpy as np

from pricegrid.server.domain import daycount
from pricegrid.server.domain.catalogue import DEFAULT_SETTINGS, Catalogue, EngineSpec, Settings
from pricegrid.server.domain.errors import Code, FieldViolation, ServiceError, Violations, invalid
from pricegrid.server.domain.instruments import (
    EuropeanOption, EuropeanOptionBatch, HestonParameters, MarketBatch, MarketInputs, SnapshotMarket,
)
from pricegrid.server.domain.models import IMPLIED_VOL_REFS, UNDERLYING, Engine, Measure, Model, takes_dividend
from pricegrid.server.domain.products import CONTINUOUS, PRODUCTS, SPOT, Product, ProductBatch, Schedule
from google.protobuf import descriptor as _descriptor

from pricegrid.v1 import common_pb2 as cpb

_MODELS = {int(m): m for m in Model}
_MEASURES = {int(m): m for m in Measure}
_DAY_COUNTS = {int(d): d for d in daycount.DayCount}
_MODEL_NAMES = ", ".join(cpb.Model.Name(int(m)) for m in Model)

# ---------------------------------------------------------------------------------- shared
def model_of(value: int, path: str = "model") -> Model:
    model = _MODELS.get(value)
    if model is None:
        raise invalid(path, f"unknown model {value}; expected one of {_MODEL_NAMES}")
    return model


def measures_of(values, path: str = "measures") -> tuple[Measure, ...]:
    out = []
    bad = Violations()
    for i, v in enumerate(values):
        m = _MEASURES.get(v)
        if m is None:
            bad.add(f"{path}[{i}]", f"unknown measure {v}")
        elif m not in out:
            out.append(m)
    bad.raise_if_any()
    return tuple(out)


# -------------------------------------------------------------- enums, from the descriptors
_T = _descriptor.FieldDescriptor
_ENUM_PLANS: dict = {}


def _enum_plan(desc):
    """(enum fields, message fields that hold enums somewhere) of a message type."""
    plan = _ENUM_PLANS.get(desc.full_name)
    if plan is None:
        _ENUM_PLANS[desc.full_name] = ((), ())  # a recursive type sees itself as enum-free
        enums = tuple(
            (f.name, frozenset(v.number for v in f.enum_type.values), f.enum_type.name, f.is_repeated)
            for f in desc.fields if f.type == _T.TYPE_ENUM
        )
        subs = tuple(
            (f.name, f.is_repeated) for f in desc.fields
            if f.type == _T.TYPE_MESSAGE and any(_enum_plan(f.message_type))
        )
        plan = _ENUM_PLANS[desc.full_name] = (enums, subs)
    return plan


def unknown_enums(message, prefix: str = "", out: Violations | None = None) -> Violations:
    """Every enum value of ``message`` (a generated message or a pricegrid.v1.wire View),
    at any depth, that its enum does not define, named by its path; proto3 keeps such values
    (open enums) and the contract refuses them everywhere. Unset fields (0) are every enum's."""
    out = Violations() if out is None else out
    enums, subs = _enum_plan(message.DESCRIPTOR)
    for name, values, enum_name, repeated in enums:
        value = getattr(message, name)
        if repeated:
            for i, x in enumerate(value):
                if x not in values:
                    out.add(f"{prefix}{name}[{i}]", f"unknown {enum_name} value {x}")
        elif value not in values:
            out.add(f"{prefix}{name}", f"unknown {enum_name} value {value}")
    for name, repeated in subs:
        if repeated:
            for i, sub in enumerate(getattr(message, name)):
                unknown_enums(sub, f"{prefix}{name}[{i}].", out)
        elif message.HasField(name):
            unknown_enums(getattr(message, name), f"{prefix}{name}.", out)
    return out


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
    """Year fraction of an Expiry; dates are (y, m, d) tuples or None when unset. Raises
    with every violation of the dates."""
    if kind == "year_fraction":
        return year_fraction
    if kind == "dates":
        bad = Violations()
        dc = _DAY_COUNTS.get(day_count)
        if dc is None:
            bad.add(f"{path}.dates.day_count", f"unknown day count {day_count}")
        start = end = None
        if valuation is None:
            bad.add(f"{path}.dates.valuation_date", "required")
        else:
            with bad.check():
                start = _date(valuation, f"{path}.dates.valuation_date")
        if expiry is None:
            bad.add(f"{path}.dates.expiry_date", "required")
        else:
            with bad.check():
                end = _date(expiry, f"{path}.dates.expiry_date")
        bad.raise_if_any()
        return daycount.year_fraction(start, end, dc)
    raise invalid(path, "required: set year_fraction or dates")


def _on_axis(market: SnapshotMarket, valuation, day_count: int, path: str) -> SnapshotMarket:
    """``market`` with the origin of its rows' expiry dates (checked against the snapshot's
    axis when the snapshot is read: domain.instruments.check_expiry_dates)."""
    return dataclasses.replace(market, expiry_dates=(_date(valuation, f"{path}.valuation_date"),
                                                     _DAY_COUNTS[day_count].name, path))


def _ymd(msg, name: str):
    if not msg.HasField(name):
        return None
    d = getattr(msg, name)
    return (d.year, d.month, d.day)


def _ignored_volatility(value: float, path: str) -> None:
    """Implied volatility does not read the market's volatility (it is what it solves for):
    a number there is ignored, but never a non-finite or negative one."""
    if not (math.isfinite(value) and value >= 0.0):
        raise invalid(path, f"not read by implied volatility, but must be finite and >= 0 when set (got {value!r})")


def european_one(request, *, with_vol: bool = True):
    """(model, option, market, fields) from an ImpliedVolatilityRequest message; raises with
    every violation of its shape."""
    bad = Violations()
    model = None
    with bad.check():
        model = model_of(request.model)
        if model not in IMPLIED_VOL_REFS:  # implied volatility: the Black-Scholes, Black-76 and Bachelier models
            raise invalid("model", f"{cpb.Model.Name(int(model))} has no implied volatility")
    opt = request.european
    expiry = opt.expiry
    kind = expiry.WhichOneof("kind")
    dates = expiry.dates
    t = None
    if request.WhichOneof("instrument") != "european":
        bad.add("european", "required: the request names no instrument")
    else:
        with bad.check():
            t = _expiry(kind, expiry.year_fraction, _ymd(dates, "valuation_date") if kind == "dates" else None,
                        _ymd(dates, "expiry_date") if kind == "dates" else None, dates.day_count, "european.expiry")
    market = request.market
    underlying = market.WhichOneof("underlying")
    if model in IMPLIED_VOL_REFS:
        with bad.check():
            _check_underlying(model, underlying, "market")
        if market.dividend_yield != 0.0 and not takes_dividend(model):
            bad.add("market.dividend_yield", f"{cpb.Model.Name(int(model))} takes no dividend yield: the forward carries it")
    if market.snapshot_id:
        with bad.check():
            _check_snapshot(market.snapshot_id, "market")
    if market.HasField("heston"):
        bad.add("market.heston", "implied volatility takes no Heston parameters")
    volatility = market.volatility
    if not with_vol:
        with bad.check():
            _ignored_volatility(volatility, "market.volatility")
        volatility = 0.0
    unknown_enums(request, "", bad)
    bad.raise_if_any()
    option = EuropeanOption(opt.option_type, opt.strike, t)
    value = market.spot if underlying == "spot" else market.forward
    inputs = MarketInputs(value, market.rate, market.dividend_yield, volatility)
    return model, option, inputs, _SINGLE_FIELDS[kind, underlying]


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


def _batch_rows(plan, max_rows: int, bad: Violations | None = None) -> int:
    """Checks presence and length of each (path, column, itemsize, required) and returns the
    batch's row count. The batch length is the length most columns agree on (ties: the
    longest); every column of another length (other than 1, broadcast) is named. Every
    violation goes to ``bad`` (raised here when it is not given)."""
    own = bad is None
    bad = Violations() if own else bad
    lengths = {}
    for path, col, size, required in plan:
        if col is None:
            if required:
                bad.add(path, "required column is missing")
            continue
        with bad.check():
            lengths[path] = column_length(col, size, path)
    counts = collections.Counter(n for n in lengths.values() if n != 1)
    rows = max(counts, key=lambda n: (counts[n], n)) if counts else (1 if lengths else 0)
    for path, n in lengths.items():
        if n not in (rows, 1):
            bad.add(path, f"has {n} rows; expected {rows} (or 1 to broadcast)")
    if rows > max_rows:
        bad.add("rows", f"{rows} rows exceed the server's cap of {max_rows} per request; split the batch"
                        " (RiskClient does)", Code.RESOURCE_EXHAUSTED)
    if own:
        bad.raise_if_any()
    return rows


def _time_kind(cols, prefix: str) -> str:
    use_dates = cols.HasField("expiry_date")
    if use_dates and cols.HasField("time_to_expiry"):
        raise invalid(f"{prefix}.time_to_expiry", "set time_to_expiry or expiry_date, not both")
    if not use_dates and not cols.HasField("time_to_expiry"):
        raise invalid(f"{prefix}.time_to_expiry", "required: set time_to_expiry or expiry_date")
    return "expiry_date" if use_dates else "time_to_expiry"


def _check_batch_dates(cols, prefix: str, time_kind: str, bad: Violations):
    """The valuation date and day count of an expiry_date column: the valuation date, or None."""
    if time_kind != "expiry_date":
        return None
    if _DAY_COUNTS.get(cols.day_count) is None:
        bad.add(f"{prefix}.day_count", f"unknown day count {cols.day_count}")
    if not cols.HasField("valuation_date"):
        bad.add(f"{prefix}.valuation_date", "required with expiry_date")
        return None
    with bad.check():
        return _date(_ymd(cols, "valuation_date"), f"{prefix}.valuation_date")
    return None


def _batch_times(cols, prefix: str, time_kind: str) -> np.ndarray:
    if time_kind == "expiry_date":  # (the dates were checked by _check_batch_dates)
        valuation = _date(_ymd(cols, "valuation_date"), f"{prefix}.valuation_date")
        dc = _DAY_COUNTS[cols.day_count]
        return daycount.year_fractions(daycount.to_days(valuation), int32s(cols.expiry_date, f"{prefix}.expiry_date"), dc)
    return doubles(cols.time_to_expiry, f"{prefix}.time_to_expiry")


def _threads(value: int, bad: Violations, path: str = "threads") -> None:
    if value < 0:
        bad.add(path, f"must be >= 0 (0: the server's default; got {value})")


def european_batch(request, max_rows: int, *, with_vol: bool = True, price_field: str | None = None):
    """(model, options, market, price, rows, fields) from a columnar request.

    Checks presence and lengths of every column (each the batch's length or 1) and the row
    cap before decoding anything, and reports every violation of the shape together;
    values themselves are checked per row by the kernels.
    """
    bad = Violations()
    model = None
    with bad.check():
        model = model_of(request.model)
        if model not in IMPLIED_VOL_REFS:
            raise invalid("model", f"{cpb.Model.Name(int(model))} has no implied volatility")
    market = request.market
    with bad.check():
        _check_snapshot(market.snapshot_id, "market")
    if market.HasField("heston"):
        bad.add("market.heston", "implied volatility takes no Heston parameters")
    _threads(request.threads, bad)
    given = [u for u in ("spot", "forward") if market.HasField(u)]
    if len(given) > 1:
        bad.add("market.spot", "set spot or forward, not both")
    elif model in IMPLIED_VOL_REFS:
        with bad.check():
            _check_underlying(model, given[0] if given else None, "market")
    if request.WhichOneof("instruments") != "european":
        bad.add("european", "required: the request names no instrument columns")
        unknown_enums(request, "", bad)
        bad.raise_if_any()
    cols = request.european
    time_kind = None
    with bad.check():
        time_kind = _time_kind(cols, "european")
    _check_batch_dates(cols, "european", time_kind, bad)
    underlying = UNDERLYING[model] if model in IMPLIED_VOL_REFS else (given[0] if given else "spot")
    use_dates = time_kind == "expiry_date"

    # (path, message, itemsize, required)
    plan = [
        ("european.option_type", cols.option_type if cols.HasField("option_type") else None, 4, True),
        ("european.strike", cols.strike if cols.HasField("strike") else None, 8, True),
        (f"market.{underlying}", getattr(market, underlying) if market.HasField(underlying) else None, 8, True),
        ("market.rate", market.rate if market.HasField("rate") else None, 8, False),
        ("market.dividend_yield", market.dividend_yield if market.HasField("dividend_yield") else None, 8, False),
    ]
    if time_kind is not None:
        plan.append((f"european.{time_kind}", getattr(cols, time_kind), 4 if use_dates else 8, True))
    if with_vol:
        plan.append(("market.volatility", market.volatility if market.HasField("volatility") else None, 8, True))
    elif market.HasField("volatility"):
        plan.append(("market.volatility", market.volatility, 8, False))
    if price_field is not None:
        plan.append((price_field, request.price if request.HasField("price") else None, 8, True))
    rows = _batch_rows(plan, max_rows, bad)
    unknown_enums(request, "", bad)
    bad.raise_if_any()

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
        # (implied vol: a column sent is not read, but each row's value is checked: a bad one fails its row)
        volatility=doubles(market.volatility, "market.volatility") if market.HasField("volatility") else None,
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


def engine_spec(catalogue: Catalogue, product: str, model: Model, engine: Engine, prefix: str = "") -> EngineSpec:
    spec = catalogue.find(product, model, engine)
    if spec is not None:
        return spec
    offered = catalogue.offered(product)
    under = [s for s in offered if s.model == model]
    model_name = cpb.Model.Name(int(model))
    if not offered:
        raise invalid(f"{prefix}instrument", f"no engine of this server prices {product} options")
    if not under:
        models = sorted({cpb.Model.Name(int(s.model)) for s in offered})
        raise invalid(f"{prefix}model", f"{product} options are not priced under {model_name}; models: {', '.join(models)}")
    engines = ", ".join(cpb.Engine.Name(int(s.engine)) for s in under)
    raise invalid(f"{prefix}engine", f"{cpb.Engine.Name(int(engine))} does not price {product} options under {model_name};"
                                     f" engines: {engines}")


def _check_measures(spec: EngineSpec, measures, path: str = "measures", values=None) -> tuple:
    """Every measure the engine does not compute is named (``values``: the request's own
    list, so that the index named is the one sent)."""
    bad = Violations()
    names = ", ".join(cpb.Measure.Name(int(x)) for x in spec.measures)
    sent = list(values) if values is not None else [int(m) for m in measures]
    for m in measures:
        if m not in spec.measures:
            i = sent.index(int(m)) if int(m) in sent else measures.index(m)
            bad.add(
                f"{path}[{i}]",
                f"{cpb.Measure.Name(int(m))} is not available for {spec.product} options under"
                f" {cpb.Model.Name(int(spec.model))} ({spec.ref.engine}); available: {names}",
            )
    bad.raise_if_any()
    return measures


def settings_of(msg, spec: EngineSpec | None, prefix: str = "settings") -> Settings:
    """EngineSettings with the server's defaults for what is unset; every bad value is named,
    and so is every setting the engine does not read (``spec.settings``; None: an engine not
    known yet, whose other violations are reported)."""
    d = DEFAULT_SETTINGS
    if msg is None:
        return d
    kw = {}
    bad = Violations()
    if spec is not None:
        _check_settings_read(msg, spec, prefix, bad)
    if msg.HasField("paths"):
        if not 0 < msg.paths:
            bad.add(f"{prefix}.paths", f"must be > 0 (got {msg.paths})")
        kw["paths"] = msg.paths
    if msg.HasField("seed"):
        kw["seed"] = msg.seed
    if msg.HasField("max_step"):
        if not (math.isfinite(msg.max_step) and msg.max_step > 0):
            bad.add(f"{prefix}.max_step", f"must be finite and > 0 years (got {msg.max_step!r})")
        kw["max_step"] = msg.max_step
    for name in ("antithetic", "control_variate", "sobol", "brownian_bridge"):
        if msg.HasField(name):
            kw[name] = bool(getattr(msg, name))
    if msg.HasField("tree_steps"):
        if not 3 <= msg.tree_steps <= 100_000:  # (the tree kernel's range; an even count is raised by one)
            bad.add(f"{prefix}.tree_steps", f"must be in [3, 100000] (got {msg.tree_steps})")
        kw["tree_steps"] = msg.tree_steps
    if msg.american_scheme:
        if msg.american_scheme not in (1, 2, 3):
            bad.add(f"{prefix}.american_scheme", f"unknown AmericanScheme value {msg.american_scheme}")
        kw["american_scheme"] = msg.american_scheme
    bad.raise_if_any()
    return dataclasses.replace(d, **kw) if kw else d


def _check_settings_read(msg, spec: EngineSpec, prefix: str, bad: Violations) -> None:
    """Every setting ``msg`` sets that ``spec``'s engine does not read is named."""
    for f in msg.DESCRIPTOR.fields:
        name = f.name
        is_set = getattr(msg, name) != 0 if f.type == _T.TYPE_ENUM else msg.HasField(name)  # (optional scalars)
        if is_set and name not in spec.settings:
            reads = ", ".join(spec.settings) or "no settings"
            bad.add(f"{prefix}.{name}",
                    f"{cpb.Engine.Name(int(spec.engine))} ({spec.ref.engine}) does not read it (it reads {reads});"
                    " leave it unset")


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
        settings=f"{prefix}settings",
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


def _by_reference(market, prefix: str, bad: Violations) -> bool:
    """Whether ``market`` names a snapshot; then no level, rate or dividend may be inline."""
    if not (market.snapshot_id or market.underlying_id):
        return False
    if not market.snapshot_id:
        bad.add(f"{prefix}.snapshot_id", "required with underlying_id")
    for name in ("spot", "forward", "rate", "dividend_yield"):
        if _given(market, name):
            bad.add(f"{prefix}.{name}", "comes from the snapshot: send snapshot_id and underlying_id, or"
                                        " inline market data, not both")
    return True


def _given(market, name: str) -> bool:
    """A scalar (Market) or a column (MarketColumns) set on the message."""
    value = getattr(market, name)
    if isinstance(value, float):
        return market.HasField(name) if name in ("spot", "forward") else value != 0.0
    return market.HasField(name)


def _heston_one(market, spec: EngineSpec, prefix: str, bad: Violations):
    if spec.model == Model.HESTON:
        if not market.HasField("heston"):
            bad.add(f"{prefix}.heston", "required: MODEL_HESTON prices with v0, kappa, theta, sigma and rho")
            return None
        if market.volatility != 0.0:
            bad.add(f"{prefix}.volatility", _NO_HESTON_VOL)
        h = market.heston
        return HestonParameters(h.v0, h.kappa, h.theta, h.sigma, h.rho)
    if market.HasField("heston"):
        bad.add(f"{prefix}.heston", f"{cpb.Model.Name(int(spec.model))} takes no Heston parameters")
    return None


_NO_HESTON_VOL = "MODEL_HESTON takes no volatility: its variance starts at market.heston.v0 (leave volatility unset)"


def _market_one(market, spec: EngineSpec, prefix: str, bad: Violations):
    """(MarketBatch of one row, or SnapshotMarket; the underlying's kind as sent), or
    (None, None) when the market's shape is invalid (its violations are in ``bad``)."""
    p = f"{prefix}market"
    before = len(bad.found)
    if _by_reference(market, p, bad):
        heston = _heston_one(market, spec, p, bad)
        if len(bad.found) > before:
            return None, None
        inline = MarketBatch.of(MarketInputs(0.0, 0.0, 0.0, market.volatility, heston))
        if spec.model != Model.HESTON and market.volatility == 0.0:  # unset (proto3: 0): the surface's
            inline = dataclasses.replace(inline, volatility=None)
        return SnapshotMarket(market.snapshot_id, market.underlying_id, inline), spec.underlying
    underlying = market.WhichOneof("underlying")
    with bad.check():
        _check_underlying_spec(spec, underlying, p)
    if market.dividend_yield != 0.0 and not spec.takes_dividend:
        bad.add(f"{p}.dividend_yield", f"{cpb.Model.Name(int(spec.model))} takes no dividend yield: the forward carries it")
    heston = _heston_one(market, spec, p, bad)
    if len(bad.found) > before:
        return None, None
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
    PriceRequest of any instrument: the arguments of PricingService.price. ``prefix`` goes
    before every field path (``price.`` on a stream). Raises with every violation of the
    request's shape (the kernel then reports every bad value of a valid shape)."""
    bad = Violations()
    model = engine = None
    with bad.check():
        model = model_of(request.model, f"{prefix}model")
    with bad.check():
        engine = engine_of(request.engine, f"{prefix}engine")
    which = request.WhichOneof("instrument")
    if which is None:
        bad.add(f"{prefix}instrument", f"required: set one of {_INSTRUMENTS}")
    spec = None
    if which is not None and model is not None and engine is not None:
        with bad.check():
            spec = engine_spec(catalogue, which, model, engine, prefix)
    market = underlying = None
    if spec is not None:
        market, underlying = _market_one(request.market, spec, prefix, bad)
    measures = settings = None
    with bad.check():
        measures = measures_of(request.measures, f"{prefix}measures")
    if spec is not None and measures is not None:
        with bad.check():
            _check_measures(spec, measures, f"{prefix}measures", request.measures)
    with bad.check():
        settings = settings_of(request.settings if request.HasField("settings") else None, spec, f"{prefix}settings")
    columns = {}
    schedule = None
    kind = None
    if which is not None:
        product = PRODUCTS[which]
        msg = getattr(request, which)
        for inp in product.inputs:
            path = f"{prefix}{which}.{inp.name}"
            if inp.codes:
                with bad.check():
                    columns[inp.name] = np.array([_code_value(inp, getattr(msg, inp.name), path)], dtype=np.int32)
                continue
            value = getattr(msg, inp.name)
            if inp.default == SPOT and not msg.HasField(inp.name):
                if isinstance(market, SnapshotMarket):  # the snapshot's spot, once the service reads it
                    market = dataclasses.replace(market, spot_inputs=market.spot_inputs + (inp.name,))
                    continue
                value = market.underlying[0] if market is not None else 0.0
            elif inp.name == "cash" and not msg.HasField("cash"):
                value = inp.default
            columns[inp.name] = np.array([value], dtype=np.float64 if inp.dtype == "f8" else np.int32)
        expiry = msg.expiry
        kind = expiry.WhichOneof("kind")
        dates = expiry.dates
        with bad.check():
            t = _expiry(
                kind, expiry.year_fraction, _ymd(dates, "valuation_date") if kind == "dates" else None,
                _ymd(dates, "expiry_date") if kind == "dates" else None, dates.day_count, f"{prefix}{which}.expiry",
            )
            columns["time_to_expiry"] = np.array([t])
            if kind == "dates" and isinstance(market, SnapshotMarket):
                market = _on_axis(market, _ymd(dates, "valuation_date"), dates.day_count, f"{prefix}{which}.expiry.dates")
        if product.schedule:
            with bad.check():
                schedule = _schedule_one(msg, kind, dates, f"{prefix}{which}")
    unknown_enums(request, prefix, bad)
    bad.raise_if_any()
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
        bad = Violations()
        times = []
        for i, d in enumerate(fixing_dates):
            with bad.check():
                times.append(daycount.year_fraction(start, _date((d.year, d.month, d.day), f"{path}.fixing_dates[{i}]"), dc))
        bad.raise_if_any()
    arr = np.asarray(times, dtype=np.float64)
    return Schedule(arr, np.array([len(arr)], dtype=np.int32))


def _market_batch(market, spec: EngineSpec, plan: list, bad: Violations):
    """Adds the market columns to ``plan`` (their violations to ``bad``); returns a function
    that decodes them (a MarketBatch, or a SnapshotMarket when the columns name a snapshot)."""
    by_reference = _by_reference(market, "market", bad)
    heston = spec.model == Model.HESTON
    und = spec.underlying
    if not by_reference:
        given = [u for u in ("spot", "forward") if market.HasField(u)]
        if len(given) > 1:
            bad.add("market.spot", "set spot or forward, not both")
        else:
            with bad.check():
                _check_underlying_spec(spec, given[0] if given else None, "market")
        plan.append((f"market.{und}", getattr(market, und) if market.HasField(und) else None, 8, True))
        for name in ("rate", "dividend_yield"):
            plan.append((f"market.{name}", getattr(market, name) if market.HasField(name) else None, 8, False))
    if heston:
        if not market.HasField("heston"):
            bad.add("market.heston", "required: MODEL_HESTON prices with v0, kappa, theta, sigma and rho")
        else:
            for h in _HESTON:
                col = getattr(market.heston, h)
                plan.append((f"market.heston.{h}", col if market.heston.HasField(h) else None, 8, True))
        if market.HasField("volatility"):
            plan.append(("market.volatility", market.volatility, 8, False))
    else:
        if market.HasField("heston"):
            bad.add("market.heston", f"{cpb.Model.Name(int(spec.model))} takes no Heston parameters")
        # with a snapshot, no volatility column means: the underlying's surface
        plan.append(("market.volatility", market.volatility if market.HasField("volatility") else None, 8,
                     not by_reference))

    def decode():
        hs = [doubles(getattr(market.heston, h), f"market.heston.{h}") for h in _HESTON] if heston else [None] * 5
        vol = None
        if heston and market.HasField("volatility") and np.any(doubles(market.volatility, "market.volatility") != 0.0):
            raise invalid("market.volatility", _NO_HESTON_VOL)
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
    PriceBatchRequest of any instrument's columns; raises with every violation of its shape
    (bad values are the kernels' row errors)."""
    bad = Violations()
    model = engine = None
    with bad.check():
        model = model_of(request.model)
    with bad.check():
        engine = engine_of(request.engine)
    which = request.WhichOneof("instruments")
    if which is None:
        bad.add("instruments", f"required: set the columns of one of {_INSTRUMENTS}")
    spec = None
    if which is not None and model is not None and engine is not None:
        with bad.check():
            spec = engine_spec(catalogue, which, model, engine)
    measures = settings = None
    with bad.check():
        measures = measures_of(request.measures) or (Measure.PRICE,)
    if spec is not None and measures is not None:
        with bad.check():
            _check_measures(spec, measures, "measures", request.measures)
    with bad.check():
        settings = settings_of(request.settings if request.HasField("settings") else None, spec)
    _threads(request.threads, bad)
    if which is None:
        unknown_enums(request, "", bad)
        bad.raise_if_any()
    product = PRODUCTS[which]
    cols = getattr(request, which)
    time_kind = None
    with bad.check():
        time_kind = _time_kind(cols, which)
    _check_batch_dates(cols, which, time_kind, bad)
    plan = []
    if time_kind is not None:
        plan.append((f"{which}.{time_kind}", getattr(cols, time_kind), 4 if time_kind == "expiry_date" else 8, True))
    for inp in product.inputs:
        col = getattr(cols, inp.name) if cols.HasField(inp.name) else None
        plan.append((f"{which}.{inp.name}", col, 4 if inp.dtype == "i4" else 8, inp.default is None))
    if product.schedule and cols.HasField("fixing_counts"):
        plan.append((f"{which}.fixing_counts", cols.fixing_counts, 4, False))
    decode_market = _market_batch(request.market, spec, plan, bad) if spec is not None else None
    rows = _batch_rows(plan, max_rows, bad)
    unknown_enums(request, "", bad)
    bad.raise_if_any()
    market = decode_market()
    if time_kind == "expiry_date" and isinstance(market, SnapshotMarket):
        market = _on_axis(market, _ymd(cols, "valuation_date"), cols.day_count, which)
    columns = {"time_to_expiry": _batch_times(cols, which, time_kind)}
    for inp in product.inputs:
        path = f"{which}.{inp.name}"
        if cols.HasField(inp.name):
            columns[inp.name] = int32s(getattr(cols, inp.name), path) if inp.dtype == "i4" else doubles(getattr(cols, inp.name), path)
        elif inp.default == SPOT:
            if isinstance(market, SnapshotMarket):  # every row's: the snapshot's spot, once the service reads it
                market = dataclasses.replace(market, spot_inputs=market.spot_inputs + (inp.name,))
                continue
            columns[inp.name] = market.underlying
        else:
            columns[inp.name] = np.array([inp.default], dtype=np.int32 if inp.dtype == "i4" else np.float64)
    schedule = _schedule_batch(cols, which, rows) if product.schedule else None
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

