"""Pricing against a market snapshot held by the server, through Price, PriceBatch and a
stream, against QuantLib with the same term structures and against the same trades priced
with the equivalent inline numbers.

Tolerances: the snapshot path hands the kernel r = the curve's zero rate at the expiry and
q = the dividend curve's, so against the same trade priced inline with those numbers the
price is bit for bit the same. Against QuantLib (ZeroCurve, linear in the zero rate,
continuous compounding, ACT/365F with expiries on whole days so that times are exact;
AnalyticDividendEuropeanEngine for cash dividends, the escrowed model) we allow 1e-12
relative: the two evaluate the same formulas in a different order.
"""

import datetime as dt
import math

import grpc
import numpy as np
import pytest
import QuantLib as ql
from google.protobuf import timestamp_pb2

from pricegrid.server.domain.curves import Interpolation, ValueKind, YieldCurve
from pricegrid.server.pricers.curves import zero_rates
from pricegrid.v1 import common_pb2 as cpb
from pricegrid.v1 import market_pb2 as mpb
from pricegrid.v1 import market_pb2_grpc
from pricegrid.v1 import pricing_pb2 as pb
from tests.server.richerr import violations

TODAY = dt.date(2026, 12, 4)
RATE_TIMES = [30 / 365, 91 / 365, 182 / 365, 1.0, 2.0, 5.0]
RATES = [0.041, 0.0405, 0.0398, 0.0385, 0.0372, 0.0368]
DIV_TIMES = [1.0, 3.0]
DIVS = [0.013, 0.0142]
CASH = [(45 / 365, 12.5), (136 / 365, 13.0), (227 / 365, 13.5)]


def _snapshot():
    as_of = timestamp_pb2.Timestamp()
    as_of.FromDatetime(dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))
    zero = mpb.CURVE_VALUE_KIND_ZERO_RATE
    linear = mpb.CURVE_INTERPOLATION_LINEAR_ZERO
    return mpb.MarketSnapshot(
        name="snapshot-pricing", as_of=as_of, valuation_date=cpb.Date(year=2026, month=12, day=4),
        curves=[mpb.YieldCurve(id="USD-OIS", currency="USD", node_times=RATE_TIMES, values=RATES, value_kind=zero,
                               interpolation=linear),
                mpb.YieldCurve(id="SPX-DIV", currency="USD", node_times=DIV_TIMES, values=DIVS, value_kind=zero,
                               interpolation=linear),
                mpb.YieldCurve(id="EUR-ESTR", currency="EUR", node_times=[0.5, 1, 3], values=[0.019, 0.0195, 0.021],
                               value_kind=zero, interpolation=linear)],
        underlyings=[mpb.Underlying(id="SPX", currency="USD", spot=6000.0, discount_curve="USD-OIS",
                                    dividend_curve="SPX-DIV"),
                     mpb.Underlying(id="STOCK", currency="USD", spot=500.0, discount_curve="USD-OIS",
                                    dividends=[mpb.CashDividend(time=t, amount=a) for t, a in CASH]),
                     mpb.Underlying(id="EUA-DEC27", currency="EUR", futures_price=78.4, discount_curve="EUR-ESTR")],
    )


@pytest.fixture(scope="module")
def snapshot_id(channel):
    stub = market_pb2_grpc.MarketDataServiceStub(channel)
    return stub.PutSnapshot(mpb.PutSnapshotRequest(snapshot=_snapshot()), timeout=10).info.id


def _curve(times, values):
    return YieldCurve("c", "USD", "ACT_365F", np.array(times), np.array(values), ValueKind.ZERO_RATE,
                      Interpolation.LINEAR_ZERO)


def request(snapshot_id, underlying="SPX", *, model=1, days=200, strike=6100.0, put=False, measures=(2, 3, 4, 5, 6)):
    return pb.PriceRequest(
        model=model, measures=list(measures),
        european=pb.EuropeanOption(option_type=2 if put else 1, strike=strike,
                                   expiry=pb.Expiry(year_fraction=days / 365)),
        market=pb.Market(snapshot_id=snapshot_id, underlying_id=underlying, volatility=0.21),
    )


def test_a_trade_on_a_snapshot_is_the_trade_with_the_curves_numbers_inline(stub, snapshot_id):
    for days in (0, 1, 30, 200, 400, 2000):
        r = stub.Price(request(snapshot_id, days=days), timeout=10)
        t = days / 365
        rate = zero_rates(_curve(RATE_TIMES, RATES), [t])[0][0]
        q = zero_rates(_curve(DIV_TIMES, DIVS), [t])[0][0]
        inline = pb.PriceRequest(model=1, measures=[2, 3, 4, 5, 6],
                                 european=pb.EuropeanOption(option_type=1, strike=6100.0,
                                                            expiry=pb.Expiry(year_fraction=t)),
                                 market=pb.Market(spot=6000.0, rate=rate, dividend_yield=q, volatility=0.21))
        ref = stub.Price(inline, timeout=10)
        assert r.price == ref.price and r.greeks == ref.greeks and r.inputs == ref.inputs  # bit for bit
        assert r.market == pb.MarketUsed(snapshot_id=snapshot_id, underlying_id="SPX", discount_curve="USD-OIS",
                                         dividend_curve="SPX-DIV")
        assert not ref.HasField("market")


def _ql_zero_curve(today, times, rates):
    dc = ql.Actual365Fixed()
    dates = [today] + [today + int(round(t * 365)) for t in times]
    return ql.ZeroCurve(dates, [rates[0]] + list(rates), dc, ql.NullCalendar(), ql.Linear(), ql.Continuous)


def test_against_quantlib_with_the_same_term_structures(stub, snapshot_id):
    today = ql.Date(4, 12, 2026)
    ql.Settings.instance().evaluationDate = today
    rates = ql.YieldTermStructureHandle(_ql_zero_curve(today, RATE_TIMES, RATES))
    divs = ql.YieldTermStructureHandle(_ql_zero_curve(today, DIV_TIMES, DIVS))
    for curve in (rates, divs):
        curve.enableExtrapolation()
    vol = ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), 0.21, ql.Actual365Fixed()))
    process = ql.BlackScholesMertonProcess(ql.QuoteHandle(ql.SimpleQuote(6000.0)), divs, rates, vol)
    rng = np.random.default_rng(5)
    for _ in range(200):
        days = int(rng.integers(1, 3 * 365))  # inside both curves' nodes (extrapolations differ: see curves.pyx)
        strike = float(rng.uniform(4000, 8000))
        put = bool(rng.integers(0, 2))
        option = ql.VanillaOption(ql.PlainVanillaPayoff(ql.Option.Put if put else ql.Option.Call, strike),
                                  ql.EuropeanExercise(today + days))
        option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
        r = stub.Price(request(snapshot_id, days=days, strike=strike, put=put, measures=(2, 3)), timeout=10)
        assert r.price == pytest.approx(option.NPV(), rel=1e-12, abs=1e-10)
        assert r.greeks.delta == pytest.approx(option.delta(), rel=1e-11, abs=1e-12)
        assert r.greeks.gamma == pytest.approx(option.gamma(), rel=1e-11, abs=1e-14)


