"""pricegrid.ext.surfaces: Black vols and total variances of grid, SVI and SABR surfaces.

References and tolerances (eps = 2.2e-16):

* QuantLib >= 1.41:
  - STRIKE grid against ``BlackVarianceSurface`` (Bilinear, ``ConstantExtrapolation`` on
    both strike sides, extrapolation enabled) on 200 random surfaces (1-10 expiries,
    2-15 strikes, vols 5%-80%) at thousands of points covering every region: before T_1,
    between and on the expiries, after T_n, inside and beyond the strike range, the nodes
    themselves. Expiries are days/365 with ``Actual365Fixed``, so both see the same times.
    The two compute the same bilinear total variance (QuantLib prepends a zero row at
    t = 0, clamps the strike and scales by t/T_n beyond T_n, which is our flat vol), so
    only rounding separates them: vols and variances to 1e-12 relative (observed a few eps).
    At t = 0 QuantLib evaluates at t = 1e-5, inside our flat-vol region: the same vol.
  - MONEYNESS and LOG_MONEYNESS grids against the same QuantLib surface built on the
    strikes F x_j (F e^x_j) for one forward F: 1e-12 relative.
  - SVI slices against ``SviSmileSection(T, F, [a, b, sigma, rho, m])`` (QuantLib's order
    of the raw parameters) at the slice's expiry: 1e-13 relative (the same closed form).
  - SABR slices against ``sabrVolatility(K, F, T, alpha, beta, nu, rho)`` on 5,000 random
    cases (F 0.5%-10% and 20-200, K/F in [0.3, 3], a fifth within 1e-9..1e-3 of the money,
    T 0.05-10, beta [0, 1], |rho| < 0.95, nu 0-1.5): 1e-12 relative where
    1e-3 <= |z| and z > -10. Elsewhere QuantLib's own rounding is larger: it evaluates
    x(z) = ln((sqrt(1 - 2 rho z + z^2) + z - rho)/(1 - rho)) as written, which loses about
    eps/(|z| (1 - rho)) near the money (the log of a number near 1) and about
    eps z^2/(1 + rho) for large negative z (sqrt(B) + z cancels); the tolerance there adds
    4 times those terms, and a 50-digit mpmath evaluation of eq. (2.17a) is the reference
    that decides: ours within 1e-14 relative on every case, ATM included (observed ~2e-15).
    Where Hagan's expansion is negative (about 5% of these cases, large nu^2 T) QuantLib
    returns the negative number and we return NOT_FINITE.
* DELTA grids (forward call delta N(d1), premium-unadjusted; design note 3 of
  ext/surfaces.pyx): the inverse normal the conversion uses against scipy.special.ndtri on
  (1e-12, 1 - 1e-12), 1.5e-15 relative (read back exactly from the conversion at
  sd = 2^-60); the converted nodes k_ij against sd (sd/2 - ndtri(Delta)) within
  8 eps (sd^2/2 + sd |z|); the forward delta N(d1) of each converted strike at its node vol
  back to the node's delta, 1e-12 relative (deltas from 1e-12 to 1 - 1e-12, vols 1%-200%,
  T to 30 years; observed ~1e-14); the node vol at the node's own strike F e^k_ij, 1e-12
  relative (observed 4e-16: ln(F e^k / F) is k to rounding); the same slice as a
  LOG_MONEYNESS grid on its own k_ij, and the whole surface as a LOG_MONEYNESS grid on the
  union of all slices' k_ij (each slice's variances interpolated onto it), 1e-12 relative
  everywhere (between expiries and beyond the nodes included; observed 6e-16). QuantLib's
  ``BlackDeltaCalculator(Call, DeltaVolQuote.Fwd, ...)`` on 400 random cases: its
  ``deltaFromStrike`` at our strike gives back the delta to 1e-12 relative (observed
  3e-15); its
  ``strikeFromDelta`` agrees with ours to its inverse normal's accuracy (Acklam's
  algorithm without a refinement step, 1.15e-9 relative in N^-1: |ln K_ql/K| <=
  1.2e-9 sd |z| + 1e-14).
* Published: Gatheral & Jacquier (2014), "Arbitrage-free SVI volatility surfaces",
  Quantitative Finance 14(1), 59-71, sec. 3, Example 3.1 (arXiv:1204.0646, Example 3.1 and
  its figures of the smile and of g(k)): Axel Vogt's raw SVI slice (a, b, rho, m, sigma) =
  (-0.0410, 0.1331, 0.3060, 0.3586, 0.4153), T = 1, passes the parameter bounds yet has
  butterfly arbitrage: Durrleman's g(k) < 0 on an interval of positive k (ours: about
  0.64 < k < 1.26, min g = -0.0329 near k = 0.88). Hagan et al. (2002) eq. (2.18): the
  ATM vol alpha/F^(1-beta) (1 + [...] T); beta = 1, nu = 0 gives alpha flat.
* Identities: grid nodes reproduced bit for bit, continuity in K and T, flat extrapolation
  in strike and time as documented (design note 4 of ext/surfaces.pyx), total variance
  linear in T between expiries at fixed moneyness, w(T = 0) = 0.
* Kernel contract: per-point status bits with NaN outputs (bad T, K, F; bad surfaces;
  overflow), surface checks (and the domain's validate() agreeing with them entry by
  entry), thread count, order and batch position not changing any bit, argument errors.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import QuantLib as ql

from scipy import special

from pricegrid.ext import status as pgs
from pricegrid.ext import surfaces as sf
from pricegrid.server.domain.surfaces import GridSurface, SabrSurface, StrikeAxis, SviSurface
from pricegrid.server.pricers import surfaces as pricer

EPS = np.finfo(float).eps
BOTH = np.array([sf.VOL, sf.TOTAL_VARIANCE], dtype=np.int32)
TODAY = ql.Date(15, ql.January, 2025)
DC = ql.Actual365Fixed()
VOGT = np.array([-0.0410, 0.1331, 0.3060, 0.3586, 0.4153])
NONE = np.empty(0)


# --------------------------------------------------------------------------- helpers
def evaluate(kind, axis, expiries, nodes, values, T, K, F, measures=BOTH, threads=1):
    """(out (k, m), status, nbad)."""
    T = np.ascontiguousarray(T, dtype=np.float64)
    out = np.empty((len(measures), T.shape[0]))
    status = np.empty(T.shape[0], dtype=np.int32)
    nbad = sf.evaluate(kind, axis, np.ascontiguousarray(expiries, dtype=np.float64),
                       np.ascontiguousarray(nodes, dtype=np.float64),
                       _values(expiries, values),
                       T, np.ascontiguousarray(K, dtype=np.float64),
                       np.ascontiguousarray(F, dtype=np.float64).reshape(-1),
                       np.asarray(measures, dtype=np.int32), out, status, threads)
    return out, status, nbad


def _values(expiries, values):
    v = np.ascontiguousarray(values, dtype=np.float64)
    return v if v.ndim == 2 else v.reshape(len(expiries), -1)


def clean(*args, **kwargs):
    out, status, nbad = evaluate(*args, **kwargs)
    assert nbad == 0 and not status.any(), status[status != 0][:5]
    return out


def random_grid(rng, n=None, p=None):
    """(days, T, strikes, vols (n, p))."""
    n = int(rng.integers(1, 11)) if n is None else n
    p = int(rng.integers(2, 16)) if p is None else p
    days = np.cumsum(rng.integers(7, 400, n))
    strikes = np.cumsum(rng.uniform(1.0, 20.0, p)) + 40.0
    return days, days / 365.0, strikes, rng.uniform(0.05, 0.8, (n, p))


def random_delta_grid(rng, n=None, p=None):
    """(t, deltas (decreasing, in (0, 1)), vols (n, p)): a skewed smile in z = N^-1(delta)
    per slice, redrawn until the converted nodes increase along every slice."""
    n = int(rng.integers(1, 9)) if n is None else n
    p = int(rng.integers(2, 10)) if p is None else p
    t = np.cumsum(rng.integers(7, 400, n)) / 365.0
    while True:
        deltas = np.sort(rng.choice(np.arange(1, 100), p, replace=False))[::-1] / 100.0
        z = special.ndtri(deltas)
        atm = rng.uniform(0.05, 0.6, (n, 1))
        vols = atm * (1.0 + rng.uniform(-0.15, 0.15, (n, 1)) * z + rng.uniform(0.0, 0.1, (n, 1)) * z ** 2)
        es, ns, vs = np.empty(n, np.int32), np.empty(p, np.int32), np.empty((n, p), np.int32)
        if np.all(vols > 0) and sf.validate(sf.GRID, sf.DELTA, t, deltas, vols, es, ns, vs) == 0:
            return t, deltas, vols


def converted(t, deltas, vols):
    """The kernel's ln(K/F) of every node (n, p)."""
    out = np.empty(vols.shape)
    assert sf.delta_log_moneyness(t, deltas, np.ascontiguousarray(vols), out) == 0
    return out


