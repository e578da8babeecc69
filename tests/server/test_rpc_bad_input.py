"""Bad input: a clear error naming the field (and row), nothing lost, the server keeps serving."""

import math
import os
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import pricing_pb2 as pb
from pricegrid.v1 import pricing_pb2_grpc

from tests.conftest import start_server
from tests.server.richerr import violations


def good_request(**market) -> pb.PriceRequest:
    m = dict(spot=100.0, rate=0.05, dividend_yield=0.01, volatility=0.2)
    m.update(market)
    return pb.PriceRequest(
        model=c.MODEL_BLACK_SCHOLES_MERTON,
        european=pb.EuropeanOption(option_type=c.OPTION_TYPE_CALL, strike=100.0, expiry=pb.Expiry(year_fraction=1.0)),
        market=pb.Market(**m),
        measures=[c.MEASURE_DELTA],
    )


def still_serving(channel, stub):
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
    assert stub.Price(good_request(), timeout=5).price > 0


def expect_invalid(call, request, field, code=grpc.StatusCode.INVALID_ARGUMENT):
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=5)
    err = info.value
    assert err.code() == code, (err.code(), err.details())
    fields = [f for f, _ in violations(err)]
    assert field in fields, (field, fields, err.details())
    assert field in err.details()
    return err


NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda r: setattr(r.european, "strike", NAN), "european.strike"),
        (lambda r: setattr(r.european, "strike", -1.0), "european.strike"),
        (lambda r: setattr(r.european, "strike", 0.0), "european.strike"),
        (lambda r: setattr(r.european, "strike", INF), "european.strike"),
        (lambda r: setattr(r.market, "spot", 0.0), "market.spot"),
        (lambda r: setattr(r.market, "spot", -INF), "market.spot"),
        (lambda r: setattr(r.market, "volatility", 0.0), "market.volatility"),
        (lambda r: setattr(r.market, "volatility", -0.2), "market.volatility"),
        (lambda r: setattr(r.market, "volatility", NAN), "market.volatility"),
        (lambda r: setattr(r.market, "rate", INF), "market.rate"),
        (lambda r: setattr(r.market, "dividend_yield", NAN), "market.dividend_yield"),
        (lambda r: r.european.expiry.__setattr__("year_fraction", -0.5), "european.expiry.year_fraction"),
        (lambda r: r.european.expiry.__setattr__("year_fraction", NAN), "european.expiry.year_fraction"),
        (lambda r: setattr(r.european, "option_type", 7), "european.option_type"),
        (lambda r: setattr(r.european, "option_type", 0), "european.option_type"),
        (lambda r: setattr(r, "model", 42), "model"),
        (lambda r: setattr(r, "model", 0), "model"),
        (lambda r: r.measures.append(99), "measures[1]"),
        (lambda r: r.ClearField("european"), "instrument"),  # the oneof names what is missing
        (lambda r: r.european.ClearField("expiry"), "european.expiry"),
        (lambda r: r.market.ClearField("spot"), "market.spot"),
        (lambda r: setattr(r.market, "forward", 100.0), "market.forward"),
        (lambda r: setattr(r.market, "snapshot_id", "eod-2026-11-23"), "market.spot"),  # a snapshot or inline data
        (lambda r: setattr(r.market, "underlying_id", "SPX"), "market.snapshot_id"),  # no snapshot named
    ],
)
def test_price_rejects_bad_fields(channel, stub, mutate, field):
    request = good_request()
    mutate(request)
    expect_invalid(stub.Price, request, field, grpc.StatusCode.INVALID_ARGUMENT)
    still_serving(channel, stub)


def test_several_bad_fields_are_all_named(stub):
    request = good_request(volatility=-1.0, spot=NAN)
    request.european.strike = -5
    err = expect_invalid(stub.Price, request, "european.strike")
    assert {"market.spot", "market.volatility", "european.strike"} <= {f for f, _ in violations(err)}


def test_black76_rejects_dividend_and_spot(stub):
    request = pb.PriceRequest(
        model=c.MODEL_BLACK_76,
        european=pb.EuropeanOption(option_type=c.OPTION_TYPE_PUT, strike=70, expiry=pb.Expiry(year_fraction=1.0)),
        market=pb.Market(forward=68.0, rate=0.03, dividend_yield=0.02, volatility=0.4),
    )
    expect_invalid(stub.Price, request, "market.dividend_yield")
    request.market.dividend_yield = 0
    request.market.spot = 68.0
    expect_invalid(stub.Price, request, "market.spot")