def test_cash_dividends_escrowed_against_quantlib(stub, snapshot_id):
    today = ql.Date(4, 12, 2026)
    ql.Settings.instance().evaluationDate = today
    rates = ql.YieldTermStructureHandle(_ql_zero_curve(today, RATE_TIMES, RATES))
    rates.enableExtrapolation()
    flat = ql.YieldTermStructureHandle(ql.FlatForward(today, 0.0, ql.Actual365Fixed()))
    vol = ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), 0.21, ql.Actual365Fixed()))
    process = ql.BlackScholesMertonProcess(ql.QuoteHandle(ql.SimpleQuote(500.0)), flat, rates, vol)
    dividends = ql.DividendVector([today + int(round(t * 365)) for t, _ in CASH], [a for _, a in CASH])
    for days in (20, 45, 46, 100, 136, 200, 227, 300, 700):
        for put in (False, True):
            option = ql.VanillaOption(ql.PlainVanillaPayoff(ql.Option.Put if put else ql.Option.Call, 480.0),
                                      ql.EuropeanExercise(today + days))
            option.setPricingEngine(ql.AnalyticDividendEuropeanEngine(process, dividends))
            r = stub.Price(request(snapshot_id, "STOCK", days=days, strike=480.0, put=put, measures=(2,)), timeout=10)
            assert r.price == pytest.approx(option.NPV(), rel=1e-12), (days, put)
            assert r.market.dividends == sum(1 for t, _ in CASH if t * 365 <= days)


def test_futures_options_under_black_76(stub, snapshot_id):
    r = stub.Price(request(snapshot_id, "EUA-DEC27", model=2, strike=80.0, days=365), timeout=10)
    assert r.inputs.forward == 78.4 and r.market.discount_curve == "EUR-ESTR"
    assert r.inputs.discount_factor == pytest.approx(np.exp(-0.0195), rel=1e-15)


