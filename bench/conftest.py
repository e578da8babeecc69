"""Shared inputs for the kernel benchmarks, built once per size outside any timed call."""

from __future__ import annotations

import functools

import numpy as np
import pytest


@functools.lru_cache(maxsize=None)
def _bsm_book(rows: int) -> dict:
    rng = np.random.default_rng(rows)
    spot = rng.uniform(50.0, 150.0, rows)
    days = rng.integers(1, 3 * 365, rows)
    return {
        "option_type": rng.integers(1, 3, rows).astype(np.int32),
        "strike": spot * np.exp(rng.uniform(-0.5, 0.5, rows)),
        "days": days,
        "time": days / 365.0,
        "underlying": spot,
        "rate": rng.uniform(-0.01, 0.08, rows),
        "dividend": rng.uniform(0.0, 0.05, rows),
        "vol": rng.uniform(0.05, 0.80, rows),
    }


@pytest.fixture
def bsm_book():
    """bsm_book(rows): a reproducible book of European options under BSM (equity-index
    ranges: spot 50-150, strike within 50% of it, 1 day to 3 years, vol 5-80%)."""
    return _bsm_book


def _spx_scenarios(trades: int, scenarios: int, kernel_threads: int):
    """A reproducible scenario run's inputs on the demo snapshot: ``trades`` European options
    on SPX (random types, strikes 4,500-7,500, expiries 7 days to 3 years) held in random
    quantities, under ``scenarios`` scenarios of spot (log), vol and USD-OIS zero-rate
    (absolute) shifts; the service on ``kernel_threads`` threads."""
    from types import SimpleNamespace

    from pricegrid.server.app import demo
    from pricegrid.server.domain.instruments import MarketBatch, SnapshotMarket
    from pricegrid.server.domain.models import Model
    from pricegrid.server.domain.products import PRODUCTS, ProductBatch
    from pricegrid.server.domain.scenarios import Quantity, ScenarioSet, Shift, ShiftKind
    from pricegrid.server.service.market import MarketDataService
    from pricegrid.server.service.pricing import Limits, PricingService
    from pricegrid.server.service.scenarios import ScenarioRevaluer
    from pricegrid.server.store.sqlite import SqliteSnapshotStore

    market = MarketDataService(SqliteSnapshotStore(":memory:"))
    record, _ = market.put(demo.snapshot(), force=True, reason="bench")
    service = PricingService(Limits(max_rows=1_000_000, kernel_threads=kernel_threads), snapshots=market.snapshot)
    spec = service.catalogue.find("european", Model.BLACK_SCHOLES_MERTON)
    rng = np.random.default_rng(17)
    batch = ProductBatch(PRODUCTS["european"], {"option_type": rng.integers(1, 3, trades).astype(np.int32),
                                                "strike": rng.uniform(4500, 7500, trades),
                                                "time_to_expiry": rng.integers(7, 3 * 365, trades) / 365.0})
    ref = SnapshotMarket(record.snapshot_id, "SPX", MarketBatch(np.zeros(1), np.zeros(1), np.zeros(1), None))
    shifts = (Shift("spot", Quantity.SPOT, ShiftKind.LOG, ("SPX",)),
              Shift("vol", Quantity.VOL, ShiftKind.ABSOLUTE, ("SPX-SVI",)),
              Shift("rate", Quantity.ZERO_RATE, ShiftKind.ABSOLUTE, ("USD-OIS",)))
    sizes = np.vstack([rng.normal(0, 0.02, scenarios), rng.normal(0, 0.01, scenarios), rng.normal(0, 0.0005, scenarios)])
    quantity = rng.choice([-2.0, 1.0, 3.0], trades)
    return SimpleNamespace(service=service, spec=spec, batch=batch, ref=ref, sizes=sizes, quantity=quantity,
                           scenarios=ScenarioSet(shifts, sizes, tuple(f"s{j}" for j in range(scenarios))),
                           revaluer=ScenarioRevaluer(service))


@pytest.fixture
def spx_scenarios():
    """spx_scenarios(trades, scenarios, kernel_threads): a scenario run's inputs on the demo
    snapshot, the same for every bench that asks the same sizes."""
    return _spx_scenarios
