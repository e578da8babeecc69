"""Every numeric field of every request, for every product, model and engine the server offers
(read from ServerInfo), set to NaN, +-inf and -1: either refused naming that field (the row,
in a batch) or accepted because the value is meaningful there (a negative rate, a negative
strike under Bachelier). A field the chosen variant does not read is refused when set (a
cash-or-nothing digital's payoff_strike, an asset-or-nothing's cash, a floating lookback's
strike; tests/server/test_rpc_library_bad_input.py) or, where it is read as a state (an
Asian's running average before averaging began), held to the same domain as where it is
read: nothing is ignored silently.

The table of what is meaningful (``_signed``) is this test's; the server's own rules live in
the kernels (ext/pg_*.h, section "Status") and in pricegrid.server.rpc.requests.
"""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor as _d

from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import pricing_pb2 as pb

from .richerr import violations

_T = _d.FieldDescriptor
NAN, INF = math.nan, math.inf
BAD_DOUBLES = (NAN, INF, -INF, -1.0)
BAD_INTS = (-1,)

HESTON = dict(v0=0.04, kappa=1.5, theta=0.04, sigma=0.5, rho=-0.7)

#: one valid trade of each product, by variant (every variant's codes, so that fields one
#: variant ignores are tried on it)
TERMS = {
    "european": [dict(option_type=1, strike=100.0)],
    "american": [dict(option_type=2, strike=100.0)],
    "barrier": [dict(barrier_type=2, option_type=1, strike=100.0, barrier=90.0, rebate=1.0),
                dict(barrier_type=3, option_type=1, strike=100.0, barrier=120.0, rebate=0.5, monitoring_interval=0.02)],
    "double_barrier": [dict(knock_type=2, option_type=1, strike=100.0, lower_barrier=80.0, upper_barrier=125.0)],
    # (a payoff strike is the gap's only: set on another payoff it is refused, tried below)
    "digital": [dict(payoff=p, option_type=1, strike=100.0, cash=2.0, **({"payoff_strike": 95.0} if p == 3 else {}))
                for p in (1, 2, 3)],
    "touch": [dict(touch_type=1, direction=1, payment=1, cash=1.0, barrier=90.0),
              dict(touch_type=2, direction=2, payment=2, cash=1.0, barrier=115.0, monitoring_interval=0.02)],
    "asian": [dict(averaging=a, option_type=1, strike=100.0, fixing_times=f, running_average=101.0, past_fixings=p,
                   elapsed=e)
              for a in (1, 2) for f, p, e in (([0.25, 0.5], 0, 0.0), ([0.25, 0.5], 3, 0.0), ([], 0, 0.2), ([], 0, 0.0))],
    "lookback": [dict(strike_type=s, option_type=o, strike=100.0, running_minimum=95.0, running_maximum=105.0)
                 for s in (1, 2) for o in (1, 2)],
}
EXPIRY = 0.5


def _offered(stub):
    """(product, model, engine) of every engine the server prices with."""
    info = stub.ServerInfo(pb.ServerInfoRequest(), timeout=10)
    return sorted({(inst, m.model, m.engine) for m in info.models for inst in m.instruments
                   if m.engine != c.ENGINE_UNSPECIFIED})  # (implied volatility's rows name no engine)


def _market(model: int, **over) -> dict:
    if model == c.MODEL_BLACK_SCHOLES_MERTON:
        m = dict(spot=100.0, rate=0.03, dividend_yield=0.01, volatility=0.25)
    elif model in (c.MODEL_BLACK_76, c.MODEL_BACHELIER):
        m = dict(forward=100.0, rate=0.03, volatility=0.25 if model == c.MODEL_BLACK_76 else 20.0)
    else:
        m = dict(spot=100.0, rate=0.03, dividend_yield=0.01)
    m.update(over)
    return m


def _settings(product: str, model: int, engine: int) -> pb.EngineSettings:
    from pricegrid.server.pricers.catalogue import CATALOGUE

    s = pb.EngineSettings()
    if engine == c.ENGINE_MONTE_CARLO:
        s.paths, s.seed = 2_000, 7
        if "max_step" in CATALOGUE.find(product, model, engine).settings:  # (a GBM European: one exact step)
            s.max_step = 0.05
    if engine == c.ENGINE_BINOMIAL_TREE:
        s.tree_steps = 51
    return s