def quantlib_grid(days, strikes, vols):
    ql.Settings.instance().evaluationDate = TODAY
    n, p = vols.shape
    matrix = ql.Matrix(p, n)
    for i in range(n):
        for j in range(p):
            matrix[j][i] = float(vols[i, j])
    const = ql.BlackVarianceSurface.ConstantExtrapolation
    surface = ql.BlackVarianceSurface(TODAY, ql.NullCalendar(), [TODAY + int(d) for d in days],
                                      [float(k) for k in strikes], matrix, DC, const, const)
    surface.setInterpolation("bilinear")
    surface.enableExtrapolation()
    return surface


def grid_points(rng, t, strikes, m=40):
    """(T, K): random points over [0, 1.3 T_n] x [0.7 K_1, 1.3 K_p], plus every node and t = 0."""
    T = rng.uniform(0.0, 1.3 * t[-1], m)
    K = rng.uniform(0.7 * strikes[0], 1.3 * strikes[-1], m)
    tt, kk = np.meshgrid(t, strikes, indexing="ij")
    T = np.concatenate((T, tt.ravel(), [0.0, 0.0], rng.choice(t, 10), rng.uniform(0, 1.3 * t[-1], 10)))
    K = np.concatenate((K, kk.ravel(), [strikes[0], 1.5 * strikes[-1]], rng.uniform(0.5, 1.5, 10) * strikes[-1],
                        rng.choice(strikes, 10)))
    return T, K


def random_svi(rng, n):
    """n raw SVI slices inside the bounds, total variance rising with the slice."""
    b = rng.uniform(0.01, 0.4, n)
    rho = rng.uniform(-0.9, 0.9, n)
    sigma = rng.uniform(0.05, 0.8, n)
    m = rng.uniform(-0.3, 0.3, n)
    a = -b * sigma * np.sqrt(1 - rho ** 2) + np.cumsum(rng.uniform(0.005, 0.05, n))
    return np.column_stack((a, b, rho, m, sigma))


def svi_w(params, k):
    a, b, rho, m, sigma = params
    return a + b * (rho * (k - m) + np.sqrt((k - m) ** 2 + sigma ** 2))


def random_sabr(rng, n):
    return np.column_stack((rng.uniform(0.05, 0.6, n), rng.uniform(0.0, 1.0, n),
                            rng.uniform(-0.95, 0.95, n), rng.uniform(0.0, 1.5, n)))


def hagan_mp(K, F, T, alpha, beta, rho, nu, dps=50):
    """Hagan et al. (2002) eq. (2.17a)/(2.18) in 50-digit arithmetic (independent reference)."""
    with mpmath.workdps(dps):
        K, F, T, alpha, beta, rho, nu = map(mpmath.mpf, (K, F, T, alpha, beta, rho, nu))
        omb = 1 - beta
        L = mpmath.log(F / K)
        A = (F * K) ** (omb / 2)
        corr = 1 + T * (omb ** 2 * alpha ** 2 / (24 * A ** 2) + rho * beta * nu * alpha / (4 * A)
                        + (2 - 3 * rho ** 2) * nu ** 2 / 24)
        D = A * (1 + omb ** 2 * L ** 2 / 24 + omb ** 4 * L ** 4 / 1920)
        z = nu / alpha * A * L
        if z == 0:
            zx = mpmath.mpf(1)
        else:
            zx = z / mpmath.log((mpmath.sqrt(1 - 2 * rho * z + z * z) + z - rho) / (1 - rho))
        return float(alpha / D * zx * corr)


# --------------------------------------------------------------------------- QuantLib
def test_strike_grid_matches_quantlib_black_variance_surface():
    """200 random surfaces: vols and total variances against BlackVarianceSurface."""
    rng = np.random.default_rng(1)
    points = 0
    for _ in range(200):
        days, t, strikes, vols = random_grid(rng)
        surface = quantlib_grid(days, strikes, vols)
        T, K = grid_points(rng, t, strikes)
        out = clean(sf.GRID, sf.STRIKE, t, strikes, vols, T, K, [np.nan])  # a STRIKE grid never reads F
        ref_vol = np.array([surface.blackVol(float(a), float(b)) for a, b in zip(T, K)])
        ref_var = np.array([surface.blackVariance(float(a), float(b)) for a, b in zip(T, K)])
        np.testing.assert_allclose(out[0], ref_vol, rtol=1e-12, atol=0)
        np.testing.assert_allclose(out[1], ref_var, rtol=1e-12, atol=0)
        points += T.size
    assert points > 10_000


@pytest.mark.parametrize("axis", [sf.MONEYNESS, sf.LOG_MONEYNESS])
def test_moneyness_grids_match_quantlib_on_scaled_strikes(axis):
    """A moneyness grid at forward F is QuantLib's strike grid on the strikes F x_j; a
    log-moneyness grid is QuantLib's grid read at ln(K/F) on the nodes x_j."""
    rng = np.random.default_rng(2 + axis)
    for _ in range(60):
        days, t, _, vols = random_grid(rng)
        x = np.sort(rng.choice(np.arange(-60, 61), vols.shape[1], replace=False)) / 100.0
        nodes = 1.0 + x if axis == sf.MONEYNESS else x
        F = float(rng.uniform(20.0, 200.0))
        strikes = F * nodes if axis == sf.MONEYNESS else F * np.exp(nodes)
        T, K = grid_points(rng, t, strikes)
        out = clean(sf.GRID, axis, t, nodes, vols, T, K, [F])
        if axis == sf.MONEYNESS:  # linear in K/F at a fixed F is linear in K
            surface = quantlib_grid(days, strikes, vols)
            ref = np.array([surface.blackVol(float(a), float(b)) for a, b in zip(T, K)])
        else:  # linear in ln(K/F): QuantLib's rule with ln(K/F) for its strike axis
            surface = quantlib_grid(days, nodes, vols)
            ref = np.array([surface.blackVol(float(a), math.log(b / F)) for a, b in zip(T, K)])
        np.testing.assert_allclose(out[0], ref, rtol=1e-12, atol=0)


def test_svi_slices_match_quantlib_svi_smile_section():
    rng = np.random.default_rng(5)
    for _ in range(200):
        params = random_svi(rng, 1)[0]
        T = float(rng.uniform(0.05, 5.0))
        F = float(rng.uniform(10.0, 300.0))
        K = F * np.exp(rng.uniform(-2.0, 2.0, 30))
        a, b, rho, m, sigma = params
        section = ql.SviSmileSection(T, F, [a, b, sigma, rho, m])
        out = clean(sf.SVI, 0, [T], NONE, params, np.full(K.size, T), K, [F])
        ref = np.array([section.volatility(float(k)) for k in K])
        np.testing.assert_allclose(out[0], ref, rtol=1e-13, atol=0)
        np.testing.assert_allclose(out[1], [section.variance(float(k)) for k in K], rtol=1e-13, atol=0)


