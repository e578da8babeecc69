"""American options on a snapshot's cash dividends, through a real server: the binomial tree
engine prices them (escrowed-dividend model, american.pyx design note 4), the fixed-point
engine and the other products refuse them naming the field and the engine to use.

Tolerances: the service hands the tree kernel the snapshot's spot, each row's zero rate to
its expiry (and dividend curve's zero rate), and the underlying's dividends with ex-time > 0;
so against the kernel called directly with those numbers the price and Greeks are bit for
bit the same. The kernel's own accuracy against QuantLib is tests/ext/test_american_dividends.py.
"""

import datetime as dt

import grpc
import numpy as np
import pytest
from google.protobuf import timestamp_pb2

from pricegrid.ext import american as am
from pricegrid.server.domain.curves import Interpolation, ValueKind, YieldCurve
from pricegrid.server.pricers.curves import zero_rates
from pricegrid.v1 import common_pb2 as cpb
from pricegrid.v1 import market_pb2 as mpb
from pricegrid.v1 import market_pb2_grpc
from pricegrid.v1 import pricing_pb2 as pb
from tests.server.richerr import violations

RATE_TIMES = [30 / 365, 91 / 365, 182 / 365, 1.0, 2.0, 5.0]
RATES = [0.041, 0.0405, 0.0398, 0.0385, 0.0372, 0.0368]
DIV_TIMES = [0.5, 2.0]
DIVS = [0.011, 0.012]
# (a dividend already paid, ex-time <= 0, is refused at PutSnapshot: tests/server/test_rpc_market_limits.py)
CASH = [(45 / 365, 12.5), (136 / 365, 13.0), (227 / 365, 13.5), (318 / 365, 13.5)]
SPOT = 500.0
MEASURES = (2, 3, 4, 5, 6, 7)
TREE, FIXED_POINT = cpb.ENGINE_BINOMIAL_TREE, cpb.ENGINE_FIXED_POINT


def _snapshot():
    as_of = timestamp_pb2.Timestamp()
    as_of.FromDatetime(dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))
    zero, linear = mpb.CURVE_VALUE_KIND_ZERO_RATE, mpb.CURVE_INTERPOLATION_LINEAR_ZERO
    cash = [mpb.CashDividend(time=t, amount=a) for t, a in CASH]
    return mpb.MarketSnapshot(
        name="american-dividends", as_of=as_of, valuation_date=cpb.Date(year=2026, month=12, day=4),
        curves=[mpb.YieldCurve(id="USD-OIS", currency="USD", node_times=RATE_TIMES, values=RATES, value_kind=zero,
                               interpolation=linear),
                mpb.YieldCurve(id="STOCK-DIV", currency="USD", node_times=DIV_TIMES, values=DIVS, value_kind=zero,
                               interpolation=linear)],
        underlyings=[mpb.Underlying(id="STOCK", currency="USD", spot=SPOT, discount_curve="USD-OIS", dividends=cash),
                     mpb.Underlying(id="STOCKQ", currency="USD", spot=SPOT, discount_curve="USD-OIS",
                                    dividend_curve="STOCK-DIV", dividends=cash)],
    )


@pytest.fixture(scope="module")
def snapshot_id(channel):
    stub = market_pb2_grpc.MarketDataServiceStub(channel)
    return stub.PutSnapshot(mpb.PutSnapshotRequest(snapshot=_snapshot()), timeout=10).info.id


def _zero(times, values, t):
    curve = YieldCurve("c", "USD", "ACT_365F", np.array(times), np.array(values), ValueKind.ZERO_RATE,
                       Interpolation.LINEAR_ZERO)
    return zero_rates(curve, np.atleast_1d(np.asarray(t, dtype=np.float64)))[0]


