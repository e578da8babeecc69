"""pricegrid.ext.barrier: single and double barriers, digitals, one-touch/no-touch under BSM.

References and tolerances (eps = 2.2e-16; "scale" of a row: S + K + R for barriers, S + K
for double barriers, the cash for touches, S + Q + |K2| for digitals):

* QuantLib (the ``QuantLib`` wheel, flat curves, Actual365Fixed, T = days/365 exactly), on
  random cases across the domain (T 1 day to 10 years, vol 5% to 100%, rates -3%..12%,
  yields -5%..10%, strikes within 3.5 standard deviations, barriers 0.1% to 65% from spot):
  - single barriers, ``AnalyticBarrierEngine``, 4000 rows, every type, calls and puts,
    rebates: |ours - QL| <= 1e-12 |QL| + 1e-14 scale. QuantLib itself misses that on a few
    rows in a thousand (its pow(H/S, mu -/+ lambda) of the hit-paid rebate and its
    1 - N(x) lose digits when |mu| is large, e.g. vol 6% and carry -10%: 1e-10 of the
    scale); those rows are priced again by a 40-digit mpmath evaluation of the same closed
    form (at most 0.5% of the rows may need it; 1 of 4000 does), which ours must match to
    1e-14 scale (it does to 3e-17, where QuantLib is off by 1.5e-12).
  - double barriers, ``AnalyticDoubleBarrierEngine``: with its default 5-term series,
    2000 rows with L < K < U where that series has converged and QuantLib's powers do not
    lose digits (vol^2 T/W^2 < 1/4, |mu1| W <= 5, W = ln(U/L), mu1 = 2b/vol^2 + 1):
    1e-12 relative + 1e-13 scale; with 50 terms (``AnalyticDoubleBarrierEngine(p, 50)``)
    on 300 rows with 1/4 <= vol^2 T/W^2 < 10: 1e-11 scale (there QuantLib's image terms
    are O(1) and cancel down to the price, so it has an absolute error only). The 5-term
    series is wrong there (up to 1e-4 of the scale: the test shows it). Rows beyond these
    tolerances are judged by mpmath as above (4 of 2000 and 1 of 300; ours within 5e-17
    of the scale there).
  - European digitals, ``AnalyticEuropeanEngine`` with ``CashOrNothingPayoff``,
    ``AssetOrNothingPayoff``, ``GapPayoff``: price, delta, gamma, vega, theta, rho,
    dividend rho, 1000 rows each: 1e-12 relative + 1e-14 of the measure's natural size
    (e.g. scale / (S vol sqrt T) for delta; QuantLib's N(x) = (1 + erf)/2 has an absolute
    error of about eps).
  - one-touch paid at the hit, ``AnalyticDigitalAmericanEngine`` (price, delta, gamma, rho);
    one-touch paid at expiry, the same engine with payoff at expiry (price); no-touch,
    ``AnalyticDigitalAmericanKOEngine`` and ``AnalyticBinaryBarrierEngine`` (a down-out
    cash call with strike below the barrier is a no-touch): 1000 rows each,
    1e-12 relative + 1e-14 of the size (no-touch: 1 row judged by mpmath, as above).
* 40-digit mpmath evaluations of the closed forms (Reiner-Rubinstein, the image series
  with extra terms, the eigenfunction series with every term above 1e-35), which are
  exact to far below double precision: single barriers on 120 rows (discrete monitoring,
  vol down to 1% with carry 20%): 1e-13 relative + 1e-14 scale; double barriers on 60 rows
  across the whole domain (strikes outside (L, U), log-widths 2% to 300%, vol^2 T/W^2 from
  1e-3 to 1e3, so both series and the switch between them, prices down to 1e-300):
  1e-15 scale + 2e-11 relative (the relative part for prices of 1e-100 and below, where a
  few digits go to the cancellation the note of pg_double_barrier.h bounds).
* Greeks. Digitals: analytic; vs QuantLib (above) and vs mpmath's differentiation of the
  40-digit closed form (vanna, volga, charm, and all others) to 1e-13 of the natural size.
  Barriers, double barriers, touches: finite differences in the kernel; vs mpmath's
  high-precision derivatives of the closed forms (mp.diff at 30 digits) on random rows:
  first derivatives to 2e-8 of their natural size, second and mixed ones to 2e-6
  (measured worst cases: 4e-9 and 2.5e-7). Natural sizes: scale/(S u) for delta,
  scale/(S u)^2 gamma, scale/vol vega, scale/T theta, scale T rho, scale/(S u vol) vanna,
  scale/vol^2 volga, scale/(S u T) charm, with u the log-spot scale on which the price
  varies and the kernel takes its steps (vol sqrt T, or less where the price varies
  faster: 1/(1 + |mu| + lambda), ln(U/L)); digitals: u = vol sqrt T;
  vs QuantLib's analytic delta, gamma and rho of the one-touch; and by parity (in + out =
  vanilla from pricegrid.ext.black, knock-in + knock-out = European, one-touch + no-touch =
  cash DF) on 500 rows with the same tolerances.
* Published values: Haug, "The Complete Guide to Option Pricing Formulas", 2nd ed. 2007:
  Table 4-13, p. 154 (single barriers with rebate), to the 4 decimals printed (1e-4: six
  printed values are off by one unit in the last decimal, e.g. up-and-out call K = 90,
  vol 30%: 2.6341 printed, formula 2.63404, QuantLib agrees with us); the double-barrier
  knock-out table (S = X = 100, r = b = 10%, flat boundaries) as transcribed in QuantLib's
  test-suite (doublebarrieroption.cpp, which cites "p. 156 and following"), 1e-4; the
  binary-barrier table, cases 1, 2, 5, 6, 9, 10 (one-touch at hit / at expiry, no-touch,
  K = 15, H = 100, S = 105 or 95, T = 0.5, r = b = 10%, vol 20%) as transcribed in
  QuantLib's digitaloption.cpp (1st ed. p. 95) and binaryoption.cpp (2nd ed. p. 180), 1e-4;
  digital examples of secs. 4.19.1-4.19.3 (cash-or-nothing put 2.6710, asset-or-nothing
  put 20.2069, gap call -0.0053). The pages are QuantLib's citations; the printed book was
  not at hand to check them.
* Discrete monitoring (Broadie-Glasserman-Kou correction) vs a Monte Carlo of the discretely
  monitored payoff (exact log-normal steps at the monitoring dates, 200,000 antithetic
  paths; knock-outs and one-touch / no-touch, weekly and daily monitoring, barriers 5% to
  20% away): |BGK - MC| <= tol = 4 standard errors + 1% of the price (the correction's own
  error: measured 0.03%-0.3% on these cases with 400,000 paths, 0.8% on the up-and-out
  call struck at 90 under a barrier at 120, the known weak spot of the correction), while
  the continuous formula must miss the Monte Carlo by at least 3 tol.
* Identities: in(R) + out(R) = vanilla + rebate terms (first-passage law), double knock-in
  + knock-out = European, one-touch + no-touch = Q DF, digital call + put, gap =
  asset - K2 cash; T = 0 values and Greeks.
* Kernel contract: each bad input sets exactly its bit with NaN in every output and its
  neighbours priced; unknown codes set PG_BAD_VARIANT and never raise; broadcast = tiled;
  1 and 2 threads bitwise identical; measure subsets and orders; out rows apart; a row
  priced alone = the same row in a batch, bit for bit; argument errors; q = r (Black-76).
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest
import QuantLib as ql

from pricegrid.ext import barrier as bar
from pricegrid.ext import black
from pricegrid.ext import status as pgs

CALL, PUT = pgs.CALL, pgs.PUT
NAN, INF = float("nan"), float("inf")
NAMES = ("price", "delta", "gamma", "vega", "theta", "rho", "dividend_rho", "vanna", "volga", "charm")
ALL = np.arange(1, 11, dtype=np.int32)
FIRST = (2, 4, 5, 6, 7)        # first derivatives
SECOND = (3, 8, 9, 10)         # second and mixed ones
TOL_FIRST, TOL_SECOND = 2e-8, 2e-6

#: each entry point's int32 columns and float64 columns, in argument order
COLUMNS = {
    "barrier": (("barrier_type", "option_type"),
                ("strike", "time", "barrier", "rebate", "monitoring_interval", "spot", "rate",
                 "dividend_yield", "volatility")),
    "double": (("knock", "option_type"),
               ("strike", "time", "lower_barrier", "upper_barrier", "spot", "rate", "dividend_yield",
                "volatility")),
    "digital": (("payoff", "option_type"),
                ("strike", "time", "cash", "payoff_strike", "spot", "rate", "dividend_yield", "volatility")),
    "touch": (("touch_type", "direction", "payment"),
              ("cash", "barrier", "time", "monitoring_interval", "spot", "rate", "dividend_yield",
               "volatility")),
}
ENTRY = {"barrier": bar.barrier_price_batch, "double": bar.double_barrier_price_batch,
         "digital": bar.digital_price_batch, "touch": bar.touch_price_batch}
FAMILIES = tuple(COLUMNS)


# --------------------------------------------------------------------------- running the kernels
def names(family):
    ints, floats = COLUMNS[family]
    return ints + floats


def run(family, cases, measures=ALL, threads=1, out=None, **kw):
    """The family's batch entry point on a dict of columns (``kw``: its keyword arguments,
    e.g. beyond_touched); returns (out, status, nbad)."""
    ints, floats = COLUMNS[family]
    args = ([np.ascontiguousarray(cases[c], dtype=np.int32).reshape(-1) for c in ints]
            + [np.ascontiguousarray(cases[c], dtype=np.float64).reshape(-1) for c in floats])
    n = max(a.shape[0] for a in args)
    meas = np.asarray(measures, dtype=np.int32)
    if out is None:
        out = np.full((meas.shape[0], n), -7.0)
    status = np.full(n, -7, dtype=np.int32)
    nbad = ENTRY[family](*args, meas, out, status, threads, **kw)
    return out, status, nbad


def priced(family, cases, measures=ALL, **kw):
    """out of a batch that must price every row."""
    out, status, nbad = run(family, cases, measures, **kw)
    bad = np.flatnonzero(status)
    assert nbad == 0 and bad.size == 0, (family, bad[:5], status[bad[:5]])
    return out


def row(cases, i):
    return {k: np.asarray(v).reshape(-1)[i if np.asarray(v).size > 1 else 0] for k, v in cases.items()}


def assert_close(name, ours, ref, rtol, atol):
    """|ours - ref| <= rtol |ref| + atol elementwise, reporting the worst row."""
    ours, ref = np.asarray(ours, float), np.asarray(ref, float)
    atol = np.broadcast_to(np.asarray(atol, float), ref.shape)
    err = np.abs(ours - ref)
    tol = rtol * np.abs(ref) + atol
    bad = ~(err <= tol)
    if bad.any():
        i = int(np.argmax(np.where(bad, err / np.where(tol > 0, tol, 1e-300), 0)))
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {ref.size} rows out of tolerance; worst row {i}: ours {ours.flat[i]!r}, "
            f"reference {ref.flat[i]!r}, |diff| {err.flat[i]:.3e} > tol {tol.flat[i]:.3e}")


def natural_sizes(scale, spot, time, vol, u=None):
    """The size of each measure (price, delta, ..., charm) of a value of size `scale` that
    varies on a log-spot scale u (by default vol sqrt(T)), on vol and on T."""
    u = vol * np.sqrt(time) if u is None else u
    ds = spot * u
    return [scale, scale / ds, scale / ds**2, scale / vol, scale / time, scale * time, scale * time,
            scale / (ds * vol), scale / vol**2, scale / (ds * time)]


def log_spot_scale(family, c):
    """The log-spot scale on which a row's price varies, as the kernel takes it for its
    finite-difference steps (pg_barrier.h and pg_double_barrier.h, note 4)."""
    v, t, r, q = (np.asarray(c[k], float) for k in ("volatility", "time", "rate", "dividend_yield"))
    sd = v * np.sqrt(t)
    if family in ("barrier", "touch"):
        mu = (r - q - 0.5 * v * v) / (v * v)
        lam = np.sqrt(np.maximum(mu * mu + 2 * r / (v * v), 0.0))
        return np.minimum(sd, 1.0 / (1.0 + np.abs(mu) + lam))
    if family == "double":
        u = np.minimum(sd, 1.0 / (1.0 + np.abs(2 * (r - q) / (v * v) + 1.0)))
        w = np.log(np.asarray(c["upper_barrier"], float) / np.asarray(c["lower_barrier"], float))
        return np.where(np.asarray(c["knock"]) == bar.KNOCK_OUT, np.minimum(u, w), u)
    return sd


def value_scale(family, c):
    g = lambda k: np.abs(np.asarray(c[k], float))  # noqa: E731
    return {"barrier": lambda: g("spot") + g("strike") + g("rebate"), "double": lambda: g("spot") + g("strike"),
            "digital": lambda: g("spot") + g("cash") + g("payoff_strike"), "touch": lambda: g("cash")}[family]()


def sizes_of(family, c):
    return natural_sizes(value_scale(family, c), np.asarray(c["spot"], float), np.asarray(c["time"], float),
                         np.asarray(c["volatility"], float), log_spot_scale(family, c))


def assert_same_row(name, a, b):
    """The same row priced in different places of a batch: identical, bit for bit (the
    kernels pad blocks to whole vectors, so every row runs through the same vector code)."""
    assert np.array_equal(a, b, equal_nan=True), (name, a, b)


# --------------------------------------------------------------------------- random cases
def market(rng, n, days_max=3650):
    days = rng.integers(1, days_max + 1, n)
    return {"days": days, "time": days / 365.0, "volatility": rng.uniform(0.05, 1.0, n),
            "rate": rng.uniform(-0.03, 0.12, n), "dividend_yield": rng.uniform(-0.05, 0.10, n),
            "spot": rng.uniform(50.0, 150.0, n)}


def strikes(rng, c):
    sd = c["volatility"] * np.sqrt(c["time"])
    return c["spot"] * np.exp(rng.uniform(-3.5, 3.5, c["spot"].shape[0]) * np.minimum(sd, 1.0))


def has_lambda(c):
    """lambda = sqrt(mu^2 + 2r/vol^2) is real (the hit-paid rebate needs it)."""
    v2 = c["volatility"] ** 2
    mu = (c["rate"] - c["dividend_yield"] - 0.5 * v2) / v2
    return mu**2 + 2 * c["rate"] / v2 >= 0


def barrier_cases(rng, n, btype=None):
    c = market(rng, n)
    c["strike"] = strikes(rng, c)
    c["barrier_type"] = (rng.integers(1, 5, n) if btype is None else np.full(n, btype)).astype(np.int32)
    c["option_type"] = rng.choice(np.array([CALL, PUT], dtype=np.int32), n)
    dist = np.exp(rng.uniform(math.log(1e-3), math.log(0.5), n))
    down = c["barrier_type"] <= bar.DOWN_OUT
    c["barrier"] = np.where(down, c["spot"] * np.exp(-dist), c["spot"] * np.exp(dist))
    rebate = np.where(rng.random(n) < 0.3, 0.0, rng.uniform(0.0, 10.0, n))
    c["rebate"] = np.where(has_lambda(c) | np.isin(c["barrier_type"], (bar.DOWN_IN, bar.UP_IN)), rebate, 0.0)
    c["monitoring_interval"] = np.zeros(n)
    return c


def double_cases(rng, n, width_max=1.0):
    c = market(rng, n)
    c["lower_barrier"] = c["spot"] * np.exp(-np.exp(rng.uniform(math.log(0.01), math.log(width_max), n)))
    c["upper_barrier"] = c["spot"] * np.exp(np.exp(rng.uniform(math.log(0.01), math.log(width_max), n)))
    c["strike"] = np.exp(rng.uniform(np.log(c["lower_barrier"]) - 0.3, np.log(c["upper_barrier"]) + 0.3))
    c["knock"] = rng.integers(1, 3, n).astype(np.int32)
    c["option_type"] = rng.choice(np.array([CALL, PUT], dtype=np.int32), n)
    return c


def digital_cases(rng, n, payoff=None):
    c = market(rng, n)
    c["strike"] = strikes(rng, c)
    c["payoff"] = (rng.integers(1, 4, n) if payoff is None else np.full(n, payoff)).astype(np.int32)
    c["option_type"] = rng.choice(np.array([CALL, PUT], dtype=np.int32), n)
    c["cash"] = rng.uniform(0.0, 10.0, n)
    c["payoff_strike"] = c["strike"] * rng.uniform(0.8, 1.2, n)
    return c


def touch_cases(rng, n, touch=None, payment=None):
    c = market(rng, n)
    c["touch_type"] = (rng.integers(1, 3, n) if touch is None else np.full(n, touch)).astype(np.int32)
    c["direction"] = rng.integers(1, 3, n).astype(np.int32)
    pay = rng.integers(1, 3, n) if payment is None else np.full(n, payment)
    c["payment"] = np.where(c["touch_type"] == bar.NO_TOUCH, bar.AT_EXPIRY, pay).astype(np.int32)
    dist = np.exp(rng.uniform(math.log(1e-3), math.log(0.5), n))
    c["barrier"] = np.where(c["direction"] == bar.DOWN, c["spot"] * np.exp(-dist), c["spot"] * np.exp(dist))
    c["cash"] = rng.uniform(0.5, 10.0, n)
    c["monitoring_interval"] = np.zeros(n)
    hit_paid = (c["touch_type"] == bar.ONE_TOUCH) & (c["payment"] == bar.AT_HIT)
    c["rate"] = np.where(hit_paid & ~has_lambda(c), np.abs(c["rate"]), c["rate"])
    return c


def vanilla(c, measures=ALL):
    """European prices and Greeks of the rows' (option_type, strike) from pricegrid.ext.black."""
    n = np.asarray(c["spot"]).size
    out = np.empty((len(measures), n))
    st = np.empty(n, dtype=np.int32)
    none = np.empty(0)
    f = lambda k: np.ascontiguousarray(np.broadcast_to(c[k], (n,)), dtype=float)  # noqa: E731
    black.price_batch(pgs.MODEL_BSM, np.ascontiguousarray(np.broadcast_to(c["option_type"], (n,)), np.int32),
                      f("strike"), f("time"), f("spot"), f("rate"), f("dividend_yield"), f("volatility"),
                      np.asarray(measures, np.int32), out, none, none, st, 1)
    assert not st.any()
    return out


