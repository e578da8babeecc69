"""Full revaluation under scenario sets (pricegrid.server.service.scenarios) on the built-in
demo snapshot: the cube against each scenario's market priced on its own, against a snapshot
with the moves made in its data, the identities of the shift language, chunking, and
per-row errors that never fail the run; the analytic European's one-pass blocks
(price_cube) against the batch path, bit for bit, and their working memory.

Tolerances: none where the cube and a scenario priced on its own run the same kernel on the
same numbers (a row's bits do not depend on its place in a batch): the cube's P&L is
quantity x (scenario value - base value) exactly. Against a snapshot whose data were moved:
a parallel zero-rate shift of the nodes is the same zero rate at every time up to rounding
of the curve's interpolation, 1e-10 relative."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pricegrid.ext import black
from pricegrid.ext import status as pgs
from pricegrid.server.app import demo
from pricegrid.server.domain.errors import ServiceError
from pricegrid.server.domain.instruments import MarketBatch, SnapshotMarket
from pricegrid.server.domain.models import Measure, Model
from pricegrid.server.domain.products import PRODUCTS, ProductBatch
from pricegrid.server.domain.scenarios import (
    Buckets, Grid, Parallel, Quantity, ScenarioSet, Shift, ShiftKind, Smile,
)
from pricegrid.server.service.market import MarketDataService
from pricegrid.server.service.pricing import Limits, PricingService
from pricegrid.server.service.scenarios import ScenarioRevaluer, portfolio_pnl
from pricegrid.server.store.sqlite import SqliteSnapshotStore

FIELDS = {"rate": "market.rate"}
TRADES = 53  # not a multiple of the kernel's block


@pytest.fixture(scope="module")
def world():
    market = MarketDataService(SqliteSnapshotStore(":memory:"))
    record, _ = market.put(demo.snapshot(), force=True, reason="test")
    service = PricingService(Limits(max_rows=1_000_000, kernel_threads=1), snapshots=market.snapshot)
    spec = service.catalogue.find("european", Model.BLACK_SCHOLES_MERTON)
    rng = np.random.default_rng(11)
    batch = ProductBatch(PRODUCTS["european"], {
        "option_type": rng.integers(1, 3, TRADES).astype(np.int32),
        "strike": rng.uniform(5000, 7000, TRADES),
        "time_to_expiry": rng.uniform(0.05, 3.0, TRADES),
    })
    ref = SnapshotMarket(record.snapshot_id, "SPX", MarketBatch(np.zeros(1), np.zeros(1), np.zeros(1), None))
    quantity = rng.choice([-3.0, 1.0, 2.0, 5.0], TRADES)
    return market, service, spec, batch, ref, quantity, record


def cube(world, scenarios, chunk_rows=262_144):
    _, service, spec, batch, ref, quantity, _ = world
    r = ScenarioRevaluer(service).revalue(spec, batch, ref, scenarios, quantity, rows=TRADES, fields=FIELDS,
                                          chunk_rows=chunk_rows, threads=1)
    blocks = list(r.blocks)
    return r, blocks, np.vstack([b.pnl for b in blocks])


def price_inline(world, level, rate, q, vol, time=None):
    """The trades' values (not times quantity) on a market given as per-row columns."""
    _, service, spec, batch, _, quantity, _ = world
    columns = dict(batch.columns)
    if time is not None:
        columns["time_to_expiry"] = time
    out = service.price_batch(spec, ProductBatch(batch.product, columns), MarketBatch(level, rate, q, vol),
                              (Measure.PRICE,), rows=TRADES, fields=FIELDS, threads=1)
    return out.values[0]


def pnl_of(world, value, base):
    return (value - base) * world[5]


def base_columns(world):
    _, service, spec, batch, ref, _, _ = world
    m, _, _ = service.resolve_market(spec, batch, ref, FIELDS)
    return m.underlying, m.rate, m.dividend_yield, m.volatility


def close(a, b):
    np.testing.assert_array_equal(a, b)


def test_each_scenario_is_its_own_market_priced_on_its_own(world):
    spot = Shift("spot", Quantity.SPOT, ShiftKind.RELATIVE, ("SPX",))
    vol = Shift("vol", Quantity.VOL, ShiftKind.ABSOLUTE, ("SPX-*",))
    rate = Shift("rate", Quantity.ZERO_RATE, ShiftKind.ABSOLUTE, ("USD-OIS",))
    div = Shift("div", Quantity.DIVIDEND_YIELD, ShiftKind.LOG, ("SPX-DIV",))
    sizes = np.array([[-0.1, 0.0, 0.05, 0.02],
                      [0.03, 0.0, -0.02, 0.01],
                      [0.0, 0.0, 0.005, -0.01],
                      [0.2, 0.0, 0.0, -0.5]])
    s = ScenarioSet((spot, vol, rate, div), sizes, ("crash", "flat", "rally", "mixed"))
    r, blocks, pnl = cube(world, s)
    level, rate0, q0, vol0 = base_columns(world)
    base = price_inline(world, level, rate0, q0, vol0)
    close(r.base, base * world[5])
    assert r.market_used.snapshot_id == world[6].snapshot_id and r.market_used.vol_surface == "SPX-SVI"
    for j in range(4):
        # the demo's SPX has no cash dividends: the row level is the spot
        value = price_inline(world, level * (1 + sizes[0, j]), rate0 + sizes[2, j], q0 * np.exp(sizes[3, j]),
                             vol0 + sizes[1, j])
        close(pnl[:, j], pnl_of(world, value, base))
    np.testing.assert_array_equal(pnl[:, 1], 0.0)  # no move, no P&L, exactly
    assert all(not b.errors for b in blocks)
    np.testing.assert_allclose(portfolio_pnl(blocks), pnl.sum(axis=0), rtol=1e-12)


