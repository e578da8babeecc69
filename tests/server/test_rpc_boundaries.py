"""Valid boundary inputs price instead of being refused (docs/validation.md, "Boundaries"):
a barrier equal to spot is touched (a knock-in is the European, a knock-out its rebate; a
one-touch pays, a no-touch is worthless), expiry today prices the payoff; the boundaries that
stay refused (zero volatility, zero strike) say why. Over RPC, against the same server's own
European engine (an identity: the kernels' own checks against QuantLib are in tests/ext)."""

import math

import grpc
import numpy as np
import pytest

from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import pricing_pb2 as pb

from .richerr import violations

MARKET = dict(spot=100.0, rate=0.03, dividend_yield=0.01, volatility=0.25)
GREEKS = [c.MEASURE_DELTA, c.MEASURE_GAMMA, c.MEASURE_VEGA, c.MEASURE_THETA, c.MEASURE_RHO]


def _european(stub, option_type, strike, t=0.75, **market):
    return stub.Price(pb.PriceRequest(
        model=c.MODEL_BLACK_SCHOLES_MERTON, measures=GREEKS, market=pb.Market(**{**MARKET, **market}),
        european=pb.EuropeanOption(option_type=option_type, strike=strike, expiry=pb.Expiry(year_fraction=t))),
        timeout=10)


@pytest.mark.parametrize("engine", [c.ENGINE_ANALYTIC, c.ENGINE_MONTE_CARLO])
@pytest.mark.parametrize("monitoring", [0.0, 1 / 52])
@pytest.mark.parametrize("barrier_type", [1, 2, 3, 4])
@pytest.mark.parametrize("option_type", [1, 2])
def test_a_barrier_at_spot_is_touched(stub, engine, monitoring, barrier_type, option_type):
    request = pb.PriceRequest(
        model=c.MODEL_BLACK_SCHOLES_MERTON, engine=engine, measures=GREEKS, market=pb.Market(**MARKET),
        barrier=pb.BarrierOption(barrier_type=barrier_type, option_type=option_type, strike=95.0, barrier=100.0,
                                 rebate=1.5, monitoring_interval=monitoring, expiry=pb.Expiry(year_fraction=0.75)),
        settings=pb.EngineSettings(paths=200_000, seed=11) if engine == c.ENGINE_MONTE_CARLO else None)
    got = stub.Price(request, timeout=30)
    if barrier_type in (2, 4):  # knock-out: its rebate, now; nothing moves it
        assert got.price == 1.5 and got.standard_error == 0.0
        assert [getattr(got.greeks, g) for g in ("delta", "gamma", "vega", "theta", "rho")] == [0.0] * 5
        return
    euro = _european(stub, option_type, 95.0)
    if engine == c.ENGINE_ANALYTIC:
        assert math.isclose(got.price, euro.price, rel_tol=1e-12)
        assert math.isclose(got.greeks.delta, euro.greeks.delta, rel_tol=1e-6, abs_tol=1e-9)
        assert math.isclose(got.greeks.vega, euro.greeks.vega, rel_tol=1e-6)
    else:
        assert abs(got.price - euro.price) <= 4 * got.standard_error