# --------------------------------------------------------------------------- mpmath references
mp.mp.dps = 40
BGK_BETA = -mp.zeta(0.5) / mp.sqrt(2 * mp.pi)


def _N(x):
    return mp.ncdf(x)


def mp_barrier(bt, ot, K, T, H, R, dt, S, r, q, v):
    """Reiner-Rubinstein (Haug 4.17.1) at mpmath precision, as QuantLib's engine composes it."""
    K, T, H, R, dt, S, r, q, v = (mp.mpf(x) for x in (K, T, H, R, dt, S, r, q, v))
    down, kin = bt <= 2, bt in (1, 3)
    phi, eta = (-1 if ot == PUT else 1), (1 if down else -1)
    H = H * mp.exp((-1 if down else 1) * BGK_BETA * v * mp.sqrt(dt))
    sd, mu = v * mp.sqrt(T), (r - q - v**2 / 2) / v**2
    DF, Sq = mp.exp(-r * T), S * mp.exp(-q * T)
    x1 = mp.log(S / K) / sd + (1 + mu) * sd
    x2 = mp.log(S / H) / sd + (1 + mu) * sd
    y1 = mp.log(H**2 / (S * K)) / sd + (1 + mu) * sd
    y2 = mp.log(H / S) / sd + (1 + mu) * sd
    A = phi * (Sq * _N(phi * x1) - K * DF * _N(phi * (x1 - sd)))
    B = phi * (Sq * _N(phi * x2) - K * DF * _N(phi * (x2 - sd)))
    C = phi * (Sq * (H / S) ** (2 * mu + 2) * _N(eta * y1) - K * DF * (H / S) ** (2 * mu) * _N(eta * (y1 - sd)))
    D = phi * (Sq * (H / S) ** (2 * mu + 2) * _N(eta * y2) - K * DF * (H / S) ** (2 * mu) * _N(eta * (y2 - sd)))
    table = {(1, 1, 0): C, (1, 1, 1): A - B + D, (1, 2, 0): B - C + D, (1, 2, 1): A,
             (2, 1, 0): A - C, (2, 1, 1): B - D, (2, 2, 0): A - B + C - D, (2, 2, 1): 0,
             (3, 1, 0): A, (3, 1, 1): B - C + D, (3, 2, 0): A - B + D, (3, 2, 1): C,
             (4, 1, 0): 0, (4, 1, 1): A - B + C - D, (4, 2, 0): B - D, (4, 2, 1): A - C}
    value = table[(bt, ot, int(K < H))]
    if R == 0:
        return value
    if kin:
        return value + R * DF * (_N(eta * (x2 - sd)) - (H / S) ** (2 * mu) * _N(eta * (y2 - sd)))
    lam = mp.sqrt(mu**2 + 2 * r / v**2)
    z = mp.log(H / S) / sd + lam * sd
    return value + R * ((H / S) ** (mu + lam) * _N(eta * z) + (H / S) ** (mu - lam) * _N(eta * (z - 2 * lam * sd)))


def mp_touch(tt, d, p, Q, H, T, dt, S, r, q, v):
    """Haug 4.19.5 cases 1, 2 (at hit), 5, 6 (at expiry), 9, 10 (no-touch)."""
    Q, H, T, dt, S, r, q, v = (mp.mpf(x) for x in (Q, H, T, dt, S, r, q, v))
    down = d == bar.DOWN
    eta = 1 if down else -1
    H = H * mp.exp((-1 if down else 1) * BGK_BETA * v * mp.sqrt(dt))
    sd, mu, DF = v * mp.sqrt(T), (r - q - v**2 / 2) / v**2, mp.exp(-r * T)
    x2 = mp.log(S / H) / sd + (1 + mu) * sd
    y2 = mp.log(H / S) / sd + (1 + mu) * sd
    if tt == bar.NO_TOUCH:
        return Q * DF * (_N(eta * (x2 - sd)) - (H / S) ** (2 * mu) * _N(eta * (y2 - sd)))
    if p == bar.AT_EXPIRY:
        return Q * DF * (_N(-eta * (x2 - sd)) + (H / S) ** (2 * mu) * _N(eta * (y2 - sd)))
    lam = mp.sqrt(mu**2 + 2 * r / v**2)
    z = mp.log(H / S) / sd + lam * sd
    return Q * ((H / S) ** (mu + lam) * _N(eta * z) + (H / S) ** (mu - lam) * _N(eta * (z - 2 * lam * sd)))


def mp_digital(pay, ot, K, T, Q, K2, S, r, q, v):
    K, T, Q, K2, S, r, q, v = (mp.mpf(x) for x in (K, T, Q, K2, S, r, q, v))
    phi = -1 if ot == PUT else 1
    sd = v * mp.sqrt(T)
    d1 = (mp.log(S / K) + (r - q + v**2 / 2) * T) / sd
    asset, cash = S * mp.exp(-q * T) * _N(phi * d1), mp.exp(-r * T) * _N(phi * (d1 - sd))
    return {1: Q * cash, 2: asset, 3: phi * (asset - K2 * cash)}[pay]


def mp_european(ot, K, T, S, r, q, v):
    K, T, S, r, q, v = (mp.mpf(x) for x in (K, T, S, r, q, v))
    phi, sd = (-1 if ot == PUT else 1), v * mp.sqrt(T)
    d1 = (mp.log(S / K) + (r - q + v**2 / 2) * T) / sd
    return phi * (S * mp.exp(-q * T) * _N(phi * d1) - K * mp.exp(-r * T) * _N(phi * (d1 - sd)))


def _corridor(ot, K, L, U):
    a, c, k = mp.log(L), mp.log(U), mp.log(K)
    return (a, min(k, c)) if ot == PUT else (max(k, a), c)


