"""The built-in demo market snapshot: SYNTHETIC numbers, so that a fresh `pricegrid serve`
holds market data out of the box. Stored at start-up when absent (its content, hence its id,
never changes; as it ages it is flagged stale, as any snapshot would be).

    curves       USD-OIS   an OIS-like USD discount curve, zero rates 1w..30y, monotone convex
                 SPX-DIV   the index's continuous dividend yield, 1y..10y
    underlyings  SPX       an equity index, spot 6000, discounted on USD-OIS, SPX-DIV yields
                 EUA-DEC27 EU carbon allowance futures (EUR), discounted on EUR-ESTR
                 EUA-DEC28
    curves       EUR-ESTR  an ESTR-like EUR curve
    heston       SPX-HESTON a plausible equity-index parameter set
The volatility smiles (an SVI surface for SPX, a smile for the EUA futures) join it with the
surface kernels.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from pricegrid.server.domain.curves import Interpolation, ValueKind, YieldCurve
from pricegrid.server.domain.market import HestonSet, Snapshot, Underlying

NAME = "demo"
AS_OF = dt.datetime(2026, 12, 4, 17, 30, tzinfo=dt.timezone.utc)

_TENORS = np.array([7 / 365, 1 / 12, 0.25, 0.5, 1, 2, 3, 5, 7, 10, 15, 20, 30])
_USD = np.array([4.31, 4.30, 4.24, 4.12, 3.92, 3.71, 3.64, 3.66, 3.74, 3.86, 4.02, 4.09, 4.05]) / 100
_EUR = np.array([1.92, 1.91, 1.90, 1.88, 1.86, 1.93, 2.02, 2.16, 2.29, 2.43, 2.58, 2.61, 2.52]) / 100


def snapshot() -> Snapshot:
    zero = ValueKind.ZERO_RATE
    curves = (
        YieldCurve("USD-OIS", "USD", "ACT_365F", _TENORS, _USD, zero, Interpolation.MONOTONE_CONVEX_POSITIVE),
        YieldCurve("EUR-ESTR", "EUR", "ACT_365F", _TENORS, _EUR, zero, Interpolation.MONOTONE_CONVEX_POSITIVE),
        YieldCurve("SPX-DIV", "USD", "ACT_365F", np.array([1.0, 2, 5, 10]), np.array([1.30, 1.34, 1.40, 1.45]) / 100,
                   zero, Interpolation.LINEAR_ZERO),
    )
    underlyings = (
        Underlying("SPX", "USD", spot=6000.0, discount_curve="USD-OIS", dividend_curve="SPX-DIV"),
        Underlying("EUA-DEC27", "EUR", futures_price=78.40, discount_curve="EUR-ESTR"),
        Underlying("EUA-DEC28", "EUR", futures_price=81.15, discount_curve="EUR-ESTR"),
    )
    heston = (HestonSet("SPX-HESTON", "SPX", 0.0225, 2.1, 0.032, 0.55, -0.72),)
    return Snapshot(NAME, AS_OF, AS_OF.date(), curves, underlyings, heston,
                    "SYNTHETIC demo data (not a market observation): USD/EUR OIS-like curves, an equity index,"
                    " EUA futures")
