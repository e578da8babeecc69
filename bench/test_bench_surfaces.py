"""Benchmarks of pricegrid.ext.surfaces: Black vols at 1,000,000 (T, K) points.

Three surfaces: a 10 x 15 grid on absolute strikes (expiries 1 month to 5 years, strikes
50-150), an SVI surface of 8 slices and a SABR surface of 8 slices (beta 0.5), forward 100.
Points: T uniform on [0, 6] years (before, between and after the expiries), K = 100 e^x,
x uniform on [-0.7, 0.7] (inside and beyond the grid's strikes), unsorted. Implementations,
in the same run: ours (``surfaces.vols``) on 1 thread for each surface and on 2 threads for
the grid; QuantLib in a Python loop over the first 20,000 points, as a QuantLib user would
write it: ``BlackVarianceSurface.blackVol(t, K)`` (Bilinear, ConstantExtrapolation) for the
grid, ``sabrVolatility(K, F, T_i, alpha_i, beta_i, nu_i, rho_i)`` for SABR (one slice per
point, where ours interpolates two), ``SviSmileSection.volatility(K)`` for SVI (one slice
per point, likewise). Each timed call's result is checked against the other side.
``extra_info`` records the points a timed call evaluates; ``bench/report_surfaces.py``
turns a ``--benchmark-json`` file into per-point times and ratios:

    .venv/bin/python -m pytest bench/test_bench_surfaces.py --benchmark-json=/tmp/bench_surfaces.json
    .venv/bin/python bench/report_surfaces.py /tmp/bench_surfaces.json
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import QuantLib as ql

from pricegrid.ext import surfaces as sf

POINTS = 1_000_000
QUANTLIB_SAMPLE = 20_000
FORWARD = 100.0
TODAY = ql.Date(15, ql.January, 2025)
GRID_DAYS = np.array([30, 61, 91, 182, 273, 365, 547, 730, 1095, 1826])
GRID_STRIKES = np.linspace(50.0, 150.0, 15)
SLICE_DAYS = np.array([30, 91, 182, 365, 547, 730, 1095, 1826])
NONE = np.empty(0)


@functools.lru_cache(maxsize=None)
def grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(expiries, strikes, vols 10 x 15): a skew that flattens with the expiry."""
    t = GRID_DAYS / 365.0
    x = np.log(GRID_STRIKES / FORWARD)
    vols = 0.2 - 0.15 * x[None, :] / np.sqrt(1.0 + 4.0 * t[:, None]) + 0.1 * x[None, :] ** 2
    return t, GRID_STRIKES.copy(), np.ascontiguousarray(vols)


@functools.lru_cache(maxsize=None)
def svi() -> tuple[np.ndarray, np.ndarray]:
    """(expiries, params (8, 5)): total variance rising with the expiry at every k."""
    t = SLICE_DAYS / 365.0
    params = np.column_stack((0.04 * t, 0.1 * np.sqrt(t), np.full(8, -0.4), np.full(8, 0.05), np.full(8, 0.2)))
    return t, np.ascontiguousarray(params)


@functools.lru_cache(maxsize=None)
def sabr() -> tuple[np.ndarray, np.ndarray]:
    """(expiries, params (8, 4)): alpha for a ~20% ATM vol at F = 100, beta 0.5."""
    t = SLICE_DAYS / 365.0
    params = np.column_stack((np.full(8, 2.0), np.full(8, 0.5), np.linspace(-0.3, -0.2, 8), np.linspace(0.6, 0.3, 8)))
    return t, np.ascontiguousarray(params)


@functools.lru_cache(maxsize=None)
def points() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(40)
    T = rng.uniform(0.0, 6.0, POINTS)
    K = FORWARD * np.exp(rng.uniform(-0.7, 0.7, POINTS))
    slice_index = rng.integers(0, 8, POINTS)  # the QuantLib SABR/SVI loops' slice per point
    return T, K, slice_index


def surface_args(name: str):
    if name == "grid":
        t, x, v = grid()
        return sf.GRID, sf.STRIKE, t, x, v
    t, p = svi() if name == "svi" else sabr()
    return (sf.SVI if name == "svi" else sf.SABR), 0, t, NONE, p


