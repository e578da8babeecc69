"""The transport's C codec for Price against the generated code."""

import math

import numpy as np
import pytest

from pricegrid.server.domain.models import GREEKS, GreekMethod, Measure, ModelRef
from pricegrid.server.rpc import _codec, fast, requests, responses
from pricegrid.server.service.pricing import PriceResult
from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import pricing_pb2 as pb


def random_request(rng) -> pb.PriceRequest:
    r = pb.PriceRequest(model=int(rng.integers(-2, 5)), measures=rng.integers(0, 12, rng.integers(0, 6)).tolist())
    if rng.random() < 0.9:
        e = r.european
        e.option_type = int(rng.integers(0, 4))
        e.strike = float(rng.normal() * 100)
        if rng.random() < 0.5:
            e.expiry.year_fraction = float(rng.random())
        elif rng.random() < 0.8:
            d = e.expiry.dates
            d.day_count = int(rng.integers(0, 6))
            if rng.random() < 0.9:
                d.valuation_date.CopyFrom(c.Date(year=2026, month=int(rng.integers(1, 13)), day=int(rng.integers(1, 29))))
            if rng.random() < 0.9:
                d.expiry_date.CopyFrom(c.Date(year=2027, month=2, day=int(rng.integers(1, 31))))
    if rng.random() < 0.9:
        m = r.market
        if rng.random() < 0.5:
            m.spot = float(rng.random() * 200)
        elif rng.random() < 0.8:
            m.forward = float(rng.normal())
        m.rate = float(rng.normal() * 0.05)
        m.dividend_yield = float(rng.random() * 0.03) if rng.random() < 0.5 else 0.0
        m.volatility = float(rng.random())
    return r


def reference_tuple(r: pb.PriceRequest):
    kind = r.european.expiry.WhichOneof("kind")
    dates = r.european.expiry.dates

    def ymd(name):
        if kind != "dates" or not dates.HasField(name):
            return None
        d = getattr(dates, name)
        return (d.year, d.month, d.day)

    und = r.market.WhichOneof("underlying")
    return (
        r.model, r.HasField("european"), r.european.option_type, r.european.strike,
        {None: 0, "year_fraction": 1, "dates": 2}[kind], r.european.expiry.year_fraction, ymd("valuation_date"),
        ymd("expiry_date"), dates.day_count, {None: 0, "spot": 1, "forward": 2}[und],
        getattr(r.market, und) if und else 0.0, r.market.rate, r.market.dividend_yield, r.market.volatility,
        list(r.measures),
    )


def test_decode_matches_the_generated_code_on_random_requests():
    rng = np.random.default_rng(5)
    for _ in range(3000):
        r = random_request(rng)
        assert _codec.decode_price_request(r.SerializeToString()) == reference_tuple(r)


def test_uncommon_shapes_fall_back():
    r = pb.PriceRequest(model=1, market=pb.Market(spot=1.0, snapshot_id="x"))
    assert _codec.decode_price_request(r.SerializeToString()) is None  # snapshot: generated path
    twice = pb.PriceRequest(european=pb.EuropeanOption(strike=1)).SerializeToString() * 2
    assert _codec.decode_price_request(twice) is None  # merged sub-messages: generated path
    assert _codec.decode_price_request(b"\x08") is None and _codec.decode_price_request(b"\xff" * 12) is None
    assert _codec.decode_price_request(b"\x12\x05\x08") is None
    assert _codec.decode_price_request(b"\x78\x01") is None  # unknown field 15
    assert _codec.decode_price_request(b"") == reference_tuple(pb.PriceRequest())


def test_unpacked_measures_and_negative_enums():
    data = b"\x08" + b"\xff" * 9 + b"\x01" + b"\x20\x02\x20\x03"  # model = -1, measures 2, 3 unpacked
    t = _codec.decode_price_request(data)
    assert t[0] == -1 and t[-1] == [2, 3]


@pytest.mark.parametrize("greeks", [{}, {Measure.DELTA: 0.5}, {m: float(m) * 1.5 for m in GREEKS}])
def test_encode_matches_the_generated_code(greeks):
    result = PriceResult(10.25, greeks, 101.0, 0.97, 0.5, 0.2, ModelRef("black_76", "analytic_european", "1.0.0"))
    ours = pb.PriceResponse.FromString(responses.price_response_bytes(result))
    assert ours == responses.price_response(result)
    assert ours.greeks.HasField("delta") == (Measure.DELTA in greeks)


