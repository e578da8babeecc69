"""Columns to raw bytes and back, broadcast, dates, option types, chunk plans, chunk requests."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from pricegrid.clients import RiskClient
from pricegrid.clients import _columns as C
from pricegrid.clients.testing import FakeChannel
from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import pricing_pb2 as pb


# ---------------------------------------------------------------------------- encode/decode
def test_double_column_is_raw_little_endian_and_round_trips():
    x = np.array([1.5, -2.25, np.nan, np.inf, 1e-300])
    col = C.double_column(C.as_float_column("x", x))
    assert col.raw == x.astype("<f8").tobytes() and len(col.values) == 0
    back = C.decode_double(pb.EffectiveInputColumns(forward=col).forward)
    np.testing.assert_array_equal(back, x)


def test_big_endian_and_strided_input_is_made_little_endian_contiguous():
    x = np.arange(10, dtype=">f8")[::2]
    a = C.as_float_column("x", x)
    assert a.dtype == np.dtype("<f8") and a.flags.c_contiguous
    np.testing.assert_array_equal(C.decode_double(C.double_column(a)), [0, 2, 4, 6, 8])


def test_int32_column_round_trip_and_slices():
    x = np.arange(-5, 5, dtype=np.int64)
    col = C.int32_column(x.astype("<i4"), 2, 7)
    assert col.raw == np.arange(-3, 2, dtype="<i4").tobytes()
    np.testing.assert_array_equal(C.decode_int32(col), np.arange(-3, 2))


def test_length_one_columns_are_sent_whole_and_broadcast_on_decode():
    one = C.as_float_column("rate", 0.05)
    assert one.shape == (1,)
    assert C.double_column(one, 100, 200).raw == np.array([0.05]).tobytes()  # not sliced away
    np.testing.assert_array_equal(C.decode_double(C.double_column(one), rows=4), [0.05] * 4)
    np.testing.assert_array_equal(C.decode_int32(c.Int32Column(values=[0]), rows=3), [0, 0, 0])


def test_packed_columns_decode_too():
    np.testing.assert_array_equal(C.decode_double(c.DoubleColumn(values=[1.0, 2.0])), [1.0, 2.0])
    np.testing.assert_array_equal(C.decode_int32(c.Int32Column(values=[3, 11])), [3, 11])


def test_decode_rejects_wrong_lengths():
    with pytest.raises(ValueError, match="multiple of 8"):
        C.decode_double(c.DoubleColumn(raw=b"\0" * 12))
    with pytest.raises(ValueError, match="expected 3"):
        C.decode_double(c.DoubleColumn(values=[1.0, 2.0]), rows=3)


def test_scalars_and_shapes():
    assert C.as_float_column("k", 3).tolist() == [3.0]
    with pytest.raises(ValueError, match="1-d"):
        C.as_float_column("k", np.zeros((2, 2)))
    assert C.as_float_column("k", []).shape == (0,)  # a 0-row batch: the server answers it
    assert C.broadcast_length({"strike": C.as_float_column("k", []), "rate": np.zeros(1)}) == 0
    assert C.plan_chunks(0, request_bytes_per_row=8, response_bytes_per_row=8).ranges == ((0, 0),)  # sent once
    with pytest.raises(ValueError, match="float64"):
        C.as_float_column("k", ["a"])


def test_broadcast_length_names_the_odd_column():
    cols = {"strike": np.zeros(5), "rate": np.zeros(1), "spot": np.zeros(5)}
    assert C.broadcast_length(cols) == 5
    with pytest.raises(ValueError, match="spot: has 4 rows; expected 5"):
        C.broadcast_length({"strike": np.zeros(5), "spot": np.zeros(4)})


# ---------------------------------------------------------------------------- option types
def test_option_types_from_ints_and_strings():
    np.testing.assert_array_equal(C.as_option_type_column([1, 2, 2]), [1, 2, 2])
    assert C.as_option_type_column([1, 2]).dtype == np.dtype("<i4")
    np.testing.assert_array_equal(C.as_option_type_column(["call", "P", "c", "Put ", "CALL"]), [1, 2, 1, 2, 1])
    np.testing.assert_array_equal(C.as_option_type_column(np.array(["C", "P"], dtype=object)), [1, 2])
    np.testing.assert_array_equal(C.as_option_type_column(pd.Series(["put", "call"]).to_numpy()), [2, 1])
    np.testing.assert_array_equal(C.as_option_type_column("put"), [2])
    with pytest.raises(ValueError, match="straddle"):
        C.as_option_type_column(["call", "straddle"])
    with pytest.raises(ValueError, match="unknown code 3"):
        C.as_option_type_column([1, 3])


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
def test_wide_integer_codes_are_checked_before_the_int32_cast(dtype):
    """2**32 + 1 wrapped to 1 (a call) and 2**32 + 2 to a put when the cast came first."""
    for code in (2**32 + 1, 2**32 + 2, 2**63 - 1 if dtype == np.int64 else 2**64 - 1):
        with pytest.raises(ValueError, match=f"unknown code {code}"):
            C.as_option_type_column(np.array([1, code], dtype=dtype))
        with pytest.raises(ValueError, match=f"barrier_type: unknown BarrierType code {code}"):
            C.as_enum_column("barrier_type", np.array([code], dtype=dtype), "BarrierType")
    np.testing.assert_array_equal(C.as_option_type_column(np.array([1, 2], dtype=dtype)), [1, 2])
    with pytest.raises(ValueError, match="unknown code -4294967295"):
        C.as_option_type_column(np.array([-(2**32) + 1], dtype=np.int64))


# ---------------------------------------------------------------------------- dates
def test_dates_become_days_since_epoch():
    expected = [0, 20090, -1]
    for values in (
        np.array(["1970-01-01", "2025-01-02", "1969-12-31"], dtype="datetime64[D]"),
        np.array(["1970-01-01T00:00", "2025-01-02T23:59", "1969-12-31T12:00"], dtype="datetime64[ns]"),
        [dt.date(1970, 1, 1), dt.date(2025, 1, 2), dt.date(1969, 12, 31)],
        [dt.datetime(1970, 1, 1, 8), dt.datetime(2025, 1, 2, 18), dt.datetime(1969, 12, 31, 1)],
        ["1970-01-01", "2025-01-02", "1969-12-31"],
        pd.to_datetime(pd.Series(["1970-01-01", "2025-01-02", "1969-12-31"])).to_numpy(),
        np.array(expected),
    ):
        out = C.as_date_column("expiry_date", values)
        assert out.dtype == np.dtype("<i4")
        assert out.tolist() == expected, values
    np.testing.assert_array_equal(C.days_to_datetime64(np.array(expected)), np.array(["1970-01-01", "2025-01-02", "1969-12-31"], dtype="datetime64[D]"))
    assert C.as_date_column("d", dt.date(2025, 1, 2)).tolist() == [20090]


def test_missing_or_bad_dates_are_named():
    with pytest.raises(ValueError, match="expiry_date"):
        C.as_date_column("expiry_date", np.array(["2025-01-02", "NaT"], dtype="datetime64[D]"))
    with pytest.raises(ValueError, match="expiry_date"):
        C.as_date_column("expiry_date", ["not a date"])


def test_one_date():
    assert C.as_date("v", "2025-01-02") == dt.date(2025, 1, 2)
    assert C.as_date("v", np.datetime64("2025-01-02T10:00")) == dt.date(2025, 1, 2)
    assert C.as_date("v", pd.Timestamp("2025-01-02 10:00")) == dt.date(2025, 1, 2)
    assert C.as_date("v", dt.datetime(2025, 1, 2, 10)) == dt.date(2025, 1, 2)
    with pytest.raises(ValueError, match="v"):
        C.as_date("v", np.datetime64("NaT"))


# ---------------------------------------------------------------------------- chunk plans
def covers(plan, rows):
    flat = [i for a, b in plan.ranges for i in range(a, b)]
    return flat == list(range(rows))


def test_plan_respects_chunk_rows_and_covers_every_row_in_order():
    plan = C.plan_chunks(10, request_bytes_per_row=52, response_bytes_per_row=84, chunk_rows=4)
    assert plan.ranges == ((0, 4), (4, 8), (8, 10)) and plan.rows_per_chunk == 4 and len(plan) == 3
    assert covers(plan, 10)


def test_plan_keeps_request_and_response_well_under_the_message_limit():
    limit = 4 * 1024 * 1024
    plan = C.plan_chunks(1_000_000, request_bytes_per_row=52, response_bytes_per_row=84, max_message_bytes=limit)
    assert plan.rows_per_chunk * 84 + C.MESSAGE_OVERHEAD <= limit * 0.5
    assert plan.rows_per_chunk * 84 > limit * 0.4  # and not needlessly small
    assert covers(plan, 1_000_000)
    # the bigger side decides: a request heavier than its response
    plan = C.plan_chunks(100_000, request_bytes_per_row=200, response_bytes_per_row=12, max_message_bytes=limit)
    assert plan.rows_per_chunk * 200 <= limit * 0.5


def test_plan_respects_max_rows_and_the_smallest_cap_wins():
    plan = C.plan_chunks(25, request_bytes_per_row=8, response_bytes_per_row=8, max_rows=10, max_message_bytes=1 << 30)
    assert plan.ranges == ((0, 10), (10, 20), (20, 25))
    assert C.plan_chunks(25, request_bytes_per_row=8, response_bytes_per_row=8, max_rows=10, chunk_rows=3).rows_per_chunk == 3
    assert C.plan_chunks(7, request_bytes_per_row=8, response_bytes_per_row=8).ranges == ((0, 7),)
    with pytest.raises(ValueError):
        C.plan_chunks(7, request_bytes_per_row=8, response_bytes_per_row=8, chunk_rows=0)


def test_row_bytes_counts_only_columns_that_are_not_broadcast():
    assert C.row_bytes([np.zeros(5), np.zeros(1), np.zeros(5, dtype="<i4")]) == 12


# ---------------------------------------------------------------------------- chunk requests
def test_risk_client_builds_one_request_per_chunk_with_sliced_columns():
    risk = RiskClient(channel=FakeChannel(), chunk_rows=4)  # no ServerInfo: gRPC's defaults
    strike = np.arange(10, dtype=float) + 90
    batch = risk.price_batch_requests(
        model="bsm",
        option_type=np.where(np.arange(10) % 2, "put", "call"),
        strike=strike,
        expiry_date=np.array(["2026-01-02"] * 10, dtype="datetime64[D]"),
        valuation_date=dt.date(2025, 1, 2),
        day_count="ACT/360",
        spot=100.0,
        rate=0.05,
        volatility=np.full(10, 0.2),
        measures=("price", "delta"),
        effective_inputs=False,
    )
    assert batch.plan.ranges == ((0, 4), (4, 8), (8, 10)) and len(batch) == 3
    for (start, stop), req in batch:
        assert req.model == c.MODEL_BLACK_SCHOLES_MERTON
        assert list(req.measures) == [c.MEASURE_PRICE, c.MEASURE_DELTA]
        assert req.omit_effective_inputs and req.output_encoding == c.ENCODING_RAW
        np.testing.assert_array_equal(np.frombuffer(req.european.strike.raw, "<f8"), strike[start:stop])
        np.testing.assert_array_equal(np.frombuffer(req.european.option_type.raw, "<i4"), [1, 2, 1, 2][: stop - start])
        assert np.frombuffer(req.european.expiry_date.raw, "<i4").tolist() == [20455] * (stop - start)
        assert (req.european.valuation_date.year, req.european.valuation_date.month) == (2025, 1)
        assert req.european.day_count == c.DAY_COUNT_ACT_360
        assert np.frombuffer(req.market.spot.raw, "<f8").tolist() == [100.0]  # broadcast, sent whole
        assert np.frombuffer(req.market.rate.raw, "<f8").tolist() == [0.05]
        assert not req.market.HasField("dividend_yield") and not req.market.HasField("forward")
        assert not req.european.HasField("time_to_expiry")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(time_to_expiry=None), "exactly one of time_to_expiry"),
        (dict(expiry_date="2026-01-01"), "exactly one of time_to_expiry"),
        (dict(spot=None), "exactly one of spot"),
        (dict(forward=100.0), "exactly one of spot"),
        (dict(volatility=[0.1, 0.2, 0.3]), "strike: has 2 rows; expected 3"),
        (dict(day_count="ACT/360"), "day_count goes with expiry_date"),
        (dict(option_type="straddle"), "option_type"),
        (dict(model="sabr"), "unknown model"),
        (dict(instrument="swaption"), "unknown instrument"),
        (dict(instrument="barrier", barrier_type="sideways"), "unknown barrier_type"),
        (dict(engine="quantum"), "unknown engine"),
        (dict(measures=("speed",)), "unknown measure"),
    ],
)
def test_batch_inputs_are_checked_before_sending(kwargs, message):
    channel = FakeChannel()
    risk = RiskClient(channel=channel)
    args = dict(
        model="bsm", option_type="call", strike=np.array([90.0, 100.0]), time_to_expiry=0.5, spot=100.0, volatility=0.2
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        risk.price_batch(**args)
    assert channel.requests == []


def test_an_unknown_instrument_column_is_a_type_error():
    channel = FakeChannel()
    risk = RiskClient(channel=channel)
    with pytest.raises(TypeError, match="unknown barrier column 'nonsense'"):
        risk.price_batch(model="bsm", instrument="barrier", barrier_type="down_out", option_type="call", strike=100.0,
                         barrier=90.0, nonsense=1.0, time_to_expiry=0.5, spot=100.0, volatility=0.2)
    assert channel.requests == []


def test_expiry_date_needs_a_valuation_date():
    risk = RiskClient(channel=FakeChannel())
    with pytest.raises(ValueError, match="valuation_date"):
        risk.price_batch(model="bsm", option_type=1, strike=1.0, expiry_date="2026-01-01", spot=1.0, volatility=0.1)


def test_requests_written_in_the_wire_format_parse_as_the_messages_they_stand_for():
    risk = RiskClient(channel=FakeChannel(), chunk_rows=3)
    n = 7
    args = dict(
        model="black76",
        option_type=np.array([1, 2, 1, 2, 1, 2, 1]),
        strike=np.linspace(80, 120, n),
        time_to_expiry=np.linspace(0.1, 2.0, n),
        forward=100.0,
        rate=np.full(n, 0.01),
        volatility=0.3,
        measures=("price", "vega"),
        threads=2,
    )
    batch = risk.price_batch_requests(**args)
    assert batch.plan.ranges == ((0, 3), (3, 6), (6, 7))
    for (start, stop), payload in zip(batch.plan.ranges, batch.payloads):
        expected = pb.PriceBatchRequest(
            model=c.MODEL_BLACK_76,
            measures=[c.MEASURE_PRICE, c.MEASURE_VEGA],
            output_encoding=c.ENCODING_RAW,
            threads=2,
            european=pb.EuropeanOptionColumns(
                option_type=c.Int32Column(raw=args["option_type"][start:stop].astype("<i4").tobytes()),
                strike=c.DoubleColumn(raw=args["strike"][start:stop].tobytes()),
                time_to_expiry=c.DoubleColumn(raw=args["time_to_expiry"][start:stop].tobytes()),
            ),
            market=pb.MarketColumns(
                forward=c.DoubleColumn(raw=np.array([100.0]).tobytes()),
                rate=c.DoubleColumn(raw=args["rate"][start:stop].tobytes()),
                volatility=c.DoubleColumn(raw=np.array([0.3]).tobytes()),
            ),
        )
        assert pb.PriceBatchRequest.FromString(payload) == expected
        # and the size is that of the message, a few header bytes aside
        assert abs(len(payload) - expected.ByteSize()) < 64


def test_field_path_headers_for_long_payloads():
    # lengths past one varint byte (>= 128) and past two (>= 16384)
    for length in (0, 1, 127, 128, 300, 16384, 3_000_000):
        data = b"\xab" * length
        wire = C.field_path_headers(pb.PriceBatchRequest.DESCRIPTOR, ("market", "spot", "raw"), length) + data
        assert pb.PriceBatchRequest.FromString(wire).market.spot.raw == data
    with pytest.raises(ValueError, match="message"):
        C.field_path_headers(pb.PriceBatchRequest.DESCRIPTOR, ("market", "spot"), 8)


def test_alignment_padding_moves_payloads_onto_8_bytes():
    from pricegrid.clients._columns import alignment_padding

    for offset in range(64):
        pad = alignment_padding(offset)
        assert (offset + len(pad)) % 8 == 0 and len(pad) < 10
