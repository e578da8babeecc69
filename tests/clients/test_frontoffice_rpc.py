"""FrontOfficeClient against a real server: unary, deadlines, retries, errors, the shared
stream (use_stream=True) and ticking sessions."""

import datetime as dt
import math
import threading

import grpc
import pytest

from pricegrid.clients import (
    EuropeanOption,
    ExpiryDates,
    FrontOfficeClient,
    Market,
    MarketUpdate,
    PricingError,
    RetryConfig,
)
from tests.clients.reference import bsm
from tests.clients.standin import StandIn
from tests.conftest import start_server

CALL = EuropeanOption(option_type="call", strike=100.0, expiry=0.5)
MARKET = Market(spot=100.0, rate=0.05, dividend_yield=0.01, volatility=0.2)


@pytest.fixture(scope="module")
def client(server):
    with FrontOfficeClient(target=server.address) as c:
        yield c


@pytest.fixture(scope="module")
def stream_client(server):
    with FrontOfficeClient(target=server.address, use_stream=True) as c:
        yield c


# ---------------------------------------------------------------------------- unary
def test_price_and_greeks_match_the_closed_form(client):
    r = client.price(CALL, MARKET, measures=("delta", "vega"))
    ref = bsm("call", 100.0, 100.0, 0.5, 0.05, 0.01, 0.2)
    assert r.price == pytest.approx(ref["price"], rel=1e-12)
    assert r.greeks.delta == pytest.approx(ref["delta"], rel=1e-12)
    assert r.greeks.vega == pytest.approx(ref["vega"], rel=1e-12)
    assert r.greeks.vega_per_point == pytest.approx(ref["vega"] / 100, rel=1e-12)
    assert r.greeks.gamma is None and r.greeks.theta_per_day is None
    assert r.inputs.forward == pytest.approx(100 * math.exp(0.04 * 0.5), rel=1e-14)
    assert r.inputs.discount_factor == pytest.approx(math.exp(-0.025), rel=1e-14)
    assert r.inputs.time_to_expiry == 0.5 and r.inputs.volatility == 0.2
    assert r.priced_by.model == "black_scholes_merton" and r.priced_by.version


def test_every_measure_by_name(client):
    r = client.price(CALL, MARKET, measures="delta,gamma,vega,theta,rho,dividend_rho,vanna,volga,charm")
    assert all(v is not None for v in r.greeks.as_dict().values())
    assert len(r.greeks.as_dict()) == 11  # nine Greeks and vega_per_point, theta_per_day
    assert r.greeks.theta_per_day == pytest.approx(r.greeks.theta / 365, rel=1e-15)


def test_expiry_from_dates(client):
    option = EuropeanOption(
        option_type="put",
        strike=95.0,
        expiry=ExpiryDates(valuation_date=dt.date(2025, 1, 2), expiry_date=dt.date(2025, 7, 2), day_count="ACT/360"),
    )
    r = client.price(option, MARKET)
    assert r.inputs.time_to_expiry == pytest.approx(181 / 360, rel=1e-15)
    assert r.price == pytest.approx(bsm("put", 100.0, 95.0, 181 / 360, 0.05, 0.01, 0.2)["price"], rel=1e-12)


def test_black76_and_bachelier(client):
    b76 = client.price(CALL, Market(forward=100.0, rate=0.05, volatility=0.2), model="black76")
    # Black-76 is BSM with the forward as spot and q = r
    assert b76.price == pytest.approx(bsm("call", 100.0, 100.0, 0.5, 0.05, 0.05, 0.2)["price"], rel=1e-12)
    bach = client.price(
        EuropeanOption(option_type="call", strike=-0.001, expiry=1.0),
        Market(forward=0.002, rate=0.0, volatility=0.01),
        model="bachelier",
    )
    assert bach.price > 0.003 and bach.priced_by.model == "bachelier"


def test_implied_vol_round_trip(client):
    price = client.price(CALL, MARKET).price
    iv = client.implied_vol(CALL, Market(spot=100.0, rate=0.05, dividend_yield=0.01), price)
    assert iv.volatility == pytest.approx(0.2, rel=1e-10)
    assert iv.inputs.forward == pytest.approx(100 * math.exp(0.02), rel=1e-14)


def test_server_info(client):
    info = client.server_info()
    assert info.limits.max_rows > 0 and info.limits.max_message_bytes > 0
    assert info.limits.max_trade_message_bytes > 0 and info.limits.max_cost_unary_seconds > 0
    assert info.kernel_threads >= 1 and info.started_at
    assert {"bsm", "black76", "bachelier"} <= {m.model for m in info.models}


