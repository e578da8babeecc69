"""AsyncRiskClient against a real server: a scenario run, sensitivities and the stored
portfolios awaited give what the sync client gets; runs overlap on one loop; a cancelled run
ends its call; RiskClient(progress=True) draws a bar over the trades as blocks come."""

from __future__ import annotations

import asyncio
import io

import grpc
import numpy as np
import pytest

from pricegrid.clients import AsyncRiskClient, MarketClient, PricingError, RiskClient, Shift

SHIFTS = [Shift("spx", "spot", "relative", ["SPX"]), Shift("vol", "vol", "absolute", ["SPX-*"])]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


@pytest.fixture(scope="module")
def sid(server):
    with MarketClient(target=server.address, timeout=10) as market:
        return market.list_snapshots("demo")[0].id


@pytest.fixture(scope="module")
def sync(server):
    with RiskClient(target=server.address, timeout=60) as client:
        yield client


def _columns(n, seed=2):
    rng = np.random.default_rng(seed)
    return {"option_type": np.where(rng.random(n) < 0.5, "call", "put"), "strike": rng.uniform(5000, 7000, n),
            "time_to_expiry": rng.uniform(0.1, 2.0, n)}


def test_the_async_client_gets_what_the_sync_client_gets(server, sync, sid):
    rng = np.random.default_rng(1)
    sizes = np.vstack([rng.normal(0, 0.05, 50), rng.normal(0, 0.02, 50)])
    labels = [f"s{j}" for j in range(50)]
    kw = dict(shifts=SHIFTS, sizes=sizes, labels=labels, output="both", es_attribution=True,
              stresses=["covid-2020"], stress_targets={"equity": ["SPX"], "equity_vol": ["SPX-*"]})

    async def main():
        async with AsyncRiskClient(target=server.address) as risk:
            book = risk.book("european", model="bsm", underlying_id="SPX", snapshot_id=sid, **_columns(30))
            seen = []
            r = await risk.scenario_risk(books=[book], progress=lambda done, total: seen.append((done, total)), **kw)
            expected = sync.scenario_risk(books=[book], **kw)
            np.testing.assert_array_equal(r.cube, expected.cube)
            assert r.var == expected.var and r.scenario_labels == expected.scenario_labels
            np.testing.assert_array_equal(r.trade_component_es, expected.trade_component_es)
            assert seen and seen[-1] == (30, 30)
            sens = await risk.sensitivities(books=[book], shifts=SHIFTS[:1], bumps=[0.01])
            np.testing.assert_array_equal(sens.delta, sync.sensitivities(books=[book], shifts=SHIFTS[:1],
                                                                         bumps=[0.01]).delta)
            stored = await risk.put_portfolio("tests/aio-book", [book])
            assert (await risk.get_portfolio(stored.id)).trades == 30
            assert [p.id for p in await risk.list_portfolios("tests/aio-book")] == [stored.id]
            names = [s.name for s in (await risk.stresses()).stresses]
            assert "black-monday-1987" in names
            # several runs overlap on one loop, each gets its own answer
            runs = await asyncio.gather(*(risk.scenario_risk(books=[book], shifts=SHIFTS, sizes=sizes * k,
                                                             labels=labels) for k in (0.5, 1.0, 2.0)))
            assert runs[1].var == expected.var and runs[0].var[0.99] < runs[2].var[0.99]
            with pytest.raises(PricingError) as e:
                await risk.scenario_risk(books=[book], stresses=["no-such-stress"])
            assert e.value.code == grpc.StatusCode.NOT_FOUND and e.value.field == "scenarios.stresses[0]"
            assert await risk.delete_portfolio(stored.id)

    run(main())


def test_a_cancelled_async_run_ends_its_call(server, sync, sid):
    async def main():
        async with AsyncRiskClient(target=server.address) as risk:
            book = risk.book("american", model="bsm", underlying_id="SPX", snapshot_id=sid, **_columns(3000, 5))
            sizes = np.random.default_rng(0).normal(0, 0.03, (1, 2000))
            task = asyncio.ensure_future(risk.scenario_risk(books=[book], shifts=SHIFTS[:1], sizes=sizes,
                                                            labels=[f"s{j}" for j in range(2000)]))
            await asyncio.sleep(0.5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    run(main())
    # the server keeps serving (and is not still busy with the run: a small run answers)
    book = sync.book("european", model="bsm", underlying_id="SPX", snapshot_id=sid, **_columns(5))
    assert len(sync.scenario_risk(books=[book], shifts=SHIFTS[:1], sizes=[[0.1]], labels=["u"],
                                  timeout=20).portfolio_pnl) == 1


def test_a_progress_bar_over_the_trades(server, sid, monkeypatch):
    import tqdm.auto

    bars = []

    class Recording(tqdm.auto.tqdm):
        def __init__(self, *a, **k):
            super().__init__(*a, file=io.StringIO(), **k)
            bars.append(self)

    monkeypatch.setattr(tqdm.auto, "tqdm", Recording)
    with RiskClient(target=server.address, timeout=60, progress=True) as risk:
        book = risk.book("european", model="bsm", underlying_id="SPX", snapshot_id=sid, **_columns(20_000, 3))
        r = risk.scenario_risk(books=[book], shifts=SHIFTS[:1], sizes=np.linspace(-0.1, 0.1, 100).reshape(1, -1),
                               labels=[f"s{j}" for j in range(100)])
    assert len(r.trade_ids) == 20_000 and len(bars) == 1
    assert bars[0].total == 20_000 and bars[0].n == 20_000 and bars[0].unit == "trade"