def test_sabr_matches_quantlib_and_50_digit_hagan():
    """5,000 random cases: ql.sabrVolatility (1e-12 away from the money, see the module note)
    and a 50-digit evaluation of eq. (2.17a) (1e-14 everywhere, ATM and near-ATM included)."""
    rng = np.random.default_rng(6)
    n = 5000
    params = random_sabr(rng, n)
    F = np.where(rng.random(n) < 0.5, rng.uniform(0.005, 0.1, n), rng.uniform(20.0, 200.0, n))
    moneyness = np.exp(rng.uniform(np.log(0.3), np.log(3.0), n))
    near = rng.random(n) < 0.2  # a fifth of the cases within 1e-9..1e-3 of the money, some exactly at it
    moneyness[near] = 1.0 + rng.choice([-1, 1], near.sum()) * 10.0 ** rng.uniform(-9, -3, near.sum())
    moneyness[:50] = 1.0
    K = F * moneyness
    T = rng.uniform(0.05, 10.0, n)
    ours = np.empty(n)
    status = np.empty(n, dtype=np.int32)
    for i in range(n):
        out, st, _ = evaluate(sf.SABR, 0, [T[i]], NONE, params[i], [T[i]], [K[i]], [F[i]], [sf.VOL])
        ours[i], status[i] = out[0, 0], st[0]
    alpha, beta, rho, nu = params.T
    ref = np.array([ql.sabrVolatility(float(K[i]), float(F[i]), float(T[i]), float(alpha[i]), float(beta[i]),
                                      float(nu[i]), float(rho[i])) for i in range(n)])
    # where Hagan's expansion goes negative (large nu^2 T against a negative rho beta nu alpha
    # term) QuantLib returns the negative number and we say NOT_FINITE; the others are compared
    assert np.array_equal(status != 0, ref < 0) and np.all(status[status != 0] == pgs.NOT_FINITE)
    assert np.all(np.isnan(ours[status != 0])) and (status == 0).sum() > 4500
    keep = status == 0
    ours, ref, params, F, K, T = ours[keep], ref[keep], params[keep], F[keep], K[keep], T[keep]
    alpha, beta, rho, nu = params.T
    n = ours.size
    z = nu / alpha * (F * K) ** ((1 - beta) / 2) * np.log(F / K)
    far = (np.abs(z) >= 1e-3) & (z > -10.0)
    assert far.sum() > 2500 and (~far).sum() > 500
    np.testing.assert_allclose(ours[far], ref[far], rtol=1e-12, atol=0)
    with np.errstate(divide="ignore"):
        tol = 1e-12 + 4 * EPS / (np.abs(z) * (1 - rho)) + np.where(z < 0, 4 * EPS * z * z / (1 + rho), 0.0)
    assert np.all(np.abs(ours - ref) <= tol * np.abs(ref))
    exact = np.array([hagan_mp(K[i], F[i], T[i], *params[i]) for i in range(0, n, 5)])
    np.testing.assert_allclose(ours[::5], exact, rtol=1e-14, atol=0)
    exact_near = np.array([hagan_mp(K[i], F[i], T[i], *params[i]) for i in np.flatnonzero(~far)[:300]])
    np.testing.assert_allclose(ours[np.flatnonzero(~far)[:300]], exact_near, rtol=1e-14, atol=0)


def test_sabr_published_limits():
    """Hagan et al. (2002) eq. (2.18): ATM vol alpha/F^(1-beta) (1 + [...] T); and beta = 1,
    nu = 0 is Black's model with vol alpha at every strike."""
    for alpha, beta, rho, nu, F, T in [(0.0305, 0.25, -0.11, 0.34, 0.0398, 1.0), (0.3, 0.5, 0.2, 0.8, 100.0, 2.5),
                                       (0.2, 0.0, -0.7, 1.2, 0.03, 10.0)]:
        atm = alpha / F ** (1 - beta) * (1 + T * ((1 - beta) ** 2 / 24 * alpha ** 2 / F ** (2 - 2 * beta)
                                                  + rho * beta * nu * alpha / (4 * F ** (1 - beta))
                                                  + (2 - 3 * rho ** 2) / 24 * nu ** 2))
        out = clean(sf.SABR, 0, [T], NONE, [alpha, beta, rho, nu], [T], [F], [F], [sf.VOL])
        assert out[0, 0] == pytest.approx(atm, rel=4 * EPS)
    K = np.array([0.5, 0.9, 1.0, 1.1, 3.0])
    out = clean(sf.SABR, 0, [1.0, 2.0], NONE, [[0.25, 1.0, 0.3, 0.0], [0.25, 1.0, -0.5, 0.0]],
                np.array([0.5, 1.0, 1.5, 2.0, 9.0]), K, [1.0], [sf.VOL])
    np.testing.assert_allclose(out[0], 0.25, rtol=2 * EPS)


def test_vogt_slice_has_butterfly_arbitrage():
    """Gatheral & Jacquier (2014), Example 3.1: within every parameter bound, yet g(k) < 0."""
    k = np.round(np.linspace(-1.5, 2.5, 4001), 12)
    out = np.empty((4, k.size))
    status = np.empty(k.size, dtype=np.int32)
    assert sf.svi_durrleman(VOGT, k, out, status) == 0
    g = out[3]
    negative = k[g < 0]
    assert negative.size and 0.6 < negative.min() < 0.7 and 1.2 < negative.max() < 1.3
    assert np.all(np.diff(np.flatnonzero(g < 0)) == 1)  # one interval
    assert g.min() == pytest.approx(-0.0329, abs=5e-4) and 0.85 < k[g.argmin()] < 0.92
    # the first slices of the surface checks say the same, per node
    surface = SviSurface("SPX-VOGT", "SPX", [1.0], [VOGT])
    assert surface.validate() == []
    found = pricer.butterfly_arbitrage(surface)
    assert found and {f.check for f in found} == {"durrleman"} and all(0.6 < f.at < 1.3 for f in found)
    # w, w', w'' against the closed form and finite differences
    np.testing.assert_allclose(out[0], svi_w(VOGT, k), rtol=1e-15, atol=1e-17)
    h = 1e-5
    wp, wm = svi_w(VOGT, k + h), svi_w(VOGT, k - h)
    np.testing.assert_allclose(out[1], (wp - wm) / (2 * h), atol=1e-9)
    np.testing.assert_allclose(out[2], (wp - 2 * out[0] + wm) / h ** 2, atol=1e-5)


def test_durrleman_g_matches_the_density_from_call_prices():
    """g(k) n(d_-)/sqrt(w) is the density of ln(K/F): compare with the second strike
    difference of undiscounted Black calls on the slice (F = 1)."""
    rng = np.random.default_rng(7)
    for params in (VOGT, *random_svi(rng, 5)):
        k = np.linspace(-1.0, 1.5, 251)
        out = np.empty((4, k.size))
        sf.svi_durrleman(np.ascontiguousarray(params), k, out, np.empty(k.size, np.int32))
        w, g = out[0], out[3]
        dm = -k / np.sqrt(w) - np.sqrt(w) / 2
        density_k = g / np.sqrt(2 * np.pi * w) * np.exp(-dm ** 2 / 2)
        h = 1e-4
        Ks = np.exp(np.concatenate((k - h, k, k + h)))
        ws = svi_w(params, np.log(Ks))
        calls = np.empty(Ks.size)
        assert sf.black_calls(np.array([1.0]), Ks, ws, calls, np.empty(Ks.size, np.int32)) == 0
        lo, mid, hi = calls.reshape(3, -1)
        K = np.exp(k)
        # d2C/dK2 on the k grid: (C(k+h) - 2C + C(k-h))/(K h)^2 - dC/dK /K ... use the chain rule
        dC = (hi - lo) / (2 * h)
        d2C = (hi - 2 * mid + lo) / h ** 2
        density_from_calls = (d2C - dC) / K  # K^2 C_KK = C_kk - C_k, density of ln K is K C_KK
        np.testing.assert_allclose(density_from_calls, density_k, atol=2e-6)


