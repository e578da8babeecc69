"""Instruments and market inputs, for one trade and for columnar batches.

Per-trade objects are NamedTuples (immutable and cheap to build on the front-office path);
batches hold numpy columns, each of the batch's length or of length 1 (broadcast).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np


class OptionType(enum.IntEnum):
    """The same numbers as ``pricegrid.v1.OptionType``."""

    CALL = 1
    PUT = 2


class EuropeanOption(NamedTuple):
    option_type: int
    strike: float
    time_to_expiry: float


class HestonParameters(NamedTuple):
    v0: float
    kappa: float
    theta: float
    sigma: float
    rho: float


class MarketInputs(NamedTuple):
    """Inline market data for one trade. ``underlying`` is the spot (BSM, Heston) or the
    forward (Black-76, Bachelier); ``heston`` is set for Heston only."""

    underlying: float
    rate: float
    dividend_yield: float
    volatility: float
    heston: Optional[HestonParameters] = None


@dataclass(frozen=True)
class EuropeanOptionBatch:
    option_type: np.ndarray  # int32
    strike: np.ndarray  # float64
    time_to_expiry: np.ndarray  # float64


@dataclass(frozen=True)
class CashDividends:
    """Discrete cash dividends of one underlying, shared by every row of a batch (the
    escrowed-dividend model): ex-times in years (> 0, in time order) and amounts. Each row
    counts those with ex-time in (0, T] of its own expiry T."""

    times: np.ndarray  # float64
    amounts: np.ndarray  # float64

    def present_value(self, rate: np.ndarray, time: np.ndarray) -> np.ndarray:
        """Per row: the dividends with ex-time in (0, time] discounted at the row's flat
        ``rate`` (continuously compounded), as the tree engine escrows them."""
        rate, time = np.asarray(rate, dtype=np.float64), np.asarray(time, dtype=np.float64)
        pv = np.zeros(np.broadcast(rate, time).shape)
        for t, a in zip(self.times.tolist(), self.amounts.tolist()):
            if t > 0.0:
                pv += np.where(t <= time, a * np.exp(-rate * t), 0.0)
        return pv


@dataclass(frozen=True)
class MarketBatch:
    underlying: np.ndarray
    rate: np.ndarray
    dividend_yield: np.ndarray
    volatility: Optional[np.ndarray]  # None for implied-vol and Heston requests
    # Heston only
    v0: Optional[np.ndarray] = None
    kappa: Optional[np.ndarray] = None
    theta: Optional[np.ndarray] = None
    sigma: Optional[np.ndarray] = None
    rho: Optional[np.ndarray] = None
    #: a snapshot's cash dividends, for an engine that prices them itself (its catalogue row
    #: says ``cash_dividends``); ``underlying`` is then the actual (cum-dividend) spot
    cash_dividends: Optional[CashDividends] = None

    @staticmethod
    def of(market: "MarketInputs") -> "MarketBatch":
        """One trade's market as length-1 columns."""
        one = lambda x: np.array([x], dtype=np.float64)  # noqa: E731
        h = market.heston
        return MarketBatch(
            one(market.underlying), one(market.rate), one(market.dividend_yield), one(market.volatility),
            *((None,) * 5 if h is None else (one(h.v0), one(h.kappa), one(h.theta), one(h.sigma), one(h.rho))),
        )


def batch_rows(*columns: Optional[np.ndarray]) -> int:
    """The batch length: the longest column (all others are that long or broadcast)."""
    return max((len(c) for c in columns if c is not None), default=0)


@dataclass(frozen=True)
class SnapshotMarket:
    """Market data by reference: one underlying of a snapshot the server holds. Its level,
    rates and dividends come from the snapshot at each row's expiry; ``inline`` carries what
    the snapshot does not hold yet (the volatility, or the Heston parameters). An inline
    ``volatility`` of None reads each row's from the underlying's surface; any column given
    is used as given (a 0 is a zero vol, which the kernels refuse per row).

    The rows' times count on the snapshot's axis (years ACT/365F from its valuation date):
    ``expiry_dates`` is the origin of an expiry sent as dates (valuation date, DayCount name,
    the field path of its dates), checked against the snapshot's (``check_expiry_dates``);
    None: year fractions, read as ACT/365F from the snapshot's valuation date."""

    snapshot_id: str
    underlying_id: str
    inline: MarketBatch
    expiry_dates: Optional[tuple] = None
    #: the product's inputs whose unset value is the spot (a lookback's running extremes) that
    #: the trade left unset: the snapshot's spot, the traded level (a spot before any cash
    #: dividend is taken off, or a futures price), filled in by the service when it reads the
    #: snapshot (PricingService.with_snapshot_spot); the batch holds no column for them until then
    spot_inputs: tuple[str, ...] = ()


def check_expiry_dates(market: SnapshotMarket, valuation_date) -> list[tuple[str, str]]:
    """(field, why) of each way ``market``'s expiry dates leave the axis of a snapshot valued
    on ``valuation_date``: another valuation date (the snapshot's lookups would count from the
    wrong origin) or a day count other than ACT/365F (a date would sit elsewhere on the axis
    than the snapshot's own dates)."""
    if market.expiry_dates is None:
        return []
    start, day_count, path = market.expiry_dates
    out = []
    if start != valuation_date:
        out.append((f"{path}.valuation_date", f"{start} is not the snapshot's valuation date {valuation_date}: a trade"
                                              " on a snapshot counts its expiry from the snapshot's valuation date"))
    if day_count != "ACT_365F":
        out.append((f"{path}.day_count", f"{day_count} on a snapshot: its times are years ACT/365F from its valuation"
                                         " date (send DAY_COUNT_ACT_365F)"))
    return out


class MarketUsed(NamedTuple):
    """What a price took from a snapshot (every response names it)."""

    snapshot_id: str
    underlying_id: str
    discount_curve: str
    dividend_curve: str
    dividends: int = 0  # cash dividends taken off the spot (escrowed), at most over the rows
    vol_surface: str = ""  # the surface the vols were read from ("": given inline)
