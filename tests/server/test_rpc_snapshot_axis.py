"""A snapshot's one time axis (years ACT/365F from its valuation date) through Price and
PriceBatch: a curve quoted ACT/360 by node dates prices as QuantLib's ZeroCurve(Actual360),
and a trade's expiry dates must start at the snapshot's valuation date and count ACT/365F
(else INVALID_ARGUMENT naming the field), so that its expiry sits where the snapshot's own
dates do. Tolerance against QuantLib: 1e-12 relative, as tests/server/test_rpc_snapshot_pricing.py
(the same formulas evaluated in another order)."""

import datetime as dt

import grpc
import numpy as np
import pytest
import QuantLib as ql
from google.protobuf import timestamp_pb2

from pricegrid.v1 import common_pb2 as cpb
from pricegrid.v1 import market_pb2 as mpb
from pricegrid.v1 import market_pb2_grpc
from pricegrid.v1 import pricing_pb2 as pb
from pricegrid.v1 import risk_pb2 as rpb
from pricegrid.v1 import risk_pb2_grpc
from tests.server.richerr import violations

VALUATION = dt.date(2026, 12, 5)
NODES = [VALUATION + dt.timedelta(days=n) for n in (91, 365, 730)]
ZEROS = [0.047, 0.05, 0.052]
EX_DATE = dt.date(2027, 6, 1)  # 178 days: 0.4877 ACT/365F; an expiry on 2027-05-30 is 0.4889 ACT/360


def _date(d: dt.date) -> cpb.Date:
    return cpb.Date(year=d.year, month=d.month, day=d.day)


def _qd(d: dt.date) -> ql.Date:
    return ql.Date(d.day, d.month, d.year)


@pytest.fixture(scope="module")
def snapshot_id(channel):
    as_of = timestamp_pb2.Timestamp()
    as_of.FromDatetime(dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))
    snap = mpb.MarketSnapshot(
        name="axis", as_of=as_of, valuation_date=_date(VALUATION),
        curves=[mpb.YieldCurve(id="C360", currency="USD", day_count=cpb.DAY_COUNT_ACT_360,
                               node_dates=[_date(d) for d in NODES], values=ZEROS,
                               value_kind=mpb.CURVE_VALUE_KIND_ZERO_RATE,
                               interpolation=mpb.CURVE_INTERPOLATION_LINEAR_ZERO)],
        underlyings=[mpb.Underlying(id="X", currency="USD", spot=100.0, discount_curve="C360",
                                    dividends=[mpb.CashDividend(date=_date(EX_DATE), amount=5.0)])],
    )
    stub = market_pb2_grpc.MarketDataServiceStub(channel)
    return stub.PutSnapshot(mpb.PutSnapshotRequest(snapshot=snap), timeout=10).info.id


def _request(snapshot_id, expiry: dt.date, *, valuation=VALUATION, day_count=cpb.DAY_COUNT_ACT_365F):
    req = pb.PriceRequest(model=cpb.MODEL_BLACK_SCHOLES_MERTON)
    req.european.option_type, req.european.strike = cpb.OPTION_TYPE_CALL, 100.0
    req.european.expiry.dates.CopyFrom(pb.ExpiryDates(valuation_date=_date(valuation), expiry_date=_date(expiry),
                                                      day_count=day_count))
    req.market.snapshot_id, req.market.underlying_id, req.market.volatility = snapshot_id, "X", 0.2
    return req


def _quantlib(expiry: dt.date) -> float:
    """The call under QuantLib: the curve as ZeroCurve(Actual360) on the node dates (flat
    before the first), the dividend escrowed (AnalyticDividendEuropeanEngine), vol ACT/365F."""
    today = _qd(VALUATION)
    ql.Settings.instance().evaluationDate = today
    curve = ql.ZeroCurve([today] + [_qd(d) for d in NODES], [ZEROS[0]] + ZEROS, ql.Actual360(), ql.NullCalendar(),
                         ql.Linear(), ql.Continuous)
    curve.enableExtrapolation()
    flat = ql.YieldTermStructureHandle(ql.FlatForward(today, 0.0, ql.Actual365Fixed()))
    vol = ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), 0.2, ql.Actual365Fixed()))
    process = ql.BlackScholesMertonProcess(ql.QuoteHandle(ql.SimpleQuote(100.0)), flat,
                                           ql.YieldTermStructureHandle(curve), vol)
    option = ql.EuropeanOption(ql.PlainVanillaPayoff(ql.Option.Call, 100.0), ql.EuropeanExercise(_qd(expiry)))
    dividends = ql.DividendVector([_qd(EX_DATE)], [5.0]) if EX_DATE <= expiry else ql.DividendVector([], [])
    option.setPricingEngine(ql.AnalyticDividendEuropeanEngine(process, dividends))
    return option.NPV()


@pytest.mark.parametrize("expiry", [NODES[1], dt.date(2027, 5, 30), EX_DATE, dt.date(2028, 3, 17)])
def test_a_trade_on_an_act360_curve_prices_as_quantlib(stub, snapshot_id, expiry):
    r = stub.Price(_request(snapshot_id, expiry), timeout=10)
    assert r.price == pytest.approx(_quantlib(expiry), rel=1e-12)
    assert r.market.dividends == (1 if EX_DATE <= expiry else 0)