def _request_level(model: int, path: str) -> bool:
    """A column the model takes none of: the whole batch is refused, naming it."""
    if path == "market.dividend_yield":
        return model not in (c.MODEL_BLACK_SCHOLES_MERTON, c.MODEL_HESTON)
    return path == "market.volatility" and model == c.MODEL_HESTON


def _no_closed_form(product: str, path: str, value) -> bool:
    """A valid trade the engine documents as having no finite value (ext/pg_barrier.h, note
    3: a knock-out's rebate at the hit and a one-touch paid at the hit under a negative rate
    with mu^2 + 2 r / vol^2 < 0, as QuantLib): OUT_OF_RANGE, not INVALID_ARGUMENT."""
    return product in ("barrier", "touch") and path == "market.rate" and value < 0


def _priced_variants(product: str, engine: int):
    """The variants an engine prices (Levy's is for continuous averaging only)."""
    for terms in TERMS[product]:
        if engine == c.ENGINE_LEVY and terms.get("fixing_times") and terms["averaging"] == 1:
            continue
        yield terms


def _signed(model: int, engine: int, product: str, field: str, value) -> bool:
    """Whether a finite negative ``value`` of ``field`` is meaningful (and so priced)."""
    if field in ("market.rate",):
        return True
    if field == "market.dividend_yield":
        return model in (c.MODEL_BLACK_SCHOLES_MERTON, c.MODEL_HESTON)
    if model == c.MODEL_BACHELIER and field in ("market.forward", f"{product}.strike"):
        return True
    return False


def _numeric_paths(descriptor, prefix=""):
    """(path, field descriptor) of every numeric field of a message, recursively (no oneof
    alternatives other than those set by the caller are visited)."""
    for f in descriptor.fields:
        if f.type == _T.TYPE_MESSAGE:
            continue
        if f.type in (_T.TYPE_DOUBLE, _T.TYPE_FLOAT, _T.TYPE_INT32, _T.TYPE_INT64, _T.TYPE_SINT32, _T.TYPE_SINT64):
            yield f"{prefix}{f.name}", f


# ------------------------------------------------------------------------------ one trade
def _trade(product, model, engine, terms) -> pb.PriceRequest:
    msg_cls = getattr(pb, pb.PriceRequest.DESCRIPTOR.fields_by_name[product].message_type.name)
    terms = dict(terms)
    if product == "lookback" and terms["strike_type"] == 1:
        terms.pop("strike")  # floating: the strike is not read (and is tried as a bad value below)
    if product == "digital" and terms["payoff"] != 1:
        terms.pop("cash")
    inst = msg_cls(**terms, expiry=pb.Expiry(year_fraction=EXPIRY))
    request = pb.PriceRequest(model=model, engine=engine, market=pb.Market(**_market(model)),
                              settings=_settings(product, model, engine))
    getattr(request, product).CopyFrom(inst)
    if model == c.MODEL_HESTON:
        request.market.heston.CopyFrom(pb.HestonParameters(**HESTON))
    return request


def _single_cases(request, product, model):
    """(path, setter, value) of every numeric field of a valid request."""
    inst_desc = request.DESCRIPTOR.fields_by_name[product].message_type
    for path, f in _numeric_paths(inst_desc, f"{product}."):
        name = f.name
        if f.is_repeated:  # fixing_times: a bad time among good ones
            if not len(getattr(request, product).fixing_times):
                continue
            for v in BAD_DOUBLES:
                yield path, (lambda r, v=v: getattr(r, product).fixing_times.__setitem__(0, v)), v
            continue
        values = BAD_INTS if f.type != _T.TYPE_DOUBLE else BAD_DOUBLES
        for v in values:
            yield path, (lambda r, n=name, v=v: setattr(getattr(r, product), n, v)), v
    for v in BAD_DOUBLES:
        yield f"{product}.expiry.year_fraction", (lambda r, v=v: getattr(r, product).expiry.__setattr__("year_fraction", v)), v
    under = "forward" if model in (c.MODEL_BLACK_76, c.MODEL_BACHELIER) else "spot"
    for name in (under, "rate", "dividend_yield", "volatility"):
        for v in BAD_DOUBLES:
            yield f"market.{name}", (lambda r, n=name, v=v: setattr(r.market, n, v)), v
    if model == c.MODEL_HESTON:
        for name in HESTON:
            for v in BAD_DOUBLES:
                yield f"market.heston.{name}", (lambda r, n=name, v=v: setattr(r.market.heston, n, v)), v
    for name, values in (("paths", BAD_INTS), ("tree_steps", BAD_INTS), ("max_step", BAD_DOUBLES)):
        for v in values:
            yield f"settings.{name}", (lambda r, n=name, v=v: setattr(r.settings, n, v)), v