def mp_double_ko_images(ot, K, T, L, U, S, r, q, v, extra=6):
    """Ikeda-Kunitomo with flat boundaries (Haug 4.17.3), |n| <= the kernel's N + extra."""
    K, T, L, U, S, r, q, v = (mp.mpf(x) for x in (K, T, L, U, S, r, q, v))
    phi, b, sd = (-1 if ot == PUT else 1), r - q, v * mp.sqrt(T)
    x, a, W = mp.log(S), mp.log(L), mp.log(U / L)
    lo, hi = _corridor(ot, K, L, U)
    if lo >= hi:
        return mp.mpf(0)
    nmax = int(mp.ceil(mp.sqrt(1 + 90 * v**2 * T / W**2) / 2)) + extra
    bsig, mu1 = (b + v**2 / 2) * T / sd, 2 * b / v**2 + 1
    p1 = p0 = mp.mpf(0)
    for n in range(-nmax, nmax + 1):
        d = lambda y: (x + 2 * n * W - y) / sd + bsig  # noqa: E731
        e = lambda y: (2 * a - x - 2 * n * W - y) / sd + bsig  # noqa: E731
        l1, l3 = n * W, a - x - n * W
        p1 += mp.exp(l1 * mu1) * (_N(d(lo)) - _N(d(hi))) - mp.exp(l3 * mu1) * (_N(e(lo)) - _N(e(hi)))
        p0 += (mp.exp(l1 * (mu1 - 2)) * (_N(d(lo) - sd) - _N(d(hi) - sd))
               - mp.exp(l3 * (mu1 - 2)) * (_N(e(lo) - sd) - _N(e(hi) - sd)))
    return phi * (S * mp.exp(-q * T) * p1 - K * mp.exp(-r * T) * p0)


def mp_double_ko_modes(ot, K, T, L, U, S, r, q, v):
    """The eigenfunction expansion of the killed walk, integrated against the payoff."""
    K, T, L, U, S, r, q, v = (mp.mpf(x) for x in (K, T, L, U, S, r, q, v))
    phi, nu = (-1 if ot == PUT else 1), r - q - v**2 / 2
    x, a, W = mp.log(S), mp.log(L), mp.log(U / L)
    lo, hi = _corridor(ot, K, L, U)
    if lo >= hi:
        return mp.mpf(0)
    alpha, total = nu / v**2, mp.mpf(0)
    for k in range(1, 400):
        om = k * mp.pi / W

        def integral(g):
            G = lambda y: mp.exp(g * (y - x)) * (g * mp.sin(om * (y - a)) - om * mp.cos(om * (y - a))) / (g**2 + om**2)  # noqa: E731
            return G(hi) - G(lo)

        term = mp.exp(-v**2 * om**2 * T / 2) * mp.sin(om * (x - a)) * (S * integral(alpha + 1) - K * integral(alpha))
        total += term
        if k > 5 and abs(term) < mp.mpf(10) ** -35 * abs(total):
            break
    return phi * mp.exp(-(r + nu**2 / (2 * v**2)) * T) * 2 / W * total


def mp_double(kn, ot, K, T, L, U, S, r, q, v):
    """Knock-out from the faster series at mpmath precision (modes where vol^2 T/W^2 >= 1/4)."""
    c = v**2 * T / math.log(U / L) ** 2
    ko = (mp_double_ko_modes if c >= 0.25 else mp_double_ko_images)(ot, K, T, L, U, S, r, q, v)
    return mp_european(ot, K, T, S, r, q, v) - ko if kn == bar.KNOCK_IN else ko


def mp_greeks(f, S, T, r, q, v, dps=30):
    """The ten measures of f(S, T, r, q, vol), by mpmath's high-precision differentiation."""
    with mp.workdps(dps):
        P = tuple(mp.mpf(x) for x in (S, T, r, q, v))
        D = lambda orders: mp.diff(f, P, orders)  # noqa: E731
        return [float(x) for x in (f(*P), D((1, 0, 0, 0, 0)), D((2, 0, 0, 0, 0)), D((0, 0, 0, 0, 1)),
                                   -D((0, 1, 0, 0, 0)), D((0, 0, 1, 0, 0)), D((0, 0, 0, 1, 0)),
                                   D((1, 0, 0, 0, 1)), D((0, 0, 0, 0, 2)), -D((1, 1, 0, 0, 0)))]


def adjudicate(name, ours, ref, scale, within, exact_of, rtol=0.0, atol=1e-14, share=0.005):
    """Rows where ours and QuantLib differ by more than `within` (a boolean array) are
    priced again by mpmath (exact_of(i)); at most `share` of the rows may need it, and
    ours must match mpmath there to rtol + atol scale."""
    off = np.flatnonzero(~within)
    assert off.size <= share * ours.size, (name, off.size)
    exact = [float(exact_of(i)) for i in off]
    assert_close(name + ", rows where QuantLib loses digits, vs mpmath", ours[off], exact, rtol, atol * scale[off])


def check_greeks(name, ours, ref, sizes, first=TOL_FIRST, second=TOL_SECOND, price=1e-14):
    """ours, ref: (10,) measures of one row; tolerances in units of the natural sizes."""
    for j in range(10):
        tol = price if j == 0 else (first if j + 1 in FIRST else second)
        assert abs(ours[j] - ref[j]) <= tol * sizes[j], (name, NAMES[j], ours[j], ref[j], sizes[j])


# --------------------------------------------------------------------------- QuantLib
@pytest.fixture
def ql_today():
    """A QuantLib evaluation date for this test only (QuantLib keeps it globally)."""
    settings = ql.Settings.instance()
    saved = settings.evaluationDate
    today = ql.Date(15, ql.January, 2025)
    settings.evaluationDate = today
    yield today
    settings.evaluationDate = saved


def ql_process(today):
    dc = ql.Actual365Fixed()
    spot, rate, div, vol = (ql.SimpleQuote(0.0) for _ in range(4))
    process = ql.GeneralizedBlackScholesProcess(
        ql.QuoteHandle(spot),
        ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(div), dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(rate), dc)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), ql.QuoteHandle(vol), dc)),
    )
    quotes = (spot, rate, div, vol)

    def set_market(c, i):
        for quote, key in zip(quotes, ("spot", "rate", "dividend_yield", "volatility")):
            quote.setValue(float(c[key][i]))

    return process, set_market


def ql_type(option_type):
    return ql.Option.Call if option_type == CALL else ql.Option.Put


QL_BARRIER = {bar.DOWN_IN: ql.Barrier.DownIn, bar.DOWN_OUT: ql.Barrier.DownOut,
              bar.UP_IN: ql.Barrier.UpIn, bar.UP_OUT: ql.Barrier.UpOut}


# =========================================================================== single barriers
def test_barrier_matches_quantlib_analytic_barrier_engine(ql_today):
    c = barrier_cases(np.random.default_rng(1), 4000)
    ours = priced("barrier", c, [1])[0]
    process, set_market = ql_process(ql_today)
    engine = ql.AnalyticBarrierEngine(process)
    ref = np.empty_like(ours)
    for i in range(ours.shape[0]):
        set_market(c, i)
        option = ql.BarrierOption(QL_BARRIER[c["barrier_type"][i]], float(c["barrier"][i]), float(c["rebate"][i]),
                                  ql.PlainVanillaPayoff(ql_type(c["option_type"][i]), float(c["strike"][i])),
                                  ql.EuropeanExercise(ql_today + int(c["days"][i])))
        option.setPricingEngine(engine)
        ref[i] = option.NPV()
    scale = c["spot"] + c["strike"] + c["rebate"]
    adjudicate("barrier", ours, ref, scale, np.abs(ours - ref) <= 1e-12 * np.abs(ref) + 1e-14 * scale,
               lambda i: mp_barrier(*(c[k][i] for k in names("barrier"))))


def test_barrier_matches_mpmath_across_the_domain():
    """Discrete monitoring, extreme carry/vol ratios (where e^(2 mu ln(H/S)) overflows and
    N underflows) and rebates, against the 40-digit closed form."""
    rng = np.random.default_rng(2)
    c = barrier_cases(rng, 120)
    c["monitoring_interval"] = np.where(rng.random(120) < 0.5, 0.0, rng.choice([1 / 365, 1 / 52, 1 / 12], 120))
    c["volatility"][:20] = rng.uniform(0.01, 0.03, 20)       # |mu| up to ~2000
    c["rate"][:20], c["dividend_yield"][:20] = 0.15, -0.05
    c["rebate"] = np.where(has_lambda(c) | np.isin(c["barrier_type"], (1, 3)), c["rebate"], 0.0)
    ours = priced("barrier", c, [1])[0]
    args = ("barrier_type", "option_type", "strike", "time", "barrier", "rebate", "monitoring_interval",
            "spot", "rate", "dividend_yield", "volatility")
    exact = np.array([float(mp_barrier(*(c[k][i] for k in args))) for i in range(120)])
    assert_close("barrier vs mpmath", ours, exact, 1e-13, 1e-14 * (c["spot"] + c["strike"] + c["rebate"]))


# Haug 2nd ed., Table 4-13, p. 154: S = 100, r = 0.08, b = 0.04 (q = 0.04), T = 0.5, rebate 3.
# (type, strike, barrier, call vol 25%, call vol 30%, put vol 25%, put vol 30%)
HAUG_4_13 = [
    (bar.DOWN_OUT, 90, 95, 9.0246, 8.8334, 2.2798, 2.4170),
    (bar.DOWN_OUT, 100, 95, 6.7924, 7.0285, 2.2947, 2.4258),
    (bar.DOWN_OUT, 110, 95, 4.8759, 5.4137, 2.6252, 2.6246),
    (bar.UP_OUT, 90, 105, 2.6789, 2.6341, 3.7760, 4.2293),
    (bar.UP_OUT, 100, 105, 2.3580, 2.4389, 5.4932, 5.8032),
    (bar.UP_OUT, 110, 105, 2.3453, 2.4315, 7.5187, 7.5649),
    (bar.DOWN_IN, 90, 95, 7.7627, 9.0093, 2.9586, 3.8769),
    (bar.DOWN_IN, 100, 95, 4.0109, 5.1370, 6.5677, 7.7989),
    (bar.DOWN_IN, 110, 95, 2.0576, 2.8517, 11.9752, 13.3078),
    (bar.UP_IN, 90, 105, 14.1112, 15.2098, 1.4653, 2.0658),
    (bar.UP_IN, 100, 105, 8.4482, 9.7278, 3.3721, 4.4226),
    (bar.UP_IN, 110, 105, 4.5910, 5.8350, 7.0846, 8.3686),
]


@pytest.mark.parametrize("btype, k, h, c25, c30, p25, p30", HAUG_4_13)
def test_barrier_matches_haug_table_4_13(btype, k, h, c25, c30, p25, p30):
    c = {"barrier_type": btype, "option_type": [CALL, CALL, PUT, PUT], "strike": k, "time": 0.5,
         "barrier": h, "rebate": 3.0, "monitoring_interval": 0.0, "spot": 100.0, "rate": 0.08,
         "dividend_yield": 0.04, "volatility": [0.25, 0.30, 0.25, 0.30]}
    assert_close("Haug 4-13", priced("barrier", c, [1])[0], [c25, c30, p25, p30], 0.0, 1e-4 + 1e-12)


def test_table_4_13_spot_on_the_barrier_is_touched():
    """The table's H = 100 = S rows: already touched (ext/pg_barrier.h, note 3): the
    knock-outs are the rebate 3.0000, the knock-ins the vanilla (the table's down-and-in
    calls at 25%: 13.8333, 7.8494, 3.9795 for K = 90, 100, 110)."""
    c = {"barrier_type": [1, 2, 3, 4] * 3, "option_type": CALL, "strike": np.repeat([90.0, 100.0, 110.0], 4),
         "time": 0.5, "barrier": 100.0, "rebate": 3.0, "monitoring_interval": 0.0, "spot": 100.0,
         "rate": 0.08, "dividend_yield": 0.04, "volatility": 0.25}
    price = priced("barrier", c, [1])[0].reshape(3, 4)
    assert_close("knock-outs", price[:, [1, 3]], np.full((3, 2), 3.0), 0.0, 1e-15)
    assert_close("knock-ins", price[:, [0, 2]], np.repeat([[13.8333], [7.8494], [3.9795]], 2, axis=1), 0.0, 5e-5)


def no_hit_probability(s, h, t, b, vol):
    """Q(the barrier h is not reached before t) for ln S_t = ln s + nu t + vol W_t
    (reflection principle; nu = b - vol^2/2)."""
    nu = b - 0.5 * vol * vol
    sd = vol * np.sqrt(t)
    a = np.log(h / s)
    sign = np.where(h < s, 1.0, -1.0)   # work with the distance to the barrier
    cdf = lambda x: 0.5 * np.vectorize(math.erfc)(-x / math.sqrt(2.0))  # noqa: E731
    return cdf(sign * (-a + nu * t) / sd) - np.exp(2 * nu * a / vol**2) * cdf(sign * (a + nu * t) / sd)