def request(snapshot_id, underlying="STOCK", *, days=200, strike=480.0, put=True, engine=TREE, steps=0):
    r = pb.PriceRequest(model=1, measures=list(MEASURES), engine=engine,
                        american=pb.AmericanOption(option_type=2 if put else 1, strike=strike,
                                                   expiry=pb.Expiry(year_fraction=days / 365)),
                        market=pb.Market(snapshot_id=snapshot_id, underlying_id=underlying, volatility=0.27))
    if steps:
        r.settings.tree_steps = steps
    return r


def kernel(option_type, strike, t, rate, q, steps=801):
    """The tree kernel called directly with the snapshot's numbers: (k + 1, n)."""
    option_type, strike, t = (np.atleast_1d(np.asarray(x)) for x in (option_type, strike, t))
    n = max(len(option_type), len(strike), len(t))
    out, status = np.empty((1 + len(MEASURES), n)), np.empty(n, np.int32)
    live = [(tk, a) for tk, a in CASH if tk > 0]
    am.price_batch(option_type.astype(np.int32), strike.astype(np.float64), t.astype(np.float64), np.array([SPOT]),
                   np.ascontiguousarray(rate, dtype=np.float64), np.ascontiguousarray(q, dtype=np.float64),
                   np.array([0.27]), np.array((1,) + MEASURES, np.int32), out, status, 1, am.METHOD_TREE, 2, steps,
                   np.array([tk for tk, _ in live]), np.array([a for _, a in live]))
    assert not status.any()
    return out


@pytest.mark.parametrize("underlying", ["STOCK", "STOCKQ"])
def test_the_tree_prices_a_snapshots_cash_dividends_as_the_kernel_does(stub, snapshot_id, underlying):
    for days in (20, 45, 46, 100, 227, 300, 318, 700):
        for put in (True, False):
            t = days / 365
            rate = _zero(RATE_TIMES, RATES, t)
            q = _zero(DIV_TIMES, DIVS, t) if underlying == "STOCKQ" else np.zeros(1)
            got = stub.Price(request(snapshot_id, underlying, days=days, put=put), timeout=10)
            ref = kernel(2 if put else 1, 480.0, t, rate, q)[:, 0]
            g = got.greeks
            assert [got.price, g.delta, g.gamma, g.vega, g.theta, g.rho, g.dividend_rho] == ref.tolist(), (days, put)
            taken = [(tk, a) for tk, a in CASH if 0 < tk <= t]
            assert got.market == pb.MarketUsed(snapshot_id=snapshot_id, underlying_id=underlying,
                                               discount_curve="USD-OIS",
                                               dividend_curve="STOCK-DIV" if underlying == "STOCKQ" else "",
                                               dividends=len(taken))
            assert got.priced_by.engine == "leisen_reimer_american"
            # the forward the tree priced on: the spot less the dividends at the row's flat rate
            escrowed = SPOT - sum(a * np.exp(-rate[0] * tk) for tk, a in taken)
            assert got.inputs.forward == pytest.approx(escrowed * np.exp((rate[0] - q[0]) * t), rel=1e-14)
            assert got.inputs.discount_factor == pytest.approx(np.exp(-rate[0] * t), rel=1e-15)


def test_dividends_move_the_american_price_as_they_should(stub, snapshot_id):
    """Before the first live ex-date the dividends do not count; after it a put gains and a
    call loses against the same trade with no dividends (the kernel without them)."""
    early = stub.Price(request(snapshot_id, days=30), timeout=10)
    assert early.market.dividends == 0
    assert early.price == kernel(2, 480.0, 30 / 365, _zero(RATE_TIMES, RATES, 30 / 365), [0.0])[0, 0]
    t = 300 / 365
    rate = _zero(RATE_TIMES, RATES, t)
    out, status = np.empty((1, 2)), np.empty(2, np.int32)
    am.price_batch(np.array([2, 1], np.int32), np.array([480.0]), np.array([t]), np.array([SPOT]), rate,
                   np.zeros(1), np.array([0.27]), np.array([1], np.int32), out, status, 1, am.METHOD_TREE, 2, 801)
    put = stub.Price(request(snapshot_id, days=300, put=True), timeout=10).price
    call = stub.Price(request(snapshot_id, days=300, put=False), timeout=10).price
    assert put > out[0, 0] + 10 and call < out[0, 1] - 10  # about 37 of dividends before expiry