# --------------------------------------------------------------------------- identities
@pytest.mark.parametrize("axis", [sf.STRIKE, sf.MONEYNESS, sf.LOG_MONEYNESS])
def test_grid_nodes_reproduced_and_flat_extrapolation(axis):
    rng = np.random.default_rng(10 + axis)
    for _ in range(40):
        days, t, strikes, vols = random_grid(rng)
        nodes = strikes if axis == sf.STRIKE else (strikes / 100.0 if axis == sf.MONEYNESS else np.log(strikes / 100.0))
        F = 1.0 if axis == sf.STRIKE else 100.0
        n, p = vols.shape
        tt, jj = np.meshgrid(np.arange(n), np.arange(p), indexing="ij")
        K = strikes[jj.ravel()] if axis == sf.STRIKE else None
        if axis == sf.MONEYNESS:
            K = F * nodes[jj.ravel()]
            # K/F must give the node back exactly for a bitwise check
            ok = K / F == nodes[jj.ravel()]
        elif axis == sf.LOG_MONEYNESS:
            K = F * np.exp(nodes[jj.ravel()])
            ok = np.array([math.log(k / F) for k in K]) == nodes[jj.ravel()]  # glibc's log, as the kernel
        else:
            ok = np.ones(K.size, bool)
        out = clean(sf.GRID, axis, t, nodes, vols, t[tt.ravel()], K, [F])
        assert np.array_equal(out[0][ok], vols.ravel()[ok])
        np.testing.assert_allclose(out[0], vols.ravel(), rtol=1e-13)
        np.testing.assert_allclose(out[1], vols.ravel() ** 2 * t[tt.ravel()], rtol=1e-13)
        # flat in strike beyond the end nodes, flat vol before T_1 and after T_n
        lo, hi = (0.5 * strikes[0], 2.0 * strikes[-1])
        Kx = np.array([lo, hi]) if axis == sf.STRIKE else np.array([lo, hi]) * (F / 100.0)
        for T in (t[0], 0.3 * t[0], 0.0, t[-1], t[-1] * 1.7 + 1.0):
            out = clean(sf.GRID, axis, t, nodes, vols, [T, T], Kx, [F])
            row = 0 if T <= t[0] and not (T == t[-1]) else n - 1
            if T == t[0]:
                row = 0
            assert np.array_equal(out[0], vols[row, [0, -1]])
            np.testing.assert_allclose(out[1], vols[row, [0, -1]] ** 2 * T, rtol=2 * EPS, atol=0)


@pytest.mark.parametrize("kind", [sf.GRID, sf.SVI, sf.SABR])
def test_total_variance_linear_in_time_between_expiries(kind):
    """At fixed K/F (fixed K for the STRIKE grid): w(T) = (1 - l) w(T_i) + l w(T_i+1)."""
    rng = np.random.default_rng(20 + kind)
    for _ in range(30):
        n = int(rng.integers(2, 8))
        days, t, strikes, vols = random_grid(rng, n)
        if kind == sf.GRID:
            args, F = (sf.GRID, sf.LOG_MONEYNESS, t, np.sort(rng.uniform(-1, 1, strikes.size)), vols), 100.0
        elif kind == sf.SVI:
            args, F = (sf.SVI, 0, t, NONE, random_svi(rng, n)), 100.0
        else:
            args, F = (sf.SABR, 0, t, NONE, random_sabr(rng, n)), 0.03
        K = F * np.exp(rng.uniform(-1.2, 1.2, 20))
        i = rng.integers(0, n - 1, 20)
        lam = rng.uniform(0.0, 1.0, 20)
        T = t[i] + lam * (t[i + 1] - t[i])
        lam = (T - t[i]) / (t[i + 1] - t[i])
        w = clean(*args, T, K, [F], [sf.TOTAL_VARIANCE])[0]
        w0 = clean(*args, t[i], K, [F], [sf.TOTAL_VARIANCE])[0]
        w1 = clean(*args, t[i + 1], K, [F], [sf.TOTAL_VARIANCE])[0]
        np.testing.assert_allclose(w, (1 - lam) * w0 + lam * w1, rtol=1e-13)
        # flat vol outside: before T_1 and after T_n
        v = clean(*args, np.concatenate((t[0] * rng.uniform(0, 1, 20), [0.0] * 20, t[-1] + rng.uniform(0, 20, 20))),
                  np.tile(K, 3), [F], [sf.VOL])[0]
        np.testing.assert_allclose(v[:40], np.tile(clean(*args, np.full(20, t[0]), K, [F], [sf.VOL])[0], 2), rtol=1e-15)
        np.testing.assert_allclose(v[40:], clean(*args, np.full(20, t[-1]), K, [F], [sf.VOL])[0], rtol=1e-15)
        assert np.all(clean(*args, np.zeros(20), K, [F], [sf.TOTAL_VARIANCE])[0] == 0.0)


@pytest.mark.parametrize("n", [9, 12, 30])
def test_svi_with_more_than_eight_slices_is_the_two_slices_around_each_point(n):
    """A point's SVI vol reads only the two slices around its expiry (before T_1 the first
    two, from T_n on the last two), so a surface of n > 8 slices (slice parameters gathered
    per point) gives, bit for bit, what the two-slice surface around each point gives (one
    vector of slices, permuted), and both the raw SVI formula interpolated in T (1e-13)."""
    rng = np.random.default_rng(40 + n)
    t = np.cumsum(rng.integers(7, 200, n)) / 365.0
    params = random_svi(rng, n)
    m = 3000
    T = np.concatenate((rng.uniform(0.0, t[0], 100), rng.uniform(t[0], t[-1], m - 300), rng.choice(t, 100),
                        t[-1] + rng.uniform(0.0, 2.0, 100)))
    F = 100.0 * np.exp(rng.uniform(-0.2, 0.2, m))
    K = F * np.exp(rng.uniform(-1.0, 1.0, m))
    whole = clean(sf.SVI, 0, t, NONE, params, T, K, F)
    c = np.searchsorted(t, T, side="right")
    first = np.clip(c - 1, 0, n - 2)  # the two-slice surface of slices first, first + 1
    for i in np.unique(first):
        rows = np.flatnonzero(first == i)
        two = clean(sf.SVI, 0, t[i:i + 2], NONE, params[i:i + 2], T[rows], K[rows], F[rows])
        np.testing.assert_array_equal(two.view(np.int64), whole[:, rows].view(np.int64))
    k = np.log(K / F)
    s = np.array([(a + b * (r * (k - mm) + np.sqrt((k - mm) ** 2 + g ** 2))) / ti
                  for (a, b, r, mm, g), ti in zip(params, t)])  # (n, m) variance per unit time
    i0, i1 = np.clip(c - 1, 0, n - 1), np.clip(c, 0, n - 1)
    cols = np.arange(m)
    lam = np.where(i1 > i0, (T - t[i0]) / np.where(i1 > i0, t[i1] - t[i0], 1.0), 0.0)
    w = np.where((c > 0) & (c < n), (1 - lam) * t[i0] * s[i0, cols] + lam * t[i1] * s[i1, cols], s[i0, cols] * T)
    np.testing.assert_allclose(whole[1], w, rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(whole[0], np.where(T > 0, np.sqrt(w / np.where(T > 0, T, 1.0)), np.sqrt(s[0, cols])),
                               rtol=1e-13)


@pytest.mark.parametrize("kind", [sf.GRID, sf.SVI, sf.SABR])
def test_continuity_at_expiries_and_nodes(kind):
    rng = np.random.default_rng(30 + kind)
    for _ in range(30):
        n = int(rng.integers(2, 8))
        days, t, strikes, vols = random_grid(rng, n)
        args = ((sf.GRID, sf.STRIKE, t, strikes, vols) if kind == sf.GRID else
                (sf.SVI, 0, t, NONE, random_svi(rng, n)) if kind == sf.SVI else (sf.SABR, 0, t, NONE, random_sabr(rng, n)))
        K = rng.choice(strikes, 20) if kind == sf.GRID else 100.0 * np.exp(rng.uniform(-1, 1, 20))
        T = rng.choice(t, 20)
        at = clean(*args, T, K, [100.0])
        left = clean(*args, np.nextafter(T, 0.0), K, [100.0])
        # just left of T_i, w = (1 - l) w_i-1 + l w_i with 1 - l ~ eps: rounding of eps w_i-1,
        # which the vol sqrt(w/t) magnifies where it is small: 1e-13 absolute (vol and w units)
        np.testing.assert_allclose(left, at, rtol=1e-13, atol=1e-13)
        if kind == sf.GRID:  # across strike nodes, at any time
            T = rng.uniform(0, 1.2 * t[-1], 20)
            a = clean(*args, T, K, [1.0])
            b = clean(*args, T, np.nextafter(K, 0.0), [1.0])
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)  # the same rounding, in u


