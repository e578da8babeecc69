"""Fuzz every RPC method of PricingService, MarketDataService and RiskService with mutated
messages on a real server (127.0.0.1, ephemeral port), with hypothesis.

Each example starts from a valid request of the method, changes a few fields found from the
descriptors (any depth: numbers to NaN, +-inf, 0, -1 or huge, enum numbers the contract does
not define, strings, columns of random bytes, oneofs switched, fields cleared), and sometimes
corrupts the encoded bytes. The server must answer every call with a proper status: OK, or
INVALID_ARGUMENT / NOT_FOUND / FAILED_PRECONDITION / RESOURCE_EXHAUSTED / OUT_OF_RANGE /
UNIMPLEMENTED / ABORTED with a message (never UNKNOWN, INTERNAL or a timeout); an OK reply holds no
NaN price unless its row is reported failed; every stream message is answered (a Backtest
message, until the first bad one ends the stream with a proper status); and the server goes
on serving (health check and a price after each method).

The CI profile sends about 3,000 messages in well under 30 s. PRICEGRID_FUZZ=long runs the
long profile (PRICEGRID_FUZZ_EXAMPLES examples per method, default 5,000).
"""

from __future__ import annotations

import math
import os

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor as _d
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import market_pb2 as mpb
from pricegrid.v1 import pricing_pb2 as pb
from pricegrid.v1 import risk_pb2 as rpb

from .test_rpc_enums import batch_request, iv_batch_request, iv_request, price_request, snapshot

_T = _d.FieldDescriptor
LONG = os.environ.get("PRICEGRID_FUZZ") == "long"
EXAMPLES = int(os.environ.get("PRICEGRID_FUZZ_EXAMPLES", "5000")) if LONG else 250
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not LONG,
                suppress_health_check=list(HealthCheck), print_blob=True)

PROPER = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
          grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNIMPLEMENTED,
          grpc.StatusCode.ABORTED}  # (ABORTED: an append to a stored history's version that is no longer the newest)

# ------------------------------------------------------------------------ values
DOUBLES = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, -1.0, 1.0, 0.5, 100.0, 1e-300, 1e300, 5e-324,
                     1.7976931348623157e308, 90.0, 110.0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-200.0, max_value=200.0),
)
# settings that would only make a valid request expensive are left to the cost caps' own tests
INTS = st.one_of(st.sampled_from([0, 1, 2, -1, 3, 4, 7, 31, 32, 99, 1000, -(2**31), 2**31 - 1]), st.integers(-50, 50))
INT64 = st.one_of(INTS, st.sampled_from([2**40, -(2**63), 2**63 - 1, 10**12]))
UINT64 = st.one_of(st.integers(0, 100), st.sampled_from([2**64 - 1, 2**63]))
ENUMS = st.one_of(st.integers(-3, 12), st.sampled_from([99, 2**31 - 1, -(2**31)]))
STRINGS = st.one_of(st.sampled_from(["", "SPX", "USD", "EUR", "eod", "A", "x" * 300, "\u00e9\u0000"]), st.text(max_size=12))
COST = {"paths": st.sampled_from([-1, 0, 31, 32, 500, 10**12]), "tree_steps": st.sampled_from([-1, 0, 1, 2, 25, 100_001]),
        "max_step": st.sampled_from([math.nan, -1.0, 0.0, 1e-9, 0.05, 0.5, math.inf])}


def _value(field):
    if field.name in COST:
        return COST[field.name]
    t = field.type
    if t in (_T.TYPE_DOUBLE, _T.TYPE_FLOAT):
        return DOUBLES
    if t == _T.TYPE_ENUM:
        return ENUMS
    if t == _T.TYPE_BOOL:
        return st.booleans()
    if t in (_T.TYPE_INT64, _T.TYPE_SINT64):
        return INT64
    if t == _T.TYPE_UINT64:
        return UINT64
    if t in (_T.TYPE_UINT32,):
        return st.integers(0, 2**32 - 1)
    if t == _T.TYPE_STRING:
        return STRINGS
    if t == _T.TYPE_BYTES:
        return st.one_of(st.binary(max_size=48),
                         st.lists(DOUBLES, max_size=6).map(lambda xs: np.asarray(xs, "<f8").tobytes()),
                         st.lists(INTS, max_size=6).map(lambda xs: np.asarray(xs, "<i8").astype("<i4").tobytes()))
    return INTS