@pytest.mark.parametrize(
    "mutate, field, code",
    [
        (lambda r: setattr(r.market, "snapshot_id", "0" * 32), "market.snapshot_id", grpc.StatusCode.NOT_FOUND),
        (lambda r: setattr(r.market, "underlying_id", "NDX"), "market.underlying_id", grpc.StatusCode.NOT_FOUND),
        (lambda r: setattr(r.market, "underlying_id", ""), "market.underlying_id", grpc.StatusCode.INVALID_ARGUMENT),
        (lambda r: setattr(r.market, "underlying_id", "EUA-DEC27"), "market.underlying_id",
         grpc.StatusCode.INVALID_ARGUMENT),  # a futures price under BSM
        (lambda r: setattr(r.market, "spot", 100.0), "market.spot", grpc.StatusCode.INVALID_ARGUMENT),
        (lambda r: setattr(r.market, "rate", 0.01), "market.rate", grpc.StatusCode.INVALID_ARGUMENT),
        (lambda r: setattr(r.market, "volatility", -0.2), "market.volatility", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_bad_references_name_the_field(stub, snapshot_id, mutate, field, code):
    r = request(snapshot_id)
    mutate(r)
    with pytest.raises(grpc.RpcError) as e:
        stub.Price(r, timeout=10)
    assert e.value.code() == code and field in [f for f, _ in violations(e.value)], violations(e.value)
    assert stub.Price(request(snapshot_id), timeout=10).price > 0  # and the server goes on


_SPOTS = {"SPX": 6000.0, "STOCK": 500.0, "EUA-DEC27": 78.4}  # (the snapshot's own: _snapshot())
_HESTON = pb.HestonParameters(v0=0.04, kappa=1.5, theta=0.04, sigma=0.5, rho=-0.7)
#: (model, underlying, engine): analytic and Monte Carlo, spot and futures, Heston (inline parameters)
_LOOKBACK_CASES = [(1, "SPX", c) for c in (cpb.ENGINE_ANALYTIC, cpb.ENGINE_MONTE_CARLO)] + [
    (2, "EUA-DEC27", cpb.ENGINE_ANALYTIC), (2, "EUA-DEC27", cpb.ENGINE_MONTE_CARLO),
    (4, "SPX", cpb.ENGINE_MONTE_CARLO), (1, "STOCK", cpb.ENGINE_ANALYTIC)]


def _lookback_market(snapshot_id, model, underlying):
    m = pb.Market(snapshot_id=snapshot_id, underlying_id=underlying)
    if model == 4:
        m.heston.CopyFrom(_HESTON)
    else:
        m.volatility = 0.2
    return m


def _details(reply):
    return [(d.measure, d.value, d.standard_error) for d in reply.details], reply.inputs, reply.market


@pytest.mark.parametrize("model,underlying,engine", _LOOKBACK_CASES)
def test_a_lookbacks_unset_extremes_on_a_snapshot_are_its_spot(stub, snapshot_id, model, underlying, engine):
    """Unset running extremes mean a new trade: the spot, on a snapshot the snapshot's (the
    traded level: STOCK's spot before its cash dividends come off), the same bits as the
    trade with both set to it, or one set and the other left to it."""
    spot = _SPOTS[underlying]
    settings = pb.EngineSettings(paths=4096, seed=3) if engine == cpb.ENGINE_MONTE_CARLO else None
    days = 30 if underlying == "STOCK" else 200  # (STOCK: before its first cash dividend)
    for strike_type, option_type in ((1, 1), (1, 2), (2, 1), (2, 2)):
        option = pb.LookbackOption(strike_type=strike_type, option_type=option_type,
                                   strike=spot * 1.02 if strike_type == 2 else 0.0,
                                   expiry=pb.Expiry(year_fraction=days / 365))
        r = pb.PriceRequest(model=model, engine=engine, lookback=option, measures=[2, 3, 4, 5],
                            market=_lookback_market(snapshot_id, model, underlying), settings=settings)
        got = _details(stub.Price(r, timeout=30))
        assert got[2].underlying_id == underlying and all(math.isfinite(v) for _, v, _ in got[0])
        for lo, hi in ((spot, spot), (spot, None), (None, spot)):
            explicit = pb.PriceRequest()
            explicit.CopyFrom(r)
            if lo is not None:
                explicit.lookback.running_minimum = lo
            if hi is not None:
                explicit.lookback.running_maximum = hi
            assert _details(stub.Price(explicit, timeout=30)) == got, (strike_type, option_type, lo, hi)
        # and extremes away from the spot are read: not the same trade
        r.lookback.running_minimum, r.lookback.running_maximum = spot * 0.9, spot * 1.1
        assert _details(stub.Price(r, timeout=30))[0] != got[0]


@pytest.mark.parametrize("model,underlying,engine", _LOOKBACK_CASES)
def test_a_lookback_batchs_unset_extreme_columns_on_a_snapshot_are_its_spot(stub, snapshot_id, model, underlying,
                                                                             engine):
    """A column left unset is every row's spot (the snapshot's); a column set is read as set,
    row by row (a batch that wants some rows at the spot sends it in those rows)."""
    spot = _SPOTS[underlying]
    n = 8
    rng = np.random.default_rng(model * 10 + engine)
    strike_type = rng.integers(1, 3, n).astype("<i4")
    strike = np.where(strike_type == 2, spot * rng.uniform(0.8, 1.2, n), 0.0)
    days = rng.integers(1, 45 if underlying == "STOCK" else 700, n)

    def batch(lo=None, hi=None):
        req = pb.PriceBatchRequest(model=model, engine=engine, measures=[1, 2, 3])
        if engine == cpb.ENGINE_MONTE_CARLO:
            req.settings.paths, req.settings.seed = 4096, 3
        cols = req.lookback
        cols.strike_type.raw = strike_type.tobytes()
        cols.option_type.raw = np.resize(np.array([1, 2], "<i4"), n).tobytes()
        cols.strike.raw = strike.astype("<f8").tobytes()
        cols.time_to_expiry.raw = (days / 365.0).astype("<f8").tobytes()
        if lo is not None:
            cols.running_minimum.raw = np.asarray(lo, "<f8").tobytes()
        if hi is not None:
            cols.running_maximum.raw = np.asarray(hi, "<f8").tobytes()
        req.market.snapshot_id, req.market.underlying_id = snapshot_id, underlying
        if model == 4:
            for h in ("v0", "kappa", "theta", "sigma", "rho"):
                getattr(req.market.heston, h).values.append(getattr(_HESTON, h))
        else:
            req.market.volatility.values.append(0.2)
        out = stub.PriceBatch(req, timeout=60)
        assert out.error_count == 0, out.errors
        return [_values(c.values).tolist() for c in out.columns] + [_values(c.standard_error).tolist()
                                                                   for c in out.columns if c.HasField("standard_error")]

    unset = batch()
    at_spot = np.full(n, spot)
    assert unset == batch(at_spot, at_spot) == batch(at_spot, None) == batch(None, at_spot) == batch([spot], [spot])
    lower, higher = at_spot.copy(), at_spot.copy()
    lower[0], higher[0] = spot * 0.9, spot * 1.1
    moved = batch(lower, higher)
    assert moved[0][0] != unset[0][0] and moved[0][1:] == unset[0][1:]  # row 0 read as set, the others at the spot


def test_a_lookback_on_a_snapshots_cash_dividends_is_refused_naming_the_underlying(stub, snapshot_id):
    """Unset extremes change nothing to what the engines price: STOCK's cash dividends before
    expiry are still refused for a lookback (no escrowed model for a path's extremes)."""
    r = pb.PriceRequest(model=1, lookback=pb.LookbackOption(strike_type=1, option_type=1,
                                                            expiry=pb.Expiry(year_fraction=0.5)),
                        market=pb.Market(snapshot_id=snapshot_id, underlying_id="STOCK", volatility=0.2))
    with pytest.raises(grpc.RpcError) as e:
        stub.Price(r, timeout=10)
    assert [f for f, _ in violations(e.value)] == ["market.underlying_id"]


def test_a_batch_on_a_snapshot(stub, snapshot_id):
    n = 5000
    rng = np.random.default_rng(9)
    days = rng.integers(0, 3000, n)
    strike = rng.uniform(4000, 8000, n)
    t = days / 365.0
    req = pb.PriceBatchRequest(model=1, measures=[1, 2, 4])
    req.european.option_type.raw = rng.integers(1, 3, n).astype("<i4").tobytes()
    req.european.strike.raw = strike.astype("<f8").tobytes()
    req.european.time_to_expiry.raw = t.astype("<f8").tobytes()
    req.market.snapshot_id, req.market.underlying_id = snapshot_id, "STOCK"
    req.market.volatility.values.append(0.25)
    out = stub.PriceBatch(req, timeout=30)
    assert out.error_count == 0 and out.market.underlying_id == "STOCK" and out.market.dividends == 3
    price = np.frombuffer(out.columns[0].values.raw, dtype="<f8")
    for i in rng.choice(n, 40, replace=False):  # each row as a single trade on the same snapshot
        one = request(snapshot_id, "STOCK", days=int(days[i]), strike=float(strike[i]),
                      put=np.frombuffer(req.european.option_type.raw, "<i4")[i] == 2, measures=())
        one.market.volatility = 0.25
        assert price[i] == pytest.approx(stub.Price(one, timeout=10).price, rel=1e-14, abs=1e-12)
    req.market.spot.values.append(1.0)
    with pytest.raises(grpc.RpcError) as e:
        stub.PriceBatch(req, timeout=30)
    assert violations(e.value)[0][0] == "market.spot"


def test_a_stream_trade_on_a_snapshot_names_fields_inside_the_message(stub, snapshot_id):
    good = pb.PriceStreamRequest(correlation_id="a", price=request(snapshot_id))
    bad = pb.PriceStreamRequest(correlation_id="b", price=request("f" * 32))
    replies = list(stub.PriceStream(iter([good, bad]), timeout=10))
    assert replies[0].result.market.snapshot_id == snapshot_id
    assert replies[1].error.field == "price.market.snapshot_id" and replies[1].error.code == 5


# ------------------------------------------------------------------ volatility from the snapshot's surfaces
def _surface_snapshot(grid_vols=None, svi=None):
    msg = _snapshot()
    msg.name = "surface-pricing"
    msg.surfaces.add(id="SPX-GRID", underlying="SPX", expiries=[0.25, 0.5, 1.0],
                     grid=mpb.VolGrid(axis=mpb.STRIKE_AXIS_MONEYNESS, nodes=[0.8, 0.9, 1.0, 1.1, 1.2],
                                      vols=grid_vols or [0.28, 0.24, 0.21, 0.19, 0.18, 0.27, 0.235, 0.205, 0.19, 0.185,
                                                         0.26, 0.23, 0.20, 0.19, 0.185]))
    msg.surfaces.add(id="STOCK-SVI", underlying="STOCK", expiries=[0.5, 1.0],
                     svi=mpb.SviSlices(slices=svi or [mpb.SviSlice(a=0.01, b=0.05, rho=-0.5, m=0.0, sigma=0.2),
                                                      mpb.SviSlice(a=0.02, b=0.06, rho=-0.5, m=0.0, sigma=0.25)]))
    msg.underlyings[0].vol_surface = "SPX-GRID"
    msg.underlyings[1].vol_surface = "STOCK-SVI"
    return msg


@pytest.fixture(scope="module")
def surface_snapshot_id(channel):
    stub = market_pb2_grpc.MarketDataServiceStub(channel)
    reply = stub.PutSnapshot(mpb.PutSnapshotRequest(snapshot=_surface_snapshot()), timeout=10)
    assert reply.info.surfaces == 2 and reply.info.report.errors == 0, reply.info.report
    return reply.info.id


@pytest.mark.parametrize("underlying", ["SPX", "STOCK"])
def test_the_vol_comes_from_the_underlyings_surface_at_each_trades_expiry_and_strike(stub, surface_snapshot_id,
                                                                                     underlying):
    for days, strike in ((30, 5000.0), (120, 6200.0), (400, 7000.0), (200, 480.0), (90, 520.0)):
        r = request(surface_snapshot_id, underlying, days=days, strike=strike, measures=(2, 4))
        r.market.volatility = 0.0  # unset: read the surface
        got = stub.Price(r, timeout=10)
        assert got.market.vol_surface == ("SPX-GRID" if underlying == "SPX" else "STOCK-SVI")
        inline = request(surface_snapshot_id, underlying, days=days, strike=strike, measures=(2, 4))
        inline.market.volatility = got.inputs.volatility
        ref = stub.Price(inline, timeout=10)
        if underlying == "SPX":  # the same trade with that vol, bit for bit
            assert got.price == ref.price and got.greeks == ref.greeks
        else:
            # read in the pricing pass (as a batch row), an SVI smile's BSM trade on a spot is
            # within 1e-13 relative of its columns priced (pricegrid.server.pricers.market_columns)
            assert got.price == pytest.approx(ref.price, rel=1e-13, abs=0)
            for f, v in got.greeks.ListFields():
                assert v == pytest.approx(getattr(ref.greeks, f.name), rel=1e-13, abs=0), f.name
        assert not ref.market.vol_surface


def test_the_surface_vol_is_the_surface_kernels_at_the_rows_forward(stub, surface_snapshot_id):
    from pricegrid.server.domain.surfaces import StrikeAxis, GridSurface
    from pricegrid.server.pricers.surfaces import vols

    grid = GridSurface("g", "SPX", np.array([0.25, 0.5, 1.0]), StrikeAxis.MONEYNESS, np.array([0.8, 0.9, 1.0, 1.1, 1.2]),
                       np.array([0.28, 0.24, 0.21, 0.19, 0.18, 0.27, 0.235, 0.205, 0.19, 0.185,
                                 0.26, 0.23, 0.20, 0.19, 0.185]).reshape(3, 5))
    r = request(surface_snapshot_id, "SPX", days=120, strike=5700.0, measures=())
    r.market.volatility = 0.0
    got = stub.Price(r, timeout=10)
    expected, status = vols(grid, np.array([120 / 365]), np.array([5700.0]), np.array([got.inputs.forward]))
    # the vol was looked up at the market kernel's forward (per expiry, libm's exp); the
    # forward reported is the pricing kernel's (libmvec's exp, the same for every row of
    # every call): the two may differ in the last bit, and so may the vol
    assert status[0] == 0 and got.inputs.volatility == pytest.approx(expected[0], rel=4e-16)


def test_a_batch_reads_every_rows_vol_from_the_surface(stub, surface_snapshot_id):
    n = 2000
    rng = np.random.default_rng(3)
    t = rng.integers(1, 700, n) / 365.0
    strike = rng.uniform(4500, 7500, n)
    req = pb.PriceBatchRequest(model=1, measures=[1])
    req.european.option_type.values.append(1)
    req.european.strike.raw = strike.astype("<f8").tobytes()
    req.european.time_to_expiry.raw = t.astype("<f8").tobytes()
    req.market.snapshot_id, req.market.underlying_id = surface_snapshot_id, "SPX"
    out = stub.PriceBatch(req, timeout=30)
    assert out.error_count == 0 and out.market.vol_surface == "SPX-GRID"
    vol = np.frombuffer(out.inputs.volatility.raw, dtype="<f8")
    assert len(np.unique(vol)) > 100 and np.all((vol > 0.17) & (vol < 0.29))


def test_a_batch_read_in_one_pass_is_the_single_trades(stub, surface_snapshot_id):
    """The analytic European reads the snapshot in its pricing pass (curves, escrowed cash
    dividends, the SVI smile per row): every row is the single trade on the same snapshot,
    the effective inputs are the single trade's, and a failed row fails alone."""
    n = 3000
    rng = np.random.default_rng(11)
    days = rng.integers(1, 1500, n)
    days[17] = -5  # a negative expiry: this row only fails, named
    strike = rng.uniform(350, 700, n)
    types = rng.integers(1, 3, n).astype("<i4")
    req = pb.PriceBatchRequest(model=1, measures=[1, 2, 3, 4, 5, 6])
    req.european.option_type.raw = types.tobytes()
    req.european.strike.raw = strike.astype("<f8").tobytes()
    req.european.time_to_expiry.raw = (days / 365.0).astype("<f8").tobytes()
    req.market.snapshot_id, req.market.underlying_id = surface_snapshot_id, "STOCK"
    out = stub.PriceBatch(req, timeout=30)
    assert out.error_count == 1 and out.errors[0].row == 17 and "time_to_expiry" in out.errors[0].field
    assert out.market.vol_surface == "STOCK-SVI" and out.market.dividends == 3
    cols = {c.measure: np.frombuffer(c.values.raw, dtype="<f8") for c in out.columns}
    vol = np.frombuffer(out.inputs.volatility.raw, dtype="<f8")
    fwd = np.frombuffer(out.inputs.forward.raw, dtype="<f8")
    assert np.isnan(cols[1][17]) and np.isnan(vol[17])
    for i in rng.choice(np.delete(np.arange(n), 17), 30, replace=False):
        one = request(surface_snapshot_id, "STOCK", days=int(days[i]), strike=float(strike[i]), put=types[i] == 2,
                      measures=(2, 3, 4, 5, 6))
        one.market.volatility = 0.0
        got = stub.Price(one, timeout=10)
        assert vol[i] == got.inputs.volatility and fwd[i] == pytest.approx(got.inputs.forward, rel=1e-15)
        assert cols[1][i] == pytest.approx(got.price, rel=1e-13, abs=1e-12)
        assert cols[2][i] == pytest.approx(got.greeks.delta, rel=1e-13, abs=1e-13)


def test_an_underlying_without_a_surface_needs_an_inline_vol(stub, surface_snapshot_id):
    r = request(surface_snapshot_id, "EUA-DEC27", model=2, strike=80.0)
    r.market.volatility = 0.0
    with pytest.raises(grpc.RpcError) as e:
        stub.Price(r, timeout=10)
    assert violations(e.value)[0][0] == "market.volatility"


def test_arbitrage_in_a_surface_refuses_the_snapshot(channel):
    stub = market_pb2_grpc.MarketDataServiceStub(channel)
    calendar = [0.28, 0.24, 0.21, 0.19, 0.18, 0.10, 0.10, 0.10, 0.10, 0.10,  # the 6m slice's variance below 3m's
                0.26, 0.23, 0.20, 0.19, 0.185]
    report = stub.ValidateMarket(mpb.ValidateMarketRequest(snapshot=_surface_snapshot(grid_vols=calendar)),
                                 timeout=10).report
    assert any(f.check == "surface.calendar" and f.field == "surfaces[0].expiries[1]" for f in report.findings)
    vogt = [mpb.SviSlice(a=-0.0410, b=0.1331, rho=0.3060, m=0.3586, sigma=0.4153),  # Gatheral-Jacquier ex. 3.1
            mpb.SviSlice(a=0.02, b=0.14, rho=0.3, m=0.36, sigma=0.42)]
    report = stub.ValidateMarket(mpb.ValidateMarketRequest(snapshot=_surface_snapshot(svi=vogt)), timeout=10).report
    assert any(f.check == "surface.durrleman" and f.severity == mpb.SEVERITY_ERROR for f in report.findings)
    with pytest.raises(grpc.RpcError) as e:
        stub.PutSnapshot(mpb.PutSnapshotRequest(snapshot=_surface_snapshot(svi=vogt)), timeout=10)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_bad_surfaces_name_their_fields(channel):
    stub = market_pb2_grpc.MarketDataServiceStub(channel)
    holes = [0.28, float("nan")] + [0.2] * 13
    for snapshot, field in (
        (_surface_snapshot(grid_vols=holes), "snapshot.surfaces[0].grid.vols[1]"),
        (_surface_snapshot(grid_vols=[0.2] * 14), "snapshot.surfaces[0].grid.vols"),
        (_surface_snapshot(svi=[mpb.SviSlice(a=0.01, b=-0.05, rho=-0.5, sigma=0.2),
                                mpb.SviSlice(a=0.02, b=0.06, rho=-0.5, sigma=0.25)]), "snapshot.surfaces[1].svi.slices[0].b"),
    ):
        with pytest.raises(grpc.RpcError) as e:
            stub.PutSnapshot(mpb.PutSnapshotRequest(snapshot=snapshot), timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in [f for f, _ in violations(e.value)], violations(e.value)


def test_the_demo_snapshot_prices_a_smile_out_of_the_box(stub, channel):
    market = market_pb2_grpc.MarketDataServiceStub(channel)
    demo = market.ListSnapshots(mpb.ListSnapshotsRequest(name="demo"), timeout=10).snapshots[0].id
    vols = []
    for strike in (5000.0, 6000.0, 7000.0):
        r = request(demo, "SPX", days=182, strike=strike, measures=())
        r.market.volatility = 0.0
        vols.append(stub.Price(r, timeout=10).inputs.volatility)
    assert vols[0] > vols[1] > vols[2]  # an equity skew
    eua = request(demo, "EUA-DEC27", model=2, days=182, strike=80.0, measures=())
    eua.market.volatility = 0.0
    got = stub.Price(eua, timeout=10)
    assert got.market.vol_surface == "EUA-SABR" and 0.3 < got.inputs.volatility < 0.7


def test_bachelier_does_not_read_a_surfaces_black_vols_as_normal_vols(stub, channel):
    """A surface holds Black (lognormal) vols; Bachelier's vol is normal (in price units). Read
    as one, the demo EUA smile's 0.4 priced an at-the-money option at about 1e-7: refused,
    naming the volatility, single trade and batch; a normal vol sent is priced on the curves."""
    market = market_pb2_grpc.MarketDataServiceStub(channel)
    demo = market.ListSnapshots(mpb.ListSnapshotsRequest(name="demo"), timeout=10).snapshots[0].id
    eua = request(demo, "EUA-DEC27", model=3, days=182, strike=80.0, measures=(2,))
    eua.market.volatility = 0.0  # unset: the surface's
    with pytest.raises(grpc.RpcError) as e:
        stub.Price(eua, timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in violations(e.value)] == ["market.volatility"], violations(e.value)
    assert "Black (lognormal)" in e.value.details()
    batch = pb.PriceBatchRequest(
        model=3, european=pb.EuropeanOptionColumns(option_type=cpb.Int32Column(values=[1, 2]),
                                                   strike=cpb.DoubleColumn(values=[78.0, 80.0]),
                                                   time_to_expiry=cpb.DoubleColumn(values=[0.5])),
        market=pb.MarketColumns(snapshot_id=demo, underlying_id="EUA-DEC27"))
    with pytest.raises(grpc.RpcError) as e:
        stub.PriceBatch(batch, timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "market.volatility" in [f for f, _ in violations(e.value)], violations(e.value)
    eua.market.volatility = 30.0  # EUR per tonne per sqrt(year)
    got = stub.Price(eua, timeout=10)
    assert 5.0 < got.price < 15.0 and got.market.snapshot_id == demo and not got.market.vol_surface


def test_cash_dividends_are_refused_where_the_escrowed_model_does_not_hold(stub, snapshot_id):
    # the default American engine (fixed point) does not price them; the binomial tree does
    # (tests/server/test_rpc_american_dividends.py)
    r = pb.PriceRequest(model=1, american=pb.AmericanOption(option_type=2, strike=480.0,
                                                            expiry=pb.Expiry(year_fraction=0.5)),
                        market=pb.Market(snapshot_id=snapshot_id, underlying_id="STOCK", volatility=0.2))
    with pytest.raises(grpc.RpcError) as e:
        stub.Price(r, timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(e.value)[0][0] == "market.underlying_id" and "ENGINE_BINOMIAL_TREE" in e.value.details()
    r.american.expiry.year_fraction = 30 / 365  # before the first ex-date: no dividend in the way
    assert stub.Price(r, timeout=10).market.dividends == 0


# ------------------------------------------------------------------ a delta grid
# Nodes: forward call deltas, premium-unadjusted (N(d1)), decreasing = strikes increasing.
DELTA_T = [0.25, 0.5, 1.0]
DELTAS = [0.9, 0.75, 0.5, 0.25, 0.1]
DELTA_VOLS = [[0.26, 0.22, 0.19, 0.17, 0.165],
              [0.25, 0.215, 0.19, 0.172, 0.168],
              [0.24, 0.21, 0.19, 0.175, 0.17]]


def _delta_snapshot(vols=DELTA_VOLS):
    msg = _snapshot()
    msg.name = "delta-grid-pricing"
    msg.surfaces.add(id="SPX-DELTA", underlying="SPX", expiries=DELTA_T,
                     grid=mpb.VolGrid(axis=mpb.STRIKE_AXIS_DELTA, nodes=DELTAS,
                                      vols=[v for row in vols for v in row]))
    msg.underlyings[0].vol_surface = "SPX-DELTA"
    return msg


@pytest.fixture(scope="module")
def delta_snapshot_id(channel):
    stub = market_pb2_grpc.MarketDataServiceStub(channel)
    reply = stub.PutSnapshot(mpb.PutSnapshotRequest(snapshot=_delta_snapshot()), timeout=10)
    assert reply.info.surfaces == 1 and reply.info.report.errors == 0, reply.info.report
    assert not [f for f in reply.info.report.findings if f.check.startswith("surface.")]  # no arbitrage
    return reply.info.id


def _node_strikes(forwards):
    """(T, K) of every node: K = F_i e^k_ij, k_ij = sd (sd/2 - N^-1(delta_j)), sd = vol_ij sqrt(T_i)."""
    from scipy.special import ndtri

    t = np.array(DELTA_T)
    sd = np.array(DELTA_VOLS) * np.sqrt(t)[:, None]
    k = sd * (0.5 * sd - ndtri(np.array(DELTAS)))
    return np.repeat(t, len(DELTAS)), (np.asarray(forwards)[:, None] * np.exp(k)).ravel()


def test_a_delta_grid_is_stored_and_read_at_its_nodes_strikes(channel, delta_snapshot_id):
    from scipy.special import ndtr

    from pricegrid.server.domain.surfaces import GridSurface, StrikeAxis
    from pricegrid.server.pricers.surfaces import vols as surface_vols

    market = market_pb2_grpc.MarketDataServiceStub(channel)
    got = market.GetSnapshot(mpb.GetSnapshotRequest(id=delta_snapshot_id), timeout=10).snapshot.surfaces[0]
    assert got.grid.axis == mpb.STRIKE_AXIS_DELTA and list(got.grid.nodes) == DELTAS
    # the underlying's forward at each expiry, then every node at its own strike: the node's vol back
    fwd = market.EvaluateSurface(mpb.EvaluateSurfaceRequest(snapshot_id=delta_snapshot_id, surface_id="SPX-DELTA",
                                                            expiries=DELTA_T, strikes=[6000.0] * 3),
                                 timeout=10).forwards
    T, K = _node_strikes(fwd)
    r = market.EvaluateSurface(mpb.EvaluateSurfaceRequest(snapshot_id=delta_snapshot_id, surface_id="SPX-DELTA",
                                                          expiries=T, strikes=K), timeout=10)
    vol = np.array(r.vols)
    np.testing.assert_allclose(vol, np.ravel(DELTA_VOLS), rtol=1e-12, atol=0)
    np.testing.assert_allclose(r.total_variances, vol ** 2 * T, rtol=1e-14)
    F = np.array(r.forwards)
    sd = vol * np.sqrt(T)
    np.testing.assert_allclose(ndtr((np.log(F / K) + 0.5 * sd * sd) / sd), np.tile(DELTAS, 3), rtol=1e-12)
    # anywhere else: the surface kernel's vols of the same domain surface, bit for bit
    rng = np.random.default_rng(9)
    T = rng.uniform(0.0, 1.5, 50)
    K = rng.uniform(4000.0, 8000.0, 50)
    r = market.EvaluateSurface(mpb.EvaluateSurfaceRequest(snapshot_id=delta_snapshot_id, surface_id="SPX-DELTA",
                                                          expiries=T, strikes=K), timeout=10)
    grid = GridSurface("d", "SPX", np.array(DELTA_T), StrikeAxis.DELTA, np.array(DELTAS), np.array(DELTA_VOLS))
    expected, status = surface_vols(grid, T, K, np.array(r.forwards))
    assert not status.any() and np.array_equal(np.array(r.vols), expected)
    assert np.all((np.array(r.vols) >= 0.165) & (np.array(r.vols) <= 0.26))  # flat beyond the end nodes


def test_a_european_priced_on_a_delta_grid_snapshot(stub, channel, delta_snapshot_id):
    """A call struck at a node's own strike at the node's expiry reads the node's vol, and its
    Black-Scholes delta is e^{-qT} times the node's forward delta (premium-unadjusted)."""
    market = market_pb2_grpc.MarketDataServiceStub(channel)
    fwd = market.EvaluateSurface(mpb.EvaluateSurfaceRequest(snapshot_id=delta_snapshot_id, surface_id="SPX-DELTA",
                                                            expiries=DELTA_T, strikes=[6000.0] * 3),
                                 timeout=10).forwards
    T, K = _node_strikes(fwd)
    for i in range(T.size):
        r = pb.PriceRequest(model=1, measures=[2],
                            european=pb.EuropeanOption(option_type=1, strike=float(K[i]),
                                                       expiry=pb.Expiry(year_fraction=float(T[i]))),
                            market=pb.Market(snapshot_id=delta_snapshot_id, underlying_id="SPX"))
        got = stub.Price(r, timeout=10)
        assert got.market.vol_surface == "SPX-DELTA"
        assert got.inputs.volatility == pytest.approx(np.ravel(DELTA_VOLS)[i], rel=1e-12, abs=0)
        # spot delta = e^{-qT} N(d1) and e^{-qT} = F DF / S
        forward_delta = got.greeks.delta * 6000.0 / (got.inputs.forward * got.inputs.discount_factor)
        assert forward_delta == pytest.approx(DELTAS[i % len(DELTAS)], rel=1e-12, abs=0)
        inline = pb.PriceRequest()
        inline.CopyFrom(r)
        inline.market.volatility = got.inputs.volatility
        ref = stub.Price(inline, timeout=10)
        assert ref.price == got.price and ref.greeks == got.greeks  # the same trade with that vol, bit for bit
    # a batch between the nodes and expiries: every row's vol from the surface
    req = pb.PriceBatchRequest(model=1, measures=[1])
    req.european.option_type.values.append(2)
    req.european.strike.raw = np.linspace(4500.0, 7500.0, 200).astype("<f8").tobytes()
    req.european.time_to_expiry.raw = np.linspace(0.05, 1.4, 200).astype("<f8").tobytes()
    req.market.snapshot_id, req.market.underlying_id = delta_snapshot_id, "SPX"
    out = stub.PriceBatch(req, timeout=30)
    assert out.error_count == 0 and out.market.vol_surface == "SPX-DELTA"
    vol = np.frombuffer(out.inputs.volatility.raw, dtype="<f8")
    assert np.all((vol >= 0.165) & (vol <= 0.26)) and len(np.unique(vol)) > 100


def test_a_delta_grid_with_calendar_arbitrage_is_refused(channel):
    market = market_pb2_grpc.MarketDataServiceStub(channel)
    low = [list(DELTA_VOLS[0]), [0.6 * v for v in DELTA_VOLS[1]], list(DELTA_VOLS[2])]  # w(6m) below w(3m)
    report = market.ValidateMarket(mpb.ValidateMarketRequest(snapshot=_delta_snapshot(low)), timeout=10).report
    calendar = [f for f in report.findings if f.check == "surface.calendar"]
    assert calendar and {f.field for f in calendar} == {"surfaces[0].expiries[1]"}
    assert all("ln(K/F)" in f.message and f.severity == mpb.SEVERITY_ERROR for f in calendar)
    with pytest.raises(grpc.RpcError) as e:
        market.PutSnapshot(mpb.PutSnapshotRequest(snapshot=_delta_snapshot(low)), timeout=10)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION


# ------------------------------------------------------------------ broadcast columns read in one pass
def _values(col):
    return np.frombuffer(col.raw, dtype="<f8") if col.raw else np.array(col.values)


def _demo_id(channel):
    market = market_pb2_grpc.MarketDataServiceStub(channel)
    return market.ListSnapshots(mpb.ListSnapshotsRequest(name="demo"), timeout=10).snapshots[0].id


# (Bachelier reads no surface: test_bachelier_does_not_read_a_surfaces_black_vols_as_normal_vols)
@pytest.mark.parametrize("model,underlying,strikes", [(1, "SPX", [5800.0, 6000.0, 6300.0]),
                                                      (2, "EUA-DEC27", [75.0, 80.0, 84.0])])
def test_broadcast_columns_on_a_surface_are_the_full_columns_bit_for_bit(stub, channel, model, underlying, strikes):
    """The surface's vol read in the pricing pass: a strike, time or option type of length 1
    is every row's, the same bits as the full-length columns (the engine spreads it)."""
    demo = _demo_id(channel)
    n = len(strikes)

    def batch(option_type, strike, time):
        req = pb.PriceBatchRequest(model=model, measures=[1, 2, 4])
        req.european.option_type.values.extend(option_type)
        req.european.strike.values.extend(strike)
        req.european.time_to_expiry.values.extend(time)
        req.market.snapshot_id, req.market.underlying_id = demo, underlying
        out = stub.PriceBatch(req, timeout=10)
        assert out.error_count == 0, out.errors
        cols = [_values(c.values) for c in out.columns]
        return cols + [_values(out.inputs.volatility), _values(out.inputs.forward)]

    def same(a, b):
        return all(np.array_equal(x, y) for x, y in zip(a, b))

    types = [1, 2, 1]
    full = batch(types, strikes, [0.5] * n)
    assert np.all(np.isfinite(full[0])) and len(np.unique(full[3])) == n  # a smile: one vol per strike
    assert same(batch([1], strikes, [0.5]), batch([1] * n, strikes, [0.5] * n))
    assert same(batch(types, strikes, [0.5]), full)
    at_one_strike = batch(types, [strikes[1]] * n, [0.25, 0.5, 1.0])
    assert same(batch(types, [strikes[1]], [0.25, 0.5, 1.0]), at_one_strike)
    assert same(batch(types, [strikes[1]], [0.5]), batch(types, [strikes[1]] * n, [0.5] * n))
    # each row is the single trade on the same snapshot (the vol read at its strike and expiry)
    for i in range(n):
        one = request(demo, underlying, model=model, days=0, strike=strikes[i], put=types[i] == 2, measures=(2,))
        one.european.expiry.year_fraction = 0.5
        one.market.volatility = 0.0
        got = stub.Price(one, timeout=10)
        assert got.inputs.volatility == full[3][i]
        assert full[0][i] == pytest.approx(got.price, rel=1e-13, abs=1e-12)


def test_a_kernel_refusal_is_named_only_when_it_is_about_a_setting():
    """A kernel's ValueError names a setting when its message starts with one (the kernels
    name it first); any other is the server's own bug (INTERNAL), never ``settings``."""
    from pricegrid.server.domain.errors import Code
    from pricegrid.server.pricers.catalogue import CATALOGUE
    from pricegrid.server.service.pricing import _kernel_refusal

    spec = next(iter(CATALOGUE))
    err = _kernel_refusal(ValueError("strike and time must have length 2 (rows)"), spec, "settings")
    assert err.code == Code.INTERNAL and not err.violations and "settings" not in err.message
    for text, field in (("max_step = 1e-09 gives row 0 more than 100000 time steps", "price.settings.max_step"),
                        ("sobol needs 30000 dimensions (max_step = 0.0001); at most 21201", "price.settings.sobol"),
                        ("unknown scheme 7; expected 1 (fast), 2 (accurate) or 3 (high precision)",
                         "price.settings.american_scheme"),
                        ("tree_steps 1 out of range 3..100001", "price.settings.tree_steps")):
        err = _kernel_refusal(ValueError(text), spec, "price.settings")
        assert err.code == Code.INVALID_ARGUMENT and [v.field for v in err.violations] == [field], err
    err = _kernel_refusal(ValueError("unknown heston_scheme 3; expected 1 (QE) or 2 (full truncation Euler)"), spec,
                          "settings")
    assert err.code == Code.INTERNAL


# ------------------------------------------------------------------ the volatility column with a snapshot
def test_a_vol_column_sent_is_read_as_sent_and_only_its_absence_reads_the_surface(stub, channel):
    """MarketColumns.volatility: no column reads each row's vol from the surface; a column
    sent is the rows' vol, a zero one too (refused per row, never replaced by the surface's),
    whatever its length. A trade's Market.volatility is a plain double: 0 is unset there."""
    demo = _demo_id(channel)

    def batch(vol=None, n=2):
        req = pb.PriceBatchRequest(model=1, measures=[1])
        req.european.option_type.values.append(1)
        req.european.strike.values.extend([5800.0, 6000.0][:n])
        req.european.time_to_expiry.values.append(0.5)
        req.market.snapshot_id, req.market.underlying_id = demo, "SPX"
        if vol is not None:
            req.market.volatility.values.extend(vol)
        return stub.PriceBatch(req, timeout=10)

    surface = batch()
    assert surface.error_count == 0 and surface.market.vol_surface
    for vol in ([0.0], [0.0, 0.0]):
        out = batch(vol)
        assert out.error_count == 2 and not out.market.vol_surface
        assert [(e.row, e.field) for e in out.errors] == [(0, "market.volatility"), (1, "market.volatility")]
        assert all("(got 0.0)" in e.message for e in out.errors)
    given = batch([0.2])
    assert given.error_count == 0 and not given.market.vol_surface
    assert np.all(_values(given.inputs.volatility) == 0.2)
    one = request(demo, "SPX", days=182, strike=5800.0, measures=())
    one.market.volatility = 0.0  # (proto3: unset)
    assert stub.Price(one, timeout=10).market.vol_surface == surface.market.vol_surface


# ------------------------------------------------------------------ a bad expiry on a snapshot
def test_a_bad_expiry_on_a_snapshot_is_the_only_error_of_its_trade_or_row(stub, channel):
    """The snapshot's market is read at the expiry: a bad one has none, and only the expiry
    is named (not the level or surface vol it could not give), in a trade and in a row."""
    demo = _demo_id(channel)
    for instrument in ("european", "american", "barrier"):
        r = pb.PriceRequest(model=1, market=pb.Market(snapshot_id=demo, underlying_id="SPX"))
        msg = getattr(r, instrument)
        msg.option_type, msg.strike, msg.expiry.year_fraction = 1, 6000.0, -0.5
        if instrument == "barrier":
            msg.barrier_type, msg.barrier = 1, 5000.0
        for vol in (0.0, 0.2):
            r.market.volatility = vol
            with pytest.raises(grpc.RpcError) as e:
                stub.Price(r, timeout=10)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert [f for f, _ in violations(e.value)] == [f"{instrument}.expiry.year_fraction"], e.value.details()
    for instrument in ("european", "american"):
        req = pb.PriceBatchRequest(model=1, measures=[1])
        cols = getattr(req, instrument)
        cols.option_type.values.append(1)
        cols.strike.values.extend([5800.0, 6000.0, 6200.0])
        cols.time_to_expiry.values.extend([0.5, -0.5, float("nan")])
        req.market.snapshot_id, req.market.underlying_id = demo, "SPX"
        out = stub.PriceBatch(req, timeout=10)
        assert [(e.row, e.field) for e in out.errors] == [(1, f"{instrument}.time_to_expiry"),
                                                          (2, f"{instrument}.time_to_expiry")], out.errors
        assert np.isfinite(_values(out.columns[0].values)[0])


def _bits(x):
    return np.asarray(x, dtype="<f8").view("<u8")


@pytest.mark.parametrize("inline_vol", [None, 0.23])
@pytest.mark.parametrize("model,underlying,demo", [(1, "SPX", True), (1, "SPX", False), (1, "STOCK", False),
                                                   (2, "EUA-DEC27", True)])
def test_a_trade_on_a_snapshot_is_a_batch_of_one_bit_for_bit(stub, channel, surface_snapshot_id, model, underlying,
                                                             demo, inline_vol):
    """A trade is a batch of one: on a snapshot, Price, a one-row PriceBatch and the same row
    inside a larger PriceBatch give the same bits (price, every Greek, the effective inputs,
    the market used), across the smile and the curves; SVI (the demo's SPX; STOCK, with cash
    dividends), grid and SABR (the demo's EUA futures); the vol from the surface (read in
    the pricing pass) or given inline (the snapshot read to columns first)."""
    snap = _demo_id(channel) if demo else surface_snapshot_id
    measures = [1, 2, 3, 4, 5, 6, 8, 9, 10] + ([7] if model == 1 else [])
    level = {"SPX": 6000.0, "STOCK": 500.0, "EUA-DEC27": 78.4}[underlying]
    rng = np.random.default_rng(2026 + model)
    n = 60
    strike = level * rng.uniform(0.6, 1.5, n)
    t = rng.integers(1, 5 * 365, n) / 365.0
    types = rng.integers(1, 3, n).astype("<i4")

    def batch(rows):
        req = pb.PriceBatchRequest(model=model, measures=measures)
        req.european.option_type.raw = types[rows].tobytes()
        req.european.strike.raw = strike[rows].astype("<f8").tobytes()
        req.european.time_to_expiry.raw = t[rows].astype("<f8").tobytes()
        req.market.snapshot_id, req.market.underlying_id = snap, underlying
        if inline_vol is not None:
            req.market.volatility.values.append(inline_vol)
        out = stub.PriceBatch(req, timeout=30)
        assert out.error_count == 0, out.errors
        values = np.array([_values(c.values) for c in out.columns])
        inputs = np.array([_values(getattr(out.inputs, f)) for f in
                           ("forward", "discount_factor", "time_to_expiry", "volatility")])
        return values, inputs, out.market

    whole = batch(np.arange(n))
    if inline_vol is None:
        assert len(np.unique(whole[1][3])) > n // 2  # the vols come from a smile
    for i in range(n):
        one = pb.PriceRequest(model=model, measures=measures,
                              european=pb.EuropeanOption(option_type=int(types[i]), strike=float(strike[i]),
                                                         expiry=pb.Expiry(year_fraction=float(t[i]))),
                              market=pb.Market(snapshot_id=snap, underlying_id=underlying,
                                               volatility=inline_vol or 0.0))
        got = stub.Price(one, timeout=10)
        by_measure = {d.measure: d.value for d in got.details}
        price = np.array([by_measure[m] for m in measures])
        inputs = np.array([got.inputs.forward, got.inputs.discount_factor, got.inputs.time_to_expiry,
                           got.inputs.volatility])
        row_values, row_inputs, row_market = batch(np.array([i]))
        assert np.array_equal(_bits(price), _bits(row_values[:, 0])), (i, price - row_values[:, 0])
        assert np.array_equal(_bits(price), _bits(whole[0][:, i])), (i, price - whole[0][:, i])
        assert np.array_equal(_bits(inputs), _bits(row_inputs[:, 0])), (i, inputs - row_inputs[:, 0])
        assert np.array_equal(_bits(inputs), _bits(whole[1][:, i])), (i, inputs - whole[1][:, i])
        assert got.price == by_measure[1] and got.greeks.delta == by_measure[2]
        assert got.market == row_market and bool(got.market.vol_surface) == (inline_vol is None)
