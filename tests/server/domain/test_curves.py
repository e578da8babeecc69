"""YieldCurve: construction, immutability and validate() (every violation, with field and node).

The node checks are also compared with the kernel's validate_nodes on random corrupted
curves in tests/ext/test_curves_kernel.py; node dates are placed on the axis here, their discount
factors against QuantLib's day counters.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import QuantLib as ql

from pricegrid.server.domain.curves import Interpolation, ValueKind, YieldCurve
from pricegrid.server.domain.daycount import DayCount
from pricegrid.server.domain.errors import FieldViolation


def good(**overrides) -> YieldCurve:
    args = dict(curve_id="EUR-ESTR", currency="EUR", day_count="ACT_365F",
                node_times=[0.25, 0.5, 1.0, 2.0, 5.0], node_values=[0.995, 0.99, 0.98, 0.955, 0.88])
    args.update(overrides)
    return YieldCurve(**args)


def test_defaults_and_coercion():
    c = good()
    assert c.validate() == []
    assert c.value_kind is ValueKind.DISCOUNT_FACTOR
    assert c.interpolation is Interpolation.LOG_LINEAR_DISCOUNT
    assert c.node_times.dtype == np.float64 and c.size == 5
    c = good(day_count=DayCount.ACT_360, value_kind=1, interpolation=3,
             node_values=[0.02, 0.021, 0.022, 0.023, 0.025])
    assert c.day_count == "ACT_360" and c.value_kind is ValueKind.ZERO_RATE
    assert c.interpolation is Interpolation.MONOTONE_CONVEX and c.validate() == []


def test_frozen_and_arrays_copied_read_only():
    times = np.array([0.5, 1.0])
    c = good(node_times=times, node_values=[0.99, 0.98])
    times[0] = 7.0
    assert c.node_times[0] == 0.5
    with pytest.raises(ValueError):
        c.node_times[0] = 1.0
    with pytest.raises(AttributeError):
        c.currency = "USD"  # type: ignore[misc]


def test_every_node_violation_with_field_and_index():
    c = good(node_times=[0.5, 0.5, 0.25, -1.0, np.nan, 3.0], node_values=[0.99, 0.98, -0.1, np.inf, 0.9, 0.0])
    assert c.validate() == [
        FieldViolation("node_times[1]", "equal to the previous node's time"),
        FieldViolation("node_times[2]", "below the previous node's time"),
        FieldViolation("node_values[2]", "discount factor not > 0"),
        FieldViolation("node_times[3]", "not > 0"),
        FieldViolation("node_times[3]", "below the previous node's time"),
        FieldViolation("node_values[3]", "not finite"),
        FieldViolation("node_times[4]", "not finite"),
        FieldViolation("node_values[5]", "discount factor not > 0"),
    ]


def test_zero_rates_may_be_negative_but_not_overflow():
    assert good(value_kind=ValueKind.ZERO_RATE, node_values=[-0.01, -0.005, 0.0, 0.01, 0.02]).validate() == []
    v = good(value_kind=ValueKind.ZERO_RATE, node_times=[1.0, 1e300], node_values=[0.01, 1e10]).validate()
    assert v == [FieldViolation("node_values[1]", "the curve overflows here (rate times time, or a slope, not finite)")]


def test_curve_level_violations():
    c = YieldCurve("", "eur", "ACT/365", [], [], value_kind=7, interpolation=0)
    fields = [v.field for v in c.validate()]
    assert fields == ["curve_id", "currency", "day_count", "value_kind", "interpolation", "node_times"]
    assert [v.field for v in good(node_values=[0.99]).validate()] == ["node_values"]
    assert [v.field for v in good(node_times=[[0.5, 1.0]], node_values=[0.99, 0.98]).validate()] == ["node_times"]
    assert [v.field for v in good(node_times=["a", "b"], node_values=[0.99, 0.98]).validate()][0] == "node_times"


@pytest.mark.parametrize("day_count, ql_day_count", [
    (DayCount.ACT_365F, ql.Actual365Fixed()),
    (DayCount.ACT_360, ql.Actual360()),
    (DayCount.ACT_ACT_ISDA, ql.ActualActual(ql.ActualActual.ISDA)),
    (DayCount.THIRTY_360, ql.Thirty360(ql.Thirty360.BondBasis)),
])
def test_from_dates_places_nodes_on_the_axis_keeping_quantlibs_discount_factors(day_count, ql_day_count):
    """Node times are ACT/365F from the valuation date (the snapshot's axis) whatever the day
    count; each node keeps the discount factor of its rate quoted in the day count."""
    valuation = dt.date(2025, 1, 15)
    dates = [valuation + dt.timedelta(days=int(d)) for d in (7, 31, 92, 183, 365, 731, 1826, 3653, 10958)]
    ref = np.array([ql_day_count.yearFraction(ql.Date(valuation.day, valuation.month, valuation.year),
                                              ql.Date(d.day, d.month, d.year)) for d in dates])
    axis = np.array([(d - valuation).days / 365.0 for d in dates])
    dfs = np.exp(-0.03 * np.arange(1, 10))
    c = YieldCurve.from_dates("USD-SOFR", "USD", valuation, dates, dfs, day_count=day_count)
    np.testing.assert_array_equal(c.node_times, axis)
    np.testing.assert_array_equal(c.node_values, dfs)
    assert c.day_count == day_count.name and c.validate() == []
    zeros = 0.02 + 0.001 * np.arange(9)
    z = YieldCurve.from_dates("Z", "USD", valuation, dates, zeros, day_count=day_count, value_kind=ValueKind.ZERO_RATE)
    np.testing.assert_allclose(np.exp(-z.node_values * z.node_times), np.exp(-zeros * ref), rtol=1e-14, atol=0)
    late = YieldCurve.from_dates("X", "USD", valuation, [valuation, dates[0]], [1.0, 0.999])
    assert late.validate() == [FieldViolation("node_times[0]", "not > 0")]