def _targets(message, depth=0, present=True):
    """(message, field, present) of the fields reachable in ``message``: its own, those of
    its set submessages, and (one level down) of unset ones; ``present`` when the field's
    message is set, so that most mutations change a request that is otherwise valid."""
    out = []
    for f in message.DESCRIPTOR.fields:
        out.append((message, f, present))
        if f.type != _T.TYPE_MESSAGE or depth > 5 or f.message_type.full_name.startswith("google.protobuf."):
            continue
        if f.is_repeated:
            for sub in list(getattr(message, f.name))[:3]:
                out += _targets(sub, depth + 1, present)
        elif message.HasField(f.name):
            out += _targets(getattr(message, f.name), depth + 1, present)
        elif depth < 2:
            out += _targets(getattr(message, f.name), depth + 1, False)
    return out


@st.composite
def mutated(draw, make):
    """A valid request of ``make()`` with a few fields changed, as bytes (sometimes corrupted)."""
    message = make()
    for _ in range(draw(st.integers(1, 4))):
        targets = _targets(message)
        if not targets:  # (ServerInfoRequest: no fields, only the bytes below)
            break
        inside = [t for t in targets if t[2]]
        pool = inside if inside and draw(st.integers(0, 3)) else targets
        parent, f, _ = pool[draw(st.integers(0, len(pool) - 1))]
        action = draw(st.sampled_from(["set", "set", "set", "clear", "grow"]))
        if action == "clear":
            parent.ClearField(f.name)
        elif f.type == _T.TYPE_MESSAGE:
            if f.is_repeated:
                for _ in range(draw(st.integers(0, 3))):
                    getattr(parent, f.name).add()
            else:
                getattr(parent, f.name).SetInParent()  # (switches a oneof to it)
        elif f.is_repeated:
            values = getattr(parent, f.name)
            new = draw(st.lists(_value(f), max_size=8 if action == "grow" else 3))
            if action == "set":
                del values[:]
            values.extend(new)
        else:
            setattr(parent, f.name, draw(_value(f)))
    data = message.SerializeToString()
    cut = draw(st.sampled_from(["none"] * 15 + ["flip", "truncate", "append"]))
    if cut == "append" or (cut != "none" and not data):
        data = data + draw(st.binary(min_size=1, max_size=16))
    elif cut != "none":
        i = draw(st.integers(0, len(data) - 1))
        if cut == "flip":
            data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
        else:
            data = data[:i]
    return data


# ------------------------------------------------------------------------ checks of a reply
def _no_unexplained_nan(method, reply_bytes):
    if method == "Price":
        r = pb.PriceResponse.FromString(reply_bytes)
        values = [r.price] + [getattr(r.greeks, g) for g in ("delta", "gamma", "vega", "theta", "rho")
                              if r.greeks.HasField(g)] + [d.value for d in r.details]
        assert all(math.isfinite(v) for v in values), r
    elif method == "ParametricVar":
        r = rpb.ParametricVarResponse.FromString(reply_bytes)
        for b in r.books:
            values = [x.value for x in b.var] + [b.mean, b.standard_deviation, b.skewness, b.excess_kurtosis]
            assert all(math.isfinite(v) for v in values), r
    elif method in ("PriceBatch", "ImpliedVolatilityBatch"):
        cls = pb.PriceBatchResponse if method == "PriceBatch" else pb.ImpliedVolatilityBatchResponse
        r = cls.FromString(reply_bytes)
        status = _column(r.status, "<i4") if r.HasField("status") else np.zeros(r.rows, np.int32)
        if r.rows:
            assert len(status) == r.rows
        columns = [col.values for col in r.columns] if method == "PriceBatch" else [r.volatility]
        for col in columns:
            v = _column(col, "<f8")
            assert len(v) == r.rows
            bad = ~np.isfinite(v)
            assert not (bad & (status == 0)).any(), (method, v, status)
        assert r.error_count == int(np.count_nonzero(status))
    elif method == "ImpliedVolatility":
        assert math.isfinite(pb.ImpliedVolatilityResponse.FromString(reply_bytes).volatility)


def _column(col, dtype):
    return np.frombuffer(col.raw, dtype) if len(col.raw) else np.asarray(list(col.values), dtype=dtype)


def _call(channel, service, method, data, timeout=30):
    call = channel.unary_unary(f"/pricegrid.v1.{service}/{method}")
    try:
        return grpc.StatusCode.OK, call(data, timeout=timeout), ""
    except grpc.RpcError as err:
        return err.code(), None, err.details() or ""


def _still_serving(channel):
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
    code, reply, _ = _call(channel, "PricingService", "Price", price_request().SerializeToString())
    assert code == grpc.StatusCode.OK and pb.PriceResponse.FromString(reply).price > 0