def hit_rebate_value(s, h, t, r, b, vol):
    """E[exp(-r tau); tau <= t] for the first passage tau of ln S at ln h (Laplace
    transform of the first-passage time of a drifted Brownian motion; gamma = sqrt(nu^2 + 2 r vol^2))."""
    nu = b - 0.5 * vol * vol
    gamma = np.sqrt(nu * nu + 2.0 * r * vol * vol)
    sd = vol * np.sqrt(t)
    a = np.log(h / s)
    sign = np.where(h < s, 1.0, -1.0)
    cdf = lambda x: 0.5 * np.vectorize(math.erfc)(-x / math.sqrt(2.0))  # noqa: E731
    return (np.exp(a * (nu + sign * gamma) / vol**2) * cdf(sign * (a + sign * gamma * t) / sd)
            + np.exp(a * (nu - sign * gamma) / vol**2) * cdf(sign * (a - sign * gamma * t) / sd))


@pytest.mark.parametrize("direction", ("down", "up"))
def test_in_out_parity_with_rebate(direction):
    """in(R) + out(R) = vanilla + R DF Q(no hit) + R E[exp(-r tau); tau <= T]."""
    kin, kout = (bar.DOWN_IN, bar.DOWN_OUT) if direction == "down" else (bar.UP_IN, bar.UP_OUT)
    rng = np.random.default_rng(3 if direction == "down" else 4)
    c = barrier_cases(rng, 1000, kin)
    c["rate"] = np.abs(c["rate"])   # real gamma for every row (the rebate terms need it)
    vin = priced("barrier", c, [1])[0]
    vout = priced("barrier", dict(c, barrier_type=np.full(1000, kout, np.int32)), [1])[0]
    van = vanilla(c, [1])[0]
    b = c["rate"] - c["dividend_yield"]
    s, h, t, vol = c["spot"], c["barrier"], c["time"], c["volatility"]
    rebate = c["rebate"] * (np.exp(-c["rate"] * t) * no_hit_probability(s, h, t, b, vol)
                            + hit_rebate_value(s, h, t, c["rate"], b, vol))
    assert_close("in + out", vin + vout, van + rebate, 0.0, 1e-12 * (van + c["rebate"] + 1e-3 * s))


@pytest.mark.parametrize("direction", ("down", "up"))
def test_in_out_parity_of_every_measure(direction):
    """Without a rebate, in + out = vanilla for the price and each Greek, discrete
    monitoring included (the corrected barrier is the same for both)."""
    kin, kout = (bar.DOWN_IN, bar.DOWN_OUT) if direction == "down" else (bar.UP_IN, bar.UP_OUT)
    rng = np.random.default_rng(5)
    c = barrier_cases(rng, 500, kin)
    c["rebate"] = np.zeros(500)
    c["monitoring_interval"] = np.where(rng.random(500) < 0.5, 0.0, 1 / 52)
    total = priced("barrier", c) + priced("barrier", dict(c, barrier_type=np.full(500, kout, np.int32)))
    sizes = sizes_of("barrier", c)
    van = vanilla(c)
    for j in range(10):
        tol = 1e-14 if j == 0 else (TOL_FIRST if j + 1 in FIRST else TOL_SECOND)
        assert_close(f"in + out {NAMES[j]}", total[j], van[j], 0.0, tol * sizes[j])


def test_barrier_greeks_match_mpmath_derivatives():
    rng = np.random.default_rng(6)
    c = barrier_cases(rng, 16)
    c["time"] = rng.uniform(0.05, 5.0, 16)
    c["monitoring_interval"] = np.where(rng.random(16) < 0.5, 0.0, 1 / 52)
    c["rebate"] = np.where(has_lambda(c), rng.choice([0.0, 2.0], 16), 0.0)
    out = priced("barrier", c)
    for i in range(16):
        x = row(c, i)
        f = lambda S, T, r, q, v: mp_barrier(int(x["barrier_type"]), int(x["option_type"]), x["strike"], T,  # noqa: E731
                                             x["barrier"], x["rebate"], x["monitoring_interval"], S, r, q, v)
        ref = mp_greeks(f, x["spot"], x["time"], x["rate"], x["dividend_yield"], x["volatility"])
        check_greeks(f"barrier row {i}", out[:, i], ref, sizes_of("barrier", x))


@pytest.mark.parametrize("btype", (1, 2, 3, 4))
def test_barrier_expiry_values_and_greeks(btype):
    h = 90.0 if btype <= 2 else 110.0
    c = {"barrier_type": btype, "option_type": [CALL, CALL, CALL, PUT, PUT], "strike": [95.0, 100.0, 105.0, 95.0, 105.0],
         "time": 0.0, "barrier": h, "rebate": 2.5, "monitoring_interval": 0.0, "spot": 100.0, "rate": 0.05,
         "dividend_yield": 0.01, "volatility": 0.2}
    out = priced("barrier", c)
    kin = btype in (1, 3)
    assert list(out[0]) == ([2.5] * 5 if kin else [5.0, 0.0, 0.0, 0.0, 5.0])
    assert list(out[1]) == ([0.0] * 5 if kin else [1.0, 0.5, 0.0, -0.0, -1.0])
    assert not out[2:].any()


# (type, option, strike, barrier, monitoring interval, monitoring dates): knock-outs (a knock-in
# is the vanilla minus its knock-out, with the same corrected barrier: test_in_out_parity_*)
DISCRETE = [(bar.DOWN_OUT, CALL, 100.0, 90.0, 1 / 52, 52), (bar.DOWN_OUT, CALL, 100.0, 95.0, 1 / 52, 52),
            (bar.DOWN_OUT, CALL, 100.0, 95.0, 1 / 252, 126), (bar.UP_OUT, PUT, 100.0, 110.0, 1 / 52, 52),
            (bar.UP_OUT, CALL, 90.0, 120.0, 1 / 52, 52)]


@pytest.mark.parametrize("btype, option_type, strike, h, interval, dates", DISCRETE)
def test_discrete_monitoring_matches_monte_carlo(btype, option_type, strike, h, interval, dates):
    """BGK-corrected price vs a Monte Carlo of the discretely monitored barrier; the
    continuous formula is at least 3 tolerances away from it."""
    S, T, r, q, vol = 100.0, dates * interval, 0.05, 0.02, 0.25
    c = {"barrier_type": btype, "option_type": option_type, "strike": strike, "time": T, "barrier": h,
         "rebate": 0.0, "monitoring_interval": [interval, 0.0], "spot": S, "rate": r, "dividend_yield": q,
         "volatility": vol}
    bgk, continuous = priced("barrier", c, [1])[0]
    hit, st = mc_paths(S, h, T, dates, r, q, vol, np.random.default_rng(7))
    phi = 1.0 if option_type == CALL else -1.0
    mean, se = mc_mean(np.where(hit, 0.0, np.maximum(phi * (st - strike), 0.0) * math.exp(-r * T)))
    tol = 4 * se + 0.01 * mean
    assert abs(bgk - mean) <= tol, (bgk, mean, se)
    assert abs(continuous - mean) >= 3 * tol, (continuous, mean, tol)


def mc_paths(S, H, T, steps, r, q, vol, rng, paths=200_000):
    """Exact log-normal paths at the monitoring dates k T/steps (antithetic pairs: the second
    half mirrors the first); returns (hit the barrier at some date, S_T)."""
    dt = T / steps
    half = paths // 2
    x = np.full(paths, math.log(S))
    hit = np.zeros(paths, dtype=bool)
    down = H < S
    for _ in range(steps):
        z = rng.standard_normal(half)
        x += (r - q - 0.5 * vol * vol) * dt + vol * math.sqrt(dt) * np.concatenate([z, -z])
        hit |= (x <= math.log(H)) if down else (x >= math.log(H))
    return hit, np.exp(x)


def mc_mean(values):
    """Mean and standard error of antithetic pairs."""
    half = values.shape[0] // 2
    pairs = 0.5 * (values[:half] + values[half:])
    return pairs.mean(), pairs.std() / math.sqrt(half)


def test_extreme_carry_and_tiny_vol_stay_finite():
    """vol 1%, carry 20%: (H/S)^(2 mu) is e^(+-4000); QuantLib returns NaN or inf here."""
    c = {"barrier_type": [1, 2, 3, 4], "option_type": [CALL, PUT, CALL, PUT], "strike": 100.0, "time": 1.0,
         "barrier": [80.0, 80.0, 120.0, 120.0], "rebate": 1.0, "monitoring_interval": 0.0, "spot": 100.0,
         "rate": 0.15, "dividend_yield": -0.05, "volatility": 0.01}
    ours = priced("barrier", c, [1])[0]
    exact = [float(mp_barrier(bt, ot, 100.0, 1.0, h, 1.0, 0.0, 100.0, 0.15, -0.05, 0.01))
             for bt, ot, h in zip(c["barrier_type"], c["option_type"], c["barrier"])]
    assert_close("extreme", ours, exact, 1e-13, 1e-14 * 200)


def test_knock_out_rebate_without_real_lambda_is_not_finite():
    """r < 0 with mu^2 + 2r/vol^2 < 0: the hit-paid rebate has no closed form here."""
    c = {"barrier_type": bar.DOWN_OUT, "option_type": CALL, "strike": 100.0, "time": 1.0, "barrier": 90.0,
         "rebate": [1.0, 0.0], "monitoring_interval": 0.0, "spot": 100.0, "rate": -0.03,
         "dividend_yield": -0.03, "volatility": 0.2}
    out, status, nbad = run("barrier", c)
    assert nbad == 1 and list(status) == [pgs.NOT_FINITE, 0]
    assert np.isnan(out[:, 0]).all() and np.isfinite(out[:, 1]).all() and out[0, 1] > 0


# =========================================================================== double barriers
def ql_double(today, c, engine_series=None, rows=None):
    process, set_market = ql_process(today)
    engine = ql.AnalyticDoubleBarrierEngine(process) if engine_series is None else \
        ql.AnalyticDoubleBarrierEngine(process, engine_series)
    rows = range(c["spot"].shape[0]) if rows is None else rows
    ref = []
    for i in rows:
        set_market(c, i)
        kind = ql.DoubleBarrier.KnockIn if c["knock"][i] == bar.KNOCK_IN else ql.DoubleBarrier.KnockOut
        option = ql.DoubleBarrierOption(kind, float(c["lower_barrier"][i]), float(c["upper_barrier"][i]), 0.0,
                                        ql.PlainVanillaPayoff(ql_type(c["option_type"][i]), float(c["strike"][i])),
                                        ql.EuropeanExercise(today + int(c["days"][i])))
        option.setPricingEngine(engine)
        ref.append(option.NPV())
    return np.array(ref)


def double_regimes(c):
    v2 = c["volatility"] ** 2
    w = np.log(c["upper_barrier"] / c["lower_barrier"])
    return v2 * c["time"] / w**2, np.abs(2 * (c["rate"] - c["dividend_yield"]) / v2 + 1) * w


def test_double_barrier_matches_quantlib_where_its_series_has_converged(ql_today):
    c = double_cases(np.random.default_rng(11), 40000)
    c["strike"] = np.exp(np.random.default_rng(12).uniform(np.log(c["lower_barrier"]), np.log(c["upper_barrier"])))
    ratio, mu1w = double_regimes(c)
    keep = np.flatnonzero((ratio < 0.25) & (mu1w <= 5.0))[:2000]
    c = {k: v[keep] for k, v in c.items()}
    assert keep.size == 2000
    ours = priced("double", c, [1])[0]
    ref = ql_double(ql_today, c)
    scale = c["spot"] + c["strike"]
    adjudicate("double (5 terms)", ours, ref, scale, np.abs(ours - ref) <= 1e-12 * np.abs(ref) + 1e-13 * scale,
               lambda i: mp_double(*(c[k][i] for k in names("double"))), atol=1e-15)


def test_double_barrier_matches_quantlib_with_50_terms_and_its_5_term_series_is_short(ql_today):
    """Where vol^2 T/W^2 >= 1/4 QuantLib's default 5 images are not enough; with 50 it agrees."""
    c = double_cases(np.random.default_rng(13), 8000)
    c["strike"] = np.exp(np.random.default_rng(14).uniform(np.log(c["lower_barrier"]), np.log(c["upper_barrier"])))
    ratio, mu1w = double_regimes(c)
    keep = np.flatnonzero((ratio >= 0.25) & (ratio < 10.0) & (mu1w <= 5.0))[:300]
    c = {k: v[keep] for k, v in c.items()}
    ours = priced("double", c, [1])[0]
    scale = c["spot"] + c["strike"]
    ref = ql_double(ql_today, c, 50)
    adjudicate("double (50 terms)", ours, ref, scale, np.abs(ours - ref) <= 1e-11 * scale,
               lambda i: mp_double(*(c[k][i] for k in names("double"))), atol=1e-15, share=0.01)
    short = np.abs(ql_double(ql_today, c) - ours) / scale
    assert short.max() > 1e-6     # the default series is visibly truncated on some rows