def test_moves_made_in_the_snapshot_data_give_the_same_cube(world):
    market, service, spec, batch, ref, quantity, record = world
    snap = market.snapshot(record.snapshot_id)
    spx = snap.underlying("SPX")
    usd = snap.curve("USD-OIS")
    moved = dataclasses.replace(
        snap, name="moved",
        underlyings=tuple(dataclasses.replace(u, spot=u.spot * 1.05) if u.underlying_id == "SPX" else u
                          for u in snap.underlyings),
        curves=tuple(dataclasses.replace(c, node_values=c.node_values + 0.0025) if c.curve_id == "USD-OIS" else c
                     for c in snap.curves))
    assert spx.spot == 6000.0 and usd.value_kind.name == "ZERO_RATE"
    moved_record, _ = market.put(moved, force=True, reason="test: moved")
    moved_ref = SnapshotMarket(moved_record.snapshot_id, "SPX", ref.inline)
    s = ScenarioSet((Shift("spot", Quantity.SPOT, ShiftKind.RELATIVE, ("SPX",)),
                     Shift("rate", Quantity.ZERO_RATE, ShiftKind.ABSOLUTE, ("USD-OIS",))),
                    np.array([[0.05], [0.0025]]), ("up",))
    r, _, pnl = cube(world, s)
    # sticky strike: the moved snapshot's surface is read at the same strikes; SVI is in
    # log-moneyness over the forward, so hold the base vols for the reference
    _, _, _, vol0 = base_columns(world)
    m, _, _ = service.resolve_market(spec, batch, moved_ref, FIELDS)
    value = service.price_batch(spec, batch, MarketBatch(m.underlying, m.rate, m.dividend_yield, vol0),
                                (Measure.PRICE,), rows=TRADES, fields=FIELDS, threads=1).values[0] * quantity
    np.testing.assert_allclose(pnl[:, 0], value - r.base, rtol=1e-10, atol=1e-9)


def test_equal_bucket_sizes_are_the_parallel_shift_and_a_time_roll_shortens_expiries(world):
    parallel = ScenarioSet((Shift("r", Quantity.ZERO_RATE, ShiftKind.ABSOLUTE, ("USD-OIS",)),),
                           np.array([[0.01, -0.01]]), ("up", "down"))
    buckets = ScenarioSet((Shift("r", Quantity.ZERO_RATE, ShiftKind.ABSOLUTE, ("USD-OIS",),
                                 Buckets((0.25, 1.0, 2.0, 5.0))),), np.array([[0.01, -0.01]] * 4), ("up", "down"))
    _, _, a = cube(world, parallel)
    _, _, b = cube(world, buckets)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9)
    # one bucket alone moves only the trades whose expiry is near it
    one = ScenarioSet(buckets.shifts, np.array([[0.0], [0.0], [0.0], [0.01]]), ("5y",))
    _, _, c = cube(world, one)
    t = world[3].columns["time_to_expiry"]
    np.testing.assert_array_equal(c[t <= 2.0, 0], 0.0)
    assert np.all(c[t > 2.5, 0] != 0.0)
    roll = ScenarioSet((Shift("roll", Quantity.TIME, ShiftKind.ABSOLUTE, ()),), np.array([[1 / 12, 10.0]]),
                       ("1m", "all expired"))
    _, blocks, d = cube(world, roll)
    level, rate0, q0, vol0 = base_columns(world)
    base = price_inline(world, level, rate0, q0, vol0)
    close(d[:, 0], pnl_of(world, price_inline(world, level, rate0, q0, vol0, time=np.maximum(t - 1 / 12, 0.0)), base))
    k = world[3].columns["strike"]
    w = np.where(world[3].columns["option_type"] == 1, 1.0, -1.0)
    close(d[:, 1], pnl_of(world, np.maximum(w * (level - k), 0.0), base))  # intrinsic at expiry
    assert not any(b.errors for b in blocks)


