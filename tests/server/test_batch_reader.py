"""The compiled batch reader (pricegrid.server.rpc._codec.read_view): the same View as
pricegrid.v1.wire.parse and the generated code on every message, in time linear in its
size, refusing the crafted shapes that made the Python reader quadratic; and over RPC, a
crafted PriceBatch no longer stalls a concurrent Price. The bounds here are generous (shared
2-core VM); bench/test_bench_budgets.py has the tight figures."""

import threading
import time

import grpc
import numpy as np
import pytest

from pricegrid.server.rpc import _codec
from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import pricing_pb2 as pb
from pricegrid.v1 import wire

MiB = 1 << 20


def dump(v):
    """Every field a View holds, as plain values (columns as lists)."""
    out = {}
    for f in v.DESCRIPTOR.fields:
        if not v.HasField(f.name):
            continue
        x = getattr(v, f.name)
        if f.type == f.TYPE_MESSAGE:
            x = dump(x)
        elif isinstance(x, (np.ndarray, list)):
            x = [bool(e) if isinstance(e, np.bool_) else e for e in np.asarray(x).tolist()]
        elif isinstance(x, memoryview):
            x = bytes(x)
        out[f.name] = x
    return out


def generated(msg):
    """The generated message as the same plain values (set fields only)."""
    out = {}
    for f, x in msg.ListFields():
        if f.type == f.TYPE_MESSAGE:
            x = generated(x)
        elif f.is_repeated:
            x = list(x)
        out[f.name] = x
    return out


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
        settings=pb.EngineSettings(paths=-5, seed=2**63 + 5, max_step=0.25, sobol=True, tree_steps=-2),
    )


def both(data, cls=pb.PriceBatchRequest):
    return _codec.read_view(cls, data), wire.parse(cls, data)


def _lenfield(number, payload):
    return wire.tag(number, 2) + wire.varint(len(payload)) + payload


# ------------------------------------------------------------------ the same values
def test_reads_what_the_generated_code_reads():
    msg = batch_request(np.random.default_rng(0), 37)
    data = msg.SerializeToString()
    view, python = both(data)
    assert dump(view) == generated(msg)
    # both readers read int64 as two's complement, as upb does (pricegrid.v1.wire since 035f701)
    assert view.settings.paths == -5 and python.settings.paths == -5
    python_dump, view_dump = dump(python), dump(view)
    python_dump["settings"]["paths"] = view_dump["settings"]["paths"]
    assert python_dump == view_dump
    assert view.WhichOneof("instruments") == "european" and not view.HasField("american")
    assert isinstance(view.european.option_type.values, np.ndarray)  # int32 columns: arrays
    assert view.european.option_type.values.dtype == np.int32 and list(view.measures) == [1, 4]


def test_columns_are_views_into_the_message():
    data = batch_request(np.random.default_rng(1), 1000).SerializeToString()
    view = _codec.read_view(pb.PriceBatchRequest, data)
    bytes_ = np.frombuffer(data, np.uint8)
    assert np.shares_memory(bytes_, np.frombuffer(view.european.strike.raw, np.uint8))
    assert np.shares_memory(bytes_, view.market.forward.values.view(np.uint8))


def test_merges_concatenated_messages_and_switches_oneofs_as_the_spec_says():
    a = pb.PriceBatchRequest(model=c.MODEL_BLACK_76, market=pb.MarketColumns(rate=c.DoubleColumn(values=[1.0])),
                             european=pb.EuropeanOptionColumns(day_count=c.DAY_COUNT_ACT_365F))
    b = pb.PriceBatchRequest(model=c.MODEL_BACHELIER, market=pb.MarketColumns(
        spot=c.DoubleColumn(values=[2.0]), rate=c.DoubleColumn(values=[3.0, 4.0])),
        american=pb.AmericanOptionColumns(day_count=c.DAY_COUNT_ACT_360))
    d = pb.PriceBatchRequest(european=pb.EuropeanOptionColumns(strike=c.DoubleColumn(values=[5.0])))
    for data in (a.SerializeToString() + b.SerializeToString(),
                 a.SerializeToString() + b.SerializeToString() + d.SerializeToString()):
        view, python = both(data)
        assert dump(view) == dump(python) == generated(pb.PriceBatchRequest.FromString(data))
    # the European member came back after the American one: a fresh message, not a merge
    assert dump(view)["european"] == {"strike": {"values": [5.0]}}