@pytest.mark.parametrize("se", [0.0, 0.0125])
def test_encode_writes_standard_error_and_details_as_the_generated_code(se):
    details = ((Measure.PRICE, GreekMethod.MONTE_CARLO, se), (Measure.DELTA, GreekMethod.MONTE_CARLO_CRN, se / 3),
               (Measure.VEGA, GreekMethod.ANALYTIC, 0.0))
    result = PriceResult(10.25, {Measure.DELTA: 0.5, Measure.VEGA: 20.0}, 101.0, 0.97, 0.5, 0.2,
                         ModelRef("heston", "monte_carlo_european", "1.0.0"), se, details)
    ours = pb.PriceResponse.FromString(responses.price_response_bytes(result))
    assert ours == responses.price_response(result)
    assert [(d.measure, d.method, d.standard_error) for d in ours.details] == [(int(m), int(g), e) for m, g, e in details]
    assert [d.value for d in ours.details] == [10.25, 0.5, 20.0]  # every measure's value, by Measure
    assert ours.standard_error == se


def test_encode_keeps_special_values():
    result = PriceResult(-0.0, {Measure.THETA: -math.inf}, math.nan, 1.0, 0.0, 1e-300, ModelRef("m", "e", "v"))
    msg = pb.PriceResponse.FromString(responses.price_response_bytes(result))
    assert math.copysign(1, msg.price) == -1 and msg.greeks.theta == -math.inf and math.isnan(msg.inputs.forward)


def test_split_stream_request():
    price = pb.PriceRequest(model=1, market=pb.Market(spot=100.0))
    msg = pb.PriceStreamRequest(correlation_id="c-é", trade_id="T1", price=price)
    data = msg.SerializeToString()
    cid, tid, body, a, b = _codec.split_stream_request(data)
    assert (cid, tid, body) == ("c-é", "T1", 2) and pb.PriceRequest.FromString(data[a:b]) == price
    upd = pb.PriceStreamRequest(market_update=pb.MarketUpdate(spot=1.0)).SerializeToString()
    assert _codec.split_stream_request(upd)[2] == 3
    assert _codec.split_stream_request(b"") == ("", "", 0, 0, 0)
    assert _codec.split_stream_request(data + data) is None  # two bodies merge: generated path
    assert _codec.split_stream_request(b"\x0a\x02\xff\xfe") is None  # not UTF-8
    assert _codec.split_stream_request(b"\x0a\x05ab") is None


def test_lean_path_gives_the_full_paths_bytes_or_steps_aside():
    """price_lean (C codec -> kernel -> C codec) answers exactly what the full path answers
    for every request it takes, and steps aside (None) for all others: dates, unknown
    enums or measures, a wrong underlying, values out of the domain."""
    from pricegrid.server.rpc.interceptors import Undecodable, safe_deserializer
    from pricegrid.server.domain.errors import ServiceError
    from pricegrid.server.service.pricing import PricingService

    service = PricingService()
    parse = safe_deserializer(pb.PriceRequest)
    rng = np.random.default_rng(11)
    taken = 0
    for _ in range(3000):
        r = random_request(rng)
        data = r.SerializeToString()
        lean = fast.price_lean(data, service)
        request = parse(data)
        try:
            full = responses.price_response_bytes(service.price(*requests.product_one(request, service.catalogue)))
        except ServiceError:
            full = None
        if lean is not None:
            taken += 1
            assert full is not None and pb.PriceResponse.FromString(lean) == pb.PriceResponse.FromString(full)
            assert r.european.expiry.WhichOneof("kind") == "year_fraction"
    assert taken > 20  # the random requests do reach the lean path
    for _ in range(500):  # and every valid request of the common shape takes it
        model = int(rng.integers(1, 4))
        market = pb.Market(rate=float(rng.normal() * 0.03), volatility=float(rng.uniform(0.05, 0.8)))
        if model == 1:
            market.spot, market.dividend_yield = float(rng.uniform(50, 150)), float(rng.uniform(0, 0.05))
        else:
            market.forward = float(rng.uniform(50, 150))
        r = pb.PriceRequest(
            model=model, market=market, measures=rng.choice(np.arange(1, 11), rng.integers(0, 10), replace=False).tolist(),
            european=pb.EuropeanOption(option_type=int(rng.integers(1, 3)), strike=float(rng.uniform(50, 150)),
                                       expiry=pb.Expiry(year_fraction=float(rng.uniform(0, 5)))),
        )
        lean = fast.price_lean(r.SerializeToString(), service)
        full = responses.price_response_bytes(service.price(*requests.product_one(r, service.catalogue)))
        assert lean is not None and pb.PriceResponse.FromString(lean) == pb.PriceResponse.FromString(full)
        # a stream message's reply, framed in the same C call, is the PriceStreamResponse around it
        cid = "" if rng.random() < 0.3 else "c-é" * int(rng.integers(1, 60))
        framed, ref = fast.price_lean_ref(r.SerializeToString(), service, cid.encode())
        expected = pb.PriceStreamResponse(correlation_id=cid, result=pb.PriceResponse.FromString(full))
        assert pb.PriceStreamResponse.FromString(framed) == expected and ref.engine == "analytic_european"
        assert framed.endswith(lean)  # the same PriceResponse bytes inside
    assert type(parse(b"\xff")) is Undecodable and fast.price_lean(b"\xff", service) is None
