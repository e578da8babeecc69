"""RiskClient against a real server: arrays in and out, chunking against the server's
limits, concurrent chunks reassembled in order, row errors, dates, DataFrames."""

import datetime as dt
import math
import threading

import grpc
import numpy as np
import pandas as pd
import pytest

from pricegrid.clients import EuropeanOption, ExpiryDates, FrontOfficeClient, Market, PricingError, RiskClient
from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import pricing_pb2 as pb
from pricegrid.v1 import pricing_pb2_grpc
from pricegrid.clients.testing import FakeChannel

from tests.conftest import start_server

GREEKS = ("price", "delta", "gamma", "vega", "theta", "rho")


def portfolio(n, seed=1):
    rng = np.random.default_rng(seed)
    return dict(
        option_type=np.where(rng.random(n) < 0.5, "call", "put"),
        strike=rng.uniform(60.0, 140.0, n),
        time_to_expiry=rng.uniform(0.05, 3.0, n),
        spot=rng.uniform(80.0, 120.0, n),
        rate=rng.uniform(0.0, 0.06, n),
        dividend_yield=rng.uniform(0.0, 0.03, n),
        volatility=rng.uniform(0.05, 0.6, n),
    )


def same(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, equal_nan=True)


@pytest.fixture(scope="module")
def risk(server):
    with RiskClient(target=server.address) as r:
        yield r


@pytest.fixture(scope="module")
def front(server):
    with FrontOfficeClient(target=server.address, timeout=5.0) as f:
        yield f


def test_batch_agrees_with_single_trade_prices(risk, front):
    p = portfolio(40)
    res = risk.price_batch(model="bsm", measures=GREEKS, **p)
    assert res.rows == 40 and list(res.columns) == list(GREEKS) and res.error_count == 0
    assert res.status.dtype == np.int32 and res.ok.all()
    for i in range(0, 40, 7):
        one = front.price(
            EuropeanOption(option_type=str(p["option_type"][i]), strike=p["strike"][i], expiry=p["time_to_expiry"][i]),
            Market(spot=p["spot"][i], rate=p["rate"][i], dividend_yield=p["dividend_yield"][i], volatility=p["volatility"][i]),
            measures=GREEKS[1:],
        )
        assert res["price"][i] == pytest.approx(one.price, rel=1e-12, abs=1e-12)
        for g in GREEKS[1:]:
            assert res[g][i] == pytest.approx(getattr(one.greeks, g), rel=1e-10, abs=1e-12), g
    assert res.inputs["forward"] == pytest.approx(p["spot"] * np.exp((p["rate"] - p["dividend_yield"]) * p["time_to_expiry"]), rel=1e-14)
    assert res.inputs["discount_factor"] == pytest.approx(np.exp(-p["rate"] * p["time_to_expiry"]), rel=1e-14)
    np.testing.assert_array_equal(res.inputs["volatility"], p["volatility"])
    assert res.priced_by.model == "black_scholes_merton" and res.stats.chunks == 1


def test_chunk_buffers_are_reused_across_batches_without_mixing_rows(server):
    # chunks of ~100 KB (over the size the client keeps): later batches are written into
    # the first one's buffers, each chunk only once gRPC has let go of the buffer
    from pricegrid.clients._copy import KEEP_BYTES

    n, rows = 12_000, 2_000
    batches = [portfolio(n, seed=s) for s in (21, 22, 23)]
    with RiskClient(target=server.address, chunk_rows=rows, max_in_flight=3) as whole:
        expected = [whole.price_batch(model="bsm", measures=GREEKS, **p) for p in batches]
    with RiskClient(target=server.address, chunk_rows=rows, max_in_flight=3) as chunked:
        pool = chunked._payloads
        assert pool.capacity == 5
        first, seen = None, set()
        for p, want in zip(batches + batches[::-1], expected + expected[::-1]):
            got = chunked.price_batch(model="bsm", measures=GREEKS, **p)
            assert got.stats.chunks == n // rows and got.stats.bytes_sent > (n // rows) * KEEP_BYTES
            for name in GREEKS:
                np.testing.assert_array_equal(got[name], want[name])
            kept = pool.buffers
            assert 1 <= len(kept) <= 5
            ids = {id(b) for b in kept}
            # the same bytes objects, batch after batch (one more where gRPC held them all)
            assert first is None or first <= ids
            first = ids
            # ... rewritten with this batch's chunks (a spare may still hold an earlier one's)
            fresh = set(chunked.price_batch_requests(model="bsm", measures=GREEKS, **p).payloads)
            seen |= fresh
            assert len(fresh) == n // rows and all(b in seen for b in kept) and any(b in fresh for b in kept)
            del kept
    assert chunked._payloads.kept == 0  # close() lets them go