def test_double_barrier_matches_mpmath_across_the_domain():
    rng = np.random.default_rng(15)
    c = double_cases(rng, 60, width_max=1.5)
    c["knock"] = np.full(60, bar.KNOCK_OUT, np.int32)
    # vol^2 T/W^2 from 1e-3 to 1e3 (both series, and the kernel's switch between them)
    w = np.log(c["upper_barrier"] / c["lower_barrier"])
    c["volatility"] = np.sqrt(np.exp(rng.uniform(math.log(1e-3), math.log(1e3), 60)) * w**2 / c["time"])
    ours = priced("double", c, [1])[0]
    args = ("knock", "option_type", "strike", "time", "lower_barrier", "upper_barrier", "spot", "rate",
            "dividend_yield", "volatility")
    with mp.workdps(40):
        exact = np.array([float(mp_double(*(c[k][i] for k in args))) for i in range(60)])
    assert_close("double vs mpmath", ours, exact, 2e-11, 1e-15 * (c["spot"] + c["strike"]))
    assert (exact < 1e-100).any() and (exact > 1.0).any()   # the sample spans the domain


def test_double_barrier_image_and_mode_series_agree():
    """The two references of the test above agree where both converge (a check of them)."""
    with mp.workdps(40):
        for args in ((CALL, 100.0, 1.0, 80.0, 120.0, 100.0, 0.05, 0.01, 0.35),
                     (PUT, 95.0, 2.0, 90.0, 115.0, 104.0, 0.02, 0.04, 0.2),
                     (CALL, 70.0, 0.5, 85.0, 105.0, 90.0, 0.03, 0.0, 0.5)):
            a, b = mp_double_ko_images(*args), mp_double_ko_modes(*args)
            assert abs(a - b) <= mp.mpf(10) ** -30 * (args[1] + args[5]), (args, a, b)


# Haug 2nd ed., double-barrier knock-out values (S = X = 100, r = b = 0.1, flat boundaries), as
# transcribed in QuantLib's test-suite/doublebarrieroption.cpp ("p. 156 and following").
# (L, U, T, call vol 15%, 25%, 35%, put vol 15%, 25%, 35%)
HAUG_DOUBLE = [
    (50, 150, 0.25, 4.3515, 6.1644, 7.0373, 1.8825, 3.7855, 5.7191),
    (50, 150, 0.50, 6.9853, 7.9336, 6.5088, 2.1374, 4.7033, 7.1683),
    (60, 140, 0.25, 4.3505, 5.8500, 5.7726, 1.8825, 3.7845, 5.6060),
    (60, 140, 0.50, 6.8082, 6.3383, 4.3841, 2.1374, 4.6236, 6.1062),
    (70, 130, 0.25, 4.3139, 4.8293, 3.7765, 1.8825, 3.7014, 4.6472),
    (70, 130, 0.50, 5.9697, 4.0004, 2.2563, 2.1325, 3.8944, 3.5868),
    (80, 120, 0.25, 3.7516, 2.6387, 1.4903, 1.8600, 2.6866, 2.0719),
    (80, 120, 0.50, 3.5805, 1.5098, 0.5635, 1.8883, 1.7851, 0.8244),
    (90, 110, 0.25, 1.2055, 0.3098, 0.0477, 0.9473, 0.3449, 0.0578),
    (90, 110, 0.50, 0.5537, 0.0441, 0.0011, 0.4555, 0.0491, 0.0013),
]


@pytest.mark.parametrize("lo, hi, t, c15, c25, c35, p15, p25, p35", HAUG_DOUBLE)
def test_double_barrier_matches_haug_table(lo, hi, t, c15, c25, c35, p15, p25, p35):
    c = {"knock": bar.KNOCK_OUT, "option_type": [CALL] * 3 + [PUT] * 3, "strike": 100.0, "time": t,
         "lower_barrier": lo, "upper_barrier": hi, "spot": 100.0, "rate": 0.1, "dividend_yield": 0.0,
         "volatility": [0.15, 0.25, 0.35] * 2}
    assert_close("Haug double barrier", priced("double", c, [1])[0], [c15, c25, c35, p15, p25, p35], 0.0, 1e-4 + 1e-12)


def test_double_knock_in_plus_knock_out_is_european_for_every_measure():
    rng = np.random.default_rng(16)
    c = double_cases(rng, 500)
    c["time"] = rng.uniform(0.02, 5.0, 500)
    kin = priced("double", dict(c, knock=np.full(500, bar.KNOCK_IN, np.int32)))
    kout = priced("double", dict(c, knock=np.full(500, bar.KNOCK_OUT, np.int32)))
    van = vanilla(c)
    sizes = sizes_of("double", dict(c, knock=np.full(500, bar.KNOCK_OUT)))
    for j in range(10):
        tol = 1e-14 if j == 0 else (TOL_FIRST if j + 1 in FIRST else TOL_SECOND)
        assert_close(f"KI + KO {NAMES[j]}", kin[j] + kout[j], van[j], 0.0, tol * sizes[j])


def test_double_barrier_greeks_match_mpmath_derivatives():
    cases = [(bar.KNOCK_OUT, CALL, 100.0, 0.5, 80.0, 125.0, 100.0, 0.05, 0.02, 0.25),
             (bar.KNOCK_IN, PUT, 105.0, 1.5, 85.0, 120.0, 98.0, 0.01, 0.03, 0.3),
             (bar.KNOCK_OUT, PUT, 95.0, 2.0, 90.0, 105.0, 100.0, 0.03, 0.0, 0.2)]   # vol^2 T/W^2 = 3.1: modes
    keys = ("knock", "option_type", "strike", "time", "lower_barrier", "upper_barrier", "spot", "rate",
            "dividend_yield", "volatility")
    c = {k: np.array([case[j] for case in cases]) for j, k in enumerate(keys)}
    out = priced("double", c)
    for i, (kn, ot, K, T, L, U, S, r, q, v) in enumerate(cases):
        f = lambda S_, T_, r_, q_, v_: mp_double(kn, ot, K, T_, L, U, S_, r_, q_, v_)  # noqa: E731
        ref = mp_greeks(f, S, T, r, q, v, dps=20)
        check_greeks(f"double row {i}", out[:, i], ref, sizes_of("double", row(c, i)))


def test_double_barrier_expiry_and_empty_corridor():
    c = {"knock": [2, 2, 1, 2, 2, 1], "option_type": [CALL, PUT, CALL, CALL, PUT, CALL],
         "strike": [95.0, 105.0, 95.0, 130.0, 70.0, 130.0], "time": [0.0, 0.0, 0.0, 1.0, 1.0, 1.0],
         "lower_barrier": 80.0, "upper_barrier": 120.0, "spot": 100.0, "rate": 0.05, "dividend_yield": 0.0,
         "volatility": 0.2}
    out = priced("double", c)
    assert list(out[0, :3]) == [5.0, 5.0, 0.0] and list(out[1, :3]) == [1.0, -1.0, 0.0]
    assert not out[2:, :3].any()
    # a call struck above U, a put below L: knocked out before paying, so worth 0; knock-in = European
    assert list(out[:, 3]) == [0.0] * 10 and list(out[:, 4]) == [0.0] * 10
    assert_close("KI = European", out[0, 5], vanilla(row(c, 5), [1])[0], 1e-14, 0.0)


def test_double_barrier_beyond_64_images_is_zero_or_not_finite():
    """vol^2 T/W^2 > 182 with a drift too strong for the modes: the images are not summed;
    the knock-out is 0 where its bound e^{m W - pi^2 c/2} (4/pi) underflows, else the row is
    PG_NOT_FINITE (a rate of 150% over 10 years, and of 50% over 1000 years at vol 0.45%:
    no market gets there)."""
    c = {"knock": [bar.KNOCK_OUT, bar.KNOCK_IN, bar.KNOCK_OUT], "option_type": CALL, "strike": 100.0,
         "time": [10.0, 10.0, 1000.0], "lower_barrier": 99.5, "upper_barrier": 100.5, "spot": 100.0,
         "rate": [1.5, 1.5, 0.5], "dividend_yield": 0.0, "volatility": [0.05, 0.05, 0.00447]}
    out, status, nbad = run("double", c, [1])
    assert list(status) == [0, 0, pgs.NOT_FINITE] and nbad == 1
    assert out[0, 0] == 0.0 and out[0, 1] == pytest.approx(vanilla(row(c, 1), [1])[0, 0], rel=1e-14)
    assert math.isnan(out[0, 2])


# =========================================================================== digitals
QL_GREEKS = ("NPV", "delta", "gamma", "vega", "theta", "rho", "dividendRho")


@pytest.mark.parametrize("payoff", (bar.CASH_OR_NOTHING, bar.ASSET_OR_NOTHING, bar.GAP), ids=("cash", "asset", "gap"))
def test_digital_matches_quantlib_analytic_european_engine(ql_today, payoff):
    c = digital_cases(np.random.default_rng(20 + payoff), 1000, payoff)
    ours = priced("digital", c, [1, 2, 3, 4, 5, 6, 7])
    process, set_market = ql_process(ql_today)
    engine = ql.AnalyticEuropeanEngine(process)
    ref = np.empty_like(ours)
    for i in range(ours.shape[1]):
        set_market(c, i)
        t, k = ql_type(c["option_type"][i]), float(c["strike"][i])
        pay = {bar.CASH_OR_NOTHING: lambda: ql.CashOrNothingPayoff(t, k, float(c["cash"][i])),
               bar.ASSET_OR_NOTHING: lambda: ql.AssetOrNothingPayoff(t, k),
               bar.GAP: lambda: ql.GapPayoff(t, k, float(c["payoff_strike"][i]))}[payoff]()
        option = ql.VanillaOption(pay, ql.EuropeanExercise(ql_today + int(c["days"][i])))
        option.setPricingEngine(engine)
        ref[:, i] = [getattr(option, g)() for g in QL_GREEKS]
    sizes = sizes_of("digital", c)
    for j in range(7):
        assert_close(f"digital {NAMES[j]}", ours[j], ref[j], 1e-12, 1e-14 * sizes[j])


def test_digital_greeks_match_mpmath_derivatives():
    rng = np.random.default_rng(23)
    c = digital_cases(rng, 24)
    c["time"] = rng.uniform(0.01, 5.0, 24)
    out = priced("digital", c)
    for i in range(24):
        x = row(c, i)
        f = lambda S, T, r, q, v: mp_digital(int(x["payoff"]), int(x["option_type"]), x["strike"], T,  # noqa: E731
                                             x["cash"], x["payoff_strike"], S, r, q, v)
        ref = mp_greeks(f, x["spot"], x["time"], x["rate"], x["dividend_yield"], x["volatility"])
        check_greeks(f"digital row {i}", out[:, i], ref, sizes_of("digital", x), first=1e-13, second=1e-13)


def test_digitals_match_haug_examples():
    """Haug 2nd ed. 4.19.1 (cash-or-nothing put: S 100, X 80, T 0.75, r 6%, b 0, vol 35%,
    cash 10 -> 2.6710), 4.19.2 (asset-or-nothing put: S 70, X 65, T 0.5, r 7%, q 5%,
    vol 27% -> 20.2069), 4.19.3 (gap call: S 50, X1 50, X2 57, T 0.5, r 9%, b 9%, vol 20%
    -> -0.0053)."""
    c = {"payoff": [1, 2, 3], "option_type": [PUT, PUT, CALL], "strike": [80.0, 65.0, 50.0],
         "time": [0.75, 0.5, 0.5], "cash": [10.0, 0.0, 0.0], "payoff_strike": [0.0, 0.0, 57.0],
         "spot": [100.0, 70.0, 50.0], "rate": [0.06, 0.07, 0.09], "dividend_yield": [0.06, 0.05, 0.0],
         "volatility": [0.35, 0.27, 0.20]}
    assert_close("Haug digitals", priced("digital", c, [1])[0], [2.6710, 20.2069, -0.0053], 0.0, 1e-4)