# ------------------------------------------------------------------------ requests of each method
def _library_request():
    r = pb.PriceRequest(model=c.MODEL_BLACK_SCHOLES_MERTON, market=pb.Market(spot=100.0, rate=0.02, volatility=0.2),
                        measures=[c.MEASURE_DELTA, c.MEASURE_GAMMA])
    r.barrier.CopyFrom(pb.BarrierOption(barrier_type=2, option_type=1, strike=100.0, barrier=90.0, rebate=1.0,
                                        expiry=pb.Expiry(year_fraction=0.5)))
    r.asian.CopyFrom(pb.AsianOption(averaging=1, option_type=1, strike=100.0, fixing_times=[0.25, 0.5],
                                    expiry=pb.Expiry(year_fraction=0.5)))  # (the oneof: the Asian)
    return r


def _heston_mc_request():
    r = pb.PriceRequest(model=c.MODEL_HESTON, engine=c.ENGINE_MONTE_CARLO, settings=pb.EngineSettings(paths=500),
                        market=pb.Market(spot=100.0, rate=0.02, heston=pb.HestonParameters(
                            v0=0.04, kappa=1.5, theta=0.04, sigma=0.5, rho=-0.7)))
    r.lookback.CopyFrom(pb.LookbackOption(strike_type=1, option_type=1, expiry=pb.Expiry(year_fraction=0.5)))
    return r


def _library_batch():
    return pb.PriceBatchRequest(
        model=1, measures=[1, 2], digital=pb.DigitalOptionColumns(
            payoff=c.Int32Column(values=[1, 2, 3]), option_type=c.Int32Column(values=[1]),
            strike=c.DoubleColumn(raw=np.array([90.0, 100.0, 110.0]).tobytes()),
            time_to_expiry=c.DoubleColumn(values=[0.5])),
        market=pb.MarketColumns(spot=c.DoubleColumn(values=[100.0]), volatility=c.DoubleColumn(values=[0.2])))


def _stream_request():
    return pb.PriceStreamRequest(correlation_id="c", trade_id="T", price=price_request())


def _own_scenarios() -> rpb.ScenarioSet:
    out = rpb.ScenarioSet(labels=["a", "b"])
    out.shifts.add(name="spot", quantity=rpb.SHIFT_QUANTITY_SPOT, kind=rpb.SHIFT_KIND_RELATIVE, selector=["SPX"])
    out.shifts.add(name="rate", quantity=rpb.SHIFT_QUANTITY_ZERO_RATE, kind=rpb.SHIFT_KIND_ABSOLUTE,
                   selector=["US*"]).buckets.tenors.extend(["6M", "2Y"])
    out.sizes.values.extend([-0.1, 0.1, 0.001, 0.0, 0.0, -0.001])
    return out


def _portfolio(snapshot_id: str) -> rpb.Portfolio:
    """Two books on SPX: European calls and puts, cash digitals."""
    euro = pb.PriceBatchRequest(model=c.MODEL_BLACK_SCHOLES_MERTON, european=pb.EuropeanOptionColumns(
        option_type=c.Int32Column(values=[1, 2]), strike=c.DoubleColumn(values=[95.0, 105.0]),
        time_to_expiry=c.DoubleColumn(values=[0.5, 1.0])))
    digital = pb.PriceBatchRequest(model=c.MODEL_BLACK_SCHOLES_MERTON, digital=pb.DigitalOptionColumns(
        option_type=c.Int32Column(values=[1]), strike=c.DoubleColumn(values=[100.0, 110.0]),
        time_to_expiry=c.DoubleColumn(values=[0.25]), cash=c.DoubleColumn(values=[10.0]),
        payoff=c.Int32Column(values=[1])))
    out = rpb.Portfolio()
    for i, trades in enumerate((euro, digital)):
        trades.market.snapshot_id, trades.market.underlying_id = snapshot_id, "SPX"
        book = out.books.add(trades=trades)
        book.tags.add(name="desk", values=["eq" if i == 0 else "exotic"])
    out.books[0].quantity.values.extend([1.0, -2.0])
    out.books[1].trade_ids.extend(["D1", "D2"])
    return out


def _history() -> rpb.BacktestHistory:
    return rpb.BacktestHistory(pnl=c.DoubleColumn(values=[1.0, -3.0, 0.5]), var=c.DoubleColumn(raw=np.array(
        [2.0, 2.0, 2.0]).tobytes()), labels=["a", "b", "c"], var_convention=rpb.VAR_CONVENTION_LOSS)