def test_chunks_give_the_same_cube(world):
    s = ScenarioSet((Shift("vol", Quantity.VOL, ShiftKind.RELATIVE, ("SPX-SVI",), Grid((0.5, 2.0), (0.9, 1.1))),),
                    np.random.default_rng(3).uniform(-0.2, 0.2, (4, 7)), tuple("abcdefg"))
    _, one, a = cube(world, s)
    _, many, b = cube(world, s, chunk_rows=7 * 5)  # 5 trades a chunk
    assert len(one) == 1 and len(many) == 11 and [x.start for x in many][:3] == [0, 5, 10]
    np.testing.assert_array_equal(a, b)


def test_sticky_moneyness_reads_the_vol_at_the_same_moneyness(world):
    _, service, spec, batch, ref, quantity, _ = world
    spot = Shift("spot", Quantity.SPOT, ShiftKind.RELATIVE, ("SPX",))
    sizes = np.array([[-0.2, 0.1]])
    _, _, sticky_k = cube(world, ScenarioSet((spot,), sizes, ("down", "up")))
    _, _, sticky_m = cube(world, ScenarioSet((spot,), sizes, ("down", "up"), Smile.STICKY_MONEYNESS))
    assert np.all(np.abs(sticky_m - sticky_k) > 0)  # a smile: the two rules differ
    level, rate0, q0, _ = base_columns(world)
    r = ScenarioRevaluer(service).revalue(spec, batch, ref, ScenarioSet((spot,), sizes, ("d", "u")), quantity,
                                          rows=TRADES, fields=FIELDS)
    for j, x in enumerate(sizes[0]):
        moved = ProductBatch(batch.product, {**batch.columns, "strike": batch.columns["strike"] / (1 + x)})
        vol = service.resolve_market(spec, moved, ref, FIELDS)[0].volatility
        close(sticky_m[:, j], pnl_of(world, price_inline(world, level * (1 + x), rate0, q0, vol),
                                     price_inline(world, level, rate0, q0, base_columns(world)[3])))


def test_a_row_that_cannot_be_priced_is_a_per_row_error_not_a_failed_run(world):
    s = ScenarioSet((Shift("vol", Quantity.VOL, ShiftKind.ABSOLUTE, ("SPX-SVI",)),), np.array([[0.0, -5.0]]),
                    ("flat", "negative vol"))
    _, blocks, pnl = cube(world, s)
    np.testing.assert_array_equal(pnl[:, 0], 0.0)
    assert np.isnan(pnl[:, 1]).all()
    errors = [e for b in blocks for e in b.errors]
    assert len(errors) == TRADES and {e.scenario for e in errors} == {1}
    assert sorted(e.trade for e in errors) == list(range(TRADES))
    assert all("vol" in e.field for e in errors), errors[:2]


def test_bad_scenario_sets_and_inputs_are_refused_naming_the_field(world):
    _, service, spec, batch, ref, quantity, _ = world
    rev = ScenarioRevaluer(service)
    nothing = ScenarioSet((Shift("x", Quantity.ZERO_RATE, ShiftKind.ABSOLUTE, ("EUR-*",)),), np.zeros((1, 1)), ("x",))
    with pytest.raises(ServiceError) as info:  # EUR curves exist, but SPX does not use them
        rev.revalue(spec, batch, ref, nothing, quantity, rows=TRADES, fields=FIELDS)
    assert info.value.violations[0].field == "shifts[0].selector"
    ok = ScenarioSet((Shift("s", Quantity.SPOT, ShiftKind.ABSOLUTE, ("SPX",), Parallel()),), np.zeros((1, 1)), ("x",))
    with pytest.raises(ServiceError) as info:
        rev.revalue(spec, batch, ref, ok, np.full(3, 1.0), rows=TRADES, fields=FIELDS)
    assert "quantity" in str(info.value)
    with pytest.raises(ServiceError) as info:
        rev.revalue(spec, batch, SnapshotMarket("nope", "SPX", ref.inline), ok, quantity, rows=TRADES, fields=FIELDS)
    assert "no snapshot" in str(info.value)


def test_a_broadcast_column_is_every_trades_value(world):
    """One expiry for every trade (a length-1 column) is the same as that expiry repeated."""
    _, service, spec, batch, ref, quantity, _ = world
    s = ScenarioSet((Shift("spot", Quantity.SPOT, ShiftKind.RELATIVE, ("SPX",)),), np.array([[0.05, -0.05]]),
                    ("up", "down"))
    rev = ScenarioRevaluer(service)
    one = ProductBatch(batch.product, {**batch.columns, "time_to_expiry": np.array([0.75])})
    tiled = ProductBatch(batch.product, {**batch.columns, "time_to_expiry": np.full(TRADES, 0.75)})
    a = np.vstack([b.pnl for b in rev.revalue(spec, one, ref, s, quantity, rows=TRADES, fields=FIELDS).blocks])
    b = np.vstack([b.pnl for b in rev.revalue(spec, tiled, ref, s, quantity, rows=TRADES, fields=FIELDS).blocks])
    np.testing.assert_array_equal(a, b)


