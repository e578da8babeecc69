"""Models, engines, measures and methods: the contract's vocabulary in the domain.

Every result names the :class:`ModelRef` that produced it, so that a price can be reproduced
and audited. A version changes whenever an engine's numerics change. Which engine prices
which product under which model is the catalogue's (pricegrid.server.domain.catalogue).
"""

from __future__ import annotations

import enum
from typing import NamedTuple


class Model(enum.IntEnum):
    """The same numbers as ``pricegrid.v1.Model``."""

    BLACK_SCHOLES_MERTON = 1
    BLACK_76 = 2
    BACHELIER = 3
    HESTON = 4


class Engine(enum.IntEnum):
    """The same numbers as ``pricegrid.v1.Engine``."""

    UNSPECIFIED = 0
    ANALYTIC = 1
    FIXED_POINT = 2
    BINOMIAL_TREE = 3
    MONTE_CARLO = 4
    TURNBULL_WAKEMAN = 5
    LEVY = 6


class GreekMethod(enum.IntEnum):
    """The same numbers as ``pricegrid.v1.GreekMethod``; the kernels name them by string."""

    UNSPECIFIED = 0
    ANALYTIC = 1
    FINITE_DIFFERENCE = 2
    TREE_GRID = 3
    MONTE_CARLO_CRN = 4
    PATHWISE = 5
    LIKELIHOOD_RATIO = 6
    NUMERICAL = 7
    MONTE_CARLO = 8

    @classmethod
    def of(cls, name: str) -> "GreekMethod":
        return cls[name.upper()]


class Measure(enum.IntEnum):
    """The same numbers as ``pricegrid.v1.Measure``; units are in proto/pricegrid/v1/common.proto."""

    PRICE = 1
    DELTA = 2
    GAMMA = 3
    VEGA = 4
    THETA = 5
    RHO = 6
    DIVIDEND_RHO = 7
    VANNA = 8
    VOLGA = 9
    CHARM = 10
    CLEAN_PRICE = 11
    DIRTY_PRICE = 12
    ACCRUED_INTEREST = 13
    YIELD = 14
    MACAULAY_DURATION = 15
    MODIFIED_DURATION = 16
    CONVEXITY = 17
    DV01 = 18
    PV = 19
    PAR_RATE = 20
    PV01 = 21
    PNL = 22


#: the measures of an option: its price and the Greeks (PriceResponse.greeks has these)
OPTION_MEASURES = tuple(Measure(m) for m in range(Measure.PRICE, Measure.CHARM + 1))
GREEKS = OPTION_MEASURES[1:]


class ModelRef(NamedTuple):
    model: str
    engine: str
    version: str


#: the market input each model prices on: a spot, or a forward (a futures price)
UNDERLYING: dict[Model, str] = {
    Model.BLACK_SCHOLES_MERTON: "spot",
    Model.BLACK_76: "forward",
    Model.BACHELIER: "forward",
    Model.HESTON: "spot",
}


def takes_dividend(model: Model) -> bool:
    """Whether the model reads a dividend yield (on a forward, the forward carries it)."""
    return UNDERLYING[model] == "spot"


#: implied volatility engines, by model (Jaeckel's methods; see ext/implied_vol.pyx)
IMPLIED_VOL_REFS: dict[Model, ModelRef] = {
    Model.BLACK_SCHOLES_MERTON: ModelRef("black_scholes_merton", "implied_vol_lets_be_rational", "1.0.0"),
    Model.BLACK_76: ModelRef("black_76", "implied_vol_lets_be_rational", "1.0.0"),
    Model.BACHELIER: ModelRef("bachelier", "implied_vol_normal_jaeckel", "1.0.0"),
}
