"""PriceBatch / ImpliedVolatilityBatch: columnar in and out, only the measures asked for,
packed and raw encodings, broadcast, dates, chunking, deadlines and cancellation."""

import time

import grpc
import numpy as np
import pytest

from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import pricing_pb2 as pb
from pricegrid.v1 import pricing_pb2_grpc

from tests.conftest import start_server

ALL = [c.MEASURE_PRICE, c.MEASURE_DELTA, c.MEASURE_GAMMA, c.MEASURE_VEGA, c.MEASURE_THETA, c.MEASURE_RHO,
       c.MEASURE_DIVIDEND_RHO, c.MEASURE_VANNA, c.MEASURE_VOLGA, c.MEASURE_CHARM]


def portfolio(n, seed=0):
    rng = np.random.default_rng(seed)
    return dict(
        option_type=rng.integers(1, 3, n).astype(np.int32),
        strike=rng.uniform(50, 150, n),
        time_to_expiry=rng.uniform(0.01, 5, n),
        spot=np.full(n, 100.0),
        rate=rng.uniform(-0.01, 0.06, n),
        dividend_yield=rng.uniform(0, 0.04, n),
        volatility=rng.uniform(0.05, 0.9, n),
    )


def raw(x):
    return c.DoubleColumn(raw=np.ascontiguousarray(x, "<f8").tobytes())


def packed(x):
    return c.DoubleColumn(values=np.asarray(x, float).tolist())


def request(p, measures=(c.MEASURE_PRICE,), enc=raw, **kw):
    return pb.PriceBatchRequest(
        model=c.MODEL_BLACK_SCHOLES_MERTON,
        measures=list(measures),
        european=pb.EuropeanOptionColumns(
            option_type=c.Int32Column(raw=p["option_type"].astype("<i4").tobytes()) if enc is raw
            else c.Int32Column(values=p["option_type"].tolist()),
            strike=enc(p["strike"]),
            time_to_expiry=enc(p["time_to_expiry"]),
        ),
        market=pb.MarketColumns(spot=enc(p["spot"]), rate=enc(p["rate"]), dividend_yield=enc(p["dividend_yield"]),
                                volatility=enc(p["volatility"])),
        **kw,
    )


def col(column):
    return np.frombuffer(column.raw, "<f8") if column.raw else np.array(column.values)


def single(stub, p, i, measures):
    return stub.Price(
        pb.PriceRequest(
            model=c.MODEL_BLACK_SCHOLES_MERTON,
            european=pb.EuropeanOption(option_type=int(p["option_type"][i]), strike=p["strike"][i],
                                       expiry=pb.Expiry(year_fraction=p["time_to_expiry"][i])),
            market=pb.Market(spot=p["spot"][i], rate=p["rate"][i], dividend_yield=p["dividend_yield"][i],
                             volatility=p["volatility"][i]),
            measures=measures,
        ),
        timeout=5,
    )


def test_batch_equals_single_trade_path(stub):
    p = portfolio(64)
    response = stub.PriceBatch(request(p, ALL), timeout=10)
    assert [m.measure for m in response.columns] == ALL
    assert response.rows == 64 and response.error_count == 0
    assert not response.HasField("status")  # every row OK: no status column
    # The batch runs glibc's vector math (libmvec), the single trade its scalar libm: the same
    # formula, rounded differently in the last bits.
    for i in range(0, 64, 7):
        one = single(stub, p, i, ALL[1:])
        assert col(response.columns[0].values)[i] == pytest.approx(one.price, rel=1e-13, abs=1e-13)
        for j, name in enumerate(["delta", "gamma", "vega", "theta", "rho", "dividend_rho", "vanna", "volga", "charm"], 1):
            assert col(response.columns[j].values)[i] == pytest.approx(getattr(one.greeks, name), rel=1e-12, abs=1e-13), name