def test_a_monte_carlo_engine_revalues_with_its_standard_errors_written(world):
    """The Monte Carlo kernels write a standard error beside each value: a scenario block
    gives them the array (it once passed None, an internal error)."""
    from pricegrid.server.domain.models import Engine

    _, service, _, batch, ref, quantity, _ = world
    spec = service.catalogue.find("european", Model.BLACK_SCHOLES_MERTON, Engine.MONTE_CARLO)
    assert spec is not None and spec.monte_carlo
    scenarios = ScenarioSet((Shift("s", Quantity.SPOT, ShiftKind.RELATIVE, ("SPX",)),), np.array([[0.0, 0.05]]),
                            ("flat", "up"))
    r = ScenarioRevaluer(service).revalue(spec, batch, ref, scenarios, quantity, rows=TRADES, fields=FIELDS, threads=1)
    pnl = np.vstack([b.pnl for b in r.blocks])
    assert pnl.shape == (TRADES, 2) and np.isfinite(pnl).all()
    np.testing.assert_array_equal(pnl[:, 0], 0.0)  # the same seed: the base market's own values
    calls = batch.columns["option_type"] == 1
    assert (pnl[calls, 1] * np.sign(quantity[calls]) > 0).all()  # calls gain when the spot rises


def test_a_spot_move_beyond_a_lookbacks_extreme_widens_it(world):
    """A spot scenario moves the path: a floating lookback whose running minimum or maximum
    the moved spot passes takes the new level as its extreme (it was a per-row error, and
    the run's VaR left out those cells); each cell is the trade priced on its own with the
    widened extremes and the moved spot."""
    _, service, _, _, ref, _, _ = world
    spec = service.catalogue.find("lookback", Model.BLACK_SCHOLES_MERTON)
    n = 4
    batch = ProductBatch(PRODUCTS["lookback"], {
        "strike_type": np.full(n, 1, np.int32), "option_type": np.array([1, 2, 1, 2], np.int32),
        "strike": np.zeros(1), "time_to_expiry": np.array([0.25, 0.5, 1.0, 2.0]),
        "running_minimum": np.array([5900.0, 5900.0, 5000.0, 5990.0]),
        "running_maximum": np.array([6100.0, 6100.0, 6950.0, 6010.0])})
    quantity = np.array([1.0, -2.0, 3.0, 1.0])
    sizes = np.array([[-0.1, 0.0, 0.1, 0.01]])
    s = ScenarioSet((Shift("spot", Quantity.SPOT, ShiftKind.RELATIVE, ("SPX",)),), sizes, ("down", "flat", "up", "tick"))
    r = ScenarioRevaluer(service).revalue(spec, batch, ref, s, quantity, rows=n, fields=FIELDS, threads=1)
    blocks = list(r.blocks)
    pnl = np.vstack([b.pnl for b in blocks])
    assert all(not b.errors for b in blocks) and np.isfinite(pnl).all()
    m, _, _ = service.resolve_market(spec, batch, ref, FIELDS)
    base = service.price_batch(spec, batch, m, (Measure.PRICE,), rows=n, fields=FIELDS, threads=1).values[0]
    for j, size in enumerate(sizes[0]):
        level = m.underlying * (1 + size)
        moved = dict(batch.columns, running_minimum=np.minimum(batch.columns["running_minimum"], level),
                     running_maximum=np.maximum(batch.columns["running_maximum"], level))
        value = service.price_batch(spec, ProductBatch(batch.product, moved), dataclasses.replace(m, underlying=level),
                                    (Measure.PRICE,), rows=n, fields=FIELDS, threads=1).values[0]
        np.testing.assert_array_equal(pnl[:, j], (value - base) * quantity)
    np.testing.assert_array_equal(pnl[:, 1], 0.0)
    assert (pnl[:, [0, 2, 3]] != 0.0).all()


def test_a_lookbacks_extremes_left_to_the_snapshots_spot_are_the_trade_with_them_set(world):
    """A new lookback on a snapshot leaves its extremes to the spot (SnapshotMarket.spot_inputs,
    as the transport reads unset fields): the run is the one with both set to the snapshot's
    spot, bit for bit (base values and every cell)."""
    _, service, _, _, ref, _, record = world
    spec = service.catalogue.find("lookback", Model.BLACK_SCHOLES_MERTON)
    spot = service.snapshots(record.snapshot_id).underlying("SPX").level
    n = 4
    columns = {"strike_type": np.array([1, 1, 2, 2], np.int32), "option_type": np.array([1, 2, 1, 2], np.int32),
               "strike": np.array([0.0, 0.0, 6100.0, 5900.0]), "time_to_expiry": np.array([0.25, 0.5, 1.0, 2.0])}
    quantity = np.array([1.0, -2.0, 3.0, 1.0])
    s = ScenarioSet((Shift("spot", Quantity.SPOT, ShiftKind.RELATIVE, ("SPX",)),), np.array([[-0.1, 0.0, 0.1]]),
                    ("down", "flat", "up"))

    def run(batch, market):
        r = ScenarioRevaluer(service).revalue(spec, batch, market, s, quantity, rows=n, fields=FIELDS, threads=1)
        blocks = list(r.blocks)
        assert all(not b.errors for b in blocks)
        return r.base, np.vstack([b.pnl for b in blocks])

    left = run(ProductBatch(PRODUCTS["lookback"], columns),
               dataclasses.replace(ref, spot_inputs=("running_minimum", "running_maximum")))
    at_spot = {"running_minimum": np.array([spot]), "running_maximum": np.array([spot])}
    given = run(ProductBatch(PRODUCTS["lookback"], {**columns, **at_spot}), ref)
    assert np.isfinite(left[1]).all() and (left[1][:, [0, 2]] != 0.0).all()
    np.testing.assert_array_equal(left[0], given[0])
    np.testing.assert_array_equal(left[1], given[1])