def _cases():
    # a module-level list for parametrize: every product x model x engine the catalogue of
    # this build offers (checked against ServerInfo in test_the_table_covers_every_engine)
    from pricegrid.server.pricers.catalogue import CATALOGUE

    return sorted({(s.product, int(s.model), int(s.engine)) for s in CATALOGUE})


CASES = _cases()


def test_the_table_covers_every_engine(stub):
    assert set(_offered(stub)) == set(CASES)
    assert set(TERMS) == {p for p, _, _ in CASES}


class Wrong(Exception):
    pass


def _expect_refused(call, request, path):
    try:
        call(request, timeout=30)
    except grpc.RpcError as err:
        fields = [f for f, _ in violations(err)]
        if err.code() != grpc.StatusCode.INVALID_ARGUMENT or path not in fields:
            raise Wrong(f"{err.code().name} naming {fields}: {err.details()[:200]}") from None
        return
    raise Wrong("priced")


@pytest.mark.parametrize("product, model, engine", CASES)
def test_every_numeric_field_of_a_trade(stub, product, model, engine):
    failures = []
    for k, terms in enumerate(_priced_variants(product, engine)):
        base = _trade(product, model, engine, terms)
        ok = stub.Price(base, timeout=30)
        assert math.isfinite(ok.price), (terms, ok)
        for path, set_value, value in _single_cases(base, product, model):
            request = pb.PriceRequest()
            request.CopyFrom(base)
            set_value(request)
            try:
                if math.isfinite(value) and _signed(model, engine, product, path, value):
                    try:
                        response = stub.Price(request, timeout=30)
                    except grpc.RpcError as err:
                        if err.code() == grpc.StatusCode.OUT_OF_RANGE and _no_closed_form(product, path, value):
                            continue
                        raise
                    if not math.isfinite(response.price):
                        raise Wrong(f"price {response.price}")
                else:
                    _expect_refused(stub.Price, request, path)
            except (Wrong, grpc.RpcError) as exc:
                failures.append(f"variant {k} {path}={value!r}: {exc}")
    assert not failures, "\n".join([str(TERMS[product])] + failures)


# ------------------------------------------------------------------------------ batches
ROWS = 2


def _batch(product, model, engine, terms) -> pb.PriceBatchRequest:
    """The trade as a batch of two identical rows; every column of length 2."""
    cols_cls = getattr(pb, pb.PriceBatchRequest.DESCRIPTOR.fields_by_name[product].message_type.name)
    cols = cols_cls()
    terms = dict(terms)
    if product == "lookback" and terms["strike_type"] == 1:
        terms.pop("strike")
    if product == "digital" and terms["payoff"] != 1:
        terms.pop("cash")
    times = terms.pop("fixing_times", [])
    for name, value in terms.items():
        col = getattr(cols, name)
        col.values.extend([value] * ROWS)
    cols.time_to_expiry.values.extend([EXPIRY] * ROWS)
    if times:
        cols.fixing_times.values.extend(list(times) * ROWS)
        cols.fixing_counts.values.extend([len(times)] * ROWS)
    request = pb.PriceBatchRequest(model=model, engine=engine, settings=_settings(product, model, engine))
    getattr(request, product).CopyFrom(cols)
    for name, value in _market(model).items():
        getattr(request.market, name).values.extend([value] * ROWS)
    if model == c.MODEL_HESTON:
        for name, value in HESTON.items():
            getattr(request.market.heston, name).values.extend([value] * ROWS)
    return request