def test_only_requested_measures_in_request_order(stub):
    p = portfolio(10)
    response = stub.PriceBatch(request(p, [c.MEASURE_VEGA, c.MEASURE_PRICE]), timeout=5)
    assert [m.measure for m in response.columns] == [c.MEASURE_VEGA, c.MEASURE_PRICE]
    full = stub.PriceBatch(request(p, ALL), timeout=5)
    np.testing.assert_array_equal(col(response.columns[0].values), col(full.columns[3].values))


def test_packed_and_raw_agree_both_ways(stub):
    p = portfolio(50, seed=3)
    a = stub.PriceBatch(request(p, ALL, enc=raw), timeout=5)
    b = stub.PriceBatch(request(p, ALL, enc=packed, output_encoding=c.ENCODING_PACKED), timeout=5)
    assert not b.columns[0].values.raw and len(b.columns[0].values.values) == 50
    for x, y in zip(a.columns, b.columns):
        np.testing.assert_array_equal(col(x.values), col(y.values))
    assert not b.HasField("status") and b.error_count == 0


def test_broadcast_equals_tiled(stub):
    p = portfolio(30, seed=4)
    tiled = stub.PriceBatch(request(p, ALL), timeout=5)
    q = dict(p, spot=p["spot"][:1])
    r = request(q, ALL)
    r.market.rate.CopyFrom(raw(p["rate"]))
    broadcast = stub.PriceBatch(r, timeout=5)
    for x, y in zip(tiled.columns, broadcast.columns):
        np.testing.assert_array_equal(col(x.values), col(y.values))


def test_effective_inputs_echoed_or_omitted(stub):
    p = portfolio(20, seed=5)
    r = stub.PriceBatch(request(p), timeout=5)
    np.testing.assert_allclose(col(r.inputs.forward), 100 * np.exp((p["rate"] - p["dividend_yield"]) * p["time_to_expiry"]),
                               rtol=1e-15)
    np.testing.assert_allclose(col(r.inputs.discount_factor), np.exp(-p["rate"] * p["time_to_expiry"]), rtol=1e-15)
    np.testing.assert_array_equal(col(r.inputs.volatility), p["volatility"])
    np.testing.assert_array_equal(col(r.inputs.time_to_expiry), p["time_to_expiry"])
    assert r.priced_by.model == "black_scholes_merton" and r.stats.threads >= 1
    omitted = stub.PriceBatch(request(p, omit_effective_inputs=True), timeout=5)
    assert not omitted.HasField("inputs")


def test_expiry_dates_column(stub):
    valuation = np.datetime64("2026-11-24")
    expiries = valuation + np.array([1, 30, 365, 3650])
    p = portfolio(4, seed=6)
    r = request(p)
    r.european.ClearField("time_to_expiry")
    r.european.expiry_date.CopyFrom(c.Int32Column(raw=expiries.astype("datetime64[D]").astype("<i4").tobytes()))
    r.european.valuation_date.CopyFrom(c.Date(year=2026, month=11, day=24))
    r.european.day_count = c.DAY_COUNT_ACT_365F
    out = stub.PriceBatch(r, timeout=5)
    np.testing.assert_allclose(col(out.inputs.time_to_expiry), np.array([1, 30, 365, 3650]) / 365.0, rtol=1e-15)


def test_empty_batch(stub):
    p = portfolio(0)
    response = stub.PriceBatch(request(p), timeout=5)
    assert response.rows == 0 and len(col(response.columns[0].values)) == 0


def test_chunked_equals_unchunked(stub):
    p = portfolio(5000, seed=7)
    running = start_server(chunk_rows=333, metrics_port=-1)
    try:
        with grpc.insecure_channel(running.address) as ch:
            chunked = pricing_pb2_grpc.PricingServiceStub(ch).PriceBatch(request(p, ALL), timeout=10)
    finally:
        running.stop(0)
    whole = stub.PriceBatch(request(p, ALL), timeout=10)
    assert chunked.stats.chunks == 16 and whole.stats.chunks == 1
    for x, y in zip(whole.columns, chunked.columns):  # chunk edges move rows between libmvec and libm
        np.testing.assert_allclose(col(x.values), col(y.values), rtol=1e-13, atol=1e-13)