def test_bad_input_is_a_pricing_error_naming_the_field(client):
    with pytest.raises(PricingError) as e:
        client.price(EuropeanOption(option_type="call", strike=-1.0, expiry=0.5), MARKET)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.field == "european.strike"
    with pytest.raises(PricingError) as e:
        client.price(CALL, MARKET, model="black76")  # Black-76 prices on a forward
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.field.startswith("market.")
    with pytest.raises(PricingError) as e:
        client.implied_vol(CALL, MARKET, 1000.0)  # above the no-arbitrage bound
    assert e.value.bad_input and e.value.field == "price"


class Deadlines(grpc.UnaryUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Records the deadline (timeout) each call leaves with."""

    def __init__(self):
        self.seen = []

    def intercept_unary_unary(self, continuation, details, request):
        self.seen.append((details.method.rsplit("/", 1)[-1], details.timeout))
        return continuation(details, request)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        self.seen.append((details.method.rsplit("/", 1)[-1], details.timeout))
        return continuation(details, request_iterator)


def test_every_call_has_a_deadline(server):
    watch = Deadlines()
    with grpc.insecure_channel(server.address) as base:
        with FrontOfficeClient(channel=grpc.intercept_channel(base, watch), timeout=2.5) as c:
            c.price(CALL, MARKET)
            c.implied_vol(CALL, MARKET, 6.0)
            c.server_info()
            c.price(CALL, MARKET, timeout=0.75)
            c.price(CALL, MARKET, timeout=None)
    names = [name for name, _ in watch.seen]
    assert names == ["Price", "ImpliedVolatility", "ServerInfo", "Price", "Price"]
    timeouts = [t for _, t in watch.seen]
    assert timeouts[:3] == [pytest.approx(2.5, abs=0.05)] * 3
    assert timeouts[3] == pytest.approx(0.75, abs=0.05) and timeouts[4] is None


def test_a_slow_answer_is_deadline_exceeded():
    with StandIn(delay=0.5) as slow:
        with FrontOfficeClient(target=slow.address, timeout=0.05) as c:
            with pytest.raises(PricingError) as e:
                c.price(CALL, MARKET)
            assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
            assert c.price(CALL, MARKET, timeout=5.0).price == 42.0  # per call override
        with FrontOfficeClient(target=slow.address, timeout=0.05, use_stream=True) as c:
            with pytest.raises(PricingError) as e:
                c.price(CALL, MARKET)
            assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
            assert c.price(CALL, MARKET, timeout=5.0).price == 42.0  # the stream goes on


def test_nothing_listening_is_unavailable():
    with FrontOfficeClient(target="127.0.0.1:1", timeout=5.0, retries=RetryConfig(max_attempts=2, initial_backoff=0.01)) as c:
        with pytest.raises(PricingError) as e:
            c.price(CALL, MARKET)
    assert e.value.code == grpc.StatusCode.UNAVAILABLE and not e.value.bad_input


def test_unavailable_is_retried_by_grpcs_own_policy():
    with StandIn(failures=2) as flaky:
        retries = RetryConfig(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)
        with FrontOfficeClient(target=flaky.address, timeout=5.0, retries=retries) as c:
            assert c.price(CALL, MARKET).price == 42.0
        assert flaky.calls == 3
        flaky.calls = 0
        with FrontOfficeClient(target=flaky.address, timeout=5.0, retries=RetryConfig(max_attempts=1)) as c:
            with pytest.raises(PricingError) as e:
                c.price(CALL, MARKET)
        assert e.value.code == grpc.StatusCode.UNAVAILABLE and flaky.calls == 1


# ---------------------------------------------------------------------------- use_stream
def test_stream_prices_equal_unary_prices(client, stream_client):
    for strike in (80.0, 100.0, 120.0):
        option = EuropeanOption(option_type="put", strike=strike, expiry=0.75)
        assert stream_client.price(option, MARKET, measures=["delta"]) == client.price(option, MARKET, measures=["delta"])


def test_stream_is_shared_by_threads_and_replies_reach_their_callers(client, stream_client):
    strikes = [60.0 + i for i in range(80)]
    expected = {k: client.price(EuropeanOption(option_type="call", strike=k, expiry=1.0), MARKET).price for k in strikes}
    got = {}
    errors = []

    def caller(ks):
        try:
            for k in ks:
                got[k] = stream_client.price(EuropeanOption(option_type="call", strike=k, expiry=1.0), MARKET).price
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=caller, args=(strikes[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and got == expected


def test_a_message_error_fails_that_call_only(stream_client):
    with pytest.raises(PricingError) as e:
        stream_client.price(EuropeanOption(option_type="call", strike=-1.0, expiry=0.5), MARKET)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.field == "price.european.strike"
    assert stream_client.price(CALL, MARKET).price > 0


def test_stream_deadline_against_the_real_server(server):
    with FrontOfficeClient(target=server.address, use_stream=True, timeout=5.0) as c:
        assert c.price(CALL, MARKET).price > 0
        with pytest.raises(PricingError) as e:
            c.price(CALL, MARKET, timeout=1e-9)
        assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert c.price(CALL, MARKET).price > 0  # the late reply is dropped, the stream goes on


def test_stream_reconnects_after_the_server_restarts():
    first = start_server()
    port = first.port
    try:
        with FrontOfficeClient(target=first.address, use_stream=True, timeout=10.0) as c:
            before = c.price(CALL, MARKET).price
            first.stop(0)
            second = start_server(port=port)
            try:
                assert c.price(CALL, MARKET).price == before
            finally:
                second.stop(0)
    finally:
        first.stop(0)


def test_closed_client_refuses_calls(server):
    c = FrontOfficeClient(target=server.address, use_stream=True)
    c.price(CALL, MARKET)
    c.close()
    with pytest.raises((RuntimeError, PricingError)):
        c.price(CALL, MARKET)


# ---------------------------------------------------------------------------- ticking
def test_ticking_session(client):
    a = EuropeanOption(option_type="call", strike=100.0, expiry=0.5)
    b = EuropeanOption(option_type="put", strike=110.0, expiry=1.0)
    f = EuropeanOption(option_type="call", strike=70.0, expiry=0.5)
    with client.stream() as s:
        s.add("A", a, MARKET, measures=("delta",))
        s.add("B", b, MARKET)
        s.add("F", f, Market(forward=70.0, rate=0.03, volatility=0.4), model="black76")
        first = {r.trade_id: r for r in (s.receive(timeout=5), s.receive(timeout=5), s.receive(timeout=5))}
        assert first["A"].result == client.price(a, MARKET, measures=("delta",))
        assert first["F"].result.priced_by.model == "black_76"

        # a spot move for every trade held: the Black-76 trade has no spot and says so
        tick = s.update_market(spot=105.0)
        moved = {r.trade_id: r for r in (s.receive(timeout=5) for _ in range(3))}
        assert {r.correlation_id for r in moved.values()} == {tick}
        bumped = Market(spot=105.0, rate=0.05, dividend_yield=0.01, volatility=0.2)
        assert moved["A"].result.price == pytest.approx(client.price(a, bumped).price, rel=1e-14)
        assert moved["B"].result.price == pytest.approx(client.price(b, bumped).price, rel=1e-14)
        assert not moved["F"].ok and moved["F"].error.field == "market_update.spot"

        # one trade only, by a MarketUpdate object
        s.update_market(MarketUpdate(volatility=0.3, trade_ids=("B",)))
        only = s.receive(timeout=5)
        assert only.trade_id == "B"
        assert only.result.price == pytest.approx(
            client.price(b, Market(spot=105.0, rate=0.05, dividend_yield=0.01, volatility=0.3)).price, rel=1e-14
        )

        # replacing A: later moves price the new trade
        a2 = EuropeanOption(option_type="call", strike=90.0, expiry=0.5)
        s.replace("A", a2, MARKET)
        assert s.receive(timeout=5).result.price == pytest.approx(client.price(a2, MARKET).price, rel=1e-14)
        s.update_market(rate=0.01, trade_ids=["A"])
        assert s.receive(timeout=5).result.price == pytest.approx(
            client.price(a2, Market(spot=100.0, rate=0.01, dividend_yield=0.01, volatility=0.2)).price, rel=1e-14
        )

        # a bad trade fails its message only
        bad = s.add("X", EuropeanOption(option_type="call", strike=-1.0, expiry=0.5), MARKET)
        reply = s.receive(timeout=5)
        assert reply.correlation_id == bad and reply.error.code == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(PricingError):
            reply.raise_for_error()

        once = s.price(CALL, MARKET, correlation_id="once")
        assert once == "once" and s.receive(timeout=5).result.price == client.price(CALL, MARKET).price
        s.done_sending()
        assert list(s) == [] and s.receive() is None
        with pytest.raises(RuntimeError):
            s.add("Z", CALL, MARKET)
