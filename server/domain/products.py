"""The options library: every product's inputs, their defaults and valid codes.

One table drives the whole path: the transport reads a per-trade message or a batch's
columns by these names (the proto fields have the same names in both shapes), the service
slices the columns into chunks, and the pricers hand them to the kernels in the order the
kernel takes them. A new product is a row here, a kernel and an adapter in
``pricegrid.server.pricers.library``.

Besides its inputs, every product has an expiry (``time_to_expiry`` after dates became a
year fraction) and the market (spot or forward, rate, dividend yield, and volatility or
Heston parameters). Asian options also carry a fixing schedule (:class:`Schedule`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

#: default of an input that is the trade's own spot when unset (lookback extremes)
SPOT = "spot"


@dataclass(frozen=True)
class Input:
    """One product input: a proto field of the per-trade message and of the batch columns."""

    name: str
    dtype: str  # "f8" or "i4"
    default: Union[float, int, str, None] = None  # None: required; SPOT: the spot
    codes: tuple[int, ...] = ()  # valid enum values (code columns)
    enum: str = ""  # the proto enum of a code column, for messages


@dataclass(frozen=True)
class Product:
    name: str  # the oneof member in PriceRequest / PriceBatchRequest
    inputs: tuple[Input, ...]
    schedule: bool = False  # Asian: fixing_times + fixing_counts
    description: str = ""
    max_time: Optional[float] = None  # the longest expiry its engines price, in years (longer: BAD_TIME)

    @property
    def code_inputs(self) -> tuple[Input, ...]:
        return tuple(i for i in self.inputs if i.codes)

    def input(self, name: str) -> Optional[Input]:
        for i in self.inputs:
            if i.name == name:
                return i
        return None


_CP = (1, 2)
OPTION_TYPE = Input("option_type", "i4", codes=_CP, enum="OptionType")
STRIKE = Input("strike", "f8")

PRODUCTS: dict[str, Product] = {
    p.name: p
    for p in (
        Product("european", (OPTION_TYPE, STRIKE), description="European call or put"),
        Product("american", (OPTION_TYPE, STRIKE), description="American call or put",
                max_time=100.0),  # ext/american.pyx MAX_TIME (pg_american.h: PG_AM_T_MAX)
        Product(
            "barrier",
            (
                Input("barrier_type", "i4", codes=(1, 2, 3, 4), enum="BarrierType"),
                OPTION_TYPE,
                STRIKE,
                Input("barrier", "f8"),
                Input("rebate", "f8", 0.0),
                Input("monitoring_interval", "f8", 0.0),
            ),
            description="single barrier (down/up, in/out) with rebate, continuous or discrete monitoring",
        ),
        Product(
            "double_barrier",
            (
                Input("knock_type", "i4", codes=(1, 2), enum="KnockType"),
                OPTION_TYPE,
                STRIKE,
                Input("lower_barrier", "f8"),
                Input("upper_barrier", "f8"),
            ),
            description="double knock-in / knock-out (Ikeda-Kunitomo)",
        ),
        Product(
            "digital",
            (
                Input("payoff", "i4", codes=(1, 2, 3), enum="DigitalPayoff"),
                OPTION_TYPE,
                STRIKE,
                Input("cash", "f8", 1.0),
                Input("payoff_strike", "f8", 0.0),
            ),
            description="European cash-or-nothing, asset-or-nothing and gap digitals",
        ),
        Product(
            "touch",
            (
                Input("touch_type", "i4", codes=(1, 2), enum="TouchType"),
                Input("direction", "i4", codes=(1, 2), enum="BarrierDirection"),
                Input("payment", "i4", 2, codes=(1, 2), enum="TouchPayment"),
                Input("cash", "f8", 1.0),
                Input("barrier", "f8"),
                Input("monitoring_interval", "f8", 0.0),
            ),
            description="one-touch (paid at hit or at expiry) and no-touch",
        ),
        Product(
            "asian",
            (
                Input("averaging", "i4", codes=(1, 2), enum="Averaging"),
                OPTION_TYPE,
                STRIKE,
                Input("running_average", "f8", 0.0),
                Input("past_fixings", "i4", 0),
                Input("elapsed", "f8", 0.0),
            ),
            schedule=True,
            description="average-price Asian, arithmetic or geometric, discrete or continuous, averaging begun or not",
        ),
        Product(
            "lookback",
            (
                Input("strike_type", "i4", codes=(1, 2), enum="LookbackStrike"),
                OPTION_TYPE,
                Input("strike", "f8", 0.0),
                Input("running_minimum", "f8", SPOT),
                Input("running_maximum", "f8", SPOT),
            ),
            description="floating- and fixed-strike lookbacks, continuous monitoring, with the extremes so far",
        ),
    )
}


@dataclass(frozen=True)
class Schedule:
    """Asian fixing schedules, columnar: row i's ``counts[i]`` future fixing times follow one
    another in ``times``; ``counts`` of length 1 is one schedule every row shares."""

    times: np.ndarray  # float64
    counts: np.ndarray  # int32

    def rows(self, a: int, b: int) -> "Schedule":
        if len(self.counts) == 1:
            return self
        offsets = self.offsets()
        return Schedule(self.times[offsets[a] : offsets[b]], self.counts[a:b])

    def offsets(self) -> np.ndarray:
        out = np.zeros(len(self.counts) + 1, dtype=np.int64)
        np.cumsum(self.counts, out=out[1:])
        return out

    def row(self, i: int) -> np.ndarray:
        if len(self.counts) == 1:
            return self.times
        offsets = self.offsets()
        return self.times[offsets[i] : offsets[i + 1]]


#: continuous averaging for every row
CONTINUOUS = Schedule(np.empty(0), np.zeros(1, dtype=np.int32))


#: inputs that some rows' payoffs do not read, by product: (input, rows that do not read it,
#: why). Such a row must leave the input at its default (unset): any other value would be
#: silently ignored, so it is refused. Codes are the contract's (common.proto: DigitalPayoff
#: 1 cash-or-nothing, 3 gap; LookbackStrike 1 floating); a schedule's count 0 is continuous.
UNREAD_INPUTS = {
    "digital": (
        ("cash", lambda c, s: c["payoff"] != 1,
         "only a cash-or-nothing digital pays cash (asset-or-nothing pays the asset, gap S - payoff_strike):"
         " leave it unset"),
        ("payoff_strike", lambda c, s: c["payoff"] != 3, "only a gap digital reads a payoff strike: leave it unset"),
    ),
    "lookback": (
        ("strike", lambda c, s: c["strike_type"] == 1,
         "a floating-strike lookback has no strike (it pays against the extreme): leave it unset"),
    ),
    "asian": (
        ("elapsed", lambda c, s: s.counts > 0,
         "averaging over fixings counts past_fixings, not elapsed years (elapsed is for continuous averaging):"
         " leave it unset"),
        ("past_fixings", lambda c, s: s.counts == 0,
         "continuous averaging counts elapsed years, not past fixings (past_fixings is for fixings): leave it unset"),
    ),
}


def unread_inputs(batch: "ProductBatch") -> list[tuple[str, np.ndarray, str]]:
    """(input, rows that set it but do not read it (a bool column of the batch's length or 1),
    why) for each input of ``batch`` some row sets in vain; empty when none does."""
    out = []
    for name, not_read, why in UNREAD_INPUTS.get(batch.product.name, ()):
        given = batch.columns[name] != batch.product.input(name).default
        if not given.any():  # (the usual case, a column left unset: no row is looked at)
            continue
        mask = np.asarray(not_read(batch.columns, batch.schedule or CONTINUOUS)) & given
        if mask.any():
            out.append((name, mask, why))
    return out


@dataclass(frozen=True)
class ProductBatch:
    """One product's columns for a batch (or one trade: every column of length 1)."""

    product: Product
    columns: dict  # input name -> ndarray (n or 1); also "time_to_expiry"
    schedule: Optional[Schedule] = None

    def rows(self, a: int, b: int) -> "ProductBatch":
        cols = {k: (v if len(v) == 1 else v[a:b]) for k, v in self.columns.items()}
        return dataclasses.replace(
            self, columns=cols, schedule=None if self.schedule is None else self.schedule.rows(a, b)
        )
