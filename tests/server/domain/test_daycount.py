"""Day counts against QuantLib's day counters on thousands of random date pairs."""

import datetime as dt

import numpy as np
import pytest
import QuantLib as ql

from pricegrid.server.domain.daycount import DayCount, make_date, to_days, year_fraction, year_fractions
from pricegrid.server.domain.errors import ServiceError

QL = {
    DayCount.ACT_365F: ql.Actual365Fixed(),
    DayCount.ACT_360: ql.Actual360(),
    DayCount.ACT_ACT_ISDA: ql.ActualActual(ql.ActualActual.ISDA),
    DayCount.THIRTY_360: ql.Thirty360(ql.Thirty360.BondBasis),
}
EXCEL_EPOCH = 25569  # QuantLib serial number of 1970-01-01


@pytest.mark.parametrize("day_count", list(DayCount))
def test_year_fractions_match_quantlib(day_count):
    rng = np.random.default_rng(int(day_count))
    for valuation in (dt.date(2024, 1, 31), dt.date(2023, 2, 28), dt.date(2025, 12, 31), dt.date(2024, 2, 29)):
        v = to_days(valuation)
        ends = rng.integers(v - 800, v + 30 * 366, 2000)
        ours = year_fractions(v, ends, day_count)
        ref = np.array([QL[day_count].yearFraction(ql.Date(v + EXCEL_EPOCH), ql.Date(int(e) + EXCEL_EPOCH)) for e in ends])
        np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-15)


@pytest.mark.parametrize("day_count", list(DayCount))
def test_single_equals_vectorised(day_count):
    a, b = dt.date(2024, 3, 31), dt.date(2031, 8, 31)
    assert year_fraction(a, b, day_count) == year_fractions(to_days(a), np.array([to_days(b)]), day_count)[0]


def test_known_values():
    # ACT/ACT ISDA over a leap-year boundary: 2023-07-01..2024-07-01 = 184/365 + 182/366
    assert year_fraction(dt.date(2023, 7, 1), dt.date(2024, 7, 1), DayCount.ACT_ACT_ISDA) == pytest.approx(
        184 / 365 + 182 / 366, abs=1e-15
    )
    # 30/360 bond basis: 31st -> 30th
    assert year_fraction(dt.date(2024, 1, 31), dt.date(2024, 3, 31), DayCount.THIRTY_360) == pytest.approx(60 / 360)


def test_invalid_date_names_the_field():
    with pytest.raises(ServiceError) as info:
        make_date(2025, 2, 30, "european.expiry.dates.expiry_date")
    assert info.value.violations[0].field == "european.expiry.dates.expiry_date"