@pytest.mark.parametrize(
    "dates, field",
    [
        (dict(valuation_date=c.Date(year=2026, month=2, day=30), expiry_date=c.Date(year=2027, month=1, day=1),
              day_count=c.DAY_COUNT_ACT_365F), "european.expiry.dates.valuation_date"),
        (dict(valuation_date=c.Date(year=2026, month=2, day=1), expiry_date=c.Date(year=2027, month=1, day=1),
              day_count=17), "european.expiry.dates.day_count"),
        (dict(valuation_date=c.Date(year=2026, month=2, day=1), day_count=c.DAY_COUNT_ACT_360),
         "european.expiry.dates.expiry_date"),
        (dict(valuation_date=c.Date(year=2027, month=2, day=1), expiry_date=c.Date(year=2026, month=1, day=1),
              day_count=c.DAY_COUNT_ACT_360), "european.expiry.dates"),
    ],
)
def test_bad_dates(stub, dates, field):
    request = good_request()
    request.european.expiry.dates.CopyFrom(pb.ExpiryDates(**dates))
    expect_invalid(stub.Price, request, field)


def test_implied_vol_outside_bounds_names_price(stub):
    request = good_request()
    iv = pb.ImpliedVolatilityRequest(model=request.model, european=request.european, market=request.market, price=150.0)
    expect_invalid(stub.ImpliedVolatility, iv, "price")
    iv.price = NAN
    expect_invalid(stub.ImpliedVolatility, iv, "price")