def test_one_client_shared_by_threads_keeps_each_batch_its_own_chunks(server):
    # four threads price different portfolios through one RiskClient at once: its kept chunk
    # buffers are shared, and each chunk must still carry its own batch's rows
    from concurrent.futures import ThreadPoolExecutor

    n, rows = 12_000, 2_000
    batches = [portfolio(n, seed=40 + s) for s in range(8)]
    with RiskClient(target=server.address, chunk_rows=rows, max_in_flight=3) as one:
        expected = [one.price_batch(model="bsm", measures=GREEKS, **p) for p in batches]
    with RiskClient(target=server.address, chunk_rows=rows, max_in_flight=3) as shared:
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda p: shared.price_batch(model="bsm", measures=GREEKS, **p), batches * 2))
        assert shared._payloads.kept <= shared._payloads.capacity
    for res, want in zip(got, expected * 2):
        assert res.error_count == 0
        for name in GREEKS:
            np.testing.assert_array_equal(res[name], want[name])


def test_many_small_chunks_in_flight_reassemble_in_order(server, risk):
    n = 2000
    p = portfolio(n, seed=2)
    bad = [0, 36, 37, 1000, 1999]
    p["strike"][bad] = -1.0
    whole = risk.price_batch(model="bsm", measures=GREEKS, **p)

    # watch the chunks on the wire: how many are in flight at once
    state = {"now": 0, "most": 0, "calls": 0}
    lock = threading.Lock()

    class Watch(grpc.UnaryUnaryClientInterceptor):
        def intercept_unary_unary(self, continuation, details, request):
            if details.method.endswith("/PriceBatch"):
                with lock:
                    state["now"] += 1
                    state["calls"] += 1
                    state["most"] = max(state["most"], state["now"])

                def done(_):
                    with lock:
                        state["now"] -= 1

                future = continuation(details, request)
                future.add_done_callback(done)
                return future
            return continuation(details, request)

    base = grpc.insecure_channel(server.address, options=[("grpc.max_receive_message_length", -1)])
    channel = grpc.intercept_channel(base, Watch())
    try:
        chunked = RiskClient(channel=channel, chunk_rows=37, max_in_flight=4).price_batch(model="bsm", measures=GREEKS, **p)
    finally:
        base.close()
    assert chunked.stats.chunks == state["calls"] == math.ceil(n / 37)
    assert 2 <= state["most"] <= 4
    # Same rows, same values: a row's last bits may differ with its place in a request (the
    # kernels' SIMD body and scalar tail agree to ~1e-14), a misplaced row would not.
    for name in GREEKS:
        same(chunked[name], whole[name])
    for name in whole.inputs:
        same(chunked.inputs[name], whole.inputs[name])
    np.testing.assert_array_equal(chunked.status, whole.status)
    assert [e.row for e in chunked.errors] == bad == [e.row for e in whole.errors]
    assert all(e.field == "european.strike" and e.code == grpc.StatusCode.INVALID_ARGUMENT for e in chunked.errors)
    assert chunked.error_count == 5 and np.flatnonzero(~chunked.ok).tolist() == bad
    assert np.isnan(chunked["price"][bad]).all() and (chunked.status[bad] == 3).all()