UNARY = [
    ("PricingService", "Price", price_request),
    ("PricingService", "Price", _library_request),
    ("PricingService", "Price", _heston_mc_request),
    ("PricingService", "PriceBatch", batch_request),
    ("PricingService", "PriceBatch", _library_batch),
    ("PricingService", "ImpliedVolatility", iv_request),
    ("PricingService", "ImpliedVolatilityBatch", iv_batch_request),
    ("PricingService", "ServerInfo", pb.ServerInfoRequest),
    ("MarketDataService", "PutSnapshot", lambda: mpb.PutSnapshotRequest(snapshot=snapshot())),
    ("MarketDataService", "ValidateMarket", lambda: mpb.ValidateMarketRequest(snapshot=snapshot())),
    ("MarketDataService", "GetSnapshot", lambda: mpb.GetSnapshotRequest(id="")),
    ("MarketDataService", "ListSnapshots", lambda: mpb.ListSnapshotsRequest(name="fuzz", limit=5)),
    ("MarketDataService", "DeleteSnapshot", lambda: mpb.DeleteSnapshotRequest(id="nope")),
    ("MarketDataService", "EvaluateCurve", lambda: mpb.EvaluateCurveRequest(curve_id="USD", times=[0.5, 1.0])),
    ("MarketDataService", "EvaluateSurface", lambda: mpb.EvaluateSurfaceRequest(
        surface_id="SPX-vol", expiries=[0.5, 1.0], strikes=[95.0, 105.0])),
    ("RiskService", "PutPortfolio", lambda: rpb.PutPortfolioRequest(name="fuzz-book", description="d",
                                                                     portfolio=_portfolio(""))),
    ("RiskService", "GetPortfolio", lambda: rpb.GetPortfolioRequest(portfolio="fuzz-book")),
    ("RiskService", "ListPortfolios", lambda: rpb.ListPortfoliosRequest(name="fuzz-book", limit=5)),
    ("RiskService", "DeletePortfolio", lambda: rpb.DeletePortfolioRequest(id="nope")),
    ("RiskService", "ListStresses", rpb.ListStressesRequest),
    ("RiskService", "PutScenarioSet", lambda: rpb.PutScenarioSetRequest(
        name="fuzz-set", description="d", scenario_set=_own_scenarios())),
    ("RiskService", "GetScenarioSet", lambda: rpb.GetScenarioSetRequest(scenario_set="fuzz-set")),
    ("RiskService", "ListScenarioSets", lambda: rpb.ListScenarioSetsRequest(name="fuzz-set", limit=5)),
    ("RiskService", "DeleteScenarioSet", lambda: rpb.DeleteScenarioSetRequest(id="nope")),
    ("RiskService", "PutBacktestHistory", lambda: rpb.PutBacktestHistoryRequest(
        name="fuzz-history", description="d", history=_history())),
    ("RiskService", "GetBacktestHistory", lambda: rpb.GetBacktestHistoryRequest(backtest_history="fuzz-history")),
    ("RiskService", "ListBacktestHistories", lambda: rpb.ListBacktestHistoriesRequest(name="fuzz-history", limit=5)),
    ("RiskService", "DeleteBacktestHistory", lambda: rpb.DeleteBacktestHistoryRequest(id="nope")),
    ("RiskService", "ParametricVar", lambda: rpb.ParametricVarRequest(
        factors=["a", "b"], covariance=c.DoubleColumn(values=[0.04, 0.01, 0.01, 0.09]), books=["x", "y"],
        deltas=c.DoubleColumn(values=[1.0, -2.0, 0.5, 3.0]), gammas=c.DoubleColumn(values=[0.1, 0.0, 0.0, -0.2]),
        method=rpb.PARAMETRIC_METHOD_CORNISH_FISHER, levels=[0.99, 0.95])),
]


def test_every_method_is_fuzzed():
    fuzzed = {(s, m) for s, m, _ in UNARY} | {("PricingService", "PriceStream"), ("RiskService", "Backtest"),
                                             ("RiskService", "RunScenarioRisk"), ("RiskService", "Sensitivities"),
                                             ("RiskService", "WorstCase")}
    for file, service in ((pb, "PricingService"), (mpb, "MarketDataService"), (rpb, "RiskService")):
        for method in file.DESCRIPTOR.services_by_name[service].methods:
            assert (service, method.name) in fuzzed, method.full_name


@pytest.fixture(scope="module")
def stored(channel):
    """A stored snapshot, so that the market methods' mutated ids sometimes find it."""
    from pricegrid.v1 import market_pb2_grpc

    stub = market_pb2_grpc.MarketDataServiceStub(channel)
    return stub.PutSnapshot(mpb.PutSnapshotRequest(snapshot=snapshot()), timeout=10).info.id


