"""Day counts: year fractions between a valuation date and expiry dates, vectorised.

Dates are int32 days since 1970-01-01 (numpy ``datetime64[D]`` as integers). Conventions:

* ACT/365F, ACT/360: actual days over 365 or 360.
* ACT/ACT ISDA: days falling in leap years over 366 plus the others over 365
  (ISDA 2006 Definitions, section 4.16(b)).
* 30/360 Bond Basis (ISDA 2006 section 4.16(f)): D1 = 31 becomes 30; D2 = 31 becomes 30
  when D1 is then 30; fraction = (360 (Y2-Y1) + 30 (M2-M1) + (D2-D1)) / 360.

An expiry before the valuation date gives a negative fraction, which the kernels reject
per row (time must be >= 0). Checked against QuantLib's day counters in
tests/server/domain/test_daycount.py.
"""

from __future__ import annotations

import datetime as dt
import enum

import numpy as np

from pricegrid.server.domain.errors import invalid

EPOCH = dt.date(1970, 1, 1)


class DayCount(enum.IntEnum):
    """The same numbers as ``pricegrid.v1.DayCount``."""

    ACT_365F = 1
    ACT_360 = 2
    ACT_ACT_ISDA = 3
    THIRTY_360 = 4


def to_days(date: dt.date) -> int:
    return (date - EPOCH).days


def make_date(year: int, month: int, day: int, field_path: str) -> dt.date:
    try:
        return dt.date(year, month, day)
    except (ValueError, OverflowError):
        raise invalid(field_path, f"{year:04d}-{month:02d}-{day:02d} is not a calendar date") from None


def _ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = days.astype("datetime64[D]")
    y = d.astype("datetime64[Y]")
    m = d.astype("datetime64[M]")
    year = y.astype(np.int64) + 1970
    month = (m - y).astype(np.int64) + 1
    day = (d - m).astype(np.int64) + 1
    return year, month, day


def _is_leap(year: np.ndarray) -> np.ndarray:
    return ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)


def _act_act_isda(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    lo = np.minimum(start, end)
    hi = np.maximum(start, end)
    y_lo, _, _ = _ymd(lo)
    y_hi, _, _ = _ymd(hi)
    jan1_after_lo = (np.array(y_lo + 1 - 1970, dtype="datetime64[Y]").astype("datetime64[D]")).astype(np.int64)
    jan1_hi = (np.array(y_hi - 1970, dtype="datetime64[Y]").astype("datetime64[D]")).astype(np.int64)
    basis_lo = np.where(_is_leap(y_lo), 366.0, 365.0)
    basis_hi = np.where(_is_leap(y_hi), 366.0, 365.0)
    same = y_lo == y_hi
    frac = np.where(
        same,
        (hi - lo) / basis_lo,
        (jan1_after_lo - lo) / basis_lo + (y_hi - y_lo - 1) + (hi - jan1_hi) / basis_hi,
    )
    return np.where(end >= start, frac, -frac)


def _thirty_360(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    y1, m1, d1 = _ymd(start)
    y2, m2, d2 = _ymd(end)
    d1 = np.where(d1 == 31, 30, d1)
    d2 = np.where((d2 == 31) & (d1 == 30), 30, d2)
    return (360.0 * (y2 - y1) + 30.0 * (m2 - m1) + (d2 - d1)) / 360.0


def year_fractions(valuation_day: int, expiry_days: np.ndarray, day_count: DayCount) -> np.ndarray:
    """Year fractions from one valuation date to each expiry date (all as epoch days)."""
    end = np.asarray(expiry_days, dtype=np.int64)
    start = np.full_like(end, valuation_day)
    if day_count == DayCount.ACT_365F:
        return (end - start) / 365.0
    if day_count == DayCount.ACT_360:
        return (end - start) / 360.0
    if day_count == DayCount.ACT_ACT_ISDA:
        return _act_act_isda(start, end)
    if day_count == DayCount.THIRTY_360:
        return _thirty_360(start, end)
    raise ValueError(f"unknown day count {day_count!r}")


def year_fraction(valuation: dt.date, expiry: dt.date, day_count: DayCount) -> float:
    """One year fraction (the per-trade path), through the same vectorised code."""
    if day_count in (DayCount.ACT_365F, DayCount.ACT_360):  # fast path: no arrays
        return (expiry - valuation).days / (365.0 if day_count == DayCount.ACT_365F else 360.0)
    return float(year_fractions(to_days(valuation), np.array([to_days(expiry)]), day_count)[0])