@pytest.mark.parametrize("valuation", [dt.date(2027, 12, 5), dt.date(2016, 12, 7), dt.date(2026, 12, 4)])
def test_expiry_dates_from_another_valuation_date_are_refused(stub, snapshot_id, valuation):
    with pytest.raises(grpc.RpcError) as e:
        stub.Price(_request(snapshot_id, valuation + dt.timedelta(days=182), valuation=valuation), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    [(field, why)] = violations(e.value)
    assert field == "european.expiry.dates.valuation_date" and str(VALUATION) in why


@pytest.mark.parametrize("day_count", [cpb.DAY_COUNT_ACT_360, cpb.DAY_COUNT_ACT_ACT_ISDA, cpb.DAY_COUNT_THIRTY_360])
def test_expiry_dates_in_another_day_count_are_refused(stub, snapshot_id, day_count):
    """Under ACT/360 the expiry two days before the ex-date read as 176/360 = 0.4889 years,
    past the dividend's 178/365 = 0.4877: the dividend came off the spot."""
    with pytest.raises(grpc.RpcError) as e:
        stub.Price(_request(snapshot_id, dt.date(2027, 5, 30), day_count=day_count), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in violations(e.value)] == ["european.expiry.dates.day_count"]
    with pytest.raises(grpc.RpcError) as e:  # both at once
        stub.Price(_request(snapshot_id, dt.date(2027, 5, 30), valuation=dt.date(2026, 12, 1), day_count=day_count),
                   timeout=10)
    assert [f for f, _ in violations(e.value)] == ["european.expiry.dates.valuation_date",
                                                   "european.expiry.dates.day_count"]


def _batch(snapshot_id, expiries, *, valuation=VALUATION, day_count=cpb.DAY_COUNT_ACT_365F):
    req = pb.PriceBatchRequest(model=cpb.MODEL_BLACK_SCHOLES_MERTON, measures=[1])
    n = len(expiries)
    req.european.option_type.raw = np.full(n, 1, "<i4").tobytes()
    req.european.strike.raw = np.full(n, 100.0, "<f8").tobytes()
    days = np.array([(d - dt.date(1970, 1, 1)).days for d in expiries], "<i4")
    req.european.expiry_date.raw = days.tobytes()
    req.european.valuation_date.CopyFrom(_date(valuation))
    req.european.day_count = day_count
    req.market.snapshot_id, req.market.underlying_id = snapshot_id, "X"
    req.market.volatility.values.append(0.2)
    return req


def test_a_batch_of_expiry_dates_on_the_axis(stub, snapshot_id):
    expiries = [NODES[1], dt.date(2027, 5, 30), EX_DATE, dt.date(2028, 3, 17)]
    out = stub.PriceBatch(_batch(snapshot_id, expiries), timeout=10)
    assert out.error_count == 0
    np.testing.assert_allclose(np.frombuffer(out.columns[0].values.raw, "<f8"), [_quantlib(d) for d in expiries],
                               rtol=1e-12, atol=0)
    # one valuation date and day count per batch: off the axis, the batch is refused naming them
    with pytest.raises(grpc.RpcError) as e:
        stub.PriceBatch(_batch(snapshot_id, expiries, valuation=dt.date(2026, 12, 6)), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in violations(e.value)] == ["european.valuation_date"]
    with pytest.raises(grpc.RpcError) as e:
        stub.PriceBatch(_batch(snapshot_id, expiries, day_count=cpb.DAY_COUNT_ACT_360), timeout=10)
    assert [f for f, _ in violations(e.value)] == ["european.day_count"]


def test_year_fractions_count_act365f_from_the_snapshots_valuation_date(stub, snapshot_id):
    expiry = dt.date(2027, 5, 30)
    req = _request(snapshot_id, expiry)
    req.european.expiry.year_fraction = (expiry - VALUATION).days / 365.0
    assert stub.Price(req, timeout=10).price == stub.Price(_request(snapshot_id, expiry), timeout=10).price


def test_a_scenario_run_holds_expiry_dates_to_the_axis(channel, snapshot_id):
    """RunScenarioRisk reads the same snapshot: a book's expiry dates off its axis are
    refused naming the portfolio's field; on them, it runs."""
    risk = risk_pb2_grpc.RiskServiceStub(channel)
    expiries = [NODES[1], dt.date(2027, 5, 30)]

    def run(**kw):
        book = _batch(snapshot_id, expiries, **kw)
        req = rpb.RunScenarioRiskRequest(output=rpb.SCENARIO_OUTPUT_BOTH)
        req.portfolio.CopyFrom(book)
        req.scenarios.shifts.add(name="spot", quantity=rpb.SHIFT_QUANTITY_SPOT, kind=rpb.SHIFT_KIND_RELATIVE,
                                 selector=["X"])
        req.scenarios.labels.extend(["base", "up"])
        req.scenarios.sizes.values.extend([0.0, 0.1])
        return list(risk.RunScenarioRisk(req, timeout=10))

    for kw, field in (({"valuation": dt.date(2026, 12, 6)}, "portfolio.european.valuation_date"),
                      ({"day_count": cpb.DAY_COUNT_ACT_360}, "portfolio.european.day_count")):
        with pytest.raises(grpc.RpcError) as e:
            run(**kw)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [f for f, _ in violations(e.value)] == [field]
    assert run()  # on the axis: it runs