@pytest.fixture(scope="module")
def small_server():
    running = start_server(max_rows=100, max_message_bytes=256 * 1024)
    yield running
    running.stop(1.0)


def test_batches_are_split_to_the_servers_limits(small_server, risk):
    n = 5000
    p = portfolio(n, seed=3)
    # the limit is real: the 5000 rows in one request are refused
    (whole,) = RiskClient(channel=FakeChannel()).price_batch_requests(model="bsm", **p).requests
    with grpc.insecure_channel(small_server.address) as channel:
        with pytest.raises(grpc.RpcError) as e:
            pricing_pb2_grpc.PricingServiceStub(channel).PriceBatch(whole, timeout=10)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    with RiskClient(target=small_server.address) as small:
        assert small.limits().max_rows == 100
        res = small.price_batch(model="bsm", measures=GREEKS, **p)
    assert res.stats.chunks == 50 and res.error_count == 0
    reference = risk.price_batch(model="bsm", measures=GREEKS, **p)
    for name in GREEKS:
        same(res[name], reference[name])


def test_message_size_limit_is_planned_against(small_server):
    with RiskClient(target=small_server.address, chunk_rows=None) as small:
        reqs = small.price_batch_requests(model="bsm", measures=GREEKS, **portfolio(100))
        assert all(r.ByteSize() < 128 * 1024 for r in reqs.requests)
        assert len(reqs) == 1
        wide = small.plan(10_000, request_bytes_per_row=4000, response_bytes_per_row=84)
        assert wide.rows_per_chunk * 4000 <= 128 * 1024  # bytes bind before max_rows does


def test_a_bad_whole_request_raises_pricing_error_with_the_field(risk):
    p = portfolio(10)
    with pytest.raises(PricingError) as e:
        risk.price_batch(model="black76", **p)  # Black-76 prices on a forward, not a spot
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.field.startswith("market.")


def test_a_zero_row_batch_is_sent_and_answered(risk):
    """0 rows is a batch the server answers (rows 0, the engine that would price it); the
    client sends it rather than refusing it, so the server also checks its shape."""
    empty = risk.price_batch(model="bsm", option_type=np.array([], np.int64), strike=np.array([]), time_to_expiry=0.5,
                             spot=100.0, rate=0.0, volatility=0.2, measures=["delta"])
    assert empty.rows == 0 and empty["delta"].shape == (0,)
    assert empty.status.shape == (0,) and empty.error_count == 0 and empty.priced_by.engine  # the server's answer
    frame = risk.price_frame(pd.DataFrame({"option_type": pd.Series([], dtype=str), "strike": pd.Series([], dtype=float)}),
                             model="bsm", time_to_expiry=0.5, spot=100.0, volatility=0.2)
    assert len(frame) == 0 and "price" in frame.columns
    iv = risk.implied_vol_batch(model="bsm", option_type=np.array([], np.int32), strike=np.array([]),
                                price=np.array([]), time_to_expiry=0.5, spot=100.0)
    assert iv.rows == 0 and iv["volatility"].shape == (0,)
    with pytest.raises(PricingError) as e:  # sent: the server checks the request's shape
        risk.price_batch(model="black76", option_type=np.array([], np.int32), strike=np.array([]),
                         time_to_expiry=0.5, spot=100.0, volatility=0.2)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.field.startswith("market.")


def test_broadcast_scalars(risk):
    strikes = np.array([90.0, 100.0, 110.0])
    res = risk.price_batch(model="bsm", option_type=1, strike=strikes, time_to_expiry=0.5, spot=100.0, rate=0.05, volatility=0.2)
    each = [
        risk.price_batch(model="bsm", option_type="call", strike=k, time_to_expiry=0.5, spot=100.0, rate=0.05, volatility=0.2)["price"][0]
        for k in strikes
    ]
    assert res.rows == 3 and res["price"].tolist() == each and res["price"][0] > res["price"][2]


