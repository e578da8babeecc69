"""Closed-form Black-Scholes-Merton, written out here as an independent check of what the
clients return (Hull, Options, Futures and Other Derivatives, 10th ed., section 17.4)."""

import math


def norm_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def bsm(option_type: str, spot: float, strike: float, t: float, rate: float, dividend: float, vol: float) -> dict:
    """Price, delta and vega of a European option on a dividend-paying spot."""
    sq = vol * math.sqrt(t)
    d1 = (math.log(spot / strike) + (rate - dividend + 0.5 * vol * vol) * t) / sq
    d2 = d1 - sq
    dq, dr = math.exp(-dividend * t), math.exp(-rate * t)
    pdf = math.exp(-0.5 * d1 * d1) / math.sqrt(2 * math.pi)
    if option_type == "call":
        price = spot * dq * norm_cdf(d1) - strike * dr * norm_cdf(d2)
        delta = dq * norm_cdf(d1)
    else:
        price = strike * dr * norm_cdf(-d2) - spot * dq * norm_cdf(-d1)
        delta = -dq * norm_cdf(-d1)
    return {"price": price, "delta": delta, "vega": spot * dq * pdf * math.sqrt(t)}