@pytest.mark.parametrize("service, method, make", UNARY, ids=[f"{m}-{f.__name__}" for _, m, f in UNARY])
def test_unary_methods(channel, stored, service, method, make):
    def with_ids():
        msg = make()
        for name in ("id", "snapshot_id"):
            if name in msg.DESCRIPTOR.fields_by_name:
                setattr(msg, name, stored)
        return msg

    @FUZZ
    @given(data=mutated(with_ids))
    def run(data):
        code, reply, details = _call(channel, service, method, data)
        if code == grpc.StatusCode.OK:
            _no_unexplained_nan(method, reply)
        else:
            assert code in PROPER, (code, details)
            assert details, code

    run()
    _still_serving(channel)


@FUZZ
@given(messages=st.lists(st.one_of(mutated(_stream_request), mutated(lambda: pb.PriceStreamRequest(
    correlation_id="u", market_update=pb.MarketUpdate(spot=101.0, volatility=0.25)))), min_size=1, max_size=8))
def _stream_examples(channel, messages):
    call = channel.stream_stream("/pricegrid.v1.PricingService/PriceStream")
    replies = [pb.PriceStreamResponse.FromString(b) for b in call(iter(messages), timeout=30)]
    assert len(replies) >= len(messages)  # every message answered (a market update: once per trade moved)
    for r in replies:
        assert r.HasField("result") != r.HasField("error"), r
        if r.HasField("result"):
            assert math.isfinite(r.result.price), r
        else:
            assert r.error.code in (3, 5, 8, 9, 11, 12) and r.error.message, r


def test_stream(channel):
    _stream_examples(channel)
    _still_serving(channel)


def _backtest_request():
    return rpb.BacktestRequest(settings=rpb.BacktestSettings(level=0.99, window=5),
                               pnl=c.DoubleColumn(values=[1.0, -3.0, 0.5]), var=c.DoubleColumn(values=[2.0, 2.0, 2.0]),
                               labels=["a", "b", "c"])


@FUZZ
@given(messages=st.lists(st.one_of(mutated(_backtest_request), mutated(lambda: rpb.BacktestRequest(
    pnl=c.DoubleColumn(raw=np.array([-1.0, -9.0]).tobytes()), var=c.DoubleColumn(values=[2.0, 2.0])))),
    min_size=1, max_size=6))
def _backtest_examples(channel, messages):
    _check_backtest_stream(channel, messages)


def _check_backtest_stream(channel, messages):
    call = channel.stream_stream("/pricegrid.v1.RiskService/Backtest")
    replies = call(iter(messages), timeout=30)
    got = []
    try:
        for r in replies:
            got.append(rpb.BacktestResponse.FromString(r))
    except grpc.RpcError as err:  # the first bad message ends the stream, after the replies before it
        assert err.code() in PROPER and err.details(), (err.code(), err.details())
        assert len(got) < len(messages)
    else:
        assert len(got) == len(messages)
    for r in got:
        for t in (r.kupiec_pof, r.christoffersen_independence, r.conditional_coverage):
            assert t.status != rpb.STATISTIC_STATUS_UNSPECIFIED
            if t.HasField("statistic"):
                assert math.isfinite(t.statistic) and t.statistic >= 0 and 0 <= t.p_value <= 1, r
            else:
                assert t.status == rpb.STATISTIC_STATUS_UNDEFINED and t.note
        assert r.exceptions <= r.observations and r.traffic_light.window_exceptions <= r.exceptions


def test_backtest_stream(channel):
    _backtest_examples(channel)
    _still_serving(channel)


def _put_history(channel, request) -> rpb.PutBacktestHistoryResponse:
    code, reply, details = _call(channel, "RiskService", "PutBacktestHistory", request.SerializeToString())
    assert code == grpc.StatusCode.OK, details
    return rpb.PutBacktestHistoryResponse.FromString(reply)


def _from_history():
    return rpb.BacktestRequest(settings=rpb.BacktestSettings(level=0.99, window=5), history="fuzz-stream-history",
                               pnl=c.DoubleColumn(values=[-4.0]), var=c.DoubleColumn(values=[2.0]))


@FUZZ
@given(messages=st.lists(st.one_of(mutated(_from_history), mutated(_backtest_request)), min_size=1, max_size=4))
def _history_stream_examples(channel, messages):
    _check_backtest_stream(channel, messages)


def test_backtest_stream_from_a_stored_history(channel):
    """Streams whose first (or a later) message names a stored history, mutated."""
    _put_history(channel, rpb.PutBacktestHistoryRequest(name="fuzz-stream-history", history=_history()))
    call = channel.stream_stream("/pricegrid.v1.RiskService/Backtest")
    valid = [rpb.BacktestResponse.FromString(b) for b in call(iter([_from_history().SerializeToString()]), timeout=30)]
    assert valid[0].observations == 4 and valid[0].exceptions == 2  # the stored days, then the message's
    _history_stream_examples(channel)
    _still_serving(channel)