def ours(name: str, T: np.ndarray, K: np.ndarray, threads: int = 1) -> np.ndarray:
    out = np.empty(T.shape[0])
    status = np.empty(T.shape[0], dtype=np.int32)
    assert sf.vols(*surface_args(name), T, K, np.array([FORWARD]), out, status, threads) == 0
    return out


def quantlib_grid() -> ql.BlackVarianceSurface:
    ql.Settings.instance().evaluationDate = TODAY
    t, x, v = grid()
    matrix = ql.Matrix(x.size, t.size)
    for i in range(t.size):
        for j in range(x.size):
            matrix[j][i] = float(v[i, j])
    const = ql.BlackVarianceSurface.ConstantExtrapolation
    s = ql.BlackVarianceSurface(TODAY, ql.NullCalendar(), [TODAY + int(d) for d in GRID_DAYS], x.tolist(),
                                matrix, ql.Actual365Fixed(), const, const)
    s.setInterpolation("bilinear")
    s.enableExtrapolation()
    return s


CASES = [("pricegrid", "grid", 1), ("pricegrid", "grid", 2), ("pricegrid", "svi", 1), ("pricegrid", "sabr", 1),
         ("quantlib", "grid", 1), ("quantlib", "svi", 1), ("quantlib", "sabr", 1)]


@pytest.mark.parametrize("impl, surface, threads", CASES, ids=[f"{i}-{s}-{t}thread" for i, s, t in CASES])
def test_vols(benchmark, impl, surface, threads):
    """Black vols of one surface at 1,000,000 (T, K) points (QuantLib: 20,000)."""
    T, K, slice_index = points()
    timed = QUANTLIB_SAMPLE if impl == "quantlib" else POINTS
    if impl == "pricegrid":
        args = surface_args(surface)
        out = np.empty(POINTS)
        status = np.empty(POINTS, dtype=np.int32)
        F = np.array([FORWARD])

        def run():
            sf.vols(*args, T, K, F, out, status, threads)
            return out
    elif surface == "grid":
        s = quantlib_grid()
        sample = list(zip(T[:timed].tolist(), K[:timed].tolist()))
        black_vol = s.blackVol

        def run():
            return np.array([black_vol(t, k) for t, k in sample])
    else:
        t, p = svi() if surface == "svi" else sabr()
        idx = slice_index[:timed]
        sample_k = K[:timed].tolist()
        if surface == "sabr":
            rows = [(float(t[i]), *map(float, p[i])) for i in idx]
            sabr_vol = ql.sabrVolatility

            def run():  # QuantLib's argument order: strike, forward, expiry, alpha, beta, nu, rho
                return np.array([sabr_vol(k, FORWARD, ti, a, b, nu, rho)
                                 for k, (ti, a, b, rho, nu) in zip(sample_k, rows)])
        else:
            sections = [ql.SviSmileSection(float(t[i]), FORWARD, [float(p[i, 0]), float(p[i, 1]), float(p[i, 4]),
                                                                  float(p[i, 2]), float(p[i, 3])]) for i in range(8)]
            vol_of = [s.volatility for s in sections]
            pairs = list(zip(sample_k, idx.tolist()))

            def run():
                return np.array([vol_of[i](k) for k, i in pairs])
    benchmark.extra_info.update(product="vols", impl=impl, threads=threads, measures=surface, timed_rows=timed)
    result = benchmark(run)
    if impl == "quantlib":
        if surface == "grid":
            np.testing.assert_allclose(result, ours("grid", T[:timed], K[:timed]), rtol=1e-12)
        else:  # ours at the slice's own expiry is the slice's vol
            t = (svi() if surface == "svi" else sabr())[0]
            np.testing.assert_allclose(result, ours(surface, t[slice_index[:timed]], K[:timed]), rtol=1e-10)
    elif surface == "grid":
        s = quantlib_grid()
        ref = np.array([s.blackVol(float(a), float(b)) for a, b in zip(T[:2000], K[:2000])])
        np.testing.assert_allclose(result[:2000], ref, rtol=1e-12)
    else:
        assert np.all(np.isfinite(result)) and np.all(result > 0)