def test_garbage_bytes_on_a_valid_method(channel, stub):
    for method in ("Price", "PriceBatch", "ImpliedVolatility", "ImpliedVolatilityBatch"):
        call = channel.unary_unary(f"/pricegrid.v1.PricingService/{method}")
        with pytest.raises(grpc.RpcError) as info:
            call(b"\xff\xff\xff\xff\x0f garbage", timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid" in info.value.details()
    still_serving(channel, stub)


def test_unknown_method_is_unimplemented(channel, stub):
    with pytest.raises(grpc.RpcError) as info:
        channel.unary_unary("/pricegrid.v1.PricingService/PriceEverything")(b"", timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as info:
        channel.unary_unary("/no.such.Service/Method")(b"", timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    still_serving(channel, stub)


def test_error_carries_request_id(stub):
    request = good_request(volatility=-1.0)
    with pytest.raises(grpc.RpcError) as info:
        stub.Price(request, timeout=5, metadata=(("x-request-id", "desk-7-42"),))
    assert ("x-request-id", "desk-7-42") in tuple((m.key, m.value) for m in info.value.trailing_metadata())


@pytest.mark.parametrize("sent", ["", "   "])
def test_an_empty_request_id_is_replaced_by_one_made_here(stub, sent):
    request = good_request(volatility=-1.0)
    with pytest.raises(grpc.RpcError) as info:
        stub.Price(request, timeout=5, metadata=(("x-request-id", sent),))
    made = dict((m.key, m.value) for m in info.value.trailing_metadata()).get("x-request-id", "")
    assert made.strip() and made != sent
    assert made.split("-")[0] == f"{os.getpid():x}"  # the server's own form: pid-counter


# ------------------------------------------------------------------------------------ batches
def batch(n=4, **over):
    cols = dict(
        option_type=c.Int32Column(values=[1, 2] * (n // 2)),
        strike=c.DoubleColumn(raw=np.linspace(80, 120, n).tobytes()),
        time_to_expiry=c.DoubleColumn(values=[0.5]),
    )
    market = dict(spot=c.DoubleColumn(values=[100.0]), rate=c.DoubleColumn(values=[0.02]),
                  volatility=c.DoubleColumn(raw=np.full(n, 0.2).tobytes()))
    for k, v in over.items():
        (cols if k in cols or k in ("expiry_date",) else market)[k] = v
    return pb.PriceBatchRequest(
        model=c.MODEL_BLACK_SCHOLES_MERTON, measures=[c.MEASURE_PRICE, c.MEASURE_DELTA],
        european=pb.EuropeanOptionColumns(**cols), market=pb.MarketColumns(**market),
    )


@pytest.mark.parametrize(
    "over, field",
    [
        (dict(strike=c.DoubleColumn(values=[100.0, 101.0, 102.0])), "european.strike"),
        (dict(volatility=c.DoubleColumn(raw=b"\x00" * 12)), "market.volatility"),
        (dict(volatility=c.DoubleColumn(values=[0.2], raw=np.zeros(1).tobytes())), "market.volatility"),
        (dict(option_type=c.Int32Column(values=[1] * 5)), "european.option_type"),
        (dict(volatility=c.DoubleColumn()), "market.volatility"),
        (dict(forward=c.DoubleColumn(values=[100.0])), "market.spot"),
    ],
)
def test_batch_shape_errors(channel, stub, over, field):
    expect_invalid(stub.PriceBatch, batch(**over), field)
    still_serving(channel, stub)


def test_batch_missing_required_columns(stub):
    request = batch()
    request.market.ClearField("volatility")
    expect_invalid(stub.PriceBatch, request, "market.volatility")
    request = batch()
    request.european.ClearField("time_to_expiry")
    expect_invalid(stub.PriceBatch, request, "european.time_to_expiry")


def test_batch_bad_rows_get_per_row_status(stub):
    n = 8
    strike = np.linspace(80, 120, n)
    strike[3] = np.nan
    vol = np.full(n, 0.2)
    vol[5] = -0.1
    opt = np.array([1, 2, 1, 2, 1, 2, 9, 1], dtype=np.int32)
    request = batch(n, strike=c.DoubleColumn(raw=strike.tobytes()), volatility=c.DoubleColumn(raw=vol.tobytes()),
                    option_type=c.Int32Column(raw=opt.tobytes()))
    response = stub.PriceBatch(request, timeout=5)
    status = np.frombuffer(response.status.raw, dtype="<i4")
    assert status.tolist() == [0, 0, 0, 3, 0, 3, 3, 0]
    assert response.error_count == 3
    got = {(e.row, e.field) for e in response.errors}
    assert got == {(3, "european.strike"), (5, "market.volatility"), (6, "european.option_type")}
    price = np.frombuffer(response.columns[0].values.raw)
    assert np.isnan(price[[3, 5, 6]]).all() and np.isfinite(np.delete(price, [3, 5, 6])).all()


def test_batch_unknown_measure_and_model(stub):
    request = batch()
    request.measures.append(77)
    expect_invalid(stub.PriceBatch, request, "measures[2]")
    request = batch()
    request.model = 9
    expect_invalid(stub.PriceBatch, request, "model")


def test_row_cap_is_resource_exhausted():
    running = start_server(max_rows=100, metrics_port=-1)
    try:
        with grpc.insecure_channel(running.address) as ch:
            stub = pricing_pb2_grpc.PricingServiceStub(ch)
            expect_invalid(stub.PriceBatch, batch(102), "rows", grpc.StatusCode.RESOURCE_EXHAUSTED)
            assert stub.PriceBatch(batch(100), timeout=5).rows == 100
    finally:
        running.stop(0)


def test_oversized_message_is_resource_exhausted():
    running = start_server(max_message_bytes=64 * 1024, metrics_port=-1)
    try:
        with grpc.insecure_channel(running.address) as ch:
            stub = pricing_pb2_grpc.PricingServiceStub(ch)
            with pytest.raises(grpc.RpcError) as info:
                stub.PriceBatch(batch(20_000), timeout=5)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert stub.PriceBatch(batch(1_000), timeout=5).rows == 1_000
            still_serving(ch, stub)
    finally:
        running.stop(0)


def test_implied_vol_of_a_model_without_one_is_invalid_not_internal(stub, channel):
    for method, request in (
        (stub.ImpliedVolatility, pb.ImpliedVolatilityRequest(
            model=c.MODEL_HESTON, price=5.0, market=pb.Market(spot=100.0),
            european=pb.EuropeanOption(option_type=1, strike=100.0, expiry=pb.Expiry(year_fraction=1.0)))),
        (stub.ImpliedVolatilityBatch, pb.ImpliedVolatilityBatchRequest(model=c.MODEL_HESTON)),
    ):
        with pytest.raises(grpc.RpcError) as e:
            method(request, timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "model" in e.value.details()
    still_serving(channel, stub)


# ------------------------------------------------------------------ every violation at once
def test_every_violation_of_a_trade_is_reported_together(stub):
    request = good_request()
    request.measures.extend([77, 99])
    request.engine = 42
    request.settings.paths = 0
    request.settings.max_step = NAN
    request.settings.tree_steps = 0
    request.european.option_type = 7
    request.european.expiry.dates.CopyFrom(pb.ExpiryDates(day_count=17, expiry_date=c.Date(year=2027, month=1, day=5)))
    err = expect_invalid(stub.Price, request, "engine")
    fields = {f for f, _ in violations(err)}
    assert fields >= {"measures[1]", "measures[2]", "engine", "settings.paths", "settings.max_step",
                      "settings.tree_steps", "european.option_type", "european.expiry.dates.day_count",
                      "european.expiry.dates.valuation_date"}, fields


def test_every_violation_of_a_batch_is_reported_together(stub):
    request = batch(strike=c.DoubleColumn(values=[100.0, 101.0, 102.0]))
    request.market.ClearField("volatility")
    request.output_encoding = 9
    request.threads = -1
    request.measures.append(77)
    request.settings.max_step = 0.0
    err = expect_invalid(stub.PriceBatch, request, "output_encoding")
    fields = {f for f, _ in violations(err)}
    assert fields >= {"european.strike", "market.volatility", "output_encoding", "threads", "measures[2]",
                      "settings.max_step"}, fields


def test_every_violation_of_an_implied_vol_request_is_reported_together(stub):
    request = good_request()
    iv = pb.ImpliedVolatilityRequest(model=request.model, european=request.european, market=request.market, price=5.0)
    iv.market.snapshot_id = "eod"
    iv.market.volatility = NAN
    iv.market.heston.v0 = 0.04
    err = expect_invalid(stub.ImpliedVolatility, iv, "market.volatility")
    assert {f for f, _ in violations(err)} >= {"market.snapshot_id", "market.volatility", "market.heston"}


def test_a_request_with_thousands_of_violations_gets_a_bounded_answer(channel, stub):
    request = good_request()
    request.measures.extend([1000 + i for i in range(5000)])
    err = expect_invalid(stub.Price, request, "measures[1]")
    found = violations(err)
    assert 10 < len(found) <= 101
    assert "more violation(s) not shown" in found[-1][1]
    assert len(err.details()) <= 1024
    still_serving(channel, stub)


# ------------------------------------------------------------------ overflow names an input
HESTON = dict(v0=0.04, kappa=1.0, theta=0.04, sigma=0.5, rho=-0.5)


def _heston(strike=100.0, **params):
    return pb.PriceRequest(model=c.MODEL_HESTON, european=pb.EuropeanOption(
        option_type=c.OPTION_TYPE_CALL, strike=strike, expiry=pb.Expiry(year_fraction=0.5)),
        market=pb.Market(spot=100.0, rate=0.05, heston=pb.HestonParameters(**{**HESTON, **params})))


@pytest.mark.parametrize("request_, field, shown", [
    (good_request(rate=1e308), "market.rate", "market.rate = 1e+308"),
    (pb.PriceRequest(model=1, european=pb.EuropeanOption(option_type=1, strike=100.0,
                                                         expiry=pb.Expiry(year_fraction=1e308)),
                     market=pb.Market(spot=100.0, rate=0.05, volatility=0.2)),
     "european.expiry.year_fraction", "european.expiry.year_fraction = 1e+308"),
    (_heston(sigma=1e6), "market.heston.sigma", "market.heston.sigma = 1000000.0"),
    (_heston(strike=1e-300), "european.strike", "european.strike = 1e-300"),
])
def test_an_overflow_names_the_rows_most_extreme_input_and_lists_them_all(stub, channel, request_, field, shown):
    """No input is out of its domain, the result overflowed: OUT_OF_RANGE, named by the input
    farthest from 1 in decades, every input of the trade listed as sent."""
    err = expect_invalid(stub.Price, request_, field, grpc.StatusCode.OUT_OF_RANGE)
    (got, text), = violations(err)
    assert got == field and "not finite" in text and shown in text and "market.spot = 100.0" in text
    assert ("market.volatility" in text) == (request_.model != c.MODEL_HESTON)  # (Heston reads v0, not a vol)
    still_serving(channel, stub)


def test_an_overflowing_row_names_its_most_extreme_input(stub):
    request = pb.PriceBatchRequest(model=1, european=pb.EuropeanOptionColumns(
        option_type=c.Int32Column(values=[1]), strike=c.DoubleColumn(values=[100.0]),
        time_to_expiry=c.DoubleColumn(values=[0.5])), market=pb.MarketColumns(
        spot=c.DoubleColumn(values=[100.0]), rate=c.DoubleColumn(values=[0.05, 1e308, 0.05]),
        volatility=c.DoubleColumn(values=[0.2])))
    out = stub.PriceBatch(request, timeout=10)
    assert [(e.row, e.code, e.field) for e in out.errors] == [(1, 11, "market.rate")]
    assert "market.rate = 1e+308" in out.errors[0].message and "european.strike = 100.0" in out.errors[0].message


def test_refused_batches_are_not_counted_as_batches_of_no_rows():
    """pricegrid_batch_rows observes the batches answered: a PriceBatch refused (here for its
    size, before it is read) used to add a 0-row batch."""
    running = start_server(max_message_bytes=1 << 16, metrics_port=-1)
    method = "/pricegrid.v1.PricingService/PriceBatch"
    try:
        with grpc.insecure_channel(running.address) as ch:
            stub = pricing_pb2_grpc.PricingServiceStub(ch)
            assert len(stub.PriceBatch(batch(4), timeout=5).columns) == 2
            with pytest.raises(grpc.RpcError) as info:
                ch.unary_unary(method)(b"\x00" * ((1 << 16) + 1), timeout=5)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        registry = running.observer.metrics.registry
        deadline = time.monotonic() + 5
        while (registry.get_sample_value("pricegrid_rpc_errors_total", {"method": method,
                                                                         "code": "RESOURCE_EXHAUSTED"}) or 0) < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert registry.get_sample_value("pricegrid_batch_rows_count", {"method": method}) == 1
        assert registry.get_sample_value("pricegrid_batch_rows_sum", {"method": method}) == 4
    finally:
        running.stop(0)