def test_backtest_history_appends(channel):
    """Appends (to the newest, or to a version by base_id), mutated; the name keeps only its
    newest version between examples, so that the long profile's appends do not pile up."""
    base = _put_history(channel, rpb.PutBacktestHistoryRequest(name="fuzz-append", history=_history()))
    first = base.backtest_history.id

    def append():
        return rpb.PutBacktestHistoryRequest(name="fuzz-append", history=_history(), append=True)

    def after_base():
        return rpb.PutBacktestHistoryRequest(name="fuzz-append", history=_history(), base_id=first)

    assert _put_history(channel, append()).backtest_history.observations == 6

    @FUZZ
    @given(data=st.one_of(mutated(append), mutated(after_base)))
    def run(data):
        code, reply, details = _call(channel, "RiskService", "PutBacktestHistory", data)
        if code != grpc.StatusCode.OK:
            assert code in PROPER and details, (code, details)
            return
        stored = rpb.PutBacktestHistoryResponse.FromString(reply).backtest_history
        assert 0 <= stored.exceptions <= stored.observations and stored.var_convention in (1, 2), stored
        code, listed, _ = _call(channel, "RiskService", "ListBacktestHistories", rpb.ListBacktestHistoriesRequest(
            name=stored.name, limit=1000).SerializeToString())
        assert code == grpc.StatusCode.OK
        for old in rpb.ListBacktestHistoriesResponse.FromString(listed).backtest_histories[1:]:
            _call(channel, "RiskService", "DeleteBacktestHistory",
                  rpb.DeleteBacktestHistoryRequest(id=old.id).SerializeToString())

    run()
    _still_serving(channel)


def _scenario_request(snapshot_id: str):
    port = pb.PriceBatchRequest(model=c.MODEL_BLACK_SCHOLES_MERTON, european=pb.EuropeanOptionColumns(
        option_type=c.Int32Column(values=[1, 2]), strike=c.DoubleColumn(values=[95.0, 105.0]),
        time_to_expiry=c.DoubleColumn(values=[0.5, 1.0])))
    port.market.snapshot_id, port.market.underlying_id = snapshot_id, "SPX"
    r = rpb.RunScenarioRiskRequest(portfolio=port, quantity=c.DoubleColumn(values=[1.0, -2.0]),
                                   output=rpb.SCENARIO_OUTPUT_BOTH, var_levels=[0.9], es_levels=[0.8])
    r.scenarios.shifts.add(name="spot", quantity=rpb.SHIFT_QUANTITY_SPOT, kind=rpb.SHIFT_KIND_RELATIVE, selector=["SPX"])
    r.scenarios.shifts.add(name="rate", quantity=rpb.SHIFT_QUANTITY_ZERO_RATE, kind=rpb.SHIFT_KIND_ABSOLUTE,
                           selector=["US*"]).buckets.tenors.extend(["6M", "2Y"])
    r.scenarios.shifts.add(name="vol", quantity=rpb.SHIFT_QUANTITY_VOL, kind=rpb.SHIFT_KIND_ABSOLUTE, selector=["SPX-*"])
    r.tags.add(name="desk", values=["eq", "vol"])
    r.tags.add(name="book", values=["B1"])
    r.aggregate_by.extend(["desk", "book"])
    r.scenarios.labels.extend(["a", "b", "c"])
    r.scenarios.sizes.values.extend([-0.1, 0.0, 0.1, 0.001, 0.0, -0.001, 0.0, 0.0, 0.0, 0.02, 0.0, -0.02])
    return r


