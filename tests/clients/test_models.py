"""Value objects, enum names, PricingError from the rich status, retry configuration."""

import dataclasses
import datetime as dt
import json
import pickle

import grpc
import numpy as np
import pytest

from pricegrid.clients import (
    EuropeanOption,
    ExpiryDates,
    Greeks,
    Market,
    MarketUpdate,
    PricingError,
    RetryConfig,
)
from pricegrid.clients import _config, _convert, _models
from pricegrid.clients.testing import FakeRpcError, bad_request
from pricegrid.v1 import common_pb2 as c
from pricegrid.v1 import pricing_pb2 as pb


# ---------------------------------------------------------------------------- value objects
def test_european_option_normalises_and_is_frozen():
    o = EuropeanOption(option_type="C", strike=100, expiry=1)
    assert o == EuropeanOption(option_type="call", strike=100.0, expiry=1.0)
    assert isinstance(o.strike, float) and isinstance(o.expiry, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.strike = 1.0
    assert EuropeanOption(option_type=" Put ", strike=np.float32(95), expiry=0.5).option_type == "put"


@pytest.mark.parametrize("bad", ["straddle", "", 3, None])
def test_european_option_rejects_unknown_types(bad):
    with pytest.raises(ValueError, match="option type"):
        EuropeanOption(option_type=bad, strike=100.0, expiry=1.0)


def test_numbers_must_be_numbers():
    with pytest.raises(TypeError, match="strike"):
        EuropeanOption(option_type="call", strike="100", expiry=1.0)
    with pytest.raises(TypeError, match="volatility"):
        Market(spot=100.0, volatility=True)


def test_expiry_dates_day_counts_and_iso_strings():
    e = ExpiryDates(valuation_date="2025-01-02", expiry_date=dt.datetime(2025, 7, 2, 16, 30), day_count="act/360")
    assert e.valuation_date == dt.date(2025, 1, 2) and e.expiry_date == dt.date(2025, 7, 2)
    assert e.day_count == "ACT/360"
    assert ExpiryDates(valuation_date=dt.date(2025, 1, 2), expiry_date=dt.date(2026, 1, 2)).day_count == "ACT/365F"
    assert ExpiryDates(dt.date(2025, 1, 2), dt.date(2026, 1, 2), "ACT/ACT ISDA").day_count == "ACT/ACT ISDA"
    assert ExpiryDates(dt.date(2025, 1, 2), dt.date(2026, 1, 2), "30/360").day_count == "30/360"
    with pytest.raises(ValueError, match="day count"):
        ExpiryDates(dt.date(2025, 1, 2), dt.date(2026, 1, 2), "BUS/252")


def test_market_needs_exactly_one_underlying():
    assert Market(spot=100.0, volatility=0.2).forward is None
    assert Market(forward=80.0, volatility=0.3).spot is None
    with pytest.raises(ValueError, match="exactly one"):
        Market(volatility=0.2)
    with pytest.raises(ValueError, match="exactly one"):
        Market(spot=100.0, forward=101.0, volatility=0.2)


def test_market_update_trade_ids():
    assert MarketUpdate(spot=101).trade_ids == ()
    assert MarketUpdate(volatility=0.3, trade_ids="T1").trade_ids == ("T1",)
    assert MarketUpdate(rate=0.01, trade_ids=["A", "B"]).trade_ids == ("A", "B")


def test_names_map_to_the_contract():
    assert _models.model_code("bsm") == c.MODEL_BLACK_SCHOLES_MERTON
    assert _models.model_code("Black76") == c.MODEL_BLACK_76
    assert _models.model_code("black_scholes_merton") == c.MODEL_BLACK_SCHOLES_MERTON
    assert _models.model_code("bachelier") == c.MODEL_BACHELIER
    assert _models.model_code(c.MODEL_BLACK_76) == c.MODEL_BLACK_76
    assert _models.model_code("heston") == c.MODEL_HESTON
    with pytest.raises(ValueError, match="unknown model"):
        _models.model_code("sabr")
    assert _models.engine_code(None) == 0 and _models.engine_code("monte-carlo") == c.ENGINE_MONTE_CARLO
    assert _models.enum_code("BarrierType", "Down-Out", "barrier_type") == c.BARRIER_TYPE_DOWN_OUT
    assert _models.enum_code("TouchPayment", 1, "payment") == c.TOUCH_PAYMENT_AT_HIT
    with pytest.raises(ValueError, match="unknown barrier_type 'sideways'"):
        _models.enum_code("BarrierType", "sideways", "barrier_type")
    # every enum of the contract that an instrument uses is reachable by name
    for enum in ("BarrierType", "KnockType", "DigitalPayoff", "TouchType", "BarrierDirection", "TouchPayment",
                 "Averaging", "LookbackStrike", "AmericanScheme", "GreekMethod"):
        desc = c.DESCRIPTOR.enum_types_by_name[enum]
        assert sorted(_models.enum_names(enum).values()) == [v.number for v in desc.values if v.number]
    assert _models.measure_codes("delta, gamma,delta") == [c.MEASURE_DELTA, c.MEASURE_GAMMA]
    assert _models.measure_codes(["price", "charm"]) == [c.MEASURE_PRICE, c.MEASURE_CHARM]
    assert list(_models.MEASURES)[:10] == [
        "price", "delta", "gamma", "vega", "theta", "rho", "dividend_rho", "vanna", "volga", "charm"
    ]
    assert _models.MEASURES["clean_price"] == c.MEASURE_CLEAN_PRICE and _models.MEASURES["pnl"] == c.MEASURE_PNL
    assert len(_models.MEASURES) == len(c.Measure.DESCRIPTOR.values) - 1  # every value but UNSPECIFIED
    with pytest.raises(ValueError, match="unknown measure"):
        _models.measure_codes(["speed"])


# ---------------------------------------------------------------------------- conversions
def test_price_request_with_dates_and_measures():
    option = EuropeanOption(
        option_type="put",
        strike=95.0,
        expiry=ExpiryDates(valuation_date=dt.date(2025, 1, 2), expiry_date=dt.date(2025, 7, 2), day_count="30/360"),
    )
    req = _convert.price_request(
        option, Market(forward=97.0, rate=0.02, volatility=0.25), model="black76", measures=("delta", "vega")
    )
    assert req.model == c.MODEL_BLACK_76
    assert req.european.option_type == c.OPTION_TYPE_PUT and req.european.strike == 95.0
    d = req.european.expiry.dates
    assert (d.valuation_date.year, d.valuation_date.month, d.valuation_date.day) == (2025, 1, 2)
    assert (d.expiry_date.year, d.expiry_date.month, d.expiry_date.day) == (2025, 7, 2)
    assert d.day_count == c.DAY_COUNT_THIRTY_360
    assert req.market.WhichOneof("underlying") == "forward" and req.market.forward == 97.0
    assert list(req.measures) == [c.MEASURE_DELTA, c.MEASURE_VEGA]


def test_price_needs_a_volatility_but_implied_vol_does_not():
    option = EuropeanOption(option_type="call", strike=100.0, expiry=0.5)
    with pytest.raises(ValueError, match="volatility"):
        _convert.price_request(option, Market(spot=100.0))
    req = _convert.implied_vol_request(option, Market(spot=100.0, rate=0.05), 10.45)
    assert req.price == 10.45 and req.market.spot == 100.0 and req.european.expiry.year_fraction == 0.5


def test_price_result_keeps_only_the_greeks_sent():
    msg = pb.PriceResponse(
        price=10.0,
        greeks=pb.Greeks(delta=0.5, vega=40.0, vega_per_point=0.4, theta=-3.65, theta_per_day=-0.01),
        inputs=pb.EffectiveInputs(forward=101.0, discount_factor=0.99, time_to_expiry=0.5, volatility=0.2),
        priced_by=c.ModelRef(model="black_scholes_merton", engine="analytic_european", version="1.0.0"),
    )
    r = _convert.price_result(msg)
    assert r.greeks == Greeks(delta=0.5, vega=40.0, vega_per_point=0.4, theta=-3.65, theta_per_day=-0.01)
    assert r.greeks.gamma is None and r.greeks.as_dict()["vega_per_point"] == 0.4
    assert r.inputs.forward == 101.0 and r.inputs.discount_factor == 0.99
    assert str(r.priced_by) == "black_scholes_merton/analytic_european@1.0.0"


def test_stream_reply_of_error():
    reply = _convert.stream_reply(
        pb.PriceStreamResponse(correlation_id="7", trade_id="T", error=c.Error(code=3, field="price.european.strike", message="bad"))
    )
    assert not reply.ok and reply.error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert reply.error.field == "price.european.strike"
    with pytest.raises(PricingError):
        reply.raise_for_error()


# ---------------------------------------------------------------------------- errors
def test_pricing_error_reads_bad_request_field_violations():
    status = bad_request("strike must be > 0", [("european.strike", "must be > 0"), ("market.spot", "required")])
    err = PricingError.from_rpc_error(FakeRpcError(status.code, status.details, status.trailing_metadata))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.message == "strike must be > 0"
    assert err.field_violations == [("european.strike", "must be > 0"), ("market.spot", "required")]
    assert err.field == "european.strike" and err.bad_input
    assert "european.strike" in str(err)
    again = pickle.loads(pickle.dumps(err))
    assert again.code == err.code and again.field_violations == err.field_violations


def test_pricing_error_without_details():
    err = PricingError.from_rpc_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection refused"))
    assert err.code == grpc.StatusCode.UNAVAILABLE and err.field is None and not err.bad_input
    assert err.field_violations == []


def test_pricing_error_when_trailer_disagrees_with_status():
    status = bad_request("rows over the cap", [("rows", "at most 10")], code=grpc.StatusCode.RESOURCE_EXHAUSTED)
    err = PricingError.from_rpc_error(FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "rewritten by a proxy", status.trailing_metadata))
    assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED and err.field == "rows"