def test_implied_vol_batch_round_trip(stub):
    p = portfolio(500, seed=8)
    priced = stub.PriceBatch(request(p, [c.MEASURE_PRICE, c.MEASURE_VEGA]), timeout=5)
    prices, vega = col(priced.columns[0].values), col(priced.columns[1].values)
    r = pb.ImpliedVolatilityBatchRequest(
        model=c.MODEL_BLACK_SCHOLES_MERTON,
        european=request(p).european,
        market=pb.MarketColumns(spot=raw(p["spot"]), rate=raw(p["rate"]), dividend_yield=raw(p["dividend_yield"])),
        price=raw(prices),
    )
    out = stub.ImpliedVolatilityBatch(r, timeout=5)
    vol = col(out.volatility)
    assert out.error_count == 0 and not out.HasField("status")
    # Where a 1e-9 relative change of vol moves the price by many ulps, the vol comes back to 1e-9;
    # elsewhere (deep in the money, price = intrinsic to the last bit) any vol reproducing the
    # price is right, and re-pricing with it must give the price back.
    identifiable = vega * p["volatility"] > 1e-4 * prices
    assert identifiable.mean() > 0.9
    np.testing.assert_allclose(vol[identifiable], p["volatility"][identifiable], rtol=1e-9)
    positive = vol > 0
    again = col(stub.PriceBatch(request(dict(p, volatility=np.where(positive, vol, 0.1))), timeout=5).columns[0].values)
    np.testing.assert_allclose(again[positive], prices[positive], rtol=1e-12, atol=1e-12)


def metric(running, name, **labels):
    value = running.observer.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def test_server_budget_stops_a_batch_without_deadline():
    running = start_server(chunk_rows=100, default_deadline_s=0.005, metrics_port=-1)
    try:
        with grpc.insecure_channel(running.address, options=[("grpc.max_receive_message_length", -1)]) as ch:
            stub = pricing_pb2_grpc.PricingServiceStub(ch)
            with pytest.raises(grpc.RpcError) as info:
                stub.PriceBatch(request(portfolio(200_000), ALL))  # no client deadline
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "between chunks" in info.value.details()
            assert stub.PriceBatch(request(portfolio(10)), timeout=5).rows == 10
    finally:
        running.stop(0)


def test_cancelled_batch_stops_computing():
    running = start_server(chunk_rows=10, metrics_port=-1)  # 100,000 chunks: seconds of work
    try:
        with grpc.insecure_channel(running.address, options=[("grpc.max_receive_message_length", -1)]) as ch:
            stub = pricing_pb2_grpc.PricingServiceStub(ch)
            r = request(portfolio(1), ALL)  # one row of everything, broadcast against a long strike column
            r.european.strike.CopyFrom(raw(np.linspace(50, 150, 1_000_000)))
            future = stub.PriceBatch.future(r, timeout=60)
            method = "/pricegrid.v1.PricingService/PriceBatch"
            deadline = time.monotonic() + 20
            while metric(running, "pricegrid_rpc_in_flight", method=method) < 1 and time.monotonic() < deadline:
                time.sleep(0.01)  # until the server is computing the batch
            assert metric(running, "pricegrid_rpc_in_flight", method=method) == 1
            assert future.cancel()
            labels = dict(method=method, code="CANCELLED")
            deadline = time.monotonic() + 20
            while metric(running, "pricegrid_rpc_duration_seconds_count", **labels) < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert metric(running, "pricegrid_rpc_duration_seconds_count", **labels) == 1
            assert metric(running, "pricegrid_rpc_in_flight", method=method) == 0
    finally:
        running.stop(0)