def test_scenario_risk(channel):
    from pricegrid.v1 import market_pb2_grpc

    snap = snapshot()
    snap.name = "fuzz-scenarios"
    snap.underlyings[0].vol_surface = "SPX-vol"
    sid = market_pb2_grpc.MarketDataServiceStub(channel).PutSnapshot(
        mpb.PutSnapshotRequest(snapshot=snap, force=True, reason="fuzz"), timeout=10).info.id
    call = channel.unary_stream("/pricegrid.v1.RiskService/RunScenarioRisk")
    valid = [rpb.RunScenarioRiskResponse.FromString(b) for b in call(_scenario_request(sid).SerializeToString(),
                                                                      timeout=30)]
    assert [p.WhichOneof("part") for p in valid] == ["header", "block", "trailer"]  # the base request runs

    def with_history():
        r = _scenario_request(sid)
        r.scenarios.ClearField("labels")
        r.scenarios.ClearField("sizes")
        h = r.scenarios.history
        h.dates.extend(["2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08"])
        h.levels.values.extend([100.0, 0.03, 0.031, 0.2, 101.0, 0.031, 0.03, 0.21, 99.0, 0.029, 0.03, 0.19,
                                102.0, 0.03, 0.032, 0.2])
        h.holding_period = 2
        return r

    valid = [rpb.RunScenarioRiskResponse.FromString(b) for b in call(with_history().SerializeToString(), timeout=30)]
    assert valid[0].header.scenario_labels == ["2026-01-05/2026-01-07", "2026-01-06/2026-01-08"]

    def with_snapshot_history():  # one snapshot of that name: refused (a history needs two), mutated further
        r = with_history()
        h = r.scenarios.history
        h.ClearField("dates")
        h.ClearField("levels")
        h.snapshots.name = "fuzz-scenarios"
        h.holding_period = 1
        return r

    def with_books():
        r = _scenario_request(sid)
        for name in ("portfolio", "quantity", "tags"):
            r.ClearField(name)
        r.books.CopyFrom(_portfolio(""))
        r.snapshot_id = sid
        r.tags.add(name="book", values=["B1"])
        r.es_attribution = r.incremental_es = True
        return r

    def with_slice():
        r = with_books()
        r.es_attribution = r.incremental_es = False
        r.trade_start, r.trade_stop = 1, 3
        return r

    def with_stresses():
        r = with_books()
        r.scenarios.stresses.extend(["covid-2020", "black-monday-1987"])
        r.scenarios.stress_targets.add(factor="equity", selectors=["SPX"])
        r.scenarios.stress_targets.add(factor="equity_vol", selectors=["SPX-*"])
        r.scenarios.stress_targets.add(factor="usd_rates", selectors=["US*"])
        return r

    valid = [rpb.RunScenarioRiskResponse.FromString(b) for b in call(with_stresses().SerializeToString(), timeout=30)]
    assert list(valid[0].header.scenario_labels)[-2:] == ["covid-2020", "black-monday-1987"]
    valid = [rpb.RunScenarioRiskResponse.FromString(b) for b in call(with_books().SerializeToString(), timeout=30)]
    assert [b.product for b in valid[0].header.books] == ["european", "digital"]
    assert list(valid[0].header.trade_ids) == ["0:0", "0:1", "D1", "D2"]

    def with_taylor(hybrid: bool, make_base=lambda: _scenario_request(sid)):
        def make():
            r = make_base()
            r.es_attribution = r.incremental_es = False  # (FULL only)
            r.revaluation = rpb.REVALUATION_MODE_HYBRID if hybrid else rpb.REVALUATION_MODE_TAYLOR
            r.taylor.bumps.extend([1e-3, 1e-4, 1e-3])
            r.taylor.cross_gamma = True
            if hybrid:
                r.taylor.hybrid_tail = 2
            else:
                r.taylor.check_scenarios, r.taylor.check = 2, rpb.TAYLOR_CHECK_TAIL
            return r
        return make

    for make in (with_taylor(False), with_taylor(True), with_taylor(True, with_books)):
        valid = [rpb.RunScenarioRiskResponse.FromString(b) for b in call(make().SerializeToString(), timeout=30)]
        assert len(valid[-1].trailer.taylor.revalued) == 2

    @FUZZ
    @given(data=st.one_of(mutated(lambda: _scenario_request(sid)), mutated(with_history), mutated(with_books),
                          mutated(with_stresses), mutated(with_snapshot_history), mutated(with_taylor(False)),
                          mutated(with_slice),
                          mutated(with_taylor(True)), mutated(with_taylor(True, with_books))))
    def run(data):
        parts = []
        try:
            for b in call(data, timeout=30):
                parts.append(rpb.RunScenarioRiskResponse.FromString(b))
        except grpc.RpcError as err:  # refused before the header, never half-written without a status
            assert err.code() in PROPER and err.details(), (err.code(), err.details())
            assert not parts
            return
        kinds = [p.WhichOneof("part") for p in parts]
        assert kinds[0] == "header" and kinds[-1] == "trailer" and set(kinds[1:-1]) <= {"block", "progress"}
        trailer = parts[-1].trailer
        pnl = np.frombuffer(trailer.portfolio_pnl.raw, dtype="<f8") if trailer.portfolio_pnl.raw else np.zeros(0)
        assert np.isfinite(pnl).all()
        if trailer.HasField("taylor"):
            t = trailer.taylor
            values = [x.value for x in (*t.taylor_var, *t.revalued_var, *t.taylor_expected_shortfall,
                                        *t.revalued_expected_shortfall)]
            if t.HasField("max_abs_error"):
                values += [t.max_abs_error, t.rms_error]
            assert all(math.isfinite(v) for v in values), t
        for p in parts[1:-1]:
            if p.WhichOneof("part") != "block":  # (progress, with output AGGREGATES)
                continue
            cube = np.frombuffer(p.block.pnl, dtype="<f4" if p.block.cube_type == rpb.CUBE_TYPE_FLOAT32 else "<f8")
            failed = {(e.trade, e.scenario) for e in p.block.errors}
            assert np.isfinite(cube).all() or failed, "a NaN cell without its row error"

    run()
    _still_serving(channel)