def test_digital_identities_for_every_measure():
    """cash call + put = Q DF; asset call + put = S e^{-qT}; gap = phi (asset - K2 cash)."""
    rng = np.random.default_rng(24)
    n = 1000
    c = digital_cases(rng, n)
    get = lambda payoff, ot: priced("digital", dict(c, payoff=np.full(n, payoff, np.int32),  # noqa: E731
                                                    option_type=np.full(n, ot, np.int32)))
    t, r, q, s, cash = c["time"], c["rate"], c["dividend_yield"], c["spot"], c["cash"]
    df, dq = np.exp(-r * t), np.exp(-q * t)
    zero = np.zeros(n)
    cash_total = [cash * df, zero, zero, zero, r * cash * df, -t * cash * df, zero, zero, zero, zero]
    asset_total = [s * dq, dq, zero, zero, q * s * dq, zero, -t * s * dq, zero, zero, q * dq]
    sizes = sizes_of("digital", c)
    for payoff, total in ((bar.CASH_OR_NOTHING, cash_total), (bar.ASSET_OR_NOTHING, asset_total)):
        both = get(payoff, CALL) + get(payoff, PUT)
        for j in range(10):
            assert_close(f"call + put {payoff} {NAMES[j]}", both[j], total[j], 0.0, 1e-14 * sizes[j])
    unit = dict(c, cash=np.ones(n))
    for ot, phi in ((CALL, 1.0), (PUT, -1.0)):
        gap = get(bar.GAP, ot)
        asset = get(bar.ASSET_OR_NOTHING, ot)
        cash1 = priced("digital", dict(unit, payoff=np.full(n, 1, np.int32), option_type=np.full(n, ot, np.int32)))
        for j in range(10):
            assert_close(f"gap {NAMES[j]}", gap[j], phi * (asset[j] - c["payoff_strike"] * cash1[j]), 0.0,
                         1e-14 * sizes[j])


def test_digital_expiry_values_and_greeks():
    c = {"payoff": [1, 1, 1, 2, 2, 3, 3], "option_type": [CALL, CALL, CALL, PUT, PUT, CALL, PUT],
         "strike": [95.0, 100.0, 105.0, 105.0, 100.0, 95.0, 105.0], "time": 0.0, "cash": 7.0,
         "payoff_strike": 90.0, "spot": 100.0, "rate": 0.05, "dividend_yield": 0.0, "volatility": 0.2}
    out = priced("digital", c)
    assert list(out[0]) == [7.0, 3.5, 0.0, 100.0, 50.0, 10.0, -10.0]
    assert list(out[1]) == [0.0, 0.0, 0.0, 1.0, 0.5, 1.0, -1.0]
    assert not out[2:].any()


# =========================================================================== one-touch / no-touch
def test_one_touch_matches_quantlib_digital_american_engine(ql_today):
    process, set_market = ql_process(ql_today)
    engine = ql.AnalyticDigitalAmericanEngine(process)
    for payment, seed in ((bar.AT_HIT, 30), (bar.AT_EXPIRY, 31)):
        c = touch_cases(np.random.default_rng(seed), 1000, bar.ONE_TOUCH, payment)
        measures = [1, 2, 3, 6] if payment == bar.AT_HIT else [1]
        ours = priced("touch", c, measures)
        ref = np.empty_like(ours)
        for i in range(ours.shape[1]):
            set_market(c, i)
            kind = ql.Option.Put if c["direction"][i] == bar.DOWN else ql.Option.Call
            option = ql.VanillaOption(ql.CashOrNothingPayoff(kind, float(c["barrier"][i]), float(c["cash"][i])),
                                      ql.AmericanExercise(ql_today, ql_today + int(c["days"][i]), payment == bar.AT_EXPIRY))
            option.setPricingEngine(engine)
            ref[:, i] = [getattr(option, g)() for g in ("NPV", "delta", "gamma", "rho")[:len(measures)]]
        sizes = sizes_of("touch", c)
        for j, code in enumerate(measures):
            # QuantLib's delta and gamma are analytic; ours are finite differences
            tol = 1e-14 if code == 1 else (TOL_FIRST if code in FIRST else TOL_SECOND)
            assert_close(f"one-touch {payment} {NAMES[code - 1]}", ours[j], ref[j], 1e-12, tol * sizes[code - 1])


def test_no_touch_matches_quantlib_ko_and_binary_barrier_engines(ql_today):
    c = touch_cases(np.random.default_rng(32), 1000, bar.NO_TOUCH)
    ours = priced("touch", c, [1])[0]
    process, set_market = ql_process(ql_today)
    ko, binary = ql.AnalyticDigitalAmericanKOEngine(process), ql.AnalyticBinaryBarrierEngine(process)
    for engine in (ko, binary):
        ref = np.empty_like(ours)
        for i in range(ours.shape[0]):
            set_market(c, i)
            h, cash = float(c["barrier"][i]), float(c["cash"][i])
            down = c["direction"][i] == bar.DOWN
            expiry = ql_today + int(c["days"][i])
            if engine is ko:
                option = ql.VanillaOption(ql.CashOrNothingPayoff(ql.Option.Put if down else ql.Option.Call, h, cash),
                                          ql.AmericanExercise(ql_today, expiry, True))
            else:   # down-out cash call struck below H (up-out put struck above): pays iff never hit
                option = ql.BarrierOption(ql.Barrier.DownOut if down else ql.Barrier.UpOut, h, 0.0,
                                          ql.CashOrNothingPayoff(ql.Option.Call if down else ql.Option.Put,
                                                                 h * (0.5 if down else 2.0), cash),
                                          ql.AmericanExercise(ql_today, expiry, True))
            option.setPricingEngine(engine)
            ref[i] = option.NPV()
        adjudicate("no-touch", ours, ref, c["cash"], np.abs(ours - ref) <= 1e-12 * np.abs(ref) + 1e-14 * c["cash"],
                   lambda i: mp_touch(*(c[k][i] for k in names("touch"))))


# Haug's binary-barrier table (S = 105 down / 95 up, H = 100, K = 15, T = 0.5, r = b = 0.1, vol 0.2),
# cases 1, 2, 5, 6, 9, 10, as transcribed in QuantLib's test-suite (digitaloption.cpp: 1st ed. p. 95;
# binaryoption.cpp cites 2nd ed. p. 180 for cases 13-28 of the same table).
HAUG_TOUCH = [
    (1, bar.ONE_TOUCH, bar.DOWN, bar.AT_HIT, 105.0, 9.7264),
    (2, bar.ONE_TOUCH, bar.UP, bar.AT_HIT, 95.0, 11.6553),
    (5, bar.ONE_TOUCH, bar.DOWN, bar.AT_EXPIRY, 105.0, 9.3604),
    (6, bar.ONE_TOUCH, bar.UP, bar.AT_EXPIRY, 95.0, 11.2223),
    (9, bar.NO_TOUCH, bar.DOWN, bar.AT_EXPIRY, 105.0, 4.9081),
    (10, bar.NO_TOUCH, bar.UP, bar.AT_EXPIRY, 95.0, 3.0461),
]


@pytest.mark.parametrize("case, touch, direction, payment, spot, value", HAUG_TOUCH)
def test_touch_matches_haug_binary_barrier_table(case, touch, direction, payment, spot, value):
    c = {"touch_type": touch, "direction": direction, "payment": payment, "cash": 15.0, "barrier": 100.0,
         "time": 0.5, "monitoring_interval": 0.0, "spot": spot, "rate": 0.1, "dividend_yield": 0.0,
         "volatility": 0.2}
    assert abs(priced("touch", c, [1])[0, 0] - value) <= 1e-4, case


def test_one_touch_plus_no_touch_is_discounted_cash_for_every_measure():
    rng = np.random.default_rng(33)
    n = 500
    c = touch_cases(rng, n, bar.NO_TOUCH)
    c["monitoring_interval"] = np.where(rng.random(n) < 0.5, 0.0, 1 / 252)
    no = priced("touch", c)
    one = priced("touch", dict(c, touch_type=np.full(n, bar.ONE_TOUCH, np.int32)))
    t, r, cash = c["time"], c["rate"], c["cash"]
    df, zero = np.exp(-r * t), np.zeros(n)
    total = [cash * df, zero, zero, zero, r * cash * df, -t * cash * df, zero, zero, zero, zero]
    sizes = sizes_of("touch", c)
    for j in range(10):
        tol = 1e-14 if j == 0 else (TOL_FIRST if j + 1 in FIRST else TOL_SECOND)
        assert_close(f"one + no {NAMES[j]}", one[j] + no[j], total[j], 0.0, tol * sizes[j])


def test_touch_greeks_match_mpmath_derivatives():
    rng = np.random.default_rng(34)
    c = touch_cases(rng, 12)
    c["time"] = rng.uniform(0.05, 5.0, 12)
    c["monitoring_interval"] = np.where(rng.random(12) < 0.5, 0.0, 1 / 52)
    out = priced("touch", c)
    for i in range(12):
        x = row(c, i)
        f = lambda S, T, r, q, v: mp_touch(int(x["touch_type"]), int(x["direction"]), int(x["payment"]),  # noqa: E731
                                           x["cash"], x["barrier"], T, x["monitoring_interval"], S, r, q, v)
        ref = mp_greeks(f, x["spot"], x["time"], x["rate"], x["dividend_yield"], x["volatility"])
        check_greeks(f"touch row {i}", out[:, i], ref, sizes_of("touch", x))


@pytest.mark.parametrize("interval, steps", ((1 / 252, 126), (1 / 52, 52)))
def test_touch_discrete_monitoring_matches_monte_carlo(interval, steps):
    S, H, T, r, q, vol = 100.0, 92.0, steps * interval, 0.03, 0.01, 0.2
    c = {"touch_type": [1, 2, 1], "direction": bar.DOWN, "payment": bar.AT_EXPIRY, "cash": 1.0, "barrier": H,
         "time": T, "monitoring_interval": [interval, interval, 0.0], "spot": S, "rate": r, "dividend_yield": q,
         "volatility": vol}
    one, no, continuous = priced("touch", c, [1])[0]
    hit, _ = mc_paths(S, H, T, steps, r, q, vol, np.random.default_rng(35))
    mean, se = mc_mean(np.where(hit, math.exp(-r * T), 0.0))
    tol = 4 * se + 0.01 * mean
    assert abs(one - mean) <= tol, (one, mean, se)
    assert abs(continuous - mean) >= 3 * tol, (continuous, mean, tol)
    assert abs(no - (math.exp(-r * T) - mean)) <= tol


def test_touch_expiry_values():
    c = {"touch_type": [1, 1, 2, 2], "direction": [1, 2, 1, 2], "payment": [1, 2, 2, 2], "cash": 3.0,
         "barrier": [90.0, 110.0, 90.0, 110.0], "time": 0.0, "monitoring_interval": 0.0, "spot": 100.0,
         "rate": 0.05, "dividend_yield": 0.0, "volatility": 0.2}
    out = priced("touch", c)
    assert list(out[0]) == [0.0, 0.0, 3.0, 3.0] and not out[1:].any()


# =========================================================================== kernel contract
def base(family):
    """A valid row of each family (scalars)."""
    return {
        "barrier": {"barrier_type": bar.DOWN_OUT, "option_type": CALL, "strike": 100.0, "time": 0.75,
                    "barrier": 90.0, "rebate": 2.0, "monitoring_interval": 1 / 52, "spot": 100.0, "rate": 0.03,
                    "dividend_yield": 0.01, "volatility": 0.25},
        "double": {"knock": bar.KNOCK_OUT, "option_type": CALL, "strike": 100.0, "time": 0.75,
                   "lower_barrier": 85.0, "upper_barrier": 120.0, "spot": 100.0, "rate": 0.03,
                   "dividend_yield": 0.01, "volatility": 0.25},
        "digital": {"payoff": bar.GAP, "option_type": CALL, "strike": 100.0, "time": 0.75, "cash": 5.0,
                    "payoff_strike": 95.0, "spot": 100.0, "rate": 0.03, "dividend_yield": 0.01, "volatility": 0.25},
        "touch": {"touch_type": bar.ONE_TOUCH, "direction": bar.UP, "payment": bar.AT_HIT, "cash": 5.0,
                  "barrier": 110.0, "time": 0.75, "monitoring_interval": 0.0, "spot": 100.0, "rate": 0.03,
                  "dividend_yield": 0.01, "volatility": 0.25},
    }[family]