# --------------------------------------------------------------------------- delta grids
def test_the_delta_conversions_inverse_normal_matches_ndtri():
    """k = sd (sd/2 - z) at sd = 2^-60 gives z back exactly: z = 2^-61 - k 2^60 (powers of 2)."""
    rng = np.random.default_rng(80)
    tail = 10 ** rng.uniform(-12, np.log10(0.5), 3000)
    p = np.concatenate([rng.uniform(1e-12, 1 - 1e-12, 4000), tail, 1 - tail, [1e-12, 1 - 1e-12, 0.5, 0.025, 0.975]])
    p = np.unique(p)[::-1].copy()  # decreasing, distinct: valid delta nodes
    k = np.empty((1, p.size))
    assert sf.delta_log_moneyness(np.array([1.0]), p, np.full((1, p.size), 2.0 ** -60), k) == 0
    z = 2.0 ** -61 - k[0] * 2.0 ** 60
    ref = special.ndtri(p)
    assert z[p == 0.5][0] == 0.0
    nz = ref != 0
    assert np.max(np.abs(z[nz] / ref[nz] - 1)) < 1.5e-15


def test_delta_nodes_convert_and_give_their_delta_back():
    rng = np.random.default_rng(81)
    m = 3000
    tail = 10 ** rng.uniform(-12, np.log10(0.5), m)
    deltas = np.concatenate([tail[: m // 2], 1 - tail[m // 2:], rng.uniform(0.01, 0.99, m)])
    vols = 10 ** rng.uniform(-2, np.log10(2.0), deltas.size)
    T = 10 ** rng.uniform(-2.5, np.log10(30.0), deltas.size)
    k = np.array([converted(np.array([T[i]]), deltas[i:i + 1], vols[i:i + 1, None])[0, 0] for i in range(deltas.size)])
    sd = vols * np.sqrt(T)
    z = special.ndtri(deltas)
    assert np.all(np.abs(k - sd * (0.5 * sd - z)) <= 8 * EPS * (0.5 * sd * sd + sd * np.abs(z)))
    d1 = (-k + 0.5 * sd * sd) / sd
    back = np.where(deltas < 0.5, special.ndtr(d1), 1.0 - special.ndtr(-d1))
    np.testing.assert_allclose(back, deltas, rtol=1e-12, atol=0)


def test_delta_conversion_against_quantlib_black_delta_calculator():
    """Forward delta, premium-unadjusted: QuantLib's DeltaVolQuote.Fwd for a call."""
    rng = np.random.default_rng(82)
    worst_delta = 0.0
    for _ in range(400):
        spot = float(rng.uniform(0.5, 2000.0))
        T = float(rng.uniform(0.02, 10.0))
        r, q = rng.uniform(-0.02, 0.1, 2)
        d_disc, f_disc = math.exp(-r * T), math.exp(-q * T)
        vol = float(rng.uniform(0.03, 1.2))
        sd = vol * math.sqrt(T)
        delta = float(rng.uniform(0.01, 0.99))
        F = spot * f_disc / d_disc
        k = converted(np.array([T]), np.array([delta]), np.array([[vol]]))[0, 0]
        K = F * math.exp(k)
        calc = ql.BlackDeltaCalculator(ql.Option.Call, ql.DeltaVolQuote.Fwd, spot, d_disc, f_disc, sd)
        worst_delta = max(worst_delta, abs(calc.deltaFromStrike(K) / delta - 1))
        K_ql = calc.strikeFromDelta(delta)
        z = abs(special.ndtri(delta))
        assert abs(math.log(K_ql / K)) <= 1.2e-9 * sd * z + 1e-14, (spot, T, vol, delta, K, K_ql)
    assert worst_delta < 1e-12, worst_delta


def test_delta_grid_nodes_come_back_at_their_own_strikes():
    rng = np.random.default_rng(83)
    for _ in range(60):
        t, deltas, vols = random_delta_grid(rng)
        k = converted(t, deltas, vols)
        n, p = vols.shape
        F = float(rng.uniform(0.5, 500.0))
        T = np.repeat(t, p)
        out = clean(sf.GRID, sf.DELTA, t, deltas, vols, T, F * np.exp(k.ravel()), [F])
        np.testing.assert_allclose(out[0], vols.ravel(), rtol=1e-12, atol=0)
        np.testing.assert_allclose(out[1], vols.ravel() ** 2 * T, rtol=1e-12, atol=0)
        # flat vol beyond each slice's own end nodes
        lo, hi = F * np.exp(k[:, 0] - rng.uniform(0.01, 2.0, n)), F * np.exp(k[:, -1] + rng.uniform(0.01, 2.0, n))
        out = clean(sf.GRID, sf.DELTA, t, deltas, vols, np.concatenate((t, t)), np.concatenate((lo, hi)), [F])
        np.testing.assert_allclose(out[0], np.concatenate((vols[:, 0], vols[:, -1])), rtol=1e-15, atol=0)


def test_delta_grid_is_a_log_moneyness_grid_with_nodes_per_slice():
    rng = np.random.default_rng(84)
    for _ in range(60):
        t, deltas, vols = random_delta_grid(rng)
        n, p = vols.shape
        F = float(rng.uniform(0.5, 500.0))
        # each slice alone: a LOG_MONEYNESS grid on its own nodes, computed here with ndtri
        sd = vols * np.sqrt(t)[:, None]
        k_ref = sd * (0.5 * sd - special.ndtri(deltas))
        for i in range(n):
            K = F * np.exp(rng.uniform(k_ref[i, 0] - 0.5, k_ref[i, -1] + 0.5, 50))
            ours = clean(sf.GRID, sf.DELTA, t, deltas, vols, np.full(50, t[i]), K, [F])
            ref = clean(sf.GRID, sf.LOG_MONEYNESS, t[i:i + 1], k_ref[i], vols[i:i + 1], np.full(50, t[i]), K, [F])
            np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=0)
        # the whole surface: a LOG_MONEYNESS grid on the union of the slices' nodes
        k = converted(t, deltas, vols)
        union = np.unique(k)
        s = np.array([np.interp(union, k[i], vols[i] ** 2) for i in range(n)])
        T = np.concatenate((rng.uniform(0.0, 1.3 * t[-1], 400), np.repeat(t, 5)))
        K = F * np.exp(rng.uniform(union[0] - 0.5, union[-1] + 0.5, T.size))
        ours = clean(sf.GRID, sf.DELTA, t, deltas, vols, T, K, [F])
        ref = clean(sf.GRID, sf.LOG_MONEYNESS, t, union, np.sqrt(s), T, K, [F])
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=0)


def test_delta_grid_arbitrage_checks():
    rng = np.random.default_rng(85)
    t = np.array([0.25, 0.5, 1.0])
    deltas = np.array([0.9, 0.75, 0.5, 0.25, 0.1])
    flat = GridSurface("FX", "EURUSD", t, StrikeAxis.DELTA, deltas, np.full((3, 5), 0.1))
    assert flat.validate() == [] and pricer.calendar_arbitrage(flat) == [] and pricer.butterfly_arbitrage(flat) == []
    k = pricer.delta_log_moneyness(flat)
    assert np.array_equal(k, converted(t, deltas, np.full((3, 5), 0.1)))
    # calendar: the 6m slice's vols below the 3m slice's variance at every ln(K/F)
    low = np.full((3, 5), 0.1)
    low[1] = 0.06
    found = pricer.calendar_arbitrage(GridSurface("FX", "EURUSD", t, StrikeAxis.DELTA, deltas, low))
    assert found and {f.expiry for f in found} == {1} and all(f.value < 0 for f in found)
    # the same points as a LOG_MONEYNESS grid on the union of the two slices' nodes would check
    kl = pricer.delta_log_moneyness(GridSurface("FX", "EURUSD", t, StrikeAxis.DELTA, deltas, low))
    union = np.unique(kl[:2])
    s = np.array([np.interp(union, kl[i], low[i] ** 2) for i in range(2)])
    as_grid = pricer.calendar_arbitrage(GridSurface("U", "EURUSD", t[:2], StrikeAxis.LOG_MONEYNESS, union, np.sqrt(s)))
    assert sorted(f.at for f in found) == sorted(f.at for f in as_grid)
    np.testing.assert_allclose(sorted(f.value for f in found), sorted(f.value for f in as_grid), rtol=1e-12)
    # butterfly on one slice: the findings of the same slice as a LOG_MONEYNESS grid on its k
    for _ in range(30):
        t1, d1, v1 = random_delta_grid(rng, 1, int(rng.integers(3, 10)))
        v1 = v1.copy()
        v1[0, rng.integers(1, v1.shape[1] - 1)] *= rng.uniform(1.0, 1.6)  # a spike, often arbitrage
        g = GridSurface("D", "U", t1, StrikeAxis.DELTA, d1, v1)
        if g.validate():
            continue
        k1 = pricer.delta_log_moneyness(g)
        ours = pricer.butterfly_arbitrage(g)
        ref = pricer.butterfly_arbitrage(GridSurface("L", "U", t1, StrikeAxis.LOG_MONEYNESS, k1[0], v1))
        assert [(f.check, f.node, f.value) for f in ours] == [(f.check, f.node, f.value) for f in ref]
        assert [f.at for f in ours] == [float(d1[f.node]) for f in ours]
    spiked = np.full((3, 5), 0.1)
    spiked[2, 2] = 0.2
    found = pricer.butterfly_arbitrage(GridSurface("S", "EURUSD", t, StrikeAxis.DELTA, deltas, spiked))
    assert found and all(f.expiry == 2 and f.node in (1, 2, 3) for f in found)
    with pytest.raises(ValueError, match="DELTA"):
        pricer.delta_log_moneyness(flat.__class__("X", "U", t, StrikeAxis.LOG_MONEYNESS, k[0], np.full((3, 5), 0.1)))


# --------------------------------------------------------------------------- contract
def test_threads_order_and_position_do_not_change_bits():
    rng = np.random.default_rng(40)
    m = 3 * sf.PARALLEL_THRESHOLD + 77
    days, t, strikes, vols = random_grid(rng, 8, 15)
    T = rng.uniform(0.0, 1.3 * t[-1], m)
    K = rng.uniform(0.5, 1.5, m) * 100.0
    F = rng.uniform(80.0, 120.0, m)
    surfaces = [(sf.GRID, sf.STRIKE, t, strikes, vols), (sf.GRID, sf.LOG_MONEYNESS, t, np.log(strikes / 100), vols),
                (sf.GRID, sf.DELTA, *random_delta_grid(rng, 8, 9)),
                (sf.SVI, 0, t, NONE, random_svi(rng, 8)), (sf.SABR, 0, t, NONE, random_sabr(rng, 8))]
    for args in surfaces:
        one = clean(*args, T, K, F, threads=1)
        two = clean(*args, T, K, F, threads=2)
        assert np.array_equal(one, two)
        order = rng.permutation(m)
        assert np.array_equal(clean(*args, T[order], K[order], F[order], threads=2), one[:, order])
        for i in (0, 5, 255, 256, m - 1):
            assert np.array_equal(clean(*args, T[i:i + 1], K[i:i + 1], F[i:i + 1])[:, 0], one[:, i])
        assert np.array_equal(clean(*args, T, K, F, [sf.TOTAL_VARIANCE]), one[1:])
        out, status = np.empty(m), np.empty(m, np.int32)
        assert sf.vols(*args, T, K, F, out, status, 2) == 0 and np.array_equal(out, one[0])


def test_bad_points_get_status_and_nan():
    rng = np.random.default_rng(50)
    days, t, strikes, vols = random_grid(rng, 5, 6)
    m = 600
    T = rng.uniform(0.0, 1.3 * t[-1], m)
    K = rng.uniform(0.5, 1.5, m) * 100.0
    F = np.full(m, 100.0)
    T[[3, 300]] = [np.nan, -1e-300]
    K[[17, 300]] = [0.0, np.inf]
    F[[40, 599]] = [np.nan, -1.0]
    for args in [(sf.GRID, sf.STRIKE, t, strikes, vols), (sf.GRID, sf.MONEYNESS, t, strikes / 100, vols),
                 (sf.GRID, sf.DELTA, *random_delta_grid(rng, 5, 6)),
                 (sf.SVI, 0, t, NONE, random_svi(rng, 5)), (sf.SABR, 0, t, NONE, random_sabr(rng, 5))]:
        out, status, nbad = evaluate(*args, T, K, F)
        expected = {3: pgs.BAD_TIME, 17: pgs.BAD_STRIKE, 300: pgs.BAD_TIME | pgs.BAD_STRIKE}
        if args[:2] != (sf.GRID, sf.STRIKE):
            expected.update({40: pgs.BAD_UNDERLYING, 599: pgs.BAD_UNDERLYING})
        assert nbad == len(expected)
        assert {int(i): int(status[i]) for i in np.flatnonzero(status)} == expected
        bad = sorted(expected)
        assert np.all(np.isnan(out[:, bad]))
        good = np.setdiff1d(np.arange(m), bad)
        assert np.all(np.isfinite(out[:, good]))
        assert np.array_equal(out[:, good], clean(*args, T[good], K[good], F[good]))


def test_sabr_expansion_gone_negative_is_not_finite():
    # rho near -1 and a large nu^2 T: 1 + [(2 - 3 rho^2)/24 nu^2 + ...] T < 0
    out, status, nbad = evaluate(sf.SABR, 0, [0.1, 30.0], NONE, [[0.2, 1.0, -0.99, 3.0]] * 2, [30.0, 0.1], [1.0, 1.0], [1.0])
    assert nbad == 1 and status[0] == pgs.NOT_FINITE and np.all(np.isnan(out[:, 0]))
    assert status[1] == 0 and np.all(np.isfinite(out[:, 1]))


BAD_SURFACES = [
    # (kind, axis, expiries, nodes, values, {("expiry"|"node"|"value", index): bits})
    (sf.GRID, sf.STRIKE, [1.0, 0.5], [90.0, 110.0], [[0.2, 0.2], [0.2, 0.2]], {("expiry", 1): sf.NOT_INCREASING}),
    (sf.GRID, sf.STRIKE, [0.0, 1.0], [90.0, 90.0], [[0.2, 0.2], [0.2, 0.2]],
     {("expiry", 0): sf.NOT_POSITIVE, ("node", 1): sf.DUPLICATE}),
    (sf.GRID, sf.MONEYNESS, [1.0], [-0.1, 1.1], [[0.2, np.nan]],
     {("node", 0): sf.NOT_POSITIVE, ("value", (0, 1)): sf.NOT_FINITE}),
    (sf.GRID, sf.LOG_MONEYNESS, [1.0, 2.0], [-0.1, 0.1], [[0.2, 0.0], [-0.1, 1e200]],
     {("value", (0, 1)): sf.NOT_POSITIVE, ("value", (1, 0)): sf.NOT_POSITIVE, ("value", (1, 1)): sf.OVERFLOW}),
    (sf.GRID, sf.STRIKE, [np.inf, 1.0], [np.nan, 2.0], [[0.2, 0.2], [0.2, 0.2]],
     {("expiry", 0): sf.NOT_FINITE, ("node", 0): sf.NOT_FINITE}),
    (sf.GRID, sf.DELTA, [1.0], [0.9, 1.0, 0.5, 0.5, 0.7, 0.0, np.nan], [[0.2] * 7],
     {("node", 1): sf.OUT_OF_BOUNDS | sf.NOT_DECREASING, ("node", 3): sf.DUPLICATE, ("node", 4): sf.NOT_DECREASING,
      ("node", 5): sf.OUT_OF_BOUNDS, ("node", 6): sf.NOT_FINITE}),
    (sf.GRID, sf.DELTA, [1.0, 2.0], [0.3, 0.25, 0.1], [[0.8, 0.2, 0.2], [0.2, 0.2, 0.2]],  # k 0.7395 > 0.1549
     {("value", (0, 1)): sf.CROSSING}),
    (sf.GRID, sf.DELTA, [1.0, 0.0], [0.3, 0.25, 0.1], [[0.2, 0.8, 0.2], [0.8, 0.2, 0.2]],  # T_1 = 0: no k
     {("expiry", 1): sf.NOT_POSITIVE | sf.NOT_INCREASING, ("value", (0, 2)): sf.CROSSING}),
    (sf.GRID, sf.DELTA, [1.0], [0.3, 0.25, -0.1], [[0.8, np.nan, 0.2]],  # no pair can be compared
     {("node", 2): sf.OUT_OF_BOUNDS, ("value", (0, 1)): sf.NOT_FINITE}),
    (sf.SVI, 0, [1.0], [], [[0.01, -0.1, 1.0, 0.0, 0.0]],
     {("value", (0, 1)): sf.OUT_OF_BOUNDS, ("value", (0, 2)): sf.OUT_OF_BOUNDS, ("value", (0, 4)): sf.NOT_POSITIVE}),
    (sf.SVI, 0, [1.0, 2.0], [], [[-0.05, 0.1, 0.0, 0.0, 0.2], [0.01, 3.5, 0.2, 0.0, 0.2]],
     {("value", (0, 0)): sf.MIN_VARIANCE, ("value", (1, 1)): sf.WING}),
    (sf.SVI, 0, [1.0], [], [[np.nan, 0.1, 0.0, np.inf, 0.2]],
     {("value", (0, 0)): sf.NOT_FINITE, ("value", (0, 3)): sf.NOT_FINITE}),
    (sf.SABR, 0, [1.0, 2.0], [], [[0.0, 1.5, 1.0, -0.1], [0.2, 0.5, 0.0, np.nan]],
     {("value", (0, 0)): sf.NOT_POSITIVE, ("value", (0, 1)): sf.OUT_OF_BOUNDS, ("value", (0, 2)): sf.OUT_OF_BOUNDS,
      ("value", (0, 3)): sf.OUT_OF_BOUNDS, ("value", (1, 3)): sf.NOT_FINITE}),
]


def _kernel_flags(kind, axis, expiries, nodes, values):
    t, x = np.array(expiries, float), np.array(nodes, float)
    v = np.array(values, float).reshape(t.size, -1)
    es, ns, vs = np.empty(t.size, np.int32), np.empty(x.size, np.int32), np.empty(v.shape, np.int32)
    nbad = sf.validate(kind, axis, t, x, v, es, ns, vs)
    flags = {("expiry", int(i)): int(es[i]) for i in np.flatnonzero(es)}
    flags.update({("node", int(j)): int(ns[j]) for j in np.flatnonzero(ns)})
    flags.update({("value", (int(i), int(j))): int(vs[i, j]) for i, j in zip(*np.nonzero(vs))})
    assert nbad == len(flags)
    return flags


def _domain(kind, axis, expiries, nodes, values):
    if kind == sf.GRID:
        return GridSurface("S", "U", expiries, StrikeAxis(axis), nodes, values)
    return (SviSurface if kind == sf.SVI else SabrSurface)("S", "U", expiries, values)


def _domain_flags(surface):
    """{("expiry"|"node"|"value", index)} named by the domain's violations."""
    columns = {"a": 0, "b": 1, "rho": 2, "m": 3, "sigma": 4} if isinstance(surface, SviSurface) else \
        {"alpha": 0, "beta": 1, "rho": 2, "nu": 3}
    flagged = set()
    for v in surface.validate():
        name = v.field
        if name.startswith("expiries["):
            flagged.add(("expiry", int(name[9:-1])))
        elif name.startswith("nodes["):
            flagged.add(("node", int(name[6:-1])))
        elif name.startswith("vols["):
            i, j = name[5:-1].split("][")
            flagged.add(("value", (int(i), int(j))))
        elif name.startswith("params["):
            row, column = name[7:].split("].")
            flagged.add(("value", (int(row), columns[column])))
        else:
            flagged.add(("surface", name))
    return flagged


@pytest.mark.parametrize("case", range(len(BAD_SURFACES)))
def test_bad_surfaces_get_status_not_nan(case):
    kind, axis, expiries, nodes, values, expected = BAD_SURFACES[case]
    assert _kernel_flags(kind, axis, expiries, nodes, values) == expected
    out, status, nbad = evaluate(kind, axis, expiries, nodes, values, [0.5, 1.0, np.nan], [1.0, 1.0, 1.0], [1.0])
    assert nbad == 3 and np.all(np.isnan(out))
    assert list(status) == [pgs.BAD_VOL] * 2 + [pgs.BAD_VOL | pgs.BAD_TIME]
    assert _domain_flags(_domain(kind, axis, expiries, nodes, values)) == set(expected)


def test_domain_validate_agrees_with_kernel_on_random_corruptions():
    rng = np.random.default_rng(60)
    junk = np.array([np.nan, np.inf, -np.inf, -1.0, 0.0, 1e300, 5e-324, 1.0, 2.0, 4.0, -0.5])
    for trial in range(600):
        kind = int(rng.choice(sf.KINDS))
        n = int(rng.integers(1, 6))
        days, t, strikes, vols = random_grid(rng, n, int(rng.integers(1, 6)))
        axis = int(rng.choice(sf.AXES)) if kind == sf.GRID else 0
        nodes = (strikes if axis == sf.STRIKE else strikes / 100 if axis == sf.MONEYNESS
                 else np.log(strikes / 100) if axis == sf.LOG_MONEYNESS
                 else np.sort(rng.uniform(0.01, 0.99, strikes.size))[::-1]) if kind == sf.GRID else NONE
        values = vols if kind == sf.GRID else random_svi(rng, n) if kind == sf.SVI else random_sabr(rng, n)
        t, nodes, values = t.copy(), nodes.copy(), values.copy()
        for _ in range(int(rng.integers(0, 4))):
            where = rng.random()
            if where < 0.3:
                t[rng.integers(0, n)] = rng.choice(junk) if rng.random() < 0.6 else t[rng.integers(0, n)]
            elif where < 0.5 and nodes.size:
                nodes[rng.integers(0, nodes.size)] = rng.choice(junk)
            else:
                values[rng.integers(0, n), rng.integers(0, values.shape[1])] = rng.choice(junk)
        expected = _kernel_flags(kind, axis, t, nodes, values)
        assert _domain_flags(_domain(kind, axis, t, nodes, values)) == set(expected), (trial, kind, t, nodes, values)


def test_domain_validate_agrees_with_kernel_on_random_delta_grids():
    """Crossing strikes above all: random vols on random decreasing deltas, some corrupted."""
    rng = np.random.default_rng(61)
    junk = np.array([np.nan, np.inf, -1.0, 0.0, 1.0, 1e300, 5e-324, 0.5])
    crossed = 0
    for trial in range(400):
        n, p = int(rng.integers(1, 5)), int(rng.integers(1, 7))
        t = np.cumsum(rng.integers(7, 400, n)) / 365.0
        deltas = np.sort(rng.uniform(0.01, 0.99, p))[::-1].copy()
        vols = rng.uniform(0.05, 0.8, (n, p))
        for _ in range(int(rng.integers(0, 3))):
            where = rng.random()
            if where < 0.2:
                t[rng.integers(0, n)] = rng.choice(junk)
            elif where < 0.6:
                deltas[rng.integers(0, p)] = rng.choice(junk)
            else:
                vols[rng.integers(0, n), rng.integers(0, p)] = rng.choice(junk)
        expected = _kernel_flags(sf.GRID, sf.DELTA, t, deltas, vols)
        crossed += any(v & sf.CROSSING for v in expected.values())
        assert _domain_flags(_domain(sf.GRID, sf.DELTA, t, deltas, vols)) == set(expected), (trial, t, deltas, vols)
    assert crossed > 100


def test_empty_surface_and_empty_batch():
    out, status, nbad = evaluate(sf.SVI, 0, np.empty(0), NONE, np.empty((0, 5)), [0.5], [1.0], [1.0])
    assert nbad == 1 and status[0] == pgs.BAD_VOL and np.all(np.isnan(out))
    out, status, nbad = evaluate(sf.GRID, sf.STRIKE, [1.0], NONE, np.empty((1, 0)), [0.5], [1.0], [1.0])
    assert nbad == 1 and status[0] == pgs.BAD_VOL
    out, status, nbad = evaluate(sf.GRID, sf.STRIKE, [1.0], [100.0], [[0.2]], [], [], [1.0])
    assert nbad == 0 and out.shape == (2, 0)
    # one strike node: flat in strike
    assert np.all(clean(sf.GRID, sf.STRIKE, [1.0], [100.0], [[0.2]], [1.0, 1.0], [50.0, 200.0], [1.0])[0] == 0.2)


def test_argument_errors():
    t, x, v = np.array([1.0]), np.array([100.0]), np.array([[0.2]])
    q = np.array([0.5])
    out, status = np.empty((1, 1)), np.empty(1, np.int32)
    one = np.array([sf.VOL], dtype=np.int32)
    with pytest.raises(ValueError, match="kind"):
        sf.evaluate(9, 1, t, x, v, q, q, q, one, out, status, 1)
    with pytest.raises(ValueError, match="axis"):
        sf.evaluate(sf.GRID, 7, t, x, v, q, q, q, one, out, status, 1)
    with pytest.raises(ValueError, match="measure"):
        sf.evaluate(sf.GRID, 1, t, x, v, q, q, q, np.array([3], np.int32), out, status, 1)
    with pytest.raises(ValueError, match="values"):
        sf.evaluate(sf.GRID, 1, t, x, np.zeros((1, 2)), q, q, q, one, out, status, 1)
    with pytest.raises(ValueError, match="values"):
        sf.evaluate(sf.SABR, 0, t, NONE, np.zeros((1, 5)), q, q, q, one, out, status, 1)
    with pytest.raises(ValueError, match="nodes"):
        sf.evaluate(sf.SVI, 0, t, x, np.zeros((1, 5)), q, q, q, one, out, status, 1)
    with pytest.raises(ValueError, match="K"):
        sf.evaluate(sf.GRID, 1, t, x, v, q, np.ones(2), q, one, out, status, 1)
    with pytest.raises(ValueError, match="F"):
        sf.evaluate(sf.GRID, 1, t, x, v, q, q, np.ones(2), one, out, status, 1)
    with pytest.raises(ValueError, match="out"):
        sf.evaluate(sf.GRID, 1, t, x, v, q, q, q, one, np.empty((2, 1)), status, 1)
    with pytest.raises(ValueError, match="status"):
        sf.evaluate(sf.GRID, 1, t, x, v, q, q, q, one, out, np.empty(2, np.int32), 1)
    with pytest.raises(ValueError, match="out"):
        sf.vols(sf.GRID, 1, t, x, v, q, q, q, np.empty(2), status, 1)
    with pytest.raises(ValueError, match="params"):
        sf.svi_durrleman(np.zeros(4), q, np.empty((4, 1)), status)
    with pytest.raises(ValueError, match="F"):
        sf.black_calls(np.ones(2), q, q, np.empty(1), status)


def test_black_calls():
    F, K, w = np.array([100.0]), np.array([80.0, 100.0, 130.0, 100.0, 1.0, 100.0]), np.array([0.04, 0.09, 0.01, 0.0, 0.2, -1.0])
    out, status = np.empty(6), np.empty(6, np.int32)
    assert sf.black_calls(F, K, w, out, status) == 1 and status[5] == pgs.BAD_VOL and np.isnan(out[5])
    for i in range(5):
        ref = ql.blackFormula(ql.Option.Call, float(K[i]), 100.0, math.sqrt(w[i]), 1.0)
        assert out[i] == pytest.approx(ref, rel=1e-14, abs=1e-13)


# --------------------------------------------------------------------------- pricer
def test_pricer_evaluates_through_the_kernel_and_checks_arbitrage():
    rng = np.random.default_rng(70)
    days, t, strikes, vols = random_grid(rng, 6, 9)
    grid = GridSurface("SPX-GRID", "SPX", t, StrikeAxis.STRIKE, strikes, vols)
    T = rng.uniform(0, 2 * t[-1], 500)
    K = rng.uniform(30, 250, 500)
    values = pricer.evaluate_surface(grid, T, K, 100.0, (pricer.VOL, pricer.TOTAL_VARIANCE))
    assert values.bad == 0 and np.array_equal(values.values, clean(sf.GRID, sf.STRIKE, t, strikes, vols, T, K, [1.0]))
    v, status = pricer.vols(grid, T, K, 100.0)
    assert np.array_equal(v, values.values[0]) and not status.any()
    # calendar: a slice whose vol falls enough that w drops, at that slice and node only
    bumped = np.tile(vols[0], (6, 1))  # the same vol at every expiry: w rises with T
    assert pricer.calendar_arbitrage(GridSurface("X", "SPX", t, StrikeAxis.STRIKE, strikes, bumped)) == []
    bumped[3, 4] = bumped[2, 4] * math.sqrt(t[2] / t[3]) * 0.9
    found = pricer.calendar_arbitrage(GridSurface("X", "SPX", t, StrikeAxis.STRIKE, strikes, bumped))
    assert [(f.check, f.expiry, f.node) for f in found] == [("calendar", 3, 4)]
    flat = GridSurface("FLAT", "SPX", t, StrikeAxis.MONEYNESS, np.linspace(0.5, 1.5, 11), np.full((6, 11), 0.2))
    assert pricer.calendar_arbitrage(flat) == [] and pricer.butterfly_arbitrage(flat) == []
    # butterfly: a spike at one node makes the call prices concave there
    spiked = np.full((6, 11), 0.2)
    spiked[2, 5] = 0.6
    found = pricer.butterfly_arbitrage(GridSurface("SPIKE", "SPX", t, StrikeAxis.MONEYNESS,
                                                   np.linspace(0.5, 1.5, 11), spiked))
    assert {(f.check, f.expiry) for f in found} >= {("butterfly", 2)}
    assert all(f.expiry == 2 and f.node in (4, 5, 6) for f in found)
    with pytest.raises(ValueError, match="forward"):
        pricer.butterfly_arbitrage(grid)
    flat_strikes = GridSurface("FLATK", "SPX", t, StrikeAxis.STRIKE, np.linspace(50, 150, 11), np.full((6, 11), 0.2))
    assert pricer.butterfly_arbitrage(flat_strikes, forwards=100.0 * np.exp(0.02 * t)) == []
    # SVI and SABR: a sound surface passes both checks; crossing slices are found
    sabr = SabrSurface("SABR", "EURIBOR", [0.5, 1.0, 2.0], [[0.2, 1.0, -0.3, 0.4]] * 3)
    assert pricer.calendar_arbitrage(sabr) == [] and pricer.butterfly_arbitrage(sabr) == []
    svi = SviSurface("SVI", "SPX", [0.5, 1.0], [[0.02, 0.1, -0.5, 0.0, 0.2], [0.01, 0.1, -0.5, 0.0, 0.2]])
    found = pricer.calendar_arbitrage(svi)
    assert found and all(f.check == "calendar" and f.expiry == 1 and f.value < 0 for f in found)
    assert len(found) == len(pricer.DEFAULT_LOG_MONEYNESS)
    # Lee's moment formula: wing slopes b (1 -+ rho) of w above 2 are found, per wing
    steep = SviSurface("STEEP", "SPX", [1.0, 2.0], [[0.02, 1.5, 0.5, 0.0, 0.2], [0.04, 1.5, -0.5, 0.0, 0.2]])
    assert steep.validate() == []  # b (1 + |rho|) = 2.25 <= 4
    lee = [(f.expiry, f.node, f.at, f.value) for f in pricer.butterfly_arbitrage(steep) if f.check == "lee_wing"]
    assert lee == [(0, -2, np.inf, 2.25), (1, -1, -np.inf, 2.25)]
    assert not [f for f in pricer.butterfly_arbitrage(svi) if f.check == "lee_wing"]
    bad = SviSurface("BAD", "SPX", [1.0], [[0.02, -0.1, 0.0, 0.0, 0.2]])
    v, status = pricer.vols(bad, [1.0], [1.0], [1.0])
    assert status[0] == pgs.BAD_VOL and np.isnan(v[0])
