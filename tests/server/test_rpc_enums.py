"""Unknown enum values anywhere in a request are refused, naming the field: every enum field
of every request message of PricingService and MarketDataService, found from the
descriptors (a field added to the contract is covered without touching this test).

proto3 enums are open: the generated code keeps an unknown number as it is, so the server
must refuse it itself (``output_encoding = 9`` used to be answered as if raw).
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor as _d
from google.protobuf import timestamp_pb2

from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import market_pb2 as mpb
from pricegrid.v1 import market_pb2_grpc
from pricegrid.v1 import pricing_pb2 as pb

from .richerr import violations
from .test_rpc_stream import Stream

_T = _d.FieldDescriptor
UNKNOWN = 99  # no enum of the contract has a value 99


def enum_paths(desc, prefix=(), seen=()):
    """Every path (a tuple of field descriptors) from ``desc`` to an enum field."""
    for f in desc.fields:
        if f.type == _T.TYPE_ENUM:
            yield prefix + (f,)
        elif f.type == _T.TYPE_MESSAGE and f.message_type.full_name not in seen:
            if f.message_type.full_name.startswith("google.protobuf."):
                continue
            yield from enum_paths(f.message_type, prefix + (f,), seen + (desc.full_name,))


def set_unknown(message, path) -> str:
    """Sets the enum at ``path`` to an unknown value; returns the field path as sent."""
    names = []
    for f in path[:-1]:
        if f.is_repeated:
            container = getattr(message, f.name)
            message = container[0] if len(container) else container.add()
            names.append(f"{f.name}[0]")
        else:
            message = getattr(message, f.name)
            message.SetInParent()
            names.append(f.name)
    last = path[-1]
    if last.is_repeated:
        values = getattr(message, last.name)
        values.append(UNKNOWN)
        names.append(f"{last.name}[{len(values) - 1}]")
    else:
        setattr(message, last.name, UNKNOWN)
        names.append(last.name)
    return ".".join(names)


def _ids(paths):
    return [".".join(f.name for f in p) for p in paths]


# ------------------------------------------------------------------------ valid requests
def price_request():
    return pb.PriceRequest(
        model=c.MODEL_BLACK_SCHOLES_MERTON, measures=[c.MEASURE_DELTA],
        european=pb.EuropeanOption(option_type=c.OPTION_TYPE_CALL, strike=100.0, expiry=pb.Expiry(year_fraction=0.5)),
        market=pb.Market(spot=100.0, rate=0.02, volatility=0.2),
    )


def batch_request():
    return pb.PriceBatchRequest(
        model=c.MODEL_BLACK_SCHOLES_MERTON, measures=[c.MEASURE_PRICE],
        european=pb.EuropeanOptionColumns(option_type=c.Int32Column(values=[1, 2]),
                                          strike=c.DoubleColumn(values=[90.0, 110.0]),
                                          time_to_expiry=c.DoubleColumn(values=[0.5])),
        market=pb.MarketColumns(spot=c.DoubleColumn(values=[100.0]), volatility=c.DoubleColumn(values=[0.2])),
    )


def iv_request():
    r = price_request()
    return pb.ImpliedVolatilityRequest(model=r.model, european=r.european, market=r.market, price=8.0)


def iv_batch_request():
    b = batch_request()
    return pb.ImpliedVolatilityBatchRequest(model=b.model, european=b.european, market=b.market,
                                            price=c.DoubleColumn(values=[14.0, 12.0]))


def snapshot():
    ts = timestamp_pb2.Timestamp()
    ts.FromJsonString("2026-11-20T17:30:00Z")
    return mpb.MarketSnapshot(
        name="enums", as_of=ts,
        curves=[mpb.YieldCurve(id="USD", currency="USD", node_times=[0.5, 1.0, 2.0], values=[0.03, 0.031, 0.032],
                               value_kind=mpb.CURVE_VALUE_KIND_ZERO_RATE)],
        underlyings=[mpb.Underlying(id="SPX", currency="USD", spot=100.0, discount_curve="USD")],
        surfaces=[mpb.VolSurface(id="SPX-vol", underlying="SPX", expiries=[0.5, 1.0],
                                 grid=mpb.VolGrid(axis=mpb.STRIKE_AXIS_MONEYNESS, nodes=[0.9, 1.0, 1.1],
                                                  vols=[0.22, 0.2, 0.19, 0.21, 0.2, 0.19]))],
    )


UNARY = {
    "Price": (price_request, pb.PriceRequest),
    "PriceBatch": (batch_request, pb.PriceBatchRequest),
    "ImpliedVolatility": (iv_request, pb.ImpliedVolatilityRequest),
    "ImpliedVolatilityBatch": (iv_batch_request, pb.ImpliedVolatilityBatchRequest),
}
MARKET = {
    "PutSnapshot": (lambda: mpb.PutSnapshotRequest(snapshot=snapshot()), mpb.PutSnapshotRequest),
    "ValidateMarket": (lambda: mpb.ValidateMarketRequest(snapshot=snapshot()), mpb.ValidateMarketRequest),
}


def test_the_tables_cover_every_request_with_an_enum():
    """Every method whose request holds an enum somewhere is tried below."""
    tried = set(UNARY) | set(MARKET) | {"PriceStream"}
    for file in (pb, mpb):
        for service in file.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                if any(True for _ in enum_paths(method.input_type)):
                    assert method.name in tried, method.full_name


def _cases(table):
    for method, (make, cls) in table.items():
        paths = list(enum_paths(cls.DESCRIPTOR))
        assert paths, method
        for path, name in zip(paths, _ids(paths)):
            yield pytest.param(method, make, path, id=f"{method}:{name}")


def _expect_named(call, request, field):
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=10)
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, err.code(), err.details())
    fields = [f for f, _ in violations(err)]
    assert field in fields, (field, fields, err.details())


@pytest.mark.parametrize("method, make, path", list(_cases(UNARY)))
def test_pricing_requests(stub, method, make, path):
    base = make()
    getattr(stub, method)(base, timeout=10)  # the request is valid as it stands
    request = make()
    field = set_unknown(request, path)
    _expect_named(getattr(stub, method), request, field)


@pytest.fixture(scope="module")
def market_stub(channel):
    return market_pb2_grpc.MarketDataServiceStub(channel)


@pytest.mark.parametrize("method, make, path", list(_cases(MARKET)))
def test_market_requests(market_stub, method, make, path):
    base = make()
    getattr(market_stub, method)(base, timeout=10)
    request = make()
    field = set_unknown(request, path)
    _expect_named(getattr(market_stub, method), request, field)


def test_stream_messages(stub):
    """A stream message's unknown enum gets an error reply naming it; the stream goes on."""
    paths = list(enum_paths(pb.PriceRequest.DESCRIPTOR))
    s = Stream(stub.PriceStream)
    for i, path in enumerate(paths):
        request = price_request()
        field = set_unknown(request, path)
        s.send(pb.PriceStreamRequest(correlation_id=f"e{i}", price=request))
        (reply,) = s.recv(1)
        assert reply.correlation_id == f"e{i}" and reply.HasField("error"), (field, reply)
        assert reply.error.code == 3 and f"price.{field}" in reply.error.message, (field, reply.error)
    s.send(pb.PriceStreamRequest(correlation_id="ok", price=price_request()))
    (ok,) = s.recv(1)
    assert ok.result.price > 0
    s.close()


def test_output_encoding_nine_is_refused_and_packed_still_served(stub):
    request = batch_request()
    request.output_encoding = 9
    _expect_named(stub.PriceBatch, request, "output_encoding")
    request.output_encoding = c.ENCODING_PACKED
    response = stub.PriceBatch(request, timeout=10)
    assert np.isfinite(list(response.columns[0].values.values)).all()