def _european(m, batch, level):
    """The European price of each (option_type, strike, expiry) on the rows' market at
    ``level``, from pricegrid.ext.black (the value of a touched knock-in)."""
    n = level.size
    f = lambda a: np.ascontiguousarray(np.broadcast_to(a, (n,)), dtype=np.float64)  # noqa: E731
    out, status, none = np.empty((1, n)), np.empty(n, np.int32), np.empty(0)
    black.price_batch(pgs.MODEL_BSM, np.ascontiguousarray(np.broadcast_to(batch.columns["option_type"], (n,)),
                                                          np.int32),
                      f(batch.columns["strike"]), f(batch.columns["time_to_expiry"]), f(level), f(m.rate),
                      f(m.dividend_yield), f(m.volatility), np.array([1], np.int32), out, none, none, status, 1)
    assert not status.any()
    return out[0]


def _barrier_books():
    """Down barriers at 5500 on the demo SPX (6000): single (in/out, calls/puts, rebates),
    one-touch (at hit, at expiry), no-touch; a double barrier [5500, 7000] (in/out); and the
    value each trade has once its barrier is touched, as a function of the rows' market and
    the moved level (ext/pg_barrier.h, note 3)."""
    single = ProductBatch(PRODUCTS["barrier"], {
        "barrier_type": np.array([2, 1, 2, 1, 2], np.int32), "option_type": np.array([1, 1, 2, 2, 1], np.int32),
        "strike": np.array([6000.0, 6000.0, 5800.0, 5200.0, 6200.0]),
        "time_to_expiry": np.array([0.5, 0.5, 1.0, 2.0, 0.25]), "barrier": np.full(5, 5500.0),
        "rebate": np.array([0.0, 3.0, 2.5, 0.0, 1.0]), "monitoring_interval": np.array([0.0, 0.0, 1 / 52, 0.0, 0.0])})
    knock_in = single.columns["barrier_type"] == 1
    touch = ProductBatch(PRODUCTS["touch"], {
        "touch_type": np.array([1, 1, 2], np.int32), "direction": np.full(3, 1, np.int32),
        "payment": np.array([1, 2, 2], np.int32), "cash": np.array([10.0, 10.0, 10.0]),
        "barrier": np.full(3, 5500.0), "monitoring_interval": np.zeros(3),
        "time_to_expiry": np.array([0.5, 1.0, 1.5])})
    double = ProductBatch(PRODUCTS["double_barrier"], {
        "knock_type": np.array([2, 1, 2, 1], np.int32), "option_type": np.array([1, 1, 2, 2], np.int32),
        "strike": np.array([6000.0, 6000.0, 6200.0, 5800.0]), "time_to_expiry": np.array([0.5, 1.0, 0.75, 0.25]),
        "lower_barrier": np.full(4, 5500.0), "upper_barrier": np.full(4, 7000.0)})

    def touched_single(m, level):
        return np.where(knock_in, _european(m, single, level), single.columns["rebate"])

    def touched_touch(m, level):
        c = touch.columns
        df = np.exp(-m.rate * c["time_to_expiry"])
        return np.where(c["touch_type"] == 2, 0.0, np.where(c["payment"] == 1, c["cash"], c["cash"] * df))

    def touched_double(m, level):
        return np.where(double.columns["knock_type"] == 1, _european(m, double, level), 0.0)

    return {"barrier": (single, touched_single, lambda level: level <= 5500.0),
            "touch": (touch, touched_touch, lambda level: level <= 5500.0),
            "double_barrier": (double, touched_double, lambda level: (level <= 5500.0) | (level >= 7000.0))}