MARKET_BAD = [
    ("time", -0.5, pgs.BAD_TIME), ("time", NAN, pgs.BAD_TIME), ("time", INF, pgs.BAD_TIME),
    ("spot", 0.0, pgs.BAD_UNDERLYING), ("spot", -100.0, pgs.BAD_UNDERLYING), ("spot", NAN, pgs.BAD_UNDERLYING),
    ("spot", INF, pgs.BAD_UNDERLYING),
    ("rate", NAN, pgs.BAD_RATE), ("rate", INF, pgs.BAD_RATE), ("rate", -INF, pgs.BAD_RATE),
    ("dividend_yield", NAN, pgs.BAD_DIVIDEND), ("dividend_yield", INF, pgs.BAD_DIVIDEND),
    ("volatility", 0.0, pgs.BAD_VOL), ("volatility", -0.2, pgs.BAD_VOL), ("volatility", NAN, pgs.BAD_VOL),
    ("volatility", INF, pgs.BAD_VOL),
]
OPTION_BAD = [("option_type", 0, pgs.BAD_OPTION_TYPE), ("option_type", 3, pgs.BAD_OPTION_TYPE),
              ("strike", 0.0, pgs.BAD_STRIKE), ("strike", -5.0, pgs.BAD_STRIKE), ("strike", NAN, pgs.BAD_STRIKE),
              ("strike", INF, pgs.BAD_STRIKE)]
MONITORING_BAD = [("monitoring_interval", -1e-3, pgs.BAD_MONITORING), ("monitoring_interval", NAN, pgs.BAD_MONITORING),
                  ("monitoring_interval", INF, pgs.BAD_MONITORING), ("monitoring_interval", 0.0, pgs.OK)]
BAD = {
    "barrier": MARKET_BAD + OPTION_BAD + MONITORING_BAD + [
        ("barrier_type", 0, pgs.BAD_VARIANT), ("barrier_type", 5, pgs.BAD_VARIANT),
        ("barrier", 0.0, pgs.BAD_BARRIER), ("barrier", -90.0, pgs.BAD_BARRIER), ("barrier", NAN, pgs.BAD_BARRIER),
        ("barrier", INF, pgs.BAD_BARRIER), ("barrier", 100.0, pgs.OK), ("barrier", 101.0, pgs.BAD_BARRIER),  # == spot: touched
        ("rebate", -1.0, pgs.BAD_REBATE), ("rebate", NAN, pgs.BAD_REBATE), ("rebate", INF, pgs.BAD_REBATE),
        ("rebate", 0.0, pgs.OK)],
    "double": MARKET_BAD + OPTION_BAD + [
        ("knock", 0, pgs.BAD_VARIANT), ("knock", 3, pgs.BAD_VARIANT),
        ("lower_barrier", 0.0, pgs.BAD_BARRIER), ("lower_barrier", NAN, pgs.BAD_BARRIER),
        ("lower_barrier", 100.0, pgs.OK), ("lower_barrier", 105.0, pgs.BAD_BARRIER),     # == spot: touched
        ("upper_barrier", INF, pgs.BAD_UPPER_BARRIER), ("upper_barrier", NAN, pgs.BAD_UPPER_BARRIER),
        ("upper_barrier", 100.0, pgs.OK), ("upper_barrier", 95.0, pgs.BAD_UPPER_BARRIER)],
    "digital": MARKET_BAD + OPTION_BAD + [
        ("payoff", 0, pgs.BAD_VARIANT), ("payoff", 4, pgs.BAD_VARIANT),
        ("payoff_strike", NAN, pgs.BAD_PAYOFF_STRIKE), ("payoff_strike", INF, pgs.BAD_PAYOFF_STRIKE),
        ("payoff_strike", -5.0, pgs.BAD_PAYOFF_STRIKE),
        ("cash", NAN, pgs.BAD_REBATE)],      # gap: cash not read, but checked (never ignored)
    "touch": MARKET_BAD + MONITORING_BAD + [
        ("touch_type", 0, pgs.BAD_VARIANT), ("touch_type", 3, pgs.BAD_VARIANT),
        ("direction", 0, pgs.BAD_VARIANT), ("direction", 3, pgs.BAD_VARIANT),
        ("payment", 0, pgs.BAD_VARIANT), ("payment", 3, pgs.BAD_VARIANT),
        ("direction", bar.DOWN, pgs.BAD_BARRIER),                    # barrier 110 above spot
        ("barrier", 100.0, pgs.OK), ("barrier", 90.0, pgs.BAD_BARRIER),              # an up barrier below spot
        ("barrier", NAN, pgs.BAD_BARRIER), ("barrier", -1.0, pgs.BAD_BARRIER),
        ("cash", -1.0, pgs.BAD_REBATE), ("cash", NAN, pgs.BAD_REBATE), ("cash", INF, pgs.BAD_REBATE),
        ("payment", bar.AT_EXPIRY, pgs.OK)],
}


@pytest.mark.parametrize("family, field, value, expected",
                         [(f, *b) for f in FAMILIES for b in BAD[f]], ids=repr)
def test_bad_input_sets_its_bit_and_nans_its_row_only(family, field, value, expected):
    good = base(family)
    cases = {k: np.full(5, v) for k, v in good.items()}
    cases[field] = cases[field].astype(np.int32 if field in COLUMNS[family][0] else float)
    cases[field][2] = value
    out, status, nbad = run(family, cases)
    alone = priced(family, good)[:, 0]
    assert status[2] == expected and nbad == (expected != pgs.OK)
    if expected != pgs.OK:
        assert np.isnan(out[:, 2]).all()
    for i in (0, 1, 3, 4):
        assert status[i] == 0
        assert_same_row("neighbour", out[:, i], alone)


def test_no_touch_paid_at_hit_is_a_bad_variant():
    c = dict(base("touch"), touch_type=bar.NO_TOUCH, payment=bar.AT_HIT)
    out, status, nbad = run("touch", c)
    assert nbad == 1 and status[0] == pgs.BAD_VARIANT and np.isnan(out).all()


def test_several_bad_fields_set_several_bits():
    c = dict(base("double"), strike=-1.0, volatility=NAN, upper_barrier=50.0)
    _, status, _ = run("double", c)
    assert status[0] == pgs.BAD_STRIKE | pgs.BAD_VOL | pgs.BAD_UPPER_BARRIER


def random_family_cases(family, rng, n):
    return {"barrier": lambda: dict(barrier_cases(rng, n), monitoring_interval=rng.choice([0.0, 1 / 52], n)),
            "double": lambda: double_cases(rng, n), "digital": lambda: digital_cases(rng, n),
            "touch": lambda: touch_cases(rng, n)}[family]()


@pytest.mark.parametrize("family", FAMILIES)
def test_broadcast_inputs_equal_tiled_inputs(family):
    rng = np.random.default_rng(40)
    c = random_family_cases(family, rng, 64)
    c = {k: c[k] for k in names(family)}
    first = {k: v[:1] for k, v in c.items()}
    c.update({"spot": np.full(64, first["spot"][0])})   # barriers stay on their side of one spot
    if family == "barrier":
        c["barrier"] = np.where(c["barrier_type"] <= 2, 0.9, 1.1) * c["spot"]
    if family == "touch":
        c["barrier"] = np.where(c["direction"] == bar.DOWN, 0.9, 1.1) * c["spot"]
    if family == "double":
        c["lower_barrier"], c["upper_barrier"] = 0.8 * c["spot"], 1.25 * c["spot"]
    for name in names(family):
        if family in ("barrier", "touch") and name in ("barrier", "barrier_type", "direction"):
            continue   # a single barrier or type must stay on the side of each row's code
        short = dict(c, **{name: c[name][:1]})
        tiled = dict(c, **{name: np.repeat(c[name][:1], 64)})
        a, sa, _ = run(family, short)
        b, sb, _ = run(family, tiled)
        assert np.array_equal(a, b, equal_nan=True) and np.array_equal(sa, sb), name


@pytest.mark.parametrize("family", FAMILIES)
def test_one_and_two_threads_give_identical_results(family):
    n = 3 * bar.PARALLEL_THRESHOLD + 17
    c = random_family_cases(family, np.random.default_rng(41), n)
    c["volatility"][::97] = NAN   # some failed rows too
    for measures in (ALL, [1]):   # both above the threshold: n rows x evaluations per row
        a, sa, na = run(family, c, measures, threads=1)
        b, sb, nb = run(family, c, measures, threads=2)
        assert na == nb == len(range(0, n, 97))
        assert np.array_equal(a, b, equal_nan=True) and np.array_equal(sa, sb)


@pytest.mark.parametrize("family", FAMILIES)
def test_measure_subsets_and_orders_equal_rows_of_the_full_computation(family):
    c = random_family_cases(family, np.random.default_rng(42), 70)
    full = priced(family, c)
    for measures in ([3], [10, 1], [2, 2, 9], [7, 6, 5, 4]):
        out = priced(family, c, measures)
        for j, code in enumerate(measures):
            assert np.array_equal(out[j], full[code - 1]), (measures, code)
    wide = np.full((3, 100), -1.0)
    out, status, _ = run(family, c, [1, 5, 2], out=wide[:, 10:80])
    assert np.array_equal(wide[:, 10:80], full[[0, 4, 1]]) and (wide[:, :10] == -1).all() and (wide[:, 80:] == -1).all()
    assert run(family, c, [])[0].shape == (0, 70)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_row_alone_equals_the_row_in_a_batch(family):
    """The server prices one trade as a batch of 1: the same numbers as in any batch."""
    c = random_family_cases(family, np.random.default_rng(43), 45)
    out = priced(family, c)
    for i in (0, 7, 31, 32, 44):
        assert_same_row(f"row {i} alone", priced(family, row(c, i))[:, 0], out[:, i])
    assert_same_row("rows 30..44 alone", priced(family, {k: np.asarray(v)[30:45] for k, v in c.items()}), out[:, 30:45])


MP_PRICE = {"barrier": mp_barrier, "double": mp_double, "digital": mp_digital, "touch": mp_touch}


@pytest.mark.parametrize("family", FAMILIES)
def test_black76_carry_q_equal_r(family):
    """The server calls BSM kernels with dividend_yield = rate for futures (cost of carry 0)."""
    c = random_family_cases(family, np.random.default_rng(44), 50)
    c["dividend_yield"] = c["rate"].copy()
    out = priced(family, c)
    assert np.isfinite(out).all()
    scale = value_scale(family, c)
    for i in (3, 17, 41):
        exact = MP_PRICE[family](*(c[k][i] for k in names(family)))
        assert abs(out[0, i] - float(exact)) <= 1e-13 * abs(float(exact)) + 1e-14 * scale[i], (i, out[0, i], exact)


@pytest.mark.parametrize("family", FAMILIES)
def test_argument_errors_name_the_argument(family):
    c = random_family_cases(family, np.random.default_rng(45), 4)
    ints, floats = COLUMNS[family]
    args = ([np.ascontiguousarray(c[k], np.int32) for k in ints] + [np.ascontiguousarray(c[k], float) for k in floats])
    entry = ENTRY[family]
    status = np.empty(4, dtype=np.int32)
    with pytest.raises(ValueError, match="not a Measure code"):
        entry(*args, np.array([11], np.int32), np.empty((1, 4)), status, 1)
    with pytest.raises(ValueError, match="not a Measure code"):
        entry(*args, np.array([0], np.int32), np.empty((1, 4)), status, 1)
    with pytest.raises(ValueError, match="out has shape"):
        entry(*args, ALL, np.empty((10, 3)), status, 1)
    with pytest.raises(ValueError, match="must not overlap"):
        entry(*args, np.array([1, 2], np.int32), np.lib.stride_tricks.as_strided(np.empty(8), (2, 4), (8, 8)), status, 1)
    for j, name in enumerate(ints + floats):
        bad = list(args)
        bad[j] = bad[j][:3].copy()
        with pytest.raises(ValueError, match=f"{name} has length 3"):
            entry(*bad, ALL, np.empty((10, 4)), status, 1)
    empty = [a[:0] for a in args]
    assert entry(*empty, ALL, np.empty((10, 0)), np.empty(0, np.int32), 1) == 0


def test_module_exports():
    assert bar.MEASURES == tuple(range(1, 11))
    methods = {"analytic", "finite_difference", "tree_grid", "monte_carlo_crn", "pathwise", "likelihood_ratio"}
    assert set(bar.GREEK_METHODS) == set(range(2, 11)) and set(bar.GREEK_METHODS.values()) == {"finite_difference"}
    assert set(bar.DIGITAL_GREEK_METHODS) == set(range(2, 11)) and set(bar.DIGITAL_GREEK_METHODS.values()) == {"analytic"}
    assert set(bar.GREEK_METHODS_BY_ENTRY) == {"barrier_price_batch", "double_barrier_price_batch",
                                                "digital_price_batch", "touch_price_batch"}
    for entry, table in bar.GREEK_METHODS_BY_ENTRY.items():
        assert hasattr(bar, entry) and set(table.values()) <= methods
    assert bar.PARALLEL_THRESHOLD >= 1 and bar.max_threads() >= 1


