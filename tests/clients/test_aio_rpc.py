"""AsyncFrontOfficeClient against a real server: the sync client's API, awaited."""

import asyncio

import grpc
import pytest

from tests.clients.standin import StandIn
from pricegrid.clients import AsyncFrontOfficeClient, EuropeanOption, FrontOfficeClient, Market, PricingError

CALL = EuropeanOption(option_type="call", strike=100.0, expiry=0.5)
MARKET = Market(spot=100.0, rate=0.05, dividend_yield=0.01, volatility=0.2)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


@pytest.fixture(scope="module")
def sync_client(server):
    with FrontOfficeClient(target=server.address) as c:
        yield c


@pytest.mark.parametrize("use_stream", [False, True])
def test_async_price_iv_info_and_errors(server, sync_client, use_stream):
    async def main():
        async with AsyncFrontOfficeClient(target=server.address, use_stream=use_stream) as client:
            r = await client.price(CALL, MARKET, measures=("delta", "gamma"))
            assert r == sync_client.price(CALL, MARKET, measures=("delta", "gamma"))
            iv = await client.implied_vol(CALL, Market(spot=100.0, rate=0.05, dividend_yield=0.01), r.price)
            assert iv.volatility == pytest.approx(0.2, rel=1e-10)
            info = await client.server_info()
            assert info.limits.max_rows > 0
            with pytest.raises(PricingError) as e:
                await client.price(EuropeanOption(option_type="put", strike=-3.0, expiry=0.5), MARKET)
            assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.field.endswith("european.strike")
            # many callers at once, each gets its own answer
            strikes = [70.0 + i for i in range(60)]
            prices = await asyncio.gather(
                *(client.price(EuropeanOption(option_type="call", strike=k, expiry=1.0), MARKET) for k in strikes)
            )
            return [p.price for p in prices], strikes

    prices, strikes = run(main())
    expected = [sync_client.price(EuropeanOption(option_type="call", strike=k, expiry=1.0), MARKET).price for k in strikes]
    assert prices == expected


def test_async_deadline(server):
    async def main(slow):
        async with AsyncFrontOfficeClient(target=slow.address, timeout=0.05) as client:
            with pytest.raises(PricingError) as e:
                await client.price(CALL, MARKET)
            assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
            assert (await client.price(CALL, MARKET, timeout=5.0)).price == 42.0
        async with AsyncFrontOfficeClient(target=slow.address, timeout=0.05, use_stream=True) as client:
            with pytest.raises(PricingError) as e:
                await client.price(CALL, MARKET)
            assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        async with AsyncFrontOfficeClient(target=server.address, use_stream=True) as client:
            await client.price(CALL, MARKET)
            with pytest.raises(PricingError) as e:
                await client.price(CALL, MARKET, timeout=1e-9)
            assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
            assert (await client.price(CALL, MARKET)).price > 0

    with StandIn(delay=0.5) as slow:
        run(main(slow))


def test_async_ticking_session(server, sync_client):
    async def main():
        async with AsyncFrontOfficeClient(target=server.address) as client:
            async with client.stream() as s:
                await s.add("A", CALL, MARKET)
                await s.add("B", EuropeanOption(option_type="put", strike=105.0, expiry=1.0), MARKET)
                first = [await s.receive(timeout=5), await s.receive(timeout=5)]
                tick = await s.update_market(spot=101.0)
                moved = [await s.receive(timeout=5), await s.receive(timeout=5)]
                bad = await s.price(EuropeanOption(option_type="call", strike=0.0, expiry=0.5), MARKET)
                failed = await s.receive(timeout=5)
                with pytest.raises(TimeoutError):
                    await s.receive(timeout=0.05)
                await s.done_sending()
                rest = [r async for r in s]
                return first, tick, moved, bad, failed, rest

    first, tick, moved, bad, failed, rest = run(main())
    assert [r.trade_id for r in first] == ["A", "B"]
    assert first[0].result == sync_client.price(CALL, MARKET)
    assert {r.correlation_id for r in moved} == {tick}
    bumped = Market(spot=101.0, rate=0.05, dividend_yield=0.01, volatility=0.2)
    by_id = {r.trade_id: r.result.price for r in moved}
    assert by_id["A"] == pytest.approx(sync_client.price(CALL, bumped).price, rel=1e-14)
    assert failed.correlation_id == bad and not failed.ok and failed.error.field == "price.european.strike"
    assert rest == []