def test_columns_sent_in_pieces_are_one_column():
    """Several packed runs and unpacked items of one column (legal, if unusual)."""
    values = np.arange(10.0)
    body = b"".join(_lenfield(1, values[i:i + 3].tobytes()) for i in range(0, 9, 3))
    body += wire.tag(1, 1) + values[9:].tobytes()
    ints = _lenfield(1, b"".join(wire.varint(v) for v in (1, 2, 300))) + wire.tag(1, 0) + wire.varint(2**32 + 7)
    data = _lenfield(3, _lenfield(6, body) + _lenfield(1, ints)) + wire.tag(2, 0) + wire.varint(4)
    view, python = both(data)
    np.testing.assert_array_equal(view.european.strike.values, values)
    assert view.european.option_type.values.tolist() == [1, 2, 300, 7] and view.measures == [4]
    assert dump(view) == dump(python) == generated(pb.PriceBatchRequest.FromString(data))


def test_unknown_fields_are_skipped_and_negative_enums_kept():
    data = pb.PriceBatchRequest(model=-7, threads=-1).SerializeToString()
    data += wire.tag(99, 0) + wire.varint(5) + wire.tag(98, 2) + wire.varint(3) + b"abc" + wire.tag(97, 5) + b"abcd"
    view = _codec.read_view(pb.PriceBatchRequest, data)
    assert view.model == -7 and view.threads == -1
    assert dump(view) == generated(pb.PriceBatchRequest.FromString(data))


def test_the_implied_vol_batch_reads_the_same():
    rng = np.random.default_rng(3)
    msg = pb.ImpliedVolatilityBatchRequest(
        model=c.MODEL_BLACK_SCHOLES_MERTON,
        european=pb.EuropeanOptionColumns(strike=c.DoubleColumn(values=rng.uniform(size=5).tolist()),
                                          time_to_expiry=c.DoubleColumn(values=[1.0])),
        price=c.DoubleColumn(raw=rng.uniform(size=5).tobytes()), omit_effective_inputs=True)
    view = _codec.read_view(pb.ImpliedVolatilityBatchRequest, msg.SerializeToString())
    assert dump(view) == generated(msg)


@pytest.mark.parametrize("data", [b"\x08", b"\x1a\x05ab", b"\x0f", b"\x1a\x02\x08", b"\x80" * 11, b"\x1a\x02\x09\x01",
                                  b"\x1a\x02\x30\x01", b"\x22\x04\x2a\x02\x0a\x03", b"\x12\x01\x80", b"\x00\x01",
                                  b"\x22\x03\x0a\x01\x80", b"\x4a\x02\x1a\x01"])
def test_malformed_input_raises_decode_error_as_the_python_reader_does(data):
    with pytest.raises(wire.DecodeError):
        wire.parse(pb.PriceBatchRequest, data)
    with pytest.raises(wire.DecodeError):
        _codec.read_view(pb.PriceBatchRequest, data)


def test_mutated_messages_read_the_same_or_fail_in_both():
    """A few thousand truncations and byte flips of valid requests."""
    rng = np.random.default_rng(7)
    seeds = [pb.PriceBatchRequest(model=c.MODEL_BLACK_SCHOLES_MERTON, measures=[1, 2],
                                  american=pb.AmericanOptionColumns(
                                      option_type=c.Int32Column(values=[1, 2, 2]),
                                      strike=c.DoubleColumn(values=[90.0, 100.0, 110.0]),
                                      time_to_expiry=c.DoubleColumn(raw=np.ones(3).tobytes())),
                                  market=pb.MarketColumns(spot=c.DoubleColumn(values=[100.0]), underlying_id="X"),
                                  settings=pb.EngineSettings(tree_steps=101, sobol=True)).SerializeToString(),
             batch_request(rng, 5).SerializeToString()]
    agreed = 0
    for i in range(3000):
        data = bytearray(seeds[i % 2])
        if i % 3 == 0:
            data = data[: rng.integers(0, len(data))]
        else:
            for _ in range(rng.integers(1, 4)):
                data[rng.integers(0, len(data))] = rng.integers(0, 256)
        data = bytes(data)
        try:
            python = dump(wire.parse(pb.PriceBatchRequest, data))
        except wire.DecodeError:
            python = None
        try:
            view = dump(_codec.read_view(pb.PriceBatchRequest, data))
        except wire.DecodeError:
            view = None
        if python is not None and "settings" in python:  # the Python reader keeps varints as sent
            st = python["settings"]
            if "seed" in st:
                st["seed"] &= 2**64 - 1  # (uint64: a 10-byte varint can carry 70 bits)
            if "paths" in st:
                st["paths"] = (st["paths"] & 2**64 - 1) - (2**64 if st["paths"] & 2**63 else 0)  # int64
        assert (python is None) == (view is None), data
        assert python == view, data
        agreed += python is not None
    assert agreed > 300