@pytest.mark.parametrize("product", ["barrier", "touch", "double_barrier"])
def test_a_spot_move_beyond_a_barrier_prices_the_touched_trade(world, product):
    """A spot scenario that crosses a barrier touched it on the way: the cell is the trade
    in its touched state at the moved level (a knock-in the European, a knock-out its rebate,
    a one-touch Q or Q DF, a no-touch 0), not a per-row error left out of VaR and ES; a cell
    that stays on the live side is the trade priced on its own at the moved level."""
    _, service, _, _, ref, _, _ = world
    batch, touched, crossed = _barrier_books()[product]
    spec = service.catalogue.find(product, Model.BLACK_SCHOLES_MERTON)
    n = batch.columns["time_to_expiry"].size
    quantity = np.linspace(-2.0, 3.0, n)
    sizes = np.array([[-0.2, -0.05, 0.0, 0.1, 0.2]])
    s = ScenarioSet((Shift("spot", Quantity.SPOT, ShiftKind.RELATIVE, ("SPX",)),), sizes, ("-20", "-5", "0", "10", "20"))
    r = ScenarioRevaluer(service).revalue(spec, batch, ref, s, quantity, rows=n, fields=FIELDS, threads=1)
    blocks = list(r.blocks)
    pnl = np.vstack([b.pnl for b in blocks])
    assert not r.base_errors and all(not b.errors and not b.failed for b in blocks) and np.isfinite(pnl).all()
    m, _, _ = service.resolve_market(spec, batch, ref, FIELDS)
    base = service.price_batch(spec, batch, m, (Measure.PRICE,), rows=n, fields=FIELDS, threads=1).values[0]
    hit = 0
    for j, size in enumerate(sizes[0]):
        level = m.underlying * (1 + size)
        over = crossed(level)
        hit += int(over.sum())
        if (~over).any():  # the live side: the trade priced on its own, the same bits
            value = service.price_batch(spec, batch, dataclasses.replace(m, underlying=level), (Measure.PRICE,),
                                        rows=n, fields=FIELDS, threads=1).values[0]
            np.testing.assert_array_equal(pnl[~over, j], ((value - base) * quantity)[~over])
        expected = (touched(m, level) - base) * quantity
        # the closed form's European term against ext.black, Q DF against numpy's exp
        np.testing.assert_allclose(pnl[over, j], expected[over], rtol=1e-12, atol=1e-9)
    assert hit >= n  # every trade crossed in some scenario (-20%; the double barrier at +20% too)
    # the trades' own spot beyond their barrier is still refused, naming the barrier
    beyond = dataclasses.replace(m, underlying=np.full(n, 5400.0))
    out = service.price_batch(spec, batch, beyond, (Measure.PRICE,), rows=n, fields=FIELDS, threads=1)
    assert len(out.errors) == n and all("barrier" in e.field for e in out.errors)


def test_a_spot_move_beyond_a_barrier_prices_the_touched_trade_by_monte_carlo(world):
    """The Monte Carlo barrier engine (Heston's default) takes the same rule: at -20% the
    down-out cell is its rebate exactly, the down-in one the European (by simulation: within
    1% of ext.black's at the moved level, seeded so not flaky); no row errors."""
    from pricegrid.server.domain.catalogue import Settings
    from pricegrid.server.domain.models import Engine

    _, service, _, _, ref, _, _ = world
    spec = service.catalogue.find("barrier", Model.BLACK_SCHOLES_MERTON, Engine.MONTE_CARLO)
    batch = _barrier_books()["barrier"][0]
    n = batch.columns["time_to_expiry"].size
    quantity = np.ones(n)
    s = ScenarioSet((Shift("spot", Quantity.SPOT, ShiftKind.RELATIVE, ("SPX",)),), np.array([[-0.2, 0.0]]),
                    ("-20", "0"))
    r = ScenarioRevaluer(service).revalue(spec, batch, ref, s, quantity, rows=n, fields=FIELDS, threads=1,
                                          settings=Settings(paths=20_000))
    blocks = list(r.blocks)
    pnl = np.vstack([b.pnl for b in blocks])
    assert not r.base_errors and all(not b.errors and not b.failed for b in blocks) and np.isfinite(pnl).all()
    np.testing.assert_array_equal(pnl[:, 1], 0.0)
    m, _, _ = service.resolve_market(spec, batch, ref, FIELDS)
    knock_in = batch.columns["barrier_type"] == 1
    np.testing.assert_array_equal(pnl[~knock_in, 0], (batch.columns["rebate"] - r.base)[~knock_in])
    np.testing.assert_allclose((pnl[:, 0] + r.base)[knock_in], _european(m, batch, m.underlying * 0.8)[knock_in],
                               rtol=1e-2)