def test_expiry_dates_and_day_counts(risk, front):
    valuation = dt.date(2025, 1, 2)
    expiries = np.array(["2025-04-02", "2025-07-02", "2026-01-02", "2027-06-30"], dtype="datetime64[D]")
    res = risk.price_batch(
        model="bsm", option_type=["C", "P", "C", "P"], strike=100.0, expiry_date=expiries, valuation_date=valuation,
        day_count="ACT/360", spot=100.0, rate=0.03, volatility=0.25,
    )
    as_dates = risk.price_batch(
        model="bsm", option_type=["C", "P", "C", "P"], strike=100.0, expiry_date=expiries.astype(object),
        valuation_date=np.datetime64("2025-01-02"), day_count="ACT/360", spot=100.0, rate=0.03, volatility=0.25,
    )
    np.testing.assert_array_equal(res["price"], as_dates["price"])
    for i, (kind, e) in enumerate(zip(["call", "put", "call", "put"], expiries.astype(object))):
        one = front.price(
            EuropeanOption(option_type=kind, strike=100.0, expiry=ExpiryDates(valuation_date=valuation, expiry_date=e, day_count="ACT/360")),
            Market(spot=100.0, rate=0.03, volatility=0.25),
        )
        assert res["price"][i] == pytest.approx(one.price, rel=1e-12)
        assert res.inputs["time_to_expiry"][i] == pytest.approx((e - valuation).days / 360, rel=1e-15)


def test_forward_models(risk):
    res = risk.price_batch(
        model="bachelier", option_type="call", strike=np.array([-0.01, 0.0, 0.01]), time_to_expiry=1.0,
        forward=0.0, rate=0.02, volatility=0.01, measures=("price", "delta"),
    )
    assert res.error_count == 0 and (np.diff(res["price"]) < 0).all()
    b76 = risk.price_batch(model="black76", option_type="put", strike=80.0, time_to_expiry=0.5, forward=82.0, rate=0.02, volatility=0.4)
    assert b76.priced_by.model == "black_76" and b76["price"][0] > 0


def test_effective_inputs_can_be_left_out(risk):
    res = risk.price_batch(model="bsm", effective_inputs=False, **portfolio(5))
    assert res.inputs == {} and res.rows == 5 and res.stats.bytes_received < 5 * 8 + 400


def test_implied_vol_batch_round_trip(risk):
    p = portfolio(300, seed=4)
    prices = risk.price_batch(model="bsm", **p)["price"]
    vols = p.pop("volatility")
    res = RiskClient(channel=risk.channel, chunk_rows=64).implied_vol_batch(model="bsm", price=prices, **p)
    assert res.stats.chunks == 5 and list(res.columns) == ["volatility"]
    assert res.ok.mean() > 0.95
    # where the price carries vol information the vol comes back; every positive vol found
    # reprices the premium (a price at its intrinsic bound carries none: the server says 0)
    found = res.ok & (res["volatility"] > 0)
    repriced = risk.price_batch(model="bsm", volatility=np.where(found, res["volatility"], 0.2), **p)["price"]
    np.testing.assert_allclose(repriced[found], prices[found], rtol=1e-9, atol=1e-9)
    vega = risk.price_batch(model="bsm", volatility=vols, measures=("vega",), **p)["vega"]
    informative = res.ok & (vega > 1e-3)
    assert informative.sum() > 200
    np.testing.assert_allclose(res["volatility"][informative], vols[informative], rtol=1e-7)