# --------------------------------------------------------------- spot at the barrier: touched
# ext/pg_barrier.h, note 3: a barrier equal to spot is touched now. Checked by identities
# (a touched knock-in is the vanilla, a knock-out its rebate, a one-touch its cash or its
# present value) and as the limit of the formulas, and QuantLib's, as the spot moves onto the
# barrier under continuous monitoring (QuantLib itself refuses a touched barrier).
GREEK_TOL = {2: (1e-6, 1e-9), 3: (1e-4, 1e-8), 4: (1e-6, 1e-8), 5: (1e-6, 1e-8), 6: (1e-6, 1e-8),
             7: (1e-6, 1e-8), 8: (1e-4, 1e-7), 9: (1e-4, 1e-6), 10: (1e-4, 1e-7)}


def _touched(c, key="barrier"):
    c = dict(c)
    c[key] = c["spot"].copy()
    return c


def _assert_knock_in_is_the_vanilla(label, c, out, knock_in):
    """The knock-in rows of ``out`` (all measures) are the European's: its price to 1e-12, its
    Greeks (by the kernel's differences) to GREEK_TOL."""
    van = vanilla(c)
    assert_close(f"{label} price", out[0, knock_in], van[0, knock_in], 1e-12, 1e-12)
    for j, m in enumerate(ALL[1:], start=1):
        rtol, atol = GREEK_TOL[int(m)]
        assert_close(f"{label} measure {m}", out[j, knock_in], van[j, knock_in], rtol,
                     atol * np.maximum(c["spot"][knock_in], 1.0))


def _assert_touched_barrier_at_expiry(c, out, knock_in):
    """Price and delta at T = 0 of touched rows: a knock-in's payoff, a knock-out's rebate."""
    phi = np.where(c["option_type"] == PUT, -1.0, 1.0)
    intrinsic = np.maximum(phi * (c["spot"] - c["strike"]), 0.0)
    np.testing.assert_array_equal(out[0], np.where(knock_in, intrinsic, c["rebate"]))
    slope = np.where(phi * (c["spot"] - c["strike"]) > 0, phi, 0.0)
    np.testing.assert_array_equal(out[1], np.where(knock_in, slope, 0.0))


def _assert_touch_pays_now(c, out):
    """Touched rows: a one-touch pays Q now (at hit) or Q DF (at expiry: rho -T Q DF, theta
    r Q DF, nothing else), a no-touch nothing."""
    df = np.exp(-c["rate"] * c["time"])
    one = c["touch_type"] == bar.ONE_TOUCH
    at_hit = one & (c["payment"] == bar.AT_HIT)
    at_expiry = one & (c["payment"] == bar.AT_EXPIRY)
    np.testing.assert_array_equal(out[0, at_hit], c["cash"][at_hit])
    assert_close("one-touch at expiry", out[0, at_expiry], (c["cash"] * df)[at_expiry], 1e-15, 0.0)
    np.testing.assert_array_equal(out[:, ~one], 0.0)
    np.testing.assert_array_equal(out[1:, at_hit], 0.0)
    qdf = (c["cash"] * df)[at_expiry]
    assert_close("rho", out[5, at_expiry], -c["time"][at_expiry] * qdf, 1e-7, 1e-12)
    assert_close("theta", out[4, at_expiry], c["rate"][at_expiry] * qdf, 1e-6, 1e-10)
    for j in (1, 2, 3, 6, 7, 8, 9):
        np.testing.assert_allclose(out[j, at_expiry], 0.0, atol=1e-9)


@pytest.mark.parametrize("monitoring", [0.0, 1 / 52])
def test_a_touched_barrier_knock_in_is_the_vanilla_and_a_knock_out_its_rebate(monitoring):
    c = _touched(barrier_cases(np.random.default_rng(9101), 400))
    c["monitoring_interval"] = np.full(400, monitoring)
    out = priced("barrier", c)
    knock_in = np.isin(c["barrier_type"], (bar.DOWN_IN, bar.UP_IN))
    _assert_knock_in_is_the_vanilla("touched knock-in", c, out, knock_in)
    np.testing.assert_array_equal(out[0, ~knock_in], c["rebate"][~knock_in])
    np.testing.assert_array_equal(out[1:, ~knock_in], 0.0)


def test_a_touched_barrier_at_expiry():
    c = _touched(barrier_cases(np.random.default_rng(9102), 64))
    c["time"] = np.zeros(64)
    out = priced("barrier", c)
    _assert_touched_barrier_at_expiry(c, out, np.isin(c["barrier_type"], (bar.DOWN_IN, bar.UP_IN)))


def _ql_barrier(r, spot):
    today = ql.Date(15, 1, 2026)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    expiry = today + int(round(r["time"] * 365))
    t = dc.yearFraction(today, expiry)
    kind = {bar.DOWN_IN: ql.Barrier.DownIn, bar.DOWN_OUT: ql.Barrier.DownOut, bar.UP_IN: ql.Barrier.UpIn,
            bar.UP_OUT: ql.Barrier.UpOut}[int(r["barrier_type"])]
    payoff = ql.PlainVanillaPayoff(ql.Option.Call if r["option_type"] == CALL else ql.Option.Put, float(r["strike"]))
    option = ql.BarrierOption(kind, float(r["barrier"]), float(r["rebate"]), payoff, ql.EuropeanExercise(expiry))
    flat = lambda x: ql.YieldTermStructureHandle(ql.FlatForward(today, float(x), dc))  # noqa: E731
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(spot)), flat(r["dividend_yield"]), flat(r["rate"]),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), float(r["volatility"]), dc)))
    option.setPricingEngine(ql.AnalyticBarrierEngine(process))
    return option.NPV(), t


def test_touched_is_the_limit_of_the_live_formula_and_of_quantlib():
    """Continuous monitoring: the price at spot = H is the limit of the price as spot moves
    onto H from the live side (ours, and QuantLib's AnalyticBarrierEngine, which refuses
    spot = H itself)."""
    c = _touched(barrier_cases(np.random.default_rng(9103), 24))
    c["rebate"] = np.where(has_lambda(c), c["rebate"], 0.0)
    touched = priced("barrier", c, [1])[0]
    down = c["barrier_type"] <= bar.DOWN_OUT
    for eps in (1e-6, 1e-9):
        near = dict(c, spot=c["barrier"] * np.where(down, 1 + eps, 1 - eps))
        live = priced("barrier", near, [1])[0]
        assert_close(f"limit {eps}", live, touched, 0.0, 50 * eps * c["barrier"])
    for i in range(len(touched)):
        r = row(c, i)
        r["time"] = round(r["time"] * 365) / 365  # QuantLib's dates: whole days
        ours = priced("barrier", {k: np.atleast_1d(v) for k, v in r.items()}, [1])[0, 0]
        spot = r["barrier"] * (1 + 1e-9 if down[i] else 1 - 1e-9)
        theirs, _ = _ql_barrier(r, spot)
        assert abs(ours - theirs) <= 1e-6 * max(1.0, r["barrier"]), (i, r, ours, theirs)


def test_a_touched_double_barrier_knock_in_is_the_vanilla_and_a_knock_out_zero():
    c = double_cases(np.random.default_rng(9104), 200)
    for key in ("lower_barrier", "upper_barrier"):
        t = _touched(c, key)
        out = priced("double", t)
        knock_in = t["knock"] == bar.KNOCK_IN
        _assert_knock_in_is_the_vanilla(f"{key}: touched knock-in", t, out, knock_in)
        np.testing.assert_array_equal(out[:, ~knock_in], 0.0)
        # the limit from inside the corridor
        eps = 1e-9
        near = dict(t, spot=t[key] * (1 + eps if key == "lower_barrier" else 1 - eps))
        live = priced("double", near, [1])[0]
        assert_close(f"{key}: limit", live, out[0], 0.0, 1e-6 * t["spot"])


def test_a_touched_one_touch_pays_now_and_a_no_touch_nothing():
    c = _touched(touch_cases(np.random.default_rng(9105), 300))
    _assert_touch_pays_now(c, priced("touch", c))


# --------------------------------------------------------------- spot beyond the barrier
# ext/pg_barrier.h, note 3: a spot beyond a barrier is refused (a wrong type or level), unless
# the call says beyond_touched (the spot is a scenario's move of the trade's own, which crossed
# the barrier): then the row is touched, with the values and Greeks of a row at the barrier.
def _beyond(c, key, down, rng):
    """c with each row's spot moved beyond its barrier ``key`` (down rows below it, up rows
    above), by 0.1% to 50%."""
    c = dict(c)
    dist = np.exp(rng.uniform(math.log(1e-3), math.log(0.5), np.asarray(c["spot"]).size))
    c["spot"] = c[key] * np.exp(np.where(down, -dist, dist))
    return c


@pytest.mark.parametrize("monitoring", [0.0, 1 / 52])
def test_a_spot_beyond_the_barrier_is_touched_with_beyond_touched_and_refused_without(monitoring):
    rng = np.random.default_rng(9201)
    c = barrier_cases(rng, 400)
    c["monitoring_interval"] = np.full(400, monitoring)
    c = _beyond(c, "barrier", c["barrier_type"] <= bar.DOWN_OUT, rng)
    out, status, nbad = run("barrier", c)
    assert nbad == 400 and (status == pgs.BAD_BARRIER).all() and np.isnan(out).all()
    out = priced("barrier", c, beyond_touched=True)
    knock_in = np.isin(c["barrier_type"], (bar.DOWN_IN, bar.UP_IN))
    _assert_knock_in_is_the_vanilla("knock-in beyond", c, out, knock_in)
    np.testing.assert_array_equal(out[0, ~knock_in], c["rebate"][~knock_in])
    np.testing.assert_array_equal(out[1:, ~knock_in], 0.0)
    # at expiry: the payoff of the touched state
    c["time"] = np.zeros(400)
    _assert_touched_barrier_at_expiry(c, priced("barrier", c, [1, 2], beyond_touched=True), knock_in)


def test_beyond_touched_changes_no_row_on_the_live_side_or_at_the_barrier():
    """The flag only lets a spot beyond a barrier in: live and touched rows keep their bits."""
    rng = np.random.default_rng(9202)
    for family, cases in (("barrier", barrier_cases(rng, 100)), ("double", double_cases(rng, 100)),
                          ("touch", touch_cases(rng, 100))):
        key = "lower_barrier" if family == "double" else "barrier"
        cases[key][::3] = cases["spot"][::3]   # some rows touched (at the barrier)
        np.testing.assert_array_equal(priced(family, cases, beyond_touched=True), priced(family, cases))


def test_a_spot_outside_a_double_barrier_is_touched_with_beyond_touched_and_refused_without():
    rng = np.random.default_rng(9203)
    c = double_cases(rng, 200)
    for key, down, bit in (("lower_barrier", True, pgs.BAD_BARRIER), ("upper_barrier", False, pgs.BAD_UPPER_BARRIER)):
        t = _beyond(c, key, down, rng)
        out, status, nbad = run("double", t)
        assert nbad == 200 and (status == bit).all() and np.isnan(out).all()
        out = priced("double", t, beyond_touched=True)
        knock_in = t["knock"] == bar.KNOCK_IN
        _assert_knock_in_is_the_vanilla(f"{key}: knock-in beyond", t, out, knock_in)
        np.testing.assert_array_equal(out[:, ~knock_in], 0.0)
    # a bad corridor (U <= L) stays refused whatever the flag
    bad = dict(c, upper_barrier=c["lower_barrier"] * 0.9)
    _, status, _ = run("double", bad, beyond_touched=True)
    assert (status & pgs.BAD_UPPER_BARRIER).all()


def test_a_spot_beyond_a_touch_barrier_pays_now_and_a_no_touch_nothing_with_beyond_touched():
    rng = np.random.default_rng(9204)
    c = touch_cases(rng, 300)
    c = _beyond(c, "barrier", c["direction"] == bar.DOWN, rng)
    out, status, nbad = run("touch", c)
    assert nbad == 300 and (status == pgs.BAD_BARRIER).all()
    _assert_touch_pays_now(c, priced("touch", c, beyond_touched=True))
