"""A 1,000,000-row European batch priced against a market snapshot (a curve lookup for the
rate, one for the dividend yield, an SVI surface lookup for the vol, per row at its own
expiry and strike) against the same batch with flat inline inputs, price + 5 Greeks, through
PricingService.price_batch on one kernel thread, timed as interleaved calls. The issue's
target: snapshot / flat inline <= 1.3. A third variant sends the snapshot's own numbers
inline as per-row columns (a rate, a dividend yield, a spot and a vol per row: what a risk
system sends without snapshots), so that the lookups' own cost is seen apart from reading
four columns.

    .venv/bin/python -m pytest bench/test_bench_snapshot.py --benchmark-json=/tmp/snap.json
    .venv/bin/python bench/report_snapshot.py /tmp/snap.json
"""

from __future__ import annotations

import time

import numpy as np

from pricegrid.server.app import demo
from pricegrid.server.domain.instruments import MarketBatch, SnapshotMarket
from pricegrid.server.domain.models import Measure, Model
from pricegrid.server.domain.products import PRODUCTS, ProductBatch
from pricegrid.server.service.market import MarketDataService
from pricegrid.server.service.pricing import Limits, PricingService
from pricegrid.server.store.sqlite import SqliteSnapshotStore

ROWS = 1_000_000
PAIRS = 15
MEASURES = (Measure.PRICE, Measure.DELTA, Measure.GAMMA, Measure.VEGA, Measure.THETA, Measure.RHO)
FIELDS = {"rate": "market.rate"}


def test_snapshot_batch_against_flat_inline_interleaved(benchmark):
    """1M Europeans, price + 5 Greeks: against the demo snapshot (SPX: USD-OIS, SPX-DIV,
    SPX-SVI) vs flat inline rate, dividend yield and vol."""
    market = MarketDataService(SqliteSnapshotStore(":memory:"))
    record, _ = market.put(demo.snapshot(), force=True, reason="bench")
    service = PricingService(Limits(max_rows=ROWS, kernel_threads=1), snapshots=market.snapshot)
    spec = service.catalogue.find("european", Model.BLACK_SCHOLES_MERTON)
    rng = np.random.default_rng(7)
    columns = {"option_type": rng.integers(1, 3, ROWS).astype(np.int32), "strike": rng.uniform(4500, 7500, ROWS),
               "time_to_expiry": rng.integers(7, 3 * 365, ROWS) / 365.0}
    batch = ProductBatch(PRODUCTS["european"], columns)
    by_reference = SnapshotMarket(record.snapshot_id, "SPX", MarketBatch(np.zeros(1), np.zeros(1), np.zeros(1), None))
    flat = MarketBatch(np.full(1, 6000.0), np.full(1, 0.04), np.full(1, 0.013), np.full(1, 0.18))
    per_row = service.resolve_market(spec, batch, by_reference, FIELDS)[0]
    times: dict[str, list[float]] = {"snapshot": [], "inline": [], "per_row": []}

    def call(market_data):
        return service.price_batch(spec, batch, market_data, MEASURES, rows=ROWS, fields=FIELDS, threads=1,
                                   effective_inputs=False)

    def pairs():
        call(by_reference), call(flat), call(per_row)  # warm all
        for _ in range(PAIRS):
            for name, m in (("snapshot", by_reference), ("inline", flat), ("per_row", per_row)):
                t0 = time.perf_counter()
                result = call(m)
                times[name].append(time.perf_counter() - t0)
                assert result.error_count == 0
        return result

    benchmark.pedantic(pairs, rounds=1, iterations=1)
    snap, inline = float(np.median(times["snapshot"])), float(np.median(times["inline"]))
    benchmark.extra_info.update(rows=ROWS, pairs=PAIRS, snapshot_s=snap, inline_s=inline,
                                per_row_s=float(np.median(times["per_row"])))