# ------------------------------------------------------------- the one-pass path (price_cube)
def _sets():
    """Scenario sets that reach every form a block's moved column takes: a parallel move
    (absolute, relative, log) of the trades' own column, two moves of one quantity, bucketed
    and grid sizes, fixed values, a time roll, sticky moneyness."""
    rng = np.random.default_rng(31)
    s = 45  # scenarios: blocks of 32 rows span trades
    spot = Shift("spot", Quantity.SPOT, ShiftKind.LOG, ("SPX",))
    sets = {
        "parallel": ScenarioSet((spot, Shift("vol", Quantity.VOL, ShiftKind.ABSOLUTE, ("SPX-SVI",)),
                                 Shift("rate", Quantity.ZERO_RATE, ShiftKind.RELATIVE, ("USD-OIS",)),
                                 Shift("div", Quantity.DIVIDEND_YIELD, ShiftKind.LOG, ("SPX-DIV",))),
                                rng.normal(0, 0.02, (4, s)), tuple(f"p{j}" for j in range(s))),
        "twice": ScenarioSet((Shift("v1", Quantity.VOL, ShiftKind.RELATIVE, ("SPX-SVI",)),
                              Shift("v2", Quantity.VOL, ShiftKind.ABSOLUTE, ("SPX-SVI",)),
                              Shift("r", Quantity.ZERO_RATE, ShiftKind.FIXED, ("USD-OIS",))),
                             np.vstack([rng.normal(0, 0.05, s), rng.normal(0, 0.01, s), rng.uniform(0.0, 0.05, s)]),
                             tuple(f"t{j}" for j in range(s))),
        "buckets": ScenarioSet((spot, Shift("r", Quantity.ZERO_RATE, ShiftKind.ABSOLUTE, ("USD-OIS",),
                                            Buckets((0.25, 1.0, 5.0))),
                                Shift("v", Quantity.VOL, ShiftKind.RELATIVE, ("SPX-SVI",), Grid((0.5, 2.0), (0.9, 1.1))),
                                Shift("roll", Quantity.TIME, ShiftKind.ABSOLUTE, ())),
                               np.vstack([rng.normal(0, 0.01, (8, s)), rng.uniform(0, 0.1, (1, s))]),
                               tuple(f"b{j}" for j in range(s))),
    }
    sets["sticky"] = dataclasses.replace(sets["parallel"], smile=Smile.STICKY_MONEYNESS)
    return sets


@pytest.mark.parametrize("name", ["parallel", "twice", "buckets", "sticky"])
def test_the_one_pass_cube_is_the_batch_paths_bit_for_bit(world, name):
    """The analytic European's blocks priced straight into P&L (price_cube, reading the
    trades' columns and the scenarios' moves) against every cell laid out and priced through
    the engine's batch runner, in one block and in blocks of a few trades."""
    _, service, spec, batch, ref, quantity, _ = world
    s = _sets()[name]
    for chunk_rows in (262_144, s.scenarios * 4):
        fast = ScenarioRevaluer(service).revalue(spec, batch, ref, s, quantity, rows=TRADES, fields=FIELDS,
                                                 chunk_rows=chunk_rows, threads=1)
        slow = ScenarioRevaluer(service, one_pass=False).revalue(spec, batch, ref, s, quantity, rows=TRADES,
                                                                 fields=FIELDS, chunk_rows=chunk_rows, threads=1)
        a, b = list(fast.blocks), list(slow.blocks)
        assert [(x.start, x.stop) for x in a] == [(x.start, x.stop) for x in b]
        cube_a = np.vstack([x.pnl for x in a])
        assert np.isfinite(cube_a).all() and np.count_nonzero(cube_a) > cube_a.size // 2
        np.testing.assert_array_equal(cube_a, np.vstack([x.pnl for x in b]))


def test_black_76_on_a_futures_underlying_in_one_pass(world):
    market, service, _, _, _, _, record = world
    spec = service.catalogue.find("european", Model.BLACK_76)
    rng = np.random.default_rng(41)
    n = 21
    batch = ProductBatch(PRODUCTS["european"], {"option_type": rng.integers(1, 3, n).astype(np.int32),
                                                "strike": rng.uniform(60, 100, n),
                                                "time_to_expiry": rng.uniform(0.1, 2.0, n)})
    ref = SnapshotMarket(record.snapshot_id, "EUA-DEC27", MarketBatch(np.zeros(1), np.zeros(1), np.zeros(1),
                                                                     None))
    s = ScenarioSet((Shift("f", Quantity.SPOT, ShiftKind.RELATIVE, ("EUA-DEC27",)),
                     Shift("v", Quantity.VOL, ShiftKind.ABSOLUTE, ("EUA-SABR",)),
                     Shift("r", Quantity.ZERO_RATE, ShiftKind.ABSOLUTE, ("EUR-ESTR",))),
                    rng.normal(0, 0.02, (3, 33)), tuple(f"s{j}" for j in range(33)))
    quantity = rng.choice([-1.0, 2.0], n)
    a = ScenarioRevaluer(service).revalue(spec, batch, ref, s, quantity, rows=n, fields=FIELDS, threads=1)
    b = ScenarioRevaluer(service, one_pass=False).revalue(spec, batch, ref, s, quantity, rows=n, fields=FIELDS,
                                                          threads=1)
    cube_a = np.vstack([x.pnl for x in a.blocks])
    assert np.isfinite(cube_a).all() and np.count_nonzero(cube_a) > cube_a.size // 2
    np.testing.assert_array_equal(cube_a, np.vstack([x.pnl for x in b.blocks]))