def _batch_cases(request, product, model):
    """(path, setter, value, per_row): row 1 of a column set to the value (per_row), or a
    request-level field."""
    cols = getattr(request, product)
    for f in cols.DESCRIPTOR.fields:
        if f.type != _T.TYPE_MESSAGE or f.message_type.name not in ("DoubleColumn", "Int32Column"):
            continue
        if not cols.HasField(f.name) or f.name in ("expiry_date", "fixing_counts"):
            continue
        path = f"{product}.{f.name}"
        values = BAD_DOUBLES if f.message_type.name == "DoubleColumn" else BAD_INTS
        if f.name in ("option_type",) or f.message_type.name == "Int32Column" and f.name != "past_fixings":
            continue  # enum codes: tests/server/test_rpc_enums.py
        idx = 1 if f.name != "fixing_times" else len(getattr(cols, f.name).values) - 1
        for v in values:
            yield path, (lambda r, n=f.name, v=v, i=idx: getattr(getattr(r, product), n).values.__setitem__(i, v)), v, True
    under = "forward" if model in (c.MODEL_BLACK_76, c.MODEL_BACHELIER) else "spot"
    names = [under, "rate", "dividend_yield", "volatility"]
    for name in names:
        for v in BAD_DOUBLES:
            def set_value(r, n=name, v=v):
                col = getattr(r.market, n)
                if not len(col.values):
                    col.values.extend([0.0] * ROWS)
                col.values[1] = v
            yield f"market.{name}", set_value, v, True
    if model == c.MODEL_HESTON:
        for name in HESTON:
            for v in BAD_DOUBLES:
                yield (f"market.heston.{name}",
                       (lambda r, n=name, v=v: getattr(r.market.heston, n).values.__setitem__(1, v)), v, True)
    for name, values in (("paths", BAD_INTS), ("tree_steps", BAD_INTS), ("max_step", BAD_DOUBLES)):
        for v in values:
            yield f"settings.{name}", (lambda r, n=name, v=v: setattr(r.settings, n, v)), v, False
    for v in BAD_INTS:
        yield "threads", (lambda r, v=v: setattr(r, "threads", v)), v, False


@pytest.mark.parametrize("product, model, engine", CASES)
def test_every_numeric_column_of_a_batch(stub, product, model, engine):
    failures = []
    for k, terms in enumerate(_priced_variants(product, engine)):
        base = _batch(product, model, engine, terms)
        ok = stub.PriceBatch(base, timeout=30)
        assert ok.error_count == 0, (terms, ok.errors)
        for path, set_value, value, per_row in _batch_cases(base, product, model):
            request = pb.PriceBatchRequest()
            request.CopyFrom(base)
            set_value(request)
            accepted = math.isfinite(value) and _signed(model, engine, product, path, value)
            try:
                if (not per_row or _request_level(model, path)) and not accepted:
                    _expect_refused(stub.PriceBatch, request, path)
                    continue
                response = stub.PriceBatch(request, timeout=30)
                price = np.frombuffer(response.columns[0].values.raw, "<f8")
                errors = [(e.row, e.field) for e in response.errors]
                if accepted:
                    if _no_closed_form(product, path, value) and [e.code for e in response.errors] == [11]:
                        continue
                    if response.error_count or not np.isfinite(price).all():
                        raise Wrong(f"errors {errors}")
                    continue
                status = np.frombuffer(response.status.raw, "<i4").tolist()
                if status != [0, 3] or (1, path) not in errors:
                    raise Wrong(f"status {status}, errors {errors}")
                if not (np.isfinite(price[0]) and np.isnan(price[1])):
                    raise Wrong(f"prices {price}")
            except (Wrong, grpc.RpcError) as exc:
                failures.append(f"variant {k} {path}={value!r}: {exc}")
    assert not failures, "\n".join([str(TERMS[product])] + failures)


# ------------------------------------------------------------------------ implied volatility
IV_MODELS = (c.MODEL_BLACK_SCHOLES_MERTON, c.MODEL_BLACK_76, c.MODEL_BACHELIER)


def _iv(model) -> pb.ImpliedVolatilityRequest:
    m = _market(model, volatility=0.3)  # not read by implied volatility: a valid number is ignored
    price = 8.0 if model != c.MODEL_BACHELIER else 6.0
    return pb.ImpliedVolatilityRequest(
        model=model, price=price, market=pb.Market(**m),
        european=pb.EuropeanOption(option_type=1, strike=100.0, expiry=pb.Expiry(year_fraction=EXPIRY)))