def test_a_barrier_beyond_spot_is_still_refused(stub):
    request = pb.PriceRequest(
        model=1, market=pb.Market(**MARKET),
        barrier=pb.BarrierOption(barrier_type=2, option_type=1, strike=95.0, barrier=100.5,
                                 expiry=pb.Expiry(year_fraction=0.75)))
    with pytest.raises(grpc.RpcError) as info:
        stub.Price(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    (field, text), *_ = violations(info.value)
    assert field == "barrier.barrier" and "touched" in text


@pytest.mark.parametrize("at", ["lower_barrier", "upper_barrier"])
def test_a_double_barrier_at_spot_is_touched(stub, at):
    terms = dict(option_type=1, strike=95.0, lower_barrier=80.0, upper_barrier=120.0,
                 expiry=pb.Expiry(year_fraction=0.75))
    terms[at] = 100.0
    out = stub.Price(pb.PriceRequest(model=1, market=pb.Market(**MARKET), measures=GREEKS,
                                     double_barrier=pb.DoubleBarrierOption(knock_type=2, **terms)), timeout=10)
    assert out.price == 0.0
    kin = stub.Price(pb.PriceRequest(model=1, market=pb.Market(**MARKET), measures=GREEKS,
                                     double_barrier=pb.DoubleBarrierOption(knock_type=1, **terms)), timeout=10)
    assert math.isclose(kin.price, _european(stub, 1, 95.0).price, rel_tol=1e-12)


@pytest.mark.parametrize("touch_type, payment, expected", [
    (c.TOUCH_TYPE_ONE_TOUCH, c.TOUCH_PAYMENT_AT_HIT, lambda q, df: q),
    (c.TOUCH_TYPE_ONE_TOUCH, c.TOUCH_PAYMENT_AT_EXPIRY, lambda q, df: q * df),
    (c.TOUCH_TYPE_NO_TOUCH, c.TOUCH_PAYMENT_AT_EXPIRY, lambda q, df: 0.0),
])
def test_a_touch_at_spot_is_touched(stub, touch_type, payment, expected):
    for direction in (c.BARRIER_DIRECTION_DOWN, c.BARRIER_DIRECTION_UP):
        got = stub.Price(pb.PriceRequest(model=1, market=pb.Market(**MARKET), touch=pb.TouchOption(
            touch_type=touch_type, direction=direction, payment=payment, cash=2.0, barrier=100.0,
            expiry=pb.Expiry(year_fraction=0.75))), timeout=10)
        assert math.isclose(got.price, expected(2.0, math.exp(-0.03 * 0.75)), rel_tol=1e-15, abs_tol=0.0)


def test_a_batch_prices_touched_rows_beside_live_ones(stub):
    barrier = np.array([90.0, 100.0, 100.0, 110.0])
    types = np.array([2, 2, 1, 4], dtype=np.int32)
    request = pb.PriceBatchRequest(
        model=1, barrier=pb.BarrierOptionColumns(
            barrier_type=c.Int32Column(raw=types.tobytes()), option_type=c.Int32Column(values=[1]),
            strike=c.DoubleColumn(values=[95.0]), time_to_expiry=c.DoubleColumn(values=[0.75]),
            barrier=c.DoubleColumn(raw=barrier.tobytes()), rebate=c.DoubleColumn(values=[1.5])),
        market=pb.MarketColumns(spot=c.DoubleColumn(values=[100.0]), rate=c.DoubleColumn(values=[0.03]),
                                dividend_yield=c.DoubleColumn(values=[0.01]), volatility=c.DoubleColumn(values=[0.25])))
    response = stub.PriceBatch(request, timeout=10)
    assert response.error_count == 0
    price = np.frombuffer(response.columns[0].values.raw, "<f8")
    assert price[1] == 1.5 and math.isclose(price[2], _european(stub, 1, 95.0).price, rel_tol=1e-12)
    assert np.isfinite(price).all() and price[0] > 1.5 and 0.0 < price[3] < price[0]


def test_expiry_today_prices_every_product_at_its_payoff(stub):
    """T = 0 is valid for every product (the payoff now), checked on a European and a barrier."""
    euro = _european(stub, 1, 95.0, t=0.0)
    assert euro.price == 5.0 and euro.greeks.delta == 1.0 and euro.greeks.gamma == 0.0
    out = stub.Price(pb.PriceRequest(model=1, market=pb.Market(**MARKET), barrier=pb.BarrierOption(
        barrier_type=2, option_type=1, strike=95.0, barrier=90.0, rebate=1.0, expiry=pb.Expiry(year_fraction=0.0))),
        timeout=10)
    assert out.price == 5.0


@pytest.mark.parametrize("field, value", [("volatility", 0.0), ("strike", 0.0)])
def test_zero_volatility_and_zero_strike_stay_refused_and_say_so(stub, field, value):
    request = pb.PriceRequest(model=1, market=pb.Market(**MARKET), european=pb.EuropeanOption(
        option_type=1, strike=95.0, expiry=pb.Expiry(year_fraction=0.75)))
    target = request.market if field == "volatility" else request.european
    setattr(target, field, value)
    with pytest.raises(grpc.RpcError) as info:
        stub.Price(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    path = "market.volatility" if field == "volatility" else "european.strike"
    assert any(f == path and "> 0" in t for f, t in violations(info.value))


# The contract: a Heston call at the money-ish strike 100 on spot 100.
HESTON = dict(v0=0.04, kappa=1.5, theta=0.04, sigma=0.5, rho=-0.7)
ALL_GREEKS = [c.MEASURE_DELTA, c.MEASURE_GAMMA, c.MEASURE_VEGA, c.MEASURE_THETA, c.MEASURE_RHO,
              c.MEASURE_DIVIDEND_RHO, c.MEASURE_VANNA, c.MEASURE_VOLGA, c.MEASURE_CHARM]
GREEK_NAMES = ("delta", "gamma", "vega", "theta", "rho", "dividend_rho", "vanna", "volga", "charm")
SHORT = [1e-4, 1e-8, 1e-9, 3e-10, float(np.nextafter(1e-10, 1.0)), 1e-10, 1e-12, 1e-13, 1e-16, 1e-300, 0.0]


def _heston_price(stub, t):
    return stub.Price(pb.PriceRequest(
        model=c.MODEL_HESTON, measures=ALL_GREEKS,
        european=pb.EuropeanOption(option_type=c.OPTION_TYPE_CALL, strike=100.0, expiry=pb.Expiry(year_fraction=t)),
        market=pb.Market(spot=100.0, rate=0.03, heston=pb.HestonParameters(**HESTON))), timeout=10)


def test_heston_at_tiny_maturities_prices_with_finite_greeks(stub):
    """The report: expiry 1e-9 priced, 1e-10 and 1e-12 came back OUT_OF_RANGE "not finite
    (overflow)", 0 priced. Every maturity from 1e-4 down to 1e-300 now prices, at the money
    close to F s n(0) (s^2 = v0 T; the model's correction is of order T), with every Greek
    finite; T = 0 is the intrinsic value (tests/ext/test_heston_kernel.py checks the numbers
    against QuantLib and the small-time expansion)."""
    for t in SHORT:
        got = _heston_price(stub, t)
        assert all(math.isfinite(getattr(got.greeks, name)) for name in GREEK_NAMES), t
        assert got.priced_by.engine == "analytic_heston"
        if t >= 1e-13:
            s = math.sqrt(0.04 * t)
            assert math.isclose(got.price, 100.0 * s / math.sqrt(2 * math.pi), rel_tol=1e-2), (t, got.price)
            assert 0.5 < got.greeks.delta < 0.52 and got.greeks.gamma > 0.0 and got.greeks.theta < 0.0
    assert _heston_price(stub, 0.0).price == 0.0


def test_heston_at_tiny_maturities_one_trade_equals_its_batch_row(stub):
    """PriceBatch and Price meet the same kernel: each maturity (its own parameter group in
    the batch) gives the one-trade result bit for bit, price and every Greek."""
    request = pb.PriceBatchRequest(
        model=c.MODEL_HESTON, measures=[c.MEASURE_PRICE, *ALL_GREEKS], output_encoding=c.ENCODING_RAW,
        european=pb.EuropeanOptionColumns(option_type=c.Int32Column(values=[c.OPTION_TYPE_CALL]),
                                          strike=c.DoubleColumn(values=[100.0]),
                                          time_to_expiry=c.DoubleColumn(values=SHORT)),
        market=pb.MarketColumns(spot=c.DoubleColumn(values=[100.0]), rate=c.DoubleColumn(values=[0.03]),
                                heston=pb.HestonColumns(**{k: c.DoubleColumn(values=[v]) for k, v in HESTON.items()})))
    response = stub.PriceBatch(request, timeout=10)
    assert response.rows == len(SHORT) and response.error_count == 0, response.errors
    columns = [np.frombuffer(col.values.raw, "<f8") for col in response.columns]
    for i, t in enumerate(SHORT):
        one = _heston_price(stub, t)
        assert columns[0][i] == one.price, t
        for j, name in enumerate(GREEK_NAMES, start=1):
            assert columns[j][i] == getattr(one.greeks, name), (t, name)