def test_tree_steps_reach_the_kernel(stub, snapshot_id):
    got = stub.Price(request(snapshot_id, days=300, steps=201), timeout=10)
    t = 300 / 365
    assert got.price == kernel(2, 480.0, t, _zero(RATE_TIMES, RATES, t), [0.0], steps=201)[0, 0]


def test_a_batch_of_american_options_on_the_snapshot(stub, snapshot_id):
    n = 300
    rng = np.random.default_rng(4)
    t = rng.integers(1, 3 * 365, n) / 365.0
    strike = rng.uniform(400, 600, n)
    option_type = rng.integers(1, 3, n).astype(np.int32)
    req = pb.PriceBatchRequest(model=1, measures=[1, 2, 3], engine=TREE)
    req.american.option_type.raw = option_type.astype("<i4").tobytes()
    req.american.strike.raw = strike.astype("<f8").tobytes()
    req.american.time_to_expiry.raw = t.astype("<f8").tobytes()
    req.market.snapshot_id, req.market.underlying_id = snapshot_id, "STOCK"
    req.market.volatility.values.append(0.27)
    out = stub.PriceBatch(req, timeout=60)
    assert out.error_count == 0 and out.market.dividends == 4 and out.market.underlying_id == "STOCK"
    ref = kernel(option_type, strike, t, _zero(RATE_TIMES, RATES, t), np.zeros(1))
    for j, column in enumerate(out.columns):
        assert np.array_equal(np.frombuffer(column.values.raw, dtype="<f8"), ref[j]), j


@pytest.mark.parametrize("engine", [FIXED_POINT, cpb.ENGINE_UNSPECIFIED])
def test_the_fixed_point_engine_refuses_cash_dividends_naming_the_tree(stub, snapshot_id, engine):
    with pytest.raises(grpc.RpcError) as e:
        stub.Price(request(snapshot_id, engine=engine), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = [f for f, _ in violations(e.value)]
    assert fields == ["market.underlying_id", "engine"], violations(e.value)
    assert "ENGINE_FIXED_POINT does not price cash dividends" in e.value.details()
    assert "ENGINE_BINOMIAL_TREE" in e.value.details()
    ok = request(snapshot_id, engine=engine, days=30)  # before the first live ex-date: nothing in the way
    assert stub.Price(ok, timeout=10).market.dividends == 0


def test_other_products_still_refuse_cash_dividends(stub, snapshot_id):
    r = pb.PriceRequest(model=1, barrier=pb.BarrierOption(barrier_type=1, option_type=1, strike=480.0, barrier=400.0,
                                                          expiry=pb.Expiry(year_fraction=0.5)),
                        market=pb.Market(snapshot_id=snapshot_id, underlying_id="STOCK", volatility=0.27))
    with pytest.raises(grpc.RpcError) as e:
        stub.Price(r, timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in violations(e.value)] == ["market.underlying_id"]
    assert "not yet for barrier options" in e.value.details()


def test_a_stream_names_the_fields_inside_the_message(stub, snapshot_id):
    replies = list(stub.PriceStream(iter([
        pb.PriceStreamRequest(correlation_id="tree", price=request(snapshot_id)),
        pb.PriceStreamRequest(correlation_id="fp", price=request(snapshot_id, engine=FIXED_POINT)),
    ]), timeout=10))
    assert replies[0].result.market.dividends == 2  # ex-dates 45 and 136 days before 200
    assert replies[1].error.field == "price.market.underlying_id" and "price.engine" in replies[1].error.message