# ------------------------------------------------------------------ bounded on crafted input
def crafted():
    """The shapes that held the GIL for seconds in the Python reader, 1.3 MiB each."""
    size = int(1.3 * MiB)
    one = _lenfield(4, _lenfield(3, wire.tag(1, 1) + b"\0" * 8))
    return {
        "repeated singular message": one * (size // len(one)),
        "unpacked doubles": _lenfield(3, _lenfield(6, (wire.tag(1, 1) + b"\0" * 8) * (size // 9))),
        "packed int32 column": _lenfield(3, _lenfield(1, _lenfield(1, b"\x01" * size))),
        "unknown fields": (wire.tag(99, 0) + b"\0") * (size // 2),
        "packed measures": _lenfield(2, b"\x01" * size),
        "merged columns": (_lenfield(3, _lenfield(6, wire.tag(1, 1) + b"\0" * 8))) * 4000,
    }


@pytest.mark.parametrize("name", list(crafted()))
def test_crafted_requests_are_read_or_refused_in_milliseconds(name):
    data = crafted()[name]
    t = time.perf_counter()
    try:
        view = _codec.read_view(pb.PriceBatchRequest, data)
        outcome = "read"
    except wire.DecodeError as exc:
        outcome = str(exc)
    took = time.perf_counter() - t
    assert took < 0.25, (name, took)  # the Python reader: 0.3 to 3 s
    if name == "repeated singular message":
        assert outcome == f"market: more than {_codec.MAX_MERGED} occurrences of a singular message field"
    elif name == "packed measures":
        assert outcome == f"measures: more than {_codec.MAX_ENUMS} values"
    else:
        assert outcome == "read"
    if name == "unpacked doubles":
        assert len(view.european.strike.values) == int(1.3 * MiB) // 9
    if name == "merged columns":
        assert len(view.european.strike.values) == 4000


# ------------------------------------------------------------------ over RPC
def _fast_price():
    return pb.PriceRequest(
        model=c.MODEL_BLACK_SCHOLES_MERTON,
        european=pb.EuropeanOption(option_type=c.OPTION_TYPE_CALL, strike=100.0, expiry=pb.Expiry(year_fraction=1.0)),
        market=pb.Market(spot=100.0, rate=0.03, volatility=0.2),
    )


def test_a_crafted_batch_does_not_stall_a_concurrent_price(stub, channel):
    price_batch = channel.unary_unary("/pricegrid.v1.PricingService/PriceBatch")  # raw bytes
    stop = threading.Event()
    latencies = []

    def front_office():
        request = _fast_price()
        while not stop.is_set():
            t = time.perf_counter()
            stub.Price(request, timeout=10)
            latencies.append(time.perf_counter() - t)
            time.sleep(0.002)

    thread = threading.Thread(target=front_office)
    thread.start()
    try:
        time.sleep(0.1)
        codes = []
        for name, data in crafted().items():
            for _ in range(2):
                with pytest.raises(grpc.RpcError) as err:
                    price_batch(data, timeout=10)
                codes.append((name, err.value.code()))
        time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)
    assert all(code == grpc.StatusCode.INVALID_ARGUMENT for _, code in codes), codes
    assert len(latencies) > 20
    assert max(latencies) < 0.25, sorted(latencies)[-5:]  # was a 2-3 s stall per crafted request
