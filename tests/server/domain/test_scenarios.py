"""Scenario sets as domain data: tenors, bucket and grid weights, how sizes apply, and every
bad scenario set refused with its field named."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pricegrid.server.domain.errors import Code, ServiceError
from pricegrid.server.domain.scenarios import (
    Buckets, Grid, Parallel, Quantity, ScenarioSet, Shift, ShiftKind, apply, row_sizes, shape_weights,
    tent_weights, tenor_years,
)

IDS = {"underlying": ["SPX", "SX5E", "EUA-DEC27"], "surface": ["SPX-SVI", "EUA-SMILE"],
       "discount curve": ["USD-OIS", "EUR-ESTR"], "dividend curve": ["SPX-DIV"]}


def spot(name="spot", kind=ShiftKind.RELATIVE, selector=("SPX",)):
    return Shift(name, Quantity.SPOT, kind, selector)


def test_tenors_in_years():
    assert tenor_years("ON") == 1 / 365 and tenor_years("tn") == 2 / 365
    assert tenor_years("1D") == 1 / 365 and tenor_years("2W") == 14 / 365
    assert tenor_years("3M") == 0.25 and tenor_years("18m") == 1.5 and tenor_years("10Y") == 10.0
    assert tenor_years("0.75") == 0.75
    for bad in ("3X", "M3", "", "nan", "1.5M"):
        with pytest.raises(ValueError):
            tenor_years(bad)


def test_tent_weights_at_between_and_beyond_the_pillars():
    p = (0.25, 1.0, 5.0)
    w = tent_weights(p, np.array([0.0, 0.25, 0.625, 1.0, 3.0, 5.0, 30.0, np.nan]))
    np.testing.assert_allclose(w[:7], [[1, 0, 0], [1, 0, 0], [0.5, 0.5, 0], [0, 1, 0], [0, 0.5, 0.5], [0, 0, 1],
                                       [0, 0, 1]], atol=1e-15)
    assert np.isnan(w[7]).all()
    np.testing.assert_array_equal(tent_weights((2.0,), np.array([0.1, 9.0])), [[1.0], [1.0]])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 50.0), min_size=1, max_size=8, unique=True),
       st.lists(st.floats(0.0, 60.0), min_size=1, max_size=20))
def test_tent_weights_are_a_partition_of_unity_and_reproduce_linear_functions(pillars, xs):
    p = np.sort(np.array(pillars))
    x = np.array(xs)
    w = tent_weights(p, x)
    assert (w >= 0).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # a shift linear in the pillar times comes back as the same line inside the pillars
    if p.size > 1:
        inside = (x >= p[0]) & (x <= p[-1])
        np.testing.assert_allclose((w @ (2.0 * p + 1.0))[inside], 2.0 * x[inside] + 1.0, rtol=1e-12, atol=1e-9)


def test_equal_bucket_sizes_are_the_parallel_shift_and_grid_weights_are_bilinear():
    expiry = np.array([0.1, 0.5, 2.0, 7.0])
    sizes = np.full((3, 2), 0.01)
    b = Shift("r", Quantity.ZERO_RATE, ShiftKind.ABSOLUTE, ("USD-*",), Buckets((0.25, 1.0, 5.0)))
    np.testing.assert_allclose(row_sizes(b, sizes, expiry), np.full((4, 2), 0.01), rtol=1e-15)
    g = Grid((0.5, 1.0), (0.9, 1.1))
    w = shape_weights(g, np.array([0.75]), np.array([1.0]))
    np.testing.assert_allclose(w, [[0.25, 0.25, 0.25, 0.25]])
    w = shape_weights(g, np.array([1.0, 0.2]), np.array([1.1, 2.0]))
    np.testing.assert_allclose(w, [[0, 0, 0, 1], [0, 1, 0, 0]])
    assert shape_weights(Parallel(), expiry).shape == (4, 1)
    with pytest.raises(ValueError):
        shape_weights(g, expiry)


def test_how_sizes_apply():
    base = np.array([100.0, 50.0])
    size = np.array([[0.1, -0.2], [0.1, -0.2]])
    np.testing.assert_allclose(apply(ShiftKind.ABSOLUTE, base, size), [[100.1, 99.8], [50.1, 49.8]])
    np.testing.assert_allclose(apply(ShiftKind.RELATIVE, base, size), [[110.0, 80.0], [55.0, 40.0]])
    np.testing.assert_allclose(apply(ShiftKind.LOG, base, size),
                               [[100 * math.exp(0.1), 100 * math.exp(-0.2)], [50 * math.exp(0.1), 50 * math.exp(-0.2)]])
    np.testing.assert_array_equal(apply(ShiftKind.FIXED, base, size), size)


def test_component_labels_and_blocks_follow_the_shifts():
    shifts = (spot(), Shift("vol", Quantity.VOL, ShiftKind.ABSOLUTE, ("SPX-*",), Grid((0.5, 1.0), (0.9, 1.1))),
              Shift("curve", Quantity.ZERO_RATE, ShiftKind.ABSOLUTE, ("USD-OIS",), Buckets((0.25, 1.0), ("3M", "1Y"))))
    values = np.arange(7 * 3, dtype=float).reshape(7, 3)
    s = ScenarioSet(shifts, values, ("a", "b", "c"))
    assert s.components == 7 and s.scenarios == 3
    assert s.component_labels() == ["spot", "vol/0.5y/0.9", "vol/0.5y/1.1", "vol/1y/0.9", "vol/1y/1.1",
                                    "curve/3M", "curve/1Y"]
    blocks = list(s.blocks())
    assert [b.shape for _, b in blocks] == [(1, 3), (4, 3), (2, 3)]
    np.testing.assert_array_equal(blocks[2][1], values[5:7])
    s.validate(IDS)  # valid: no error


def fields(error: ServiceError) -> dict[str, str]:
    return {v.field: v.description for v in error.violations}


def test_every_violation_is_named_at_once():
    shifts = (
        spot(selector=("NOPE*",)),                                                     # matches nothing
        Shift("spot", Quantity.VOL, ShiftKind.ABSOLUTE, ("SPX-SVI",)),                 # name repeats
        Shift("r", Quantity.ZERO_RATE, ShiftKind.ABSOLUTE, ("USD-OIS",), Buckets((1.0, 0.5))),  # not increasing
        Shift("g", Quantity.ZERO_RATE, ShiftKind.ABSOLUTE, ("USD-OIS",), Grid((1.0,), (1.0,))),  # grid on a curve
        Shift("t", Quantity.TIME, ShiftKind.RELATIVE, ("SPX",)),                        # a roll: absolute, no selector
        Shift("s", Quantity.SPOT, ShiftKind.ABSOLUTE, ("SPX",), Buckets((1.0,))),        # spot buckets
        Shift("", Quantity.VOL, ShiftKind.ABSOLUTE, ()),                                  # no name, no selector
        Shift("m", Quantity.VOL, ShiftKind.ABSOLUTE, ("*",), Grid((1.0,), (0.0, 1.0))),  # moneyness 0
    )
    components = sum(s.components for s in shifts)
    with pytest.raises(ServiceError) as info:
        ScenarioSet(shifts, np.zeros((components, 2)), ("x", "x")).validate(IDS)
    f = fields(info.value)
    assert info.value.code == Code.INVALID_ARGUMENT
    assert "matches no underlying" in f["shifts[0].selector"]
    assert "repeats shifts[0]" in f["shifts[1].name"]
    assert "node 1" in f["shifts[2].buckets.tenors[1]"]
    assert "vols only" in f["shifts[3].grid"]
    assert "absolute and parallel" in f["shifts[4].kind"] and "no selector" in f["shifts[4].selector"]
    assert "parallel only" in f["shifts[5].buckets"]
    assert f["shifts[6].name"] == "required" and "required" in f["shifts[6].selector"]
    assert "positive" in f["shifts[7].grid.moneyness[0]"]
    assert "repeats labels[0]" in f["labels[1]"]


def test_sizes_must_match_the_components_and_be_finite():
    with pytest.raises(ServiceError) as info:
        ScenarioSet((spot(),), np.zeros((2, 3)), ("a", "b", "c")).validate(IDS)
    assert "expected (components, scenarios) = (1, 3)" in fields(info.value)["sizes"]  # the request's field
    values = np.zeros((1, 3))
    values[0, 2] = np.nan
    with pytest.raises(ServiceError) as info:
        ScenarioSet((spot(),), values, ("a", "b", "c")).validate(IDS)
    assert "scenario 2 (c)" in fields(info.value)["sizes"]
    with pytest.raises(ServiceError) as info:  # the changes of a history
        ScenarioSet((spot(),), values, ("a", "b", "c"), sizes_path="history.levels").validate(IDS)
    assert list(fields(info.value)) == ["history.levels"]
    with pytest.raises(ServiceError) as info:
        ScenarioSet((spot(),), np.zeros((1, 3)), ("a", "b", "c")).validate(IDS, max_cells=2)
    assert info.value.code == Code.RESOURCE_EXHAUSTED
    with pytest.raises(ServiceError) as info:
        ScenarioSet((), np.zeros((0, 0)), ()).validate(IDS)
    assert {"shifts", "labels"} <= set(fields(info.value))


def test_selectors_are_globs_over_the_ids_of_their_kind():
    s = Shift("fx", Quantity.DIVIDEND_YIELD, ShiftKind.ABSOLUTE, ("*-DIV", "EUR-?STR"))
    assert s.matches("SPX-DIV") and s.matches("EUR-ESTR") and not s.matches("USD-OIS")
    ScenarioSet((s,), np.zeros((1, 1)), ("x",)).validate(IDS)
    # a curve pattern is not matched against underlyings
    with pytest.raises(ServiceError):
        ScenarioSet((Shift("x", Quantity.ZERO_RATE, ShiftKind.ABSOLUTE, ("SPX",)),), np.zeros((1, 1)),
                    ("x",)).validate(IDS)


def test_historical_sizes_follow_each_shifts_kind_and_the_holding_period():
    from pricegrid.server.domain.scenarios import historical_sizes

    levels = np.array([[100.0, 0.20, 0.03], [110.0, 0.25, 0.031], [99.0, 0.22, 0.029], [99.0, 0.30, 0.032]])
    dates = ["2026-01-05", "2026-01-06", "2026-01-07T17:30:00Z", "2026-01-08"]
    d0, d1, d2, d3 = dates
    kinds = [ShiftKind.LOG, ShiftKind.ABSOLUTE, ShiftKind.RELATIVE]
    sizes, labels = historical_sizes(levels, kinds, dates)
    assert labels == (f"{d0}/{d1}", f"{d1}/{d2}", f"{d2}/{d3}") and sizes.shape == (3, 3)
    np.testing.assert_allclose(sizes[0], np.log([1.1, 0.9, 1.0]), rtol=1e-14)
    np.testing.assert_allclose(sizes[1], [0.05, -0.03, 0.08], atol=1e-15)
    np.testing.assert_allclose(sizes[2], [0.031 / 0.03 - 1, 0.029 / 0.031 - 1, 0.032 / 0.029 - 1], rtol=1e-14)
    # applied to today's level, a change reproduces the move seen then
    assert apply(ShiftKind.LOG, np.array([100.0]), sizes[0:1, :1])[0, 0] == pytest.approx(110.0, rel=1e-15)
    two, labels2 = historical_sizes(levels, kinds, dates, holding=2)
    assert labels2 == (f"{d0}/{d2}", f"{d1}/{d3}")
    np.testing.assert_allclose(two[0], np.log([0.99, 0.9]), rtol=1e-14)
    apart, labels3 = historical_sizes(levels, kinds, dates, holding=2, overlapping=False)
    assert labels3 == (f"{d0}/{d2}",) and apart.shape == (3, 1)
    with pytest.raises(ServiceError) as info:
        historical_sizes(np.where(levels > 50, -1.0, levels), kinds, dates, prefix="scenarios.history.")
    assert "scenarios.history.levels" in fields(info.value)
    with pytest.raises(ServiceError):
        historical_sizes(levels, kinds, dates, holding=4)
    with pytest.raises(ServiceError):
        historical_sizes(levels, [ShiftKind.FIXED] * 3, dates)
    # dates are dates, in time order, each once (they were only labels: "2026-02-30", "foo",
    # a series backwards all ran, and repeated dates were blamed on labels nobody sent)
    for bad, at in ((["2026-01-05", "2026-02-30", "2026-01-07", "2026-01-08"], 1),
                    (["2026-01-05", "foo", "2026-01-07", "2026-01-08"], 1),
                    (["2026-01-05", "2026-01-06", "", "2026-01-08"], 2),
                    (list(reversed(dates)), 1),
                    (["2026-01-05", "2026-01-06", "2026-01-06", "2026-01-08"], 2),
                    (["2026-01-05", "2026-01-06T12:00:00+02:00", "2026-01-06T09:00:00Z", "2026-01-08"], 2)):
        with pytest.raises(ServiceError) as info:
            historical_sizes(levels, kinds, bad, prefix="scenarios.history.")
        assert f"scenarios.history.dates[{at}]" in fields(info.value), (bad, fields(info.value))
