"""pricegrid.v1.wire against the generated code: same values, no copies, same errors."""

import numpy as np
import pytest

from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import pricing_pb2 as pb
from pricegrid.v1 import wire


def batch_request(rng, n):
    return pb.PriceBatchRequest(
        model=c.MODEL_BACHELIER,
        measures=[c.MEASURE_PRICE, c.MEASURE_VEGA],
        european=pb.EuropeanOptionColumns(
            option_type=c.Int32Column(values=rng.integers(1, 3, n).tolist()),
            strike=c.DoubleColumn(raw=rng.normal(size=n).tobytes()),
            expiry_date=c.Int32Column(raw=rng.integers(0, 30000, n).astype("<i4").tobytes()),
            valuation_date=c.Date(year=2026, month=11, day=24),
            day_count=c.DAY_COUNT_ACT_ACT_ISDA,
        ),
        market=pb.MarketColumns(forward=c.DoubleColumn(values=rng.normal(size=n).tolist()),
                                rate=c.DoubleColumn(values=[-0.01]), snapshot_id="snap-é"),
        output_encoding=c.ENCODING_PACKED,
        threads=-3,
    )


def test_view_reads_what_the_generated_code_reads():
    rng = np.random.default_rng(0)
    msg = batch_request(rng, 37)
    data = msg.SerializeToString()
    v = wire.parse(pb.PriceBatchRequest, data)
    assert v.model == msg.model and list(v.measures) == list(msg.measures)
    assert v.WhichOneof("instruments") == "european" and v.threads == -3
    assert v.output_encoding == c.ENCODING_PACKED and v.omit_effective_inputs is False
    e = v.european
    assert list(e.option_type.values) == list(msg.european.option_type.values)
    assert bytes(e.strike.raw) == msg.european.strike.raw and bytes(e.expiry_date.raw) == msg.european.expiry_date.raw
    assert (e.valuation_date.year, e.valuation_date.month, e.valuation_date.day) == (2026, 11, 24)
    assert e.day_count == c.DAY_COUNT_ACT_ACT_ISDA
    np.testing.assert_array_equal(v.market.forward.values, np.array(msg.market.forward.values))
    assert v.market.HasField("forward") and v.market.HasField("rate") and not v.market.HasField("spot")
    assert v.market.snapshot_id == "snap-é"
    assert len(v.market.spot.raw) == 0 and len(v.market.spot.values) == 0  # unset: defaults


def test_columns_are_views_into_the_message():
    data = batch_request(np.random.default_rng(1), 1000).SerializeToString()
    v = wire.parse(pb.PriceBatchRequest, data)
    strike = np.frombuffer(v.european.strike.raw, "<f8")
    assert strike.base is not None and not strike.flags.owndata
    assert np.shares_memory(np.frombuffer(data, np.uint8), np.frombuffer(v.european.strike.raw, np.uint8))
    assert np.shares_memory(np.frombuffer(data, np.uint8), v.market.forward.values.view(np.uint8))


def test_last_scalar_wins_messages_merge_oneofs_switch():
    a = pb.PriceBatchRequest(model=c.MODEL_BLACK_76, market=pb.MarketColumns(rate=c.DoubleColumn(values=[1.0])))
    b = pb.PriceBatchRequest(model=c.MODEL_BACHELIER, market=pb.MarketColumns(spot=c.DoubleColumn(values=[2.0])),
                             european=pb.EuropeanOptionColumns(day_count=c.DAY_COUNT_ACT_360))
    data = a.SerializeToString() + b.SerializeToString()  # concatenation = merge, per the spec
    ref = pb.PriceBatchRequest.FromString(data)
    v = wire.parse(pb.PriceBatchRequest, data)
    assert v.model == ref.model == c.MODEL_BACHELIER
    assert v.market.HasField("rate") and v.market.HasField("spot")
    assert list(v.market.rate.values) == [1.0] and list(v.market.spot.values) == [2.0]
    stream = pb.PriceStreamRequest(price=pb.PriceRequest(model=1)).SerializeToString() + pb.PriceStreamRequest(
        market_update=pb.MarketUpdate(spot=3.0)).SerializeToString()
    assert wire.parse(pb.PriceStreamRequest, stream).WhichOneof("body") == "market_update"


def test_unknown_fields_are_skipped_and_unpacked_repeats_accepted():
    data = pb.PriceBatchRequest(model=2).SerializeToString()
    data += wire.tag(99, 0) + wire.varint(5) + wire.tag(98, 2) + wire.varint(3) + b"abc"
    data += wire.tag(2, 0) + wire.varint(c.MEASURE_DELTA)  # measures, not packed
    v = wire.parse(pb.PriceBatchRequest, data)
    assert v.model == 2 and list(v.measures) == [c.MEASURE_DELTA]
    assert list(pb.PriceBatchRequest.FromString(data).measures) == [c.MEASURE_DELTA]


def test_negative_enums_and_ints():
    msg = pb.PriceBatchRequest(model=-7, threads=-1)
    v = wire.parse(pb.PriceBatchRequest, msg.SerializeToString())
    assert v.model == -7 and v.threads == -1
    # int64 and uint64 too (settings.paths = -1 is refused as -1, not read as 2**64 - 1)
    msg = pb.PriceBatchRequest(settings=pb.EngineSettings(paths=-1, seed=2**64 - 1))
    v = wire.parse(pb.PriceBatchRequest, msg.SerializeToString())
    assert v.settings.paths == -1 and v.settings.seed == 2**64 - 1


@pytest.mark.parametrize("data", [b"\x08", b"\x1a\x05ab", b"\x0f", b"\x1a\x02\x08", b"\x80" * 11, b"\x1a\x02\x09\x01"])
def test_malformed_input_raises_decode_error(data):
    with pytest.raises(wire.DecodeError):
        wire.parse(pb.PriceBatchRequest, data)


def test_writers_produce_what_the_generated_code_parses():
    values = np.random.default_rng(2).normal(size=17)
    chunks = wire.field_varint(1, 17) + wire.field_message(
        2, wire.field_varint(1, c.MEASURE_GAMMA) + wire.field_message(2, wire.field_bytes(1, values)))
    chunks += wire.field_message(3, wire.field_bytes(2, np.arange(17, dtype="<i4")))
    msg = pb.PriceBatchResponse.FromString(b"".join(chunks))
    assert msg.rows == 17 and msg.columns[0].measure == c.MEASURE_GAMMA
    np.testing.assert_array_equal(np.array(msg.columns[0].values.values), values)
    assert np.frombuffer(msg.status.raw, "<i4").tolist() == list(range(17))
    assert wire.field_varint(5, 0) == []  # proto3 default: not written
    assert wire.varint(300) == b"\xac\x02" and wire.varint(-1) == b"\xff" * 9 + b"\x01"