@pytest.mark.parametrize("model", IV_MODELS)
def test_every_numeric_field_of_an_implied_vol_request(stub, model):
    base = _iv(model)
    assert stub.ImpliedVolatility(base, timeout=10).volatility > 0
    under = "forward" if model != c.MODEL_BLACK_SCHOLES_MERTON else "spot"
    setters = {
        "european.strike": lambda r, v: setattr(r.european, "strike", v),
        "european.expiry.year_fraction": lambda r, v: setattr(r.european.expiry, "year_fraction", v),
        f"market.{under}": lambda r, v: setattr(r.market, under, v),
        "market.rate": lambda r, v: setattr(r.market, "rate", v),
        "market.dividend_yield": lambda r, v: setattr(r.market, "dividend_yield", v),
        "market.volatility": lambda r, v: setattr(r.market, "volatility", v),
        "price": lambda r, v: setattr(r, "price", v),
    }
    failures = []
    for path, set_value in setters.items():
        for value in BAD_DOUBLES:
            request = pb.ImpliedVolatilityRequest()
            request.CopyFrom(base)
            set_value(request, value)
            try:
                if math.isfinite(value) and _signed(model, 0, "european", path, value):
                    try:
                        stub.ImpliedVolatility(request, timeout=10)
                    except grpc.RpcError as err:  # a price the moved market cannot reproduce
                        if "price" not in [f for f, _ in violations(err)]:
                            raise
                else:
                    _expect_refused(stub.ImpliedVolatility, request, path)
            except (Wrong, grpc.RpcError) as exc:
                failures.append(f"{path}={value!r}: {exc}")
    assert not failures, "\n".join(failures)


def _iv_columns(reply):
    return [np.frombuffer(col.raw, "<f8") if col.raw else np.array(col.values)
            for col in (reply.volatility, reply.inputs.forward, reply.inputs.discount_factor)]


@pytest.mark.parametrize("value", BAD_DOUBLES)
def test_an_implied_vol_batch_fails_the_row_of_a_bad_volatility_it_does_not_read(stub, value):
    """A vol column sent with implied volatility is not read, but checked per row as every
    other column: a bad value fails its row only (named, with the value), as in PriceBatch;
    the other rows are those of the batch without the column, bit for bit."""
    request = pb.ImpliedVolatilityBatchRequest(
        model=1, price=c.DoubleColumn(values=[14.0, 8.0, 2.5]),
        european=pb.EuropeanOptionColumns(option_type=c.Int32Column(values=[1]),
                                          strike=c.DoubleColumn(values=[90.0, 100.0, 110.0]),
                                          time_to_expiry=c.DoubleColumn(values=[EXPIRY])),
        market=pb.MarketColumns(spot=c.DoubleColumn(values=[100.0]), rate=c.DoubleColumn(values=[0.03])))
    unset = _iv_columns(stub.ImpliedVolatilityBatch(request, timeout=10))
    request.market.volatility.values.extend([0.3, 0.0, 0.3])  # valid (0 too): not read
    good = stub.ImpliedVolatilityBatch(request, timeout=10)
    assert good.error_count == 0 and all(np.array_equal(a, b) for a, b in zip(_iv_columns(good), unset))
    request.market.volatility.values[1] = value
    out = stub.ImpliedVolatilityBatch(request, timeout=10)
    assert out.error_count == 1 and np.frombuffer(out.status.raw, "<i4").tolist() == [0, 3, 0]
    (e,) = out.errors
    assert (e.row, e.code, e.field) == (1, 3, "market.volatility") and f"got {value!r}" in e.message, e
    for got, ref in zip(_iv_columns(out), unset):
        assert np.isnan(got[1]) and np.array_equal(got[[0, 2]], ref[[0, 2]])
    del request.market.volatility.values[:]
    request.market.volatility.values.append(value)  # one value for every row: every row fails
    out = stub.ImpliedVolatilityBatch(request, timeout=10)
    assert out.error_count == 3 and {(e.row, e.field) for e in out.errors} == {(i, "market.volatility") for i in range(3)}