# ---------------------------------------------------------------------------- retries
def test_retry_config_becomes_a_service_config():
    options = dict(_config.channel_options(RetryConfig(max_attempts=4, initial_backoff=0.02), max_message_bytes=-1))
    assert options["grpc.enable_retries"] == 1
    assert options["grpc.max_receive_message_length"] == -1
    config = json.loads(options["grpc.service_config"])
    (method,) = config["methodConfig"]
    assert {"service": "pricegrid.v1.PricingService"} in method["name"]
    policy = method["retryPolicy"]
    assert policy == {
        "maxAttempts": 4,
        "initialBackoff": "0.02s",
        "maxBackoff": "1s",
        "backoffMultiplier": 2.0,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }


def test_retries_off_and_caller_options_win():
    options = dict(_config.channel_options(RetryConfig(max_attempts=1), extra=[("grpc.enable_retries", 1), ("x", 2)]))
    assert "retryPolicy" not in json.loads(options["grpc.service_config"])["methodConfig"][0]
    assert options["grpc.enable_retries"] == 1 and options["x"] == 2
    with pytest.raises(ValueError):
        RetryConfig(max_attempts=6)
    with pytest.raises(ValueError):
        RetryConfig(initial_backoff=0)


def test_timeouts_resolve():
    assert _config.resolve_timeout(_config.USE_CLIENT_DEFAULT, 1.5) == 1.5
    assert _config.resolve_timeout(None, 1.5) is None
    assert _config.resolve_timeout(0.2, 1.5) == 0.2
    with pytest.raises(ValueError):
        _config.resolve_timeout(0, 1.5)


def test_default_target_from_environment(monkeypatch):
    monkeypatch.delenv("PRICEGRID_TARGET", raising=False)
    assert _config.default_target() == "127.0.0.1:50051"
    monkeypatch.setenv("PRICEGRID_TARGET", "pricing.internal:443")
    assert _config.default_target() == "pricing.internal:443"


def test_public_api_is_explicit():
    import pricegrid.clients as clients

    assert sorted(clients.__all__) == sorted(set(clients.__all__))
    for name in clients.__all__:
        assert hasattr(clients, name), name


def test_several_replicas_are_balanced_round_robin_one_address_is_not():
    options = _config.channel_options(RetryConfig())
    for target in ("ipv4:127.0.0.1:1,127.0.0.1:2", "dns:///pricegrid.risk.svc:50051"):
        config = json.loads(dict(_config.balanced(target, options))["grpc.service_config"])
        assert config["loadBalancingConfig"] == [{"round_robin": {}}] and config["methodConfig"]
    config = json.loads(dict(_config.balanced("127.0.0.1:50051", options))["grpc.service_config"])
    assert "loadBalancingConfig" not in config