def test_data_frames(risk):
    p = portfolio(50, seed=5)
    df = pd.DataFrame(p, index=pd.Index([f"T{i}" for i in range(50)], name="trade"))
    out = risk.price_frame(df, model="bsm", measures=("price", "vega"))
    assert list(out.index) == list(df.index)
    assert list(out.columns) == ["price", "vega", "status", "status_name", "error", "effective_forward",
                                 "effective_discount_factor", "effective_time_to_expiry", "effective_volatility"]
    direct = risk.price_batch(model="bsm", measures=("price", "vega"), **p)
    np.testing.assert_array_equal(out["price"].to_numpy(), direct["price"])

    dated = pd.DataFrame({
        "option_type": ["call", "put"],
        "strike": [100.0, 100.0],
        "expiry_date": pd.to_datetime(["2026-01-02", "2026-07-02"]),
        "valuation_date": pd.to_datetime(["2025-01-02", "2025-01-02"]),
        "spot": 100.0,
        "volatility": 0.2,
    })
    res = risk.price_frame(dated, model="bsm", rate=0.01, day_count="ACT/365F")
    assert res["effective_time_to_expiry"].tolist() == pytest.approx([365 / 365, 546 / 365], rel=1e-15)

    # an instrument's own columns are read from the frame; a bad row says why
    barriers = pd.DataFrame({"option_type": ["call", "put", "put"], "strike": [100.0, 95.0, -5.0],
                             "time_to_expiry": [0.5, 1.0, 1.0], "barrier_type": ["down_out", "down_in", "down_in"],
                             "barrier": [80.0, 85.0, 85.0], "spot": 100.0, "rate": 0.03, "volatility": 0.2})
    res = risk.price_frame(barriers, model="bsm", instrument="barrier")
    by_hand = risk.price_batch(model="bsm", instrument="barrier", **{k: barriers[k].to_numpy() for k in barriers})
    np.testing.assert_array_equal(res["price"].to_numpy()[:2], by_hand["price"][:2])
    assert res["status_name"].tolist() == ["OK", "OK", "INVALID_ARGUMENT"]
    assert res["error"].iloc[2].startswith("barrier.strike: ") and res["error"].iloc[0] == ""

    p2 = {k: v for k, v in p.items() if k != "volatility"}
    iv_in = pd.DataFrame({**p2, "price": direct["price"]})
    iv = risk.implied_vol_frame(iv_in, model="bsm")
    assert list(iv.columns)[:2] == ["volatility", "status"] and list(iv.index) == list(iv_in.index)
    good = (iv["status"].to_numpy() == 0) & (direct["vega"] > 1e-3)
    assert good.sum() > 40
    np.testing.assert_allclose(iv["volatility"].to_numpy()[good], p["volatility"][good], rtol=1e-7)


def test_progress_bar(server, capsys):
    with RiskClient(target=server.address, chunk_rows=10, progress=True) as r:
        r.price_batch(model="bsm", **portfolio(100))
    err = capsys.readouterr().err
    assert "pricegrid" in err and "100/100" in err


def test_raw_requests_are_raw_bytes(risk):
    reqs = risk.price_batch_requests(model="bsm", **portfolio(8))
    (req,) = reqs.requests
    assert len(req.european.strike.raw) == 64 and not req.european.strike.values
    assert isinstance(req, pb.PriceBatchRequest) and req.output_encoding == c.ENCODING_RAW


def test_raw_columns_arrive_aligned_so_the_server_reads_them_in_place(risk):
    """Each raw column starts on an 8-byte boundary of its message (alignment_padding), so
    the server's zero-copy view needs no copy; the padding changes nothing else."""
    from pricegrid.server.rpc import requests
    from pricegrid.v1 import wire

    n = 1001
    rng = np.random.default_rng(3)
    batch = risk.price_batch_requests(model="bsm", option_type=rng.integers(1, 3, n).astype(np.int32),
                                      strike=rng.uniform(50, 150, n), time_to_expiry=rng.uniform(0.1, 2, n),
                                      spot=rng.uniform(90, 110, n), rate=0.01, volatility=rng.uniform(0.1, 0.4, n))
    for payload in batch.payloads:
        data = bytes(payload)
        assert np.frombuffer(data, np.uint8).ctypes.data % 8 == 0  # where the server's bytes start
        view = wire.parse(pb.PriceBatchRequest, data)
        for column in (view.european.strike, view.european.time_to_expiry, view.market.spot, view.market.volatility):
            values = requests.doubles(column, "x")
            assert np.shares_memory(values, np.frombuffer(data, np.uint8)), "copied: column not aligned"
        assert pb.PriceBatchRequest.FromString(data).european.strike.raw == view.european.strike.raw.tobytes()