def test_sensitivities(channel):
    from pricegrid.v1 import market_pb2_grpc

    snap = snapshot()
    snap.name = "fuzz-sensitivities"
    snap.underlyings[0].vol_surface = "SPX-vol"
    sid = market_pb2_grpc.MarketDataServiceStub(channel).PutSnapshot(
        mpb.PutSnapshotRequest(snapshot=snap, force=True, reason="fuzz"), timeout=10).info.id

    def base():
        r = _scenario_request(sid)
        return rpb.SensitivitiesRequest(portfolio=r.portfolio, quantity=r.quantity, shifts=r.scenarios.shifts,
                                        bumps=[1e-4, 1e-4, 1e-3], scheme=rpb.DIFFERENCE_SCHEME_CENTRAL)

    def cross():
        r = base()
        r.cross_gamma = True
        return r

    code, reply, details = _call(channel, "RiskService", "Sensitivities", base().SerializeToString())
    assert code == grpc.StatusCode.OK, details
    assert len(rpb.SensitivitiesResponse.FromString(reply).components) == 4
    code, reply, details = _call(channel, "RiskService", "Sensitivities", cross().SerializeToString())
    assert code == grpc.StatusCode.OK, details
    assert len(rpb.SensitivitiesResponse.FromString(reply).portfolio_cross_gamma.raw) == 8 * 16

    @FUZZ
    @given(data=st.one_of(mutated(base), mutated(cross)))
    def run(data):
        code, reply, details = _call(channel, "RiskService", "Sensitivities", data)
        if code != grpc.StatusCode.OK:
            assert code in PROPER and details, (code, details)
            return
        r = rpb.SensitivitiesResponse.FromString(reply)
        values = np.concatenate([_column(c, "<f8") for c in (r.delta, r.gamma, r.cross_gamma)])
        assert np.isfinite(values).all() or r.errors, "a NaN sensitivity without its row error"

    run()
    _still_serving(channel)


def test_worst_case(channel):
    from pricegrid.v1 import market_pb2_grpc

    snap = snapshot()
    snap.name = "fuzz-worst-case"
    snap.underlyings[0].vol_surface = "SPX-vol"
    sid = market_pb2_grpc.MarketDataServiceStub(channel).PutSnapshot(
        mpb.PutSnapshotRequest(snapshot=snap, force=True, reason="fuzz"), timeout=10).info.id

    def base():
        r = _scenario_request(sid)
        w = rpb.WorstCaseRequest(portfolio=r.portfolio, quantity=c.DoubleColumn(values=[-1.0, -2.0]),
                                 shifts=[r.scenarios.shifts[0], r.scenarios.shifts[2]], level=0.95, max_iterations=5,
                                 label="w")
        w.covariance.values.extend([0.05 ** 2, -0.3 * 0.05 * 0.02, -0.3 * 0.05 * 0.02, 0.02 ** 2])
        return w

    def reverse():
        w = base()
        w.loss = 1.0
        w.radius_steps = 5
        return w

    def with_books():
        w = base()
        for name in ("portfolio", "quantity"):
            w.ClearField(name)
        w.books.CopyFrom(_portfolio(""))
        w.snapshot_id = sid
        return w

    for make in (base, reverse, with_books):
        code, reply, details = _call(channel, "RiskService", "WorstCase", make().SerializeToString())
        assert code == grpc.StatusCode.OK, details
        r = rpb.WorstCaseResponse.FromString(reply)
        assert r.components == ["spot", "vol"] and r.pnl < 0 and r.reached

    @FUZZ
    @given(data=st.one_of(mutated(base), mutated(reverse), mutated(with_books)))
    def run(data):
        code, reply, details = _call(channel, "RiskService", "WorstCase", data)
        if code != grpc.StatusCode.OK:
            assert code in PROPER and details, (code, details)
            return
        r = rpb.WorstCaseResponse.FromString(reply)
        numbers = [r.pnl, r.radius2, r.radius_level, r.bound2, r.dof, r.delta_gamma_pnl, r.achieved_tolerance]
        columns = [_column(x, "<f8") for x in (r.move, r.trade_pnl, r.delta_gamma_move)]
        assert all(np.isfinite(v) for v in numbers) and all(np.isfinite(col).all() for col in columns), r

    run()
    _still_serving(channel)
