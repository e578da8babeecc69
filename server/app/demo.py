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
    surfaces     SPX-SVI   raw SVI slices 1m..3y from an SSVI parameterisation with a power-law
                           phi (Gatheral & Jacquier 2014, sec. 4: eta (1 + |rho|) <= 2, so no
                           butterfly arbitrage; theta increasing, so no calendar arbitrage)
                 EUA-SABR  SABR slices (beta 1) for the EUA DEC27 futures options
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from pricegrid.server.domain.curves import Interpolation, ValueKind, YieldCurve
from pricegrid.server.domain.market import HestonSet, Snapshot, Underlying
from pricegrid.server.domain.surfaces import SabrSurface, SviSurface

NAME = "demo"
AS_OF = dt.datetime(2026, 12, 4, 17, 30, tzinfo=dt.timezone.utc)

_TENORS = np.array([7 / 365, 1 / 12, 0.25, 0.5, 1, 2, 3, 5, 7, 10, 15, 20, 30])
_USD = np.array([4.31, 4.30, 4.24, 4.12, 3.92, 3.71, 3.64, 3.66, 3.74, 3.86, 4.02, 4.09, 4.05]) / 100
_EUR = np.array([1.92, 1.91, 1.90, 1.88, 1.86, 1.93, 2.02, 2.16, 2.29, 2.43, 2.58, 2.61, 2.52]) / 100


_SVI_EXPIRIES = np.array([1 / 12, 0.25, 0.5, 1.0, 2.0, 3.0])


def _spx_svi() -> SviSurface:
    """Raw SVI slices of an SSVI surface: theta(T) = sigma_atm(T)^2 T, phi = eta / (theta^g
    (1 + theta)^(1 - g)), a = theta (1 - rho^2) / 2, b = theta phi / 2, m = -rho / phi,
    sigma = sqrt(1 - rho^2) / phi (Gatheral & Jacquier 2014, sec. 4)."""
    rho, eta, g = -0.7, 1.0, 0.5
    t = _SVI_EXPIRIES
    theta = (0.15 + 0.015 * np.sqrt(t)) ** 2 * t
    phi = eta / (theta ** g * (1 + theta) ** (1 - g))
    params = np.column_stack([theta * (1 - rho * rho) / 2, theta * phi / 2, np.full_like(t, rho), -rho / phi,
                              np.sqrt(1 - rho * rho) / phi])
    return SviSurface("SPX-SVI", "SPX", t, np.round(params, 12))


def snapshot() -> Snapshot:
    zero = ValueKind.ZERO_RATE
    curves = (
        YieldCurve("USD-OIS", "USD", "ACT_365F", _TENORS, _USD, zero, Interpolation.MONOTONE_CONVEX_POSITIVE),
        YieldCurve("EUR-ESTR", "EUR", "ACT_365F", _TENORS, _EUR, zero, Interpolation.MONOTONE_CONVEX_POSITIVE),
        YieldCurve("SPX-DIV", "USD", "ACT_365F", np.array([1.0, 2, 5, 10]), np.array([1.30, 1.34, 1.40, 1.45]) / 100,
                   zero, Interpolation.LINEAR_ZERO),
    )
    underlyings = (
        Underlying("SPX", "USD", spot=6000.0, discount_curve="USD-OIS", dividend_curve="SPX-DIV",
                   vol_surface="SPX-SVI"),
        Underlying("EUA-DEC27", "EUR", futures_price=78.40, discount_curve="EUR-ESTR", vol_surface="EUA-SABR"),
        Underlying("EUA-DEC28", "EUR", futures_price=81.15, discount_curve="EUR-ESTR"),
    )
    heston = (HestonSet("SPX-HESTON", "SPX", 0.0225, 2.1, 0.032, 0.55, -0.72),)
    surfaces = (
        _spx_svi(),
        SabrSurface("EUA-SABR", "EUA-DEC27", np.array([0.25, 0.5, 1.0]),
                    np.array([[0.52, 1.0, 0.15, 0.9], [0.50, 1.0, 0.12, 0.8], [0.48, 1.0, 0.10, 0.7]])),
    )
    return Snapshot(NAME, AS_OF, AS_OF.date(), curves, underlyings, heston,
                    "SYNTHETIC demo data (not a market observation): USD/EUR OIS-like curves, an equity index with"
                    " an SVI surface, EUA futures with a SABR smile", surfaces)