def test_a_block_with_a_failed_cell_is_priced_again_to_name_it_the_others_keep_their_bits(world):
    """A failed cell in a one-pass block: the block through the batch path, whose errors
    name the trade, the scenario and the field; the block's other cells, and the other
    blocks, are the bits they have in a set without the failing scenario."""
    _, service, spec, batch, ref, quantity, _ = world
    sizes = np.random.default_rng(51).normal(0, 0.01, (2, 40))
    sizes[1, 23] = -5.0  # scenario 23: a negative vol for every trade
    s = ScenarioSet((Shift("spot", Quantity.SPOT, ShiftKind.LOG, ("SPX",)),
                     Shift("vol", Quantity.VOL, ShiftKind.ABSOLUTE, ("SPX-SVI",)),
                     Shift("rate", Quantity.ZERO_RATE, ShiftKind.RELATIVE, ("USD-OIS",))),
                    np.vstack([sizes, np.random.default_rng(52).normal(0, 0.05, (1, 40))]),
                    tuple(f"s{j}" for j in range(40)))
    blocks = list(ScenarioRevaluer(service).revalue(spec, batch, ref, s, quantity, rows=TRADES, fields=FIELDS,
                                                    chunk_rows=40 * 10, threads=1).blocks)
    pnl = np.vstack([b.pnl for b in blocks])
    errors = [e for b in blocks for e in b.errors]
    assert len(blocks) == 6 and sum(b.failed for b in blocks) == TRADES
    assert sorted(e.trade for e in errors) == list(range(TRADES)) and {e.scenario for e in errors} == {23}
    assert all(e.field.endswith("volatility") and "finite and > 0" in e.message for e in errors), errors[:2]
    assert np.isnan(pnl[:, 23]).all()
    keep = np.delete(np.arange(40), 23)
    _, _, rest = cube(world, s.subset(keep))
    np.testing.assert_array_equal(pnl[:, keep], rest)


def test_a_one_pass_block_writes_no_n_by_s_input_columns(world):
    """What the one pass is for: a block's working memory is its P&L, not the seven n x s
    columns of the batch path (numpy's allocations, traced)."""
    import tracemalloc

    _, service, spec, batch, ref, quantity, _ = world
    s = ScenarioSet((Shift("spot", Quantity.SPOT, ShiftKind.LOG, ("SPX",)),
                     Shift("vol", Quantity.VOL, ShiftKind.ABSOLUTE, ("SPX-SVI",)),
                     Shift("rate", Quantity.ZERO_RATE, ShiftKind.ABSOLUTE, ("USD-OIS",))),
                    np.random.default_rng(61).normal(0, 0.01, (3, 4000)), tuple(f"s{j}" for j in range(4000)))
    cube_bytes = TRADES * 4000 * 8
    peaks = {}
    for one_pass in (True, False):
        r = ScenarioRevaluer(service, one_pass=one_pass).revalue(spec, batch, ref, s, quantity, rows=TRADES,
                                                                 fields=FIELDS, threads=1, reuse=True)
        tracemalloc.start()
        try:
            blocks = list(r.blocks)
            peaks[one_pass] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert len(blocks) == 1
    assert peaks[True] < 1.5 * cube_bytes < 5 * cube_bytes < peaks[False], peaks


def test_a_nan_sensitivity_always_comes_with_its_error():
    """A trade whose base value failed while its bumped ones gave no error was NaN in delta
    and gamma with no error (the proto: "NaN where a bumped value failed (see errors)"): it
    now carries the base's error on each component; a NaN no error explains gets its own."""
    from pricegrid.server.service.rows import RowError
    from pricegrid.server.service.scenarios import CubeBlock, PortfolioRevaluation, ScenarioError, sensitivities

    shifts = [Shift("s", Quantity.SPOT, ShiftKind.RELATIVE, ("X",)), Shift("v", Quantity.VOL, ShiftKind.RELATIVE, ("X",))]
    pnl = np.ones((3, 4))
    pnl[1] = np.nan         # trade 1: its base failed; the blocks name nothing
    pnl[2, 2:] = np.nan     # trade 2: the second component's bumps failed, named by the block (its scenario 2)

    class Revaluer:
        pricing = dataclasses.make_dataclass("P", [("snapshots", object)])(None)

        def validate_portfolio(self, books, scenarios, path):
            pass

        def revalue_portfolio(self, books, scenarios, **kw):
            block = CubeBlock(0, 3, pnl.copy(), [ScenarioError(2, 2, 3, "market.volatility", "bad vol")], 2)
            return PortfolioRevaluation(np.array([1.0, np.nan, 1.0]), None, iter([block]),
                                        [RowError(1, 3, "portfolio.european.strike", "not finite")], None)

    s = sensitivities(Revaluer(), [], shifts, [1e-3, 1e-3], "central", Smile.STICKY_STRIKE)
    nan = ~(np.isfinite(s.delta) & np.isfinite(s.gamma))
    assert {(int(t), int(c)) for t, c in zip(*np.nonzero(nan))} == {(1, 0), (1, 1), (2, 1)}
    assert sorted((e.trade, e.scenario, e.field) for e in s.errors) == [
        (1, 0, "portfolio.european.strike"), (1, 1, "portfolio.european.strike"), (2, 1, "market.volatility")]
